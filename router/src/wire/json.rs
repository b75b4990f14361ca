//! JSON on the request path, parsed with simd-json: client event bodies and datagram data.
//!
//! Every JSON text a client sends goes through [`parse_fields`] or [`compact`], and both bound
//! its nesting depth before simd-json sees it: building, encoding and dropping a value recurse
//! once per level, so a few thousand `[` would overflow a shard thread's stack and abort the
//! whole process. The bound is checked by a flat scan that never recurses.

use simd_json::prelude::*;

/// Why a JSON text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not valid JSON, or not the shape asked for; the text says which.
    #[error("{0}")]
    Invalid(&'static str),
    /// Arrays and objects nested deeper than the `json_depth_max` bound.
    #[error("JSON nested deeper than json_depth_max")]
    TooDeep,
}

impl JsonError {
    /// Short text for error answers; never contains input bytes.
    pub fn message(self) -> &'static str {
        match self {
            JsonError::Invalid(text) => text,
            JsonError::TooDeep => "JSON nested deeper than json_depth_max",
        }
    }
}

/// Refuses a text whose arrays and objects nest deeper than `depth_max`, without recursing.
/// Brackets inside strings do not count; the text need not be valid JSON (the parser that runs
/// next says whether it is), so unbalanced closers are simply not counted below zero.
///
/// # Errors
/// [`JsonError::TooDeep`] past the bound.
pub fn check_depth(text: &[u8], depth_max: usize) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > depth_max {
                    return Err(JsonError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => {
                // Skip the string: up to its closing quote, stepping over escaped characters.
                while let Some(&c) = bytes.next() {
                    match c {
                        b'"' => break,
                        b'\\' => {
                            bytes.next();
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses `text` with simd-json after the checks every client JSON text passes: the depth
/// bound, then the surrogate check.
fn parse<'a>(
    scratch: &'a mut [u8],
    depth_max: usize,
    invalid: &'static str,
) -> Result<simd_json::BorrowedValue<'a>, JsonError> {
    check_depth(scratch, depth_max)?;
    check_surrogates(scratch)?;
    simd_json::to_borrowed_value(scratch).map_err(|_| JsonError::Invalid(invalid))
}

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

/// What carried the JSON, so a refusal names what the client sent: an HTTP request's body or
/// a WebSocket text message.
struct Carrier {
    not_json: &'static str,
    not_object: &'static str,
}

const BODY: Carrier = Carrier {
    not_json: "body is not valid JSON",
    not_object: "body must be a JSON object",
};

const MESSAGE: Carrier = Carrier {
    not_json: "message is not valid JSON",
    not_object: "message must be a JSON object",
};

/// Parses a JSON object body and picks `tunnel`, `path` (strings) and `data` (any value).
///
/// # Errors
/// [`JsonError::TooDeep`] past `depth_max`; [`JsonError::Invalid`] when the body is not JSON,
/// not an object, or a field has the wrong type.
pub fn parse_fields(body: &[u8], depth_max: usize) -> Result<Fields, JsonError> {
    fields_of(body, depth_max, &BODY)
}

/// [`parse_fields`] for a WebSocket text message: the same fields, refusals that say "message".
///
/// # Errors
/// As [`parse_fields`].
pub fn parse_message_fields(message: &[u8], depth_max: usize) -> Result<Fields, JsonError> {
    fields_of(message, depth_max, &MESSAGE)
}

fn fields_of(text: &[u8], depth_max: usize, carrier: &Carrier) -> Result<Fields, JsonError> {
    let mut scratch = text.to_vec();
    let value = parse(&mut scratch, depth_max, carrier.not_json)?;
    let object = value
        .as_object()
        .ok_or(JsonError::Invalid(carrier.not_object))?;
    let string = |key: &str| -> Result<Option<String>, JsonError> {
        match object.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or(JsonError::Invalid(match key {
                    "tunnel" => "\"tunnel\" must be a string",
                    "type" => "\"type\" must be a string",
                    _ => "\"path\" must be a string",
                })),
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
fn check_surrogates(text: &[u8]) -> Result<(), JsonError> {
    const REFUSED: JsonError =
        JsonError::Invalid("data contains an unpaired UTF-16 surrogate escape");
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
/// [`JsonError::TooDeep`] past `depth_max`; [`JsonError::Invalid`] when `text` is not exactly
/// one valid JSON value.
pub fn compact(text: &[u8], depth_max: usize) -> Result<Vec<u8>, JsonError> {
    let mut scratch = text.to_vec();
    let value = parse(&mut scratch, depth_max, "data is not valid JSON")?;
    Ok(value.encode().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPTH: usize = 64;

    fn nested(levels: usize) -> Vec<u8> {
        let mut text = vec![b'['; levels];
        text.resize(2 * levels, b']');
        text
    }

    #[test]
    fn picks_fields() {
        let f = parse_fields(
            br#"{"tunnel":"0-1-ab","path":"/a","data":{"x": [1, 2, "<"]}}"#,
            DEPTH,
        )
        .unwrap();
        assert_eq!(f.tunnel.as_deref(), Some("0-1-ab"));
        assert_eq!(f.path.as_deref(), Some("/a"));
        assert_eq!(f.data.as_deref(), Some(&br#"{"x":[1,2,"<"]}"#[..]));
        assert_eq!(parse_fields(b"{}", DEPTH).unwrap(), Fields::default());
    }

    #[test]
    fn refuses_bad_bodies() {
        assert_eq!(
            parse_fields(b"not json", DEPTH),
            Err(JsonError::Invalid("body is not valid JSON"))
        );
        assert_eq!(
            parse_fields(b"[1]", DEPTH),
            Err(JsonError::Invalid("body must be a JSON object"))
        );
        assert_eq!(
            parse_fields(br#"{"path":1}"#, DEPTH),
            Err(JsonError::Invalid("\"path\" must be a string"))
        );
        assert_eq!(
            parse_fields(br#"{"a":1} x"#, DEPTH),
            Err(JsonError::Invalid("body is not valid JSON"))
        );
    }

    #[test]
    fn message_refusals_say_message() {
        assert_eq!(
            parse_message_fields(b"hello", DEPTH),
            Err(JsonError::Invalid("message is not valid JSON"))
        );
        assert_eq!(
            parse_message_fields(b"[1]", DEPTH),
            Err(JsonError::Invalid("message must be a JSON object"))
        );
        assert_eq!(
            parse_message_fields(br#"{"type":"subscribe","path":"/a"}"#, DEPTH)
                .unwrap()
                .kind
                .as_deref(),
            Some("subscribe")
        );
    }

    #[test]
    fn refuses_unpaired_surrogates() {
        let refused = Err(JsonError::Invalid(
            "data contains an unpaired UTF-16 surrogate escape",
        ));
        assert_eq!(compact(br#""\ud800""#, DEPTH), refused);
        assert_eq!(compact(br#""\udc00""#, DEPTH), refused);
        assert_eq!(compact(br#""\uD800x""#, DEPTH), refused);
        assert_eq!(compact(br#""\ud800\u0041""#, DEPTH), refused);
        assert_eq!(
            compact(br#""\ud83d\ude00""#, DEPTH).unwrap(),
            "\"😀\"".as_bytes()
        );
        assert_eq!(compact(br#""\\ud800""#, DEPTH).unwrap(), br#""\\ud800""#);
        assert!(parse_fields(br#"{"data":"\udbff"}"#, DEPTH).is_err());
    }

    #[test]
    fn compacts_values() {
        assert_eq!(compact(b" \"hi\" ", DEPTH).unwrap(), b"\"hi\"");
        assert_eq!(
            compact(b"[1, {\"a\" : null}]", DEPTH).unwrap(),
            b"[1,{\"a\":null}]"
        );
        assert_eq!(compact(b"\"\\u00e9\"", DEPTH).unwrap(), "\"é\"".as_bytes());
        assert!(compact(b"", DEPTH).is_err());
        assert!(compact(b"{", DEPTH).is_err());
    }

    #[test]
    fn depth_is_bounded_before_parsing() {
        assert_eq!(compact(&nested(64), DEPTH).unwrap(), nested(64));
        assert_eq!(compact(&nested(65), DEPTH), Err(JsonError::TooDeep));
        // Far past any stack: refused by the flat scan, never reaching the recursive parser.
        assert_eq!(compact(&nested(100_000), DEPTH), Err(JsonError::TooDeep));
        let deep_object = format!("{}1{}", "{\"a\":".repeat(65), "}".repeat(65));
        assert_eq!(
            compact(deep_object.as_bytes(), DEPTH),
            Err(JsonError::TooDeep)
        );
        let mut body = br#"{"tunnel":"t","data":"#.to_vec();
        body.extend_from_slice(&nested(64));
        body.push(b'}');
        assert_eq!(parse_fields(&body, DEPTH), Err(JsonError::TooDeep));
        // Even an unterminated text is refused for depth before it is refused for syntax.
        assert_eq!(compact(&[b'['; 65], DEPTH), Err(JsonError::TooDeep));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let text = format!("[\"{}\\\"{}\"]", "[".repeat(100), "{".repeat(100));
        assert_eq!(check_depth(text.as_bytes(), 1), Ok(()));
        assert_eq!(compact(text.as_bytes(), 1).unwrap(), text.as_bytes());
        // An escaped backslash ends the escape: the quote after it closes the string.
        assert_eq!(check_depth(br#"["\\", [[1]]]"#, 2), Err(JsonError::TooDeep));
        assert_eq!(check_depth(br#"["\\", [[1]]]"#, 3), Ok(()));
        // Closers beyond the openers never take the count below zero.
        assert_eq!(check_depth(b"]]]][[", 2), Ok(()));
        assert_eq!(check_depth(b"]]]][[[", 2), Err(JsonError::TooDeep));
    }
}
