//! Measures on L2-normalised rows: coding rate, anisotropy and rogue dimensions, in one f64 pass.
use super::RogueDimension;
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::linalg;
use crate::moments;
use crate::progress::Silent;

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
    /// ½ logdet(I + d/(n ε²) ZᵀZ) and which of the two equal determinants was computed ("d x d" or
    /// "n x n"); None when the pass did not take the unit rows' Gram matrix.
    pub coding_rate: Option<(f64, &'static str)>,
}

/// One pass over the rows: unit-row sums, anisotropy and the coding rate with distortion ε².
pub fn unit_row_stats(m: &Matrix, eps2: f64) -> Result<UnitRowStats> {
    let cfg = moments::PassConfig {
        rows: false,
        unit_rows: true,
        unit_gram: true,
        row_hashes: false,
        chunk_rows: None,
    };
    let mom = moments::moments(m, &cfg, &Silent)?;
    UnitRowStats::from_moments(&mom, m.name(), eps2)
}

impl UnitRowStats {
    /// Anisotropy and the coding rate from the unit-row sums of a pass.
    pub fn from_moments(mom: &moments::Moments, name: &str, eps2: f64) -> Result<UnitRowStats> {
        let us = mom
            .unit
            .as_ref()
            .expect("the pass was asked for the unit rows");
        let (total, d) = (mom.n, mom.d);
        if us.n == 0 {
            return Err(Error::data(
                name,
                format!("all {total} rows are all zeros, so none has a direction"),
                "pass rows that are not all zero",
            ));
        }
        let n = us.n;
        let nf = n as f64;
        let s2: f64 = us.sum.iter().map(|v| v * v).sum();
        let anisotropy = if n > 1 {
            (s2 - nf) / (nf * (nf - 1.0))
        } else {
            f64::NAN
        };
        let gram = match (&us.gram, &us.gram_n) {
            (Some(g), _) => Some((g, "d x d")),
            (None, Some(g)) => Some((g, "n x n")),
            (None, None) => None,
        };
        let c = d as f64 / (nf * eps2);
        let coding_rate = match gram {
            Some((g, form)) => {
                let eig = linalg::sym_eigenvalues_desc(g.as_ref())?;
                let value = 0.5 * eig.iter().map(|&l| (c * l.max(0.0)).ln_1p()).sum::<f64>();
                Some((value, form))
            }
            None => None,
        };
        Ok(UnitRowStats {
            n,
            zero_rows: us.zero_rows,
            sum: us.sum.clone(),
            sum_sq: us.sum_sq.clone(),
            anisotropy,
            coding_rate,
        })
    }
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
    use faer::Mat;

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
            let x: Vec<f64> = m.as_slice().iter().map(|&v| v as f64).collect();
            moments::unit_rows_into(&x, d, &mut z);
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
            let (value, _) = st.coding_rate.unwrap();
            assert!(
                (cr - value).abs() < 1e-10 * cr.abs(),
                "{other}: {cr} {value}"
            );
        }
    }
}
