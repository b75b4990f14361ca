//! The epoll fallback driver (`--io-driver epoll`) serves the same protocol: streams, parked
//! long-polls, and connections handed to the owner shard. The start-up log says which driver
//! the shards run on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use support::process::RouterProcess;
use support::*;

fn sse_tunnel(s: &mut Stream) -> String {
    let hello = s.sse_json().expect("tunnel datagram");
    assert_eq!(hello["type"], "tunnel");
    hello["tunnel"].as_str().unwrap().to_string()
}

#[test]
fn streams_polls_and_handoffs_on_epoll() {
    let addr = start(&["--io-driver", "epoll", "--keepalive-ms", "50"]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/e/*");
    let tunnel = sse_tunnel(&mut s);

    // Delivery and keepalive.
    let id = publish(addr, "/e/a", "1");
    let ev = s.sse_event().unwrap();
    assert_eq!(ev[0], format!("id: {id}"));
    assert_eq!(s.record(b"\n\n").unwrap(), b":");

    // Re-attach through new connections until some landed on the other shard and were handed
    // over; each must reach the tunnel, replaying what followed `last`.
    let mut last = id;
    let mut hops = 0;
    while metrics(addr)["handoffs_out"].as_u64().unwrap() < 2 {
        hops += 1;
        assert!(hops <= 64, "no re-attach needed a handoff");
        let missed = publish(addr, "/e/b", &hops.to_string());
        let mut next = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}&last={last}"));
        let hello = next.sse_json().unwrap();
        assert_eq!(hello["tunnel"], tunnel.as_str());
        assert_eq!(hello["new"], false);
        assert_eq!(next.sse_event().unwrap()[0], format!("id: {missed}"));
        last = missed;
    }

    // A parked long-poll is answered by a publish.
    let mut c = Client::new(addr);
    c.get("/tunnel?format=longpoll&path=/p");
    let (_, body) = c.response();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let poll_tunnel = v["tunnel"].as_str().unwrap().to_string();
    let mut poller = Client::new(addr);
    poller.get(&format!(
        "/tunnel?format=longpoll&id={poll_tunnel}&ttl=5000"
    ));
    std::thread::sleep(std::time::Duration::from_millis(50));
    let pid = publish(addr, "/p", r#""x""#);
    let (head, body) = poller.response();
    assert_eq!(head.status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"][0]["id"], pid.as_str());
}

#[test]
fn the_start_up_log_names_the_driver_in_use() {
    let router = RouterProcess::start(&["--io-driver", "epoll"]);
    let line = router.log_line_after(0, "listening");
    assert!(
        line.contains("shards=2 io_driver=epoll"),
        "the driver asked for: {line}"
    );
    // `auto` runs on io_uring where it can be set up, and says so when it cannot.
    let router = RouterProcess::start(&["--io-driver", "auto"]);
    let line = router.log_line_after(0, "listening");
    if monoio::utils::detect_uring() {
        assert!(line.contains("shards=2 io_driver=io_uring"), "{line}");
    } else {
        assert!(line.contains("shards=2 io_driver=epoll"), "{line}");
        router.log_line_after(
            0,
            "io_uring is unavailable; falling back to the epoll driver",
        );
    }
}
