//! Exact cosine kNN of a matrix with itself, using the symmetry of the similarity matrix.
//!
//! The rows are L2-normalised once (f32). For every pair of row blocks I ≤ J one f32 GEMM gives
//! S = U_I·U_Jᵀ, which ranks candidates both for the rows of I (against J) and for the rows of J (against I):
//! half the products of the one-sided search in [`super::exact`]. Each block's candidate heaps sit behind a
//! mutex; a vectorised maximum per row and per column skips the scalar scan wherever no entry can enter a
//! heap. As in the one-sided search, the survivors (k plus a margin) are re-ranked by exact f64 cosine
//! distances, ties to the smaller index, so the graph is the same as [`super::exact_knn`]'s.
use std::sync::Mutex;

use faer::{MatMut, MatRef};
use rayon::prelude::*;

use super::exact::{cosine_dist_f64, inverse_norms};
use super::heap::TopK;
use super::{KnnGraph, Metric};
use crate::data::Matrix;
use crate::error::{Error, Result};

/// Rows per block.
const BLOCK: usize = 1024;

/// The k nearest other rows of every row under the cosine distance 1 − cos, exact.
pub fn exact_knn_cosine_self(
    m: &Matrix,
    k: usize,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<KnnGraph> {
    let (n, d) = (m.rows(), m.cols());
    if k == 0 || k + 1 > n {
        return Err(Error::param(
            "k",
            format!(
                "k = {k} but there are {} candidate neighbours per point",
                n.saturating_sub(1)
            ),
            format!("choose 1 ≤ k ≤ {}", n.saturating_sub(1)),
        ));
    }
    let inv = inverse_norms(m)?;
    let mut u = vec![0f32; n * d];
    u.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
        for (o, &v) in row.iter_mut().zip(m.row(i)) {
            *o = (v as f64 * inv[i]) as f32;
        }
    });
    let cand = (k + (k / 2).max(8)).min(n - 1);
    let nb = n.div_ceil(BLOCK);
    let range = |b: usize| (b * BLOCK, ((b + 1) * BLOCK).min(n));
    let heaps: Vec<Mutex<Vec<TopK>>> = (0..nb)
        .map(|b| {
            let (s, e) = range(b);
            Mutex::new((s..e).map(|_| TopK::new(cand)).collect())
        })
        .collect();
    let pairs: Vec<(usize, usize)> = (0..nb).flat_map(|i| (i..nb).map(move |j| (i, j))).collect();
    pairs.par_iter().for_each_init(
        || (vec![0f32; BLOCK * BLOCK], vec![0f32; BLOCK]),
        |(buf, mx), &(bi, bj)| {
            let (i0, i1) = range(bi);
            let (j0, j1) = range(bj);
            let (ni, nj) = (i1 - i0, j1 - j0);
            let ui = MatRef::from_row_major_slice(&u[i0 * d..i1 * d], ni, d);
            let uj = MatRef::from_row_major_slice(&u[j0 * d..j1 * d], nj, d);
            // S (ni × nj), column-major: column c holds row j0 + c against every row of I.
            let s = &mut buf[..ni * nj];
            crate::linalg::gemm_f32(
                MatMut::from_column_major_slice_mut(s, ni, nj),
                false,
                ui,
                uj.transpose(),
                1.0,
                false,
            );
            // Rows of I against the rows of J: a contiguous sweep down each column, against a per-row
            // similarity threshold (the heap's bound), so the common case is one compare per entry.
            {
                let thr = &mut mx[..ni];
                let mut hs = heaps[bi].lock().unwrap_or_else(|p| p.into_inner());
                for (t, h) in thr.iter_mut().zip(hs.iter()) {
                    *t = -h.threshold();
                }
                for c in 0..nj {
                    let col = &s[c * ni..(c + 1) * ni];
                    let gj = j0 + c;
                    for (r, (&v, t)) in col.iter().zip(thr.iter_mut()).enumerate() {
                        if v > *t && gj != i0 + r {
                            let h = &mut hs[r];
                            h.push(-v, gj as u32);
                            *t = -h.threshold();
                        }
                    }
                }
            }
            // Rows of J against the rows of I (the transposed use of the same block).
            if bi != bj {
                let mut hs = heaps[bj].lock().unwrap_or_else(|p| p.into_inner());
                for (c, heap) in hs.iter_mut().enumerate() {
                    let col = &s[c * ni..(c + 1) * ni];
                    let cm = col.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                    if -cm >= heap.threshold() {
                        continue;
                    }
                    for (r, &v) in col.iter().enumerate() {
                        let key = -v;
                        if key < heap.threshold() {
                            heap.push(key, (i0 + r) as u32);
                        }
                    }
                }
            }
            if bj == nb - 1 {
                if let Some(p) = progress {
                    p(ni);
                }
            }
        },
    );
    // Exact re-ranking of the survivors in f64.
    let per_block: Vec<(Vec<u32>, Vec<f64>)> = heaps
        .into_par_iter()
        .enumerate()
        .map(|(b, h)| {
            let hs = h.into_inner().unwrap_or_else(|p| p.into_inner());
            let (s, _) = range(b);
            let mut idx = Vec::with_capacity(hs.len() * k);
            let mut dist = Vec::with_capacity(hs.len() * k);
            let mut exact: Vec<(f64, u32)> = Vec::with_capacity(cand);
            for (r, heap) in hs.iter().enumerate() {
                let qi = s + r;
                exact.clear();
                for &(_, j) in heap.items() {
                    let ju = j as usize;
                    exact.push((cosine_dist_f64(m.row(qi), m.row(ju), inv[qi], inv[ju]), j));
                }
                exact.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for &(dd, j) in exact.iter().take(k) {
                    idx.push(j);
                    dist.push(dd);
                }
            }
            (idx, dist)
        })
        .collect();
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for (i, dd) in per_block {
        indices.extend(i);
        distances.extend(dd);
    }
    Ok(KnnGraph {
        n,
        k,
        metric: Metric::Cosine,
        indices,
        distances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbors::exact::brute_force_knn;
    use crate::rng::Rng;

    #[test]
    fn matches_brute_force_across_blocks() {
        let mut r = Rng::new(21);
        let (n, d) = (1300, 6);
        let v: Vec<f32> = (0..n * d).map(|_| r.normal() as f32 + 0.2).collect();
        let m = Matrix::from_vec(n, d, v, "x").unwrap();
        let g = exact_knn_cosine_self(&m, 7, None).unwrap();
        let b = brute_force_knn(&m, 7, Metric::Cosine).unwrap();
        assert_eq!(g.indices, b.indices);
        for (x, y) in g.distances.iter().zip(&b.distances) {
            assert!((x - y).abs() <= 1e-12 * y.max(1e-300));
        }
        // Exact duplicates and ties: still the brute-force order.
        let mut v = m.as_slice().to_vec();
        let row3 = v[3 * d..4 * d].to_vec();
        v[700 * d..701 * d].copy_from_slice(&row3);
        v[1200 * d..1201 * d].copy_from_slice(&row3);
        let m = Matrix::from_vec(n, d, v, "dup").unwrap();
        let g = exact_knn_cosine_self(&m, 5, None).unwrap();
        let b = brute_force_knn(&m, 5, Metric::Cosine).unwrap();
        assert_eq!(g.indices, b.indices);
    }
}
