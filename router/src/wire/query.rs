//! Decodes `application/x-www-form-urlencoded`-style query strings into name/value pairs.

use std::borrow::Cow;

/// A percent-escape was malformed or decoded to invalid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid percent-encoding in query")]
pub struct QueryError;

/// A decoded `(name, value)` pair; borrowed when nothing needed decoding.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Iterates `name=value` pairs of a query string, percent-decoding both and
/// turning '+' into ' '. Pairs without '=' have an empty value. Empty pairs
/// (`&&`) are skipped. A pair that fails to decode is yielded raw (name and
/// value exactly as written) so lenient callers still see it; use [`parse`]
/// to reject such queries instead.
pub fn pairs(query: &str) -> impl Iterator<Item = Pair<'_>> {
    non_empty_pairs(query).map(|pair| {
        decode_pair(pair).unwrap_or_else(|QueryError| {
            let (name, value) = split_pair(pair);
            (Cow::Borrowed(name), Cow::Borrowed(value))
        })
    })
}

/// Strict variant used by the router: returns all pairs or the first
/// decoding error.
pub fn parse(query: &str) -> Result<Vec<Pair<'_>>, QueryError> {
    non_empty_pairs(query).map(decode_pair).collect()
}

/// The decoded parameters of one query string, looked up by name.
pub struct Params<'q>(Vec<Pair<'q>>);

impl<'q> Params<'q> {
    /// [`parse`], kept for look-ups.
    pub fn parse(query: &'q str) -> Result<Params<'q>, QueryError> {
        parse(query).map(Params)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| &**v)
    }

    /// Every value of `name`, in order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| &**v)
    }
}

/// Percent-decodes; invalid escapes (`%zz`, truncated `%4`) are an error; the
/// result must be valid UTF-8 or it's an error. '+' is left as-is here (it
/// only means space inside form-encoded pairs), so this also suits paths.
pub fn decode(s: &str) -> Result<Cow<'_, str>, QueryError> {
    decode_with(s, false)
}

fn non_empty_pairs(query: &str) -> impl Iterator<Item = &str> {
    query.split('&').filter(|pair| !pair.is_empty())
}

fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

fn decode_pair(pair: &str) -> Result<Pair<'_>, QueryError> {
    let (name, value) = split_pair(pair);
    Ok((decode_with(name, true)?, decode_with(value, true)?))
}

fn decode_with(s: &str, plus_is_space: bool) -> Result<Cow<'_, str>, QueryError> {
    let needs_decoding = s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+'));
    if !needs_decoding {
        return Ok(Cow::Borrowed(s));
    }
    let mut decoded = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                // '+' is checked before escapes are expanded, so "%2B" stays '+'.
                let high = bytes.next().and_then(hex_value).ok_or(QueryError)?;
                let low = bytes.next().and_then(hex_value).ok_or(QueryError)?;
                decoded.push(high << 4 | low);
            }
            b'+' if plus_is_space => decoded.push(b' '),
            _ => decoded.push(b),
        }
    }
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| QueryError)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[Pair<'_>]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn strs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decode_borrows_when_nothing_to_do() {
        assert!(matches!(decode("abc-_.~"), Ok(Cow::Borrowed("abc-_.~"))));
        assert!(matches!(decode(""), Ok(Cow::Borrowed(""))));
        // '+' is literal outside form pairs.
        assert!(matches!(decode("a+b"), Ok(Cow::Borrowed("a+b"))));
    }

    #[test]
    fn decode_escapes() {
        assert_eq!(decode("a%20b").as_deref(), Ok("a b"));
        assert_eq!(decode("%41%42c").as_deref(), Ok("ABc"));
        assert_eq!(decode("%2f%2F").as_deref(), Ok("//"));
        assert_eq!(decode("%C3%A9t%c3%a9").as_deref(), Ok("\u{e9}t\u{e9}"));
        assert_eq!(decode("%25").as_deref(), Ok("%"));
        assert_eq!(decode("caf\u{e9}%21").as_deref(), Ok("caf\u{e9}!"));
        assert!(matches!(decode("%20"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn decode_rejects_bad_escapes() {
        for input in ["%", "%4", "a%4", "%zz", "%4g", "%g4", "100%", "%%41", "%+1"] {
            assert_eq!(decode(input), Err(QueryError), "{input:?}");
        }
    }

    #[test]
    fn decode_rejects_invalid_utf8() {
        for input in ["%FF", "%e9", "%C3", "%C3%28", "%ED%A0%80"] {
            assert_eq!(decode(input), Err(QueryError), "{input:?}");
        }
    }

    #[test]
    fn pairs_basic() {
        let got: Vec<Pair<'_>> = pairs("a=1&b=2").collect();
        assert_eq!(owned(&got), strs(&[("a", "1"), ("b", "2")]));
        assert!(got
            .iter()
            .all(|(n, v)| matches!((n, v), (Cow::Borrowed(_), Cow::Borrowed(_)))));
    }

    #[test]
    fn pairs_shapes() {
        let cases: [(&str, &[(&str, &str)]); 9] = [
            ("", &[]),
            ("&&", &[]),
            ("&&a=1&", &[("a", "1")]),
            ("a&b=", &[("a", ""), ("b", "")]),
            ("=v", &[("", "v")]),
            ("=", &[("", "")]),
            ("a=1=2", &[("a", "1=2")]),
            ("a=1&a=2", &[("a", "1"), ("a", "2")]),
            (
                "q=hello+world%21&%2B=%26",
                &[("q", "hello world!"), ("+", "&")],
            ),
        ];
        for (query, expected) in cases {
            let got: Vec<Pair<'_>> = pairs(query).collect();
            assert_eq!(owned(&got), strs(expected), "{query:?}");
            assert_eq!(owned(&parse(query).unwrap()), strs(expected), "{query:?}");
        }
    }

    #[test]
    fn pairs_yields_undecodable_pairs_raw() {
        let got: Vec<Pair<'_>> = pairs("a=%zz&b%=1&c=%FF&d=x+y").collect();
        assert_eq!(
            owned(&got),
            strs(&[("a", "%zz"), ("b%", "1"), ("c", "%FF"), ("d", "x y")])
        );
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(parse("a=1&b=%zz"), Err(QueryError));
        assert_eq!(parse("a=1&%4=b"), Err(QueryError));
        assert_eq!(parse("name=%FF"), Err(QueryError));
        assert_eq!(parse(""), Ok(Vec::new()));
        let got = parse("id=42&name=J%C3%BCrgen+M").unwrap();
        assert_eq!(
            owned(&got),
            strs(&[("id", "42"), ("name", "J\u{fc}rgen M")])
        );
    }

    #[test]
    fn error_display() {
        assert_eq!(QueryError.to_string(), "invalid percent-encoding in query");
    }
}
