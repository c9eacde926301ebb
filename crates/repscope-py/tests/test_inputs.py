"""Arrays of every layout and dtype, bad input, zero-copy reads and the released GIL."""

import threading
import time
import tracemalloc

import numpy as np
import pytest

import repscope
from conftest import linear_manifold

X32 = linear_manifold(600, 3, 10, seed=31)


def fits(X):
    return (
        repscope.id.TwoNN().fit(X).dimension_,
        repscope.id.MLE().fit(X).dimension_,
        repscope.knn(X, 5)[0].tolist(),
        repscope.spectrum(X)["eigenvalues"],
    )


REFERENCE = fits(X32)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: X32.astype(np.float64), id="float64"),
        pytest.param(lambda: np.asfortranarray(X32), id="fortran"),
        pytest.param(lambda: np.repeat(X32, 2, axis=1)[:, ::2], id="column-strided"),
        pytest.param(lambda: np.hstack([X32, X32])[:, :10], id="column-slice"),
        pytest.param(lambda: np.repeat(X32, 2, axis=0)[::2], id="row-strided"),
        pytest.param(lambda: X32.astype(">f4"), id="big-endian"),
        pytest.param(lambda: X32.tolist(), id="nested-list"),
        pytest.param(lambda: np.asfortranarray(X32.astype(np.float64)), id="fortran-float64"),
    ],
)
def test_every_layout_gives_the_same_numbers(make):
    X = make()
    if isinstance(X, np.ndarray):
        assert not (X.dtype == np.float32 and X.flags.c_contiguous and X.dtype.isnative)
    assert fits(X) == REFERENCE


def test_integer_and_bool_arrays_are_converted():
    rng = np.random.default_rng(0)
    Xi = rng.integers(-50, 50, size=(400, 6))
    assert repscope.id.TwoNN().fit(Xi).dimension_ == repscope.id.TwoNN().fit(Xi.astype(np.float32)).dimension_
    Xb = rng.random((300, 12)) > 0.5
    assert repscope.knn(Xb, 3)[1].dtype == np.float32


def test_nan_and_inf_name_row_and_column():
    X = X32.copy()
    X[17, 4] = np.nan
    with pytest.raises(ValueError, match=r"non-finite value NaN at row 17, column 4 \(0-based\)"):
        repscope.id.TwoNN().fit(X)
    X64 = X32.astype(np.float64)
    X64[3, 1] = np.inf
    for call in (
        lambda: repscope.id.MLE().fit(X64),
        lambda: repscope.spectrum(X64),
        lambda: repscope.knn(X64, 3),
        lambda: repscope.compare(X32, X64),
        lambda: repscope.classes(X64, np.arange(600) % 2),
        lambda: repscope.layers([X32, X64]),
        lambda: repscope.intrinsic_dimension(X64),
    ):
        with pytest.raises(ValueError, match=r"non-finite value inf at row 3, column 1"):
            call()


def test_bad_input_is_a_value_error_with_the_engines_message(tmp_path):
    with pytest.raises(ValueError, match="expected a 2-D array"):
        repscope.id.TwoNN().fit(np.ones(10))
    with pytest.raises(ValueError, match="not numeric"):
        repscope.id.TwoNN().fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="empty"):
        repscope.knn(np.zeros((0, 4), np.float32), 1)
    with pytest.raises(ValueError, match="identical"):
        repscope.id.TwoNN().fit(np.ones((20, 3)))
    # Fewer rows than neighbours: the order is lowered with a warning, as scikit-dimension lowers
    # n_neighbors, and the estimate says so; one row has no neighbour at all.
    with pytest.warns(UserWarning, match="reads 20 neighbours per point, but each point has only 9 others"):
        est = repscope.id.MLE().fit(np.random.default_rng(0).random((10, 3)))
    assert est.estimate_["params"]["k"] == 9 and np.isfinite(est.dimension_)
    with pytest.raises(ValueError, match="distinct rows"):
        repscope.id.MLE().fit(np.random.default_rng(0).random((2, 3)))
    with pytest.raises(ValueError, match=r"discard_fraction: 1\.5 is outside \[0, 1\)"):
        repscope.id.TwoNN(discard_fraction=1.5).fit(X32)
    with pytest.raises(ValueError, match="method 'fast'"):
        repscope.id.TwoNN(method="fast").fit(X32)
    with pytest.raises(ValueError, match="comb: 'harmonic'"):
        repscope.id.MLE(comb="harmonic").fit(X32)
    with pytest.raises(ValueError, match="rule 'xx'"):
        repscope.id.PCA(rule="xx").fit(X32)
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        repscope.knn(X32, 3, metric="manhattan")
    with pytest.raises(ValueError, match="unknown estimator 'hessian_eigenmaps'"):
        repscope.intrinsic_dimension(X32, estimators=["hessian_eigenmaps"])
    with pytest.raises(ValueError, match="invalid parameter k"):
        repscope.id.MLE(k=1).fit(X32)
    with pytest.raises(ValueError, match="invalid parameter k: expected an integer"):
        repscope.knn(X32, 2.5)
    with pytest.raises(ValueError, match="599 labels for 600 rows"):
        repscope.classes(X32, np.arange(599) % 2)
    with pytest.raises(ValueError, match="same label"):
        repscope.classes(X32, np.zeros(600, int))
    with pytest.raises(ValueError, match="whole numbers"):
        repscope.classes(X32, np.full(600, 0.5))
    with pytest.raises(ValueError, match="rows"):
        repscope.compare(X32, X32[:500])
    with pytest.raises(ValueError, match="at least 2"):
        repscope.layers([X32])
    with pytest.raises(ValueError, match="unknown measure|unknown metric"):
        repscope.compare(X32, X32, metrics=["nope"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        repscope.report(X32, blocker)


def test_a_duplicate_is_merged_and_reported():
    X = X32.copy()
    X[100] = X[7]
    X[200] = X[7]
    est = repscope.id.MLE().fit(X)
    assert est.duplicates_merged_ == 2 and est.n_distinct_ == 598
    assert est.dimension_pw_[100] == est.dimension_pw_[7] == est.dimension_pw_[200]
    assert any("duplicate" in n for n in repscope.intrinsic_dimension(X, scale_curve=False)["notes"])


def test_float32_c_arrays_are_read_in_place():
    # numpy reports its allocations to tracemalloc: a float32 C-contiguous input makes no copy of the
    # data on the Python side, and neither does float64 (kept in f64, copied by the engine, outside numpy);
    # other dtypes exactly one float32 conversion.
    X = linear_manifold(20_000, 8, 64, seed=1)
    nbytes = X.nbytes
    tracemalloc.start()
    try:
        repscope.id.TwoNN().fit(X)
        _, peak32 = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        X64 = X.astype(np.float64)
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        repscope.id.TwoNN().fit(X64)
        _, peak64 = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak32 < nbytes / 20, (peak32, nbytes)
    assert peak64 - base < nbytes / 20, (peak64 - base, nbytes)
    X16 = X.astype(np.float16)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        repscope.id.TwoNN().fit(X16)
        _, peak16 = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.9 * nbytes < peak16 - base < 1.5 * nbytes, (peak16 - base, nbytes)


def test_the_gil_is_released_while_the_engine_computes():
    X = linear_manifold(30_000, 10, 48, seed=2)
    span = {}

    def work():
        span["start"] = time.perf_counter()
        repscope.knn(X, 10)
        span["end"] = time.perf_counter()

    ticks = []
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    inside = [x for x in ticks if span["start"] < x < span["end"]]
    assert span["end"] - span["start"] > 0.05
    # With the GIL held for the whole search the main thread could not tick at all in between.
    assert len(inside) >= 10, (len(inside), span["end"] - span["start"])
