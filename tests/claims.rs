//! Time claims with leeway at both ends, issuer, audience and the algorithm allowlist.

use crate::common;

use common::*;
use serde_json::json;

#[test]
fn leeway_extends_exp_and_the_stored_expiry() {
    let server = Server::with_vector_keys();
    let exp = now() - 2;
    let iat = exp - 600;
    let token = mint_default("HS256", &claims("late", iat, exp));
    assert_eq!(server.config_get("jwtdeny.leeway"), "0", "default leeway");
    assert_refused(&server, &token, "EXPIRED", "exp 2 s ago, leeway 0");
    assert_eq!(server.keys(), Vec::<String>::new());

    ok(
        server.config_set("jwtdeny.leeway", "10"),
        "CONFIG SET jwtdeny.leeway 10",
    );
    assert_eq!(server.config_get("jwtdeny.leeway"), "10");
    assert_int(&server.check(&token), 1, "exp 2 s ago, leeway 10");
    assert_int(&server.revoke(&token), 1, "REVOKE, exp 2 s ago, leeway 10");
    assert_int(&server.check(&token), 0, "CHECK after REVOKE");
    let key = deny_key("late", iat);
    assert_eq!(
        server.pexpiretime(&key),
        (exp + 10) * 1000,
        "PEXPIRETIME of {key}"
    );

    // Leeway is not unlimited.
    let long_gone = mint_default("HS256", &claims("late", iat, now() - 60));
    assert_err(
        &server.check(&long_gone),
        "EXPIRED",
        "exp 60 s ago, leeway 10",
    );
}

#[test]
fn exp_in_the_near_future_is_active_without_leeway() {
    let server = Server::with_vector_keys();
    let exp = now() + 60;
    let token = mint_default("ES384", &claims("soon", SOME_IAT, exp));
    assert_int(&server.check(&token), 1, "exp in 60 s");
    assert_int(&server.revoke(&token), 1, "REVOKE");
    assert_eq!(server.pexpiretime(&deny_key("soon", SOME_IAT)), exp * 1000);
}

#[test]
fn leeway_given_at_load_time_applies_to_the_stored_expiry() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.leeway 10")
        .start();
    let v = vector("valid-RS384");
    assert_int(&server.revoke(&v.token), 1, "REVOKE");
    let key = deny_key(v.sub.as_deref().unwrap(), v.iat.unwrap());
    assert_eq!(server.pexpiretime(&key), (v.exp.unwrap() + 10) * 1000);
}

#[test]
fn leeway_brings_nbf_forward() {
    let server = Server::with_vector_keys();
    let nbf = now() + 5;
    let token = mint_default(
        "EdDSA",
        &json!({"sub": "early", "iat": SOME_IAT, "nbf": nbf, "exp": FAR_EXP}),
    );
    assert_refused(&server, &token, "NOTYET", "nbf in 5 s, leeway 0");

    ok(
        server.config_set("jwtdeny.leeway", "10"),
        "CONFIG SET jwtdeny.leeway 10",
    );
    assert_int(&server.check(&token), 1, "nbf in 5 s, leeway 10");

    let far = mint_default(
        "EdDSA",
        &json!({"sub": "early", "iat": SOME_IAT, "nbf": now() + 60, "exp": FAR_EXP}),
    );
    assert_err(&server.check(&far), "NOTYET", "nbf in 60 s, leeway 10");

    ok(
        server.config_set("jwtdeny.leeway", "0"),
        "CONFIG SET jwtdeny.leeway 0",
    );
    let past = mint_default(
        "EdDSA",
        &json!({"sub": "early", "iat": SOME_IAT, "nbf": now() - 1, "exp": FAR_EXP}),
    );
    assert_int(&server.check(&past), 1, "nbf 1 s ago, leeway 0");
}

#[test]
fn issuer_must_match_when_configured() {
    let server = Server::with_vector_keys();
    let with_iss = |iss: serde_json::Value| {
        mint_default(
            "PS256",
            &json!({"sub": "i", "iat": SOME_IAT, "exp": FAR_EXP, "iss": iss}),
        )
    };
    let plain = mint_default("PS256", &claims("i", SOME_IAT, FAR_EXP));

    // Unset: any iss, or none, is fine.
    assert_int(
        &server.check(with_iss(json!("https://anyone.example"))),
        1,
        "iss, issuer unset",
    );
    assert_int(&server.check(&plain), 1, "no iss, issuer unset");

    ok(
        server.config_set("jwtdeny.issuer", "https://issuer.example"),
        "CONFIG SET jwtdeny.issuer https://issuer.example",
    );
    assert_eq!(
        server.config_get("jwtdeny.issuer"),
        "https://issuer.example"
    );
    assert_int(
        &server.check(with_iss(json!("https://issuer.example"))),
        1,
        "matching iss",
    );
    assert_err(
        &server.check(with_iss(json!("https://evil.example"))),
        "BADCLAIMS",
        "other iss",
    );
    assert_err(
        &server.check(with_iss(json!("https://issuer.example/"))),
        "BADCLAIMS",
        "iss with a trailing slash",
    );
    assert_err(
        &server.check(with_iss(json!(["https://issuer.example"]))),
        "BADCLAIMS",
        "iss as array",
    );
    assert_refused(&server, &plain, "BADCLAIMS", "missing iss");

    ok(
        server.config_set("jwtdeny.issuer", ""),
        "CONFIG SET jwtdeny.issuer \"\"",
    );
    assert_int(&server.check(&plain), 1, "no iss after unsetting issuer");
}

#[test]
fn audience_must_be_contained_when_configured() {
    let server = Server::with_vector_keys();
    let with_aud = |aud: serde_json::Value| {
        mint_default(
            "RS512",
            &json!({"sub": "a", "iat": SOME_IAT, "exp": FAR_EXP, "aud": aud}),
        )
    };
    let plain = mint_default("RS512", &claims("a", SOME_IAT, FAR_EXP));

    // Unset: an aud claim is not an error (unlike jsonwebtoken's default Validation).
    assert_int(
        &server.check(with_aud(json!("whatever"))),
        1,
        "aud string, audience unset",
    );
    assert_int(
        &server.check(with_aud(json!(["x", "y"]))),
        1,
        "aud array, audience unset",
    );
    assert_int(&server.check(&plain), 1, "no aud, audience unset");

    ok(
        server.config_set("jwtdeny.audience", "api://svc"),
        "CONFIG SET jwtdeny.audience api://svc",
    );
    assert_eq!(server.config_get("jwtdeny.audience"), "api://svc");
    assert_int(
        &server.check(with_aud(json!("api://svc"))),
        1,
        "matching aud string",
    );
    assert_int(
        &server.check(with_aud(json!(["other", "api://svc"]))),
        1,
        "aud array containing it",
    );
    assert_err(
        &server.check(with_aud(json!("other"))),
        "BADCLAIMS",
        "other aud",
    );
    assert_err(
        &server.check(with_aud(json!(["other", "more"]))),
        "BADCLAIMS",
        "aud array without it",
    );
    assert_err(
        &server.check(with_aud(json!([]))),
        "BADCLAIMS",
        "empty aud array",
    );
    assert_err(&server.check(&plain), "BADCLAIMS", "missing aud");
    assert_err(
        &server.revoke(with_aud(json!("other"))),
        "BADCLAIMS",
        "REVOKE, other aud",
    );

    ok(
        server.config_set("jwtdeny.audience", ""),
        "CONFIG SET jwtdeny.audience \"\"",
    );
    assert_int(
        &server.check(with_aud(json!("other"))),
        1,
        "aud after unsetting audience",
    );
}

#[test]
fn algorithms_allowlist() {
    let server = Server::with_vector_keys();
    ok(
        server.config_set("jwtdeny.algorithms", "RS256,ES256"),
        "CONFIG SET jwtdeny.algorithms RS256,ES256",
    );
    let got = server.config_get("jwtdeny.algorithms");
    assert!(
        got == "RS256,ES256" || got == "ES256,RS256",
        "jwtdeny.algorithms is {got:?}"
    );
    for v in vectors()
        .into_iter()
        .filter(|v| v.name.starts_with("valid-"))
    {
        let alg = v.name.trim_start_matches("valid-");
        let r = server.check(&v.token);
        if alg == "RS256" || alg == "ES256" {
            assert_int(&r, 1, &v.name);
        } else {
            assert_err(&r, "BADALG", &v.name);
            assert_err(
                &server.revoke(&v.token),
                "BADALG",
                &format!("REVOKE {}", v.name),
            );
        }
    }
    // The allowlist is judged before the key lookup.
    let unknown_kid = mint(
        "HS256",
        Some("no-such-kid"),
        &claims("x", SOME_IAT, FAR_EXP),
    );
    assert_err(
        &server.check(&unknown_kid),
        "BADALG",
        "excluded alg with unknown kid",
    );

    ok(
        server.config_set("jwtdeny.algorithms", "EdDSA"),
        "CONFIG SET jwtdeny.algorithms EdDSA",
    );
    assert_int(&server.check(vector("valid-EdDSA").token), 1, "EdDSA only");
    assert_err(
        &server.check(vector("valid-RS256").token),
        "BADALG",
        "RS256 after EdDSA only",
    );

    ok(
        server.config_set("jwtdeny.algorithms", ""),
        "CONFIG SET jwtdeny.algorithms \"\"",
    );
    for v in vectors().into_iter().filter(|v| v.expect == "active") {
        assert_int(
            &server.check(&v.token),
            1,
            &format!("{} with the allowlist reset", v.name),
        );
    }
    assert_eq!(server.keys(), Vec::<String>::new());
}
