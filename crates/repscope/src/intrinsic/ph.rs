//! The persistent-homology dimension PH₀ (Schweinhart 2020; Jaquette and Schweinhart 2020), as skdim 0.5's
//! `PH(alpha=1, n_range_min=0.5, n_range_max=1, nsteps=100, subsamples=10)`: the 0-dimensional persistence
//! of n points is the edge lengths of their Euclidean minimum spanning tree, and its α-weighted total
//! E = Σ lᵅ grows as n^{(d − α)/d}. For seeded random subsamples of increasing size the slope of log E
//! against log n is fitted by least squares, and d = α / (1 − slope).
//!
//! Each tree is built by Prim's algorithm on the squared distances of one n × n matrix (an f64 product of the
//! centred rows, held in f32 for the ordering); the lengths of the chosen edges are then recomputed exactly in
//! f64, so E does not carry the product's rounding.
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::local::RowsF64;
use super::Estimate;
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::Metric;
use crate::rng::Rng;

/// The largest number of rows whose n × n distances PH holds in memory (4 GiB in f32).
pub const MAX_ROWS: usize = 32_768;

/// How the subsample sizes are given.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeType {
    /// As fractions of the number of rows (rounded up).
    Fraction,
    /// As numbers of rows.
    Num,
}

/// PH₀ dimension.
#[derive(Clone, Debug)]
pub struct Ph {
    /// The persistence powers; one estimate per value (the first is the headline).
    pub alpha: Vec<f64>,
    pub n_range_min: f64,
    pub n_range_max: f64,
    pub range_type: RangeType,
    /// Subsample sizes, evenly spaced from the smallest to the largest.
    pub nsteps: usize,
    /// Subsamples per size.
    pub subsamples: usize,
    pub seed: u64,
}

impl Default for Ph {
    fn default() -> Self {
        Ph {
            alpha: vec![1.0],
            n_range_min: 0.5,
            n_range_max: 1.0,
            range_type: RangeType::Fraction,
            nsteps: 100,
            subsamples: 10,
            seed: 0,
        }
    }
}

/// The lengths of the minimum spanning tree of the points `idx` (indices into `rows`, each row `d` f64
/// values), ordered by the squared distances `sq` (n × n, row-major); the lengths recomputed in f64.
pub fn spanning_tree_lengths(
    idx: &[usize],
    sq: &[f32],
    n: usize,
    rows: &[f64],
    d: usize,
) -> Vec<f64> {
    prim_edges(idx, sq, n)
        .into_iter()
        .map(|(a, b)| {
            rows[a * d..(a + 1) * d]
                .iter()
                .zip(&rows[b * d..(b + 1) * d])
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

/// The edges (point, its tree neighbour) of Prim's tree over `idx`, in the order they are added.
fn prim_edges(idx: &[usize], sq: &[f32], n: usize) -> Vec<(usize, usize)> {
    let s = idx.len();
    if s < 2 {
        return Vec::new();
    }
    assert!(
        n <= MAX_ROWS && idx.iter().all(|&i| i < n) && sq.len() >= n * n,
        "spanning_tree_lengths: indices within the n × n distances"
    );
    // Prim's algorithm over the points not yet in the tree, kept compact (swap-remove), so that step t
    // scans s − t of them: their row indices, their distance keys to the tree and the tree point each is
    // closest to, in three arrays so that the scan runs on vectors.
    let mut id: Vec<u32> = idx[1..].iter().map(|&r| r as u32).collect();
    let mut key = vec![f32::INFINITY; s - 1];
    let mut parent = vec![idx[0] as u32; s - 1];
    let mut edges = Vec::with_capacity(s - 1);
    let mut last = idx[0];
    while !id.is_empty() {
        let row = &sq[last * n..(last + 1) * n];
        let least = relax(row, &id, &mut key, &mut parent, last as u32);
        // The first point with the least key: the one a sequential scan with a strict comparison keeps.
        let best = key.iter().position(|&k| k == least).unwrap_or(0);
        let (a, b) = (
            id.swap_remove(best) as usize,
            parent.swap_remove(best) as usize,
        );
        key.swap_remove(best);
        edges.push((a, b));
        last = a;
    }
    edges
}

/// One step of Prim's scan: every key drops to the point's distance to the newest tree point `last` where that
/// is smaller (and the point's tree neighbour becomes `last`); returns the least key (+∞ if none is finite).
/// Every id is below `row.len()`.
fn relax(row: &[f32], id: &[u32], key: &mut [f32], parent: &mut [u32], last: u32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above; the ids index `row` (checked by the caller).
            return unsafe { relax_avx512(row, id, key, parent, last) };
        }
    }
    relax_scalar(row, id, key, parent, last, 0, f32::INFINITY)
}

/// [`relax`] from position `from` on, with `least` the least key before it.
fn relax_scalar(
    row: &[f32],
    id: &[u32],
    key: &mut [f32],
    parent: &mut [u32],
    last: u32,
    from: usize,
    mut least: f32,
) -> f32 {
    for p in from..id.len() {
        let w = row[id[p] as usize];
        if w < key[p] {
            key[p] = w;
            parent[p] = last;
        }
        least = least.min(key[p]);
    }
    least
}

/// [`relax`] on 16 lanes: the distances gathered from `row`, the keys and tree neighbours blended where they
/// drop. The comparison is the scalar one (ordered less-than), so keys, neighbours and the least key are the
/// scalar version's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn relax_avx512(
    row: &[f32],
    id: &[u32],
    key: &mut [f32],
    parent: &mut [u32],
    last: u32,
) -> f32 {
    use std::arch::x86_64::*;
    let len = id.len().min(key.len()).min(parent.len());
    let lastv = _mm512_set1_epi32(last as i32);
    let mut least = _mm512_set1_ps(f32::INFINITY);
    let mut p = 0;
    while p + 16 <= len {
        // SAFETY: p + 16 ≤ len for the three arrays; the gathered ids are below row.len() (the caller's
        // invariant) and below 2³¹.
        unsafe {
            let ix = _mm512_loadu_si512(id.as_ptr().add(p) as *const _);
            let w = _mm512_i32gather_ps::<4>(ix, row.as_ptr());
            let k = _mm512_loadu_ps(key.as_ptr().add(p));
            let drop = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(w, k);
            let k = _mm512_mask_blend_ps(drop, k, w);
            _mm512_storeu_ps(key.as_mut_ptr().add(p), k);
            let par = _mm512_loadu_si512(parent.as_ptr().add(p) as *const _);
            _mm512_storeu_si512(
                parent.as_mut_ptr().add(p) as *mut _,
                _mm512_mask_blend_epi32(drop, par, lastv),
            );
            least = _mm512_min_ps(least, k);
        }
        p += 16;
    }
    relax_scalar(row, id, key, parent, last, p, _mm512_reduce_min_ps(least))
}

/// Ordinary least squares of y on x with an intercept: (slope, intercept, the slope's standard error).
pub fn least_squares(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let rss: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (b - intercept - slope * a).powi(2))
        .sum();
    let se = if n > 2.0 {
        (rss / (n - 2.0) / sxx).sqrt()
    } else {
        f64::NAN
    };
    (slope, intercept, se)
}

impl Ph {
    /// The smallest and largest subsample sizes for `n` rows.
    fn range(&self, n: usize) -> Result<(usize, usize)> {
        let bad = |why: &str| {
            Err(Error::range(
                Param::SubsampleRange,
                format!("{}..{}", self.n_range_min, self.n_range_max),
                match self.range_type {
                    RangeType::Fraction => "fractions 0 < min < max ≤ 1 (0.5 and 1 by default)",
                    RangeType::Num => "numbers of rows 2 ≤ min < max ≤ the number of rows",
                },
                why.to_string(),
            ))
        };
        let (lo, hi) = match self.range_type {
            RangeType::Fraction => {
                if !(self.n_range_min > 0.0
                    && self.n_range_min < self.n_range_max
                    && self.n_range_max <= 1.0)
                {
                    return bad("PH's subsample sizes are fractions of the rows");
                }
                (
                    (self.n_range_min * n as f64).ceil() as usize,
                    (self.n_range_max * n as f64).ceil() as usize,
                )
            }
            RangeType::Num => {
                if self.n_range_min.fract() != 0.0 || self.n_range_max.fract() != 0.0 {
                    return bad("PH's subsample sizes are whole numbers of rows");
                }
                (self.n_range_min as usize, self.n_range_max as usize)
            }
        };
        if !(2 <= lo && lo < hi && hi <= n) {
            return bad(&format!(
                "PH needs subsamples of 2 ≤ min < max ≤ {n} rows; these give {lo}..{hi}"
            ));
        }
        Ok((lo, hi))
    }

    /// Checks the parameters that need no data.
    pub fn check(&self) -> Result<()> {
        if self.alpha.is_empty() || self.alpha.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(Error::range(
                Param::Alpha,
                format!("{:?}", self.alpha),
                "powers α > 0 (1 by default)",
                "PH sums the spanning tree's edge lengths to the power α",
            ));
        }
        if self.nsteps < 2 {
            return Err(Error::range(
                Param::Draws,
                self.nsteps,
                "nsteps ≥ 2 (100 by default)",
                "PH fits a slope across subsample sizes",
            ));
        }
        if self.subsamples < 1 {
            return Err(Error::range(
                Param::Draws,
                self.subsamples,
                "subsamples ≥ 1 (10 by default)",
                "PH draws that many subsamples of each size",
            ));
        }
        Ok(())
    }

    /// The subsample sizes: `nsteps` evenly spaced values from lo to hi (rounded up), each `subsamples`
    /// times, ascending (skdim's `repeat(ceil(linspace(...)))`).
    pub fn sizes(&self, lo: usize, hi: usize) -> Vec<usize> {
        let steps = self.nsteps;
        (0..steps)
            .flat_map(|i| {
                let t = if i + 1 == steps {
                    hi as f64
                } else {
                    lo as f64 + (hi - lo) as f64 * i as f64 / (steps - 1) as f64
                };
                std::iter::repeat_n(t.ceil() as usize, self.subsamples)
            })
            .collect()
    }

    /// Fits on the rows of `data` (distinct rows) under `metric`.
    pub fn fit(&self, data: &Matrix, metric: Metric) -> Result<Estimate> {
        self.check()?;
        let n = data.rows();
        if n > MAX_ROWS {
            return Err(Error::data(
                data.name(),
                format!(
                    "PH holds the n × n distances in memory, and {n} rows would need {:.1} GiB",
                    (n * n * 4) as f64 / (1u64 << 30) as f64
                ),
                format!("measure a sample of at most {MAX_ROWS} rows"),
            ));
        }
        let (lo, hi) = self.range(n)?;
        let d = data.cols();
        // The rows in f64 (unit rows under cosine), centred so that the product's squared distances lose
        // no precision to a common offset.
        let rf = RowsF64::new(data, metric)?;
        let mut rows = vec![0f64; n * d];
        for (i, r) in rows.chunks_mut(d).enumerate() {
            rf.fill(i, r);
        }
        let mut mean = vec![0f64; d];
        for r in rows.chunks(d) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        for r in rows.chunks_mut(d) {
            for (v, m) in r.iter_mut().zip(&mean) {
                *v -= m;
            }
        }
        let sq = squared_distances(&rows, n, d);
        let sizes = self.sizes(lo, hi);
        let mut rng = Rng::new(self.seed ^ 0x9E0_0B5E);
        let subsets: Vec<Vec<usize>> = sizes.iter().map(|&s| rng.sample_indices(n, s)).collect();
        let totals: Vec<Vec<f64>> = subsets
            .par_iter()
            .map(|idx| {
                let l = spanning_tree_lengths(idx, &sq, n, &rows, d);
                self.alpha
                    .iter()
                    .map(|&a| l.iter().map(|x| x.powf(a)).sum::<f64>())
                    .collect()
            })
            .collect();
        let x: Vec<f64> = sizes.iter().map(|&s| (s as f64).ln()).collect();
        let mut dims = Vec::with_capacity(self.alpha.len());
        let mut fits = Vec::with_capacity(self.alpha.len());
        for (j, &a) in self.alpha.iter().enumerate() {
            let y: Vec<f64> = totals.iter().map(|t| t[j].ln()).collect();
            if y.iter().any(|v| !v.is_finite()) {
                return Err(Error::data(
                    data.name(),
                    "a subsample's spanning tree has total length 0",
                    "the rows coincide: check the input",
                ));
            }
            let (slope, intercept, se) = least_squares(&x, &y);
            let dim = a / (1.0 - slope);
            dims.push(dim);
            fits.push((slope, intercept, se, a / (1.0 - slope).powi(2) * se));
        }
        let (slope, _, _, dim_se) = fits[0];
        let mut notes = vec![
            "the error is the regression's, propagated to d; the subsamples overlap, so it understates the spread"
                .to_string(),
        ];
        if slope >= 1.0 || !(dims[0].is_finite() && dims[0] > 0.0) {
            return Err(Error::data(
                data.name(),
                format!("the spanning tree's length does not shrink per point with n (slope {slope:.4} ≥ 1): PH has no dimension here"),
                "use larger subsamples or more rows",
            ));
        }
        if self.alpha[0] >= dims[0] {
            notes.push(format!(
                "α = {} is not below the estimate; PH's scaling law holds for α < d",
                self.alpha[0]
            ));
        }
        Ok(Estimate {
            estimator: "ph".into(),
            variant: format!(
                "PH₀ dimension: α / (1 − slope) of log Σ lᵅ (minimum spanning tree) on log n, α = {}",
                self.alpha[0]
            ),
            value: dims[0],
            stderr: Some(dim_se).filter(|s| s.is_finite()),
            params: json!({
                "alpha": self.alpha, "dimensions": dims,
                "slopes": fits.iter().map(|f| f.0).collect::<Vec<_>>(),
                "intercepts": fits.iter().map(|f| f.1).collect::<Vec<_>>(),
                "nmin": lo, "nmax": hi, "nsteps": self.nsteps, "subsamples": self.subsamples,
                "seed": self.seed,
                "log_sizes": x,
                "log_totals": totals.iter().map(|t| t.iter().map(|v| v.ln()).collect::<Vec<_>>()).collect::<Vec<_>>(),
            }),
            notes,
        })
    }
}

/// The n × n squared distances of the centred f64 rows (row-major, f32), from one f64 product per row block.
fn squared_distances(rows: &[f64], n: usize, d: usize) -> Vec<f32> {
    use crate::linalg::{gemm, row_major};
    let norms: Vec<f64> = rows
        .chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let all = row_major(rows, n, d);
    let mut out = vec![0f32; n * n];
    const BLOCK: usize = 512;
    out.par_chunks_mut(BLOCK * n)
        .enumerate()
        .for_each(|(b, dst)| {
            let start = b * BLOCK;
            let rows_here = dst.len() / n;
            let block = row_major(&rows[start * d..(start + rows_here) * d], rows_here, d);
            let mut g = faer::Mat::<f64>::zeros(rows_here, n);
            gemm(g.as_mut(), false, block, all.transpose(), 1.0, false);
            for i in 0..rows_here {
                let a = norms[start + i];
                let o = &mut dst[i * n..(i + 1) * n];
                for (j, v) in o.iter_mut().enumerate() {
                    *v = (a + norms[j] - 2.0 * g[(i, j)]).max(0.0) as f32;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_a_planted_power_law() {
        // E = 2.5 n^{2/3}: slope 2/3, so d = 1 / (1 − 2/3) = 3 for α = 1 (skdim's regression check).
        let n = [10.0f64, 10.0, 20.0, 20.0, 40.0, 40.0, 80.0, 80.0];
        let x: Vec<f64> = n.iter().map(|v| v.ln()).collect();
        let y: Vec<f64> = n.iter().map(|v| (2.5 * v.powf(2.0 / 3.0)).ln()).collect();
        let (s, c, _) = least_squares(&x, &y);
        assert!((s - 2.0 / 3.0).abs() < 1e-14 && (c - 2.5f64.ln()).abs() < 1e-13);
    }

    #[test]
    fn spanning_tree_of_points_on_a_line() {
        // Points 0, 1, 3, 7 on a line: the tree's edges are 1, 2, 4 whatever the start.
        let rows = [0.0f64, 1.0, 3.0, 7.0];
        let sq = squared_distances(&rows, 4, 1);
        let mut l = spanning_tree_lengths(&[2, 0, 3, 1], &sq, 4, &rows, 1);
        l.sort_by(f64::total_cmp);
        assert_eq!(l, vec![1.0, 2.0, 4.0]);
    }

    /// Prim's algorithm as a plain sequential scan over (row, key, neighbour) entries, with a strict
    /// comparison: the reference the vector scan must reproduce edge for edge.
    fn prim_sequential(idx: &[usize], sq: &[f32], n: usize) -> Vec<(usize, usize)> {
        let mut rest: Vec<(usize, f32, usize)> = idx[1..]
            .iter()
            .map(|&r| (r, f32::INFINITY, idx[0]))
            .collect();
        let (mut edges, mut last) = (Vec::new(), idx[0]);
        while !rest.is_empty() {
            let (mut best, mut best_key) = (0, f32::INFINITY);
            for (p, e) in rest.iter_mut().enumerate() {
                let w = sq[last * n + e.0];
                if w < e.1 {
                    e.1 = w;
                    e.2 = last;
                }
                if e.1 < best_key {
                    best_key = e.1;
                    best = p;
                }
            }
            let (a, _, b) = rest.swap_remove(best);
            edges.push((a, b));
            last = a;
        }
        edges
    }

    #[test]
    fn the_vector_scan_builds_the_sequential_scans_tree_ties_included() {
        // 300 points in 5 dimensions on a coarse grid, so that many distances tie (and a few points repeat);
        // a subsample of 203 (not a multiple of 16) in a scrambled order.
        let (n, d) = (300usize, 5usize);
        let mut rng = Rng::new(11);
        let rows: Vec<f64> = (0..n * d).map(|_| (rng.below(4)) as f64).collect();
        let sq = squared_distances(&rows, n, d);
        let idx = rng.sample_indices(n, 203);
        let want = prim_sequential(&idx, &sq, n);
        assert_eq!(prim_edges(&idx, &sq, n), want);
        let exact: Vec<f64> = want
            .iter()
            .map(|&(a, b)| {
                (0..d)
                    .map(|t| (rows[a * d + t] - rows[b * d + t]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        assert_eq!(spanning_tree_lengths(&idx, &sq, n, &rows, d), exact);
        assert!(
            exact.iter().filter(|&&l| l == 1.0).count() > 20,
            "ties are exercised"
        );
    }
}
