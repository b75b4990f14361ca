#!/usr/bin/env python3
"""The raw baseline before and after it reused router::wire: the same loadgen scenarios
against each, alternating (old, new; then new, old; ...), each server started fresh per run
exactly as scripts/gate.py starts it (peers.Baseline: `loadgen baseline --listen 127.0.0.1:P`).

    python3 results/baseline-reuse/2026-12-03/bench.py OLD_LOADGEN NEW_LOADGEN \
        [--rounds 3] [--scenarios a,b] [--series NAME]

OLD_LOADGEN and NEW_LOADGEN are the two loadgen binaries whose `baseline` is measured
(relative paths: to the repository root). Every run is driven by NEW_LOADGEN's load
generator, which the change left alone, so only the server differs. Writes one folder per
run (summary.json, latency.hlog, command.txt, loadgen.log) in SERIES/<scenario>/ beside this
file and prints the figures as a table; SERIES/figures.json holds them all. Each run also
records the server's CPU time (user + system, all threads), which the machine's other load
disturbs far less than latency.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts"))
import peers  # noqa: E402

# The gate's two steps (scripts/gate.py, defaults) and a mixed WS/SSE fan-out.
SCENARIOS = {
    "gate-fixed": dict(transport="sse", live=500, paths=20, rate=400, duration_s=5, drain_ms=1000),
    "gate-saturation": dict(transport="sse", live=500, paths=20, rate=100000, duration_s=2,
                            drain_ms=10000),
    "mixed-fanout": dict(transport="ws:1,sse:1", live=200, paths=20, rate=20000, duration_s=5,
                         drain_ms=2000),
    # One subscriber per path: the request parsing is the largest share of the server's work.
    "parse-heavy": dict(transport="sse", live=20, paths=20, rate=50000, duration_s=4, drain_ms=2000),
    # Twice the gate's saturation offer, which the baseline delivers in full on a quiet machine.
    "overload": dict(transport="sse", live=500, paths=20, rate=200000, duration_s=2, drain_ms=20000),
}
RAMP_PER_S = 20000


def command(driver, port, params, run_dir):
    return [driver, "--target", f"127.0.0.1:{port}", "--peer", "baseline",
            "--transport", params["transport"], "--live", str(params["live"]), "--idle", "0",
            "--paths", str(params["paths"]), "--rate", str(params["rate"]),
            "--duration-s", str(params["duration_s"]), "--drain-ms", str(params["drain_ms"]),
            "--ramp-per-s", str(RAMP_PER_S), "--label", "baseline", "--out", peers.relative(run_dir)]


def cpu_s(pid):
    """User + system CPU time of a process (all its threads) so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def figures(summary):
    lat = summary["latency_us"]
    return {
        "deliveries_per_s": summary["deliveries_per_s"],
        "deliveries": summary["deliveries"],
        "deliveries_expected": summary["deliveries_expected"],
        "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "p99_9_us": lat["p99_9_us"],
        "max_us": lat["max_us"],
        "gaps": summary["sequence"]["gaps"],
        "softnet_dropped": summary["network"]["softnet_dropped"],
        "tcp_retransmitted_segments": summary["network"]["tcp_retransmitted_segments"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--series", default="series-1", help="the folder (beside this file) of this series")
    a = p.parse_args()
    binaries = {"old": peers.repo_path(a.old), "new": peers.repo_path(a.new)}
    peers.raise_nofile_limit()
    peers.exit_on_signals()
    results = []
    for name in a.scenarios.split(","):
        params = SCENARIOS[name]
        for n in range(1, a.rounds + 1):
            # ABBA: which one goes first alternates, so neither gets the fresher machine.
            order = ["old", "new"] if n % 2 else ["new", "old"]
            for variant in order:
                run_dir = os.path.join(HERE, a.series, name, f"{variant}-{n}")
                with open("/proc/loadavg") as f:
                    load = f.read().split()[0]
                with peers.Baseline(binaries[variant]) as target:
                    cmd = command(binaries["new"], target.port, params, run_dir)
                    bound = params["duration_s"] + params["drain_ms"] / 1000 + 60
                    r = peers.run_loadgen(cmd, run_dir, bound)
                    # What the server spent, whatever the machine's other load made of its latency.
                    server_cpu_s = cpu_s(target.pids()[0])
                if r["summary"] is None:
                    sys.exit(f"{name} {variant}-{n}: loadgen exited with {r['rc']}: {r['tail']}")
                f = dict(figures(r["summary"]), scenario=name, variant=variant, round=n,
                         rc=r["rc"], loadavg_before=float(load), server_cpu_s=server_cpu_s)
                f["server_cpu_ns_per_delivery"] = round(server_cpu_s * 1e9 / max(f["deliveries"], 1))
                results.append(f)
                print(f"{name:16} {variant}-{n}  {f['deliveries_per_s']:>12,.0f}/s  p50 {f['p50_us']:>6} "
                      f"p99 {f['p99_us']:>6} p99.9 {f['p99_9_us']:>6} us  server CPU {server_cpu_s:6.2f} s "
                      f"({f['server_cpu_ns_per_delivery']} ns/delivery)  rc {r['rc']}  load {load}",
                      flush=True)
    with open(os.path.join(HERE, a.series, "figures.json"), "w") as out:
        json.dump({"scenarios": SCENARIOS, "ramp_per_s": RAMP_PER_S, "runs": results}, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
