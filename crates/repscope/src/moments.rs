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

use crate::data::duplicates;
use crate::data::source::{self, RowSource};
use crate::error::{Error, Result};
use crate::linalg;
use crate::partial::{self, Found, Local, Pass, Passes, Reader, Writer};
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PassConfig {
    /// The shifted sums and scatter of the rows.
    pub rows: bool,
    /// The sums of the unit rows u = x/‖x‖ (anisotropy, rogue dimensions).
    pub unit_rows: bool,
    /// With `unit_rows`, also their Gram matrix (the coding rate): a second d × d product, which costs as
    /// much as the scatter's.
    pub unit_gram: bool,
    /// A 64-bit hash of every row (8 bytes a row), for [`duplicates::find`].
    pub row_hashes: bool,
    /// Rows per chunk (None: [`source::chunk_rows`]).
    pub chunk_rows: Option<usize>,
}

impl PassConfig {
    /// The rows' shifted sums and scatter alone: what a covariance needs.
    pub const SCATTER: PassConfig = PassConfig {
        rows: true,
        unit_rows: false,
        unit_gram: false,
        row_hashes: false,
        chunk_rows: None,
    };
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
    /// Σ u_i u_iᵀ (d × d, symmetric) when the pass was asked for it and d ≤ rows; when d > rows `gram_n`
    /// holds the n × n Gram U Uᵀ instead.
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
    /// Every row's hash, of its values as stored (not scaled), when the pass was asked for them.
    pub row_hashes: Option<Vec<u64>>,
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

#[inline(always)]
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
    fold_lanes(&acc)
}

/// The eight partial sums of [`sum_sq`] added in its fixed order.
#[inline(always)]
fn fold_lanes(acc: &[f64; 8]) -> f64 {
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

/// The row-wise work of a pass on one block of rows.
struct Walk<'a> {
    d: usize,
    shift: &'a [f64],
    rows: bool,
    unit: bool,
    /// Keep the largest |value| (f64 sources, before any scaling).
    watch: bool,
    hashing: bool,
    /// The power of two the rows are multiplied by.
    scale: f64,
}

/// Stored values as read (their type and little-endian bytes), widened by the walk.
type Raw<'a> = (source::Elem, &'a [u8]);

/// A block's partial sums, added in block order.
struct BlockSums {
    kept: usize,
    unit_sum: Vec<f64>,
    unit_sq: Vec<f64>,
    sum: Vec<f64>,
    dev: Vec<f64>,
    hashes: Vec<u64>,
    max_abs: f64,
}

impl Walk<'_> {
    /// Each row of the block in turn, while it is in the core's first-level cache: widened from `raw`
    /// (the block's stored values, when the pass has them) and checked finite, hashed (the values as stored),
    /// scaled; then the unit-row sums (the unit row written to `u` when given; an all-zero row has no
    /// direction, adds nothing and is written as zeros), and the row shifted in place, its sum and its
    /// ‖x − s‖. None when a widened value is not finite.
    fn block(&self, b: &mut [f64], raw: Option<Raw>, u: Option<&mut [f64]>) -> Option<BlockSums> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { self.block_avx512(b, raw, u) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.block_avx2(b, raw, u) };
        }
        self.block_body(b, raw, u)
    }

    /// [`Walk::block`] compiled for AVX-512: as [`Walk::block_avx2`], eight lanes at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn block_avx512(
        &self,
        b: &mut [f64],
        raw: Option<Raw>,
        u: Option<&mut [f64]>,
    ) -> Option<BlockSums> {
        self.block_body(b, raw, u)
    }

    /// [`Walk::block`] compiled for AVX2: the same operations in the same order (Rust does not fuse a
    /// multiply and an add), so the sums are bit-identical, four lanes at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn block_avx2(
        &self,
        b: &mut [f64],
        raw: Option<Raw>,
        u: Option<&mut [f64]>,
    ) -> Option<BlockSums> {
        self.block_body(b, raw, u)
    }

    #[inline(always)]
    fn block_body(
        &self,
        b: &mut [f64],
        raw: Option<Raw>,
        mut u: Option<&mut [f64]>,
    ) -> Option<BlockSums> {
        let d = self.d;
        let width = |on: bool| if on { d } else { 0 };
        let mut p = BlockSums {
            kept: 0,
            unit_sum: vec![0.0; width(self.unit)],
            unit_sq: vec![0.0; width(self.unit)],
            sum: vec![0.0; width(self.rows)],
            dev: Vec::with_capacity(if self.rows { b.len() / d } else { 0 }),
            hashes: Vec::with_capacity(if self.hashing { b.len() / d } else { 0 }),
            max_abs: 0.0,
        };
        // Rows in groups of GROUP: each row prepared (widened, checked, hashed, scaled, its norm), then, when
        // every row of the group has a direction and both sums are wanted, one sweep over the group's
        // columns that keeps the column sums in registers across its rows. Each column's sums still take the
        // rows in order, so the result is the same as row by row.
        let mut inv = [0.0f64; GROUP];
        for (g, rows) in b.chunks_mut(GROUP * d).enumerate() {
            let count = rows.len() / d;
            for (q, r) in rows.chunks_exact_mut(d).enumerate() {
                let i = g * GROUP + q;
                let stored =
                    raw.map(|(e, bytes)| (e, &bytes[i * d * e.size()..(i + 1) * d * e.size()]));
                inv[q] = self.prepare(r, stored, &mut p)?;
                if self.unit && inv[q] == 0.0 {
                    if let Some(u) = u.as_deref_mut() {
                        u[i * d..(i + 1) * d].fill(0.0);
                    }
                }
            }
            let ug = u
                .as_deref_mut()
                .map(|u| &mut u[g * GROUP * d..(g * GROUP + count) * d]);
            if count == GROUP && self.unit && self.rows && inv.iter().all(|&v| v > 0.0) {
                p.kept += GROUP;
                let dev = unit_and_shift_rows::<GROUP>(rows, &inv, self.shift, ug, &mut p);
                p.dev.extend(dev);
                continue;
            }
            let mut ug = ug;
            for (q, r) in rows.chunks_exact_mut(d).enumerate() {
                let ur = ug.as_deref_mut().map(|u| &mut u[q * d..(q + 1) * d]);
                self.finish(r, inv[q], ur, &mut p);
            }
        }
        Some(p)
    }

    /// A row widened from its stored bytes (when given) and checked finite, its largest |value| and hash
    /// taken, scaled; returns 1/‖x‖ when the unit rows are wanted and the row has a direction, else 0. None
    /// when a value is not finite.
    #[inline(always)]
    fn prepare(&self, r: &mut [f64], raw: Option<Raw>, p: &mut BlockSums) -> Option<f64> {
        if let Some((elem, raw)) = raw {
            if !source::widen_finite(elem, raw, r) {
                return None;
            }
        }
        if self.watch {
            p.max_abs = r.iter().fold(p.max_abs, |a, v| a.max(v.abs()));
        }
        if self.hashing {
            p.hashes.push(duplicates::row_hash(r));
        }
        if self.scale != 1.0 {
            r.iter_mut().for_each(|v| *v *= self.scale);
        }
        if self.unit {
            let s = sum_sq(r);
            if s > 0.0 {
                return Some(1.0 / s.sqrt());
            }
        }
        Some(0.0)
    }

    /// The sums of one prepared row (`inv` from [`Walk::prepare`]): the unit row's, written to `ur` when
    /// given, then the row shifted in place, its sum and ‖x − s‖.
    #[inline(always)]
    fn finish(&self, r: &mut [f64], inv: f64, ur: Option<&mut [f64]>, p: &mut BlockSums) {
        let unit = self.unit && inv > 0.0;
        if unit {
            p.kept += 1;
        }
        let mut ur = ur;
        match (unit, self.rows) {
            (true, true) => {
                let dev = unit_and_shift_rows::<1>(r, &[inv], self.shift, ur, p);
                p.dev.push(dev[0]);
            }
            (true, false) => {
                for (j, &v) in r.iter().enumerate() {
                    let w = v * inv;
                    if let Some(ur) = ur.as_deref_mut() {
                        ur[j] = w;
                    }
                    p.unit_sum[j] += w;
                    p.unit_sq[j] += w * w;
                }
            }
            (false, true) => {
                for ((v, a), s) in r.iter_mut().zip(&mut p.sum).zip(self.shift) {
                    *v -= s;
                    *a += *v;
                }
                p.dev.push(sum_sq(r).sqrt());
            }
            (false, false) => {}
        }
    }
}

/// Rows per sweep of [`unit_and_shift_rows`] in a block's walk.
const GROUP: usize = 4;

/// One sweep over `R` rows with a direction (`rows`, R × d; `inv` their 1/‖x‖): their unit rows (into
/// `ur` when given) added to the unit sums, and the rows shifted in place, added to the shifted sums;
/// returns each ‖x − s‖, summed in the lanes and order of [`sum_sq`]. Eight columns at a time, each
/// column's sums kept in registers across the R rows and taking them in order.
#[inline(always)]
fn unit_and_shift_rows<const R: usize>(
    rows: &mut [f64],
    inv: &[f64; R],
    shift: &[f64],
    ur: Option<&mut [f64]>,
    p: &mut BlockSums,
) -> [f64; R] {
    let d = shift.len();
    let mut lanes = [[0.0f64; 8]; R];
    let whole = d - d % 8;
    let mut ur = ur;
    for k in (0..whole).step_by(8) {
        let s: [f64; 8] = shift[k..k + 8].try_into().unwrap();
        let mut us: [f64; 8] = p.unit_sum[k..k + 8].try_into().unwrap();
        let mut uq: [f64; 8] = p.unit_sq[k..k + 8].try_into().unwrap();
        let mut sm: [f64; 8] = p.sum[k..k + 8].try_into().unwrap();
        for q in 0..R {
            let v: &mut [f64; 8] = (&mut rows[q * d + k..q * d + k + 8]).try_into().unwrap();
            let mut w = [0.0f64; 8];
            for l in 0..8 {
                w[l] = v[l] * inv[q];
                us[l] += w[l];
                uq[l] += w[l] * w[l];
                v[l] -= s[l];
                sm[l] += v[l];
                lanes[q][l] += v[l] * v[l];
            }
            if let Some(ur) = ur.as_deref_mut() {
                ur[q * d + k..q * d + k + 8].copy_from_slice(&w);
            }
        }
        p.unit_sum[k..k + 8].copy_from_slice(&us);
        p.unit_sq[k..k + 8].copy_from_slice(&uq);
        p.sum[k..k + 8].copy_from_slice(&sm);
    }
    let mut dev = [0.0f64; R];
    for q in 0..R {
        let r = &mut rows[q * d..(q + 1) * d];
        for j in whole..d {
            let w = r[j] * inv[q];
            if let Some(ur) = ur.as_deref_mut() {
                ur[q * d + j] = w;
            }
            p.unit_sum[j] += w;
            p.unit_sq[j] += w * w;
            r[j] -= shift[j];
            p.sum[j] += r[j];
            lanes[q][j % 8] += r[j] * r[j];
        }
        dev[q] = fold_lanes(&lanes[q]).sqrt();
    }
    dev
}

/// The mean of the first [`SHIFT_ROWS`] rows: the shift of every one-pass sum, the same however the source
/// is chunked or sharded.
pub fn head_mean(src: &dyn RowSource) -> Result<Vec<f64>> {
    let d = src.cols();
    let head = SHIFT_ROWS.min(src.rows());
    let mut first = vec![0.0f64; head * d];
    src.read_f64(0, head, &mut first)?;
    Ok(mean_of_rows(&first, d))
}

/// One pass over `src`: the moments `cfg` asks for. Values must be finite (the source checks as it reads).
/// An f64 source whose values are all below [`TINY`] takes a second pass, scaled (see the module notes).
pub fn moments(src: &dyn RowSource, cfg: &PassConfig, progress: &dyn Progress) -> Result<Moments> {
    moments_of(&Local(src), cfg, progress)
}

/// [`moments`] of rows read through passes (in this process or on a cluster): the shift from the first
/// [`SHIFT_ROWS`] rows, then one pass of sums ([`MomentsPass`]), taken again scaled when the values are f64
/// below [`TINY`].
pub fn moments_of(p: &dyn Passes, cfg: &PassConfig, progress: &dyn Progress) -> Result<Moments> {
    let (n, d) = (p.rows(), p.cols());
    if n == 0 || d == 0 {
        return Err(Error::data(
            p.name(),
            format!("the data is {n} × {d}"),
            "pass a non-empty 2-D array",
        ));
    }
    let shift = head_mean_of(p, progress)?;
    let mut spec = MomentsPass {
        cfg: *cfg,
        shift: shift.clone(),
        scale: 1.0,
        total_rows: n,
    };
    let mut sums = run_sums(p, &spec, progress)?;
    let scale = tiny_scale(sums.max_abs);
    if scale != 1.0 {
        spec.scale = scale;
        spec.shift = shift.iter().map(|v| v * scale).collect();
        sums = run_sums(p, &spec, progress)?;
    }
    Ok(sums.finish(&spec))
}

/// [`head_mean`] of rows read through passes.
pub fn head_mean_of(p: &dyn Passes, progress: &dyn Progress) -> Result<Vec<f64>> {
    let head: Vec<u64> = (0..SHIFT_ROWS.min(p.rows()) as u64).collect();
    let values = partial::row_values(p, &head, progress)?;
    Ok(mean_of_rows(&values, p.cols()))
}

fn run_sums(p: &dyn Passes, spec: &MomentsPass, progress: &dyn Progress) -> Result<MomentSums> {
    match p
        .run(&Pass::Moments(spec.clone()), progress)?
        .covering(p.rows())?
        .value
    {
        Found::Moments(m) => Ok(*m),
        _ => Err(partial::corrupt("a moments pass returned another result")),
    }
}

/// The mean of row-major rows of width `d`, summed in row order.
fn mean_of_rows(values: &[f64], d: usize) -> Vec<f64> {
    let mut shift = vec![0.0f64; d];
    let rows = values.len() / d.max(1);
    for r in values.chunks_exact(d.max(1)) {
        shift.iter_mut().zip(r).for_each(|(a, b)| *a += b);
    }
    shift.iter_mut().for_each(|a| *a /= rows.max(1) as f64);
    shift
}

/// A pass of moment sums: what to sum, about which shift, at which scale, for a source of how many rows.
#[derive(Clone, Debug, PartialEq)]
pub struct MomentsPass {
    pub cfg: PassConfig,
    /// The shift s (already multiplied by `scale`).
    pub shift: Vec<f64>,
    /// The power of two the rows are multiplied by ([`tiny_scale`]).
    pub scale: f64,
    /// Rows of the whole source: how many deviations to keep, and whether the unit rows' Gram is d × d.
    pub total_rows: usize,
}

impl MomentsPass {
    /// Deviations kept: the n/100 (at least 1) largest.
    fn top_n(&self) -> usize {
        (self.total_rows / 100).max(1)
    }
    pub(crate) fn encode(&self, w: &mut Writer) {
        let c = &self.cfg;
        w.bool(c.rows)
            .bool(c.unit_rows)
            .bool(c.unit_gram)
            .bool(c.row_hashes)
            .usize(c.chunk_rows.unwrap_or(0))
            .f64s(&self.shift)
            .f64(self.scale)
            .usize(self.total_rows);
    }
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<MomentsPass> {
        let cfg = PassConfig {
            rows: r.bool()?,
            unit_rows: r.bool()?,
            unit_gram: r.bool()?,
            row_hashes: r.bool()?,
            chunk_rows: Some(r.usize()?).filter(|&c| c > 0),
        };
        Ok(MomentsPass {
            cfg,
            shift: r.f64s()?,
            scale: r.f64()?,
            total_rows: r.usize()?,
        })
    }
}

/// The sums of a moments pass over some rows, before they are finished into [`Moments`]: what one shard
/// contributes. Merged with the next shard's sums ([`MomentSums::merge`]), they are the sums of both.
#[derive(Clone, Debug, PartialEq)]
pub struct MomentSums {
    d: usize,
    /// Rows summed.
    n: usize,
    /// Σ (x − s).
    shifted_sum: Vec<f64>,
    /// The lower triangle of Σ (x − s)(x − s)ᵀ (when the rows were asked for).
    gram: Option<Mat<f64>>,
    /// The largest ‖x − s‖, largest first, at most `top_n`.
    top: Vec<f64>,
    top_n: usize,
    unit: Option<UnitPartial>,
    /// The largest |value| of an f64 source as read (0 otherwise).
    max_abs: f64,
    hashes: Option<Vec<u64>>,
}

/// The unit rows' part of [`MomentSums`].
#[derive(Clone, Debug, PartialEq)]
struct UnitPartial {
    n: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    /// The lower triangle of Σ u uᵀ, when asked for and d ≤ rows.
    gram: Option<Mat<f64>>,
    /// The unit rows themselves (all-zero rows left out), when their Gram is asked for and d > rows.
    rows: Option<Vec<f64>>,
}

/// Encodes the lower triangle of a d × d matrix (None as an empty list).
pub(crate) fn put_lower(w: &mut Writer, g: &Option<Mat<f64>>) {
    let v: Vec<f64> = match g {
        None => Vec::new(),
        Some(g) => (0..g.ncols())
            .flat_map(|j| (j..g.nrows()).map(move |i| g[(i, j)]))
            .collect(),
    };
    w.f64s(&v);
}

pub(crate) fn get_lower(r: &mut Reader<'_>, d: usize) -> Result<Option<Mat<f64>>> {
    let v = r.f64s()?;
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() != d * (d + 1) / 2 {
        return Err(partial::corrupt(
            "a triangle's size does not match the width",
        ));
    }
    let mut g = Mat::<f64>::zeros(d, d);
    let mut at = 0;
    for j in 0..d {
        for i in j..d {
            g[(i, j)] = v[at];
            at += 1;
        }
    }
    Ok(Some(g))
}

pub(crate) fn add_lower(a: &mut Option<Mat<f64>>, b: Option<Mat<f64>>) -> Result<()> {
    match (a.as_mut(), b) {
        (None, None) => Ok(()),
        (Some(a), Some(b)) if a.nrows() == b.nrows() => {
            for j in 0..a.ncols() {
                for i in j..a.nrows() {
                    a[(i, j)] += b[(i, j)];
                }
            }
            Ok(())
        }
        _ => Err(partial::corrupt(
            "sums of different passes cannot be merged",
        )),
    }
}

fn add_to(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

impl MomentSums {
    /// The sums of these rows and then `next`'s rows.
    pub fn merge(mut self, next: MomentSums) -> Result<MomentSums> {
        if self.d != next.d
            || self.top_n != next.top_n
            || self.unit.is_some() != next.unit.is_some()
            || self.hashes.is_some() != next.hashes.is_some()
        {
            return Err(partial::corrupt(
                "sums of different passes cannot be merged",
            ));
        }
        self.n += next.n;
        add_to(&mut self.shifted_sum, &next.shifted_sum);
        add_lower(&mut self.gram, next.gram)?;
        self.top.extend(next.top);
        self.top.sort_by(|a, b| b.total_cmp(a));
        self.top.truncate(self.top_n);
        if let (Some(a), Some(b)) = (self.unit.as_mut(), next.unit) {
            a.n += b.n;
            add_to(&mut a.sum, &b.sum);
            add_to(&mut a.sum_sq, &b.sum_sq);
            add_lower(&mut a.gram, b.gram)?;
            match (a.rows.as_mut(), b.rows) {
                (Some(x), Some(y)) => x.extend(y),
                (None, None) => {}
                _ => {
                    return Err(partial::corrupt(
                        "sums of different passes cannot be merged",
                    ))
                }
            }
        }
        self.max_abs = self.max_abs.max(next.max_abs);
        if let (Some(a), Some(b)) = (self.hashes.as_mut(), next.hashes) {
            a.extend(b);
        }
        Ok(self)
    }

    /// The moments of every row, from the sums over all of them and the pass that took them.
    pub fn finish(self, spec: &MomentsPass) -> Moments {
        let (n, d) = (self.n, self.d);
        let nf = n as f64;
        let shifted_sum = self.shifted_sum;
        let shift = spec.shift.clone();
        let m: Vec<f64> = shifted_sum.iter().map(|t| t / nf).collect();
        let mean: Vec<f64> = shift.iter().zip(&m).map(|(s, mi)| s + mi).collect();
        let shift_gap = m.iter().map(|v| v * v).sum::<f64>().sqrt();
        let scatter = match self.gram {
            Some(mut gram) => {
                linalg::symmetrize_lower(&mut gram);
                Mat::from_fn(d, d, |i, j| {
                    gram[(i, j)] - shifted_sum[i] * shifted_sum[j] / nf
                })
            }
            None => Mat::<f64>::zeros(0, 0),
        };
        let unit = self.unit.map(|u| {
            let mut gram = u.gram;
            if let Some(g) = gram.as_mut() {
                linalg::symmetrize_lower(g);
            }
            let gram_n = u.rows.map(|rows| {
                let k = u.n;
                let z = linalg::row_major(&rows, k, d);
                let mut g = Mat::<f64>::zeros(k, k);
                linalg::gemm(g.as_mut(), false, z, z.transpose(), 1.0, true);
                g
            });
            UnitSums {
                n: u.n,
                zero_rows: n - u.n,
                sum: u.sum,
                sum_sq: u.sum_sq,
                gram,
                gram_n,
            }
        });
        Moments {
            n,
            d,
            mean,
            scatter,
            shift,
            shifted_sum,
            top_deviations: self.top,
            shift_gap,
            unit,
            scale: spec.scale,
            row_hashes: self.hashes,
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.usize(self.d).usize(self.n).f64s(&self.shifted_sum);
        put_lower(w, &self.gram);
        w.f64s(&self.top).usize(self.top_n).f64(self.max_abs);
        w.bool(self.unit.is_some());
        if let Some(u) = &self.unit {
            w.usize(u.n).f64s(&u.sum).f64s(&u.sum_sq);
            put_lower(w, &u.gram);
            w.bool(u.rows.is_some());
            if let Some(rows) = &u.rows {
                w.f64s(rows);
            }
        }
        w.bool(self.hashes.is_some());
        if let Some(h) = &self.hashes {
            w.u64s(h);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<MomentSums> {
        let d = r.usize()?;
        let n = r.usize()?;
        let shifted_sum = r.f64s()?;
        let gram = get_lower(r, d)?;
        let top = r.f64s()?;
        let top_n = r.usize()?;
        let max_abs = r.f64()?;
        let unit = if r.bool()? {
            let un = r.usize()?;
            let sum = r.f64s()?;
            let sum_sq = r.f64s()?;
            let gram = get_lower(r, d)?;
            let rows = if r.bool()? { Some(r.f64s()?) } else { None };
            if sum.len() != d
                || sum_sq.len() != d
                || rows.as_ref().is_some_and(|v| v.len() != un * d)
            {
                return Err(partial::corrupt("unit-row sums of the wrong width"));
            }
            Some(UnitPartial {
                n: un,
                sum,
                sum_sq,
                gram,
                rows,
            })
        } else {
            None
        };
        let hashes = if r.bool()? { Some(r.u64s()?) } else { None };
        if shifted_sum.len() != d || top.len() > top_n {
            return Err(partial::corrupt("moment sums of the wrong width"));
        }
        Ok(MomentSums {
            d,
            n,
            shifted_sum,
            gram,
            top,
            top_n,
            unit,
            max_abs,
            hashes,
        })
    }
}

/// The sums of one [`MomentsPass`] over every row of `src` (a whole source, or one shard of one).
pub fn sums(
    src: &dyn RowSource,
    spec: &MomentsPass,
    progress: &dyn Progress,
) -> Result<MomentSums> {
    let (n, d) = (src.rows(), src.cols());
    let cfg = &spec.cfg;
    let (shift, scale) = (&spec.shift, spec.scale);
    if shift.len() != d {
        return Err(Error::data(
            src.name(),
            format!(
                "the rows have {d} columns but the pass's shift has {}",
                shift.len()
            ),
            "give every shard of a source the same width",
        ));
    }
    let watch = src.elem() == source::Elem::F64 && scale == 1.0;
    let mut max_abs = 0.0f64;

    let top_n = spec.top_n();
    let mut top: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(top_n + 1);
    let mut shifted_sum = vec![0.0f64; d];
    let mut gram = cfg.rows.then(|| Mat::<f64>::zeros(d, d));
    let unit_dd = d <= spec.total_rows;
    let unit_gram = cfg.unit_rows && cfg.unit_gram;
    let mut unit = cfg.unit_rows.then(|| UnitPartial {
        n: 0,
        sum: vec![0.0; d],
        sum_sq: vec![0.0; d],
        gram: (unit_gram && unit_dd).then(|| Mat::zeros(d, d)),
        rows: (unit_gram && !unit_dd).then(Vec::new),
    });
    let mut u = Vec::new();
    let mut hashes: Option<Vec<u64>> = cfg.row_hashes.then(|| Vec::with_capacity(n));
    let chunk = cfg.chunk_rows.unwrap_or_else(|| source::chunk_rows(src));
    progress.stage("pass over the rows", n as u64);
    source::for_each_stored_chunk(src, chunk, progress, |start, rows, values| {
        // Stored values are widened row by row in the walk, on the compute threads, where the row is about
        // to be summed.
        let (x, stored) = match values {
            source::ChunkValues::Wide(x) => (x, None),
            source::ChunkValues::Stored { elem, bytes, wide } => (wide, Some((elem, bytes))),
        };
        // One walk over each block of rows, row by row: the widening and finiteness check, the rows'
        // hashes (of the values as stored), the scaling, its unit rows (written to `u` when their Gram is
        // wanted), then the rows shifted in place.
        let walk = Walk {
            d,
            shift,
            rows: cfg.rows,
            unit: cfg.unit_rows,
            watch,
            hashing: hashes.is_some(),
            scale,
        };
        let block = BLOCK_ROWS * d;
        let raw = |i: usize| {
            stored.map(|(e, bytes)| {
                let w = block * e.size();
                (e, &bytes[i * w..((i + 1) * w).min(bytes.len())])
            })
        };
        let parts: Option<Vec<BlockSums>> = if unit_gram {
            u.resize(x.len(), 0.0);
            x.par_chunks_mut(block)
                .zip(u.par_chunks_mut(block))
                .enumerate()
                .map(|(i, (b, ub))| walk.block(b, raw(i), Some(ub)))
                .collect()
        } else {
            x.par_chunks_mut(block)
                .enumerate()
                .map(|(i, b)| walk.block(b, raw(i), None))
                .collect()
        };
        let Some(parts) = parts else {
            return Err(source::not_finite(src, start, rows, x));
        };
        for p in parts {
            max_abs = max_abs.max(p.max_abs);
            if let Some(all) = hashes.as_mut() {
                all.extend(p.hashes);
            }
            if let Some(us) = unit.as_mut() {
                us.n += p.kept;
                add_to(&mut us.sum, &p.unit_sum);
                add_to(&mut us.sum_sq, &p.unit_sq);
            }
            if cfg.rows {
                add_to(&mut shifted_sum, &p.sum);
                for q in p.dev {
                    push_largest(&mut top, top_n, q);
                }
            }
        }
        if unit_gram {
            let us = unit.as_mut().expect("unit sums are on");
            match (us.gram.as_mut(), us.rows.as_mut()) {
                (Some(g), _) => linalg::accumulate_gram_rows(g.as_mut(), &u, rows, d, true),
                (None, Some(all)) => all.extend(
                    u.chunks_exact(d)
                        .filter(|r| r.iter().any(|&v| v != 0.0))
                        .flatten(),
                ),
                (None, None) => unreachable!("one of the two forms is on"),
            }
        }
        if let Some(g) = gram.as_mut() {
            linalg::accumulate_gram_rows(g.as_mut(), x, rows, d, true);
        }
        Ok(())
    })?;
    progress.finish_stage();
    let mut top: Vec<f64> = top.into_iter().map(|r| f64::from_bits(r.0)).collect();
    top.sort_by(|a, b| b.total_cmp(a));
    Ok(MomentSums {
        d,
        n,
        shifted_sum,
        gram,
        top,
        top_n,
        unit,
        max_abs,
        hashes,
    })
}

/// The `top` largest values of f(row) over a second pass, largest first, and the sum of f over all rows.
/// f runs on blocks of rows in parallel; the sum is taken in row order, so it does not depend on threads.
pub fn top_of_pass(
    src: &dyn RowSource,
    top: usize,
    progress: &dyn Progress,
    f: impl Fn(&[f64]) -> f64 + Sync,
) -> Result<(Vec<f64>, f64)> {
    let d = src.cols();
    let mut heap: BinaryHeap<Reverse<u64>> = BinaryHeap::with_capacity(top + 1);
    let mut total = 0.0;
    let mut values = Vec::new();
    progress.stage("second pass", src.rows() as u64);
    source::for_each_chunk(src, source::chunk_rows(src), progress, |_, _, x| {
        values.clear();
        values.resize(x.len() / d.max(1), 0.0);
        values
            .par_chunks_mut(BLOCK_ROWS)
            .zip(x.par_chunks(BLOCK_ROWS * d))
            .for_each(|(v, b)| {
                v.iter_mut()
                    .zip(b.chunks_exact(d))
                    .for_each(|(o, r)| *o = f(r))
            });
        for &v in &values {
            total += v;
            push_largest(&mut heap, top, v.max(0.0));
        }
        Ok(())
    })?;
    progress.finish_stage();
    let mut v: Vec<f64> = heap.into_iter().map(|r| f64::from_bits(r.0)).collect();
    v.sort_by(|a, b| b.total_cmp(a));
    Ok((v, total))
}

/// Keeps the `top` largest non-negative values seen in a min-heap of their bits (non-negative f64 order as
/// their bits); a value below the smallest kept is not pushed at all.
fn push_largest(heap: &mut BinaryHeap<Reverse<u64>>, top: usize, v: f64) {
    let bits = v.to_bits();
    if heap.len() < top {
        heap.push(Reverse(bits));
    } else if heap.peek().is_some_and(|m| bits > m.0) {
        heap.pop();
        heap.push(Reverse(bits));
    }
}

/// ((x·scale − μ)·v)²: a row's squared projection on a direction, about the mean, in eight lanes (compiled for
/// AVX2 where the CPU has it; the same operations in the same order either way).
pub fn squared_projection(x: &[f64], scale: f64, mean: &[f64], v: &[f64]) -> f64 {
    #[inline(always)]
    fn body(x: &[f64], scale: f64, mean: &[f64], v: &[f64]) -> f64 {
        let mut lanes = [0.0f64; 8];
        for (j, ((&x, m), w)) in x.iter().zip(mean).zip(v).enumerate() {
            lanes[j % 8] += (x * scale - m) * w;
        }
        let p = fold_lanes(&lanes);
        p * p
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn avx2(x: &[f64], scale: f64, mean: &[f64], v: &[f64]) -> f64 {
        body(x, scale, mean, v)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(x, scale, mean, v) };
    }
    body(x, scale, mean, v)
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
            unit_gram: true,
            row_hashes: false,
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

    /// The sums of the pass against float64 sums taken row by row, with a width that is not a multiple of
    /// the walk's eight lanes, all-zero rows among the others (no direction: the four-row sweep falls back
    /// to row by row for their group), and the same rows read from files as stored (f32 and f64 .npy,
    /// widened in the walk) and from memory.
    #[test]
    fn the_walk_matches_float64_row_by_row_from_files_and_memory() {
        let (n, d) = (1001, 19);
        let mut r = Rng::new(11);
        let mut v: Vec<f64> = (0..n * d)
            .map(|i| (r.normal() * (1.0 + (i % d) as f64) + 3.0) as f32 as f64)
            .collect();
        for i in (0..n).step_by(7) {
            v[i * d..(i + 1) * d].fill(0.0);
        }
        let cfg = PassConfig {
            rows: true,
            unit_rows: true,
            unit_gram: false,
            row_hashes: true,
            chunk_rows: Some(300),
        };
        // Reference: row by row in f64.
        let zeros = (0..n).step_by(7).count();
        let (mut usum, mut usq) = (vec![0.0f64; d], vec![0.0f64; d]);
        let mut mean = vec![0.0f64; d];
        let mut dev = Vec::new();
        for row in v.chunks_exact(d) {
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 0.0 {
                for j in 0..d {
                    usum[j] += row[j] / norm;
                    usq[j] += (row[j] / norm).powi(2);
                }
            }
            mean.iter_mut()
                .zip(row)
                .for_each(|(a, x)| *a += x / n as f64);
        }
        let shift = mean_of_rows(&v[..SHIFT_ROWS.min(n) * d], d);
        for row in v.chunks_exact(d) {
            dev.push(
                row.iter()
                    .zip(&shift)
                    .map(|(x, s)| (x - s).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
        dev.sort_by(|a, b| b.total_cmp(a));
        let dir = std::env::temp_dir().join(format!("repscope-walk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        crate::data::npy::write(&dir.join("a32.npy"), &[n, d], &v32).unwrap();
        crate::data::npy::write(&dir.join("a64.npy"), &[n, d], &v).unwrap();
        let sources: Vec<Box<dyn RowSource>> = vec![
            Box::new(Matrix::from_vec(n, d, v32.clone(), "m32").unwrap()),
            Box::new(Matrix::from_f64(n, d, v.clone(), "m64").unwrap()),
            Box::new(
                source::FileRows::open_npy(&dir.join("a32.npy"))
                    .unwrap()
                    .unwrap(),
            ),
            Box::new(
                source::FileRows::open_npy(&dir.join("a64.npy"))
                    .unwrap()
                    .unwrap(),
            ),
        ];
        let first = moments(&*sources[0], &cfg, &Silent).unwrap();
        for src in &sources {
            let m = moments(&**src, &cfg, &Silent).unwrap();
            let u = m.unit.as_ref().unwrap();
            assert_eq!((u.n, u.zero_rows), (n - zeros, zeros));
            for j in 0..d {
                assert!((u.sum[j] - usum[j]).abs() < 1e-12 * n as f64, "{j}");
                assert!((u.sum_sq[j] - usq[j]).abs() < 1e-12 * n as f64, "{j}");
                assert!((m.mean[j] - mean[j]).abs() < 1e-12 * mean[j].abs().max(1.0));
            }
            for (a, b) in m.top_deviations.iter().zip(&dev) {
                assert!((a - b).abs() < 1e-12 * b, "{a} {b}");
            }
            assert_eq!(m.top_deviations.len(), n / 100);
            // Every source of the same values gives the same bits, and the same row hashes.
            assert_eq!(m.scatter, first.scatter);
            assert_eq!(u.sum, first.unit.as_ref().unwrap().sum);
            assert_eq!(m.row_hashes, first.row_hashes);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A value that is not finite in a file read as stored is named by its shard, row and column.
    #[test]
    fn a_value_that_is_not_finite_is_named_where_the_walk_widens_it() {
        let (n, d) = (500, 9);
        let dir = std::env::temp_dir().join(format!("repscope-walk-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut v: Vec<f32> = (0..n * d).map(|i| (i % 13) as f32).collect();
        crate::data::npy::write(&dir.join("s1.npy"), &[n, d], &v).unwrap();
        v[(321 * d) + 4] = f32::NAN;
        crate::data::npy::write(&dir.join("s2.npy"), &[n, d], &v).unwrap();
        let parts: Vec<Box<dyn RowSource>> = ["s1.npy", "s2.npy"]
            .iter()
            .map(|f| {
                Box::new(source::FileRows::open_npy(&dir.join(f)).unwrap().unwrap())
                    as Box<dyn RowSource>
            })
            .collect();
        let sh = Shards::new(parts, "dir".into()).unwrap();
        let Err(e) = moments(&sh, &PassConfig::SCATTER, &Silent) else {
            panic!("a NaN was summed")
        };
        let e = e.to_string();
        assert!(
            e.contains("s2.npy") && e.contains("row 321") && e.contains("column 4"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
