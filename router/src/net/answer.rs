//! Answering one request: the per-request context handlers write through (HEAD without body,
//! JSONP callback, keep-alive), the answers corked behind pipelined requests, refusals with
//! their status and counters, and what the connection does next.

use crate::limits::{
    ADMISSION_RETRY_S_MAX, ADMISSION_RETRY_S_MIN, CORKED_BYTES_MAX, CORKED_DELIVERIES_MAX,
};
use bytes::BytesMut;
use monoio::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use crate::metrics::Metrics;
use crate::net::reply::{self, send, Persist};
use crate::net::request::Request;
use crate::refusal::Refusal;
use crate::shard::Shard;
use crate::wire::http1::HttpError;

/// What the connection does after a request. `A` is an attached tunnel, a type of the floor
/// above (`attachment::Attached`, boxed): this floor only carries it back to the loop.
pub enum Next<A> {
    /// Read the next request.
    KeepAlive,
    Close,
    /// Move to shard `.0`, which owns the tunnel the request is about.
    Handoff(usize, Box<Request>),
    /// Serve an attached tunnel (a stream, a parked long-poll, a WebSocket) until it ends.
    Attached(A),
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
    pub corked_at: u64,
}

/// Per-request answering context.
pub struct Answer<'a> {
    pub shard: &'a Rc<Shard>,
    /// Handlers that write to it other than through `send` call `uncork` first.
    pub stream: &'a mut TcpStream,
    /// Present when the connection has pipelined: answers may be corked there.
    pub pipeline: Option<&'a mut Pipeline>,
    pub persist: Persist,
    /// A HEAD request: answers carry no body.
    pub head_only: bool,
    /// Valid JSONP callback, when the request asked for one.
    pub cb: Option<String>,
}

impl Answer<'_> {
    fn next<A>(&self) -> Next<A> {
        if self.persist.keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Sends a complete answer (without its body for HEAD) and says what comes next. When
    /// another request is already buffered and the connection stays open, the answer is corked
    /// instead: it goes out with the next one written.
    pub async fn send<A>(&mut self, mut out: BytesMut) -> Next<A> {
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

    pub async fn json<A>(&mut self, status: u16, body: &[u8]) -> Next<A> {
        let auth = self.shard.auth();
        let origins = auth.origins_allowed();
        let out = reply::json_with(status, body, self.cb.as_deref(), self.persist, &[], origins);
        self.send(out).await
    }

    /// Answers a refusal with its status and error text, and counts it. A 401 carries its
    /// `WWW-Authenticate` challenge; a refused new tunnel its `Retry-After`, spread over
    /// [`ADMISSION_RETRY_S_MIN`]..=[`ADMISSION_RETRY_S_MAX`] so that refused clients do not all
    /// come back in the same second.
    pub async fn refuse<A>(&mut self, refusal: Refusal) -> Next<A> {
        if let Some(challenge) = refusal.challenge() {
            return self
                .refuse_with(refusal, &[("WWW-Authenticate", challenge)])
                .await;
        }
        if refusal == Refusal::Admission {
            let spread = ADMISSION_RETRY_S_MAX - ADMISSION_RETRY_S_MIN + 1;
            let retry_s = ADMISSION_RETRY_S_MIN + self.shard.random_u64() % spread;
            let retry = retry_s.to_string();
            return self.refuse_with(refusal, &[("Retry-After", &retry)]).await;
        }
        self.refuse_with(refusal, &[]).await
    }

    /// 405, with the methods the resource does allow (RFC 9110 §15.5.6).
    pub async fn not_allowed<A>(&mut self, allow: &'static str) -> Next<A> {
        let refusal = Refusal::Http(HttpError::MethodNotAllowed);
        self.refuse_with(refusal, &[("Allow", allow)]).await
    }

    /// [`Answer::refuse`] with extra headers.
    async fn refuse_with<A>(&mut self, refusal: Refusal, extra: &[(&str, &str)]) -> Next<A> {
        Metrics::add(&self.shard.metrics.requests_failed, 1);
        refusal.count(&self.shard.metrics);
        let auth = self.shard.auth();
        let out = reply::error_with(
            refusal.status(),
            refusal.message(),
            self.cb.as_deref(),
            self.persist,
            extra,
            auth.origins_allowed(),
        );
        self.send(out).await
    }

    /// 202 with the id of the datagram published.
    pub async fn accepted<A>(&mut self, id: impl std::fmt::Display) -> Next<A> {
        let body = format!(r#"{{"ok":true,"id":"{id}"}}"#);
        self.json(202, body.as_bytes()).await
    }

    pub async fn ok<A>(&mut self) -> Next<A> {
        self.json(200, br#"{"ok":true}"#).await
    }
}
