//! permessage-deflate (RFC 7692): offer negotiation, per-message compression and bounded inflation.

use crate::wire::http1::request::trim_ows;
use std::cell::RefCell;

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::WsError;

/// The empty stored block that ends every sync flush; senders strip it and
/// receivers append it again (RFC 7692 §7.2.1-2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Level 1: real-time payloads are small and latency matters more than the
/// last few percent of ratio; zlib's fast level still finds JSON repetition.
const COMPRESSION_LEVEL: u32 = 1;

/// The largest LZ77 window, 32 KiB, and the default for both directions
/// (RFC 7692 §7.1.2).
pub const WINDOW_BITS_MAX: u8 = 15;

/// The smallest window we compress with. RFC 7692 allows 8, but zlib cannot
/// produce raw DEFLATE with a 256-byte window (it refuses it, or silently uses
/// 512 bytes), so an offer demanding `server_max_window_bits=8` is declined.
pub const SERVER_WINDOW_BITS_MIN: u8 = 9;

/// Smallest step by which an inflate output buffer grows, so tiny pieces do not
/// reallocate once per byte.
const OUTPUT_GROW_BYTES_MIN: usize = 1024;

const EXTENSION: &str = "permessage-deflate";

/// Negotiated permessage-deflate parameters. `server_no_context_takeover`
/// means each server-to-client message is compressed from an empty window;
/// `client_no_context_takeover` the same for client-to-server messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// Base-2 logarithm of the window the server compresses with:
    /// `SERVER_WINDOW_BITS_MIN..=15`, 15 unless the client asked for less.
    pub server_max_window_bits: u8,
    /// Base-2 logarithm of the largest window the client compresses with:
    /// 8..=15, 15 unless the client offered a smaller value.
    pub client_max_window_bits: u8,
    /// The client offered `server_max_window_bits`, so the response must name
    /// it (§7.1.2.1).
    pub server_max_window_bits_offered: bool,
    /// The client offered `client_max_window_bits` with a value, which the
    /// response echoes; it is never sent unless offered (§7.1.2.2).
    pub client_max_window_bits_offered: bool,
}

impl Params {
    /// Both directions without context takeover and with 32 KiB windows, no
    /// window size named in the response: what a bare offer negotiates.
    pub const NO_CONTEXT_TAKEOVER: Params = Params {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: WINDOW_BITS_MAX,
        client_max_window_bits: WINDOW_BITS_MAX,
        server_max_window_bits_offered: false,
        client_max_window_bits_offered: false,
    };
}

/// Picks the first acceptable `permessage-deflate` offer from the values of
/// the request's `Sec-WebSocket-Extensions` headers (each a comma-separated
/// list of offers). `None` declines them all, and the connection proceeds
/// uncompressed.
///
/// The answer always carries both `*_no_context_takeover` parameters, so an
/// idle connection holds no compressor or inflater state: RFC 7692 §7.1.1.1
/// lets a server add `server_no_context_takeover` to any response, and
/// §7.1.1.2 lets it add `client_no_context_takeover` to any response, which
/// the client must then honour.
///
/// `server_max_window_bits=N` (§7.1.2.1) is accepted for N in 9..=15: we
/// compress with a 2^N-byte window and echo the same value, as the RFC
/// requires of a server accepting the parameter. N = 8 cannot be honoured
/// (zlib has no 256-byte raw DEFLATE window) and the response may only repeat
/// or lower the value, so such an offer is declined, as zlib-based servers do,
/// and the client's next offer is considered.
///
/// `client_max_window_bits` (§7.1.2.2) without a value is accepted and left
/// out of the response, so the client keeps 15 bits; with a value N in 8..=15
/// it is echoed, limiting the client to N. Either way we inflate with a 32 KiB
/// window, which decodes any smaller window.
///
/// An offer is declined when it has an unknown parameter, a parameter twice, a
/// value on a parameter that takes none, no value on `server_max_window_bits`,
/// or a window-bits value that is not a plain decimal 8..=15 (after unquoting).
pub fn negotiate(offers: &[&[u8]]) -> Option<Params> {
    offers
        .iter()
        .flat_map(|value| split_outside_quotes(value, b','))
        .find_map(accept_offer)
}

fn accept_offer(offer: &[u8]) -> Option<Params> {
    let mut parts = split_outside_quotes(offer, b';');
    let name = trim_ows(parts.next()?);
    if !name.eq_ignore_ascii_case(EXTENSION.as_bytes()) {
        return None;
    }
    let mut params = Params::NO_CONTEXT_TAKEOVER;
    let mut seen_server_no_context = false;
    let mut seen_client_no_context = false;
    let mut seen_server_window = false;
    let mut seen_client_window = false;
    for param in parts {
        let (key, value) = split_param(param)?;
        let seen = if key.eq_ignore_ascii_case(b"server_no_context_takeover") {
            value.is_none().then_some(&mut seen_server_no_context)?
        } else if key.eq_ignore_ascii_case(b"client_no_context_takeover") {
            value.is_none().then_some(&mut seen_client_no_context)?
        } else if key.eq_ignore_ascii_case(b"server_max_window_bits") {
            let bits = window_bits(value.as_deref()?)?;
            if bits < SERVER_WINDOW_BITS_MIN {
                return None;
            }
            params.server_max_window_bits = bits;
            params.server_max_window_bits_offered = true;
            &mut seen_server_window
        } else if key.eq_ignore_ascii_case(b"client_max_window_bits") {
            // No value means "I can honour any value you reply with"; we
            // reply with none, which leaves the client at 15 bits.
            if let Some(value) = value {
                params.client_max_window_bits = window_bits(&value)?;
                params.client_max_window_bits_offered = true;
            }
            &mut seen_client_window
        } else {
            return None;
        };
        if std::mem::replace(seen, true) {
            return None;
        }
    }
    Some(params)
}

/// A window-bits value: `%x38-39 / "1" %x30-35`, i.e. 8..=15 in decimal
/// without leading zeros or signs (RFC 7692 §7.1.2.1).
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [digit @ b'8'..=b'9'] => Some(digit - b'0'),
        [b'1', digit @ b'0'..=b'5'] => Some(10 + digit - b'0'),
        _ => None,
    }
}

/// Splits `name[=value]`, trimming whitespace and unquoting a quoted value
/// (RFC 6455 §9.1 allows quoted-string values that unescape to a token).
/// `None` for an empty name or a malformed quoted value.
fn split_param(param: &[u8]) -> Option<(&[u8], Option<Vec<u8>>)> {
    let param = trim_ows(param);
    let (key, value) = match param.iter().position(|&b| b == b'=') {
        Some(at) => (
            trim_ows(param.get(..at)?),
            Some(trim_ows(param.get(at + 1..)?)),
        ),
        None => (param, None),
    };
    if key.is_empty() {
        return None;
    }
    let value = match value {
        None => None,
        Some(raw) => Some(unquote(raw)?),
    };
    Some((key, value))
}

fn unquote(raw: &[u8]) -> Option<Vec<u8>> {
    let Some(inner) = raw.strip_prefix(b"\"") else {
        return (!raw.is_empty() && raw.iter().all(|&b| is_token_char(b))).then(|| raw.to_vec());
    };
    let inner = inner.strip_suffix(b"\"")?;
    let mut value = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if escaped || b != b'\\' {
            value.push(b);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    let token = !escaped && !value.is_empty() && value.iter().all(|&b| is_token_char(b));
    token.then_some(value)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits on `delim` except inside double quotes (with backslash escapes), so
/// a quoted value cannot smuggle in a separate offer or parameter.
fn split_outside_quotes(value: &[u8], delim: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, &b) in current.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if in_quotes && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == delim && !in_quotes {
                rest = current.get(i + 1..);
                return current.get(..i);
            }
        }
        rest = None;
        Some(current)
    })
}

/// The `Sec-WebSocket-Extensions` response value for `p`, e.g.
/// `permessage-deflate; server_no_context_takeover; client_no_context_takeover`.
/// The window sizes are named only when the client offered them.
pub fn response_header(p: &Params) -> String {
    let mut value = String::from(EXTENSION);
    if p.server_no_context_takeover {
        value.push_str("; server_no_context_takeover");
    }
    if p.client_no_context_takeover {
        value.push_str("; client_no_context_takeover");
    }
    if p.server_max_window_bits_offered {
        value.push_str("; server_max_window_bits=");
        value.push_str(&p.server_max_window_bits.to_string());
    }
    if p.client_max_window_bits_offered {
        value.push_str("; client_max_window_bits=");
        value.push_str(&p.client_max_window_bits.to_string());
    }
    value
}

/// One slot per window size from `SERVER_WINDOW_BITS_MIN` to 15.
const COMPRESSOR_SLOTS: usize = (WINDOW_BITS_MAX - SERVER_WINDOW_BITS_MIN + 1) as usize;

thread_local! {
    /// One compressor per thread (per shard) and window size, reset before
    /// each message: zlib's state for a 32 KiB window is about 256 KiB, too
    /// much to build per message or to keep per connection. Slots for window
    /// sizes no client asked for stay empty.
    static COMPRESSORS: RefCell<[Option<Compress>; COMPRESSOR_SLOTS]> =
        const { RefCell::new([const { None }; COMPRESSOR_SLOTS]) };
}

fn new_compressor(window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(COMPRESSION_LEVEL), false, window_bits)
}

/// Appends `payload` compressed as one message: raw DEFLATE from an empty
/// window of 2^`server_max_window_bits` bytes (clamped to
/// `SERVER_WINDOW_BITS_MIN..=15`; pass [`Params::server_max_window_bits`]),
/// sync-flushed, with the trailing `00 00 ff ff` removed (RFC 7692 §7.2.1).
/// No state is kept between messages, which is what
/// `server_no_context_takeover` promises. Send the result with RSV1 set on the
/// first frame.
pub fn compress(payload: &[u8], server_max_window_bits: u8, out: &mut BytesMut) {
    let bits = server_max_window_bits.clamp(SERVER_WINDOW_BITS_MIN, WINDOW_BITS_MAX);
    let start = out.len();
    let pooled = COMPRESSORS
        .try_with(|cell| {
            let Ok(mut slots) = cell.try_borrow_mut() else {
                return false;
            };
            let Some(slot) = slots.get_mut(usize::from(bits - SERVER_WINDOW_BITS_MIN)) else {
                return false;
            };
            let compressor = slot.get_or_insert_with(|| new_compressor(bits));
            compressor.reset();
            deflate_sync(compressor, payload, out)
        })
        .unwrap_or(false);
    if !pooled {
        // Thread-local unavailable (thread teardown) or the compressor failed:
        // retry with a fresh one, and fall back to stored blocks, which every
        // inflater accepts, rather than emit a broken message.
        out.truncate(start);
        let mut compressor = new_compressor(bits);
        if !deflate_sync(&mut compressor, payload, out) {
            out.truncate(start);
            put_stored(payload, out);
            return;
        }
    }
    if out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

/// Runs `payload` through `compressor` with a sync flush; false if the
/// compressor reported an error or stopped making progress.
fn deflate_sync(compressor: &mut Compress, payload: &[u8], out: &mut BytesMut) -> bool {
    let mut input = payload;
    loop {
        let start = out.len();
        // Deflate output is at most a little larger than its input.
        let room = input.len() + 64;
        out.resize(start + room, 0);
        let (in_before, out_before) = (compressor.total_in(), compressor.total_out());
        let result = match out.get_mut(start..) {
            Some(dst) => compressor.compress(input, dst, FlushCompress::Sync),
            None => return false,
        };
        let consumed = delta(compressor.total_in(), in_before);
        let produced = delta(compressor.total_out(), out_before);
        out.truncate(start + produced.min(room));
        input = input.get(consumed..).unwrap_or(&[]);
        if result.is_err() || (consumed == 0 && produced == 0) {
            return false;
        }
        // A flush is complete once it leaves output space unused.
        if input.is_empty() && produced < room {
            return true;
        }
    }
}

/// Encodes `payload` as stored (uncompressed) DEFLATE blocks followed by the
/// first byte of an empty stored block, whose remaining 4 bytes are the
/// `00 00 ff ff` the receiver appends (RFC 7692 §7.2.3.3, §7.2.3.6).
fn put_stored(payload: &[u8], out: &mut BytesMut) {
    for chunk in payload.chunks(usize::from(u16::MAX)) {
        // chunks() bounds the length to u16::MAX.
        let len = chunk.len() as u16;
        out.put_u8(0x00);
        out.put_u16_le(len);
        out.put_u16_le(!len);
        out.extend_from_slice(chunk);
    }
    out.put_u8(0x00);
}

fn delta(after: u64, before: u64) -> usize {
    usize::try_from(after.saturating_sub(before)).unwrap_or(usize::MAX)
}

/// Inflates received messages with a bound on the output.
///
/// An inflater holds a 32 KiB window plus tables (about 40 KiB), so the
/// decoder creates one per compressed message unless the peer may use context
/// takeover, in which case it must keep this one across messages.
///
/// It always inflates with a 32 KiB window, whatever `client_max_window_bits`
/// was negotiated: a DEFLATE stream made with a smaller window never refers
/// further back than that window, so the larger one decodes it unchanged.
#[derive(Debug)]
pub struct Inflater {
    inner: Decompress,
    /// A block with BFINAL set ended the DEFLATE stream; like zlib, ignore what
    /// follows in this message (RFC 7692 §7.2.3.4) and start afresh after it.
    ended: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Self {
        Inflater {
            inner: Decompress::new(false),
            ended: false,
        }
    }

    /// Inflates one complete message payload (appending `00 00 ff ff` first)
    /// onto `out`.
    ///
    /// # Errors
    /// `TooBig` as soon as `out` would grow past `max_bytes` in total (output
    /// beyond that is never buffered); `Protocol` for invalid DEFLATE data.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        self.inflate_part(payload, true, max_bytes, out)
    }

    /// Inflates the next piece of a message's payload onto `out`; `last`
    /// marks the end of the message. Lets the decoder inflate frame by frame,
    /// or as bytes arrive, so text is validated and limits enforced early.
    ///
    /// # Errors
    /// As [`inflate`](Self::inflate).
    pub fn inflate_part(
        &mut self,
        piece: &[u8],
        last: bool,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        self.feed(piece, max_bytes, out)?;
        if last {
            self.feed(&TAIL, max_bytes, out)?;
            if self.ended {
                self.reset();
            }
        }
        Ok(())
    }

    /// Forgets the window and any partial stream, for a message that must not
    /// refer to earlier ones.
    pub fn reset(&mut self) {
        self.inner.reset(false);
        self.ended = false;
    }

    fn feed(&mut self, input: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), WsError> {
        let mut input = input;
        while !self.ended {
            if out.len() > max_bytes {
                return Err(WsError::TooBig);
            }
            if out.len() == out.capacity() {
                // decompress_vec writes only into spare capacity, so growing by
                // at most one byte past the limit bounds memory to the limit and
                // still tells "exactly at the limit" from "over it".
                let room = (max_bytes - out.len()).saturating_add(1);
                let grow = out
                    .len()
                    .max(input.len().saturating_mul(2))
                    .max(OUTPUT_GROW_BYTES_MIN)
                    .min(room);
                out.reserve_exact(grow);
            }
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let result = self.inner.decompress_vec(input, out, FlushDecompress::None);
            // zlib reads on past a full output buffer through block headers, which need no
            // room, so one call can fill the buffer and then find corrupt data further on.
            // The output came first: the message is too big, however the bytes were split.
            if out.len() > max_bytes {
                return Err(WsError::TooBig);
            }
            let status = result.map_err(|_| WsError::Protocol("invalid compressed data"))?;
            let consumed = delta(self.inner.total_in(), in_before);
            let produced = delta(self.inner.total_out(), out_before);
            input = input.get(consumed..).unwrap_or(&[]);
            if status == Status::StreamEnd {
                self.ended = true;
            }
            if out.len() > max_bytes {
                return Err(WsError::TooBig);
            }
            let out_full = out.len() == out.capacity();
            if input.is_empty() && !out_full {
                break;
            }
            if consumed == 0 && produced == 0 && !out_full && !self.ended {
                // Input left and room to write, yet no progress: zlib reports
                // corrupt data as an error, so this is unreachable in practice.
                return Err(WsError::Protocol("invalid compressed data"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn compressed(payload: &[u8]) -> Vec<u8> {
        compressed_with(payload, WINDOW_BITS_MAX)
    }

    fn compressed_with(payload: &[u8], bits: u8) -> Vec<u8> {
        let mut out = BytesMut::new();
        compress(payload, bits, &mut out);
        out.to_vec()
    }

    fn inflated(payload: &[u8]) -> Result<Vec<u8>, WsError> {
        let mut out = Vec::new();
        Inflater::new().inflate(payload, 1 << 20, &mut out)?;
        Ok(out)
    }

    fn params() -> Params {
        Params::NO_CONTEXT_TAKEOVER
    }

    fn server_bits(bits: u8) -> Option<Params> {
        Some(Params {
            server_max_window_bits: bits,
            server_max_window_bits_offered: true,
            ..params()
        })
    }

    fn client_bits(bits: u8) -> Option<Params> {
        Some(Params {
            client_max_window_bits: bits,
            client_max_window_bits_offered: true,
            ..params()
        })
    }

    /// Inflates with exactly a 2^`bits`-byte window, as a client that
    /// negotiated `server_max_window_bits=bits` may.
    fn inflated_with(payload: &[u8], bits: u8) -> Vec<u8> {
        let mut inflater = Decompress::new_with_window_bits(false, bits);
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        inflater
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .expect("valid for the window");
        assert_eq!(delta(inflater.total_in(), 0), input.len());
        out
    }

    #[test]
    fn rfc_7692_hello() {
        // §7.2.3.1: "Hello" in one compressed message.
        assert_eq!(compressed(b"Hello"), HELLO);
        assert_eq!(inflated(&HELLO), Ok(b"Hello".to_vec()));
        // §7.2.3.1: the same data split over two frames.
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        inflater
            .inflate_part(&[0xf2, 0x48, 0xcd], false, 100, &mut out)
            .unwrap();
        inflater
            .inflate_part(&[0xc9, 0xc9, 0x07, 0x00], true, 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_7692_context_takeover() {
        // §7.2.3.2: the second "Hello" refers back into the first message.
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        inflater.inflate(&HELLO, 100, &mut out).unwrap();
        out.clear();
        inflater.inflate(&second, 100, &mut out).unwrap();
        assert_eq!(out, b"Hello");
        // Without the window it cannot be decoded.
        inflater.reset();
        out.clear();
        assert!(inflater.inflate(&second, 100, &mut out).is_err() || out != b"Hello");
    }

    #[test]
    fn rfc_7692_stored_and_bfinal_blocks() {
        // §7.2.3.3: a stored block.
        assert_eq!(
            inflated(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]),
            Ok(b"Hello".to_vec())
        );
        // §7.2.3.4: a block with BFINAL set; what follows is ignored.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflated(&bfinal), Ok(b"Hello".to_vec()));
        assert_eq!(inflated(&bfinal[..7]), Ok(b"Hello".to_vec()));
        // The stream ended, so the inflater starts afresh for the next message.
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        inflater.inflate(&bfinal, 100, &mut out).unwrap();
        out.clear();
        inflater.inflate(&HELLO, 100, &mut out).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn empty_message() {
        // §7.2.3.6: an empty message compresses to a single 0x00 byte.
        assert_eq!(inflated(&[0x00]), Ok(Vec::new()));
        assert_eq!(inflated(&compressed(b"")), Ok(Vec::new()));
    }

    #[test]
    fn round_trips_at_length_boundaries() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 200_000] {
            let text: Vec<u8> = (0..len).map(|i| b"abcdefghij"[(i * i) % 10]).collect();
            let noise: Vec<u8> = (0..len)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
                .collect();
            for payload in [text, noise] {
                let wire = compressed(&payload);
                assert!(!wire.ends_with(&TAIL), "len {len}");
                assert_eq!(inflated(&wire).unwrap(), payload, "len {len}");
            }
        }
    }

    #[test]
    fn round_trips_with_small_windows() {
        // Repetition at distances beyond 512 bytes but within 32 KiB: a 9-bit
        // compressor must not refer back to it, and a 9-bit inflater (the
        // client's) must decode the result.
        let block: Vec<u8> = (0..2000u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect();
        let payload = block.repeat(20);
        for bits in SERVER_WINDOW_BITS_MIN..=WINDOW_BITS_MAX {
            let wire = compressed_with(&payload, bits);
            assert!(!wire.ends_with(&TAIL), "bits {bits}");
            assert_eq!(inflated_with(&wire, bits), payload, "bits {bits}");
            assert_eq!(inflated(&wire).unwrap(), payload, "bits {bits}");
            assert_eq!(compressed_with(b"Hello", bits), HELLO, "bits {bits}");
        }
        // A 9-bit window cannot see the repeats; 15 bits can.
        assert!(compressed_with(&payload, 9).len() > payload.len() / 2);
        assert!(compressed_with(&payload, 15).len() < payload.len() / 10);
        // Out-of-range sizes are clamped rather than panicking.
        assert_eq!(compressed_with(&payload, 8), compressed_with(&payload, 9));
        assert_eq!(compressed_with(&payload, 0), compressed_with(&payload, 9));
        assert_eq!(
            compressed_with(&payload, 200),
            compressed_with(&payload, 15)
        );
        // Alternating window sizes on one thread use separate compressors.
        let json = br#"{"type":"publish","path":"/a/b","data":"hello hello hello"}"#.repeat(40);
        let first = compressed_with(&json, 9);
        assert_eq!(inflated_with(&compressed_with(&json, 15), 15), json);
        assert_eq!(compressed_with(&json, 9), first);
        assert_eq!(inflated_with(&first, 9), json);
    }

    #[test]
    fn compression_keeps_no_state_between_messages() {
        let first = compressed(b"Hello");
        assert_eq!(compressed(b"Hello"), first);
        // Each message inflates on its own, with a fresh inflater.
        assert_eq!(inflated(&compressed(b"Hello")), Ok(b"Hello".to_vec()));
    }

    #[test]
    fn stored_fallback_round_trips() {
        for len in [0usize, 1, 65535, 65536, 140_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = BytesMut::new();
            put_stored(&payload, &mut out);
            assert_eq!(inflated(&out).unwrap(), payload, "len {len}");
        }
        let mut out = BytesMut::new();
        put_stored(b"Hello", &mut out);
        assert_eq!(
            &out[..],
            &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]
        );
    }

    #[test]
    fn inflation_is_bounded() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = compressed(&zeros);
        // zlib's level 1 emits static-Huffman blocks: about 10 KiB for 1 MiB.
        assert!(bomb.len() < 16 * 1024);
        for max in [0usize, 1, 1000, (1 << 20) - 1] {
            let mut out = Vec::new();
            assert_eq!(
                Inflater::new().inflate(&bomb, max, &mut out),
                Err(WsError::TooBig),
                "max {max}"
            );
            assert!(out.len() <= max + 1 && out.capacity() <= max + 1);
        }
        let mut out = Vec::new();
        Inflater::new().inflate(&bomb, 1 << 20, &mut out).unwrap();
        assert_eq!(out.len(), 1 << 20);

        // The bound counts what `out` already holds.
        let mut out = vec![1u8; 3];
        assert_eq!(Inflater::new().inflate(&HELLO, 8, &mut out), Ok(()));
        let mut out = vec![1u8; 4];
        assert_eq!(
            Inflater::new().inflate(&HELLO, 8, &mut out),
            Err(WsError::TooBig)
        );
        let mut out = Vec::new();
        assert_eq!(Inflater::new().inflate(&HELLO, 5, &mut out), Ok(()));
        let mut out = Vec::new();
        assert_eq!(
            Inflater::new().inflate(&HELLO, 4, &mut out),
            Err(WsError::TooBig)
        );
    }

    #[test]
    fn output_past_the_limit_ahead_of_corrupt_data_is_too_big_however_it_is_split() {
        // A stored block of 513 bytes, one past the limit, then a stored block whose NLEN is
        // not the complement of LEN. Whole, zlib fills the output and reads on to the bad
        // header in the same call; found by the websocket_decoder fuzz target, which read 1002
        // whole and 1009 in pieces.
        let mut payload = vec![0x00, 0x01, 0x02, 0xfe, 0xfd];
        payload.extend_from_slice(&[b'a'; 513]);
        payload.extend_from_slice(&[0x00, 0x05, 0x00, 0x00, 0x00]);
        for step in [payload.len(), 1, 5, 512] {
            let mut inflater = Inflater::new();
            let mut out = Vec::new();
            let result = payload
                .chunks(step)
                .try_for_each(|piece| inflater.inflate_part(piece, false, 512, &mut out));
            assert_eq!(result, Err(WsError::TooBig), "step {step}");
            assert!(out.len() <= 513);
        }
    }

    #[test]
    fn inflating_in_one_byte_pieces() {
        let payload = "Hello, hello, hello! κόσμε".as_bytes().repeat(50);
        let wire = compressed(&payload);
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        for byte in &wire {
            inflater
                .inflate_part(&[*byte], false, 1 << 20, &mut out)
                .unwrap();
        }
        inflater.inflate_part(&[], true, 1 << 20, &mut out).unwrap();
        assert_eq!(out, payload);
    }

    #[test]
    fn invalid_data() {
        // BTYPE 11 is reserved.
        assert_eq!(
            inflated(&[0xff, 0xff, 0xff]),
            Err(WsError::Protocol("invalid compressed data"))
        );
        // Stored block whose NLEN is not the complement of LEN.
        assert_eq!(
            inflated(&[0x00, 0x05, 0x00, 0x00, 0x00, b'H']),
            Err(WsError::Protocol("invalid compressed data"))
        );
    }

    #[test]
    fn negotiation_table() {
        let accept = Some(params());
        let cases: Vec<(&[&[u8]], Option<Params>)> = vec![
            (&[b"permessage-deflate"], accept),
            (&[b"PerMessage-Deflate"], accept),
            (&[b"permessage-deflate; client_max_window_bits"], accept),
            (
                &[b"permessage-deflate; client_max_window_bits=15"],
                client_bits(15),
            ),
            (
                &[b"permessage-deflate; client_max_window_bits=\"15\""],
                client_bits(15),
            ),
            (
                &[b"permessage-deflate;client_max_window_bits = 15"],
                client_bits(15),
            ),
            (
                &[b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
                accept,
            ),
            (&[b"permessage-deflate; client_no_context_takeover"], accept),
            (
                &[b"permessage-deflate; client_max_window_bits=14"],
                client_bits(14),
            ),
            (
                &[b"permessage-deflate; client_max_window_bits=9"],
                client_bits(9),
            ),
            (
                &[b"permessage-deflate; client_max_window_bits=8"],
                client_bits(8),
            ),
            (&[b"permessage-deflate; client_max_window_bits=7"], None),
            (&[b"permessage-deflate; client_max_window_bits=16"], None),
            (&[b"permessage-deflate; client_max_window_bits=015"], None),
            (&[b"permessage-deflate; client_max_window_bits=+9"], None),
            (
                &[b"permessage-deflate; client_max_window_bits=\"1\\5\""],
                client_bits(15),
            ),
            (&[b"permessage-deflate; client_max_window_bits=\"\""], None),
            (&[b"permessage-deflate; server_max_window_bits=9"], server_bits(9)),
            (
                &[b"permessage-deflate; server_max_window_bits=10"],
                server_bits(10),
            ),
            (
                &[b"permessage-deflate; server_max_window_bits=12"],
                server_bits(12),
            ),
            (
                &[b"permessage-deflate; server_max_window_bits=14"],
                server_bits(14),
            ),
            (
                &[b"permessage-deflate; server_max_window_bits=15"],
                server_bits(15),
            ),
            (
                &[b"permessage-deflate; SERVER_MAX_WINDOW_BITS=\"11\""],
                server_bits(11),
            ),
            // zlib has no 256-byte raw window, and the answer may not raise it.
            (&[b"permessage-deflate; server_max_window_bits=8"], None),
            (&[b"permessage-deflate; server_max_window_bits"], None),
            (&[b"permessage-deflate; server_max_window_bits=16"], None),
            (&[b"permessage-deflate; server_max_window_bits=09"], None),
            (&[b"permessage-deflate; server_max_window_bits=x"], None),
            // What Autobahn 13.3-13.6 offer.
            (
                &[b"permessage-deflate; client_max_window_bits; server_max_window_bits=9"],
                server_bits(9),
            ),
            (
                &[b"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15"],
                server_bits(15),
            ),
            (
                &[b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"],
                Some(Params {
                    server_max_window_bits: 10,
                    server_max_window_bits_offered: true,
                    client_max_window_bits: 12,
                    client_max_window_bits_offered: true,
                    ..params()
                }),
            ),
            (&[b"permessage-deflate; server_no_context_takeover=1"], None),
            (&[b"permessage-deflate; x-unknown"], None),
            (
                &[b"permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                None,
            ),
            (
                &[b"permessage-deflate; client_max_window_bits; client_max_window_bits=15"],
                None,
            ),
            (
                &[b"permessage-deflate; client_max_window_bits; client_max_window_bits"],
                None,
            ),
            (
                &[b"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"],
                None,
            ),
            (
                &[b"permessage-deflate; server_max_window_bits=10; server_max_window_bits=12"],
                None,
            ),
            (&[b"permessage-deflate; ; client_max_window_bits"], None),
            (&[b"x-webkit-deflate-frame"], None),
            (&[b""], None),
            (&[], None),
            // The first acceptable offer wins, across list items and header lines.
            (
                &[b"permessage-deflate; server_max_window_bits=8, permessage-deflate"],
                accept,
            ),
            (
                &[b"permessage-deflate; server_max_window_bits=10, permessage-deflate"],
                server_bits(10),
            ),
            (
                &[
                    b"foo, bar",
                    b"baz; a=1, permessage-deflate; client_max_window_bits",
                ],
                accept,
            ),
            // A quoted comma or semicolon does not split an offer.
            (&[b"foo; a=\", permessage-deflate, \""], None),
            (
                &[b"permessage-deflate; client_max_window_bits=\"15; x\""],
                None,
            ),
        ];
        for (offers, expected) in cases {
            let shown: Vec<_> = offers.iter().map(|o| String::from_utf8_lossy(o)).collect();
            assert_eq!(negotiate(offers), expected, "{shown:?}");
        }
    }

    #[test]
    fn response_headers() {
        assert_eq!(
            response_header(&params()),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(
            response_header(&Params {
                client_no_context_takeover: false,
                ..params()
            }),
            "permessage-deflate; server_no_context_takeover"
        );
        assert_eq!(
            response_header(&Params {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                ..params()
            }),
            "permessage-deflate"
        );
        // Window sizes are named exactly when the client offered them.
        let answer = |offer: &[u8]| negotiate(&[offer]).map(|p| response_header(&p));
        assert_eq!(
            answer(b"permessage-deflate; client_max_window_bits; server_max_window_bits=9").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9")
        );
        assert_eq!(
            answer(b"permessage-deflate; server_max_window_bits=15").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15")
        );
        assert_eq!(
            answer(b"permessage-deflate; client_max_window_bits=10").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10")
        );
        assert_eq!(
            answer(b"permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(
            answer(b"permessage-deflate; server_max_window_bits=12; client_max_window_bits=\"9\"").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=9")
        );
    }
}
