"""Writes the SAE fixtures of tests/fixtures/sae with SAELens itself: TopK (plain, with run-time decoder-norm
rescaling, and with layer-normalised input) and JumpReLU SAEs saved by `save_model`, inputs, and what SAELens
computes on them (codes, reconstructions, MSE, L0).

It also writes OpenAI `sparse_autoencoder` state dicts with torch.save, laid out as `Autoencoder.state_dict()`
lays them out (that package is not on PyPI), with the codes and reconstructions of its reference definition:
LN(x) = (x − μ)/(σ + 1e-5) with torch's σ (ddof 1), latents = ReLU(TopK((LN(x) − pre_bias) encoderᵀ +
latent_bias)), x̂ = (latents decoderᵀ + pre_bias)·σ + μ.

Run once with the bench venv (bash bench/setup_venv_sae.sh):
    bench/.venv-sae/bin/python scripts/make_sae_fixtures.py
The tests read only the files written here; they never run SAELens.
"""

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import sae_lens
import torch
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, TopKSAE, TopKSAEConfig

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sae"
D, N, K, ROWS = 16, 48, 4, 64


def randomise(sae, gen):
    with torch.no_grad():
        for p in (sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=gen) * 0.5)


def main():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, D, generator=gen) * 2.0
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "x.npy", x.numpy().astype(np.float32))
    expected = {"sae_lens_version": sae_lens.__version__, "torch_version": torch.__version__}
    for name, sae in [
        ("saelens_topk", TopKSAE(TopKSAEConfig(d_in=D, d_sae=N, k=K))),
        ("saelens_jumprelu", JumpReLUSAE(JumpReLUSAEConfig(d_in=D, d_sae=N))),
        # Decoder rows of any norm, rescaled at run time (what SAELens' TopK trainer saves).
        ("saelens_topk_rescaled", TopKSAE(TopKSAEConfig(d_in=D, d_sae=N, k=K, rescale_acts_by_decoder_norm=True))),
    ]:
        randomise(sae, gen)
        folder = OUT / name
        sae.save_model(str(folder))
        loaded = type(sae).load_from_disk(str(folder))
        with torch.no_grad():
            f = loaded.encode(x)
            xh = loaded.decode(f)
        np.save(OUT / f"{name}_codes.npy", f.numpy().astype(np.float32))
        np.save(OUT / f"{name}_recon.npy", xh.numpy().astype(np.float32))
        expected[name] = {
            "mse": float(((xh - x) ** 2).mean()),
            "l0": float((f > 0).float().sum(-1).mean()),
        }
    # SAELens with layer-normalised input (its decode undoes the normalisation with the last encode's μ, σ).
    name = "saelens_topk_layernorm"
    sae = TopKSAE(TopKSAEConfig(d_in=D, d_sae=N, k=K, normalize_activations="layer_norm"))
    randomise(sae, gen)
    folder = OUT / name
    sae.save_model(str(folder))
    loaded = TopKSAE.load_from_disk(str(folder))
    with torch.no_grad():
        f = loaded.encode(x)
        xh = loaded.decode(f)
    np.save(OUT / f"{name}_codes.npy", f.numpy().astype(np.float32))
    np.save(OUT / f"{name}_recon.npy", xh.numpy().astype(np.float32))
    expected[name] = {"mse": float(((xh - x) ** 2).mean()), "l0": float((f > 0).float().sum(-1).mean())}
    # OpenAI: a TopK SAE (layer-normalised input), and one whose TopK has no ReLU (which repscope refuses).
    for name, post in [("openai_topk", "ReLU"), ("openai_topk_identity", "Identity")]:
        pre_bias = torch.randn(D, generator=gen) * 0.5
        enc = torch.randn(N, D, generator=gen) * 0.5
        lat = torch.randn(N, generator=gen) * 0.5
        dec = torch.randn(D, N, generator=gen) * 0.5
        sd = OrderedDict(
            [
                ("pre_bias", pre_bias),
                ("latent_bias", lat),
                ("stats_last_nonzero", torch.zeros(N, dtype=torch.long)),
                ("latents_activation_frequency", torch.ones(N)),
                ("latents_mean_square", torch.zeros(N)),
                ("encoder.weight", enc),
                ("decoder.weight", dec),
                ("activation", "TopK"),
                ("activation_state_dict", {"k": K, "postact_fn": post}),
            ]
        )
        torch.save(sd, OUT / f"{name}.pt")
        if post != "ReLU":
            continue
        mu = x.mean(-1, keepdim=True)
        xc = x - mu
        std = xc.std(-1, keepdim=True)
        xn = xc / (std + 1e-5)
        pre = torch.nn.functional.linear(xn - pre_bias, enc, lat)
        top = torch.topk(pre, k=K, dim=-1)
        f = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
        xh = (f @ dec.T + pre_bias) * std + mu
        np.save(OUT / f"{name}_codes.npy", f.numpy().astype(np.float32))
        np.save(OUT / f"{name}_recon.npy", xh.numpy().astype(np.float32))
        expected[name] = {"mse": float(((xh - x) ** 2).mean()), "l0": float((f > 0).float().sum(-1).mean())}
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main()
