//! Tunnel attachments: a connection that serves a tunnel after `GET /tunnel` ([`open`]), as a
//! stream (SSE, NUL, NDJSON, iframe, custom formats: [`stream`]), a parked long-poll (JSON,
//! JSONP: [`longpoll`]) or a WebSocket ([`websocket`]). What they share lives here: the
//! binding to the tunnel, the wait for the tunnel or the peer, keepalive timing, and the write
//! that a slow consumer's kick interrupts.

pub mod longpoll;
pub mod open;
pub mod stream;
pub mod websocket;

use bytes::BytesMut;
use monoio::net::TcpStream;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::net::reply::Persist;
use crate::net::sock::send_all;
use crate::shard::Shard;
use crate::tunnel::{Attention, IdText, Kick, TunnelId};
use crate::wire::datagram::Datagram;
use crate::wire::format::{Envelope, Format};

/// What the connection does after a request, an attached tunnel being an [`Attached`].
pub type Next = crate::net::answer::Next<Box<Attached>>;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A connection attached to a tunnel, waiting for it. This is all an idle tunnel's connection
/// holds: no buffers, no per-connection timer (the shard's timer task fires the deadline).
pub struct Attached {
    binding: Binding,
    transport: Transport,
}

/// Which tunnel an attachment serves, and how its answers are framed whatever the transport.
struct Binding {
    id: TunnelId,
    /// The attachment's token: the tunnel serves one attachment at a time, and a stale token
    /// (an attachment replaced by a newer one) finds nothing.
    token: u64,
    /// Whether the connection stays open after the attachment ends, and whether the client
    /// speaks HTTP/1.0 (close-delimited streams; keep-alive acknowledged explicitly).
    persist: Persist,
    cb: Callback,
}

/// One type per transport, so that a transport's step can only see its own state.
enum Transport {
    Stream(stream::Stream),
    Poll(longpoll::Poll),
    WebSocket(websocket::WsState),
}

/// A JSONP or iframe callback name. Every attachment carries one and most have none, so it is
/// a thin pointer: 8 bytes, and nothing allocated when absent.
struct Callback(
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

    fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", String::as_str)
    }
}

/// What woke an attached connection.
pub enum Event {
    /// The tunnel: datagrams queued, a deadline passed, or the attachment must go.
    Tunnel(Result<Attention, Kick>),
    /// The peer sent something or closed.
    Peer,
}

/// The future of [`Attached::wait`]: written out rather than an async fn, whose state would
/// hold its arguments twice.
pub struct Wait<'a, F> {
    attached: &'a Attached,
    shard: &'a Shard,
    /// The socket's readiness poll; the caller re-arms it once it has fired.
    peer: Pin<&'a mut F>,
}

impl<F: Future<Output = std::io::Result<()>>> Future for Wait<'_, F> {
    type Output = Event;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Event> {
        let binding = &self.attached.binding;
        match self
            .shard
            .poll_attachment(&binding.id, binding.token, cx.waker())
        {
            Ok(Attention::Idle) => {}
            other => return Poll::Ready(Event::Tunnel(other)),
        }
        self.peer.as_mut().poll(cx).map(|_| Event::Peer)
    }
}

/// What an attached connection does after an event.
pub enum Step {
    /// Wait for the next event.
    Wait,
    /// The attachment is over.
    End(Next),
}

impl Attached {
    /// Attaches, writes the opening bytes `out`, arms the first keepalive, and hands the rest to
    /// the connection loop (detaching again if the write fails).
    async fn attach_with(self, shard: &Shard, stream: &TcpStream, out: BytesMut) -> Next {
        let binding = &self.binding;
        shard.attach(&binding.id, binding.token);
        if !send_all(stream, out).await {
            self.detach_tunnel(shard);
            return Next::Close;
        }
        binding.arm_keepalive(shard);
        shard.metrics.attachments_open.add(self.format_label(), 1);
        Next::Attached(Box::new(self))
    }

    /// Its index in [`crate::metrics::FORMAT_LABELS`].
    fn format_label(&self) -> usize {
        match &self.transport {
            Transport::Stream(s) => format_label(s.format()),
            Transport::Poll(p) if p.jsonp => format_label(&Format::Jsonp),
            Transport::Poll(_) => format_label(&Format::LongPoll),
            Transport::WebSocket(_) => WS_LABEL,
        }
    }

    /// Waits for the tunnel or for `peer`, the socket's readiness poll. The connection keeps
    /// that poll armed across events (see [`crate::net::sock`]); the tunnel's state (queue,
    /// deadline, kick) lives in the shard, which wakes the connection through its waker.
    pub fn wait<'a, F>(&'a self, shard: &'a Shard, peer: Pin<&'a mut F>) -> Wait<'a, F> {
        Wait {
            attached: self,
            shard,
            peer,
        }
    }

    /// Handles one event; boxed, so it costs nothing while the attachment waits. The caller
    /// detaches once the attachment ends.
    pub fn step<'a>(
        &'a mut self,
        shard: &'a Shard,
        stream: &'a TcpStream,
        event: Event,
    ) -> Boxed<'a, Step> {
        let binding = &self.binding;
        match &mut self.transport {
            Transport::Stream(s) => Box::pin(s.step(binding, shard, stream, event)),
            Transport::Poll(p) => Box::pin(p.step(binding, shard, stream, event)),
            Transport::WebSocket(ws) => Box::pin(ws.step(binding, shard, stream, event)),
        }
    }

    /// Handles the bytes read behind the request that attached (frames a WebSocket client sent
    /// before it saw the 101). Only a WebSocket takes them: any other transport gives them
    /// back, to be read as the connection's next request once the attachment ends.
    pub fn early_frames<'a>(
        &'a mut self,
        shard: &'a Shard,
        stream: &'a TcpStream,
        input: BytesMut,
    ) -> Result<Boxed<'a, Step>, BytesMut> {
        let binding = &self.binding;
        match &mut self.transport {
            Transport::WebSocket(ws) => {
                Ok(Box::pin(ws.early_frames(binding, shard, stream, input)))
            }
            Transport::Stream(_) | Transport::Poll(_) => Err(input),
        }
    }

    /// Ends the attachment: the tunnel waits (within its grace period) for the next one, unless
    /// nobody can re-attach to it.
    pub fn detach(&self, shard: &Shard) {
        self.detach_tunnel(shard);
        shard.metrics.attachments_open.sub(self.format_label(), 1);
    }

    /// Detaches from the tunnel, which goes at once when nobody can re-attach to it.
    fn detach_tunnel(&self, shard: &Shard) {
        match &self.transport {
            Transport::Stream(s) if s.for_good() => {
                shard.detach_for_good(&self.binding.id, self.binding.token)
            }
            _ => shard.detach(&self.binding.id, self.binding.token),
        }
    }
}

impl Binding {
    /// What formats interpolate; `tunnel` is the id's text (see [`TunnelId::text`]).
    fn env<'a>(&'a self, tunnel: &'a IdText) -> Envelope<'a> {
        Envelope {
            cb: self.cb.as_str(),
            tunnel: tunnel.as_str(),
        }
    }

    /// Sets the attachment's deadline one keepalive interval from now: the next keepalive is
    /// due then unless something is written first.
    fn arm_keepalive(&self, shard: &Shard) {
        let keepalive_ms = shard.config().keepalive_ms;
        shard.set_deadline(&self.id, self.token, shard.now_ms() + keepalive_ms);
    }

    /// Writes a keepalive (a stream's comment or a WebSocket ping), counts it and arms the
    /// next one.
    async fn send_keepalive(&self, shard: &Shard, stream: &TcpStream, out: BytesMut) -> Step {
        Metrics::add(&shard.metrics.keepalives, 1);
        if !send_all(stream, out).await {
            return Step::End(Next::Close);
        }
        self.arm_keepalive(shard);
        Step::Wait
    }

    /// Writes a batch. A peer that stops reading blocks the write once the socket buffers fill;
    /// the tunnel then kicks it as a slow consumer, which must not wait for the write. A write
    /// that was in flight when another connection took the tunnel may finish (so the stream can
    /// end cleanly), within one keepalive interval. False when the connection must close.
    async fn write_unless_kicked(&self, shard: &Shard, stream: &TcpStream, out: BytesMut) -> bool {
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
            Kick::Replaced | Kick::Stopping | Kick::TokenExpired => {
                // Real time, though a keepalive interval long: it bounds how long the peer
                // takes to read, which is no deadline of the tunnel.
                let grace = Duration::from_millis(shard.config().keepalive_ms);
                matches!(bounded(grace, write).await, Ok(true))
            }
        }
    }
}

/// The index of WebSocket in [`crate::metrics::FORMAT_LABELS`].
const WS_LABEL: usize = 6;

/// The index of `format` in [`crate::metrics::FORMAT_LABELS`].
fn format_label(format: &Format) -> usize {
    match format {
        Format::Sse => 0,
        Format::Nul => 1,
        Format::Ndjson => 2,
        Format::Iframe => 3,
        Format::LongPoll => 4,
        Format::Jsonp => 5,
        Format::Custom(_) => 7,
    }
}

/// Takes the tunnel's gap marker (counting it) for a batch about to be written.
fn take_gap(shard: &Shard, tunnel: &mut crate::tunnel::Tunnel) -> bool {
    let gap = tunnel.take_gap();
    if gap {
        Metrics::add(&shard.metrics.gaps, 1);
    }
    gap
}

/// Records a datagram's publish-to-write latency; `now_ns` is read once per batch.
fn written(shard: &Shard, datagram: &Datagram, now_ns: u64) {
    shard
        .metrics
        .publish_to_write
        .since(datagram.published_ns(), now_ns);
}

/// Counts an attachment told to go, by reason.
fn count_kick(shard: &Shard, kick: Kick) {
    let counter = match kick {
        Kick::SlowConsumer => &shard.metrics.slow_consumer,
        Kick::Replaced => &shard.metrics.replaced,
        Kick::Stopping => &shard.metrics.closed_by_stop,
        Kick::TokenExpired => &shard.metrics.token_expired,
    };
    Metrics::add(counter, 1);
}

/// `future`, given at most `limit`; boxed so the rarely needed timer costs nothing while idle.
fn bounded<'a, F: Future + 'a>(
    limit: Duration,
    future: F,
) -> Boxed<'a, Result<F::Output, monoio::time::error::Elapsed>> {
    Box::pin(monoio::time::timeout(limit, future))
}

/// Resolves when attachment `token` is told to go (replacement or slow consumer).
async fn kicked(shard: &Shard, id: &TunnelId, token: u64) -> Kick {
    poll_fn(|cx| match shard.poll_kick(id, token, cx.waker()) {
        Some(kick) => Poll::Ready(kick),
        None => Poll::Pending,
    })
    .await
}
