//! HTTP/1.1 request heads (`wire::http1::request::parse_head`), as every connection reads them.
//!
//! Input: the bytes a client sends, from the first byte of a request. Parsed twice, with the
//! router's default limits and with the smallest limits the configuration accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::wire::http1::request::HEADER_COUNT_CAP;
use router::wire::http1::{parse_head, BodyKind, Limits, RequestHead, Status};
use router_fuzz::http_limits;

/// The smallest limits `Config::validate` accepts, so short inputs reach the bounds too.
const LIMITS_SMALL: Limits = Limits {
    header_bytes_max: 256,
    header_count_max: 8,
    body_bytes_max: 1024,
};

fuzz_target!(|data: &[u8]| {
    check(data, &http_limits());
    check(data, &LIMITS_SMALL);
});

fn check(buf: &[u8], limits: &Limits) {
    match parse_head(buf, limits) {
        Ok(Status::Complete(head)) => {
            check_head(&head, buf, limits);
            // The head alone parses to the same head: nothing after it was looked at.
            let alone = buf
                .get(..head.head_len)
                .expect("head_len is within the buffer");
            assert_eq!(parse_head(alone, limits), Ok(Status::Complete(head)));
        }
        Ok(Status::Partial) => assert!(
            buf.len() < limits.header_bytes_max,
            "Partial with {} bytes buffered, at or past the {}-byte limit",
            buf.len(),
            limits.header_bytes_max
        ),
        Err(e) => {
            // Every error maps to a status the router can answer with.
            assert!(matches!(e.status(), 400 | 413 | 414 | 431 | 501), "{e:?}");
        }
    }
}

fn check_head(head: &RequestHead, buf: &[u8], limits: &Limits) {
    assert!(head.head_len <= buf.len().min(limits.header_bytes_max));
    assert!(head.version_minor <= 1);
    assert!(head.headers().count() <= limits.header_count_max.min(HEADER_COUNT_CAP));
    for (name, _) in head.headers() {
        assert!(
            head.header(name).is_some(),
            "header {name:?} not found by name"
        );
    }
    let target = head.target();
    assert!(target == "*" || target.starts_with('/'), "{target:?}");
    assert!(!target.contains('#'), "{target:?}");
    // The path and the query are the target, split at its first '?'.
    match target.split_once('?') {
        Some((path, query)) => assert_eq!((head.path(), head.query()), (path, query)),
        None => assert_eq!((head.path(), head.query()), (target, "")),
    }
    match head.body {
        BodyKind::Length(n) => assert!(n > 0 && n <= limits.body_bytes_max as u64, "{n}"),
        BodyKind::Chunked => assert_eq!(head.version_minor, 1),
        BodyKind::None => {}
    }
    assert!(!head.expect_continue || head.version_minor == 1);
}
