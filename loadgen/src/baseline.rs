//! `loadgen baseline`: the raw baseline, a minimal loopback pub/sub server that is the
//! physical floor a real router is compared with.
//!
//! It does as little as possible beyond writing to sockets, but stays correct and lossless:
//! - blocking std sockets, one thread per connection (`--threads` accept loops share the
//!   listener);
//! - `GET /sub/<channel>` answers `101` (WebSocket) or an SSE `200`, registers the socket and
//!   never reads from it again;
//! - `POST /pub/<channel>` writes the body, pre-encoded once, to every subscriber of the
//!   channel with one blocking `write_all` each, then answers `202`. Publishes to one channel
//!   are serialised by the channel's lock, so every subscriber sees the same order. Pipelined
//!   publishes already read (a burst) are coalesced as any server may: one write per
//!   subscriber of each channel for the whole burst, and one write for its answers;
//! - `GET /stats` answers `{"subscribers":N,"published":M}`.
//!
//! The wire work is the router's own sans-IO codecs (`router::wire`): request heads are
//! parsed and framed by `http1::parse_head` (as strict as the router: one `Host` in
//! HTTP/1.1, no bare LF, no ambiguous body framing), the WebSocket upgrade is checked and
//! answered by `websocket::handshake`, frames are written by `websocket::frame`, refusals by
//! `http1::ResponseHead`. Measured against the hand-written reader it replaced
//! (`results/baseline-reuse/2026-12-03`): `parse_head` costs about 105 ns more on a publish
//! that arrives alone and nothing more on a pipelined one (the old reader parsed those
//! twice), and the gate's scenarios showed no difference in deliveries, latency or CPU. The
//! SSE encoding stays its own: it splits a multi-line body into `data:` lines, which the
//! router's single-line datagrams never need. The connection reader ([`Conn`]) is shared with
//! the GRIP origin (`grip`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use clap::builder::RangedU64ValueParser;
use router::wire::http1::{
    parse_head, BodyKind, Limits, Method, RequestHead, ResponseBody, ResponseHead, Status,
};
use router::wire::websocket::frame::put_frame;
use router::wire::websocket::handshake::{self, HandshakeError};
use router::wire::websocket::OpCode;

/// Longest request head we read; longer ones get 431 (414 when the request line alone is).
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Largest request body; a longer Content-Length gets 413.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// How long a request head (or body) may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write to a subscriber may block before the subscriber is dropped.
const SUBSCRIBER_WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Listen backlog, as the router uses (std's default of 128 overflows on fast ramps).
const BACKLOG: i32 = 4096;
/// Stack of connection threads: they hold little (the buffer is on the heap).
const CONN_STACK: usize = 128 * 1024;
/// Most headers a request may carry; more get 431.
const MAX_HEADERS: usize = 32;
/// The bounds `parse_head` holds every request head to.
const LIMITS: Limits = Limits {
    header_bytes_max: MAX_HEAD,
    header_count_max: MAX_HEADERS,
    body_bytes_max: MAX_BODY,
};

/// `loadgen baseline`'s command line.
#[derive(clap::Args, Debug)]
pub struct BaselineArgs {
    /// Where to listen.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// Accept loops sharing the listener (each connection then has a thread of its own).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: usize,
}

/// Starts the server and serves until killed.
///
/// # Errors
/// The listening socket cannot be set up.
pub fn run(args: &BaselineArgs) -> Result<(), String> {
    let (listen, threads) = (args.listen, args.threads);
    let addr = start(listen, threads).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("loadgen baseline: listening on {addr} ({threads} accept threads)");
    park_forever()
}

/// Blocks the calling thread for good (the servers run until the process is killed).
pub(crate) fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Binds `listen`, starts `threads` accept loops in the background and returns the bound
/// address (useful with port 0).
pub fn start(listen: SocketAddr, threads: usize) -> io::Result<SocketAddr> {
    let server = Arc::new(Server::default());
    spawn_accept_loops(listen, threads, "baseline", move |stream| {
        serve_connection(&server, stream)
    })
}

/// Binds `listen` with a large backlog and runs `threads` accept loops, each handing every
/// connection to `handle` on a thread of its own. Returns the bound address.
pub(crate) fn spawn_accept_loops<F>(
    listen: SocketAddr,
    threads: usize,
    name: &str,
    handle: F,
) -> io::Result<SocketAddr>
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&listen.into())?;
    socket.listen(BACKLOG)?;
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr()?;
    let handle = Arc::new(handle);
    for i in 0..threads.max(1) {
        let listener = listener.try_clone()?;
        let handle = handle.clone();
        std::thread::Builder::new()
            .name(format!("{name}-accept-{i}"))
            .spawn(move || accept_loop(&listener, handle))?;
    }
    Ok(addr)
}

fn accept_loop<F>(listener: &TcpListener, handle: Arc<F>)
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let handle = handle.clone();
                let spawned = std::thread::Builder::new()
                    .stack_size(CONN_STACK)
                    .spawn(move || handle(stream));
                if let Err(e) = spawned {
                    // The stream went with the closure and is closed.
                    eprintln!("loadgen: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors or memory, or the peer left before accept: back off a
                // little rather than spin.
                if e.kind() != io::ErrorKind::ConnectionAborted {
                    eprintln!("loadgen: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Shared state: the subscriber registry and the counters behind `/stats`.
#[derive(Default)]
struct Server {
    /// Channel name to its subscribers. The map lock is only held to find or add a channel;
    /// writes happen under the channel's own lock.
    channels: RwLock<HashMap<String, Arc<Channel>>>,
    subscribers: AtomicU64,
    published: AtomicU64,
}

/// One channel's subscribers; the lock also serialises publishes to the channel.
type Channel = Mutex<Vec<Subscriber>>;

struct Subscriber {
    stream: TcpStream,
    /// WebSocket frames if true, SSE events otherwise.
    ws: bool,
}

/// Locks a mutex, ignoring poisoning (no lock holder can leave the data inconsistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        let map = self.channels.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    fn subscribe(&self, name: &str, subscriber: Subscriber) {
        let channel = match self.channel(name) {
            Some(channel) => channel,
            None => {
                let mut map = self.channels.write().unwrap_or_else(|e| e.into_inner());
                map.entry(name.to_owned()).or_default().clone()
            }
        };
        lock(&channel).push(subscriber);
        self.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the pre-encoded messages (`count` of them) to every subscriber of `name`,
    /// dropping those whose write fails or times out. Empty channels stay in the map
    /// (channels are few).
    fn publish(&self, name: &str, message: &Encoded, count: u64) {
        if let Some(channel) = self.channel(name) {
            let mut subscribers = lock(&channel);
            let before = subscribers.len();
            subscribers.retain(|s| {
                let bytes: &[u8] = if s.ws { &message.ws } else { &message.sse };
                (&s.stream).write_all(bytes).is_ok()
            });
            let dropped = before - subscribers.len();
            if dropped > 0 {
                self.subscribers
                    .fetch_sub(dropped as u64, Ordering::Relaxed);
            }
        }
        self.published.fetch_add(count, Ordering::Relaxed);
    }
}

/// Messages in both wire forms, each encoded once per publish, appended in publish order.
#[derive(Default)]
struct Encoded {
    sse: Vec<u8>,
    /// Unmasked, final text frames (RFC 6455 §5.2), as the router writes them.
    ws: BytesMut,
}

impl Encoded {
    fn append(&mut self, body: &[u8]) {
        encode_sse(body, &mut self.sse);
        put_frame(&mut self.ws, OpCode::Text, true, false, body);
    }
}

/// Bytes of messages a burst holds before it is written anyway.
const BURST_BYTES_MAX: usize = 256 * 1024;

/// The publishes of one burst not yet written: per channel, in order, and their answers.
/// Buffers are reused from burst to burst.
#[derive(Default)]
struct Burst {
    /// `(channel, messages, count)`; entries past `used` are spare.
    channels: Vec<(String, Encoded, u64)>,
    used: usize,
    answers: Vec<u8>,
    bytes: usize,
}

impl Burst {
    fn add(&mut self, channel: &str, body: &[u8], answer: &[u8]) {
        let i = match self.channels[..self.used]
            .iter()
            .position(|(name, _, _)| name == channel)
        {
            Some(i) => i,
            None => {
                if self.used == self.channels.len() {
                    self.channels.push(Default::default());
                }
                let (name, _, _) = &mut self.channels[self.used];
                name.clear();
                name.push_str(channel);
                self.used += 1;
                self.used - 1
            }
        };
        let (_, messages, count) = &mut self.channels[i];
        messages.append(body);
        *count += 1;
        self.bytes += body.len();
        self.answers.extend_from_slice(answer);
    }

    /// Writes the burst to the subscribers, then its answers to the publisher.
    fn flush(&mut self, server: &Server, publisher: &TcpStream) -> io::Result<()> {
        for (name, messages, count) in &mut self.channels[..self.used] {
            server.publish(name, messages, *count);
            messages.sse.clear();
            messages.ws.clear();
            *count = 0;
        }
        self.used = 0;
        self.bytes = 0;
        let answered = (&*publisher).write_all(&self.answers);
        self.answers.clear();
        answered
    }
}

/// Appends `data: <line>\n` for each line of `body` (split at CRLF, CR or LF, as SSE parsers
/// do), then the blank line that ends the event.
fn encode_sse(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    let mut rest = body;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(b"\ndata: ");
        let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
        rest = &rest[i + if crlf { 2 } else { 1 }..];
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(b"\n\n");
}

/// Why a connection ends early: answer with a status and close, or just close.
#[derive(Debug)]
pub(crate) enum Fail {
    Status(u16),
    /// A WebSocket upgrade refused: its status and the headers the refusal carries.
    Upgrade(HandshakeError),
    Close,
}

impl From<io::Error> for Fail {
    fn from(_: io::Error) -> Self {
        Fail::Close
    }
}

/// Bytes of body that follow the head (a chunked body is refused before it is read).
pub(crate) fn body_len(head: &RequestHead) -> usize {
    match head.body {
        // parse_head holds a declared length to MAX_BODY, so it fits.
        BodyKind::Length(len) => usize::try_from(len).unwrap_or(usize::MAX),
        BodyKind::None | BodyKind::Chunked => 0,
    }
}

/// The request carries a body (or claims to).
fn has_body(head: &RequestHead) -> bool {
    head.body != BodyKind::None
}

/// A channel name: `\w+`, 1 to 64 ASCII letters, digits or underscores.
pub(crate) fn valid_channel(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A connection being read: its socket and a buffer of received, unconsumed bytes.
/// Pipelined requests are taken off the front of the buffer one by one.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// Bytes of `buf` holding received data.
    len: usize,
    /// Requests fully handled on this connection.
    served: u64,
    /// The head at the front of `buf`, already parsed by [`Conn::request_buffered`]: each
    /// head is parsed once.
    parsed: Option<RequestHead>,
}

impl Conn {
    /// Wraps an accepted socket: TCP_NODELAY and a read timeout for request heads.
    pub fn new(stream: TcpStream) -> Conn {
        // Failing to set these only costs latency or a stuck thread; serve anyway.
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        Conn {
            stream,
            buf: vec![0; MAX_HEAD + MAX_BODY].into_boxed_slice(),
            len: 0,
            served: 0,
            parsed: None,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads more bytes into the buffer. A keep-alive connection may sit idle between
    /// requests for as long as it likes; a request that stalls half-way, or a first
    /// request that does not come, ends the connection after the read timeout.
    fn read_more(&mut self) -> Result<usize, Fail> {
        loop {
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(n) => {
                    self.len += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && self.len == 0
                        && self.served > 0 => {}
                Err(_) => return Err(Fail::Close),
            }
        }
    }

    /// Reads the next request head. `Ok(None)` when the peer closed the connection cleanly
    /// between requests.
    ///
    /// # Errors
    /// The status of a head `parse_head` refuses (400, 413, 414, 431, 501), or `Close` when
    /// the connection fails or ends inside a head.
    pub fn next_head(&mut self) -> Result<Option<RequestHead>, Fail> {
        if let Some(head) = self.parsed.take() {
            return Ok(Some(head));
        }
        loop {
            if self.len > 0 {
                match parse_head(&self.buf[..self.len], &LIMITS) {
                    Ok(Status::Complete(head)) => return Ok(Some(head)),
                    Ok(Status::Partial) => {}
                    Err(e) => return Err(Fail::Status(e.status())),
                }
            }
            if self.read_more()? == 0 {
                return if self.len == 0 {
                    Ok(None)
                } else {
                    Err(Fail::Close)
                };
            }
        }
    }

    /// Whether a whole request (head and body) is already buffered, so that serving it will
    /// not wait for the peer. False for a request that will be refused. A complete head is
    /// kept for [`Conn::next_head`].
    fn request_buffered(&mut self) -> bool {
        if self.parsed.is_none() {
            if let Ok(Status::Complete(head)) = parse_head(&self.buf[..self.len], &LIMITS) {
                self.parsed = Some(head);
            }
        }
        self.parsed
            .as_ref()
            .is_some_and(|head| head.head_len + body_len(head) <= self.len)
    }

    /// The body of the request whose head is `head`, read in full. Answers
    /// `Expect: 100-continue` first if the body has not started arriving.
    pub fn body(&mut self, head: &RequestHead) -> Result<&[u8], Fail> {
        let end = head.head_len + body_len(head);
        if end > self.buf.len() {
            return Err(Fail::Status(413));
        }
        if head.expect_continue && self.len < end && self.len == head.head_len {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        while self.len < end {
            if self.read_more()? == 0 {
                return Err(Fail::Close);
            }
        }
        Ok(&self.buf[head.head_len..end])
    }

    /// Drops the handled request (head and body) from the front of the buffer.
    pub fn consume(&mut self, head: &RequestHead) {
        let used = (head.head_len + body_len(head)).min(self.len);
        self.buf.copy_within(used..self.len, 0);
        self.len -= used;
        self.served += 1;
        self.parsed = None;
    }

    /// Answers `fail` (if it has a status) and closes: stops writing, then drains what the
    /// client still sends for a moment, so the close does not reset the connection before
    /// the client has read the answer.
    pub fn refuse(mut self, fail: Fail) {
        let (status, extra) = match fail {
            Fail::Status(status) => (status, &[][..]),
            Fail::Upgrade(e) => (e.status(), e.headers()),
            Fail::Close => return,
        };
        let mut answer = BytesMut::with_capacity(128);
        ResponseHead {
            status,
            content_type: None,
            body: ResponseBody::Length(0),
            keep_alive: false,
            extra,
        }
        .write(&mut answer);
        if self.stream.write_all(&answer).is_err() {
            return;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut drained = 0;
        while drained < MAX_HEAD + MAX_BODY {
            match self.stream.read(&mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// What a request asks for.
enum Route<'a> {
    Subscribe(&'a str),
    Publish(&'a str),
    Stats,
    NotFound,
}

fn route(head: &RequestHead) -> Route<'_> {
    let path = head.path();
    match head.method {
        Method::Get if path == "/stats" => Route::Stats,
        Method::Get => match path.strip_prefix("/sub/") {
            Some(channel) if valid_channel(channel) => Route::Subscribe(channel),
            _ => Route::NotFound,
        },
        Method::Post => match path.strip_prefix("/pub/") {
            Some(channel) if valid_channel(channel) => Route::Publish(channel),
            _ => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// A connection handed over to the registry: its channel, and its wire form.
struct Subscription {
    channel: String,
    ws: bool,
}

/// Runs one connection: publishes and stats requests in a keep-alive loop until the client
/// closes, or one subscription that hands the socket over to the registry.
fn serve_connection(server: &Server, stream: TcpStream) {
    let mut conn = Conn::new(stream);
    let mut burst = Burst::default();
    let served = serve_requests(server, &mut conn, &mut burst);
    // Publishes of a burst cut short by an error are still delivered and answered first.
    if burst.flush(server, conn.stream()).is_err() {
        return;
    }
    match served {
        Ok(None) => {}
        Ok(Some(Subscription { channel, ws })) => {
            let stream = conn.into_stream();
            // Without the timeout one stuck subscriber could hold its publishers forever.
            if stream
                .set_write_timeout(Some(SUBSCRIBER_WRITE_TIMEOUT))
                .is_ok()
            {
                server.subscribe(&channel, Subscriber { stream, ws });
            }
        }
        Err(fail) => conn.refuse(fail),
    }
}

/// Whether the request asks to switch protocols: the WebSocket handshake then decides.
fn asks_upgrade(head: &RequestHead) -> bool {
    head.headers()
        .any(|(name, _)| name.eq_ignore_ascii_case("upgrade"))
}

/// The answer to a subscription: the `101` of a valid WebSocket upgrade, or an SSE `200`.
fn subscribe_answer(head: &RequestHead) -> Result<(BytesMut, bool), Fail> {
    let mut answer = BytesMut::with_capacity(160);
    if asks_upgrade(head) {
        let accepted = handshake::validate(head, false).map_err(Fail::Upgrade)?;
        handshake::put_response(&mut answer, &accepted);
        return Ok((answer, true));
    }
    answer.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
    );
    Ok((answer, false))
}

/// Serves requests until the connection closes (`Ok(None)`) or becomes a subscriber
/// (`Ok(Some(..))`, the response head already written). Publishes gather in `burst` while
/// the next request is already buffered; the caller flushes what is left when this returns.
fn serve_requests(
    server: &Server,
    conn: &mut Conn,
    burst: &mut Burst,
) -> Result<Option<Subscription>, Fail> {
    while let Some(head) = conn.next_head()? {
        let route = route(&head);
        if !matches!(route, Route::Publish(_)) {
            burst.flush(server, conn.stream())?;
        }
        match route {
            Route::Subscribe(channel) => {
                if has_body(&head) {
                    return Err(Fail::Status(400));
                }
                let (answer, ws) = subscribe_answer(&head)?;
                conn.stream().write_all(&answer)?;
                return Ok(Some(Subscription {
                    channel: channel.to_owned(),
                    ws,
                }));
            }
            Route::Publish(channel) => {
                // A body needs its length: chunked publishes are not taken.
                if head.body == BodyKind::Chunked || head.header("content-length").is_none() {
                    return Err(Fail::Status(411));
                }
                let answer: &[u8] = if head.keep_alive {
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                burst.add(channel, conn.body(&head)?, answer);
                conn.consume(&head);
                if !head.keep_alive || burst.bytes > BURST_BYTES_MAX || !conn.request_buffered() {
                    burst.flush(server, conn.stream())?;
                }
            }
            Route::Stats => {
                if has_body(&head) {
                    return Err(Fail::Status(400));
                }
                conn.consume(&head);
                let body = format!(
                    "{{\"subscribers\":{},\"published\":{}}}",
                    server.subscribers.load(Ordering::Relaxed),
                    server.published.load(Ordering::Relaxed)
                );
                let close = if head.keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n{close}\r\n{body}",
                    body.len()
                );
                conn.stream().write_all(answer.as_bytes())?;
            }
            Route::NotFound => return Err(Fail::Status(404)),
        }
        if !head.keep_alive {
            return Ok(None);
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A loopback client with a read timeout, so no test can hang.
    pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        stream
    }

    /// Reads one response head (up to and including the blank line) byte by byte, so that
    /// nothing after it is consumed.
    pub(crate) fn read_head(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("response head");
            head.push(byte[0]);
        }
        String::from_utf8(head).expect("utf-8 head")
    }

    /// Reads one response with a Content-Length body; returns the head and the body.
    pub(crate) fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
        let head = read_head(stream);
        let len = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().expect("length"))
            })
            .expect("a Content-Length");
        let mut body = vec![0; len];
        stream.read_exact(&mut body).expect("response body");
        (head, body)
    }

    /// Everything the server sends until it closes the connection.
    fn read_to_close(stream: &mut TcpStream) -> String {
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Asserts that nothing more arrives within a short while.
    pub(crate) fn assert_silent(stream: &mut TcpStream) {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            other => panic!("expected silence, got {other:?} {byte:?}"),
        }
    }

    fn stats(addr: SocketAddr) -> serde_json::Value {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let (head, body) = read_response(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        serde_json::from_slice(&body).expect("stats json")
    }

    /// Subscribers are registered just after their response head is written: wait for it.
    fn wait_for_subscribers(addr: SocketAddr, n: u64) {
        for _ in 0..500 {
            if stats(addr)["subscribers"] == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("never saw {n} subscribers: {}", stats(addr));
    }

    fn subscribe_sse(addr: SocketAddr, channel: &str) -> TcpStream {
        let mut stream = connect(addr);
        write!(stream, "GET /sub/{channel} HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/event-stream\r\n"),
            "{head}"
        );
        stream
    }

    fn subscribe_ws(addr: SocketAddr, channel: &str) -> TcpStream {
        let mut stream = connect(addr);
        write!(
            stream,
            "GET /sub/{channel} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .expect("write");
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        // The example of RFC 6455 §1.3.
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        stream
    }

    fn publish_request(channel: &str, body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "POST /pub/{channel} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    }

    fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        stream.read_exact(&mut got).expect("subscriber data");
        got
    }

    #[test]
    fn sse_encoding_prefixes_every_line() {
        let mut out = Vec::new();
        encode_sse(b"hi", &mut out);
        assert_eq!(out, b"data: hi\n\n");
        out.clear();
        encode_sse(b"a\nb\r\nc\rd", &mut out);
        assert_eq!(out, b"data: a\ndata: b\ndata: c\ndata: d\n\n");
        // Appended after what the buffer holds (a burst's earlier messages).
        encode_sse(b"", &mut out);
        assert_eq!(out, b"data: a\ndata: b\ndata: c\ndata: d\n\ndata: \n\n");
    }

    /// The frames subscribers receive: byte for byte what the hand-written encoder wrote
    /// before the router's `put_frame` took over, at every length boundary.
    #[test]
    fn ws_frames_use_the_shortest_length() {
        for (len, header) in [
            (0usize, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65535, vec![0x81, 126, 0xff, 0xff]),
            (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let body = vec![b'x'; len];
            let mut encoded = Encoded::default();
            encoded.append(&body);
            assert_eq!(&encoded.ws[..header.len()], &header[..], "length {len}");
            assert_eq!(&encoded.ws[header.len()..], &body[..], "length {len}");
        }
        // A burst's messages follow one another.
        let mut encoded = Encoded::default();
        encoded.append(b"a");
        encoded.append(b"bc");
        assert_eq!(&encoded.ws[..], [0x81, 1, b'a', 0x81, 2, b'b', b'c']);
        assert_eq!(encoded.sse, b"data: a\n\ndata: bc\n\n");
    }

    #[test]
    fn channel_names_are_word_characters() {
        assert!(valid_channel("abc_123"));
        assert!(valid_channel(&"a".repeat(64)));
        assert!(!valid_channel(&"a".repeat(65)));
        assert!(!valid_channel(""));
        assert!(!valid_channel("a-b"));
        assert!(!valid_channel("a/b"));
    }

    #[test]
    fn delivers_pipelined_publishes_to_sse_and_ws_in_order() {
        let addr = start("127.0.0.1:0".parse().unwrap(), 2).expect("start");
        let mut sse = subscribe_sse(addr, "room");
        let mut ws = subscribe_ws(addr, "room");
        let mut other = subscribe_sse(addr, "other");
        wait_for_subscribers(addr, 3);

        // Two publishes in one write; the second is the largest body allowed (64-bit length).
        let big = vec![b'x'; MAX_BODY];
        let mut publisher = connect(addr);
        let mut requests = publish_request("room", b"hello");
        requests.extend(publish_request("room", &big));
        publisher.write_all(&requests).expect("publish");

        let mut want_sse = b"data: hello\n\n".to_vec();
        want_sse.extend_from_slice(b"data: ");
        want_sse.extend_from_slice(&big);
        want_sse.extend_from_slice(b"\n\n");
        assert_eq!(read_exactly(&mut sse, want_sse.len()), want_sse);

        let mut want_ws = vec![0x81, 5];
        want_ws.extend_from_slice(b"hello");
        want_ws.extend_from_slice(&[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        want_ws.extend_from_slice(&big);
        assert_eq!(read_exactly(&mut ws, want_ws.len()), want_ws);

        let accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        let answers = read_exactly(&mut publisher, 2 * accepted.len());
        assert_eq!(answers, [&accepted[..], &accepted[..]].concat());

        assert_silent(&mut sse);
        assert_silent(&mut ws);
        assert_silent(&mut other);
        assert_silent(&mut publisher);
        assert_eq!(stats(addr)["published"], 2);
    }

    #[test]
    fn a_burst_over_two_channels_keeps_each_channels_order_and_answers_before_a_refusal() {
        let addr = start("127.0.0.1:0".parse().unwrap(), 1).expect("start");
        let mut room = subscribe_sse(addr, "room");
        let mut other = subscribe_ws(addr, "other");
        wait_for_subscribers(addr, 2);

        let mut publisher = connect(addr);
        let mut requests = Vec::new();
        for (channel, body) in [("room", "a"), ("other", "b"), ("room", "c"), ("other", "d")] {
            requests.extend(publish_request(channel, body.as_bytes()));
        }
        requests.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
        publisher.write_all(&requests).expect("publish");

        let want = b"data: a\n\ndata: c\n\n";
        assert_eq!(read_exactly(&mut room, want.len()), want);
        let want = [0x81, 1, b'b', 0x81, 1, b'd'];
        assert_eq!(read_exactly(&mut other, want.len()), want);
        let accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        let answers = read_exactly(&mut publisher, 4 * accepted.len());
        assert_eq!(answers, accepted.repeat(4));
        let (head, _) = read_response(&mut publisher);
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        assert_silent(&mut room);
        assert_silent(&mut other);
        assert_eq!(stats(addr)["published"], 4);
    }

    #[test]
    fn bad_requests_are_refused_without_disturbing_others() {
        let addr = start("127.0.0.1:0".parse().unwrap(), 1).expect("start");
        let mut sub = subscribe_sse(addr, "ch");
        wait_for_subscribers(addr, 1);

        let long_header = format!(
            "GET /stats HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(MAX_HEAD));
        let many_headers = format!(
            "GET /stats HTTP/1.1\r\nHost: t\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS)
        );
        let cases: [(&[u8], &str); 15] = [
            (b"\x00\x01 garbage\r\n\r\n", "400"),
            (long_header.as_bytes(), "431"),
            (long_target.as_bytes(), "414"),
            (many_headers.as_bytes(), "431"),
            // The router's parser is as strict here: HTTP/1.1 needs one Host, lines end in CRLF.
            (b"GET /stats HTTP/1.1\r\n\r\n", "400"),
            (b"GET /stats HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
            (b"GET /stats HTTP/1.1\nHost: t\n\n", "400"),
            (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
            (b"GET /sub/bad-name HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
            (b"DELETE /pub/ch HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
            (b"POST /pub/ch HTTP/1.1\r\nHost: t\r\n\r\n", "411"),
            (
                b"POST /pub/ch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "411",
            ),
            (
                b"POST /pub/ch HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\r\n",
                "413",
            ),
            // A WebSocket upgrade without a key, and one that is not an upgrade.
            (
                b"GET /sub/ch HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
                "400",
            ),
            (
                b"GET /sub/ch HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
                "426",
            ),
        ];
        for (request, status) in cases {
            let mut client = connect(addr);
            client.write_all(request).expect("write");
            let answer = read_to_close(&mut client);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{:?} got {answer:?}",
                String::from_utf8_lossy(request)
            );
        }

        let mut publisher = connect(addr);
        publisher
            .write_all(&publish_request("ch", b"still here"))
            .expect("publish");
        let (head, _) = read_response(&mut publisher);
        assert!(head.starts_with("HTTP/1.1 202 "), "{head}");
        assert_eq!(read_exactly(&mut sub, 18), b"data: still here\n\n");
        assert_silent(&mut sub);
        let stats = stats(addr);
        assert_eq!(stats["subscribers"], 1);
        assert_eq!(stats["published"], 1);
    }

    #[test]
    fn http10_publishes_are_answered_and_closed() {
        let addr = start("127.0.0.1:0".parse().unwrap(), 1).expect("start");
        let mut ws = subscribe_ws(addr, "old");
        wait_for_subscribers(addr, 1);
        let mut publisher = connect(addr);
        publisher
            .write_all(b"POST /pub/old HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
            .expect("publish");
        let answer = read_to_close(&mut publisher);
        assert_eq!(
            answer,
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(read_exactly(&mut ws, 4), [0x81, 2, b'h', b'i']);
        assert_silent(&mut ws);
    }

    #[test]
    fn closed_subscribers_are_dropped_on_publish() {
        let addr = start("127.0.0.1:0".parse().unwrap(), 1).expect("start");
        drop(subscribe_ws(addr, "gone"));
        wait_for_subscribers(addr, 1);
        let mut publisher = connect(addr);
        // The first write to a closed peer may still succeed; a later one fails.
        for _ in 0..100 {
            publisher
                .write_all(&publish_request("gone", b"x"))
                .expect("publish");
            read_response(&mut publisher);
            if stats(addr)["subscribers"] == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the closed subscriber was never dropped");
    }
}
