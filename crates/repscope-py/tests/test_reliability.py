"""Hostile input through the Python face: errors speak of keyword arguments, never of CLI flags; integers
beyond 64 bits and reads before fit raise the exceptions scikit-learn users expect."""

import numpy as np
import pytest

import repscope
from conftest import linear_manifold

X = linear_manifold(300, 3, 8, seed=5)


def test_messages_name_keyword_arguments_not_flags():
    with pytest.raises(ValueError) as e:
        repscope.compare(X, X * 2.0, svcca_threshold=2.0)
    assert "svcca_threshold" in str(e.value)
    assert "--" not in str(e.value)
    with pytest.raises(ValueError) as e:
        repscope.compare(X, np.ones_like(X))
    assert "no variance" in str(e.value)
    with pytest.raises(ValueError) as e:
        repscope.intrinsic_dimension(X, range_max=1)
    assert "--" not in str(e.value)


@pytest.mark.parametrize("big", [2**64, 2**70])
def test_huge_integers_are_value_errors(big):
    with pytest.raises(ValueError, match="2\\*\\*64"):
        repscope.knn(X, k=big)
    with pytest.raises(ValueError, match="2\\*\\*64"):
        repscope.intrinsic_dimension(X, seed=big)


def test_reading_before_fit_says_fit_comes_first():
    est = repscope.id.TwoNN()
    with pytest.raises(repscope.id.NotFittedError, match="fit"):
        est.dimension_
    # As scikit-learn's NotFittedError: both a ValueError and an AttributeError.
    assert not hasattr(est, "dimension_")
    with pytest.raises(ValueError):
        est.stderr_
    assert est.fit(X).dimension_ > 0
    with pytest.raises(AttributeError):
        est.no_such_setting


def test_every_row_its_own_class_is_refused():
    with pytest.raises(ValueError, match="single row"):
        repscope.classes(X, np.arange(len(X)))


def test_spectrum_keeps_going_past_zero_rows():
    Z = X.copy()
    Z[[3, 7]] = 0.0
    doc = repscope.spectrum(Z)
    assert any("2 all-zero rows" in n for n in doc["notes"])
    assert np.isfinite(doc["anisotropy"])
