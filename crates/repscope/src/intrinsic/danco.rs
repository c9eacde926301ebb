//! DANCo (Ceruti et al. 2014), as skdim's `DANCo(k=10)` and R's `intrinsicDimension::dancoDimEst`: three
//! statistics of the data are compared with those of uniform balls of every dimension 1..D and the same
//! number of points, by the Kullback–Leibler divergence of the distributions they summarise.
//! - d̂, MiND_MLk on ρ = r₁ / r_{k+1} (the continuous maximum on (0, D]);
//! - ν̄ and τ̄, the mean location and concentration of the von Mises fit to the C(k, 2) angles between each
//!   point's k neighbour vectors.
//!
//! The estimate is the calibration dimension of least divergence or, by default ("fractal"), the minimum
//! of the cubic spline through the divergences. The calibration balls are seeded and drawn here, so the
//! result is deterministic; skdim's come from numpy's global-state-free `RandomState`, so the two agree in
//! distribution, and exactly when skdim's calibration statistics are handed in.
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::bayes::digamma;
use super::local::{check_graph_k, RowsF64};
use super::mind::{mind_mlk, rho_logs};
use super::Estimate;
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::{exact_knn, KnnGraph, Metric};

/// The statistics DANCo compares: MiND_MLk's d̂ and the mean von Mises location and concentration of the
/// neighbour angles (skdim's `dhat`, `mu_nu`, `mu_tau`; R's calibration table holds the same three).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DancoStats {
    pub dhat: f64,
    pub mu_nu: f64,
    pub mu_tau: f64,
}

/// DANCo.
#[derive(Clone, Debug)]
pub struct Danco {
    /// Neighbours per point (ρ reads the first and the (k + 1)-th; the angles the first k).
    pub k: usize,
    /// The largest dimension calibrated (None: the number of columns, as skdim).
    pub max_dim: Option<usize>,
    /// The spline minimum instead of the integer argmin.
    pub fractal: bool,
    /// Seed of the calibration balls.
    pub seed: u64,
    /// Calibration statistics for dimensions 1, 2, … handed in (skdim's `calibration_data`); dimensions
    /// beyond them are simulated, or read from the table.
    pub calibration: Option<Vec<DancoStats>>,
    /// Calibrate on the compiled-in [`FitTable`] instead of simulated balls (skdim's `ver="DANCoFit"`):
    /// k = 10, 20 ≤ N ≤ 5,000, D ≤ 100 (D defaults to the smaller of the columns and 100).
    pub table: bool,
}

impl Default for Danco {
    fn default() -> Self {
        Danco {
            k: 10,
            max_dim: None,
            fractal: true,
            seed: 0,
            calibration: None,
            table: false,
        }
    }
}

/// Consecutive calibration dimensions past the minimum whose lower bound exceeds it before the search stops.
const PRUNE_RUN: usize = 5;

type MemoKey = (usize, usize, usize, u64);

fn memo() -> &'static Mutex<HashMap<MemoKey, DancoStats>> {
    static MEMO: OnceLock<Mutex<HashMap<MemoKey, DancoStats>>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A(τ)⁻¹, the inverse of the von Mises mean resultant length I₁(τ)/I₀(τ), by the piecewise approximation of
/// Best and Fisher (1981) that DANCo uses.
fn a_inverse(eta: f64) -> f64 {
    if eta < 0.53 {
        2.0 * eta + eta.powi(3) + 5.0 * eta.powi(5) / 6.0
    } else if eta < 0.85 {
        -0.4 + 1.39 * eta + 0.43 / (1.0 - eta)
    } else {
        1.0 / (eta.powi(3) - 4.0 * eta * eta + 3.0 * eta)
    }
}

/// ln I₀(x) and I₁(x)/I₀(x) for x ≥ 0: the power series (all terms positive, so no cancellation) up to
/// x = 500, beyond it the asymptotic expansion, accurate there to far below f64's precision.
fn bessel_i0_ln_and_ratio(x: f64) -> (f64, f64) {
    if x <= 500.0 {
        let q = 0.25 * x * x;
        let (mut t0, mut t1) = (1.0f64, 0.5 * x);
        let (mut s0, mut s1) = (t0, t1);
        let mut m = 1.0f64;
        loop {
            t0 *= q / (m * m);
            t1 *= q / (m * (m + 1.0));
            s0 += t0;
            s1 += t1;
            if t0 <= 1e-17 * s0 && t1 <= 1e-17 * s1.max(f64::MIN_POSITIVE) {
                break;
            }
            m += 1.0;
        }
        (s0.ln(), s1 / s0)
    } else {
        // I_ν(x) ~ e^x / √(2πx) · Σ_j (−1)^j a_j(ν) / x^j, a_j(ν) = Π_{i ≤ j} (4ν² − (2i − 1)²) / (j! 8^j).
        let series = |nu: f64| {
            let mu = 4.0 * nu * nu;
            let (mut term, mut sum) = (1.0f64, 1.0f64);
            for j in 1..12 {
                let jf = j as f64;
                term *= -(mu - (2.0 * jf - 1.0).powi(2)) / (jf * 8.0 * x);
                sum += term;
            }
            sum
        };
        let (s0, s1) = (series(0.0), series(1.0));
        (
            x - 0.5 * (2.0 * std::f64::consts::PI * x).ln() + s0.ln(),
            s1 / s0,
        )
    }
}

/// The divergence between the data's statistics and a calibration dimension's, R's `KL` in DANCo: that of
/// the MiND densities of ρ, plus that of the two von Mises distributions of the angles.
pub fn divergence(data: &DancoStats, cal: &DancoStats, k: usize) -> f64 {
    kl_rho(data.dhat, cal.dhat, k) + kl_angles(data, cal)
}

/// The divergence of the MiND density of ρ at dimension `dcal` from that at `dhat`: H_k·q − ln q −
/// (k − 1) Σ_{i=0..k} (−1)^i C(k, i) ψ(1 + i/q), q = dcal/d̂, as R's DANCo writes it: the divergence plus the
/// constant H_k + (k − 1)/k, its value at q = 1 (the minimum).
fn kl_rho(dhat: f64, dcal: f64, k: usize) -> f64 {
    let h_k: f64 = (1..=k).map(|i| 1.0 / i as f64).sum();
    let q = dcal / dhat;
    let mut sum = 0.0f64;
    let mut binom = 1.0f64;
    for i in 0..=k {
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        sum += sign * binom * digamma(1.0 + i as f64 / q);
        binom = binom * (k - i) as f64 / (i + 1) as f64;
    }
    h_k * q - q.ln() - (k as f64 - 1.0) * sum
}

/// The divergence of the von Mises (ν₂, τ₂) from (ν₁, τ₁): ln(I₀(τ₂)/I₀(τ₁)) + A(τ₁)(τ₁ − τ₂ cos(ν₁ − ν₂)).
fn kl_angles(data: &DancoStats, cal: &DancoStats) -> f64 {
    let (ln1, ratio1) = bessel_i0_ln_and_ratio(data.mu_tau);
    let (ln2, _) = bessel_i0_ln_and_ratio(cal.mu_tau);
    ln2 - ln1 + ratio1 * (data.mu_tau - cal.mu_tau * (data.mu_nu - cal.mu_nu).cos())
}

/// The statistics of `data` (the rows of `graph`, which has at least k + 1 neighbours per point); d̂ is searched
/// on (0, max_dim].
pub fn statistics(data: &Matrix, graph: &KnnGraph, k: usize, max_dim: usize) -> Result<DancoStats> {
    check_graph_k(graph, k + 1, 2, "DANCo")?;
    let (logs, _) = rho_logs(graph, k);
    if logs.len() < 2 {
        return Err(Error::data(
            data.name(),
            "the first and (k+1)-th neighbour distances tie at (almost) every point",
            "the data is quantised: use a larger k",
        ));
    }
    let dhat = mind_mlk(logs, k, max_dim);
    let rows = RowsF64::new(data, graph.metric)?;
    let d = data.cols();
    let per_point: Vec<(f64, f64)> = (0..graph.n)
        .into_par_iter()
        .map_init(
            || (vec![0f64; d], vec![0f64; k * d], vec![0f64; k]),
            |(centre, vecs, norms), i| {
                rows.fill(i, centre);
                for (a, &j) in graph.neighbors(i)[..k].iter().enumerate() {
                    let v = &mut vecs[a * d..(a + 1) * d];
                    rows.fill(j as usize, v);
                    let mut s = 0.0f64;
                    for (x, c) in v.iter_mut().zip(centre.iter()) {
                        *x -= c;
                        s += *x * *x;
                    }
                    norms[a] = s.sqrt();
                }
                let (mut sum_cos, mut sum_sin, mut pairs) = (0.0f64, 0.0f64, 0usize);
                for a in 0..k {
                    for b in a + 1..k {
                        // A neighbour at distance 0 (rows that coincide) has no direction.
                        if norms[a] == 0.0 || norms[b] == 0.0 {
                            continue;
                        }
                        let va = &vecs[a * d..(a + 1) * d];
                        let vb = &vecs[b * d..(b + 1) * d];
                        let dot: f64 = va.iter().zip(vb).map(|(x, y)| x * y).sum();
                        // Clipped before arccos: rounding can carry |cos| just past 1.
                        let c = (dot / (norms[a] * norms[b])).clamp(-1.0, 1.0);
                        let theta = c.acos();
                        sum_cos += theta.cos();
                        sum_sin += theta.sin();
                        pairs += 1;
                    }
                }
                let p = pairs as f64;
                // arctan, not atan2, as DANCo's definition: ν lies in (−π/2, π/2).
                let nu = (sum_sin / sum_cos).atan();
                let eta = ((sum_cos / p).powi(2) + (sum_sin / p).powi(2)).sqrt();
                (nu, a_inverse(eta))
            },
        )
        .collect();
    // Points without a pair of directions (every neighbour coincides with them) have no angles.
    let per_point: Vec<(f64, f64)> = per_point
        .into_iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let n = per_point.len() as f64;
    let mu_nu = per_point.iter().map(|p| p.0).sum::<f64>() / n;
    let mut mu_tau = per_point.iter().map(|p| p.1).sum::<f64>() / n;
    if d == 1 {
        mu_tau = 1.0;
    }
    Ok(DancoStats {
        dhat,
        mu_nu,
        mu_tau,
    })
}

/// DANCo's precomputed calibration (scikit-dimension's `ver="DANCoFit"`): the mean of the three statistics
/// over seeded uniform balls, for each dimension 1..len and each size N of `cardinalities`, at one k. It is
/// written by `examples/danco_fit_table.rs` and compiled in; [`FitTable::at`] interpolates it in N.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitTable {
    pub k: usize,
    /// Balls averaged per cell.
    pub iterations: usize,
    /// Their seeds (those of [`ball_statistics`]).
    pub seeds: String,
    /// The sizes N tabulated, increasing.
    pub cardinalities: Vec<usize>,
    /// [dimension − 1][size index].
    pub dhat: Vec<Vec<f64>>,
    pub mu_nu: Vec<Vec<f64>>,
    pub mu_tau: Vec<Vec<f64>>,
}

impl FitTable {
    /// The table compiled into the engine (k = 10, dimensions 1..100, N = 20..5,000).
    pub fn builtin() -> &'static FitTable {
        static TABLE: OnceLock<FitTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            serde_json::from_str(include_str!("danco_fit_table.json"))
                .unwrap_or_else(|e| unreachable!("the compiled-in DANCoFit table parses: {e}"))
        })
    }

    /// The largest dimension tabulated.
    pub fn max_dim(&self) -> usize {
        self.dhat.len()
    }

    /// The statistics of dimension `dim` at `n` points: the shape-preserving cubic (PCHIP, as scipy's
    /// `PchipInterpolator`) through the tabulated sizes, exact at them. `n` must lie within the table.
    pub fn at(&self, n: usize, dim: usize) -> DancoStats {
        let x: Vec<f64> = self.cardinalities.iter().map(|&c| c as f64).collect();
        let i = dim - 1;
        DancoStats {
            dhat: pchip(&x, &self.dhat[i], n as f64),
            mu_nu: pchip(&x, &self.mu_nu[i], n as f64),
            mu_tau: pchip(&x, &self.mu_tau[i], n as f64),
        }
    }
}

/// The PCHIP interpolant of (x, y) at `at` (x increasing, at least two knots, `at` within them): Fritsch and
/// Carlson's slopes as scipy computes them (a weighted harmonic mean inside, zero at a local extremum, the
/// shape-preserving three-point formula at the ends), then the cubic Hermite piece.
fn pchip(x: &[f64], y: &[f64], at: f64) -> f64 {
    let n = x.len();
    let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let delta: Vec<f64> = (0..n - 1).map(|i| (y[i + 1] - y[i]) / h[i]).collect();
    // numpy's sign: 0 at 0.
    let sign = |v: f64| {
        if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let slope = |i: usize| -> f64 {
        if n == 2 {
            return delta[0];
        }
        let end = |h0: f64, h1: f64, d0: f64, d1: f64| {
            let d = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1);
            if sign(d) != sign(d0) {
                0.0
            } else if sign(d0) != sign(d1) && d.abs() > 3.0 * d0.abs() {
                3.0 * d0
            } else {
                d
            }
        };
        if i == 0 {
            return end(h[0], h[1], delta[0], delta[1]);
        }
        if i == n - 1 {
            return end(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3]);
        }
        let (d0, d1) = (delta[i - 1], delta[i]);
        if d0 == 0.0 || d1 == 0.0 || sign(d0) != sign(d1) {
            return 0.0;
        }
        let w1 = 2.0 * h[i] + h[i - 1];
        let w2 = h[i] + 2.0 * h[i - 1];
        (w1 + w2) / (w1 / d0 + w2 / d1)
    };
    let i = match x.iter().rposition(|&v| v <= at) {
        Some(i) if i + 1 < n => i,
        Some(_) => return y[n - 1],
        None => return y[0],
    };
    let t = (at - x[i]) / h[i];
    let (m0, m1) = (slope(i) * h[i], slope(i + 1) * h[i]);
    let (t2, t3) = (t * t, t * t * t);
    (2.0 * t3 - 3.0 * t2 + 1.0) * y[i]
        + (t3 - 2.0 * t2 + t) * m0
        + (-2.0 * t3 + 3.0 * t2) * y[i + 1]
        + (t3 - t2) * m1
}

/// The seeded uniform `dim`-ball of `n` points that calibrates dimension `dim`, with its graph of k + 1
/// neighbours: DANCo's calibration and MiND_KL's comparison read the same balls.
pub(crate) fn calibration_ball(
    n: usize,
    dim: usize,
    k: usize,
    seed: u64,
) -> Result<(Matrix, KnnGraph)> {
    let ball = super::calibrated::ball_sample_f64(n, dim, seed ^ 0xDA4C_0CA1);
    let g = exact_knn(&ball, k + 1, Metric::Euclidean, None)?;
    Ok((ball, g))
}

/// The statistics of one seeded uniform `dim`-ball of `n` points, DANCo's calibration for that dimension. Its
/// MiND d̂ is searched on (0, 2·dim + 5], as R's calibration does.
pub fn ball_statistics(n: usize, dim: usize, k: usize, seed: u64) -> Result<DancoStats> {
    let (ball, g) = calibration_ball(n, dim, k, seed)?;
    statistics(&ball, &g, k, 2 * dim + 5)
}

/// Not-a-knot cubic spline through (1, y₀), (2, y₁), … (unit spacing): its second derivatives at the knots.
fn spline_second_derivatives(y: &[f64]) -> Vec<f64> {
    let n = y.len();
    let rhs: Vec<f64> = (0..n)
        .map(|i| {
            if i == 0 || i + 1 == n {
                0.0
            } else {
                6.0 * (y[i + 1] - 2.0 * y[i] + y[i - 1])
            }
        })
        .collect();
    let mut m = vec![0.0f64; n];
    // Not-a-knot at the second and the second-last knots makes M₀ = 2M₁ − M₂ (and its mirror); put into
    // the first and last interior equations, these give M₁ and M_{n−2} directly.
    m[1] = rhs[1] / 6.0;
    m[n - 2] = rhs[n - 2] / 6.0;
    // M₂ … M_{n−3}: tridiagonal (1, 4, 1) with M₁ and M_{n−2} known (Thomas algorithm).
    if n > 4 {
        let inner = n - 4;
        let mut c = vec![0.0f64; inner];
        let mut dd = vec![0.0f64; inner];
        for t in 0..inner {
            let i = t + 2;
            let mut r = rhs[i];
            if i == 2 {
                r -= m[1];
            }
            if i == n - 3 {
                r -= m[n - 2];
            }
            let (prev_c, prev_d) = if t == 0 {
                (0.0, 0.0)
            } else {
                (c[t - 1], dd[t - 1])
            };
            let denom = 4.0 - prev_c;
            c[t] = 1.0 / denom;
            dd[t] = (r - prev_d) / denom;
        }
        for t in (0..inner).rev() {
            let next = if t + 1 < inner { m[t + 3] } else { 0.0 };
            m[t + 2] = dd[t] - c[t] * next;
        }
    }
    m[0] = 2.0 * m[1] - m[2];
    m[n - 1] = 2.0 * m[n - 2] - m[n - 3];
    m
}

/// The minimum of the interpolant of `kl` (at dimensions 1, 2, …) around the integer argmin `de`: the cubic
/// not-a-knot spline from four points, the parabola through three, the argmin itself below that (the
/// interpolants of skdim's `interp1d`). Returns (dimension, interpolated divergence).
fn fractal_minimum(kl: &[f64], de: usize) -> (f64, f64) {
    let n = kl.len();
    if n < 3 {
        return (de as f64, kl[de - 1]);
    }
    if n == 3 {
        // The parabola through the three points, its vertex within [1, 3] when it opens upwards.
        let a = 0.5 * (kl[0] - 2.0 * kl[1] + kl[2]);
        let b = 0.5 * (kl[2] - kl[0]);
        if a > 0.0 {
            let t = (-b / (2.0 * a)).clamp(-1.0, 1.0);
            return (2.0 + t, kl[1] + b * t + a * t * t);
        }
        return (de as f64, kl[de - 1]);
    }
    let m = spline_second_derivatives(kl);
    let value = |i: usize, t: f64| {
        let s = 1.0 - t;
        s * kl[i] + t * kl[i + 1] + (s * s * s - s) * m[i] / 6.0 + (t * t * t - t) * m[i + 1] / 6.0
    };
    let j = de - 1;
    let mut best = (de as f64, kl[j]);
    for i in [j.checked_sub(1), Some(j)].into_iter().flatten() {
        if i + 1 >= n {
            continue;
        }
        // S'(t) = Δy + (1 − 3(1 − t)²) M_i/6 + (3t² − 1) M_{i+1}/6, a quadratic a t² + b t + c.
        let (mi, mj) = (m[i] / 6.0, m[i + 1] / 6.0);
        let a = 3.0 * (mj - mi);
        let b = 6.0 * mi;
        let c = kl[i + 1] - kl[i] - 2.0 * mi - mj;
        let mut roots = Vec::new();
        if a.abs() < 1e-300 {
            if b != 0.0 {
                roots.push(-c / b);
            }
        } else {
            let disc = b * b - 4.0 * a * c;
            if disc >= 0.0 {
                let sq = disc.sqrt();
                roots.push((-b + sq) / (2.0 * a));
                roots.push((-b - sq) / (2.0 * a));
            }
        }
        for t in roots {
            if t > 0.0 && t < 1.0 {
                let v = value(i, t);
                if v < best.1 {
                    best = ((i + 1) as f64 + t, v);
                }
            }
        }
    }
    best
}

impl Danco {
    fn check(&self, cols: usize) -> Result<usize> {
        if self.k < 2 {
            return Err(Error::range(
                Param::K,
                self.k,
                "k ≥ 2 (10 by default)",
                "DANCo measures the angles between each point's k neighbour vectors",
            ));
        }
        let max_dim = match (self.max_dim, self.table) {
            (Some(d), _) => d,
            (None, false) => cols,
            (None, true) => cols.min(FitTable::builtin().max_dim()),
        };
        if self.table {
            let t = FitTable::builtin();
            if self.k != t.k {
                return Err(Error::range(
                    Param::K,
                    self.k,
                    format!("k = {} with the precomputed calibration", t.k),
                    "the DANCoFit table was simulated at that k; the simulated calibration takes any k",
                ));
            }
            if max_dim > t.max_dim() {
                return Err(Error::range(
                    Param::MaxDim,
                    max_dim,
                    format!("D ≤ {} with the precomputed calibration", t.max_dim()),
                    "the DANCoFit table covers dimensions 1..100; the simulated calibration takes any D",
                ));
            }
        }
        if max_dim < 1 {
            return Err(Error::range(
                Param::MaxDim,
                max_dim,
                "D ≥ 1 (the number of columns by default)",
                "DANCo calibrates dimensions 1..D",
            ));
        }
        Ok(max_dim)
    }

    /// The statistics of the uniform `dim`-ball of `n` points (memoised for the process: they depend on
    /// n, dim, k and the seed only).
    fn calibration_stats(&self, n: usize, dim: usize) -> Result<DancoStats> {
        let key = (n, dim, self.k, self.seed);
        if let Some(s) = memo().lock().ok().and_then(|m| m.get(&key).copied()) {
            return Ok(s);
        }
        let s = ball_statistics(n, dim, self.k, self.seed)?;
        if let Ok(mut m) = memo().lock() {
            m.insert(key, s);
        }
        Ok(s)
    }

    /// Fits on the rows `data` of `graph` (at least k + 1 neighbours per point).
    pub fn fit(&self, data: &Matrix, graph: &KnnGraph) -> Result<Estimate> {
        let max_dim = self.check(data.cols())?;
        if graph.n < self.k + 2 {
            return Err(Error::data(
                data.name(),
                format!(
                    "DANCo needs more than k + 1 = {} distinct rows; there are {}",
                    self.k + 1,
                    graph.n
                ),
                "use a smaller k or more rows",
            ));
        }
        if self.table {
            let t = FitTable::builtin();
            let (lo, hi) = (
                t.cardinalities[0],
                t.cardinalities[t.cardinalities.len() - 1],
            );
            if !(lo..=hi).contains(&graph.n) {
                return Err(Error::data(
                    data.name(),
                    format!(
                        "DANCo's precomputed calibration covers {lo} to {hi} distinct rows; there are {}",
                        graph.n
                    ),
                    format!("use DANCo's simulated calibration, or a sample of at most {hi} rows"),
                ));
            }
        }
        let own = statistics(data, graph, self.k, max_dim)?;
        if !(own.dhat.is_finite() && own.mu_nu.is_finite() && own.mu_tau.is_finite()) {
            return Err(Error::data(
                data.name(),
                "DANCo's statistics are undefined on this data (an angle or ratio without spread)",
                "check the input for quantised or duplicated rows",
            ));
        }
        // Divergence from each calibration dimension in turn. The angle part is a divergence and so ≥ 0, which
        // makes the ρ part alone a lower bound: once it exceeds the minimum found for PRUNE_RUN consecutive
        // dimensions past the minimum (the calibration d̂ grows with the dimension), no later dimension can
        // hold the minimum, and the search stops.
        let given = self.calibration.as_deref().unwrap_or(&[]);
        let mut kl: Vec<f64> = Vec::with_capacity(max_dim);
        let mut cal: Vec<DancoStats> = Vec::with_capacity(max_dim);
        let mut run = 0usize;
        for dim in 1..=max_dim {
            let s = match given.get(dim - 1) {
                Some(s) => *s,
                None if self.table => FitTable::builtin().at(graph.n, dim),
                None => self.calibration_stats(graph.n, dim)?,
            };
            let v = divergence(&own, &s, self.k);
            let bound = kl_rho(own.dhat, s.dhat, self.k);
            let best = kl.iter().copied().fold(f64::INFINITY, f64::min);
            kl.push(v);
            cal.push(s);
            if dim >= given.len() && s.dhat > own.dhat && bound > best {
                run += 1;
                if run >= PRUNE_RUN {
                    break;
                }
            } else {
                run = 0;
            }
        }
        let (de, _) =
            kl.iter().enumerate().fold(
                (0usize, f64::INFINITY),
                |b, (i, &v)| if v < b.1 { (i, v) } else { b },
            );
        let de = de + 1;
        let value = if self.fractal {
            fractal_minimum(&kl, de).0
        } else {
            de as f64
        };
        let mut notes = Vec::new();
        if kl.len() < max_dim {
            notes.push(format!(
                "calibrated dimensions 1..{} of 1..{max_dim}: beyond them the divergence of ρ alone exceeds the minimum",
                kl.len()
            ));
        }
        if de == max_dim {
            notes.push(format!(
                "the estimate is at the calibration's upper bound D = {max_dim}: the dimension may be larger"
            ));
        }
        if self.table && self.max_dim.is_none() && max_dim < data.cols() {
            notes.push(format!(
                "D = {max_dim}, the precomputed calibration's largest dimension (the data has {} columns)",
                data.cols()
            ));
        }
        let source = if self.table {
            let t = FitTable::builtin();
            format!(
                "the precomputed calibration (mean of {} seeded balls per cell, interpolated to {} points)",
                t.iterations, graph.n
            )
        } else {
            format!("seeded uniform balls of {} points", graph.n)
        };
        Ok(Estimate {
            estimator: if self.table { "danco_fit" } else { "danco" }.into(),
            variant: format!(
                "DANCo{} (k = {}), {} against {source}",
                if self.table { "Fit" } else { "" },
                self.k,
                if self.fractal {
                    "spline minimum of the divergence"
                } else {
                    "calibration dimension of least divergence"
                },
            ),
            value,
            stderr: None,
            params: json!({
                "k": self.k, "D": max_dim, "fractal": self.fractal, "seed": self.seed, "table": self.table,
                "dhat": own.dhat, "mu_nu": own.mu_nu, "mu_tau": own.mu_tau,
                "kl_divergence": kl[de - 1], "calibrated_dims": kl.len(),
                "calibration_given": given.len().min(max_dim),
                "calibration": cal,
                "divergences": kl,
            }),
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_matches_known_values_on_both_branches() {
        // I0(1) = 1.2660658777520082, I1(1) = 0.5651591039924851 (Abramowitz & Stegun table 9.8).
        let (l, r) = bessel_i0_ln_and_ratio(1.0);
        assert!((l.exp() - 1.2660658777520082).abs() < 1e-15);
        assert!((r - 0.5651591039924851 / 1.2660658777520082).abs() < 1e-15);
        // The two branches agree where they meet.
        let (a, ra) = bessel_i0_ln_and_ratio(500.0);
        let (b, rb) = bessel_i0_ln_and_ratio(500.0 + 1e-9);
        assert!(
            (a - b).abs() < 1e-8 && (ra - rb).abs() < 1e-12,
            "{a} {b} {ra} {rb}"
        );
        assert_eq!(bessel_i0_ln_and_ratio(0.0), (0.0, 0.0));
    }

    #[test]
    fn spline_reproduces_a_cubic_and_finds_its_minimum() {
        // A cubic is its own not-a-knot spline.
        let f = |x: f64| 0.1 * x * x * x - 1.2 * x * x + 3.0 * x + 2.0;
        let y: Vec<f64> = (1..=9).map(|x| f(x as f64)).collect();
        let m = spline_second_derivatives(&y);
        for (i, mi) in m.iter().enumerate() {
            let x = (i + 1) as f64;
            assert!((mi - (0.6 * x - 2.4)).abs() < 1e-9, "{i} {mi}");
        }
        // f' = 0.3x² − 2.4x + 3: minimum at x = 4 + √(16 − 10) = 6.449…
        let de = 6;
        let (x, v) = fractal_minimum(&y, de);
        let want = 4.0 + 6f64.sqrt();
        assert!((x - want).abs() < 1e-9 && (v - f(want)).abs() < 1e-9, "{x}");
        // A minimum at the first dimension (a 1-D curve): only the interval to its right is searched.
        let y: Vec<f64> = (1..=7).map(|x| (x as f64 - 0.5).powi(2)).collect();
        let (x, _) = fractal_minimum(&y, 1);
        assert!((1.0..1.5).contains(&x), "{x}");
    }

    #[test]
    fn one_dimensional_calibration_points_never_coincide() {
        // 5,000 points of the unit segment: held in f32 some coincided, which left a neighbour without a
        // direction, the first divergence NaN and the fractal estimate stuck at an integer.
        let b = crate::intrinsic::calibrated::ball_sample_f64(5000, 1, 0xDA4C_0CA1);
        let mut v: Vec<f64> = (0..5000).map(|i| b.row_f64(i).unwrap()[0]).collect();
        v.sort_by(f64::total_cmp);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        let s = Danco::default().calibration_stats(5000, 1).unwrap();
        assert!(
            s.dhat.is_finite() && s.mu_nu.is_finite() && s.mu_tau.is_finite(),
            "{s:?}"
        );
    }

    #[test]
    fn coinciding_rows_leave_the_angle_statistics_finite() {
        // Rows repeated (a graph not of distinct rows) give neighbours at distance 0: they have no direction
        // and are left out of the angles instead of making them NaN.
        let mut x: Vec<f32> = (0..60).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
        x.extend_from_slice(&x.clone()[..20]);
        let m = Matrix::from_vec(80, 1, x, "repeated").unwrap();
        let g = exact_knn(&m, 11, Metric::Euclidean, None).unwrap();
        let s = statistics(&m, &g, 10, 5).unwrap();
        assert!(s.mu_nu.is_finite() && s.mu_tau.is_finite(), "{s:?}");
    }

    #[test]
    fn pchip_equals_scipys_interpolant() {
        // scipy 1.x PchipInterpolator(x, y)(at) on the same knots: a local maximum (slope 0 there), unequal
        // spacing, both ends; three-knot cases whose end slope is set to 0 (its sign against δ's) and limited
        // to 3δ (δ's changing sign).
        let (x, y) = (
            [20.0, 40.0, 60.0, 100.0, 500.0, 1000.0],
            [1.0, 1.5, 1.4, 2.0, 2.2, 3.5],
        );
        for (at, want) in [
            (20.0, 1.0),
            (25.0, 1.1906249999999998),
            (50.0, 1.4499999999999997),
            (70.0, 1.4913139763779526),
            (300.0, 2.1240515390121693),
            (800.0, 2.8104727272727272),
            (999.0, 3.4962344388242426),
            (1000.0, 3.5),
        ] {
            let v = pchip(&x, &y, at);
            assert!((v - want).abs() < 1e-13, "{at}: {v} {want}");
        }
        let (x, y) = ([20.0, 40.0, 60.0], [0.0, 3.0, 3.1]);
        for (at, want) in [
            (21.0, 0.22209657258064516),
            (30.0, 2.0320564516129034),
            (45.0, 3.042842741935484),
            (59.0, 3.099734677419355),
        ] {
            let v = pchip(&x, &y, at);
            assert!((v - want).abs() < 1e-13, "{at}: {v} {want}");
        }
        let (x, y) = ([20.0, 40.0, 60.0], [0.0, 1.0, -10.0]);
        for (at, want) in [
            (21.0, 0.142625),
            (30.0, 0.8750000000000002),
            (45.0, 0.07812499999999982),
            (59.0, -9.153125000000001),
        ] {
            let v = pchip(&x, &y, at);
            assert!((v - want).abs() < 1e-13, "{at}: {v} {want}");
        }
    }

    #[test]
    fn divergence_is_least_at_equal_statistics() {
        let s = DancoStats {
            dhat: 4.4,
            mu_nu: 0.9,
            mu_tau: 5.6,
        };
        // R's ρ part carries the constant H_k + (k − 1)/k; the angle part is a divergence proper.
        let h10: f64 = (1..=10).map(|i| 1.0 / i as f64).sum();
        assert!((divergence(&s, &s, 10) - (h10 + 0.9)).abs() < 1e-12);
        assert!(kl_angles(&s, &s).abs() < 1e-12);
        for q in [0.5, 0.9, 1.1, 2.0] {
            assert!(kl_rho(4.4, 4.4 * q, 10) > h10 + 0.9);
        }
        let t = DancoStats {
            dhat: 6.0,
            mu_nu: 1.1,
            mu_tau: 7.0,
        };
        assert!(divergence(&s, &t, 10) > divergence(&s, &s, 10));
    }
}
