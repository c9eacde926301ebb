#!/usr/bin/env bash
# Create bench/.venv-sae (if missing) with SAELens and torch (the PyPI wheel, run on the CPU), pinned. Used by
# bench/sae.py and by scripts/make_sae_fixtures.py. Usage: bash bench/setup_venv_sae.sh
# Note: PyPI's Linux torch wheel pulls the NVIDIA runtime packages (several GB on disk); only the CPU path is used.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-sae"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "numpy==2.4.6" "psutil==7.2.2" "torch==2.15.0" "sae-lens==6.54.0" "scipy==1.17.1"
"$VENV/bin/python" -c "import torch, sae_lens; print('torch', torch.__version__, 'sae-lens', sae_lens.__version__)"
