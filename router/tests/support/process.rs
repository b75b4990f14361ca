//! The `router` binary run as a child process, for tests that must see the process itself
//! (a crash, its memory).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Log lines a [`RouterProcess`] keeps (the oldest go first past it).
const LOG_LINES_MAX: usize = 10_000;

/// The `router` binary as a child process, killed when dropped.
pub struct RouterProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line it wrote to stdout (its log), colours stripped.
    log: Arc<Mutex<Vec<String>>>,
}

impl RouterProcess {
    /// On 127.0.0.1:0, with two shards and the `info` log, and `flags`.
    pub fn start(flags: &[&str]) -> RouterProcess {
        RouterProcess::start_with_env(flags, &[])
    }

    /// [`RouterProcess::start`] with extra environment variables.
    pub fn start_with_env(flags: &[&str], env: &[(&str, &str)]) -> RouterProcess {
        let mut args = vec!["--listen", "127.0.0.1:0", "--shards", "2", "--log", "info"];
        args.extend_from_slice(flags);
        RouterProcess::start_with_args(&args, env)
    }

    /// With exactly `args` (which must let it log at `info`, where it says its address).
    pub fn start_with_args(args: &[&str], env: &[(&str, &str)]) -> RouterProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
            .args(args)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the router binary starts");
        // It logs `listening addr=127.0.0.1:PORT` once it listens.
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let plain = strip_ansi(&line);
                {
                    let mut kept = kept.lock().unwrap();
                    if kept.len() >= LOG_LINES_MAX {
                        kept.remove(0);
                    }
                    kept.push(plain.clone());
                }
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
        RouterProcess { child, addr, log }
    }

    /// How many lines it has logged so far: a mark for [`RouterProcess::log_line_after`].
    pub fn log_mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The first line logged after `mark` that contains `needle`, waiting up to 10 s for it.
    pub fn log_line_after(&self, mark: usize, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(line) = log.iter().skip(mark).find(|l| l.contains(needle)) {
                    return line.clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "no line with {needle:?} logged after line {mark}; the log:\n{}",
                    log.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
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
