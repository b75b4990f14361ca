//! The router's modules form floors, and each imports only modules on floors below its own
//! (docs/architecture.md, "Layers"): no module reaches up, no two modules import each other.
//! This reads every source file of the library and checks each `crate::<module>` it names.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The floors, top first. A module may name the modules of any floor below its own.
const FLOORS: &[&[&str]] = &[
    &["server"],
    &["conn"],
    &["api"],
    &["attachment"],
    &["admission", "net"],
    &["refusal"],
    &["shard"],
    &["tunnel", "limits", "metrics", "os", "auth"],
    &["config"],
    &["pubsub", "wire"],
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source text names as `crate::<module>`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            named.insert(name);
        }
    }
    named
}

#[test]
fn every_module_imports_only_floors_below_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut modules_seen = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let floor = floor_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` is on no floor: add it to FLOORS"));
        modules_seen.insert(module.clone());
        let text = std::fs::read_to_string(file).unwrap();
        for named in named_modules(&text) {
            if named == module {
                continue;
            }
            let named_floor = floor_of(&named)
                .unwrap_or_else(|| panic!("{}: names unknown module `{named}`", file.display()));
            if named_floor <= floor {
                violations.push(format!(
                    "{} (floor {floor}) names crate::{named} (floor {named_floor})",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that do not point down:\n{}",
        violations.join("\n")
    );
    // Every floor's modules exist, so the table cannot drift from the code unnoticed.
    for module in FLOORS.iter().flat_map(|f| f.iter()) {
        assert!(
            modules_seen.contains(*module),
            "FLOORS names `{module}`, which has no source"
        );
    }
}

#[test]
fn an_upward_import_is_found() {
    // The check itself: a file of `shard` naming `crate::conn` is an upward import.
    let named = named_modules("use crate::conn::serve;\nuse crate::wire::json;");
    assert_eq!(
        named,
        BTreeSet::from(["conn".to_owned(), "wire".to_owned()])
    );
    assert!(floor_of("conn").unwrap() < floor_of("shard").unwrap());
}

#[test]
fn no_production_source_file_is_over_600_lines() {
    // A longer file has more than one job: split it (the tests beside
    // the code, after `#[cfg(test)]`, are not counted).
    const LINES_MAX: usize = 600;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .count();
        if lines > LINES_MAX {
            long.push(format!("{}: {lines} lines", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {LINES_MAX} lines:\n{}",
        long.join("\n")
    );
}
