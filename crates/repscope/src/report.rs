//! The report: everything repscope knows about one or more representations, as one typed, versioned
//! document. Each section carries its own status, so one failing measure leaves the rest of the report intact.
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use crate::activations::ActivationConfig;
use crate::classes;
use crate::data::{Dataset, Labels, Matrix};
use crate::error::{Error, Result};
use crate::intrinsic::lid::Lid;
use crate::intrinsic::suite::{self, IdConfig};
use crate::intrinsic::Summary;
use crate::neighbors::{exact_knn, KnnGraph, Metric};
use crate::progress::Progress;
use crate::rng::Rng;
pub use crate::sae::eval::Histogram;
use crate::similarity::layers;
use crate::spectrum::{self, SpectrumConfig};

pub mod map;
pub mod summary;

/// The schema name and version written into every report. Version 2 added each input's `summary` and
/// `map`, the class section's `per_class` and `pairs`, and the demo's `benchmark`; every field of version
/// 1 is still written.
pub const SCHEMA: &str = "repscope.report/2";

/// Outcome of one section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

/// One section: its status, a note when it failed or was skipped, and its value.
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub status: Status,
    pub note: Option<String>,
    pub value: Option<Value>,
}

impl Section {
    pub fn ok(value: Value) -> Self {
        Section {
            status: Status::Ok,
            note: None,
            value: Some(value),
        }
    }
    pub fn failed(err: &Error) -> Self {
        Section {
            status: Status::Failed,
            note: Some(err.to_string()),
            value: None,
        }
    }
    pub fn skipped(why: impl Into<String>) -> Self {
        Section {
            status: Status::Skipped,
            note: Some(why.into()),
            value: None,
        }
    }
    /// A section from a computation, and the typed value itself for the measures that read it on (the
    /// summary, the map).
    pub fn keep<T: Serialize>(r: Result<T>) -> (Self, Option<T>) {
        match r {
            Ok(v) => (Section::from_result(Ok(&v)), Some(v)),
            Err(e) => (Section::failed(&e), None),
        }
    }
    /// A section from a computation: its value, or its error as the note.
    pub fn from_result<T: Serialize>(r: Result<T>) -> Self {
        match r.and_then(|v| {
            serde_json::to_value(v).map_err(|e| Error::Numerical {
                what: "report".into(),
                problem: e.to_string(),
            })
        }) {
            Ok(v) => Section::ok(v),
            Err(e) => Section::failed(&e),
        }
    }
}

/// The benchmark's overview (the demo's opening): each estimator's estimate against the known dimension
/// of every manifold, and each estimator's mean relative error.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Benchmark {
    /// Points per manifold.
    pub points: usize,
    /// The estimators, in column order ("recommended" is the suite's recommended value).
    pub estimators: Vec<String>,
    pub manifolds: Vec<BenchmarkManifold>,
    /// mean over manifolds of |estimate − truth| / truth, per estimator (None when none estimated).
    pub mean_relative_error: Vec<Option<f64>>,
}

/// One manifold of the benchmark.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct BenchmarkManifold {
    pub name: String,
    /// Index of its own section in `inputs`.
    pub input: usize,
    pub true_dimension: f64,
    pub ambient_dimension: usize,
    /// One per estimator, in the order of [`Benchmark::estimators`].
    pub estimates: Vec<Option<f64>>,
}

impl Benchmark {
    /// The overview, with the mean relative errors computed from the manifolds.
    pub fn new(points: usize, estimators: Vec<String>, manifolds: Vec<BenchmarkManifold>) -> Self {
        let mean_relative_error = (0..estimators.len())
            .map(|k| {
                let errs: Vec<f64> = manifolds
                    .iter()
                    .filter_map(|m| {
                        let v = m.estimates.get(k).copied().flatten()?;
                        Some((v - m.true_dimension).abs() / m.true_dimension)
                    })
                    .collect();
                (!errs.is_empty()).then(|| errs.iter().sum::<f64>() / errs.len() as f64)
            })
            .collect();
        Benchmark {
            points,
            estimators,
            manifolds,
            mean_relative_error,
        }
    }
}

/// What was analysed when `--sample` was used.
#[derive(Clone, Debug, Serialize)]
pub struct SampleInfo {
    pub rows_in_file: usize,
    pub rows_analysed: usize,
    pub seed: u64,
}

/// The report of one input matrix.
#[derive(Clone, Debug, Serialize)]
pub struct InputReport {
    pub name: String,
    pub n: usize,
    pub d: usize,
    pub n_distinct: usize,
    pub duplicates_merged: usize,
    pub sample: Option<SampleInfo>,
    /// The true intrinsic dimension, for data with a known answer (the benchmark manifolds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_dimension: Option<f64>,
    /// What the sections say, in a few sentences (see [`summary`]).
    pub summary: summary::Summary,
    /// A 2-D map of the points, when the spectrum could be computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<map::PointMap>,
    pub sections: serde_json::Map<String, Value>,
}

/// Settings of a report run.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    pub id: IdConfig,
    /// An SAE to evaluate on every input of its width (the "sae" section).
    pub sae: Option<std::sync::Arc<crate::sae::Sae>>,
    pub lid_k: usize,
    pub lid_bins: usize,
    pub sample: Option<usize>,
    pub seed: u64,
    /// The search study to add to every input (the "search" section), when asked for.
    pub search: Option<crate::search::study::StudyConfig>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            id: IdConfig::default(),
            sae: None,
            lid_k: 20,
            lid_bins: 40,
            sample: None,
            seed: 0,
            search: None,
        }
    }
}

/// The search study of the report: the study's defaults with its seed, compression curves at the default
/// widths, and no insertion-order study (many index builds; `repscope search-study` runs it).
pub fn search_config(seed: u64) -> crate::search::study::StudyConfig {
    crate::search::study::StudyConfig {
        seed,
        orders: false,
        compression: Some(crate::search::compress::CompressionConfig {
            dims: Vec::new(),
            bits: vec![8, 4],
            pca_sq: true,
            seed,
            target_recall: 0.95,
        }),
        ..Default::default()
    }
}

/// A seeded sample of `n` rows (all rows when `n` ≥ rows).
pub fn sample_rows(m: &Matrix, n: usize, seed: u64) -> (Matrix, Option<SampleInfo>) {
    if n >= m.rows() {
        return (m.clone(), None);
    }
    let idx = Rng::new(seed).sample_indices(m.rows(), n);
    (
        m.select_rows(&idx),
        Some(SampleInfo {
            rows_in_file: m.rows(),
            rows_analysed: n,
            seed,
        }),
    )
}

/// Equal-width histogram of the finite values.
pub fn histogram(values: &[f64], bins: usize) -> Histogram {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || bins == 0 {
        return Histogram {
            edges: Vec::new(),
            counts: Vec::new(),
        };
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in finite {
        let b = (((v - lo) / w) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let edges: Vec<f64> = (0..=bins).map(|i| lo + w * i as f64).collect();
    Histogram { edges, counts }
}

/// The per-point LID section: MLE at k over the suite's graph, one value per input row.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct LidSection {
    pub k: usize,
    pub summary: Summary,
    /// Distinct points whose LID is undefined (a zero neighbour distance).
    pub undefined_points: usize,
    pub histogram: Histogram,
}

/// Builds the sections that need one input: intrinsic dimension with its scale curve, the per-point LID
/// distribution (from the same neighbour graph), and any extra sections the caller adds.
pub fn input_report(
    name: &str,
    matrix: Matrix,
    labels: Option<&Labels>,
    cfg: &ReportConfig,
    progress: &dyn Progress,
) -> Result<(InputReport, Dataset)> {
    let n_file = matrix.rows();
    // Activation statistics are one linear pass: they read every row, sampled or not.
    progress.stage("activation statistics", 0);
    let (activations, activations_report) = Section::keep(crate::activations::analyse(
        &matrix,
        &ActivationConfig::default(),
        None,
    ));
    progress.finish_stage();
    // SAE evaluation is linear too: every row.
    let mut sae_report = None;
    let sae = cfg.sae.as_ref().map(|sae| {
        if sae.d != matrix.cols() {
            Section::skipped(format!(
                "the SAE reads d_in = {}, and this input has d = {}",
                sae.d,
                matrix.cols()
            ))
        } else {
            let (section, report) = Section::keep(crate::sae::eval::evaluate(
                sae,
                &matrix,
                &crate::sae::eval::EvalConfig::default(),
                progress,
            ));
            sae_report = report;
            section
        }
    });
    let (m, sample, sample_idx) = match cfg.sample {
        Some(n) if n < matrix.rows() => {
            let idx = Rng::new(cfg.seed).sample_indices(matrix.rows(), n);
            let info = SampleInfo {
                rows_in_file: matrix.rows(),
                rows_analysed: n,
                seed: cfg.seed,
            };
            (matrix.select_rows(&idx), Some(info), Some(idx))
        }
        _ => (matrix, None, None),
    };
    let ds = Dataset::new(m)?;
    let mut sections = serde_json::Map::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut put = |name: &str, s: Section| {
        if s.status == Status::Failed {
            failed.push((name.replace('_', " "), s.note.clone().unwrap_or_default()));
        }
        sections.insert(name.into(), serde_json::to_value(&s).unwrap_or(Value::Null));
    };
    let (id_report, graph) = match suite::run_with_graph(&ds, &cfg.id, progress) {
        Ok((r, g)) => (Ok(r), g),
        Err(e) => (Err(e), None),
    };
    let (id, id_report) = Section::keep(id_report);
    put("intrinsic_dimension", id);
    let lid = match &graph {
        Some(g) if g.k >= cfg.lid_k => {
            Section::from_result(Lid { k: cfg.lid_k }.per_point(g).map(|per_distinct| {
                let per_row: Vec<f64> = KnnGraph::per_input_row(&per_distinct, &ds.dedup)
                    .into_iter()
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect();
                let undefined = per_distinct.iter().filter(|v| v.is_none()).count();
                LidSection {
                    k: cfg.lid_k,
                    summary: Summary::of(&per_row),
                    undefined_points: undefined,
                    histogram: histogram(&per_row, cfg.lid_bins),
                }
            }))
        }
        _ => Section::skipped(format!("needs a neighbour graph with k ≥ {}", cfg.lid_k)),
    };
    put("lid", lid);
    progress.stage("spectrum", 0);
    let (spectrum_report, principal) = match spectrum::analyse_with_principal(
        ds.original(),
        // The report shows every measure, the coding rate included (the spectrum's default leaves it out).
        &SpectrumConfig {
            coding_rate: true,
            ..SpectrumConfig::default()
        },
        &crate::progress::Silent,
    ) {
        Ok((r, p)) => (Ok(r), Some(p)),
        Err(e) => (Err(e), None),
    };
    let (spectrum, spectrum_report) = Section::keep(spectrum_report);
    progress.finish_stage();
    put("spectrum", spectrum);
    put("activations", activations);
    if let Some(sae) = sae {
        put("sae", sae);
    }
    let mut class_report = None;
    let mut map_labels = None;
    if let Some(l) = labels {
        progress.stage("class geometry", 0);
        let labels_here = match &sample_idx {
            // Rebuilt from the sampled rows' names, so classes absent from the sample disappear.
            Some(idx) => {
                let raw: Vec<String> = idx
                    .iter()
                    .map(|&i| l.names[l.ids.get(i).copied().unwrap_or(0) as usize].clone())
                    .collect();
                let numeric = raw.iter().all(|s| s.parse::<i64>().is_ok());
                let mut rebuilt = Labels::from_strings(raw, numeric);
                // Names mapped from a file are not numbers: keep the file's order of the classes.
                if !numeric && l.names.iter().any(|n| n.parse::<i64>().is_err()) {
                    rebuilt = reorder_like(rebuilt, &l.names);
                }
                rebuilt
            }
            None => l.clone(),
        };
        // (One label per row was checked before any work; `class_geometry` checks it again.)
        let classes = if labels_here.n_classes() < 2 {
            Section::skipped(format!(
                "every row has the same label ({}): class geometry, its pictures and the class heatmap need two classes or more",
                labels_here.names.first().map(String::as_str).unwrap_or("none")
            ))
        } else if labels_here.n_classes() == labels_here.ids.len() {
            Section::skipped(format!(
                "every one of the {} rows is its own class: within-class spreads are 0 by construction, so there is no class geometry and no class heatmap",
                labels_here.ids.len()
            ))
        } else {
            let (section, report) = Section::keep(class_geometry(
                &ds,
                &labels_here,
                graph.as_ref(),
                l.ids.len(),
                n_file,
            ));
            class_report = report;
            section
        };
        progress.finish_stage();
        put("classes", classes);
        if class_report.is_some() {
            map_labels = Some(labels_here);
        }
    }
    let mut search_report = None;
    if let Some(study_cfg) = &cfg.search {
        progress.stage("search study", 0);
        let (section, report) = Section::keep(search_study(&ds, study_cfg, progress));
        search_report = report;
        progress.finish_stage();
        put("search", section);
    }
    let map = principal
        .as_ref()
        .and_then(|p| map::pca_map(ds.original(), p, map_labels.as_ref(), cfg.seed));
    let summary = summary::summarise(&summary::Inputs {
        id: id_report.as_ref(),
        spectrum: spectrum_report.as_ref(),
        activations: activations_report.as_ref(),
        classes: class_report.as_ref(),
        sae: sae_report.as_ref(),
        search: search_report.as_ref(),
        duplicates_merged: ds.dedup.merged,
        sample: sample.as_ref().map(|s| (s.rows_analysed, s.rows_in_file)),
        failed,
    });
    Ok((
        InputReport {
            name: name.to_string(),
            n: ds.original().rows(),
            d: ds.original().cols(),
            n_distinct: ds.dedup.n_distinct(),
            duplicates_merged: ds.dedup.merged,
            sample,
            known_dimension: None,
            summary,
            map,
            sections,
        },
        ds,
    ))
}

/// The search study on the distinct rows: a seeded tenth (at most 1,000) held out as queries; the
/// compression widths default to the data's (d/2, d/4, 64, 32).
fn search_study(
    ds: &Dataset,
    cfg: &crate::search::study::StudyConfig,
    progress: &dyn Progress,
) -> Result<crate::search::study::StudyReport> {
    use crate::search::{compress, study};
    let split = study::held_out_split(ds.distinct(), None, cfg.k, None, cfg.seed)?;
    let mut cfg = cfg.clone();
    if let Some(c) = cfg.compression.as_mut().filter(|c| c.dims.is_empty()) {
        c.dims = compress::default_dims(ds.distinct().cols());
    }
    study::validate(&split.refs, &split.queries, None, &cfg)?;
    study::run(&split.refs, &split.queries, None, &cfg, progress)
}

/// Labels renumbered so that their classes follow the order of `names` (the classes of the whole input).
fn reorder_like(l: Labels, names: &[String]) -> Labels {
    let mut order: Vec<usize> = (0..l.names.len()).collect();
    let rank = |n: &String| names.iter().position(|m| m == n).unwrap_or(usize::MAX);
    order.sort_by_key(|&k| rank(&l.names[k]));
    let mut new_id = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_id[old] = new as u32;
    }
    Labels {
        ids: l.ids.iter().map(|&i| new_id[i as usize]).collect(),
        names: order.iter().map(|&k| l.names[k].clone()).collect(),
    }
}

/// Class geometry, reusing the suite's neighbour graph when the rows had no duplicates.
fn class_geometry(
    ds: &Dataset,
    labels: &Labels,
    graph: Option<&KnnGraph>,
    n_labels: usize,
    n_file: usize,
) -> Result<classes::ClassReport> {
    if n_labels != n_file {
        return Err(Error::data(
            "labels",
            format!("{n_labels} labels for {n_file} rows"),
            "pass one label per row of the input, in the same order",
        ));
    }
    let cfg = classes::ClassConfig::default();
    let own;
    let g = match graph {
        Some(g) if !ds.dedup.has_duplicates() && g.k >= cfg.k && g.metric == Metric::Euclidean => {
            own = g.truncated(cfg.k);
            Some(&own)
        }
        _ if ds.original().rows() > cfg.k => {
            own = exact_knn(ds.original(), cfg.k, Metric::Euclidean, None)?;
            Some(&own)
        }
        _ => None,
    };
    classes::analyse(ds.original(), labels, None, g, &cfg)
}

/// The layer study over inputs that hold the same rows: ID and spectrum per layer, debiased CKA and
/// mutual kNN between layers.
pub fn layers_section(inputs: &[(String, Matrix)], progress: &dyn Progress) -> Section {
    if inputs.len() < 2 {
        return Section::skipped("needs two or more inputs (or arrays) with the same rows");
    }
    let n = inputs[0].1.rows();
    if let Some((name, m)) = inputs.iter().find(|(_, m)| m.rows() != n) {
        return Section::skipped(format!(
            "the inputs do not hold the same rows ({name} has {} rows, {} has {n})",
            m.rows(),
            inputs[0].0
        ));
    }
    Section::from_result(layers::study(
        inputs,
        &layers::LayersConfig::default(),
        progress,
    ))
}

/// Whether any section of a report document failed.
pub fn any_failed(doc: &Value) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(o) => {
                o.get("status").and_then(|s| s.as_str()) == Some("failed") || o.values().any(walk)
            }
            Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    walk(doc)
}

/// The report document around the per-input reports. `command` is how the report was asked for (the
/// command line, or the Python call), shown on the page.
pub fn document(inputs: Vec<Value>, seed: u64, command: &str) -> Value {
    json!({
        "schema": SCHEMA,
        "repscope_version": crate::VERSION,
        "command": command,
        "seed": seed,
        "inputs": inputs,
    })
}

/// The whole report document of named matrices: every input's sections (each validated first, so bad input
/// fails before any work) and, for two or more inputs with the same rows, the layer study.
pub fn build(
    matrices: Vec<(String, Matrix)>,
    labels: Option<&Labels>,
    labels_name: &str,
    cfg: &ReportConfig,
    command: &str,
    progress: &dyn Progress,
) -> Result<Value> {
    for (_, m) in &matrices {
        crate::data::check_finite(m)?;
        if let Some(l) = labels {
            classes::check_label_rows(m.rows(), m.name(), l, labels_name)?;
        }
    }
    // The layer study sees the same (sampled) rows as the per-input sections.
    let layer_inputs: Vec<(String, Matrix)> = if matrices.len() >= 2 {
        matrices
            .iter()
            .map(|(n, m)| {
                (
                    n.clone(),
                    cfg.sample
                        .map(|s| sample_rows(m, s, cfg.seed).0)
                        .unwrap_or_else(|| m.clone()),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut inputs = Vec::new();
    for (name, m) in matrices {
        progress.stage(&format!("report: {name}"), 0);
        progress.finish_stage();
        let (r, _ds) = input_report(&name, m, labels, cfg, progress)?;
        inputs.push(serde_json::to_value(&r).unwrap_or(Value::Null));
    }
    let mut doc = document(inputs, cfg.seed, command);
    if !layer_inputs.is_empty() {
        progress.stage("layer study", 0);
        let layers = layers_section(&layer_inputs, progress);
        progress.finish_stage();
        doc["layers"] = serde_json::to_value(&layers).unwrap_or(Value::Null);
    }
    Ok(doc)
}

/// Writes report.json and the HTML page rendered from it (report.html) into `dir`; returns their paths.
pub fn write_files(dir: &Path, doc: &Value) -> Result<(PathBuf, PathBuf)> {
    let json_path = dir.join("report.json");
    let html_path = dir.join("report.html");
    let text = serde_json::to_string_pretty(doc).map_err(|e| Error::Numerical {
        what: "report".into(),
        problem: format!("cannot encode the report: {e}"),
    })?;
    let write = |path: &Path, text: &str| crate::data::write_atomic(path, text.as_bytes());
    write(&json_path, &text)?;
    write(&html_path, &crate::html::render(doc))?;
    Ok((json_path, html_path))
}
