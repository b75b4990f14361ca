//! WebSocket close payloads (`wire::websocket::close`): what a peer's close frame carries, and
//! the router's own close frames.
//!
//! Input: a close frame's payload (already unmasked). A payload that validates is encoded again
//! with `put_close` and `put_masked_close`, which must give it back; decoding the masked frame
//! as the router does must give the same code and reason. Input that is UTF-8 is also tried as
//! a reason of any length, which `put_close` cuts to fit a control frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::websocket::close::{
    is_valid_code_from_server, is_valid_received_code, validate_close_payload_from_server,
    REASON_BYTES_MAX,
};
use router::wire::websocket::frame::CONTROL_PAYLOAD_BYTES_MAX;
use router::wire::websocket::{
    parse_header, put_close, put_masked_close, validate_close_payload, Decoder, Message, Role,
};
use router_fuzz::websocket_limits;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fuzz_target!(|data: &[u8]| {
    let from_client = validate_close_payload(data);
    let from_server = validate_close_payload_from_server(data);
    match (&from_client, &from_server) {
        // Whatever a client may send, a server may send too.
        (Ok(client), Ok(server)) => assert_eq!(client, server),
        (Err(_), Ok(Some((code, _)))) => assert!(!is_valid_received_code(*code)),
        // The code is checked before the reason, so a code only servers may send is what a
        // client's payload fails on first.
        (Err(a), Err(b)) if a != b => {
            assert!(matches!(data, [0x03, 0xf4..=0xf6, ..]), "{a:?} / {b:?}")
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("a client's close payload refused from a server: {e:?}"),
        (Err(_), Ok(None)) => panic!("empty payload refused from a client"),
    }
    if let Ok(Some((code, reason))) = &from_server {
        assert!(data.len() <= CONTROL_PAYLOAD_BYTES_MAX);
        assert!(is_valid_code_from_server(*code));
        assert_eq!(data.get(..2), Some(&code.to_be_bytes()[..]));
        assert_eq!(data.get(2..), Some(reason.as_bytes()));

        let mut frame = BytesMut::new();
        put_close(&mut frame, *code, reason);
        assert_eq!(payload_of(&frame), data);

        let mut frame = BytesMut::new();
        put_masked_close(&mut frame, *code, reason, MASK);
        let mut decoder = Decoder::new(Role::Server, websocket_limits(), None);
        let decoded = decoder.decode(&mut frame);
        match &from_client {
            Ok(expected) => assert_eq!(decoded, Ok(Some(Message::Close(expected.clone())))),
            Err(e) => assert_eq!(decoded, Err(*e)),
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let mut frame = BytesMut::new();
        put_close(&mut frame, 1000, text);
        let payload = payload_of(&frame);
        let (code, reason) = payload.split_at(2);
        assert_eq!(code, &1000u16.to_be_bytes());
        // The longest prefix that fits, cut at a character boundary.
        let fits = (0..=text.len().min(REASON_BYTES_MAX))
            .rev()
            .find(|&end| text.is_char_boundary(end))
            .unwrap_or(0);
        assert_eq!(reason, &text.as_bytes()[..fits]);
    }
});

/// The payload of the one unmasked close frame in `frame`.
fn payload_of(frame: &[u8]) -> &[u8] {
    let header = parse_header(frame)
        .expect("the router writes valid frames")
        .expect("the header is complete");
    assert_eq!(frame.len(), header.header_len + header.payload_len as usize);
    &frame[header.header_len..]
}
