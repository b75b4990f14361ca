//! Reloading the configuration (SIGHUP): which keys take a new value while the router runs, and
//! what a newly read configuration changes against the running one.

use std::collections::BTreeSet;

use super::{invalid, Config, ConfigError};

/// The keys a reload changes. Each is read when a request, a connection or a tunnel starts
/// (or, for `keepalive_ms`, when the next keepalive is armed), so a new value applies to what
/// starts after the reload while what is open keeps what it read. Every other key needs a
/// restart: it sized something at start-up (threads, listeners, rings, runtimes), it is part of
/// every tunnel's replay and rate limits (which open tunnels go on using), or, for
/// `tunnel_grace_ms`, it orders the cull queue. A key missing from this list (a new one, too)
/// needs a restart until someone checks where it is read.
pub const RELOADABLE_KEYS: &[&str] = &[
    "log",
    "keepalive_ms",
    "header_read_timeout_ms",
    "idle_timeout_ms",
    "drain_ms",
    "header_bytes_max",
    "header_count_max",
    "body_bytes_max",
    "datagram_data_bytes_max",
    "json_depth_max",
    "longpoll_ttl_ms_default",
    "longpoll_ttl_ms_max",
    "longpoll_batch_max",
    "tunnels_per_shard_max",
    "connections_per_shard_max",
    "tunnels_new_per_s",
    "auth",
    "tls",
    "websocket_frame_bytes_max",
    "websocket_message_bytes_max",
    "websocket_deflate",
    "conformance_echo",
    "stream_recycle_bytes",
    "formats",
];

/// What a reload does.
#[derive(Debug)]
pub struct Reloaded {
    /// The configuration to run with: the new one, but with the running values of the keys
    /// that need a restart. Validated.
    pub config: Config,
    /// The reloadable keys that change, each as `key: old -> new` (a custom format or a
    /// recycling entry as `formats.NAME added`, `changed` or `removed`).
    pub changed: Vec<String>,
    /// The keys whose new value needs a restart, as `key: running -> new`; they keep their
    /// running value.
    pub needs_restart: Vec<String>,
}

impl Config {
    /// Compares `new` (a configuration read again, already validated) with this running one.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the new values of the reloadable keys do not fit the
    /// running values of the others (say, a `datagram_data_bytes_max` above the running
    /// `replay_bytes_max`); nothing may then change.
    pub fn reload(&self, new: &Config) -> Result<Reloaded, ConfigError> {
        let running = as_table(self)?;
        let mut wanted = as_table(new)?;
        let keys: BTreeSet<String> = running.keys().chain(wanted.keys()).cloned().collect();
        let mut changed = Vec::new();
        let mut needs_restart = Vec::new();
        // The rest of `[auth]` reloads (its key files are read again), but not `auth.mode`:
        // tunnels opened without tokens have no user a token could be checked against.
        if let (Some(toml::Value::Table(old)), Some(toml::Value::Table(new))) =
            (running.get("auth"), wanted.get_mut("auth"))
        {
            if old.get("mode") != new.get("mode") {
                let (was, asked) = (shown(old.get("mode")), shown(new.get("mode")));
                needs_restart.push(format!("auth.mode: {was} -> {asked}"));
                if let Some(mode) = old.get("mode") {
                    new.insert("mode".to_owned(), mode.clone());
                }
            }
        }
        // The rest of `[tls]` reloads (the certificate is read again), but not `tls.listen`: the
        // listeners are bound at start-up.
        if let (Some(toml::Value::Table(old)), Some(toml::Value::Table(new))) =
            (running.get("tls"), wanted.get_mut("tls"))
        {
            if old.get("listen") != new.get("listen") {
                let (was, asked) = (shown(old.get("listen")), shown(new.get("listen")));
                needs_restart.push(format!("tls.listen: {was} -> {asked}"));
                if let Some(listen) = old.get("listen") {
                    new.insert("listen".to_owned(), listen.clone());
                }
            }
        }
        for key in keys {
            let (old, new) = (running.get(&key), wanted.get(&key));
            if old == new {
                continue;
            }
            if RELOADABLE_KEYS.contains(&key.as_str()) {
                describe(&key, old, new, &mut changed);
                continue;
            }
            needs_restart.push(format!("{key}: {} -> {}", shown(old), shown(new)));
            match old {
                Some(old) => wanted.insert(key, old.clone()),
                None => wanted.remove(&key),
            };
        }
        let mut config: Config = wanted
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.message().to_owned()))?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { key, message } if !needs_restart.is_empty() => invalid(
                &key,
                format!(
                    "{message}, with the running values of the keys that need a restart ({})",
                    needs_restart.join(", ")
                ),
            ),
            other => other,
        })?;
        Ok(Reloaded {
            config,
            changed,
            needs_restart,
        })
    }
}

fn as_table(config: &Config) -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(config)
        .map_err(|e| ConfigError::Parse(format!("internal: cannot serialize a config: {e}")))
}

fn shown(value: Option<&toml::Value>) -> String {
    value.map_or_else(|| "(none)".to_owned(), toml::Value::to_string)
}

/// Says how `key` changes; a table (the custom formats, the recycling sizes) entry by entry.
fn describe(
    key: &str,
    old: Option<&toml::Value>,
    new: Option<&toml::Value>,
    out: &mut Vec<String>,
) {
    let (Some(toml::Value::Table(old)), Some(toml::Value::Table(new))) = (old, new) else {
        out.push(format!("{key}: {} -> {}", shown(old), shown(new)));
        return;
    };
    let entries: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for entry in entries {
        match (old.get(entry), new.get(entry)) {
            (a, b) if a == b => {}
            (None, Some(toml::Value::Table(_))) => out.push(format!("{key}.{entry} added")),
            (Some(toml::Value::Table(_)), None) => out.push(format!("{key}.{entry} removed")),
            (Some(toml::Value::Table(_)), Some(toml::Value::Table(_))) => {
                out.push(format!("{key}.{entry} changed"));
            }
            (a, b) => out.push(format!("{key}.{entry}: {} -> {}", shown(a), shown(b))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_reloadable_key_is_a_key_of_the_config() {
        let keys = as_table(&Config::default()).unwrap();
        for key in RELOADABLE_KEYS {
            assert!(keys.contains_key(*key), "{key}");
        }
        for restart in ["listen", "shards", "shard_ring_slots", "replay_bytes_max"] {
            assert!(!RELOADABLE_KEYS.contains(&restart), "{restart}");
        }
    }

    #[test]
    fn nothing_changes_when_the_file_is_the_same() {
        let running = config("keepalive_ms = 2000\nshards = 2");
        let reloaded = running.reload(&running.clone()).unwrap();
        assert!(reloaded.changed.is_empty(), "{:?}", reloaded.changed);
        assert!(reloaded.needs_restart.is_empty());
    }

    #[test]
    fn reloadable_keys_change_and_the_others_keep_their_running_values() {
        let running = config(
            "listen = '127.0.0.1:8080'\nshards = 2\nkeepalive_ms = 2000\n\
             [formats.old]\ncontent_type = 'text/plain'\nenvelope = '{json}'\n\
             [formats.kept]\ncontent_type = 'text/plain'\nenvelope = '{json}'\n",
        );
        let new = config(
            "listen = '127.0.0.1:9090'\nshards = 3\nkeepalive_ms = 500\nlog = 'debug'\n\
             stream_recycle_bytes.sse = 65536\n\
             [formats.kept]\ncontent_type = 'text/plain'\nenvelope = '{json}'\n\
             [formats.new]\ncontent_type = 'text/plain'\nenvelope = '[{json}]'\n",
        );
        let reloaded = running.reload(&new).unwrap();
        assert_eq!(
            reloaded.changed,
            [
                "formats.new added",
                "formats.old removed",
                "keepalive_ms: 2000 -> 500",
                "log: \"info\" -> \"debug\"",
                "stream_recycle_bytes.sse: (none) -> 65536",
            ]
        );
        assert_eq!(
            reloaded.needs_restart,
            [
                "listen: \"127.0.0.1:8080\" -> \"127.0.0.1:9090\"",
                "shards: 2 -> 3"
            ]
        );
        let c = &reloaded.config;
        assert_eq!((c.listen.as_str(), c.shards), ("127.0.0.1:8080", 2));
        assert_eq!((c.keepalive_ms, c.log.as_str()), (500, "debug"));
        assert_eq!(
            c.formats.keys().collect::<Vec<_>>(),
            ["kept", "new"],
            "the formats are the new file's"
        );
        assert_eq!(c.recycle_bytes_for("sse"), 65536);

        let changed_format = config(
            "listen = '127.0.0.1:8080'\nshards = 2\nkeepalive_ms = 2000\n\
             [formats.kept]\ncontent_type = 'text/plain'\nenvelope = '<{json}>'\n",
        );
        let reloaded = running.reload(&changed_format).unwrap();
        assert_eq!(
            reloaded.changed,
            ["formats.kept changed", "formats.old removed"]
        );
    }

    #[test]
    fn new_values_that_do_not_fit_the_running_ones_are_refused() {
        // Valid alone, but its datagrams would not fit the running replay buffer.
        let running = config(
            "replay_bytes_max = 32768\nsend_queue_bytes_max = 32768\ndatagram_data_bytes_max = 16384",
        );
        let new = config(
            "replay_bytes_max = 65536\nsend_queue_bytes_max = 65536\ndatagram_data_bytes_max = 65536",
        );
        let err = running.reload(&new).unwrap_err().to_string();
        assert!(
            err.starts_with("config key `datagram_data_bytes_max`"),
            "{err}"
        );
        assert!(
            err.contains("need a restart (replay_bytes_max: 32768 -> 65536"),
            "{err}"
        );
    }
}
