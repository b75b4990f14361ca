//! The shard-local index from patterns to subscribed tunnel slots.

use indexmap::IndexSet;
use std::collections::HashMap;

use super::path::{subtree_keys, Pattern};

/// Slot of a tunnel in its shard's tunnel table.
pub type Slot = u32;

/// Which local tunnels subscribed to what. Exact and subtree patterns are kept in two maps so a
/// publish costs one lookup per path segment, whatever the number of patterns.
#[derive(Default)]
pub struct Registry {
    exact: HashMap<Box<str>, IndexSet<Slot>>,
    subtree: HashMap<Box<str>, IndexSet<Slot>>,
}

impl Registry {
    fn map_mut(&mut self, pattern: &Pattern) -> &mut HashMap<Box<str>, IndexSet<Slot>> {
        match pattern {
            Pattern::Exact(_) => &mut self.exact,
            Pattern::Subtree(_) => &mut self.subtree,
        }
    }

    /// Adds `slot` under `pattern`; returns false when it was already there.
    pub fn insert(&mut self, pattern: &Pattern, slot: Slot) -> bool {
        self.map_mut(pattern)
            .entry(pattern.key().into())
            .or_default()
            .insert(slot)
    }

    /// Removes `slot` from `pattern`; returns false when it was not there.
    pub fn remove(&mut self, pattern: &Pattern, slot: Slot) -> bool {
        let map = self.map_mut(pattern);
        let Some(set) = map.get_mut(pattern.key()) else {
            return false;
        };
        let removed = set.swap_remove(&slot);
        if set.is_empty() {
            map.remove(pattern.key());
        }
        removed
    }

    /// Calls `visit` for every slot subscribed to a pattern that matches `path`. A slot subscribed
    /// through several patterns is visited once per pattern: callers deduplicate.
    pub fn for_each_match(&self, path: &str, mut visit: impl FnMut(Slot)) {
        if let Some(set) = self.exact.get(path) {
            set.iter().for_each(|&s| visit(s));
        }
        if self.subtree.is_empty() {
            return;
        }
        for key in subtree_keys(path) {
            if let Some(set) = self.subtree.get(key) {
                set.iter().for_each(|&s| visit(s));
            }
        }
    }

    /// Number of distinct patterns with at least one subscriber.
    pub fn pattern_count(&self) -> usize {
        self.exact.len() + self.subtree.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(r: &Registry, path: &str) -> Vec<Slot> {
        let mut v = Vec::new();
        r.for_each_match(path, |s| v.push(s));
        v.sort_unstable();
        v
    }

    #[test]
    fn exact_and_subtree() {
        let mut r = Registry::default();
        let exact = Pattern::parse("/chat/room1").unwrap();
        let tree = Pattern::parse("/chat/*").unwrap();
        let all = Pattern::parse("/*").unwrap();
        assert!(r.insert(&exact, 1));
        assert!(!r.insert(&exact, 1));
        assert!(r.insert(&tree, 2));
        assert!(r.insert(&all, 3));
        assert_eq!(matches(&r, "/chat/room1"), vec![1, 2, 3]);
        assert_eq!(matches(&r, "/chat"), vec![2, 3]);
        assert_eq!(matches(&r, "/chatter"), vec![3]);
        assert!(r.remove(&tree, 2));
        assert!(!r.remove(&tree, 2));
        assert_eq!(matches(&r, "/chat/room1"), vec![1, 3]);
        assert!(r.remove(&all, 3));
        assert!(r.remove(&exact, 1));
        assert_eq!(r.pattern_count(), 0);
    }
}
