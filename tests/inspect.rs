//! JWTDENY.INSPECT (issue 3 §3): every field for every kind of token, claims shown only for
//! authentic tokens, and no change to the keyspace or the counters.

use crate::common;
use crate::support;

use common::*;
use serde_json::json;
use support::*;

/// Asserts every field of an INSPECT reply, with `reason` only checked for (non-)nil.
#[track_caller]
fn assert_fields(got: &std::collections::BTreeMap<String, Reply>, want: &[(&str, Reply)]) {
    for (field, value) in want {
        assert_eq!(&got[*field], value, "INSPECT field {field} in {got:?}");
    }
    let named: Vec<&str> = want.iter().map(|(f, _)| *f).collect();
    for f in INSPECT_FIELDS {
        assert!(
            named.contains(&f) || f == "reason",
            "test does not check field {f}"
        );
    }
}

#[test]
fn active_token() {
    let server = Server::with_vector_keys();
    let v = vector("valid-ES384");
    let i = inspect(&server, &v.token);
    assert_fields(
        &i,
        &[
            ("status", bulk("active")),
            ("reason", nil()),
            ("alg", bulk("ES384")),
            ("kid", bulk("shared-es384")),
            ("sub", bulk("user-es384")),
            ("iat", int(1_767_225_610)),
            ("exp", int(FAR_EXP)),
            ("key", bulk(&deny_key("user-es384", 1_767_225_610))),
            ("revoked_by", nil()),
            ("expires_at_ms", nil()),
        ],
    );
    // The status field agrees with CHECK.
    assert_int(&server.check(&v.token), 1, "CHECK");
}

#[test]
fn revoked_by_token() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.leeway 7")
        .start();
    let exp = now() + 3600;
    let token = mint_default("PS256", &claims("frank", SOME_IAT, exp));
    let key = deny_key("frank", SOME_IAT);
    assert_int(&server.revoke(&token), 1, "REVOKE");
    let pexpiretime = server.pexpiretime(&key);
    assert_eq!(pexpiretime, (exp + 7) * 1000);
    let i = inspect(&server, &token);
    assert_fields(
        &i,
        &[
            ("status", bulk("revoked")),
            ("alg", bulk("PS256")),
            ("kid", bulk("shared-rsa")),
            ("sub", bulk("frank")),
            ("iat", int(SOME_IAT)),
            ("exp", int(exp)),
            ("key", bulk(&key)),
            ("revoked_by", bulk("token")),
            ("expires_at_ms", int(pexpiretime)),
        ],
    );
    assert!(!matches!(i["reason"], Reply::Bulk(None)), "a reason: {i:?}");
}

#[test]
fn revoked_by_subject() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.max-lifetime 7200")
        .start();
    let t = now() - 60;
    let iat = t - 30;
    let exp = iat + 3600;
    let token = mint_default("EdDSA", &claims("grace", iat, exp));
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "grace", "AT", &t.to_string()]),
        t,
        "REVOKEALL",
    );
    let skey = subject_key("grace");
    assert_eq!(server.pexpiretime(&skey), (t + 7200) * 1000);
    let i = inspect(&server, &token);
    assert_fields(
        &i,
        &[
            ("status", bulk("revoked")),
            ("alg", bulk("EdDSA")),
            ("kid", bulk("shared-ed25519")),
            ("sub", bulk("grace")),
            ("iat", int(iat)),
            ("exp", int(exp)),
            ("key", bulk(&deny_key("grace", iat))),
            ("revoked_by", bulk("subject")),
            ("expires_at_ms", int((t + 7200) * 1000)),
        ],
    );
    // A token issued after the cutoff is active; the entry key is its own.
    let later = mint_default("EdDSA", &claims("grace", t + 1, t + 1000));
    let i = inspect(&server, &later);
    assert_eq!(i["status"], bulk("active"), "{i:?}");
    assert_eq!(i["revoked_by"], nil(), "{i:?}");
    assert_eq!(i["key"], bulk(&deny_key("grace", t + 1)), "{i:?}");
}

#[test]
fn revoked_by_subject_without_expiry() {
    let server = Server::with_vector_keys();
    let v = vector("valid-HS512");
    let iat = v.iat.unwrap();
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "user-hs512", "AT", &iat.to_string()]),
        iat,
        "REVOKEALL",
    );
    let i = inspect(&server, &v.token);
    assert_eq!(i["status"], bulk("revoked"), "{i:?}");
    assert_eq!(i["revoked_by"], bulk("subject"), "{i:?}");
    // The cutoff key has no expiry (no max-lifetime): nothing to report.
    assert_eq!(server.pexpiretime(&subject_key("user-hs512")), -1);
    assert_eq!(i["expires_at_ms"], nil(), "{i:?}");
}

#[test]
fn expired_token_shows_its_claims() {
    let server = Server::with_vector_keys();
    let exp = now() - 100;
    let token = mint_default("RS384", &claims("heidi", SOME_IAT, exp));
    let i = inspect(&server, &token);
    assert_fields(
        &i,
        &[
            ("status", bulk("EXPIRED")),
            ("alg", bulk("RS384")),
            ("kid", bulk("shared-rsa")),
            ("sub", bulk("heidi")),
            ("iat", int(SOME_IAT)),
            ("exp", int(exp)),
            ("key", bulk(&deny_key("heidi", SOME_IAT))),
            ("revoked_by", nil()),
            ("expires_at_ms", nil()),
        ],
    );
    assert!(!matches!(i["reason"], Reply::Bulk(None)), "a reason: {i:?}");
    // The vector too.
    let i = inspect(&server, &vector("expired").token);
    assert_eq!(i["status"], bulk("EXPIRED"), "{i:?}");
    assert!(
        !matches!(i["sub"], Reply::Bulk(None)),
        "claims shown: {i:?}"
    );
}

#[test]
fn bad_signature_shows_only_the_header() {
    let server = Server::with_vector_keys();
    // A real token with its signature from another token: the claims are attacker text.
    let good = mint_default("HS256", &claims("mallory", SOME_IAT, FAR_EXP));
    let other = mint_default("HS256", &claims("ivan", SOME_IAT, FAR_EXP));
    let mut parts: Vec<&str> = good.split('.').collect();
    let sig = other.split('.').nth(2).unwrap();
    parts[2] = sig;
    let forged = parts.join(".");
    assert_err(&server.check(&forged), "BADSIG", "CHECK forged");
    let i = inspect(&server, &forged);
    assert_fields(
        &i,
        &[
            ("status", bulk("BADSIG")),
            ("alg", bulk("HS256")),
            ("kid", bulk("shared-hs256")),
            ("sub", nil()),
            ("iat", nil()),
            ("exp", nil()),
            ("key", nil()),
            ("revoked_by", nil()),
            ("expires_at_ms", nil()),
        ],
    );
    assert!(!matches!(i["reason"], Reply::Bulk(None)), "a reason: {i:?}");
    assert!(
        !contains(
            &server.cmd(&["JWTDENY.INSPECT", &forged]).all_bytes(),
            b"mallory"
        ),
        "a forged token's sub appears in INSPECT"
    );
    // The vectors with bad signatures likewise.
    for name in ["bad-signature", "payload-swapped", "es256-zero-signature"] {
        let v = vector(name);
        let i = inspect(&server, &v.token);
        assert_eq!(i["status"], bulk("BADSIG"), "{name}: {i:?}");
        assert!(
            !matches!(i["alg"], Reply::Bulk(None)),
            "{name}: alg shown {i:?}"
        );
        for f in ["sub", "iat", "exp", "key", "revoked_by", "expires_at_ms"] {
            assert_eq!(i[f], nil(), "{name}: {f} must be nil: {i:?}");
        }
    }
}

#[test]
fn other_errors_show_what_could_be_parsed() {
    let server = Server::with_vector_keys();
    // NOKEY / BADALG: header parsed, nothing verified.
    for (name, code) in [("unknown-kid", "NOKEY"), ("alg-none", "BADALG")] {
        let i = inspect(&server, &vector(name).token);
        assert_eq!(i["status"], bulk(code), "{name}: {i:?}");
        assert!(
            !matches!(i["alg"], Reply::Bulk(None)),
            "{name}: alg shown {i:?}"
        );
        for f in ["sub", "iat", "exp", "key", "revoked_by", "expires_at_ms"] {
            assert_eq!(i[f], nil(), "{name}: {f} must be nil: {i:?}");
        }
    }
    // NOTYET is authentic: its claims are shown.
    let nbf = now() + 600;
    let token = mint_default(
        "HS384",
        &json!({"sub": "judy", "iat": SOME_IAT, "exp": FAR_EXP, "nbf": nbf}),
    );
    let i = inspect(&server, &token);
    assert_eq!(i["status"], bulk("NOTYET"), "{i:?}");
    assert_eq!(i["sub"], bulk("judy"), "{i:?}");
    assert_eq!(i["key"], bulk(&deny_key("judy", SOME_IAT)), "{i:?}");
}

#[test]
fn malformed_token_is_all_nil() {
    let server = Server::with_vector_keys();
    for name in [
        "two-segments",
        "not-base64",
        "header-not-json",
        "empty",
        "oversized",
    ] {
        let v = vector(name);
        let i = inspect(&server, &v.token);
        assert_eq!(i["status"], bulk("MALFORMED"), "{name}: {i:?}");
        assert!(
            !matches!(i["reason"], Reply::Bulk(None)),
            "{name}: reason {i:?}"
        );
        for f in &INSPECT_FIELDS[2..] {
            assert_eq!(i[*f], nil(), "{name}: {f} must be nil: {i:?}");
        }
    }
    assert_err(
        &server.cmd(&["JWTDENY.INSPECT"]),
        "ERR",
        "INSPECT without a token",
    );
    assert_err(
        &server.cmd(&["JWTDENY.INSPECT", "a", "b"]),
        "ERR",
        "INSPECT with two arguments",
    );
}

#[test]
fn inspect_changes_nothing() {
    let server = Server::with_vector_keys();
    let revoked = vector("valid-RS256");
    assert_int(&server.revoke(&revoked.token), 1, "REVOKE");
    let t = now() - 10;
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "kim", "AT", &t.to_string()]),
        t,
        "REVOKEALL",
    );
    let by_subject = mint_default("HS256", &claims("kim", t, FAR_EXP));
    let active = vector("valid-HS256");
    let expired = mint_default("HS256", &claims("leo", SOME_IAT, now() - 5));

    let keys_before = server.keys();
    let expiries_before: Vec<i64> = keys_before.iter().map(|k| server.pexpiretime(k)).collect();
    let dbsize_before = server.dbsize();
    let info_before = info(&server);
    let expired_before = info_field(&server, "stats", "expired_keys");
    let dirty = |s: &Server| info_field(s, "persistence", "rdb_changes_since_last_save");
    let dirty_before = dirty(&server);

    for _ in 0..3 {
        for token in [
            revoked.token.as_str(),
            by_subject.as_str(),
            active.token.as_str(),
            expired.as_str(),
            vector("bad-signature").token.as_str(),
            vector("two-segments").token.as_str(),
            vector("unknown-kid").token.as_str(),
        ] {
            inspect(&server, token);
        }
    }

    assert_eq!(server.keys(), keys_before, "keys");
    let expiries_after: Vec<i64> = keys_before.iter().map(|k| server.pexpiretime(k)).collect();
    assert_eq!(expiries_after, expiries_before, "expiries");
    assert_eq!(server.dbsize(), dbsize_before, "DBSIZE");
    assert_eq!(info(&server), info_before, "INFO jwtdeny counters");
    assert_eq!(dirty(&server), dirty_before, "writes since last save");
    // keyspace hits/misses may move (INSPECT reads keys), but nothing is written or expired.
    assert_eq!(
        info_field(&server, "stats", "expired_keys"),
        expired_before,
        "expired_keys"
    );
}

#[test]
fn inspect_works_on_a_replica() {
    let master = Server::with_vector_keys();
    let replica = ServerBuilder::new().vector_keys().start_replica_of(&master);
    let v = vector("valid-PS512");
    assert_int(&master.revoke(&v.token), 1, "REVOKE");
    assert_int(&master.cmd(&["WAIT", "1", "5000"]), 1, "WAIT");
    let i = inspect(&replica, &v.token);
    assert_eq!(i["status"], bulk("revoked"), "{i:?}");
    assert_eq!(i["revoked_by"], bulk("token"), "{i:?}");
    assert_eq!(i["expires_at_ms"], int(FAR_EXP * 1000), "{i:?}");
}
