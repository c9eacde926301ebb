#!/usr/bin/env python3
"""Benchmark for issue 7: the Python package against scikit-dimension, from Python, in one script.

`repscope.id.TwoNN().fit(X)` against `skdim.id.TwoNN().fit(X)` (both with their defaults: 10 % of the
largest ratios discarded, linear fit through the origin) on the data of id_knn.py: a seeded 16-dimensional
linear subspace of R^384 plus Gaussian noise (sigma 0.01), f32, C order, loaded with np.load.

Every measurement runs in its own fresh child process (peak RSS from os.wait4 on that child only), with
OMP/OPENBLAS/MKL/RAYON thread counts set to --threads and threadpoolctl limits inside the child. repscope
runs --repeats times, interleaved with the import-time probe; skdim runs --peer-repeats times. Reported:
end-to-end time (np.load + fit, as id_knn.py times the peers), fit time alone, the estimates, peak RSS, and
the time `import repscope` takes in a fresh interpreter.

Run: bash bench/setup_venv_python.sh && bench/.venv-python/bin/python bench/python_id.py [--n 20000]
Results: a markdown table on stdout and bench/out/python_id_<n>x<d>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from id_knn import child_env, ensure_data, spawn  # noqa: E402  (same data, same child reaping)


def worker_repscope(a) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import repscope
    t_import = time.perf_counter()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=a.threads):
        t1 = time.perf_counter()
        x = np.load(a.data)
        t2 = time.perf_counter()
        est = repscope.id.TwoNN().fit(x)
        t3 = time.perf_counter()
    return {"end_to_end_s": t3 - t1, "fit_s": t3 - t2, "import_s": t_import - t0, "value": est.dimension_,
            "stderr": est.stderr_, "version": repscope.__version__}


def worker_skdim(a) -> dict:
    import numpy as np
    import skdim
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=a.threads):
        t1 = time.perf_counter()
        x = np.load(a.data)
        t2 = time.perf_counter()
        est = skdim.id.TwoNN().fit(x)
        t3 = time.perf_counter()
    return {"end_to_end_s": t3 - t1, "fit_s": t3 - t2, "value": float(est.dimension_)}


def worker_import(a) -> dict:
    t0 = time.perf_counter()
    import repscope  # noqa: F401
    return {"import_s": time.perf_counter() - t0}


def worker_generate(a) -> dict:
    # In a child, so that the parent stays small: on Linux a child's ru_maxrss starts from its parent's
    # RSS at fork, which would hide the measured steps' own peaks behind the data generation's.
    return {"path": str(ensure_data(a.n, a.d, a.seed))}


WORKERS = {"repscope": worker_repscope, "skdim": worker_skdim, "import": worker_import, "generate": worker_generate}


def run_child(kind, a, data, timeout=None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--data", str(data),
           "--threads", str(a.threads)]
    r = spawn(cmd, child_env(a.threads), timeout=timeout)
    out = {"wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_bytes"] / 2 ** 20, "rc": r["rc"],
           "timed_out": r.get("timed_out", False)}
    if r["rc"] == 0:
        out.update(json.loads(r["stdout"].strip().splitlines()[-1]))
    else:
        out["stderr"] = r["stderr"][-2000:]
    print(f"# {kind}: {json.dumps(out)}", file=sys.stderr)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--seed", type=int, default=20240603)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer-repeats", type=int, default=1)
    p.add_argument("--peer-timeout", type=float, default=3600)
    p.add_argument("--skip-skdim", action="store_true")
    p.add_argument("--worker", choices=sorted(WORKERS))
    p.add_argument("--data")
    a = p.parse_args()
    if a.worker:
        print(json.dumps(WORKERS[a.worker](a)))
        return

    gen = spawn([sys.executable, str(Path(__file__).resolve()), "--worker", "generate", "--n", str(a.n),
                 "--d", str(a.d), "--seed", str(a.seed)], child_env(a.threads))
    if gen["rc"] != 0:
        sys.exit(f"data generation failed:\n{gen['stderr']}")
    data = json.loads(gen["stdout"].strip().splitlines()[-1])["path"]
    runs = {"repscope": [], "skdim": [], "import": []}
    # skdim first on one side, repscope and import probes around it, so drift hits both.
    for r in range(max(a.repeats, a.peer_repeats)):
        if r < a.repeats:
            runs["import"].append(run_child("import", a, data))
            runs["repscope"].append(run_child("repscope", a, data))
        if r < a.peer_repeats and not a.skip_skdim:
            runs["skdim"].append(run_child("skdim", a, data, timeout=a.peer_timeout))
        if r < a.repeats:
            runs["import"].append(run_child("import", a, data))

    def med(kind, key):
        vals = [x[key] for x in runs[kind] if x["rc"] == 0 and key in x]
        return statistics.median(vals) if vals else None

    def peak(kind):
        vals = [x["peak_rss_mib"] for x in runs[kind] if x["rc"] == 0]
        return max(vals) if vals else None

    rows = []
    for kind, label in (("repscope", "repscope.id.TwoNN().fit(X)"), ("skdim", "skdim.id.TwoNN().fit(X)")):
        if runs[kind]:
            rows.append((label, med(kind, "end_to_end_s"), med(kind, "fit_s"), med(kind, "value"), peak(kind),
                         sum(1 for x in runs[kind] if x["rc"] == 0)))
    summary = {
        "n": a.n, "d": a.d, "threads": a.threads, "seed": a.seed,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor()},
        "repscope_end_to_end_s": med("repscope", "end_to_end_s"), "skdim_end_to_end_s": med("skdim", "end_to_end_s"),
        "repscope_fit_s": med("repscope", "fit_s"), "skdim_fit_s": med("skdim", "fit_s"),
        "import_s_median": med("import", "import_s"),
        "import_s_max": max((x["import_s"] for x in runs["import"] if x["rc"] == 0), default=None),
        "runs": runs,
    }
    if summary["skdim_end_to_end_s"] and summary["repscope_end_to_end_s"]:
        summary["ratio_end_to_end"] = summary["skdim_end_to_end_s"] / summary["repscope_end_to_end_s"]
        summary["ratio_fit"] = summary["skdim_fit_s"] / summary["repscope_fit_s"]
    out = HERE / "out" / f"python_id_{a.n}x{a.d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))

    print(f"{a.n:,} × {a.d} f32, {a.threads} threads\n")
    print("| step | end to end (load + fit), s | fit, s | estimate | peak RSS, MiB | runs |")
    print("|---|---|---|---|---|---|")
    for label, e2e, fit, value, rss, n in rows:
        print(f"| `{label}` | {e2e:.2f} | {fit:.2f} | {value:.3f} | {rss:.0f} | {n} |")
    if "ratio_end_to_end" in summary:
        print(f"\nskdim / repscope: {summary['ratio_end_to_end']:.1f}× end to end, {summary['ratio_fit']:.1f}× fit alone")
    print(f"`import repscope` in a fresh interpreter: median {summary['import_s_median']:.3f} s, "
          f"max {summary['import_s_max']:.3f} s over {len(runs['import'])} runs")
    print(f"\n(details: {out.relative_to(HERE.parent)})")


if __name__ == "__main__":
    main()
