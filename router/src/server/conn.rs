//! One HTTP connection: reads requests, routes them and answers. A request about a tunnel that
//! another shard owns moves the whole connection to that shard.

use crate::limits::{CORKED_BYTES_MAX, CORKED_DELIVERIES_MAX, LINGER_BYTES_MAX, LINGER_MS};
use bytes::BytesMut;
use monoio::net::TcpStream;
use std::borrow::Cow;
use std::future::Future;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::api::{count_refusal, route};
use super::attach::{self, Step};
use crate::metrics::Metrics;
use crate::net::reply::{self, send, Persist};
use crate::net::request::{read_request, Read, Request};
use crate::refusal::Refusal;
use crate::shard::mesh::{Handoff, Peer, ShardMsg};
use crate::shard::Shard;
use crate::tunnel::TunnelId;
use crate::wire::http1::{self};

/// What the connection does after a request.
pub enum Next {
    /// Read the next request.
    KeepAlive,
    Close,
    /// Move to shard `.0`, which owns the tunnel the request is about.
    Handoff(usize, Box<Request>),
    /// Serve an attached tunnel (a stream, or a parked long-poll) until it ends.
    Attached(Box<attach::Attached>),
}

/// What a connection holds between pipelined requests, boxed because few connections pipeline:
/// the bytes read past the last request, and the answers held back ("corked") while more
/// requests are already buffered. A burst of pipelined requests (a publisher's, typically) is
/// answered with one write, and the tunnels its publishes wake see the whole burst at once and
/// write it with one `send` each instead of one per datagram. Corked answers go out before the
/// connection waits for its peer (who may be waiting for them) and before anything else writes
/// to the socket.
#[derive(Default)]
pub struct Pipeline {
    pub input: BytesMut,
    pub corked: BytesMut,
    /// The shard's delivery count when the first corked answer was held back.
    corked_at: u64,
}

/// Keeps `connections_open` right however the connection ends; the connection's handle on its
/// shard.
struct OpenGuard(Rc<Shard>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        Metrics::sub(&self.0.metrics.connections_open, 1);
    }
}

/// Serves a connection until it closes or moves to another shard. `first` is a request already
/// read (by the shard that handed the connection over) and `buf` the bytes read past it.
///
/// This future lives as long as the connection and is most of what an idle tunnel costs, so
/// it holds only the connection and, while a tunnel is attached, the attachment and its wait;
/// every other phase runs in a boxed future that exists only while that phase does.
pub fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    peer: Peer,
    mut first: Option<Box<Request>>,
    buf: BytesMut,
) -> impl Future<Output = ()> {
    Metrics::add(&shard.metrics.connections_open, 1);
    let open = OpenGuard(shard);
    // Boxed: rare, and 8 bytes here rather than two buffers' 64 for every connection.
    let mut rest = (!buf.is_empty()).then(|| {
        Box::new(Pipeline {
            input: buf,
            ..Pipeline::default()
        })
    });
    // An async block rather than an async fn: it uses what it captures in place, where an async
    // fn would keep a second copy of its arguments in its state.
    async move {
        let shard = &open.0;
        loop {
            let request = match first.take() {
                Some(r) => r,
                None => match boxed_read(shard, &mut stream, &mut rest).await {
                    Read::Request(r) => r,
                    Read::Closed => return,
                    Read::Failed(e) => {
                        boxed_refuse(shard, &mut stream, &mut rest, e).await;
                        return;
                    }
                },
            };
            let next = match boxed_route(shard, &mut stream, peer, request, &mut rest).await {
                Next::Attached(attached) => {
                    let mut attached = unbox(attached);
                    // One readiness poll, armed until the peer sends or closes: handling the
                    // tunnel's events never awaits the socket mutably (see `sock`), so the poll
                    // is not cancelled and re-armed at every delivery.
                    let mut peer = std::pin::pin!(stream.readable(false));
                    let next = loop {
                        let event = attached.wait(shard, peer.as_mut()).await;
                        let peer_fired = matches!(event, attach::Event::Peer);
                        if let Step::End(next) = attached.step(shard, &stream, event).await {
                            break next;
                        }
                        if peer_fired {
                            peer.set(stream.readable(false));
                        }
                    };
                    shard.detach(&attached.id, attached.token);
                    next
                }
                next => next,
            };
            match next {
                Next::KeepAlive => {}
                Next::Close | Next::Attached(_) => return,
                Next::Handoff(to, request) => {
                    let rest = rest.map_or_else(BytesMut::new, |p| p.input);
                    boxed_handoff(shard, stream, peer, request, rest, to).await;
                    return;
                }
            }
        }
    }
}

/// Moves a value out of its box and frees the box at once (a box moved out of in an async fn
/// keeps its memory until the end of the binding's scope).
#[allow(
    clippy::boxed_local,
    reason = "taking the box is the point: it is freed before the attachment's long wait"
)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

// The connection task lives as long as the connection, so it must stay small: each phase runs
// in a boxed future that exists only while that phase does. The boxes are built in plain
// functions because a future created in an async fn's frame keeps its full size reserved there
// even after it is moved into a box.

fn boxed_read<'a>(
    shard: &'a Shard,
    stream: &'a mut TcpStream,
    rest: &'a mut Option<Box<Pipeline>>,
) -> Boxed<'a, Read> {
    Box::pin(async move {
        let Pipeline {
            input: mut buf,
            mut corked,
            corked_at,
        } = rest.take().map(unbox).unwrap_or_default();
        let read = read_request(shard, stream, &mut buf, &mut corked).await;
        if buf.is_empty() && corked.is_empty() {
            // Nothing pipelined: hold no buffer while the request is served or we wait.
            shard.give_read_buffer(buf);
        } else {
            *rest = Some(Box::new(Pipeline {
                input: buf,
                corked,
                corked_at,
            }));
        }
        read
    })
}

/// Routes a request. A connection that is not kept for the next request (it closes, moves to
/// another shard or attaches) first gets the answers still corked for the requests before.
fn boxed_route<'a>(
    shard: &'a Rc<Shard>,
    stream: &'a mut TcpStream,
    peer: Peer,
    request: Box<Request>,
    rest: &'a mut Option<Box<Pipeline>>,
) -> Boxed<'a, Next> {
    Box::pin(async move {
        let next = match route(shard, stream, peer, request, rest.as_deref_mut()).await {
            Next::Attached(attached) if attached.is_websocket() => {
                early_frames(shard, stream, attached, rest).await
            }
            next => next,
        };
        let next = match rest.as_deref_mut() {
            Some(p) if !matches!(next, Next::KeepAlive) && !p.corked.is_empty() => {
                if reply::uncork(stream, &mut p.corked).await {
                    next
                } else {
                    return Next::Close;
                }
            }
            _ => next,
        };
        // An answer that ends the connection (`Connection: close`, HTTP/1.0, an error) while
        // the client has already sent more (pipelined requests, a body we did not read): linger
        // as after a refusal, so the kernel's reset cannot destroy the last answer.
        if matches!(next, Next::Close) {
            let pipelined = rest.as_ref().is_some_and(|p| !p.input.is_empty());
            if pipelined || crate::net::sock::has_unread(stream) {
                linger_close(stream).await;
            }
        }
        next
    })
}

/// Hands the bytes read behind a WebSocket upgrade request (frames the client sent before it
/// saw the 101) to the new attachment, which handles them at once: the connection's readiness
/// poll would not fire for bytes already read.
async fn early_frames(
    shard: &Shard,
    stream: &TcpStream,
    mut attached: Box<attach::Attached>,
    rest: &mut Option<Box<Pipeline>>,
) -> Next {
    let Some(pipeline) = rest.take() else {
        return Next::Attached(attached);
    };
    let Pipeline { input, corked, .. } = unbox(pipeline);
    // `/tunnel` wrote the answers owed before it: only the early frames are left.
    debug_assert!(corked.is_empty(), "answers were corked behind an upgrade");
    if input.is_empty() {
        return Next::Attached(attached);
    }
    match attached.early_frames(shard, stream, input).await {
        Step::Wait => Next::Attached(attached),
        Step::End(next) => {
            shard.detach(&attached.id, attached.token);
            next
        }
    }
}

/// Answers a request that could not be read (after the answers still corked), then closes.
/// Counted as failed, or as aborted when the client went away partway through it.
fn boxed_refuse<'a>(
    shard: &'a Shard,
    stream: &'a mut TcpStream,
    rest: &'a mut Option<Box<Pipeline>>,
    e: http1::HttpError,
) -> Boxed<'a, ()> {
    let counter = match e {
        http1::HttpError::Aborted(_) => &shard.metrics.requests_aborted,
        _ => &shard.metrics.requests_failed,
    };
    Metrics::add(counter, 1);
    count_refusal(shard, Refusal::Http(e));
    Box::pin(async move {
        let mut out = rest.take().map(|p| p.corked).unwrap_or_default();
        out.unsplit(reply::error(e.status(), e.message(), None, Persist::CLOSE));
        if send(stream, out).await {
            linger_close(stream).await;
        }
    })
}

/// Closes after an error answer without destroying it: closing a socket with unread input
/// makes the kernel send a reset, which can discard the answer before the client reads it
/// (RFC 9112 §9.6). So: stop writing, then read and drop what the client still sends, bounded
/// in bytes and time.
async fn linger_close(stream: &mut TcpStream) {
    use monoio::io::AsyncWriteRent;
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = monoio::time::Instant::now() + Duration::from_millis(LINGER_MS);
    let mut drained = 0;
    let mut buf = BytesMut::with_capacity(4096);
    while drained < LINGER_BYTES_MAX {
        buf.clear();
        match monoio::time::timeout_at(deadline, crate::net::request::read_more(stream, &mut buf))
            .await
        {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

fn boxed_handoff(
    shard: &Rc<Shard>,
    stream: TcpStream,
    peer: Peer,
    request: Box<Request>,
    buf: BytesMut,
    to: usize,
) -> Boxed<'_, ()> {
    Box::pin(handoff(shard, stream, peer, request, buf, to))
}

/// Moves the connection to shard `to`. Refused with 503 when the ring to it is full.
async fn handoff(
    shard: &Rc<Shard>,
    mut stream: TcpStream,
    peer: Peer,
    request: Box<Request>,
    buf: BytesMut,
    to: usize,
) {
    if !shard.has_room(to) {
        Metrics::add(&shard.metrics.ring_full, 1);
        send(
            &mut stream,
            reply::error(503, "shard ring full", None, Persist::CLOSE),
        )
        .await;
        return;
    }
    let fd = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up monoio's ownership of this open socket; it is now ours alone.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let msg = ShardMsg::Handoff(Box::new(Handoff {
        stream: std_stream,
        peer,
        request,
        rest: buf.freeze(),
    }));
    if shard.send(to, msg).is_err() {
        // Cannot happen (we checked for room and are the only producer); the socket closes.
        tracing::warn!(to, "handoff ring full after check");
    } else {
        Metrics::add(&shard.metrics.handoffs_out, 1);
    }
}

/// Query parameters of one request.
pub struct Params<'q>(pub(super) Vec<(Cow<'q, str>, Cow<'q, str>)>);

impl Params<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| &**v)
    }

    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| &**v)
    }
}

/// Per-request answering context.
pub struct Answer<'a> {
    pub shard: &'a Rc<Shard>,
    /// Handlers that write to it other than through `send` call `uncork` first.
    pub stream: &'a mut TcpStream,
    /// Present when the connection has pipelined: answers may be corked there.
    pub(super) pipeline: Option<&'a mut Pipeline>,
    pub persist: Persist,
    /// A HEAD request: answers carry no body.
    pub head_only: bool,
    /// Valid JSONP callback, when the request asked for one.
    pub cb: Option<String>,
}

impl Answer<'_> {
    fn next(&self) -> Next {
        if self.persist.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Sends a complete answer (without its body for HEAD) and says what comes next. When
    /// another request is already buffered and the connection stays open, the answer is corked
    /// instead: it goes out with the next one written.
    pub async fn send(&mut self, mut out: BytesMut) -> Next {
        if self.head_only {
            reply::strip_body(&mut out);
        }
        let next = self.next();
        if let Some(p) = self.pipeline.as_deref_mut() {
            let deliveries = self.shard.metrics.deliveries.load(Ordering::Relaxed);
            if p.corked.is_empty() {
                p.corked_at = deliveries;
            }
            let more = !p.input.is_empty() && matches!(next, Next::KeepAlive);
            if more
                && p.corked.len() + out.len() <= CORKED_BYTES_MAX
                && deliveries.wrapping_sub(p.corked_at) < CORKED_DELIVERIES_MAX
            {
                p.corked.unsplit(out);
                return next;
            }
            if !p.corked.is_empty() {
                let mut all = std::mem::take(&mut p.corked);
                all.unsplit(out);
                out = all;
            }
        }
        if send(self.stream, out).await {
            next
        } else {
            Next::Close
        }
    }

    /// Writes the corked answers, before a handler writes to the socket itself. False when
    /// the peer is gone.
    pub async fn uncork(&mut self) -> bool {
        match self.pipeline.as_deref_mut() {
            Some(p) => reply::uncork(self.stream, &mut p.corked).await,
            None => true,
        }
    }

    pub async fn json(&mut self, status: u16, body: &[u8]) -> Next {
        let out = reply::json(status, body, self.cb.as_deref(), self.persist);
        self.send(out).await
    }

    /// Answers a refusal with its status and error text, and counts it.
    pub async fn refuse(&mut self, refusal: Refusal) -> Next {
        self.refuse_with(refusal, &[]).await
    }

    /// 405, with the methods the resource does allow (RFC 9110 §15.5.6).
    pub async fn not_allowed(&mut self, allow: &'static str) -> Next {
        let refusal = Refusal::Http(http1::HttpError::MethodNotAllowed);
        self.refuse_with(refusal, &[("Allow", allow)]).await
    }

    /// [`Answer::refuse`] with extra headers.
    async fn refuse_with(&mut self, refusal: Refusal, extra: &[(&str, &str)]) -> Next {
        Metrics::add(&self.shard.metrics.requests_failed, 1);
        count_refusal(self.shard, refusal);
        let out = reply::error_with(
            refusal.status(),
            refusal.message(),
            self.cb.as_deref(),
            self.persist,
            extra,
        );
        self.send(out).await
    }

    pub(super) async fn accepted(&mut self, id: impl std::fmt::Display) -> Next {
        let body = format!(r#"{{"ok":true,"id":"{id}"}}"#);
        self.json(202, body.as_bytes()).await
    }

    pub(super) async fn ok(&mut self) -> Next {
        self.json(200, br#"{"ok":true}"#).await
    }
}

/// Where a tunnel id points.
pub enum Owner {
    Local(TunnelId),
    Remote(usize),
    /// Malformed or naming a shard that does not exist.
    Nowhere,
}

pub fn owner(shard: &Shard, text: &str) -> Owner {
    match TunnelId::parse(text) {
        Some(id) if id.shard == shard.id => Owner::Local(id),
        Some(id) if (id.shard as usize) < shard.shard_count() => Owner::Remote(id.shard as usize),
        _ => Owner::Nowhere,
    }
}

pub fn clone_request(request: &Request) -> Box<Request> {
    Box::new(request.clone())
}

#[cfg(test)]
mod idle_budget {
    //! An idle tunnel's connection is its task's future (the attachment and its wait included):
    //! keep it within a budget, since it is multiplied by the number of idle tunnels.

    use std::sync::Arc;

    /// Bytes budgeted for a connection task's future, attached or not, and for the attachment
    /// it holds.
    const SERVE_FUTURE_BYTES_MAX: usize = 400;
    const ATTACHED_BYTES_MAX: usize = 72;

    #[test]
    fn idle_connection_future_stays_within_budget() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client = monoio::net::TcpStream::connect(addr)
                .await
                .expect("connect");
            let shared = Arc::new(crate::shard::Shared {
                config: crate::config::Config::default(),
                formats: Default::default(),
                metrics: vec![Default::default()],
            });
            let wakers: Arc<[atomic_waker::AtomicWaker]> = Arc::from(vec![Default::default()]);
            let shard = crate::shard::Shard::new(0, shared, vec![None], wakers);
            let peer = super::Peer::of(addr);
            let serve = super::serve(shard, client, peer, None, bytes::BytesMut::new());
            let serve = std::mem::size_of_val(&serve);
            let attached = std::mem::size_of::<super::attach::Attached>();
            eprintln!("serve future: {serve} bytes, attachment: {attached} bytes");
            assert!(
                attached <= ATTACHED_BYTES_MAX,
                "attachment is {attached} bytes"
            );
            assert!(
                serve <= SERVE_FUTURE_BYTES_MAX,
                "serve future is {serve} bytes"
            );
        });
    }
}
