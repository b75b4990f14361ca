//! HTTP response heads, as the tunnels and the publisher read them (httparse, bounded).

/// Response head bytes accepted before the connection is given up.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
const HEADERS_MAX: usize = 32;

/// What loadgen needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// `Sec-WebSocket-Accept`.
    pub accept: Option<String>,
    /// Any `Transfer-Encoding` at all.
    pub transfer_encoding: bool,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    pub content_length: Option<usize>,
    /// `Connection: close`: the server closes after this response.
    pub close: bool,
    /// Bytes of the head itself.
    pub len: usize,
}

/// Parses the response head at the front of `buf` without consuming it; `Ok(None)` while
/// it is incomplete, an error once it is malformed or longer than `HEAD_BYTES_MAX`.
pub fn peek_head(buf: &[u8]) -> Result<Option<Head>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(str::trim)
            };
            Ok(Some(Head {
                status: response.code.unwrap_or(0),
                accept: header("sec-websocket-accept").map(str::to_owned),
                transfer_encoding: header("transfer-encoding").is_some(),
                chunked: header("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
                content_length: header("content-length").and_then(|v| v.parse().ok()),
                close: header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
                len,
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() < HEAD_BYTES_MAX => Ok(None),
        _ => Err("bad response head"),
    }
}
