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
   The same for `compare -m cka_linear,cka_linear_debiased,cca,procrustes` against a 96-wide second
   view of the rows, and for `classes` with labels of every row (one file beside the shards).
3. big (--big-gb, default 30; 0 skips): a seeded source larger than this machine's memory, in shards of
   two formats (.npy and .safetensors), a 96-wide second view of the same rows (shards) and a label per row:
   time and peak RSS of `repscope spectrum`, `activations`, `compare -m cka_linear` and `classes`; the
   data is deleted after.

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
        out[k] = (doc.get(k) or {}).get("value")  # no coding rate without --coding-rate
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


def view(x):
    """A 96-wide second representation of the rows x: a fixed nonlinear map of x plus noise."""
    import numpy as np

    w = (np.random.default_rng(99).standard_normal((x.shape[1], 96)) / np.sqrt(x.shape[1])).astype(np.float32)
    y = np.tanh(x @ w)
    y += 0.1 * np.random.default_rng([99, int(abs(x[0, 0]) * 1e6)]).standard_normal(y.shape, dtype=np.float32)
    return y


def label(x):
    """Eight classes: the largest of the first eight columns (after the offset)."""
    import numpy as np

    return np.argmax(x[:, :8] - np.linspace(-2.0, 2.0, x.shape[1], dtype=np.float32)[:8], axis=1).astype(np.int32)


def numbers_of(cmd, doc):
    """The numbers of a document of `cmd`, flat, by name."""
    if cmd == "spectrum":
        return numbers(doc)
    if cmd == "compare":
        return dict(doc["measures"])
    nc = doc["neural_collapse"]
    out = {k: nc[k] for k in ("nc1", "nc2_equinorm", "nc2_equiangularity", "nc2_max_angle")}
    out.update(cdnv=doc["cdnv"], ncc_accuracy=doc["ncc_accuracy"])
    return out


def max_rel_of(cmd, a, b):
    worst = 0.0
    x, y = numbers_of(cmd, a), numbers_of(cmd, b)
    for k, v in x.items():
        if isinstance(v, list):
            worst = max(worst, max(abs(p - q) for p, q in zip(v, y[k])))
        elif v is not None:
            worst = max(worst, abs(v - y[k]) / max(abs(y[k]), 1e-300))
    return worst


def command(repscope, cmd, paths, threads, extra=()):
    dt, rss, out = run([repscope, cmd, *map(str, paths), "--threads", str(threads), "--json", "-q", *extra])
    return dt, rss, json.loads(out)


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
    # The floor, the default spectrum (one d x d product), the spectrum with the coding rate (`--coding-rate`:
    # a second product) and with the duplicate search in turn, `repeats` times: each ratio is taken against
    # the floor of its own round, since the machine is shared and its speed drifts between rounds.
    med = lambda v: sorted(v)[len(v) // 2]
    rounds = []
    for _ in range(a.repeats):
        _, _, out = py(gram, a.threads)
        g, c = map(float, out.split())
        dt, m, lean = spectrum(a.repscope, [npy], a.threads)
        dt2, m2, doc = spectrum(a.repscope, [npy], a.threads, ["--coding-rate"])
        # The same with the duplicate search (a hash per row in the pass, then the rows whose hash repeats).
        dt3, m3, dup = spectrum(a.repscope, [npy], a.threads, ["--duplicates"])
        rounds.append({"gram_s": g, "convert_s": c, "spectrum_s": dt, "spectrum_rss_mib": m,
                       "coding_rate_s": dt2, "coding_rate_rss_mib": m2,
                       "duplicates_s": dt3, "duplicates_rss_mib": m3})
    r["rounds"] = rounds
    r["gram_s"] = med([x["gram_s"] for x in rounds])
    r["convert_s"] = med([x["convert_s"] for x in rounds])
    r["floor_s"] = max(r["read_s"], r["gram_s"])
    floor = lambda x: max(r["read_s"], x["gram_s"])
    for name in ("spectrum", "coding_rate", "duplicates"):
        r[f"{name}_s"] = med([x[f"{name}_s"] for x in rounds])
        r[f"{name}_rss_mib"] = max(x[f"{name}_rss_mib"] for x in rounds)
        r[f"{name}_ratio_to_floor"] = med([x[f"{name}_s"] / floor(x) for x in rounds])
    r["duplicates"] = {k: v for k, v in dup["duplicates"].items() if k != "largest"}
    r["duplicates_max_rel_diff"] = max_rel(lean, dup)
    # Every other number is the same with the coding rate.
    r["coding_rate_max_rel_diff"] = max_rel({k: v for k, v in doc.items() if k != "coding_rate"},
                                            {k: v for k, v in lean.items() if k != "coding_rate"})
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
    y = np.lib.format.open_memmap(work / "view.npy", mode="w+", dtype=np.float32, shape=(rows, 96))
    labels = np.empty(rows, dtype=np.int32)
    for i in range(0, rows, 262144):
        y[i:i + 262144] = view(whole[i:i + 262144])
        labels[i:i + 262144] = label(whole[i:i + 262144])
    y.flush()
    np.save(work / "labels.npy", labels)
    (work / "view_shards").mkdir()
    vcuts = [0, rows // 3, rows // 3 + 1, rows]
    for s, (lo, hi) in enumerate(zip(vcuts, vcuts[1:])):
        np.save(work / "view_shards" / f"v_{s}.npy", y[lo:hi])
    del whole, y
    measures = ["-m", "cka_linear,cka_linear_debiased,cca,procrustes", "--stream"]
    cases = {
        "spectrum": ((), ()),
        "compare": ((work / "view.npy",), measures),
        "classes": ((), ("--labels", work / "labels.npy", "--knn-sample", "5000")),
    }
    out = {"rows": rows, "cols": d, "bytes": rows * d * 4, "shard_rows": [hi - lo for lo, hi in zip(cuts, cuts[1:])]}
    for cmd, (after, extra) in cases.items():
        docs = {}
        for name, paths in (("one file", [work / "whole.npy"]), ("five shards", [work / "shards"])):
            tail = after if name == "one file" or not after else (work / "view_shards",)
            for t in (1, a.threads):
                docs[(name, t)] = command(a.repscope, cmd, [*paths, *tail], t, extra)[2]
        ref = docs[("one file", a.threads)]
        out[cmd] = {f"{n}, {t} threads": max_rel_of(cmd, v, ref) for (n, t), v in docs.items()}
    res["same"] = out
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
        (work / "x").mkdir()
        (work / "y").mkdir()
        labels = np.empty(shards * shard_rows, dtype=np.int32)
        for s in range(shards):
            x = generate(shard_rows, d, 11, s * shard_rows)
            if s % 2:
                write_safetensors(work / "x" / f"shard_{s}.safetensors", x)
            else:
                np.save(work / "x" / f"shard_{s}.npy", x)
            np.save(work / "y" / f"view_{s}.npy", view(x))
            labels[s * shard_rows:(s + 1) * shard_rows] = label(x)
        np.save(work / "labels.npy", labels)
        del labels
        gen = time.perf_counter() - t0
        total = sum(f.stat().st_size for f in (work / "x").iterdir())
        big = {"shards": shards, "rows": shards * shard_rows, "cols": d, "bytes": total,
               "view_bytes": sum(f.stat().st_size for f in (work / "y").iterdir()), "generate_s": gen,
               "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)}
        runs = {
            "spectrum": ([work / "x"], ()),
            "activations": ([work / "x"], ()),
            "compare": ([work / "x", work / "y"], ("-m", "cka_linear")),
            "classes": ([work / "x"], ("--labels", work / "labels.npy")),
        }
        for cmd, (paths, extra) in runs.items():
            if cmd not in a.big_commands:
                continue
            dt, rss, doc = command(a.repscope, cmd, paths, a.threads, extra)
            big[cmd] = {"s": dt, "rss_mib": rss, "read_gb_per_s": total / dt / 1e9}
            if cmd == "spectrum":
                big[cmd]["effective_rank"] = doc["effective_rank"]["value"]
            if cmd == "compare":
                big[cmd]["cka_linear"] = doc["measures"]["cka_linear"]
            if cmd == "classes":
                big[cmd]["nc1"] = doc["neural_collapse"]["nc1"]
                big[cmd]["knn_rows"] = doc["knn_accuracy"]["rows"]
        res["big"] = big
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-gb", type=float, default=30.0)
    ap.add_argument("--big-dir", default=None, help="where the big source is written (default bench/data)")
    ap.add_argument("--parts", nargs="*", default=["tokens", "same", "big"])
    ap.add_argument("--big-commands", nargs="*", default=["spectrum", "activations", "compare", "classes"],
                    help="the commands the big part times (default all four)")
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
