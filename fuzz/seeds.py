#!/usr/bin/env python3
"""Writes the seed corpora, fuzz/corpus/<target>/, from real protocol examples.

Run from anywhere: `python3 fuzz/seeds.py`. It replaces each target's folder, so the corpora
committed are exactly what this file says. The corpora libFuzzer grows from them are never
written here (scripts/fuzz.sh works on a copy).
"""

import shutil
import struct
import zlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 section 5.7
TUNNEL = "0-1-0123456789abcdef"


def crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def deflate(payload: bytes) -> bytes:
    """permessage-deflate: raw DEFLATE, sync flush, trailing 00 00 ff ff removed (RFC 7692 7.2.1)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def frame(opcode: int, payload: bytes, fin=True, rsv1=False, mask: bytes | None = MASK) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n <= 125:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA

UPGRADE = [
    "GET /tunnel?format=ws HTTP/1.1",
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
]

SEEDS: dict[str, dict[str, bytes]] = {}

SEEDS["http1_request"] = {
    "get-curl": crlf("GET /tunnel?format=sse HTTP/1.1", "Host: 127.0.0.1:8080",
                     "User-Agent: curl/8.5.0", "Accept: */*"),
    "get-browser": crlf(
        f"GET /tunnel?id={TUNNEL}&format=iframe&cb=parent.tunnel HTTP/1.1",
        "Host: example.com", "Connection: keep-alive",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "Accept-Encoding: gzip, deflate, br", "Accept-Language: en-US,en;q=0.9",
        "Cookie: a=1; b=2", "Referer: https://example.com/"),
    "post-length": crlf("POST /publish/chat/room1 HTTP/1.1", "Host: h",
                        "Content-Type: application/json", "Content-Length: 13")
    + b'{"text":"hi"}',
    "post-chunked": crlf("POST /events HTTP/1.1", "Host: h", "Transfer-Encoding: chunked")
    + b"5\r\nhello\r\n0\r\n\r\n",
    "post-expect": crlf("POST /events HTTP/1.1", "Host: h", "Expect: 100-continue",
                        "Content-Length: 2") + b"{}",
    "options-star": crlf("OPTIONS * HTTP/1.1", "Host: h"),
    "preflight": crlf("OPTIONS /events HTTP/1.1", "Host: h", "Origin: https://a.example",
                      "Access-Control-Request-Method: POST"),
    "http10-keepalive": crlf("GET /metrics HTTP/1.0", "Connection: keep-alive"),
    "pipelined": crlf("GET /a HTTP/1.1", "Host: h") + crlf("GET /b HTTP/1.1", "Host: h",
                                                            "Connection: close"),
    "upgrade": crlf(*UPGRADE),
    "longpoll": crlf(f"GET /tunnel?id={TUNNEL}&format=longpoll&last=0-42 HTTP/1.1", "Host: h"),
    "bare-lf": b"GET / HTTP/1.1\nHost: h\n\n",
    "smuggle-cl-te": crlf("POST / HTTP/1.1", "Host: h", "Content-Length: 5", "Transfer-Encoding: chunked"),
    "smuggle-cl-cl": crlf("POST / HTTP/1.1", "Host: h", "Content-Length: 5", "Content-Length: 6"),
    "obs-fold": crlf("GET / HTTP/1.1", "Host: h", "X: a", " folded"),
    "te-list": crlf("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: gzip, chunked"),
    "te-obfuscated": crlf("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked, identity"),
    "te-gzip": crlf("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: gzip"),
    "no-host": crlf("GET / HTTP/1.1", "Accept: */*"),
    "two-hosts": crlf("GET / HTTP/1.1", "Host: a", "Host: b"),
    "leading-crlf": b"\r\n\r\n" + crlf("GET / HTTP/1.1", "Host: h"),
    "partial": b"GET /tunnel HTTP/1.1\r\nHost: h\r\n",
}

SEEDS["http1_chunked"] = {
    # The first byte is the piece size minus one.
    "hello": b"\x00" + b"5\r\nhello\r\n0\r\n\r\n",
    "two-chunks": b"\x03" + b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
    "rfc9112-example": b"\x07" + b"1a; ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n1234567890abcdef\r\n0\r\n\r\n",
    "extensions": b"\x01" + b"4;name=value;flag\r\nWiki\r\n0;last\r\n\r\n",
    "bws": b"\x02" + b"4 \t;x\r\nWiki\r\n0\r\n\r\n",
    "trailers": b"\x05" + b"4\r\nWiki\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-A: b\r\n\r\n",
    "uppercase-hex": b"\x00" + b"A\r\n0123456789\r\n0\r\n\r\n",
    "pipelined": b"\x10" + b"2\r\n{}\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
    "leading-zeros": b"\x00" + b"0005\r\nhello\r\n0000\r\n\r\n",
    "too-large": b"\x00" + b"ffffffffffffffff\r\n",
    "too-many-digits": b"\x00" + b"00000000000000001\r\nx\r\n",
    "bare-lf": b"\x00" + b"5\nhello\n0\n\n",
    "missing-crlf": b"\x00" + b"5\r\nhelloX0\r\n\r\n",
    "empty": b"\x00" + b"0\r\n\r\n",
}

SEEDS["query"] = {
    "attach": f"id={TUNNEL}&format=sse&last=0-42".encode(),
    "iframe": b"format=iframe&cb=parent.tunnel",
    "event": f"tunnel={TUNNEL}&path=%2Fchat%2Froom1&data=%7B%22text%22%3A%22hi%22%7D".encode(),
    "form": b"q=hello+world%21&%2B=%26",
    "utf8": b"name=J%C3%BCrgen+M&city=M\xc3\xbcnchen",
    "shapes": b"&&a&b=&=v&=&a=1=2",
    "bad-escape": b"a=1&b=%zz",
    "bad-utf8": b"name=%FF",
    "truncated": b"a=%4",
    "repeated": b"path=/a&path=/b&path=/c",
}

SEEDS["websocket_frame"] = {
    # RFC 6455 section 5.7.
    "text-unmasked": bytes.fromhex("810548656c6c6f"),
    "text-masked": bytes.fromhex("818537fa213d7f9f4d5158"),
    "fragment-1": bytes.fromhex("010348656c"),
    "fragment-2": bytes.fromhex("80026c6f"),
    "ping": bytes.fromhex("890548656c6c6f"),
    "pong-masked": bytes.fromhex("8a8537fa213d7f9f4d5158"),
    "binary-256": bytes.fromhex("827e0100"),
    "binary-65536": bytes.fromhex("827f0000000000010000"),
    "compressed": bytes.fromhex("c107f248cdc9c90700"),
    "close-masked": frame(CLOSE, b"\x03\xe8"),
    "non-minimal-16": bytes.fromhex("827e0005"),
    "reserved-opcode": bytes.fromhex("8300"),
    "msb-length": bytes.fromhex("827f8000000000000000"),
}

# websocket_decoder's steering byte: bit 0 role (0 server, 1 client), bits 1-2 deflate
# (0 none, 1 no context takeover, 2 context takeover), bits 3-7 read size - 1.
def steer(client=False, deflate=0, step=1) -> bytes:
    return bytes([(1 if client else 0) | (deflate << 1) | ((step - 1) << 3)])


hello_z = deflate(b"Hello")
json_text = b'{"type":"publish","path":"/chat/room1","data":{"text":"hello, hello, hello"}}'
SEEDS["websocket_decoder"] = {
    "rfc6455-masked-hello": steer() + bytes.fromhex("818537fa213d7f9f4d5158"),
    "rfc6455-client-fragments": steer(client=True, step=3) + bytes.fromhex("010348656c80026c6f"),
    "rfc6455-client-ping": steer(client=True) + bytes.fromhex("890548656c6c6f"),
    "control-between-fragments": steer(step=2) + frame(TEXT, b"frag ", fin=False)
    + frame(PING, b"mid") + frame(CONT, b"end"),
    "subscribe": steer(step=8) + frame(TEXT, b'{"type":"subscribe","path":"/chat/*"}'),
    "binary-publish": steer(step=16) + frame(BINARY, bytes(range(200))),
    "close": steer() + frame(CLOSE, b"\x03\xe9going away"),
    "close-1013-from-server": steer(client=True) + frame(CLOSE, b"\x03\xf5", mask=None),
    # RFC 7692 section 7.2.3.1: "Hello" compressed, masked as a client sends it.
    "rfc7692-hello": steer(deflate=1) + frame(TEXT, bytes.fromhex("f248cdc9c90700"), rsv1=True),
    "rfc7692-hello-fragmented": steer(deflate=1, step=2)
    + frame(TEXT, bytes.fromhex("f248cd"), fin=False, rsv1=True)
    + frame(CONT, bytes.fromhex("c9c90700")),
    # RFC 7692 section 7.2.3.2: the second "Hello" refers back to the first.
    "rfc7692-context-takeover": steer(deflate=2)
    + frame(TEXT, bytes.fromhex("f248cdc9c90700"), rsv1=True)
    + frame(TEXT, bytes.fromhex("f20011000000"), rsv1=True),
    # RFC 7692 section 7.2.3.3: no compression in a stored block.
    "rfc7692-stored": steer(deflate=1) + frame(TEXT, bytes.fromhex("0005 00faff48656c6c6f00"
                                                                  .replace(" ", "")), rsv1=True),
    "deflated-json": steer(deflate=1, step=5) + frame(TEXT, deflate(json_text), rsv1=True),
    "deflated-binary": steer(deflate=2, step=32) + frame(BINARY, deflate(bytes(1000)), rsv1=True),
    "deflated-client": steer(client=True, deflate=1)
    + frame(TEXT, hello_z, rsv1=True, mask=None),
    "invalid-utf8": steer() + frame(TEXT, b"ok \xc0\xaf"),
    "unmasked-from-client": steer() + frame(TEXT, b"hi", mask=None),
}

SEEDS["websocket_deflate"] = {
    # The steering byte: bits 0-4 piece size - 1, bits 5-7 window bits - 9.
    "rfc7692-hello": b"\x00" + bytes.fromhex("f248cdc9c90700"),
    "rfc7692-stored": b"\x02" + bytes.fromhex("000500faff48656c6c6f00"),
    "rfc7692-bfinal": b"\x01" + bytes.fromhex("f348cdc9c9070000"),
    "json": b"\xc4" + deflate(json_text),
    "zeros": b"\xe7" + deflate(bytes(4000)),
    "plain-text": b"\x20" + b"Hello, hello, hello: plain bytes to compress",
    "plain-json": b"\x1f" + json_text,
    "garbage": b"\x00" + b"\xff\xff\xff",
}

SEEDS["websocket_close"] = {
    "empty": b"",
    "normal": b"\x03\xe8",
    "normal-reason": b"\x03\xe8bye",
    "going-away-utf8": b"\x03\xe9" + "κόσμε".encode(),
    "try-again-later": b"\x03\xf5",
    "application": b"\x0f\xa0app code",
    "one-byte": b"\x03",
    "no-status-on-wire": b"\x03\xed",
    "invalid-utf8": b"\x03\xe8\xff\xfe",
    "max-reason": b"\x03\xe8" + b"r" * 123,
}

SEEDS["websocket_handshake"] = {
    "rfc6455": crlf("GET /chat HTTP/1.1", "Host: server.example.com", "Upgrade: websocket",
                    "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}",
                    "Origin: http://example.com", "Sec-WebSocket-Protocol: chat, superchat",
                    "Sec-WebSocket-Version: 13"),
    "chrome-deflate": crlf(*UPGRADE, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
    "firefox": crlf("GET /tunnel HTTP/1.1", "Host: h", "Connection: keep-alive, Upgrade",
                    "Upgrade: websocket", "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
                    "Sec-WebSocket-Extensions: permessage-deflate"),
    "window-bits": crlf(*UPGRADE, "Sec-WebSocket-Extensions: permessage-deflate; "
                        "server_max_window_bits=10; client_max_window_bits=12"),
    "offers": crlf(*UPGRADE, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, "
                   "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                   "Sec-WebSocket-Extensions: x-webkit-deflate-frame"),
    "quoted": crlf(*UPGRADE, 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits="15"'),
    "http10": crlf("GET /tunnel HTTP/1.0", *UPGRADE[1:]),
    "no-key": crlf(*UPGRADE[:4], "Sec-WebSocket-Version: 13"),
    "version-8": crlf(*UPGRADE[:5], "Sec-WebSocket-Version: 8"),
    "two-keys": crlf(*UPGRADE, f"Sec-WebSocket-Key: {KEY}"),
}

SEEDS["datagram"] = {
    "object": b'/chat/room1\n{"text":"hi","n":1}',
    "array": b"/a\n[1, 2.5, -3e2, true, null]",
    "string": "/news/de\n\"Grüße \\u00e9 \\ud83d\\ude00\"".encode(),
    "private": f"/tunnel/{TUNNEL}\n\"direct\"".encode(),
    "binary": b"/media/frames\n\x00\x01\x02\xff\xfe",
    "script": b'/x\n"</script><script>alert(1)</script>"',
    "deep-path": ("/" + "/".join("s%d" % i for i in range(16))).encode() + b"\n{}",
}

SEEDS["json"] = {
    "event": f'{{"tunnel":"{TUNNEL}","path":"/chat/room1","data":{{"text":"hi"}}}}'.encode(),
    "subscribe": b'{"type":"subscribe","path":"/chat/*"}',
    "publish": b'{"type":"publish","path":"/a","data":[1,{"b":null},"c"]}',
    "numbers": b"[0, -0, 1.5e300, 1e400, -1E-400, 18446744073709551616, 123456789012345678901234567890]",
    "strings": "[\"\\u00e9\", \"\\ud83d\\ude00\", \"\\\\ud800\", \"tab\\there\", \"Grüße\"]".encode(),
    "surrogate": b'{"data":"\\ud800"}',
    "wrong-type": b'{"path":1}',
    "trailing": b'{"a":1} x',
    "nested-64": b"[" * 64 + b"]" * 64,
    "nested-65": b"[" * 65 + b"]" * 65,
    "nested-512": b"[" * 512 + b"]" * 512,
    # What the outside test sent: about 4000 levels overflowed a shard's stack.
    "nested-4000": b"[" * 4000 + b"]" * 4000,
    "nested-in-string": b'{"data":"' + b"[" * 600 + b'"}',
    "nested-objects": b'{"a":' * 64 + b"1" + b"}" * 64,
    "many-members": ("{" + ",".join('"k%d":%d' % (i, i) for i in range(40)) + "}").encode(),
}

SEEDS["tunnel_id"] = {
    "id": TUNNEL.encode(),
    "max": b"65535-4294967295-ffffffffffffffff",
    "upper": b"1-2-FFFFFFFFFFFFFFFF",
    "plus": b"+1-+2-+fffffffffffffff",
    "short-secret": b"0-1-abc",
    "overflow": b"65536-1-0123456789abcdef",
    "extra-dash": b"0-1-0123456789abcdef-x",
}

SEEDS["path"] = {
    "subtree": b"/chat/*\n/chat/room1",
    "root": b"/*\n/anything/at/all",
    "exact": b"/chat\n/chat",
    "sibling": b"/chat/*\n/chatter",
    "private": f"/tunnel/*\n/tunnel/{TUNNEL}".encode(),
    "segments-16": ("/a" * 15 + "/*\n" + "/a" * 16).encode(),
    "bytes-255": ("/x/*\n/x/" + "y" * 252).encode(),
    "bad-byte": b"/a b\n/a%20b",
    "double-star": b"/chat/**\n/chat",
}

SEEDS["template"] = {
    "sse": b"id: {id}\ndata: {json}\n\n",
    "script": b"<script>{cb}({json}, '{tunnel}');</script>\n",
    "braces": b'{{"event":{json}}}',
    "header": b"<!DOCTYPE html><html><body data-tunnel=\"{tunnel}\">",
    "utf8": "é{id}→".encode(),
    "unknown": b"x{data}y",
    "unescaped": b'{"a":{json}}',
    "stray-close": b"{json}}",
    "open": b"abc{",
}

SEEDS["format"] = {
    "iframe": b'parent.tunnel\n{"id":"0-1","path":"/a","data":"</script><script>alert(1)</script>"}',
    "separators": "cb\n{\"data\":\"a\u2028b\u2029c\"}".encode(),
    "jquery": b'$jq.cb_1\n{"id":"0-2","path":"/a","data":[1,2]}',
    "builtin-name": b'sse\n{"type":"keepalive"}',
    "invalid-cb": b"alert(1);x\n{}",
    "long-cb": b"a" + b"b" * 63 + b"\n{}",
    "escape-text": b'cb\n"\\u003c already escaped"',
}


def main() -> None:
    for target, seeds in SEEDS.items():
        folder = CORPUS / target
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
    total = sum(len(d) for s in SEEDS.values() for d in s.values())
    count = sum(len(s) for s in SEEDS.values())
    print(f"{count} seeds, {total} bytes, in {len(SEEDS)} folders under {CORPUS.name}/")


if __name__ == "__main__":
    main()
