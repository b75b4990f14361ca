#!/usr/bin/env bash
# The one check: formatting, lints (warnings are errors), every test, a short run of every fuzz
# target (scripts/fuzz.sh: build and 8 s per target, a crash fails the check), the Autobahn
# WebSocket conformance cases compared with the expected results, and the latency-regression
# gate (router against the raw baseline, compared with results/gate/baseline.json), and a
# shrunk run of the comparison with Nchan and Pushpin (installed by peers.py when missing).
# Installs the third-party peers the tests use when they are missing: PyPI `kosoku` (Autobahn
# cases), `websockets`, `prometheus-client` (its text-format parser reads /metrics),
# `promql-parser` (reads the Grafana dashboard's queries), `pyjwt` and `cryptography`
# (scripts/auth mints the test tokens), npm `ws` (scripts/interop) and npm `playwright-core`
# (client/test, the browser client's tests in Debian's chromium, which .ci/run installs).
set -euo pipefail
cd "$(dirname "$0")/.."
# The check records nothing: what its runs measure goes to temporary or git-ignored folders
# (the scripts write into results/ only when asked). It ends by checking that.
status_before=$(git status --porcelain 2>/dev/null || true)
if ! python3 -c 'import kosoku, websockets, prometheus_client, promql_parser, jwt, cryptography' \
    2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check kosoku==0.1.0 websockets==17.4 \
    prometheus-client==0.26.0 promql-parser==0.11.0 pyjwt==2.15.1 cryptography==48.0.0
fi
if [ ! -d scripts/interop/node_modules/ws ]; then
  npm ci --prefix scripts/interop --no-audit --no-fund
fi
# The browser client's tests (router/tests/browser.rs) drive Debian's chromium with playwright-core.
if [ ! -d client/test/node_modules/playwright-core ]; then
  npm ci --prefix client/test --no-audit --no-fund
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
scripts/fuzz.sh --seconds 8
cargo build --release -p router -p loadgen
python3 scripts/autobahn.py
python3 scripts/gate.py --rounds 3
# A reconnect storm, shrunk: every re-attach replays its datagrams while new tunnels are paced.
python3 scripts/storm.py --tunnels 2000 --new 600 --rate 100 > /dev/null
# The side-by-side comparison, shrunk: every target must produce figures.
compare_out=$(mktemp -d)
python3 scripts/compare.py --quick --strict --out "$compare_out"
rm -rf "$compare_out"
status_after=$(git status --porcelain 2>/dev/null || true)
if [ "$status_after" != "$status_before" ]; then
  echo "check.sh: the run changed the tree (git status before and after):" >&2
  diff <(echo "$status_before") <(echo "$status_after") >&2 || true
  exit 1
fi
