//! Global PCA rules on the centred covariance eigenvalues λ_1 ≥ … ≥ λ_d.
use serde_json::json;

use super::Estimate;
use crate::data::source::RowSource;
use crate::data::Matrix;
use crate::decomposition::Principal;
use crate::error::{Error, Result};
use crate::moments;
use crate::progress::{Progress, Silent};

/// Which rule turns the spectrum into a dimension.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PcaRule {
    /// Smallest m with cumulative explained variance ≥ τ.
    ExplainedVariance(f64),
    /// Count of λ_i > α·λ_1 (Fukunaga–Olsen).
    FukunagaOlsen(f64),
    /// (Σλ)² / Σλ².
    ParticipationRatio,
}

/// The covariance spectrum of a matrix, with what the PCA rules need.
#[derive(Clone, Debug)]
pub struct Spectrum {
    /// Eigenvalues of the centred covariance (divided by n − 1), largest first, clipped at 0, of the rows
    /// times `scale` (see [`moments::Moments::scale`]): divide by scale² for the data's own units.
    pub eigenvalues: Vec<f64>,
    /// The power of two the rows were multiplied by (1 unless they are f64 values below
    /// [`moments::TINY`], whose variances underflow).
    pub scale: f64,
    /// Notes, e.g. when the leading direction is carried by a handful of points.
    pub notes: Vec<String>,
}

impl Spectrum {
    /// Computes the covariance in f64 and its eigenvalues; also checks whether a few points carry the top
    /// eigenvector.
    pub fn of(m: &Matrix) -> Result<Spectrum> {
        let mom = moments::moments(m, &moments::PassConfig::SCATTER, &Silent)?;
        Spectrum::from_moments(&mom, m, &Silent)
    }

    /// The spectrum of moments already taken over `src`. The outlier check needs a second pass over `src`
    /// only when the first pass cannot rule it out: a row's squared projection on the top eigenvector is at
    /// most (‖x − s‖ + ‖μ − s‖)², so when the largest 1% of those bounds sum to at most half the top
    /// direction's variance, no 1% of the rows can carry more.
    pub fn from_moments(
        mom: &moments::Moments,
        src: &dyn RowSource,
        progress: &dyn Progress,
    ) -> Result<Spectrum> {
        let principal = Principal::from_moments(mom)?;
        let eigenvalues = principal.eigenvalues.clone();
        if eigenvalues.first().copied().unwrap_or(0.0) <= 0.0 {
            return Err(Error::data(
                src.name(),
                "the data has zero variance",
                "check the input",
            ));
        }
        let mut notes = Vec::new();
        // Share of the top direction's variance carried by the 1% most extreme points.
        let n = mom.n;
        let top = (n / 100).max(1);
        // Σ_i p_i² = (n − 1) λ₁.
        let total = eigenvalues[0] * (n.max(2) - 1) as f64;
        let bound: f64 = mom
            .top_deviations
            .iter()
            .take(top)
            .map(|&r| (r + mom.shift_gap).powi(2))
            .sum();
        if n >= 100 && bound > 0.5 * total * (1.0 - 1e-9) {
            let v1 = principal.basis(1);
            let (mean, scale) = (&mom.mean, mom.scale);
            let (largest, sum) = moments::top_of_pass(src, top, progress, |x| {
                moments::squared_projection(x, scale, mean, &v1)
            })?;
            let share = largest.iter().sum::<f64>() / sum;
            if share > 0.5 {
                notes.push(format!(
                    "the top principal direction is carried by a few points: {top} points ({:.1}% of rows) hold {:.0}% of its variance; PCA rules are sensitive to such outliers",
                    100.0 * top as f64 / n as f64,
                    100.0 * share
                ));
            }
        }
        if mom.scale != 1.0 {
            notes.push(format!(
                "the values are below 2^-400 (every |value| is below {:.1e}), so their squares would underflow f64: the moments were taken of the rows times 2^{} (exact); eigenvalues and variances are given in the data's units, where those below 1e-308 underflow to 0; ratios, ranks and dimensions are unaffected",
                2.0 / mom.scale,
                mom.scale.log2().round() as i64
            ));
        }
        Ok(Spectrum {
            eigenvalues,
            scale: mom.scale,
            notes,
        })
    }

    /// Applies a rule.
    pub fn dimension(&self, rule: PcaRule) -> f64 {
        let ev = &self.eigenvalues;
        let total: f64 = ev.iter().sum();
        match rule {
            PcaRule::ExplainedVariance(tau) => {
                let mut c = 0.0;
                for (i, &l) in ev.iter().enumerate() {
                    c += l;
                    if c / total >= tau {
                        return (i + 1) as f64;
                    }
                }
                ev.len() as f64
            }
            PcaRule::FukunagaOlsen(alpha) => {
                ev.iter().filter(|&&l| l > alpha * ev[0]).count() as f64
            }
            PcaRule::ParticipationRatio => {
                let s2: f64 = ev.iter().map(|l| l * l).sum();
                total * total / s2
            }
        }
    }

    /// The three PCA estimates with the default parameters (τ = 0.95, α = 0.05).
    pub fn estimates(&self, tau: f64, alpha: f64) -> Vec<Estimate> {
        let mk = |name: &str, variant: String, value: f64, params: serde_json::Value| Estimate {
            estimator: name.into(),
            variant,
            value,
            stderr: None,
            params,
            notes: self.notes.clone(),
        };
        vec![
            mk(
                "pca_ev",
                format!("smallest m explaining >= {tau} of the variance"),
                self.dimension(PcaRule::ExplainedVariance(tau)),
                json!({"tau": tau}),
            ),
            mk(
                "pca_fo",
                format!("Fukunaga-Olsen: count of eigenvalues > {alpha} x the largest"),
                self.dimension(PcaRule::FukunagaOlsen(alpha)),
                json!({"alpha": alpha}),
            ),
            mk(
                "pca_pr",
                "participation ratio (sum lambda)^2 / sum lambda^2".into(),
                self.dimension(PcaRule::ParticipationRatio),
                json!({}),
            ),
        ]
    }
}
