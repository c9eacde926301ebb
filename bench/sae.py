"""SAE training and evaluation, repscope against SAELens on the CPU, side by side in one run.

Data: MiniLM layer-3 token states of the whole corpus (bench/data/corpus_tokens.npz, written by
`repscope embed ... --tokens 3`), shuffled once with seed 0, split into 491,520 training rows (120 batches of
4,096) and the rest held out.

Both train a TopK SAE with width 6,144, k = 32, batch 4,096 on the same rows with the same threads:
- SAELens 6.54 `SAETrainer` with its defaults (Adam 3e-4 constant, AuxK coefficient 1, decoder-norm rescaling);
- `repscope sae train` with its defaults (Adam 2e-4/sqrt(width/2^14) with warm-up and decay, AuxK 1/32,
  unit-norm decoder, geometric-median b_dec, inputs scaled to mean norm sqrt(d) and folded back).

Then, on the held-out rows:
- held-out FVU of both SAEs, computed by one definition (float64 numpy);
- evaluation speed: `repscope sae eval` against SAELens' encode/decode with the same metrics;
- equal numbers: repscope's MSE and L0 of SAELens' SAE against SAELens' own;
- round trip: SAELens loads repscope's folder, and its codes match `repscope sae encode`.

Usage: bash bench/setup_venv_sae.sh && bench/.venv-sae/bin/python bench/sae.py [--threads 2] [--tokens 491520]
Output: bench/out/sae.json.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
OUT = HERE / "out"


def prepare(tokens):
    import numpy as np

    train, held = DATA / f"sae_train_{tokens}.npy", DATA / f"sae_heldout_{tokens}.npy"
    if not (train.exists() and held.exists()):
        z = np.load(DATA / "corpus_tokens.npz")
        x = z["tokens"]
        perm = np.random.default_rng(0).permutation(len(x))
        np.save(train, np.ascontiguousarray(x[perm[:tokens]], dtype=np.float32))
        np.save(held, np.ascontiguousarray(x[perm[tokens:]], dtype=np.float32))
    return train, held


def run(cmd, env=None):
    """Runs a command (with the environment `env`, if given); returns (seconds, peak RSS in MiB, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, check=False, env=env
    )
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    rss = int(p.stderr.strip().splitlines()[-1]) / 1024
    return dt, rss, p.stdout


def fvu(x, xh):
    import numpy as np

    x = x.astype(np.float64)
    xh = xh.astype(np.float64)
    return float(((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def saelens_train(train_path, out_dir, width, k, batch, tokens, threads, lr=3e-4, decoder_init_norm=0.1):
    """SAELens' trainer on the training rows; saves the inference SAE to out_dir. Run in a subprocess so that
    its peak RSS is its own."""
    code = f"""
import time, numpy as np, torch
torch.set_num_threads({threads}); torch.manual_seed(0)
from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig, LoggingConfig
from sae_lens.config import SAETrainerConfig
x = torch.from_numpy(np.load({str(train_path)!r}))
def batches():
    g = torch.Generator().manual_seed(0)
    while True:
        for idx in torch.randperm(len(x), generator=g).split({batch}):
            if len(idx) == {batch}:
                yield x[idx]
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=x.shape[1], d_sae={width}, k={k}, decoder_init_norm={decoder_init_norm}))
cfg = SAETrainerConfig(total_training_samples={tokens}, train_batch_size_samples={batch}, lr={lr}, lr_end={lr},
                       logger=LoggingConfig(log_to_wandb=False))
t0 = time.perf_counter()
SAETrainer(cfg, sae, batches()).fit()
print("TRAIN_SECONDS", time.perf_counter() - t0)
sae.save_inference_model({str(out_dir)!r})
"""
    dt, rss, out = run([sys.executable, "-c", code])
    secs = float([l for l in out.splitlines() if l.startswith("TRAIN_SECONDS")][0].split()[1])
    return secs, rss


def saelens_eval(sae_dir, held_path, threads, batch=4096):
    """SAELens' encode/decode over the held-out rows with the same activation-only metrics; returns
    (seconds, metrics, reconstructions)."""
    import numpy as np
    import torch
    from sae_lens import SAE

    torch.set_num_threads(threads)
    sae = SAE.load_from_disk(str(sae_dir))
    x = torch.from_numpy(np.load(held_path))
    t0 = time.perf_counter()
    err = tot_l0 = 0.0
    recon = []
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.int64)
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = x[s : s + batch]
            f = sae.encode(xb)
            xh = sae.decode(f)
            err += float(((xh - xb) ** 2).double().sum())
            tot_l0 += float((f > 0).sum())
            fired += (f > 0).sum(0)
            recon.append(xh.numpy())
    dt = time.perf_counter() - t0
    n, d = x.shape
    return dt, {"mse": err / (n * d), "l0": tot_l0 / n, "dead": int((fired == 0).sum())}, np.concatenate(recon)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=491_520)
    ap.add_argument("--width", type=int, default=6144)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repscope", default=str(ROOT / "target" / "release" / "repscope"))
    ap.add_argument("--skip-saelens-train", action="store_true")
    a = ap.parse_args()
    import numpy as np
    import torch
    import sae_lens
    from sae_lens import SAE

    OUT.mkdir(exist_ok=True)
    train, held = prepare(a.tokens)
    rs_dir, sl_dir = OUT / "sae_repscope", OUT / "sae_saelens"
    res = {
        "threads": a.threads,
        "tokens": a.tokens,
        "width": a.width,
        "k": a.k,
        "batch": a.batch,
        "sae_lens": sae_lens.__version__,
        "torch": torch.__version__,
    }
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    # repscope train.
    t, rss, out = run(
        [a.repscope, "sae", "train", str(train), "-o", str(rs_dir), "--width", str(a.width), "-k", str(a.k),
         "--batch", str(a.batch), "--seed", "0", "--threads", str(a.threads), "--force", "--json", "--quiet"]
    )
    doc = json.loads(out)
    res["repscope_train"] = {"seconds_wall": t, "tokens_per_s": doc["tokens_per_second"], "peak_rss_mib": rss}
    # SAELens train.
    if not a.skip_saelens_train:
        secs, rss = saelens_train(train, sl_dir, a.width, a.k, a.batch, a.tokens, a.threads)
        res["saelens_train"] = {"seconds": secs, "tokens_per_s": a.tokens / secs, "peak_rss_mib": rss}
        res["train_speed_ratio"] = res["repscope_train"]["tokens_per_s"] / res["saelens_train"]["tokens_per_s"]
    x_held = np.load(held)
    # Evaluation of both SAEs on the held-out rows: repscope's eval, SAELens' encode/decode.
    evals = {}
    for name, folder in [("repscope_sae", rs_dir), ("saelens_sae", sl_dir)]:
        t, rss, out = run([a.repscope, "sae", "eval", str(folder), str(held), "--threads", str(a.threads),
                           "--json", "--quiet"])
        r = json.loads(out)
        st, sm, recon = saelens_eval(folder, held, a.threads)
        evals[name] = {
            "repscope_eval": {"seconds_wall": t, "seconds": r["seconds"], "fvu": r["fvu"], "mse": r["mse"],
                              "l0": r["l0"], "dead": r["dead_latents"], "peak_rss_mib": rss},
            "saelens_eval": {"seconds": st, **sm, "fvu_numpy_f64": fvu(x_held, recon)},
            "mse_rel_diff": abs(r["mse"] - sm["mse"]) / sm["mse"],
            "l0_diff": abs(r["l0"] - sm["l0"]),
            "eval_speed_ratio": st / r["seconds"],
        }
    res["eval"] = evals
    (OUT / "sae.json").write_text(json.dumps(res, indent=2) + "\n")
    # Round trip: SAELens' codes of repscope's SAE against repscope's own.
    t, rss, out = run([a.repscope, "sae", "encode", str(rs_dir), str(held), "-o", str(OUT / "sae_codes.npz"),
                       "--threads", str(a.threads), "--force", "--json", "--quiet"])
    z = np.load(OUT / "sae_codes.npz")
    indptr, indices, values = z["indptr"], z["indices"], z["values"]
    n = len(x_held)
    sae = SAE.load_from_disk(str(rs_dir))
    worst = 0.0
    differ = 0
    worst_gap = 0.0
    with torch.no_grad():
        for s in range(0, n, 4096):
            xb = torch.from_numpy(x_held[s : s + 4096])
            f = sae.encode(xb).numpy()
            pre = (sae.process_sae_in(xb) @ sae.W_enc + sae.b_enc).numpy()
            mine = np.zeros_like(f)
            for r in range(f.shape[0]):
                a0, a1 = indptr[s + r], indptr[s + r + 1]
                mine[r, indices[a0:a1]] = values[a0:a1]
            scale = np.abs(f).max(1) + 1e-30
            same = ((f > 0) == (mine > 0)).all(1)
            differ += int((~same).sum())
            if same.any():
                worst = max(worst, float((np.abs(f - mine)[same] / scale[same, None]).max()))
            for r in np.where(~same)[0]:
                # A different selection must sit on a near-tie: the k-th and (k+1)-th pre-activations.
                top = np.sort(pre[r])[::-1]
                worst_gap = max(worst_gap, float((top[a.k - 1] - top[a.k]) / scale[r]))
    res["round_trip"] = {
        "rows": n,
        "rows_with_another_selection": differ,
        "max_rel_diff_same_selection": worst,
        "max_rel_gap_at_kth_where_selection_differs": worst_gap,
    }
    (OUT / "sae.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
