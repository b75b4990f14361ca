//! The black-box clients written in Python (scripts/auth, scripts/tls, scripts/seeds), run from
//! the workspace; each prints a line per check and closes with `N passed, M failed`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace folder, where the scripts' paths start.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the router crate sits in the workspace")
        .to_owned()
}

/// Runs `script` with `args`; panics with its report unless it exits 0.
pub fn run(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("python3 runs (with the PyPI packages check.sh installs)");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{report}\n{errors}"
    );
    report
}

/// Runs a client whose report closes with its counts, and holds it to `0 failed`.
pub fn checks(script: &str, args: &[&str]) {
    let report = run(script, args);
    let last = report.lines().last().unwrap_or_default();
    assert!(last.ends_with(" 0 failed"), "{script} {args:?}:\n{report}");
}

/// Reads `pipe` to its end on a thread of its own (a child's stdout or stderr, read while the
/// test waits for the child with a time limit).
pub fn drain<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
