"""repscope.sae: training on arrays, iterables and files, SAELens' folders, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

import repscope
from repscope.sae import TopKSAE, load

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "sae"


def planted(rows=20000, d=32, n=16, p=0.1, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    features = q[:n]
    fire = rng.random((rows, n)) < p
    mags = 1.0 - rng.random((rows, n))
    return (fire * mags) @ features, features


def test_fit_recovers_a_planted_dictionary_and_round_trips_through_a_folder(tmp_path):
    X, features = planted()
    X = X.astype(np.float32)
    sae = TopKSAE(width=32, k=4, batch=512, tokens=200_000, lr=4e-3, seed=1).fit(X)
    assert sae.W_enc_.shape == (32, 32) and sae.W_dec_.shape == (32, 32)
    dec = sae.W_dec_ / np.linalg.norm(sae.W_dec_, axis=1, keepdims=True)
    mmcs = (features @ dec.T).max(1).mean()
    assert mmcs > 0.99, mmcs
    ev = sae.evaluate(X)
    assert ev["fvu"] < 0.05 and ev["l0"] <= 4
    F = sae.encode(X[:100])
    assert F.shape == (100, 32) and ((F > 0).sum(1) <= 4).all()
    xh = sae.decode(F)
    np.testing.assert_allclose(xh, F @ sae.W_dec_ + sae.b_dec_, rtol=1e-5, atol=1e-5)
    sae.save(tmp_path / "sae")
    back = load(tmp_path / "sae")
    np.testing.assert_array_equal(back.encode(X[:100]), F)
    with pytest.raises(ValueError, match="force"):
        sae.save(tmp_path / "sae")
    sae.save(tmp_path / "sae", force=True)


def test_arrays_iterables_and_files_train_the_same_weights(tmp_path):
    X, _ = planted(rows=6000, seed=2)
    X = X.astype(np.float32)
    kw = dict(width=24, k=3, batch=256, tokens=12_000, seed=4)
    a = TopKSAE(**kw).fit(X)
    b = TopKSAE(**kw).fit([X[:1000], X[1000:3500], X[3500:]])
    np.save(tmp_path / "x.npy", X)
    c = TopKSAE(**kw).fit(tmp_path / "x.npy")
    for other in (b, c):
        np.testing.assert_array_equal(a.W_enc_, other.W_enc_)
        np.testing.assert_array_equal(a.W_dec_, other.W_dec_)
        np.testing.assert_array_equal(a.b_dec_, other.b_dec_)
    bt = TopKSAE(arch="batchtopk", **kw).fit(X)
    assert bt.threshold_ is not None and bt.threshold_.shape == (24,)


def test_saelens_folders_encode_as_saelens_does():
    x = np.load(FIXTURES / "x.npy")
    for name in ["saelens_topk", "saelens_jumprelu", "saelens_topk_rescaled", "saelens_topk_layernorm",
                 "openai_topk"]:
        sae = load(FIXTURES / (name + ".pt" if name.startswith("openai") else name))
        f = sae.encode(x)
        np.testing.assert_allclose(f, np.load(FIXTURES / f"{name}_codes.npy"), rtol=1e-5, atol=1e-5)
        want = np.load(FIXTURES / f"{name}_recon.npy")
        if "layernorm" in name or name.startswith("openai"):
            # The reconstruction restores each row's mean and standard deviation, so it needs the rows.
            with pytest.raises(ValueError, match="decode\\(F, X\\)"):
                sae.decode(f)
            np.testing.assert_allclose(sae.decode(f, x), want, rtol=1e-5, atol=1e-4)
        else:
            np.testing.assert_allclose(sae.decode(f), want, rtol=1e-5, atol=1e-4)


def test_a_rescaled_decoder_recovers_the_dictionary_with_unit_rows():
    # SAELens' parametrisation (free rows from norm 0.1, latents ranked by pre-activation times row norm),
    # saved with unit rows and the norms in the encoder.
    X, features = planted()
    X = X.astype(np.float32)
    sae = TopKSAE(width=32, k=4, batch=512, tokens=200_000, lr=4e-3, seed=1, normalize=False,
                  decoder="rescaled").fit(X)
    np.testing.assert_allclose(np.linalg.norm(sae.W_dec_, axis=1), 1.0, rtol=1e-5)
    assert (features @ sae.W_dec_.T).max(1).mean() > 0.99
    assert sae.evaluate(X)["fvu"] < 0.05
    assert sae.get_params()["decoder"] == "rescaled"


@pytest.mark.parametrize(
    "kwargs",
    [{"width": 0}, {"width": 8, "k": 0}, {"width": 8, "k": 9}, {"width": 8, "k": 2, "arch": "gated"},
     {"width": 8, "k": 2, "lr": -1.0}, {"width": 8, "k": 2, "b_dec_init": "origin"}, {"width": 8, "k": 2, "batch": 0},
     {"width": 8, "k": 2, "decoder": "free"}, {"width": 8, "k": 2, "decoder": "rescaled", "decoder_init_norm": 0.0},
     {"width": 8, "k": 2, "decoder": "rescaled", "arch": "batchtopk"}],
)
def test_bad_parameters_raise_value_error(kwargs):
    X, _ = planted(rows=500)
    with pytest.raises(ValueError):
        TopKSAE(**kwargs).fit(X)


def test_bad_data_and_unfitted_use_raise():
    X, _ = planted(rows=500)
    X[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        TopKSAE(width=8, k=2, batch=100).fit(X)
    with pytest.raises(repscope.id.NotFittedError):
        TopKSAE(width=8).encode(X)
    sae = load(FIXTURES / "saelens_topk")
    with pytest.raises(ValueError, match="d_in = 16"):
        sae.encode(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="neither"):
        load(FIXTURES)
    with pytest.raises(ValueError, match="same width and dtype"):
        TopKSAE(width=8, k=2).fit([np.zeros((3, 4)), np.zeros((3, 5))])


def test_report_with_an_sae_has_its_section(tmp_path):
    x = np.load(FIXTURES / "x.npy")
    expected = json.loads((FIXTURES / "expected.json").read_text())
    for sae in [FIXTURES / "saelens_topk", load(FIXTURES / "saelens_topk")]:
        out = tmp_path / ("r" + str(len(list(tmp_path.iterdir()))))
        repscope.report(x, out, sae=sae)
        doc = json.loads((out / "report.json").read_text())
        s = doc["inputs"][0]["sections"]["sae"]
        assert s["status"] == "ok"
        assert abs(s["value"]["mse"] - expected["saelens_topk"]["mse"]) <= 1e-5 * expected["saelens_topk"]["mse"]
        assert "Sparse autoencoder" in (out / "report.html").read_text()
