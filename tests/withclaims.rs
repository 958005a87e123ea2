//! JWTDENY.CHECK <token> WITHCLAIMS (issue 3 §2): `[1, <payload JSON as signed>]` for an
//! active token, `[0, nil]` for a revoked one, and the usual error otherwise.

use crate::common;
use crate::support;

use common::*;
use serde_json::{json, Value};
use support::*;

fn with_claims(server: &Server, token: &str) -> Reply {
    server.cmd(&["JWTDENY.CHECK", token, "WITHCLAIMS"])
}

/// The two elements of an active WITHCLAIMS reply: status and the payload bytes.
#[track_caller]
fn active_payload(r: &Reply) -> Vec<u8> {
    let items = r.array();
    assert_eq!(items.len(), 2, "WITHCLAIMS reply {r}");
    assert_eq!(items[0], Reply::Int(1), "WITHCLAIMS status in {r}");
    match &items[1] {
        Reply::Bulk(Some(b)) => b.clone(),
        other => panic!("WITHCLAIMS payload is not a bulk string: {other} in {r}"),
    }
}

#[test]
fn active_tokens_return_their_exact_claims() {
    let server = Server::with_vector_keys();
    let rich = json!({
        "sub": "alice",
        "iat": SOME_IAT,
        "exp": FAR_EXP,
        "iss": "https://issuer.example",
        "aud": ["api", "web"],
        "roles": ["admin", "reader"],
        "profile": {"name": "Alice Ünïcødé ✓", "age": 42, "active": true, "none": null},
        "scope": "read write",
        "ratio": 0.25
    });
    for alg in ["HS256", "RS256", "PS384", "ES256", "ES384", "EdDSA"] {
        let token = mint_default(alg, &rich);
        let payload = active_payload(&with_claims(&server, &token));
        let parsed: Value = serde_json::from_slice(&payload)
            .unwrap_or_else(|e| panic!("{alg}: payload is not JSON ({e}): {payload:?}"));
        assert_eq!(parsed, rich, "{alg}: claims");
        // Exactly the signed bytes, not a re-serialisation.
        let segment = token.split('.').nth(1).unwrap();
        assert_eq!(
            payload,
            b64_decode(segment),
            "{alg}: payload bytes as signed"
        );
    }
}

#[test]
fn payload_is_returned_byte_for_byte_as_signed() {
    let server = Server::with_vector_keys();
    // Unusual but valid JSON: whitespace, key order, a float iat, an escaped character.
    let payload =
        "{ \"exp\" : 4102444800 ,\n \"sub\":\"b\\u00f6b\", \"iat\": 1767225600.0, \"x\":[1, 2] }";
    let token = sign_raw("HS256", r#"{"alg":"HS256","kid":"shared-hs256"}"#, payload);
    let got = active_payload(&with_claims(&server, &token));
    assert_eq!(String::from_utf8_lossy(&got), payload);
    // And every valid vector.
    for v in vectors().into_iter().filter(|v| v.expect == "active") {
        let got = active_payload(&with_claims(&server, &v.token));
        let segment = v.token.split('.').nth(1).unwrap();
        assert_eq!(got, b64_decode(segment), "vector {}", v.name);
        let parsed: Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(
            parsed["sub"].as_str(),
            v.sub.as_deref(),
            "vector {}",
            v.name
        );
    }
}

#[test]
fn revoked_tokens_return_zero_and_nil() {
    let server = Server::with_vector_keys();
    let by_token = vector("valid-RS256").token;
    assert_int(&server.revoke(&by_token), 1, "REVOKE");
    assert_eq!(
        with_claims(&server, &by_token),
        Reply::Array(Some(vec![Reply::Int(0), nil()])),
        "revoked by token"
    );
    let t = now() - 100;
    let by_subject = mint_default("EdDSA", &claims("dave", t - 1, FAR_EXP));
    let after = mint_default("EdDSA", &claims("dave", t + 1, FAR_EXP));
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "dave", "AT", &t.to_string()]),
        t,
        "REVOKEALL",
    );
    assert_eq!(
        with_claims(&server, &by_subject),
        Reply::Array(Some(vec![Reply::Int(0), nil()])),
        "revoked by subject"
    );
    active_payload(&with_claims(&server, &after));
}

#[test]
fn option_is_case_insensitive_and_anything_else_is_a_syntax_error() {
    let server = Server::with_vector_keys();
    let t = vector("valid-HS256").token;
    for spelling in ["WITHCLAIMS", "withclaims", "WithClaims"] {
        let r = server.cmd(&["JWTDENY.CHECK", t.as_str(), spelling]);
        active_payload(&r);
    }
    for bad in ["CLAIMS", "WITHCLAIM", "WITHCLAIMSX", "", "1"] {
        let r = server.cmd(&["JWTDENY.CHECK", t.as_str(), bad]);
        assert_err(&r, "ERR", &format!("CHECK <token> {bad:?}"));
        assert!(
            r.error().unwrap().to_ascii_lowercase().contains("syntax"),
            "CHECK <token> {bad:?}: {r}"
        );
    }
    // The syntax is judged before the token: an invalid token with a bad option is a syntax
    // error too, and nothing is counted as a check.
    let r = server.cmd(&["JWTDENY.CHECK", "garbage", "NOPE"]);
    assert_err(&r, "ERR", "garbage token with a bad option");
}

#[test]
fn errors_are_the_same_as_without_the_option() {
    let server = Server::with_vector_keys();
    for v in vectors().into_iter().filter(|v| v.expect != "active") {
        let plain = server.check(&v.token);
        let with = with_claims(&server, &v.token);
        assert_err(&plain, &v.expect, &format!("CHECK {}", v.name));
        assert_eq!(with, plain, "WITHCLAIMS error for {}", v.name);
    }
    // Minted error cases whose messages carry times.
    let expired = mint_default("ES256", &claims("erin", SOME_IAT, now() - 10));
    assert_err(&with_claims(&server, &expired), "EXPIRED", "expired");
    let nbf = json!({"sub": "erin", "iat": SOME_IAT, "exp": FAR_EXP, "nbf": now() + 600});
    let early = mint_default("ES256", &nbf);
    assert_err(&with_claims(&server, &early), "NOTYET", "not yet valid");
}
