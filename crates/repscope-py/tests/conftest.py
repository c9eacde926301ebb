import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def cli():
    """Runs the repscope binary (REPSCOPE_BIN, or the release build of this checkout) and returns stdout."""
    exe = os.environ.get("REPSCOPE_BIN") or str(ROOT / "target" / "release" / "repscope")
    if not os.path.exists(exe):
        pytest.fail(f"{exe} not found: build it with `cargo build --release` or set REPSCOPE_BIN")

    def run(*args, check=True):
        r = subprocess.run([exe, "--quiet", *map(str, args)], capture_output=True, text=True)
        if not check:
            return r
        assert r.returncode == 0, f"repscope {' '.join(map(str, args))} failed: {r.stderr}"
        return r.stdout

    return run


def linear_manifold(n, d, D, seed, noise=0.0):
    """n points of a seeded d-dimensional Gaussian in a random d-dimensional subspace of R^D, plus noise."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((D, d)))
    X = rng.standard_normal((n, d)) @ basis.T
    if noise:
        X = X + noise * rng.standard_normal((n, D))
    return X.astype(np.float32)
