//! The route table and the handlers of the HTTP API: the demo page, metrics, CORS preflights,
//! `/tunnel` (handed to the attachments), `/events`, `/publish/...` and subscriptions. Every
//! handler either answers, refuses with a [`Refusal`], or moves the connection to the shard
//! that owns the tunnel it names.

use bytes::BytesMut;
use monoio::net::TcpStream;
use std::rc::Rc;

use super::attach;
use crate::metrics::{self, Metrics};
use crate::net::reply::Persist;
use crate::net::request::Request;
use crate::pubsub::{path, Pattern};
use crate::refusal::{Blame, Refusal};
use crate::shard::mesh::Peer;
use crate::shard::{PublishError, Published, Shard};
use crate::tunnel::TunnelId;
use crate::wire::format::callback_valid;
use crate::wire::http1::{self, write_full, Method};
use crate::wire::websocket::handshake::{self, HandshakeError};
use crate::wire::{json, query};

use super::conn::{clone_request, owner, Answer, Next, Owner, Params, Pipeline};

const DEMO_PAGE: &str = include_str!("demo.html");

pub(super) async fn route(
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
