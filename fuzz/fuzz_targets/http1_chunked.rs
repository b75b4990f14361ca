//! Chunked request bodies (`wire::http1::chunked::ChunkedDecoder`).
//!
//! Input: one byte choosing the piece size the body arrives in (1 to 256 bytes), then the bytes
//! after a `Transfer-Encoding: chunked` head. The body is decoded whole and in pieces, with the
//! router's default `body_bytes_max` and with a 64-byte one.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::http1::{ChunkedDecoder, Decoded, HttpError};
use router_fuzz::{http_limits, pieces, take_byte};

fuzz_target!(|data: &[u8]| {
    let Some((step, body)) = take_byte(data) else {
        return;
    };
    for body_bytes_max in [http_limits().body_bytes_max, 64] {
        let whole = decode(body, body.len(), body_bytes_max);
        let split = decode(body, usize::from(step) + 1, body_bytes_max);
        assert_eq!(whole, split, "the answer depends on how the body was split");
        if let Outcome::Done { decoded, rest } = &whole {
            // Framing only ever removes bytes, and never more than the limit is kept.
            assert!(decoded.len() + rest.len() <= body.len());
            assert!(decoded.len() <= body_bytes_max);
        }
    }
});

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The body ended; `rest` was left in the buffer for the next request.
    Done {
        decoded: Vec<u8>,
        rest: Vec<u8>,
    },
    /// Every byte was consumed and the body has not ended.
    NeedMore {
        decoded: Vec<u8>,
    },
    Failed(HttpError),
}

/// Feeds `body` in pieces of `step` bytes as the connection loop does: each read appends to the
/// buffer the decoder consumes from.
fn decode(body: &[u8], step: usize, body_bytes_max: usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new(body_bytes_max);
    let mut src = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0;
    for piece in pieces(body, step) {
        src.extend_from_slice(piece);
        fed += piece.len();
        match decoder.decode(&mut src, &mut out) {
            Ok(Decoded::Done) => {
                // The decoder stops at the end of the body: what it left in the buffer and
                // what was never fed follow it.
                let consumed = fed - src.len();
                return Outcome::Done {
                    decoded: out.to_vec(),
                    rest: body.get(consumed..).unwrap_or_default().to_vec(),
                };
            }
            Ok(Decoded::NeedMore) => assert!(src.is_empty(), "NeedMore with bytes left"),
            Err(e) => return Outcome::Failed(e),
        }
    }
    Outcome::NeedMore {
        decoded: out.to_vec(),
    }
}
