//! Writing answers: complete JSON/JSONP responses, error bodies, and socket writes.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::wire::format::put_maybe_jsonp;
use crate::wire::http1::write_full;

/// Headers every API answer carries: the API is meant to be called cross-origin by pages that
/// hold a tunnel id, and answers must never be cached by proxies.
pub const API_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache, no-store"),
    ("Access-Control-Allow-Origin", "*"),
];

/// Headers of JSONP answers.
pub const JSONP_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache, no-store"),
    ("Access-Control-Allow-Origin", "*"),
    ("X-Content-Type-Options", "nosniff"),
];

/// The same for HTTP/1.0 clients that asked to keep the connection: they need to hear it.
const API_HEADERS_10: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache, no-store"),
    ("Access-Control-Allow-Origin", "*"),
    ("Connection", "keep-alive"),
];
const JSONP_HEADERS_10: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache, no-store"),
    ("Access-Control-Allow-Origin", "*"),
    ("X-Content-Type-Options", "nosniff"),
    ("Connection", "keep-alive"),
];

/// Who an answer lets read it from another origin (`Access-Control-Allow-Origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cors {
    /// Anyone (`*`): no `auth.origins_allowed` is set. No credentials (cookies) with it.
    Any,
    /// The allowed origin the request came from, `auth.origins_allowed[i]`: named, with
    /// credentials allowed (a `router_token` cookie) and `Vary: Origin`.
    Origin(u8),
    /// `auth.origins_allowed` is set and the request named no allowed origin: no grant, only
    /// `Vary: Origin`.
    Denied,
}

/// Whether (and how) the connection stays open after an answer, and its CORS grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persist {
    pub keep_alive: bool,
    /// An HTTP/1.0 client: keep-alive must be acknowledged with `Connection: keep-alive`.
    pub http10: bool,
    pub cors: Cors,
}

impl Persist {
    pub const CLOSE: Persist = Persist {
        keep_alive: false,
        http10: false,
        cors: Cors::Any,
    };

    /// For a request: its keep-alive, and the grant `Cors::Any` (the route sets the grant when
    /// `auth.origins_allowed` is set).
    pub fn of(head: &crate::wire::http1::RequestHead) -> Persist {
        Persist {
            keep_alive: head.keep_alive,
            http10: head.version_minor == 0,
            cors: Cors::Any,
        }
    }

    /// For a streaming answer: HTTP/1.0 streams are close-delimited, so the connection ends
    /// with them.
    pub fn for_stream(self) -> Persist {
        Persist {
            keep_alive: !self.http10 && self.keep_alive,
            ..self
        }
    }

    /// Content type and headers of a JSON (or JSONP) answer.
    pub fn json_headers(
        self,
        jsonp: bool,
    ) -> (&'static str, &'static [(&'static str, &'static str)]) {
        let ack = self.keep_alive && self.http10;
        match (jsonp, ack) {
            (true, false) => ("application/javascript", JSONP_HEADERS),
            (true, true) => ("application/javascript", JSONP_HEADERS_10),
            (false, false) => ("application/json", API_HEADERS),
            (false, true) => ("application/json", API_HEADERS_10),
        }
    }

    /// Headers of other answers: only the keep-alive acknowledgement, when one is due.
    pub fn plain_headers(self) -> &'static [(&'static str, &'static str)] {
        if self.keep_alive && self.http10 {
            &[("Connection", "keep-alive")]
        } else {
            &[]
        }
    }
}

/// `headers` with the grant `cors` names instead of `Access-Control-Allow-Origin: *`
/// (borrowed as they are for [`Cors::Any`]); `origins` is `auth.origins_allowed`.
pub fn with_cors<'a>(
    headers: &'a [(&'a str, &'a str)],
    cors: Cors,
    origins: &'a [String],
) -> Cow<'a, [(&'a str, &'a str)]> {
    let grant: &[(&str, &str)] = match cors {
        Cors::Any => return Cow::Borrowed(headers),
        Cors::Origin(i) => match origins.get(usize::from(i)) {
            Some(origin) => &[
                ("Access-Control-Allow-Origin", origin.as_str()),
                ("Access-Control-Allow-Credentials", "true"),
                ("Vary", "Origin"),
            ],
            None => &[("Vary", "Origin")],
        },
        Cors::Denied => &[("Vary", "Origin")],
    };
    let mut named: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("access-control-allow-origin"))
        .collect();
    named.extend_from_slice(grant);
    Cow::Owned(named)
}

/// Writes `out` to the socket; false when the peer is gone. The write future is boxed so that
/// the state machines awaiting `send` (a connection's task among them) stay small while idle.
pub async fn send(stream: &mut TcpStream, out: BytesMut) -> bool {
    let (result, _) = boxed_write(stream, out).await;
    result.is_ok()
}

/// Writes the answers corked for pipelined requests, if any; false when the peer is gone.
pub async fn uncork(stream: &mut TcpStream, corked: &mut BytesMut) -> bool {
    corked.is_empty() || send(stream, std::mem::take(corked)).await
}

type WriteFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = monoio::BufResult<usize, BytesMut>> + 'a>>;

/// Builds the write future outside the caller's frame: a future created in an async fn's own
/// frame keeps its full size reserved there even after being moved into a box.
fn boxed_write(stream: &mut TcpStream, out: BytesMut) -> WriteFuture<'_> {
    Box::pin(stream.write_all(out))
}

/// A complete JSON answer, or JSONP when `cb` is given.
pub fn json(status: u16, body: &[u8], cb: Option<&str>, persist: Persist) -> BytesMut {
    json_with(status, body, cb, persist, &[], &[])
}

/// A complete JSON (or JSONP) answer with `extra` headers after the usual ones; `origins`
/// (`auth.origins_allowed`) names the grant of `persist.cors`.
pub fn json_with(
    status: u16,
    body: &[u8],
    cb: Option<&str>,
    persist: Persist,
    extra: &[(&str, &str)],
    origins: &[String],
) -> BytesMut {
    let mut wrapped = BytesMut::new();
    put_maybe_jsonp(&mut wrapped, cb, body);
    let (content_type, usual) = persist.json_headers(cb.is_some());
    let usual = with_cors(usual, persist.cors, origins);
    let usual = &usual[..];
    let all;
    let headers = if extra.is_empty() {
        usual
    } else {
        all = [usual, extra].concat();
        &all[..]
    };
    let mut out = BytesMut::with_capacity(wrapped.len() + 256);
    write_full(
        &mut out,
        status,
        content_type,
        &wrapped,
        persist.keep_alive,
        headers,
    );
    out
}

/// Cuts a complete answer down to its head (for HEAD requests: the head still announces the
/// length the body would have).
pub fn strip_body(out: &mut BytesMut) {
    if let Some(end) = memchr::memmem::find(out, b"\r\n\r\n") {
        out.truncate(end + 4);
    }
}

/// `{"ok":false,"error":"<message>"}` with `status`.
pub fn error(status: u16, message: &str, cb: Option<&str>, persist: Persist) -> BytesMut {
    error_with(status, message, cb, persist, &[], &[])
}

/// [`error`] with extra headers and the grant of `persist.cors` (see [`json_with`]).
pub fn error_with(
    status: u16,
    message: &str,
    cb: Option<&str>,
    persist: Persist,
    extra: &[(&str, &str)],
    origins: &[String],
) -> BytesMut {
    let mut body = BytesMut::with_capacity(message.len() + 32);
    body.put_slice(br#"{"ok":false,"error":"#);
    put_json_string(&mut body, message);
    body.put_u8(b'}');
    json_with(status, &body, cb, persist, extra, origins)
}

/// Appends `text` as a JSON string literal.
pub fn put_json_string(out: &mut BytesMut, text: &str) {
    out.put_u8(b'"');
    for c in text.chars() {
        match c {
            '"' => out.put_slice(b"\\\""),
            '\\' => out.put_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.put_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.put_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_escaped_json() {
        let keep = Persist {
            keep_alive: true,
            http10: false,
            cors: Cors::Any,
        };
        let out = error(400, "\"path\" must be a string", None, keep);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 "));
        assert!(text.ends_with(r#"{"ok":false,"error":"\"path\" must be a string"}"#));
        let out = error(404, "unknown tunnel", Some("cb"), Persist::CLOSE);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.contains("application/javascript"));
        assert!(text.ends_with(r#"/**/cb({"ok":false,"error":"unknown tunnel"});"#));
    }
}
