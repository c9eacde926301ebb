"""repscope.activations against float64 numpy, planted massive values and the MiniLM token-state sample."""

from pathlib import Path

import numpy as np
import pytest

import repscope

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "tokens"


def planted(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2000, 40)).astype(np.float32)
    spots = {(int(r), int(c)) for r, c in zip(rng.choice(2000, 25, replace=False), rng.integers(0, 40, 25))}
    for r, c in spots:
        X[r, c] = 1200.0 if (r + c) % 2 else -2500.0
    X[5, 7] = 300.0  # above 100, but under 1000x its row's median |a|
    return X, spots


def test_moments_and_per_row_arrays_match_numpy():
    X, _ = planted()
    X[:, 3] = 0.0
    X[X < -1.5] = 0.0
    doc = repscope.activations(X, eps=0.25)
    A = X.astype(np.float64)
    np.testing.assert_allclose(doc["per_dimension"]["mean"], A.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(doc["per_dimension"]["std"], A.std(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(doc["per_dimension"]["max_abs"], np.abs(A).max(0))
    np.testing.assert_array_equal(doc["per_dimension"]["zero_fraction"], (A == 0).mean(0))
    np.testing.assert_array_equal(doc["per_dimension"]["small_fraction"], (np.abs(A) < 0.25).mean(0))
    assert doc["always_zero_dims"] == [3]
    rows = doc["rows"]
    np.testing.assert_allclose(rows["norm"], np.linalg.norm(A, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(rows["median_abs"], np.median(np.abs(A), axis=1))
    np.testing.assert_array_equal(rows["peak_dim"], np.abs(A).argmax(1))
    np.testing.assert_array_equal(rows["zero_fraction"], (A == 0).mean(1))
    qs = {q["q"]: q["value"] for q in doc["row_norm_quantiles"]}
    for q, v in qs.items():
        assert v == pytest.approx(np.quantile(np.linalg.norm(A, axis=1), q), rel=1e-12)
    gamma = np.linalg.norm(A.mean(0)) / np.linalg.norm(A.std(0))
    assert doc["outlier_ratio"] == pytest.approx(gamma, rel=1e-12)


def test_planted_massive_values_are_found_and_nothing_else():
    X, spots = planted(1)
    doc = repscope.activations(X, max_listed=1000)
    found = {(m["row"], m["dim"]) for m in doc["massive"]["listed"]}
    assert found == spots
    assert doc["massive"]["count"] == len(spots)
    assert doc["params"]["massive_abs"] == 100.0 and doc["params"]["massive_ratio"] == 1000.0


def test_minilm_special_tokens_are_named_by_the_tokenizer():
    X = np.load(FIXTURES / "minilm_tokens_l3_sample.npy")
    ids = np.load(FIXTURES / "minilm_tokens_l3_sample_ids.npy")
    names = {101: "[CLS]", 102: "[SEP]"}
    doc = repscope.activations(X, token_ids=ids, tokenizer=lambda i: names.get(i, f"#{i}"))
    (g,) = doc["peak_rows"]["groups"]
    assert (g["token"], g["token_id"], g["dim"], g["rows"]) == ("[CLS]", 101, 99, 200)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"massive_abs": -1},
        {"massive_ratio": float("nan")},
        {"eps": 0},
        {"peak_factor": 0.5},
        {"outlier_sigma": "three"},
        {"top_rogue": -1},
        {"token_ids": np.zeros(3, dtype=np.int64)},
        {"token_ids": np.full(2000, -1)},
        {"tokenizer": "not callable"},
    ],
)
def test_bad_parameters_raise_value_error(kwargs):
    X, _ = planted()
    with pytest.raises(ValueError) as e:
        repscope.activations(X, **kwargs)
    assert "panicked" not in str(e.value)


def test_nan_names_the_row():
    X, _ = planted()
    X[17, 2] = np.nan
    with pytest.raises(ValueError, match="row 17"):
        repscope.activations(X)
