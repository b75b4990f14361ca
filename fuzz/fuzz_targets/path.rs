//! Paths and subscription patterns (`pubsub::path`): publish paths, `/subscribe` patterns.
//!
//! Input: a pattern, a newline, a path. A valid path keeps its bounds; a pattern that parses
//! writes out as text that parses back to it; a pattern matches a path exactly when the
//! registry would find it under one of the path's subtree keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router::pubsub::path::{
    is_private, subtree_keys, validate, PATH_BYTES_MAX, PATH_SEGMENTS_MAX, PRIVATE_PREFIX,
};
use router::pubsub::Pattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern_text, path) = text.split_once('\n').unwrap_or((text, ""));

    if validate(path).is_ok() {
        assert!(path.len() <= PATH_BYTES_MAX);
        assert!(path.split('/').skip(1).count() <= PATH_SEGMENTS_MAX);
        assert!(!path.ends_with('/') && !path.contains("//"));
        // The registry indexes subtree patterns by key: the path, each parent, then the root.
        let keys: Vec<&str> = subtree_keys(path).collect();
        assert_eq!(keys.first(), Some(&path));
        assert_eq!(keys.last(), Some(&""));
        assert_eq!(keys.len(), path.split('/').count());
        for key in &keys {
            assert!(Pattern::Subtree((*key).into()).matches(path), "{key:?}");
        }
        assert_eq!(
            is_private(path),
            path == "/tunnel" || path.starts_with(PRIVATE_PREFIX)
        );
    }

    let Ok(pattern) = Pattern::parse(pattern_text) else {
        return;
    };
    let written = pattern.to_string();
    assert_eq!(written, pattern_text);
    assert_eq!(Pattern::parse(&written), Ok(pattern.clone()));
    if validate(path).is_ok() {
        let found = match &pattern {
            Pattern::Exact(p) => &**p == path,
            Pattern::Subtree(p) => subtree_keys(path).any(|key| key == &**p),
        };
        assert_eq!(pattern.matches(path), found, "{pattern} against {path}");
    }
});
