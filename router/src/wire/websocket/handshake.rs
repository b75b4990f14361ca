//! Server side of the opening handshake (RFC 6455 §4.2): validates the upgrade request and writes the 101 response.

use crate::wire::http1::request::trim_ows;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::BytesMut;
use sha1::{Digest, Sha1};

use super::deflate::{self, Params};
use crate::wire::http1::{Method, RequestHead};

/// Appended to the client's key before hashing (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for `client_key`: base64(SHA-1(key + GUID)).
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(client_key);
    sha1.update(GUID.as_bytes());
    STANDARD.encode(sha1.finalize())
}

/// Why an upgrade request is refused; each variant maps to one response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// No `Upgrade: websocket` or no `Connection: upgrade`.
    NotUpgrade,
    /// The method is not GET (§4.2.1 item 1).
    BadMethod,
    /// `Sec-WebSocket-Version` is missing, repeated or not 13.
    BadVersion,
    /// `Sec-WebSocket-Key` is missing, repeated or not base64 of 16 bytes.
    BadKey,
    /// HTTP/1.0 cannot upgrade (§4.2.1 requires HTTP/1.1 or later).
    Http10,
}

impl HandshakeError {
    /// The response status for this error.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::NotUpgrade | HandshakeError::BadVersion => 426,
            HandshakeError::BadMethod | HandshakeError::BadKey | HandshakeError::Http10 => 400,
        }
    }

    /// Short text for error bodies; never contains request bytes.
    pub fn message(self) -> &'static str {
        match self {
            HandshakeError::NotUpgrade => "websocket upgrade required",
            HandshakeError::BadMethod => "websocket upgrade must use GET",
            HandshakeError::BadVersion => "unsupported Sec-WebSocket-Version",
            HandshakeError::BadKey => "invalid Sec-WebSocket-Key",
            HandshakeError::Http10 => "websocket upgrade requires HTTP/1.1",
        }
    }

    /// Headers the refusal must carry, ready for `ResponseHead::extra`: a 426
    /// names the protocol to upgrade to (RFC 9110 §15.5.22), and a version
    /// mismatch names the version we speak (RFC 6455 §4.4).
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HandshakeError::NotUpgrade => &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
            HandshakeError::BadVersion => &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
            ],
            HandshakeError::BadMethod | HandshakeError::BadKey | HandshakeError::Http10 => &[],
        }
    }
}

/// A validated upgrade: the accept value and the negotiated compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub accept: String,
    pub deflate: Option<Params>,
}

/// True when the request asks for an upgrade to websocket: some `Upgrade`
/// header lists `websocket` and some `Connection` header lists `upgrade`
/// (case-insensitive tokens). Says nothing about the request's validity.
pub fn is_upgrade(head: &RequestHead) -> bool {
    head.connection_has("upgrade") && upgrade_has_websocket(head)
}

/// Validates an upgrade request (RFC 6455 §4.2.1): GET, HTTP/1.1,
/// `Connection` listing `upgrade`, `Upgrade` listing `websocket`,
/// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` that is base64 of 16
/// bytes, each at most once. With `deflate_enabled`, the first acceptable
/// permessage-deflate offer is taken (see [`deflate::negotiate`]).
///
/// # Errors
/// The first failed check, in the order above, as a [`HandshakeError`].
pub fn validate(head: &RequestHead, deflate_enabled: bool) -> Result<Accepted, HandshakeError> {
    if head.method != Method::Get {
        return Err(HandshakeError::BadMethod);
    }
    if head.version_minor < 1 {
        return Err(HandshakeError::Http10);
    }
    if !is_upgrade(head) {
        return Err(HandshakeError::NotUpgrade);
    }
    match single_header(head, "sec-websocket-version") {
        Some(version) if trim_ows(version) == b"13" => {}
        _ => return Err(HandshakeError::BadVersion),
    }
    let key = single_header(head, "sec-websocket-key")
        .map(trim_ows)
        .ok_or(HandshakeError::BadKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    let deflate = if deflate_enabled {
        let offers: Vec<&[u8]> = head
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, value)| value)
            .collect();
        deflate::negotiate(&offers)
    } else {
        None
    };
    Ok(Accepted {
        accept: accept_key(key),
        deflate,
    })
}

/// Appends the `101 Switching Protocols` response, with
/// `Sec-WebSocket-Extensions` when deflate was negotiated. No subprotocol is
/// selected, so no `Sec-WebSocket-Protocol` is sent (§4.2.2).
pub fn put_response(out: &mut BytesMut, accepted: &Accepted) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accepted.accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(params) = &accepted.deflate {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(deflate::response_header(params).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A key is the base64 encoding of 16 bytes (§4.1): 24 characters with
/// canonical padding, which the strict standard engine enforces.
fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut decoded), Ok(16))
}

/// The value of `name` if it appears exactly once; the RFC forbids repeating
/// the key and version headers, and a repeat would make the answer ambiguous.
fn single_header<'a>(head: &'a RequestHead, name: &str) -> Option<&'a [u8]> {
    let mut values = head
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn upgrade_has_websocket(head: &RequestHead) -> bool {
    head.headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("upgrade"))
        .any(|(_, value)| {
            value
                .split(|&b| b == b',')
                .any(|item| trim_ows(item).eq_ignore_ascii_case(b"websocket"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::http1::{parse_head, Limits, Status};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn head(raw: &str) -> RequestHead {
        let limits = Limits {
            header_bytes_max: 8192,
            header_count_max: 64,
            body_bytes_max: 0,
        };
        match parse_head(raw.as_bytes(), &limits) {
            Ok(Status::Complete(head)) => head,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn request(extra: &str) -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn rfc_6455_accept_key() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
    }

    #[test]
    fn rfc_6455_handshake() {
        let accepted = validate(&head(&request("")), true).unwrap();
        assert_eq!(
            accepted,
            Accepted {
                accept: ACCEPT.to_owned(),
                deflate: None
            }
        );
        let mut out = BytesMut::new();
        put_response(&mut out, &accepted);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn deflate_negotiation() {
        let raw =
            request("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        let accepted = validate(&head(&raw), true).unwrap();
        let params = Params::NO_CONTEXT_TAKEOVER;
        assert_eq!(accepted.deflate, Some(params));
        let mut out = BytesMut::new();
        put_response(&mut out, &accepted);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"
        );
        // Disabled by configuration.
        assert_eq!(validate(&head(&raw), false).unwrap().deflate, None);
        // Offers spread over several header lines.
        let raw = request(
            "Sec-WebSocket-Extensions: x-foo\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        );
        assert_eq!(validate(&head(&raw), true).unwrap().deflate, Some(params));
        // Only unacceptable offers (zlib has no 8-bit raw window): upgrade
        // without compression.
        let raw =
            request("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n");
        assert_eq!(validate(&head(&raw), true).unwrap().deflate, None);
        // An unacceptable offer falls through to the next one.
        let raw = request(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9\r\n",
        );
        let accepted = validate(&head(&raw), true).unwrap();
        assert_eq!(
            accepted.deflate,
            Some(Params {
                server_max_window_bits: 9,
                server_max_window_bits_offered: true,
                ..params
            })
        );
        // A smaller server window is echoed (RFC 7692 §7.1.2.1); a
        // client_max_window_bits with a value is echoed, one without is not.
        let cases = [
            (
                "permessage-deflate; client_max_window_bits; server_max_window_bits=9",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15",
            ),
            (
                "permessage-deflate; client_max_window_bits=11",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=11",
            ),
        ];
        for (offer, answer) in cases {
            let raw = request(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
            let mut out = BytesMut::new();
            put_response(&mut out, &validate(&head(&raw), true).unwrap());
            let expected = format!("Sec-WebSocket-Extensions: {answer}\r\n\r\n");
            assert!(
                out.ends_with(expected.as_bytes()),
                "{offer}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn upgrade_detection() {
        assert!(is_upgrade(&head(&request(""))));
        let cases = [
            (
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
                true,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c, websocket\r\nConnection: upgrade\r\n\r\n",
                true,
            ),
            ("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", false),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
                false,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websockets\r\nConnection: upgrade\r\n\r\n",
                false,
            ),
            ("GET / HTTP/1.1\r\nHost: h\r\n\r\n", false),
        ];
        for (raw, expected) in cases {
            assert_eq!(is_upgrade(&head(raw)), expected, "{raw:?}");
        }
    }

    #[test]
    fn refusals() {
        let ok = request("");
        let cases: Vec<(String, HandshakeError)> = vec![
            (ok.replacen("GET", "POST", 1), HandshakeError::BadMethod),
            (
                ok.replacen("HTTP/1.1", "HTTP/1.0", 1),
                HandshakeError::Http10,
            ),
            (
                ok.replace("Upgrade: websocket\r\n", ""),
                HandshakeError::NotUpgrade,
            ),
            (
                ok.replace("Connection: Upgrade", "Connection: keep-alive"),
                HandshakeError::NotUpgrade,
            ),
            (
                ok.replace("Version: 13", "Version: 8"),
                HandshakeError::BadVersion,
            ),
            (
                ok.replace("Version: 13", "Version: 13, 8"),
                HandshakeError::BadVersion,
            ),
            (
                ok.replace("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::BadVersion,
            ),
            (
                request("Sec-WebSocket-Version: 13\r\n"),
                HandshakeError::BadVersion,
            ),
            (
                ok.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                HandshakeError::BadKey,
            ),
            (
                request(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
                HandshakeError::BadKey,
            ),
            // 15 bytes, 17 bytes, bad padding, bad alphabet, non-canonical trailing bits.
            (
                ok.replace(KEY, "dGhlIHNhbXBsZSBub25j"),
                HandshakeError::BadKey,
            ),
            (
                ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZTE="),
                HandshakeError::BadKey,
            ),
            (
                ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZQ"),
                HandshakeError::BadKey,
            ),
            (
                ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZQ=A"),
                HandshakeError::BadKey,
            ),
            (
                ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZQ-="),
                HandshakeError::BadKey,
            ),
            (
                ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZR=="),
                HandshakeError::BadKey,
            ),
            (ok.replace(KEY, ""), HandshakeError::BadKey),
        ];
        for (raw, expected) in cases {
            assert_eq!(validate(&head(&raw), true), Err(expected), "{raw:?}");
        }
        // Surrounding whitespace on the key and version is not part of them.
        let raw = ok.replace(KEY, &format!("  {KEY}\t"));
        assert_eq!(validate(&head(&raw), true).unwrap().accept, ACCEPT);
    }

    #[test]
    fn error_statuses_and_headers() {
        use HandshakeError::*;
        assert_eq!(NotUpgrade.status(), 426);
        assert_eq!(BadVersion.status(), 426);
        assert_eq!(BadMethod.status(), 400);
        assert_eq!(BadKey.status(), 400);
        assert_eq!(Http10.status(), 400);
        assert!(BadVersion
            .headers()
            .contains(&("Sec-WebSocket-Version", "13")));
        assert!(NotUpgrade.headers().contains(&("Upgrade", "websocket")));
        for e in [BadMethod, BadKey, Http10] {
            assert!(e.headers().is_empty());
        }
        for e in [NotUpgrade, BadMethod, BadVersion, BadKey, Http10] {
            assert!(!e.message().is_empty());
        }
    }
}
