//! The `router` binary run as a child process, for tests that must see the process itself
//! (a crash, its memory).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

/// The `router` binary as a child process, killed when dropped.
pub struct RouterProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl RouterProcess {
    pub fn start(flags: &[&str]) -> RouterProcess {
        RouterProcess::start_with_env(flags, &[])
    }

    /// [`RouterProcess::start`] with extra environment variables.
    pub fn start_with_env(flags: &[&str], env: &[(&str, &str)]) -> RouterProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
            .args(["--listen", "127.0.0.1:0", "--shards", "2", "--log", "info"])
            .args(flags)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the router binary starts");
        // It logs `listening addr=127.0.0.1:PORT` once it listens.
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let plain = strip_ansi(&line);
                if let Some(addr) = plain
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the router says where it listens");
        RouterProcess { child, addr }
    }

    /// The router's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.child.id())
    }

    /// Panics if the process has ended.
    pub fn assert_running(&mut self) {
        let status = self.child.try_wait().expect("wait");
        assert!(status.is_none(), "the router ended: {status:?}");
    }
}

impl std::ops::Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory (VmRSS) of process `pid`, in bytes; 0 when it cannot be read.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `line` without ANSI colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
