//! Similarity of two representations of the same n inputs (X: n × d1, Y: n × d2, any widths):
//! CKA (linear biased/debiased by two routes, RBF, minibatch), the CCA family, Procrustes, RSA, mutual kNN,
//! CKNNA and relative representations. Definitions follow METRICS.md.
pub mod cca;
pub mod cka;
pub mod imbalance;
pub mod knn_alignment;
pub mod layers;
pub mod procrustes;
pub mod relative;
pub mod rsa;

use crate::error::{Param, Text};
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::data::source::{Joined, RowSource};
use crate::data::{check_finite, Labels, Matrix};
use crate::error::{Error, Result};
use crate::partial::{Local, Passes};
use crate::progress::Progress;

pub use cca::CcaRoute;
pub use cka::{RbfMedian, Route};
pub use relative::AnchorMode;

/// Every measure `compare` knows, in output order.
pub const MEASURES: &[&str] = &[
    "cka_linear",
    "cka_linear_debiased",
    "cka_rbf",
    "cka_minibatch",
    "cca_mean_rho",
    "cca_r2",
    "svcca",
    "pwcca",
    "procrustes_angular",
    "procrustes_euclidean",
    "rsa_spearman",
    "mutual_knn",
    "knn_jaccard",
    "cknna",
    "relative_cos",
    "stitching_accuracy",
    "imbalance_x_to_y",
    "imbalance_y_to_x",
];

/// Measures computed only when asked for (by name, group or "all"): minibatch CKA, and the information
/// imbalance (two more exact all-pairs passes).
const ON_REQUEST: &[&str] = &["cka_minibatch", "imbalance_x_to_y", "imbalance_y_to_x"];

/// Measures that need n × n matrices.
const NEEDS_GRAM: &[&str] = &["cka_rbf", "rsa_spearman"];
/// The CCA family.
const NEEDS_SVD: &[&str] = &["cca_mean_rho", "cca_r2", "svcca", "pwcca"];
/// Measures computed from one streaming pass of sums (linear CKA by the feature route, the CCA family by
/// the covariance route, Procrustes), so that they run on sources larger than memory.
pub const STREAMED: &[&str] = &[
    "cka_linear",
    "cka_linear_debiased",
    "cca_mean_rho",
    "cca_r2",
    "svcca",
    "pwcca",
    "procrustes_angular",
    "procrustes_euclidean",
];

/// Expands names and groups (cka, cca, procrustes, knn, relative, all) into canonical measure names.
pub fn canonical_measures(names: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<&str> = Vec::new();
    for raw in names {
        for name in raw.split(',') {
            let n = name.trim().to_ascii_lowercase();
            let group: Vec<&str> = match n.as_str() {
                "all" => MEASURES.to_vec(),
                "cka" => vec!["cka_linear", "cka_linear_debiased"],
                "cca" => vec!["cca_mean_rho", "cca_r2", "svcca", "pwcca"],
                "procrustes" => vec!["procrustes_angular", "procrustes_euclidean"],
                "rsa" => vec!["rsa_spearman"],
                "knn" | "mutual_knn" => vec!["mutual_knn", "knn_jaccard"],
                "relative" => vec!["relative_cos"],
                "stitching" => vec!["relative_cos", "stitching_accuracy"],
                "imbalance" | "information_imbalance" => {
                    vec!["imbalance_x_to_y", "imbalance_y_to_x"]
                }
                x => match MEASURES.iter().find(|m| **m == x) {
                    Some(m) => vec![*m],
                    None => {
                        return Err(Error::param(
                            Param::Metric,
                            format!("unknown measure '{x}'"),
                            format!(
                            "choose from: {}; or a group: cka, cca, procrustes, knn, relative, imbalance, all",
                            MEASURES.join(", ")
                        ),
                        ))
                    }
                },
            };
            for g in group {
                if !out.contains(&g) {
                    out.push(g);
                }
            }
        }
    }
    out.sort_by_key(|m| MEASURES.iter().position(|x| x == m));
    Ok(out.into_iter().map(String::from).collect())
}

/// Settings of a comparison; the defaults are those of METRICS.md.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// Measures to compute; empty means every measure that fits (minibatch CKA and stitching only when
    /// asked or when labels are given).
    pub measures: Vec<String>,
    /// Route of linear CKA; None chooses the cheaper.
    pub route: Option<Route>,
    /// Route of the CCA family; None chooses the SVD route when the sides fit its limit.
    pub cca_route: Option<CcaRoute>,
    /// Rows per chunk of a streaming pass (None: about 2¹⁸ values).
    pub chunk_rows: Option<usize>,
    pub rbf_threshold: f64,
    pub rbf_median: RbfMedian,
    pub batch_size: usize,
    pub k: usize,
    /// Anchors of the relative representation; None means min(100, n).
    pub anchors: Option<usize>,
    pub anchor_mode: AnchorMode,
    pub svcca_threshold: f64,
    /// Largest n for measures that hold n × n matrices.
    pub gram_limit: usize,
    pub seed: u64,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            measures: Vec::new(),
            route: None,
            cca_route: None,
            chunk_rows: None,
            rbf_threshold: 1.0,
            rbf_median: RbfMedian::DistinctPairs,
            batch_size: 1000,
            k: 10,
            anchors: None,
            anchor_mode: AnchorMode::First,
            svcca_threshold: 0.99,
            gram_limit: 20_000,
            seed: 0,
        }
    }
}

/// The detailed results behind the headline numbers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_linear: Option<cka::LinearCka>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_rbf: Option<cka::RbfCka>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cka_minibatch: Option<cka::MinibatchCka>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cca: Option<cca::Cca>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svcca: Option<cca::Svcca>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pwcca: Option<cca::Pwcca>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procrustes: Option<procrustes::Procrustes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutual_knn: Option<knn_alignment::MutualKnn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative: Option<relative::Relative>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub information_imbalance: Option<imbalance::InformationImbalance>,
}

/// Everything `repscope compare` reports.
#[derive(Clone, Debug, Serialize)]
pub struct SimilarityReport {
    pub n: usize,
    pub d1: usize,
    pub d2: usize,
    /// Headline value of every measure computed, by canonical name.
    pub measures: BTreeMap<String, f64>,
    pub details: Details,
    /// Problems with a value the user must know about (for example CCA with more dimensions than rows).
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    pub params: serde_json::Value,
}

fn wanted(
    cfg: &CompareConfig,
    n: usize,
    labels: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<String>> {
    if !cfg.measures.is_empty() {
        let mut m = canonical_measures(&cfg.measures)?;
        // "all" means every measure that applies: without labels, stitching accuracy is left out with a
        // note; asked for by name (or as the stitching group), it needs labels.
        let named_stitching = cfg.measures.iter().flat_map(|r| r.split(',')).any(|x| {
            let x = x.trim().to_ascii_lowercase();
            x == "stitching_accuracy" || x == "stitching"
        });
        if !labels && !named_stitching && m.iter().any(|x| x == "stitching_accuracy") {
            m.retain(|x| x != "stitching_accuracy");
            notes.push("stitching_accuracy skipped: it needs labels (one per row)".into());
        }
        for name in &m {
            if NEEDS_GRAM.contains(&name.as_str()) && n > cfg.gram_limit {
                return Err(Error::param(
                    Param::Metric,
                    format!("{name} holds n × n matrices, and n = {n} is above the limit of {}", cfg.gram_limit),
                    Text::from("subsample rows, raise ")
                        .param(Param::GramLimit)
                        .then(" if memory allows (8·n² bytes per matrix), or use linear CKA / cka_minibatch"),
                ));
            }
            if name == "stitching_accuracy" && !labels {
                return Err(Error::param(
                    Param::Metric,
                    "stitching_accuracy needs labels",
                    Text::from("pass ")
                        .param(Param::Labels)
                        .then(" (one label per row)"),
                ));
            }
        }
        return Ok(m);
    }
    let mut out = Vec::new();
    for &m in MEASURES {
        if ON_REQUEST.contains(&m) || (m == "stitching_accuracy" && !labels) {
            continue;
        }
        if NEEDS_GRAM.contains(&m) && n > cfg.gram_limit {
            notes.push(format!(
                "{m} skipped: it holds n × n matrices and n = {n} > {} (ask for it by name and raise the Gram limit to force it)",
                cfg.gram_limit
            ));
            continue;
        }
        out.push(m.to_string());
    }
    Ok(out)
}

/// Whether every row equals the first, as given (f64 values where the input had them).
fn is_constant(m: &Matrix) -> bool {
    let n = m.rows();
    match m.values_f64() {
        Some(v) => {
            let d = m.cols();
            (1..n).all(|i| v[i * d..(i + 1) * d] == v[..d])
        }
        None => (1..n).all(|i| m.row(i) == m.row(0)),
    }
}

fn check_svcca_threshold(cfg: &CompareConfig) -> Result<()> {
    if !(cfg.svcca_threshold > 0.0 && cfg.svcca_threshold <= 1.0) {
        return Err(Error::range(
            Param::SvccaThreshold,
            cfg.svcca_threshold,
            "a share of variance in (0, 1] (0.99 is usual)",
            format!(
                "SVCCA keeps the directions that explain this share of the variance, and {} is not a share",
                cfg.svcca_threshold
            ),
        ));
    }
    Ok(())
}

/// Compares two representations of the same rows. Both must be finite and vary; the row counts must match.
pub fn compare(
    x: &Matrix,
    y: &Matrix,
    labels: Option<&Labels>,
    cfg: &CompareConfig,
    progress: &dyn Progress,
) -> Result<SimilarityReport> {
    cka::check_pair(x, y)?;
    check_finite(x)?;
    check_finite(y)?;
    check_svcca_threshold(cfg)?;
    for m in [x, y] {
        if is_constant(m) {
            return Err(Error::data(
                m.name(),
                format!("all {} rows are the same, so the representation has no variance and its similarity to anything is undefined (CKA and CCA would divide 0 by 0)", m.rows()),
                "pass a representation whose rows differ",
            ));
        }
    }
    let n = x.rows();
    if let Some(l) = labels {
        if l.ids.len() != n {
            return Err(Error::data(
                "labels",
                format!("{} labels for {n} rows", l.ids.len()),
                "pass exactly one label per row, in the same order as the data",
            ));
        }
    }
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let want = wanted(cfg, n, labels.is_some(), &mut notes)?;
    let has = |m: &str| want.iter().any(|w| w == m);
    let mut measures = BTreeMap::new();
    let mut details = Details::default();

    let route = cfg
        .route
        .unwrap_or_else(|| Route::auto(n, x.cols() + y.cols()));
    let cca_route = cfg
        .cca_route
        .unwrap_or_else(|| CcaRoute::auto(n, x.cols(), y.cols()));
    if route == Route::Gram
        && n > cfg.gram_limit
        && (has("cka_linear") || has("cka_linear_debiased"))
    {
        return Err(Error::param(
            Param::CkaRoute,
            format!(
                "the Gram route holds two n × n matrices and n = {n} > {}",
                cfg.gram_limit
            ),
            "use the feature route (the default for n > d)",
        ));
    }
    let need_stats = (route == Route::Feature && (has("cka_linear") || has("cka_linear_debiased")))
        || has("procrustes_angular")
        || has("procrustes_euclidean")
        || (cca_route == CcaRoute::Covariance && NEEDS_SVD.iter().any(|m| has(m)));
    let stats = if need_stats {
        Some(cka::FeatureStats::collect(x, y, progress)?)
    } else {
        None
    };
    if route == Route::Gram && (has("cka_linear") || has("cka_linear_debiased")) {
        progress.stage("linear CKA", 0);
        let r = cka::linear_cka(x, y, route, None)?;
        progress.finish_stage();
        details.cka_linear = Some(r);
    }
    let sides = if cca_route == CcaRoute::Svd && NEEDS_SVD.iter().any(|m| has(m)) {
        progress.stage("CCA (SVD of each side)", 0);
        let (sx, sy) = rayon::join(|| cca::Side::new(x), || cca::Side::new(y));
        progress.finish_stage();
        Some((sx?, sy?))
    } else {
        None
    };
    let mut out = Linear {
        measures: &mut measures,
        details: &mut details,
        warnings: &mut warnings,
        notes: &mut notes,
    };
    out.fill(
        &want,
        n,
        (x.cols(), y.cols()),
        stats.as_ref(),
        sides,
        cfg,
        (x.name(), y.name()),
    )?;
    if has("cka_rbf") {
        progress.stage("RBF CKA", 0);
        let r = cka::rbf_cka(x, y, cfg.rbf_threshold, cfg.rbf_median)?;
        progress.finish_stage();
        measures.insert("cka_rbf".into(), r.value);
        details.cka_rbf = Some(r);
    }
    if has("cka_minibatch") {
        progress.stage("minibatch CKA", 0);
        let r = cka::minibatch_cka(x, y, cfg.batch_size)?;
        progress.finish_stage();
        measures.insert("cka_minibatch".into(), r.value);
        details.cka_minibatch = Some(r);
    }
    if has("rsa_spearman") {
        progress.stage("RSA", 0);
        measures.insert("rsa_spearman".into(), rsa::rsa_spearman(x, y)?);
        progress.finish_stage();
    }
    if has("mutual_knn") || has("knn_jaccard") || has("cknna") {
        progress.stage("cosine kNN (both spaces)", 2 * n as u64);
        let adv = |k: usize| progress.advance(k as u64);
        let (gx, gy) = knn_alignment::graphs(x, y, cfg.k, Some(&adv))?;
        progress.finish_stage();
        let mk = knn_alignment::mutual_knn(&gx, &gy, cfg.k);
        if has("mutual_knn") {
            measures.insert("mutual_knn".into(), mk.mean_overlap);
        }
        if has("knn_jaccard") {
            measures.insert("knn_jaccard".into(), mk.mean_jaccard);
        }
        if has("cknna") {
            if n < 4 {
                return Err(Error::data(
                    x.name(),
                    "CKNNA needs at least 4 rows",
                    "pass more rows",
                ));
            }
            measures.insert("cknna".into(), knn_alignment::cknna(&gx, &gy, cfg.k));
        }
        details.mutual_knn = Some(mk);
    }
    if has("imbalance_x_to_y") || has("imbalance_y_to_x") {
        progress.stage("information imbalance", 0);
        let r = imbalance::information_imbalance(x, y, crate::neighbors::Metric::Euclidean)?;
        progress.finish_stage();
        if has("imbalance_x_to_y") {
            measures.insert("imbalance_x_to_y".into(), r.x_to_y);
        }
        if has("imbalance_y_to_x") {
            measures.insert("imbalance_y_to_x".into(), r.y_to_x);
        }
        details.information_imbalance = Some(r);
    }
    if has("relative_cos") || has("stitching_accuracy") {
        let m = match cfg.anchors {
            Some(m) => m,
            None => 100.min(n),
        };
        let r = relative::relative(
            x,
            y,
            m,
            cfg.anchor_mode,
            cfg.seed,
            labels.filter(|_| has("stitching_accuracy")),
        )?;
        measures.insert("relative_cos".into(), r.mean_cos);
        if let Some(s) = &r.stitching {
            measures.insert("stitching_accuracy".into(), s.accuracy);
        }
        details.relative = Some(r);
    }
    let params = json!({
        "measures": want,
        "cka_route": route,
        "cca_route": cca_route,
        "rbf_threshold": cfg.rbf_threshold,
        "rbf_median": cfg.rbf_median,
        "batch_size": cfg.batch_size,
        "k": cfg.k,
        "knn_metric": "cosine",
        "anchors": cfg.anchors.unwrap_or(100.min(n)),
        "anchor_mode": cfg.anchor_mode,
        "svcca_threshold": cfg.svcca_threshold,
        "gram_limit": cfg.gram_limit,
        "seed": cfg.seed,
    });
    Ok(SimilarityReport {
        n,
        d1: x.cols(),
        d2: y.cols(),
        measures,
        details,
        warnings,
        notes,
        params,
    })
}

/// Where the linear measures go.
struct Linear<'a> {
    measures: &'a mut BTreeMap<String, f64>,
    details: &'a mut Details,
    warnings: &'a mut Vec<String>,
    notes: &'a mut Vec<String>,
}

impl Linear<'_> {
    /// The linear measures from the one pass of sums (`stats`) or the in-memory SVDs (`sides`): linear CKA
    /// by the feature route (a Gram-route value already in `details` is kept), the CCA family and Procrustes.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        want: &[String],
        n: usize,
        (dx, dy): (usize, usize),
        stats: Option<&cka::FeatureStats>,
        sides: Option<(cca::Side, cca::Side)>,
        cfg: &CompareConfig,
        names: (&str, &str),
    ) -> Result<()> {
        let has = |m: &str| want.iter().any(|w| w == m);
        if has("cka_linear") || has("cka_linear_debiased") {
            let r = match self.details.cka_linear.take() {
                Some(r) => r,
                None => {
                    let st = stats.expect("the feature route reads the pass of sums");
                    cka::LinearCka {
                        biased: st.cka_biased(),
                        debiased: st.cka_debiased(),
                        route: Route::Feature,
                    }
                }
            };
            if has("cka_linear") {
                self.measures.insert("cka_linear".into(), r.biased);
            }
            if has("cka_linear_debiased") {
                self.measures
                    .insert("cka_linear_debiased".into(), r.debiased);
            }
            let ratio = dx.max(dy) as f64 / n as f64;
            if has("cka_linear") && ratio > 0.1 {
                self.notes.push(format!(
                    "biased linear CKA drifts towards 1 as d/n grows (here d/n = {ratio:.2}); prefer cka_linear_debiased"
                ));
            }
            self.details.cka_linear = Some(r);
        }
        if NEEDS_SVD.iter().any(|m| has(m)) {
            let (sx, sy) = match sides {
                Some(s) => s,
                None => {
                    let st = stats.expect("the covariance route reads the pass of sums");
                    cca::Side::pair_from_scatter(&st.centred_scatter(), dx, n, names)?
                }
            };
            if has("cca_mean_rho") || has("cca_r2") {
                let c = cca::cca(&sx, &sy)?;
                if has("cca_mean_rho") {
                    self.measures.insert("cca_mean_rho".into(), c.mean_rho);
                }
                if has("cca_r2") {
                    self.measures.insert("cca_r2".into(), c.r2);
                }
                self.warnings.extend(c.warning.clone());
                self.details.cca = Some(c);
            }
            if has("svcca") {
                let s = cca::svcca(&sx, &sy, cfg.svcca_threshold)?;
                self.measures.insert("svcca".into(), s.value);
                self.warnings.extend(s.warning.clone());
                self.details.svcca = Some(s);
            }
            if has("pwcca") {
                let p = cca::pwcca(&sx, &sy)?;
                self.measures.insert("pwcca".into(), p.value);
                self.warnings.extend(p.warning.clone());
                self.details.pwcca = Some(p);
            }
        }
        if has("procrustes_angular") || has("procrustes_euclidean") {
            let st = stats.expect("Procrustes reads the pass of sums");
            let p = procrustes::procrustes(st)?;
            if has("procrustes_angular") {
                self.measures.insert("procrustes_angular".into(), p.angular);
            }
            if has("procrustes_euclidean") {
                self.measures
                    .insert("procrustes_euclidean".into(), p.euclidean);
            }
            self.details.procrustes = Some(p);
        }
        Ok(())
    }
}

/// Compares two row sources of the same rows in one streaming pass, whatever their size: the measures
/// of [`STREAMED`] (linear CKA by the feature route, the CCA family by the covariance route,
/// Procrustes). Memory is O((d1 + d2)²) plus two chunks of rows. The other measures need the rows in
/// memory: asked for by name they are refused; by default they are left out with a note.
pub fn compare_sources(
    x: &dyn RowSource,
    y: &dyn RowSource,
    cfg: &CompareConfig,
    progress: &dyn Progress,
) -> Result<SimilarityReport> {
    let z = Joined::new(x, y)?;
    compare_passes(&Local(&z), x.cols(), (x.name(), y.name()), cfg, progress)
}

/// [`compare_sources`] of two representations read side by side through passes (in this process or on a
/// cluster): the first `dx` columns of `p` are X; `names` name X and Y in messages.
pub fn compare_passes(
    p: &dyn Passes,
    dx: usize,
    names: (&str, &str),
    cfg: &CompareConfig,
    progress: &dyn Progress,
) -> Result<SimilarityReport> {
    let n = p.rows();
    let (d1, d2) = (dx, p.cols() - dx);
    if n < 4 {
        return Err(Error::data(
            names.0,
            format!("debiased CKA needs at least 4 rows, got {n} (HSIC₁ divides by n − 3)"),
            "pass more rows",
        ));
    }
    check_svcca_threshold(cfg)?;
    if cfg.route == Some(Route::Gram) {
        return Err(Error::param(
            Param::CkaRoute,
            "a streamed comparison has no n × n Gram matrices",
            "use the feature route",
        ));
    }
    if cfg.cca_route == Some(CcaRoute::Svd) {
        return Err(Error::param(
            Param::CcaRoute,
            "a streamed comparison does not hold the rows for an SVD",
            "use the covariance route",
        ));
    }
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let want: Vec<String> = if cfg.measures.is_empty() {
        let left: Vec<&str> = MEASURES
            .iter()
            .filter(|m| {
                !STREAMED.contains(m) && !ON_REQUEST.contains(m) && **m != "stitching_accuracy"
            })
            .copied()
            .collect();
        notes.push(format!(
            "streamed: {} need the rows in memory and were left out (compare a sample of the rows for them)",
            left.join(", ")
        ));
        STREAMED.iter().map(|m| m.to_string()).collect()
    } else {
        let m = canonical_measures(&cfg.measures)?;
        if let Some(bad) = m.iter().find(|m| !STREAMED.contains(&m.as_str())) {
            return Err(Error::param(
                Param::Metric,
                format!("{bad} needs the rows in memory, and this comparison streams them"),
                format!(
                    "compare a sample of the rows, or ask for the streamed measures: {}",
                    STREAMED.join(", ")
                ),
            ));
        }
        m
    };
    let stats = cka::FeatureStats::from_passes(p, dx, cfg.chunk_rows, progress)?;
    let (tx, ty) = stats.centred_sq_norms();
    for (t, name) in [(tx, names.0), (ty, names.1)] {
        if t <= 0.0 {
            return Err(Error::data(
                name,
                format!("all {n} rows are the same, so the representation has no variance and its similarity to anything is undefined (CKA and CCA would divide 0 by 0)"),
                "pass a representation whose rows differ",
            ));
        }
    }
    let mut measures = BTreeMap::new();
    let mut details = Details::default();
    let mut out = Linear {
        measures: &mut measures,
        details: &mut details,
        warnings: &mut warnings,
        notes: &mut notes,
    };
    out.fill(&want, n, (d1, d2), Some(&stats), None, cfg, names)?;
    let params = json!({
        "measures": want,
        "cka_route": Route::Feature,
        "cca_route": CcaRoute::Covariance,
        "svcca_threshold": cfg.svcca_threshold,
        "streamed": true,
    });
    Ok(SimilarityReport {
        n,
        d1,
        d2,
        measures,
        details,
        warnings,
        notes,
        params,
    })
}
