//! One HTTP connection: reads requests, routes them and answers. A request about a tunnel that
//! another shard owns moves the whole connection to that shard; a request that attaches a
//! tunnel keeps the connection in the attachment's wait until the attachment ends.

use crate::limits::{LINGER_BYTES_MAX, LINGER_MS};
use bytes::BytesMut;
use monoio::net::TcpStream;
use std::future::Future;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::api::route;
use crate::attachment::{Attached, Event, Next, Step};
use crate::metrics::Metrics;
use crate::net::answer::Pipeline;
use crate::net::reply::{self, send, Persist};
use crate::net::request::{read_request, Read, Request};
use crate::refusal::Refusal;
use crate::shard::mesh::{Handoff, Peer, ShardMsg};
use crate::shard::Shard;
use crate::wire::http1;

/// Keeps `connections_open` right however the connection ends; the connection's handle on its
/// shard.
struct OpenGuard(Rc<Shard>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        Metrics::sub(&self.0.metrics.connections_open, 1);
    }
}

/// Serves a connection until it closes or moves to another shard. `first` is a request already
/// read (by the shard that handed the connection over) and `buf` the bytes read past it.
///
/// This future lives as long as the connection and is most of what an idle tunnel costs, so
/// it holds only the connection and, while a tunnel is attached, the attachment and its wait;
/// every other phase runs in a boxed future that exists only while that phase does.
pub fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    peer: Peer,
    mut first: Option<Box<Request>>,
    buf: BytesMut,
) -> impl Future<Output = ()> {
    Metrics::add(&shard.metrics.connections_open, 1);
    let open = OpenGuard(shard);
    // Boxed: rare, and 8 bytes here rather than two buffers' 64 for every connection.
    let mut rest = (!buf.is_empty()).then(|| {
        Box::new(Pipeline {
            input: buf,
            ..Pipeline::default()
        })
    });
    // An async block rather than an async fn: it uses what it captures in place, where an async
    // fn would keep a second copy of its arguments in its state.
    async move {
        let shard = &open.0;
        loop {
            let request = match first.take() {
                Some(r) => r,
                None => match boxed_read(shard, &mut stream, &mut rest).await {
                    Read::Request(r) => r,
                    Read::Closed => return,
                    Read::Failed(e) => {
                        boxed_refuse(shard, &mut stream, &mut rest, e).await;
                        return;
                    }
                },
            };
            let next = match boxed_route(shard, &mut stream, peer, request, &mut rest).await {
                Next::Attached(attached) => {
                    let mut attached = unbox(attached);
                    // One readiness poll, armed until the peer sends or closes: handling the
                    // tunnel's events never awaits the socket mutably (see `sock`), so the poll
                    // is not cancelled and re-armed at every delivery.
                    let mut peer = std::pin::pin!(stream.readable(false));
                    let next = loop {
                        let event = attached.wait(shard, peer.as_mut()).await;
                        let peer_fired = matches!(event, Event::Peer);
                        if let Step::End(next) = attached.step(shard, &stream, event).await {
                            break next;
                        }
                        if peer_fired {
                            peer.set(stream.readable(false));
                        }
                    };
                    attached.detach(shard);
                    next
                }
                next => next,
            };
            match next {
                Next::KeepAlive => {}
                Next::Close | Next::Attached(_) => return,
                Next::Handoff(to, request) => {
                    let rest = rest.map_or_else(BytesMut::new, |p| p.input);
                    boxed_handoff(shard, stream, peer, request, rest, to).await;
                    return;
                }
            }
        }
    }
}

/// Moves a value out of its box and frees the box at once (a box moved out of in an async fn
/// keeps its memory until the end of the binding's scope).
#[allow(
    clippy::boxed_local,
    reason = "taking the box is the point: it is freed before the attachment's long wait"
)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

// The connection task lives as long as the connection, so it must stay small: each phase runs
// in a boxed future that exists only while that phase does. The boxes are built in plain
// functions because a future created in an async fn's frame keeps its full size reserved there
// even after it is moved into a box.

fn boxed_read<'a>(
    shard: &'a Shard,
    stream: &'a mut TcpStream,
    rest: &'a mut Option<Box<Pipeline>>,
) -> Boxed<'a, Read> {
    Box::pin(async move {
        let Pipeline {
            input: mut buf,
            mut corked,
            corked_at,
        } = rest.take().map(unbox).unwrap_or_default();
        let read = read_request(shard, stream, &mut buf, &mut corked).await;
        if buf.is_empty() && corked.is_empty() {
            // Nothing pipelined: hold no buffer while the request is served or we wait.
            shard.give_read_buffer(buf);
        } else {
            *rest = Some(Box::new(Pipeline {
                input: buf,
                corked,
                corked_at,
            }));
        }
        read
    })
}

/// Routes a request. A connection that is not kept for the next request (it closes, moves to
/// another shard or attaches) first gets the answers still corked for the requests before.
fn boxed_route<'a>(
    shard: &'a Rc<Shard>,
    stream: &'a mut TcpStream,
    peer: Peer,
    request: Box<Request>,
    rest: &'a mut Option<Box<Pipeline>>,
) -> Boxed<'a, Next> {
    Box::pin(async move {
        let next = match route(shard, stream, peer, request, rest.as_deref_mut()).await {
            Next::Attached(attached) => early_frames(shard, stream, attached, rest).await,
            next => next,
        };
        let next = match rest.as_deref_mut() {
            Some(p) if !matches!(next, Next::KeepAlive) && !p.corked.is_empty() => {
                if reply::uncork(stream, &mut p.corked).await {
                    next
                } else {
                    if let Next::Attached(attached) = next {
                        attached.detach(shard);
                    }
                    return Next::Close;
                }
            }
            _ => next,
        };
        // An answer that ends the connection (`Connection: close`, HTTP/1.0, an error) while
        // the client has already sent more (pipelined requests, a body we did not read): linger
        // as after a refusal, so the kernel's reset cannot destroy the last answer.
        if matches!(next, Next::Close) {
            let pipelined = rest.as_ref().is_some_and(|p| !p.input.is_empty());
            if pipelined || crate::net::sock::has_unread(stream) {
                linger_close(stream).await;
            }
        }
        next
    })
}

/// Hands the bytes read behind a WebSocket upgrade request (frames the client sent before it
/// saw the 101) to the new attachment, which handles them at once: the connection's readiness
/// poll would not fire for bytes already read. Other attachments give the bytes back: they are
/// the next request, read once the attachment ends.
async fn early_frames(
    shard: &Shard,
    stream: &TcpStream,
    mut attached: Box<Attached>,
    rest: &mut Option<Box<Pipeline>>,
) -> Next {
    let Some(pipeline) = rest.as_deref_mut().filter(|p| !p.input.is_empty()) else {
        return Next::Attached(attached);
    };
    let input = std::mem::take(&mut pipeline.input);
    let stepped = match attached.early_frames(shard, stream, input) {
        Ok(step) => {
            // `/tunnel` wrote the answers owed before it: only the early frames were left.
            debug_assert!(
                pipeline.corked.is_empty(),
                "answers were corked behind an upgrade"
            );
            *rest = None;
            Some(step.await)
        }
        Err(input) => {
            pipeline.input = input;
            None
        }
    };
    match stepped {
        None | Some(Step::Wait) => Next::Attached(attached),
        Some(Step::End(next)) => {
            attached.detach(shard);
            next
        }
    }
}

/// Answers a request that could not be read (after the answers still corked), then closes.
/// Counted as failed, or as aborted when the client went away partway through it.
fn boxed_refuse<'a>(
    shard: &'a Shard,
    stream: &'a mut TcpStream,
    rest: &'a mut Option<Box<Pipeline>>,
    e: http1::HttpError,
) -> Boxed<'a, ()> {
    let counter = match e {
        http1::HttpError::Aborted(_) => &shard.metrics.requests_aborted,
        _ => &shard.metrics.requests_failed,
    };
    Metrics::add(counter, 1);
    Refusal::Http(e).count(&shard.metrics);
    Box::pin(async move {
        let mut out = rest.take().map(|p| p.corked).unwrap_or_default();
        out.unsplit(reply::error(e.status(), e.message(), None, Persist::CLOSE));
        if send(stream, out).await {
            linger_close(stream).await;
        }
    })
}

/// Closes after an error answer without destroying it: closing a socket with unread input
/// makes the kernel send a reset, which can discard the answer before the client reads it
/// (RFC 9112 §9.6). So: stop writing, then read and drop what the client still sends, bounded
/// in bytes and time.
async fn linger_close(stream: &mut TcpStream) {
    use monoio::io::AsyncWriteRent;
    if stream.shutdown().await.is_err() {
        return;
    }
    // Real time: the linger waits on the peer's socket, not on a tunnel.
    let deadline = monoio::time::Instant::now() + Duration::from_millis(LINGER_MS);
    let mut drained = 0;
    let mut buf = BytesMut::with_capacity(4096);
    while drained < LINGER_BYTES_MAX {
        buf.clear();
        match monoio::time::timeout_at(deadline, crate::net::request::read_more(stream, &mut buf))
            .await
        {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

fn boxed_handoff(
    shard: &Rc<Shard>,
    stream: TcpStream,
    peer: Peer,
    request: Box<Request>,
    buf: BytesMut,
    to: usize,
) -> Boxed<'_, ()> {
    Box::pin(handoff(shard, stream, peer, request, buf, to))
}

/// Moves the connection to shard `to`. Refused with 503 when the ring to it is full.
async fn handoff(
    shard: &Rc<Shard>,
    mut stream: TcpStream,
    peer: Peer,
    request: Box<Request>,
    buf: BytesMut,
    to: usize,
) {
    if !shard.has_room(to) {
        Metrics::add(&shard.metrics.ring_full, 1);
        send(
            &mut stream,
            reply::error(503, "shard ring full", None, Persist::CLOSE),
        )
        .await;
        return;
    }
    let fd = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up monoio's ownership of this open socket; it is now ours alone.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let msg = ShardMsg::Handoff(Box::new(Handoff {
        stream: std_stream,
        peer,
        request,
        rest: buf.freeze(),
    }));
    if shard.send(to, msg).is_err() {
        // Room was checked above and this shard is the ring's only producer.
        debug_assert!(false, "handoff ring full after its check");
        tracing::warn!(to, "handoff ring full after check; the socket closes");
    } else {
        Metrics::add(&shard.metrics.handoffs_out, 1);
    }
}

#[cfg(test)]
mod idle_budget {
    //! An idle tunnel's connection is its task's future (the attachment and its wait included):
    //! keep it within a budget, since it is multiplied by the number of idle tunnels.

    use std::sync::Arc;

    /// Bytes budgeted for a connection task's future, attached or not, and for the attachment
    /// it holds.
    const SERVE_FUTURE_BYTES_MAX: usize = 400;
    const ATTACHED_BYTES_MAX: usize = 72;

    #[test]
    fn idle_connection_future_stays_within_budget() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client = monoio::net::TcpStream::connect(addr)
                .await
                .expect("connect");
            let shared = Arc::new(crate::shard::Shared::new(
                1,
                crate::shard::settings::Settings {
                    config: crate::config::Config::default(),
                    formats: Default::default(),
                    auth: Arc::new(crate::auth::Auth::open()),
                    tls: None,
                    programs: Default::default(),
                },
            ));
            let wakers: Arc<[atomic_waker::AtomicWaker]> = Arc::from(vec![Default::default()]);
            let shard = crate::shard::Shard::new(0, shared, vec![None], wakers);
            let peer = super::Peer::of(addr);
            let serve = super::serve(shard, client, peer, None, bytes::BytesMut::new());
            let serve = std::mem::size_of_val(&serve);
            let attached = std::mem::size_of::<crate::attachment::Attached>();
            eprintln!("serve future: {serve} bytes, attachment: {attached} bytes");
            assert!(
                attached <= ATTACHED_BYTES_MAX,
                "attachment is {attached} bytes"
            );
            assert!(
                serve <= SERVE_FUTURE_BYTES_MAX,
                "serve future is {serve} bytes"
            );
        });
    }
}
