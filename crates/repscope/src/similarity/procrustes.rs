//! Orthogonal Procrustes shape distance (Williams et al. 2021): centre, scale each side to unit Frobenius
//! norm, zero-pad the narrower one; the nuclear norm ‖XᵀY‖_* of the scaled data gives both distances.
use serde::Serialize;

use super::cka::FeatureStats;
use crate::error::Result;
use crate::linalg;

/// Angular and euclidean Procrustes distances.
#[derive(Clone, Debug, Serialize)]
pub struct Procrustes {
    /// arccos(‖XᵀY‖_*), clipped to [−1, 1] first.
    pub angular: f64,
    /// √(2 − 2‖XᵀY‖_*), and 0 where that difference is below the rounding of the sums.
    pub euclidean: f64,
    pub nuclear_norm: f64,
}

/// From the feature-route sums (zero-padding does not change XᵀY's singular values).
pub fn procrustes(stats: &FeatureStats) -> Result<Procrustes> {
    let (tx, ty) = stats.centred_sq_norms();
    let c = stats.centred_cross();
    let s = linalg::singular_values(c.as_ref())?;
    let nuc = s.iter().sum::<f64>() / (tx.sqrt() * ty.sqrt());
    // 2 − 2‖XᵀY‖_* below the rounding of the sums it comes from (a few ε per summed column) is 0: its
    // square root would turn a rounding of 1e-16 into a distance of 1e-8.
    let gap = 2.0 - 2.0 * nuc;
    let rounding = 8.0 * (c.nrows() + c.ncols()) as f64 * f64::EPSILON;
    Ok(Procrustes {
        angular: nuc.clamp(-1.0, 1.0).acos(),
        euclidean: if gap <= rounding { 0.0 } else { gap.sqrt() },
        nuclear_norm: nuc,
    })
}
