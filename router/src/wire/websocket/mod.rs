//! Sans-IO WebSocket codec (RFC 6455) with permessage-deflate (RFC 7692): errors, opcodes and limits.

// Data flow: `handshake` validates the upgrade request and negotiates `deflate`;
// `decoder` turns received bytes into messages, using `frame` for headers, `mask`
// to unmask, `utf8` to validate text and `close` for close payloads; `frame` and
// `close` also encode outgoing frames.

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use close::{put_close, put_masked_close, validate_close_payload};
pub use decoder::{Decoder, Message, Role};
pub use deflate::{Inflater, Params};
pub use frame::{
    header_len_for, parse_header, put_frame, put_header, put_masked_frame, FrameHeader,
};
pub use handshake::{accept_key, is_upgrade, put_response, validate, Accepted, HandshakeError};
pub use mask::apply_mask;
pub use utf8::Utf8Validator;

/// Why a WebSocket connection must be failed; each variant maps to one close code.
///
/// `Copy` and allocation-free so the decoder can return it from its hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// Framing or sequencing violation; the payload says which rule was broken.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason is not valid UTF-8.
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    /// A frame exceeded `Limits::frame_bytes_max` or a message (after inflating)
    /// exceeded `Limits::message_bytes_max`.
    #[error("message too big")]
    TooBig,
    /// A close frame with a 1-byte payload or a code that may not be received.
    #[error("invalid close frame: {0}")]
    BadClose(&'static str),
}

impl WsError {
    /// The close code to send before dropping the connection (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            WsError::Protocol(_) | WsError::BadClose(_) => 1002,
            WsError::InvalidUtf8 => 1007,
            WsError::TooBig => 1009,
        }
    }
}

/// Frame opcode (RFC 6455 §5.2); reserved values are rejected by [`parse_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The opcode for the low nibble of a frame's first byte; `None` for the
    /// reserved values 0x3-0x7 and 0xB-0xF.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        match value {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// The wire value of this opcode.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong: never fragmented, at most 125 payload bytes.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Per-connection bounds enforced by the [`Decoder`]; hitting either closes with 1009.
///
/// Memory held for a connection is at most one frame of unread payload in the
/// caller's read buffer plus `message_bytes_max` of assembled message in the decoder
/// (and, with client context takeover, a 32 KiB inflate window).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum payload bytes of one frame, checked from the header before the
    /// payload is buffered.
    pub frame_bytes_max: usize,
    /// Maximum payload bytes of one message after reassembly and inflation.
    pub message_bytes_max: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_match_variants() {
        assert_eq!(WsError::Protocol("x").close_code(), 1002);
        assert_eq!(WsError::BadClose("x").close_code(), 1002);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
        assert_eq!(WsError::TooBig.close_code(), 1009);
    }

    #[test]
    fn display() {
        assert_eq!(
            WsError::Protocol("reserved opcode").to_string(),
            "protocol error: reserved opcode"
        );
        assert_eq!(WsError::InvalidUtf8.to_string(), "invalid UTF-8 in text");
        assert_eq!(WsError::TooBig.to_string(), "message too big");
        assert_eq!(
            WsError::BadClose("1-byte payload").to_string(),
            "invalid close frame: 1-byte payload"
        );
    }

    #[test]
    fn opcode_round_trip() {
        for value in 0u8..=0xF {
            match OpCode::from_u8(value) {
                Some(op) => assert_eq!(op.as_u8(), value),
                None => assert!(matches!(value, 0x3..=0x7 | 0xB..=0xF), "{value}"),
            }
        }
        assert!(OpCode::Close.is_control());
        assert!(OpCode::Ping.is_control());
        assert!(OpCode::Pong.is_control());
        assert!(!OpCode::Text.is_control());
        assert!(!OpCode::Binary.is_control());
        assert!(!OpCode::Continuation.is_control());
    }
}
