//! loadgen against a real router on an ephemeral loopback port: every publish reaches every
//! live tunnel once and in order, and the summary says so.

use std::process::Command;
use std::time::Duration;

use router::config::Config;

fn start_router() -> std::net::SocketAddr {
    let args = ["--listen", "127.0.0.1:0", "--shards", "2", "--log", "warn"].map(String::from);
    let server = router::server::start(Config::from_args(args).expect("config")).expect("router");
    let addr = server.addr;
    // The shard threads live until the test process ends.
    std::mem::forget(server);
    addr
}

fn run(transport: &str) -> serde_json::Value {
    let addr = start_router();
    let out = std::env::temp_dir().join(format!("loadgen-e2e-{transport}-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--target", &addr.to_string(), "--transport", transport])
        .args(["--live", "20", "--idle", "50", "--paths", "4"])
        .args(["--rate", "200", "--duration-s", "1"])
        .arg("--out")
        .arg(&out)
        .spawn()
        .expect("loadgen runs");
    // Bounded: the run takes about two seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("loadgen did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "loadgen exited with {status}");
    let summary = std::fs::read_to_string(out.join("summary.json")).expect("summary.json");
    assert!(out.join("latency.hlog").exists(), "interval log written");
    serde_json::from_str(&summary).expect("summary is JSON")
}

fn check(summary: &serde_json::Value) {
    assert_eq!(summary["tunnels_attempted"], 70, "{summary}");
    assert_eq!(summary["tunnels_open"], 70, "{summary}");
    assert_eq!(summary["tunnels_failed"], 0, "{summary}");
    assert_eq!(summary["publishes_sent"], 200, "{summary}");
    assert_eq!(summary["publishes_accepted"], 200, "{summary}");
    // 200 publishes over 4 paths, 20 live tunnels spread over the paths: each tunnel gets the
    // publishes of its path.
    assert_eq!(summary["deliveries_expected"], 1000, "{summary}");
    assert_eq!(summary["deliveries"], 1000, "{summary}");
    assert_eq!(summary["sequence"]["received"], 1000, "{summary}");
    assert_eq!(summary["sequence"]["gaps"], 0, "{summary}");
    assert_eq!(summary["sequence"]["duplicates"], 0, "{summary}");
    assert_eq!(summary["sequence"]["out_of_order"], 0, "{summary}");
    let p50 = summary["latency_us"]["p50_us"].as_u64().expect("p50");
    let max = summary["latency_us"]["max_us"].as_u64().expect("max");
    assert!(p50 > 0 && p50 <= max, "{summary}");
}

#[test]
fn websocket_run_loses_nothing() {
    check(&run("ws"));
}

#[test]
fn sse_run_loses_nothing() {
    check(&run("sse"));
}
