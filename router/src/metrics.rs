//! Counters, one set per shard, written only by their shard and read by anyone (`GET /metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// One shard's counters. Relaxed atomics: each is written by its own shard only.
        #[derive(Debug, Default)]
        pub struct Metrics { $($(#[$doc])* pub $name: AtomicU64,)* }

        impl Metrics {
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
    tunnels_created,
    tunnels_culled,
    /// Requests answered with an error status.
    requests_failed,
    /// Requests whose client closed or reset the connection before sending all of them.
    requests_aborted,
    /// Client JSON texts refused for nesting deeper than `json_depth_max`.
    json_too_deep,
    /// Publishes that originated on this shard.
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
    /// Streams ended after `stream_recycle_bytes`.
    recycled,
    /// Keepalives written (WebSocket pings included).
    keepalives,
    /// WebSocket clients dropped for leaving pings unanswered.
    ping_timeouts,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Writes the sum over shards as one JSON object.
pub fn to_json(shards: &[std::sync::Arc<Metrics>]) -> String {
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
    format!("{{\"shards\":{},{}}}", shards.len(), fields.join(","))
}
