//! Per-point neighbourhood estimators of scikit-dimension's `LocalEstimator` family: the method of moments
//! (MOM), tight local estimation (TLE) and MADA. Each gives one value per point from its k nearest
//! neighbours, and the global value combines them (the mean by default, as skdim's `comb="mean"`).
//!
//! Definitions follow skdim 0.5.0 (which matches the original MATLAB code of Amsaleg et al. and R's `ider`
//! to 1e-6); the differences are named in METRICS.md. Every distance is a length of the graph (the chord
//! for the cosine metric), so on unit-norm rows both metrics give the same values.
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::Estimate;
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::{KnnGraph, Metric};

/// How per-point values combine into one dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// The arithmetic mean (skdim's default for its local estimators).
    Mean,
    /// The median.
    Median,
    /// 1 / mean(1/m_i) (MacKay and Ghahramani; skdim's default for MLE, its `comb="mle"`).
    #[serde(rename = "mle")]
    Harmonic,
}

impl Combine {
    /// The name as skdim's `comb` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Combine::Mean => "mean",
            Combine::Median => "median",
            Combine::Harmonic => "mle",
        }
    }
}

/// A per-point estimate combined into one value: the value, its standard error where defined, and how
/// many points were left out because their value is undefined there (tied distances).
#[derive(Clone, Debug)]
pub struct Combined {
    pub value: f64,
    pub stderr: Option<f64>,
    pub undefined: usize,
}

/// Combines per-point values, leaving out the non-finite ones (a point whose neighbour distances all tie
/// has no value). The standard error is the mean's (or, for the harmonic mean, the delta method's) over
/// the points used; neighbourhoods overlap, so it is a lower bound. `what` names the estimator in errors.
pub fn combine(values: &[f64], how: Combine, what: &str) -> Result<Combined> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let undefined = values.len() - finite.len();
    let n = finite.len();
    if n == 0 {
        return Err(Error::data(
            "input",
            format!("{what} is undefined at every point (their neighbour distances tie)"),
            "the data is a lattice or heavily quantised: use more neighbours",
        ));
    }
    let nf = n as f64;
    let mean_sd = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0);
        (m, var.sqrt())
    };
    let (value, stderr) = match how {
        Combine::Mean => {
            let (m, sd) = mean_sd(&finite);
            (m, (n > 1).then(|| sd / nf.sqrt()))
        }
        Combine::Median => {
            let mut s = finite;
            s.sort_by(f64::total_cmp);
            let med = if n % 2 == 1 {
                s[n / 2]
            } else {
                0.5 * (s[n / 2 - 1] + s[n / 2])
            };
            (med, None)
        }
        Combine::Harmonic => {
            if finite.iter().any(|&v| v <= 0.0) {
                return Err(Error::data(
                    "input",
                    format!("{what} has per-point values ≤ 0, so their harmonic mean is undefined"),
                    "combine by the mean or the median",
                ));
            }
            let inv: Vec<f64> = finite.iter().map(|v| 1.0 / v).collect();
            let (m, sd) = mean_sd(&inv);
            let d = 1.0 / m;
            (d, (n > 1).then(|| d * d * sd / nf.sqrt()))
        }
    };
    if !value.is_finite() {
        return Err(Error::Numerical {
            what: what.into(),
            problem: format!("the combined value is {value}"),
        });
    }
    Ok(Combined {
        value,
        stderr,
        undefined,
    })
}

/// Checks that the graph holds `k ≥ min` neighbours per point.
pub(crate) fn check_graph_k(graph: &KnnGraph, k: usize, min: usize, what: &str) -> Result<()> {
    if k < min {
        return Err(Error::range(
            Param::K,
            k,
            format!("k ≥ {min}"),
            format!("{what} needs at least {min} neighbours per point"),
        ));
    }
    if graph.k < k {
        return Err(Error::param(
            Param::K,
            format!(
                "the graph has {} neighbours per point, {what} asks for {k}",
                graph.k
            ),
            "build the graph with a larger k",
        ));
    }
    Ok(())
}

/// The per-point estimate of a local estimator and its combination.
pub(crate) fn local_estimate(
    name: &str,
    variant: String,
    per_point: &[f64],
    how: Combine,
    params: serde_json::Value,
) -> Result<Estimate> {
    let c = combine(per_point, how, name)?;
    let mut notes = Vec::new();
    if c.undefined > 0 {
        notes.push(format!(
            "{} points have no value (their neighbour distances tie) and are left out of the {}",
            c.undefined,
            how.name()
        ));
    }
    Ok(Estimate {
        estimator: name.into(),
        variant: format!("{variant}; combined by the {}", how.name()),
        value: c.value,
        stderr: c.stderr,
        params,
        notes,
    })
}

/// The method of moments (Amsaleg et al. 2018): with m₁ the mean of the k neighbour distances and w the
/// k-th, the point's dimension is m₁ / (w − m₁). skdim's `MOM`, 100 neighbours by default.
#[derive(Clone, Copy, Debug)]
pub struct Mom {
    pub k: usize,
}

impl Default for Mom {
    fn default() -> Self {
        Mom { k: 100 }
    }
}

impl Mom {
    /// The value of every point (NaN where all k distances tie).
    pub fn per_point(&self, graph: &KnnGraph) -> Result<Vec<f64>> {
        check_graph_k(graph, self.k, 2, "MOM")?;
        let k = self.k;
        Ok((0..graph.n)
            .map(|i| {
                let w = graph.length(graph.dists(i)[k - 1]);
                let m1 = graph.lengths(i).take(k).sum::<f64>() / k as f64;
                if w > m1 {
                    m1 / (w - m1)
                } else {
                    f64::NAN
                }
            })
            .collect())
    }

    /// The per-point values combined.
    pub fn fit(&self, graph: &KnnGraph, how: Combine) -> Result<(Estimate, Vec<f64>)> {
        let pw = self.per_point(graph)?;
        let e = local_estimate(
            "mom",
            format!(
                "method of moments, m1 / (w - m1) over {} neighbours",
                self.k
            ),
            &pw,
            how,
            json!({"k": self.k, "comb": how.name()}),
        )?;
        Ok((e, pw))
    }
}

/// MADA (Farahmand et al. 2007): log 2 / log(r_k / r_⌊k/2⌋) per point. skdim's `MADA`, k = 20.
#[derive(Clone, Copy, Debug)]
pub struct Mada {
    pub k: usize,
}

impl Default for Mada {
    fn default() -> Self {
        Mada { k: 20 }
    }
}

impl Mada {
    /// The value of every point (NaN where r_k = r_⌊k/2⌋).
    pub fn per_point(&self, graph: &KnnGraph) -> Result<Vec<f64>> {
        check_graph_k(graph, self.k, 2, "MADA")?;
        let (k, h) = (self.k, self.k / 2);
        Ok((0..graph.n)
            .map(|i| {
                let d = graph.dists(i);
                let (rk, rh) = (graph.length(d[k - 1]), graph.length(d[h - 1]));
                if rk > rh && rh > 0.0 {
                    std::f64::consts::LN_2 / (rk / rh).ln()
                } else {
                    f64::NAN
                }
            })
            .collect())
    }

    /// The per-point values combined.
    pub fn fit(&self, graph: &KnnGraph, how: Combine) -> Result<(Estimate, Vec<f64>)> {
        let pw = self.per_point(graph)?;
        let e = local_estimate(
            "mada",
            format!(
                "MADA, log 2 / log(r_{} / r_{}) per point",
                self.k,
                self.k / 2
            ),
            &pw,
            how,
            json!({"k": self.k, "comb": how.name()}),
        )?;
        Ok((e, pw))
    }
}

/// Tight local estimation (TLE, Amsaleg et al. 2019): a maximum-likelihood estimate per point that also
/// reads the distances among its k neighbours, through the s and t distances of every neighbour pair.
/// skdim's `TLE(epsilon=1e-4)`, k = 20, as its 0.5.0 release writes it (which matches the authors'
/// MATLAB `idtlec`).
#[derive(Clone, Copy, Debug)]
pub struct Tle {
    pub k: usize,
    pub epsilon: f64,
}

impl Default for Tle {
    fn default() -> Self {
        Tle {
            k: 20,
            epsilon: 1e-4,
        }
    }
}

impl Tle {
    fn check(&self, graph: &KnnGraph) -> Result<()> {
        check_graph_k(graph, self.k, 2, "TLE")?;
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return Err(Error::range(
                Param::Epsilon,
                self.epsilon,
                "a small non-negative number such as 1e-4",
                "TLE's epsilon leaves out distances below it",
            ));
        }
        Ok(())
    }

    /// The value of every point. `data` holds the rows the graph was built on.
    pub fn per_point(&self, data: &Matrix, graph: &KnnGraph) -> Result<Vec<f64>> {
        self.check(graph)?;
        let rows = RowsF64::new(data, graph.metric)?;
        let (k, unit) = (self.k, rows.unit());
        Ok((0..graph.n)
            .into_par_iter()
            .map_init(
                || {
                    (
                        vec![0f64; k * k],
                        vec![0f64; data.cols()],
                        vec![0f64; data.cols()],
                    )
                },
                |(v, a, b), i| {
                    let nb = &graph.neighbors(i)[..k];
                    // Distances among the neighbours, in f64 from the rows.
                    for x in 0..k {
                        v[x * k + x] = 0.0;
                        rows.fill(nb[x] as usize, a);
                        for y in x + 1..k {
                            rows.fill(nb[y] as usize, b);
                            let s: f64 =
                                a.iter().zip(b.iter()).map(|(p, q)| (p - q) * (p - q)).sum();
                            let dxy = s.sqrt();
                            v[x * k + y] = dxy;
                            v[y * k + x] = dxy;
                        }
                    }
                    let u: Vec<f64> = graph.lengths(i).take(k).map(|x| x * unit).collect();
                    tle_point(&u, v, self.epsilon)
                },
            )
            .collect())
    }

    /// The per-point values combined.
    pub fn fit(
        &self,
        data: &Matrix,
        graph: &KnnGraph,
        how: Combine,
    ) -> Result<(Estimate, Vec<f64>)> {
        let pw = self.per_point(data, graph)?;
        let e = local_estimate(
            "tle",
            format!("tight local estimation over {} neighbours", self.k),
            &pw,
            how,
            json!({"k": self.k, "epsilon": self.epsilon, "comb": how.name()}),
        )?;
        Ok((e, pw))
    }
}

/// TLE at one point: `u` the k neighbour lengths (ascending), `v` the k × k lengths among the neighbours.
/// The case analysis and its order (later rules win) are those of skdim 0.5.0's `_idtle`.
pub(crate) fn tle_point(u: &[f64], v: &[f64], eps: f64) -> f64 {
    let k = u.len();
    let r = u[k - 1];
    if r <= 0.0 {
        return f64::NAN;
    }
    let (mut s1t, mut s1s) = (0.0f64, 0.0f64);
    let (mut n_eps, mut n_v0) = (0usize, 0usize);
    for a in 0..k {
        let ua = u[a];
        for b in 0..k {
            if a == b {
                continue;
            }
            let (ub, vab) = (u[b], v[a * k + b]);
            let z2 = 2.0 * ua * ua + 2.0 * ub * ub - vab * vab;
            let (mut s, mut t);
            if ua == r {
                s = r * vab * vab / (r * r + vab * vab - ub * ub);
                t = r * z2 / (r * r + z2 - ub * ub);
            } else {
                let den = 2.0 * (r * r - ua * ua);
                let p = ua * ua + vab * vab - ub * ub;
                s = r * ((p * p + 4.0 * vab * vab * (r * r - ua * ua)).sqrt() - p) / den;
                let q = ua * ua + z2 - ub * ub;
                t = r * ((q * q + 4.0 * z2 * (r * r - ua * ua)).sqrt() - q) / den;
            }
            if ua == 0.0 {
                s = ub;
                t = ub;
            }
            if ub == 0.0 {
                let w = r * vab / (r + vab);
                s = w;
                t = w;
            }
            if vab == 0.0 {
                s = r;
                t = r;
                n_v0 += 1;
            }
            if t < eps || s < eps || t.is_nan() || s.is_nan() {
                n_eps += 1;
                s = r;
                t = r;
            }
            s1t += (t / r).ln();
            s1s += (s / r).ln();
        }
    }
    let n_deps = u.iter().filter(|&&x| x < eps).count();
    let s2: f64 = u[n_deps.min(k)..].iter().map(|&x| (x / r).ln()).sum();
    if s1t + s1s > -eps {
        // Every neighbour distance (almost) equal: no signal at this point.
        return f64::NAN;
    }
    let num = (k * k) as f64 - (n_eps + n_deps + n_v0) as f64;
    -2.0 * num / (s1t + s1s + 2.0 * s2)
}

/// Rows of a matrix read as f64 in the units the estimators compute in: unit length under the cosine
/// metric (euclidean distances between them are the chords the graph's lengths are), and otherwise times
/// the matrix's tiny scale (an exact power of two, 1 unless f64 values are so small that their squares
/// underflow), by which [`RowsF64::unit`] multiplies the graph's lengths too.
pub(crate) struct RowsF64<'a> {
    m: &'a Matrix,
    inv: Option<Vec<f64>>,
    scale: f64,
}

impl<'a> RowsF64<'a> {
    pub(crate) fn new(m: &'a Matrix, metric: Metric) -> Result<Self> {
        let inv = match metric {
            Metric::Cosine => Some(crate::neighbors::distance::inverse_norms(m)?),
            Metric::Euclidean => None,
        };
        Ok(RowsF64 {
            m,
            inv,
            scale: m.tiny_scale(),
        })
    }
    /// Row `i` into `out`.
    pub(crate) fn fill(&self, i: usize, out: &mut [f64]) {
        self.m.row_f64_into(i, out);
        // The inverse norm is that of the row times the tiny scale.
        let f = match &self.inv {
            Some(inv) => inv[i] * self.scale,
            None => self.scale,
        };
        if f != 1.0 {
            out.iter_mut().for_each(|x| *x *= f);
        }
    }
    /// The factor from a graph length to these units.
    pub(crate) fn unit(&self) -> f64 {
        if self.inv.is_some() {
            1.0
        } else {
            self.scale
        }
    }
}
