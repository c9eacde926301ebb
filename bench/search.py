#!/usr/bin/env python3
"""Benchmark for issue 8: repscope's HNSW against hnswlib 0.8, and the insertion-order study.

Part 1, side by side on MiniLM sentence embeddings (20,319 x 384, cosine): 1,000 rows held out as
queries (seeded), the rest indexed by both libraries with the same M and ef_construction and the same
number of threads; ef_search is swept. Every step runs in its own fresh child process, reaped with
os.wait4 so that its peak RSS (ru_maxrss) is its own: repscope through its CLI (`repscope index build` /
`repscope index query`, which time the build and the query passes inside the process, after loading), and
hnswlib through a worker mode of this script (timing add_items and knn_query the same way). The steps run
in interleaved rounds (repscope, hnswlib, hnswlib, repscope, ...), so the drift of a shared machine hits
both alike; times are medians over rounds. Recall@10 of both is computed here against numpy brute force.

Part 2, the insertion-order study: `repscope search-study` on MiniLM (with its labels) and on a synthetic
set of known high intrinsic dimension (a mixture of 10 Gaussian clusters in a 64-dimensional linear
subspace of R^128, so ID = 64), with repetitions over seeds.

Run: bash bench/setup_venv_search.sh && cargo build --release && bench/.venv/bin/python bench/search.py
Results: a markdown report on stdout (progress on stderr), bench/out/search.md and bench/out/search.json.
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
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.exists():
    SHARED = Path("/work/shared/data")
K = 10
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Child processes with their own peak RSS
# --------------------------------------------------------------------------------------------------

def _run_measured(cmd: list[str], threads: int) -> dict:
    env = dict(os.environ)
    for k in THREAD_ENV:
        env[k] = str(threads)
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        fo.seek(0)
        fe.seek(0)
        return {"rc": os.waitstatus_to_exitcode(status), "out": fo.read(), "err": fe.read(),
                "wall": wall, "rss_mib": ru.ru_maxrss / 1024.0}


def spawner_loop() -> None:
    """A small process that starts the measured children. Linux carries the high-water RSS of the process
    that forks into the child's ru_maxrss (it survives exec), so children must be forked from a process
    that never held the data: this one imports nothing but the standard library."""
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.write(json.dumps(_run_measured(req["cmd"], req["threads"])) + "\n")
        sys.stdout.flush()


SPAWNER = None


def start_spawner() -> None:
    global SPAWNER
    SPAWNER = subprocess.Popen([sys.executable, __file__, "--spawner"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)


def run_child_rss(cmd: list[str], threads: int) -> tuple[str, float, float]:
    """Runs cmd through the spawner; returns (stdout, wall seconds, peak RSS of that child in MiB)."""
    SPAWNER.stdin.write(json.dumps({"cmd": cmd, "threads": threads}) + "\n")
    SPAWNER.stdin.flush()
    r = json.loads(SPAWNER.stdout.readline())
    if r["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({r['rc']}):\n{r['err']}")
    return r["out"], r["wall"], r["rss_mib"]


# --------------------------------------------------------------------------------------------------
# hnswlib worker (runs in a child process)
# --------------------------------------------------------------------------------------------------

def worker(args) -> None:
    import numpy as np
    import hnswlib

    if args.worker == "build":
        r = np.load(args.refs)
        p = hnswlib.Index(space="cosine", dim=r.shape[1])
        p.init_index(max_elements=len(r), ef_construction=args.ef_construction, M=args.m,
                     random_seed=args.seed)
        t = time.perf_counter()
        p.add_items(r, np.arange(len(r)), num_threads=args.threads)
        secs = time.perf_counter() - t
        p.save_index(args.index)
        print(json.dumps({"build_seconds": secs}))
    else:
        q = np.load(args.queries)
        dim = q.shape[1]
        p = hnswlib.Index(space="cosine", dim=dim)
        p.load_index(args.index)
        # Repeats outermost, as `repscope index query` does: every pass sweeps all ef_search values.
        times = {ef: [] for ef in args.efs}
        results = {}
        for _ in range(args.repeats):
            for ef in args.efs:
                p.set_ef(ef)
                t = time.perf_counter()
                lab, _ = p.knn_query(q, k=K, num_threads=args.threads)
                times[ef].append(time.perf_counter() - t)
                results[f"ef{ef}"] = lab.astype(np.uint32)
        points = [{"ef_search": ef, "queries_per_second": len(q) / statistics.median(times[ef]),
                   "best_queries_per_second": len(q) / min(times[ef]), "seconds": times[ef]}
                  for ef in args.efs]
        np.savez(args.out, **results)
        print(json.dumps({"points": points}))


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------

def split_minilm(seed: int, nq: int):
    import numpy as np

    x = np.load(SHARED / "minilm_sentences.npy")
    labels = np.load(SHARED / "minilm_labels.npy")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    q, r = perm[:nq], perm[nq:]
    d = HERE / "data"
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "minilm_queries.npy", np.ascontiguousarray(x[q]))
    np.save(d / "minilm_refs.npy", np.ascontiguousarray(x[r]))
    qs = x[q] / np.linalg.norm(x[q], axis=1, keepdims=True)
    rs = x[r] / np.linalg.norm(x[r], axis=1, keepdims=True)
    sims = qs @ rs.T
    truth = np.argsort(-sims, axis=1, kind="stable")[:, :K]
    return d / "minilm_refs.npy", d / "minilm_queries.npy", truth


def synthetic(n: int, d: int, latent: int, clusters: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, latent)))
    centres = 1.5 * rng.standard_normal((clusters, latent))
    lab = rng.integers(0, clusters, size=n)
    z = centres[lab] + rng.standard_normal((n, latent))
    x = (z @ basis.T).astype(np.float32)
    out = HERE / "data"
    out.mkdir(parents=True, exist_ok=True)
    xp = out / f"synthetic_id{latent}_d{d}_n{n}_seed{seed}.npy"
    lp = out / f"synthetic_id{latent}_d{d}_n{n}_seed{seed}_labels.npy"
    np.save(xp, x)
    np.save(lp, lab.astype(np.int32))
    return xp, lp


def recall(found, truth) -> float:
    import numpy as np

    hits = sum(len(set(found[i, :K].tolist()) & set(truth[i].tolist())) for i in range(len(truth)))
    return hits / (len(truth) * K)


def interp_qps(points, target: float):
    """QPS at recall = target, linear between the two curve points around it (None if never reached)."""
    pts = sorted(points, key=lambda p: p["ef_search"])
    for a, b in zip(pts, pts[1:]):
        if a["recall"] < target <= b["recall"]:
            w = (target - a["recall"]) / (b["recall"] - a["recall"])
            return a["queries_per_second"] + w * (b["queries_per_second"] - a["queries_per_second"])
    if pts and pts[0]["recall"] >= target:
        return pts[0]["queries_per_second"]
    return None


# --------------------------------------------------------------------------------------------------
# Part 1: side by side
# --------------------------------------------------------------------------------------------------

def side_by_side(args, binary: Path) -> dict:
    import numpy as np

    refs, queries, truth = split_minilm(args.seed, args.n_queries)
    tmp = Path(tempfile.mkdtemp(prefix="repscope-search-bench-"))
    efs = args.ef
    rounds = []
    for rnd in range(args.rounds):
        log(f"round {rnd + 1}/{args.rounds}")
        res = {}
        order = ["repscope", "hnswlib"] if rnd % 2 == 0 else ["hnswlib", "repscope"]
        for who in order:
            if who == "repscope":
                idx = tmp / "r.hnsw"
                out, wall, rss = run_child_rss(
                    [str(binary), "index", "build", str(refs), "-o", str(idx), "--metric", "cosine",
                     "--m", str(args.m), "--ef-construction", str(args.ef_construction),
                     "--seed", str(args.seed), "--threads", str(args.threads), "--json", "--quiet"],
                    args.threads)
                b = json.loads(out)
                assert b["duplicates_merged"] == 0, "row numbering would differ from hnswlib's"
                res["repscope_build"] = {"seconds": b["build_seconds"], "wall": wall, "rss_mib": rss}
                qout = tmp / "r_out.npz"
                out, wall, rss = run_child_rss(
                    [str(binary), "index", "query", str(idx), "--queries", str(queries), "-k", str(K),
                     "--ef-search", ",".join(map(str, efs)), "--repeats", str(args.repeats),
                     "-o", str(qout), "--threads", str(args.threads), "--json", "--quiet"],
                    args.threads)
                qd = json.loads(out)
                found = np.load(qout)
                pts = []
                for p in qd["points"]:
                    ef = p["ef_search"]
                    pts.append({"ef_search": ef, "queries_per_second": p["queries_per_second"],
                                "best_queries_per_second": p["best_queries_per_second"],
                                "recall": recall(found[f"indices_ef{ef}"], truth)})
                res["repscope_query"] = {"points": pts, "wall": wall, "rss_mib": rss}
            else:
                idx = tmp / "h.bin"
                out, wall, rss = run_child_rss(
                    [sys.executable, __file__, "--worker", "build", "--refs", str(refs), "--index", str(idx),
                     "--m", str(args.m), "--ef-construction", str(args.ef_construction),
                     "--seed", str(args.seed), "--threads", str(args.threads)], args.threads)
                b = json.loads(out)
                res["hnswlib_build"] = {"seconds": b["build_seconds"], "wall": wall, "rss_mib": rss}
                qout = tmp / "h_out.npz"
                out, wall, rss = run_child_rss(
                    [sys.executable, __file__, "--worker", "query", "--queries", str(queries),
                     "--index", str(idx), "--out", str(qout), "--efs", *map(str, efs),
                     "--repeats", str(args.repeats), "--threads", str(args.threads)], args.threads)
                qd = json.loads(out)
                found = np.load(qout)
                pts = []
                for p in qd["points"]:
                    ef = p["ef_search"]
                    pts.append({"ef_search": ef, "queries_per_second": p["queries_per_second"],
                                "best_queries_per_second": p["best_queries_per_second"],
                                "recall": recall(found[f"ef{ef}"], truth)})
                res["hnswlib_query"] = {"points": pts, "wall": wall, "rss_mib": rss}
        rb, hb = res["repscope_build"]["seconds"], res["hnswlib_build"]["seconds"]
        log(f"  build: repscope {rb:.2f} s, hnswlib {hb:.2f} s, ratio {rb / hb:.3f}")
        for a, b in zip(res["repscope_query"]["points"], res["hnswlib_query"]["points"]):
            log(f"  ef {a['ef_search']:>4}: repscope recall {a['recall']:.4f} {a['queries_per_second']:8.0f} q/s"
                f" (best {a['best_queries_per_second']:.0f}) | hnswlib recall {b['recall']:.4f}"
                f" {b['queries_per_second']:8.0f} q/s (best {b['best_queries_per_second']:.0f})"
                f" | ratio {a['queries_per_second'] / b['queries_per_second']:.3f},"
                f" best {a['best_queries_per_second'] / b['best_queries_per_second']:.3f}")
        rounds.append(res)
    shutil.rmtree(tmp, ignore_errors=True)

    def med(key, field):
        return statistics.median(r[key][field] for r in rounds)

    curves = {}
    for who in ("repscope", "hnswlib"):
        pts = []
        for i, ef in enumerate(efs):
            per = [r[f"{who}_query"]["points"][i] for r in rounds]
            pts.append({
                "ef_search": ef,
                "recall": per[0]["recall"],
                "recall_all_rounds": [p["recall"] for p in per],
                "queries_per_second": statistics.median(p["queries_per_second"] for p in per),
                "best_queries_per_second": max(p["best_queries_per_second"] for p in per),
            })
        curves[who] = pts
    # Ratios of the paired rounds, then their median: a round's two runs saw the same machine state.
    build_ratios = [r["repscope_build"]["seconds"] / r["hnswlib_build"]["seconds"] for r in rounds]
    qps_ratios = {}
    for i, ef in enumerate(efs):
        qps_ratios[ef] = statistics.median(
            r["repscope_query"]["points"][i]["queries_per_second"]
            / r["hnswlib_query"]["points"][i]["queries_per_second"] for r in rounds)
    # The fastest pass of each side over all rounds: on a shared machine, other load only ever adds time.
    best_ratios = {p["ef_search"]: p["best_queries_per_second"] / h["best_queries_per_second"]
                   for p, h in zip(curves["repscope"], curves["hnswlib"])}
    target_ef = next((p["ef_search"] for p in curves["repscope"] if p["recall"] >= 0.95), None)
    at95 = {w: interp_qps(curves[w], 0.95) for w in curves}
    best_curves = {w: [{**p, "queries_per_second": p["best_queries_per_second"]} for p in curves[w]]
                   for w in curves}
    at95_best = {w: interp_qps(best_curves[w], 0.95) for w in curves}
    return {
        "params": {"m": args.m, "ef_construction": args.ef_construction, "threads": args.threads,
                   "seed": args.seed, "k": K, "n_queries": args.n_queries, "rounds": args.rounds,
                   "query_repeats": args.repeats},
        "rounds": rounds,
        "curves": curves,
        "build_seconds": {"repscope": med("repscope_build", "seconds"),
                          "hnswlib": med("hnswlib_build", "seconds")},
        "build_ratio_per_round": build_ratios,
        "build_ratio": statistics.median(build_ratios),
        "qps_ratio_by_ef": qps_ratios,
        "best_qps_ratio_by_ef": best_ratios,
        "first_ef_at_095": target_ef,
        "qps_ratio_at_first_ef_095": qps_ratios.get(target_ef) if target_ef else None,
        "best_qps_ratio_at_first_ef_095": best_ratios.get(target_ef) if target_ef else None,
        "best_qps_at_recall_095": at95_best,
        "best_qps_ratio_at_recall_095": (at95_best["repscope"] / at95_best["hnswlib"]
                                         if at95_best["repscope"] and at95_best["hnswlib"] else None),
        "qps_at_recall_095": at95,
        "qps_ratio_at_recall_095": (at95["repscope"] / at95["hnswlib"]
                                    if at95["repscope"] and at95["hnswlib"] else None),
        "peak_rss_mib": {
            "repscope_build": max(r["repscope_build"]["rss_mib"] for r in rounds),
            "hnswlib_build": max(r["hnswlib_build"]["rss_mib"] for r in rounds),
            "repscope_query": max(r["repscope_query"]["rss_mib"] for r in rounds),
            "hnswlib_query": max(r["hnswlib_query"]["rss_mib"] for r in rounds),
        },
    }


# --------------------------------------------------------------------------------------------------
# Part 2: insertion-order study
# --------------------------------------------------------------------------------------------------

def order_study(args, binary: Path, name: str, path: Path, labels: Path, metric: str,
                compression: bool, m: int, efc: int) -> dict:
    cmd = [str(binary), "search-study", str(path), "--metric", metric, "--labels", str(labels),
           "--order-repeats", str(args.order_repeats), "--m", str(m),
           "--ef-construction", str(efc), "--ef-search", "64",
           "--seed", str(args.seed), "--threads", str(args.threads), "--json", "--quiet"]
    if not compression:
        cmd.append("--no-compression")
    log(f"search-study on {name}: {' '.join(cmd[1:])}")
    out, wall, rss = run_child_rss(cmd, args.threads)
    doc = json.loads(out)
    doc["bench"] = {"name": name, "wall_seconds": wall, "peak_rss_mib": rss,
                    "command": "repscope " + " ".join(cmd[1:])}
    for o in doc["insertion_orders"]:
        log("  " + o["statement"])
    return doc


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

def markdown(res: dict) -> str:
    lines = []
    if "side_by_side" in res:
        side_markdown(res, lines)
    studies_markdown(res, lines)
    return "\n".join(lines)


def side_markdown(res: dict, lines: list) -> None:
    s = dict(res["side_by_side"])
    for key in ("qps_ratio_by_ef", "best_qps_ratio_by_ef"):  # JSON turns the int keys into strings
        s[key] = {int(k): v for k, v in s[key].items()}
    p = s["params"]
    lines.append(f"### repscope HNSW against hnswlib {res['env']['hnswlib']} on MiniLM "
                 f"(20,319 × 384, cosine, {p['n_queries']} held-out queries)\n")
    lines.append(f"M {p['m']}, ef_construction {p['ef_construction']}, {p['threads']} threads on both, "
                 f"k = {p['k']}; {p['rounds']} interleaved rounds, each query pass repeated "
                 f"{p['query_repeats']} times; medians.\n")
    lines.append("| ef_search | repscope recall@10 | hnswlib recall@10 | repscope q/s (median) | hnswlib q/s "
                 "(median) | QPS ratio (median of rounds) | repscope q/s (best) | hnswlib q/s (best) | "
                 "QPS ratio (best) |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for a, b in zip(s["curves"]["repscope"], s["curves"]["hnswlib"]):
        ef = a["ef_search"]
        lines.append(f"| {ef} | {a['recall']:.4f} | {b['recall']:.4f} | {a['queries_per_second']:.0f} | "
                     f"{b['queries_per_second']:.0f} | {s['qps_ratio_by_ef'][ef]:.2f} | "
                     f"{a['best_queries_per_second']:.0f} | {b['best_queries_per_second']:.0f} | "
                     f"{s['best_qps_ratio_by_ef'][ef]:.2f} |")
    lines.append("")
    bs = s["build_seconds"]
    lines.append(f"- Build: repscope {bs['repscope']:.2f} s, hnswlib {bs['hnswlib']:.2f} s; ratio (paired rounds, "
                 f"median) **{s['build_ratio']:.2f}** (per round: "
                 + ", ".join(f"{x:.2f}" for x in s["build_ratio_per_round"]) + ").")
    if s["first_ef_at_095"]:
        lines.append(f"- First ef_search with repscope recall@10 ≥ 0.95: {s['first_ef_at_095']}; QPS ratio there "
                     f"**{s['qps_ratio_at_first_ef_095']:.2f}** (median of rounds), "
                     f"**{s['best_qps_ratio_at_first_ef_095']:.2f}** (best passes).")
    if s["qps_ratio_at_recall_095"]:
        a = s["qps_at_recall_095"]
        lines.append(f"- At recall@10 = 0.95 (interpolated on each curve): repscope {a['repscope']:.0f} q/s, "
                     f"hnswlib {a['hnswlib']:.0f} q/s, ratio **{s['qps_ratio_at_recall_095']:.2f}**; best passes: "
                     f"ratio **{s['best_qps_ratio_at_recall_095']:.2f}**.")
    m = s["peak_rss_mib"]
    lines.append(f"- Peak RSS (MiB): build repscope {m['repscope_build']:.0f}, hnswlib {m['hnswlib_build']:.0f}; "
                 f"query repscope {m['repscope_query']:.0f}, hnswlib {m['hnswlib_query']:.0f} (hnswlib's "
                 f"include the Python interpreter and numpy).")
    lines.append("")


def studies_markdown(res: dict, lines: list) -> None:
    for doc in res["studies"]:
        b = doc["bench"]
        gi = doc["global_id"]
        lines.append(f"### Insertion order: {b['name']}\n")
        lines.append(f"{doc['n_refs']} rows searched, {doc['n_queries']} queries, d = {doc['d']}; global ID "
                     f"{gi['value']:.1f} ({gi['estimator']}; TwoNN {gi['twonn']:.1f}, MLE {gi['mle']:.1f}), "
                     f"median LID {gi['median_lid_refs']:.1f}. M {doc['user']['m']}, ef_construction "
                     f"{doc['user']['ef_construction']}.\n")
        for o in doc["insertion_orders"]:
            lines.append(f"ef_search {o['ef_search']}, {o['repetitions']} repetitions (seeds "
                         f"{doc['seed']}..{doc['seed'] + o['repetitions'] - 1}):\n")
            lines.append("| order | mean recall@10 | sd | min | max |")
            lines.append("|---|---:|---:|---:|---:|")
            for x in o["orders"]:
                lines.append(f"| {x['order']} | {x['mean']:.4f} | {x['sd']:.4f} | {x['min']:.4f} | {x['max']:.4f} |")
            lines.append("")
            lines.append(f"Effect (best − worst): **{o['effect_pp']:.2f} pp ± {o['effect_se_pp']:.2f}**; seed spread "
                         f"{o['seed_spread_pp']:.2f} pp. {o['statement']}\n")
        lines.append("| vendor defaults | M | ef_c | ef_s | recall@10 |")
        lines.append("|---|---:|---:|---:|---:|")
        for v in doc["vendor_defaults"]:
            lines.append(f"| {v['name']} | {v['m']} | {v['ef_construction']} | {v['ef_search']} | {v['recall']:.4f} |")
        lines.append("")
        lines.append("| query-LID quartile | LID range | recall@10 (ef 64) |")
        lines.append("|---|---|---:|")
        for q in doc["lid_quartiles"]:
            lines.append(f"| Q{q['quartile']} | {q['lid_min']:.1f}–{q['lid_max']:.1f} | {q['recall']:.4f} |")
        lines.append("")
        if doc.get("compression"):
            c = doc["compression"]
            lines.append("| representation | bytes/vector | recall@10 |")
            lines.append("|---|---:|---:|")
            for pt in c["points"]:
                label = {"full": f"full f32", "pca": f"PCA {pt['dims']}", "random_projection": f"sparse RP {pt['dims']}",
                         "sq": f"SQ {pt['bits']}-bit", "pca+sq": f"PCA {pt['dims']} + SQ8"}[pt["method"]]
                lines.append(f"| {label} | {pt['bytes_per_vector']} | {pt['recall']:.4f} |")
            lines.append("")
            lines.append(f"Advice: {c['advice']['text']}.\n")
        lines.append(f"Command: `{b['command']}`, {b['wall_seconds']:.0f} s wall, peak RSS "
                     f"{b['peak_rss_mib']:.0f} MiB.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["build", "query"], help=argparse.SUPPRESS)
    ap.add_argument("--spawner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--refs")
    ap.add_argument("--queries")
    ap.add_argument("--index")
    ap.add_argument("--out")
    ap.add_argument("--efs", type=int, nargs="+")
    ap.add_argument("--repscope", default=str(DEFAULT_BIN), help="the binary under test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, nargs="+", default=[10, 16, 24, 32, 48, 64, 96, 128, 256])
    ap.add_argument("--n-queries", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per ef_search in each round")
    ap.add_argument("--order-repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weak-m", type=int, default=8, help="M of the second, weaker order study")
    ap.add_argument("--weak-ef-construction", type=int, default=32)
    ap.add_argument("--render", metavar="JSON", help="only print the markdown of a saved search.json")
    ap.add_argument("--skip", nargs="*", default=[], choices=["side", "minilm-study", "synthetic-study", "weak"])
    args = ap.parse_args()
    if args.spawner:
        spawner_loop()
        return
    if args.worker:
        worker(args)
        return
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())))
        return
    start_spawner()

    import numpy as np
    import hnswlib  # noqa: F401
    import importlib.metadata as md

    # A private copy of the binary, so a concurrent cargo build cannot swap it mid-run.
    tmpbin = Path(tempfile.mkdtemp(prefix="repscope-bin-")) / "repscope"
    shutil.copy2(args.repscope, tmpbin)
    res = {"env": {
        "python": platform.python_version(), "numpy": np.__version__, "hnswlib": md.version("hnswlib"),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "repscope": subprocess.run([str(tmpbin), "--version"], capture_output=True, text=True).stdout.strip(),
        "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }, "studies": []}
    if "side" not in args.skip:
        res["side_by_side"] = side_by_side(args, tmpbin)
    settings = [(args.m, args.ef_construction, True)]
    if "weak" not in args.skip:
        settings.append((args.weak_m, args.weak_ef_construction, False))
    minilm = ("MiniLM sentences (20,319 × 384, cosine, labels)", SHARED / "minilm_sentences.npy",
              SHARED / "minilm_labels.npy", "cosine")
    for m, efc, first in settings:
        if "minilm-study" not in args.skip:
            name, xp, lp, metric = minilm
            res["studies"].append(order_study(args, tmpbin, f"{name}, M {m}, ef_construction {efc}", xp, lp,
                                              metric, first, m, efc))
        if "synthetic-study" not in args.skip:
            xp, lp = synthetic(20000, 128, 64, 10, 20240808)
            res["studies"].append(order_study(
                args, tmpbin, f"synthetic, ID 64 (10 Gaussian clusters in a 64-d subspace of R^128, 20,000 "
                f"rows, euclidean), M {m}, ef_construction {efc}", xp, lp, "euclidean", False, m, efc))
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "search.json").write_text(json.dumps(res, indent=1, default=str))
    md_text = markdown(res)
    (out / "search.md").write_text(md_text)
    print(md_text)
    shutil.rmtree(tmpbin.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
