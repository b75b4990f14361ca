//! WebSocket tunnels and the conformance echo: the upgrade, then one loop per connection that
//! writes datagrams as frames, pings for liveness, and reads the client's control messages.

use crate::limits::{CLOSE_WAIT_BYTES_MAX, CLOSE_WAIT_MS, PINGS_UNANSWERED_MAX};
use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use std::time::Duration;

use super::{
    count_kick, take_gap, written, Attached, Binding, Boxed, Event, Next, Step, Transport,
};
use crate::admission;
use crate::auth::Grant;
use crate::metrics::Metrics;
use crate::net::answer::Answer;
use crate::net::reply;
use crate::net::request::Request;
use crate::net::sock::{self, send_all};
use crate::pubsub::{path, Pattern};
use crate::refusal::Refusal;
use crate::shard::stop::Ending;
use crate::shard::{PublishError, Published, Shard};
use crate::tunnel::{Attention, Kick};
use crate::wire::datagram::{Datagram, GAP, TOKEN_EXPIRED};
use crate::wire::http1::write_full;
use crate::wire::json;
use crate::wire::websocket::close::put_close;
use crate::wire::websocket::decoder::{Decoder, Message, Role};
use crate::wire::websocket::deflate::{self, Params};
use crate::wire::websocket::frame::{put_frame, put_header};
use crate::wire::websocket::handshake::{self, Accepted, HandshakeError};
use crate::wire::websocket::{Limits, OpCode, WsError};

/// Close codes we send (RFC 6455 §7.4.1; 1012 from the IANA registry).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_SERVICE_RESTART: u16 = 1012;

/// Answers a refused upgrade with its status (400, 426) and a JSON error, then closes.
pub async fn refuse(answer: &mut Answer<'_>, e: HandshakeError) -> Next {
    Metrics::add(&answer.shard.metrics.requests_failed, 1);
    let mut body = BytesMut::new();
    body.extend_from_slice(br#"{"ok":false,"error":"#);
    reply::put_json_string(&mut body, e.message());
    body.extend_from_slice(b"}");
    let mut out = BytesMut::with_capacity(body.len() + 256);
    write_full(
        &mut out,
        e.status(),
        "application/json",
        &body,
        false,
        e.headers(),
    );
    reply::send(answer.stream, out).await;
    Next::Close
}

/// A WebSocket attachment's own state. While idle it holds no buffer: the read buffer and the
/// message decoder exist only while a client message is arriving.
pub struct WsState {
    deflate: Option<Params>,
    incoming: Option<Box<Incoming>>,
    /// Path that binary frames publish to (`{"type":"target","path":P}`). A boxed `String`, 8
    /// bytes here rather than a `Box<str>`'s 16: most tunnels never set one, and every idle
    /// WebSocket tunnel carries this field.
    #[allow(
        clippy::box_collection,
        reason = "a thin pointer keeps idle tunnels small"
    )]
    target: Option<Box<String>>,
    pings_unanswered: u8,
}

/// A client message on its way in: the bytes read so far and the decoder's progress.
struct Incoming {
    read: BytesMut,
    decoder: Decoder,
}

impl WsState {
    pub fn new(deflate: Option<Params>) -> WsState {
        WsState {
            deflate,
            incoming: None,
            target: None,
            pings_unanswered: 0,
        }
    }
}

fn limits(shard: &Shard) -> Limits {
    Limits {
        frame_bytes_max: shard.config().websocket_frame_bytes_max,
        message_bytes_max: shard.config().websocket_message_bytes_max,
    }
}

/// Appends one unfragmented message, compressed (with the negotiated window) when deflate was
/// negotiated.
fn put_message(out: &mut BytesMut, opcode: OpCode, payload: &[u8], deflate: Option<Params>) {
    if let Some(params) = deflate {
        let mut compressed = BytesMut::new();
        deflate::compress(payload, params.server_max_window_bits, &mut compressed);
        put_header(out, opcode, true, true, compressed.len());
        out.extend_from_slice(&compressed);
    } else {
        put_frame(out, opcode, true, false, payload);
    }
}

/// Appends a datagram: a binary frame with its raw bytes, or a text frame with its JSON.
fn put_datagram(out: &mut BytesMut, datagram: &Datagram, deflate: Option<Params>) {
    match datagram.binary() {
        Some(raw) => put_message(out, OpCode::Binary, raw, deflate),
        None => put_message(out, OpCode::Text, datagram.json(), deflate),
    }
}

/// Reads what the client sent; false when the peer is gone.
async fn read_client(shard: &Shard, stream: &TcpStream, state: &mut WsState) -> bool {
    let deflate = state.deflate;
    let incoming = state.incoming.get_or_insert_with(|| {
        Box::new(Incoming {
            read: shard.take_read_buffer(),
            decoder: Decoder::new(Role::Server, limits(shard), deflate),
        })
    });
    matches!(sock::recv(stream, &mut incoming.read).await, Ok(n) if n > 0)
}

/// Decodes the next complete message from what was read, giving the buffer back once no
/// message is partly read.
fn next_message(shard: &Shard, state: &mut WsState) -> Result<Option<Message>, WsError> {
    let Some(incoming) = state.incoming.as_mut() else {
        return Ok(None);
    };
    let message = incoming.decoder.decode(&mut incoming.read)?;
    if message.is_none() && !incoming.decoder.in_message() && incoming.read.is_empty() {
        if let Some(done) = state.incoming.take() {
            shard.give_read_buffer(done.read);
        }
    }
    Ok(message)
}

/// Ends a connection after a protocol error: a close frame with the error's code, then the
/// client's close (bounded in time), then the socket.
async fn fail(stream: &TcpStream, code: u16, reason: &str) -> Next {
    let mut out = BytesMut::new();
    put_close(&mut out, code, reason);
    if send_all(stream, out).await {
        await_close(stream).await;
    }
    Next::Close
}

fn boxed_fail<'a>(stream: &'a TcpStream, code: u16, reason: &'a str) -> Boxed<'a, Next> {
    Box::pin(fail(stream, code, reason))
}

/// Waits (bounded) for the client's close frame after ours, discarding what comes before it,
/// then lets the caller close the socket (RFC 6455 §7.1.1: the server closes first).
async fn await_close(stream: &TcpStream) {
    // Real time: the wait is for the peer's socket, not for a tunnel's deadline.
    let deadline = monoio::time::Instant::now() + Duration::from_millis(CLOSE_WAIT_MS);
    let limits = Limits {
        frame_bytes_max: CLOSE_WAIT_BYTES_MAX,
        message_bytes_max: CLOSE_WAIT_BYTES_MAX,
    };
    let mut decoder = Decoder::new(Role::Server, limits, None);
    let mut buf = BytesMut::with_capacity(256);
    let mut read_bytes = 0;
    while read_bytes < CLOSE_WAIT_BYTES_MAX {
        match monoio::time::timeout_at(deadline, sock::recv(stream, &mut buf)).await {
            Ok(Ok(n)) if n > 0 => read_bytes += n,
            _ => return,
        }
        // After a protocol error the client's bytes may not parse (the rest of an oversized
        // frame, say): then only its end of stream ends the wait, since closing with unread
        // input would reset the connection and could destroy our close frame.
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Message::Close(_))) => return,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    buf.clear();
                    break;
                }
            }
        }
    }
}

/// Answers a client's close frame by echoing its code (1000 when it gave none).
async fn answer_close(stream: &TcpStream, close: Option<(u16, String)>) -> Next {
    let mut out = BytesMut::new();
    put_close(&mut out, close.map_or(CLOSE_NORMAL, |(code, _)| code), "");
    send_all(stream, out).await;
    Next::Close
}

impl WsState {
    /// Writes the 101 answer, the tunnel datagram (and gap) as text frames, attaches, arms the
    /// first ping, and hands the rest to the connection loop.
    pub(super) async fn start(
        self,
        binding: Binding,
        shard: &Shard,
        stream: &TcpStream,
        accepted: &Accepted,
        control: &[u8],
        gap: bool,
    ) -> Next {
        let deflate = accepted.deflate;
        let mut out = BytesMut::with_capacity(512);
        handshake::put_response(&mut out, accepted);
        put_message(&mut out, OpCode::Text, control, deflate);
        if gap {
            put_message(&mut out, OpCode::Text, GAP, deflate);
        }
        let attached = Attached {
            binding,
            transport: Transport::WebSocket(self),
        };
        attached.attach_with(shard, stream, out).await
    }

    /// Handles the frames a client sent right behind its upgrade request, read with it (a
    /// client should wait for the 101, but nothing is lost or misread when it does not).
    /// `input` becomes the start of the message decoder's buffer.
    pub(super) async fn early_frames(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
        input: BytesMut,
    ) -> Step {
        debug_assert!(
            self.incoming.is_none(),
            "no frame was read before the attachment"
        );
        self.incoming = Some(Box::new(Incoming {
            read: input,
            decoder: Decoder::new(Role::Server, limits(shard), self.deflate),
        }));
        match self.handle_client(binding, shard, stream).await {
            Some(next) => Step::End(next),
            None => Step::Wait,
        }
    }

    /// Handles one event of a WebSocket attachment: the client's frames, datagrams to send, a
    /// ping due, or the end.
    pub(super) async fn step(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
        event: Event,
    ) -> Step {
        let deflate = self.deflate;
        let wait = match event {
            Event::Peer => {
                if !read_client(shard, stream, self).await {
                    return Step::End(Next::Close);
                }
                return match self.handle_client(binding, shard, stream).await {
                    Some(next) => Step::End(next),
                    None => Step::Wait,
                };
            }
            Event::Tunnel(wait) => wait,
        };
        match wait {
            Ok(Attention::Data) => {
                let mut out = BytesMut::new();
                let now_ns = crate::metrics::monotonic_ns();
                shard.with_tunnel(&binding.id, |t| {
                    if take_gap(shard, t) {
                        put_message(&mut out, OpCode::Text, GAP, deflate);
                    }
                    t.drain_unsent(usize::MAX, |d| {
                        if out.len() >= crate::limits::STREAM_BATCH_BYTES {
                            return false;
                        }
                        put_datagram(&mut out, d, deflate);
                        written(shard, d, now_ns);
                        true
                    })
                });
                if !out.is_empty() && !binding.write_unless_kicked(shard, stream, out).await {
                    return Step::End(Next::Close);
                }
                Step::Wait
            }
            Ok(Attention::Deadline) | Ok(Attention::Idle) => {
                if self.pings_unanswered >= PINGS_UNANSWERED_MAX {
                    Metrics::add(&shard.metrics.ping_timeouts, 1);
                    return Step::End(boxed_fail(stream, CLOSE_GOING_AWAY, "no pong").await);
                }
                self.pings_unanswered += 1;
                let mut out = BytesMut::new();
                put_frame(&mut out, OpCode::Ping, true, false, b"");
                binding.send_keepalive(shard, stream, out).await
            }
            Err(kick) => {
                count_kick(shard, kick);
                match kick {
                    Kick::SlowConsumer => Step::End(Next::Close),
                    Kick::Replaced => Step::End(boxed_fail(stream, CLOSE_NORMAL, "replaced").await),
                    Kick::TokenExpired => {
                        let mut out = BytesMut::new();
                        put_message(&mut out, OpCode::Text, TOKEN_EXPIRED, self.deflate);
                        if !send_all(stream, out).await {
                            return Step::End(Next::Close);
                        }
                        Step::End(boxed_fail(stream, CLOSE_POLICY, "token expired").await)
                    }
                    Kick::Stopping => {
                        let (code, reason) = match shard.stopping.ending() {
                            Some(Ending::Drain) => (CLOSE_SERVICE_RESTART, "service restart"),
                            _ => (CLOSE_GOING_AWAY, "server stopping"),
                        };
                        Step::End(boxed_fail(stream, code, reason).await)
                    }
                }
            }
        }
    }

    /// Handles every complete client message in the read buffer. `Some(next)` ends the
    /// connection.
    async fn handle_client(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
    ) -> Option<Next> {
        let deflate = self.deflate;
        loop {
            let message = match next_message(shard, self) {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(e) => return Some(fail(stream, e.close_code(), &e.to_string()).await),
            };
            let mut out = BytesMut::new();
            match message {
                Message::Ping(payload) => put_frame(&mut out, OpCode::Pong, true, false, &payload),
                Message::Pong(_) => self.pings_unanswered = 0,
                Message::Close(close) => return Some(answer_close(stream, close).await),
                Message::Text(text) => {
                    let depth_max = shard.config().json_depth_max;
                    let answer = match json::parse_message_fields(&text, depth_max) {
                        Ok(fields) => self.control_message(binding, shard, fields).await,
                        Err(e) => Err(Refusal::from(e)),
                    };
                    let answer = match answer {
                        Ok(answer) => answer,
                        // Past a limit, like an oversized message: the connection ends (1009).
                        Err(refusal @ Refusal::JsonTooDeep) => {
                            refusal.count(&shard.metrics);
                            let code = refusal.close_code();
                            return Some(fail(stream, code, refusal.message()).await);
                        }
                        Err(refusal) => error_json(shard, refusal),
                    };
                    if !answer.is_empty() {
                        put_message(&mut out, OpCode::Text, &answer, deflate);
                    }
                }
                Message::Binary(raw) => {
                    let answer = match self.binary_message(binding, shard, raw).await {
                        Ok(answer) => answer,
                        Err(refusal) => error_json(shard, refusal),
                    };
                    put_message(&mut out, OpCode::Text, &answer, deflate);
                }
            }
            if !out.is_empty() && !send_all(stream, out).await {
                return Some(Next::Close);
            }
        }
    }

    /// A text message's fields: `subscribe`, `unsubscribe`, `publish` or `target`. Returns the
    /// answer's JSON (empty when none is due); a refused message gets `{"type":"error"}` and
    /// keeps the tunnel.
    async fn control_message(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        fields: json::Fields,
    ) -> Result<BytesMut, Refusal> {
        let path_text = fields.path.as_deref();
        match fields.kind.as_deref() {
            Some(kind @ ("subscribe" | "unsubscribe")) => {
                let pattern = Pattern::parse(path_text.ok_or(Refusal::MissingPath)?)?;
                let allowed = |g: &Grant| g.may_subscribe(&pattern);
                if kind == "subscribe" && shard.grant_of(&binding.id).is_some_and(|g| !allowed(&g))
                {
                    return Err(Refusal::PathNotAllowed);
                }
                shard.charge_event(&binding.id)?;
                if kind == "subscribe" {
                    shard.subscribe(&binding.id, &pattern)?;
                } else {
                    shard.unsubscribe(&binding.id, &pattern)?;
                }
                Ok(BytesMut::new())
            }
            Some("target") => {
                let text = path_text.ok_or(Refusal::MissingPath)?;
                path::validate(text)?;
                self.target = Some(Box::new(text.to_owned()));
                Ok(BytesMut::new())
            }
            Some("publish") => {
                let text = path_text.ok_or(Refusal::MissingPath)?;
                let data = fields.data.ok_or(Refusal::MissingData)?;
                may_publish(shard, binding, text)?;
                admission::publish(shard, text, &data)?;
                shard.charge_event(&binding.id)?;
                ack(shard.publish(text, &data)).await
            }
            Some(_) => Err(Refusal::UnknownMessageType),
            None => Err(Refusal::MissingType),
        }
    }

    /// A binary message: published, raw, to the last `target`.
    async fn binary_message(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        raw: Bytes,
    ) -> Result<BytesMut, Refusal> {
        let target = self.target.clone().ok_or(Refusal::BinaryNeedsTarget)?;
        may_publish(shard, binding, &target)?;
        admission::publish(shard, &target, &raw)?;
        shard.charge_event(&binding.id)?;
        ack(shard.publish_binary(&target, &raw)).await
    }
}

/// Whether the tunnel's grant (when it was opened with a token) lets it publish on `path`; its
/// own private path is always allowed.
fn may_publish(shard: &Shard, binding: &Binding, path: &str) -> Result<(), Refusal> {
    let Some(grant) = shard.grant_of(&binding.id) else {
        return Ok(());
    };
    let own_private = path
        .strip_prefix(path::PRIVATE_PREFIX)
        .is_some_and(|id| id == binding.id.text().as_str());
    if own_private || grant.may_publish(path) {
        Ok(())
    } else {
        Err(Refusal::PathNotAllowed)
    }
}

/// `{"type":"ack","id":"<DID>"}` once a publish is delivered or queued.
async fn ack(published: Result<Published, PublishError>) -> Result<BytesMut, Refusal> {
    let id = match published? {
        Published::Done(id) => id,
        Published::Remote(id, delivered) => match delivered.await {
            Ok(true) => id,
            _ => return Err(Refusal::UnknownTunnel),
        },
    };
    Ok(BytesMut::from(
        format!(r#"{{"type":"ack","id":"{id}"}}"#).as_bytes(),
    ))
}

/// `{"type":"error","error":...}` for a refused client message, counted.
fn error_json(shard: &Shard, refusal: Refusal) -> BytesMut {
    refusal.count(&shard.metrics);
    let mut out = BytesMut::new();
    out.extend_from_slice(br#"{"type":"error","error":"#);
    reply::put_json_string(&mut out, refusal.message());
    out.extend_from_slice(b"}");
    out
}

/// `GET /echo` (with `--conformance-echo`): a WebSocket that echoes every message, through the
/// same codec, limits and deflate negotiation as tunnels. For conformance suites.
pub async fn echo(answer: &mut Answer<'_>, request: &Request) -> Next {
    let shard = answer.shard.clone();
    let accepted = match handshake::validate(&request.head, shard.config().websocket_deflate) {
        Ok(a) => a,
        Err(e) => return refuse(answer, e).await,
    };
    let stream = &*answer.stream;
    let mut out = BytesMut::new();
    handshake::put_response(&mut out, &accepted);
    if !send_all(stream, out).await {
        return Next::Close;
    }
    let mut state = WsState::new(accepted.deflate);
    let deflate = accepted.deflate;
    loop {
        if !read_client(&shard, stream, &mut state).await {
            return Next::Close;
        }
        loop {
            let message = match next_message(&shard, &mut state) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return fail(stream, e.close_code(), &e.to_string()).await,
            };
            let mut out = BytesMut::new();
            match message {
                Message::Text(t) => put_message(&mut out, OpCode::Text, &t, deflate),
                Message::Binary(b) => put_message(&mut out, OpCode::Binary, &b, deflate),
                Message::Ping(p) => put_frame(&mut out, OpCode::Pong, true, false, &p),
                Message::Pong(_) => continue,
                Message::Close(close) => return answer_close(stream, close).await,
            }
            if !send_all(stream, out).await {
                return Next::Close;
            }
        }
    }
}
