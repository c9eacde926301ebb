//! One typed description of every estimator beyond the suite's default eight, with its parameters, what it
//! reads (the shared neighbour graph, the rows, the covariance spectrum) and one `fit`. The suite runs them
//! by name at their defaults; the Python classes send their parameters as this enum's JSON.
use serde::{Deserialize, Serialize};

use super::bayes::{Binomial, BinomialRadius, TwoNNPrior};
use super::carter::GraphLength;
use super::corrint::CorrInt;
use super::danco::{Danco, DancoStats};
use super::ess::{Ess, EssVersion};
use super::fisher::FisherS;
use super::hidalgo::Hidalgo;
use super::kstar::{Kstar, KstarFit};
use super::local::{Combine, Mada, Mom, Tle};
use super::mind::MindMl;
use super::mindkl::MindKl;
use super::mle::{Aggregation, GlobalMle, Mle};
use super::pca::{PcaRule, Spectrum};
use super::ph::{Ph, RangeType};
use super::Estimate;
use crate::data::Matrix;
use crate::error::{Error, Param, Result};
use crate::neighbors::{KnnGraph, Metric};

/// The neighbour whose median length is the binomial estimator's radius when none is given.
const DEFAULT_RADIUS_RANK: usize = 20;

/// An estimator and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "estimator", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// Method of moments (skdim `MOM`).
    Mom { k: usize, comb: Combine },
    /// Tight local estimation (skdim `TLE`).
    Tle {
        k: usize,
        epsilon: f64,
        comb: Combine,
    },
    /// MADA (skdim `MADA`).
    Mada { k: usize, comb: Combine },
    /// Levina–Bickel per point (skdim `MLE`), with the unbiased numerator as an option.
    Mle {
        k: usize,
        comb: Combine,
        unbiased: bool,
        /// skdim's Gaussian distance-noise model (`dnoise="dnoiseGaussH"`) with this σ.
        #[serde(default)]
        sigma: Option<f64>,
    },
    /// Levina–Bickel on pooled distances (skdim `MLE(neighborhood_based=False)`).
    MleGlobal { k: usize, n: usize, unbiased: bool },
    /// The two-scale correlation dimension (skdim `CorrInt`).
    Corrint { k1: usize, k2: usize },
    /// MiND_ML (skdim `MiND_ML`): continuous ("MLk") or integer ("MLi").
    Mind {
        k: usize,
        max_dim: usize,
        integer: bool,
    },
    /// MiND_KL (Rozza et al. 2012): ρ against seeded balls of dimensions 1..D by a nearest-neighbour
    /// Kullback–Leibler estimate.
    MindKl {
        k: usize,
        max_dim: Option<usize>,
        sigma: Option<f64>,
        patience: Option<usize>,
        seed: u64,
    },
    /// TwoNN with a Gamma prior (DADApy `compute_id_2NN_wprior`).
    TwonnBayes {
        alpha: f64,
        beta: f64,
        posterior_mean: bool,
        level: f64,
    },
    /// The binomial estimator (DADApy `compute_id_binomial_k`).
    Binomial { k: usize, r: f64, bayes: bool },
    /// The binomial estimator at a fixed radius (DADApy `compute_id_binomial_rk`); without a radius, the
    /// median length to the 20th neighbour.
    BinomialRk {
        rk: Option<f64>,
        r: f64,
        bayes: bool,
    },
    /// DANCo (skdim `DANCo`), calibrated on seeded balls of dimensions 1..D (D: the number of columns when
    /// None), with calibration statistics for the first dimensions handed in when given; with `table`, on
    /// the precomputed table instead of simulated balls (skdim `DANCo(ver="DANCoFit")`).
    Danco {
        k: usize,
        max_dim: Option<usize>,
        fractal: bool,
        seed: u64,
        calibration: Option<Vec<DancoStats>>,
        #[serde(default)]
        table: bool,
    },
    /// The kNN graph length of Carter et al. (skdim `KNN`); sample sizes k + 1 .. k + 4 when None.
    Knn {
        k: usize,
        ps: Option<Vec<usize>>,
        m: usize,
        gamma: f64,
        seed: u64,
    },
    /// The PH₀ dimension (skdim `PH`) from seeded subsamples' minimum spanning trees.
    Ph {
        alpha: Vec<f64>,
        n_range_min: f64,
        n_range_max: f64,
        range_type: RangeType,
        nsteps: usize,
        subsamples: usize,
        seed: u64,
    },
    /// The adaptive-neighbourhood ID (DADApy `return_ids_kstar_gride` / `_binomial`).
    Kstar {
        fit: KstarFit,
        initial_id: Option<f64>,
        n_iter: usize,
        alpha: f64,
        maxk: usize,
    },
    /// Hidalgo: a mixture of manifolds of different dimensions, by seeded Gibbs sampling.
    Hidalgo(Hidalgo),
    /// A PCA rule on the covariance spectrum (skdim `lPCA`).
    Pca { rule: PcaRule },
    /// Expected simplex skewness (skdim `ESS`), per point, or with `once` on the whole set as one
    /// neighbourhood (skdim's `fit_once`).
    Ess {
        k: usize,
        d: usize,
        ver: EssVersion,
        seed: u64,
        comb: Combine,
        once: bool,
    },
    /// Fisher separability (skdim `FisherS`) on the whole set.
    FisherS {
        conditional_number: f64,
        project_on_sphere: bool,
        alphas: Vec<f64>,
        limit_maxdim: bool,
    },
}

/// The names the suite knows these estimators by (each at its default parameters), in output order.
pub const NAMES: &[&str] = &[
    "mom",
    "tle",
    "mada",
    "ess",
    "mle_unbiased",
    "mle_global",
    "corrint",
    "fisher_s",
    "mind_mlk",
    "mind_mli",
    "mind_kl",
    "twonn_bayes",
    "binomial",
    "binomial_rk",
    "danco",
    "danco_fit",
    "knn",
    "ph",
    "kstar_gride",
    "kstar_binomial",
    "hidalgo",
    "pca_maxgap",
    "pca_ratio",
    "pca_kaiser",
    "pca_broken_stick",
    "pca_fan",
];

/// A fitted estimator: its estimate and, for per-point methods, one value per row of the graph.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub estimate: Estimate,
    pub per_point: Option<Vec<f64>>,
    /// Other per-point results, by name (k*'s neighbourhood sizes, a mixture's assignments), one value per
    /// row of the graph.
    pub arrays: Vec<(&'static str, Vec<f64>)>,
}

impl Method {
    /// The estimator of a suite name at its defaults (those of skdim 0.5.0 and DADApy 0.3).
    pub fn by_name(name: &str) -> Option<Method> {
        Some(match name {
            "mom" => Method::Mom {
                k: Mom::default().k,
                comb: Combine::Mean,
            },
            "tle" => Method::Tle {
                k: Tle::default().k,
                epsilon: Tle::default().epsilon,
                comb: Combine::Mean,
            },
            "mada" => Method::Mada {
                k: Mada::default().k,
                comb: Combine::Mean,
            },
            "mle_unbiased" => Method::Mle {
                k: 20,
                comb: Combine::Harmonic,
                unbiased: true,
                sigma: None,
            },
            "mle_global" => {
                let g = GlobalMle::default();
                Method::MleGlobal {
                    k: g.k,
                    n: g.n,
                    unbiased: g.unbiased,
                }
            }
            "corrint" => Method::Corrint { k1: 10, k2: 20 },
            "fisher_s" => {
                let f = FisherS::default();
                Method::FisherS {
                    conditional_number: f.conditional_number,
                    project_on_sphere: f.project_on_sphere,
                    alphas: f.alphas,
                    limit_maxdim: f.limit_maxdim,
                }
            }
            "ess" => Method::Ess {
                k: 100,
                d: 1,
                ver: EssVersion::A,
                seed: 0,
                comb: Combine::Mean,
                once: false,
            },
            "mind_mlk" | "mind_mli" => Method::Mind {
                k: 20,
                max_dim: 10,
                integer: name == "mind_mli",
            },
            "twonn_bayes" => {
                let p = TwoNNPrior::default();
                Method::TwonnBayes {
                    alpha: p.alpha,
                    beta: p.beta,
                    posterior_mean: p.posterior_mean,
                    level: p.level,
                }
            }
            "binomial" => {
                let b = Binomial::default();
                Method::Binomial {
                    k: b.k,
                    r: b.r,
                    bayes: b.bayes,
                }
            }
            "binomial_rk" => Method::BinomialRk {
                rk: None,
                r: 0.5,
                bayes: true,
            },
            "danco" | "danco_fit" => {
                let d = Danco::default();
                Method::Danco {
                    k: d.k,
                    max_dim: d.max_dim,
                    fractal: d.fractal,
                    seed: d.seed,
                    calibration: None,
                    table: name == "danco_fit",
                }
            }
            "mind_kl" => {
                let m = MindKl::default();
                Method::MindKl {
                    k: m.k,
                    max_dim: m.max_dim,
                    sigma: m.sigma,
                    patience: m.patience,
                    seed: m.seed,
                }
            }
            "knn" => {
                let g = GraphLength::default();
                Method::Knn {
                    k: g.k,
                    ps: None,
                    m: g.m,
                    gamma: g.gamma,
                    seed: g.seed,
                }
            }
            "ph" => {
                let p = Ph::default();
                Method::Ph {
                    alpha: p.alpha,
                    n_range_min: p.n_range_min,
                    n_range_max: p.n_range_max,
                    range_type: p.range_type,
                    nsteps: p.nsteps,
                    subsamples: p.subsamples,
                    seed: p.seed,
                }
            }
            "kstar_gride" | "kstar_binomial" => {
                let k = Kstar::default();
                Method::Kstar {
                    fit: if name == "kstar_gride" {
                        KstarFit::Gride
                    } else {
                        KstarFit::Binomial
                    },
                    initial_id: k.initial_id,
                    n_iter: k.n_iter,
                    alpha: k.alpha,
                    maxk: k.maxk,
                }
            }
            "hidalgo" => Method::Hidalgo(Hidalgo::default()),
            "pca_maxgap" => Method::Pca {
                rule: PcaRule::MaxGap,
            },
            "pca_ratio" => Method::Pca {
                rule: PcaRule::Ratio(0.05),
            },
            "pca_kaiser" => Method::Pca {
                rule: PcaRule::Kaiser,
            },
            "pca_broken_stick" => Method::Pca {
                rule: PcaRule::BrokenStick,
            },
            "pca_fan" => Method::Pca {
                rule: PcaRule::Fan {
                    alpha: 10.0,
                    beta: 0.8,
                    p: 0.95,
                },
            },
            _ => return None,
        })
    }

    /// Neighbours per point the method reads from the graph (0: it reads none).
    pub fn graph_k(&self) -> usize {
        match *self {
            Method::Mom { k, .. }
            | Method::Tle { k, .. }
            | Method::Mada { k, .. }
            | Method::Mle { k, .. }
            | Method::MleGlobal { k, .. }
            | Method::Binomial { k, .. } => k,
            Method::Corrint { k2, .. } => k2,
            Method::Mind { k, .. } | Method::Danco { k, .. } | Method::MindKl { k, .. } => k + 1,
            Method::BinomialRk { rk, .. } => {
                if rk.is_some() {
                    0
                } else {
                    DEFAULT_RADIUS_RANK
                }
            }
            Method::Knn { .. } | Method::Ph { .. } => 0,
            Method::Kstar { maxk, .. } => maxk,
            Method::Hidalgo(h) => h.q.max(2),
            Method::TwonnBayes { .. } => 2,
            Method::Pca { .. } | Method::FisherS { .. } => 0,
            Method::Ess { k, once, .. } => {
                if once {
                    0
                } else {
                    k
                }
            }
        }
    }

    /// The method with its neighbour orders lowered to what `available` neighbours per point allow, as
    /// skdim lowers `n_neighbors` to N − 1 (None when nothing needs lowering), and a note saying so.
    pub fn clipped(&self, available: usize) -> Option<(Method, String)> {
        let need = self.graph_k();
        if need <= available || need == 0 {
            return None;
        }
        let a = available;
        let m = match *self {
            Method::Mom { comb, .. } => Method::Mom { k: a, comb },
            Method::Tle { epsilon, comb, .. } => Method::Tle {
                k: a,
                epsilon,
                comb,
            },
            Method::Mada { comb, .. } => Method::Mada { k: a, comb },
            Method::Mle {
                comb,
                unbiased,
                sigma,
                ..
            } => Method::Mle {
                k: a,
                comb,
                unbiased,
                sigma,
            },
            Method::MleGlobal { n, unbiased, .. } => Method::MleGlobal { k: a, n, unbiased },
            Method::Corrint { k1, .. } => Method::Corrint {
                k1: if k1 >= a { a.saturating_sub(1) } else { k1 },
                k2: a,
            },
            Method::Mind {
                max_dim, integer, ..
            } => Method::Mind {
                k: a.saturating_sub(1),
                max_dim,
                integer,
            },
            Method::Binomial { r, bayes, .. } => Method::Binomial { k: a, r, bayes },
            Method::Danco {
                max_dim,
                fractal,
                seed,
                ref calibration,
                table,
                ..
            } => Method::Danco {
                k: a.saturating_sub(1),
                max_dim,
                fractal,
                seed,
                calibration: calibration.clone(),
                table,
            },
            Method::MindKl {
                max_dim,
                sigma,
                patience,
                seed,
                ..
            } => Method::MindKl {
                k: a.saturating_sub(1),
                max_dim,
                sigma,
                patience,
                seed,
            },
            Method::Ess {
                d,
                ver,
                seed,
                comb,
                once,
                ..
            } => Method::Ess {
                k: a,
                d,
                ver,
                seed,
                comb,
                once,
            },
            Method::Kstar {
                fit,
                initial_id,
                n_iter,
                alpha,
                ..
            } => Method::Kstar {
                fit,
                initial_id,
                n_iter,
                alpha,
                maxk: a,
            },
            ref other => other.clone(),
        };
        Some((
            m,
            format!(
                "the estimator reads {need} neighbours per point, but each point has only {a} others: {a} used (as scikit-dimension lowers n_neighbors)"
            ),
        ))
    }

    /// Whether the method reads the covariance spectrum.
    pub fn needs_spectrum(&self) -> bool {
        matches!(self, Method::Pca { .. } | Method::FisherS { .. })
    }

    /// Checks the parameters that can be checked before any data is read.
    pub fn check(&self) -> Result<()> {
        let min_k = |k: usize, min: usize, what: &str| {
            if k < min {
                Err(Error::range(
                    Param::K,
                    k,
                    format!("k ≥ {min}"),
                    format!("{what} needs at least {min} neighbours per point"),
                ))
            } else {
                Ok(())
            }
        };
        match *self {
            Method::Mom { k, .. } => min_k(k, 2, "MOM"),
            Method::Tle { k, .. } => min_k(k, 2, "TLE"),
            Method::Mada { k, .. } => min_k(k, 2, "MADA"),
            Method::Mle { k, unbiased, .. } => min_k(k, if unbiased { 3 } else { 2 }, "MLE"),
            Method::MleGlobal { k, .. } => min_k(k, 1, "the global MLE"),
            Method::Corrint { k1, k2 } if k1 < 1 || k2 <= k1 => Err(Error::range(
                Param::K2,
                format!("k1 = {k1}, k2 = {k2}"),
                "1 ≤ k1 < k2 (10 and 20 by default)",
                "the correlation dimension compares two neighbour orders",
            )),
            Method::Mind { k, .. } => min_k(k, 1, "MiND_ML"),
            Method::Binomial { k, .. } => min_k(k, 2, "the binomial estimator"),
            Method::Danco { k, .. } => min_k(k, 2, "DANCo"),
            Method::MindKl {
                k,
                max_dim,
                sigma,
                patience,
                seed,
            } => MindKl {
                k,
                max_dim,
                sigma,
                patience,
                seed,
            }
            .check(1)
            .map(|_| ()),
            Method::Knn { k, .. } => min_k(k, 1, "the kNN graph length"),
            Method::Ph {
                ref alpha,
                nsteps,
                subsamples,
                ..
            } => Ph {
                alpha: alpha.clone(),
                nsteps,
                subsamples,
                ..Ph::default()
            }
            .check(),
            Method::Kstar {
                fit,
                initial_id,
                n_iter,
                alpha,
                maxk,
            } => Kstar {
                fit,
                initial_id,
                n_iter,
                alpha,
                maxk,
            }
            .check(),
            Method::Ess { k, once: false, .. } => min_k(k, 2, "ESS"),
            Method::Pca { rule } => rule.check(),
            Method::FisherS { .. } => Ok(()),
            Method::Hidalgo(h) => h.check(),
            _ => Ok(()),
        }
    }

    /// Fits on the rows `data` of the graph (the distinct rows) under `metric` (the graph's), the graph with
    /// at least [`Method::graph_k`] neighbours (when that is not 0) and the spectrum (when
    /// [`Method::needs_spectrum`]).
    pub fn fit(
        &self,
        data: &Matrix,
        metric: Metric,
        graph: Option<&KnnGraph>,
        spectrum: Option<&Spectrum>,
    ) -> Result<Fitted> {
        self.check()?;
        let need_graph = || {
            graph.ok_or_else(|| Error::Numerical {
                what: "the estimator".into(),
                problem: "no neighbour graph was handed to a neighbour estimator".into(),
            })
        };
        let per = |(estimate, pw): (Estimate, Vec<f64>)| Fitted {
            estimate,
            per_point: Some(pw),
            arrays: vec![],
        };
        let one = |estimate: Estimate| Fitted {
            estimate,
            per_point: None,
            arrays: vec![],
        };
        // The spectrum handed in, or (called on its own) one decomposition of the rows.
        let owned;
        let spectrum = match (spectrum, self.needs_spectrum()) {
            (Some(s), _) => Some(s),
            (None, true) => {
                owned = Spectrum::of(data)?;
                Some(&owned)
            }
            (None, false) => None,
        };
        Ok(match *self {
            Method::Mom { k, comb } => per(Mom { k }.fit(need_graph()?, comb)?),
            Method::Tle { k, epsilon, comb } => {
                per(Tle { k, epsilon }.fit(data, need_graph()?, comb)?)
            }
            Method::Mada { k, comb } => per(Mada { k }.fit(need_graph()?, comb)?),
            Method::Mle {
                k,
                comb,
                unbiased,
                sigma,
            } => {
                let g = need_graph()?;
                let agg = match comb {
                    Combine::Harmonic => Aggregation::MacKayGhahramani,
                    Combine::Mean => Aggregation::ArithmeticMean,
                    Combine::Median => Aggregation::Median,
                };
                let m = Mle::default()
                    .k(k)
                    .aggregation(agg)
                    .unbiased(unbiased)
                    .noise(sigma);
                let mut e = m.fit(g)?;
                if unbiased {
                    e.estimator = "mle_unbiased".into();
                }
                Fitted {
                    estimate: e,
                    per_point: Some(m.per_point(g)?),
                    arrays: vec![],
                }
            }
            Method::MleGlobal { k, n, unbiased } => {
                one(GlobalMle { k, n, unbiased }.fit(need_graph()?)?)
            }
            Method::Corrint { k1, k2 } => one(CorrInt { k1, k2 }.fit(data, need_graph()?)?),
            Method::Mind {
                k,
                max_dim,
                integer,
            } => one(MindMl {
                k,
                max_dim,
                integer,
            }
            .fit(need_graph()?)?),
            Method::TwonnBayes {
                alpha,
                beta,
                posterior_mean,
                level,
            } => one(TwoNNPrior {
                alpha,
                beta,
                posterior_mean,
                level,
            }
            .fit(need_graph()?)?),
            Method::Binomial { k, r, bayes } => one(Binomial { k, r, bayes }.fit(need_graph()?)?),
            Method::Ess {
                k,
                d,
                ver,
                seed,
                comb,
                once,
            } => {
                let ess = Ess {
                    k,
                    d,
                    version: ver,
                    seed,
                };
                if once {
                    let (value, dim) = ess.once(data)?;
                    if !dim.is_finite() {
                        return Err(Error::data(
                            data.name(),
                            format!(
                                "the ESS value {value} has no dimension on the reference curve"
                            ),
                            "check the input",
                        ));
                    }
                    one(Estimate {
                        estimator: "ess".into(),
                        variant: format!(
                            "expected simplex skewness of the whole set as one neighbourhood, d = {d}"
                        ),
                        value: dim,
                        stderr: None,
                        params: serde_json::json!({"d": d, "ver": ver, "seed": seed, "essval": value}),
                        notes: vec![],
                    })
                } else {
                    per(ess.fit(data, need_graph()?, comb)?)
                }
            }
            Method::FisherS {
                conditional_number,
                project_on_sphere,
                ref alphas,
                limit_maxdim,
            } => one(FisherS {
                conditional_number,
                project_on_sphere,
                alphas: alphas.clone(),
                limit_maxdim,
            }
            .fit(data, &spectrum.expect("a spectrum").principal)?),
            Method::Pca { rule } => one(spectrum.expect("a spectrum").estimate(rule)),
            Method::BinomialRk { rk, r, bayes } => {
                let g = graph.filter(|_| rk.is_none());
                let rk = match rk {
                    Some(rk) => rk,
                    None => {
                        super::Summary::of(&need_graph()?.rank_lengths(DEFAULT_RADIUS_RANK)).median
                    }
                };
                let mut e = BinomialRadius { rk, r, bayes }.fit(data, metric)?;
                if g.is_some() {
                    e.notes.push(format!(
                        "r_k is the median length to the {DEFAULT_RADIUS_RANK}th neighbour"
                    ));
                }
                one(e)
            }
            Method::Danco {
                k,
                max_dim,
                fractal,
                seed,
                ref calibration,
                table,
            } => one(Danco {
                k,
                max_dim,
                fractal,
                seed,
                calibration: calibration.clone(),
                table,
            }
            .fit(data, need_graph()?)?),
            Method::MindKl {
                k,
                max_dim,
                sigma,
                patience,
                seed,
            } => one(MindKl {
                k,
                max_dim,
                sigma,
                patience,
                seed,
            }
            .fit(need_graph()?, data.cols())?),
            Method::Knn {
                k,
                ref ps,
                m,
                gamma,
                seed,
            } => one(GraphLength {
                k,
                ps: ps.clone().unwrap_or_else(|| (k + 1..k + 5).collect()),
                m,
                gamma,
                seed,
            }
            .fit(data, metric)?),
            Method::Ph {
                ref alpha,
                n_range_min,
                n_range_max,
                range_type,
                nsteps,
                subsamples,
                seed,
            } => one(Ph {
                alpha: alpha.clone(),
                n_range_min,
                n_range_max,
                range_type,
                nsteps,
                subsamples,
                seed,
            }
            .fit(data, metric)?),
            Method::Kstar {
                fit,
                initial_id,
                n_iter,
                alpha,
                maxk,
            } => {
                let r = Kstar {
                    fit,
                    initial_id,
                    n_iter,
                    alpha,
                    maxk,
                }
                .fit(need_graph()?)?;
                Fitted {
                    estimate: r.estimate,
                    per_point: None,
                    arrays: vec![("kstar", r.kstar.iter().map(|&k| k as f64).collect())],
                }
            }
            Method::Hidalgo(h) => {
                let r = h.fit(need_graph()?)?;
                Fitted {
                    estimate: r.estimate,
                    per_point: Some(r.per_point),
                    arrays: r.arrays,
                }
            }
        })
    }
}
