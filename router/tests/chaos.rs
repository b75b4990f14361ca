//! The chaos suite, bounded and on loopback: slowloris connections beside live tunnels (latency
//! holds, the attackers are timed out and counted), consumers that never read (the router's
//! memory stays within its documented bounds, they are cut off and counted, and find a gap
//! marker rather than silent loss when they come back), and hundreds of abrupt drops of SSE and
//! WebSocket clients in the middle of datagrams while a publisher publishes (every acknowledged
//! datagram is delivered exactly once to every tunnel, or lies behind a gap marker).
//!
//! Each test prints its seed; `CHAOS_SEED=<seed> cargo test -p router --test chaos` replays it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::chaos::{self, check, now_us, percentile, Cut, Item, Rng, Seen, Transport, Tunnel};
use support::process::{rss_bytes, RouterProcess};
use support::*;

/// The chaos tests run one at a time: each loads the machine, and the slowloris test measures
/// latency, which must not measure the others.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_history_checker_accounts_for_holes_gaps_and_duplicates() {
    chaos::self_test();
}

// ----- Slowloris beside live tunnels ---------------------------------------------------------

/// Live tunnels of each transport in the latency measurement.
const LIVE_PER_TRANSPORT: usize = 12;
/// Publishes per latency measurement, one every `PUBLISH_INTERVAL`.
const LATENCY_PUBLISHES: usize = 600;
const PUBLISH_INTERVAL: Duration = Duration::from_millis(2);
/// Slowloris connections at most (the test process holds both ends of each, so twice this
/// many descriptors, well below the 20,000 open files a process may hold here).
const SLOWLORIS_MAX: usize = 1200;
/// The header-read timeout the router runs with in the slowloris test: longer than the
/// measurement under attack, so the attackers are all held open while it runs.
const SLOWLORIS_HEADER_TIMEOUT_MS: u64 = 3000;
/// Each attacker sends one more byte of its request head this often.
const TRICKLE_INTERVAL: Duration = Duration::from_millis(500);
/// Rounds of (quiet, attack, quiet) at most; see the test for why more than one.
const SLOWLORIS_ROUNDS_MAX: usize = 3;
/// The interval is cut into this many ticks, each sending to its share of the attackers.
const TRICKLE_TICKS: usize = 100;

/// Publishes `LATENCY_PUBLISHES` datagrams `{"t":<µs>}` on `/live`, paced, and returns the
/// publish → delivery latencies every live tunnel saw, in µs.
fn measure_latency(tunnels: &mut Vec<Tunnel>, publisher: &mut Publisher) -> Vec<u64> {
    let readers: Vec<_> = std::mem::take(tunnels)
        .into_iter()
        .map(|mut t| {
            thread::spawn(move || {
                let mut latencies = Vec::with_capacity(LATENCY_PUBLISHES);
                while latencies.len() < LATENCY_PUBLISHES {
                    match t.next().expect("live tunnel reads") {
                        Some(Item::Datagram { data, .. }) => {
                            let sent = data["t"].as_u64().expect("t");
                            latencies.push(now_us().saturating_sub(sent));
                        }
                        Some(Item::Keepalive) => {}
                        other => panic!("live tunnel got {other:?}"),
                    }
                }
                (t, latencies)
            })
        })
        .collect();
    let start = Instant::now();
    for k in 0..LATENCY_PUBLISHES {
        let due = start + PUBLISH_INTERVAL * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        publisher.publish("/live", &format!(r#"{{"t":{}}}"#, now_us()));
    }
    let mut all = Vec::new();
    for r in readers {
        let (t, latencies) = r.join().expect("reader");
        tunnels.push(t);
        all.extend(latencies);
    }
    all
}

/// An attacker: a request head that never ends, sent one byte at a time.
struct Slowloris {
    stream: TcpStream,
    head: Vec<u8>,
    sent: usize,
    first_byte: Instant,
}

impl Slowloris {
    fn open(addr: SocketAddr, n: usize) -> Slowloris {
        let stream = TcpStream::connect(addr).expect("slowloris connects");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let head = format!(
            "GET /tunnel?format=sse&path=/slow/{n} HTTP/1.1\r\nHost: t\r\nX-Slow: {}",
            "z".repeat(4000)
        )
        .into_bytes();
        let mut s = Slowloris {
            stream,
            head,
            sent: 0,
            first_byte: Instant::now(),
        };
        s.trickle();
        s
    }

    fn trickle(&mut self) {
        let byte = self.head[self.sent % self.head.len()];
        self.stream
            .write_all(&[byte])
            .expect("the router holds the attacker open");
        self.sent += 1;
    }
}

/// The p99s of one round, in µs: quiet before, under attack, quiet after.
struct Round {
    quiet_before_us: u64,
    attack_us: u64,
    quiet_after_us: u64,
}

impl Round {
    /// The machine's noise during the attack is bracketed by the quiet windows on either side.
    fn quiet_us(&self) -> u64 {
        self.quiet_before_us.max(self.quiet_after_us)
    }

    /// Twice the quiet p99, with a floor of quiet + 2 ms: see the test.
    fn bound_us(&self) -> u64 {
        (2 * self.quiet_us()).max(self.quiet_us() + 2000)
    }
}

/// One round: the quiet p99, then `attackers` slowloris connections opened and trickled while
/// the p99 is measured again, then every attacker checked to be answered 408 and closed once
/// the header timeout passed, then the quiet p99 again.
fn slowloris_round(
    addr: SocketAddr,
    attackers: usize,
    tunnels: &mut Vec<Tunnel>,
    publisher: &mut Publisher,
) -> Round {
    let quiet_before_us = percentile(&mut measure_latency(tunnels, publisher), 99.0);
    let before = metrics(addr);
    let opened = Instant::now();
    let attack: Vec<Slowloris> = (0..attackers).map(|n| Slowloris::open(addr, n)).collect();
    let open_ms = opened.elapsed().as_millis();
    // The trickle: every attacker sends a byte every `TRICKLE_INTERVAL`, from one thread,
    // spread evenly over the interval (attackers are independent of one another; sent in one
    // burst, a thousand bytes would measure a burst, not slow clients), while the live tunnels
    // are measured.
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut attack = attack;
            let per_tick = attack.len().div_ceil(TRICKLE_TICKS);
            let tick = TRICKLE_INTERVAL / TRICKLE_TICKS as u32;
            let start = Instant::now();
            let mut ticks = 0u32;
            let mut trickled = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let from = (ticks as usize % TRICKLE_TICKS) * per_tick;
                for s in attack.iter_mut().skip(from).take(per_tick) {
                    s.trickle();
                    trickled += 1;
                }
                ticks += 1;
                if let Some(wait) = (start + tick * ticks).checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
            (attack, trickled)
        })
    };
    let attack_us = percentile(&mut measure_latency(tunnels, publisher), 99.0);
    let open_under_attack = metrics(addr)["connections_open"].as_u64().unwrap();
    let measured_at = opened.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (attack, trickled) = trickler.join().expect("trickler");

    // Every attacker is answered 408 and closed once its head has taken longer than the
    // timeout (counted from its first byte), however many bytes it trickled.
    let mut closed_after_ms = Vec::new();
    for mut s in attack {
        let mut answer = Vec::new();
        s.stream
            .read_to_end(&mut answer)
            .expect("the router answers and closes");
        let after = s.first_byte.elapsed();
        assert!(
            answer.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            after >= Duration::from_millis(SLOWLORIS_HEADER_TIMEOUT_MS - 50),
            "closed {after:?} after its first byte, before the timeout"
        );
        closed_after_ms.push(after.as_millis() as u64);
    }
    let after = metrics(addr);
    let counted = |key: &str| after[key].as_u64().unwrap() - before[key].as_u64().unwrap();
    // All attackers were held open during the measurement.
    assert!(
        open_under_attack >= attackers as u64,
        "{open_under_attack} connections open"
    );
    assert!(
        measured_at < Duration::from_millis(SLOWLORIS_HEADER_TIMEOUT_MS),
        "the measurement outlasted the header timeout: {measured_at:?}"
    );
    let latest_close_ms = *closed_after_ms.iter().max().unwrap();
    assert!(latest_close_ms < SLOWLORIS_HEADER_TIMEOUT_MS + 3000);
    // The attackers, and the two metrics requests since `before`; each attacker's 408 counts
    // as a failed request.
    assert_eq!(counted("connections_accepted"), attackers as u64 + 2);
    assert_eq!(counted("requests_failed"), attackers as u64);
    assert!(
        eventually(|| metrics(addr)["connections_open"].as_u64().unwrap()
            <= 2 * LIVE_PER_TRANSPORT as u64 + 2),
        "attackers still open"
    );
    let quiet_after_us = percentile(&mut measure_latency(tunnels, publisher), 99.0);
    eprintln!(
        "slowloris: {attackers} attackers opened in {open_ms} ms, {trickled} bytes trickled, \
         {open_under_attack} connections open under attack, measured until {measured_at:?}; \
         p99 quiet {quiet_before_us} us, under attack {attack_us} us, quiet again \
         {quiet_after_us} us; attackers closed 408 after {} .. {latest_close_ms} ms",
        closed_after_ms.iter().min().unwrap(),
    );
    Round {
        quiet_before_us,
        attack_us,
        quiet_after_us,
    }
}

/// The p99 of live tunnels holds beside a slowloris attack, whose connections are timed out
/// and counted.
///
/// The bound is max(2 x quiet p99, quiet p99 + 2 ms), the quiet p99 being the larger of the
/// windows right before and right after the attack. The live tunnels' p99 is a few hundred
/// microseconds in this debug build, and on a 2-core machine shared with other builds it moves
/// by a millisecond or more from one second to the next (a scheduler tick, a neighbour's
/// burst): measured here, quiet windows of the same run ranged from 0.6 to 4 ms. A bare 2x on
/// such figures would measure the neighbours, not the attack, hence the floor, the bracketing,
/// and up to `SLOWLORIS_ROUNDS_MAX` rounds, of which one must hold the bound: a router that the
/// attack really slows fails every round. Every round checks the timeouts and counts in full.
#[test]
fn slowloris_beside_live_tunnels_keeps_their_p99_and_is_timed_out() {
    let _serial = serial();
    let limit = router::os::raise_open_files_limit() as usize;
    // Two descriptors per attacker in this process, and room for everything else.
    let attackers = SLOWLORIS_MAX.min(limit.saturating_sub(1024) / 2);
    assert!(
        attackers >= 300,
        "the open-files limit {limit} leaves room for only {attackers} attackers"
    );
    let timeout = SLOWLORIS_HEADER_TIMEOUT_MS.to_string();
    let addr = start(&["--header-read-timeout-ms", &timeout]);
    let mut tunnels = Vec::new();
    for transport in [Transport::Sse, Transport::Ws] {
        for _ in 0..LIVE_PER_TRANSPORT {
            let mut t = Tunnel::open(addr, transport, "path=/live").expect("live tunnel");
            assert!(t.control().1);
            tunnels.push(t);
        }
    }
    let mut publisher = Publisher::new(addr);
    // Warm-up: the first publishes pay for lazily built state on both sides.
    measure_latency(&mut tunnels, &mut publisher);
    let mut rounds = Vec::new();
    while rounds.len() < SLOWLORIS_ROUNDS_MAX {
        let round = slowloris_round(addr, attackers, &mut tunnels, &mut publisher);
        let held = round.attack_us <= round.bound_us();
        rounds.push(round);
        if held {
            break;
        }
    }
    let summary: Vec<String> = rounds
        .iter()
        .map(|r| format!("{} us under attack, bound {} us", r.attack_us, r.bound_us()))
        .collect();
    eprintln!("slowloris: p99 per round: {summary:?}");
    assert!(
        rounds.iter().any(|r| r.attack_us <= r.bound_us()),
        "p99 under attack above max(2 x quiet, quiet + 2 ms) in every round: {summary:?}"
    );
    // The live tunnels are unharmed and still attached.
    let m = metrics(addr);
    assert_eq!(m["slow_consumer"], 0);
    assert_eq!(m["tunnels_open"], 2 * LIVE_PER_TRANSPORT as u64);
}

// ----- Kill and re-attach: the history checker -----------------------------------------------

/// Clients of each transport that are cut and re-attach over and over.
const CUT_CLIENTS_PER_TRANSPORT: usize = 10;
/// How long the publisher publishes, one datagram every `CUT_PUBLISH_INTERVAL`.
const CUT_PUBLISHING: Duration = Duration::from_secs(6);
const CUT_PUBLISH_INTERVAL: Duration = Duration::from_micros(1000);
/// The replay buffer of the router under test: small, so that clients that stay away longer
/// than ~64 publishes come back to a gap.
const CUT_REPLAY_DATAGRAMS_MAX: &str = "64";
/// A cut client's reads wait this long at a time.
const STEP: Duration = Duration::from_millis(100);

/// What one client did.
#[derive(Debug, Default)]
struct CutClient {
    tunnel: String,
    seen: Vec<Seen>,
    cuts: u64,
    /// Cuts with bytes of an incomplete record (chunk, frame or SSE event) already read.
    cuts_mid_datagram: u64,
    /// Cuts right after sending the re-attach request, before reading its answer.
    cuts_before_answer: u64,
    reattaches: u64,
    /// Attachments the router ended (slow consumer, replaced).
    ended_by_router: u64,
}

impl CutClient {
    /// The query that re-attaches with the last datagram fully received.
    fn reattach_query(&self) -> String {
        let last = self.seen.iter().rev().find_map(|s| match s {
            Seen::Datagram(id) => Some(id.as_str()),
            _ => None,
        });
        match last {
            Some(last) => format!("path=/cut&id={}&last={last}", self.tunnel),
            // Nothing processed yet: the tunnel's own id says so (docs/protocol.md).
            None => format!("path=/cut&id={0}&last={0}", self.tunnel),
        }
    }

    /// Records a tunnel's control datagram (same tunnel, never new) and what it has decoded.
    fn attached(&mut self, t: &mut Tunnel) {
        let (tunnel, new) = t.control();
        assert_eq!(tunnel, self.tunnel, "re-attached to another tunnel");
        assert!(!new, "the tunnel was lost");
        self.reattaches += 1;
        self.seen.push(Seen::Attach);
        self.take_decoded(t);
    }

    /// Records the datagrams and gaps `t` has decoded so far.
    fn take_decoded(&mut self, t: &mut Tunnel) {
        while let Some(item) = t.pop() {
            self.record(item);
        }
    }

    fn record(&mut self, item: Item) {
        match item {
            Item::Datagram { id, .. } => self.seen.push(Seen::Datagram(id)),
            Item::Gap => self.seen.push(Seen::Gap),
            Item::Keepalive => {}
            Item::Control { .. } => panic!("a second tunnel datagram in one attachment"),
        }
    }
}

/// One client: opens its tunnel (before the publisher starts), then, until `done`, reads a
/// random number of bytes in random sizes, cuts the connection in a random way (often in the
/// middle of a datagram), waits a random while and re-attaches with `last`. At the end it
/// re-attaches once more and reads until the final datagram `end`.
fn cut_client(
    addr: SocketAddr,
    transport: Transport,
    mut rng: Rng,
    ready: Arc<Barrier>,
    done: Arc<AtomicBool>,
    end: Arc<Mutex<Option<String>>>,
) -> CutClient {
    let mut me = CutClient::default();
    let mut t = Tunnel::open(addr, transport, "path=/cut").expect("tunnel opens");
    let (tunnel, new) = t.control();
    assert!(new);
    me.tunnel = tunnel;
    me.seen.push(Seen::Attach);
    ready.wait();
    let mut current = Some(t);
    while !done.load(Ordering::Relaxed) {
        let mut t = match current.take() {
            Some(t) => t,
            None => {
                let query = me.reattach_query();
                if rng.percent(10) {
                    // Cut before the answer: the router attaches and writes to a connection
                    // that is already gone; `last` still says what the client has.
                    let stream = Tunnel::request(addr, transport, &query, None).expect("connect");
                    chaos::cut_stream(stream, Cut::pick(&mut rng));
                    me.cuts += 1;
                    me.cuts_before_answer += 1;
                    continue;
                }
                let mut t = Tunnel::open(addr, transport, &query).expect("re-attach");
                me.attached(&mut t);
                t
            }
        };
        // Read a budget of bytes in random sizes, then cut wherever that ends.
        // Reads wait in short steps, so that the end of publishing ends the budget too.
        t.stream.set_read_timeout(Some(STEP)).unwrap();
        // The first attachment is cut within its first datagram: the client has processed
        // nothing, and the router has written to a connection that breaks.
        let mut budget = if me.cuts == 0 {
            rng.range(1, 40) as usize
        } else {
            rng.range(1, 6000) as usize
        };
        let mut waited = Duration::ZERO;
        while budget > 0 && !t.ended {
            // Never past the budget, so that the cut falls at a random byte of the stream.
            match t.read_some(budget.min(rng.range(1, 1500) as usize)) {
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    waited = Duration::ZERO;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    waited += STEP;
                    assert!(
                        waited < WAIT,
                        "nothing arrived for {waited:?} while publishing"
                    );
                }
                Err(e) => panic!("read: {e}"),
            }
            me.take_decoded(&mut t);
        }
        t.stream.set_read_timeout(Some(WAIT)).unwrap();
        if t.ended {
            // The router ended it: a slow consumer (a datagram it never sent was evicted), or
            // an earlier request of this client, cut before its answer, that reached the
            // tunnel's shard after this one and replaced it. Re-attach as after a cut.
            me.ended_by_router += 1;
            continue;
        }
        if t.mid_record() {
            me.cuts_mid_datagram += 1;
        }
        me.cuts += 1;
        t.cut(Cut::pick(&mut rng));
        // Mostly straight back; sometimes away long enough to find a gap.
        let away_ms = if rng.percent(75) {
            rng.below(5)
        } else {
            rng.range(20, 200)
        };
        thread::sleep(Duration::from_millis(away_ms));
    }
    // The end: re-attach and read until the last datagram published.
    let end = loop {
        if let Some(end) = end.lock().unwrap().clone() {
            break end;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let mut t = match current.take() {
        Some(t) => t,
        None => {
            let mut t = Tunnel::open(addr, transport, &me.reattach_query()).expect("re-attach");
            me.attached(&mut t);
            t
        }
    };
    let query = me.reattach_query();
    let end = Seen::Datagram(end);
    while !me.seen.contains(&end) {
        let next = t.next().unwrap_or_else(|e| {
            panic!(
                "{transport:?} tunnel {}: no final datagram {end:?} after re-attaching with {query}: \
                 {e}; last seen {:?}; holding {}",
                me.tunnel,
                &me.seen[me.seen.len().saturating_sub(5)..],
                t.debug_pending()
            )
        });
        match next {
            Some(item) => me.record(item),
            None => panic!("the final attachment ended before the last datagram"),
        }
    }
    me
}

#[test]
fn hundreds_of_cuts_mid_datagram_lose_nothing_silently_and_duplicate_nothing() {
    let _serial = serial();
    let mut rng = Rng::new(chaos::seed("cuts"));
    let addr = start(&["--replay-datagrams-max", CUT_REPLAY_DATAGRAMS_MAX]);
    let clients = 2 * CUT_CLIENTS_PER_TRANSPORT;
    let ready = Arc::new(Barrier::new(clients + 1));
    let done = Arc::new(AtomicBool::new(false));
    let end = Arc::new(Mutex::new(None));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let transport = if i % 2 == 0 {
                Transport::Sse
            } else {
                Transport::Ws
            };
            let (rng, ready, done, end) = (rng.fork(), ready.clone(), done.clone(), end.clone());
            thread::spawn(move || cut_client(addr, transport, rng, ready, done, end))
        })
        .collect();
    // Every tunnel is subscribed before the first publish, so each must account for all.
    ready.wait();
    let mut publisher = Publisher::new(addr);
    let mut published = Vec::new();
    let mut refused = 0u64;
    let start_at = Instant::now();
    let mut k = 0u32;
    while start_at.elapsed() < CUT_PUBLISHING {
        let due = start_at + CUT_PUBLISH_INTERVAL * k;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        match publisher.try_publish("/cut", &format!(r#"{{"n":{k}}}"#)) {
            (202, body) => published.push(accepted_id(&body)),
            // Refused publishes reach nobody; a refused id delivered would show as unknown.
            _ => refused += 1,
        }
        k += 1;
    }
    done.store(true, Ordering::Relaxed);
    let last = publisher.publish("/cut", r#""end""#);
    published.push(last.clone());
    *end.lock().unwrap() = Some(last);

    let mut total = chaos::Verdict::default();
    let (mut cuts, mut mid, mut before_answer, mut reattaches, mut ended) = (0, 0, 0, 0, 0);
    for h in handles {
        let client = h.join().expect("client");
        let verdict = check(&published, &client.seen);
        assert!(
            verdict.clean(),
            "tunnel {}: {verdict:?} after {} cuts",
            client.tunnel,
            client.cuts
        );
        assert_eq!(
            verdict.delivered + verdict.behind_gap,
            published.len() as u64,
            "{verdict:?}"
        );
        total.add(&verdict);
        cuts += client.cuts;
        mid += client.cuts_mid_datagram;
        before_answer += client.cuts_before_answer;
        reattaches += client.reattaches;
        ended += client.ended_by_router;
    }
    let m = metrics(addr);
    eprintln!(
        "cuts: {} datagrams acknowledged ({refused} refused) x {clients} tunnels; {cuts} cuts \
         ({mid} mid-datagram, {before_answer} before the answer), {ended} attachments ended by \
         the router, {reattaches} re-attaches; \
         delivered {}, behind {} gap markers {} ({} markers with nothing missing), \
         duplicates {}, silent losses {}; router: slow_consumer {}, replaced {}",
        published.len(),
        total.delivered,
        total.gap_markers,
        total.behind_gap,
        total.gaps_without_loss,
        total.duplicates,
        total.silent_losses,
        m["slow_consumer"],
        m["replaced"],
    );
    assert!(cuts >= 200, "only {cuts} cuts");
    assert!(mid >= cuts / 4, "only {mid} of {cuts} cuts mid-datagram");
    assert!(total.gap_markers > 0, "no client came back to a gap");
    assert!(total.delivered > 0);
    assert_eq!(m["tunnels_open"], clients as u64);
    assert_eq!(m["tunnels_created"], clients as u64);
}

// ----- Slow consumers: bounded memory, counted disconnects, gaps -----------------------------

/// Consumers of each transport that never read.
const SLOW_PER_TRANSPORT: usize = 16;
/// Their receive buffer: small, so the router's side fills fast.
const SLOW_RCVBUF_BYTES: usize = 4096;
/// The router's bounds in this test.
const SLOW_SEND_QUEUE_BYTES_MAX: usize = 64 * 1024;
const SLOW_REPLAY_BYTES_MAX: usize = 256 * 1024;
const SLOW_REPLAY_DATAGRAMS_MAX: usize = 1024;
/// Bookkeeping per replay entry (docs/limits.md).
const REPLAY_ENTRY_BYTES: usize = 48;
/// What is published: `SLOW_PUBLISHES` datagrams of `SLOW_DATA_BYTES`.
const SLOW_PUBLISHES: usize = 2000;
const SLOW_DATA_BYTES: usize = 4096;
/// Memory the bound allows beyond the per-tunnel bounds: the batch a connection has taken
/// from its queue and is writing (at most 64 KiB each, not counted in the send queue), the
/// shards' buffer pools, allocator slack.
const SLOW_ALLOWANCE_BYTES: u64 = 24 << 20;

#[test]
fn slow_consumers_are_cut_off_within_the_memory_bound_and_come_back_to_a_gap() {
    let _serial = serial();
    let (send_queue, replay_bytes, replay_datagrams) = (
        SLOW_SEND_QUEUE_BYTES_MAX.to_string(),
        SLOW_REPLAY_BYTES_MAX.to_string(),
        SLOW_REPLAY_DATAGRAMS_MAX.to_string(),
    );
    let router = RouterProcess::start(&[
        "--send-queue-bytes-max",
        &send_queue,
        "--replay-bytes-max",
        &replay_bytes,
        "--replay-datagrams-max",
        &replay_datagrams,
    ]);
    let addr = router.addr;
    let mut slow = Vec::new();
    for transport in [Transport::Sse, Transport::Ws] {
        for _ in 0..SLOW_PER_TRANSPORT {
            let mut t = Tunnel::open_with(addr, transport, "path=/slow", Some(SLOW_RCVBUF_BYTES))
                .expect("slow tunnel opens");
            let (tunnel, new) = t.control();
            assert!(new);
            // From here on it reads nothing.
            slow.push((t, tunnel));
        }
    }
    let tunnels = slow.len();
    // Memory with the tunnels open and nothing published, settled.
    thread::sleep(Duration::from_millis(300));
    let rss_before = router.rss_bytes();
    assert!(rss_before > 0, "no VmRSS for the router");
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), router.child.id());
        thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut publisher = Publisher::new(addr);
    let data = format!(r#""{}""#, "s".repeat(SLOW_DATA_BYTES - 2));
    let published: Vec<String> = (0..SLOW_PUBLISHES)
        .map(|_| publisher.publish("/slow", &data))
        .collect();
    assert!(
        eventually(|| metrics(addr)["slow_consumer"] == tunnels as u64),
        "not every consumer that reads nothing was cut off: {}",
        metrics(addr)
    );
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let rss_peak = peak.load(Ordering::Relaxed);
    let rss_after = router.rss_bytes();
    // The documented bound per tunnel: its replay buffer (payloads and entries) and its send
    // queue (docs/limits.md), as though nothing were shared between tunnels.
    let per_tunnel = SLOW_REPLAY_BYTES_MAX
        + SLOW_REPLAY_DATAGRAMS_MAX * REPLAY_ENTRY_BYTES
        + SLOW_SEND_QUEUE_BYTES_MAX;
    let bound = rss_before + (tunnels * per_tunnel) as u64 + SLOW_ALLOWANCE_BYTES;
    // What buffering everything for every tunnel would hold.
    let unbounded = (tunnels * SLOW_PUBLISHES * SLOW_DATA_BYTES) as u64;

    // Each consumer finds its connection closed mid-stream (no clean end) and what it got was
    // a prefix; re-attaching with the last datagram it holds gives a gap marker, then the
    // newest datagrams, then a sentinel: nothing is lost silently, nothing comes twice.
    let sentinel = publisher.publish("/slow", r#""sentinel""#);
    let mut history: Vec<String> = published.clone();
    history.push(sentinel.clone());
    let mut total = chaos::Verdict::default();
    let mut received_before_cut = 0;
    for (mut t, tunnel) in slow {
        t.stream.set_read_timeout(Some(WAIT)).unwrap();
        let transport = t.transport;
        let mut seen = vec![Seen::Attach];
        // Read what the kernel still holds for it, up to the close.
        loop {
            match t.next() {
                Ok(Some(Item::Datagram { id, .. })) => seen.push(Seen::Datagram(id)),
                Ok(Some(Item::Keepalive)) => {}
                Ok(Some(other)) => panic!("a cut-off consumer got {other:?}"),
                Ok(None) => break,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading a cut-off consumer: {e}"),
            }
        }
        received_before_cut += seen.len() - 1;
        let last = seen.iter().rev().find_map(|s| match s {
            Seen::Datagram(id) => Some(id.clone()),
            _ => None,
        });
        let query = match &last {
            Some(last) => format!("path=/slow&id={tunnel}&last={last}"),
            None => format!("path=/slow&id={tunnel}"),
        };
        let mut back = Tunnel::open(addr, transport, &query).expect("re-attach");
        assert_eq!(back.control(), (tunnel.clone(), false));
        seen.push(Seen::Attach);
        let end = Seen::Datagram(sentinel.clone());
        while !seen.contains(&end) {
            match back.next().expect("replay") {
                Some(Item::Datagram { id, .. }) => seen.push(Seen::Datagram(id)),
                Some(Item::Gap) => seen.push(Seen::Gap),
                Some(Item::Keepalive) => {}
                other => panic!("{other:?} while replaying"),
            }
        }
        let verdict = check(&history, &seen);
        assert!(verdict.clean(), "{tunnel}: {verdict:?}");
        assert_eq!(
            verdict.gap_markers, 1,
            "{tunnel} came back to no gap: {verdict:?}"
        );
        assert!(verdict.behind_gap > 0, "{verdict:?}");
        total.add(&verdict);
    }
    eprintln!(
        "slow consumers: {tunnels} never reading (SO_RCVBUF {SLOW_RCVBUF_BYTES}), {SLOW_PUBLISHES} \
         datagrams of {SLOW_DATA_BYTES} B published; router RSS {} KiB before, peak {} KiB, \
         after {} KiB; bound {} KiB (buffering everything would be {} MiB); {} datagrams \
         received before the cut, then {} delivered in all, {} behind {} gap markers",
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024,
        bound / 1024,
        unbounded >> 20,
        received_before_cut,
        total.delivered,
        total.behind_gap,
        total.gap_markers,
    );
    assert!(
        rss_peak <= bound,
        "router RSS peaked at {rss_peak} B, above the bound {bound} B"
    );
    let m = metrics(addr);
    assert_eq!(m["slow_consumer"], tunnels as u64, "{m}");
    assert_eq!(m["tunnels_open"], tunnels as u64, "{m}");
}
