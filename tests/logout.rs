//! OpenID Connect Back-Channel Logout (issue 11): JWTDENY.LOGOUT validates a provider's logout
//! token and ends the session it names (or every session of its subject), REVOKESESSION does the
//! same without one, and CHECK of a token with a `sid` consults its session. Session cutoffs
//! expire with max-lifetime, replicate and persist as plain SETs, and have keyed forms.

use crate::common;
use crate::support;

use common::*;
use serde_json::{json, Value};
use support::*;

const ISSUER: &str = "https://idp.example.test/realms/acme";
const AUDIENCE: &str = "jwtdeny-tests";
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The vectors' logout tokens are issued at this second.
const LOGOUT_IAT: i64 = 1_767_225_600;
/// Ten years of max-lifetime: with it the vectors' session cutoffs (iat 2026)
/// are still in force today.
const TEN_YEARS: i64 = 315_360_000;

fn doc() -> Value {
    read_json(&vectors_dir().join("logout.json"))
}

/// The logout vector called `name`.
fn logout_vector(name: &str) -> Value {
    doc()["logout"]
        .as_array()
        .expect("logout[]")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no logout vector {name}"))
        .clone()
}

fn access_vector(name: &str) -> String {
    doc()["access"]
        .as_array()
        .expect("access[]")
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["token"].as_str())
        .unwrap_or_else(|| panic!("no access vector {name}"))
        .to_string()
}

fn token_of(v: &Value) -> String {
    v["token"].as_str().expect("token").to_string()
}

/// A server configured as logout.json asks, with this max-lifetime.
fn server(max_lifetime: i64) -> Server {
    ServerBuilder::new()
        .vector_keys()
        .conf(format!("jwtdeny.issuer {}", conf_quote(ISSUER)))
        .conf(format!("jwtdeny.logout-audience {AUDIENCE}"))
        .conf(format!("jwtdeny.max-lifetime {max_lifetime}"))
        .start()
}

fn logout(server: &Server, token: &str) -> Reply {
    server.cmd(&["JWTDENY.LOGOUT", token])
}

fn session_key(sub: &str, sid: &str) -> String {
    format!("jwtdeny:{{{sub}}}:sid:{sid}")
}

/// The cutoff of `sub`'s tokens without sid: any session's end.
fn sidless_key(sub: &str) -> String {
    format!("jwtdeny:{{{sub}}}:nosid")
}

/// An access token of `sub` in session `sid` (none when `None`), signed by the shared ES256 key.
fn access(sub: &str, sid: Option<&str>, iat: i64, exp: i64) -> String {
    let mut c = json!({"sub": sub, "iat": iat, "exp": exp, "iss": ISSUER});
    if let Some(sid) = sid {
        c["sid"] = json!(sid);
    }
    mint_default("ES256", &c)
}

/// A logout token as a provider signs it: `extra` merged over a valid claim set (null removes a
/// claim), header `typ` logout+jwt.
fn logout_token(extra: Value) -> String {
    let mut c = json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 120, "jti": "j",
        "events": {LOGOUT_EVENT: {}},
    });
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    let header = json!({"alg": "ES256", "kid": "shared-es256", "typ": "logout+jwt"});
    sign_raw("ES256", &header.to_string(), &c.to_string())
}

#[test]
fn every_logout_vector_gives_its_outcome_and_a_replay_answers_0() {
    let server = server(TEN_YEARS);
    let vectors = doc()["logout"].as_array().expect("logout[]").clone();
    assert!(vectors.len() >= 20, "{} vectors", vectors.len());
    let mut keys = Vec::new();
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let token = token_of(v);
        let want = v["expect"].as_str().expect("expect");
        if want != "ok" {
            assert_err(&logout(&server, &token), want, name);
            continue;
        }
        assert_int(&logout(&server, &token), 1, name);
        assert_int(&logout(&server, &token), 0, &format!("{name} replayed"));
        let r = &v["revokes"];
        let sub = r["sub"].as_str().expect("sub");
        let iat = r["iat"].as_i64().expect("iat");
        let written = match r["sid"].as_str() {
            // A session's end also ends the subject's tokens without sid.
            Some(sid) => vec![session_key(sub, sid), sidless_key(sub)],
            None => vec![subject_key(sub)],
        };
        for key in written {
            assert_eq!(server.cmd(&["GET", &key]).text(), iat.to_string(), "{name}");
            assert_eq!(
                server.pexpiretime(&key),
                (iat + TEN_YEARS) * 1000,
                "{name}: expires when no token it revokes can still be valid"
            );
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys.sort();
    assert_eq!(server.keys(), keys, "only the cutoffs of the valid logouts");
    assert_eq!(info_num(&server, "logouts_session"), 5);
    assert_eq!(info_num(&server, "logouts_subject"), 1);
    assert_eq!(info_num(&server, "logouts_already"), 6);
    let refused = vectors.iter().filter(|v| v["expect"] != "ok").count() as i64;
    assert_eq!(info_num(&server, "logouts_errors"), refused);
    assert_eq!(info(&server)["session_revocation"], "session");
}

/// The scenario logout.json's note describes, with its own PyJWT access tokens: they live 74
/// years, so max-lifetime is set above that (jwtdeny accepts up to 100 years).
#[test]
fn the_vectors_access_tokens_follow_their_logouts() {
    const EIGHTY_YEARS: i64 = 80 * 365 * 24 * 3600;
    let server = server(EIGHTY_YEARS);
    for name in [
        "alice-sess-1",
        "alice-sess-2",
        "alice-no-sid",
        "bob-before",
        "bob-after",
    ] {
        assert_int(
            &server.check(access_vector(name)),
            1,
            &format!("{name} before"),
        );
    }
    assert_int(
        &logout(&server, &token_of(&logout_vector("sid-and-sub"))),
        1,
        "sid-and-sub",
    );
    assert_int(
        &server.check(access_vector("alice-sess-1")),
        0,
        "its session ended",
    );
    assert_int(
        &server.check(access_vector("alice-sess-2")),
        1,
        "another session",
    );
    // Issue 17 §1.7: a token without sid cannot be told apart by session, so any session's
    // end of its subject revokes it (over-revocation, never under-revocation).
    assert_int(
        &server.check(access_vector("alice-no-sid")),
        0,
        "no session named: revoked by any session's end",
    );
    assert_int(
        &logout(&server, &token_of(&logout_vector("sub-only"))),
        1,
        "sub-only",
    );
    assert_int(
        &server.check(access_vector("bob-before")),
        0,
        "issued before the logout",
    );
    assert_int(
        &server.check(access_vector("bob-after")),
        1,
        "issued after it",
    );
}

#[test]
fn refusals_name_the_rule() {
    let server = server(3600);
    let msg = |t: &str| logout(&server, t).error().unwrap_or_default().to_string();
    assert!(
        msg(&token_of(&logout_vector("sid-without-sub"))).starts_with("BADCLAIMS sid without sub"),
        "{}",
        msg(&token_of(&logout_vector("sid-without-sub")))
    );
    for (name, needle) in [
        ("no-events", "events is missing"),
        ("wrong-event", "has no member"),
        ("nonce", "nonce"),
        ("typ-at+jwt", "typ 'at+jwt'"),
        ("wrong-aud", "jwtdeny.logout-audience"),
        ("wrong-iss", "jwtdeny.issuer"),
        ("no-sub-no-sid", "neither sub nor sid"),
    ] {
        let m = msg(&token_of(&logout_vector(name)));
        assert!(m.contains(needle), "{name}: {m}");
    }
    // An access token is never a logout token, typed or not.
    let at = access("alice", Some("s"), now(), now() + 60);
    assert_err(&logout(&server, &at), "BADCLAIMS", "an access token");
    assert_err(&logout(&server, "x.y"), "MALFORMED", "garbage");
    assert!(
        server.keys().is_empty(),
        "nothing written: {:?}",
        server.keys()
    );
}

#[test]
fn logout_is_refused_while_the_logout_audience_is_empty() {
    let server = ServerBuilder::new().vector_keys().start();
    let token = token_of(&logout_vector("sid-and-sub"));
    let r = logout(&server, &token);
    assert_err(&r, "ERR", "no logout-audience");
    assert!(
        r.error()
            .unwrap_or_default()
            .contains("jwtdeny.logout-audience"),
        "{r}"
    );
    // The access tokens' audience is not the logout token's.
    ok(server.config_set("jwtdeny.audience", AUDIENCE), "audience");
    assert_err(
        &logout(&server, &token),
        "ERR",
        "audience is not logout-audience",
    );
    ok(
        server.config_set("jwtdeny.logout-audience", AUDIENCE),
        "logout-audience",
    );
    assert_eq!(server.config_get("jwtdeny.logout-audience"), AUDIENCE);
    assert_int(&logout(&server, &token), 1, "configured");
    ok(
        server.config_set("jwtdeny.logout-audience", "other-client"),
        "other",
    );
    assert_err(
        &logout(&server, &token),
        "BADCLAIMS",
        "aud no longer matches",
    );
}

#[test]
fn a_session_ends_while_the_subjects_other_sessions_stay_active() {
    let server = server(TEN_YEARS);
    // Issued before the logout, living within max-lifetime.
    let (iat, exp) = (LOGOUT_IAT - 100, LOGOUT_IAT + TEN_YEARS - 200);
    let sess1 = access("alice", Some("sess-1"), iat, exp);
    let sess2 = access("alice", Some("sess-2"), iat, exp);
    let no_sid = access("alice", None, iat, exp);
    let other = access("bob", Some("sess-1"), iat, exp);
    // The provider would never issue it, but a token of the ended session issued after its
    // logout is past the cutoff: a re-login that reuses a session id is not locked out.
    let later = access("alice", Some("sess-1"), LOGOUT_IAT + 1, exp);
    for t in [&sess1, &sess2, &no_sid, &other, &later] {
        assert_int(&server.check(t), 1, "before the logout");
    }

    assert_int(
        &logout(&server, &token_of(&logout_vector("sid-and-sub"))),
        1,
        "LOGOUT sid-and-sub",
    );
    assert_int(&server.check(&sess1), 0, "the ended session");
    assert_int(&server.check(&sess2), 1, "another session of alice");
    assert_int(
        &server.check(&no_sid),
        0,
        "a token of no session: revoked by any session's end",
    );
    assert_int(&server.check(&other), 1, "the same sid of another subject");
    assert_int(&server.check(&later), 1, "issued after the logout");

    let r = server.cmd(&["JWTDENY.CHECK", &sess1, "WITHCLAIMS"]);
    assert_eq!(
        r.array(),
        &[Reply::Int(0), nil()],
        "WITHCLAIMS of the ended session"
    );
    let i = inspect(&server, &sess1);
    assert_eq!(i["status"], bulk("revoked"), "{i:?}");
    assert_eq!(i["reason"], bulk("revoked by session"), "{i:?}");
    assert_eq!(i["revoked_by"], bulk("session"), "{i:?}");
    assert_eq!(
        i["expires_at_ms"],
        Reply::Int((LOGOUT_IAT + TEN_YEARS) * 1000)
    );
    assert_eq!(inspect(&server, &sess2)["revoked_by"], nil());

    // REVOKE of a token its session already revoked answers 0 and writes no entry.
    assert_int(
        &server.revoke(&sess1),
        0,
        "REVOKE of the ended session's token",
    );
    assert_eq!(
        server.keys(),
        vec![sidless_key("alice"), session_key("alice", "sess-1")]
    );
    assert_eq!(info_num(&server, "checks_revoked"), 3);
}

#[test]
fn a_logout_without_sid_is_the_subjects_cutoff_at_its_iat() {
    let server = server(0);
    let (before, after) = (access_vector("bob-before"), access_vector("bob-after"));
    assert_int(&server.check(&before), 1, "bob-before");
    assert_int(&server.check(&after), 1, "bob-after");
    assert_int(
        &logout(&server, &token_of(&logout_vector("sub-only"))),
        1,
        "LOGOUT",
    );
    assert_int(
        &server.check(&before),
        0,
        "bob-before is revoked (its sid does not matter)",
    );
    assert_int(
        &server.check(&after),
        1,
        "bob-after was issued after the logout",
    );
    assert_eq!(server.keys(), vec![subject_key("bob")]);
    assert_eq!(
        server.cmd(&["GET", &subject_key("bob")]).text(),
        LOGOUT_IAT.to_string()
    );
    assert_eq!(
        server.pexpiretime(&subject_key("bob")),
        -1,
        "no max-lifetime, no expiry"
    );
    assert_eq!(inspect(&server, &before)["revoked_by"], bulk("subject"));
    // The same cutoff as REVOKEALL: it only moves forward, and a logout it covers answers 0.
    let r = server.cmd(&[
        "JWTDENY.REVOKEALL",
        "bob",
        "AT",
        &(LOGOUT_IAT + 50).to_string(),
    ]);
    assert_int(&r, LOGOUT_IAT + 50, "REVOKEALL later");
    assert_int(
        &logout(&server, &token_of(&logout_vector("sub-only"))),
        0,
        "covered",
    );
    assert_eq!(info_num(&server, "logouts_subject"), 1);
    assert_eq!(info_num(&server, "logouts_already"), 1);
}

#[test]
fn without_max_lifetime_a_session_logout_revokes_the_whole_subject() {
    let server = server(0);
    assert_eq!(info(&server)["session_revocation"], "subject");
    let tokens = ["alice-sess-1", "alice-sess-2", "alice-no-sid"].map(access_vector);
    for t in &tokens {
        assert_int(&server.check(t), 1, "before");
    }
    assert_int(
        &logout(&server, &token_of(&logout_vector("sid-and-sub"))),
        1,
        "LOGOUT",
    );
    // Over-revocation, never under-revocation: no expiry could bound a session's cutoff.
    for t in &tokens {
        assert_int(
            &server.check(t),
            0,
            "every token of alice issued before the logout",
        );
    }
    assert_eq!(server.keys(), vec![subject_key("alice")]);
    assert_eq!(info_num(&server, "logouts_subject"), 1);
    assert_eq!(info_num(&server, "logouts_session_as_subject"), 1);
    assert_eq!(info_num(&server, "logouts_session"), 0);
    // Another session of alice at the same iat is already covered.
    let dave = logout_token(json!({"sub": "alice", "sid": "s-2", "iat": LOGOUT_IAT}));
    assert_int(&logout(&server, &dave), 0, "covered by the subject cutoff");
}

#[test]
fn a_sid_logout_covered_by_the_subject_cutoff_writes_nothing() {
    let server = server(TEN_YEARS);
    let r = server.cmd(&["JWTDENY.REVOKEALL", "alice", "AT", &LOGOUT_IAT.to_string()]);
    assert_int(&r, LOGOUT_IAT, "REVOKEALL");
    assert_int(
        &logout(&server, &token_of(&logout_vector("sid-and-sub"))),
        0,
        "covered",
    );
    assert_eq!(server.keys(), vec![subject_key("alice")]);
    // A later logout of the same session moves its cutoff forward, and is new.
    let later = logout_token(json!({"sub": "alice", "sid": "sess-1", "iat": LOGOUT_IAT + 10}));
    assert_int(&logout(&server, &later), 1, "later logout");
    assert_eq!(
        server.cmd(&["GET", &session_key("alice", "sess-1")]).text(),
        (LOGOUT_IAT + 10).to_string()
    );
    // An older one leaves it.
    let older = logout_token(json!({"sub": "alice", "sid": "sess-1", "iat": LOGOUT_IAT + 5}));
    assert_int(&logout(&server, &older), 0, "older logout");
}

#[test]
fn session_cutoffs_expire_when_their_tokens_have() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf(format!("jwtdeny.logout-audience {AUDIENCE}"))
        .conf("jwtdeny.max-lifetime 2")
        .conf("jwtdeny.leeway 1")
        .start();
    let t = now();
    let token = access("carol", Some("s-1"), t, t + 2);
    assert_int(&server.check(&token), 1, "before");
    let lo = logout_token(json!({"sub": "carol", "sid": "s-1", "iat": t}));
    assert_int(&logout(&server, &lo), 1, "LOGOUT");
    let key = session_key("carol", "s-1");
    assert_eq!(
        server.pexpiretime(&key),
        (t + 2 + 1) * 1000,
        "iat + max-lifetime + leeway"
    );
    assert_int(&server.check(&token), 0, "revoked by its session");
    sleep_until_after(t + 3);
    assert_err(
        &server.check(&token),
        "EXPIRED",
        "its token has expired by now",
    );
    assert!(
        server.keys().is_empty(),
        "the cutoff is gone: {:?}",
        server.keys()
    );
    // A logout whose tokens have all expired already has nothing left to revoke.
    let stale = logout_token(json!({"sub": "carol", "sid": "s-2", "iat": t - 100}));
    assert_int(&logout(&server, &stale), 0, "nothing left to end");
    let stale = logout_token(json!({"sub": "carol", "iat": t - 100}));
    assert_int(&logout(&server, &stale), 0, "nor by subject");
    assert!(
        server.keys().is_empty(),
        "nothing written: {:?}",
        server.keys()
    );
}

#[test]
fn revokesession_ends_a_session_without_a_logout_token() {
    let server = server(3600);
    let t = now();
    let s9 = access("dave", Some("s-9"), t - 10, t + 600);
    let s8 = access("dave", Some("s-8"), t - 10, t + 600);
    let r = server.cmd(&["JWTDENY.REVOKESESSION", "dave", "s-9"]);
    assert_int(&r, 1, "REVOKESESSION");
    assert_int(&server.check(&s9), 0, "its session");
    assert_int(&server.check(&s8), 1, "another session");
    let key = session_key("dave", "s-9");
    let cutoff: i64 = server.cmd(&["GET", &key]).text().parse().expect("a cutoff");
    assert!((t..=now()).contains(&cutoff), "cutoff {cutoff} is now");
    assert_eq!(server.pexpiretime(&key), (cutoff + 3600) * 1000);
    // Braces, colons and NUL in a sid are kept verbatim after the subject's tag.
    let odd = "a}{:\0b";
    assert_int(
        &server.cmd(&[
            b"JWTDENY.REVOKESESSION".as_slice(),
            b"d{ave",
            odd.as_bytes(),
        ]),
        1,
        "odd",
    );
    let odd_key = format!("jwtdeny:{{d%7Bave}}:sid:{odd}");
    assert_eq!(
        server
            .cmd(&[b"EXISTS".as_slice(), odd_key.as_bytes()])
            .int(),
        1
    );
    let odd_token = access("d{ave", Some(odd), t - 10, t + 600);
    assert_int(&server.check(&odd_token), 0, "found by its token");
    for bad in [
        vec!["JWTDENY.REVOKESESSION", "", "s"],
        vec!["JWTDENY.REVOKESESSION", "d", ""],
    ] {
        assert_err(&server.cmd(&bad), "ERR", "empty sub or sid");
    }
    assert_err(
        &server.cmd(&[b"JWTDENY.REVOKESESSION".as_slice(), b"d", b"\xff"]),
        "ERR",
        "UTF-8",
    );
    assert_err(
        &server.cmd(&["JWTDENY.REVOKESESSION", "dave"]),
        "ERR",
        "arity",
    );
    assert_eq!(info_num(&server, "revokesessions_new"), 2);
}

#[test]
fn logouts_replicate_and_persist_as_plain_sets() {
    let master = ServerBuilder::new()
        .vector_keys()
        .aof()
        .conf(format!("jwtdeny.issuer {}", conf_quote(ISSUER)))
        .conf(format!("jwtdeny.logout-audience {AUDIENCE}"))
        .conf(format!("jwtdeny.max-lifetime {TEN_YEARS}"))
        .start();
    let replica = ServerBuilder::new()
        .vector_keys()
        .conf(format!("jwtdeny.max-lifetime {TEN_YEARS}"))
        .replica_of(&master)
        .start();
    wait_for_link(&replica);
    let (iat, exp) = (LOGOUT_IAT - 100, LOGOUT_IAT + TEN_YEARS - 200);
    let sess1 = access("alice", Some("sess-1"), iat, exp);
    let bob = access("bob", None, iat, exp);
    assert_int(
        &logout(&master, &token_of(&logout_vector("sid-and-sub"))),
        1,
        "sid",
    );
    assert_int(
        &logout(&master, &token_of(&logout_vector("sub-only"))),
        1,
        "sub",
    );
    assert_int(
        &logout(&master, &token_of(&logout_vector("sub-only"))),
        0,
        "replay",
    );
    assert_int(
        &master.cmd(&["JWTDENY.REVOKESESSION", "alice", "sess-7"]),
        1,
        "admin",
    );
    assert_int(&master.cmd(&["WAIT", "1", "5000"]), 1, "WAIT");
    assert_int(
        &replica.check(&sess1),
        0,
        "the replica knows the session ended",
    );
    assert_int(&replica.check(&bob), 0, "and bob's cutoff");
    let skey = session_key("alice", "sess-1");
    assert_eq!(replica.pexpiretime(&skey), (LOGOUT_IAT + TEN_YEARS) * 1000);
    assert_err(
        &replica.cmd(&["JWTDENY.LOGOUT", "x"]),
        "READONLY",
        "a replica refuses LOGOUT",
    );

    let aof = master.aof_commands();
    assert!(
        !aof.iter().any(|c| is_module_command(c)),
        "module commands in the AOF: {aof:?}"
    );
    let writes: Vec<&Vec<String>> = aof
        .iter()
        .filter(|c| c.iter().any(|a| a.starts_with("jwtdeny:")))
        .collect();
    // A session's end writes its session's cutoff and its subject's sid-less cutoff.
    assert_eq!(
        writes.len(),
        5,
        "one SET per change, none for the replay: {writes:?}"
    );
    let pxat = ((LOGOUT_IAT + TEN_YEARS) * 1000).to_string();
    let iat = LOGOUT_IAT.to_string();
    for key in [skey.as_str(), &sidless_key("alice"), &subject_key("bob")] {
        let want = ["SET", key, &iat, "PXAT", &pxat];
        let found = writes.iter().any(|c| {
            c.len() == want.len() && c.iter().zip(want).all(|(a, b)| a.eq_ignore_ascii_case(b))
        });
        assert!(found, "SET {key} {iat} PXAT {pxat} in {writes:?}");
    }

    let mut master = master;
    master.restart();
    assert_int(&master.check(&sess1), 0, "after an AOF restart");
    assert_int(&master.check(&bob), 0, "bob after an AOF restart");
    assert_eq!(master.pexpiretime(&skey), (LOGOUT_IAT + TEN_YEARS) * 1000);
}

#[test]
fn keyed_forms_declare_the_session_and_subject_keys() {
    let server = server(TEN_YEARS);
    let (iat, exp) = (LOGOUT_IAT - 100, LOGOUT_IAT + TEN_YEARS - 200);
    let sess1 = access("alice", Some("sess-1"), iat, exp);
    let (entry, subject, session) = (
        deny_key("alice", iat),
        subject_key("alice"),
        session_key("alice", "sess-1"),
    );
    let lo = token_of(&logout_vector("sid-and-sub"));
    let kcheck = |t: &str| server.cmd(&["JWTDENY.KCHECK", &entry, &subject, t]);
    let kscheck = |t: &str| server.cmd(&["JWTDENY.KSCHECK", &entry, &subject, &session, t]);
    assert_int(&kscheck(&sess1), 1, "KSCHECK before");

    // KLOGOUT's keys are the token's own: anything else is refused before a write.
    let r = server.cmd(&["JWTDENY.KLOGOUT", &subject, &subject, &lo]);
    assert_err(
        &r,
        "ERR",
        "KLOGOUT of a sid logout naming the subject key twice",
    );
    let r = server.cmd(&["JWTDENY.KLOGOUT", &subject_key("bob"), &session, &lo]);
    assert_err(&r, "ERR", "KLOGOUT with another subject's key");
    assert!(server.keys().is_empty());
    assert_int(
        &server.cmd(&["JWTDENY.KLOGOUT", &subject, &session, &lo]),
        1,
        "KLOGOUT",
    );
    assert_int(
        &server.cmd(&["JWTDENY.KLOGOUT", &subject, &session, &lo]),
        0,
        "replayed",
    );

    assert_int(&kscheck(&sess1), 0, "KSCHECK after");
    assert_int(&kcheck(&sess1), 0, "KCHECK reads the session too");
    let r = server.cmd(&[
        "JWTDENY.KSCHECK",
        &entry,
        &subject,
        &session,
        &sess1,
        "WITHCLAIMS",
    ]);
    assert_eq!(r.array(), &[Reply::Int(0), nil()]);
    let r = server.cmd(&["JWTDENY.KSINSPECT", &entry, &subject, &session, &sess1]);
    assert!(r.array().iter().any(|f| *f == bulk("session")), "{r}");
    let wrong = session_key("alice", "sess-2");
    let r = server.cmd(&["JWTDENY.KSCHECK", &entry, &subject, &wrong, &sess1]);
    assert_err(&r, "ERR", "KSCHECK with another session's key");
    // A token without sid: its third key is the subject's sid-less cutoff, which the session's
    // end moved too.
    let no_sid = access("alice", None, iat, exp);
    let r = server.cmd(&["JWTDENY.KSCHECK", &entry, &subject, &session, &no_sid]);
    assert_err(
        &r,
        "ERR",
        "KSCHECK of a token without sid naming a session key",
    );
    let sidless = sidless_key("alice");
    let r = server.cmd(&["JWTDENY.KSCHECK", &entry, &subject, &sidless, &no_sid]);
    assert_int(&r, 0, "KSCHECK of it with the sid-less key");
    assert_int(
        &kcheck(&no_sid),
        0,
        "KCHECK of it reads the sid-less key too",
    );
    // The three-key KLOGOUT declares the sid-less key; another third key is refused.
    let lo2 = logout_token(json!({"sub": "alice", "sid": "sess-2", "iat": LOGOUT_IAT + 1}));
    let sess2 = session_key("alice", "sess-2");
    let r = server.cmd(&["JWTDENY.KLOGOUT", &subject, &sess2, &session, &lo2]);
    assert_err(&r, "ERR", "KLOGOUT with a wrong third key");
    assert_int(
        &server.cmd(&["JWTDENY.KLOGOUT", &subject, &sess2, &sidless, &lo2]),
        1,
        "KLOGOUT with the sid-less key declared",
    );
    assert_eq!(
        server.cmd(&["GET", &sidless]).text(),
        (LOGOUT_IAT + 1).to_string()
    );

    // Without sid: the subject key twice.
    let bob = token_of(&logout_vector("sub-only"));
    let bkey = subject_key("bob");
    assert_int(
        &server.cmd(&["JWTDENY.KLOGOUT", &bkey, &bkey, &bob]),
        1,
        "KLOGOUT sub-only",
    );
    // Bob's cutoff is at the logout's iat, in the past: ending a session up to now is new.
    let r = server.cmd(&[
        "JWTDENY.KREVOKESESSION",
        &bkey,
        &session_key("bob", "x"),
        "bob",
        "x",
    ]);
    assert_int(&r, 1, "KREVOKESESSION");
    let r = server.cmd(&[
        "JWTDENY.KREVOKESESSION",
        &bkey,
        &session_key("bob", "y"),
        "bob",
        "z",
    ]);
    assert_err(&r, "ERR", "KREVOKESESSION naming another session's key");
}

#[test]
fn logouts_notify_and_declare_their_command_info() {
    let server = server(TEN_YEARS);
    ok(server.config_set("notify-keyspace-events", "Ed"), "Ed");
    let mut sub = server.conn();
    sub.send(&[
        "SUBSCRIBE",
        "__keyevent@0__:jwtdeny.logout",
        "__keyevent@0__:jwtdeny.revokesession",
    ])
    .expect("subscribe");
    for _ in 0..2 {
        sub.read().expect("subscribed");
    }
    assert_int(
        &logout(&server, &token_of(&logout_vector("sid-and-sub"))),
        1,
        "LOGOUT",
    );
    let m = sub.read().expect("event");
    assert_eq!(m.array()[1].text(), "__keyevent@0__:jwtdeny.logout", "{m}");
    assert_eq!(m.array()[2].text(), session_key("alice", "sess-1"), "{m}");
    let m = sub.read().expect("event");
    assert_eq!(m.array()[1].text(), "__keyevent@0__:jwtdeny.logout", "{m}");
    assert_eq!(m.array()[2].text(), sidless_key("alice"), "{m}");
    assert_int(
        &server.cmd(&["JWTDENY.REVOKESESSION", "erin", "s"]),
        1,
        "REVOKESESSION",
    );
    let m = sub.read().expect("event");
    assert_eq!(
        m.array()[1].text(),
        "__keyevent@0__:jwtdeny.revokesession",
        "{m}"
    );
    assert_eq!(m.array()[2].text(), session_key("erin", "s"), "{m}");
    let m = sub.read().expect("event");
    assert_eq!(m.array()[2].text(), sidless_key("erin"), "{m}");

    for (name, arity) in [
        ("jwtdeny.logout", 2),
        ("jwtdeny.revokesession", -3),
        ("jwtdeny.klogout", -4),
        ("jwtdeny.krevokesession", -5),
        ("jwtdeny.kscheck", -5),
        ("jwtdeny.ksinspect", 5),
    ] {
        let r = server.cmd(&["COMMAND", "INFO", name]);
        let info = &r.array()[0];
        assert_eq!(info.array()[1].int(), arity, "{name}: {r}");
    }
    let r = server.cmd(&[
        "COMMAND",
        "GETKEYSANDFLAGS",
        "jwtdeny.klogout",
        "a{x}",
        "a{x}:sid:s",
        "t",
    ]);
    let flags: Vec<String> = r
        .array()
        .iter()
        .map(|k| {
            k.array()[1]
                .array()
                .iter()
                .map(Reply::text)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(flags, ["RW,access,update", "RW,access,update"], "{r}");
    // The optional third key, the sid-less cutoff, is declared too.
    for (name, rest) in [
        ("jwtdeny.klogout", &["t"][..]),
        ("jwtdeny.krevokesession", &["x", "s"]),
    ] {
        let mut args = vec![
            "COMMAND",
            "GETKEYSANDFLAGS",
            name,
            "a{x}",
            "a{x}:sid:s",
            "a{x}:nosid",
        ];
        args.extend_from_slice(rest);
        let r = server.cmd(&args);
        assert_eq!(r.array().len(), 3, "{name}'s third key: {r}");
    }
    let r = server.cmd(&[
        "COMMAND",
        "GETKEYSANDFLAGS",
        "jwtdeny.kscheck",
        "e{x}:1",
        "e{x}",
        "e{x}:sid:s",
        "t",
    ]);
    assert_eq!(r.array().len(), 3, "KSCHECK declares three keys: {r}");
}

/// The session forms' keys are what ACL key patterns see: a read-only pattern admits KSCHECK
/// and KSINSPECT (every key only read), not KLOGOUT or KREVOKESESSION (which write one); a
/// pattern naming only the subject's own keys admits its sessions and no one else's.
#[test]
fn acl_key_patterns_apply_to_the_session_forms() {
    let server = server(TEN_YEARS);
    ok(
        server.cmd(&[
            "ACL",
            "SETUSER",
            "ro",
            "on",
            "nopass",
            "+jwtdeny.kscheck",
            "+jwtdeny.ksinspect",
            "+jwtdeny.klogout",
            "+jwtdeny.krevokesession",
            "%R~jwtdeny:*",
        ]),
        "ACL SETUSER ro",
    );
    ok(
        server.cmd(&[
            "ACL",
            "SETUSER",
            "alice-app",
            "on",
            "nopass",
            "+jwtdeny.klogout",
            "+jwtdeny.krevokesession",
            "~jwtdeny:{alice}*",
        ]),
        "ACL SETUSER alice-app",
    );
    let login = |user: &str| {
        let mut c = server.conn();
        ok(c.cmd(&["AUTH", user, "x"]), user);
        c
    };
    let (iat, exp) = (LOGOUT_IAT - 100, LOGOUT_IAT + TEN_YEARS - 200);
    let t = access("alice", Some("sess-1"), iat, exp);
    let keys = [
        deny_key("alice", iat),
        subject_key("alice"),
        session_key("alice", "sess-1"),
    ];
    let lo = token_of(&logout_vector("sid-and-sub"));

    let mut ro = login("ro");
    let check = |c: &mut Conn| c.cmd(&["JWTDENY.KSCHECK", &keys[0], &keys[1], &keys[2], &t]);
    assert_int(&check(&mut ro), 1, "ro KSCHECK");
    let i = ro.cmd(&["JWTDENY.KSINSPECT", &keys[0], &keys[1], &keys[2], &t]);
    assert_eq!(i.array()[1], bulk("active"), "ro KSINSPECT {i}");
    let r = ro.cmd(&["JWTDENY.KLOGOUT", &keys[1], &keys[2], &lo]);
    assert_err(&r, "NOPERM", "ro KLOGOUT");
    let r = ro.cmd(&[
        "JWTDENY.KREVOKESESSION",
        &keys[1],
        &keys[2],
        "alice",
        "sess-1",
    ]);
    assert_err(&r, "NOPERM", "ro KREVOKESESSION");
    assert!(
        server.keys().is_empty(),
        "nothing written: {:?}",
        server.keys()
    );

    let mut alice = login("alice-app");
    assert_int(
        &alice.cmd(&["JWTDENY.KLOGOUT", &keys[1], &keys[2], &lo]),
        1,
        "alice-app",
    );
    let bob = token_of(&logout_vector("sub-only"));
    let bkey = subject_key("bob");
    let r = alice.cmd(&["JWTDENY.KLOGOUT", &bkey, &bkey, &bob]);
    assert_err(&r, "NOPERM", "alice-app ending bob's sessions");
    assert_int(&check(&mut ro), 0, "ro sees the session ended");
}

/// With worker threads, a KSCHECK or CHECK whose token a worker verified is answered with the
/// session consulted, its three keys checked again when the reply is built.
#[test]
fn worker_verified_checks_consult_the_session() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf(format!("jwtdeny.issuer {}", conf_quote(ISSUER)))
        .conf(format!("jwtdeny.logout-audience {AUDIENCE}"))
        .conf(format!("jwtdeny.max-lifetime {TEN_YEARS}"))
        .conf("jwtdeny.workers 2")
        .start();
    assert_int(
        &logout(&server, &token_of(&logout_vector("sid-and-sub"))),
        1,
        "LOGOUT",
    );
    let exp = LOGOUT_IAT + TEN_YEARS - 200;
    let session = session_key("alice", "sess-1");
    for i in 0..20 {
        let iat = LOGOUT_IAT - 100 - i;
        let ended = access("alice", Some("sess-1"), iat, exp);
        let other = access("alice", Some("sess-2"), iat, exp);
        let e = deny_key("alice", iat);
        let s = subject_key("alice");
        let r = server.cmd(&["JWTDENY.KSCHECK", &e, &s, &session, &ended]);
        assert_int(&r, 0, "KSCHECK of the ended session");
        assert_int(&server.check(&other), 1, "CHECK of another session");
        let wrong = session_key("alice", "sess-2");
        let fresh = access("alice", Some("sess-1"), iat - 1000, exp - 1000);
        let e = deny_key("alice", iat - 1000);
        let r = server.cmd(&["JWTDENY.KSCHECK", &e, &s, &wrong, &fresh]);
        assert_err(&r, "ERR", "KSCHECK with another session's key");
    }
    assert!(
        info_num(&server, "verifications_offloaded") > 0,
        "{:?}",
        info(&server)
    );
}

/// Issue 17 §1.5: CHECK, CHECK WITHCLAIMS, REVOKE and INSPECT accepted a back-channel logout
/// token as an access token for its `sub`, with `jwtdeny.audience` unset and also set to the
/// client id. Every access-token command refuses it (BADCLAIMS), in every mode: the shared
/// vectors' valid logout tokens (made by another implementation), and ours without a `typ`.
#[test]
fn a_logout_token_is_never_an_access_token() {
    let accepted: Vec<String> = doc()["logout"]
        .as_array()
        .expect("logout[]")
        .iter()
        .filter(|v| v["expect"] == "ok")
        .map(token_of)
        .chain([logout_token(json!({"sub": "mallory", "sid": "s"}))])
        .chain([{
            // No typ at all: the events claim alone makes it a logout token.
            let c = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 120,
                           "sub": "mallory", "events": {LOGOUT_EVENT: {}}});
            sign_raw(
                "ES256",
                r#"{"alg":"ES256","kid":"shared-es256"}"#,
                &c.to_string(),
            )
        }])
        .collect();
    assert!(accepted.len() >= 5);
    for (audience, workers, cache) in [
        ("", "0", "131072"),
        (AUDIENCE, "2", "0"),
        (AUDIENCE, "0", "131072"),
    ] {
        let server = ServerBuilder::new()
            .vector_keys()
            .conf(format!("jwtdeny.issuer {}", conf_quote(ISSUER)))
            .conf(format!("jwtdeny.logout-audience {AUDIENCE}"))
            .conf(format!("jwtdeny.workers {workers}"))
            .conf(format!("jwtdeny.verify-cache-size {cache}"))
            .start();
        if !audience.is_empty() {
            ok(server.config_set("jwtdeny.audience", audience), "audience");
        }
        let mode = format!("audience {audience:?}, workers {workers}, cache {cache}");
        for t in &accepted {
            assert_err(&server.check(t), "BADCLAIMS", &format!("CHECK, {mode}"));
            let r = server.cmd(&["JWTDENY.CHECK", t, "WITHCLAIMS"]);
            assert_err(&r, "BADCLAIMS", &format!("CHECK WITHCLAIMS, {mode}"));
            assert_err(&server.revoke(t), "BADCLAIMS", &format!("REVOKE, {mode}"));
            let r = server.cmd(&["JWTDENY.INSPECT", t]);
            assert_eq!(r.array()[1].text(), "BADCLAIMS", "INSPECT, {mode}: {r}");
        }
        assert_eq!(server.dbsize(), 0, "nothing stored, {mode}");
        // And it still is the logout it is.
        assert_int(&logout(&server, &accepted[accepted.len() - 2]), 1, "LOGOUT");
    }
}

/// Issue 17 §1.10: a logout token with `iat` beyond now + leeway was applied as is (without
/// `sid`, the user could not log in again until then). It is refused, as REVOKEALL AT <future>.
#[test]
fn a_logout_from_the_future_is_refused() {
    let server = server(TEN_YEARS);
    let future = logout_token(json!({"sub": "eve", "iat": now() + 3600}));
    let r = logout(&server, &future);
    assert_err(&r, "BADCLAIMS", "iat an hour ahead");
    assert!(r.error().is_some_and(|e| e.contains("future")), "{r}");
    assert_eq!(server.dbsize(), 0, "nothing written");
    let fresh = access("eve", None, now(), now() + 600);
    assert_int(&server.check(&fresh), 1, "the user's tokens stay valid");
    // Within the leeway, it is a clock skew like any other.
    ok(server.config_set("jwtdeny.leeway", "60"), "leeway");
    let skewed = logout_token(json!({"sub": "eve", "iat": now() + 30}));
    assert_int(&logout(&server, &skewed), 1, "iat 30 s ahead, 60 s leeway");
}

/// Issue 17 §1.7: most providers' access tokens carry no `sid` while their logout tokens do. A
/// session's end (LOGOUT with a sid, REVOKESESSION) now revokes the subject's tokens without
/// sid issued up to it, in every mode (workers, cache, replica); tokens with a sid keep their
/// precise behaviour, and a later login is not locked out.
#[test]
fn a_session_end_reaches_the_subjects_tokens_without_sid_in_every_mode() {
    for (workers, cache) in [("0", "131072"), ("2", "131072"), ("0", "0"), ("2", "0")] {
        let mode = format!("workers {workers}, cache {cache}");
        let master = ServerBuilder::new()
            .vector_keys()
            .conf(format!("jwtdeny.issuer {}", conf_quote(ISSUER)))
            .conf(format!("jwtdeny.logout-audience {AUDIENCE}"))
            .conf(format!("jwtdeny.max-lifetime {TEN_YEARS}"))
            .conf(format!("jwtdeny.workers {workers}"))
            .conf(format!("jwtdeny.verify-cache-size {cache}"))
            .start();
        let replica = ServerBuilder::new()
            .vector_keys()
            .conf(format!("jwtdeny.issuer {}", conf_quote(ISSUER)))
            .conf(format!("jwtdeny.max-lifetime {TEN_YEARS}"))
            .conf(format!("jwtdeny.workers {workers}"))
            .replica_of(&master)
            .start();
        wait_for_link(&replica);
        let at = now() - 10;
        let (before, exp) = (at - 100, at + 3600);
        let carol_plain = access("carol", None, before, exp);
        let carol_other = access("carol", Some("other"), before, exp);
        let carol_later = access("carol", None, at + 1, exp);
        let dan_plain = access("dan", None, before, exp);
        for t in [&carol_plain, &carol_other, &carol_later, &dan_plain] {
            assert_int(&master.check(t), 1, &format!("before, {mode}"));
        }
        let lo = logout_token(json!({"sub": "carol", "sid": "web", "iat": at}));
        assert_int(&logout(&master, &lo), 1, &format!("LOGOUT, {mode}"));
        assert_int(
            &master.check(&carol_plain),
            0,
            &format!("no sid, before, {mode}"),
        );
        assert_int(
            &master.check(&carol_other),
            1,
            &format!("another sid, {mode}"),
        );
        assert_int(
            &master.check(&carol_later),
            1,
            &format!("issued after, {mode}"),
        );
        assert_int(
            &master.check(&dan_plain),
            1,
            &format!("another subject, {mode}"),
        );
        let i = inspect(&master, &carol_plain);
        assert_eq!(i["revoked_by"], bulk("session"), "{mode}: {i:?}");
        assert_eq!(
            i["expires_at_ms"],
            Reply::Int((at + TEN_YEARS) * 1000),
            "{mode}"
        );
        assert_int(&master.revoke(&carol_plain), 0, "already revoked");
        // REVOKESESSION: now.
        assert_int(
            &master.cmd(&["JWTDENY.REVOKESESSION", "dan", "mobile"]),
            1,
            "REVOKESESSION",
        );
        assert_int(&master.check(&dan_plain), 0, &format!("dan, {mode}"));
        assert_int(&master.cmd(&["WAIT", "1", "5000"]), 1, "WAIT");
        assert_int(&replica.check(&carol_plain), 0, &format!("replica, {mode}"));
        assert_int(&replica.check(&carol_later), 1, &format!("replica, {mode}"));
        assert_int(&replica.check(&dan_plain), 0, &format!("replica, {mode}"));
        assert_eq!(info_i64(&master, "clients", "blocked_clients"), 0);
    }
}
