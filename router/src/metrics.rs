//! Counters, one set per shard, written only by their shard and read by anyone (`GET /metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Refusal reasons the counters have room for; the server names them (`Refusal::LABELS`).
pub const REFUSAL_REASONS_MAX: usize = 64;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// One shard's counters. Relaxed atomics: each is written by its own shard only.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Requests and client messages refused, by reason (the index of a label).
            refused: Refused,
        }

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
    /// Refusals due to the server's own limits or state (too many tunnels, a full ring) rather
    /// than to the request; every refusal is also counted by reason in `refused`.
    refused_by_server,
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
    /// Attached connections ended because the server stopped.
    closed_by_stop,
    /// Streams ended after `stream_recycle_bytes`.
    recycled,
    /// Keepalives written (WebSocket pings included).
    keepalives,
    /// WebSocket clients dropped for leaving pings unanswered.
    ping_timeouts,
}

#[derive(Debug)]
struct Refused([AtomicU64; REFUSAL_REASONS_MAX]);

impl Default for Refused {
    fn default() -> Self {
        Refused(std::array::from_fn(|_| AtomicU64::new(0)))
    }
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
pub fn to_json(shards: &[std::sync::Arc<Metrics>], labels: &[&'static str]) -> String {
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
