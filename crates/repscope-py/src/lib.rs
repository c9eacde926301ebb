//! `repscope._repscope`: the engine seen from Python. The Python package (python/repscope) checks and converts
//! its arguments and calls these functions with C-contiguous, aligned float32 arrays, which the engine reads
//! in place. Every computation runs with the GIL released; engine errors become Python exceptions
//! (ValueError for bad input, OSError for files, RuntimeError for numerical failures) and a panic becomes a
//! RuntimeError instead of crossing the boundary.
#![forbid(unsafe_op_in_unsafe_fn)]

mod cluster;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use repscope::activations::{self, ActivationConfig};
use repscope::classes::{self, Classifier};
use repscope::data::{Dataset, Labels, Matrix};
use repscope::documents;
use repscope::intrinsic::gride::Gride;
use repscope::intrinsic::lid::Lid;
use repscope::intrinsic::pca::Spectrum;
use repscope::intrinsic::suite::{self, IdConfig};
use repscope::intrinsic::twonn::{TwoNN, TwoNNFit};
use repscope::intrinsic::{Estimate, Summary};
use repscope::neighbors::{exact_knn, KnnGraph, Metric};
use repscope::progress::Silent;
use repscope::report::{self, ReportConfig};
use repscope::similarity::layers::{self, LayersConfig};
use repscope::similarity::{self, AnchorMode, CompareConfig, RbfMedian, Route};
use repscope::spectrum::{self, SpectrumConfig};
use serde_json::{json, Value};

/// A numpy array's values, read in place. The handle to the array keeps its buffer alive for as long as the
/// engine holds the matrix.
struct NumpyValues {
    _owner: Py<PyArray2<f32>>,
    ptr: *const f32,
    len: usize,
}

// SAFETY: the pointer stays valid while `_owner` holds a reference to the array (a numpy array that is
// referenced cannot be resized), and the engine only reads through it. `Py<T>` itself is Send and Sync.
unsafe impl Send for NumpyValues {}
unsafe impl Sync for NumpyValues {}

impl AsRef<[f32]> for NumpyValues {
    fn as_ref(&self) -> &[f32] {
        // SAFETY: `ptr` and `len` come from a valid slice of the array's buffer (see `matrix`), which
        // `_owner` keeps alive; f32 has no invalid bit patterns.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A data array from Python: float32 (read in place) or float64 (kept in f64 where precision is the point).
#[derive(FromPyObject)]
enum Values<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

/// The engine's matrix over a C-contiguous float32 array (without a copy) or float64 array (copied once,
/// kept in f64). `name` is used in messages.
fn matrix(x: &Values<'_>, name: &str) -> PyResult<Matrix> {
    match x {
        Values::F32(a) => matrix_f32(a, name),
        Values::F64(a) => {
            let (rows, cols) = (a.shape()[0], a.shape()[1]);
            let v: Vec<f64> = a.as_array().iter().copied().collect();
            Matrix::from_f64(rows, cols, v, name).map_err(to_py)
        }
    }
}

/// The engine's matrix over a C-contiguous float32 array, without a copy.
fn matrix_f32(x: &PyReadonlyArray2<'_, f32>, name: &str) -> PyResult<Matrix> {
    if !x.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name}: the array is not C-contiguous. Pass np.ascontiguousarray({name}) (the Python functions do this for you)."
        )));
    }
    let slice = x.as_slice().map_err(|e| {
        PyValueError::new_err(format!("{name}: cannot read the array in place ({e})"))
    })?;
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    let values = NumpyValues {
        _owner: x.as_unbound().clone_ref(x.py()),
        ptr: slice.as_ptr(),
        len: slice.len(),
    };
    Matrix::from_shared(rows, cols, Arc::new(values), name).map_err(to_py)
}

/// An engine error as the Python exception that fits it, its parameters named by their keyword arguments.
fn to_py(e: repscope::Error) -> PyErr {
    let message = e.render(&|p| match p {
        repscope::Param::Force => "force=True".to_string(),
        p => p.name().to_string(),
    });
    match e {
        repscope::Error::Io { .. } => PyOSError::new_err(message),
        repscope::Error::Numerical { .. } => PyRuntimeError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// Runs `f` with the GIL released; its error becomes a Python exception and a panic a RuntimeError.
fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> repscope::Result<T> + Send) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py(e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(PyRuntimeError::new_err(format!(
                "repscope internal error ({what}). This is a bug: please report it with the input's shape and dtype."
            )))
        }
    }
}

fn to_string(v: &Value) -> PyResult<String> {
    serde_json::to_string(v)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot encode JSON: {e}")))
}

fn metric(s: &str) -> PyResult<Metric> {
    Metric::parse(s).ok_or_else(|| {
        PyValueError::new_err(format!("unknown metric '{s}'. Use euclidean or cosine."))
    })
}

fn labels(raw: Vec<String>, numeric: bool) -> Labels {
    Labels::from_strings(raw, numeric)
}

/// A validated dataset and its exact neighbour graph with `k` neighbours on the distinct rows.
fn graph(m: Matrix, k: usize, metric: Metric, what: &str) -> repscope::Result<(Dataset, KnnGraph)> {
    let ds = Dataset::new(m)?;
    ds.require_neighbours(k, 1, what)?;
    let g = exact_knn(ds.distinct(), k, metric, None)?;
    Ok((ds, g))
}

/// The JSON of one estimate with the dataset it was fitted on.
fn estimate_json(ds: &Dataset, e: &Estimate) -> Value {
    json!({
        "estimate": e,
        "n": ds.original().rows(),
        "d": ds.original().cols(),
        "n_distinct": ds.dedup.n_distinct(),
        "duplicates_merged": ds.dedup.merged,
    })
}

/// Per-distinct-row values spread back to every input row (a duplicate takes its representative's value).
fn per_row(ds: &Dataset, per_distinct: &[f64]) -> Vec<f64> {
    KnnGraph::per_input_row(per_distinct, &ds.dedup)
}

/// Neighbour indices (int64) and distances (float32), n × k each.
type Neighbours<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// Exact kNN in input row numbering: (indices as int64, distances as float32), n × k each.
#[pyfunction]
fn knn<'py>(
    py: Python<'py>,
    x: Values<'py>,
    k: usize,
    metric_name: &str,
) -> PyResult<Neighbours<'py>> {
    let metric = metric(metric_name)?;
    let m = matrix(&x, "X")?;
    let (n, idx, dist) = compute(py, move || {
        let (ds, g) = graph(m, k, metric, "the kNN graph")?;
        let n = ds.original().rows();
        let (idx, dist) = g.to_input_rows(&ds.dedup, |d| d as f32);
        let idx: Vec<i64> = idx.into_iter().map(i64::from).collect();
        Ok((n, idx, dist))
    })?;
    Ok((
        idx.into_pyarray(py).reshape([n, k])?,
        dist.into_pyarray(py).reshape([n, k])?,
    ))
}

/// TwoNN with a linear ("linear") or censored maximum-likelihood ("mle") fit.
#[pyfunction]
fn twonn(py: Python<'_>, x: Values<'_>, discard_fraction: f64, method: &str) -> PyResult<String> {
    let fit = match method {
        "linear" => TwoNNFit::Linear,
        "mle" => TwoNNFit::Mle,
        o => {
            return Err(PyValueError::new_err(format!(
                "method '{o}': use 'linear' or 'mle'"
            )))
        }
    };
    // Checked before the neighbour search, with the engine's message.
    if !(0.0..1.0).contains(&discard_fraction) {
        return Err(PyValueError::new_err(format!(
            "invalid parameter discard_fraction: {discard_fraction} is outside [0, 1). Use a fraction such as 0.1."
        )));
    }
    let est = TwoNN::default()
        .discard_fraction(discard_fraction)
        .fit_method(fit);
    let m = matrix(&x, "X")?;
    let v = compute(py, move || {
        let (ds, g) = graph(m, 2, Metric::Euclidean, "TwoNN")?;
        Ok(estimate_json(&ds, &est.fit(&g)?))
    })?;
    to_string(&v)
}

/// GRIDE at (n1, n2).
#[pyfunction]
fn gride(py: Python<'_>, x: Values<'_>, n1: usize, n2: usize) -> PyResult<String> {
    if n1 < 1 || n2 <= n1 {
        return Err(PyValueError::new_err(format!(
            "invalid parameters n1 = {n1}, n2 = {n2}: GRIDE needs 1 ≤ n1 < n2. Use n1 = 1, n2 = 2."
        )));
    }
    let m = matrix(&x, "X")?;
    let v = compute(py, move || {
        let (ds, g) = graph(m, n2, Metric::Euclidean, "GRIDE")?;
        Ok(estimate_json(&ds, &Gride { n1, n2 }.fit(&g)?))
    })?;
    to_string(&v)
}

/// A PCA rule on the covariance eigenvalues of the distinct rows: "ev" (tau), "fo" (alpha) or "pr".
#[pyfunction]
fn pca(py: Python<'_>, x: Values<'_>, rule: &str, tau: f64, alpha: f64) -> PyResult<String> {
    let name = match rule {
        "ev" => "pca_ev",
        "fo" => "pca_fo",
        "pr" => "pca_pr",
        o => {
            return Err(PyValueError::new_err(format!(
                "rule '{o}': use 'fo' (Fukunaga-Olsen), 'ev' (explained variance) or 'pr' (participation ratio)"
            )))
        }
    };
    if !(tau > 0.0 && tau <= 1.0) {
        return Err(PyValueError::new_err(format!(
            "invalid parameter tau: {tau} is outside (0, 1]. Use 0.95."
        )));
    }
    if !(0.0..1.0).contains(&alpha) {
        return Err(PyValueError::new_err(format!(
            "invalid parameter alpha: {alpha} is outside [0, 1). Use 0.05."
        )));
    }
    let m = matrix(&x, "X")?;
    let v = compute(py, move || {
        let ds = Dataset::new(m)?;
        let s = Spectrum::of(ds.distinct())?;
        let e = s
            .estimates(tau, alpha)
            .into_iter()
            .find(|e| e.estimator == name)
            .ok_or_else(|| repscope::Error::Numerical {
                what: "PCA".into(),
                problem: format!("rule {name} gave no estimate"),
            })?;
        let mut v = estimate_json(&ds, &e);
        v["eigenvalues"] = json!(s.eigenvalues);
        Ok(v)
    })?;
    to_string(&v)
}

/// An exact neighbour graph of a dataset's distinct rows, built once and handed to several estimators
/// (`fit(X, graph=...)`), with a fingerprint of the values it was built on.
#[pyclass(name = "Neighbours", module = "repscope._repscope", frozen)]
struct PyNeighbours {
    ds: Arc<Dataset>,
    graph: Arc<KnnGraph>,
    fingerprint: u64,
}

/// A hash of a matrix's shape and values, to tell whether a graph was built on the same data.
fn fingerprint(m: &Matrix) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (m.rows(), m.cols()).hash(&mut h);
    match m.values_f64() {
        Some(v) => v.iter().for_each(|x| x.to_bits().hash(&mut h)),
        None => m.as_slice().iter().for_each(|x| x.to_bits().hash(&mut h)),
    }
    h.finish()
}

#[pymethods]
impl PyNeighbours {
    /// Neighbours per point.
    #[getter]
    fn k(&self) -> usize {
        self.graph.k
    }
    /// The metric's name.
    #[getter]
    fn metric(&self) -> &'static str {
        self.graph.metric.name()
    }
    /// (rows, distinct rows, columns) of the data.
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        (
            self.ds.original().rows(),
            self.ds.dedup.n_distinct(),
            self.ds.original().cols(),
        )
    }
    /// The graph in input row numbering: (indices as int64, distances as float64), n × k each.
    fn arrays<'py>(&self, py: Python<'py>) -> PyResult<Neighbours64<'py>> {
        let (idx, dist) = self.graph.to_input_rows(&self.ds.dedup, |d| d);
        let n = self.ds.original().rows();
        let idx: Vec<i64> = idx.into_iter().map(i64::from).collect();
        Ok((
            idx.into_pyarray(py).reshape([n, self.graph.k])?,
            dist.into_pyarray(py).reshape([n, self.graph.k])?,
        ))
    }
}

/// Neighbour indices (int64) and distances (float64), n × k each.
type Neighbours64<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f64>>);

/// The exact graph with k neighbours of the distinct rows of X, for several estimators to share.
#[pyfunction]
fn neighbours(
    py: Python<'_>,
    x: Values<'_>,
    k: usize,
    metric_name: &str,
) -> PyResult<PyNeighbours> {
    let metric = metric(metric_name)?;
    let m = matrix(&x, "X")?;
    compute(py, move || {
        let fp = fingerprint(&m);
        let (ds, g) = graph(m, k, metric, "the neighbour graph")?;
        Ok(PyNeighbours {
            ds: Arc::new(ds),
            graph: Arc::new(g),
            fingerprint: fp,
        })
    })
}

/// One estimator (repscope.intrinsic.method.Method as JSON) fitted on X, on `graph` when given (built on
/// the same X) or on a graph of its own. Returns the estimate's JSON and the per-row values of per-point
/// estimators.
#[pyfunction]
#[pyo3(signature = (x, method, graph=None))]
fn id_method<'py>(
    py: Python<'py>,
    x: Values<'py>,
    method: &str,
    graph: Option<PyRef<'py, PyNeighbours>>,
) -> PyResult<(String, Option<Bound<'py, PyArray1<f64>>>)> {
    use repscope::intrinsic::method::Method;
    let method: Method = serde_json::from_str(method)
        .map_err(|e| PyValueError::new_err(format!("invalid estimator settings: {e}")))?;
    method.check().map_err(to_py)?;
    let shared = graph.map(|g| (g.ds.clone(), g.graph.clone(), g.fingerprint));
    let m = matrix(&x, "X")?;
    let (v, pw) = compute(py, move || {
        let (ds, g): (Arc<Dataset>, Option<Arc<KnnGraph>>) = match shared {
            Some((ds, g, fp)) => {
                if fingerprint(&m) != fp {
                    return Err(repscope::Error::InvalidData {
                        input: "X".into(),
                        problem: "the graph was built on other data (or X changed since)".into(),
                        fix: "build it with repscope.id.neighbours(X, k) on this X".into(),
                    });
                }
                (ds, Some(g))
            }
            None => {
                let ds = Dataset::new(m)?;
                let need = method.graph_k();
                let g = if need > 0 {
                    ds.require_neighbours(2, 2, "the estimator")?;
                    let k = need.min(ds.dedup.n_distinct() - 1);
                    Some(Arc::new(exact_knn(
                        ds.distinct(),
                        k,
                        Metric::Euclidean,
                        None,
                    )?))
                } else {
                    None
                };
                (Arc::new(ds), g)
            }
        };
        let (method, note) = match g.as_ref().and_then(|g| method.clipped(g.k)) {
            Some((m, note)) => (m, Some(note)),
            None => (method, None),
        };
        let spectrum = if method.needs_spectrum() {
            Some(Spectrum::of(ds.distinct())?)
        } else {
            None
        };
        let metric = g.as_ref().map_or(Metric::Euclidean, |g| g.metric);
        let fitted = method.fit(ds.distinct(), metric, g.as_deref(), spectrum.as_ref())?;
        let mut e = fitted.estimate;
        if let Some(note) = note {
            e.notes.insert(0, note);
        }
        let mut v = estimate_json(&ds, &e);
        if let Some(s) = &spectrum {
            v["eigenvalues"] = json!(s.eigenvalues);
        }
        for (name, values) in &fitted.arrays {
            v["arrays"][*name] = json!(per_row(&ds, values));
        }
        Ok((v, fitted.per_point.map(|p| per_row(&ds, &p))))
    })?;
    Ok((to_string(&v)?, pw.map(|p| p.into_pyarray(py))))
}

/// Per-row LID with k neighbours; returns the summary's JSON and the per-row values (NaN where undefined).
#[pyfunction]
fn lid<'py>(
    py: Python<'py>,
    x: Values<'py>,
    k: usize,
    metric_name: &str,
) -> PyResult<(String, Bound<'py, PyArray1<f64>>)> {
    let metric = metric(metric_name)?;
    if k < 2 {
        return Err(PyValueError::new_err(format!(
            "invalid parameter k: LID needs k ≥ 2, got {k}. Use k = 20."
        )));
    }
    let m = matrix(&x, "X")?;
    let (v, pw) = compute(py, move || {
        let (ds, g) = graph(m, k, metric, "LID")?;
        lid_of(ds.original().rows(), &ds.dedup, &g)
    })?;
    Ok((to_string(&v)?, pw.into_pyarray(py)))
}

/// LID of every input row from the distinct rows' graph: the document of `lid` and the per-row values.
fn lid_of(
    n: usize,
    dedup: &repscope::data::Dedup,
    g: &KnnGraph,
) -> repscope::Result<(Value, Vec<f64>)> {
    let k = g.k;
    let per_distinct = Lid { k }.per_point(g)?;
    let undefined = per_distinct.iter().filter(|v| v.is_none()).count();
    let flat: Vec<f64> = per_distinct.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let pw = KnnGraph::per_input_row(&flat, dedup);
    let v = json!({
        "k": k,
        "metric": g.metric.name(),
        "n": n,
        "n_distinct": dedup.n_distinct(),
        "duplicates_merged": dedup.merged,
        "undefined_points": undefined,
        "summary": Summary::of(&pw),
    });
    Ok((v, pw))
}

/// The intrinsic-dimension suite: the document of `repscope id --json`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn id_doc(
    py: Python<'_>,
    x: Values<'_>,
    estimators: Vec<String>,
    k: usize,
    discard_fraction: f64,
    range_max: usize,
    metric_name: &str,
    seed: u64,
    scale_curve: bool,
) -> PyResult<String> {
    let cfg = id_config(
        estimators,
        k,
        discard_fraction,
        range_max,
        metric_name,
        seed,
        scale_curve,
    )?;
    let m = matrix(&x, "X")?;
    let v = compute(py, move || {
        let input = documents::input(None, None, &m);
        let ds = Dataset::new(m)?;
        let r = suite::run(&ds, &cfg, &Silent)?;
        Ok(documents::id(&r, input, &cfg))
    })?;
    to_string(&v)
}

/// The linear classifier W (C × d, checked finite) and its bias for the classes of `labels`, if given.
pub(crate) fn classifier_of(
    w: Option<&repscope::data::Matrix>,
    bias: Option<&[f64]>,
    labels: &repscope::data::Labels,
    cols: usize,
) -> repscope::Result<Option<Classifier>> {
    w.map(|w| {
        repscope::data::check_finite(w)?;
        Classifier::new(w, bias, labels.n_classes(), cols)
    })
    .transpose()
}

/// The suite's settings from the Python face's arguments, checked.
pub(crate) fn id_config(
    estimators: Vec<String>,
    k: usize,
    discard_fraction: f64,
    range_max: usize,
    metric_name: &str,
    seed: u64,
    scale_curve: bool,
) -> PyResult<IdConfig> {
    let mut cfg = IdConfig {
        k_mle: k,
        discard_fraction,
        range_max,
        metric: metric(metric_name)?,
        seed,
        scale_curve,
        ..IdConfig::default()
    };
    if !estimators.is_empty() {
        cfg.estimators = estimators;
    }
    suite::graph_k(&cfg).map_err(to_py)?;
    Ok(cfg)
}

/// The spectrum: the document of `repscope spectrum --json`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (x, eps2, alpha_window, top_rogue, key=None, coding_rate=false, duplicates=false))]
fn spectrum_doc(
    py: Python<'_>,
    x: Rows<'_>,
    eps2: f64,
    alpha_window: (usize, usize),
    top_rogue: usize,
    key: Option<String>,
    coding_rate: bool,
    duplicates: bool,
) -> PyResult<String> {
    if alpha_window.0 == 0 || alpha_window.1 <= alpha_window.0 {
        return Err(PyValueError::new_err(format!(
            "alpha_window {alpha_window:?}: expected (first, last) with 1 ≤ first < last, e.g. (11, 100)"
        )));
    }
    let cfg = SpectrumConfig {
        eps2,
        alpha_window,
        top_rogue,
        coding_rate,
        duplicates,
        chunk_rows: None,
    };
    let paths = x.paths();
    let src = rows_source(&x, key.as_deref())?;
    let v = compute(py, move || {
        let input = match &paths {
            // An array: described as in-memory input, as before.
            None => documents::source(&[], None, &*src),
            Some(p) => documents::source(p, key.as_deref(), &*src),
        };
        let r = spectrum::analyse_source(&*src, &cfg, &repscope::progress::Silent)?;
        Ok(documents::spectrum(&r, input, &cfg))
    })?;
    to_string(&v)
}

/// Per-row arrays of the activation statistics, by name.
type RowArrays<'py> = Vec<(&'static str, Bound<'py, PyArray1<f64>>)>;

/// Activation statistics: the document of `repscope activations --json`, and the per-row arrays.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (x, token_ids, massive_abs, massive_ratio, eps, peak_factor, outlier_sigma, top_rogue, max_listed, key=None, duplicates=true))]
fn activations_doc<'py>(
    py: Python<'py>,
    x: Rows<'py>,
    token_ids: Option<Vec<u32>>,
    massive_abs: f64,
    massive_ratio: f64,
    eps: Option<f64>,
    peak_factor: f64,
    outlier_sigma: f64,
    top_rogue: usize,
    max_listed: usize,
    key: Option<String>,
    duplicates: bool,
) -> PyResult<(String, RowArrays<'py>, Bound<'py, PyArray1<u32>>)> {
    let cfg = ActivationConfig {
        massive_abs,
        massive_ratio,
        eps,
        peak_factor,
        outlier_sigma,
        top_rogue,
        max_listed,
        duplicates,
    };
    let paths = x.paths();
    let src = rows_source(&x, key.as_deref())?;
    let (doc, rows, d) = compute(py, move || {
        // An array is described as in-memory input, with no key.
        let key = paths.as_ref().and(key);
        activation_output(
            &repscope::partial::Local(&*src),
            paths.as_deref().unwrap_or(&[]),
            key.as_deref(),
            &cfg,
            token_ids.as_deref(),
        )
    })?;
    let (arrays, peak_dim) = row_arrays(py, rows, d);
    Ok((doc, arrays, peak_dim))
}

/// The activation statistics of rows read through passes (in this process or on a cluster): the JSON
/// document of `repscope activations --json`, the per-row values and the width.
fn activation_output(
    p: &dyn repscope::partial::Passes,
    paths: &[String],
    key: Option<&str>,
    cfg: &ActivationConfig,
    token_ids: Option<&[u32]>,
) -> repscope::Result<(String, activations::PerRow, usize)> {
    let input = documents::described(paths, key, p);
    let mut r = activations::analyse_passes(p, cfg, token_ids, &repscope::progress::Silent)?;
    let rows = std::mem::take(&mut r.rows);
    let doc = documents::activations(
        &r,
        input,
        cfg,
        json!({"token_ids": null, "tokenizer": null}),
    );
    Ok((doc.to_string(), rows, r.d))
}

/// The per-row values of the activation statistics as numpy arrays (`small_fraction` only when ε was
/// given), and the peak dimensions.
fn row_arrays<'py>(
    py: Python<'py>,
    rows: activations::PerRow,
    d: usize,
) -> (RowArrays<'py>, Bound<'py, PyArray1<u32>>) {
    let (zero_fraction, small_fraction) = (rows.zero_fraction(d), rows.small_fraction(d));
    let eps = !rows.small.is_empty();
    let mut arrays = vec![
        ("norm", rows.norm.into_pyarray(py)),
        ("zero_fraction", zero_fraction.into_pyarray(py)),
        ("peak", rows.peak.into_pyarray(py)),
        ("median_abs", rows.median_abs.into_pyarray(py)),
    ];
    if eps {
        arrays.push(("small_fraction", small_fraction.into_pyarray(py)));
    }
    (arrays, rows.peak_dim.into_pyarray(py))
}

/// A sparse autoencoder held by the engine: trained, loaded from a folder, encoded and decoded with.
#[pyclass(name = "Sae", module = "repscope._repscope", frozen)]
struct PySae {
    inner: repscope::sae::Sae,
}

/// The rows of a source: an array, or files streamed by the engine (a file, a folder of shards, a pattern,
/// or a list of shards).
#[derive(FromPyObject)]
enum Rows<'py> {
    Array(Values<'py>),
    Path(PathBuf),
    Paths(Vec<PathBuf>),
}

impl Rows<'_> {
    /// The paths as given, when the rows come from files.
    fn paths(&self) -> Option<Vec<String>> {
        match self {
            Rows::Array(_) => None,
            Rows::Path(p) => Some(vec![p.display().to_string()]),
            Rows::Paths(v) => Some(v.iter().map(|p| p.display().to_string()).collect()),
        }
    }
}

fn rows_source(
    r: &Rows<'_>,
    key: Option<&str>,
) -> PyResult<Box<dyn repscope::data::source::RowSource>> {
    match r {
        Rows::Array(v) => Ok(Box::new(matrix(v, "X")?)),
        Rows::Path(p) => repscope::data::source::open(std::slice::from_ref(p), key).map_err(to_py),
        Rows::Paths(v) => repscope::data::source::open(v, key).map_err(to_py),
    }
}

#[pymethods]
impl PySae {
    /// Loads an SAE folder (SAELens or sparsify layout).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<PySae> {
        let inner = compute(py, move || repscope::sae::io::load(&path))?;
        Ok(PySae { inner })
    }

    /// Dense codes of the rows, rows × width.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (rows, cols) = (x.shape()[0], x.shape()[1]);
        if cols != self.inner.d {
            return Err(PyValueError::new_err(format!(
                "X: the activations have d = {cols} but the SAE reads d_in = {}. Pass the activations of the layer the SAE was trained on.",
                self.inner.d
            )));
        }
        let m = matrix_f32(&x, "X")?;
        let sae = &self.inner;
        let dense = compute(py, move || {
            repscope::data::check_finite(&m)?;
            Ok(sae.encode(m.as_slice(), rows).to_dense(sae.n))
        })?;
        dense.into_pyarray(py).reshape([rows, self.inner.n])
    }

    /// x̂ = f W_dec + b_dec for dense codes, rows × d; a layer-normalising SAE also needs the rows `x` the
    /// codes came from, whose mean and standard deviation it restores.
    #[pyo3(signature = (f, x=None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        f: PyReadonlyArray2<'py, f32>,
        x: Option<PyReadonlyArray2<'py, f32>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (rows, cols) = (f.shape()[0], f.shape()[1]);
        if cols != self.inner.n {
            return Err(PyValueError::new_err(format!(
                "codes: {cols} columns, but the SAE has {} latents",
                self.inner.n
            )));
        }
        let norm = match (self.inner.input_norm, x) {
            (repscope::sae::InputNorm::None, _) => Vec::new(),
            (_, None) => {
                return Err(PyValueError::new_err(
                    "codes: this SAE layer-normalises each input row, so decoding needs the rows' mean and standard deviation. Pass the input rows too: decode(F, X).",
                ))
            }
            (_, Some(x)) => {
                if x.shape() != [rows, self.inner.d] {
                    return Err(PyValueError::new_err(format!(
                        "X: shape {:?}, but the codes are for {rows} rows of d = {}",
                        x.shape(),
                        self.inner.d
                    )));
                }
                let m = matrix_f32(&x, "X")?;
                self.inner.row_norms(m.as_slice())
            }
        };
        let dense: Vec<f32> = f.as_array().iter().copied().collect();
        let mut codes = repscope::sae::Codes {
            off: vec![0],
            norm,
            ..Default::default()
        };
        for r in 0..rows {
            for (i, &v) in dense[r * cols..(r + 1) * cols].iter().enumerate() {
                if v != 0.0 {
                    codes.idx.push(i as u32);
                    codes.val.push(v);
                }
            }
            codes.off.push(codes.idx.len());
        }
        let sae = &self.inner;
        let out = compute(py, move || {
            let mut out = vec![0.0f32; rows * sae.d];
            sae.decode(&codes, &mut out);
            Ok(out)
        })?;
        out.into_pyarray(py).reshape([rows, self.inner.d])
    }

    /// Every activation-only metric on the rows (the document of `repscope sae eval --json`).
    #[pyo3(signature = (x, key=None, batch=4096))]
    fn evaluate(
        &self,
        py: Python<'_>,
        x: Rows<'_>,
        key: Option<String>,
        batch: usize,
    ) -> PyResult<String> {
        let src = rows_source(&x, key.as_deref())?;
        let sae = &self.inner;
        let r = compute(py, move || {
            repscope::sae::eval::evaluate(
                sae,
                src.as_ref(),
                &repscope::sae::eval::EvalConfig {
                    batch: batch.max(1),
                    ..Default::default()
                },
                &Silent,
            )
        })?;
        serde_json::to_string(&r)
            .map_err(|e| PyRuntimeError::new_err(format!("cannot encode JSON: {e}")))
    }

    /// Writes the SAE in SAELens' layout.
    fn save(&self, py: Python<'_>, path: PathBuf, metadata: &str, force: bool) -> PyResult<()> {
        let meta: Value = serde_json::from_str(metadata).unwrap_or(Value::Null);
        let sae = &self.inner;
        compute(py, move || {
            repscope::sae::io::save(sae, &path, meta, &[], force)
        })
    }

    /// The weights, in SAELens' shapes: W_enc [d, n], W_dec [n, d], b_enc [n], b_dec [d], threshold [n].
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
        let s = &self.inner;
        let (d, n) = (s.d, s.n);
        let mut w_enc = vec![0.0f32; d * n];
        for i in 0..n {
            for j in 0..d {
                w_enc[j * n + i] = s.w_enc_t[i * d + j];
            }
        }
        let mut out: Vec<(&'static str, Bound<'py, PyAny>)> = vec![
            ("W_enc", w_enc.into_pyarray(py).reshape([d, n])?.into_any()),
            (
                "W_dec",
                s.w_dec.clone().into_pyarray(py).reshape([n, d])?.into_any(),
            ),
            ("b_enc", s.b_enc.clone().into_pyarray(py).into_any()),
            ("b_dec", s.b_dec.clone().into_pyarray(py).into_any()),
        ];
        if let Some(t) = &s.threshold {
            out.push(("threshold", t.clone().into_pyarray(py).into_any()));
        }
        Ok(out)
    }

    /// (d_in, width, k, architecture as SAELens names it).
    fn shape(&self) -> (usize, usize, usize, &'static str) {
        (
            self.inner.d,
            self.inner.n,
            self.inner.k,
            self.inner.arch.saelens_name(),
        )
    }
}

/// Trains an SAE; returns it with the training summary (JSON).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (x, key, width, k, arch, tokens, batch, lr, warmup_steps, aux_k, aux_coef, dead_tokens, b_dec_init, normalize, seed, rescaled_decoder=None))]
fn sae_train(
    py: Python<'_>,
    x: Rows<'_>,
    key: Option<String>,
    width: usize,
    k: usize,
    arch: &str,
    tokens: Option<u64>,
    batch: usize,
    lr: Option<f64>,
    warmup_steps: Option<usize>,
    aux_k: Option<usize>,
    aux_coef: f64,
    dead_tokens: u64,
    b_dec_init: &str,
    normalize: bool,
    seed: u64,
    rescaled_decoder: Option<f64>,
) -> PyResult<(PySae, String)> {
    use repscope::sae::train::{BDecInit, TrainConfig};
    let arch = match repscope::sae::Architecture::parse(arch) {
        Some(a @ (repscope::sae::Architecture::TopK | repscope::sae::Architecture::BatchTopK)) => a,
        _ => {
            return Err(PyValueError::new_err(format!(
                "invalid parameter arch: '{arch}'; training supports 'topk' and 'batchtopk'"
            )))
        }
    };
    let b_dec_init = match b_dec_init {
        "median" => BDecInit::GeometricMedian,
        "mean" => BDecInit::Mean,
        "zero" => BDecInit::Zero,
        other => {
            return Err(PyValueError::new_err(format!(
                "invalid parameter b_dec_init: '{other}'; choose 'median', 'mean' or 'zero'"
            )))
        }
    };
    let cfg = TrainConfig {
        width,
        k,
        arch,
        tokens,
        batch,
        lr,
        warmup_steps,
        aux_k,
        aux_coef,
        dead_tokens,
        b_dec_init,
        normalize,
        seed,
        rescaled_decoder,
        ..TrainConfig::default()
    };
    cfg.validate().map_err(to_py)?;
    let src = rows_source(&x, key.as_deref())?;
    let t = compute(py, move || {
        repscope::sae::train::train(src.as_ref(), &cfg, &Silent)
    })?;
    let summary = serde_json::to_string(&t.summary)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot encode JSON: {e}")))?;
    Ok((PySae { inner: t.sae }, summary))
}

/// Class geometry: the document of `repscope classes --json`. An array is held in memory; paths stream,
/// with the kNN vote on a seeded sample of `knn_sample` rows.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (x, raw_labels, numeric, k, classifier=None, bias=None, key=None, knn_sample=20_000, seed=0))]
fn classes_doc(
    py: Python<'_>,
    x: Rows<'_>,
    raw_labels: Vec<String>,
    numeric: bool,
    k: usize,
    classifier: Option<Values<'_>>,
    bias: Option<Vec<f64>>,
    key: Option<String>,
    knn_sample: usize,
    seed: u64,
) -> PyResult<String> {
    let paths = x.paths();
    // An array becomes one matrix (held in memory); paths become a streamed source.
    let (m, src) = match &x {
        Rows::Array(v) => (Some(matrix(v, "X")?), None),
        _ => (None, Some(rows_source(&x, key.as_deref())?)),
    };
    let w = classifier
        .as_ref()
        .map(|w| matrix(w, "classifier"))
        .transpose()?;
    let v = compute(py, move || {
        let labels = labels(raw_labels, numeric);
        let rows: &dyn repscope::data::source::RowSource = match (&m, &src) {
            (Some(m), _) => m,
            (None, Some(s)) => &**s,
            (None, None) => unreachable!("an array or a source"),
        };
        classes::check_label_count(rows.rows(), rows.name(), &labels, "labels")?;
        let clf = classifier_of(w.as_ref(), bias.as_deref(), &labels, rows.cols())?;
        let (r, cfg, input) = match (&m, &paths) {
            (Some(m), _) => {
                repscope::data::check_finite(m)?;
                let (r, cfg) = classes::run(m, &labels, clf.as_ref(), k, &Silent)?;
                (r, cfg, documents::input(None, None, m))
            }
            (None, p) => {
                let (r, cfg) =
                    classes::run_source(rows, &labels, clf.as_ref(), k, knn_sample, seed, &Silent)?;
                let p = p.clone().unwrap_or_default();
                (r, cfg, documents::source(&p, key.as_deref(), rows))
            }
        };
        let clf_name = w.as_ref().map(|_| "classifier".to_string());
        Ok(documents::classes(&r, input, Value::Null, &cfg, clf_name))
    })?;
    to_string(&v)
}

/// Similarity of two streamed sources of the same rows (paths): the document of `repscope compare --json`
/// with the streamed measures.
#[pyfunction]
#[pyo3(signature = (x, y, metrics, svcca_threshold, key_x=None, key_y=None))]
fn compare_sources_doc(
    py: Python<'_>,
    x: Rows<'_>,
    y: Rows<'_>,
    metrics: Vec<String>,
    svcca_threshold: f64,
    key_x: Option<String>,
    key_y: Option<String>,
) -> PyResult<String> {
    let cfg = CompareConfig {
        measures: metrics,
        svcca_threshold,
        ..CompareConfig::default()
    };
    let (px, py_) = (x.paths().unwrap_or_default(), y.paths().unwrap_or_default());
    let a = rows_source(&x, key_x.as_deref())?;
    let b = rows_source(&y, key_y.as_deref())?;
    let v = compute(py, move || {
        let t = std::time::Instant::now();
        let r = similarity::compare_sources(&*a, &*b, &cfg, &Silent)?;
        Ok(documents::compare(
            &r,
            documents::source(&px, key_x.as_deref(), &*a),
            documents::source(&py_, key_y.as_deref(), &*b),
            json!({"load": 0.0, "compute": t.elapsed().as_secs_f64()}),
        ))
    })?;
    to_string(&v)
}

/// Similarity of two representations: the document of `repscope compare --json`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (x, y, metrics, cka_route, rbf_threshold, rbf_median, batch_size, k, anchors, anchor_mode, svcca_threshold, gram_limit, seed, raw_labels=None, numeric=false))]
fn compare_doc(
    py: Python<'_>,
    x: Values<'_>,
    y: Values<'_>,
    metrics: Vec<String>,
    cka_route: &str,
    rbf_threshold: f64,
    rbf_median: &str,
    batch_size: usize,
    k: usize,
    anchors: Option<usize>,
    anchor_mode: &str,
    svcca_threshold: f64,
    gram_limit: usize,
    seed: u64,
    raw_labels: Option<Vec<String>>,
    numeric: bool,
) -> PyResult<String> {
    let route = match cka_route.to_ascii_lowercase().as_str() {
        "auto" => None,
        "feature" | "features" => Some(Route::Feature),
        "gram" => Some(Route::Gram),
        o => {
            return Err(PyValueError::new_err(format!(
                "cka_route '{o}': use auto, feature or gram"
            )))
        }
    };
    let rbf_median = match rbf_median.to_ascii_lowercase().as_str() {
        "pairs" => RbfMedian::DistinctPairs,
        "kornblith" => RbfMedian::IncludingDiagonal,
        o => {
            return Err(PyValueError::new_err(format!(
                "rbf_median '{o}': use pairs or kornblith"
            )))
        }
    };
    let anchor_mode = match anchor_mode.to_ascii_lowercase().as_str() {
        "first" => AnchorMode::First,
        "random" => AnchorMode::Random,
        o => {
            return Err(PyValueError::new_err(format!(
                "anchor_mode '{o}': use first or random"
            )))
        }
    };
    let cfg = CompareConfig {
        measures: metrics,
        route,
        rbf_threshold,
        rbf_median,
        batch_size,
        k,
        anchors,
        anchor_mode,
        svcca_threshold,
        gram_limit,
        seed,
        ..CompareConfig::default()
    };
    if !cfg.measures.is_empty() {
        similarity::canonical_measures(&cfg.measures).map_err(to_py)?;
    }
    let a = matrix(&x, "X")?;
    let b = matrix(&y, "Y")?;
    let v = compute(py, move || {
        let labels = raw_labels.map(|r| labels(r, numeric));
        let t = std::time::Instant::now();
        let r = similarity::compare(&a, &b, labels.as_ref(), &cfg, &Silent)?;
        Ok(documents::compare(
            &r,
            documents::input(None, None, &a),
            documents::input(None, None, &b),
            json!({"load": 0.0, "compute": t.elapsed().as_secs_f64()}),
        ))
    })?;
    to_string(&v)
}

/// The layer study over named arrays with the same rows: the document of `repscope layers --json`.
#[pyfunction]
fn layers_doc(
    py: Python<'_>,
    names: Vec<String>,
    arrays: Vec<Values<'_>>,
    k: usize,
    seed: u64,
) -> PyResult<String> {
    if names.len() != arrays.len() {
        return Err(PyValueError::new_err("one name per layer is needed"));
    }
    if arrays.len() < 2 {
        return Err(PyValueError::new_err(format!(
            "layers: {} array(s); a layer study needs at least 2",
            arrays.len()
        )));
    }
    let mats = names
        .iter()
        .zip(&arrays)
        .map(|(n, a)| Ok((n.clone(), matrix(a, n)?)))
        .collect::<PyResult<Vec<_>>>()?;
    let mut cfg = LayersConfig {
        k,
        ..LayersConfig::default()
    };
    cfg.id.seed = seed;
    let v = compute(py, move || {
        let r = layers::study(&mats, &cfg, &Silent)?;
        Ok(documents::layers(&r, json!({"path": null}), &cfg))
    })?;
    to_string(&v)
}

/// Writes report.json and report.html into `path`; returns `{"json", "html", "partial_failure"}`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (names, arrays, path, seed, sample, force, command, raw_labels=None, numeric=false, sae=None, label_names=None, search=false))]
fn report_files(
    py: Python<'_>,
    names: Vec<String>,
    arrays: Vec<Values<'_>>,
    path: PathBuf,
    seed: u64,
    sample: Option<usize>,
    force: bool,
    command: String,
    raw_labels: Option<Vec<String>>,
    numeric: bool,
    sae: Option<PyRef<'_, PySae>>,
    label_names: Option<Vec<String>>,
    search: bool,
) -> PyResult<String> {
    let sae = sae.map(|s| std::sync::Arc::new(s.inner.clone()));
    if sample == Some(0) {
        return Err(PyValueError::new_err("sample must be at least 1"));
    }
    if label_names.is_some() && raw_labels.is_none() {
        return Err(PyValueError::new_err(
            "label_names names the classes of labels: pass labels too, or drop label_names",
        ));
    }
    let mats = names
        .iter()
        .zip(&arrays)
        .map(|(n, a)| Ok((n.clone(), matrix(a, n)?)))
        .collect::<PyResult<Vec<_>>>()?;
    let v = compute(py, move || {
        let labels = match (raw_labels.map(|r| labels(r, numeric)), &label_names) {
            (Some(l), Some(names)) => Some(l.with_names(names, "label_names")?),
            (l, _) => l,
        };
        // Every input is checked before the folder is touched, so bad input leaves nothing behind.
        for (_, m) in &mats {
            repscope::data::check_finite(m)?;
            if let Some(l) = &labels {
                classes::check_label_rows(m.rows(), m.name(), l, "labels")?;
            }
        }
        repscope::data::prepare_folder(&path, force)?;
        let cfg = ReportConfig {
            id: IdConfig {
                seed,
                ..IdConfig::default()
            },
            sae,
            sample,
            seed,
            search: search.then(|| report::search_config(seed)),
            ..ReportConfig::default()
        };
        let doc = report::build(mats, labels.as_ref(), "labels", &cfg, &command, &Silent)?;
        let (j, h) = report::write_files(&path, &doc)?;
        Ok(json!({
            "json": j.display().to_string(),
            "html": h.display().to_string(),
            "partial_failure": report::any_failed(&doc),
        }))
    })?;
    to_string(&v)
}

/// The compiled half of the `repscope` Python package.
#[pymodule]
fn _repscope(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", repscope::VERSION)?;
    m.add_function(wrap_pyfunction!(knn, m)?)?;
    m.add_function(wrap_pyfunction!(twonn, m)?)?;
    m.add_function(wrap_pyfunction!(gride, m)?)?;
    m.add_function(wrap_pyfunction!(pca, m)?)?;
    m.add_function(wrap_pyfunction!(lid, m)?)?;
    m.add_function(wrap_pyfunction!(neighbours, m)?)?;
    m.add_function(wrap_pyfunction!(id_method, m)?)?;
    m.add_class::<PyNeighbours>()?;
    m.add_function(wrap_pyfunction!(id_doc, m)?)?;
    m.add_function(wrap_pyfunction!(spectrum_doc, m)?)?;
    m.add_function(wrap_pyfunction!(activations_doc, m)?)?;
    m.add_function(wrap_pyfunction!(sae_train, m)?)?;
    m.add_class::<PySae>()?;
    m.add_function(wrap_pyfunction!(classes_doc, m)?)?;
    m.add_function(wrap_pyfunction!(compare_sources_doc, m)?)?;
    m.add_function(wrap_pyfunction!(compare_doc, m)?)?;
    m.add_function(wrap_pyfunction!(layers_doc, m)?)?;
    m.add_function(wrap_pyfunction!(report_files, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::shard_paths, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::shard_info, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::pass_map, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::pass_merge, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::pass_skip, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::pass_rows, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::pass_narrow, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::id_neighbours, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::knn_self_block, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::knn_pair_block, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::knn_merge, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::knn_assemble, m)?)?;
    m.add_function(wrap_pyfunction!(cluster::knn_lid, m)?)?;
    m.add_class::<cluster::Job>()?;
    Ok(())
}
