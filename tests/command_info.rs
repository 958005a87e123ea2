//! Command metadata (issue 3 §5, issue 6): COMMAND INFO shows each command's flags and the
//! keyed forms' key positions, and COMMAND GETKEYS finds their keys.

mod common;
mod support;

use common::*;
use support::*;

#[track_caller]
fn assert_flags(info: &CommandInfo, name: &str, want: &[&str], not: &[&str]) {
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
