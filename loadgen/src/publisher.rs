//! The open-loop publisher: keep-alive connections to each publish endpoint that send every
//! publish of the schedule when it falls due, pipelined, whatever the answers' pace.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use monoio::net::TcpStream;

use crate::args::Peer;
use crate::pacing::Schedule;

const HEAD_BYTES_MAX: usize = 16 * 1024;
const HEADERS_MAX: usize = 32;
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Publishes sent but not yet answered on one connection before it stops sending (a
/// router that stops answering must not make loadgen buffer without bound).
const OUTSTANDING_MAX: u64 = 100_000;

#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    /// Publishes not sent because a connection had too many unanswered ones.
    pub skipped: AtomicU64,
}

/// What every publisher connection shares.
#[derive(Debug)]
pub struct Plan {
    pub peer: Peer,
    pub paths: u64,
    /// Publishes in the run: those intended in `[start, start + duration)`.
    pub total: u64,
    /// `CLOCK_MONOTONIC` µs of the schedule's start (payload times are absolute).
    pub start_us: u64,
    pub connections_per_endpoint: u64,
    pub counters: Counters,
    /// Per path, how many sequence numbers were published (0..n).
    pub published_per_path: Vec<AtomicU64>,
    pub stop: AtomicBool,
}

/// Runs one connection to `endpoint`: it publishes every publish `k` of the schedule whose
/// path (`k % paths`) is `p` with `p % connections == connection`. Sending and reading
/// answers are separate tasks, so a slow answer never delays the next publish (open loop;
/// latency is measured from the intended time anyway). Only the first endpoint's
/// connections count sequence numbers: every endpoint gets the same publishes.
pub async fn run(
    plan: Arc<Plan>,
    schedule: Schedule,
    endpoint: SocketAddr,
    first_endpoint: bool,
    connection: u64,
) -> Result<(), &'static str> {
    let stream = TcpStream::connect_addr(endpoint)
        .await
        .map_err(|_| "publisher connect failed")?;
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let outstanding = Rc::new(Cell::new(0u64));
    let sending = Rc::new(Cell::new(true));
    let answers = {
        let (plan, outstanding, sending) = (plan.clone(), outstanding.clone(), sending.clone());
        monoio::spawn(async move { read_answers(&plan, reader, &outstanding, &sending).await })
    };
    let result = send(
        &plan,
        schedule,
        writer,
        &endpoint.to_string(),
        first_endpoint,
        connection,
        &outstanding,
    )
    .await;
    sending.set(false);
    let answered = answers.await;
    result.and(answered)
}

async fn send(
    plan: &Plan,
    mut schedule: Schedule,
    mut writer: TcpOwnedWriteHalf,
    host: &str,
    first_endpoint: bool,
    connection: u64,
    outstanding: &Cell<u64>,
) -> Result<(), &'static str> {
    let origin = schedule.intended(0);
    let connections = plan.connections_per_endpoint;
    let mut out = Vec::new();
    while !plan.stop.load(Ordering::Relaxed) && schedule.taken() < plan.total {
        let now = Instant::now();
        let next = schedule.next_intended();
        if next > now {
            monoio::time::sleep(next - now).await;
            continue;
        }
        out.clear();
        let mut count = 0u64;
        for k in schedule.take_due_within(now, plan.total) {
            let path = k % plan.paths;
            if path % connections != connection {
                continue;
            }
            if outstanding.get() + count >= OUTSTANDING_MAX {
                plan.counters.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let seq = k / plan.paths;
            let offset_us = u64::try_from(schedule.intended(k).duration_since(origin).as_micros())
                .unwrap_or(u64::MAX);
            let body = format!(
                "{{\"seq\":{seq},\"t_us\":{}}}",
                plan.start_us.saturating_add(offset_us)
            );
            crate::peer::put_publish(&mut out, plan.peer, host, path, &body);
            if first_endpoint {
                if let Some(count) = plan.published_per_path.get(path as usize) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            count += 1;
        }
        if count == 0 {
            continue;
        }
        outstanding.set(outstanding.get() + count);
        plan.counters.sent.fetch_add(count, Ordering::Relaxed);
        let (result, back) = writer.write_all(std::mem::take(&mut out)).await;
        out = back;
        result.map_err(|_| "publisher write failed")?;
    }
    Ok(())
}

/// Counts answers until every sent publish is answered and sending has ended, or the run
/// stops (then what is unanswered counts as failed).
async fn read_answers(
    plan: &Plan,
    mut reader: TcpOwnedReadHalf,
    outstanding: &Cell<u64>,
    sending: &Cell<bool>,
) -> Result<(), &'static str> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        while let Some(status) = parse_response(&mut buf)? {
            outstanding.set(outstanding.get().saturating_sub(1));
            let counter = if (200..300).contains(&status) {
                &plan.counters.accepted
            } else {
                &plan.counters.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let finished = || !sending.get() && outstanding.get() == 0;
        if finished() {
            return Ok(());
        }
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let len = buf.len();
        let read = reader.read(monoio::buf::IoBufMut::slice_mut(
            std::mem::take(&mut buf),
            len..,
        ));
        // Checked a few times a second: while answers flow, the read wins long before.
        let ended = async {
            while !finished() && !plan.stop.load(Ordering::Relaxed) {
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        monoio::select! {
            (result, slice) = read => {
                buf = slice.into_inner();
                match result {
                    Ok(0) | Err(_) => {
                        plan.counters.failed.fetch_add(outstanding.get(), Ordering::Relaxed);
                        outstanding.set(0);
                        return Err("publisher connection closed");
                    }
                    Ok(_) => {}
                }
            }
            () = ended => {
                // Finished, or stopped: what is unanswered by now counts as failed.
                plan.counters.failed.fetch_add(outstanding.get(), Ordering::Relaxed);
                outstanding.set(0);
                return Ok(());
            }
        }
    }
}

/// Takes one complete response (head and `Content-Length` body) off `buf`;
/// `Ok(None)` when more bytes are needed.
fn parse_response(buf: &mut BytesMut) -> Result<Option<u16>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::trim)
            };
            if header("transfer-encoding").is_some() {
                return Err("chunked publish answers are not supported");
            }
            let body_len = header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            let status = response.code.unwrap_or(0);
            if buf.len() < head_len + body_len {
                return Ok(None);
            }
            buf.advance(head_len + body_len);
            Ok(Some(status))
        }
        Ok(httparse::Status::Partial) if buf.len() < HEAD_BYTES_MAX => Ok(None),
        _ => Err("bad publish response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_responses() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 202 Accepted\r\nContent-Length: 22\r\n\r\n{\"ok\":true,\"id\":\"1-1\"}\
HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 2"[..],
        );
        assert_eq!(parse_response(&mut buf), Ok(Some(202)));
        assert_eq!(parse_response(&mut buf), Ok(Some(503)));
        assert_eq!(parse_response(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"HTTP/1.1 2");
    }

    #[test]
    fn waits_for_the_whole_body() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nab"[..]);
        assert_eq!(parse_response(&mut buf), Ok(None));
        buf.extend_from_slice(b"cde");
        assert_eq!(parse_response(&mut buf), Ok(Some(202)));
        assert!(buf.is_empty());
    }
}
