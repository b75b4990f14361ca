//! Incremental, bounded decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).

use bytes::{Buf, BytesMut};

use super::{is_tchar, HttpError};

/// Bound on the whole trailer section (field lines plus the final empty
/// line); trailers are skipped, so this only limits how much we read.
pub const TRAILER_BYTES_MAX: usize = 8 * 1024;
/// Bound on one chunk-size line (size, whitespace and extensions, excluding
/// its CRLF); extensions are skipped, so this only limits how much we read.
pub const CHUNK_LINE_BYTES_MAX: usize = 4 * 1024;
/// Bound on the chunk extensions of a whole body (from each `;` to the end of
/// its line), so that many small chunks cannot carry unbounded extensions.
pub const CHUNK_EXT_BYTES_MAX: usize = 16 * 1024;
/// 16 hex digits already span all of u64, so longer sizes are refused rather
/// than parsed with leading zeros.
const SIZE_DIGITS_MAX: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size; `digits == 0` means none seen yet.
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size: only a `;` may follow (BWS, RFC 9112 §7.1.1).
    SizeWs {
        size: u64,
    },
    /// Inside chunk extensions, checked against their grammar and skipped.
    Ext {
        size: u64,
        at: Ext,
    },
    /// CR of the size line seen; LF must follow.
    SizeLf {
        size: u64,
    },
    /// Copying chunk data.
    Data {
        remaining: u64,
    },
    /// Chunk data finished; CR must follow.
    DataCr,
    /// CR after chunk data seen; LF must follow.
    DataLf,
    /// At the start of a trailer field line or the final empty line.
    TrailerLineStart,
    /// In a trailer field's name, before its colon.
    TrailerName,
    /// In a trailer field's value, skipped until CR.
    TrailerValue,
    /// CR of a trailer field line seen; LF must follow.
    TrailerLineLf,
    /// CR of the final empty line seen; LF must follow.
    TrailerEndLf,
    Done,
}

/// Where in `chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )` the
/// decoder is (RFC 9112 §7.1.1); `value = token / quoted-string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// After `;`, before the name.
    BeforeName,
    Name,
    /// Whitespace after the name: `=` or `;` must follow.
    AfterName,
    /// After `=`, before the value.
    BeforeValue,
    Token,
    Quoted,
    /// After a backslash inside a quoted string.
    QuotedPair,
    /// Right after the closing quote.
    AfterQuote,
    /// Whitespace after a value: `;` must follow.
    AfterValue,
}

/// Result of feeding bytes to the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// The last chunk and trailer section were consumed; any bytes left in
    /// `src` belong to the next request.
    Done,
    /// `src` was exhausted before the body ended.
    NeedMore,
}

/// Decodes a chunked body fed in arbitrary pieces. After an error the decoder
/// state is unspecified; the connection must be closed.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current chunk-size line so far.
    line_bytes: usize,
    /// Bytes of chunk extensions in the whole body so far.
    ext_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// Data bytes accepted so far (checked against the limit when each
    /// chunk size is known, before its data is read).
    decoded_bytes: u64,
    body_bytes_max: u64,
}

const BAD_SIZE: HttpError = HttpError::BadRequest("invalid chunk size");
const BARE_LF: HttpError = HttpError::BadRequest("chunk line not terminated by CRLF");
const NO_DATA_CRLF: HttpError = HttpError::BadRequest("missing CRLF after chunk data");

impl ChunkedDecoder {
    pub fn new(body_bytes_max: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            line_bytes: 0,
            ext_bytes: 0,
            trailer_bytes: 0,
            decoded_bytes: 0,
            body_bytes_max: u64::try_from(body_bytes_max).unwrap_or(u64::MAX),
        }
    }

    /// Consumes bytes from the front of `src` (advancing it) and appends
    /// decoded data to `out`. Returns `Done` after the last-chunk and trailer
    /// section; `NeedMore` when `src` is exhausted. Never consumes bytes past
    /// the end of the body, so pipelined data stays in `src`.
    ///
    /// # Errors
    /// `BadRequest` for any byte outside the chunked grammar (RFC 9112 §7.1):
    /// a size that is not 1 to 16 hex digits, whitespace after a size not
    /// followed by `;`, a malformed or too long extension, a line not ended by
    /// CRLF, data not followed by CRLF, a malformed trailer field (obs-fold,
    /// whitespace before the colon, no colon). `BodyTooLarge` when the chunk
    /// sizes pass `body_bytes_max`, `HeadTooLarge` when the trailer section
    /// passes `TRAILER_BYTES_MAX`. Trailer fields are checked and dropped.
    pub fn decode(&mut self, src: &mut BytesMut, out: &mut BytesMut) -> Result<Decoded, HttpError> {
        loop {
            if self.state == State::Done {
                return Ok(Decoded::Done);
            }
            if let State::Data { remaining } = self.state {
                if src.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                // Copy as much of the chunk as is buffered in one go.
                let take = usize::try_from(remaining).map_or(src.len(), |r| r.min(src.len()));
                out.extend_from_slice(src.get(..take).unwrap_or(&[]));
                src.advance(take);
                // `take` <= remaining, so these cannot underflow/overflow.
                let left = remaining.saturating_sub(take as u64);
                self.decoded_bytes = self.decoded_bytes.saturating_add(take as u64);
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                continue;
            }
            let Some(&byte) = src.first() else {
                return Ok(Decoded::NeedMore);
            };
            self.state = self.step(byte)?;
            src.advance(1);
        }
    }

    /// Advances the line-oriented states by one byte.
    fn step(&mut self, byte: u8) -> Result<State, HttpError> {
        match self.state {
            State::Size { size, digits } => {
                self.count_line_byte(byte)?;
                if let Some(value) = hex_value(byte) {
                    if digits >= SIZE_DIGITS_MAX {
                        return Err(HttpError::BadRequest("chunk size has too many digits"));
                    }
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(value)))
                        .ok_or(HttpError::BadRequest("chunk size overflows"))?;
                    return Ok(State::Size {
                        size,
                        digits: digits + 1,
                    });
                }
                if digits == 0 {
                    return Err(HttpError::BadRequest("missing chunk size"));
                }
                match byte {
                    b' ' | b'\t' => Ok(State::SizeWs { size }),
                    b';' => self.begin_ext(size),
                    b'\r' => Ok(State::SizeLf { size }),
                    b'\n' => Err(BARE_LF),
                    _ => Err(BAD_SIZE),
                }
            }
            State::SizeWs { size } => {
                self.count_line_byte(byte)?;
                match byte {
                    b' ' | b'\t' => Ok(State::SizeWs { size }),
                    b';' => self.begin_ext(size),
                    b'\n' => Err(BARE_LF),
                    _ => Err(HttpError::BadRequest("whitespace after chunk size")),
                }
            }
            State::Ext { size, at } => {
                self.count_line_byte(byte)?;
                if byte == b'\r' && ext_may_end(at) {
                    return Ok(State::SizeLf { size });
                }
                if byte == b'\n' && ext_may_end(at) {
                    return Err(BARE_LF);
                }
                self.count_ext_byte()?;
                let at =
                    ext_step(at, byte).ok_or(HttpError::BadRequest("invalid chunk extension"))?;
                Ok(State::Ext { size, at })
            }
            State::SizeLf { size } => {
                if byte != b'\n' {
                    return Err(BARE_CR);
                }
                self.line_bytes = 0;
                if size == 0 {
                    return Ok(State::TrailerLineStart);
                }
                // Refuse before reading the data so an oversized chunk costs
                // nothing.
                match self.decoded_bytes.checked_add(size) {
                    Some(total) if total <= self.body_bytes_max => {
                        Ok(State::Data { remaining: size })
                    }
                    _ => Err(HttpError::BodyTooLarge),
                }
            }
            State::DataCr => match byte {
                b'\r' => Ok(State::DataLf),
                _ => Err(NO_DATA_CRLF),
            },
            State::DataLf => match byte {
                b'\n' => Ok(State::Size { size: 0, digits: 0 }),
                _ => Err(NO_DATA_CRLF),
            },
            State::TrailerLineStart => {
                self.count_trailer_byte()?;
                match byte {
                    b'\r' => Ok(State::TrailerEndLf),
                    b'\n' => Err(BARE_LF),
                    b' ' | b'\t' => Err(HttpError::BadRequest("obsolete line folding in trailer")),
                    b if is_tchar(b) => Ok(State::TrailerName),
                    _ => Err(BAD_TRAILER),
                }
            }
            State::TrailerName => {
                self.count_trailer_byte()?;
                match byte {
                    b':' => Ok(State::TrailerValue),
                    b if is_tchar(b) => Ok(State::TrailerName),
                    b' ' | b'\t' => Err(HttpError::BadRequest("whitespace in trailer field name")),
                    b'\r' | b'\n' => Err(HttpError::BadRequest("trailer line without colon")),
                    _ => Err(BAD_TRAILER),
                }
            }
            State::TrailerValue => {
                self.count_trailer_byte()?;
                match byte {
                    b'\r' => Ok(State::TrailerLineLf),
                    b'\n' => Err(BARE_LF),
                    b if is_line_text(b) => Ok(State::TrailerValue),
                    _ => Err(BAD_TRAILER),
                }
            }
            State::TrailerLineLf => {
                self.count_trailer_byte()?;
                match byte {
                    b'\n' => Ok(State::TrailerLineStart),
                    _ => Err(BARE_CR),
                }
            }
            State::TrailerEndLf => {
                self.count_trailer_byte()?;
                match byte {
                    b'\n' => Ok(State::Done),
                    _ => Err(BARE_CR),
                }
            }
            // `decode` handles these without calling `step`; staying put is
            // the harmless answer if that ever changes.
            State::Data { .. } | State::Done => Ok(self.state),
        }
    }

    /// The `;` that starts the extensions of a chunk-size line.
    fn begin_ext(&mut self, size: u64) -> Result<State, HttpError> {
        self.count_ext_byte()?;
        Ok(State::Ext {
            size,
            at: Ext::BeforeName,
        })
    }

    fn count_ext_byte(&mut self) -> Result<(), HttpError> {
        self.ext_bytes += 1;
        if self.ext_bytes > CHUNK_EXT_BYTES_MAX {
            return Err(HttpError::BadRequest("chunk extensions too long"));
        }
        Ok(())
    }

    /// Counts a size-line byte; the terminating CR is not part of the line.
    fn count_line_byte(&mut self, byte: u8) -> Result<(), HttpError> {
        if byte == b'\r' {
            return Ok(());
        }
        self.line_bytes += 1;
        if self.line_bytes > CHUNK_LINE_BYTES_MAX {
            return Err(HttpError::BadRequest("chunk size line too long"));
        }
        Ok(())
    }

    fn count_trailer_byte(&mut self) -> Result<(), HttpError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(())
    }
}

const BARE_CR: HttpError = HttpError::BadRequest("CR not followed by LF in chunked body");
const BAD_TRAILER: HttpError = HttpError::BadRequest("invalid byte in trailer");

/// Whether a chunk-size line may end (CRLF) at this point of its extensions:
/// after a name or a value, not inside a quoted string, not after whitespace.
fn ext_may_end(at: Ext) -> bool {
    matches!(at, Ext::Name | Ext::Token | Ext::AfterQuote)
}

/// The next point in the extension grammar after `byte`; `None` when `byte`
/// breaks it. Line ends are handled by the caller.
fn ext_step(at: Ext, byte: u8) -> Option<Ext> {
    let ws = byte == b' ' || byte == b'\t';
    Some(match at {
        Ext::BeforeName if ws => Ext::BeforeName,
        Ext::BeforeName | Ext::Name if is_tchar(byte) => Ext::Name,
        Ext::Name | Ext::AfterName if ws => Ext::AfterName,
        Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterQuote | Ext::AfterValue
            if byte == b';' =>
        {
            Ext::BeforeName
        }
        Ext::Name | Ext::AfterName if byte == b'=' => Ext::BeforeValue,
        Ext::BeforeValue if ws => Ext::BeforeValue,
        Ext::BeforeValue if byte == b'"' => Ext::Quoted,
        Ext::BeforeValue | Ext::Token if is_tchar(byte) => Ext::Token,
        Ext::Token | Ext::AfterQuote | Ext::AfterValue if ws => Ext::AfterValue,
        Ext::Quoted if byte == b'"' => Ext::AfterQuote,
        Ext::Quoted if byte == b'\\' => Ext::QuotedPair,
        Ext::Quoted | Ext::QuotedPair if is_line_text(byte) => Ext::Quoted,
        _ => return None,
    })
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Bytes allowed inside extension and trailer lines: HTAB, visible ASCII,
/// SP and obs-text; no other control characters.
fn is_line_text(byte: u8) -> bool {
    byte == b'\t' || (b' '..=b'~').contains(&byte) || byte >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// (result, decoded output, bytes left unconsumed)
    type Outcome = (Result<Decoded, HttpError>, Vec<u8>, Vec<u8>);

    /// Feeds `input` in the given pieces, stopping at the first Done or error.
    fn run_pieces(pieces: &[&[u8]], body_bytes_max: usize) -> Outcome {
        let mut decoder = ChunkedDecoder::new(body_bytes_max);
        let mut src = BytesMut::new();
        let mut out = BytesMut::new();
        let mut result = Ok(Decoded::NeedMore);
        let mut fed = 0;
        for piece in pieces {
            src.extend_from_slice(piece);
            fed += 1;
            result = decoder.decode(&mut src, &mut out);
            match result {
                Ok(Decoded::NeedMore) => assert!(src.is_empty(), "NeedMore must drain src"),
                _ => break,
            }
        }
        let mut left = src.to_vec();
        for piece in pieces.iter().skip(fed) {
            left.extend_from_slice(piece);
        }
        (result, out.to_vec(), left)
    }

    /// Decodes `input` whole, byte by byte and split at every position, and
    /// asserts all agree; returns the whole-input outcome.
    fn run_all_ways(input: &[u8], body_bytes_max: usize) -> Outcome {
        let whole = run_pieces(&[input], body_bytes_max);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_pieces(&bytes, body_bytes_max), whole, "byte by byte");
        if input.len() <= 512 {
            for at in 0..=input.len() {
                let (a, b) = input.split_at(at);
                assert_eq!(run_pieces(&[a, b], body_bytes_max), whole, "split at {at}");
            }
        }
        whole
    }

    fn ok(input: &[u8], data: &[u8], left: &[u8]) {
        assert_eq!(
            run_all_ways(input, MAX),
            (Ok(Decoded::Done), data.to_vec(), left.to_vec()),
            "{}",
            String::from_utf8_lossy(input)
        );
    }

    fn err(input: &[u8], body_bytes_max: usize) -> HttpError {
        match run_all_ways(input, body_bytes_max).0 {
            Err(e) => e,
            other => panic!("expected error, got {other:?}"),
        }
    }

    fn bad(input: &[u8]) -> &'static str {
        match err(input, MAX) {
            HttpError::BadRequest(detail) => detail,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn basic_body() {
        ok(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n", b"Wikipedia", b"");
    }

    #[test]
    fn empty_body() {
        ok(b"0\r\n\r\n", b"", b"");
    }

    #[test]
    fn hex_sizes() {
        ok(b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", b"");
        ok(b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", b"");
        ok(
            b"000000000000000A\r\n0123456789\r\n0\r\n\r\n",
            b"0123456789",
            b"",
        );
        let mut input = b"1F\r\n".to_vec();
        input.extend_from_slice(&[b'z'; 31]);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        ok(&input, &[b'z'; 31], b"");
    }

    #[test]
    fn extensions_and_whitespace() {
        ok(b"4;name=value\r\nWiki\r\n0;last\r\n\r\n", b"Wiki", b"");
        ok(b"4 ;a=\"q v\";b\r\nWiki\r\n0\r\n\r\n", b"Wiki", b"");
        // BWS around `;` and `=` (RFC 9112 §7.1.1).
        ok(
            b"4\t ; a = b ;c\t=\t\"d\"\r\nWiki\r\n0\r\n\r\n",
            b"Wiki",
            b"",
        );
        ok(b"4;a=\"\\\"\\\\;x\"\r\nWiki\r\n0\r\n\r\n", b"Wiki", b"");
        ok(b"4;a=\"\"\r\nWiki\r\n0\r\n\r\n", b"Wiki", b"");
        ok(b"4;a;b;c=1\r\nWiki\r\n0\r\n\r\n", b"Wiki", b"");
        // Whitespace must lead to an extension.
        for input in [
            &b"4 \r\nWiki\r\n"[..],
            b"4\t\r\nWiki\r\n",
            b"4 x\r\n",
            b"4 4\r\n",
        ] {
            assert_eq!(bad(input), "whitespace after chunk size", "{input:?}");
        }
    }

    #[test]
    fn malformed_extensions() {
        for input in [
            &b"4;\r\nWiki\r\n"[..],
            b"4;;a\r\n",
            b"4;=a\r\n",
            b"4;a=\r\n",
            b"4;a =\r\n",
            b"4;a b\r\n",
            b"4;a \r\n",
            b"4;a=b \r\n",
            b"4;a=b c\r\n",
            b"4;a=\"b\r\n",
            b"4;a=\"b\"c\r\n",
            b"4;a=b\"\r\n",
            b"4;a/b\r\n",
            b"4;a=b=c\r\n",
            b"4;a=\"\x01\"\r\n",
            b"4;a\0b\r\n",
            b"4;\xe9\r\n",
            b"4;a,b\r\n",
        ] {
            assert_eq!(
                bad(input),
                "invalid chunk extension",
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // A line end inside a quoted string is not one.
        assert_eq!(bad(b"4;a=\"b\r\nWiki\"\r\n"), "invalid chunk extension");
    }

    #[test]
    fn extension_bytes_of_a_body_are_bounded() {
        // Chunks of one byte, each with a 100-byte extension (`;` + 99 name bytes).
        let chunk = |n: usize| {
            let mut input = Vec::new();
            for _ in 0..n {
                input.extend_from_slice(b"1;");
                input.resize(input.len() + 99, b'e');
                input.extend_from_slice(b"\r\nx\r\n");
            }
            input
        };
        let fits = CHUNK_EXT_BYTES_MAX / 100;
        let mut input = chunk(fits);
        input.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            run_pieces(&[&input], MAX),
            (Ok(Decoded::Done), vec![b'x'; fits], Vec::new())
        );
        let mut input = chunk(fits + 1);
        input.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            run_pieces(&[&input], MAX).0,
            Err(HttpError::BadRequest("chunk extensions too long"))
        );
    }

    #[test]
    fn trailers_are_skipped() {
        ok(
            b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
            b"abc",
            b"",
        );
        // Framing fields in trailers are dropped like any other (RFC 9110 §6.5.1).
        ok(
            b"3\r\nabc\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\nE:\r\n\r\n",
            b"abc",
            b"",
        );
    }

    #[test]
    fn malformed_trailers() {
        let cases: [(&[u8], &str); 8] = [
            (
                b"0\r\nX: a\r\n folded\r\n\r\n",
                "obsolete line folding in trailer",
            ),
            (b"0\r\n\tX: a\r\n\r\n", "obsolete line folding in trailer"),
            (b"0\r\nX : a\r\n\r\n", "whitespace in trailer field name"),
            (b"0\r\nNo colon\r\n\r\n", "whitespace in trailer field name"),
            (b"0\r\nNoColon\r\n\r\n", "trailer line without colon"),
            (
                b"0\r\nPOST /x HTTP/1.1\r\n\r\n",
                "whitespace in trailer field name",
            ),
            (b"0\r\n: a\r\n\r\n", "invalid byte in trailer"),
            (b"0\r\nX\xe9: a\r\n\r\n", "invalid byte in trailer"),
        ];
        for (input, message) in cases {
            assert_eq!(bad(input), message, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn pipelined_bytes_are_left_in_src() {
        ok(
            b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"a",
            b"GET / HTTP/1.1\r\n\r\n",
        );
        ok(b"0\r\nT: x\r\n\r\n0\r\n", b"", b"0\r\n");
    }

    #[test]
    fn need_more_keeps_partial_data() {
        let mut decoder = ChunkedDecoder::new(MAX);
        let mut src = BytesMut::from(&b"4\r\nWi"[..]);
        let mut out = BytesMut::new();
        assert_eq!(decoder.decode(&mut src, &mut out), Ok(Decoded::NeedMore));
        assert_eq!((&src[..], &out[..]), (&b""[..], &b"Wi"[..]));
        src.extend_from_slice(b"ki\r\n0\r\n\r\nrest");
        assert_eq!(decoder.decode(&mut src, &mut out), Ok(Decoded::Done));
        assert_eq!((&src[..], &out[..]), (&b"rest"[..], &b"Wiki"[..]));
        // Done is sticky and consumes nothing further.
        assert_eq!(decoder.decode(&mut src, &mut out), Ok(Decoded::Done));
        assert_eq!(&src[..], b"rest");
    }

    #[test]
    fn appends_to_existing_output() {
        let mut decoder = ChunkedDecoder::new(MAX);
        let mut src = BytesMut::from(&b"2\r\nhi\r\n0\r\n\r\n"[..]);
        let mut out = BytesMut::from(&b">"[..]);
        assert_eq!(decoder.decode(&mut src, &mut out), Ok(Decoded::Done));
        assert_eq!(&out[..], b">hi");
    }

    #[test]
    fn incomplete_inputs_need_more() {
        for input in [
            &b""[..],
            b"4",
            b"4\r",
            b"4\r\nWik",
            b"4\r\nWiki",
            b"4\r\nWiki\r",
            b"4\r\nWiki\r\n0",
            b"4\r\nWiki\r\n0\r\n",
            b"4\r\nWiki\r\n0\r\nX: y\r\n",
            b"4\r\nWiki\r\n0\r\n\r",
            b"4;ext",
        ] {
            let (result, _, left) = run_all_ways(input, MAX);
            assert_eq!(
                result,
                Ok(Decoded::NeedMore),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert!(left.is_empty());
        }
    }

    #[test]
    fn invalid_sizes() {
        assert_eq!(bad(b"\r\n"), "missing chunk size");
        assert_eq!(bad(b";ext\r\n"), "missing chunk size");
        assert_eq!(bad(b" 4\r\n"), "missing chunk size");
        assert_eq!(bad(b"-1\r\n"), "missing chunk size");
        assert_eq!(bad(b"+1\r\n"), "missing chunk size");
        assert_eq!(bad(b"g\r\n"), "missing chunk size");
        assert_eq!(bad(b"0x5\r\n"), "invalid chunk size");
        assert_eq!(bad(b"5g\r\n"), "invalid chunk size");
        assert_eq!(bad(b"4,5\r\n"), "invalid chunk size");
    }

    #[test]
    fn sixteen_digit_size_is_accepted() {
        // u64::MAX parses; only the body limit refuses it.
        assert_eq!(err(b"FFFFFFFFFFFFFFFF\r\n", MAX), HttpError::BodyTooLarge);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(
            run_all_ways(b"FFFFFFFFFFFFFFFF\r\nab", usize::MAX),
            (Ok(Decoded::NeedMore), b"ab".to_vec(), Vec::new())
        );
    }

    #[test]
    fn size_with_too_many_digits_rejected() {
        // 17 digits are refused whether the value would fit (leading zeros)
        // or overflow u64.
        assert_eq!(
            bad(b"00000000000000001\r\n"),
            "chunk size has too many digits"
        );
        assert_eq!(
            bad(b"10000000000000000\r\n"),
            "chunk size has too many digits"
        );
    }

    #[test]
    fn crlf_required_after_data() {
        assert_eq!(bad(b"3\r\nabc\n0\r\n\r\n"), "missing CRLF after chunk data");
        assert_eq!(
            bad(b"3\r\nabcX\r\n0\r\n\r\n"),
            "missing CRLF after chunk data"
        );
        assert_eq!(bad(b"3\r\nabc\rX"), "missing CRLF after chunk data");
        assert_eq!(bad(b"3\r\nabcd\r\n"), "missing CRLF after chunk data");
    }

    #[test]
    fn crlf_required_on_lines() {
        let bare_lf = "chunk line not terminated by CRLF";
        let bare_cr = "CR not followed by LF in chunked body";
        assert_eq!(bad(b"3\nabc\r\n0\r\n\r\n"), bare_lf);
        assert_eq!(bad(b"3 \nabc\r\n"), bare_lf);
        assert_eq!(bad(b"3;x\nabc\r\n"), bare_lf);
        assert_eq!(bad(b"3\rabc"), bare_cr);
        assert_eq!(bad(b"0\r\n\n"), bare_lf);
        assert_eq!(bad(b"0\r\nX: y\n\r\n"), bare_lf);
        assert_eq!(bad(b"0\r\nX: y\rZ"), bare_cr);
        assert_eq!(bad(b"0\r\n\rZ"), bare_cr);
    }

    #[test]
    fn control_bytes_rejected() {
        assert_eq!(bad(b"3;a\0b\r\nabc\r\n"), "invalid chunk extension");
        assert_eq!(bad(b"0\r\nX: \x01\r\n\r\n"), "invalid byte in trailer");
        assert_eq!(bad(b"0\r\n\x7f\r\n\r\n"), "invalid byte in trailer");
    }

    #[test]
    fn chunk_line_limit_boundary() {
        let line_at_limit = |len: usize| {
            let mut input = b"3;".to_vec();
            input.resize(len, b'x');
            input.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
            input
        };
        ok(&line_at_limit(CHUNK_LINE_BYTES_MAX), b"abc", b"");
        assert_eq!(
            bad(&line_at_limit(CHUNK_LINE_BYTES_MAX + 1)),
            "chunk size line too long"
        );
        // The count restarts for every chunk line.
        let mut input = line_at_limit(CHUNK_LINE_BYTES_MAX);
        input.truncate(input.len() - b"0\r\n\r\n".len());
        input.extend_from_slice(&line_at_limit(CHUNK_LINE_BYTES_MAX));
        ok(&input, b"abcabc", b"");
    }

    #[test]
    fn body_limit_boundary() {
        let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            run_all_ways(input, 5),
            (Ok(Decoded::Done), b"abcde".to_vec(), Vec::new())
        );
        assert_eq!(err(input, 4), HttpError::BodyTooLarge);
        // Refused when the size line ends, before any of the chunk's data.
        let (result, out, _) = run_pieces(&[b"3\r\nabc\r\n2\r\n"], 4);
        assert_eq!(
            (result, out),
            (Err(HttpError::BodyTooLarge), b"abc".to_vec())
        );
        assert_eq!(err(b"6\r\n", 5), HttpError::BodyTooLarge);
        // A zero limit still admits an empty body.
        assert_eq!(
            run_all_ways(b"0\r\n\r\n", 0),
            (Ok(Decoded::Done), Vec::new(), Vec::new())
        );
        assert_eq!(err(b"1\r\n", 0), HttpError::BodyTooLarge);
    }

    #[test]
    fn trailer_limit_boundary() {
        // "0\r\n" then "X: <filler>\r\n" + "\r\n": trailer section of `len` bytes.
        let body_with_trailer = |len: usize| {
            let mut input = b"0\r\nX: ".to_vec();
            input.resize(3 + len - 4, b't');
            input.extend_from_slice(b"\r\n\r\n");
            assert_eq!(input.len() - 3, len);
            input
        };
        ok(&body_with_trailer(TRAILER_BYTES_MAX), b"", b"");
        assert_eq!(
            err(&body_with_trailer(TRAILER_BYTES_MAX + 1), MAX),
            HttpError::HeadTooLarge
        );
        // Many small trailer lines count toward the same total.
        let mut input = b"0\r\n".to_vec();
        while input.len() - 3 <= TRAILER_BYTES_MAX {
            input.extend_from_slice(b"A: b\r\n");
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(err(&input, MAX), HttpError::HeadTooLarge);
    }

    #[test]
    fn large_chunk_in_one_piece() {
        let data = vec![b'q'; 70_000];
        let mut input = format!("{:x}\r\n", data.len()).into_bytes();
        input.extend_from_slice(&data);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        ok(&input, &data, b"");
    }
}
