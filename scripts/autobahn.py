#!/usr/bin/env python3
"""Runs the Autobahn WebSocket conformance cases (PyPI `kosoku`) against the router's echo.

Starts the router with `--conformance-echo true`, runs the case groups below, writes the
report (index.json and summary.md) and compares every case with the expected results kept in
results/autobahn/expected.json: any case that does worse than expected fails the run.

The report of a run goes to results/autobahn/tmp/, which git ignores, so that the test command
leaves the tree clean; `--record` writes it over the committed report in results/autobahn/
instead, and `--out DIR` anywhere else.

    python3 scripts/autobahn.py                 # run and compare
    python3 scripts/autobahn.py --record        # also replace the committed report
    python3 scripts/autobahn.py --update        # record, and take the results as expected

Excluded cases (see results/autobahn/README.md): group 9 cases whose messages exceed the
configured `websocket_message_bytes_max` (1 MiB by default), which the router refuses with
close 1009 by design.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

GROUPS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"]
# Messages of 4, 8 and 16 MiB (9.1.4-6, 9.2.4-6) and 4 MiB fragmented (9.3, 9.4): above the
# 1 MiB message limit.
EXCLUDED = ["9.1.4", "9.1.5", "9.1.6", "9.2.4", "9.2.5", "9.2.6", "9.3.*", "9.4.*"]
# Better first. A case may do better than expected, never worse.
RANK = {"OK": 0, "NON-STRICT": 1, "INFORMATIONAL": 2, "UNIMPLEMENTED": 3, "WRONG CODE": 4, "FAILED": 5}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"autobahn: the router did not listen on port {port}")


def run_cases(router, workdir):
    port = free_port()
    cmd = [router, "--listen", f"127.0.0.1:{port}", "--shards", "2", "--log", "warn",
           "--conformance-echo", "true"]
    proc = subprocess.Popen(cmd)
    try:
        wait_listening(port)
        args = ["kosoku", f"ws://127.0.0.1:{port}/echo", "-p", "4", "-o", workdir]
        for g in GROUPS:
            args += ["-i", g]
        for x in EXCLUDED:
            args += ["-x", x]
        # kosoku exits non-zero when a case is not OK; the comparison below decides.
        subprocess.run(args, stdout=subprocess.DEVNULL, timeout=1800)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with open(os.path.join(workdir, "index.json")) as f:
        index = json.load(f)
    (cases,) = index.values()
    return {case: r["behavior"] for case, r in cases.items()}, " ".join(cmd)


def case_key(case):
    return tuple(int(p) for p in case.split("."))


def summary(results):
    groups = {}
    for case, behavior in results.items():
        group = case.split(".")[0]
        groups.setdefault(group, {}).setdefault(behavior, 0)
        groups[group][behavior] += 1
    lines = ["| group | cases | results |", "|---|---|---|"]
    for group in sorted(groups, key=int):
        counts = groups[group]
        text = ", ".join(f"{b} {n}" for b, n in sorted(counts.items(), key=lambda kv: RANK.get(kv[0], 9)))
        lines.append(f"| {group} | {sum(counts.values())} | {text} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--router", default="target/release/router")
    p.add_argument("--out", help="folder for the report (default results/autobahn/tmp, git-ignored)")
    p.add_argument("--record", action="store_true",
                   help="write the report to results/autobahn, the committed one")
    p.add_argument("--expected", default="results/autobahn/expected.json",
                   help="expected behaviour of every case (default %(default)s)")
    p.add_argument("--update", action="store_true",
                   help="record this run and take its results as the expected ones")
    args = p.parse_args()
    if args.out and (args.record or args.update):
        p.error("--out and --record/--update name two places for the report; give one")
    recorded = args.record or args.update
    args.out = args.out or ("results/autobahn" if recorded else "results/autobahn/tmp")
    if shutil.which("kosoku") is None:
        sys.exit("autobahn: kosoku is not installed (pip install kosoku)")
    with tempfile.TemporaryDirectory() as workdir:
        results, command = run_cases(args.router, workdir)
        os.makedirs(args.out, exist_ok=True)
        shutil.copy(os.path.join(workdir, "index.json"), os.path.join(args.out, "index.json"))
    ordered = dict(sorted(results.items(), key=lambda kv: case_key(kv[0])))
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(f"# Autobahn cases against `/echo`\n\nRouter: `{command}`\n"
                f"Cases: {' '.join(GROUPS)}; excluded: {' '.join(EXCLUDED)}\n\n{summary(ordered)}\n")
    expected_path = args.expected
    if args.update:
        with open(expected_path, "w") as f:
            json.dump(ordered, f, indent=1)
            f.write("\n")
    with open(expected_path) as f:
        expected = json.load(f)
    worse = []
    for case, want in expected.items():
        got = results.get(case, "MISSING")
        if RANK.get(got, 99) > RANK.get(want, 99):
            worse.append(f"{case}: expected {want}, got {got}")
    print(summary(ordered))
    passed = sum(1 for c, b in results.items() if RANK.get(b, 99) <= RANK.get(expected.get(c, "OK"), 99))
    if worse:
        print("autobahn: cases worse than expected:\n  " + "\n  ".join(worse))
    print(f"autobahn: report in {args.out}")
    print(f"autobahn: {passed} passed, {len(worse)} failed")
    sys.exit(1 if worse else 0)


if __name__ == "__main__":
    main()
