//! Re-attaching to tunnels over loopback: replay after `last` (and its `Last-Event-ID` form), gaps,
//! unknown and malformed ids, culling after the grace period, replacement of an attachment, and
//! slow consumers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

fn control(tunnel: &str, new: bool) -> String {
    format!(r#"{{"type":"tunnel","tunnel":"{tunnel}","new":{new},"keepalive_ms":15000}}"#)
}

/// The SSE event of a datagram, as lines.
fn event(id: &str, path: &str, data: &str) -> Vec<String> {
    vec![
        format!("id: {id}"),
        format!("data: {}", datagram(id, path, data)),
    ]
}

const GAP_EVENT: &str = r#"data: {"type":"gap"}"#;

/// Reads an SSE attachment's control event; returns `(tunnel, new)`.
fn sse_control(s: &mut Stream) -> (String, bool) {
    assert_eq!(s.head.status, 200);
    assert_eq!(s.head.header("content-type"), Some("text/event-stream"));
    let ev = s.sse_event().expect("control event");
    assert_eq!(ev.len(), 1, "{ev:?}");
    let v: serde_json::Value =
        serde_json::from_str(ev[0].strip_prefix("data: ").expect("data line")).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap().to_string();
    let new = v["new"].as_bool().unwrap();
    assert!(is_tunnel_id(&tunnel), "{tunnel}");
    assert_eq!(ev[0], format!("data: {}", control(&tunnel, new)));
    (tunnel, new)
}

/// A chunked SSE stream opened with a hand-written request (for extra headers).
struct RawSse {
    client: Client,
    pending: Vec<u8>,
    ended: bool,
}

impl RawSse {
    fn open(addr: SocketAddr, target: &str, headers: &str) -> (RawSse, Head) {
        let mut client = Client::new(addr);
        client.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
        let head = client.head();
        assert_eq!(head.status, 200);
        assert!(head.chunked());
        let raw = RawSse {
            client,
            pending: Vec::new(),
            ended: false,
        };
        (raw, head)
    }

    fn event(&mut self) -> Option<Vec<String>> {
        loop {
            if let Some(pos) = find(&self.pending, b"\n\n") {
                let rec: Vec<u8> = self.pending.drain(..pos + 2).collect();
                let text = String::from_utf8(rec[..pos].to_vec()).unwrap();
                return Some(text.lines().map(String::from).collect());
            }
            if self.ended {
                return None;
            }
            match self.client.chunk() {
                Some(c) => self.pending.extend(c),
                None => self.ended = true,
            }
        }
    }
}

/// Opens a tunnel on `path`, publishes `n` datagrams `{"n":i}` and reads `read` of them before the
/// connection is dropped. Returns the tunnel, the publisher and the published ids.
fn tunnel_with_history(
    addr: SocketAddr,
    path: &str,
    n: usize,
    read: usize,
) -> (String, Publisher, Vec<String>) {
    let mut s = Stream::open(addr, &format!("/tunnel?format=sse&path={path}"));
    let (tunnel, new) = sse_control(&mut s);
    assert!(new);
    let mut p = Publisher::new(addr);
    let ids: Vec<String> = (1..=n)
        .map(|i| p.publish(path, &format!(r#"{{"n":{i}}}"#)))
        .collect();
    for (i, id) in ids.iter().enumerate().take(read) {
        let n = format!(r#"{{"n":{}}}"#, i + 1);
        assert_eq!(s.sse_event().unwrap(), event(id, path, &n));
    }
    drop(s);
    (tunnel, p, ids)
}

/// Reads `ids[from..]` (data `{"n":i}`) as SSE events, then a sentinel published now: exactly
/// those, in order, nothing duplicated.
fn expect_replay_then_sentinel(
    next: &mut dyn FnMut() -> Option<Vec<String>>,
    p: &mut Publisher,
    path: &str,
    ids: &[String],
    from: usize,
) {
    for (i, id) in ids.iter().enumerate().skip(from) {
        let n = format!(r#"{{"n":{}}}"#, i + 1);
        assert_eq!(next().expect("replayed event"), event(id, path, &n));
    }
    let sentinel = p.publish(path, r#""sentinel""#);
    assert_eq!(
        next().expect("sentinel"),
        event(&sentinel, path, r#""sentinel""#)
    );
}

#[test]
fn reattach_replays_exactly_what_followed_last() {
    let addr = start(&[]);
    let (tunnel, mut p, ids) = tunnel_with_history(addr, "/re", 10, 4);
    assert_eq!(ids.len(), 10);
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={}", ids[3]),
    );
    assert_eq!(sse_control(&mut s), (tunnel.clone(), false));
    expect_replay_then_sentinel(&mut || s.sse_event(), &mut p, "/re", &ids, 4);

    // `last` = the newest id: nothing to replay.
    drop(s);
    let newest = p.publish("/re", r#""newest""#);
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={newest}"),
    );
    assert_eq!(sse_control(&mut s), (tunnel, false));
    let after = p.publish("/re", r#""after""#);
    assert_eq!(s.sse_event().unwrap(), event(&after, "/re", r#""after""#));
}

#[test]
fn reattach_in_another_format_replays_the_same_ids() {
    let addr = start(&[]);
    let (tunnel, _p, ids) = tunnel_with_history(addr, "/fmt", 5, 2);
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=nul&id={tunnel}&last={}", ids[1]),
    );
    assert_eq!(
        s.head.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        String::from_utf8(s.record(b"\0").unwrap()).unwrap(),
        control(&tunnel, false)
    );
    for (i, id) in ids.iter().enumerate().skip(2) {
        assert_eq!(
            String::from_utf8(s.record(b"\0").unwrap()).unwrap(),
            datagram(id, "/fmt", &format!(r#"{{"n":{}}}"#, i + 1))
        );
    }
}

#[test]
fn last_event_id_header_equals_last_param() {
    let addr = start(&[]);
    let (tunnel, mut p, ids) = tunnel_with_history(addr, "/lei", 6, 6);
    let (mut raw, head) = RawSse::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}"),
        &format!("Last-Event-ID: {}\r\n", ids[2]),
    );
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        raw.event().unwrap(),
        vec![format!("data: {}", control(&tunnel, false))]
    );
    expect_replay_then_sentinel(&mut || raw.event(), &mut p, "/lei", &ids, 3);
}

/// An `EventSource` re-connects with its original URL and the id of the last event it received
/// in `Last-Event-ID`. When that URL carries `last` (the page built it to resume after a
/// recycle), the header is the newer of the two and must win, or every automatic reconnect
/// replays from the stale `last` again (duplicates).
#[test]
fn last_event_id_header_wins_over_a_stale_last_param() {
    let addr = start(&[]);
    let (tunnel, mut p, ids) = tunnel_with_history(addr, "/stale", 6, 6);
    let (mut raw, _) = RawSse::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={}", ids[1]),
        &format!("Last-Event-ID: {}\r\n", ids[4]),
    );
    assert_eq!(
        raw.event().unwrap(),
        vec![format!("data: {}", control(&tunnel, false))]
    );
    expect_replay_then_sentinel(&mut || raw.event(), &mut p, "/stale", &ids, 5);
}

#[test]
fn gap_when_last_was_evicted_then_the_held_datagrams() {
    let addr = start(&["--replay-datagrams-max", "4"]);
    let (tunnel, mut p, ids) = tunnel_with_history(addr, "/gap", 6, 0);
    // ids[0] and ids[1] were evicted; ids[2..6] are held.
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={}", ids[0]),
    );
    assert_eq!(sse_control(&mut s), (tunnel.clone(), false));
    assert_eq!(s.sse_event().unwrap(), vec![GAP_EVENT.to_string()]);
    expect_replay_then_sentinel(&mut || s.sse_event(), &mut p, "/gap", &ids, 2);
    drop(s);

    // The oldest held id is not a gap: what follows it is replayed.
    let held: Vec<String> = (1..=4)
        .map(|i| p.publish("/gap", &format!(r#"{{"n":{i}}}"#)))
        .collect();
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={}", held[0]),
    );
    assert_eq!(sse_control(&mut s), (tunnel, false));
    expect_replay_then_sentinel(&mut || s.sse_event(), &mut p, "/gap", &held, 1);
}

#[test]
fn unknown_or_malformed_id_gives_a_new_tunnel() {
    let addr = start(&[]);
    let mut existing = Stream::open(addr, "/tunnel?format=sse&path=/known");
    let (known, _) = sse_control(&mut existing);
    let mut p = Publisher::new(addr);
    let before = p.publish("/known", "0");
    assert_eq!(existing.sse_event().unwrap(), event(&before, "/known", "0"));

    // The existing tunnel's shard and slot with another secret.
    let (prefix, secret) = known.rsplit_once('-').unwrap();
    let flipped = if secret.starts_with('0') { "1" } else { "0" };
    let wrong_secret = format!("{prefix}-{flipped}{}", &secret[1..]);
    let cases = [
        "0-999-0123456789abcdef".to_string(),
        "1-999-0123456789abcdef".to_string(),
        "7-0-0123456789abcdef".to_string(), // no shard 7
        "garbage".to_string(),
        "0-0-xyz".to_string(),
        "0-0-0123".to_string(),
        "-".to_string(),
        wrong_secret,
    ];
    let mut seen = vec![known.clone()];
    for id in &cases {
        let mut s = Stream::open(
            addr,
            &format!("/tunnel?format=sse&path=/known&id={id}&last={before}"),
        );
        let (tunnel, new) = sse_control(&mut s);
        assert!(new, "id {id:?} must give a new tunnel");
        assert!(!seen.contains(&tunnel), "{id:?} gave {tunnel}, seen before");
        seen.push(tunnel);
        // A new tunnel starts after what was published before it: `last` means nothing, so no
        // gap and no replay; the next datagram is the next publish.
        let next = p.publish("/known", r#""next""#);
        assert_eq!(s.sse_event().unwrap(), event(&next, "/known", r#""next""#));
        assert_eq!(
            existing.sse_event().unwrap(),
            event(&next, "/known", r#""next""#),
            "the existing tunnel keeps its attachment ({id:?})"
        );
    }
    let m = metrics(addr);
    assert_eq!(m["replaced"], 0);
    assert_eq!(m["tunnels_created"], 1 + cases.len() as u64);
}

/// Waits until no connection is attached: the router has detached what the test closed.
fn all_detached(addr: SocketAddr) {
    assert!(
        eventually(|| attachments_open(addr) == 0),
        "{} still attached",
        attachments_open(addr)
    );
}

#[test]
fn detached_tunnel_is_culled_after_the_grace_period() {
    let (addr, clock) = start_manual(&["--tunnel-grace-ms", "200"]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/cull");
    let (tunnel, _) = sse_control(&mut s);
    drop(s);
    all_detached(addr);
    // Within the grace period the tunnel is still there.
    clock.advance(199);
    let mut s = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}"));
    assert_eq!(sse_control(&mut s), (tunnel.clone(), false));
    drop(s);
    all_detached(addr);
    // The grace counts from the last detach: held for 199 ms after it, culled at 200.
    clock.advance(199);
    assert_eq!(metrics(addr)["tunnels_culled"], 0);
    clock.advance(1);
    assert_eq!(metrics(addr)["tunnels_culled"], 1);

    let deliveries = metrics(addr)["deliveries"].as_u64().unwrap();
    let mut s = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}"));
    let (fresh, new) = sse_control(&mut s);
    assert!(new, "a culled tunnel re-attaches as a new one");
    assert_ne!(fresh, tunnel);
    // The culled tunnel's subscriptions went with it.
    let mut p = Publisher::new(addr);
    p.publish("/cull", "1");
    let m = metrics(addr);
    assert_eq!(m["deliveries"], deliveries);
    assert_eq!(m["tunnels_culled"], 1);
    assert_eq!(m["tunnels_open"], 1);
}

/// The grace ends on the shard's clock, however far ahead: a minute's grace is over at once
/// when the clock moves past it.
#[test]
fn a_grace_of_a_minute_ends_as_soon_as_the_clock_passes_it() {
    let (addr, clock) = start_manual(&["--tunnel-grace-ms", "60000"]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/minute");
    let (tunnel, _) = sse_control(&mut s);
    drop(s);
    all_detached(addr);
    clock.advance(59_999);
    assert_eq!(metrics(addr)["tunnels_culled"], 0);
    let started = Instant::now();
    clock.advance(1);
    let m = metrics(addr);
    let took = started.elapsed();
    assert_eq!(m["tunnels_culled"], 1, "{m}");
    assert_eq!(m["tunnels_open"], 0, "{m}");
    assert!(
        took < Duration::from_millis(1000),
        "culled {took:?} after the clock moved"
    );
    let mut s = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}"));
    let (fresh, new) = sse_control(&mut s);
    assert!(new && fresh != tunnel, "the culled id is unknown");
}

/// On the real clock, the shard's timer task wakes for a detached tunnel's grace even while it
/// sleeps towards a later deadline (its longest sleep is a second).
#[test]
fn culling_follows_the_real_clock() {
    let addr = start(&["--tunnel-grace-ms", "50"]);
    let s = Stream::open(addr, "/tunnel?format=sse&path=/real");
    // Attached past the grace of its creation, so that the detach alone has to wake the timer.
    std::thread::sleep(Duration::from_millis(100));
    let dropped = Instant::now();
    drop(s);
    assert!(
        eventually(|| metrics(addr)["tunnels_culled"] == 1),
        "tunnel not culled within the wait"
    );
    let culled_after = dropped.elapsed();
    assert!(
        culled_after >= Duration::from_millis(45) && culled_after < Duration::from_millis(500),
        "culled {culled_after:?} after the client left, grace is 50 ms"
    );
}

#[test]
fn attached_tunnels_are_not_culled() {
    let (addr, clock) = start_manual(&["--tunnel-grace-ms", "100"]);
    // Kept attached for five grace periods.
    let mut a = Stream::open(addr, "/tunnel?format=sse&path=/keep");
    let (ta, _) = sse_control(&mut a);
    // Detached, re-attached within the grace, then kept attached: the earlier detach's cull
    // deadline must not take it.
    let mut b = Stream::open(addr, "/tunnel?format=sse&path=/keep");
    let (tb, _) = sse_control(&mut b);
    drop(b);
    let mut b = Stream::open(addr, &format!("/tunnel?format=sse&id={tb}"));
    assert_eq!(sse_control(&mut b), (tb.clone(), false));

    for _ in 0..5 {
        clock.advance(100);
    }
    let m = metrics(addr);
    assert_eq!(m["tunnels_culled"], 0);
    assert_eq!(m["tunnels_open"], 2);
    let mut p = Publisher::new(addr);
    let id = p.publish("/keep", "1");
    assert_eq!(a.sse_event().unwrap(), event(&id, "/keep", "1"));
    assert_eq!(b.sse_event().unwrap(), event(&id, "/keep", "1"));
    for t in [&ta, &tb] {
        let mut s = Stream::open(addr, &format!("/tunnel?format=sse&id={t}"));
        assert_eq!(sse_control(&mut s), (t.to_string(), false));
    }
}

#[test]
fn second_attachment_replaces_the_first_which_ends_cleanly() {
    let addr = start(&[]);
    let mut first = Stream::open(addr, "/tunnel?format=iframe&path=/rep");
    let rec = String::from_utf8(first.record(b"</script>\n").unwrap()).unwrap();
    let start = rec.find("<script>parent.tunnel(").unwrap() + "<script>parent.tunnel(".len();
    let v: serde_json::Value = serde_json::from_str(&rec[start..rec.len() - 2]).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap().to_string();
    let mut p = Publisher::new(addr);
    let d1 = p.publish("/rep", "1");
    assert_eq!(
        String::from_utf8(first.record(b"</script>\n").unwrap()).unwrap(),
        format!("<script>parent.tunnel({});", datagram(&d1, "/rep", "1"))
    );

    let mut second = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}"));
    assert_eq!(sse_control(&mut second), (tunnel, false));
    // The first ends cleanly: its footer, then the final chunk.
    assert_eq!(first.rest(), b"</body></html>\n");
    assert!(first.ended);
    assert_eq!(metrics(addr)["replaced"], 1);
    // ... and its connection is still good for another request.
    first.client.get("/metrics");
    let (head, _) = first.client.response();
    assert_eq!(head.status, 200);

    // The second resumes where the first stopped and gets what follows.
    let d2 = p.publish("/rep", "2");
    assert_eq!(second.sse_event().unwrap(), event(&d2, "/rep", "2"));
}

/// `(id, data)` of the datagram events in raw SSE bytes (a chunked body, possibly cut short).
fn sse_ids(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    text.split("\nid: ")
        .skip(1)
        .filter_map(|rest| rest.split_once('\n').map(|(id, _)| id.to_string()))
        .collect()
}

#[test]
fn slow_consumer_is_disconnected_and_its_tunnel_survives() {
    // The send queue holds 8 datagrams: a consumer that keeps up is never that far behind (the
    // publisher is on the tunnel's shard, so every publish is drained before the next arrives),
    // while one that reads nothing is, once the socket buffers are full.
    let addr = start(&[
        "--datagram-data-bytes-max",
        "16384",
        "--send-queue-bytes-max",
        "131072",
    ]);
    let mut slow = Stream::open(addr, "/tunnel?format=sse&path=/slow");
    let (tunnel, _) = sse_control(&mut slow);
    // From here on the client reads nothing.
    let mut p = (0..64)
        .map(|_| Publisher::new(addr))
        .find_map(|mut p| {
            let probe = p.publish("/probe", "0");
            (probe.split('-').next() == Some(&shard_of(&tunnel).to_string())).then_some(p)
        })
        .expect("a publisher connection on the tunnel's shard within 64 connections");
    let data = format!("\"{}\"", "s".repeat(16000));
    let mut ids = Vec::new();
    // Up to 16 MiB: far more than loopback socket buffers hold.
    while ids.len() < 1024 {
        ids.push(p.publish("/slow", &data));
        if ids.len() % 32 == 0 && metrics(addr)["slow_consumer"] == 1 {
            break;
        }
    }
    let m = metrics(addr);
    assert_eq!(
        m["slow_consumer"],
        1,
        "a client that reads nothing was not disconnected after {} datagrams of {} bytes \
         (send_queue_bytes_max 131072)",
        ids.len(),
        data.len()
    );

    // Its connection is closed without the final chunk, and what it got has no hole.
    let mut got = Vec::new();
    slow.client
        .reader
        .read_to_end(&mut got)
        .expect("EOF within the wait");
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "a dropped consumer gets no final chunk"
    );
    let received = sse_ids(&got);
    assert_eq!(received[..], ids[..received.len()], "a prefix, in order");

    // The tunnel stays. Re-attaching with `last` replays what followed it when the replay buffer
    // (replay_bytes_max, 1 MiB) still holds `last`; otherwise a gap and then exactly the newest
    // datagrams that fit. Never nothing: the consumer was cut off with datagrams unsent.
    let last = received.last().unwrap_or(&ids[0]);
    let mut s = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}&last={last}"));
    assert_eq!(sse_control(&mut s), (tunnel, false));
    let mut held = 0;
    let mut bytes = 0;
    for id in ids.iter().rev() {
        let len = datagram(id, "/slow", &data).len();
        if bytes + len > 1 << 20 {
            break;
        }
        bytes += len;
        held += 1;
    }
    let first_held = ids.len() - held;
    let replay = match ids[first_held..].iter().position(|id| id == last) {
        Some(at) => &ids[first_held + at + 1..],
        None => {
            assert_eq!(s.sse_event().unwrap(), vec![GAP_EVENT.to_string()]);
            &ids[first_held..]
        }
    };
    assert!(!replay.is_empty(), "nothing left to replay after {last}");
    for id in replay {
        assert_eq!(s.sse_event().unwrap(), event(id, "/slow", &data));
    }
    let sentinel = p.publish("/slow", "0");
    assert_eq!(s.sse_event().unwrap(), event(&sentinel, "/slow", "0"));
}

/// A client whose first connection broke before it had processed any datagram has no `last` to
/// send. Re-attaching with its tunnel id as `last` says so: the router replays everything the
/// tunnel holds, instead of resuming after what it had written to the broken connection (which
/// the client never got: a silent loss).
#[test]
fn reattach_with_the_tunnel_id_as_last_replays_from_the_start() {
    let addr = start(&[]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/first");
    let (tunnel, _) = sse_control(&mut s);
    let mut p = Publisher::new(addr);
    let first = p.publish("/first", "1");
    let second = p.publish("/first", "2");
    // The client reads a few bytes of the first datagram's chunk, then its connection breaks.
    let mut partial = [0u8; 12];
    s.client
        .reader
        .read_exact(&mut partial)
        .expect("the first bytes of a datagram");
    drop(s);
    // Both were written to the broken connection: without `last` they count as sent.
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={tunnel}"),
    );
    assert_eq!(sse_control(&mut s), (tunnel.clone(), false));
    assert_eq!(s.sse_event().unwrap(), event(&first, "/first", "1"));
    assert_eq!(s.sse_event().unwrap(), event(&second, "/first", "2"));
    let third = p.publish("/first", "3");
    assert_eq!(s.sse_event().unwrap(), event(&third, "/first", "3"));
}

/// The same after evictions: a gap first, then what the tunnel still holds.
#[test]
fn reattach_with_the_tunnel_id_as_last_after_evictions_starts_with_a_gap() {
    let addr = start(&["--replay-datagrams-max", "2"]);
    let (tunnel, mut p, ids) = tunnel_with_history(addr, "/start", 4, 0);
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={tunnel}"),
    );
    assert_eq!(sse_control(&mut s), (tunnel, false));
    assert_eq!(s.sse_event().unwrap(), vec![GAP_EVENT.to_string()]);
    expect_replay_then_sentinel(&mut || s.sse_event(), &mut p, "/start", &ids, 2);
}
