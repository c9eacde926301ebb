"""repscope's TwoNN and MLE against scikit-dimension's on its own benchmark manifolds.

Where skdim's estimate is sound (clean data), ours is within 0.5% of it (same definitions: TwoNN's linear fit
with F_i = i/N over the floor(0.9 N) smallest ratios; Levina–Bickel MLE with 20 neighbours aggregated as
1/mean(1/m_i)). With 1% of the rows duplicated, skdim's MLE breaks (a zero distance inside a log) while ours
merges the duplicates and stays within 2% of its clean value (in fact it does not move).
"""

import os
import warnings

import numpy as np
import pytest

import repscope

if os.environ.get("REPSCOPE_REQUIRE_SKDIM"):
    import skdim  # scripts/test.sh installs it: a missing package must fail there, not skip
else:
    skdim = pytest.importorskip("skdim")

# All 24 of skdim's benchmark manifolds.
MANIFOLDS = [
    "M1_Sphere", "M2_Affine_3to5", "M3_Nonlinear_4to6", "M4_Nonlinear", "M5a_Helix1d", "M5b_Helix2d",
    "M6_Nonlinear", "M7_Roll", "M8_Nonlinear", "M9_Affine", "M10a_Cubic", "M10b_Cubic", "M10c_Cubic",
    "M10d_Cubic", "M11_Moebius", "M12_Norm", "M13a_Scurve", "M13b_Spiral", "Mbeta", "Mn1_Nonlinear",
    "Mn2_Nonlinear", "Mp1_Paraboloid", "Mp2_Paraboloid", "Mp3_Paraboloid",
]
N = 2500


@pytest.fixture(scope="module")
def manifolds():
    # All 24, as skdim generates them for its benchmark (its single-name path needs d and dim spelled out).
    every = skdim.datasets.BenchmarkManifolds(random_state=0).generate("all", n=N)
    # float32 first, so both libraries see exactly the same points.
    return {name: np.asarray(every[name], dtype=np.float32) for name in MANIFOLDS}


def sound(v):
    return np.isfinite(v) and v > 0


def skdim_twonn(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(skdim.id.TwoNN().fit(X.astype(np.float64)).dimension_)


def skdim_mle(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(skdim.id.MLE().fit(X.astype(np.float64), n_neighbors=20).dimension_)


@pytest.mark.parametrize("name", MANIFOLDS)
def test_twonn_and_mle_agree_with_skdim(manifolds, name):
    X = manifolds[name]
    theirs_twonn, theirs_mle = skdim_twonn(X), skdim_mle(X)
    ours_twonn = repscope.id.TwoNN().fit(X).dimension_
    ours_mle = repscope.id.MLE(k=20).fit(X).dimension_
    print(f"{name}: TwoNN ours {ours_twonn:.5f} skdim {theirs_twonn:.5f}; MLE ours {ours_mle:.5f} skdim {theirs_mle:.5f}")
    assert sound(theirs_twonn) and sound(theirs_mle)
    assert ours_twonn == pytest.approx(theirs_twonn, rel=0.005)
    assert ours_mle == pytest.approx(theirs_mle, rel=0.005)


@pytest.mark.parametrize("name", ["M1_Sphere", "M7_Roll", "M9_Affine", "M10a_Cubic", "Mn2_Nonlinear"])
def test_duplicated_rows_break_skdim_mle_but_not_ours(manifolds, name):
    X = manifolds[name]
    rng = np.random.default_rng(0)
    copies = X[rng.choice(len(X), size=len(X) // 100, replace=False)]
    Xd = np.vstack([X, copies])  # 1% of the rows duplicated
    clean = repscope.id.MLE(k=20).fit(X).dimension_
    ours = repscope.id.MLE(k=20).fit(Xd)
    theirs = skdim_mle(Xd)
    print(f"{name} with 1% duplicated rows: skdim MLE {theirs}, repscope MLE {ours.dimension_:.4f} (clean {clean:.4f})")
    assert not sound(theirs) or theirs < 0.5 * clean, f"skdim's MLE is expected to break on duplicates, gave {theirs}"
    assert ours.duplicates_merged_ == len(copies)
    assert ours.dimension_ == pytest.approx(clean, rel=0.02)
    # TwoNN: ours runs on the same distinct rows, so it does not move at all; skdim's drops the duplicated
    # points (or, above 25 columns, keeps the tiny distances its expansion leaves) and moves by up to ~3%.
    ours_twonn, clean_twonn = repscope.id.TwoNN().fit(Xd).dimension_, repscope.id.TwoNN().fit(X).dimension_
    print(f"  TwoNN with duplicates: skdim {skdim_twonn(Xd):.4f} (clean {skdim_twonn(X):.4f}), repscope {ours_twonn:.4f} (clean {clean_twonn:.4f})")
    assert ours_twonn == pytest.approx(clean_twonn, rel=1e-12)
