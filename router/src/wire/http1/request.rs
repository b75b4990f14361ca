//! Parses and validates HTTP/1.x request heads, including anti-smuggling body framing (RFC 9112 §6).

use super::{HttpError, Limits};

/// Hard cap on header fields; the httparse slot array lives on the stack, so
/// `Limits::header_count_max` values above this are treated as this cap.
pub const HEADER_COUNT_CAP: usize = 128;

/// Outcome of an incremental parse: "need more bytes" is an expected state,
/// not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    Partial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    /// Any other (syntactically valid) method token; routing answers 405.
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 §9.1), so `get` is `Other`.
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    /// `Content-Length` in bytes, already checked against `body_bytes_max`.
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with `ChunkedDecoder`.
    Chunked,
}

/// Byte range into `RequestHead::head_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    const EMPTY: Span = Span { start: 0, end: 0 };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeaderSpan {
    name: Span,
    value: Span,
}

/// A validated request head. It owns a copy of the head bytes so the caller
/// can reuse or advance its read buffer immediately after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// 0 or 1.
    pub version_minor: u8,
    /// HTTP/1.1: true unless `Connection: close`. HTTP/1.0: true only with
    /// `Connection: keep-alive` (and no `close`).
    pub keep_alive: bool,
    pub body: BodyKind,
    /// `Expect: 100-continue` on an HTTP/1.1 request. HTTP/1.0 requests never
    /// set it, because RFC 9110 §10.1.1 says servers MUST ignore it there.
    pub expect_continue: bool,
    /// Bytes of the head including the final empty line; the body (or the
    /// next pipelined request) starts at this offset of the parsed buffer.
    pub head_len: usize,
    head_bytes: Box<[u8]>,
    target: Span,
    /// End of the path within `target`: the '?' position or `target.end`.
    path_end: usize,
    header_spans: Vec<HeaderSpan>,
}

impl RequestHead {
    /// Request target up to '?', e.g. "/tunnel" (or "*" for `OPTIONS *`).
    pub fn path(&self) -> &str {
        self.text(Span {
            start: self.target.start,
            end: self.path_end,
        })
    }

    /// Request target after '?', "" if none.
    pub fn query(&self) -> &str {
        if self.path_end < self.target.end {
            self.text(Span {
                start: self.path_end + 1,
                end: self.target.end,
            })
        } else {
            ""
        }
    }

    /// The raw request target, e.g. "/tunnel?id=7".
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_spans
            .iter()
            .find(|h| self.bytes(h.name).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| self.bytes(h.value))
    }

    /// All header fields in arrival order; values have surrounding
    /// whitespace trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.header_spans
            .iter()
            .map(|h| (self.text(h.name), self.bytes(h.value)))
    }

    /// Whether any `Connection` header lists `token` (case-insensitive).
    /// All `Connection` lines are consulted since it is a list-valued field.
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
            .any(|(_, value)| list_has(value, token))
    }

    fn bytes(&self, span: Span) -> &[u8] {
        self.head_bytes.get(span.start..span.end).unwrap_or(&[])
    }

    /// Spans handed out as text were UTF-8-checked at parse time (header
    /// names are ASCII tokens), so the "" fallback is unreachable in practice;
    /// it exists only to avoid a panic path.
    fn text(&self, span: Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or("")
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Partial` while the head is incomplete and `buf` is shorter than
/// `limits.header_bytes_max`. On `Complete`, `head_len` tells the caller where
/// the body or the next pipelined request starts. A single LF is accepted as a
/// line terminator in the head (RFC 9112 §2.2 permits it; httparse does it);
/// chunked body lines are stricter.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Status<RequestHead>, HttpError> {
    // Only ever parse the first header_bytes_max bytes: a head that does not
    // complete inside that window is too large, whatever follows it.
    let window = buf.get(..limits.header_bytes_max).unwrap_or(buf);

    let mut slots = [httparse::EMPTY_HEADER; HEADER_COUNT_CAP];
    // httparse reports TooManyHeaders once the slot slice is full, so sizing
    // the slice to the limit enforces header_count_max exactly.
    let count_max = limits.header_count_max.min(HEADER_COUNT_CAP);
    let slots = slots.get_mut(..count_max).unwrap_or_default();
    let mut req = httparse::Request::new(slots);

    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() < limits.header_bytes_max {
                return Ok(Status::Partial);
            }
            return Err(if request_line_ended(window) {
                HttpError::HeadTooLarge
            } else {
                HttpError::UriTooLong
            });
        }
        Err(e) => return Err(map_parse_error(e)),
    };

    let (Some(method_token), Some(target), Some(version_minor)) =
        (req.method, req.path, req.version)
    else {
        return Err(HttpError::BadRequest("incomplete request line"));
    };
    if version_minor > 1 {
        return Err(HttpError::BadRequest("unsupported HTTP version"));
    }
    let method = Method::from_token(method_token);
    validate_target(method, target)?;

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding_seen = false;
    let mut expect_continue = false;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut header_spans = Vec::with_capacity(req.headers.len());
    for header in req.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            // Even equal duplicates are rejected: RFC 9112 §6.3 allows
            // merging them, but refusing leaves no room for disagreement with
            // an upstream that picked the other one.
            if content_length.is_some() {
                return Err(HttpError::BadRequest("duplicate Content-Length"));
            }
            content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding_seen {
                return Err(HttpError::BadRequest("duplicate Transfer-Encoding"));
            }
            transfer_encoding_seen = true;
            // Only a lone `chunked` is framing we can decode unambiguously;
            // lists like `gzip, chunked` or `chunked, chunked` are refused.
            if !trim_ows(value).eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::BadRequest("unsupported Transfer-Encoding"));
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            connection_close |= list_has(value, "close");
            connection_keep_alive |= list_has(value, "keep-alive");
        }
        header_spans.push(HeaderSpan {
            name: span_in(window, name.as_bytes())?,
            value: span_in(window, value)?,
        });
    }

    let body = body_kind(
        content_length,
        transfer_encoding_seen,
        version_minor,
        limits,
    )?;

    let keep_alive = if version_minor == 1 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };

    let target_span = span_in(window, target.as_bytes())?;
    let path_end = target_span.start + target.find('?').unwrap_or(target.len());
    let head_bytes: Box<[u8]> = window
        .get(..head_len)
        .ok_or(HttpError::BadRequest("head length out of range"))?
        .into();

    Ok(Status::Complete(RequestHead {
        method,
        version_minor,
        keep_alive,
        body,
        expect_continue: expect_continue && version_minor == 1,
        head_len,
        head_bytes,
        target: target_span,
        path_end,
        header_spans,
    }))
}

/// Decides body framing from the already-validated framing headers
/// (RFC 9112 §6.3), refusing combinations an intermediary could read differently.
fn body_kind(
    content_length: Option<u64>,
    chunked: bool,
    version_minor: u8,
    limits: &Limits,
) -> Result<BodyKind, HttpError> {
    match (content_length, chunked) {
        (Some(_), true) => Err(HttpError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        )),
        // RFC 9112 §6.1: HTTP/1.0 has no chunked coding, so TE there means
        // the framing cannot be trusted.
        (None, true) if version_minor == 0 => Err(HttpError::BadRequest(
            "Transfer-Encoding in HTTP/1.0 request",
        )),
        (None, true) => Ok(BodyKind::Chunked),
        (Some(0), false) | (None, false) => Ok(BodyKind::None),
        (Some(len), false) => {
            let body_bytes_max = u64::try_from(limits.body_bytes_max).unwrap_or(u64::MAX);
            if len > body_bytes_max {
                return Err(HttpError::BodyTooLarge);
            }
            Ok(BodyKind::Length(len))
        }
    }
}

fn map_parse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadTooLarge,
        // Token covers both the method and the request target (including a
        // target that is not valid UTF-8).
        httparse::Error::Token => HttpError::BadRequest("invalid method or request target"),
        httparse::Error::Version => HttpError::BadRequest("unsupported HTTP version"),
        httparse::Error::NewLine => HttpError::BadRequest("invalid line ending"),
        // Includes whitespace before the colon and obs-fold continuation lines.
        httparse::Error::HeaderName => HttpError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => HttpError::BadRequest("invalid header value"),
        _ => HttpError::BadRequest("malformed request head"),
    }
}

/// Whether the request line's terminating LF is inside `window` (leading
/// empty lines, which httparse skips, do not count as the request line).
fn request_line_ended(window: &[u8]) -> bool {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    window
        .get(start..)
        .is_some_and(|line| line.contains(&b'\n'))
}

/// Accepts origin-form (`/path?query`) and, for OPTIONS only, asterisk-form.
/// Absolute-form and authority-form are refused: this server is not a proxy.
fn validate_target(method: Method, target: &str) -> Result<(), HttpError> {
    if target == "*" {
        return if method == Method::Options {
            Ok(())
        } else {
            Err(HttpError::BadRequest(
                "asterisk-form target requires OPTIONS",
            ))
        };
    }
    if !target.starts_with('/') {
        return Err(HttpError::BadRequest("request target must be origin-form"));
    }
    // Fragments are never sent on the wire (RFC 9112 §3.2.1).
    if target.contains('#') {
        return Err(HttpError::BadRequest("fragment in request target"));
    }
    Ok(())
}

/// `Content-Length = 1*DIGIT`, nothing else: no sign, no inner whitespace, no
/// comma-separated lists, no overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    const INVALID: HttpError = HttpError::BadRequest("invalid Content-Length");
    let digits = trim_ows(value);
    if digits.is_empty() {
        return Err(INVALID);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(INVALID);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(b - b'0')))
            .ok_or(INVALID)
    })
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or(&[])
}

/// Whether the comma-separated list `value` contains `token` (case-insensitive).
fn list_has(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
}

/// Locates `part` (a sub-slice httparse returned) inside `base` by address.
fn span_in(base: &[u8], part: &[u8]) -> Result<Span, HttpError> {
    if part.is_empty() {
        return Ok(Span::EMPTY);
    }
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= base.len() => Ok(Span { start, end }),
        _ => Err(HttpError::BadRequest("field outside request head")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_bytes_max: 8192,
        header_count_max: 64,
        body_bytes_max: 1 << 20,
    };

    fn parse(buf: &[u8]) -> Result<Status<RequestHead>, HttpError> {
        parse_head(buf, &LIMITS)
    }

    fn complete(buf: &[u8]) -> RequestHead {
        complete_with(buf, &LIMITS)
    }

    fn complete_with(buf: &[u8], limits: &Limits) -> RequestHead {
        match parse_head(buf, limits) {
            Ok(Status::Complete(head)) => head,
            other => panic!("expected complete head, got {other:?}"),
        }
    }

    fn bad(buf: &[u8]) -> &'static str {
        match parse(buf) {
            Err(HttpError::BadRequest(detail)) => detail,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    /// A head of exactly `len` bytes: request line, one `X: aaa…` header, CRLF.
    fn head_of_len(len: usize) -> Vec<u8> {
        let fixed = b"GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(len - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert!(len > fixed);
        assert_eq!(head.len(), len);
        head
    }

    fn head_with_headers(count: usize) -> Vec<u8> {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..count {
            head.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    #[test]
    fn simple_get() {
        let buf = b"GET /tunnel?id=7&x=1 HTTP/1.1\r\nHost: example.com\r\nX-Multi: a\r\nx-multi: b\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.version_minor, 1);
        assert!(head.keep_alive);
        assert_eq!(head.body, BodyKind::None);
        assert!(!head.expect_continue);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.target(), "/tunnel?id=7&x=1");
        assert_eq!(head.path(), "/tunnel");
        assert_eq!(head.query(), "id=7&x=1");
        assert_eq!(head.header("host"), Some(&b"example.com"[..]));
        assert_eq!(head.header("HOST"), Some(&b"example.com"[..]));
        assert_eq!(head.header("x-multi"), Some(&b"a"[..]));
        assert_eq!(head.header("missing"), None);
        let all: Vec<(&str, &[u8])> = head.headers().collect();
        assert_eq!(
            all,
            vec![
                ("Host", &b"example.com"[..]),
                ("X-Multi", &b"a"[..]),
                ("x-multi", &b"b"[..]),
            ]
        );
    }

    #[test]
    fn path_and_query_edge_cases() {
        let head = complete(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!((head.path(), head.query(), head.target()), ("/", "", "/"));
        let head = complete(b"GET /a? HTTP/1.1\r\n\r\n");
        assert_eq!((head.path(), head.query()), ("/a", ""));
        let head = complete(b"GET /a?b?c HTTP/1.1\r\n\r\n");
        assert_eq!((head.path(), head.query()), ("/a", "b?c"));
        // Raw UTF-8 in the target is accepted as-is.
        let head = complete("GET /caf\u{e9} HTTP/1.1\r\n\r\n".as_bytes());
        assert_eq!(head.path(), "/caf\u{e9}");
    }

    #[test]
    fn methods() {
        for (token, method) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Other),
            ("get", Method::Other),
        ] {
            let buf = format!("{token} / HTTP/1.1\r\n\r\n");
            assert_eq!(complete(buf.as_bytes()).method, method, "{token}");
        }
    }

    #[test]
    fn head_survives_buffer_reuse() {
        let mut buf = b"GET /x?y=1 HTTP/1.1\r\nA: b\r\n\r\n".to_vec();
        let head = complete(&buf);
        buf.fill(b'#');
        assert_eq!(head.target(), "/x?y=1");
        assert_eq!(head.header("a"), Some(&b"b"[..]));
    }

    #[test]
    fn every_prefix_is_partial() {
        let buf = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        for end in 0..buf.len() {
            assert_eq!(parse(&buf[..end]), Ok(Status::Partial), "prefix {end}");
        }
        assert_eq!(complete(buf).body, BodyKind::Length(3));
    }

    #[test]
    fn pipelined_heads() {
        let buf = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        let first = complete(buf);
        assert_eq!(first.head_len, 28);
        assert_eq!(first.path(), "/a");
        assert!(first.keep_alive);
        let second = complete(&buf[first.head_len..]);
        assert_eq!(second.path(), "/b");
        assert!(!second.keep_alive);
        assert_eq!(first.head_len + second.head_len, buf.len());
    }

    #[test]
    fn pipelined_after_length_body() {
        let buf = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n";
        let first = complete(buf);
        assert_eq!(first.body, BodyKind::Length(5));
        assert_eq!(&buf[first.head_len..first.head_len + 5], b"hello");
        let second = complete(&buf[first.head_len + 5..]);
        assert_eq!(second.path(), "/b");
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.path(), "/");
    }

    #[test]
    fn bare_lf_line_endings_are_accepted_in_head() {
        let buf = b"GET / HTTP/1.1\nHost: h\n\n";
        let head = complete(buf);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.header("host"), Some(&b"h"[..]));
    }

    #[test]
    fn keep_alive_rules() {
        let cases: [(&[u8], bool); 9] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\nConnection: closed\r\n\r\n", false),
        ];
        for (buf, keep_alive) in cases {
            let head = complete(buf);
            assert_eq!(
                head.keep_alive,
                keep_alive,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").version_minor, 0);
    }

    #[test]
    fn connection_tokens() {
        let head = complete(
            b"GET / HTTP/1.1\r\nConnection: keep-alive , Upgrade\r\nUpgrade: websocket\r\nConnection: x-other\r\n\r\n",
        );
        assert!(head.connection_has("upgrade"));
        assert!(head.connection_has("KEEP-ALIVE"));
        assert!(head.connection_has("x-other"));
        assert!(!head.connection_has("close"));
        assert!(!head.connection_has("upgrad"));
        let head = complete(b"GET / HTTP/1.1\r\nX-Connection: upgrade\r\n\r\n");
        assert!(!head.connection_has("upgrade"));
    }

    #[test]
    fn expect_continue() {
        let head =
            complete(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(head.expect_continue);
        let head = complete(b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n");
        assert!(!head.expect_continue);
        // Ignored for HTTP/1.0 (RFC 9110 §10.1.1).
        let head = complete(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!head.expect_continue);
    }

    #[test]
    fn request_targets() {
        assert_eq!(complete(b"OPTIONS * HTTP/1.1\r\n\r\n").path(), "*");
        assert_eq!(
            bad(b"GET * HTTP/1.1\r\n\r\n"),
            "asterisk-form target requires OPTIONS"
        );
        assert_eq!(
            bad(b"GET http://example.com/ HTTP/1.1\r\n\r\n"),
            "request target must be origin-form"
        );
        assert_eq!(
            bad(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
            "request target must be origin-form"
        );
        assert_eq!(
            bad(b"GET /a#frag HTTP/1.1\r\n\r\n"),
            "fragment in request target"
        );
        assert_eq!(
            bad(b"GET /\xff\xfe HTTP/1.1\r\n\r\n"),
            "invalid method or request target"
        );
        assert_eq!(
            bad(b"GET  / HTTP/1.1\r\n\r\n"),
            "invalid method or request target"
        );
    }

    #[test]
    fn versions() {
        for buf in [
            &b"GET / HTTP/1.2\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
        ] {
            assert_eq!(bad(buf), "unsupported HTTP version");
        }
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"),
            "invalid header name"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"),
            "invalid header value"
        );
        assert_eq!(
            bad(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"),
            "invalid header value"
        );
        assert_eq!(bad(b"GET / HTTP/1.1\r\n\rX\r\n\r\n"), "invalid line ending");
    }

    #[test]
    fn content_length_values() {
        let ok: [(&[u8], BodyKind); 5] = [
            (b"0", BodyKind::None),
            (b"000", BodyKind::None),
            (b"12", BodyKind::Length(12)),
            (b"  12\t", BodyKind::Length(12)),
            (b"0012", BodyKind::Length(12)),
        ];
        for (value, kind) in ok {
            let mut buf = b"POST / HTTP/1.1\r\nContent-Length: ".to_vec();
            buf.extend_from_slice(value);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                complete(&buf).body,
                kind,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        for value in [
            &b""[..],
            b"+5",
            b"-5",
            b"5 5",
            b"5,5",
            b"5, 5",
            b"0x10",
            b"1e3",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            let mut buf = b"POST / HTTP/1.1\r\nContent-Length: ".to_vec();
            buf.extend_from_slice(value);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                bad(&buf),
                "invalid Content-Length",
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn content_length_u64_max_is_representable() {
        let limits = Limits {
            body_bytes_max: usize::MAX,
            ..LIMITS
        };
        let head = complete_with(
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
            &limits,
        );
        assert_eq!(head.body, BodyKind::Length(u64::MAX));
    }

    #[test]
    fn content_length_body_limit_boundary() {
        let limits = Limits {
            body_bytes_max: 100,
            ..LIMITS
        };
        let head = complete_with(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", &limits);
        assert_eq!(head.body, BodyKind::Length(100));
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", &limits),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn duplicate_content_length_rejected_even_if_equal() {
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            "duplicate Content-Length"
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n"),
            "duplicate Content-Length"
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_rejected() {
        let expected = "both Content-Length and Transfer-Encoding";
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            expected
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            expected
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"),
            expected
        );
    }

    #[test]
    fn transfer_encoding_values() {
        for value in ["chunked", "Chunked", "CHUNKED", " chunked\t"] {
            let buf = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(
                complete(buf.as_bytes()).body,
                BodyKind::Chunked,
                "{value:?}"
            );
        }
        for value in [
            "",
            "gzip, chunked",
            "chunked, chunked",
            "chunked,",
            "xchunked",
            "chunkedx",
            "chunked;q=1",
            "identity",
            "gzip",
        ] {
            let buf = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(
                bad(buf.as_bytes()),
                "unsupported Transfer-Encoding",
                "{value:?}"
            );
        }
    }

    #[test]
    fn two_transfer_encoding_headers_rejected() {
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "duplicate Transfer-Encoding"
        );
    }

    #[test]
    fn transfer_encoding_on_http10_rejected() {
        assert_eq!(
            bad(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in HTTP/1.0 request"
        );
    }

    #[test]
    fn header_bytes_limit_boundary() {
        let limits = Limits {
            header_bytes_max: 64,
            ..LIMITS
        };
        // Exactly at the limit: accepted, even with more bytes after it.
        let mut buf = head_of_len(64);
        let head = complete_with(&buf, &limits);
        assert_eq!(head.head_len, 64);
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        assert_eq!(complete_with(&buf, &limits).head_len, 64);

        // One over: rejected once the limit's worth of bytes has arrived...
        let buf = head_of_len(65);
        assert_eq!(parse_head(&buf, &limits), Err(HttpError::HeadTooLarge));
        assert_eq!(
            parse_head(&buf[..64], &limits),
            Err(HttpError::HeadTooLarge)
        );
        // ...and still Partial one byte before that.
        assert_eq!(parse_head(&buf[..63], &limits), Ok(Status::Partial));
    }

    #[test]
    fn uri_too_long_vs_head_too_large() {
        let limits = Limits {
            header_bytes_max: 32,
            ..LIMITS
        };
        // Request line has no LF within the first 32 bytes.
        let mut buf = b"GET /".to_vec();
        buf.resize(40, b'a');
        buf.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(parse_head(&buf, &limits), Err(HttpError::UriTooLong));
        assert_eq!(parse_head(&buf[..32], &limits), Err(HttpError::UriTooLong));
        assert_eq!(parse_head(&buf[..31], &limits), Ok(Status::Partial));

        // Request line's LF is exactly the 32nd byte: the line fits, the head does not.
        let mut buf = b"GET /".to_vec();
        buf.resize(21, b'a');
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        assert_eq!(buf.len(), 32);
        assert_eq!(parse_head(&buf, &limits), Err(HttpError::HeadTooLarge));
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&buf, &limits), Err(HttpError::HeadTooLarge));

        // Request line ends well inside the window; the headers overflow it.
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(40, b'y');
        assert_eq!(parse_head(&buf, &limits), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn header_count_limit_boundary() {
        let limits = Limits {
            header_count_max: 4,
            ..LIMITS
        };
        let head = complete_with(&head_with_headers(4), &limits);
        assert_eq!(head.headers().count(), 4);
        assert_eq!(
            parse_head(&head_with_headers(5), &limits),
            Err(HttpError::HeadTooLarge)
        );

        let none_allowed = Limits {
            header_count_max: 0,
            ..LIMITS
        };
        assert_eq!(
            complete_with(&head_with_headers(0), &none_allowed)
                .headers()
                .count(),
            0
        );
        assert_eq!(
            parse_head(&head_with_headers(1), &none_allowed),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn header_count_above_cap_is_clamped() {
        let limits = Limits {
            header_count_max: 1000,
            ..LIMITS
        };
        let head = complete_with(&head_with_headers(HEADER_COUNT_CAP), &limits);
        assert_eq!(head.headers().count(), HEADER_COUNT_CAP);
        assert_eq!(
            parse_head(&head_with_headers(HEADER_COUNT_CAP + 1), &limits),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn empty_header_value() {
        let head = complete(b"GET / HTTP/1.1\r\nX-Empty:\r\nY:   \r\n\r\n");
        assert_eq!(head.header("x-empty"), Some(&b""[..]));
        assert_eq!(head.header("y"), Some(&b""[..]));
    }

    #[test]
    fn helpers() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert!(list_has(b"a, b ,c", "B"));
        assert!(!list_has(b"ab", "a"));
        assert!(!list_has(b"", "a"));
        assert!(request_line_ended(b"\r\n\r\nGET / HTTP/1.1\r\n"));
        assert!(!request_line_ended(b"\r\n\r\nGET / HTTP/1.1"));
        assert!(!request_line_ended(b"\r\n\r\n"));
    }
}
