#!/usr/bin/env python3
"""A reconnect storm against admission control: every tunnel drops at once and comes back at
once, beside a crowd of new tunnels, while `tunnels_new_per_s` is low.

Starts the router (release build) on a loopback port from a config file, then:
1. opens TUNNELS SSE tunnels over PATHS paths, with no admission limit yet, and reads each one's
   control datagram;
2. lowers `tunnels_new_per_s` to RATE by a reload (the file rewritten, SIGHUP), as an operator
   would during an incident;
3. drops every connection at once (RST), and publishes DATAGRAMS datagrams on every path while
   nobody is attached;
4. at once: NEW new tunnels are asked for while every tunnel re-attaches (`id`, `last` = its own
   id: nothing processed yet);
5. checks that every re-attach succeeded and received exactly the datagrams of its path, in
   order, with no gap marker and no duplicate, and that new tunnels were paced: refused 503 with
   a Retry-After of 1-5 s beyond what RATE allows.

Prints a JSON summary (and writes it with --out); exits 1 when a check fails.

    python3 scripts/storm.py --tunnels 10000 --new 3000 --rate 200 --out results/storm/run.json
"""
import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers


async def sse_events(reader):
    """Yields (id, data) of each SSE event of a chunked stream; ends at its last chunk."""
    pending = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.strip(), 16)
        if size == 0:
            return
        chunk = await reader.readexactly(size + 2)
        pending += chunk[:-2]
        while b"\n\n" in pending:
            event, pending = pending.split(b"\n\n", 1)
            eid, data = None, None
            for line in event.split(b"\n"):
                if line.startswith(b"id: "):
                    eid = line[4:].decode()
                elif line.startswith(b"data: "):
                    data = json.loads(line[6:])
            if data is not None:
                yield eid, data


async def open_stream(port, query):
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    writer.write(f"GET /tunnel?{query} HTTP/1.1\r\nHost: storm\r\n\r\n".encode())
    await writer.drain()
    status, headers = await read_head(reader)
    return reader, writer, status, headers


async def open_tunnel(port, path, sem, stats):
    """A new tunnel, retried after the router's Retry-After while admission refuses it."""
    while True:
        async with sem:
            reader, writer, status, headers = await open_stream(port, f"format=sse&path={path}")
            if status == 200:
                _, control = await sse_events(reader).__anext__()
                return control["tunnel"], writer
            writer.close()
        if status != 503:
            raise RuntimeError(f"tunnel refused with {status}")
        stats["open_retries"] += 1
        await asyncio.sleep(int(headers.get("retry-after", "1")))


async def reattach(port, tunnel, expected, sem, result):
    """Re-attaches and reads until every expected datagram id arrived (or something is wrong)."""
    async with sem:
        reader, writer, status, _ = await open_stream(
            port, f"format=sse&id={tunnel}&last={tunnel}"
        )
    try:
        if status != 200:
            result["refused"] += 1
            return
        got = []
        events = sse_events(reader)
        _, control = await events.__anext__()
        if control.get("tunnel") != tunnel or control.get("new"):
            result["not_the_same_tunnel"] += 1
            return
        while len(got) < len(expected):
            eid, data = await asyncio.wait_for(events.__anext__(), 30)
            if data.get("type") == "gap":
                result["gaps"] += 1
                return
            if eid is not None:
                got.append(eid)
        if got == expected:
            result["complete"] += 1
        else:
            result["wrong_datagrams"] += 1
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, StopAsyncIteration):
        result["incomplete"] += 1
    finally:
        writer.transport.abort()


async def new_tunnel(port, sem, result):
    async with sem:
        reader, writer, status, headers = await open_stream(port, "format=sse&path=/storm/new")
    writer.transport.abort()
    if status == 200:
        result["admitted"] += 1
    elif status == 503:
        result["refused"] += 1
        retry = int(headers.get("retry-after", "0"))
        result["retry_after_s"][retry] = result["retry_after_s"].get(retry, 0) + 1
    else:
        result["other"] += 1


async def publish_all(port, paths, count):
    """Publishes `count` datagrams on every path over one keep-alive connection; returns the
    ids per path, in order."""
    reader, writer = await asyncio.open_connection(HOST, port)
    ids = {p: [] for p in paths}
    for n in range(count):
        for p in paths:
            body = json.dumps({"n": n}).encode()
            writer.write(
                f"POST /publish{p} HTTP/1.1\r\nHost: storm\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status, headers = await read_head(reader)
            answer = json.loads(await reader.readexactly(int(headers["content-length"])))
            if status != 202:
                raise RuntimeError(f"publish refused: {status} {answer}")
            ids[p].append(answer["id"])
    writer.close()
    return ids


async def run(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.tunnels + args.new + 200 > hard:
        sys.exit(f"{args.tunnels + args.new} connections need more than the open-files limit {hard}")
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write("tunnels_new_per_s = 0\n")
    config.close()
    cmd = [
        args.router, "--config", config.name, "--listen", f"{HOST}:{args.port}",
        "--shards", str(args.shards), "--log", "info",
        "--keepalive-ms", "600000", "--tunnel-grace-ms", "600000",
    ]
    router = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    reloaded = threading.Event()

    def watch_log():
        for line in router.stdout:
            if "configuration reloaded" in line and "tunnels_new_per_s" in line:
                reloaded.set()

    threading.Thread(target=watch_log, daemon=True).start()
    summary = {}
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection(HOST, args.port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        paths = [f"/storm/{i}" for i in range(args.paths)]
        stats = {"open_retries": 0}
        sem = asyncio.Semaphore(512)
        started = time.monotonic()
        opened = await asyncio.gather(
            *(open_tunnel(args.port, paths[i % len(paths)], sem, stats) for i in range(args.tunnels))
        )
        open_s = time.monotonic() - started
        # The operator lowers admission, without a restart.
        with open(config.name, "w") as f:
            f.write(f"tunnels_new_per_s = {args.rate}\n")
        router.send_signal(signal.SIGHUP)
        if not await asyncio.get_running_loop().run_in_executor(None, reloaded.wait, 10):
            raise RuntimeError("the router did not report the reload")
        # Everyone drops at once.
        for _, writer in opened:
            writer.transport.abort()
        await asyncio.sleep(0.5)
        ids = await publish_all(args.port, paths, args.datagrams)
        # Everyone comes back at once, beside a crowd of new tunnels.
        back = {"complete": 0, "refused": 0, "gaps": 0, "wrong_datagrams": 0, "incomplete": 0,
                "not_the_same_tunnel": 0}
        new = {"admitted": 0, "refused": 0, "other": 0, "retry_after_s": {}}
        storm_sem = asyncio.Semaphore(args.concurrency)
        storm_started = time.monotonic()
        await asyncio.gather(
            *(new_tunnel(args.port, storm_sem, new) for _ in range(args.new)),
            *(reattach(args.port, t, ids[paths[i % len(paths)]], storm_sem, back)
              for i, (t, _) in enumerate(opened)),
        )
        storm_s = time.monotonic() - storm_started
        # The burst is one second's worth; then RATE per second (integer refills: a little slack).
        allowed = args.rate * (1 + storm_s) + args.shards
        checks = {
            "every re-attach replayed exactly its datagrams": back["complete"] == args.tunnels,
            "new tunnels were paced (some refused)": new["refused"] > 0,
            "no more new tunnels admitted than the rate allows": new["admitted"] <= allowed,
            "every refusal says when to come back (1-5 s)": all(
                1 <= int(s) <= 5 for s in new["retry_after_s"]
            ) and sum(new["retry_after_s"].values()) == new["refused"],
        }
        summary = {
            "command": " ".join(["python3", "scripts/storm.py"] + sys.argv[1:]),
            # The config file is a temporary one: named by what it holds, not where it was.
            "router": [c if c != config.name else "CONFIG" for c in cmd],
            "config": f"tunnels_new_per_s = 0, then {args.rate} by a reload",
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "tunnels": args.tunnels,
            "paths": args.paths,
            "datagrams_per_path": args.datagrams,
            "rate_new_per_s": args.rate,
            "opening": {"seconds": round(open_s, 1), "retries_after_503": stats["open_retries"]},
            "reloaded_to_rate": args.rate,
            "storm": {
                "seconds": round(storm_s, 2),
                "reattached": back,
                "datagrams_expected": args.tunnels * args.datagrams,
                "new": {**new, "asked": args.new, "admissible_at_most": int(allowed)},
            },
            "checks": checks,
            "passed": all(checks.values()),
        }
    finally:
        router.terminate()
        router.wait(timeout=15)
        os.unlink(config.name)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", default="target/release/router")
    ap.add_argument("--port", type=int, default=18480)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--tunnels", type=int, default=10000)
    ap.add_argument("--paths", type=int, default=100)
    ap.add_argument("--datagrams", type=int, default=5, help="published on every path while dropped")
    ap.add_argument("--new", type=int, default=3000, help="new tunnels asked for during the storm")
    ap.add_argument("--rate", type=int, default=200, help="tunnels_new_per_s during the storm")
    ap.add_argument("--concurrency", type=int, default=4000, help="connections in flight at once")
    ap.add_argument("--out")
    args = ap.parse_args()
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    failed = [name for name, ok in summary.get("checks", {}).items() if not ok]
    if failed:
        print("storm: FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
