#!/usr/bin/env python3
"""Runs the same scenarios against our router, Nchan, Pushpin and the raw baseline, side by side.

Builds nothing: expects target/release/router and target/release/loadgen (`cargo build
--release -p router -p loadgen`). Installs Nchan and Pushpin with apt-get when missing
(scripts/peers.py). Every target is started fresh for every run (start, run, stop), so its
memory figures are clean. Writes results/compare/<UTC date>/comparison.md (tables, ratios,
environment, commands), comparison.json, one folder per run
(<scenario>/<transport>/<target>/: summary.json, latency.hlog, loadgen.log, command.txt) and
one latency SVG per latency scenario and transport.

Scenarios (sizes overridable by flags; --quick shrinks everything about 10x):
  idle        --live 0 --idle 10000: memory per idle tunnel and connect rate
  saturation  --live 1000 --paths 10 --rate 36000 (3.6M deliveries/s offered) for 4 s,
              --drain-ms 40000: the most deliveries/s each target sustains, and its losses
              (600k/s and then 2.4M/s stopped saturating the router or the raw baseline
              here once both coalesce a publisher's pipelined burst; the backlog above
              capacity needs the long drain: Nchan takes ~30 s for its 14.4M deliveries)
  fixed       --live 10000 --paths 1000 --rate 2000 (20,000 deliveries/s) for 10 s:
              latency percentiles, gaps and duplicates

    python3 scripts/compare.py                      # everything, ~10 minutes
    python3 scripts/compare.py --quick              # smoke test, ~2 minutes
    python3 scripts/compare.py --targets router,nchan --scenarios fixed --transports sse

A target that cannot be installed, started or measured is recorded as failed in the tables;
the other runs go on.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

ALL_TARGETS = ["router", "nchan", "pushpin", "baseline"]
ALL_TRANSPORTS = ["sse", "ws"]
ALL_SCENARIOS = ["idle", "saturation", "fixed"]
# Transports each target is run with (Pushpin serves SSE only in this set-up).
SUPPORTED = {"router": {"sse", "ws"}, "nchan": {"sse", "ws"}, "pushpin": {"sse"}, "baseline": {"sse", "ws"}}
OURS = "router"


# ---------------------------------------------------------------------------------------------
# Metrics: label, which direction is better ("lower", "higher" or None), getter, formatter.

def g(*keys):
    def get(s):
        for k in keys:
            if not isinstance(s, dict) or s.get(k) is None:
                return None
            s = s[k]
        return s
    return get


def pct(num_get, den_get):
    def get(s):
        n, d = num_get(s), den_get(s)
        return None if n is None or not d else 100.0 * n / d
    return get


def fmt_int(v):
    return f"{v:,.0f}"


def fmt_kb(v):
    return f"{v / 1000:,.2f} KB"


def fmt_mb(v):
    return f"{v / 1e6:,.1f} MB"


def fmt_ms(v):
    return f"{v / 1000:,.2f} ms"


def fmt_pct(v):
    return f"{v:.2f} %"


LOSSES = [
    ("tunnels failed", None, g("tunnels_failed"), fmt_int),
    ("tunnels lost", None, g("tunnels_lost"), fmt_int),
    ("publishes failed", None, g("publishes_failed"), fmt_int),
    ("gaps", None, g("sequence", "gaps"), fmt_int),
    ("duplicates", None, g("sequence", "duplicates"), fmt_int),
    ("out of order", None, g("sequence", "out_of_order"), fmt_int),
]

IDLE_METRICS = [
    ("tunnels open", None, g("tunnels_open"), fmt_int),
    ("memory per idle tunnel", "lower", g("memory", "per_tunnel_bytes"), fmt_kb),
    ("memory before tunnels", None, g("memory", "rss_before_bytes"), fmt_mb),
    ("memory after tunnels", None, g("memory", "rss_after_bytes"), fmt_mb),
    ("connect rate (tunnels/s)", "higher", g("connect_rate_per_s"), fmt_int),
    ("ramp (ms)", "lower", g("ramp_ms"), fmt_int),
    ("tunnels failed", None, g("tunnels_failed"), fmt_int),
    ("tunnels lost", None, g("tunnels_lost"), fmt_int),
]

SATURATION_METRICS = [
    ("deliveries/s", "higher", g("deliveries_per_s"), fmt_int),
    ("deliveries", "higher", g("deliveries"), fmt_int),
    ("deliveries expected", None, g("deliveries_expected"), fmt_int),
    ("delivered share", "higher", pct(g("deliveries"), g("deliveries_expected")), fmt_pct),
    ("publishes accepted", "higher", g("publishes_accepted"), fmt_int),
    ("publishes sent", None, g("publishes_sent"), fmt_int),
    ("publishes skipped", None, g("publishes_skipped"), fmt_int),
    ("delivery window (s)", None, g("delivery_window_s"), lambda v: f"{v:.2f}"),
    ("latency p50", "lower", g("latency_us", "p50_us"), fmt_ms),
    ("latency p99", "lower", g("latency_us", "p99_us"), fmt_ms),
] + LOSSES

FIXED_METRICS = [
    ("latency p50", "lower", g("latency_us", "p50_us"), fmt_ms),
    ("latency p90", "lower", g("latency_us", "p90_us"), fmt_ms),
    ("latency p99", "lower", g("latency_us", "p99_us"), fmt_ms),
    ("latency p99.9", "lower", g("latency_us", "p99_9_us"), fmt_ms),
    ("latency max", "lower", g("latency_us", "max_us"), fmt_ms),
    ("deliveries/s", "higher", g("deliveries_per_s"), fmt_int),
    ("delivered share", "higher", pct(g("deliveries"), g("deliveries_expected")), fmt_pct),
    ("memory per tunnel (10k live)", "lower", g("memory", "per_tunnel_bytes"), fmt_kb),
] + LOSSES


# ---------------------------------------------------------------------------------------------
# Scenarios: each returns what to run; sizes come from the flags.

def scenario_idle(a):
    q = 10 if a.quick else 1
    return {
        "name": "idle", "title": "Idle memory and connect rate",
        "what": "idle tunnels only: memory growth per tunnel of the target's processes (with descendants) "
                "and how fast the tunnels open. The connect rate cannot exceed the offered `--ramp-per-s`: "
                f"Pushpin is offered {a.pushpin_ramp_per_s}/s because above about 1000/s it refuses a share of "
                "new subscribers here (502 `Error while proxying to origin.`, 500 `Accept service unavailable.`)",
        "params": {"live": 0, "idle": a.idle_tunnels // q, "paths": 1, "rate": 1, "duration_s": 1,
                   "drain_ms": None},
        "metrics": IDLE_METRICS, "latency_plot": False,
    }


def scenario_saturation(a):
    q = 10 if a.quick else 1
    # --quick keeps the offered publish rate: with a tenth of the tunnels it still saturates less,
    # but it still exercises the overload path.
    live, paths, rate = a.sat_live // q, a.sat_paths, a.sat_rate
    return {
        "name": "saturation", "title": "Saturation (offered load above every target's capacity)",
        "what": f"{live} live tunnels over {paths} paths (fan-out {live // max(paths, 1)}), {rate} publishes/s "
                f"= {rate * live // max(paths, 1):,} deliveries/s offered",
        "params": {"live": live, "idle": 0, "paths": paths, "rate": rate,
                   "duration_s": max(2, a.sat_duration_s // (3 if a.quick else 1)),
                   "drain_ms": a.sat_drain_ms // (2 if a.quick else 1)},
        "metrics": SATURATION_METRICS, "latency_plot": True,
    }


def scenario_fixed(a):
    q = 10 if a.quick else 1
    live, paths, rate = a.fixed_live // q, a.fixed_paths // q, a.fixed_rate // q
    return {
        "name": "fixed", "title": "Fixed moderate load (latency)",
        "what": f"{live} live tunnels over {paths} paths (fan-out {live // max(paths, 1)}), {rate} publishes/s "
                f"= {rate * live // max(paths, 1):,} deliveries/s",
        "params": {"live": live, "idle": 0, "paths": paths, "rate": rate,
                   "duration_s": max(2, a.fixed_duration_s // (3 if a.quick else 1)),
                   "drain_ms": a.fixed_drain_ms},
        "metrics": FIXED_METRICS, "latency_plot": True,
    }


SCENARIOS = {"idle": scenario_idle, "saturation": scenario_saturation, "fixed": scenario_fixed}


# ---------------------------------------------------------------------------------------------
# Running.

def ramp_for(a, target):
    return a.pushpin_ramp_per_s if target == "pushpin" else a.ramp_per_s


def loadgen_cmd(a, scen, transport, target, tgt=None, run_dir=None):
    """The loadgen command for one run; with tgt None, a template with placeholders."""
    p = scen["params"]
    if tgt is None:
        addr, pub, pids, out = "<target>", "<publish>", "<pids>", "<run folder>"
    else:
        addr, pub = f"127.0.0.1:{tgt.port}", f"127.0.0.1:{tgt.publish_port}"
        pids, out = ",".join(str(x) for x in tgt.pids()), peers.relative(run_dir)
    cmd = [peers.relative(a.loadgen) if tgt is not None else "loadgen", "--target", addr, "--publish-to", pub,
           "--peer", target if tgt is not None else "<peer>", "--transport", transport,
           "--live", str(p["live"]), "--idle", str(p["idle"]), "--paths", str(p["paths"]),
           "--rate", str(p["rate"]), "--duration-s", str(p["duration_s"]),
           "--ramp-per-s", str(ramp_for(a, target)) if tgt is not None else "<ramp>"]
    if p.get("drain_ms") is not None:
        cmd += ["--drain-ms", str(p["drain_ms"])]
    cmd += ["--pid", pids, "--label", target if tgt is not None else "<peer>", "--out", out]
    return cmd + a.loadgen_args


def run_timeout(a, scen, target):
    """A bound on one loadgen run: its own length plus the tunnels at the slowest connect rate we
    accept from this target, plus a margin."""
    p = scen["params"]
    slowest = a.pushpin_min_connect_per_s if target == "pushpin" else a.min_connect_per_s
    return (a.run_margin_s + p["duration_s"] + (p.get("drain_ms") or 1000) / 1000
            + (p["live"] + p["idle"]) / slowest)


LOG_KEEP_BYTES = 64 * 1024


def copy_log(src, dst):
    """Copies a target's log into the results, keeping only its last LOG_KEEP_BYTES (an
    overloaded peer can log hundreds of megabytes of the same warning), scrubbed of this
    machine's folders."""
    if not os.path.exists(src) or os.path.getsize(src) == 0:
        return
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        head = ""
        if size > LOG_KEEP_BYTES:
            f.seek(size - LOG_KEEP_BYTES)
            f.readline()  # start at a line boundary
            head = f"[{size:,} bytes in all; the last {LOG_KEEP_BYTES // 1024} KiB follow]\n"
        text = f.read().decode("utf-8", errors="replace")
    with open(dst, "w") as out:
        out.write(head + peers.scrub(text))


def run_one(a, scen, transport, target, run_dir, install_errors):
    """Starts the target fresh, runs loadgen against it, stops it. Returns a record."""
    rec = {"scenario": scen["name"], "transport": transport, "target": target, "run_dir": run_dir,
           "status": "ok", "error": None, "summary": None, "target_command": None, "notes": "",
           "command": None, "wall_s": None, "rc": None}
    if target in install_errors:
        rec.update(status="failed", error=f"not installable: {install_errors[target]}")
        return rec
    tgt = peers.make_target(target, router=a.router, loadgen=a.loadgen, pushpin_port=a.pushpin_port,
                            pushpin_publish_port=a.pushpin_publish_port, router_args=a.router_args)
    try:
        with tgt:
            rec["target_command"], rec["notes"] = tgt.command, tgt.notes
            time.sleep(a.settle_s)
            cmd = loadgen_cmd(a, scen, transport, target, tgt, run_dir)
            rec["command"] = " ".join(cmd)
            r = peers.run_loadgen(cmd, run_dir, run_timeout(a, scen, target))
            # The target's own logs, for the record.
            for name in ("router.log", "baseline.log", "error.log", "pushpin.out", "origin.log"):
                copy_log(os.path.join(tgt.dir, name), os.path.join(run_dir, f"target-{name}"))
            log_dir = os.path.join(tgt.dir, "log")
            if target == "pushpin" and os.path.isdir(log_dir):
                os.makedirs(os.path.join(run_dir, "target-logs"), exist_ok=True)
                for name in os.listdir(log_dir):
                    copy_log(os.path.join(log_dir, name), os.path.join(run_dir, "target-logs", name))
            alive = all(peers.start_time(pid) is not None for pid in tgt.pids()[:1])
    except peers.PeerError as e:
        rec.update(status="failed", error=str(e))
        return rec
    rec["wall_s"], rec["rc"], rec["summary"] = r["wall_s"], r["rc"], r["summary"]
    if r["timed_out"]:
        rec.update(status="failed", error=f"loadgen did not finish within {run_timeout(a, scen, target):.0f} s "
                                          "(killed)", tail=r["tail"])
    elif r["summary"] is None:
        rec.update(status="failed", error=f"loadgen exited with status {r['rc']} and no summary.json",
                   tail=r["tail"])
    elif r["rc"] not in (0, peers.LOADGEN_LOSSES):
        # Status 3 (losses) is flagged below from the summary's own counts.
        rec.update(status="flagged", error=f"loadgen exited with status {r['rc']} (figures kept)", tail=r["tail"])
    if not alive and rec["status"] == "ok":
        rec.update(status="flagged", error="the target was gone when the run ended")
    if rec["status"] == "ok":
        warn = losses(scen, r["summary"])
        if warn:
            rec.update(status="flagged", error=warn, tail=r["tail"])
    return rec


def losses(scen, s):
    """A short description of what went missing in a run whose loadgen finished (status 0, or 3
    for losses), or ''."""
    p = scen["params"]
    out = []
    planned = p["rate"] * p["duration_s"]
    sent = s.get("publishes_sent")
    if sent is not None and planned > 10 and sent < 0.95 * planned:
        out.append(f"{sent} of {planned} planned publishes sent")
    for label, get in (("tunnels failed", g("tunnels_failed")), ("tunnels lost", g("tunnels_lost")),
                       ("publishes failed", g("publishes_failed")), ("publishes skipped", g("publishes_skipped")),
                       ("gaps", g("sequence", "gaps")),
                       ("duplicates", g("sequence", "duplicates")), ("out of order", g("sequence", "out_of_order"))):
        v = get(s)
        if v:
            out.append(f"{v:,} {label}")
    d, e = s.get("deliveries"), s.get("deliveries_expected")
    if d is not None and e and d < e:
        out.append(f"{d:,} of {e:,} deliveries")
    return "losses: " + ", ".join(out) if out else ""


def plot(a, scen, transport, records, out_dir):
    dirs = [f"{r['target']}={r['run_dir']}" for r in records
            if r["summary"] is not None and os.path.exists(os.path.join(r["run_dir"], "latency.hlog"))]
    if not dirs:
        return None, "no run with a latency log"
    svg = os.path.join(out_dir, f"{scen['name']}-{transport}-latency.svg")
    title = f"{scen['title']}: {transport}, {scen['what']}"
    cmd = [a.loadgen, "plot", "--out", svg, "--title", title] + dirs
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"`loadgen plot` failed: {e}"
    if r.returncode != 0 or not os.path.exists(svg):
        tail = " / ".join((r.stdout + r.stderr).strip().splitlines()[-5:])
        return None, f"`loadgen plot` exited with status {r.returncode}: {tail}"
    return svg, None


# ---------------------------------------------------------------------------------------------
# Report.

def ratio_text(ours, theirs):
    if ours is None or theirs is None or theirs == 0:
        return "—"
    return f"{ours / theirs:.2f}×"


def status_cell(rec):
    if rec is None:
        return "not run"
    if rec["status"] == "ok":
        return "ok"
    short = rec["error"].splitlines()[0]
    return ("FAILED: " if rec["status"] == "failed" else "⚠ ") + short.replace("|", "\\|")[:120]


def scenario_table(scen, transport, records):
    """Metrics as rows, targets as columns, then the ratios ours/peer."""
    targets = list(records)
    others = [t for t in targets if t != OURS] if OURS in targets else []
    head = ["metric (better)"] + targets + [f"{OURS}/{t}" for t in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
             "| status | " + " | ".join([status_cell(records[t]) for t in targets] + [""] * len(others)) + " |"]
    for label, better, get, fmt in scen["metrics"]:
        vals = {t: get(records[t]["summary"]) if records[t]["summary"] else None for t in targets}
        if all(v is None for v in vals.values()):
            continue
        row = [f"{label} ({better} is better)" if better else label]
        row += [fmt(vals[t]) if vals[t] is not None else "—" for t in targets]
        row += [ratio_text(vals[OURS], vals[t]) if better else "" for t in others]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def environment(records):
    env = next((r["summary"].get("environment") for r in records if r["summary"] and
                isinstance(r["summary"].get("environment"), dict)), None) or {}
    cpu = env.get("cpu_model") or next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                        if l.startswith("model name")), "unknown")
    out = {
        "kernel": env.get("kernel") or platform.release(),
        "cpu": cpu,
        "cores": env.get("cores") or os.cpu_count(),
        "open files limit": env.get("nofile_limit"),
        "git revision": env.get("git_revision") or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=peers.ROOT).stdout.strip(),
        "source": "summary.json" if env else "this script (no summary.json had an environment)",
    }
    method = next((r["summary"]["memory"].get("method") for r in records if r["summary"]
                   and isinstance(r["summary"].get("memory"), dict) and r["summary"]["memory"].get("method")), None)
    if method:
        out["memory measured as"] = method
    for pkg in ("nginx-light", "libnginx-mod-nchan", "pushpin"):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "not installed"
    return out


def write_report(a, out_dir, scens, records, plots, install_errors, started_utc, wall_s):
    env = environment(records)
    by = {}
    for r in records:
        by.setdefault((r["scenario"], r["transport"]), {})[r["target"]] = r
    L = [f"# Side-by-side comparison: {', '.join(a.targets)}", "",
         f"Run {started_utc:%Y-%m-%d %H:%M} UTC, {wall_s / 60:.1f} minutes"
         + (" (**--quick**: sizes about 10x smaller, not for citing)" if a.quick else "") + ".",
         f"Command: `python3 scripts/compare.py {' '.join(sys.argv[1:])}`", "",
         "Every target was started fresh for every run (start, run, stop), on loopback, on the same machine, "
         "driven by the same `loadgen`. Memory is what loadgen samples for the target's processes "
         "(with their descendants) before and after the tunnels open; for Pushpin that is the runner, condure, "
         "zurl, pushpin-proxy and pushpin-handler, not the GRIP origin. Ratios are "
         f"`{OURS}/peer`: below 1 is better for lower-is-better metrics, above 1 for higher-is-better ones. "
         "Status ⚠ marks a run with figures but something missing or refused (see Failures and warnings).", "",
         "## Environment", ""]
    for k, v in env.items():
        L.append(f"- {k}: {v}")
    L += ["", "## Targets", ""]
    seen = set()
    for r in records:
        if r["target"] not in seen and r["target_command"]:
            seen.add(r["target"])
            L.append(f"- **{r['target']}**: `{r['target_command']}`"
                     + (f". {r['notes']}" if r["notes"] and r["target"] != "pushpin" else ""))
    for t, err in install_errors.items():
        L.append(f"- **{t}**: not installable: {err}")
    if "pushpin" in a.targets:
        L += ["", f"**Pushpin note**: {peers.PUSHPIN_NOTES}"]
    for scen in scens:
        L += ["", f"## {scen['title']}", "", scen["what"] + ".", "", "```",
              " ".join(loadgen_cmd(a, scen, "<transport>", "<peer>")), "```",
              f"`--ramp-per-s` {a.ramp_per_s} (pushpin {a.pushpin_ramp_per_s}); each run bounded by its length plus "
              f"its tunnels at {a.min_connect_per_s}/s (pushpin {a.pushpin_min_connect_per_s}/s) plus "
              f"{a.run_margin_s:.0f} s."]
        for transport in a.transports:
            recs = by.get((scen["name"], transport))
            if not recs:
                continue
            L += ["", f"### {transport}", "", scenario_table(scen, transport, recs)]
            svg = plots.get((scen["name"], transport))
            if svg and svg[0]:
                L += ["", f"![{scen['name']} {transport} latency]({os.path.relpath(svg[0], out_dir)})"]
            elif svg:
                L += ["", f"(no plot: {svg[1]})"]
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        L += ["", "## Failures and warnings", ""]
        for r in bad:
            L.append(f"- {r['scenario']} / {r['transport']} / {r['target']}: {r['error']}")
            if r.get("tail"):
                L += ["", "  ```"] + ["  " + t for t in r["tail"][-12:]] + ["  ```", ""]
    L += ["", "## Runs", "", "| scenario | transport | target | status | loadgen exit | wall (s) | folder |",
          "|---|---|---|---|---|---|---|"]
    for r in records:
        L.append(f"| {r['scenario']} | {r['transport']} | {r['target']} | {r['status']} | "
                 f"{'—' if r['rc'] is None else r['rc']} | {r['wall_s'] or '—'} | {os.path.relpath(r['run_dir'], out_dir)} |")
    path = os.path.join(out_dir, "comparison.md")
    with open(path, "w") as f:
        f.write(peers.scrub("\n".join(L) + "\n"))
    with open(os.path.join(out_dir, "comparison.json"), "w") as f:
        f.write(peers.scrub(json.dumps(
            {"command": " ".join(sys.argv), "started_utc": started_utc.isoformat(), "environment": env,
             "scenarios": [{k: v for k, v in s.items() if k != "metrics"} for s in scens],
             "install_errors": install_errors,
             "runs": [{k: v for k, v in r.items()} for r in records]}, indent=1, default=str)) + "\n")
    return path


# ---------------------------------------------------------------------------------------------

def out_folder(requested, now):
    if requested:
        return requested
    base = os.path.join(peers.ROOT, "results", "compare", now.strftime("%Y-%m-%d"))
    path, n = base, 2
    while os.path.exists(path):
        path, n = f"{base}-{n}", n + 1
    return path


def csv(choices):
    def parse(s):
        items = [x.strip() for x in s.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(choices)}, got {s!r}")
        return items
    return parse


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[1:]),
                                formatter_class=Formatter)
    p.add_argument("--targets", type=csv(ALL_TARGETS), default=",".join(ALL_TARGETS),
                   help="targets to run")
    p.add_argument("--transports", type=csv(ALL_TRANSPORTS), default=",".join(ALL_TRANSPORTS),
                   help="pushpin: sse only")
    p.add_argument("--scenarios", type=csv(ALL_SCENARIOS), default=",".join(ALL_SCENARIOS),
                   help="scenarios to run")
    p.add_argument("--quick", action="store_true", help="shrink every scenario about 10x (smoke test, not for citing)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when any run failed (not only when all did): for CI smoke runs")
    p.add_argument("--router", default="target/release/router", help="router binary (relative: to the repo)")
    p.add_argument("--loadgen", default="target/release/loadgen", help="loadgen binary")
    p.add_argument("--out", help="results folder; by default results/compare/<UTC date> (-2, -3... if taken)")
    g_ = p.add_argument_group("idle scenario")
    g_.add_argument("--idle-tunnels", type=int, default=10000, help="idle tunnels per run")
    g_ = p.add_argument_group("saturation scenario")
    g_.add_argument("--sat-live", type=int, default=1000, help="live tunnels")
    g_.add_argument("--sat-paths", type=int, default=10, help="paths (fan-out = live / paths)")
    g_.add_argument("--sat-rate", type=int, default=36000, help="publishes/s offered")
    g_.add_argument("--sat-duration-s", type=int, default=4, help="publishing time")
    g_.add_argument("--sat-drain-ms", type=int, default=40000, help="wait for stragglers after the last publish")
    g_ = p.add_argument_group("fixed-load scenario")
    g_.add_argument("--fixed-live", type=int, default=10000, help="live tunnels")
    g_.add_argument("--fixed-paths", type=int, default=1000, help="paths (fan-out = live / paths)")
    g_.add_argument("--fixed-rate", type=int, default=2000, help="publishes/s")
    g_.add_argument("--fixed-duration-s", type=int, default=10, help="publishing time")
    g_.add_argument("--fixed-drain-ms", type=int, default=2000, help="wait for stragglers after the last publish")
    g_ = p.add_argument_group("pacing and bounds")
    g_.add_argument("--ramp-per-s", type=int, default=20000, help="tunnel connects/s offered")
    g_.add_argument("--pushpin-ramp-per-s", type=int, default=1000, help="for Pushpin")
    g_.add_argument("--min-connect-per-s", type=float, default=500,
                    help="slowest connect rate a run is allowed before it is killed")
    g_.add_argument("--pushpin-min-connect-per-s", type=float, default=50, help="same for Pushpin")
    g_.add_argument("--run-margin-s", type=float, default=60, help="added to every run's bound")
    g_.add_argument("--settle-s", type=float, default=1.0, help="wait after a target starts")
    g_ = p.add_argument_group("targets")
    g_.add_argument("--pushpin-port", type=int, default=7999, help="Pushpin client port")
    g_.add_argument("--pushpin-publish-port", type=int, default=5561, help="Pushpin HTTP publish port")
    g_.add_argument("--router-args", type=shlex.split, default=[], metavar="'ARGS'",
                    help="extra router arguments, e.g. --router-args '--keepalive-ms 600000'")
    g_.add_argument("--loadgen-args", type=shlex.split, default=[], metavar="'ARGS'",
                    help="extra arguments for every loadgen run, e.g. --loadgen-args '--processes 2'")
    a = p.parse_args()

    a.router, a.loadgen = peers.repo_path(a.router), peers.repo_path(a.loadgen)
    missing = [b for b in (a.router, a.loadgen) if not os.access(b, os.X_OK)]
    if missing:
        sys.exit(f"compare: {', '.join(missing)} missing: run `cargo build --release -p router -p loadgen` first")
    peers.raise_nofile_limit()
    peers.exit_on_signals()
    now = datetime.datetime.now(datetime.timezone.utc)
    out_dir = os.path.abspath(out_folder(a.out, now))
    os.makedirs(out_dir, exist_ok=True)

    install_errors = {}
    for t in ("nchan", "pushpin"):
        if t in a.targets:
            try:
                peers.ensure_installed((t,))
            except peers.PeerError as e:
                install_errors[t] = str(e)
                print(f"compare: {t} not installable, recorded as failed: {e}", file=sys.stderr)

    scens = [SCENARIOS[s](a) for s in a.scenarios]
    plan = [(scen, tr, t) for scen in scens for tr in a.transports for t in a.targets if tr in SUPPORTED[t]]
    records, plots = [], {}
    started = time.monotonic()
    for i, (scen, transport, target) in enumerate(plan, 1):
        run_dir = os.path.join(out_dir, scen["name"], transport, target)
        print(f"[{i}/{len(plan)}] {scen['name']} {transport} {target} ...", flush=True)
        rec = run_one(a, scen, transport, target, run_dir, install_errors)
        records.append(rec)
        s = rec["summary"] or {}
        lat = s.get("latency_us") or {}
        mem = s.get("memory") or {}
        print(f"    {rec['status']}{': ' + rec['error'] if rec['error'] else ''}"
              + (f" | open {peers.count(s.get('tunnels_open'))}/{peers.count(s.get('tunnels_attempted'))}, "
                 f"{peers.count(s.get('deliveries_per_s'))} deliveries/s, p99 {peers.ms(lat.get('p99_us'))}, "
                 f"{peers.size(mem.get('per_tunnel_bytes'))} per tunnel, "
                 f"{peers.count(s.get('connect_rate_per_s'))} connects/s" if s else ""), flush=True)
        if rec.get("tail") and rec["status"] != "ok":
            print("    loadgen output (tail):\n      " + "\n      ".join(rec["tail"]), file=sys.stderr, flush=True)
    for scen in scens:
        if not scen["latency_plot"]:
            continue
        for transport in a.transports:
            recs = [r for r in records if r["scenario"] == scen["name"] and r["transport"] == transport]
            if recs:
                plots[(scen["name"], transport)] = plot(a, scen, transport, recs, out_dir)
    path = write_report(a, out_dir, scens, records, plots, install_errors, now, time.monotonic() - started)
    failed = [r for r in records if r["status"] == "failed"]
    print(f"compare: {len(records) - len(failed)}/{len(records)} runs produced figures; results in {out_dir}")
    print(f"compare: report {path}")
    for (name, transport), (svg, err) in plots.items():
        print(f"compare: plot {name} {transport}: {svg or err}")
    if a.strict and failed:
        sys.exit(f"compare: --strict: {len(failed)} run(s) failed: "
                 + ", ".join(f"{r['scenario']}/{r['transport']}/{r['target']}" for r in failed))
    sys.exit(1 if records and len(failed) == len(records) else 0)


if __name__ == "__main__":
    main()
