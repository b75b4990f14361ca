//! permessage-deflate (`wire::websocket::deflate`): bounded inflation of what a peer sends, and
//! the router's own compression.
//!
//! Input: one steering byte (bits 0-4: the piece size, 1 to 32 bytes; bits 5-7: the window bits
//! the router compresses with, 9 to 15), then bytes. The bytes are inflated as a compressed
//! message, whole and in pieces, which must agree; and compressed, which must inflate back to
//! them exactly, within a limit of their own length and not one byte less.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::websocket::deflate::{compress, SERVER_WINDOW_BITS_MIN, WINDOW_BITS_MAX};
use router::wire::websocket::{Inflater, WsError};
use router_fuzz::{pieces, take_byte};

/// Inflation bound for arbitrary input: large enough for bombs to matter, small enough to be quick.
const INFLATE_BYTES_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((steer, bytes)) = take_byte(data) else {
        return;
    };
    let step = usize::from(steer & 0x1f) + 1;
    let window_bits = (SERVER_WINDOW_BITS_MIN + (steer >> 5)).min(WINDOW_BITS_MAX);

    let whole = inflate(bytes, bytes.len(), INFLATE_BYTES_MAX);
    let split = inflate(bytes, step, INFLATE_BYTES_MAX);
    assert_eq!(
        whole, split,
        "the answer depends on how the payload was split"
    );
    if let Ok(out) = &whole {
        assert!(out.len() <= INFLATE_BYTES_MAX);
    }

    let mut compressed = BytesMut::new();
    compress(bytes, window_bits, &mut compressed);
    assert_eq!(inflate(&compressed, step, bytes.len()), Ok(bytes.to_vec()));
    if let Some(limit) = bytes.len().checked_sub(1) {
        assert_eq!(inflate(&compressed, step, limit), Err(WsError::TooBig));
    }
});

/// Inflates one message payload fed in pieces of `step` bytes, as the decoder does frame by frame.
fn inflate(payload: &[u8], step: usize, max_bytes: usize) -> Result<Vec<u8>, WsError> {
    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    for piece in pieces(payload, step) {
        inflater.inflate_part(piece, false, max_bytes, &mut out)?;
    }
    inflater.inflate_part(&[], true, max_bytes, &mut out)?;
    Ok(out)
}
