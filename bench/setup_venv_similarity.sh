#!/usr/bin/env bash
# Creates bench/.venv with what bench/similarity.py needs (numpy, from PyPI; float64 reference and GEMM floor).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet "numpy>=1.26,<3"
"$here/.venv/bin/python" -c "import numpy; print('numpy', numpy.__version__)"
