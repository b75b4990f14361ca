#!/usr/bin/env python3
"""A client of the router's TLS listener, with Python's `ssl` and `websockets` and certificates
made by `cryptography`: nothing of the router's own code.

Usage:
  check.py cert DIR NAME                 writes DIR/NAME.cert.pem and DIR/NAME.key.pem, a
                                         self-signed certificate for 127.0.0.1 and localhost
  check.py check DIR HOST:PORT TLS_PORT PID CERT KEY
                                         the checks against a router whose [tls] serves
                                         DIR/a.*.pem from the files CERT and KEY; its plain
                                         listener is HOST:PORT; PID gets a SIGHUP when the
                                         certificate is replaced by DIR/b.*.pem

Run by router/tests/tls.rs. Every check prints one line; the last line counts them.
"""

import asyncio
import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect as ws_connect

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


def write_cert(d, name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"router test {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with open(os.path.join(d, f"{name}.cert.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(d, f"{name}.key.pem"), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def context(d, name):
    ctx = ssl.create_default_context(cafile=os.path.join(d, f"{name}.cert.pem"))
    return ctx


def fingerprint(d, name):
    with open(os.path.join(d, f"{name}.cert.pem"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def https(port, ctx, method, target, body=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    c.request(method, target, body=body)
    r = c.getresponse()
    status, data = r.status, r.read()
    peer = hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
    c.close()
    return status, data, peer


def publish(addr, path, data):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("POST", f"/publish{path}", body=json.dumps(data))
    r = c.getresponse()
    status, body = r.status, r.read()
    c.close()
    return status, body


def run_checks(d, addr, tls_port, pid, cert_file, key_file):
    a = context(d, "a")
    s, data, peer = https(tls_port, a, "GET", "/tunnel?format=longpoll")
    check("a long-poll over TLS opens a tunnel", s == 200 and b'"tunnel"' in data, (s, data[:80]))
    check("the router presents the configured certificate", peer == fingerprint(d, "a"), peer)

    # A stream over TLS receives what a backend publishes on the plain listener.
    sse = http.client.HTTPSConnection("127.0.0.1", tls_port, context=a, timeout=10)
    sse.request("GET", "/tunnel?format=ndjson&path=/tls/a")
    stream = sse.getresponse()
    control = json.loads(stream.readline())
    check("an ndjson stream over TLS opens", stream.status == 200 and control.get("type") == "tunnel", control)
    s, _ = publish(addr, "/tls/a", {"n": 1})
    line = json.loads(stream.readline())
    check("it receives a datagram", s == 202 and line.get("data") == {"n": 1}, line)

    async def wss():
        async with ws_connect(f"wss://127.0.0.1:{tls_port}/tunnel?format=ws", ssl=a) as ws:
            control = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.send(json.dumps({"type": "publish", "path": "/tls/ws", "data": 2}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return control, ack

    control, ack = asyncio.run(wss())
    check("a WebSocket over TLS (wss) opens and publishes", control.get("type") == "tunnel" and ack.get("type") == "ack", (control, ack))

    # The TLS peer's own address decides what a plain one's does: a loopback backend publishes.
    s, data, _ = https(tls_port, a, "POST", "/publish/tls/a", json.dumps({"n": 3}))
    check("a loopback backend publishes over TLS", s == 202, (s, data))
    line = json.loads(stream.readline())
    check("the stream gets that too", line.get("data") == {"n": 3}, line)

    # Plain HTTP on the TLS port is no TLS handshake: the connection just closes.
    raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    raw.sendall(b"GET /tunnel?format=longpoll HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        got = raw.recv(1024)
    except (ConnectionResetError, socket.timeout):
        got = b""
    raw.close()
    check("plain HTTP on the TLS port gets no HTTP answer", not got.startswith(b"HTTP/"), got[:40])

    # The certificate is replaced and reloaded: new connections get the new one, the open
    # stream goes on.
    shutil.copy(os.path.join(d, "b.cert.pem"), cert_file)
    shutil.copy(os.path.join(d, "b.key.pem"), key_file)
    os.kill(pid, signal.SIGHUP)
    b = context(d, "b")
    deadline = time.time() + 10
    peer = None
    while time.time() < deadline:
        try:
            s, data, peer = https(tls_port, b, "GET", "/tunnel?format=longpoll")
            break
        except ssl.SSLError:
            time.sleep(0.05)
    check("after a reload, new connections get the new certificate", peer == fingerprint(d, "b"), peer)
    s, _ = publish(addr, "/tls/a", {"n": 4})
    line = json.loads(stream.readline())
    check("the stream opened before the reload goes on", line.get("data") == {"n": 4}, line)
    sse.close()

    # A drain (SIGTERM) reaches a wss client as it does a plain one: close 1012.
    async def drained():
        async with ws_connect(f"wss://127.0.0.1:{tls_port}/tunnel?format=ws", ssl=b) as ws:
            await asyncio.wait_for(ws.recv(), 5)
            os.kill(pid, signal.SIGTERM)
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except Exception:
                pass
            rcvd = ws.protocol.close_rcvd
            return rcvd.code if rcvd else None

    code = asyncio.run(drained())
    check("a drain closes a wss tunnel with 1012 (service restart)", code == 1012, code)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "cert":
        write_cert(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 8 and sys.argv[1] == "check":
        d, addr, tls_port, pid, cert_file, key_file = sys.argv[2:]
        run_checks(d, addr, int(tls_port), int(pid), cert_file, key_file)
        print(f"{passed} passed, {failed} failed")
        return 1 if failed else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
