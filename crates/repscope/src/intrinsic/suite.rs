//! The intrinsic-dimension suite: one neighbour graph, every estimator, the scale curve and a recommended
//! value.
use crate::error::Param;
use serde::Serialize;
use serde_json::json;

use super::calibrated::CalibratedTwoNN;
use super::gride::{Gride, GridePoint};
use super::method::{self, Method};
use super::mle::Mle;
use super::pca::Spectrum;
use super::scale::{decimation, DecimationPoint};
use super::twonn::{TwoNN, TwoNNFit};
use super::Estimate;
use crate::data::{Dataset, Matrix};
use crate::error::{Error, Result};
use crate::neighbors::{exact_knn, KnnGraph, Metric};
use crate::partial::Passes;
use crate::progress::{Progress, Silent};

/// Every global estimator the suite knows, in output order.
pub const ESTIMATORS: &[&str] = &[
    "twonn_calibrated",
    "twonn",
    "twonn_mle",
    "mle",
    "gride",
    "pca_ev",
    "pca_fo",
    "pca_pr",
];

/// Settings of the suite; the defaults are those of METRICS.md.
#[derive(Clone, Debug)]
pub struct IdConfig {
    /// Which estimators to run (names from [`ESTIMATORS`]; "pca" means all three PCA rules).
    pub estimators: Vec<String>,
    pub discard_fraction: f64,
    pub k_mle: usize,
    pub gride_n1: usize,
    pub gride_n2: usize,
    /// Largest n2 of the GRIDE multiscale curve.
    pub range_max: usize,
    pub tau: f64,
    pub alpha: f64,
    pub metric: Metric,
    pub seed: u64,
    /// Compute the scale curve (GRIDE multiscale and decimation).
    pub scale_curve: bool,
}

impl Default for IdConfig {
    fn default() -> Self {
        IdConfig {
            estimators: ESTIMATORS.iter().map(|s| s.to_string()).collect(),
            discard_fraction: 0.1,
            k_mle: 20,
            gride_n1: 1,
            gride_n2: 2,
            range_max: 64,
            tau: 0.95,
            alpha: 0.05,
            metric: Metric::Euclidean,
            seed: 0,
            scale_curve: true,
        }
    }
}

/// The recommended dimension and why.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Recommended {
    pub estimator: String,
    pub value: f64,
    pub stderr: Option<f64>,
    pub why: String,
}

/// One point of the scale curve.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum ScalePoint {
    /// GRIDE at (n1, 2·n1) on the full set.
    Gride(GridePoint),
    /// TwoNN on subsets.
    Decimation(DecimationPoint),
}

/// Everything the suite found.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct IdReport {
    pub n: usize,
    pub d: usize,
    pub n_distinct: usize,
    pub duplicates_merged: usize,
    pub max_multiplicity: u32,
    pub metric: Metric,
    /// How the neighbour graph the estimators read was proven exact (absent when none was built).
    pub neighbours: Option<crate::neighbors::Certificate>,
    pub dimension: Option<Recommended>,
    pub estimates: Vec<Estimate>,
    pub scale_curve: Vec<ScalePoint>,
    pub notes: Vec<String>,
}

/// Every estimator name, the default eight first, in output order.
fn every() -> impl Iterator<Item = &'static str> {
    ESTIMATORS.iter().chain(method::NAMES).copied()
}

fn canonical(names: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim().to_ascii_lowercase();
        let expanded: Vec<&str> = match n.as_str() {
            "default" => ESTIMATORS.to_vec(),
            "all" => every().collect(),
            "pca" => vec!["pca_ev", "pca_fo", "pca_pr"],
            "lpca" | "pca_fo" => vec!["pca_fo"],
            "2nn" | "twonn" => vec!["twonn"],
            x => match every().find(|e| *e == x) {
                Some(e) => vec![e],
                None => {
                    return Err(Error::param(
                        Param::Estimator,
                        format!("unknown estimator '{x}'"),
                        format!(
                            "choose from: {}, pca, default, all",
                            every().collect::<Vec<_>>().join(", ")
                        ),
                    ))
                }
            },
        };
        for e in expanded {
            if !out.iter().any(|o| o == e) {
                out.push(e.to_string());
            }
        }
    }
    if out.is_empty() {
        return Err(Error::param(
            Param::Estimator,
            "no estimator given",
            "name at least one",
        ));
    }
    // Keep the canonical output order.
    out.sort_by_key(|e| every().position(|x| x == e));
    Ok(out)
}

/// Neighbours per point an estimator of the suite reads (0: none).
fn needs(name: &str, cfg: &IdConfig) -> usize {
    match name {
        "twonn" | "twonn_mle" | "twonn_calibrated" => 2,
        "mle" => cfg.k_mle,
        "gride" => cfg.gride_n2,
        other => Method::by_name(other).map_or(0, |m| m.graph_k()),
    }
}

/// How many neighbours the requested estimators need.
pub fn graph_k(cfg: &IdConfig) -> Result<usize> {
    let names = canonical(&cfg.estimators)?;
    if cfg.scale_curve && cfg.range_max < 2 {
        return Err(Error::range(
            Param::RangeMax,
            cfg.range_max,
            "a value ≥ 2 (64 is the default), or leave the scale curve out",
            format!(
                "the scale curve's first point is GRIDE at ranks (1, 2), so range_max = {} leaves no curve",
                cfg.range_max
            ),
        ));
    }
    let mut k = 0;
    for e in &names {
        k = k.max(needs(e, cfg));
    }
    if cfg.scale_curve {
        k = k.max(cfg.range_max).max(2);
    }
    Ok(k)
}

/// Runs the suite on a validated dataset.
pub fn run(ds: &Dataset, cfg: &IdConfig, progress: &dyn Progress) -> Result<IdReport> {
    run_with_graph(ds, cfg, progress).map(|(r, _)| r)
}

/// Runs the suite and also returns the neighbour graph it built on the distinct rows, so that other
/// neighbour measures (per-point LID, kNN accuracy) reuse it instead of searching again.
pub fn run_with_graph(
    ds: &Dataset,
    cfg: &IdConfig,
    progress: &dyn Progress,
) -> Result<(IdReport, Option<KnnGraph>)> {
    let nd = ds.dedup.n_distinct();
    let rows = Rows {
        name: ds.original().name(),
        n: ds.original().rows(),
        d: ds.original().cols(),
        n_distinct: nd,
        duplicates_merged: ds.dedup.merged,
        max_multiplicity: ds.dedup.max_multiplicity,
    };
    let k = neighbours(cfg, &rows)?;
    let distinct = ds.distinct();
    let graph: Option<KnnGraph> = if k > 0 {
        progress.stage("exact kNN", nd as u64);
        let adv = |n: usize| progress.advance(n as u64);
        let g = exact_knn(distinct, k, cfg.metric, Some(&adv))?;
        progress.finish_stage();
        Some(g)
    } else {
        None
    };
    let report = run_on(
        &Distinct::Matrix(distinct),
        graph.as_ref(),
        &rows,
        cfg,
        progress,
    )?;
    Ok((report, graph))
}

/// The rows the suite describes: their name and size, and their duplicates.
#[derive(Clone, Debug)]
pub struct Rows<'a> {
    pub name: &'a str,
    pub n: usize,
    pub d: usize,
    pub n_distinct: usize,
    pub duplicates_merged: usize,
    pub max_multiplicity: u32,
}

/// The neighbours per point of the graph the suite reads (0 for PCA alone): what the estimators ask for,
/// at most the distinct rows less one. An estimator named on its own that needs more neighbours than
/// the data has is an error; with "all" it is left out later with a note.
pub fn neighbours(cfg: &IdConfig, rows: &Rows<'_>) -> Result<usize> {
    let names = canonical(&cfg.estimators)?;
    let nd = rows.n_distinct;
    let want_k = graph_k(cfg)?;
    let all = cfg
        .estimators
        .iter()
        .any(|e| e.trim().eq_ignore_ascii_case("all"));
    let needs_k = names
        .iter()
        .map(|e| {
            let k = needs(e, cfg);
            if all && Method::by_name(e).is_some() {
                k.min(2)
            } else {
                k
            }
        })
        .max()
        .unwrap_or(0);
    // PCA alone needs no neighbours; every neighbour estimator needs at least two.
    if needs_k > 0 {
        crate::data::require_neighbours(
            rows.name,
            rows.n,
            nd,
            rows.duplicates_merged,
            needs_k.max(2),
            2,
            "the intrinsic-dimension suite",
        )?;
    }
    Ok(want_k.min(nd.saturating_sub(1)))
}

/// The distinct rows the estimators read beside the graph: in memory, or through passes (on a cluster).
pub enum Distinct<'a> {
    Matrix(&'a Matrix),
    Passes(&'a dyn Passes),
}

impl Distinct<'_> {
    pub fn rows(&self) -> usize {
        match self {
            Distinct::Matrix(m) => m.rows(),
            Distinct::Passes(p) => p.rows(),
        }
    }

    /// The rows `idx` (increasing), in the source's precision.
    pub fn select(&self, idx: &[usize]) -> Result<Matrix> {
        match self {
            Distinct::Matrix(m) => Ok(m.select_rows(idx)),
            Distinct::Passes(p) => crate::partial::gathered(*p, idx, &Silent),
        }
    }

    /// The covariance spectrum of the distinct rows.
    fn spectrum(&self) -> Result<Spectrum> {
        match self {
            Distinct::Matrix(m) => Spectrum::of(m),
            Distinct::Passes(p) => {
                let mom =
                    crate::moments::moments_of(*p, &crate::moments::PassConfig::SCATTER, &Silent)?;
                Spectrum::from_moments(&mom, *p, &Silent)
            }
        }
    }
}

/// Every estimator and the scale curve from the distinct rows' graph (`k` = [`neighbours`], None when 0).
pub fn run_on(
    distinct: &Distinct<'_>,
    graph: Option<&KnnGraph>,
    rows: &Rows<'_>,
    cfg: &IdConfig,
    progress: &dyn Progress,
) -> Result<IdReport> {
    let names = canonical(&cfg.estimators)?;
    let nd = rows.n_distinct;
    let mut notes = Vec::new();
    if rows.duplicates_merged > 0 {
        notes.push(format!(
            "{} duplicate rows merged (largest group {}); neighbour estimators run on the {} distinct rows",
            rows.duplicates_merged, rows.max_multiplicity, nd
        ));
    }
    let mut estimates = Vec::new();
    let mut spectrum: Option<Spectrum> = None;
    // An estimator that has no signal in this data (a lattice where every r1 = r2, say) is reported as a
    // note; the others still run.
    let mut keep = |name: &str, r: Result<Estimate>, notes: &mut Vec<String>| -> Result<()> {
        match r {
            Ok(e) => estimates.push(e),
            Err(err @ (Error::InvalidData { .. } | Error::Numerical { .. })) => {
                notes.push(format!("{name} not computed: {err}"))
            }
            Err(other) => return Err(other),
        }
        Ok(())
    };
    for e in &names {
        let name = e.as_str();
        match (name, graph) {
            ("twonn_calibrated", Some(g)) => {
                progress.stage("calibrating TwoNN", 0);
                let cal = CalibratedTwoNN {
                    discard_fraction: cfg.discard_fraction,
                    seed: cfg.seed,
                };
                keep(name, cal.fit(distinct, g), &mut notes)?;
                progress.finish_stage();
            }
            ("twonn" | "twonn_mle", Some(g)) => {
                let fit = if name == "twonn" {
                    TwoNNFit::Linear
                } else {
                    TwoNNFit::Mle
                };
                let r = TwoNN::default()
                    .discard_fraction(cfg.discard_fraction)
                    .fit_method(fit)
                    .fit(g);
                keep(name, r, &mut notes)?;
            }
            ("mle", Some(g)) => keep(name, Mle::default().k(cfg.k_mle).fit(g), &mut notes)?,
            ("gride", Some(g)) => {
                let r = Gride {
                    n1: cfg.gride_n1,
                    n2: cfg.gride_n2,
                }
                .fit(g);
                keep(name, r, &mut notes)?;
            }
            (other, g) if Method::by_name(other).is_some() => {
                let m = Method::by_name(other).expect("a known name");
                let Distinct::Matrix(rows) = distinct else {
                    return Err(Error::param(
                        Param::Estimator,
                        format!("{other} reads the rows themselves, beyond the neighbour graph, and these rows are spread over shards"),
                        "run it on the rows in memory (a sample of them), or ask for the suite's estimators",
                    ));
                };
                if m.needs_spectrum() && spectrum.is_none() {
                    progress.stage("covariance spectrum", 0);
                    spectrum = Some(distinct.spectrum()?);
                    progress.finish_stage();
                }
                if m.graph_k() > 0 && g.is_none_or(|g| g.k < m.graph_k()) {
                    notes.push(format!(
                        "{other} not computed: it reads {} neighbours per point, and there are {nd} distinct rows",
                        m.graph_k()
                    ));
                    continue;
                }
                progress.stage(other, 0);
                let r = m
                    .fit(rows, cfg.metric, g, spectrum.as_ref())
                    .map(|f| f.estimate);
                keep(name, r, &mut notes)?;
                progress.finish_stage();
            }
            ("pca_ev" | "pca_fo" | "pca_pr", _) => {
                if spectrum.is_none() {
                    progress.stage("covariance spectrum", 0);
                    // The distinct rows, like every other estimator: duplicated rows would reweight the
                    // covariance and move the estimate with a pipeline artefact.
                    spectrum = Some(distinct.spectrum()?);
                    progress.finish_stage();
                }
                if let Some(s) = &spectrum {
                    let all = s.estimates(cfg.tau, cfg.alpha);
                    for x in all.into_iter().filter(|x| x.estimator == name) {
                        keep(name, Ok(x), &mut notes)?;
                    }
                }
            }
            _ => {}
        }
    }
    let mut scale_curve = Vec::new();
    if cfg.scale_curve && graph.is_some_and(|g| g.k < 2) {
        notes.push(format!(
            "scale curve not computed: it needs 2 neighbours per point, so at least 3 distinct rows (there are {nd})"
        ));
    }
    if cfg.scale_curve {
        if let Some(g) = graph.filter(|g| g.k >= 2) {
            let mut n1 = 1;
            while 2 * n1 <= cfg.range_max.min(g.k) {
                match (Gride { n1, n2: 2 * n1 }).fit_point(g) {
                    Ok(p) => scale_curve.push(ScalePoint::Gride(p)),
                    Err(err @ (Error::InvalidData { .. } | Error::Numerical { .. })) => {
                        notes.push(format!("GRIDE ({n1}, {}) not computed: {err}", 2 * n1))
                    }
                    Err(other) => return Err(other),
                }
                n1 *= 2;
            }
            progress.stage("decimation curve", 0);
            match decimation(distinct, g, cfg.metric, cfg.discard_fraction, cfg.seed) {
                Ok(points) => scale_curve.extend(points.into_iter().map(ScalePoint::Decimation)),
                Err(err @ (Error::InvalidData { .. } | Error::Numerical { .. })) => {
                    notes.push(format!("decimation curve not computed: {err}"))
                }
                Err(other) => return Err(other),
            }
            progress.finish_stage();
        }
    }
    let dimension = recommend(&estimates, &scale_curve);
    Ok(IdReport {
        n: rows.n,
        d: rows.d,
        n_distinct: nd,
        duplicates_merged: rows.duplicates_merged,
        max_multiplicity: rows.max_multiplicity,
        metric: cfg.metric,
        neighbours: graph.map(|g| g.certificate),
        dimension,
        estimates,
        scale_curve,
        notes,
    })
}

/// The recommended estimate among those computed.
fn recommend(estimates: &[Estimate], curve: &[ScalePoint]) -> Option<Recommended> {
    let pick = |name: &str| estimates.iter().find(|e| e.estimator == name);
    // At least 10% of the points tie at a scale: its ratio estimates have little signal there.
    let tie_heavy = |n_used: usize, ties: usize| ties * 10 >= n_used + ties;
    let gride_points = || {
        curve.iter().filter_map(|p| match p {
            ScalePoint::Gride(g) => Some(g),
            _ => None,
        })
    };
    // Nearest-neighbour ties (quantised data): the estimators that read the first two neighbours are
    // passed over for GRIDE at the smallest scale where fewer than 10% of the points tie.
    if let Some(first) = gride_points().find(|g| g.n1 == 1) {
        if tie_heavy(first.n_used, first.n_ties_dropped) {
            if let Some(p) = gride_points().find(|g| !tie_heavy(g.n_used, g.n_ties_dropped)) {
                let total = first.n_used + first.n_ties_dropped;
                return Some(Recommended {
                    estimator: format!("gride({}, {})", p.n1, p.n2),
                    value: p.d,
                    stderr: Some(p.se),
                    why: format!(
                        "{} of {total} points ({:.0}%) tie at their first two neighbours (r1 = r2, quantised data), so the nearest-neighbour estimators have little signal; GRIDE at the smallest scale where fewer than 10% of the points tie",
                        first.n_ties_dropped,
                        100.0 * first.n_ties_dropped as f64 / total.max(1) as f64
                    ),
                });
            }
        }
    }
    let (e, why) = if let Some(e) = pick("twonn_calibrated") {
        (e, "TwoNN corrected for its finite-sample bias against uniform balls of the same size (DANCo-style calibration): raw neighbour estimators read high dimensions too low at finite N; of the suite's continuous estimators with a standard error, the most accurate on the 24 benchmark manifolds")
    } else if let Some(e) = pick("gride") {
        (
            e,
            "GRIDE at (n1, n2): maximum likelihood on two neighbour ranks",
        )
    } else if let Some(p) = curve.iter().find_map(|p| match p {
        // No nearest-neighbour estimate (ties everywhere): the smallest scale where neighbours separate.
        ScalePoint::Gride(g) if !tie_heavy(g.n_used, g.n_ties_dropped) => Some(g),
        _ => None,
    }) {
        return Some(Recommended {
            estimator: format!("gride({}, {})", p.n1, p.n2),
            value: p.d,
            stderr: Some(p.se),
            why: "the nearest-neighbour estimators had no signal (tied distances); GRIDE at the smallest scale where fewer than 10% of the points tie".into(),
        });
    } else if let Some(e) = pick("twonn") {
        (e, "TwoNN: the only neighbour estimator requested")
    } else {
        let e = estimates.first()?;
        (e, "the only estimator requested")
    };
    Some(Recommended {
        estimator: e.estimator.clone(),
        value: e.value,
        stderr: e.stderr,
        why: why.to_string(),
    })
}

/// Parameters of a run, for JSON output.
pub fn params_json(cfg: &IdConfig) -> serde_json::Value {
    json!({
        "discard_fraction": cfg.discard_fraction,
        "k_mle": cfg.k_mle,
        "gride": {"n1": cfg.gride_n1, "n2": cfg.gride_n2},
        "range_max": cfg.range_max,
        "tau": cfg.tau,
        "alpha": cfg.alpha,
        "metric": cfg.metric.name(),
        "seed": cfg.seed,
    })
}
