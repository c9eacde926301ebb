#!/usr/bin/env python3
"""Issue 16: DADApy's estimators against repscope's, in one run (DADApy 0.3.4 pins numpy 1.26, so this runs in
a venv of its own: bench/setup_venv_dadapy.sh).

Part `accuracy`: the 24 benchmark manifolds of known dimension from scikit-dimension's generator
(`BenchmarkManifolds(random_state=SEED).generate("all", n=N)`, float32 for both sides), each estimator with the
same parameters on both sides; mean relative error |d - d_true| / d_true.

Part `speed`: end to end (data in memory as float32; DADApy's `Data(coordinates=X)` and its neighbour search
included) on the first N rows of the MiniLM sentence embeddings, the same thread count on both sides.
repscope runs --repeats times (median) in this process; DADApy once in a child process, stopped after
--peer-timeout seconds (then a lower bound).

Run: bash bench/setup_venv_dadapy.sh && bench/.venv-dadapy/bin/python bench/id_dadapy.py --threads 2
Results: markdown on stdout, everything in bench/out/id_dadapy.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pairs(R):
    """(name, repscope estimator, DADApy call on a fresh Data) with the same parameters on both sides."""
    return [
        ("TwoNN with a prior (alpha=2, beta=5)", lambda X: R.TwoNNPrior(),
         lambda d: d.compute_id_2NN_wprior()[0]),
        ("binomial k=20, r=0.5", lambda X: R.Binomial(k=20, r=0.5), lambda d: d.compute_id_binomial_k(20, 0.5)[0]),
        ("binomial_rk (median 20th distance, r=0.5)", lambda X: R.BinomialRk(rk=_rk(R, X), r=0.5),
         lambda d: d.compute_id_binomial_rk(_rk_dadapy(d), 0.5)[0]),
        ("k*-GRIDE (n_iter=5)", lambda X: R.KStar(fit_method="gride"),
         lambda d: d.return_ids_kstar_gride(n_iter=5)[0][-1]),
        ("k*-binomial (n_iter=5)", lambda X: R.KStar(fit_method="binomial"),
         lambda d: d.return_ids_kstar_binomial(n_iter=5)[0][-1]),
    ]


def _rk(R, X):
    import numpy as np

    _, dist = R.neighbours(X, k=20).arrays()
    return float(np.median(dist[:, 19]))


def _rk_dadapy(d):
    import numpy as np

    return float(np.median(d.distances[:, 20]))


def set_threads(t):
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[v] = str(t)


def dadapy_fit(X, call):
    from dadapy import Data

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Data(coordinates=X.astype("float64"), verbose=False)
        d.compute_distances()
        return float(call(d))


def accuracy(a):
    import numpy as np
    import repscope
    import skdim

    sets = skdim.datasets.BenchmarkManifolds(random_state=a.seed).generate("all", n=a.n_manifold)
    truth = skdim.datasets.BenchmarkManifolds(random_state=a.seed).truth["Intrinsic Dimension"]
    rows = []
    for name, ours, theirs in pairs(repscope.id):
        err_r, err_d, bad_r, bad_d = [], [], 0, 0
        for m, X in sets.items():
            X = np.ascontiguousarray(X, dtype=np.float32)
            t = float(truth[m])
            try:
                err_r.append(abs(ours(X).fit(X).dimension_ - t) / t)
            except ValueError:
                bad_r += 1
            try:
                v = dadapy_fit(X, theirs)
            except Exception:
                v = float("nan")
            if np.isfinite(v) and v > 0:
                err_d.append(abs(v - t) / t)
            else:
                bad_d += 1
        rows.append({"estimator": name, "repscope_mre": float(np.mean(err_r)), "repscope_failed": bad_r,
                     "dadapy_mre": float(np.mean(err_d)) if err_d else None, "dadapy_failed": bad_d})
        print(f"  {name}: repscope {rows[-1]['repscope_mre']:.3f}, dadapy {rows[-1]['dadapy_mre']}", file=sys.stderr)
    return rows


def _peer(conn, data, n, threads, index):
    set_threads(threads)
    import numpy as np
    import repscope
    from threadpoolctl import threadpool_limits

    X = np.load(data)[:n].astype(np.float64)
    _, _, theirs = pairs(repscope.id)[index]
    with threadpool_limits(limits=threads):
        t = time.perf_counter()
        v = dadapy_fit(X, theirs)
        conn.send((time.perf_counter() - t, v))


def speed(a):
    import numpy as np
    import repscope
    from threadpoolctl import threadpool_limits

    X = np.ascontiguousarray(np.load(a.data)[: a.n_speed], dtype=np.float32)
    rows = []
    ctx = mp.get_context("spawn")
    for i, (name, ours, _) in enumerate(pairs(repscope.id)):
        times = []
        with threadpool_limits(limits=a.threads):
            for _ in range(a.repeats):
                t = time.perf_counter()
                d_r = ours(X).fit(X).dimension_
                times.append(time.perf_counter() - t)
        t_r = statistics.median(times)
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_peer, args=(send, a.data, a.n_speed, a.threads, i))
        p.start()
        t0 = time.perf_counter()
        p.join(a.peer_timeout)
        if p.is_alive():
            p.kill()
            p.join()
            t_d, d_d, bound = time.perf_counter() - t0, None, True
        else:
            t_d, d_d = recv.recv() if recv.poll() else (float("nan"), None)
            bound = False
        rows.append({"estimator": name, "repscope_s": t_r, "repscope_runs": times, "dadapy_s": t_d,
                     "dadapy_timed_out": bound, "ratio": t_d / t_r, "repscope_value": d_r, "dadapy_value": d_d})
        print(f"  {name}: repscope {t_r:.3f} s, dadapy {'>' if bound else ''}{t_d:.2f} s", file=sys.stderr)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["accuracy", "speed"], choices=["accuracy", "speed"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-manifold", type=int, default=2500)
    ap.add_argument("--n-speed", type=int, default=20000)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "minilm_sentences.npy"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-timeout", type=float, default=600)
    a = ap.parse_args()
    set_threads(a.threads)
    import dadapy
    import numpy
    import repscope

    out = {"args": vars(a), "versions": {"repscope": repscope.__version__,
                                         "dadapy": getattr(dadapy, "__version__", "0.3.4"),
                                         "numpy": numpy.__version__}}
    if "accuracy" in a.parts:
        print(f"accuracy on the 24 manifolds, n = {a.n_manifold}, seed {a.seed}", file=sys.stderr)
        out["accuracy"] = accuracy(a)
        print(f"\n### Mean relative error on the 24 benchmark manifolds (n = {a.n_manifold}, seed {a.seed})\n")
        print("| estimator | repscope | DADApy |\n|---|---:|---:|")
        for r in out["accuracy"]:
            ours = f"{r['repscope_mre']:.3f}" + (f" ({r['repscope_failed']} without an estimate)"
                                                  if r["repscope_failed"] else "")
            theirs = "fails" if r["dadapy_mre"] is None else f"{r['dadapy_mre']:.3f}"
            if r["dadapy_failed"]:
                theirs += f" ({r['dadapy_failed']} without an estimate)"
            print(f"| {r['estimator']} | {ours} | {theirs} |")
    if "speed" in a.parts:
        print(f"speed on {a.data}, first {a.n_speed} rows, {a.threads} threads", file=sys.stderr)
        out["speed"] = speed(a)
        print(f"\n### End to end on {a.n_speed} MiniLM sentences × 384, {a.threads} threads\n")
        print("| estimator | repscope, s | DADApy, s | ratio | repscope value | DADApy value |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in out["speed"]:
            gt = ">" if r["dadapy_timed_out"] else ""
            dv = "-" if r["dadapy_value"] is None else f"{r['dadapy_value']:.3f}"
            print(f"| {r['estimator']} | {r['repscope_s']:.3f} | {gt}{r['dadapy_s']:.2f} | {gt}{r['ratio']:.1f}x | "
                  f"{r['repscope_value']:.3f} | {dv} |")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "id_dadapy.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
