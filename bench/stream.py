"""Streaming spectrum: repscope against its floor and its peers on the same data and threads, in one run.

1. tokens: the MiniLM layer-3 token states of the corpus (bench/data/corpus_tokens.npz, key "tokens",
   654,305 x 384 f32, 1.0 GB, written by `repscope embed ... --tokens 3`):
   - `repscope spectrum` (and, with --baseline BIN, an earlier build of it: "today's time");
   - the floor: the time to read the bytes (warm page cache), and numpy's f64 Gram X^T X taken in chunks
     of 65,536 rows (np.dot of a chunk's transpose with itself, which numpy hands to BLAS syrk), with the
     f32 -> f64 conversion timed apart;
   - numpy's np.cov on the memory-mapped array, and scikit-learn's IncrementalPCA (batch 65,536).
2. same: a seeded 2 GB source as one .npy file and as five shards (.npy and .safetensors, uneven
   boundaries), with 1 and 2 threads: the largest relative difference of every number of the report.
3. big (--big-gb, default 30; 0 skips): a seeded source larger than this machine's memory, in shards of
   two formats (.npy and .safetensors): time and peak RSS of `repscope spectrum`; the data is deleted after.

Every command runs in a fresh child process; peak RSS is its maximum resident set (/usr/bin/time).
Usage: bash bench/setup_venv_stream.sh && cargo build --release &&
       bench/.venv-stream/bin/python bench/stream.py [--threads 2] [--big-gb 30] [--baseline BIN]
Output: bench/out/stream.json, and a summary on stdout.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from sae import run  # noqa: E402  (one child-process runner for the bench scripts)
DATA = HERE / "data"
OUT = HERE / "out"


def py(code, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    return run([sys.executable, "-c", code], env=env)


def spectrum(repscope, paths, threads, extra=()):
    dt, rss, out = run([repscope, "spectrum", *map(str, paths), "--threads", str(threads), "--json", "-q",
                        *extra])
    return dt, rss, json.loads(out)


def numbers(doc):
    """The numbers of a spectrum document, by name (eigenvalues scaled by the largest)."""
    out = {k: doc[k] for k in ("total_variance", "participation_ratio", "anisotropy")}
    for k in ("effective_rank", "rankme", "coding_rate"):
        out[k] = doc[k]["value"]
    out["alpha"] = doc["alpha_req"]["alpha"] if doc["alpha_req"] else None
    l1 = doc["eigenvalues"][0]
    out["eigenvalues/l1"] = [v / l1 for v in doc["eigenvalues"]]
    return out


def max_rel(a, b):
    worst = 0.0
    for k, x in numbers(a).items():
        y = numbers(b)[k]
        if isinstance(x, list):
            worst = max(worst, max(abs(p - q) for p, q in zip(x, y)))
        elif x is not None:
            worst = max(worst, abs(x - y) / max(abs(y), 1e-300))
    return worst


def write_safetensors(path, x):
    """One F32 tensor "x", written in pieces (no second copy of x in memory)."""
    import numpy as np

    rows, cols = x.shape
    n = rows * cols * 4
    head = json.dumps({"x": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, n]}}).encode()
    head += b" " * (-(len(head) + 8) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for i in range(0, rows, 65536):
            f.write(np.ascontiguousarray(x[i:i + 65536], dtype="<f4").tobytes())


def generate(rows, d, seed, start=0):
    """Seeded rows start..start+rows of a fixed source: 32 strong directions, noise, an offset."""
    import numpy as np

    basis = np.random.default_rng(1234).standard_normal((32, d)).astype(np.float32)
    scale = (np.arange(32, 0, -1, dtype=np.float32) / 8.0)[:, None]
    offset = np.linspace(-2.0, 2.0, d, dtype=np.float32)
    g = np.random.default_rng([seed, start])
    z = g.standard_normal((rows, 32), dtype=np.float32)
    x = z @ (basis * scale)
    x += 0.3 * g.standard_normal((rows, d), dtype=np.float32)
    x += offset
    return x


def part_tokens(a, res):
    import numpy as np

    src = DATA / "corpus_tokens.npz"
    if not src.exists():
        sys.exit(f"{src} is missing: write it with `repscope embed ... --tokens 3` (bench/README.md)")
    # A plain .npy copy for the numpy peers (np.load memory-maps .npy, not .npz members).
    npy = DATA / "corpus_tokens_l3.npy"
    if not npy.exists():
        np.save(npy, np.load(src)["tokens"])
    x = np.load(npy, mmap_mode="r")
    r = {"rows": x.shape[0], "cols": x.shape[1], "bytes": npy.stat().st_size}
    # Warm the page cache, then the read floor.
    buf = bytearray(64 << 20)
    for rep in range(2):
        t0 = time.perf_counter()
        with open(npy, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
        r["read_s"] = time.perf_counter() - t0
    gram = f"""
import numpy as np, time
x = np.load({str(npy)!r}, mmap_mode="r")
acc = np.zeros((x.shape[1], x.shape[1])); tc = tg = 0.0
for i in range(0, x.shape[0], 65536):
    t0 = time.perf_counter(); c = np.asarray(x[i:i + 65536], dtype=np.float64); t1 = time.perf_counter()
    acc += np.dot(c.T, c); tg += time.perf_counter() - t1; tc += t1 - t0
print(tg, tc)
"""
    _, _, out = py(gram, a.threads)
    r["gram_s"], r["convert_s"] = map(float, out.split())
    r["floor_s"] = max(r["read_s"], r["gram_s"])
    times, rss = [], []
    for _ in range(a.repeats):
        dt, m, doc = spectrum(a.repscope, [npy], a.threads)
        times.append(dt)
        rss.append(m)
    r["repscope_s"] = sorted(times)[len(times) // 2]
    r["repscope_rss_mib"] = max(rss)
    r["repscope_runs_s"] = times
    if a.baseline:
        dt, m, base = spectrum(a.baseline, [npy], a.threads)
        r["baseline_s"], r["baseline_rss_mib"] = dt, m
        r["baseline_max_rel_diff"] = max_rel(doc, base)
    dt, m, _ = py(f"""
import numpy as np
x = np.load({str(npy)!r}, mmap_mode="r")
c = np.cov(x, rowvar=False)
np.linalg.eigvalsh(c)
""", a.threads)
    r["np_cov_s"], r["np_cov_rss_mib"] = dt, m
    dt, m, _ = py(f"""
import numpy as np
from sklearn.decomposition import IncrementalPCA
x = np.load({str(npy)!r}, mmap_mode="r")
IncrementalPCA(n_components=x.shape[1], batch_size=65536).fit(x)
""", a.threads)
    r["ipca_s"], r["ipca_rss_mib"] = dt, m
    res["tokens"] = r


def part_same(a, res):
    import numpy as np

    d = 384
    rows = (2 << 30) // (4 * d)
    work = DATA / "stream_same"
    shutil.rmtree(work, ignore_errors=True)
    (work / "shards").mkdir(parents=True)
    whole = np.lib.format.open_memmap(work / "whole.npy", mode="w+", dtype=np.float32, shape=(rows, d))
    for i in range(0, rows, 262144):
        whole[i:i + 262144] = generate(min(262144, rows - i), d, 7, i)
    whole.flush()
    cuts = [0, 1, int(rows * 0.13) + 7, rows // 2, int(rows * 0.77) + 3, rows]
    for s, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        part = whole[lo:hi]
        if s % 2:
            write_safetensors(work / "shards" / f"part_{s}.safetensors", part)
        else:
            np.save(work / "shards" / f"part_{s}.npy", part)
    del whole
    docs = {}
    for name, paths in (("one file", [work / "whole.npy"]), ("five shards", [work / "shards"])):
        for t in (1, a.threads):
            docs[(name, t)] = spectrum(a.repscope, paths, t)[2]
    ref = docs[("one file", a.threads)]
    res["same"] = {"rows": rows, "cols": d, "bytes": rows * d * 4, "shard_rows": [hi - lo for lo, hi in zip(cuts, cuts[1:])],
                   "max_rel_diff": {f"{n}, {t} threads": max_rel(v, ref) for (n, t), v in docs.items()}}
    shutil.rmtree(work)


def part_big(a, res):
    import numpy as np

    d = 384
    shard_rows = (1 << 30) // (4 * d)
    shards = int(a.big_gb * (1 << 30) // (shard_rows * 4 * d))
    work = Path(a.big_dir) if a.big_dir else DATA / "stream_big"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        for s in range(shards):
            x = generate(shard_rows, d, 11, s * shard_rows)
            if s % 2:
                write_safetensors(work / f"shard_{s}.safetensors", x)
            else:
                np.save(work / f"shard_{s}.npy", x)
        gen = time.perf_counter() - t0
        total = sum(f.stat().st_size for f in work.iterdir())
        dt, rss, doc = spectrum(a.repscope, [work], a.threads)
        res["big"] = {"shards": shards, "rows": shards * shard_rows, "cols": d, "bytes": total,
                      "generate_s": gen, "repscope_s": dt, "repscope_rss_mib": rss,
                      "read_gb_per_s": total / dt / 1e9, "effective_rank": doc["effective_rank"]["value"],
                      "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-gb", type=float, default=30.0)
    ap.add_argument("--big-dir", default=None, help="where the big source is written (default bench/data)")
    ap.add_argument("--parts", nargs="*", default=["tokens", "same", "big"])
    ap.add_argument("--repscope", default=str(ROOT / "target" / "release" / "repscope"))
    ap.add_argument("--baseline", default=None, help="an earlier repscope binary, run on the token states")
    a = ap.parse_args()
    import numpy
    import sklearn

    OUT.mkdir(exist_ok=True)
    res = {"threads": a.threads, "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
           "date": time.strftime("%Y-%m-%d")}
    if "tokens" in a.parts:
        part_tokens(a, res)
    if "same" in a.parts:
        part_same(a, res)
    if "big" in a.parts and a.big_gb > 0:
        part_big(a, res)
    (OUT / "stream.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
