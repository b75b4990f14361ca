//! The route table and the handlers of the HTTP API: the demo page and the browser client it
//! uses, metrics, CORS preflights, `/tunnel` (handed to the attachments), the publish API
//! ([`publish`]: `/events`, `/publish/...`, subscriptions) and the protocol adapters
//! ([`talk`], [`session`]). Every handler either answers, refuses with a [`Refusal`], or moves
//! the connection to the shard that owns the tunnel it names.

pub mod publish;
pub mod session;
pub mod talk;

use bytes::BytesMut;
use monoio::net::TcpStream;
use std::rc::Rc;

use crate::attachment::{self, websocket, Next};
use crate::metrics;
use crate::net::answer::{Answer, Pipeline};
use crate::net::reply::{with_cors, Cors, Persist};
use crate::net::request::Request;
use crate::os;
use crate::refusal::Refusal;
use crate::shard::mesh::Peer;
use crate::shard::Shard;
use crate::wire::format::callback_valid;
use crate::wire::http1::{self, write_full, Method};
use crate::wire::query::Params;
use crate::wire::websocket::handshake::{self, HandshakeError};

use publish::{event, publish, renew_token, subscription, subscription_path, token_path};

const DEMO_PAGE: &str = include_str!("demo.html");
/// The browser client library (`client/` at the top of the repository), served so that a page
/// can import it from the router it talks to.
const CLIENT_JS: &str = include_str!("../../../client/router-client.js");
/// The client changes only with the binary: an hour of caching saves a page's every load, and
/// `*` lets a page on another origin import it as a module (module scripts are fetched with
/// CORS).
const CLIENT_JS_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "public, max-age=3600"),
    ("Access-Control-Allow-Origin", "*"),
    ("X-Content-Type-Options", "nosniff"),
];

pub async fn route(
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
    // With `auth.origins_allowed`, answers name the allowed origin instead of `*`.
    if let Some(index) = shard.auth().origin_index(head) {
        answer.persist.cors = match index.and_then(|i| u8::try_from(i).ok()) {
            Some(i) => Cors::Origin(i),
            None => Cors::Denied,
        };
    }
    let Ok(params) = Params::parse(head.query()) else {
        return answer.refuse(Refusal::BadQuery).await;
    };
    match params.get("cb") {
        Some(cb) if callback_valid(cb) => answer.cb = Some(cb.to_owned()),
        Some(_) => return answer.refuse(Refusal::BadCallback).await,
        None => {}
    }
    let path = head.path();
    // With `auth.origins_allowed`, a page from another origin may use none of the client API:
    // checked here, once for every route of it. The backend API has its own rule (`/publish`
    // refuses any Origin); preflights get no grant; the pages anyone may read stay open.
    let foreign = answer.persist.cors == Cors::Denied && head.header("origin").is_some();
    if foreign && method != Method::Options && client_api(path) {
        return answer.refuse(Refusal::OriginNotAllowed).await;
    }
    // These write to the socket themselves (a stream's head, an upgrade's answer, a long-poll's
    // late answer): the answers owed before them go first.
    let streams = matches!(path, "/tunnel" | "/echo" | "/pull") || path.starts_with("/push/");
    if streams && !answer.uncork().await {
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
        (Method::Get | Method::Head, "/client/router-client.js") => client_js(&mut answer).await,
        (Method::Get | Method::Head, "/metrics") => metrics(&mut answer, &request, &params).await,
        (Method::Get | Method::Head, "/healthz") => answer.ok().await,
        // Not ready once draining: the listeners are closed, and a request already on its way
        // learns it here.
        (Method::Get | Method::Head, "/readyz") if shard.stopping.is_stopping() => {
            answer.refuse(Refusal::Draining).await
        }
        (Method::Get | Method::Head, "/readyz") => answer.ok().await,
        (Method::Get, "/tunnel") => attachment::open::open(&mut answer, &request, &params).await,
        (Method::Get, "/echo") if shard.config().conformance_echo => {
            websocket::echo(&mut answer, &request).await
        }
        (Method::Post, "/events") | (Method::Get, "/events") => {
            event(&mut answer, &request, &params).await
        }
        // Talk (docs/protocol.md, "Talk").
        (Method::Post, "/push") => talk::push(&mut answer, &request, &params).await,
        (Method::Get, "/pull") => talk::pull(&mut answer, &request, &params).await,
        // Push/pull sessions (docs/protocol.md, "Push/pull sessions").
        (Method::Get, p) if p.starts_with("/push/") => {
            session::push(&mut answer, &request, &p["/push/".len()..]).await
        }
        (Method::Post, p) if p.starts_with("/pull/") => {
            session::pull(&mut answer, &request, &p["/pull/".len()..]).await
        }
        (Method::Get, p) if session::start_path(p).is_some() => {
            let program = session::start_path(p).unwrap_or_default();
            session::start(&mut answer, program).await
        }
        (Method::Post, p) if p.starts_with("/publish/") => {
            publish(&mut answer, peer, &request, &p["/publish".len()..]).await
        }
        (Method::Post | Method::Get, p) if subscription_path(p).is_some() => {
            subscription(&mut answer, &request, &params).await
        }
        (Method::Post, p) if token_path(p).is_some() => {
            renew_token(&mut answer, &request, &params).await
        }
        (_, "/tunnel") if handshake::is_upgrade(&request.head) => {
            websocket::refuse(&mut answer, HandshakeError::BadMethod).await
        }
        (
            _,
            "/" | "/index.html" | "/client/router-client.js" | "/metrics" | "/healthz" | "/readyz",
        ) => answer.not_allowed("GET, HEAD, OPTIONS").await,
        (_, "/tunnel" | "/pull") => answer.not_allowed("GET, OPTIONS").await,
        (_, "/push") => answer.not_allowed("POST, OPTIONS").await,
        (_, p) if p.starts_with("/push/") => answer.not_allowed("GET, OPTIONS").await,
        (_, p) if p.starts_with("/pull/") => answer.not_allowed("POST, OPTIONS").await,
        (_, "/events") => answer.not_allowed("GET, POST, OPTIONS").await,
        (_, p) if p.starts_with("/publish/") => answer.not_allowed(PUBLISH_ALLOW).await,
        (_, p) if subscription_path(p).is_some() => answer.not_allowed("GET, POST, OPTIONS").await,
        (_, p) if token_path(p).is_some() => answer.not_allowed("POST, OPTIONS").await,
        _ => answer.refuse(Refusal::NotFound).await,
    }
}

/// The routes a page uses (tunnels, events, subscriptions, token renewal, Talk, sessions).
fn client_api(path: &str) -> bool {
    matches!(path, "/tunnel" | "/events" | "/push" | "/pull")
        || path.starts_with("/push/")
        || path.starts_with("/pull/")
        || subscription_path(path).is_some()
        || token_path(path).is_some()
        || session::start_path(path).is_some()
}

/// `GET /client/router-client.js`: the browser client, cacheable.
async fn client_js(answer: &mut Answer<'_>) -> Next {
    let auth = answer.shard.auth();
    let mut headers = with_cors(
        CLIENT_JS_HEADERS,
        answer.persist.cors,
        auth.origins_allowed(),
    )
    .into_owned();
    headers.extend_from_slice(answer.persist.plain_headers());
    let mut out = BytesMut::with_capacity(CLIENT_JS.len() + 256);
    write_full(
        &mut out,
        200,
        "text/javascript; charset=utf-8",
        CLIENT_JS.as_bytes(),
        answer.persist.keep_alive,
        &headers,
    );
    answer.send(out).await
}

/// `GET /metrics`: the Prometheus text format (0.0.4), or the JSON sum over shards for
/// `?format=json` or an `Accept` naming `application/json`.
async fn metrics(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    let shards = &answer.shard.shared.metrics;
    let accepts_json = request
        .head
        .header("accept")
        .is_some_and(|a| memchr::memmem::find(a, b"application/json").is_some());
    if params.get("format") == Some("json") || accepts_json {
        let body = metrics::to_json(shards, Refusal::LABELS);
        return answer.json(200, body.as_bytes()).await;
    }
    let process = metrics::Process {
        resident_bytes: os::resident_bytes(),
        open_fds: os::open_fds(),
        open_fds_max: os::open_files_limit(),
        draining: answer.shard.stopping.is_stopping(),
    };
    let body = metrics::to_prometheus(shards, Refusal::LABELS, process);
    let mut out = BytesMut::with_capacity(body.len() + 256);
    write_full(
        &mut out,
        200,
        metrics::PROMETHEUS_CONTENT_TYPE,
        body.as_bytes(),
        answer.persist.keep_alive,
        answer.persist.plain_headers(),
    );
    answer.send(out).await
}

/// CORS preflight answer headers (`*` becomes the allowed origin with `auth.origins_allowed`).
/// `Authorization` is allowed so that a page can send its token as a bearer.
const PREFLIGHT_HEADERS: &[(&str, &str)] = &[
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
    (
        "Access-Control-Allow-Headers",
        "Content-Type, Last-Event-ID, Authorization",
    ),
    ("Access-Control-Max-Age", "86400"),
];

async fn preflight(answer: &mut Answer<'_>) -> Next {
    no_content(answer, PREFLIGHT_HEADERS, true).await
}

/// What `/publish/...` takes.
const PUBLISH_ALLOW: &str = "POST, OPTIONS";
/// The preflight answer on `/publish/...`: it names the methods but grants no cross-origin
/// access, so a browser never sends the publish a page asks for (the backend API is not for
/// browsers; a simple request without preflight is refused for its `Origin` instead).
const PUBLISH_PREFLIGHT_HEADERS: &[(&str, &str)] = &[("Allow", PUBLISH_ALLOW)];

async fn publish_preflight(answer: &mut Answer<'_>) -> Next {
    // Never a grant: the backend API is not for browsers.
    no_content(answer, PUBLISH_PREFLIGHT_HEADERS, false).await
}

/// A 204 with `headers` (with the request's CORS grant when `grant`), then the keep-alive
/// acknowledgement HTTP/1.0 keep-alive clients need.
async fn no_content(answer: &mut Answer<'_>, headers: &[(&str, &str)], grant: bool) -> Next {
    let auth = answer.shard.auth();
    let cors = if grant {
        answer.persist.cors
    } else {
        Cors::Any
    };
    let mut all = with_cors(headers, cors, auth.origins_allowed()).into_owned();
    all.extend_from_slice(answer.persist.plain_headers());
    let mut out = BytesMut::new();
    http1::ResponseHead {
        status: 204,
        content_type: None,
        body: http1::ResponseBody::None,
        keep_alive: answer.persist.keep_alive,
        extra: &all,
    }
    .write(&mut out);
    answer.send(out).await
}
