#!/usr/bin/env python3
"""A black-box client of the router's authentication, with tokens minted by PyJWT (HS256 and
ES256) and keys made by `cryptography`: nothing of the router's own code.

Usage:
  blackbox.py keys DIR              writes hs256.secret, es256.key.pem, es256.pub.pem,
                                    other.key.pem (a key the router does not know) and
                                    publish.keys into DIR
  blackbox.py check DIR HOST:PORT   the checks against a router started with those keys and
                                    router/tests/auth.rs's configuration; exits 1 on a failure
  blackbox.py rotate DIR HOST:PORT PID CONFIG
                                    keys rotated by a reload (CONFIG rewritten, SIGHUP to PID)
  blackbox.py admission HOST:PORT   new tunnels paced (503 + Retry-After), re-attaches never

Run by router/tests/auth.rs. Every check prints one line; the last line counts them.
"""

import http.client
import json
import os
import secrets
import signal
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

AUDIENCE = "router"
ALLOWED_ORIGIN = "https://app.example"
PUBLISH_KEY = "backend-key-0123456789abcdef"

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {name}")
    else:
        failed += 1
        print(f"FAIL  {name}: {detail}")


def write_keys(d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hs256.secret"), "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    for name in ("es256", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        with open(os.path.join(d, f"{name}.key.pem"), "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        with open(os.path.join(d, f"{name}.pub.pem"), "wb") as f:
            f.write(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
    with open(os.path.join(d, "publish.keys"), "w") as f:
        f.write("# backend publishers\n" + PUBLISH_KEY + "\n")


class Minter:
    def __init__(self, d):
        with open(os.path.join(d, "hs256.secret")) as f:
            self.secret = f.read().strip()
        with open(os.path.join(d, "es256.key.pem"), "rb") as f:
            self.es256 = f.read()
        with open(os.path.join(d, "other.key.pem"), "rb") as f:
            self.other = f.read()

    def claims(self, sub, **extra):
        c = {"sub": sub, "exp": int(time.time()) + 600, "aud": AUDIENCE}
        c.update(extra)
        return {k: v for k, v in c.items() if v is not None}

    def hs(self, sub, **extra):
        return jwt.encode(self.claims(sub, **extra), self.secret, algorithm="HS256")

    def es(self, sub, **extra):
        return jwt.encode(self.claims(sub, **extra), self.es256, algorithm="ES256")

    def es_other_key(self, sub, **extra):
        return jwt.encode(self.claims(sub, **extra), self.other, algorithm="ES256")

    def none(self, sub, **extra):
        return jwt.encode(self.claims(sub, **extra), None, algorithm="none")


def request(addr, method, target, headers=None, body=None):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request(method, target, body=body, headers=headers or {})
    r = c.getresponse()
    status, hdrs, data = r.status, dict(r.getheaders()), r.read()
    c.close()
    return status, hdrs, data


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def longpoll(addr, query, headers=None):
    """A long-poll request that answers at once (a new tunnel's control datagram, or what is
    held); returns (status, body as JSON or text, headers)."""
    status, hdrs, data = request(addr, "GET", f"/tunnel?format=longpoll&{query}", headers)
    try:
        return status, json.loads(data), hdrs
    except ValueError:
        return status, data.decode(), hdrs


def error_of(body):
    return body.get("error") if isinstance(body, dict) else body


def stream_head(addr, query, headers=None):
    """Opens a streaming format and returns its status (the stream is closed at once)."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", f"/tunnel?{query}", headers=headers or {})
    r = c.getresponse()
    status = r.status
    c.close()
    return status


def run_checks(d, addr):
    m = Minter(d)
    # Alice opens many tunnels below; her tokens allow them.
    alice = m.hs("alice", subscribe=["/chat/*", "/news"], publish=["/chat/*"], tunnels_max=100)
    alice_es = m.es("alice", subscribe=["/chat/*"], publish=["/chat/*"], tunnels_max=100)

    # A valid token opens every format, by header, by cookie and by query.
    for fmt in ("sse", "nul", "ndjson", "iframe"):
        s = stream_head(addr, f"format={fmt}&path=/chat/a", bearer(alice))
        check(f"HS256 token opens {fmt}", s == 200, s)
    s, body, _ = longpoll(addr, "path=/chat/a", bearer(alice))
    opened = s == 200 and body["messages"][0].get("new") is True
    check("HS256 token opens longpoll", opened, (s, body))
    s, _, data = request(addr, "GET", f"/tunnel?format=jsonp&cb=f&token={alice}")
    check("token in the query opens jsonp", s == 200 and b'f({"ok":true' in data, (s, data[:80]))
    s = stream_head(addr, "format=sse", {"Cookie": f"theme=dark; router_token={alice_es}"})
    check("ES256 token in the router_token cookie opens sse", s == 200, s)
    with ws_connect(f"ws://{addr}/tunnel?format=ws", additional_headers=bearer(alice_es)) as ws:
        control = json.loads(ws.recv(timeout=5))
        check("ES256 token opens a WebSocket", control.get("type") == "tunnel", control)

        # A path outside `subscribe` is 403 on the WebSocket message.
        ws.send(json.dumps({"type": "subscribe", "path": "/secret/*"}))
        reply = json.loads(ws.recv(timeout=5))
        check(
            "subscribe outside the grant over WebSocket: error message",
            reply == {"type": "error", "error": "the token does not allow this path"},
            reply,
        )
        ws.send(json.dumps({"type": "publish", "path": "/news", "data": 1}))
        reply = json.loads(ws.recv(timeout=5))
        check("publish outside the grant over WebSocket: error", reply.get("type") == "error", reply)
        ws.send(json.dumps({"type": "publish", "path": "/chat/ws", "data": 1}))
        reply = json.loads(ws.recv(timeout=5))
        check("publish inside the grant over WebSocket: ack", reply.get("type") == "ack", reply)

    # Refused tokens: all 401 with a Bearer challenge.
    now = int(time.time())
    refused = {
        "missing": None,
        "malformed": "garbage",
        "alg none": m.none("alice"),
        "wrong key": m.es_other_key("alice"),
        "expired": m.hs("alice", exp=now - 60),
        "wrong audience": m.hs("alice", aud="someone-else"),
        "no audience": m.hs("alice", aud=None),
        "no sub": jwt.encode({"exp": now + 600, "aud": AUDIENCE}, m.secret, algorithm="HS256"),
    }
    for name, token in refused.items():
        headers = bearer(token) if token else {}
        s, body, hdrs = longpoll(addr, "", headers)
        challenge = hdrs.get("WWW-Authenticate", "")
        ok = s == 401 and challenge.startswith("Bearer")
        check(f"{name} token: 401 with WWW-Authenticate", ok, (s, body, challenge))
        if token:
            ws_status = None
            try:
                ws_connect(f"ws://{addr}/tunnel?format=ws", additional_headers=headers).close()
            except InvalidStatus as e:
                ws_status = e.response.status_code
            check(f"{name} token: WebSocket upgrade 401", ws_status == 401, ws_status)
    s, body, _ = longpoll(addr, "", bearer(refused["expired"]))
    check("expired says so", error_of(body) == "token expired", body)

    # Paths outside the grant: 403 on `path=` and on the subscribe call.
    s, body, _ = longpoll(addr, "path=/secret", bearer(alice))
    check("path= outside the grant: 403", s == 403, (s, body))
    s, body, _ = longpoll(addr, "path=/*", bearer(alice))
    check("path=/* wider than the grant: 403", s == 403, (s, body))
    s, body, _ = longpoll(addr, "", bearer(alice))
    tunnel = body["tunnel"]
    sub_url = f"/tunnel/{tunnel}/subscribe"
    s, _, data = request(addr, "POST", sub_url, bearer(alice), json.dumps({"path": "/secret"}))
    check("subscribe call outside the grant: 403", s == 403, (s, data))
    s, _, data = request(addr, "POST", sub_url, bearer(alice), json.dumps({"path": "/news"}))
    check("subscribe call inside the grant: 200", s == 200, (s, data))
    s, _, data = request(addr, "POST", sub_url, {}, json.dumps({"path": "/news"}))
    check("subscribe call without a token: 401", s == 401, (s, data))
    bob = m.hs("bob", subscribe=["/*"], publish=["/*"])
    s, _, data = request(addr, "POST", sub_url, bearer(bob), json.dumps({"path": "/news"}))
    check("subscribe call with another user's token: 403", s == 403, (s, data))

    # Events: the grant's `publish` patterns; another user cannot post through the tunnel.
    event = lambda path, token: request(
        addr,
        "POST",
        "/events",
        bearer(token),
        json.dumps({"tunnel": tunnel, "path": path, "data": {"n": 1}}),
    )
    s, _, data = event("/chat/room", alice)
    check("event inside the grant: 202", s == 202, (s, data))
    s, _, data = event("/news", alice)
    check("event outside the grant: 403", s == 403, (s, data))
    s, _, data = event("/chat/room", bob)
    check("event through another user's tunnel: 403", s == 403, (s, data))
    s, _, data = event(f"/tunnel/{tunnel}", alice)
    check("event to the tunnel's own private path: 202", s == 202, (s, data))

    # Re-attach: another user is refused, the same user replays what was missed.
    s, _, data = request(
        addr, "POST", "/publish/chat/a", bearer(PUBLISH_KEY), json.dumps({"missed": True})
    )
    check("backend publish with its key: 202", s == 202, (s, data))
    s, body, _ = longpoll(addr, "path=/chat/a", bearer(alice))
    t2 = body["tunnel"]
    did = json.loads(
        request(addr, "POST", "/publish/chat/a", bearer(PUBLISH_KEY), json.dumps({"n": 2}))[2]
    )["id"]
    s, body, _ = longpoll(addr, f"id={t2}&last={t2}", bearer(bob))
    check("re-attach with another sub: 403", s == 403, (s, body))
    s, body, _ = longpoll(addr, f"id={t2}&last={t2}")
    check("re-attach without a token: 401", s == 401, (s, body))
    s, body, _ = longpoll(addr, f"id={t2}&last={t2}", bearer(alice_es))
    ids = [d.get("id") for d in body.get("messages", [])] if isinstance(body, dict) else body
    check("re-attach with the same sub replays", s == 200 and did in ids, (s, body))

    # Origins: a foreign one is refused everywhere a browser reaches.
    evil = {"Origin": "https://evil.example", **bearer(alice)}
    s, body, _ = longpoll(addr, "", evil)
    check("foreign Origin opening a tunnel: 403", s == 403, (s, body))
    s, body, hdrs = longpoll(addr, "", {"Origin": ALLOWED_ORIGIN, **bearer(alice)})
    check("allowed Origin opens a tunnel", s == 200, (s, body))
    named = (
        hdrs.get("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
        and hdrs.get("Access-Control-Allow-Credentials") == "true"
        and hdrs.get("Vary") == "Origin"
    )
    check("its answer names the origin (not *), with credentials and Vary", named, hdrs)
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/tunnel?format=sse", headers={"Origin": ALLOWED_ORIGIN, **bearer(alice)})
    r = c.getresponse()
    sse_named = r.status == 200 and r.getheader("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
    check("a stream names the origin too", sse_named and r.getheader("Vary") == "Origin", r.getheaders())
    c.close()
    s, _, _ = longpoll(addr, "", bearer(alice))
    _, _, hdrs = longpoll(addr, "", bearer(alice))
    check(
        "without an Origin: no grant, Vary: Origin",
        "Access-Control-Allow-Origin" not in hdrs and hdrs.get("Vary") == "Origin",
        hdrs,
    )
    preflight = {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    s, hdrs, _ = request(addr, "OPTIONS", "/tunnel", preflight)
    allows = hdrs.get("Access-Control-Allow-Headers", "")
    check(
        "preflight from the allowed origin: named, Authorization allowed",
        s == 204 and hdrs.get("Access-Control-Allow-Origin") == ALLOWED_ORIGIN and "Authorization" in allows,
        (s, hdrs),
    )
    s, hdrs, _ = request(addr, "OPTIONS", "/tunnel", {**preflight, "Origin": "https://evil.example"})
    check("preflight from another origin: no grant", "Access-Control-Allow-Origin" not in hdrs, (s, hdrs))
    s, hdrs, _ = request(addr, "OPTIONS", "/publish/chat/a", preflight)
    check("preflight of /publish: never a grant", "Access-Control-Allow-Origin" not in hdrs, (s, hdrs))
    ws_status = None
    try:
        ws_connect(
            f"ws://{addr}/tunnel?format=ws", additional_headers=bearer(alice), origin="https://evil.example"
        ).close()
    except InvalidStatus as e:
        ws_status = e.response.status_code
    check("foreign Origin on the WebSocket upgrade: 403", ws_status == 403, ws_status)
    s, _, data = request(
        addr, "POST", "/events", evil, json.dumps({"tunnel": tunnel, "path": "/chat/x", "data": 1})
    )
    check("foreign Origin posting an event: 403", s == 403, (s, data))
    for method, target in (("POST", f"/tunnel/{tunnel}/subscribe"), ("POST", f"/tunnel/{tunnel}/token"),
                           ("GET", "/pull?path=/chat/x"), ("POST", "/push?path=/chat/x")):
        s, _, data = request(addr, method, target, evil, "x" if method == "POST" else None)
        check(f"foreign Origin on {method} {target.split('?')[0]}: 403", s == 403, (s, data))

    # Publishers: keys are required, browsers are refused.
    s, _, data = request(addr, "POST", "/publish/chat/a", {}, "1")
    check("backend publish without a key: 401", s == 401, (s, data))
    s, _, data = request(addr, "POST", "/publish/chat/a", bearer("not-a-key-0123456789"), "1")
    check("backend publish with a wrong key: 401", s == 401, (s, data))
    s, _, data = request(
        addr,
        "POST",
        "/publish/chat/a",
        {"Origin": "http://evil.example", "Content-Type": "text/plain", **bearer(PUBLISH_KEY)},
        "1",
    )
    check("publish carrying an Origin: 403", s == 403, (s, data))
    s, _, data = request(
        addr, "POST", "/publish/chat/a", {"Sec-Fetch-Site": "cross-site", **bearer(PUBLISH_KEY)}, "1"
    )
    check("publish fetched by a page (Sec-Fetch-Site): 403", s == 403, (s, data))

    # tunnels_max holds across shards: each user's tunnels land on both shards, yet the count
    # is one. Long-poll opens use a new connection each, spread over the shards by the kernel.
    shards_seen = set()
    for user in ("carol", "dave", "erin", "frank"):
        token = m.hs(user, tunnels_max=3)
        statuses = []
        for _ in range(3):
            s, body, _ = longpoll(addr, "", bearer(token))
            statuses.append(s)
            if s == 200:
                shards_seen.add(body["tunnel"].split("-")[0])
        s4, body4, _ = longpoll(addr, "", bearer(token))
        check(
            f"{user}: 3 tunnels open, the 4th is 429",
            statuses == [200, 200, 200] and s4 == 429,
            (statuses, s4, body4),
        )
    check("those tunnels live on both shards", len(shards_seen) == 2, shards_seen)
    # Once culled (tunnel_grace_ms), the user's allowance is back, on every shard.
    time.sleep(1.5)
    token = m.hs("carol", tunnels_max=3)
    statuses = [longpoll(addr, "", bearer(token))[0] for _ in range(3)]
    check("culled tunnels give their allowance back", statuses == [200, 200, 200], statuses)

    # The default allowance (auth.tunnels_per_sub_max = 4) without a claim.
    token = m.hs("gina")
    statuses = [longpoll(addr, "", bearer(token))[0] for _ in range(5)]
    check("default allowance: 4 then 429", statuses == [200] * 4 + [429], statuses)


def run_expiry(d, addr):
    """Tokens that expire while their tunnels are attached (the router's leeway_s is 1)."""
    m = Minter(d)
    short = lambda: m.hs("ivan", exp=int(time.time()) + 2, subscribe=["/exp/*"], tunnels_max=50)
    fresh = m.hs("ivan", subscribe=["/exp/*"], tunnels_max=50)
    results = {}

    def ws_until_closed(name, renew):
        with ws_connect(f"ws://{addr}/tunnel?format=ws&path=/exp/ws", additional_headers=bearer(short())) as ws:
            tunnel = json.loads(ws.recv(timeout=5))["tunnel"]
            if renew:
                s, _, data = request(addr, "POST", f"/tunnel/{tunnel}/token", bearer(fresh))
                results[name + " renew"] = (s, json.loads(data))
            got = []
            try:
                while True:
                    got.append(json.loads(ws.recv(timeout=6)))
            except TimeoutError:
                results[name] = (got, "still open")
                return
            except Exception:
                pass
            results[name] = (got, ws.close_code, ws.close_reason)

    def sse_until_end():
        host, port = addr.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("GET", "/tunnel?format=sse&path=/exp/sse", headers=bearer(short()))
        r = c.getresponse()
        results["sse"] = r.read().decode()  # until the terminating chunk

    def parked_poll():
        s, body, _ = longpoll(addr, "path=/exp/poll", bearer(short()))
        t = body["tunnel"]
        results["poll tunnel"] = t
        results["poll"] = longpoll(addr, f"id={t}&last={t}&ttl=20000", bearer(short()))
        # At once, within the router's tunnel_grace_ms: the tunnel waits for a fresh token.
        results["mallory"] = request(addr, "POST", f"/tunnel/{t}/token", bearer(m.hs("mallory")))
        pub = request(addr, "POST", "/publish/exp/poll", bearer(PUBLISH_KEY), "7")
        results["published"] = json.loads(pub[2])["id"]
        results["reattach"] = longpoll(addr, f"id={t}&last={t}", bearer(fresh))

    import threading

    threads = [
        threading.Thread(target=ws_until_closed, args=("ws", False)),
        threading.Thread(target=ws_until_closed, args=("ws renewed", True)),
        threading.Thread(target=sse_until_end),
        threading.Thread(target=parked_poll),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)

    got, *end = results.get("ws", ([], None))
    check(
        "WebSocket: token expired message, then close 1008",
        {"type": "error", "error": "token expired"} in got and end == [1008, "token expired"],
        results.get("ws"),
    )
    s, body = results.get("ws renewed renew", (None, {}))
    check("POST /tunnel/<id>/token with a fresh token: 200 and its exp", s == 200 and body.get("exp", 0) > time.time() + 60, (s, body))
    check("a renewed WebSocket stays open past the old expiry", results.get("ws renewed", (None, ""))[-1] == "still open", results.get("ws renewed"))
    sse = results.get("sse", "")
    check(
        "SSE: token expired event, then the stream ends",
        'data: {"type":"error","error":"token expired"}' in sse,
        sse[-200:],
    )
    s, body, _ = results.get("poll", (None, {}, {}))
    check(
        "parked long-poll: answered with token expired",
        s == 200 and body.get("messages") == [{"type": "error", "error": "token expired"}],
        (s, body),
    )
    # Nothing is lost: what was published after the close is replayed on re-attach.
    s, _, data = results.get("mallory", (None, {}, b""))
    check("renewing another user's tunnel: 403", s == 403, (s, data))
    s, body, _ = results.get("reattach", (None, {}, {}))
    ids = [x.get("id") for x in body.get("messages", [])] if isinstance(body, dict) else body
    did = results.get("published")
    check("re-attach with a fresh token replays what came after", s == 200 and did in ids, (s, body))


def run_rotation(d, addr, pid, config):
    """Keys rotated by a reload (the config file rewritten, SIGHUP to the router): tokens of the
    key taken out are refused from then on, the new key's are accepted, and a tunnel opened
    before keeps being served. `auth.mode` does not change by a reload."""
    m = Minter(d)
    old = m.es("rita", subscribe=["/rot/*"])
    new = m.es_other_key("rita", subscribe=["/rot/*"])
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/tunnel?format=ndjson&path=/rot/a", headers=bearer(old))
    stream = c.getresponse()
    check("a tunnel opens with the old key", stream.status == 200, stream.status)
    control = json.loads(stream.readline())
    check("its control datagram", control.get("type") == "tunnel", control)
    s = longpoll(addr, "", bearer(new))[0]
    check("the new key is unknown before the rotation: 401", s == 401, s)

    with open(config) as f:
        text = f.read()
    rotated = text.replace("es256.pub.pem", "other.pub.pem").replace('mode = "jwt"', 'mode = "none"')
    with open(config, "w") as f:
        f.write(rotated)
    os.kill(pid, signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and longpoll(addr, "", bearer(new))[0] != 200:
        time.sleep(0.05)
    s = longpoll(addr, "", bearer(new))[0]
    check("after the reload the new key's tokens open tunnels", s == 200, s)
    s, body, _ = longpoll(addr, "", bearer(old))
    check("and the old key's tokens are refused (the cache forgot them)", s == 401, (s, body))
    s = longpoll(addr, "")[0]
    check("auth.mode did not change by a reload: still 401 without a token", s == 401, s)
    s, _, data = request(addr, "POST", "/publish/rot/a", bearer(PUBLISH_KEY), json.dumps({"after": "rotation"}))
    line = json.loads(stream.readline()) if s == 202 else None
    check(
        "the tunnel opened with the old key is still served",
        line is not None and line.get("data") == {"after": "rotation"},
        (s, data, line),
    )
    c.close()
    with open(config, "w") as f:
        f.write(text)


def run_admission(addr):
    # 2 new tunnels per second over 2 shards: a burst of one per shard, then one per second each.
    opened, refused, retry_after = [], 0, []
    for _ in range(12):
        s, body, hdrs = longpoll(addr, "")
        if s == 200:
            opened.append(body["tunnel"])
        elif s == 503:
            refused += 1
            retry_after.append(int(hdrs.get("Retry-After", "0")))
    check("new tunnels are paced: some admitted, most refused", 1 <= len(opened) <= 4 and refused >= 8, (len(opened), refused))
    check(
        "refusals carry a spread Retry-After of 1-5 s",
        all(1 <= r <= 5 for r in retry_after) and len(set(retry_after)) > 1,
        retry_after,
    )
    statuses = []
    for _ in range(5):
        for t in opened:
            statuses.append(longpoll(addr, f"id={t}&last={t}&ttl=10")[0])
    check("re-attaches are never throttled", set(statuses) == {200}, statuses)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "keys":
        write_keys(sys.argv[2])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        run_checks(sys.argv[2], sys.argv[3])
        run_expiry(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "rotate":
        run_rotation(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) == 3 and sys.argv[1] == "admission":
        run_admission(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
