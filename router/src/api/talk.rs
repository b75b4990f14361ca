//! Talk, a comet stream protocol: `POST /push` publishes its raw body as one message on a path,
//! `GET /pull` is a chunked stream of every message published on the path, each its bytes and
//! a NUL. Both take `?path=` (default `/talk`): a Talk room is a path. An adapter only: a pull is
//! a tunnel subscribed to the path, a push is a binary publish on it, with the same checks and
//! limits as the tunnel API.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;

use crate::admission;
use crate::attachment::open::{adapter_stream, open_tunnel};
use crate::attachment::stream::Recycle;
use crate::attachment::Next;
use crate::net::answer::Answer;
use crate::net::request::Request;
use crate::pubsub::{path, Pattern};
use crate::refusal::Refusal;
use crate::shard::{PublishError, Published, Shard};
use crate::wire::format::{CustomFormat, Format};
use crate::wire::query::Params;
use crate::wire::template::{Part, Template};

use super::publish::answer_publish;

/// The room of a request without `?path=`.
pub const TALK_PATH_DEFAULT: &str = "/talk";

/// Each message as published, then a NUL. Control datagrams have no payload: a keepalive is
/// an empty message, which a push can never be.
static TALK_FORMAT: LazyLock<Arc<CustomFormat>> = LazyLock::new(|| {
    Arc::new(CustomFormat {
        name: "talk".to_owned(),
        content_type: "application/octet-stream".to_owned(),
        header: Template::default(),
        envelope: Template::from_parts(vec![Part::Data, Part::Literal(Bytes::from_static(b"\0"))]),
        keepalive: Template::default(),
        footer: Template::default(),
        html_escape: false,
    })
});

/// `POST /push[?path=P]`: the body is one message, published as it is on `P`.
pub(super) async fn push(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    match push_message(answer.shard, request, params) {
        Ok(published) => answer_publish(answer, published).await,
        Err(refusal) => answer.refuse(refusal).await,
    }
}

fn push_message(
    shard: &Shard,
    request: &Request,
    params: &Params<'_>,
) -> Result<Result<Published, PublishError>, Refusal> {
    let room = params.get("path").unwrap_or(TALK_PATH_DEFAULT);
    path::validate(room)?;
    // A private path is a tunnel's (or a session's) own: a Talk client has none to name.
    if path::is_private(room) {
        return Err(Refusal::PrivatePath);
    }
    if let Some(grant) = shard.check_token(&request.head, params)? {
        if !grant.may_publish(room) {
            return Err(Refusal::PathNotAllowed);
        }
    }
    let message = &request.body[..];
    if message.is_empty() {
        return Err(Refusal::TalkEmpty);
    }
    if memchr::memchr(0, message).is_some() {
        return Err(Refusal::TalkNul);
    }
    admission::publish(shard, room, message)?;
    Ok(shard.publish_binary(room, message))
}

/// `GET /pull[?path=P]`: a new tunnel subscribed to `P`, streamed in the Talk envelope from now
/// on (a pull has no resume: what was published before it opened is not sent), and culled as
/// soon as the pull ends.
pub(super) async fn pull(answer: &mut Answer<'_>, request: &Request, params: &Params<'_>) -> Next {
    let shard = answer.shard.clone();
    if shard.stopping.is_stopping() {
        return answer.refuse(Refusal::Draining).await;
    }
    let room = match Pattern::parse(params.get("path").unwrap_or(TALK_PATH_DEFAULT)) {
        Ok(p) if p.touches_private() => return answer.refuse(Refusal::PrivatePath).await,
        Ok(p) => p,
        Err(e) => return answer.refuse(Refusal::from(e)).await,
    };
    let grant = match shard.check_token(&request.head, params) {
        Ok(grant) => grant,
        Err(e) => return answer.refuse(Refusal::from(e)).await,
    };
    if grant.as_ref().is_some_and(|g| !g.may_subscribe(&room)) {
        return answer.refuse(Refusal::PathNotAllowed).await;
    }
    let id = match open_tunnel(&shard, grant.as_ref()).await {
        Ok(id) => id,
        Err(refusal) => return answer.refuse(refusal).await,
    };
    if let Err(e) = shard.subscribe(&id, &room) {
        return answer.refuse(Refusal::from(e)).await;
    }
    let format = Format::Custom(TALK_FORMAT.clone());
    // The client has no tunnel id: the tunnel ends with its pull.
    let recycle = Recycle {
        for_good: true,
        ..Recycle::default()
    };
    adapter_stream(answer, id, format, recycle).await
}
