//! Query strings (`wire::query`): `parse` for every request's parameters, `pairs`, and `decode`.
//!
//! Input: the text after '?' in a request target (which the head parser has already checked is
//! UTF-8). Decoded pairs are percent-encoded again and must parse back to themselves.
#![no_main]

use std::borrow::Cow;
use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use router::wire::query;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lenient: Vec<_> = query::pairs(text).collect();
    // Empty pairs are skipped, every other '&'-separated piece is one pair.
    assert_eq!(
        lenient.len(),
        text.split('&').filter(|p| !p.is_empty()).count()
    );
    if let Ok(strict) = query::parse(text) {
        assert_eq!(strict, lenient, "parse and pairs disagree on a valid query");
        let encoded = strict
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let again = query::parse(&encoded).expect("an encoded query decodes");
        // Encoding gives every pair an '=', so a pair without one comes back with an empty
        // value, which is what it already had.
        assert_eq!(again, strict, "{encoded:?}");
    }
    match query::decode(text) {
        Ok(Cow::Borrowed(same)) => assert_eq!(same, text),
        Ok(Cow::Owned(decoded)) => assert!(decoded.len() <= text.len()),
        Err(query::QueryError) => assert!(text.contains('%')),
    }
});

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
