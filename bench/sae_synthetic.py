"""Dictionary recovery in superposition: repscope and SAELens trained on the same planted data, side by side.

Data: 4·d unit features in d = 64 dimensions (random, not orthogonal: superposition), each firing with
probability p (magnitude uniform in (0, 1]), seeded. Both train a TopK SAE of width 4·d with the same k,
batch, rows and threads. Reported: MMCS (mean over true features of the largest cosine with a decoder row),
MCC (Hungarian-matched mean cosine, scipy), held-out FVU, and training seconds.

Usage: bench/.venv-sae/bin/python bench/sae_synthetic.py [--threads 2] [--seeds 0 1 2]
Output: bench/out/sae_synthetic.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"


def planted(rows, d, n, p, seed):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, d))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    fire = rng.random((rows, n)) < p
    mags = 1.0 - rng.random((rows, n))
    return ((fire * mags) @ f).astype(np.float32), f


def scores(features, w_dec, x_held, recon):
    from scipy.optimize import linear_sum_assignment

    dec = w_dec / np.maximum(np.linalg.norm(w_dec, axis=1, keepdims=True), 1e-30)
    cos = features @ dec.T
    r, c = linear_sum_assignment(-cos)
    fvu = float(((x_held - recon) ** 2).sum() / ((x_held - x_held.mean(0)) ** 2).sum())
    return {"mmcs": float(cos.max(1).mean()), "mcc": float(cos[r, c].mean()), "heldout_fvu": fvu}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--rows", type=int, default=262_144)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repscope", default=str(ROOT / "target" / "release" / "repscope"))
    a = ap.parse_args()
    import torch
    from sae_lens import SAE, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig, LoggingConfig
    from sae_lens.config import SAETrainerConfig

    torch.set_num_threads(a.threads)
    OUT.mkdir(exist_ok=True)
    d, n = a.d, 4 * a.d
    p = a.k / (2 * n)  # k/2 features active per row on average
    runs = []
    for seed in a.seeds:
        x, feats = planted(a.rows + 16384, d, n, p, seed)
        train, held = x[: a.rows], x[a.rows :]
        path = OUT / f"synthetic_{seed}.npy"
        np.save(path, train)
        # repscope.
        folder = OUT / f"synthetic_repscope_{seed}"
        t0 = time.perf_counter()
        subprocess.run([a.repscope, "sae", "train", str(path), "-o", str(folder), "--width", str(n), "-k",
                        str(a.k), "--batch", str(a.batch), "--seed", str(seed), "--threads", str(a.threads),
                        "--force", "--quiet"], check=True)
        t_rs = time.perf_counter() - t0
        rs = SAE.load_from_disk(str(folder))
        # SAELens, with its defaults.
        torch.manual_seed(seed)
        xt = torch.from_numpy(train)

        def batches():
            g = torch.Generator().manual_seed(seed)
            while True:
                for idx in torch.randperm(len(xt), generator=g).split(a.batch):
                    if len(idx) == a.batch:
                        yield xt[idx]

        sl = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=n, k=a.k))
        cfg = SAETrainerConfig(total_training_samples=a.rows, train_batch_size_samples=a.batch, lr=3e-4,
                               lr_end=3e-4, logger=LoggingConfig(log_to_wandb=False))
        t0 = time.perf_counter()
        SAETrainer(cfg, sl, batches()).fit()
        t_sl = time.perf_counter() - t0
        sl_folder = OUT / f"synthetic_saelens_{seed}"
        sl.save_inference_model(str(sl_folder))
        sl = SAE.load_from_disk(str(sl_folder))
        out = {"seed": seed}
        for name, sae, secs in [("repscope", rs, t_rs), ("saelens", sl, t_sl)]:
            with torch.no_grad():
                w = sae.W_dec.numpy()
                if sae.cfg.__dict__.get("rescale_acts_by_decoder_norm"):
                    w = w / np.linalg.norm(w, axis=1, keepdims=True)
                recon = sae.decode(sae.encode(torch.from_numpy(held))).numpy()
            out[name] = {**scores(feats, w, held, recon), "train_seconds": secs}
        runs.append(out)
        print(json.dumps(out), file=sys.stderr)
    mean = lambda who, key: float(np.mean([r[who][key] for r in runs]))  # noqa: E731
    res = {
        "d": d, "features": n, "width": n, "k": a.k, "p": p, "rows": a.rows, "batch": a.batch,
        "threads": a.threads, "runs": runs,
        "mean": {who: {key: mean(who, key) for key in ("mmcs", "mcc", "heldout_fvu", "train_seconds")}
                 for who in ("repscope", "saelens")},
    }
    (OUT / "sae_synthetic.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["mean"], indent=2))


if __name__ == "__main__":
    main()
