//! `GET /tunnel`: opening and re-attaching tunnels, then serving them as a stream (SSE, NUL,
//! NDJSON, iframe, custom formats) or as a long-poll (JSON, JSONP).

use bytes::{BufMut, BytesMut};
use monoio::net::TcpStream;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use super::conn::{owner, Answer, Next, Owner, Params};
use super::reply::{send, API_HEADERS, JSONP_HEADERS};
use super::request::Request;
use crate::metrics::Metrics;
use crate::pubsub::Pattern;
use crate::shard::Shard;
use crate::tunnel::{Kick, TunnelId};
use crate::wire::datagram::{self, Datagram, GAP, KEEPALIVE};
use crate::wire::format::{put_poll_answer, Envelope, Format, IFRAME_CALLBACK_DEFAULT};
use crate::wire::http1::{ResponseBody, ResponseHead};

/// Largest batch written to a stream in one write.
const STREAM_BATCH_BYTES: usize = 64 * 1024;

/// Headers of streaming answers: never cached, never buffered by proxies (nginx honours
/// `X-Accel-Buffering`), usable cross-origin.
const STREAM_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
    ("Access-Control-Allow-Origin", "*"),
    ("X-Content-Type-Options", "nosniff"),
];

/// Handles `GET /tunnel?format=F[&id=ID&last=DID][&path=P...][&cb=CB][&ttl=MS]`.
pub async fn open(
    answer: &mut Answer<'_>,
    request: &Request,
    params: &Params<'_>,
    _buf: &mut BytesMut,
) -> Next {
    let shard = answer.shard.clone();
    let config = shard.config();
    let Some(format_name) = params.get("format") else {
        return answer.error(400, "missing format").await;
    };
    let Some(format) = shard.shared.formats.get(format_name) else {
        return answer.error(400, "unknown format").await;
    };
    if matches!(format, Format::Jsonp) && answer.cb.is_none() {
        return answer.error(400, "jsonp needs a cb parameter").await;
    }
    let mut patterns = Vec::new();
    for text in params.all("path") {
        match Pattern::parse(text) {
            Ok(p) if p.touches_private() => return answer.error(403, "path is private").await,
            Ok(p) => patterns.push(p),
            Err(e) => return answer.error(400, &e.to_string()).await,
        }
    }
    if patterns.len() > config.subscriptions_per_tunnel_max {
        return answer.error(429, "too many subscriptions").await;
    }
    let ttl_ms = match params.get("ttl").map(str::parse::<u64>) {
        None => config.longpoll_ttl_ms_default,
        Some(Ok(ttl)) => ttl.min(config.longpoll_ttl_ms_max),
        Some(Err(_)) => {
            return answer
                .error(400, "ttl must be a number of milliseconds")
                .await
        }
    };
    let last_event_id = request
        .head
        .header("last-event-id")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim);
    let last = params
        .get("last")
        .or(last_event_id)
        .filter(|l| !l.is_empty());

    // Re-attach to an existing tunnel, or open a new one.
    let existing = match params.get("id").map(|id| owner(&shard, id)) {
        Some(Owner::Remote(to)) => {
            return Next::Handoff(to, super::conn::clone_request(request));
        }
        Some(Owner::Local(id)) if shard.tunnel_exists(&id) => Some(id),
        Some(Owner::Local(_)) | Some(Owner::Nowhere) | None => None,
    };
    let (id, new) = match existing {
        Some(id) => (id, false),
        None => match shard.create_tunnel() {
            Ok(id) => (id, true),
            Err(e) => return answer.tunnel_error(e).await,
        },
    };
    for pattern in &patterns {
        if let Err(e) = shard.subscribe(&id, pattern) {
            return answer.tunnel_error(e).await;
        }
    }
    // A new tunnel starts after everything published before it opened: `last` means nothing.
    let gap = if new {
        false
    } else {
        shard
            .with_tunnel(&id, |t| t.seek(last.map(str::as_bytes)))
            .unwrap_or(false)
    };
    let id_text = id.to_string();
    let cb = match (&format, answer.cb.take()) {
        (Format::Iframe, None) => IFRAME_CALLBACK_DEFAULT.to_owned(),
        (_, cb) => cb.unwrap_or_default(),
    };
    let env = Envelope {
        cb: &cb,
        tunnel: &id_text,
    };
    let control = datagram::tunnel_control(&id_text, new, config.keepalive_ms);
    if format.is_stream() {
        let recycle_bytes = config.recycle_bytes_for(format.name());
        let http10 = request.head.version_minor == 0;
        stream(
            &shard,
            answer.stream,
            &format,
            &env,
            id,
            &control,
            gap,
            recycle_bytes,
            !http10 && answer.keep_alive,
            http10,
        )
        .await
    } else {
        let jsonp = matches!(format, Format::Jsonp).then_some(cb.as_str());
        let ctx = Poll_ {
            shard: &shard,
            id,
            id_text: &id_text,
            jsonp,
            keep_alive: answer.keep_alive,
        };
        if new {
            ctx.answer(answer.stream, &[&control[..]]).await
        } else {
            long_poll(ctx, answer.stream, gap, Duration::from_millis(ttl_ms)).await
        }
    }
}

/// Where a tunnel stands for its attached connection.
enum Wait {
    Ready,
    Kicked(Kick),
}

/// Resolves when tunnel `id` has unsent datagrams for attachment `token`, or the attachment must go.
async fn tunnel_ready(shard: &Shard, id: &TunnelId, token: u64) -> Wait {
    poll_fn(|cx| match shard.poll_attachment(id, token, cx.waker()) {
        Ok(true) => Poll::Ready(Wait::Ready),
        Ok(false) => Poll::Pending,
        Err(kick) => Poll::Ready(Wait::Kicked(kick)),
    })
    .await
}

/// Resolves when the peer sends something or closes: on a stream or a parked poll either ends
/// the attachment (browsers do not pipeline behind a pending response).
async fn peer_activity(stream: &TcpStream) {
    let _ = stream.readable(false).await;
}

/// Frames stream output as HTTP chunks (or raw bytes for close-delimited HTTP/1.0 answers).
struct ChunkFrame {
    chunked: bool,
}

/// Chunk-size field, written fixed-width so the size can be filled in after the payload (leading
/// zeros are valid chunk-size syntax).
const CHUNK_PREFIX_BYTES: usize = 10;

impl ChunkFrame {
    fn begin(&self, out: &mut BytesMut) -> usize {
        let start = out.len();
        if self.chunked {
            out.put_slice(b"00000000\r\n");
        }
        start
    }

    fn end(&self, out: &mut BytesMut, start: usize) {
        if !self.chunked {
            return;
        }
        let payload = out.len() - start - CHUNK_PREFIX_BYTES;
        if payload == 0 {
            out.truncate(start);
            return;
        }
        let size = format!("{payload:08x}");
        if let Some(field) = out.get_mut(start..start + 8) {
            field.copy_from_slice(size.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    shard: &std::rc::Rc<Shard>,
    stream: &mut TcpStream,
    format: &Format,
    env: &Envelope<'_>,
    id: TunnelId,
    control: &[u8],
    gap: bool,
    recycle_bytes: u64,
    keep_alive: bool,
    http10: bool,
) -> Next {
    let config = shard.config();
    let keepalive = Duration::from_millis(config.keepalive_ms);
    let token = shard.next_token();
    shard.attach(&id, token);
    let frame = ChunkFrame { chunked: !http10 };
    let mut out = BytesMut::with_capacity(2048);
    ResponseHead {
        status: 200,
        content_type: Some(format.content_type()),
        body: if http10 {
            ResponseBody::CloseDelimited
        } else {
            ResponseBody::Chunked
        },
        keep_alive,
        extra: STREAM_HEADERS,
    }
    .write(&mut out);
    let start = frame.begin(&mut out);
    format.put_header(&mut out, env);
    format.put_datagram(&mut out, control, None, env);
    if gap {
        format.put_datagram(&mut out, GAP, None, env);
    }
    frame.end(&mut out, start);

    let mut sent_bytes: u64 = 0;
    let mut next_keepalive = monoio::time::Instant::now() + keepalive;
    let end = loop {
        // Write whatever is queued, in bounded batches.
        let start = frame.begin(&mut out);
        let batch_start = out.len();
        shard.with_tunnel(&id, |t| {
            t.drain_unsent(usize::MAX, |d: &Datagram| {
                if out.len() - batch_start >= STREAM_BATCH_BYTES {
                    return false;
                }
                format.put_datagram(&mut out, d.json(), Some(d.id()), env);
                true
            })
        });
        let payload = (out.len() - batch_start) as u64;
        frame.end(&mut out, start);
        if !out.is_empty() {
            if !send(stream, std::mem::take(&mut out)).await {
                break StreamEnd::PeerGone;
            }
            sent_bytes += payload;
            next_keepalive = monoio::time::Instant::now() + keepalive;
            if recycle_bytes > 0 && sent_bytes >= recycle_bytes {
                Metrics::add(&shard.metrics.recycled, 1);
                break StreamEnd::Finish;
            }
            continue;
        }
        monoio::select! {
            wait = tunnel_ready(shard, &id, token) => match wait {
                Wait::Ready => {}
                Wait::Kicked(Kick::SlowConsumer) => {
                    Metrics::add(&shard.metrics.slow_consumer, 1);
                    break StreamEnd::PeerGone;
                }
                Wait::Kicked(Kick::Replaced) => {
                    Metrics::add(&shard.metrics.replaced, 1);
                    break StreamEnd::Finish;
                }
            },
            _ = monoio::time::sleep_until(next_keepalive) => {
                let start = frame.begin(&mut out);
                format.put_keepalive(&mut out, env);
                frame.end(&mut out, start);
                Metrics::add(&shard.metrics.keepalives, 1);
                next_keepalive += keepalive;
            },
            _ = peer_activity(stream) => break StreamEnd::PeerGone,
        }
    };
    shard.detach(&id, token);
    match end {
        StreamEnd::PeerGone => Next::Close,
        StreamEnd::Finish => {
            let mut out = BytesMut::new();
            let start = frame.begin(&mut out);
            format.put_footer(&mut out, env);
            frame.end(&mut out, start);
            if frame.chunked {
                out.put_slice(b"0\r\n\r\n");
            }
            if send(stream, out).await && keep_alive {
                Next::KeepAlive
            } else {
                Next::Close
            }
        }
    }
}

enum StreamEnd {
    /// The peer closed, failed, or was dropped as a slow consumer: close without a footer.
    PeerGone,
    /// End the response cleanly (recycling, or another connection took the tunnel).
    Finish,
}

/// A long-poll in progress.
#[allow(non_camel_case_types)]
struct Poll_<'a> {
    shard: &'a Shard,
    id: TunnelId,
    id_text: &'a str,
    jsonp: Option<&'a str>,
    keep_alive: bool,
}

impl Poll_<'_> {
    /// Answers with `head` control datagrams followed by queued datagrams (up to the batch limit).
    async fn answer(&self, stream: &mut TcpStream, head: &[&[u8]]) -> Next {
        let batch_max = self.shard.config().longpoll_batch_max;
        let mut queued: Vec<Datagram> = Vec::new();
        self.shard.with_tunnel(&self.id, |t| {
            t.drain_unsent(batch_max, |d| {
                queued.push(d.clone());
                true
            })
        });
        let messages = head
            .iter()
            .copied()
            .chain(queued.iter().map(|d| &d.json()[..]));
        let mut body = BytesMut::new();
        put_poll_answer(&mut body, self.jsonp, self.id_text, messages);
        let (content_type, headers) = match self.jsonp {
            Some(_) => ("application/javascript", JSONP_HEADERS),
            None => ("application/json", API_HEADERS),
        };
        let mut out = BytesMut::with_capacity(body.len() + 256);
        crate::wire::http1::write_full(
            &mut out,
            200,
            content_type,
            &body,
            self.keep_alive,
            headers,
        );
        match send(stream, out).await {
            true if self.keep_alive => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}

/// Answers at once when something is queued (or lost: a gap), else parks until something is,
/// the ttl passes (answered with a keepalive), or the peer goes away.
async fn long_poll(ctx: Poll_<'_>, stream: &mut TcpStream, gap: bool, ttl: Duration) -> Next {
    let shard = ctx.shard;
    let queued = shard
        .with_tunnel(&ctx.id, |t| t.has_unsent())
        .unwrap_or(false);
    if gap {
        return ctx.answer(stream, &[GAP]).await;
    }
    if queued {
        return ctx.answer(stream, &[]).await;
    }
    let token = shard.next_token();
    shard.attach(&ctx.id, token);
    let outcome = monoio::select! {
        wait = tunnel_ready(shard, &ctx.id, token) => Some(wait),
        _ = monoio::time::sleep(ttl) => None,
        _ = peer_activity(stream) => {
            shard.detach(&ctx.id, token);
            return Next::Close;
        },
    };
    shard.detach(&ctx.id, token);
    match outcome {
        Some(Wait::Ready) => ctx.answer(stream, &[]).await,
        Some(Wait::Kicked(kick)) => {
            let counter = match kick {
                Kick::SlowConsumer => &shard.metrics.slow_consumer,
                Kick::Replaced => &shard.metrics.replaced,
            };
            Metrics::add(counter, 1);
            ctx.answer(stream, &[KEEPALIVE]).await
        }
        None => ctx.answer(stream, &[KEEPALIVE]).await,
    }
}
