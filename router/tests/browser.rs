//! The browser client (client/router-client.js) in headless Chromium against an in-process
//! router: client/test/browser.mjs forces each transport (ws, sse, longpoll, jsonp) and checks
//! 200 datagrams arrive exactly once and in order across two forced drops, the fallback from a
//! refused WebSocket to SSE and from a buffered stream to long-poll, and back up once the
//! WebSocket works, the waits a draining router
//! (close 1012, SSE `retry:`) and a busy one (`Retry-After`) ask for, no re-attach while the
//! page is hidden, a tunnel lost meanwhile reported as a gap, tokens on every transport (against
//! a second router with `auth.mode = "jwt"`) and their expiry, and the demo page.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`, done by .ci/run) and the npm package
//! `playwright-core` (`npm ci --prefix client/test`, done by scripts/check.sh). A missing one
//! fails the test with those instructions: it is never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::script::{drain, workspace};
use support::*;

/// Longest the browser tests may run before they are killed and the test fails (they take
/// about 45 s here).
const RUN_TIME_MAX: Duration = Duration::from_secs(100);

#[test]
fn browser_client_in_headless_chromium() {
    let missing = "the browser tests need node (20 or later), the npm package `playwright-core` \
                   from client/test/package-lock.json (`npm ci --prefix client/test`) and \
                   Debian's `chromium` (`apt-get install -y chromium`)";
    let playwright = workspace().join("client/test/node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: {missing}",
        playwright.strip_prefix(workspace()).unwrap().display()
    );
    // A short grace, so that the tunnel of a hidden page is culled within the test (the client's
    // other re-attaches, the drain's spread of up to 5 s included, come well within it).
    let grace_ms = "6000";
    let addr = start(&["--tunnel-grace-ms", grace_ms]);
    let base = format!("http://{addr}");
    // The tokens' router: HS256 with a secret the test's client mints tokens with, and no
    // leeway, so that a token expires within the test.
    let dir = std::env::temp_dir().join(format!("router-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("hs256.secret");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::fs::write(&secret, format!("browser-test-{nanos:040}\n")).unwrap();
    let secret = secret.to_str().unwrap();
    let auth_addr = start(&[
        "--set",
        "auth.mode=jwt",
        "--set",
        &format!("auth.hs256_secret_file={secret}"),
        "--set",
        "auth.leeway_s=0",
    ]);
    let auth_base = format!("http://{auth_addr}");
    let mut child = Command::new("node")
        .args(["client/test/browser.mjs", &base, "--grace-ms", grace_ms])
        .args(["--auth-router", &auth_base, "--secret-file", secret])
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): {missing}"));
    // Both pipes drain on their own threads, so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if started.elapsed() > RUN_TIME_MAX {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser tests did not finish within {RUN_TIME_MAX:?}; they were killed.\n\
                 stdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    println!("{stdout}");
    assert!(
        status.success(),
        "client/test/browser.mjs exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Every part reports its own line: a run that skipped one fails here.
    for part in [
        "ok ws: ",
        "ok sse: ",
        "ok longpoll: ",
        "ok jsonp: ",
        "ok fallback refused WebSocket: ws -> sse ",
        "ok fallback buffered stream: ws -> sse -> longpoll ",
        "ok upgrade: ",
        "ok drain ws: ",
        "ok drain sse: ",
        "ok Retry-After: ",
        "ok hidden page: ",
        "ok token ws: ",
        "ok token sse: ",
        "ok token longpoll: ",
        "ok token jsonp: ",
        "ok demo page: ",
        "browser tests passed",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(part)),
            "no `{part}` line:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}
