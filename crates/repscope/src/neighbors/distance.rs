//! Exact distances in f64: the one definition of "distance" every neighbour plan re-ranks with, and the
//! brute-force reference the tests compare against.
use rayon::prelude::*;

use super::Metric;
use crate::data::Matrix;
use crate::error::{Error, Result};

/// Exact squared euclidean distance in f64 (AVX2 where the CPU has it; the same sums either way: eight
/// independent accumulators combined in a fixed order, no fused multiply-adds).
#[inline]
pub fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected just above.
            return unsafe { sq_dist_f64_avx2(a, b) };
        }
    }
    sq_dist_f64_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_dist_f64_avx2(a: &[f32], b: &[f32]) -> f64 {
    sq_dist_f64_body(a, b)
}

/// Σ (a_i − b_i)² in f64 with eight accumulators combined in a fixed order, for f32 or f64 rows.
#[inline(always)]
fn sq_dist_f64_body<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            let d = x[j].into() - y[j].into();
            acc[j] += d * d;
        }
    }
    let mut tail = 0f64;
    for (&x, &y) in ra.iter().zip(rb) {
        let d = x.into() - y.into();
        tail += d * d;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Exact cosine distance 1 − cos(a, b) in f64, as ‖a/‖a‖ − b/‖b‖‖²/2 (no cancellation near 0).
#[inline]
pub fn cosine_dist_f64(a: &[f32], b: &[f32], inv_na: f64, inv_nb: f64) -> f64 {
    let mut s = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let d = *x as f64 * inv_na - *y as f64 * inv_nb;
        s += d * d;
    }
    0.5 * s
}

/// Exact squared euclidean distance of two f64 rows (the same fixed order of sums as [`sq_dist_f64`]).
#[inline]
pub fn sq_dist_f64_rows(a: &[f64], b: &[f64]) -> f64 {
    sq_dist_f64_body(a, b)
}

/// Exact cosine distance of two f64 rows, as ‖a/‖a‖ − b/‖b‖‖²/2.
#[inline]
pub fn cosine_dist_f64_rows(a: &[f64], b: &[f64], inv_na: f64, inv_nb: f64) -> f64 {
    let mut s = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let d = x * inv_na - y * inv_nb;
        s += d * d;
    }
    0.5 * s
}

/// Inverse L2 norms of the rows (of the values as given), in f64; a zero row is an error for the cosine
/// metric.
pub fn inverse_norms(m: &Matrix) -> Result<Vec<f64>> {
    let pre = m.tiny_scale();
    let inv: Vec<f64> = (0..m.rows())
        .into_par_iter()
        .map(|i| {
            let s: f64 = match m.row_f64(i) {
                Some(row) => row.iter().map(|&v| (v * pre) * (v * pre)).sum(),
                None => m.row(i).iter().map(|&v| v as f64 * v as f64).sum(),
            };
            if s > 0.0 {
                1.0 / s.sqrt()
            } else {
                0.0
            }
        })
        .collect();
    if let Some(bad) = inv.iter().position(|&v| v == 0.0) {
        return Err(Error::data(
            m.name(),
            format!("row {bad} is all zeros, so its cosine distance to anything is undefined"),
            "remove zero rows or use the euclidean metric",
        ));
    }
    Ok(inv)
}

/// Exact f64 distances from the rows of a query matrix to the rows of a reference matrix (the same
/// matrix for a self search), under one metric: the single place the metric is dispatched.
#[derive(Clone, Copy)]
pub(crate) struct Exact<'a> {
    pub(crate) metric: Metric,
    pub(crate) queries: &'a Matrix,
    pub(crate) refs: &'a Matrix,
    /// Inverse row norms (cosine only; empty for euclidean).
    pub(crate) inv_q: &'a [f64],
    pub(crate) inv_r: &'a [f64],
    /// [`Matrix::tiny_scale`] of each side: f64 rows so small that squares of their differences would
    /// underflow are scaled by a power of two first (exact), and the distance scaled back.
    pub(crate) scale_q: f64,
    pub(crate) scale_r: f64,
}

impl<'a> Exact<'a> {
    /// Distances among the rows of one matrix (`inv`: its inverse row norms, cosine only).
    pub(crate) fn within(metric: Metric, m: &'a Matrix, inv: &'a [f64]) -> Self {
        let s = m.tiny_scale();
        Exact {
            metric,
            queries: m,
            refs: m,
            inv_q: inv,
            inv_r: inv,
            scale_q: s,
            scale_r: s,
        }
    }
    /// Distances from the input rows of a query side to those of a reference side.
    pub(crate) fn between(
        metric: Metric,
        q: &'a super::space::Side<'a>,
        r: &'a super::space::Side<'a>,
    ) -> Self {
        let scale_q = q.input.tiny_scale();
        let scale_r = if std::ptr::eq(q.input, r.input) {
            scale_q
        } else {
            r.input.tiny_scale()
        };
        Exact {
            metric,
            queries: q.input,
            refs: r.input,
            inv_q: &q.inv,
            inv_r: &r.inv,
            scale_q,
            scale_r,
        }
    }
    /// The distance from query row `q` to reference row `r` (on the f64 values of f64 input).
    #[inline]
    pub(crate) fn dist(&self, q: usize, r: usize) -> f64 {
        if let (Some(a), Some(b)) = (self.queries.row_f64(q), self.refs.row_f64(r)) {
            if self.scale_q != 1.0 || self.scale_r != 1.0 {
                return self.dist_scaled(a, b, self.inv_q[..].get(q), self.inv_r[..].get(r));
            }
            return match self.metric {
                Metric::Euclidean => sq_dist_f64_rows(a, b).sqrt(),
                Metric::Cosine => cosine_dist_f64_rows(a, b, self.inv_q[q], self.inv_r[r]),
            };
        }
        match self.metric {
            Metric::Euclidean => sq_dist_f64(self.queries.row(q), self.refs.row(r)).sqrt(),
            Metric::Cosine => cosine_dist_f64(
                self.queries.row(q),
                self.refs.row(r),
                self.inv_q[q],
                self.inv_r[r],
            ),
        }
    }
    /// The distance of two f64 rows of which at least one side is tiny (see `scale_q`): euclidean on the
    /// differences times the smaller of the two scales (the larger would overflow the other side),
    /// cosine on each row times its own scale, which its inverse norm is of.
    #[cold]
    fn dist_scaled(&self, a: &[f64], b: &[f64], ia: Option<&f64>, ib: Option<&f64>) -> f64 {
        match self.metric {
            Metric::Euclidean => {
                let s = self.scale_q.min(self.scale_r);
                let sum: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) * s).powi(2)).sum();
                sum.sqrt() / s
            }
            Metric::Cosine => {
                let (ia, ib) = (ia.copied().unwrap_or(0.0), ib.copied().unwrap_or(0.0));
                let (sq, sr) = (self.scale_q, self.scale_r);
                let sum: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| ((x * sq) * ia - (y * sr) * ib).powi(2))
                    .sum();
                0.5 * sum
            }
        }
    }
    /// Asks the cache for reference row `r`, about to be read.
    #[inline(always)]
    pub(crate) fn prefetch(&self, r: usize) {
        prefetch_row(self.refs.row(r));
    }
}

/// Asks the cache for a row about to be read (rows are scattered in memory during a re-rank, so each
/// exact distance would otherwise wait on memory).
#[inline(always)]
pub(crate) fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = row.as_ptr() as *const i8;
        for o in (0..std::mem::size_of_val(row)).step_by(64) {
            // SAFETY: a prefetch never faults, and `o` stays inside the row.
            unsafe { _mm_prefetch(p.add(o), _MM_HINT_T0) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// The order of the graph: by exact distance, ties to the smaller index.
#[inline]
pub(crate) fn by_distance(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// The `k` best of a short list of (exact distance, index) pairs, kept sorted by [`by_distance`]:
/// inserting is O(k), which beats a heap for the few pairs a range pass admits per row.
pub(crate) struct KBest {
    k: usize,
    items: Vec<(f64, u32)>,
}

impl KBest {
    pub(crate) fn new(k: usize) -> Self {
        KBest {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }
    #[inline]
    pub(crate) fn push(&mut self, d: f64, j: u32) {
        let it = (d, j);
        if self.items.len() == self.k {
            match self.items.last() {
                Some(last) if by_distance(&it, last).is_lt() => {}
                _ => return,
            }
        }
        let pos = self.items.partition_point(|x| by_distance(x, &it).is_lt());
        self.items.insert(pos, it);
        self.items.truncate(self.k);
    }
    pub(crate) fn items(&self) -> &[(f64, u32)] {
        &self.items
    }
}
