//! Measures on L2-normalised rows: coding rate, anisotropy and rogue dimensions, in one f64 pass.
use faer::Mat;

use super::RogueDimension;
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::linalg;

const CHUNK: usize = 1024;

/// Sums over the unit rows u_i = x_i/‖x_i‖ and the coding rate.
#[derive(Clone, Debug)]
pub struct UnitRowStats {
    /// Rows with a direction (all-zero rows are left out).
    pub n: usize,
    /// All-zero rows left out: they have no direction.
    pub zero_rows: usize,
    /// Σ_i u_i.
    pub sum: Vec<f64>,
    /// Σ_i u_ij² per column.
    pub sum_sq: Vec<f64>,
    /// (‖Σu_i‖² − n) / (n(n−1)).
    pub anisotropy: f64,
    /// ½ logdet(I + d/(n ε²) ZᵀZ).
    pub coding_rate: f64,
    /// Which determinant was computed: "d x d" or "n x n".
    pub coding_rate_form: &'static str,
}

/// The unit rows of rows start..stop into `out`, skipping all-zero rows (common in ReLU and SAE
/// activations: they have no direction); returns how many rows were kept.
fn unit_rows(m: &Matrix, start: usize, stop: usize, out: &mut Vec<f64>) -> usize {
    let d = m.cols();
    out.clear();
    let mut row = vec![0.0f64; d];
    for i in start..stop {
        m.row_f64_into(i, &mut row);
        let s: f64 = row.iter().map(|v| v * v).sum();
        if s > 0.0 {
            let inv = 1.0 / s.sqrt();
            out.extend(row.iter().map(|v| v * inv));
        }
    }
    out.len() / d.max(1)
}

/// One pass over the rows: unit-row sums, anisotropy and the coding rate with distortion ε².
pub fn unit_row_stats(m: &Matrix, eps2: f64) -> Result<UnitRowStats> {
    let (n, d) = (m.rows(), m.cols());
    let n_chunks = n.div_ceil(CHUNK);
    let use_dd = d <= n;
    type Part = (Vec<f64>, Vec<f64>, Option<Mat<f64>>, usize);
    let chunk = |c: usize| -> Part {
        let (s, e) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
        let mut buf = Vec::with_capacity((e - s) * d);
        let kept = unit_rows(m, s, e, &mut buf);
        let mut sum = vec![0.0; d];
        let mut sq = vec![0.0; d];
        for row in buf.chunks_exact(d) {
            for j in 0..d {
                sum[j] += row[j];
                sq[j] += row[j] * row[j];
            }
        }
        let g = if use_dd {
            let mut acc = Mat::<f64>::zeros(d, d);
            linalg::accumulate_gram_rows(acc.as_mut(), &buf, kept, d);
            Some(acc)
        } else {
            None
        };
        (sum, sq, g, kept)
    };
    let merge = |a: Part, b: Part| -> Part {
        let (mut sum, mut sq, g, k1) = a;
        let (s2, q2, g2, k2) = b;
        sum.iter_mut().zip(&s2).for_each(|(x, y)| *x += y);
        sq.iter_mut().zip(&q2).for_each(|(x, y)| *x += y);
        let g = match (g, g2) {
            (Some(x), Some(y)) => Some(x + y),
            (x, y) => x.or(y),
        };
        (sum, sq, g, k1 + k2)
    };
    // An empty part, so that leaves and merges need no special first case.
    let empty = || -> Part { (vec![0.0; d], vec![0.0; d], None, 0) };
    let (sum, sum_sq, gram, kept) = linalg::tree_fold(
        n_chunks,
        1,
        &empty,
        &|acc: Part, c| merge(acc, chunk(c)),
        &merge,
    );
    if kept == 0 {
        return Err(Error::data(
            m.name(),
            format!("all {n} rows are all zeros, so none has a direction"),
            "pass rows that are not all zero",
        ));
    }
    let zero_rows = n - kept;
    let n = kept;
    let nf = n as f64;
    let s2: f64 = sum.iter().map(|v| v * v).sum();
    let anisotropy = if n > 1 {
        (s2 - nf) / (nf * (nf - 1.0))
    } else {
        f64::NAN
    };
    let (eig, form) = if use_dd {
        let mut g = gram.unwrap_or_else(|| Mat::zeros(d, d));
        linalg::symmetrize_lower(&mut g);
        (linalg::sym_eigenvalues_desc(g.as_ref())?, "d x d")
    } else {
        let mut buf = Vec::with_capacity(n * d);
        unit_rows(m, 0, m.rows(), &mut buf);
        let z = linalg::row_major(&buf, n, d);
        let mut g = Mat::<f64>::zeros(n, n);
        linalg::gemm(g.as_mut(), false, z, z.transpose(), 1.0, true);
        (linalg::sym_eigenvalues_desc(g.as_ref())?, "n x n")
    };
    let c = d as f64 / (nf * eps2);
    let coding_rate = 0.5 * eig.iter().map(|&l| (c * l.max(0.0)).ln_1p()).sum::<f64>();
    Ok(UnitRowStats {
        n,
        zero_rows,
        sum,
        sum_sq,
        anisotropy,
        coding_rate,
        coding_rate_form: form,
    })
}

/// Each dimension's contribution to the mean cosine of distinct unit rows, ((Σ_i u_ij)² − Σ_i u_ij²) /
/// (n(n−1)), from the sums over n unit rows; the `top` largest (signed, largest first, lower index on ties),
/// with their shares of `anisotropy`.
pub fn rogue_dimensions(
    sum: &[f64],
    sum_sq: &[f64],
    n: usize,
    anisotropy: f64,
    top: usize,
) -> Vec<RogueDimension> {
    let nf = n as f64;
    let denom = nf * (nf - 1.0);
    let mut v: Vec<RogueDimension> = sum
        .iter()
        .zip(sum_sq)
        .enumerate()
        .map(|(j, (s, q))| {
            let contribution = (s * s - q) / denom;
            RogueDimension {
                dim: j,
                contribution,
                share: contribution / anisotropy,
            }
        })
        .collect();
    v.sort_by(|a, b| {
        b.contribution
            .total_cmp(&a.contribution)
            .then(a.dim.cmp(&b.dim))
    });
    v.truncate(top);
    v
}

impl UnitRowStats {
    /// The `top` dimensions with the largest contribution to the anisotropy (signed, largest first).
    pub fn rogue(&self, top: usize) -> Vec<RogueDimension> {
        rogue_dimensions(&self.sum, &self.sum_sq, self.n, self.anisotropy, top)
    }

    /// Σ_j contribution_j (equals the anisotropy).
    pub fn contributions_sum(&self) -> f64 {
        let nf = self.n as f64;
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, q)| (s * s - q) / (nf * (nf - 1.0)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn anisotropy_matches_all_pairs_and_coding_rate_forms_agree() {
        let mut r = Rng::new(4);
        for (n, d) in [(40usize, 6usize), (7, 12)] {
            let v: Vec<f32> = (0..n * d).map(|_| r.normal() as f32 + 0.3).collect();
            let m = Matrix::from_vec(n, d, v, "t").unwrap();
            let st = unit_row_stats(&m, 0.5).unwrap();
            // Brute force mean cosine over i != j.
            let mut s = 0.0;
            for i in 0..n {
                for j in 0..n {
                    if i != j {
                        let (a, b) = (m.row(i), m.row(j));
                        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
                        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                        s += dot / (na * nb);
                    }
                }
            }
            let brute = s / (n * (n - 1)) as f64;
            assert!(
                (st.anisotropy - brute).abs() < 1e-12,
                "{} {}",
                st.anisotropy,
                brute
            );
            assert!((st.contributions_sum() - st.anisotropy).abs() < 1e-12);
            // Coding rate by the other form: n x n Gram of unit rows.
            let mut z = Vec::new();
            unit_rows(&m, 0, n, &mut z);
            let zm = linalg::row_major(&z, n, d);
            let (big, other) = if d <= n {
                let mut g = Mat::<f64>::zeros(n, n);
                linalg::gemm(g.as_mut(), false, zm, zm.transpose(), 1.0, false);
                (g, "n")
            } else {
                let mut g = Mat::<f64>::zeros(d, d);
                linalg::gemm(g.as_mut(), false, zm.transpose(), zm, 1.0, false);
                (g, "d")
            };
            let ev = linalg::sym_eigenvalues_desc(big.as_ref()).unwrap();
            let c = d as f64 / (n as f64 * 0.5);
            let cr: f64 = 0.5 * ev.iter().map(|l| (c * l.max(0.0)).ln_1p()).sum::<f64>();
            assert!(
                (cr - st.coding_rate).abs() < 1e-10 * cr.abs(),
                "{other}: {cr} {}",
                st.coding_rate
            );
        }
    }
}
