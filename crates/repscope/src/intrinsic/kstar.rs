//! The adaptive-neighbourhood ID of DADApy (`Data.return_ids_kstar_gride` and `return_ids_kstar_binomial`;
//! Glielmo et al. 2022, Denti et al. 2022): each point's neighbourhood k* is the largest k up to which the
//! density looks constant, by a likelihood-ratio test between the point and each of its neighbours; the ID is
//! then fitted at those per-point scales (GRIDE with n₂ = k* rounded up to even and n₁ = n₂/2, or the
//! binomial estimator with r_k the k*-th distance), and k* recomputed at the new ID, n_iter times.
//!
//! The steps and constants are DADApy 0.3's: the χ²₁ threshold of the p-value α, GRIDE's outlier filter,
//! its bisection on [0.001, 1000] to 1e-7, the Fisher information error, and the binomial ratio
//! r = min(0.975, 0.2032^{1/d}).
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::twonn::TwoNN;
use super::Estimate;
use crate::error::{Error, Param, Result};
use crate::neighbors::KnnGraph;

/// Which estimator runs at the per-point scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KstarFit {
    Gride,
    Binomial,
}

/// The k*-adaptive ID.
#[derive(Clone, Copy, Debug)]
pub struct Kstar {
    pub fit: KstarFit,
    /// The starting ID (None: TwoNN's, as DADApy's `compute_id_2NN()`).
    pub initial_id: Option<f64>,
    pub n_iter: usize,
    /// The p-value of the density test.
    pub alpha: f64,
    /// Neighbours read per point (DADApy's maxk, min(100, N − 1) by default).
    pub maxk: usize,
}

impl Default for Kstar {
    fn default() -> Self {
        Kstar {
            fit: KstarFit::Gride,
            initial_id: None,
            n_iter: 5,
            alpha: 1e-6,
            maxk: 100,
        }
    }
}

/// The upper-α quantile of χ²₁ (DADApy's Dthr): the x with P(χ²₁ > x) = erfc(√(x/2)) = α, by bisection
/// (erfc keeps its relative precision in the far tail, so tiny α are exact too).
pub fn chi2_1_threshold(alpha: f64) -> f64 {
    let upper = |x: f64| libm::erfc((0.5 * x).sqrt());
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while upper(hi) > alpha && hi < 1e6 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if upper(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// k* of every point at dimension `d`: the largest k in 3..maxk−1 such that for every j ≤ k + 1 the test
/// statistic between the point's and its j-th neighbour's k-neighbour balls (k = j − 1) stays at or below
/// `threshold`. With v = r_kᵈ for both balls, the statistic is 2k·ln((v₁ + v₂)² / (4 v₁ v₂)) =
/// 4k·ln cosh(d·(ln r₁ − ln r₂)/2), written so that it neither overflows nor cancels.
pub fn kstar_at(graph: &KnnGraph, d: f64, maxk: usize, threshold: f64) -> Vec<usize> {
    kstar_from_logs(graph, &log_lengths(graph, maxk), d, maxk, threshold)
}

/// ln of every point's first `maxk` neighbour lengths, n × maxk, row-major.
fn log_lengths(graph: &KnnGraph, maxk: usize) -> Vec<f64> {
    (0..graph.n)
        .into_par_iter()
        .flat_map_iter(|i| graph.lengths(i).take(maxk).map(f64::ln).collect::<Vec<_>>())
        .collect()
}

fn kstar_from_logs(
    graph: &KnnGraph,
    ln_r: &[f64],
    d: f64,
    maxk: usize,
    threshold: f64,
) -> Vec<usize> {
    (0..graph.n)
        .into_par_iter()
        .map(|i| {
            let nb = graph.neighbors(i);
            let own = &ln_r[i * maxk..(i + 1) * maxk];
            let mut j = 4usize;
            while j < maxk {
                let k = j - 1;
                let other = nb[j - 1] as usize;
                let t = 0.5 * d * (own[k - 1] - ln_r[other * maxk + k - 1]);
                // ln cosh t = |t| + ln(1 + e^{−2|t|}) − ln 2.
                let a = t.abs();
                let lncosh = a + (-2.0 * a).exp().ln_1p() - std::f64::consts::LN_2;
                if 4.0 * k as f64 * lncosh > threshold {
                    break;
                }
                j += 1;
            }
            j - 1
        })
        .collect()
}

/// Σ f(i) over 0..n in fixed chunks summed in order: the same bits for any thread count.
fn chunked_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    const CHUNK: usize = 4096;
    let parts: Vec<f64> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| (c * CHUNK..((c + 1) * CHUNK).min(n)).map(&f).sum::<f64>())
        .collect();
    parts.iter().sum()
}

/// numpy's default (linear) percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// One GRIDE fit at per-point orders (n₁ᵢ, n₂ᵢ) with ratios μᵢ, as DADApy's single-scale GRIDE: (d, its
/// error, the log-likelihood).
fn gride_per_point(mu: &mut [f64], n1: &[usize], n2: &[usize]) -> (f64, f64, f64) {
    const EPS: f64 = f64::EPSILON;
    for m in mu.iter_mut() {
        if *m == 1.0 {
            *m = 1.0 + 10.0 * EPS;
        }
    }
    let mut sorted = mu.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (q95, q50) = (percentile(&sorted, 95.0), percentile(&sorted, 50.0));
    let cut = 20.0 * (q95 - q50) + q50;
    let kept: Vec<usize> = (0..mu.len()).filter(|&i| mu[i] < cut).collect();
    let nf = kept.len() as f64;
    let ln_mu: Vec<f64> = mu.iter().map(|m| m.ln()).collect();
    let g = |d: f64| {
        let s = chunked_sum(kept.len(), |t| {
            let i = kept[t];
            let (a, b, l) = (n1[i] as f64, n2[i] as f64, ln_mu[i]);
            let den = (1.0 - (-d * l).exp()).max(2.0 * 1e-7);
            ((1.0 - b + a) / den + b - 1.0) * l
        });
        s - (nf - 1.0) / d
    };
    let (mut d0, mut d1) = (0.001f64, 1000.0f64);
    let l1 = g(d1);
    while (d0 - d1).abs() > 1e-7 {
        let d2 = 0.5 * (d0 + d1);
        if g(d2) * l1 > 0.0 {
            d1 = d2;
        } else {
            d0 = d2;
        }
    }
    let d = 0.5 * (d0 + d1);
    // The Fisher information over every point (DADApy's convention: N / d² plus the ratios' terms).
    let eps2 = 5.0 * EPS;
    let info = mu.len() as f64 / (d * d)
        + chunked_sum(mu.len(), |i| {
            let (l, p) = (ln_mu[i], (-d * ln_mu[i]).exp());
            let den = (1.0 - p).max(eps2);
            (n2[i] - n1[i] - 1) as f64 * (l / den).powi(2) * p
        });
    let err = info.powf(-0.5);
    let ll = (nf - 1.0) * d.ln()
        + chunked_sum(kept.len(), |t| {
            let i = kept[t];
            let (a, b, l) = (n1[i], n2[i], ln_mu[i]);
            (b - a - 1) as f64 * (d * l).exp_m1().ln()
                - ln_beta((b - a) as f64, a as f64)
                - ((b - 1) as f64 * d + 1.0) * l
        });
    (d, err, ll)
}

fn ln_beta(a: f64, b: f64) -> f64 {
    libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b)
}

/// The outcome of the iteration.
#[derive(Clone, Debug)]
pub struct KstarFitResult {
    pub estimate: Estimate,
    /// The final k* of every point.
    pub kstar: Vec<usize>,
}

impl Kstar {
    /// Checks the parameters that need no data.
    pub fn check(&self) -> Result<()> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::range(
                Param::Alpha,
                self.alpha,
                "a p-value in (0, 1) such as 1e-6",
                "k* tests each neighbour's density at this level",
            ));
        }
        if self.n_iter < 1 {
            return Err(Error::range(
                Param::Draws,
                self.n_iter,
                "n_iter ≥ 1 (5 by default)",
                "the k* iteration fits the ID at least once",
            ));
        }
        if let Some(d) = self.initial_id {
            if !(d.is_finite() && d > 0.0) {
                return Err(Error::range(
                    Param::Dim,
                    d,
                    "a positive dimension",
                    "the k* iteration starts from this ID",
                ));
            }
        }
        if self.maxk < 5 {
            return Err(Error::range(
                Param::K,
                self.maxk,
                "maxk ≥ 5 (min(100, N − 1) by default)",
                "k* tests neighbourhoods of 3 neighbours and more",
            ));
        }
        Ok(())
    }

    /// Fits on a graph with at least `maxk` neighbours per point.
    pub fn fit(&self, graph: &KnnGraph) -> Result<KstarFitResult> {
        self.check()?;
        super::local::check_graph_k(graph, self.maxk, 5, "the k* estimator")?;
        let n = graph.n;
        let maxk = self.maxk;
        // Neighbour distances of 0 (coinciding rows) have no density; the graph is of distinct rows.
        let threshold = chi2_1_threshold(self.alpha);
        let mut id = match self.initial_id {
            Some(d) => d,
            None => TwoNN::default().fit(graph)?.value,
        };
        let mut ids = vec![id];
        let mut errs: Vec<Option<f64>> = vec![None];
        let mut lls = vec![0.0f64];
        let ln_r = log_lengths(graph, maxk);
        let mut kstar = kstar_from_logs(graph, &ln_r, id, maxk, threshold);
        let mut scale = 0.0;
        let mut err = f64::NAN;
        for _ in 0..self.n_iter {
            match self.fit {
                KstarFit::Gride => {
                    let n2: Vec<usize> = kstar.iter().map(|&k| k + (k % 2)).collect();
                    let n1: Vec<usize> = n2.iter().map(|&k| k / 2).collect();
                    let mut mu: Vec<f64> = (0..n)
                        .map(|i| {
                            let d = graph.dists(i);
                            graph.length(d[n2[i] - 1]) / graph.length(d[n1[i] - 1])
                        })
                        .collect();
                    let (d, e, ll) = gride_per_point(&mut mu, &n1, &n2);
                    id = d;
                    err = e;
                    lls.push(ll);
                    scale = (0..n)
                        .map(|i| {
                            let d = graph.dists(i);
                            graph.length(d[n1[i] - 1]) + graph.length(d[n2[i] - 1])
                        })
                        .sum::<f64>()
                        / (2.0 * n as f64);
                }
                KstarFit::Binomial => {
                    let r = 0.2032f64.powf(1.0 / id).min(0.975);
                    let (mut inside, mut trials, mut sum_rk) = (0u64, 0u64, 0.0f64);
                    for (i, &k) in kstar.iter().enumerate() {
                        let rk = graph.length(graph.dists(i)[k - 1]);
                        let rn = r * rk;
                        inside += graph.lengths(i).take(maxk).filter(|&l| l < rn).count() as u64;
                        trials += (k - 1) as u64;
                        sum_rk += rk;
                    }
                    let (e_n1, e_k1) = (inside as f64 / n as f64, trials as f64 / n as f64);
                    if inside == 0 {
                        return Err(Error::data(
                            "input",
                            "no point has a neighbour within r times its k*-th distance",
                            "the k* neighbourhoods are too small: check the input for quantised rows",
                        ));
                    }
                    let ln_r = r.ln();
                    id = (e_n1 / e_k1).ln() / ln_r;
                    err = ((r.powf(-id) - 1.0) / (e_k1 * n as f64 * ln_r * ln_r)).sqrt();
                    scale = 0.5 * (1.0 + r) * sum_rk / n as f64;
                }
            }
            if !(id.is_finite() && id > 0.0) {
                return Err(Error::data(
                    "input",
                    format!("the k* iteration reached an ID of {id}"),
                    "check the input for quantised or duplicated rows",
                ));
            }
            ids.push(id);
            errs.push(Some(err));
            kstar = kstar_from_logs(graph, &ln_r, id, maxk, threshold);
        }
        let capped = kstar.iter().filter(|&&k| k == maxk - 1).count();
        let mut notes = Vec::new();
        if capped > 0 {
            notes.push(format!(
                "k* reached its cap maxk − 1 = {} at {capped} of {n} points: more neighbours (maxk) would widen them",
                maxk - 1
            ));
        }
        let mean_k = kstar.iter().sum::<usize>() as f64 / n as f64;
        let name = match self.fit {
            KstarFit::Gride => "kstar_gride",
            KstarFit::Binomial => "kstar_binomial",
        };
        let mut params = json!({
            "alpha": self.alpha, "n_iter": self.n_iter, "maxk": maxk,
            "initial_id": self.initial_id, "ids": ids, "errors": errs, "scale": scale,
            "mean_kstar": mean_k, "threshold": threshold,
        });
        if self.fit == KstarFit::Gride {
            params["log_likelihoods"] = json!(lls);
        }
        Ok(KstarFitResult {
            estimate: Estimate {
                estimator: name.into(),
                variant: format!(
                    "{} at each point's adaptive neighbourhood k* (density test at p = {}), {} iterations",
                    match self.fit {
                        KstarFit::Gride => "GRIDE",
                        KstarFit::Binomial => "the binomial estimator",
                    },
                    self.alpha,
                    self.n_iter
                ),
                value: id,
                stderr: Some(err).filter(|e| e.is_finite()),
                params,
                notes,
            },
            kstar,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_the_chi2_quantile() {
        // scipy.stats.chi2.isf(1e-6, 1) and isf(0.05, 1).
        assert!((chi2_1_threshold(1e-6) - 23.928126976934827).abs() < 1e-12);
        assert!((chi2_1_threshold(0.05) - 3.8414588206941285).abs() < 1e-12);
        assert!((chi2_1_threshold(1e-300) - 1373.8726312223944).abs() < 1e-9);
    }
}
