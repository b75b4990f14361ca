//! Criterion benchmarks of the router's in-memory hot paths live in `benches/`; this library
//! only gives them fixtures.

use router::pubsub::{Pattern, Registry};
use router::wire::datagram::{Datagram, DatagramId};

/// A registry with `tunnels` slots subscribed over `paths` exact paths and as many subtrees.
pub fn registry(tunnels: u32, paths: u32) -> Registry {
    let mut r = Registry::default();
    for slot in 0..tunnels {
        let p = slot % paths;
        let exact = Pattern::parse(&format!("/app/room{p}/chat")).expect("valid");
        let tree = Pattern::parse(&format!("/app/room{p}/*")).expect("valid");
        r.insert(&exact, slot);
        if slot % 4 == 0 {
            r.insert(&tree, slot);
        }
    }
    r
}

/// A datagram with `data_bytes` of string data.
pub fn datagram(data_bytes: usize) -> Datagram {
    let data = format!("\"{}\"", "x".repeat(data_bytes));
    Datagram::encode(
        DatagramId { shard: 0, seq: 1 },
        "/app/room1/chat",
        data.as_bytes(),
        0,
    )
}
