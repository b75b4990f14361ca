//! Close frames (RFC 6455 §5.5.1, §7.4): which codes may be received, payload validation and encoding.

use bytes::BytesMut;

use super::frame::{put_frame, put_masked_frame, CONTROL_PAYLOAD_BYTES_MAX};
use super::{OpCode, WsError};

/// Longest close reason that fits a control frame after the 2-byte code.
pub const REASON_BYTES_MAX: usize = CONTROL_PAYLOAD_BYTES_MAX - 2;

/// Whether a client may send us `code` (RFC 6455 §7.4.1-2): 1000-1003 and
/// 1007-1011 are defined by the RFC, 3000-4999 belong to libraries and
/// applications. 1004 is reserved, 1005, 1006 and 1015 are for local reporting
/// only and must never be on the wire, and 0-999, 1012-2999 and 5000+ are
/// outside what a peer may use. This is the table Autobahn 7.7/7.9 checks.
pub fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Like [`is_valid_received_code`], plus the IANA-registered 1012 (service
/// restart), 1013 (try again later) and 1014 (bad gateway). Servers and
/// proxies send these, so a client-role decoder (loadgen's, the conformance
/// peers') accepts them.
pub fn is_valid_code_from_server(code: u16) -> bool {
    is_valid_received_code(code) || matches!(code, 1012..=1014)
}

/// Parses a received close payload: `None` for an empty payload, otherwise
/// the code and the UTF-8 reason.
///
/// # Errors
/// `BadClose` for a 1-byte payload, a payload over 125 bytes or a code that
/// [`is_valid_received_code`] refuses; `InvalidUtf8` for a reason that is not UTF-8.
pub fn validate_close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    parse(payload, is_valid_received_code)
}

/// [`validate_close_payload`] for a client receiving from a server, which
/// also accepts 1012-1014 (see [`is_valid_code_from_server`]).
pub fn validate_close_payload_from_server(
    payload: &[u8],
) -> Result<Option<(u16, String)>, WsError> {
    parse(payload, is_valid_code_from_server)
}

fn parse(payload: &[u8], code_ok: fn(u16) -> bool) -> Result<Option<(u16, String)>, WsError> {
    if payload.len() > CONTROL_PAYLOAD_BYTES_MAX {
        return Err(WsError::BadClose("payload over 125 bytes"));
    }
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(WsError::BadClose("1-byte payload")),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !code_ok(code) {
        return Err(WsError::BadClose("code may not be received"));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
    Ok(Some((code, reason.to_owned())))
}

/// Appends a server-to-client close frame. A reason longer than 123 bytes is
/// cut at the last character boundary that fits, so the frame stays a valid
/// control frame. `code` must be one a peer may receive (not 1005, 1006 or
/// 1015); that is the caller's invariant, checked only in debug builds.
pub fn put_close(out: &mut BytesMut, code: u16, reason: &str) {
    let (payload, len) = close_payload(code, reason);
    put_frame(
        out,
        OpCode::Close,
        true,
        false,
        payload.get(..len).unwrap_or(&[]),
    );
}

/// Appends a client-to-server close frame masked with `mask`; otherwise as [`put_close`].
pub fn put_masked_close(out: &mut BytesMut, code: u16, reason: &str, mask: [u8; 4]) {
    let (payload, len) = close_payload(code, reason);
    put_masked_frame(
        out,
        OpCode::Close,
        true,
        false,
        mask,
        payload.get(..len).unwrap_or(&[]),
    );
}

fn close_payload(code: u16, reason: &str) -> ([u8; CONTROL_PAYLOAD_BYTES_MAX], usize) {
    debug_assert!(
        is_valid_code_from_server(code),
        "close code {code} may not be sent"
    );
    let mut end = reason.len().min(REASON_BYTES_MAX);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.as_bytes().get(..end).unwrap_or(&[]);
    let mut payload = [0u8; CONTROL_PAYLOAD_BYTES_MAX];
    let [hi, lo] = code.to_be_bytes();
    let len = 2 + reason.len();
    if let Some(dst) = payload.get_mut(..len) {
        let (code_bytes, reason_bytes) = dst.split_at_mut(2);
        code_bytes.copy_from_slice(&[hi, lo]);
        reason_bytes.copy_from_slice(reason);
    }
    (payload, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::websocket::frame::parse_header;
    use crate::wire::websocket::mask::apply_mask;

    fn expected_valid(code: u16) -> bool {
        (1000..=1003).contains(&code)
            || (1007..=1011).contains(&code)
            || (3000..=4999).contains(&code)
    }

    #[test]
    fn code_table() {
        for code in 0..=u16::MAX {
            assert_eq!(is_valid_received_code(code), expected_valid(code), "{code}");
            assert_eq!(
                is_valid_code_from_server(code),
                expected_valid(code) || (1012..=1014).contains(&code),
                "{code}"
            );
        }
        // The Autobahn 7.7.x (valid) and 7.9.x (invalid) probes.
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let payload = code.to_be_bytes();
            assert_eq!(
                validate_close_payload(&payload),
                Ok(Some((code, String::new())))
            );
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000,
            65535,
        ] {
            assert_eq!(
                validate_close_payload(&code.to_be_bytes()),
                Err(WsError::BadClose("code may not be received")),
                "{code}"
            );
        }
        assert_eq!(
            validate_close_payload_from_server(&1013u16.to_be_bytes()),
            Ok(Some((1013, String::new())))
        );
        assert_eq!(
            validate_close_payload_from_server(&1015u16.to_be_bytes()),
            Err(WsError::BadClose("code may not be received"))
        );
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(validate_close_payload(b""), Ok(None));
        assert_eq!(
            validate_close_payload(&[0x03]),
            Err(WsError::BadClose("1-byte payload"))
        );
        assert_eq!(
            validate_close_payload(b"\x03\xe8bye"),
            Ok(Some((1000, "bye".to_owned())))
        );
        assert_eq!(
            validate_close_payload(&[&[0x03, 0xe9], "κόσμε".as_bytes()].concat()),
            Ok(Some((1001, "κόσμε".to_owned())))
        );
        assert_eq!(
            validate_close_payload(b"\x03\xe8\xff\xfe"),
            Err(WsError::InvalidUtf8)
        );
        assert_eq!(
            validate_close_payload(b"\x03\xe8\xce"),
            Err(WsError::InvalidUtf8)
        );
        let mut at_max = vec![0x03, 0xe8];
        at_max.resize(125, b'r');
        assert_eq!(
            validate_close_payload(&at_max),
            Ok(Some((1000, "r".repeat(123))))
        );
        at_max.push(b'r');
        assert_eq!(
            validate_close_payload(&at_max),
            Err(WsError::BadClose("payload over 125 bytes"))
        );
    }

    #[test]
    fn encodes_close_frames() {
        let mut out = BytesMut::new();
        put_close(&mut out, 1000, "");
        assert_eq!(&out[..], &[0x88, 0x02, 0x03, 0xe8]);

        let mut out = BytesMut::new();
        put_close(&mut out, 1009, "too big");
        assert_eq!(&out[..], b"\x88\x09\x03\xf1too big");

        let mut out = BytesMut::new();
        put_masked_close(&mut out, 1000, "", [1, 2, 3, 4]);
        assert_eq!(&out[..], &[0x88, 0x82, 1, 2, 3, 4, 0x02, 0xea]);
        let mut body = out[6..].to_vec();
        apply_mask(&mut body, [1, 2, 3, 4], 0);
        assert_eq!(
            validate_close_payload(&body),
            Ok(Some((1000, String::new())))
        );
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let mut out = BytesMut::new();
        put_close(&mut out, 1001, &"x".repeat(200));
        let header = parse_header(&out).unwrap().unwrap();
        assert_eq!(header.payload_len, 125);
        assert_eq!(&out[4..], "x".repeat(123).as_bytes());

        // 122 ASCII bytes then a 2-byte char would end at 124: it is dropped whole.
        let reason = format!("{}é", "y".repeat(122));
        let mut out = BytesMut::new();
        put_close(&mut out, 1001, &reason);
        assert_eq!(out[1], 124);
        assert_eq!(
            validate_close_payload(&out[2..]),
            Ok(Some((1001, "y".repeat(122))))
        );

        // Exactly 123 bytes fits unchanged.
        let reason = format!("{}é", "y".repeat(121));
        let mut out = BytesMut::new();
        put_close(&mut out, 1001, &reason);
        assert_eq!(out[1], 125);
        assert_eq!(validate_close_payload(&out[2..]), Ok(Some((1001, reason))));
    }
}
