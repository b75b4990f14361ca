//! Validation of a [`Config`]: every key's range, the relations between keys, and the custom
//! formats, each refusal naming its key.

use std::fmt::Display;

use super::*;

impl Config {
    /// Checks every range and cross-key rule, resolves `shards = 0`, parses the custom format
    /// templates and checks format names. Idempotent.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                format!(
                    "must be a socket address such as 127.0.0.1:8080 or [::1]:8080, got {:?}",
                    self.listen
                ),
            ));
        }
        if self.shards == 0 {
            // A host with more cores than SHARDS_MAX still gets a valid config rather than an error
            // for a value the operator never wrote.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            self.shards = cores.min(SHARDS_MAX);
        }
        check_range("shards", self.shards, 0, SHARDS_MAX, " (0 = one per core)")?;
        check_log(&self.log)?;
        check_range("keepalive_ms", self.keepalive_ms, 10, 3_600_000, "")?;
        check_range("tunnel_grace_ms", self.tunnel_grace_ms, 10, 86_400_000, "")?;
        check_range(
            "session_grace_ms",
            self.session_grace_ms,
            10,
            86_400_000,
            "",
        )?;
        for (name, program) in &self.programs {
            check_program(name, program)?;
        }
        check_range(
            "header_read_timeout_ms",
            self.header_read_timeout_ms,
            10,
            3_600_000,
            "",
        )?;
        check_range("idle_timeout_ms", self.idle_timeout_ms, 10, 86_400_000, "")?;
        check_range("drain_ms", self.drain_ms, 0, 3_600_000, "")?;
        check_range("header_bytes_max", self.header_bytes_max, 256, 64 * KIB, "")?;
        check_range("header_count_max", self.header_count_max, 8, 128, "")?;
        check_range("body_bytes_max", self.body_bytes_max, KIB, 16 * MIB, "")?;
        check_range(
            "replay_bytes_max",
            self.replay_bytes_max,
            KIB,
            1024 * MIB,
            "",
        )?;
        // A datagram must fit in the request that carries it and in the replay buffer that keeps it.
        let data_max = self.body_bytes_max.min(self.replay_bytes_max);
        check_range(
            "datagram_data_bytes_max",
            self.datagram_data_bytes_max,
            1,
            data_max,
            " (at most body_bytes_max and replay_bytes_max)",
        )?;
        check_range(
            "subscriptions_per_tunnel_max",
            self.subscriptions_per_tunnel_max,
            1,
            4096,
            "",
        )?;
        check_range(
            "replay_datagrams_max",
            self.replay_datagrams_max,
            1,
            1_000_000,
            "",
        )?;
        // Below one datagram every consumer would be cut off by a single maximal datagram; above the
        // replay buffer a re-attaching consumer could not be served what it missed.
        check_range(
            "send_queue_bytes_max",
            self.send_queue_bytes_max,
            self.datagram_data_bytes_max,
            self.replay_bytes_max,
            " (at least datagram_data_bytes_max, at most replay_bytes_max)",
        )?;
        check_range(
            "longpoll_ttl_ms_max",
            self.longpoll_ttl_ms_max,
            10,
            3_600_000,
            "",
        )?;
        check_range(
            "longpoll_ttl_ms_default",
            self.longpoll_ttl_ms_default,
            10,
            self.longpoll_ttl_ms_max,
            " (at most longpoll_ttl_ms_max)",
        )?;
        check_range(
            "tunnels_new_per_s",
            self.tunnels_new_per_s,
            0,
            1_000_000,
            " (0 = unlimited)",
        )?;
        check_range("longpoll_batch_max", self.longpoll_batch_max, 1, 65_536, "")?;
        check_range(
            "json_depth_max",
            self.json_depth_max,
            1,
            JSON_DEPTH_MAX_CEILING,
            " (the JSON parser recurses once per level on a shard's stack)",
        )?;
        check_range(
            "tunnels_per_shard_max",
            self.tunnels_per_shard_max,
            1,
            10_000_000,
            "",
        )?;
        check_range(
            "connections_per_shard_max",
            self.connections_per_shard_max,
            1,
            10_000_000,
            "",
        )?;
        check_range(
            "events_per_s",
            self.events_per_s,
            0,
            1_000_000,
            " (0 = unlimited)",
        )?;
        if self.events_per_s > 0 {
            // A burst below the rate could never spend a full second's tokens at once.
            check_range(
                "events_burst",
                self.events_burst,
                self.events_per_s,
                10_000_000,
                " (at least events_per_s)",
            )?;
        }
        check_range("shard_ring_slots", self.shard_ring_slots, 16, 1 << 20, "")?;
        check_power_of_two("shard_ring_slots", self.shard_ring_slots as u64)?;
        check_range("uring_entries", self.uring_entries, 64, 8192, "")?;
        check_power_of_two("uring_entries", u64::from(self.uring_entries))?;
        check_range(
            "websocket_message_bytes_max",
            self.websocket_message_bytes_max,
            125,
            64 * MIB,
            "",
        )?;
        check_range(
            "websocket_frame_bytes_max",
            self.websocket_frame_bytes_max,
            125,
            self.websocket_message_bytes_max,
            " (at most websocket_message_bytes_max)",
        )?;
        for (name, format) in &self.formats {
            validate_format(name, format)?;
        }
        for (name, &bytes) in &self.stream_recycle_bytes {
            let key = format!("stream_recycle_bytes.{name}");
            if !BUILTIN_STREAMING_FORMATS.contains(&name.as_str())
                && !self.formats.contains_key(name)
            {
                return Err(invalid(
                    &key,
                    format!(
                        "`{name}` is not a streaming format: expected one of {} or a [formats.NAME] table",
                        BUILTIN_STREAMING_FORMATS.join(", ")
                    ),
                ));
            }
            if bytes != 0 {
                check_range(
                    &key,
                    bytes,
                    STREAM_RECYCLE_BYTES_MIN,
                    TOML_INT_MAX,
                    " (or 0 = unlimited)",
                )?;
            }
        }
        self.auth.validate()?;
        self.tls.validate()?;
        Ok(())
    }
}

pub(super) fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message,
    }
}

fn check_range<T: PartialOrd + Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
    note: &str,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            key,
            format!("must be in {min}..={max}{note}, got {value}"),
        ));
    }
    Ok(())
}

/// The levels a `log` directive may name, most severe first.
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// `log` is a `tracing` filter: a level, or comma-separated `TARGET=LEVEL` directives with at
/// most one bare level (`info,router=debug`). The filter syntax would take a bare unknown word
/// such as `verbose` as a target name and then log nothing, so every level is checked here.
fn check_log(filter: &str) -> Result<(), ConfigError> {
    let expected = format!(
        "a level ({}) or directives such as \"info,router=debug\"",
        LOG_LEVELS.join(", ")
    );
    if filter.trim().is_empty() {
        return Err(invalid(
            "log",
            format!("must not be empty: expected {expected}"),
        ));
    }
    for directive in filter.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None => directive,
        };
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let mut what = if directive.is_empty() {
                "an empty directive".to_owned()
            } else {
                format!("`{level}` is not a log level")
            };
            if directive != filter.trim() {
                what.push_str(&format!(" in {filter:?}"));
            }
            return Err(invalid("log", format!("{what}: expected {expected}")));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map_err(|e| invalid("log", format!("{filter:?} is not a valid filter: {e}")))?;
    Ok(())
}

fn check_power_of_two(key: &str, value: u64) -> Result<(), ConfigError> {
    if !value.is_power_of_two() {
        return Err(invalid(key, format!("must be a power of two, got {value}")));
    }
    Ok(())
}

/// A table's own name (`[formats.NAME]`, `[programs.NAME]`): 1..=32 characters of a-z, 0-9,
/// '_' or '-', so it can stand in a URL or a path segment as it is.
fn check_name(key: &str, what: &str, name: &str) -> Result<(), ConfigError> {
    let name_ok = (1..=FORMAT_NAME_CHARS_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(invalid(
            key,
            format!("{what} name must be 1..=32 characters of a-z, 0-9, '_' or '-', got {name:?}"),
        ));
    }
    Ok(())
}

fn validate_format(name: &str, format: &CustomFormat) -> Result<(), ConfigError> {
    let key = format!("formats.{name}");
    check_name(&key, "format", name)?;
    if BUILTIN_FORMATS.contains(&name) {
        return Err(invalid(
            &key,
            format!(
                "`{name}` is a built-in format ({}); pick another name",
                BUILTIN_FORMATS.join(", ")
            ),
        ));
    }
    let content_type_ok = !format.content_type.is_empty()
        && format
            .content_type
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b));
    if !content_type_ok {
        return Err(invalid(
            &format!("{key}.content_type"),
            format!(
                "must be non-empty printable ASCII without CR/LF, got {:?}",
                format.content_type
            ),
        ));
    }
    let fields = [
        ("header", &format.header),
        ("envelope", &format.envelope),
        ("keepalive", &format.keepalive),
        ("footer", &format.footer),
    ];
    for (field, text) in fields {
        let field_key = format!("{key}.{field}");
        let template = Template::parse(text).map_err(|e| invalid(&field_key, e.to_string()))?;
        if field == "envelope" {
            if !template.uses(&Part::Json) && !template.uses(&Part::Data) {
                return Err(invalid(&field_key, "must contain {json} or {data}".into()));
            }
        } else if [Part::Json, Part::Data, Part::Id]
            .iter()
            .any(|part| template.uses(part))
        {
            // Only the envelope is rendered per datagram; elsewhere there is nothing to put there.
            return Err(invalid(
                &field_key,
                "may use only {cb} and {tunnel}; {json}, {data} and {id} belong in the envelope"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// A program's name (a path segment of `/programs/NAME/<session>`) and its push limits.
fn check_program(name: &str, program: &ProgramConfig) -> Result<(), ConfigError> {
    let key = format!("programs.{name}");
    check_name(&key, "program", name)?;
    if program.client_file.is_empty() {
        return Err(invalid(
            &format!("{key}.client_file"),
            "must name the client JavaScript file".into(),
        ));
    }
    let messages_key = format!("{key}.push_messages_max");
    check_range(
        &messages_key,
        program.push_messages_max,
        0,
        1_000_000,
        " (0 = no count)",
    )?;
    let bytes_key = format!("{key}.push_bytes_max");
    check_range(
        &bytes_key,
        program.push_bytes_max,
        0,
        TOML_INT_MAX,
        " (0 = no budget)",
    )?;
    let ms_key = format!("{key}.push_ms_max");
    check_range(
        &ms_key,
        program.push_ms_max,
        0,
        3_600_000,
        " (0 = no time limit)",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_error(filter: &str) -> String {
        match check_log(filter) {
            Err(ConfigError::Invalid { key, message }) => {
                assert_eq!(key, "log");
                message
            }
            other => panic!("{filter:?}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn log_levels_and_directives_are_accepted() {
        for filter in [
            "info",
            "off",
            "TRACE",
            "debug,router=trace",
            "warn,router::conn=debug",
            "router[attach]=debug",
        ] {
            check_log(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
        }
    }

    #[test]
    fn unknown_log_levels_are_refused_with_the_valid_ones() {
        let message = log_error("verbose");
        assert!(
            message.contains("`verbose` is not a log level"),
            "{message}"
        );
        for level in LOG_LEVELS {
            assert!(message.contains(level), "{message}");
        }
        assert!(log_error("info,router=loud").contains("`loud`"));
        assert!(log_error("router=").contains("``"));
        assert!(log_error("info,,debug").contains("empty directive"));
        assert!(log_error("  ").contains("must not be empty"));
        // The filter syntax itself has no room for spaces.
        assert!(log_error("info, router=debug").contains("not a valid filter"));
    }

    #[test]
    fn a_config_file_log_key_is_checked_too() {
        let err = Config::from_toml_str("log = 'verbose'")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config key `log`:"), "{err}");
        assert!(
            err.contains("error, warn, info, debug, trace, off"),
            "{err}"
        );
    }
}
