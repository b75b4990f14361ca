//! `GET /tunnel`: opening and re-attaching tunnels, then serving them as a stream (SSE, NUL,
//! NDJSON, iframe, custom formats) or as a long-poll (JSON, JSONP).

use crate::limits::STREAM_BATCH_BYTES;
use bytes::{BufMut, BytesMut};
use monoio::net::TcpStream;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::conn::{owner, Answer, Next, Owner, Params};
use crate::metrics::Metrics;
use crate::net::reply::Persist;
use crate::net::request::Request;
use crate::net::sock::send_all;
use crate::pubsub::Pattern;
use crate::refusal::Refusal;
use crate::shard::Shard;
use crate::tunnel::{Attention, IdText, Kick, TunnelId};
use crate::wire::datagram::{self, Datagram, GAP};
use crate::wire::format::{Envelope, Format, IFRAME_CALLBACK_DEFAULT};
use crate::wire::http1::{ResponseBody, ResponseHead};
use crate::wire::websocket::handshake;

/// `recycle_left` of a stream that is never recycled.
const NEVER_RECYCLED: u64 = u64::MAX;

/// Headers of streaming answers: never cached, never buffered by proxies (nginx honours
/// `X-Accel-Buffering`), usable cross-origin.
const STREAM_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
    ("Access-Control-Allow-Origin", "*"),
    ("X-Content-Type-Options", "nosniff"),
];

/// Handles `GET /tunnel?format=F[&id=ID&last=DID][&path=P...][&cb=CB][&ttl=MS]`.
pub async fn open(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    let shard = answer.shard.clone();
    let config = shard.config();
    // `format=ws`, or any `GET /tunnel` carrying upgrade headers, is a WebSocket tunnel.
    let websocket = params.get("format") == Some("ws") || handshake::is_upgrade(&request.head);
    let upgrade = if websocket {
        match handshake::validate(&request.head, config.websocket_deflate) {
            Ok(accepted) => Some(accepted),
            Err(e) => return super::websocket::refuse(answer, e).await,
        }
    } else {
        None
    };
    let format = match params.get("format") {
        _ if websocket => Format::Ndjson,
        None => return answer.refuse(Refusal::MissingFormat).await,
        Some(name) => match shard.shared.formats.get(name) {
            Some(format) => format,
            None => return answer.refuse(Refusal::UnknownFormat).await,
        },
    };
    if matches!(format, Format::Jsonp) && answer.cb.is_none() {
        return answer.refuse(Refusal::JsonpNeedsCallback).await;
    }
    if matches!(format, Format::Custom(_)) && format.uses_callback() && answer.cb.is_none() {
        return answer.refuse(Refusal::FormatNeedsCallback).await;
    }
    let mut patterns = Vec::new();
    for text in params.all("path") {
        match Pattern::parse(text) {
            Ok(p) if p.touches_private() => return answer.refuse(Refusal::PrivatePath).await,
            Ok(p) => patterns.push(p),
            Err(e) => return answer.refuse(Refusal::from(e)).await,
        }
    }
    if patterns.len() > config.subscriptions_per_tunnel_max {
        return answer.refuse(Refusal::TooManySubscriptions).await;
    }
    let ttl_ms = match params.get("ttl").map(str::parse::<u64>) {
        None => config.longpoll_ttl_ms_default,
        Some(Ok(ttl)) => ttl.min(config.longpoll_ttl_ms_max),
        Some(Err(_)) => return answer.refuse(Refusal::BadTtl).await,
    };
    let last_event_id = request
        .head
        .header("last-event-id")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim);
    // The header wins: an EventSource reconnects to its original URL (which may carry an old
    // `last`) with the id of the last event it really received in the header.
    let last = last_event_id
        .filter(|l| !l.is_empty())
        .or(params.get("last").filter(|l| !l.is_empty()));

    // Re-attach to an existing tunnel, or open a new one.
    let existing = match params.get("id").map(|id| owner(&shard, id)) {
        Some(Owner::Remote(to)) => {
            return Next::Handoff(to, super::conn::clone_request(request));
        }
        Some(Owner::Local(id)) if shard.tunnel_exists(&id) => Some(id),
        Some(Owner::Local(_)) | Some(Owner::Nowhere) | None => None,
    };
    let (id, new) = match existing {
        Some(id) => (id, false),
        None => match shard.create_tunnel() {
            Ok(id) => (id, true),
            Err(e) => return answer.refuse(Refusal::from(e)).await,
        },
    };
    for pattern in &patterns {
        if let Err(e) = shard.subscribe(&id, pattern) {
            return answer.refuse(Refusal::from(e)).await;
        }
    }
    let id_text = id.text();
    // A new tunnel starts after everything published before it opened: `last` means nothing.
    // `last` equal to the tunnel's own id: the client has processed no datagram yet, so
    // whatever was written to a connection that broke before must be written again.
    let gap = if new {
        false
    } else if last == Some(id_text.as_str()) {
        shard.with_tunnel(&id, |t| t.seek_start()).unwrap_or(false)
    } else {
        shard
            .with_tunnel(&id, |t| t.seek(last.map(str::as_bytes)))
            .unwrap_or(false)
    };
    let cb = Callback::new(match (&format, answer.cb.take()) {
        (Format::Iframe, None) => Some(IFRAME_CALLBACK_DEFAULT.to_owned()),
        (_, cb) => cb,
    });
    let control = datagram::tunnel_control(id_text.as_str(), new, config.keepalive_ms);
    let token = shard.next_token();
    if let Some(accepted) = upgrade {
        let attached = Attached {
            id,
            token,
            persist: Persist::CLOSE,
            cb,
            mode: Mode::WebSocket(super::websocket::WsState::new(accepted.deflate)),
        };
        attached
            .start_websocket(&shard, answer.stream, &accepted, &control, gap)
            .await
    } else if format.is_stream() {
        let http10 = answer.persist.http10;
        // HTTP/1.0 streams are close-delimited: the connection ends with them.
        let persist = Persist {
            keep_alive: !http10 && answer.persist.keep_alive,
            http10,
        };
        let attached = Attached {
            id,
            token,
            persist,
            cb,
            mode: Mode::Stream {
                recycle_left: match config.recycle_bytes_for(format.name()) {
                    0 => NEVER_RECYCLED,
                    bytes => bytes,
                },
                format,
                chunked: !http10,
            },
        };
        attached
            .start_stream(&shard, answer.stream, &control, gap)
            .await
    } else {
        let attached = Attached {
            id,
            token,
            persist: answer.persist,
            cb,
            mode: Mode::Poll {
                jsonp: matches!(format, Format::Jsonp),
            },
        };
        if new {
            attached
                .answer_poll(&shard, answer.stream, &[&control[..]])
                .await
        } else if gap {
            attached.answer_poll(&shard, answer.stream, &[GAP]).await
        } else if shard.with_tunnel(&id, |t| t.has_unsent()) == Some(true) {
            attached.answer_poll(&shard, answer.stream, &[]).await
        } else {
            // Park: the connection loop waits for datagrams, the ttl or the peer.
            shard.attach(&id, token);
            shard.set_deadline(&id, token, shard.now_ms() + ttl_ms);
            Next::Attached(Box::new(attached))
        }
    }
}

/// A connection attached to a tunnel, waiting for it. This is all an idle tunnel's connection
/// holds: no buffers, no per-connection timer (the shard's timer task fires the deadline).
pub struct Attached {
    pub(super) id: TunnelId,
    pub(super) token: u64,
    /// Whether the connection stays open after the attachment ends, and whether the client
    /// speaks HTTP/1.0 (close-delimited streams; keep-alive acknowledged explicitly).
    pub(super) persist: Persist,
    pub(super) cb: Callback,
    pub(super) mode: Mode,
}

/// A JSONP or iframe callback name. Every attachment carries one and most have none, so it is
/// a thin pointer: 8 bytes, and nothing allocated when absent.
pub(super) struct Callback(
    #[allow(
        clippy::box_collection,
        reason = "a thin pointer keeps idle tunnels small"
    )]
    Option<Box<String>>,
);

impl Callback {
    fn new(name: Option<String>) -> Callback {
        Callback(name.filter(|n| !n.is_empty()).map(Box::new))
    }

    pub(super) fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", String::as_str)
    }
}

pub(super) enum Mode {
    WebSocket(super::websocket::WsState),
    Stream {
        format: Format,
        chunked: bool,
        /// Payload bytes the stream may still carry before it ends so that the client opens a
        /// fresh one (`stream_recycle_bytes`); [`NEVER_RECYCLED`] when it is not recycled.
        recycle_left: u64,
    },
    Poll {
        jsonp: bool,
    },
}

/// What woke an attached connection.
pub(super) enum Event {
    /// The tunnel: datagrams queued, a deadline passed, or the attachment must go.
    Tunnel(Result<Attention, Kick>),
    /// The peer sent something or closed.
    Peer,
}

/// The future of [`Attached::wait`]: written out rather than an async fn, whose state would
/// hold its arguments twice.
pub(super) struct Wait<'a, F> {
    attached: &'a Attached,
    shard: &'a Shard,
    /// The socket's readiness poll; the caller re-arms it once it has fired.
    peer: Pin<&'a mut F>,
}

impl<F: Future<Output = std::io::Result<()>>> Future for Wait<'_, F> {
    type Output = Event;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Event> {
        let attached = self.attached;
        match self
            .shard
            .poll_attachment(&attached.id, attached.token, cx.waker())
        {
            Ok(Attention::Idle) => {}
            other => return Poll::Ready(Event::Tunnel(other)),
        }
        self.peer.as_mut().poll(cx).map(|_| Event::Peer)
    }
}

/// What an attached connection does after an event.
pub(super) enum Step {
    /// Wait for the next event.
    Wait,
    /// The attachment is over.
    End(Next),
}

/// Counts an attachment told to go, by reason.
pub(super) fn count_kick(shard: &Shard, kick: Kick) {
    let counter = match kick {
        Kick::SlowConsumer => &shard.metrics.slow_consumer,
        Kick::Replaced => &shard.metrics.replaced,
        Kick::Stopping => &shard.metrics.closed_by_stop,
    };
    Metrics::add(counter, 1);
}

/// `future`, given at most `limit`; boxed so the rarely needed timer costs nothing while idle.
pub(super) fn bounded<'a, F: std::future::Future + 'a>(
    limit: Duration,
    future: F,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<F::Output, monoio::time::error::Elapsed>> + 'a>,
> {
    Box::pin(monoio::time::timeout(limit, future))
}

/// Resolves when attachment `token` is told to go (replacement or slow consumer).
pub(super) async fn kicked(shard: &Shard, id: &TunnelId, token: u64) -> Kick {
    poll_fn(|cx| match shard.poll_kick(id, token, cx.waker()) {
        Some(kick) => Poll::Ready(kick),
        None => Poll::Pending,
    })
    .await
}

/// Frames stream output as HTTP chunks (or raw bytes for close-delimited HTTP/1.0 answers).
/// The chunk-size field is written fixed-width so the size can be filled in after the payload
/// (leading zeros are valid chunk-size syntax).
const CHUNK_PREFIX_BYTES: usize = 10;

fn chunk_begin(chunked: bool, out: &mut BytesMut) -> usize {
    let start = out.len();
    if chunked {
        out.put_slice(b"00000000\r\n");
    }
    start
}

fn chunk_end(chunked: bool, out: &mut BytesMut, start: usize) {
    if !chunked {
        return;
    }
    let payload = out.len() - start - CHUNK_PREFIX_BYTES;
    if payload == 0 {
        out.truncate(start);
        return;
    }
    let size = format!("{payload:08x}");
    if let Some(field) = out.get_mut(start..start + 8) {
        field.copy_from_slice(size.as_bytes());
    }
    out.put_slice(b"\r\n");
}

impl Attached {
    /// What formats interpolate; `tunnel` is the id's text (see [`TunnelId::text`]).
    fn env<'a>(&'a self, tunnel: &'a IdText) -> Envelope<'a> {
        Envelope {
            cb: self.cb.as_str(),
            tunnel: tunnel.as_str(),
        }
    }

    /// Writes the stream's response head, format header, tunnel datagram (and gap), attaches,
    /// and hands the rest to the connection loop.
    async fn start_stream(
        self,
        shard: &Shard,
        stream: &TcpStream,
        control: &[u8],
        gap: bool,
    ) -> Next {
        let Mode::Stream {
            format, chunked, ..
        } = &self.mode
        else {
            return Next::Close;
        };
        let tunnel = self.id.text();
        let env = self.env(&tunnel);
        let mut out = BytesMut::with_capacity(2048);
        ResponseHead {
            status: 200,
            content_type: Some(format.content_type()),
            body: if *chunked {
                ResponseBody::Chunked
            } else {
                ResponseBody::CloseDelimited
            },
            keep_alive: self.persist.keep_alive,
            extra: STREAM_HEADERS,
        }
        .write(&mut out);
        let start = chunk_begin(*chunked, &mut out);
        format.put_header(&mut out, &env);
        format.put_datagram(&mut out, control, None, &env);
        if gap {
            format.put_datagram(&mut out, GAP, None, &env);
        }
        chunk_end(*chunked, &mut out, start);
        self.attach_with(shard, stream, out).await
    }

    /// Attaches, writes the opening bytes `out`, arms the first keepalive, and hands the rest to
    /// the connection loop (detaching again if the write fails).
    pub(super) async fn attach_with(
        self,
        shard: &Shard,
        stream: &TcpStream,
        out: BytesMut,
    ) -> Next {
        shard.attach(&self.id, self.token);
        if !send_all(stream, out).await {
            shard.detach(&self.id, self.token);
            return Next::Close;
        }
        self.arm_keepalive(shard);
        Next::Attached(Box::new(self))
    }

    /// Waits for the tunnel or for `peer`, the socket's readiness poll. The connection keeps
    /// that poll armed across events (see [`super::sock`]); the tunnel's state (queue, deadline,
    /// kick) lives in the shard, which wakes the connection through its waker.
    pub(super) fn wait<'a, F>(&'a self, shard: &'a Shard, peer: Pin<&'a mut F>) -> Wait<'a, F> {
        Wait {
            attached: self,
            shard,
            peer,
        }
    }

    pub(super) fn is_websocket(&self) -> bool {
        matches!(self.mode, Mode::WebSocket(_))
    }

    /// Handles one event; boxed, so it costs nothing while the attachment waits. The caller
    /// detaches once the attachment ends.
    pub(super) fn step<'a>(
        &'a mut self,
        shard: &'a Shard,
        stream: &'a TcpStream,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Step> + 'a>> {
        match self.mode {
            Mode::Stream { .. } => Box::pin(self.step_stream(shard, stream, event)),
            Mode::Poll { .. } => Box::pin(self.step_poll(shard, stream, event)),
            Mode::WebSocket(_) => Box::pin(self.step_websocket(shard, stream, event)),
        }
    }

    /// Sets the attachment's deadline one keepalive interval from now: the next keepalive is
    /// due then unless something is written first.
    pub(super) fn arm_keepalive(&self, shard: &Shard) {
        let keepalive_ms = shard.config().keepalive_ms;
        shard.set_deadline(&self.id, self.token, shard.now_ms() + keepalive_ms);
    }

    /// Writes a keepalive (a stream's comment or a WebSocket ping), counts it and arms the
    /// next one.
    pub(super) async fn send_keepalive(
        &self,
        shard: &Shard,
        stream: &TcpStream,
        out: BytesMut,
    ) -> Step {
        Metrics::add(&shard.metrics.keepalives, 1);
        if !send_all(stream, out).await {
            return Step::End(Next::Close);
        }
        self.arm_keepalive(shard);
        Step::Wait
    }

    async fn step_stream(&mut self, shard: &Shard, stream: &TcpStream, event: Event) -> Step {
        let Event::Tunnel(wait) = event else {
            return Step::End(Next::Close);
        };
        let mut out = BytesMut::new();
        match wait {
            Ok(Attention::Data) => {
                if let Some(end) = self.write_batch(shard, &mut out) {
                    if !self.write_unless_kicked(shard, stream, out).await {
                        return Step::End(Next::Close);
                    }
                    self.arm_keepalive(shard);
                    if end {
                        Metrics::add(&shard.metrics.recycled, 1);
                        return Step::End(self.finish(stream).await);
                    }
                }
                Step::Wait
            }
            Ok(Attention::Deadline) | Ok(Attention::Idle) => {
                self.put_keepalive(&mut out);
                self.send_keepalive(shard, stream, out).await
            }
            Err(kick) => {
                count_kick(shard, kick);
                match kick {
                    Kick::SlowConsumer => Step::End(Next::Close),
                    // The stream ends cleanly: its client re-attaches (elsewhere) with `last`.
                    Kick::Replaced | Kick::Stopping => Step::End(self.finish(stream).await),
                }
            }
        }
    }

    /// Writes a batch. A peer that stops reading blocks the write once the socket buffers fill;
    /// the tunnel then kicks it as a slow consumer, which must not wait for the write. A write
    /// that was in flight when another connection took the tunnel may finish (so the stream can
    /// end cleanly), within one keepalive interval. False when the connection must close.
    pub(super) async fn write_unless_kicked(
        &self,
        shard: &Shard,
        stream: &TcpStream,
        out: BytesMut,
    ) -> bool {
        let mut write = std::pin::pin!(send_all(stream, out));
        let kick = monoio::select! {
            sent = &mut write => return sent,
            kick = kicked(shard, &self.id, self.token) => kick,
        };
        match kick {
            Kick::SlowConsumer => {
                count_kick(shard, kick);
                false
            }
            Kick::Replaced | Kick::Stopping => {
                let grace = Duration::from_millis(shard.config().keepalive_ms);
                matches!(bounded(grace, write).await, Ok(true))
            }
        }
    }

    /// Appends queued datagrams (one bounded batch) to `out`. Returns `None` when nothing was
    /// queued, else whether the stream reached its recycle size.
    fn write_batch(&mut self, shard: &Shard, out: &mut BytesMut) -> Option<bool> {
        let tunnel = self.id.text();
        let env = Envelope {
            cb: self.cb.as_str(),
            tunnel: tunnel.as_str(),
        };
        let Mode::Stream {
            format,
            chunked,
            recycle_left,
        } = &mut self.mode
        else {
            return None;
        };
        let start = chunk_begin(*chunked, out);
        let batch_start = out.len();
        shard.with_tunnel(&self.id, |t| {
            if t.take_gap() {
                format.put_datagram(out, GAP, None, &env);
            }
            t.drain_unsent(usize::MAX, |d: &Datagram| {
                let batch_bytes = out.len() - batch_start;
                // The stream ends right after the datagram that crosses the recycle size.
                if batch_bytes >= STREAM_BATCH_BYTES || batch_bytes as u64 >= *recycle_left {
                    return false;
                }
                format.put_datagram(out, d.json(), Some(d.id()), &env);
                true
            })
        });
        let payload = (out.len() - batch_start) as u64;
        chunk_end(*chunked, out, start);
        if payload == 0 {
            return None;
        }
        if *recycle_left != NEVER_RECYCLED {
            *recycle_left = recycle_left.saturating_sub(payload);
        }
        Some(*recycle_left == 0)
    }

    fn put_keepalive(&self, out: &mut BytesMut) {
        if let Mode::Stream {
            format, chunked, ..
        } = &self.mode
        {
            let start = chunk_begin(*chunked, out);
            format.put_keepalive(out, &self.env(&self.id.text()));
            chunk_end(*chunked, out, start);
        }
    }

    /// Ends the stream cleanly: footer, then the last chunk.
    async fn finish(&self, stream: &TcpStream) -> Next {
        let Mode::Stream {
            format, chunked, ..
        } = &self.mode
        else {
            return Next::Close;
        };
        let mut out = BytesMut::new();
        let start = chunk_begin(*chunked, &mut out);
        format.put_footer(&mut out, &self.env(&self.id.text()));
        chunk_end(*chunked, &mut out, start);
        if *chunked {
            out.put_slice(b"0\r\n\r\n");
        }
        if send_all(stream, out).await && self.persist.keep_alive && *chunked {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}
