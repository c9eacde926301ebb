#!/usr/bin/env bash
# Create bench/.venv (if missing) and install what bench/exact_knn.py needs: faiss-cpu (the peer), numpy
# and psutil, pinned as in setup_venv.sh. Idempotent. Usage: bash bench/setup_venv_exact.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip
"${PIP[@]}" install --quiet "numpy==1.26.4" "faiss-cpu==1.15.1" "psutil==7.2.2"

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["numpy", "faiss-cpu", "psutil"]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: NOT INSTALLED")
PY
