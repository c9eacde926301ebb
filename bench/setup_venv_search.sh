#!/usr/bin/env bash
# Create bench/.venv (if missing) and install the peer used by bench/search.py: hnswlib 0.8 (built from
# its source distribution with the machine's C++ compiler and -march=native, as pip does by default),
# numpy and psutil. Idempotent. Usage: bash bench/setup_venv_search.sh
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
"${PIP[@]}" install --quiet "numpy==1.26.4" "psutil==7.2.2" "pybind11>=2.10"
"${PIP[@]}" install --quiet "hnswlib==0.8.*"

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["numpy", "hnswlib", "psutil"]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: NOT INSTALLED")
PY
