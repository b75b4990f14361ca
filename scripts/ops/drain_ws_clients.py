#!/usr/bin/env python3
"""WebSocket tunnels held open across a router's drain, with the PyPI `websockets` client.

Usage: drain_ws_clients.py ws://HOST:PORT/tunnel?format=ws COUNT

Opens COUNT tunnels, reads each one's control datagram, prints `open COUNT` (the caller then
signals the router), and waits for every connection to end. Prints one JSON line: how many
ended with each close code the server sent (`codes`), their reasons, and how many ended without
a close handshake (`unclean`: no close frame received, or the TCP connection lost abruptly).
Run by router/tests/drain.rs.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# Longest wait for the tunnels to open, and then for the drain to end them.
OPEN_TIMEOUT_S = 20
CLOSE_TIMEOUT_S = 20


async def tunnel(url, opened):
    ws = await connect(url, ping_interval=None, open_timeout=OPEN_TIMEOUT_S, max_size=None)
    control = json.loads(await ws.recv())
    assert control["type"] == "tunnel", control
    opened.release()
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass
    await ws.wait_closed()
    rcvd = ws.protocol.close_rcvd
    clean = rcvd is not None and ws.protocol.close_rcvd_then_sent
    return (rcvd.code if rcvd else None, rcvd.reason if rcvd else None, clean)


async def main():
    url, count = sys.argv[1], int(sys.argv[2])
    opened = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(tunnel(url, opened)) for _ in range(count)]
    async with asyncio.timeout(OPEN_TIMEOUT_S):
        for _ in range(count):
            await opened.acquire()
    print(f"open {count}", flush=True)
    async with asyncio.timeout(CLOSE_TIMEOUT_S):
        ends = await asyncio.gather(*tasks, return_exceptions=True)
    codes, reasons, unclean, errors = {}, set(), 0, []
    for end in ends:
        if isinstance(end, BaseException):
            errors.append(repr(end))
            continue
        code, reason, clean = end
        codes[str(code)] = codes.get(str(code), 0) + 1
        reasons.add(reason)
        unclean += 0 if clean else 1
    print(json.dumps({"codes": codes, "reasons": sorted(r for r in reasons if r is not None),
                      "unclean": unclean, "errors": errors[:5]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
