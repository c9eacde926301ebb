#!/usr/bin/env bash
# Create bench/.venv-stream (if missing) with numpy and scikit-learn, pinned: the peers of the streaming
# spectrum (np.cov on a memory-mapped array, IncrementalPCA) and the GEMM floor. Used by bench/stream.py.
# Usage: bash bench/setup_venv_stream.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-stream"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "numpy==2.4.6" "scikit-learn==1.8.0"
"$VENV/bin/python" -c "import numpy, sklearn; print('numpy', numpy.__version__, 'scikit-learn', sklearn.__version__)"
