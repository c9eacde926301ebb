//! The engine's side of `repscope.ray`: passes run on one shard, partial results merged, exact kNN in
//! pieces, and jobs: an engine measure that runs on a thread of the driver and asks Python, pass by pass,
//! to run its passes on the cluster.
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use repscope::data::source::{self, Elem, RowSource};
use repscope::documents;
use repscope::neighbors::partial::{self as knn_partial, KnnPartial};
use repscope::partial::{self, Partial, Pass, Passes};
use repscope::progress::Silent;
use repscope::spectrum::{self, SpectrumConfig};

use super::{compute, metric, rows_source, to_py, Neighbours, Rows};

fn bytes<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, b)
}

/// One shard: a file, or an array named `name` in messages, whose values are checked finite here (files
/// are checked as they are read).
fn opened(x: &Rows<'_>, key: Option<&str>, name: &str) -> PyResult<Box<dyn RowSource>> {
    match x {
        Rows::Array(v) => {
            let m = super::matrix(v, name)?;
            repscope::data::check_finite(&m).map_err(to_py)?;
            Ok(Box::new(m))
        }
        _ => rows_source(x, key),
    }
}

/// The shard files a list of paths names: folders listed in natural order, patterns expanded.
#[pyfunction]
pub fn shard_paths(paths: Vec<std::path::PathBuf>) -> PyResult<Vec<String>> {
    Ok(source::expand_paths(&paths)
        .map_err(to_py)?
        .iter()
        .map(|p| p.display().to_string())
        .collect())
}

/// (rows, columns, numpy dtype name) of one shard, read from its header alone.
#[pyfunction]
#[pyo3(signature = (x, key=None))]
pub fn shard_info(x: Rows<'_>, key: Option<String>) -> PyResult<(usize, usize, String)> {
    let src = rows_source(&x, key.as_deref())?;
    Ok((src.rows(), src.cols(), src.elem().name().to_string()))
}

/// Runs one pass (its bytes) over one shard whose first row is global row `first_row`: the partial result's
/// bytes. With `y`, the shard is x and y read side by side (the same rows of two representations), rows
/// `x_rows` of x beside rows `y_rows` of y when given; with `keep`, only those rows of the shard (its
/// distinct rows, say), numbered from `first_row`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (spec, x, first_row, key=None, name="shard", y=None, key_y=None, name_y="shard", keep=None, x_rows=None, y_rows=None))]
pub fn pass_map<'py>(
    py: Python<'py>,
    spec: &[u8],
    x: Rows<'py>,
    first_row: usize,
    key: Option<String>,
    name: &str,
    y: Option<Rows<'py>>,
    key_y: Option<String>,
    name_y: &str,
    keep: Option<PyReadonlyArray1<'py, i64>>,
    x_rows: Option<(usize, usize)>,
    y_rows: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let pass = Pass::decode(spec).map_err(to_py)?;
    let src = opened(&x, key.as_deref(), name)?;
    let other = y
        .map(|y| opened(&y, key_y.as_deref(), name_y))
        .transpose()?;
    let keep: Option<Vec<usize>> = keep
        .map(|k| {
            k.as_array()
                .iter()
                .map(|&r| {
                    usize::try_from(r)
                        .map_err(|_| PyValueError::new_err(format!("{name}: row {r} is negative")))
                })
                .collect()
        })
        .transpose()?;
    // Each side's rows in this piece (the whole shard unless a range is given).
    let ra = holds(&*src, x_rows)?;
    let rb = other.as_ref().map(|b| holds(&**b, y_rows)).transpose()?;
    let out = compute(py, move || {
        let p = match (&other, keep) {
            (Some(b), _) => {
                let wa = source::Window::new(&*src, ra.0, ra.1);
                let rb = rb.expect("checked with y");
                let wb = source::Window::new(&**b, rb.0, rb.1);
                let z = source::Joined::new(&wa, &wb)?;
                partial::map(&pass, &z, first_row, &Silent)?
            }
            (None, Some(keep)) => {
                let sel = source::Selected::rows(src, keep)?;
                partial::map(&pass, &sel, first_row, &Silent)?
            }
            (None, None) => partial::map(&pass, &*src, first_row, &Silent)?,
        };
        Ok(p.encode())
    })?;
    Ok(bytes(py, &out))
}

/// Checks that a shard holds rows `range` (all of it for None); the range.
fn holds(src: &dyn RowSource, range: Option<(usize, usize)>) -> PyResult<(usize, usize)> {
    let (a, b) = range.unwrap_or((0, src.rows()));
    if a > b || b > src.rows() {
        return Err(PyValueError::new_err(format!(
            "{}: rows {a}..{b} are asked for, but the shard has {} rows. Pass the shards as they were when the run started.",
            src.name(),
            src.rows()
        )));
    }
    Ok((a, b))
}

/// The pass (bytes) as the shard of global rows first_row..first_row + rows needs it, or None when it is
/// the pass itself (see `Pass::narrowed`).
#[pyfunction]
pub fn pass_narrow<'py>(
    py: Python<'py>,
    spec: &[u8],
    first_row: usize,
    rows: usize,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let pass = Pass::decode(spec).map_err(to_py)?;
    Ok(pass
        .narrowed((first_row, first_row + rows))
        .map(|p| bytes(py, &p.encode())))
}

/// The partial result (bytes) of a shard the pass needs no values of, or None when it must be read.
#[pyfunction]
pub fn pass_skip<'py>(
    py: Python<'py>,
    spec: &[u8],
    first_row: usize,
    rows: usize,
    cols: usize,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let pass = Pass::decode(spec).map_err(to_py)?;
    Ok(partial::without_reading(&pass, first_row, rows, cols).map(|p| bytes(py, &p.encode())))
}

/// How many rows a pass of row values reads (the first rows, or rows asked for by number), or None for a
/// pass that reads every row of the shards it needs: the driver reads those few rows itself where it can.
#[pyfunction]
pub fn pass_rows(spec: &[u8]) -> PyResult<Option<usize>> {
    Pass::rows_asked(spec).map_err(to_py)
}

/// Two partial results of adjacent rows, merged.
#[pyfunction]
pub fn pass_merge<'py>(py: Python<'py>, a: &[u8], b: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let (a, b) = (a.to_vec(), b.to_vec());
    let out = compute(py, move || {
        Ok(Partial::decode(&a)?.merge(Partial::decode(&b)?)?.encode())
    })?;
    Ok(bytes(py, &out))
}

/// One piece of a block: a shard (a path or an array), its rows read (local numbers) and its name.
type Piece<'py> = (Rows<'py>, PyReadonlyArray1<'py, i64>, String);

/// The pieces of a block opened, with their local rows; and the block's global row numbers.
type Block = (Vec<(Box<dyn RowSource>, Vec<usize>)>, Vec<u64>);

fn unsigned(a: &PyReadonlyArray1<'_, i64>, name: &str, what: &str) -> PyResult<Vec<u64>> {
    a.as_array()
        .iter()
        .map(|&r| {
            u64::try_from(r)
                .map_err(|_| PyValueError::new_err(format!("{name}: {what} {r} is negative")))
        })
        .collect()
}

/// A block of rows from one or more shards, as the engine reads them.
fn block(
    pieces: &[Piece<'_>],
    key: Option<&str>,
    ids: &PyReadonlyArray1<'_, i64>,
) -> PyResult<Block> {
    let mut out = Vec::with_capacity(pieces.len());
    for (x, rows, name) in pieces {
        let src: Box<dyn RowSource> = match x {
            Rows::Array(v) => Box::new(super::matrix(v, name)?),
            _ => rows_source(x, key)?,
        };
        let rows = unsigned(rows, name, "row")?
            .into_iter()
            .map(|r| r as usize)
            .collect();
        out.push((src, rows));
    }
    let name = pieces.first().map_or("block", |p| p.2.as_str());
    Ok((out, unsigned(ids, name, "global row")?))
}

/// The rows of blocks' pieces, in order, in one matrix.
fn read_blocks(blocks: &[&Block]) -> repscope::Result<repscope::data::Matrix> {
    let parts: Vec<(&dyn RowSource, &[usize])> = blocks
        .iter()
        .flat_map(|b| b.0.iter().map(|(s, r)| (&**s, r.as_slice())))
        .collect();
    knn_partial::load_rows(&parts)
}

/// The exact k nearest other rows of one block within itself (its pieces: shards and their local rows;
/// `ids` the global numbers of those rows in order, within global rows `span`): a partial result's bytes.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (pieces, ids, span, k, metric_name, key=None))]
pub fn knn_self_block<'py>(
    py: Python<'py>,
    pieces: Vec<Piece<'py>>,
    ids: PyReadonlyArray1<'py, i64>,
    span: (u64, u64),
    k: usize,
    metric_name: &str,
    key: Option<String>,
) -> PyResult<Bound<'py, PyBytes>> {
    let metric = metric(metric_name)?;
    let b = block(&pieces, key.as_deref(), &ids)?;
    let out = compute(py, move || {
        let m = read_blocks(&[&b])?;
        Ok(knn_partial::search_self(&m, &b.1, span, k, metric)?.encode())
    })?;
    Ok(bytes(py, &out))
}

/// The exact k nearest rows of block b for each row of block a, and of a for each row of b, from one
/// product: the two partial results' bytes.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (a, a_ids, a_span, b, b_ids, b_span, k, metric_name, key=None))]
pub fn knn_pair_block<'py>(
    py: Python<'py>,
    a: Vec<Piece<'py>>,
    a_ids: PyReadonlyArray1<'py, i64>,
    a_span: (u64, u64),
    b: Vec<Piece<'py>>,
    b_ids: PyReadonlyArray1<'py, i64>,
    b_span: (u64, u64),
    k: usize,
    metric_name: &str,
    key: Option<String>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let metric = metric(metric_name)?;
    let ba = block(&a, key.as_deref(), &a_ids)?;
    let bb = block(&b, key.as_deref(), &b_ids)?;
    let (x, y) = compute(py, move || {
        // Both blocks' rows in one matrix, which the pair search reads as it is.
        let ab = read_blocks(&[&ba, &bb])?;
        let (pa, pb) = knn_partial::search_pair(&ab, &ba.1, a_span, &bb.1, b_span, k, metric)?;
        Ok((pa.encode(), pb.encode()))
    })?;
    Ok((bytes(py, &x), bytes(py, &y)))
}

/// Two kNN partial results of the same queries, merged.
#[pyfunction]
pub fn knn_merge<'py>(py: Python<'py>, a: &[u8], b: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let (a, b) = (a.to_vec(), b.to_vec());
    let out = compute(py, move || {
        Ok(KnnPartial::decode(&a)?
            .merge(KnnPartial::decode(&b)?)?
            .encode())
    })?;
    Ok(bytes(py, &out))
}

fn decoded(blocks: &[Vec<u8>]) -> repscope::Result<Vec<KnnPartial>> {
    blocks.iter().map(|b| KnnPartial::decode(b)).collect()
}

/// The graph in input row numbering from the merged lists of every query block (each covering all `n`
/// rows): a duplicate row takes its representative's neighbours, as `knn` gives them.
#[pyfunction]
pub fn knn_assemble<'py>(
    py: Python<'py>,
    blocks: Vec<Vec<u8>>,
    first: Vec<u32>,
    k: usize,
    metric_name: &str,
) -> PyResult<Neighbours<'py>> {
    let metric = metric(metric_name)?;
    let n = first.len();
    let (idx, dist) = compute(py, move || {
        let (ids, dist) = knn_partial::assemble(&decoded(&blocks)?, &first, k, metric)?;
        let idx: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let dist: Vec<f32> = dist.into_iter().map(|d| d as f32).collect();
        Ok((idx, dist))
    })?;
    Ok((
        idx.into_pyarray(py).reshape([n, k])?,
        dist.into_pyarray(py).reshape([n, k])?,
    ))
}

/// LID of every row from the merged lists of every query block: the document and per-row values of `lid`.
#[pyfunction]
pub fn knn_lid<'py>(
    py: Python<'py>,
    blocks: Vec<Vec<u8>>,
    first: Vec<u32>,
    k: usize,
    metric_name: &str,
) -> PyResult<(String, Bound<'py, PyArray1<f64>>)> {
    let metric = metric(metric_name)?;
    let (v, pw) = compute(py, move || {
        let (g, dedup) = knn_partial::graph(&decoded(&blocks)?, &first, k, metric)?;
        super::lid_of(first.len(), &dedup, &g)
    })?;
    Ok((super::to_string(&v)?, pw.into_pyarray(py)))
}

/// The neighbours per point the suite's graph needs (0 for PCA alone), for rows of which `n_distinct` are
/// distinct; the single-process suite's error when there are too few.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn id_neighbours(
    estimators: Vec<String>,
    k_mle: usize,
    discard_fraction: f64,
    range_max: usize,
    metric_name: &str,
    seed: u64,
    scale_curve: bool,
    name: &str,
    n: usize,
    n_distinct: usize,
) -> PyResult<usize> {
    use repscope::intrinsic::suite;
    let cfg = super::id_config(
        estimators,
        k_mle,
        discard_fraction,
        range_max,
        metric_name,
        seed,
        scale_curve,
    )?;
    let rows = suite::Rows {
        name,
        n,
        d: 0,
        n_distinct,
        duplicates_merged: n - n_distinct,
        max_multiplicity: 0,
    };
    suite::neighbours(&cfg, &rows).map_err(to_py)
}

/// What a job gives when it ends.
enum Output {
    Document(String),
    /// The activation statistics' document, its per-row arrays and the width.
    Activations(String, Box<repscope::activations::PerRow>, usize),
    /// Every row's first equal row, and the duplicates document.
    Dedup(Vec<u32>, String),
}

enum Msg {
    Pass(Vec<u8>),
    Done(repscope::Result<Output>),
}

/// Rows on a cluster, as the engine sees them: each pass goes to Python, which runs it on every shard and
/// answers with the merged partial result.
struct Remote {
    rows: usize,
    cols: usize,
    name: String,
    elem: Elem,
    shards: usize,
    ask: Sender<Msg>,
    answers: Mutex<Receiver<Vec<u8>>>,
}

impl Passes for Remote {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn elem(&self) -> Elem {
        self.elem
    }
    fn shards(&self) -> usize {
        self.shards
    }
    fn run(&self, pass: &Pass, _: &dyn repscope::progress::Progress) -> repscope::Result<Partial> {
        let stopped = || partial::stopped(&self.name);
        self.ask
            .send(Msg::Pass(pass.encode()))
            .map_err(|_| stopped())?;
        let b = self.answers.lock().unwrap().recv().map_err(|_| stopped())?;
        Partial::decode(&b)
    }
}

/// An engine measure running on a thread of this process, its passes run by Python.
#[pyclass(name = "Job", module = "repscope._repscope")]
pub struct Job {
    asks: Mutex<Receiver<Msg>>,
    answer: Sender<Vec<u8>>,
    result: Mutex<Option<repscope::Result<Output>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn elem_of(name: &str) -> PyResult<Elem> {
    Ok(match name {
        "float16" => Elem::F16,
        "bfloat16" => Elem::BF16,
        "float32" => Elem::F32,
        "float64" => Elem::F64,
        o => return Err(PyValueError::new_err(format!("unknown dtype {o}"))),
    })
}

impl Job {
    fn start(
        rows: usize,
        cols: usize,
        name: String,
        elem: &str,
        shards: usize,
        work: impl FnOnce(&Remote) -> repscope::Result<Output> + Send + 'static,
    ) -> PyResult<Job> {
        let elem = elem_of(elem)?;
        let (ask, asks) = channel();
        let (answer, answers) = channel();
        let thread = std::thread::spawn(move || {
            let remote = Remote {
                rows,
                cols,
                name,
                elem,
                shards,
                ask: ask.clone(),
                answers: Mutex::new(answers),
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&remote)))
                .unwrap_or_else(|_| {
                    Err(partial::corrupt(
                        "repscope internal error (a panic): this is a bug, please report it",
                    ))
                });
            let _ = ask.send(Msg::Done(r));
        });
        Ok(Job {
            asks: Mutex::new(asks),
            answer,
            result: Mutex::new(None),
            thread: Mutex::new(Some(thread)),
        })
    }
}

#[pymethods]
impl Job {
    /// The spectrum of rows on a cluster (the document of `spectrum`).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (rows, cols, name, elem, shards, paths, key, eps2, alpha_window, top_rogue, coding_rate, duplicates))]
    fn spectrum(
        rows: usize,
        cols: usize,
        name: String,
        elem: &str,
        shards: usize,
        paths: Option<Vec<String>>,
        key: Option<String>,
        eps2: f64,
        alpha_window: (usize, usize),
        top_rogue: usize,
        coding_rate: bool,
        duplicates: bool,
    ) -> PyResult<Job> {
        let cfg = SpectrumConfig {
            eps2,
            alpha_window,
            top_rogue,
            coding_rate,
            duplicates,
            chunk_rows: None,
        };
        Job::start(rows, cols, name, elem, shards, move |p| {
            let input = documents::described(paths.as_deref().unwrap_or(&[]), key.as_deref(), p);
            let (r, _) = spectrum::analyse_passes(p, &cfg, &Silent)?;
            let doc = documents::spectrum(&r, input, &cfg);
            Ok(Output::Document(doc.to_string()))
        })
    }

    /// The activation statistics of rows on a cluster (the document of `activations`, its per-row arrays).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (rows, cols, name, elem, shards, paths, key, token_ids, massive_abs, massive_ratio, eps, peak_factor, outlier_sigma, top_rogue, max_listed, duplicates))]
    fn activations(
        rows: usize,
        cols: usize,
        name: String,
        elem: &str,
        shards: usize,
        paths: Option<Vec<String>>,
        key: Option<String>,
        token_ids: Option<Vec<u32>>,
        massive_abs: f64,
        massive_ratio: f64,
        eps: Option<f64>,
        peak_factor: f64,
        outlier_sigma: f64,
        top_rogue: usize,
        max_listed: usize,
        duplicates: bool,
    ) -> PyResult<Job> {
        let cfg = repscope::activations::ActivationConfig {
            massive_abs,
            massive_ratio,
            eps,
            peak_factor,
            outlier_sigma,
            top_rogue,
            max_listed,
            duplicates,
        };
        Job::start(rows, cols, name, elem, shards, move |p| {
            let paths = paths.unwrap_or_default();
            let (doc, per_row, d) =
                super::activation_output(p, &paths, key.as_deref(), &cfg, token_ids.as_deref())?;
            Ok(Output::Activations(doc, Box::new(per_row), d))
        })
    }

    /// The similarity of two representations on a cluster, read side by side (X's columns first): the
    /// document of `compare` with the streamed measures.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (rows, cols, names, elems, shards, paths, keys, metrics, svcca_threshold))]
    fn compare(
        rows: usize,
        cols: (usize, usize),
        names: (String, String),
        elems: (String, String),
        shards: (usize, usize),
        paths: (Option<Vec<String>>, Option<Vec<String>>),
        keys: (Option<String>, Option<String>),
        metrics: Vec<String>,
        svcca_threshold: f64,
    ) -> PyResult<Job> {
        let cfg = repscope::similarity::CompareConfig {
            measures: metrics,
            svcca_threshold,
            ..Default::default()
        };
        let ex = elem_of(&elems.0)?;
        let ey = elem_of(&elems.1)?;
        let joined = if ex == Elem::F64 || ey == Elem::F64 {
            "float64"
        } else {
            "float32"
        };
        let name = format!("{} | {}", names.0, names.1);
        let pieces = shards.0.max(shards.1);
        Job::start(rows, cols.0 + cols.1, name, joined, pieces, move |p| {
            let t = std::time::Instant::now();
            let r = repscope::similarity::compare_passes(
                p,
                cols.0,
                (&names.0, &names.1),
                &cfg,
                &Silent,
            )?;
            let side =
                |paths: &Option<Vec<String>>, key: &Option<String>, name, cols, shards, elem| {
                    documents::input_of(
                        paths.as_deref().unwrap_or(&[]),
                        key.as_deref(),
                        name,
                        rows,
                        cols,
                        shards,
                        elem,
                    )
                };
            let doc = documents::compare(
                &r,
                side(&paths.0, &keys.0, &names.0, cols.0, shards.0, ex),
                side(&paths.1, &keys.1, &names.1, cols.1, shards.1, ey),
                serde_json::json!({"load": 0.0, "compute": t.elapsed().as_secs_f64()}),
            );
            Ok(Output::Document(doc.to_string()))
        })
    }

    /// The class geometry of rows on a cluster (the document of `classes`).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (rows, cols, name, elem, shards, paths, key, raw_labels, numeric, k, classifier, bias, knn_sample, seed))]
    fn classes(
        rows: usize,
        cols: usize,
        name: String,
        elem: &str,
        shards: usize,
        paths: Option<Vec<String>>,
        key: Option<String>,
        raw_labels: Vec<String>,
        numeric: bool,
        k: usize,
        classifier: Option<super::Values<'_>>,
        bias: Option<Vec<f64>>,
        knn_sample: usize,
        seed: u64,
    ) -> PyResult<Job> {
        use repscope::classes;
        let w = classifier
            .as_ref()
            .map(|w| super::matrix(w, "classifier"))
            .transpose()?;
        Job::start(rows, cols, name, elem, shards, move |p| {
            let labels = repscope::data::Labels::from_strings(raw_labels, numeric);
            classes::check_label_count(p.rows(), p.name(), &labels, "labels")?;
            let clf = super::classifier_of(w.as_ref(), bias.as_deref(), &labels, p.cols())?;
            let (r, cfg) =
                classes::run_passes(p, &labels, clf.as_ref(), k, knn_sample, seed, &Silent)?;
            let input = documents::described(paths.as_deref().unwrap_or(&[]), key.as_deref(), p);
            let clf_name = w.as_ref().map(|_| "classifier".to_string());
            let doc = documents::classes(&r, input, serde_json::Value::Null, &cfg, clf_name);
            Ok(Output::Document(doc.to_string()))
        })
    }

    /// An SAE's evaluation on rows on a cluster (the document of `TopKSAE.evaluate`).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (rows, cols, name, elem, shards, sae, batch))]
    fn sae_eval(
        rows: usize,
        cols: usize,
        name: String,
        elem: &str,
        shards: usize,
        sae: &super::PySae,
        batch: usize,
    ) -> PyResult<Job> {
        let sae = sae.inner.clone();
        Job::start(rows, cols, name, elem, shards, move |p| {
            let cfg = repscope::sae::eval::EvalConfig {
                batch: batch.max(1),
                ..Default::default()
            };
            let r = repscope::sae::eval::evaluate_passes(&sae, p, &cfg, &Silent)?;
            Ok(Output::Document(serde_json::to_string(&r).map_err(
                |e| partial::corrupt(format!("cannot encode JSON: {e}")),
            )?))
        })
    }

    /// The intrinsic-dimension suite on a cluster (the document of `intrinsic_dimension`): the distinct
    /// rows' graph from the merged lists of every query block, the estimators on the driver, and the rows
    /// they read beside the graph (the covariance, the calibration and decimation subsets) by passes over
    /// the distinct rows, whose `rows` this job is told.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (rows, cols, name, elem, shards, paths, key, first, blocks, k, estimators, k_mle, discard_fraction, range_max, metric_name, seed, scale_curve))]
    fn intrinsic_dimension(
        rows: usize,
        cols: usize,
        name: String,
        elem: &str,
        shards: usize,
        paths: Option<Vec<String>>,
        key: Option<String>,
        first: Vec<u32>,
        blocks: Vec<Vec<u8>>,
        k: usize,
        estimators: Vec<String>,
        k_mle: usize,
        discard_fraction: f64,
        range_max: usize,
        metric_name: &str,
        seed: u64,
        scale_curve: bool,
    ) -> PyResult<Job> {
        use repscope::intrinsic::suite;
        let cfg = super::id_config(
            estimators,
            k_mle,
            discard_fraction,
            range_max,
            metric_name,
            seed,
            scale_curve,
        )?;
        let e = elem_of(elem)?;
        let all = name.clone();
        Job::start(rows, cols, name, elem, shards, move |p| {
            let dedup = repscope::data::Dedup::from_first(&first);
            if dedup.n_distinct() != p.rows() {
                return Err(partial::corrupt(
                    "the distinct rows do not match the first equal rows",
                ));
            }
            let graph = if k > 0 {
                Some(knn_partial::graph(&decoded(&blocks)?, &first, k, cfg.metric)?.0)
            } else {
                None
            };
            let info = suite::Rows {
                name: &all,
                n: first.len(),
                d: cols,
                n_distinct: dedup.n_distinct(),
                duplicates_merged: dedup.merged,
                max_multiplicity: dedup.max_multiplicity,
            };
            let r = suite::run_on(
                &suite::Distinct::Passes(p),
                graph.as_ref(),
                &info,
                &cfg,
                &Silent,
            )?;
            let input = documents::input_of(
                paths.as_deref().unwrap_or(&[]),
                key.as_deref(),
                &all,
                first.len(),
                cols,
                shards,
                e,
            );
            Ok(Output::Document(documents::id(&r, input, &cfg).to_string()))
        })
    }

    /// The exact duplicate rows of rows on a cluster: every row's first equal row.
    #[staticmethod]
    fn dedup(rows: usize, cols: usize, name: String, elem: &str, shards: usize) -> PyResult<Job> {
        Job::start(rows, cols, name, elem, shards, move |p| {
            let (dup, first) = partial::first_equal(p, &Silent)?;
            let doc = serde_json::to_string(&dup).unwrap_or_default();
            Ok(Output::Dedup(first, doc))
        })
    }

    /// The next pass to run (its bytes), or None when the job has ended.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let msg = py.detach(|| self.asks.lock().unwrap().recv());
        match msg {
            Ok(Msg::Pass(b)) => Ok(Some(bytes(py, &b))),
            Ok(Msg::Done(r)) => {
                if let Some(t) = self.thread.lock().unwrap().take() {
                    let _ = py.detach(|| t.join());
                }
                *self.result.lock().unwrap() = Some(r);
                Ok(None)
            }
            Err(_) => Err(PyRuntimeError::new_err("the job ended without a result")),
        }
    }

    /// The merged partial result of the pass `next` gave.
    fn answer(&self, b: Vec<u8>) -> PyResult<()> {
        self.answer
            .send(b)
            .map_err(|_| PyRuntimeError::new_err("the job has ended"))
    }

    /// The job's result once `next` gave None: a JSON document, or (first equal rows, duplicates JSON).
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.result.lock().unwrap().take() {
            None => Err(PyRuntimeError::new_err("the job has not ended")),
            Some(Err(e)) => Err(to_py(e)),
            Some(Ok(Output::Document(s))) => Ok(s.into_pyobject(py)?.into_any()),
            Some(Ok(Output::Activations(doc, rows, d))) => {
                let (arrays, peak_dim) = super::row_arrays(py, *rows, d);
                Ok((doc, arrays, peak_dim).into_pyobject(py)?.into_any())
            }
            Some(Ok(Output::Dedup(first, doc))) => {
                let a: Bound<'py, PyArray1<u32>> = first.into_pyarray(py);
                Ok((a, doc).into_pyobject(py)?.into_any())
            }
        }
    }
}
