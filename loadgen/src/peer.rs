//! Each target's conventions: the request that opens a tunnel, the request that publishes,
//! and the shape of a delivered message.

use crate::args::{Peer, Transport};

/// The request head that opens a tunnel (`path`: the live path index, `None` for idle).
/// `ws_key` is the `Sec-WebSocket-Key` for a WebSocket tunnel.
pub fn tunnel_request(
    peer: Peer,
    transport: Transport,
    path: Option<u64>,
    host: &str,
    ws_key: &str,
) -> String {
    let target = match peer {
        Peer::Router => {
            let path = path.map_or(String::new(), |p| format!("&path=/load/{p}"));
            format!("/tunnel?format={}{path}", transport.name())
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
pub struct Message {
    pub id: Option<String>,
    data: Option<Payload>,
    seq: Option<u64>,
    t_us: Option<u64>,
}

impl Message {
    pub fn parse(bytes: &[u8]) -> Result<Message, &'static str> {
        serde_json::from_slice(bytes).map_err(|_| "bad message")
    }

    pub fn payload(&self) -> Option<Payload> {
        match (self.seq, self.t_us) {
            (Some(seq), Some(t_us)) => Some(Payload { seq, t_us }),
            _ => self.data,
        }
    }
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
        let r = tunnel_request(Peer::Router, Transport::Nul, Some(3), "h:1", "");
        assert!(r.starts_with("GET /tunnel?format=nul&path=/load/3 HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let r = tunnel_request(Peer::Router, Transport::Ws, None, "h:1", "k==");
        assert!(r.starts_with("GET /tunnel?format=ws HTTP/1.1"));
        assert!(r.contains("Sec-WebSocket-Key: k==\r\n"));
        let r = tunnel_request(Peer::Nchan, Transport::Sse, Some(7), "h:1", "");
        assert!(r.starts_with("GET /sub/load7 HTTP/1.1"));
        assert!(r.contains("Accept: text/event-stream\r\n"));
        let r = tunnel_request(Peer::Pushpin, Transport::Sse, None, "h:1", "");
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
        assert!(Message::parse(b"not json").is_err());
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
