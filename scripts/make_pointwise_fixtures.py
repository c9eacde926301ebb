"""Writes tests/fixtures/id/skdim_fit_pw.json: scikit-dimension 0.5's pointwise use of global estimators
(`fit_pw`, with `smooth=True`) on a seeded 3-dimensional manifold in R^6, with the neighbourhoods handed in
(`precomputed_knn`, from scikit-learn's exact kNN), and local estimators' `fit(..., smooth=True)`, for the
Python tests to compare with repscope's `fit_pw` and `fit(smooth=True)`.

Run once with scikit-dimension installed (bash bench/setup_venv.sh):
    bench/.venv/bin/python scripts/make_pointwise_fixtures.py
"""

import json
from pathlib import Path

import numpy as np
import skdim
from sklearn.neighbors import NearestNeighbors

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "id" / "skdim_fit_pw.json"


def main():
    rng = np.random.default_rng(7)
    n, k = 160, 40
    t = rng.uniform(-1, 1, size=(n, 3))
    # A curved 3-manifold in R^6.
    X = np.column_stack([t[:, 0], t[:, 1], t[:, 2], np.sin(t[:, 0] * 2), t[:, 1] * t[:, 2], np.cos(t[:, 2] * 3)])
    idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(return_distance=False)
    out = {"X": X.tolist(), "knn": idx.tolist(), "skdim": "0.5.0", "estimators": {}}
    for name, est in [
        ("lPCA", skdim.id.lPCA()),
        ("TwoNN", skdim.id.TwoNN()),
        ("CorrInt", skdim.id.CorrInt(k1=5, k2=15)),
        ("MiND_ML", skdim.id.MiND_ML(k=10)),
    ]:
        est.fit_pw(X, precomputed_knn=idx, smooth=True)
        out["estimators"][name] = {
            "dimension_pw_": [float(v) for v in est.dimension_pw_],
            "dimension_pw_smooth_": [float(v) for v in est.dimension_pw_smooth_],
        }
    # Local estimators' own smoothing: fit(X, n_neighbors=20, smooth=True) with scikit-learn's exact kNN.
    out["local"] = {}
    for name, est in [("MOM", skdim.id.MOM()), ("TLE", skdim.id.TLE()), ("MLE", skdim.id.MLE())]:
        est.fit(X, n_neighbors=20, smooth=True)
        out["local"][name] = {
            "dimension_pw_": [float(v) for v in est.dimension_pw_],
            "dimension_pw_smooth_": [float(v) for v in est.dimension_pw_smooth_],
        }
    OUT.write_text(json.dumps(out))
    print(OUT, {k: np.mean(v["dimension_pw_"]) for k, v in out["estimators"].items()})


if __name__ == "__main__":
    main()
