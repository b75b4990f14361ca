//! JSON on the request path (`wire::json`): `parse_fields` for `/events`, `/subscribe` bodies
//! and WebSocket control messages, `compact` for published data, both behind the nesting bound
//! `json_depth_max`.
//!
//! Input: a request body. Parsed on a thread with a shard thread's stack (std's default,
//! 2 MiB), because running out of stack there aborts the whole router, with the default bound
//! and with the highest bound the configuration accepts. A text is refused as too deep exactly
//! when `check_depth` says so; compacted data keeps within the bound and compacts again to the
//! same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::config::JSON_DEPTH_MAX_CEILING;
use router::wire::json::{self, check_depth, JsonError};
use router_fuzz::{json_depth_max, same_json};

/// The stack of a shard thread: `server` spawns them with `std::thread::Builder` defaults.
const SHARD_STACK_BYTES: usize = 2 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(SHARD_STACK_BYTES)
            .spawn_scoped(scope, || {
                check(data, json_depth_max());
                check(data, JSON_DEPTH_MAX_CEILING);
            })
            .expect("a thread starts")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
});

fn check(data: &[u8], depth_max: usize) {
    let too_deep = check_depth(data, depth_max).is_err();
    let compacted = json::compact(data, depth_max);
    assert_eq!(compacted == Err(JsonError::TooDeep), too_deep);
    if let Ok(compacted) = compacted {
        let again = json::compact(&compacted, depth_max).expect("compacted JSON is valid JSON");
        assert!(
            same_json(&again, &compacted),
            "compacting changed the value"
        );
    }
    let fields = json::parse_fields(data, depth_max);
    assert_eq!(fields.as_ref().err() == Some(&JsonError::TooDeep), too_deep);
    if let Ok(json::Fields {
        data: Some(value), ..
    }) = fields
    {
        // `data` sits one level inside the body.
        let again = json::compact(&value, depth_max - 1).expect("data is valid JSON");
        assert!(same_json(&again, &value));
    }
}
