//! Parses and encodes WebSocket frame headers (RFC 6455 §5.2), rejecting reserved bits, opcodes and non-minimal lengths.

use bytes::{BufMut, BytesMut};

use super::mask::apply_mask;
use super::{OpCode, WsError};

/// Largest payload a control frame may carry (RFC 6455 §5.5).
pub const CONTROL_PAYLOAD_BYTES_MAX: usize = 125;

/// Longest possible header: 2 fixed bytes, 8 length bytes, 4 mask bytes.
pub const HEADER_BYTES_MAX: usize = 14;

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV2: u8 = 0x20;
const RSV3: u8 = 0x10;
const OPCODE: u8 = 0x0F;
const MASKED: u8 = 0x80;
const LEN7: u8 = 0x7F;
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;

/// A parsed frame header. The payload follows at `header_len` and is
/// `payload_len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// Set on the first frame of a compressed message (RFC 7692 §6); whether it
    /// is allowed depends on the negotiated extensions, so the decoder decides.
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    /// At most 2^63 - 1 (the MSB of a 64-bit length must be 0).
    pub payload_len: u64,
    /// Bytes of header, 2 to 14.
    pub header_len: usize,
}

/// Parses the frame header at the start of `buf`. `Ok(None)` means more bytes
/// are needed; nothing is consumed either way.
///
/// # Errors
/// `Protocol` for RSV2 or RSV3 set (no extension we negotiate defines them),
/// reserved opcodes, fragmented control frames, control frames over 125 bytes,
/// non-minimal length encodings (§5.2: "the minimal number of bytes MUST be
/// used") and 64-bit lengths with the most significant bit set. Each is
/// reported as soon as the bytes that show it have arrived.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, WsError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    if b0 & (RSV2 | RSV3) != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    let opcode = OpCode::from_u8(b0 & OPCODE).ok_or(WsError::Protocol("reserved opcode"))?;
    let fin = b0 & FIN != 0;
    if opcode.is_control() && !fin {
        return Err(WsError::Protocol("fragmented control frame"));
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & MASKED != 0;
    let len7 = b1 & LEN7;
    if opcode.is_control() && usize::from(len7) > CONTROL_PAYLOAD_BYTES_MAX {
        return Err(WsError::Protocol("control frame too long"));
    }

    let (payload_len, len_bytes) = match len7 {
        LEN_16 => {
            let Some(&[hi, lo]) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u16::from_be_bytes([hi, lo]);
            if len < u16::from(LEN_16) {
                return Err(WsError::Protocol("non-minimal frame length"));
            }
            (u64::from(len), 2)
        }
        LEN_64 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(WsError::Protocol("frame length has MSB set"));
            }
            if len <= u64::from(u16::MAX) {
                return Err(WsError::Protocol("non-minimal frame length"));
            }
            (len, 8)
        }
        short => (u64::from(short), 0),
    };

    let mask_at = 2 + len_bytes;
    let (mask, header_len) = if masked {
        let Some(&[k0, k1, k2, k3]) = buf.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        (Some([k0, k1, k2, k3]), mask_at + 4)
    } else {
        (None, mask_at)
    };

    Ok(Some(FrameHeader {
        fin,
        rsv1: b0 & RSV1 != 0,
        opcode,
        mask,
        payload_len,
        header_len,
    }))
}

/// Header bytes of an unmasked (server-to-client) frame carrying
/// `payload_len` bytes: 2, 4 or 10. A masked frame's header is 4 bytes longer.
pub fn header_len_for(payload_len: usize) -> usize {
    if payload_len <= 125 {
        2
    } else if payload_len <= usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

/// Appends an unmasked frame header for a payload of `payload_len` bytes, for
/// callers that write a shared payload separately (e.g. with vectored writes).
///
/// Control frames must have `fin` set and at most 125 bytes; that is the
/// caller's invariant, checked only in debug builds.
pub fn put_header(out: &mut BytesMut, opcode: OpCode, fin: bool, rsv1: bool, payload_len: usize) {
    write_header(out, opcode, fin, rsv1, None, payload_len);
}

/// Appends a complete server-to-client (unmasked) frame. Same invariants as [`put_header`].
pub fn put_frame(out: &mut BytesMut, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) {
    out.reserve(header_len_for(payload.len()) + payload.len());
    write_header(out, opcode, fin, rsv1, None, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a complete client-to-server frame, masked with `mask`. Clients must
/// pick a fresh unpredictable mask per frame (RFC 6455 §5.3). Same invariants
/// as [`put_header`].
pub fn put_masked_frame(
    out: &mut BytesMut,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    mask: [u8; 4],
    payload: &[u8],
) {
    out.reserve(header_len_for(payload.len()) + 4 + payload.len());
    write_header(out, opcode, fin, rsv1, Some(mask), payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(tail) = out.get_mut(start..) {
        apply_mask(tail, mask, 0);
    }
}

fn write_header(
    out: &mut BytesMut,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    mask: Option<[u8; 4]>,
    payload_len: usize,
) {
    debug_assert!(
        !opcode.is_control() || (fin && payload_len <= CONTROL_PAYLOAD_BYTES_MAX),
        "control frames are unfragmented and at most 125 bytes"
    );
    let mut b0 = opcode.as_u8();
    if fin {
        b0 |= FIN;
    }
    if rsv1 {
        b0 |= RSV1;
    }
    let mask_bit = if mask.is_some() { MASKED } else { 0 };
    out.put_u8(b0);
    match header_len_for(payload_len) {
        // The match arms bound payload_len, so these casts never truncate.
        2 => out.put_u8(mask_bit | payload_len as u8),
        4 => {
            out.put_u8(mask_bit | LEN_16);
            out.put_u16(payload_len as u16);
        }
        _ => {
            out.put_u8(mask_bit | LEN_64);
            out.put_u64(payload_len as u64);
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn header(buf: &[u8]) -> FrameHeader {
        match parse_header(buf) {
            Ok(Some(h)) => h,
            other => panic!("expected header, got {other:?}"),
        }
    }

    fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame(&mut out, opcode, fin, false, payload);
        out.to_vec()
    }

    fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_masked_frame(&mut out, opcode, fin, false, MASK, payload);
        out.to_vec()
    }

    #[test]
    fn rfc_6455_section_5_7_examples() {
        let hello_unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(frame(OpCode::Text, true, b"Hello"), hello_unmasked);
        let h = header(&hello_unmasked);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv1: false,
                opcode: OpCode::Text,
                mask: None,
                payload_len: 5,
                header_len: 2,
            }
        );

        let hello_masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(masked(OpCode::Text, true, b"Hello"), hello_masked);
        let h = header(&hello_masked);
        assert_eq!(h.mask, Some(MASK));
        assert_eq!((h.payload_len, h.header_len), (5, 6));

        // Fragmented unmasked text: "Hel" then "lo".
        assert_eq!(
            frame(OpCode::Text, false, b"Hel"),
            [0x01, 0x03, 0x48, 0x65, 0x6c]
        );
        assert_eq!(
            frame(OpCode::Continuation, true, b"lo"),
            [0x80, 0x02, 0x6c, 0x6f]
        );
        let first = header(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!first.fin);
        assert_eq!(first.opcode, OpCode::Text);
        assert_eq!(header(&[0x80, 0x02]).opcode, OpCode::Continuation);

        // Unmasked ping, masked pong, both "Hello".
        assert_eq!(
            frame(OpCode::Ping, true, b"Hello"),
            [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            masked(OpCode::Pong, true, b"Hello"),
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );

        // 256 bytes and 64 KiB binary, unmasked.
        let big = frame(OpCode::Binary, true, &[0u8; 256]);
        assert_eq!(big[..4], [0x82, 0x7E, 0x01, 0x00]);
        let huge = frame(OpCode::Binary, true, &vec![0u8; 65536]);
        assert_eq!(
            huge[..10],
            [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
    }

    #[test]
    fn length_boundaries_both_ways() {
        for (len, header_len, len7) in [
            (0usize, 2usize, 0u8),
            (1, 2, 1),
            (125, 2, 125),
            (126, 4, 126),
            (127, 4, 126),
            (65535, 4, 126),
            (65536, 10, 127),
            (65537, 10, 127),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(header_len_for(len), header_len, "len {len}");

            let wire = frame(OpCode::Binary, true, &payload);
            assert_eq!(wire.len(), header_len + len);
            assert_eq!(wire[1], len7);
            let h = header(&wire);
            assert_eq!((h.payload_len, h.header_len), (len as u64, header_len));
            assert_eq!(&wire[header_len..], &payload[..]);

            let wire = masked(OpCode::Binary, true, &payload);
            assert_eq!(wire.len(), header_len + 4 + len);
            assert_eq!(wire[1], 0x80 | len7);
            let h = header(&wire);
            assert_eq!(
                (h.payload_len, h.header_len, h.mask),
                (len as u64, header_len + 4, Some(MASK))
            );
            let mut body = wire[header_len + 4..].to_vec();
            apply_mask(&mut body, MASK, 0);
            assert_eq!(body, payload);

            // put_header writes the same bytes as put_frame minus the payload.
            let mut out = BytesMut::new();
            put_header(&mut out, OpCode::Binary, true, false, len);
            assert_eq!(
                &out[..],
                &frame(OpCode::Binary, true, &payload)[..header_len]
            );
        }
    }

    #[test]
    fn max_length() {
        let max = (1u64 << 63) - 1;
        let mut wire = vec![0x82, 0x7F];
        wire.extend_from_slice(&max.to_be_bytes());
        let h = header(&wire);
        assert_eq!((h.payload_len, h.header_len), (max, 10));

        let mut wire = vec![0x82, 0xFF];
        wire.extend_from_slice(&max.to_be_bytes());
        wire.extend_from_slice(&MASK);
        let h = header(&wire);
        assert_eq!((h.payload_len, h.header_len), (max, 14));

        let mut wire = vec![0x82, 0x7F];
        wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(
            parse_header(&wire),
            Err(WsError::Protocol("frame length has MSB set"))
        );
        wire[2] = 0xFF;
        assert_eq!(
            parse_header(&wire),
            Err(WsError::Protocol("frame length has MSB set"))
        );
    }

    #[test]
    fn non_minimal_lengths_rejected() {
        let non_minimal = WsError::Protocol("non-minimal frame length");
        assert_eq!(parse_header(&[0x82, 126, 0, 0]), Err(non_minimal));
        assert_eq!(parse_header(&[0x82, 126, 0, 125]), Err(non_minimal));
        assert!(parse_header(&[0x82, 126, 0, 126]).unwrap().is_some());
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&65535u64.to_be_bytes());
        assert_eq!(parse_header(&wire), Err(non_minimal));
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(parse_header(&wire), Err(non_minimal));
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&65536u64.to_be_bytes());
        assert_eq!(header(&wire).payload_len, 65536);
    }

    #[test]
    fn every_prefix_needs_more() {
        let mut wire = vec![0x82, 0xFF];
        wire.extend_from_slice(&70000u64.to_be_bytes());
        wire.extend_from_slice(&MASK);
        for end in 0..wire.len() {
            assert_eq!(parse_header(&wire[..end]), Ok(None), "prefix {end}");
        }
        assert_eq!(header(&wire).header_len, 14);
        for wire in [
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d][..],
            &[0x82, 0x7E, 0x01, 0x00],
        ] {
            for end in 0..wire.len() {
                assert_eq!(parse_header(&wire[..end]), Ok(None));
            }
            assert_eq!(header(wire).header_len, wire.len());
        }
    }

    #[test]
    fn reserved_bits_and_opcodes() {
        assert_eq!(
            parse_header(&[0x80 | 0x20 | 0x1]),
            Err(WsError::Protocol("reserved bits set"))
        );
        assert_eq!(
            parse_header(&[0x80 | 0x10 | 0x1, 0x00]),
            Err(WsError::Protocol("reserved bits set"))
        );
        // RSV1 is left to the decoder, which knows whether deflate was negotiated.
        assert!(header(&[0xC1, 0x00]).rsv1);
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(
                parse_header(&[0x80 | op]),
                Err(WsError::Protocol("reserved opcode")),
                "opcode {op:#x}"
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        for op in [0x8u8, 0x9, 0xA] {
            assert_eq!(
                parse_header(&[op]),
                Err(WsError::Protocol("fragmented control frame"))
            );
            assert_eq!(header(&[0x80 | op, 125]).payload_len, 125);
            assert_eq!(
                parse_header(&[0x80 | op, 126]),
                Err(WsError::Protocol("control frame too long"))
            );
            assert_eq!(
                parse_header(&[0x80 | op, 0x80 | 127]),
                Err(WsError::Protocol("control frame too long"))
            );
        }
    }

    #[test]
    fn flags_round_trip() {
        let mut out = BytesMut::new();
        put_frame(&mut out, OpCode::Text, false, true, b"x");
        assert_eq!(&out[..], &[0x41, 0x01, b'x']);
        let h = header(&out);
        assert!(!h.fin && h.rsv1);
        let mut out = BytesMut::new();
        put_masked_frame(&mut out, OpCode::Binary, true, true, [1, 2, 3, 4], b"");
        assert_eq!(&out[..], &[0xC2, 0x80, 1, 2, 3, 4]);
    }
}
