//! What an operator's tools see: `/metrics` in the Prometheus text format, read by the
//! Prometheus client library's own parser (PyPI `prometheus-client`, through
//! scripts/ops/prometheus_scrape.py) while a client opens, re-attaches, publishes and is cut off
//! as a slow consumer; the JSON form behind `?format=json` and `Accept`; `/healthz` and
//! `/readyz`.
//!
//! Needs `python3 -m pip install prometheus-client` (scripts/check.sh installs it, pinned). A
//! missing parser fails the test with that instruction: it is never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

/// One scrape, as the Prometheus parser read it.
struct Scrape {
    content_type: String,
    families: Vec<Value>,
}

impl Scrape {
    fn of(addr: SocketAddr) -> Scrape {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = Command::new("python3")
            .arg("scripts/ops/prometheus_scrape.py")
            .arg(format!("http://{addr}/metrics"))
            .current_dir(workspace)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "the Prometheus parser refused the scrape (or is missing: install it with \
             `python3 -m pip install prometheus-client`, as scripts/check.sh does):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Scrape {
            content_type: v["content_type"].as_str().unwrap().to_owned(),
            families: v["families"].as_array().unwrap().clone(),
        }
    }

    /// Samples named `name` whose labels include `labels`: `(labels, value)`.
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(Value, f64)> {
        self.families
            .iter()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .filter(|s| s[0] == name)
            .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
            .map(|s| (s[1].clone(), s[2].as_f64().unwrap()))
            .collect()
    }

    /// The sum of those samples (over shards, say); panics when there is none.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let samples = self.samples(name, labels);
        assert!(!samples.is_empty(), "no sample {name} {labels:?}");
        samples.iter().map(|(_, v)| v).sum()
    }
}

/// How much `name` grew from `before` to `after`.
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.sum(name, labels) - before.sum(name, labels)
}

fn sse_control(s: &mut Stream) -> String {
    assert_eq!(s.head.status, 200);
    let v = s.sse_json().expect("control event");
    assert_eq!(v["type"], "tunnel");
    v["tunnel"].as_str().unwrap().to_owned()
}

#[test]
fn a_prometheus_parser_reads_every_metric_and_counters_follow_a_client() {
    let addr = start(&[
        "--datagram-data-bytes-max",
        "16384",
        "--send-queue-bytes-max",
        "131072",
    ]);
    let before = Scrape::of(addr);
    assert_eq!(
        before.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    // Every family is typed and described; every sample of a shard's counter names its shard.
    assert!(
        before.families.len() >= 30,
        "{} families",
        before.families.len()
    );
    for f in &before.families {
        assert_ne!(f["type"], "unknown", "{f}");
        assert!(!f["help"].as_str().unwrap().is_empty(), "{f}");
        let name = f["name"].as_str().unwrap();
        if name.starts_with("router_") && !matches!(name, "router_shards" | "router_draining") {
            for s in f["samples"].as_array().unwrap() {
                assert!(s[1]["shard"] == "0" || s[1]["shard"] == "1", "{s}");
            }
        }
    }
    // Refusal reasons are a fixed set, every one present on every shard before it happens.
    for reason in router::refusal::Refusal::LABELS {
        let labels = [("reason", *reason)];
        assert_eq!(before.samples("router_refusals_total", &labels).len(), 2);
    }
    assert!(before.sum("process_resident_memory_bytes", &[]) > 1e6);
    assert!(before.sum("process_open_fds", &[]) >= 3.0);
    assert!(before.sum("process_max_fds", &[]) >= 1024.0);
    assert_eq!(before.sum("router_shards", &[]), 2.0);
    assert_eq!(before.sum("router_draining", &[]), 0.0);

    // A client opens a tunnel, gets three datagrams, leaves and re-attaches after the first.
    let mut first = Stream::open(addr, "/tunnel?format=sse&path=/m");
    let tunnel = sse_control(&mut first);
    let ids: Vec<String> = (0..3)
        .map(|i| publish(addr, "/m", &i.to_string()))
        .collect();
    for id in &ids {
        assert_eq!(first.sse_json().unwrap()["id"], *id);
    }
    drop(first);
    let target = format!("/tunnel?format=sse&id={tunnel}&last={}", ids[0]);
    let mut second = Stream::open(addr, &target);
    assert_eq!(sse_control(&mut second), tunnel);
    for id in &ids[1..] {
        assert_eq!(second.sse_json().unwrap()["id"], *id);
    }
    let mut c = Client::new(addr);
    c.get("/nope");
    assert_eq!(c.response().0.status, 404);
    // The first connection's end is seen by its shard a moment after the client closed it.
    let mut after = Scrape::of(addr);
    for _ in 0..50 {
        if after.sum("router_attachments_open", &[("format", "sse")]) == 1.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        after = Scrape::of(addr);
    }
    let sse = [("format", "sse")];
    assert_eq!(after.sum("router_attachments_open", &sse), 1.0);
    assert_eq!(
        delta(&before, &after, "router_attachments_total", &sse),
        2.0
    );
    assert_eq!(
        delta(&before, &after, "router_tunnels_created_total", &[]),
        1.0
    );
    assert_eq!(after.sum("router_tunnels_open", &[]), 1.0);
    assert_eq!(
        delta(&before, &after, "router_tunnels_reattached_total", &[]),
        1.0
    );
    assert_eq!(
        delta(&before, &after, "router_replayed_datagrams_total", &[]),
        2.0
    );
    assert_eq!(delta(&before, &after, "router_publishes_total", &[]), 3.0);
    assert_eq!(delta(&before, &after, "router_deliveries_total", &[]), 3.0);
    assert_eq!(delta(&before, &after, "router_gaps_total", &[]), 0.0);
    let not_found = [("reason", "not_found")];
    assert_eq!(
        delta(&before, &after, "router_refusals_total", &not_found),
        1.0
    );
    assert!(delta(&before, &after, "router_connections_accepted_total", &[]) >= 6.0);
    // Five writes of a datagram: three live, two replayed; the histogram is cumulative.
    let latency = "router_publish_to_write_seconds";
    assert_eq!(
        delta(&before, &after, &format!("{latency}_count"), &[]),
        5.0
    );
    for shard in ["0", "1"] {
        let buckets = after.samples(&format!("{latency}_bucket"), &[("shard", shard)]);
        assert_eq!(buckets.len(), 19);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        let count = after.sum(&format!("{latency}_count"), &[("shard", shard)]);
        assert_eq!(buckets.last().unwrap().0["le"], "+Inf");
        assert_eq!(buckets.last().unwrap().1, count);
    }
    assert!(after.sum(&format!("{latency}_sum"), &[]) > 0.0);

    // A consumer that reads nothing is cut off once its send queue passes its bound.
    let mut slow = Stream::open(addr, "/tunnel?format=sse&path=/slow");
    let slow_tunnel = sse_control(&mut slow);
    // A publisher on the tunnel's shard, so that its publishes are queued as they come.
    let on_shard = format!("{}-", shard_of(&slow_tunnel));
    let mut p = (0..64)
        .map(|_| Publisher::new(addr))
        .find_map(|mut p| p.publish("/probe", "0").starts_with(&on_shard).then_some(p))
        .expect("a publisher connection on the tunnel's shard within 64 connections");
    let data = format!("\"{}\"", "s".repeat(16000));
    for i in 0..1024 {
        p.publish("/slow", &data);
        if i % 32 == 31 && metrics(addr)["slow_consumer"] == 1 {
            break;
        }
    }
    let kicked = Scrape::of(addr);
    let slow_consumers = "router_slow_consumer_disconnects_total";
    assert_eq!(delta(&after, &kicked, slow_consumers, &[]), 1.0);
    assert!(delta(&after, &kicked, "router_publishes_total", &[]) >= 32.0);
}

#[test]
fn metrics_are_json_when_asked_for() {
    let addr = start(&[]);
    for request in [
        "GET /metrics?format=json HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n",
    ] {
        let mut c = Client::new(addr);
        c.send(request.as_bytes());
        let (head, body) = c.response();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some("application/json"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["shards"], 2, "{body}");
    }
    let mut c = Client::new(addr);
    c.get("/metrics");
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        body.contains("\n# TYPE router_tunnels_open gauge\n"),
        "{body}"
    );
}

#[test]
fn health_and_readiness_answer_while_serving() {
    let addr = start(&[]);
    for target in ["/healthz", "/readyz"] {
        let mut c = Client::new(addr);
        c.get(target);
        let (head, body) = c.response();
        assert_eq!(
            (head.status, body.as_str()),
            (200, r#"{"ok":true}"#),
            "{target}"
        );
        let mut c = Client::new(addr);
        c.post(target, "");
        let (head, _) = c.response();
        assert_eq!(head.status, 405, "{target}");
        assert_eq!(head.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
}

#[test]
fn every_metric_the_alert_rules_name_is_exported() {
    let addr = start(&[]);
    let mut c = Client::new(addr);
    c.get("/metrics");
    let (_, body) = c.response();
    let exported: std::collections::BTreeSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let rules = std::fs::read_to_string(workspace.join("deploy/router-alerts.yml")).unwrap();
    let mut named = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if (word.starts_with("router_") || word.starts_with("process_")) && word.len() > 8 {
            assert!(
                exported.contains(word),
                "deploy/router-alerts.yml names `{word}`, which /metrics does not export"
            );
            named += 1;
        }
    }
    assert!(named >= 10, "{named} metric names in the rules");
}
