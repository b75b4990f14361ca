//! Every streaming format end to end over loopback: response heads, the exact bytes of every
//! envelope, the tunnel control datagram first, datagram ids equal to the publish answers, iframe
//! padding and script escaping, custom formats from flags, keepalives, recycling, and HTTP/1.0.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;
use std::io::{BufRead, Read};
use support::*;

/// The tunnel control datagram, byte for byte.
fn control(tunnel: &str, new: bool, keepalive_ms: u64) -> String {
    format!(r#"{{"type":"tunnel","tunnel":"{tunnel}","new":{new},"keepalive_ms":{keepalive_ms}}}"#)
}

/// Reads the control datagram of a new SSE tunnel and returns the tunnel id.
fn sse_tunnel(s: &mut Stream, new: bool, keepalive_ms: u64) -> String {
    let ev = s.sse_event().expect("control event");
    assert_eq!(ev.len(), 1, "control events carry no id: {ev:?}");
    let v: serde_json::Value =
        serde_json::from_str(ev[0].strip_prefix("data: ").expect("data line")).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap().to_string();
    assert!(is_tunnel_id(&tunnel), "{tunnel}");
    assert_eq!(
        ev[0],
        format!("data: {}", control(&tunnel, new, keepalive_ms))
    );
    tunnel
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8")
}

fn assert_stream_head(s: &Stream, content_type: &str) {
    assert_eq!(s.head.status, 200);
    assert_eq!(s.head.header("content-type"), Some(content_type));
    assert!(s.head.chunked(), "{:?}", s.head.headers);
    assert_eq!(s.head.header("content-length"), None);
    assert_eq!(s.head.header("cache-control"), Some("no-cache"));
    assert_eq!(s.head.header("x-accel-buffering"), Some("no"));
}

#[test]
fn sse_headers_control_and_exact_events() {
    let addr = start(&[]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/s/*");
    assert_stream_head(&s, "text/event-stream");
    let tunnel = sse_tunnel(&mut s, true, 15000);

    let mut p = Publisher::new(addr);
    // Data is re-encoded compactly.
    let d1 = p.publish("/s/a", r#"{ "n" : 1 }"#);
    // Not subscribed: must not show up.
    p.publish("/other", "1");
    let d2 = p.publish("/s", r#""two""#);
    let d3 = p.publish("/s/b/c", "[1, 2, null]");
    assert_ne!(d1, d2);
    assert_ne!(d2, d3);
    for (id, path, data) in [
        (&d1, "/s/a", r#"{"n":1}"#),
        (&d2, "/s", r#""two""#),
        (&d3, "/s/b/c", "[1,2,null]"),
    ] {
        let ev = s.sse_event().expect("datagram event");
        assert_eq!(
            ev,
            vec![
                format!("id: {id}"),
                format!("data: {}", datagram(id, path, data))
            ]
        );
    }
    // The next event is the next publish: nothing was duplicated or slipped in.
    let d4 = p.publish("/s/z", "4");
    assert_eq!(
        utf8(s.record(b"\n\n").unwrap()),
        format!("id: {d4}\ndata: {}", datagram(&d4, "/s/z", "4"))
    );
    assert!(!s.ended);
    assert!(is_tunnel_id(&tunnel));
}

#[test]
fn nul_stream_exact_records() {
    let addr = start(&[]);
    let mut s = Stream::open(addr, "/tunnel?format=nul&path=/n");
    assert_stream_head(&s, "application/octet-stream");
    let first = utf8(s.record(b"\0").unwrap());
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap().to_string();
    assert!(is_tunnel_id(&tunnel), "{tunnel}");
    assert_eq!(first, control(&tunnel, true, 15000));

    let mut p = Publisher::new(addr);
    let d1 = p.publish("/n", r#"{"a":"b\u0000c"}"#);
    let d2 = p.publish("/n/below", "2"); // exact subscription: not delivered
    let d3 = p.publish("/n", "true");
    assert_ne!(d2, d3);
    assert_eq!(
        utf8(s.record(b"\0").unwrap()),
        datagram(&d1, "/n", r#"{"a":"b\u0000c"}"#),
        "a NUL inside data stays escaped, so the record delimiter stays unique"
    );
    assert_eq!(utf8(s.record(b"\0").unwrap()), datagram(&d3, "/n", "true"));
}

#[test]
fn ndjson_stream_exact_lines() {
    let addr = start(&[]);
    let mut s = Stream::open(addr, "/tunnel?format=ndjson&path=/j/*");
    assert_stream_head(&s, "application/x-ndjson");
    let first = utf8(s.record(b"\n").unwrap());
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap().to_string();
    assert_eq!(first, control(&tunnel, true, 15000));

    let mut p = Publisher::new(addr);
    let d1 = p.publish("/j/x", r#""line\nbreak""#);
    let d2 = p.publish("/j", "{}");
    assert_eq!(
        utf8(s.record(b"\n").unwrap()),
        datagram(&d1, "/j/x", r#""line\nbreak""#),
        "a newline inside data stays escaped"
    );
    assert_eq!(utf8(s.record(b"\n").unwrap()), datagram(&d2, "/j", "{}"));
}

const IFRAME_HEADER_START: &str =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><!--";

#[test]
fn iframe_padding_callback_and_script_escaping() {
    let addr = start(&[]);
    let mut s = Stream::open(addr, "/tunnel?format=iframe&path=/i");
    assert_stream_head(&s, "text/html; charset=utf-8");
    // Header: the document start and >= 1 KiB of padding, then the control datagram.
    let first = utf8(s.record(b"</script>\n").unwrap());
    let script_at = first.find("<script>").expect("control script");
    let header = &first[..script_at];
    assert!(header.len() >= 1024, "header is {} bytes", header.len());
    assert_eq!(
        header,
        format!("{IFRAME_HEADER_START}{}-->\n", " ".repeat(1024))
    );
    let call = &first[script_at..];
    let json = call
        .strip_prefix("<script>parent.tunnel(")
        .and_then(|c| c.strip_suffix(");"))
        .unwrap_or_else(|| panic!("control call {call:?}"));
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap().to_string();
    assert_eq!(json, control(&tunnel, true, 15000));

    let mut p = Publisher::new(addr);
    let evil = r#""</script><script>alert(1)</script>""#;
    let d1 = p.publish("/i", evil);
    let rec = utf8(s.record(b"</script>\n").unwrap());
    assert_eq!(
        rec,
        format!(
            r#"<script>parent.tunnel({{"id":"{d1}","path":"/i","data":"\u003c/script>\u003cscript>alert(1)\u003c/script>"}});"#
        )
    );
    // What a browser would see: the escaped JSON means the same string.
    let json = rec
        .strip_prefix("<script>parent.tunnel(")
        .unwrap()
        .strip_suffix(");")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["data"], "</script><script>alert(1)</script>");

    // A caller-chosen callback.
    let mut s2 = Stream::open(addr, "/tunnel?format=iframe&path=/i&cb=app.onDatagram");
    let first = utf8(s2.record(b"</script>\n").unwrap());
    assert!(first.starts_with(IFRAME_HEADER_START));
    assert!(first.contains("<script>app.onDatagram({\"type\":\"tunnel\""));
    let d2 = p.publish("/i", "1");
    assert_eq!(
        utf8(s2.record(b"</script>\n").unwrap()),
        format!("<script>app.onDatagram({});", datagram(&d2, "/i", "1"))
    );
    assert_eq!(
        utf8(s.record(b"</script>\n").unwrap()),
        format!("<script>parent.tunnel({});", datagram(&d2, "/i", "1"))
    );

    // An invalid callback is refused before anything streams.
    let mut c = Client::new(addr);
    c.get("/tunnel?format=iframe&path=/i&cb=alert(1)");
    let (head, body) = c.response();
    assert_eq!(head.status, 400);
    assert_eq!(body, r#"{"ok":false,"error":"invalid callback name"}"#);
}

/// Two custom formats: `pipe` (plain text with header, footer, keepalive, recycling) and `js`
/// (callback envelope with `html_escape`).
const CUSTOM_FLAGS: &[&str] = &[
    "--set",
    r#"formats.pipe.content_type="text/plain""#,
    "--set",
    r#"formats.pipe.header="<{tunnel}>\n""#,
    "--set",
    r#"formats.pipe.envelope="{id}|{json}\n""#,
    "--set",
    r#"formats.pipe.keepalive="~\n""#,
    "--set",
    r#"formats.pipe.footer="</{tunnel}>\n""#,
    "--set",
    "stream_recycle_bytes.pipe=1024",
    "--set",
    r#"formats.js.content_type="application/javascript""#,
    "--set",
    r#"formats.js.envelope="{cb}({json});\n""#,
    "--set",
    "formats.js.html_escape=true",
];

#[test]
fn custom_formats_from_flags() {
    let addr = start(CUSTOM_FLAGS);
    let mut pipe = Stream::open(addr, "/tunnel?format=pipe&path=/c");
    assert_stream_head(&pipe, "text/plain");
    let header = utf8(pipe.record(b"\n").unwrap());
    let tunnel = header
        .strip_prefix('<')
        .and_then(|h| h.strip_suffix('>'))
        .unwrap_or_else(|| panic!("header {header:?}"))
        .to_string();
    assert!(is_tunnel_id(&tunnel), "{tunnel}");
    // Control datagrams have no id: `{id}` renders empty.
    assert_eq!(
        utf8(pipe.record(b"\n").unwrap()),
        format!("|{}", control(&tunnel, true, 15000))
    );

    let mut js = Stream::open(addr, "/tunnel?format=js&path=/c&cb=handle");
    assert_stream_head(&js, "application/javascript");
    let first = utf8(js.record(b"\n").unwrap());
    let v: serde_json::Value = serde_json::from_str(
        first
            .strip_prefix("handle(")
            .and_then(|f| f.strip_suffix(");"))
            .unwrap(),
    )
    .unwrap();
    let js_tunnel = v["tunnel"].as_str().unwrap();
    assert_eq!(
        first,
        format!("handle({});", control(js_tunnel, true, 15000))
    );

    let mut p = Publisher::new(addr);
    let d1 = p.publish("/c", r#""<b>""#);
    assert_eq!(
        utf8(pipe.record(b"\n").unwrap()),
        format!("{d1}|{}", datagram(&d1, "/c", r#""<b>""#)),
        "no html_escape: '<' is kept"
    );
    assert_eq!(
        utf8(js.record(b"\n").unwrap()),
        format!("handle({});", datagram(&d1, "/c", r#""\u003cb>""#)),
        "html_escape: '<' becomes \\u003c"
    );

    // Recycling of a custom format: the footer, then the final chunk, once >= 1024 bytes of
    // envelopes were written. Lock-step, so each write carries exactly one datagram.
    let data = format!("\"{}\"", "p".repeat(200));
    let mut written = format!("{d1}|{}\n", datagram(&d1, "/c", r#""<b>""#)).len();
    while written < 1024 {
        let id = p.publish("/c", &data);
        let rec = utf8(pipe.record(b"\n").unwrap());
        assert_eq!(rec, format!("{id}|{}", datagram(&id, "/c", &data)));
        written += rec.len() + 1;
    }
    assert_eq!(utf8(pipe.rest()), format!("</{tunnel}>\n"));
    assert!(pipe.ended, "the final chunk ends the response");
    assert_eq!(metrics(addr)["recycled"], 1);
}

#[test]
fn keepalive_on_every_streaming_format() {
    let mut flags = vec!["--keepalive-ms", "50"];
    flags.extend_from_slice(CUSTOM_FLAGS);
    let (addr, clock) = start_manual(&flags);
    // (format, record delimiter, exact keepalive record)
    let cases: &[(&str, &[u8], &str)] = &[
        ("sse", b"\n\n", ":"),
        ("nul", b"\0", r#"{"type":"keepalive"}"#),
        ("ndjson", b"\n", r#"{"type":"keepalive"}"#),
        (
            "iframe",
            b"</script>\n",
            r#"<script>ka({"type":"keepalive"});"#,
        ),
        ("pipe", b"\n", "~"),
    ];
    let mut streams: Vec<(Stream, &[u8], &str, &str)> = clock.arming(cases.len() as u64, || {
        cases
            .iter()
            .map(|&(format, delim, keepalive)| {
                let mut s = Stream::open(addr, &format!("/tunnel?format={format}&path=/k&cb=ka"));
                assert_eq!(s.head.status, 200, "{format}");
                // Everything up to and including the control datagram.
                let mut first = utf8(s.record(delim).unwrap());
                if format == "pipe" {
                    first = utf8(s.record(delim).unwrap()); // past the `<tunnel>` header line
                }
                assert!(
                    first.contains(r#""type":"tunnel""#) && first.contains(r#""keepalive_ms":50}"#),
                    "{format}: {first:?}"
                );
                (s, delim, keepalive, format)
            })
            .collect()
    });
    // No keepalive before the interval has passed: a datagram published just before it is the
    // next record (and writing it moves the keepalive an interval later).
    clock.advance(49);
    let id = clock.arming(streams.len() as u64, || publish(addr, "/k", "1"));
    for (s, delim, _, format) in streams.iter_mut() {
        let record = utf8(s.record(delim).expect("the datagram"));
        assert!(record.contains(&id), "{format}: {record:?}");
    }
    // Then one keepalive per interval on every stream.
    for _ in 0..3 {
        clock.arming(streams.len() as u64, || clock.advance(50));
        for (s, delim, keepalive, format) in streams.iter_mut() {
            assert_eq!(
                utf8(s.record(delim).expect("keepalive before the stream ends")),
                *keepalive,
                "{format}"
            );
        }
    }
    let written = metrics(addr)["keepalives"].as_u64().unwrap();
    assert_eq!(written, 3 * cases.len() as u64, "keepalives {written}");
}

/// SSE bytes of one datagram event, `id: <id>\ndata: <json>\n\n`.
fn sse_framed_len(id: &str, json: &str) -> usize {
    format!("id: {id}\ndata: {json}\n\n").len()
}

#[test]
fn sse_recycle_ends_right_after_the_datagram_that_crosses_the_limit() {
    let addr = start(&["--set", "stream_recycle_bytes.sse=2048"]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/r");
    let tunnel = sse_tunnel(&mut s, true, 15000);
    let mut p = Publisher::new(addr);
    let data = format!("\"{}\"", "r".repeat(100));
    let mut written = 0;
    let mut last = String::new();
    while written < 2048 {
        assert!(!s.ended, "ended after only {written} bytes");
        last = p.publish("/r", &data);
        let ev = s.sse_event().expect("datagram before the recycle");
        let json = datagram(&last, "/r", &data);
        assert_eq!(ev, vec![format!("id: {last}"), format!("data: {json}")]);
        written += sse_framed_len(&last, &json);
    }
    // Nothing after the crossing datagram: the final chunk comes next.
    assert_eq!(s.rest(), b"");
    assert!(s.ended);
    assert_eq!(metrics(addr)["recycled"], 1);
    // The connection stays usable (the response ended cleanly, keep-alive).
    s.client.get("/metrics");
    let (head, _) = s.client.response();
    assert_eq!(head.status, 200);

    // Re-attach: the tunnel is the same and nothing is replayed.
    let mut s2 = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}&last={last}"));
    assert_eq!(sse_tunnel(&mut s2, false, 15000), tunnel);
    let next = p.publish("/r", "1");
    assert_eq!(
        s2.sse_event().unwrap(),
        vec![
            format!("id: {next}"),
            format!("data: {}", datagram(&next, "/r", "1"))
        ]
    );
}

#[test]
fn sse_recycle_then_reattach_loses_and_duplicates_nothing() {
    let addr = start(&["--set", "stream_recycle_bytes.sse=2048"]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/r");
    let tunnel = sse_tunnel(&mut s, true, 15000);
    let mut p = Publisher::new(addr);
    let data = format!("\"{}\"", "q".repeat(100));
    let published: Vec<String> = (0..40).map(|_| p.publish("/r", &data)).collect();
    let sentinel = p.publish("/r", r#""end""#);

    let mut received: Vec<String> = Vec::new();
    let mut recycles = 0;
    // Bytes of datagram events on the current stream.
    let mut stream_bytes = 0;
    loop {
        match s.sse_event() {
            Some(ev) => {
                assert_eq!(ev.len(), 2, "{ev:?}");
                let id = ev[0].strip_prefix("id: ").expect("id line").to_string();
                let expected = if id == sentinel { r#""end""# } else { &data };
                let json = datagram(&id, "/r", expected);
                assert_eq!(ev[1], format!("data: {json}"));
                stream_bytes += sse_framed_len(&id, &json);
                let done = id == sentinel;
                received.push(id);
                if done {
                    break;
                }
            }
            None => {
                // Recycled: only after the limit, with the final chunk and nothing after the
                // last event.
                assert!(s.ended);
                assert_eq!(s.rest(), b"");
                assert!(stream_bytes >= 2048, "recycled after {stream_bytes} bytes");
                recycles += 1;
                assert!(recycles <= 10, "recycled too often");
                let last = received.last().expect("something before a recycle");
                s = Stream::open(addr, &format!("/tunnel?format=sse&id={tunnel}&last={last}"));
                assert_eq!(sse_tunnel(&mut s, false, 15000), tunnel);
                stream_bytes = 0;
            }
        }
    }
    assert!(recycles >= 1, "the stream was never recycled");
    let mut expected = published;
    expected.push(sentinel);
    assert_eq!(received, expected, "every datagram exactly once, in order");
    // The last stream ends too when it carried the limit; otherwise it still delivers.
    if stream_bytes >= 2048 {
        assert_eq!(s.rest(), b"");
        assert!(s.ended);
        recycles += 1;
    } else {
        let more = p.publish("/r", "0");
        assert_eq!(
            s.sse_event().unwrap(),
            vec![
                format!("id: {more}"),
                format!("data: {}", datagram(&more, "/r", "0"))
            ]
        );
    }
    assert_eq!(metrics(addr)["recycled"], recycles);
}

/// docs/limits.md: "the stream is ended after the datagram that crosses it". A re-attach that
/// replays a backlog must stop there too, not after the whole (up to 64 KiB) write batch.
#[test]
fn sse_recycle_stops_at_the_crossing_datagram_when_replaying_a_backlog() {
    let addr = start(&["--set", "stream_recycle_bytes.sse=2048"]);
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/b");
    let tunnel = sse_tunnel(&mut s, true, 15000);
    drop(s);
    let mut p = Publisher::new(addr);
    let data = format!("\"{}\"", "b".repeat(100));
    let ids: Vec<String> = (0..30).map(|_| p.publish("/b", &data)).collect();
    // Replays ids[1..] at once.
    let mut s = Stream::open(
        addr,
        &format!("/tunnel?format=sse&id={tunnel}&last={}", ids[0]),
    );
    assert_eq!(sse_tunnel(&mut s, false, 15000), tunnel);
    let mut written = 0;
    let mut expected = Vec::new();
    for id in &ids[1..] {
        if written >= 2048 {
            break;
        }
        let json = datagram(id, "/b", &data);
        written += sse_framed_len(id, &json);
        expected.push(id.clone());
    }
    let mut got = Vec::new();
    while let Some(ev) = s.sse_event() {
        got.push(ev[0].strip_prefix("id: ").unwrap().to_string());
    }
    assert!(s.ended);
    assert_eq!(
        got,
        expected,
        "the recycled stream carried {} datagrams; the limit is crossed by the {}th",
        got.len(),
        expected.len()
    );
}

#[test]
fn http10_stream_is_close_delimited() {
    let addr = start(&["--set", "stream_recycle_bytes.ndjson=1024"]);
    let mut c = Client::new(addr);
    c.send(b"GET /tunnel?format=ndjson&path=/h HTTP/1.0\r\n\r\n");
    let head = c.head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(head.header("transfer-encoding"), None);
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));

    // The body is the bare format: no chunk framing.
    let mut line = String::new();
    c.reader.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let tunnel = v["tunnel"].as_str().unwrap();
    assert_eq!(line, format!("{}\n", control(tunnel, true, 15000)));

    let mut p = Publisher::new(addr);
    let data = format!("\"{}\"", "h".repeat(150));
    let mut written = 0;
    while written < 1024 {
        let id = p.publish("/h", &data);
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        assert_eq!(line, format!("{}\n", datagram(&id, "/h", &data)));
        written += line.len();
    }
    // Recycled: the response ends by closing the connection, with nothing more on the wire.
    let mut rest = Vec::new();
    c.reader
        .read_to_end(&mut rest)
        .expect("EOF within the wait");
    assert_eq!(utf8(rest), "");
    assert_eq!(metrics(addr)["recycled"], 1);
}
