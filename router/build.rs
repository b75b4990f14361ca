//! Build script: records the git revision the router is built from, for `router --version`.
//!
//! A build from a tarball, or on a machine without git, still succeeds: the revision is then
//! "unknown". Packagers may set `ROUTER_GIT_REVISION` to name it themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ROUTER_GIT_REVISION");
    let revision = match std::env::var("ROUTER_GIT_REVISION") {
        Ok(given) if !given.trim().is_empty() => given.trim().to_owned(),
        _ => git_revision().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=ROUTER_GIT_REVISION={revision}");
}

/// The short hash of HEAD, and rebuild triggers on the files that move when HEAD moves.
fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short", "HEAD"])?;
    // In a linked worktree `.git` is a file, so ask git where HEAD and the refs really live.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(absolute) {
        watch(&git_dir.join("HEAD"));
        let common_dir = git(&["rev-parse", "--git-common-dir"])
            .map(absolute)
            .unwrap_or_else(|| git_dir.clone());
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common_dir.join(reference));
        }
        // A ref that `git gc` packed moves inside this file instead.
        watch(&common_dir.join("packed-refs"));
    }
    Some(revision)
}

/// git prints some folders relative to where it ran: this crate's folder.
fn absolute(path: String) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Runs git in this crate's folder; `None` when git is missing, fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
