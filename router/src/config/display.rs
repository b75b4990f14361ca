//! The effective configuration in words, for the start-up log: a short summary that names what
//! differs from the defaults, and one `key = value` line per key.

use super::*;

impl Config {
    /// Every key as a `key = value` line in TOML syntax, nested keys dotted
    /// (`formats.NAME.envelope = "..."`), sorted by key. Each is one line: a string's newline is
    /// written `\n`.
    pub fn key_lines(&self) -> Vec<String> {
        match toml::Table::try_from(self) {
            Ok(table) => flatten(&table),
            Err(e) => vec![format!("(cannot write the configuration out: {e})")],
        }
    }

    /// One line: the address, shards, I/O driver and log filter, then every other key whose
    /// value differs from the built-in default (or that all of them are at their defaults).
    pub fn summary(&self) -> String {
        let head = format!(
            "listen {}, {} shard{}, io_driver {}, log {:?}",
            self.listen,
            self.shards,
            if self.shards == 1 { "" } else { "s" },
            self.io_driver.name(),
            self.log
        );
        let defaults = Config::default().key_lines();
        let changed: Vec<String> = self
            .key_lines()
            .into_iter()
            .filter(|line| {
                let key = line.split(" = ").next().unwrap_or_default();
                !["listen", "shards", "io_driver", "log"].contains(&key) && !defaults.contains(line)
            })
            .collect();
        if changed.is_empty() {
            format!("{head}; every other key at its default")
        } else {
            format!("{head}; changed from the defaults: {}", changed.join(", "))
        }
    }
}

impl IoDriver {
    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::Uring => "uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

/// `key = value` lines of a table, sub-tables flattened into dotted keys. An empty table is one
/// line (`formats = {}`), so that every key is seen.
fn flatten(table: &toml::Table) -> Vec<String> {
    let mut lines = Vec::new();
    flatten_into("", table, &mut lines);
    lines
}

fn flatten_into(prefix: &str, table: &toml::Table, lines: &mut Vec<String>) {
    for (key, value) in table {
        let key = dotted(prefix, key);
        match value {
            toml::Value::Table(inner) if !inner.is_empty() => flatten_into(&key, inner, lines),
            value => lines.push(format!("{key} = {}", inline(value))),
        }
    }
}

/// A value in TOML syntax on one line. The toml crate writes a string that holds a newline as a
/// multi-line string, which would split a log line.
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => {
            let mut out = String::with_capacity(text.len() + 2);
            out.push('"');
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        toml::Value::Table(table) => {
            let pairs: Vec<String> = table
                .iter()
                .map(|(k, v)| format!("{} = {}", dotted("", k), inline(v)))
                .collect();
            if pairs.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", pairs.join(", "))
            }
        }
        other => other.to_string(),
    }
}

/// A key joined to its parents; a key that is not a bare TOML key is quoted.
fn dotted(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        inline(&toml::Value::String(key.to_owned()))
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_in_toml() {
        let config = Config::from_toml_str(
            "keepalive_ms = 5000\n[formats.my-fmt]\ncontent_type = 'text/plain'\nenvelope = \"{json}\\n\"\n",
        )
        .unwrap();
        let lines = config.key_lines();
        assert!(
            lines.contains(&"keepalive_ms = 5000".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"listen = \"127.0.0.1:8080\"".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"formats.my-fmt.envelope = \"{json}\\n\"".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"stream_recycle_bytes.iframe = 1048576".to_owned()),
            "{lines:?}"
        );
        // The lines read back as the same configuration.
        let again = Config::from_toml_str(&lines.join("\n")).unwrap();
        assert_eq!(again.key_lines(), lines);
        assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:?}");
    }

    #[test]
    fn empty_tables_and_odd_keys_are_shown() {
        let lines = Config::default().key_lines();
        assert!(lines.contains(&"formats = {}".to_owned()), "{lines:?}");
        assert_eq!(dotted("a", "b.c"), "a.\"b.c\"");
        assert_eq!(dotted("", "x-y_1"), "x-y_1");
        let odd = toml::Value::String("a\"b\\c\td\u{1}".to_owned());
        assert_eq!(inline(&odd), r#""a\"b\\c\td\u0001""#);
        let table = toml::Value::Table(toml::Table::from_iter([(
            "k".to_owned(),
            toml::Value::Array(vec![1.into(), "x".into()]),
        )]));
        assert_eq!(inline(&table), r#"{ k = [1, "x"] }"#);
    }

    #[test]
    fn summary_names_only_what_changed() {
        let mut config = Config::default();
        config.validate().unwrap();
        let summary = config.summary();
        assert!(summary.starts_with("listen 127.0.0.1:8080, "), "{summary}");
        assert!(
            summary.ends_with("every other key at its default"),
            "{summary}"
        );

        let config = Config::from_toml_str("keepalive_ms = 5000\nconformance_echo = true").unwrap();
        let summary = config.summary();
        assert!(
            summary.ends_with(
                "changed from the defaults: conformance_echo = true, keepalive_ms = 5000"
            ),
            "{summary}"
        );
        assert!(summary.len() < 200, "{summary}");
    }
}
