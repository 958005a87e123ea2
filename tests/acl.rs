//! ACL (issue 3 §5). Redis 7.0 has no module ACL categories, so the per-command rules
//! (`+jwtdeny.check`) and the flag-derived categories (`-@write`) are what is tested everywhere;
//! the module's own `@jwtdeny` category only where the server lists it in ACL CAT (Valkey,
//! Redis 7.4+).

use crate::common;
use crate::support;

use common::*;
use support::*;

/// A connection authenticated as `user` (created `nopass`, so any password is accepted).
fn login(server: &Server, user: &str) -> Conn {
    let mut c = server.conn();
    ok(
        c.cmd(&["AUTH", user, "any-password"]),
        &format!("AUTH {user}"),
    );
    c
}

/// The commands the module registered, sorted, as the server lists them.
fn module_commands(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server
        .cmd(&["COMMAND", "LIST", "FILTERBY", "MODULE", "jwtdeny"])
        .array()
        .iter()
        .map(|r| r.text().to_ascii_lowercase())
        .collect();
    names.sort();
    assert!(
        names.len() >= 15,
        "COMMAND LIST FILTERBY MODULE jwtdeny: {names:?}"
    );
    names
}

#[track_caller]
fn assert_noperm(r: &Reply, what: &str) {
    assert_err(r, "NOPERM", what);
}

#[test]
fn a_user_allowed_only_check_can_check_and_nothing_else() {
    let server = Server::with_vector_keys();
    ok(
        server.cmd(&[
            "ACL",
            "SETUSER",
            "checker",
            "on",
            "nopass",
            "+jwtdeny.check",
        ]),
        "ACL SETUSER checker",
    );
    let mut c = login(&server, "checker");
    let v = vector("valid-HS256");
    let t = v.token.as_str();

    assert_int(&c.cmd(&["JWTDENY.CHECK", t]), 1, "checker CHECK");
    c.cmd(&["JWTDENY.CHECK", t, "WITHCLAIMS"]).array();
    assert_err(
        &c.cmd(&["JWTDENY.CHECK", vector("expired").token.as_str()]),
        "EXPIRED",
        "checker CHECK of an expired token",
    );
    assert_noperm(&c.cmd(&["JWTDENY.REVOKE", t]), "checker REVOKE");
    assert_noperm(
        &c.cmd(&["JWTDENY.REVOKEALL", "user-hs256"]),
        "checker REVOKEALL",
    );
    assert_noperm(&c.cmd(&["JWTDENY.KEYS", "RELOAD"]), "checker KEYS RELOAD");
    assert_noperm(&c.cmd(&["JWTDENY.KEYS", "LIST"]), "checker KEYS LIST");
    assert_noperm(&c.cmd(&["JWTDENY.INSPECT", t]), "checker INSPECT");
    let entry = deny_key("user-hs256", v.iat.unwrap());
    let subject = subject_key("user-hs256");
    assert_noperm(
        &c.cmd(&["JWTDENY.KREVOKE", &entry, &subject, t]),
        "checker KREVOKE",
    );
    assert_noperm(&c.cmd(&["GET", "x"]), "checker GET");

    // Nothing was written; the token is still active.
    assert_eq!(server.keys(), Vec::<String>::new());
    assert_int(
        &c.cmd(&["JWTDENY.CHECK", t]),
        1,
        "checker CHECK after refusals",
    );
    assert_eq!(info(&server)["revokeall_calls"], "0");
    assert_eq!(info(&server)["last_reload_result"], "ok");

    // It sees revocations made by others.
    assert_int(&server.revoke(t), 1, "default user REVOKE");
    assert_int(
        &c.cmd(&["JWTDENY.CHECK", t]),
        0,
        "checker CHECK of a revoked token",
    );
}

/// Whether `ACL CAT` lists the module's own category: the server has module ACL categories
/// (Valkey, Redis 7.2+) and so lets a module put its commands in categories.
fn has_module_categories(server: &Server) -> bool {
    server
        .cmd(&["ACL", "CAT"])
        .array()
        .iter()
        .any(|c| c.text() == "jwtdeny")
}

fn server_version(server: &Server) -> String {
    let m = info_section(server, "server");
    match m.get("valkey_version") {
        Some(v) => format!("Valkey {v}"),
        None => format!(
            "Redis {}",
            m.get("redis_version").cloned().unwrap_or_default()
        ),
    }
}

/// A user that may run everything but the write commands: CHECK, KCHECK and INSPECT work, no
/// revocation does.
fn assert_reader_can_check_but_not_revoke(server: &Server, user: &str) {
    let mut c = login(server, user);
    let v = vector("valid-EdDSA");
    let t = v.token.as_str();
    let entry = deny_key("user-eddsa", v.iat.unwrap());
    let subject = subject_key("user-eddsa");

    assert_int(&c.cmd(&["JWTDENY.CHECK", t]), 1, "reader CHECK");
    assert_int(
        &c.cmd(&["JWTDENY.KCHECK", &entry, &subject, t]),
        1,
        "reader KCHECK",
    );
    c.cmd(&["JWTDENY.INSPECT", t]).array();
    assert_noperm(&c.cmd(&["JWTDENY.REVOKE", t]), "reader REVOKE");
    assert_noperm(
        &c.cmd(&["JWTDENY.REVOKEALL", "user-eddsa"]),
        "reader REVOKEALL",
    );
    assert_noperm(
        &c.cmd(&["JWTDENY.KREVOKE", &entry, &subject, t]),
        "reader KREVOKE",
    );
    assert_noperm(
        &c.cmd(&["JWTDENY.KREVOKEALL", &subject, "user-eddsa"]),
        "reader KREVOKEALL",
    );
    assert_noperm(&c.cmd(&["SET", "x", "1"]), "reader SET");
    assert_eq!(server.keys(), Vec::<String>::new(), "nothing written");
}

/// `+@all -@write`. Redis 7.0 puts module commands in no category at all (`ACL CAT write`
/// does not list them, whatever their flags), so there `-@write` cannot cover them and the
/// documented rule names the write commands; a server with module categories must honour
/// `-@write` for the module's write commands.
#[test]
fn a_user_without_write_commands_can_check_but_not_revoke() {
    let server = Server::with_vector_keys();
    if has_module_categories(&server) {
        ok(
            server.cmd(&[
                "ACL", "SETUSER", "reader", "on", "nopass", "~*", "+@all", "-@write",
            ]),
            "ACL SETUSER reader +@all -@write",
        );
        let writes: Vec<String> = server
            .cmd(&["ACL", "CAT", "write"])
            .array()
            .iter()
            .map(|r| r.text().to_ascii_lowercase())
            .collect();
        for name in [
            "jwtdeny.revoke",
            "jwtdeny.revokeall",
            "jwtdeny.krevoke",
            "jwtdeny.krevokeall",
        ] {
            assert!(
                writes.iter().any(|w| w == name),
                "{}: ACL CAT write does not list {name}, so -@write does not cover it",
                server_version(&server)
            );
        }
        assert_reader_can_check_but_not_revoke(&server, "reader");
    } else {
        println!(
            "note: {} has no module ACL categories: module commands are in no category, so \
             -@write cannot cover them; testing the per-command rule instead",
            server_version(&server)
        );
        ok(
            server.cmd(&[
                "ACL",
                "SETUSER",
                "reader",
                "on",
                "nopass",
                "~*",
                "+@all",
                "-@write",
                "-jwtdeny.revoke",
                "-jwtdeny.revokeall",
                "-jwtdeny.krevoke",
                "-jwtdeny.krevokeall",
            ]),
            "ACL SETUSER reader +@all -@write -jwtdeny.revoke ...",
        );
        assert_reader_can_check_but_not_revoke(&server, "reader");
    }
}

/// The keyed forms declare their keys, so ACL key patterns apply to them.
#[test]
fn key_patterns_apply_to_the_keyed_forms() {
    let server = Server::with_vector_keys();
    ok(
        server.cmd(&[
            "ACL",
            "SETUSER",
            "alice-app",
            "on",
            "nopass",
            "~jwtdeny:{alice}*",
            "+jwtdeny.kcheck",
            "+jwtdeny.krevoke",
        ]),
        "ACL SETUSER alice-app",
    );
    let mut c = login(&server, "alice-app");
    let alice = mint_default("HS256", &claims("alice", SOME_IAT, FAR_EXP));
    let bob = mint_default("HS256", &claims("bob", SOME_IAT, FAR_EXP));
    let (ae, asub) = (deny_key("alice", SOME_IAT), subject_key("alice"));
    let (be, bsub) = (deny_key("bob", SOME_IAT), subject_key("bob"));
    assert_int(
        &c.cmd(&["JWTDENY.KCHECK", &ae, &asub, &alice]),
        1,
        "KCHECK alice",
    );
    assert_noperm(&c.cmd(&["JWTDENY.KCHECK", &be, &bsub, &bob]), "KCHECK bob");
    assert_noperm(
        &c.cmd(&["JWTDENY.KREVOKE", &be, &bsub, &bob]),
        "KREVOKE bob",
    );
    assert_int(
        &c.cmd(&["JWTDENY.KREVOKE", &ae, &asub, &alice]),
        1,
        "KREVOKE alice",
    );
    assert_eq!(server.keys(), vec![ae]);
}

/// The read-only keyed forms declare their keys `RO access`, so a read-only key pattern admits
/// them; KREVOKE inserts its entry key, which needs write permission.
#[test]
fn a_read_only_key_pattern_admits_kcheck_and_kinspect_only() {
    let server = Server::with_vector_keys();
    ok(
        server.cmd(&[
            "ACL",
            "SETUSER",
            "ro-app",
            "on",
            "nopass",
            "+jwtdeny.kcheck",
            "+jwtdeny.kinspect",
            "+jwtdeny.krevoke",
            "+jwtdeny.krevokeall",
            "%R~jwtdeny:*",
        ]),
        "ACL SETUSER ro-app",
    );
    let mut c = login(&server, "ro-app");
    let v = vector("valid-RS256");
    let sub = v.sub.clone().unwrap();
    let t = v.token.as_str();
    let (entry, subject) = (deny_key(&sub, v.iat.unwrap()), subject_key(&sub));

    assert_int(
        &c.cmd(&["JWTDENY.KCHECK", &entry, &subject, t]),
        1,
        "ro-app KCHECK",
    );
    let r = c.cmd(&["JWTDENY.KCHECK", &entry, &subject, t, "WITHCLAIMS"]);
    assert_eq!(r.array()[0], Reply::Int(1), "ro-app KCHECK WITHCLAIMS: {r}");
    let i = c.cmd(&["JWTDENY.KINSPECT", &entry, &subject, t]);
    assert_eq!(i.array()[1], bulk("active"), "ro-app KINSPECT {i}");
    assert_noperm(
        &c.cmd(&["JWTDENY.KREVOKE", &entry, &subject, t]),
        "ro-app KREVOKE",
    );
    // Refused for the key it writes; the subject key, which it only reads, passed.
    let log = server.cmd(&["ACL", "LOG", "1"]);
    let last = log.array().first().expect("an ACL LOG entry").array();
    let at = |k: &str| {
        last.chunks(2)
            .find(|kv| kv[0].text() == k)
            .map(|kv| kv[1].text())
    };
    assert_eq!(at("reason").as_deref(), Some("key"), "ACL LOG {log}");
    assert_eq!(
        at("object").as_deref(),
        Some(entry.as_str()),
        "ACL LOG {log}"
    );
    assert_noperm(
        &c.cmd(&["JWTDENY.KREVOKEALL", &subject, &sub]),
        "ro-app KREVOKEALL",
    );
    assert_eq!(server.keys(), Vec::<String>::new(), "nothing written");

    // Its reads see what others wrote, through both keys.
    assert_int(&server.revoke(t), 1, "default user REVOKE");
    assert_int(
        &c.cmd(&["JWTDENY.KCHECK", &entry, &subject, t]),
        0,
        "ro-app KCHECK of a revoked token",
    );
    let other = vector("valid-RS384");
    let osub = other.sub.clone().unwrap();
    let (oentry, osubject) = (deny_key(&osub, other.iat.unwrap()), subject_key(&osub));
    let at = (now() - 1).to_string();
    server.cmd(&["JWTDENY.REVOKEALL", &osub, "AT", &at]).int();
    let i = c.cmd(&["JWTDENY.KINSPECT", &oentry, &osubject, &other.token]);
    assert_eq!(
        i.array()[1],
        bulk("revoked"),
        "ro-app KINSPECT after REVOKEALL {i}"
    );
}

/// The write forms need read and write permission: KREVOKE reads the subject's cutoff and
/// inserts the entry, KREVOKEALL reads and updates the cutoff. `%RW~` (as `~`) admits both,
/// `%W~` alone neither.
#[test]
fn the_write_keyed_forms_need_a_read_write_key_pattern() {
    let server = Server::with_vector_keys();
    for (user, pattern) in [("rw-app", "%RW~jwtdeny:*"), ("w-app", "%W~jwtdeny:*")] {
        ok(
            server.cmd(&[
                "ACL",
                "SETUSER",
                user,
                "on",
                "nopass",
                "+jwtdeny.kcheck",
                "+jwtdeny.krevoke",
                "+jwtdeny.krevokeall",
                pattern,
            ]),
            &format!("ACL SETUSER {user}"),
        );
    }
    let v = vector("valid-PS256");
    let sub = v.sub.clone().unwrap();
    let t = v.token.as_str();
    let (entry, subject) = (deny_key(&sub, v.iat.unwrap()), subject_key(&sub));
    let at = (now() - 5).to_string();

    let mut w = login(&server, "w-app");
    assert_noperm(
        &w.cmd(&["JWTDENY.KCHECK", &entry, &subject, t]),
        "w-app KCHECK",
    );
    assert_noperm(
        &w.cmd(&["JWTDENY.KREVOKE", &entry, &subject, t]),
        "w-app KREVOKE",
    );
    assert_noperm(
        &w.cmd(&["JWTDENY.KREVOKEALL", &subject, &sub, "AT", &at]),
        "w-app KREVOKEALL",
    );
    assert_eq!(server.keys(), Vec::<String>::new(), "nothing written");

    let mut rw = login(&server, "rw-app");
    assert_int(
        &rw.cmd(&["JWTDENY.KREVOKE", &entry, &subject, t]),
        1,
        "rw-app KREVOKE",
    );
    assert_int(
        &rw.cmd(&["JWTDENY.KCHECK", &entry, &subject, t]),
        0,
        "rw-app KCHECK after KREVOKE",
    );
    assert_int(
        &rw.cmd(&["JWTDENY.KREVOKEALL", &subject, &sub, "AT", &at]),
        at.parse().unwrap(),
        "rw-app KREVOKEALL",
    );
    let mut keys = server.keys();
    keys.sort();
    assert_eq!(keys, vec![subject, entry]);
}

#[test]
fn the_module_category_where_the_server_has_module_categories() {
    let server = Server::with_vector_keys();
    if !has_module_categories(&server) {
        let version = server_version(&server);
        println!(
            "skipped: this server ({version}) has no module ACL categories (ACL CAT does not \
             list jwtdeny); the per-command rules are tested instead"
        );
        eprintln!("skipped: no module ACL categories on {version}");
        return;
    }
    let mut members: Vec<String> = server
        .cmd(&["ACL", "CAT", "jwtdeny"])
        .array()
        .iter()
        .map(|r| r.text().to_ascii_lowercase())
        .collect();
    members.sort();
    // Every command the module registers, and nothing else.
    assert_eq!(members, module_commands(&server), "ACL CAT jwtdeny");

    ok(
        server.cmd(&[
            "ACL",
            "SETUSER",
            "jwt",
            "on",
            "nopass",
            "~jwtdeny:*",
            "+@jwtdeny",
        ]),
        "ACL SETUSER +@jwtdeny",
    );
    let mut c = login(&server, "jwt");
    let t = vector("valid-RS256").token;
    assert_int(&c.cmd(&["JWTDENY.CHECK", t.as_str()]), 1, "@jwtdeny CHECK");
    assert_int(
        &c.cmd(&["JWTDENY.REVOKE", t.as_str()]),
        1,
        "@jwtdeny REVOKE",
    );
    let at = (now() - 1).to_string();
    c.cmd(&["JWTDENY.REVOKEALL", "x", "AT", &at]).int();
    assert_int(
        &c.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        7,
        "@jwtdeny KEYS RELOAD",
    );
    assert_noperm(&c.cmd(&["GET", "jwtdeny:x"]), "@jwtdeny user GET");

    ok(
        server.cmd(&[
            "ACL",
            "SETUSER",
            "nojwt",
            "on",
            "nopass",
            "~*",
            "+@all",
            "-@jwtdeny",
        ]),
        "ACL SETUSER -@jwtdeny",
    );
    let mut c = login(&server, "nojwt");
    assert_noperm(&c.cmd(&["JWTDENY.CHECK", t.as_str()]), "-@jwtdeny CHECK");
    assert_noperm(&c.cmd(&["JWTDENY.REVOKE", t.as_str()]), "-@jwtdeny REVOKE");
    assert!(!c.cmd(&["GET", "x"]).is_error(), "-@jwtdeny user GET");
}

/// The module's ACL category must not stop it from being loaded a second time: a server with
/// module categories keeps `@jwtdeny` after MODULE UNLOAD (and after a refused MODULE LOADEX,
/// which loads and unloads the module), so adding it again must not be fatal.
#[test]
fn the_module_loads_again_after_unload() {
    let server = ServerBuilder::new().without_module().start();
    let so = module_path();
    let so = so.to_string_lossy();
    let keys = jwks_path();
    let keys = keys.to_string_lossy();
    let t = vector("valid-ES384").token;
    for round in 1..=3 {
        let r = server.cmd(&["MODULE", "LOAD", &so, "keys-file", &keys]);
        assert_eq!(
            r,
            Reply::Status("OK".into()),
            "{}: MODULE LOAD, round {round}",
            server_version(&server)
        );
        assert_int(&server.check(&t), 1, &format!("CHECK, round {round}"));
        if has_module_categories(&server) {
            let n = server.cmd(&["ACL", "CAT", "jwtdeny"]).array().len();
            let want = module_commands(&server).len();
            assert_eq!(n, want, "ACL CAT jwtdeny after load {round}");
        }
        ok(
            server.cmd(&["MODULE", "UNLOAD", "jwtdeny"]),
            "MODULE UNLOAD",
        );
    }
}
