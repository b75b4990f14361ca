//! The HTTP/1.1 layer over loopback: request smuggling refused, head/count/body bounds, header and
//! idle timeouts, pipelining, chunked bodies, `Expect: 100-continue`, HTTP/1.0, routing errors,
//! CORS preflight, garbage input, and a stream on another connection unaffected by all of it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn error_body(message: &str) -> String {
    format!(
        r#"{{"ok":false,"error":{}}}"#,
        serde_json::to_string(message).unwrap()
    )
}

/// Asserts the server closed `c` with nothing more to read (EOF, or a reset because it closed
/// with unread request bytes).
fn assert_closed(c: &mut Client) {
    let mut rest = Vec::new();
    match c.reader.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection still open ({e}) after {rest:?}"),
    }
    assert!(
        rest.is_empty(),
        "bytes after the answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Sends `raw` on a new connection and expects one error answer, then the connection closed.
fn assert_refused(addr: SocketAddr, raw: &[u8], status: u16, message: &str) {
    let mut c = Client::new(addr);
    c.send(raw);
    let (head, body) = c.response();
    let what = String::from_utf8_lossy(raw);
    assert_eq!(head.status, status, "{what:?}: {body}");
    assert_eq!(head.header("connection"), Some("close"), "{what:?}");
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(body, error_body(message), "{what:?}");
    assert_closed(&mut c);
}

/// Sends `raw` on `c` and reads one answer.
fn exchange(c: &mut Client, raw: &[u8]) -> (Head, String) {
    c.send(raw);
    c.response()
}

/// Reads exactly `n` raw bytes from `c`.
fn read_n(c: &mut Client, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    c.reader.read_exact(&mut buf).expect("read");
    buf
}

/// Reads until EOF or reset, however long the server takes within `WAIT`; returns the bytes and
/// when the connection closed.
fn read_until_closed(c: &mut Client) -> (Vec<u8>, Instant) {
    let mut rest = Vec::new();
    match c.reader.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed within {WAIT:?}: {e}"),
    }
    (rest, Instant::now())
}

/// Opens an SSE tunnel following `path` and skips its control datagram.
fn sse(addr: SocketAddr, path: &str) -> Stream {
    let mut s = Stream::open(addr, &format!("/tunnel?format=sse&path={path}"));
    assert_eq!(s.head.status, 200);
    assert_eq!(s.sse_json().unwrap()["type"], "tunnel");
    s
}

/// Publishes on `path` and checks the stream receives exactly that datagram next.
fn publish_and_receive(addr: SocketAddr, s: &mut Stream, path: &str, data: &str) {
    let id = publish(addr, path, data);
    let ev = s.sse_event().expect("stream still open");
    assert_eq!(
        ev,
        vec![
            format!("id: {id}"),
            format!(r#"data: {{"id":"{id}","path":"{path}","data":{data}}}"#)
        ]
    );
}

/// A raw request head of exactly `len` bytes, padded with one `X-Pad` header.
fn head_of_len(target: &str, len: usize) -> Vec<u8> {
    let start = format!("GET {target} HTTP/1.1\r\nHost: t\r\nX-Pad: ");
    let pad = len - start.len() - 4;
    format!("{start}{}\r\n\r\n", "a".repeat(pad)).into_bytes()
}

const SMUGGLED: &str = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn smuggling_framings_are_refused_and_close_the_connection() {
    let addr = start(&[]);
    let post = |headers: &str, body: &str| {
        format!("POST /publish/a HTTP/1.1\r\nHost: t\r\n{headers}\r\n{body}{SMUGGLED}").into_bytes()
    };
    let chunked_body = "1\r\n1\r\n0\r\n\r\n";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            post("Content-Length: 11\r\nTransfer-Encoding: chunked\r\n", chunked_body),
            "both Content-Length and Transfer-Encoding",
        ),
        (
            post("Transfer-Encoding: chunked\r\nContent-Length: 11\r\n", chunked_body),
            "both Content-Length and Transfer-Encoding",
        ),
        (
            post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", chunked_body),
            "both Content-Length and Transfer-Encoding",
        ),
        (
            post("Content-Length: 1\r\nContent-Length: 1\r\n", "1"),
            "duplicate Content-Length",
        ),
        (
            post("Content-Length: 1\r\ncontent-length: 40\r\n", "1"),
            "duplicate Content-Length",
        ),
        (post("Content-Length: 1, 1\r\n", "1"), "invalid Content-Length"),
        (post("Content-Length: +1\r\n", "1"), "invalid Content-Length"),
        (post("Content-Length: -1\r\n", "1"), "invalid Content-Length"),
        (post("Content-Length: 0x1\r\n", "1"), "invalid Content-Length"),
        (post("Content-Length: 1 1\r\n", "1"), "invalid Content-Length"),
        (post("Content-Length:\r\n", "1"), "invalid Content-Length"),
        (
            post("Content-Length: 99999999999999999999999\r\n", "1"),
            "invalid Content-Length",
        ),
        (
            post("Transfer-Encoding: chunked, chunked\r\n", chunked_body),
            "chunked is not the last transfer coding",
        ),
        (
            post("Transfer-Encoding: identity\r\n", chunked_body),
            "Transfer-Encoding does not end in chunked",
        ),
        (
            post("Transfer-Encoding: xchunked\r\n", chunked_body),
            "Transfer-Encoding does not end in chunked",
        ),
        (
            post("Transfer-Encoding: chunked;q=1\r\n", chunked_body),
            "invalid Transfer-Encoding",
        ),
        (
            post("Transfer-Encoding: \r\n", chunked_body),
            "invalid Transfer-Encoding",
        ),
        (
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                chunked_body,
            ),
            "duplicate Transfer-Encoding",
        ),
        (
            post("Transfer-Encoding: chunked\r\n identity\r\n", chunked_body),
            "obsolete line folding in header",
        ),
        (
            post("Transfer-Encoding : chunked\r\n", chunked_body),
            "whitespace before colon in header",
        ),
        (
            format!(
                "POST /publish/a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}{SMUGGLED}"
            )
            .into_bytes(),
            "Transfer-Encoding in HTTP/1.0 request",
        ),
        // Broken chunked framing: refused, and what follows is never read as a request.
        (
            post("Transfer-Encoding: chunked\r\n", "zz\r\n"),
            "missing chunk size",
        ),
        (
            post("Transfer-Encoding: chunked\r\n", "1\nx\r\n0\r\n\r\n"),
            "chunk line not terminated by CRLF",
        ),
        (
            post("Transfer-Encoding: chunked\r\n", "1\r\nxy\r\n0\r\n\r\n"),
            "missing CRLF after chunk data",
        ),
        (
            post("Transfer-Encoding: chunked\r\n", "11111111111111111\r\n"),
            "chunk size has too many digits",
        ),
    ];
    for (raw, message) in &cases {
        assert_refused(addr, raw, 400, message);
    }
    // A coding other than chunked before the final chunked is well-formed but not implemented.
    assert_refused(
        addr,
        &post("Transfer-Encoding: gzip, chunked\r\n", chunked_body),
        501,
        "unsupported transfer coding",
    );
    // None of the smuggled requests was served and nothing was published.
    let m = metrics(addr);
    assert_eq!(m["publishes"], 0, "{m}");
    assert_eq!(m["requests_failed"], cases.len() as u64 + 1, "{m}");
}

#[test]
fn head_and_request_line_bounds() {
    let addr = start(&["--header-bytes-max", "1024"]);
    // Exactly at the bound: served; one byte over: 431.
    let mut c = Client::new(addr);
    let (head, _) = exchange(&mut c, &head_of_len("/metrics", 1024));
    assert_eq!(head.status, 200);
    assert_refused(
        addr,
        &head_of_len("/metrics", 1025),
        431,
        "request header fields too large",
    );
    // A head that never ends: refused as soon as the bound is reached, without waiting for more.
    let mut endless = b"GET / HTTP/1.1\r\nX: ".to_vec();
    endless.resize(1100, b'y');
    assert_refused(addr, &endless, 431, "request header fields too large");
    // The request line alone is over the bound: 414.
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(1100));
    assert_refused(addr, long.as_bytes(), 414, "request URI too long");
    let mut partial = b"GET /".to_vec();
    partial.resize(1024, b'a');
    assert_refused(addr, &partial, 414, "request URI too long");
}

#[test]
fn header_count_bound() {
    let addr = start(&["--header-count-max", "8"]);
    // `n` header lines, Host among them.
    let with_headers = |n: usize| {
        let mut raw = String::from("GET /metrics HTTP/1.1\r\nHost: t\r\n");
        for i in 1..n {
            raw.push_str(&format!("H{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        raw.into_bytes()
    };
    let mut c = Client::new(addr);
    assert_eq!(exchange(&mut c, &with_headers(8)).0.status, 200);
    assert_refused(
        addr,
        &with_headers(9),
        431,
        "request header fields too large",
    );
}

#[test]
fn body_bound() {
    let addr = start(&[
        "--body-bytes-max",
        "1024",
        "--datagram-data-bytes-max",
        "1024",
    ]);
    let mut s = sse(addr, "/body");
    // 1024 bytes (a JSON string of 1022 letters): accepted.
    let data = format!("\"{}\"", "b".repeat(1022));
    publish_and_receive(addr, &mut s, "/body", &data);
    // 1025 declared: refused from the head alone (the body is never sent).
    assert_refused(
        addr,
        b"POST /publish/body HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n",
        413,
        "request body too large",
    );
    // Chunked, 1025 in total: refused when the chunk that crosses the bound is announced.
    let raw = format!(
        "POST /publish/body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n\"{}\r\n201\r\n",
        "c".repeat(511)
    );
    assert_refused(addr, raw.as_bytes(), 413, "request body too large");
    publish_and_receive(addr, &mut s, "/body", "1");
}

#[test]
fn header_read_timeout_answers_408() {
    let addr = start(&["--header-read-timeout-ms", "200"]);
    let mut c = Client::new(addr);
    let started = Instant::now();
    c.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n");
    let (head, body) = c.response();
    let took = started.elapsed();
    assert_eq!(head.status, 408);
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(body, error_body("request head timed out"));
    assert!(
        took >= Duration::from_millis(180) && took < Duration::from_millis(1500),
        "408 after {took:?}"
    );
    assert_closed(&mut c);
    // A complete head in time is served; a body that is late counts against the same deadline.
    let mut c = Client::new(addr);
    c.send(b"POST /publish/late HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n12");
    let (head, body) = c.response();
    assert_eq!(head.status, 408);
    assert_eq!(body, error_body("request head timed out"));
    assert_closed(&mut c);
    assert_eq!(metrics(addr)["publishes"], 0);
}

#[test]
fn slow_head_trickling_bytes_answers_408() {
    let addr = start(&["--header-read-timeout-ms", "300"]);
    let mut c = Client::new(addr);
    let mut writer = c.reader.get_ref().try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = stop.clone();
    // One byte every 50 ms: each byte is well inside the timeout, the head as a whole is not.
    let head = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        for b in head {
            if stop_writer.load(Ordering::SeqCst) || writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (head, body) = c.response();
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    trickle.join().unwrap();
    assert_eq!(head.status, 408);
    assert_eq!(body, error_body("request head timed out"));
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_millis(1500),
        "408 after {took:?}"
    );
    assert_closed(&mut c);
}

#[test]
fn idle_connections_close_silently() {
    let addr = start(&["--idle-timeout-ms", "200"]);
    // After an answer, a keep-alive connection that sends nothing more is closed without a word.
    let mut c = Client::new(addr);
    let (head, _) = exchange(&mut c, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
    let answered = Instant::now();
    let (rest, closed) = read_until_closed(&mut c);
    assert_eq!(rest, b"");
    let idle = closed - answered;
    assert!(
        idle >= Duration::from_millis(180) && idle < Duration::from_millis(1500),
        "closed after {idle:?}"
    );
    // A connection that never sends a byte is closed the same way (no 408).
    let mut c = Client::new(addr);
    let opened = Instant::now();
    let (rest, closed) = read_until_closed(&mut c);
    assert_eq!(rest, b"");
    assert!(closed - opened < Duration::from_millis(1500));
    // Activity keeps a connection: three requests 120 ms apart span more than the idle timeout.
    let mut c = Client::new(addr);
    for _ in 0..3 {
        let (head, _) = exchange(&mut c, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(head.status, 200);
        std::thread::sleep(Duration::from_millis(120));
    }
}

#[test]
fn pipelined_requests_answer_in_order() {
    let addr = start(&[]);
    let mut c = Client::new(addr);
    c.send(
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /events HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /metrics?format=json HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let (head, body) = c.response();
    assert_eq!((head.status, body), (404, error_body("not found")));
    let (head, body) = c.response();
    assert_eq!((head.status, body), (400, error_body("missing tunnel")));
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    assert!(body.starts_with(r#"{"shards":2,"#), "{body}");

    // Bodies and chunked bodies in the same write keep their boundaries.
    let mut s = sse(addr, "/pipe/*");
    c.send(
        b"POST /publish/pipe/a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n[1,2]\
          POST /publish/pipe/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[3]\r\n0\r\n\r\n\
          GET /nope2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (head, body) = c.response();
        assert_eq!(head.status, 202, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (head, body) = c.response();
    assert_eq!((head.status, body), (404, error_body("not found")));
    assert_eq!(head.header("connection"), Some("close"));
    assert_closed(&mut c);
    for (id, (path, data)) in ids.iter().zip([("/pipe/a", "[1,2]"), ("/pipe/b", "[3]")]) {
        assert_eq!(
            s.sse_event().unwrap(),
            vec![
                format!("id: {id}"),
                format!(r#"data: {{"id":"{id}","path":"{path}","data":{data}}}"#)
            ]
        );
    }
}

#[test]
fn chunked_request_body_to_publish() {
    let addr = start(&[]);
    let mut s = sse(addr, "/chunk");
    let mut c = Client::new(addr);
    // Chunks split across writes, with an extension, uppercase hex and a trailer.
    c.send(b"POST /publish/chunk HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"a\":");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"\r\nA\r\n [12, \"x\"]\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n");
    let (head, body) = c.response();
    assert_eq!(head.status, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap();
    assert_eq!(
        s.sse_event().unwrap(),
        vec![
            format!("id: {id}"),
            format!(r#"data: {{"id":"{id}","path":"/chunk","data":{{"a":[12,"x"]}}}}"#)
        ]
    );
    // The connection is still good for the next request.
    let (head, _) = exchange(&mut c, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
}

#[test]
fn expect_100_continue() {
    let addr = start(&[
        "--body-bytes-max",
        "1024",
        "--datagram-data-bytes-max",
        "1024",
    ]);
    let mut s = sse(addr, "/cont");
    let mut c = Client::new(addr);
    c.send(b"POST /publish/cont HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n");
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    assert_eq!(read_n(&mut c, interim.len()), interim);
    c.send(b"{\"c\":1}");
    let (head, body) = c.response();
    assert_eq!(head.status, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.sse_event().unwrap()[0], format!("id: {id}"));
    // Chunked, same.
    c.send(b"POST /publish/cont HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(read_n(&mut c, interim.len()), interim);
    c.send(b"1\r\n2\r\n0\r\n\r\n");
    assert_eq!(c.response().0.status, 202);
    // Body sent along with the head: no interim answer, just the final one.
    c.send(b"POST /publish/cont HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n3");
    assert_eq!(c.response().0.status, 202);
    // Too large: refused at once, never invited.
    assert_refused(
        addr,
        b"POST /publish/cont HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n",
        413,
        "request body too large",
    );
}

#[test]
fn http10_and_connection_close_end_after_the_answer() {
    let addr = start(&[]);
    for raw in [
        &b"GET /metrics HTTP/1.0\r\n\r\n"[..],
        b"GET /metrics HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        let mut c = Client::new(addr);
        c.send(raw);
        let head = c.head();
        assert_eq!(head.header("connection"), Some("close"));
        let len: usize = head.header("content-length").unwrap().parse().unwrap();
        read_n(&mut c, len);
        assert_closed(&mut c);
    }
}

/// An HTTP/1.0 client asking for keep-alive must be told the connection stays open (RFC 9112
/// §9.3 and the HTTP/1.0 keep-alive convention; `ResponseHead::keep_alive` documents that callers
/// answering HTTP/1.0 keep-alive pass the header). FAILS: the router keeps the connection open but
/// answers without `Connection: keep-alive`, so HTTP/1.0 clients close it.
#[test]
fn http10_keep_alive_is_acknowledged() {
    let addr = start(&[]);
    let mut c = Client::new(addr);
    for _ in 0..2 {
        let (head, body) = exchange(
            &mut c,
            b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!((head.status, body), (404, error_body("not found")));
        assert_eq!(head.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn unknown_paths_404_and_wrong_methods_405() {
    let addr = start(&[]);
    let mut c = Client::new(addr);
    let not_found = (404, error_body("not found"));
    for raw in [
        "GET /nope HTTP/1.1",
        "POST /nope HTTP/1.1",
        "GET /tunnel/x HTTP/1.1",
        "GET /tunnel/x/y/subscribe HTTP/1.1",
        "GET /tunnel/0-0-0000000000000000/other HTTP/1.1",
        "GET /events/x HTTP/1.1",
        "GET /publish HTTP/1.1",
    ] {
        let (head, body) = exchange(&mut c, format!("{raw}\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!((head.status, body), not_found, "{raw}");
        assert_eq!(head.header("connection"), None, "{raw}: stays open");
    }
    // A 405 names the methods the resource allows (RFC 9110 §15.5.6).
    let not_allowed = (405, error_body("method not allowed"));
    for (raw, allow) in [
        ("PUT /events HTTP/1.1", "GET, POST, OPTIONS"),
        ("DELETE /tunnel HTTP/1.1", "GET, OPTIONS"),
        ("POST /tunnel HTTP/1.1", "GET, OPTIONS"),
        ("POST /metrics HTTP/1.1", "GET, HEAD, OPTIONS"),
        ("PATCH / HTTP/1.1", "GET, HEAD, OPTIONS"),
        ("POST /index.html HTTP/1.1", "GET, HEAD, OPTIONS"),
        ("GET /publish/a HTTP/1.1", "POST, OPTIONS"),
        ("PUT /tunnel/x/subscribe HTTP/1.1", "GET, POST, OPTIONS"),
        (
            "DELETE /tunnel/x/unsubscribe HTTP/1.1",
            "GET, POST, OPTIONS",
        ),
    ] {
        let (head, body) = exchange(&mut c, format!("{raw}\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!((head.status, body), not_allowed, "{raw}");
        assert_eq!(head.header("allow"), Some(allow), "{raw}");
        assert_eq!(head.header("connection"), None, "{raw}: stays open");
    }
    // The demo page is served on both names.
    for target in ["/", "/index.html"] {
        let (head, body) = exchange(
            &mut c,
            format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        );
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(
            body.contains("<html") || body.contains("<!DOCTYPE"),
            "{target}"
        );
    }
    // The browser client the demo page imports: a script any origin may import, cached.
    let (head, body) = exchange(
        &mut c,
        b"GET /client/router-client.js HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(head.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    assert!(body.contains("export class Tunnel"), "{body}");
}

/// A response to HEAD carries no body (RFC 9110 §9.3.2, RFC 9112 §6.3), whatever its status.
/// FAILS: HEAD is routed like any other unknown method and answered 405 with a JSON body, so the
/// next response on the connection is misread by any client (the body is taken as its start).
#[test]
fn head_request_answer_has_no_body() {
    let addr = start(&[]);
    for target in ["/", "/metrics", "/nope"] {
        let mut c = Client::new(addr);
        c.send(
            format!(
                "HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        let head = c.head();
        assert!(head.status >= 200, "{target}");
        // Right after the HEAD answer's head comes the next answer.
        let next = read_n(&mut c, 12);
        assert_eq!(
            String::from_utf8_lossy(&next),
            "HTTP/1.1 404",
            "HEAD {target} answered {} with a body",
            head.status
        );
    }
}

#[test]
fn options_preflight_answers_204_with_cors_headers() {
    let addr = start(&[]);
    let mut c = Client::new(addr);
    for target in [
        "/events",
        "/tunnel/0-0-0000000000000000/subscribe",
        "*",
        "/nope",
    ] {
        c.send(
            format!(
                "OPTIONS {target} HTTP/1.1\r\nHost: t\r\nOrigin: http://example.com\r\n\
                 Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
            )
            .as_bytes(),
        );
        let head = c.head();
        assert_eq!(head.status, 204, "{target}");
        let mut headers = head.headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            vec![
                (
                    "Access-Control-Allow-Headers".into(),
                    "Content-Type, Last-Event-ID, Authorization".into()
                ),
                (
                    "Access-Control-Allow-Methods".into(),
                    "GET, POST, OPTIONS".into()
                ),
                ("Access-Control-Allow-Origin".into(), "*".into()),
                ("Access-Control-Max-Age".into(), "86400".into()),
            ],
            "{target}"
        );
    }
    // No body followed any 204: the connection answers the next request cleanly.
    let (head, _) = exchange(&mut c, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
}

#[test]
fn publish_preflight_names_the_methods_and_grants_no_cross_origin_access() {
    let addr = start(&[]);
    let mut c = Client::new(addr);
    c.send(
        b"OPTIONS /publish/chat/a HTTP/1.1\r\nHost: t\r\nOrigin: http://evil.example\r\n\
          Access-Control-Request-Method: POST\r\n\r\n",
    );
    let head = c.head();
    assert_eq!(head.status, 204);
    assert_eq!(head.headers, vec![("Allow".into(), "POST, OPTIONS".into())]);
    // No body followed: the connection answers the next request cleanly.
    let (head, _) = exchange(&mut c, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
}

#[test]
fn a_publish_from_a_browser_page_is_refused() {
    let addr = start(&[]);
    let mut watcher = Stream::open(addr, "/tunnel?format=sse&path=/chat/*");
    watcher.sse_json().expect("tunnel datagram");
    let mut c = Client::new(addr);
    // What a page's `fetch(url, {method: "POST", body: "..."})` sends: a simple request, no
    // preflight, from a loopback peer.
    let body = r#"{"x":1}"#;
    c.send(
        format!(
            "POST /publish/chat/a HTTP/1.1\r\nHost: t\r\nOrigin: http://evil.example\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (head, answer) = c.response();
    assert_eq!(head.status, 403);
    assert_eq!(
        answer,
        r#"{"ok":false,"error":"publishing is not open to browsers (the request has an Origin)"}"#
    );
    // Nothing reached the subscriber: the next datagram it sees is the one published after.
    let id = publish(addr, "/chat/a", r#"{"y":2}"#);
    let event = watcher.sse_event().expect("datagram");
    assert_eq!(event[0], format!("id: {id}"));
}

#[test]
fn a_closing_answer_survives_bytes_the_client_sent_behind_it() {
    let addr = start(&[]);
    // HTTP/1.0 and `Connection: close` end the connection after their answer. Bytes already
    // sent behind the request (pipelined requests here) must not make the kernel reset the
    // connection and destroy the answer before the client reads it.
    let behind = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(2_000);
    for first in [
        "GET /nope HTTP/1.0\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        for _ in 0..10 {
            let stream = connect(addr);
            let mut writer = stream.try_clone().unwrap();
            let raw = format!("{first}{behind}");
            // Written from a thread: the router stops reading after the first answer.
            let sender = std::thread::spawn(move || {
                let _ = writer.write_all(raw.as_bytes());
            });
            // Give the pipelined bytes time to reach the router before it answers and closes.
            std::thread::sleep(Duration::from_millis(5));
            let mut answer = Vec::new();
            let read = (&stream).read_to_end(&mut answer);
            assert!(
                read.is_ok(),
                "{first:?}: {read:?} after {} bytes",
                answer.len()
            );
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 404 "), "{first:?}: {text}");
            assert!(
                text.ends_with(r#"{"ok":false,"error":"not found"}"#),
                "{first:?}: {text}"
            );
            sender.join().unwrap();
        }
    }
}

#[test]
fn garbage_is_refused_with_400_and_closed() {
    let addr = start(&[]);
    let cases: &[(&[u8], &str)] = &[
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "invalid method or request target",
        ),
        (
            b"\x00\x01\x02\x03\r\n\r\n",
            "invalid method or request target",
        ),
        (b"GET / HTTP/2.0\r\n\r\n", "unsupported HTTP version"),
        (b"GET / HTTP/1.2\r\n\r\n", "unsupported HTTP version"),
        (b"GET / http/1.1\r\n\r\n", "unsupported HTTP version"),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "unsupported HTTP version",
        ),
        (
            b"GET http://example.com/ HTTP/1.1\r\n\r\n",
            "request target must be origin-form",
        ),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            "request target must be origin-form",
        ),
        (b"GET /a#b HTTP/1.1\r\n\r\n", "fragment in request target"),
        (
            b"GET * HTTP/1.1\r\n\r\n",
            "asterisk-form target requires OPTIONS",
        ),
        (
            b"GET  / HTTP/1.1\r\n\r\n",
            "invalid method or request target",
        ),
        (
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            "invalid header value",
        ),
        (
            b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
            "header line without colon",
        ),
        (b"GET / HTTP/1.1\r\n\rX\r\n\r\n", "invalid line ending"),
    ];
    for (raw, message) in cases {
        assert_refused(addr, raw, 400, message);
    }
    // A client that gives up mid-head (half-close) still gets told why. It is counted as an
    // aborted request, not a failed one: nothing failed on the router's side.
    let before = metrics(addr);
    let mut c = Client::new(addr);
    c.send(b"GET /metrics HTTP/1.1\r\nHo");
    c.reader.get_ref().shutdown(Shutdown::Write).unwrap();
    let (head, body) = c.response();
    assert_eq!(
        (head.status, body),
        (400, error_body("connection closed mid-request"))
    );
    assert_closed(&mut c);
    // So is one that resets mid-body.
    let c = connect(addr);
    (&c).write_all(b"POST /publish/a HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n12")
        .unwrap();
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    let counted = |m: &serde_json::Value, key: &str| m[key].as_u64().unwrap();
    assert!(eventually(
        || counted(&metrics(addr), "requests_aborted") == counted(&before, "requests_aborted") + 2
    ));
    let after = metrics(addr);
    assert_eq!(
        counted(&after, "requests_failed"),
        counted(&before, "requests_failed")
    );
}

#[test]
fn a_stream_stays_healthy_while_other_connections_misbehave() {
    let addr = start(&[
        "--header-read-timeout-ms",
        "200",
        "--idle-timeout-ms",
        "200",
        "--header-bytes-max",
        "1024",
        "--body-bytes-max",
        "1024",
        "--datagram-data-bytes-max",
        "1024",
    ]);
    let mut s = sse(addr, "/health");
    let mut n = 0;
    let mut check = |s: &mut Stream| {
        n += 1;
        publish_and_receive(addr, s, "/health", &n.to_string());
    };
    check(&mut s);
    let abuse: Vec<(Vec<u8>, u16)> = vec![
        (format!("POST /publish/health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}").into_bytes(), 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec(), 400),
        (head_of_len("/metrics", 2000), 431),
        (format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(2000)).into_bytes(), 414),
        (b"POST /publish/health HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n".to_vec(), 413),
        (b"POST /publish/health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\n".to_vec(), 413),
        (b"GET /tunnel?format=sse&path=/health&cb=%zz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        (b"GET /tunnel?format=sse&path=/health/**/x HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        (b"GET /tunnel?format=sse&path=/tunnel/* HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 403),
    ];
    for (raw, status) in &abuse {
        let mut c = Client::new(addr);
        c.send(raw);
        let (head, body) = c.response();
        assert_eq!(
            head.status,
            *status,
            "{}: {body}",
            String::from_utf8_lossy(raw)
        );
        check(&mut s);
    }
    // A half-sent head left to time out, and a connection dropped mid-request.
    let mut slow = Client::new(addr);
    slow.send(b"GET /metrics HTTP/1.1\r\n");
    let mut dropped = Client::new(addr);
    dropped.send(b"POST /publish/health HTTP/1.1\r\nContent-Length: 10\r\n\r\n12");
    drop(dropped);
    assert_eq!(slow.response().0.status, 408);
    check(&mut s);
    // Longer than the idle and header timeouts: a stream is neither.
    std::thread::sleep(Duration::from_millis(450));
    check(&mut s);
    assert!(!s.ended);
}

/// `n` publishes of `[i]` on `path`, as one pipelined burst.
fn publish_burst(path: &str, n: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    for i in 0..n {
        let body = format!("[{i}]");
        raw.extend_from_slice(
            format!(
                "POST /publish{path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    raw
}

/// Reads `n` publish answers; returns their datagram ids in order.
fn accepted_ids(c: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let (head, body) = c.response();
            assert_eq!(head.status, 202, "{body}");
            accepted_id(&body)
        })
        .collect()
}

/// A burst far larger than one read and than the answers held back at once: every publish is
/// answered in order and delivered in order, and the subscriber sees nothing else.
#[test]
fn a_long_pipelined_burst_is_answered_and_delivered_in_order() {
    const N: usize = 3000;
    // A subscriber more than the replay buffer behind is cut off as a slow consumer; on a busy
    // test machine this one may fall behind the burst for a moment.
    let addr = start(&["--replay-datagrams-max", "4096"]);
    let mut s = Stream::open(addr, "/tunnel?format=nul&path=/burst/*");
    assert_eq!(s.nul_json().expect("control")["type"], "tunnel");
    let mut c = Client::new(addr);
    let raw = publish_burst("/burst/a", N);
    assert!(raw.len() > 64 * 1024);
    // Written and received on other threads: the answers are read while the burst is still
    // going out, and the subscriber keeps up (one that stops reading is cut off).
    let mut writer = c.reader.get_ref().try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&raw).unwrap());
    let receiver = std::thread::spawn(move || {
        (0..N)
            .map(|_| String::from_utf8(s.record(b"\0").expect("a datagram")).unwrap())
            .collect::<Vec<_>>()
    });
    let ids = accepted_ids(&mut c, N);
    sender.join().unwrap();
    let got = receiver.join().unwrap();
    for (i, (id, got)) in ids.iter().zip(got).enumerate() {
        assert_eq!(got, datagram(id, "/burst/a", &format!("[{i}]")));
    }
    // The publisher's connection is still good for a lone request.
    let (head, _) = exchange(&mut c, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
}

/// Answers held back for a burst go out before whatever the next request writes itself: a
/// stream's head, a refusal of an unreadable request, or the last answer before the client
/// stops sending.
#[test]
fn answers_held_back_for_a_burst_come_before_the_next_answer() {
    let addr = start(&[]);

    // Then a stream on the same connection.
    let mut c = Client::new(addr);
    let mut raw = publish_burst("/held/a", 3);
    raw.extend_from_slice(b"GET /tunnel?format=sse&path=/held/* HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&raw);
    accepted_ids(&mut c, 3);
    let head = c.head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let mut s = Stream::of(c, head);
    assert_eq!(s.sse_json().expect("control")["type"], "tunnel");
    let id = publish(addr, "/held/b", "7");
    assert_eq!(
        s.sse_event().unwrap(),
        vec![
            format!("id: {id}"),
            format!("data: {}", datagram(&id, "/held/b", "7"))
        ]
    );

    // Then a request that cannot be read.
    let mut c = Client::new(addr);
    let mut raw = publish_burst("/held/a", 2);
    raw.extend_from_slice(b"GET /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n");
    c.send(&raw);
    accepted_ids(&mut c, 2);
    let (head, _) = c.response();
    assert_eq!(head.status, 400);
    assert_closed(&mut c);

    // Then the client stops sending (half-close): every answer still arrives.
    let mut c = Client::new(addr);
    c.send(&publish_burst("/held/a", 5));
    c.reader.get_ref().shutdown(Shutdown::Write).unwrap();
    accepted_ids(&mut c, 5);
    assert_closed(&mut c);
}
