//! The WebSocket opening handshake (`wire::websocket::handshake`) and the permessage-deflate
//! negotiation it runs (`wire::websocket::deflate::negotiate`).
//!
//! Input: a request head as a client sends it. A head that parses is validated as an upgrade
//! with compression enabled and disabled; an accepted upgrade's response is written, and the
//! negotiated `Sec-WebSocket-Extensions` answer, offered again, must negotiate the same
//! parameters.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::http1::request::trim_ows;
use router::wire::http1::{parse_head, Status};
use router::wire::websocket::deflate::{negotiate, response_header};
use router::wire::websocket::handshake::{accept_key, is_upgrade, put_response, validate};
use router_fuzz::http_limits;

fuzz_target!(|data: &[u8]| {
    let Ok(Status::Complete(head)) = parse_head(data, &http_limits()) else {
        return;
    };
    let plain = validate(&head, false);
    let deflating = validate(&head, true);
    match (&plain, &deflating) {
        (Ok(plain), Ok(deflating)) => {
            assert!(is_upgrade(&head));
            assert_eq!(plain.deflate, None);
            assert_eq!(plain.accept, deflating.accept);
            let key = head
                .header("sec-websocket-key")
                .expect("an accepted upgrade has a key");
            assert_eq!(plain.accept, accept_key(trim_ows(key)));
            assert_eq!(plain.accept.len(), 28);
            if let Some(params) = deflating.deflate {
                let answer = response_header(&params);
                assert_eq!(negotiate(&[answer.as_bytes()]), Some(params), "{answer}");
            }
            let mut out = BytesMut::new();
            put_response(&mut out, deflating);
            assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            // One head, nothing after it: the frames follow.
            let end = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("the response head ends");
            assert_eq!(end + 4, out.len());
        }
        (Err(a), Err(b)) => {
            // Compression is negotiated last and never refuses an upgrade.
            assert_eq!(a, b);
            assert!(matches!(a.status(), 400 | 426));
        }
        _ => panic!("enabling compression changed the answer: {plain:?} / {deflating:?}"),
    }
});
