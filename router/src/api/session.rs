//! Push/pull sessions: `GET /<n>/<program>` starts a session of a configured program and
//! answers its client JavaScript with the session id in it; `GET /push/<session>` is the push
//! connection, which the server ends on its own after a number of messages, bytes or
//! milliseconds so that nothing is dropped (what comes between two push connections waits in
//! the session's replay buffer); `POST /pull/<session>` sends a message to the program's
//! backend. An adapter only: a session is a tunnel (its id is the session id), a backend sends
//! to it on its private path `/tunnel/<session>`, and it receives on
//! `/programs/<program>/<session>`.

use bytes::BytesMut;

use crate::admission;
use crate::attachment::open::adapter_stream;
use crate::attachment::stream::Recycle;
use crate::attachment::Next;
use crate::net::answer::Answer;
use crate::net::request::Request;
use crate::refusal::Refusal;
use crate::shard::mesh::Owner;
use crate::shard::sessions::Program;
use crate::tunnel::TunnelId;
use crate::wire::format::Format;
use crate::wire::http1::write_full;
use crate::wire::json;

use super::publish::answer_publish;

/// Digits of the `<n>` in `/<n>/<program>`, which the router does not interpret.
const SESSION_N_DIGITS_MAX: usize = 9;

/// Where the session id goes in a program's client code.
const SESSION_PLACEHOLDER: &[u8] = b"{session}";

/// The path prefix of the messages a session's client sends its backend.
pub const PROGRAMS_PREFIX: &str = "/programs/";

/// `/<n>/<program>` (n: 1 to 9 digits) → the program's name.
pub(super) fn start_path(p: &str) -> Option<&str> {
    let (n, program) = p.strip_prefix('/')?.split_once('/')?;
    let n_ok =
        (1..=SESSION_N_DIGITS_MAX).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit());
    (n_ok && !program.is_empty() && !program.contains('/')).then_some(program)
}

/// `GET /<n>/<program>`: a new session, answered with the program's client code.
pub(super) async fn start(answer: &mut Answer<'_>, program: &str) -> Next {
    let shard = answer.shard.clone();
    if shard.stopping.is_stopping() {
        return answer.refuse(Refusal::Draining).await;
    }
    // A session has no user a token could be checked against on its push and pull requests,
    // so a router that requires tokens serves none rather than open a way around them.
    if shard.auth().tokens_required() {
        return answer.refuse(Refusal::SessionsNeedNoTokens).await;
    }
    let Some(program) = shard.program(program) else {
        return answer.refuse(Refusal::UnknownProgram).await;
    };
    if shard.admit_new_tunnel().is_err() {
        return answer.refuse(Refusal::Admission).await;
    }
    let id = match shard.create_session(&program) {
        Ok(id) => id,
        Err(e) => return answer.refuse(Refusal::from(e)).await,
    };
    let body = client_code(&program, id.text().as_str());
    let mut headers = vec![
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ];
    headers.extend_from_slice(answer.persist.plain_headers());
    let mut out = BytesMut::with_capacity(body.len() + 256);
    let content_type = "application/javascript; charset=utf-8";
    let keep_alive = answer.persist.keep_alive;
    write_full(&mut out, 200, content_type, &body, keep_alive, &headers);
    answer.send(out).await
}

/// The program's client code with every `{session}` replaced by `session`.
fn client_code(program: &Program, session: &str) -> Vec<u8> {
    let code = &program.client[..];
    let mut out = Vec::with_capacity(code.len() + session.len());
    let mut start = 0;
    for at in memchr::memmem::find_iter(code, SESSION_PLACEHOLDER) {
        out.extend_from_slice(code.get(start..at).unwrap_or_default());
        out.extend_from_slice(session.as_bytes());
        start = at + SESSION_PLACEHOLDER.len();
    }
    out.extend_from_slice(code.get(start..).unwrap_or_default());
    out
}

/// The session a request names, on this shard; or where it lives; or why there is none.
enum Found {
    Here(TunnelId, std::sync::Arc<Program>),
    Handoff(usize),
}

fn find(answer: &Answer<'_>, session: &str) -> Result<Found, Refusal> {
    let shard = answer.shard;
    let id = match shard.owner(session) {
        Owner::Local(id) => id,
        Owner::Remote(to) => return Ok(Found::Handoff(to)),
        Owner::Nowhere => return Err(Refusal::UnknownSession),
    };
    match shard.session_program(&id) {
        Some(program) => Ok(Found::Here(id, program)),
        None => Err(Refusal::UnknownSession),
    }
}

/// `GET /push/<session>`: the push connection, an NDJSON stream of the datagrams sent to the
/// session (no tunnel datagram), which ends as the program's `push_*` keys say. A new push
/// connection replaces the one before.
pub(super) async fn push(answer: &mut Answer<'_>, request: &Request, session: &str) -> Next {
    let (id, program) = match find(answer, session) {
        Ok(Found::Here(id, program)) => (id, program),
        Ok(Found::Handoff(to)) => return Next::Handoff(to, Box::new(request.clone())),
        Err(refusal) => return answer.refuse(refusal).await,
    };
    let recycle = Recycle {
        bytes: program.push_bytes_max,
        messages: program.push_messages_max,
        after_ms: program.push_ms_max,
        // The session waits for its next push connection.
        for_good: false,
    };
    adapter_stream(answer, id, Format::Ndjson, recycle).await
}

/// `POST /pull/<session>`: the JSON body is published on `/programs/<program>/<session>`, where
/// the program's backend subscribes. Answered like a publish (202 with the datagram id).
pub(super) async fn pull(answer: &mut Answer<'_>, request: &Request, session: &str) -> Next {
    let (id, program) = match find(answer, session) {
        Ok(Found::Here(id, program)) => (id, program),
        Ok(Found::Handoff(to)) => return Next::Handoff(to, Box::new(request.clone())),
        Err(refusal) => return answer.refuse(refusal).await,
    };
    let shard = answer.shard;
    let path = format!("{PROGRAMS_PREFIX}{}/{session}", program.name);
    let published = json::compact(&request.body, shard.config().json_depth_max)
        .map_err(Refusal::from)
        .and_then(|data| {
            admission::publish(shard, &path, &data)?;
            // The session's own event budget, as for `/events` through a tunnel.
            shard.charge_event(&id)?;
            Ok(shard.publish(&path, &data))
        });
    match published {
        Ok(published) => answer_publish(answer, published).await,
        Err(refusal) => answer.refuse(refusal).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn start_paths() {
        assert_eq!(start_path("/5/prog"), Some("prog"));
        assert_eq!(start_path("/123456789/a-b"), Some("a-b"));
        for no in [
            "/prog",
            "/5/",
            "/5",
            "//prog",
            "/x/prog",
            "/1234567890/prog",
            "/5/a/b",
            "5/a",
        ] {
            assert_eq!(start_path(no), None, "{no}");
        }
    }

    #[test]
    fn every_placeholder_gets_the_session_id() {
        let program = Program {
            name: "p".to_owned(),
            client: Bytes::from_static(b"a={session};b='{session}';{sess}"),
            push_messages_max: 1,
            push_bytes_max: 0,
            push_ms_max: 0,
        };
        assert_eq!(
            client_code(&program, "0-1-ff"),
            b"a=0-1-ff;b='0-1-ff';{sess}"
        );
        let plain = Program {
            client: Bytes::from_static(b"no placeholder"),
            ..program
        };
        assert_eq!(client_code(&plain, "0-1-ff"), b"no placeholder");
    }
}
