"""Sparse autoencoders: TopK and BatchTopK training, encoding and evaluation, in SAELens' folder layout.

``TopKSAE(width, k).fit(X)`` trains on an array, a list (or any iterable) of arrays, or a ``.npy`` path that
the engine streams from disk; ``.encode``, ``.decode``, ``.evaluate`` and ``.save(folder)`` follow, and
``repscope.sae.load(folder)`` reads SAELens and sparsify folders. Training is seeded and bit-identical for any
thread count. Definitions: docs/METRICS.md ("Activations and sparse features").
"""

import json
import os

import numpy as np

from . import _repscope
from ._arrays import as_matrix, check_int, rows

__all__ = ["TopKSAE", "load"]


class TopKSAE:
    """A TopK (or BatchTopK) sparse autoencoder, scikit-learn style.

    Parameters
    ----------
    width : int
        Latents.
    k : int, default 32
        Active latents per row (TopK), or per row on average over a batch (BatchTopK).
    arch : {"topk", "batchtopk"}, default "topk"
        BatchTopK is saved as JumpReLU with the threshold it learnt.
    tokens : int, optional
        Rows to train on in all (default: one pass over the data).
    batch : int, default 4096
    lr : float, optional
        Adam's learning rate (default 2e-4 / sqrt(width / 2**14)), with warm-up and a linear decay over the
        last 20% of the steps.
    warmup_steps, aux_k, aux_coef, dead_tokens, b_dec_init, normalize, seed
        As ``repscope sae train``: AuxK uses ``aux_k`` (default d/2) dead latents with coefficient
        ``aux_coef`` (1/32); a latent is dead after ``dead_tokens`` rows without firing; b_dec starts at the
        geometric median ("median"), "mean" or "zero"; ``normalize`` scales inputs to mean norm sqrt(d) and
        folds the scale into the weights.
    decoder : {"unit", "rescaled"}, default "unit"
        "unit": decoder rows held at unit norm (the parallel part of their gradient removed). "rescaled":
        SAELens' parametrisation (``rescale_acts_by_decoder_norm``): free rows started at norm
        ``decoder_init_norm``, each latent ranked by its pre-activation times its row's norm; saved with unit
        rows and the norms folded into the encoder (TopK only).
    decoder_init_norm : float, default 0.1
        The rows' starting norm with ``decoder="rescaled"``.

    Attributes (after fit or load)
    ------------------------------
    W_enc_, W_dec_, b_enc_, b_dec_, threshold_ : numpy arrays in SAELens' shapes.
    summary_ : dict, what training did (steps, final FVU and L0, dead share, learning rate).
    """

    def __init__(self, width, k=32, arch="topk", tokens=None, batch=4096, lr=None, warmup_steps=None,
                 aux_k=None, aux_coef=1.0 / 32.0, dead_tokens=10_000_000, b_dec_init="median", normalize=True,
                 seed=0, decoder="unit", decoder_init_norm=0.1):
        self.width = width
        self.k = k
        self.arch = arch
        self.tokens = tokens
        self.batch = batch
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.dead_tokens = dead_tokens
        self.b_dec_init = b_dec_init
        self.normalize = normalize
        self.seed = seed
        self.decoder = decoder
        self.decoder_init_norm = decoder_init_norm

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in (
            "width", "k", "arch", "tokens", "batch", "lr", "warmup_steps", "aux_k", "aux_coef", "dead_tokens",
            "b_dec_init", "normalize", "seed", "decoder", "decoder_init_norm")}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"invalid parameter {name} for TopKSAE")
            setattr(self, name, value)
        return self

    def fit(self, X, y=None, key=None):
        """Trains on X: an array, a list of arrays (concatenated), a path or list of shard paths (streamed),
        or any other iterable of 2-D arrays (read once into temporary shards, then streamed)."""
        opt = lambda v, name: None if v is None else check_int(v, name, 0)  # noqa: E731
        lr = None if self.lr is None else float(self.lr)
        args = (check_int(self.width, "width", 0), check_int(self.k, "k", 0), str(self.arch),
                opt(self.tokens, "tokens"), check_int(self.batch, "batch", 0), lr, opt(self.warmup_steps,
                "warmup_steps"), opt(self.aux_k, "aux_k"), float(self.aux_coef), check_int(self.dead_tokens,
                "dead_tokens", 0), str(self.b_dec_init), bool(self.normalize), check_int(self.seed, "seed", 0))
        if self.decoder not in ("unit", "rescaled"):
            raise ValueError(f"invalid parameter decoder: {self.decoder!r}; choose 'unit' or 'rescaled'")
        rescaled = float(self.decoder_init_norm) if self.decoder == "rescaled" else None
        with rows(X) as r:
            self._sae, summary = _repscope.sae_train(r, key, *args, rescaled)
        self.summary_ = json.loads(summary)
        self._set_weights()
        return self

    def _set_weights(self):
        for name, value in self._sae.weights():
            setattr(self, name + "_", value)
        if not hasattr(self, "threshold_"):
            self.threshold_ = None

    def _fitted(self):
        if not hasattr(self, "_sae"):
            from .id import NotFittedError

            raise NotFittedError("This TopKSAE is not fitted yet. Call fit(X) first, or repscope.sae.load(folder).")
        return self._sae

    def encode(self, X):
        """Dense codes, shape (n_samples, width), float32."""
        return self._fitted().encode(np.require(as_matrix(X), np.float32, ["C_CONTIGUOUS", "ALIGNED"]))

    def decode(self, F, X=None):
        """Reconstructions f W_dec + b_dec, shape (n_samples, d). An SAE that layer-normalises its input
        (OpenAI's TopK SAEs, SAELens' normalize_activations="layer_norm") also takes the input rows X, whose
        mean and standard deviation it restores."""
        F = np.require(np.asarray(F), np.float32, ["C_CONTIGUOUS", "ALIGNED"])
        if F.ndim != 2:
            raise ValueError(f"codes: expected a 2-D array (n_samples, width), got shape {F.shape}")
        if X is not None:
            X = np.require(as_matrix(X), np.float32, ["C_CONTIGUOUS", "ALIGNED"])
        return self._fitted().decode(F, X)

    def transform(self, X):
        return self.encode(X)

    def evaluate(self, X, key=None, batch=4096):
        """L0, FVU, the legacy explained variance, MSE, cosine, bias, dead and dense latents, densities."""
        sae, batch = self._fitted(), check_int(batch, "batch", 1)
        with rows(X) as r:
            return json.loads(sae.evaluate(r, key, batch))

    def save(self, path, force=False):
        """Writes cfg.json and sae_weights.safetensors (SAELens' layout), atomically."""
        meta = {"trained_by": "repscope", "params": self.get_params()} if hasattr(self, "summary_") else {}
        self._fitted().save(os.fspath(path), json.dumps(meta), bool(force))


def load(path):
    """An SAE: a folder (SAELens: cfg.json + sae_weights.safetensors; sparsify: cfg.json + sae.safetensors),
    or an OpenAI sparse_autoencoder .pt state dict."""
    sae = _repscope.Sae.load(os.fspath(path))
    d, n, k, arch = sae.shape()
    est = TopKSAE(width=n, k=max(k, 1), arch="topk" if arch == "topk" else "batchtopk")
    est._sae = sae
    est._set_weights()
    return est
