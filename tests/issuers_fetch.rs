//! Several issuers whose keys come from their providers (issue 20): each fetched source of the
//! registry (a JWKS URL, a tenant's own URL or discovery document) is fetched by itself, off the
//! main thread, cooled down by itself, and only for its own issuer's tokens; a token naming an
//! issuer nobody registered makes no fetch at all.

use crate::common;
use crate::idp;
use crate::support;

use common::*;
use idp::{Idp, Reply as IdpReply};
use serde_json::{json, Value};
use std::time::Duration;
use support::info;

fn token(alg: &str, kid: &str, iss: &str, sub: &str) -> String {
    let iat = now() - 10;
    mint(
        alg,
        Some(kid),
        &json!({"iss": iss, "sub": sub, "iat": iat, "exp": iat + 3600}),
    )
}

/// A server trusting `registry` (written as `issuers.json`), the test provider's CA, and a
/// default issuer of its own (`https://default.example/`, no keys).
fn server(idp: &Idp, registry: &Value, conf: &[&str]) -> Server {
    let mut b = ServerBuilder::new();
    let path = b.dir().join("issuers.json");
    write_atomic(&path, registry.to_string().as_bytes());
    b = b
        .conf(format!(
            "jwtdeny.jwks-ca-file {}",
            conf_quote(&idp.ca_file().to_string_lossy())
        ))
        .conf("jwtdeny.issuer https://default.example/")
        .conf(format!(
            "jwtdeny.issuers-file {}",
            conf_quote(&path.to_string_lossy())
        ));
    for line in conf {
        b = b.conf(*line);
    }
    b.start()
}

/// `INFO jwtdeny`'s dictionary `issuer_<name>`, as field → value.
fn issuer_info(server: &Server, name: &str) -> std::collections::BTreeMap<String, String> {
    let line = info(server)
        .get(&format!("issuer_{name}"))
        .cloned()
        .unwrap_or_default();
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn wait_issuer_fetches(server: &Server, name: &str, n: u64) {
    wait_until(&format!("{name} fetches_ok >= {n}"), ASYNC_DEADLINE, || {
        issuer_info(server, name)
            .get("fetches_ok")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= n)
    });
}

#[test]
fn each_issuers_keys_come_from_its_own_source_and_the_same_kid_is_two_keys() {
    let idp = Idp::start();
    idp.set(
        "/acme/jwks",
        IdpReply::json(jwks_of(&[("shared-es256", "k1")])),
    );
    idp.set(
        "/beta/jwks",
        IdpReply::json(jwks_of(&[("shared-ed25519", "k1")])),
    );
    let (acme, beta) = ("https://acme.example/", "https://beta.example/");
    let registry = json!({"issuers": {
        "acme": {"issuer": acme, "jwks-uri": idp.url("/acme/jwks")},
        "beta": {"issuer": beta, "jwks-uri": idp.url("/beta/jwks")},
    }});
    let server = server(&idp, &registry, &[]);
    wait_issuer_fetches(&server, "acme", 1);
    wait_issuer_fetches(&server, "beta", 1);
    let a = token("ES256", "k1", acme, "alice");
    let b = token("EdDSA", "k1", beta, "alice");
    assert_int(&server.check(&a), 1, "acme's k1 (ES256)");
    assert_int(&server.check(&b), 1, "beta's k1 (EdDSA)");
    // The same kid at the other issuer is another key: never cross-accepted.
    let crossed = token("EdDSA", "k1", acme, "alice");
    assert!(
        server.check(&crossed).is_error(),
        "beta's key for acme's iss"
    );
    let m = issuer_info(&server, "acme");
    assert_eq!(m["keys_loaded"], "1", "{m:?}");
    assert_eq!(m["last_fetch_result"], "ok", "{m:?}");
    assert_eq!(m["checks_active"], "1", "{m:?}");
    assert!(
        m["checks_badalg"] != "0" || m["checks_badsig"] != "0",
        "{m:?}"
    );

    // A token of an issuer nobody registered is refused before any key lookup or fetch.
    let before = idp.total_requests();
    let stranger = token("ES256", "k9", "https://stranger.example/", "alice");
    assert_err(&server.check(&stranger), "BADCLAIMS", "an unregistered iss");
    assert_err(&server.revoke(&stranger), "BADCLAIMS", "REVOKE too");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        idp.total_requests(),
        before,
        "no fetch for an unregistered issuer"
    );

    // Rotation at acme: the new kid is fetched from acme's source only, and beta keeps its
    // keys (and its verified tokens).
    idp.set(
        "/acme/jwks",
        IdpReply::json(jwks_of(&[("shared-es256", "k1"), ("shared-rsa", "k2")])),
    );
    let beta_requests = idp.requests("/beta/jwks");
    let rotated = token("RS256", "k2", acme, "alice");
    assert_int(
        &server.check(&rotated),
        1,
        "acme's new kid, fetched on first sight",
    );
    assert_eq!(
        idp.requests("/beta/jwks"),
        beta_requests,
        "beta not fetched"
    );
    assert_int(&server.check(&b), 1, "beta's token still verifies");
    assert_eq!(issuer_info(&server, "beta")["keys_loaded"], "1");

    // A kid unknown at beta fetches beta's source, never the default's or acme's.
    let acme_requests = idp.requests("/acme/jwks");
    let unknown = token("EdDSA", "k7", beta, "alice");
    assert_err(&server.check(&unknown), "NOKEY", "beta has no k7");
    assert!(
        idp.requests("/beta/jwks") > beta_requests,
        "beta's source fetched"
    );
    assert_eq!(idp.requests("/acme/jwks"), acme_requests, "acme's not");
}

#[test]
fn each_tenant_of_a_template_has_its_own_source_and_cooldown() {
    let idp = Idp::start();
    idp.set(
        "/realms/t1/certs",
        IdpReply::json(jwks_of(&[("shared-es256", "k1")])),
    );
    idp.set(
        "/realms/t2/certs",
        IdpReply::json(jwks_of(&[("shared-ed25519", "k1")])),
    );
    let iss = |t: &str| format!("https://sso.example/realms/{t}");
    let registry = json!({"issuers": {"kc": {
        "issuer": "https://sso.example/realms/{tenant}",
        "tenants": ["t1", "t2"],
        "jwks-uri": idp.url("/realms/{tenant}/certs"),
    }}});
    let server = server(&idp, &registry, &[]);
    wait_issuer_fetches(&server, "kc", 2);
    assert_eq!(issuer_info(&server, "kc")["sources"], "2");
    assert_int(
        &server.check(token("ES256", "k1", &iss("t1"), "u")),
        1,
        "t1",
    );
    assert_int(
        &server.check(token("EdDSA", "k1", &iss("t2"), "u")),
        1,
        "t2",
    );
    // t1's key is not t2's, though both are k1.
    assert!(server
        .check(token("ES256", "k1", &iss("t2"), "u"))
        .is_error());
    // A tenant not listed: refused, nothing fetched (no URL is made from a token).
    let before = idp.total_requests();
    assert_err(
        &server.check(token("ES256", "k1", &iss("t3"), "u")),
        "BADCLAIMS",
        "t3 is not a tenant",
    );
    assert_eq!(idp.total_requests(), before);
    // An unknown kid at t1 fetches t1's document; within its cooldown another one does not,
    // while t2 still may fetch its own.
    let (t1, t2) = (
        idp.requests("/realms/t1/certs"),
        idp.requests("/realms/t2/certs"),
    );
    assert_err(
        &server.check(token("ES256", "x1", &iss("t1"), "u")),
        "NOKEY",
        "t1 x1",
    );
    assert_eq!(idp.requests("/realms/t1/certs"), t1 + 1, "t1 fetched once");
    assert_err(
        &server.check(token("ES256", "x2", &iss("t1"), "u")),
        "NOKEY",
        "t1 x2",
    );
    assert_eq!(
        idp.requests("/realms/t1/certs"),
        t1 + 1,
        "t1 within its cooldown"
    );
    assert_err(
        &server.check(token("EdDSA", "x3", &iss("t2"), "u")),
        "NOKEY",
        "t2 x3",
    );
    assert_eq!(
        idp.requests("/realms/t2/certs"),
        t2 + 1,
        "t2's own cooldown"
    );
    // The scope of a tenant's subject.
    let t = token("ES256", "k1", &iss("t1"), "u");
    assert_int(&server.revoke(&t), 1, "REVOKE in t1");
    assert!(
        server.keys()[0].starts_with("jwtdeny:{%kc.t1:u}:"),
        "{:?}",
        server.keys()
    );
}

#[test]
fn discovery_per_issuer_and_a_reload_that_keeps_the_fetched_keys() {
    let idp = Idp::start();
    let issuer = idp.url("/realms/acme");
    idp.set_discovery(&issuer, &issuer, &idp.url("/acme/certs"));
    idp.set(
        "/acme/certs",
        IdpReply::json(jwks_of(&[("shared-es256", "k1")])),
    );
    let registry = json!({"issuers": {"acme": {"issuer": issuer, "discovery": true}}});
    let server = server(&idp, &registry, &[]);
    wait_issuer_fetches(&server, "acme", 1);
    let t = token("ES256", "k1", &issuer, "u");
    assert_int(&server.check(&t), 1, "keys from acme's discovered JWKS");
    // A reload of the same registry keeps the fetched keys in force at once, and a change of
    // a server-wide config does too.
    idp.set_path_delay("/acme/certs", 2000);
    assert_int(&server.cmd(&["JWTDENY.ISSUERS", "RELOAD"]), 1, "RELOAD");
    assert_int(&server.check(&t), 1, "right after the reload");
    ok(
        server.config_set("jwtdeny.leeway", "5"),
        "CONFIG SET leeway",
    );
    assert_int(&server.check(&t), 1, "right after a config change");
    // MODULE UNLOAD with the registry's fetch under way does not hang.
    let started = std::time::Instant::now();
    idp.set_path_delay("/acme/certs", 6000);
    server.cmd(&["JWTDENY.ISSUERS", "RELOAD"]);
    let r = server.cmd(&["MODULE", "UNLOAD", "jwtdeny"]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "unload took {:?}: {r}",
        started.elapsed()
    );
    assert_eq!(server.cmd(&["PING"]).text(), "PONG");
}
