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

use super::attach::{self, Step};
use crate::metrics::{self, Metrics};
use crate::net::reply::{self, send, Persist};
use crate::net::request::{read_request, Read, Request};
use crate::pubsub::{path, Pattern};
use crate::refusal::{Blame, Refusal};
use crate::shard::mesh::{Handoff, Peer, ShardMsg};
use crate::shard::{PublishError, Published, Shard};
use crate::tunnel::TunnelId;
use crate::wire::format::callback_valid;
use crate::wire::http1::{self, write_full, Method};
use crate::wire::websocket::handshake::{self, HandshakeError};
use crate::wire::{json, query};

const DEMO_PAGE: &str = include_str!("demo.html");

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
pub struct Params<'q>(Vec<(Cow<'q, str>, Cow<'q, str>)>);

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
    pipeline: Option<&'a mut Pipeline>,
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
        Metrics::add(&self.shard.metrics.requests_failed, 1);
        count_refusal(self.shard, refusal);
        let out = reply::error(
            refusal.status(),
            refusal.message(),
            self.cb.as_deref(),
            self.persist,
        );
        self.send(out).await
    }

    /// 405, with the methods the resource does allow (RFC 9110 §15.5.6).
    pub async fn not_allowed(&mut self, allow: &'static str) -> Next {
        let refusal = Refusal::Http(http1::HttpError::MethodNotAllowed);
        Metrics::add(&self.shard.metrics.requests_failed, 1);
        count_refusal(self.shard, refusal);
        let out = reply::error_with(
            refusal.status(),
            refusal.message(),
            self.cb.as_deref(),
            self.persist,
            &[("Allow", allow)],
        );
        self.send(out).await
    }

    async fn accepted(&mut self, id: impl std::fmt::Display) -> Next {
        let body = format!(r#"{{"ok":true,"id":"{id}"}}"#);
        self.json(202, body.as_bytes()).await
    }

    async fn ok(&mut self) -> Next {
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

async fn route(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    peer: Peer,
    request: Box<Request>,
    pipeline: Option<&mut Pipeline>,
) -> Next {
    let head = &request.head;
    let keep_alive = head.keep_alive;
    let method = head.method;
    let mut answer = Answer {
        shard,
        stream,
        pipeline,
        persist: Persist::of(head),
        head_only: method == Method::Head,
        cb: None,
    };
    let Ok(params) = query::parse(head.query()) else {
        return answer.refuse(Refusal::BadQuery).await;
    };
    let params = Params(params);
    match params.get("cb") {
        Some(cb) if callback_valid(cb) => answer.cb = Some(cb.to_owned()),
        Some(_) => return answer.refuse(Refusal::BadCallback).await,
        None => {}
    }
    let path = head.path();
    // These write to the socket themselves (a stream's head, an upgrade's answer, a long-poll's
    // late answer): the answers owed before them go first.
    if matches!(path, "/tunnel" | "/echo") && !answer.uncork().await {
        return Next::Close;
    }
    match (method, path) {
        (Method::Options, p) if p.starts_with("/publish/") => publish_preflight(&mut answer).await,
        (Method::Options, _) => preflight(&mut answer).await,
        (Method::Get | Method::Head, "/" | "/index.html") => {
            let mut out = BytesMut::with_capacity(DEMO_PAGE.len() + 128);
            write_full(
                &mut out,
                200,
                "text/html; charset=utf-8",
                DEMO_PAGE.as_bytes(),
                keep_alive,
                answer.persist.plain_headers(),
            );
            answer.send(out).await
        }
        (Method::Get | Method::Head, "/metrics") => {
            let body = metrics::to_json(&shard.shared.metrics, Refusal::LABELS);
            answer.json(200, body.as_bytes()).await
        }
        (Method::Get, "/tunnel") => attach::open(&mut answer, &request, &params).await,
        (Method::Get, "/echo") if shard.config().conformance_echo => {
            super::websocket::echo(&mut answer, &request).await
        }
        (Method::Post, "/events") | (Method::Get, "/events") => {
            event(&mut answer, &request, &params).await
        }
        (Method::Post, p) if p.starts_with("/publish/") => {
            publish(&mut answer, peer, &request, &p["/publish".len()..]).await
        }
        (Method::Post | Method::Get, p) if subscription_path(p).is_some() => {
            subscription(&mut answer, &request, &params).await
        }
        (_, "/tunnel") if handshake::is_upgrade(&request.head) => {
            super::websocket::refuse(&mut answer, HandshakeError::BadMethod).await
        }
        (_, "/" | "/index.html" | "/metrics") => answer.not_allowed("GET, HEAD, OPTIONS").await,
        (_, "/tunnel") => answer.not_allowed("GET, OPTIONS").await,
        (_, "/events") => answer.not_allowed("GET, POST, OPTIONS").await,
        (_, p) if p.starts_with("/publish/") => answer.not_allowed(PUBLISH_ALLOW).await,
        (_, p) if subscription_path(p).is_some() => answer.not_allowed("GET, POST, OPTIONS").await,
        _ => answer.refuse(Refusal::NotFound).await,
    }
}

/// CORS preflight answer headers; the last one only for HTTP/1.0 keep-alive clients.
const PREFLIGHT_HEADERS: &[(&str, &str)] = &[
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
    (
        "Access-Control-Allow-Headers",
        "Content-Type, Last-Event-ID",
    ),
    ("Access-Control-Max-Age", "86400"),
    ("Connection", "keep-alive"),
];

async fn preflight(answer: &mut Answer<'_>) -> Next {
    no_content(answer, PREFLIGHT_HEADERS).await
}

/// What `/publish/...` takes.
const PUBLISH_ALLOW: &str = "POST, OPTIONS";
/// The preflight answer on `/publish/...`: it names the methods but grants no cross-origin
/// access, so a browser never sends the publish a page asks for (the backend API is not for
/// browsers; a simple request without preflight is refused for its `Origin` instead).
const PUBLISH_PREFLIGHT_HEADERS: &[(&str, &str)] =
    &[("Allow", PUBLISH_ALLOW), ("Connection", "keep-alive")];

async fn publish_preflight(answer: &mut Answer<'_>) -> Next {
    no_content(answer, PUBLISH_PREFLIGHT_HEADERS).await
}

/// A 204 with `headers`, whose last one (`Connection: keep-alive`) only HTTP/1.0 keep-alive
/// clients get.
async fn no_content(
    answer: &mut Answer<'_>,
    headers: &'static [(&'static str, &'static str)],
) -> Next {
    let mut out = BytesMut::new();
    http1::ResponseHead {
        status: 204,
        content_type: None,
        body: http1::ResponseBody::None,
        keep_alive: answer.persist.keep_alive,
        extra: if answer.persist.plain_headers().is_empty() {
            headers.split_last().map_or(headers, |(_, rest)| rest)
        } else {
            headers
        },
    }
    .write(&mut out);
    answer.send(out).await
}

/// `/tunnel/<id>/subscribe` or `/unsubscribe` → `(id, subscribe?)`.
fn subscription_path(p: &str) -> Option<(&str, bool)> {
    let rest = p.strip_prefix(path::PRIVATE_PREFIX)?;
    let (id, action) = rest.split_once('/')?;
    match action {
        "subscribe" => Some((id, true)),
        "unsubscribe" => Some((id, false)),
        _ => None,
    }
}

/// Client fields from a POST JSON body or GET query parameters.
fn client_fields(
    shard: &Shard,
    request: &Request,
    params: &Params<'_>,
) -> Result<json::Fields, Refusal> {
    let depth_max = shard.config().json_depth_max;
    let fields = if request.head.method == Method::Post {
        json::parse_fields(&request.body, depth_max)
    } else {
        params
            .get("data")
            .map(|d| json::compact(d.as_bytes(), depth_max))
            .transpose()
            .map(|data| json::Fields {
                kind: None,
                tunnel: params.get("tunnel").map(str::to_owned),
                path: params.get("path").map(str::to_owned),
                data,
            })
    };
    Ok(fields?)
}

/// Where a request about a tunnel is served: here, or on the owner shard.
enum Routed<T> {
    Here(T),
    Handoff(usize),
}

/// The tunnel a request names, if this shard owns it.
fn local_tunnel(shard: &Shard, text: &str) -> Result<Routed<TunnelId>, Refusal> {
    match owner(shard, text) {
        Owner::Local(id) => Ok(Routed::Here(id)),
        Owner::Remote(to) => Ok(Routed::Handoff(to)),
        Owner::Nowhere => Err(Refusal::UnknownTunnel),
    }
}

/// The checks every publish passes, whoever publishes it (`/events`, `/publish`, WebSocket
/// messages): a valid path and data within `datagram_data_bytes_max`.
pub(super) fn admit_publish(shard: &Shard, path: &str, data: &[u8]) -> Result<(), Refusal> {
    path::validate(path)?;
    if data.len() > shard.config().datagram_data_bytes_max {
        return Err(Refusal::DataTooLarge);
    }
    Ok(())
}

/// `POST /events` and `GET /events`: a client publishes through its tunnel.
async fn event(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    match publish_event(answer.shard, request, params) {
        Ok(Routed::Here(published)) => answer_publish(answer, published).await,
        Ok(Routed::Handoff(to)) => Next::Handoff(to, clone_request(request)),
        Err(refusal) => answer.refuse(refusal).await,
    }
}

fn publish_event(
    shard: &Shard,
    request: &Request,
    params: &Params<'_>,
) -> Result<Routed<Result<Published, PublishError>>, Refusal> {
    let fields = client_fields(shard, request, params)?;
    let tunnel = fields.tunnel.ok_or(Refusal::MissingTunnel)?;
    let path = fields.path.ok_or(Refusal::MissingPath)?;
    let data = fields.data.ok_or(Refusal::MissingData)?;
    // The tunnel is checked before the path: a request about an unknown tunnel says so.
    let id = match local_tunnel(shard, &tunnel)? {
        Routed::Here(id) => id,
        Routed::Handoff(to) => return Ok(Routed::Handoff(to)),
    };
    admit_publish(shard, &path, &data)?;
    shard.charge_event(&id)?;
    Ok(Routed::Here(shard.publish(&path, &data)))
}

/// Answers a publish: 202 with the datagram id once it is delivered or queued. A publish to
/// the private path of a tunnel on another shard waits for that shard to confirm the tunnel
/// exists, so the answer is the same whichever shard the request reached.
async fn answer_publish(
    answer: &mut Answer<'_>,
    published: Result<Published, PublishError>,
) -> Next {
    match published {
        Ok(Published::Done(did)) => answer.accepted(did).await,
        Ok(Published::Remote(did, delivered)) => match delivered.await {
            Ok(true) => answer.accepted(did).await,
            Ok(false) | Err(_) => answer.refuse(Refusal::UnknownTunnel).await,
        },
        Err(e) => answer.refuse(Refusal::from(e)).await,
    }
}

/// `POST /publish/<path>`: the backend publish API, loopback peers only for now.
async fn publish(answer: &mut Answer<'_>, peer: Peer, request: &Request, path: &str) -> Next {
    match publish_backend(answer.shard, peer, request, path) {
        Ok(published) => answer_publish(answer, published).await,
        Err(refusal) => answer.refuse(refusal).await,
    }
}

fn publish_backend(
    shard: &Shard,
    peer: Peer,
    request: &Request,
    path: &str,
) -> Result<Result<Published, PublishError>, Refusal> {
    if !peer.loopback {
        return Err(Refusal::PublishNotLoopback);
    }
    // A browser names the page's origin; a backend does not. Without this, any page open in a
    // browser on the router's host could publish with a simple `text/plain` POST.
    if request.head.header("origin").is_some() {
        return Err(Refusal::PublishFromBrowser);
    }
    // The path is checked before the body is parsed.
    path::validate(path)?;
    let data = json::compact(&request.body, shard.config().json_depth_max)?;
    admit_publish(shard, path, &data)?;
    Ok(shard.publish(path, &data))
}

/// `/tunnel/<id>/subscribe` and `/unsubscribe`, body `{"path":P}` or `?path=P`.
async fn subscription(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    match change_subscription(answer.shard, request, params) {
        Ok(Routed::Here(())) => answer.ok().await,
        Ok(Routed::Handoff(to)) => Next::Handoff(to, clone_request(request)),
        Err(refusal) => answer.refuse(refusal).await,
    }
}

fn change_subscription(
    shard: &Shard,
    request: &Request,
    params: &Params<'_>,
) -> Result<Routed<()>, Refusal> {
    let (tunnel, subscribe) = subscription_path(request.head.path()).ok_or(Refusal::NotFound)?;
    let fields = client_fields(shard, request, params)?;
    let pattern_text = fields.path.ok_or(Refusal::MissingPath)?;
    let pattern = Pattern::parse(&pattern_text)?;
    let id = match local_tunnel(shard, tunnel)? {
        Routed::Here(id) => id,
        Routed::Handoff(to) => return Ok(Routed::Handoff(to)),
    };
    shard.charge_event(&id)?;
    if subscribe {
        shard.subscribe(&id, &pattern)?;
    } else {
        shard.unsubscribe(&id, &pattern)?;
    }
    Ok(Routed::Here(()))
}

/// Counts a refusal by its reason (every refusal, answered or sent as a WebSocket message).
pub(super) fn count_refusal(shard: &Shard, refusal: Refusal) {
    shard.metrics.refused(refusal.index());
    if refusal.blame() == Blame::Server {
        Metrics::add(&shard.metrics.refused_by_server, 1);
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
