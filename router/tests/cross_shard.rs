//! Two shards over loopback: fan-out to tunnels owned by either shard, exactly once and in publish
//! order; re-attaching through connections that land on either shard; private paths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use std::net::SocketAddr;
use support::*;

/// Most connections opened while looking for one that lands on (or a tunnel owned by) a given
/// shard. Connections spread over the two shards at random, so 64 misses in a row mean the
/// router is not spreading them.
const ATTEMPTS: usize = 64;

/// The shard a datagram was published on, from its id `<shard>-<seq>`.
fn datagram_shard(id: &str) -> u16 {
    id.split('-').next().unwrap().parse().unwrap()
}

/// One publisher connection served by each shard: `[on shard 0, on shard 1]`. Found with a probe
/// publish on `/probe` (which nothing in these tests subscribes to): its id names the shard.
fn publishers_on_both_shards(addr: SocketAddr) -> [Publisher; 2] {
    let mut found: [Option<Publisher>; 2] = [None, None];
    for _ in 0..ATTEMPTS {
        let mut p = Publisher(Client::new(addr));
        let shard = datagram_shard(&p.publish("/probe", "0")) as usize;
        if found[shard].is_none() {
            found[shard] = Some(p);
        }
        if found.iter().all(Option::is_some) {
            return found.map(Option::unwrap);
        }
    }
    panic!("no publisher connection on each shard after {ATTEMPTS} connections");
}

/// A NUL-format tunnel: its id and its stream, past the control datagram.
struct Nul {
    tunnel: String,
    s: Stream,
}

impl Nul {
    fn open(addr: SocketAddr, target: &str) -> (Nul, bool) {
        let mut s = Stream::open(addr, target);
        assert_eq!(s.head.status, 200);
        let rec = String::from_utf8(s.record(b"\0").expect("control")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
        let tunnel = v["tunnel"].as_str().unwrap().to_string();
        let new = v["new"].as_bool().unwrap();
        assert_eq!(
            rec,
            format!(r#"{{"type":"tunnel","tunnel":"{tunnel}","new":{new},"keepalive_ms":15000}}"#)
        );
        (Nul { tunnel, s }, new)
    }

    fn next(&mut self) -> String {
        String::from_utf8(self.s.record(b"\0").expect("a datagram")).unwrap()
    }
}

/// Opens new tunnels on `query` until at least one is owned by each shard; returns them all.
fn tunnels_on_both_shards(addr: SocketAddr, query: &str) -> Vec<Nul> {
    let mut tunnels: Vec<Nul> = Vec::new();
    for _ in 0..ATTEMPTS {
        let (t, new) = Nul::open(addr, &format!("/tunnel?format=nul&{query}"));
        assert!(new);
        tunnels.push(t);
        let on = |shard| tunnels.iter().any(|t| shard_of(&t.tunnel) == shard);
        if on(0) && on(1) {
            return tunnels;
        }
    }
    panic!("no tunnel owned by each shard after {ATTEMPTS} tunnels");
}

#[test]
fn every_tunnel_gets_every_publish_once_and_in_order() {
    let addr = start(&[]);
    // Publishers first: their probes must not reach the tunnels.
    let publishers = publishers_on_both_shards(addr);
    let mut tunnels = tunnels_on_both_shards(addr, "path=/fan/*");
    // Each publisher in turn (local delivery to one shard's tunnels, ring delivery to the other's).
    for mut p in publishers {
        let ids: Vec<String> = (0..200)
            .map(|i| p.publish(&format!("/fan/{}", i % 3), &format!(r#"{{"i":{i}}}"#)))
            .collect();
        let sentinel = p.publish("/fan", r#""end""#);
        let shard = datagram_shard(&ids[0]);
        assert!(ids.iter().all(|id| datagram_shard(id) == shard));
        for t in tunnels.iter_mut() {
            for (i, id) in ids.iter().enumerate() {
                let expected = datagram(id, &format!("/fan/{}", i % 3), &format!(r#"{{"i":{i}}}"#));
                assert_eq!(
                    t.next(),
                    expected,
                    "tunnel {} (shard {}), publisher on shard {shard}",
                    t.tunnel,
                    shard_of(&t.tunnel)
                );
            }
            assert_eq!(t.next(), datagram(&sentinel, "/fan", r#""end""#));
        }
    }
    let m = metrics(addr);
    assert_eq!(m["deliveries"], 2 * 201 * tunnels.len() as u64);
}

#[test]
fn reattach_through_many_connections_reaches_the_owner() {
    let addr = start(&[]);
    let (mut current, new) = Nul::open(addr, "/tunnel?format=nul&path=/hop");
    assert!(new);
    let tunnel = current.tunnel.clone();
    let mut p = Publisher(Client::new(addr));
    let first = p.publish("/hop", "0");
    assert_eq!(current.next(), datagram(&first, "/hop", "0"));
    let mut last = first;
    let mut hops = 0;
    while hops < 8 || metrics(addr)["handoffs_out"].as_u64().unwrap() < 2 {
        assert!(hops < ATTEMPTS, "no connection needed a handoff");
        hops += 1;
        // Published while the old attachment is still there: it may or may not send it.
        let missed = p.publish("/hop", &hops.to_string());
        let missed_json = datagram(&missed, "/hop", &hops.to_string());
        let (mut next, new) =
            Nul::open(addr, &format!("/tunnel?format=nul&id={tunnel}&last={last}"));
        assert!(
            !new,
            "hop {hops}: re-attach reached a shard without the tunnel"
        );
        assert_eq!(next.tunnel, tunnel);
        // Replayed after `last`, whatever the old attachment did with it.
        assert_eq!(next.next(), missed_json, "hop {hops}");
        // The old attachment ended cleanly, having sent at most that datagram.
        let rest = String::from_utf8(current.s.rest()).unwrap();
        assert!(
            rest.is_empty() || rest == format!("{missed_json}\0"),
            "hop {hops}: old attachment sent {rest:?}"
        );
        assert!(current.s.ended);
        current = next;
        last = missed;
    }
    let end = p.publish("/hop", r#""end""#);
    assert_eq!(current.next(), datagram(&end, "/hop", r#""end""#));
    let m = metrics(addr);
    assert_eq!(m["tunnels_created"], 1);
    assert_eq!(m["replaced"], hops);
}

#[test]
fn private_path_reaches_only_its_tunnel_on_either_shard() {
    let addr = start(&[]);
    let mut publishers = publishers_on_both_shards(addr);
    // Everything public reaches every tunnel; private datagrams must not.
    let mut tunnels = tunnels_on_both_shards(addr, "path=/*");
    for p in publishers.iter_mut() {
        for target in 0..tunnels.len() {
            let to = tunnels[target].tunnel.clone();
            let path = format!("/tunnel/{to}");
            let private = p.publish(&path, r#"{"secret":true}"#);
            let sentinel = p.publish("/public", "1");
            for (i, t) in tunnels.iter_mut().enumerate() {
                if i == target {
                    assert_eq!(t.next(), datagram(&private, &path, r#"{"secret":true}"#));
                }
                assert_eq!(
                    t.next(),
                    datagram(&sentinel, "/public", "1"),
                    "tunnel {} got something else after the private publish to {to}",
                    t.tunnel
                );
            }
        }
    }
    // Nobody may subscribe to a private path.
    for pattern in ["/tunnel/*", &format!("/tunnel/{}", tunnels[0].tunnel)] {
        let mut c = Client::new(addr);
        c.get(&format!("/tunnel?format=nul&path={pattern}"));
        let (head, body) = c.response();
        assert_eq!(head.status, 403, "{pattern}");
        assert_eq!(body, r#"{"ok":false,"error":"path is private"}"#);
    }
    // Ids that cannot name a tunnel are refused whichever shard answers.
    for p in publishers.iter_mut() {
        for bad in ["/tunnel/9-0-0123456789abcdef", "/tunnel/zzz"] {
            assert_eq!(
                p.try_publish(bad, "1"),
                (404, r#"{"ok":false,"error":"unknown tunnel"}"#.to_string()),
                "{bad}"
            );
        }
    }
}

/// A publish to the private path of a tunnel that does not exist is refused with 404 whichever
/// shard the publishing connection landed on (the owner shard confirms remote ones).
#[test]
fn private_publish_to_an_unknown_tunnel_answers_the_same_on_every_shard() {
    let addr = start(&[]);
    let mut publishers = publishers_on_both_shards(addr);
    for owner in 0..2 {
        let path = format!("/tunnel/{owner}-4242-0123456789abcdef");
        for (on, p) in publishers.iter_mut().enumerate() {
            assert_eq!(
                p.try_publish(&path, "1"),
                (404, r#"{"ok":false,"error":"unknown tunnel"}"#.to_string()),
                "{path} from a publisher on shard {on}"
            );
        }
    }
    assert_eq!(metrics(addr)["deliveries"], 0);
}
