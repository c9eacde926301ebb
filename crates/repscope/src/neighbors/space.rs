//! The ranking space: the f32 rows the candidate kernels multiply, and how far they may be from the exact
//! geometry.
//!
//! The metric is dispatched here once. Under the cosine metric the rows are L2-normalised, so the squared
//! euclidean distance in the ranking space is the squared chord 2(1 − cos). Under the euclidean metric the
//! rows are centred on the column mean when the offset dominates the spread (the expansion
//! ‖x‖² + ‖y‖² − 2x·y would otherwise lose the digits that rank close neighbours), and scaled by a power of
//! two when their norms would overflow or underflow the f32 products; the distances are then the exact
//! ones times that power of two.
//!
//! Each ranking row u_i is the f32 rounding of an ideal row v_i whose distances are exactly the metric's
//! (in ranking units): ‖u_i − v_i‖ ≤ ε_rel·‖u_i‖ + ε_abs. Rows used as given have ε = 0.
use std::borrow::Cow;

use rayon::prelude::*;

use super::bound::{KeyError, Target};
use super::distance::inverse_norms;
use super::Metric;
use crate::data::Matrix;
use crate::error::Result;

/// Unit roundoff of f32, 2⁻²⁴.
pub(crate) const U32: f64 = 1.0 / 16_777_216.0;
/// Unit roundoff of f64, 2⁻⁵³.
const U64: f64 = f64::EPSILON / 2.0;
/// Norms outside [2⁻⁴⁰, 2⁵⁰] are scaled: their squares would underflow or overflow the f32 products.
pub(crate) const NORM_HI: f64 = 1_125_899_906_842_624.0; // 2^50
pub(crate) const NORM_LO: f64 = 9.094_947_017_729_282e-13; // 2^-40

/// How the ranking rows were made from the input rows.
#[derive(Clone, Debug)]
pub(crate) struct Space {
    pub(crate) metric: Metric,
    /// Power of two f64 rows too small to square are multiplied by first ([`Matrix::tiny_scale`] of the
    /// reference rows; euclidean only, 1 otherwise), exact.
    pre: f64,
    /// Column offset (of the rows times `pre`) subtracted before scaling (euclidean only).
    shift: Option<Vec<f64>>,
    /// Power of two the centred rows are multiplied by (euclidean only; 1 otherwise).
    scale: f64,
    /// ‖u_i − v_i‖ ≤ eps_rel·‖u_i‖ + eps_abs for every ranking row.
    pub(crate) eps_rel: f64,
    pub(crate) eps_abs: f64,
    /// Error model of the ranking keys (width of the rows).
    pub(crate) key: KeyError,
    width: usize,
}

/// One matrix in a ranking space: its input rows (exact distances are taken on these), the ranking rows,
/// their f64 norms and, for the cosine metric, the inverse norms of the input rows.
pub(crate) struct Side<'a> {
    pub(crate) input: &'a Matrix,
    pub(crate) rows: Cow<'a, Matrix>,
    pub(crate) norms: Vec<f64>,
    pub(crate) inv: Vec<f64>,
    /// The largest of `norms`.
    pub(crate) max_norm: f64,
}

impl Space {
    /// The space for a reference matrix, and that matrix's side in it.
    pub(crate) fn new(refs: &Matrix, metric: Metric) -> Result<(Space, Side<'_>)> {
        let d = refs.cols();
        let (pre, shift, scale) = match metric {
            Metric::Cosine => (1.0, None, 1.0),
            Metric::Euclidean => {
                let pre = refs.tiny_scale();
                let shift = centring_offset(refs, pre);
                let max = max_row_norm(refs, shift.as_deref(), pre);
                let scale = if max > NORM_HI || (max > 0.0 && max < NORM_LO) {
                    // A power of two, exact in f64 and f32 alike: the largest norm lands in [1, 2).
                    2f64.powi(-(max.log2().floor() as i32))
                } else {
                    1.0
                };
                (pre, shift, scale)
            }
        };
        // f64 input: the ranking rows are f32 roundings of the values as given, never the values.
        let transformed = metric == Metric::Cosine
            || shift.is_some()
            || scale != 1.0
            || pre != 1.0
            || refs.values_f64().is_some();
        let (eps_rel, eps_abs) = if transformed {
            let rel = U32 * (1.0 + 1e-6)
                + if metric == Metric::Cosine {
                    // The f64 inverse norm carries (w + 2)·2⁻⁵³ of relative error.
                    2.0 * (d as f64 + 4.0) * U64
                } else {
                    4.0 * U64
                };
            // Subnormal f32 results are off by up to 2⁻¹⁵⁰ each.
            (rel, 2.0 * (d as f64).sqrt() * 1.401_298_464_324_817e-45)
        } else {
            (0.0, 0.0)
        };
        let space = Space {
            metric,
            pre,
            shift,
            scale,
            eps_rel,
            eps_abs,
            key: KeyError::new(d),
            width: d,
        };
        let side = space.side(refs)?;
        Ok((space, side))
    }

    /// The side of another matrix (queries) in this space: the same centring, scale or normalisation.
    pub(crate) fn side<'a>(&self, m: &'a Matrix) -> Result<Side<'a>> {
        let (n, d) = (m.rows(), m.cols());
        debug_assert_eq!(d, self.width);
        let inv = match self.metric {
            Metric::Cosine => inverse_norms(m)?,
            Metric::Euclidean => Vec::new(),
        };
        // Each ranking value is computed in f64 from the value as given and rounded to f32 once.
        let make = |f: &(dyn Fn(usize, f64, usize) -> f64 + Sync)| -> Result<Matrix> {
            let mut u = vec![0f32; n * d];
            u.par_chunks_mut(d).enumerate().for_each_init(
                || vec![0f64; d],
                |src, (i, row)| {
                    m.row_f64_into(i, src);
                    for (c, (o, &v)) in row.iter_mut().zip(src.iter()).enumerate() {
                        *o = f(i, v, c) as f32;
                    }
                },
            );
            Matrix::from_vec(n, d, u, m.name())
        };
        let rows: Cow<'a, Matrix> = match self.metric {
            Metric::Cosine => {
                // The inverse norms are of the rows times their tiny scale.
                let pre = m.tiny_scale();
                Cow::Owned(make(&|i, v, _| (v * pre) * inv[i])?)
            }
            Metric::Euclidean if self.shift.is_some() || self.scale != 1.0 || self.pre != 1.0 => {
                let (shift, s, pre) = (self.shift.as_deref(), self.scale, self.pre);
                Cow::Owned(make(&|_, v, c| match shift {
                    Some(mu) => (v * pre - mu[c]) * s,
                    None => v * pre * s,
                })?)
            }
            // f32 rows as given, or the f32 copy of f64 input (its rounding is in ε).
            Metric::Euclidean => Cow::Borrowed(m),
        };
        let norms: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|i| {
                rows.row(i)
                    .iter()
                    .map(|&v| v as f64 * v as f64)
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let max_norm = norms.iter().fold(0f64, |a, &b| a.max(b));
        Ok(Side {
            input: m,
            rows,
            norms,
            inv,
            max_norm,
        })
    }

    /// The exact distance `dist` (the metric's, as the re-rank computes it in f64) in ranking units, raised
    /// by the most the f64 computation could have understated a true distance of that size twice over (the
    /// k-th distance and a competitor's are both computed values).
    pub(crate) fn ranking_radius(&self, dist: f64) -> f64 {
        let w = self.width as f64;
        match self.metric {
            Metric::Euclidean => dist * self.pre * self.scale * (1.0 + 4.0 * (w + 8.0) * U64),
            // The chord √(2·(1 − cos)), computed from unit vectors that carry (w + 4)·2⁻⁵³ of error.
            Metric::Cosine => (2.0 * dist).sqrt() * (1.0 + 4.0 * U64) + 8.0 * (w + 8.0) * U64,
        }
    }

    /// The target a ranking row of query `q` must prove for the rows it left out, for a k-th exact
    /// distance `dist`: farther than `dist` in exact terms, whatever the rounding of either row.
    pub(crate) fn target(&self, q_norm: f64, dist: f64) -> Target {
        Target {
            t: self.ranking_radius(dist) + self.eps_rel * q_norm + 2.0 * self.eps_abs,
            eta: self.eps_rel,
        }
    }
}

/// The column mean of the rows times `pre`, when the data's offset from the origin is large against its
/// spread.
pub(crate) fn centring_offset(m: &Matrix, pre: f64) -> Option<Vec<f64>> {
    let n = m.rows();
    if n == 0 {
        return None;
    }
    let mut mean = crate::linalg::column_means(m);
    mean.iter_mut().for_each(|v| *v *= pre);
    let mean_sq: f64 = mean.iter().map(|v| v * v).sum();
    // Mean squared norm of the rows; spread = that minus ‖μ‖².
    let d = m.cols();
    let sq: f64 = (0..n)
        .into_par_iter()
        .map_init(
            || vec![0f64; d],
            |row, i| {
                m.row_f64_into(i, row);
                row.iter().map(|&v| (v * pre) * (v * pre)).sum::<f64>()
            },
        )
        .collect::<Vec<f64>>()
        .iter()
        .sum::<f64>()
        / n as f64;
    let spread = (sq - mean_sq).max(0.0);
    (mean_sq > 4.0 * spread).then_some(mean)
}

/// The largest norm of the rows times `pre` after subtracting `shift`, in f64.
fn max_row_norm(m: &Matrix, shift: Option<&[f64]>, pre: f64) -> f64 {
    let d = m.cols();
    (0..m.rows())
        .into_par_iter()
        .map_init(
            || vec![0f64; d],
            |row, i| {
                m.row_f64_into(i, row);
                let s: f64 = match shift {
                    Some(mu) => row
                        .iter()
                        .zip(mu)
                        .map(|(&v, &c)| (v * pre - c) * (v * pre - c))
                        .sum(),
                    None => row.iter().map(|&v| (v * pre) * (v * pre)).sum(),
                };
                s.sqrt()
            },
        )
        .reduce(|| 0.0, f64::max)
}
