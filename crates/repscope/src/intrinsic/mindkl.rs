//! MiND_KL (Rozza, Lombardi, Ceruti, Casiraghi and Campadelli, "Minimum Neighbor Distance Estimators of
//! Intrinsic Dimension", ECML 2011; their MATLAB toolbox's `MiND_KL`). The normalised nearest-neighbour
//! distance ρ = r₁ / r_{k+1} of every point is compared, as a sample, with the same statistic of a seeded
//! uniform ball of the same size in each dimension 1..D, by Wang, Kulkarni and Verdú's nearest-neighbour
//! estimate of the Kullback–Leibler divergence in one dimension. The estimate is the dimension of least
//! divergence. Unlike MiND_ML, nothing assumes ρ's asymptotic density: the balls carry the finite sample and
//! its boundary effects with them.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;

use super::local::check_graph_k;
use super::Estimate;
use crate::error::{Error, Param, Result};
use crate::neighbors::KnnGraph;

/// MiND_KL.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MindKl {
    /// Neighbours: ρ reads the first and the (k + 1)-th.
    pub k: usize,
    /// The largest dimension compared (None: the number of columns, as the reference).
    pub max_dim: Option<usize>,
    /// The standard deviation, in dimensions, of a Gaussian smoothing of the divergence curve before its
    /// minimum is read (None: none, as the reference's default).
    pub sigma: Option<f64>,
    /// Stop the scan once this many dimensions past the running minimum have not lowered it (None: scan
    /// every dimension to D, as the reference).
    pub patience: Option<usize>,
    /// Seed of the balls (those of DANCo's calibration at the same seed).
    pub seed: u64,
}

impl Default for MindKl {
    fn default() -> Self {
        MindKl {
            k: 10,
            max_dim: None,
            sigma: None,
            patience: Some(10),
            seed: 0,
        }
    }
}

/// ρ = r₁ / r_{k+1} at every point of the graph whose (k + 1)-th distance is positive, sorted.
fn rhos(graph: &KnnGraph, k: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..graph.n)
        .filter_map(|i| {
            let d = graph.dists(i);
            let (r1, rk) = (graph.length(d[0]), graph.length(d[k]));
            (rk > 0.0 && r1.is_finite() && rk.is_finite()).then(|| r1 / rk)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Wang, Kulkarni and Verdú's one-dimensional estimate of D(P ‖ Q) from the sorted samples `p` of P (n ≥ 2)
/// and `q` of Q (m ≥ 1): (1/n) Σᵢ ln(νᵢ / (ρᵢ + ε)) + ln(m / (n − 1)), ρᵢ the distance from pᵢ to its nearest
/// other p, νᵢ that to its nearest q, ε the f64 epsilon (as the reference adds). Returned as its absolute
/// value, as the reference does (the estimate can fall below 0 at small divergences).
pub(crate) fn wang_kl_1d(p: &[f64], q: &[f64]) -> f64 {
    let (n, m) = (p.len(), q.len());
    let mut j = 0usize;
    let mut sum = 0.0f64;
    for (i, &x) in p.iter().enumerate() {
        let left = if i > 0 { x - p[i - 1] } else { f64::INFINITY };
        let right = if i + 1 < n {
            p[i + 1] - x
        } else {
            f64::INFINITY
        };
        let rho = left.min(right);
        // q[j] is the first q ≥ x (p is sorted, so j only moves forward).
        while j < m && q[j] < x {
            j += 1;
        }
        let above = if j < m { q[j] - x } else { f64::INFINITY };
        let below = if j > 0 { x - q[j - 1] } else { f64::INFINITY };
        let nu = above.min(below);
        sum += (nu / (rho + f64::EPSILON)).ln();
    }
    (sum / n as f64 + (m as f64 / (n as f64 - 1.0)).ln()).abs()
}

/// The balls' ρ kept for the process, at most this many values in all (64 MiB); past it the memo starts over.
const MEMO_VALUES: usize = 8 << 20;

type MemoKey = (usize, usize, usize, u64);

struct Memo {
    map: HashMap<MemoKey, Arc<Vec<f64>>>,
    values: usize,
}

fn memo() -> &'static Mutex<Memo> {
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    MEMO.get_or_init(|| {
        Mutex::new(Memo {
            map: HashMap::new(),
            values: 0,
        })
    })
}

/// The sorted ρ of a seeded uniform `dim`-ball of `n` points (memoised: it depends on n, dim, k and the
/// seed only, so fits of the same size share their balls).
fn ball_rhos(n: usize, dim: usize, k: usize, seed: u64) -> Result<Arc<Vec<f64>>> {
    let key = (n, dim, k, seed);
    if let Some(v) = memo().lock().ok().and_then(|m| m.map.get(&key).cloned()) {
        return Ok(v);
    }
    let (_, g) = super::danco::calibration_ball(n, dim, k, seed)?;
    let v = Arc::new(rhos(&g, k));
    if let Ok(mut m) = memo().lock() {
        if m.values + v.len() > MEMO_VALUES {
            m.map.clear();
            m.values = 0;
        }
        m.values += v.len();
        m.map.insert(key, Arc::clone(&v));
    }
    Ok(v)
}

/// The curve convolved with the normalised Gaussian of standard deviation `sigma` on −r..r, r = 4⌈σ/2⌉ (the
/// reference's kernel), the curve mirrored at both ends.
fn smooth(kl: &[f64], sigma: f64) -> Vec<f64> {
    let r = 4 * (sigma / 2.0).ceil() as i64;
    let h: Vec<f64> = (-r..=r)
        .map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = h.iter().sum();
    let len = kl.len() as i64;
    let at = |mut j: i64| {
        // Reflect (edge values repeated, as the reference's flipped copy) until inside.
        loop {
            if j < 0 {
                j = -j - 1;
            } else if j >= len {
                j = 2 * len - j - 1;
            } else {
                return kl[j as usize];
            }
        }
    };
    (0..len)
        .map(|i| (-r..=r).zip(&h).map(|(o, w)| w * at(i + o)).sum::<f64>() / total)
        .collect()
}

impl MindKl {
    /// Checks the parameters against data of `cols` columns; returns D.
    pub fn check(&self, cols: usize) -> Result<usize> {
        if self.k < 1 {
            return Err(Error::range(
                Param::K,
                self.k,
                "k ≥ 1 (10 by default)",
                "MiND_KL reads the first and the (k+1)-th neighbour distances",
            ));
        }
        let max_dim = self.max_dim.unwrap_or(cols);
        if max_dim < 1 {
            return Err(Error::range(
                Param::MaxDim,
                max_dim,
                "D ≥ 1 (the number of columns by default)",
                "MiND_KL compares dimensions 1..D",
            ));
        }
        if let Some(s) = self.sigma {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::range(
                    Param::Sigma,
                    s,
                    "σ > 0 (no smoothing by default)",
                    "the divergence curve is smoothed by a Gaussian of this width in dimensions",
                ));
            }
        }
        if self.patience == Some(0) {
            return Err(Error::range(
                Param::Patience,
                0,
                "patience ≥ 1 (10 by default; none scans every dimension)",
                "the scan stops once this many dimensions past the minimum have not lowered it",
            ));
        }
        Ok(max_dim)
    }

    /// Fits on the graph (k + 1 neighbours per point) of the distinct rows of data with `cols` columns.
    pub fn fit(&self, graph: &KnnGraph, cols: usize) -> Result<Estimate> {
        let max_dim = self.check(cols)?;
        check_graph_k(graph, self.k + 1, 2, "MiND_KL")?;
        let data = rhos(graph, self.k);
        if data.len() < 2 || data.first() == data.last() {
            return Err(Error::data(
                "input",
                "every point has the same ratio of its first to its (k+1)-th neighbour distance",
                "the data is quantised or too small: use a larger k or more rows",
            ));
        }
        let n = graph.n;
        let mut kl: Vec<f64> = Vec::with_capacity(max_dim);
        let mut best = (0usize, f64::INFINITY);
        for dim in 1..=max_dim {
            let sim = ball_rhos(n, dim, self.k, self.seed)?;
            let v = wang_kl_1d(&sim, &data);
            if v < best.1 {
                best = (dim, v);
            }
            kl.push(v);
            if self.patience.is_some_and(|p| dim - best.0 >= p) {
                break;
            }
        }
        let curve = match self.sigma {
            Some(s) => smooth(&kl, s),
            None => kl.clone(),
        };
        let (de, _) = curve
            .iter()
            .enumerate()
            .fold((0usize, f64::INFINITY), |b, (i, &v)| {
                if v < b.1 {
                    (i + 1, v)
                } else {
                    b
                }
            });
        if de == 0 {
            return Err(Error::Numerical {
                what: "MiND_KL".into(),
                problem: "no dimension has a finite divergence".into(),
            });
        }
        let mut notes = Vec::new();
        if kl.len() < max_dim {
            notes.push(format!(
                "compared dimensions 1..{} of 1..{max_dim}: the scan stopped {} dimensions past the minimum",
                kl.len(),
                kl.len() - best.0
            ));
        }
        if de == max_dim {
            notes.push(format!(
                "the estimate is at the comparison's upper bound D = {max_dim}: the dimension may be larger"
            ));
        }
        let left_out = n - data.len();
        if left_out > 0 {
            notes.push(format!(
                "{left_out} points whose (k+1)-th neighbour distance is 0 are left out"
            ));
        }
        Ok(Estimate {
            estimator: "mind_kl".into(),
            variant: format!(
                "MiND_KL: r1/r{} against seeded uniform balls of {n} points, least Kullback–Leibler divergence{}",
                self.k + 1,
                match self.sigma {
                    Some(s) => format!(" after Gaussian smoothing (σ = {s})"),
                    None => String::new(),
                }
            ),
            value: de as f64,
            stderr: None,
            params: json!({
                "k": self.k, "D": max_dim, "sigma": self.sigma, "patience": self.patience,
                "seed": self.seed, "compared_dims": kl.len(), "divergences": kl,
                "kl_divergence": curve[de - 1],
            }),
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wang_estimate_is_near_zero_for_one_law_and_grows_with_the_shift() {
        // Two large samples of the same uniform law: the divergence estimate is near 0. Q uniform on [0, 2]
        // and P on [0, 1]: D(P ‖ Q) = ln 2.
        let draw = |n: usize, scale: f64, seed: u64| {
            let mut v: Vec<f64> = (0..n)
                .map(|i| scale * crate::rng::Rng::stream(seed, i as u64).uniform())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let p = draw(20_000, 1.0, 1);
        let same = wang_kl_1d(&p, &draw(20_000, 1.0, 2));
        assert!(same < 0.03, "{same}");
        let d = wang_kl_1d(&p, &draw(40_000, 2.0, 3));
        assert!((d - 2f64.ln()).abs() < 0.03, "{d}");
    }

    #[test]
    fn smoothing_keeps_a_constant_and_a_line_inside() {
        let c = vec![3.0; 12];
        assert!(smooth(&c, 2.0).iter().all(|v| (v - 3.0).abs() < 1e-12));
        let line: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let s = smooth(&line, 1.0);
        // A symmetric kernel leaves a line unchanged away from the ends (r = 4).
        for i in 4..16 {
            assert!((s[i] - line[i]).abs() < 1e-12, "{i} {}", s[i]);
        }
    }
}
