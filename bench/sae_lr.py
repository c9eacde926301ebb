"""Held-out FVU against the learning rate: repscope and SAELens on the same rows, tokens, width, k, batch and
threads, side by side in one run.

The two trainers parametrise the SAE differently, so one learning rate does not mean the same step size:
repscope keeps unit-norm decoder rows (and starts the encoder at their transpose), SAELens starts decoder rows
at norm 0.1 and rescales by the decoder norm at run time, so an Adam step of the same size turns its rows about
ten times further. This script sweeps each side's learning rate over the same grid and reports every held-out
FVU, so the comparison can be read at each side's default and at each side's best.

Data and set-up as bench/sae.py (MiniLM layer-3 token states, 491,520 training rows, width 6,144, k = 32,
batch 4,096). Every held-out FVU is computed by `repscope sae eval` (it equals float64 numpy's FVU of the
same reconstructions, checked in bench/sae.py).

Usage: bench/.venv-sae/bin/python bench/sae_lr.py [--threads 2] [--repscope-lrs default 1e-3 ...]
       [--saelens-lrs 3e-4 ...] [--extra="--no-normalize ..."] [--saelens-decoder-init-norm 1.0] [--seed 0]
       [--passes 1]
Output: bench/out/sae_lr.json.
"""

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sae as bench  # noqa: E402

OUT = bench.OUT
ROOT = bench.ROOT


def heldout(repscope, folder, held, threads):
    _, _, out = bench.run([repscope, "sae", "eval", str(folder), str(held), "--threads", str(threads),
                           "--json", "--quiet"])
    r = json.loads(out)
    return {"fvu": r["fvu"], "l0": r["l0"], "dead": r["dead_latents"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="repscope's training seed")
    ap.add_argument("--tokens", type=int, default=491_520, help="training rows (the rest is held out)")
    ap.add_argument("--passes", type=int, default=1, help="passes over the training rows, on both sides")
    ap.add_argument("--width", type=int, default=6144)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repscope", default=str(ROOT / "target" / "release" / "repscope"))
    ap.add_argument("--repscope-lrs", nargs="*", default=["default", "1e-3", "3e-3", "1e-2"])
    ap.add_argument("--saelens-lrs", nargs="*", default=["1e-4", "3e-4", "1e-3", "3e-3"])
    ap.add_argument("--extra", default="", help="extra repscope sae train flags for every run, one string")
    ap.add_argument("--saelens-decoder-init-norm", type=float, default=0.1,
                    help="SAELens' decoder_init_norm (its default 0.1; 1.0 starts at unit-norm rows, as repscope)")
    a = ap.parse_args()
    import sae_lens

    OUT.mkdir(exist_ok=True)
    train, held = bench.prepare(a.tokens)
    drawn = a.passes * a.tokens
    res = {"threads": a.threads, "tokens": a.tokens, "passes": a.passes, "width": a.width, "k": a.k, "batch": a.batch,
           "sae_lens": sae_lens.__version__, "extra": a.extra,
           "saelens_decoder_init_norm": a.saelens_decoder_init_norm, "repscope": {}, "saelens": {}}
    for lr in a.repscope_lrs:
        folder = OUT / "sae_lr_repscope"
        cmd = [a.repscope, "sae", "train", str(train), "-o", str(folder), "--width", str(a.width), "-k", str(a.k),
               "--batch", str(a.batch), "--seed", str(a.seed), "--threads", str(a.threads), "--tokens", str(drawn),
               "--force", "--json", "--quiet",
               *a.extra.split()]
        if lr != "default":
            cmd += ["--lr", lr]
        _, _, out = bench.run(cmd)
        doc = json.loads(out)
        res["repscope"][lr] = {"lr": doc["summary"]["lr"], **heldout(a.repscope, folder, held, a.threads)}
        print("repscope", lr, res["repscope"][lr], flush=True)
    for lr in a.saelens_lrs:
        folder = OUT / "sae_lr_saelens"
        bench.saelens_train(train, folder, a.width, a.k, a.batch, drawn, a.threads, lr=float(lr),
                            decoder_init_norm=a.saelens_decoder_init_norm)
        res["saelens"][lr] = heldout(a.repscope, folder, held, a.threads)
        print("saelens", lr, res["saelens"][lr], flush=True)
    (OUT / "sae_lr.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("RAYON_NUM_THREADS", "2")
    main()
