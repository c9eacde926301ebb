//! MiND_ML (Rozza et al. 2012), as skdim's `MiND_ML(k=20, D=10)`: the ratio ρ = r₁ / r_{k+1} of the first
//! to the (k+1)-th neighbour distance has density k·d·ρ^{d−1}(1 − ρ^d)^{k−1} on a manifold of dimension d.
//! "MLi" is the integer d in 1..D of largest likelihood, "MLk" the continuous maximum on (0, D].
use serde_json::json;

use super::Estimate;
use crate::error::{Error, Param, Result};
use crate::neighbors::KnnGraph;

/// MiND_ML.
#[derive(Clone, Copy, Debug)]
pub struct MindMl {
    /// Neighbours: ρ reads the first and the (k + 1)-th.
    pub k: usize,
    /// The largest dimension searched.
    pub max_dim: usize,
    /// The integer maximiser ("MLi") instead of the continuous one ("MLk").
    pub integer: bool,
}

impl Default for MindMl {
    fn default() -> Self {
        MindMl {
            k: 20,
            max_dim: 10,
            integer: false,
        }
    }
}

struct Likelihood {
    logs: Vec<f64>,
    k: f64,
}

impl Likelihood {
    /// log L(d) = N log(k d) + (d − 1) Σ log ρ + (k − 1) Σ log(1 − ρ^d).
    fn value(&self, d: f64) -> f64 {
        let n = self.logs.len() as f64;
        let s: f64 = self.logs.iter().sum();
        let t: f64 = self.logs.iter().map(|&l| (-(d * l).exp()).ln_1p()).sum();
        n * (self.k * d).ln() + (d - 1.0) * s + (self.k - 1.0) * t
    }
    /// d/dd log L = N/d + Σ [log ρ − (k − 1) ρ^d log ρ / (1 − ρ^d)].
    fn slope(&self, d: f64) -> f64 {
        let n = self.logs.len() as f64;
        n / d
            + self
                .logs
                .iter()
                .map(|&l| {
                    let p = (d * l).exp();
                    l - (self.k - 1.0) * p * l / (1.0 - p)
                })
                .sum::<f64>()
    }
}

impl Likelihood {
    /// The integer maximiser in 1..=D (the first of equal values, as skdim's argmax).
    fn integer_max(&self, max_dim: usize) -> usize {
        let mut best = (1usize, self.value(1.0));
        for d in 2..=max_dim {
            let v = self.value(d as f64);
            if v > best.1 {
                best = (d, v);
            }
        }
        best.0
    }

    /// The continuous maximiser on (0, D]. The likelihood is concave in d (each term's second derivative
    /// is negative), so it is the slope's root, or D when the slope is still positive there.
    fn continuous_max(&self, max_dim: usize) -> f64 {
        let hi = max_dim as f64;
        if self.slope(hi) >= 0.0 {
            return hi;
        }
        let (mut a, mut b) = (hi * 1e-9, hi);
        for _ in 0..200 {
            let m = 0.5 * (a + b);
            if self.slope(m) > 0.0 {
                a = m;
            } else {
                b = m;
            }
            if b - a <= 1e-15 * b {
                break;
            }
        }
        0.5 * (a + b)
    }
}

/// log(r₁ / r_{k+1}) of every point of the graph (k + 1 neighbours), and how many points were left out
/// because the two distances tie (a duplicate or quantised neighbourhood).
pub(crate) fn rho_logs(graph: &KnnGraph, k: usize) -> (Vec<f64>, usize) {
    let mut ties = 0usize;
    let logs = (0..graph.n)
        .filter_map(|i| {
            let d = graph.dists(i);
            let (r1, rk) = (graph.length(d[0]), graph.length(d[k]));
            if r1 > 0.0 && rk > r1 {
                Some((r1 / rk).ln())
            } else {
                ties += 1;
                None
            }
        })
        .collect();
    (logs, ties)
}

/// MiND_MLk on the log-ratios of [`rho_logs`]: the continuous maximum-likelihood d on (0, D].
pub(crate) fn mind_mlk(logs: Vec<f64>, k: usize, max_dim: usize) -> f64 {
    Likelihood { logs, k: k as f64 }.continuous_max(max_dim)
}

impl MindMl {
    /// Fits on the graph (k + 1 neighbours per point).
    pub fn fit(&self, graph: &KnnGraph) -> Result<Estimate> {
        if self.max_dim < 1 {
            return Err(Error::range(
                Param::MaxDim,
                self.max_dim,
                "D ≥ 1 (10 by default)",
                "MiND_ML searches dimensions 1..D",
            ));
        }
        super::local::check_graph_k(graph, self.k + 1, 2, "MiND_ML")?;
        let (logs, ties) = rho_logs(graph, self.k);
        if logs.len() < 2 {
            return Err(Error::data(
                "input",
                "the first and (k+1)-th neighbour distances tie at (almost) every point",
                "the data is quantised: use a larger k",
            ));
        }
        let lik = Likelihood {
            logs,
            k: self.k as f64,
        };
        let value = if self.integer {
            lik.integer_max(self.max_dim) as f64
        } else {
            lik.continuous_max(self.max_dim)
        };
        let mut notes = Vec::new();
        if ties > 0 {
            notes.push(format!(
                "{ties} points whose first and (k+1)-th neighbour distances tie are left out"
            ));
        }
        if value >= self.max_dim as f64 {
            notes.push(format!(
                "the estimate is at the search's upper bound D = {}: the dimension may be larger",
                self.max_dim
            ));
        }
        // The observed information at the maximum gives the continuous estimate's asymptotic error.
        let stderr = (!self.integer).then(|| {
            let h = 1e-4 * value.max(1e-3);
            let curv =
                (lik.value(value + h) - 2.0 * lik.value(value) + lik.value(value - h)) / (h * h);
            if curv < 0.0 {
                (-1.0 / curv).sqrt()
            } else {
                f64::NAN
            }
        });
        Ok(Estimate {
            estimator: if self.integer { "mind_mli" } else { "mind_mlk" }.into(),
            variant: if self.integer {
                format!(
                    "MiND_MLi: maximum likelihood of r1/r{} over integer d in 1..{}",
                    self.k + 1,
                    self.max_dim
                )
            } else {
                format!(
                    "MiND_MLk: maximum likelihood of r1/r{} over continuous d in (0, {}]",
                    self.k + 1,
                    self.max_dim
                )
            },
            value,
            stderr: stderr.filter(|s| s.is_finite()),
            params: json!({"k": self.k, "D": self.max_dim}),
            notes,
        })
    }
}
