#!/usr/bin/env bash
# Create bench/.venv-python (if missing) with scikit-dimension and the other pinned test packages, then build
# the repscope wheel from this checkout (release, same target folder as cargo) and install it there.
# Used by bench/python_id.py. Usage: bash bench/setup_venv_python.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv-python"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$ROOT/crates/repscope-py/tests/requirements.txt" \
    "psutil==7.2.2" "threadpoolctl==3.8.0"
rm -rf "$ROOT/target/wheels-bench"
CARGO_TARGET_DIR="$ROOT/target" "$VENV/bin/maturin" build --release --quiet \
    -m "$ROOT/crates/repscope-py/Cargo.toml" -i "$VENV/bin/python" --out "$ROOT/target/wheels-bench"
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$ROOT"/target/wheels-bench/repscope-*.whl
"$VENV/bin/python" -c "import repscope, skdim; print('repscope', repscope.__version__, 'skdim', skdim.__version__)"
