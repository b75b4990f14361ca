//! The per-request CPU cost of the baseline's old head reader (httparse + `Head::fill`, copied
//! from the parent commit) and of `router::wire::http1::parse_head`, on a publish request as
//! loadgen sends it, and of the WebSocket frame encoders. Run from the repository root:
//!   cp results/baseline-reuse/2026-12-03/parse_cost.rs loadgen/examples/ &&
//!   cargo run --release -p loadgen --example parse_cost
#![allow(dead_code)]
use std::hint::black_box;
use std::io;
use std::time::Instant;
use router::wire::http1::{parse_head, Limits, Status};
const MAX_HEADERS: usize = 32;
const MAX_HEAD: usize = 8192;
/// Why a connection ends early: answer with a status and close, or just close.
#[derive(Debug)]
pub(crate) enum Fail {
    Status(u16),
    Close,
}

impl From<io::Error> for Fail {
    fn from(_: io::Error) -> Self {
        Fail::Close
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    #[default]
    Other,
}

/// The parts of a request head the servers look at. Reused from request to request.
#[derive(Debug, Default)]
pub(crate) struct Head {
    /// Length of the head in the connection buffer.
    pub len: usize,
    pub method: Method,
    /// The path without its query.
    pub path: String,
    /// `Content-Length`, if present.
    pub content_length: Option<usize>,
    /// A `Transfer-Encoding` header is present (not supported: no chunked bodies).
    pub transfer_encoding: bool,
    /// `Upgrade` names `websocket`.
    pub upgrade_websocket: bool,
    /// `Sec-WebSocket-Key`, empty if absent.
    pub ws_key: String,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The connection stays open after the response.
    pub keep_alive: bool,
}

impl Head {
    /// The request carries a body (or claims to).
    pub fn has_body(&self) -> bool {
        self.transfer_encoding || self.content_length.unwrap_or(0) > 0
    }

    fn fill(&mut self, len: usize, req: &httparse::Request<'_, '_>) -> Result<(), Fail> {
        self.len = len;
        self.method = match req.method {
            Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            _ => Method::Other,
        };
        let path = req.path.unwrap_or("");
        let path = path.split('?').next().unwrap_or("");
        self.path.clear();
        self.path.push_str(path);
        self.content_length = None;
        self.transfer_encoding = false;
        self.upgrade_websocket = false;
        self.ws_key.clear();
        self.expect_continue = false;
        let http11 = req.version == Some(1);
        let mut close = false;
        let mut keep_alive = false;
        for header in req.headers.iter() {
            let name = header.name;
            let value = std::str::from_utf8(header.value).map_err(|_| Fail::Status(400))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(value).ok_or(Fail::Status(400))?;
                if self.content_length.is_some_and(|old| old != n) {
                    return Err(Fail::Status(400));
                }
                self.content_length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                self.transfer_encoding = true;
            } else if name.eq_ignore_ascii_case("upgrade") {
                self.upgrade_websocket |= has_token(value, "websocket");
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                self.ws_key.clear();
                self.ws_key.push_str(value);
            } else if name.eq_ignore_ascii_case("expect") {
                self.expect_continue = value.eq_ignore_ascii_case("100-continue");
            } else if name.eq_ignore_ascii_case("connection") {
                close |= has_token(value, "close");
                keep_alive |= has_token(value, "keep-alive");
            }
        }
        self.keep_alive = if http11 { !close } else { keep_alive && !close };
        Ok(())
    }
}

/// A decimal Content-Length; saturates huge values (they are refused as too large anyway).
fn parse_length(value: &str) -> Option<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<usize>().unwrap_or(usize::MAX))
}

/// Whether the comma-separated header `value` holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}


fn old_next(buf: &[u8], head: &mut Head) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => { head.fill(n, &req).ok(); n }
        _ => 0,
    }
}
/// Appends one unmasked, final text frame (RFC 6455 §5.2) carrying `body`.
fn encode_ws_text(body: &[u8], out: &mut Vec<u8>) {
    out.push(0x81); // FIN + text
    let len = body.len();
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(body);
}


fn encode_cost(body: &[u8]) {
    let n = 20_000_000u32;
    let mut v: Vec<u8> = Vec::with_capacity(256);
    let t = Instant::now();
    for _ in 0..n {
        v.clear();
        encode_ws_text(black_box(body), &mut v);
        black_box(&v);
    }
    let old_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let mut m = bytes::BytesMut::with_capacity(256);
    let t = Instant::now();
    for _ in 0..n {
        m.clear();
        router::wire::websocket::frame::put_frame(&mut m, router::wire::websocket::OpCode::Text, true, false, black_box(body));
        black_box(&m);
    }
    let new_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    println!("ws frame of {} bytes: old encode_ws_text {old_ns:.1} ns, put_frame {new_ns:.1} ns", body.len());
}

fn main() {
    for _ in 0..3 {
        encode_cost(b"{\"seq\":12345,\"t_us\":987654321012}");
    }
    let req = b"POST /pub/load7 HTTP/1.1\r\nHost: 127.0.0.1:40123\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"seq\":12345,\"t_us\":987654321012}";
    let limits = Limits { header_bytes_max: 8192, header_count_max: 32, body_bytes_max: 65536 };
    let n = 5_000_000u32;
    for round in 0..3 {
        let mut head = Head::default();
        let t = Instant::now();
        for _ in 0..n {
            // The old reader parsed each head twice: once to decide the flush, once to serve.
            black_box(old_next(black_box(&req[..]), &mut head));
            black_box(old_next(black_box(&req[..]), &mut head));
        }
        let old_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        let t = Instant::now();
        for _ in 0..n {
            // Once: a request that arrives alone (the look-ahead finds an empty buffer).
            black_box(old_next(black_box(&req[..]), &mut head));
        }
        let once_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        let t = Instant::now();
        for _ in 0..n {
            if let Ok(Status::Complete(h)) = parse_head(black_box(&req[..]), &limits) {
                black_box(h.path().len());
            }
        }
        let new_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!("round {round}: old httparse + fill: once {once_ns:.0} ns, twice (a pipelined request) {old_ns:.0} ns; parse_head (always once) {new_ns:.0} ns");
    }
}
