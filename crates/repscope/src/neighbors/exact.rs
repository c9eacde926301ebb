//! Exact k-nearest neighbours by blocked matrix products, one side at a time (queries against references).
//!
//! For a block of reference rows R (row-major) and a block of query rows Q in the ranking space
//! ([`super::space`]), one f32 GEMM gives R·Qᵀ as a column-major buffer, so each query's dot products with the
//! block are contiguous. Candidates are ranked by the key ‖r‖² − 2 r·q in a bounded heap of k plus a margin.
//! The survivors' distances are recomputed exactly in f64 on the input rows and sorted (ties to the smaller
//! index). A row is certified when the rounding bound ([`super::bound`]) proves that every row the heap
//! left out is farther than its k-th exact distance; every other row goes through the range pass
//! ([`range_pass`]), which computes the exact distance of every row the bound cannot exclude. Memory is
//! O(block²) per thread, never n × n.
use faer::{MatMut, MatRef};
use rayon::prelude::*;

use super::distance::{by_distance, Exact, KBest};
use super::heap::TopK;
use super::space::{Side, Space};
use super::{check_k, Certificate, KnnGraph, Metric};
use crate::data::Matrix;
use crate::error::{Error, Result};

/// Rows of queries handled by one task.
const QUERY_BLOCK: usize = 256;
/// Rows of references multiplied at once.
const REF_BLOCK: usize = 2048;
/// Candidates ahead whose rows are prefetched during the exact re-ranking.
pub(crate) const AHEAD: usize = 2;

/// How many candidates beyond k the candidate pass keeps for the exact re-rank.
pub(crate) fn candidate_count(k: usize, available: usize) -> usize {
    (k + (k / 2).max(8)).min(available)
}

/// The k nearest other rows of every row of `m` (self excluded), exact and certified. Uses the symmetric
/// block search ([`super::symmetric::exact_knn_self`]): each product of two row blocks serves both.
/// `progress` is called with the number of rows finished since the last call.
pub fn exact_knn(
    m: &Matrix,
    k: usize,
    metric: Metric,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<KnnGraph> {
    super::symmetric::exact_knn_self(m, k, metric, progress)
}

/// The lists of one query block of the candidate pass: k neighbours per query (indices, exact distances),
/// the block's queries the bound could not prove, and how many were compared with every reference row.
struct BlockLists {
    indices: Vec<u32>,
    distances: Vec<f64>,
    unproven: Vec<usize>,
    exhaustive: usize,
}

/// The k nearest rows of `refs` for every row of `queries`, exact and certified. With `exclude_self` the
/// two must be the same matrix and row i never lists itself.
pub fn knn_search(
    queries: &Matrix,
    refs: &Matrix,
    k: usize,
    metric: Metric,
    exclude_self: bool,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<KnnGraph> {
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
    let nr = refs.rows();
    check_k(
        k,
        if exclude_self {
            nr.saturating_sub(1)
        } else {
            nr
        },
    )?;
    let (space, rside) = Space::new(refs, metric)?;
    let qside_owned;
    let qside = if exclude_self {
        &rside
    } else {
        qside_owned = space.side(queries)?;
        &qside_owned
    };
    let ids: Vec<usize> = (0..queries.rows()).collect();
    search_rows(&space, qside, &rside, &ids, exclude_self, k, progress)
}

/// The exact k nearest reference rows of the query rows `ids` (row numbers of `qside`), certified; with
/// `exclude_self` query row i never lists reference row i (the two sides are the same matrix).
pub(crate) fn search_rows(
    space: &Space,
    qside: &Side<'_>,
    rside: &Side<'_>,
    ids: &[usize],
    exclude_self: bool,
    k: usize,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<KnnGraph> {
    let nr = rside.rows.rows();
    let available = if exclude_self { nr - 1 } else { nr };
    let cand = candidate_count(k, available);
    let exact = Exact::between(space.metric, qside, rside);
    // The query rows the products read: all of the side as it is, or a copy of the chosen ones.
    let all = ids.len() == qside.rows.rows() && ids.iter().enumerate().all(|(a, &q)| a == q);
    let chosen;
    let qrows: &Matrix = if all {
        &qside.rows
    } else {
        chosen = qside.rows.select_rows(ids);
        &chosen
    };
    let sq = squared_norms(rside);
    let nq = ids.len();
    // Candidate pass: per query block, a heap per query; then the exact re-rank and the certificate.
    let blocks: Vec<BlockLists> = blocked(
        qrows,
        &rside.rows,
        |bq| (0..bq).map(|_| TopK::new(cand)).collect::<Vec<TopK>>(),
        |heaps, q0, r0, buf, br| {
            let terms = &sq[r0..r0 + br];
            for (a, heap) in heaps.iter_mut().enumerate() {
                let col = &buf[a * br..(a + 1) * br];
                let own = exclude_self.then(|| ids[q0 + a]);
                let mut thr = heap.threshold();
                for (r, (&dot, &t)) in col.iter().zip(terms).enumerate() {
                    let key = t - 2.0 * dot;
                    if key < thr && own != Some(r0 + r) {
                        heap.push(key, (r0 + r) as u32);
                        thr = heap.threshold();
                    }
                }
            }
        },
        |heaps, q0| {
            let bq = heaps.len();
            let mut idx = Vec::with_capacity(bq * k);
            let mut dist = Vec::with_capacity(bq * k);
            let mut failed = Vec::new();
            let mut swept = 0;
            let mut best: Vec<(f64, u32)> = Vec::with_capacity(cand);
            for (a, heap) in heaps.iter_mut().enumerate() {
                let q = ids[q0 + a];
                rerank(&exact, q, heap.items().iter().map(|x| x.1), k, &mut best);
                if best.len() < k {
                    // No usable ranking keys (they overflowed for this query): every row is a candidate,
                    // reranked by its exact distance, which is exact by construction and counted apart.
                    let nr = rside.rows.rows() as u32;
                    let all = (0..nr).filter(|&j| !(exclude_self && j as usize == q));
                    rerank(&exact, q, all, k, &mut best);
                    swept += 1;
                } else {
                    let kth = best[k - 1].0;
                    let a_norm = qside.norms[q];
                    let proven = space.target(a_norm, kth).excludes(
                        &space.key,
                        a_norm,
                        heap.threshold(),
                        rside.max_norm,
                    );
                    if !proven {
                        failed.push(q0 + a);
                    }
                }
                for &(dd, j) in &best {
                    idx.push(j);
                    dist.push(dd);
                }
                *heap = TopK::new(0);
            }
            if let Some(p) = progress {
                p(bq);
            }
            BlockLists {
                indices: idx,
                distances: dist,
                unproven: failed,
                exhaustive: swept,
            }
        },
    );
    let mut indices = Vec::with_capacity(nq * k);
    let mut distances = Vec::with_capacity(nq * k);
    let mut failed = Vec::new();
    let mut exhaustive = 0;
    for b in blocks {
        indices.extend(b.indices);
        distances.extend(b.distances);
        failed.extend(b.unproven);
        exhaustive += b.exhaustive;
    }
    // Rows the candidate pass could not prove: the range pass, exact by construction.
    let recomputed = failed.len();
    if !failed.is_empty() {
        let fids: Vec<usize> = failed.iter().map(|&a| ids[a]).collect();
        let radii: Vec<f64> = failed.iter().map(|&a| distances[a * k + k - 1]).collect();
        let lists = range_pass(space, qside, rside, &fids, &radii, exclude_self, k)?;
        write_lists(&failed, lists, k, &mut indices, &mut distances);
    }
    Ok(KnnGraph {
        n: nq,
        k,
        metric: space.metric,
        indices,
        distances,
        certificate: Certificate {
            exact: true,
            rows: nq,
            certified: nq - recomputed - exhaustive,
            recomputed,
            exhaustive,
            projected: 0,
            pieces: 1,
        },
    })
}

/// The range pass: for each query row `ids[a]` (of `qside`), whose k-th distance is at most `radii[a]`
/// (the k-th exact distance of real rows found earlier), the exact distance of every reference row whose
/// ranking key the rounding bound cannot place beyond that radius, and the k nearest of them. Every row
/// left out is proven farther than the radius, so the lists are exact.
/// Writes the range pass's `lists` over the k slots of their rows `rows` in a graph's arrays.
pub(crate) fn write_lists(
    rows: &[usize],
    lists: Vec<Vec<(f64, u32)>>,
    k: usize,
    indices: &mut [u32],
    distances: &mut [f64],
) {
    for (&q, list) in rows.iter().zip(lists) {
        for (slot, (dd, j)) in list.into_iter().enumerate() {
            indices[q * k + slot] = j;
            distances[q * k + slot] = dd;
        }
    }
}

pub(crate) fn range_pass(
    space: &Space,
    qside: &Side<'_>,
    rside: &Side<'_>,
    ids: &[usize],
    radii: &[f64],
    exclude_self: bool,
    k: usize,
) -> Result<Vec<Vec<(f64, u32)>>> {
    let exact = Exact::between(space.metric, qside, rside);
    let thresholds: Vec<f32> = ids
        .iter()
        .zip(radii)
        .map(|(&q, &r)| {
            let a = qside.norms[q];
            space
                .target(a, r)
                .key_threshold(&space.key, a, rside.max_norm)
        })
        .collect();
    let qrows = qside.rows.select_rows(ids);
    let sq = squared_norms(rside);
    let lists: Vec<Vec<Vec<(f64, u32)>>> = blocked(
        &qrows,
        &rside.rows,
        |bq| (0..bq).map(|_| KBest::new(k)).collect::<Vec<KBest>>(),
        |best, q0, r0, buf, br| {
            let terms = &sq[r0..r0 + br];
            for (a, kb) in best.iter_mut().enumerate() {
                let col = &buf[a * br..(a + 1) * br];
                let q = ids[q0 + a];
                let thr = thresholds[q0 + a];
                for (r, (&dot, &t)) in col.iter().zip(terms).enumerate() {
                    let key = t - 2.0 * dot;
                    // A NaN key is admitted too: nothing unproven is ever dropped.
                    let excluded = key.partial_cmp(&thr) == Some(std::cmp::Ordering::Greater);
                    let own = exclude_self && r0 + r == q;
                    if !(excluded || own) {
                        kb.push(exact.dist(q, r0 + r), (r0 + r) as u32);
                    }
                }
            }
        },
        |best, _| best.iter().map(|kb| kb.items().to_vec()).collect(),
    );
    let lists: Vec<Vec<(f64, u32)>> = lists.into_iter().flatten().collect();
    if let Some(a) = lists.iter().position(|l| l.len() < k) {
        return Err(Error::Numerical {
            what: "the exact neighbour range pass".into(),
            problem: format!(
                "row {} admitted {} rows, fewer than k = {k}; the rounding bound is inconsistent",
                ids[a],
                lists[a].len()
            ),
        });
    }
    Ok(lists)
}

/// fl32(‖u_j‖²) of the ranking rows: the key's reference term, as the bound models it.
pub(crate) fn squared_norms(side: &Side<'_>) -> Vec<f32> {
    side.norms.iter().map(|&b| (b * b) as f32).collect()
}

/// The exact re-rank: the exact distances of query row `q` to the candidates, sorted (ties to the smaller
/// index), the k nearest left in `out`. Candidate rows are prefetched a few ahead.
#[inline]
pub(crate) fn rerank<I>(exact: &Exact<'_>, q: usize, cands: I, k: usize, out: &mut Vec<(f64, u32)>)
where
    I: Iterator<Item = u32> + Clone,
{
    out.clear();
    let mut ahead = cands.clone().skip(AHEAD);
    for j in cands {
        if let Some(next) = ahead.next() {
            exact.prefetch(next as usize);
        }
        out.push((exact.dist(q, j as usize), j));
    }
    out.sort_unstable_by(by_distance);
    out.truncate(k);
}

/// The one-sided blocked product: for every block of query rows (in parallel) a state made by `init`
/// (from the block's size); `tile` sees each product of the block with a block of reference rows
/// (column-major br × bq, from reference row r0); `finish` turns the state into the block's result.
fn blocked<S, T, I, F, E>(qrows: &Matrix, rrows: &Matrix, init: I, tile: F, finish: E) -> Vec<T>
where
    S: Send,
    T: Send,
    I: Fn(usize) -> S + Sync,
    F: Fn(&mut S, usize, usize, &[f32], usize) + Sync,
    E: Fn(&mut S, usize) -> T + Sync,
{
    let (nq, nr, d) = (qrows.rows(), rrows.rows(), rrows.cols());
    let qdata = qrows.as_slice();
    let rdata = rrows.as_slice();
    (0..nq.div_ceil(QUERY_BLOCK))
        .into_par_iter()
        .map(|b| {
            let q0 = b * QUERY_BLOCK;
            let q1 = (q0 + QUERY_BLOCK).min(nq);
            let bq = q1 - q0;
            let mut state = init(bq);
            let mut buf = vec![0f32; REF_BLOCK.min(nr) * bq];
            let qmat = MatRef::from_row_major_slice(&qdata[q0 * d..q1 * d], bq, d);
            let mut r0 = 0;
            while r0 < nr {
                let r1 = (r0 + REF_BLOCK).min(nr);
                let br = r1 - r0;
                let rmat = MatRef::from_row_major_slice(&rdata[r0 * d..r1 * d], br, d);
                crate::linalg::gemm_f32(
                    MatMut::from_column_major_slice_mut(&mut buf[..br * bq], br, bq),
                    false,
                    rmat,
                    qmat.transpose(),
                    1.0,
                    false,
                );
                tile(&mut state, q0, r0, &buf[..br * bq], br);
                r0 = r1;
            }
            finish(&mut state, q0)
        })
        .collect()
}

/// Brute-force reference, O(n²) with exact f64 distances and the graph's order; for tests.
pub fn brute_force_knn(m: &Matrix, k: usize, metric: Metric) -> Result<KnnGraph> {
    let n = m.rows();
    check_k(k, n.saturating_sub(1))?;
    let inv = match metric {
        Metric::Cosine => super::distance::inverse_norms(m)?,
        Metric::Euclidean => Vec::new(),
    };
    let exact = Exact::within(metric, m, &inv);
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for i in 0..n {
        let mut all: Vec<(f64, u32)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| (exact.dist(i, j), j as u32))
            .collect();
        all.sort_by(by_distance);
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
        certificate: Certificate {
            exact: true,
            rows: n,
            certified: 0,
            recomputed: 0,
            exhaustive: n,
            projected: 0,
            pieces: 1,
        },
    })
}

/// For every radius in `radii` (the metric's distances, ascending), the number of ordered pairs (i, j),
/// i ≠ j, of rows of `m` whose exact distance is strictly below it: the correlation sums of
/// Grassberger and Procaccia (see [`rows_within`]).
pub fn pairs_within(m: &Matrix, metric: Metric, radii: &[f64]) -> Result<Vec<u64>> {
    let counts = rows_within(m, metric, radii.len(), |_| radii)?;
    let mut total = vec![0u64; radii.len()];
    for row in counts.chunks(radii.len().max(1)) {
        for (t, v) in total.iter_mut().zip(row) {
            *t += v;
        }
    }
    Ok(total)
}

/// For every row q of `m` and each of its `per_row` radii `radii(q)` (the metric's distances, ascending),
/// the number of other rows whose exact distance to q is strictly below it; n × per_row counts, row-major.
/// One blocked product ranks every pair; a pair whose ranking key the rounding bound proves farther than
/// q's largest radius is left out, and every other pair's distance is computed exactly in f64, so the
/// counts are exact. Memory is O(block²) per thread plus the counts.
pub fn rows_within<'r, R>(m: &Matrix, metric: Metric, per_row: usize, radii: R) -> Result<Vec<u64>>
where
    R: Fn(usize) -> &'r [f64] + Sync,
{
    let n = m.rows();
    if per_row == 0 || n == 0 {
        return Ok(Vec::new());
    }
    let (space, side) = Space::new(m, metric)?;
    let exact = Exact::between(metric, &side, &side);
    let thresholds: Vec<f32> = (0..n)
        .map(|q| {
            let a = side.norms[q];
            let largest = radii(q).last().copied().unwrap_or(0.0);
            space
                .target(a, largest)
                .key_threshold(&space.key, a, side.max_norm)
        })
        .collect();
    let sq = squared_norms(&side);
    let blocks: Vec<Vec<u64>> = blocked(
        &side.rows,
        &side.rows,
        |bq| vec![0u64; bq * per_row],
        |counts, q0, r0, buf, br| {
            let terms = &sq[r0..r0 + br];
            let bq = buf.len() / br;
            for a in 0..bq {
                let q = q0 + a;
                let col = &buf[a * br..(a + 1) * br];
                let thr = thresholds[q];
                let rq = radii(q);
                let out = &mut counts[a * per_row..(a + 1) * per_row];
                for (r, (&dot, &t)) in col.iter().zip(terms).enumerate() {
                    let key = t - 2.0 * dot;
                    if key.partial_cmp(&thr) == Some(std::cmp::Ordering::Greater) || r0 + r == q {
                        continue;
                    }
                    let d = exact.dist(q, r0 + r);
                    for (c, &rad) in out.iter_mut().zip(rq) {
                        *c += u64::from(d < rad);
                    }
                }
            }
        },
        |counts, _| std::mem::take(counts),
    );
    Ok(blocks.into_iter().flatten().collect())
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
            let g = knn_search(&m, &m, 5, metric, true, None).unwrap();
            let b = brute_force_knn(&m, 5, metric).unwrap();
            assert_eq!(g.indices, b.indices, "{metric:?}");
            for (x, y) in g.distances.iter().zip(&b.distances) {
                assert!((x - y).abs() <= 1e-12 * y.max(1e-300), "{x} {y}");
            }
            assert_eq!(g.certificate.rows, 2600);
        }
    }

    #[test]
    fn far_from_origin_data_still_exact() {
        // A large common offset makes the expansion lose digits; centring and the certificate recover them.
        let m = random(800, 5, 3, 1000.0);
        let g = knn_search(&m, &m, 4, Metric::Euclidean, true, None).unwrap();
        let b = brute_force_knn(&m, 4, Metric::Euclidean).unwrap();
        assert_eq!(g.indices, b.indices);
    }

    #[test]
    fn queries_whose_ranking_keys_overflow_are_compared_with_every_row_and_counted_apart() {
        // Reference rows near 1e-30 are scaled by about 2^100 into the ranking space; a query at 1e20 then
        // overflows f32 there, so its keys are not numbers, no bound applies and the rows are searched
        // exhaustively; the certificate says so instead of calling them certified.
        // Positive reference rows and a query of alternating signs: every product sums +inf and -inf.
        let mut r = random(300, 4, 5, 0.0).as_slice().to_vec();
        r.iter_mut().for_each(|v| *v = (v.abs() + 0.1) * 1e-30);
        let refs = Matrix::from_vec(300, 4, r, "r").unwrap();
        let mut q = random(3, 4, 6, 0.0).as_slice().to_vec();
        for (i, v) in q.iter_mut().enumerate() {
            *v = if i < 4 {
                if i % 2 == 0 {
                    1e20
                } else {
                    -1e20
                }
            } else {
                *v * 1e-30
            };
        }
        let queries = Matrix::from_vec(3, 4, q, "q").unwrap();
        let g = knn_search(&queries, &refs, 5, Metric::Euclidean, false, None).unwrap();
        let c = g.certificate;
        assert_eq!((c.rows, c.exhaustive), (3, 1), "{c:?}");
        assert_eq!(c.certified + c.recomputed + c.exhaustive, 3, "{c:?}");
        // The exhaustive row is the exact answer: brute force in f64 over every reference row.
        let mut all: Vec<(f64, u32)> = (0..300)
            .map(|j| {
                let d2: f64 = (0..4)
                    .map(|c| (queries.row(0)[c] as f64 - refs.row(j)[c] as f64).powi(2))
                    .sum();
                (d2.sqrt(), j as u32)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (slot, &(d, j)) in all.iter().take(5).enumerate() {
            assert_eq!(g.indices[slot], j);
            assert!(
                (g.distances[slot] - d).abs() <= 1e-12 * d,
                "{} {d}",
                g.distances[slot]
            );
        }
    }

    #[test]
    fn k_too_large_is_an_error() {
        let m = random(5, 3, 1, 0.0);
        assert!(knn_search(&m, &m, 5, Metric::Euclidean, true, None).is_err());
        assert!(knn_search(&m, &m, 4, Metric::Euclidean, true, None).is_ok());
        assert!(knn_search(&m, &m, 0, Metric::Euclidean, true, None).is_err());
    }
}
