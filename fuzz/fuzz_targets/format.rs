//! Tunnel formats (`wire::format`): the `cb=` callback check, and the script-safe JSON that
//! iframe, JSONP and `html_escape` custom formats wrap datagrams in.
//!
//! Input: a callback name, a newline, then datagram JSON (any bytes). A callback that passes
//! `callback_valid` is of the documented shape; script-safe JSON holds no `<` and no U+2028 or
//! U+2029 and unescapes to the input; an iframe or JSONP envelope around it has no `<` but its
//! own tags.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::format::{
    callback_valid, put_maybe_jsonp, put_script_safe_json, Envelope, Format, Formats,
};

fuzz_target!(|data: &[u8]| {
    let newline = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (cb_bytes, json) = (
        &data[..newline],
        data.get(newline + 1..).unwrap_or_default(),
    );
    let Ok(cb) = std::str::from_utf8(cb_bytes) else {
        return;
    };

    let valid = callback_valid(cb);
    assert_eq!(valid, callback_shape(cb), "{cb:?}");
    // `format=` names only the built-ins when nothing is configured.
    if let Some(format) = Formats::default().get(cb) {
        assert_eq!(format.name(), cb);
    }

    let mut safe = BytesMut::new();
    put_script_safe_json(&mut safe, json);
    assert!(!safe.contains(&b'<'));
    assert!(!contains(&safe, "\u{2028}".as_bytes()) && !contains(&safe, "\u{2029}".as_bytes()));
    let escaped = json.iter().filter(|&&b| b == b'<').count() * 5
        + (count(json, "\u{2028}".as_bytes()) + count(json, "\u{2029}".as_bytes())) * 3;
    assert_eq!(safe.len(), json.len() + escaped);
    // Input that holds escape texts itself would unescape to more than it was.
    if !contains(json, b"\\u") {
        assert_eq!(unescape(&safe), json);
    }

    if !valid {
        return;
    }
    let env = Envelope {
        cb,
        tunnel: "0-1-0123456789abcdef",
    };
    let mut out = BytesMut::new();
    Format::Iframe.put_datagram(&mut out, json, Some(b"0-1"), &env);
    // `<script>` and `</script>`, nothing else a browser could read as markup.
    assert_eq!(out.iter().filter(|&&b| b == b'<').count(), 2);
    let mut out = BytesMut::new();
    put_maybe_jsonp(&mut out, Some(cb), json);
    assert!(!out.contains(&b'<'));
    assert!(out.starts_with(b"/**/"));
});

/// `^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$`, as documented.
fn callback_shape(cb: &str) -> bool {
    let mut bytes = cb.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_' || first == b'$')
        && cb.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.')
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    count(haystack, needle) > 0
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Undoes `put_script_safe_json`'s three escapes.
fn unescape(safe: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(safe.len());
    let mut rest = safe;
    while let Some((&b, tail)) = rest.split_first() {
        let (replacement, skip): (&[u8], usize) = match rest {
            [b'\\', b'u', b'0', b'0', b'3', b'c', ..] => (b"<", 6),
            [b'\\', b'u', b'2', b'0', b'2', b'8', ..] => ("\u{2028}".as_bytes(), 6),
            [b'\\', b'u', b'2', b'0', b'2', b'9', ..] => ("\u{2029}".as_bytes(), 6),
            _ => {
                out.push(b);
                rest = tail;
                continue;
            }
        };
        out.extend_from_slice(replacement);
        rest = &rest[skip..];
    }
    out
}
