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
    /// d = median(m_i) (skdim's `comb="median"`).
    Median,
}

/// The Levina–Bickel MLE with k neighbours.
#[derive(Clone, Debug)]
pub struct Mle {
    k: usize,
    aggregation: Aggregation,
    unbiased: bool,
}

impl Default for Mle {
    fn default() -> Self {
        Mle {
            k: 20,
            aggregation: Aggregation::MacKayGhahramani,
            unbiased: false,
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
    /// Levina and Bickel's bias-corrected numerator k − 2 instead of k − 1 (skdim's `unbiased=True`).
    pub fn unbiased(mut self, unbiased: bool) -> Self {
        self.unbiased = unbiased;
        self
    }
    /// The numerator's correction: the per-point value is (k − 1)/Σ or (k − 2)/Σ, that is this factor
    /// times (k − 1)/Σ.
    fn factor(&self) -> f64 {
        if self.unbiased {
            (self.k as f64 - 2.0) / (self.k as f64 - 1.0)
        } else {
            1.0
        }
    }

    /// Per-point estimates m_i (infinite where all k distances tie).
    pub fn per_point(&self, graph: &KnnGraph) -> Result<Vec<f64>> {
        self.check(graph)?;
        let f = self.factor();
        Ok(inverse_per_point(graph, self.k)
            .into_iter()
            .map(|v| f / v)
            .collect())
    }

    fn check(&self, graph: &KnnGraph) -> Result<()> {
        let min = if self.unbiased { 3 } else { 2 };
        if self.k < min {
            return Err(Error::param(
                Param::K,
                format!(
                    "MLE{} needs k ≥ {min}, got {}",
                    if self.unbiased { " (unbiased)" } else { "" },
                    self.k
                ),
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
        let f = self.factor();
        let inv: Vec<f64> = inverse_per_point(graph, self.k)
            .into_iter()
            .map(|v| v / f)
            .collect();
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
            Aggregation::Median => {
                let m: Vec<f64> = inv
                    .iter()
                    .map(|&v| if v > 0.0 { 1.0 / v } else { f64::NAN })
                    .collect();
                let c = super::local::combine(&m, super::local::Combine::Median, "MLE")?;
                (c.value, f64::NAN, "median of m_i")
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
        let variant = if self.unbiased {
            format!("{variant}, with (k - 2) in the numerator (unbiased)")
        } else {
            variant.to_string()
        };
        Ok(Estimate {
            estimator: "mle".into(),
            variant,
            value,
            stderr: stderr.is_finite().then_some(stderr),
            params: json!({"k": self.k, "n_points": graph.n, "unbiased": self.unbiased}),
            notes,
        })
    }
}

/// Levina–Bickel on the whole set (skdim's `MLE(neighborhood_based=False)`): the `n` smallest distinct
/// values among the first `k` neighbour distances of every point, read as the distances of one
/// neighbourhood, (n − 1)/Σ_j log(R_n/R_j) (n − 2 when unbiased).
#[derive(Clone, Copy, Debug)]
pub struct GlobalMle {
    /// Neighbours per point whose distances are pooled (skdim's `K`, 5 by default).
    pub k: usize,
    /// How many of the smallest distinct pooled distances are read (skdim's `n_neighbors`, 20).
    pub n: usize,
    pub unbiased: bool,
}

impl Default for GlobalMle {
    fn default() -> Self {
        GlobalMle {
            k: 5,
            n: 20,
            unbiased: false,
        }
    }
}

impl GlobalMle {
    /// Fits on the graph.
    pub fn fit(&self, graph: &KnnGraph) -> Result<Estimate> {
        super::local::check_graph_k(graph, self.k, 1, "the global MLE")?;
        let min = if self.unbiased { 3 } else { 2 };
        if self.n < min {
            return Err(Error::range(
                Param::K,
                self.n,
                format!("n ≥ {min}"),
                "the global MLE reads the n smallest pooled distances",
            ));
        }
        let mut pooled: Vec<f64> = (0..graph.n)
            .flat_map(|i| graph.lengths(i).take(self.k).collect::<Vec<_>>())
            .filter(|&x| x > 0.0)
            .collect();
        pooled.sort_by(f64::total_cmp);
        pooled.dedup();
        if pooled.len() < self.n {
            return Err(Error::data(
                "input",
                format!(
                    "only {} distinct neighbour distances, the global MLE reads {}",
                    pooled.len(),
                    self.n
                ),
                "pass more rows or read fewer distances",
            ));
        }
        let rs = &pooled[..self.n];
        let rn = rs[self.n - 1];
        let sum: f64 = rs.iter().map(|&r| log_ratio(rn, r)).sum();
        let num = self.n as f64 - if self.unbiased { 2.0 } else { 1.0 };
        let value = num / sum;
        if !(value.is_finite() && value > 0.0) {
            return Err(Error::Numerical {
                what: "the global MLE".into(),
                problem: format!("estimate {value}"),
            });
        }
        Ok(Estimate {
            estimator: "mle_global".into(),
            variant: format!(
                "Levina-Bickel on the {} smallest distinct distances among the first {} neighbours of every point{}",
                self.n,
                self.k,
                if self.unbiased { ", (n - 2) in the numerator" } else { "" }
            ),
            value,
            // One neighbourhood of n distances: the MLE's asymptotic error d/√(n − 1).
            stderr: Some(value / (self.n as f64 - 1.0).sqrt()),
            params: json!({"K": self.k, "n_neighbors": self.n, "unbiased": self.unbiased}),
            notes: vec![],
        })
    }
}
