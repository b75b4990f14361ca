//! JSON on the request path, parsed with simd-json: client event bodies and datagram data.

use simd_json::prelude::*;

/// The fields the router reads from client JSON bodies (`/events`, `/subscribe`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// `type`, for WebSocket control messages.
    pub kind: Option<String>,
    pub tunnel: Option<String>,
    pub path: Option<String>,
    /// `data`, re-encoded as compact JSON.
    pub data: Option<Vec<u8>>,
}

/// Parses a JSON object body and picks `tunnel`, `path` (strings) and `data` (any value).
///
/// # Errors
/// A static message when the body is not JSON, not an object, or a field has the wrong type.
pub fn parse_fields(body: &[u8]) -> Result<Fields, &'static str> {
    check_surrogates(body)?;
    let mut scratch = body.to_vec();
    let value = simd_json::to_borrowed_value(&mut scratch).map_err(|_| "body is not valid JSON")?;
    let object = value.as_object().ok_or("body must be a JSON object")?;
    let string = |key: &str| -> Result<Option<String>, &'static str> {
        match object.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or(match key {
                "tunnel" => "\"tunnel\" must be a string",
                "type" => "\"type\" must be a string",
                _ => "\"path\" must be a string",
            }),
        }
    };
    Ok(Fields {
        kind: string("type")?,
        tunnel: string("tunnel")?,
        path: string("path")?,
        data: object.get("data").map(|v| v.encode().into_bytes()),
    })
}

/// Refuses `\uD800`-`\uDFFF` escapes that do not form a high-low pair. They are valid JSON
/// syntax but no valid text, and the parser would otherwise relay them altered.
fn check_surrogates(text: &[u8]) -> Result<(), &'static str> {
    const REFUSED: &str = "data contains an unpaired UTF-16 surrogate escape";
    let escape_at = |i: usize| -> Option<u16> {
        let hex = text.get(i + 2..i + 6)?;
        if text.get(i..i + 2)? != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let mut i = 0;
    while let Some(found) = memchr::memchr(b'\\', text.get(i..).unwrap_or_default()) {
        let at = i + found;
        match escape_at(at) {
            Some(0xD800..=0xDBFF) => match escape_at(at + 6) {
                Some(0xDC00..=0xDFFF) => i = at + 12,
                _ => return Err(REFUSED),
            },
            Some(0xDC00..=0xDFFF) => return Err(REFUSED),
            // Skip the escaped character, so `\\u` is not read as an escape.
            _ => i = at + 2,
        }
    }
    Ok(())
}

/// Validates one JSON value and returns it compactly encoded.
///
/// # Errors
/// When `text` is not exactly one valid JSON value.
pub fn compact(text: &[u8]) -> Result<Vec<u8>, &'static str> {
    check_surrogates(text)?;
    let mut scratch = text.to_vec();
    let value = simd_json::to_borrowed_value(&mut scratch).map_err(|_| "data is not valid JSON")?;
    Ok(value.encode().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_fields() {
        let f =
            parse_fields(br#"{"tunnel":"0-1-ab","path":"/a","data":{"x": [1, 2, "<"]}}"#).unwrap();
        assert_eq!(f.tunnel.as_deref(), Some("0-1-ab"));
        assert_eq!(f.path.as_deref(), Some("/a"));
        assert_eq!(f.data.as_deref(), Some(&br#"{"x":[1,2,"<"]}"#[..]));
        assert_eq!(parse_fields(b"{}").unwrap(), Fields::default());
    }

    #[test]
    fn refuses_bad_bodies() {
        assert_eq!(parse_fields(b"not json"), Err("body is not valid JSON"));
        assert_eq!(parse_fields(b"[1]"), Err("body must be a JSON object"));
        assert_eq!(
            parse_fields(br#"{"path":1}"#),
            Err("\"path\" must be a string")
        );
        assert_eq!(parse_fields(br#"{"a":1} x"#), Err("body is not valid JSON"));
    }

    #[test]
    fn refuses_unpaired_surrogates() {
        let refused = Err("data contains an unpaired UTF-16 surrogate escape");
        assert_eq!(compact(br#""\ud800""#), refused);
        assert_eq!(compact(br#""\udc00""#), refused);
        assert_eq!(compact(br#""\uD800x""#), refused);
        assert_eq!(compact(br#""\ud800\u0041""#), refused);
        assert_eq!(compact(br#""\ud83d\ude00""#).unwrap(), "\"😀\"".as_bytes());
        assert_eq!(compact(br#""\\ud800""#).unwrap(), br#""\\ud800""#);
        assert!(parse_fields(br#"{"data":"\udbff"}"#).is_err());
    }

    #[test]
    fn compacts_values() {
        assert_eq!(compact(b" \"hi\" ").unwrap(), b"\"hi\"");
        assert_eq!(
            compact(b"[1, {\"a\" : null}]").unwrap(),
            b"[1,{\"a\":null}]"
        );
        assert_eq!(compact(b"\"\\u00e9\"").unwrap(), "\"é\"".as_bytes());
        assert!(compact(b"").is_err());
        assert!(compact(b"{").is_err());
    }
}
