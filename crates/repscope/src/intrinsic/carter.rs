//! The kNN graph-length estimator of Carter, Raich and Hero (2010), as skdim's `KNN(k=None, ps=None, M=1,
//! gamma=2)`: for random samples of p points (drawn with replacement), L(p) is the total γ-powered length of
//! each sampled point's k nearest others within the sample. On a d-manifold L grows as p^{(d − γ)/d}; the
//! dimension is the m in 1..D whose least-squares fit L ≈ c·p^{(m − γ)/m} leaves the smallest residual.
//! Samples come from the seeded generator, so the estimate is reproducible (skdim's follows numpy's
//! `RandomState` and agrees in distribution only).
use serde_json::json;

use super::local::RowsF64;
use super::Estimate;
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::Metric;
use crate::rng::Rng;

/// The kNN graph-length estimator.
#[derive(Clone, Debug)]
pub struct GraphLength {
    /// Neighbours per sampled point (skdim: 2).
    pub k: usize,
    /// The sample sizes (skdim: k + 1 .. k + 4).
    pub ps: Vec<usize>,
    /// Samples per size.
    pub m: usize,
    /// The power of the edge lengths.
    pub gamma: f64,
    pub seed: u64,
}

impl Default for GraphLength {
    fn default() -> Self {
        GraphLength {
            k: 2,
            ps: vec![3, 4, 5, 6],
            m: 1,
            gamma: 2.0,
            seed: 0,
        }
    }
}

/// For each m in 1..=max_dim, the residual of the least-squares fit of `lengths` (one row of `m_rep`
/// samples per size in `ps`) by c·p^{(m − γ)/m}, c fitted in closed form.
pub fn residuals(lengths: &[Vec<f64>], ps: &[usize], gamma: f64, max_dim: usize) -> Vec<f64> {
    (1..=max_dim)
        .map(|m| {
            let alpha = (m as f64 - gamma) / m as f64;
            let pa: Vec<f64> = ps.iter().map(|&p| (p as f64).powf(alpha)).collect();
            let reps = lengths.first().map_or(1, |r| r.len()) as f64;
            let num: f64 = pa
                .iter()
                .zip(lengths)
                .map(|(a, row)| a * row.iter().sum::<f64>())
                .sum();
            let den: f64 = pa.iter().map(|a| a * a).sum::<f64>() * reps;
            let c = num / den;
            pa.iter()
                .zip(lengths)
                .map(|(a, row)| row.iter().map(|l| (l - c * a).powi(2)).sum::<f64>())
                .sum()
        })
        .collect()
}

impl GraphLength {
    fn check(&self, n: usize) -> Result<()> {
        if self.k < 1 {
            return Err(Error::range(
                Param::K,
                self.k,
                "k ≥ 1 (2 by default)",
                "the graph length sums each sampled point's k nearest others",
            ));
        }
        if self.ps.is_empty() || self.ps.iter().any(|&p| p <= self.k || p > n) {
            return Err(Error::range(
                Param::SampleSizes,
                format!("{:?}", self.ps),
                format!("sizes p with k < p ≤ the number of rows ({n})"),
                "each sample must hold a point and its k nearest others",
            ));
        }
        if self.m < 1 {
            return Err(Error::range(
                Param::M,
                self.m,
                "M ≥ 1",
                "the graph length averages M samples per size",
            ));
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(Error::range(
                Param::Gamma,
                self.gamma,
                "γ > 0 (2 by default)",
                "the edge lengths are raised to the power γ",
            ));
        }
        Ok(())
    }

    /// Fits on the rows of `data` (distinct rows) under `metric`.
    pub fn fit(&self, data: &Matrix, metric: Metric) -> Result<Estimate> {
        let n = data.rows();
        self.check(n)?;
        let rows = RowsF64::new(data, metric)?;
        let d = data.cols();
        let mut rng = Rng::new(self.seed ^ 0xCA27_E401);
        let mut lengths = vec![vec![0f64; self.m]; self.ps.len()];
        let (mut a, mut b) = (vec![0f64; d], vec![0f64; d]);
        for (row_l, &p) in lengths.iter_mut().zip(&self.ps) {
            for slot in row_l.iter_mut() {
                let sample: Vec<usize> = (0..p).map(|_| rng.below(n as u64) as usize).collect();
                // All p × p distances of the sample (a point drawn twice is a neighbour at distance 0,
                // as in skdim; only the point's own zero is dropped).
                let mut dist = vec![0f64; p * p];
                for x in 0..p {
                    rows.fill(sample[x], &mut a);
                    for y in x + 1..p {
                        rows.fill(sample[y], &mut b);
                        let s: f64 = a.iter().zip(&b).map(|(u, v)| (u - v) * (u - v)).sum();
                        dist[x * p + y] = s.sqrt();
                        dist[y * p + x] = s.sqrt();
                    }
                }
                let mut total = 0.0f64;
                let mut row = Vec::with_capacity(p - 1);
                for x in 0..p {
                    row.clear();
                    row.extend((0..p).filter(|&y| y != x).map(|y| dist[x * p + y]));
                    row.sort_by(f64::total_cmp);
                    total += row[..self.k]
                        .iter()
                        .map(|l| l.powf(self.gamma))
                        .sum::<f64>();
                }
                *slot = total;
            }
        }
        let eps = residuals(&lengths, &self.ps, self.gamma, d);
        let (best, residual) =
            eps.iter()
                .enumerate()
                .fold((0usize, f64::INFINITY), |acc, (i, &e)| {
                    if e < acc.1 {
                        (i, e)
                    } else {
                        acc
                    }
                });
        if !residual.is_finite() {
            return Err(Error::data(
                data.name(),
                "the graph lengths of the samples are all zero",
                "the sampled rows coincide: check the input",
            ));
        }
        let mut notes = vec![];
        if self.ps.iter().max().copied().unwrap_or(0) < 30 {
            notes.push(
                "samples of a few points make this estimate noisy: pass larger sample sizes (ps) for a stable one"
                    .into(),
            );
        }
        Ok(Estimate {
            estimator: "knn".into(),
            variant: format!(
                "kNN graph length (Carter et al.), k = {}, γ = {}, samples of {:?} points",
                self.k, self.gamma, self.ps
            ),
            value: (best + 1) as f64,
            stderr: None,
            params: json!({
                "k": self.k, "ps": self.ps, "M": self.m, "gamma": self.gamma, "seed": self.seed,
                "residual": residual,
            }),
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residuals_vanish_at_the_planted_dimension() {
        // Lengths exactly c·p^{(4 − 2)/4}: the fit at m = 4 is exact.
        let ps = [10usize, 20, 40, 80];
        let lengths: Vec<Vec<f64>> = ps
            .iter()
            .map(|&p| vec![3.0 * (p as f64).powf(0.5)])
            .collect();
        let eps = residuals(&lengths, &ps, 2.0, 8);
        let best = eps
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best + 1, 4);
        assert!(eps[3] < 1e-20);
    }
}
