//! Start-up: the router refuses a port that another listener already holds, rather than
//! silently sharing it through SO_REUSEPORT.
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
