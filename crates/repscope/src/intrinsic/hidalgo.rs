//! Hidalgo (Allegra, Facco, Denti, Laio and Mira 2020): the data as a mixture of K manifolds of different
//! intrinsic dimension d_k, each point assigned to one. A point's TwoNN ratio μ = r₂/r₁ is Pareto with
//! density d μ^{−(d+1)} on its manifold, and its q nearest neighbours tend to share its manifold (each with
//! probability ζ, normalised by Z over the manifold's size). Priors: d_k ~ Gamma(a, b), weights ~
//! Dirichlet(c). A seeded Gibbs sampler draws d, then the weights, then each point's label in turn.
//!
//! What differs from the authors' code and from R's intRinsic, on purpose:
//! - the label update uses the exact change of the normalisers Z (both implementations shift it by one size);
//! - every stored draw is relabelled so that d₁ < … < d_K before averaging (the authors' code averages raw
//!   labels and relies on no switching after burn-in);
//! - the chain starts by default from the labels of log μ smoothed over the neighbour graph and cut at its
//!   K-quantiles, which converges within tens of sweeps where a uniform random start (the authors', still an
//!   option) can take thousands.
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Estimate;
use crate::error::{Error, Param, Result};
use crate::neighbors::KnnGraph;
use crate::rng::Rng;

/// How the chain starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HidalgoStart {
    /// Labels from log μ smoothed over the neighbour graph, cut at its K-quantiles.
    Smoothed,
    /// Uniform random labels (the authors' start).
    Random,
}

/// Hidalgo. Its JSON (the fields by name) is the `hidalgo` estimator's settings in [`super::method::Method`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hidalgo {
    /// Manifolds.
    pub k: usize,
    /// Neighbours in the homogeneity term.
    pub q: usize,
    /// Probability that a neighbour shares the point's manifold, in (0, 1); 0.5 switches the term off.
    pub zeta: f64,
    /// Gamma(a, b) prior on each d (shape a, rate b).
    pub a: f64,
    pub b: f64,
    /// Dirichlet(c) prior on the weights.
    pub c: f64,
    /// Sweeps in all.
    pub n_iter: usize,
    /// Sweeps discarded first.
    pub burn_in: usize,
    /// Every `thinning`-th sweep after the burn-in is kept.
    pub thinning: usize,
    /// Independent chains; the one of highest mean complete-data likelihood is reported.
    pub replicas: usize,
    pub start: HidalgoStart,
    pub seed: u64,
}

impl Default for Hidalgo {
    fn default() -> Self {
        // The authors' defaults: K = 2, q = 3, ζ = 0.8, a = b = c = 1, 10,000 sweeps of which the last
        // 1,000 are kept every 10th.
        Hidalgo {
            k: 2,
            q: 3,
            zeta: 0.8,
            a: 1.0,
            b: 1.0,
            c: 1.0,
            n_iter: 10_000,
            burn_in: 9_000,
            thinning: 10,
            replicas: 1,
            start: HidalgoStart::Smoothed,
            seed: 0,
        }
    }
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang 2000; shape < 1 by Gamma(shape + 1)·U^{1/shape}), as its log so
/// that tiny shapes do not underflow.
fn ln_gamma_draw(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.uniform().max(f64::MIN_POSITIVE);
        return ln_gamma_draw(rng, shape + 1.0) + u.ln() / shape;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.uniform();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return (d * v).ln();
        }
    }
}

/// ln C(m, l), −∞ where l > m or m < 0.
fn ln_choose(m: i64, l: i64) -> f64 {
    if l < 0 || m < 0 || l > m {
        return f64::NEG_INFINITY;
    }
    libm::lgamma((m + 1) as f64) - libm::lgamma((l + 1) as f64) - libm::lgamma((m - l + 1) as f64)
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// ln Z(n) for n = 0..=N: Z(n) = Σ_l C(n − 1, l) C(N − n, q − l) ζ^l (1 − ζ)^{q−l}, the number of ways (weighted)
/// a point of a manifold of n points has its q neighbours, l of them on its own manifold.
fn ln_z_table(n: usize, q: usize, zeta: f64) -> Vec<f64> {
    let (lz, l1z) = (zeta.ln(), (1.0 - zeta).ln());
    (0..=n)
        .map(|size| {
            let terms: Vec<f64> = (0..=q as i64)
                .map(|l| {
                    ln_choose(size as i64 - 1, l)
                        + ln_choose((n - size) as i64, q as i64 - l)
                        + l as f64 * lz
                        + (q as i64 - l) as f64 * l1z
                })
                .collect();
            log_sum_exp(&terms)
        })
        .collect()
}

/// Hidalgo's results.
pub struct HidalgoFit {
    pub estimate: Estimate,
    /// Each point's posterior mean ID.
    pub per_point: Vec<f64>,
    /// Other per-point results by name.
    pub arrays: Vec<(&'static str, Vec<f64>)>,
}

/// One chain's output.
struct Chain {
    /// Stored draws of the sorted d (T × K) and weights.
    d: Vec<Vec<f64>>,
    p: Vec<Vec<f64>>,
    /// Per point and component: stored draws in which the point carried that (sorted) label.
    counts: Vec<u32>,
    /// Per point: the sum and sum of squares of d_{z_i} over stored draws.
    id_sum: Vec<f64>,
    id_sq: Vec<f64>,
    /// Mean complete-data log likelihood over stored draws.
    mean_lik: f64,
}

/// The model's fixed inputs.
struct Model<'a> {
    log_mu: &'a [f64],
    out: &'a [Vec<u32>],
    inc: &'a [Vec<u32>],
    g: Vec<f64>,
    ln_z: Vec<f64>,
}

impl Hidalgo {
    /// Checks the parameters that need no data.
    pub fn check(&self) -> Result<()> {
        let bad = |p: Param, v: String, allowed: &str, why: &str| {
            Err(Error::range(p, v, allowed.to_string(), why.to_string()))
        };
        if self.k < 1 {
            return bad(
                Param::Components,
                self.k.to_string(),
                "K ≥ 1 (2 by default)",
                "Hidalgo fits a mixture of K manifolds",
            );
        }
        if self.q < 1 {
            return bad(
                Param::K,
                self.q.to_string(),
                "q ≥ 1 (3 by default)",
                "Hidalgo's homogeneity term reads each point's q nearest neighbours",
            );
        }
        if !(self.zeta > 0.0 && self.zeta < 1.0) {
            return bad(
                Param::Zeta,
                self.zeta.to_string(),
                "ζ in (0, 1) (0.8 by default; 0.5 switches the term off)",
                "ζ is the probability that a neighbour shares the point's manifold",
            );
        }
        for (p, v, what) in [
            (Param::Alpha, self.a, "the Gamma prior's shape a"),
            (Param::Beta, self.b, "the Gamma prior's rate b"),
            (Param::Ratio, self.c, "the Dirichlet prior's c"),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(p, v.to_string(), "a positive number (1 by default)", what);
            }
        }
        if self.thinning < 1 || self.replicas < 1 || self.burn_in >= self.n_iter {
            return bad(
                Param::Draws,
                format!(
                    "n_iter = {}, burn_in = {}, thinning = {}, replicas = {}",
                    self.n_iter, self.burn_in, self.thinning, self.replicas
                ),
                "burn_in < n_iter, thinning ≥ 1 and replicas ≥ 1",
                "Hidalgo keeps every thinning-th sweep after the burn-in",
            );
        }
        Ok(())
    }

    /// Fits on a graph with at least max(q, 2) neighbours per point. Returns the estimate, each point's
    /// posterior mean ID, and per point: its most probable manifold ("assignment", manifolds ordered by
    /// dimension from 0), that probability ("assignment_probability") and the posterior sd of its ID ("id_sd").
    pub fn fit(&self, graph: &KnnGraph) -> Result<HidalgoFit> {
        self.check()?;
        let n = graph.n;
        if n < self.k * (self.q + 1) {
            return Err(Error::range(
                Param::Components,
                self.k,
                format!(
                    "K ≤ {} for {n} distinct rows (each manifold needs q + 1 = {} points)",
                    n / (self.q + 1),
                    self.q + 1
                ),
                "Hidalgo has more manifolds than the points allow",
            ));
        }
        super::local::check_graph_k(graph, self.q.max(2), 2, "Hidalgo")?;
        let log_mu: Vec<f64> = (0..n)
            .map(|i| {
                let d = graph.dists(i);
                super::log_ratio(graph.length(d[1]), graph.length(d[0]))
            })
            .collect();
        let out: Vec<Vec<u32>> = (0..n)
            .map(|i| graph.neighbors(i)[..self.q].to_vec())
            .collect();
        let mut inc: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, o) in out.iter().enumerate() {
            for &j in o {
                inc[j as usize].push(i as u32);
            }
        }
        let ln_z = ln_z_table(n, self.q, self.zeta);
        // G(M): the label term of a cluster of M other points, −ln Z(M + 1) + M (ln Z(M) − ln Z(M + 1)).
        let g: Vec<f64> = (0..n)
            .map(|m| {
                let own = -ln_z[m + 1];
                if m == 0 {
                    own
                } else {
                    own + m as f64 * (ln_z[m] - ln_z[m + 1])
                }
            })
            .collect();
        let model = Model {
            log_mu: &log_mu,
            out: &out,
            inc: &inc,
            g,
            ln_z,
        };
        use rayon::prelude::*;
        let chains: Vec<Chain> = (0..self.replicas)
            .into_par_iter()
            .map(|r| self.chain(&model, r as u64))
            .collect();
        let best = chains.iter().enumerate().fold(0usize, |b, (i, c)| {
            if c.mean_lik > chains[b].mean_lik {
                i
            } else {
                b
            }
        });
        let chain = &chains[best];
        let t = chain.d.len() as f64;
        let k = self.k;
        let mean_sd = |draws: &[Vec<f64>], j: usize| {
            let m = draws.iter().map(|v| v[j]).sum::<f64>() / t;
            let v = draws.iter().map(|v| (v[j] - m).powi(2)).sum::<f64>() / (t - 1.0).max(1.0);
            (m, v.sqrt())
        };
        let dims: Vec<(f64, f64)> = (0..k).map(|j| mean_sd(&chain.d, j)).collect();
        let weights: Vec<(f64, f64)> = (0..k).map(|j| mean_sd(&chain.p, j)).collect();
        let mut assignment = Vec::with_capacity(n);
        let mut confidence = Vec::with_capacity(n);
        let mut sizes = vec![0usize; k];
        for i in 0..n {
            let row = &chain.counts[i * k..(i + 1) * k];
            let (arg, max) =
                row.iter().enumerate().fold(
                    (0usize, 0u32),
                    |b, (j, &c)| if c > b.1 { (j, c) } else { b },
                );
            assignment.push(arg as f64);
            confidence.push(max as f64 / t);
            sizes[arg] += 1;
        }
        let per_point: Vec<f64> = chain.id_sum.iter().map(|s| s / t).collect();
        let per_point_sd: Vec<f64> = chain
            .id_sq
            .iter()
            .zip(&per_point)
            .map(|(s, m)| (s / t - m * m).max(0.0).sqrt())
            .collect();
        let uncertain = confidence.iter().filter(|&&c| c < 0.8).count();
        let value = per_point.iter().sum::<f64>() / n as f64;
        let mut notes = Vec::new();
        for j in 1..k {
            let (a, b) = (dims[j - 1], dims[j]);
            if b.0 - a.0 < 2.0 * (a.1 + b.1) {
                notes.push(format!(
                    "manifolds {} and {} have overlapping dimensions ({:.2} ± {:.2}, {:.2} ± {:.2}): fewer manifolds may describe the data",
                    j, j + 1, a.0, a.1, b.0, b.1
                ));
            }
        }
        if uncertain > 0 {
            notes.push(format!(
                "{uncertain} of {n} points are on no manifold with posterior probability ≥ 0.8"
            ));
        }
        let estimate = Estimate {
            estimator: "hidalgo".into(),
            variant: format!(
                "Hidalgo mixture of {k} manifolds (q = {}, ζ = {}): the mean over points of the posterior mean ID; per-manifold dimensions in params",
                self.q, self.zeta
            ),
            value,
            stderr: None,
            params: json!({
                "K": k, "q": self.q, "zeta": self.zeta, "a": self.a, "b": self.b, "c": self.c,
                "n_iter": self.n_iter, "burn_in": self.burn_in, "thinning": self.thinning,
                "replicas": self.replicas, "start": self.start, "seed": self.seed,
                "dimensions": dims.iter().map(|d| d.0).collect::<Vec<_>>(),
                "dimension_sd": dims.iter().map(|d| d.1).collect::<Vec<_>>(),
                "weights": weights.iter().map(|w| w.0).collect::<Vec<_>>(),
                "sizes": sizes,
                "draws": chain.d.len(),
                "mean_log_likelihood": chain.mean_lik,
            }),
            notes,
        };
        Ok(HidalgoFit {
            estimate,
            per_point,
            arrays: vec![
                ("assignment", assignment),
                ("assignment_probability", confidence),
                ("id_sd", per_point_sd),
            ],
        })
    }

    fn chain(&self, m: &Model, replica: u64) -> Chain {
        let n = m.log_mu.len();
        let k = self.k;
        let mut rng = Rng::stream(self.seed ^ 0x041D_4160, replica);
        let mut z: Vec<usize> = match self.start {
            HidalgoStart::Random => (0..n).map(|_| rng.below(k as u64) as usize).collect(),
            HidalgoStart::Smoothed => {
                let mut v = m.log_mu.to_vec();
                for _ in 0..5 {
                    v = (0..n)
                        .map(|i| {
                            let (mut s, mut c) = (v[i], 1usize);
                            for &j in m.out[i].iter().chain(&m.inc[i]) {
                                s += v[j as usize];
                                c += 1;
                            }
                            s / c as f64
                        })
                        .collect();
                }
                let mut order: Vec<usize> = (0..n).collect();
                // Largest log μ first: the lowest dimension gets label 0.
                order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
                let mut z = vec![0usize; n];
                for (rank, &i) in order.iter().enumerate() {
                    z[i] = rank * k / n;
                }
                z
            }
        };
        let mut count = vec![0usize; k];
        let mut sum = vec![0f64; k];
        for i in 0..n {
            count[z[i]] += 1;
            sum[z[i]] += m.log_mu[i];
        }
        let lz = self.zeta.ln() - (1.0 - self.zeta).ln();
        let mut d = vec![1f64; k];
        let mut ln_p = vec![-(k as f64).ln(); k];
        let mut out = Chain {
            d: Vec::new(),
            p: Vec::new(),
            counts: vec![0u32; n * k],
            id_sum: vec![0f64; n],
            id_sq: vec![0f64; n],
            mean_lik: 0.0,
        };
        let mut lik_sum = 0.0f64;
        let mut same = vec![0usize; k];
        let mut logits = vec![0f64; k];
        let mut base = vec![0f64; k];
        for it in 0..self.n_iter {
            // d_k | z ~ Gamma(a + n_k, b + Σ log μ) (shape, rate).
            for j in 0..k {
                d[j] = ln_gamma_draw(&mut rng, self.a + count[j] as f64).exp() / (self.b + sum[j]);
            }
            // weights | z ~ Dirichlet(c + n_k), drawn as normalised Gammas in logs.
            for j in 0..k {
                ln_p[j] = ln_gamma_draw(&mut rng, self.c + count[j] as f64);
            }
            let norm = log_sum_exp(&ln_p);
            ln_p.iter_mut().for_each(|x| *x -= norm);
            for j in 0..k {
                base[j] = ln_p[j] + d[j].ln();
            }
            // Each label in turn, given the others.
            for i in 0..n {
                let zi = z[i];
                count[zi] -= 1;
                sum[zi] -= m.log_mu[i];
                same.iter_mut().for_each(|s| *s = 0);
                for &j in m.out[i].iter().chain(&m.inc[i]) {
                    same[z[j as usize]] += 1;
                }
                let mut top = f64::NEG_INFINITY;
                for j in 0..k {
                    logits[j] =
                        base[j] - (d[j] + 1.0) * m.log_mu[i] + lz * same[j] as f64 + m.g[count[j]];
                    top = top.max(logits[j]);
                }
                let mut total = 0.0f64;
                for l in logits.iter_mut() {
                    // e^0 = 1 exactly: the largest logit needs no exp (half the exps at K = 2).
                    *l = if *l == top && top.is_finite() {
                        1.0
                    } else {
                        (*l - top).exp()
                    };
                    total += *l;
                }
                let u = rng.uniform() * total;
                let mut acc = 0.0f64;
                let mut pick = k - 1;
                for (j, w) in logits.iter().enumerate() {
                    acc += w;
                    if u < acc {
                        pick = j;
                        break;
                    }
                }
                z[i] = pick;
                count[pick] += 1;
                sum[pick] += m.log_mu[i];
            }
            if it >= self.burn_in && (it - self.burn_in).is_multiple_of(self.thinning) {
                // The complete-data log likelihood with the homogeneity term (the authors' lik1).
                let mut lik = 0.0f64;
                let mut same_total = 0usize;
                for i in 0..n {
                    let j = z[i];
                    lik += ln_p[j] + d[j].ln() - (d[j] + 1.0) * m.log_mu[i];
                    same_total += m.out[i].iter().filter(|&&o| z[o as usize] == j).count();
                }
                lik += lz * same_total as f64;
                for &c in &count {
                    lik -= c as f64 * m.ln_z[c];
                }
                lik_sum += lik;
                // Relabel so that the dimensions ascend.
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
                let mut rank = vec![0usize; k];
                for (r, &j) in order.iter().enumerate() {
                    rank[j] = r;
                }
                out.d.push(order.iter().map(|&j| d[j]).collect());
                out.p.push(order.iter().map(|&j| ln_p[j].exp()).collect());
                for i in 0..n {
                    out.counts[i * k + rank[z[i]]] += 1;
                    let di = d[z[i]];
                    out.id_sum[i] += di;
                    out.id_sq[i] += di * di;
                }
            }
        }
        out.mean_lik = lik_sum / out.d.len().max(1) as f64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_draws_have_the_right_mean_and_variance() {
        let mut rng = Rng::new(1);
        for shape in [0.05f64, 0.7, 1.0, 3.5, 200.0] {
            let m = 40_000;
            let x: Vec<f64> = (0..m)
                .map(|_| ln_gamma_draw(&mut rng, shape).exp())
                .collect();
            let mean = x.iter().sum::<f64>() / m as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
            assert!((mean / shape - 1.0).abs() < 0.05, "{shape}: {mean}");
            assert!((var / shape - 1.0).abs() < 0.1, "{shape}: {var}");
        }
    }

    #[test]
    fn z_table_sums_every_neighbour_choice() {
        // With ζ = 1/2 every choice of q neighbours among the N − 1 others weighs 2^{−q}.
        let (n, q) = (50usize, 3usize);
        let t = ln_z_table(n, q, 0.5);
        let all = ln_choose(n as i64 - 1, q as i64) - q as f64 * 2f64.ln();
        for (size, v) in t.iter().enumerate().skip(1) {
            assert!((v - all).abs() < 1e-10, "{size}");
        }
    }
}
