#!/usr/bin/env bash
# Create bench/.venv-ray (if missing) with Ray (pinned) and this checkout's repscope wheel (built by maturin into
# target/wheels-bench). Used by bench/ray_scaling.py. Usage: bash bench/setup_venv_ray.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv-ray"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "numpy==2.4.6" "ray[data]==2.60.0" "maturin==1.16.0"
rm -rf "$ROOT/target/wheels-bench"
(cd "$ROOT" && CARGO_TARGET_DIR=target "$VENV/bin/maturin" build --release --quiet \
    -m crates/repscope-py/Cargo.toml -i "$VENV/bin/python" --out target/wheels-bench)
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$ROOT"/target/wheels-bench/repscope-*.whl
"$VENV/bin/python" -c "import ray, repscope; print('ray', ray.__version__, 'repscope', repscope.__version__)"
