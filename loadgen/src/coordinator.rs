//! The coordinating process: starts the worker processes, samples the targets' memory,
//! publishes, shows progress, and merges everything into the results folder.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

use crate::args::Args;
use crate::memory;
use crate::net::monotonic_us;
use crate::pacing::Schedule;
use crate::publisher::{self, Plan};
use crate::stats::{self, new_histogram, percentiles, Percentiles};
use crate::tracker::{PathTally, SeqCounts};
use crate::worker::{Outcome, Report, Status};

/// File descriptors a worker keeps for itself (stdio, io_uring, runtime internals).
const FDS_RESERVED: u64 = 256;
/// How long memory is left to settle after the last tunnel opened, before it is sampled.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the workers get to hand in their results after `stop`.
const RESULTS_WAIT: Duration = Duration::from_secs(60);

#[derive(serde::Serialize)]
struct Environment {
    git_revision: String,
    kernel: String,
    cpu_model: String,
    cores: u64,
    nofile_limit: u64,
    /// `net.core.netdev_max_backlog`: loopback packets beyond it are dropped.
    netdev_max_backlog: u64,
}

#[derive(serde::Serialize)]
struct Memory {
    /// Sum of Pss (proportional set size) of the given processes and their descendants.
    method: &'static str,
    pids: Vec<u32>,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    /// (after - before) / tunnels open.
    per_tunnel_bytes: f64,
}

/// What `--reattach` recovered.
#[derive(serde::Serialize)]
struct Reattach {
    /// Wait before each re-attach.
    delay_ms: u64,
    /// Lost connections re-attached with the tunnel id and `last`.
    reattaches: u64,
    /// Deliveries published before a re-attach and received after it (from the replay
    /// buffer): told apart by their intended publish time, so at saturation, where the
    /// publisher lags its schedule, a few live deliveries right after a re-attach count here.
    replayed: u64,
    /// Sequence numbers never received, right behind a gap marker: loss the router announced
    /// (not among `sequence.gaps`).
    lost_behind_gap: u64,
}

#[derive(serde::Serialize)]
struct Summary {
    scenario: &'static str,
    label: String,
    peer: &'static str,
    command: String,
    environment: Environment,
    targets: Vec<String>,
    publish_to: Vec<String>,
    transport: String,
    live: u64,
    idle: u64,
    zombies: u64,
    paths: u64,
    rate_per_s: f64,
    duration_s: u64,
    processes: u64,
    threads: u64,
    sources: u64,
    publishers: u64,
    tunnels_attempted: u64,
    tunnels_open: u64,
    tunnels_failed: u64,
    tunnels_lost: u64,
    tunnel_errors: BTreeMap<String, u64>,
    ramp_ms: u64,
    connect_rate_per_s: f64,
    publishes_sent: u64,
    publishes_accepted: u64,
    publishes_failed: u64,
    publishes_skipped: u64,
    deliveries: u64,
    deliveries_expected: u64,
    deliveries_per_s: f64,
    /// From the first intended publish to the last delivery (at least the duration).
    delivery_window_s: f64,
    latency_us: Percentiles,
    sequence: SeqCounts,
    /// Only with `--reattach`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reattach: Option<Reattach>,
    memory: Option<Memory>,
    /// Drops and retransmissions on this machine during the run: non-zero means the
    /// machine's network stack, not only the target, shaped the latency tail.
    network: memory::NetCounters,
}

fn environment(nofile_limit: u64) -> Environment {
    let git_revision = Command::new("git")
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
    let netdev_max_backlog = std::fs::read_to_string("/proc/sys/net/core/netdev_max_backlog")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Environment {
        netdev_max_backlog,
        git_revision,
        kernel,
        cpu_model,
        cores,
        nofile_limit,
    }
}

/// The workers as the coordinator sees them: latest status each, and the recent latencies.
struct Board {
    statuses: Vec<Status>,
    so_far: Histogram<u64>,
    outcomes: Vec<Option<Outcome>>,
    /// A worker's stdout ended before it handed in a result.
    gone: Vec<bool>,
}

impl Board {
    fn sum(&self, f: impl Fn(&Status) -> u64) -> u64 {
        self.statuses.iter().map(f).sum()
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

fn spawn_workers(
    argv: &[String],
    processes: u64,
    board: &Arc<Mutex<Board>>,
) -> std::io::Result<Vec<Worker>> {
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for index in 0..processes {
        let mut child = Command::new(&exe)
            .arg("worker")
            .arg(index.to_string())
            .arg(processes.to_string())
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let board = board.clone();
        std::thread::spawn(move || {
            let i = index as usize;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let report: Report = match serde_json::from_str(&line) {
                    Ok(report) => report,
                    Err(err) => {
                        eprintln!("loadgen: worker {index}: unreadable report: {err}");
                        continue;
                    }
                };
                let Ok(mut board) = board.lock() else { break };
                match report {
                    Report::Status(status) => {
                        if let Ok(recent) = stats::from_base64(&status.recent) {
                            let _ = board.so_far.add(&recent);
                        }
                        board.statuses[i] = status;
                    }
                    Report::Result(outcome) => {
                        board.statuses[i] = outcome.status.clone();
                        board.outcomes[i] = Some(*outcome);
                    }
                }
            }
            if let Ok(mut board) = board.lock() {
                board.gone[i] = true;
            }
        });
        workers.push(Worker { child, stdin });
    }
    Ok(workers)
}

fn tell(workers: &mut [Worker], line: &str) {
    for worker in workers {
        // A worker that died is noticed when its result is missing.
        let _ = writeln!(worker.stdin, "{line}").and_then(|()| worker.stdin.flush());
    }
}

/// The live progress line: rewritten in place on a terminal, a plain line otherwise.
struct Progress {
    terminal: bool,
    every: Duration,
    next: Instant,
    last_deliveries: u64,
    last_at: Instant,
}

impl Progress {
    fn new() -> Progress {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let now = Instant::now();
        let every = Duration::from_millis(if terminal { 500 } else { 2000 });
        Progress {
            terminal,
            every,
            next: now + every,
            last_deliveries: 0,
            last_at: now,
        }
    }

    fn tick(&mut self, phase: &str, board: &Board, plan: Option<&Plan>, elapsed: Duration) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next += self.every;
        let deliveries = board.sum(|s| s.deliveries);
        let seconds = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let rate = (deliveries - self.last_deliveries.min(deliveries)) as f64 / seconds;
        self.last_deliveries = deliveries;
        self.last_at = now;
        let publishes = plan.map_or(String::new(), |p| {
            format!(
                " | publishes {} failed {}",
                p.counters.sent.load(Ordering::Relaxed),
                p.counters.failed.load(Ordering::Relaxed)
            )
        });
        let p99 = if board.so_far.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.2} ms",
                board.so_far.value_at_quantile(0.99) as f64 / 1000.0
            )
        };
        let line = format!(
            "[{phase} {:>4}s] tunnels open {} failed {} lost {}{publishes} | deliveries {deliveries} ({rate:.0}/s) p99 {p99}",
            elapsed.as_secs(),
            board.sum(|s| s.open),
            board.sum(|s| s.failed),
            board.sum(|s| s.lost),
        );
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

fn publisher_thread(plan: Arc<Plan>, args: Args, start: Instant, done: mpsc::Sender<()>) {
    let schedule = Schedule::new(args.rate_per_s, start);
    if let Err(err) = publisher::run(&plan, schedule, &args.publish_to) {
        eprintln!("loadgen: publisher: {err}");
    }
    let _ = done.send(());
}

/// The number of worker processes: as given, or enough that none needs more descriptors
/// than the open-files limit allows.
pub fn processes_for(args: &Args, nofile_limit: u64) -> u64 {
    let per_process = nofile_limit.saturating_sub(FDS_RESERVED).max(1);
    args.processes
        .unwrap_or_else(|| args.tunnels().div_ceil(per_process).max(1))
}

/// Runs the whole scenario; returns the one-line summary.
/// What a run printed and whether anything was lost.
pub struct Finished {
    /// The one-line summary.
    pub line: String,
    /// What was lost or refused, if anything: `"3 tunnels lost, 12 gaps"`.
    pub losses: Option<String>,
}

pub fn run(args: Args, argv: &[String]) -> std::io::Result<Finished> {
    let command = std::iter::once("loadgen")
        .chain(argv.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::create_dir_all(&args.out)?;
    let nofile_limit = router::os::raise_open_files_limit();
    let processes = processes_for(&args, nofile_limit);
    let per_process = args.tunnels().div_ceil(processes);
    if per_process + FDS_RESERVED > nofile_limit {
        return Err(std::io::Error::other(format!(
            "{per_process} tunnels per process need more than the open-files limit {nofile_limit}; \
             use more --processes"
        )));
    }
    eprintln!(
        "loadgen: {} tunnels over {processes} worker process(es) of {} thread(s); \
         open-files limit {nofile_limit} per process",
        args.tunnels(),
        args.threads
    );
    let before = (!args.pids.is_empty()).then(|| memory::sample(&args.pids));
    let net_before = memory::NetCounters::read();

    let board = Arc::new(Mutex::new(Board {
        statuses: vec![Status::default(); processes as usize],
        so_far: new_histogram(),
        outcomes: (0..processes).map(|_| None).collect(),
        gone: vec![false; processes as usize],
    }));
    let ramp_start_us = monotonic_us();
    let mut workers = spawn_workers(argv, processes, &board)?;
    let lock = || {
        board
            .lock()
            .expect("no reader thread panics while holding the board")
    };

    // Ramp: until every tunnel is open or failed, bounded.
    let mut progress = Progress::new();
    let ramp_start = Instant::now();
    let ramp_limit =
        Duration::from_secs_f64(args.tunnels() as f64 / args.ramp_per_s) + Duration::from_secs(30);
    loop {
        {
            let board = lock();
            let settled = board.sum(|s| s.open) + board.sum(|s| s.failed);
            if settled >= args.tunnels() || board.gone.iter().all(|g| *g) {
                break;
            }
            progress.tick("ramp", &board, None, ramp_start.elapsed());
        }
        if ramp_start.elapsed() > ramp_limit {
            eprintln!("\nloadgen: ramp still unfinished after {ramp_limit:?}; going on");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ramp = ramp_start.elapsed();
    let (opened_in_ramp, last_open_us) = {
        let board = lock();
        let last = board.statuses.iter().map(|s| s.last_open_us).max();
        (board.sum(|s| s.open), last.unwrap_or(0))
    };
    // From starting the workers to the last tunnel open: the status reports' period
    // does not blur it.
    let connect_s = (last_open_us.saturating_sub(ramp_start_us) as f64 / 1e6).max(1e-3);
    let after = before.as_ref().map(|_| {
        std::thread::sleep(SETTLE);
        memory::sample(&args.pids)
    });

    // Run: publish for the duration, then drain.
    let start = Instant::now() + Duration::from_millis(100);
    let start_us = monotonic_us() + 100_000;
    let start_wall = SystemTime::now() + Duration::from_millis(100);
    tell(&mut workers, &format!("start {start_us}"));
    let plan = Arc::new(Plan {
        peer: args.peer,
        paths: args.paths,
        total: (args.duration_s as f64 * args.rate_per_s).ceil() as u64,
        start_us,
        connections_per_endpoint: args.publishers,
        counters: publisher::Counters::default(),
        published_per_path: (0..args.paths).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
    });
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (plan, args) = (plan.clone(), args.clone());
        std::thread::Builder::new()
            .name("loadgen-publisher".into())
            .spawn(move || publisher_thread(plan, args, start, done_tx))?;
    }
    let stop_at =
        start + Duration::from_secs(args.duration_s) + Duration::from_millis(args.drain_ms);
    while Instant::now() < stop_at {
        std::thread::sleep(Duration::from_millis(20));
        progress.tick("run", &lock(), Some(&plan), start.elapsed());
    }
    progress.finish();
    plan.stop.store(true, Ordering::Relaxed);
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    tell(&mut workers, "stop");

    // Results.
    let results_deadline = Instant::now() + RESULTS_WAIT;
    loop {
        {
            let board = lock();
            let waiting = board
                .outcomes
                .iter()
                .zip(&board.gone)
                .any(|(o, gone)| o.is_none() && !gone);
            if !waiting {
                break;
            }
        }
        if Instant::now() > results_deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for worker in &mut workers {
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
    let board = lock();
    let missing: Vec<usize> = (0..board.outcomes.len())
        .filter(|i| board.outcomes[*i].is_none())
        .collect();
    if !missing.is_empty() {
        return Err(std::io::Error::other(format!(
            "worker process(es) {missing:?} handed in no result"
        )));
    }
    let outcomes: Vec<&Outcome> = board.outcomes.iter().flatten().collect();

    let mut total = new_histogram();
    let mut intervals: Vec<Histogram<u64>> = Vec::new();
    let mut paths: BTreeMap<u64, PathTally> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_delivery_us = 0;
    for outcome in &outcomes {
        let decode = |s: &String| stats::from_base64(s).map_err(std::io::Error::other);
        total
            .add(&decode(&outcome.total)?)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        for (i, interval) in outcome.intervals.iter().enumerate() {
            while intervals.len() <= i {
                intervals.push(new_histogram());
            }
            intervals[i]
                .add(&decode(interval)?)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
        for (path, tally) in &outcome.paths {
            paths.entry(*path).or_default().add(tally);
        }
        for (reason, n) in &outcome.errors {
            *errors.entry(reason.clone()).or_default() += n;
        }
        last_delivery_us = last_delivery_us.max(outcome.last_delivery_us);
    }
    let mut sequence = SeqCounts::default();
    let mut deliveries_expected = 0;
    let (mut replayed, mut lost_behind_gap) = (0, 0);
    for (path, tally) in &paths {
        replayed += tally.replayed;
        lost_behind_gap += tally.behind_gap;
        let published = plan
            .published_per_path
            .get(*path as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed));
        deliveries_expected += tally.trackers * published;
        sequence.add(&tally.counts(published));
    }
    let deliveries: u64 = outcomes.iter().map(|o| o.status.deliveries).sum();
    let tunnels_open: u64 = outcomes.iter().map(|o| o.status.open).sum();
    let delivery_window_s =
        (last_delivery_us.saturating_sub(start_us) as f64 / 1e6).max(args.duration_s as f64);
    let memory = match (before, after) {
        (Some(before), Some(after)) => Some(Memory {
            method: "sum of Pss from /proc/<pid>/smaps_rollup over the pids and their descendants",
            pids: after.pids,
            rss_before_bytes: before.bytes,
            rss_after_bytes: after.bytes,
            per_tunnel_bytes: (after.bytes as f64 - before.bytes as f64)
                / opened_in_ramp.max(1) as f64,
        }),
        _ => None,
    };
    let counters = &plan.counters;
    let summary = Summary {
        scenario: "fanout",
        label: args.label.clone(),
        peer: args.peer.name(),
        command,
        environment: environment(nofile_limit),
        targets: args.targets.iter().map(ToString::to_string).collect(),
        publish_to: args.publish_to.iter().map(ToString::to_string).collect(),
        transport: args.mix.describe(),
        live: args.live,
        idle: args.idle,
        zombies: args.zombies(),
        paths: args.paths,
        rate_per_s: args.rate_per_s,
        duration_s: args.duration_s,
        processes,
        threads: args.threads,
        sources: args.sources.len() as u64,
        publishers: args.publishers,
        tunnels_attempted: args.tunnels(),
        tunnels_open,
        tunnels_failed: outcomes.iter().map(|o| o.status.failed).sum(),
        tunnels_lost: outcomes.iter().map(|o| o.status.lost).sum(),
        tunnel_errors: errors,
        ramp_ms: ramp.as_millis() as u64,
        connect_rate_per_s: opened_in_ramp as f64 / connect_s,
        publishes_sent: counters.sent.load(Ordering::Relaxed),
        publishes_accepted: counters.accepted.load(Ordering::Relaxed),
        publishes_failed: counters.failed.load(Ordering::Relaxed),
        publishes_skipped: counters.skipped.load(Ordering::Relaxed),
        deliveries,
        deliveries_expected,
        deliveries_per_s: deliveries as f64 / delivery_window_s,
        delivery_window_s,
        latency_us: percentiles(&total),
        sequence,
        reattach: args.reattach.then(|| Reattach {
            delay_ms: args.reattach_delay_ms,
            reattaches: outcomes.iter().map(|o| o.status.reattaches).sum(),
            replayed,
            lost_behind_gap,
        }),
        memory,
        network: memory::NetCounters::read().since(net_before),
    };
    let json = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
    std::fs::write(args.out.join("summary.json"), json + "\n")?;
    let mut hlog = std::io::BufWriter::new(std::fs::File::create(args.out.join("latency.hlog"))?);
    stats::write_interval_log(&mut hlog, &intervals, start_wall, &summary.command)?;
    hlog.flush()?;
    let p = summary.latency_us;
    let memory = summary.memory.as_ref().map_or(String::new(), |m| {
        format!(", memory {:.0} B/tunnel", m.per_tunnel_bytes)
    });
    let reattach = summary.reattach.as_ref().map_or(String::new(), |r| {
        format!(
            ", reattaches={} replayed={} lost_behind_gap={}",
            r.reattaches, r.replayed, r.lost_behind_gap
        )
    });
    let line = format!(
        "loadgen {} {} live={} idle={} paths={} rate={}/s: tunnels {}/{} open ({} failed, {} lost), \
         {:.0} connects/s, publishes {} ({} failed), deliveries {}/{} ({:.0}/s), \
         latency us p50={} p90={} p99={} p99.9={} max={}, gaps={} duplicates={} out_of_order={}{reattach}{memory}",
        summary.label, summary.transport, args.live, args.idle, args.paths, args.rate_per_s,
        summary.tunnels_open, summary.tunnels_attempted, summary.tunnels_failed, summary.tunnels_lost,
        summary.connect_rate_per_s, summary.publishes_sent, summary.publishes_failed,
        summary.deliveries, deliveries_expected, summary.deliveries_per_s,
        p.p50_us, p.p90_us, p.p99_us, p.p99_9_us, p.max_us,
        sequence.gaps, sequence.duplicates, sequence.out_of_order,
    );
    // Every publish of the schedule goes to every publish endpoint; a publisher that could not
    // connect sends nothing, which must not pass for a clean run.
    let planned = plan.total * args.publish_to.len() as u64;
    let unsent = planned.saturating_sub(summary.publishes_sent + summary.publishes_skipped);
    let lost = [
        (summary.tunnels_failed, "tunnels failed"),
        (unsent, "publishes not sent"),
        (summary.tunnels_lost, "tunnels lost"),
        (summary.publishes_failed, "publishes failed"),
        (summary.publishes_skipped, "publishes skipped"),
        (
            deliveries_expected.saturating_sub(summary.deliveries + lost_behind_gap),
            "deliveries missing",
        ),
        (sequence.gaps, "gaps"),
        // Announced by the router (a gap marker), but lost all the same.
        (lost_behind_gap, "lost behind gap markers"),
        (sequence.duplicates, "duplicates"),
        (sequence.out_of_order, "out of order"),
    ];
    let losses: Vec<String> = lost
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    Ok(Finished {
        line,
        losses: (!losses.is_empty()).then(|| losses.join(", ")),
    })
}
