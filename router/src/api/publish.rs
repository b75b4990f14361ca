//! The publish API: `POST|GET /events` (a client publishes through its tunnel),
//! `POST /publish/<path>` (the backend publishes), and `/tunnel/<id>/subscribe` and
//! `/unsubscribe`. A request about a tunnel another shard owns moves there.

use crate::admission;
use crate::attachment::Next;
use std::rc::Rc;

use crate::auth::Grant;
use crate::net::answer::Answer;
use crate::net::request::Request;
use crate::pubsub::{path, Pattern};
use crate::refusal::Refusal;
use crate::shard::mesh::{Owner, Peer};
use crate::shard::{PublishError, Published, Shard};
use crate::tunnel::TunnelId;
use crate::wire::http1::Method;
use crate::wire::json;
use crate::wire::query::Params;

/// `/tunnel/<id>/subscribe` or `/unsubscribe` → `(id, subscribe?)`.
pub(super) fn subscription_path(p: &str) -> Option<(&str, bool)> {
    let rest = p.strip_prefix(path::PRIVATE_PREFIX)?;
    let (id, action) = rest.split_once('/')?;
    match action {
        "subscribe" => Some((id, true)),
        "unsubscribe" => Some((id, false)),
        _ => None,
    }
}

/// `/tunnel/<id>/token` → `id`.
pub(super) fn token_path(p: &str) -> Option<&str> {
    p.strip_prefix(path::PRIVATE_PREFIX)?.strip_suffix("/token")
}

/// `POST /tunnel/<id>/token`: a fresh token (carried as when opening: `Authorization: Bearer`,
/// the cookie or `?token=`) for a tunnel whose token is about to expire. The token's `sub` must
/// be the tunnel's; its grant replaces the old one. Answers `{"ok":true,"exp":<unix seconds>}`.
pub(super) async fn renew_token(
    answer: &mut Answer<'_>,
    request: &Request,
    params: &Params<'_>,
) -> Next {
    match renew(answer.shard, request, params) {
        Ok(Routed::Here(exp_s)) => {
            let body = format!(r#"{{"ok":true,"exp":{exp_s}}}"#);
            answer.json(200, body.as_bytes()).await
        }
        Ok(Routed::Handoff(to)) => Next::Handoff(to, Box::new(request.clone())),
        Err(refusal) => answer.refuse(refusal).await,
    }
}

fn renew(shard: &Shard, request: &Request, params: &Params<'_>) -> Result<Routed<u64>, Refusal> {
    let tunnel = token_path(request.head.path()).ok_or(Refusal::NotFound)?;
    let id = match local_tunnel(shard, tunnel)? {
        Routed::Here(id) => id,
        Routed::Handoff(to) => return Ok(Routed::Handoff(to)),
    };
    let grant = tunnel_user(shard, request, params, &id)?.ok_or(Refusal::TokensOff)?;
    let exp_s = grant.exp_s;
    shard.set_grant(&id, grant);
    Ok(Routed::Here(exp_s))
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
    match shard.owner(text) {
        Owner::Local(id) => Ok(Routed::Here(id)),
        Owner::Remote(to) => Ok(Routed::Handoff(to)),
        Owner::Nowhere => Err(Refusal::UnknownTunnel),
    }
}

/// When tokens are required, the grant of the request's token, which must be the tunnel's
/// user's: a tunnel id alone publishes and subscribes nothing. `None` when tokens are off.
fn tunnel_user(
    shard: &Shard,
    request: &Request,
    params: &Params<'_>,
    id: &TunnelId,
) -> Result<Option<Rc<Grant>>, Refusal> {
    let Some(grant) = shard.check_token(&request.head, params)? else {
        return Ok(None);
    };
    if !shard.tunnel_exists(id) {
        return Err(Refusal::UnknownTunnel);
    }
    match shard.grant_of(id) {
        Some(held) if held.sub == grant.sub => Ok(Some(grant)),
        _ => Err(Refusal::TunnelNotYours),
    }
}

/// `POST /events` and `GET /events`: a client publishes through its tunnel.
pub(super) async fn event(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    match publish_event(answer.shard, request, params) {
        Ok(Routed::Here(published)) => answer_publish(answer, published).await,
        Ok(Routed::Handoff(to)) => Next::Handoff(to, Box::new(request.clone())),
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
    if let Some(grant) = tunnel_user(shard, request, params, &id)? {
        let own_private = path.strip_prefix(path::PRIVATE_PREFIX) == Some(tunnel.as_str());
        if !own_private && !grant.may_publish(&path) {
            return Err(Refusal::PathNotAllowed);
        }
    }
    admission::publish(shard, &path, &data)?;
    shard.charge_event(&id)?;
    Ok(Routed::Here(shard.publish(&path, &data)))
}

/// Answers a publish: 202 with the datagram id once it is delivered or queued. A publish to
/// the private path of a tunnel on another shard waits for that shard to confirm the tunnel
/// exists, so the answer is the same whichever shard the request reached.
pub(super) async fn answer_publish(
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

/// `POST /publish/<path>`: the backend publish API: for a publisher key when `[auth]` names a
/// keys file, otherwise for loopback peers; never for a browser.
pub(super) async fn publish(
    answer: &mut Answer<'_>,
    peer: Peer,
    request: &Request,
    path: &str,
) -> Next {
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
    // A browser names the page's origin (and, in a fetch, its site); a backend does not.
    // Without this, any page open in a browser on the router's host could publish with a
    // simple `text/plain` POST.
    let head = &request.head;
    let fetched_by_page = head
        .header("sec-fetch-site")
        .is_some_and(|site| site != b"none");
    if head.header("origin").is_some() || fetched_by_page {
        return Err(Refusal::PublishFromBrowser);
    }
    let auth = shard.auth();
    if auth.has_publish_keys() {
        // With keys, a backend may publish from anywhere, but only with one of them.
        if !auth.publish_key_valid(head) {
            return Err(Refusal::PublishKeyInvalid);
        }
    } else if !peer.loopback {
        return Err(Refusal::PublishNotLoopback);
    }
    // The path is checked before the body is parsed.
    path::validate(path)?;
    let data = json::compact(&request.body, shard.config().json_depth_max)?;
    admission::publish(shard, path, &data)?;
    Ok(shard.publish(path, &data))
}

/// `/tunnel/<id>/subscribe` and `/unsubscribe`, body `{"path":P}` or `?path=P`.
pub(super) async fn subscription(
    answer: &mut Answer<'_>,
    request: &Request,
    params: &Params<'_>,
) -> Next {
    match change_subscription(answer.shard, request, params) {
        Ok(Routed::Here(())) => answer.ok().await,
        Ok(Routed::Handoff(to)) => Next::Handoff(to, Box::new(request.clone())),
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
    if let Some(grant) = tunnel_user(shard, request, params, &id)? {
        if subscribe && !grant.may_subscribe(&pattern) {
            return Err(Refusal::PathNotAllowed);
        }
    }
    shard.charge_event(&id)?;
    if subscribe {
        shard.subscribe(&id, &pattern)?;
    } else {
        shard.unsubscribe(&id, &pattern)?;
    }
    Ok(Routed::Here(()))
}
