"""A push/pull session client written from the 2007 session notes: `GET /<n>/<prog>` starts a
session and answers the client JavaScript with the session id in it; the client keeps a push
connection `GET /push/<sessionid>` and reopens it each time the server closes it (nothing may
be lost in between); it sends with `POST /pull/<sessionid>`; a session whose push connection is
not reopened within the grace is destroyed. The router runs with the programs `prog` (the
defaults: one message per push connection) and `timed` (push connections end after 300 ms),
and `session_grace_ms` = GRACE_MS.

Usage: sessions.py HOST:PORT GRACE_MS. Prints one line per check and `N passed, M failed`
last; exits 1 on a failure."""

import json
import re
import sys
import threading
import time

from http_client import Body, connect

failures = []
passed = 0


def check(name, ok, detail=""):
    global passed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failures.append(name)
        print(f"FAIL {name} {detail}")


def start_session(addr, program="prog"):
    """The session id from the client code of a new session."""
    conn = connect(addr)
    status, headers, body = conn.request("GET", f"/5/{program}")
    conn.close()
    match = re.search(rb'var session = "([^"]*)";', body)
    return status, headers, body, (match.group(1).decode() if match else None)


def push_once(conn, sid):
    """One push connection: the messages it carried once the server ended it, and its status."""
    conn.send("GET", f"/push/{sid}")
    status, headers = conn.read_head()
    if status != 200:
        if "content-length" in headers:
            conn.read_exact(int(headers["content-length"]))
        return status, []
    body = b"".join(iter(Body(conn, headers).chunk, None))
    return status, [json.loads(line) for line in body.split(b"\n") if line]


def publish(addr, path, data):
    conn = connect(addr)
    status, _, body = conn.request("POST", f"/publish{path}", json.dumps(data).encode())
    conn.close()
    return status, body


class Backend:
    """The program's backend: a tunnel subscribed to every session's messages."""

    def __init__(self, addr, program):
        self.conn = connect(addr)
        self.conn.send("GET", f"/tunnel?format=ndjson&path=/programs/{program}/*")
        self.status, headers = self.conn.read_head()
        self.body = Body(self.conn, headers)
        self.pending = b""

    def next_message(self):
        while True:
            while b"\n" not in self.pending:
                self.pending += self.body.chunk()
            line, self.pending = self.pending.split(b"\n", 1)
            datagram = json.loads(line)
            if "type" not in datagram:
                return datagram


def main():
    addr, grace_s = sys.argv[1], int(sys.argv[2]) / 1000

    status, headers, body, sid = start_session(addr)
    check("GET /5/prog answers 200 with the client code", status == 200, (status, body))
    check("the client code is JavaScript",
          headers.get("content-type", "").startswith("application/javascript"), headers)
    check("the session id is in the client code", bool(sid) and b"{session}" not in body, body)
    _, _, _, other = start_session(addr)
    check("each session has its own id", other and other != sid, (sid, other))

    conn = connect(addr)
    status, _, _ = conn.request("GET", "/5/no-such-program")
    check("an unknown program is 404", status == 404, status)
    status, _, _ = conn.request("GET", "/push/0-0-0000000000000000")
    check("GET /push of an unknown session is 404", status == 404, status)
    status, _, _ = conn.request("POST", "/pull/nonsense", b"{}")
    check("POST /pull of an unknown session is 404", status == 404, status)
    conn.close()

    # The backend sends 20 messages: 5 before the first push connection, 15 while the client
    # keeps reopening it. Every push connection is closed by the server after one message.
    backend = Backend(addr, "prog")
    check("the backend subscribes to /programs/prog/*", backend.status == 200, backend.status)
    sent = [{"n": i} for i in range(20)]
    for data in sent[:5]:
        status, body = publish(addr, f"/tunnel/{sid}", data)
        assert status == 202, (status, body)

    def publish_rest():
        for data in sent[5:]:
            publish(addr, f"/tunnel/{sid}", data)
            time.sleep(0.01)

    sender = threading.Thread(target=publish_rest)
    sender.start()
    client = connect(addr)
    received, connections, sizes = [], 0, set()
    end = time.monotonic() + 20
    while len(received) < len(sent) and time.monotonic() < end:
        status, messages = push_once(client, sid)
        if status != 200:
            break
        connections += 1
        sizes.add(len(messages))
        received += [m["data"] for m in messages]
    sender.join()
    check("20 messages across push connections: none lost, none twice, in order",
          received == sent, received)
    check("the server closed each push connection after one message",
          sizes == {1} and connections == 20, (sizes, connections))

    # The client sends a message to the backend.
    status, _, body = client.request("POST", f"/pull/{sid}", b'{"text":"hi"}')
    check("POST /pull answers 202", status == 202, (status, body))
    datagram = backend.next_message()
    check("the backend receives it on /programs/prog/<session>",
          datagram.get("path") == f"/programs/prog/{sid}" and datagram.get("data") == {"text": "hi"},
          datagram)
    status, _, _ = client.request("POST", f"/pull/{sid}", b"not json")
    check("a /pull body that is not JSON is 400", status == 400, status)

    # Within the grace the session waits for its next push connection, and gets what came.
    time.sleep(grace_s / 3)
    publish(addr, f"/tunnel/{sid}", {"late": True})
    status, messages = push_once(client, sid)
    check("a push reopened within the grace gets what came meanwhile",
          status == 200 and [m["data"] for m in messages] == [{"late": True}], messages)
    client.close()

    # An open push connection keeps its session past the grace.
    _, _, _, held = start_session(addr)
    holder = connect(addr, timeout_s=grace_s * 3 + 5)
    holder.send("GET", f"/push/{held}")
    status, headers = holder.read_head()
    time.sleep(grace_s * 1.5)
    publish(addr, f"/tunnel/{held}", {"held": True})
    body = b"".join(iter(Body(holder, headers).chunk, None))
    check("a session whose push connection is open outlives the grace",
          status == 200 and json.loads(body.split(b"\n")[0])["data"] == {"held": True}, body)
    holder.close()

    # A push connection of `timed` ends after its time, empty, with no keepalive.
    _, _, _, timed = start_session(addr, "timed")
    conn = connect(addr)
    began = time.monotonic()
    status, messages = push_once(conn, timed)
    took = time.monotonic() - began
    check("a push connection ends on its own after its time, empty",
          status == 200 and messages == [] and 0.2 <= took < 5, (status, messages, took))
    conn.close()

    # Destruction: `sid` (the server ended its last push connection), a session whose client
    # closed its push connection itself, and one that never opened one.
    _, _, _, dropped = start_session(addr)
    conn = connect(addr)
    conn.send("GET", f"/push/{dropped}")
    conn.read_head()
    conn.close()
    _, _, _, idle = start_session(addr)
    time.sleep(grace_s / 4)
    conn = connect(addr)
    status, _, _ = conn.request("POST", f"/pull/{dropped}", b"1")
    check("a session whose client closed the push connection lives during the grace",
          status == 202, status)
    time.sleep(grace_s * 1.5)
    for name, s in [("server-closed", sid), ("client-closed", dropped), ("never pushed", idle)]:
        push_status, _ = push_once(conn, s)
        pull_status, _, _ = conn.request("POST", f"/pull/{s}", b"1")
        publish_status, _ = publish(addr, f"/tunnel/{s}", 1)
        check(f"{name} session destroyed after the grace: push, pull and publish are 404",
              (push_status, pull_status, publish_status) == (404, 404, 404),
              (push_status, pull_status, publish_status))
    conn.close()

    print(f"{passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
