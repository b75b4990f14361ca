//! The `loadgen` command line (clap, derive): the run's flags and the tools (`plot`,
//! `baseline`, `grip-origin`, the internal `worker`), their validation into one [`Args`], and
//! the derived layout of a run (which tunnel goes to which process, target, source address and
//! transport).
//!
//! Each flag's own rule (a range, a list, a weighted mix) is its `value_parser`; the rules
//! that join flags (the peer speaks the transport, `--publishers` at most `--paths`) are
//! checked once in [`RunFlags::validate`]. Every refusal is a clap usage error: a message
//! naming the flag, the usage line, and exit status 2.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::baseline::BaselineArgs;
use crate::grip::GripOriginArgs;
use crate::plot::PlotArgs;

const ABOUT: &str = "Open-loop load generator for the router and its peers: tunnels, \
                     publishes, latency, loss and memory.";

const LONG_ABOUT: &str = "\
Open-loop load generator for the router and its peers.

Opens N idle and M live tunnels (live tunnel i subscribes to path i % K), then publishes
R datagrams per second open-loop (path k % K) for D seconds to every publish endpoint,
and measures delivery latency from each publish's intended time. Writes DIR/summary.json
and DIR/latency.hlog (HdrHistogram interval log) and prints a one-line summary.";

const EXIT_STATUS: &str = "\
Exit status: 0 when every tunnel opened and every publish was accepted and delivered once and
in order; 3 when the run finished but lost or refused something (the results are written);
1 when the run could not finish; 2 for bad arguments.";

/// The whole command line: a run (the flags below), or one of the tools.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_STATUS,
    override_usage = "loadgen --target IP:PORT[,IP:PORT...] --transport T --live M --idle N \
                      --paths K --rate R --duration-s D --out DIR [OPTIONS]\n       \
                      loadgen plot --out FILE.svg [--title TEXT] LABEL=PATH [LABEL=PATH...]\n       \
                      loadgen baseline --listen IP:PORT [--threads N]\n       \
                      loadgen grip-origin --listen IP:PORT",
    arg_required_else_help = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    tool: Option<Tool>,
    #[command(flatten)]
    run: RunFlags,
}

#[derive(Subcommand, Debug)]
enum Tool {
    /// Draws the latency-by-percentile chart of one or more runs as an SVG file.
    Plot(PlotArgs),
    /// The raw baseline server: a minimal loopback pub/sub server, the floor of this machine.
    Baseline(BaselineArgs),
    /// A GRIP origin for Pushpin.
    GripOrigin(GripOriginArgs),
    /// One worker process of a run (started by the coordinator only).
    #[command(hide = true)]
    Worker(Box<WorkerArgs>),
}

/// `loadgen worker INDEX PROCESSES FLAGS...`: the coordinator's own flags, passed on.
#[derive(clap::Args, Debug)]
struct WorkerArgs {
    /// This worker's index, 0-based.
    #[arg(id = "worker_index", value_name = "INDEX")]
    index: u64,
    /// Worker processes in the run.
    #[arg(id = "worker_processes", value_name = "PROCESSES",
          value_parser = RangedU64ValueParser::<u64>::new().range(1..=PROCESSES_MAX))]
    processes: u64,
    #[command(flatten)]
    run: RunFlags,
}

/// What the command line asks for, validated.
#[derive(Debug)]
pub enum Command {
    /// A load run (the coordinator).
    Run(Args),
    Plot(PlotArgs),
    Baseline(BaselineArgs),
    GripOrigin(GripOriginArgs),
    /// Worker `index` of `processes` of a run.
    Worker {
        index: u64,
        processes: u64,
        args: Args,
    },
}

/// Parses and validates a whole command line (`argv` with the program name first).
///
/// # Errors
/// A clap error for anything refused, help and version included: `Error::exit` prints it
/// and exits with 2 (0 for help and version).
pub fn parse<I, T>(argv: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(argv)?;
    let refused = |message: String| Cli::command().error(ErrorKind::ArgumentConflict, message);
    Ok(match cli.tool {
        None => Command::Run(cli.run.validate().map_err(refused)?),
        Some(Tool::Plot(args)) => Command::Plot(args),
        Some(Tool::Baseline(args)) => Command::Baseline(args),
        Some(Tool::GripOrigin(args)) => Command::GripOrigin(args),
        Some(Tool::Worker(worker)) => Command::Worker {
            index: worker.index,
            processes: worker.processes,
            args: worker.run.validate().map_err(refused)?,
        },
    })
}

/// Most tunnels in a run.
const TUNNELS_MAX: u64 = 10_000_000;
/// Most worker processes.
const PROCESSES_MAX: u64 = 256;

/// The flags of a run, as typed. The required ones are `Option`s only so that a tool's
/// command line (`loadgen plot ...`) can leave them out: clap still requires them for a run.
///
/// `::std::vec::Vec` (the full path) marks a field that one flag fills with a whole list,
/// where clap would read a bare `Vec` as a flag given many times.
#[derive(clap::Args, Debug)]
struct RunFlags {
    /// Tunnel endpoints; tunnels are spread over them round-robin.
    #[arg(long = "target", value_name = "IP:PORT[,IP:PORT...]", required = true,
          value_parser = addresses)]
    targets: Option<::std::vec::Vec<SocketAddr>>,
    /// Publish endpoints (default: the targets); every publish goes to each.
    #[arg(long, value_name = "IP:PORT[,IP:PORT...]", value_parser = addresses)]
    publish_to: Option<::std::vec::Vec<SocketAddr>>,
    /// Whose URLs and message shapes to speak.
    #[arg(long, value_enum, default_value_t = Peer::Router)]
    peer: Peer,
    /// ws, sse, longpoll, nul or ndjson, or a mix by weight: ws:3,sse:1 (longpoll, nul and
    /// ndjson: router only; pushpin: sse only).
    #[arg(long, value_name = "T", required = true, value_parser = Mix::parse)]
    transport: Option<Mix>,
    /// Live tunnels: live tunnel i subscribes to path i % K.
    #[arg(long, value_name = "M", required = true)]
    live: Option<u64>,
    /// Idle tunnels.
    #[arg(long, value_name = "N", required = true)]
    idle: Option<u64>,
    /// Share of the idle tunnels that never read after the handshake; they exercise the
    /// target's slow-consumer policy.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = fraction)]
    zombie_fraction: f64,
    /// Paths the live tunnels subscribe to and the publishes go to.
    #[arg(long, value_name = "K", required = true,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..=1_000_000))]
    paths: Option<u64>,
    /// Publishes per second, open-loop, in (0, 10000000].
    #[arg(long = "rate", value_name = "R", required = true, value_parser = rate)]
    rate_per_s: Option<f64>,
    /// Seconds of publishing, 1..=3600.
    #[arg(long, value_name = "D", required = true,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..=3600))]
    duration_s: Option<u64>,
    /// Results folder: summary.json and latency.hlog.
    #[arg(long, value_name = "DIR", required = true)]
    out: Option<PathBuf>,
    /// Source addresses (e.g. 127.0.1.1-127.0.1.8) bound with IP_BIND_ADDRESS_NO_PORT,
    /// round-robin per target (default: the kernel's choice).
    #[arg(long, value_name = "A-B", value_parser = source_range)]
    sources: Option<::std::vec::Vec<Ipv4Addr>>,
    /// Worker processes (default: enough for the open-files limit).
    #[arg(long, value_name = "P",
          value_parser = RangedU64ValueParser::<u64>::new().range(1..=PROCESSES_MAX))]
    processes: Option<u64>,
    /// Receiver threads per worker process.
    #[arg(long, value_name = "T", default_value_t = 1,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..=64))]
    threads: u64,
    /// Publisher connections per publish endpoint, 1..=K (default: min(K, 4)).
    #[arg(long, value_name = "C", value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    publishers: Option<u64>,
    /// Tunnel connections opened per second, in total.
    #[arg(long, value_name = "S", default_value_t = 5000.0, value_parser = positive)]
    ramp_per_s: f64,
    /// Wait after the last publish before stopping, in ms.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = RangedU64ValueParser::<u64>::new().range(..=600_000))]
    drain_ms: u64,
    /// Process ids (with their descendants) whose memory is sampled before and after the
    /// tunnels open.
    #[arg(long = "pid", value_name = "LIST", value_parser = pid_list)]
    pids: Option<::std::vec::Vec<u32>>,
    /// A name for this run in the summary and plots (default: the peer).
    #[arg(long, value_name = "NAME", value_parser = label, allow_hyphen_values = true)]
    label: Option<String>,
    /// (router only) A live tunnel whose connection is lost (cut off as a slow consumer,
    /// reset, ended) re-attaches with its id and last=<last id seen>; its replayed datagrams
    /// and those lost behind a gap marker are counted.
    #[arg(long)]
    reattach: bool,
    /// Wait before each re-attach, in ms (default 0: at once).
    #[arg(long, value_name = "MS", requires = "reattach",
          value_parser = RangedU64ValueParser::<u64>::new().range(..=60_000))]
    reattach_delay_ms: Option<u64>,
}

impl RunFlags {
    /// Checks the rules that join flags and fills the derived defaults.
    ///
    /// # Errors
    /// The message for the first rule broken.
    fn validate(self) -> Result<Args, String> {
        // clap requires these for a run; `missing` only guards against a broken attribute.
        let missing = |name: &str| format!("missing {name}");
        let targets = self.targets.ok_or_else(|| missing("--target"))?;
        let mix = self.transport.ok_or_else(|| missing("--transport"))?;
        let live = self.live.ok_or_else(|| missing("--live"))?;
        let idle = self.idle.ok_or_else(|| missing("--idle"))?;
        let paths = self.paths.ok_or_else(|| missing("--paths"))?;
        let rate_per_s = self.rate_per_s.ok_or_else(|| missing("--rate"))?;
        let duration_s = self.duration_s.ok_or_else(|| missing("--duration-s"))?;
        let out = self.out.ok_or_else(|| missing("--out"))?;
        let peer = self.peer;

        if let Some((t, _)) = mix.weights.iter().find(|(t, _)| !peer.supports(*t)) {
            return Err(format!(
                "--transport: {} does not speak {}",
                peer.name(),
                t.name()
            ));
        }
        let tunnels = live.saturating_add(idle);
        if tunnels == 0 || tunnels > TUNNELS_MAX {
            return Err(format!("--live plus --idle must be 1..={TUNNELS_MAX}"));
        }
        let publishers = self.publishers.unwrap_or(paths.min(4));
        if publishers > paths {
            return Err("--publishers must be 1..=paths".into());
        }
        if self.reattach && peer != Peer::Router {
            return Err(format!(
                "--reattach: {} has no re-attach with last",
                peer.name()
            ));
        }
        Ok(Args {
            publish_to: self.publish_to.unwrap_or_else(|| targets.clone()),
            targets,
            peer,
            mix,
            live,
            idle,
            zombie_fraction: self.zombie_fraction,
            paths,
            rate_per_s,
            duration_s,
            out,
            sources: self.sources.unwrap_or_default(),
            processes: self.processes,
            threads: self.threads,
            publishers,
            ramp_per_s: self.ramp_per_s,
            drain_ms: self.drain_ms,
            pids: self.pids.unwrap_or_default(),
            label: self.label.unwrap_or_else(|| peer.name().to_owned()),
            reattach: self.reattach,
            reattach_delay_ms: self.reattach_delay_ms.unwrap_or(0),
        })
    }
}

/// Whose conventions the run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// Our router: `/tunnel?format=..&path=/load/k`, `POST /publish/load/k`.
    Router,
    /// Nchan: `/sub/loadk` (WebSocket or EventSource), `POST /pub/loadk`.
    Nchan,
    /// Pushpin with a GRIP origin: SSE on `/sub/loadk`, `POST /publish/` items.
    Pushpin,
    /// The raw baseline server (`loadgen baseline`): Nchan's URLs.
    Baseline,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Router => "router",
            Peer::Nchan => "nchan",
            Peer::Pushpin => "pushpin",
            Peer::Baseline => "baseline",
        }
    }

    fn supports(self, transport: Transport) -> bool {
        match self {
            Peer::Router => true,
            Peer::Nchan | Peer::Baseline => matches!(transport, Transport::Ws | Transport::Sse),
            Peer::Pushpin => transport == Transport::Sse,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Ws,
    Sse,
    Longpoll,
    Nul,
    Ndjson,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Longpoll => "longpoll",
            Transport::Nul => "nul",
            Transport::Ndjson => "ndjson",
        }
    }

    fn parse(s: &str) -> Option<Transport> {
        [
            Transport::Ws,
            Transport::Sse,
            Transport::Longpoll,
            Transport::Nul,
            Transport::Ndjson,
        ]
        .into_iter()
        .find(|t| t.name() == s)
    }
}

/// Transports mixed by integer weight: tunnel `n` of a target uses `cycle[n % len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    pub weights: Vec<(Transport, u32)>,
    cycle: Vec<Transport>,
}

/// The largest weight of one transport in a mix (bounds the cycle's length).
const MIX_WEIGHT_MAX: u32 = 1000;

impl Mix {
    /// Parses `ws` or `ws:3,sse:1`.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Transport, u32)> = Vec::new();
        for part in s.split(',') {
            let (name, weight) = match part.split_once(':') {
                Some((name, weight)) => {
                    let weight: u32 = weight
                        .parse()
                        .ok()
                        .filter(|w| (1..=MIX_WEIGHT_MAX).contains(w))
                        .ok_or_else(|| {
                            format!("weight {weight:?} of {name:?} must be 1..={MIX_WEIGHT_MAX}")
                        })?;
                    (name, weight)
                }
                None => (part, 1),
            };
            let transport = Transport::parse(name).ok_or_else(|| {
                format!("expected ws, sse, longpoll, nul or ndjson, got {name:?}")
            })?;
            if weights.iter().any(|(t, _)| *t == transport) {
                return Err(format!("{name} is listed twice"));
            }
            weights.push((transport, weight));
        }
        // Interleave so that any window of the cycle holds the mix's proportions roughly.
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        let mut cycle = Vec::with_capacity(total as usize);
        let mut given = vec![0u32; weights.len()];
        for n in 1..=total {
            // Pick the transport furthest behind its share after n picks.
            let (i, _) = weights
                .iter()
                .enumerate()
                .map(|(i, (_, w))| {
                    (
                        i,
                        f64::from(*w) * f64::from(n) / f64::from(total) - f64::from(given[i]),
                    )
                })
                .fold(
                    (0, f64::MIN),
                    |best, cur| if cur.1 > best.1 { cur } else { best },
                );
            given[i] += 1;
            cycle.push(weights[i].0);
        }
        Ok(Mix { weights, cycle })
    }

    pub fn pick(&self, n: u64) -> Transport {
        self.cycle[(n % self.cycle.len() as u64) as usize]
    }

    /// `ws:3,sse:1`, or `ws` for a single transport.
    pub fn describe(&self) -> String {
        if let [(t, _)] = self.weights[..] {
            return t.name().to_owned();
        }
        self.weights
            .iter()
            .map(|(t, w)| format!("{}:{w}", t.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One run, validated: every flag's value with the defaults filled in.
#[derive(Debug, Clone)]
pub struct Args {
    pub targets: Vec<SocketAddr>,
    pub publish_to: Vec<SocketAddr>,
    pub peer: Peer,
    pub mix: Mix,
    pub live: u64,
    pub idle: u64,
    pub zombie_fraction: f64,
    pub paths: u64,
    pub rate_per_s: f64,
    pub duration_s: u64,
    pub out: PathBuf,
    pub sources: Vec<Ipv4Addr>,
    /// `None`: derived from the open-files limit when the run starts.
    pub processes: Option<u64>,
    pub threads: u64,
    pub publishers: u64,
    pub ramp_per_s: f64,
    pub drain_ms: u64,
    pub pids: Vec<u32>,
    pub label: String,
    /// Live tunnels re-attach with `id` and `last` when their connection is lost.
    pub reattach: bool,
    pub reattach_delay_ms: u64,
}

/// Addresses in one `--target` or `--publish-to` list at most.
const ADDRESSES_MAX: usize = 1024;
/// Sources at most: 127.0.0.0/8 has 16M addresses, but more than this is a typo.
const SOURCES_MAX: u32 = 65_536;
/// Longest `--label`, in characters.
const LABEL_CHARS_MAX: usize = 64;

/// `IP:PORT[,IP:PORT...]`, at most [`ADDRESSES_MAX`].
fn addresses(value: &str) -> Result<Vec<SocketAddr>, String> {
    let list = value
        .split(',')
        .map(|a| {
            a.parse()
                .map_err(|_| format!("expected IP:PORT, got {a:?}"))
        })
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    if list.len() > ADDRESSES_MAX {
        return Err(format!("at most {ADDRESSES_MAX} addresses"));
    }
    Ok(list)
}

/// `A-B` (or a single `A`): the IPv4 addresses from A up to B, at most [`SOURCES_MAX`].
fn source_range(value: &str) -> Result<Vec<Ipv4Addr>, String> {
    let (first, last) = value.split_once('-').unwrap_or((value, value));
    let parse = |a: &str| {
        a.parse::<Ipv4Addr>()
            .map_err(|_| format!("expected IPv4-IPv4, got {value:?}"))
    };
    let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
    if last < first || last - first >= SOURCES_MAX {
        return Err(format!(
            "{value:?} must run upwards and hold at most {SOURCES_MAX} addresses"
        ));
    }
    Ok((first..=last).map(Ipv4Addr::from).collect())
}

/// A comma-separated list of process ids.
fn pid_list(value: &str) -> Result<Vec<u32>, String> {
    value
        .split(',')
        .map(|p| p.parse().map_err(|_| format!("invalid process id {p:?}")))
        .collect()
}

fn number(value: &str) -> Result<f64, String> {
    value
        .parse()
        .map_err(|_| format!("invalid number {value:?}"))
}

/// A share in 0..=1.
fn fraction(value: &str) -> Result<f64, String> {
    let f = number(value)?;
    if !(0.0..=1.0).contains(&f) {
        return Err("must be 0..=1".into());
    }
    Ok(f)
}

/// A publish rate in (0, 10000000] per second.
fn rate(value: &str) -> Result<f64, String> {
    let r = number(value)?;
    if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
        return Err("must be in (0, 10000000]".into());
    }
    Ok(r)
}

/// A finite positive number.
fn positive(value: &str) -> Result<f64, String> {
    let x = number(value)?;
    if !(x.is_finite() && x > 0.0) {
        return Err("must be positive".into());
    }
    Ok(x)
}

/// 1 to [`LABEL_CHARS_MAX`] characters.
fn label(value: &str) -> Result<String, String> {
    if value.is_empty() || value.chars().count() > LABEL_CHARS_MAX {
        return Err(format!("must be 1..={LABEL_CHARS_MAX} characters"));
    }
    Ok(value.to_owned())
}

/// Everything a tunnel needs to know about its place in the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub target: SocketAddr,
    pub source: Option<Ipv4Addr>,
    pub transport: Transport,
    /// The path index for a live tunnel.
    pub path: Option<u64>,
    /// An idle tunnel that stops reading after its handshake.
    pub zombie: bool,
}

impl Args {
    pub fn tunnels(&self) -> u64 {
        self.live + self.idle
    }

    /// Idle tunnels that never read: the first ones of the idle range, so the count is exact.
    pub fn zombies(&self) -> u64 {
        (self.idle as f64 * self.zombie_fraction).round() as u64
    }

    /// Where tunnel `j` (0-based; below `live` means live) goes. Consecutive tunnels go to
    /// consecutive targets; within a target, consecutive tunnels cycle the source
    /// addresses and the transport mix.
    pub fn placement(&self, j: u64) -> Placement {
        let targets = self.targets.len() as u64;
        let on_target = j / targets;
        let source = (!self.sources.is_empty())
            .then(|| self.sources[(on_target % self.sources.len() as u64) as usize]);
        Placement {
            target: self.targets[(j % targets) as usize],
            source,
            transport: self.mix.pick(on_target),
            path: (j < self.live).then_some(j % self.paths),
            zombie: j >= self.live && j < self.live + self.zombies(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        std::iter::once("loadgen")
            .chain(s.split_whitespace())
            .map(str::to_owned)
            .collect()
    }

    const GOOD: &str = "--target 127.0.0.1:8080 --transport ws --live 2 --idle 3 --paths 2 --rate 100 --duration-s 1 --out /tmp/x";

    fn run(s: &str) -> Result<Args, clap::Error> {
        match parse(argv(s))? {
            Command::Run(args) => Ok(args),
            other => panic!("{s}: not a run: {other:?}"),
        }
    }

    fn good(extra: &str) -> Args {
        run(&format!("{GOOD} {extra}")).unwrap_or_else(|e| panic!("{extra}: {e}"))
    }

    /// The refusal of `s`: a usage error (exit status 2) whose message names the problem.
    fn bad(s: &str) -> String {
        let Err(err) = parse(argv(s)) else {
            panic!("{s} should be refused");
        };
        assert_eq!(err.exit_code(), 2, "{s}: {err}");
        assert!(err.use_stderr(), "{s}: a refusal goes to stderr");
        err.to_string()
    }

    #[test]
    fn parses_a_full_command_line() {
        let args = good("");
        assert_eq!(args.mix.describe(), "ws");
        assert_eq!(
            (args.live, args.idle, args.paths, args.duration_s),
            (2, 3, 2, 1)
        );
        assert_eq!(args.rate_per_s, 100.0);
        assert_eq!(args.publishers, 2);
        assert_eq!(args.peer, Peer::Router);
        assert_eq!(args.publish_to, args.targets);
        assert_eq!(args.label, "router");
        assert_eq!(
            (args.threads, args.drain_ms, args.ramp_per_s),
            (1, 1000, 5000.0)
        );
        assert_eq!((args.zombie_fraction, args.processes), (0.0, None));
        assert!(args.sources.is_empty() && args.pids.is_empty());
        let args = good("--sources 127.0.1.1-127.0.1.4 --pid 10,11 --processes 3 --peer nchan");
        assert_eq!(args.sources.len(), 4);
        assert_eq!(args.sources[3], Ipv4Addr::new(127, 0, 1, 4));
        assert_eq!(args.pids, vec![10, 11]);
        assert_eq!(args.processes, Some(3));
        assert_eq!(args.label, "nchan");
        assert!(!args.reattach);
        let args = good("--reattach --reattach-delay-ms 250");
        assert!(args.reattach);
        assert_eq!(args.reattach_delay_ms, 250);
        assert_eq!(good("--reattach").reattach_delay_ms, 0);
        assert_eq!(
            good("--sources 127.0.1.9").sources,
            [Ipv4Addr::new(127, 0, 1, 9)]
        );
    }

    /// Every flag the scripts and the end-to-end tests pass, spelled as they spell it.
    #[test]
    fn parses_the_command_lines_of_the_scripts() {
        // scripts/gate.py and scripts/compare.py.
        let Ok(args) = run(&format!(
            "{} --publish-to 127.0.0.1:9090,127.0.0.1:9091 --peer baseline --drain-ms 10000 \
             --ramp-per-s 20000 --label baseline --pid 1,2,3",
            GOOD.replace("--transport ws", "--transport sse")
        )) else {
            panic!("gate.py's line parses");
        };
        assert_eq!(args.publish_to.len(), 2);
        assert_eq!(
            (args.peer, args.drain_ms, args.ramp_per_s),
            (Peer::Baseline, 10_000, 20_000.0)
        );
        assert_eq!(args.pids, [1, 2, 3]);
        // scripts/capacity.py: a weighted mix, a zombie share, sources, several targets and
        // a float rate.
        let line = GOOD
            .replace("127.0.0.1:8080", "127.0.0.1:1,127.0.0.1:2")
            .replace("--transport ws", "--transport ws:1,sse:1")
            .replace("--rate 100", "--rate 1000.0");
        let Ok(args) = run(&format!(
            "{line} --zombie-fraction 0.1 --ramp-per-s 10000.0 --sources 127.0.1.1-127.0.1.8 \
             --label router-x2 --threads 2 --publishers 1"
        )) else {
            panic!("capacity.py's line parses");
        };
        assert_eq!(args.mix.describe(), "ws:1,sse:1");
        assert_eq!((args.targets.len(), args.sources.len()), (2, 8));
        assert_eq!(
            (args.threads, args.publishers, args.zombie_fraction),
            (2, 1, 0.1)
        );
        // `--flag=value` works too.
        assert_eq!(good("--label=a=b").label, "a=b");
    }

    #[test]
    fn refuses_bad_arguments_with_a_message() {
        assert!(bad(&GOOD.replace("ws", "tcp")).contains("--transport"));
        assert!(bad(&GOOD.replace("ws", "tcp")).contains("expected ws, sse"));
        assert!(bad(&GOOD.replace("--rate 100", "--rate x")).contains("--rate"));
        assert!(bad(&GOOD.replace("--rate 100", "--rate 0")).contains("(0, 10000000]"));
        assert!(bad(&GOOD.replace("--paths 2", "--paths 0")).contains("--paths"));
        assert!(bad(&GOOD.replace("--duration-s 1", "--duration-s 3601")).contains("--duration-s"));
        assert!(bad(&GOOD
            .replace("--live 2", "--live 0")
            .replace("--idle 3", "--idle 0"))
        .contains("--live plus --idle"));
        assert!(bad(&format!("{GOOD} --bogus 1")).contains("--bogus"));
        assert!(bad(&format!("{GOOD} --live 3")).contains("cannot be used multiple times"));
        assert!(bad(&format!("{GOOD} --sources 127.0.0.9-127.0.0.1")).contains("--sources"));
        assert!(bad(&format!("{GOOD} --zombie-fraction 1.5")).contains("--zombie-fraction"));
        assert!(bad(&format!("{GOOD} --peer pushpin")).contains("pushpin does not speak ws"));
        assert!(bad(&format!("{GOOD} --peer varnish")).contains("--peer"));
        assert!(bad(&GOOD.replace("ws", "ws:2,sse:0")).contains("weight"));
        assert!(bad(&GOOD.replace("ws", "ws,ws")).contains("twice"));
        assert!(bad(&format!("{GOOD} --publishers 3")).contains("--publishers must be 1..=paths"));
        assert!(bad(&format!("{GOOD} --processes 0")).contains("--processes"));
        assert!(bad(&format!("{GOOD} --threads 65")).contains("--threads"));
        assert!(bad(&format!("{GOOD} --drain-ms 600001")).contains("--drain-ms"));
        assert!(bad(&format!("{GOOD} --pid 1,x")).contains("--pid"));
        assert!(bad(&format!("{GOOD} --label {}", "x".repeat(65))).contains("--label"));
        assert!(bad(&GOOD.replace("127.0.0.1:8080", "127.0.0.1")).contains("expected IP:PORT"));
        assert!(
            bad(&format!("{GOOD} --reattach --reattach")).contains("cannot be used multiple times")
        );
        // --reattach-delay-ms needs --reattach.
        let message = bad(&format!("{GOOD} --reattach-delay-ms 5"));
        assert!(
            message.contains("required arguments were not provided")
                && message.contains("--reattach")
        );
        assert!(bad(&format!("{GOOD} --reattach --reattach-delay-ms 60001"))
            .contains("--reattach-delay-ms"));
        assert!(bad(&format!("{GOOD} --reattach --peer nchan")).contains("no re-attach"));
        assert!(bad("--target").contains("a value is required for '--target"));
        let message = bad("--transport ws");
        assert!(
            message.contains("required arguments were not provided")
                && message.contains("--target")
        );
        // A run's flags and a tool do not mix.
        assert!(bad(&format!("{GOOD} plot --out x.svg a=b")).contains("plot"));
    }

    #[test]
    fn help_and_an_empty_command_line_print_the_usage() {
        let Err(err) = parse(argv("--help")) else {
            panic!("--help is not a run");
        };
        assert_eq!(err.kind(), ErrorKind::DisplayHelp);
        assert_eq!(err.exit_code(), 0);
        let help = err.to_string();
        for item in [
            "--target",
            "--transport",
            "--reattach-delay-ms",
            "Exit status",
            "plot",
            "baseline",
            "grip-origin",
        ] {
            assert!(help.contains(item), "help names {item}");
        }
        assert!(
            !help
                .lines()
                .any(|line| line.trim_start().starts_with("worker")),
            "the internal worker command stays out of the help"
        );
        // Nothing at all: the help, as a usage error.
        let Err(err) = parse(argv("")) else {
            panic!("an empty command line is refused");
        };
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--target"));
    }

    #[test]
    fn the_tools_and_the_worker_parse_their_own_command_lines() {
        let Ok(Command::Worker {
            index,
            processes,
            args,
        }) = parse(argv(&format!("worker 1 4 {GOOD} --peer nchan")))
        else {
            panic!("a worker's command line");
        };
        assert_eq!(
            (index, processes, args.peer, args.live),
            (1, 4, Peer::Nchan, 2)
        );
        // A worker validates the run's flags as the coordinator does.
        assert!(
            bad(&format!("worker 0 1 {GOOD} --peer pushpin")).contains("pushpin does not speak ws")
        );
        assert!(bad("worker 0 1 --transport ws").contains("--target"));
        assert!(bad(&format!("worker x 1 {GOOD}")).contains("INDEX"));
        let Ok(Command::Baseline(baseline)) =
            parse(argv("baseline --listen 127.0.0.1:0 --threads 2"))
        else {
            panic!("baseline");
        };
        assert_eq!((baseline.listen.port(), baseline.threads), (0, 2));
        let Ok(Command::Baseline(baseline)) = parse(argv("baseline --listen 127.0.0.1:7")) else {
            panic!("baseline");
        };
        assert_eq!(baseline.threads, 1);
        assert!(bad("baseline --listen 127.0.0.1:0 --threads 0").contains("--threads"));
        assert!(bad("baseline --listen nowhere").contains("--listen"));
        assert!(bad("baseline").contains("--listen"));
        assert!(bad("baseline --listen 127.0.0.1:0 --bogus").contains("--bogus"));
        let Ok(Command::GripOrigin(grip)) = parse(argv("grip-origin --listen 127.0.0.1:9")) else {
            panic!("grip-origin");
        };
        assert_eq!(grip.listen.port(), 9);
        assert!(bad("grip-origin --listen 127.0.0.1:9 --threads 2").contains("--threads"));
    }

    #[test]
    fn a_mix_keeps_its_proportions_in_every_cycle() {
        let mix = Mix::parse("ws:3,sse:1").expect("valid");
        let picks: Vec<Transport> = (0..8).map(|n| mix.pick(n)).collect();
        let ws = picks.iter().filter(|t| **t == Transport::Ws).count();
        assert_eq!(ws, 6);
        // Interleaved, not ws,ws,ws,sse in blocks of the weight only by accident: the first
        // four picks already hold the proportion.
        assert_eq!(
            picks[..4].iter().filter(|t| **t == Transport::Sse).count(),
            1
        );
        assert_eq!(mix.describe(), "ws:3,sse:1");
    }

    #[test]
    fn placement_spreads_targets_sources_and_marks_zombies() {
        let Ok(args) = run(&format!(
            "{} --sources 127.0.1.1-127.0.1.3 --zombie-fraction 0.34",
            GOOD.replace("127.0.0.1:8080", "127.0.0.1:1,127.0.0.1:2")
        )) else {
            panic!("valid arguments");
        };
        // 2 live, 3 idle; 0.34 * 3 rounds to 1 zombie: tunnel 2.
        let p: Vec<Placement> = (0..5).map(|j| args.placement(j)).collect();
        assert_eq!(p[0].target.port(), 1);
        assert_eq!(p[1].target.port(), 2);
        assert_eq!(p[2].target.port(), 1);
        // Tunnels 0, 2, 4 are on target 1, and take sources 1, 2, 3 in turn.
        assert_eq!(p[0].source, Some(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(p[2].source, Some(Ipv4Addr::new(127, 0, 1, 2)));
        assert_eq!(p[4].source, Some(Ipv4Addr::new(127, 0, 1, 3)));
        assert_eq!((p[0].path, p[1].path, p[2].path), (Some(0), Some(1), None));
        assert_eq!(
            p.iter().map(|p| p.zombie).collect::<Vec<_>>(),
            [false, false, true, false, false]
        );
    }
}
