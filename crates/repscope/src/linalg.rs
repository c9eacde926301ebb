//! The one place that talks to faer: f64 accumulations of f32 data and symmetric eigenproblems.
//! faer's API moves between releases; keeping it here keeps the rest of the engine stable.
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::data::Matrix;
use crate::error::{Error, Result};

/// Rows converted to f64 at a time when accumulating.
const CHUNK: usize = 2048;

/// 1/‖row‖ in f64, None for an all-zero row. The inverse is taken in f64: that of a subnormal f32 norm is
/// beyond f32's range.
#[inline]
pub fn inverse_norm(row: &[f32]) -> Option<f64> {
    let s: f64 = row.iter().map(|&v| v as f64 * v as f64).sum();
    (s > 0.0).then(|| 1.0 / s.sqrt())
}

/// Scales the rows of `v` (row-major, width `d`) to unit length in place, each value multiplied in f64;
/// all-zero rows are left as they are, and the first of them is returned.
pub fn normalise_rows(v: &mut [f32], d: usize) -> Option<usize> {
    v.par_chunks_mut(d.max(1))
        .enumerate()
        .filter_map(|(i, row)| match inverse_norm(row) {
            Some(inv) => {
                row.iter_mut().for_each(|x| *x = (*x as f64 * inv) as f32);
                None
            }
            None => Some(i),
        })
        .min()
}

/// Column means in f64.
pub fn column_means(m: &Matrix) -> Vec<f64> {
    let d = m.cols();
    let n = m.rows();
    if let Some(v) = m.values_f64() {
        let sums = v
            .par_chunks(d * CHUNK)
            .map(|block| {
                let mut s = vec![0.0f64; d];
                for row in block.chunks_exact(d) {
                    for (a, &x) in s.iter_mut().zip(row) {
                        *a += x;
                    }
                }
                s
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(vec![0.0f64; d], |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            });
        return sums.into_iter().map(|s| s / n as f64).collect();
    }
    // Partial sums per fixed chunk, added in order: the same digits for any thread count.
    let sums = m
        .as_slice()
        .par_chunks(d * CHUNK)
        .map(|block| {
            let mut s = vec![0.0f64; d];
            for row in block.chunks_exact(d) {
                for (a, &v) in s.iter_mut().zip(row) {
                    *a += v as f64;
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0.0f64; d], |mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
            a
        });
    sums.into_iter().map(|s| s / n as f64).collect()
}

/// Folds the items 0..n into one state in parallel along a tree fixed by `n` alone: ranges are halved at
/// their midpoints down to `leaf` items, each leaf folds its items in order from `init()`, and halves are
/// merged left to right. Floating-point sums then come out identical for any thread count (rayon's own
/// `fold`/`reduce` group items by how work was stolen, which moves the last digits).
pub fn tree_fold<T, I, F, M>(n: usize, leaf: usize, init: &I, fold: &F, merge: &M) -> T
where
    T: Send,
    I: Fn() -> T + Sync,
    F: Fn(T, usize) -> T + Sync,
    M: Fn(T, T) -> T + Sync,
{
    fn go<T, I, F, M>(lo: usize, hi: usize, leaf: usize, init: &I, fold: &F, merge: &M) -> T
    where
        T: Send,
        I: Fn() -> T + Sync,
        F: Fn(T, usize) -> T + Sync,
        M: Fn(T, T) -> T + Sync,
    {
        if hi - lo <= leaf {
            return (lo..hi).fold(init(), fold);
        }
        let mid = lo + (hi - lo) / 2;
        let (a, b) = rayon::join(
            || go(lo, mid, leaf, init, fold, merge),
            || go(mid, hi, leaf, init, fold, merge),
        );
        merge(a, b)
    }
    go(0, n, leaf.max(1), init, fold, merge)
}

/// Σ (x_i − shift)(x_i − shift)ᵀ over the rows, in f64 (d × d). Chunks of rows are widened to f64 and
/// multiplied with faer; partial sums are added across threads.
pub fn scatter_matrix(m: &Matrix, shift: Option<&[f64]>) -> Mat<f64> {
    let (n, d) = (m.rows(), m.cols());
    let (total, _) = tree_fold(
        n.div_ceil(CHUNK),
        1,
        &|| (Mat::<f64>::zeros(d, d), Vec::new()),
        &|(mut acc, mut w): (Mat<f64>, Vec<f64>), b| {
            let (r0, r1) = (b * CHUNK, ((b + 1) * CHUNK).min(n));
            let rows = r1 - r0;
            w.clear();
            w.resize(rows * d, 0.0);
            for (i, dst) in w.chunks_exact_mut(d).enumerate() {
                m.row_f64_into(r0 + i, dst);
                if let Some(mu) = shift {
                    for (o, &c) in dst.iter_mut().zip(mu) {
                        *o -= c;
                    }
                }
            }
            let x = MatRef::from_row_major_slice(&w, rows, d);
            matmul(acc.as_mut(), Accum::Add, x.transpose(), x, 1.0, Par::Seq);
            (acc, w)
        },
        &|(a, w), (b, _)| (a + b, w),
    );
    total
}

/// Decompositions run on one thread. faer's parallel decompositions split their reductions by the number
/// of threads, which moves the last digits with the thread count; the products around them stay parallel
/// (their sums run in a fixed order over the inner dimension).
const DECOMPOSITION_PAR: Par = Par::Seq;

/// The eigenvalues (ascending) and, when asked, eigenvectors of a symmetric matrix, from its lower triangle.
fn sym_evd(a: MatRef<'_, f64>, vectors: bool) -> Result<(Diag<f64>, Option<Mat<f64>>)> {
    use faer::linalg::evd::{self, ComputeEigenvectors};
    let n = a.nrows();
    let compute = if vectors {
        ComputeEigenvectors::Yes
    } else {
        ComputeEigenvectors::No
    };
    let par = DECOMPOSITION_PAR;
    let mut buf = MemBuffer::new(evd::self_adjoint_evd_scratch::<f64>(
        n,
        compute,
        par,
        Default::default(),
    ));
    let mut s = Diag::<f64>::zeros(n);
    let mut u = vectors.then(|| Mat::<f64>::zeros(n, n));
    evd::self_adjoint_evd(
        a,
        s.as_mut(),
        u.as_mut().map(|u| u.as_mut()),
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .map_err(|e| Error::Numerical {
        what: "symmetric eigendecomposition".into(),
        problem: format!("{e:?}"),
    })?;
    Ok((s, u))
}

/// Eigenvalues of a symmetric matrix, largest first.
pub fn sym_eigenvalues_desc(a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    let (s, _) = sym_evd(a, false)?;
    let n = a.nrows();
    Ok((0..n).rev().map(|i| s[i]).collect())
}

/// Eigenvalues (largest first) and eigenvectors (columns, same order) of a symmetric matrix.
pub fn sym_eigen_desc(a: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>)> {
    let (s, u) = sym_evd(a, true)?;
    let u = u.expect("eigenvectors were asked for");
    let n = a.nrows();
    let vals: Vec<f64> = (0..n).rev().map(|i| s[i]).collect();
    let mut vecs = Mat::<f64>::zeros(n, n);
    for (dst, src) in (0..n).zip((0..n).rev()) {
        for i in 0..n {
            vecs[(i, dst)] = u[(i, src)];
        }
    }
    Ok((vals, vecs))
}

/// (Rows of `m` − `shift`) × `basis` in f32: `basis` is d × k column-major (f64, narrowed to f32), the
/// result n × k row-major. Rows are centred in f64 and multiplied in blocks through faer.
pub fn project_rows(m: &Matrix, shift: Option<&[f64]>, basis: &[f64], k: usize) -> Vec<f32> {
    let d = m.cols();
    let b32: Vec<f32> = basis.iter().map(|&v| v as f32).collect();
    let bmat = MatRef::from_column_major_slice(&b32, d, k);
    let mut out = vec![0f32; m.rows() * k];
    if k == 0 {
        return out;
    }
    out.par_chunks_mut(k * CHUNK)
        .zip(m.as_slice().par_chunks(d * CHUNK))
        .for_each(|(dst, block)| {
            let rows = block.len() / d;
            let x: Vec<f32> = match shift {
                Some(mu) => block
                    .chunks_exact(d)
                    .flat_map(|row| row.iter().zip(mu).map(|(&v, &c)| (v as f64 - c) as f32))
                    .collect(),
                None => block.to_vec(),
            };
            let xm = MatRef::from_row_major_slice(&x, rows, d);
            let om = MatMut::from_row_major_slice_mut(dst, rows, k);
            matmul(om, Accum::Replace, xm, bmat, 1.0f32, Par::Seq);
        });
    out
}

/// Mutable f64 view helper for callers that build matrices by hand.
pub fn mat_mut(data: &mut [f64], rows: usize, cols: usize) -> MatMut<'_, f64> {
    MatMut::from_column_major_slice_mut(data, rows, cols)
}

// ---------------------------------------------------------------------------------------------------------
// Wrappers used by the spectrum, class-geometry and similarity measures.

/// Whether a product may use all rayon threads or must stay on the calling thread.
fn par_of(parallel: bool) -> Par {
    if parallel {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// dst = alpha·lhs·rhs (or dst += alpha·lhs·rhs when `accumulate`), f64.
pub fn gemm(
    dst: MatMut<'_, f64>,
    accumulate: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
    parallel: bool,
) {
    let acc = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    matmul(dst, acc, lhs, rhs, alpha, par_of(parallel));
}

/// dst = alpha·lhs·rhs (or +=), f32 (for neighbour ranking only; exact values are recomputed in f64).
pub fn gemm_f32(
    dst: MatMut<'_, f32>,
    accumulate: bool,
    lhs: MatRef<'_, f32>,
    rhs: MatRef<'_, f32>,
    alpha: f32,
    parallel: bool,
) {
    let acc = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    matmul(dst, acc, lhs, rhs, alpha, par_of(parallel));
}

/// The lower triangle (diagonal included) of dst = lhs·rhs (or +=), when the product is known to be
/// symmetric (lhs·rhs = (lhs·rhs)ᵀ, e.g. Zᵀ·Z). Half the work of [`gemm`]; the strict upper triangle of dst
/// is left untouched.
pub fn gemm_lower(
    dst: MatMut<'_, f64>,
    accumulate: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    parallel: bool,
) {
    use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
    let acc = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    tri_matmul(
        dst,
        BlockStructure::TriangularLower,
        acc,
        lhs,
        BlockStructure::Rectangular,
        rhs,
        BlockStructure::Rectangular,
        1.0,
        par_of(parallel),
    );
}

/// A thin singular value decomposition A = U·diag(s)·Vᵀ, singular values largest first.
pub struct ThinSvd {
    /// m × min(m, n), orthonormal columns.
    pub u: Mat<f64>,
    /// Singular values, non-increasing.
    pub s: Vec<f64>,
    /// n × min(m, n), orthonormal columns.
    pub v: Mat<f64>,
}

/// The singular values (largest first) and, when asked, the thin singular vectors of a dense f64 matrix.
/// Singular values and, when asked, the thin U and V.
type SvdParts = (Vec<f64>, Option<(Mat<f64>, Mat<f64>)>);

fn svd(a: MatRef<'_, f64>, vectors: bool) -> Result<SvdParts> {
    use faer::linalg::svd::{self, ComputeSvdVectors};
    let (m, n) = a.shape();
    let k = m.min(n);
    let compute = if vectors {
        ComputeSvdVectors::Thin
    } else {
        ComputeSvdVectors::No
    };
    let par = DECOMPOSITION_PAR;
    let mut buf = MemBuffer::new(svd::svd_scratch::<f64>(
        m,
        n,
        compute,
        compute,
        par,
        Default::default(),
    ));
    let mut s = Diag::<f64>::zeros(k);
    let mut uv = vectors.then(|| (Mat::<f64>::zeros(m, k), Mat::<f64>::zeros(n, k)));
    let (u, v) = match uv.as_mut() {
        Some((u, v)) => (Some(u.as_mut()), Some(v.as_mut())),
        None => (None, None),
    };
    svd::svd(
        a,
        s.as_mut(),
        u,
        v,
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .map_err(|e| Error::Numerical {
        what: "singular value decomposition".into(),
        problem: format!("{e:?}"),
    })?;
    Ok(((0..k).map(|i| s[i]).collect(), uv))
}

/// Thin SVD of a dense f64 matrix.
pub fn thin_svd(a: MatRef<'_, f64>) -> Result<ThinSvd> {
    let (s, uv) = svd(a, true)?;
    let (u, v) = uv.expect("singular vectors were asked for");
    Ok(ThinSvd { u, s, v })
}

/// Singular values of a dense f64 matrix, largest first.
pub fn singular_values(a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    Ok(svd(a, false)?.0)
}

/// The rows of `m` widened to f64 (minus `shift` when given), as an n × d column-major matrix.
pub fn to_f64(m: &Matrix, shift: Option<&[f64]>) -> Mat<f64> {
    let (n, d) = (m.rows(), m.cols());
    let mut out = Mat::<f64>::zeros(n, d);
    for j in 0..d {
        let c = shift.map(|s| s[j]).unwrap_or(0.0);
        let col = out
            .col_mut(j)
            .try_as_col_major_mut()
            .expect("owned matrices are contiguous");
        let dst = col.as_slice_mut();
        match m.values_f64() {
            Some(v) => {
                for (i, o) in dst.iter_mut().enumerate() {
                    *o = v[i * d + j] - c;
                }
            }
            None => {
                for (i, o) in dst.iter_mut().enumerate() {
                    *o = m.as_slice()[i * d + j] as f64 - c;
                }
            }
        }
    }
    out
}

/// acc (lower triangle, diagonal included) += Bᵀ·B for a row-major f64 block B of `rows` × `cols`, the
/// product split across threads when `parallel`. Call [`symmetrize_lower`] once at the end.
pub fn accumulate_gram_rows(
    acc: MatMut<'_, f64>,
    block: &[f64],
    rows: usize,
    cols: usize,
    parallel: bool,
) {
    if rows == 0 {
        return;
    }
    let b = MatRef::from_row_major_slice(block, rows, cols);
    // Bᵀ is a column-major view of B and B itself the right operand: on 384 columns this is faster than
    // giving the right operand as a column-major (transposed) copy, whose copy costs more than it saves.
    gemm_lower(acc, true, b.transpose(), b, parallel);
}

/// acc += Aᵀ·B for row-major f64 blocks A (`rows` × `ca`) and B (`rows` × `cb`).
pub fn accumulate_cross_rows(
    acc: MatMut<'_, f64>,
    a: &[f64],
    b: &[f64],
    rows: usize,
    ca: usize,
    cb: usize,
) {
    let am = MatRef::from_row_major_slice(a, rows, ca);
    let bm = MatRef::from_row_major_slice(b, rows, cb);
    let mut bc = Mat::<f64>::zeros(rows, cb);
    bc.copy_from(bm);
    gemm(acc, true, am.transpose(), bc.as_ref(), 1.0, false);
}

/// Copies the strict lower triangle onto the upper one.
pub fn symmetrize_lower(a: &mut Mat<f64>) {
    let n = a.nrows();
    for j in 0..n {
        for i in j + 1..n {
            a[(j, i)] = a[(i, j)];
        }
    }
}

/// A row-major f64 slice viewed as a matrix.
pub fn row_major(data: &[f64], rows: usize, cols: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(data, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centred_scatter_matches_direct_formula() {
        let data: Vec<f32> = vec![1.0, 2.0, 2.0, 1.0, 3.0, 5.0, 4.0, 3.0];
        let m = Matrix::from_vec(4, 2, data, "t").unwrap();
        let mean = column_means(&m);
        let mut c = scatter_matrix(&m, Some(&mean));
        for j in 0..2 {
            for i in 0..2 {
                c[(i, j)] /= 3.0;
            }
        }
        assert!((mean[0] - 2.5).abs() < 1e-15 && (mean[1] - 2.75).abs() < 1e-15);
        // var(x) = ((1.5²)+(0.5²)+(0.5²)+(1.5²))/3 = 5/3
        assert!((c[(0, 0)] - 5.0 / 3.0).abs() < 1e-12);
        let cov01 = ((-1.5) * (-0.75) + (-0.5) * (-1.75) + 0.5 * 2.25 + 1.5 * 0.25) / 3.0;
        assert!((c[(0, 1)] - cov01).abs() < 1e-12 && (c[(1, 0)] - cov01).abs() < 1e-12);
        let ev = sym_eigenvalues_desc(c.as_ref()).unwrap();
        assert!(ev[0] >= ev[1]);
        assert!((ev[0] + ev[1] - (c[(0, 0)] + c[(1, 1)])).abs() < 1e-12);
    }
}
