//! The router terminating TLS itself (`[tls]`), checked by a client with Python's `ssl` and
//! `websockets` (scripts/tls/check.py): https long-polls and streams, wss, a loopback backend
//! publishing over TLS, plain HTTP refused on the TLS port, and a certificate replaced by a
//! reload (SIGHUP) while a stream opened before goes on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::process::Command;

use support::process::RouterProcess;
use support::script;

fn client(args: &[&str]) {
    match args.first() {
        Some(&"check") => script::checks("scripts/tls/check.py", args),
        _ => drop(script::run("scripts/tls/check.py", args)),
    }
}

/// A port free on loopback now (taken by the router a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn https_and_wss_on_the_tls_listener_and_a_certificate_reload() {
    let dir = std::env::temp_dir().join(format!("router-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    client(&["cert", d, "a"]);
    client(&["cert", d, "b"]);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(dir.join("a.cert.pem"), &cert).unwrap();
    std::fs::copy(dir.join("a.key.pem"), &key).unwrap();
    let tls_port = free_port();
    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\nlisten = \"127.0.0.1:{tls_port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let router = RouterProcess::start(&["--config", config.to_str().unwrap()]);
    let pid = router.child.id().to_string();
    client(&[
        "check",
        d,
        &router.addr.to_string(),
        &tls_port.to_string(),
        &pid,
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    ]);
    drop(router);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tls_listener_without_a_usable_certificate_does_not_start() {
    let dir = std::env::temp_dir().join(format!("router-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--listen", "127.0.0.1:0", "--set", "tls.listen=127.0.0.1:0"])
        .args(["--set", &format!("tls.cert_file={}", empty.display())])
        .args(["--set", &format!("tls.key_file={}", empty.display())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("tls.cert_file"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--listen", "127.0.0.1:0", "--set", "tls.listen=127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tls.cert_file"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
