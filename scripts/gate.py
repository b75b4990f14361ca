#!/usr/bin/env python3
"""The CI latency-regression gate: our router against the raw baseline, as ratios.

Builds nothing: expects target/release/router and target/release/loadgen (`cargo build
--release -p router -p loadgen`). In one run it starts, each fresh per step, our router and
the raw baseline (`loadgen baseline`) and runs the same small scenario against both:

  fixed       SSE, 500 live tunnels, 20 paths, 400 publishes/s (10,000 deliveries/s), 5 s
  saturation  the same tunnels, 100,000 publishes/s offered (2,500,000 deliveries/s), 2 s
              (the router delivered 0.91-0.96 of that here, the baseline all of it: a ratio
              near 1 means the router is close to the load, a regression pulls it down)

and computes two ratios, router/baseline: p99 latency at the fixed load (lower is better)
and deliveries/s at saturation (higher is better). Comparing with the baseline machine's own
figures in the same run cancels most of the machine's speed. The scenario runs twice (if the
time budget allows) and the better ratio of each kind is kept, to damp noise.

The ratios are compared with results/gate/baseline.json; the gate fails (exit 1) when the
p99 ratio grew by more than --p99-tolerance (default +50%, relative) or the deliveries ratio
dropped by more than --deliveries-tolerance (default -35%), or when a fixed-load run fails.
The deliveries tolerance is wide because the deliveries ratio of one round varied from 0.76
to 1.02 between runs on the same machine with the same code.

    python3 scripts/gate.py                 # compare with results/gate/baseline.json
    python3 scripts/gate.py --update        # run and record the ratios as the new baseline

Exit status: 0 pass, 1 regression or failed run, 2 cannot run (missing binaries, no
baseline.json, a scenario different from the recorded one).
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

TARGETS = ["router", "baseline"]
STEPS = ["fixed", "saturation"]  # fixed first: the cleanest conditions for the latency step


def die(msg, status=2):
    print(f"gate: {msg}", file=sys.stderr)
    sys.exit(status)


def scenario(a):
    common = {"transport": a.transport, "live": a.live, "idle": 0, "paths": a.paths, "ramp_per_s": a.ramp_per_s}
    return {
        "fixed": dict(common, rate=a.fixed_rate, duration_s=a.fixed_duration_s, drain_ms=a.fixed_drain_ms),
        "saturation": dict(common, rate=a.sat_rate, duration_s=a.sat_duration_s, drain_ms=a.sat_drain_ms),
    }


def step_cmd(a, params, tgt, target, run_dir):
    return [a.loadgen, "--target", f"127.0.0.1:{tgt.port}", "--publish-to", f"127.0.0.1:{tgt.publish_port}",
            "--peer", target, "--transport", params["transport"], "--live", str(params["live"]),
            "--idle", str(params["idle"]), "--paths", str(params["paths"]), "--rate", str(params["rate"]),
            "--duration-s", str(params["duration_s"]), "--drain-ms", str(params["drain_ms"]),
            "--ramp-per-s", str(params["ramp_per_s"]), "--label", target, "--out", run_dir]


def step_bound(params):
    """How long one step may take: its own length, the ramp at a tenth of the offered rate, a margin."""
    return (params["duration_s"] + params["drain_ms"] / 1000
            + 10 * (params["live"] + params["idle"]) / params["ramp_per_s"] + 30)


def run_step(a, params, target, run_dir, deadline):
    """Starts the target fresh, runs one loadgen step, stops the target. Returns the figures."""
    tgt = peers.make_target(target, router=a.router, loadgen=a.loadgen)
    bound = min(step_bound(params), max(5.0, deadline - time.monotonic()))
    try:
        with tgt:
            time.sleep(a.settle_s)
            r = peers.run_loadgen(step_cmd(a, params, tgt, target, run_dir), run_dir, bound)
    except peers.PeerError as e:
        return {"ok": False, "error": f"{target} did not start: {e}", "tail": []}
    s = r["summary"]
    if r["timed_out"]:
        return {"ok": False, "error": f"loadgen against {target} did not finish within {bound:.0f} s", "tail": r["tail"]}
    if s is None:
        return {"ok": False, "error": f"loadgen against {target} exited with status {r['rc']} and no summary.json",
                "tail": r["tail"]}
    lat, seq = s.get("latency_us") or {}, s.get("sequence") or {}
    # Status 3: finished with losses, which are judged from the figures.
    fig = {"ok": r["rc"] in (0, peers.LOADGEN_LOSSES), "rc": r["rc"], "wall_s": r["wall_s"], "run_dir": run_dir,
           "p50_us": lat.get("p50_us"), "p99_us": lat.get("p99_us"), "p99_9_us": lat.get("p99_9_us"),
           "deliveries_per_s": s.get("deliveries_per_s"), "deliveries": s.get("deliveries"),
           "deliveries_expected": s.get("deliveries_expected"), "tunnels_open": s.get("tunnels_open"),
           "tunnels_failed": s.get("tunnels_failed"), "tunnels_lost": s.get("tunnels_lost"),
           "publishes_failed": s.get("publishes_failed"), "gaps": seq.get("gaps"),
           "duplicates": seq.get("duplicates"), "out_of_order": seq.get("out_of_order")}
    if not fig["ok"]:
        fig.update(error=f"loadgen against {target} exited with status {r['rc']}", tail=r["tail"])
    return fig


def ratio(num, den):
    return None if num is None or not den else num / den


def run_round(a, params, work, n, deadline):
    figs = {}
    for step in STEPS:
        for target in TARGETS:
            run_dir = os.path.join(work, f"round{n}", step, target)
            f = run_step(a, params[step], target, run_dir, deadline)
            figs.setdefault(step, {})[target] = f
            if f.get("p99_us") is not None:
                print(f"gate: round {n} {step:<10} {target:<8} p99 {peers.ms(f['p99_us'])}, "
                      f"p50 {peers.ms(f['p50_us'])}, {peers.count(f['deliveries_per_s'])} deliveries/s "
                      f"({peers.count(f['deliveries'])}/{peers.count(f['deliveries_expected'])}), "
                      f"gaps {peers.count(f['gaps'])}, duplicates {peers.count(f['duplicates'])}, "
                      f"{f['wall_s']:.1f} s", flush=True)
            if f.get("error"):
                print(f"gate: round {n} {step} {target}: {f['error']}", file=sys.stderr)
                if f.get("tail"):
                    print("  loadgen output (tail):\n    " + "\n    ".join(f["tail"]), file=sys.stderr, flush=True)
    return {
        "figures": figs,
        "p99_ratio": ratio(figs["fixed"]["router"].get("p99_us"), figs["fixed"]["baseline"].get("p99_us")),
        "deliveries_ratio": ratio(figs["saturation"]["router"].get("deliveries_per_s"),
                                  figs["saturation"]["baseline"].get("deliveries_per_s")),
    }


def fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--router", default="target/release/router", help="router binary (default %(default)s)")
    p.add_argument("--loadgen", default="target/release/loadgen", help="loadgen binary (default %(default)s)")
    p.add_argument("--baseline-file", default="results/gate/baseline.json",
                   help="recorded ratios (default %(default)s)")
    p.add_argument("--update", action="store_true", help="record this run's ratios in --baseline-file")
    p.add_argument("--p99-tolerance", type=float, default=0.5,
                   help="fail when the p99 ratio exceeds the recorded one by more than this share (default %(default)s)")
    p.add_argument("--deliveries-tolerance", type=float, default=0.35,
                   help="fail when the deliveries/s ratio falls below the recorded one by more than this share "
                        "(default %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="rounds to run if time allows; the best ratio wins "
                                                        "(default %(default)s)")
    p.add_argument("--budget-s", type=float, default=270, help="time budget for all rounds (default %(default)s)")
    p.add_argument("--transport", default="sse", help="default %(default)s")
    p.add_argument("--live", type=int, default=500, help="live tunnels (default %(default)s)")
    p.add_argument("--paths", type=int, default=20, help="paths (default %(default)s)")
    p.add_argument("--fixed-rate", type=int, default=400, help="publishes/s at the fixed load (default %(default)s)")
    p.add_argument("--fixed-duration-s", type=int, default=5, help="default %(default)s")
    p.add_argument("--fixed-drain-ms", type=int, default=1000, help="default %(default)s")
    p.add_argument("--sat-rate", type=int, default=100000,
                   help="publishes/s offered at saturation (default %(default)s; 20000 stopped saturating here "
                        "once the router and the baseline coalesced pipelined publishes)")
    p.add_argument("--sat-duration-s", type=int, default=2, help="default %(default)s")
    p.add_argument("--sat-drain-ms", type=int, default=10000,
                   help="long enough for the backlog above capacity to arrive (default %(default)s)")
    p.add_argument("--ramp-per-s", type=int, default=20000, help="tunnel connects/s (default %(default)s)")
    p.add_argument("--settle-s", type=float, default=0.5, help="wait after a target starts (default %(default)s)")
    p.add_argument("--keep", metavar="DIR", help="keep every run's folder (summary.json, latency.hlog, loadgen.log) "
                                                "under DIR (default: a temporary folder, removed)")
    a = p.parse_args()

    a.router, a.loadgen = peers.repo_path(a.router), peers.repo_path(a.loadgen)
    missing = [b for b in (a.router, a.loadgen) if not os.access(b, os.X_OK)]
    if missing:
        die(f"{', '.join(missing)} missing: the gate builds nothing, run "
            "`cargo build --release -p router -p loadgen` first")
    baseline_path = peers.repo_path(a.baseline_file)
    recorded = None
    if not a.update:
        if not os.path.exists(baseline_path):
            die(f"{baseline_path} does not exist: record one with `python3 scripts/gate.py --update`")
        with open(baseline_path) as f:
            recorded = json.load(f)
    params = scenario(a)
    if recorded is not None and recorded.get("scenario") != params:
        die(f"this run's scenario differs from the one recorded in {baseline_path}:\n"
            f"  recorded {json.dumps(recorded.get('scenario'), sort_keys=True)}\n"
            f"  this run {json.dumps(params, sort_keys=True)}\n"
            "  run with the recorded flags, or record a new baseline with --update")

    peers.raise_nofile_limit()
    peers.exit_on_signals()
    started = time.monotonic()
    deadline = started + a.budget_s
    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="gate-")
    rounds = []
    try:
        for n in range(1, a.rounds + 1):
            if rounds:
                per_round = (time.monotonic() - started) / len(rounds)
                if time.monotonic() + per_round * 1.2 > deadline:
                    print(f"gate: skipping round {n}: a round takes {per_round:.0f} s and the budget of "
                          f"{a.budget_s:.0f} s would be exceeded")
                    break
            rounds.append(run_round(a, params, work, n, deadline))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    problems = []
    # A failed fixed-load run is a failure whatever the ratios say: something was lost or refused.
    for i, r in enumerate(rounds, 1):
        for target, f in r["figures"]["fixed"].items():
            if not f.get("ok"):
                problems.append(f"round {i}: the fixed-load run against {target} failed: {f.get('error')}")
            lost = [f"{f[k]} {k.replace('_', ' ')}" for k in ("tunnels_failed", "tunnels_lost", "publishes_failed",
                                                               "gaps", "duplicates", "out_of_order") if f.get(k)]
            if f.get("deliveries") is not None and f.get("deliveries_expected") and \
                    f["deliveries"] < f["deliveries_expected"]:
                lost.append(f"{f['deliveries']} of {f['deliveries_expected']} deliveries")
            if lost:
                problems.append(f"round {i}: the fixed-load run against {target} lost or refused something: "
                                + ", ".join(lost))
        for target, f in r["figures"]["saturation"].items():
            if f.get("deliveries_per_s") is None:
                problems.append(f"round {i}: the saturation run against {target} failed: {f.get('error')}")
    p99s = [r["p99_ratio"] for r in rounds if r["p99_ratio"] is not None]
    dels = [r["deliveries_ratio"] for r in rounds if r["deliveries_ratio"] is not None]
    best_p99 = min(p99s) if p99s else None
    best_del = max(dels) if dels else None
    print(f"gate: {len(rounds)} round(s) in {time.monotonic() - started:.0f} s; router/baseline p99 ratio per round "
          f"{', '.join(fmt(x) for x in p99s) or '—'}; deliveries/s ratio per round "
          f"{', '.join(fmt(x) for x in dels) or '—'}")
    if best_p99 is None or best_del is None:
        problems.append("no round produced both ratios")

    if a.update:
        if problems:
            die("not recording a baseline from a failed run:\n  " + "\n  ".join(problems), 1)
        record = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "python3 scripts/gate.py " + " ".join(sys.argv[1:]),
            "git_revision": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=peers.ROOT).stdout.strip(),
            "scenario": params,
            "ratios": {"p99_fixed_router_over_baseline": best_p99,
                       "deliveries_per_s_saturation_router_over_baseline": best_del},
            "rounds": [{"p99_ratio": r["p99_ratio"], "deliveries_ratio": r["deliveries_ratio"],
                        "figures": {step: {t: {k: v for k, v in f.items() if k not in ("tail", "run_dir")}
                                           for t, f in targets.items()}
                                    for step, targets in r["figures"].items()}} for r in rounds],
        }
        os.makedirs(os.path.dirname(baseline_path), exist_ok=True)
        with open(baseline_path, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        print(f"gate: recorded p99 ratio {fmt(best_p99)} and deliveries/s ratio {fmt(best_del)} in {baseline_path}")
        return

    want = recorded["ratios"]
    base_p99 = want["p99_fixed_router_over_baseline"]
    base_del = want["deliveries_per_s_saturation_router_over_baseline"]
    p99_limit = base_p99 * (1 + a.p99_tolerance)
    del_limit = base_del * (1 - a.deliveries_tolerance)
    print(f"gate: p99 at the fixed load, router/baseline (lower is better): measured {fmt(best_p99)}, "
          f"recorded {fmt(base_p99)} on {recorded.get('date')}, limit {fmt(p99_limit)} (+{a.p99_tolerance:.0%})")
    print(f"gate: deliveries/s at saturation, router/baseline (higher is better): measured {fmt(best_del)}, "
          f"recorded {fmt(base_del)}, limit {fmt(del_limit)} (-{a.deliveries_tolerance:.0%})")
    if best_p99 is not None and best_p99 > p99_limit:
        problems.append(f"p99 latency regressed: the router/baseline p99 ratio at the fixed load is {fmt(best_p99)}, "
                        f"the recorded ratio is {fmt(base_p99)}; tolerance +{a.p99_tolerance:.0%} allows up to "
                        f"{fmt(p99_limit)}")
    if best_del is not None and best_del < del_limit:
        problems.append(f"throughput regressed: the router/baseline deliveries/s ratio at saturation is "
                        f"{fmt(best_del)}, the recorded ratio is {fmt(base_del)}; tolerance "
                        f"-{a.deliveries_tolerance:.0%} allows down to {fmt(del_limit)}")
    if problems:
        print("gate: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)
    print("gate: passed")


if __name__ == "__main__":
    main()
