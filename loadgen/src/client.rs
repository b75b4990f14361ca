//! Client connections over monoio: WebSocket and SSE tunnels that receive datagrams, and keep-alive publishers.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use router::wire::http1::chunked::{ChunkedDecoder, Decoded};
use router::wire::websocket::decoder::{Decoder, Message, Role};
use router::wire::websocket::frame::put_masked_frame;
use router::wire::websocket::handshake::accept_key;
use router::wire::websocket::{put_masked_close, Limits, OpCode};

use crate::pacing::Schedule;
use crate::stats::Latencies;
use crate::tracker::Tracker;

/// Response head bytes accepted before the connection is given up.
const HEAD_BYTES_MAX: usize = 16 * 1024;
const HEADERS_MAX: usize = 32;
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// A datagram (or an SSE event) larger than this fails the tunnel.
const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// Counters shared by every thread, read by the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    pub tunnels_open: AtomicU64,
    pub tunnels_failed: AtomicU64,
    /// Tunnels that were open and then ended before the run did.
    pub tunnels_lost: AtomicU64,
    pub deliveries: AtomicU64,
    pub publishes_sent: AtomicU64,
    pub publishes_accepted: AtomicU64,
    pub publishes_failed: AtomicU64,
}

/// State shared by every thread for one run.
#[derive(Debug)]
pub struct Shared {
    pub target: SocketAddr,
    pub host: String,
    pub counters: Counters,
    /// When publishing starts: intended times (`t_us`) are relative to it.
    pub start: OnceLock<Instant>,
    pub stop: AtomicBool,
    /// Per path, how many publishes were sent (their seqs are 0..n).
    pub published_per_path: Vec<AtomicU64>,
}

/// Per-worker receive state, shared by the worker's tunnel tasks.
#[derive(Debug, Default)]
pub struct WorkerState {
    pub latencies: Latencies,
    /// One tracker per live tunnel of this worker, with its path index.
    pub trackers: Vec<(usize, Tracker)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
}

/// What a tunnel subscribes to: nothing (idle) or one path, with its tracker slot.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    pub path: usize,
    pub slot: usize,
}

#[derive(serde::Deserialize)]
struct Datagram {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<Payload>,
}

#[derive(serde::Deserialize)]
struct Payload {
    seq: u64,
    t_us: u64,
}

/// Opens one tunnel and receives until the connection ends; counts the outcome.
pub async fn run_tunnel(
    shared: &Shared,
    state: Rc<RefCell<WorkerState>>,
    transport: Transport,
    live: Option<Live>,
) {
    let mut opened = false;
    let result = tunnel(shared, &state, transport, live, &mut opened).await;
    if !opened {
        shared
            .counters
            .tunnels_failed
            .fetch_add(1, Ordering::Relaxed);
    } else if result.is_err() || !shared.stop.load(Ordering::Relaxed) {
        shared.counters.tunnels_lost.fetch_add(1, Ordering::Relaxed);
    }
}

async fn tunnel(
    shared: &Shared,
    state: &Rc<RefCell<WorkerState>>,
    transport: Transport,
    live: Option<Live>,
    opened: &mut bool,
) -> Result<(), &'static str> {
    let mut stream = TcpStream::connect(shared.target)
        .await
        .map_err(|_| "connect failed")?;
    let _ = stream.set_nodelay(true);
    let path_query = live.map_or(String::new(), |l| format!("&path=/load/{}", l.path));
    let mut key_bytes = [0u8; 16];
    getrandom::getrandom(&mut key_bytes).map_err(|_| "no randomness")?;
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_bytes);
    let request = match transport {
        Transport::Ws => format!(
            "GET /tunnel?format=ws{path_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            shared.host
        ),
        Transport::Sse => format!(
            "GET /tunnel?format=sse{path_query} HTTP/1.1\r\nHost: {}\r\n\r\n",
            shared.host
        ),
    };
    let (result, _) = stream.write_all(request.into_bytes()).await;
    result.map_err(|_| "write failed")?;

    let mut buf = BytesMut::with_capacity(4096);
    let (status, accept) = read_head(&mut stream, &mut buf).await?;
    let mut on_datagram = |bytes: &[u8]| -> Result<(), &'static str> {
        let datagram: Datagram = serde_json::from_slice(bytes).map_err(|_| "bad datagram")?;
        if datagram.kind.as_deref() == Some("tunnel") && !*opened {
            *opened = true;
            shared.counters.tunnels_open.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(payload), Some(live)) = (datagram.data, live) {
            let now = Instant::now();
            let start = shared.start.get().copied().unwrap_or(now);
            let since_start = now.saturating_duration_since(start);
            let latency_us = u64::try_from(since_start.as_micros())
                .unwrap_or(u64::MAX)
                .saturating_sub(payload.t_us);
            let mut state = state.borrow_mut();
            state.latencies.record(latency_us, since_start);
            if let Some((_, tracker)) = state.trackers.get_mut(live.slot) {
                tracker.observe(payload.seq);
            }
            shared.counters.deliveries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    match transport {
        Transport::Ws => {
            if status != 101 || accept.as_deref() != Some(accept_key(key.as_bytes()).as_str()) {
                return Err("handshake refused");
            }
            receive_ws(&mut stream, &mut buf, &mut on_datagram).await
        }
        Transport::Sse => {
            if status != 200 {
                return Err("tunnel refused");
            }
            receive_sse(&mut stream, &mut buf, &mut on_datagram).await
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, &'static str> {
    if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
        buf.reserve(READ_CHUNK_BYTES);
    }
    let len = buf.len();
    let owned = std::mem::take(buf);
    let (result, slice) = stream
        .read(monoio::buf::IoBufMut::slice_mut(owned, len..))
        .await;
    *buf = slice.into_inner();
    match result {
        Ok(0) => Err("closed by peer"),
        Ok(n) => Ok(n),
        Err(_) => Err("read failed"),
    }
}

/// Reads a response head; returns its status and `Sec-WebSocket-Accept`, and
/// leaves what follows the head in `buf`.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<(u16, Option<String>), &'static str> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = response.code.unwrap_or(0);
                let accept = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::to_owned);
                buf.advance(head_len);
                return Ok((status, accept));
            }
            Ok(httparse::Status::Partial) if buf.len() < HEAD_BYTES_MAX => {}
            _ => return Err("bad response head"),
        }
        read_more(stream, buf).await?;
    }
}

async fn receive_ws(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    on_datagram: &mut impl FnMut(&[u8]) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let limits = Limits {
        frame_bytes_max: MESSAGE_BYTES_MAX,
        message_bytes_max: MESSAGE_BYTES_MAX,
    };
    let mut decoder = Decoder::new(Role::Client, limits, None);
    loop {
        while let Some(message) = decoder
            .decode(buf)
            .map_err(|_| "websocket protocol error")?
        {
            match message {
                Message::Text(bytes) => on_datagram(&bytes)?,
                Message::Binary(_) | Message::Pong(_) => {}
                Message::Ping(payload) => {
                    let mut out = BytesMut::new();
                    put_masked_frame(&mut out, OpCode::Pong, true, false, fresh_mask(), &payload);
                    let (result, _) = stream.write_all(out).await;
                    result.map_err(|_| "write failed")?;
                }
                Message::Close(_) => {
                    let mut out = BytesMut::new();
                    put_masked_close(&mut out, 1000, "", fresh_mask());
                    let _ = stream.write_all(out).await;
                    return Err("closed by server");
                }
            }
        }
        read_more(stream, buf).await?;
    }
}

fn fresh_mask() -> [u8; 4] {
    let mut mask = [0u8; 4];
    // A predictable mask only weakens proxy-cache protection, irrelevant here.
    let _ = getrandom::getrandom(&mut mask);
    mask
}

async fn receive_sse(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    on_datagram: &mut impl FnMut(&[u8]) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let mut chunked = ChunkedDecoder::new(usize::MAX);
    let mut body = BytesMut::new();
    loop {
        let decoded = chunked
            .decode(buf, &mut body)
            .map_err(|_| "bad chunked body")?;
        while let Some(end) = memchr::memmem::find(&body, b"\n\n") {
            let event = body.split_to(end + 2);
            for line in event[..].split(|&b| b == b'\n') {
                if let Some(data) = line.strip_prefix(b"data: ") {
                    on_datagram(data)?;
                }
            }
        }
        if body.len() > MESSAGE_BYTES_MAX {
            return Err("event too large");
        }
        if decoded == Decoded::Done {
            return Err("stream ended");
        }
        read_more(stream, buf).await?;
    }
}

/// Publishes, over one keep-alive connection, every publish `k` of the
/// schedule whose path (`k % paths`) is `p` with `p % connections == connection`.
/// Requests due together are pipelined; the next batch waits for their answers
/// (latency is measured from the intended time, so that wait is counted).
pub async fn run_publisher(
    shared: &Shared,
    schedule: Schedule,
    publishes_total: u64,
    paths: u64,
    connections: u64,
    connection: u64,
) -> Result<(), &'static str> {
    let mut schedule = schedule;
    let mut stream = TcpStream::connect(shared.target)
        .await
        .map_err(|_| "publisher connect failed")?;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let start = schedule.next_intended();
    while !shared.stop.load(Ordering::Relaxed) {
        if schedule.taken() >= publishes_total {
            return Ok(());
        }
        let now = Instant::now();
        let next = schedule.next_intended();
        if next > now {
            monoio::time::sleep(next - now).await;
            continue;
        }
        let mut out = Vec::new();
        let mut outstanding = 0u64;
        for k in schedule.take_due_within(now, publishes_total) {
            let path = k % paths;
            if path % connections != connection {
                continue;
            }
            let seq = k / paths;
            let t_us = u64::try_from(schedule.intended(k).duration_since(start).as_micros())
                .unwrap_or(u64::MAX);
            let body = format!("{{\"seq\":{seq},\"t_us\":{t_us}}}");
            out.extend_from_slice(
                format!(
                    "POST /publish/load/{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    shared.host,
                    body.len()
                )
                .as_bytes(),
            );
            if let Some(count) = shared.published_per_path.get(path as usize) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            outstanding += 1;
        }
        if outstanding == 0 {
            continue;
        }
        shared
            .counters
            .publishes_sent
            .fetch_add(outstanding, Ordering::Relaxed);
        let (result, _) = stream.write_all(out).await;
        result.map_err(|_| "publisher write failed")?;
        while outstanding > 0 {
            match parse_response(&mut buf)? {
                Some(status) => {
                    outstanding -= 1;
                    let counter = if status == 202 {
                        &shared.counters.publishes_accepted
                    } else {
                        &shared.counters.publishes_failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    read_more(&mut stream, &mut buf).await?;
                }
            }
        }
    }
    Ok(())
}

/// Takes one complete response (head and `Content-Length` body) off `buf`;
/// `Ok(None)` when more bytes are needed.
fn parse_response(buf: &mut BytesMut) -> Result<Option<u16>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let body_len = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let status = response.code.unwrap_or(0);
            if buf.len() < head_len + body_len {
                return Ok(None);
            }
            buf.advance(head_len + body_len);
            Ok(Some(status))
        }
        Ok(httparse::Status::Partial) if buf.len() < HEAD_BYTES_MAX => Ok(None),
        _ => Err("bad publish response"),
    }
}

/// Sleeps in short steps until `stop` is set.
pub async fn wait_for_stop(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_responses() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 202 Accepted\r\nContent-Length: 22\r\n\r\n{\"ok\":true,\"id\":\"1-1\"}\
HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 2"[..],
        );
        assert_eq!(parse_response(&mut buf), Ok(Some(202)));
        assert_eq!(parse_response(&mut buf), Ok(Some(503)));
        assert_eq!(parse_response(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"HTTP/1.1 2");
    }

    #[test]
    fn waits_for_the_whole_body() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nab"[..]);
        assert_eq!(parse_response(&mut buf), Ok(None));
        buf.extend_from_slice(b"cde");
        assert_eq!(parse_response(&mut buf), Ok(Some(202)));
        assert!(buf.is_empty());
    }

    #[test]
    fn datagram_payload_decodes() {
        let datagram: Datagram = serde_json::from_slice(
            br#"{"id":"0-1","path":"/load/3","data":{"seq":7,"t_us":1500}}"#,
        )
        .expect("valid datagram");
        let payload = datagram.data.expect("has data");
        assert_eq!((payload.seq, payload.t_us), (7, 1500));
        let control: Datagram = serde_json::from_slice(
            br#"{"type":"tunnel","tunnel":"0-0-ab","new":true,"keepalive_ms":15000}"#,
        )
        .expect("valid control datagram");
        assert_eq!(control.kind.as_deref(), Some("tunnel"));
        assert!(control.data.is_none());
    }
}
