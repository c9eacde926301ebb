//! GRIDE (Denti et al. 2022): the ratio μ = r_{n2}/r_{n1} of two neighbour distances has density
//! f(μ) = d (μ^d − 1)^{n2−n1−1} / (B(n2−n1, n1) μ^{(n2−1)d+1}); d is the root of the score.
//! The score's first term is (N−1)/d, so that (n1, n2) = (1, 2) is exactly the TwoNN MLE (N−1)/Σ log μ.
use crate::error::Param;
use serde::Serialize;
use serde_json::json;

use super::{log_ratio, Estimate};
use crate::error::{Error, Result};
use crate::neighbors::KnnGraph;

/// GRIDE at one scale.
#[derive(Clone, Debug)]
pub struct Gride {
    pub n1: usize,
    pub n2: usize,
}

impl Default for Gride {
    fn default() -> Self {
        Gride { n1: 1, n2: 2 }
    }
}

/// One point of the multiscale curve.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct GridePoint {
    pub n1: usize,
    pub n2: usize,
    pub d: f64,
    pub se: f64,
    pub n_used: usize,
    pub n_ties_dropped: usize,
    /// Mean distance to the n1-th and n2-th neighbour: the scale this point measures.
    pub mean_r_n1: f64,
    pub mean_r_n2: f64,
}

/// Score S(d) and observed information I(d) = −S'(d) for log-ratios L_i > 0.
fn score_info(logs: &[f64], n1: usize, n2: usize, d: f64) -> (f64, f64) {
    let m = logs.len() as f64;
    let a = (n2 - n1 - 1) as f64;
    let b = (n2 - 1) as f64;
    let mut s = (m - 1.0) / d;
    let mut info = (m - 1.0) / (d * d);
    for &l in logs {
        // μ^d / (μ^d − 1) = 1 / (1 − e^{−dL}), stable for large d.
        let e = (-d * l).exp();
        let one_minus = -(-d * l).exp_m1();
        if a > 0.0 {
            s += a * l / one_minus;
            info += a * l * l * e / (one_minus * one_minus);
        }
        s -= b * l;
    }
    (s, info)
}

impl Gride {
    /// Fits at (n1, n2) on a graph with at least n2 neighbours.
    pub fn fit(&self, graph: &KnnGraph) -> Result<Estimate> {
        let p = self.fit_point(graph)?;
        let mut notes = Vec::new();
        if p.n_ties_dropped > 0 {
            notes.push(format!(
                "{} points with r_n1 = r_n2 (ties) were dropped",
                p.n_ties_dropped
            ));
        }
        Ok(Estimate {
            estimator: "gride".into(),
            variant: "maximum likelihood, score first term (N-1)/d, no outlier cut".into(),
            value: p.d,
            stderr: Some(p.se),
            params: json!({"n1": p.n1, "n2": p.n2, "n_used": p.n_used, "n_ties_dropped": p.n_ties_dropped}),
            notes,
        })
    }

    /// The full result at one scale.
    pub fn fit_point(&self, graph: &KnnGraph) -> Result<GridePoint> {
        let (n1, n2) = (self.n1, self.n2);
        if n1 < 1 || n2 <= n1 {
            return Err(Error::param(
                Param::GrideOrders,
                format!("need 1 ≤ n1 < n2, got {n1}, {n2}"),
                "use n1 = 1, n2 = 2",
            ));
        }
        if graph.k < n2 {
            return Err(Error::param(
                Param::GrideOrders,
                format!(
                    "GRIDE at n2 = {n2} needs that many neighbours, the graph has {}",
                    graph.k
                ),
                "build the graph with k ≥ n2",
            ));
        }
        let mut logs = Vec::with_capacity(graph.n);
        let mut ties = 0;
        let (mut s1, mut s2) = (0.0, 0.0);
        for i in 0..graph.n {
            let d = graph.dists(i);
            let (r1, r2) = (graph.length(d[n1 - 1]), graph.length(d[n2 - 1]));
            s1 += r1;
            s2 += r2;
            let l = log_ratio(r2, r1);
            if l > 0.0 {
                logs.push(l);
            } else {
                ties += 1;
            }
        }
        if logs.len() < 2 {
            return Err(Error::data(
                "input",
                format!("GRIDE at ({n1}, {n2}): fewer than 2 points have r_n1 < r_n2"),
                "the distances are tied (a lattice?): try a larger scale",
            ));
        }
        let d = solve(&logs, n1, n2)?;
        let (_, info) = score_info(&logs, n1, n2, d);
        Ok(GridePoint {
            n1,
            n2,
            d,
            se: 1.0 / info.sqrt(),
            n_used: logs.len(),
            n_ties_dropped: ties,
            mean_r_n1: s1 / graph.n as f64,
            mean_r_n2: s2 / graph.n as f64,
        })
    }
}

/// The root of the (strictly decreasing) score: bracket, then safeguarded Newton.
fn solve(logs: &[f64], n1: usize, n2: usize) -> Result<f64> {
    let s = |d: f64| score_info(logs, n1, n2, d);
    let (mut lo, mut hi) = (1e-3, 1.0);
    while s(lo).0 <= 0.0 {
        lo *= 1e-3;
        if lo < 1e-300 {
            return Err(Error::Numerical {
                what: "GRIDE".into(),
                problem: "no root above 0".into(),
            });
        }
    }
    while s(hi).0 > 0.0 {
        lo = hi;
        hi *= 2.0;
        if hi > 1e7 {
            return Err(Error::Numerical {
                what: "GRIDE".into(),
                problem: "the dimension diverges (all ratios near 1)".into(),
            });
        }
    }
    let mut d = 0.5 * (lo + hi);
    for _ in 0..200 {
        let (f, info) = s(d);
        if f > 0.0 {
            lo = d;
        } else {
            hi = d;
        }
        let newton = d + f / info;
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - d).abs() <= 1e-14 * d.abs() || hi - lo <= 1e-14 * hi {
            return Ok(next);
        }
        d = next;
    }
    Ok(d)
}

/// GRIDE at n1 = 1, 2, 4, … with n2 = 2·n1 ≤ range_max (and ≤ the graph's k).
pub fn multiscale(graph: &KnnGraph, range_max: usize) -> Result<Vec<GridePoint>> {
    let mut out = Vec::new();
    let mut n1 = 1;
    while 2 * n1 <= range_max.min(graph.k) {
        out.push(Gride { n1, n2: 2 * n1 }.fit_point(graph)?);
        n1 *= 2;
    }
    Ok(out)
}
