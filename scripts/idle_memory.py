#!/usr/bin/env python3
"""Measures what an idle tunnel costs the router: RSS growth over N idle tunnels, divided by N.

Starts the router (release build) on a loopback port, opens N tunnels of one format that stay
idle after their first control datagram, and samples the router's RSS (VmRSS, from /proc)
before and after. Writes a JSON summary to stdout and, with --out, to a file.

    python3 scripts/idle_memory.py --tunnels 10000 --format sse --out results/idle-sse.json
"""
import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import ssl
import tempfile
import subprocess
import sys
import time


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


DEFLATE = False
# With --tls: the client context trusting the router's test certificate.
TLS = None


async def open_tunnel(host, port, fmt, path, sem, opened):
    async with sem:
        reader, writer = await asyncio.open_connection(host, port, ssl=TLS)
        upgrade = ""
        if fmt == "ws":
            upgrade = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
            if DEFLATE:
                upgrade += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        writer.write(f"GET /tunnel?format={fmt}&path={path} HTTP/1.1\r\nHost: x\r\n{upgrade}\r\n".encode())
        await writer.drain()
        # Read the response head and the first control datagram, then stay idle.
        head = await reader.readuntil(b"\r\n\r\n")
        status = b" 101 " if fmt == "ws" else b" 200 "
        if status not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"tunnel refused: {head[:80]!r}")
        if DEFLATE and b"permessage-deflate" not in head:
            raise RuntimeError("permessage-deflate was not negotiated")
        if DEFLATE:
            await reader.readexactly(2)  # a compressed tunnel datagram: header, then payload
        else:
            await reader.readuntil(b"keepalive_ms")
        opened.append((reader, writer))


async def run(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.tunnels + 100 > hard:
        sys.exit(f"{args.tunnels} tunnels need more than the open-files limit {hard} of one process")
    cmd = [args.router, "--listen", f"127.0.0.1:{args.port}", "--shards", str(args.shards),
           "--log", "warn", "--keepalive-ms", "600000", "--tunnel-grace-ms", "600000"]
    tls_dir = None
    if args.tls:
        # A throwaway self-signed certificate (scripts/tls/check.py makes it); the tunnels
        # connect to the TLS listener, one port above the plain one.
        global TLS
        tls_dir = tempfile.mkdtemp(prefix="idle-tls-")
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "tls", "check.py"),
                        "cert", tls_dir, "a"], check=True)
        cmd += ["--set", f"tls.listen=127.0.0.1:{args.port + 1}",
                "--set", f"tls.cert_file={tls_dir}/a.cert.pem",
                "--set", f"tls.key_file={tls_dir}/a.key.pem"]
        TLS = ssl.create_default_context(cafile=f"{tls_dir}/a.cert.pem")
    tunnel_port = args.port + 1 if args.tls else args.port
    router = subprocess.Popen(cmd)
    try:
        for _ in range(100):
            try:
                r, w = await asyncio.open_connection("127.0.0.1", args.port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        # Warm up: allocator arenas, runtime, one tunnel per shard's code paths.
        opened = []
        sem = asyncio.Semaphore(256)
        await asyncio.gather(*(open_tunnel("127.0.0.1", tunnel_port, args.format, "/warm", sem, opened)
                               for _ in range(200)))
        for _, w in opened:
            w.close()
        await asyncio.sleep(args.settle)
        before = rss_bytes(router.pid)
        opened = []
        started = time.monotonic()
        await asyncio.gather(*(open_tunnel("127.0.0.1", tunnel_port, args.format, f"/idle/{i % 100}", sem, opened)
                               for i in range(args.tunnels)))
        open_s = time.monotonic() - started
        await asyncio.sleep(args.settle)
        after = rss_bytes(router.pid)
        summary = {
            "scenario": "idle tunnels",
            "format": args.format + (" + permessage-deflate" if args.deflate else "")
                      + (" over TLS" if args.tls else ""),
            "tunnels": len(opened),
            "shards": args.shards,
            "router_rss_before_bytes": before,
            "router_rss_after_bytes": after,
            "bytes_per_tunnel": round((after - before) / len(opened), 1),
            "connect_rate_per_s": round(len(opened) / open_s, 1),
            "command": " ".join(sys.argv),
            "router_command": " ".join(cmd).replace(tls_dir or "\0", "TLS_DIR"),
            "git_revision": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                           text=True).stdout.strip(),
            "kernel": platform.release(),
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
            "cores": os.cpu_count(),
        }
        for _, w in opened:
            w.close()
        return summary
    finally:
        router.terminate()
        router.wait()
        if tls_dir:
            shutil.rmtree(tls_dir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tunnels", type=int, default=10000)
    p.add_argument("--format", default="sse")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--port", type=int, default=18181)
    p.add_argument("--settle", type=float, default=1.0, help="seconds to wait before sampling RSS")
    p.add_argument("--router", default="target/release/router")
    p.add_argument("--deflate", action="store_true", help="ws only: offer permessage-deflate")
    p.add_argument("--tls", action="store_true",
                   help="connect to the router's TLS listener ([tls], a throwaway certificate)")
    p.add_argument("--out")
    args = p.parse_args()
    global DEFLATE
    DEFLATE = args.deflate
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    # The same figures rounded, with units, for a person (the JSON keeps them exact).
    print(f"idle_memory: {summary['tunnels']:,} idle {summary['format']} tunnels, "
          f"{summary['bytes_per_tunnel'] / 1000:,.2f} KB per tunnel (router RSS "
          f"{summary['router_rss_before_bytes'] / 1e6:,.1f} MB before, "
          f"{summary['router_rss_after_bytes'] / 1e6:,.1f} MB after), "
          f"{summary['connect_rate_per_s']:,.0f} connects/s", file=sys.stderr)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
