//! Router configuration: defaults, then an optional TOML file, then command-line overrides, validated once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::wire::template::{Part, Template};

mod auth;
mod display;
mod reload;
mod tls;
mod validate;
mod wording;
pub use auth::{AuthConfig, AuthMode, TUNNELS_PER_SUB_CEILING};
pub use reload::{Reloaded, RELOADABLE_KEYS};
pub use tls::TlsConfig;
use validate::invalid;
use wording::suggest;

/// `router --version`: the crate version and the git revision it was built from (router/build.rs;
/// "unknown" outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("ROUTER_GIT_REVISION"),
    ")"
);

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Built-in format names; a custom format may not shadow them.
pub const BUILTIN_FORMATS: [&str; 7] =
    ["sse", "nul", "ndjson", "iframe", "longpoll", "jsonp", "ws"];
/// Built-in formats that stream over one long response, the only ones `stream_recycle_bytes` applies to.
pub const BUILTIN_STREAMING_FORMATS: [&str; 4] = ["sse", "nul", "ndjson", "iframe"];

const SHARDS_MAX: usize = 256;
/// The parser takes about 600 bytes of stack per nesting level (a shard thread overflowed its
/// 2 MiB stack at about 3,600 levels), so 512 levels stay far inside it.
pub const JSON_DEPTH_MAX_CEILING: usize = 512;
const FORMAT_NAME_CHARS_MAX: usize = 32;
/// Recycling a stream more often than this would reconnect on nearly every datagram.
const STREAM_RECYCLE_BYTES_MIN: u64 = 1024;
/// TOML integers are i64, so anything above cannot be written back to a file.
const TOML_INT_MAX: u64 = i64::MAX as u64;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listening socket address, `IP:PORT`.
    pub listen: String,
    /// Shard (thread) count; 0 = number of available cores, resolved by `validate`.
    pub shards: usize,
    /// `tracing` filter directive.
    pub log: String,
    pub keepalive_ms: u64,
    /// How long a tunnel with no attached connection is kept for re-attach.
    pub tunnel_grace_ms: u64,
    /// How long a push/pull session whose push connection is not open is kept.
    pub session_grace_ms: u64,
    /// A request head must arrive within this.
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection with no request in flight is closed after this.
    pub idle_timeout_ms: u64,
    /// How long a draining router (SIGTERM, SIGINT) waits for its connections to end before it
    /// exits anyway.
    pub drain_ms: u64,
    pub header_bytes_max: usize,
    pub header_count_max: usize,
    pub body_bytes_max: usize,
    pub datagram_data_bytes_max: usize,
    /// Deepest nesting of arrays and objects in any client JSON (400, or WebSocket 1009, past it).
    pub json_depth_max: usize,
    pub subscriptions_per_tunnel_max: usize,
    pub replay_datagrams_max: usize,
    pub replay_bytes_max: usize,
    /// A consumer this far behind is disconnected.
    pub send_queue_bytes_max: usize,
    pub longpoll_ttl_ms_default: u64,
    pub longpoll_ttl_ms_max: u64,
    /// Datagrams per long-poll answer.
    pub longpoll_batch_max: usize,
    pub tunnels_per_shard_max: usize,
    pub connections_per_shard_max: usize,
    /// Client events (POST/GET /events, subscribe) per tunnel per second; 0 = unlimited.
    pub events_per_s: u32,
    /// Token-bucket burst for `events_per_s`.
    pub events_burst: u32,
    /// New tunnels per second the node admits (spread evenly over its shards; 503 with a
    /// `Retry-After` past it); 0 = unlimited. Re-attaches are never throttled.
    pub tunnels_new_per_s: u32,
    /// Cross-shard SPSC ring capacity, per ordered shard pair.
    pub shard_ring_slots: usize,
    pub uring_entries: u32,
    /// I/O driver of the shard runtimes: `auto` (io_uring, or epoll where io_uring cannot be
    /// set up), `uring` or `epoll`.
    pub io_driver: IoDriver,
    /// Largest WebSocket frame a client may send (close 1009 past it).
    pub websocket_frame_bytes_max: usize,
    /// Largest WebSocket message a client may send, after inflating (close 1009 past it).
    pub websocket_message_bytes_max: usize,
    /// Accept permessage-deflate when a client offers it.
    pub websocket_deflate: bool,
    /// Serve `GET /echo`, a WebSocket echo for conformance suites.
    pub conformance_echo: bool,
    /// Per streaming format name; formats not listed (or 0) are never recycled.
    pub stream_recycle_bytes: BTreeMap<String, u64>,
    /// `[formats.NAME]` tables.
    pub formats: BTreeMap<String, CustomFormat>,
    /// `[programs.NAME]` tables: the programs of push/pull sessions (`GET /<n>/NAME`).
    pub programs: BTreeMap<String, ProgramConfig>,
    /// `[auth]`: tokens, origins, publisher keys, admission.
    pub auth: AuthConfig,
    /// `[tls]`: a second listener on which the router terminates TLS.
    pub tls: TlsConfig,
}

/// Which I/O driver the shard runtimes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IoDriver {
    Auto,
    Uring,
    Epoll,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFormat {
    /// Required, non-empty, printable ASCII (so it cannot inject a header line).
    pub content_type: String,
    #[serde(default)]
    pub header: String,
    /// Required, must contain `{json}`.
    pub envelope: String,
    #[serde(default)]
    pub keepalive: String,
    #[serde(default)]
    pub footer: String,
    /// Escape '<' in `{json}` as \u003c (for script envelopes).
    #[serde(default)]
    pub html_escape: bool,
}

/// A push/pull session program, and when its push connection ends so that its client opens
/// the next one (whichever comes first; 0 = never for each).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// The client JavaScript answered when a session starts, `{session}` in it replaced by the
    /// session id. Read at start-up.
    pub client_file: String,
    #[serde(default = "push_messages_max_default")]
    pub push_messages_max: u32,
    #[serde(default)]
    pub push_bytes_max: u64,
    #[serde(default = "push_ms_max_default")]
    pub push_ms_max: u64,
}

/// One message per push connection, as the first prototype of the seed: the answer is then the
/// message alone.
fn push_messages_max_default() -> u32 {
    1
}

/// Below the minute after which proxies commonly drop a silent connection: a push connection
/// carries no keepalive, it ends instead.
fn push_ms_max_default() -> u64 {
    30_000
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".to_owned(),
            shards: 0,
            log: "info".to_owned(),
            keepalive_ms: 15_000,
            tunnel_grace_ms: 30_000,
            // The seed's "a minute or two" for a page that went away.
            session_grace_ms: 90_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            drain_ms: 10_000,
            header_bytes_max: 8192,
            header_count_max: 64,
            body_bytes_max: 64 * KIB,
            datagram_data_bytes_max: 32 * KIB,
            json_depth_max: 64,
            subscriptions_per_tunnel_max: 64,
            replay_datagrams_max: 1024,
            replay_bytes_max: MIB,
            send_queue_bytes_max: 256 * KIB,
            longpoll_ttl_ms_default: 25_000,
            longpoll_ttl_ms_max: 120_000,
            longpoll_batch_max: 256,
            tunnels_per_shard_max: 250_000,
            connections_per_shard_max: 250_000,
            events_per_s: 200,
            events_burst: 400,
            tunnels_new_per_s: 0,
            shard_ring_slots: 16_384,
            uring_entries: 1024,
            io_driver: IoDriver::Auto,
            websocket_frame_bytes_max: MIB,
            websocket_message_bytes_max: MIB,
            websocket_deflate: true,
            conformance_echo: false,
            // Browsers keep every byte of a hidden-iframe document, so that stream must be renewed.
            stream_recycle_bytes: BTreeMap::from([("iframe".to_owned(), MIB as u64)]),
            formats: BTreeMap::new(),
            programs: BTreeMap::new(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML parser's message (with line and column for files).
    #[error("{0}")]
    Parse(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("{0} (see --help)")]
    Usage(String),
    /// `--help` or `-h`: the caller prints `Config::usage()` and exits successfully.
    #[error("{}", Config::usage())]
    Help,
    /// `--version` or `-V`: the caller prints [`VERSION`] and exits successfully.
    #[error("router {VERSION}")]
    Version,
}

const USAGE: &str = "\
usage: router [--config FILE] [--KEY VALUE]... [--set DOTTED.KEY=VALUE]...

From a source checkout, `cargo run --release -p router -- ARGS` builds and runs it, and
`target/release/router ARGS` runs the built binary.

Settings are applied in order: built-in defaults, then the TOML file given with --config,
then the flags below (the last flag for a key wins).

  --config FILE            load settings from a TOML file
  --listen ADDR            socket address to listen on (default 127.0.0.1:8080)
  --shards N               shard threads; 0 = one per available core (default 0, max 256)
  --keepalive-ms MS        keepalive interval on idle streams (default 15000)
  --tunnel-grace-ms MS     how long a detached tunnel waits for re-attach (default 30000)
  --set KEY=VALUE          set any key, including nested ones, e.g.
                             --set stream_recycle_bytes.sse=65536
                             --set 'formats.myfmt.envelope=\"{json}\\n\"'
  --log FILTER             what to log: a level (error, warn, info, debug, trace, off) or
                           a list such as info,router=debug (default info)
  -h, --help               print this help
  -V, --version            print the version and the git revision it was built from

Every top-level key of the config file is also a flag: --some-key VALUE or --some-key=VALUE
sets `some_key` (see docs/limits.md for the list). VALUE is read as a TOML value when it is
one (number, bool, array, inline table, quoted string) and as a plain string otherwise; quote
it as a TOML string (\"...\") to get escapes such as \\n.
";

/// One command-line override: where it goes, its value, and the flag that set it (for errors).
struct Override {
    path: Vec<String>,
    value: toml::Value,
    origin: String,
}

impl Config {
    /// Parses command-line arguments (without argv[0]): `--config FILE` loads the TOML file first, then
    /// every other flag overrides a key: `--some-key VALUE` or `--some-key=VALUE` sets top-level key `some_key`
    /// (dashes become underscores), and `--set dotted.key=VALUE` sets any key, including nested ones such as
    /// `--set stream_recycle_bytes.sse=65536`. VALUE is parsed as a TOML value when it parses as one, else
    /// taken as a plain string; it must then match the type the key expects.
    /// `--help`/`-h` -> `Err(ConfigError::Help)`. Then `validate()`.
    ///
    /// Tables merge key by key over the defaults, so setting `stream_recycle_bytes.sse` keeps the
    /// default `iframe` entry (set it to 0 to turn iframe recycling off).
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Config, ConfigError> {
        let top_level_keys = defaults_table()?;
        let mut config_path: Option<String> = None;
        let mut overrides = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Err(ConfigError::Help);
            }
            if arg == "-V" || arg == "--version" {
                return Err(ConfigError::Version);
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(ConfigError::Usage(format!(
                    "unexpected argument `{arg}`: options start with --"
                )));
            };
            let (name, inline_value) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            if name.is_empty() {
                return Err(ConfigError::Usage(format!("unexpected argument `{arg}`")));
            }
            if name == "help" {
                return Err(ConfigError::Help);
            }
            let value = match inline_value {
                Some(value) => value,
                // A following `--flag` means this one's value was forgotten; taking it as the
                // value would silently swallow the next option.
                None => match args.next() {
                    Some(value) if !value.starts_with("--") => value,
                    _ => return Err(ConfigError::Usage(format!("--{name} needs a value"))),
                },
            };
            match name {
                "config" => {
                    if config_path.is_some() {
                        return Err(ConfigError::Usage("--config given more than once".into()));
                    }
                    config_path = Some(value);
                }
                "set" => {
                    let Some((key, raw)) = value.split_once('=') else {
                        return Err(ConfigError::Usage(format!(
                            "--set expects DOTTED.KEY=VALUE, got `{value}`"
                        )));
                    };
                    let path = key_path(key)?;
                    overrides.push(Override {
                        path,
                        value: parse_value(raw),
                        origin: format!("--set {key}"),
                    });
                }
                _ => {
                    if name.contains('.') {
                        return Err(ConfigError::Usage(format!(
                            "--{name}: use --set {name}=VALUE for nested keys"
                        )));
                    }
                    let key = name.replace('-', "_");
                    if !top_level_keys.contains_key(&key) {
                        let hint = match suggest(&key, top_level_keys.keys().map(String::as_str)) {
                            Some(near) => format!("did you mean --{}?", near.replace('_', "-")),
                            None => "every top-level key is a flag (see deploy/router.toml)".into(),
                        };
                        return Err(ConfigError::Invalid {
                            key,
                            message: format!("unknown key (from --{name}); {hint}"),
                        });
                    }
                    overrides.push(Override {
                        path: vec![key],
                        value: parse_value(&value),
                        origin: format!("--{name}"),
                    });
                }
            }
        }
        let file = match config_path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
                    path: PathBuf::from(&path),
                    source,
                })?;
                Some(parse_file(&text).map_err(|e| ConfigError::Parse(format!("{path}: {e}")))?)
            }
            None => None,
        };
        load(file, &overrides)
    }

    /// Parses a TOML document over the defaults and validates it.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let file = parse_file(s).map_err(ConfigError::Parse)?;
        load(Some(file), &[])
    }

    pub fn usage() -> &'static str {
        USAGE
    }

    /// The listening address. Call after `validate`, which guarantees `listen` parses; the
    /// fallback to the default address only exists so this can never panic.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// Bytes after which a stream of `format` is recycled; 0 = unlimited.
    pub fn recycle_bytes_for(&self, format: &str) -> u64 {
        self.stream_recycle_bytes.get(format).copied().unwrap_or(0)
    }
}

/// The deepest key the config has, `formats.NAME.field`. Merging an override recurses once per
/// part, so a longer key is refused before it could exhaust the stack.
const KEY_PARTS_MAX: usize = 3;

/// Splits `a.b.c`; quoting is not supported because no key contains a dot.
fn key_path(key: &str) -> Result<Vec<String>, ConfigError> {
    if key.split('.').nth(KEY_PARTS_MAX).is_some() {
        let shown: String = key.chars().take(64).collect();
        return Err(ConfigError::Usage(format!(
            "--set: no key has more than {KEY_PARTS_MAX} parts, got `{shown}...`"
        )));
    }
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Usage(format!("--set: malformed key `{key}`")));
    }
    Ok(path)
}

/// A TOML value when `raw` is one, else the plain string. A date-time is kept as a string:
/// no key takes one, and the string reading gives clearer type errors.
fn parse_value(raw: &str) -> toml::Value {
    match toml::Value::deserialize(toml::de::ValueDeserializer::new(raw)) {
        Ok(toml::Value::Datetime(_)) | Err(_) => toml::Value::String(raw.to_owned()),
        Ok(value) => value,
    }
}

/// Parses a config file into a table. Also deserializes it alone, because only then does the
/// toml crate report type errors and unknown keys with line and column.
fn parse_file(text: &str) -> Result<toml::Table, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    toml::from_str::<Config>(text).map_err(|e| wording::plain(e.to_string().trim_end()))?;
    Ok(table)
}

fn defaults_table() -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::Parse(format!("internal: cannot serialize defaults: {e}")))
}

/// Layers defaults, file and overrides into one table, then deserializes once so that
/// `deny_unknown_fields` sees everything.
fn load(file: Option<toml::Table>, overrides: &[Override]) -> Result<Config, ConfigError> {
    let mut merged = defaults_table()?;
    if let Some(file) = file {
        merge(&mut merged, file);
    }
    for o in overrides {
        set_path(&mut merged, &o.path, o.value.clone()).map_err(|message| {
            invalid(&o.path.join("."), format!("{message} (from {})", o.origin))
        })?;
    }
    let mut config: Config = merged
        .try_into()
        .map_err(|e: toml::de::Error| deserialize_error(&e, overrides))?;
    config.validate()?;
    Ok(config)
}

/// Deep merge: tables combine key by key, anything else replaces.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(format!(
                    "`{}` is not a table",
                    path.get(..=depth).unwrap_or(path).join(".")
                ))
            }
        };
    }
    merge(current, toml::Table::from_iter([(last.clone(), value)]));
    Ok(())
}

/// Turns a deserialization error into one naming the full key (and the flag, if a flag set it).
fn deserialize_error(e: &toml::de::Error, overrides: &[Override]) -> ConfigError {
    let message = e.message().trim_end();
    // The toml crate appends "in `a.b`" to its message for nested errors but offers no accessor.
    let full = e.to_string();
    let parent = full
        .get(e.message().len()..)
        .map(str::trim)
        .and_then(|rest| rest.strip_prefix("in `"))
        .and_then(|rest| rest.strip_suffix('`'))
        .unwrap_or("");
    let field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let key = match (parent, field) {
        ("", Some(field)) => field.to_owned(),
        (parent, Some(field)) => format!("{parent}.{field}"),
        (parent, None) => parent.to_owned(),
    };
    if key.is_empty() {
        return ConfigError::Parse(wording::plain(message));
    }
    // Blame the last flag that set this key, a table above it, a key below it, or (for a
    // missing field) a sibling that created the table.
    let origin = overrides.iter().rev().find(|o| {
        let set = o.path.join(".");
        key == set
            || key.starts_with(&format!("{set}."))
            || set.starts_with(&format!("{key}."))
            || (!parent.is_empty() && set.starts_with(&format!("{parent}.")))
    });
    let message = wording::plain(message);
    let message = match origin {
        Some(o) => format!("{message} (from {})", o.origin),
        None => message,
    };
    ConfigError::Invalid { key, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn invalid_key(result: Result<Config, ConfigError>) -> (String, String) {
        match result {
            Err(ConfigError::Invalid { key, message }) => (key, message),
            other => panic!("expected ConfigError::Invalid, got {other:?}"),
        }
    }

    /// A config file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "router-config-test-{}-{tag}.toml",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
        fn arg(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const EVERY_KEY: &str = r#"
listen = "[::1]:9000"
shards = 3
log = "debug,router=trace"
keepalive_ms = 20000
tunnel_grace_ms = 40000
session_grace_ms = 60000
header_read_timeout_ms = 5000
idle_timeout_ms = 70000
drain_ms = 5000
header_bytes_max = 4096
header_count_max = 32
body_bytes_max = 131072
datagram_data_bytes_max = 16384
json_depth_max = 32
subscriptions_per_tunnel_max = 128
replay_datagrams_max = 2048
replay_bytes_max = 2097152
send_queue_bytes_max = 524288
longpoll_ttl_ms_default = 20000
longpoll_ttl_ms_max = 60000
longpoll_batch_max = 128
tunnels_per_shard_max = 100000
connections_per_shard_max = 200000
events_per_s = 50
events_burst = 100
tunnels_new_per_s = 500
shard_ring_slots = 4096
uring_entries = 2048
io_driver = "epoll"
websocket_frame_bytes_max = 65536
websocket_message_bytes_max = 131072
websocket_deflate = false
conformance_echo = true

[stream_recycle_bytes]
iframe = 2097152
sse = 0
my-fmt = 65536

[formats.my-fmt]
content_type = "text/html; charset=utf-8"
header = "<html><body>{{}}<!-- {tunnel} -->\n"
envelope = "<script>{cb}({json},\"{id}\")</script>\n"
keepalive = "<!-- -->\n"
footer = "</body></html>"
html_escape = true

[programs.prog]
client_file = "/srv/prog/client.js"
push_messages_max = 10
push_bytes_max = 65536
push_ms_max = 20000

[auth]
mode = "jwt"
hs256_secret_file = "/etc/router/hs256.secret"
public_key_files = ["/etc/router/es256.pub.pem"]
jwks_file = "/etc/router/jwks.json"
audience = "router"
issuer = "https://id.example"
leeway_s = 10
tunnels_per_sub_max = 8
origins_allowed = ["https://app.example"]
publish_keys_file = "/etc/router/publish.keys"

[tls]
listen = "0.0.0.0:8443"
cert_file = "/etc/router/tls/cert.pem"
key_file = "/etc/router/tls/key.pem"
"#;

    #[test]
    fn defaults_validate() {
        let mut config = Config::default();
        config.validate().unwrap();
        assert!((1..=SHARDS_MAX).contains(&config.shards));
        assert_eq!(config.listen_addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.recycle_bytes_for("iframe"), 1_048_576);
        assert_eq!(config.recycle_bytes_for("sse"), 0);
        let loaded = Config::from_toml_str("").unwrap();
        assert_eq!(
            toml::to_string(&loaded).unwrap(),
            toml::to_string(&config).unwrap()
        );
        let loaded = Config::from_args(Vec::new()).unwrap();
        assert_eq!(
            toml::to_string(&loaded).unwrap(),
            toml::to_string(&config).unwrap()
        );
    }

    #[test]
    fn every_key_round_trips() {
        // The sample must name every key, so a new key cannot be added without a test value.
        let sample: toml::Table = toml::from_str(EVERY_KEY).unwrap();
        let defaults = defaults_table().unwrap();
        assert_eq!(
            sample.keys().collect::<Vec<_>>(),
            defaults.keys().collect::<Vec<_>>(),
            "EVERY_KEY must list every Config key"
        );
        let format_keys: Vec<&String> = sample["formats"]["my-fmt"]
            .as_table()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(format_keys.len(), 6);
        assert_eq!(sample["programs"]["prog"].as_table().unwrap().len(), 4);

        let config = Config::from_toml_str(EVERY_KEY).unwrap();
        assert_eq!(config.listen_addr(), "[::1]:9000".parse().unwrap());
        assert_eq!(config.shards, 3);
        assert_eq!(config.uring_entries, 2048);
        assert_eq!(config.auth.mode, AuthMode::Jwt);
        assert_eq!(config.tunnels_new_per_s, 500);
        assert_eq!(config.auth.origins_allowed, ["https://app.example"]);
        assert_eq!(config.drain_ms, 5000);
        assert_eq!(config.io_driver, IoDriver::Epoll);
        assert_eq!(config.websocket_frame_bytes_max, 65536);
        assert_eq!(config.websocket_message_bytes_max, 131072);
        assert!(!config.websocket_deflate);
        assert!(config.conformance_echo);
        assert_eq!(config.recycle_bytes_for("my-fmt"), 65536);
        assert_eq!(config.recycle_bytes_for("sse"), 0);
        assert!(config.formats["my-fmt"].html_escape);
        assert_eq!(config.formats["my-fmt"].keepalive, "<!-- -->\n");
        assert_eq!(config.session_grace_ms, 60000);
        let prog = &config.programs["prog"];
        assert_eq!(prog.client_file, "/srv/prog/client.js");
        assert_eq!(
            (
                prog.push_messages_max,
                prog.push_bytes_max,
                prog.push_ms_max
            ),
            (10, 65536, 20000)
        );

        let written = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<toml::Table>(&written).unwrap(), sample);
        let again = Config::from_toml_str(&written).unwrap();
        assert_eq!(toml::to_string(&again).unwrap(), written);
    }

    #[test]
    fn unknown_keys_are_refused_and_named() {
        let err = Config::from_toml_str("keepalive = 5").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{err:?}");
        assert!(err.to_string().contains("`keepalive`"), "{err}");
        // A suggestion, not the list of every key on one line.
        let text = err.to_string();
        assert!(text.contains("did you mean `keepalive_ms`?"), "{text}");
        assert!(!text.contains("tunnel_grace_ms"), "{text}");
        let err = Config::from_toml_str("no_such_thing = 1")
            .unwrap_err()
            .to_string();
        assert!(err.lines().all(|l| l.len() < 120), "{err}");

        let err = Config::from_toml_str(
            "[formats.x]\ncontent_type='a'\nenvelope='{json}'\nenvelop='{json}'",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`envelop`"), "{err}");

        let (key, message) = invalid_key(Config::from_args(args(&["--keepalive", "5"])));
        assert_eq!(key, "keepalive");
        assert!(message.contains("--keepalive"), "{message}");
        assert!(
            message.contains("did you mean --keepalive-ms?"),
            "{message}"
        );

        let (key, message) = invalid_key(Config::from_args(args(&["--set", "nope.deeper=1"])));
        assert_eq!(key, "nope");
        assert!(message.contains("--set nope.deeper"), "{message}");

        let (key, message) = invalid_key(Config::from_args(args(&[
            "--set",
            "formats.x.envelop={json}",
        ])));
        assert_eq!(key, "formats.x.envelop");
        assert!(message.contains("did you mean `envelope`?"), "{message}");

        let refused = Config::from_args(args(&["--set", "a.b.c.d=1"]));
        assert!(
            matches!(&refused, Err(ConfigError::Usage(m)) if m.contains("more than 3 parts")),
            "{refused:?}"
        );
    }

    #[test]
    fn range_violations_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("listen = 'localhost'", "listen"),
            ("listen = '1.2.3.4'", "listen"),
            ("shards = 257", "shards"),
            ("log = ''", "log"),
            ("keepalive_ms = 9", "keepalive_ms"),
            ("keepalive_ms = 3600001", "keepalive_ms"),
            ("tunnel_grace_ms = 9", "tunnel_grace_ms"),
            ("tunnel_grace_ms = 86400001", "tunnel_grace_ms"),
            ("header_read_timeout_ms = 0", "header_read_timeout_ms"),
            ("idle_timeout_ms = 0", "idle_timeout_ms"),
            ("drain_ms = 3600001", "drain_ms"),
            ("header_bytes_max = 255", "header_bytes_max"),
            ("header_bytes_max = 65537", "header_bytes_max"),
            ("header_count_max = 7", "header_count_max"),
            ("header_count_max = 129", "header_count_max"),
            ("body_bytes_max = 1023", "body_bytes_max"),
            ("body_bytes_max = 16777217", "body_bytes_max"),
            ("datagram_data_bytes_max = 0", "datagram_data_bytes_max"),
            ("datagram_data_bytes_max = 65537", "datagram_data_bytes_max"),
            ("json_depth_max = 0", "json_depth_max"),
            ("json_depth_max = 513", "json_depth_max"),
            (
                "replay_bytes_max = 16384\nsend_queue_bytes_max = 16384",
                "datagram_data_bytes_max",
            ),
            (
                "subscriptions_per_tunnel_max = 0",
                "subscriptions_per_tunnel_max",
            ),
            (
                "subscriptions_per_tunnel_max = 4097",
                "subscriptions_per_tunnel_max",
            ),
            ("replay_datagrams_max = 0", "replay_datagrams_max"),
            ("replay_datagrams_max = 1000001", "replay_datagrams_max"),
            ("replay_bytes_max = 1023", "replay_bytes_max"),
            ("send_queue_bytes_max = 1048577", "send_queue_bytes_max"),
            ("send_queue_bytes_max = 32767", "send_queue_bytes_max"),
            (
                "longpoll_ttl_ms_default = 120001",
                "longpoll_ttl_ms_default",
            ),
            ("longpoll_ttl_ms_default = 0", "longpoll_ttl_ms_default"),
            ("longpoll_ttl_ms_max = 3600001", "longpoll_ttl_ms_max"),
            ("longpoll_batch_max = 0", "longpoll_batch_max"),
            ("tunnels_per_shard_max = 0", "tunnels_per_shard_max"),
            ("connections_per_shard_max = 0", "connections_per_shard_max"),
            ("events_per_s = 1000001", "events_per_s"),
            ("events_burst = 199", "events_burst"),
            ("shard_ring_slots = 8", "shard_ring_slots"),
            ("shard_ring_slots = 2097152", "shard_ring_slots"),
            ("shard_ring_slots = 1000", "shard_ring_slots"),
            ("uring_entries = 32", "uring_entries"),
            ("uring_entries = 16384", "uring_entries"),
            ("uring_entries = 1000", "uring_entries"),
            ("stream_recycle_bytes.ws = 65536", "stream_recycle_bytes.ws"),
            (
                "stream_recycle_bytes.unknown = 65536",
                "stream_recycle_bytes.unknown",
            ),
            ("stream_recycle_bytes.sse = 10", "stream_recycle_bytes.sse"),
        ];
        for (text, expected_key) in cases {
            let (key, message) = invalid_key(Config::from_toml_str(text));
            assert_eq!(&key, expected_key, "{text}: {message}");
            let err = Config::from_toml_str(text).unwrap_err().to_string();
            assert!(err.contains(expected_key), "{text}: {err}");
            assert!(
                message.contains("..=")
                    || message.contains("power of two")
                    || message.contains("socket address")
                    || message.contains("empty")
                    || message.contains("streaming format"),
                "{text}: message should state what is allowed: {message}"
            );
        }
    }

    #[test]
    fn boundary_values_are_accepted() {
        for text in [
            "keepalive_ms = 10",
            "keepalive_ms = 3600000",
            "header_bytes_max = 65536",
            "body_bytes_max = 16777216\nreplay_bytes_max = 16777216\ndatagram_data_bytes_max = 16777216\nsend_queue_bytes_max = 16777216",
            "events_per_s = 0\nevents_burst = 0",
            "shard_ring_slots = 16",
            "shard_ring_slots = 1048576",
            "uring_entries = 64",
            "uring_entries = 8192",
            "stream_recycle_bytes.iframe = 0",
            "shards = 256",
        ] {
            Config::from_toml_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn shards_zero_resolves_to_cores() {
        let config = Config::from_toml_str("shards = 0").unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config.shards, cores.min(SHARDS_MAX));
    }

    #[test]
    fn cli_overrides_beat_the_file() {
        let file = TempFile::new(
            "override",
            "keepalive_ms = 20000\nshards = 2\nlog = 'warn'\n",
        );
        let config = Config::from_args(args(&[
            "--keepalive-ms",
            "30000",
            "--config",
            &file.arg(),
            "--log=debug",
            "--set",
            "tunnel_grace_ms=45000",
        ]))
        .unwrap();
        assert_eq!(config.keepalive_ms, 30000);
        assert_eq!(config.log, "debug");
        assert_eq!(config.tunnel_grace_ms, 45000);
        assert_eq!(config.shards, 2, "file value kept when not overridden");
        let config = Config::from_args(args(&["--shards=1", "--shards", "4"])).unwrap();
        assert_eq!(config.shards, 4, "last flag wins");
        let config = Config::from_args(args(&["--listen", "0.0.0.0:80"])).unwrap();
        assert_eq!(config.listen_addr(), "0.0.0.0:80".parse().unwrap());
    }

    #[test]
    fn set_reaches_nested_keys() {
        let file = TempFile::new(
            "nested",
            "[formats.myfmt]\ncontent_type = 'text/plain'\nenvelope = '{json}'\n",
        );
        let config = Config::from_args(args(&[
            "--config",
            &file.arg(),
            "--set",
            r#"formats.myfmt.envelope="{json}\n""#,
            "--set=formats.myfmt.html_escape=true",
            "--set",
            "stream_recycle_bytes.sse=65536",
            "--set",
            "stream_recycle_bytes.myfmt=4096",
            "--set",
            "formats.other.content_type=application/x-other",
            "--set",
            "formats.other.envelope=[{json}]",
        ]))
        .unwrap();
        let myfmt = &config.formats["myfmt"];
        assert_eq!(myfmt.envelope, "{json}\n");
        assert_eq!(myfmt.content_type, "text/plain");
        assert!(myfmt.html_escape);
        assert_eq!(config.formats["other"].envelope, "[{json}]");
        assert_eq!(config.recycle_bytes_for("sse"), 65536);
        assert_eq!(config.recycle_bytes_for("myfmt"), 4096);
        assert_eq!(
            config.recycle_bytes_for("iframe"),
            1_048_576,
            "default entry kept"
        );

        // Unquoted, the value is a plain string: no escape processing.
        let config = Config::from_args(args(&[
            "--set",
            "formats.raw.content_type=text/plain",
            "--set",
            r"formats.raw.envelope={json}\n",
        ]))
        .unwrap();
        assert_eq!(config.formats["raw"].envelope, "{json}\\n");

        let config =
            Config::from_args(args(&["--stream-recycle-bytes", "{ sse = 2048 }"])).unwrap();
        assert_eq!(config.recycle_bytes_for("sse"), 2048);
        assert_eq!(config.recycle_bytes_for("iframe"), 1_048_576);
    }

    #[test]
    fn wrong_types_are_refused() {
        let (key, message) = invalid_key(Config::from_args(args(&["--keepalive-ms", "soon"])));
        assert_eq!(key, "keepalive_ms");
        assert!(message.contains("--keepalive-ms"), "{message}");
        // In plain words, not Rust's type names.
        assert!(message.contains("expected a whole number"), "{message}");
        let (_, message) = invalid_key(Config::from_args(args(&["--body-bytes-max", "-1"])));
        assert!(!message.contains("usize"), "{message}");
        assert!(message.contains("a whole number, 0 or more"), "{message}");
        let err = Config::from_toml_str("shards = 'many'")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("usize") && err.contains("a whole number"),
            "{err}"
        );

        let (key, _) = invalid_key(Config::from_args(args(&["--log", "true"])));
        assert_eq!(key, "log");
        let (key, _) = invalid_key(Config::from_args(args(&["--shards", "-1"])));
        assert_eq!(key, "shards");
        let (key, _) = invalid_key(Config::from_args(args(&[
            "--set",
            "formats.x.html_escape=yes",
        ])));
        assert_eq!(key, "formats.x.html_escape");
        let (key, message) = invalid_key(Config::from_args(args(&[
            "--set",
            "formats.x.envelope='{json}'",
        ])));
        assert_eq!(key, "formats.x.content_type");
        assert!(message.contains("missing"), "{message}");
        let (key, message) = invalid_key(Config::from_args(args(&["--set", "keepalive_ms.x=1"])));
        assert_eq!(key, "keepalive_ms.x");
        assert!(message.contains("not a table"), "{message}");
        let (key, _) = invalid_key(Config::from_args(args(&["--formats", "3"])));
        assert_eq!(key, "formats");

        let err = Config::from_toml_str("keepalive_ms = 'soon'").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{err:?}");
        assert!(err.to_string().contains("keepalive_ms"), "{err}");
        let err = Config::from_toml_str("keepalive_ms = ").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{err:?}");
    }

    #[test]
    fn bad_formats_are_refused() {
        let format = |name: &str, body: &str| format!("[formats.{name}]\n{body}\n");
        let ok_body = "content_type = 'text/plain'\nenvelope = '{json}'";
        Config::from_toml_str(&format("a_b-9", ok_body)).unwrap();
        let raw_body = "content_type = 'application/octet-stream'\nenvelope = \"{data}\\u0000\"";
        Config::from_toml_str(&format("raw", raw_body)).unwrap();
        let cases = [
            (
                format("x", "content_type='t'\nenvelope='{date}'"),
                "formats.x.envelope",
                "{date}",
            ),
            (
                format("x", "content_type='t'\nenvelope='{json}'\nfooter='{data}'"),
                "formats.x.footer",
                "envelope",
            ),
            (
                format("x", "content_type='t'\nenvelope='{json'"),
                "formats.x.envelope",
                "unescaped",
            ),
            (
                format("x", "content_type='t'\nenvelope='{id}'"),
                "formats.x.envelope",
                "{json}",
            ),
            (
                format("x", "content_type='t'\nenvelope='{json}'\nheader='{json}'"),
                "formats.x.header",
                "envelope",
            ),
            (
                format("x", "content_type='t'\nenvelope='{json}'\nfooter='}'"),
                "formats.x.footer",
                "unescaped",
            ),
            (
                format("x", "content_type='t'\nenvelope='{json}'\nkeepalive='{id}'"),
                "formats.x.keepalive",
                "envelope",
            ),
            (
                format("x", "content_type=''\nenvelope='{json}'"),
                "formats.x.content_type",
                "printable",
            ),
            (
                format("x", "content_type=\"a\\r\\nX: y\"\nenvelope='{json}'"),
                "formats.x.content_type",
                "printable",
            ),
            (format("sse", ok_body), "formats.sse", "built-in"),
            (format("ws", ok_body), "formats.ws", "built-in"),
            (format("Upper", ok_body), "formats.Upper", "a-z"),
            (format("'a.b'", ok_body), "formats.a.b", "a-z"),
            (
                format(&"a".repeat(33), ok_body),
                &format!("formats.{}", "a".repeat(33)),
                "1..=32",
            ),
        ];
        for (text, expected_key, expected_text) in &cases {
            let (key, message) = invalid_key(Config::from_toml_str(text));
            assert_eq!(&key, expected_key, "{text}: {message}");
            assert!(message.contains(expected_text), "{text}: {message}");
        }
        let err = Config::from_toml_str(&format("x", "envelope='{json}'")).unwrap_err();
        assert!(err.to_string().contains("content_type"), "{err}");
    }

    #[test]
    fn command_line_usage_errors() {
        assert!(matches!(
            Config::from_args(args(&["-h"])),
            Err(ConfigError::Help)
        ));
        assert!(matches!(
            Config::from_args(args(&["--shards", "2", "--help"])),
            Err(ConfigError::Help)
        ));
        for flag in ["--version", "-V"] {
            let result = Config::from_args(args(&["--shards", "2", flag]));
            assert!(matches!(result, Err(ConfigError::Version)), "{result:?}");
        }
        let version = ConfigError::Version.to_string();
        assert!(version.starts_with(&format!("router {} (git ", env!("CARGO_PKG_VERSION"))));
        for bad in [
            &["positional"][..],
            &["--listen"],
            &["--listen", "--shards", "2"],
            &["--set", "no_equals"],
            &["--set", "a..b=1"],
            &["--stream-recycle-bytes.sse", "1"],
            &["--config", "a", "--config", "b"],
            &["--"],
        ] {
            let result = Config::from_args(args(bad));
            assert!(
                matches!(result, Err(ConfigError::Usage(_))),
                "{bad:?}: {result:?}"
            );
        }
        let missing = std::env::temp_dir().join("router-config-test-does-not-exist.toml");
        let result = Config::from_args(args(&["--config", &missing.display().to_string()]));
        assert!(matches!(result, Err(ConfigError::Io { .. })), "{result:?}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let file = TempFile::new("bad", "keepalive_ms = 'x'\n");
        let err = Config::from_args(args(&["--config", &file.arg()])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&file.arg()) && text.contains("keepalive_ms"),
            "{text}"
        );
    }

    #[test]
    fn usage_lists_the_common_flags() {
        let usage = Config::usage();
        for flag in [
            "--config",
            "--listen",
            "--shards",
            "--keepalive-ms",
            "--tunnel-grace-ms",
            "--set",
            "--help",
        ] {
            assert!(usage.contains(flag), "{flag}");
        }
        assert!(usage.contains("Every top-level key"));
        assert_eq!(ConfigError::Help.to_string(), usage);
    }
}
