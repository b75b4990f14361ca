#!/usr/bin/env python3
"""A capacity-planning run: many tunnels, mostly idle, some live, one command.

Starts enough router processes to hold the tunnels under this machine's open-files limit
(one process per --per-router tunnels, each on its own port; a production box raises the
limit and runs one process), then runs loadgen against all of them: tunnels spread over the
routers and over source addresses in 127.0.0.0/8, every publish sent to every router.
Writes the loadgen results (summary.json with router memory per tunnel, latency.hlog) and a
percentile plot to --out, and prints loadgen's one-line summary.

    cargo build --release
    python3 scripts/capacity.py --tunnels 200000 --live 2000 --out results/capacity/200k
"""
import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

LOADGEN = os.path.join(peers.ROOT, "target", "release", "loadgen")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tunnels", type=int, default=200_000, help="tunnels in all (live + idle)")
    parser.add_argument("--live", type=int, default=2000, help="live tunnels among them")
    parser.add_argument("--zombie-fraction", type=float, default=0.1,
                        help="share of the idle tunnels that never read")
    parser.add_argument("--transport", default="ws:1,sse:1", help="loadgen --transport mix")
    parser.add_argument("--paths", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000, help="publishes per second (to each router)")
    parser.add_argument("--duration-s", type=int, default=20)
    parser.add_argument("--ramp-per-s", type=float, default=10_000)
    parser.add_argument("--per-router", type=int, default=18_500,
                        help="tunnels per router process (below the open-files limit)")
    parser.add_argument("--shards", type=int, default=1, help="shards per router process")
    parser.add_argument("--sources", default="127.0.1.1-127.0.1.8",
                        help="loadgen source addresses")
    parser.add_argument("--base-port", type=int, default=18500)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    if not os.access(LOADGEN, os.X_OK):
        sys.exit(f"capacity: {LOADGEN} is missing; run `cargo build --release` first")
    if not 0 < args.live <= args.tunnels:
        sys.exit("capacity: --live must be 1..=--tunnels")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and args.per_router + 500 > hard:
        sys.exit(f"capacity: --per-router {args.per_router} does not fit the open-files limit {hard}")

    routers = max(1, math.ceil(args.tunnels / args.per_router))
    ports = [args.base_port + i for i in range(routers)]
    os.makedirs(args.out, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            routers_up = [stack.enter_context(peers.Router(port=port, shards=args.shards))
                          for port in ports]
        except peers.PeerError as e:
            sys.exit(f"capacity: {e}")
        pids = [pid for r in routers_up for pid in r.pids()]
        targets = ",".join(f"127.0.0.1:{p}" for p in ports)
        command = [
            LOADGEN, "--target", targets, "--transport", args.transport,
            "--live", str(args.live), "--idle", str(args.tunnels - args.live),
            "--zombie-fraction", str(args.zombie_fraction),
            "--paths", str(args.paths), "--rate", str(args.rate),
            "--duration-s", str(args.duration_s), "--ramp-per-s", str(args.ramp_per_s),
            "--sources", args.sources, "--label", f"router x{routers}",
            "--pid", ",".join(map(str, pids)), "--out", args.out,
        ]
        print(f"capacity: {routers} router process(es) on ports {ports[0]}..{ports[-1]}",
              file=sys.stderr)
        print("capacity: " + " ".join(command), file=sys.stderr)
        # Bounded: ramp + run + drain, with room for worker start-up and result merging.
        budget = args.tunnels / args.ramp_per_s + args.duration_s + 180
        run = subprocess.run(command, timeout=budget)
        if run.returncode not in (0, peers.LOADGEN_LOSSES):
            sys.exit(f"capacity: loadgen failed with status {run.returncode}")
        gone = [pid for pid in pids if peers.start_time(pid) is None]
        if gone:
            sys.exit(f"capacity: router process(es) {gone} exited during the run")
        subprocess.run([LOADGEN, "plot", "--out", os.path.join(args.out, "latency.svg"),
                        "--title", f"{args.tunnels} tunnels, {args.live} live",
                        f"router={args.out}"], check=True)
        with open(os.path.join(args.out, "summary.json")) as f:
            summary = json.load(f)
        summary["routers"] = {"processes": routers, "shards_each": args.shards, "ports": ports}
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        if run.returncode == peers.LOADGEN_LOSSES:
            sys.exit(f"capacity: the run lost or refused something (figures in {args.out})")

if __name__ == "__main__":
    main()
