//! DADApy's likelihood estimators on the shared graph: TwoNN with a Gamma prior (`compute_id_2NN_wprior`),
//! and the binomial estimator (`compute_id_binomial_k`), whose model is that of the n − 1 other points
//! within r·r_k of a point, among the k − 1 within r_k, each falls inside with probability r^d.
use serde_json::json;

use super::Estimate;
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::exact::rows_within;
use crate::neighbors::{KnnGraph, Metric};

/// TwoNN with a Gamma(α, β) prior on d (shape α, rate β): with the Pareto likelihood of μ = r₂/r₁, the
/// posterior is Gamma(α + N, β + Σ log μ_i), over every point (none discarded).
#[derive(Clone, Copy, Debug)]
pub struct TwoNNPrior {
    pub alpha: f64,
    pub beta: f64,
    /// The posterior mean (DADApy's default) rather than its mode.
    pub posterior_mean: bool,
    /// The probability of the central credible interval.
    pub level: f64,
}

impl Default for TwoNNPrior {
    fn default() -> Self {
        TwoNNPrior {
            alpha: 2.0,
            beta: 5.0,
            posterior_mean: true,
            level: 0.95,
        }
    }
}

impl TwoNNPrior {
    /// Fits on a graph with k ≥ 2.
    pub fn fit(&self, graph: &KnnGraph) -> Result<Estimate> {
        for (p, v, what) in [
            (Param::Alpha, self.alpha, "the prior's shape α"),
            (Param::Beta, self.beta, "the prior's rate β"),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::range(
                    p,
                    v,
                    "a positive number (DADApy's defaults are α = 2, β = 5)",
                    format!("{what} must be positive"),
                ));
            }
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(Error::range(
                Param::Level,
                self.level,
                "a probability in (0, 1) such as 0.95",
                "the credible interval's probability",
            ));
        }
        let (mu, ties) = super::twonn::mu(graph)?;
        let n = mu.len() as f64;
        let sum_log: f64 = mu.iter().map(|m| m.ln()).sum();
        let a = self.alpha + n;
        let b = self.beta + sum_log;
        let mean = a / b;
        let mode = (a - 1.0) / b;
        let sd = a.sqrt() / b;
        let tail = 0.5 * (1.0 - self.level);
        let lo = gamma_quantile(a, tail) / b;
        let hi = gamma_quantile(a, 1.0 - tail) / b;
        let mut notes = Vec::new();
        if ties > 0 {
            notes.push(format!(
                "{ties} points have r1 = r2 (μ = 1, tied distances): they add to N but not to Σ log μ"
            ));
        }
        Ok(Estimate {
            estimator: "twonn_bayes".into(),
            variant: format!(
                "TwoNN with a Gamma({}, {}) prior: posterior {} of Gamma(α + N, β + Σ log μ)",
                self.alpha,
                self.beta,
                if self.posterior_mean { "mean" } else { "mode" }
            ),
            value: if self.posterior_mean { mean } else { mode },
            stderr: Some(sd),
            params: json!({
                "alpha": self.alpha, "beta": self.beta, "posterior_mean": self.posterior_mean,
                "posterior": {"shape": a, "rate": b, "mean": mean, "mode": mode, "std": sd},
                "credible_interval": {"level": self.level, "low": lo, "high": hi},
            }),
            notes,
        })
    }
}

/// DADApy's binomial estimator at a fixed neighbour order k and ratio r.
#[derive(Clone, Copy, Debug)]
pub struct Binomial {
    pub k: usize,
    pub r: f64,
    /// The posterior of a Beta(1, 1) prior on r^d (DADApy's default) rather than the plain estimate.
    pub bayes: bool,
}

impl Default for Binomial {
    fn default() -> Self {
        Binomial {
            k: 20,
            r: 0.5,
            bayes: true,
        }
    }
}

impl Binomial {
    /// Fits on a graph with at least k neighbours per point.
    pub fn fit(&self, graph: &KnnGraph) -> Result<Estimate> {
        super::local::check_graph_k(graph, self.k, 2, "the binomial estimator")?;
        if !(self.r > 0.0 && self.r < 1.0) {
            return Err(Error::range(
                Param::Ratio,
                self.r,
                "a ratio in (0, 1) such as 0.5",
                "the binomial estimator counts the points within r times the k-th distance",
            ));
        }
        let (k, r) = (self.k, self.r);
        let npts = graph.n as f64;
        // n_i − 1: the other points within r·r_k (the k-th neighbour's length r_k).
        let (mut inside, mut sum_rk, mut sum_rn) = (0u64, 0.0f64, 0.0f64);
        for i in 0..graph.n {
            let rk = graph.length(graph.dists(i)[k - 1]);
            let rn = rk * r;
            inside += graph.lengths(i).take(k).filter(|&x| x <= rn).count() as u64;
            sum_rk += rk;
            sum_rn += rn;
        }
        let e_n1 = inside as f64 / npts;
        if inside == 0 {
            return Err(Error::data(
                "input",
                format!("no point has another within r = {r} times its {k}-th neighbour distance"),
                "use a larger r or k",
            ));
        }
        let trials = (k as f64 - 1.0) * npts;
        let (value, stderr, variant) =
            binomial_estimate(inside as f64, trials, npts, r, self.bayes);
        if !(value.is_finite() && value > 0.0) {
            return Err(Error::data(
                "input",
                format!("the binomial estimate is {value}: every point within r·r_k holds all k neighbours"),
                "use a smaller r",
            ));
        }
        Ok(Estimate {
            estimator: "binomial".into(),
            variant: format!("binomial (k = {k}, r = {r}): {variant}"),
            value,
            stderr: Some(stderr),
            params: json!({
                "k": k, "r": r, "bayes": self.bayes,
                "mean_inside": e_n1 + 1.0,
                "scale": 0.5 * (sum_rk + sum_rn) / npts,
            }),
            notes: vec![],
        })
    }
}

/// The binomial estimator at a fixed radius (DADApy `compute_id_binomial_rk`): k_i − 1 other points lie
/// within r_k of point i and n_i − 1 within r·r_k, and n_i − 1 ~ Binomial(k_i − 1, r^d). The counts are
/// exact over every row (DADApy counts among its maxk neighbours and so leaves out the points whose maxk-th
/// neighbour lies within r_k; with every neighbour counted no point needs leaving out).
#[derive(Clone, Copy, Debug)]
pub struct BinomialRadius {
    /// The outer radius r_k, a length in the data's units.
    pub rk: f64,
    pub r: f64,
    pub bayes: bool,
}

/// The binomial model's estimate from the pooled counts: `inside` = Σ(n_i − 1) of `trials` = Σ(k_i − 1)
/// over `points` points; (value, error, what the value is).
fn binomial_estimate(
    inside: f64,
    trials: f64,
    points: f64,
    r: f64,
    bayes: bool,
) -> (f64, f64, &'static str) {
    let ln_r = r.ln();
    if bayes {
        let a = 1.0 + inside;
        let b = 1.0 + trials - inside;
        let e = (digamma(a) - digamma(a + b)) / ln_r;
        let s = ((trigamma(a) - trigamma(a + b)) / (ln_r * ln_r)).sqrt();
        (e, s, "posterior mean of d under a Beta(1, 1) prior on r^d")
    } else {
        let per_trial = trials / points;
        let d = (inside / trials).ln() / ln_r;
        let err = ((r.powf(-d) - 1.0) / (per_trial * points * ln_r * ln_r)).sqrt();
        (d, err, "maximum likelihood, with its Cramér-Rao error")
    }
}

impl BinomialRadius {
    /// Fits on the rows of `data` (distinct rows) under `metric`.
    pub fn fit(&self, data: &Matrix, metric: Metric) -> Result<Estimate> {
        if !(self.r > 0.0 && self.r < 1.0) {
            return Err(Error::range(
                Param::Ratio,
                self.r,
                "a ratio in (0, 1) such as 0.5",
                "the binomial estimator counts the points within r times the radius r_k",
            ));
        }
        if !(self.rk.is_finite() && self.rk > 0.0) {
            return Err(Error::range(
                Param::Radius,
                self.rk,
                "a positive length in the data's units",
                "the binomial estimator counts the points within the radius r_k",
            ));
        }
        // The radii as the metric's distances (the cosine metric's 1 − cos is half a squared chord).
        let as_distance = |l: f64| match metric {
            Metric::Euclidean => l,
            Metric::Cosine => 0.5 * l * l,
        };
        let radii = [as_distance(self.r * self.rk), as_distance(self.rk)];
        let counts = rows_within(data, metric, 2, |_| &radii[..])?;
        let (mut inside, mut trials) = (0u64, 0u64);
        for c in counts.chunks(2) {
            inside += c[0];
            trials += c[1];
        }
        let npts = data.rows() as f64;
        if inside == 0 || trials <= inside {
            return Err(Error::data(
                data.name(),
                format!(
                    "{inside} pairs lie within r·r_k and {trials} within r_k = {}: the binomial model has no signal at this radius",
                    self.rk
                ),
                if inside == 0 {
                    "use a larger radius r_k or ratio r"
                } else {
                    "use a larger radius r_k"
                },
            ));
        }
        let (value, stderr, variant) =
            binomial_estimate(inside as f64, trials as f64, npts, self.r, self.bayes);
        Ok(Estimate {
            estimator: "binomial_rk".into(),
            variant: format!(
                "binomial at radius r_k = {}, r = {}: {variant}",
                self.rk, self.r
            ),
            value,
            stderr: Some(stderr),
            params: json!({
                "rk": self.rk, "r": self.r, "bayes": self.bayes,
                "mean_inside": inside as f64 / npts + 1.0,
                "mean_within_rk": trials as f64 / npts + 1.0,
                "scale": 0.5 * (self.rk + self.rk * self.r),
            }),
            notes: vec![],
        })
    }
}

/// ψ(x), x > 0: the recurrence up to x ≥ 12, then the asymptotic series.
pub fn digamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 12.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    acc + x.ln()
        - 0.5 / x
        - f * (1.0 / 12.0
            - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f * (1.0 / 132.0)))))
}

/// ψ′(x), x > 0: the recurrence up to x ≥ 12, then the asymptotic series.
pub fn trigamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 12.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    acc + 1.0 / x
        + f / 2.0
        + f / x
            * (1.0 / 6.0 - f * (1.0 / 30.0 - f * (1.0 / 42.0 - f * (1.0 / 30.0 - f * 5.0 / 66.0))))
}

/// The regularised lower incomplete gamma function P(a, x): its series below a + 1, Lentz's continued
/// fraction for Q above.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let lead = a * x.ln() - x - libm::lgamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..100_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (sum.ln() + lead).exp().min(1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..100_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (1.0 - (lead.exp() * h)).max(0.0)
    }
}

/// The p-quantile of Gamma(shape a, rate 1), by bisection on P to the last bits.
pub fn gamma_quantile(a: f64, p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, a + 10.0 * a.sqrt() + 10.0);
    while gamma_p(a, hi) < p {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let m = 0.5 * (lo + hi);
        if gamma_p(a, m) < p {
            lo = m;
        } else {
            hi = m;
        }
        if hi - lo <= 4.0 * f64::EPSILON * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_functions_match_known_values() {
        // ψ(1) = −γ, ψ(1/2) = −γ − 2 log 2, ψ′(1) = π²/6, ψ′(1/2) = π²/2.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-14);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-14);
        assert!((digamma(1000.5) - 6.907_755_320_648_796).abs() < 1e-12);
        let pi2 = std::f64::consts::PI.powi(2);
        assert!((trigamma(1.0) - pi2 / 6.0).abs() < 1e-14);
        assert!((trigamma(0.5) - pi2 / 2.0).abs() < 1e-13);
        // P(1, x) = 1 − e^{−x}; P(a, a) → 1/2 for large a; P(10, 25) and the median of Gamma(3) as scipy gives them
        assert!((gamma_p(1.0, 2.0) - (1.0 - (-2f64).exp())).abs() < 1e-15);
        assert!((gamma_p(10.0, 25.0) - 0.999_778_523_361_751_2).abs() < 1e-12);
        assert!((gamma_quantile(3.0, 0.5) - 2.674_060_313_723_559).abs() < 1e-11);
        // Large shapes: Gamma(a) ≈ Normal(a, √a); the 97.5% quantile of Gamma(1e6) is 1001960.9109654503 (scipy)
        let q = gamma_quantile(1e6, 0.975);
        assert!((q - 1_001_960.910_965_450_3).abs() < 1e-6, "{q}");
    }
}
