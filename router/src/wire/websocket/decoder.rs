//! Message-level decoder: reassembles fragments, passes control frames through between them, validates text, enforces limits.

use bytes::{Buf, Bytes, BytesMut};

use super::close::{validate_close_payload, validate_close_payload_from_server};
use super::deflate::{Inflater, Params};
use super::frame::{parse_header, FrameHeader};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{Limits, OpCode, WsError};

/// A complete message or control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Valid UTF-8, already checked.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// `None` for a close frame without a payload.
    Close(Option<(u16, String)>),
}

/// Which end of the connection is decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decodes client frames, which must be masked (RFC 6455 §5.1).
    Server,
    /// Decodes server frames, which must not be masked; accepts the
    /// registered close codes 1012-1014 that servers send.
    Client,
}

/// Progress through the payload of the data frame being read.
#[derive(Debug, Clone, Copy)]
struct FrameProgress {
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes consumed so far; its low bits are the mask phase.
    done: u64,
    remaining: u64,
}

/// A data message being assembled.
#[derive(Debug)]
struct Assembly {
    text: bool,
    compressed: bool,
    /// Unmasked, inflated payload so far; at most `message_bytes_max` bytes.
    payload: Vec<u8>,
    utf8: Utf8Validator,
}

/// Decodes one connection's received bytes into [`Message`]s.
///
/// Memory: nothing while idle between messages (unless the peer may use
/// deflate context takeover, which keeps an [`Inflater`]); while a message is
/// in progress, its payload so far (at most `message_bytes_max`).
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    deflate: Option<Params>,
    frame: Option<FrameProgress>,
    message: Option<Assembly>,
    inflater: Option<Inflater>,
    /// The first error; the connection is being failed, so it is returned again.
    failed: Option<WsError>,
}

impl Decoder {
    /// A decoder for a fresh connection. `deflate` is the negotiated
    /// permessage-deflate, `None` if compression was not agreed.
    pub fn new(role: Role, limits: Limits, deflate: Option<Params>) -> Decoder {
        Decoder {
            role,
            limits,
            deflate,
            frame: None,
            message: None,
            inflater: None,
            failed: None,
        }
    }

    /// Consumes frames from the front of `buf` and returns the next complete
    /// message or control frame; `Ok(None)` when more bytes are needed.
    ///
    /// Bytes are consumed as they are processed: a data frame's payload moves
    /// into the decoder as it arrives (unless the whole of an unfragmented,
    /// uncompressed message is already in `buf`, which is then handed out
    /// without a copy). A control frame stays in `buf` until all of it is
    /// there. Control frames may arrive between fragments of a data message.
    ///
    /// # Errors
    /// The error decides the close code ([`WsError::close_code`]); once one is
    /// returned, every later call returns it again.
    /// - `Protocol`: masking contrary to the role, continuation without a
    ///   started message, a new data frame while one is in progress, RSV1
    ///   without negotiated deflate or on control or continuation frames,
    ///   invalid compressed data, or a header error from [`parse_header`].
    /// - `InvalidUtf8`: text that is not UTF-8, reported as soon as the byte
    ///   that makes it invalid arrives, even mid-frame.
    /// - `TooBig`: a frame over `frame_bytes_max`, or an uncompressed message
    ///   over `message_bytes_max`, detected from the header before the payload
    ///   is buffered; a compressed message whose inflated size passes
    ///   `message_bytes_max`, detected as soon as inflation passes it.
    /// - `BadClose`/`InvalidUtf8`: an invalid close payload.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let result = self.decode_next(buf);
        if let Err(err) = result {
            // Release the buffers now; the connection is going away.
            self.failed = Some(err);
            self.frame = None;
            self.message = None;
            self.inflater = None;
        }
        result
    }

    /// True while a data message is being assembled (so the decoder holds a buffer).
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    fn decode_next(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            if let Some(frame) = self.frame {
                if !self.consume_payload(frame, buf)? {
                    return Ok(None);
                }
                self.frame = None;
                if frame.fin {
                    return self.finish_message().map(Some);
                }
                continue;
            }
            let Some(header) = parse_header(buf)? else {
                return Ok(None);
            };
            self.check_header(&header)?;
            if header.opcode.is_control() {
                return self.control_frame(&header, buf);
            }
            if let Some(message) = self.start_data_frame(&header, buf)? {
                return Ok(Some(message));
            }
        }
    }

    /// Every check that needs only the header, so a bad or oversized frame
    /// fails before any of its payload is waited for.
    fn check_header(&self, header: &FrameHeader) -> Result<(), WsError> {
        match (self.role, header.mask) {
            (Role::Server, None) => return Err(WsError::Protocol("unmasked frame from client")),
            (Role::Client, Some(_)) => return Err(WsError::Protocol("masked frame from server")),
            _ => {}
        }
        // Whether the payload counts toward the message limit as it stands on
        // the wire: control frames are not part of the message, and compressed
        // payloads are bounded after inflating instead.
        let counts_raw = match header.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if header.rsv1 {
                    return Err(WsError::Protocol("RSV1 set on control frame"));
                }
                false
            }
            OpCode::Continuation => {
                let Some(message) = &self.message else {
                    return Err(WsError::Protocol("continuation without a started message"));
                };
                // RFC 7692 §6.1: only the first frame of a message carries RSV1.
                if header.rsv1 {
                    return Err(WsError::Protocol("RSV1 set on continuation frame"));
                }
                !message.compressed
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(WsError::Protocol(
                        "new data frame while a message is in progress",
                    ));
                }
                if header.rsv1 && self.deflate.is_none() {
                    return Err(WsError::Protocol("RSV1 set without negotiated deflate"));
                }
                !header.rsv1
            }
        };
        if header.payload_len > to_u64(self.limits.frame_bytes_max) {
            return Err(WsError::TooBig);
        }
        if counts_raw {
            let held = self.message.as_ref().map_or(0, |m| m.payload.len());
            if to_u64(held).saturating_add(header.payload_len)
                > to_u64(self.limits.message_bytes_max)
            {
                return Err(WsError::TooBig);
            }
        }
        Ok(())
    }

    /// Control frames are at most 125 bytes, so they are handled only once
    /// complete; until then nothing is consumed.
    fn control_frame(
        &mut self,
        header: &FrameHeader,
        buf: &mut BytesMut,
    ) -> Result<Option<Message>, WsError> {
        let len = usize::try_from(header.payload_len).map_err(|_| WsError::TooBig)?;
        if buf.len() < header.header_len + len {
            return Ok(None);
        }
        buf.advance(header.header_len);
        let mut payload = buf.split_to(len);
        if let Some(mask) = header.mask {
            apply_mask(&mut payload, mask, 0);
        }
        let message = match header.opcode {
            OpCode::Ping => Message::Ping(payload.freeze()),
            OpCode::Pong => Message::Pong(payload.freeze()),
            _ => Message::Close(match self.role {
                Role::Server => validate_close_payload(&payload)?,
                Role::Client => validate_close_payload_from_server(&payload)?,
            }),
        };
        Ok(Some(message))
    }

    /// Consumes a data frame's header and starts (or continues) its message.
    /// Returns the message straight away when it is a single uncompressed
    /// frame already complete in `buf`.
    fn start_data_frame(
        &mut self,
        header: &FrameHeader,
        buf: &mut BytesMut,
    ) -> Result<Option<Message>, WsError> {
        let len = usize::try_from(header.payload_len).map_err(|_| WsError::TooBig)?;
        let starts_message = header.opcode != OpCode::Continuation;
        let complete = buf.len().saturating_sub(header.header_len) >= len;
        if starts_message && header.fin && !header.rsv1 && complete {
            // The common case: hand out the payload without copying it.
            buf.advance(header.header_len);
            let mut payload = buf.split_to(len);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask, 0);
            }
            if header.opcode == OpCode::Text {
                std::str::from_utf8(&payload).map_err(|_| WsError::InvalidUtf8)?;
                return Ok(Some(Message::Text(payload.freeze())));
            }
            return Ok(Some(Message::Binary(payload.freeze())));
        }

        buf.advance(header.header_len);
        if starts_message {
            // No reservation from the header's claim: the buffer grows with the
            // bytes that actually arrive, so a bare header costs nothing.
            self.message = Some(Assembly {
                text: header.opcode == OpCode::Text,
                compressed: header.rsv1,
                payload: Vec::new(),
                utf8: Utf8Validator::new(),
            });
        }
        self.frame = Some(FrameProgress {
            fin: header.fin,
            mask: header.mask,
            done: 0,
            remaining: header.payload_len,
        });
        Ok(None)
    }

    /// Unmasks, validates and stores (or inflates) whatever part of the
    /// current frame's payload `buf` holds. True once the frame is complete.
    fn consume_payload(
        &mut self,
        mut frame: FrameProgress,
        buf: &mut BytesMut,
    ) -> Result<bool, WsError> {
        // The min() bounds n by buf.len(), so the conversion cannot fail.
        let n = usize::try_from(frame.remaining.min(to_u64(buf.len()))).unwrap_or(0);
        if n > 0 {
            let Some(message) = self.message.as_mut() else {
                return Err(WsError::Protocol("frame payload outside a message"));
            };
            let Some(piece) = buf.get_mut(..n) else {
                return Ok(false);
            };
            if let Some(mask) = frame.mask {
                // Only the phase matters, so reducing first keeps 32-bit targets exact.
                apply_mask(piece, mask, (frame.done % 4) as usize);
            }
            if message.compressed {
                let inflater = self.inflater.get_or_insert_with(Inflater::new);
                inflate_into(
                    inflater,
                    message,
                    piece,
                    false,
                    self.limits.message_bytes_max,
                )?;
            } else {
                if message.text {
                    message.utf8.feed(piece)?;
                }
                message.payload.extend_from_slice(piece);
            }
            buf.advance(n);
            frame.done += to_u64(n);
            frame.remaining -= to_u64(n);
            self.frame = Some(frame);
        }
        Ok(frame.remaining == 0)
    }

    fn finish_message(&mut self) -> Result<Message, WsError> {
        let Some(mut message) = self.message.take() else {
            return Err(WsError::Protocol("message end outside a message"));
        };
        if message.compressed {
            let inflater = self.inflater.get_or_insert_with(Inflater::new);
            inflate_into(
                inflater,
                &mut message,
                &[],
                true,
                self.limits.message_bytes_max,
            )?;
            if !self.peer_keeps_context() {
                // The next message starts from an empty window, so keep no
                // inflater (about 43 KiB) while the connection idles.
                self.inflater = None;
            }
        }
        if message.text {
            message.utf8.finish()?;
            return Ok(Message::Text(Bytes::from(message.payload)));
        }
        Ok(Message::Binary(Bytes::from(message.payload)))
    }

    /// Whether the peer may compress a message using earlier messages'
    /// window (it was not told `*_no_context_takeover` for its direction).
    fn peer_keeps_context(&self) -> bool {
        match (self.role, self.deflate) {
            (Role::Server, Some(p)) => !p.client_no_context_takeover,
            (Role::Client, Some(p)) => !p.server_no_context_takeover,
            (_, None) => false,
        }
    }
}

/// Inflates the next piece of a compressed message onto its payload and validates what came
/// out as text. Output inflated before an error is validated first: an invalid character that
/// arrived before corrupt data (or before the limit) is reported as invalid UTF-8, as it is when
/// the bytes arrive one read at a time, so the close code does not depend on how they were split.
fn inflate_into(
    inflater: &mut Inflater,
    message: &mut Assembly,
    piece: &[u8],
    last: bool,
    message_bytes_max: usize,
) -> Result<(), WsError> {
    let before = message.payload.len();
    let inflated = inflater.inflate_part(piece, last, message_bytes_max, &mut message.payload);
    if message.text {
        message
            .utf8
            .feed(message.payload.get(before..).unwrap_or(&[]))?;
    }
    inflated
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::websocket::deflate::compress;
    use crate::wire::websocket::frame::{put_frame, put_masked_frame};

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMITS: Limits = Limits {
        frame_bytes_max: 1 << 20,
        message_bytes_max: 1 << 20,
    };
    const NO_TAKEOVER: Params = Params::NO_CONTEXT_TAKEOVER;

    /// A client-to-server frame.
    fn cframe(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_masked_frame(&mut out, opcode, fin, rsv1, MASK, payload);
        out.to_vec()
    }

    /// A server-to-client frame.
    fn sframe(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame(&mut out, opcode, fin, false, payload);
        out.to_vec()
    }

    fn server() -> Decoder {
        Decoder::new(Role::Server, LIMITS, None)
    }

    fn text(s: &str) -> Message {
        Message::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn binary(b: &[u8]) -> Message {
        Message::Binary(Bytes::copy_from_slice(b))
    }

    /// Feeds `wire` in pieces of `step` bytes, collecting messages until an error.
    fn decode_in_steps(
        decoder: &mut Decoder,
        wire: &[u8],
        step: usize,
    ) -> (Vec<Message>, Option<WsError>) {
        let mut buf = BytesMut::new();
        let mut messages = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break,
                    Err(err) => return (messages, Some(err)),
                }
            }
        }
        (messages, None)
    }

    fn decode_all(decoder: &mut Decoder, wire: &[u8]) -> (Vec<Message>, Option<WsError>) {
        decode_in_steps(decoder, wire, wire.len())
    }

    fn error_of(decoder: &mut Decoder, wire: &[u8]) -> WsError {
        match decode_all(decoder, wire) {
            (_, Some(err)) => err,
            (messages, None) => panic!("expected an error, got {messages:?}"),
        }
    }

    #[test]
    fn rfc_6455_section_5_7_examples() {
        // Masked "Hello" to a server.
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&mut server(), &wire),
            (vec![text("Hello")], None)
        );

        // Unmasked examples to a client.
        let client = || Decoder::new(Role::Client, LIMITS, None);
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all(&mut client(), &wire),
            (vec![text("Hello")], None)
        );
        let wire = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_all(&mut client(), &wire),
            (vec![text("Hello")], None)
        );
        let wire = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all(&mut client(), &wire),
            (vec![Message::Ping(Bytes::from_static(b"Hello"))], None)
        );

        // Masked pong to a server.
        let wire = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&mut server(), &wire),
            (vec![Message::Pong(Bytes::from_static(b"Hello"))], None)
        );
    }

    #[test]
    fn length_boundaries() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 65537] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let wire = cframe(OpCode::Binary, true, false, &payload);
            for step in [wire.len(), 1000, 7] {
                let got = decode_in_steps(&mut server(), &wire, step);
                assert_eq!(got, (vec![binary(&payload)], None), "len {len} step {step}");
            }
            let wire = cframe(OpCode::Text, true, false, &payload);
            let got = decode_all(&mut server(), &wire);
            assert_eq!(got, (vec![Message::Text(payload.clone().into())], None));
            // The same payload as two fragments split at the boundary.
            let (a, b) = payload.split_at(len / 2);
            let mut wire = cframe(OpCode::Text, false, false, a);
            wire.extend(cframe(OpCode::Continuation, true, false, b));
            let got = decode_all(&mut server(), &wire);
            assert_eq!(got, (vec![Message::Text(payload.clone().into())], None));
        }
    }

    #[test]
    fn frame_limit_boundary_detected_from_header() {
        let limits = Limits {
            frame_bytes_max: 126,
            message_bytes_max: 1 << 20,
        };
        let wire = cframe(OpCode::Binary, true, false, &[7; 126]);
        let got = decode_all(&mut Decoder::new(Role::Server, limits, None), &wire);
        assert_eq!(got, (vec![binary(&[7; 126])], None));

        // One byte over: refused with only the header (4 + 4 mask bytes) in hand.
        let wire = cframe(OpCode::Binary, true, false, &[7; 127]);
        let mut decoder = Decoder::new(Role::Server, limits, None);
        let mut buf = BytesMut::from(&wire[..8]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::TooBig));

        // The largest length the wire allows, from its header alone.
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&((1u64 << 63) - 1).to_be_bytes());
        header.extend_from_slice(&MASK);
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(server().decode(&mut buf), Err(WsError::TooBig));
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            Decoder::new(Role::Server, limits, None).decode(&mut buf),
            Err(WsError::TooBig)
        );
        // Control frames are limited too.
        let tiny = Limits {
            frame_bytes_max: 4,
            message_bytes_max: 4,
        };
        let wire = cframe(OpCode::Ping, true, false, b"12345");
        assert_eq!(
            error_of(&mut Decoder::new(Role::Server, tiny, None), &wire),
            WsError::TooBig
        );
    }

    #[test]
    fn message_limit_boundary_detected_from_header() {
        let limits = Limits {
            frame_bytes_max: 100,
            message_bytes_max: 150,
        };
        let mut wire = cframe(OpCode::Text, false, false, &[b'a'; 100]);
        wire.extend(cframe(OpCode::Continuation, true, false, &[b'b'; 50]));
        let (messages, err) = decode_all(&mut Decoder::new(Role::Server, limits, None), &wire);
        assert_eq!(err, None);
        assert_eq!(messages.len(), 1);

        let mut decoder = Decoder::new(Role::Server, limits, None);
        let first = cframe(OpCode::Text, false, false, &[b'a'; 100]);
        let mut buf = BytesMut::from(&first[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(decoder.in_message());
        // 100 + 51 > 150: refused from the continuation's header alone.
        let second = cframe(OpCode::Continuation, true, false, &[b'b'; 51]);
        let mut buf = BytesMut::from(&second[..6]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::TooBig));
        assert!(!decoder.in_message());

        // Control frames between fragments do not count toward the message.
        let mut wire = cframe(OpCode::Text, false, false, &[b'a'; 100]);
        wire.extend(cframe(OpCode::Ping, true, false, &[b'p'; 100]));
        wire.extend(cframe(OpCode::Continuation, true, false, &[b'b'; 50]));
        let (messages, err) = decode_all(&mut Decoder::new(Role::Server, limits, None), &wire);
        assert_eq!(err, None);
        assert_eq!(messages.len(), 2);
    }

    #[test]
    fn control_frames_between_fragments() {
        let mut wire = cframe(OpCode::Text, false, false, b"Hel");
        wire.extend(cframe(OpCode::Ping, true, false, b"p"));
        wire.extend(cframe(OpCode::Continuation, false, false, b""));
        wire.extend(cframe(OpCode::Pong, true, false, b""));
        wire.extend(cframe(OpCode::Continuation, true, false, b"lo"));
        wire.extend(cframe(OpCode::Close, true, false, b"\x03\xe8bye"));
        let expected = vec![
            Message::Ping(Bytes::from_static(b"p")),
            Message::Pong(Bytes::new()),
            text("Hello"),
            Message::Close(Some((1000, "bye".to_owned()))),
        ];
        for step in 1..=wire.len() {
            assert_eq!(
                decode_in_steps(&mut server(), &wire, step),
                (expected.clone(), None),
                "step {step}"
            );
        }
        // in_message stays true across the ping.
        let mut decoder = server();
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Message::Ping(Bytes::from_static(b"p"))))
        );
        assert!(decoder.in_message());
    }

    #[test]
    fn sequencing_errors() {
        let wire = cframe(OpCode::Continuation, true, false, b"x");
        assert_eq!(
            error_of(&mut server(), &wire),
            WsError::Protocol("continuation without a started message")
        );
        let mut wire = cframe(OpCode::Text, false, false, b"a");
        wire.extend(cframe(OpCode::Binary, true, false, b"b"));
        assert_eq!(
            error_of(&mut server(), &wire),
            WsError::Protocol("new data frame while a message is in progress")
        );
        // A finished message allows the next one.
        let mut wire = cframe(OpCode::Text, true, false, b"a");
        wire.extend(cframe(OpCode::Continuation, true, false, b"b"));
        let (messages, err) = decode_all(&mut server(), &wire);
        assert_eq!(messages, vec![text("a")]);
        assert_eq!(
            err,
            Some(WsError::Protocol("continuation without a started message"))
        );
    }

    #[test]
    fn masking_must_match_role() {
        let unmasked = sframe(OpCode::Text, true, b"hi");
        assert_eq!(
            error_of(&mut server(), &unmasked),
            WsError::Protocol("unmasked frame from client")
        );
        let masked = cframe(OpCode::Text, true, false, b"hi");
        assert_eq!(
            error_of(&mut Decoder::new(Role::Client, LIMITS, None), &masked),
            WsError::Protocol("masked frame from server")
        );
        // Detected from the first two header bytes.
        let mut buf = BytesMut::from(&unmasked[..2]);
        assert_eq!(
            server().decode(&mut buf),
            Err(WsError::Protocol("unmasked frame from client"))
        );
    }

    #[test]
    fn rsv1_rules() {
        let wire = cframe(OpCode::Text, true, true, b"x");
        assert_eq!(
            error_of(&mut server(), &wire),
            WsError::Protocol("RSV1 set without negotiated deflate")
        );
        let deflating = || Decoder::new(Role::Server, LIMITS, Some(NO_TAKEOVER));
        let wire = cframe(OpCode::Ping, true, true, b"");
        assert_eq!(
            error_of(&mut deflating(), &wire),
            WsError::Protocol("RSV1 set on control frame")
        );
        let mut wire = cframe(OpCode::Text, false, true, &[0xf2, 0x48, 0xcd]);
        wire.extend(cframe(
            OpCode::Continuation,
            true,
            true,
            &[0xc9, 0xc9, 0x07, 0x00],
        ));
        assert_eq!(
            error_of(&mut deflating(), &wire),
            WsError::Protocol("RSV1 set on continuation frame")
        );
        // Reserved bits and opcodes come through from the header parser.
        assert_eq!(
            error_of(&mut server(), &[0xA1, 0x80]),
            WsError::Protocol("reserved bits set")
        );
        assert_eq!(
            error_of(&mut server(), &[0x83, 0x80]),
            WsError::Protocol("reserved opcode")
        );
    }

    #[test]
    fn utf8_fails_fast_at_the_offending_fragment() {
        // Autobahn 6.4.1: fragment 1 valid, fragment 2 starts an invalid code
        // point, fragment 3 never needs to arrive.
        let frag1 = cframe(OpCode::Text, false, false, "κόσμε".as_bytes());
        let frag2 = cframe(OpCode::Continuation, false, false, b"\xf4\x90\x80\x80");
        let mut decoder = server();
        let mut buf = BytesMut::from(&frag1[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&frag2);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::InvalidUtf8));

        // Autobahn 6.4.3: one frame in chops; fails on the chop holding 0x90,
        // before the rest of the frame arrives.
        let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited";
        let wire = cframe(OpCode::Text, true, false, payload);
        let bad_at = 6 + 12; // header, then the 0x90 byte
        let mut decoder = server();
        let mut buf = BytesMut::from(&wire[..bad_at]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&wire[bad_at..bad_at + 1]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::InvalidUtf8));
        // And later calls keep failing.
        buf.extend_from_slice(&wire[bad_at + 1..]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn utf8_sequences_may_span_fragments() {
        let mut wire = cframe(OpCode::Text, false, false, b"\xf0");
        wire.extend(cframe(OpCode::Continuation, false, false, b"\x9f\x8e"));
        wire.extend(cframe(OpCode::Continuation, true, false, b"\x89!"));
        for step in 1..=wire.len() {
            assert_eq!(
                decode_in_steps(&mut server(), &wire, step),
                (vec![text("🎉!")], None)
            );
        }
        // A message that ends inside a sequence is invalid.
        let mut wire = cframe(OpCode::Text, false, false, b"ok\xe2");
        wire.extend(cframe(OpCode::Continuation, true, false, b"\x82"));
        assert_eq!(error_of(&mut server(), &wire), WsError::InvalidUtf8);
        let wire = cframe(OpCode::Text, true, false, b"ok\xe2\x82");
        assert_eq!(error_of(&mut server(), &wire), WsError::InvalidUtf8);
        // Binary messages are not checked.
        let wire = cframe(OpCode::Binary, true, false, b"\xff");
        assert_eq!(
            decode_all(&mut server(), &wire),
            (vec![binary(b"\xff")], None)
        );
    }

    #[test]
    fn close_frames() {
        let wire = cframe(OpCode::Close, true, false, b"");
        assert_eq!(
            decode_all(&mut server(), &wire),
            (vec![Message::Close(None)], None)
        );
        let wire = cframe(OpCode::Close, true, false, b"\x03");
        assert_eq!(
            error_of(&mut server(), &wire),
            WsError::BadClose("1-byte payload")
        );
        let wire = cframe(OpCode::Close, true, false, &1005u16.to_be_bytes());
        assert_eq!(
            error_of(&mut server(), &wire),
            WsError::BadClose("code may not be received")
        );
        let wire = cframe(OpCode::Close, true, false, b"\x03\xe8\xff");
        assert_eq!(error_of(&mut server(), &wire), WsError::InvalidUtf8);
        // A server may send 1013 (try again later) to a client, not the reverse.
        let wire = cframe(OpCode::Close, true, false, &1013u16.to_be_bytes());
        assert_eq!(
            error_of(&mut server(), &wire),
            WsError::BadClose("code may not be received")
        );
        let wire = sframe(OpCode::Close, true, &1013u16.to_be_bytes());
        assert_eq!(
            decode_all(&mut Decoder::new(Role::Client, LIMITS, None), &wire),
            (vec![Message::Close(Some((1013, String::new())))], None)
        );
    }

    #[test]
    fn control_frames_wait_until_complete() {
        let wire = cframe(OpCode::Ping, true, false, b"12345");
        let mut decoder = server();
        let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), wire.len() - 1, "nothing consumed");
        buf.extend_from_slice(&wire[wire.len() - 1..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Message::Ping(Bytes::from_static(b"12345"))))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn pipelined_messages_and_leftover_bytes() {
        let mut wire = cframe(OpCode::Text, true, false, b"one");
        wire.extend(cframe(OpCode::Binary, true, false, b"two"));
        wire.extend(&cframe(OpCode::Text, true, false, b"three")[..3]);
        let mut decoder = server();
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Some(text("one"))));
        assert_eq!(decoder.decode(&mut buf), Ok(Some(binary(b"two"))));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn single_frame_messages_are_not_copied() {
        let wire = cframe(OpCode::Binary, true, false, b"payload");
        let mut buf = BytesMut::from(&wire[..]);
        let start = buf.as_ptr() as usize;
        let Ok(Some(Message::Binary(payload))) = server().decode(&mut buf) else {
            panic!("expected a binary message");
        };
        assert_eq!(&payload[..], b"payload");
        assert_eq!(payload.as_ptr() as usize, start + 6);
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = server();
        let mut buf = BytesMut::from(&cframe(OpCode::Continuation, true, false, b"")[..]);
        let err = decoder.decode(&mut buf);
        assert!(err.is_err());
        let mut buf = BytesMut::from(&cframe(OpCode::Text, true, false, b"fine")[..]);
        assert_eq!(decoder.decode(&mut buf), err);
    }

    fn compressed(payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        compress(payload, NO_TAKEOVER.server_max_window_bits, &mut out);
        out.to_vec()
    }

    #[test]
    fn compressed_messages() {
        let deflating = || Decoder::new(Role::Server, LIMITS, Some(NO_TAKEOVER));
        // RFC 7692 §7.2.3.1, whole and as two frames.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let wire = cframe(OpCode::Text, true, true, &hello);
        assert_eq!(
            decode_all(&mut deflating(), &wire),
            (vec![text("Hello")], None)
        );
        let mut wire = cframe(OpCode::Text, false, true, &hello[..3]);
        wire.extend(cframe(OpCode::Continuation, true, false, &hello[3..]));
        for step in 1..=wire.len() {
            assert_eq!(
                decode_in_steps(&mut deflating(), &wire, step),
                (vec![text("Hello")], None)
            );
        }
        // Uncompressed messages still work when deflate is negotiated.
        let wire = cframe(OpCode::Binary, true, false, b"plain");
        assert_eq!(
            decode_all(&mut deflating(), &wire),
            (vec![binary(b"plain")], None)
        );

        // No inflater is kept between messages without context takeover.
        let mut decoder = deflating();
        let mut buf = BytesMut::from(&cframe(OpCode::Text, true, true, &hello)[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Some(text("Hello"))));
        assert!(decoder.inflater.is_none());
    }

    #[test]
    fn compressed_context_takeover() {
        // RFC 7692 §7.2.3.2: the second message refers into the first.
        let takeover = Params {
            client_no_context_takeover: false,
            ..NO_TAKEOVER
        };
        let mut wire = cframe(
            OpCode::Text,
            true,
            true,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        );
        wire.extend(cframe(
            OpCode::Text,
            true,
            true,
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        ));
        let mut decoder = Decoder::new(Role::Server, LIMITS, Some(takeover));
        assert_eq!(
            decode_all(&mut decoder, &wire),
            (vec![text("Hello"), text("Hello")], None)
        );
        assert!(decoder.inflater.is_some());
        // Without takeover the second message has no window to refer to.
        let (messages, err) = decode_all(
            &mut Decoder::new(Role::Server, LIMITS, Some(NO_TAKEOVER)),
            &wire,
        );
        assert!(err.is_some() || messages.get(1) != Some(&text("Hello")));
        // A client decoder follows the server's direction.
        let client_takeover = Params {
            server_no_context_takeover: false,
            ..NO_TAKEOVER
        };
        let mut wire = BytesMut::new();
        put_frame(
            &mut wire,
            OpCode::Text,
            true,
            true,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        );
        put_frame(
            &mut wire,
            OpCode::Text,
            true,
            true,
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        );
        assert_eq!(
            decode_all(
                &mut Decoder::new(Role::Client, LIMITS, Some(client_takeover)),
                &wire
            ),
            (vec![text("Hello"), text("Hello")], None)
        );
    }

    #[test]
    fn compressed_limits_and_utf8() {
        let limits = Limits {
            frame_bytes_max: 1 << 20,
            message_bytes_max: 1000,
        };
        let deflating = || Decoder::new(Role::Server, limits, Some(NO_TAKEOVER));
        let wire = cframe(OpCode::Binary, true, true, &compressed(&[0u8; 1000]));
        assert_eq!(
            decode_all(&mut deflating(), &wire),
            (vec![binary(&[0u8; 1000])], None)
        );
        // A small frame that inflates past the limit.
        let bomb = compressed(&vec![0u8; 1 << 20]);
        let wire = cframe(OpCode::Binary, true, true, &bomb);
        assert!(wire.len() < 16 * 1024);
        let mut decoder = deflating();
        assert_eq!(error_of(&mut decoder, &wire), WsError::TooBig);
        assert!(!decoder.in_message());
        // The limit spans fragments.
        let half = compressed(&[b'x'; 1001]);
        let mut wire = cframe(OpCode::Text, false, true, &half[..half.len() / 2]);
        wire.extend(cframe(
            OpCode::Continuation,
            true,
            false,
            &half[half.len() / 2..],
        ));
        assert_eq!(error_of(&mut deflating(), &wire), WsError::TooBig);
        // Inflated text is validated.
        let wire = cframe(OpCode::Text, true, true, &compressed(b"ok \xc0\xaf"));
        assert_eq!(error_of(&mut deflating(), &wire), WsError::InvalidUtf8);
        let wire = cframe(OpCode::Text, true, true, &compressed("κόσμε".as_bytes()));
        assert_eq!(
            decode_all(&mut deflating(), &wire),
            (vec![text("κόσμε")], None)
        );
        // Garbage is a protocol error.
        let wire = cframe(OpCode::Binary, true, true, &[0xff, 0xff, 0xff]);
        assert_eq!(
            error_of(&mut deflating(), &wire),
            WsError::Protocol("invalid compressed data")
        );
    }

    #[test]
    fn invalid_inflated_text_before_corrupt_data_is_invalid_utf8_however_it_is_read() {
        // A stored block holding 0xff, which no UTF-8 text contains, then a block of the
        // reserved type 3: the text is invalid before the compressed data is. Found by the
        // websocket_decoder fuzz target, which read 1002 whole and 1007 byte by byte.
        let wire = cframe(
            OpCode::Text,
            true,
            true,
            &[0x00, 0x01, 0x00, 0xfe, 0xff, 0xff, 0x07],
        );
        for step in [wire.len(), 1, 3] {
            let mut decoder = Decoder::new(Role::Server, LIMITS, Some(NO_TAKEOVER));
            assert_eq!(
                decode_in_steps(&mut decoder, &wire, step),
                (vec![], Some(WsError::InvalidUtf8)),
                "step {step}"
            );
        }
    }

    #[test]
    fn byte_at_a_time_gives_the_same_messages() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        wire.extend(cframe(OpCode::Text, true, false, "first κόσμε".as_bytes()));
        wire.extend(cframe(OpCode::Text, false, false, b"frag \xce"));
        wire.extend(cframe(OpCode::Ping, true, false, b"mid"));
        wire.extend(cframe(OpCode::Continuation, false, false, b"\xba"));
        wire.extend(cframe(OpCode::Continuation, true, false, b" end"));
        wire.extend(cframe(OpCode::Binary, true, false, &big));
        wire.extend(cframe(OpCode::Binary, true, false, b""));
        let packed = compressed(&big);
        wire.extend(cframe(OpCode::Binary, false, true, &packed[..100]));
        wire.extend(cframe(OpCode::Pong, true, false, b""));
        wire.extend(cframe(OpCode::Continuation, true, false, &packed[100..]));
        wire.extend(cframe(OpCode::Text, true, true, &compressed(b"squeezed")));
        wire.extend(cframe(OpCode::Close, true, false, b"\x03\xe9going"));
        let expected = vec![
            text("first κόσμε"),
            Message::Ping(Bytes::from_static(b"mid")),
            text("frag κ end"),
            binary(&big),
            binary(b""),
            Message::Pong(Bytes::new()),
            binary(&big),
            text("squeezed"),
            Message::Close(Some((1001, "going".to_owned()))),
        ];
        for step in [wire.len(), 1, 2, 3, 5, 13, 64, 4096] {
            let mut decoder = Decoder::new(Role::Server, LIMITS, Some(NO_TAKEOVER));
            let got = decode_in_steps(&mut decoder, &wire, step);
            assert_eq!(got, (expected.clone(), None), "step {step}");
            assert!(!decoder.in_message());
        }
    }
}
