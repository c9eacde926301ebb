//! Activation statistics: per-dimension moments, massive activations, outlier and rogue dimensions,
//! sparsity, row norms and the outlier ratio γ = ‖mean‖/‖std‖, in one pass over the rows with f64
//! accumulators. Definitions follow METRICS.md ("Activations").
//!
//! The pass is an [`Accumulator`] per block of rows, merged in row order: partial results of any
//! contiguous blocks merge exactly (Chan's update for the moments, sums and counts, ordered lists), so the
//! result is the same for every thread count and for a stream read in chunks or shards.
use rayon::prelude::*;
use serde::Serialize;

use crate::data::duplicates::{self, Duplicates};
use crate::data::source::{self, Elem, RowSource};
use crate::data::Matrix;
use crate::error::{Error, Param, Result, Text};
use crate::partial::{self, Found, Local, Pass, Passes, Reader, Writer};
use crate::progress::{Progress, Silent};
use crate::spectrum::RogueDimension;

/// Rows per block of the pass.
const CHUNK: usize = 1024;

/// Settings of the activation statistics; the defaults are those of METRICS.md.
#[derive(Clone, Debug)]
pub struct ActivationConfig {
    /// A massive activation is larger than this in magnitude (Sun et al. 2024: 100)…
    pub massive_abs: f64,
    /// …and larger than this multiple of the median magnitude of its row (Sun et al.: 1000).
    pub massive_ratio: f64,
    /// Also count values with |a| < eps as inactive (exact zeros are always counted).
    pub eps: Option<f64>,
    /// A row is a peak row when its peak-to-median ratio is at least this multiple of the median ratio over
    /// the rows.
    pub peak_factor: f64,
    /// A dimension is an outlier when its mean lies this many standard deviations from the mean of the
    /// dimension means.
    pub outlier_sigma: f64,
    /// How many rogue dimensions to list.
    pub top_rogue: usize,
    /// How many massive values and peak-row groups to list (all are counted).
    pub max_listed: usize,
    /// Whether to find exact duplicate rows (a hash per row in the same pass, 8 bytes a row; a second pass
    /// compares values only where two rows share a hash).
    pub duplicates: bool,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        ActivationConfig {
            massive_abs: 100.0,
            massive_ratio: 1000.0,
            eps: None,
            peak_factor: 10.0,
            outlier_sigma: 3.0,
            top_rogue: 10,
            max_listed: 100,
            duplicates: true,
        }
    }
}

impl ActivationConfig {
    /// Checks every setting before any work.
    pub fn validate(&self) -> Result<()> {
        let check = |p: Param, v: f64, ok: bool, allowed: &str, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::range(
                    p,
                    v,
                    allowed.to_string(),
                    format!("{what} is {v}; it must be {allowed}"),
                ))
            }
        };
        let (a, r, f, o) = (
            self.massive_abs,
            self.massive_ratio,
            self.peak_factor,
            self.outlier_sigma,
        );
        check(
            Param::MassiveAbs,
            a,
            a.is_finite() && a >= 0.0,
            "a finite number ≥ 0",
            "the magnitude threshold of massive activations",
        )?;
        check(
            Param::MassiveRatio,
            r,
            r.is_finite() && r >= 0.0,
            "a finite number ≥ 0",
            "the ratio threshold of massive activations",
        )?;
        check(
            Param::PeakFactor,
            f,
            f.is_finite() && f >= 1.0,
            "a finite number ≥ 1",
            "the peak-row factor",
        )?;
        check(
            Param::OutlierSigma,
            o,
            o.is_finite() && o > 0.0,
            "a finite number > 0",
            "the outlier threshold in standard deviations",
        )?;
        if let Some(e) = self.eps {
            check(
                Param::Eps,
                e,
                e.is_finite() && e > 0.0,
                "a finite number > 0",
                "the inactivity threshold ε",
            )?;
        }
        Ok(())
    }
}

/// One massive activation.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct MassiveValue {
    pub row: usize,
    pub dim: usize,
    /// The value, with its sign.
    pub value: f64,
    /// The median |a| of its row.
    pub row_median_abs: f64,
    /// |value| / row_median_abs (null when the median is 0).
    pub ratio: Option<f64>,
    /// The token at this row, when token ids were given.
    pub token_id: Option<u32>,
    /// The token's text, when a tokenizer was given.
    pub token: Option<String>,
}

/// Massive activations: every value above both thresholds is counted; the largest are listed.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct MassiveReport {
    pub abs_threshold: f64,
    pub ratio_threshold: f64,
    /// How many values are massive.
    pub count: u64,
    /// How many rows hold at least one.
    pub rows: u64,
    /// (dimension, count) for every dimension that holds one, most first.
    pub by_dimension: Vec<(usize, u64)>,
    /// The largest massive values by magnitude (row, then dimension, breaks ties).
    pub listed: Vec<MassiveValue>,
    /// Whether more were found than listed.
    pub truncated: bool,
}

/// Peak rows that share a token (when token ids are known) and the dimension of their peak.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct PeakGroup {
    pub token_id: Option<u32>,
    pub token: Option<String>,
    /// The dimension of the rows' largest |a|.
    pub dim: usize,
    /// How many peak rows are in the group.
    pub rows: usize,
    /// The median of the signed peak values.
    pub median_peak: f64,
    /// The median of the rows' peak-to-median ratios.
    pub median_ratio: f64,
    /// The first rows of the group (up to five).
    pub examples: Vec<usize>,
}

/// Rows whose largest |a| stands out from the rest of the row far more than is typical: the outlier
/// tokens (special tokens, attention sinks) of a transformer's states.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct PeakRows {
    pub factor: f64,
    /// The median over rows of max|a| / median|a| (rows with a zero median left out).
    pub median_ratio: Option<f64>,
    /// factor × median_ratio: a row at or above it is a peak row.
    pub threshold: Option<f64>,
    /// How many rows are peak rows.
    pub rows: usize,
    /// Rows whose median |a| is 0, left out of the rule (sparse rows).
    pub rows_with_zero_median: usize,
    /// Peak rows grouped by token and peak dimension, largest group first.
    pub groups: Vec<PeakGroup>,
    /// Whether more groups were found than listed.
    pub truncated: bool,
}

/// One outlier dimension: its mean and how many standard deviations of the dimension means it lies from
/// their mean.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct OutlierDimension {
    pub dim: usize,
    pub mean: f64,
    pub z: f64,
}

/// A quantile of a per-row quantity.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Quantile {
    pub q: f64,
    pub value: f64,
}

/// Per-dimension statistics, one entry per column.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct PerDimension {
    pub mean: Vec<f64>,
    /// Population standard deviation (divided by n).
    pub std: Vec<f64>,
    pub max_abs: Vec<f64>,
    /// The first row holding the largest |a|.
    pub max_abs_row: Vec<usize>,
    /// Share of the rows where the value is exactly 0.
    pub zero_fraction: Vec<f64>,
    /// Share of the rows where |a| < ε (when ε was given).
    pub small_fraction: Option<Vec<f64>>,
}

/// Per-row quantities, one entry per row; the faces summarise them (the JSON document gives quantiles,
/// Python returns the arrays).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerRow {
    pub norm: Vec<f64>,
    /// How many of the row's values are exactly 0 (of `d`; see [`PerRow::zero_fraction`]).
    pub zeros: Vec<u32>,
    /// How many have |a| < ε (empty when ε was not given).
    pub small: Vec<u32>,
    /// The signed value of the row's largest |a|.
    pub peak: Vec<f64>,
    /// Its dimension (the first, on ties).
    pub peak_dim: Vec<u32>,
    /// The median |a| of the row.
    pub median_abs: Vec<f64>,
}

impl PerRow {
    /// Room for `rows` more rows, so that appending blocks never reallocates (a reallocation holds the
    /// old and the new buffer at once).
    fn reserve(&mut self, rows: usize, eps: bool) {
        self.norm.reserve_exact(rows);
        self.zeros.reserve_exact(rows);
        if eps {
            self.small.reserve_exact(rows);
        }
        self.peak.reserve_exact(rows);
        self.peak_dim.reserve_exact(rows);
        self.median_abs.reserve_exact(rows);
    }
    /// The share of each row's `d` values that are exactly 0.
    pub fn zero_fraction(&self, d: usize) -> Vec<f64> {
        self.zeros.iter().map(|&z| z as f64 / d as f64).collect()
    }
    /// The share of each row's `d` values with |a| < ε (empty when ε was not given).
    pub fn small_fraction(&self, d: usize) -> Vec<f64> {
        self.small.iter().map(|&z| z as f64 / d as f64).collect()
    }
}

/// Everything `repscope activations` reports.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ActivationReport {
    pub n: usize,
    pub d: usize,
    /// γ = ‖μ‖/‖σ‖ over the per-dimension means and standard deviations (null when every σ is 0).
    pub outlier_ratio: Option<f64>,
    /// Share of all values that are exactly 0.
    pub zero_fraction: f64,
    /// The ε of `small_fraction`, when given.
    pub eps: Option<f64>,
    /// Share of all values with |a| < ε.
    pub small_fraction: Option<f64>,
    /// Dimensions that are 0 in every row.
    pub always_zero_dims: Vec<usize>,
    pub mean_row_norm: f64,
    pub row_norm_quantiles: Vec<Quantile>,
    pub row_zero_fraction_quantiles: Vec<Quantile>,
    pub row_small_fraction_quantiles: Option<Vec<Quantile>>,
    pub massive: MassiveReport,
    pub peak_rows: PeakRows,
    pub outlier_sigma: f64,
    /// Dimensions whose mean is an outlier among the dimension means, largest |z| first.
    pub outlier_dimensions: Vec<OutlierDimension>,
    /// Mean cosine similarity between distinct rows (null for fewer than two rows with a direction).
    pub anisotropy: Option<f64>,
    /// The dimensions that contribute most to the mean cosine similarity.
    pub rogue_dimensions: Vec<RogueDimension>,
    pub per_dimension: PerDimension,
    /// Exact duplicate rows (null when not asked for).
    pub duplicates: Option<Duplicates>,
    pub notes: Vec<String>,
    /// Per-row quantities (not in the JSON document).
    #[serde(skip)]
    pub rows: PerRow,
}

impl ActivationReport {
    /// Names the tokens of massive values and peak groups with `name(token_id)` (a tokenizer's decoding).
    pub fn name_tokens(&mut self, name: &dyn Fn(u32) -> Option<String>) {
        for m in &mut self.massive.listed {
            m.token = m.token_id.and_then(name);
        }
        for g in &mut self.peak_rows.groups {
            g.token = g.token_id.and_then(name);
        }
    }
}

/// The partial statistics of a contiguous block of rows. Blocks merge exactly, in row order.
#[derive(Clone, Debug, PartialEq)]
pub struct Accumulator {
    d: usize,
    /// Row index of the first row.
    start: usize,
    rows: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
    max_abs: Vec<f64>,
    max_row: Vec<usize>,
    zeros: Vec<u64>,
    small: Vec<u64>,
    unit_sum: Vec<f64>,
    unit_sq: Vec<f64>,
    unit_rows: usize,
    massive_by_dim: Vec<u64>,
    massive_count: u64,
    massive_rows: u64,
    /// The largest massive values, at most `max_listed`, in listing order: (value, row, dim, row median).
    massive: Vec<(f64, usize, usize, f64)>,
    max_listed: usize,
    per_row: PerRow,
}

/// The thresholds the pass applies, in the units of the values it reads.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rules {
    massive_abs: f64,
    massive_ratio: f64,
    eps: Option<f64>,
    max_listed: usize,
}

/// The pass of the activation statistics: its thresholds, the power of two the values are multiplied by
/// (tiny f64 values), and whether to hash the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationsPass {
    rules: Rules,
    scale: f64,
    hashes: bool,
}

impl ActivationsPass {
    pub(crate) fn encode(&self, w: &mut Writer) {
        let r = &self.rules;
        w.f64(r.massive_abs)
            .f64(r.massive_ratio)
            .bool(r.eps.is_some())
            .f64(r.eps.unwrap_or(0.0))
            .usize(r.max_listed)
            .f64(self.scale)
            .bool(self.hashes);
    }
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ActivationsPass> {
        let massive_abs = r.f64()?;
        let massive_ratio = r.f64()?;
        let has_eps = r.bool()?;
        let eps = r.f64()?;
        Ok(ActivationsPass {
            rules: Rules {
                massive_abs,
                massive_ratio,
                eps: has_eps.then_some(eps),
                max_listed: r.usize()?,
            },
            scale: r.f64()?,
            hashes: r.bool()?,
        })
    }
}

/// What the activation pass found in some rows: the statistics and, when asked for, the rows' hashes.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationSums {
    acc: Accumulator,
    hashes: Option<Vec<u64>>,
}

impl ActivationSums {
    /// The statistics of these rows and then `next`'s.
    pub fn merge(self, next: ActivationSums) -> Result<ActivationSums> {
        if self.acc.d != next.acc.d
            || self.acc.start + self.acc.rows != next.acc.start
            || self.hashes.is_some() != next.hashes.is_some()
        {
            return Err(partial::corrupt(
                "activation statistics of different passes or of rows that do not follow cannot be merged",
            ));
        }
        let hashes = match (self.hashes, next.hashes) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        Ok(ActivationSums {
            acc: self.acc.merge(next.acc),
            hashes,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        let a = &self.acc;
        let us = |v: &[usize]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
        let u32s = |v: &[u32]| v.iter().map(|&x| x as u64).collect::<Vec<u64>>();
        w.usize(a.d).usize(a.start).usize(a.rows);
        w.f64s(&a.mean)
            .f64s(&a.m2)
            .f64s(&a.max_abs)
            .u64s(&us(&a.max_row));
        w.u64s(&a.zeros)
            .u64s(&a.small)
            .f64s(&a.unit_sum)
            .f64s(&a.unit_sq);
        w.usize(a.unit_rows)
            .u64s(&a.massive_by_dim)
            .u64(a.massive_count)
            .u64(a.massive_rows);
        let (mv, mr, md, mm): (Vec<f64>, Vec<u64>, Vec<u64>, Vec<f64>) = (
            a.massive.iter().map(|m| m.0).collect(),
            a.massive.iter().map(|m| m.1 as u64).collect(),
            a.massive.iter().map(|m| m.2 as u64).collect(),
            a.massive.iter().map(|m| m.3).collect(),
        );
        w.f64s(&mv)
            .u64s(&mr)
            .u64s(&md)
            .f64s(&mm)
            .usize(a.max_listed);
        let p = &a.per_row;
        w.f64s(&p.norm).u64s(&u32s(&p.zeros)).u64s(&u32s(&p.small));
        w.f64s(&p.peak).u64s(&u32s(&p.peak_dim)).f64s(&p.median_abs);
        w.bool(self.hashes.is_some());
        if let Some(h) = &self.hashes {
            w.u64s(h);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ActivationSums> {
        let bad = || partial::corrupt("activation statistics of the wrong size");
        let to_u32 = |v: Vec<u64>| -> Result<Vec<u32>> {
            v.into_iter()
                .map(|x| u32::try_from(x).map_err(|_| bad()))
                .collect()
        };
        let (d, start, rows) = (r.usize()?, r.usize()?, r.usize()?);
        let mean = r.f64s()?;
        let m2 = r.f64s()?;
        let max_abs = r.f64s()?;
        let max_row: Vec<usize> = r.u64s()?.into_iter().map(|x| x as usize).collect();
        let zeros = r.u64s()?;
        let small = r.u64s()?;
        let unit_sum = r.f64s()?;
        let unit_sq = r.f64s()?;
        let unit_rows = r.usize()?;
        let massive_by_dim = r.u64s()?;
        let (massive_count, massive_rows) = (r.u64()?, r.u64()?);
        let (mv, mr, md, mm) = (r.f64s()?, r.u64s()?, r.u64s()?, r.f64s()?);
        let max_listed = r.usize()?;
        let per_row = PerRow {
            norm: r.f64s()?,
            zeros: to_u32(r.u64s()?)?,
            small: to_u32(r.u64s()?)?,
            peak: r.f64s()?,
            peak_dim: to_u32(r.u64s()?)?,
            median_abs: r.f64s()?,
        };
        let hashes = if r.bool()? { Some(r.u64s()?) } else { None };
        let widths = [&mean, &m2, &max_abs, &unit_sum, &unit_sq];
        if widths.iter().any(|v| v.len() != d)
            || [
                max_row.len(),
                zeros.len(),
                small.len(),
                massive_by_dim.len(),
            ]
            .iter()
            .any(|&l| l != d)
            || [mr.len(), md.len(), mm.len()]
                .iter()
                .any(|&l| l != mv.len())
            || per_row.norm.len() != rows
            || hashes.as_ref().is_some_and(|h| h.len() != rows)
        {
            return Err(bad());
        }
        let massive = (0..mv.len())
            .map(|i| (mv[i], mr[i] as usize, md[i] as usize, mm[i]))
            .collect();
        Ok(ActivationSums {
            acc: Accumulator {
                d,
                start,
                rows,
                mean,
                m2,
                max_abs,
                max_row,
                zeros,
                small,
                unit_sum,
                unit_sq,
                unit_rows,
                massive_by_dim,
                massive_count,
                massive_rows,
                massive,
                max_listed,
                per_row,
            },
            hashes,
        })
    }
}

fn listing_order(a: &(f64, usize, usize, f64), b: &(f64, usize, usize, f64)) -> std::cmp::Ordering {
    b.0.abs()
        .total_cmp(&a.0.abs())
        .then(a.1.cmp(&b.1))
        .then(a.2.cmp(&b.2))
}

/// The median of `v` (the mean of the two middle values for an even count), reordering `v`.
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    0.5 * (lo + hi)
}

impl Accumulator {
    /// An empty block starting at row `start`.
    fn new(d: usize, start: usize, max_listed: usize) -> Self {
        Accumulator {
            d,
            start,
            rows: 0,
            mean: vec![0.0; d],
            m2: vec![0.0; d],
            max_abs: vec![0.0; d],
            max_row: vec![start; d],
            zeros: vec![0; d],
            small: vec![0; d],
            unit_sum: vec![0.0; d],
            unit_sq: vec![0.0; d],
            unit_rows: 0,
            massive_by_dim: vec![0; d],
            massive_count: 0,
            massive_rows: 0,
            massive: Vec::new(),
            max_listed,
            per_row: PerRow::default(),
        }
    }

    /// The statistics of the rows `values` (row-major, `d` columns) whose first row is `start`. Values are
    /// read as given; `raw` holds the unscaled values for the zero and ε counts when they differ.
    fn block(d: usize, start: usize, values: &[f64], raw: Option<&[f64]>, r: Rules) -> Self {
        let mut acc = Accumulator::new(d, start, r.max_listed);
        let rows = values.len() / d.max(1);
        acc.rows = rows;
        if rows == 0 {
            return acc;
        }
        let raw = raw.unwrap_or(values);
        // Moments: two passes over the block, merged into the whole by Chan's update.
        for row in values.chunks_exact(d) {
            for (m, v) in acc.mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        acc.mean.iter_mut().for_each(|m| *m /= rows as f64);
        for row in values.chunks_exact(d) {
            for ((q, m), v) in acc.m2.iter_mut().zip(&acc.mean).zip(row) {
                let c = v - m;
                *q += c * c;
            }
        }
        let mut scratch = vec![0.0f64; d];
        let pr = &mut acc.per_row;
        for (i, (row, raw_row)) in values.chunks_exact(d).zip(raw.chunks_exact(d)).enumerate() {
            let at = start + i;
            let mut ss = 0.0f64;
            let (mut peak, mut peak_dim) = (0.0f64, 0usize);
            let (mut z, mut s) = (0u32, 0u32);
            for (j, (&v, &w)) in row.iter().zip(raw_row).enumerate() {
                ss += v * v;
                let a = v.abs();
                scratch[j] = a;
                if a > peak.abs() {
                    peak = v;
                    peak_dim = j;
                }
                if a > acc.max_abs[j] {
                    acc.max_abs[j] = a;
                    acc.max_row[j] = at;
                }
                if w == 0.0 {
                    z += 1;
                    acc.zeros[j] += 1;
                }
                if let Some(e) = r.eps {
                    if w.abs() < e {
                        s += 1;
                        acc.small[j] += 1;
                    }
                }
            }
            let norm = ss.sqrt();
            if ss > 0.0 {
                let inv = 1.0 / norm;
                for (j, &v) in row.iter().enumerate() {
                    let u = v * inv;
                    acc.unit_sum[j] += u;
                    acc.unit_sq[j] += u * u;
                }
                acc.unit_rows += 1;
            }
            let med = median_in_place(&mut scratch);
            let mut any = false;
            for (j, &v) in row.iter().enumerate() {
                let a = v.abs();
                if a > r.massive_abs && a > r.massive_ratio * med {
                    any = true;
                    acc.massive_count += 1;
                    acc.massive_by_dim[j] += 1;
                    acc.massive.push((v, at, j, med));
                }
            }
            if any {
                acc.massive_rows += 1;
            }
            pr.norm.push(norm);
            pr.zeros.push(z);
            if r.eps.is_some() {
                pr.small.push(s);
            }
            pr.peak.push(peak);
            pr.peak_dim.push(peak_dim as u32);
            pr.median_abs.push(med);
        }
        acc.massive.sort_by(listing_order);
        acc.massive.truncate(r.max_listed);
        acc
    }

    /// Appends the block that follows this one.
    fn merge(mut self, b: Accumulator) -> Self {
        debug_assert_eq!(self.start + self.rows, b.start);
        if b.rows == 0 {
            return self;
        }
        if self.rows == 0 {
            return b;
        }
        let (na, nb) = (self.rows as f64, b.rows as f64);
        let n = na + nb;
        for j in 0..self.d {
            let delta = b.mean[j] - self.mean[j];
            self.mean[j] += delta * (nb / n);
            self.m2[j] += b.m2[j] + delta * delta * (na * nb / n);
            // The first row wins a tie: this block's rows come first.
            if b.max_abs[j] > self.max_abs[j] {
                self.max_abs[j] = b.max_abs[j];
                self.max_row[j] = b.max_row[j];
            }
            self.zeros[j] += b.zeros[j];
            self.small[j] += b.small[j];
            self.unit_sum[j] += b.unit_sum[j];
            self.unit_sq[j] += b.unit_sq[j];
            self.massive_by_dim[j] += b.massive_by_dim[j];
        }
        self.rows += b.rows;
        self.unit_rows += b.unit_rows;
        self.massive_count += b.massive_count;
        self.massive_rows += b.massive_rows;
        self.massive.extend(b.massive);
        self.massive.sort_by(listing_order);
        self.massive.truncate(self.max_listed);
        let pr = &mut self.per_row;
        pr.norm.extend(b.per_row.norm);
        pr.zeros.extend(b.per_row.zeros);
        pr.small.extend(b.per_row.small);
        pr.peak.extend(b.per_row.peak);
        pr.peak_dim.extend(b.per_row.peak_dim);
        pr.median_abs.extend(b.per_row.median_abs);
        self
    }
}

/// The f64 total order as unsigned integers (for values that are not NaN): `key(a) < key(b)` exactly when
/// `a.total_cmp(&b)` is `Less`.
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The values of the given 0-based ranks among the items `value(i)` that are `Some` (i < n), found without
/// copying or reordering them: radix selection on [`order_key`], 16 bits a level, with the candidates of a
/// bucket gathered and selected once there are few. Memory is a 65,536-entry histogram whatever n is.
fn order_stats(n: usize, value: &dyn Fn(usize) -> Option<f64>, ranks: &[usize]) -> Vec<f64> {
    const GATHER: u64 = 1 << 16;
    let mut top: Option<Vec<u64>> = None;
    ranks
        .iter()
        .map(|&rank| {
            let (mut prefix, mut shift, mut r) = (0u64, 64u32, rank as u64);
            loop {
                let in_prefix = |k: u64| shift == 64 || k >> shift == prefix;
                let next = shift - 16;
                let fresh;
                let hist: &Vec<u64> = if shift == 64 {
                    top.get_or_insert_with(|| {
                        let mut h = vec![0u64; 1 << 16];
                        (0..n)
                            .filter_map(value)
                            .for_each(|x| h[(order_key(x) >> 48) as usize] += 1);
                        h
                    })
                } else {
                    let mut h = vec![0u64; 1 << 16];
                    for x in (0..n).filter_map(value) {
                        let k = order_key(x);
                        if in_prefix(k) {
                            h[((k >> next) & 0xffff) as usize] += 1;
                        }
                    }
                    fresh = h;
                    &fresh
                };
                let mut bucket = 0;
                while r >= hist[bucket] {
                    r -= hist[bucket];
                    bucket += 1;
                }
                let count = hist[bucket];
                prefix = if shift == 64 {
                    bucket as u64
                } else {
                    (prefix << 16) | bucket as u64
                };
                shift = next;
                if shift == 0 {
                    // Every item of the bucket has this key: the value itself.
                    let k = prefix;
                    let bits = if k >> 63 == 1 { k & !(1 << 63) } else { !k };
                    return f64::from_bits(bits);
                }
                if count <= GATHER {
                    let mut c: Vec<f64> = (0..n)
                        .filter_map(value)
                        .filter(|&x| order_key(x) >> shift == prefix)
                        .collect();
                    let (_, v, _) = c.select_nth_unstable_by(r as usize, f64::total_cmp);
                    return *v;
                }
            }
        })
        .collect()
}

/// Linear-interpolation quantiles (numpy's default) of the `m` items `value(i)` that are `Some`, as
/// sorting them would give, without a copy.
fn quantiles_of(
    n: usize,
    m: usize,
    value: &dyn Fn(usize) -> Option<f64>,
    qs: &[f64],
) -> Vec<Quantile> {
    if m == 0 {
        return qs
            .iter()
            .map(|&q| Quantile { q, value: f64::NAN })
            .collect();
    }
    let at = |q: f64| {
        let pos = q * (m - 1) as f64;
        let lo = pos.floor() as usize;
        (pos, lo, (lo + 1).min(m - 1))
    };
    let mut ranks: Vec<usize> = qs.iter().flat_map(|&q| [at(q).1, at(q).2]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let vals = order_stats(n, value, &ranks);
    let of = |r: usize| vals[ranks.binary_search(&r).expect("a rank asked for")];
    qs.iter()
        .map(|&q| {
            let (pos, lo, hi) = at(q);
            let frac = pos - lo as f64;
            let (a, b) = (of(lo), of(hi));
            Quantile {
                q,
                value: a + (b - a) * frac,
            }
        })
        .collect()
}

/// The median of the `m` items `value(i)` that are `Some` (the mean of the two middle values for an even
/// count), without a copy.
fn median_of(n: usize, m: usize, value: &dyn Fn(usize) -> Option<f64>) -> f64 {
    if m == 0 {
        return 0.0;
    }
    if m % 2 == 1 {
        return order_stats(n, value, &[m / 2])[0];
    }
    let v = order_stats(n, value, &[m / 2 - 1, m / 2]);
    0.5 * (v[0] + v[1])
}

/// The quantiles reported for per-row quantities.
pub const QUANTILES: [f64; 9] = [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0];

/// Activation statistics of the rows of `m`; `token_ids` (one per row) name the tokens of massive values
/// and peak rows.
pub fn analyse(
    m: &Matrix,
    cfg: &ActivationConfig,
    token_ids: Option<&[u32]>,
) -> Result<ActivationReport> {
    analyse_source(m, cfg, token_ids, &Silent)
}

/// Activation statistics of a row source (a matrix, a file or shards) in one streaming pass (two for f64
/// sources of tiny values): blocks of [`CHUNK`] rows are summarised in parallel and merged in row order,
/// so the result does not depend on the chunking or the thread count. Memory: the per-dimension sums, a few
/// numbers per row (for the row quantiles and peak rows) and two chunks of rows.
pub fn analyse_source(
    src: &dyn RowSource,
    cfg: &ActivationConfig,
    token_ids: Option<&[u32]>,
    progress: &dyn Progress,
) -> Result<ActivationReport> {
    analyse_passes(&Local(src), cfg, token_ids, progress)
}

/// [`analyse_source`] of rows read through passes, in this process or on a cluster: the largest |value| of
/// f64 rows first (whether they need scaling), then the statistics' pass, then the duplicates.
pub fn analyse_passes(
    src: &dyn Passes,
    cfg: &ActivationConfig,
    token_ids: Option<&[u32]>,
    progress: &dyn Progress,
) -> Result<ActivationReport> {
    cfg.validate()?;
    let (n, d) = (src.rows(), src.cols());
    if n == 0 || d == 0 {
        return Err(Error::InvalidData {
            input: src.name().to_string(),
            problem: format!("the matrix is {n} × {d}; activation statistics need at least one row and one column"),
            fix: Text::from("pass a non-empty array"),
        });
    }
    if let Some(t) = token_ids {
        if t.len() != n {
            return Err(Error::InvalidData {
                input: src.name().to_string(),
                problem: format!(
                    "{} token ids were given for {n} rows; there must be one per row",
                    t.len()
                ),
                fix: Text::from("pass the token ids written beside these states"),
            });
        }
    }
    // f32 values widened to f64 never need scaling, so only f64 sources take this extra pass.
    let scale = if src.elem() == Elem::F64 {
        match src.run(&Pass::MaxAbs, progress)?.covering(n)?.value {
            Found::MaxAbs(max) => crate::moments::tiny_scale(max),
            _ => return Err(partial::corrupt("a range pass returned another result")),
        }
    } else {
        1.0
    };
    let pass = ActivationsPass {
        rules: Rules {
            massive_abs: cfg.massive_abs * scale,
            massive_ratio: cfg.massive_ratio,
            eps: cfg.eps,
            max_listed: cfg.max_listed,
        },
        scale,
        hashes: cfg.duplicates,
    };
    let sums = match src
        .run(&Pass::Activations(pass), progress)?
        .covering(n)?
        .value
    {
        Found::Activations(s) => *s,
        _ => {
            return Err(partial::corrupt(
                "an activations pass returned another result",
            ))
        }
    };
    let mut report = finish(sums.acc, cfg, token_ids, scale);
    if let Some(h) = sums.hashes {
        let (dup, _) = src.duplicates(h, false, progress)?;
        if dup.has_duplicates() {
            report.notes.push(format!(
                "{} of {n} rows repeat an earlier row exactly ({} distinct values repeated, the largest group {} rows, first at row {})",
                dup.merged, dup.groups, dup.max_multiplicity, dup.largest[0].first_row
            ));
        }
        report.duplicates = Some(dup);
    }
    Ok(report)
}

/// The largest |value| of the rows of `src` (f64 sources; 0 for others, whose values cannot be that small).
pub(crate) fn max_abs(src: &dyn RowSource, progress: &dyn Progress) -> Result<f64> {
    if src.elem() != Elem::F64 {
        return Ok(0.0);
    }
    let mut max = 0.0f64;
    progress.stage("range of the values", src.rows() as u64);
    source::for_each_chunk(src, source::chunk_rows(src), progress, |_, _, x| {
        max = x.iter().fold(max, |a, v| a.max(v.abs()));
        Ok(())
    })?;
    progress.finish_stage();
    Ok(max)
}

/// The statistics' pass over every row of `src`, whose first row is global row `first_row`.
pub(crate) fn sums(
    src: &dyn RowSource,
    pass: &ActivationsPass,
    first_row: usize,
    progress: &dyn Progress,
) -> Result<ActivationSums> {
    let (n, d) = (src.rows(), src.cols());
    let (rules, scale) = (pass.rules, pass.scale);
    // Chunks of whole blocks, about 2²² values.
    let per_chunk = ((1usize << 22) / (CHUNK * d.max(1))).clamp(1, 16);
    let mut acc: Option<Accumulator> = None;
    let mut hashes: Option<Vec<u64>> = pass.hashes.then(|| Vec::with_capacity(n));
    let hashing = pass.hashes;
    progress.stage("activation statistics", n as u64);
    source::for_each_chunk(src, per_chunk * CHUNK, progress, |start, _, x| {
        let blocks: Vec<(Accumulator, Vec<u64>)> = x
            .par_chunks_mut(CHUNK * d)
            .enumerate()
            .map(|(b, buf)| {
                let s = first_row + start + b * CHUNK;
                let mut h = Vec::new();
                if hashing {
                    duplicates::hash_block(buf, d, &mut h);
                }
                let a = if scale != 1.0 {
                    let raw = buf.to_vec();
                    buf.iter_mut().for_each(|v| *v *= scale);
                    Accumulator::block(d, s, buf, Some(&raw), rules)
                } else {
                    Accumulator::block(d, s, buf, None, rules)
                };
                (a, h)
            })
            .collect();
        for (b, h) in blocks {
            if let Some(all) = hashes.as_mut() {
                all.extend(h);
            }
            acc = Some(match acc.take() {
                None => {
                    let mut a = b;
                    a.per_row.reserve(n - a.rows, rules.eps.is_some());
                    a
                }
                Some(a) => a.merge(b),
            });
        }
        Ok(())
    })?;
    progress.finish_stage();
    let acc = acc.unwrap_or_else(|| Accumulator::new(d, first_row, rules.max_listed));
    Ok(ActivationSums { acc, hashes })
}

fn finish(
    mut acc: Accumulator,
    cfg: &ActivationConfig,
    token_ids: Option<&[u32]>,
    scale: f64,
) -> ActivationReport {
    let (n, d) = (acc.rows, acc.d);
    let nf = n as f64;
    let back = 1.0 / scale;
    let mut notes = Vec::new();
    let mean: Vec<f64> = acc.mean.iter().map(|m| m * back).collect();
    let std: Vec<f64> = acc.m2.iter().map(|q| (q / nf).sqrt() * back).collect();
    let max_abs: Vec<f64> = acc.max_abs.iter().map(|v| v * back).collect();
    let zero_fraction: Vec<f64> = acc.zeros.iter().map(|&z| z as f64 / nf).collect();
    let small_fraction = cfg.eps.map(|_| {
        acc.small
            .iter()
            .map(|&z| z as f64 / nf)
            .collect::<Vec<f64>>()
    });
    // Ratios and z-scores are taken in the pass's units, where squares neither overflow nor underflow.
    let norm_mu = acc.mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    let norm_sd = (acc.m2.iter().sum::<f64>() / nf).sqrt();
    let outlier_ratio = if norm_sd > 0.0 {
        Some(norm_mu / norm_sd)
    } else {
        notes.push(
            "every dimension is constant: the outlier ratio γ = ‖mean‖/‖std‖ is undefined".into(),
        );
        None
    };
    let total_zeros: u64 = acc.zeros.iter().sum();
    let total_small: u64 = acc.small.iter().sum();
    let cells = nf * d as f64;
    let always_zero_dims: Vec<usize> = (0..d).filter(|&j| acc.zeros[j] == n as u64).collect();

    // Per-row quantities, in the input's units.
    let pr = &mut acc.per_row;
    pr.norm.iter_mut().for_each(|v| *v *= back);
    pr.peak.iter_mut().for_each(|v| *v *= back);
    pr.median_abs.iter_mut().for_each(|v| *v *= back);
    let mean_row_norm = pr.norm.iter().sum::<f64>() / nf;
    let row_norm_quantiles = quantiles_of(n, n, &|i| Some(pr.norm[i]), &QUANTILES);
    let df = d as f64;
    let row_zero_fraction_quantiles =
        quantiles_of(n, n, &|i| Some(pr.zeros[i] as f64 / df), &QUANTILES);
    let row_small_fraction_quantiles = cfg
        .eps
        .map(|_| quantiles_of(n, n, &|i| Some(pr.small[i] as f64 / df), &QUANTILES));

    // Massive activations.
    let token = |row: usize| token_ids.map(|t| t[row]);
    let mut by_dimension: Vec<(usize, u64)> = acc
        .massive_by_dim
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(j, &c)| (j, c))
        .collect();
    by_dimension.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let listed: Vec<MassiveValue> = acc
        .massive
        .iter()
        .take(cfg.max_listed)
        .map(|&(v, row, dim, med)| MassiveValue {
            row,
            dim,
            value: v * back,
            row_median_abs: med * back,
            ratio: (med > 0.0).then(|| v.abs() / med),
            token_id: token(row),
            token: None,
        })
        .collect();
    let massive = MassiveReport {
        abs_threshold: cfg.massive_abs,
        ratio_threshold: cfg.massive_ratio,
        count: acc.massive_count,
        rows: acc.massive_rows,
        by_dimension,
        truncated: acc.massive_count as usize > listed.len(),
        listed,
    };

    // Peak rows: max|a| / median|a| far above its median over the rows.
    let ratio = |i: usize| {
        let m = pr.median_abs[i];
        (m > 0.0).then(|| pr.peak[i].abs() / m)
    };
    let rows_with_zero_median = pr.median_abs.iter().filter(|&&m| m <= 0.0).count();
    let with_ratio = n - rows_with_zero_median;
    let median_ratio = (with_ratio > 0).then(|| median_of(n, with_ratio, &ratio));
    let threshold = median_ratio.map(|m| m * cfg.peak_factor);
    let mut groups: Vec<PeakGroup> = Vec::new();
    let mut peak_count = 0;
    if let Some(t) = threshold {
        let mut keyed: Vec<(Option<u32>, u32, usize)> = (0..n)
            .filter(|&i| ratio(i).is_some_and(|r| r >= t))
            .map(|i| (token(i), pr.peak_dim[i], i))
            .collect();
        peak_count = keyed.len();
        keyed.sort();
        for run in keyed.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
            let rows: Vec<usize> = run.iter().map(|x| x.2).collect();
            let mut peaks: Vec<f64> = rows.iter().map(|&i| pr.peak[i]).collect();
            let mut rs: Vec<f64> = rows.iter().filter_map(|&i| ratio(i)).collect();
            groups.push(PeakGroup {
                token_id: run[0].0,
                token: None,
                dim: run[0].1 as usize,
                rows: rows.len(),
                median_peak: median_in_place(&mut peaks),
                median_ratio: median_in_place(&mut rs),
                examples: rows.iter().take(5).copied().collect(),
            });
        }
        groups.sort_by(|a, b| {
            b.rows
                .cmp(&a.rows)
                .then(a.dim.cmp(&b.dim))
                .then(a.token_id.cmp(&b.token_id))
        });
    } else {
        notes.push("every row has a median |a| of 0: the peak-row rule does not apply".into());
    }
    let truncated = groups.len() > cfg.max_listed;
    groups.truncate(cfg.max_listed);
    let peak_rows = PeakRows {
        factor: cfg.peak_factor,
        median_ratio,
        threshold,
        rows: peak_count,
        rows_with_zero_median,
        groups,
        truncated,
    };

    // Outlier dimensions: the dimension means' z-scores.
    let mu_mean = acc.mean.iter().sum::<f64>() / d as f64;
    let mu_sd = (acc.mean.iter().map(|m| (m - mu_mean).powi(2)).sum::<f64>() / d as f64).sqrt();
    let mut outlier_dimensions: Vec<OutlierDimension> = if mu_sd > 0.0 {
        (0..d)
            .map(|j| OutlierDimension {
                dim: j,
                mean: mean[j],
                z: (acc.mean[j] - mu_mean) / mu_sd,
            })
            .filter(|o| o.z.abs() > cfg.outlier_sigma)
            .collect()
    } else {
        Vec::new()
    };
    outlier_dimensions.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()).then(a.dim.cmp(&b.dim)));

    // Rogue dimensions: shares of the mean cosine similarity.
    let nu = acc.unit_rows as f64;
    let (anisotropy, rogue_dimensions) = if acc.unit_rows >= 2 {
        let aniso: f64 = (0..d)
            .map(|j| acc.unit_sum[j] * acc.unit_sum[j] - acc.unit_sq[j])
            .sum::<f64>()
            / (nu * (nu - 1.0));
        let rogue = crate::spectrum::rogue_dimensions(
            &acc.unit_sum,
            &acc.unit_sq,
            acc.unit_rows,
            aniso,
            cfg.top_rogue,
        )
        .into_iter()
        .filter(|r| r.share.is_finite())
        .collect();
        (Some(aniso), rogue)
    } else {
        notes.push(
            "fewer than two non-zero rows: anisotropy and rogue dimensions are undefined".into(),
        );
        (None, Vec::new())
    };
    if n - acc.unit_rows > 0 {
        notes.push(format!(
            "{} all-zero rows have no direction and are left out of anisotropy and rogue dimensions",
            n - acc.unit_rows
        ));
    }
    if !always_zero_dims.is_empty() {
        notes.push(format!(
            "{} of {d} dimensions are 0 in every row",
            always_zero_dims.len()
        ));
    }
    if massive.count == 0 {
        notes.push(format!(
            "no massive activations: no value has |a| > {} and > {} × the median |a| of its row",
            cfg.massive_abs, cfg.massive_ratio
        ));
    }

    ActivationReport {
        n,
        d,
        outlier_ratio,
        zero_fraction: total_zeros as f64 / cells,
        eps: cfg.eps,
        small_fraction: cfg.eps.map(|_| total_small as f64 / cells),
        always_zero_dims,
        mean_row_norm,
        row_norm_quantiles,
        row_zero_fraction_quantiles,
        row_small_fraction_quantiles,
        massive,
        peak_rows,
        outlier_sigma: cfg.outlier_sigma,
        outlier_dimensions,
        anisotropy,
        rogue_dimensions,
        per_dimension: PerDimension {
            mean,
            std,
            max_abs,
            max_abs_row: acc.max_row,
            zero_fraction,
            small_fraction,
        },
        duplicates: None,
        notes,
        rows: acc.per_row,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The sort-based definition the selection must reproduce bit for bit.
    fn sorted_quantiles(v: &[f64], qs: &[f64]) -> Vec<f64> {
        let mut w = v.to_vec();
        w.sort_by(f64::total_cmp);
        qs.iter()
            .map(|&q| {
                let pos = q * (w.len() - 1) as f64;
                let lo = pos.floor() as usize;
                let hi = (lo + 1).min(w.len() - 1);
                w[lo] + (w[hi] - w[lo]) * (pos - lo as f64)
            })
            .collect()
    }

    #[test]
    fn selected_quantiles_equal_the_sorted_ones_without_reordering() {
        let mut r = Rng::new(4);
        // Spread values, heavy ties (a bucket beyond the gather size), negatives, zeros of both signs,
        // subnormals, and every size from 1 up.
        let sets: Vec<Vec<f64>> = vec![
            (0..200_000).map(|_| r.normal()).collect(),
            (0..150_000).map(|i| (i % 3) as f64).collect(),
            (0..100_000)
                .map(|i| {
                    if i % 2 == 0 {
                        1.5
                    } else {
                        1.5 + f64::EPSILON * (i % 7) as f64
                    }
                })
                .collect(),
            vec![0.0, -0.0, 5e-324, -5e-324, 1e300, -1e300, 3.0],
            vec![42.0],
            (0..1000).map(|_| r.normal() * 1e-310).collect(),
        ];
        for v in &sets {
            let want = sorted_quantiles(v, &QUANTILES);
            let got = quantiles_of(v.len(), v.len(), &|i| Some(v[i]), &QUANTILES);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.value.to_bits(), w.to_bits(), "n {} q {}", v.len(), g.q);
            }
        }
        // Items that are None are left out: the median of the odd-indexed values.
        let v = &sets[0];
        let odd: Vec<f64> = v.iter().skip(1).step_by(2).copied().collect();
        let want = median_in_place(&mut odd.clone());
        let got = median_of(v.len(), odd.len(), &|i| (i % 2 == 1).then(|| v[i]));
        assert_eq!(got.to_bits(), want.to_bits());
    }

    fn normal(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n * d).map(|_| r.normal() as f32).collect()
    }

    /// Float64 brute force of the per-dimension moments, two passes over all rows.
    fn brute_moments(v: &[f32], n: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
        let mut mean = vec![0.0f64; d];
        for i in 0..n {
            for j in 0..d {
                mean[j] += v[i * d + j] as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0f64; d];
        for i in 0..n {
            for j in 0..d {
                let c = v[i * d + j] as f64 - mean[j];
                var[j] += c * c;
            }
        }
        (mean, var.iter().map(|q| (q / n as f64).sqrt()).collect())
    }

    #[test]
    fn planted_massive_values_are_found_and_nothing_else() {
        let (n, d) = (3000, 64);
        let mut v = normal(n, d, 7);
        // Massive: |a| ≥ 800 in rows of N(0, 1) (median |a| ≈ 0.67, so the ratio is above 1000).
        let planted: Vec<(usize, usize, f32)> = (0..37)
            .map(|t| {
                (
                    (t * 811 + 5) % n,
                    (t * 13 + 3) % d,
                    if t % 2 == 0 {
                        900.0 + t as f32
                    } else {
                        -1500.0
                    },
                )
            })
            .collect();
        for &(i, j, x) in &planted {
            v[i * d + j] = x;
        }
        // Decoys: above 100 but under 1000 × the row median; and a row of tiny values with one of 50
        // (ratio far above 1000, magnitude under 100).
        v[11 * d + 9] = 300.0;
        v[12 * d + 1] = -450.0;
        for j in 0..d {
            v[2999 * d + j] *= 0.01;
        }
        v[2999 * d + 4] = 50.0;
        let m = Matrix::from_vec(n, d, v, "planted").unwrap();
        let cfg = ActivationConfig {
            max_listed: 1000,
            ..Default::default()
        };
        let r = analyse(&m, &cfg, None).unwrap();
        let mut want: Vec<(usize, usize)> = planted.iter().map(|p| (p.0, p.1)).collect();
        want.sort();
        want.dedup();
        let mut got: Vec<(usize, usize)> =
            r.massive.listed.iter().map(|x| (x.row, x.dim)).collect();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(r.massive.count as usize, want.len());
        assert!(!r.massive.truncated);
        // Listed largest first; values carry their sign.
        assert_eq!(r.massive.listed[0].value, -1500.0);
        assert!(r
            .massive
            .listed
            .windows(2)
            .all(|w| w[0].value.abs() >= w[1].value.abs()));
        // The thresholds are options: with a lower ratio the 300 and 450 decoys count.
        let low = ActivationConfig {
            massive_ratio: 100.0,
            max_listed: 1000,
            ..Default::default()
        };
        let r2 = analyse(&m, &low, None).unwrap();
        assert_eq!(r2.massive.count as usize, want.len() + 2);
        // Truncated listing still counts them all.
        let few = ActivationConfig {
            max_listed: 5,
            ..Default::default()
        };
        let r3 = analyse(&m, &few, None).unwrap();
        assert_eq!(r3.massive.count as usize, want.len());
        assert_eq!(r3.massive.listed.len(), 5);
        assert!(r3.massive.truncated);
        assert_eq!(r3.massive.listed, r.massive.listed[..5].to_vec());
    }

    #[test]
    fn moments_sparsity_and_quantiles_match_float64_brute_force() {
        let (n, d) = (2500, 17);
        let mut v = normal(n, d, 3);
        for (t, x) in v.iter_mut().enumerate() {
            // A ReLU-like share of zeros, a shifted column and an always-zero column.
            if t % 5 == 0 {
                *x = 0.0;
            }
            if t % d == 4 {
                *x += 40.0;
            }
            if t % d == 16 {
                *x = 0.0;
            }
        }
        let m = Matrix::from_vec(n, d, v.clone(), "x").unwrap();
        let cfg = ActivationConfig {
            eps: Some(0.1),
            ..Default::default()
        };
        let r = analyse(&m, &cfg, None).unwrap();
        let (mean, std) = brute_moments(&v, n, d);
        for j in 0..d {
            assert!((r.per_dimension.mean[j] - mean[j]).abs() <= 1e-12 * (1.0 + mean[j].abs()));
            assert!((r.per_dimension.std[j] - std[j]).abs() <= 1e-12 * (1.0 + std[j]));
            let col: Vec<f64> = (0..n).map(|i| v[i * d + j] as f64).collect();
            let mx = col.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            assert_eq!(r.per_dimension.max_abs[j], mx);
            let first = col.iter().position(|x| x.abs() == mx).unwrap();
            assert_eq!(
                r.per_dimension.max_abs_row[j],
                if mx == 0.0 { 0 } else { first }
            );
            let z = col.iter().filter(|x| **x == 0.0).count() as f64 / n as f64;
            assert_eq!(r.per_dimension.zero_fraction[j], z);
            let s = col.iter().filter(|x| x.abs() < 0.1).count() as f64 / n as f64;
            assert_eq!(r.per_dimension.small_fraction.as_ref().unwrap()[j], s);
        }
        assert_eq!(r.always_zero_dims, vec![16]);
        let zeros = v.iter().filter(|x| **x == 0.0).count() as f64 / (n * d) as f64;
        assert!((r.zero_fraction - zeros).abs() < 1e-15);
        // γ from the brute-force moments.
        let g = mean.iter().map(|x| x * x).sum::<f64>().sqrt()
            / std.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((r.outlier_ratio.unwrap() - g).abs() < 1e-12 * g);
        // Row norms: numpy's linear quantiles of the float64 norms.
        let mut norms: Vec<f64> = (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| (v[i * d + j] as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        norms.sort_by(f64::total_cmp);
        for q in &r.row_norm_quantiles {
            let pos = q.q * (n - 1) as f64;
            let (lo, fr) = (pos.floor() as usize, pos - pos.floor());
            let want = norms[lo] + (norms[(lo + 1).min(n - 1)] - norms[lo]) * fr;
            assert!(
                (q.value - want).abs() <= 1e-12 * want,
                "q{}: {} vs {want}",
                q.q,
                q.value
            );
        }
        // The shifted column is the one outlier dimension.
        assert_eq!(r.outlier_dimensions.len(), 1);
        assert_eq!(r.outlier_dimensions[0].dim, 4);
        assert!(r.outlier_dimensions[0].z > 3.0);
        // And it dominates the mean cosine.
        assert_eq!(r.rogue_dimensions[0].dim, 4);
        assert!(r.rogue_dimensions[0].share > 0.9);
    }

    #[test]
    fn peak_rows_are_grouped_by_token_and_dimension() {
        let (n, d) = (1200, 48);
        let mut v = normal(n, d, 11);
        let mut ids: Vec<u32> = (0..n as u32).map(|i| 1000 + i % 50).collect();
        // Every 60th row is token 101 with a spike at dimension 5: about 30× a typical row's peak.
        for i in (0..n).step_by(60) {
            ids[i] = 101;
            v[i * d + 5] = 60.0;
        }
        let m = Matrix::from_vec(n, d, v, "tokens").unwrap();
        let r = analyse(&m, &ActivationConfig::default(), Some(&ids)).unwrap();
        assert_eq!(r.peak_rows.rows, 20);
        assert_eq!(r.peak_rows.groups.len(), 1);
        let g = &r.peak_rows.groups[0];
        assert_eq!((g.token_id, g.dim, g.rows), (Some(101), 5, 20));
        assert_eq!(g.examples, vec![0, 60, 120, 180, 240]);
        assert_eq!(g.median_peak, 60.0);
        // Massive by magnitude: no (60 < 100).
        assert_eq!(r.massive.count, 0);
        let mut r = r;
        r.name_tokens(&|id| (id == 101).then(|| "[CLS]".to_string()));
        assert_eq!(r.peak_rows.groups[0].token.as_deref(), Some("[CLS]"));
        // One token id per row, or an error.
        let e = analyse(&m, &ActivationConfig::default(), Some(&ids[..10])).unwrap_err();
        assert!(
            e.to_string()
                .contains("10 token ids were given for 1200 rows"),
            "{e}"
        );
    }

    #[test]
    fn identical_for_any_thread_count() {
        let (n, d) = (5000, 33);
        let m = Matrix::from_vec(n, d, normal(n, d, 5), "x").unwrap();
        let cfg = ActivationConfig {
            massive_abs: 2.0,
            massive_ratio: 3.0,
            ..Default::default()
        };
        let run = |t: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| serde_json::to_string(&analyse(&m, &cfg, None).unwrap()).unwrap())
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn tiny_float64_values_keep_their_statistics() {
        let (n, d) = (300, 8);
        let base: Vec<f64> = normal(n, d, 9).iter().map(|&x| x as f64).collect();
        let tiny: Vec<f64> = base.iter().map(|x| x * 1e-300).collect();
        let a = analyse(
            &Matrix::from_f64(n, d, base, "a").unwrap(),
            &ActivationConfig::default(),
            None,
        )
        .unwrap();
        let b = analyse(
            &Matrix::from_f64(n, d, tiny, "b").unwrap(),
            &ActivationConfig::default(),
            None,
        )
        .unwrap();
        for j in 0..d {
            let rel = |x: f64, y: f64| (x - y * 1e-300).abs() <= 1e-12 * (y * 1e-300).abs();
            assert!(
                rel(b.per_dimension.std[j], a.per_dimension.std[j]),
                "std {j}"
            );
            assert!(
                rel(b.per_dimension.mean[j], a.per_dimension.mean[j]),
                "mean {j}"
            );
        }
        assert!((b.outlier_ratio.unwrap() - a.outlier_ratio.unwrap()).abs() < 1e-12);
        assert!((b.mean_row_norm / 1e-300 - a.mean_row_norm).abs() < 1e-12 * a.mean_row_norm);
        assert_eq!(b.zero_fraction, a.zero_fraction);
    }

    #[test]
    fn bad_input_is_named() {
        let mut v = normal(20, 4, 1);
        v[13 * 4 + 2] = f32::NAN;
        let m = Matrix::from_vec(20, 4, v, "acts.npy").unwrap();
        let e = analyse(&m, &ActivationConfig::default(), None).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("acts.npy") && s.contains("row 13"), "{s}");
        let ok = Matrix::from_vec(2, 2, vec![1.0; 4], "x").unwrap();
        for (cfg, p) in [
            (
                ActivationConfig {
                    massive_abs: -1.0,
                    ..Default::default()
                },
                Param::MassiveAbs,
            ),
            (
                ActivationConfig {
                    massive_ratio: f64::NAN,
                    ..Default::default()
                },
                Param::MassiveRatio,
            ),
            (
                ActivationConfig {
                    eps: Some(0.0),
                    ..Default::default()
                },
                Param::Eps,
            ),
            (
                ActivationConfig {
                    peak_factor: 0.5,
                    ..Default::default()
                },
                Param::PeakFactor,
            ),
            (
                ActivationConfig {
                    outlier_sigma: 0.0,
                    ..Default::default()
                },
                Param::OutlierSigma,
            ),
        ] {
            match analyse(&ok, &cfg, None) {
                Err(Error::InvalidParameter { param, .. }) => assert_eq!(param, p),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        // Constant data: no γ, no rogue shares, and notes that say so.
        let r = analyse(&ok, &ActivationConfig::default(), None).unwrap();
        assert!(r.outlier_ratio.is_none());
        assert!(r.notes.iter().any(|n| n.contains("constant")));
    }
}
