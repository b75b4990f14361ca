//! Request smuggling over loopback: a corpus of framing vectors (CL.TE, TE.CL and TE.TE
//! obfuscations, malformed and duplicate lengths, bare LF and CR, NUL, obs-fold, chunk sizes and
//! extensions, trailers, HTTP/1.0, Host, bodies on GET, requests hidden in bodies), generated
//! from families and variants. Each vector goes on a fresh connection, followed by a canary. Every
//! vector must be refused (one error answer, then the connection closes) or read exactly as a
//! strict RFC 9112 parser reads it, and the publish hidden in each one must never run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;

/// The answer to the request that carries a vector: `/outer/...` is not found, whatever the method.
const OUTER: u16 = 404;
/// The answer to the canary.
const CANARY_OK: u16 = 200;
/// The answer a hidden publish gets if it runs.
const HIDDEN_RAN: u16 = 202;
/// Sent after every vector on the same connection. It asks to close, so the connection ends once
/// the canary is answered.
const CANARY: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n";
/// The router's idle and head timeouts in this test: a vector whose strict reading leaves the
/// connection waiting ends after this.
const TIMEOUT_MS: u64 = 300;

/// How a strict parser reads a vector followed by the canary.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reading {
    /// Statuses of the answers, in order, until the connection closes.
    statuses: Vec<u16>,
    /// The last answer refuses a request that cannot be read: it closes the connection.
    refused: bool,
}

impl Reading {
    /// Refused at once: one error answer, then the connection closes.
    fn refused(status: u16) -> Reading {
        Reading {
            statuses: vec![status],
            refused: true,
        }
    }

    /// The request is read with its body, the hidden request inside it; the canary is the next
    /// request.
    fn read() -> Reading {
        Reading {
            statuses: vec![OUTER, CANARY_OK],
            refused: false,
        }
    }

    /// The request is read without a body; the bytes after it are not a request and are refused.
    fn read_then_refused(status: u16) -> Reading {
        Reading {
            statuses: vec![OUTER, status],
            refused: true,
        }
    }

    /// The request is read, and nothing after it is a request: the canary is inside its body,
    /// or the connection closes after it.
    fn read_only() -> Reading {
        Reading {
            statuses: vec![OUTER],
            refused: false,
        }
    }
}

struct Vector {
    family: &'static str,
    name: String,
    raw: Vec<u8>,
    reading: Reading,
}

/// The vectors; a vector's number names its hidden publish (`/hidden/v<n>`) and its request
/// (`/outer/v<n>`).
#[derive(Default)]
struct Corpus {
    vectors: Vec<Vector>,
}

impl Corpus {
    /// The number of the next vector.
    fn id(&self) -> usize {
        self.vectors.len()
    }

    /// The hidden request of the next vector.
    fn hidden(&self) -> Vec<u8> {
        hidden(self.id())
    }

    fn push(
        &mut self,
        family: &'static str,
        name: impl Into<String>,
        raw: Vec<u8>,
        reading: Reading,
    ) {
        self.vectors.push(Vector {
            family,
            name: name.into(),
            raw,
            reading,
        });
    }
}

/// A publish that a watching tunnel would receive if it ran.
fn hidden(id: usize) -> Vec<u8> {
    format!("POST /publish/hidden/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n\"hi\"")
        .into_bytes()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `METHOD /outer/v<id> VERSION`, then `headers` (each line with its CRLF), the empty line, `body`.
fn request(method: &str, id: usize, version: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    cat(&[
        format!("{method} /outer/v{id} {version}\r\n").as_bytes(),
        headers,
        b"\r\n",
        body,
    ])
}

/// An HTTP/1.1 POST with `Host` first.
fn post(id: usize, headers: &[u8], body: &[u8]) -> Vec<u8> {
    request(
        "POST",
        id,
        "HTTP/1.1",
        &cat(&[b"Host: h\r\n", headers]),
        body,
    )
}

fn content_length(n: usize) -> Vec<u8> {
    format!("Content-Length: {n}\r\n").into_bytes()
}

const TE_CHUNKED: &[u8] = b"Transfer-Encoding: chunked\r\n";

/// The chunk-size line of `data` (lowercase hex, no extension).
fn size_line(data: &[u8]) -> Vec<u8> {
    format!("{:x}\r\n", data.len()).into_bytes()
}

/// `data` as one chunk, then the last chunk.
fn chunked(data: &[u8]) -> Vec<u8> {
    cat(&[&size_line(data), data, b"\r\n0\r\n\r\n"])
}

/// What a strict parser makes of a Transfer-Encoding variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Te {
    /// Exactly `chunked`: a chunked body.
    Chunked,
    /// A malformed line or framing: refused with this status.
    Refused(u16),
    /// Not a framing field at all (another field name).
    Ignored,
}

/// Transfer-Encoding lines and their obfuscations (PortSwigger's list and more), each with its
/// CRLF.
fn te_variants() -> Vec<(&'static str, &'static [u8], Te)> {
    use Te::*;
    vec![
        ("plain", b"Transfer-Encoding: chunked\r\n", Chunked),
        ("no space", b"Transfer-Encoding:chunked\r\n", Chunked),
        (
            "tab before value",
            b"Transfer-Encoding:\tchunked\r\n",
            Chunked,
        ),
        (
            "padded value",
            b"Transfer-Encoding:   chunked  \r\n",
            Chunked,
        ),
        (
            "tab after value",
            b"Transfer-Encoding: chunked\t\r\n",
            Chunked,
        ),
        (
            "lowercase name, uppercase value",
            b"transfer-encoding: CHUNKED\r\n",
            Chunked,
        ),
        ("uppercase name", b"TRANSFER-ENCODING: Chunked\r\n", Chunked),
        (
            "mixed case value",
            b"Transfer-Encoding: cHuNkEd\r\n",
            Chunked,
        ),
        ("xchunked", b"Transfer-Encoding: xchunked\r\n", Refused(400)),
        ("chunkedx", b"Transfer-Encoding: chunkedx\r\n", Refused(400)),
        ("chunk", b"Transfer-Encoding: chunk\r\n", Refused(400)),
        ("x", b"Transfer-Encoding: x\r\n", Refused(400)),
        ("identity", b"Transfer-Encoding: identity\r\n", Refused(400)),
        ("empty value", b"Transfer-Encoding: \r\n", Refused(400)),
        (
            "space before colon",
            b"Transfer-Encoding : chunked\r\n",
            Refused(400),
        ),
        (
            "tab before colon",
            b"Transfer-Encoding\t: chunked\r\n",
            Refused(400),
        ),
        (
            "leading space (obs-fold)",
            b" Transfer-Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "leading tab (obs-fold)",
            b"\tTransfer-Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "folded value",
            b"Transfer-Encoding:\r\n chunked\r\n",
            Refused(400),
        ),
        (
            "folded continuation",
            b"Transfer-Encoding: chunked\r\n\tidentity\r\n",
            Refused(400),
        ),
        (
            "behind a bare LF",
            b"X: X\nTransfer-Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "bare LF after value",
            b"Transfer-Encoding: chunked\n",
            Refused(400),
        ),
        (
            "behind a bare CR",
            b"X: X\rTransfer-Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "name and colon split",
            b"Transfer-Encoding\r\n: chunked\r\n",
            Refused(400),
        ),
        (
            "chunked, identity",
            b"Transfer-Encoding: chunked, identity\r\n",
            Refused(400),
        ),
        (
            "chunked, chunked",
            b"Transfer-Encoding: chunked, chunked\r\n",
            Refused(400),
        ),
        (
            "chunked, gzip",
            b"Transfer-Encoding: chunked, gzip\r\n",
            Refused(400),
        ),
        (
            "trailing comma",
            b"Transfer-Encoding: chunked,\r\n",
            Refused(400),
        ),
        (
            "leading comma",
            b"Transfer-Encoding: ,chunked\r\n",
            Refused(400),
        ),
        (
            "double quotes",
            b"Transfer-Encoding: \"chunked\"\r\n",
            Refused(400),
        ),
        (
            "single quotes",
            b"Transfer-Encoding: 'chunked'\r\n",
            Refused(400),
        ),
        (
            "parameter",
            b"Transfer-Encoding: chunked;q=1\r\n",
            Refused(400),
        ),
        (
            "empty parameter",
            b"Transfer-Encoding: chunked;\r\n",
            Refused(400),
        ),
        (
            "two words",
            b"Transfer-Encoding: chunked chunked\r\n",
            Refused(400),
        ),
        (
            "vertical tab",
            b"Transfer-Encoding: chunked\x0b\r\n",
            Refused(400),
        ),
        (
            "form feed",
            b"Transfer-Encoding: \x0cchunked\r\n",
            Refused(400),
        ),
        (
            "NUL after value",
            b"Transfer-Encoding: chunked\x00\r\n",
            Refused(400),
        ),
        (
            "NUL inside value",
            b"Transfer-Encoding: chun\x00ked\r\n",
            Refused(400),
        ),
        (
            "NUL in name",
            b"Transfer-Encoding\x00: chunked\r\n",
            Refused(400),
        ),
        (
            "obs-text in value",
            b"Transfer-Encoding: chunk\xc3\xa9d\r\n",
            Refused(400),
        ),
        (
            "0xff after value",
            b"Transfer-Encoding: chunked\xff\r\n",
            Refused(400),
        ),
        (
            "underscore",
            b"Transfer_Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "space in name",
            b"Transfer Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "two lines",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "two lines, second x",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
            Refused(400),
        ),
        (
            "two lines, first x",
            b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n",
            Refused(400),
        ),
        (
            "two lines, identity",
            b"Transfer-Encoding: chunked\r\ntransfer-encoding: identity\r\n",
            Refused(400),
        ),
        (
            "gzip, chunked",
            b"Transfer-Encoding: gzip, chunked\r\n",
            Refused(501),
        ),
        (
            "identity, chunked",
            b"Transfer-Encoding: identity, chunked\r\n",
            Refused(501),
        ),
        (
            "deflate,chunked",
            b"Transfer-Encoding: deflate,chunked\r\n",
            Refused(501),
        ),
        (
            "xchunked, chunked",
            b"Transfer-Encoding: xchunked, chunked\r\n",
            Refused(501),
        ),
        (
            "compress, gzip, chunked",
            b"Transfer-Encoding: compress, gzip, chunked\r\n",
            Refused(501),
        ),
        (
            "Transfer-Encodings",
            b"Transfer-Encodings: chunked\r\n",
            Ignored,
        ),
        (
            "X-Transfer-Encoding",
            b"X-Transfer-Encoding: chunked\r\n",
            Ignored,
        ),
        (
            "Content-Encoding",
            b"Content-Encoding: chunked\r\n",
            Ignored,
        ),
        ("TE", b"TE: chunked\r\n", Ignored),
        (
            "Transfer-Encodin",
            b"Transfer-Encodin: chunked\r\n",
            Ignored,
        ),
    ]
}

/// Every Transfer-Encoding variant alone, after a Content-Length (CL.TE), before one (TE.CL)
/// and after a plain `Transfer-Encoding: chunked` (TE.TE).
fn te_families(c: &mut Corpus) {
    for (name, line, te) in te_variants() {
        // Alone, the hidden request is the data of a chunk.
        let id = c.id();
        let raw = post(id, line, &chunked(&c.hidden()));
        let reading = match te {
            Te::Chunked => Reading::read(),
            Te::Refused(status) => Reading::refused(status),
            // No body: the chunk-size line that follows is not a request line.
            Te::Ignored => Reading::read_then_refused(400),
        };
        c.push("TE alone", name, raw, reading);

        // CL.TE: a front end that frames by Content-Length sends the body whole; a back end
        // that frames by chunked would end it at `0` and run the hidden request.
        let id = c.id();
        let body = cat(&[b"0\r\n\r\n", &c.hidden()]);
        let raw = post(id, &cat(&[&content_length(body.len()), line]), &body);
        let reading = match te {
            Te::Chunked => Reading::refused(400),
            Te::Refused(status) => Reading::refused(status),
            Te::Ignored => Reading::read(),
        };
        c.push("CL.TE", name, raw, reading);

        // TE.CL: the length covers only the chunk-size line; a back end framing by it would run
        // the hidden request in the chunk. With a field that is not Transfer-Encoding the strict
        // reading is that Content-Length, so such a variant has nothing to hide here.
        if te != Te::Ignored {
            let id = c.id();
            let hidden = c.hidden();
            let raw = post(
                id,
                &cat(&[line, &content_length(size_line(&hidden).len())]),
                &chunked(&hidden),
            );
            let reading = match te {
                Te::Refused(status) => Reading::refused(status),
                _ => Reading::refused(400),
            };
            c.push("TE.CL", name, raw, reading);
        }

        // TE.TE: a plain Transfer-Encoding, then the variant, which one reader may ignore.
        let id = c.id();
        let raw = post(id, &cat(&[TE_CHUNKED, line]), &chunked(&c.hidden()));
        let reading = match te {
            Te::Ignored => Reading::read(),
            _ => Reading::refused(400),
        };
        c.push("TE.TE", name, raw, reading);
    }
}

/// Content-Length field lines for a body of `len` bytes: `Some(status)` when refused.
fn cl_lines(len: usize) -> Vec<(&'static str, Vec<u8>, Option<u16>)> {
    let l = len.to_string();
    let (l1, l2) = l.split_at(1);
    let line = |value: &[u8]| cat(&[b"Content-Length: ", value, b"\r\n"]);
    let text = |value: String| line(value.as_bytes());
    vec![
        ("plain", text(l.clone()), None),
        (
            "no space",
            format!("Content-Length:{l}\r\n").into_bytes(),
            None,
        ),
        ("trailing space", text(format!("{l} ")), None),
        ("trailing tab", text(format!("{l}\t")), None),
        ("padded", text(format!("\t {l} \t")), None),
        ("plus sign", text(format!("+{l}")), Some(400)),
        ("minus sign", text(format!("-{l}")), Some(400)),
        ("minus zero", text("-0".into()), Some(400)),
        ("leading zero", text(format!("0{l}")), Some(400)),
        ("two leading zeros", text(format!("00{l}")), Some(400)),
        ("double zero", text("00".into()), Some(400)),
        ("decimal point", text(format!("{l}.0")), Some(400)),
        ("exponent", text(format!("{l}e0")), Some(400)),
        ("hex", text(format!("0x{len:x}")), Some(400)),
        ("list", text(format!("{l},{l}")), Some(400)),
        ("list with space", text(format!("{l}, {l}")), Some(400)),
        ("list with zero", text(format!("{l}, 0")), Some(400)),
        ("trailing comma", text(format!("{l},")), Some(400)),
        ("inner space", text(format!("{l1} {l2}")), Some(400)),
        ("inner tab", text(format!("{l1}\t{l2}")), Some(400)),
        ("semicolon", text(format!("{l};")), Some(400)),
        ("quoted", text(format!("\"{l}\"")), Some(400)),
        ("underscore", text(format!("{l1}_{l2}")), Some(400)),
        ("letter", text(format!("{l}a")), Some(400)),
        ("empty", text(String::new()), Some(400)),
        ("blank", text(" ".into()), Some(400)),
        (
            "2^64 wraps to 0",
            text("18446744073709551616".into()),
            Some(400),
        ),
        (
            "2^64 + length wraps to the length",
            text((u128::from(u64::MAX) + 1 + len as u128).to_string()),
            Some(400),
        ),
        ("far too many digits", text("9".repeat(40)), Some(400)),
        (
            "2^32 + length",
            text((4_294_967_296 + len as u64).to_string()),
            Some(413),
        ),
        ("over body_bytes_max", text("65537".into()), Some(413)),
        (
            "vertical tab",
            line(&cat(&[l.as_bytes(), b"\x0b"])),
            Some(400),
        ),
        ("NUL after", line(&cat(&[l.as_bytes(), b"\x00"])), Some(400)),
        (
            "NUL before",
            line(&cat(&[b"\x00", l.as_bytes()])),
            Some(400),
        ),
        (
            "bare CR inside",
            line(&cat(&[l.as_bytes(), b"\rX"])),
            Some(400),
        ),
        (
            "no-break space",
            line(&cat(&[l.as_bytes(), b"\xc2\xa0"])),
            Some(400),
        ),
        (
            "Arabic-Indic digits",
            text("\u{667}\u{666}".into()),
            Some(400),
        ),
        (
            "fullwidth digits",
            text("\u{ff17}\u{ff16}".into()),
            Some(400),
        ),
    ]
}

/// Content-Length values, duplicates and obfuscated names, with the hidden request as the body.
fn cl_families(c: &mut Corpus) {
    let len = c.hidden().len();
    for (name, header, status) in cl_lines(len) {
        let id = c.id();
        let raw = post(id, &header, &c.hidden());
        let reading = status.map_or_else(Reading::read, Reading::refused);
        c.push("Content-Length value", name, raw, reading);
    }

    let l = len;
    let lines: Vec<(&str, String)> = vec![
        (
            "same twice",
            format!("Content-Length: {l}\r\nContent-Length: {l}\r\n"),
        ),
        (
            "then zero",
            format!("Content-Length: {l}\r\nContent-Length: 0\r\n"),
        ),
        (
            "zero first",
            format!("Content-Length: 0\r\nContent-Length: {l}\r\n"),
        ),
        (
            "other case",
            format!("Content-Length: {l}\r\ncontent-length: {l}\r\n"),
        ),
        (
            "then a list",
            format!("Content-Length: {l}\r\nContent-Length: {l}, {l}\r\n"),
        ),
        (
            "three times",
            format!("Content-Length: {l}\r\nContent-Length: {l}\r\nContent-Length: {l}\r\n"),
        ),
        (
            "apart",
            format!("Content-Length: {l}\r\nX: y\r\nCONTENT-LENGTH: 1\r\n"),
        ),
        (
            "then underscore",
            format!("Content-Length: {l}\r\nContent_Length: 0\r\n"),
        ),
        ("underscore", format!("Content_Length: {l}\r\n")),
        ("space before colon", format!("Content-Length : {l}\r\n")),
        ("tab before colon", format!("Content-Length\t: {l}\r\n")),
        (
            "leading space (obs-fold)",
            format!(" Content-Length: {l}\r\n"),
        ),
        ("folded value", format!("Content-Length:\r\n {l}\r\n")),
        (
            "folded after a value",
            format!("Content-Length: {l}\r\n 0\r\n"),
        ),
        (
            "name and colon split",
            format!("Content-Length\r\n: {l}\r\n"),
        ),
        ("space in name", format!("Content Length: {l}\r\n")),
        ("behind a bare LF", format!("X: y\nContent-Length: {l}\r\n")),
        ("behind a bare CR", format!("X: y\rContent-Length: {l}\r\n")),
    ];
    for (name, line) in lines {
        let id = c.id();
        let raw = post(id, line.as_bytes(), &c.hidden());
        c.push(
            "Content-Length duplicate or name",
            name,
            raw,
            Reading::refused(400),
        );
    }

    // The body takes the canary, or part of it, or more than was sent.
    let id = c.id();
    let raw = post(id, &content_length(len + CANARY.len()), &c.hidden());
    c.push(
        "Content-Length swallows",
        "the whole canary",
        raw,
        Reading::read_only(),
    );
    let id = c.id();
    let raw = post(id, &content_length(len + 10), &c.hidden());
    c.push(
        "Content-Length swallows",
        "part of the canary",
        raw,
        Reading::read_then_refused(400),
    );
    let id = c.id();
    let raw = post(id, &content_length(len + CANARY.len() + 100), &c.hidden());
    c.push(
        "Content-Length swallows",
        "more than is sent",
        raw,
        Reading::refused(408),
    );
}

/// Bare LF, bare CR and NUL in the head.
fn line_families(c: &mut Corpus) {
    let heads: Vec<(&str, &str)> = vec![
        ("after the request line", "POST /outer/v{id} HTTP/1.1\nHost: h\r\nContent-Length: {len}\r\n\r\n"),
        ("after a field", "POST /outer/v{id} HTTP/1.1\r\nHost: h\nContent-Length: {len}\r\n\r\n"),
        ("after the last field", "POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\n\r\n"),
        ("as the empty line", "POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\n"),
        ("every line", "POST /outer/v{id} HTTP/1.1\nHost: h\nContent-Length: {len}\n\n"),
        ("before the request line", "\nPOST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n"),
        ("LF LF after CRLF", "POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\n\n"),
        ("hiding Content-Length: 0", "POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\nX: y\nContent-Length: 0\r\n\r\n"),
    ];
    for (name, head) in &heads {
        let id = c.id();
        let hidden = c.hidden();
        let head = head
            .replace("{id}", &id.to_string())
            .replace("{len}", &hidden.len().to_string());
        c.push(
            "bare LF in head",
            *name,
            cat(&[head.as_bytes(), &hidden]),
            Reading::refused(400),
        );
    }
    let bare_cr: Vec<(&str, &[u8])> = vec![
        ("after the request line", b"HTTP/1.1\rHost: h\r\n"),
        ("inside a value", b"HTTP/1.1\r\nHost: h\rX\r\n"),
        ("before CRLF", b"HTTP/1.1\r\nHost: h\r\r\n"),
        ("as the empty line", b"HTTP/1.1\r\nHost: h\r\n\r"),
        ("alone between fields", b"HTTP/1.1\r\nHost: h\r\n\rX: y\r\n"),
    ];
    for (name, part) in bare_cr {
        let id = c.id();
        let hidden = c.hidden();
        let raw = cat(&[
            format!("POST /outer/v{id} ").as_bytes(),
            part,
            &content_length(hidden.len()),
            b"\r\n",
            &hidden,
        ]);
        c.push("bare CR in head", name, raw, Reading::refused(400));
    }
    let nul: Vec<(&str, &[u8], &[u8])> = vec![
        ("in the method", b"PO\x00ST", b"Host: h\r\n"),
        ("in the target", b"POST /outer\x00", b"Host: h\r\n"),
        ("in a field name", b"POST", b"Host: h\r\nX\x00Y: z\r\n"),
        ("in a field value", b"POST", b"Host: h\r\nX: a\x00b\r\n"),
        ("alone in a value", b"POST", b"Host: h\r\nX: \x00\r\n"),
        ("in Host", b"POST", b"Host: h\x00\r\n"),
        ("as a line", b"POST", b"Host: h\r\n\x00\r\n"),
    ];
    for (name, start, headers) in nul {
        let id = c.id();
        let hidden = c.hidden();
        let raw = cat(&[
            start,
            format!(" /outer/v{id} HTTP/1.1\r\n").as_bytes(),
            headers,
            &content_length(hidden.len()),
            b"\r\n",
            &hidden,
        ]);
        c.push("NUL in head", name, raw, Reading::refused(400));
    }
    // obs-fold and whitespace around field names, on fields that are not framing fields too.
    let folds: Vec<(&str, &[u8])> = vec![
        ("space fold", b"X: a\r\n b\r\n"),
        ("tab fold", b"X: a\r\n\tb\r\n"),
        ("fold of Host", b"Host: h\r\n h2\r\n"),
        ("empty fold", b"X: a\r\n \r\n"),
        ("space before colon", b"X : a\r\n"),
        ("tab before colon", b"X\t: a\r\n"),
        ("empty name", b": a\r\n"),
        ("no colon", b"X a\r\n"),
        (
            "header that is a request line",
            b"GET /publish/x HTTP/1.1\r\n",
        ),
    ];
    for (name, line) in folds {
        let id = c.id();
        let hidden = c.hidden();
        let raw = post(id, &cat(&[line, &content_length(hidden.len())]), &hidden);
        c.push("obs-fold and field names", name, raw, Reading::refused(400));
    }
}

/// Request lines that are not `method SP origin-form SP HTTP/1.x`.
fn request_line_family(c: &mut Corpus) {
    let lines: Vec<(&str, &str)> = vec![
        (
            "two spaces before the target",
            "POST  /outer/v{id} HTTP/1.1",
        ),
        (
            "two spaces before the version",
            "POST /outer/v{id}  HTTP/1.1",
        ),
        ("tab separator", "POST\t/outer/v{id} HTTP/1.1"),
        ("trailing space", "POST /outer/v{id} HTTP/1.1 "),
        ("leading space", " POST /outer/v{id} HTTP/1.1"),
        ("HTTP/1.10", "POST /outer/v{id} HTTP/1.10"),
        ("HTTP/1.2", "POST /outer/v{id} HTTP/1.2"),
        ("HTTP/2.0", "POST /outer/v{id} HTTP/2.0"),
        ("lowercase version", "POST /outer/v{id} http/1.1"),
        ("HTTP/1", "POST /outer/v{id} HTTP/1"),
        ("no version (HTTP/0.9)", "POST /outer/v{id}"),
        ("absolute form", "POST http://h/outer/v{id} HTTP/1.1"),
        ("authority form", "POST h:80 HTTP/1.1"),
        ("fragment", "POST /outer/v{id}#f HTTP/1.1"),
        ("asterisk", "POST * HTTP/1.1"),
    ];
    for (name, line) in lines {
        let id = c.id();
        let hidden = c.hidden();
        let line = line.replace("{id}", &id.to_string());
        let raw = cat(&[
            line.as_bytes(),
            b"\r\nHost: h\r\n",
            &content_length(hidden.len()),
            b"\r\n",
            &hidden,
        ]);
        c.push("request line", name, raw, Reading::refused(400));
    }
}

/// Host count and values (RFC 9112 §3.2), with the hidden request as the body.
fn host_family(c: &mut Corpus) {
    let cases: Vec<(&str, &str, &[u8], Reading)> = vec![
        ("missing", "HTTP/1.1", b"", Reading::refused(400)),
        (
            "twice",
            "HTTP/1.1",
            b"Host: h\r\nHost: h\r\n",
            Reading::refused(400),
        ),
        (
            "two values",
            "HTTP/1.1",
            b"Host: a\r\nHost: b\r\n",
            Reading::refused(400),
        ),
        (
            "twice, other case",
            "HTTP/1.1",
            b"Host: h\r\nhost: h\r\n",
            Reading::refused(400),
        ),
        (
            "empty then set",
            "HTTP/1.1",
            b"Host:\r\nHost: h\r\n",
            Reading::refused(400),
        ),
        (
            "apart",
            "HTTP/1.1",
            b"Host: h\r\nX: y\r\nHOST: h\r\n",
            Reading::refused(400),
        ),
        (
            "list with a space",
            "HTTP/1.1",
            b"Host: a, b\r\n",
            Reading::refused(400),
        ),
        (
            "sub-delims (RFC 3986 reg-name)",
            "HTTP/1.1",
            b"Host: a,b\r\n",
            Reading::read(),
        ),
        (
            "with userinfo",
            "HTTP/1.1",
            b"Host: u@h\r\n",
            Reading::refused(400),
        ),
        (
            "with a path",
            "HTTP/1.1",
            b"Host: h/x\r\n",
            Reading::refused(400),
        ),
        (
            "with a space",
            "HTTP/1.1",
            b"Host: a b\r\n",
            Reading::refused(400),
        ),
        (
            "two ports",
            "HTTP/1.1",
            b"Host: h:80:80\r\n",
            Reading::refused(400),
        ),
        (
            "letters in port",
            "HTTP/1.1",
            b"Host: h:8x\r\n",
            Reading::refused(400),
        ),
        (
            "unclosed IP literal",
            "HTTP/1.1",
            b"Host: [::1\r\n",
            Reading::refused(400),
        ),
        (
            "obs-text",
            "HTTP/1.1",
            b"Host: h\xe9\r\n",
            Reading::refused(400),
        ),
        // An unknown field, so the request has no Host.
        (
            "underscore name",
            "HTTP/1.1",
            b"Host_: h\r\n",
            Reading::refused(400),
        ),
        ("plain", "HTTP/1.1", b"Host: h\r\n", Reading::read()),
        (
            "empty (RFC 9112 §3.2)",
            "HTTP/1.1",
            b"Host:\r\n",
            Reading::read(),
        ),
        (
            "name and port",
            "HTTP/1.1",
            b"Host: example.com:8080\r\n",
            Reading::read(),
        ),
        ("IPv4", "HTTP/1.1", b"Host: 127.0.0.1\r\n", Reading::read()),
        (
            "IPv6 and port",
            "HTTP/1.1",
            b"Host: [::1]:8080\r\n",
            Reading::read(),
        ),
        (
            "HTTP/1.0 without",
            "HTTP/1.0",
            b"Connection: keep-alive\r\n",
            Reading::read(),
        ),
        (
            "HTTP/1.0 with",
            "HTTP/1.0",
            b"Host: h\r\nConnection: keep-alive\r\n",
            Reading::read(),
        ),
        (
            "HTTP/1.0 twice",
            "HTTP/1.0",
            b"Host: h\r\nHost: h\r\nConnection: keep-alive\r\n",
            Reading::refused(400),
        ),
    ];
    for (name, version, headers, reading) in cases {
        let id = c.id();
        let hidden = c.hidden();
        let raw = request(
            "POST",
            id,
            version,
            &cat(&[headers, &content_length(hidden.len())]),
            &hidden,
        );
        c.push("Host", name, raw, reading);
    }
}

/// HTTP/1.0 requests: no chunked coding there, and a connection that closes after the answer
/// unless asked to stay.
fn http10_family(c: &mut Corpus) {
    let chunked_cases: Vec<(&str, &[u8], Reading)> = vec![
        (
            "TE chunked",
            b"Transfer-Encoding: chunked\r\n",
            Reading::refused(400),
        ),
        (
            "TE Chunked",
            b"Transfer-Encoding: Chunked\r\n",
            Reading::refused(400),
        ),
        (
            "TE chunked, keep-alive",
            b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n",
            Reading::refused(400),
        ),
        (
            "TE chunked with Host",
            b"Host: h\r\nTransfer-Encoding: chunked\r\n",
            Reading::refused(400),
        ),
        (
            "TE gzip, chunked",
            b"Transfer-Encoding: gzip, chunked\r\n",
            Reading::refused(501),
        ),
        (
            "TE xchunked",
            b"Transfer-Encoding: xchunked\r\n",
            Reading::refused(400),
        ),
        (
            "Transfer_Encoding",
            b"Transfer_Encoding: chunked\r\n",
            Reading::refused(400),
        ),
    ];
    for (name, headers, reading) in chunked_cases {
        let id = c.id();
        let raw = request("POST", id, "HTTP/1.0", headers, &chunked(&c.hidden()));
        c.push("HTTP/1.0", name, raw, reading);
    }
    // CL.TE in HTTP/1.0.
    let id = c.id();
    let body = cat(&[b"0\r\n\r\n", &c.hidden()]);
    let raw = request(
        "POST",
        id,
        "HTTP/1.0",
        &cat(&[&content_length(body.len()), TE_CHUNKED]),
        &body,
    );
    c.push("HTTP/1.0", "CL.TE", raw, Reading::refused(400));
    // Content-Length bodies: the canary follows only on a kept connection.
    let id = c.id();
    let hidden = c.hidden();
    let raw = request(
        "POST",
        id,
        "HTTP/1.0",
        &content_length(hidden.len()),
        &hidden,
    );
    c.push(
        "HTTP/1.0",
        "Content-Length, then close",
        raw,
        Reading::read_only(),
    );
    let id = c.id();
    let hidden = c.hidden();
    let raw = request(
        "POST",
        id,
        "HTTP/1.0",
        &cat(&[b"Connection: keep-alive\r\n", &content_length(hidden.len())]),
        &hidden,
    );
    c.push(
        "HTTP/1.0",
        "Content-Length, keep-alive",
        raw,
        Reading::read(),
    );
    // A request with no body, then the hidden request: never read, the connection closes after
    // the first answer.
    let id = c.id();
    let raw = cat(&[&request("GET", id, "HTTP/1.0", b"", b""), &c.hidden()]);
    c.push(
        "after a closing answer",
        "HTTP/1.0 without keep-alive",
        raw,
        Reading::read_only(),
    );
    let id = c.id();
    let raw = cat(&[
        &request(
            "GET",
            id,
            "HTTP/1.1",
            b"Host: h\r\nConnection: close\r\n",
            b"",
        ),
        &c.hidden(),
    ]);
    c.push(
        "after a closing answer",
        "HTTP/1.1 with Connection: close",
        raw,
        Reading::read_only(),
    );
}

/// Bodies on requests whose method gives them no meaning: read by their framing and dropped.
fn method_body_family(c: &mut Corpus) {
    for method in ["GET", "DELETE", "PUT", "PATCH", "POST"] {
        let id = c.id();
        let hidden = c.hidden();
        let raw = request(
            method,
            id,
            "HTTP/1.1",
            &cat(&[b"Host: h\r\n", &content_length(hidden.len())]),
            &hidden,
        );
        c.push(
            "body on any method",
            format!("{method} with Content-Length"),
            raw,
            Reading::read(),
        );
        let id = c.id();
        let raw = request(
            method,
            id,
            "HTTP/1.1",
            &cat(&[b"Host: h\r\n", TE_CHUNKED]),
            &chunked(&c.hidden()),
        );
        c.push(
            "body on any method",
            format!("{method} chunked"),
            raw,
            Reading::read(),
        );
        let id = c.id();
        let body = cat(&[b"0\r\n\r\n", &c.hidden()]);
        let raw = request(
            method,
            id,
            "HTTP/1.1",
            &cat(&[b"Host: h\r\n", &content_length(body.len()), TE_CHUNKED]),
            &body,
        );
        c.push(
            "body on any method",
            format!("{method} CL.TE"),
            raw,
            Reading::refused(400),
        );
    }
}

/// Chunk-size lines for a chunk holding the hidden request: `None` when valid.
fn size_lines(len: usize) -> Vec<(&'static str, Vec<u8>, Option<u16>)> {
    let h = format!("{len:x}");
    let upper = h.to_uppercase();
    let v = |s: String| s.into_bytes();
    vec![
        ("lowercase hex", v(h.clone()), None),
        ("uppercase hex", v(upper.clone()), None),
        ("one leading zero", v(format!("0{h}")), None),
        ("leading zeros to 16 digits", v(format!("{h:0>16}")), None),
        ("extension", v(format!("{h};x")), None),
        ("extension with value", v(format!("{h};x=y")), None),
        ("quoted extension", v(format!("{h};x=\"a;b\\\" c\"")), None),
        ("BWS before extension", v(format!("{h} \t;x")), None),
        ("BWS around =", v(format!("{h};x = y")), None),
        ("two extensions", v(format!("{h};a;b=1")), None),
        ("17 digits", v(format!("{h:0>17}")), Some(400)),
        ("plus sign", v(format!("+{h}")), Some(400)),
        ("minus sign", v(format!("-{h}")), Some(400)),
        ("0x prefix", v(format!("0x{h}")), Some(400)),
        ("leading space", v(format!(" {h}")), Some(400)),
        ("leading tab", v(format!("\t{h}")), Some(400)),
        ("trailing space", v(format!("{h} ")), Some(400)),
        ("trailing tab", v(format!("{h}\t")), Some(400)),
        ("letter after", v(format!("{h}g")), Some(400)),
        (
            "underscore",
            v(format!("{}_{}", &h[..1], &h[1..])),
            Some(400),
        ),
        ("comma", v(format!("{h},")), Some(400)),
        ("empty extension", v(format!("{h};")), Some(400)),
        ("extension without name", v(format!("{h};=x")), Some(400)),
        ("extension without value", v(format!("{h};x=")), Some(400)),
        ("extension with space", v(format!("{h};x y")), Some(400)),
        ("unclosed quote", v(format!("{h};x=\"y")), Some(400)),
        ("NUL", cat(&[h.as_bytes(), b"\x00"]), Some(400)),
        ("vertical tab", cat(&[h.as_bytes(), b"\x0b"]), Some(400)),
        (
            "NUL in extension",
            cat(&[h.as_bytes(), b";x\x00"]),
            Some(400),
        ),
        (
            "obs-text in extension",
            cat(&[h.as_bytes(), b";\xe9"]),
            Some(400),
        ),
        (
            "extension over a line",
            v(format!("{h};{}", "e".repeat(5000))),
            Some(400),
        ),
        ("overflow", v("1".to_string() + &"0".repeat(16)), Some(400)),
        ("u64::MAX", v("f".repeat(16)), Some(413)),
        ("empty", Vec::new(), Some(400)),
        ("size one short", v(format!("{:x}", len - 1)), Some(400)),
        ("size one long", v(format!("{:x}", len + 1)), Some(400)),
        ("size 1", v("1".to_string()), Some(400)),
        ("size 0 before the data", v("0".to_string()), Some(400)),
    ]
}

/// Chunk-size lines, the CRLF after data, the last chunk and trailers.
fn chunked_families(c: &mut Corpus) {
    let len = c.hidden().len();
    for (name, line, status) in size_lines(len) {
        let id = c.id();
        let body = cat(&[&line, b"\r\n", &c.hidden(), b"\r\n0\r\n\r\n"]);
        let raw = post(id, TE_CHUNKED, &body);
        let reading = status.map_or_else(Reading::read, Reading::refused);
        c.push("chunk size", name, raw, reading);
    }

    let ends: Vec<(&str, &[u8], &[u8], Reading)> = vec![
        ("data then LF", b"\n", b"0\r\n\r\n", Reading::refused(400)),
        ("data then CR", b"\r", b"0\r\n\r\n", Reading::refused(400)),
        (
            "data then nothing",
            b"",
            b"0\r\n\r\n",
            Reading::refused(400),
        ),
        (
            "data then LF CR",
            b"\n\r",
            b"0\r\n\r\n",
            Reading::refused(400),
        ),
        (
            "size line ends in LF",
            b"\r\n",
            b"0\n\r\n",
            Reading::refused(400),
        ),
        (
            "last chunk then LF",
            b"\r\n",
            b"0\r\n\n",
            Reading::refused(400),
        ),
        (
            "last chunk with leading zeros",
            b"\r\n",
            b"000\r\n\r\n",
            Reading::read(),
        ),
        (
            "last chunk with extension",
            b"\r\n",
            b"0;x=1\r\n\r\n",
            Reading::read(),
        ),
        (
            "last chunk with space",
            b"\r\n",
            b"0 \r\n\r\n",
            Reading::refused(400),
        ),
        // Without its empty line, the canary is read as the trailer section and refused.
        (
            "last chunk without the empty line",
            b"\r\n",
            b"0\r\n",
            Reading::refused(400),
        ),
        ("no last chunk", b"\r\n", b"", Reading::refused(400)),
    ];
    for (name, after_data, last, reading) in ends {
        let id = c.id();
        let hidden = c.hidden();
        let body = cat(&[&size_line(&hidden), &hidden, after_data, last]);
        c.push("chunk framing", name, post(id, TE_CHUNKED, &body), reading);
    }

    // The data of a chunk is never read as a request, however it is cut.
    let hidden_len = c.hidden().len();
    for pieces in [2usize, 3, 4, 7, hidden_len] {
        let id = c.id();
        let hidden = c.hidden();
        let step = hidden.len().div_ceil(pieces);
        let mut body = Vec::new();
        for piece in hidden.chunks(step) {
            body.extend_from_slice(&size_line(piece));
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        c.push(
            "hidden in chunks",
            format!("cut in {pieces}"),
            post(id, TE_CHUNKED, &body),
            Reading::read(),
        );
    }
    for at in [1usize, 4, 5, 10, 40] {
        let id = c.id();
        let hidden = c.hidden();
        let (a, b) = hidden.split_at(at.min(hidden.len() - 1));
        let body = cat(&[
            &size_line(a),
            a,
            b"\r\n",
            &size_line(b),
            b,
            b"\r\n0\r\n\r\n",
        ]);
        c.push(
            "hidden in chunks",
            format!("split at {at}"),
            post(id, TE_CHUNKED, &body),
            Reading::read(),
        );
    }
    // Several hidden requests, and a whole pipeline, in one body.
    let id = c.id();
    let three = cat(&[&hidden(id), &hidden(id), &hidden(id)]);
    c.push(
        "hidden in chunks",
        "three in one chunk",
        post(id, TE_CHUNKED, &chunked(&three)),
        Reading::read(),
    );
    let id = c.id();
    let three = cat(&[&hidden(id), &hidden(id), &hidden(id)]);
    c.push(
        "hidden in Content-Length body",
        "three",
        post(id, &content_length(three.len()), &three),
        Reading::read(),
    );
    let id = c.id();
    let inner = cat(&[
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunked(&hidden(id)),
    ]);
    c.push(
        "hidden in Content-Length body",
        "a chunked request holding it",
        post(id, &content_length(inner.len()), &inner),
        Reading::read(),
    );
    let id = c.id();
    let inner = cat(&[b"0\r\n\r\n", &hidden(id), b"\r\n0\r\n\r\n"]);
    c.push(
        "hidden in chunks",
        "a last chunk and the request as data",
        post(id, TE_CHUNKED, &chunked(&inner)),
        Reading::read(),
    );

    let trailers: Vec<(&str, Vec<u8>, Reading)> = vec![
        ("one field", b"X: y\r\n".to_vec(), Reading::read()),
        ("no space", b"X:y\r\n".to_vec(), Reading::read()),
        ("empty value", b"X:\r\n".to_vec(), Reading::read()),
        (
            "Content-Length",
            b"Content-Length: 0\r\n".to_vec(),
            Reading::read(),
        ),
        (
            "Content-Length of the hidden request",
            b"Content-Length: 100\r\n".to_vec(),
            Reading::read(),
        ),
        (
            "Transfer-Encoding",
            b"Transfer-Encoding: chunked\r\n".to_vec(),
            Reading::read(),
        ),
        ("Host", b"Host: other\r\n".to_vec(), Reading::read()),
        (
            "several",
            b"A: 1\r\nB: 2\r\nC: 3\r\n".to_vec(),
            Reading::read(),
        ),
        ("tab in value", b"X: a\tb\r\n".to_vec(), Reading::read()),
        (
            "obs-fold",
            b"X: y\r\n z\r\n".to_vec(),
            Reading::refused(400),
        ),
        (
            "leading space",
            b" X: y\r\n".to_vec(),
            Reading::refused(400),
        ),
        (
            "space before colon",
            b"X : y\r\n".to_vec(),
            Reading::refused(400),
        ),
        ("no colon", b"X\r\n".to_vec(), Reading::refused(400)),
        ("empty name", b": y\r\n".to_vec(), Reading::refused(400)),
        ("bare LF", b"X: y\n".to_vec(), Reading::refused(400)),
        ("bare CR", b"X: y\rZ: 1\r\n".to_vec(), Reading::refused(400)),
        ("NUL", b"X: \x00\r\n".to_vec(), Reading::refused(400)),
        (
            "request line as trailer",
            b"GET /publish/hidden HTTP/1.1\r\n".to_vec(),
            Reading::refused(400),
        ),
        (
            "over 8 KiB",
            format!("X: {}\r\n", "t".repeat(9000)).into_bytes(),
            Reading::refused(431),
        ),
    ];
    for (name, fields, reading) in trailers {
        let id = c.id();
        let hidden = c.hidden();
        let body = cat(&[&size_line(&hidden), &hidden, b"\r\n0\r\n", &fields, b"\r\n"]);
        c.push("trailer", name, post(id, TE_CHUNKED, &body), reading);
    }
    // The hidden request's own head as the trailer section.
    let id = c.id();
    let body = cat(&[b"0\r\n", &c.hidden(), b"\r\n"]);
    c.push(
        "trailer",
        "a request as the trailer section",
        post(id, TE_CHUNKED, &body),
        Reading::refused(400),
    );
}

/// Literal classics, spelled out as they are usually shown.
fn classics(c: &mut Corpus) {
    // PortSwigger's CL.TE: the front end forwards 13 bytes, the back end stops at `0`.
    let id = c.id();
    let raw = format!(
        "POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED"
    );
    c.push(
        "classic",
        "CL.TE (PortSwigger)",
        raw.into_bytes(),
        Reading::refused(400),
    );
    // PortSwigger's TE.CL.
    let id = c.id();
    let raw = format!(
        "POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"
    );
    c.push(
        "classic",
        "TE.CL (PortSwigger)",
        raw.into_bytes(),
        Reading::refused(400),
    );
    // TE.TE with an obfuscated second Transfer-Encoding.
    let id = c.id();
    let hidden = c.hidden();
    let raw = cat(&[
        format!("POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n").as_bytes(),
        &size_line(&hidden),
        &hidden,
        b"\r\n0\r\n\r\n",
    ]);
    c.push("classic", "TE.TE (PortSwigger)", raw, Reading::refused(400));
    // CL.CL: two lengths, one of them framing the hidden request out of the body.
    let id = c.id();
    let hidden = c.hidden();
    let raw = cat(&[
        format!("POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n", hidden.len()).as_bytes(),
        &hidden,
    ]);
    c.push("classic", "CL.CL", raw, Reading::refused(400));
    // CL.0: a GET with a body that a back end ignoring GET bodies would run as a request.
    let id = c.id();
    let hidden = c.hidden();
    let raw = cat(&[
        format!(
            "GET /outer/v{id} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            hidden.len()
        )
        .as_bytes(),
        &hidden,
    ]);
    c.push("classic", "CL.0 (GET with body)", raw, Reading::read());
    // The same with a chunked body, on a method that takes none.
    let id = c.id();
    let raw = cat(&[
        format!("DELETE /outer/v{id} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
        &chunked(&c.hidden()),
    ]);
    c.push("classic", "chunked DELETE", raw, Reading::read());
    // Chunk extension that looks like it holds a request (the line is one extension).
    let id = c.id();
    let raw = format!(
        "POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;POST=\"/publish/hidden/v{id}\"\r\n{{}}\r\n0\r\n\r\n"
    );
    c.push(
        "classic",
        "request-looking extension",
        raw.into_bytes(),
        Reading::read(),
    );
    // A bare-LF chunk line (Node/llhttp and others once disagreed on it).
    let id = c.id();
    let hidden = c.hidden();
    let raw = cat(&[
        format!("POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\n")
            .as_bytes(),
        b"xx\r\n0\r\n\r\n",
        &hidden,
    ]);
    c.push(
        "classic",
        "bare LF chunk size line",
        raw,
        Reading::refused(400),
    );
    // `Transfer-Encoding: chunked` hidden behind `\r` only (a reader that splits on CR alone).
    let id = c.id();
    let raw = cat(&[
        format!("POST /outer/v{id} HTTP/1.1\r\nHost: h\r\nX: y\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").as_bytes(),
        b"0\r\n\r\n",
        &c.hidden(),
    ]);
    c.push("classic", "TE behind a bare CR", raw, Reading::refused(400));
}

fn corpus() -> Vec<Vector> {
    let mut c = Corpus::default();
    te_families(&mut c);
    cl_families(&mut c);
    line_families(&mut c);
    request_line_family(&mut c);
    host_family(&mut c);
    http10_family(&mut c);
    method_body_family(&mut c);
    chunked_families(&mut c);
    classics(&mut c);
    c.vectors
}

/// One answer as the test sees it.
#[derive(Debug)]
struct Answer {
    status: u16,
    close: bool,
}

/// Sends `raw` and the canary on a new connection; returns the answers until the server closed.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Result<Vec<Answer>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&cat(&[raw, CANARY]))
        .map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    match s.read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => {
            return Err(format!(
                "not closed ({e}) after {:?}",
                String::from_utf8_lossy(&bytes)
            ))
        }
    }
    parse_answers(&bytes)
}

/// Splits the bytes the server sent into answers (every answer here has a Content-Length).
fn parse_answers(mut bytes: &[u8]) -> Result<Vec<Answer>, String> {
    let mut answers = Vec::new();
    while !bytes.is_empty() {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let end = find(bytes, b"\r\n\r\n").ok_or_else(|| format!("unterminated head: {text:?}"))?;
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1.1 "))
            .and_then(|l| l.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {text:?}"))?;
        let mut length = 0;
        let mut close = false;
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad field: {line:?}"))?;
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad length: {line:?}"))?;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
        let total = end + 4 + length;
        if bytes.len() < total {
            return Err(format!("short body: {text:?}"));
        }
        bytes = &bytes[total..];
        answers.push(Answer { status, close });
    }
    Ok(answers)
}

/// Checks what the connection answered against the strict reading.
fn check(v: &Vector, answers: &[Answer]) -> Result<(), String> {
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    if statuses.contains(&HIDDEN_RAN) {
        return Err(format!("a hidden request ran: {statuses:?}"));
    }
    if statuses != v.reading.statuses {
        return Err(format!(
            "answers {statuses:?}, strict reading {:?}",
            v.reading.statuses
        ));
    }
    if v.reading.refused && !answers.last().is_some_and(|a| a.close) {
        return Err("the refusal does not close the connection".into());
    }
    Ok(())
}

#[test]
fn smuggling_corpus_is_refused_or_read_strictly_and_runs_no_hidden_request() {
    let started = Instant::now();
    let timeout = TIMEOUT_MS.to_string();
    let addr = start(&[
        "--idle-timeout-ms",
        &timeout,
        "--header-read-timeout-ms",
        &timeout,
    ]);
    // Watches every path a hidden request publishes on.
    let mut watcher = Stream::open(addr, "/tunnel?format=sse&path=/hidden/*");
    assert_eq!(watcher.head.status, 200);
    assert_eq!(
        watcher.sse_json().expect("control datagram")["type"],
        "tunnel"
    );

    let vectors = corpus();
    assert!(vectors.len() >= 250, "only {} vectors", vectors.len());
    let mut failures = Vec::new();
    // Per family: (vectors, refused, read strictly).
    let mut families: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (id, v) in vectors.iter().enumerate() {
        let outcome = exchange(addr, &v.raw).and_then(|answers| check(v, &answers));
        if let Err(e) = outcome {
            failures.push(format!(
                "#{id} {} / {}: {e}\n  sent {:?}",
                v.family,
                v.name,
                String::from_utf8_lossy(&v.raw)
            ));
        }
        let counts = families.entry(v.family).or_default();
        counts.0 += 1;
        if v.reading.refused {
            counts.1 += 1;
        } else {
            counts.2 += 1;
        }
    }

    // No hidden publish ran: nothing was published at all, and the watcher's next datagram is a
    // sentinel published now.
    let published = metrics(addr)["publishes"].as_u64().unwrap();
    let sentinel = publish(addr, "/hidden/sentinel", "1");
    let first = watcher.sse_json().expect("watcher still open");
    let hidden_ran = published as usize + usize::from(first["path"] != "/hidden/sentinel");

    eprintln!(
        "{:<36} {:>7} {:>7} {:>7}",
        "family", "vectors", "refused", "read"
    );
    for (family, (n, refused, read)) in &families {
        eprintln!("{family:<36} {n:>7} {refused:>7} {read:>7}");
    }
    let refused: usize = families.values().map(|c| c.1).sum();
    eprintln!(
        "{} vectors: {refused} end in a refusal, {} are read as a strict parser reads them, {} failed, {hidden_ran} hidden requests executed ({:.1} s)",
        vectors.len(),
        vectors.len() - refused,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(published, 0, "hidden publishes ran");
    assert_eq!(
        first["id"],
        sentinel.as_str(),
        "the watcher received {first}"
    );
    assert_eq!(hidden_ran, 0);
}
