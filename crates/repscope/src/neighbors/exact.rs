//! Exact k-nearest neighbours by blocked matrix products.
//!
//! For a block of reference rows R (row-major) and a block of query rows Q, one f32 GEMM gives R·Qᵀ as a
//! column-major buffer, so each query's dot products with the block are contiguous. Candidates are ranked
//! by ‖r‖² − 2 r·q (cosine: −r·q/‖r‖), which keeps a few more than k per query in a bounded heap. The
//! survivors' distances are then recomputed directly as ‖x − y‖ in f64 and sorted, so no estimator ever sees
//! the cancellation error of the expansion. Memory is O(block²) per thread, never n × n.
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::heap::TopK;
use super::{KnnGraph, Metric};
use crate::data::Matrix;
use crate::error::{Error, Result};

/// Rows of queries handled by one task.
const QUERY_BLOCK: usize = 256;
/// Rows of references multiplied at once.
const REF_BLOCK: usize = 2048;

/// How many candidates beyond k survive the approximate pass to be re-ranked exactly.
fn candidate_count(k: usize, n_ref: usize) -> usize {
    (k + (k / 2).max(8)).min(n_ref)
}

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

#[inline(always)]
fn sq_dist_f64_body(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            let d = x[j] as f64 - y[j] as f64;
            acc[j] += d * d;
        }
    }
    let mut tail = 0f64;
    for (x, y) in ra.iter().zip(rb) {
        let d = *x as f64 - *y as f64;
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

/// Inverse L2 norms of the rows, in f64; a zero row is an error for the cosine metric.
pub fn inverse_norms(m: &Matrix) -> Result<Vec<f64>> {
    let inv: Vec<f64> = (0..m.rows())
        .into_par_iter()
        .map(|i| {
            let s: f64 = m.row(i).iter().map(|&v| v as f64 * v as f64).sum();
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

/// The column mean, when the data's offset from the origin is large against its spread.
pub(super) fn centring_offset(m: &Matrix) -> Option<Vec<f32>> {
    let n = m.rows();
    let mean = crate::linalg::column_means(m);
    let mean_sq: f64 = mean.iter().map(|v| v * v).sum();
    // Mean squared norm of the rows; spread = that minus ‖μ‖².
    let sq: f64 = (0..n)
        .into_par_iter()
        .map(|i| m.row(i).iter().map(|&v| v as f64 * v as f64).sum::<f64>())
        .sum::<f64>()
        / n as f64;
    let spread = (sq - mean_sq).max(0.0);
    (mean_sq > 4.0 * spread).then(|| mean.iter().map(|&v| v as f32).collect())
}

fn centre(m: &Matrix, mean: &[f32]) -> Matrix {
    let d = m.cols();
    let mut v = m.as_slice().to_vec();
    v.par_chunks_mut(d).for_each(|row| {
        for (x, mu) in row.iter_mut().zip(mean) {
            *x -= mu;
        }
    });
    Matrix::from_vec(m.rows(), d, v, m.name()).expect("same shape")
}

/// The exact distance of two rows under a metric (f64).
#[inline]
fn exact_distance(metric: Metric, a: &[f32], b: &[f32], inv_a: f64, inv_b: f64) -> f64 {
    match metric {
        Metric::Euclidean => sq_dist_f64(a, b).sqrt(),
        Metric::Cosine => cosine_dist_f64(a, b, inv_a, inv_b),
    }
}

/// The k nearest other rows of every row of `m` (self excluded), exact. Uses the symmetric block search
/// ([`super::symmetric::exact_knn_self`]): each product of two row blocks serves both.
/// `progress` is called with the number of rows finished since the last call.
pub fn exact_knn(
    m: &Matrix,
    k: usize,
    metric: Metric,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<KnnGraph> {
    super::symmetric::exact_knn_self(m, k, metric, progress)
}

/// The k nearest rows of `refs` for every row of `queries`, exact. With `exclude_self` the two must be the
/// same matrix and row i never lists itself.
pub fn knn_search(
    queries: &Matrix,
    refs: &Matrix,
    k: usize,
    metric: Metric,
    exclude_self: bool,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<KnnGraph> {
    let nq = queries.rows();
    let nr = refs.rows();
    let d = refs.cols();
    if queries.cols() != d {
        return Err(Error::data(
            queries.name(),
            format!(
                "queries have {} columns but the data has {d}",
                queries.cols()
            ),
            "pass queries of the same width as the data",
        ));
    }
    // Far from the origin the expansion ‖r‖² − 2r·q loses the digits that rank close neighbours: centre
    // both sides on the reference mean first (distances are unchanged). This copies the data, so it is done
    // only when the offset dominates the spread.
    let centred;
    let (orig_q, orig_r) = (queries, refs);
    let (queries, refs) = match (metric, centring_offset(refs)) {
        (Metric::Euclidean, Some(mean)) => {
            centred = (
                centre(refs, &mean),
                if exclude_self {
                    None
                } else {
                    Some(centre(queries, &mean))
                },
            );
            (centred.1.as_ref().unwrap_or(&centred.0), &centred.0)
        }
        _ => (queries, refs),
    };
    let available = if exclude_self {
        nr.saturating_sub(1)
    } else {
        nr
    };
    if k == 0 || k > available {
        return Err(Error::param(
            "k",
            format!("k = {k} but there are {available} candidate neighbours per point"),
            format!("choose 1 ≤ k ≤ {available}"),
        ));
    }
    let (inv_q, inv_r) = match metric {
        Metric::Cosine => {
            let ir = inverse_norms(refs)?;
            let iq = if exclude_self {
                ir.clone()
            } else {
                inverse_norms(queries)?
            };
            (iq, ir)
        }
        Metric::Euclidean => (Vec::new(), Vec::new()),
    };
    // Per-reference term of the ranking key: ‖r‖² (euclidean) or the inverse norm (cosine).
    let ref_term: Vec<f32> = match metric {
        Metric::Euclidean => (0..nr)
            .into_par_iter()
            .map(|i| {
                refs.row(i)
                    .iter()
                    .map(|&v| v as f64 * v as f64)
                    .sum::<f64>() as f32
            })
            .collect(),
        Metric::Cosine => inv_r.iter().map(|&v| v as f32).collect(),
    };
    let cand = candidate_count(k, available);
    let qdata = queries.as_slice();
    let rdata = refs.as_slice();
    let n_blocks = nq.div_ceil(QUERY_BLOCK);

    let blocks: Vec<(Vec<u32>, Vec<f64>)> = (0..n_blocks)
        .into_par_iter()
        .map(|b| {
            let q0 = b * QUERY_BLOCK;
            let q1 = (q0 + QUERY_BLOCK).min(nq);
            let bq = q1 - q0;
            let mut heaps: Vec<TopK> = (0..bq).map(|_| TopK::new(cand)).collect();
            let mut buf = vec![0f32; REF_BLOCK * bq];
            let qmat = MatRef::from_row_major_slice(&qdata[q0 * d..q1 * d], bq, d);
            let mut r0 = 0;
            while r0 < nr {
                let r1 = (r0 + REF_BLOCK).min(nr);
                let br = r1 - r0;
                let rmat = MatRef::from_row_major_slice(&rdata[r0 * d..r1 * d], br, d);
                let dst = MatMut::from_column_major_slice_mut(&mut buf[..br * bq], br, bq);
                matmul(
                    dst,
                    Accum::Replace,
                    rmat,
                    qmat.transpose(),
                    1.0f32,
                    Par::Seq,
                );
                let terms = &ref_term[r0..r1];
                for (j, heap) in heaps.iter_mut().enumerate() {
                    let col = &buf[j * br..(j + 1) * br];
                    let qi = q0 + j;
                    let mut thr = heap.threshold();
                    match metric {
                        Metric::Euclidean => {
                            for (r, (&dot, &t)) in col.iter().zip(terms).enumerate() {
                                let key = t - 2.0 * dot;
                                if key < thr {
                                    let ri = r0 + r;
                                    if !(exclude_self && ri == qi) {
                                        heap.push(key, ri as u32);
                                        thr = heap.threshold();
                                    }
                                }
                            }
                        }
                        Metric::Cosine => {
                            for (r, (&dot, &t)) in col.iter().zip(terms).enumerate() {
                                let key = -dot * t;
                                if key < thr {
                                    let ri = r0 + r;
                                    if !(exclude_self && ri == qi) {
                                        heap.push(key, ri as u32);
                                        thr = heap.threshold();
                                    }
                                }
                            }
                        }
                    }
                }
                r0 = r1;
            }
            // Exact re-ranking of the survivors.
            let mut idx = Vec::with_capacity(bq * k);
            let mut dist = Vec::with_capacity(bq * k);
            let mut exact: Vec<(f64, u32)> = Vec::with_capacity(cand);
            for (j, heap) in heaps.iter_mut().enumerate() {
                let qi = q0 + j;
                let qrow = orig_q.row(qi);
                let iq = inv_q.get(qi).copied().unwrap_or(0.0);
                exact.clear();
                for &(_, ri) in heap.items() {
                    let ri_u = ri as usize;
                    let ir = inv_r.get(ri_u).copied().unwrap_or(0.0);
                    exact.push((exact_distance(metric, qrow, orig_r.row(ri_u), iq, ir), ri));
                }
                exact.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for &(dd, ri) in exact.iter().take(k) {
                    idx.push(ri);
                    dist.push(dd);
                }
                heap.clear();
            }
            if let Some(p) = progress {
                p(bq);
            }
            (idx, dist)
        })
        .collect();
    let mut indices = Vec::with_capacity(nq * k);
    let mut distances = Vec::with_capacity(nq * k);
    for (i, dd) in blocks {
        indices.extend(i);
        distances.extend(dd);
    }
    Ok(KnnGraph {
        n: nq,
        k,
        metric,
        indices,
        distances,
    })
}

/// Brute-force reference, O(n²) with exact f64 distances; for tests.
pub fn brute_force_knn(m: &Matrix, k: usize, metric: Metric) -> Result<KnnGraph> {
    let n = m.rows();
    let inv = match metric {
        Metric::Cosine => inverse_norms(m)?,
        Metric::Euclidean => vec![0.0; n],
    };
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for i in 0..n {
        let mut all: Vec<(f64, u32)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                (
                    exact_distance(metric, m.row(i), m.row(j), inv[i], inv[j]),
                    j as u32,
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(d, j) in all.iter().take(k) {
            indices.push(j);
            distances.push(d);
        }
    }
    Ok(KnnGraph {
        n,
        k,
        metric,
        indices,
        distances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, d: usize, seed: u64, offset: f32) -> Matrix {
        let mut r = Rng::new(seed);
        let v = (0..n * d).map(|_| r.normal() as f32 + offset).collect();
        Matrix::from_vec(n, d, v, "rand").unwrap()
    }

    #[test]
    fn matches_brute_force_euclidean_and_cosine_across_blocks() {
        // n spans several query and reference blocks.
        let m = random(2600, 7, 11, 0.0);
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let g = exact_knn(&m, 5, metric, None).unwrap();
            let b = brute_force_knn(&m, 5, metric).unwrap();
            assert_eq!(g.indices, b.indices, "{metric:?}");
            for (x, y) in g.distances.iter().zip(&b.distances) {
                assert!((x - y).abs() <= 1e-12 * y.max(1e-300), "{x} {y}");
            }
        }
    }

    #[test]
    fn far_from_origin_data_still_exact() {
        // A large common offset makes the expansion lose digits; the exact re-rank must recover them.
        let m = random(800, 5, 3, 1000.0);
        let g = exact_knn(&m, 4, Metric::Euclidean, None).unwrap();
        let b = brute_force_knn(&m, 4, Metric::Euclidean).unwrap();
        assert_eq!(g.indices, b.indices);
    }

    #[test]
    fn k_too_large_is_an_error() {
        let m = random(5, 3, 1, 0.0);
        assert!(exact_knn(&m, 5, Metric::Euclidean, None).is_err());
        assert!(exact_knn(&m, 4, Metric::Euclidean, None).is_ok());
    }
}
