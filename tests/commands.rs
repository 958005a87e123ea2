//! Command surface: arity, hostile input, the order of checks, header handling, metadata.

use crate::common;
use crate::support;

use common::*;
use jsonwebtoken::EncodingKey;
use std::time::Duration;
use support::command_info;

const HS256_HEADER: &str = r#"{"alg":"HS256","kid":"shared-hs256"}"#;

fn payload(sub: &str) -> String {
    format!(r#"{{"sub":"{sub}","iat":{SOME_IAT},"exp":{FAR_EXP}}}"#)
}

#[test]
fn wrong_arity_gets_the_standard_error() {
    let server = Server::with_vector_keys();
    let token = vector("valid-HS256").token;
    let t = token.as_str();
    let arity = |name: &str| {
        Reply::Error(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    assert_eq!(
        server.cmd(&["jwtdeny.check"]),
        arity("jwtdeny.check"),
        "CHECK without arguments"
    );
    // CHECK takes options after the token: an unknown one is a syntax error, CERT without
    // its value too few arguments.
    assert_err(
        &server.cmd(&["jwtdeny.check", t, "WITHCLAIMS", "x"]),
        "ERR",
        "CHECK with an unknown option",
    );
    assert_eq!(
        server.cmd(&["jwtdeny.check", t, "WITHCLAIMS", "CERT"]),
        arity("jwtdeny.check"),
        "CHECK with CERT and no thumbprint"
    );
    assert_eq!(
        server.cmd(&["jwtdeny.revoke"]),
        arity("jwtdeny.revoke"),
        "REVOKE without arguments"
    );
    assert_eq!(
        server.cmd(&["jwtdeny.revoke", t, t]),
        arity("jwtdeny.revoke"),
        "REVOKE with two arguments"
    );
    assert_eq!(
        server.cmd(&["jwtdeny.keys"]),
        arity("jwtdeny.keys"),
        "KEYS without a subcommand"
    );
    assert_eq!(server.keys(), Vec::<String>::new());
}

/// A second CHECK argument other than WITHCLAIMS is a syntax error, not ignored.
#[test]
fn check_with_an_unknown_option_is_a_syntax_error() {
    let server = Server::with_vector_keys();
    let t = vector("valid-HS256").token;
    let r = server.cmd(&["JWTDENY.CHECK", t.as_str(), t.as_str()]);
    assert_err(&r, "ERR", "CHECK <token> <token>");
    assert!(r.error().unwrap().contains("syntax"), "{r}");
    assert_err(
        &server.cmd(&["JWTDENY.CHECK", t.as_str(), "NOCLAIMS"]),
        "ERR",
        "CHECK <token> NOCLAIMS",
    );
}

#[test]
fn keys_subcommands() {
    let server = Server::with_vector_keys();
    assert_err(
        &server.cmd(&["JWTDENY.KEYS", "FROBNICATE"]),
        "ERR",
        "unknown subcommand",
    );
    assert_err(
        &server.cmd(&["JWTDENY.KEYS", "LIST", "extra"]),
        "ERR",
        "LIST with an extra argument",
    );
    assert_err(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD", "extra"]),
        "ERR",
        "RELOAD with an extra argument",
    );
    // Subcommands are case-insensitive, like Redis's own.
    assert_eq!(
        server.cmd(&["JWTDENY.KEYS", "list"]).array().len(),
        7,
        "keys list"
    );
    assert_int(&server.cmd(&["jwtdeny.keys", "reload"]), 7, "keys reload");
}

#[test]
fn non_utf8_tokens_are_malformed() {
    let server = Server::with_vector_keys();
    let cases: Vec<Vec<u8>> = vec![
        b"\xff\xfe\xfd".to_vec(),
        b"abc.\xff.def".to_vec(),
        {
            // A valid token with one byte replaced by a non-UTF-8 byte.
            let mut t = vector("valid-HS256").token.into_bytes();
            t[5] = 0xc3;
            t
        },
        // Header that decodes to non-UTF-8 bytes.
        format!(
            "{}.{}.{}",
            b64(b"\xff\xfe{}"),
            b64(payload("x").as_bytes()),
            b64(b"sig")
        )
        .into_bytes(),
        b"a\0b.c\0d.e\0f".to_vec(),
    ];
    for t in &cases {
        assert_refused(
            &server,
            t,
            "MALFORMED",
            &format!("{:?}", String::from_utf8_lossy(t)),
        );
    }
}

/// A validly signed HS256 token (found through the single HS256 key, no kid) of exactly
/// `len` bytes.
fn token_of_len(len: usize) -> String {
    for sub_len in 1..len {
        let sub = "s".repeat(sub_len);
        let t = sign_raw("HS256", r#"{"alg":"HS256"}"#, &payload(&sub));
        if t.len() == len {
            return t;
        }
        if t.len() > len {
            break;
        }
    }
    // Not every length is reachable with one padding knob: add a second one.
    for extra in 0..4 {
        for sub_len in 1..len {
            let sub = "s".repeat(sub_len);
            let p = format!(
                r#"{{"sub":"{sub}","iat":{SOME_IAT},"exp":{FAR_EXP},"p":"{}"}}"#,
                "p".repeat(extra)
            );
            let t = sign_raw("HS256", r#"{"alg":"HS256"}"#, &p);
            if t.len() == len {
                return t;
            }
            if t.len() > len {
                break;
            }
        }
    }
    panic!("cannot build a token of {len} bytes");
}

#[test]
fn max_token_bytes_boundary_at_the_default() {
    let server = Server::with_vector_keys();
    assert_eq!(server.config_get("jwtdeny.max-token-bytes"), "8192");
    let at = token_of_len(8192);
    let over = token_of_len(8193);
    assert_int(&server.check(&at), 1, "8192-byte token");
    assert_refused(&server, &over, "MALFORMED", "8193-byte token");
}

#[test]
fn max_token_bytes_boundary_when_configured() {
    let server = Server::with_vector_keys();
    assert_eq!(
        server.config_set("jwtdeny.max-token-bytes", "128"),
        Reply::Status("OK".into())
    );
    assert_eq!(server.config_get("jwtdeny.max-token-bytes"), "128");
    let at = token_of_len(128);
    let over = token_of_len(129);
    assert_int(&server.check(&at), 1, "128-byte token");
    assert_err(&server.check(&over), "MALFORMED", "129-byte token");
    // Far over the limit, and not even a token: still refused by size, without decoding.
    assert_err(
        &server.check(vec![b'.'; 100_000]),
        "MALFORMED",
        "100000 dots",
    );
}

/// A token that is not authentic learns nothing about its claims: signature problems are
/// reported before claim problems, algorithm problems before key lookup.
#[test]
fn checks_happen_in_the_documented_order() {
    let server = Server::with_vector_keys();
    let bad_sig = [7u8; 32];
    let cases = [
        // Bad signature beats every claim problem.
        (
            raw_token(
                HS256_HEADER,
                r#"{"sub":"bob","iat":1000000000,"exp":1000003600}"#,
                &bad_sig,
            ),
            "BADSIG",
            "expired + bad signature",
        ),
        (
            raw_token(
                HS256_HEADER,
                r#"{"iat":1767225600,"exp":4102444800}"#,
                &bad_sig,
            ),
            "BADSIG",
            "missing sub + bad signature",
        ),
        (
            raw_token(
                HS256_HEADER,
                &format!(r#"{{"sub":"b","iat":1,"nbf":{FAR_EXP},"exp":{FAR_EXP}}}"#),
                &bad_sig,
            ),
            "BADSIG",
            "not yet + bad signature",
        ),
        // alg is judged before the key is looked up.
        (
            raw_token(r#"{"alg":"none","kid":"no-such-kid"}"#, &payload("a"), b""),
            "BADALG",
            "alg none + unknown kid",
        ),
        (
            raw_token(
                r#"{"alg":"HS999","kid":"no-such-kid"}"#,
                &payload("a"),
                &bad_sig,
            ),
            "BADALG",
            "unknown alg + unknown kid",
        ),
        // Key lookup before the signature.
        (
            raw_token(
                r#"{"alg":"HS256","kid":"no-such-kid"}"#,
                &payload("a"),
                &bad_sig,
            ),
            "NOKEY",
            "unknown kid + bad signature",
        ),
        // Structure before everything.
        (
            raw_token(r#"{"alg":"none"}"#, "not json", b""),
            "MALFORMED",
            "payload not JSON + alg none",
        ),
    ];
    for (token, code, what) in &cases {
        assert_refused(&server, token, code, what);
    }
    assert_eq!(server.keys(), Vec::<String>::new());
}

#[test]
fn malformed_structures() {
    let server = Server::with_vector_keys();
    let valid = vector("valid-HS256").token;
    let parts: Vec<&str> = valid.split('.').collect();
    let cases = [
        (
            format!(
                "{}.{}.{}.{}.{}",
                parts[0], parts[1], parts[2], "aaaa", "bbbb"
            ),
            "five segments (JWE)",
        ),
        (format!("{}..{}", parts[0], parts[2]), "empty payload"),
        (format!(".{}.{}", parts[1], parts[2]), "empty header"),
        (
            format!("{}.{}.{}", parts[0], "e30!", parts[2]),
            "bad base64url in payload",
        ),
        (
            format!("{}.{}.{}", parts[0], parts[1], "@@@@"),
            "bad base64url in signature",
        ),
        (
            sign_raw("HS256", HS256_HEADER, "[1,2]"),
            "signed payload is a JSON array",
        ),
        (
            sign_raw("HS256", HS256_HEADER, "not json"),
            "signed payload is not JSON",
        ),
        (
            sign_raw("HS256", HS256_HEADER, "\"sub\""),
            "signed payload is a JSON string",
        ),
        (
            sign_raw("HS256", "null", &payload("a")),
            "header is JSON null",
        ),
        (
            sign_raw(
                "HS256",
                r#"{"alg":"HS256","kid":"shared-hs256","crit":["exp"]}"#,
                &payload("a"),
            ),
            "crit header",
        ),
        ("...".to_string(), "only dots"),
        (" ".to_string(), "a space"),
    ];
    for (token, what) in &cases {
        assert_err(&server.check(token), "MALFORMED", what);
    }
}

#[test]
fn algorithm_and_key_selection() {
    let server = Server::with_vector_keys();
    let c = claims("sel", SOME_IAT, FAR_EXP);
    // No kid: the single key fitting the alg.
    for alg in [
        "HS256", "HS384", "HS512", "RS256", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        assert_int(
            &server.check(mint(alg, None, &c)),
            1,
            &format!("{alg} without kid"),
        );
    }
    // A kid naming a key that does not fit the alg.
    let mismatches = [
        ("HS256", "shared-hs384"),
        ("HS512", "shared-hs256"),
        ("RS256", "shared-hs256"),
        ("ES256", "shared-es384"),
        ("EdDSA", "shared-es256"),
        ("PS256", "shared-ed25519"),
    ];
    for (alg, kid) in mismatches {
        assert_err(
            &server.check(mint(alg, Some(kid), &c)),
            "BADALG",
            &format!("{alg} naming {kid}"),
        );
    }
    // Missing or unknown alg.
    assert_err(
        &server.check(sign_raw(
            "HS256",
            r#"{"kid":"shared-hs256"}"#,
            &payload("a"),
        )),
        "BADALG",
        "no alg",
    );
    assert_err(
        &server.check(sign_raw(
            "HS256",
            r#"{"alg":"hs256","kid":"shared-hs256"}"#,
            &payload("a"),
        )),
        "BADALG",
        "lower-case alg",
    );
    // kid is only a lookup.
    for kid in [
        "../../etc/passwd",
        "/dev/null",
        "http://127.0.0.1:1/jwks.json",
        "",
    ] {
        assert_err(
            &server.check(mint("HS256", Some(kid), &c)),
            "NOKEY",
            &format!("kid {kid:?}"),
        );
    }
}

/// `jwk`, `jku`, `x5u`, `x5c` headers are never trusted: a token signed with a key of the
/// attacker's choosing, announced in the header, does not verify.
#[test]
fn embedded_and_remote_key_headers_are_not_trusted() {
    let server = Server::with_vector_keys();
    let secret = b"attacker-chosen-secret-of-32-bytes!!";
    let attacker = EncodingKey::from_secret(secret).expect("key");
    let headers = [
        format!(
            r#"{{"alg":"HS256","jwk":{{"kty":"oct","k":"{}"}}}}"#,
            b64(secret)
        ),
        format!(
            r#"{{"alg":"HS256","kid":"shared-hs256","jwk":{{"kty":"oct","k":"{}"}}}}"#,
            b64(secret)
        ),
        r#"{"alg":"HS256","kid":"shared-hs256","jku":"http://127.0.0.1:1/jwks.json"}"#.to_string(),
        r#"{"alg":"HS256","x5u":"http://127.0.0.1:1/cert.pem"}"#.to_string(),
    ];
    for h in &headers {
        let input = format!(
            "{}.{}",
            b64(h.as_bytes()),
            b64(payload("mallory").as_bytes())
        );
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &attacker, jsonwebtoken::Algorithm::HS256)
                .expect("sign");
        let token = format!("{input}.{sig}");
        assert_err(&server.check(&token), "BADSIG", h);
    }
}

#[test]
fn unusable_claims_are_badclaims() {
    let server = Server::with_vector_keys();
    let payloads = [
        r#"{"sub":"","iat":1767225600,"exp":4102444800}"#,
        r#"{"sub":null,"iat":1767225600,"exp":4102444800}"#,
        r#"{"sub":["a"],"iat":1767225600,"exp":4102444800}"#,
        r#"{"sub":"a","iat":[1],"exp":4102444800}"#,
        r#"{"sub":"a","iat":null,"exp":4102444800}"#,
        r#"{"sub":"a","iat":1767225600,"exp":"4102444800"}"#,
        r#"{"sub":"a","iat":1767225600,"exp":true}"#,
        r#"{"sub":"a","iat":1767225600}"#,
    ];
    for p in payloads {
        let token = sign_raw("HS256", HS256_HEADER, p);
        assert_refused(&server, &token, "BADCLAIMS", p);
    }
    assert_eq!(server.keys(), Vec::<String>::new());
}

/// After all kinds of bad input the server still answers and stored keys are intact.
#[test]
fn server_survives_hostile_input() {
    let server = Server::with_vector_keys();
    let kept = vector("valid-ES256");
    let kept_key = deny_key(kept.sub.as_deref().unwrap(), kept.iat.unwrap());
    assert_int(&server.revoke(&kept.token), 1, "REVOKE before");

    // Every vector, then deterministic mutations of valid tokens, then random bytes.
    for v in vectors() {
        let _ = server.check(&v.token);
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"ABCxyz019-_.=+/{}\"\\ \xff\x00";
    let mut sent = 0;
    for v in vectors().into_iter().filter(|v| v.expect == "active") {
        let bytes = v.token.as_bytes().to_vec();
        for _ in 0..60 {
            let mut t = bytes.clone();
            let pos = (next() as usize) % t.len();
            match next() % 3 {
                0 => t[pos] = alphabet[(next() as usize) % alphabet.len()],
                1 => t.truncate(pos),
                _ => t.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
            }
            for cmd in ["JWTDENY.CHECK", "JWTDENY.REVOKE"] {
                let r = server.cmd(&[cmd.as_bytes(), &t]);
                assert!(
                    matches!(r, Reply::Int(0) | Reply::Int(1) | Reply::Error(_)),
                    "{cmd} {:?}: {r}",
                    String::from_utf8_lossy(&t)
                );
                sent += 1;
            }
        }
    }
    for _ in 0..300 {
        let len = (next() % 300) as usize;
        let t: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let r = server.check(&t);
        assert!(r.is_error(), "random bytes {t:?}: {r}");
        sent += 1;
    }
    assert!(sent > 1000);

    assert_eq!(server.cmd(&["PING"]), Reply::Status("PONG".into()));
    assert_int(
        &server.check(&kept.token),
        0,
        "CHECK of the revoked token after the barrage",
    );
    assert_eq!(server.pexpiretime(&kept_key), FAR_EXP * 1000);
    let still_valid = vector("valid-EdDSA");
    assert_int(
        &server.check(&still_valid.token),
        1,
        "an unrevoked token after the barrage",
    );
}

fn command_flags(server: &Server, name: &str) -> Vec<String> {
    command_info(server, name).flags
}

#[test]
fn commands_carry_their_flags() {
    let server = Server::with_vector_keys();
    let check = command_flags(&server, "jwtdeny.check");
    assert!(
        check.contains(&"readonly".to_string()),
        "jwtdeny.check flags {check:?}"
    );
    assert!(
        !check.contains(&"write".to_string()),
        "jwtdeny.check flags {check:?}"
    );
    let revoke = command_flags(&server, "jwtdeny.revoke");
    assert!(
        revoke.contains(&"write".to_string()),
        "jwtdeny.revoke flags {revoke:?}"
    );
    assert!(
        revoke.contains(&"denyoom".to_string()),
        "jwtdeny.revoke flags {revoke:?}"
    );
    let keys = command_flags(&server, "jwtdeny.keys");
    assert!(
        !keys.contains(&"write".to_string()),
        "jwtdeny.keys flags {keys:?}"
    );
}

#[test]
fn revoke_emits_a_keyspace_notification() {
    let server = Server::with_vector_keys();
    assert_eq!(
        server.config_set("notify-keyspace-events", "KA"),
        Reply::Status("OK".into())
    );
    let mut sub = server.conn();
    let r = sub.cmd(&["PSUBSCRIBE", "__keyspace@0__:jwtdeny:*"]);
    assert_eq!(r.array()[0].text(), "psubscribe", "{r}");
    let v = vector("valid-HS384");
    let key = deny_key(v.sub.as_deref().unwrap(), v.iat.unwrap());
    assert_int(&server.revoke(&v.token), 1, "REVOKE");
    sub.set_read_timeout(Duration::from_secs(5));
    let msg = sub.read().expect("a keyspace notification within 5 s");
    let fields = msg.array();
    assert_eq!(fields[0].text(), "pmessage", "{msg}");
    assert_eq!(fields[2].text(), format!("__keyspace@0__:{key}"), "{msg}");
}
