//! Smoke: a tunnel opened over SSE receives a datagram published through the backend API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use support::*;

#[test]
fn sse_tunnel_receives_a_publish() {
    let addr = start(&[]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/smoke/*");
    assert_eq!(s.head.status, 200);
    assert_eq!(s.head.header("content-type"), Some("text/event-stream"));
    let hello = s.sse_json().unwrap();
    assert_eq!(hello["type"], "tunnel");
    assert_eq!(hello["new"], true);
    let id = publish(addr, "/smoke/a", r#"{"n":1}"#);
    let ev = s.sse_event().unwrap();
    assert_eq!(ev[0], format!("id: {id}"));
    let d: serde_json::Value = serde_json::from_str(ev[1].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(d["path"], "/smoke/a");
    assert_eq!(d["data"]["n"], 1);
}
