#!/usr/bin/env python3
"""Side-by-side benchmark of `repscope embed` on a decoder against transformers' forward pass on the CPU.

The model is GPT-2 small's shape (12 layers, 768 wide, 12 heads, 50,257 tokens, 1,024 positions: 124M
parameters) with transformers' own seeded random initialisation, saved once to bench/out/gpt2-124m-random
with a byte-level BPE tokenizer trained on the corpus (GPT2Tokenizer class). Both sides run the same texts
(default: the text column of the first 2,000 rows of corpus.tsv) with the same batch size and threads, each
in a fresh child process so that peak RSS (ru_maxrss from os.wait4) never mixes:

- transformers: AutoTokenizer + AutoModel, torch.set_num_threads(T), texts sorted by length (as repscope
  does) and run in batches of B with right padding and the attention mask, model(**batch,
  output_hidden_states=True); tokenisation and forward are timed, model load apart;
- repscope: `repscope embed --model DIR --input texts.txt --layers -o out.npz --batch-size B --threads T`
  (every layer's state, pooled at the last token); the time is the command's timing.embed_s.

Rounds are interleaved (--repeats, default 3) and medians reported. Both sides' last-token final states are
compared. Prints a markdown table and writes bench/out/decoder.json.

Usage: bash bench/setup_venv_embed.sh && cargo build --release --bin repscope &&
       bench/.venv-embed/bin/python bench/decoder.py [--corpus PATH] [--n 2000] [--batch-size 32] [--threads 2]
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from embed import BIN, OUT, ROOT, run_child  # noqa: E402

MODEL_DIR = os.path.join(OUT, "gpt2-124m-random")

TF_CHILD = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
tok.pad_token = tok.eos_token
tok.padding_side = "right"
model = AutoModel.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
texts = open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]
bs = int(sys.argv[4])
t1 = time.perf_counter()
lens = [len(ids) for ids in tok(texts)["input_ids"]]
order = sorted(range(len(texts)), key=lambda i: -lens[i])
out = [None] * len(texts)
tokens = 0
with torch.inference_mode():
    for s in range(0, len(order), bs):
        idx = order[s:s + bs]
        batch = tok([texts[i] for i in idx], return_tensors="pt", padding=True)
        hs = model(**batch, output_hidden_states=True).hidden_states
        n = batch["attention_mask"].sum(1)
        tokens += int(n.sum())
        for r, i in enumerate(idx):
            out[i] = hs[-1][r, n[r] - 1].numpy().copy()
t2 = time.perf_counter()
np.save(sys.argv[5], np.stack(out).astype(np.float32))
import transformers
print(json.dumps({"load_s": t1 - t0, "embed_s": t2 - t1, "n": len(texts), "tokens": tokens,
                  "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                  "transformers": transformers.__version__}))
"""


def make_model(texts):
    """GPT-2 small's shape with transformers' seeded random init, and a BPE tokenizer trained on `texts`."""
    if os.path.isfile(os.path.join(MODEL_DIR, "model.safetensors")):
        return
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model = GPT2Model(GPT2Config())
    os.makedirs(MODEL_DIR, exist_ok=True)
    model.save_pretrained(MODEL_DIR)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=16384, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.save_pretrained(MODEL_DIR)
    cfg_path = os.path.join(MODEL_DIR, "tokenizer_config.json")
    cfg = json.load(open(cfg_path))
    cfg["tokenizer_class"] = "GPT2Tokenizer"
    json.dump(cfg, open(cfg_path, "w"), indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "data", "corpus.tsv"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    all_texts = []
    with open(a.corpus, encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            all_texts.append(row[-1])
    make_model(all_texts)
    texts = all_texts[: a.n]
    tmp = tempfile.mkdtemp(prefix="repscope-bench-decoder-")
    binary = os.path.join(tmp, "repscope")
    shutil.copy2(BIN, binary)
    tpath = os.path.join(tmp, "texts.txt")
    with open(tpath, "w", encoding="utf-8") as f:
        f.write("\n".join(t.replace("\n", " ") for t in texts) + "\n")

    t = str(a.threads)
    env = {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t,
           "RAYON_NUM_THREADS": t, "TOKENIZERS_PARALLELISM": "true"}
    tf_out = os.path.join(tmp, "tf.npy")
    rs_out = os.path.join(tmp, "rs.npz")
    runs = {"transformers": [], "repscope": []}
    for r in range(a.repeats):
        for side in ("transformers", "repscope"):
            if side == "transformers":
                cmd = [sys.executable, "-c", TF_CHILD, MODEL_DIR, tpath, t, str(a.batch_size), tf_out]
            else:
                cmd = [binary, "embed", "--model", MODEL_DIR, "--input", tpath, "--layers", "-o", rs_out,
                       "--force", "--batch-size", str(a.batch_size), "--threads", t, "--quiet", "--json"]
            out, wall, rss = run_child(cmd, env)
            info = json.loads(out)
            if side == "transformers":
                embed_s, load_s, tokens = info["embed_s"], info["load_s"], info["tokens"]
            else:
                embed_s, load_s = info["timing"]["embed_s"], info["timing"]["load_s"]
                tokens = info["tokens"]["total"]
            rec = {"round": r, "embed_s": embed_s, "load_s": load_s, "wall_s": wall, "peak_rss_mib": rss,
                   "tokens": tokens, "tokens_per_s": tokens / embed_s}
            if side == "transformers":
                rec["versions"] = {k: info[k] for k in ("torch", "torch_threads", "transformers")}
            runs[side].append(rec)
            print(f"round {r} {side:>12}: {rec['tokens_per_s']:8.0f} tokens/s  {embed_s:6.2f} s  "
                  f"wall {wall:6.2f} s  peak RSS {rss:7.1f} MiB", file=sys.stderr)

    tf = np.load(tf_out)
    rs = np.load(rs_out)["embedding"]
    diff = float(np.abs(tf - rs).max())

    def med(side, key):
        return float(np.median([x[key] for x in runs[side]]))

    ratios = [b["tokens_per_s"] / s["tokens_per_s"] for s, b in zip(runs["transformers"], runs["repscope"])]
    result = {
        "n": len(texts), "batch_size": a.batch_size, "threads": a.threads, "repeats": a.repeats,
        "model": "GPT-2 small shape, random (transformers' init, seed 0)", "corpus": a.corpus, "runs": runs,
        "versions": runs["transformers"][0]["versions"], "ratio_per_round": ratios,
        "ratio_median": float(np.median(ratios)), "max_abs_diff_last_token": diff,
        "tokens_equal": runs["transformers"][0]["tokens"] == runs["repscope"][0]["tokens"],
    }
    with open(os.path.join(OUT, "decoder.json"), "w") as f:
        json.dump(result, f, indent=1)
    v = result["versions"]
    print(f"{len(texts)} texts ({runs['repscope'][0]['tokens']} tokens), batch {a.batch_size}, {a.threads} threads, "
          f"{a.repeats} interleaved rounds (medians); transformers {v['transformers']}, torch {v['torch']}\n")
    print("| side | tokens/s | forward s | model load s | process wall s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for side in ("transformers", "repscope"):
        print(f"| {side} | {med(side, 'tokens_per_s'):.0f} | {med(side, 'embed_s'):.2f} | {med(side, 'load_s'):.2f} "
              f"| {med(side, 'wall_s'):.2f} | {med(side, 'peak_rss_mib'):.0f} |")
    print("\nspeed ratio repscope / transformers (tokens/s, per round): " + ", ".join(f"{x:.2f}" for x in ratios)
          + f"; median {result['ratio_median']:.2f}")
    print(f"agreement: last-token final state max |diff| {diff:.2e}; token counts equal: {result['tokens_equal']}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
