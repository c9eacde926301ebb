#!/usr/bin/env bash
# Create bench/.venv-dadapy (if missing) with DADApy 0.3.4, which pins numpy 1.26 (older than the test venv's),
# and scikit-dimension 0.5.0 for its benchmark manifolds; then build the repscope wheel from this checkout and
# install it there. Used by bench/id_dadapy.py. Usage: bash bench/setup_venv_dadapy.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv-dadapy"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "dadapy==0.3.4" "scikit-dimension==0.5.0" "threadpoolctl==3.8.0" \
    "maturin==1.16.0"
rm -rf "$ROOT/target/wheels-dadapy"
CARGO_TARGET_DIR="$ROOT/target" "$VENV/bin/maturin" build --release --quiet \
    -m "$ROOT/crates/repscope-py/Cargo.toml" -i "$VENV/bin/python" --out "$ROOT/target/wheels-dadapy"
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$ROOT"/target/wheels-dadapy/repscope-*.whl
"$VENV/bin/python" -c "import repscope, dadapy, numpy; print('repscope', repscope.__version__, 'numpy', numpy.__version__)"
