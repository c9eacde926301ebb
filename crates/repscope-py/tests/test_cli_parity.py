"""The Python functions give the same document as the CLI's --json on the same data: same names, same
numbers. Only the input's description (a path for the CLI, none for an array) and timings differ."""

import json

import numpy as np
import pytest

import repscope
from conftest import linear_manifold


def strip(doc, *keys):
    doc = dict(doc)
    for k in keys:
        doc.pop(k, None)
    return doc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    X = linear_manifold(700, 4, 12, seed=21, noise=0.01)
    X[5] = X[9]  # a duplicate, so both faces merge it the same way
    Y = (X @ np.random.default_rng(22).standard_normal((12, 7))).astype(np.float32)
    y = np.arange(700) % 4
    np.save(d / "x.npy", X)
    np.save(d / "y.npy", Y)
    np.save(d / "labels.npy", y)
    np.savez(d / "layers.npz", first=X, second=Y)
    return d, X, Y, y


def test_id_matches_cli(data, cli):
    d, X, _, _ = data
    c = json.loads(cli("id", d / "x.npy", "--json"))
    p = repscope.intrinsic_dimension(X)
    assert p["input"] == {"path": None, "key": None, "rows": 700, "cols": 12, "precision": c["input"]["precision"]}
    assert c["input"]["rows"] == 700 and c["input"]["cols"] == 12
    assert strip(p, "input") == strip(c, "input")
    assert p["duplicates_merged"] == 1


def test_id_options_match_cli(data, cli):
    d, X, _, _ = data
    c = json.loads(cli("id", d / "x.npy", "--json", "-e", "mle", "gride", "-k", "10", "--no-scale", "--metric", "cosine"))
    p = repscope.intrinsic_dimension(X, estimators=["mle", "gride"], k=10, scale_curve=False, metric="cosine")
    assert strip(p, "input") == strip(c, "input")


def test_estimators_match_the_cli_suite(data, cli):
    d, X, _, _ = data
    c = json.loads(cli("id", d / "x.npy", "--json", "--no-scale"))
    est = {e["estimator"]: e for e in c["estimates"]}
    assert repscope.id.TwoNN().fit(X).estimate_ == est["twonn"]
    assert repscope.id.TwoNN(method="mle").fit(X).estimate_ == est["twonn_mle"]
    assert repscope.id.MLE().fit(X).estimate_ == est["mle"]
    assert repscope.id.GRIDE().fit(X).estimate_ == est["gride"]
    assert repscope.id.PCA(rule="fo").fit(X).estimate_ == est["pca_fo"]
    assert repscope.id.PCA(rule="ev").fit(X).estimate_ == est["pca_ev"]
    assert repscope.id.PCA(rule="pr").fit(X).estimate_ == est["pca_pr"]


def test_spectrum_matches_cli(data, cli):
    d, X, _, _ = data
    c = json.loads(cli("spectrum", d / "x.npy", "--json", "--eps2", "0.25", "--alpha-window", "2,10"))
    p = repscope.spectrum(X, eps2=0.25, alpha_window=(2, 10))
    assert strip(p, "input") == strip(c, "input")


def test_spectrum_of_shard_paths_matches_cli(data, cli, tmp_path):
    d, X, _, _ = data
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "part_2.npy", X[:250])
    np.save(shards / "part_10.npy", X[250:])
    c = json.loads(cli("spectrum", shards, "--json"))
    assert c["input"]["shards"] == 2
    # A folder, a pattern and a list of paths are the same source as the CLI's.
    for src in (shards, str(shards / "part_*.npy"), [shards / "part_2.npy", shards / "part_10.npy"]):
        p = repscope.spectrum(src)
        assert p["input"]["shards"] == 2 and p["input"]["rows"] == 700
        assert strip(p, "input") == strip(c, "input")
    # The same numbers as the array in memory, to the last digits.
    a = repscope.spectrum(X)
    assert abs(a["effective_rank"]["value"] - c["effective_rank"]["value"]) < 1e-12 * a["effective_rank"]["value"]
    assert np.allclose(a["eigenvalues"], c["eigenvalues"], rtol=1e-12, atol=1e-12 * a["eigenvalues"][0])
    # Activation statistics of the same shards are those of the array.
    pa, pb = repscope.activations(shards), repscope.activations(X)
    assert pa["input"]["shards"] == 2
    assert pa["massive"] == pb["massive"] and pa["row_norm_quantiles"] == pb["row_norm_quantiles"]
    assert np.array_equal(pa["rows"]["norm"], pb["rows"]["norm"])
    # A folder of mixed widths names the shard.
    np.save(shards / "part_20.npy", X[:5, :6])
    with pytest.raises(ValueError, match="part_20.npy"):
        repscope.spectrum(shards)


def test_classes_matches_cli(data, cli):
    d, X, _, y = data
    c = json.loads(cli("classes", d / "x.npy", "--labels", d / "labels.npy", "--json"))
    p = repscope.classes(X, y)
    assert p["labels"] is None and c["labels"].endswith("labels.npy")
    assert strip(p, "input", "labels") == strip(c, "input", "labels")


def test_compare_matches_cli(data, cli):
    d, X, Y, _ = data
    c = json.loads(cli("compare", d / "x.npy", d / "y.npy", "--json"))
    p = repscope.compare(X, Y)
    assert p["input"]["a"]["rows"] == c["input"]["a"]["rows"]
    assert p["input"]["b"]["cols"] == c["input"]["b"]["cols"] == 7
    assert set(p["timing_s"]) == set(c["timing_s"]) == {"load", "compute"}
    assert strip(p, "input", "timing_s") == strip(c, "input", "timing_s")


def test_layers_matches_cli(data, cli):
    d, X, Y, _ = data
    c = json.loads(cli("layers", d / "layers.npz", "--json"))
    p = repscope.layers({"first": X, "second": Y})
    assert strip(p, "input") == strip(c, "input")


def test_knn_matches_cli(data, cli):
    d, X, _, _ = data
    cli("knn", d / "x.npy", "-k", "7", "-o", d / "knn.npz")
    with np.load(d / "knn.npz") as z:
        ci, cd = z["indices"], z["distances"]
    pi, pd = repscope.knn(X, 7)
    np.testing.assert_array_equal(pi, ci.astype(np.int64))
    np.testing.assert_array_equal(pd, cd)


def test_lid_matches_cli(data, cli):
    d, X, _, _ = data
    c = json.loads(cli("lid", d / "x.npy", "-o", d / "lid.npy", "--json"))
    est = repscope.id.LID().fit(X)
    np.testing.assert_array_equal(est.dimension_pw_, np.load(d / "lid.npy"))
    assert est.summary_ == c["summary"]
    assert est.undefined_points_ == c["undefined_points"]


def test_report_matches_cli(data, cli, tmp_path):
    d, X, _, y = data
    cli("report", d / "x.npy", "--labels", d / "labels.npy", "-o", tmp_path / "cli")
    repscope.report(X, tmp_path / "py", labels=y)
    c = json.loads((tmp_path / "cli" / "report.json").read_text())
    p = json.loads((tmp_path / "py" / "report.json").read_text())
    assert p["command"].startswith("repscope.report (Python")
    ci, pi = c["inputs"][0], p["inputs"][0]
    assert ci["name"] == "x.npy" and pi["name"] == "X"
    assert strip(pi, "name") == strip(ci, "name")
    assert strip(p, "command", "inputs") == strip(c, "command", "inputs")
