//! CCA, SVCCA and PWCCA through orthonormal bases of the centred column spaces (METRICS.md).
//!
//! Each side is centred and decomposed once, X_c = U S Vᵀ (thin SVD, f64). The basis keeps the columns of U
//! whose singular value exceeds max(n, d)·ε·σ₁, so constant or collinear columns (LayerNorm outputs) do not
//! enter as noise directions, as they would with a plain QR. The canonical correlations are the singular
//! values of Q_XᵀQ_Y.
//!
//! Two routes give the sides. The SVD route decomposes the centred data in memory. The covariance route
//! reads only the joint scatter of [X | Y] from one streaming pass and decomposes each side in the
//! coordinates of the joint eigenbasis ([`Side::pair_from_scatter`]); it gives the same correlations for
//! directions well above the noise of the scatter (σ > √(max(n, D)·ε)·σ₁).
use faer::Mat;
use serde::Serialize;

use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::linalg;

/// Inputs larger than this many values per side (n·d) are refused: the SVD holds them densely in f64.
pub const CCA_MAX_VALUES: usize = 60_000_000;

/// How the sides of the CCA family were decomposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CcaRoute {
    /// Thin SVD of each centred side, in memory (the more precise).
    Svd,
    /// Eigendecomposition of the joint scatter from one streaming pass.
    Covariance,
}

impl CcaRoute {
    /// The SVD route when both sides fit its limit, else the covariance route.
    pub fn auto(n: usize, dx: usize, dy: usize) -> CcaRoute {
        if n.saturating_mul(dx.max(dy)) <= CCA_MAX_VALUES {
            CcaRoute::Svd
        } else {
            CcaRoute::Covariance
        }
    }
}

/// A centred side and its SVD.
pub struct Side {
    pub n: usize,
    pub d: usize,
    pub svd: linalg::ThinSvd,
    /// Columns of U kept by the rank tolerance.
    pub rank: usize,
}

impl Side {
    /// Centres and decomposes `m` (the SVD route).
    pub fn new(m: &Matrix) -> Result<Side> {
        let (n, d) = (m.rows(), m.cols());
        if n.saturating_mul(d) > CCA_MAX_VALUES {
            return Err(Error::data(
                m.name(),
                format!("CCA holds the {n} × {d} centred data densely in f64, more than the limit of {CCA_MAX_VALUES} values"),
                "subsample rows (CCA is usually stable with a few thousand), use the covariance route, or skip the CCA family",
            ));
        }
        let mean = linalg::column_means(m);
        let a = linalg::to_f64(m, Some(&mean));
        Side::decompose(a.as_ref(), n, m.name(), (n.max(d) as f64) * f64::EPSILON)
    }

    /// Decomposes a side given in coordinates `a` of an orthonormal basis of n-vectors (the centred data
    /// itself, or its coordinates in the joint basis of the covariance route). Singular values at or below
    /// `rel_tol`·σ₁ are left out of the basis.
    fn decompose(a: faer::MatRef<'_, f64>, n: usize, name: &str, rel_tol: f64) -> Result<Side> {
        let d = a.ncols();
        let svd = linalg::thin_svd(a)?;
        let s1 = svd.s.first().copied().unwrap_or(0.0);
        let tol = rel_tol * s1;
        let rank = svd.s.iter().filter(|&&s| s > tol).count();
        if rank == 0 {
            return Err(Error::data(
                name,
                "every column is constant, so there is no column space to correlate",
                "check that the right array was passed",
            ));
        }
        Ok(Side { n, d, svd, rank })
    }

    /// Both sides from the centred joint scatter C = [X_c | Y_c]ᵀ[X_c | Y_c] (D × D, the first `dx`
    /// columns X) of n rows: the covariance route, which streams. With C = W Λ Wᵀ, [X_c | Y_c] = U Λ^½ Wᵀ for
    /// an orthonormal U (n × D) that is never formed; each side is decomposed in the coordinates Λ^½ W_sideᵀ,
    /// which have the singular values and right vectors of the centred data, and whose left vectors give
    /// Q_XᵀQ_Y exactly as the SVD route does. Eigenvalues carry an absolute error of about ε·λ₁, so the
    /// rank tolerance is on λ: λ > max(n, D)·ε·λ₁, that is σ > √(max(n, D)·ε)·σ₁.
    pub fn pair_from_scatter(
        scatter: &Mat<f64>,
        dx: usize,
        n: usize,
        names: (&str, &str),
    ) -> Result<(Side, Side)> {
        let dd = scatter.nrows();
        let (vals, vecs) = linalg::sym_eigen_desc(scatter.as_ref())?;
        let rel = (n.max(dd) as f64) * f64::EPSILON;
        let cut = rel * vals.first().copied().unwrap_or(0.0).max(0.0);
        let kept: Vec<usize> = (0..dd)
            .filter(|&t| vals[t] > cut && vals[t] > 0.0)
            .collect();
        let coords = |lo: usize, hi: usize| {
            Mat::from_fn(kept.len().max(1), hi - lo, |r, j| match kept.get(r) {
                Some(&t) => vals[t].sqrt() * vecs[(lo + j, t)],
                None => 0.0,
            })
        };
        let (bx, by) = (coords(0, dx), coords(dx, dd));
        let tol = rel.sqrt();
        Ok((
            Side::decompose(bx.as_ref(), n, names.0, tol)?,
            Side::decompose(by.as_ref(), n, names.1, tol)?,
        ))
    }

    /// The first `k` columns of U.
    fn basis(&self, k: usize) -> Mat<f64> {
        Mat::from_fn(self.svd.u.nrows(), k, |i, j| self.svd.u[(i, j)])
    }

    /// The smallest m whose cumulative σ² reaches `threshold` of the total.
    pub fn kept_for(&self, threshold: f64) -> usize {
        let total: f64 = self.svd.s.iter().map(|s| s * s).sum();
        let mut c = 0.0;
        for (i, s) in self.svd.s.iter().enumerate() {
            c += s * s;
            if c / total >= threshold {
                return (i + 1).min(self.rank.max(1));
            }
        }
        self.rank
    }
}

/// Canonical correlations of two sides.
#[derive(Clone, Debug, Serialize)]
pub struct Cca {
    pub rank_x: usize,
    pub rank_y: usize,
    /// min(rank_x, rank_y) canonical correlations, largest first.
    pub rho: Vec<f64>,
    pub mean_rho: f64,
    /// Σρ² / min(d1, d2).
    pub r2: f64,
    /// Σρ² / the number of ρ.
    pub r2_over_n_rho: f64,
    /// max(0, rank_x + rank_y − (n − 1)): correlations that are 1 by dimension counting alone.
    pub n_trivial_rho_eq_1: usize,
    pub warning: Option<String>,
}

/// SVCCA: CCA on the top principal components of each side.
#[derive(Clone, Debug, Serialize)]
pub struct Svcca {
    /// Mean ρ.
    pub value: f64,
    pub threshold: f64,
    pub kept_x: usize,
    pub kept_y: usize,
    pub n_trivial_rho_eq_1: usize,
    pub warning: Option<String>,
}

/// PWCCA: ρ weighted by each canonical variate's total absolute projection onto the neurons.
#[derive(Clone, Debug, Serialize)]
pub struct Pwcca {
    /// Weights from the X side (the variates h_i of X against the columns of X).
    pub value: f64,
    /// Weights from the Y side.
    pub value_weights_from_y: f64,
    /// False when some ρ = 1 by construction: that block has no unique basis and the value depends on the
    /// SVD implementation.
    pub well_posed: bool,
    pub warning: Option<String>,
}

fn trivial(n: usize, rx: usize, ry: usize) -> usize {
    (rx + ry).saturating_sub(n.saturating_sub(1))
}

fn trivial_warning(what: &str, n: usize, rx: usize, ry: usize, t: usize) -> Option<String> {
    (t > 0).then(|| {
        format!(
            "{what}: rank_x + rank_y = {} > n − 1 = {}, so {t} canonical correlations are exactly 1 by dimension counting alone and the mean is inflated; use more rows than dimensions (or SVCCA on fewer components)",
            rx + ry,
            n.saturating_sub(1)
        )
    })
}

/// SVD of Q_XᵀQ_Y for the first kx and ky basis columns.
fn canonical(x: &Side, y: &Side, kx: usize, ky: usize) -> Result<linalg::ThinSvd> {
    let qx = x.basis(kx);
    let qy = y.basis(ky);
    let mut m = Mat::<f64>::zeros(kx, ky);
    linalg::gemm(
        m.as_mut(),
        false,
        qx.as_ref().transpose(),
        qy.as_ref(),
        1.0,
        true,
    );
    linalg::thin_svd(m.as_ref())
}

/// CCA of two decomposed sides.
pub fn cca(x: &Side, y: &Side) -> Result<Cca> {
    let (rx, ry) = (x.rank, y.rank);
    let svd = canonical(x, y, rx, ry)?;
    let rho: Vec<f64> = svd.s.iter().map(|&s| s.min(1.0)).collect();
    let k = rho.len();
    let sum: f64 = rho.iter().sum();
    let sum2: f64 = rho.iter().map(|r| r * r).sum();
    let t = trivial(x.n, rx, ry);
    Ok(Cca {
        rank_x: rx,
        rank_y: ry,
        mean_rho: sum / k as f64,
        r2: sum2 / x.d.min(y.d) as f64,
        r2_over_n_rho: sum2 / k as f64,
        rho,
        n_trivial_rho_eq_1: t,
        warning: trivial_warning("CCA", x.n, rx, ry, t),
    })
}

/// SVCCA at a cumulative-variance threshold (default 0.99).
pub fn svcca(x: &Side, y: &Side, threshold: f64) -> Result<Svcca> {
    let (kx, ky) = (x.kept_for(threshold), y.kept_for(threshold));
    let svd = canonical(x, y, kx, ky)?;
    let rho: Vec<f64> = svd.s.iter().map(|&s| s.min(1.0)).collect();
    let t = trivial(x.n, kx, ky);
    Ok(Svcca {
        value: rho.iter().sum::<f64>() / rho.len() as f64,
        threshold,
        kept_x: kx,
        kept_y: ky,
        n_trivial_rho_eq_1: t,
        warning: trivial_warning("SVCCA", x.n, kx, ky, t),
    })
}

/// α_i = Σ_j |⟨h_i, x_j⟩| for the variates h = Q·W of a side: ⟨h_i, x_j⟩ = (Wᵀ S Vᵀ)_ij.
fn pw_weights(side: &Side, w: &Mat<f64>, k: usize) -> Vec<f64> {
    let r = w.nrows();
    (0..k)
        .map(|i| {
            (0..side.d)
                .map(|j| {
                    let mut s = 0.0;
                    for t in 0..r {
                        s += w[(t, i)] * side.svd.s[t] * side.svd.v[(j, t)];
                    }
                    s.abs()
                })
                .sum()
        })
        .collect()
}

/// PWCCA (weights from X, as METRICS.md specifies; the Y-side value is also given).
pub fn pwcca(x: &Side, y: &Side) -> Result<Pwcca> {
    let (rx, ry) = (x.rank, y.rank);
    let svd = canonical(x, y, rx, ry)?;
    let k = svd.s.len();
    let rho: Vec<f64> = svd.s.iter().map(|&s| s.min(1.0)).collect();
    let ax = pw_weights(x, &svd.u, k);
    let ay = pw_weights(y, &svd.v, k);
    let weighted =
        |a: &[f64]| a.iter().zip(&rho).map(|(w, r)| w * r).sum::<f64>() / a.iter().sum::<f64>();
    let t = trivial(x.n, rx, ry);
    Ok(Pwcca {
        value: weighted(&ax),
        value_weights_from_y: weighted(&ay),
        well_posed: t == 0,
        warning: (t > 0).then(|| format!(
            "PWCCA is not well defined here: {t} canonical correlations are 1 by construction, that block has no unique basis, so the value depends on the SVD implementation"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn cca_of_a_linear_map_is_one_and_rank_deficiency_is_handled() {
        let (n, d) = (60, 4);
        let mut r = Rng::new(3);
        let x: Vec<f32> = (0..n * d).map(|_| r.normal() as f32).collect();
        // Y = [X·A, constant column, duplicate column].
        let mut y = Vec::new();
        for i in 0..n {
            let row = &x[i * d..(i + 1) * d];
            y.push(row[0] + row[1]);
            y.push(row[1] - 2.0 * row[2]);
            y.push(row[3]);
            y.push(row[2] + 0.5 * row[1]);
            y.push(7.0);
            y.push(row[3]);
        }
        let xm = Matrix::from_vec(n, d, x, "x").unwrap();
        let ym = Matrix::from_vec(n, 6, y, "y").unwrap();
        let (sx, sy) = (Side::new(&xm).unwrap(), Side::new(&ym).unwrap());
        assert_eq!(sy.rank, 4);
        let c = cca(&sx, &sy).unwrap();
        assert_eq!(c.rho.len(), 4);
        assert!(c.rho.iter().all(|r| (r - 1.0).abs() < 1e-6), "{:?}", c.rho);
        assert_eq!(c.n_trivial_rho_eq_1, 0);
        assert!(c.warning.is_none());
        let p = pwcca(&sx, &sy).unwrap();
        assert!((p.value - 1.0).abs() < 1e-6);
    }

    #[test]
    fn more_dimensions_than_rows_warns() {
        let mut r = Rng::new(9);
        let (n, d) = (10, 8);
        let a =
            Matrix::from_vec(n, d, (0..n * d).map(|_| r.normal() as f32).collect(), "a").unwrap();
        let b =
            Matrix::from_vec(n, d, (0..n * d).map(|_| r.normal() as f32).collect(), "b").unwrap();
        let c = cca(&Side::new(&a).unwrap(), &Side::new(&b).unwrap()).unwrap();
        assert_eq!(c.n_trivial_rho_eq_1, 8 + 8 - 9);
        assert!(c.warning.as_deref().unwrap_or("").contains("exactly 1"));
    }
}
