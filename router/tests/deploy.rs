//! What ships in deploy/: the example configuration names every key at its default and marks
//! the ones a reload cannot change (so it cannot drift from the code), the systemd unit has the
//! settings docs/operations.md relies on and passes `systemd-analyze verify` where systemd is
//! installed, the router tells the service manager it is ready (then stopping) through
//! `NOTIFY_SOCKET`, and the Grafana dashboard's queries parse as PromQL and chart every metric
//! family a live router exports, and nothing else.
//!
//! The dashboard check needs `python3 -m pip install promql-parser` (scripts/check.sh installs
//! it, pinned). A missing parser fails the test with that instruction: it is never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use router::config::{Config, RELOADABLE_KEYS};
use serde_json::Value;
use support::process::RouterProcess;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy")
        .join(file)
}

fn text(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap()
}

/// Every key of the configuration, as the defaults serialize.
fn config_keys() -> Vec<String> {
    let defaults: toml::Table = toml::from_str(&toml::to_string(&Config::default()).unwrap())
        .expect("the defaults serialize to TOML");
    defaults.keys().cloned().collect()
}

#[test]
fn the_example_config_names_every_key_at_its_default() {
    let file: toml::Table = toml::from_str(&text("router.toml")).unwrap();
    let named: Vec<String> = file.keys().cloned().collect();
    assert_eq!(
        named,
        config_keys(),
        "deploy/router.toml must name every key of the configuration"
    );
    let path = deploy("router.toml").display().to_string();
    let loaded = Config::from_args(["--config".to_owned(), path]).unwrap();
    let defaults = Config::from_args(Vec::new()).unwrap();
    assert_eq!(
        toml::to_string(&loaded).unwrap(),
        toml::to_string(&defaults).unwrap(),
        "deploy/router.toml must set every key to its default"
    );
}

#[test]
fn every_key_of_the_example_config_has_a_comment() {
    let text = text("router.toml");
    let mut previous = "";
    let mut keys = 0;
    for line in text.lines() {
        let line = line.trim();
        let is_setting = !line.starts_with('#') && line.contains(" = ");
        let is_table = line.starts_with('[');
        if is_setting || is_table {
            let in_table = is_setting && !previous.starts_with('#') && previous.starts_with('[');
            assert!(
                previous.starts_with('#') || in_table,
                "`{line}` has no comment above it"
            );
            keys += 1;
        }
        if !line.is_empty() {
            previous = line;
        }
    }
    assert!(keys >= config_keys().len(), "{keys} keys seen");
}

#[test]
fn the_example_config_marks_the_keys_a_reload_cannot_change() {
    // Each top-level key and table, with the comment lines just above it.
    let mut comment: Vec<&str> = Vec::new();
    let mut in_table = false;
    let mut seen = BTreeSet::new();
    for line in text("router.toml").lines() {
        let line = line.trim();
        if line.starts_with('#') {
            comment.push(line);
            continue;
        }
        let key = match line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            Some(table) => {
                in_table = true;
                Some(table)
            }
            None if in_table => None,
            None => line.split_once(" = ").map(|(key, _)| key),
        };
        if let Some(key) = key {
            let marked = comment.iter().any(|c| c.contains("(restart)"));
            let reloads = RELOADABLE_KEYS.contains(&key);
            assert_eq!(
                marked, !reloads,
                "deploy/router.toml: `{key}` must be marked (restart) exactly when a reload \
                 cannot change it (config::RELOADABLE_KEYS)"
            );
            seen.insert(key.to_owned());
        }
        comment.clear();
    }
    let keys: BTreeSet<String> = config_keys().into_iter().collect();
    assert_eq!(seen, keys);
}

/// `Key=value` settings of the unit.
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_systemd_unit_notifies_drains_within_its_timeout_and_is_hardened() {
    let unit = text("router.service");
    let settings = unit_settings(&unit);
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, value) in [
        ("Type", "notify"),
        ("LimitNOFILE", "1048576"),
        ("KillSignal", "SIGTERM"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(get(key), [value], "{key}");
    }
    assert_eq!(get("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert!(get("ExecStart")[0].contains("--config /etc/router/router.toml"));
    // systemd's stop timeout must leave the drain its whole time.
    let timeout_s: u64 = get("TimeoutStopSec")[0].parse().unwrap();
    let drain_ms = Config::default().drain_ms;
    assert!(
        timeout_s * 1000 > drain_ms + 2000,
        "TimeoutStopSec={timeout_s} must exceed drain_ms ({drain_ms}) with room"
    );

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!(
            "systemd-analyze is not installed here: deploy/router.service was checked \
             textually only"
        );
        return;
    };
    assert!(version.status.success());
    // The unit as shipped, its ExecStart pointed at the binary under test (verify checks that
    // the command exists).
    let dir = std::env::temp_dir().join(format!("router-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("router.service");
    let shipped = unit.replace("/usr/local/bin/router", env!("CARGO_BIN_EXE_router"));
    std::fs::write(&copy, shipped).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // It exits 0 on settings it ignores, and says so on stderr: both must be quiet.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn the_router_notifies_readiness_then_stopping_on_notify_socket() {
    let dir = std::env::temp_dir().join(format!("router-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut router =
        RouterProcess::start_with_env(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a readiness notification");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=listening on {}\n", router.addr)
    );
    // Ready means accepting.
    let mut c = support::Client::new(router.addr);
    c.get("/readyz");
    assert_eq!(c.response().0.status, 200);
    drop(c);
    // SAFETY: kill(2) with the pid of our own child; no memory is involved.
    assert_eq!(
        unsafe { libc::kill(router.child.id() as i32, libc::SIGTERM) },
        0
    );
    let n = socket.recv(&mut buf).expect("a stopping notification");
    assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=draining\n");
    let status = router.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The metric names `expressions` select, each as the Prometheus query parser reads it.
fn promql_metrics(expressions: &[String]) -> Vec<BTreeSet<String>> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut child = Command::new("python3")
        .arg("scripts/ops/promql_metrics.py")
        .current_dir(workspace)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(expressions).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the PromQL parser refused a query (or is missing: install it with \
         `python3 -m pip install promql-parser`, as scripts/check.sh does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .iter()
        .map(|p| {
            p["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn the_grafana_dashboard_charts_every_exported_metric_family() {
    let dashboard: Value = serde_json::from_str(&text("router-dashboard.json"))
        .expect("deploy/router-dashboard.json is JSON");
    assert_eq!(dashboard["title"], "Router");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "instance"]);
    // Every panel has its own id and fits the 24-column grid; every chart queries the chosen
    // data source.
    let mut ids = BTreeSet::new();
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            ["stat", "timeseries"].contains(&panel["type"].as_str().unwrap()),
            "{title}"
        );
        assert!(
            !panel["description"].as_str().unwrap().is_empty(),
            "{title}"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(refs.insert(target["refId"].as_str().unwrap()), "{title}");
            expressions.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    let charted: BTreeSet<String> = promql_metrics(&expressions).into_iter().flatten().collect();

    let addr = support::start(&[]);
    let mut c = support::Client::new(addr);
    c.get("/metrics");
    let (_, body) = c.response();
    let exported: BTreeSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &charted {
        assert!(
            exported.contains(name.as_str()),
            "deploy/router-dashboard.json queries `{name}`, which /metrics does not export"
        );
    }
    // A histogram is charted through its series (`_bucket`, `_sum`, `_count`).
    let families = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next());
    let mut count = 0;
    for family in families {
        let shown = charted.iter().any(|name| {
            name.strip_prefix(family)
                .is_some_and(|rest| ["", "_bucket", "_sum", "_count"].contains(&rest))
        });
        assert!(
            shown,
            "/metrics exports `{family}`, which deploy/router-dashboard.json does not chart"
        );
        count += 1;
    }
    assert!(count >= 30, "{count} families");
}
