//! Levina–Bickel maximum likelihood (2005), aggregated by MacKay and Ghahramani.
use crate::error::Param;
use serde_json::json;

use super::{log_ratio, Estimate};
use crate::error::{Error, Result};
use crate::neighbors::KnnGraph;

/// How per-point estimates are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// d = 1 / mean(1/m_i) (MacKay & Ghahramani; default, unbiased for the exponential model).
    MacKayGhahramani,
    /// d = mean(m_i) (the original paper; biased upward).
    ArithmeticMean,
}

/// The Levina–Bickel MLE with k neighbours.
#[derive(Clone, Debug)]
pub struct Mle {
    k: usize,
    aggregation: Aggregation,
}

impl Default for Mle {
    fn default() -> Self {
        Mle {
            k: 20,
            aggregation: Aggregation::MacKayGhahramani,
        }
    }
}

/// Inverse per-point estimates 1/m_i = Σ_{j<k} log(T_k/T_j) / (k − 1).
pub fn inverse_per_point(graph: &KnnGraph, k: usize) -> Vec<f64> {
    (0..graph.n)
        .map(|i| {
            let tk = graph.length(graph.dists(i)[k - 1]);
            graph
                .lengths(i)
                .take(k - 1)
                .map(|tj| log_ratio(tk, tj))
                .sum::<f64>()
                / (k - 1) as f64
        })
        .collect()
}

impl Mle {
    /// Number of neighbours (≥ 2).
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }
    /// Aggregation of per-point estimates.
    pub fn aggregation(mut self, a: Aggregation) -> Self {
        self.aggregation = a;
        self
    }

    /// Per-point estimates m_i (infinite where all k distances tie).
    pub fn per_point(&self, graph: &KnnGraph) -> Result<Vec<f64>> {
        self.check(graph)?;
        Ok(inverse_per_point(graph, self.k)
            .into_iter()
            .map(|v| 1.0 / v)
            .collect())
    }

    fn check(&self, graph: &KnnGraph) -> Result<()> {
        if self.k < 2 {
            return Err(Error::param(
                Param::K,
                format!("MLE needs k ≥ 2, got {}", self.k),
                "use k = 20",
            ));
        }
        if graph.k < self.k {
            return Err(Error::param(
                Param::K,
                format!(
                    "the graph has {} neighbours per point, MLE asks for {}",
                    graph.k, self.k
                ),
                "build the graph with a larger k",
            ));
        }
        Ok(())
    }

    /// Fits on the graph.
    pub fn fit(&self, graph: &KnnGraph) -> Result<Estimate> {
        self.check(graph)?;
        let inv = inverse_per_point(graph, self.k);
        let n = inv.len() as f64;
        let ties = inv.iter().filter(|&&v| v <= 0.0).count();
        let mut notes = Vec::new();
        if ties > 0 {
            notes.push(format!(
                "{ties} points have all {} neighbour distances equal; their m_i is infinite",
                self.k
            ));
        }
        let (value, stderr, variant) = match self.aggregation {
            Aggregation::MacKayGhahramani => {
                let mean = inv.iter().sum::<f64>() / n;
                if mean <= 0.0 {
                    return Err(Error::data(
                        "input",
                        "all neighbour distances are tied",
                        "the data is a lattice: use a larger k",
                    ));
                }
                let var = inv.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
                let d = 1.0 / mean;
                // Delta method on 1/mean; neighbourhoods overlap, so this is a lower bound on the true error.
                (
                    d,
                    d * d * (var / n).sqrt(),
                    "MacKay-Ghahramani: 1/mean(1/m_i)",
                )
            }
            Aggregation::ArithmeticMean => {
                let m: Vec<f64> = inv.iter().filter(|&&v| v > 0.0).map(|v| 1.0 / v).collect();
                let nn = m.len() as f64;
                let mean = m.iter().sum::<f64>() / nn;
                let var = m.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (nn - 1.0).max(1.0);
                (
                    mean,
                    (var / nn).sqrt(),
                    "arithmetic mean of m_i (biased upward)",
                )
            }
        };
        if !(value.is_finite() && value > 0.0) {
            return Err(Error::Numerical {
                what: "MLE".into(),
                problem: format!("estimate {value}"),
            });
        }
        Ok(Estimate {
            estimator: "mle".into(),
            variant: variant.into(),
            value,
            stderr: Some(stderr),
            params: json!({"k": self.k, "n_points": graph.n}),
            notes,
        })
    }
}
