//! Exact kNN of a matrix with itself, using the symmetry of the distance matrix.
//!
//! For every pair of row blocks I ≤ J one f32 GEMM gives S = X_I·X_Jᵀ, which ranks candidates both for the
//! rows of I (against J) and for the rows of J (against I): half the products of the one-sided search in
//! [`super::exact::knn_search`]. The rows are those of the ranking space ([`super::space`]): normalised
//! for the cosine metric, centred and scaled where the euclidean data needs it. The ranking key of row q
//! against row j is ‖x_j‖² − 2 x_q·x_j (the squared distance less the constant ‖x_q‖²). Each block's
//! candidate heaps sit behind a mutex; a vectorised minimum per column skips the scalar scan wherever no
//! entry can enter a heap. The survivors (k plus a margin) are re-ranked by exact f64 distances on the
//! input rows, ties to the smaller index, and each row is certified by the rounding bound
//! ([`super::bound`]); the rows it cannot certify go through the exact range pass. The graph is the same as
//! the one-sided search's and as float64 brute force.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use faer::{MatMut, MatRef};
use rayon::prelude::*;

use super::bound::{KeyError, Target};
use super::distance::{by_distance, Exact};
use super::exact::{range_pass, rerank, write_lists, AHEAD};
use super::heap::HeapBlock;
use super::space::{Space, U32};
use super::{check_k, Certificate, KnnGraph, Metric};
use crate::data::Matrix;
use crate::decomposition::Principal;
use crate::error::Result;
use crate::progress::Silent;

/// Rows per block.
const BLOCK: usize = 1024;
/// Columns of a product tile (BLOCK × COLS f32: 256 KiB, cache-resident).
const COLS: usize = 64;

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
///
/// When the rows lie close to a low-dimensional subspace, the candidates are found in a PCA projection
/// first (see [`Plan`]); the result is the same graph, certified row by row.
pub fn exact_knn_self(
    m: &Matrix,
    k: usize,
    metric: Metric,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<KnnGraph> {
    exact_knn_self_with(m, k, metric, progress, Plan::Auto)
}

/// How the candidates of the self search are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Decide from a pilot sample: [`Plan::Projected`] where it is expected to be much cheaper.
    Auto,
    /// Products over all columns; k plus a margin of candidates re-ranked exactly.
    Full,
    /// Products over the first `p` principal directions only. An orthogonal projection never lengthens a
    /// difference, so a row's projected distance, less the rounding of the projection, is a lower bound
    /// of its true one. The `cand` rows nearest in the projection are re-ranked by exact distances; a row
    /// is certified when the bound places every row left out beyond its k-th exact distance. Rows that are
    /// not certified go through the exact range pass over all columns.
    Projected { p: usize, cand: usize },
}

/// Rows below which the pilot is not worth its cost.
const PROJECTION_MIN_ROWS: usize = 8192;
/// Rows sampled for the pilot's principal directions and for its probe queries.
const PILOT_BASIS_ROWS: usize = 4096;
const PILOT_QUERIES: usize = 256;
/// Cost of scanning one entry of a product block, in flops (the sweeps and heap tests).
const SCAN_COST: f64 = 24.0;

pub(crate) fn exact_knn_self_with(
    m: &Matrix,
    k: usize,
    metric: Metric,
    progress: Option<&(dyn Fn(usize) + Sync)>,
    plan: Plan,
) -> Result<KnnGraph> {
    let (n, d) = (m.rows(), m.cols());
    check_k(k, n.saturating_sub(1))?;
    // The rows the products see, and how far they may be from the exact geometry.
    let (space, side) = Space::new(m, metric)?;
    let full_cand = super::exact::candidate_count(k, n - 1);
    let (plan, pilot_basis) = match plan {
        Plan::Auto => choose_plan(&side.rows, k, full_cand)?,
        other => (other, None),
    };
    // The full plan keeps the ranking side for the range pass; the projected one drops it during its
    // search (memory) and makes it again only if some row needs the range pass.
    let (mut indices, mut distances, failed, projected, kept) = match plan {
        Plan::Auto | Plan::Full => {
            let (heaps, _) = candidates(side.rows.as_slice(), d, n, full_cand, progress);
            let exact = Exact::within(metric, m, &side.inv);
            // Every row with a key ≥ τ is farther than the k-th exact distance.
            let proven = |q: usize, kth: f64, tau: f32| {
                let a = side.norms[q];
                space
                    .target(a, kth)
                    .excludes(&space.key, a, tau, side.max_norm)
            };
            let (i, dd, f) = rerank_blocks(heaps, k, &exact, &proven, false, 0);
            (i, dd, f, 0, Some(side))
        }
        Plan::Projected { p, cand } => {
            let p = p.clamp(1, d);
            let cand = cand.clamp(k, n - 1);
            let (mean, basis) = match pilot_basis {
                // Column-major d × pmax: the first p columns are the leading p directions.
                Some((mean, basis)) if basis.len() >= p * d => (mean, basis[..p * d].to_vec()),
                _ => principal_basis(&side.rows, p)?,
            };
            let proj = Projection::new(&side.rows, &mean, &basis, p, side.max_norm)?;
            let inv = side.inv.clone();
            let (u_norms, u_max) = (side.norms.clone(), side.max_norm);
            drop(side);
            let (heaps, _) = candidates(&proj.z, p, n, cand, progress);
            let exact = Exact::within(metric, m, &inv);
            let zkey = KeyError::new(p);
            let proven = |q: usize, kth: f64, tau: f32| {
                let t = space.target(u_norms[q], kth);
                // In the projection: ρ_z ≤ σ·ρ_u + ζ_q + ζ_j, and the row left out needs ρ_u > t + η·b_j.
                let c = proj.norms[q];
                let target = Target {
                    t: proj.sigma * (t.t + t.eta * u_max) + proj.zeta_rel * c + 2.0 * proj.zeta_abs,
                    eta: proj.zeta_rel,
                };
                target.excludes(&zkey, c, tau, proj.max_norm)
            };
            let (i, dd, f) = rerank_blocks(heaps, k, &exact, &proven, true, 0);
            (i, dd, f, n, None)
        }
    };
    let recomputed = failed.len();
    if !failed.is_empty() {
        // Rows the candidate pass could not prove: the range pass over all columns, exact by construction.
        let side = match kept {
            Some(side) => side,
            None => space.side(m)?,
        };
        let radii: Vec<f64> = failed.iter().map(|&q| distances[q * k + k - 1]).collect();
        let lists = range_pass(&space, &side, &side, &failed, &radii, true, k)?;
        write_lists(&failed, lists, k, &mut indices, &mut distances);
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
            certified: n - recomputed,
            recomputed,
            exhaustive: 0,
            projected,
            pieces: 1,
        },
    })
}

/// For the rows of two blocks held in one matrix (`m`: the rows of a, then those of b from row `na`), every
/// row of a's exact k nearest rows of b, and every row of b's k nearest of a (k clipped to the other side's
/// rows), certified: the two sides of one pair of blocks in a distributed self search. Each product of a
/// block of a with a block of b ranks candidates for the rows of both, as the self search's products do,
/// so the pair costs one side's search. Indices number the other side's rows.
pub(crate) fn exact_knn_cross(
    m: &Matrix,
    na: usize,
    k: usize,
    metric: Metric,
) -> Result<(KnnGraph, KnnGraph)> {
    let nb = m.rows() - na;
    check_k(k.min(nb), nb)?;
    check_k(k.min(na), na)?;
    let (ka, kb) = (k.min(nb), k.min(na));
    let d = m.cols();
    let (space, side) = Space::new(m, metric)?;
    let blocks = |s: usize, e: usize| -> Vec<(usize, usize)> {
        (s..e)
            .step_by(BLOCK)
            .map(|b0| (b0, (b0 + BLOCK).min(e)))
            .collect()
    };
    let (ra, rb) = (blocks(0, na), blocks(na, na + nb));
    let caps: Vec<usize> = ra
        .iter()
        .map(|_| super::exact::candidate_count(ka, nb))
        .chain(rb.iter().map(|_| super::exact::candidate_count(kb, na)))
        .collect();
    let (la, lb) = (ra.len(), rb.len());
    let pairs: Vec<(usize, usize)> = (0..la)
        .flat_map(|i| (0..lb).map(move |j| (i, la + j)))
        .collect();
    let ranges = [ra.clone(), rb].concat();
    let (mut heaps, _) = candidates_over(side.rows.as_slice(), d, &ranges, &caps, &pairs, None);
    let hb = heaps.split_off(ra.len());
    let exact = Exact::within(metric, m, &side.inv);
    let proven = |q: usize, kth: f64, tau: f32| {
        let a = side.norms[q];
        space
            .target(a, kth)
            .excludes(&space.key, a, tau, side.max_norm)
    };
    let (mut ia, mut da, fa) = rerank_blocks(heaps, ka, &exact, &proven, false, 0);
    let (mut ib, mut db, fb) = rerank_blocks(hb, kb, &exact, &proven, false, na);
    // The rows of b are numbered from na in the joined matrix.
    ia.iter_mut().for_each(|j| *j -= na as u32);
    let (recomputed_a, recomputed_b) = (fa.len(), fb.len());
    if !fa.is_empty() || !fb.is_empty() {
        // Each side as a matrix of its own, for the one-sided range pass (only when a row needs it).
        let (a, b) = (m.slice_rows(0, na), m.slice_rows(na, m.rows()));
        let (sa, sb) = (space.side(&a)?, space.side(&b)?);
        let fb: Vec<usize> = fb.iter().map(|&q| q - na).collect();
        for (failed, q, r, kk, idx, dist) in [
            (&fa, &sa, &sb, ka, &mut ia, &mut da),
            (&fb, &sb, &sa, kb, &mut ib, &mut db),
        ] {
            if failed.is_empty() {
                continue;
            }
            let radii: Vec<f64> = failed.iter().map(|&i| dist[i * kk + kk - 1]).collect();
            let lists = range_pass(&space, q, r, failed, &radii, false, kk)?;
            write_lists(failed, lists, kk, idx, dist);
        }
    }
    let graph = |n, k, indices, distances, recomputed| KnnGraph {
        n,
        k,
        metric,
        indices,
        distances,
        certificate: Certificate {
            exact: true,
            rows: n,
            certified: n - recomputed,
            recomputed,
            exhaustive: 0,
            projected: 0,
            pieces: 1,
        },
    };
    Ok((
        graph(na, ka, ia, da, recomputed_a),
        graph(nb, kb, ib, db, recomputed_b),
    ))
}

/// Rows projected on p orthonormal directions for the candidate search, with what bounds the projection:
/// z_i = fl32(Pᵀ(u_i − μ)), computed in f64 and rounded once.
struct Projection {
    /// n × p, row-major.
    z: Vec<f32>,
    norms: Vec<f64>,
    max_norm: f64,
    /// ‖Pᵀx‖ ≤ σ‖x‖ for the f64 basis actually used (1 up to its loss of orthogonality).
    sigma: f64,
    /// ‖z_i − Pᵀ(u_i − μ)‖ ≤ zeta_rel·‖z_i‖ + zeta_abs.
    zeta_rel: f64,
    zeta_abs: f64,
}

impl Projection {
    fn new(u: &Matrix, mean: &[f64], basis: &[f64], p: usize, u_max: f64) -> Result<Projection> {
        let (n, d) = (u.rows(), u.cols());
        // σ² = λ_max(PᵀP) ≤ 1 + ‖PᵀP − I‖_F, with the f64 error of forming PᵀP added.
        let mut off = 0f64;
        for a in 0..p {
            for b in 0..p {
                let g: f64 = (0..d).map(|r| basis[a * d + r] * basis[b * d + r]).sum();
                let e = g - if a == b { 1.0 } else { 0.0 };
                off += e * e;
            }
        }
        let u64_ = f64::EPSILON / 2.0;
        let sigma = (1.0 + off.sqrt() + 2.0 * p as f64 * (d as f64 + 2.0) * u64_).sqrt();
        const CHUNK: usize = 512;
        let bmat = MatRef::from_column_major_slice(basis, d, p);
        let mut z = vec![0f32; n * p];
        z.par_chunks_mut(p * CHUNK)
            .enumerate()
            .for_each(|(c, dst)| {
                let r0 = c * CHUNK;
                let rows = dst.len() / p;
                let mut x = vec![0f64; rows * d];
                for (i, xr) in x.chunks_exact_mut(d).enumerate() {
                    for ((o, &v), &mu) in xr.iter_mut().zip(u.row(r0 + i)).zip(mean) {
                        *o = v as f64 - mu;
                    }
                }
                let mut out = vec![0f64; rows * p];
                crate::linalg::gemm(
                    MatMut::from_row_major_slice_mut(&mut out, rows, p),
                    false,
                    MatRef::from_row_major_slice(&x, rows, d),
                    bmat,
                    1.0,
                    false,
                );
                for (o, &v) in dst.iter_mut().zip(&out) {
                    *o = v as f32;
                }
            });
        let norms: Vec<f64> = z
            .par_chunks(p)
            .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt())
            .collect();
        let max_norm = norms.iter().fold(0f64, |a, &b| a.max(b));
        let mu_norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        let sqrt_p = (p as f64).sqrt();
        // The f64 product adds γ_d·‖|x|‖·‖|P|‖ ≤ γ_d·‖x‖·√p·σ; the f32 rounding 2⁻²⁴ per entry, or 2⁻¹⁵⁰
        // where the result is subnormal.
        let gamma64 = super::bound::gamma(d + 4, u64_);
        let zeta_abs = (gamma64 * sqrt_p * sigma * (u_max + mu_norm)) * 1.01
            + 2.0 * sqrt_p * 1.401_298_464_324_817e-45;
        Ok(Projection {
            z,
            norms,
            max_norm,
            sigma,
            zeta_rel: U32 * (1.0 + 1e-6),
            zeta_abs,
        })
    }
}

/// The leading `p` principal directions of `u` (from at most [`PILOT_BASIS_ROWS`] evenly spaced rows: any
/// orthonormal basis gives a valid bound, the sample only decides how tight) and the column means of `u`.
fn principal_basis(u: &Matrix, p: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = u.rows();
    let sample;
    let src = if n > PILOT_BASIS_ROWS {
        let idx: Vec<usize> = (0..PILOT_BASIS_ROWS)
            .map(|i| i * n / PILOT_BASIS_ROWS)
            .collect();
        sample = u.select_rows(&idx);
        &sample
    } else {
        u
    };
    let basis = Principal::of(src, &Silent)?.basis(p);
    Ok((crate::linalg::column_means(u), basis))
}

/// Decides between the full and the projected search from a pilot: the principal directions of a row
/// sample, and for a few probe rows their k-th distance and how many rows fall inside it in each
/// candidate projection (the candidates that projection would need). The plan with the lowest estimated
/// cost wins; the projection must be expected to save at least 40%.
/// The plan, and the pilot's principal directions (column means, d × pmax basis) when it computed them.
type PlanChoice = (Plan, Option<(Vec<f64>, Vec<f64>)>);

fn choose_plan(u: &Matrix, k: usize, full_cand: usize) -> Result<PlanChoice> {
    let (n, d) = (u.rows(), u.cols());
    let widths: Vec<usize> = [4usize, 8, 12, 16, 24, 32, 48, 64]
        .into_iter()
        .filter(|&p| 4 * p <= d)
        .collect();
    if n < PROJECTION_MIN_ROWS || n < 16 * d || widths.is_empty() {
        return Ok((Plan::Full, None));
    }
    let pmax = *widths.last().expect("non-empty");
    let (mean, basis) = principal_basis(u, pmax)?;
    let probes: Vec<usize> = (0..PILOT_QUERIES).map(|i| i * n / PILOT_QUERIES).collect();
    // The probes' k-th distance (squared, in the space of u), exactly; the probe itself comes first.
    let pm = u.select_rows(&probes);
    let g = super::exact::knn_search(&pm, u, k + 1, Metric::Euclidean, false, None)?;
    let dk2: Vec<f32> = (0..probes.len())
        .map(|a| {
            let v = g.distances[a * (k + 1) + k];
            (v * v) as f32
        })
        .collect();
    drop(g);
    let zp = crate::linalg::project_rows(&pm, Some(&mean), &basis, pmax);
    drop(pm);
    let np = probes.len();
    let nw = widths.len();
    // Prefix norms per width.
    let pref = |row: &[f32]| -> Vec<f32> {
        let mut acc = 0f64;
        let mut out = Vec::with_capacity(nw);
        let mut c = 0;
        for &w in &widths {
            while c < w {
                acc += row[c] as f64 * row[c] as f64;
                c += 1;
            }
            out.push(acc as f32);
        }
        out
    };
    let probe_norms: Vec<Vec<f32>> = zp.chunks_exact(pmax).map(pref).collect();
    // Every row's projection, one block at a time (never all of them at once).
    const RB: usize = 2048;
    let counts: Vec<usize> = (0..n.div_ceil(RB))
        .into_par_iter()
        .map(|b| {
            let (r0, r1) = (b * RB, ((b + 1) * RB).min(n));
            let br = r1 - r0;
            let block = u.slice_rows(r0, r1);
            let zb = crate::linalg::project_rows(&block, Some(&mean), &basis, pmax);
            let zr = MatRef::from_row_major_slice(&zb, br, pmax);
            let zq = MatRef::from_row_major_slice(&zp, np, pmax);
            let ref_norms: Vec<Vec<f32>> = zb.chunks_exact(pmax).map(pref).collect();
            // Dots over the first w columns, built up width by width (column-major br × np).
            let mut dots = vec![0f32; br * np];
            let mut counts = vec![0usize; np * nw];
            let mut c0 = 0;
            for (wi, &w) in widths.iter().enumerate() {
                crate::linalg::gemm_f32(
                    MatMut::from_column_major_slice_mut(&mut dots, br, np),
                    c0 > 0,
                    zr.subcols(c0, w - c0),
                    zq.subcols(c0, w - c0).transpose(),
                    1.0,
                    false,
                );
                c0 = w;
                for a in 0..np {
                    let col = &dots[a * br..(a + 1) * br];
                    let (tq, lim) = (probe_norms[a][wi], dk2[a]);
                    counts[a * nw + wi] += col
                        .iter()
                        .zip(&ref_norms)
                        .filter(|(&dot, t)| tq + t[wi] - 2.0 * dot <= lim)
                        .count();
                }
            }
            counts
        })
        .reduce(
            || vec![0usize; np * nw],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    let (nf, df) = (n as f64, d as f64);
    let pairs = nf * nf / 2.0;
    let full_cost = pairs * (2.0 * df + SCAN_COST) + nf * full_cand as f64 * 3.0 * df;
    // Candidate heaps are kept for every row at once: hold them to about a sixth of the input's size.
    let cap = (full_cand.max(d / 12)).min(n - 1);
    let mut best = (full_cost, Plan::Full);
    for (wi, &w) in widths.iter().enumerate() {
        // The probe itself is inside its own ball: one less candidate needed.
        let mut need: Vec<usize> = (0..np)
            .map(|a| counts[a * nw + wi].saturating_sub(1))
            .collect();
        need.sort_unstable();
        let q97 = need[(np * 97 / 100).min(np - 1)];
        // The projection's bound is exact, so no f32 ranking margin is needed beyond what the pilot saw.
        let floor = (k + (k / 10).max(2)).min(n - 1);
        let cand = ((q97 as f64 * 1.2).ceil() as usize + 2).clamp(floor, cap.max(floor));
        let fail = need.iter().filter(|&&c| c >= cand).count() as f64 / np as f64;
        let cost = pairs * (2.0 * w as f64 + SCAN_COST)
            + nf * cand as f64 * 3.0 * df
            + fail * nf * nf * (2.0 * df + SCAN_COST);
        if cost < best.0 {
            best = (cost, Plan::Projected { p: w, cand });
        }
    }
    Ok(if best.0 < 0.6 * full_cost {
        (best.1, Some((mean, basis)))
    } else {
        (Plan::Full, None)
    })
}

/// For every row of `u` (n × w, row-major) the `cand` other rows with the smallest key
/// ‖u_j‖² − 2 u_q·u_j (the squared distance less ‖u_q‖²), by the symmetric block search; and ‖u_j‖².
fn candidates(
    u: &[f32],
    w: usize,
    n: usize,
    cand: usize,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> (Vec<Mutex<HeapBlock>>, Vec<f32>) {
    let nb = n.div_ceil(BLOCK);
    let ranges: Vec<(usize, usize)> = (0..nb)
        .map(|b| (b * BLOCK, ((b + 1) * BLOCK).min(n)))
        .collect();
    let pairs: Vec<(usize, usize)> = (0..nb).flat_map(|i| (i..nb).map(move |j| (i, j))).collect();
    candidates_over(u, w, &ranges, &vec![cand; nb], &pairs, progress)
}

/// [`candidates`] over given blocks of rows (`ranges`, each with its heaps' capacity in `caps`) and pairs of
/// blocks (i ≤ j by position): each pair's product serves the rows of both of its blocks, and a block's
/// rows see only the rows of the blocks it is paired with.
fn candidates_over(
    u: &[f32],
    w: usize,
    ranges: &[(usize, usize)],
    caps: &[usize],
    pairs: &[(usize, usize)],
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> (Vec<Mutex<HeapBlock>>, Vec<f32>) {
    let n = u.len() / w.max(1);
    let sq: Vec<f32> = u
        .par_chunks(w)
        .map(|row| row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32)
        .collect();
    let range = |b: usize| ranges[b];
    let heaps: Vec<Mutex<HeapBlock>> = ranges
        .iter()
        .zip(caps)
        .map(|(&(s, e), &cap)| Mutex::new(HeapBlock::new(e - s, cap)))
        .collect();
    let done = AtomicUsize::new(0);
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = false;
    pairs.par_iter().for_each_init(
        || (vec![0f32; BLOCK * COLS], vec![0f32; BLOCK]),
        |(buf, thr), &(bi, bj)| {
            let (i0, i1) = range(bi);
            let (j0, j1) = range(bj);
            let ni = i1 - i0;
            let ui = MatRef::from_row_major_slice(&u[i0 * w..i1 * w], ni, w);
            // COLS rows of J at a time, so the product tile stays in cache while both sweeps read it.
            let mut c0 = j0;
            while c0 < j1 {
                let c1 = (c0 + COLS).min(j1);
                let nc = c1 - c0;
                let uj = MatRef::from_row_major_slice(&u[c0 * w..c1 * w], nc, w);
                // S (ni × nc), column-major: column c holds row c0 + c against every row of I.
                let s = &mut buf[..ni * nc];
                crate::linalg::gemm_f32(
                    MatMut::from_column_major_slice_mut(s, ni, nc),
                    false,
                    ui,
                    uj.transpose(),
                    1.0,
                    false,
                );
                // Rows of I against these rows of J: a contiguous sweep down each column against each
                // row's heap bound, LANES entries at a time; scalar pushes only where one can enter.
                {
                    let thr = &mut thr[..ni];
                    let mut hs = heaps[bi].lock().unwrap_or_else(|p| p.into_inner());
                    for (r, t) in thr.iter_mut().enumerate() {
                        *t = hs.threshold(r);
                    }
                    sweep_rows(avx2, s, ni, c0, i0, &sq[c0..c1], thr, &mut hs);
                }
                // Rows of J against the rows of I (the transposed use of the same tile).
                if bi != bj {
                    let ti = &sq[i0..i1];
                    let mut hs = heaps[bj].lock().unwrap_or_else(|p| p.into_inner());
                    sweep_cols(avx2, s, ni, i0, ti, &mut hs, c0 - j0, nc);
                }
                c0 = c1;
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
    (heaps, sq)
}

/// Entries tested together in the sweeps.
const LANES: usize = 16;

/// The rows of I against the columns of a tile: a contiguous sweep down each column against each row's
/// heap bound `thr`, LANES entries at a time; scalar pushes only where a key can enter. `tj` holds ‖u_j‖²
/// of the tile's columns (global rows c0..), `i0` is the first row of I.
#[allow(clippy::too_many_arguments)]
fn sweep_rows(
    avx2: bool,
    s: &[f32],
    ni: usize,
    c0: usize,
    i0: usize,
    tj: &[f32],
    thr: &mut [f32],
    hs: &mut HeapBlock,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only where AVX2 was detected at run time.
        return unsafe { sweep_rows_avx2(s, ni, c0, i0, tj, thr, hs) };
    }
    let _ = avx2;
    sweep_rows_body(s, ni, c0, i0, tj, thr, hs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sweep_rows_avx2(
    s: &[f32],
    ni: usize,
    c0: usize,
    i0: usize,
    tj: &[f32],
    thr: &mut [f32],
    hs: &mut HeapBlock,
) {
    sweep_rows_body(s, ni, c0, i0, tj, thr, hs)
}

#[inline(always)]
fn sweep_rows_body(
    s: &[f32],
    ni: usize,
    c0: usize,
    i0: usize,
    tj: &[f32],
    thr: &mut [f32],
    hs: &mut HeapBlock,
) {
    for (c, &t_j) in tj.iter().enumerate() {
        let col = &s[c * ni..(c + 1) * ni];
        let gj = c0 + c;
        for (l, (cl, tl)) in col.chunks(LANES).zip(thr.chunks_mut(LANES)).enumerate() {
            if !any_below(cl, tl, t_j) {
                continue;
            }
            for (o, (&v, t)) in cl.iter().zip(tl.iter_mut()).enumerate() {
                let key = t_j - 2.0 * v;
                let r = l * LANES + o;
                if key < *t && gj != i0 + r {
                    hs.push(r, key, gj as u32);
                    *t = hs.threshold(r);
                }
            }
        }
    }
}

/// The rows of J (the tile's columns, heaps `hs`) against the rows of I: each column against its own
/// heap bound, LANES entries at a time. `ti` holds ‖u_i‖² of the rows of I.
#[allow(clippy::too_many_arguments)]
fn sweep_cols(
    avx2: bool,
    s: &[f32],
    ni: usize,
    i0: usize,
    ti: &[f32],
    hs: &mut HeapBlock,
    r0: usize,
    nc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only where AVX2 was detected at run time.
        return unsafe { sweep_cols_avx2(s, ni, i0, ti, hs, r0, nc) };
    }
    let _ = avx2;
    sweep_cols_body(s, ni, i0, ti, hs, r0, nc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sweep_cols_avx2(
    s: &[f32],
    ni: usize,
    i0: usize,
    ti: &[f32],
    hs: &mut HeapBlock,
    r0: usize,
    nc: usize,
) {
    sweep_cols_body(s, ni, i0, ti, hs, r0, nc)
}

#[inline(always)]
fn sweep_cols_body(
    s: &[f32],
    ni: usize,
    i0: usize,
    ti: &[f32],
    hs: &mut HeapBlock,
    r0: usize,
    nc: usize,
) {
    for c in 0..nc {
        let col = &s[c * ni..(c + 1) * ni];
        let r = r0 + c;
        let mut bound = hs.threshold(r);
        for (l, (cl, tl)) in col.chunks(LANES).zip(ti.chunks(LANES)).enumerate() {
            if !any_key_below(cl, tl, bound) {
                continue;
            }
            for (o, (&v, &t)) in cl.iter().zip(tl).enumerate() {
                let key = t - 2.0 * v;
                if key < bound {
                    hs.push(r, key, (i0 + l * LANES + o) as u32);
                    bound = hs.threshold(r);
                }
            }
        }
    }
}

/// Whether any key tj − 2·v of a lane is below its row's bound (branch-free, vectorised).
#[inline(always)]
fn any_below(col: &[f32], thr: &[f32], tj: f32) -> bool {
    if let (Ok(c), Ok(t)) = (
        <&[f32; LANES]>::try_from(col),
        <&[f32; LANES]>::try_from(thr),
    ) {
        let mut hit = 0u32;
        for i in 0..LANES {
            hit |= ((tj - 2.0 * c[i]) < t[i]) as u32;
        }
        hit != 0
    } else {
        col.iter().zip(thr).any(|(&v, &t)| tj - 2.0 * v < t)
    }
}

/// Whether any key t_r − 2·v_r of a lane is below one bound (branch-free, vectorised).
#[inline(always)]
fn any_key_below(col: &[f32], t: &[f32], bound: f32) -> bool {
    if let (Ok(c), Ok(t)) = (<&[f32; LANES]>::try_from(col), <&[f32; LANES]>::try_from(t)) {
        let mut hit = 0u32;
        for i in 0..LANES {
            hit |= ((t[i] - 2.0 * c[i]) < bound) as u32;
        }
        hit != 0
    } else {
        col.iter().zip(t).any(|(&v, &tt)| tt - 2.0 * v < bound)
    }
}

/// Exact re-ranking of the candidates in f64 (ties to the smaller index): the k nearest of each row, and
/// the rows `proven(q, kth, τ)` could not certify (it answers whether every row with a key ≥ τ is
/// farther than the k-th exact distance `kth`). With `early`, candidates are taken in key order and the
/// re-rank stops as soon as the rest are proven farther (the projected plan, with its larger candidate
/// sets).
fn rerank_blocks(
    heaps: Vec<Mutex<HeapBlock>>,
    k: usize,
    exact: &Exact<'_>,
    proven: &(dyn Fn(usize, f64, f32) -> bool + Sync),
    early: bool,
    offset: usize,
) -> (Vec<u32>, Vec<f64>, Vec<usize>) {
    let blocks: Vec<HeapBlock> = heaps
        .into_iter()
        .map(|h| h.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    let n: usize = blocks.iter().map(HeapBlock::rows).sum();
    // Written in place, block by block (every block but the last holds BLOCK rows).
    let mut indices = vec![0u32; n * k];
    let mut distances = vec![0f64; n * k];
    let failed: Vec<usize> = blocks
        .into_par_iter()
        .zip(indices.par_chunks_mut(BLOCK * k))
        .zip(distances.par_chunks_mut(BLOCK * k))
        .enumerate()
        .flat_map_iter(|(b, ((hs, idx), dist))| {
            let s = offset + b * BLOCK;
            let mut failed = Vec::new();
            let mut best: Vec<(f64, u32)> = Vec::new();
            let mut order: Vec<(f32, u32)> = Vec::new();
            for r in 0..hs.rows() {
                let qi = s + r;
                if early {
                    // Candidates in key order: once the rest are proven farther than the k-th exact
                    // distance found so far, no later candidate can enter.
                    order.clear();
                    order.extend_from_slice(hs.items(r));
                    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    best.clear();
                    for &(_, j) in order.iter().take(AHEAD) {
                        exact.prefetch(j as usize);
                    }
                    let mut kth = f64::INFINITY;
                    for (a, &(key, j)) in order.iter().enumerate() {
                        if let Some(&(_, next)) = order.get(a + AHEAD) {
                            exact.prefetch(next as usize);
                        }
                        if best.len() >= k && proven(qi, kth, key) {
                            break;
                        }
                        best.push((exact.dist(qi, j as usize), j));
                        if best.len() >= k {
                            best.sort_unstable_by(by_distance);
                            best.truncate(k);
                            kth = best[k - 1].0;
                        }
                    }
                    best.sort_unstable_by(by_distance);
                } else {
                    rerank(exact, qi, hs.items(r).iter().map(|x| x.1), k, &mut best);
                }
                for (slot, &(dd, j)) in best.iter().take(k).enumerate() {
                    idx[r * k + slot] = j;
                    dist[r * k + slot] = dd;
                }
                let kth = best.get(k - 1).map_or(f64::INFINITY, |e| e.0);
                if !proven(qi, kth, hs.threshold(r)) {
                    failed.push(qi);
                }
            }
            failed
        })
        .collect();
    (indices, distances, failed)
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

    /// Rows near a 3-dimensional subspace of R^24, with duplicates across blocks.
    fn low_rank(n: usize, noise: f32, seed: u64) -> Matrix {
        let mut r = Rng::new(seed);
        let d = 24;
        let basis: Vec<f32> = (0..3 * d).map(|_| r.normal() as f32).collect();
        let mut v = vec![0f32; n * d];
        for row in v.chunks_exact_mut(d) {
            let l: Vec<f32> = (0..3).map(|_| r.normal() as f32).collect();
            for (c, x) in row.iter_mut().enumerate() {
                *x = (0..3).map(|a| l[a] * basis[a * d + c]).sum::<f32>()
                    + noise * r.normal() as f32;
            }
        }
        let row = v[7 * d..8 * d].to_vec();
        v[1900 * d..1901 * d].copy_from_slice(&row);
        Matrix::from_vec(n, d, v, "low-rank").unwrap()
    }

    #[test]
    fn projected_plan_is_exact_with_and_without_fallbacks() {
        let m = low_rank(2500, 0.05, 31);
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let b = brute_force_knn(&m, 5, metric).unwrap();
            // Generous candidates (few fallbacks), starved candidates (many), a one-column projection.
            for (p, cand) in [(3, 60), (3, 5), (1, 8), (6, 20)] {
                let g =
                    exact_knn_self_with(&m, 5, metric, None, Plan::Projected { p, cand }).unwrap();
                assert_eq!(g.indices, b.indices, "{metric:?} p {p} cand {cand}");
                for (x, y) in g.distances.iter().zip(&b.distances) {
                    assert!((x - y).abs() <= 1e-12 * y.max(1e-300), "{x} {y}");
                }
            }
        }
    }

    #[test]
    fn projected_plan_is_exact_on_tight_clusters_far_out() {
        // Low-rank rows plus 60 rows within 1e-4 of a point of norm about 300: the projection's rounding
        // cannot rank them, so the certificate must send them to the range pass.
        let base = low_rank(2500, 0.05, 12);
        let d = base.cols();
        let mut v = base.as_slice().to_vec();
        let mut r = Rng::new(13);
        let centre: Vec<f32> = base.row(5).iter().map(|&x| x * 100.0).collect();
        for i in 0..60 {
            let row = 40 * i + 3;
            for c in 0..d {
                v[row * d + c] = centre[c] + 1e-4 * r.normal() as f32;
            }
        }
        let m = Matrix::from_vec(2500, d, v, "clusters").unwrap();
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let b = brute_force_knn(&m, 10, metric).unwrap();
            for (p, cand) in [(3, 60), (3, 12)] {
                let g =
                    exact_knn_self_with(&m, 10, metric, None, Plan::Projected { p, cand }).unwrap();
                assert_eq!(g.indices, b.indices, "{metric:?} p {p} cand {cand}");
                if cand < 60 {
                    // Fewer candidates than the cluster has rows: its rows cannot all be proven.
                    assert!(g.certificate.recomputed >= 10, "{:?}", g.certificate);
                }
                assert_eq!(g.certificate.projected, 2500);
            }
        }
    }

    #[test]
    fn pilot_picks_the_projection_for_low_rank_data_only() {
        let m = low_rank(9000, 0.01, 5);
        let (plan, _) = choose_plan(&m, 10, 18).unwrap();
        assert!(matches!(plan, Plan::Projected { .. }), "{plan:?}");
        let g = exact_knn_self(&m, 10, Metric::Euclidean, None).unwrap();
        let full = exact_knn_self_with(&m, 10, Metric::Euclidean, None, Plan::Full).unwrap();
        assert_eq!(g.indices, full.indices);
        assert_eq!(g.distances, full.distances);
        // Isotropic data: no projection can bound distances tightly.
        let mut r = Rng::new(6);
        let v: Vec<f32> = (0..9000 * 24).map(|_| r.normal() as f32).collect();
        let iso = Matrix::from_vec(9000, 24, v, "iso").unwrap();
        assert_eq!(choose_plan(&iso, 10, 18).unwrap().0, Plan::Full);
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
