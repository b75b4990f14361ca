//! Chaos-test support: a seeded xorshift generator, a tunnel client (SSE or WebSocket) that reads
//! raw bytes in sizes of the caller's choosing so it can be dropped in the middle of a datagram,
//! and the history checker that accounts for every acknowledged datagram.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use router::wire::http1::chunked::{ChunkedDecoder, Decoded};
use router::wire::websocket::decoder::{Decoder, Message, Role};
use router::wire::websocket::frame::put_masked_frame;
use router::wire::websocket::{Limits, OpCode};
use serde_json::Value;

/// xorshift64*: tiny, seeded, good enough to pick sizes and delays.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift never leaves 0; mix the seed so nearby seeds differ at once.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An independent generator for a worker thread.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// The seed of a chaos test: `CHAOS_SEED` when set (to replay a failure), else the clock. It is
/// printed so that a failing run can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: seed {seed} (replay with CHAOS_SEED={seed})");
    seed
}

/// Microseconds since the first call in this process: a clock the publisher and the readers of
/// one test process share.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// The `p`-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [u64], p: f64) -> u64 {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// A tunnel's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sse,
    Ws,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }
}

/// One thing a tunnel delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The `tunnel` control datagram.
    Control {
        tunnel: String,
        new: bool,
    },
    /// A datagram: its id and its `data`.
    Datagram {
        id: String,
        data: Value,
    },
    Gap,
    Keepalive,
}

impl Item {
    fn parse(json: &[u8]) -> Item {
        let v: Value = serde_json::from_slice(json)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(json)));
        match v["type"].as_str() {
            Some("tunnel") => Item::Control {
                tunnel: v["tunnel"].as_str().expect("tunnel id").to_string(),
                new: v["new"].as_bool().expect("new"),
            },
            Some("gap") => Item::Gap,
            Some("keepalive") => Item::Keepalive,
            Some(other) => panic!("unexpected control datagram {other}: {v}"),
            None => Item::Datagram {
                id: v["id"].as_str().expect("datagram id").to_string(),
                data: v["data"].clone(),
            },
        }
    }
}

/// How a client drops its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// `close(2)`: a FIN after whatever the kernel still holds.
    Close,
    /// `shutdown(SHUT_RDWR)`, then close.
    Shutdown,
    /// `SO_LINGER` 0, then close: an RST, unread data discarded.
    Reset,
}

impl Cut {
    pub fn pick(rng: &mut Rng) -> Cut {
        [Cut::Close, Cut::Shutdown, Cut::Reset][rng.below(3) as usize]
    }
}

/// A tunnel connection over SSE or WebSocket, decoded from raw bytes as they are read.
pub struct Tunnel {
    pub stream: TcpStream,
    pub transport: Transport,
    /// Bytes read and not yet decoded (HTTP chunks, WebSocket frames).
    raw: BytesMut,
    /// SSE: the de-chunked body not yet split into events.
    body: BytesMut,
    chunked: ChunkedDecoder,
    ws: Decoder,
    items: VecDeque<Item>,
    /// The server ended the body (last chunk, WebSocket close) or closed the connection.
    pub ended: bool,
    masks: u32,
}

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The request that opens `GET /tunnel?<query>` over `transport` (`format=` is added).
pub fn tunnel_request(transport: Transport, query: &str) -> String {
    let target = format!("/tunnel?format={}&{query}", transport.name());
    match transport {
        Transport::Sse => format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"),
        Transport::Ws => format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    }
}

impl Tunnel {
    /// Connects and sends the request for `query`, without reading anything.
    pub fn request(
        addr: SocketAddr,
        transport: Transport,
        query: &str,
        rcvbuf_bytes: Option<usize>,
    ) -> io::Result<TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        if let Some(bytes) = rcvbuf_bytes {
            // Before connect, so the window the client advertises is small from the start.
            socket.set_recv_buffer_size(bytes)?;
        }
        socket.connect(&addr.into())?;
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(super::WAIT))?;
        stream.set_nodelay(true)?;
        stream.write_all(tunnel_request(transport, query).as_bytes())?;
        Ok(stream)
    }

    /// Opens the tunnel and reads its response head (200 for SSE, 101 for WebSocket).
    pub fn open(addr: SocketAddr, transport: Transport, query: &str) -> io::Result<Tunnel> {
        Tunnel::open_with(addr, transport, query, None)
    }

    pub fn open_with(
        addr: SocketAddr,
        transport: Transport,
        query: &str,
        rcvbuf_bytes: Option<usize>,
    ) -> io::Result<Tunnel> {
        let stream = Tunnel::request(addr, transport, query, rcvbuf_bytes)?;
        Tunnel::after_request(stream, transport)
    }

    /// Reads the response head of a request already sent on `stream`.
    pub fn after_request(mut stream: TcpStream, transport: Transport) -> io::Result<Tunnel> {
        let mut raw = BytesMut::new();
        let mut buf = [0u8; 1024];
        let end = loop {
            if let Some(pos) = super::find(&raw, b"\r\n\r\n") {
                break pos;
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(ErrorKind::UnexpectedEof, "no response head"));
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = raw.split_to(end + 4);
        let status = std::str::from_utf8(&head)
            .ok()
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let expected = if transport == Transport::Ws { 101 } else { 200 };
        assert_eq!(
            status,
            expected,
            "tunnel refused: {:?}",
            String::from_utf8_lossy(&head)
        );
        let limits = Limits {
            frame_bytes_max: 1 << 24,
            message_bytes_max: 1 << 24,
        };
        let mut tunnel = Tunnel {
            stream,
            transport,
            raw,
            body: BytesMut::new(),
            chunked: ChunkedDecoder::new(usize::MAX),
            ws: Decoder::new(Role::Client, limits, None),
            items: VecDeque::new(),
            ended: false,
            masks: 0,
        };
        // The first bytes of the body may have come with the head.
        tunnel.decode()?;
        Ok(tunnel)
    }

    /// One read of at most `max` bytes; decodes whatever is complete. `Ok(0)` at the end.
    pub fn read_some(&mut self, max: usize) -> io::Result<usize> {
        let mut buf = vec![0u8; max.max(1)];
        let n = loop {
            match self.stream.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            self.ended = true;
        }
        self.raw.extend_from_slice(&buf[..n]);
        self.decode()?;
        Ok(n)
    }

    /// True when bytes of an incomplete record (chunk, frame or event) are held: a drop now is
    /// a drop in the middle of a datagram.
    pub fn mid_record(&self) -> bool {
        !self.raw.is_empty() || !self.body.is_empty()
    }

    fn decode(&mut self) -> io::Result<()> {
        let bad = |what: String| io::Error::new(ErrorKind::InvalidData, what);
        match self.transport {
            Transport::Sse => {
                if !self.ended || !self.raw.is_empty() {
                    match self.chunked.decode(&mut self.raw, &mut self.body) {
                        Ok(Decoded::Done) => self.ended = true,
                        Ok(Decoded::NeedMore) => {}
                        Err(e) => return Err(bad(format!("bad chunked body: {e:?}"))),
                    }
                }
                while let Some(pos) = super::find(&self.body, b"\n\n") {
                    let event = self.body.split_to(pos + 2);
                    let text = std::str::from_utf8(&event[..pos])
                        .map_err(|_| bad("SSE event is not UTF-8".into()))?;
                    let data = text.lines().find_map(|l| l.strip_prefix("data: "));
                    match data {
                        Some(json) => self.items.push_back(Item::parse(json.as_bytes())),
                        None if text == ":" => self.items.push_back(Item::Keepalive),
                        None => return Err(bad(format!("unexpected SSE event {text:?}"))),
                    }
                }
            }
            Transport::Ws => loop {
                match self.ws.decode(&mut self.raw) {
                    Ok(Some(Message::Text(t))) => self.items.push_back(Item::parse(&t)),
                    Ok(Some(Message::Ping(payload))) => {
                        self.masks = self.masks.wrapping_add(1);
                        let mask = (self.masks.wrapping_mul(0x9E37_79B9)).to_be_bytes();
                        let mut out = BytesMut::new();
                        put_masked_frame(&mut out, OpCode::Pong, true, false, mask, &payload);
                        // A client being dropped may fail to answer: that is the point.
                        let _ = self.stream.write_all(&out);
                    }
                    Ok(Some(Message::Close(_))) => {
                        self.ended = true;
                        break;
                    }
                    Ok(Some(other)) => return Err(bad(format!("unexpected frame {other:?}"))),
                    Ok(None) => break,
                    Err(e) => return Err(bad(format!("bad frame: {e}"))),
                }
            },
        }
        Ok(())
    }

    /// The next decoded item, reading as needed; `Ok(None)` when the stream ended first.
    pub fn next(&mut self) -> io::Result<Option<Item>> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            self.read_some(16 * 1024)?;
        }
    }

    /// The undecoded bytes held, for a failure message.
    pub fn debug_pending(&self) -> String {
        format!(
            "raw {:?}, body {:?}, items {:?}",
            String::from_utf8_lossy(&self.raw),
            String::from_utf8_lossy(&self.body),
            self.items
        )
    }

    /// An item already decoded, without reading.
    pub fn pop(&mut self) -> Option<Item> {
        self.items.pop_front()
    }

    /// Reads and expects the control datagram; returns `(tunnel, new)`.
    pub fn control(&mut self) -> (String, bool) {
        match self.next().expect("control datagram") {
            Some(Item::Control { tunnel, new }) => (tunnel, new),
            other => panic!("expected the tunnel datagram, got {other:?}"),
        }
    }

    /// Cuts the connection the way `how` says.
    pub fn cut(self, how: Cut) {
        cut_stream(self.stream, how);
    }
}

/// Cuts `stream` the way `how` says.
pub fn cut_stream(stream: TcpStream, how: Cut) {
    match how {
        Cut::Close => {}
        Cut::Shutdown => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Cut::Reset => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    }
}

/// What one client saw, in order, over all its attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A new attachment began (its control datagram arrived).
    Attach,
    Datagram(String),
    Gap,
}

/// The accounting of one client's history against the acknowledged publishes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged datagrams delivered once.
    pub delivered: u64,
    /// Acknowledged datagrams never delivered, right behind a gap marker.
    pub behind_gap: u64,
    pub gap_markers: u64,
    /// Gap markers after which nothing was missing.
    pub gaps_without_loss: u64,
    pub duplicates: u64,
    /// Datagrams that arrived after a later one (the router keeps one publisher's order).
    pub reordered: u64,
    /// Acknowledged datagrams missing with no gap marker in front of the hole.
    pub silent_losses: u64,
    /// Delivered ids nobody acknowledged.
    pub unknown: u64,
}

impl Verdict {
    pub fn add(&mut self, o: &Verdict) {
        self.delivered += o.delivered;
        self.behind_gap += o.behind_gap;
        self.gap_markers += o.gap_markers;
        self.gaps_without_loss += o.gaps_without_loss;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.silent_losses += o.silent_losses;
        self.unknown += o.unknown;
    }

    /// Every acknowledged datagram accounted for, nothing twice, nothing invented.
    pub fn clean(&self) -> bool {
        self.duplicates == 0 && self.reordered == 0 && self.silent_losses == 0 && self.unknown == 0
    }
}

/// Checks one client's history: `published` are the acknowledged ids, in publish order (one
/// publisher on one path, so every tunnel receives them in that order), all published after
/// the client's tunnel subscribed; `seen` ends after the client received the last of them.
///
/// A hole in the sequence is allowed only right behind a gap marker of the same attachment:
/// the router sends the marker in front of the oldest datagrams it still holds.
pub fn check(published: &[String], seen: &[Seen]) -> Verdict {
    let index: HashMap<&str, usize> = published
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut delivered = vec![false; published.len()];
    let mut verdict = Verdict::default();
    // The next acknowledged datagram expected in order.
    let mut next = 0usize;
    let mut gap_pending = false;
    for event in seen {
        match event {
            Seen::Attach => gap_pending = false,
            Seen::Gap => {
                verdict.gap_markers += 1;
                gap_pending = true;
            }
            Seen::Datagram(id) => {
                let Some(&at) = index.get(id.as_str()) else {
                    verdict.unknown += 1;
                    continue;
                };
                if delivered[at] {
                    verdict.duplicates += 1;
                    continue;
                }
                delivered[at] = true;
                verdict.delivered += 1;
                if at < next {
                    verdict.reordered += 1;
                    continue;
                }
                let skipped = (at - next) as u64;
                match (skipped, gap_pending) {
                    (0, true) => verdict.gaps_without_loss += 1,
                    (0, false) => {}
                    (n, true) => verdict.behind_gap += n,
                    (n, false) => verdict.silent_losses += n,
                }
                gap_pending = false;
                next = at + 1;
            }
        }
    }
    // Whatever never came after the last delivery is lost without a word.
    verdict.silent_losses += (published.len() - next) as u64;
    verdict
}

/// Checks the checker on hand-made histories (run by the chaos tests).
pub fn self_test() {
    let ids: Vec<String> = (0..6).map(|i| format!("0-{i}")).collect();
    let d = |i: usize| Seen::Datagram(ids[i].clone());
    let all: Vec<Seen> = std::iter::once(Seen::Attach).chain((0..6).map(d)).collect();
    assert_eq!(
        check(&ids, &all),
        Verdict {
            delivered: 6,
            ..Verdict::default()
        }
    );
    // A hole behind a gap marker of a re-attachment is accounted for.
    let gapped = [
        Seen::Attach,
        d(0),
        Seen::Attach,
        Seen::Gap,
        d(3),
        d(4),
        d(5),
    ];
    let v = check(&ids, &gapped);
    assert_eq!((v.delivered, v.behind_gap, v.gap_markers), (4, 2, 1));
    assert!(v.clean());
    // The same hole without a marker is a silent loss, and so is a missing tail.
    let silent = [Seen::Attach, d(0), Seen::Attach, d(3), d(4)];
    let v = check(&ids, &silent);
    assert_eq!(v.silent_losses, 3);
    assert!(!v.clean());
    // A marker does not excuse a hole in a later attachment.
    let stale = [Seen::Attach, Seen::Gap, Seen::Attach, d(2)];
    assert_eq!(check(&ids, &stale).silent_losses, 2 + 3);
    // Twice the same id, an id nobody published.
    let dup = [
        Seen::Attach,
        d(0),
        d(1),
        Seen::Attach,
        d(1),
        Seen::Datagram("9-9".into()),
    ];
    let v = check(&ids[..2], &dup);
    assert_eq!((v.duplicates, v.unknown, v.silent_losses), (1, 1, 0));
}
