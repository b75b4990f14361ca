//! Reading one request (head and body) from a connection, with the head and body bounds and the
//! header-read and idle timeouts applied. Nothing is buffered while a connection is idle.

use crate::limits::{READ_BURST_BYTES_MAX, READ_CHUNK_BYTES};
use bytes::{Buf, Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::time::Duration;

use crate::net::reply;
pub use crate::wire::http1::Request;
use crate::wire::http1::{self, BodyKind, ChunkedDecoder, Decoded, HttpError, Status};

/// What reading a request produced.
pub enum Read {
    /// Boxed: a connection task holds this across awaits, and is kept small.
    Request(Box<Request>),
    /// The peer closed, or stayed idle past the idle timeout, between requests.
    Closed,
    /// The request could not be read ([`HttpError::Aborted`] when the peer went away partway
    /// through it); it is answered with the error, then the connection closes.
    Failed(HttpError),
}

/// Reads into the spare capacity of `buf`; returns bytes read (0 at end of stream). A read
/// that fills the spare capacity doubles it for the next one, up to `READ_BURST_BYTES_MAX`.
pub async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 2 {
        buf.reserve(READ_CHUNK_BYTES);
    }
    let len = buf.len();
    let spare = buf.capacity() - len;
    let owned = std::mem::take(buf);
    let (result, slice) = stream.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    if matches!(result, Ok(n) if n == spare) {
        buf.reserve((2 * spare).min(READ_BURST_BYTES_MAX));
    }
    result
}

/// Writes the corked answers, then reads more: a pipelining peer may wait for its answers
/// before it sends the rest.
async fn uncork_then_read(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    corked: &mut BytesMut,
) -> std::io::Result<usize> {
    if !reply::uncork(stream, corked).await {
        return Err(std::io::ErrorKind::BrokenPipe.into());
    }
    read_more(stream, buf).await
}

/// Reads the next request. `buf` may already hold bytes of it (pipelining); it keeps whatever
/// follows the request. While no byte of a request has arrived the connection holds no buffer.
/// `corked` holds answers to earlier requests, written before anything waits for the peer.
pub async fn read_request(
    shard: &crate::shard::Shard,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    corked: &mut BytesMut,
) -> Read {
    let config = shard.config();
    let limits = &http1::Limits {
        header_bytes_max: config.header_bytes_max,
        header_count_max: config.header_count_max,
        body_bytes_max: config.body_bytes_max,
    };
    // Real time, not the shard's clock: these bound what a peer does on its socket (a client
    // that sends slowly on purpose), which a test clock cannot speed up.
    let header_timeout = Duration::from_millis(config.header_read_timeout_ms);
    let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
    if buf.is_empty() {
        if !reply::uncork(stream, corked).await {
            return Read::Closed;
        }
        shard.give_read_buffer(std::mem::take(buf));
        let readable = monoio::time::timeout(idle_timeout, stream.readable(false));
        monoio::select! {
            ready = readable => match ready {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Read::Closed,
            },
            () = shard.stopping.wait() => return Read::Closed,
        }
        *buf = shard.take_read_buffer();
    }
    let deadline = monoio::time::Instant::now() + header_timeout;
    let head = loop {
        match http1::parse_head(buf, limits) {
            Ok(Status::Complete(head)) => break head,
            Ok(Status::Partial) => {}
            Err(e) => return Read::Failed(e),
        }
        let was_empty = buf.is_empty();
        match monoio::time::timeout_at(deadline, uncork_then_read(stream, buf, corked)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return if was_empty {
                    Read::Closed
                } else {
                    Read::Failed(HttpError::Aborted("connection closed mid-request"))
                };
            }
            Ok(Ok(_)) => {}
            Err(_) => return Read::Failed(HttpError::Timeout),
        }
    };
    buf.advance(head.head_len);
    if head.expect_continue && head.body != BodyKind::None && buf.is_empty() {
        if !reply::uncork(stream, corked).await {
            return Read::Closed;
        }
        let (result, _) = stream
            .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..])
            .await;
        if result.is_err() {
            return Read::Closed;
        }
    }
    let body = match head.body {
        BodyKind::None => Bytes::new(),
        BodyKind::Length(n) => {
            let n = n as usize;
            while buf.len() < n {
                if let Err(e) = read_more_body(stream, buf, corked, deadline).await {
                    return Read::Failed(e);
                }
            }
            buf.split_to(n).freeze()
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new(limits.body_bytes_max);
            let mut body = BytesMut::new();
            loop {
                match decoder.decode(buf, &mut body) {
                    Ok(Decoded::Done) => break body.freeze(),
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return Read::Failed(e),
                }
                if let Err(e) = read_more_body(stream, buf, corked, deadline).await {
                    return Read::Failed(e);
                }
            }
        }
    };
    Read::Request(Box::new(Request { head, body }))
}

/// Reads more of a body before `deadline`: the peer closing is an aborted request, the
/// deadline passing a timeout.
async fn read_more_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    corked: &mut BytesMut,
    deadline: monoio::time::Instant,
) -> Result<(), HttpError> {
    match monoio::time::timeout_at(deadline, uncork_then_read(stream, buf, corked)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Err(HttpError::Aborted("connection closed mid-body")),
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(HttpError::Timeout),
    }
}
