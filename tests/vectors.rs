//! The shared vectors (made by PyJWT, not by jsonwebtoken) against a real server, and
//! REVOKE → CHECK for every algorithm.

use crate::common;

use common::*;

#[test]
fn every_vector_gives_its_expected_outcome() {
    let server = Server::with_vector_keys();
    let mut failures = Vec::new();
    for v in vectors() {
        let reply = server.check(&v.token);
        let ok = match v.expect.as_str() {
            "active" => reply == Reply::Int(1),
            code => reply.err_code() == Some(code),
        };
        if !ok {
            failures.push(format!("{}: expected {}, got {reply}", v.name, v.expect));
        }
    }
    assert!(failures.is_empty(), "CHECK:\n{}", failures.join("\n"));
}

#[test]
fn revoke_refuses_every_invalid_vector_with_the_same_code_and_stores_nothing() {
    let server = Server::with_vector_keys();
    let mut failures = Vec::new();
    let mut n = 0;
    for v in vectors().into_iter().filter(|v| v.expect != "active") {
        n += 1;
        let reply = server.revoke(&v.token);
        if reply.err_code() != Some(v.expect.as_str()) {
            failures.push(format!("{}: expected {}, got {reply}", v.name, v.expect));
        }
    }
    assert!(n >= 20, "only {n} invalid vectors");
    assert!(failures.is_empty(), "REVOKE:\n{}", failures.join("\n"));
    assert_eq!(
        server.keys(),
        Vec::<String>::new(),
        "refused REVOKEs stored keys"
    );
}

/// Error replies say what is wrong: a code, then a message.
#[test]
fn error_replies_carry_a_message_after_the_code() {
    let server = Server::with_vector_keys();
    for v in vectors().into_iter().filter(|v| v.expect != "active") {
        let reply = server.check(&v.token);
        let text = reply
            .error()
            .unwrap_or_else(|| panic!("{}: {reply}", v.name));
        let message = text.strip_prefix(v.expect.as_str()).unwrap_or("");
        assert!(
            message.starts_with(' ') && message.trim().len() >= 5,
            "{}: no message after the code: {reply}",
            v.name
        );
    }
}

/// REVOKE 1, REVOKE 0, CHECK 0 for each valid vector (one per algorithm), the exact key, and
/// its absolute expiry; the other vectors stay active.
#[test]
fn revoke_then_check_per_algorithm_with_vector_tokens() {
    let server = Server::with_vector_keys();
    let valid: Vec<Vector> = vectors()
        .into_iter()
        .filter(|v| v.name.starts_with("valid-"))
        .collect();
    let algs: Vec<&str> = valid
        .iter()
        .map(|v| v.name.trim_start_matches("valid-"))
        .collect();
    assert_eq!(algs, ALL_ALGS.to_vec(), "one valid vector per algorithm");

    let mut expected_keys = Vec::new();
    for (i, v) in valid.iter().enumerate() {
        let sub = v.sub.as_deref().expect("sub");
        let key = deny_key(sub, v.iat.expect("iat"));
        let exp = v.exp.expect("exp");

        assert_int(
            &server.check(&v.token),
            1,
            &format!("{} CHECK before", v.name),
        );
        assert_int(
            &server.revoke(&v.token),
            1,
            &format!("{} first REVOKE", v.name),
        );
        assert_int(
            &server.revoke(&v.token),
            0,
            &format!("{} second REVOKE", v.name),
        );
        assert_int(
            &server.check(&v.token),
            0,
            &format!("{} CHECK after", v.name),
        );
        assert_eq!(
            server.pexpiretime(&key),
            exp * 1000,
            "{}: PEXPIRETIME {key}",
            v.name
        );
        assert_eq!(
            server.cmd(&["GET", key.as_str()]),
            Reply::Bulk(Some(b"1".to_vec())),
            "{}: value of {key}",
            v.name
        );
        expected_keys.push(key);

        // Revoking one token does not touch the others.
        for later in &valid[i + 1..] {
            assert_int(
                &server.check(&later.token),
                1,
                &format!("{} after revoking {}", later.name, v.name),
            );
        }
    }
    expected_keys.sort();
    assert_eq!(server.keys(), expected_keys);
}

/// The same with tokens minted here by jsonwebtoken, with a realistic near `exp`.
#[test]
fn revoke_then_check_per_algorithm_with_minted_tokens() {
    let server = Server::with_vector_keys();
    let exp = now() + 3600;
    let mut expected_keys = Vec::new();
    for (i, alg) in ALL_ALGS.iter().enumerate() {
        let sub = format!("minted-{alg}");
        let iat = now() - 10 - i as i64;
        let token = mint_default(alg, &claims(&sub, iat, exp));
        let key = deny_key(&sub, iat);

        assert_int(&server.check(&token), 1, &format!("{alg} CHECK before"));
        assert_int(&server.revoke(&token), 1, &format!("{alg} first REVOKE"));
        assert_int(&server.revoke(&token), 0, &format!("{alg} second REVOKE"));
        assert_int(&server.check(&token), 0, &format!("{alg} CHECK after"));
        assert_eq!(
            server.pexpiretime(&key),
            exp * 1000,
            "{alg}: PEXPIRETIME {key}"
        );
        expected_keys.push(key);
    }
    expected_keys.sort();
    assert_eq!(server.keys(), expected_keys);
}

/// `1767225800.0` and `1.7672258e9` are the same second: one key, whichever is revoked first.
#[test]
fn iat_float_and_exponent_map_to_the_same_key() {
    let server = Server::with_vector_keys();
    let float = vector("iat-float");
    let exponent = vector("iat-exponent");
    let key = deny_key("carol", 1_767_225_800);

    assert_int(&server.check(&float.token), 1, "iat-float before");
    assert_int(&server.check(&exponent.token), 1, "iat-exponent before");
    assert_int(&server.revoke(&float.token), 1, "REVOKE iat-float");
    assert_int(
        &server.revoke(&exponent.token),
        0,
        "REVOKE iat-exponent (same key)",
    );
    assert_int(&server.check(&exponent.token), 0, "CHECK iat-exponent");
    assert_int(&server.check(&float.token), 0, "CHECK iat-float");
    assert_eq!(server.keys(), vec![key.clone()]);
    assert_eq!(server.pexpiretime(&key), FAR_EXP * 1000);
}
