//! Sans-IO HTTP/1.1 codec: request heads, chunked request bodies, response writing and errors.

pub mod chunked;
pub mod request;
pub mod response;

pub use chunked::{ChunkedDecoder, Decoded};
pub use request::{parse_head, BodyKind, Method, RequestHead, Status};
pub use response::{reason, write_chunk, write_full, write_last_chunk, ResponseBody, ResponseHead};

/// A complete request: its head and its decoded body.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: RequestHead,
    pub body: bytes::Bytes,
}

/// Why a request cannot be served; each variant maps to one response status.
///
/// `Copy` and allocation-free so it can be returned from hot parsing paths and
/// carried across the IO layer without cloning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Syntax or framing violation; the payload says which rule was broken.
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// Well-formed framing that this server does not implement (a transfer
    /// coding other than `chunked`, RFC 9112 §6.1); the payload says which.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// The request line did not end within `Limits::header_bytes_max`.
    #[error("request URI too long")]
    UriTooLong,
    /// The head exceeded `Limits::header_bytes_max`/`header_count_max`, or
    /// chunked trailers exceeded their bound.
    #[error("request header fields too large")]
    HeadTooLarge,
    /// The declared or decoded body exceeded `Limits::body_bytes_max`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The head did not arrive in time (produced by the IO layer, not the codec).
    #[error("request head timed out")]
    Timeout,
    /// The peer closed (or reset) the connection partway through a request; the payload says
    /// where (produced by the IO layer, not the codec). A peer that only half-closed still
    /// reads why, but nothing failed on the server's side.
    #[error("{0}")]
    Aborted(&'static str),
    /// No handler for this method on this path (produced by routing).
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl HttpError {
    /// The response status code for this error.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) | HttpError::Aborted(_) => 400,
            HttpError::NotImplemented(_) => 501,
            HttpError::UriTooLong => 414,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::Timeout => 408,
            HttpError::MethodNotAllowed => 405,
        }
    }

    /// Short text for JSON error bodies. For `BadRequest`, `Aborted` and `NotImplemented`
    /// this is the static detail, which never contains request bytes, so it is
    /// safe to echo.
    pub fn message(self) -> &'static str {
        match self {
            HttpError::BadRequest(detail)
            | HttpError::Aborted(detail)
            | HttpError::NotImplemented(detail) => detail,
            HttpError::UriTooLong => "request URI too long",
            HttpError::HeadTooLarge => "request header fields too large",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::Timeout => "request head timed out",
            HttpError::MethodNotAllowed => "method not allowed",
        }
    }
}

/// Per-request resource bounds enforced by the codec.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum bytes of a request head, including the final CRLFCRLF.
    pub header_bytes_max: usize,
    /// Maximum number of header fields; values above
    /// [`request::HEADER_COUNT_CAP`] are treated as the cap.
    pub header_count_max: usize,
    /// Maximum bytes of a request body (declared or decoded).
    pub body_bytes_max: usize,
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a token (a field name, a transfer
/// coding, a chunk extension name).
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_is_exactly_the_token_set() {
        let tokens: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.extend_from_slice(b"!#$%&'*+-.^_`|~");
        expected.sort_unstable();
        assert_eq!(tokens, expected);
    }

    #[test]
    fn status_codes_match_variants() {
        assert_eq!(HttpError::BadRequest("x").status(), 400);
        assert_eq!(HttpError::NotImplemented("x").status(), 501);
        assert_eq!(HttpError::UriTooLong.status(), 414);
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
        assert_eq!(HttpError::Timeout.status(), 408);
        assert_eq!(HttpError::MethodNotAllowed.status(), 405);
    }

    #[test]
    fn messages_and_display() {
        assert_eq!(HttpError::BadRequest("bad chunk").message(), "bad chunk");
        assert_eq!(
            HttpError::BadRequest("bad chunk").to_string(),
            "malformed request: bad chunk"
        );
        assert_eq!(HttpError::NotImplemented("gzip").message(), "gzip");
        assert_eq!(
            HttpError::NotImplemented("gzip").to_string(),
            "not implemented: gzip"
        );
        assert_eq!(HttpError::UriTooLong.message(), "request URI too long");
        assert_eq!(
            HttpError::HeadTooLarge.message(),
            "request header fields too large"
        );
        assert_eq!(HttpError::BodyTooLarge.message(), "request body too large");
        assert_eq!(HttpError::Timeout.message(), "request head timed out");
        assert_eq!(HttpError::MethodNotAllowed.message(), "method not allowed");
        // Display and message agree for the fixed-text variants.
        for e in [
            HttpError::UriTooLong,
            HttpError::HeadTooLarge,
            HttpError::BodyTooLarge,
            HttpError::Timeout,
            HttpError::MethodNotAllowed,
        ] {
            assert_eq!(e.to_string(), e.message());
        }
    }
}
