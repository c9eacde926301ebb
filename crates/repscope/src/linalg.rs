//! The one place that talks to faer: f64 accumulations of f32 data and symmetric eigenproblems.
//! faer's API moves between releases; keeping it here keeps the rest of the engine stable.
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;

use crate::data::Matrix;
use crate::error::{Error, Result};

/// Rows converted to f64 at a time when accumulating.
const CHUNK: usize = 2048;

/// Column means in f64.
pub fn column_means(m: &Matrix) -> Vec<f64> {
    let d = m.cols();
    let n = m.rows();
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
        .reduce(
            || vec![0.0f64; d],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    sums.into_iter().map(|s| s / n as f64).collect()
}

/// Σ (x_i − shift)(x_i − shift)ᵀ over the rows, in f64 (d × d). Chunks of rows are widened to f64 and
/// multiplied with faer; partial sums are added across threads.
pub fn scatter_matrix(m: &Matrix, shift: Option<&[f64]>) -> Mat<f64> {
    let d = m.cols();
    let parts: Vec<Mat<f64>> = m
        .as_slice()
        .par_chunks(d * CHUNK)
        .map(|block| {
            let rows = block.len() / d;
            let mut w = vec![0.0f64; block.len()];
            for (dst, row) in w.chunks_exact_mut(d).zip(block.chunks_exact(d)) {
                match shift {
                    Some(mu) => {
                        for ((o, &v), &c) in dst.iter_mut().zip(row).zip(mu) {
                            *o = v as f64 - c;
                        }
                    }
                    None => {
                        for (o, &v) in dst.iter_mut().zip(row) {
                            *o = v as f64;
                        }
                    }
                }
            }
            let x = MatRef::from_row_major_slice(&w, rows, d);
            let mut acc = Mat::<f64>::zeros(d, d);
            matmul(
                acc.as_mut(),
                Accum::Replace,
                x.transpose(),
                x,
                1.0,
                Par::Seq,
            );
            acc
        })
        .collect();
    let mut total = Mat::<f64>::zeros(d, d);
    for p in parts {
        total += p;
    }
    total
}

/// The centred covariance (divided by n − 1) and the column means.
pub fn covariance(m: &Matrix) -> (Mat<f64>, Vec<f64>) {
    let mean = column_means(m);
    let mut s = scatter_matrix(m, Some(&mean));
    let denom = (m.rows().max(2) - 1) as f64;
    for j in 0..s.ncols() {
        for i in 0..s.nrows() {
            s[(i, j)] /= denom;
        }
    }
    (s, mean)
}

/// Eigenvalues of a symmetric matrix, largest first.
pub fn sym_eigenvalues_desc(a: MatRef<'_, f64>) -> Result<Vec<f64>> {
    let mut v = a
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Numerical {
            what: "symmetric eigenvalues".into(),
            problem: format!("{e:?}"),
        })?;
    v.reverse();
    Ok(v)
}

/// Eigenvalues (largest first) and eigenvectors (columns, same order) of a symmetric matrix.
pub fn sym_eigen_desc(a: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>)> {
    let e = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numerical {
            what: "symmetric eigendecomposition".into(),
            problem: format!("{e:?}"),
        })?;
    let n = a.nrows();
    let s = e.S();
    let u = e.U();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covariance_matches_direct_formula() {
        let data: Vec<f32> = vec![1.0, 2.0, 2.0, 1.0, 3.0, 5.0, 4.0, 3.0];
        let m = Matrix::from_vec(4, 2, data, "t").unwrap();
        let (c, mean) = covariance(&m);
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
