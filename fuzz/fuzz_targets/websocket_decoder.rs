//! The WebSocket message decoder (`wire::websocket::decoder::Decoder`), with permessage-deflate.
//!
//! Input: one steering byte, then the bytes a peer sends after the handshake. The steering
//! byte's bit 0 picks the role (0: the router decoding a client's masked frames, 1: the
//! loadgen decoding a server's), bits 1-2 the negotiated compression (none, deflate without
//! context takeover, deflate with the client's context takeover, none) and bits 3-7 the read
//! size (1 to 32 bytes). The bytes are decoded whole and in reads of that size, with the
//! router's default limits and with small ones, and both ways must give the same messages and
//! the same error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::websocket::close::{
    is_valid_code_from_server, is_valid_received_code, REASON_BYTES_MAX,
};
use router::wire::websocket::frame::CONTROL_PAYLOAD_BYTES_MAX;
use router::wire::websocket::{Decoder, Limits, Message, Params, Role, WsError};
use router_fuzz::{pieces, take_byte, websocket_limits};

const LIMITS_SMALL: Limits = Limits {
    frame_bytes_max: 128,
    message_bytes_max: 512,
};

fuzz_target!(|data: &[u8]| {
    let Some((steer, wire)) = take_byte(data) else {
        return;
    };
    let role = if steer & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let deflate = match (steer >> 1) & 0b11 {
        1 => Some(Params::NO_CONTEXT_TAKEOVER),
        2 => Some(Params {
            client_no_context_takeover: false,
            server_no_context_takeover: false,
            ..Params::NO_CONTEXT_TAKEOVER
        }),
        _ => None,
    };
    let step = usize::from(steer >> 3) + 1;
    for limits in [websocket_limits(), LIMITS_SMALL] {
        let whole = decode(wire, wire.len(), role, limits, deflate);
        let split = decode(wire, step, role, limits, deflate);
        assert_eq!(
            whole, split,
            "the answer depends on how the bytes were read"
        );
        for message in &whole.0 {
            check_message(message, role, &limits);
        }
    }
});

/// The messages decoded, and the error that ended decoding if one did.
type Outcome = (Vec<Message>, Option<WsError>);

fn decode(
    wire: &[u8],
    step: usize,
    role: Role,
    limits: Limits,
    deflate: Option<Params>,
) -> Outcome {
    let mut decoder = Decoder::new(role, limits, deflate);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in pieces(wire, step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => {
                    // A failed decoder stays failed, whatever arrives next.
                    assert_eq!(decoder.decode(&mut buf), Err(e));
                    assert!(!decoder.in_message(), "a failed decoder holds a message");
                    return (messages, Some(e));
                }
            }
        }
    }
    (messages, None)
}

fn check_message(message: &Message, role: Role, limits: &Limits) {
    match message {
        Message::Text(text) => {
            assert!(std::str::from_utf8(text).is_ok(), "text that is not UTF-8");
            assert!(text.len() <= limits.message_bytes_max);
        }
        Message::Binary(bytes) => assert!(bytes.len() <= limits.message_bytes_max),
        Message::Ping(payload) | Message::Pong(payload) => {
            assert!(payload.len() <= CONTROL_PAYLOAD_BYTES_MAX)
        }
        Message::Close(Some((code, reason))) => {
            let valid = match role {
                Role::Server => is_valid_received_code(*code),
                Role::Client => is_valid_code_from_server(*code),
            };
            assert!(valid, "close code {code} may not be received");
            assert!(reason.len() <= REASON_BYTES_MAX);
        }
        Message::Close(None) => {}
    }
}
