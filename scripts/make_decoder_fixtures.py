"""Writes the decoder-model fixtures of tests/fixtures/decoders with transformers itself: tiny models of each
decoder family repscope runs (GPT-2, GPT-NeoX in both residual layouts, Llama, Mistral, Qwen2, Qwen3, Gemma,
Gemma 2, Gemma 3 text), with
seeded random weights, their tokenizers, and what transformers computes on a set of texts.

Each folder is a Hugging Face model folder (config.json, model.safetensors or sharded safetensors with
model.safetensors.index.json, tokenizer.json, tokenizer_config.json) plus reference.safetensors:
- ids (int64): every text's token ids, as transformers' AutoTokenizer gives them, concatenated;
- offsets (int64): text i owns ids[offsets[i]:offsets[i + 1]];
- hidden (float32, (L + 1) x tokens x hidden): output_hidden_states of AutoModel, text by text;
- mlp (float32, tokens x intermediate): the input of the first block's MLP output projection (the
  post-activation MLP hidden state).
and texts.json (the texts, in order).

GPT-2, the serial GPT-NeoX and Mistral are saved from their causal-LM classes (prefixed tensor names and an LM
head, as downloaded folders are); the others from the base model. The configurations exercise every option the decoder pass reads: learned and rotary positions, partial rotary
dimensions, parallel and serial residuals, grouped-query and multi-query attention, sliding windows, the
llama3, yarn and linear rope scalings, q/k/v biases, gated and plain MLPs, RMSNorm with and without the
(1 + w) scale, tied and untied embeddings, bf16 weights and sharded weights; Gemma 2's norms after attention
and after the MLP, its soft-capped scores (the cap set low enough to bite), query_pre_attn_scalar and
alternating sliding windows; Qwen3's per-head query and key norms with a head width other than hidden / heads;
Gemma 3's (1 + w) query and key norms and its two rotary embeddings (a linear-scaled one on the full layers, a
default one of another base on the sliding ones); a multimodal Gemma 3 folder (text_config, a tiny vision tower,
the language model's tensors under language_model.model.), whose references are the text model's states.

The tokenizers are trained here on the test texts: byte-level BPE (GPT-2, NeoX, Qwen2) and SentencePiece-style
BPE with byte fallback and a BOS template (Llama, Mistral, Gemma).

Run once with the embed bench venv (bash bench/setup_venv_embed.sh):
    bench/.venv-embed/bin/python scripts/make_decoder_fixtures.py [NAME ...]
(names: only those folders are rewritten; none: every folder and tokenizer_variants.json).
The tests read only the files written here; they never run transformers.
"""

import csv
import json
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "decoders"
VOCAB = 512


def training_texts():
    rows = []
    with open(ROOT / "tests/fixtures/embed/corpus_32.tsv", encoding="utf-8") as f:
        for r in csv.reader(f, delimiter="\t"):
            rows.append(r[-1])
    with open(ROOT / "tests/fixtures/embed/oracle_embed.jsonl", encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line)["text"])
    return rows


def test_texts():
    texts = []
    with open(ROOT / "tests/fixtures/embed/oracle_embed.jsonl", encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"]
            if len(t) < 60:
                texts.append(t)
    # Leading and doubled spaces, a newline and a tab: tokenizers must keep them as transformers does.
    texts += ["  two leading spaces and  a double one", "line one\nline two\tand a tab", "a"]
    return texts[2:]


def byte_level_bpe(special):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 8,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(), trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tok.get_vocab_size() <= VOCAB
    return tok


def sentencepiece_bpe(special, bos):
    tok = Tokenizer(models.BPE(byte_fallback=True, fuse_unk=True, unk_token=special[0]))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 8,
        special_tokens=special + byte_tokens,
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(), trainer)
    assert tok.get_vocab_size() <= VOCAB
    bos_id = tok.token_to_id(bos)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
    return tok


def save_tokenizer(tok, folder, cls, **special):
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    fast.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = cls
    cfg_path.write_text(json.dumps(cfg, indent=2))


def randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or ".ln_" in name or name.startswith("ln_f"):
                # Norm scales near their identity, so every layer keeps a usable scale.
                base = 0.0 if p.ndim == 1 and "bias" in name else (1.0 if "weight" in name else 0.0)
                if getattr(model.config, "model_type", "").startswith("gemma") and "weight" in name:
                    base = 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))


def references(model, tokenizer, texts):
    ids_all, offsets, hidden, mlp = [], [0], [], []
    captured = []

    def hook(_module, args):
        captured.append(args[0][0].detach().clone())

    outs = []
    for name, m in model.named_modules():
        if name.endswith(("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h")):
            outs.append(m.register_forward_pre_hook(hook))
    for t in texts:
        ids = tokenizer(t, return_tensors="pt")["input_ids"]
        captured.clear()
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
        hidden.append(torch.stack([h[0] for h in out.hidden_states]))
        mlp.append(captured[0])
        ids_all.append(ids[0])
        offsets.append(offsets[-1] + ids.shape[1])
    for h in outs:
        h.remove()
    return {
        "ids": torch.cat(ids_all).to(torch.int64),
        "offsets": torch.tensor(offsets, dtype=torch.int64),
        "hidden": torch.cat(hidden, dim=1).to(torch.float32).contiguous(),
        "mlp": torch.cat(mlp, dim=0).to(torch.float32).contiguous(),
    }


ONLY = set()


def make(name, config, tokenizer, seed, dtype=torch.float32, shard=None, causal=False, base=None):
    if ONLY and name not in ONLY:
        return
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    # A causal-LM checkpoint carries the base model's prefix (transformer., gpt_neox., model.) and the LM head,
    # as the folders users download do; AutoModel reads the base model back from either.
    auto = base or (AutoModelForCausalLM if causal else AutoModel)
    model = (auto(config) if base else auto.from_config(config, attn_implementation="eager"))
    randomise(model, seed)
    model = model.to(dtype)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, **kwargs)
    tok_fn, cls, special = tokenizer
    save_tokenizer(tok_fn(), folder, cls, **special)
    # References: the saved folder read back as a user would, computed in float32.
    tok = AutoTokenizer.from_pretrained(folder)
    ref_model = AutoModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    texts = test_texts()
    refs = references(ref_model, tok, texts)
    save_file(refs, str(folder / "reference.safetensors"))
    (folder / "texts.json").write_text(json.dumps(texts, ensure_ascii=False, indent=1))
    print(name, "tokens", refs["ids"].shape[0], "hidden", tuple(refs["hidden"].shape))


GPT2_TOK = (
    lambda: byte_level_bpe(["<|endoftext|>"]),
    "GPT2Tokenizer",
    dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"),
)
NEOX_TOK = (
    lambda: byte_level_bpe(["<|endoftext|>", "<|padding|>"]),
    "GPTNeoXTokenizer",
    dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"),
)
QWEN_TOK = (
    lambda: byte_level_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
    "Qwen2Tokenizer",
    dict(eos_token="<|endoftext|>", pad_token="<|endoftext|>"),
)
LLAMA_TOK = (
    lambda: sentencepiece_bpe(["<unk>", "<s>", "</s>"], "<s>"),
    "LlamaTokenizer",
    dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
)
GEMMA_TOK = (
    lambda: sentencepiece_bpe(["<pad>", "<eos>", "<bos>", "<unk>"], "<bos>"),
    "GemmaTokenizer",
    dict(bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>"),
)


def tokenizer_variants():
    """tokenizer_variants.json: transformers' ids for the test texts under tokenizer_config.json settings the
    fixtures above leave at their defaults: Llama's legacy and add_prefix_space, and a LlamaTokenizer class
    over a byte-level tokenizer.json (Llama 3 style, which transformers reads as it is)."""
    import tempfile

    variants = {
        "llama_legacy": ("llama", "llama", {"legacy": True}),
        "llama_no_prefix_space": ("llama", "llama", {"add_prefix_space": False}),
        "llama_class_byte_level": ("llama", "gpt2", {}),
    }
    # Special tokens inside a text start a new section, where legacy's "always" prepends and "first" does not.
    out = {"texts": test_texts() + ["one</s>two", "hello <s> world and</s> more"], "variants": {}}
    for name, (model_from, tok_from, settings) in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            shutil.copy(OUT / model_from / "config.json", tmp / "config.json")
            shutil.copy(OUT / tok_from / "tokenizer.json", tmp / "tokenizer.json")
            cfg = json.loads((OUT / tok_from / "tokenizer_config.json").read_text())
            cfg["tokenizer_class"] = "LlamaTokenizer"
            cfg.update(settings)
            (tmp / "tokenizer_config.json").write_text(json.dumps(cfg))
            tok = AutoTokenizer.from_pretrained(tmp)
            out["variants"][name] = {
                "model": model_from,
                "tokenizer_json": tok_from,
                "settings": settings,
                "class": type(tok).__name__,
                "ids": [tok(t)["input_ids"] for t in out["texts"]],
            }
    (OUT / "tokenizer_variants.json").write_text(json.dumps(out, ensure_ascii=False))


def main():
    import sys

    from transformers import (
        Gemma2Config,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
        Qwen3Config,
    )

    ONLY.update(sys.argv[1:])

    OUT.mkdir(parents=True, exist_ok=True)
    common = dict(vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=False)
    make(
        "gpt2",
        GPT2Config(
            vocab_size=VOCAB, n_positions=128, n_embd=32, n_layer=3, n_head=4,
            activation_function="gelu_new", bos_token_id=0, eos_token_id=0,
        ),
        GPT2_TOK,
        seed=1,
        causal=True,
    )
    make(
        "gpt_neox",
        GPTNeoXConfig(
            **common, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=128, rotary_pct=0.25, use_parallel_residual=True, bos_token_id=0, eos_token_id=0,
        ),
        NEOX_TOK,
        seed=2,
    )
    make(
        "gpt_neox_serial",
        GPTNeoXConfig(
            **common, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=128, rotary_pct=0.5, rotary_emb_base=500.0, use_parallel_residual=False,
            hidden_act="gelu_new", bos_token_id=0, eos_token_id=0,
        ),
        NEOX_TOK,
        seed=3,
        causal=True,
    )
    make(
        "llama",
        LlamaConfig(
            **common, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=80, rms_norm_eps=1e-5,
            rope_parameters=dict(
                rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0,
                high_freq_factor=4.0, original_max_position_embeddings=16,
            ),
            bos_token_id=1, eos_token_id=2,
        ),
        LLAMA_TOK,
        seed=4,
        shard="60KB",
    )
    make(
        "mistral",
        MistralConfig(
            **common, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
            intermediate_size=128, sliding_window=5, bos_token_id=1, eos_token_id=2,
        ),
        LLAMA_TOK,
        seed=5,
        causal=True,
    )
    make(
        "qwen2",
        Qwen2Config(
            vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=True,
            hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=80, use_sliding_window=True, sliding_window=6, max_window_layers=1,
            rope_parameters=dict(
                rope_type="yarn", rope_theta=1000.0, factor=4.0, original_max_position_embeddings=32,
            ),
            bos_token_id=0, eos_token_id=0,
        ),
        QWEN_TOK,
        seed=6,
    )
    make(
        "gemma",
        GemmaConfig(
            **common, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
            head_dim=16, intermediate_size=80, hidden_act="gelu_pytorch_tanh",
            rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0),
            pad_token_id=0, eos_token_id=1, bos_token_id=2,
        ),
        GEMMA_TOK,
        seed=7,
        dtype=torch.bfloat16,
    )
    make(
        "qwen3",
        Qwen3Config(
            vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=True,
            hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=80, use_sliding_window=True, sliding_window=5, max_window_layers=1,
            rope_parameters=dict(rope_type="default", rope_theta=1000.0),
            bos_token_id=0, eos_token_id=0,
        ),
        QWEN_TOK,
        seed=8,
        causal=True,
    )
    make(
        "gemma2",
        Gemma2Config(
            **common, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=80, hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=24, attn_logit_softcapping=0.25, final_logit_softcapping=30.0,
            sliding_window=4, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        ),
        GEMMA_TOK,
        seed=9,
        causal=True,
    )
    make(
        "gemma3",
        Gemma3TextConfig(
            **common, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=80, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=20,
            sliding_window=4,
            layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": dict(rope_type="linear", factor=2.0, rope_theta=1_000_000.0),
                "sliding_attention": dict(rope_type="default", rope_theta=100.0),
            },
            pad_token_id=0, eos_token_id=1, bos_token_id=2,
        ),
        GEMMA_TOK,
        seed=10,
        causal=True,
    )
    make(
        "gemma3_multimodal",
        Gemma3Config(
            text_config=dict(
                vocab_size=VOCAB, max_position_embeddings=128, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=80,
                query_pre_attn_scalar=16, sliding_window=3, sliding_window_pattern=2,
                pad_token_id=0, eos_token_id=1, bos_token_id=2,
            ),
            vision_config=dict(
                hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                patch_size=14,
            ),
            mm_tokens_per_image=4, image_token_index=VOCAB - 3, boi_token_index=VOCAB - 2,
            eoi_token_index=VOCAB - 1,
        ),
        GEMMA_TOK,
        seed=11,
        base=Gemma3ForConditionalGeneration,
    )
    if ONLY:
        return
    tokenizer_variants()
    (OUT / "VERSIONS").write_text(
        f"transformers {transformers.__version__}\ntorch {torch.__version__}\n"
    )


if __name__ == "__main__":
    main()
