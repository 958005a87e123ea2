//! Text from outside never reaches a printf format: keys files, paths, module arguments and
//! config values full of `%n` are logged (escaped) and the server stays up. Before the one
//! logging path (src/log.rs) each of these aborted redis-server (`%n in writable segment`).

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::fs;

/// What the crash looked like: glibc's fortify check, then SIGABRT.
fn assert_no_crash(log: &str, what: &str) {
    for sign in [
        "writable segment",
        "crashed by signal",
        "Aborted",
        "SIGABRT",
    ] {
        assert!(!log.contains(sign), "{what}: the server crashed:\n{log}");
    }
}

/// Asserts the server still serves a verified token, after whatever was done to it.
#[track_caller]
fn assert_serving(server: &Server, what: &str) {
    assert_eq!(
        server.cmd(&["PING"]),
        Reply::Status("PONG".into()),
        "{what}"
    );
    let t = mint_default("HS256", &claims("alive", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, what);
    assert_no_crash(&server.log(), what);
}

const FORMAT: &str = "%n%n%n%n%s%s%p%x";

fn enc_key(kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "use": "enc", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})
}

fn short_secret(kid: &str) -> Value {
    json!({"kty": "oct", "kid": kid, "k": "AAAA"})
}

#[test]
fn a_skipped_key_with_a_format_kid_is_logged_safely_at_load() {
    let dir = TempDir::new("fmt-load");
    let path = dir.path().join("jwks.json");
    write_jwks(&path, &[jwk("shared-hs256"), enc_key(FORMAT)]);
    let server = ServerBuilder::new().keys_file(&path).start();
    assert_serving(&server, "after load");
    let log = server.log();
    assert!(
        log.contains(&format!("skipped 1 key: key '{FORMAT}'")),
        "the kid is logged as text:\n{log}"
    );
}

#[test]
fn keys_reload_and_config_set_with_format_text_keep_the_server_up() {
    let server = Server::with_vector_keys();
    let dir = TempDir::new("fmt-reload");

    // A duplicate kid and a too-short secret, both under a format kid: refused, keys kept.
    for (name, keys) in [
        (
            "dup",
            vec![jwk("shared-hs256"), short_secret("x"), enc_key("y")],
        ),
        (
            "dup-kid",
            vec![
                jwk("shared-hs256"),
                json!({"kty":"oct","kid":"%n%n%s","k":b64(&[7u8; 32])}),
                json!({"kty":"oct","kid":"%n%n%s","k":b64(&[8u8; 32])}),
            ],
        ),
        ("short", vec![jwk("shared-hs256"), short_secret(FORMAT)]),
    ] {
        let path = dir.path().join(format!("{name}.json"));
        write_jwks(&path, &keys);
        let r = server.config_set("jwtdeny.keys-file", &path.to_string_lossy());
        assert!(r.is_error(), "{name}: CONFIG SET refused: {r}");
        assert_serving(&server, &format!("{name}: after CONFIG SET"));
        // The same file behind the configured path, then KEYS RELOAD.
        fs::copy(&path, dir.path().join("current.json")).expect("copy");
        ok_set(&server, "jwtdeny.keys-file", &jwks_path().to_string_lossy());
    }

    // A successful reload from a path holding format specifiers logs the path.
    let fmt_dir = dir.path().join("%n%n%s");
    fs::create_dir_all(&fmt_dir).expect("mkdir");
    let good = fmt_dir.join("%n.json");
    fs::copy(jwks_path(), &good).expect("copy");
    ok_set(&server, "jwtdeny.keys-file", &good.to_string_lossy());
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 7, "KEYS RELOAD");
    assert_serving(&server, "after a reload from a %n path");
    assert!(
        server.log().contains("reloaded 7 keys from"),
        "{}",
        server.log()
    );

    // The file renamed away: RELOAD fails, logs the path, keeps the keys.
    fs::rename(&good, fmt_dir.join("gone.json")).expect("rename");
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(
        r.error().is_some_and(|e| e.contains("cannot read")),
        "RELOAD of a missing file: {r}"
    );
    assert_serving(&server, "after RELOAD of a renamed file");

    // Config values with format specifiers are refused with an error, never logged raw.
    for (name, value) in [
        ("jwtdeny.leeway", "%n%n"),
        ("jwtdeny.algorithms", FORMAT),
        ("jwtdeny.keys-file", "/nonexistent/%n%n%s"),
        ("jwtdeny.max-token-bytes", "%s%s%s%n"),
    ] {
        let r = server.config_set(name, value);
        assert!(r.is_error(), "CONFIG SET {name} {value}: {r}");
        assert_serving(&server, &format!("after CONFIG SET {name}"));
    }
    // Accepted ones (issuer and audience are free text) are fine too.
    ok_set(&server, "jwtdeny.issuer", FORMAT);
    ok_set(&server, "jwtdeny.issuer", "");
}

fn ok_set(server: &Server, name: &str, value: &str) {
    assert_eq!(
        server.config_set(name, value),
        Reply::Status("OK".into()),
        "CONFIG SET {name}"
    );
}

#[test]
fn module_arguments_with_format_text_are_refused_cleanly() {
    // At start-up: the load is refused (the server exits), with our message in the log.
    for args in [["leeway", "%n%n"], ["%n%n%s", "1"]] {
        let log = ServerBuilder::new()
            .vector_keys()
            .module_args(&args)
            .start_expect_failure();
        assert_no_crash(&log, &format!("{args:?}"));
        assert!(
            log.contains("jwtdeny: refusing to load"),
            "{args:?}: the refusal is logged:\n{log}"
        );
    }

    // At runtime: MODULE LOAD with such arguments fails and the server stays up.
    let server = ServerBuilder::new().without_module().start();
    let module = module_path().to_string_lossy().into_owned();
    for args in [["leeway", "%n%n"], ["%n%n%s", "1"]] {
        let mut cmd = vec!["MODULE", "LOAD", module.as_str()];
        cmd.extend(args);
        let r = server.cmd(&cmd);
        assert!(r.is_error(), "MODULE LOAD {args:?}: {r}");
        assert_eq!(server.cmd(&["PING"]), Reply::Status("PONG".into()));
        assert_no_crash(&server.log(), "MODULE LOAD");
        assert!(
            server.log().contains("refusing to load"),
            "{}",
            server.log()
        );
    }
    // And a good load after the refused ones works.
    let r = server.cmd(&[
        "MODULE",
        "LOAD",
        module.as_str(),
        "keys-file",
        &jwks_path().to_string_lossy(),
    ]);
    assert_eq!(r, Reply::Status("OK".into()), "MODULE LOAD after refusals");
    assert_serving(&server, "after a good MODULE LOAD");
}

#[test]
fn a_keys_file_with_a_keys_file_path_option_fails_closed_on_a_format_path() {
    // keys-file as a module argument naming a missing %n path: loaded, fail closed, logged.
    let server = ServerBuilder::new()
        .module_args(&["keys-file", "/nonexistent/%n%n%s.json"])
        .start();
    assert_eq!(server.cmd(&["PING"]), Reply::Status("PONG".into()));
    let t = mint_default("HS256", &claims("x", SOME_IAT, FAR_EXP));
    assert_err(&server.check(&t), "NOKEY", "no keys loaded");
    let log = server.log();
    assert_no_crash(&log, "start-up");
    assert!(log.contains("/nonexistent/%n%n%s.json"), "{log}");
}

#[test]
fn log_lines_escape_control_characters_and_are_capped() {
    let dir = TempDir::new("fmt-ctl");
    let path = dir.path().join("jwks.json");
    let kid = format!(
        "evil\r\n12345:M 01 Jan 2026 00:00:00.000 # forged{}",
        "x".repeat(5000)
    );
    write_jwks(&path, &[jwk("shared-hs256"), enc_key(&kid)]);
    let server = ServerBuilder::new().keys_file(&path).start();
    assert_serving(&server, "after load");
    let log = server.log();
    assert!(
        !log.lines().any(|l| l.starts_with("12345:M 01 Jan 2026")),
        "a kid cannot forge a log line:\n{log}"
    );
    assert!(log.contains("evil\\r\\n12345"), "escaped in the log");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 3000, "log lines are capped: {longest} chars");
}

/// Every log line of the module goes through src/log.rs: no other code may call RedisModule_Log
/// or redis-module's printf-format loggers (clippy.toml forbids them too; this also covers
/// raw calls clippy cannot see).
#[test]
fn src_logs_only_through_the_one_path() {
    let mut offenders = Vec::new();
    for dir in ["src", "core/src"] {
        for entry in fs::read_dir(repo_root().join(dir)).expect("read src") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "log.rs") {
                continue;
            }
            let text = fs::read_to_string(&path).expect("read");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let bad = [
                    "RedisModule_Log",
                    ".log_notice(",
                    ".log_warning(",
                    ".log_debug(",
                    ".log_verbose(",
                    "logging::",
                ];
                if bad.iter().any(|b| code.contains(b)) {
                    offenders.push(format!("{}:{}: {line}", path.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "log only through src/log.rs:\n{}",
        offenders.join("\n")
    );
}
