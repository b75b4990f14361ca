//! The seed systems against the router binary, each checked by a black-box client written from
//! its seed text alone (scripts/seeds/): Talk's push and NUL-framed pull.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::process::RouterProcess;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Runs a seed client against `router`; its report is shown when it fails.
fn seed_client(script: &str, router: &RouterProcess, args: &[&str]) {
    let out = Command::new("python3")
        .arg(format!("scripts/seeds/{script}"))
        .arg(router.addr.to_string())
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{report}\n{errors}");
    let last = report.lines().last().unwrap_or_default();
    assert!(last.ends_with(" 0 failed"), "{report}");
}

#[test]
fn talk_push_and_nul_framed_pull() {
    let router = RouterProcess::start(&[]);
    seed_client("talk.py", &router, &[]);
}
