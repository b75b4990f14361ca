//! Each target's conventions: the request that opens a tunnel, the request that publishes,
//! and the shape of a delivered message.

use crate::args::{Peer, Transport};

/// Where a router tunnel resumes when it re-attaches: its id and the last datagram id seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume<'a> {
    pub tunnel: &'a str,
    pub last: Option<&'a str>,
}

/// The request head that opens a tunnel (`path`: the live path index, `None` for idle), or
/// re-attaches to a router tunnel with `resume`. `ws_key` is the `Sec-WebSocket-Key` for a
/// WebSocket tunnel.
pub fn tunnel_request(
    peer: Peer,
    transport: Transport,
    path: Option<u64>,
    host: &str,
    ws_key: &str,
    resume: Option<Resume>,
) -> String {
    let target = match peer {
        Peer::Router => {
            let path = path.map_or(String::new(), |p| format!("&path=/load/{p}"));
            let resume = resume.map_or(String::new(), |r| {
                let last = r.last.map_or(String::new(), |l| format!("&last={l}"));
                format!("&id={}{last}", r.tunnel)
            });
            format!("/tunnel?format={}{path}{resume}", transport.name())
        }
        Peer::Nchan | Peer::Pushpin | Peer::Baseline => match path {
            Some(p) => format!("/sub/load{p}"),
            None => "/sub/idle".to_owned(),
        },
    };
    let extra = match transport {
        Transport::Ws => format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {ws_key}\r\n\
             Sec-WebSocket-Version: 13\r\n"
        ),
        Transport::Sse => "Accept: text/event-stream\r\n".to_owned(),
        Transport::Longpoll | Transport::Nul | Transport::Ndjson => String::new(),
    };
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
}

/// The next long-poll on an existing router tunnel.
pub fn poll_request(host: &str, tunnel: &str, last: Option<&str>) -> String {
    let last = last.map_or(String::new(), |l| format!("&last={l}"));
    format!("GET /tunnel?format=longpoll&id={tunnel}{last} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// Appends one publish request to `out`: payload `body` (a JSON object) to path `path`.
pub fn put_publish(out: &mut Vec<u8>, peer: Peer, host: &str, path: u64, body: &str) {
    use std::io::Write;
    let (target, content) = match peer {
        Peer::Router => (format!("/publish/load/{path}"), body.to_owned()),
        Peer::Nchan | Peer::Baseline => (format!("/pub/load{path}"), body.to_owned()),
        Peer::Pushpin => (
            "/publish/".to_owned(),
            pushpin_items(&[pushpin_item(path, body)]),
        ),
    };
    let _ = write!(
        out,
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{content}",
        content.len()
    );
}

/// One item of a Pushpin publish: the SSE event carrying `body` on channel `load<path>`.
pub fn pushpin_item(path: u64, body: &str) -> String {
    let event =
        serde_json::to_string(&format!("data: {body}\n\n")).expect("a string always serializes");
    format!(r#"{{"channel":"load{path}","formats":{{"http-stream":{{"content":{event}}}}}}}"#)
}

fn pushpin_items(items: &[String]) -> String {
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

/// Appends one Pushpin publish request carrying several items (Pushpin closes the
/// connection after each answer, so publishes are batched rather than pipelined).
pub fn put_pushpin_publish(out: &mut Vec<u8>, host: &str, items: &[String]) {
    use std::io::Write;
    let content = pushpin_items(items);
    let _ = write!(
        out,
        "POST /publish/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{content}",
        content.len()
    );
}

/// What a publish carries: its sequence number on its path and its intended send time
/// (`CLOCK_MONOTONIC` µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Payload {
    pub seq: u64,
    pub t_us: u64,
}

/// A delivered message: the router's datagram (`{"id":..,"data":{payload}}`, or a control
/// datagram, which has no payload), or a peer's raw payload.
#[derive(Debug, serde::Deserialize)]
pub struct Message<'a> {
    #[serde(borrow)]
    pub id: Option<std::borrow::Cow<'a, str>>,
    data: Option<Payload>,
    seq: Option<u64>,
    t_us: Option<u64>,
    /// A control datagram's type: `tunnel`, `gap`, `keepalive`.
    #[serde(borrow, rename = "type")]
    pub kind: Option<std::borrow::Cow<'a, str>>,
    /// The `tunnel` control datagram's tunnel id.
    #[serde(borrow)]
    pub tunnel: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Message<'a> {
    /// Loadgen's own publishes arrive by the million at saturation, so their two exact shapes
    /// are read without the JSON parser, which the tool would otherwise spend more time in
    /// than the router spends delivering them; anything else goes to the JSON parser.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, &'static str> {
        if let Some(message) = Self::parse_own(bytes) {
            return Ok(message);
        }
        serde_json::from_slice(bytes).map_err(|_| "bad message")
    }

    /// `{"id":"<id>","path":"<path>","data":<payload>}` (the router's datagram) or `<payload>`
    /// (the peers deliver the body as published), byte for byte as they are encoded.
    fn parse_own(bytes: &'a [u8]) -> Option<Message<'a>> {
        let Some(rest) = bytes.strip_prefix(br#"{"id":""#) else {
            let payload = parse_payload(bytes)?;
            return Some(Message {
                id: None,
                data: None,
                seq: Some(payload.seq),
                t_us: Some(payload.t_us),
                kind: None,
                tunnel: None,
            });
        };
        let (id, rest) = plain_string(rest)?;
        let rest = rest.strip_prefix(br#","path":""#)?;
        let (_, rest) = plain_string(rest)?;
        let rest = rest.strip_prefix(br#","data":"#)?.strip_suffix(b"}")?;
        Some(Message {
            id: Some(std::borrow::Cow::Borrowed(id)),
            data: Some(parse_payload(rest)?),
            seq: None,
            t_us: None,
            kind: None,
            tunnel: None,
        })
    }

    pub fn payload(&self) -> Option<Payload> {
        match (self.seq, self.t_us) {
            (Some(seq), Some(t_us)) => Some(Payload { seq, t_us }),
            _ => self.data,
        }
    }
}

/// The text of a JSON string without escapes, up to its closing quote, and what follows it.
fn plain_string(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = memchr::memchr2(b'"', b'\\', bytes)?;
    if bytes[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&bytes[..end]).ok()?, &bytes[end + 1..]))
}

/// `{"seq":N,"t_us":N}` exactly, as the publisher writes it.
fn parse_payload(bytes: &[u8]) -> Option<Payload> {
    let rest = bytes.strip_prefix(br#"{"seq":"#)?;
    let (seq, rest) = parse_u64(rest)?;
    let rest = rest.strip_prefix(br#","t_us":"#)?;
    let (t_us, rest) = parse_u64(rest)?;
    (rest == b"}").then_some(Payload { seq, t_us })
}

/// A decimal `u64` without sign or leading zeros (JSON's form), and what follows it.
fn parse_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && bytes[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &bytes[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((n, &bytes[digits..]))
}

/// The body of a long-poll answer.
#[derive(Debug, serde::Deserialize)]
pub struct PollAnswer<'a> {
    pub tunnel: Option<String>,
    #[serde(borrow)]
    pub messages: Vec<&'a serde_json::value::RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_requests_follow_each_peer() {
        let r = tunnel_request(Peer::Router, Transport::Nul, Some(3), "h:1", "", None);
        assert!(r.starts_with("GET /tunnel?format=nul&path=/load/3 HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let r = tunnel_request(Peer::Router, Transport::Ws, None, "h:1", "k==", None);
        assert!(r.starts_with("GET /tunnel?format=ws HTTP/1.1"));
        assert!(r.contains("Sec-WebSocket-Key: k==\r\n"));
        let resume = Resume {
            tunnel: "0-1-ab",
            last: Some("1-9"),
        };
        let r = tunnel_request(
            Peer::Router,
            Transport::Sse,
            Some(2),
            "h:1",
            "",
            Some(resume),
        );
        assert!(r.starts_with("GET /tunnel?format=sse&path=/load/2&id=0-1-ab&last=1-9 HTTP/1.1"));
        let resume = Resume {
            last: None,
            ..resume
        };
        let r = tunnel_request(
            Peer::Router,
            Transport::Ws,
            Some(2),
            "h:1",
            "k",
            Some(resume),
        );
        assert!(r.starts_with("GET /tunnel?format=ws&path=/load/2&id=0-1-ab HTTP/1.1"));
        let r = tunnel_request(Peer::Nchan, Transport::Sse, Some(7), "h:1", "", None);
        assert!(r.starts_with("GET /sub/load7 HTTP/1.1"));
        assert!(r.contains("Accept: text/event-stream\r\n"));
        let r = tunnel_request(Peer::Pushpin, Transport::Sse, None, "h:1", "", None);
        assert!(r.starts_with("GET /sub/idle HTTP/1.1"));
    }

    #[test]
    fn publishes_follow_each_peer() {
        let body = r#"{"seq":1,"t_us":2}"#;
        let mut out = Vec::new();
        put_publish(&mut out, Peer::Router, "h:1", 4, body);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("POST /publish/load/4 HTTP/1.1\r\n"));
        assert!(text.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())));

        let mut out = Vec::new();
        put_publish(&mut out, Peer::Pushpin, "h:5561", 4, body);
        let text = String::from_utf8(out).expect("ascii");
        let (head, content) = text.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("POST /publish/ HTTP/1.1\r\n"));
        assert!(head.ends_with(&format!("Content-Length: {}", content.len())));
        let items: serde_json::Value = serde_json::from_str(content).expect("JSON");
        assert_eq!(items["items"][0]["channel"], "load4");
        let mut batch = Vec::new();
        put_pushpin_publish(
            &mut batch,
            "h:5561",
            &[pushpin_item(1, body), pushpin_item(2, body)],
        );
        let text = String::from_utf8(batch).expect("ascii");
        let (_, content) = text.split_once("\r\n\r\n").expect("a head");
        let batch: serde_json::Value = serde_json::from_str(content).expect("JSON");
        assert_eq!(batch["items"][1]["channel"], "load2");
        assert_eq!(
            items["items"][0]["formats"]["http-stream"]["content"],
            format!("data: {body}\n\n")
        );
    }

    #[test]
    fn messages_of_every_shape_decode() {
        let routed =
            Message::parse(br#"{"id":"0-1","path":"/load/3","data":{"seq":7,"t_us":1500}}"#)
                .expect("router datagram");
        assert_eq!(routed.payload(), Some(Payload { seq: 7, t_us: 1500 }));
        assert_eq!(routed.id.as_deref(), Some("0-1"));
        let raw = Message::parse(br#"{"seq":8,"t_us":1600}"#).expect("raw payload");
        assert_eq!(raw.payload(), Some(Payload { seq: 8, t_us: 1600 }));
        let control = Message::parse(br#"{"type":"tunnel","tunnel":"0-0-ab","new":true}"#)
            .expect("control datagram");
        assert_eq!(control.id, None);
        assert_eq!(control.payload(), None);
        assert_eq!(control.kind.as_deref(), Some("tunnel"));
        assert_eq!(control.tunnel.as_deref(), Some("0-0-ab"));
        let gap = Message::parse(br#"{"type":"gap"}"#).expect("gap");
        assert_eq!((gap.kind.as_deref(), gap.payload()), (Some("gap"), None));
        assert!(Message::parse(b"not json").is_err());
    }

    #[test]
    fn own_shapes_read_without_the_json_parser_agree_with_it() {
        let cases: [&[u8]; 12] = [
            br#"{"id":"0-1","path":"/load/3","data":{"seq":7,"t_us":1500}}"#,
            br#"{"seq":8,"t_us":1600}"#,
            br#"{"seq":0,"t_us":18446744073709551615}"#,
            // Not the exact shapes: the JSON parser reads them.
            br#"{"id":"0-1","path":"/load/3","data":{"t_us":1500,"seq":7}}"#,
            br#"{"id":"0-1","path":"/lo"ad","data":{"seq":7,"t_us":1500}}"#,
            br#"{"id":"0-1","path":"/load/3","data":{"seq":7,"t_us":1500}}"#,
            br#"{ "seq": 8, "t_us": 1600 }"#,
            br#"{"seq":8,"t_us":1600,"pad":"xxxx"}"#,
            // Refused by both.
            br#"{"seq":08,"t_us":1600}"#,
            br#"{"seq":18446744073709551616,"t_us":1}"#,
            br#"{"seq":-1,"t_us":1}"#,
            br#"{"id":"0-1","path":"/load/3","data":{"seq":7,"t_us":1500}"#,
        ];
        for bytes in cases {
            let text = String::from_utf8_lossy(bytes);
            let own = Message::parse_own(bytes);
            let json: Result<Message, _> = serde_json::from_slice(bytes);
            let parsed = Message::parse(bytes);
            match (&own, &json) {
                (Some(own), Ok(json)) => {
                    assert_eq!(own.payload(), json.payload(), "{text}");
                    assert_eq!(own.id, json.id, "{text}");
                }
                (Some(_), Err(e)) => panic!("{text}: read as our shape, but not JSON: {e}"),
                (None, _) => {}
            }
            assert_eq!(
                parsed.map(|m| (m.payload(), m.id)).ok(),
                json.map(|m| (m.payload(), m.id)).ok(),
                "{text}"
            );
        }
        assert!(Message::parse_own(br#"{"seq":8,"t_us":1600}"#).is_some());
        assert!(
            Message::parse_own(br#"{"id":"0-1","path":"/p","data":{"seq":1,"t_us":2}}"#).is_some()
        );
    }

    #[test]
    fn poll_answers_decode() {
        let answer: PollAnswer = serde_json::from_slice(
            br#"{"ok":true,"tunnel":"1-5-d2","messages":[{"type":"tunnel"},{"id":"0-4","data":{"seq":0,"t_us":9}}]}"#,
        )
        .expect("answer");
        assert_eq!(answer.tunnel.as_deref(), Some("1-5-d2"));
        assert_eq!(answer.messages.len(), 2);
        let second = Message::parse(answer.messages[1].get().as_bytes()).expect("message");
        assert_eq!(second.payload(), Some(Payload { seq: 0, t_us: 9 }));
    }
}
