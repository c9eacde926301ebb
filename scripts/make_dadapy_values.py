"""Writes tests/fixtures/id/dadapy_gauss5.json: DADApy's own estimates (id, err, scale) on a seeded input that
the tests regenerate. DADApy pins an older numpy than the test environment, so run this in a venv of its own:

    python3 -m venv /tmp/dadapy-venv && /tmp/dadapy-venv/bin/pip install dadapy==0.3.4
    /tmp/dadapy-venv/bin/python scripts/make_dadapy_values.py
"""
import json
import pathlib
import warnings

import dadapy
import numpy as np
from dadapy import Data, MetricComparisons

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
path = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "id" / "dadapy_gauss5.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(path)
