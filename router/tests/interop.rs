//! Third-party WebSocket clients against an in-process router: the PyPI `websockets` client
//! (scripts/interop/ws_python.py) and the npm `ws` client (scripts/interop/ws_node.mjs), each with
//! and without permessage-deflate: publish through the tunnel (acks), read, close, re-attach with
//! `last` and get exactly the missed datagrams.
//!
//! Needs `python3 -m pip install websockets` and `npm ci --prefix scripts/interop` (both done by
//! .ci/run). A missing client fails the test with those instructions: it is never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::script::{drain, workspace};
use support::*;

/// Longest a client script may run before it is killed and the test fails.
const CHILD_TIME_MAX: Duration = Duration::from_secs(30);

/// What a finished child printed.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `program args` in the workspace root, killing it after `CHILD_TIME_MAX`. Panics with
/// `missing` when the program cannot be started.
fn run(program: &str, args: &[&str], missing: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}): {missing}"));
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > CHILD_TIME_MAX {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{program} {}` did not finish within {CHILD_TIME_MAX:?}; it was killed.\n\
                 stdout: {}\nstderr: {}",
                args.join(" "),
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs an interop script against a fresh router and checks its exit status and OK line.
fn check_interop(program: &str, script: &str, ok_prefix: &str, missing: &str) {
    let addr = start(&[]);
    let base = format!("http://{addr}");
    let out = run(program, &[script, &base], missing);
    let report = format!(
        "`{program} {script} {base}` exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status, out.stdout, out.stderr
    );
    assert!(out.status.success(), "{report}");
    let ok = out
        .stdout
        .lines()
        .find(|l| l.starts_with(ok_prefix) && l.ends_with(')'));
    match ok {
        Some(line) => println!("{line}"),
        None => panic!("no `{ok_prefix}...)` line: {report}"),
    }
}

#[test]
fn python_websockets_client_interoperates() {
    let missing = "the Python interop client needs python3 with the PyPI package `websockets`: \
                   install it with `python3 -m pip install websockets` (CI pins it in .ci/run)";
    let probe = run(
        "python3",
        &[
            "-c",
            "import websockets.asyncio.client, websockets; print(websockets.__version__)",
        ],
        missing,
    );
    assert!(
        probe.status.success(),
        "{missing}\npython3 says: {}",
        probe.stderr.trim()
    );
    check_interop(
        "python3",
        "scripts/interop/ws_python.py",
        "python websockets interop: OK (",
        missing,
    );
}

#[test]
fn node_ws_client_interoperates() {
    let missing = "the Node interop client needs node (20 or later) and the npm package `ws` from \
                   scripts/interop/package-lock.json: install it with \
                   `npm ci --prefix scripts/interop`";
    let ws = workspace().join("scripts/interop/node_modules/ws/package.json");
    assert!(
        ws.is_file(),
        "{} is missing: {missing}",
        ws.strip_prefix(workspace()).unwrap().display()
    );
    let probe = run("node", &["--version"], missing);
    assert!(probe.status.success(), "{missing}: {}", probe.stderr.trim());
    check_interop(
        "node",
        "scripts/interop/ws_node.mjs",
        "node ws interop: OK (",
        missing,
    );
}
