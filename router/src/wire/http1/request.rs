//! Parses and validates HTTP/1.x request heads, including anti-smuggling body framing (RFC 9112 §6).

use super::{is_tchar, HttpError, Limits};

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
/// the body or the next pipelined request starts.
///
/// # Errors
/// Every rule of the "HTTP/1.1 framing" section of `docs/protocol.md`: lines
/// end in CRLF (a bare LF is refused), no obs-fold, no whitespace before a
/// colon, exactly one `Host` in HTTP/1.1 (at most one in HTTP/1.0), a strict
/// `Content-Length`, `Transfer-Encoding: chunked` only (501 for other
/// codings), never both, and no `Transfer-Encoding` in HTTP/1.0. Head bounds
/// give `HeadTooLarge`/`UriTooLong`, a declared body over the limit
/// `BodyTooLarge`.
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
        Ok(httparse::Status::Complete(len)) => {
            if has_bare_lf(window.get(..len).unwrap_or(window)) {
                return Err(BARE_LF);
            }
            len
        }
        Ok(httparse::Status::Partial) => {
            // No end of head yet, so every byte so far is head: refuse a bare
            // LF now rather than once the rest arrives.
            if has_bare_lf(window) {
                return Err(BARE_LF);
            }
            if buf.len() < limits.header_bytes_max {
                return Ok(Status::Partial);
            }
            return Err(if request_line_ended(window) {
                HttpError::HeadTooLarge
            } else {
                HttpError::UriTooLong
            });
        }
        Err(e) => return Err(map_parse_error(e, window)),
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

    let mut fields = HeadFields::default();
    let mut header_spans = Vec::with_capacity(req.headers.len());
    for header in req.headers.iter() {
        fields.add(header.name, header.value)?;
        header_spans.push(HeaderSpan {
            name: span_in(window, header.name.as_bytes())?,
            value: span_in(window, header.value)?,
        });
    }
    let HeadFields {
        content_length,
        chunked,
        host_seen,
        expect_continue,
        connection_close,
        connection_keep_alive,
    } = fields;

    let body = body_kind(content_length, chunked, version_minor, limits)?;
    // RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host (duplicates
    // were refused as they arrived); HTTP/1.0 may omit it.
    if version_minor == 1 && !host_seen {
        return Err(HttpError::BadRequest("missing Host"));
    }

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

/// A bare LF (one not preceded by CR) anywhere in a request head.
const BARE_LF: HttpError = HttpError::BadRequest("bare LF in request head");

/// What the header fields that decide framing, Host and persistence said, gathered
/// field by field; each framing field is checked as it arrives.
#[derive(Default)]
struct HeadFields {
    content_length: Option<u64>,
    /// A valid `Transfer-Encoding: chunked` was seen.
    chunked: bool,
    host_seen: bool,
    expect_continue: bool,
    connection_close: bool,
    connection_keep_alive: bool,
}

impl HeadFields {
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), HttpError> {
        if name.eq_ignore_ascii_case("content-length") {
            // Even equal duplicates are refused: RFC 9112 §6.3 allows merging
            // them, but refusing leaves no room for disagreement with an
            // upstream that picked the other one.
            if self.content_length.is_some() {
                return Err(HttpError::BadRequest("duplicate Content-Length"));
            }
            self.content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // A second line would extend the coding list (RFC 9110 §5.3);
            // no list but a lone `chunked` is accepted, so a second line is
            // refused outright.
            if self.chunked {
                return Err(HttpError::BadRequest("duplicate Transfer-Encoding"));
            }
            check_transfer_coding(value)?;
            self.chunked = true;
        } else if name.eq_ignore_ascii_case("host") {
            if self.host_seen {
                return Err(HttpError::BadRequest("duplicate Host"));
            }
            if !host_valid(trim_ows(value)) {
                return Err(HttpError::BadRequest("invalid Host"));
            }
            self.host_seen = true;
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            self.connection_close |= list_has(value, "close");
            self.connection_keep_alive |= list_has(value, "keep-alive");
        } else if name.eq_ignore_ascii_case("content_length")
            || name.eq_ignore_ascii_case("transfer_encoding")
        {
            // Not framing fields to us, but gateways that map `-` and `_` to
            // the same CGI variable read them as one: refused, so that no
            // reader of this request takes its length from them.
            return Err(HttpError::BadRequest(
                "framing header name spelled with '_'",
            ));
        }
        Ok(())
    }
}

/// Accepts exactly `chunked` (any case, surrounding whitespace ignored).
/// A list whose final coding is not `chunked` cannot be framed (400, RFC 9112
/// §6.3); `chunked` before the end means it was applied twice (400, §7); any
/// other coding before a final `chunked` is well-formed but not implemented
/// (501, §6.1). Empty list elements and codings with parameters are refused
/// rather than skipped: framing gets no leniency.
fn check_transfer_coding(value: &[u8]) -> Result<(), HttpError> {
    let codings = || value.split(|&b| b == b',').map(trim_ows);
    if codings().any(|c| c.is_empty() || !c.iter().all(|&b| is_tchar(b))) {
        return Err(HttpError::BadRequest("invalid Transfer-Encoding"));
    }
    let is_chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    if !codings().next_back().is_some_and(is_chunked) {
        return Err(HttpError::BadRequest(
            "Transfer-Encoding does not end in chunked",
        ));
    }
    let before_last = codings().count().saturating_sub(1);
    if codings().take(before_last).any(is_chunked) {
        return Err(HttpError::BadRequest(
            "chunked is not the last transfer coding",
        ));
    }
    if before_last > 0 {
        return Err(HttpError::NotImplemented("unsupported transfer coding"));
    }
    Ok(())
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a
/// bracketed IP literal, or a reg-name / IPv4 address, then an optional port.
/// The empty value is valid (a target without authority, RFC 9112 §3.2).
fn host_valid(value: &[u8]) -> bool {
    let (host_ok, rest) = match value.strip_prefix(b"[") {
        Some(literal) => {
            let Some(close) = literal.iter().position(|&b| b == b']') else {
                return false;
            };
            let (inside, rest) = literal.split_at(close);
            let inside_ok = !inside.is_empty()
                && inside
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (inside_ok, rest.get(1..).unwrap_or(&[]))
        }
        None => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            let (name, rest) = value.split_at(end);
            (reg_name_valid(name), rest)
        }
    };
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', port)) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`; covers IPv4.
fn reg_name_valid(name: &[u8]) -> bool {
    let mut bytes = name.iter();
    while let Some(&b) = bytes.next() {
        let ok = match b {
            b'%' => matches!(
                (bytes.next(), bytes.next()),
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()
            ),
            b'-' | b'.' | b'_' | b'~' => true,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => true,
            b => b.is_ascii_alphanumeric(),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether some LF in `head` is not preceded by CR. RFC 9112 §2.2 lets a
/// recipient accept a bare LF as a line end; we refuse it, because a reader
/// that does not (or a proxy that passes it on) would see other lines.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head.get(i - 1) != Some(&b'\r'))
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

fn map_parse_error(e: httparse::Error, window: &[u8]) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadTooLarge,
        // Token covers both the method and the request target (including a
        // target that is not valid UTF-8).
        httparse::Error::Token => HttpError::BadRequest("invalid method or request target"),
        httparse::Error::Version => HttpError::BadRequest("unsupported HTTP version"),
        httparse::Error::NewLine => HttpError::BadRequest("invalid line ending"),
        httparse::Error::HeaderName => header_line_error(window),
        httparse::Error::HeaderValue => HttpError::BadRequest("invalid header value"),
        _ => HttpError::BadRequest("malformed request head"),
    }
}

/// Says which rule the first malformed header line breaks, once httparse has
/// refused a header name: obs-fold (a line starting with whitespace, RFC 9112
/// §5.2, also whitespace before the first field, §2.2), whitespace between
/// the name and the colon (§5.1), a line without a colon, or a name that is
/// not a token. Runs only on the error path.
fn header_line_error(window: &[u8]) -> HttpError {
    let lines = window
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .skip_while(|line| line.is_empty())
        .skip(1);
    for line in lines {
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return HttpError::BadRequest("obsolete line folding in header");
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return HttpError::BadRequest("header line without colon");
        };
        let name = line.get(..colon).unwrap_or(&[]);
        if matches!(name.last(), Some(b' ' | b'\t')) {
            return HttpError::BadRequest("whitespace before colon in header");
        }
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            break;
        }
    }
    HttpError::BadRequest("invalid header name")
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
/// comma-separated lists, no overflow, and no leading zero before another
/// digit (`0` is fine, `00` and `012` are not: the grammar allows them, but
/// no client sends them and a reader that takes `012` for octal would frame
/// the body differently). Whitespace around the value is not part of it
/// (RFC 9110 §5.5) and is ignored.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    const INVALID: HttpError = HttpError::BadRequest("invalid Content-Length");
    let digits = trim_ows(value);
    if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
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
        let fixed = b"GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n".len();
        let mut head = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        head.resize(len - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert!(len > fixed);
        assert_eq!(head.len(), len);
        head
    }

    fn head_with_headers(count: usize) -> Vec<u8> {
        // HTTP/1.0, which needs no Host: every header counted is one of these.
        let mut head = b"GET / HTTP/1.0\r\n".to_vec();
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
        let head = complete(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((head.path(), head.query(), head.target()), ("/", "", "/"));
        let head = complete(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((head.path(), head.query()), ("/a", ""));
        let head = complete(b"GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((head.path(), head.query()), ("/a", "b?c"));
        // Raw UTF-8 in the target is accepted as-is.
        let head = complete("GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes());
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
            let buf = format!("{token} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(complete(buf.as_bytes()).method, method, "{token}");
        }
    }

    #[test]
    fn head_survives_buffer_reuse() {
        let mut buf = b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n".to_vec();
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
        let buf = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        let first = complete(buf);
        assert_eq!(first.body, BodyKind::Length(5));
        assert_eq!(&buf[first.head_len..first.head_len + 5], b"hello");
        let second = complete(&buf[first.head_len + 5..]);
        assert_eq!(second.path(), "/b");
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = complete(buf);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.path(), "/");
    }

    #[test]
    fn bare_lf_is_refused_anywhere_in_the_head() {
        for buf in [
            &b"GET / HTTP/1.1\nHost: h\n\n"[..],
            b"GET / HTTP/1.1\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n",
            b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(bad(buf), "bare LF in request head", "{buf:?}");
        }
        // Refused before the head is complete, too.
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nX: a\nY"),
            Err(HttpError::BadRequest("bare LF in request head"))
        );
        // A bare LF after the head is the body's business, not the head's.
        let head = complete(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n\n\n");
        assert_eq!(head.body, BodyKind::Length(2));
    }

    #[test]
    fn keep_alive_rules() {
        let cases: [(&[u8], bool); 9] = [
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
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
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive , Upgrade\r\nUpgrade: websocket\r\nConnection: x-other\r\n\r\n",
        );
        assert!(head.connection_has("upgrade"));
        assert!(head.connection_has("KEEP-ALIVE"));
        assert!(head.connection_has("x-other"));
        assert!(!head.connection_has("close"));
        assert!(!head.connection_has("upgrad"));
        let head = complete(b"GET / HTTP/1.1\r\nHost: h\r\nX-Connection: upgrade\r\n\r\n");
        assert!(!head.connection_has("upgrade"));
    }

    #[test]
    fn expect_continue() {
        let head = complete(
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(head.expect_continue);
        let head = complete(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n");
        assert!(!head.expect_continue);
        // Ignored for HTTP/1.0 (RFC 9110 §10.1.1).
        let head = complete(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!head.expect_continue);
    }

    #[test]
    fn request_targets() {
        assert_eq!(
            complete(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").path(),
            "*"
        );
        assert_eq!(
            bad(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            "asterisk-form target requires OPTIONS"
        );
        assert_eq!(
            bad(b"GET http://example.com/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            "request target must be origin-form"
        );
        assert_eq!(
            bad(b"CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
            "request target must be origin-form"
        );
        assert_eq!(
            bad(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"),
            "fragment in request target"
        );
        assert_eq!(
            bad(b"GET /\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n"),
            "invalid method or request target"
        );
        assert_eq!(
            bad(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
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
        let cases: [(&[u8], &str); 13] = [
            (
                b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
                "whitespace before colon in header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX\t: y\r\n\r\n",
                "whitespace before colon in header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
                "obsolete line folding in header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tfolded\r\n\r\n",
                "obsolete line folding in header",
            ),
            // Whitespace before the first field line (RFC 9112 §2.2).
            (
                b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
                "obsolete line folding in header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n",
                "header line without colon",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX-\x00: y\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\n: y\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX\xff: y\r\n\r\n",
                "invalid header name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n",
                "invalid header value",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
                "invalid header value",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x0bb\r\n\r\n",
                "invalid header value",
            ),
            (b"GET / HTTP/1.1\r\n\rX\r\n\r\n", "invalid line ending"),
        ];
        for (buf, message) in cases {
            assert_eq!(bad(buf), message, "{}", String::from_utf8_lossy(buf));
        }
        // Tabs and obs-text inside a value are field content.
        let head = complete(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\xe9\r\n\r\n");
        assert_eq!(head.header("x"), Some(&b"a\tb\xe9"[..]));
    }

    #[test]
    fn framing_names_spelled_with_underscores_are_refused() {
        for name in ["Content_Length", "transfer_encoding", "TRANSFER_ENCODING"] {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\n{name}: 5\r\n\r\n");
            assert_eq!(
                bad(buf.as_bytes()),
                "framing header name spelled with '_'",
                "{name}"
            );
        }
        // Other look-alikes are just unknown fields: no body.
        let head = complete(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Lengths: 5\r\n\r\n");
        assert_eq!(head.body, BodyKind::None);
    }

    #[test]
    fn host_count() {
        assert_eq!(bad(b"GET / HTTP/1.1\r\n\r\n"), "missing Host");
        assert_eq!(bad(b"GET / HTTP/1.1\r\nX-Host: h\r\n\r\n"), "missing Host");
        for buf in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \r\nHOST: b\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                bad(buf),
                "duplicate Host",
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        // HTTP/1.0 may omit it; an empty Host is valid (RFC 9112 §3.2).
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").header("host"), None);
        assert_eq!(
            complete(b"GET / HTTP/1.0\r\nHost: h\r\n\r\n").header("host"),
            Some(&b"h"[..])
        );
        assert_eq!(
            complete(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").header("host"),
            Some(&b""[..])
        );
        // Framing errors are reported before a missing Host.
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"),
            "invalid Content-Length"
        );
    }

    #[test]
    fn host_values() {
        for value in [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[fe80::1:2]:65535",
            "a-b_c~d.e",
            "x%41y",
            "!$&'()*+,;=",
            "  padded  ",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
            complete(buf.as_bytes());
        }
        for value in [
            "a b",
            "a/b",
            "a@b",
            "a?b",
            "a#b",
            "a:b",
            "a:80:80",
            "a:123456",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:8x",
            "[g::1]",
            "x%4",
            "x%zz",
            "caf\u{e9}",
            "a\"b",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
            assert_eq!(bad(buf.as_bytes()), "invalid Host", "{value:?}");
        }
    }

    #[test]
    fn content_length_values() {
        let ok: [(&[u8], BodyKind); 5] = [
            (b"0", BodyKind::None),
            (b"12", BodyKind::Length(12)),
            (b"  12\t", BodyKind::Length(12)),
            (b"\t7", BodyKind::Length(7)),
            (b"100", BodyKind::Length(100)),
        ];
        for (value, kind) in ok {
            let mut buf = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ".to_vec();
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
            b" ",
            b"+5",
            b"-5",
            b"-0",
            b"5 5",
            b"5\t5",
            b"5,5",
            b"5, 5",
            b"5,",
            b"0x10",
            b"1e3",
            b"5.0",
            b"5;",
            b"\"5\"",
            b"00",
            b"000",
            b"012",
            b"0012",
            b"\xd9\xa5",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            let mut buf = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ".to_vec();
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
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
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
        let head = complete_with(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n",
            &limits,
        );
        assert_eq!(head.body, BodyKind::Length(100));
        assert_eq!(
            parse_head(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
                &limits
            ),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn duplicate_content_length_rejected_even_if_equal() {
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            "duplicate Content-Length"
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n"),
            "duplicate Content-Length"
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_rejected() {
        let expected = "both Content-Length and Transfer-Encoding";
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            expected
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            expected
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"),
            expected
        );
    }

    #[test]
    fn transfer_encoding_values() {
        for value in [
            "chunked",
            "Chunked",
            "CHUNKED",
            "chunKed",
            " chunked\t",
            "\tchunked",
        ] {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(
                complete(buf.as_bytes()).body,
                BodyKind::Chunked,
                "{value:?}"
            );
        }
        let refused: [(&str, HttpError); 22] = [
            ("", HttpError::BadRequest("invalid Transfer-Encoding")),
            (
                "chunked,",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                ",chunked",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "chunked,,",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "chunked;q=1",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "chunked;",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "\"chunked\"",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "chunked x",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "ch unked",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "chunk\u{e9}d",
                HttpError::BadRequest("invalid Transfer-Encoding"),
            ),
            (
                "xchunked",
                HttpError::BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "chunkedx",
                HttpError::BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "chunk",
                HttpError::BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "identity",
                HttpError::BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "gzip",
                HttpError::BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "chunked, identity",
                HttpError::BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "chunked, gzip",
                HttpError::BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "chunked, chunked",
                HttpError::BadRequest("chunked is not the last transfer coding"),
            ),
            (
                "gzip, chunked",
                HttpError::NotImplemented("unsupported transfer coding"),
            ),
            (
                "identity, chunked",
                HttpError::NotImplemented("unsupported transfer coding"),
            ),
            (
                "x, y ,chunked",
                HttpError::NotImplemented("unsupported transfer coding"),
            ),
            (
                "gzip,chunked",
                HttpError::NotImplemented("unsupported transfer coding"),
            ),
        ];
        for (value, error) in refused {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(parse(buf.as_bytes()), Err(error), "{value:?}");
        }
    }

    #[test]
    fn bodies_are_framed_on_every_method() {
        // A body is framed whatever the method (RFC 9112 §6.3); the server drops it where the
        // method gives it no meaning, but never reads it as the next request.
        for method in ["GET", "HEAD", "DELETE", "OPTIONS", "PUT", "PATCH", "POST"] {
            let buf = format!("{method} / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n");
            assert_eq!(
                complete(buf.as_bytes()).body,
                BodyKind::Length(3),
                "{method}"
            );
            let buf =
                format!("{method} / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
            assert_eq!(complete(buf.as_bytes()).body, BodyKind::Chunked, "{method}");
        }
        // Without either field there is no body, whatever the method: no 411.
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n").body,
            BodyKind::None
        );
    }

    #[test]
    fn two_transfer_encoding_headers_rejected() {
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
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
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n");
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
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
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
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
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
        let head = complete(b"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nY:   \r\n\r\n");
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
        assert!(request_line_ended(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n"));
        assert!(!request_line_ended(b"\r\n\r\nGET / HTTP/1.1"));
        assert!(!request_line_ended(b"\r\n\r\n"));
    }
}
