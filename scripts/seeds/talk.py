"""A Talk client written from the Talk draft (draft-talk-comet-stream-protocol-00): messages go
up as the body of `POST /push`, come down on a chunked `GET /pull` answer, each ended by a NUL.
Rooms are paths (`?path=`, default `/talk`).

Usage: talk.py HOST:PORT. Prints one line per check and `N passed, M failed` last; exits 1 on
a failure."""

import sys

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


class Puller:
    """A `GET /pull` held open, split into messages at each NUL."""

    def __init__(self, addr, query=""):
        self.conn = connect(addr)
        self.conn.send("GET", "/pull" + query)
        self.status, self.headers = self.conn.read_head()
        self.body = Body(self.conn, self.headers) if self.status == 200 else None
        self.pending = b""

    def messages(self, count):
        """The next `count` messages; empty ones (keepalives) are skipped."""
        out = []
        while len(out) < count:
            while b"\0" not in self.pending:
                piece = self.body.chunk()
                if piece is None:
                    raise EOFError("the pull ended")
                self.pending += piece
            message, self.pending = self.pending.split(b"\0", 1)
            if message:
                out.append(message)
        return out


def main():
    addr = sys.argv[1]
    alice = Puller(addr)
    bob = Puller(addr, "?path=/talk")
    other = Puller(addr, "?path=/rooms/other")
    for name, p in [("alice", alice), ("bob", bob), ("other room", other)]:
        check(f"{name}: /pull answers 200", p.status == 200, p.status)
    check(
        "/pull is chunked",
        alice.headers.get("transfer-encoding", "").lower() == "chunked",
        alice.headers,
    )

    # Alice pushes on one kept-alive connection; her own pull is in the room too.
    pusher = connect(addr)
    sent = [b"hello", "h\u00e9llo w\u00f6rld".encode(), bytes(range(1, 256)), b"x" * 20000]
    for m in sent:
        status, _, body = pusher.request("POST", "/push", m)
        check(f"push of {len(m)} bytes answers 202", status == 202, (status, body))
    for name, p in [("alice (the pusher)", alice), ("bob", bob)]:
        got = p.messages(len(sent))
        check(f"{name} receives every message, bytes exact, in order", got == sent,
              [len(g) for g in got])

    status, _, _ = pusher.request("POST", "/push?path=/rooms/other", b"elsewhere")
    check("push to another room answers 202", status == 202, status)
    got = other.messages(1)
    check("the other room receives only its own message", got == [b"elsewhere"], got)

    status, _, body = pusher.request("POST", "/push", b"a\0b")
    check("a message containing NUL is refused with 400", status == 400, (status, body))
    status, _, body = pusher.request("POST", "/push", b"")
    check("an empty message is refused with 400", status == 400, (status, body))
    status, _, body = pusher.request("POST", "/push?path=/tunnel/0-1-x", b"m")
    check("a private path is refused with 403", status == 403, (status, body))
    status, _, body = pusher.request("POST", "/push?path=no-slash", b"m")
    check("an invalid path is refused with 400", status == 400, (status, body))
    status, _, _ = pusher.request("GET", "/push")
    check("GET /push is 405", status == 405, status)

    # What was refused never reached the room: the next message is the next one received.
    status, _, _ = pusher.request("POST", "/push", b"after")
    got = bob.messages(1)
    check("refused messages were not delivered", status == 202 and got == [b"after"], got)

    print(f"{passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
