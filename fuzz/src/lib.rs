//! Helpers shared by the fuzz targets: the router's default limits and feeding input in pieces.
//!
//! Several targets feed the same bytes to an incremental decoder twice, once whole and once in
//! pieces, and require the same result: a decoder whose answer depends on how the kernel
//! happened to split the reads is a bug even when neither answer crashes.

use std::sync::LazyLock;

use router::config::Config;
use router::wire::{http1, websocket};

static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

/// The HTTP/1.1 request limits the router runs with by default.
pub fn http_limits() -> http1::Limits {
    http1::Limits {
        header_bytes_max: DEFAULTS.header_bytes_max,
        header_count_max: DEFAULTS.header_count_max,
        body_bytes_max: DEFAULTS.body_bytes_max,
    }
}

/// The WebSocket limits the router runs with by default.
pub fn websocket_limits() -> websocket::Limits {
    websocket::Limits {
        frame_bytes_max: DEFAULTS.websocket_frame_bytes_max,
        message_bytes_max: DEFAULTS.websocket_message_bytes_max,
    }
}

/// The nesting bound the router applies to client JSON by default (`json_depth_max`).
pub fn json_depth_max() -> usize {
    DEFAULTS.json_depth_max
}

/// Splits `data` into pieces of `step` bytes (the last may be shorter); `step` 0 counts as 1.
pub fn pieces(data: &[u8], step: usize) -> impl Iterator<Item = &[u8]> {
    data.chunks(step.max(1))
}

/// Splits the first byte off `data`, to steer a target (a limit, a piece size, a role); `None`
/// for empty input.
pub fn take_byte(data: &[u8]) -> Option<(u8, &[u8])> {
    let (&first, rest) = data.split_first()?;
    Some((first, rest))
}

/// True when `a` and `b` are JSON texts of the same value. Member order does not count: the
/// router's JSON objects keep it only up to a size, as JSON allows. Duplicate member names are
/// kept (the parser relays them), so members compare as sorted lists, not as maps.
pub fn same_json(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let parse = |text: &[u8]| simd_json::to_owned_value(&mut text.to_vec()).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => canonical(&a) == canonical(&b),
        _ => false,
    }
}

/// The value written with every object's members sorted.
fn canonical(value: &simd_json::OwnedValue) -> String {
    use simd_json::OwnedValue;
    match value {
        OwnedValue::Static(node) => format!("{node:?}"),
        OwnedValue::String(text) => format!("{text:?}"),
        OwnedValue::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        OwnedValue::Object(members) => {
            let mut members: Vec<String> = members
                .iter()
                .map(|(name, value)| format!("{name:?}:{}", canonical(value)))
                .collect();
            members.sort();
            format!("{{{}}}", members.join(","))
        }
    }
}
