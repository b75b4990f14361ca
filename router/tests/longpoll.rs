//! Long-poll and JSONP tunnels over loopback: the first poll, polls answered by a publish, ttl
//! expiry, batch limits, `last` replay and gaps, JSONP bytes and headers, callback validation, the
//! ttl clamp, replacement of a parked poll, and polls for tunnels owned by the other shard.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

use serde_json::Value;

/// The tunnel control datagram, byte for byte.
fn control(tunnel: &str, new: bool, keepalive_ms: u64) -> String {
    format!(r#"{{"type":"tunnel","tunnel":"{tunnel}","new":{new},"keepalive_ms":{keepalive_ms}}}"#)
}

/// A datagram, byte for byte (`data` is compact JSON).
fn dg(id: &str, path: &str, data: &str) -> String {
    format!(r#"{{"id":"{id}","path":"{path}","data":{data}}}"#)
}

const KEEPALIVE: &str = r#"{"type":"keepalive"}"#;
const GAP: &str = r#"{"type":"gap"}"#;

/// A long-poll answer body, byte for byte.
fn answer(tunnel: &str, messages: &[&str]) -> String {
    format!(
        r#"{{"ok":true,"tunnel":"{tunnel}","messages":[{}]}}"#,
        messages.join(",")
    )
}

/// Sends `GET target` on `c` and reads the whole answer.
fn get(c: &mut Client, target: &str) -> (Head, String) {
    c.get(target);
    c.response()
}

/// The tunnel id of a long-poll answer body.
fn tunnel_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["tunnel"]
        .as_str()
        .expect("answer names its tunnel")
        .to_string()
}

/// Opens a long-poll tunnel subscribed to `paths` on connection `c`; checks the first answer and
/// returns the tunnel id.
fn open_on(c: &mut Client, paths: &[&str]) -> String {
    let mut target = String::from("/tunnel?format=longpoll");
    for p in paths {
        target.push_str("&path=");
        target.push_str(p);
    }
    let (head, body) = get(c, &target);
    assert_eq!(head.status, 200, "{body}");
    let id = tunnel_of(&body);
    assert_eq!(body, answer(&id, &[&control(&id, true, 15000)]));
    id
}

fn open(addr: SocketAddr, paths: &[&str]) -> String {
    open_on(&mut Client::new(addr), paths)
}

/// Long-polls tunnel `id` (with `extra` query parameters) on a new connection; returns the body.
fn poll(addr: SocketAddr, id: &str, extra: &str) -> String {
    let (head, body) = get(
        &mut Client::new(addr),
        &format!("/tunnel?format=longpoll&id={id}{extra}"),
    );
    assert_eq!(head.status, 200, "{body}");
    assert_eq!(head.header("content-type"), Some("application/json"));
    body
}

/// Asserts nothing arrives on `c` within `quiet`.
fn assert_quiet(c: &mut Client, quiet: Duration) {
    use std::io::{BufRead, ErrorKind};
    let deadline = Instant::now() + quiet;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        c.reader.get_ref().set_read_timeout(Some(left)).unwrap();
        match c.reader.fill_buf().map(|b| b.to_vec()) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            other => panic!("expected no answer yet, got {other:?}"),
        }
    }
    c.reader.get_ref().set_read_timeout(Some(WAIT)).unwrap();
}

/// Checks that a poll of tunnel `id` (which follows `path`) with `extra` query parameters
/// expires after exactly `ttl_ms` on the router's clock: a poll still parked at `ttl_ms - 1` is
/// answered by a publish on `path`, and the next one gets a keepalive at `ttl_ms`.
fn assert_expires_after(
    addr: SocketAddr,
    clock: &TestClock,
    id: &str,
    path: &str,
    extra: &str,
    ttl_ms: u64,
) {
    let mut c = Client::new(addr);
    clock.arming(1, || {
        c.get(&format!("/tunnel?format=longpoll&id={id}{extra}"))
    });
    clock.advance(ttl_ms - 1);
    let did = publish(addr, path, "1");
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    assert_eq!(
        body,
        answer(id, &[&dg(&did, path, "1")]),
        "{extra:?}: expired before {ttl_ms} ms"
    );
    let mut c = Client::new(addr);
    clock.arming(1, || {
        c.get(&format!("/tunnel?format=longpoll&id={id}{extra}"))
    });
    let started = Instant::now();
    clock.advance(ttl_ms);
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    assert_eq!(body, answer(id, &[KEEPALIVE]), "{extra:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{extra:?}: answered {:?} after the clock moved",
        started.elapsed()
    );
}

#[test]
fn first_poll_answers_at_once_with_the_new_tunnel() {
    let (addr, clock) = start_manual(&["--keepalive-ms", "1234"]);
    let mut c = Client::new(addr);
    let started = Instant::now();
    let (head, body) = get(&mut c, "/tunnel?format=longpoll");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(head.header("cache-control"), Some("no-cache, no-store"));
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    assert_eq!(head.header("connection"), None, "keep-alive is the default");
    assert_eq!(
        head.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    let id = tunnel_of(&body);
    assert!(is_tunnel_id(&id), "{id}");
    assert_eq!(body, answer(&id, &[&control(&id, true, 1234)]));

    // The same connection polls again: the tunnel exists now, so nothing is new and nothing is
    // queued; the poll answers with a keepalive once its ttl has passed.
    clock.arming(1, || {
        c.get(&format!("/tunnel?format=longpoll&id={id}&ttl=50"))
    });
    clock.advance(50);
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    assert_eq!(body, answer(&id, &[KEEPALIVE]));

    // Two new tunnels never share an id.
    let (_, other) = get(&mut Client::new(addr), "/tunnel?format=longpoll");
    assert_ne!(tunnel_of(&other), id);
}

#[test]
fn parked_poll_answers_with_exactly_the_published_datagram() {
    let (addr, clock) = start_manual(&[]);
    let id = open(addr, &["/lp/a"]);
    let mut c = Client::new(addr);
    c.get(&format!("/tunnel?format=longpoll&id={id}&ttl=3000"));
    assert_quiet(&mut c, Duration::from_millis(200));
    // A publish on a path the tunnel does not follow leaves the poll parked.
    publish(addr, "/lp/b", r#"{"n":0}"#);
    assert_quiet(&mut c, Duration::from_millis(150));
    let started = Instant::now();
    let did = publish(addr, "/lp/a", r#"{"n": 1}"#);
    let (head, body) = c.response();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(head.status, 200);
    assert_eq!(body, answer(&id, &[&dg(&did, "/lp/a", r#"{"n":1}"#)]));
    // Nothing else is queued: the next poll waits for its ttl.
    assert_eq!(
        poll_past_ttl(addr, &clock, &id, "", 50),
        answer(&id, &[KEEPALIVE])
    );
}

#[test]
fn ttl_expiry_answers_with_a_keepalive() {
    let (addr, clock) = start_manual(&[]);
    let id = open(addr, &["/ttl"]);
    for _ in 0..2 {
        assert_expires_after(addr, &clock, &id, "/ttl", "&ttl=100", 100);
    }
    // A ttl 60 s ahead takes no longer.
    assert_expires_after(addr, &clock, &id, "/ttl", "&ttl=60000", 60_000);
    // The tunnel survived its expired polls: a datagram still reaches it.
    let did = publish(addr, "/ttl", "7");
    assert_eq!(
        poll(addr, &id, "&ttl=3000"),
        answer(&id, &[&dg(&did, "/ttl", "7")])
    );
}

#[test]
fn batch_limit_splits_queued_datagrams_in_order() {
    let (addr, clock) = start_manual(&["--longpoll-batch-max", "3"]);
    let id = open(addr, &["/batch"]);
    let mut events = Events::new(addr, &id);
    let ids: Vec<String> = (0..7)
        .map(|n| events.send("/batch", &n.to_string()))
        .collect();
    let dgs: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(n, did)| dg(did, "/batch", &n.to_string()))
        .collect();
    let refs: Vec<&str> = dgs.iter().map(String::as_str).collect();
    assert_eq!(poll(addr, &id, "&ttl=100"), answer(&id, &refs[0..3]));
    assert_eq!(poll(addr, &id, "&ttl=100"), answer(&id, &refs[3..6]));
    assert_eq!(poll(addr, &id, "&ttl=100"), answer(&id, &refs[6..7]));
    assert_eq!(
        poll_past_ttl(addr, &clock, &id, "", 100),
        answer(&id, &[KEEPALIVE])
    );
}

#[test]
fn last_replays_what_followed_it() {
    let (addr, clock) = start_manual(&[]);
    let id = open(addr, &["/r"]);
    let mut events = Events::new(addr, &id);
    let d: Vec<String> = (1..=3)
        .map(|n| {
            let did = events.send("/r", &n.to_string());
            dg(&did, "/r", &n.to_string())
        })
        .collect();
    let ids: Vec<String> = d
        .iter()
        .map(|j| {
            serde_json::from_str::<Value>(j).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(poll(addr, &id, ""), answer(&id, &[&d[0], &d[1], &d[2]]));
    assert_eq!(
        poll(addr, &id, &format!("&last={}", ids[0])),
        answer(&id, &[&d[1], &d[2]])
    );
    assert_eq!(
        poll(addr, &id, &format!("&last={}", ids[1])),
        answer(&id, &[&d[2]])
    );
    // `last` naming the newest datagram: nothing to replay, the poll waits for its ttl.
    assert_eq!(
        poll_past_ttl(addr, &clock, &id, &format!("&last={}", ids[2]), 50),
        answer(&id, &[KEEPALIVE])
    );
    // The Last-Event-ID header means the same as `last`.
    let mut c = Client::new(addr);
    c.send(
        format!(
            "GET /tunnel?format=longpoll&id={id} HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}\r\n\r\n",
            ids[1]
        )
        .as_bytes(),
    );
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    assert_eq!(body, answer(&id, &[&d[2]]));
}

#[test]
fn last_naming_an_evicted_datagram_answers_a_gap_first() {
    let addr = start(&["--replay-datagrams-max", "2"]);
    let id = open(addr, &["/g"]);
    let mut events = Events::new(addr, &id);
    let ids: Vec<String> = (1..=4).map(|n| events.send("/g", &n.to_string())).collect();
    let d3 = dg(&ids[2], "/g", "3");
    let d4 = dg(&ids[3], "/g", "4");
    // Never polled, and two of the four were evicted: a gap, then what is left.
    assert_eq!(poll(addr, &id, ""), answer(&id, &[GAP, &d3, &d4]));
    // `last` naming an evicted datagram, or one this router never issued: the same.
    assert_eq!(
        poll(addr, &id, &format!("&last={}", ids[0])),
        answer(&id, &[GAP, &d3, &d4])
    );
    assert_eq!(
        poll(addr, &id, "&last=1-999999"),
        answer(&id, &[GAP, &d3, &d4])
    );
    // `last` naming one still held: no gap.
    assert_eq!(
        poll(addr, &id, &format!("&last={}", ids[2])),
        answer(&id, &[&d4])
    );
}

#[test]
fn poll_for_an_unknown_tunnel_opens_a_new_one() {
    let addr = start(&[]);
    for unknown in [
        "0-0-0123456789abcdef",
        "1-77-0123456789abcdef",
        "9-0-0123456789abcdef",
        "nonsense",
    ] {
        let body = poll(addr, unknown, "&ttl=5000&last=0-1");
        let id = tunnel_of(&body);
        assert_ne!(id, unknown);
        assert!(is_tunnel_id(&id), "{id}");
        // New: answered at once with the control datagram, `last` ignored (no gap).
        assert_eq!(body, answer(&id, &[&control(&id, true, 15000)]));
    }
}

#[test]
fn jsonp_poll_bytes_and_headers() {
    let addr = start(&[]);
    let mut c = Client::new(addr);
    let (head, body) = get(&mut c, "/tunnel?format=jsonp&cb=my.cb_$1");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/javascript"));
    assert_eq!(head.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(head.header("cache-control"), Some("no-cache, no-store"));
    assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        head.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    let inner = body
        .strip_prefix("/**/my.cb_$1(")
        .and_then(|b| b.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not JSONP: {body}"));
    let id = tunnel_of(inner);
    assert_eq!(
        body,
        format!(
            "/**/my.cb_$1({});",
            answer(&id, &[&control(&id, true, 15000)])
        )
    );

    // Subscribe, then a datagram whose data would end a <script> element or a JS string: the
    // JSONP answer escapes '<', U+2028 and U+2029.
    let mut sub = Client::new(addr);
    sub.post(&format!("/tunnel/{id}/subscribe"), r#"{"path":"/j"}"#);
    assert_eq!(sub.response().1, r#"{"ok":true}"#);
    let did = Events::new(addr, &id).send("/j", "{\"s\":\"</script>\u{2028}\u{2029}\"}");
    let (head, body) = get(&mut c, &format!("/tunnel?format=jsonp&cb=cb&id={id}"));
    assert_eq!(head.status, 200);
    assert_eq!(
        body,
        format!(
            r#"/**/cb({{"ok":true,"tunnel":"{id}","messages":[{{"id":"{did}","path":"/j","data":{{"s":"\u003c/script>\u2028\u2029"}}}}]}});"#
        )
    );
    // The same datagram over plain long-poll JSON is not escaped (`last` naming an id this
    // tunnel never saw replays everything held, after a gap).
    let plain = dg(&did, "/j", "{\"s\":\"</script>\u{2028}\u{2029}\"}");
    assert_eq!(poll(addr, &id, "&last=0-0"), answer(&id, &[GAP, &plain]));
}

#[test]
fn jsonp_callback_names_are_validated() {
    let addr = start(&[]);
    let long_ok = format!("a{}", "b".repeat(63));
    let long_bad = format!("a{}", "b".repeat(64));
    let valid = [
        "cb",
        "_",
        "$",
        "$jq.cb_1",
        "a.b.c",
        "A9",
        "x.",
        "jQuery3_1.cb",
        &long_ok,
    ];
    for cb in valid {
        let (head, body) = get(
            &mut Client::new(addr),
            &format!("/tunnel?format=jsonp&cb={cb}"),
        );
        assert_eq!(head.status, 200, "{cb}: {body}");
        assert!(body.starts_with(&format!("/**/{cb}({{")), "{cb}: {body}");
        assert!(body.ends_with("});"), "{cb}: {body}");
    }
    let invalid = [
        "",
        "1cb",
        "a-b",
        "cb()",
        "alert(1);x",
        ".a",
        "a%20b",
        "%C3%A9",
        "a%00",
        "a%3Cb",
        "a/b",
        &long_bad,
    ];
    for cb in invalid {
        let (head, body) = get(
            &mut Client::new(addr),
            &format!("/tunnel?format=jsonp&cb={cb}"),
        );
        assert_eq!(head.status, 400, "{cb:?}: {body}");
        assert_eq!(
            head.header("content-type"),
            Some("application/json"),
            "{cb:?}"
        );
        assert_eq!(
            body, r#"{"ok":false,"error":"invalid callback name"}"#,
            "{cb:?}"
        );
    }
    // JSONP without a callback at all.
    let (head, body) = get(&mut Client::new(addr), "/tunnel?format=jsonp");
    assert_eq!(head.status, 400);
    assert_eq!(body, r#"{"ok":false,"error":"jsonp needs a cb parameter"}"#);
    // Only the valid callbacks opened tunnels.
    let m = metrics(addr);
    assert_eq!(m["tunnels_created"], valid.len() as u64, "{m}");
}

#[test]
fn ttl_is_clamped_to_the_configured_max() {
    let (addr, clock) = start_manual(&[
        "--longpoll-ttl-ms-max",
        "100",
        "--longpoll-ttl-ms-default",
        "100",
    ]);
    let id = open(addr, &["/clamp"]);
    // Far past the max, and none (the default): both expire at exactly 100 ms.
    for extra in ["&ttl=100000", ""] {
        assert_expires_after(addr, &clock, &id, "/clamp", extra, 100);
    }
    for bad in ["abc", "-1", "1.5", ""] {
        let (head, body) = get(
            &mut Client::new(addr),
            &format!("/tunnel?format=longpoll&id={id}&ttl={bad}"),
        );
        assert_eq!(head.status, 400, "ttl={bad}");
        assert_eq!(
            body,
            r#"{"ok":false,"error":"ttl must be a number of milliseconds"}"#
        );
    }
}

#[test]
fn a_second_poll_replaces_a_parked_one() {
    let addr = start(&[]);
    let id = open(addr, &["/rep"]);
    let mut first = Client::new(addr);
    first.get(&format!("/tunnel?format=longpoll&id={id}&ttl=4000"));
    assert_quiet(&mut first, Duration::from_millis(150));
    let mut second = Client::new(addr);
    second.get(&format!("/tunnel?format=longpoll&id={id}&ttl=4000"));
    // The first is answered at once with a keepalive; the second is parked.
    let (head, body) = first.response();
    assert_eq!(head.status, 200);
    assert_eq!(body, answer(&id, &[KEEPALIVE]));
    assert_quiet(&mut second, Duration::from_millis(150));
    let did = publish(addr, "/rep", "true");
    let (_, body) = second.response();
    assert_eq!(body, answer(&id, &[&dg(&did, "/rep", "true")]));
}

#[test]
fn polls_for_a_tunnel_on_the_other_shard_are_handed_over() {
    let addr = start(&[]);
    // Open tunnels, each on its own connection, until one connection sits on each shard (a new
    // tunnel is created on the shard that accepted the connection).
    let mut on: [Option<(Client, String)>; 2] = [None, None];
    for _ in 0..64 {
        if on.iter().all(Option::is_some) {
            break;
        }
        let mut c = Client::new(addr);
        let id = open_on(&mut c, &[]);
        let s = shard_of(&id) as usize;
        if on[s].is_none() {
            on[s] = Some((c, id));
        }
    }
    let [Some((mut c0, t0)), Some((mut c1, t1))] = on else {
        panic!("64 connections all landed on one shard");
    };
    // Each follows its own path (subscribed before counting handoffs: this may move connections).
    for (t, path) in [(&t0, "/x0"), (&t1, "/x1")] {
        let mut sub = Client::new(addr);
        sub.post(
            &format!("/tunnel/{t}/subscribe"),
            &format!(r#"{{"path":"{path}"}}"#),
        );
        assert_eq!(sub.response().1, r#"{"ok":true}"#);
    }
    let handoffs = |addr| metrics(addr)["handoffs_out"].as_u64().unwrap();
    let before = handoffs(addr);

    // The connection on shard 0 polls the tunnel of shard 1 (moved there), and the other way.
    for (c, t, path) in [(&mut c0, &t1, "/x1"), (&mut c1, &t0, "/x0")] {
        c.get(&format!("/tunnel?format=longpoll&id={t}&ttl=3000"));
        assert_quiet(c, Duration::from_millis(150));
        let did = publish(addr, path, "1");
        let (head, body) = c.response();
        assert_eq!(head.status, 200);
        assert_eq!(body, answer(t, &[&dg(&did, path, "1")]));
    }
    assert!(
        eventually(|| handoffs(addr) == before + 2),
        "handoffs_out went from {before} to {}",
        handoffs(addr)
    );
    // The moved connections keep serving: each now sits on the other shard, so polling the
    // tunnel it opened moves it back.
    for (c, t, path) in [(&mut c0, &t0, "/x0"), (&mut c1, &t1, "/x1")] {
        c.get(&format!("/tunnel?format=longpoll&id={t}&ttl=3000"));
        assert_quiet(c, Duration::from_millis(150));
        let did = publish(addr, path, "2");
        let (head, body) = c.response();
        assert_eq!(head.status, 200);
        assert_eq!(body, answer(t, &[&dg(&did, path, "2")]));
    }
    assert!(eventually(|| handoffs(addr) == before + 4));
}
