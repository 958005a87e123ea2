//! Command metadata (issue 3 §5, issue 6, hardening issue part 2): COMMAND INFO shows each
//! command's flags, true arity and key specs, COMMAND DOCS its summary and arguments, and
//! COMMAND GETKEYS finds the keyed forms' keys.

use crate::common;
use crate::support;

use common::*;
use support::*;

struct Info {
    arity: i64,
    flags: Vec<String>,
    first: i64,
    last: i64,
    step: i64,
    key_specs: Vec<KeySpec>,
}

/// One key spec of COMMAND INFO, for the begin-search "index" / find-keys "range" kind that
/// jwtdeny declares.
#[derive(Debug, PartialEq)]
struct KeySpec {
    flags: Vec<String>,
    index: i64,
    lastkey: i64,
}

/// The value after `key` in a RESP2 flat map.
#[track_caller]
fn field<'a>(map: &'a [Reply], key: &str) -> &'a Reply {
    map.chunks(2)
        .find(|kv| kv[0].text() == key)
        .map(|kv| &kv[1])
        .unwrap_or_else(|| panic!("no {key} in {}", Reply::Array(Some(map.to_vec()))))
}

fn key_spec(spec: &Reply) -> KeySpec {
    let spec = spec.array();
    let begin = field(spec, "begin_search").array();
    let find = field(spec, "find_keys").array();
    assert_eq!(field(begin, "type").text(), "index", "begin_search");
    assert_eq!(field(find, "type").text(), "range", "find_keys");
    let find = field(find, "spec").array();
    assert_eq!(field(find, "keystep").int(), 1, "keystep");
    KeySpec {
        flags: field(spec, "flags")
            .array()
            .iter()
            .map(Reply::text)
            .collect(),
        index: field(field(begin, "spec").array(), "index").int(),
        lastkey: field(find, "lastkey").int(),
    }
}

fn command_info(server: &Server, name: &str) -> Info {
    let c = support::command_info(server, name);
    Info {
        arity: c.arity,
        flags: c.flags,
        first: c.first,
        last: c.last,
        step: c.step,
        key_specs: c.key_specs.iter().map(key_spec).collect(),
    }
}

fn spec(flags: &[&str], index: i64, lastkey: i64) -> KeySpec {
    KeySpec {
        flags: flags.iter().map(|f| f.to_string()).collect(),
        index,
        lastkey,
    }
}

/// Every command with its arity (counting its name; negative: at least that many).
const ARITIES: [(&str, i64); 9] = [
    ("jwtdeny.check", -2),
    ("jwtdeny.inspect", 2),
    ("jwtdeny.revoke", 2),
    ("jwtdeny.revokeall", -2),
    ("jwtdeny.keys", 2),
    ("jwtdeny.kcheck", -4),
    ("jwtdeny.kinspect", 4),
    ("jwtdeny.krevoke", 4),
    ("jwtdeny.krevokeall", -3),
];

#[track_caller]
fn assert_flags(info: &Info, name: &str, want: &[&str], not: &[&str]) {
    for f in want {
        assert!(
            info.flags.iter().any(|x| x == f),
            "{name} lacks flag {f}: {:?}",
            info.flags
        );
    }
    for f in not {
        assert!(
            !info.flags.iter().any(|x| x == f),
            "{name} has flag {f}: {:?}",
            info.flags
        );
    }
}

#[test]
fn read_commands_are_readonly_and_fast() {
    let server = Server::with_vector_keys();
    for name in [
        "jwtdeny.check",
        "jwtdeny.inspect",
        "jwtdeny.kcheck",
        "jwtdeny.kinspect",
    ] {
        let info = command_info(&server, name);
        assert_flags(
            &info,
            name,
            &["readonly", "fast"],
            &["write", "denyoom", "admin", "noscript"],
        );
    }
}

#[test]
fn write_commands_are_write_denyoom_and_fast() {
    let server = Server::with_vector_keys();
    for name in [
        "jwtdeny.revoke",
        "jwtdeny.revokeall",
        "jwtdeny.krevoke",
        "jwtdeny.krevokeall",
    ] {
        let info = command_info(&server, name);
        assert_flags(
            &info,
            name,
            &["write", "denyoom", "fast"],
            &["readonly", "admin"],
        );
    }
}

#[test]
fn keys_is_an_admin_command() {
    let server = Server::with_vector_keys();
    let info = command_info(&server, "jwtdeny.keys");
    assert_flags(
        &info,
        "jwtdeny.keys",
        &["admin", "noscript"],
        &["write", "readonly", "denyoom"],
    );
    assert_eq!((info.first, info.last, info.step), (0, 0, 0));
}

#[test]
fn every_command_has_its_true_arity() {
    let server = Server::with_vector_keys();
    for (name, arity) in ARITIES {
        assert_eq!(command_info(&server, name).arity, arity, "{name} arity");
    }
    let log = server.log();
    for refusal in ["Invalid command info", "command info of", "cannot declare"] {
        assert!(!log.contains(refusal), "server log has {refusal:?}:\n{log}");
    }
}

/// The legacy first/last/step Redis derives from the key specs, which clients before key specs
/// route by.
#[test]
fn key_positions() {
    let server = Server::with_vector_keys();
    for (name, want) in [
        ("jwtdeny.check", (0, 0, 0)),
        ("jwtdeny.inspect", (0, 0, 0)),
        ("jwtdeny.revoke", (0, 0, 0)),
        ("jwtdeny.revokeall", (0, 0, 0)),
        ("jwtdeny.kcheck", (1, 2, 1)),
        ("jwtdeny.kinspect", (1, 2, 1)),
        ("jwtdeny.krevoke", (1, 2, 1)),
        ("jwtdeny.krevokeall", (1, 1, 1)),
    ] {
        let info = command_info(&server, name);
        assert_eq!(
            (info.first, info.last, info.step),
            want,
            "{name} first/last/step"
        );
    }
}

/// Reads are `RO access` (what a `%R~` pattern admits), writes `RW` with `insert` or `update`
/// (what needs `%W~`); the standalone forms declare no keys.
#[test]
fn key_specs_say_how_each_key_is_used() {
    let server = Server::with_vector_keys();
    let read_both = || vec![spec(&["RO", "access"], 1, 1)];
    for (name, want) in [
        ("jwtdeny.check", vec![]),
        ("jwtdeny.inspect", vec![]),
        ("jwtdeny.revoke", vec![]),
        ("jwtdeny.revokeall", vec![]),
        ("jwtdeny.keys", vec![]),
        ("jwtdeny.kcheck", read_both()),
        ("jwtdeny.kinspect", read_both()),
        (
            "jwtdeny.krevoke",
            vec![spec(&["RW", "insert"], 1, 0), spec(&["RO", "access"], 2, 0)],
        ),
        (
            "jwtdeny.krevokeall",
            vec![spec(&["RW", "access", "update"], 1, 0)],
        ),
    ] {
        assert_eq!(
            command_info(&server, name).key_specs,
            want,
            "{name} key specs"
        );
    }
}

/// The keys of one call with the flags the server checks ACL key patterns by.
fn keys_and_flags(server: &Server, call: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut args = vec!["COMMAND", "GETKEYSANDFLAGS"];
    args.extend_from_slice(call);
    let r = server.cmd(&args);
    r.array()
        .iter()
        .map(|k| {
            let k = k.array();
            (k[0].text(), k[1].array().iter().map(Reply::text).collect())
        })
        .collect()
}

#[test]
fn command_getkeysandflags_gives_each_key_its_access() {
    let server = Server::with_vector_keys();
    let v = vector("valid-HS256");
    let entry = deny_key("user-hs256", v.iat.unwrap());
    let subject = subject_key("user-hs256");
    let t = v.token.as_str();
    let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for name in ["JWTDENY.KCHECK", "JWTDENY.KINSPECT"] {
        assert_eq!(
            keys_and_flags(&server, &[name, &entry, &subject, t]),
            vec![
                (entry.clone(), flags(&["RO", "access"])),
                (subject.clone(), flags(&["RO", "access"])),
            ],
            "{name}"
        );
    }
    assert_eq!(
        keys_and_flags(&server, &["JWTDENY.KREVOKE", &entry, &subject, t]),
        vec![
            (entry.clone(), flags(&["RW", "insert"])),
            (subject.clone(), flags(&["RO", "access"])),
        ],
        "KREVOKE"
    );
    assert_eq!(
        keys_and_flags(
            &server,
            &["JWTDENY.KREVOKEALL", &subject, "user-hs256", "AT", "1"]
        ),
        vec![(subject.clone(), flags(&["RW", "access", "update"]))],
        "KREVOKEALL"
    );
}

/// One command's COMMAND DOCS as a flat map.
fn docs(server: &Server, name: &str) -> Vec<Reply> {
    let r = server.cmd(&["COMMAND", "DOCS", name]);
    let a = r.array();
    assert_eq!(a.len(), 2, "COMMAND DOCS {name}: {r}");
    assert_eq!(a[0].text(), name, "COMMAND DOCS {name}: {r}");
    a[1].array().to_vec()
}

fn arg_names(args: &[Reply]) -> Vec<String> {
    args.iter()
        .map(|a| field(a.array(), "name").text())
        .collect()
}

#[test]
fn command_docs_describe_every_command() {
    let server = Server::with_vector_keys();
    for (name, args) in [
        (
            "jwtdeny.check",
            &["token", "withclaims", "sha256-thumbprint"][..],
        ),
        ("jwtdeny.inspect", &["token"]),
        ("jwtdeny.revoke", &["token"]),
        ("jwtdeny.revokeall", &["sub", "unix-seconds", "issuer"]),
        ("jwtdeny.keys", &["subcommand"]),
        (
            "jwtdeny.kcheck",
            &[
                "entry-key",
                "subject-key",
                "token",
                "withclaims",
                "sha256-thumbprint",
            ],
        ),
        (
            "jwtdeny.checkdpop",
            &[
                "token",
                "proof",
                "method",
                "url",
                "withclaims",
                "sha256-thumbprint",
            ],
        ),
        (
            "jwtdeny.kcheckdpop",
            &[
                "entry-key",
                "subject-key",
                "session-key",
                "replay-key",
                "token",
                "proof",
                "method",
                "url",
                "withclaims",
                "sha256-thumbprint",
            ],
        ),
        ("jwtdeny.kinspect", &["entry-key", "subject-key", "token"]),
        ("jwtdeny.krevoke", &["entry-key", "subject-key", "token"]),
        (
            "jwtdeny.krevokeall",
            &["subject-key", "sub", "unix-seconds", "issuer"],
        ),
    ] {
        let d = docs(&server, name);
        assert!(!field(&d, "summary").text().is_empty(), "{name} summary");
        assert!(
            !field(&d, "complexity").text().is_empty(),
            "{name} complexity"
        );
        assert_eq!(field(&d, "since").text(), "0.1.0", "{name} since");
        assert_eq!(field(&d, "module").text(), "jwtdeny", "{name} module");
        assert_eq!(
            arg_names(field(&d, "arguments").array()),
            args,
            "{name} arguments"
        );
    }
}

#[test]
fn command_docs_of_kcheck() {
    let server = Server::with_vector_keys();
    let d = docs(&server, "jwtdeny.kcheck");
    assert_eq!(
        field(&d, "summary").text(),
        "JWTDENY.CHECK with the token's keys declared, for Redis Cluster and ACL key patterns"
    );
    assert_eq!(field(&d, "since").text(), "0.1.0");
    let args = field(&d, "arguments").array();
    let arg = |i: usize| args[i].array();
    for (i, name) in [(0, "entry-key"), (1, "subject-key")] {
        assert_eq!(field(arg(i), "name").text(), name);
        assert_eq!(field(arg(i), "type").text(), "key", "{name}");
        assert_eq!(field(arg(i), "key_spec_index").int(), 0, "{name}");
    }
    assert_eq!(field(arg(2), "type").text(), "string", "token");
    assert_eq!(field(arg(3), "type").text(), "pure-token", "withclaims");
    assert_eq!(field(arg(3), "token").text(), "WITHCLAIMS");
    assert_eq!(
        field(arg(3), "flags").array(),
        &[Reply::Status("optional".into())][..],
        "withclaims flags"
    );
}

#[test]
fn command_docs_of_the_optional_and_alternative_arguments() {
    let server = Server::with_vector_keys();
    for name in ["jwtdeny.revokeall", "jwtdeny.krevokeall"] {
        let d = docs(&server, name);
        let args = field(&d, "arguments").array();
        let at = args[args.len() - 2].array();
        assert_eq!(field(at, "type").text(), "unix-time", "{name} AT");
        assert_eq!(field(at, "token").text(), "AT", "{name} AT");
        assert_eq!(field(at, "flags").array().len(), 1, "{name} AT flags");
        assert_eq!(
            field(at, "flags").array()[0].text(),
            "optional",
            "{name} AT"
        );
        let issuer = args.last().unwrap().array();
        assert_eq!(field(issuer, "type").text(), "string", "{name} ISSUER");
        assert_eq!(field(issuer, "token").text(), "ISSUER", "{name} ISSUER");
        assert_eq!(field(issuer, "flags").array()[0].text(), "optional");
    }
    let d = docs(&server, "jwtdeny.keys");
    let sub = field(&d, "arguments").array()[0].array();
    assert_eq!(field(sub, "type").text(), "oneof");
    let choices: Vec<String> = field(sub, "arguments")
        .array()
        .iter()
        .map(|a| field(a.array(), "token").text())
        .collect();
    assert_eq!(choices, vec!["RELOAD", "LIST"]);
}

/// Redis itself checks the declared arity: inside MULTI a call with too few arguments is refused
/// when queued, before the module could see it (with no declared arity it would be QUEUED).
#[test]
fn the_server_enforces_the_arity() {
    let server = Server::with_vector_keys();
    let mut c = server.conn();
    ok(c.cmd(&["MULTI"]), "MULTI");
    for call in [
        &["JWTDENY.KCHECK", "a", "b"][..],
        &["JWTDENY.KREVOKEALL", "a"],
        &["JWTDENY.INSPECT"],
        &["JWTDENY.KEYS", "LIST", "x"],
        &["JWTDENY.KREVOKE", "a", "b", "c", "d"],
    ] {
        let name = call[0].to_ascii_lowercase();
        assert_eq!(
            c.cmd(call),
            Reply::Error(format!(
                "ERR wrong number of arguments for '{name}' command"
            )),
            "{call:?} in MULTI"
        );
    }
    assert_eq!(
        c.cmd(&["JWTDENY.KCHECK", "a", "b", "c", "WITHCLAIMS"]),
        Reply::Status("QUEUED".into()),
        "a KCHECK of the right arity is queued"
    );
    assert_err(
        &c.cmd(&["EXEC"]),
        "EXECABORT",
        "EXEC after refused commands",
    );
}

/// Every load declares the info again: a server that kept the old declaration, or refused the
/// new one, would show the default arity (-1) after a reload.
#[test]
fn command_info_is_declared_on_every_load() {
    let server = ServerBuilder::new().without_module().start();
    let so = module_path();
    let so = so.to_string_lossy();
    let keys = jwks_path();
    let keys = keys.to_string_lossy();
    for round in 1..=2 {
        ok(
            server.cmd(&["MODULE", "LOAD", &so, "keys-file", &keys]),
            &format!("MODULE LOAD, round {round}"),
        );
        for (name, arity) in ARITIES {
            assert_eq!(
                command_info(&server, name).arity,
                arity,
                "{name}, round {round}"
            );
        }
        assert_eq!(
            command_info(&server, "jwtdeny.kcheck").key_specs,
            vec![spec(&["RO", "access"], 1, 1)],
            "round {round}"
        );
        ok(
            server.cmd(&["MODULE", "UNLOAD", "jwtdeny"]),
            "MODULE UNLOAD",
        );
    }
}

#[test]
fn command_getkeys_finds_the_declared_keys() {
    let server = Server::with_vector_keys();
    let v = vector("valid-HS256");
    let entry = deny_key("user-hs256", v.iat.unwrap());
    let subject = subject_key("user-hs256");
    for name in ["JWTDENY.KCHECK", "JWTDENY.KINSPECT", "JWTDENY.KREVOKE"] {
        let r = server.cmd(&["COMMAND", "GETKEYS", name, &entry, &subject, &v.token]);
        let keys: Vec<String> = r.array().iter().map(Reply::text).collect();
        assert_eq!(keys, vec![entry.clone(), subject.clone()], "{name}: {r}");
    }
    let r = server.cmd(&[
        "COMMAND",
        "GETKEYS",
        "JWTDENY.KCHECK",
        &entry,
        &subject,
        &v.token,
        "WITHCLAIMS",
    ]);
    let keys: Vec<String> = r.array().iter().map(Reply::text).collect();
    assert_eq!(
        keys,
        vec![entry.clone(), subject.clone()],
        "KCHECK WITHCLAIMS: {r}"
    );
    let r = server.cmd(&[
        "COMMAND",
        "GETKEYS",
        "JWTDENY.KREVOKEALL",
        &subject,
        "user-hs256",
    ]);
    let keys: Vec<String> = r.array().iter().map(Reply::text).collect();
    assert_eq!(keys, vec![subject.clone()], "KREVOKEALL: {r}");
}

/// The keyed forms behave as the standalone ones when given the token's own keys, and refuse
/// any other keys.
#[test]
fn keyed_forms_work_with_their_own_keys_only() {
    let server = Server::with_vector_keys();
    let v = vector("valid-ES256");
    let entry = deny_key("user-es256", v.iat.unwrap());
    let subject = subject_key("user-es256");
    let t = v.token.as_str();
    assert_int(
        &server.cmd(&["JWTDENY.KCHECK", &entry, &subject, t]),
        1,
        "KCHECK",
    );
    let r = server.cmd(&["JWTDENY.KCHECK", &entry, "jwtdeny:{someone}", t]);
    assert_err(&r, "ERR", "KCHECK with a foreign subject key");
    let r = server.cmd(&["JWTDENY.KREVOKE", "jwtdeny:{someone}:1", &subject, t]);
    assert_err(&r, "ERR", "KREVOKE with a foreign entry key");
    assert_eq!(server.keys(), Vec::<String>::new(), "nothing written");
    assert_int(
        &server.cmd(&["JWTDENY.KREVOKE", &entry, &subject, t]),
        1,
        "KREVOKE",
    );
    assert_int(&server.check(t), 0, "CHECK after KREVOKE");
    let i = server.cmd(&["JWTDENY.KINSPECT", &entry, &subject, t]);
    assert_eq!(i.array()[1], bulk("revoked"), "KINSPECT {i}");
    let at = (now() - 5).to_string();
    let r = server.cmd(&[
        "JWTDENY.KREVOKEALL",
        "jwtdeny:{other}",
        "user-es256",
        "AT",
        &at,
    ]);
    assert_err(&r, "ERR", "KREVOKEALL with a foreign key");
    assert_int(
        &server.cmd(&["JWTDENY.KREVOKEALL", &subject, "user-es256", "AT", &at]),
        at.parse().unwrap(),
        "KREVOKEALL",
    );
}
