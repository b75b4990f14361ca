//! loadgen against real servers on ephemeral loopback ports: every publish reaches every live
//! tunnel once and in order, and the summary says so exactly.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use router::config::Config;

fn start_router() -> SocketAddr {
    start_router_with(&[])
}

fn start_router_with(flags: &[&str]) -> SocketAddr {
    let args: Vec<String> = ["--listen", "127.0.0.1:0", "--shards", "2", "--log", "warn"]
        .into_iter()
        .chain(flags.iter().copied())
        .map(String::from)
        .collect();
    let server = router::server::start(Config::from_args(args).expect("config")).expect("router");
    let addr = server.addr;
    // The shard threads live until the test process ends.
    std::mem::forget(server);
    addr
}

/// Runs the loadgen binary to completion (bounded), checks it exited 0 and returns its summary.
fn run(name: &str, args: &[&str]) -> serde_json::Value {
    run_expecting(name, args, 0)
}

/// Runs the loadgen binary to completion (bounded), checks its exit status and returns its
/// summary (written whether or not the run lost something).
fn run_expecting(name: &str, args: &[&str], code: i32) -> serde_json::Value {
    let out = std::env::temp_dir().join(format!("loadgen-e2e-{name}-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .spawn()
        .expect("loadgen runs");
    // Bounded: a run takes a few seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("loadgen did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(code), "loadgen exited with {status}");
    let summary = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    let log = std::fs::read_to_string(out.join("latency.hlog")).expect("latency.hlog");
    assert!(log.contains("#[StartTime: "), "an interval log: {log}");
    let _ = std::fs::remove_dir_all(&out);
    serde_json::from_str(&summary).expect("summary is JSON")
}

/// 20 live tunnels over 4 paths, 200 publishes: each tunnel gets its path's 50.
fn check_clean(summary: &serde_json::Value, tunnels: u64) {
    assert_eq!(summary["tunnels_attempted"], tunnels, "{summary}");
    assert_eq!(summary["tunnels_open"], tunnels, "{summary}");
    assert_eq!(summary["tunnels_failed"], 0, "{summary}");
    assert_eq!(summary["tunnels_lost"], 0, "{summary}");
    assert_eq!(summary["publishes_sent"], 200, "{summary}");
    assert_eq!(summary["publishes_accepted"], 200, "{summary}");
    assert_eq!(summary["deliveries_expected"], 1000, "{summary}");
    assert_eq!(summary["deliveries"], 1000, "{summary}");
    assert_eq!(summary["sequence"]["received"], 1000, "{summary}");
    assert_eq!(summary["sequence"]["gaps"], 0, "{summary}");
    assert_eq!(summary["sequence"]["duplicates"], 0, "{summary}");
    assert_eq!(summary["sequence"]["out_of_order"], 0, "{summary}");
    assert_eq!(summary["latency_us"]["count"], 1000, "{summary}");
    let p50 = summary["latency_us"]["p50_us"].as_u64().expect("p50");
    let max = summary["latency_us"]["max_us"].as_u64().expect("max");
    assert!(p50 > 0 && p50 <= max, "{summary}");
    assert!(summary["connect_rate_per_s"].as_f64().expect("rate") > 0.0);
}

const SCENARIO: [&str; 10] = [
    "--live",
    "20",
    "--idle",
    "50",
    "--paths",
    "4",
    "--rate",
    "200",
    "--duration-s",
    "1",
];

#[test]
fn websocket_run_loses_nothing() {
    let addr = start_router().to_string();
    let mut args = vec!["--target", &addr, "--transport", "ws"];
    args.extend(SCENARIO);
    check_clean(&run("ws", &args), 70);
}

#[test]
fn sse_run_loses_nothing() {
    let addr = start_router().to_string();
    let mut args = vec!["--target", &addr, "--transport", "sse"];
    args.extend(SCENARIO);
    check_clean(&run("sse", &args), 70);
}

/// Every transport at once, over two worker processes, two source addresses and two
/// listening addresses of one router (published to once), with zombies that never read, and
/// the memory of this test process (which runs the router) sampled.
#[test]
fn mixed_transports_over_processes_sources_and_targets_lose_nothing() {
    let addr = start_router();
    // The router listens on 127.0.0.1 only; a second target name for the same listener.
    let targets = format!("{addr},{addr}");
    let pid = std::process::id().to_string();
    let mut args = vec!["--target", &targets, "--publish-to"];
    let publish_to = addr.to_string();
    args.push(&publish_to);
    args.extend([
        "--transport",
        "ws:2,sse:1,longpoll:1,nul:1,ndjson:1",
        "--processes",
        "2",
        "--sources",
        "127.0.2.1-127.0.2.2",
        "--zombie-fraction",
        "0.5",
        "--pid",
        &pid,
    ]);
    args.extend(SCENARIO);
    let summary = run("mix", &args);
    check_clean(&summary, 70);
    assert_eq!(summary["processes"], 2, "{summary}");
    assert_eq!(summary["zombies"], 25, "{summary}");
    assert_eq!(summary["transport"], "ws:2,sse:1,longpoll:1,nul:1,ndjson:1");
    let memory = &summary["memory"];
    assert!(
        memory["rss_after_bytes"].as_u64().expect("after") > 0,
        "{summary}"
    );
    // The pids are sorted: once pids wrap around, a descendant (a loadgen another test of this
    // process runs) may come before this process.
    let pids: Vec<u64> = memory["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    assert!(pids.contains(&u64::from(std::process::id())), "{summary}");
}

/// The raw baseline speaks Nchan's conventions; loadgen measures it the same way.
#[test]
fn baseline_peer_run_loses_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["baseline", "--listen", &listen])
        .spawn()
        .expect("baseline runs");
    let up = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < up, "baseline did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    for transport in ["sse", "ws"] {
        let mut args = vec![
            "--target",
            &listen,
            "--peer",
            "baseline",
            "--transport",
            transport,
        ];
        args.extend(SCENARIO);
        check_clean(&run(&format!("baseline-{transport}"), &args), 70);
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// A run whose publisher cannot reach its endpoint delivers nothing: it must not pass for a
/// clean run. loadgen writes its results and exits 3.
#[test]
fn a_run_that_cannot_publish_exits_3_with_its_results() {
    let addr = start_router().to_string();
    // Port 1 on loopback: nothing listens there.
    let summary = run_expecting(
        "unpublished",
        &[
            "--target",
            &addr,
            "--publish-to",
            "127.0.0.1:1",
            "--transport",
            "sse",
            "--live",
            "20",
            "--idle",
            "0",
            "--paths",
            "4",
            "--rate",
            "100",
            "--duration-s",
            "2",
        ],
        3,
    );
    assert_eq!(summary["tunnels_open"], 20, "{summary}");
    assert_eq!(summary["publishes_sent"], 0, "{summary}");
    assert_eq!(summary["deliveries"], 0, "{summary}");
}

/// `SO_LINGER` 0: closing `stream` sends a reset.
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value is a valid `linger` for the call; the descriptor is open.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A TCP proxy on 127.0.0.1 to `upstream` that resets the client side of each connection once
/// it has carried a few kilobytes from the server (a different amount per connection, often in
/// the middle of a datagram), until `cuts_max` connections were cut; later connections pass
/// untouched. Returns its address and the number of cuts so far.
fn cutting_proxy(upstream: SocketAddr, cuts_max: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
    let addr = listener.local_addr().expect("proxy address");
    let cuts = Arc::new(AtomicU64::new(0));
    let counted = cuts.clone();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let cut_after_bytes = 1500 + (n as u64 * 7919) % 3000;
            let (mut client_in, mut server_out) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut server_out);
                let _ = server_out.shutdown(Shutdown::Write);
            });
            let cuts = counted.clone();
            std::thread::spawn(move || {
                let (mut server_in, mut client_out) = (server, client);
                let mut carried = 0u64;
                let mut buf = [0u8; 512];
                loop {
                    let n = match server_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let cut = carried + n as u64 >= cut_after_bytes
                        && cuts.load(Ordering::Relaxed) < cuts_max;
                    if cut {
                        // Up to the cut point, then a reset: the client sees a datagram cut
                        // short and an error, as from a router that dropped it.
                        let keep = (cut_after_bytes - carried) as usize;
                        let _ = client_out.write_all(&buf[..keep.min(n)]);
                        cuts.fetch_add(1, Ordering::Relaxed);
                        // The other thread holds a second descriptor of the client socket: a
                        // shutdown of its reading side ends that thread, and the last close
                        // then resets the connection.
                        reset_on_close(&client_out);
                        let _ = client_out.shutdown(Shutdown::Read);
                        let _ = server_in.shutdown(Shutdown::Both);
                        return;
                    }
                    if client_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    carried += n as u64;
                }
                let _ = client_out.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, cuts)
}

/// Tunnels whose connections are reset mid-stream re-attach with `last` under `--reattach`:
/// none is lost, and every publish is delivered once or lost behind a gap marker the router
/// sent (a replay buffer of 4 datagrams and a 300 ms wait before each re-attach make gaps).
/// The same cuts without `--reattach` lose the tunnels, as before.
#[test]
fn reattach_recovers_cut_tunnels_and_counts_replays_and_gaps() {
    let addr = start_router_with(&["--replay-datagrams-max", "4"]);
    let publish_to = addr.to_string();
    let scenario = [
        "--publish-to",
        &publish_to,
        "--transport",
        "ws:1,sse:1",
        "--live",
        "20",
        "--idle",
        "0",
        "--paths",
        "4",
        "--rate",
        "200",
        "--duration-s",
        "2",
        // Long enough for a tunnel cut by the last publishes to wait its 300 ms and replay
        // what it missed, on a loaded machine too.
        "--drain-ms",
        "3000",
    ];

    let (proxy, cuts) = cutting_proxy(addr, 60);
    let target = proxy.to_string();
    let mut args = vec![
        "--target",
        &target,
        "--reattach",
        "--reattach-delay-ms",
        "300",
    ];
    args.extend(scenario);
    // Datagrams lost behind gap markers are still losses: exit 3, results written.
    let summary = run_expecting("reattach", &args, 3);
    let cut = cuts.load(Ordering::Relaxed);
    let reattach = &summary["reattach"];
    let sequence = &summary["sequence"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{summary}"));
    eprintln!(
        "reattach: {cut} cuts, {} reattaches, {} deliveries of {} expected, {} replayed, {} \
         lost behind gap markers, gaps {}, duplicates {}",
        reattach["reattaches"],
        summary["deliveries"],
        summary["deliveries_expected"],
        reattach["replayed"],
        reattach["lost_behind_gap"],
        sequence["gaps"],
        sequence["duplicates"],
    );
    assert!(cut >= 20, "the proxy cut only {cut} connections");
    assert_eq!(summary["tunnels_open"], 20, "{summary}");
    assert_eq!(summary["tunnels_lost"], 0, "{summary}");
    assert_eq!(summary["tunnels_failed"], 0, "{summary}");
    assert_eq!(summary["publishes_accepted"], 400, "{summary}");
    assert_eq!(n(&reattach["delay_ms"]), 300);
    assert!(n(&reattach["reattaches"]) >= cut, "{summary}");
    assert!(n(&reattach["replayed"]) > 0, "{summary}");
    assert!(n(&reattach["lost_behind_gap"]) > 0, "{summary}");
    // Every publish accounted for: delivered once, or behind a gap marker; nothing silent.
    assert_eq!(sequence["gaps"], 0, "{summary}");
    assert_eq!(sequence["duplicates"], 0, "{summary}");
    assert_eq!(sequence["out_of_order"], 0, "{summary}");
    assert_eq!(
        n(&summary["deliveries"]) + n(&reattach["lost_behind_gap"]),
        n(&summary["deliveries_expected"]),
        "{summary}"
    );
    assert_eq!(n(&summary["deliveries_expected"]), 20 * 100);

    // Without --reattach the cut tunnels are lost, and nothing is said about re-attaching.
    let (proxy, cuts) = cutting_proxy(addr, 60);
    let target = proxy.to_string();
    let mut args = vec!["--target", target.as_str()];
    args.extend(scenario);
    let summary = run_expecting("no-reattach", &args, 3);
    let cut = cuts.load(Ordering::Relaxed);
    assert!(cut > 0, "{summary}");
    assert_eq!(n(&summary["tunnels_lost"]), cut, "{summary}");
    assert!(summary.get("reattach").is_none(), "{summary}");
    assert!(n(&summary["sequence"]["gaps"]) > 0, "{summary}");
}
