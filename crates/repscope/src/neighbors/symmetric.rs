//! Exact kNN of a matrix with itself, using the symmetry of the distance matrix.
//!
//! For every pair of row blocks I ≤ J one f32 GEMM gives S = X_I·X_Jᵀ, which ranks candidates both for the
//! rows of I (against J) and for the rows of J (against I): half the products of the one-sided search in
//! [`super::exact::knn_search`]. The ranking key of row q against row j is ‖x_j‖² − 2 x_q·x_j (the squared
//! distance less the constant ‖x_q‖²); for the cosine metric the rows are L2-normalised first, so the key
//! orders by 1 − cos. Euclidean data far from the origin is centred first, as in the one-sided search. Each
//! block's candidate heaps sit behind a mutex; a vectorised minimum per column skips the scalar scan wherever
//! no entry can enter a heap. The survivors (k plus a margin) are re-ranked by exact f64 distances on the
//! original rows, ties to the smaller index, so the graph is the same as the one-sided search's.
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use faer::{MatMut, MatRef};
use rayon::prelude::*;

use super::exact::{centring_offset, cosine_dist_f64, inverse_norms, sq_dist_f64};
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
    exact_knn_self(m, k, Metric::Cosine, progress)
}

/// The k nearest other rows of every row of `m` (self excluded), exact, under `metric`.
/// `progress` is called with a number of rows' worth of work finished since the last call (n in all).
pub fn exact_knn_self(
    m: &Matrix,
    k: usize,
    metric: Metric,
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
    // The rows the products see: normalised (cosine), centred (euclidean far from the origin) or as given.
    let inv = match metric {
        Metric::Cosine => inverse_norms(m)?,
        Metric::Euclidean => Vec::new(),
    };
    let data: Cow<'_, [f32]> = match metric {
        Metric::Cosine => {
            let mut u = vec![0f32; n * d];
            u.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
                for (o, &v) in row.iter_mut().zip(m.row(i)) {
                    *o = (v as f64 * inv[i]) as f32;
                }
            });
            Cow::Owned(u)
        }
        Metric::Euclidean => match centring_offset(m) {
            Some(mean) => {
                let mut u = m.as_slice().to_vec();
                u.par_chunks_mut(d).for_each(|row| {
                    for (x, mu) in row.iter_mut().zip(&mean) {
                        *x -= mu;
                    }
                });
                Cow::Owned(u)
            }
            None => Cow::Borrowed(m.as_slice()),
        },
    };
    let u: &[f32] = &data;
    // ‖x_j‖² of the rows the products see, accumulated in f64.
    let sq: Vec<f32> = u
        .par_chunks(d)
        .map(|row| row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32)
        .collect();
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
    let done = AtomicUsize::new(0);
    pairs.par_iter().for_each_init(
        || (vec![0f32; BLOCK * BLOCK], vec![0f32; BLOCK]),
        |(buf, thr), &(bi, bj)| {
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
            // Rows of I against the rows of J: a contiguous sweep down each column, against each row's
            // heap bound, so the common case is one multiply-add and one compare per entry.
            {
                let thr = &mut thr[..ni];
                let mut hs = heaps[bi].lock().unwrap_or_else(|p| p.into_inner());
                for (t, h) in thr.iter_mut().zip(hs.iter()) {
                    *t = h.threshold();
                }
                for c in 0..nj {
                    let col = &s[c * ni..(c + 1) * ni];
                    let gj = j0 + c;
                    let tj = sq[gj];
                    for (r, (&v, t)) in col.iter().zip(thr.iter_mut()).enumerate() {
                        let key = tj - 2.0 * v;
                        if key < *t && gj != i0 + r {
                            let h = &mut hs[r];
                            h.push(key, gj as u32);
                            *t = h.threshold();
                        }
                    }
                }
            }
            // Rows of J against the rows of I (the transposed use of the same block).
            if bi != bj {
                let ti = &sq[i0..i1];
                let mut hs = heaps[bj].lock().unwrap_or_else(|p| p.into_inner());
                for (c, heap) in hs.iter_mut().enumerate() {
                    let col = &s[c * ni..(c + 1) * ni];
                    let lo = col
                        .iter()
                        .zip(ti)
                        .fold(f32::INFINITY, |a, (&v, &t)| a.min(t - 2.0 * v));
                    let mut bound = heap.threshold();
                    if lo >= bound {
                        continue;
                    }
                    for (r, (&v, &t)) in col.iter().zip(ti).enumerate() {
                        let key = t - 2.0 * v;
                        if key < bound {
                            heap.push(key, (i0 + r) as u32);
                            bound = heap.threshold();
                        }
                    }
                }
            }
            if let Some(p) = progress {
                let now = done.fetch_add(1, Ordering::Relaxed) + 1;
                let rows = now * n / pairs.len() - (now - 1) * n / pairs.len();
                if rows > 0 {
                    p(rows);
                }
            }
        },
    );
    // Exact re-ranking of the survivors in f64, on the rows as given.
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
                    let dd = match metric {
                        Metric::Cosine => cosine_dist_f64(m.row(qi), m.row(ju), inv[qi], inv[ju]),
                        Metric::Euclidean => sq_dist_f64(m.row(qi), m.row(ju)).sqrt(),
                    };
                    exact.push((dd, j));
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
        metric,
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

    #[test]
    fn euclidean_matches_brute_force_and_the_one_sided_search() {
        let mut r = Rng::new(4);
        let (n, d) = (2300, 5);
        for offset in [0.0f32, 500.0] {
            let v: Vec<f32> = (0..n * d).map(|_| r.normal() as f32 + offset).collect();
            let mut v2 = v.clone();
            // Ties: duplicated rows in different blocks.
            let row = v2[10 * d..11 * d].to_vec();
            v2[1500 * d..1501 * d].copy_from_slice(&row);
            v2[2200 * d..2201 * d].copy_from_slice(&row);
            for v in [v, v2] {
                let m = Matrix::from_vec(n, d, v, "x").unwrap();
                let g = exact_knn_self(&m, 6, Metric::Euclidean, None).unwrap();
                let b = brute_force_knn(&m, 6, Metric::Euclidean).unwrap();
                assert_eq!(g.indices, b.indices, "offset {offset}");
                for (x, y) in g.distances.iter().zip(&b.distances) {
                    assert!((x - y).abs() <= 1e-12 * y.max(1e-300), "{x} {y}");
                }
                let one =
                    crate::neighbors::exact::knn_search(&m, &m, 6, Metric::Euclidean, true, None)
                        .unwrap();
                assert_eq!(g.indices, one.indices);
            }
        }
    }

    #[test]
    fn progress_counts_every_row_once() {
        let mut r = Rng::new(8);
        let (n, d) = (3100, 4);
        let v: Vec<f32> = (0..n * d).map(|_| r.normal() as f32).collect();
        let m = Matrix::from_vec(n, d, v, "x").unwrap();
        let total = AtomicUsize::new(0);
        let p = |rows: usize| {
            total.fetch_add(rows, Ordering::Relaxed);
        };
        exact_knn_self(&m, 3, Metric::Euclidean, Some(&p)).unwrap();
        assert_eq!(total.load(Ordering::Relaxed), n);
    }
}
