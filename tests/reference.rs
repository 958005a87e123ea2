//! The README's reference holds for the module as built: its command tables against the
//! commands the server registered (names, arity, flags, key positions), its config table
//! against the module's configs (names, defaults, bounds), its INFO table against the fields
//! INFO shows, and its error codes against the codes INFO counts. A change to one without the
//! other fails here, so the reference cannot drift from the code.

use crate::common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).expect("README.md")
}

/// The lines of the README section whose heading is `heading` (up to the next heading of the
/// same or a higher level).
fn section(text: &str, heading: &str) -> Vec<String> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = text.lines().skip_while(|l| l.trim_end() != heading);
    assert!(lines.next().is_some(), "README has no section {heading:?}");
    lines
        .take_while(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            !(hashes > 0 && hashes <= level && l.chars().nth(hashes) == Some(' '))
        })
        .map(str::to_string)
        .collect()
}

/// The cells of each row of the first table in `lines` (header and rule skipped).
fn table(lines: &[String]) -> Vec<Vec<String>> {
    lines
        .iter()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The text between backticks, in order.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The arity Redis declares for a syntax line: the name and each required word count; any
/// optional part makes it "at least" (negative).
fn arity(syntax: &str) -> i64 {
    let mut depth = 0;
    let mut required = 0;
    let mut optional = false;
    for word in syntax.split_whitespace() {
        let opens = word.matches('[').count();
        if depth == 0 && opens == 0 {
            required += 1;
        }
        if opens > 0 {
            optional = true;
        }
        depth += opens;
        depth -= word.matches(']').count();
    }
    if optional {
        -required
    } else {
        required
    }
}

struct Registered {
    arity: i64,
    flags: BTreeSet<String>,
    first_key: i64,
    last_key: i64,
}

fn registered(server: &Server) -> BTreeMap<String, Registered> {
    let names = server.cmd(&["COMMAND", "LIST", "FILTERBY", "MODULE", "jwtdeny"]);
    let mut out = BTreeMap::new();
    for name in names.array() {
        let name = name.text();
        let info = server.cmd(&["COMMAND", "INFO", &name]);
        let row = info.array()[0].array();
        let flags = row[2]
            .array()
            .iter()
            .map(Reply::text)
            .filter(|f| f != "module")
            .collect();
        out.insert(
            name.to_ascii_uppercase(),
            Registered {
                arity: row[1].int(),
                flags,
                first_key: row[3].int(),
                last_key: row[4].int(),
            },
        );
    }
    out
}

#[test]
fn the_command_reference_is_the_command_table() {
    let text = readme();
    let server = ServerBuilder::new().start();
    let commands = registered(&server);

    // Standalone forms: syntax, flags.
    let mut documented = BTreeMap::<String, String>::new();
    let mut flags_of = BTreeMap::<String, String>::new();
    for row in table(&section(&text, "## Commands")) {
        let syntaxes = ticked(&row[0]);
        if row[1] == "as above" {
            continue; // the keyed forms, in their own table below
        }
        for syntax in syntaxes {
            let name = syntax.split_whitespace().next().expect("name").to_string();
            flags_of.insert(name.clone(), ticked(&row[1]).join(" "));
            documented.insert(name + " " + &syntax, syntax);
        }
    }
    // Keyed forms: syntax and key positions.
    let mut keys_of = BTreeMap::<String, String>::new();
    for row in table(&section(&text, "### The keyed forms")) {
        let syntax = ticked(&row[0]).remove(0);
        let name = syntax.split_whitespace().next().expect("name").to_string();
        keys_of.insert(name.clone(), row[1].clone());
        documented.insert(name + " " + &syntax, syntax);
    }

    let names: BTreeSet<String> = documented
        .values()
        .map(|s| s.split_whitespace().next().expect("name").to_string())
        .collect();
    let registered_names: BTreeSet<String> = commands.keys().cloned().collect();
    assert_eq!(names, registered_names, "documented vs registered commands");

    for syntax in documented.values() {
        let name = syntax.split_whitespace().next().expect("name");
        let c = &commands[name];
        assert_eq!(arity(syntax), c.arity, "arity of `{syntax}`");
    }
    for (name, c) in &commands {
        // A keyed form has the flags of its standalone form ("as above").
        let base = match name.strip_prefix("JWTDENY.K") {
            Some(rest) if name != "JWTDENY.KEYS" => {
                format!("JWTDENY.{}", rest.strip_prefix('S').unwrap_or(rest))
            }
            _ => name.clone(),
        };
        let base = if commands.contains_key(&base) {
            base
        } else {
            format!("JWTDENY.{}", &name["JWTDENY.K".len()..])
        };
        // The README gives the flags as the module registers them; COMMAND INFO spells two of
        // them its own way.
        let want: BTreeSet<String> = flags_of
            .get(&base)
            .unwrap_or_else(|| panic!("no flags documented for {base} ({name})"))
            .split_whitespace()
            .map(|f| match f {
                "deny-oom" => "denyoom".to_string(),
                "deny-script" => "noscript".to_string(),
                f => f.to_string(),
            })
            .collect();
        assert_eq!(c.flags, want, "flags of {name}");
        match keys_of.get(name) {
            Some(keys) if keys.contains(" or ") => {
                // A varying number of keys: Redis counts the last one from the end.
                let first: i64 = keys.split_whitespace().next().unwrap().parse().unwrap();
                assert_eq!(c.first_key, first, "first key of {name}");
                assert!(
                    c.last_key < 0,
                    "{name} declares keys up to an argument from the end"
                );
            }
            Some(keys) => {
                let want = match keys.as_str() {
                    "1" => (1, 1),
                    k => {
                        let n: Vec<i64> = k
                            .split(|ch: char| !ch.is_ascii_digit() && ch != '-')
                            .filter_map(|w| w.parse().ok())
                            .collect();
                        (n[0], n[1])
                    }
                };
                assert_eq!((c.first_key, c.last_key), want, "key positions of {name}");
            }
            None => assert_eq!((c.first_key, c.last_key), (0, 0), "{name} declares no keys"),
        }
    }
}

/// `(a, b)` from a cell that says `` `a`–`b` ``, or `(0, b)` from "`0` disables, at most b".
fn bounds(cell: &str) -> Option<(i64, i64)> {
    let t = ticked(cell);
    for pair in t.windows(2) {
        let (Ok(lo), Ok(hi)) = (pair[0].parse::<i64>(), pair[1].parse::<i64>()) else {
            continue;
        };
        if cell.contains(&format!("`{lo}`–`{hi}`")) {
            return Some((lo, hi));
        }
    }
    let hi = cell.split("at most ").nth(1)?;
    let hi: String = hi.chars().take_while(char::is_ascii_digit).collect();
    Some((t.first()?.parse().ok()?, hi.parse().ok()?))
}

#[test]
fn the_config_table_is_the_module_configs() {
    let text = readme();
    let server = ServerBuilder::new().start();
    let got = server.cmd(&["CONFIG", "GET", "jwtdeny.*"]);
    let live: BTreeMap<String, String> = got
        .array()
        .chunks(2)
        .map(|p| (p[0].text(), p[1].text()))
        .collect();
    let rows = table(&section(&text, "## Configuration"));
    let documented: BTreeSet<String> = rows.iter().map(|r| ticked(&r[0]).remove(0)).collect();
    let names: BTreeSet<String> = live.keys().cloned().collect();
    assert_eq!(documented, names, "documented vs registered configs");
    for row in &rows {
        let name = ticked(&row[0]).remove(0);
        let default = ticked(&row[2]).remove(0);
        let default = if default == "\"\"" {
            String::new()
        } else {
            default
        };
        assert_eq!(live[&name], default, "default of {name}");
        if row[1] != "int" {
            continue;
        }
        let same = server.cmd(&["CONFIG", "SET", &name, &live[&name]]);
        if same.error().is_some_and(|e| e.contains("immutable")) {
            continue; // load time only: no runtime bounds to hold the README to
        }
        let (lo, hi) = bounds(&row[3]).unwrap_or_else(|| panic!("{name}: no bounds documented"));
        for (value, refused) in [(lo - 1, true), (lo, false), (hi, false), (hi + 1, true)] {
            let r = server.cmd(&["CONFIG", "SET", &name, &value.to_string()]);
            // A bound may also be refused for another reason at runtime (max-lifetime only
            // goes down, load-time configs not at all): the message says which.
            let out_of_range = r
                .error()
                .is_some_and(|e| e.contains("between") || e.contains("out of range"));
            if refused {
                assert!(out_of_range, "{name} = {value} outside {lo}–{hi}: {r}");
            } else {
                assert!(!out_of_range, "{name} = {value} inside {lo}–{hi}: {r}");
            }
        }
    }
}

#[test]
fn the_info_table_and_error_codes_are_what_info_shows() {
    let text = readme();
    // With one issuer in a registry, named `x`: its line is the table's `issuer_<name>`.
    let b = ServerBuilder::new();
    let registry = b.dir().join("issuers.json");
    let body = serde_json::json!({"issuers": {"x": {
        "issuer": "https://x.example/", "keys-file": jwks_path().to_string_lossy()}}});
    std::fs::write(&registry, body.to_string()).expect("write the registry");
    let server = b
        .conf(format!(
            "jwtdeny.issuers-file {}",
            conf_quote(&registry.to_string_lossy())
        ))
        .start();
    let fields: Vec<String> = info_pairs(&server.cmd(&["INFO", "jwtdeny"]).text())
        .into_iter()
        .map(|(k, _)| k.strip_prefix("jwtdeny_").unwrap_or(&k).to_string())
        .collect();
    let mut documented = BTreeSet::new();
    for row in table(&section(&text, "## Monitoring")) {
        let names = ticked(&row[0]);
        if row[0].contains('…') {
            // `first` … `last`: every field between them, in INFO's order.
            let from = fields.iter().position(|f| *f == names[0]).expect("first");
            let to = fields.iter().position(|f| *f == names[1]).expect("last");
            documented.extend(fields[from..=to].iter().cloned());
        } else {
            documented.extend(names.into_iter().map(|n| n.replace("<name>", "x")));
        }
    }
    let shown: BTreeSet<String> = fields.iter().cloned().collect();
    assert_eq!(documented, shown, "documented vs shown INFO fields");

    // The error codes of the reference are the ones INFO counts per code.
    let codes: BTreeSet<String> = table(&section(&text, "### Errors"))
        .iter()
        .map(|r| ticked(&r[0]).remove(0).to_ascii_lowercase())
        .collect();
    let counted: BTreeSet<String> = fields
        .iter()
        .filter_map(|f| f.strip_prefix("checks_"))
        .filter(|c| !matches!(*c, "active" | "revoked" | "other_errors"))
        .map(str::to_string)
        .collect();
    assert_eq!(codes, counted, "documented vs counted error codes");
}
