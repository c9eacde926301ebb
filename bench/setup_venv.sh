#!/usr/bin/env bash
# Create bench/.venv (if missing) and install the pinned peer implementations
# used by bench/id_knn.py. Idempotent: re-running only checks/installs what is
# missing. Usage: bash bench/setup_venv.sh
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

# Pinned peers (versions resolved on Python 3.11; numpy 1.26.4 is what the
# resolver picks with these peers, all install from wheels, no builds).
PINS=(
    "numpy==1.26.4"
    "faiss-cpu==1.15.1"
    "scikit-dimension==0.5.0"
    "dadapy==0.3.4"
    "psutil==7.2.2"
    "threadpoolctl==3.8.0"
)
"${PIP[@]}" install --quiet "${PINS[@]}"

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["numpy", "faiss-cpu", "scikit-dimension", "dadapy", "psutil", "threadpoolctl", "scikit-learn", "scipy"]:
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: NOT INSTALLED")
PY

# The Python package (issue 7), built from this checkout into the same venv, so that id_knn.py times
# repscope.id.TwoNN().fit(X) against the same scikit-dimension run.
ROOT="$(dirname "$HERE")"
"${PIP[@]}" install --quiet "maturin==$(sed -n 's/^maturin==//p' "$ROOT/crates/repscope-py/tests/requirements.txt")"
rm -rf "$ROOT/target/wheels-bench"
CARGO_TARGET_DIR="$ROOT/target" "$VENV/bin/maturin" build --release --quiet \
    -m "$ROOT/crates/repscope-py/Cargo.toml" -i "$VENV/bin/python" --out "$ROOT/target/wheels-bench"
"${PIP[@]}" install --quiet --force-reinstall --no-deps "$ROOT"/target/wheels-bench/repscope-*.whl
"$VENV/bin/python" -c "import repscope; print('repscope', repscope.__version__, '(Python package)')"
