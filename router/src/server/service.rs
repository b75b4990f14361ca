//! Running as a service: readiness and stopping told to the service manager (`sd_notify`, when
//! it set `NOTIFY_SOCKET`), and the signals. SIGTERM or SIGINT drains ([`Server::drain`]) and
//! exits 0; a second one exits at once; SIGHUP is logged (nothing is reloaded yet).

use std::sync::atomic::Ordering;
use std::sync::mpsc;

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

/// Serves until a stop signal, drains, and returns the process's exit status: 0 after a drain
/// (every connection ended, or `drain_ms` passed), `128 + signal` when a second stop signal cut
/// the drain short.
pub fn run(server: Server) -> i32 {
    let drain_ms = server.shared.config.drain_ms;
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
            Event::Signal(SIGHUP) => {
                tracing::info!("SIGHUP: reloading is not supported yet; nothing changed");
            }
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
                    drain_ms,
                    "draining: listeners closed, every connection told to go"
                );
                notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
                let Some(server) = server.take() else { break };
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
