//! A worker process: opens its share of the tunnels, receives on them, and reports to the
//! coordinator over stdout (one JSON line per report); takes `start <µs>` and `stop` on stdin.
//!
//! Tunnel `j` belongs to worker `j % processes`, and within it to thread
//! `(j / processes) % threads`; each thread is one monoio runtime.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::client::{self, Counters, Shared, ThreadState, Tunnel};
use crate::stats::{self, new_histogram, Latencies};
use crate::tracker::{PathTally, Tracker};

/// How often a worker reports its counters and recent latencies.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(500);

/// What a worker says, one JSON object per line.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    Status(Status),
    Result(Box<Outcome>),
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub open: u64,
    /// When the latest tunnel opened (`CLOCK_MONOTONIC` µs), 0 before the first.
    pub last_open_us: u64,
    pub failed: u64,
    pub lost: u64,
    pub deliveries: u64,
    /// Lost connections re-attached (`--reattach`).
    #[serde(default)]
    pub reattaches: u64,
    /// Latencies since the previous report (base64 histogram).
    pub recent: String,
}

/// Everything a worker measured, sent once when it stops.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// Latest delivery (`CLOCK_MONOTONIC` µs), 0 when none.
    pub last_delivery_us: u64,
    pub total: String,
    pub intervals: Vec<String>,
    /// Sequence tallies per path index (a list: JSON map keys would be strings).
    pub paths: Vec<(u64, PathTally)>,
    /// Tunnels that failed or ended early, by reason.
    pub errors: BTreeMap<String, u64>,
}

type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// io_uring entries per runtime: few, as locked memory is scarce and a worker runs several.
const URING_ENTRIES: u32 = 1024;

fn build_runtime() -> Runtime {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(URING_ENTRIES)
        .enable_timer()
        .build()
        .expect("a monoio runtime can be built")
}

/// One thread's share, handed back when the run stops.
struct ThreadResult {
    latencies: Latencies,
    trackers: Vec<(u64, Tracker)>,
    errors: BTreeMap<&'static str, u64>,
    last_delivery_us: u64,
}

fn thread_main(
    shared: Arc<Shared>,
    args: Args,
    processes: u64,
    index: u64,
    thread: u64,
) -> ThreadResult {
    let mut runtime = build_runtime();
    runtime.block_on(async move {
        let state = Rc::new(RefCell::new(ThreadState::default()));
        let stride = processes * args.threads;
        let first = index + processes * thread;
        // This thread's share of the ramp: one tunnel every `stride / ramp` seconds.
        let interval = Duration::from_secs_f64(stride as f64 / args.ramp_per_s);
        let ramp_start = Instant::now();
        for (n, j) in (first..args.tunnels()).step_by(stride as usize).enumerate() {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let placement = args.placement(j);
            let slot = placement.path.map(|path| {
                let mut state = state.borrow_mut();
                state.trackers.push((path, Tracker::new()));
                state.trackers.len() - 1
            });
            let (shared, state) = (shared.clone(), state.clone());
            monoio::spawn(async move {
                client::run_tunnel(&shared, state, Tunnel { placement, slot }).await;
            });
            let due = ramp_start + interval * (n as u32 + 1);
            let now = Instant::now();
            if due > now {
                monoio::time::sleep(due - now).await;
            }
        }
        client::wait_for_stop(&shared).await;
        let mut state = state.borrow_mut();
        ThreadResult {
            latencies: std::mem::take(&mut state.latencies),
            trackers: std::mem::take(&mut state.trackers),
            errors: std::mem::take(&mut state.errors),
            last_delivery_us: state.last_delivery_us,
        }
    })
}

fn status(shared: &Shared) -> Status {
    let counters: &Counters = &shared.counters;
    let recent = match shared.recent.lock() {
        Ok(mut recent) => {
            let encoded = stats::to_base64(&recent);
            recent.reset();
            encoded
        }
        Err(_) => String::new(),
    };
    Status {
        open: counters.tunnels_open.load(Ordering::Relaxed),
        last_open_us: counters.last_open_us.load(Ordering::Relaxed),
        failed: counters.tunnels_failed.load(Ordering::Relaxed),
        lost: counters.tunnels_lost.load(Ordering::Relaxed),
        deliveries: counters.deliveries.load(Ordering::Relaxed),
        reattaches: counters.reattaches.load(Ordering::Relaxed),
        recent,
    }
}

fn send(report: &Report) {
    let mut out = std::io::stdout().lock();
    let line = serde_json::to_string(report).expect("reports serialize");
    // The coordinator gone means nobody is left to report to: stop.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
}

/// Runs worker `index` of `processes` until `stop` arrives on stdin (or stdin closes).
pub fn run(args: Args, index: u64, processes: u64) {
    router::os::raise_open_files_limit();
    let shared = Arc::new(Shared {
        peer: args.peer,
        reattach: args.reattach,
        reattach_delay: Duration::from_millis(args.reattach_delay_ms),
        counters: Counters::default(),
        start_us: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        recent: Mutex::new(new_histogram()),
    });
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match line.split_once(' ') {
                    Some(("start", us)) => {
                        if let Ok(us) = us.trim().parse() {
                            shared.start_us.store(us, Ordering::Relaxed);
                        }
                    }
                    _ if line.trim() == "stop" => break,
                    _ => eprintln!("loadgen worker: unknown command {line:?}"),
                }
            }
            shared.stop.store(true, Ordering::Relaxed);
        });
    }
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            let (shared, args) = (shared.clone(), args.clone());
            std::thread::Builder::new()
                .name(format!("loadgen-{index}-{t}"))
                .spawn(move || thread_main(shared, args, processes, index, t))
                .expect("a thread can be spawned")
        })
        .collect();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(STATUS_INTERVAL);
        send(&Report::Status(status(&shared)));
    }
    let mut latencies = Latencies::new();
    let mut paths: BTreeMap<u64, PathTally> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_delivery_us = 0;
    for thread in threads {
        let Ok(result) = thread.join() else {
            eprintln!("loadgen worker {index}: a receiver thread panicked");
            std::process::exit(1);
        };
        latencies.merge(&result.latencies);
        for (path, tracker) in &result.trackers {
            paths.entry(*path).or_default().add_tracker(tracker);
        }
        for (reason, n) in result.errors {
            *errors.entry(reason.to_owned()).or_default() += n;
        }
        last_delivery_us = last_delivery_us.max(result.last_delivery_us);
    }
    send(&Report::Result(Box::new(Outcome {
        status: status(&shared),
        last_delivery_us,
        total: stats::to_base64(&latencies.total),
        intervals: latencies.intervals.iter().map(stats::to_base64).collect(),
        paths: paths.into_iter().collect(),
        errors,
    })));
    // Tunnel tasks still hold their sockets; exiting closes them all at once.
    std::process::exit(0);
}
