//! Test support: an in-process router on 127.0.0.1:0 and a raw-socket HTTP client that reads
//! exact bytes (chunked streams included) with bounded waits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use router::config::Config;
use router::shard::clock::ManualClock;

pub mod chaos;
pub mod process;
pub mod script;

/// Longest any single read in a test may wait.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a router with two shards on an ephemeral port; `flags` are extra command-line flags.
/// The router is stopped when the test's thread ends.
pub fn start(flags: &[&str]) -> SocketAddr {
    let server = router::server::start(test_config(flags)).expect("router starts");
    keep(server)
}

/// Starts a router as [`start`] does, on a manual clock: its keepalives, long-poll ttls, culls
/// and event rate limits wait for the test to move the clock, not for real time.
pub fn start_manual(flags: &[&str]) -> (SocketAddr, TestClock) {
    let server =
        router::server::start_with_manual_clock(test_config(flags)).expect("router starts");
    let clock = server.manual_clock().expect("started on a manual clock");
    (keep(server), TestClock(clock))
}

fn test_config(flags: &[&str]) -> Config {
    let mut args: Vec<String> = vec!["--listen", "127.0.0.1:0", "--shards", "2", "--log", "warn"]
        .into_iter()
        .map(String::from)
        .collect();
    args.extend(flags.iter().map(|s| s.to_string()));
    Config::from_args(args).expect("test config is valid")
}

/// Keeps `server` running until the test's thread ends; returns its address.
fn keep(server: router::server::Server) -> SocketAddr {
    let addr = server.addr;
    SERVERS.with(|servers| servers.borrow_mut().push(Running(Some(server))));
    addr
}

/// The manual clock of a router started by [`start_manual`].
pub struct TestClock(pub Arc<ManualClock>);

impl TestClock {
    /// Moves the clock `ms` forward. When it returns, every shard has fired what came due (a
    /// cull is done; a keepalive or an expired poll is on its way to its connection).
    pub fn advance(&self, ms: u64) {
        assert!(
            self.0.advance(ms),
            "a shard did not catch up with the clock"
        );
    }

    /// Runs `action`, which makes the router set `n` attachment deadlines (a stream or a
    /// WebSocket attaching, a poll parking, a write or a keepalive arming the next one), and
    /// waits until it has. The router reads the clock when it sets a deadline, after writing
    /// what the test reads, so the clock may only move once the deadline is set.
    pub fn arming<R>(&self, n: u64, action: impl FnOnce() -> R) -> R {
        let before = self.0.deadlines_set();
        let result = action();
        let deadline = Instant::now() + WAIT;
        while self.0.deadlines_set() < before + n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} deadlines set",
                self.0.deadlines_set() - before
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        result
    }
}

/// A router that stops when dropped.
struct Running(Option<router::server::Server>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.0.take() {
            // Stopped from a thread of its own: the stop wakes the shards through the calling
            // thread's monoio context, a thread-local that may already be gone while this
            // thread's locals are dropped (once the thread has woken a shard itself, as a
            // test that moves a manual clock does), and the wake would then be lost.
            let stopping = std::thread::spawn(move || server.stop());
            let _ = stopping.join();
        }
    }
}

thread_local! {
    /// The routers this test thread started; dropped (stopped) when the thread ends.
    static SERVERS: std::cell::RefCell<Vec<Running>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding") == Some("chunked")
    }
}

/// A client connection that reads responses.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            reader: BufReader::new(connect(addr)),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).expect("write");
    }

    /// Sends `GET target` (HTTP/1.1, keep-alive).
    pub fn get(&mut self, target: &str) {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }

    /// Sends `POST target` with a JSON body.
    pub fn post(&mut self, target: &str, body: &str) {
        self.send(
            format!(
                "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }

    /// Reads a response head.
    pub fn head(&mut self) -> Head {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("header line");
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("header has a colon");
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        Head { status, headers }
    }

    /// Reads a whole non-streaming response: head and body (Content-Length or chunked).
    pub fn response(&mut self) -> (Head, String) {
        let head = self.head();
        let body = if let Some(len) = head.header("content-length") {
            let mut body = vec![0u8; len.parse().unwrap()];
            self.reader.read_exact(&mut body).expect("body");
            body
        } else if head.chunked() {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk() {
                body.extend(chunk);
            }
            body
        } else {
            let mut body = Vec::new();
            let _ = self.reader.read_to_end(&mut body);
            body
        };
        (head, String::from_utf8(body).expect("utf-8 body"))
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk.
    pub fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("chunk size");
        let size = usize::from_str_radix(line.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        let mut data = vec![0u8; size];
        self.reader.read_exact(&mut data).expect("chunk data");
        let mut crlf = [0u8; 2];
        self.reader.read_exact(&mut crlf).expect("chunk CRLF");
        assert_eq!(&crlf, b"\r\n");
        if size == 0 {
            None
        } else {
            Some(data)
        }
    }

    /// True when the server closed the connection (EOF) within `WAIT`.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }
}

/// A streaming tunnel (chunked body), split into format records as they arrive.
pub struct Stream {
    pub client: Client,
    pub head: Head,
    pending: Vec<u8>,
    pub ended: bool,
}

impl Stream {
    /// Opens `GET target` and reads the response head.
    pub fn open(addr: SocketAddr, target: &str) -> Stream {
        let mut client = Client::new(addr);
        client.get(target);
        let head = client.head();
        Stream::of(client, head)
    }

    /// The stream whose head `client` has just read.
    pub fn of(client: Client, head: Head) -> Stream {
        Stream {
            client,
            head,
            pending: Vec::new(),
            ended: false,
        }
    }

    /// Reads until `pending` holds `delim`, returns the bytes before it (and drops the delimiter).
    /// `None` when the stream ended first.
    pub fn record(&mut self, delim: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.pending, delim) {
                let rec = self.pending[..pos].to_vec();
                self.pending.drain(..pos + delim.len());
                return Some(rec);
            }
            if self.ended {
                return None;
            }
            match self.client.chunk() {
                Some(c) => self.pending.extend(c),
                None => self.ended = true,
            }
        }
    }

    /// Next SSE event as its lines, e.g. `["id: 0-1", "data: {...}"]`.
    pub fn sse_event(&mut self) -> Option<Vec<String>> {
        let rec = self.record(b"\n\n")?;
        Some(
            String::from_utf8(rec)
                .unwrap()
                .lines()
                .map(String::from)
                .collect(),
        )
    }

    /// Next SSE event's JSON data, skipping `:` keepalive comments when `skip_keepalive`.
    pub fn sse_json(&mut self) -> Option<serde_json::Value> {
        loop {
            let ev = self.sse_event()?;
            if let Some(data) = ev.iter().find_map(|l| l.strip_prefix("data: ")) {
                return Some(serde_json::from_str(data).expect("SSE data is JSON"));
            }
        }
    }

    /// Next NUL-terminated record as JSON.
    pub fn nul_json(&mut self) -> Option<serde_json::Value> {
        let rec = self.record(b"\0")?;
        Some(serde_json::from_slice(&rec).expect("NUL record is JSON"))
    }

    /// Next NDJSON line as JSON.
    pub fn ndjson(&mut self) -> Option<serde_json::Value> {
        let rec = self.record(b"\n")?;
        Some(serde_json::from_slice(&rec).expect("NDJSON line is JSON"))
    }

    /// The bytes of the stream until it ends.
    pub fn rest(&mut self) -> Vec<u8> {
        while !self.ended {
            match self.client.chunk() {
                Some(c) => self.pending.extend(c),
                None => self.ended = true,
            }
        }
        std::mem::take(&mut self.pending)
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Publishes `data` (JSON text) on `path` through the backend API; returns the datagram id.
pub fn publish(addr: SocketAddr, path: &str, data: &str) -> String {
    let mut c = Client::new(addr);
    c.post(&format!("/publish{path}"), data);
    let (head, body) = c.response();
    assert_eq!(head.status, 202, "publish answered {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// The tunnel's owner shard, from its id `<shard>-<slot>-<secret>`.
pub fn shard_of(tunnel: &str) -> u16 {
    tunnel.split('-').next().unwrap().parse().unwrap()
}

/// Polls `cond` every 10 ms until it holds or `WAIT` passes.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Long-polls tunnel `id` (with `extra` query parameters) on a new connection while nothing is
/// queued for it: the poll parks, the clock moves by its `ttl_ms`, and the answer's body (a
/// keepalive) comes back.
pub fn poll_past_ttl(
    addr: SocketAddr,
    clock: &TestClock,
    id: &str,
    extra: &str,
    ttl_ms: u64,
) -> String {
    let mut c = Client::new(addr);
    clock.arming(1, || {
        c.get(&format!(
            "/tunnel?format=longpoll&id={id}&ttl={ttl_ms}{extra}"
        ))
    });
    clock.advance(ttl_ms);
    let (head, body) = c.response();
    assert_eq!(head.status, 200, "{body}");
    body
}

/// Connections attached to a tunnel now, over every format and shard (a Prometheus gauge).
pub fn attachments_open(addr: SocketAddr) -> u64 {
    let mut c = Client::new(addr);
    c.get("/metrics");
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    body.lines()
        .filter(|l| l.starts_with("router_attachments_open{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The router's summed counters (the JSON form of `/metrics`).
pub fn metrics(addr: SocketAddr) -> serde_json::Value {
    let mut c = Client::new(addr);
    c.get("/metrics?format=json");
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    serde_json::from_str(&body).unwrap()
}

/// A keep-alive connection that publishes sequentially through the backend API (so datagrams
/// keep their publish order).
pub struct Publisher(pub Client);

impl Publisher {
    pub fn new(addr: SocketAddr) -> Publisher {
        Publisher(Client::new(addr))
    }

    /// Publishes `data` on `path`; returns the status and body of the answer.
    pub fn try_publish(&mut self, path: &str, data: &str) -> (u16, String) {
        self.0.post(&format!("/publish{path}"), data);
        let (head, body) = self.0.response();
        (head.status, body)
    }

    /// Publishes `data` on `path`; checks the exact `202` answer and returns the datagram id.
    pub fn publish(&mut self, path: &str, data: &str) -> String {
        let (status, body) = self.try_publish(path, data);
        assert_eq!(status, 202, "publish on {path} answered {body}");
        accepted_id(&body)
    }
}

/// The id of a `202 {"ok":true,"id":"..."}` answer, checking its exact shape.
pub fn accepted_id(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let id = v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_string();
    assert_eq!(body, format!(r#"{{"ok":true,"id":"{id}"}}"#));
    id
}

/// A keep-alive connection that sends events through tunnel `tunnel`. Its first event moves it to
/// the tunnel's shard, so every event is delivered to that shard's tunnels before it is answered.
pub struct Events {
    pub c: Client,
    pub tunnel: String,
}

impl Events {
    pub fn new(addr: SocketAddr, tunnel: &str) -> Events {
        Events {
            c: Client::new(addr),
            tunnel: tunnel.to_string(),
        }
    }

    /// Sends one event; returns the answer.
    pub fn try_send(&mut self, path: &str, data: &str) -> (u16, String) {
        let body = format!(
            r#"{{"tunnel":"{}","path":"{path}","data":{data}}}"#,
            self.tunnel
        );
        self.c.post("/events", &body);
        let (head, body) = self.c.response();
        (head.status, body)
    }

    /// Sends one event that must be accepted; returns its datagram id.
    pub fn send(&mut self, path: &str, data: &str) -> String {
        let (status, body) = self.try_send(path, data);
        assert_eq!(status, 202, "{body}");
        accepted_id(&body)
    }
}

/// True for `<shard>-<slot>-<16 lowercase hex>` with shard < 2 (the test router has two shards).
pub fn is_tunnel_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 3
        && matches!(parts[0], "0" | "1")
        && !parts[1].is_empty()
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && parts[2].len() == 16
        && parts[2]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A published datagram, byte for byte (`data` already compact).
pub fn datagram(id: &str, path: &str, data: &str) -> String {
    format!(r#"{{"id":"{id}","path":"{path}","data":{data}}}"#)
}
