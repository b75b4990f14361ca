#!/usr/bin/env bash
# The one check: formatting, lints (warnings are errors), every test, and the Autobahn
# WebSocket conformance cases compared with the expected results.
# Needs: PyPI `kosoku` and `websockets`, and `npm ci --prefix scripts/interop` (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
cargo build --release -p router
python3 scripts/autobahn.py
