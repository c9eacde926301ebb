#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds the release profile once and runs every test from it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace --all-targets
