//! Counters, one set per shard, written only by their shard and read by anyone (`GET /metrics`):
//! summed as JSON ([`to_json`]), or per shard in the Prometheus text format
//! ([`to_prometheus`]), with attachments by format and a publish-to-write latency histogram.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Refusal reasons the counters have room for; the server names them (`Refusal::LABELS`).
pub const REFUSAL_REASONS_MAX: usize = 64;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// One shard's counters. Relaxed atomics: each is written by its own shard only.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            /// Requests and client messages refused, by reason (the index of a label).
            refused: Refused,
            /// Tunnel requests served, by format ([`FORMAT_LABELS`]).
            pub attachments: PerFormat,
            /// Connections attached to a tunnel now, by format.
            pub attachments_open: PerFormat,
            /// From a datagram's publish to its write by the shard serving the tunnel.
            pub publish_to_write: Latency,
        }

        impl Metrics {
            /// `(name, help)` of every counter, in [`Metrics::snapshot`] order; the help is the
            /// counter's doc comment.
            pub const COUNTERS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($name), concat!($($doc),*)),)*];

            /// `(name, value)` pairs, for reporting.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Connections accepted (or handed over from another shard).
    connections_accepted,
    /// Connections currently open on the shard.
    connections_open,
    /// Connections refused at accept because of `connections_per_shard_max`.
    connections_refused,
    /// Tunnels currently held.
    tunnels_open,
    /// Tunnels opened.
    tunnels_created,
    /// Tunnels dropped after their grace period passed with nothing attached.
    tunnels_culled,
    /// Tunnel requests that re-attached to an existing tunnel.
    tunnels_reattached,
    /// Datagrams a re-attach found waiting in its tunnel's replay buffer.
    replayed,
    /// Gap markers sent: datagrams a tunnel had to drop before its client got them.
    gaps,
    /// Requests answered with an error status.
    requests_failed,
    /// Requests whose client closed or reset the connection before sending all of them.
    requests_aborted,
    /// Refusals due to the server's own limits or state (too many tunnels, a full ring) rather
    /// than to the request; every refusal is also counted by reason in `refused`.
    refused_by_server,
    /// Publishes accepted on this shard.
    publishes,
    /// Datagrams queued to local tunnels.
    deliveries,
    /// Publishes refused because a cross-shard ring was full.
    ring_full,
    /// Connections moved to the shard that owns their tunnel.
    handoffs_out,
    /// Attached connections closed because their tunnel fell behind (counted disconnect).
    slow_consumer,
    /// Attached connections closed because another attached to the same tunnel.
    replaced,
    /// Attached connections ended because the server stopped.
    closed_by_stop,
    /// Attached connections closed because their tunnel's token expired.
    token_expired,
    /// Streams ended after `stream_recycle_bytes`.
    recycled,
    /// Keepalives written (WebSocket pings included).
    keepalives,
    /// WebSocket clients dropped for leaving pings unanswered.
    ping_timeouts,
    /// TLS connections being pumped (each also counts in `connections_open` while the
    /// connection loop serves it; the pump may outlive it by the last bytes it forwards).
    tls_connections_open,
    /// TLS handshakes completed on the TLS listener.
    tls_handshakes,
    /// TLS handshakes that failed or did not finish within `header_read_timeout_ms`.
    tls_handshakes_failed,
}

#[derive(Debug)]
struct Refused([AtomicU64; REFUSAL_REASONS_MAX]);

impl Default for Refused {
    fn default() -> Self {
        Refused(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The `format` label of attachments: the built-in formats, WebSocket, and every custom format
/// under one label (their names come from the configuration, but one label keeps the set fixed).
pub const FORMAT_LABELS: [&str; 8] = [
    "sse", "nul", "ndjson", "iframe", "longpoll", "jsonp", "ws", "custom",
];

/// One counter per format of [`FORMAT_LABELS`].
#[derive(Debug, Default)]
pub struct PerFormat([AtomicU64; FORMAT_LABELS.len()]);

impl PerFormat {
    pub fn add(&self, format: usize, n: u64) {
        if let Some(c) = self.0.get(format) {
            Metrics::add(c, n);
        }
    }

    pub fn sub(&self, format: usize, n: u64) {
        if let Some(c) = self.0.get(format) {
            Metrics::sub(c, n);
        }
    }

    fn values(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FORMAT_LABELS
            .iter()
            .zip(&self.0)
            .map(|(l, c)| (*l, c.load(Ordering::Relaxed)))
    }
}

/// Upper bounds of the latency histogram's buckets, in nanoseconds (10 µs to 10 s; a last
/// bucket takes the rest). Fixed, so that shards and scrapes can be summed.
pub const LATENCY_BOUNDS_NS: [u64; 18] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// A fixed-bucket latency histogram without locks: counts per bucket (not cumulative) and the
/// sum in microseconds (nanoseconds would wrap within hours at a million observations a second).
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    sum_us: AtomicU64,
}

impl Latency {
    /// Records the time from `published_ns` to `now_ns` (both from [`monotonic_ns`]). Only the
    /// shard that owns the histogram calls it, so a plain load and store replace a locked
    /// read-modify-write: a few cycles per datagram written.
    pub fn since(&self, published_ns: u64, now_ns: u64) {
        let ns = now_ns.saturating_sub(published_ns);
        let bucket = LATENCY_BOUNDS_NS.partition_point(|&bound| bound < ns);
        if let Some(counter) = self.buckets.get(bucket) {
            bump(counter, 1);
        }
        bump(&self.sum_us, (ns + 500) / 1000);
    }

    /// Counts per bucket (the last one past every bound) and the sum in microseconds.
    pub fn snapshot(&self) -> ([u64; LATENCY_BOUNDS_NS.len() + 1], u64) {
        let counts =
            std::array::from_fn(|i| self.buckets.get(i).map_or(0, |c| c.load(Ordering::Relaxed)));
        (counts, self.sum_us.load(Ordering::Relaxed))
    }
}

/// Adds to a counter that only one thread writes.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Nanoseconds on a monotonic clock every thread of the process shares (from its first use).
pub fn monotonic_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

impl Metrics {
    /// Counts one refusal of the reason at `index`.
    pub fn refused(&self, index: usize) {
        if let Some(counter) = self.refused.0.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(label, count)` of every refusal reason; `labels` name them in index order.
    pub fn refusals<'a>(
        &'a self,
        labels: &'a [&'static str],
    ) -> impl Iterator<Item = (&'static str, u64)> + 'a {
        labels
            .iter()
            .zip(&self.refused.0)
            .map(|(label, n)| (*label, n.load(Ordering::Relaxed)))
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Writes the sum over shards as one JSON object, refusals by reason (those that happened) in
/// `"refused"`; `labels` name the refusal reasons.
pub fn to_json(shards: &[Arc<Metrics>], labels: &[&'static str]) -> String {
    let mut totals: Vec<(&'static str, u64)> = Vec::new();
    for m in shards {
        for (i, (name, value)) in m.snapshot().into_iter().enumerate() {
            match totals.get_mut(i) {
                Some(t) => t.1 += value,
                None => totals.push((name, value)),
            }
        }
    }
    let fields: Vec<String> = totals.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
    let mut refused: Vec<(&'static str, u64)> = labels.iter().map(|l| (*l, 0)).collect();
    for m in shards {
        for ((_, total), (_, n)) in refused.iter_mut().zip(m.refusals(labels)) {
            *total += n;
        }
    }
    let refused: Vec<String> = refused
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(label, n)| format!("\"{label}\":{n}"))
        .collect();
    format!(
        "{{\"shards\":{},{},\"refused\":{{{}}}}}",
        shards.len(),
        fields.join(","),
        refused.join(",")
    )
}

/// The content type of [`to_prometheus`]'s text.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the process reports besides the shards' counters (read by the caller: this floor does
/// no I/O). `None` where it could not be read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Process {
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub open_fds_max: Option<u64>,
    /// The router is draining: it no longer accepts connections.
    pub draining: bool,
}

/// The Prometheus name and type of counter `name`: `router_<name>_total`, or a gauge
/// `router_<name>` for what is open now; a few counters get a clearer name.
fn prometheus_name(name: &str) -> (String, &'static str) {
    if name.ends_with("_open") {
        return (format!("router_{name}"), "gauge");
    }
    let name = match name {
        "slow_consumer" => "slow_consumer_disconnects",
        "replaced" => "attachments_replaced",
        "closed_by_stop" => "attachments_closed_by_stop",
        "token_expired" => "attachments_closed_token_expired",
        "recycled" => "streams_recycled",
        "replayed" => "replayed_datagrams",
        other => other,
    };
    (format!("router_{name}_total"), "counter")
}

/// Writes `# HELP` (escaped as the format asks) and `# TYPE`.
fn put_family(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.trim().replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The Prometheus text exposition format 0.0.4: every counter per shard (`shard` label),
/// refusals by `reason` (every label of `labels`, so the set is fixed), attachments by
/// `format`, the publish-to-write latency histogram per shard, and the process's gauges.
pub fn to_prometheus(shards: &[Arc<Metrics>], labels: &[&'static str], process: Process) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let snapshots: Vec<Vec<(&'static str, u64)>> = shards.iter().map(|m| m.snapshot()).collect();
    for (i, (name, help)) in Metrics::COUNTERS.iter().enumerate() {
        let (family, kind) = prometheus_name(name);
        put_family(&mut out, &family, kind, help);
        for (shard, snapshot) in snapshots.iter().enumerate() {
            let value = snapshot.get(i).map_or(0, |(_, v)| *v);
            let _ = writeln!(out, "{family}{{shard=\"{shard}\"}} {value}");
        }
    }
    let family = "router_refusals_total";
    put_family(
        &mut out,
        family,
        "counter",
        "Requests and client messages refused, by reason.",
    );
    for (shard, m) in shards.iter().enumerate() {
        for (reason, n) in m.refusals(labels) {
            let _ = writeln!(out, "{family}{{shard=\"{shard}\",reason=\"{reason}\"}} {n}");
        }
    }
    let per_format = [
        (
            "router_attachments_total",
            "counter",
            "Tunnel requests served, by format.",
            false,
        ),
        (
            "router_attachments_open",
            "gauge",
            "Connections attached to a tunnel, by format.",
            true,
        ),
    ];
    for (family, kind, help, open) in per_format {
        put_family(&mut out, family, kind, help);
        for (shard, m) in shards.iter().enumerate() {
            let counts = if open {
                &m.attachments_open
            } else {
                &m.attachments
            };
            for (format, n) in counts.values() {
                let _ = writeln!(out, "{family}{{shard=\"{shard}\",format=\"{format}\"}} {n}");
            }
        }
    }
    let family = "router_publish_to_write_seconds";
    put_family(
        &mut out,
        family,
        "histogram",
        "From a datagram's publish to its write to a tunnel's connection (replays included).",
    );
    for (shard, m) in shards.iter().enumerate() {
        let (counts, sum_us) = m.publish_to_write.snapshot();
        let mut cumulative = 0;
        for (i, n) in counts.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BOUNDS_NS.get(i) {
                Some(&ns) => format!("{}", ns as f64 / 1e9),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(
                out,
                "{family}_bucket{{shard=\"{shard}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum_s = sum_us as f64 / 1e6;
        let _ = writeln!(out, "{family}_sum{{shard=\"{shard}\"}} {sum_s}");
        let _ = writeln!(out, "{family}_count{{shard=\"{shard}\"}} {cumulative}");
    }
    let gauges = [
        (
            "router_shards",
            "Shards (one thread and listener each).",
            Some(shards.len() as u64),
        ),
        (
            "router_draining",
            "1 while the router drains before it exits (not accepting).",
            Some(u64::from(process.draining)),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process.resident_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            process.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            process.open_fds_max,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            put_family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let h = Latency::default();
        h.since(1_000, 1_000); // 0
        h.since(0, 10_000); // exactly the first bound
        h.since(0, 10_001);
        h.since(0, 10_000_000_001); // past every bound
        h.since(5, 1); // a clock that went back counts as 0
        let (counts, sum_us) = h.snapshot();
        assert_eq!(counts[0], 3);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[LATENCY_BOUNDS_NS.len()], 1);
        assert_eq!(counts.iter().sum::<u64>(), 5);
        assert_eq!(sum_us, 10 + 10 + 10_000_000);
        assert!(LATENCY_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn prometheus_text_names_every_counter_per_shard() {
        let shards: Vec<Arc<Metrics>> = (0..2).map(|_| Arc::default()).collect();
        Metrics::add(&shards[1].connections_accepted, 3);
        Metrics::add(&shards[0].slow_consumer, 2);
        shards[1].refused(1);
        shards[0].attachments_open.add(6, 4);
        shards[1].publish_to_write.since(0, 30_000);
        let process = Process {
            resident_bytes: Some(1 << 20),
            open_fds: None,
            open_fds_max: Some(1024),
            draining: true,
        };
        let text = to_prometheus(&shards, &["a", "b"], process);
        for line in [
            "# TYPE router_connections_accepted_total counter",
            "router_connections_accepted_total{shard=\"1\"} 3",
            "router_connections_accepted_total{shard=\"0\"} 0",
            "# TYPE router_connections_open gauge",
            "router_slow_consumer_disconnects_total{shard=\"0\"} 2",
            "router_refusals_total{shard=\"1\",reason=\"b\"} 1",
            "router_refusals_total{shard=\"0\",reason=\"a\"} 0",
            "router_attachments_open{shard=\"0\",format=\"ws\"} 4",
            "router_publish_to_write_seconds_bucket{shard=\"1\",le=\"0.00001\"} 0",
            "router_publish_to_write_seconds_bucket{shard=\"1\",le=\"0.00005\"} 1",
            "router_publish_to_write_seconds_bucket{shard=\"1\",le=\"+Inf\"} 1",
            "router_publish_to_write_seconds_count{shard=\"1\"} 1",
            "router_publish_to_write_seconds_sum{shard=\"1\"} 0.00003",
            "router_draining 1",
            "process_resident_memory_bytes 1048576",
            "process_max_fds 1024",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(
            !text.contains("process_open_fds"),
            "unread gauges are left out"
        );
        // Every counter has help text, and every family is announced once.
        for (name, help) in Metrics::COUNTERS {
            assert!(!help.trim().is_empty(), "{name} has no doc comment");
        }
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let count = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), count);
    }
}
