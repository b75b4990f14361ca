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

/// Below this, the publisher sleeps with the OS's precise sleep instead of the runtime timer.
const PRECISE_SLEEP: Duration = Duration::from_millis(2);

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

/// One keep-alive connection's sending side.
struct Connection {
    writer: TcpOwnedWriteHalf,
    host: String,
    /// Publishes sent and not yet answered (shared with the reading task).
    outstanding: Rc<Cell<u64>>,
    out: Vec<u8>,
}

/// Publishes the whole schedule over `publishers` connections to each endpoint: publish `k`
/// goes to path `p = k % paths`, on connection `p % publishers` of every endpoint. One task
/// sends (it alone sleeps until each publish falls due, so it can sleep precisely); one task
/// per connection reads the answers, so a slow answer never delays the next publish (open
/// loop: latency is measured from the intended time anyway).
pub async fn run(
    plan: Arc<Plan>,
    schedule: Schedule,
    endpoints: &[SocketAddr],
) -> Result<(), &'static str> {
    let sending = Rc::new(Cell::new(true));
    let mut connections = Vec::new();
    let mut readers = Vec::new();
    for endpoint in endpoints {
        for _ in 0..plan.connections_per_endpoint {
            let stream = TcpStream::connect_addr(*endpoint)
                .await
                .map_err(|_| "publisher connect failed")?;
            let _ = stream.set_nodelay(true);
            let (reader, writer) = stream.into_split();
            let outstanding = Rc::new(Cell::new(0u64));
            let (plan, o, sending) = (plan.clone(), outstanding.clone(), sending.clone());
            readers.push(monoio::spawn(async move {
                read_answers(&plan, reader, &o, &sending).await
            }));
            connections.push(Connection {
                writer,
                host: endpoint.to_string(),
                outstanding,
                out: Vec::new(),
            });
        }
    }
    let result = send(&plan, schedule, &mut connections).await;
    sending.set(false);
    let mut answered = Ok(());
    for reader in readers {
        answered = answered.and(reader.await);
    }
    result.and(answered)
}

async fn send(
    plan: &Plan,
    mut schedule: Schedule,
    connections: &mut [Connection],
) -> Result<(), &'static str> {
    let origin = schedule.intended(0);
    let per_endpoint = plan.connections_per_endpoint as usize;
    let endpoints = connections.len() / per_endpoint;
    while !plan.stop.load(Ordering::Relaxed) && schedule.taken() < plan.total {
        let now = Instant::now();
        let next = schedule.next_intended();
        if next > now {
            // The runtime's timer ticks in milliseconds; the last stretch is slept precisely
            // (blocking this thread, which only publishes), so the tool's own lateness stays
            // far below the latencies it measures.
            let wait = next - now;
            if wait > PRECISE_SLEEP {
                monoio::time::sleep(wait - PRECISE_SLEEP).await;
            } else {
                std::thread::sleep(wait);
            }
            continue;
        }
        for k in schedule.take_due_within(now, plan.total) {
            let path = k % plan.paths;
            let seq = k / plan.paths;
            let offset_us = u64::try_from(schedule.intended(k).duration_since(origin).as_micros())
                .unwrap_or(u64::MAX);
            let body = format!(
                "{{\"seq\":{seq},\"t_us\":{}}}",
                plan.start_us.saturating_add(offset_us)
            );
            // Every receiver of the path expects this number, whatever happens to the publish.
            if let Some(count) = plan.published_per_path.get(path as usize) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            for e in 0..endpoints {
                let c = &mut connections
                    [e * per_endpoint + (path % plan.connections_per_endpoint) as usize];
                if c.outstanding.get() >= OUTSTANDING_MAX {
                    plan.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                crate::peer::put_publish(&mut c.out, plan.peer, &c.host, path, &body);
                c.outstanding.set(c.outstanding.get() + 1);
                plan.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        for c in connections.iter_mut().filter(|c| !c.out.is_empty()) {
            let (result, mut back) = c.writer.write_all(std::mem::take(&mut c.out)).await;
            result.map_err(|_| "publisher write failed")?;
            back.clear();
            c.out = back;
        }
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
