//! Shared helpers of the oracle tests: fixture loading and a checker that records the largest relative
//! error per measure and fails at the end with every miss listed.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use repscope::Matrix;
use serde_json::Value;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/oracles/"
    ))
    .join(rel)
}

pub fn oracle() -> Value {
    let text = std::fs::read_to_string(fixture("oracle.json")).expect("oracle.json");
    serde_json::from_str(&text).expect("valid JSON")
}

pub fn load(rel: &str) -> Matrix {
    repscope::data::load_matrix(&fixture(rel), None).expect("fixture matrix")
}

pub struct Checker {
    tol: f64,
    /// measure (without per-element suffix) -> (max relative error, count)
    pub worst: BTreeMap<String, (f64, usize)>,
    misses: Vec<String>,
}

impl Checker {
    pub fn new(tol: f64) -> Self {
        Checker {
            tol,
            worst: BTreeMap::new(),
            misses: Vec::new(),
        }
    }
    fn record(&mut self, name: &str, err: f64) {
        // Strip the case prefix so the summary is per measure.
        let key = name
            .split_once(": ")
            .map(|x| x.1)
            .unwrap_or(name)
            .to_string();
        let e = self.worst.entry(key).or_insert((0.0, 0));
        if err > e.0 || err.is_nan() {
            e.0 = err;
        }
        e.1 += 1;
    }
    /// |ours − want| ≤ tol·|want|.
    pub fn rel(&mut self, name: &str, ours: f64, want: f64) {
        let err = if want == 0.0 {
            ours.abs()
        } else {
            (ours - want).abs() / want.abs()
        };
        self.record(name, err);
        if err.is_nan() || err > self.tol {
            self.misses.push(format!(
                "{name}: ours {ours:.17e} oracle {want:.17e} rel {err:.3e}"
            ));
        }
    }
    /// Relative, or absolute `abs` when that is larger (values near 0).
    pub fn rel_or_abs(&mut self, name: &str, ours: f64, want: f64, abs: f64) {
        let d = (ours - want).abs();
        let err = d / want.abs().max(abs / self.tol);
        self.record(name, err);
        if !(d <= self.tol * want.abs() || d <= abs) {
            self.misses.push(format!(
                "{name}: ours {ours:.17e} oracle {want:.17e} abs {d:.3e}"
            ));
        }
    }
    /// Integers and counts: equal.
    pub fn exact(&mut self, name: &str, ours: f64, want: f64) {
        self.record(name, if ours == want { 0.0 } else { f64::INFINITY });
        if ours != want {
            self.misses
                .push(format!("{name}: ours {ours} oracle {want}"));
        }
    }
    /// A loose absolute bound, for values the oracle marks as not well posed.
    pub fn loose(&mut self, name: &str, ours: f64, want: f64, abs: f64) {
        let d = (ours - want).abs();
        if d > abs {
            self.misses.push(format!(
                "{name}: ours {ours} oracle {want} differ by {d} > {abs}"
            ));
        }
    }
    pub fn finish(self, what: &str) {
        eprintln!("max relative error per measure ({what}):");
        for (k, (e, n)) in &self.worst {
            eprintln!("  {k:<55} {e:.2e}  ({n} values)");
        }
        assert!(
            self.misses.is_empty(),
            "{} values off:\n{}",
            self.misses.len(),
            self.misses.join("\n")
        );
    }
}
