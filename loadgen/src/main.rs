//! `loadgen`: an open-loop load generator for the router (tunnels, publishes, latency, loss).
//!
//! # Layout
//! - `pacing`: the open-loop schedule (intended send times).
//! - `tracker`: per-receiver sequence tracking (gaps, duplicates, out of order).
//! - `stats`: latency histograms, percentiles, the interval log.
//! - `client`: WebSocket and SSE tunnels, keep-alive publishers (monoio).
//! - `main` (here): arguments, threads, phases, progress, the results folder.

mod client;
mod pacing;
mod stats;
mod tracker;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use client::{Counters, Live, Shared, Transport, WorkerState};
use pacing::Schedule;
use stats::{percentiles, Latencies, Percentiles};
use tracker::{SeqCounts, Tracker};

const USAGE: &str = "\
usage: loadgen --target HOST:PORT --transport ws|sse --live M --idle N --paths K
               --rate R --duration-s D --out DIR
               [--workers W] [--publishers C] [--ramp-per-s S] [--drain-ms MS]

Opens N idle and M live tunnels (live tunnel i subscribes to /load/<i % K>), then
publishes R datagrams per second open-loop to /publish/load/<k % K> for D seconds,
and measures delivery latency from each publish's intended time.
Writes DIR/summary.json and DIR/latency.hlog; prints a one-line summary.

  --workers W       receiver threads (default: cores - 1, at least 1)
  --publishers C    publisher keep-alive connections (default: min(K, 4))
  --ramp-per-s S    tunnel connections opened per second (default 5000)
  --drain-ms MS     wait after the last publish before stopping (default 1000)";

#[derive(Debug, Clone)]
struct Args {
    target: SocketAddr,
    transport: Transport,
    live: u64,
    idle: u64,
    paths: u64,
    rate_per_s: f64,
    duration_s: u64,
    out: PathBuf,
    workers: u64,
    publishers: u64,
    ramp_per_s: f64,
    drain_ms: u64,
}

enum ArgsError {
    Help,
    Bad(String),
}

fn parse_args(argv: &[String]) -> Result<Args, ArgsError> {
    let mut values = std::collections::HashMap::new();
    let mut iter = argv.iter();
    while let Some(flag) = iter.next() {
        if flag == "--help" || flag == "-h" {
            return Err(ArgsError::Help);
        }
        let known = [
            "--target",
            "--transport",
            "--live",
            "--idle",
            "--paths",
            "--rate",
            "--duration-s",
            "--out",
            "--workers",
            "--publishers",
            "--ramp-per-s",
            "--drain-ms",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(ArgsError::Bad(format!("unknown argument {flag:?}")));
        }
        let Some(value) = iter.next() else {
            return Err(ArgsError::Bad(format!("{flag} needs a value")));
        };
        values.insert(flag.as_str(), value.clone());
    }
    let required = |name: &str| {
        values
            .get(name)
            .cloned()
            .ok_or_else(|| ArgsError::Bad(format!("missing {name}")))
    };
    fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ArgsError> {
        value
            .parse()
            .map_err(|_| ArgsError::Bad(format!("{name}: invalid number {value:?}")))
    }
    let target = required("--target")?;
    let target: SocketAddr = target
        .parse()
        .map_err(|_| ArgsError::Bad(format!("--target: expected IP:PORT, got {target:?}")))?;
    let transport = match required("--transport")?.as_str() {
        "ws" => Transport::Ws,
        "sse" => Transport::Sse,
        other => {
            return Err(ArgsError::Bad(format!(
                "--transport: expected ws or sse, got {other:?}"
            )))
        }
    };
    let live: u64 = number("--live", &required("--live")?)?;
    let idle: u64 = number("--idle", &required("--idle")?)?;
    let paths: u64 = number("--paths", &required("--paths")?)?;
    let rate_per_s: f64 = number("--rate", &required("--rate")?)?;
    let duration_s: u64 = number("--duration-s", &required("--duration-s")?)?;
    let out = PathBuf::from(required("--out")?);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
    let workers: u64 = match values.get("--workers") {
        Some(v) => number("--workers", v)?,
        None => cores.saturating_sub(1).max(1),
    };
    let publishers: u64 = match values.get("--publishers") {
        Some(v) => number("--publishers", v)?,
        None => paths.min(4),
    };
    let ramp_per_s: f64 = match values.get("--ramp-per-s") {
        Some(v) => number("--ramp-per-s", v)?,
        None => 5000.0,
    };
    let drain_ms: u64 = match values.get("--drain-ms") {
        Some(v) => number("--drain-ms", v)?,
        None => 1000,
    };
    if paths == 0 || paths > 1_000_000 {
        return Err(ArgsError::Bad("--paths must be 1..=1000000".into()));
    }
    if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
        return Err(ArgsError::Bad("--rate must be positive".into()));
    }
    if !(ramp_per_s.is_finite() && ramp_per_s > 0.0) {
        return Err(ArgsError::Bad("--ramp-per-s must be positive".into()));
    }
    if duration_s == 0 || duration_s > 3600 {
        return Err(ArgsError::Bad("--duration-s must be 1..=3600".into()));
    }
    if workers == 0 || workers > 1024 {
        return Err(ArgsError::Bad("--workers must be 1..=1024".into()));
    }
    if publishers == 0 || publishers > paths {
        return Err(ArgsError::Bad("--publishers must be 1..=paths".into()));
    }
    Ok(Args {
        target,
        transport,
        live,
        idle,
        paths,
        rate_per_s,
        duration_s,
        out,
        workers,
        publishers,
        ramp_per_s,
        drain_ms,
    })
}

type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

fn build_runtime() -> Runtime {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(4096)
        .enable_timer()
        .build()
        .expect("a monoio runtime can be built")
}

/// One receiver thread's result.
struct WorkerResult {
    latencies: Latencies,
    trackers: Vec<(usize, Tracker)>,
}

/// Opens this worker's tunnels (global index `j` with `j % workers == worker`;
/// indices below `live` are live) at its share of the ramp rate, then receives
/// until the run stops.
fn worker(shared: Arc<Shared>, args: Args, worker: u64, results: mpsc::Sender<WorkerResult>) {
    let mut runtime = build_runtime();
    let result = runtime.block_on(async move {
        let state = Rc::new(RefCell::new(WorkerState::default()));
        let total = args.live + args.idle;
        let interval = Duration::from_secs_f64(args.workers as f64 / args.ramp_per_s);
        let ramp_start = Instant::now();
        let mut opened = 0u32;
        for j in (worker..total).step_by(args.workers as usize) {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let live = (j < args.live).then(|| {
                let path = (j % args.paths) as usize;
                let mut state = state.borrow_mut();
                state.trackers.push((path, Tracker::new()));
                Live {
                    path,
                    slot: state.trackers.len() - 1,
                }
            });
            let (shared, state) = (shared.clone(), state.clone());
            monoio::spawn(async move {
                client::run_tunnel(&shared, state, args.transport, live).await;
            });
            opened += 1;
            let due = ramp_start + interval * opened;
            let now = Instant::now();
            if due > now {
                monoio::time::sleep(due - now).await;
            }
        }
        client::wait_for_stop(&shared).await;
        let mut state = state.borrow_mut();
        WorkerResult {
            latencies: std::mem::take(&mut state.latencies),
            trackers: std::mem::take(&mut state.trackers),
        }
    });
    let _ = results.send(result);
}

fn publisher(shared: Arc<Shared>, args: Args, done: mpsc::Sender<()>) {
    let mut runtime = build_runtime();
    runtime.block_on(async move {
        let start = *shared.start.get().expect("set before the publisher starts");
        // Publishes intended in [start, start + duration).
        let publishes_total = (args.duration_s as f64 * args.rate_per_s).ceil() as u64;
        let schedule = Schedule::new(args.rate_per_s, start);
        let mut handles = Vec::new();
        for connection in 0..args.publishers {
            let (shared, schedule) = (shared.clone(), schedule.clone());
            handles.push(monoio::spawn(async move {
                client::run_publisher(
                    &shared,
                    schedule,
                    publishes_total,
                    args.paths,
                    args.publishers,
                    connection,
                )
                .await
            }));
        }
        for handle in handles {
            if let Err(err) = handle.await {
                eprintln!("loadgen: publisher: {err}");
            }
        }
    });
    let _ = done.send(());
}

#[derive(serde::Serialize)]
struct Environment {
    git_revision: String,
    kernel: String,
    cpu_model: String,
    cores: u64,
    nofile_limit: u64,
}

#[derive(serde::Serialize)]
struct Summary {
    scenario: &'static str,
    command: String,
    environment: Environment,
    transport: &'static str,
    live: u64,
    idle: u64,
    paths: u64,
    rate_per_s: f64,
    duration_s: u64,
    workers: u64,
    publishers: u64,
    tunnels_attempted: u64,
    tunnels_open: u64,
    tunnels_failed: u64,
    tunnels_lost: u64,
    ramp_ms: u64,
    publishes_sent: u64,
    publishes_accepted: u64,
    publishes_failed: u64,
    deliveries: u64,
    deliveries_expected: u64,
    deliveries_per_s: f64,
    latency_us: Percentiles,
    sequence: SeqCounts,
}

fn environment(nofile_limit: u64) -> Environment {
    let git_revision = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
    Environment {
        git_revision,
        kernel,
        cpu_model,
        cores,
        nofile_limit,
    }
}

fn progress_line(
    counters: &Counters,
    phase: &str,
    elapsed: Duration,
    last_deliveries: &mut u64,
) -> String {
    let deliveries = counters.deliveries.load(Ordering::Relaxed);
    let rate = deliveries - *last_deliveries;
    *last_deliveries = deliveries;
    format!(
        "[{phase} {:>4}s] tunnels open {} failed {} lost {} | publishes {} ok {} failed {} | deliveries {} ({}/s)",
        elapsed.as_secs(),
        counters.tunnels_open.load(Ordering::Relaxed),
        counters.tunnels_failed.load(Ordering::Relaxed),
        counters.tunnels_lost.load(Ordering::Relaxed),
        counters.publishes_sent.load(Ordering::Relaxed),
        counters.publishes_accepted.load(Ordering::Relaxed),
        counters.publishes_failed.load(Ordering::Relaxed),
        deliveries,
        rate,
    )
}

fn run(args: Args, command: String) -> std::io::Result<String> {
    std::fs::create_dir_all(&args.out)?;
    let nofile_limit = router::os::raise_open_files_limit();
    let total = args.live + args.idle;
    if total + args.publishers + 64 > nofile_limit {
        eprintln!(
            "loadgen: warning: {total} tunnels need more than the open-files limit {nofile_limit}"
        );
    }
    let shared = Arc::new(Shared {
        target: args.target,
        host: args.target.to_string(),
        counters: Counters::default(),
        start: OnceLock::new(),
        stop: AtomicBool::new(false),
        published_per_path: (0..args.paths).map(|_| AtomicU64::new(0)).collect(),
    });
    let (results_tx, results_rx) = mpsc::channel();
    for w in 0..args.workers {
        let (shared, args, results_tx) = (shared.clone(), args.clone(), results_tx.clone());
        std::thread::Builder::new()
            .name(format!("loadgen-worker-{w}"))
            .spawn(move || worker(shared, args, w, results_tx))?;
    }
    drop(results_tx);

    // Ramp: wait until every tunnel is open or failed (bounded).
    let counters = &shared.counters;
    let ramp_start = Instant::now();
    let ramp_limit =
        Duration::from_secs_f64(total as f64 / args.ramp_per_s) + Duration::from_secs(10);
    let mut last_deliveries = 0;
    let mut next_progress = ramp_start + Duration::from_secs(1);
    loop {
        let settled = counters.tunnels_open.load(Ordering::Relaxed)
            + counters.tunnels_failed.load(Ordering::Relaxed);
        if settled >= total || ramp_start.elapsed() > ramp_limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        if Instant::now() >= next_progress {
            eprintln!(
                "{}",
                progress_line(counters, "ramp", ramp_start.elapsed(), &mut last_deliveries)
            );
            next_progress += Duration::from_secs(1);
        }
    }
    let ramp_ms = ramp_start.elapsed().as_millis() as u64;

    // Run: publish for the duration, then drain.
    let start = Instant::now() + Duration::from_millis(50);
    let start_wall = SystemTime::now() + Duration::from_millis(50);
    shared.start.set(start).expect("set once");
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (shared, args) = (shared.clone(), args.clone());
        std::thread::Builder::new()
            .name("loadgen-publisher".into())
            .spawn(move || publisher(shared, args, done_tx))?;
    }
    let stop_at =
        start + Duration::from_secs(args.duration_s) + Duration::from_millis(args.drain_ms);
    let mut next_progress = start + Duration::from_secs(1);
    while Instant::now() < stop_at {
        std::thread::sleep(Duration::from_millis(10));
        if Instant::now() >= next_progress {
            eprintln!(
                "{}",
                progress_line(counters, "run", start.elapsed(), &mut last_deliveries)
            );
            next_progress += Duration::from_secs(1);
        }
    }
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    shared.stop.store(true, Ordering::Relaxed);

    let mut latencies = Latencies::new();
    let mut sequence = SeqCounts::default();
    let mut deliveries_expected = 0u64;
    for result in results_rx.iter().take(args.workers as usize) {
        latencies.merge(&result.latencies);
        for (path, tracker) in &result.trackers {
            let published = shared
                .published_per_path
                .get(*path)
                .map_or(0, |c| c.load(Ordering::Relaxed));
            deliveries_expected += published;
            sequence.add(&tracker.counts(published));
        }
    }
    let summary = Summary {
        scenario: "fanout",
        command,
        environment: environment(nofile_limit),
        transport: match args.transport {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        },
        live: args.live,
        idle: args.idle,
        paths: args.paths,
        rate_per_s: args.rate_per_s,
        duration_s: args.duration_s,
        workers: args.workers,
        publishers: args.publishers,
        tunnels_attempted: total,
        tunnels_open: counters.tunnels_open.load(Ordering::Relaxed),
        tunnels_failed: counters.tunnels_failed.load(Ordering::Relaxed),
        tunnels_lost: counters.tunnels_lost.load(Ordering::Relaxed),
        ramp_ms,
        publishes_sent: counters.publishes_sent.load(Ordering::Relaxed),
        publishes_accepted: counters.publishes_accepted.load(Ordering::Relaxed),
        publishes_failed: counters.publishes_failed.load(Ordering::Relaxed),
        deliveries: counters.deliveries.load(Ordering::Relaxed),
        deliveries_expected,
        deliveries_per_s: counters.deliveries.load(Ordering::Relaxed) as f64
            / args.duration_s as f64,
        latency_us: percentiles(&latencies.total),
        sequence,
    };
    let json = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
    std::fs::write(args.out.join("summary.json"), json + "\n")?;
    let mut hlog = std::io::BufWriter::new(std::fs::File::create(args.out.join("latency.hlog"))?);
    stats::write_interval_log(
        &mut hlog,
        &latencies.intervals,
        start_wall,
        &summary.command,
    )?;
    std::io::Write::flush(&mut hlog)?;
    let p = summary.latency_us;
    Ok(format!(
        "loadgen {} live={} idle={} paths={} rate={}/s: tunnels {}/{} open ({} failed, {} lost), publishes {} ({} failed), \
         deliveries {}/{} ({:.0}/s), latency us p50={} p90={} p99={} p99.9={} max={}, gaps={} duplicates={} out_of_order={}",
        summary.transport, args.live, args.idle, args.paths, args.rate_per_s,
        summary.tunnels_open, total, summary.tunnels_failed, summary.tunnels_lost,
        summary.publishes_sent, summary.publishes_failed,
        summary.deliveries, deliveries_expected, summary.deliveries_per_s,
        p.p50_us, p.p90_us, p.p99_us, p.p99_9_us, p.max_us,
        sequence.gaps, sequence.duplicates, sequence.out_of_order,
    ))
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return;
        }
        Err(ArgsError::Bad(message)) => {
            eprintln!("loadgen: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let command = std::iter::once("loadgen".to_owned())
        .chain(argv)
        .collect::<Vec<_>>()
        .join(" ");
    match run(args, command) {
        Ok(line) => {
            println!("{line}");
            // Worker runtimes still hold their tunnel tasks; exiting ends them all at once.
            std::process::exit(0);
        }
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    const GOOD: &str = "--target 127.0.0.1:8080 --transport ws --live 2 --idle 3 --paths 2 --rate 100 --duration-s 1 --out /tmp/x";

    #[test]
    fn parses_a_full_command_line() {
        let Ok(args) = parse_args(&argv(GOOD)) else {
            panic!("valid arguments");
        };
        assert_eq!(args.transport, Transport::Ws);
        assert_eq!(
            (args.live, args.idle, args.paths, args.duration_s),
            (2, 3, 2, 1)
        );
        assert_eq!(args.publishers, 2);
    }

    #[test]
    fn refuses_bad_arguments_with_a_message() {
        let bad = |s: &str| match parse_args(&argv(s)) {
            Err(ArgsError::Bad(message)) => message,
            _ => panic!("{s} should be refused"),
        };
        assert!(bad(&GOOD.replace("ws", "tcp")).contains("--transport"));
        assert!(bad(&GOOD.replace("--rate 100", "--rate x")).contains("--rate"));
        assert!(bad(&GOOD.replace("--paths 2", "--paths 0")).contains("--paths"));
        assert!(bad(&format!("{GOOD} --bogus 1")).contains("--bogus"));
        assert!(bad("--target").contains("needs a value"));
        assert!(bad("--transport ws").contains("missing --target"));
        assert!(matches!(parse_args(&argv("--help")), Err(ArgsError::Help)));
    }
}
