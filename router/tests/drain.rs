//! The router binary drains on SIGTERM (and SIGINT) before it exits 0: listeners closed,
//! `/readyz` 503 for a request already on its way, every WebSocket closed 1012 (Python
//! `websockets` clients, scripts/ops/drain_ws_clients.py), every SSE stream told when to come
//! back (`retry:`, spread) before its terminating chunk, every parked long-poll answered; no
//! connection is reset. A second signal exits at once; `drain_ms` bounds the wait.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::process::RouterProcess;
use support::*;

fn signal(router: &RouterProcess, signal: i32) {
    // SAFETY: kill(2) with the pid of our own child; no memory is involved.
    let sent = unsafe { libc::kill(router.child.id() as i32, signal) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Waits for the router to exit, at most `limit`.
fn exit_within(router: &mut RouterProcess, limit: Duration) -> (ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = router.child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "the router did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A gauge of the Prometheus text, summed over shards, for one `format`.
fn attached(addr: SocketAddr, format: &str) -> u64 {
    let mut c = Client::new(addr);
    c.get("/metrics");
    let (_, body) = c.response();
    let label = format!("format=\"{format}\"");
    body.lines()
        .filter(|l| l.starts_with("router_attachments_open{") && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Python `websockets` clients holding `count` WebSocket tunnels.
struct WsClients {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl WsClients {
    fn open(addr: SocketAddr, count: usize) -> WsClients {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut child = std::process::Command::new("python3")
            .arg("scripts/ops/drain_ws_clients.py")
            .arg(format!("ws://{addr}/tunnel?format=ws&path=/drain"))
            .arg(count.to_string())
            .current_dir(workspace)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (with the PyPI package websockets)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            format!("open {count}"),
            "the WebSocket clients did not open"
        );
        WsClients { child, stdout }
    }

    /// How their connections ended.
    fn ends(mut self) -> serde_json::Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(self.child.wait().unwrap().success(), "{line}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

/// A parked long-poll: a tunnel opened by a first poll, then a second one that waits.
fn parked_poll(addr: SocketAddr) -> Client {
    let mut c = Client::new(addr);
    c.get("/tunnel?format=longpoll");
    let (head, body) = c.response();
    assert_eq!(head.status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap().to_owned();
    c.get(&format!("/tunnel?format=longpoll&id={tunnel}&ttl=60000"));
    c
}

/// The SSE events of a stream until its terminating chunk.
fn sse_until_end(s: &mut Stream) -> Vec<Vec<String>> {
    let mut events = Vec::new();
    while let Some(ev) = s.sse_event() {
        events.push(ev);
    }
    assert!(s.ended, "the stream ended with its terminating chunk");
    events
}

#[test]
fn sigterm_drains_a_thousand_tunnels_over_three_transports() {
    const WS: usize = 334;
    const SSE: usize = 333;
    const POLLS: usize = 333;
    let drain_ms = 8000;
    let mut router = RouterProcess::start(&["--drain-ms", &drain_ms.to_string()]);
    let addr = router.addr;
    let ws = WsClients::open(addr, WS);
    let mut streams: Vec<Stream> = (0..SSE)
        .map(|_| {
            let mut s = Stream::open(addr, "/tunnel?format=sse&path=/drain");
            assert_eq!(s.sse_json().unwrap()["type"], "tunnel");
            s
        })
        .collect();
    let mut polls: Vec<Client> = (0..POLLS).map(|_| parked_poll(addr)).collect();
    assert!(eventually(|| attached(addr, "longpoll") == POLLS as u64));
    assert_eq!(attached(addr, "ws"), WS as u64);
    assert_eq!(attached(addr, "sse"), SSE as u64);
    // A request on its way when the drain begins: its head is completed after. The connection
    // is served once first, so that the shard has accepted it (a connection still in the
    // listener's queue is reset when the listener closes), and the first half of the head is
    // given time to be read.
    let mut ready = Client::new(addr);
    ready.get("/healthz");
    assert_eq!(ready.response().0.status, 200);
    ready.send(b"GET /readyz HTTP/1.1\r\nHost: t\r\n");
    std::thread::sleep(Duration::from_millis(50));

    signal(&router, libc::SIGTERM);
    let signalled = Instant::now();
    // Every stream: a `retry:` hint, then its terminating chunk, then a clean close.
    let mut retries_ms = Vec::new();
    for s in &mut streams {
        let events = sse_until_end(s);
        let retry: Vec<u64> = events
            .iter()
            .filter_map(|ev| ev.first()?.strip_prefix("retry: ")?.parse().ok())
            .collect();
        assert_eq!(retry.len(), 1, "{events:?}");
        assert!((1000..5000).contains(&retry[0]), "{retry:?}");
        retries_ms.push(retry[0]);
        assert!(
            s.client.closed(),
            "the stream's connection closes without a reset"
        );
    }
    retries_ms.sort_unstable();
    retries_ms.dedup();
    assert!(
        retries_ms.len() > SSE / 4,
        "retry hints are spread: {retries_ms:?}"
    );
    // The shards have begun to drain: the request on its way is told the router is not ready,
    // and no new connection is taken.
    std::thread::sleep(Duration::from_millis(100));
    ready.send(b"\r\n");
    let (head, body) = ready.response();
    assert_eq!(head.status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    assert!(ready.closed());
    assert!(
        TcpStream::connect(addr).is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "the listeners are closed"
    );
    // Every parked poll: answered with a keepalive, then a clean close.
    for c in &mut polls {
        let (head, body) = c.response();
        assert_eq!(head.status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["messages"],
            serde_json::json!([{"type": "keepalive"}]),
            "{body}"
        );
        assert!(c.closed(), "the poll's connection closes without a reset");
    }
    // Every WebSocket: 1012, with the close handshake.
    let ends = ws.ends();
    assert_eq!(ends["codes"], serde_json::json!({"1012": WS}), "{ends}");
    assert_eq!(
        ends["reasons"],
        serde_json::json!(["service restart"]),
        "{ends}"
    );
    assert_eq!(ends["unclean"], 0, "{ends}");
    let (status, _) = exit_within(&mut router, Duration::from_millis(drain_ms));
    assert_eq!(status.code(), Some(0));
    let elapsed = signalled.elapsed();
    println!("drained {} tunnels in {elapsed:?}", WS + SSE + POLLS);
    assert!(elapsed < Duration::from_millis(drain_ms), "{elapsed:?}");
}

#[test]
fn sigint_drains_too_and_drain_ms_bounds_the_wait() {
    let mut router = RouterProcess::start(&["--drain-ms", "500"]);
    // A request that never completes holds the drain until `drain_ms`.
    let mut stuck = TcpStream::connect(router.addr).unwrap();
    stuck.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut s = Stream::open(router.addr, "/tunnel?format=sse");
    assert_eq!(s.sse_json().unwrap()["type"], "tunnel");
    std::thread::sleep(Duration::from_millis(50));
    signal(&router, libc::SIGINT);
    sse_until_end(&mut s);
    let (status, elapsed) = exit_within(&mut router, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut router = RouterProcess::start(&["--drain-ms", "60000"]);
    let mut stuck = TcpStream::connect(router.addr).unwrap();
    stuck.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    signal(&router, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    router.assert_running();
    signal(&router, libc::SIGTERM);
    let (status, elapsed) = exit_within(&mut router, Duration::from_secs(2));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{elapsed:?}");
}
