//! Running as a service: readiness and stopping told to the service manager (`sd_notify`, when
//! it set `NOTIFY_SOCKET`), and the signals. SIGTERM or SIGINT drains ([`Server::drain`]) and
//! exits 0; a second one exits at once; SIGHUP reloads the configuration ([`reload`]).

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;
use crate::limits::{RELOAD_POLL_MS, RELOAD_WAIT_MS};
use crate::shard::settings::Settings;

use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::Server;

/// The exit status after a second stop signal: the shell's convention for a death by signal.
fn killed_status(signal: i32) -> i32 {
    128 + signal
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// Tells the service manager, if there is one; a failure is logged, never fatal.
fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

enum Event {
    Signal(i32),
    Drained,
}

/// Sets the log filter to a directive, or says why it could not.
pub type SetLog = Box<dyn Fn(&str) -> Result<(), String>>;

/// How the process was started, so that SIGHUP can read its configuration again.
pub struct Reloading {
    /// The command-line arguments (without the program's name): the file they name is read
    /// again and the other flags applied over it again.
    pub args: Vec<String>,
    /// Sets the log filter (`log`, checked before); an error is logged.
    pub set_log: SetLog,
}

/// Serves until a stop signal, drains, and returns the process's exit status: 0 after a drain
/// (every connection ended, or `drain_ms` passed), `128 + signal` when a second stop signal cut
/// the drain short. SIGHUP reloads the configuration as `reloading` says.
pub fn run(server: Server, reloading: &Reloading) -> i32 {
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle signals; serving without a drain");
            server.join();
            return 0;
        }
    };
    let (events, received) = mpsc::channel();
    let signalled = events.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signalled.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    });
    // The listeners are bound (connections queue in their backlog until the shards accept).
    let status = format!("listening on {}", server.addr);
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    let mut server = Some(server);
    let mut draining = false;
    while let Ok(event) = received.recv() {
        match event {
            Event::Signal(SIGHUP) => match &server {
                Some(server) => reload(server, reloading),
                None => tracing::info!("SIGHUP while draining: nothing reloaded"),
            },
            Event::Signal(signal) if draining => {
                tracing::warn!(
                    signal = signal_name(signal),
                    "second stop signal: exiting without waiting for the drain"
                );
                return killed_status(signal);
            }
            Event::Signal(signal) => {
                draining = true;
                tracing::info!(
                    signal = signal_name(signal),
                    "draining: listeners closed, every connection told to go"
                );
                notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
                let Some(server) = server.take() else { break };
                // Read now: a reload may have changed it.
                let drain_ms = server.shared.settings.get().1.config.drain_ms;
                let done = events.clone();
                std::thread::spawn(move || {
                    let metrics = server.shared.clone();
                    server.drain(drain_ms);
                    let left: u64 = metrics
                        .metrics
                        .iter()
                        .map(|m| m.connections_open.load(Ordering::Relaxed))
                        .sum();
                    tracing::info!(connections_left = left, "drained; exiting");
                    let _ = done.send(Event::Drained);
                });
            }
            Event::Drained => return 0,
        }
    }
    0
}

/// Reads the configuration again (the same file and flags as at start-up) and applies what can
/// change while serving: the log filter at once, the rest through each shard's copy of the
/// settings (docs/operations.md, "Reload"). Keys that need a restart are named and keep their
/// running values. A configuration that does not load or validate is refused whole: the
/// running one stays, and the log says why.
pub fn reload(server: &Server, reloading: &Reloading) {
    let refused = |error: &dyn std::fmt::Display| {
        tracing::error!(
            error = %one_line(&error.to_string()),
            "SIGHUP: the new configuration is refused; the running one stays"
        );
    };
    let new = match Config::from_args(reloading.args.iter().cloned()) {
        Ok(new) => new,
        Err(e) => return refused(&e),
    };
    let (_, running) = server.shared.settings.get();
    let reloaded = match running.config.reload(&new) {
        Ok(reloaded) => reloaded,
        Err(e) => return refused(&e),
    };
    let formats = match super::custom_formats(&reloaded.config) {
        Ok(formats) => formats,
        Err(e) => return refused(&e),
    };
    // The key files are read again at every reload: a rotated key may sit behind an unchanged
    // path. Tunnels keep the grants they hold; tokens verified with the old keys are forgotten.
    let auth = match Auth::load(&reloaded.config.auth) {
        Ok(auth) => Arc::new(auth),
        Err(e) => return refused(&e),
    };
    let tls = match super::tls::load(&reloaded.config.tls) {
        Ok(tls) => tls,
        Err(e) => return refused(&e),
    };
    let rereads_keys = auth.reads_files() || tls.is_some();
    let log = (reloaded.config.log != running.config.log).then(|| reloaded.config.log.clone());
    if let Some(directive) = &log {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(directive) {
            return refused(&format!(
                "config key `log`: {directive:?} is not a filter: {e}"
            ));
        }
    }
    if !reloaded.needs_restart.is_empty() {
        tracing::warn!(
            keys = %reloaded.needs_restart.join(", "),
            "SIGHUP: these keys need a restart; they keep their running values"
        );
    }
    if reloaded.changed.is_empty() && !rereads_keys {
        tracing::info!("SIGHUP: configuration read again; nothing to change");
        return;
    }
    if rereads_keys {
        tracing::info!(
            keys = auth.key_count(),
            tls = tls.is_some(),
            "SIGHUP: key and certificate files read again"
        );
    }
    let generation = server.shared.settings.publish(Settings {
        config: reloaded.config,
        formats,
        auth,
        tls,
        // A restart key: the running programs stay.
        programs: running.programs.clone(),
    });
    // The shards pick the settings up between two tasks: at once unless one is stuck.
    let shards = server.shared.metrics.len();
    let deadline = Instant::now() + Duration::from_millis(RELOAD_WAIT_MS);
    while server.shared.settings.applied_by(generation) < shards && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(RELOAD_POLL_MS));
    }
    tracing::info!(
        changed = %reloaded.changed.join(", "),
        shards_applied = server.shared.settings.applied_by(generation),
        shards,
        "SIGHUP: configuration reloaded (new requests, connections and tunnels use it)"
    );
    // The filter changes last: the line above is written under the running one.
    if let Some(directive) = log {
        if let Err(e) = (reloading.set_log)(&directive) {
            tracing::error!(error = %e, "SIGHUP: the log filter could not be changed");
        }
    }
}

/// A multi-line error (the TOML parser's, with the offending line and a caret under it) as one
/// log line: the lines joined with "; ", without the margins and the caret line.
fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text
        .lines()
        .map(|line| {
            let line = line.trim();
            // The parser's margin: `  |` or ` 12 | ` before the quoted line.
            match line.split_once('|') {
                Some((margin, rest)) if margin.trim().chars().all(|c| c.is_ascii_digit()) => {
                    rest.trim()
                }
                _ => line,
            }
        })
        .filter(|line| !line.is_empty() && !line.chars().all(|c| c == '^'))
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_fits_one_line() {
        let text = "router.toml: TOML parse error at line 2, column 16\n  |\n2 | keepalive_ms = 'soon'\n  |                ^^^^^^\ninvalid type: string \"soon\", expected u64\n";
        assert_eq!(
            one_line(text),
            "router.toml: TOML parse error at line 2, column 16; keepalive_ms = 'soon'; \
             invalid type: string \"soon\", expected u64"
        );
        assert_eq!(one_line("config key `a`: b"), "config key `a`: b");
        assert_eq!(one_line("a | b"), "a | b", "a bar in a message is kept");
    }
}
