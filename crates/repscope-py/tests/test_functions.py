"""Every function and estimator on small data with known answers."""

import json
import pathlib

import numpy as np
import pytest

import repscope
from conftest import linear_manifold


def brute_knn(X, k):
    X = X.astype(np.float64)
    d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return idx, np.sqrt(np.take_along_axis(d2, idx, 1))


def test_knn_matches_brute_force():
    X = np.random.default_rng(1).standard_normal((300, 7)).astype(np.float32)
    idx, dist = repscope.knn(X, 5)
    assert idx.shape == (300, 5) and idx.dtype == np.int64
    assert dist.shape == (300, 5) and dist.dtype == np.float32
    bi, bd = brute_knn(X, 5)
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_allclose(dist, bd, rtol=1e-6)


def test_knn_cosine_matches_brute_force():
    X = np.random.default_rng(2).standard_normal((200, 6)).astype(np.float32)
    idx, dist = repscope.knn(X, 4, metric="cosine")
    U = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    c = 1.0 - U @ U.T
    np.fill_diagonal(c, np.inf)
    bi = np.argsort(c, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_allclose(dist, np.take_along_axis(c, bi, 1), atol=1e-6)


def test_knn_duplicate_rows_take_their_representatives_neighbours():
    X = np.random.default_rng(3).standard_normal((50, 3)).astype(np.float32)
    X[10] = X[4]
    idx, dist = repscope.knn(X, 3)
    np.testing.assert_array_equal(idx[10], idx[4])
    assert (dist > 0).all(), "a duplicate must never be its copy's neighbour at distance 0"


def test_twonn_on_a_plane():
    X = linear_manifold(3000, 2, 10, seed=0)
    est = repscope.id.TwoNN().fit(X)
    assert est is not None and isinstance(est, repscope.id.TwoNN)
    assert abs(est.dimension_ - 2.0) < 0.15, est.dimension_
    assert 0 < est.stderr_ < 0.1
    assert est.duplicates_merged_ == 0 and est.n_distinct_ == 3000
    assert est.estimate_["estimator"] == "twonn"
    mle = repscope.id.TwoNN(method="mle").fit(X)
    assert mle.estimate_["estimator"] == "twonn_mle"
    assert abs(mle.dimension_ - 2.0) < 0.15


def test_gride_1_2_is_the_uncensored_twonn_mle():
    # METRICS.md: GRIDE at (1, 2) is exactly (N - 1) / sum log mu, the TwoNN MLE with nothing discarded.
    X = linear_manifold(1500, 4, 12, seed=5)
    g = repscope.id.GRIDE().fit(X)
    t = repscope.id.TwoNN(discard_fraction=0.0, method="mle").fit(X)
    assert g.dimension_ == pytest.approx(t.dimension_, rel=1e-6)
    g24 = repscope.id.GRIDE(n1=2).fit(X)
    assert g24.estimate_["params"]["n2"] == 4
    assert abs(g24.dimension_ - 4.0) < 0.6


def test_mle_per_point_and_aggregate():
    X = linear_manifold(2000, 3, 9, seed=7)
    est = repscope.id.MLE(k=20).fit(X)
    assert est.dimension_pw_.shape == (2000,)
    # MacKay-Ghahramani: 1 / mean(1/m_i).
    assert est.dimension_ == pytest.approx(1.0 / np.mean(1.0 / est.dimension_pw_), rel=1e-9)
    assert abs(est.dimension_ - 3.0) < 0.3
    mean = repscope.id.MLE(k=20, comb="mean").fit(X)
    assert mean.dimension_ == pytest.approx(np.mean(est.dimension_pw_), rel=1e-9)
    assert mean.dimension_ > est.dimension_


def test_pca_rules():
    rng = np.random.default_rng(0)
    scales = np.array([10, 9, 8, 7, 6] + [0.01] * 15)
    X = (rng.standard_normal((1000, 20)) * scales).astype(np.float32)
    fo = repscope.id.PCA().fit(X)
    assert fo.dimension_ == 5 and fo.stderr_ is None
    ev = repscope.id.PCA(rule="ev", tau=0.5).fit(X)
    assert ev.dimension_ in (2, 3)
    pr = repscope.id.PCA(rule="pr").fit(X)
    lam = fo.eigenvalues_
    assert pr.dimension_ == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)
    np.testing.assert_allclose(lam, np.sort(np.linalg.eigvalsh(np.cov(X.astype(np.float64).T)))[::-1], rtol=1e-4, atol=1e-9)


def test_lid_per_point():
    X = linear_manifold(1500, 3, 8, seed=11)
    est = repscope.id.LID(k=20).fit(X)
    assert est.dimension_pw_.shape == (1500,)
    assert np.isfinite(est.dimension_pw_).all()
    assert est.dimension_ == pytest.approx(np.mean(est.dimension_pw_), rel=1e-9)
    assert 2.3 < est.dimension_ < 3.7
    assert est.stderr_ is None
    # Checked against the definition on one row.
    idx, dist = repscope.knn(X, 20)
    r = dist[0].astype(np.float64)
    assert est.dimension_pw_[0] == pytest.approx(-1.0 / np.mean(np.log(r / r[-1])), rel=1e-4)


def test_estimators_follow_sklearn_conventions():
    est = repscope.id.MLE(k=15)
    assert est.get_params() == {"k": 15, "comb": "mle", "unbiased": False, "neighborhood_based": True, "K": 5,
                                "dnoise": None, "sigma": 0, "n": None}
    assert est.set_params(k=10) is est and est.k == 10
    assert repr(est) == ("MLE(k=10, comb='mle', unbiased=False, neighborhood_based=True, K=5, dnoise=None, sigma=0, "
                         "n=None)")
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(n_neighbors=3)
    X = linear_manifold(500, 2, 5, seed=1)
    assert repscope.id.TwoNN().fit_transform(X) == repscope.id.TwoNN().fit(X).dimension_


def test_intrinsic_dimension_suite():
    X = linear_manifold(1500, 5, 20, seed=3, noise=0.001)
    r = repscope.intrinsic_dimension(X)
    assert r["dimension"]["estimator"] == "twonn_calibrated"
    assert abs(r["dimension"]["value"] - 5) < 0.6
    names = [e["estimator"] for e in r["estimates"]]
    assert names == ["twonn_calibrated", "twonn", "twonn_mle", "mle", "gride", "pca_ev", "pca_fo", "pca_pr"]
    assert any(p["method"] == "gride" for p in r["scale_curve"])
    quick = repscope.intrinsic_dimension(X, estimators=["twonn"], scale_curve=False)
    assert [e["estimator"] for e in quick["estimates"]] == ["twonn"]
    assert quick["scale_curve"] == []
    twonn = repscope.id.TwoNN().fit(X)
    assert quick["estimates"][0]["value"] == twonn.dimension_


def test_spectrum():
    rng = np.random.default_rng(4)
    X = (rng.standard_normal((800, 30)) * np.linspace(3, 0.1, 30)).astype(np.float32)
    s = repscope.spectrum(X)
    lam = np.sort(np.linalg.eigvalsh(np.cov(X.astype(np.float64).T)))[::-1]
    np.testing.assert_allclose(s["eigenvalues"], lam, rtol=1e-5, atol=1e-9)
    assert s["participation_ratio"] == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-6)
    U = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    C = U @ U.T
    n = len(U)
    assert s["anisotropy"] == pytest.approx((C.sum() - n) / (n * (n - 1)), abs=1e-9)
    assert s["params"]["eps2"] == 0.5
    # The coding rate is asked for (a second d x d product): ½ logdet(I + d/(n ε²) UᵀU), in float64.
    assert s["coding_rate"] is None and s["params"]["coding_rate"] is False
    c = repscope.spectrum(X, coding_rate=True)
    Xd = X.astype(np.float64)
    U64 = Xd / np.linalg.norm(Xd, axis=1, keepdims=True)
    d = U64.shape[1]
    _, logdet = np.linalg.slogdet(np.eye(d) + d / (n * 0.5) * (U64.T @ U64))
    assert c["coding_rate"]["value"] == pytest.approx(0.5 * logdet, rel=1e-10)
    assert {k: v for k, v in c.items() if k not in ("coding_rate", "params")} == {
        k: v for k, v in s.items() if k not in ("coding_rate", "params")
    }


def test_classes():
    rng = np.random.default_rng(5)
    means = rng.standard_normal((3, 16)) * 10
    y = np.repeat([0, 1, 2], 100)
    X = (means[y] + rng.standard_normal((300, 16))).astype(np.float32)
    r = repscope.classes(X, y)
    assert r["n_classes"] == 3
    assert r["ncc_accuracy"] == 1.0
    assert r["knn_accuracy"]["accuracy"] == 1.0
    assert r["class_counts"] == [100, 100, 100]
    strings = repscope.classes(X, np.array(["a", "b", "c"])[y])
    assert strings["class_names"] == ["a", "b", "c"]
    assert strings["neural_collapse"] == r["neural_collapse"]
    W = means.astype(np.float32)
    withw = repscope.classes(X, y, classifier=W, bias=np.zeros(3))
    assert withw["nc4"] is not None and withw["nc3"] is not None


def test_compare_rotation_is_the_same_shape():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((400, 12)).astype(np.float32)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    Y = (X.astype(np.float64) @ Q).astype(np.float32)
    r = repscope.compare(X, Y)
    m = r["measures"]
    assert m["cka_linear"] == pytest.approx(1.0, abs=1e-5)
    assert m["procrustes_angular"] == pytest.approx(0.0, abs=2e-3)
    assert m["mutual_knn"] > 0.95
    only = repscope.compare(X, Y, metrics="cka_linear")
    assert list(only["measures"]) == ["cka_linear"]
    Z = rng.standard_normal((400, 5)).astype(np.float32)
    assert repscope.compare(X, Z)["measures"]["cka_linear_debiased"] < 0.1


def test_layers_dict_and_list():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((300, 10)).astype(np.float32)
    B = (A @ rng.standard_normal((10, 8))).astype(np.float32)
    C = rng.standard_normal((300, 6)).astype(np.float32)
    r = repscope.layers({"a": A, "b": B, "c": C})
    assert r["keys"] == ["a", "b", "c"]
    cka = np.array(r["cka_linear_debiased"])
    assert cka.shape == (3, 3)
    np.testing.assert_allclose(np.diag(cka), 1.0, atol=1e-9)
    assert cka[0, 1] > 0.5 > abs(cka[0, 2])
    r2 = repscope.layers([A, B, C])
    assert r2["keys"] == ["layer_0", "layer_1", "layer_2"]
    assert r2["cka_linear_debiased"] == r["cka_linear_debiased"]


def test_report_writes_json_and_html(tmp_path):
    X = linear_manifold(600, 3, 10, seed=8)
    y = np.arange(600) % 3
    out = repscope.report(X, tmp_path / "rep", labels=y)
    assert out["partial_failure"] is False
    doc = json.loads(pathlib.Path(out["json"]).read_text())
    assert doc["schema"] == "repscope.report/2"
    sections = doc["inputs"][0]["sections"]
    assert set(sections) == {"intrinsic_dimension", "lid", "spectrum", "activations", "classes"}
    assert all(s["status"] == "ok" for s in sections.values())
    html = pathlib.Path(out["html"]).read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    with pytest.raises(ValueError, match="not empty"):
        repscope.report(X, tmp_path / "rep")
    repscope.report({"x": X, "x2": X * 2}, tmp_path / "rep", force=True)
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["layers"]["status"] == "ok"


def test_report_names_integer_labels_and_refuses_names_that_do_not_fit(tmp_path):
    X = linear_manifold(600, 3, 10, seed=8)
    y = np.arange(600) % 3
    out = repscope.report(X, tmp_path / "named", labels=y, label_names=["zero", "one", "two"])
    doc = json.loads(pathlib.Path(out["json"]).read_text())
    classes = doc["inputs"][0]["sections"]["classes"]["value"]
    assert classes["class_names"] == ["zero", "one", "two"]
    assert [c["name"] for c in classes["per_class"]] == ["zero", "one", "two"]
    assert "zero" in pathlib.Path(out["html"]).read_text()
    with pytest.raises(ValueError, match="label 2 has no name"):
        repscope.report(X, tmp_path / "short", labels=y, label_names=["zero", "one"])
    assert not (tmp_path / "short").exists()
    with pytest.raises(ValueError, match="pass labels too"):
        repscope.report(X, tmp_path / "nolabels", label_names=["zero"])
    # The search study on request, with its sentence in the summary.
    out = repscope.report(X, tmp_path / "search", search=True)
    doc = json.loads(pathlib.Path(out["json"]).read_text())
    inp = doc["inputs"][0]
    assert inp["sections"]["search"]["status"] == "ok"
    line = next(l for l in inp["summary"]["lines"] if l["topic"] == "search")
    assert "HNSW" in line["text"]


def test_report_with_a_failed_section_warns(tmp_path):
    # Five distinct rows: the spectrum works, the intrinsic-dimension suite (20 neighbours for MLE) cannot.
    X = np.random.default_rng(9).standard_normal((5, 3)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="some report sections failed"):
        out = repscope.report(X, tmp_path / "small")
    assert out["partial_failure"] is True
    sections = json.loads(pathlib.Path(out["json"]).read_text())["inputs"][0]["sections"]
    assert sections["intrinsic_dimension"]["status"] == "failed"
    assert "neighbours" in sections["intrinsic_dimension"]["note"]
    assert sections["spectrum"]["status"] == "ok"
