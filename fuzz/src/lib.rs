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
/// router's JSON objects keep it only up to a size, as JSON allows.
pub fn same_json(a: &[u8], b: &[u8]) -> bool {
    let parse = |text: &[u8]| simd_json::to_owned_value(&mut text.to_vec()).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}
