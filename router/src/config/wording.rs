//! Configuration errors in plain words: a "did you mean" for a mistyped key, and the Rust type
//! names that serde puts in its messages (`usize`, `u64`) said as what they ask for.

/// A key list longer than this is not repeated in an error: it would fill a screen line
/// (the top-level keys ran to 683 characters) and hide the one the operator meant.
const CANDIDATES_SHOWN_MAX: usize = 8;

/// The candidate closest to `word` by edit distance, when it is close enough to be a likely
/// typo: at most a third of the word's length apart (and at least 2), or `word` is the start of
/// the candidate (`keepalive` for `keepalive_ms`).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let distance_max = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            let prefix = word.chars().count() >= 4 && c.starts_with(word);
            (c, if prefix { 0 } else { edit_distance(word, c) })
        })
        .filter(|&(_, d)| d <= distance_max)
        .min_by_key(|&(_, d)| d)
        .map(|(c, _)| c)
}

/// Levenshtein distance over characters: insertions, deletions and substitutions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // One row of the table at a time: `row[j]` is the distance between the prefix of `a` read
    // so far and the first `j` characters of `b`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        let mut left = i + 1;
        let mut next = Vec::with_capacity(row.len());
        next.push(left);
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX - 1);
            let cost = usize::from(ca != *cb);
            left = (diagonal + cost).min(above + 1).min(left + 1);
            diagonal = above;
            next.push(left);
        }
        row = next;
    }
    row.last().copied().unwrap_or(0)
}

/// Rewrites a serde/toml error message in plain words: an unknown key gets a suggestion instead
/// of the list of every key, and Rust type names become what they ask for. Lines other than the
/// message (the file excerpt the toml crate quotes) pass unchanged.
pub fn plain(message: &str) -> String {
    message
        .lines()
        .map(|line| plain_types(&unknown_key(line)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `unknown field `x`, expected one of `a`, `b`` -> `unknown key `x`, did you mean `a`?`; the
/// same for a value of a fixed set (`unknown variant`, such as `io_driver = "urign"`).
fn unknown_key(line: &str) -> String {
    let found = [("unknown field `", "key"), ("unknown variant `", "value")]
        .into_iter()
        .find_map(|(mark, what)| line.find(mark).map(|at| (at, mark, what)));
    let Some((at, mark, what)) = found else {
        return line.to_owned();
    };
    let (before, rest) = line.split_at(at);
    let rest = rest.get(mark.len()..).unwrap_or("");
    let Some((word, expected)) = rest.split_once('`') else {
        return line.to_owned();
    };
    // The rest names the valid keys between backquotes: every second piece.
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let mut out = format!("{before}unknown {what} `{word}`");
    if let Some(best) = suggest(word, candidates.iter().copied()) {
        out.push_str(&format!(", did you mean `{best}`?"));
    } else if candidates.is_empty() {
        out.push_str(", this table takes no keys");
    } else if candidates.len() <= CANDIDATES_SHOWN_MAX {
        let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
        out.push_str(&format!(", expected one of {}", list.join(", ")));
    } else {
        out.push_str(
            " (deploy/router.toml lists every key with its default, docs/limits.md its range)",
        );
    }
    out
}

/// Rust's integer and float type names, as serde writes them after "expected".
const TYPE_WORDS: [(&str, &str); 12] = [
    ("usize", "a whole number, 0 or more"),
    ("u64", "a whole number, 0 or more"),
    ("u32", "a whole number from 0 to 4294967295"),
    ("u16", "a whole number from 0 to 65535"),
    ("u8", "a whole number from 0 to 255"),
    ("isize", "a whole number"),
    ("i64", "a whole number"),
    ("i32", "a whole number"),
    ("f64", "a number"),
    ("f32", "a number"),
    ("a map", "a table"),
    ("a sequence", "an array"),
];

/// `expected u64` -> `expected a whole number, 0 or more`; `expected struct X` -> `expected a
/// table`. A type name counts only as a whole word.
fn plain_types(line: &str) -> String {
    let mut out = line.to_owned();
    for (rust, plain) in TYPE_WORDS {
        let from = format!("expected {rust}");
        let mut searched = 0;
        while let Some(found) = out.get(searched..).and_then(|rest| rest.find(&from)) {
            let start = searched + found;
            let end = start + from.len();
            let whole_word = out
                .get(end..)
                .and_then(|rest| rest.chars().next())
                .is_none_or(|c| !c.is_alphanumeric() && c != '_');
            if whole_word {
                out.replace_range(start..end, &format!("expected {plain}"));
                searched = start + "expected ".len() + plain.len();
            } else {
                searched = end;
            }
        }
    }
    if let Some(at) = out.find("expected struct ") {
        let name_end = out
            .get(at + "expected struct ".len()..)
            .and_then(|rest| rest.find(|c: char| !c.is_alphanumeric() && c != '_'))
            .map_or(out.len(), |n| at + "expected struct ".len() + n);
        out.replace_range(at..name_end, "expected a table");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("envelop", "envelope"), 1);
        assert_eq!(edit_distance("keepalive", "keepalive_ms"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("shrads", "shards"), 2);
        assert_eq!(
            edit_distance("héllo", "hello"),
            1,
            "counts characters, not bytes"
        );
    }

    #[test]
    fn suggests_the_closest_likely_key() {
        let keys = ["listen", "shards", "log", "keepalive_ms", "tunnel_grace_ms"];
        assert_eq!(suggest("keepalive", keys), Some("keepalive_ms"));
        assert_eq!(suggest("keep_alive_ms", keys), Some("keepalive_ms"));
        assert_eq!(suggest("shard", keys), Some("shards"));
        assert_eq!(suggest("shrads", keys), Some("shards"));
        assert_eq!(suggest("lsiten", keys), Some("listen"));
        assert_eq!(suggest("logs", keys), Some("log"));
        assert_eq!(suggest("colour", keys), None, "nothing close");
        assert_eq!(suggest("x", keys), None);
        assert_eq!(suggest("log", keys), None, "a valid key is no typo");
    }

    #[test]
    fn unknown_fields_get_a_suggestion_not_every_key() {
        let every_key: Vec<String> = (0..30).map(|i| format!("`key_number_{i}`")).collect();
        let message = format!(
            "unknown field `key_numbr_7`, expected one of {}",
            every_key.join(", ")
        );
        assert_eq!(
            plain(&message),
            "unknown key `key_numbr_7`, did you mean `key_number_7`?"
        );
        let far = format!(
            "unknown field `zzz`, expected one of {}",
            every_key.join(", ")
        );
        let text = plain(&far);
        assert!(
            text.starts_with("unknown key `zzz` (deploy/router.toml"),
            "{text}"
        );
        assert!(text.len() < 120, "{text}");
        assert_eq!(
            plain("unknown field `qq`, expected `content_type` or `envelope`"),
            "unknown key `qq`, expected one of `content_type`, `envelope`"
        );
        assert_eq!(
            plain("unknown variant `urign`, expected one of `auto`, `uring`, `epoll`"),
            "unknown value `urign`, did you mean `uring`?"
        );
        assert_eq!(
            plain("unknown variant `fast`, expected one of `auto`, `uring`, `epoll`"),
            "unknown value `fast`, expected one of `auto`, `uring`, `epoll`"
        );
        assert_eq!(
            plain("unknown field `a`, there are no fields"),
            "unknown key `a`, this table takes no keys"
        );
        // The file excerpt above the message is kept.
        assert_eq!(
            plain("TOML parse error at line 1, column 1\n  |\n1 | envelop = 1\nunknown field `envelop`, expected `envelope`"),
            "TOML parse error at line 1, column 1\n  |\n1 | envelop = 1\nunknown key `envelop`, did you mean `envelope`?"
        );
    }

    #[test]
    fn type_names_become_plain_words() {
        assert_eq!(
            plain("invalid type: string \"soon\", expected u64"),
            "invalid type: string \"soon\", expected a whole number, 0 or more"
        );
        assert_eq!(
            plain("invalid value: integer `-1`, expected usize"),
            "invalid value: integer `-1`, expected a whole number, 0 or more"
        );
        assert_eq!(
            plain("invalid value: integer `5000000000`, expected u32"),
            "invalid value: integer `5000000000`, expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain("invalid type: integer `3`, expected struct CustomFormat"),
            "invalid type: integer `3`, expected a table"
        );
        assert_eq!(
            plain("invalid type: integer `3`, expected a map"),
            "invalid type: integer `3`, expected a table"
        );
        // Only whole words: a name that merely starts like a type stays.
        assert_eq!(plain("expected u8x"), "expected u8x");
        assert_eq!(plain("expected a boolean"), "expected a boolean");
    }
}
