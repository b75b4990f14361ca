//! JSON on the request path (`wire::json`): `parse_fields` for `/events`, `/subscribe` bodies
//! and WebSocket control messages, `compact` for published data.
//!
//! Input: a request body. Parsed on a thread with a shard thread's stack (std's default,
//! 2 MiB), because running out of stack there aborts the whole router: deep nesting must be
//! refused, not recursed into. Compacted data must compact again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::wire::json;
use router_fuzz::same_json;

/// The stack of a shard thread: `server` spawns them with `std::thread::Builder` defaults.
const SHARD_STACK_BYTES: usize = 2 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(SHARD_STACK_BYTES)
            .spawn_scoped(scope, || check(data))
            .expect("a thread starts")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
});

fn check(data: &[u8]) {
    if let Ok(compacted) = json::compact(data) {
        let again = json::compact(&compacted).expect("compacted JSON is valid JSON");
        assert!(
            same_json(&again, &compacted),
            "compacting changed the value"
        );
    }
    if let Ok(fields) = json::parse_fields(data) {
        if let Some(value) = fields.data {
            let again = json::compact(&value).expect("data is re-encoded as valid JSON");
            assert!(same_json(&again, &value));
        }
    }
}
