//! Levina–Bickel maximum likelihood (2005), aggregated by MacKay and Ghahramani, with skdim's Gaussian noise
//! model as an option.
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
    noise: Option<f64>,
}

impl Default for Mle {
    fn default() -> Self {
        Mle {
            k: 20,
            aggregation: Aggregation::MacKayGhahramani,
            unbiased: false,
            noise: None,
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

/// Gauss–Kronrod 7/15 nodes and weights on [−1, 1] (the Kronrod nodes; every other one is a Gauss node).
const GK_NODES: [f64; 8] = [
    0.991_455_371_120_812_6,
    0.949_107_912_342_758_5,
    0.864_864_423_359_769_1,
    0.741_531_185_599_394_4,
    0.586_087_235_467_691_1,
    0.405_845_151_377_397_2,
    0.207_784_955_007_898_5,
    0.0,
];
const GK_KRONROD: [f64; 8] = [
    0.022_935_322_010_529_22,
    0.063_092_092_629_978_55,
    0.104_790_010_322_250_2,
    0.140_653_259_715_525_9,
    0.169_004_726_639_267_9,
    0.190_350_578_064_785_4,
    0.204_432_940_075_298_9,
    0.209_482_141_084_728,
];
const GK_GAUSS: [f64; 4] = [
    0.129_484_966_168_869_7,
    0.279_705_391_489_276_7,
    0.381_830_050_505_118_9,
    0.417_959_183_673_469_4,
];

/// ∫_a^b f by adaptive Gauss–Kronrod 7/15 bisection to an absolute error `tol` (depth-limited).
fn integrate(f: &dyn Fn(f64) -> f64, a: f64, b: f64, tol: f64, depth: u32) -> f64 {
    let (c, h) = (0.5 * (a + b), 0.5 * (b - a));
    let (mut k, mut g) = (GK_KRONROD[7] * f(c), GK_GAUSS[3] * f(c));
    for i in 0..7 {
        let x = h * GK_NODES[i];
        let s = f(c - x) + f(c + x);
        k += GK_KRONROD[i] * s;
        if i % 2 == 1 {
            g += GK_GAUSS[i / 2] * s;
        }
    }
    let (k, g) = (k * h, g * h);
    if (k - g).abs() <= tol || depth == 0 {
        return k;
    }
    integrate(f, a, c, 0.5 * tol, depth - 1) + integrate(f, c, b, 0.5 * tol, depth - 1)
}

/// skdim's Gaussian noise model ("dnoiseGaussH", Haro et al. 2008): the observed distance R_j is the true
/// one plus N(0, σ²) noise, so log(R_k/R_j) is replaced by its expectation E_j = ∫ φ_σ(x − R_j) log(R_k/x) dx /
/// ∫ φ_σ(x − R_j) dx over x in (0, R_k + 100σ). The denominator is the normal CDF difference; the numerator is
/// integrated to 1e-12 relative over R_j ± 12σ (φ is below 1e-31 of its peak outside). Returns Σ_{j<k} E_j.
fn noisy_log_sum(r: &[f64], sigma: f64) -> f64 {
    let k = r.len();
    let rk = r[k - 1];
    let upper = rk + 100.0 * sigma;
    let s2 = sigma * std::f64::consts::SQRT_2;
    r[..k - 1]
        .iter()
        .map(|&rj| {
            let den = 0.5 * (libm::erfc(-rj / s2) - libm::erfc((upper - rj) / s2));
            let (a, b) = ((rj - 12.0 * sigma).max(0.0), (rj + 12.0 * sigma).min(upper));
            let f = |x: f64| {
                if x <= 0.0 {
                    0.0
                } else {
                    let z = (x - rj) / sigma;
                    (-0.5 * z * z).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
                        * (rk / x).ln()
                }
            };
            let scale = den * (rk / rj.max(sigma)).ln().abs().max(1.0);
            integrate(&f, a, b, 1e-12 * scale, 40) / den
        })
        .sum()
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
    /// skdim's Gaussian noise model with standard deviation σ (`dnoise="dnoiseGaussH"`, `sigma`).
    pub fn noise(mut self, sigma: Option<f64>) -> Self {
        self.noise = sigma;
        self
    }

    /// 1/m_i without the numerator's correction, with the noise model when set.
    fn inverse(&self, graph: &KnnGraph) -> Vec<f64> {
        match self.noise {
            None => inverse_per_point(graph, self.k),
            Some(sigma) => {
                use rayon::prelude::*;
                (0..graph.n)
                    .into_par_iter()
                    .map(|i| {
                        let r: Vec<f64> = graph.lengths(i).take(self.k).collect();
                        noisy_log_sum(&r, sigma) / (self.k - 1) as f64
                    })
                    .collect()
            }
        }
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
        Ok(self.inverse(graph).into_iter().map(|v| f / v).collect())
    }

    fn check(&self, graph: &KnnGraph) -> Result<()> {
        if let Some(sigma) = self.noise {
            if !(sigma.is_finite() && sigma > 0.0) {
                return Err(Error::range(
                    Param::Sigma,
                    sigma,
                    "σ > 0, in the data's units",
                    "the noise model spreads each distance by a normal of standard deviation σ",
                ));
            }
        }
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
        let inv: Vec<f64> = self.inverse(graph).into_iter().map(|v| v / f).collect();
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
        let mut variant = if self.unbiased {
            format!("{variant}, with (k - 2) in the numerator (unbiased)")
        } else {
            variant.to_string()
        };
        if let Some(sigma) = self.noise {
            variant.push_str(&format!(", Gaussian distance noise σ = {sigma}"));
        }
        Ok(Estimate {
            estimator: "mle".into(),
            variant,
            value,
            stderr: stderr.is_finite().then_some(stderr),
            params: json!({"k": self.k, "n_points": graph.n, "unbiased": self.unbiased, "sigma": self.noise}),
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
