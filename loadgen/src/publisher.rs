//! The open-loop publisher: keep-alive connections to each publish endpoint that send every
//! publish of the schedule when it falls due, pipelined, whatever the answers' pace.
//!
//! One plain thread runs it with non-blocking sockets and `ppoll`, whose nanosecond timeout
//! wakes it when the next publish falls due: an async runtime's millisecond timer would add
//! up to a millisecond of the tool's own lateness to every measured latency.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};

use crate::args::Peer;
use crate::pacing::Schedule;
use crate::response::peek_head;

const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Publishes sent but not yet answered on one connection before it stops sending (a
/// router that stops answering must not make loadgen buffer without bound).
const OUTSTANDING_MAX: u64 = 100_000;
/// How often the loop looks at `stop` while it only waits for answers.
const ANSWER_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    /// Publishes not sent because a connection had too many unanswered ones, or was gone.
    pub skipped: AtomicU64,
}

/// What the publisher is to do, and what it counted.
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

/// One keep-alive connection to a publish endpoint.
struct Connection {
    stream: TcpStream,
    endpoint: SocketAddr,
    host: String,
    /// Pushpin: publishes wait here as items and go out as one request when the previous
    /// one is answered (Pushpin closes the connection after every answer).
    items: Option<Vec<String>>,
    /// Publishes in the request on the wire (Pushpin), settled by its one answer.
    in_flight: u64,
    /// Requests not yet written.
    out: Vec<u8>,
    /// Answers read and not yet parsed.
    buf: BytesMut,
    outstanding: u64,
    /// Closed or failed: what it still owed counted as failed, nothing more sent.
    dead: bool,
}

impl Connection {
    fn open(endpoint: SocketAddr, peer: Peer) -> io::Result<Connection> {
        Ok(Connection {
            stream: Self::connect(endpoint)?,
            endpoint,
            host: endpoint.to_string(),
            items: (peer == Peer::Pushpin).then(Vec::new),
            in_flight: 0,
            out: Vec::new(),
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            outstanding: 0,
            dead: false,
        })
    }

    fn connect(endpoint: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&endpoint, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    }

    /// Adds one publish (already counted as sent and outstanding).
    fn put(&mut self, peer: Peer, path: u64, body: &str) {
        match &mut self.items {
            Some(items) => items.push(crate::peer::pushpin_item(path, body)),
            None => crate::peer::put_publish(&mut self.out, peer, &self.host, path, body),
        }
        self.outstanding += 1;
    }

    /// Pushpin: sends the waiting items as one request once nothing is on the wire.
    fn start_batch(&mut self) {
        if let Some(items) = &mut self.items {
            if self.in_flight == 0 && !items.is_empty() && !self.dead {
                crate::peer::put_pushpin_publish(&mut self.out, &self.host, items);
                self.in_flight = items.len() as u64;
                items.clear();
            }
        }
    }

    /// The server closes after its answer: a new connection for what comes next. Requests
    /// pipelined behind the answered one are lost with the old connection.
    fn reopen(&mut self, counters: &Counters) {
        let lost = if self.items.is_some() {
            self.in_flight
        } else {
            self.outstanding
        };
        counters.failed.fetch_add(lost, Ordering::Relaxed);
        self.outstanding -= lost;
        self.in_flight = 0;
        self.out.clear();
        self.buf.clear();
        match Self::connect(self.endpoint) {
            Ok(stream) => self.stream = stream,
            Err(e) => self.fail(counters, &format!("reconnect: {e}")),
        }
    }

    fn fail(&mut self, counters: &Counters, why: &str) {
        if !self.dead {
            eprintln!("loadgen: publisher connection to {}: {why}", self.host);
        }
        counters
            .failed
            .fetch_add(self.outstanding, Ordering::Relaxed);
        self.outstanding = 0;
        self.out.clear();
        self.dead = true;
    }

    /// Writes what it can without blocking.
    fn flush(&mut self, counters: &Counters) {
        while !self.out.is_empty() && !self.dead {
            match self.stream.write(&self.out) {
                Ok(0) => self.fail(counters, "write returned 0"),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.fail(counters, &e.to_string()),
            }
        }
    }

    /// Reads and counts what answers have arrived, without blocking.
    fn read_answers(&mut self, counters: &Counters) {
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        let mut closed = false;
        while !self.dead {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.fail(counters, &e.to_string()),
            }
        }
        loop {
            match parse_response(&mut self.buf) {
                Ok(Some(answer)) => {
                    // A Pushpin answer settles every item of its request.
                    let settled = if self.items.is_some() {
                        std::mem::take(&mut self.in_flight)
                    } else {
                        1
                    };
                    self.outstanding = self.outstanding.saturating_sub(settled);
                    let counter = if (200..300).contains(&answer.status) {
                        &counters.accepted
                    } else {
                        &counters.failed
                    };
                    counter.fetch_add(settled, Ordering::Relaxed);
                    if answer.close {
                        self.reopen(counters);
                        closed = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(why) => {
                    self.fail(counters, why);
                    break;
                }
            }
        }
        if closed {
            // Closed without saying so first (an idle keep-alive timing out, say).
            self.reopen(counters);
        }
        self.start_batch();
        self.flush(counters);
    }
}

/// Publishes the whole schedule over `publishers` connections to each endpoint: publish `k`
/// goes to path `p = k % paths`, on connection `p % publishers` of every endpoint. Returns
/// when every publish is sent and answered, or when `stop` is set (what is unanswered then
/// counts as failed).
pub fn run(plan: &Plan, mut schedule: Schedule, endpoints: &[SocketAddr]) -> io::Result<()> {
    let per_endpoint = plan.connections_per_endpoint as usize;
    let mut connections = Vec::with_capacity(endpoints.len() * per_endpoint);
    for endpoint in endpoints {
        for _ in 0..per_endpoint {
            connections.push(Connection::open(*endpoint, plan.peer).map_err(|e| {
                io::Error::new(e.kind(), format!("publisher connect to {endpoint}: {e}"))
            })?);
        }
    }
    let origin = schedule.intended(0);
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(connections.len());
    loop {
        let all_taken = schedule.taken() >= plan.total;
        let owed = connections
            .iter()
            .any(|c| c.outstanding > 0 || !c.out.is_empty());
        if plan.stop.load(Ordering::Relaxed) || (all_taken && !owed) {
            break;
        }
        let now = Instant::now();
        if !all_taken && schedule.next_intended() <= now {
            for k in schedule.take_due_within(now, plan.total) {
                let path = k % plan.paths;
                let seq = k / plan.paths;
                let offset_us =
                    u64::try_from(schedule.intended(k).duration_since(origin).as_micros())
                        .unwrap_or(u64::MAX);
                let body = format!(
                    "{{\"seq\":{seq},\"t_us\":{}}}",
                    plan.start_us.saturating_add(offset_us)
                );
                // Every receiver of the path expects this number, whatever becomes of it.
                if let Some(count) = plan.published_per_path.get(path as usize) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                let lane = (path % plan.connections_per_endpoint) as usize;
                for c in connections.iter_mut().skip(lane).step_by(per_endpoint) {
                    if c.dead || c.outstanding >= OUTSTANDING_MAX {
                        plan.counters.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    c.put(plan.peer, path, &body);
                    plan.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            for c in &mut connections {
                c.start_batch();
                c.flush(&plan.counters);
            }
        }
        // Sleep until the next publish is due or a socket is ready.
        let timeout = if schedule.taken() < plan.total {
            schedule
                .next_intended()
                .saturating_duration_since(Instant::now())
        } else {
            ANSWER_POLL
        };
        fds.clear();
        fds.extend(connections.iter().map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: if c.dead {
                0
            } else if c.out.is_empty() {
                libc::POLLIN
            } else {
                libc::POLLIN | libc::POLLOUT
            },
            revents: 0,
        }));
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds; `ts` outlives the call.
        let ready = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            continue;
        }
        for (c, fd) in connections.iter_mut().zip(&fds) {
            if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                c.read_answers(&plan.counters);
            }
            if fd.revents & libc::POLLOUT != 0 {
                c.flush(&plan.counters);
            }
        }
    }
    // Stopped: what is still unanswered will not be counted as accepted.
    for c in &mut connections {
        plan.counters
            .failed
            .fetch_add(c.outstanding, Ordering::Relaxed);
        c.outstanding = 0;
    }
    Ok(())
}

/// A publish answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// The server closes the connection after it (`Connection: close`).
    close: bool,
}

/// Takes one complete response (head and `Content-Length` body) off `buf`;
/// `Ok(None)` when more bytes are needed.
fn parse_response(buf: &mut BytesMut) -> Result<Option<Answer>, &'static str> {
    let Some(head) = peek_head(buf).map_err(|_| "bad publish response")? else {
        return Ok(None);
    };
    if head.transfer_encoding {
        return Err("chunked publish answers are not supported");
    }
    let end = head.len + head.content_length.unwrap_or(0);
    if buf.len() < end {
        return Ok(None);
    }
    buf.advance(end);
    Ok(Some(Answer {
        status: head.status,
        close: head.close,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publish endpoint on an ephemeral port that answers every request with `answer`; with
    /// `close_after_answer` it closes each connection after one answer, as Pushpin does.
    /// Returns its address and a channel of the request bodies it received.
    fn fake_endpoint(
        answer: &'static str,
        close_after_answer: bool,
    ) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = BytesMut::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: head, then Content-Length bytes of body.
                        let mut headers = [httparse::EMPTY_HEADER; 16];
                        let mut request = httparse::Request::new(&mut headers);
                        if let Ok(httparse::Status::Complete(head)) = request.parse(&buf) {
                            let len: usize = request
                                .headers
                                .iter()
                                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                                .unwrap_or(0);
                            if buf.len() >= head + len {
                                let body = String::from_utf8_lossy(&buf[head..head + len]).into();
                                buf.advance(head + len);
                                let _ = tx.send(body);
                                if conn.write_all(answer.as_bytes()).is_err() || close_after_answer
                                {
                                    return;
                                }
                                continue;
                            }
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    fn plan(peer: Peer, paths: u64, total: u64) -> Plan {
        Plan {
            peer,
            paths,
            total,
            start_us: 1_000,
            connections_per_endpoint: 1,
            counters: Counters::default(),
            published_per_path: (0..paths).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
        }
    }

    #[test]
    fn pushpin_publishes_are_batched_one_request_per_connection() {
        let (addr, bodies) = fake_endpoint(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\nPublished\n",
            true,
        );
        let plan = plan(Peer::Pushpin, 3, 300);
        // The schedule started a second ago: all 300 publishes are due at once, so whatever
        // the machine's pace they wait together for the one connection.
        let started = Instant::now() - Duration::from_secs(1);
        run(&plan, Schedule::new(300.0, started), &[addr]).expect("runs");
        assert_eq!(plan.counters.sent.load(Ordering::Relaxed), 300);
        assert_eq!(plan.counters.accepted.load(Ordering::Relaxed), 300);
        assert_eq!(plan.counters.failed.load(Ordering::Relaxed), 0);
        // Every publish arrived once, as an item of the one request.
        let mut items = Vec::new();
        let mut requests = 0;
        while let Ok(body) = bodies.try_recv() {
            requests += 1;
            let value: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
            for item in value["items"].as_array().expect("items") {
                let content = item["formats"]["http-stream"]["content"]
                    .as_str()
                    .expect("content");
                let payload: serde_json::Value =
                    serde_json::from_str(content.trim_start_matches("data: ").trim())
                        .expect("payload");
                items.push((
                    item["channel"].as_str().expect("channel").to_owned(),
                    payload["seq"].as_u64(),
                ));
            }
        }
        assert_eq!(items.len(), 300, "{requests} requests");
        assert_eq!(requests, 1, "all due at once: one request");
        for path in 0..3u64 {
            let seqs: Vec<Option<u64>> = items
                .iter()
                .filter(|(channel, _)| *channel == format!("load{path}"))
                .map(|(_, seq)| *seq)
                .collect();
            assert_eq!(
                seqs,
                (0..100).map(Some).collect::<Vec<_>>(),
                "path {path} in order"
            );
        }
    }

    #[test]
    fn pipelined_publishes_are_all_answered_and_refusals_counted() {
        let (ok, ok_bodies) = fake_endpoint(
            "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}",
            false,
        );
        let (busy, _) = fake_endpoint(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        let plan = plan(Peer::Router, 2, 200);
        run(&plan, Schedule::new(2000.0, Instant::now()), &[ok, busy]).expect("runs");
        // Every publish goes to both endpoints; sequence numbers are counted once.
        assert_eq!(plan.counters.sent.load(Ordering::Relaxed), 400);
        assert_eq!(plan.counters.accepted.load(Ordering::Relaxed), 200);
        assert_eq!(plan.counters.failed.load(Ordering::Relaxed), 200);
        let published: u64 = plan
            .published_per_path
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        assert_eq!(published, 200);
        assert_eq!(ok_bodies.try_iter().count(), 200);
    }

    #[test]
    fn parses_pipelined_responses() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 202 Accepted\r\nContent-Length: 22\r\n\r\n{\"ok\":true,\"id\":\"1-1\"}\
HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 2"[..],
        );
        let status = |buf: &mut BytesMut| parse_response(buf).map(|a| a.map(|a| a.status));
        assert_eq!(status(&mut buf), Ok(Some(202)));
        assert_eq!(status(&mut buf), Ok(Some(503)));
        assert_eq!(parse_response(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"HTTP/1.1 2");
    }

    #[test]
    fn waits_for_the_whole_body() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nab"[..]);
        assert_eq!(parse_response(&mut buf), Ok(None));
        buf.extend_from_slice(b"cde");
        assert_eq!(
            parse_response(&mut buf),
            Ok(Some(Answer {
                status: 202,
                close: false
            }))
        );
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\nPublished\n"[..],
        );
        assert_eq!(
            parse_response(&mut buf),
            Ok(Some(Answer {
                status: 200,
                close: true
            }))
        );
        assert!(buf.is_empty());
    }
}
