//! WebSocket frame headers (`wire::websocket::frame::parse_header`).
//!
//! Input: the bytes at the start of a frame. A header that parses is written again with the
//! router's encoder and must come out byte for byte as it went in (the parser refuses every
//! non-minimal length, so there is one encoding), and each shorter prefix asks for more bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::websocket::frame::{CONTROL_PAYLOAD_BYTES_MAX, HEADER_BYTES_MAX};
use router::wire::websocket::{parse_header, put_header, WsError};

fuzz_target!(|data: &[u8]| {
    let header = match parse_header(data) {
        Ok(Some(header)) => header,
        Ok(None) => {
            assert!(
                data.len() < HEADER_BYTES_MAX,
                "more bytes asked for after 14"
            );
            return;
        }
        Err(e) => {
            assert!(matches!(e, WsError::Protocol(_)), "{e:?}");
            assert_eq!(e.close_code(), 1002);
            return;
        }
    };
    assert!((2..=HEADER_BYTES_MAX).contains(&header.header_len));
    let wire = data
        .get(..header.header_len)
        .expect("header_len is within the input");
    assert!(header.payload_len >> 63 == 0);
    if header.opcode.is_control() {
        assert!(header.fin);
        assert!(header.payload_len <= CONTROL_PAYLOAD_BYTES_MAX as u64);
    }

    let Ok(payload_len) = usize::try_from(header.payload_len) else {
        return;
    };
    let mut out = BytesMut::new();
    put_header(
        &mut out,
        header.opcode,
        header.fin,
        header.rsv1,
        payload_len,
    );
    if let Some(mask) = header.mask {
        if let Some(b1) = out.get_mut(1) {
            *b1 |= 0x80;
        }
        out.extend_from_slice(&mask);
    }
    assert_eq!(&out[..], wire, "re-encoded header differs");

    for end in 0..header.header_len {
        assert_eq!(
            parse_header(&data[..end]),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
});
