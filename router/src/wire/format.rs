//! Tunnel formats: how each transport frames the stream header, datagrams, keepalives and footer.

use bytes::{BufMut, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;

use super::datagram::Datagram;
use super::template::{Template, Vars};

/// Default JSONP / iframe callback.
pub const IFRAME_CALLBACK_DEFAULT: &str = "parent.tunnel";

/// Bytes of padding the iframe header carries, so browsers start rendering (and running scripts)
/// before the document is complete.
const IFRAME_PADDING_BYTES: usize = 1024;

/// A custom streaming format from the configuration, its templates parsed once.
#[derive(Debug)]
pub struct CustomFormat {
    pub name: String,
    pub content_type: String,
    pub header: Template,
    pub envelope: Template,
    pub keepalive: Template,
    pub footer: Template,
    pub html_escape: bool,
}

/// The tunnel's envelope, chosen with `format=` when it attaches.
#[derive(Debug, Clone)]
pub enum Format {
    Sse,
    Nul,
    Ndjson,
    Iframe,
    LongPoll,
    Jsonp,
    Custom(Arc<CustomFormat>),
}

/// Per-attachment values that formats interpolate.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Callback for iframe/JSONP and custom `{cb}`.
    pub cb: &'a str,
    pub tunnel: &'a str,
}

/// Formats by name: the built-ins and the configured custom ones.
#[derive(Debug, Default, Clone)]
pub struct Formats {
    custom: HashMap<String, Arc<CustomFormat>>,
}

impl Formats {
    pub fn new(custom: impl IntoIterator<Item = CustomFormat>) -> Formats {
        Formats {
            custom: custom
                .into_iter()
                .map(|f| (f.name.clone(), Arc::new(f)))
                .collect(),
        }
    }

    /// Looks a format up by its `format=` name.
    pub fn get(&self, name: &str) -> Option<Format> {
        Some(match name {
            "sse" => Format::Sse,
            "nul" => Format::Nul,
            "ndjson" => Format::Ndjson,
            "iframe" => Format::Iframe,
            "longpoll" => Format::LongPoll,
            "jsonp" => Format::Jsonp,
            _ => Format::Custom(self.custom.get(name)?.clone()),
        })
    }
}

/// True when `cb` is an acceptable JavaScript callback name: `^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$`.
pub fn callback_valid(cb: &str) -> bool {
    let bytes = cb.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_' || first == b'$')
        && rest.len() <= 63
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'))
}

/// Appends `json` with `<` (and the JavaScript line terminators U+2028/U+2029) escaped, so it can
/// sit inside a `<script>` element or a JSONP body. Those characters can only occur inside JSON
/// strings, where `\uXXXX` escapes mean the same thing.
pub fn put_script_safe_json(out: &mut BytesMut, json: &[u8]) {
    let mut start = 0;
    // Candidates are rare, so jump between them with memchr rather than testing every byte.
    for i in memchr::memchr2_iter(b'<', 0xE2, json) {
        let replacement: &[u8] = match json.get(i..i + 3) {
            _ if json.get(i) == Some(&b'<') => b"\\u003c",
            Some([0xE2, 0x80, 0xA8]) => b"\\u2028",
            Some([0xE2, 0x80, 0xA9]) => b"\\u2029",
            _ => continue,
        };
        out.put_slice(json.get(start..i).unwrap_or_default());
        out.put_slice(replacement);
        start = i + if replacement == b"\\u003c" { 1 } else { 3 };
    }
    out.put_slice(json.get(start..).unwrap_or_default());
}

impl Format {
    /// Name as used in `format=`.
    pub fn name(&self) -> &str {
        match self {
            Format::Sse => "sse",
            Format::Nul => "nul",
            Format::Ndjson => "ndjson",
            Format::Iframe => "iframe",
            Format::LongPoll => "longpoll",
            Format::Jsonp => "jsonp",
            Format::Custom(c) => &c.name,
        }
    }

    /// True for formats that hold the response open and stream datagrams.
    pub fn is_stream(&self) -> bool {
        !matches!(self, Format::LongPoll | Format::Jsonp)
    }

    /// True when the format interpolates a callback name (validated with [`callback_valid`]).
    pub fn uses_callback(&self) -> bool {
        match self {
            Format::Iframe | Format::Jsonp => true,
            Format::Custom(c) => [&c.header, &c.envelope, &c.keepalive, &c.footer]
                .iter()
                .any(|t| t.uses(&super::template::Part::Cb)),
            _ => false,
        }
    }

    pub fn content_type(&self) -> &str {
        match self {
            Format::Sse => "text/event-stream",
            Format::Nul => "application/octet-stream",
            Format::Ndjson => "application/x-ndjson",
            Format::Iframe => "text/html; charset=utf-8",
            Format::LongPoll => "application/json",
            Format::Jsonp => "application/javascript",
            Format::Custom(c) => &c.content_type,
        }
    }

    /// Writes what opens the stream.
    pub fn put_header(&self, out: &mut BytesMut, env: &Envelope<'_>) {
        match self {
            Format::Iframe => {
                out.put_slice(b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>");
                // Browsers buffer the first kilobyte or so before running scripts.
                out.put_slice(b"<!--");
                out.put_bytes(b' ', IFRAME_PADDING_BYTES);
                out.put_slice(b"-->\n");
            }
            Format::Custom(c) => c.header.render(out, &vars(env, b"", b""), false),
            _ => {}
        }
    }

    /// Writes a published datagram.
    pub fn put_published(&self, out: &mut BytesMut, d: &Datagram, env: &Envelope) {
        self.put(out, d.json(), Some(d.id()), d.data(), env);
    }

    /// Writes one datagram; `id` is `None` for control datagrams, which have no `{data}`.
    pub fn put_datagram(&self, out: &mut BytesMut, json: &[u8], id: Option<&[u8]>, env: &Envelope) {
        self.put(out, json, id, b"", env);
    }

    fn put(&self, out: &mut BytesMut, json: &[u8], id: Option<&[u8]>, data: &[u8], env: &Envelope) {
        match self {
            Format::Sse => {
                if let Some(id) = id {
                    out.put_slice(b"id: ");
                    out.put_slice(id);
                    out.put_u8(b'\n');
                }
                out.put_slice(b"data: ");
                out.put_slice(json);
                out.put_slice(b"\n\n");
            }
            Format::Nul => {
                out.put_slice(json);
                out.put_u8(0);
            }
            Format::Ndjson => {
                out.put_slice(json);
                out.put_u8(b'\n');
            }
            Format::Iframe => {
                out.put_slice(b"<script>");
                out.put_slice(env.cb.as_bytes());
                out.put_u8(b'(');
                put_script_safe_json(out, json);
                out.put_slice(b");</script>\n");
            }
            Format::Custom(c) => {
                let vars = Vars {
                    data,
                    ..vars(env, json, id.unwrap_or_default())
                };
                c.envelope.render(out, &vars, c.html_escape)
            }
            // Long-poll answers are batches, written by `put_poll_answer`.
            Format::LongPoll | Format::Jsonp => out.put_slice(json),
        }
    }

    /// Writes a keepalive.
    pub fn put_keepalive(&self, out: &mut BytesMut, env: &Envelope<'_>) {
        match self {
            Format::Sse => out.put_slice(b":\n\n"),
            // Without a keepalive template: a keepalive datagram in the format's envelope.
            Format::Custom(c) if c.keepalive.is_empty() => {
                self.put_datagram(out, super::datagram::KEEPALIVE, None, env)
            }
            Format::Custom(c) => c.keepalive.render(
                out,
                &vars(env, super::datagram::KEEPALIVE, b""),
                c.html_escape,
            ),
            _ => self.put_datagram(out, super::datagram::KEEPALIVE, None, env),
        }
    }

    /// Writes what closes the stream.
    pub fn put_footer(&self, out: &mut BytesMut, env: &Envelope<'_>) {
        match self {
            Format::Iframe => out.put_slice(b"</body></html>\n"),
            Format::Custom(c) => c.footer.render(out, &vars(env, b"", b""), false),
            _ => {}
        }
    }
}

fn vars<'a>(env: &'a Envelope<'a>, json: &'a [u8], id: &'a [u8]) -> Vars<'a> {
    Vars {
        json,
        data: b"",
        id,
        cb: env.cb.as_bytes(),
        tunnel: env.tunnel.as_bytes(),
    }
}

/// Writes a long-poll answer, `{"ok":true,"tunnel":"<id>","messages":[...]}`, wrapped as
/// `/**/CB(...);` for JSONP.
pub fn put_poll_answer<'m>(
    out: &mut BytesMut,
    jsonp_cb: Option<&str>,
    tunnel: &str,
    messages: impl IntoIterator<Item = &'m [u8]>,
) {
    let mut body = BytesMut::new();
    body.put_slice(br#"{"ok":true,"tunnel":""#);
    body.put_slice(tunnel.as_bytes());
    body.put_slice(br#"","messages":["#);
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(m);
    }
    body.put_slice(b"]}");
    put_maybe_jsonp(out, jsonp_cb, &body);
}

/// Writes `json`, or `/**/CB(json);` when a JSONP callback is given.
pub fn put_maybe_jsonp(out: &mut BytesMut, jsonp_cb: Option<&str>, json: &[u8]) {
    match jsonp_cb {
        Some(cb) => {
            // The leading comment defuses content-sniffing attacks (Rosetta Flash).
            out.put_slice(b"/**/");
            out.put_slice(cb.as_bytes());
            out.put_u8(b'(');
            put_script_safe_json(out, json);
            out.put_slice(b");");
        }
        None => out.put_slice(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: Envelope = Envelope {
        cb: "parent.tunnel",
        tunnel: "0-1-ab",
    };

    fn render(f: &Format, json: &[u8], id: Option<&[u8]>) -> Vec<u8> {
        let mut out = BytesMut::new();
        f.put_datagram(&mut out, json, id, &ENV);
        out.to_vec()
    }

    #[test]
    fn sse_envelopes() {
        assert_eq!(
            render(&Format::Sse, b"{}", Some(b"0-1")),
            b"id: 0-1\ndata: {}\n\n"
        );
        assert_eq!(render(&Format::Sse, b"{}", None), b"data: {}\n\n");
        let mut out = BytesMut::new();
        Format::Sse.put_keepalive(&mut out, &ENV);
        assert_eq!(&out[..], b":\n\n");
    }

    #[test]
    fn nul_and_ndjson() {
        assert_eq!(render(&Format::Nul, b"{}", Some(b"1")), b"{}\0");
        assert_eq!(render(&Format::Ndjson, b"{}", Some(b"1")), b"{}\n");
        let mut out = BytesMut::new();
        Format::Nul.put_keepalive(&mut out, &ENV);
        assert_eq!(&out[..], b"{\"type\":\"keepalive\"}\0");
    }

    #[test]
    fn iframe_escapes_script_end() {
        let json = br#"{"data":"</script><script>alert(1)</script>"}"#;
        let out = render(&Format::Iframe, json, Some(b"1"));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "<script>parent.tunnel({\"data\":\"\\u003c/script>\\u003cscript>alert(1)\\u003c/script>\"});</script>\n"
        );
        let mut head = BytesMut::new();
        Format::Iframe.put_header(&mut head, &ENV);
        assert!(head.len() >= 1024);
    }

    #[test]
    fn line_separators_escaped() {
        let mut out = BytesMut::new();
        put_script_safe_json(&mut out, "\"a\u{2028}b\u{2029}\"".as_bytes());
        assert_eq!(&out[..], b"\"a\\u2028b\\u2029\"");
    }

    #[test]
    fn callbacks() {
        assert!(callback_valid("cb"));
        assert!(callback_valid("$jq.cb_1"));
        assert!(callback_valid(&format!("a{}", "b".repeat(63))));
        assert!(!callback_valid(&format!("a{}", "b".repeat(64))));
        assert!(!callback_valid(""));
        assert!(!callback_valid("1cb"));
        assert!(!callback_valid("cb()"));
        assert!(!callback_valid("a-b"));
        assert!(!callback_valid("alert(1);x"));
    }

    #[test]
    fn data_placeholder_writes_the_payload_as_published() {
        use crate::wire::datagram::DatagramId;
        let raw = CustomFormat {
            name: "raw".into(),
            content_type: "application/octet-stream".into(),
            header: Template::default(),
            envelope: Template::parse("{data}\0").unwrap(),
            keepalive: Template::default(),
            footer: Template::default(),
            html_escape: true,
        };
        let f = Format::Custom(Arc::new(raw));
        let id = DatagramId { shard: 0, seq: 1 };
        let put = |d: &Datagram| {
            let mut out = BytesMut::new();
            f.put_published(&mut out, d, &ENV);
            out.to_vec()
        };
        let binary = Datagram::encode_binary(id, "/talk", b"a\x01<b", 0);
        assert_eq!(put(&binary), b"a\x01<b\0");
        let json = Datagram::encode(id, "/talk", br#""<x>""#, 0);
        assert_eq!(put(&json), b"\"<x>\"\0");
        // Control datagrams have no payload: an empty message.
        assert_eq!(render(&f, br#"{"type":"tunnel"}"#, None), b"\0");
        let mut out = BytesMut::new();
        f.put_keepalive(&mut out, &ENV);
        assert_eq!(&out[..], b"\0");
    }

    #[test]
    fn poll_answers() {
        let mut out = BytesMut::new();
        put_poll_answer(&mut out, None, "t", [&b"{}"[..], b"[1]"]);
        assert_eq!(&out[..], br#"{"ok":true,"tunnel":"t","messages":[{},[1]]}"#);
        let mut out = BytesMut::new();
        put_poll_answer(&mut out, Some("cb"), "t", [&b"\"<\""[..]]);
        assert_eq!(
            &out[..],
            br#"/**/cb({"ok":true,"tunnel":"t","messages":["\u003c"]});"#
        );
    }
}
