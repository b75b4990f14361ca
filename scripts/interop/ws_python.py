#!/usr/bin/env python3
"""Interop check of the router's WebSocket tunnels with the PyPI `websockets` client (asyncio).

Usage: ws_python.py http://HOST:PORT

For compression on (permessage-deflate offered) and off: opens a tunnel on /interop/*, publishes
5 datagrams through it (each answered by an ack whose id the datagram carries), reads them,
closes, publishes 3 more through `POST /publish/interop/x`, re-attaches with `id` and `last` and
checks that exactly those 3 arrive (same ids, `new: false`), then a sentinel proves nothing else
was queued. Prints one line `python websockets interop: OK (...)` and exits 0, or prints the
failure and exits 1. Run by router/tests/interop.rs; needs `pip install websockets`.
"""

import asyncio
import json
import sys
import urllib.request

NAME = "python websockets interop"
# Longest wait for any one message, and for the whole check.
RECV_TIMEOUT_S = 5
TOTAL_TIMEOUT_S = 25

try:
    import websockets
    from websockets.asyncio.client import connect
except ImportError as e:  # pragma: no cover - reported to the caller
    print(
        f"{NAME}: FAILED: the PyPI package `websockets` is not installed ({e}); "
        "install it with: python3 -m pip install websockets",
        file=sys.stderr,
    )
    sys.exit(1)


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def http_publish(base, path, data):
    """POST /publish<path> with a JSON body; returns the datagram id."""
    body = json.dumps(data, separators=(",", ":")).encode()
    request = urllib.request.Request(
        f"{base}/publish{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=RECV_TIMEOUT_S) as answer:
        status = answer.status
        reply = json.loads(answer.read())
    check(status == 202, f"POST /publish{path} answered {status} {reply}")
    check(reply.get("ok") is True and isinstance(reply.get("id"), str), f"publish answer {reply}")
    return reply["id"]


async def recv_json(ws, what):
    try:
        message = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise Failure(f"no message within {RECV_TIMEOUT_S} s while waiting for {what}") from None
    check(isinstance(message, str), f"expected a text frame for {what}, got {message!r}")
    return json.loads(message)


def check_extension(ws, compression):
    offered = compression is not None
    header = ws.response.headers.get("Sec-WebSocket-Extensions")
    if offered:
        check(
            header is not None and header.startswith("permessage-deflate"),
            f"permessage-deflate offered but not negotiated (Sec-WebSocket-Extensions: {header})",
        )
    else:
        check(header is None, f"no extension offered, yet the server answered {header}")
    return header


async def run_once(base, compression):
    ws_base = "ws" + base[len("http"):]
    label = "deflate" if compression else "plain"
    path = "/interop/x"

    # 1. A new tunnel on /interop/*; 5 publishes through it, each acked and delivered.
    async with connect(
        f"{ws_base}/tunnel?format=ws&path=/interop/*",
        compression=compression,
        open_timeout=RECV_TIMEOUT_S,
        close_timeout=RECV_TIMEOUT_S,
    ) as ws:
        extension = check_extension(ws, compression)
        control = await recv_json(ws, "the tunnel datagram")
        check(control.get("type") == "tunnel", f"first message {control}")
        check(control.get("new") is True, f"a new tunnel says new:true: {control}")
        check(isinstance(control.get("keepalive_ms"), int), f"keepalive_ms in {control}")
        tunnel = control["tunnel"]
        acks, datagrams = [], []
        for n in range(5):
            data = {"n": n, "via": "websocket", "text": "é" + "x" * 200}
            await ws.send(json.dumps({"type": "publish", "path": path, "data": data}))
        while len(acks) < 5 or len(datagrams) < 5:
            message = await recv_json(ws, "acks and datagrams")
            if message.get("type") == "ack":
                acks.append(message["id"])
            elif "id" in message and "path" in message:
                datagrams.append(message)
            else:
                raise Failure(f"unexpected message {message}")
        check(
            [d["id"] for d in datagrams] == acks,
            f"datagram ids {[d['id'] for d in datagrams]} are not the acked ids {acks}",
        )
        for n, d in enumerate(datagrams):
            expected = {"n": n, "via": "websocket", "text": "é" + "x" * 200}
            check(d["path"] == path and d["data"] == expected, f"datagram {n} is {d}")
        last = datagrams[-1]["id"]

    # 2. Three publishes while the tunnel is detached.
    missed = [http_publish(base, path, {"missed": n}) for n in range(3)]

    # 3. Re-attach after `last`: exactly the 3 missed datagrams, then a sentinel.
    async with connect(
        f"{ws_base}/tunnel?format=ws&id={tunnel}&last={last}",
        compression=compression,
        open_timeout=RECV_TIMEOUT_S,
        close_timeout=RECV_TIMEOUT_S,
    ) as ws:
        check_extension(ws, compression)
        control = await recv_json(ws, "the tunnel datagram after re-attach")
        check(
            control.get("type") == "tunnel" and control.get("tunnel") == tunnel,
            f"re-attach answered {control}",
        )
        check(control.get("new") is False, f"re-attach says new:false: {control}")
        for n, id_ in enumerate(missed):
            d = await recv_json(ws, f"missed datagram {n}")
            check(d == {"id": id_, "path": path, "data": {"missed": n}}, f"replay {n}: {d}")
        sentinel = http_publish(base, path, "sentinel")
        d = await recv_json(ws, "the sentinel")
        check(d == {"id": sentinel, "path": path, "data": "sentinel"}, f"after the replay: {d}")
    return f"{label}: tunnel {tunnel}, 5 acked, 3 replayed" + (
        f" [{extension}]" if extension else ""
    )


async def main(base):
    results = []
    for compression in ("deflate", None):
        results.append(await run_once(base, compression))
    return results


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].startswith("http://"):
        print(f"usage: {sys.argv[0]} http://HOST:PORT", file=sys.stderr)
        sys.exit(1)
    base = sys.argv[1].rstrip("/")
    try:
        results = asyncio.run(asyncio.wait_for(main(base), TOTAL_TIMEOUT_S))
    except Failure as e:
        print(f"{NAME}: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # connection refused, unexpected close, time-out...
        print(f"{NAME}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{NAME}: OK (websockets {websockets.__version__}; {'; '.join(results)})")
