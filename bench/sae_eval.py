"""SAE evaluation speed, side by side in one run: `repscope sae eval` with AMX (where the CPU has it) and with
REPSCOPE_NO_AMX=1, against SAELens' encode/decode (bench/sae.py's `saelens_eval`), on the same SAE, held-out
rows and threads, in interleaved rounds. Medians, ratios, and the agreement of MSE and L0.

The SAE is the one `repscope sae train` writes with its defaults on bench/sae.py's training rows (trained here
into bench/out/sae_repscope if it is not there). Data as bench/sae.py: bench/data/corpus_tokens.npz.

Usage: bench/.venv-sae/bin/python bench/sae_eval.py [--threads 2] [--rounds 3]
Output: bench/out/sae_eval.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sae  # noqa: E402

ROOT = HERE.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=491_520)
    ap.add_argument("--repscope", default=str(ROOT / "target" / "release" / "repscope"))
    a = ap.parse_args()
    sae.OUT.mkdir(exist_ok=True)
    train, held = sae.prepare(a.tokens)
    folder = sae.OUT / "sae_repscope"
    if not (folder / "cfg.json").exists():
        subprocess.run([a.repscope, "sae", "train", str(train), "-o", str(folder), "--width", "6144", "-k", "32",
                        "--batch", "4096", "--seed", "0", "--threads", str(a.threads), "--force", "--quiet"],
                       check=True)
    times = {"repscope_amx": [], "repscope_no_amx": [], "saelens": []}
    docs = {}
    for _ in range(a.rounds):
        for name, extra in (("repscope_amx", {}), ("repscope_no_amx", {"REPSCOPE_NO_AMX": "1"})):
            p = subprocess.run([a.repscope, "sae", "eval", str(folder), str(held), "--threads", str(a.threads),
                                "--json", "--quiet"], capture_output=True, text=True, check=True,
                               env=dict(os.environ, **extra))
            docs[name] = json.loads(p.stdout)
            times[name].append(docs[name]["seconds"])
        st, sm, _ = sae.saelens_eval(folder, held, a.threads)
        times["saelens"].append(st)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = all(docs["repscope_amx"][k] == docs["repscope_no_amx"][k] for k in docs["repscope_amx"] if k != "seconds")
    res = {
        "threads": a.threads,
        "rows": docs["repscope_amx"]["rows"],
        "median_seconds": med,
        "ratio_saelens_over_repscope_amx": med["saelens"] / med["repscope_amx"],
        "ratio_saelens_over_repscope_no_amx": med["saelens"] / med["repscope_no_amx"],
        "amx_and_no_amx_documents_equal_but_seconds": same,
        "mse": {"repscope": docs["repscope_amx"]["mse"], "saelens": sm["mse"]},
        "l0": {"repscope": docs["repscope_amx"]["l0"], "saelens": sm["l0"]},
        "rounds": times,
    }
    (sae.OUT / "sae_eval.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
