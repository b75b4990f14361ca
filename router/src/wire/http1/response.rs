//! Serialises HTTP/1.1 response heads, chunked body framing and complete responses into a `BytesMut`.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

/// Reason phrase for `status` (RFC 9110 §15 wording); "" for unknown codes,
/// which is still a valid status line ("HTTP/1.1 599 \r\n").
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`; follow with `write_chunk`/`write_last_chunk`.
    Chunked,
    /// Body ends when the connection closes; forces `Connection: close`.
    CloseDelimited,
    /// No body and no framing header (1xx, 204, 304, 101 upgrades).
    None,
}

/// A response head to serialise. Framing (`Content-Length`,
/// `Transfer-Encoding`) comes only from `body`; `extra` must not repeat it.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    /// Three-digit status; anything outside 100..=999 is written as 500.
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: ResponseBody,
    /// When false (or the body is close-delimited), `Connection: close` is
    /// written. Nothing is written for keep-alive: HTTP/1.1 defaults to it,
    /// and callers answering HTTP/1.0 keep-alive pass the header in `extra`.
    pub keep_alive: bool,
    pub extra: &'a [(&'a str, &'a str)],
}

impl ResponseHead<'_> {
    /// Appends the head, ending with the empty line, to `out`.
    ///
    /// A header whose name is not a token or whose value contains control
    /// characters (CR, LF, NUL, ...) is omitted, so caller-supplied text can
    /// never split the response; `extra` entries named `Content-Length` or
    /// `Transfer-Encoding` are omitted because they would contradict `body`.
    pub fn write(&self, out: &mut BytesMut) {
        let status = if (100..=999).contains(&self.status) {
            self.status
        } else {
            500
        };
        out.reserve(self.estimated_len());
        // fmt::Write for BytesMut grows the buffer and cannot fail, so the
        // fmt::Result carries no information.
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", status, reason(status));
        if let Some(content_type) = self.content_type {
            put_header(out, "Content-Type", content_type);
        }
        match self.body {
            ResponseBody::Length(len) => {
                let _ = write!(out, "Content-Length: {len}\r\n");
            }
            ResponseBody::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
            ResponseBody::CloseDelimited | ResponseBody::None => {}
        }
        if !self.keep_alive || self.body == ResponseBody::CloseDelimited {
            out.put_slice(b"Connection: close\r\n");
        }
        for &(name, value) in self.extra {
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                continue;
            }
            put_header(out, name, value);
        }
        out.put_slice(b"\r\n");
    }

    /// Upper-bound-ish size so `write` reserves once instead of growing per header.
    fn estimated_len(&self) -> usize {
        // Status line, framing and Connection headers fit comfortably in 128.
        let content_type = self.content_type.map_or(0, |ct| ct.len() + 16);
        let extra: usize = self
            .extra
            .iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        128 + content_type + extra
    }
}

/// Writes `"{len:x}\r\n{data}\r\n"`; nothing for empty data, because a
/// zero-length chunk would end the body.
pub fn write_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    let _ = write!(out, "{:x}\r\n", data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Writes the last-chunk with an empty trailer section: `"0\r\n\r\n"`.
pub fn write_last_chunk(out: &mut BytesMut) {
    out.put_slice(b"0\r\n\r\n");
}

/// Writes a complete response with a Content-Length body.
///
/// For 1xx, 204 and 304, which cannot carry a body, neither the body, its
/// Content-Length nor the Content-Type is written. An empty `content_type`
/// omits the header.
pub fn write_full(
    out: &mut BytesMut,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra: &[(&str, &str)],
) {
    let bodyless = (100..200).contains(&status) || status == 204 || status == 304;
    let head = ResponseHead {
        status,
        content_type: (!bodyless && !content_type.is_empty()).then_some(content_type),
        body: if bodyless {
            ResponseBody::None
        } else {
            ResponseBody::Length(body.len())
        },
        keep_alive,
        extra,
    };
    out.reserve(body.len());
    head.write(out);
    if !bodyless {
        out.put_slice(body);
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    if !is_token(name) || !value.bytes().all(is_field_value_byte) {
        return;
    }
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// RFC 9110 §5.6.2 token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 §5.5 field-value bytes: HTAB, SP, visible ASCII, obs-text.
fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::super::chunked::{ChunkedDecoder, Decoded};
    use super::*;

    fn head_bytes(head: &ResponseHead<'_>) -> BytesMut {
        let mut out = BytesMut::new();
        head.write(&mut out);
        out
    }

    #[test]
    fn reasons() {
        for (status, text) in [
            (100, "Continue"),
            (101, "Switching Protocols"),
            (200, "OK"),
            (202, "Accepted"),
            (204, "No Content"),
            (400, "Bad Request"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (426, "Upgrade Required"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
        ] {
            assert_eq!(reason(status), text);
        }
        assert_eq!(reason(599), "");
    }

    #[test]
    fn full_json_keep_alive() {
        let mut out = BytesMut::new();
        write_full(&mut out, 200, "application/json", b"{}", true, &[]);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn full_close_with_extra() {
        let mut out = BytesMut::from(&b"previous"[..]);
        write_full(
            &mut out,
            404,
            "application/json",
            b"{\"error\":\"not found\"}",
            false,
            &[("Cache-Control", "no-store")],
        );
        assert_eq!(
            &out[..],
            &b"previousHTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 21\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{\"error\":\"not found\"}"[..]
        );
    }

    #[test]
    fn full_bodyless_statuses() {
        let mut out = BytesMut::new();
        write_full(&mut out, 204, "text/plain", b"ignored", true, &[]);
        assert_eq!(&out[..], b"HTTP/1.1 204 No Content\r\n\r\n");
        let mut out = BytesMut::new();
        write_full(&mut out, 100, "", b"", true, &[]);
        assert_eq!(&out[..], b"HTTP/1.1 100 Continue\r\n\r\n");
        let mut out = BytesMut::new();
        write_full(&mut out, 304, "text/plain", b"x", false, &[]);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn full_empty_body_and_no_content_type() {
        let mut out = BytesMut::new();
        write_full(&mut out, 202, "", b"", true, &[]);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn switching_protocols() {
        let out = head_bytes(&ResponseHead {
            status: 101,
            content_type: None,
            body: ResponseBody::None,
            keep_alive: true,
            extra: &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
        });
        assert_eq!(
            &out[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        );
    }

    #[test]
    fn http10_keep_alive_is_caller_supplied() {
        let out = head_bytes(&ResponseHead {
            status: 200,
            content_type: None,
            body: ResponseBody::Length(0),
            keep_alive: true,
            extra: &[("Connection", "keep-alive")],
        });
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn close_delimited_forces_close() {
        let out = head_bytes(&ResponseHead {
            status: 200,
            content_type: Some("text/plain"),
            body: ResponseBody::CloseDelimited,
            keep_alive: true,
            extra: &[],
        });
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn status_outside_three_digits_becomes_500() {
        for status in [0, 99, 1000, u16::MAX] {
            let out = head_bytes(&ResponseHead {
                status,
                content_type: None,
                body: ResponseBody::None,
                keep_alive: true,
                extra: &[],
            });
            assert_eq!(&out[..], b"HTTP/1.1 500 Internal Server Error\r\n\r\n");
        }
        let out = head_bytes(&ResponseHead {
            status: 599,
            content_type: None,
            body: ResponseBody::None,
            keep_alive: true,
            extra: &[],
        });
        assert_eq!(&out[..], b"HTTP/1.1 599 \r\n\r\n");
    }

    #[test]
    fn unsafe_headers_are_omitted() {
        let out = head_bytes(&ResponseHead {
            status: 200,
            content_type: Some("text/plain\r\nX-Injected: 1"),
            body: ResponseBody::Length(0),
            keep_alive: true,
            extra: &[
                ("X-Split", "a\r\nSet-Cookie: evil"),
                ("X-Nul", "a\0b"),
                ("Bad Name", "v"),
                ("", "v"),
                ("Bad:Name", "v"),
                ("content-length", "99"),
                ("Transfer-Encoding", "chunked"),
                ("X-Tab", "a\tb"),
                ("X-Utf8", "caf\u{e9}"),
            ],
        });
        assert_eq!(
            &out[..],
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Tab: a\tb\r\nX-Utf8: caf\u{e9}\r\n\r\n"
                .as_bytes()
        );
    }

    #[test]
    fn chunked_stream() {
        let mut out = head_bytes(&ResponseHead {
            status: 200,
            content_type: Some("text/event-stream"),
            body: ResponseBody::Chunked,
            keep_alive: true,
            extra: &[],
        });
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        out.clear();
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, b"");
        write_chunk(&mut out, &[b'x'; 255]);
        write_chunk(&mut out, &[b'y'; 16]);
        write_last_chunk(&mut out);
        let mut expected = b"5\r\nhello\r\nff\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 255]);
        expected.extend_from_slice(b"\r\n10\r\n");
        expected.extend_from_slice(&[b'y'; 16]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn empty_chunk_writes_nothing() {
        let mut out = BytesMut::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_last_chunk(&mut out);
        assert_eq!(&out[..], b"0\r\n\r\n");
    }

    #[test]
    fn chunks_round_trip_through_decoder() {
        let mut wire = BytesMut::new();
        let pieces: [&[u8]; 4] = [b"a", b"", &[7u8; 4096], b"\r\n0\r\n"];
        for piece in pieces {
            write_chunk(&mut wire, piece);
        }
        write_last_chunk(&mut wire);
        let mut decoder = ChunkedDecoder::new(1 << 20);
        let mut out = BytesMut::new();
        assert_eq!(decoder.decode(&mut wire, &mut out), Ok(Decoded::Done));
        assert!(wire.is_empty());
        assert_eq!(out.to_vec(), pieces.concat());
    }
}
