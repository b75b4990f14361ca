//! WebSocket tunnels over loopback, with the crate's own codec on the client side (masked client
//! frames, a client-role decoder for the server's frames): the handshake and its refusals, the
//! tunnel datagram, control messages and their answers, binary publishes, re-attach and replay,
//! gaps, replacement, ping/pong keepalive, protocol errors and their close codes,
//! permessage-deflate, the conformance echo, and fan-out to tunnels on both shards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::BytesMut;
use router::wire::websocket::close::put_masked_close;
use router::wire::websocket::decoder::{Decoder, Message, Role};
use router::wire::websocket::deflate;
use router::wire::websocket::frame::{parse_header, put_masked_frame};
use router::wire::websocket::{Limits, OpCode};
use serde_json::Value;
use support::*;

/// The key and accept value of RFC 6455 §1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// What a bare `permessage-deflate` offer negotiates.
const DEFLATE_RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// An upgrade request for `target` with the RFC's key, plus `extra` header lines.
fn upgrade_request(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The `tunnel` control datagram, byte for byte.
fn control(tunnel: &str, new: bool, keepalive_ms: u64) -> String {
    format!(r#"{{"type":"tunnel","tunnel":"{tunnel}","new":{new},"keepalive_ms":{keepalive_ms}}}"#)
}

fn ack(id: &str) -> String {
    format!(r#"{{"type":"ack","id":"{id}"}}"#)
}

fn error(message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{}}}"#,
        serde_json::to_string(message).unwrap()
    )
}

/// One read, retried when a signal interrupts it (the read timeout still bounds it).
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sends `raw` on a fresh connection and reads the response head; bytes after the head stay in
/// the returned buffer.
fn request_head(addr: SocketAddr, raw: &[u8]) -> (TcpStream, Head, BytesMut) {
    let mut stream = connect(addr);
    stream.write_all(raw).expect("write request");
    let mut read = BytesMut::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(pos) = find(&read, b"\r\n\r\n") {
            break pos;
        }
        let n = read_some(&mut stream, &mut buf).expect("response head");
        assert!(n > 0, "connection closed before a response head: {read:?}");
        read.extend_from_slice(&buf[..n]);
    };
    let head_bytes = read.split_to(end + 4);
    let text = std::str::from_utf8(&head_bytes).expect("UTF-8 head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header has a colon");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    (stream, Head { status, headers }, read)
}

/// A WebSocket client built from the crate's codec.
struct Ws {
    stream: TcpStream,
    read: BytesMut,
    decoder: Decoder,
    head: Head,
    /// Whether permessage-deflate was negotiated.
    deflate: bool,
    masks: u32,
}

impl Ws {
    /// Upgrades `target`; panics unless the answer is 101 with the right accept value.
    fn open(addr: SocketAddr, target: &str) -> Ws {
        Ws::open_with(addr, target, "")
    }

    fn open_with(addr: SocketAddr, target: &str, extra: &str) -> Ws {
        Ws::open_raw(addr, target, upgrade_request(target, extra).as_bytes())
    }

    /// Sends `raw` (an upgrade request for `target`, perhaps with frames behind it) in one
    /// write and reads the 101.
    fn open_raw(addr: SocketAddr, target: &str, raw: &[u8]) -> Ws {
        let (stream, head, read) = request_head(addr, raw);
        assert_eq!(head.status, 101, "upgrade of {target} refused: {head:?}");
        assert_eq!(head.header("upgrade"), Some("websocket"));
        assert_eq!(head.header("connection"), Some("Upgrade"));
        assert_eq!(head.header("sec-websocket-accept"), Some(ACCEPT));
        let params = head
            .header("sec-websocket-extensions")
            .map(|v| deflate::negotiate(&[v.as_bytes()]).expect("a valid deflate response"));
        let limits = Limits {
            frame_bytes_max: 1 << 24,
            message_bytes_max: 1 << 24,
        };
        Ws {
            stream,
            read,
            decoder: Decoder::new(Role::Client, limits, params),
            head,
            deflate: params.is_some(),
            masks: 0,
        }
    }

    /// Opens a tunnel and reads its control datagram: `(tunnel, new)`.
    fn tunnel(addr: SocketAddr, target: &str) -> (Ws, String, bool) {
        let mut ws = Ws::open(addr, target);
        let (tunnel, new) = ws.control(15_000);
        (ws, tunnel, new)
    }

    fn mask(&mut self) -> [u8; 4] {
        self.masks = self.masks.wrapping_add(1);
        (self.masks.wrapping_mul(0x9E37_79B9) ^ 0x5A17_C3E1).to_be_bytes()
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write frame");
    }

    fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mask = self.mask();
        let mut out = BytesMut::new();
        put_masked_frame(&mut out, opcode, fin, false, mask, payload);
        self.send_raw(&out);
    }

    fn send_text(&mut self, text: &str) {
        self.send_frame(OpCode::Text, true, text.as_bytes());
    }

    fn send_binary(&mut self, payload: &[u8]) {
        self.send_frame(OpCode::Binary, true, payload);
    }

    fn send_close(&mut self, code: u16, reason: &str) {
        let mask = self.mask();
        let mut out = BytesMut::new();
        put_masked_close(&mut out, code, reason, mask);
        self.send_raw(&out);
    }

    /// The next message; `Ok(None)` when the server closed the connection, `Err` on a timeout,
    /// a read error or a frame the client-role decoder refuses.
    fn try_next(&mut self) -> Result<Option<Message>, String> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.decoder.decode(&mut self.read) {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => return Err(format!("server sent a bad frame: {e}")),
            }
            match read_some(&mut self.stream, &mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.read.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn next(&mut self) -> Message {
        match self.try_next() {
            Ok(Some(m)) => m,
            Ok(None) => panic!("connection closed while a message was expected"),
            Err(e) => panic!("no message: {e}"),
        }
    }

    /// The next message, which must be a text frame.
    fn text(&mut self) -> String {
        match self.next() {
            Message::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads the `tunnel` control datagram, checks it byte for byte; returns `(tunnel, new)`.
    fn control(&mut self, keepalive_ms: u64) -> (String, bool) {
        let text = self.text();
        let v: Value = serde_json::from_str(&text).unwrap();
        let tunnel = v["tunnel"].as_str().expect("a tunnel id").to_string();
        let new = v["new"].as_bool().expect("new");
        assert!(is_tunnel_id(&tunnel), "{tunnel}");
        assert_eq!(text, control(&tunnel, new, keepalive_ms));
        (tunnel, new)
    }

    /// Publishes through the tunnel; checks the exact ack and returns the datagram id.
    fn publish(&mut self, path: &str, data: &str) -> String {
        self.send_text(&format!(
            r#"{{"type":"publish","path":"{path}","data":{data}}}"#
        ));
        self.ack()
    }

    /// Reads an ack; returns its id.
    fn ack(&mut self) -> String {
        let text = self.text();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "ack", "{text}");
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(text, ack(&id));
        id
    }

    /// Expects a close frame with `code`, answers it, and expects the server to close the
    /// connection.
    fn expect_close(&mut self, code: u16) -> String {
        let reason = match self.next() {
            Message::Close(Some((c, reason))) => {
                assert_eq!(c, code, "close reason {reason:?}");
                reason
            }
            other => panic!("expected close {code}, got {other:?}"),
        };
        self.send_close(code, "");
        self.stream.shutdown(Shutdown::Write).unwrap();
        self.expect_eof();
        reason
    }

    /// Nothing more arrives: the server closed the connection.
    fn expect_eof(&mut self) {
        match self.try_next() {
            Ok(None) => {}
            Ok(Some(m)) => panic!("expected the connection to close, got {m:?}"),
            Err(e) => panic!("expected the connection to close: {e}"),
        }
    }
}

/// A sentinel published on the tunnel's private path must be its next datagram.
fn expect_private_sentinel(ws: &mut Ws, p: &mut Publisher, tunnel: &str) {
    expect_sentinel(ws, p, &format!("/tunnel/{tunnel}"));
}

/// A sentinel published on `path` must be the next datagram: nothing unexpected came before it.
fn expect_sentinel(ws: &mut Ws, p: &mut Publisher, path: &str) {
    let id = p.publish(path, r#""sentinel""#);
    assert_eq!(ws.text(), datagram(&id, path, r#""sentinel""#));
}

// ----- Handshake -----------------------------------------------------------------------------

#[test]
fn handshake_accept_value_and_exact_answer() {
    let addr = start(&[]);
    let (stream, head, rest) = request_head(
        addr,
        upgrade_request("/tunnel?format=ws&path=/hs", "").as_bytes(),
    );
    assert_eq!(head.status, 101);
    let mut names: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("connection".to_string(), "Upgrade".to_string()),
            ("sec-websocket-accept".to_string(), ACCEPT.to_string()),
            ("upgrade".to_string(), "websocket".to_string()),
        ]
    );
    assert!(
        rest.is_empty() || rest[0] == 0x81,
        "a text frame follows the head"
    );
    drop(stream);

    // Another key, checked against SHA-1 computed here: base64(SHA-1(key + GUID)).
    let key = "x3JJHMbDL1EzLkh9GBhXDw==";
    let expected = {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        h.update(key.as_bytes());
        h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        STANDARD.encode(h.finalize())
    };
    assert_eq!(expected, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    let raw = upgrade_request("/tunnel?format=ws", "").replace(KEY, key);
    let (_s, head, _) = request_head(addr, raw.as_bytes());
    assert_eq!(head.status, 101);
    assert_eq!(head.header("sec-websocket-accept"), Some(expected.as_str()));

    // A plain `GET /tunnel` with upgrade headers is a WebSocket tunnel too.
    let (mut ws, _tunnel, new) = Ws::tunnel(addr, "/tunnel?path=/plain");
    assert!(new);
    let id = publish(addr, "/plain", "1");
    assert_eq!(ws.text(), datagram(&id, "/plain", "1"));
}

/// Header lines as `(name, value)`.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// Sends `raw`, expects a refusal with `status`, the JSON error `message` and exactly `extra`
/// besides the framing headers, then the connection closed.
fn expect_refusal(addr: SocketAddr, raw: &str, status: u16, message: &str, extra: Headers) {
    let (mut stream, head, mut rest) = request_head(addr, raw.as_bytes());
    assert_eq!(head.status, status, "{raw:?} answered {head:?}");
    let body = format!(r#"{{"ok":false,"error":"{message}"}}"#);
    let mut expected: Vec<(String, String)> = vec![
        ("connection".into(), "close".into()),
        ("content-length".into(), body.len().to_string()),
        ("content-type".into(), "application/json".into()),
    ];
    expected.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
    );
    expected.sort();
    let mut got: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    got.sort();
    assert_eq!(got, expected, "{raw:?}");
    // The body, then the end of the connection: never a half-open socket.
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + WAIT;
    loop {
        match read_some(&mut stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{raw:?}: connection not closed after the refusal: {e}"),
        }
        assert!(Instant::now() < deadline, "{raw:?}: connection stays open");
    }
    assert_eq!(std::str::from_utf8(&rest).unwrap(), body, "{raw:?}");
}

#[test]
fn handshake_refusals_answer_a_status_and_close() {
    let addr = start(&[]);
    let ok = upgrade_request("/tunnel?format=ws", "");
    let upgrade_426: Headers = &[("Upgrade", "websocket"), ("Connection", "Upgrade")];
    let version_426: Headers = &[
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
    ];
    let key_400 = "invalid Sec-WebSocket-Key";
    let cases: Vec<(String, u16, &str, Headers)> = vec![
        (
            ok.replacen("HTTP/1.1", "HTTP/1.0", 1),
            400,
            "websocket upgrade requires HTTP/1.1",
            &[],
        ),
        // 15 bytes of key, a key that is not base64, no key, two keys.
        (ok.replace(KEY, "dGhlIHNhbXBsZSBub25j"), 400, key_400, &[]),
        (
            ok.replace(KEY, "!!!!!!!!!!!!!!!!!!!!!!=="),
            400,
            key_400,
            &[],
        ),
        (
            ok.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            400,
            key_400,
            &[],
        ),
        (
            upgrade_request(
                "/tunnel?format=ws",
                &format!("Sec-WebSocket-Key: {KEY}\r\n"),
            ),
            400,
            key_400,
            &[],
        ),
        // `format=ws` without the upgrade headers.
        (
            ok.replace("Upgrade: websocket\r\n", ""),
            426,
            "websocket upgrade required",
            upgrade_426,
        ),
        (
            ok.replace("Connection: Upgrade\r\n", ""),
            426,
            "websocket upgrade required",
            upgrade_426,
        ),
        (
            ok.replace("Version: 13", "Version: 8"),
            426,
            "unsupported Sec-WebSocket-Version",
            version_426,
        ),
        (
            ok.replace("Sec-WebSocket-Version: 13\r\n", ""),
            426,
            "unsupported Sec-WebSocket-Version",
            version_426,
        ),
    ];
    for (raw, status, message, extra) in cases {
        expect_refusal(addr, &raw, status, message, extra);
    }
    // No tunnel was opened by any of them.
    assert_eq!(metrics(addr)["tunnels_created"].as_u64().unwrap(), 0);
}

/// docs/protocol.md (WebSocket): "400 for a method other than GET". An upgrade request with
/// another method must be refused as a bad handshake, and the socket closed.
#[test]
fn handshake_with_another_method_is_refused_with_400() {
    let addr = start(&[]);
    let raw =
        upgrade_request("/tunnel?format=ws", "Content-Length: 0\r\n").replacen("GET", "POST", 1);
    expect_refusal(addr, &raw, 400, "websocket upgrade must use GET", &[]);
}

// ----- Datagrams and control messages --------------------------------------------------------

#[test]
fn tunnel_datagram_is_the_first_frame() {
    let addr = start(&["--keepalive-ms", "7000"]);
    let mut ws = Ws::open(addr, "/tunnel?format=ws&path=/first");
    // Read the raw frame: one unfragmented, uncompressed text frame, unmasked.
    let mut buf = [0u8; 512];
    while parse_header(&ws.read).unwrap().is_none() {
        let n = read_some(&mut ws.stream, &mut buf).unwrap();
        assert!(n > 0);
        ws.read.extend_from_slice(&buf[..n]);
    }
    let h = parse_header(&ws.read).unwrap().unwrap();
    assert!(h.fin && !h.rsv1 && h.mask.is_none(), "{h:?}");
    assert_eq!(h.opcode, OpCode::Text);
    let (tunnel, new) = ws.control(7000);
    assert!(new);
    // The path given in the query is subscribed.
    let id = publish(addr, "/first", r#"{"a":[1,2]}"#);
    assert_eq!(ws.text(), datagram(&id, "/first", r#"{"a":[1,2]}"#));
    // The same tunnel over SSE sees the same control datagram, with new:false.
    let mut s = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}"));
    assert_eq!(
        s.sse_event().unwrap(),
        vec![format!("data: {}", control(&tunnel, false, 7000))]
    );
}

#[test]
fn subscribe_publish_ack_and_receive() {
    let addr = start(&[]);
    let (mut ws, _tunnel, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    let (mut other, _, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/sentinel&path=/chat/room1");
    ws.send_text(r#"{"type":"subscribe","path":"/chat/*"}"#);
    ws.send_text(r#"{"type":"subscribe","path":"/sentinel"}"#);

    // Publish through the tunnel: an ack with the datagram's id, and the datagram itself (the
    // tunnel subscribed to the path: no echo suppression).
    ws.send_text(
        r#"{"type":"publish","path":"/chat/room1","data":{ "t" : "<hi>", "n":[1, 2.5,null]}}"#,
    );
    let data = r#"{"t":"<hi>","n":[1,2.5,null]}"#;
    let (a, b) = (ws.text(), ws.text());
    let (ack_text, dgram) = if a.contains(r#""type":"ack""#) {
        (a, b)
    } else {
        (b, a)
    };
    let v: Value = serde_json::from_str(&ack_text).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(ack_text, ack(&id));
    assert_eq!(dgram, datagram(&id, "/chat/room1", data));
    assert_eq!(other.text(), datagram(&id, "/chat/room1", data));

    // Published through HTTP: the same bytes on the WebSocket.
    let mut p = Publisher::new(addr);
    let id2 = p.publish("/chat/x/y", r#""é\u00e9""#);
    assert_eq!(ws.text(), datagram(&id2, "/chat/x/y", r#""éé""#));

    // Unsubscribe has no answer; nothing on /chat arrives any more.
    ws.send_text(r#"{"type":"unsubscribe","path":"/chat/*"}"#);
    // The unsubscribe is handled before the next message: prove it with a publish through the
    // same connection, which is answered after it.
    let id3 = ws.publish("/elsewhere", "0");
    assert!(!id3.is_empty());
    p.publish("/chat/room1", "1");
    expect_sentinel(&mut ws, &mut p, "/sentinel");
    // The other tunnel got that one.
    let t = other.text();
    assert!(t.ends_with(r#""path":"/chat/room1","data":1}"#), "{t}");
}

#[test]
fn binary_publish_reaches_websocket_as_binary_and_sse_as_base64() {
    let addr = start(&[]);
    let (mut sub, _, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/bin/*");
    let mut sse = Stream::open(addr, "/tunnel?format=sse&path=/bin/*");
    let control_event = sse.sse_json().unwrap();
    assert_eq!(control_event["type"], "tunnel");
    let (mut publisher, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");

    // Without a target, a binary frame is an error and the tunnel stays.
    publisher.send_binary(b"\x00\x01");
    assert_eq!(
        publisher.text(),
        error(r#"binary data needs a target: send {"type":"target","path":P}"#)
    );

    publisher.send_text(r#"{"type":"target","path":"/bin/raw"}"#);
    let raw: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, 0x00]).collect();
    publisher.send_binary(&raw);
    let id = publisher.ack();
    match sub.next() {
        Message::Binary(b) => assert_eq!(&b[..], &raw[..]),
        other => panic!("expected a binary frame, got {other:?}"),
    }
    let ev = sse.sse_event().unwrap();
    let json = format!(
        r#"{{"id":"{id}","path":"/bin/raw","binary":"{}"}}"#,
        STANDARD.encode(&raw)
    );
    assert_eq!(ev, vec![format!("id: {id}"), format!("data: {json}")]);

    // The target stays until changed; an empty binary message is a datagram too.
    publisher.send_binary(b"");
    let id2 = publisher.ack();
    match sub.next() {
        Message::Binary(b) => assert!(b.is_empty()),
        other => panic!("expected a binary frame, got {other:?}"),
    }
    assert_eq!(
        sse.sse_json().unwrap(),
        serde_json::json!({"id": id2, "path": "/bin/raw", "binary": ""})
    );
    // A text datagram after binary ones is a text frame again.
    let mut p = Publisher::new(addr);
    expect_sentinel(&mut sub, &mut p, "/bin/s");
}

#[test]
fn invalid_control_messages_answer_an_error_and_keep_the_tunnel() {
    let addr = start(&[]);
    let (mut ws, tunnel, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/ok");
    let private = format!(r#"{{"type":"subscribe","path":"/tunnel/{tunnel}"}}"#);
    let cases = [
        ("not json", "message is not valid JSON"),
        ("[1,2]", "message must be a JSON object"),
        (r#"{"path":"/a"}"#, "missing type"),
        (r#"{"type":7}"#, "\"type\" must be a string"),
        (r#"{"type":"dance","path":"/a"}"#, "unknown message type"),
        (r#"{"type":"subscribe"}"#, "missing path"),
        (r#"{"type":"unsubscribe"}"#, "missing path"),
        (
            r#"{"type":"subscribe","path":"a/b"}"#,
            "path must start with '/'",
        ),
        (
            r#"{"type":"subscribe","path":"/a//b"}"#,
            "path has an empty segment",
        ),
        (
            r#"{"type":"subscribe","path":"/tunnel/*"}"#,
            "path is private",
        ),
        (private.as_str(), "path is private"),
        (r#"{"type":"publish","path":"/a"}"#, "missing data"),
        (r#"{"type":"publish","data":1}"#, "missing path"),
        (
            r#"{"type":"publish","path":"/a b","data":1}"#,
            "path segments may only hold A-Z a-z 0-9 . _ ~ -",
        ),
        (r#"{"type":"target"}"#, "missing path"),
        (
            r#"{"type":"target","path":"/x/*"}"#,
            "path segments may only hold A-Z a-z 0-9 . _ ~ -",
        ),
        (
            r#"{"type":"publish","path":"/a","data":"\ud800"}"#,
            "data contains an unpaired UTF-16 surrogate escape",
        ),
    ];
    for (message, expected) in cases.iter() {
        ws.send_text(message);
        assert_eq!(ws.text(), error(expected), "answer to {message}");
    }
    // The tunnel is still there and works: a publish through it is acked and delivered.
    ws.send_text(r#"{"type":"publish","path":"/ok","data":true}"#);
    let (a, b) = (ws.text(), ws.text());
    let (ack_text, dgram) = if a.contains("ack") { (a, b) } else { (b, a) };
    let id = serde_json::from_str::<Value>(&ack_text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ack_text, ack(&id));
    assert_eq!(dgram, datagram(&id, "/ok", "true"));
    let mut p = Publisher::new(addr);
    expect_sentinel(&mut ws, &mut p, "/ok");
}

#[test]
fn limits_answer_errors_and_keep_the_tunnel() {
    let addr = start(&[
        "--datagram-data-bytes-max",
        "16",
        "--subscriptions-per-tunnel-max",
        "2",
        "--events-per-s",
        "1",
        "--events-burst",
        "5",
    ]);
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/s");
    // Each subscribe and publish spends one of the 5 event tokens (1 more per second).
    ws.send_text(r#"{"type":"subscribe","path":"/a"}"#);
    ws.send_text(r#"{"type":"subscribe","path":"/b"}"#);
    assert_eq!(ws.text(), error("too many subscriptions"));
    // Too large: refused before it costs a token.
    ws.send_text(r#"{"type":"publish","path":"/a","data":"0123456789abcdef"}"#);
    assert_eq!(ws.text(), error("data too large"));
    ws.send_text(r#"{"type":"target","path":"/a"}"#);
    ws.send_binary(&[1u8; 17]);
    assert_eq!(ws.text(), error("data too large"));
    // The private path of a tunnel that does not exist, on either shard.
    ws.send_text(r#"{"type":"publish","path":"/tunnel/0-9999-0123456789abcdef","data":1}"#);
    assert_eq!(ws.text(), error("unknown tunnel"));
    ws.send_text(r#"{"type":"publish","path":"/tunnel/1-9999-0123456789abcdef","data":1}"#);
    assert_eq!(ws.text(), error("unknown tunnel"));
    // 16 raw bytes are within the limit (the 5th token).
    ws.send_binary(&[2u8; 16]);
    let id = ws.ack();
    match ws.next() {
        Message::Binary(b) => assert_eq!(&b[..], &[2u8; 16]),
        other => panic!("expected the binary datagram {id}, got {other:?}"),
    }
    // No token left.
    ws.send_text(r#"{"type":"publish","path":"/a","data":"0123456789abcd"}"#);
    assert_eq!(ws.text(), error("rate limit exceeded"));
    // Still attached.
    let mut p = Publisher::new(addr);
    expect_sentinel(&mut ws, &mut p, "/s");
}

#[test]
fn fragmented_text_and_interleaved_ping_are_handled() {
    let addr = start(&[]);
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/frag");
    let msg = br#"{"type":"publish","path":"/frag","data":{"k":"fragmented"}}"#;
    ws.send_frame(OpCode::Text, false, &msg[..10]);
    ws.send_frame(OpCode::Ping, true, b"hello");
    ws.send_frame(OpCode::Continuation, false, &msg[10..30]);
    ws.send_frame(OpCode::Continuation, true, &msg[30..]);
    assert_eq!(
        ws.next(),
        Message::Pong(bytes::Bytes::from_static(b"hello"))
    );
    let (a, b) = (ws.text(), ws.text());
    let (ack_text, dgram) = if a.contains("ack") { (a, b) } else { (b, a) };
    let id = serde_json::from_str::<Value>(&ack_text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dgram, datagram(&id, "/frag", r#"{"k":"fragmented"}"#));
}

/// Frames a client sends in the same write as its upgrade request, before it saw the 101.
fn masked_text(frames: &mut BytesMut, text: &str, mask: u8) {
    put_masked_frame(
        frames,
        OpCode::Text,
        true,
        false,
        [mask; 4],
        text.as_bytes(),
    );
}

#[test]
fn frames_sent_with_the_upgrade_request_are_handled_in_order() {
    let addr = start(&[]);
    let target = "/tunnel?format=ws";
    let mut raw = BytesMut::from(upgrade_request(target, "").as_bytes());
    masked_text(&mut raw, r#"{"type":"subscribe","path":"/early"}"#, 7);
    masked_text(
        &mut raw,
        r#"{"type":"publish","path":"/early","data":1}"#,
        9,
    );
    // Past one read buffer, so the frames arrive partly with the head and partly after it.
    let big = format!(r#""{}""#, "x".repeat(20_000));
    masked_text(
        &mut raw,
        &format!(r#"{{"type":"publish","path":"/early","data":{big}}}"#),
        11,
    );
    let mut ws = Ws::open_raw(addr, target, &raw);
    let (tunnel, new) = ws.control(15_000);
    assert!(new);
    let first = ws.ack();
    assert_eq!(ws.text(), datagram(&first, "/early", "1"));
    let second = ws.ack();
    assert_eq!(ws.text(), datagram(&second, "/early", &big));
    // A re-attach that reaches the shard not owning the tunnel (a handoff) keeps its early
    // frames too. Which shard a connection reaches is the kernel's choice: try until one is
    // handed over, checking every attempt.
    drop(ws);
    let mut last = second;
    let mut handed_over = false;
    for n in 0..64 {
        let target = format!("/tunnel?format=ws&id={tunnel}&last={last}");
        let mut raw = BytesMut::from(upgrade_request(&target, "").as_bytes());
        let data = n.to_string();
        masked_text(
            &mut raw,
            &format!(r#"{{"type":"publish","path":"/early","data":{data}}}"#),
            13,
        );
        let handoffs = metrics(addr)["handoffs_out"].as_u64().unwrap();
        let mut ws = Ws::open_raw(addr, &target, &raw);
        handed_over = metrics(addr)["handoffs_out"].as_u64().unwrap() > handoffs;
        assert_eq!(ws.control(15_000), (tunnel.clone(), false));
        last = ws.ack();
        assert_eq!(ws.text(), datagram(&last, "/early", &data));
        if handed_over {
            break;
        }
    }
    assert!(
        handed_over,
        "no attempt reached the shard that does not own the tunnel"
    );
}

// ----- Re-attach, gap, replacement -----------------------------------------------------------

#[test]
fn reattach_with_last_replays_exactly_the_missed_datagrams() {
    let addr = start(&[]);
    let (mut ws, tunnel, new) = Ws::tunnel(addr, "/tunnel?format=ws&path=/re");
    assert!(new);
    let mut p = Publisher::new(addr);
    let ids: Vec<String> = (1..=10)
        .map(|i| p.publish("/re", &format!(r#"{{"n":{i}}}"#)))
        .collect();
    for (i, id) in ids.iter().enumerate().take(4) {
        assert_eq!(
            ws.text(),
            datagram(id, "/re", &format!(r#"{{"n":{}}}"#, i + 1))
        );
    }
    drop(ws);

    let mut ws = Ws::open(
        addr,
        &format!("/tunnel?format=ws&id={tunnel}&last={}", ids[3]),
    );
    assert_eq!(ws.control(15_000), (tunnel.clone(), false));
    for (i, id) in ids.iter().enumerate().skip(4) {
        assert_eq!(
            ws.text(),
            datagram(id, "/re", &format!(r#"{{"n":{}}}"#, i + 1)),
            "replay of datagram {}",
            i + 1
        );
    }
    expect_sentinel(&mut ws, &mut p, "/re");
    drop(ws);

    // `last` = the newest id: nothing to replay, the next datagram is the next publish.
    let sentinel_last = p.publish("/re", "11");
    let mut ws = Ws::open(
        addr,
        &format!("/tunnel?format=ws&id={tunnel}&last={sentinel_last}"),
    );
    assert_eq!(ws.control(15_000), (tunnel, false));
    expect_sentinel(&mut ws, &mut p, "/re");
}

#[test]
fn reattach_after_eviction_sends_gap_then_the_held_datagrams() {
    let addr = start(&["--replay-datagrams-max", "4"]);
    let (mut ws, tunnel, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/gap");
    let mut p = Publisher::new(addr);
    // Each datagram is read before the next is published: evicting one never sent would close
    // the attachment as a slow consumer.
    let ids: Vec<String> = (1..=6)
        .map(|i| {
            let id = p.publish("/gap", &format!("{i}"));
            assert_eq!(ws.text(), datagram(&id, "/gap", &format!("{i}")));
            id
        })
        .collect();
    drop(ws);
    // ids[0] and ids[1] were evicted; ids[2..6] are held.
    let mut ws = Ws::open(
        addr,
        &format!("/tunnel?format=ws&id={tunnel}&last={}", ids[0]),
    );
    assert_eq!(ws.control(15_000), (tunnel, false));
    assert_eq!(ws.text(), r#"{"type":"gap"}"#);
    for (i, id) in ids.iter().enumerate().skip(2) {
        assert_eq!(ws.text(), datagram(id, "/gap", &format!("{}", i + 1)));
    }
    expect_sentinel(&mut ws, &mut p, "/gap");
}

#[test]
fn a_second_attachment_replaces_the_first_with_close_1000() {
    let addr = start(&[]);
    let (mut first, tunnel, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/rep");
    let mut second = Ws::open(addr, &format!("/tunnel?format=ws&id={tunnel}"));
    assert_eq!(second.control(15_000), (tunnel.clone(), false));
    assert_eq!(first.expect_close(1000), "replaced");
    // The new attachment gets the datagrams.
    let mut p = Publisher::new(addr);
    expect_sentinel(&mut second, &mut p, "/rep");
    assert!(eventually(
        || metrics(addr)["replaced"].as_u64().unwrap() >= 1
    ));
    assert_eq!(metrics(addr)["tunnels_created"].as_u64().unwrap(), 1);
}

// ----- Keepalive -----------------------------------------------------------------------------

#[test]
fn a_client_that_never_answers_pings_is_closed_with_1001() {
    let (addr, clock) = start_manual(&["--keepalive-ms", "100"]);
    let (mut ws, tunnel) = clock.arming(1, || {
        let mut ws = Ws::open(addr, "/tunnel?format=ws&path=/ka");
        let (t, _) = ws.control(100);
        (ws, t)
    });
    // A ping every interval, none answered.
    for ping in 1..=2 {
        clock.arming(1, || clock.advance(100));
        match ws.next() {
            Message::Ping(payload) => assert!(payload.is_empty()),
            other => panic!("expected ping {ping}, got {other:?}"),
        }
    }
    // Just before the third interval ends the connection is still served: a message through
    // the tunnel is answered (and is no pong).
    clock.advance(99);
    ws.publish("/elsewhere", "1");
    // Then the close.
    clock.advance(1);
    let reason = match ws.next() {
        Message::Close(Some((code, reason))) => {
            assert_eq!(code, 1001, "{reason}");
            reason
        }
        other => panic!("expected the close, got {other:?}"),
    };
    assert_eq!(reason, "no pong");
    ws.send_close(1001, "");
    ws.stream.shutdown(Shutdown::Write).unwrap();
    ws.expect_eof();
    assert!(eventually(|| metrics(addr)["ping_timeouts"]
        .as_u64()
        .unwrap()
        >= 1));

    // The tunnel stays for re-attach, with what was published meanwhile.
    let id = publish(addr, "/ka", "1");
    let mut again = Ws::open(addr, &format!("/tunnel?format=ws&id={tunnel}"));
    assert_eq!(again.control(100), (tunnel, false));
    assert_eq!(again.text(), datagram(&id, "/ka", "1"));
}

#[test]
fn a_client_that_answers_pings_stays() {
    let (addr, clock) = start_manual(&["--keepalive-ms", "100"]);
    let mut ws = clock.arming(1, || {
        let mut ws = Ws::open(addr, "/tunnel?format=ws&path=/kb");
        ws.control(100);
        ws
    });
    // Ten intervals: far more than the two unanswered pings that drop a silent client.
    for ping in 1..=10 {
        clock.arming(1, || clock.advance(100));
        match ws.next() {
            Message::Ping(payload) => {
                assert!(payload.is_empty());
                ws.send_frame(OpCode::Pong, true, &payload);
            }
            other => panic!("expected ping {ping}, got {other:?}"),
        }
        // The router reads the pong before the clock moves on: a message sent after it is
        // answered.
        ws.publish("/elsewhere", "1");
    }
    // Still attached: datagrams arrive.
    let id = publish(addr, "/kb", r#""still here""#);
    assert_eq!(ws.text(), datagram(&id, "/kb", r#""still here""#));
    assert_eq!(metrics(addr)["ping_timeouts"].as_u64().unwrap(), 0);
}

// ----- Closing and protocol errors -----------------------------------------------------------

#[test]
fn the_clients_close_is_echoed() {
    let addr = start(&[]);
    for (code, reason) in [(1000u16, "bye"), (4001, "app says so"), (1001, "")] {
        let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
        ws.send_close(code, reason);
        assert_eq!(ws.next(), Message::Close(Some((code, String::new()))));
        ws.expect_eof();
    }
    // A close without a code is answered with 1000.
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    let mask = ws.mask();
    let mut out = BytesMut::new();
    put_masked_frame(&mut out, OpCode::Close, true, false, mask, b"");
    ws.send_raw(&out);
    assert_eq!(ws.next(), Message::Close(Some((1000, String::new()))));
    ws.expect_eof();
}

/// RFC 6455 §5.5.1: "After both sending and receiving a Close message, an endpoint considers the
/// WebSocket connection closed and MUST close the underlying TCP connection" (and §7.1.1: the
/// server should close it first). When the server starts the close (replacement, protocol error,
/// no pong), the socket must end as soon as the client's close arrives, not when the client
/// drops it or a timer runs out.
#[test]
fn the_server_closes_the_socket_once_the_client_answers_its_close() {
    let addr = start(&[]);
    // Replacement (close 1000).
    let (mut first, tunnel, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    let _second = Ws::open(addr, &format!("/tunnel?format=ws&id={tunnel}"));
    // A protocol error (close 1002).
    let (mut bad, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    bad.send_raw(&[0x83, 0x80, 1, 2, 3, 4]);
    for (ws, code) in [(&mut first, 1000u16), (&mut bad, 1002)] {
        match ws.next() {
            Message::Close(Some((c, _))) => assert_eq!(c, code),
            other => panic!("expected close {code}, got {other:?}"),
        }
        // Answer the close and keep our side of the socket open.
        ws.send_close(code, "");
        let answered = Instant::now();
        ws.expect_eof();
        let waited = answered.elapsed();
        assert!(
            waited < Duration::from_millis(500),
            "after close {code} the server kept the socket {waited:?} past the client's close"
        );
    }
}

#[test]
fn an_unmasked_client_frame_is_closed_with_1002() {
    let addr = start(&[]);
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    let mut out = BytesMut::new();
    router::wire::websocket::frame::put_frame(
        &mut out,
        OpCode::Text,
        true,
        false,
        br#"{"type":"subscribe","path":"/a"}"#,
    );
    ws.send_raw(&out);
    let reason = ws.expect_close(1002);
    assert!(reason.contains("unmasked"), "{reason}");
}

#[test]
fn other_protocol_errors_are_closed_with_1002() {
    let addr = start(&[]);
    // Reserved opcode, RSV1 without negotiated deflate, a continuation without a message, a
    // ping over 125 bytes, a close with a 1-byte payload.
    let mut frames: Vec<Vec<u8>> = vec![
        vec![0x83, 0x80, 1, 2, 3, 4],
        vec![0xC1, 0x80, 1, 2, 3, 4],
        vec![0x80, 0x80, 1, 2, 3, 4],
        vec![0x89, 0xFE, 0x00, 0x7E, 1, 2, 3, 4],
        vec![0x88, 0x81, 1, 2, 3, 4, 5],
    ];
    frames[3].extend(std::iter::repeat_n(0u8, 126));
    for frame in frames {
        let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
        ws.send_raw(&frame);
        ws.expect_close(1002);
    }
}

#[test]
fn invalid_utf8_text_is_closed_with_1007() {
    let addr = start(&[]);
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    ws.send_frame(OpCode::Text, true, b"{\"type\":\"x\xff\xfe\"}");
    ws.expect_close(1007);
    // Also when the invalid byte comes in a later fragment.
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    ws.send_frame(OpCode::Text, false, "{\"a\":\"\u{e9}".as_bytes());
    ws.send_frame(OpCode::Continuation, true, b"\xc0\xaf\"}");
    ws.expect_close(1007);
}

#[test]
fn a_message_over_the_limit_is_closed_with_1009() {
    let addr = start(&[
        "--websocket-frame-bytes-max",
        "4096",
        "--websocket-message-bytes-max",
        "4096",
    ]);
    // A message of exactly the limit is fine (an error answer: it is not JSON).
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    ws.send_frame(OpCode::Text, true, &[b'x'; 4096]);
    assert_eq!(ws.text(), error("message is not valid JSON"));
    // One frame over it.
    ws.send_frame(OpCode::Text, true, &[b'x'; 4097]);
    assert_eq!(ws.expect_close(1009), "message too big");
    // Fragments, each under the frame limit, that add up to more than the message limit.
    let (mut ws, _, _) = Ws::tunnel(addr, "/tunnel?format=ws");
    ws.send_frame(OpCode::Binary, false, &[7u8; 3000]);
    ws.send_frame(OpCode::Continuation, true, &[7u8; 3000]);
    assert_eq!(ws.expect_close(1009), "message too big");
}

// ----- Compression ---------------------------------------------------------------------------

/// Raw DEFLATE of `payload` as RFC 7692 frames it: sync flush, tail `00 00 ff ff` removed.
fn deflate_message(payload: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(payload.len() + 128);
    c.compress_vec(payload, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "{out:?}");
    out.truncate(out.len() - 4);
    out
}

/// The header of the next server frame, without consuming it.
fn peek_header(ws: &mut Ws) -> router::wire::websocket::frame::FrameHeader {
    let mut buf = [0u8; 512];
    loop {
        if let Some(h) = parse_header(&ws.read).unwrap() {
            return h;
        }
        let n = read_some(&mut ws.stream, &mut buf).unwrap();
        assert!(n > 0, "closed");
        ws.read.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn deflate_is_negotiated_when_offered() {
    let addr = start(&[]);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let mut ws = Ws::open_with(addr, "/tunnel?format=ws&path=/z", offer);
    assert_eq!(
        ws.head.header("sec-websocket-extensions"),
        Some(DEFLATE_RESPONSE)
    );
    assert!(ws.deflate);
    // The server's frames are compressed (RSV1 on the first frame of each message).
    assert!(peek_header(&mut ws).rsv1);
    let (_tunnel, new) = ws.control(15_000);
    assert!(new);
    let data = format!(r#"{{"text":"{}"}}"#, "abc".repeat(500));
    let id = publish(addr, "/z", &data);
    assert!(peek_header(&mut ws).rsv1);
    assert_eq!(ws.text(), datagram(&id, "/z", &data));

    // A compressed client message is inflated: publish through the tunnel.
    let msg = format!(r#"{{"type":"publish","path":"/z","data":{data}}}"#);
    let compressed = deflate_message(msg.as_bytes());
    assert!(compressed.len() < msg.len() / 4);
    let mask = ws.mask();
    let mut out = BytesMut::new();
    put_masked_frame(&mut out, OpCode::Text, true, true, mask, &compressed);
    ws.send_raw(&out);
    let (a, b) = (ws.text(), ws.text());
    let (ack_text, dgram) = if a.len() < b.len() { (a, b) } else { (b, a) };
    let id = serde_json::from_str::<Value>(&ack_text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ack_text, ack(&id));
    assert_eq!(dgram, datagram(&id, "/z", &data));
    // An uncompressed client message is still fine (answered, so the ack proves it was read).
    let id = ws.publish("/elsewhere", "[]");
    assert!(!id.is_empty());
    let mut p = Publisher::new(addr);
    expect_sentinel(&mut ws, &mut p, "/z");
}

#[test]
fn deflate_is_not_negotiated_when_disabled_or_not_offered() {
    let addr = start(&["--websocket-deflate", "false"]);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut ws = Ws::open_with(addr, "/tunnel?format=ws&path=/z", offer);
    assert_eq!(ws.head.header("sec-websocket-extensions"), None);
    assert!(!peek_header(&mut ws).rsv1);
    ws.control(15_000);
    // A compressed frame is then a protocol error.
    let mask = ws.mask();
    let mut out = BytesMut::new();
    put_masked_frame(
        &mut out,
        OpCode::Text,
        true,
        true,
        mask,
        &deflate_message(b"{}"),
    );
    ws.send_raw(&out);
    ws.expect_close(1002);

    // Enabled but not offered: no extension either.
    let addr = start(&[]);
    let mut ws = Ws::open(addr, "/tunnel?format=ws");
    assert_eq!(ws.head.header("sec-websocket-extensions"), None);
    assert!(!peek_header(&mut ws).rsv1);
    // Enabled and offered with parameters it cannot honour (a repeated parameter): declined.
    let mut ws = Ws::open_with(
        addr,
        "/tunnel?format=ws",
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_no_context_takeover\r\n",
    );
    assert_eq!(ws.head.header("sec-websocket-extensions"), None);
    assert!(!peek_header(&mut ws).rsv1);
}

// ----- Conformance echo ----------------------------------------------------------------------

#[test]
fn echo_is_404_without_the_flag() {
    let addr = start(&[]);
    let (_s, head, _) = request_head(addr, upgrade_request("/echo", "").as_bytes());
    assert_eq!(head.status, 404);
}

#[test]
fn echo_echoes_messages_with_the_flag() {
    let addr = start(&["--conformance-echo", "true"]);
    let mut ws = Ws::open(addr, "/echo");
    ws.send_text("hello, ünïcode");
    assert_eq!(ws.text(), "hello, ünïcode");
    ws.send_binary(&[0, 159, 146, 150]);
    assert_eq!(
        ws.next(),
        Message::Binary(bytes::Bytes::from_static(&[0, 159, 146, 150]))
    );
    ws.send_frame(OpCode::Text, false, b"frag");
    ws.send_frame(OpCode::Continuation, true, b"mented");
    assert_eq!(ws.text(), "fragmented");
    ws.send_frame(OpCode::Ping, true, b"p");
    assert_eq!(ws.next(), Message::Pong(bytes::Bytes::from_static(b"p")));
    ws.send_close(1000, "done");
    assert_eq!(ws.next(), Message::Close(Some((1000, String::new()))));
    ws.expect_eof();

    // With deflate.
    let mut ws = Ws::open_with(
        addr,
        "/echo",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    assert_eq!(
        ws.head.header("sec-websocket-extensions"),
        Some(DEFLATE_RESPONSE)
    );
    let text = "squeeze ".repeat(100);
    let mask = ws.mask();
    let mut out = BytesMut::new();
    put_masked_frame(
        &mut out,
        OpCode::Text,
        true,
        true,
        mask,
        &deflate_message(text.as_bytes()),
    );
    ws.send_raw(&out);
    assert!(peek_header(&mut ws).rsv1);
    assert_eq!(ws.text(), text);
}

// ----- Shards --------------------------------------------------------------------------------

#[test]
fn tunnels_on_both_shards_get_every_publish_once_and_in_order() {
    let addr = start(&[]);
    // Tunnels are created on the shard the connection lands on; open until both have one.
    let mut on: [Option<(Ws, String)>; 2] = [None, None];
    for _ in 0..64 {
        let (ws, tunnel, _) = Ws::tunnel(addr, "/tunnel?format=ws&path=/x/*");
        let shard = shard_of(&tunnel) as usize;
        if on[shard].is_none() {
            on[shard] = Some((ws, tunnel));
        }
        if on.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(mut a), Some(mut b)] = on else {
        panic!("no WebSocket tunnel on each shard after 64 connections");
    };
    // Publishes from one HTTP connection: every tunnel gets each once, in publish order.
    let mut p = Publisher::new(addr);
    let mut expected = Vec::new();
    for i in 0..20 {
        let id = p.publish("/x/http", &format!("{i}"));
        expected.push(datagram(&id, "/x/http", &format!("{i}")));
    }
    for (ws, tunnel) in [&mut a, &mut b] {
        for e in &expected {
            assert_eq!(&ws.text(), e);
        }
        expect_private_sentinel(ws, &mut p, tunnel);
    }
    // Through a WebSocket (each shard's tunnel in turn): the other tunnel receives each once.
    let mut pair = [a, b];
    for swap in [false, true] {
        let (x, y) = pair.split_at_mut(1);
        let (from, to) = if swap {
            (&mut y[0], &mut x[0])
        } else {
            (&mut x[0], &mut y[0])
        };
        from.0
            .send_text(r#"{"type":"publish","path":"/x/ws","data":"w"}"#);
        let mut got = [from.0.text(), from.0.text()];
        got.sort();
        let id = serde_json::from_str::<Value>(&got[1]).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(got, [datagram(&id, "/x/ws", r#""w""#), ack(&id)]);
        assert_eq!(to.0.text(), datagram(&id, "/x/ws", r#""w""#));
        expect_private_sentinel(&mut from.0, &mut p, &from.1);
        expect_private_sentinel(&mut to.0, &mut p, &to.1);
    }
    // Re-attach each tunnel several times: the connections land on either shard and are handed
    // to the owner; each re-attach gets new:false and the next datagram.
    for (ws, tunnel) in pair {
        drop(ws);
        for _ in 0..6 {
            let mut ws = Ws::open(addr, &format!("/tunnel?format=ws&id={tunnel}"));
            assert_eq!(ws.control(15_000), (tunnel.clone(), false));
            expect_private_sentinel(&mut ws, &mut p, &tunnel);
        }
    }
}
