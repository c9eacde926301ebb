"""repscope.ray on a local Ray cluster: the same graph and spectrum as the single-process functions, over 1, 2
and 7 shards of every kind, with workers killed mid-run, and clear errors for bad sources."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

import repscope

if os.environ.get("REPSCOPE_REQUIRE_RAY"):
    import ray  # noqa: F401  (the test command installs it: a missing Ray must fail, not skip)
ray = pytest.importorskip("ray")
rr = pytest.importorskip("repscope.ray")


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """This process's temporary folder, empty, checked to stay empty: repscope.ray writes no file."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    assert os.listdir(folder) == []


def coarse(n, d, seed):
    """Rows on a coarse grid, so that many distances tie exactly, with planted exact duplicates (one group
    spanning shards) and a row equal to another up to the sign of zero."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(n, d)) * 2).astype(np.float32) / 2
    X[n // 2] = X[3]
    X[n - 1] = X[3]
    X[20] = X[n // 3 + 1]
    X[40, 0], X[41] = 0.0, X[40]
    X[41, 0] = -0.0
    return X


def split(X, parts):
    bounds = np.linspace(0, len(X), parts + 1).astype(int)
    return [X[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_equals_single_process_over_1_2_7_shards(cluster, metric):
    X = coarse(1500, 8, 0)
    idx, dist = repscope.knn(X, k=10, metric=metric)
    for parts in (1, 2, 7):
        for block in (None, 400):
            i, d = rr.knn(split(X, parts), k=10, metric=metric, block_rows=block)
            assert i.dtype == np.int64 and d.dtype == np.float32
            np.testing.assert_array_equal(i, idx, err_msg=f"{parts} shards, blocks {block}")
            assert np.max(np.abs(d.astype(np.float64) - dist)) <= 1e-12
    # Duplicates take their representative's list, as the single-process graph gives them.
    np.testing.assert_array_equal(i[len(X) // 2], i[3])


def test_lid_equals_single_process(cluster):
    X = coarse(1200, 6, 8)
    base = repscope.id.LID(k=12).fit(X)
    for parts in (1, 2, 7):
        est = rr.lid(split(X, parts), k=12, block_rows=300)
        np.testing.assert_array_equal(est.dimension_pw_, base.dimension_pw_)
        assert est.dimension_ == base.dimension_ and est.summary_ == base.summary_
        assert (est.n_distinct_, est.duplicates_merged_) == (base.n_distinct_, base.duplicates_merged_)
    assert base.duplicates_merged_ >= 4


def test_knn_from_files_refs_and_a_dataset(cluster, tmp_path, private_tmp):
    X = coarse(900, 6, 1)
    idx, dist = repscope.knn(X, k=5)
    paths = []
    for j, s in enumerate(split(X, 7)):
        paths.append(tmp_path / f"part_{j:02d}.npy")
        np.save(paths[-1], s)
    for source in (str(tmp_path), [str(p) for p in paths], str(tmp_path / "part_*.npy")):
        i, d = rr.knn(source, k=5)
        np.testing.assert_array_equal(i, idx)
        np.testing.assert_array_equal(d, dist)
    i, _ = rr.knn([ray.put(s) for s in split(X, 2)], k=5)
    np.testing.assert_array_equal(i, idx)
    ds = ray.data.from_numpy(X).repartition(3)
    i, _ = rr.knn(ds, k=5)
    np.testing.assert_array_equal(i, idx)
    # Nothing written: the shard folder is as it was (and the temporary folder empty, see private_tmp).
    assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in paths] + ["tmp"])


def test_spectrum_equals_single_process_over_1_2_7_shards(cluster):
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(4000, 24)) * np.linspace(3, 0.1, 24) + 5).astype(np.float32)
    X[7] = X[3000]
    X[100] *= 40  # a row that carries the top direction: the second (projection) pass runs
    base = repscope.spectrum(X, coding_rate=True, duplicates=True)
    for parts in (1, 2, 7):
        doc = rr.spectrum(split(X, parts), coding_rate=True, duplicates=True)
        for key in ("eigenvalues", "explained_variance_ratio"):
            assert rel(doc[key], base[key]) <= 1e-12, (parts, key)
        for key in ("total_variance", "participation_ratio", "anisotropy"):
            assert rel(doc[key], base[key]) <= 1e-12, (parts, key)
        for key in ("effective_rank", "rankme", "coding_rate"):
            assert rel(doc[key]["value"], base[key]["value"]) <= 1e-12, (parts, key)
        assert rel(doc["alpha_req"]["alpha"], base["alpha_req"]["alpha"]) <= 1e-12
        assert [r["dim"] for r in doc["rogue_dimensions"]] == [r["dim"] for r in base["rogue_dimensions"]]
        assert doc["duplicates"] == base["duplicates"]
        assert doc["notes"] == base["notes"]
        assert doc["numerical_rank"] == base["numerical_rank"] and doc["n"] == len(X)
    # The same shards give the same bits on every run (a fixed merge tree).
    assert rr.spectrum(split(X, 7), coding_rate=True, duplicates=True) == doc


def close(a, b, path="doc"):
    """Documents equal: numbers to 1e-12 relative (exact for integers), everything else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for key in a:
            close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)) or isinstance(a, np.ndarray):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, (float, np.floating)) and not isinstance(a, bool):
        assert abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1e-300) or a == b, (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_activations_equal_single_process_over_1_2_7_shards(cluster):
    rng = np.random.default_rng(7)
    X = (rng.normal(size=(3000, 32)) * 0.5).astype(np.float32)
    X[:, 5] += 3.0
    X[X < -1.2] = 0.0  # exact zeros
    X[100, 7] = 4000.0  # massive values, one in a later shard
    X[2500, 2] = -9000.0
    X[1700] = X[20]  # a duplicate across shards
    ids = rng.integers(0, 500, size=len(X))
    base = repscope.activations(X, token_ids=ids, eps=0.01)
    for parts in (1, 2, 7):
        doc = rr.activations(split(X, parts), token_ids=ids, eps=0.01)
        assert doc["input"]["rows"] == len(X) and doc["input"]["shards"] == parts
        close({k: v for k, v in doc.items() if k != "input"}, {k: v for k, v in base.items() if k != "input"})
        for key, arr in base["rows"].items():
            np.testing.assert_array_equal(doc["rows"][key], arr, err_msg=key)
    assert base["massive"]["count"] >= 2 and base["duplicates"]["merged"] == 1


def test_spectrum_of_float64_and_tiny_values(cluster):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 5)) * 1e-200  # squares would underflow: the scaled second pass runs
    base = repscope.spectrum(X)
    doc = rr.spectrum(split(X, 7))
    assert doc["input"]["dtype"] == "float64"
    assert rel(doc["eigenvalues"], base["eigenvalues"]) <= 1e-12
    assert doc["notes"] == base["notes"]


def _workers(n=40):
    @ray.remote
    def pid():
        time.sleep(0.01)
        return os.getpid()

    return set(ray.get([pid.remote() for _ in range(n)]))


def _killing(pids, delay):
    """Starts a thread that SIGKILLs the worker processes after `delay` seconds; returns (thread, killed)."""
    killed = []

    def run():
        time.sleep(delay)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                killed.append((p, time.monotonic()))
            except ProcessLookupError:
                pass

    t = threading.Thread(target=run)
    t.start()
    return t, killed


@pytest.mark.parametrize("what", ["knn", "spectrum"])
def test_killed_workers_change_nothing(cluster, what, private_tmp):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(12000, 48)).astype(np.float32)
    shards = [ray.put(s) for s in split(X, 7)]
    if what == "knn":
        want = rr.knn(shards, k=10, block_rows=2500)
        run = lambda: rr.knn(shards, k=10, block_rows=2500)  # noqa: E731
    else:
        want = rr.spectrum(shards)
        run = lambda: rr.spectrum(shards)  # noqa: E731
    start = time.monotonic()
    want_again = run()
    took = time.monotonic() - start
    thread, killed = _killing(_workers(), took / 4)
    got = run()
    end = time.monotonic()
    thread.join()
    assert killed and killed[0][1] < end, "no worker was killed while the run was going"
    if what == "knn":
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    else:
        assert got == want == want_again


def test_bad_sources(cluster, tmp_path):
    X = coarse(200, 6, 5)
    with pytest.raises(ValueError, match=r"shards of different widths: shard 0 has 6 columns and shard 1 has 5"):
        rr.knn([X, X[:, :5]], k=3)
    with pytest.raises(ValueError, match="the source is empty"):
        rr.knn([], k=3)
    with pytest.raises(ValueError, match="the source is empty"):
        rr.spectrum([np.zeros((0, 6), np.float32)])
    with pytest.raises(ValueError, match=r"shard 1: non-finite value NaN at row 3"):
        bad = X.copy()
        bad[3, 1] = np.nan
        rr.knn([X, bad], k=3)
    with pytest.raises(ValueError, match="more than 10 distinct rows, but there are 2"):
        rr.knn([np.eye(2, 6, dtype=np.float32)] * 3, k=10)
    with pytest.raises(ValueError, match="shards of different precision"):
        rr.spectrum([X, X.astype(np.float64)])


def test_a_shard_that_disappears_mid_run(cluster, tmp_path, monkeypatch, private_tmp):
    X = coarse(600, 6, 6)
    paths = []
    for j, s in enumerate(split(X, 3)):
        paths.append(str(tmp_path / f"s{j}.npy"))
        np.save(paths[-1], s)
    measured = rr._measured

    def then_remove(*a, **kw):
        out = measured(*a, **kw)
        os.remove(paths[1])
        return out

    monkeypatch.setattr(rr, "_measured", then_remove)
    for f in (lambda: rr.knn(paths, k=4), lambda: rr.spectrum(paths)):
        np.save(paths[1], split(X, 3)[1])
        with pytest.raises(OSError, match="s1.npy"):
            f()
        assert sorted(os.listdir(tmp_path)) == ["s0.npy", "s2.npy", "tmp"]


def test_block_rows_are_checked_not_clamped():
    """A negative row number given to a kNN block is an error, never read as row 0."""
    from repscope import _repscope

    X = coarse(50, 4, 9)
    rows, ids = np.array([0, -3], dtype=np.int64), np.array([0, 1], dtype=np.int64)
    with pytest.raises(ValueError, match="row -3 is negative"):
        _repscope.knn_self_block([(X, rows, "shard 0")], ids, (0, 50), 1, "euclidean")


def test_an_unreachable_cluster_is_named():
    code = (
        "import numpy as np, repscope.ray as rr\n"
        "rr.knn([np.eye(4, dtype=np.float32)], k=1, address='127.0.0.1:9')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ConnectionError: cannot reach the Ray cluster at 127.0.0.1:9"), last


def _saved(folder, name, parts):
    """Each part saved as folder/name_j.npy; the paths."""
    folder.mkdir(exist_ok=True)
    paths = []
    for j, s in enumerate(parts):
        paths.append(str(folder / f"{name}_{j:02d}.npy"))
        np.save(paths[-1], s)
    return paths


def _without(doc, *keys):
    return {k: v for k, v in doc.items() if k not in keys}


def test_compare_equals_single_process_over_1_2_7_shards(cluster, tmp_path):
    rng = np.random.default_rng(11)
    X = (rng.normal(size=(2000, 16)) * np.linspace(2, 0.2, 16) + 1).astype(np.float32)
    Y = (X[:, :10] @ rng.normal(size=(10, 10)) + 0.3 * rng.normal(size=(2000, 10)) - 4).astype(np.float32)
    # The single-process streamed comparison of the same rows in files.
    base = repscope.compare(_saved(tmp_path / "x", "x", [X]), _saved(tmp_path / "y", "y", [Y]))
    assert set(base["measures"]) >= {"cka_linear", "cka_linear_debiased", "cca_mean_rho", "procrustes_angular"}
    for parts in (1, 2, 7):
        doc = rr.compare(split(X, parts), split(Y, parts))
        close(_without(doc, "input", "timing_s"), _without(base, "input", "timing_s"))
        assert doc["input"]["a"]["rows"] == 2000 and doc["input"]["b"]["cols"] == 10
    # Files, read side by side by the tasks; a dataset's two columns.
    px = _saved(tmp_path / "x7", "x", split(X, 7))
    py_ = _saved(tmp_path / "y7", "y", split(Y, 7))
    doc = rr.compare(px, py_, metrics=["cka"])
    assert doc["input"]["a"]["paths"] == px
    for m in ("cka_linear", "cka_linear_debiased"):
        close(doc["measures"][m], base["measures"][m])
    import pandas as pd

    ds = ray.data.from_pandas(pd.DataFrame({"x": list(X), "y": list(Y)})).repartition(3)
    doc = rr.compare(ds, ds, column_x="x", column_y="y")
    close(doc["measures"], base["measures"])
    # Sharded differently (an empty shard too): each piece between the boundaries of either side is read
    # from its shard of X beside its shard of Y.
    ys = split(Y, 3)
    doc = rr.compare(split(X, 2), [ys[0], Y[:0], ys[1], ys[2]])
    close(_without(doc, "input", "timing_s"), _without(base, "input", "timing_s"))
    assert (doc["input"]["a"]["shards"], doc["input"]["b"]["shards"]) == (2, 4)
    close(rr.compare(px, split(Y, 5))["measures"], base["measures"])
    # X and Y must hold the same rows.
    with pytest.raises(ValueError, match="X has 2000 rows and Y has 1999"):
        rr.compare(X, Y[:-1])
    with pytest.raises(ValueError, match="needs the rows in memory"):
        rr.compare(X, Y, metrics=["cka_rbf"])


def test_classes_equal_single_process_over_1_2_7_shards(cluster, tmp_path):
    rng = np.random.default_rng(12)
    names = np.array(["cat", "dog", "eel", "fox", "gnu"])
    y = rng.integers(0, 5, size=2400)
    centres = rng.normal(size=(5, 12)) * 3
    X = (centres[y] + rng.normal(size=(2400, 12))).astype(np.float32)
    W = rng.normal(size=(5, 12))
    b = rng.normal(size=5)
    labels = names[y]
    base = repscope.classes(_saved(tmp_path, "x", [X]), labels, classifier=W, bias=b, knn_sample=700, seed=3)
    assert base["knn_accuracy"]["sample_seed"] == 3 and base["nc4"] is not None
    for parts in (1, 2, 7):
        doc = rr.classes(split(X, parts), labels, classifier=W, bias=b, knn_sample=700, seed=3)
        close(_without(doc, "input", "timing_s"), _without(base, "input", "timing_s"))
        assert doc["input"]["shards"] == parts
    # Every row in the vote (no sample): the single-process vote over the array.
    whole = repscope.classes(X, labels, k=5)
    doc = rr.classes(split(X, 7), labels, k=5)
    assert doc["knn_accuracy"] == whole["knn_accuracy"]
    close(doc["neural_collapse"], whole["neural_collapse"])
    with pytest.raises(ValueError, match="2399 labels? .*2400 rows|2400 rows.*2399"):
        rr.classes(split(X, 2), labels[:-1])


def test_sae_eval_equals_single_process_over_1_2_7_shards(cluster, tmp_path):
    from repscope.sae import TopKSAE

    rng = np.random.default_rng(13)
    D = rng.normal(size=(40, 16))
    codes = np.where(rng.random(size=(3000, 40)) < 0.08, rng.random(size=(3000, 40)) * 3, 0)
    X = (codes @ D + 0.05 * rng.normal(size=(3000, 16))).astype(np.float32)
    sae = TopKSAE(width=64, k=4, tokens=30_000, batch=512, seed=1).fit(X)
    base = sae.evaluate(X)
    for parts in (1, 2, 7):
        doc = rr.sae_eval(sae, split(X, parts), batch=700)
        close(doc, base)
    assert base["dead_latents"] < 64 and 0 < base["fvu"] < 1
    folder = tmp_path / "sae"
    sae.save(folder)
    close(rr.sae_eval(str(folder), _saved(tmp_path, "x", split(X, 3))), base)
    with pytest.raises(ValueError, match="d_in = 16"):
        rr.sae_eval(sae, [X[:, :8]])


def test_intrinsic_dimension_equals_single_process_over_1_2_7_shards(cluster):
    rng = np.random.default_rng(14)
    # A 4-dimensional curved manifold in 9 dimensions, with duplicate rows: 5,200 distinct rows, so the
    # calibration reads a subsample of 5,000 and the decimation curve its subsets, fetched from the shards.
    t = rng.random(size=(5210, 4))
    X = np.concatenate([np.sin(3 * t), np.cos(2 * t), t[:, :1] ** 2], axis=1).astype(np.float32)
    X[5200:] = X[:10]
    base = repscope.intrinsic_dimension(X)
    assert base["n_distinct"] == 5200 and any("subsample of 5000" in n for e in base["estimates"] for n in e.get("notes", []))
    for parts in (1, 2, 7):
        doc = rr.intrinsic_dimension(split(X, parts), block_rows=2000)
        close(_without(doc, "input", "neighbours"), _without(base, "input", "neighbours"))
        assert doc["input"]["rows"] == len(X) and doc["input"]["shards"] == parts
        # The graph's certificate: every row exact, each list merged from one search per block.
        cert = doc["neighbours"]
        assert cert["exact"] and cert["rows"] == 5200 and cert["pieces"] >= 3, cert
        assert "pieces" not in base["neighbours"]
    # PCA alone without the scale curve reads no graph; cosine; a named estimator that reads the rows
    # themselves is refused.
    pca = rr.intrinsic_dimension(split(X, 3), estimators="pca", scale_curve=False)
    assert pca["neighbours"] is None and [e["estimator"] for e in pca["estimates"]] == ["pca_ev", "pca_fo", "pca_pr"]
    close(_without(pca, "input"), _without(repscope.intrinsic_dimension(X, estimators="pca", scale_curve=False), "input"))
    small = X[:400]
    close(_without(rr.intrinsic_dimension(split(small, 3), metric="cosine", range_max=8), "input", "neighbours"),
          _without(repscope.intrinsic_dimension(small, metric="cosine", range_max=8), "input", "neighbours"))
    with pytest.raises(ValueError, match="fisher_s reads the rows themselves"):
        rr.intrinsic_dimension(split(small, 2), estimators=["fisher_s"])
    with pytest.raises(ValueError, match="needs 20 neighbours per point, so more than 20 distinct rows, but there are 8"):
        rr.intrinsic_dimension([np.eye(8, dtype=np.float32)] * 2, estimators=["mle"])


def test_grouped_shards_give_the_same_bits(cluster, monkeypatch):
    """Consecutive shards read by one task (a subtree of the merge tree) give the bits of one task per
    shard, whatever the group size."""
    assert [rr._group_size(n, c) for n, c in [(8, 2), (8, 1), (7, 2), (3, 2), (1, 8), (1000, 4)]] == [4, 8, 4, 2, 1, 64]
    rng = np.random.default_rng(15)
    X = (rng.normal(size=(3000, 12)) * np.linspace(2, 0.5, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=3000)
    docs = {}
    for g in (1, 2, 4, 8):
        monkeypatch.setattr(rr, "_group_size", lambda n, c, g=g: g)
        docs[g] = (rr.spectrum(split(X, 7)), rr.classes(split(X, 7), y, k=0)["neural_collapse"])
    assert docs[1] == docs[2] == docs[4] == docs[8]


def test_a_task_takes_the_cpus_ray_gave_it_not_an_inherited_thread_count(cluster):
    """A worker that inherited RAYON_NUM_THREADS or OMP_NUM_THREADS for a whole machine (the environment of
    the process that started Ray) must not run that many engine threads in every 1-CPU task: the engine's
    threads follow the task's CPUs."""

    @ray.remote
    def threads_in_task():
        os.environ["RAYON_NUM_THREADS"] = "7"
        os.environ["OMP_NUM_THREADS"] = "7"
        rr._task_threads()
        return os.environ["RAYON_NUM_THREADS"]

    assert ray.get(threads_in_task.remote()) == "1"
    assert ray.get(threads_in_task.options(num_cpus=2).remote()) == "2"


def test_the_driver_reads_a_few_rows_itself_where_it_can(cluster, tmp_path):
    """A pass of some rows' values (the spectrum's first rows) runs on the driver when it sees the shards
    (files it lists, arrays it holds): no task's round trip. A pass over every row, and shards the driver
    holds only as object refs, go to the tasks. The document is the same either way."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(900, 12)).astype(np.float32)
    paths = []
    for i, part in enumerate(split(X, 3)):
        paths.append(str(tmp_path / f"s{i}.npy"))
        np.save(paths[-1], part)
    t = rr._tasks()

    def job_over(shards):
        n, d, _ = rr._measured(shards, None, ray, t)
        return repscope._repscope.Job.spectrum(
            n, d, "x", "float32", len(shards), None, None, 0.5, (11, 100), 10, False, False
        )

    for source, local in ((paths, True), (split(X, 3), True), ([ray.put(p) for p in split(X, 3)], False)):
        shards = rr._shards(source, None, None)
        job = job_over(shards)
        head = job.next()
        assert repscope._repscope.pass_rows(head) is not None
        items = rr._driver_items(head, shards)
        assert (items is not None) is local
        if local:
            job.answer(rr._group(items, None))
            moments = job.next()
            assert repscope._repscope.pass_rows(moments) is None and rr._driver_items(moments, shards) is None
    # A converted copy (here of lists) is not held on the driver.
    shards = rr._shards([X[:450].tolist(), X[450:].tolist()], None, None)
    assert all(s.local is None for s in shards)
    base = repscope.spectrum(X)
    for source in (paths, split(X, 3), [ray.put(p) for p in split(X, 3)]):
        doc = rr.spectrum(source)
        assert rel(doc["eigenvalues"], base["eigenvalues"]) <= 1e-12
