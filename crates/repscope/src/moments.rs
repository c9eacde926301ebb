//! First and second moments of a row source in one streaming pass, in f64: the column means, the centred
//! scatter matrix (and from it the covariance and the uncentred scatter), and the same sums over the
//! L2-normalised rows. Every linear measure reads these instead of passing over the data again; memory is
//! O(d²) plus two chunks of rows, whatever the number of rows.
//!
//! Sums are taken about a fixed shift s, the mean of the first [`SHIFT_ROWS`] rows, so that one pass
//! suffices: Σ(x−μ)(x−μ)ᵀ = Σ(x−s)(x−s)ᵀ − t tᵀ/n with t = Σ(x−s). Rows near their mean keep the
//! cancellation small, and the shift does not depend on how the rows are chunked or sharded.
//!
//! f64 rows whose largest |value| is below [`TINY`] (their squares would underflow f64, and below about
//! 1e-154 do) are taken again multiplied by a power of two that brings that value into [1, 2). The scaling is
//! exact, so every sum is the data's own in those units; [`Moments::scale`] says which.
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use faer::Mat;
use rayon::prelude::*;

use crate::data::source::{self, RowSource};
use crate::error::{Error, Result};
use crate::linalg;
use crate::progress::Progress;

/// Rows whose mean is the shift of the sums.
pub const SHIFT_ROWS: usize = 1024;

/// The largest |value| below which f64 rows are scaled by a power of two before they are summed: 2⁻⁴⁰⁰, so
/// that squares and products of d of them stay far above f64's smallest normal number (2⁻¹⁰²²).
pub const TINY: f64 = f64::from_bits((1023 - 400) << 52);

/// The power of two that brings `max_abs` (the largest |value| of some f64 rows) into [1, 2) when it is
/// below [`TINY`] (or as near as 2¹⁰⁰⁰ brings it), and 1 otherwise: the exact scaling under which squares of those rows do not underflow.
pub fn tiny_scale(max_abs: f64) -> f64 {
    if max_abs > 0.0 && max_abs < TINY {
        // At most 2¹⁰⁰⁰ (a finite power of two): the smallest subnormal lands at 2⁻⁷⁴.
        2f64.powi((-(max_abs.log2().floor() as i32)).min(1000))
    } else {
        1.0
    }
}

/// What a pass accumulates.
#[derive(Clone, Copy, Debug)]
pub struct PassConfig {
    /// The shifted sums and scatter of the rows.
    pub rows: bool,
    /// The sums and Gram matrix of the unit rows u = x/‖x‖.
    pub unit_rows: bool,
    /// Rows per chunk (None: [`source::chunk_rows`]).
    pub chunk_rows: Option<usize>,
}

/// Sums over the unit rows u_i = x_i/‖x_i‖ (all-zero rows have no direction and are left out).
#[derive(Clone, Debug)]
pub struct UnitSums {
    /// Rows with a direction.
    pub n: usize,
    /// All-zero rows left out.
    pub zero_rows: usize,
    /// Σ u_i.
    pub sum: Vec<f64>,
    /// Σ u_ij² per column.
    pub sum_sq: Vec<f64>,
    /// Σ u_i u_iᵀ (d × d, symmetric) when d ≤ rows; otherwise None and `rows_n` holds the n × n Gram U Uᵀ.
    pub gram: Option<Mat<f64>>,
    /// U Uᵀ (n × n, symmetric) when there are fewer rows than columns.
    pub gram_n: Option<Mat<f64>>,
}

/// The moments of a source.
pub struct Moments {
    pub n: usize,
    pub d: usize,
    /// Column means.
    pub mean: Vec<f64>,
    /// Σ (x_i − μ)(x_i − μ)ᵀ, symmetric (empty when the rows were not asked for).
    pub scatter: Mat<f64>,
    shift: Vec<f64>,
    /// Σ (x_i − s).
    shifted_sum: Vec<f64>,
    /// The n/100 (at least 1) largest ‖x_i − s‖, largest first: a bound on how much a few rows carry.
    pub top_deviations: Vec<f64>,
    /// ‖μ − s‖.
    pub shift_gap: f64,
    pub unit: Option<UnitSums>,
    /// The power of two the rows were multiplied by (1 unless they are f64 values below [`TINY`]): the
    /// mean, scatter, shift and deviations are those of the scaled rows; divide a variance by scale².
    pub scale: f64,
}

impl Moments {
    /// The covariance Σ(x−μ)(x−μ)ᵀ/(n − 1).
    pub fn covariance(&self) -> Mat<f64> {
        let denom = (self.n.max(2) - 1) as f64;
        Mat::from_fn(self.d, self.d, |i, j| self.scatter[(i, j)] / denom)
    }

    /// Σ x_i x_iᵀ = Σ(x−μ)(x−μ)ᵀ + n μ μᵀ, from the shifted sums (no second pass).
    pub fn uncentred_scatter(&self) -> Mat<f64> {
        let nf = self.n as f64;
        let (s, t) = (&self.shift, &self.shifted_sum);
        // Σ(x−s)(x−s)ᵀ + s tᵀ + t sᵀ + n s sᵀ, with Σ(x−s)(x−s)ᵀ = scatter + t tᵀ/n.
        Mat::from_fn(self.d, self.d, |i, j| {
            self.scatter[(i, j)] + t[i] * t[j] / nf + s[i] * t[j] + t[i] * s[j] + nf * s[i] * s[j]
        })
    }
}

/// Rows per task of the row-wise work of a chunk; partial sums are added in block order, so the result
/// does not depend on the number of threads.
const BLOCK_ROWS: usize = 64;

/// Σ v² in eight interleaved partial sums (a fixed order, so the result is the same on every run), which
/// the compiler can keep in vector registers.
fn sum_sq(v: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        for i in 0..8 {
            acc[i] += c[i] * c[i];
        }
    }
    for (i, &x) in it.remainder().iter().enumerate() {
        acc[i] += x * x;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Writes the unit rows of a block into `out` (all-zero rows skipped); returns how many were kept.
pub fn unit_rows_into(block: &[f64], d: usize, out: &mut Vec<f64>) -> usize {
    out.clear();
    for row in block.chunks_exact(d) {
        let s: f64 = row.iter().map(|v| v * v).sum();
        if s > 0.0 {
            let inv = 1.0 / s.sqrt();
            out.extend(row.iter().map(|v| v * inv));
        }
    }
    out.len() / d.max(1)
}

/// The mean of the first [`SHIFT_ROWS`] rows: the shift of every one-pass sum, the same however the source
/// is chunked or sharded.
pub fn head_mean(src: &dyn RowSource) -> Result<Vec<f64>> {
    let d = src.cols();
    let head = SHIFT_ROWS.min(src.rows());
    let mut first = vec![0.0f64; head * d];
    src.read_f64(0, head, &mut first)?;
    let mut shift = vec![0.0f64; d];
    for r in first.chunks_exact(d.max(1)) {
        shift.iter_mut().zip(r).for_each(|(a, b)| *a += b);
    }
    shift.iter_mut().for_each(|a| *a /= head.max(1) as f64);
    Ok(shift)
}

/// One pass over `src`: the moments `cfg` asks for. Values must be finite (the source checks as it reads).
/// An f64 source whose values are all below [`TINY`] takes a second pass, scaled (see the module notes).
pub fn moments(src: &dyn RowSource, cfg: &PassConfig, progress: &dyn Progress) -> Result<Moments> {
    let (n, d) = (src.rows(), src.cols());
    if n == 0 || d == 0 {
        return Err(Error::data(
            src.name(),
            format!("the data is {n} × {d}"),
            "pass a non-empty 2-D array",
        ));
    }
    let (mom, max_abs) = pass(src, cfg, progress, 1.0)?;
    match tiny_scale(max_abs) {
        1.0 => Ok(mom),
        scale => Ok(pass(src, cfg, progress, scale)?.0),
    }
}

/// The pass of [`moments`] over the rows times `scale`, and the largest |value| of an f64 source as read
/// (0 for other sources, whose values cannot be that small).
fn pass(
    src: &dyn RowSource,
    cfg: &PassConfig,
    progress: &dyn Progress,
    scale: f64,
) -> Result<(Moments, f64)> {
    let (n, d) = (src.rows(), src.cols());
    let mut shift = head_mean(src)?;
    shift.iter_mut().for_each(|v| *v *= scale);
    let watch = src.elem() == source::Elem::F64 && scale == 1.0;
    let mut max_abs = 0.0f64;

    let top_n = (n / 100).max(1);
    let mut top: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(top_n + 1);
    let mut shifted_sum = vec![0.0f64; d];
    let mut gram = if cfg.rows {
        Mat::<f64>::zeros(d, d)
    } else {
        Mat::<f64>::zeros(0, 0)
    };
    let unit_dd = d <= n;
    let mut unit = cfg.unit_rows.then(|| UnitSums {
        n: 0,
        zero_rows: 0,
        sum: vec![0.0; d],
        sum_sq: vec![0.0; d],
        gram: unit_dd.then(|| Mat::zeros(d, d)),
        gram_n: None,
    });
    let mut all_unit: Vec<f64> = Vec::new();
    let mut u = Vec::new();
    let chunk = cfg.chunk_rows.unwrap_or_else(|| source::chunk_rows(src));
    progress.stage("pass over the rows", n as u64);
    source::for_each_chunk(src, chunk, progress, |_, rows, x| {
        if watch {
            max_abs = x.iter().fold(max_abs, |a, v| a.max(v.abs()));
        }
        if scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        if let Some(us) = unit.as_mut() {
            // Unit rows in place of a copy; an all-zero row stays zero, so it adds nothing to the sums.
            u.clear();
            u.extend_from_slice(x);
            let parts: Vec<(usize, Vec<f64>, Vec<f64>)> = u
                .par_chunks_mut(BLOCK_ROWS * d)
                .map(|b| {
                    let mut kept = 0;
                    let mut sum = vec![0.0; d];
                    let mut sq = vec![0.0; d];
                    for r in b.chunks_exact_mut(d) {
                        let s = sum_sq(r);
                        if s > 0.0 {
                            kept += 1;
                            let inv = 1.0 / s.sqrt();
                            for ((v, a), q) in r.iter_mut().zip(&mut sum).zip(&mut sq) {
                                *v *= inv;
                                *a += *v;
                                *q += *v * *v;
                            }
                        }
                    }
                    (kept, sum, sq)
                })
                .collect();
            for (kept, sum, sq) in parts {
                us.n += kept;
                us.sum.iter_mut().zip(&sum).for_each(|(a, b)| *a += b);
                us.sum_sq.iter_mut().zip(&sq).for_each(|(a, b)| *a += b);
            }
            match us.gram.as_mut() {
                Some(g) => linalg::accumulate_gram_rows(g.as_mut(), &u, rows, d, true),
                None => all_unit.extend(
                    u.chunks_exact(d)
                        .filter(|r| r.iter().any(|&v| v != 0.0))
                        .flatten(),
                ),
            }
        }
        if cfg.rows {
            let shift = &shift;
            let parts: Vec<(Vec<f64>, Vec<f64>)> = x
                .par_chunks_mut(BLOCK_ROWS * d)
                .map(|b| {
                    let mut sum = vec![0.0; d];
                    let mut dev = Vec::with_capacity(b.len() / d);
                    for r in b.chunks_exact_mut(d) {
                        for ((v, a), s) in r.iter_mut().zip(&mut sum).zip(shift) {
                            *v -= s;
                            *a += *v;
                        }
                        dev.push(sum_sq(r).sqrt());
                    }
                    (sum, dev)
                })
                .collect();
            for (sum, dev) in parts {
                shifted_sum.iter_mut().zip(&sum).for_each(|(a, b)| *a += b);
                for q in dev {
                    // Non-negative f64 order as their bits.
                    top.push(Reverse(q.to_bits()));
                    if top.len() > top_n {
                        top.pop();
                    }
                }
            }
            linalg::accumulate_gram_rows(gram.as_mut(), x, rows, d, true);
        }
        Ok(())
    })?;
    progress.finish_stage();
    let nf = n as f64;
    let m: Vec<f64> = shifted_sum.iter().map(|t| t / nf).collect();
    let mean: Vec<f64> = shift.iter().zip(&m).map(|(s, mi)| s + mi).collect();
    let shift_gap = m.iter().map(|v| v * v).sum::<f64>().sqrt();
    let scatter = if cfg.rows {
        linalg::symmetrize_lower(&mut gram);
        Mat::from_fn(d, d, |i, j| {
            gram[(i, j)] - shifted_sum[i] * shifted_sum[j] / nf
        })
    } else {
        gram
    };
    if let Some(us) = unit.as_mut() {
        us.zero_rows = n - us.n;
        if let Some(g) = us.gram.as_mut() {
            linalg::symmetrize_lower(g);
        } else {
            let k = us.n;
            let z = linalg::row_major(&all_unit, k, d);
            let mut g = Mat::<f64>::zeros(k, k);
            linalg::gemm(g.as_mut(), false, z, z.transpose(), 1.0, true);
            us.gram_n = Some(g);
        }
    }
    let mut top_deviations: Vec<f64> = top.into_iter().map(|r| f64::from_bits(r.0)).collect();
    top_deviations.sort_by(|a, b| b.total_cmp(a));
    let mom = Moments {
        n,
        d,
        mean,
        scatter,
        shift,
        shifted_sum,
        top_deviations,
        shift_gap,
        unit,
        scale,
    };
    Ok((mom, max_abs))
}

/// The `top` largest values of f(row) over a second pass, largest first, and the sum of f over all rows.
pub fn top_of_pass(
    src: &dyn RowSource,
    top: usize,
    progress: &dyn Progress,
    f: impl Fn(&[f64]) -> f64,
) -> Result<(Vec<f64>, f64)> {
    let d = src.cols();
    let mut heap: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(top + 1);
    let mut total = 0.0;
    progress.stage("second pass", src.rows() as u64);
    source::for_each_chunk(src, source::chunk_rows(src), progress, |_, _, x| {
        for r in x.chunks_exact(d) {
            let v = f(r);
            total += v;
            heap.push(Reverse(v.max(0.0).to_bits()));
            if heap.len() > top {
                heap.pop();
            }
        }
        Ok(())
    })?;
    progress.finish_stage();
    let mut v: Vec<f64> = heap.into_iter().map(|r| f64::from_bits(r.0)).collect();
    v.sort_by(|a, b| b.total_cmp(a));
    Ok((v, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::Shards;
    use crate::data::Matrix;
    use crate::progress::Silent;
    use crate::rng::Rng;

    fn data(n: usize, d: usize, offset: f32) -> Matrix {
        let mut r = Rng::new(3);
        let v: Vec<f32> = (0..n * d)
            .map(|i| r.normal() as f32 * (1.0 + (i % d) as f32) + offset)
            .collect();
        Matrix::from_vec(n, d, v, "t").unwrap()
    }

    #[test]
    fn streamed_moments_match_two_pass_float64() {
        let (n, d) = (3000, 7);
        let m = data(n, d, 50.0);
        let all = PassConfig {
            rows: true,
            unit_rows: true,
            chunk_rows: None,
        };
        let base = moments(&m, &all, &Silent).unwrap();
        // Two-pass f64 reference.
        let mut mean = vec![0.0f64; d];
        for i in 0..n {
            for (a, &v) in mean.iter_mut().zip(m.row(i)) {
                *a += v as f64;
            }
        }
        mean.iter_mut().for_each(|v| *v /= n as f64);
        let mut c = vec![0.0f64; d * d];
        let mut un = vec![0.0f64; d * d];
        for i in 0..n {
            let x: Vec<f64> = m.row(i).iter().map(|&v| v as f64).collect();
            for a in 0..d {
                for b in 0..d {
                    c[a * d + b] += (x[a] - mean[a]) * (x[b] - mean[b]);
                    un[a * d + b] += x[a] * x[b];
                }
            }
        }
        let u = base.uncentred_scatter();
        for a in 0..d {
            assert!((base.mean[a] - mean[a]).abs() < 1e-12 * mean[a].abs());
            for b in 0..d {
                let s = (c[a * d + a] * c[b * d + b]).sqrt();
                assert!((base.scatter[(a, b)] - c[a * d + b]).abs() < 1e-12 * s);
                assert!(
                    (u[(a, b)] - un[a * d + b]).abs() < 1e-12 * un[a * d + a].max(un[b * d + b])
                );
            }
        }
        // Shards and chunk sizes move only the last digits.
        let parts: Vec<Box<dyn RowSource>> = [(0, 999), (999, 1000), (1000, 2500), (2500, 3000)]
            .iter()
            .map(|&(a, b)| Box::new(m.slice_rows(a, b)) as Box<dyn RowSource>)
            .collect();
        let sh = Shards::new(parts, "s".into()).unwrap();
        for chunk in [1, 17, 1000, 5000] {
            let cfg = PassConfig {
                chunk_rows: Some(chunk),
                ..all
            };
            let o = moments(&sh, &cfg, &Silent).unwrap();
            for a in 0..d {
                for b in 0..d {
                    let s = (c[a * d + a] * c[b * d + b]).sqrt();
                    assert!((o.scatter[(a, b)] - base.scatter[(a, b)]).abs() < 1e-13 * s);
                    let (g1, g2) = (o.unit.as_ref().unwrap(), base.unit.as_ref().unwrap());
                    let (x, y) = (g1.gram.as_ref().unwrap(), g2.gram.as_ref().unwrap());
                    assert!((x[(a, b)] - y[(a, b)]).abs() < 1e-12 * n as f64);
                }
            }
        }
    }
}
