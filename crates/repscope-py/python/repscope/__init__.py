"""repscope: the geometry of learned representations, from Python.

The same engine as the ``repscope`` command-line tool, with no subprocess and no files in between: intrinsic
dimension (``repscope.id``: TwoNN, MLE, GRIDE, PCA, LID in scikit-dimension's estimator style, and the full
suite in ``intrinsic_dimension``), exact kNN, the covariance spectrum, class geometry, similarity of two
representations, the layer study and the HTML report.

Arrays are n_samples × n_features. A C-contiguous float32 numpy array is read in place (no copy); a float64
array stays float64 where precision is the point; any other dtype or memory order is converted once to float32. The GIL is released while the engine computes, and the
engine uses all cores (set ``RAYON_NUM_THREADS`` before the first call to limit them). Bad input raises
ValueError with the engine's message, the same as the CLI prints; NaN or inf names the first bad row and
column.

Rows: the streaming functions (``spectrum``, ``activations``, ``classes``, ``compare``, and the SAE's ``fit`` and
``evaluate``) take as X an array; a path (a file, a folder of shards, a pattern) or a list of shard paths, which
the engine streams from disk; a list of 2-D arrays, concatenated; or any other
iterable of 2-D arrays of one width and dtype (a generator, a data loader), which is read once, block by block,
into a temporary folder of .npy shards under ``tempfile.gettempdir()`` (set ``TMPDIR`` to move it), streamed
from there and removed when the call returns: memory holds one block, the disk holds the rows meanwhile.

The dict-returning functions give exactly the JSON document of the matching CLI command with ``--json``
(same names, same numbers); only ``input`` differs, which has ``path`` and ``key`` set to None for arrays.
"""

import json
import os

import numpy as np

from . import _repscope, id, sae
from ._arrays import as_labels, as_matrix, check_int, rows

__version__ = _repscope.__version__

__all__ = [
    "id",
    "sae",
    "knn",
    "intrinsic_dimension",
    "spectrum",
    "activations",
    "classes",
    "compare",
    "layers",
    "report",
    "__version__",
]


def knn(X, k=10, metric="euclidean"):
    """Exact k nearest neighbours of every row (itself excluded).

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    k : int, default 10
        Neighbours per row; needs more than k distinct rows.
    metric : {"euclidean", "cosine"}, default "euclidean"
        Cosine distance is 1 - cos(x, y).

    Returns
    -------
    indices : ndarray of int64, shape (n_samples, k)
        Row numbers of the neighbours, nearest first (ties: the smaller row first).
    distances : ndarray of float32, shape (n_samples, k)

    Exact duplicate rows are merged first, as ``repscope knn`` does: a duplicated row lists its
    representative's neighbours, so no row has another copy of itself at distance 0 among its neighbours.
    The values equal the ``indices`` and ``distances`` arrays ``repscope knn -o out.npz`` writes.
    """
    k = check_int(k, "k", 1)
    return _repscope.knn(as_matrix(X), k, str(metric))


def intrinsic_dimension(
    X,
    estimators=None,
    k=20,
    discard_fraction=0.1,
    range_max=64,
    metric="euclidean",
    seed=0,
    scale_curve=True,
):
    """The intrinsic-dimension suite: every estimator, a recommended value and the scale curve.

    Returns the document of ``repscope id --json``. ``result["dimension"]`` is the recommended estimate
    (``twonn_calibrated``: TwoNN corrected for its finite-sample bias against uniform balls of the same
    size, the most accurate of the suite's continuous estimators with a standard error on the benchmark
    manifolds) with the reason it was chosen;
    ``result["estimates"]`` lists every estimator; ``result["scale_curve"]`` has the GRIDE multiscale and
    decimation curves.

    Parameters
    ----------
    estimators : list of str, optional
        Any of twonn_calibrated, twonn, twonn_mle, mle, gride, pca_ev, pca_fo, pca_pr, pca, all (default all).
    k : int, default 20
        Neighbours of the Levina–Bickel MLE (the CLI's ``-k``).
    discard_fraction : float, default 0.1
        TwoNN's discarded fraction of the largest ratios.
    range_max : int, default 64
        Largest neighbour rank of the GRIDE scale curve.
    metric : {"euclidean", "cosine"}
    seed : int, default 0
        Seed of every random step (decimation subsets, calibration).
    scale_curve : bool, default True
        False skips the GRIDE multiscale and decimation curves (the CLI's ``--no-scale``).
    """
    if isinstance(estimators, str):
        estimators = [estimators]
    doc = _repscope.id_doc(
        as_matrix(X),
        [str(e) for e in (estimators or [])],
        check_int(k, "k", 1),
        float(discard_fraction),
        check_int(range_max, "range_max", 2),
        str(metric),
        check_int(seed, "seed", 0),
        bool(scale_curve),
    )
    return json.loads(doc)


def spectrum(X, eps2=0.5, alpha_window=(11, 100), top_rogue=10, key=None, coding_rate=False, duplicates=False):
    """Covariance spectrum: effective rank, RankMe, participation ratio, alpha-ReQ, coding rate, anisotropy.

    X is an array, or files streamed in one pass with O(d²) memory: a path to a .npy, .npz or .safetensors
    file, a folder of such shards (natural order), a pattern such as ``"cache/*.npy"``, or a list of shard
    paths; ``key`` names the array of each .npz or .safetensors shard. A list of 2-D arrays is their
    concatenation; any other iterable of 2-D arrays (a generator of activation batches) is streamed too,
    read once through temporary ``.npy`` shards (see "Rows" in the module docstring).

    Returns the document of ``repscope spectrum --json``: ``eigenvalues`` (centred covariance, divided by
    n - 1, largest first), ``explained_variance_ratio``, ``effective_rank`` (centred) and ``rankme``
    (uncentred), ``participation_ratio``, ``alpha_req`` (slope with R² over the rank window), ``coding_rate``
    (MCR² on unit rows, parameter eps2 = epsilon squared; None unless ``coding_rate=True``), ``anisotropy``
    (mean cosine over distinct pairs), ``rogue_dimensions`` and, with ``duplicates=True``, ``duplicates``
    (exact duplicate rows: ``distinct``, ``merged``, ``groups``, ``max_multiplicity`` and the ``largest``
    groups by first row).

    Parameters
    ----------
    eps2 : float, default 0.5
        Coding-rate distortion epsilon² (not epsilon).
    alpha_window : (int, int), default (11, 100)
        alpha-ReQ rank window, 1-based and inclusive, clipped to the numerical rank.
    top_rogue : int, default 10
        How many rogue dimensions to list.
    coding_rate : bool, default False
        Whether to compute the coding rate. It needs the Gram matrix of the unit rows, a second d × d
        product as costly as the covariance's, so asking for it nearly doubles the time on wide data.
    duplicates : bool, default False
        Whether to find exact duplicate rows: a hash of every row in the same pass (8 bytes a row), and a
        pass comparing values only where two rows share a hash.
    """
    coding_rate, duplicates = _flag(coding_rate, "coding_rate"), _flag(duplicates, "duplicates")
    try:
        first, last = alpha_window
    except (TypeError, ValueError):
        raise ValueError(f"alpha_window {alpha_window!r}: expected (first, last), e.g. (11, 100)") from None
    window = (check_int(first, "alpha_window[0]", 0), check_int(last, "alpha_window[1]", 0))
    top = check_int(top_rogue, "top_rogue", 0)
    with rows(X) as r:
        doc = _repscope.spectrum_doc(r, float(eps2), window, top, key, coding_rate, duplicates)
    return json.loads(doc)


def _flag(value, name):
    """A True/False parameter (numpy's bool too), as a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"invalid parameter {name}: expected True or False, got {value!r}")
    return bool(value)


def _number(value, name):
    """A real-number parameter."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"invalid parameter {name}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid parameter {name}: expected a number, got {value!r}") from None


def activations(
    X,
    token_ids=None,
    tokenizer=None,
    massive_abs=100.0,
    massive_ratio=1000.0,
    eps=None,
    peak_factor=10.0,
    outlier_sigma=3.0,
    top_rogue=10,
    max_listed=100,
    key=None,
    duplicates=True,
):
    """Activation statistics: massive activations, outlier and rogue dimensions, sparsity, norms, gamma.

    X is an array or, streamed in one pass, files: a path, a folder of shards, a pattern or a list of shard
    paths, or an iterable of 2-D arrays (as for ``spectrum``); ``key`` names the array of each .npz or .safetensors shard.

    Returns the document of ``repscope activations --json`` with one more key, ``rows``: per-row numpy arrays
    ``norm``, ``zero_fraction``, ``peak`` (the signed value of the largest magnitude), ``peak_dim``,
    ``median_abs`` and, when ``eps`` is given, ``small_fraction``.

    Parameters
    ----------
    token_ids : array-like of int, shape (n_samples,), optional
        The token of each row; massive values and peak rows then name their tokens.
    tokenizer : callable, optional
        Maps a token id to its text (for example a Hugging Face tokenizer's ``convert_ids_to_tokens``).
    massive_abs, massive_ratio : float, default 100 and 1000
        A value is massive when ``|a| > massive_abs`` and ``|a| > massive_ratio`` times the median ``|a|`` of
        its row (Sun et al. 2024).
    eps : float, optional
        Also count ``|a| < eps`` as inactive (exact zeros are always counted).
    peak_factor : float, default 10
        A row is a peak row when ``max|a| / median|a|`` is at least this multiple of its median over rows.
    outlier_sigma : float, default 3
        A dimension is an outlier when its mean lies this many standard deviations from the mean of the
        dimension means.
    top_rogue : int, default 10
        How many rogue dimensions (shares of the mean cosine similarity) to list.
    max_listed : int, default 100
        How many massive values and peak-row groups to list; all are counted.
    duplicates : bool, default True
        Whether to find exact duplicate rows (the document's ``duplicates``): a hash of every row in the same
        pass, and a pass comparing values only where two rows share a hash.
    """
    ids, args = _activation_args(
        token_ids, tokenizer, massive_abs, massive_ratio, eps, peak_factor, outlier_sigma, top_rogue, max_listed,
        key, duplicates,
    )
    with rows(X) as r:
        doc, per_row, peak_dim = _repscope.activations_doc(r, ids, *args)
    return _activation_doc(doc, per_row, peak_dim, tokenizer)


def _activation_args(
    token_ids, tokenizer, massive_abs, massive_ratio, eps, peak_factor, outlier_sigma, top_rogue, max_listed, key,
    duplicates,
):
    """The checked arguments of ``activations``: (token ids as a list or None, the engine's arguments)."""
    duplicates = _flag(duplicates, "duplicates")
    ids = None
    if token_ids is not None:
        t = np.asarray(token_ids)
        if t.ndim != 1 or t.dtype.kind not in "iu":
            raise ValueError(f"token_ids: expected a 1-D integer array, got dtype {t.dtype} and shape {t.shape}")
        if t.size and (t.min() < 0 or t.max() > 2**32 - 1):
            raise ValueError("token_ids: token ids must lie in 0 .. 2**32 - 1")
        ids = t.astype(np.uint32).tolist()
    if tokenizer is not None and not callable(tokenizer):
        raise ValueError("tokenizer: expected a callable that maps a token id to its text")
    args = (
        _number(massive_abs, "massive_abs"),
        _number(massive_ratio, "massive_ratio"),
        None if eps is None else _number(eps, "eps"),
        _number(peak_factor, "peak_factor"),
        _number(outlier_sigma, "outlier_sigma"),
        check_int(top_rogue, "top_rogue", 0),
        check_int(max_listed, "max_listed", 0),
        key,
        duplicates,
    )
    return ids, args


def _activation_doc(doc, per_row, peak_dim, tokenizer):
    """The engine's activation document as ``activations`` returns it: tokens named, per-row arrays added."""
    doc = json.loads(doc)
    if tokenizer is not None:
        for item in doc["massive"]["listed"] + doc["peak_rows"]["groups"]:
            if item["token_id"] is not None:
                item["token"] = str(tokenizer(item["token_id"]))
    doc["rows"] = dict(per_row)
    doc["rows"]["peak_dim"] = peak_dim
    return doc


def classes(X, labels, k=10, classifier=None, bias=None, key=None, knn_sample=20_000, seed=0):
    """Class geometry: neural collapse NC1–NC4, CDNV, nearest-class-centre and leave-one-out kNN accuracy.

    X is an array, or files streamed in two passes with O(d² + C·d) memory: a path (a file, a folder of
    shards or a pattern) or a list of shard paths, ``key`` naming the array of each .npz or .safetensors
    shard. Streamed, the kNN vote runs on a seeded sample of ``knn_sample`` rows (``seed``) and says so.

    Returns the document of ``repscope classes --json`` (``labels`` there is None: the labels came from an
    array, not a file).

    Parameters
    ----------
    labels : array-like, shape (n_samples,)
        Integer or string class of every row. Classes are ordered as the CLI orders them: integers by
        value, strings alphabetically.
    k : int, default 10
        Neighbours of the leave-one-out kNN vote (euclidean, ties to the nearer neighbour); 0 skips it.
    classifier : array-like, shape (n_classes, n_features), optional
        Weights W of a linear classifier, one row per class in that order, for NC3 and NC4.
    bias : array-like, shape (n_classes,), optional
        Its bias b (zero when omitted).
    """
    raw, numeric = as_labels(labels)
    W = None if classifier is None else as_matrix(classifier, "classifier")
    b = None
    if bias is not None:
        if W is None:
            raise ValueError("bias needs classifier: pass the classifier weights W as well")
        try:
            b = [float(v) for v in np.asarray(bias, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError) as e:
            raise ValueError(f"bias: cannot be read as numbers ({e})") from None
    args = (raw, numeric, check_int(k, "k", 0), W, b, key, check_int(knn_sample, "knn_sample", 1),
            check_int(seed, "seed", 0))
    with rows(X) as r:
        doc = _repscope.classes_doc(r, *args)
    return json.loads(doc)


def compare(
    X,
    Y,
    metrics=None,
    k=10,
    labels=None,
    cka_route="auto",
    rbf_threshold=1.0,
    rbf_median="pairs",
    batch_size=1000,
    anchors=None,
    anchor_mode="first",
    svcca_threshold=0.99,
    gram_limit=20_000,
    seed=0,
    key_x=None,
    key_y=None,
):
    """Similarity of two representations of the same rows (n × d1 and n × d2, any widths).

    X and Y are arrays, or paths (a file, a folder of shards or a pattern) or lists of shard paths, or
    iterables of 2-D arrays (as for ``spectrum``, streamed like paths). Paths
    stream in one pass with O((d1 + d2)²) memory and give the streamed measures: linear CKA (feature
    route), the CCA family (covariance route) and Procrustes; ``key_x`` and ``key_y`` name the arrays of
    .npz or .safetensors shards.

    Returns the document of ``repscope compare --json``: ``measures`` maps each measure's name to its value
    (cka_linear, cka_linear_debiased, cka_rbf, cka_minibatch, cca_mean_rho, cca_r2, svcca, pwcca,
    procrustes_angular, procrustes_euclidean, rsa_spearman, mutual_knn, knn_jaccard, cknna, relative_cos,
    stitching_accuracy), ``details`` has the results behind them, ``warnings`` what must be known about a
    value. ``timing_s["load"]`` is 0 here (nothing is read from files).

    Parameters
    ----------
    metrics : list of str or str, optional
        Measures or groups (cka, cca, procrustes, knn, relative, all). Default: every measure that fits in
        memory (those holding n × n matrices only up to ``gram_limit`` rows).
    k : int, default 10
        Neighbours of mutual kNN and CKNNA (cosine).
    labels : array-like, optional
        One label per row, for the stitching accuracy.
    cka_route : {"auto", "feature", "gram"}
    rbf_threshold : float, default 1.0
        RBF bandwidth t relative to the median squared distance.
    rbf_median : {"pairs", "kornblith"}
    batch_size : int, default 1000
        Rows per batch of minibatch CKA.
    anchors : int, optional
        Anchors of the relative representation (default min(100, n)).
    anchor_mode : {"first", "random"}
    svcca_threshold : float, default 0.99
    gram_limit : int, default 20000
    seed : int, default 0
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    with rows(X, "X") as rx, rows(Y, "Y") as ry:
        if isinstance(rx, (str, list)) or isinstance(ry, (str, list)):
            if labels is not None:
                raise ValueError("labels (for the stitching accuracy) need arrays: pass X and Y as arrays")
            doc = _repscope.compare_sources_doc(
                rx, ry, [str(m) for m in (metrics or [])], float(svcca_threshold), key_x, key_y
            )
            return json.loads(doc)
        raw, numeric = (None, False) if labels is None else as_labels(labels)
        doc = _repscope.compare_doc(
            rx,
            ry,
            [str(m) for m in (metrics or [])],
            str(cka_route),
            float(rbf_threshold),
            str(rbf_median),
            check_int(batch_size, "batch_size", 1),
            check_int(k, "k", 1),
            None if anchors is None else check_int(anchors, "anchors", 1),
            str(anchor_mode),
            float(svcca_threshold),
            check_int(gram_limit, "gram_limit", 0),
            check_int(seed, "seed", 0),
            raw,
            numeric,
        )
    return json.loads(doc)


def _named(arrays, what):
    if isinstance(arrays, dict):
        items = [(str(k), v) for k, v in arrays.items()]
    elif isinstance(arrays, (list, tuple)):
        items = [(f"layer_{i}", v) for i, v in enumerate(arrays)]
    else:
        raise ValueError(f"{what}: pass a dict of name -> array or a list of arrays, got {type(arrays).__name__}")
    return [n for n, _ in items], [as_matrix(v, n) for n, v in items]


def layers(arrays, k=10, seed=0):
    """The layer study: ID and spectrum per layer, debiased linear CKA and mutual kNN between layers.

    Parameters
    ----------
    arrays : dict of name -> array, or list of arrays
        One n × d_l array per layer, the same n rows (same inputs, same order) in every layer; a list names
        them layer_0, layer_1, ... At least two.
    k : int, default 10
        Neighbours of the mutual-kNN matrix (cosine).
    seed : int, default 0

    Returns the document of ``repscope layers --json``: ``keys``, ``layers`` (per layer its recommended ID,
    every ID estimate and a spectrum summary), ``cka_linear_debiased`` and ``mutual_knn`` (layer × layer).
    """
    names, mats = _named(arrays, "layers")
    doc = _repscope.layers_doc(names, mats, check_int(k, "k", 1), check_int(seed, "seed", 0))
    return json.loads(doc)


def report(
    X, path, labels=None, seed=0, sample=None, force=False, sae=None, label_names=None, search=False
):
    """Writes the full report, report.json and a self-contained report.html, into the folder ``path``.

    Parameters
    ----------
    X : array-like, or dict of name -> array, or list of arrays
        One representation, or several with the same rows (then the report adds the layer study).
    path : str or os.PathLike
        Output folder; created if missing. An existing folder must be empty unless ``force``.
    labels : array-like, optional
        One label per row: adds the class-geometry section.
    seed : int, default 0
    sample : int, optional
        Analyse a seeded random sample of this many rows of each input.
    force : bool, default False
        Write into a folder that already has files in it.
    sae : repscope.sae.TopKSAE, or str or os.PathLike, optional
        An SAE (fitted or loaded, or a folder or OpenAI .pt file to load) evaluated on every input of its
        width: adds the sparse-autoencoder section.
    label_names : sequence of str, optional
        Names of integer labels: label i is shown as ``label_names[i]``. Every label needs a name, and
        names must be unique (ValueError otherwise). String labels are their own names.
    search : bool, default False
        Add the search study to every input: HNSW recall for vendor defaults and against ef_search, and
        compression curves (recall against bytes per vector).

    Returns ``{"json": path, "html": path, "partial_failure": bool}`` as ``repscope report --json`` prints;
    ``partial_failure`` is True when a section failed (its note in the report says why), and a
    RuntimeWarning says so (the CLI exits with status 3 then). Bad input raises ValueError before the
    folder is touched.
    """
    import os

    if isinstance(X, (dict, list, tuple)):
        names, mats = _named(X, "report")
    else:
        names, mats = ["X"], [as_matrix(X)]
    raw, numeric = (None, False) if labels is None else as_labels(labels)
    if sae is not None:
        from . import sae as _sae

        sae = (sae if isinstance(sae, _sae.TopKSAE) else _sae.load(sae))._fitted()
    out = _repscope.report_files(
        names,
        mats,
        os.fspath(path),
        check_int(seed, "seed", 0),
        None if sample is None else check_int(sample, "sample", 1),
        bool(force),
        f"repscope.report (Python, repscope {__version__})",
        raw,
        numeric,
        sae,
        None if label_names is None else [str(n) for n in label_names],
        bool(search),
    )
    result = json.loads(out)
    if result["partial_failure"]:
        import warnings

        warnings.warn(
            f"some report sections failed; their notes in {result['json']} say why (the rest was produced)",
            RuntimeWarning,
            stacklevel=2,
        )
    return result
