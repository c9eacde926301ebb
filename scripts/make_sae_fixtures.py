"""Writes the SAE fixtures of tests/fixtures/sae with SAELens itself: TopK (plain and with run-time decoder-norm
rescaling) and JumpReLU SAEs saved by
`save_model`, inputs, and what SAELens computes on them (codes, reconstructions, MSE, L0).

Run once with the bench venv (bash bench/setup_venv_sae.sh):
    bench/.venv-sae/bin/python scripts/make_sae_fixtures.py
The tests read only the files written here; they never run SAELens.
"""

import json
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
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main()
