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
