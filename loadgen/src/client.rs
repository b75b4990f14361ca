//! Tunnels over monoio: open one (WebSocket, SSE, NUL or NDJSON stream, or long-poll),
//! then receive datagrams until the run stops, recording latency and sequence numbers. With
//! `--reattach`, a tunnel whose connection is lost re-attaches with its id and last datagram id.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use router::wire::http1::chunked::{ChunkedDecoder, Decoded};
use router::wire::websocket::decoder::{Decoder, Message as WsMessage, Role};
use router::wire::websocket::frame::put_masked_frame;
use router::wire::websocket::handshake::accept_key;
use router::wire::websocket::{put_masked_close, Limits, OpCode};

use crate::args::{Peer, Placement, Transport};
use crate::net::{connect, monotonic_us};
use crate::peer::{self, Message, Payload, PollAnswer, Resume};
use crate::response::{peek_head, Head};
use crate::stats::Latencies;
use crate::tracker::Tracker;

/// A tunnel's first read buffer: small, because idle tunnels hold theirs while waiting.
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Growth step of a read buffer that fills up.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// A datagram (an SSE event, a long-poll answer) larger than this fails the tunnel.
const MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// Re-attach attempts in a row that may fail (no connection, refused) before the tunnel
/// counts as lost.
const REATTACH_FAILURES_MAX: u32 = 5;
/// Wait between failed re-attach attempts, at least.
const REATTACH_RETRY_MS: u64 = 100;

/// Counters of one worker process, read by its status reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub tunnels_open: AtomicU64,
    /// When the latest tunnel opened (`CLOCK_MONOTONIC` µs).
    pub last_open_us: AtomicU64,
    pub tunnels_failed: AtomicU64,
    /// Tunnels that were open and then ended before the run did.
    pub tunnels_lost: AtomicU64,
    pub deliveries: AtomicU64,
    /// Lost connections re-attached (`--reattach`).
    pub reattaches: AtomicU64,
}

/// State shared by the threads of one worker process.
#[derive(Debug)]
pub struct Shared {
    pub peer: Peer,
    /// `--reattach`: re-attach lost tunnels, after `reattach_delay`.
    pub reattach: bool,
    pub reattach_delay: Duration,
    pub counters: Counters,
    /// When publishing starts (`CLOCK_MONOTONIC` µs); 0 until the coordinator says.
    pub start_us: AtomicU64,
    pub stop: AtomicBool,
    /// Latencies since the last status report, for the live p99.
    pub recent: Mutex<Histogram<u64>>,
}

/// Per-thread receive state, shared by the thread's tunnel tasks.
#[derive(Debug, Default)]
pub struct ThreadState {
    pub latencies: Latencies,
    /// One tracker per live tunnel of this thread, with its path index.
    pub trackers: Vec<(u64, Tracker)>,
    /// Why tunnels failed or ended early, counted by reason.
    pub errors: BTreeMap<&'static str, u64>,
    /// The latest receive time of a delivery (`CLOCK_MONOTONIC` µs).
    pub last_delivery_us: u64,
}

/// A tunnel's assignment: where it goes and, if live, its tracker.
#[derive(Debug, Clone, Copy)]
pub struct Tunnel {
    pub placement: Placement,
    /// The slot in `ThreadState::trackers` of a live tunnel.
    pub slot: Option<usize>,
}

type Outcome = Result<(), &'static str>;

/// Where a tunnel stands across its connections.
#[derive(Debug, Default)]
struct Session {
    /// The tunnel id, once its control datagram (or first poll answer) named it.
    tunnel: Option<String>,
    /// The id of the last datagram received.
    last: Option<String>,
    /// When the latest re-attach request was sent (`CLOCK_MONOTONIC` µs).
    resumed_at_us: Option<u64>,
}

/// Opens one tunnel and receives until the connection ends or the run stops; counts the
/// outcome. With `--reattach`, a tunnel that was open re-attaches each time its connection is
/// lost, until the run stops or `REATTACH_FAILURES_MAX` attempts in a row fail.
pub async fn run_tunnel(shared: &Shared, state: Rc<RefCell<ThreadState>>, tunnel: Tunnel) {
    let session = RefCell::new(Session::default());
    let mut opened = false;
    let mut failures = 0;
    let result = loop {
        let mut attempt_opened = false;
        let result = open_and_receive(shared, &state, tunnel, &mut attempt_opened, &session).await;
        opened |= attempt_opened;
        let resumable = shared.reattach
            && opened
            && !tunnel.placement.zombie
            && session.borrow().tunnel.is_some();
        if !resumable || shared.stop.load(Ordering::Relaxed) {
            break result;
        }
        failures = if attempt_opened { 0 } else { failures + 1 };
        if failures >= REATTACH_FAILURES_MAX {
            break result;
        }
        let delay = if failures == 0 {
            shared.reattach_delay
        } else {
            shared
                .reattach_delay
                .max(Duration::from_millis(REATTACH_RETRY_MS))
        };
        if !delay.is_zero() {
            monoio::time::sleep(delay).await;
        }
    };
    let counters = &shared.counters;
    if !opened {
        counters.tunnels_failed.fetch_add(1, Ordering::Relaxed);
    } else if !shared.stop.load(Ordering::Relaxed) {
        counters.tunnels_lost.fetch_add(1, Ordering::Relaxed);
    } else {
        return;
    }
    let reason = result.err().unwrap_or("ended by the server");
    *state.borrow_mut().errors.entry(reason).or_default() += 1;
}

/// Receives one message: records a payload's latency and sequence number.
struct Receiver<'a> {
    shared: &'a Shared,
    state: &'a RefCell<ThreadState>,
    slot: Option<usize>,
    session: &'a RefCell<Session>,
}

impl Counters {
    fn opened(&self) {
        self.tunnels_open.fetch_add(1, Ordering::Relaxed);
        self.last_open_us
            .fetch_max(monotonic_us(), Ordering::Relaxed);
    }
}

impl Receiver<'_> {
    fn message<'b>(&self, bytes: &'b [u8]) -> Result<Message<'b>, &'static str> {
        let message = Message::parse(bytes)?;
        if let Some(payload) = message.payload() {
            self.deliver(payload);
        }
        if self.shared.reattach {
            self.follow(&message);
        }
        Ok(message)
    }

    /// Keeps what a re-attach needs: the tunnel id and the last datagram id; and tells the
    /// tracker about gap markers.
    fn follow(&self, message: &Message) {
        let mut session = self.session.borrow_mut();
        if let Some(id) = &message.id {
            let last = session.last.get_or_insert_with(String::new);
            last.clear();
            last.push_str(id);
        }
        match message.kind.as_deref() {
            Some("tunnel") => session.tunnel = message.tunnel.as_deref().map(str::to_owned),
            Some("gap") => {
                if let Some(slot) = self.slot {
                    if let Some((_, tracker)) = self.state.borrow_mut().trackers.get_mut(slot) {
                        tracker.gap_marker();
                    }
                }
            }
            _ => {}
        }
    }

    /// Counts a connection whose response head arrived: a tunnel opened, or one re-attached.
    fn opened(&self, resumed: bool) {
        let counters = &self.shared.counters;
        if resumed {
            counters.reattaches.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.opened();
        }
    }

    fn deliver(&self, payload: Payload) {
        let Some(slot) = self.slot else {
            return;
        };
        let now_us = monotonic_us();
        let latency_us = now_us.saturating_sub(payload.t_us);
        let start_us = self.shared.start_us.load(Ordering::Relaxed);
        let since_start = Duration::from_micros(now_us.saturating_sub(start_us));
        let mut state = self.state.borrow_mut();
        state.latencies.record(latency_us, since_start);
        state.last_delivery_us = state.last_delivery_us.max(now_us);
        // Published before the latest re-attach and received after it: from the replay buffer.
        let replayed = self
            .session
            .borrow()
            .resumed_at_us
            .is_some_and(|at| payload.t_us < at);
        if let Some((_, tracker)) = state.trackers.get_mut(slot) {
            tracker.observe(payload.seq);
            if replayed {
                tracker.replayed();
            }
        }
        if let Ok(mut recent) = self.shared.recent.lock() {
            recent.saturating_record(latency_us.max(1));
        }
        self.shared
            .counters
            .deliveries
            .fetch_add(1, Ordering::Relaxed);
    }
}

async fn open_and_receive(
    shared: &Shared,
    state: &RefCell<ThreadState>,
    tunnel: Tunnel,
    opened: &mut bool,
    session: &RefCell<Session>,
) -> Outcome {
    let placement = tunnel.placement;
    let mut stream = connect(placement.target, placement.source)
        .await
        .map_err(|_| "connect failed")?;
    let host = placement.target.to_string();
    let mut key_bytes = [0u8; 16];
    getrandom::getrandom(&mut key_bytes).map_err(|_| "no randomness")?;
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key_bytes);
    let (request, resumed) = {
        let mut session = session.borrow_mut();
        // Before its first datagram, the tunnel's own id as `last`: the router then writes
        // again what it wrote to the lost connection.
        let resume = session.tunnel.as_deref().map(|tunnel| Resume {
            tunnel,
            last: Some(session.last.as_deref().unwrap_or(tunnel)),
        });
        let request = peer::tunnel_request(
            shared.peer,
            placement.transport,
            placement.path,
            &host,
            &key,
            resume,
        );
        let resumed = resume.is_some();
        if resumed {
            session.resumed_at_us = Some(monotonic_us());
        }
        (request, resumed)
    };
    let (result, _) = stream.write_all(request.into_bytes()).await;
    result.map_err(|_| "write failed")?;

    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let head = read_head(&mut stream, &mut buf).await?;
    let receiver = Receiver {
        shared,
        state,
        slot: tunnel.slot,
        session,
    };
    if placement.transport == Transport::Longpoll {
        return long_poll(
            &mut stream,
            &mut buf,
            head,
            &receiver,
            placement,
            opened,
            resumed,
        )
        .await;
    }
    let expected = if placement.transport == Transport::Ws {
        if head.accept.as_deref() != Some(accept_key(key.as_bytes()).as_str()) {
            return Err("handshake refused");
        }
        101
    } else {
        200
    };
    if head.status != expected {
        return Err("tunnel refused");
    }
    *opened = true;
    receiver.opened(resumed);
    if placement.zombie {
        // Never read again: whatever the server sends piles up in the socket buffers. The
        // task never wakes (no polling: 10^5 zombies must cost no CPU); the process ends it.
        std::future::pending::<()>().await;
    }
    let mut on_message = |bytes: &[u8]| receiver.message(bytes).map(drop);
    match placement.transport {
        Transport::Ws => receive_ws(&mut stream, &mut buf, &mut on_message).await,
        Transport::Sse | Transport::Nul | Transport::Ndjson => {
            let mut body = if head.chunked {
                Body::Chunked(ChunkedDecoder::new(usize::MAX))
            } else {
                Body::UntilClose
            };
            receive_stream(
                &mut stream,
                &mut buf,
                &mut body,
                placement.transport,
                &mut on_message,
            )
            .await
        }
        Transport::Longpoll => unreachable!("handled above"),
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, &'static str> {
    if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 2 {
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

/// Parses a response head off the front of `buf`; `Ok(None)` while incomplete.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, &'static str> {
    let head = peek_head(buf)?;
    if let Some(head) = &head {
        buf.advance(head.len);
    }
    Ok(head)
}

/// Reads a response head, leaving what follows it in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Head, &'static str> {
    loop {
        if let Some(head) = parse_head(buf)? {
            return Ok(head);
        }
        read_more(stream, buf).await?;
    }
}

async fn receive_ws(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    on_message: &mut impl FnMut(&[u8]) -> Outcome,
) -> Outcome {
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
                WsMessage::Text(bytes) => on_message(&bytes)?,
                WsMessage::Binary(_) | WsMessage::Pong(_) => {}
                WsMessage::Ping(payload) => {
                    let mut out = BytesMut::new();
                    put_masked_frame(&mut out, OpCode::Pong, true, false, fresh_mask(), &payload);
                    let (result, _) = stream.write_all(out).await;
                    result.map_err(|_| "write failed")?;
                }
                WsMessage::Close(_) => {
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

/// How a stream's body is delimited.
enum Body {
    Chunked(ChunkedDecoder),
    /// No length: the body runs until the server closes (Nchan, Pushpin and the baseline
    /// may answer this way).
    UntilClose,
}

impl Body {
    /// Moves decoded body bytes from `buf` to `out`; `true` once the body has ended.
    fn decode(&mut self, buf: &mut BytesMut, out: &mut BytesMut) -> Result<bool, &'static str> {
        match self {
            Body::Chunked(decoder) => {
                let decoded = decoder.decode(buf, out).map_err(|_| "bad chunked body")?;
                Ok(decoded == Decoded::Done)
            }
            Body::UntilClose => {
                out.extend_from_slice(buf);
                buf.clear();
                Ok(false)
            }
        }
    }
}

/// Splits complete messages off the front of `body` for a streaming transport and hands
/// each to `on_message`: SSE `data:` fields of events ended by a blank line, NUL-ended or
/// newline-ended JSON. Keepalives and comments are skipped.
fn take_messages(
    transport: Transport,
    body: &mut BytesMut,
    on_message: &mut impl FnMut(&[u8]) -> Outcome,
) -> Outcome {
    match transport {
        Transport::Sse => {
            while let Some(end) = sse_event_end(body) {
                let event = body.split_to(end);
                for line in event[..].split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if let Some(data) = line.strip_prefix(b"data:") {
                        let data = data.strip_prefix(b" ").unwrap_or(data);
                        if !data.is_empty() {
                            on_message(data)?;
                        }
                    }
                }
            }
        }
        Transport::Nul | Transport::Ndjson => {
            let end_byte = if transport == Transport::Nul {
                0
            } else {
                b'\n'
            };
            while let Some(end) = memchr::memchr(end_byte, body) {
                let message = body.split_to(end + 1);
                let message = &message[..end];
                if !message.iter().all(u8::is_ascii_whitespace) {
                    on_message(message)?;
                }
            }
        }
        Transport::Ws | Transport::Longpoll => unreachable!("not a stream"),
    }
    if body.len() > MESSAGE_BYTES_MAX {
        return Err("message too large");
    }
    Ok(())
}

/// Where the first complete SSE event ends (past its blank line), for `\n` and `\r\n`
/// line ends alike. One pass over the line ends: the body may hold many events, and it is
/// searched again after each one is taken.
fn sse_event_end(body: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &body[from..]) {
        let next = from + i + 1;
        match body.get(next..)? {
            [b'\n', ..] => return Some(next + 1),
            [b'\r', b'\n', ..] => return Some(next + 2),
            [b'\r'] => return None,
            _ => from = next,
        }
    }
    None
}

async fn receive_stream(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    body_kind: &mut Body,
    transport: Transport,
    on_message: &mut impl FnMut(&[u8]) -> Outcome,
) -> Outcome {
    let mut body = BytesMut::new();
    loop {
        let done = body_kind.decode(buf, &mut body)?;
        take_messages(transport, &mut body, on_message)?;
        if done {
            return Err("stream ended");
        }
        read_more(stream, buf).await?;
    }
}

/// Reads a `Content-Length` body after `head`.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: &Head,
) -> Result<Bytes, &'static str> {
    let len = head.content_length.ok_or("answer without Content-Length")?;
    if len > MESSAGE_BYTES_MAX {
        return Err("answer too large");
    }
    while buf.len() < len {
        read_more(stream, buf).await?;
    }
    Ok(buf.split_to(len).freeze())
}

/// A router long-poll tunnel: the opening poll, then one poll after each answer, with the
/// last datagram id so nothing is lost between polls. A zombie stops polling after the
/// opening answer (the router culls its tunnel after the grace period).
async fn long_poll(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    first: Head,
    receiver: &Receiver<'_>,
    placement: Placement,
    opened: &mut bool,
    resumed: bool,
) -> Outcome {
    let mut head = first;
    let session = receiver.session;
    let host = placement.target.to_string();
    loop {
        if head.status != 200 {
            return Err("poll refused");
        }
        let body = read_body(stream, buf, &head).await?;
        let answer: PollAnswer = serde_json::from_slice(&body).map_err(|_| "bad poll answer")?;
        if !*opened {
            let Some(tunnel) = answer.tunnel.clone() else {
                return Err("poll answer without a tunnel");
            };
            session.borrow_mut().tunnel = Some(tunnel);
            *opened = true;
            receiver.opened(resumed);
        }
        for raw in &answer.messages {
            let message = receiver.message(raw.get().as_bytes())?;
            if let Some(id) = message.id {
                session.borrow_mut().last = Some(id.into_owned());
            }
        }
        if placement.zombie {
            // Stops polling for good (see the streaming zombies above).
            std::future::pending::<()>().await;
        }
        let request = {
            let session = session.borrow();
            let id = session.tunnel.as_deref().unwrap_or_default();
            peer::poll_request(&host, id, session.last.as_deref())
        };
        let (result, _) = stream.write_all(request.into_bytes()).await;
        result.map_err(|_| "write failed")?;
        head = read_head(stream, buf).await?;
    }
}

/// Sleeps in short steps until `stop` is set.
pub async fn wait_for_stop(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(transport: Transport, input: &[u8]) -> (Vec<String>, BytesMut) {
        let mut body = BytesMut::from(input);
        let mut seen = Vec::new();
        take_messages(transport, &mut body, &mut |m: &[u8]| {
            seen.push(String::from_utf8_lossy(m).into_owned());
            Ok(())
        })
        .expect("well-formed");
        (seen, body)
    }

    #[test]
    fn sse_events_of_router_nchan_and_pushpin_split() {
        let (seen, rest) = collect(
            Transport::Sse,
            b":\n\nid: 0-1\ndata: {\"a\":1}\n\nid: 1700000000:0\ndata:{\"b\":2}\r\n\r\ndata: {\"c\"",
        );
        assert_eq!(seen, [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(&rest[..], b"data: {\"c\"");
    }

    #[test]
    fn sse_event_ends_are_found_in_one_pass_whatever_the_line_ends() {
        assert_eq!(sse_event_end(b"data: a\n\ndata: b\n\n"), Some(9));
        assert_eq!(sse_event_end(b"data: a\r\n\r\ndata: b\n\n"), Some(11));
        assert_eq!(sse_event_end(b"data: a\nid: 1\n\n"), Some(15));
        // An end still arriving.
        assert_eq!(sse_event_end(b"data: a\n"), None);
        assert_eq!(sse_event_end(b"data: a\r\n\r"), None);
        assert_eq!(sse_event_end(b"data: a\n\rb\n"), None);
        assert_eq!(sse_event_end(b""), None);
    }

    #[test]
    fn nul_and_ndjson_messages_split() {
        let (seen, rest) = collect(Transport::Nul, b"{\"a\":1}\0{\"type\":\"keepalive\"}\0{\"b");
        assert_eq!(seen, [r#"{"a":1}"#, r#"{"type":"keepalive"}"#]);
        assert_eq!(&rest[..], b"{\"b");
        let (seen, rest) = collect(Transport::Ndjson, b"{\"a\":1}\n\n{\"b\":2}\n");
        assert_eq!(seen, [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert!(rest.is_empty());
    }

    #[test]
    fn an_endless_message_fails_the_tunnel() {
        let mut body = BytesMut::from(&vec![b'x'; MESSAGE_BYTES_MAX + 1][..]);
        let result = take_messages(Transport::Ndjson, &mut body, &mut |_: &[u8]| Ok(()));
        assert_eq!(result, Err("message too large"));
    }

    #[test]
    fn heads_tell_chunked_length_and_accept() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"[..]);
        let head = parse_head(&mut buf).expect("valid").expect("complete");
        assert_eq!(
            (head.status, head.chunked, head.content_length),
            (200, true, None)
        );
        assert_eq!(&buf[..], b"5\r\nhello");
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n"[..]);
        assert_eq!(parse_head(&mut buf), Ok(None));
        buf.extend_from_slice(b"Sec-WebSocket-Accept: abc\r\n\r\n");
        let head = parse_head(&mut buf).expect("valid").expect("complete");
        assert_eq!(head.content_length, Some(12));
        assert_eq!(head.accept.as_deref(), Some("abc"));
        assert_eq!(
            parse_head(&mut BytesMut::from(&b"garbage\r\n\r\n"[..])),
            Err("bad response head")
        );
    }

    #[test]
    fn until_close_bodies_pass_through() {
        let mut body = Body::UntilClose;
        let mut buf = BytesMut::from(&b"data: x\n\n"[..]);
        let mut out = BytesMut::new();
        assert_eq!(body.decode(&mut buf, &mut out), Ok(false));
        assert!(buf.is_empty());
        assert_eq!(&out[..], b"data: x\n\n");
    }
}
