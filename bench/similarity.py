#!/usr/bin/env python3
"""Side-by-side benchmark of `repscope compare` against float64 numpy, in one run.

1. Linear CKA (biased and debiased) on n x 384 against n x 384 (default n = 100,000):
   - numpy float64 reference of the same formulas (feature route: centre, X^T X, Y^T Y, Y^T X, row norms),
     timed from the float32 arrays in memory;
   - the GEMM floor: only the matrix products the formulas need (X^T X, Y^T Y, Y^T X) in float64, on arrays
     already converted and centred, best of 3;
   - repscope compare -m cka_linear -m cka_linear_debiased, wall time of the whole process (load included)
     and the compute time it reports.
2. Mutual kNN (k = 10, cosine) at n = 20,000 x 384: numpy float32 blocked implementation (matrix product per
   block of rows, argpartition, exact order of the k) against `repscope compare -m mutual_knn`.

Values are checked to agree (CKA to 1e-6 relative). Prints a markdown table and writes bench/out/similarity.json.

Usage: bash bench/setup_venv_similarity.sh && cargo build --release --bin repscope --examples &&
       bench/.venv/bin/python bench/similarity.py [--n 100000] [--knn-n 20000]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "repscope")
FLOOR_BIN = os.path.join(ROOT, "target", "release", "examples", "gemm_floor")


def make_pair(n, d, seed):
    rng = np.random.default_rng(seed)
    # Correlated representations with a decaying spectrum, away from the origin.
    scales = (np.arange(1, d + 1) ** -0.5).astype(np.float32)
    x = (rng.standard_normal((n, d), dtype=np.float32) * scales + 0.3).astype(np.float32)
    a = rng.standard_normal((d, d), dtype=np.float32) / np.sqrt(d)
    y = (np.tanh(x @ a) + 0.5 * rng.standard_normal((n, d), dtype=np.float32) * scales).astype(np.float32)
    return x, y


def numpy_cka(x32, y32):
    """Biased and debiased linear CKA in float64, feature route, the formulas of METRICS.md."""
    n = x32.shape[0]
    x = x32.astype(np.float64)
    y = y32.astype(np.float64)
    x -= x.mean(0)
    y -= y.mean(0)
    xx = x.T @ x
    yy = y.T @ y
    yx = y.T @ x
    biased = (yx ** 2).sum() / np.sqrt((xx ** 2).sum() * (yy ** 2).sum())
    a = np.einsum("ij,ij->i", x, x)
    b = np.einsum("ij,ij->i", y, y)

    def hsic1(f, ca, cb, cab):
        # centred data: 1'K~1 = -sum(a), 1'K~L~1 = sum(a b)
        tr = f - cab
        return (tr + ca.sum() * cb.sum() / ((n - 1) * (n - 2)) - 2 * cab / (n - 2)) / (n * (n - 3))

    kl = hsic1((yx ** 2).sum(), a, b, (a * b).sum())
    kk = hsic1((xx ** 2).sum(), a, a, (a * a).sum())
    ll = hsic1((yy ** 2).sum(), b, b, (b * b).sum())
    return biased, kl / np.sqrt(kk * ll)


def gemm_floor(x32, y32, repeats=3):
    x = x32.astype(np.float64)
    y = y32.astype(np.float64)
    x -= x.mean(0)
    y -= y.mean(0)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        _ = x.T @ x
        _ = y.T @ y
        _ = y.T @ x
        best = min(best, time.perf_counter() - t)
    return best


def numpy_knn(x32, k, block=2048):
    """Exact cosine kNN (self excluded, ties by smaller index) in float32 blocks."""
    n = x32.shape[0]
    xn = x32 / np.linalg.norm(x32, axis=1, keepdims=True)
    out = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, block):
        e = min(n, s + block)
        sim = xn[s:e] @ xn.T
        sim[np.arange(e - s), np.arange(s, e)] = -np.inf
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        vals = np.take_along_axis(sim, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        out[s:e] = np.take_along_axis(part, order, axis=1)
    return out


def numpy_mutual_knn(x32, y32, k):
    nx = numpy_knn(x32, k)
    ny = numpy_knn(y32, k)
    inter = (nx[:, :, None] == ny[:, None, :]).any(-1).sum(1)
    return float((inter / k).mean())


def run_repscope(args):
    t = time.perf_counter()
    p = subprocess.run([BIN] + args + ["--json", "--quiet"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"repscope failed: {p.stderr}")
    return json.loads(p.stdout), wall


def peak_rss_children_mib():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--knn-n", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-knn", action="store_true")
    ap.add_argument("--skip-cka", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: run cargo build --release first")
    data = os.path.join(HERE, "data")
    out = os.path.join(HERE, "out")
    os.makedirs(data, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    res = {"numpy": np.__version__, "cores": os.cpu_count()}
    try:
        res["blas"] = [c.get("name") for c in np.show_config(mode="dicts")["Build Dependencies"].values()]
    except Exception:  # noqa: BLE001
        pass

    # ---- linear CKA ---------------------------------------------------------------------------
    if not a.skip_cka:
        cka_bench(a, data, res)
    if not a.skip_knn:
        knn_bench(a, data, res)
    report(res, out)


def cka_bench(a, data, res):
    x, y = make_pair(a.n, a.d, 0)
    px, py = os.path.join(data, f"cka_x_{a.n}.npy"), os.path.join(data, f"cka_y_{a.n}.npy")
    np.save(px, x)
    np.save(py, y)
    t = time.perf_counter()
    nb, nd = numpy_cka(x, y)
    t_numpy = time.perf_counter() - t
    t_floor = gemm_floor(x, y)
    t_floor_rs = None
    if os.path.exists(FLOOR_BIN):
        p = subprocess.run([FLOOR_BIN, px, py, "3"], capture_output=True, text=True, check=True)
        t_floor_rs = json.loads(p.stdout)["gemm_floor_s"]
    runs = []
    for _ in range(3):
        j, wall = run_repscope(["compare", px, py, "-m", "cka_linear", "-m", "cka_linear_debiased"])
        runs.append((wall, j["timing_s"]["compute"], j))
    wall, comp, j = min(runs, key=lambda r: r[0])
    rb, rd = j["measures"]["cka_linear"], j["measures"]["cka_linear_debiased"]
    res["cka"] = {
        "n": a.n, "d": a.d,
        "numpy_f64_s": t_numpy, "gemm_floor_f64_s": t_floor,
        "repscope_wall_s": wall, "repscope_compute_s": comp,
        "repscope_route": j["details"]["cka_linear"]["route"],
        "speedup_vs_numpy": t_numpy / wall,
        "gemm_floor_faer_f64_s": t_floor_rs,
        "wall_over_floor": wall / t_floor,
        "compute_over_floor": comp / t_floor,
        "wall_over_faer_floor": wall / t_floor_rs if t_floor_rs else None,
        "compute_over_faer_floor": comp / t_floor_rs if t_floor_rs else None,
        "numpy_biased": nb, "numpy_debiased": nd, "repscope_biased": rb, "repscope_debiased": rd,
        "rel_diff_biased": abs(rb - nb) / abs(nb), "rel_diff_debiased": abs(rd - nd) / abs(nd),
        "repscope_peak_rss_mib": peak_rss_children_mib(),
    }
    assert res["cka"]["rel_diff_biased"] < 1e-6 and res["cka"]["rel_diff_debiased"] < 1e-6, res["cka"]


def knn_bench(a, data, res):
    # ---- mutual kNN -----------------------------------------------------------------------------
    if True:
        x, y = make_pair(a.knn_n, a.d, 1)
        px, py = os.path.join(data, f"knn_x_{a.knn_n}.npy"), os.path.join(data, f"knn_y_{a.knn_n}.npy")
        np.save(px, x)
        np.save(py, y)
        t_np = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            nm = numpy_mutual_knn(x, y, a.k)
            t_np = min(t_np, time.perf_counter() - t)
        runs = []
        for _ in range(2):
            j, wall = run_repscope(["compare", px, py, "-m", "mutual_knn", "-k", str(a.k)])
            runs.append((wall, j))
        wall, j = min(runs, key=lambda r: r[0])
        rm = j["measures"]["mutual_knn"]
        res["mutual_knn"] = {
            "n": a.knn_n, "d": a.d, "k": a.k,
            "numpy_f32_s": t_np, "repscope_wall_s": wall,
            "repscope_compute_s": j["timing_s"]["compute"],
            "speedup": t_np / wall,
            "numpy_value": nm, "repscope_value": rm, "abs_diff": abs(nm - rm),
        }


def report(res, out):
    with open(os.path.join(out, "similarity.json"), "w") as f:
        json.dump(res, f, indent=2)
    c = res.get("cka")
    if c:
        print_cka(c)
    if "mutual_knn" in res:
        print_knn(res["mutual_knn"])


def print_cka(c):
    print(f"| linear CKA {c['n']} x {c['d']} vs {c['n']} x {c['d']} | seconds |")
    print("|---|---|")
    print(f"| numpy float64, same formulas (from f32 arrays in memory) | {c['numpy_f64_s']:.2f} |")
    print(f"| GEMM floor: X'X, Y'Y, Y'X in float64 (numpy BLAS, best of 3) | {c['gemm_floor_f64_s']:.2f} |")
    if c["gemm_floor_faer_f64_s"]:
        print(f"| GEMM floor: lower triangle of Z'Z, Z = [X|Y], float64 (faer, as repscope uses it, best of 3) | {c['gemm_floor_faer_f64_s']:.2f} |")
    print(f"| repscope compare, whole process (load + compute + JSON) | {c['repscope_wall_s']:.2f} |")
    print(f"| repscope compute only | {c['repscope_compute_s']:.2f} |")
    print(f"\nspeed-up vs numpy {c['speedup_vs_numpy']:.2f}x; wall / numpy floor {c['wall_over_floor']:.2f}; "
          f"wall / faer floor {c['wall_over_faer_floor'] or float('nan'):.2f}; "
          f"compute / faer floor {c['compute_over_faer_floor'] or float('nan'):.2f}; "
          f"rel diff biased {c['rel_diff_biased']:.1e}, debiased {c['rel_diff_debiased']:.1e}")


def print_knn(m):
    if True:
        print(f"\n| mutual kNN k={m['k']}, {m['n']} x {m['d']} (two spaces) | seconds |")
        print("|---|---|")
        print(f"| numpy float32 blocked (matmul + argpartition), best of 2 | {m['numpy_f32_s']:.2f} |")
        print(f"| repscope compare -m mutual_knn, whole process, best of 2 | {m['repscope_wall_s']:.2f} |")
        print(f"\nspeed-up {m['speedup']:.2f}x; values {m['numpy_value']:.6f} vs {m['repscope_value']:.6f}")


if __name__ == "__main__":
    main()
