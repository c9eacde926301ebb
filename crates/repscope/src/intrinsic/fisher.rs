//! Fisher separability (Albergante et al. 2019), as skdim 0.5's `FisherS` (which matches the authors'
//! MATLAB `SeparabilityAnalysis` to 1e-6): the rows are centred, projected on the principal directions
//! whose variance exceeds 1/`conditional_number` of the largest, whitened and put on the unit sphere; a
//! point x is Fisher-separable from y at level α when ⟨x, y⟩ < α⟨x, x⟩. The mean share p_α of points a
//! point is not separable from falls with the dimension n of a uniform sphere as
//! p_α = (1 − α²)^{(n−1)/2} / (α √(2π n)), which gives n = W₀(−ln(1 − α²)/(2π p_α² α²(1 − α²))) / (−ln(1 − α²))
//! per α (W₀ the principal Lambert W); the estimate is the n at the α nearest 0.9 × the largest α with a
//! value.
//!
//! The pairs are counted from blocked f64 products of the whitened rows, so memory is O(block · n), never
//! n × n.
use rayon::prelude::*;
use serde_json::json;

use super::Estimate;
use crate::data::Matrix;
use crate::decomposition::Principal;
use crate::error::{Error, Param, Result};

/// Rows of one block of the pair products.
const BLOCK: usize = 256;

/// FisherS.
#[derive(Clone, Debug)]
pub struct FisherS {
    /// Principal directions whose variance is below 1/conditional_number of the largest are left out.
    pub conditional_number: f64,
    /// Put the whitened rows on the unit sphere (skdim's default).
    pub project_on_sphere: bool,
    /// The separability levels, ascending in (0, 1).
    pub alphas: Vec<f64>,
    /// Clip the estimate at the number of columns.
    pub limit_maxdim: bool,
}

impl Default for FisherS {
    fn default() -> Self {
        FisherS {
            conditional_number: 10.0,
            project_on_sphere: true,
            alphas: default_alphas(),
            limit_maxdim: false,
        }
    }
}

/// skdim's `np.arange(0.6, 1, 0.02)`, as numpy fills it: 0.6 + i·δ with δ = (0.6 + 0.02) − 0.6 (not 0.02:
/// the last bits decide which α is nearest 0.9 × the largest when two are equally near).
pub fn default_alphas() -> Vec<f64> {
    let delta = (0.6 + 0.02) - 0.6;
    (0..20).map(|i| 0.6 + i as f64 * delta).collect()
}

/// The principal branch of the Lambert W function for x ≥ 0, by Halley's iteration.
pub fn lambert_w0(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let mut w = if x < 3.0 {
        x.ln_1p() * 0.8
    } else {
        let l = x.ln();
        l - l.ln()
    };
    for _ in 0..100 {
        let e = w.exp();
        let f = w * e - x;
        let step = f / (e * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0));
        w -= step;
        if step.abs() <= 1e-15 * w.abs().max(1e-300) {
            break;
        }
    }
    w
}

/// What FisherS found.
#[derive(Clone, Debug)]
pub struct FisherFit {
    pub dimension: f64,
    /// The dimension at every α (NaN where no pair is inseparable).
    pub n_alpha: Vec<f64>,
    /// The mean share p_α of points each point is not separable from.
    pub p_alpha: Vec<f64>,
    /// The share of points separable from every other point, per α.
    pub separable_fraction: Vec<f64>,
    /// Principal directions kept.
    pub kept: usize,
}

impl FisherS {
    fn check(&self) -> Result<()> {
        if !(self.conditional_number.is_finite() && self.conditional_number > 1.0) {
            return Err(Error::range(
                Param::Alpha,
                self.conditional_number,
                "a number above 1 (10 by default)",
                "FisherS keeps the principal directions above 1/conditional_number of the largest variance",
            ));
        }
        if self.alphas.is_empty()
            || self.alphas.iter().any(|&a| !(a > 0.0 && a < 1.0))
            || self.alphas.windows(2).any(|w| w[1] <= w[0])
        {
            return Err(Error::param(
                Param::Alpha,
                "the separability levels must be ascending values in (0, 1)",
                "use the default 0.60, 0.62, …, 0.98",
            ));
        }
        Ok(())
    }

    /// Fits on the rows of `data`, whose principal directions `pc` holds (one decomposition, shared with
    /// the PCA rules).
    pub fn fit_all(&self, data: &Matrix, pc: &Principal) -> Result<FisherFit> {
        self.check()?;
        let n = data.rows();
        if n < 3 {
            return Err(Error::data(
                data.name(),
                format!("FisherS needs at least 3 rows, got {n}"),
                "pass more rows",
            ));
        }
        let top = pc.eigenvalues.first().copied().unwrap_or(0.0);
        if top <= 0.0 {
            return Err(Error::data(
                data.name(),
                "the data has zero variance",
                "check the input",
            ));
        }
        let kept = pc
            .eigenvalues
            .iter()
            .take_while(|&&l| l / top > 1.0 / self.conditional_number)
            .count();
        // Whitened scores: (x − μ)·v_c / √λ_c for the kept directions.
        let d = data.cols();
        let basis = pc.basis(kept);
        let inv_sd: Vec<f64> = pc.eigenvalues[..kept]
            .iter()
            .map(|l| 1.0 / l.sqrt())
            .collect();
        let z: Vec<Vec<f64>> = (0..n)
            .into_par_iter()
            .map_init(
                || vec![0f64; d],
                |row, i| {
                    data.row_f64_into(i, row);
                    for (x, m) in row.iter_mut().zip(&pc.mean) {
                        *x = *x * pc.scale - m;
                    }
                    (0..kept)
                        .map(|c| {
                            let v = &basis[c * d..(c + 1) * d];
                            row.iter().zip(v).map(|(x, y)| x * y).sum::<f64>() * inv_sd[c]
                        })
                        .collect()
                },
            )
            .collect();
        let mut zf = vec![0f64; n * kept];
        for (i, r) in z.iter().enumerate() {
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            let f = if self.project_on_sphere {
                if norm == 0.0 {
                    return Err(Error::data(
                        data.name(),
                        format!("row {i} is at the mean of the data, so it has no direction on the sphere"),
                        "remove it, or set project_on_sphere off",
                    ));
                }
                1.0 / norm
            } else {
                1.0
            };
            zf[i * kept..(i + 1) * kept]
                .iter_mut()
                .zip(r)
                .for_each(|(o, x)| *o = x * f);
        }
        let na = self.alphas.len();
        // Per block of rows: a histogram over pairs of how many α each ⟨x, y⟩/⟨x, x⟩ reaches, and each row's
        // largest ratio (a row is separable from all others at α when that is below α).
        let zm = crate::linalg::row_major(&zf, n, kept);
        let sq: Vec<f64> = (0..n)
            .map(|i| zf[i * kept..(i + 1) * kept].iter().map(|x| x * x).sum())
            .collect();
        let parts: Vec<(Vec<u64>, Vec<f64>)> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let (i0, i1) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
                let mut prod = faer::Mat::<f64>::zeros(i1 - i0, n);
                crate::linalg::gemm(
                    prod.as_mut(),
                    false,
                    zm.subrows(i0, i1 - i0),
                    zm.transpose(),
                    1.0,
                    false,
                );
                let mut hist = vec![0u64; na + 1];
                let mut most = vec![f64::NEG_INFINITY; i1 - i0];
                for (a, i) in (i0..i1).enumerate() {
                    for j in 0..n {
                        if j == i {
                            continue;
                        }
                        let v = prod[(a, j)] / sq[i];
                        most[a] = most[a].max(v);
                        hist[self.alphas.partition_point(|&al| al <= v)] += 1;
                    }
                }
                (hist, most)
            })
            .collect();
        let mut hist = vec![0u64; na + 1];
        let mut most = Vec::with_capacity(n);
        for (h, m) in parts {
            hist.iter_mut().zip(h).for_each(|(a, b)| *a += b);
            most.extend(m);
        }
        // Pairs with a ratio ≥ α_a: those whose histogram bin is above a.
        let pairs = (n * (n - 1)) as f64;
        let mut above = 0u64;
        let mut p_alpha = vec![0.0; na];
        for a in (0..na).rev() {
            above += hist[a + 1];
            p_alpha[a] = above as f64 / pairs;
        }
        let separable_fraction: Vec<f64> = self
            .alphas
            .iter()
            .map(|&al| most.iter().filter(|&&m| m < al).count() as f64 / n as f64)
            .collect();
        let n_alpha: Vec<f64> = self
            .alphas
            .iter()
            .zip(&p_alpha)
            .map(|(&al, &p)| {
                if p == 0.0 {
                    return f64::NAN;
                }
                let a2 = al * al;
                let w = (1.0 - a2).ln();
                let v =
                    lambert_w0(-w / (2.0 * std::f64::consts::PI * p * p * a2 * (1.0 - a2))) / -w;
                if v.is_finite() {
                    v
                } else {
                    f64::NAN
                }
            })
            .collect();
        let valid: Vec<usize> = (0..na).filter(|&a| n_alpha[a].is_finite()).collect();
        let Some(alpha_max) = valid.iter().map(|&a| self.alphas[a]).reduce(f64::max) else {
            return Err(Error::data(
                data.name(),
                "every point is separable from every other at every α, so no dimension can be read",
                "use smaller separability levels",
            ));
        };
        let alpha_ref = 0.9 * alpha_max;
        let nearest = self
            .alphas
            .iter()
            .map(|a| (a - alpha_ref).abs())
            .fold(f64::INFINITY, f64::min);
        let picked: Vec<f64> = valid
            .iter()
            .filter(|&&a| (self.alphas[a] - alpha_ref).abs() == nearest)
            .map(|&a| n_alpha[a])
            .collect();
        let Some(mut dimension) = picked.into_iter().reduce(f64::max) else {
            return Err(Error::data(
                data.name(),
                format!("no dimension at the separability level nearest {alpha_ref:.3}"),
                "use a finer set of separability levels",
            ));
        };
        if self.limit_maxdim {
            dimension = dimension.min(d as f64);
        }
        Ok(FisherFit {
            dimension,
            n_alpha,
            p_alpha,
            separable_fraction,
            kept,
        })
    }

    /// The estimate.
    pub fn fit(&self, data: &Matrix, pc: &Principal) -> Result<Estimate> {
        let f = self.fit_all(data, pc)?;
        Ok(Estimate {
            estimator: "fisher_s".into(),
            variant: format!(
                "Fisher separability on {} whitened principal directions{}",
                f.kept,
                if self.project_on_sphere {
                    ", projected on the sphere"
                } else {
                    ""
                }
            ),
            value: f.dimension,
            stderr: None,
            params: json!({
                "conditional_number": self.conditional_number,
                "project_on_sphere": self.project_on_sphere,
                "limit_maxdim": self.limit_maxdim,
                "alphas": self.alphas,
                "n_alpha": f.n_alpha.iter().map(|v| if v.is_finite() { json!(v) } else { json!(null) }).collect::<Vec<_>>(),
                "p_alpha": f.p_alpha,
                "separable_fraction": f.separable_fraction,
                "kept_directions": f.kept,
            }),
            notes: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambert_w_inverts_w_exp_w() {
        for x in [1e-12, 0.1, 1.0, std::f64::consts::E, 10.0, 1e6, 1e300] {
            let w = lambert_w0(x);
            let back = w * w.exp();
            assert!((back - x).abs() <= 1e-13 * x, "{x}: {w} gives {back}");
        }
        assert!((lambert_w0(1.0) - 0.567_143_290_409_783_8).abs() < 1e-15);
    }
}
