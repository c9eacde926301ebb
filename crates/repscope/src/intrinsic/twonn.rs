//! TwoNN (Facco et al. 2017): the ratio μ = r2/r1 of second to first neighbour distance follows a Pareto law
//! with exponent d.
use crate::error::Param;
use serde_json::json;

use super::{log_ratio, Estimate};
use crate::error::{Error, Result};
use crate::neighbors::KnnGraph;

/// How the exponent is fitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwoNNFit {
    /// Least-squares slope through the origin of −log(1 − F_i) on log μ_i (the original paper; default).
    Linear,
    /// Maximum likelihood, with the discarded largest ratios treated as censored.
    Mle,
}

/// The TwoNN estimator.
#[derive(Clone, Debug)]
pub struct TwoNN {
    discard_fraction: f64,
    fit: TwoNNFit,
}

impl Default for TwoNN {
    fn default() -> Self {
        TwoNN {
            discard_fraction: 0.1,
            fit: TwoNNFit::Linear,
        }
    }
}

/// μ_i = r2/r1 for every point, with the number of exact ties (μ = 1).
pub fn mu(graph: &KnnGraph) -> Result<(Vec<f64>, usize)> {
    if graph.k < 2 {
        return Err(Error::param(
            Param::K,
            "TwoNN needs 2 neighbours per point",
            "build the graph with k ≥ 2",
        ));
    }
    let mut ties = 0;
    let mu = (0..graph.n)
        .map(|i| {
            let d = graph.dists(i);
            if d[1] <= d[0] {
                ties += 1;
                1.0
            } else {
                graph.length(d[1]) / graph.length(d[0])
            }
        })
        .collect();
    Ok((mu, ties))
}

impl TwoNN {
    /// Fraction of the largest ratios left out of the fit, in [0, 1).
    pub fn discard_fraction(mut self, f: f64) -> Self {
        self.discard_fraction = f;
        self
    }
    /// Linear fit or censored MLE.
    pub fn fit_method(mut self, fit: TwoNNFit) -> Self {
        self.fit = fit;
        self
    }

    fn check(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.discard_fraction) {
            return Err(Error::param(
                Param::DiscardFraction,
                format!("{} is outside [0, 1)", self.discard_fraction),
                "use a fraction such as 0.1",
            ));
        }
        Ok(())
    }

    /// Fits on a neighbour graph with k ≥ 2.
    pub fn fit(&self, graph: &KnnGraph) -> Result<Estimate> {
        self.check()?;
        let (mu, ties) = mu(graph)?;
        self.fit_mu(&mu, ties)
    }

    /// Fits on precomputed ratios μ_i ≥ 1.
    pub fn fit_mu(&self, mu: &[f64], ties: usize) -> Result<Estimate> {
        self.check()?;
        let n = mu.len();
        if n < 3 {
            return Err(Error::param(
                Param::Rows,
                format!("TwoNN needs at least 3 points, got {n}"),
                "pass more rows",
            ));
        }
        let mut logs: Vec<f64> = mu.iter().map(|&m| log_ratio(m, 1.0)).collect();
        logs.sort_by(f64::total_cmp);
        let mut kept = ((n as f64) * (1.0 - self.discard_fraction)).floor() as usize;
        let mut notes = Vec::new();
        if ties > 0 {
            notes.push(format!(
                "{ties} points have r1 = r2 (μ = 1, tied distances, typical of quantised data); they pull the estimate down"
            ));
        }
        let (value, stderr, variant) = match self.fit {
            TwoNNFit::Linear => {
                // F_i = i/N reaches 1 at i = N, where −log(1 − F) is infinite: never fit that point.
                if kept >= n {
                    kept = n - 1;
                    notes.push(
                        "the largest ratio has F = 1 and is left out of the linear fit".into(),
                    );
                }
                let (mut sxy, mut sxx) = (0.0f64, 0.0f64);
                for (i, &x) in logs.iter().take(kept).enumerate() {
                    let f = (i + 1) as f64 / n as f64;
                    let y = -(1.0 - f).ln();
                    sxy += x * y;
                    sxx += x * x;
                }
                if sxx <= 0.0 {
                    return Err(Error::data(
                        "input",
                        "every kept point has r1 = r2, so TwoNN has no signal",
                        "the data is a lattice or heavily quantised: use GRIDE at a larger scale",
                    ));
                }
                let slope = sxy / sxx;
                // The residuals of a fit to a sorted sample are strongly correlated, so the regression's own
                // standard error is far too small; report the Pareto likelihood's asymptotic d/sqrt(m).
                let se = slope / (kept as f64).sqrt();
                (
                    slope,
                    se,
                    "linear fit through the origin of -log(1-F_i) on log mu_i, F_i = i/N",
                )
            }
            TwoNNFit::Mle => {
                if kept < 2 {
                    return Err(Error::param(
                        Param::DiscardFraction,
                        "too few points are kept",
                        "lower discard_fraction",
                    ));
                }
                // Censored exponential likelihood: log μ ~ Exp(d); the N − m largest are known only to exceed
                // log μ_(m).
                let sum: f64 =
                    logs[..kept].iter().sum::<f64>() + (n - kept) as f64 * logs[kept - 1];
                if sum <= 0.0 {
                    return Err(Error::data(
                        "input",
                        "every kept point has r1 = r2, so TwoNN has no signal",
                        "the data is a lattice or heavily quantised: use GRIDE at a larger scale",
                    ));
                }
                let d = (kept - 1) as f64 / sum;
                (
                    d,
                    d / ((kept - 1) as f64).sqrt(),
                    "maximum likelihood, the discarded largest ratios censored",
                )
            }
        };
        Ok(Estimate {
            estimator: match self.fit {
                TwoNNFit::Linear => "twonn".into(),
                TwoNNFit::Mle => "twonn_mle".into(),
            },
            variant: variant.into(),
            value,
            stderr: Some(stderr),
            params: json!({"discard_fraction": self.discard_fraction, "n_points": n, "n_kept": kept, "n_ties_mu_eq_1": ties}),
            notes,
        })
    }
}

/// The uncensored MLE (N − 1)/Σ log μ over all points.
pub fn mle_full(mu: &[f64]) -> f64 {
    let s: f64 = mu.iter().map(|&m| log_ratio(m, 1.0)).sum();
    (mu.len() as f64 - 1.0) / s
}
