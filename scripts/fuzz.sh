#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, cargo-fuzz and libFuzzer, no sanitizer so the stable toolchain
# does) and runs each one in turn, starting from its seed corpus (fuzz/corpus/<target>/), for a
# bounded budget. Fails (exit 1) when any target crashes, panics, runs out of memory or time on
# one input, and prints the path of the input that did it. Installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh --seconds 8                  # each target for 8 s (what check.sh runs)
#   scripts/fuzz.sh --runs 1000000 --out results/fuzz/$(date +%F)-1e6
#   scripts/fuzz.sh --seconds 60 json query      # only these targets
#
# Inputs libFuzzer finds are written to a temporary folder, never into fuzz/corpus/; with
# --out they are dropped too, and the folder gets summary.json and summary.md (per target:
# inputs executed as libFuzzer counts them, seconds, crashes; the command, git revision,
# kernel, CPU), the ends of each target's log, and any crashing input under crashes/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

command_line="scripts/fuzz.sh $*"
seconds=""
runs=""
out=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ -z "$seconds" ] && [ -z "$runs" ]; then
  echo "fuzz.sh: give a budget, --seconds S or --runs N" >&2
  usage
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
# Release code with debug assertions and overflow checks on (cargo-fuzz's default), so an
# arithmetic overflow on input is found, not wrapped.
cargo fuzz build -s none --target "$triple"
bin_dir="fuzz/target/$triple/release"

if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

# Longest input per target: as large as the router reads for that parser where that is small
# (a request head: header_bytes_max 8192; a JSON body: body_bytes_max 64 KiB), else 4 KiB.
max_len_of() {
  case "$1" in
    http1_request|websocket_handshake) echo 8320 ;;
    json) echo 65536 ;;
    *) echo 4096 ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$out" ]; then
  mkdir -p "$out/logs"
fi
rows="$work/rows.tsv"
: >"$rows"
failed=0

for target in "${targets[@]}"; do
  corpus="$work/corpus/$target"
  artifacts="$work/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  budget=()
  [ -n "$seconds" ] && budget+=("-max_total_time=$seconds")
  [ -n "$runs" ] && budget+=("-runs=$runs")
  log="$work/$target.log"
  echo "fuzz.sh: $target (${budget[*]})" >&2
  start=$(date +%s.%N)
  status=0
  # New inputs go to the first folder (temporary); the seeds are only read.
  "$bin_dir/$target" "$corpus" "fuzz/corpus/$target" "${budget[@]}" \
    -max_len="$(max_len_of "$target")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  end=$(date +%s.%N)
  elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=$(find "$artifacts" -type f | wc -l)
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1 # died without writing its input (a stack overflow, say): the log says why
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$target" "${executed:-0}" "$elapsed" "$crashes" "$status" >>"$rows"
  if [ -n "$out" ]; then
    # The start (seeds read), any panic message, and the end (final stats); not the backtrace.
    # The temporary folder's name is machine-specific, so it is written as <work>.
    { head -n 12 "$log"; grep -A 3 'panicked at' "$log" || true; echo '...'; tail -n 25 "$log"; } |
      sed "s|$work|<work>|g" >"$out/logs/$target.log"
  fi
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "fuzz.sh: $target FAILED (exit $status); the panic, if any, and the log's end:" >&2
    grep -A 3 'panicked at' "$log" >&2 || true
    tail -n 30 "$log" >&2
    keep="$artifacts"
    if [ -n "$out" ] && [ "$crashes" -gt 0 ]; then
      mkdir -p "$out/crashes/$target"
      cp "$artifacts"/* "$out/crashes/$target/" 2>/dev/null || true
      keep="$out/crashes/$target"
    elif [ "$crashes" -gt 0 ]; then
      keep="fuzz/artifacts/$target"
      mkdir -p "$keep"
      cp "$artifacts"/* "$keep/"
    fi
    for input in "$keep"/*; do
      [ -f "$input" ] && echo "fuzz.sh: crashing input: $input (replay: $bin_dir/$target $input)" >&2
    done
  else
    echo "fuzz.sh: $target ok, ${executed:-0} inputs in ${elapsed} s" >&2
  fi
done

if [ -n "$out" ]; then
  python3 - "$rows" "$out" "$command_line" "$seconds" "$runs" <<'EOF'
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone

rows_path, out, command, seconds, runs = sys.argv[1:]


def run(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


cpu = "unknown"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
except (OSError, StopIteration):
    pass
dirty = run("git", "status", "--porcelain", "--untracked-files=no")
targets = []
with open(rows_path) as f:
    for line in f:
        name, executed, elapsed, crashes, status = line.rstrip("\n").split("\t")
        targets.append({"target": name, "inputs_executed": int(executed),
                        "seconds": float(elapsed), "crashes": int(crashes),
                        "exit_status": int(status)})
summary = {
    "command": command,
    "budget": {"seconds_per_target": float(seconds) if seconds else None,
               "runs_per_target": int(runs) if runs else None},
    "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "git_revision": run("git", "rev-parse", "HEAD") + ("-dirty" if dirty not in ("", "unknown") else ""),
    "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
    "cpu": cpu,
    "cpus_online": int(run("nproc")) if run("nproc").isdigit() else None,
    "rustc": run("rustc", "--version"),
    "cargo_fuzz": run("cargo", "fuzz", "--version"),
    "sanitizer": "none",
    "inputs_counted_as": "stat::number_of_executed_units (libFuzzer -print_final_stats=1)",
    "targets": targets,
    "crashes_total": sum(t["crashes"] for t in targets),
}
with open(f"{out}/summary.json", "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
lines = [
    "# Fuzz run",
    "",
    f"`{command}`",
    "",
    f"- git revision: `{summary['git_revision']}`",
    f"- date (UTC): {summary['date_utc']}",
    f"- kernel: {summary['kernel']}; CPU: {cpu} ({summary['cpus_online']} online)",
    f"- {summary['rustc']}, {summary['cargo_fuzz']}, no sanitizer, debug assertions on",
    "",
    "| target | inputs executed | seconds | crashes |",
    "| --- | ---: | ---: | ---: |",
]
for t in targets:
    lines.append(f"| {t['target']} | {t['inputs_executed']:,} | {t['seconds']:.1f} | {t['crashes']} |")
lines += ["", f"Crashes in total: {summary['crashes_total']}. Inputs executed are libFuzzer's "
          "`stat::number_of_executed_units`; logs/ holds the start and end of each target's log.", ""]
with open(f"{out}/summary.md", "w") as f:
    f.write("\n".join(lines))
EOF
  echo "fuzz.sh: summary in $out/summary.md" >&2
fi

if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: FAILED: a target crashed (see above)" >&2
  exit 1
fi
echo "fuzz.sh: every target ran clean" >&2
