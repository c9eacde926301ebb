//! Singular values, effective rank and the α-ReQ power-law fit.
use serde::Serialize;

use crate::data::Matrix;
use crate::error::Result;
use crate::linalg;

/// Inputs up to this many values get a direct SVD of the f64 data; larger ones take the square roots of the
/// d × d scatter matrix's eigenvalues (agreeing to about 1e-9 relative on the effective rank).
const DIRECT_SVD_MAX: usize = 8_000_000;

/// The min(n, d) singular values of the data matrix (centred or not), largest first, in f64.
pub fn singular_values(m: &Matrix, centred: bool) -> Result<Vec<f64>> {
    let (n, d) = (m.rows(), m.cols());
    let k = n.min(d);
    let mean = centred.then(|| linalg::column_means(m));
    if n * d <= DIRECT_SVD_MAX {
        let a = linalg::to_f64(m, mean.as_deref());
        let mut s = linalg::singular_values(a.as_ref())?;
        s.truncate(k);
        return Ok(s);
    }
    let s = linalg::scatter_matrix(m, mean.as_deref());
    let ev = linalg::sym_eigenvalues_desc(s.as_ref())?;
    Ok(ev.iter().take(k).map(|&l| l.max(0.0).sqrt()).collect())
}

/// exp(−Σ p_k log p_k) with p_k = σ_k/Σσ + 1e-7 (Roy & Vetterli 2007; RankMe's ε).
pub fn effective_rank(sigma: &[f64]) -> f64 {
    let total: f64 = sigma.iter().sum();
    if total <= 0.0 {
        return f64::NAN;
    }
    let h: f64 = sigma
        .iter()
        .map(|&s| {
            let p = s / total + 1e-7;
            -p * p.ln()
        })
        .sum();
    h.exp()
}

/// α-ReQ: ordinary least squares with intercept of log λ_i on −log i over a rank window.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AlphaReq {
    /// The slope: λ_i ∝ i^(−α).
    pub alpha: f64,
    pub intercept: f64,
    /// Coefficient of determination of the fit.
    pub r2: f64,
    /// The ranks used, 1-based and inclusive.
    pub window: [usize; 2],
    /// The window asked for.
    pub requested_window: [usize; 2],
    /// The number of eigenvalues above the numerical-rank tolerance.
    pub available_rank: usize,
}

/// Fits α over `window` (1-based, inclusive), clipped to the first `available_rank` eigenvalues.
/// None when fewer than three ranks remain.
pub fn alpha_req(ev: &[f64], window: (usize, usize), available_rank: usize) -> Option<AlphaReq> {
    let lo = window.0.max(1);
    let hi = window.1.min(available_rank).min(ev.len());
    if hi < lo || hi - lo + 1 < 3 {
        return None;
    }
    let pts: Vec<(f64, f64)> = (lo..=hi)
        .map(|i| (-(i as f64).ln(), ev[i - 1].ln()))
        .collect();
    let m = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / m;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / m;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let r2 = if syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        1.0
    };
    Some(AlphaReq {
        alpha: slope,
        intercept,
        r2,
        window: [lo, hi],
        requested_window: [window.0, window.1],
        available_rank,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_rank_of_equal_values_is_their_count() {
        let r = effective_rank(&[2.0; 10]);
        assert!((r - 10.0).abs() < 1e-4, "{r}");
        // One non-zero value: rank about 1.
        let r1 = effective_rank(&[1.0, 0.0, 0.0]);
        assert!((r1 - 1.0).abs() < 1e-5, "{r1}");
    }

    #[test]
    fn alpha_recovers_an_exact_power_law() {
        let ev: Vec<f64> = (1..=200).map(|i| 3.0 * (i as f64).powf(-1.3)).collect();
        let a = alpha_req(&ev, (11, 100), 200).unwrap();
        assert!((a.alpha - 1.3).abs() < 1e-12 && (a.r2 - 1.0).abs() < 1e-12);
        assert!((a.intercept - 3f64.ln()).abs() < 1e-12);
        let clipped = alpha_req(&ev, (11, 100), 50).unwrap();
        assert_eq!(clipped.window, [11, 50]);
        assert!(alpha_req(&ev, (11, 100), 12).is_none());
    }
}
