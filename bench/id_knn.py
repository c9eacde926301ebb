#!/usr/bin/env python3
"""Benchmark for issue 3: exact kNN and intrinsic dimension (TwoNN, MLE) at 100,000 x 384.

Data: a seeded 16-dimensional linear subspace of R^384 plus isotropic Gaussian noise (sigma 0.01), f32.

Every measurement runs in its own fresh child process, reaped with os.wait4 so that the peak RSS
(ru_maxrss) belongs to that one child and never mixes with another step's. Steps are run in rounds
(repscope knn, faiss, repscope id twonn, repscope id mle, ... then again), so that slow drift of a
shared, noisy machine hits every step alike; the reported time is the median over rounds.

The Python package's TwoNN (issue 7) is timed the same way, from the venv's interpreter, against the same
scikit-dimension run (`--skip-peers python` leaves it out).

Run: bash bench/setup_venv.sh && bench/.venv/bin/python bench/id_knn.py
Results: a markdown table on stdout and bench/out/id_knn_<n>x<d>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_BIN = ROOT / "target" / "release" / "repscope"

LATENT = 16
NOISE = 0.01
SEED = 20240603
MLE_K = 20
KNN_K = 10

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS")


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------

def generate(n: int, d: int, seed: int) -> "np.ndarray":
    import numpy as np

    rng = np.random.default_rng(seed)
    # Orthonormal 16 x d map: the Q factor of a Gaussian d x 16 matrix, transposed.
    q, _ = np.linalg.qr(rng.standard_normal((d, LATENT)))
    latent = rng.standard_normal((n, LATENT))
    x = latent @ q.T
    x += NOISE * rng.standard_normal((n, d))
    return np.ascontiguousarray(x, dtype=np.float32)


def data_path(n: int, d: int, seed: int) -> Path:
    return HERE / "data" / f"subspace{LATENT}_noise{NOISE}_n{n}_d{d}_seed{seed}.npy"


def ensure_data(n: int, d: int, seed: int) -> Path:
    import numpy as np

    path = data_path(n, d, seed)
    if path.exists():
        x = np.load(path, mmap_mode="r")
        if x.shape == (n, d) and x.dtype == np.float32:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    x = generate(n, d, seed)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, path)
    print(f"# generated {path.name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return path


# --------------------------------------------------------------------------------------------------
# Workers (run in a fresh child process each)
# --------------------------------------------------------------------------------------------------

def _limits(threads: int):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def worker_faiss(a) -> dict:
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(a.threads)
    t0 = time.perf_counter()
    x = np.load(a.data)
    t1 = time.perf_counter()
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    dist, idx = index.search(x, a.k + 1)  # self included, dropped below
    t2 = time.perf_counter()
    # Drop self: it is normally column 0, but on exact ties it may sit in another column.
    n = x.shape[0]
    rows = np.arange(n)[:, None]
    is_self = idx == rows
    keep = ~is_self
    # Rows where self was not returned at all: drop the last (farthest) column instead.
    no_self = ~is_self.any(axis=1)
    keep[no_self, -1] = False
    idx = idx[keep].reshape(n, a.k)
    dist = np.sqrt(np.maximum(dist[keep].reshape(n, a.k), 0.0))
    np.savez(a.output, indices=idx.astype(np.uint32), distances=dist.astype(np.float32))
    t3 = time.perf_counter()
    return {
        "load_s": t1 - t0, "search_s": t2 - t1, "end_to_end_s": t3 - t0,
        "faiss_version": faiss.__version__, "omp_max_threads": faiss.omp_get_max_threads(),
        "rows_without_self": int(no_self.sum()),
    }


def worker_skdim_twonn(a) -> dict:
    import numpy as np
    import skdim

    with _limits(a.threads):
        t0 = time.perf_counter()
        x = np.load(a.data)
        est = skdim.id.TwoNN()  # discard_fraction=0.1, linear fit through the origin
        est.fit(x)
        t1 = time.perf_counter()
    return {"end_to_end_s": t1 - t0, "value": float(est.dimension_),
            "params": {"discard_fraction": est.discard_fraction, "method": est.method}}


def worker_repscope_py_twonn(a) -> dict:
    """The Python package (issue 7), timed like the peers: np.load + fit in a fresh interpreter."""
    import numpy as np
    import repscope

    with _limits(a.threads):
        t0 = time.perf_counter()
        x = np.load(a.data)
        est = repscope.id.TwoNN().fit(x)  # discard_fraction=0.1, as skdim's default
        t1 = time.perf_counter()
    return {"end_to_end_s": t1 - t0, "value": float(est.dimension_), "version": repscope.__version__}


def worker_skdim_mle(a) -> dict:
    import numpy as np
    import skdim

    with _limits(a.threads):
        t0 = time.perf_counter()
        x = np.load(a.data)
        est = skdim.id.MLE()  # neighborhood_based=True, dnoise=None: Levina-Bickel (k-1)/sum log(T_k/T_j)
        est.fit(x, n_neighbors=a.k, comb="mle", n_jobs=a.threads)  # comb='mle': 1/mean(1/m_i)
        t1 = time.perf_counter()
    return {"end_to_end_s": t1 - t0, "value": float(est.dimension_),
            "params": {"n_neighbors": est.n_neighbors_, "comb": est.comb_}}


def worker_dadapy_twonn(a) -> dict:
    import numpy as np
    from dadapy import Data

    with _limits(a.threads):
        t0 = time.perf_counter()
        x = np.load(a.data)
        # Default maxk (100 neighbours stored); compute_id_2NN defaults: algorithm='base', mu_fraction=0.9.
        kwargs = {"n_jobs": a.threads}
        if a.k > 0:
            kwargs["maxk"] = a.k
        data = Data(coordinates=x, **kwargs)
        value, err, scale = data.compute_id_2NN()
        t1 = time.perf_counter()
    return {"end_to_end_s": t1 - t0, "value": float(value), "params": {"maxk": int(data.maxk)}}


def worker_gemm(a) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info

    with _limits(a.threads):
        info = [{k: v for k, v in d.items() if k in ("user_api", "internal_api", "version", "architecture",
                                                       "num_threads", "filepath")} for d in threadpool_info()]
        rng = np.random.default_rng(0)
        out = {"blas": info}
        for size in (a.k,):
            x = rng.standard_normal((size, size), dtype=np.float32)
            y = rng.standard_normal((size, size), dtype=np.float32)
            z = np.empty((size, size), dtype=np.float32)
            np.matmul(x, y, out=z)  # warm-up
            times = []
            c0 = time.process_time()
            for _ in range(a.repeats):
                t = time.perf_counter()
                np.matmul(x, y, out=z)
                times.append(time.perf_counter() - t)
            cpu = time.process_time() - c0
            flops = 2.0 * size ** 3
            out.update({"size": size, "times_s": times, "cpu_s": cpu,
                        "gflops_per_cpu_s": flops * a.repeats / cpu / 1e9,
                        "gflops_best": flops / min(times) / 1e9,
                        "gflops_median": flops / statistics.median(times) / 1e9})
        # The kNN-shaped product (2048 reference rows x 256 queries x d) for reference.
        m, n, k = 2048, 256, a.d
        x = rng.standard_normal((m, k), dtype=np.float32)
        y = rng.standard_normal((k, n), dtype=np.float32)
        z = np.empty((m, n), dtype=np.float32)
        np.matmul(x, y, out=z)
        reps = 200
        t = time.perf_counter()
        for _ in range(reps):
            np.matmul(x, y, out=z)
        dt = (time.perf_counter() - t) / reps
        out["knn_shape"] = {"m": m, "n": n, "k": k, "gflops": 2.0 * m * n * k / dt / 1e9}
    return out


WORKERS = {
    "faiss": worker_faiss,
    "skdim_twonn": worker_skdim_twonn,
    "repscope_py_twonn": worker_repscope_py_twonn,
    "skdim_mle": worker_skdim_mle,
    "dadapy_twonn": worker_dadapy_twonn,
    "gemm": worker_gemm,
}


def worker_main(a) -> None:
    res = WORKERS[a.worker](a)
    with open(a.result, "w") as f:
        json.dump(res, f)


# --------------------------------------------------------------------------------------------------
# Parent: spawn, time, reap with wait4
# --------------------------------------------------------------------------------------------------

def child_env(threads: int, unset=()) -> dict:
    env = dict(os.environ)
    for k in THREAD_ENV:
        env[k] = str(threads)
    for k in unset:
        env.pop(k, None)
    return env


def spawn(cmd, env, timeout=None) -> dict:
    """Runs cmd in a fresh process; returns wall time, peak RSS (of this child only), rc, stdout, stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        timed_out = False
        try:
            if timeout is None:
                _, status, ru = os.wait4(p.pid, 0)
            else:
                while True:
                    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                    if pid != 0:
                        break
                    if time.perf_counter() - t0 > timeout:
                        timed_out = True
                        p.kill()
                        _, status, ru = os.wait4(p.pid, 0)
                        break
                    time.sleep(0.2)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): never leave the measured child running.
            p.kill()
            os.waitpid(p.pid, 0)
            p.returncode = -9
            raise
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "peak_rss_bytes": ru.ru_maxrss * 1024, "rc": p.returncode,
                "timed_out": timed_out, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="repscope_bench_"))
        # A private copy, so that a concurrent `cargo build` cannot swap the binary mid-run.
        self.bin = str(self.tmp / "repscope")
        shutil.copy2(args.repscope, self.bin)
        self.runs: dict[str, list[dict]] = {}

    def record(self, name: str, r: dict) -> dict:
        if r["rc"] != 0 and not r["timed_out"]:
            print(f"# {name} failed (rc {r['rc']}):\n{r['stderr'][-3000:]}", file=sys.stderr)
        self.runs.setdefault(name, []).append(r)
        rss = r["peak_rss_bytes"] / 2 ** 20
        print(f"# {name}: {r['wall_s']:.2f} s wall, {rss:.0f} MiB peak RSS"
              + (" (TIMED OUT)" if r["timed_out"] else ""), file=sys.stderr, flush=True)
        return r

    def repscope_knn(self, data: Path, k: int, name: str):
        out = self.tmp / f"{name}.npz"
        cmd = [self.bin, "knn", str(data), "-k", str(k), "-o", str(out), "--quiet",
               "--threads", str(self.args.threads)]
        r = spawn(cmd, child_env(self.args.threads))
        r["output"] = str(out)
        return self.record(name, r)

    def repscope_id(self, data: Path, estimator: str, name: str):
        cmd = [self.bin, "id", str(data), "--estimator", estimator, "--no-scale", "--json", "--quiet",
               "--threads", str(self.args.threads)]
        r = spawn(cmd, child_env(self.args.threads))
        if r["rc"] == 0:
            js = json.loads(r["stdout"])
            est = next(e for e in js["estimates"] if e["estimator"] == estimator)
            r["value"] = est["value"]
            r["stderr_est"] = est.get("stderr")
            r["params"] = est.get("params")
            r["duplicates_merged"] = js.get("duplicates_merged")
        r["stdout"] = ""
        return self.record(name, r)

    def py_worker(self, worker: str, data: Path, name: str, k: int = 0, repeats: int = 1,
                  timeout=None, unset=()):
        res = self.tmp / f"{name}.json"
        out = self.tmp / f"{name}.npz"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--data", str(data),
               "--result", str(res), "--threads", str(self.args.threads), "--k", str(k),
               "--output", str(out), "--repeats", str(repeats), "--d", str(self.args.d)]
        r = spawn(cmd, child_env(self.args.threads, unset=unset), timeout=timeout)
        if r["rc"] == 0 and res.exists():
            r.update(json.loads(res.read_text()))
            r["output"] = str(out)
        return self.record(name, r)


def median_of(runs, key="wall_s"):
    vals = [r[key] for r in runs if r["rc"] == 0 and key in r]
    return statistics.median(vals) if vals else None


def max_of(runs, key="peak_rss_bytes"):
    vals = [r[key] for r in runs if key in r]
    return max(vals) if vals else None


def knn_agreement(a_path: str, b_path: str, data: Path = None) -> dict:
    import numpy as np

    a = np.load(a_path)
    b = np.load(b_path)
    ia, ib = a["indices"].astype(np.int64), b["indices"].astype(np.int64)
    n, k = ia.shape
    # Recall of b's neighbour sets in a's, per row (order-free), plus distance differences.
    sa = np.sort(ia, axis=1)
    sb = np.sort(ib, axis=1)
    hits = 0
    for j in range(k):
        col = sb[:, j][:, None]
        hits += int((sa == col).any(axis=1).sum())
    da, db = a["distances"].astype(np.float64), b["distances"].astype(np.float64)
    rel = np.abs(da - db) / np.maximum(db, 1e-30)
    out = {"recall": hits / (n * k), "rows_identical": float((ia == ib).all(axis=1).mean()),
           "max_rel_distance_diff": float(rel.max()), "median_rel_distance_diff": float(np.median(rel))}
    if data is not None:
        # Rows whose neighbour sets differ: which set is closer in exact f64 arithmetic?
        x = np.load(data, mmap_mode="r")
        differ = np.nonzero((sa != sb).any(axis=1))[0]
        a_better = b_better = tie = 0
        worst = 0.0
        for i in differ[:1000]:
            xi = np.asarray(x[i], dtype=np.float64)
            da_ex = np.sort(np.sqrt(((np.asarray(x[ia[i]], dtype=np.float64) - xi) ** 2).sum(axis=1)))
            db_ex = np.sort(np.sqrt(((np.asarray(x[ib[i]], dtype=np.float64) - xi) ** 2).sum(axis=1)))
            worst = max(worst, float(abs(da_ex[-1] - db_ex[-1]) / db_ex[-1]))
            if da_ex.sum() < db_ex.sum():
                a_better += 1
            elif da_ex.sum() > db_ex.sum():
                b_better += 1
            else:
                tie += 1
        out.update({"rows_with_different_sets": int(len(differ)), "first_closer_exact_f64": a_better,
                    "second_closer_exact_f64": b_better, "equal_exact_f64": tie,
                    "max_rel_kth_distance_gap": worst})
    return out


def machine_info() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
                               "L2 cache", "L3 cache", "Hypervisor vendor"):
                info[key.strip()] = val.strip()
    except OSError:
        pass
    try:
        import psutil

        info["mem_total_gib"] = psutil.virtual_memory().total / 2 ** 30
    except ImportError:
        pass
    info["env"] = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", *THREAD_ENV)
                   if k in os.environ}
    try:
        info["repscope_git"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                              capture_output=True, text=True).stdout.strip()
        info["repscope_dirty"] = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                                      "--", "crates"], capture_output=True,
                                                     text=True).stdout.strip())
    except OSError:
        pass
    import importlib.metadata as md

    vers = {}
    for pkg in ("numpy", "faiss-cpu", "scikit-dimension", "dadapy", "scikit-learn", "scipy", "threadpoolctl"):
        try:
            vers[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            vers[pkg] = None
    info["packages"] = vers
    return info


def fmt_t(x):
    return "—" if x is None else (f"{x:.1f} s" if x >= 10 else f"{x:.2f} s")


def fmt_mib(b):
    return "—" if b is None else f"{b / 2 ** 20:.0f} MiB"


def main_parent(args) -> None:
    import numpy as np

    skip = set(args.skip_peers)
    if not Path(args.repscope).exists():
        sys.exit(f"{args.repscope} not found: run `cargo build --release` first")
    info = machine_info()
    import hashlib

    info["label"] = args.label
    info["repscope_binary"] = str(Path(args.repscope).resolve())
    info["repscope_binary_sha256"] = hashlib.sha256(Path(args.repscope).read_bytes()).hexdigest()[:16]
    info["repscope_binary_mtime"] = time.strftime("%Y-%m-%d %H:%M:%S",
                                                  time.localtime(Path(args.repscope).stat().st_mtime))
    data = ensure_data(args.n, args.d, args.seed)
    input_bytes = args.n * args.d * 4
    b = Bench(args)
    R = args.repeats
    flops_allpairs = 2.0 * args.n * args.n * args.d

    # 1) Rounds of the fast steps, interleaved. Each round starts with the GEMM peak (numpy f32,
    #    OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset in that child only); the best round is the peak.
    for r in range(R):
        print(f"# round {r + 1}/{R}", file=sys.stderr, flush=True)
        if "gemm" not in skip:
            b.py_worker("gemm", data, "numpy_gemm", k=args.gemm_size, repeats=5,
                        unset=("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
        b.repscope_knn(data, KNN_K, "repscope_knn_k10")
        if "faiss" not in skip:
            b.py_worker("faiss", data, "faiss_flatl2_k10", k=KNN_K)
        b.repscope_id(data, "twonn", "repscope_id_twonn")
        b.repscope_id(data, "mle", "repscope_id_mle")
        if "python" not in skip:
            b.py_worker("repscope_py_twonn", data, "repscope_py_twonn")
        if args.matched_knn:
            b.repscope_knn(data, 2, "repscope_knn_k2")
            b.repscope_knn(data, MLE_K, "repscope_knn_k20")

    # 3) Peers (slow): once each by default, on the full data or on a prefix of --peer-n rows.
    peer_data = data
    peer_n = args.n
    if args.peer_n and args.peer_n < args.n:
        peer_n = args.peer_n
        x = np.load(data, mmap_mode="r")
        peer_data = b.tmp / f"prefix_{peer_n}.npy"
        np.save(peer_data, np.ascontiguousarray(x[:peer_n]))
    peers = {}
    timeout = args.peer_timeout
    if "skdim" not in skip:
        for _ in range(args.peer_repeats):
            if "skdim_twonn" not in skip:  # the slow one (about 17-27 min here); skippable alone
                peers.setdefault("skdim_twonn", []).append(
                    b.py_worker("skdim_twonn", peer_data, "skdim_twonn", timeout=timeout))
            peers.setdefault("skdim_mle", []).append(
                b.py_worker("skdim_mle", peer_data, "skdim_mle", k=MLE_K, timeout=timeout))
    if "dadapy" not in skip:
        for _ in range(args.peer_repeats):
            peers.setdefault("dadapy_twonn", []).append(
                b.py_worker("dadapy_twonn", peer_data, "dadapy_twonn", k=args.dadapy_maxk, timeout=timeout))
    if peer_data != data:
        # repscope on the same prefix, for the ratios against the peers.
        for _ in range(max(args.peer_repeats, 1)):
            b.repscope_id(peer_data, "twonn", "repscope_id_twonn_prefix")
            b.repscope_id(peer_data, "mle", "repscope_id_mle_prefix")

    # ------------------------------------------------------------------ summary
    def med(name):
        return median_of(b.runs.get(name, []))

    def peak(name):
        return max_of(b.runs.get(name, []))

    def value(name):
        vals = [r["value"] for r in b.runs.get(name, []) if r["rc"] == 0 and "value" in r]
        return vals[0] if vals else None

    summary = {"n": args.n, "d": args.d, "latent": LATENT, "noise": NOISE, "seed": args.seed,
               "threads": args.threads, "repeats": R, "peer_repeats": args.peer_repeats, "peer_n": peer_n,
               "peer_timeout": args.peer_timeout,
               "input_bytes": input_bytes, "allpairs_flops": flops_allpairs, "machine": info}
    gemm = None
    g_ok = [g for g in b.runs.get("numpy_gemm", []) if g["rc"] == 0]
    if g_ok:
        gemm = dict(max(g_ok, key=lambda g: g["gflops_best"]))
        gemm["gflops_best_per_round"] = [g["gflops_best"] for g in g_ok]
        gemm["gflops_median"] = statistics.median(x for g in g_ok for x in
                                                  (2.0 * g["size"] ** 3 / t / 1e9 for t in g["times_s"]))
        summary["gemm"] = {k: gemm[k] for k in ("blas", "size", "gflops_best", "gflops_median",
                                                "gflops_best_per_round", "knn_shape")}
        per_cpu = [g["gflops_per_cpu_s"] for g in g_ok if "gflops_per_cpu_s" in g]
        if per_cpu:
            summary["gemm"]["gflops_per_cpu_s_median"] = statistics.median(per_cpu)

    rows = []

    def row(step, name, compare=None, rss=True, value_name=None, note=""):
        t = med(name)
        runs = [r for r in b.runs.get(name, []) if r["rc"] == 0]
        to = any(r["timed_out"] for r in b.runs.get(name, []))
        pk = peak(name)
        rows.append({"step": step, "name": name, "median_s": t, "runs": len(runs),
                     "times_s": [r["wall_s"] for r in b.runs.get(name, [])], "timed_out": to,
                     "peak_rss_bytes": pk, "rss_over_input": (pk / input_bytes) if pk and rss else None,
                     "value": value(value_name or name), "note": note})

    row("repscope knn k=10", "repscope_knn_k10")
    if "faiss" not in skip:
        row("faiss IndexFlatL2 k=10 (+self)", "faiss_flatl2_k10")
    if args.matched_knn:
        row("repscope knn k=2", "repscope_knn_k2")
        row("repscope knn k=20", "repscope_knn_k20")
    row("repscope id twonn", "repscope_id_twonn")
    row("repscope id mle (k=20)", "repscope_id_mle")
    if "python" not in skip:
        row("Python: repscope.id.TwoNN().fit(X)", "repscope_py_twonn")
    if peer_data != data:
        row(f"repscope id twonn (n={peer_n})", "repscope_id_twonn_prefix")
        row(f"repscope id mle (n={peer_n})", "repscope_id_mle_prefix")
    if "skdim" not in skip:
        if b.runs.get("skdim_twonn"):
            row(f"skdim TwoNN (n={peer_n})", "skdim_twonn")
        row(f"skdim MLE k=20 (n={peer_n})", "skdim_mle")
    if "dadapy" not in skip:
        row(f"DADApy compute_id_2NN (n={peer_n})", "dadapy_twonn")
    summary["rows"] = rows

    # Ratios and agreements.
    ratios = {}

    def ratio(key, num, den):
        a, c = med(num), med(den)
        timed_out = any(r["timed_out"] for r in b.runs.get(den, []))
        if a is not None and c is not None:
            ratios[key] = {"value": a / c, "num": num, "den": den}
        elif a is not None and timed_out:
            ratios[key] = {"value": a / args.peer_timeout, "num": num, "den": den, "bound": "upper (peer timed out)"}

    ratio("knn: repscope / faiss", "repscope_knn_k10", "faiss_flatl2_k10")
    ratio("twonn end-to-end / repscope knn k=10", "repscope_id_twonn", "repscope_knn_k10")
    ratio("mle end-to-end / repscope knn k=10", "repscope_id_mle", "repscope_knn_k10")
    if args.matched_knn:
        ratio("twonn end-to-end / repscope knn k=2", "repscope_id_twonn", "repscope_knn_k2")
        ratio("mle end-to-end / repscope knn k=20", "repscope_id_mle", "repscope_knn_k20")
    sfx = "_prefix" if peer_data != data else ""
    ratio("twonn: repscope / skdim", "repscope_id_twonn" + sfx, "skdim_twonn")
    ratio("mle: repscope / skdim", "repscope_id_mle" + sfx, "skdim_mle")
    ratio("twonn: repscope / dadapy", "repscope_id_twonn" + sfx, "dadapy_twonn")
    if peer_data == data:
        ratio("python twonn: repscope / skdim", "repscope_py_twonn", "skdim_twonn")
    summary["ratios"] = ratios

    agree = {}
    for key, mine, theirs in (("twonn vs skdim", "repscope_id_twonn" + sfx, "skdim_twonn"),
                              ("mle vs skdim", "repscope_id_mle" + sfx, "skdim_mle"),
                              ("twonn vs dadapy", "repscope_id_twonn" + sfx, "dadapy_twonn"),
                              ("python twonn vs skdim", "repscope_py_twonn", "skdim_twonn" if not sfx else "")):
        a, c = value(mine), value(theirs)
        if a is not None and c is not None:
            agree[key] = {"repscope": a, "peer": c, "rel_diff": abs(a - c) / abs(c)}
    summary["agreement"] = agree

    if "faiss" not in skip:
        ok_r = [r for r in b.runs.get("repscope_knn_k10", []) if r["rc"] == 0]
        ok_f = [r for r in b.runs.get("faiss_flatl2_k10", []) if r["rc"] == 0]
        if ok_r and ok_f:
            summary["knn_agreement_repscope_vs_faiss"] = knn_agreement(ok_r[-1]["output"], ok_f[-1]["output"], data)

    t_knn = med("repscope_knn_k10")
    t_faiss = med("faiss_flatl2_k10")
    if t_knn:
        summary["knn_gflops_repscope"] = flops_allpairs / t_knn / 1e9
    if t_faiss:
        summary["knn_gflops_faiss"] = flops_allpairs / t_faiss / 1e9
        ok_f = [r for r in b.runs.get("faiss_flatl2_k10", []) if r["rc"] == 0]
        summary["faiss_search_only_median_s"] = statistics.median(r["search_s"] for r in ok_f)
    if gemm and t_knn:
        summary["knn_share_of_gemm_peak"] = summary["knn_gflops_repscope"] / gemm["gflops_best"]
        if t_faiss:
            summary["faiss_share_of_gemm_peak"] = summary["knn_gflops_faiss"] / gemm["gflops_best"]

    # ------------------------------------------------------------------ output
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    for runs in b.runs.values():
        for r in runs:
            r["stderr"] = r["stderr"][-2000:]
            r["stdout"] = r["stdout"][-2000:]
    summary["runs"] = b.runs
    out_json = out_dir / f"id_knn_{args.n}x{args.d}.json"
    out_json.write_text(json.dumps(summary, indent=2, default=str))

    render(summary, out_json)
    shutil.rmtree(b.tmp, ignore_errors=True)


def cpu_s(r: dict) -> float:
    return r.get("user_s", 0.0) + r.get("sys_s", 0.0)


def render(summary: dict, out_json: Path) -> None:
    """Prints the markdown tables from a summary (also from a saved JSON: --report FILE)."""
    runs = summary["runs"]
    n, d, input_bytes = summary["n"], summary["d"], summary["input_bytes"]
    timeout = summary.get("peer_timeout", 0)

    def ok(name):
        return [r for r in runs.get(name, []) if r["rc"] == 0]

    def med_cpu(name):
        v = [cpu_s(r) for r in ok(name)]
        return statistics.median(v) if v else None

    print(f"\n### {n:,} × {d} f32 (16-dim subspace + noise {summary['noise']}, seed {summary['seed']}), "
          f"{summary['threads']} threads, input {input_bytes / 2 ** 20:.1f} MiB\n")
    print("| step | wall, median | CPU (user+sys), median | runs | peak RSS | RSS / input | estimate |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rw in summary["rows"]:
        t = fmt_t(rw["median_s"]) if not rw["timed_out"] else f"> {timeout:.0f} s (killed)"
        c = med_cpu(rw["name"])
        est = "—" if rw["value"] is None else f"{rw['value']:.4f}"
        ro = "—" if rw["rss_over_input"] is None else f"{rw['rss_over_input']:.2f}×"
        print(f"| {rw['step']} | {t} | {fmt_t(c)} | {rw['runs']} | {fmt_mib(rw['peak_rss_bytes'])} | {ro} | {est} |")

    print("\n| ratio | wall (medians) | wall, paired per round (median) | CPU (medians) |\n|---|---:|---:|---:|")
    for k, v in summary["ratios"].items():
        num, den = ok(v["num"]), ok(v["den"])
        paired = "—"
        if len(num) == len(den) and len(num) > 1 and "bound" not in v:
            paired = f"{statistics.median(a['wall_s'] / b['wall_s'] for a, b in zip(num, den)):.3f}"
        cn, cd = med_cpu(v["num"]), med_cpu(v["den"])
        cr = f"{cn / cd:.3f}" if cn and cd else "—"
        print(f"| {k} | {v['value']:.3f}{' (upper bound)' if 'bound' in v else ''} | {paired} | {cr} |")
    agree = summary.get("agreement", {})
    if agree:
        print("\n| agreement | repscope | peer | relative difference |\n|---|---:|---:|---:|")
        for k, v in agree.items():
            print(f"| {k} | {v['repscope']:.4f} | {v['peer']:.4f} | {100 * v['rel_diff']:.4f} % |")
    gemm = summary.get("gemm")
    if gemm:
        blas = "; ".join(f"{x.get('internal_api')} {x.get('version')} ({x.get('architecture')}, "
                         f"{x.get('num_threads')} threads)" for x in gemm["blas"] if x.get("user_api") == "blas")
        rounds = ", ".join(f"{x:.0f}" for x in gemm.get("gflops_best_per_round", []))
        print(f"\nnumpy f32 GEMM {gemm['size']}³: best {gemm['gflops_best']:.1f} GFLOP/s (best per round: {rounds}), "
              f"median of all {gemm['gflops_median']:.1f} GFLOP/s [{blas}]; kNN-shaped 2048×256×{d}: "
              f"{gemm['knn_shape']['gflops']:.1f} GFLOP/s")
    flops = summary["allpairs_flops"]
    if "knn_gflops_repscope" in summary:
        line = (f"all-pairs 2·N²·D = {flops / 1e12:.2f} TFLOP: repscope knn "
                f"{summary['knn_gflops_repscope']:.1f} GFLOP/s")
        if "knn_share_of_gemm_peak" in summary:
            line += f" ({100 * summary['knn_share_of_gemm_peak']:.0f} % of GEMM peak)"
        if "knn_gflops_faiss" in summary:
            line += f"; faiss {summary['knn_gflops_faiss']:.1f} GFLOP/s"
            if "faiss_share_of_gemm_peak" in summary:
                line += f" ({100 * summary['faiss_share_of_gemm_peak']:.0f} %)"
            line += f", faiss search alone {summary['faiss_search_only_median_s']:.1f} s"
        print(line)
        c = med_cpu("repscope_knn_k10")
        if c:
            # Contention-robust: flops per CPU-second (user+sys of the child), against the GEMM's own
            # flops per CPU-second of its timed loop.
            line = f"per CPU-second: repscope knn {flops / c / 1e9:.1f} GFLOP"
            cf = med_cpu("faiss_flatl2_k10")
            if cf:
                line += f", faiss {flops / cf / 1e9:.1f} GFLOP"
            if gemm and "gflops_per_cpu_s_median" in gemm:
                g = gemm["gflops_per_cpu_s_median"]
                line += f", numpy GEMM {g:.1f} GFLOP (repscope knn at {100 * flops / c / 1e9 / g:.0f} % of it)"
            print(line)
    if "knn_agreement_repscope_vs_faiss" in summary:
        ka = summary["knn_agreement_repscope_vs_faiss"]
        print(f"kNN agreement repscope vs faiss: recall {ka['recall']:.6f}, identical rows "
              f"{100 * ka['rows_identical']:.3f} %, max relative distance difference {ka['max_rel_distance_diff']:.2e}")
        if ka.get("rows_with_different_sets"):
            print(f"  {ka['rows_with_different_sets']} rows with different neighbour sets; in exact f64 distances "
                  f"repscope's set is closer in {ka['first_closer_exact_f64']}, faiss's in "
                  f"{ka['second_closer_exact_f64']}, equal in {ka['equal_exact_f64']} "
                  f"(largest k-th distance gap {ka['max_rel_kth_distance_gap']:.1e})")
    try:
        print(f"\nJSON: {out_json.resolve().relative_to(ROOT)}")
    except ValueError:
        print(f"\nJSON: {out_json}")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=384)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="rounds of the repscope and faiss steps (median reported)")
    p.add_argument("--peer-repeats", type=int, default=1, help="runs of each slow peer (skdim, DADApy)")
    p.add_argument("--peer-n", type=int, default=0, help="run skdim/DADApy (and repscope id, for the ratios) "
                   "on the first PEER_N rows only; 0 = all rows")
    p.add_argument("--peer-timeout", type=float, default=2400.0, help="kill a peer after this many seconds")
    p.add_argument("--skip-peers", nargs="*", default=[], choices=["faiss", "skdim", "skdim_twonn", "dadapy", "gemm", "python"])
    p.add_argument("--matched-knn", action=argparse.BooleanOptionalAction, default=True,
                   help="also time repscope knn at k=2 and k=20 (the neighbours TwoNN and MLE need)")
    p.add_argument("--dadapy-maxk", type=int, default=0, help="DADApy maxk; 0 = its default (min(100, N-1))")
    p.add_argument("--gemm-size", type=int, default=4096)
    p.add_argument("--repscope", type=Path, default=DEFAULT_BIN)
    p.add_argument("--report", type=Path, help="only print the tables of a saved results JSON")
    p.add_argument("--label", default="", help="free text stored in the JSON (e.g. which commit the binary is)")
    # worker mode (internal)
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker_main(args)
    elif args.report:
        render(json.loads(args.report.read_text()), args.report)
    else:
        main_parent(args)


if __name__ == "__main__":
    main()
