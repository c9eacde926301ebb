"""Sources written by other tools: parquet and Arrow IPC files written by pyarrow (an independent writer),
in the layouts activation caches use, read as the same rows as the array; streamed comparisons and class
geometry of shard paths give the numbers of the arrays in memory."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import repscope
from conftest import linear_manifold

N, D, CTX = 700, 12, 5


@pytest.fixture(scope="module")
def rows():
    X = linear_manifold(N, 4, D, seed=31, noise=0.01) + 2.0
    return X.astype(np.float32)


def vectors(X):
    return pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])


def close_spectra(a, b):
    assert a["n"] == b["n"] and a["d"] == b["d"]
    np.testing.assert_allclose(a["eigenvalues"], b["eigenvalues"], rtol=1e-12, atol=1e-12 * a["eigenvalues"][0])
    assert abs(a["effective_rank"]["value"] - b["effective_rank"]["value"]) <= 1e-12 * a["effective_rank"]["value"]


def test_parquet_and_arrow_layouts_read_as_the_array(rows, cli, tmp_path):
    X = rows
    ref = repscope.spectrum(X)
    # Parquet: a vector column beside token ids, in small row groups.
    t = pa.table({"token_ids": pa.array(np.arange(N, dtype=np.int32)), "resid": vectors(X)})
    pq.write_table(t, tmp_path / "acts.parquet", row_group_size=97)
    # Parquet: variable-length float64 lists.
    lists = pa.array([list(map(float, r)) for r in X], type=pa.list_(pa.float64()))
    pq.write_table(pa.table({"x": lists}), tmp_path / "lists.parquet", row_group_size=200)
    # Parquet: one float column per dimension, and a text column.
    cols = {f"d{j}": pa.array(X[:, j]) for j in range(D)}
    cols["text"] = pa.array([str(i) for i in range(N)])
    pq.write_table(pa.table(cols), tmp_path / "wide.parquet", row_group_size=300)
    # Arrow IPC stream, as a Hugging Face datasets cache holds an activation cache: one record per
    # sequence of CTX token vectors (Array2D(CTX, D)), written in batches.
    seqs = pa.FixedSizeListArray.from_arrays(vectors(X), CTX)
    schema = pa.schema([("blocks.0.hook_resid_pre", seqs.type), ("token_ids", pa.list_(pa.int32(), CTX))])
    tok = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(N, dtype=np.int32)), CTX)
    table = pa.Table.from_arrays([seqs, tok], schema=schema)
    with pa.OSFile(str(tmp_path / "data-00000-of-00001.arrow"), "wb") as f, pa.ipc.new_stream(f, schema) as w:
        for b in table.to_batches(max_chunksize=13):
            w.write_batch(b)
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as f, pa.ipc.new_file(f, schema) as w:
        w.write_table(table, max_chunksize=29)
    for name in ("acts.parquet", "lists.parquet", "wide.parquet", "data-00000-of-00001.arrow", "file.arrow"):
        p = repscope.spectrum(tmp_path / name)
        assert p["input"]["rows"] == N and p["input"]["cols"] == D, name
        close_spectra(ref, p)
        c = json.loads(cli("spectrum", tmp_path / name, "--json"))
        close_spectra(ref, c)
    assert json.loads(cli("spectrum", tmp_path / "lists.parquet", "--json"))["input"]["dtype"] == "float64"
    # A sharded parquet cache: a folder of parts reads in natural order.
    shards = tmp_path / "shards"
    shards.mkdir()
    for k, (a, b) in enumerate([(0, 300), (300, 301), (301, N)]):
        pq.write_table(pa.table({"resid": vectors(X[a:b])}), shards / f"part-{k}.parquet")
    close_spectra(ref, repscope.spectrum(shards))


def test_bad_columns_are_named(rows, cli, tmp_path):
    X = rows
    pq.write_table(pa.table({"text": pa.array(["a"] * N), "n": pa.array(np.arange(N))}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="t.parquet.*no column holds floats"):
        repscope.spectrum(tmp_path / "t.parquet")
    pq.write_table(pa.table({"a": vectors(X), "b": vectors(X)}), tmp_path / "two.parquet")
    r = cli("spectrum", tmp_path / "two.parquet", check=False)
    assert r.returncode == 2 and "a, b" in r.stderr and "--key" in r.stderr, r.stderr
    assert json.loads(cli("spectrum", tmp_path / "two.parquet", "--key", "b", "--json"))["n"] == N
    r = cli("spectrum", tmp_path / "t.parquet", "--key", "text", check=False)
    assert r.returncode == 2 and "not floats" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    ragged = pa.array([[1.0, 2.0, 3.0]] * 40 + [[1.0, 2.0]] + [[1.0, 2.0, 3.0]] * 9)
    pq.write_table(pa.table({"x": ragged}), tmp_path / "ragged.parquet")
    r = cli("spectrum", tmp_path / "ragged.parquet", check=False)
    assert r.returncode == 2 and "ragged.parquet" in r.stderr, r.stderr


def test_streamed_compare_and_classes_of_paths_match_the_arrays(rows, tmp_path):
    X = rows
    Y = (np.tanh(X @ np.random.default_rng(5).standard_normal((D, 7)))).astype(np.float32)
    y = np.arange(N) % 4
    np.save(tmp_path / "x.npy", X)
    pq.write_table(pa.table({"y": vectors(Y)}), tmp_path / "y.parquet", row_group_size=64)
    m = ["cka_linear", "cka_linear_debiased", "procrustes", "cca"]
    s = repscope.compare(tmp_path / "x.npy", tmp_path / "y.parquet", metrics=m)
    a = repscope.compare(X, Y, metrics=m)
    assert s["params"]["streamed"] is True and a["params"]["cca_route"] == "svd"
    for k, v in a["measures"].items():
        assert abs(s["measures"][k] - v) <= 1e-9 * abs(v), k
    with pytest.raises(ValueError, match="cka_rbf needs the rows in memory"):
        repscope.compare(tmp_path / "x.npy", tmp_path / "y.parquet", metrics=["cka_rbf"])
    c = repscope.classes(tmp_path / "x.npy", y, knn_sample=N)
    b = repscope.classes(X, y)
    for k in ("cdnv", "ncc_accuracy"):
        assert abs(c[k] - b[k]) <= 1e-12 * abs(b[k])
    assert c["knn_accuracy"]["accuracy"] == b["knn_accuracy"]["accuracy"]
    small = repscope.classes(tmp_path / "x.npy", y, knn_sample=200, seed=3)
    assert small["knn_accuracy"]["rows"] == 200 and small["knn_accuracy"]["sample_seed"] == 3


def blocks(X, cuts):
    """A generator of the row blocks X[a:b], as a model's forward passes yield activation batches."""
    for a, b in zip(cuts[:-1], cuts[1:]):
        yield X[a:b]


def test_iterables_of_arrays_give_the_numbers_of_the_rows_they_hold(rows, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    X = rows
    cuts = [0, 1, 300, 301, N]
    ref = repscope.spectrum(X)
    g = repscope.spectrum(blocks(X, cuts))
    assert g["input"]["shards"] == 4 and g["input"]["rows"] == N
    close_spectra(g, ref)
    # A list of blocks is their concatenation, in memory.
    lst = repscope.spectrum(list(blocks(X, cuts)))
    assert lst["input"]["shards"] == 1
    close_spectra(lst, ref)
    # Activations, classes and compare read the blocks the same way.
    a = repscope.activations(blocks(X, cuts))
    b = repscope.activations(X)
    assert a["zero_fraction"] == b["zero_fraction"]
    assert abs(a["outlier_ratio"] - b["outlier_ratio"]) <= 1e-12 * b["outlier_ratio"]
    np.testing.assert_array_equal(a["rows"]["norm"], b["rows"]["norm"])
    y = np.arange(N) % 4
    c = repscope.classes(blocks(X, cuts), y, knn_sample=N)
    d = repscope.classes(X, y)
    for k in ("cdnv", "ncc_accuracy"):
        assert abs(c[k] - d[k]) <= 1e-12 * abs(d[k])
    Y = (X[:, :7] ** 2).astype(np.float32)
    s = repscope.compare(blocks(X, cuts), blocks(Y, [0, 350, N]), metrics=["cka_linear"])
    m = repscope.compare(X, Y, metrics=["cka_linear"])
    assert s["params"]["streamed"] is True
    assert abs(s["measures"]["cka_linear"] - m["measures"]["cka_linear"]) <= 1e-9
    # The temporary shards are gone after each call, and after a refused one.
    bad = [X[:100], X[100:200], X[200:, :11]]
    with pytest.raises(ValueError, match=r"X\[2\]: 11 columns of float32, but X\[0\] has 12"):
        repscope.spectrum(iter(bad))
    with pytest.raises(ValueError, match=r"X\[1\]: expected a 2-D block of rows"):
        repscope.spectrum(iter([X[:10], X[10]]))
    with pytest.raises(ValueError, match="holds no arrays"):
        repscope.spectrum(iter([]))
    with pytest.raises(ValueError, match="same width and dtype"):
        repscope.spectrum(iter([X[:10], X[10:].astype(np.float64)]))
    assert list(tmp_path.glob("repscope-rows-*")) == []


def test_duplicate_rows_of_arrays_parquet_and_generators(rows, tmp_path):
    # Planted repeats, counted by numpy's own grouping of equal rows (np.unique on the rows).
    X = rows.copy()
    X[[50, 400, 699]] = X[3]
    X[600] = X[10]
    X[601] = X[11]
    X[601, 2] = np.nextafter(X[601, 2], np.float32(np.inf))  # one ulp off: distinct
    _, first, counts = np.unique(X, axis=0, return_index=True, return_counts=True)
    distinct = len(counts)
    groups = sorted(((int(c), int(f)) for f, c in zip(first, counts) if c > 1), key=lambda g: (-g[0], g[1]))
    assert groups == [(4, 3), (2, 10)]

    def check(dup):
        assert dup["distinct"] == distinct and dup["merged"] == N - distinct
        assert dup["groups"] == len(groups) and dup["max_multiplicity"] == 4
        assert [(g["rows"], g["first_row"]) for g in dup["largest"]] == groups

    check(repscope.spectrum(X, duplicates=True)["duplicates"])
    assert repscope.spectrum(X)["duplicates"] is None
    check(repscope.activations(X)["duplicates"])
    assert repscope.activations(X, duplicates=False)["duplicates"] is None
    # The same rows streamed from parquet, and from a generator of batches.
    pq.write_table(pa.table({"resid": vectors(X)}), tmp_path / "acts.parquet", row_group_size=97)
    check(repscope.spectrum(str(tmp_path / "acts.parquet"), duplicates=True)["duplicates"])
    check(repscope.activations(X[i:i + 128] for i in range(0, N, 128))["duplicates"])
    with pytest.raises(ValueError, match="duplicates"):
        repscope.spectrum(X, duplicates="yes")
