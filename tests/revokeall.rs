//! JWTDENY.REVOKEALL (issue 3 §1): a per-subject cutoff that revokes every token issued at or
//! before it, only moves forward, expires with jwtdeny.max-lifetime, and travels to replicas
//! and the AOF as a plain SET.

use crate::common;
use crate::support;

use common::*;
use support::*;

const SUB: &str = "alice";

/// An HS256 token of `sub` issued at `iat`, valid until 2100.
fn token(sub: &str, iat: i64) -> String {
    mint_default("HS256", &claims(sub, iat, FAR_EXP))
}

fn revokeall_at(server: &Server, sub: &str, at: i64) -> Reply {
    server.cmd(&["JWTDENY.REVOKEALL", sub, "AT", &at.to_string()])
}

#[test]
fn tokens_issued_at_or_before_the_cutoff_are_revoked() {
    let server = Server::with_vector_keys();
    let cutoff = now() - 1000;
    let before = token(SUB, cutoff - 1);
    let at = token(SUB, cutoff);
    let after = token(SUB, cutoff + 1);
    let other_sub = token("bob", cutoff - 1);
    for t in [&before, &at, &after, &other_sub] {
        assert_int(&server.check(t), 1, "CHECK before REVOKEALL");
    }

    assert_int(&revokeall_at(&server, SUB, cutoff), cutoff, "REVOKEALL AT");
    let key = subject_key(SUB);
    assert_eq!(server.keys(), vec![key.clone()], "only the cutoff key");
    assert_eq!(
        server.cmd(&["GET", &key]).text(),
        cutoff.to_string(),
        "the cutoff is stored as an integer string"
    );

    assert_int(&server.check(&before), 0, "CHECK iat < cutoff");
    assert_int(&server.check(&at), 0, "CHECK iat == cutoff");
    assert_int(&server.check(&after), 1, "CHECK iat > cutoff");
    assert_int(&server.check(&other_sub), 1, "CHECK another subject");

    // REVOKE of a covered token answers 0 and writes no entry of its own.
    assert_int(&server.revoke(&before), 0, "REVOKE iat < cutoff");
    assert_int(&server.revoke(&at), 0, "REVOKE iat == cutoff");
    assert_eq!(
        server.keys(),
        vec![key.clone()],
        "no entry for covered tokens"
    );

    // A token issued after the cutoff is revoked as usual.
    assert_int(&server.revoke(&after), 1, "REVOKE iat > cutoff");
    assert_int(&server.check(&after), 0, "CHECK after REVOKE");
    assert_eq!(
        server.keys(),
        vec![key, deny_key(SUB, cutoff + 1)],
        "the entry of the token issued after the cutoff"
    );

    // Every algorithm is covered alike: the cutoff is about the subject, not the key.
    for alg in ["RS256", "ES256", "EdDSA"] {
        let t = mint_default(alg, &claims(SUB, cutoff - 5, FAR_EXP));
        assert_int(&server.check(&t), 0, &format!("CHECK {alg} token covered"));
    }
}

#[test]
fn default_cutoff_is_now_and_the_reply_is_the_cutoff() {
    let server = Server::with_vector_keys();
    let t0 = now();
    let r = server.cmd(&["JWTDENY.REVOKEALL", SUB]);
    let t1 = now();
    let cutoff = r.int();
    assert!(
        (t0..=t1).contains(&cutoff),
        "default cutoff {cutoff} not within [{t0}, {t1}]"
    );
    assert_eq!(
        server.cmd(&["GET", &subject_key(SUB)]).text(),
        cutoff.to_string()
    );
    assert_int(
        &server.check(token(SUB, cutoff)),
        0,
        "token issued this second",
    );
    assert_int(
        &server.check(token(SUB, cutoff - 3600)),
        0,
        "token issued an hour ago",
    );
    assert_int(
        &server.check(token(SUB, cutoff + 1)),
        1,
        "token issued after the cutoff",
    );
    // The keyword is case-insensitive.
    assert_int(
        &server.cmd(&["jwtdeny.revokeall", SUB, "at", &(cutoff - 10).to_string()]),
        cutoff,
        "lowercase at",
    );
}

#[test]
fn the_cutoff_only_moves_forward() {
    let server = Server::with_vector_keys();
    let t = now() - 500;
    let key = subject_key(SUB);
    assert_int(&revokeall_at(&server, SUB, t), t, "first cutoff");
    assert_int(
        &revokeall_at(&server, SUB, t - 100),
        t,
        "an older AT returns the cutoff in force",
    );
    assert_eq!(
        server.cmd(&["GET", &key]).text(),
        t.to_string(),
        "not lowered"
    );
    assert_int(
        &server.check(token(SUB, t)),
        0,
        "still covered after older AT",
    );
    assert_int(&revokeall_at(&server, SUB, t), t, "the same AT again");
    assert_int(&revokeall_at(&server, SUB, t + 10), t + 10, "a later AT");
    assert_eq!(server.cmd(&["GET", &key]).text(), (t + 10).to_string());
    assert_int(
        &server.check(token(SUB, t + 10)),
        0,
        "covered by the later cutoff",
    );
    assert_int(
        &server.check(token(SUB, t + 11)),
        1,
        "after the later cutoff",
    );
    // No AT: now, which is later still.
    let r = server.cmd(&["JWTDENY.REVOKEALL", SUB]).int();
    assert!(r >= t + 10 && r <= now(), "default cutoff {r}");
    assert_int(
        &revokeall_at(&server, SUB, t + 20),
        r,
        "an AT older than the default cutoff",
    );
}

#[test]
fn bad_arguments_are_refused() {
    let server = Server::with_vector_keys();
    let future = now() + 3600;
    let r = revokeall_at(&server, SUB, future);
    assert_err(&r, "ERR", "AT in the future");
    let r = server.cmd(&["JWTDENY.REVOKEALL", ""]);
    assert_err(&r, "ERR", "empty sub");
    let r = server.cmd(&["JWTDENY.REVOKEALL", "", "AT", "1000"]);
    assert_err(&r, "ERR", "empty sub with AT");
    let r = server.cmd(&["JWTDENY.REVOKEALL", SUB, "AT", "yesterday"]);
    assert_err(&r, "ERR", "AT not an integer");
    let r = server.cmd(&["JWTDENY.REVOKEALL", SUB, "AT", "1.5"]);
    assert_err(&r, "ERR", "AT not an integer");
    let r = server.cmd(&["JWTDENY.REVOKEALL", SUB, "SINCE", "1000"]);
    assert_err(&r, "ERR", "unknown keyword");
    let r = server.cmd(&["JWTDENY.REVOKEALL"]);
    assert_err(&r, "ERR", "no sub");
    let r = server.cmd(&["JWTDENY.REVOKEALL", SUB, "AT"]);
    assert_err(&r, "ERR", "AT without a value");
    let r = server.cmd(&["JWTDENY.REVOKEALL", SUB, "AT", "1000", "x"]);
    assert_err(&r, "ERR", "too many arguments");
    assert_eq!(server.keys(), Vec::<String>::new(), "nothing written");
    assert_int(&server.check(token(SUB, 1000)), 1, "nothing revoked");
}

#[test]
fn max_lifetime_sets_the_cutoff_expiry_and_bounds_tokens() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.max-lifetime 3600")
        .conf("jwtdeny.leeway 5")
        .start();
    assert_eq!(server.config_get("jwtdeny.max-lifetime"), "3600");
    let t = now() - 100;
    assert_int(&revokeall_at(&server, SUB, t), t, "REVOKEALL");
    let key = subject_key(SUB);
    assert_eq!(
        server.pexpiretime(&key),
        (t + 3600 + 5) * 1000,
        "cutoff key expiry = (cutoff + max-lifetime + leeway) * 1000"
    );
    // Moving the cutoff forward moves its expiry too.
    assert_int(
        &revokeall_at(&server, SUB, t + 50),
        t + 50,
        "REVOKEALL later",
    );
    assert_eq!(server.pexpiretime(&key), (t + 50 + 3600 + 5) * 1000);
    // An older AT changes neither value nor expiry.
    assert_int(&revokeall_at(&server, SUB, t), t + 50, "REVOKEALL older");
    assert_eq!(server.pexpiretime(&key), (t + 50 + 3600 + 5) * 1000);

    // Tokens living longer than max-lifetime are refused, by CHECK and REVOKE alike.
    let iat = now() - 10;
    let too_long = mint_default("HS256", &claims("bob", iat, iat + 3601));
    let just_right = mint_default("HS256", &claims("bob", iat, iat + 3600));
    assert_refused(&server, &too_long, "BADCLAIMS", "exp - iat = 3601");
    assert_int(&server.check(&just_right), 1, "CHECK exp - iat = 3600");
    // A vector valid until 2100 is far over the limit.
    assert_err(
        &server.check(vector("valid-ES256").token),
        "BADCLAIMS",
        "CHECK of a 74-year token",
    );

    // Raising the bound at runtime (0 lifts it) is refused: the cutoff above expires at
    // cutoff + 3600 + 5, after which a token it revoked but a larger bound admits would pass.
    for raised in ["0", "7200"] {
        let r = server.config_set("jwtdeny.max-lifetime", raised);
        assert!(
            r.error()
                .is_some_and(|e| e.contains("raising it from 3600")),
            "max-lifetime {raised}: {r}"
        );
    }
    assert_eq!(server.config_get("jwtdeny.max-lifetime"), "3600");
    assert_err(&server.check(&too_long), "BADCLAIMS", "limit still 3600");
    // Lowering it is allowed, and bounds tokens and new cutoffs at once.
    ok(
        server.config_set("jwtdeny.max-lifetime", "1800"),
        "max-lifetime 1800",
    );
    assert_err(
        &server.check(&just_right),
        "BADCLAIMS",
        "exp - iat = 3600 > 1800",
    );
    assert_int(&revokeall_at(&server, "carol", t), t, "REVOKEALL carol");
    assert_eq!(
        server.pexpiretime(&subject_key("carol")),
        (t + 1800 + 5) * 1000
    );
}

#[test]
fn without_max_lifetime_the_cutoff_never_expires() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.leeway 5")
        .start();
    assert_eq!(server.config_get("jwtdeny.max-lifetime"), "0");
    let t = now() - 100;
    assert_int(&revokeall_at(&server, SUB, t), t, "REVOKEALL");
    assert_eq!(server.pexpiretime(&subject_key(SUB)), -1, "no expiry");
    assert_int(
        &server.check(vector("valid-ES256").token),
        1,
        "long-lived tokens are fine without max-lifetime",
    );
}

#[test]
fn special_subjects_share_the_key_scheme() {
    let server = Server::with_vector_keys();
    let t = now() - 100;
    for (sub, encoded) in [
        ("a{b", "a%7Bb"),
        ("a}b", "a%7Db"),
        ("50%", "50%25"),
        ("{x}%", "%7Bx%7D%25"),
        ("user:42@example.com", "user:42@example.com"),
    ] {
        let skey = subject_key(encoded);
        assert_int(
            &revokeall_at(&server, sub, t),
            t,
            &format!("REVOKEALL {sub:?}"),
        );
        assert_eq!(
            server.cmd(&["EXISTS", &skey]).int(),
            1,
            "{sub:?}: cutoff stored at {skey}"
        );
        let covered = token(sub, t);
        let later = token(sub, t + 1);
        assert_int(&server.check(&covered), 0, &format!("{sub:?} covered"));
        assert_int(&server.revoke(&later), 1, &format!("{sub:?} REVOKE later"));
        let entry = format!("jwtdeny:{{{encoded}}}:{}", t + 1);
        assert_eq!(server.cmd(&["EXISTS", &entry]).int(), 1, "entry {entry}");
        // One hash tag, so one cluster slot for the subject's cutoff and entries.
        assert_eq!(hash_tag(&skey), Some(encoded), "{skey}");
        assert_eq!(hash_tag(&entry), Some(encoded), "{entry}");
        assert_eq!(key_slot(&skey), key_slot(&entry), "{skey} vs {entry}");
        // INSPECT names the same keys.
        let i = inspect(&server, &covered);
        assert_eq!(i["revoked_by"], bulk("subject"), "{sub:?}: {i:?}");
        assert_eq!(
            i["key"],
            bulk(&format!("jwtdeny:{{{encoded}}}:{t}")),
            "{sub:?}"
        );
    }
    assert_eq!(subject_key("a%7Bb"), "jwtdeny:{a%7Bb}");
    // Subjects that look like encodings stay distinct: "%7B" is not "{".
    assert_int(
        &server.check(token("%7Bb", t)),
        1,
        "literal %7Bb unaffected",
    );
}

/// A cutoff key holding something jwtdeny did not write is never read as "no cutoff".
#[test]
fn a_foreign_value_at_the_cutoff_key_fails_closed() {
    let server = Server::with_vector_keys();
    ok(
        server.cmd(&["SET", &subject_key(SUB), "not-a-number"]),
        "SET",
    );
    let r = server.check(token(SUB, SOME_IAT));
    assert!(r.is_error(), "CHECK with a foreign cutoff value: {r}");
    let r = server.revoke(token(SUB, SOME_IAT));
    assert!(r.is_error(), "REVOKE with a foreign cutoff value: {r}");
}

#[test]
fn cutoff_replicates_as_a_set_and_is_in_the_aof() {
    let master = ServerBuilder::new()
        .vector_keys()
        .aof()
        .conf("jwtdeny.max-lifetime 86400")
        .start();
    let replica = ServerBuilder::new().vector_keys().start_replica_of(&master);
    assert_int(
        &master.cmd(&["WAIT", "1", "5000"]),
        1,
        "WAIT for the replica",
    );

    let mut monitor = replica.conn();
    ok(monitor.cmd(&["MONITOR"]), "MONITOR");
    let t = now() - 100;
    let key = subject_key(SUB);
    let expiry = (t + 86400) * 1000;
    assert_int(&revokeall_at(&master, SUB, t), t, "REVOKEALL on master");
    assert_int(
        &master.cmd(&["WAIT", "1", "5000"]),
        1,
        "WAIT after REVOKEALL",
    );
    let seen = monitor_until(&mut monitor, &master, &key);
    assert!(
        !seen.iter().any(|c| is_module_command(c)),
        "the replica received a module command: {seen:?}"
    );
    let effect = seen.last().unwrap();
    assert_set_cutoff(effect, &key, t, Some(expiry));

    assert_eq!(replica.cmd(&["GET", &key]).text(), t.to_string());
    assert_eq!(replica.pexpiretime(&key), expiry);
    let covered = mint_default("HS256", &claims(SUB, t, t + 3600));
    assert_int(
        &replica.check(&covered),
        0,
        "replica CHECK of a covered token",
    );
    assert_err(
        &replica.cmd(&["JWTDENY.REVOKEALL", SUB]),
        "READONLY",
        "REVOKEALL on the replica",
    );

    // An older AT changes nothing and sends nothing.
    assert_int(&revokeall_at(&master, SUB, t - 10), t, "older AT on master");
    assert_nothing_sent_before_marker(&mut monitor, &master, &key, "an ineffective REVOKEALL");
    drop(monitor);

    // The AOF has the effect, once, and never the module command.
    assert_set_cutoff(&aof_effect(&master, &key), &key, t, Some(expiry));
}

#[test]
fn cutoff_without_expiry_is_a_plain_set_in_the_aof_and_survives_restart() {
    let mut server = ServerBuilder::new().vector_keys().aof().start();
    let t = now() - 100;
    let key = subject_key(SUB);
    assert_int(&revokeall_at(&server, SUB, t), t, "REVOKEALL");
    assert_set_cutoff(&aof_effect(&server, &key), &key, t, None);

    server.restart();
    assert_eq!(server.cmd(&["GET", &key]).text(), t.to_string());
    assert_eq!(server.pexpiretime(&key), -1);
    assert_int(&server.check(token(SUB, t)), 0, "covered after restart");
}

/// `cmd` is `SET <key> <cutoff>` with `PXAT <ms>` exactly when an expiry is expected.
#[track_caller]
fn assert_set_cutoff(cmd: &[String], key: &str, cutoff: i64, expiry_ms: Option<i64>) {
    let head_ok = cmd.len() >= 3
        && cmd[0].eq_ignore_ascii_case("SET")
        && cmd[1] == key
        && cmd[2] == cutoff.to_string();
    let rest: Vec<String> = cmd.iter().skip(3).map(|s| s.to_ascii_uppercase()).collect();
    let rest_ok = match expiry_ms {
        Some(ms) => rest == vec!["PXAT".to_string(), ms.to_string()],
        None => rest.is_empty(),
    };
    assert!(
        head_ok && rest_ok,
        "expected SET {key} {cutoff}{}, got {cmd:?}",
        expiry_ms
            .map(|ms| format!(" PXAT {ms}"))
            .unwrap_or_default()
    );
}

/// `OBJECT ENCODING` of a key.
fn encoding(server: &Server, key: &str) -> String {
    server.cmd(&["OBJECT", "ENCODING", key]).text()
}

/// Reads leave a stored cutoff as Redis stored it, an integer: on the master and on a replica,
/// whatever command read it (a read through the key's string DMA would rewrite it as a string).
#[test]
fn reads_leave_the_cutoff_an_integer() {
    let master = Server::with_vector_keys();
    let replica = ServerBuilder::new()
        .vector_keys()
        .replica_of(&master)
        .start();
    wait_for_link(&replica);
    let t = now() - 100;
    let key = subject_key(SUB);
    let entry = format!("jwtdeny:{{{SUB}}}:{t}");
    let covered = token(SUB, t);
    assert_int(&revokeall_at(&master, SUB, t), t, "REVOKEALL");
    assert_int(&master.cmd(&["WAIT", "1", "5000"]), 1, "WAIT");
    for server in [&replica, &master] {
        assert_eq!(encoding(server, &key), "int", "after REVOKEALL");
        let reads: [Vec<&str>; 5] = [
            vec!["JWTDENY.CHECK", &covered],
            vec!["JWTDENY.CHECK", &covered, "WITHCLAIMS"],
            vec!["JWTDENY.INSPECT", &covered],
            vec!["JWTDENY.KCHECK", &entry, &key, &covered],
            vec!["JWTDENY.KINSPECT", &entry, &key, &covered],
        ];
        for args in reads {
            let r = server.cmd(&args);
            assert!(!r.is_error(), "{args:?}: {r}");
            assert_eq!(encoding(server, &key), "int", "after {:?}", args[0]);
        }
    }
    // A REVOKE the cutoff already covers only reads it too.
    assert_int(&master.revoke(&covered), 0, "REVOKE of a covered token");
    assert_eq!(encoding(&master, &key), "int", "after REVOKE");
}

/// With `max-lifetime`, an AT whose cutoff would already have expired is refused: every token it
/// covers has expired, and a SET with an expiry in the past would delete the cutoff in force.
#[test]
fn an_at_whose_cutoff_would_already_have_expired_is_refused() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.leeway 5")
        .start();
    // A cutoff written while lifetimes were unbounded, so it has no expiry.
    let old = now() - 7200;
    assert_int(&revokeall_at(&server, SUB, old), old, "REVOKEALL unbounded");
    ok(
        server.config_set("jwtdeny.max-lifetime", "3600"),
        "max-lifetime 3600",
    );
    let key = subject_key(SUB);
    let newer_but_expired = now() - 5000;
    for at in [newer_but_expired, now() - 3605, -253_402_300_799] {
        let r = revokeall_at(&server, SUB, at);
        let text = r.error().unwrap_or_else(|| panic!("AT {at} accepted: {r}"));
        assert!(
            text.starts_with(&format!("ERR AT {at} is too far in the past")),
            "AT {at}: {r}"
        );
        assert_eq!(
            server.cmd(&["GET", &key]).text(),
            old.to_string(),
            "AT {at} changed the cutoff in force"
        );
        assert_eq!(server.pexpiretime(&key), -1, "AT {at} changed its expiry");
    }
    assert_err(
        &revokeall_at(&server, "nobody", -253_402_300_799),
        "ERR",
        "far past AT of a subject without a cutoff",
    );
    assert_eq!(server.cmd(&["EXISTS", "jwtdeny:{nobody}"]).int(), 0);
    // An AT recent enough still moves the cutoff, with its expiry.
    let at = now() - 3000;
    assert_int(&revokeall_at(&server, SUB, at), at, "a recent AT");
    assert_eq!(server.pexpiretime(&key), (at + 3600 + 5) * 1000);
    assert!(!server.log().contains("internal error"), "{}", server.log());
}
