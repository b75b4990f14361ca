//! Start-up: the router refuses a port that another listener already holds, rather than
//! silently sharing it through SO_REUSEPORT; the binary's own flags (`--version`, `--log`), its
//! refusals of a mistyped command line, and a log fit for a file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use router::config::Config;

#[test]
fn refuses_a_port_already_in_use() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let config = Config::from_args(["--listen", addr.as_str(), "--shards", "2"].map(String::from))
        .expect("valid config");
    let err = match router::server::start(config) {
        Ok(_) => panic!("the router started on a port in use"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn waits_briefly_for_a_port_that_is_being_released() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(holder);
    });
    let config = Config::from_args(["--listen", addr.as_str(), "--shards", "2"].map(String::from))
        .expect("valid config");
    let server = router::server::start(config).expect("the router starts once the port is free");
    assert_eq!(server.addr.to_string(), addr);
    release.join().unwrap();
    std::mem::forget(server);
}

/// The router binary, stopped and started again on the same port at once, starts every time.
/// An exited process's io_uring ring keeps its listener for a few milliseconds (measured up to
/// ~13 ms here), which made about one restart in four fail with "Address already in use".
#[test]
fn an_immediate_restart_on_the_same_port_starts() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    for round in 0..8 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
            .args(["--listen", &listen, "--shards", "2", "--log", "info"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("router runs");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let listening = stdout
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("listening"));
        if !listening {
            let out = child.wait_with_output().unwrap();
            panic!(
                "round {round}: the router did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Connections the router holds when it goes, as a real one would.
        let mut held = Vec::new();
        for _ in 0..10 {
            let mut c = std::net::TcpStream::connect(&listen).unwrap();
            c.write_all(b"GET /tunnel?format=sse HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            held.push(c);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Reads until the peer closes; panics if it stays open (the read timeout is 5 s).
fn read_until_closed(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection is still open after stop: {e} (read {rest:?})"),
    }
    rest
}

#[test]
fn a_stopped_server_ends_every_connection_and_frees_its_port() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let config = Config::from_args(["--listen", "127.0.0.1:0", "--shards", "2"].map(String::from))
        .expect("valid config");
    let server = router::server::start(config).expect("router starts");
    let addr = server.addr;
    let connect = || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let read_head = |s: &mut std::net::TcpStream| {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    };
    // SSE tunnels (on both shards, most likely), a parked long-poll, a WebSocket and an idle
    // keep-alive connection.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut s = connect();
        s.write_all(b"GET /tunnel?format=sse&path=/a HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert!(read_head(&mut s).starts_with("HTTP/1.1 200"));
        streams.push(s);
    }
    let mut poll = connect();
    poll.write_all(b"GET /tunnel?format=longpoll&ttl=60000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut ws = connect();
    ws.write_all(
        b"GET /tunnel HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    assert!(read_head(&mut ws).starts_with("HTTP/1.1 101"));
    let mut idle = connect();
    idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut idle).starts_with("HTTP/1.1 200"));

    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.stop();
        let _ = done.send(());
    });
    stopped
        .recv_timeout(Duration::from_secs(5))
        .expect("stop returns once every shard thread has ended");

    // Each stream ends with the last chunk of its chunked body.
    for mut s in streams {
        let rest = read_until_closed(&mut s);
        assert!(
            rest.ends_with(b"\r\n0\r\n\r\n"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    // The parked poll is answered (it had nothing to carry but the tunnel's own datagram).
    let answered = read_until_closed(&mut poll);
    assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");
    // The WebSocket gets close 1001 after its tunnel datagram.
    let frames = read_until_closed(&mut ws);
    let close = frames
        .windows(4)
        .position(|w| w[0] == 0x88 && w[2..4] == 1001u16.to_be_bytes())
        .map(|at| String::from_utf8_lossy(&frames[at + 4..]).into_owned());
    assert_eq!(close.as_deref(), Some("server stopping"), "{frames:?}");
    // The idle keep-alive connection is closed, with nothing more said.
    let body_and_rest = read_until_closed(&mut idle);
    assert!(
        !String::from_utf8_lossy(&body_and_rest).contains("HTTP/1.1"),
        "{body_and_rest:?}"
    );

    let rebound = std::net::TcpListener::bind(addr);
    assert!(rebound.is_ok(), "the port is still held: {rebound:?}");
    drop(rebound);
    let again =
        Config::from_args(["--listen", &addr.to_string(), "--shards", "2"].map(|s| s.to_string()))
            .expect("valid config");
    router::server::start(again)
        .expect("a router starts again on the same port")
        .stop();
}

/// Runs the router binary to its end with `args`; returns (exit code, stdout, stderr).
fn run_router(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_router"))
        .args(args)
        .output()
        .expect("router runs");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_flags_print_the_version_and_revision() {
    for flag in ["--version", "-V"] {
        let (code, stdout, stderr) = run_router(&[flag]);
        assert_eq!(code, 0, "{flag}: {stderr}");
        let line = stdout.trim_end();
        let want = format!("router {} (git ", env!("CARGO_PKG_VERSION"));
        assert!(
            line.starts_with(&want) && line.ends_with(')'),
            "{flag}: {line:?}"
        );
        let revision = &line[want.len()..line.len() - 1];
        assert!(
            revision == "unknown" || revision.chars().all(|c| c.is_ascii_hexdigit()),
            "{flag}: {line:?}"
        );
    }
}

#[test]
fn an_unknown_log_level_is_refused_with_the_valid_ones() {
    let (code, stdout, stderr) = run_router(&["--log", "verbose"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("`verbose` is not a log level"), "{stderr}");
    assert!(
        stderr.contains("error, warn, info, debug, trace, off"),
        "{stderr}"
    );
}

#[test]
fn a_mistyped_key_gets_a_suggestion() {
    let (code, _, stderr) = run_router(&["--keepalive", "5000"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("did you mean --keepalive-ms?"), "{stderr}");

    let file = std::env::temp_dir().join(format!("router-startup-{}.toml", std::process::id()));
    std::fs::write(&file, "shard = 2\n").unwrap();
    let (code, _, stderr) = run_router(&["--config", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unknown key `shard`, did you mean `shards`?"),
        "{stderr}"
    );
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 200, "a line of {longest} characters: {stderr}");
}

/// A log written to a pipe (as to a file or journald) carries no colour escapes, even without
/// `NO_COLOR`; the configuration is a summary at info and one key per line at debug.
#[test]
fn a_log_to_a_pipe_is_plain_text_with_one_key_per_line() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--listen", "127.0.0.1:0", "--shards", "1", "--log", "debug"])
        .args(["--keepalive-ms", "5000"])
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("router runs");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        let done = line.contains("listening");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = lines.join("\n");
    assert!(log.contains("listening"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escapes in a piped log: {log:?}"
    );
    let summary = lines
        .iter()
        .find(|l| l.contains(" INFO ") && l.contains("configuration: "))
        .unwrap_or_else(|| panic!("no configuration summary: {log}"));
    assert!(
        summary.contains("listen 127.0.0.1:0, 1 shard, ")
            && summary.contains("changed from the defaults: keepalive_ms = 5000"),
        "{summary}"
    );
    assert!(summary.len() < 300, "{summary}");
    let keys: Vec<&String> = lines.iter().filter(|l| l.contains("config: ")).collect();
    assert!(
        keys.iter()
            .any(|l| l.ends_with("config: keepalive_ms = 5000")),
        "{log}"
    );
    assert!(keys.len() >= 30, "one line per key: {log}");
}
