"""A small HTTP/1.1 client on raw sockets for the seed clients: requests on a kept-alive
connection, and streaming answers read as they come (chunked or close-delimited)."""

import socket
import time


class Connection:
    """One kept-alive connection to the router."""

    def __init__(self, host, port, timeout_s=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, method, target, body=b"", headers=()):
        head = f"{method} {target} HTTP/1.1\r\nHost: router\r\n"
        for name, value in headers:
            head += f"{name}: {value}\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the router closed the connection")
        self.buf += data

    def read_head(self):
        """The status and the headers (names in lower case) of the next answer."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def request(self, method, target, body=b"", headers=()):
        """A whole answer: (status, headers, body) of a Content-Length or chunked answer."""
        self.send(method, target, body, headers)
        status, headers = self.read_head()
        if "content-length" in headers:
            return status, headers, self.read_exact(int(headers["content-length"]))
        body = b"".join(iter(Body(self, headers).chunk, None))
        return status, headers, body


class Body:
    """The body of a streaming answer, read piece by piece as the router writes it."""

    def __init__(self, conn, headers):
        self.conn = conn
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self.done = False

    def chunk(self):
        """The next piece, or None once the answer is over."""
        if self.done:
            return None
        if self.chunked:
            size = int(self.conn.read_line().split(b";")[0], 16)
            if size == 0:
                self.conn.read_line()
                self.done = True
                return None
            data = self.conn.read_exact(size)
            self.conn.read_line()
            return data
        try:
            if not self.conn.buf:
                self.conn._fill()
        except EOFError:
            self.done = True
            return None
        data, self.conn.buf = self.conn.buf, b""
        return data


def connect(addr, timeout_s=5.0):
    host, port = addr.rsplit(":", 1)
    return Connection(host, int(port), timeout_s)


def deadline(seconds):
    end = time.monotonic() + seconds
    return lambda: time.monotonic() < end
