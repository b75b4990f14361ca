//! XOR masking of frame payloads (RFC 6455 §5.3), eight bytes at a time, resumable at any offset.

/// XORs `buf` with `mask` in place, as if `buf` started `offset` bytes into the
/// payload. Masking is its own inverse, so this both masks and unmasks; the
/// offset lets a payload that arrives in pieces be unmasked piece by piece.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate the key so that key[0] applies to buf[0]; after that every
    // 8-byte chunk starts at the same key phase.
    let mut key = mask;
    key.rotate_left(offset % 4);
    let [k0, k1, k2, k3] = key;
    let key_word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);

    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // chunks_exact_mut yields exactly 8 bytes, so the conversion always
        // succeeds and compiles to a plain load; the branch is optimised away.
        if let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) {
            let word = u64::from_ne_bytes(bytes) ^ key_word;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
    }
    // Chunks are a multiple of 4 bytes long, so the tail starts at key phase 0.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= mask[(offset + i) % 4];
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc_6455_example() {
        // §5.7: "Hello" masked with 37 fa 21 3d.
        let mut buf = *b"Hello";
        apply_mask(&mut buf, MASK, 0);
        assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut buf, MASK, 0);
        assert_eq!(&buf, b"Hello");
    }

    #[test]
    fn matches_naive_at_every_offset_and_length() {
        let lengths = (0..=70).chain([125, 126, 127, 1023, 1024, 1025, 65535, 65536]);
        for len in lengths {
            for offset in 0..8 {
                let mut fast = pattern(len);
                let mut slow = fast.clone();
                apply_mask(&mut fast, MASK, offset);
                naive(&mut slow, MASK, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn large_offsets_only_use_their_phase() {
        let mut a = pattern(33);
        let mut b = a.clone();
        apply_mask(&mut a, MASK, usize::MAX);
        naive(&mut b, MASK, usize::MAX % 4);
        assert_eq!(a, b);
    }

    #[test]
    fn unmasking_in_pieces_equals_whole() {
        let payload = pattern(1000);
        let mut whole = payload.clone();
        apply_mask(&mut whole, MASK, 0);
        for split_len in [1, 2, 3, 5, 7, 8, 9, 13, 64, 999] {
            let mut pieces = payload.clone();
            let mut offset = 0;
            for piece in pieces.chunks_mut(split_len) {
                apply_mask(piece, MASK, offset);
                offset += piece.len();
            }
            assert_eq!(pieces, whole, "pieces of {split_len}");
        }
    }

    #[test]
    fn zero_mask_is_identity() {
        let mut buf = pattern(17);
        apply_mask(&mut buf, [0; 4], 3);
        assert_eq!(buf, pattern(17));
    }
}
