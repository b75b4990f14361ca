//! `GET /tunnel`: opening a tunnel or re-attaching to one (with replay from `last`), then
//! handing it to its transport: a stream, a long-poll, or a WebSocket.

use std::rc::Rc;

use crate::auth::Grant;
use crate::metrics::Metrics;
use crate::net::answer::Answer;
use crate::net::reply::Persist;
use crate::net::request::Request;
use crate::pubsub::Pattern;
use crate::refusal::Refusal;
use crate::shard::mesh::Owner;
use crate::shard::Shard;
use crate::tunnel::TunnelId;
use crate::wire::datagram::{self, GAP};
use crate::wire::format::{Format, IFRAME_CALLBACK_DEFAULT};
use crate::wire::query::Params;
use crate::wire::websocket::handshake;

use super::longpoll::Poll;
use super::stream::{Recycle, Stream};
use super::websocket::{self, WsState};
use super::{format_label, Attached, Binding, Callback, Next, Transport, WS_LABEL};

/// Handles `GET /tunnel?format=F[&id=ID&last=DID][&path=P...][&cb=CB][&ttl=MS]`.
pub async fn open(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    let shard = answer.shard.clone();
    let config = shard.config();
    // A draining shard has ended its attachments and would not end a new one.
    if shard.stopping.is_stopping() {
        return answer.refuse(Refusal::Draining).await;
    }
    // `format=ws`, or any `GET /tunnel` carrying upgrade headers, is a WebSocket tunnel.
    let websocket = params.get("format") == Some("ws") || handshake::is_upgrade(&request.head);
    let upgrade = if websocket {
        match handshake::validate(&request.head, config.websocket_deflate) {
            Ok(accepted) => Some(accepted),
            Err(e) => return websocket::refuse(answer, e).await,
        }
    } else {
        None
    };
    let format = match params.get("format") {
        _ if websocket => Format::Ndjson,
        None => return answer.refuse(Refusal::MissingFormat).await,
        Some(name) => match shard.formats().get(name) {
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
    let existing = match params.get("id").map(|id| shard.owner(id)) {
        Some(Owner::Remote(to)) => {
            return Next::Handoff(to, Box::new(request.clone()));
        }
        Some(Owner::Local(id)) if shard.tunnel_exists(&id) => Some(id),
        Some(Owner::Local(_)) | Some(Owner::Nowhere) | None => None,
    };
    // The token is checked where the tunnel lives, once the request reached its owner shard.
    let grant = match shard.check_token(&request.head, params) {
        Ok(grant) => grant,
        Err(e) => return answer.refuse(Refusal::from(e)).await,
    };
    if let Some(grant) = &grant {
        if patterns.iter().any(|p| !grant.may_subscribe(p)) {
            return answer.refuse(Refusal::PathNotAllowed).await;
        }
    }
    let (id, new) = match existing {
        Some(id) => {
            // A tunnel id alone re-attaches nothing: the token must be its user's.
            if let Some(grant) = &grant {
                match shard.grant_of(&id) {
                    Some(held) if held.sub == grant.sub => shard.set_grant(&id, grant.clone()),
                    _ => return answer.refuse(Refusal::TunnelNotYours).await,
                }
            }
            (id, false)
        }
        None => match open_tunnel(&shard, grant.as_ref()).await {
            Ok(id) => (id, true),
            Err(refusal) => return answer.refuse(refusal).await,
        },
    };
    for pattern in &patterns {
        if let Err(e) = shard.subscribe(&id, pattern) {
            return answer.refuse(Refusal::from(e)).await;
        }
    }
    let label = if upgrade.is_some() {
        WS_LABEL
    } else {
        format_label(&format)
    };
    shard.metrics.attachments.add(label, 1);
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
    if !new {
        let metrics = &shard.metrics;
        Metrics::add(&metrics.tunnels_reattached, 1);
        let replayed = shard.with_tunnel(&id, |t| t.unsent_count());
        Metrics::add(&metrics.replayed, replayed.unwrap_or(0));
        if gap {
            Metrics::add(&metrics.gaps, 1);
        }
    }
    let cb = Callback::new(match (&format, answer.cb.take()) {
        (Format::Iframe, None) => Some(IFRAME_CALLBACK_DEFAULT.to_owned()),
        (_, cb) => cb,
    });
    let control = datagram::tunnel_control(id_text.as_str(), new, config.keepalive_ms);
    let token = shard.next_token();
    if let Some(accepted) = upgrade {
        let binding = Binding {
            id,
            token,
            persist: Persist::CLOSE,
            cb,
        };
        let ws = WsState::new(accepted.deflate);
        ws.start(binding, &shard, answer.stream, &accepted, &control, gap)
            .await
    } else if format.is_stream() {
        let http10 = answer.persist.http10;
        let persist = answer.persist.for_stream();
        let binding = Binding {
            id,
            token,
            persist,
            cb,
        };
        let recycle_bytes = config.recycle_bytes_for(format.name());
        let stream = Stream::new(format, !http10, recycle_bytes);
        stream
            .start(binding, &shard, answer.stream, &control, gap, 0)
            .await
    } else {
        let binding = Binding {
            id,
            token,
            persist: answer.persist,
            cb,
        };
        let poll = Poll {
            jsonp: matches!(format, Format::Jsonp),
        };
        let stream = &*answer.stream;
        if new {
            poll.answer(&binding, &shard, stream, &[&control[..]]).await
        } else if gap {
            poll.answer(&binding, &shard, stream, &[GAP]).await
        } else if shard.with_tunnel(&id, |t| t.has_unsent()) == Some(true) {
            poll.answer(&binding, &shard, stream, &[]).await
        } else {
            // Park: the connection loop waits for datagrams, the ttl or the peer.
            shard.attach(&id, token);
            shard.set_deadline(&id, token, shard.now_ms() + ttl_ms);
            shard.metrics.attachments_open.add(label, 1);
            Next::Attached(Box::new(Attached {
                binding,
                transport: Transport::Poll(poll),
            }))
        }
    }
}

/// Serves tunnel `id` (of this shard) as a stream in `format` for a protocol adapter (Talk's
/// `/pull`, a session's push connection): the stream carries no tunnel datagram, since those
/// protocols have none, and ends as `recycle` says.
pub async fn adapter_stream(
    answer: &mut Answer<'_>,
    id: TunnelId,
    format: Format,
    recycle: Recycle,
) -> Next {
    let shard = answer.shard.clone();
    let http10 = answer.persist.http10;
    let persist = answer.persist.for_stream();
    let binding = Binding {
        id,
        token: shard.next_token(),
        persist,
        cb: Callback::new(None),
    };
    shard.metrics.attachments.add(format_label(&format), 1);
    let stream = Stream::recycled(format, !http10, recycle);
    stream
        .start(binding, &shard, answer.stream, b"", false, recycle.after_ms)
        .await
}

/// Opens a new tunnel: admitted by the node's new-tunnel rate, counted against its user's
/// allowance (at the user's home shard) when it comes with a token, then created here.
pub async fn open_tunnel(shard: &Shard, grant: Option<&Rc<Grant>>) -> Result<TunnelId, Refusal> {
    if shard.admit_new_tunnel().is_err() {
        return Err(Refusal::Admission);
    }
    if let Some(grant) = grant {
        shard.reserve_user(grant).await?;
    }
    match shard.create_tunnel() {
        Ok(id) => {
            if let Some(grant) = grant {
                shard.set_grant(&id, grant.clone());
            }
            Ok(id)
        }
        Err(e) => {
            if let Some(grant) = grant {
                shard.release_user(grant.sub.clone());
            }
            Err(Refusal::from(e))
        }
    }
}
