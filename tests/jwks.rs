//! Keys from the identity provider (issue 10): the JWKS fetched over real HTTPS from a test
//! provider on loopback (tests/idp), followed through rotation, removal, outages and discovery,
//! without ever blocking Redis's main thread.

use crate::common;
use crate::idp;
use crate::support;

use common::*;
use idp::{Idp, JWKS_PATH};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{info, info_num};

/// A token signed by the vector key behind `vector_kid`, naming `kid`.
fn token(alg: &str, kid: &str, sub: &str) -> String {
    mint(alg, Some(kid), &claims(sub, now() - 10, FAR_EXP))
}

fn builder(idp: &Idp) -> ServerBuilder {
    ServerBuilder::new()
        .conf(format!(
            "jwtdeny.jwks-ca-file {}",
            conf_quote(&idp.ca_file().to_string_lossy())
        ))
        .conf(format!(
            "jwtdeny.jwks-uri {}",
            conf_quote(&idp.url(JWKS_PATH))
        ))
}

/// Waits until INFO counts `n` successful (or failed) fetches.
fn wait_fetches(server: &Server, field: &str, n: i64) {
    wait_until(&format!("{field} >= {n}"), ASYNC_DEADLINE, || {
        info_num(server, field) >= n
    });
}

fn started(idp: &Idp) -> Server {
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    let server = builder(idp).start();
    wait_fetches(&server, "jwks_fetches_ok", 1);
    server
}

#[test]
fn the_first_fetch_starts_at_load_and_is_reported() {
    let idp = Idp::start();
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    idp.set_path_delay(JWKS_PATH, 700);
    let server = builder(&idp).start();
    // Until the first fetch is in, a token of that key fails closed (without waiting in MULTI).
    let t = token("ES256", "idp-es256", "first");
    let r = server.cmd(&[
        "EVAL",
        "return redis.call('JWTDENY.CHECK', ARGV[1])",
        "0",
        &t,
    ]);
    assert_eq!(r.err_code(), Some("NOKEY"), "before the first fetch: {r}");
    wait_fetches(&server, "jwks_fetches_ok", 1);
    assert_int(&server.check(&t), 1, "after the first fetch");
    let i = info(&server);
    assert_eq!(i["jwks_uri"], idp.url(JWKS_PATH));
    assert_eq!(i["jwks_last_fetch_result"], "ok");
    assert_eq!(i["jwks_fetches_failed"], "0");
    let last: i64 = i["jwks_last_fetch_time"].parse().unwrap();
    assert!((last - now()).abs() <= 2, "last fetch time {last}");
    let next: i64 = i["jwks_next_fetch_time"].parse().unwrap();
    assert!(
        (next - (last + 300)).abs() <= 2,
        "next = last + jwks-refresh: {next}"
    );
    assert_eq!(idp.requests(JWKS_PATH), 1, "exactly one fetch");
    // KEYS LIST names the source.
    let list = server.cmd(&["JWTDENY.KEYS", "LIST"]);
    let entry = list.array()[0].array();
    assert_eq!(entry[1].text(), "idp-es256");
    assert_eq!(entry[7].text(), "uri", "{list}");
}

#[test]
fn a_rotated_key_is_fetched_on_the_first_check_that_names_it() {
    let idp = Idp::start();
    let server = started(&idp);
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "idp-rsa-2"),
    ]));
    let t = token("RS256", "idp-rsa-2", "rotated");
    assert_int(&server.check(&t), 1, "first CHECK with the new kid");
    assert_eq!(idp.requests(JWKS_PATH), 2, "one fetch for the rotation");
    assert_eq!(info_num(&server, "jwks_unknown_kid_fetches"), 1);
    // REVOKE of a token of yet another new kid waits for the fetch too.
    idp.set_jwks(&jwks_of(&[
        ("shared-rsa", "idp-rsa-2"),
        ("shared-ed25519", "idp-ed"),
    ]));
    let t2 = token("EdDSA", "idp-ed", "rotated");
    // Within the cooldown (30 s by default) of the last unknown-kid fetch a CHECK answers
    // NOKEY at once (a REVOKE would wait for the cooldown's end: see the cooldown tests).
    assert_err(&server.check(&t2), "NOKEY", "within the cooldown");
    assert_eq!(idp.requests(JWKS_PATH), 2, "no fetch within the cooldown");
    ok(
        server.config_set("jwtdeny.jwks-cooldown", "1"),
        "CONFIG SET",
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_int(&server.revoke(&t2), 1, "REVOKE after the cooldown fetches");
    assert_int(&server.check(&t2), 0, "revoked");
    assert_eq!(idp.requests(JWKS_PATH), 3);
}

#[test]
fn keys_reload_refetches_and_a_removed_key_goes() {
    let idp = Idp::start();
    let server = started(&idp);
    let t = token("ES256", "idp-es256", "removed");
    assert_int(&server.check(&t), 1, "served");
    idp.set_jwks(&jwks_of(&[("shared-rsa", "idp-rsa")]));
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 1, "RELOAD: 1 key");
    assert_eq!(idp.requests(JWKS_PATH), 2);
    assert_err(
        &server.check(&t),
        "NOKEY",
        "the provider stopped serving its key",
    );
}

#[test]
fn an_outage_keeps_the_keys_and_says_why() {
    let idp = Idp::start();
    let server = started(&idp);
    let t = token("ES256", "idp-es256", "outage");
    assert_int(&server.check(&t), 1, "served");
    for (setup, code, why) in [
        (
            Box::new(|i: &Idp| i.set_status(JWKS_PATH, 503)) as Box<dyn Fn(&Idp)>,
            "status",
            "503",
        ),
        (
            Box::new(|i: &Idp| {
                i.set(JWKS_PATH, idp::Reply::json(vec![b' '; 2 * 1024 * 1024]));
            }),
            "too_large",
            "",
        ),
        (
            Box::new(|i: &Idp| i.set(JWKS_PATH, idp::Reply::json(r#"{"not":"a jwks"}"#))),
            "jwks",
            "keys",
        ),
        (
            Box::new(|i: &Idp| i.set(JWKS_PATH, idp::Reply::json("[1,2"))),
            "not_json",
            "",
        ),
    ] {
        setup(&idp);
        let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
        let e = r
            .error()
            .unwrap_or_else(|| panic!("{code}: RELOAD must fail: {r}"));
        assert!(
            e.contains("the previous keys stay") && e.contains(why),
            "{code}: {e}"
        );
        let i = info(&server);
        assert_eq!(i["jwks_last_fetch_result"], code, "{code}: {i:?}");
        assert_int(&server.check(&t), 1, &format!("{code}: the old keys stay"));
    }
    assert_eq!(info_num(&server, "jwks_fetches_failed"), 4);
    assert!(server.log().contains("fetching the JWKS from"), "logged");
    // Recovered: the next fetch succeeds.
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 1, "recovered");
    assert_eq!(info(&server)["jwks_last_fetch_result"], "ok");
}

#[test]
fn a_slow_provider_never_blocks_the_server() {
    let idp = Idp::start();
    let server = started(&idp);
    ok(
        server.config_set("jwtdeny.jwks-timeout", "1500"),
        "CONFIG SET",
    );
    idp.set_path_delay(JWKS_PATH, 5000);
    let mut waiting = server.conn();
    waiting.send(&["JWTDENY.KEYS", "RELOAD"]).expect("send");
    idp.wait_requests(JWKS_PATH, 2, ASYNC_DEADLINE); // the fetch is under way
    let mut other = server.conn();
    for _ in 0..5 {
        // Time is the property: the provider holds its answer for 5 s, PING must not wait
        // for it (a margin a loaded machine keeps).
        let started = Instant::now();
        assert_eq!(other.cmd(&["PING"]), Reply::Status("PONG".into()));
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "PING during a fetch"
        );
    }
    let t = token("ES256", "idp-es256", "slow");
    assert_int(
        &other.cmd(&["JWTDENY.CHECK", &t]),
        1,
        "known keys keep working",
    );
    let r = waiting.read().expect("RELOAD reply");
    assert!(
        r.error()
            .is_some_and(|e| e.contains("the previous keys stay")),
        "RELOAD after a timeout: {r}"
    );
    assert_eq!(info(&server)["jwks_last_fetch_result"], "timeout");
}

#[test]
fn a_flood_of_random_kids_fetches_at_most_once_per_cooldown() {
    let idp = Idp::start();
    let server = started(&idp);
    let mut c = server.conn();
    for i in 0..200 {
        let t = token("ES256", &format!("random-{i}"), "flood");
        c.queue(&["JWTDENY.CHECK", &t]);
    }
    c.flush().expect("flush");
    for _ in 0..200 {
        let r = c.read().expect("reply");
        assert_eq!(r.err_code(), Some("NOKEY"), "{r}");
    }
    assert_eq!(
        idp.requests(JWKS_PATH),
        2,
        "start-up and one unknown-kid fetch"
    );
    assert_eq!(info_num(&server, "jwks_unknown_kid_fetches"), 1);
}

#[test]
fn https_only_and_the_configured_ca_only() {
    let idp = Idp::start();
    let server = started(&idp);
    let r = server.config_set("jwtdeny.jwks-uri", &idp.http_url(JWKS_PATH));
    assert!(
        r.error().is_some_and(|e| e.contains("https")),
        "plain http: {r}"
    );
    // A redirect to http is refused before connecting to it.
    idp.redirect("/moved", 302, &idp.http_url(JWKS_PATH));
    ok(
        server.config_set("jwtdeny.jwks-uri", &idp.url("/moved")),
        "CONFIG SET",
    );
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(r.is_error(), "redirect to http: {r}");
    assert_eq!(idp.requests("/moved"), 1);
    // Requests are counted per path on both ports: the JWKS path was never asked for.
    assert_eq!(
        idp.requests(JWKS_PATH),
        1,
        "only the start-up fetch, over https"
    );
    // Another CA: the certificate is refused.
    ok(
        server.config_set("jwtdeny.jwks-uri", &idp.url(JWKS_PATH)),
        "CONFIG SET",
    );
    ok(
        server.config_set(
            "jwtdeny.jwks-ca-file",
            &idp.other_ca_file().to_string_lossy(),
        ),
        "CONFIG SET",
    );
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(r.is_error(), "wrong CA: {r}");
    assert_eq!(info(&server)["jwks_last_fetch_result"], "tls");
    let t = token("ES256", "idp-es256", "ca");
    assert_int(&server.check(&t), 1, "the keys fetched earlier stay");
    // A CA file that does not exist is refused by CONFIG SET itself.
    let r = server.config_set("jwtdeny.jwks-ca-file", "/nonexistent/ca.pem");
    assert!(r.is_error(), "{r}");
}

#[test]
fn max_age_shortens_the_refresh_down_to_30_seconds() {
    let idp = Idp::start();
    for (max_age, want) in [(60, 60), (5, 30), (100_000, 300)] {
        idp.set(
            JWKS_PATH,
            idp::Reply::json(jwks_of(&[("shared-es256", "idp-es256")]))
                .header("Cache-Control", format!("public, max-age={max_age}")),
        );
        let server = builder(&idp).start();
        wait_fetches(&server, "jwks_fetches_ok", 1);
        let last = info_num(&server, "jwks_last_fetch_time");
        let next = info_num(&server, "jwks_next_fetch_time");
        assert!(
            (next - last - want).abs() <= 2,
            "max-age {max_age}: next fetch in {}s, want {want}",
            next - last
        );
    }
}

#[test]
fn an_unchanged_refresh_keeps_the_cache_and_a_change_clears_it() {
    let idp = Idp::start();
    let server = started(&idp);
    let t = token("ES256", "idp-es256", "cached");
    assert_int(&server.check(&t), 1, "miss");
    assert_int(&server.check(&t), 1, "hit");
    let hits = info_num(&server, "verify_cache_hits");
    for _ in 0..3 {
        assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 1, "same keys");
    }
    assert_eq!(idp.requests(JWKS_PATH), 4);
    assert_eq!(info_num(&server, "verify_cache_entries"), 1, "kept");
    assert_int(&server.check(&t), 1, "still a hit");
    assert_eq!(info_num(&server, "verify_cache_hits"), hits + 1);
    // Adding a key keeps what the others verified; replacing one clears.
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "idp-rsa"),
    ]));
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 2, "a key added");
    assert_eq!(
        info_num(&server, "verify_cache_entries"),
        1,
        "kept on addition"
    );
    idp.set_jwks(&jwks_of(&[
        ("shared-es384", "idp-es256"),
        ("shared-rsa", "idp-rsa"),
    ]));
    assert_int(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        2,
        "a key replaced",
    );
    assert_eq!(info_num(&server, "verify_cache_entries"), 0, "cleared");
    assert_err(&server.check(&t), "BADALG", "the kid now names a P-384 key");
}

/// A server finding its keys through the discovery document of `issuer` on the test provider.
fn discovering(idp: &Idp, issuer: &str) -> Server {
    ServerBuilder::new()
        .conf(format!(
            "jwtdeny.jwks-ca-file {}",
            conf_quote(&idp.ca_file().to_string_lossy())
        ))
        .conf(format!("jwtdeny.issuer {}", conf_quote(issuer)))
        .conf("jwtdeny.discovery yes")
        .start()
}

#[test]
fn discovery_reads_the_jwks_uri_of_the_issuer() {
    let idp = Idp::start();
    let issuer = idp.url("/realms/acme");
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    idp.set_discovery(&issuer, &issuer, &idp.url(JWKS_PATH));
    let server = discovering(&idp, &issuer);
    wait_fetches(&server, "jwks_fetches_ok", 1);
    let t = mint(
        "ES256",
        Some("idp-es256"),
        &json!({"sub": "d", "iat": now(), "exp": FAR_EXP, "iss": issuer}),
    );
    assert_int(&server.check(&t), 1, "keys found through discovery");
    assert_eq!(
        idp.requests("/realms/acme/.well-known/openid-configuration"),
        1
    );
    assert_eq!(server.config_get("jwtdeny.discovery"), "yes");
    // jwks-uri must stay empty, and the issuer set, while discovery is on.
    let r = server.config_set("jwtdeny.jwks-uri", &idp.url(JWKS_PATH));
    assert!(
        r.error().is_some_and(|e| e.contains("must be empty")),
        "{r}"
    );
    let r = server.config_set("jwtdeny.issuer", "");
    assert!(
        r.error()
            .is_some_and(|e| e.contains("needs jwtdeny.issuer")),
        "{r}"
    );

    // A document naming another issuer is refused; the keys stay.
    idp.set_discovery(
        &issuer,
        "https://evil.example/realms/acme",
        &idp.url(JWKS_PATH),
    );
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(r.is_error(), "mismatched issuer: {r}");
    assert_eq!(info(&server)["jwks_last_fetch_result"], "discovery");
    assert_int(&server.check(&t), 1, "the earlier keys stay");
}

#[test]
fn a_mismatched_issuer_at_start_up_fails_closed() {
    let idp = Idp::start();
    let issuer = idp.url("/realms/acme");
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    idp.set_discovery(&issuer, &idp.url("/realms/other"), &idp.url(JWKS_PATH));
    let server = discovering(&idp, &issuer);
    wait_fetches(&server, "jwks_fetches_failed", 1);
    let t = mint(
        "ES256",
        Some("idp-es256"),
        &json!({"sub": "d", "iat": now(), "exp": FAR_EXP, "iss": issuer}),
    );
    assert_err(
        &server.check(&t),
        "NOKEY",
        "no keys from a mismatched document",
    );
    assert_eq!(
        idp.requests(JWKS_PATH),
        0,
        "the JWKS it names is never fetched"
    );
}

#[test]
fn multi_and_lua_answer_at_once_and_start_the_fetch_for_later() {
    let idp = Idp::start();
    let server = started(&idp);
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "idp-rsa-2"),
    ]));
    let t = token("RS256", "idp-rsa-2", "multi");
    let mut c = server.conn();
    assert_eq!(c.cmd(&["MULTI"]), Reply::Status("OK".into()));
    assert_eq!(
        c.cmd(&["JWTDENY.CHECK", &t]),
        Reply::Status("QUEUED".into())
    );
    let exec = c.cmd(&["EXEC"]);
    assert_eq!(exec.array()[0].err_code(), Some("NOKEY"), "{exec}");
    // The fetch it started brings the key for the next CHECK.
    idp.wait_requests(JWKS_PATH, 2, ASYNC_DEADLINE);
    wait_fetches(&server, "jwks_fetches_ok", 2);
    assert_int(&server.check(&t), 1, "after the fetch MULTI started");
    let lua = server.cmd(&[
        "EVAL",
        "return redis.call('JWTDENY.CHECK', ARGV[1])",
        "0",
        &t,
    ]);
    assert_int(&lua, 1, "Lua with the key loaded");
}

#[test]
fn a_replica_fetches_on_its_own() {
    let idp = Idp::start();
    let master = started(&idp);
    let replica = builder(&idp).replica_of(&master).start();
    support::wait_for_link(&replica);
    wait_fetches(&replica, "jwks_fetches_ok", 1);
    let t = token("ES256", "idp-es256", "replica");
    assert_int(
        &replica.check(&t),
        1,
        "the replica verifies with its own fetch",
    );
    assert_int(&master.revoke(&t), 1, "revoked on the master");
    wait_until(
        "the revocation to reach the replica",
        ASYNC_DEADLINE,
        || replica.check(&t) == Reply::Int(0),
    );
    assert_eq!(idp.requests(JWKS_PATH), 2, "one fetch each");
}

#[test]
fn config_set_at_runtime_starts_and_stops_the_source() {
    let idp = Idp::start();
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    let server = Server::with_vector_keys();
    let t = token("ES256", "idp-es256", "runtime");
    assert_err(&server.check(&t), "NOKEY", "no source yet");
    assert_eq!(info(&server)["jwks_uri"], "");
    assert_eq!(info_num(&server, "jwks_next_fetch_time"), 0);
    ok(
        server.config_set("jwtdeny.jwks-ca-file", &idp.ca_file().to_string_lossy()),
        "CONFIG SET",
    );
    ok(
        server.config_set("jwtdeny.jwks-uri", &idp.url(JWKS_PATH)),
        "CONFIG SET",
    );
    wait_fetches(&server, "jwks_fetches_ok", 1);
    assert_int(
        &server.check(&t),
        1,
        "the file's and the provider's keys together",
    );
    let v = mint_default("HS256", &claims("file-key", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&v), 1, "the file's keys stay");
    assert_eq!(server.cmd(&["JWTDENY.KEYS", "LIST"]).array().len(), 8);
    // A kid in both sources is refused; the keys in force stay.
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "shared-rsa"),
    ]));
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(
        r.error().is_some_and(|e| e.contains("both")),
        "kid clash: {r}"
    );
    assert_int(&server.check(&t), 1, "kept");
    // No source: its keys go at once.
    ok(server.config_set("jwtdeny.jwks-uri", ""), "CONFIG SET");
    assert_err(&server.check(&t), "NOKEY", "source removed");
    assert_eq!(server.cmd(&["JWTDENY.KEYS", "LIST"]).array().len(), 7);
}

#[test]
fn provider_text_is_logged_escaped_and_capped() {
    let idp = Idp::start();
    let mut keys: Value = serde_json::from_str(&jwks_of(&[("shared-es256", "idp-es256")])).unwrap();
    keys["keys"].as_array_mut().unwrap().push(json!({
        "kty": "oct", "kid": "%n%n%s\u{e9}\r\nforged line", "use": "enc", "k": "AAAA"
    }));
    idp.set_jwks(&keys.to_string());
    let server = builder(&idp).start();
    wait_fetches(&server, "jwks_fetches_ok", 1);
    idp.set_status(JWKS_PATH, 500);
    idp.set_reason(JWKS_PATH, b"%n%n%n%s \xff\xfe");
    idp.set_header(JWKS_PATH, "X-Evil", "%n%s".as_bytes());
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(r.is_error(), "{r}");
    assert!(
        r.error()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' '),
        "printable reply: {r}"
    );
    assert_eq!(server.cmd(&["PING"]), Reply::Status("PONG".into()));
    let log = server.log();
    assert!(!log.contains("forged line\n") && !log.lines().any(|l| l.starts_with("forged")));
    assert!(log.contains("skipped 1 key: key '%n%n%s"), "{log}");
    for sign in ["writable segment", "crashed by signal"] {
        assert!(!log.contains(sign), "{log}");
    }
}

#[test]
fn the_refresh_runs_by_itself_and_a_failure_retries_with_backoff() {
    let idp = Idp::start();
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    let server = builder(&idp).conf("jwtdeny.jwks-refresh 10").start();
    wait_fetches(&server, "jwks_fetches_ok", 1);
    // The provider rotates: no token asks, the scheduled refresh brings the new key.
    idp.set_jwks(&jwks_of(&[("shared-rsa", "idp-rsa-3")]));
    idp.wait_requests(JWKS_PATH, 2, Duration::from_secs(15));
    wait_fetches(&server, "jwks_fetches_ok", 2);
    let t = token("RS256", "idp-rsa-3", "refreshed");
    assert_int(&server.check(&t), 1, "after the scheduled refresh");
    assert_eq!(info_num(&server, "jwks_unknown_kid_fetches"), 0);
    // Now the provider fails: retries after 1 s, 2 s, ... (not every 10 s), keys kept.
    idp.set_status(JWKS_PATH, 500);
    let before = idp.requests(JWKS_PATH);
    idp.wait_requests(JWKS_PATH, before + 3, Duration::from_secs(20));
    assert!(info_num(&server, "jwks_fetches_failed") >= 2);
    assert_int(&server.check(&t), 1, "the keys stay through the outage");
    let next = info_num(&server, "jwks_next_fetch_time");
    assert!(
        next - now() <= 10,
        "backoff never waits longer than jwks-refresh"
    );
}

#[test]
fn removing_the_source_answers_the_clients_waiting_for_it() {
    let idp = Idp::start();
    let server = started(&idp);
    idp.set_path_delay(JWKS_PATH, 4000);
    let mut waiting = server.conn();
    waiting.send(&["JWTDENY.KEYS", "RELOAD"]).expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    ok(
        server.config_set("jwtdeny.jwks-uri", ""),
        "remove the source",
    );
    waiting.set_read_timeout(Duration::from_secs(2));
    let r = waiting
        .read()
        .expect("an answer within 2 s, not after the fetch");
    assert!(
        r.error()
            .is_some_and(|e| e.contains("no identity provider")),
        "{r}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.cmd(&["PING"]), Reply::Status("PONG".into()));
}

/// The token's own reply: `[1, claims]` whose `sub` is `sub`.
fn assert_claims_of(r: &Reply, sub: &str, context: &str) {
    let a = r.array();
    assert_eq!(a.len(), 2, "{context}: {r}");
    assert_eq!(a[0], Reply::Int(1), "{context}: {r}");
    let claims: Value = serde_json::from_slice(&a[1].all_bytes()).expect("claims JSON");
    assert_eq!(claims["sub"], sub, "{context}: someone else's reply {r}");
}

/// Issue 17 §1.1: with workers, a CHECK that waited for a fetch ran again from the reply
/// callback and was handed to a worker there, i.e. blocked from inside a callback: it never
/// got a reply, and every later reply on the connection answered the request before it. A
/// forged token with a random kid so received the next user's claims.
#[test]
fn with_workers_a_check_that_waited_for_keys_gets_its_own_reply() {
    let idp = Idp::start();
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    let server = builder(&idp).conf("jwtdeny.workers 2").start();
    wait_fetches(&server, "jwks_fetches_ok", 1);
    ok(
        server.config_set("jwtdeny.jwks-cooldown", "1"),
        "CONFIG SET",
    );
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "idp-rsa-2"),
    ]));
    let rotated = token("RS256", "idp-rsa-2", "rotated-user");
    let forged = token("ES256", "attacker-random-kid", "attacker");
    let victim = token("ES256", "idp-es256", "victim");
    let mut c = server.conn();
    c.set_read_timeout(Duration::from_secs(20));
    for t in [&rotated, &victim] {
        c.queue(&["JWTDENY.CHECK", t, "WITHCLAIMS"]);
    }
    c.flush().expect("flush");
    let r = c.read().expect("the rotated token's reply");
    assert_claims_of(&r, "rotated-user", "a legitimate rotation");
    assert_claims_of(&c.read().expect("reply"), "victim", "the next request");
    // Once the cooldown has passed, an attacker's random kid fetches again.
    std::thread::sleep(Duration::from_millis(1100));
    for t in [&forged, &victim] {
        c.queue(&["JWTDENY.CHECK", t, "WITHCLAIMS"]);
    }
    c.queue(&["PING"]);
    c.flush().expect("flush");
    let r = c.read().expect("the forged token's reply");
    assert_eq!(r.err_code(), Some("NOKEY"), "the forged token: {r}");
    assert_claims_of(&c.read().expect("reply"), "victim", "after the forged one");
    assert_eq!(c.read().expect("PING"), Reply::Status("PONG".into()));
    assert_eq!(idp.requests(JWKS_PATH), 3, "one fetch per unknown kid");
    assert!(
        info_num(&server, "verifications_offloaded") >= 1,
        "the pool verified the known-kid tokens: {}",
        info(&server)["verifications_offloaded"]
    );
    assert_eq!(info_i64(&server, "clients", "blocked_clients"), 0);
}

/// Starts a server whose first fetch the provider holds for `delay_ms`, and waits until that
/// fetch is under way.
fn fetch_in_flight(idp: &Idp, delay_ms: u64, status: u16) -> Server {
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    idp.set_path_delay(JWKS_PATH, delay_ms);
    idp.set_status(JWKS_PATH, status);
    let server = builder(idp).conf("jwtdeny.jwks-timeout 20000").start();
    idp.wait_requests(JWKS_PATH, 1, ASYNC_DEADLINE);
    server
}

/// Issue 17 §1.2: MODULE UNLOAD joined the fetch thread while holding the lock the thread
/// takes to publish: a fetch that succeeded after the unload began froze redis-server, and
/// one that failed stalled it for the rest of jwtdeny.jwks-timeout. The fetch is interrupted
/// instead, and the module loads again.
#[test]
fn module_unload_with_a_fetch_in_flight_returns_at_once() {
    for status in [200, 500] {
        let idp = Idp::start();
        let server = fetch_in_flight(&idp, 6000, status);
        let mut c = server.conn();
        c.set_read_timeout(Duration::from_secs(30));
        let started = Instant::now();
        let r = c.cmd(&["MODULE", "UNLOAD", "jwtdeny"]);
        let took = started.elapsed();
        assert_eq!(r, Reply::Status("OK".into()), "unload (provider {status})");
        // Time is the property: the provider holds the answer for 6 s.
        assert!(
            took < Duration::from_secs(3),
            "unload waited {took:?} for the provider (status {status})"
        );
        assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
        idp.set_path_delay(JWKS_PATH, 0);
        idp.set_status(JWKS_PATH, 200);
        let module = module_path();
        let r = c.cmd(&[
            "MODULE",
            "LOADEX",
            module.to_str().expect("path"),
            "CONFIG",
            "jwtdeny.jwks-ca-file",
            idp.ca_file().to_str().expect("path"),
            "CONFIG",
            "jwtdeny.jwks-uri",
            &idp.url(JWKS_PATH),
        ]);
        assert_eq!(r, Reply::Status("OK".into()), "loaded again");
        wait_fetches(&server, "jwks_fetches_ok", 1);
        let t = token("ES256", "idp-es256", "after-reload");
        assert_int(
            &server.check(&t),
            1,
            "keys fetched by the module loaded again",
        );
    }
}

/// A cooldown as short as a test can wait for, begun by an unknown kid nobody serves.
fn in_cooldown(idp: &Idp, secs: u64) -> Server {
    let server = started(idp);
    ok(
        server.config_set("jwtdeny.jwks-cooldown", &secs.to_string()),
        "CONFIG SET",
    );
    let nobody = token("ES256", "served-by-nobody", "x");
    assert_err(&server.check(&nobody), "NOKEY", "an unknown kid");
    assert_eq!(idp.requests(JWKS_PATH), 2, "its fetch starts the cooldown");
    server
}

/// Issue 17 §1.6: anyone can start the cooldown with an unknown kid; a revocation signed with a
/// key the provider rotated in during it was answered NOKEY and lost (providers post a logout
/// once). A REVOKE or LOGOUT now waits for the fetch at the cooldown's end; the fetch rate
/// stays one per cooldown.
#[test]
fn a_revocation_within_the_cooldown_waits_for_its_end_and_is_not_lost() {
    let idp = Idp::start();
    let server = in_cooldown(&idp, 3);
    ok(
        server.config_set("jwtdeny.logout-audience", "jwtdeny-tests"),
        "CONFIG SET",
    );
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "idp-rsa-2"),
    ]));
    let logout = {
        let claims = json!({
            "aud": "jwtdeny-tests", "iat": now(), "exp": now() + 120, "jti": "j",
            "sub": "logged-out", "sid": "s-1",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        let header = json!({"alg": "RS256", "kid": "idp-rsa-2", "typ": "logout+jwt"});
        sign_raw("RS256", &header.to_string(), &claims.to_string())
    };
    let revoked = token("RS256", "idp-rsa-2", "revoked");
    let mut a = server.conn();
    let mut b = server.conn();
    a.set_read_timeout(Duration::from_secs(30));
    b.set_read_timeout(Duration::from_secs(30));
    a.send(&["JWTDENY.LOGOUT", &logout]).expect("send");
    b.send(&["JWTDENY.REVOKE", &revoked]).expect("send");
    // The server answers others meanwhile, and a CHECK of the new kid answers at once.
    let mut other = server.conn();
    assert_eq!(other.cmd(&["PING"]), Reply::Status("PONG".into()));
    assert_err(
        &other.cmd(&["JWTDENY.CHECK", &revoked]),
        "NOKEY",
        "a CHECK within the cooldown answers at once",
    );
    assert_int(
        &a.read().expect("LOGOUT"),
        1,
        "the logout ended its session",
    );
    assert_int(&b.read().expect("REVOKE"), 1, "the revocation was made");
    assert_int(&server.check(&revoked), 0, "revoked");
    assert_eq!(
        idp.requests(JWKS_PATH),
        3,
        "one fetch at the cooldown's end served all of them"
    );
    assert_eq!(info_i64(&server, "clients", "blocked_clients"), 0);
}

/// Issue 17 §1.6, the CHECK side: within the cooldown a CHECK of an unknown kid answers NOKEY
/// at once, and the fetch it asked for runs when the cooldown ends, without another request.
/// In MULTI a REVOKE cannot wait: it answers NOKEY at once too.
#[test]
fn a_check_within_the_cooldown_answers_at_once_and_the_fetch_follows() {
    let idp = Idp::start();
    let server = in_cooldown(&idp, 2);
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "idp-rsa-2"),
    ]));
    let t = token("RS256", "idp-rsa-2", "later");
    assert_err(&server.check(&t), "NOKEY", "within the cooldown");
    let mut c = server.conn();
    assert_eq!(c.cmd(&["MULTI"]), Reply::Status("OK".into()));
    c.cmd(&["JWTDENY.REVOKE", &t]);
    let exec = c.cmd(&["EXEC"]);
    assert_eq!(exec.array()[0].err_code(), Some("NOKEY"), "{exec}");
    assert_eq!(
        idp.requests(JWKS_PATH),
        2,
        "nothing fetched within the cooldown"
    );
    idp.wait_requests(JWKS_PATH, 3, ASYNC_DEADLINE);
    wait_fetches(&server, "jwks_fetches_ok", 3);
    assert_int(&server.check(&t), 1, "fetched when the cooldown ended");
    assert_eq!(info_num(&server, "jwks_unknown_kid_fetches"), 2);
}

/// Issue 17 §1.4: a secret (`oct`) key served at the JWKS URL verified HS256 tokens, so anyone
/// who could read that public URL could mint tokens for any subject. Fetched keys are public
/// keys only; the same key in the keys file still serves.
#[test]
fn a_secret_key_served_by_the_provider_is_never_used() {
    let idp = Idp::start();
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-hs256", "idp-hs256"),
    ]));
    let server = builder(&idp).start();
    wait_fetches(&server, "jwks_fetches_ok", 1);
    let forged = token("HS256", "idp-hs256", "anyone-at-all");
    assert_err(
        &server.check(&forged),
        "NOKEY",
        "an HS256 token of the URL's oct key",
    );
    let inspected = server.cmd(&["JWTDENY.INSPECT", &forged]);
    assert_eq!(
        inspected.array()[1].text(),
        "NOKEY",
        "INSPECT likewise: {inspected}"
    );
    let list = server.cmd(&["JWTDENY.KEYS", "LIST"]);
    assert_eq!(
        list.array().len(),
        1,
        "only the public key is in force: {list}"
    );
    assert_eq!(info_num(&server, "keys_loaded"), 1);
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("secret (oct) key"))
        .collect();
    assert_eq!(lines.len(), 1, "one line says why: {lines:?}");
    assert!(lines[0].contains("'idp-hs256'"), "{}", lines[0]);
    // A JWKS of secret keys alone is no key set: the fetch fails, and nothing is in force.
    idp.set_jwks(&jwks_of(&[("shared-hs256", "idp-hs256")]));
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(r.is_error(), "{r}");
    assert_eq!(info(&server)["jwks_last_fetch_result"], "jwks");
}

/// Issue 17 §1.8: every skipped key was logged on every successful fetch (tens of thousands of
/// lines from a large JWKS, every refresh and every cooldown). Now one summary line, only when
/// the key set changes.
#[test]
fn skipped_keys_are_one_summary_line_when_the_key_set_changes() {
    let idp = Idp::start();
    let mut keys = vec![{
        let mut k = jwk("shared-es256");
        k["kid"] = json!("idp-es256");
        k
    }];
    for i in 0..2000 {
        let mut k = jwk("shared-rsa");
        k["kid"] = json!(format!("enc-{i}"));
        k["use"] = json!("enc");
        keys.push(k);
    }
    idp.set_jwks(&json!({ "keys": keys }).to_string());
    let server = builder(&idp).start();
    wait_fetches(&server, "jwks_fetches_ok", 1);
    for _ in 0..3 {
        assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 1, "unchanged");
    }
    assert_eq!(info_num(&server, "jwks_fetches_ok"), 4);
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line for four fetches: {} lines",
        lines.len()
    );
    assert!(
        lines[0].contains("skipped 2000 keys") && lines[0].contains("and 1997 more"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].len() < 1000,
        "a summary, not a list: {} bytes",
        lines[0].len()
    );
}

/// Issue 17 §1.12: every refetch read the discovery document again (two requests per fetch).
/// Its own Cache-Control is honoured (jwks-refresh without one); a failed JWKS fetch forgets
/// the discovered URL, and KEYS RELOAD reads the document again.
#[test]
fn the_discovery_document_is_reused_while_it_may_be() {
    let idp = Idp::start();
    let issuer = idp.url("/realms/acme");
    let doc_path = "/realms/acme/.well-known/openid-configuration";
    idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
    idp.set_discovery(&issuer, &issuer, &idp.url(JWKS_PATH));
    idp.set_header(doc_path, "Cache-Control", "max-age=3600");
    let server = ServerBuilder::new()
        .conf(format!(
            "jwtdeny.jwks-ca-file {}",
            conf_quote(&idp.ca_file().to_string_lossy())
        ))
        .conf(format!("jwtdeny.issuer {}", conf_quote(&issuer)))
        .conf("jwtdeny.discovery yes")
        .conf("jwtdeny.jwks-cooldown 1")
        .start();
    wait_fetches(&server, "jwks_fetches_ok", 1);
    assert_eq!((idp.requests(doc_path), idp.requests(JWKS_PATH)), (1, 1));
    // Unknown kids refetch the JWKS only.
    idp.set_jwks(&jwks_of(&[
        ("shared-es256", "idp-es256"),
        ("shared-rsa", "idp-rsa-2"),
    ]));
    let t = mint(
        "RS256",
        Some("idp-rsa-2"),
        &json!({"sub": "d", "iat": now(), "exp": FAR_EXP, "iss": issuer}),
    );
    assert_int(&server.check(&t), 1, "the rotated key, fetched");
    assert_eq!((idp.requests(doc_path), idp.requests(JWKS_PATH)), (1, 2));
    // A failed JWKS fetch forgets the URL: the next round discovers again.
    idp.set_status(JWKS_PATH, 500);
    std::thread::sleep(Duration::from_millis(1100)); // the cooldown is the property here
    let unknown = mint(
        "ES256",
        Some("nobody"),
        &json!({"sub": "d", "iat": now(), "exp": FAR_EXP, "iss": issuer}),
    );
    assert_err(&server.check(&unknown), "NOKEY", "during the outage");
    assert_eq!((idp.requests(doc_path), idp.requests(JWKS_PATH)), (1, 3));
    let ok_before = info_num(&server, "jwks_fetches_ok");
    idp.set_status(JWKS_PATH, 200);
    // The retry after the failure (1 s later) discovers again before it fetches.
    wait_fetches(&server, "jwks_fetches_ok", ok_before + 1);
    assert_eq!(
        idp.requests(doc_path),
        2,
        "discovered again after the failure"
    );
    let jwks_before = idp.requests(JWKS_PATH);
    // An operator's reload reads the document again.
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 2, "RELOAD");
    assert_eq!(
        (idp.requests(doc_path), idp.requests(JWKS_PATH)),
        (3, jwks_before + 1)
    );
}

/// A discovery document granting a freshness beyond any clock (9020185 fixed the overflow
/// that panicked the fetch round): it is kept at most jwtdeny.jwks-refresh, and the keys keep
/// coming.
#[test]
fn a_huge_discovery_max_age_is_kept_no_longer_than_the_refresh() {
    for max_age in [
        "99999999999999999999",
        "18446744073709551615",
        "9223372036854775807",
    ] {
        let idp = Idp::start();
        let issuer = idp.url("/realms/huge");
        let doc_path = "/realms/huge/.well-known/openid-configuration";
        idp.set_jwks(&jwks_of(&[("shared-es256", "idp-es256")]));
        idp.set_discovery(&issuer, &issuer, &idp.url(JWKS_PATH));
        idp.set_header(doc_path, "Cache-Control", format!("max-age={max_age}"));
        let server = ServerBuilder::new()
            .conf(format!(
                "jwtdeny.jwks-ca-file {}",
                conf_quote(&idp.ca_file().to_string_lossy())
            ))
            .conf(format!("jwtdeny.issuer {}", conf_quote(&issuer)))
            .conf("jwtdeny.discovery yes")
            .conf("jwtdeny.jwks-cooldown 1")
            .start();
        wait_fetches(&server, "jwks_fetches_ok", 1);
        // Another round: the server is alive and the document's URL is used again.
        ok_or_keys(server.cmd(&["JWTDENY.KEYS", "RELOAD"]), max_age);
        let next = info_num(&server, "jwks_next_fetch_time");
        assert!(
            next > 0 && next <= now() + 300 + 5,
            "{max_age}: next fetch at {next}"
        );
        assert_eq!(server.cmd(&["PING"]).text(), "PONG", "{max_age}");
    }
}

#[track_caller]
fn ok_or_keys(r: Reply, what: &str) {
    assert!(
        matches!(r, Reply::Int(n) if n > 0),
        "{what}: KEYS RELOAD answered {r}"
    );
}
