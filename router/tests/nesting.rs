//! Deeply nested JSON through every entry point a client reaches: each is refused (400, or
//! WebSocket close 1009) and counted, and the router process keeps serving. Before the depth
//! bound, about 3,600 nested arrays overflowed a shard thread's stack and aborted the process.
//!
//! This runs the real `router` binary, so a crash shows as a dead child process rather than as
//! a dead test harness.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;

use bytes::BytesMut;
use router::wire::websocket::frame::put_masked_frame;
use router::wire::websocket::OpCode;
use support::process::RouterProcess;
use support::*;

/// Nesting levels sent in bodies and WebSocket messages.
const LEVELS: usize = 100_000;
/// Nesting levels in a query string: a request head holds at most 64 KiB.
const QUERY_LEVELS: usize = 30_000;

/// `levels` nested arrays, closed.
fn nested(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

/// One request on a fresh connection; the whole answer.
fn request(addr: SocketAddr, raw: &[u8]) -> (Head, String) {
    let mut c = Client::new(addr);
    c.send(raw);
    c.response()
}

fn post(addr: SocketAddr, target: &str, body: &str) -> (Head, String) {
    let raw = format!(
        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    request(addr, raw.as_bytes())
}

const TOO_DEEP: &str = r#"{"ok":false,"error":"JSON nested deeper than json_depth_max"}"#;

fn assert_too_deep(entry: &str, (head, body): (Head, String)) {
    assert_eq!(head.status, 400, "{entry}: {body}");
    assert_eq!(body, TOO_DEEP, "{entry}");
}

/// Opens a WebSocket tunnel, sends `text` as one masked text frame and returns the close code
/// the router answers with.
fn websocket_close_code(addr: SocketAddr, text: &[u8]) -> u16 {
    let mut stream = connect(addr);
    stream
        .write_all(
            b"GET /tunnel HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("upgrade");
    let mut frame = BytesMut::new();
    put_masked_frame(&mut frame, OpCode::Text, true, false, [1, 2, 3, 4], text);
    stream.write_all(&frame).expect("frame");
    // Everything the server sends until it closes: the 101 head, the tunnel datagram, the
    // close frame.
    let mut read = Vec::new();
    let _ = stream.read_to_end(&mut read);
    let head_end = find(&read, b"\r\n\r\n").expect("a response head") + 4;
    assert!(read.starts_with(b"HTTP/1.1 101 "), "{read:?}");
    let mut frames = read.get(head_end..).unwrap_or_default();
    // Unmasked server frames with payloads under 126 bytes: [opcode, len, payload].
    while let [first, len, rest @ ..] = frames {
        let len = usize::from(*len);
        let payload = rest.get(..len).expect("a whole frame");
        if first & 0x0f == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = std::str::from_utf8(&payload[2..]).unwrap();
            assert_eq!(reason, "JSON nested deeper than json_depth_max");
            return code;
        }
        frames = &rest[len..];
    }
    panic!("no close frame in {read:?}");
}

#[test]
fn nested_json_through_every_entry_point_is_refused_and_the_router_keeps_serving() {
    let mut router =
        RouterProcess::start(&["--body-bytes-max", "1048576", "--header-bytes-max", "65536"]);
    let addr = router.addr;
    let mut watcher = Stream::open(addr, "/tunnel?format=sse&path=/canary");
    let hello = watcher.sse_json().expect("tunnel datagram");
    let tunnel = hello["tunnel"].as_str().expect("tunnel id").to_string();
    let deep = nested(LEVELS);

    let query = format!(
        "GET /events?tunnel={tunnel}&path=/canary&data={} HTTP/1.1\r\nHost: t\r\n\r\n",
        nested(QUERY_LEVELS)
    );
    assert_too_deep("GET /events", request(addr, query.as_bytes()));
    let event = format!(r#"{{"tunnel":"{tunnel}","path":"/canary","data":{deep}}}"#);
    assert_too_deep("POST /events", post(addr, "/events", &event));
    assert_too_deep("POST /events (bare)", post(addr, "/events", &deep));
    assert_too_deep("POST /publish", post(addr, "/publish/canary", &deep));
    // Unclosed: the scan refuses it before the parser could say it is invalid.
    let open = "[".repeat(LEVELS);
    assert_too_deep(
        "POST /publish (unclosed)",
        post(addr, "/publish/canary", &open),
    );
    let subscribe = format!("/tunnel/{tunnel}/subscribe");
    assert_too_deep("POST subscribe", post(addr, &subscribe, &deep));
    let message = format!(r#"{{"type":"publish","path":"/canary","data":{deep}}}"#);
    assert_eq!(websocket_close_code(addr, message.as_bytes()), 1009);
    assert_eq!(websocket_close_code(addr, deep.as_bytes()), 1009);
    router.assert_running();

    // The canary: the same router still publishes and delivers, nothing was half-delivered
    // before it, and every refusal was counted.
    let id = publish(addr, "/canary", "[[1]]");
    let event = watcher.sse_event().expect("the canary datagram");
    assert_eq!(event[0], format!("id: {id}"));
    assert_eq!(
        event[1],
        format!("data: {}", datagram(&id, "/canary", "[[1]]"))
    );
    let counters = metrics(addr);
    assert_eq!(counters["refused"]["json_too_deep"], 8, "{counters}");
    router.assert_running();
}

#[test]
fn nesting_at_the_bound_is_accepted() {
    let router = RouterProcess::start(&["--json-depth-max", "8"]);
    let addr = router.addr;
    let mut publisher = Publisher::new(addr);
    publisher.publish("/a", &nested(8));
    let (status, body) = publisher.try_publish("/a", &nested(9));
    assert_eq!((status, body.as_str()), (400, TOO_DEEP));
}

#[test]
fn a_deeply_nested_config_value_is_a_usage_error() {
    let value = format!("formats.x={}", "[".repeat(LEVELS));
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--listen", "127.0.0.1:0", "--set", &value])
        .output()
        .expect("router runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("router: "), "{stderr}");
}

#[test]
fn a_config_key_with_many_parts_is_a_usage_error() {
    let key = format!("{}=1", vec!["a"; 30_000].join("."));
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--listen", "127.0.0.1:0", "--set", &key])
        .output()
        .expect("router runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("router: --set: no key has more than 3 parts"),
        "{stderr}"
    );
}
