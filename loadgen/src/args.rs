//! The `loadgen` command line: parsing, validation, and the derived layout of a run
//! (which tunnel goes to which process, target, source address and transport).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: loadgen --target IP:PORT[,IP:PORT...] --transport T --live M --idle N --paths K
               --rate R --duration-s D --out DIR [options]
       loadgen plot --out FILE.svg [--title TEXT] LABEL=DIR [LABEL=DIR...]
       loadgen baseline --listen IP:PORT [--threads N]
       loadgen grip-origin --listen IP:PORT

Opens N idle and M live tunnels (live tunnel i subscribes to path i % K), then publishes
R datagrams per second open-loop (path k % K) for D seconds to every publish endpoint,
and measures delivery latency from each publish's intended time. Writes DIR/summary.json
and DIR/latency.hlog (HdrHistogram interval log) and prints a one-line summary.

  --target LIST         tunnel endpoints; tunnels are spread over them round-robin
  --publish-to LIST     publish endpoints (default: the targets); every publish goes to each
  --peer P              router (default), nchan, pushpin or baseline: whose URLs and
                        message shapes to speak
  --transport T         ws, sse, longpoll, nul or ndjson, or a mix by weight: ws:3,sse:1
                        (longpoll, nul and ndjson: router only; pushpin: sse only)
  --zombie-fraction F   share of the idle tunnels that never read after the handshake
                        (default 0); they exercise the target's slow-consumer policy
  --sources A-B         source addresses (e.g. 127.0.1.1-127.0.1.8) bound with
                        IP_BIND_ADDRESS_NO_PORT, round-robin per target (default: kernel's choice)
  --processes P         worker processes (default: enough for the open-files limit)
  --threads T           receiver threads per worker process (default 1)
  --publishers C        publisher connections per publish endpoint (default: min(K, 4))
  --ramp-per-s S        tunnel connections opened per second, in total (default 5000)
  --drain-ms MS         wait after the last publish before stopping (default 1000)
  --pid LIST            process ids (with their descendants) whose memory is sampled
                        before and after the tunnels open
  --label NAME          a name for this run in the summary and plots (default: the peer)
  --reattach            (router only) a live tunnel whose connection is lost (cut off as a slow
                        consumer, reset, ended) re-attaches with its id and last=<last id seen>;
                        its replayed datagrams and those lost behind a gap marker are counted
  --reattach-delay-ms MS  wait before each re-attach (default 0: at once)

Exit status: 0 when every tunnel opened and every publish was accepted and delivered once and
in order; 3 when the run finished but lost or refused something (the results are written);
1 when the run could not finish; 2 for bad arguments.";

/// Whose conventions the run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    fn parse(s: &str) -> Option<Peer> {
        [Peer::Router, Peer::Nchan, Peer::Pushpin, Peer::Baseline]
            .into_iter()
            .find(|p| p.name() == s)
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
                    let weight: u32 = weight.parse().ok().filter(|w| (1..=MIX_WEIGHT_MAX).contains(w)).ok_or_else(|| {
                        format!("--transport: weight {weight:?} of {name:?} must be 1..={MIX_WEIGHT_MAX}")
                    })?;
                    (name, weight)
                }
                None => (part, 1),
            };
            let transport = Transport::parse(name).ok_or_else(|| {
                format!("--transport: expected ws, sse, longpoll, nul or ndjson, got {name:?}")
            })?;
            if weights.iter().any(|(t, _)| *t == transport) {
                return Err(format!("--transport: {name} is listed twice"));
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

pub enum ArgsError {
    Help,
    Bad(String),
}

impl From<String> for ArgsError {
    fn from(message: String) -> Self {
        ArgsError::Bad(message)
    }
}

const FLAGS: &[&str] = &[
    "--target",
    "--publish-to",
    "--peer",
    "--transport",
    "--live",
    "--idle",
    "--zombie-fraction",
    "--paths",
    "--rate",
    "--duration-s",
    "--out",
    "--sources",
    "--processes",
    "--threads",
    "--publishers",
    "--ramp-per-s",
    "--drain-ms",
    "--pid",
    "--label",
    "--reattach-delay-ms",
];

/// Flags that take no value.
const SWITCHES: &[&str] = &["--reattach"];

/// Sources at most: 127.0.0.0/8 has 16M addresses, but more than this is a typo.
const SOURCES_MAX: u32 = 65_536;

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name}: invalid number {value:?}"))
}

fn addresses(name: &str, value: &str) -> Result<Vec<SocketAddr>, String> {
    let list: Result<Vec<SocketAddr>, String> = value
        .split(',')
        .map(|a| {
            a.parse()
                .map_err(|_| format!("{name}: expected IP:PORT, got {a:?}"))
        })
        .collect();
    let list = list?;
    if list.len() > 1024 {
        return Err(format!("{name}: at most 1024 addresses"));
    }
    Ok(list)
}

fn source_range(value: &str) -> Result<Vec<Ipv4Addr>, String> {
    let (first, last) = value.split_once('-').unwrap_or((value, value));
    let parse = |a: &str| {
        a.parse::<Ipv4Addr>()
            .map_err(|_| format!("--sources: expected IPv4-IPv4, got {value:?}"))
    };
    let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
    if last < first || last - first >= SOURCES_MAX {
        return Err(format!(
            "--sources: {value:?} must run upwards and hold at most {SOURCES_MAX} addresses"
        ));
    }
    Ok((first..=last).map(Ipv4Addr::from).collect())
}

pub fn parse_args(argv: &[String]) -> Result<Args, ArgsError> {
    let mut values: HashMap<&str, String> = HashMap::new();
    let mut iter = argv.iter();
    while let Some(flag) = iter.next() {
        if flag == "--help" || flag == "-h" {
            return Err(ArgsError::Help);
        }
        if let Some(switch) = SWITCHES.iter().find(|f| **f == flag) {
            if values.insert(switch, String::new()).is_some() {
                return Err(ArgsError::Bad(format!("{flag} given twice")));
            }
            continue;
        }
        let Some(known) = FLAGS.iter().find(|f| **f == flag) else {
            return Err(ArgsError::Bad(format!("unknown argument {flag:?}")));
        };
        let Some(value) = iter.next() else {
            return Err(ArgsError::Bad(format!("{flag} needs a value")));
        };
        if values.insert(known, value.clone()).is_some() {
            return Err(ArgsError::Bad(format!("{flag} given twice")));
        }
    }
    let required = |name: &str| {
        values
            .get(name)
            .cloned()
            .ok_or_else(|| format!("missing {name}"))
    };
    let optional = |name: &str| values.get(name).cloned();

    let targets = addresses("--target", &required("--target")?)?;
    let publish_to = match optional("--publish-to") {
        Some(v) => addresses("--publish-to", &v)?,
        None => targets.clone(),
    };
    let peer = match optional("--peer") {
        Some(v) => Peer::parse(&v).ok_or_else(|| {
            format!("--peer: expected router, nchan, pushpin or baseline, got {v:?}")
        })?,
        None => Peer::Router,
    };
    let mix = Mix::parse(&required("--transport")?)?;
    if let Some((t, _)) = mix.weights.iter().find(|(t, _)| !peer.supports(*t)) {
        return Err(ArgsError::Bad(format!(
            "--transport: {} does not speak {}",
            peer.name(),
            t.name()
        )));
    }
    let live: u64 = number("--live", &required("--live")?)?;
    let idle: u64 = number("--idle", &required("--idle")?)?;
    let zombie_fraction: f64 = match optional("--zombie-fraction") {
        Some(v) => number("--zombie-fraction", &v)?,
        None => 0.0,
    };
    let paths: u64 = number("--paths", &required("--paths")?)?;
    let rate_per_s: f64 = number("--rate", &required("--rate")?)?;
    let duration_s: u64 = number("--duration-s", &required("--duration-s")?)?;
    let out = PathBuf::from(required("--out")?);
    let sources = match optional("--sources") {
        Some(v) => source_range(&v)?,
        None => Vec::new(),
    };
    let processes = optional("--processes")
        .map(|v| number::<u64>("--processes", &v))
        .transpose()?;
    let threads: u64 = match optional("--threads") {
        Some(v) => number("--threads", &v)?,
        None => 1,
    };
    let publishers: u64 = match optional("--publishers") {
        Some(v) => number("--publishers", &v)?,
        None => paths.min(4),
    };
    let ramp_per_s: f64 = match optional("--ramp-per-s") {
        Some(v) => number("--ramp-per-s", &v)?,
        None => 5000.0,
    };
    let drain_ms: u64 = match optional("--drain-ms") {
        Some(v) => number("--drain-ms", &v)?,
        None => 1000,
    };
    let pids = match optional("--pid") {
        Some(v) => v
            .split(',')
            .map(|p| number::<u32>("--pid", p))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let label = optional("--label").unwrap_or_else(|| peer.name().to_owned());
    let reattach = values.contains_key("--reattach");
    let reattach_delay_ms: u64 = match optional("--reattach-delay-ms") {
        Some(v) => number("--reattach-delay-ms", &v)?,
        None => 0,
    };

    let tunnels = live.saturating_add(idle);
    if tunnels == 0 || tunnels > 10_000_000 {
        return Err(ArgsError::Bad(
            "--live plus --idle must be 1..=10000000".into(),
        ));
    }
    if !(0.0..=1.0).contains(&zombie_fraction) {
        return Err(ArgsError::Bad("--zombie-fraction must be 0..=1".into()));
    }
    if paths == 0 || paths > 1_000_000 {
        return Err(ArgsError::Bad("--paths must be 1..=1000000".into()));
    }
    if !(rate_per_s.is_finite() && rate_per_s > 0.0 && rate_per_s <= 10_000_000.0) {
        return Err(ArgsError::Bad("--rate must be in (0, 10000000]".into()));
    }
    if !(ramp_per_s.is_finite() && ramp_per_s > 0.0) {
        return Err(ArgsError::Bad("--ramp-per-s must be positive".into()));
    }
    if duration_s == 0 || duration_s > 3600 {
        return Err(ArgsError::Bad("--duration-s must be 1..=3600".into()));
    }
    if drain_ms > 600_000 {
        return Err(ArgsError::Bad("--drain-ms must be at most 600000".into()));
    }
    if processes.is_some_and(|p| p == 0 || p > 256) {
        return Err(ArgsError::Bad("--processes must be 1..=256".into()));
    }
    if threads == 0 || threads > 64 {
        return Err(ArgsError::Bad("--threads must be 1..=64".into()));
    }
    if publishers == 0 || publishers > paths {
        return Err(ArgsError::Bad("--publishers must be 1..=paths".into()));
    }
    if label.is_empty() || label.len() > 64 {
        return Err(ArgsError::Bad("--label must be 1..=64 characters".into()));
    }
    if reattach && peer != Peer::Router {
        return Err(ArgsError::Bad(format!(
            "--reattach: {} has no re-attach with last",
            peer.name()
        )));
    }
    if values.contains_key("--reattach-delay-ms") && !reattach {
        return Err(ArgsError::Bad(
            "--reattach-delay-ms needs --reattach".into(),
        ));
    }
    if reattach_delay_ms > 60_000 {
        return Err(ArgsError::Bad(
            "--reattach-delay-ms must be at most 60000".into(),
        ));
    }
    Ok(Args {
        targets,
        publish_to,
        peer,
        mix,
        live,
        idle,
        zombie_fraction,
        paths,
        rate_per_s,
        duration_s,
        out,
        sources,
        processes,
        threads,
        publishers,
        ramp_per_s,
        drain_ms,
        pids,
        label,
        reattach,
        reattach_delay_ms,
    })
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
        s.split_whitespace().map(str::to_owned).collect()
    }

    const GOOD: &str = "--target 127.0.0.1:8080 --transport ws --live 2 --idle 3 --paths 2 --rate 100 --duration-s 1 --out /tmp/x";

    fn good(extra: &str) -> Args {
        match parse_args(&argv(&format!("{GOOD} {extra}"))) {
            Ok(args) => args,
            Err(ArgsError::Bad(m)) => panic!("{extra}: {m}"),
            Err(ArgsError::Help) => panic!("help"),
        }
    }

    fn bad(s: &str) -> String {
        match parse_args(&argv(s)) {
            Err(ArgsError::Bad(message)) => message,
            _ => panic!("{s} should be refused"),
        }
    }

    #[test]
    fn parses_a_full_command_line() {
        let args = good("");
        assert_eq!(args.mix.describe(), "ws");
        assert_eq!(
            (args.live, args.idle, args.paths, args.duration_s),
            (2, 3, 2, 1)
        );
        assert_eq!(args.publishers, 2);
        assert_eq!(args.peer, Peer::Router);
        assert_eq!(args.publish_to, args.targets);
        assert_eq!(args.label, "router");
        let args = good("--sources 127.0.1.1-127.0.1.4 --pid 10,11 --processes 3 --peer nchan");
        assert_eq!(args.sources.len(), 4);
        assert_eq!(args.sources[3], Ipv4Addr::new(127, 0, 1, 4));
        assert_eq!(args.pids, vec![10, 11]);
        assert_eq!(args.processes, Some(3));
        assert!(!args.reattach);
        let args = good("--reattach --reattach-delay-ms 250");
        assert!(args.reattach);
        assert_eq!(args.reattach_delay_ms, 250);
        assert_eq!(good("--reattach").reattach_delay_ms, 0);
    }

    #[test]
    fn refuses_bad_arguments_with_a_message() {
        assert!(bad(&GOOD.replace("ws", "tcp")).contains("--transport"));
        assert!(bad(&GOOD.replace("--rate 100", "--rate x")).contains("--rate"));
        assert!(bad(&GOOD.replace("--paths 2", "--paths 0")).contains("--paths"));
        assert!(bad(&format!("{GOOD} --bogus 1")).contains("--bogus"));
        assert!(bad(&format!("{GOOD} --live 3")).contains("twice"));
        assert!(bad(&format!("{GOOD} --sources 127.0.0.9-127.0.0.1")).contains("--sources"));
        assert!(bad(&format!("{GOOD} --zombie-fraction 1.5")).contains("--zombie-fraction"));
        assert!(bad(&format!("{GOOD} --peer pushpin")).contains("pushpin does not speak ws"));
        assert!(bad(&GOOD.replace("ws", "ws:2,sse:0")).contains("weight"));
        assert!(bad(&GOOD.replace("ws", "ws,ws")).contains("twice"));
        assert!(bad(&format!("{GOOD} --reattach --reattach")).contains("twice"));
        assert!(bad(&format!("{GOOD} --reattach-delay-ms 5")).contains("needs --reattach"));
        assert!(bad(&format!("{GOOD} --reattach --peer nchan")).contains("no re-attach"));
        assert!(bad("--target").contains("needs a value"));
        assert!(bad("--transport ws").contains("missing --target"));
        assert!(matches!(parse_args(&argv("--help")), Err(ArgsError::Help)));
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
        let Ok(args) = parse_args(&argv(&format!(
            "{} --sources 127.0.1.1-127.0.1.3 --zombie-fraction 0.34",
            GOOD.replace("127.0.0.1:8080", "127.0.0.1:1,127.0.0.1:2")
        ))) else {
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
