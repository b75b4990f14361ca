//! The seed systems against the router binary, each checked by a black-box client written from
//! its seed text alone (scripts/seeds/): Talk's push and NUL-framed pull; push/pull sessions
//! started by `/<n>/<prog>`, their push connection recycled by the server with nothing lost,
//! their pulls reaching a backend, and their end after the grace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use support::process::RouterProcess;
use support::script;

/// Runs a seed client against `router`; its report is shown when it fails.
fn seed_client(name: &str, router: &RouterProcess, args: &[&str]) {
    let path = format!("scripts/seeds/{name}");
    let addr = router.addr.to_string();
    let all: Vec<&str> = std::iter::once(addr.as_str())
        .chain(args.iter().copied())
        .collect();
    script::checks(&path, &all);
}

#[test]
fn talk_push_and_nul_framed_pull() {
    let router = RouterProcess::start(&[]);
    seed_client("talk.py", &router, &[]);
}

#[test]
fn push_pull_sessions() {
    let dir = std::env::temp_dir().join(format!("router-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client = dir.join("client.js");
    std::fs::write(&client, "var session = \"{session}\";\nconnect(session);\n").unwrap();
    let config = dir.join("router.toml");
    let grace_ms = 1500;
    std::fs::write(
        &config,
        format!(
            "session_grace_ms = {grace_ms}\n\
             [programs.prog]\nclient_file = {client:?}\n\
             [programs.timed]\nclient_file = {client:?}\npush_messages_max = 0\npush_ms_max = 300\n"
        ),
    )
    .unwrap();
    let router = RouterProcess::start(&["--config", config.to_str().unwrap()]);
    seed_client("sessions.py", &router, &[&grace_ms.to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With tokens required, the adapters open no way around them: Talk asks for a token where
/// `/tunnel` and `/events` would, and sessions (whose push and pull requests have no user to
/// check) are not served at all.
#[test]
fn the_adapters_under_tokens() {
    let dir = std::env::temp_dir().join(format!("router-seeds-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("hs256.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let client = dir.join("client.js");
    std::fs::write(&client, "var session = \"{session}\";\n").unwrap();
    let addr = support::start(&[
        "--set",
        "auth.mode=jwt",
        "--set",
        &format!("auth.hs256_secret_file={}", secret.display()),
        "--set",
        &format!("programs.prog.client_file={}", client.display()),
    ]);
    let mut c = support::Client::new(addr);
    let cases = [
        ("GET", "/pull", 401, "a token is required"),
        ("POST", "/push", 401, "a token is required"),
        ("POST", "/push?token=nonsense", 401, "invalid token"),
        ("GET", "/5/prog", 501, "not served when tokens are required"),
        ("GET", "/push/0-0-0000000000000000", 404, "unknown session"),
        ("POST", "/pull/0-0-0000000000000000", 404, "unknown session"),
    ];
    for (method, target, status, error) in cases {
        match method {
            "GET" => c.get(target),
            _ => c.post(target, "hello"),
        }
        let (head, body) = c.response();
        assert_eq!(head.status, status, "{method} {target}: {body}");
        assert!(body.contains(error), "{method} {target}: {body}");
    }
    // A token whose grant holds the room pulls and pushes there, and nowhere else.
    let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({
        "sub": "ann", "exp": exp, "subscribe": ["/talk"], "publish": ["/talk"],
    });
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let mut pull = support::Stream::open(addr, &format!("/pull?token={token}"));
    assert_eq!(pull.head.status, 200);
    let cases = [
        ("GET", "/pull?path=/other", 403),
        ("POST", "/push?path=/other", 403),
        ("POST", "/push", 202),
    ];
    for (method, target, status) in cases {
        let target = format!(
            "{target}{}token={token}",
            if target.contains('?') { '&' } else { '?' }
        );
        match method {
            "GET" => c.get(&target),
            _ => c.post(&target, "hello"),
        }
        let (head, body) = c.response();
        assert_eq!(head.status, status, "{method} {target}: {body}");
    }
    assert_eq!(pull.record(b"\0").unwrap(), b"hello");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Talk pull's tunnel has no id its client could re-attach with, so it ends with the pull
/// rather than collect the room's messages for `tunnel_grace_ms`; an ordinary tunnel waits.
#[test]
fn a_talk_pull_takes_its_tunnel_with_it() {
    let addr = support::start(&[]);
    let tunnels_open = || support::metrics(addr)["tunnels_open"].as_u64().unwrap();
    let pull = support::Stream::open(addr, "/pull?path=/room");
    let sse = support::Stream::open(addr, "/tunnel?format=sse&path=/room");
    assert_eq!((pull.head.status, sse.head.status), (200, 200));
    assert_eq!(tunnels_open(), 2);
    drop(pull);
    drop(sse);
    assert!(
        support::eventually(|| tunnels_open() == 1),
        "the pull's tunnel is culled"
    );
    assert_eq!(support::metrics(addr)["tunnels_culled"], 1);
}
