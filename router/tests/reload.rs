//! SIGHUP makes the router binary read its configuration file again. New tunnels see the new
//! values (`keepalive_ms` in their first datagram and their keepalives, a custom format's
//! envelope) while the tunnels already open are still delivered to, in the format they opened
//! with; a file that does not load is refused, logged, and the running configuration stays; a
//! key that needs a restart (`listen`) is named and keeps its running value; the log filter
//! changes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use support::process::RouterProcess;
use support::*;

/// A config file in the temporary directory, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("router-reload-{}.toml", std::process::id()));
        let file = ConfigFile(path);
        file.write(text);
        file
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The configuration with `listen`, `log`, `keepalive_ms` and the envelope of the custom format
/// `mine` (whose keepalive record is `~`).
fn config(listen: &str, log: &str, keepalive_ms: u64, envelope: &str) -> String {
    format!(
        "listen = '{listen}'\nshards = 2\nlog = '{log}'\nkeepalive_ms = {keepalive_ms}\n\n\
         [formats.mine]\ncontent_type = 'text/plain'\nenvelope = \"{envelope} {{json}}\\n\"\n\
         keepalive = \"~\\n\"\n"
    )
}

fn hangup(router: &RouterProcess) {
    // SAFETY: kill(2) with the pid of our own child; no memory is involved.
    let sent = unsafe { libc::kill(router.child.id() as i32, libc::SIGHUP) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Sends SIGHUP and returns the first log line after it that contains `needle`, and the mark
/// where the reload's lines start.
fn reload(router: &RouterProcess, needle: &str) -> (String, usize) {
    let mark = router.log_mark();
    hangup(router);
    (router.log_line_after(mark, needle), mark)
}

/// A new SSE tunnel subscribed to `/r`, and the `keepalive_ms` its first datagram announces.
fn sse(addr: SocketAddr) -> (Stream, u64) {
    let mut s = Stream::open(addr, "/tunnel?format=sse&path=/r");
    let hello = s.sse_json().unwrap();
    assert_eq!(hello["type"], "tunnel", "{hello}");
    let keepalive_ms = hello["keepalive_ms"].as_u64().unwrap();
    (s, keepalive_ms)
}

/// The next record of a `mine` stream that is not a keepalive, as (envelope word, JSON).
fn mine_record(s: &mut Stream) -> (String, serde_json::Value) {
    loop {
        let rec = String::from_utf8(s.record(b"\n").unwrap()).unwrap();
        if rec == "~" {
            continue;
        }
        let (word, json) = rec.split_once(' ').unwrap();
        return (word.to_owned(), serde_json::from_str(json).unwrap());
    }
}

/// A new `mine` tunnel subscribed to `/r`, its envelope word and announced `keepalive_ms`.
fn mine(addr: SocketAddr) -> (Stream, String, u64) {
    let mut s = Stream::open(addr, "/tunnel?format=mine&path=/r");
    let (word, hello) = mine_record(&mut s);
    assert_eq!(hello["type"], "tunnel", "{hello}");
    (s, word, hello["keepalive_ms"].as_u64().unwrap())
}

/// The id of the next datagram of an SSE stream (keepalive comments skipped).
fn sse_datagram_id(s: &mut Stream) -> String {
    loop {
        let event = s.sse_event().unwrap();
        if let Some(id) = event.iter().find_map(|l| l.strip_prefix("id: ")) {
            return id.to_owned();
        }
    }
}

#[test]
fn sighup_reloads_what_can_change_and_keeps_the_rest() {
    let file = ConfigFile::new(&config("127.0.0.1:0", "info", 60_000, "old"));
    let router = RouterProcess::start_with_args(&["--config", &file.arg()], &[]);
    let addr = router.addr;
    let (mut sse_before, keepalive_ms) = sse(addr);
    assert_eq!(keepalive_ms, 60_000);
    let (mut mine_before, word, _) = mine(addr);
    assert_eq!(word, "old");

    // Reloadable keys change: every shard takes them, and the log says what changed.
    file.write(&config("127.0.0.1:0", "info", 200, "new"));
    let (line, _) = reload(&router, "configuration reloaded");
    for said in [
        "keepalive_ms: 60000 -> 200",
        "formats.mine changed",
        "shards_applied=2",
    ] {
        assert!(line.contains(said), "{said:?} not in {line:?}");
    }
    // New tunnels (on either shard: one connection each) see the new values...
    for _ in 0..4 {
        let (mut s, keepalive_ms) = sse(addr);
        assert_eq!(keepalive_ms, 200);
        assert_eq!(
            s.record(b"\n\n").unwrap(),
            b":",
            "a keepalive within 200 ms"
        );
        let (_, word, keepalive_ms) = mine(addr);
        assert_eq!((word.as_str(), keepalive_ms), ("new", 200));
    }
    // ...and the tunnels open before are still delivered to, in the format they opened with.
    let (mut mine_after, _, _) = mine(addr);
    let id = publish(addr, "/r", "1");
    assert_eq!(sse_datagram_id(&mut sse_before), id);
    let (word, datagram) = mine_record(&mut mine_before);
    assert_eq!(
        (word.as_str(), datagram["id"].as_str()),
        ("old", Some(id.as_str()))
    );
    let (word, datagram) = mine_record(&mut mine_after);
    assert_eq!(
        (word.as_str(), datagram["id"].as_str()),
        ("new", Some(id.as_str()))
    );

    // A file that does not load is refused, and says why; the running configuration stays.
    file.write("keepalive_ms = 'soon'\n");
    let (line, _) = reload(&router, "refused");
    assert!(
        line.contains("the running one stays") && line.contains("keepalive_ms"),
        "{line}"
    );
    file.write(&config("127.0.0.1:0", "info", 5, "bad"));
    let (line, _) = reload(&router, "refused");
    assert!(line.contains("config key `keepalive_ms`"), "{line}");
    let (_, keepalive_ms) = sse(addr);
    assert_eq!(keepalive_ms, 200);
    let (_, word, _) = mine(addr);
    assert_eq!(word, "new");

    // A key that needs a restart is named and keeps its running value; the rest applies. The
    // log filter changes last: this reload's own lines still show at `info`.
    file.write(&config("127.0.0.1:1", "warn", 300, "new"));
    let (line, mark) = reload(&router, "need a restart");
    assert!(
        line.contains(r#"listen: "127.0.0.1:0" -> "127.0.0.1:1""#),
        "{line}"
    );
    let line = router.log_line_after(mark, "configuration reloaded");
    assert!(line.contains(r#"log: "info" -> "warn""#), "{line}");
    let (_, keepalive_ms) = sse(addr);
    assert_eq!(
        keepalive_ms, 300,
        "still serving on {addr}, with the new keepalive"
    );
    let id = publish(addr, "/r", "2");
    assert_eq!(sse_datagram_id(&mut sse_before), id);

    // At `warn`, a reload's warning shows and its `info` line does not.
    file.write(&config("127.0.0.1:2", "warn", 400, "new"));
    let (_, mark) = reload(&router, "need a restart");
    assert!(eventually(|| sse(addr).1 == 400), "the reload applied");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        router.log_mark(),
        mark + 1,
        "only the warning was logged: no `info` line once the filter is `warn`"
    );
}
