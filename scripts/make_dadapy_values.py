"""Writes tests/fixtures/id/dadapy_gauss5.json: DADApy's own estimates (id, err, scale) on a seeded input that
the tests regenerate. DADApy pins an older numpy than the test environment, so run this in a venv of its own:

    python3 -m venv /tmp/dadapy-venv && /tmp/dadapy-venv/bin/pip install dadapy==0.3.4
    /tmp/dadapy-venv/bin/python scripts/make_dadapy_values.py
"""
import json
import pathlib
import warnings

import contextlib
import io

import dadapy
import numpy as np
from dadapy import Data, MetricComparisons
from scipy.spatial.distance import cdist

warnings.filterwarnings("ignore")
INPUT = "np.hstack([np.random.default_rng(0).standard_normal((600, 5)), np.zeros((600, 3))])"
X = eval(INPUT)
CALLS = {
    "compute_id_2NN_wprior()": lambda d: d.compute_id_2NN_wprior(),
    "compute_id_2NN_wprior(posterior_mean=False)": lambda d: d.compute_id_2NN_wprior(posterior_mean=False),
    "compute_id_binomial_k(5, 0.5)": lambda d: d.compute_id_binomial_k(5, 0.5)[:3],
    "compute_id_binomial_k(5, 0.5, bayes=False)": lambda d: d.compute_id_binomial_k(5, 0.5, bayes=False)[:3],
    "compute_id_binomial_k(20, 0.6)": lambda d: d.compute_id_binomial_k(20, 0.6)[:3],
    "compute_id_binomial_k(20, 0.6, bayes=False)": lambda d: d.compute_id_binomial_k(20, 0.6, bayes=False)[:3],
}
out = {
    "source": f"DADApy {getattr(dadapy, '__version__', '0.3.4')} (pip), numpy {np.__version__}, written by "
    "scripts/make_dadapy_values.py",
    "input": INPUT,
    "calls": {name: [float(v) for v in f(Data(X.copy(), verbose=False))] for name, f in CALLS.items()},
}
# Information imbalance between column subsets, with every rank available (maxk = N - 1).
IMBALANCE = {
    "return_inf_imb_two_selected_coords([0, 1], [0, 1, 2, 3, 4])": ([0, 1], [0, 1, 2, 3, 4]),
    "return_inf_imb_two_selected_coords([0, 1, 2, 3, 4], [2, 3])": ([0, 1, 2, 3, 4], [2, 3]),
}
for name, (a, b) in IMBALANCE.items():
    mc = MetricComparisons(coordinates=X.copy(), maxk=len(X) - 1, verbose=False)
    out["calls"][name] = [float(v) for v in mc.return_inf_imb_two_selected_coords(a, b)]


def exact_data(X, maxk):
    """DADApy's Data on exact euclidean distances (self in column 0, ties in index order): DADApy's own
    brute-force path, taken when maxk + 1 >= N/2, uses the dot-product expansion, whose rounding repscope's
    exact distances do not share."""
    D = cdist(X, X)
    idx = np.argsort(D, axis=1, kind="stable")[:, : maxk + 1]
    return Data(distances=(np.take_along_axis(D, idx, axis=1), idx), maxk=maxk, verbose=False)


# The fixed-radius binomial estimator, every neighbour counted (maxk = N - 1, so DADApy masks no point).
for name, bayes in [("compute_id_binomial_rk(1.0, 0.5)", True), ("compute_id_binomial_rk(1.0, 0.5, bayes=False)", False)]:
    d = exact_data(X, len(X) - 1)
    out["calls"][name] = [float(v) for v in d.compute_id_binomial_rk(1.0, 0.5, bayes=bayes)[:3]]

# The adaptive-neighbourhood ID on this input and on DADApy's own k* test input (tests/test_kstar*:
# np.random.seed(0); np.random.normal(0, 1, (1000, 2)), maxk = N - 1), starting from id 5 for 3 iterations.
np.random.seed(0)
G2 = np.random.normal(0, 1, size=(1000, 2))
out["kstar"] = {}
for label, data in [("gauss5", X), ("dadapy_test_1000x2", G2)]:
    for fit in ("gride", "binomial"):
        d = exact_data(data, len(data) - 1)
        with contextlib.redirect_stdout(io.StringIO()):
            if fit == "gride":
                ids, errs, kstars, lls = d.return_ids_kstar_gride(initial_id=5, n_iter=3)
            else:
                ids, errs, kstars, _ = d.return_ids_kstar_binomial(initial_id=5, n_iter=3)
                lls = None
        out["kstar"][f"{label} {fit}"] = {
            "ids": [float(v) for v in ids],
            "errors": [None if v is None else float(v) for v in errs],
            "log_likelihoods": None if lls is None else [float(v) for v in lls],
            "scale": float(d.intrinsic_dim_scale),
            # The final k* (the last row; DADApy's earlier rows are rounded up to even by its in-place update).
            "kstar": [int(v) for v in kstars[-1]],
        }
path = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "id" / "dadapy_gauss5.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(path)
