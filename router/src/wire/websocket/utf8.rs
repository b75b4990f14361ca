//! Incremental UTF-8 validation that fails on the first byte no valid continuation could follow.

use super::WsError;

/// Validates text that arrives in pieces (frames, or parts of a frame).
///
/// Invalid input is reported by the `feed` call that delivers the offending
/// byte, even when the sequence it breaks started in an earlier piece; a
/// sequence still incomplete at the end of the message is reported by
/// [`finish`](Self::finish). Only up to 3 bytes of an unfinished sequence are
/// carried between pieces, so the state is `Copy` and allocation-free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the text.
    ///
    /// # Errors
    /// `InvalidUtf8` as soon as `bytes` contains a byte that cannot be part of
    /// valid UTF-8 given everything fed before it (overlong forms, surrogates,
    /// code points above U+10FFFF and stray continuation bytes included).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        let mut rest = bytes;
        // Finish the sequence carried over from the previous piece one byte at
        // a time; it needs at most 3 more bytes.
        while self.partial_len > 0 {
            let Some((&byte, tail)) = rest.split_first() else {
                return Ok(());
            };
            rest = tail;
            let len = usize::from(self.partial_len);
            let Some(slot) = self.partial.get_mut(len) else {
                return Err(WsError::InvalidUtf8);
            };
            *slot = byte;
            let candidate = self.partial.get(..=len).unwrap_or(&[]);
            match std::str::from_utf8(candidate) {
                Ok(_) => self.partial_len = 0,
                // `error_len() == None` means "valid so far, truncated": std's
                // decoder checks each byte against the lead byte's allowed
                // ranges, so any impossible byte yields Some(_) right away.
                Err(e) if e.error_len().is_none() => self.partial_len += 1,
                Err(_) => return Err(WsError::InvalidUtf8),
            }
        }

        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(WsError::InvalidUtf8),
            Err(e) => {
                // A truncated (but so far valid) sequence of 1-3 bytes ends the piece.
                let tail = rest.get(e.valid_up_to()..).unwrap_or(&[]);
                let slot = self
                    .partial
                    .get_mut(..tail.len())
                    .ok_or(WsError::InvalidUtf8)?;
                slot.copy_from_slice(tail);
                self.partial_len = u8::try_from(tail.len()).map_err(|_| WsError::InvalidUtf8)?;
                Ok(())
            }
        }
    }

    /// Ends the text and resets the validator for the next message.
    ///
    /// # Errors
    /// `InvalidUtf8` if the text ended inside a multi-byte sequence.
    pub fn finish(&mut self) -> Result<(), WsError> {
        let complete = self.partial_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(WsError::InvalidUtf8)
        }
    }

    /// Forgets any carried partial sequence.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_in_pieces(pieces: &[&[u8]]) -> Result<(), WsError> {
        let mut v = Utf8Validator::new();
        for piece in pieces {
            v.feed(piece)?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_split_at_every_position() {
        let text = "a\u{7f}\u{80}\u{7ff}\u{800}\u{d7ff}\u{e000}\u{fffd}\u{ffff}\u{10000}\u{10ffff} κόσμε 🎉".as_bytes();
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(validate_in_pieces(&[a, b]), Ok(()), "cut {cut}");
        }
        for cut1 in 0..=text.len() {
            for cut2 in cut1..=text.len() {
                let pieces = [&text[..cut1], &text[cut1..cut2], &text[cut2..]];
                assert_eq!(validate_in_pieces(&pieces), Ok(()));
            }
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(validate_in_pieces(&bytes), Ok(()));
        assert_eq!(validate_in_pieces(&[]), Ok(()));
        assert_eq!(validate_in_pieces(&[b""]), Ok(()));
    }

    #[test]
    fn four_byte_sequence_across_four_pieces() {
        let mut v = Utf8Validator::new();
        for byte in [0xF0u8, 0x9F, 0x8E, 0x89] {
            assert_eq!(v.feed(&[byte]), Ok(()));
        }
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn fails_on_the_first_impossible_byte() {
        // Each prefix is valid; adding the last byte makes it invalid.
        let cases: [(&[u8], &[u8]); 12] = [
            (b"", &[0x80]),              // stray continuation
            (b"", &[0xC0]),              // overlong lead
            (b"", &[0xC1]),              // overlong lead
            (b"", &[0xF5]),              // beyond U+10FFFF
            (b"", &[0xFF]),              // never valid
            (&[0xE0], &[0x80]),          // overlong 3-byte
            (&[0xED], &[0xA0]),          // surrogate
            (&[0xF0], &[0x80]),          // overlong 4-byte
            (&[0xF4], &[0x90]),          // beyond U+10FFFF
            (&[0xC2], &[0x41]),          // missing continuation
            (&[0xE2, 0x82], &[0x41]),    // missing continuation
            (&[0xF0, 0x9F, 0x8E], b"x"), // missing continuation
        ];
        for (good, bad) in cases {
            // As separate pieces: the good prefix passes, the bad byte fails at once.
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(b"ok"), Ok(()));
            assert_eq!(v.feed(good), Ok(()), "{good:x?}");
            assert_eq!(v.feed(bad), Err(WsError::InvalidUtf8), "{good:x?} {bad:x?}");
            // In one piece, followed by more text.
            let mut joined = good.to_vec();
            joined.extend_from_slice(bad);
            joined.extend_from_slice(b"tail");
            assert_eq!(
                Utf8Validator::new().feed(&joined),
                Err(WsError::InvalidUtf8)
            );
        }
    }

    #[test]
    fn autobahn_6_4_fragment_with_invalid_code_point() {
        // κόσμε, then a fragment starting with U+110000's encoding, then more text.
        let mut v = Utf8Validator::new();
        assert_eq!(
            v.feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
            Ok(())
        );
        assert_eq!(v.feed(b"\xf4\x90\x80\x80"), Err(WsError::InvalidUtf8));
        // Split inside the bad sequence: fails at the second byte.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xce\xba\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn truncated_final_sequence() {
        for tail in [&[0xC2u8][..], &[0xE2, 0x82], &[0xF0, 0x9F, 0x8E]] {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(b"abc"), Ok(()));
            assert_eq!(v.feed(tail), Ok(()));
            assert_eq!(v.finish(), Err(WsError::InvalidUtf8), "{tail:x?}");
            // finish resets, so the validator is reusable.
            assert_eq!(v.feed(b"next"), Ok(()));
            assert_eq!(v.finish(), Ok(()));
        }
    }

    #[test]
    fn reset_forgets_partial() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xE2]), Ok(()));
        v.reset();
        assert_eq!(v.feed(b"a"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
