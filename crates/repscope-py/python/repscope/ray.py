"""repscope on a Ray cluster: the same results as the single-process functions, computed by Ray tasks.

Install with ``pip install "repscope[ray]"``. Each function takes a source of rows spread over shards:

- a path, a folder of shards or a pattern, or a list of them (every format repscope reads; ``key`` names the
  array inside .npz and .safetensors shards): each file is one shard, read by the tasks themselves from
  storage every node sees;
- a list of object refs of 2-D arrays, or of arrays (put into the object store here), one shard each;
- a Ray Dataset: each block is a shard (``column`` names the column of row vectors when there are several).

The rows are numbered across the shards in order, as if the shards were concatenated.

- ``knn`` finds exact duplicate rows across shards first (a hash of every row, then the rows that share a
  hash compared) and merges them as ``repscope.knn`` does. It splits the distinct rows into blocks (in row
  order, across shard boundaries) and runs one task per block with itself (the engine's self search) and
  one per pair of blocks, where each product of two tiles ranks candidates for the rows of both, so the
  cluster does the single-process search's work, not twice it. Every task's lists are exact (the engine's certificate), and an exact k-way merge
  keeps each row's k nearest by (distance, row): the graph equals ``repscope.knn`` of the concatenated rows,
  ties included.
- ``lid`` computes the local intrinsic dimension of every row from that graph, and ``intrinsic_dimension``
  the suite of global estimators and its scale curve.
- ``spectrum``, ``activations``, ``compare``, ``classes`` and ``sae_eval`` run the engine's streaming measure
  on this process, with every pass over the rows mapped over the shards and its partial results merged in a
  fixed tree in the shards' order. A pass that carries something per row (the labels of ``classes``) reaches
  each task narrowed to its shard.

Tasks are pure functions of their inputs and Ray retries them (``max_retries``): a worker lost mid-task is
replaced and the task run again, and the result does not change. Partial results record the rows they cover,
so a result counted twice or missing is an error, never a different number. Nothing is written to disk.

Ray is started on this machine when it is not running (``ray.init()``), or joined at ``address``.
"""

import json
import os
import socket
import sys
import time

import numpy as np

from . import _repscope
from ._arrays import as_matrix, check_int

__all__ = ["knn", "lid", "intrinsic_dimension", "spectrum", "activations", "compare", "classes", "sae_eval"]

#: Retries of a task whose worker died (Ray's ``max_retries``).
MAX_RETRIES = 3


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError(
            'repscope.ray needs Ray: pip install "repscope[ray]" (or pip install "ray[data]")'
        ) from None
    return ray


def _connect(address):
    """Ray, initialised: the running instance, the cluster at ``address``, or a new local one."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address is not None and address != "auto":
        target = address.split("://", 1)[-1]
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise ConnectionError(
                f"cannot reach the Ray cluster at {address} ({e}). Start it with `ray start --head`, check the "
                "address, or pass address=None to start Ray on this machine."
            ) from None
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except ConnectionError as e:
        raise ConnectionError(
            f"cannot reach the Ray cluster at {address or 'auto'} ({e}). Start it with `ray start --head`, or "
            "pass address=None to start Ray on this machine."
        ) from None
    return ray


_TASKS = {}


def _tasks():
    """The remote functions, defined once Ray is imported."""
    if _TASKS:
        return _TASKS
    ray = _ray()
    opts = dict(max_retries=MAX_RETRIES, retry_exceptions=False)

    @ray.remote(**opts)
    def info(x, key):
        _task_threads()
        return _repscope.shard_info(_rows(x), key)

    @ray.remote(**opts)
    def pass_map(spec, x, first_row, key, name, y=None, key_y=None, name_y="shard", keep=None, x_rows=None, y_rows=None):
        _task_threads()
        y = None if y is None else _rows(y)
        return _repscope.pass_map(spec, _rows(x), first_row, key, name, y, key_y, name_y, keep, x_rows, y_rows)

    @ray.remote(**opts)
    def pass_group(items, key):
        _task_threads()
        return _group(items, key)

    @ray.remote(**opts)
    def pass_merge(a, b):
        _task_threads()
        return _repscope.pass_merge(a, b)

    @ray.remote(**opts)
    def knn_self(pieces, ids, span, k, metric, key):
        _task_threads()
        return _repscope.knn_self_block(_pieces(pieces), ids, span, k, metric, key)

    @ray.remote(num_returns=2, **opts)
    def knn_pair(a, a_ids, a_span, b, b_ids, b_span, k, metric, key):
        _task_threads()
        return _repscope.knn_pair_block(_pieces(a), a_ids, a_span, _pieces(b), b_ids, b_span, k, metric, key)

    @ray.remote(**opts)
    def knn_merge(a, b):
        _task_threads()
        return _repscope.knn_merge(a, b)

    _TASKS.update(
        info=info,
        pass_map=pass_map,
        pass_group=pass_group,
        pass_merge=pass_merge,
        knn_self=knn_self,
        knn_pair=knn_pair,
        knn_merge=knn_merge,
    )
    return _TASKS


def _task_threads():
    """Sets the engine's threads, in a worker that has not used them yet, to the CPUs Ray gave this task.

    Runs first in every task that calls the engine. A RAYON_NUM_THREADS or OMP_NUM_THREADS the worker
    inherited (from the environment of the process that started Ray, say) is overridden: it counts a whole
    machine, and every task on the node would take that many threads, oversubscribing the cores.
    """
    ray = _ray()
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    except Exception:  # not in a task (the driver runs nothing through here): leave the setting alone
        return
    os.environ["RAYON_NUM_THREADS"] = str(max(1, int(round(cpus))))


def _rows(x):
    """A shard as the engine takes it: a path as given, an array as a float32/float64 matrix."""
    if isinstance(x, str):
        return x
    return _array(x, "shard")


def _pieces(pieces):
    """A block's pieces (shard, local rows, name) as the engine takes them: object refs inside the list
    fetched (Ray resolves only a task's top-level arguments), shards as ``_rows`` gives them."""
    ray = _ray()
    refs = [p[0] for p in pieces if isinstance(p[0], ray.ObjectRef)]
    got = iter(ray.get(refs)) if refs else iter(())
    return [(_rows(next(got) if isinstance(o, ray.ObjectRef) else o), rows, name) for o, rows, name in pieces]


def _array(x, name):
    """as_matrix, but a shard may hold no rows."""
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[0] == 0 and a.shape[1] > 0 and a.dtype.kind in "fiub":
        return np.zeros(a.shape, np.float64 if a.dtype == np.float64 else np.float32)
    return as_matrix(a, name)


class _Source:
    """A source on the cluster: Ray connected, the tasks defined, the shards measured."""

    def __init__(self, source, key, column, address, what, progress):
        self.ray, self.t, self.key = _connect(address), _tasks(), key
        self.shards = _shards(source, key, column)
        self.n, self.d, self.dtype = _measured(self.shards, key, self.ray, self.t)
        self.bar = _Progress(self.ray, what, bool(progress))
        # What an engine job is told of the rows: rows, columns, name, dtype, shards.
        name = self.shards[0].name if len(self.shards) == 1 else f"{len(self.shards)} shards"
        self.header = (self.n, self.d, name, self.dtype, len(self.shards))
        # The shard paths, for the document's input (None unless every shard is a file).
        files = all(isinstance(s.obj, str) for s in self.shards)
        self.paths = [s.obj for s in self.shards] if files else None

    def run(self, job):
        """Serves an engine job's passes on the cluster; returns its result."""
        return _run_job(self.ray, self.t, job, self.shards, self.key, self.bar)


class _Shard:
    def __init__(self, obj, name):
        self.obj, self.name = obj, name
        # The shard as this process can read it itself (a file it sees, an array it holds), or None.
        self.local = None
        self.rows = self.cols = self.dtype = self.start = None
        # (rows, cols, dtype) when known before the shard is measured.
        self.info = None
        # The other representation of the same rows, read beside this shard (compare).
        self.y = self.key_y = None
        self.y_name = "shard"
        # The rows of this shard to read, when not all (the distinct rows: intrinsic_dimension).
        self.keep = None
        # A range of rows of this shard and of y, when a piece is less than a shard (compare).
        self.x_rows = self.y_rows = None


def _shards(source, key, column):
    """The shards of a source, in row order (not yet measured)."""
    ray = _ray()
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    if hasattr(source, "to_numpy_refs") and hasattr(source, "schema"):
        names = source.schema().names
        if column is None:
            if len(names) != 1:
                raise ValueError(
                    f"the dataset has columns {names}: pass column= to name the one that holds the rows"
                )
            column = names[0]
        elif column not in names:
            raise ValueError(f"the dataset has no column {column!r}; its columns are {names}")
        refs = source.to_numpy_refs(column=column)
        return [_Shard(r, f"block {i} of the dataset") for i, r in enumerate(refs)]
    if isinstance(source, np.ndarray) or not isinstance(source, (list, tuple)):
        source = [source]
    if not source:
        raise ValueError("the source is empty: pass at least one shard (a path, an array or an object ref)")
    if all(isinstance(s, (str, os.PathLike)) for s in source):
        paths = _repscope.shard_paths([os.fspath(s) for s in source])
        out = [_Shard(p, p) for p in paths]
        for s in out:
            s.local = s.obj
        return out
    out = []
    for i, s in enumerate(source):
        if isinstance(s, ray.ObjectRef):
            out.append(_Shard(s, f"shard {i}"))
        elif isinstance(s, (str, os.PathLike)):
            raise ValueError(f"source[{i}] is a path among arrays: pass paths alone, or arrays and refs alone")
        else:
            a = _array(s, f"source[{i}]")
            out.append(_Shard(ray.put(a), f"shard {i}"))
            out[-1].info = (a.shape[0], a.shape[1], a.dtype.name)
            # The caller's own array, not a converted copy (which would double the memory held here).
            if isinstance(s, np.ndarray) and np.shares_memory(a, s):
                out[-1].local = a
    return out


def _measured(shards, key, ray, t):
    """The shards with their sizes and first rows; every shard of one width; no empty source. Files (which
    this process lists, so it sees them) and arrays put here are measured here; object refs and dataset
    blocks by a task each."""
    for s in shards:
        if isinstance(s.obj, str):
            s.info = _repscope.shard_info(s.obj, key)
    remote = [s for s in shards if s.info is None]
    got = iter(_get(ray, [t["info"].remote(s.obj, key) for s in remote], remote))
    infos = [s.info if s.info is not None else next(got) for s in shards]
    start = 0
    for s, (rows, cols, dtype) in zip(shards, infos):
        s.rows, s.cols, s.dtype, s.start = rows, cols, dtype, start
        start += rows
    first = shards[0]
    for s in shards[1:]:
        if s.cols != first.cols:
            raise ValueError(
                f"shards of different widths: {first.name} has {first.cols} columns and {s.name} has {s.cols}. "
                "Every shard must hold rows of the same width."
            )
    if start == 0 or first.cols == 0:
        raise ValueError(f"the source is empty: its {len(shards)} shards hold no rows")
    dtypes = {s.dtype for s in shards}
    if "float64" in dtypes and len(dtypes) > 1:
        wide = next(s for s in shards if s.dtype == "float64")
        other = next(s for s in shards if s.dtype != "float64")
        raise ValueError(
            f"shards of different precision: {wide.name} is float64 and {other.name} is {other.dtype}. "
            "Store every shard in one precision."
        )
    dtype = first.dtype if len(dtypes) == 1 else "float32"
    return start, first.cols, dtype


def _get(ray, refs, shards=None):
    """ray.get, with a task's error raised as the engine raised it (its message names the shard)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, (ValueError, OSError, RuntimeError)):
            raise type(cause)(str(cause)) from None
        raise


class _Progress:
    """Tasks finished, on stderr (one line, rewritten), when asked for."""

    def __init__(self, ray, what, on):
        self.ray, self.what, self.on = ray, what, on
        self.done = self.total = 0

    def wait(self, refs):
        self.total += len(refs)
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=len(pending), timeout=0.5)
            self.done += len(ready)
            if self.on:
                print(f"\rrepscope.ray {self.what}: {self.done}/{self.total} tasks", end="", file=sys.stderr)
        if self.on:
            print(file=sys.stderr)


def _tree(merge, parts):
    """Merges a list of refs pairwise in a fixed tree (neighbours in order), as tasks; returns one ref."""
    while len(parts) > 1:
        nxt = [merge.remote(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


def knn(source, k=10, metric="euclidean", *, key=None, column=None, block_rows=None, address=None, progress=False):
    """Exact k nearest neighbours of every row (itself excluded), on Ray.

    The same arrays as ``repscope.knn`` of the concatenated shards: ``indices`` (int64, n × k, row numbers
    across the shards, nearest first, ties to the smaller row) and ``distances`` (float32, n × k). Exact
    duplicate rows are merged first, as there.

    Parameters
    ----------
    source : path(s), arrays, object refs or a Ray Dataset (see the module's docstring)
    k : int, default 10
    metric : {"euclidean", "cosine"}
    key : str, optional
        The array inside .npz or .safetensors shards.
    column : str, optional
        The column of a Ray Dataset that holds the rows.
    block_rows : int, optional
        Distinct rows per block (default: enough blocks to keep every CPU of the cluster busy, at most
        200,000 rows). B blocks make B(B+1)/2 tasks. Blocks are cut from the distinct rows in order, across
        shard boundaries: the shards' sizes do not set the tasks'.
    address : str, optional
        The Ray cluster to join when Ray is not initialised (default: start Ray on this machine).
    progress : bool, default False
        Print the tasks finished on stderr.
    """
    k = check_int(k, "k", 1)
    blocks, first, metric = _graph(source, k, metric, key, column, block_rows, address, progress, "the kNN graph")
    return _repscope.knn_assemble(blocks, first, k, metric)


def lid(source, k=20, metric="euclidean", *, key=None, column=None, block_rows=None, address=None, progress=False):
    """Local intrinsic dimension of every row on Ray, from the exact graph ``knn`` computes: a fitted
    ``repscope.id.LID(k, metric)``, with the same ``dimension_pw_`` (one value per row across the shards),
    ``dimension_`` and ``summary_`` as fitting it on the concatenated rows. Parameters as in ``knn``."""
    from .id import LID

    k = check_int(k, "k", 2)
    blocks, first, metric = _graph(source, k, metric, key, column, block_rows, address, progress, "LID")
    doc, pw = _repscope.knn_lid(blocks, first, k, metric)
    return LID(k=k, metric=metric)._fitted(json.loads(doc), pw)


def _graph(source, k, metric, key, column, block_rows, address, progress, what):
    """The exact graph of the distinct rows of a source as merged lists, one per block; every row's first
    equal row; the metric's name."""
    metric = _metric(metric)
    src = _Source(source, key, column, address, "knn", progress)
    first, kept = _distinct(src)
    nd, n = len(kept), src.n
    if k + 1 > nd:
        raise ValueError(
            f"{what} needs {k} neighbours per point, so more than {k} distinct rows, but there are {nd} "
            f"({n} rows, {n - nd} duplicates merged). Pass a smaller k or more rows."
        )
    return _search(src, kept, k, metric, key, block_rows), first, metric


def _metric(metric):
    metric = str(metric)
    if metric not in ("euclidean", "cosine", "l2", "cos"):
        raise ValueError(f"unknown metric '{metric}'. Use euclidean or cosine.")
    return metric


def _distinct(src):
    """Every row's first equal row (uint32) and the distinct rows (the rows that are their own first)."""
    first, _ = src.run(_repscope.Job.dedup(*src.header))
    return first, np.flatnonzero(first == np.arange(src.n, dtype=np.uint32))


def _search(src, kept, k, metric, key, block_rows):
    """The exact k-nearest lists of the rows `kept` among themselves, merged: one result per block."""
    ray, t, shards = src.ray, src.t, src.shards
    if block_rows is None:
        block_rows = _block_rows(len(kept), int(ray.cluster_resources().get("CPU", 1)))
    block_rows = check_int(block_rows, "block_rows", 1)
    blocks = _blocks(shards, kept, block_rows, src.n)
    # One task per block with itself and per pair of blocks (one product serves both); each block's
    # lists are merged in the order of the other block.
    parts = [[None] * len(blocks) for _ in blocks]
    leaves = []
    for i, (pieces, ids, span) in enumerate(blocks):
        parts[i][i] = t["knn_self"].remote(pieces, ids, span, k, metric, key)
        leaves.append(parts[i][i])
        for j in range(i + 1, len(blocks)):
            pieces2, ids2, span2 = blocks[j]
            parts[i][j], parts[j][i] = t["knn_pair"].remote(pieces, ids, span, pieces2, ids2, span2, k, metric, key)
            leaves.append(parts[i][j])
    finals = [_tree(t["knn_merge"], row) for row in parts]
    src.bar.wait(leaves)
    return _get(ray, finals, shards)


def intrinsic_dimension(
    source,
    estimators=None,
    k=20,
    discard_fraction=0.1,
    range_max=64,
    metric="euclidean",
    seed=0,
    scale_curve=True,
    *,
    key=None,
    column=None,
    block_rows=None,
    address=None,
    progress=False,
):
    """The intrinsic-dimension suite on Ray: the document of ``repscope.intrinsic_dimension`` of the
    concatenated shards.

    The exact graph of the distinct rows is searched as ``knn`` searches it; the estimators run on this
    process from that graph, and the rows they read beside it (the covariance of the PCA estimators, the
    calibration subsample above 5,000 distinct rows, the decimation subsets) come from the shards by passes
    over the distinct rows. The graph estimators and the scale curve are identical to the single-process
    document; the PCA estimates agree to about 1e-15 relative. Estimators outside the suite's list that read
    the rows themselves (``fisher_s``, ``danco``, …) are refused: run them on a sample in memory.

    The parameters are those of ``repscope.intrinsic_dimension``; the others as in ``knn``.
    """
    if isinstance(estimators, str):
        estimators = [estimators]
    args = (
        [str(e) for e in (estimators or [])],
        check_int(k, "k", 1),
        float(discard_fraction),
        check_int(range_max, "range_max", 2),
        _metric(metric),
        check_int(seed, "seed", 0),
        bool(scale_curve),
    )
    src = _Source(source, key, column, address, "intrinsic_dimension", progress)
    first, kept = _distinct(src)
    kg = _repscope.id_neighbours(*args, src.header[2], src.n, len(kept))
    blocks = _search(src, kept, kg, args[4], key, block_rows) if kg > 0 else []
    # The distinct rows, shard by shard, numbered from 0 across the shards.
    shards, start = [], 0
    bounds = np.searchsorted(kept, [s.start for s in src.shards] + [src.n])
    for s, lo, hi in zip(src.shards, bounds[:-1], bounds[1:]):
        d = _Shard(s.obj, s.name)
        d.rows, d.cols, d.start = int(hi - lo), s.cols, start
        d.keep = src.ray.put(np.ascontiguousarray(kept[lo:hi] - s.start, dtype=np.int64))
        shards.append(d)
        start += d.rows
    header = (len(kept), src.d, src.header[2], src.dtype, len(shards))
    job = _repscope.Job.intrinsic_dimension(*header, src.paths, key, first, blocks, kg, *args)
    return json.loads(_run_job(src.ray, src.t, job, shards, key, src.bar))


def spectrum(
    source,
    eps2=0.5,
    alpha_window=(11, 100),
    top_rogue=10,
    key=None,
    coding_rate=False,
    duplicates=False,
    *,
    column=None,
    address=None,
    progress=False,
):
    """Covariance spectrum on Ray: the document of ``repscope.spectrum`` of the concatenated shards.

    The parameters are those of ``repscope.spectrum``; ``column``, ``address`` and ``progress`` as in ``knn``.
    Every number agrees with the single-process document to about 1e-15 relative (the sums are added in
    another order); on a given set of shards the result is the same on every run.
    """
    from . import _flag

    coding_rate, duplicates = _flag(coding_rate, "coding_rate"), _flag(duplicates, "duplicates")
    try:
        lo, hi = alpha_window
    except (TypeError, ValueError):
        raise ValueError(f"alpha_window {alpha_window!r}: expected (first, last), e.g. (11, 100)") from None
    window = (check_int(lo, "alpha_window[0]", 1), check_int(hi, "alpha_window[1]", 1))
    if window[1] <= window[0]:
        raise ValueError(f"alpha_window {alpha_window!r}: expected (first, last) with first < last, e.g. (11, 100)")
    top = check_int(top_rogue, "top_rogue", 0)
    src = _Source(source, key, column, address, "spectrum", progress)
    job = _repscope.Job.spectrum(*src.header, src.paths, key, float(eps2), window, top, coding_rate, duplicates)
    return json.loads(src.run(job))


def _block_rows(nd, cpus):
    """Distinct rows per block: enough blocks that the B(B+1)/2 tasks keep every CPU busy (for one or two
    CPUs, one or two blocks, whose tasks are as balanced as the work allows), at most 200,000 rows."""
    cpus = max(1, cpus)
    b = max(1, round((2 * cpus) ** 0.5)) if cpus <= 4 else int(np.ceil((8 * cpus) ** 0.5))
    return max(1, min(200_000, -(-nd // b)))


def _blocks(shards, kept, block_rows, n):
    """The distinct rows in blocks of at most block_rows, in row order, a block taking rows from as many
    shards as it spans (blocks are the unit of work, shards of storage): (pieces, global rows, span), a piece
    being (shard, its local rows, its name). The spans partition rows 0..n (rows without a block, such as
    duplicates, fall in the span of the block before them)."""
    starts = np.array([s.start for s in shards] + [n])
    out = []
    for b in range(0, len(kept), block_rows):
        ids = np.ascontiguousarray(kept[b : b + block_rows], dtype=np.int64)
        # The shard of each row: the last shard starting at or before it (empty shards are skipped).
        which = np.searchsorted(starts, ids, side="right") - 1
        pieces = []
        for seg in np.split(np.arange(len(ids)), np.flatnonzero(np.diff(which)) + 1):
            s = shards[which[seg[0]]]
            pieces.append((s.obj, np.ascontiguousarray(ids[seg] - s.start), s.name))
        out.append([pieces, ids, 0 if b == 0 else int(ids[0])])
    for i, blk in enumerate(out):
        hi = out[i + 1][2] if i + 1 < len(out) else n
        blk[2] = (blk[2], hi)
    return [tuple(b) for b in out]


def activations(
    source,
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
    *,
    column=None,
    address=None,
    progress=False,
):
    """Activation statistics on Ray: the document of ``repscope.activations`` of the concatenated shards,
    with its per-row arrays under ``"rows"``.

    The parameters are those of ``repscope.activations`` (``token_ids`` one per row across the shards);
    ``column``, ``address`` and ``progress`` as in ``knn``. Counts, maxima, listings and per-row values are
    identical to the single-process document; means and variances agree to about 1e-15 relative.
    """
    from . import _activation_args, _activation_doc

    ids, args = _activation_args(
        token_ids, tokenizer, massive_abs, massive_ratio, eps, peak_factor, outlier_sigma, top_rogue, max_listed,
        key, duplicates,
    )
    src = _Source(source, key, column, address, "activations", progress)
    job = _repscope.Job.activations(*src.header, src.paths, key, ids, *args[:7], args[8])
    doc, per_row, peak_dim = src.run(job)
    return _activation_doc(doc, per_row, peak_dim, tokenizer)


def _run_job(ray, t, job, shards, key, bar):
    """Serves a job's passes: each mapped over every shard that holds rows it needs, the partial results
    merged in a fixed tree in shard order.

    Consecutive shards run in groups of a power of two (``_group_size``), one task per group that maps its
    shards and merges them in the same pairwise order, so that a group's result is a subtree of the shard
    tree and the bits do not depend on the grouping. The groups' results are merged by tasks, or on this
    process when there are few (where a task's latency would cost more than the merge)."""
    g = _group_size(len(shards), int(ray.cluster_resources().get("CPU", 1)))
    while True:
        spec = job.next()
        if spec is None:
            return job.result()
        here = _driver_items(spec, shards)
        if here is not None:
            job.answer(_group(here, key))
            continue
        spec_ref = None
        leaves = []
        for a in range(0, len(shards), g):
            items = []
            for s in shards[a : a + g]:
                skip = _repscope.pass_skip(spec, s.start, s.rows, s.cols)
                if skip is not None:
                    items.append(skip)
                    continue
                # A pass that carries something per row (labels, rows asked for) goes to each shard narrowed.
                mine = _repscope.pass_narrow(spec, s.start, s.rows)
                if mine is None:
                    if spec_ref is None:
                        spec_ref = ray.put(spec)
                    mine = spec_ref
                items.append((mine, s.obj, s.start, s.name, s.y, s.key_y, s.y_name, s.keep, s.x_rows, s.y_rows))
            if all(isinstance(i, bytes) for i in items):
                leaves.append(_tree_local(items))
            elif len(items) == 1:
                mine, x, start, name, y, key_y, y_name, keep, x_rows, y_rows = items[0]
                leaves.append(t["pass_map"].remote(mine, x, start, key, name, y, key_y, y_name, keep, x_rows, y_rows))
            else:
                leaves.append(t["pass_group"].remote(items, key))
        refs = [p for p in leaves if not isinstance(p, bytes)]
        bar.wait(refs)
        if len(leaves) <= LOCAL_MERGE_SHARDS:
            got = iter(_get(ray, refs, shards))
            merged = _tree_local([p if isinstance(p, bytes) else next(got) for p in leaves])
        else:
            merged = _get(ray, _tree(t["pass_merge"], [ray.put(p) if isinstance(p, bytes) else p for p in leaves]))
        job.answer(merged)


def _driver_items(spec, shards):
    """The items of a pass this process runs itself, with the same maps and merge tree as the tasks', or
    None: a pass of some rows' values (the first rows, rows asked for by number) when every shard it reads
    is a file this process sees or an array it holds. The values come here either way; reading them here
    saves a task's round trip."""
    if _repscope.pass_rows(spec) is None:
        return None
    items = []
    for s in shards:
        skip = _repscope.pass_skip(spec, s.start, s.rows, s.cols)
        if skip is not None:
            items.append(skip)
            continue
        if s.local is None or s.y is not None:
            return None
        mine = _repscope.pass_narrow(spec, s.start, s.rows)
        items.append((spec if mine is None else mine, s.local, s.start, s.name, None, None, s.y_name, s.keep,
                      s.x_rows, s.y_rows))
    return items


#: The most shards one task of a pass reads.
MAX_GROUP = 64


def _group_size(shards, cpus):
    """Shards per task of a pass: the largest power of two (at most MAX_GROUP) that still leaves a task for
    every CPU, so that many small shards do not make as many small tasks."""
    g = 1
    while 2 * g <= MAX_GROUP and g < shards and -(-shards // (2 * g)) >= max(1, cpus):
        g *= 2
    return g


def _group(items, key):
    """A group task's work: each shard's pass (or its partial result, already known), merged in the tree's
    order. Object refs inside the items are fetched (Ray resolves only a task's top-level arguments)."""
    ray = _ray()
    out = []
    for it in items:
        if isinstance(it, bytes):
            out.append(it)
            continue
        spec, x, start, name, y, key_y, y_name, keep, x_rows, y_rows = (
            ray.get(v) if isinstance(v, ray.ObjectRef) else v for v in it
        )
        y = None if y is None else _rows(y)
        out.append(_repscope.pass_map(spec, _rows(x), start, key, name, y, key_y, y_name, keep, x_rows, y_rows))
    return _tree_local(out)


#: Up to this many shards, a pass's partial results are merged on this process (the same tree as the tasks').
LOCAL_MERGE_SHARDS = 16


def _tree_local(parts):
    """_tree's merges, in the same order, on this process."""
    while len(parts) > 1:
        nxt = [_repscope.pass_merge(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]


def compare(
    X,
    Y,
    metrics=None,
    svcca_threshold=0.99,
    *,
    key_x=None,
    key_y=None,
    column_x=None,
    column_y=None,
    address=None,
    progress=False,
):
    """Similarity of two representations of the same rows on Ray: the document of ``repscope.compare`` of
    the concatenated shards given as paths, with the streamed measures (linear CKA by the feature route, the
    CCA family by the covariance route, Procrustes).

    X and Y are sources as in ``knn`` (``key_x``/``key_y`` name the arrays of .npz or .safetensors shards,
    ``column_x``/``column_y`` the columns of Ray Datasets; X and Y may be one dataset's two columns), with
    the same rows in the same order, sharded alike or not: the rows are cut at every shard boundary of
    either, and each piece is read from its shard of X beside its shard of Y. Every number agrees with the
    single-process document to about 1e-15 relative.

    Parameters
    ----------
    metrics : list of str or str, optional
        Streamed measures or groups (cka, cca, procrustes); default all of them.
    svcca_threshold : float, default 0.99
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    sx = _Source(X, key_x, column_x, address, "compare", progress)
    sy = _Source(Y, key_y, column_y, address, "compare", False)
    if sx.n != sy.n:
        raise ValueError(
            f"X has {sx.n} rows and Y has {sy.n}: pass two representations of the same inputs, in the same order"
        )
    pairs = _side_by_side(sx.shards, sy.shards, sx.n, key_y)
    job = _repscope.Job.compare(
        sx.n,
        (sx.d, sy.d),
        (sx.header[2], sy.header[2]),
        (sx.dtype, sy.dtype),
        (len(sx.shards), len(sy.shards)),
        (sx.paths, sy.paths),
        (key_x, key_y),
        [str(m) for m in (metrics or [])],
        float(svcca_threshold),
    )
    return json.loads(_run_job(sx.ray, sx.t, job, pairs, key_x, sx.bar))


def _side_by_side(xs, ys, n, key_y):
    """The pieces that X's and Y's shards cut rows 0..n into (at every boundary of either), each a shard of X
    (rows x_rows of it) beside a shard of Y (rows y_rows of it), as the shards of a joined source."""
    bx = np.array([s.start for s in xs] + [n])
    by = np.array([s.start for s in ys] + [n])
    cuts = np.unique(np.concatenate([bx, by]))
    out = []
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        # The shard holding row a on each side (the last one starting at or before it: empty shards are
        # passed over).
        x = xs[int(np.searchsorted(bx, a, side="right")) - 1]
        y = ys[int(np.searchsorted(by, a, side="right")) - 1]
        p = _Shard(x.obj, x.name)
        p.start, p.rows, p.cols = a, b - a, x.cols + y.cols
        p.x_rows = None if (a, b) == (x.start, x.start + x.rows) else (a - x.start, b - x.start)
        p.y, p.key_y, p.y_name = y.obj, key_y, y.name
        p.y_rows = None if (a, b) == (y.start, y.start + y.rows) else (a - y.start, b - y.start)
        out.append(p)
    return out


def classes(
    source,
    labels,
    k=10,
    classifier=None,
    bias=None,
    key=None,
    knn_sample=20_000,
    seed=0,
    *,
    column=None,
    address=None,
    progress=False,
):
    """Class geometry on Ray: the document of ``repscope.classes`` of the concatenated shards given as paths
    (NC1–NC4, CDNV, nearest-class-centre accuracy over every row; the leave-one-out kNN vote over a seeded
    sample of ``knn_sample`` rows, fetched from the shards).

    ``labels`` holds one class per row across the shards; each task receives only its shard's labels. The
    other parameters are those of ``repscope.classes``; ``column``, ``address`` and ``progress`` as in
    ``knn``. Every number agrees with the single-process document to about 1e-15 relative; counts and the
    kNN vote are identical.
    """
    from ._arrays import as_labels

    raw, numeric = as_labels(labels)
    W = None if classifier is None else as_matrix(classifier, "classifier")
    b = None
    if bias is not None:
        if W is None:
            raise ValueError("bias needs classifier: pass the classifier weights W as well")
        b = [float(v) for v in np.asarray(bias, dtype=np.float64).reshape(-1)]
    src = _Source(source, key, column, address, "classes", progress)
    job = _repscope.Job.classes(
        *src.header, src.paths, key, raw, numeric, check_int(k, "k", 0), W, b,
        check_int(knn_sample, "knn_sample", 1), check_int(seed, "seed", 0),
    )
    return json.loads(src.run(job))


def sae_eval(sae, source, key=None, batch=4096, *, column=None, address=None, progress=False):
    """An SAE's evaluation on Ray: the document of ``sae.evaluate`` of the concatenated shards (L0, FVU, the
    legacy explained variance, MSE, cosine, bias, dead and dense latents, densities).

    ``sae`` is a fitted ``repscope.sae.TopKSAE`` or an SAE folder (as ``repscope.sae.load`` reads); its
    weights travel to the tasks once. Counts are identical to the single-process document and every sum
    agrees to about 1e-15 relative. Other parameters as in ``knn``.
    """
    from .sae import TopKSAE, load

    if isinstance(sae, (str, os.PathLike)):
        sae = load(sae)
    if not isinstance(sae, TopKSAE):
        raise ValueError(f"sae: pass a fitted repscope.sae.TopKSAE or an SAE folder, got {type(sae).__name__}")
    inner = sae._fitted()
    src = _Source(source, key, column, address, "sae_eval", progress)
    job = _repscope.Job.sae_eval(*src.header, inner, check_int(batch, "batch", 1))
    return json.loads(src.run(job))
