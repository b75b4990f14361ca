//! Tunnel ids (`tunnel::TunnelId::parse`), which every request naming a tunnel carries.
//!
//! Input: the id text from a query parameter, a path segment or a JSON field. Ids have one
//! spelling: text that parses is exactly what the id writes out (both ways the router writes
//! it), so no tunnel has a second name, and the written text parses back to the same id.
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
    assert_eq!(written, text, "a second spelling of {written:?}");
    assert_eq!(TunnelId::parse(&written), Some(id));
});
