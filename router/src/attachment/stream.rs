//! The streaming transports (SSE, NUL, NDJSON, iframe, custom formats): one HTTP answer that
//! carries every datagram as it comes, chunked (or close-delimited for HTTP/1.0), with a
//! keepalive when nothing was written for a keepalive interval, and recycled after
//! `stream_recycle_bytes` so that proxies that buffer do not hold a stream forever.

use crate::limits::{DRAIN_RETRY_MS_MIN, DRAIN_RETRY_SPREAD_MS, STREAM_BATCH_BYTES};
use bytes::{BufMut, BytesMut};
use monoio::net::TcpStream;

use super::{count_kick, take_gap, written, Attached, Binding, Event, Next, Step, Transport};
use crate::metrics::{monotonic_ns, Metrics};
use crate::net::reply::with_cors;
use crate::net::sock::send_all;
use crate::shard::stop::Ending;
use crate::shard::Shard;
use crate::tunnel::{Attention, Kick};
use crate::wire::datagram::{Datagram, GAP, TOKEN_EXPIRED};
use crate::wire::format::Format;
use crate::wire::http1::{ResponseBody, ResponseHead};

/// `recycle_left` of a stream that is never recycled.
const NEVER_RECYCLED: u64 = u64::MAX;

/// Headers of streaming answers: never cached, never buffered by proxies (nginx honours
/// `X-Accel-Buffering`), usable cross-origin.
const STREAM_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
    ("Access-Control-Allow-Origin", "*"),
    ("X-Content-Type-Options", "nosniff"),
];

/// `messages_left` of a stream that is not ended after a number of datagrams.
const MESSAGES_UNCOUNTED: u32 = u32::MAX;

/// When a protocol adapter's stream ends so that its client opens the next one (a session's
/// push connection); 0 means never for each.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recycle {
    pub bytes: u64,
    pub messages: u32,
    /// Milliseconds after it opens. Such a stream carries no keepalive: it ends instead.
    pub after_ms: u64,
    /// The client has no tunnel id to re-attach with (a Talk pull): once the stream ends, the
    /// tunnel is culled at once instead of after its grace.
    pub for_good: bool,
}

/// A stream attachment's own state.
pub struct Stream {
    format: Format,
    /// Chunked (HTTP/1.1), or close-delimited (HTTP/1.0).
    chunked: bool,
    /// False for a stream that ends at its deadline instead of writing a keepalive.
    keepalives: bool,
    /// See [`Recycle::for_good`].
    for_good: bool,
    /// Datagrams the stream may still carry before it ends; [`MESSAGES_UNCOUNTED`] when it
    /// does not count them. Sits in what would be padding: the attachment does not grow.
    messages_left: u32,
    /// Payload bytes the stream may still carry before it ends so that the client opens a
    /// fresh one (`stream_recycle_bytes`); [`NEVER_RECYCLED`] when it is not recycled.
    recycle_left: u64,
}

impl Stream {
    /// A stream in `format`; `recycle_bytes` 0 means never recycled.
    pub(super) fn new(format: Format, chunked: bool, recycle_bytes: u64) -> Stream {
        Stream::recycled(
            format,
            chunked,
            Recycle {
                bytes: recycle_bytes,
                ..Recycle::default()
            },
        )
    }

    /// A stream in `format` that ends as `recycle` says.
    pub(super) fn recycled(format: Format, chunked: bool, recycle: Recycle) -> Stream {
        Stream {
            format,
            chunked,
            keepalives: recycle.after_ms == 0,
            for_good: recycle.for_good,
            messages_left: match recycle.messages {
                0 => MESSAGES_UNCOUNTED,
                messages => messages,
            },
            recycle_left: match recycle.bytes {
                0 => NEVER_RECYCLED,
                bytes => bytes,
            },
        }
    }

    pub(super) fn format(&self) -> &Format {
        &self.format
    }

    /// True when its tunnel goes with it (see [`Recycle::for_good`]).
    pub(super) fn for_good(&self) -> bool {
        self.for_good
    }

    /// Writes the stream's response head, format header, tunnel datagram (and gap), attaches,
    /// and hands the rest to the connection loop. `end_after_ms`: when a stream without
    /// keepalives ends.
    pub(super) async fn start(
        self,
        binding: Binding,
        shard: &Shard,
        stream: &TcpStream,
        control: &[u8],
        gap: bool,
        end_after_ms: u64,
    ) -> Next {
        let tunnel = binding.id.text();
        let env = binding.env(&tunnel);
        let mut out = BytesMut::with_capacity(2048);
        let auth = shard.auth();
        let headers = with_cors(STREAM_HEADERS, binding.persist.cors, auth.origins_allowed());
        ResponseHead {
            status: 200,
            content_type: Some(self.format.content_type()),
            body: if self.chunked {
                ResponseBody::Chunked
            } else {
                ResponseBody::CloseDelimited
            },
            keep_alive: binding.persist.keep_alive,
            extra: &headers,
        }
        .write(&mut out);
        let start = chunk_begin(self.chunked, &mut out);
        self.format.put_header(&mut out, &env);
        // An adapter whose protocol has no tunnel datagram passes none.
        if !control.is_empty() {
            self.format.put_datagram(&mut out, control, None, &env);
        }
        if gap {
            self.format.put_datagram(&mut out, GAP, None, &env);
        }
        chunk_end(self.chunked, &mut out, start);
        let keepalives = self.keepalives;
        let attached = Attached {
            binding,
            transport: Transport::Stream(self),
        };
        let next = attached.attach_with(shard, stream, out).await;
        if let (Next::Attached(a), false) = (&next, keepalives) {
            let end_ms = shard.now_ms() + end_after_ms;
            shard.set_deadline(&a.binding.id, a.binding.token, end_ms);
        }
        next
    }

    /// Handles one event. A stream reads nothing from its peer: the peer sending or closing
    /// ends it.
    pub(super) async fn step(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        stream: &TcpStream,
        event: Event,
    ) -> Step {
        let Event::Tunnel(wait) = event else {
            return Step::End(Next::Close);
        };
        let mut out = BytesMut::new();
        match wait {
            Ok(Attention::Data) => {
                if let Some(end) = self.write_batch(binding, shard, &mut out) {
                    if !binding.write_unless_kicked(shard, stream, out).await {
                        return Step::End(Next::Close);
                    }
                    if self.keepalives {
                        binding.arm_keepalive(shard);
                    }
                    if end {
                        Metrics::add(&shard.metrics.recycled, 1);
                        return Step::End(self.finish(binding, shard, stream).await);
                    }
                }
                Step::Wait
            }
            Ok(Attention::Deadline) | Ok(Attention::Idle) if !self.keepalives => {
                Metrics::add(&shard.metrics.recycled, 1);
                Step::End(self.finish(binding, shard, stream).await)
            }
            Ok(Attention::Deadline) | Ok(Attention::Idle) => {
                let start = chunk_begin(self.chunked, &mut out);
                self.format
                    .put_keepalive(&mut out, &binding.env(&binding.id.text()));
                chunk_end(self.chunked, &mut out, start);
                binding.send_keepalive(shard, stream, out).await
            }
            Err(kick) => {
                count_kick(shard, kick);
                match kick {
                    Kick::SlowConsumer => Step::End(Next::Close),
                    // The stream ends cleanly: its client re-attaches (elsewhere) with `last`.
                    Kick::Replaced | Kick::Stopping => {
                        Step::End(self.finish(binding, shard, stream).await)
                    }
                    Kick::TokenExpired => {
                        let mut out = BytesMut::new();
                        let start = chunk_begin(self.chunked, &mut out);
                        let id_text = binding.id.text();
                        let env = binding.env(&id_text);
                        self.format
                            .put_datagram(&mut out, TOKEN_EXPIRED, None, &env);
                        chunk_end(self.chunked, &mut out, start);
                        if !send_all(stream, out).await {
                            return Step::End(Next::Close);
                        }
                        Step::End(self.finish(binding, shard, stream).await)
                    }
                }
            }
        }
    }

    /// Appends queued datagrams (one bounded batch) to `out`. Returns `None` when nothing was
    /// queued, else whether the stream reached its recycle size.
    fn write_batch(
        &mut self,
        binding: &Binding,
        shard: &Shard,
        out: &mut BytesMut,
    ) -> Option<bool> {
        let tunnel = binding.id.text();
        let env = binding.env(&tunnel);
        let Stream {
            format,
            chunked,
            messages_left,
            recycle_left,
            ..
        } = self;
        let start = chunk_begin(*chunked, out);
        let batch_start = out.len();
        let now_ns = monotonic_ns();
        shard.with_tunnel(&binding.id, |t| {
            if take_gap(shard, t) {
                format.put_datagram(out, GAP, None, &env);
            }
            t.drain_unsent(usize::MAX, |d: &Datagram| {
                let batch_bytes = out.len() - batch_start;
                // The stream ends right after the datagram that crosses the recycle size.
                let full = batch_bytes >= STREAM_BATCH_BYTES || *messages_left == 0;
                if full || batch_bytes as u64 >= *recycle_left {
                    return false;
                }
                format.put_published(out, d, &env);
                if *messages_left != MESSAGES_UNCOUNTED {
                    *messages_left = messages_left.saturating_sub(1);
                }
                written(shard, d, now_ns);
                true
            })
        });
        let payload = (out.len() - batch_start) as u64;
        chunk_end(*chunked, out, start);
        if payload == 0 {
            return None;
        }
        if *recycle_left != NEVER_RECYCLED {
            *recycle_left = recycle_left.saturating_sub(payload);
        }
        Some(*recycle_left == 0 || *messages_left == 0)
    }

    /// Ends the stream cleanly: footer, then the last chunk. A draining router first tells an
    /// SSE client when to reconnect (`retry:`, in milliseconds, spread at random so that its
    /// clients do not all come back in the same second).
    async fn finish(&self, binding: &Binding, shard: &Shard, stream: &TcpStream) -> Next {
        let mut out = BytesMut::new();
        let start = chunk_begin(self.chunked, &mut out);
        if matches!(self.format, Format::Sse) && shard.stopping.ending() == Some(Ending::Drain) {
            let retry_ms = DRAIN_RETRY_MS_MIN + shard.random_u64() % DRAIN_RETRY_SPREAD_MS;
            out.put_slice(format!("retry: {retry_ms}\n\n").as_bytes());
        }
        self.format
            .put_footer(&mut out, &binding.env(&binding.id.text()));
        chunk_end(self.chunked, &mut out, start);
        if self.chunked {
            out.put_slice(b"0\r\n\r\n");
        }
        if send_all(stream, out).await && binding.persist.keep_alive && self.chunked {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

/// Frames stream output as HTTP chunks (or raw bytes for close-delimited HTTP/1.0 answers).
/// The chunk-size field is written fixed-width so the size can be filled in after the payload
/// (leading zeros are valid chunk-size syntax).
const CHUNK_PREFIX_BYTES: usize = 10;

fn chunk_begin(chunked: bool, out: &mut BytesMut) -> usize {
    let start = out.len();
    if chunked {
        out.put_slice(b"00000000\r\n");
    }
    start
}

fn chunk_end(chunked: bool, out: &mut BytesMut, start: usize) {
    if !chunked {
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
