//! The module's layout rules, checked on the source: no import cycles among `src/` modules, and
//! `config` is a leaf (it names no other module of the crate, so nothing it reaches calls back).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

/// Every `crate::<module>` a file of `src/` names, per module.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("read src") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        modules.insert(name, fs::read_to_string(&path).expect("read"));
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .filter(|(name, _)| name != "lib")
        .map(|(name, text)| {
            let used = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .flat_map(|code| {
                    code.match_indices("crate::")
                        .map(move |(i, _)| &code[i + "crate::".len()..])
                        .collect::<Vec<_>>()
                })
                .filter_map(|rest| {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    let m = &rest[..end];
                    (names.contains(m) && m != name).then(|| m.to_string())
                })
                .collect();
            (name, used)
        })
        .collect()
}

#[test]
fn src_modules_import_no_cycle() {
    let graph = imports();
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}\n{graph:#?}", cycle.join(" -> "));
        }
    }
    assert!(graph.len() >= 8, "read the modules: {graph:?}");
}

#[test]
fn config_is_a_leaf() {
    let graph = imports();
    let used = graph.get("config").expect("src/config.rs");
    assert!(
        used.is_empty(),
        "config imports {used:?}; it may use only the core crate"
    );
}

/// The core crate is imported by its own name: no module re-exports it under a local one (a
/// reader would look for `src/token.rs` and find nothing, and every such import runs back up
/// through `lib.rs`).
#[test]
fn the_core_is_imported_by_its_name() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let core = [
        "error",
        "fetch",
        "keys",
        "keyscheme",
        "token",
        "logout",
        "backchannel",
    ];
    for entry in fs::read_dir(&src).expect("read src") {
        let path = entry.expect("entry").path();
        let text = fs::read_to_string(&path).expect("read");
        for m in core {
            for form in [
                format!("crate::{m}::"),
                format!("crate::{m};"),
                format!("crate::{m}}}"),
            ] {
                assert!(
                    !text.contains(&form),
                    "{} names the core's `{m}` as `{form}`: import jwtdeny_core::{m}",
                    path.display()
                );
            }
        }
        let lib = text
            .lines()
            .any(|l| l.trim_start().starts_with("use jwtdeny_core::{"));
        assert!(
            !(path.ends_with("lib.rs") && lib),
            "lib.rs re-exports the core under local names"
        );
    }
}

/// Commands are one row each of the command table: no handler or callback picks a command by
/// the text of its name.
#[test]
fn no_command_is_matched_by_its_name() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in [
        "commands.rs",
        "lib.rs",
        "jwks.rs",
        "workers.rs",
        "blocked.rs",
        "route.rs",
    ] {
        let text = fs::read_to_string(src.join(file)).expect("read");
        for name in [
            "\"jwtdeny.check\"",
            "\"jwtdeny.kcheck\"",
            "\"jwtdeny.kscheck\"",
        ] {
            assert!(
                !text.contains(name),
                "{file} matches a command by its name {name}"
            );
        }
    }
}
