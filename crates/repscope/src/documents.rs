//! The JSON documents the faces print: each report with its input, its parameters and the version. The CLI
//! (`--json`) and the Python package build them here, so the two give the same names and the same numbers.
use serde::Serialize;
use serde_json::{json, Value};

use crate::activations::{ActivationConfig, ActivationReport};
use crate::classes::{ClassConfig, ClassReport};
use crate::data::matrix::Precision;
use crate::data::source::RowSource;
use crate::data::Matrix;
use crate::intrinsic::suite::{self, IdConfig, IdReport};
use crate::similarity::layers::{LayersConfig, LayersReport};
use crate::similarity::SimilarityReport;
use crate::spectrum::{SpectrumConfig, SpectrumReport};

/// How an input is described: where it came from (a path and key for a file, none for an in-memory array)
/// and its shape.
pub fn input(path: Option<&str>, key: Option<&str>, m: &Matrix) -> Value {
    json!({
        "path": path,
        "key": key,
        "rows": m.rows(),
        "cols": m.cols(),
        // f64 input is kept in f64 for the exact re-rank, centring, spectra, similarity and classes.
        "precision": m.precision(),
    })
}

/// A row source (one file, or shards) as the input of a document.
pub fn source(paths: &[String], key: Option<&str>, src: &dyn RowSource) -> Value {
    described(paths, key, &crate::partial::Local(src))
}

/// Rows read through passes (in this process or on a cluster) as the input of a document.
pub fn described(paths: &[String], key: Option<&str>, src: &dyn crate::partial::Passes) -> Value {
    input_of(
        paths,
        key,
        src.name(),
        src.rows(),
        src.cols(),
        src.shards(),
        src.elem(),
    )
}

/// The input of a document from its parts: the paths (and array key) it was read from, its name, size,
/// shards and element type.
pub fn input_of(
    paths: &[String],
    key: Option<&str>,
    name: &str,
    rows: usize,
    cols: usize,
    shards: usize,
    elem: crate::data::source::Elem,
) -> Value {
    use crate::data::source::Elem;
    json!({
        "path": (paths.len() == 1).then(|| paths[0].clone()),
        "paths": paths,
        "key": key,
        "name": name,
        "rows": rows,
        "cols": cols,
        "shards": shards,
        "dtype": elem.name(),
        "precision": if elem == Elem::F64 { Precision::F64 } else { Precision::F32 },
    })
}

/// The report as a JSON object with `extra` fields added (an empty object if it does not serialize).
fn with(report: &impl Serialize, extra: Vec<(&str, Value)>) -> Value {
    let mut v = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        for (k, x) in extra {
            o.insert(k.into(), x);
        }
        o.insert("repscope_version".into(), json!(crate::VERSION));
    }
    v
}

/// The intrinsic-dimension suite (`repscope id`).
pub fn id(report: &IdReport, input: Value, cfg: &IdConfig) -> Value {
    with(
        report,
        vec![("input", input), ("params", suite::params_json(cfg))],
    )
}

/// The spectrum (`repscope spectrum`).
pub fn spectrum(report: &SpectrumReport, input: Value, cfg: &SpectrumConfig) -> Value {
    with(
        report,
        vec![
            ("input", input),
            (
                "params",
                json!({"eps2": cfg.eps2, "coding_rate": cfg.coding_rate, "duplicates": cfg.duplicates, "alpha_window": [cfg.alpha_window.0, cfg.alpha_window.1], "top_rogue": cfg.top_rogue, "covariance": "centred, divided by n - 1"}),
            ),
        ],
    )
}

/// The parameters of the activation statistics, as the documents state them.
pub fn activations_params(cfg: &ActivationConfig) -> Value {
    json!({
        "massive_abs": cfg.massive_abs,
        "massive_ratio": cfg.massive_ratio,
        "eps": cfg.eps,
        "peak_factor": cfg.peak_factor,
        "outlier_sigma": cfg.outlier_sigma,
        "top_rogue": cfg.top_rogue,
        "max_listed": cfg.max_listed,
        "duplicates": cfg.duplicates,
        "std_ddof": 0,
        "quantiles": "linear interpolation",
    })
}

/// Activation statistics (`repscope activations`). `tokens` says where token ids and their spelling came
/// from.
pub fn activations(
    report: &ActivationReport,
    input: Value,
    cfg: &ActivationConfig,
    tokens: Value,
) -> Value {
    with(
        report,
        vec![
            ("input", input),
            ("tokens", tokens),
            ("params", activations_params(cfg)),
        ],
    )
}

/// Class geometry (`repscope classes`). `labels` and `classifier` say where they came from (a path, or
/// null for in-memory arrays).
pub fn classes(
    report: &ClassReport,
    input: Value,
    labels: Value,
    cfg: &ClassConfig,
    classifier: Option<String>,
) -> Value {
    with(
        report,
        vec![
            ("input", input),
            ("labels", labels),
            (
                "params",
                json!({"k": cfg.k, "knn_metric": "euclidean", "pinv_rtol": cfg.pinv_rtol, "nc2_std_ddof": 0, "classifier": classifier}),
            ),
        ],
    )
}

/// Similarity of two representations (`repscope compare`). `timing` holds the seconds spent.
pub fn compare(report: &SimilarityReport, a: Value, b: Value, timing: Value) -> Value {
    with(
        report,
        vec![("input", json!({"a": a, "b": b})), ("timing_s", timing)],
    )
}

/// The layer study (`repscope layers`).
pub fn layers(report: &LayersReport, input: Value, cfg: &LayersConfig) -> Value {
    with(
        report,
        vec![
            ("input", input),
            (
                "params",
                json!({"k": cfg.k, "knn_metric": "cosine", "cka": "linear, debiased (HSIC1)", "id": suite::params_json(&cfg.id)}),
            ),
        ],
    )
}
