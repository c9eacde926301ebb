//! Global PCA rules on the centred covariance eigenvalues λ_1 ≥ … ≥ λ_d.
use serde_json::json;

use super::Estimate;
use crate::data::source::Elem;
use crate::data::Matrix;
use crate::decomposition::Principal;
use crate::error::{Error, Param, Result};
use crate::moments;
use crate::partial::{Found, Local, Pass, Passes};
use crate::progress::{Progress, Silent};

/// Which rule turns the spectrum into a dimension.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PcaRule {
    /// Smallest m with cumulative explained variance ≥ τ.
    ExplainedVariance(f64),
    /// Count of λ_i > α·λ_1 (Fukunaga–Olsen).
    FukunagaOlsen(f64),
    /// (Σλ)² / Σλ².
    ParticipationRatio,
    /// One plus the index of the largest ratio λ_i / λ_{i+1} (skdim's `maxgap`).
    MaxGap,
    /// One plus the count of components whose cumulative share of the variance is below the threshold
    /// (skdim's `ratio`, `alphaRatio`).
    Ratio(f64),
    /// The count of eigenvalues above their mean (Kaiser's rule).
    Kaiser,
    /// The count of leading eigenvalues whose share of the variance exceeds the broken stick's
    /// (1/p) Σ_{j≥i} 1/j (Jolliffe; skdim's `broken_stick`).
    BrokenStick,
    /// Fan et al. (2010): the eigenvalues less the mean of those past the `p` share of the variance, then
    /// the first gap above `alpha` or the first cumulative share above `beta` (skdim's `Fan`).
    Fan { alpha: f64, beta: f64, p: f64 },
}

impl PcaRule {
    /// The estimator's name in the suite.
    pub fn name(&self) -> &'static str {
        match self {
            PcaRule::ExplainedVariance(_) => "pca_ev",
            PcaRule::FukunagaOlsen(_) => "pca_fo",
            PcaRule::ParticipationRatio => "pca_pr",
            PcaRule::MaxGap => "pca_maxgap",
            PcaRule::Ratio(_) => "pca_ratio",
            PcaRule::Kaiser => "pca_kaiser",
            PcaRule::BrokenStick => "pca_broken_stick",
            PcaRule::Fan { .. } => "pca_fan",
        }
    }
    /// Checks the rule's thresholds.
    pub fn check(&self) -> Result<()> {
        let bad = |p: Param, v: f64, allowed: &str| {
            Err(Error::range(
                p,
                v,
                allowed,
                format!("{} threshold out of range", self.name()),
            ))
        };
        match *self {
            PcaRule::ExplainedVariance(t) if !(t > 0.0 && t <= 1.0) => {
                bad(Param::Tau, t, "τ in (0, 1]")
            }
            PcaRule::FukunagaOlsen(a) if !(a > 0.0 && a < 1.0) => {
                bad(Param::Alpha, a, "α in (0, 1)")
            }
            PcaRule::Ratio(a) if !(a > 0.0 && a <= 1.0) => {
                bad(Param::Alpha, a, "a share in (0, 1]")
            }
            PcaRule::Fan { alpha, .. } if !(alpha > 0.0 && alpha.is_finite()) => {
                bad(Param::Alpha, alpha, "a positive gap ratio such as 10")
            }
            PcaRule::Fan { beta, .. } if !(beta > 0.0 && beta < 1.0) => {
                bad(Param::Beta, beta, "β in (0, 1)")
            }
            PcaRule::Fan { p, .. } if !(p > 0.0 && p < 1.0) => {
                bad(Param::Tau, p, "a share in (0, 1)")
            }
            _ => Ok(()),
        }
    }
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
    /// Rows the covariance was taken over.
    pub n: usize,
    /// Eigenvalues at or below this are indistinguishable from 0: the larger of the f64 accumulation's
    /// rounding (λ₁·d·2⁻⁵²) and the largest variance that rounding the stored values could put in any
    /// direction, (u·max‖x‖)²·n/(n − 1), with u the unit roundoff of the input's type (2⁻²⁴ for f32).
    pub noise_floor: f64,
    /// The eigendecomposition the eigenvalues come from, for the measures that also need the directions
    /// (FisherS's whitening), so that no one decomposes the same rows again.
    pub principal: Principal,
}

impl Spectrum {
    /// Computes the covariance in f64 and its eigenvalues; also checks whether a few points carry the top
    /// eigenvector.
    pub fn of(m: &Matrix) -> Result<Spectrum> {
        let mom = moments::moments(m, &moments::PassConfig::SCATTER, &Silent)?;
        Spectrum::from_moments(&mom, &Local(m), &Silent)
    }

    /// The spectrum of moments already taken over `src`. The outlier check needs a second pass over `src`
    /// only when the first pass cannot rule it out: a row's squared projection on the top eigenvector is at
    /// most (‖x − s‖ + ‖μ − s‖)², so when the largest 1% of those bounds sum to at most half the top
    /// direction's variance, no 1% of the rows can carry more.
    pub fn from_moments(
        mom: &moments::Moments,
        src: &dyn Passes,
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
            let pass = Pass::Projection {
                top,
                scale: mom.scale,
                mean: mom.mean.clone(),
                v: v1,
            };
            let Found::Projection { largest, sum, .. } =
                src.run(&pass, progress)?.covering(n)?.value
            else {
                return Err(crate::partial::corrupt(
                    "a projection pass returned another result",
                ));
            };
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
        let unit = match src.elem() {
            Elem::F16 => 2f64.powi(-11),
            Elem::BF16 => 2f64.powi(-8),
            Elem::F32 => 2f64.powi(-24),
            Elem::F64 => 2f64.powi(-53),
        };
        // ‖x‖ ≤ ‖x − s‖ + ‖s − μ‖ + ‖μ‖ for every row (in the scaled units of the eigenvalues).
        let mean_norm = mom.mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        let largest =
            mom.top_deviations.first().copied().unwrap_or(0.0) + mom.shift_gap + mean_norm;
        let rounding = (unit * largest).powi(2) * n as f64 / (n.max(2) - 1) as f64;
        let noise_floor = rounding.max(eigenvalues[0] * eigenvalues.len() as f64 * f64::EPSILON);
        Ok(Spectrum {
            eigenvalues,
            scale: mom.scale,
            notes,
            n: mom.n,
            noise_floor,
            principal,
        })
    }

    /// The eigenvalues the rules read: min(n, d) of them, as scikit-learn's PCA keeps, with those at or
    /// below the noise floor read as exact zeros (so that a gap into the null space is infinite, as
    /// skdim's is for zero columns).
    fn rule_eigenvalues(&self) -> Vec<f64> {
        let p = self.eigenvalues.len().min(self.n.max(1));
        self.eigenvalues[..p]
            .iter()
            .map(|&l| if l <= self.noise_floor { 0.0 } else { l })
            .collect()
    }

    /// Applies a rule.
    pub fn dimension(&self, rule: PcaRule) -> f64 {
        let ev = self.rule_eigenvalues();
        let p = ev.len();
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
            PcaRule::MaxGap => {
                // λ/0 is an infinite gap and wins; 0/0 is no gap.
                let mut best = (0usize, f64::NEG_INFINITY);
                for i in 0..p.saturating_sub(1) {
                    let g = if ev[i + 1] > 0.0 {
                        ev[i] / ev[i + 1]
                    } else if ev[i] > 0.0 {
                        f64::INFINITY
                    } else {
                        continue;
                    };
                    if g > best.1 {
                        best = (i, g);
                    }
                }
                (best.0 + 1) as f64
            }
            PcaRule::Ratio(alpha) => {
                let mut c = 0.0;
                let mut count = 0;
                for &l in &ev {
                    c += l;
                    count += usize::from(c / total < alpha);
                }
                (count + 1) as f64
            }
            PcaRule::Kaiser => {
                let mean = total / p as f64;
                ev.iter().filter(|&&l| l > mean).count() as f64
            }
            PcaRule::BrokenStick => {
                // The stick's pieces b_i = (1/p) Σ_{j=i}^{p} 1/j, largest first.
                let mut stick = vec![0.0; p];
                let mut acc = 0.0;
                for i in (0..p).rev() {
                    acc += 1.0 / (i + 1) as f64;
                    stick[i] = acc / p as f64;
                }
                ev.iter()
                    .zip(&stick)
                    .position(|(&l, &b)| b > l / total)
                    .unwrap_or(p) as f64
            }
            PcaRule::Fan {
                alpha,
                beta,
                p: share,
            } => fan(&ev, total, alpha, beta, share).0,
        }
    }

    /// The estimate of one rule.
    pub fn estimate(&self, rule: PcaRule) -> Estimate {
        let (variant, params) = match rule {
            PcaRule::ExplainedVariance(tau) => (
                format!("smallest m explaining >= {tau} of the variance"),
                json!({"tau": tau}),
            ),
            PcaRule::FukunagaOlsen(alpha) => (
                format!("Fukunaga-Olsen: count of eigenvalues > {alpha} x the largest"),
                json!({"alpha": alpha}),
            ),
            PcaRule::ParticipationRatio => (
                "participation ratio (sum lambda)^2 / sum lambda^2".into(),
                json!({}),
            ),
            PcaRule::MaxGap => (
                "1 + the index of the largest ratio of consecutive eigenvalues".into(),
                json!({}),
            ),
            PcaRule::Ratio(alpha) => (
                format!("1 + the count of components whose cumulative variance share is < {alpha}"),
                json!({"alpha": alpha}),
            ),
            PcaRule::Kaiser => ("Kaiser: count of eigenvalues above their mean".into(), json!({})),
            PcaRule::BrokenStick => (
                "broken stick: count of leading eigenvalues above the broken stick".into(),
                json!({}),
            ),
            PcaRule::Fan { alpha, beta, p } => (
                format!("Fan: first gap > {alpha} or cumulative share > {beta} after removing the noise level past {p} of the variance"),
                json!({"alpha": alpha, "beta": beta, "p": p}),
            ),
        };
        let value = self.dimension(rule);
        let mut notes = self.notes.clone();
        if let PcaRule::Fan { alpha, beta, p } = rule {
            let ev = self.rule_eigenvalues();
            let total = ev.iter().sum();
            if fan(&ev, total, alpha, beta, p).1 {
                notes.push(format!(
                    "Fan: no gap above {alpha} and no defined cumulative share above {beta} (the first eigenvalue alone holds more than {p} of the variance): the count of components within that share"
                ));
            }
        }
        if value == 0.0 {
            notes.push(
                "no leading eigenvalue rises above the broken stick (a flat spectrum): the rule gives 0"
                    .into(),
            );
        }
        Estimate {
            estimator: rule.name().into(),
            variant,
            value,
            stderr: None,
            params,
            notes,
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

/// Fan et al.'s rule on eigenvalues `ev` (largest first, summing to `total`): the noise level σ is the mean
/// of the eigenvalues from the first whose cumulative share exceeds `share`; the dimension is one plus the
/// first index where (λ_i − σ)/(λ_{i+1} − σ) > `alpha` or where the cumulative share of the λ − σ exceeds
/// `beta`. When λ₁ alone exceeds `share`, σ is the mean of every eigenvalue, the λ − σ sum to 0 and their
/// shares are 0/0 (skdim then reads rounding noise): that condition is left out, and where neither fires
/// the rule gives the count of components within `share`. Returns the dimension and whether that fallback
/// was taken.
pub(crate) fn fan(ev: &[f64], total: f64, alpha: f64, beta: f64, share: f64) -> (f64, bool) {
    let p = ev.len();
    let mut c = 0.0;
    let r = ev
        .iter()
        .position(|&l| {
            c += l;
            c / total > share
        })
        .unwrap_or(p - 1);
    let sigma = ev[r..].iter().sum::<f64>() / (p - r) as f64;
    let shifted: Vec<f64> = ev.iter().map(|l| l - sigma).collect();
    let st: f64 = shifted.iter().sum();
    let gap = (0..p.saturating_sub(1)).find(|&i| shifted[i] / shifted[i + 1] > alpha);
    let defined = st > total * p as f64 * f64::EPSILON;
    let mut c = 0.0;
    let cum = shifted
        .iter()
        .position(|&l| {
            c += l;
            c / st > beta
        })
        .filter(|_| defined);
    match (gap, cum) {
        (Some(a), Some(b)) => ((a.min(b) + 1) as f64, false),
        (Some(a), None) | (None, Some(a)) => ((a + 1) as f64, false),
        (None, None) => ((r + 1) as f64, true),
    }
}
