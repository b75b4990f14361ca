//! Tunnel ids (`tunnel::TunnelId::parse`), which every request naming a tunnel carries.
//!
//! Input: the id text from a query parameter, a path segment or a JSON field. An id that parses
//! must write out (both ways the router writes it) as text that parses back to the same id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::tunnel::TunnelId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(id) = TunnelId::parse(text) else {
        return;
    };
    let written = id.to_string();
    assert_eq!(id.text().as_str(), written);
    assert_eq!(
        TunnelId::parse(&written),
        Some(id),
        "{text:?} -> {written:?}"
    );
    // The secret is always 16 hex digits, so the written form's length is bounded.
    assert!(written.len() <= 33, "{written:?}");
});
