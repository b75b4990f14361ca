//! Authentication against the router binary, checked by a black-box client with tokens minted
//! by PyJWT (scripts/auth/blackbox.py): HS256 and ES256 tokens open every format and the
//! WebSocket; missing, malformed, `alg=none`, wrong-key, expired and wrong-audience tokens are
//! 401; paths outside the grant are 403 on `path=`, the subscribe call and WebSocket messages;
//! re-attach needs the tunnel's user; `tunnels_max` holds across shards; foreign origins and
//! browser publishes are refused; publishers need a key; tokens that expire end their
//! connections; keys rotate by a reload; new tunnels are paced, re-attaches not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::process::RouterProcess;
use support::script;

/// Runs the black-box client; its report is shown when it fails.
fn blackbox(args: &[&str]) {
    match args.first() {
        Some(&"keys") => drop(script::run("scripts/auth/blackbox.py", args)),
        _ => script::checks("scripts/auth/blackbox.py", args),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("router-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tokens_origins_publisher_keys_and_per_user_limits() {
    let dir = temp_dir("auth");
    let d = dir.to_str().unwrap();
    blackbox(&["keys", d]);
    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        format!(
            r#"tunnel_grace_ms = 300
[auth]
mode = "jwt"
hs256_secret_file = "{d}/hs256.secret"
public_key_files = ["{d}/es256.pub.pem"]
audience = "router"
leeway_s = 1
tunnels_per_sub_max = 4
origins_allowed = ["https://app.example"]
publish_keys_file = "{d}/publish.keys"
"#
        ),
    )
    .unwrap();
    let router = RouterProcess::start(&["--config", config.to_str().unwrap()]);
    blackbox(&["check", d, &router.addr.to_string()]);
    let pid = router.child.id().to_string();
    let config_path = config.to_str().unwrap();
    blackbox(&["rotate", d, &router.addr.to_string(), &pid, config_path]);
    drop(router);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn new_tunnels_are_paced_and_reattaches_are_not() {
    let router = RouterProcess::start(&["--tunnels-new-per-s", "2"]);
    blackbox(&["admission", &router.addr.to_string()]);
}

#[test]
fn a_jwt_router_without_a_usable_key_does_not_start() {
    let dir = temp_dir("auth-bad-key");
    let secret = dir.join("short.secret");
    std::fs::write(&secret, "short\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--listen", "127.0.0.1:0", "--set", "auth.mode=jwt"])
        .args([
            "--set",
            &format!("auth.hs256_secret_file={}", secret.display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("auth.hs256_secret_file"), "{stderr}");
    assert!(stderr.contains("at least 32"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--listen", "127.0.0.1:0", "--set", "auth.mode=jwt"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs a key"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
