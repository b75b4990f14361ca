//! JSON on the request path, parsed with simd-json: client event bodies and datagram data.

use simd_json::prelude::*;

/// The fields the router reads from client JSON bodies (`/events`, `/subscribe`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields {
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
    let mut scratch = body.to_vec();
    let value = simd_json::to_borrowed_value(&mut scratch).map_err(|_| "body is not valid JSON")?;
    let object = value.as_object().ok_or("body must be a JSON object")?;
    let string = |key: &str| -> Result<Option<String>, &'static str> {
        match object.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or(match key {
                "tunnel" => "\"tunnel\" must be a string",
                _ => "\"path\" must be a string",
            }),
        }
    };
    Ok(Fields {
        tunnel: string("tunnel")?,
        path: string("path")?,
        data: object.get("data").map(|v| v.encode().into_bytes()),
    })
}

/// Validates one JSON value and returns it compactly encoded.
///
/// # Errors
/// When `text` is not exactly one valid JSON value.
pub fn compact(text: &[u8]) -> Result<Vec<u8>, &'static str> {
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
