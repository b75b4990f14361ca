#!/usr/bin/env bash
# The one check: formatting, lints (warnings are errors), and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
