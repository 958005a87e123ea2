//! The denylist key scheme `<prefix>{<enc(sub)>}:<iat>` and its absolute expiry.

use crate::common;
use crate::support;

use common::*;
use serde_json::json;
use support::{bulk, inspect};

/// Revokes a fresh HS256 token with these claims and returns the keys now stored.
fn revoke_and_list(server: &Server, payload: &str) -> Vec<String> {
    let token = sign_raw("HS256", r#"{"alg":"HS256","kid":"shared-hs256"}"#, payload);
    assert_int(&server.revoke(&token), 1, &format!("REVOKE {payload}"));
    assert_int(&server.check(&token), 0, &format!("CHECK {payload}"));
    server.keys()
}

#[test]
fn braces_and_percent_in_sub_are_percent_encoded() {
    let server = Server::with_vector_keys();
    let token = mint_default("HS256", &claims("a{b}c%d", SOME_IAT, FAR_EXP));
    assert_int(&server.revoke(&token), 1, "REVOKE");
    assert_int(&server.check(&token), 0, "CHECK");
    let key = format!("jwtdeny:{{a%7Bb%7Dc%25d}}:{SOME_IAT}");
    assert_eq!(server.keys(), vec![key.clone()]);
    assert_eq!(server.pexpiretime(&key), FAR_EXP * 1000);
}

/// Encoding is injective: `{` and the literal text `%7B` are different subjects.
#[test]
fn encoded_subjects_do_not_collide() {
    let server = Server::with_vector_keys();
    let brace = mint_default("HS256", &claims("{", SOME_IAT, FAR_EXP));
    let literal = mint_default("HS256", &claims("%7B", SOME_IAT, FAR_EXP));
    let closing = mint_default("HS256", &claims("}", SOME_IAT, FAR_EXP));
    assert_int(&server.revoke(&brace), 1, "REVOKE sub '{'");
    assert_int(
        &server.check(&literal),
        1,
        "CHECK sub '%7B' after revoking '{'",
    );
    assert_int(
        &server.check(&closing),
        1,
        "CHECK sub '}' after revoking '{'",
    );
    assert_int(&server.revoke(&literal), 1, "REVOKE sub '%7B'");
    assert_eq!(
        server.keys(),
        vec![
            format!("jwtdeny:{{%257B}}:{SOME_IAT}"),
            format!("jwtdeny:{{%7B}}:{SOME_IAT}"),
        ]
    );
}

/// Other characters (colons, spaces, slashes, non-ASCII) are kept as they are; JSON escapes
/// are decoded before encoding.
#[test]
fn ordinary_subjects_are_stored_verbatim() {
    let server = Server::with_vector_keys();
    let keys = revoke_and_list(
        &server,
        r#"{"sub":"user:42 /j\u00fcrgen","iat":1767225600,"exp":4102444800}"#,
    );
    assert_eq!(
        keys,
        vec!["jwtdeny:{user:42 /jürgen}:1767225600".to_string()]
    );
    let keys = revoke_and_list(
        &server,
        r#"{"sub":"\u007bx\u007d","iat":1767225600,"exp":4102444800}"#,
    );
    assert!(
        keys.contains(&"jwtdeny:{%7Bx%7D}:1767225600".to_string()),
        "escaped braces not encoded: {keys:?}"
    );
}

/// NumericDates with fractions are floored, for the key (`iat`) and for the expiry (`exp`).
#[test]
fn fractional_iat_and_exp_are_floored() {
    let server = Server::with_vector_keys();
    let keys = revoke_and_list(
        &server,
        r#"{"sub":"frac","iat":1767225800.9,"exp":4102444800.7}"#,
    );
    let key = "jwtdeny:{frac}:1767225800".to_string();
    assert_eq!(keys, vec![key.clone()]);
    assert_eq!(server.pexpiretime(&key), FAR_EXP * 1000);

    // The same second written as an integer is the same key.
    let token = mint_default("HS256", &claims("frac", 1_767_225_800, FAR_EXP));
    assert_int(
        &server.check(&token),
        0,
        "integer iat of a revoked fractional iat",
    );
}

/// The flooring is the documented rule for `exp` (README: Errors): `exp` `X.9` is EXPIRED from
/// `X.000`, early rather than late, and no entry is stored for it.
#[test]
fn a_fractional_exp_expires_at_its_whole_second() {
    let server = Server::with_vector_keys();
    let exp = now();
    let payload = format!(r#"{{"sub":"frac-exp","iat":{SOME_IAT},"exp":{exp}.9}}"#);
    let token = sign_raw("HS256", r#"{"alg":"HS256","kid":"shared-hs256"}"#, &payload);
    assert_err(
        &server.check(&token),
        "EXPIRED",
        "CHECK of exp X.9 within second X",
    );
    assert_err(
        &server.revoke(&token),
        "EXPIRED",
        "REVOKE of exp X.9 within second X",
    );
    assert_eq!(server.keys(), Vec::<String>::new());
}

/// Tokens that differ only in other claims (jti, extra data) share the key of (sub, iat).
#[test]
fn key_depends_on_sub_and_iat_only() {
    let server = Server::with_vector_keys();
    let a = mint_default(
        "HS256",
        &json!({"sub": "dave", "iat": SOME_IAT, "exp": FAR_EXP, "jti": "one"}),
    );
    let b = mint_default(
        "RS256",
        &json!({"sub": "dave", "iat": SOME_IAT, "exp": FAR_EXP, "jti": "two", "x": 1}),
    );
    let other_iat = mint_default("HS256", &claims("dave", SOME_IAT + 1, FAR_EXP));
    assert_int(&server.revoke(&a), 1, "REVOKE a");
    assert_int(&server.revoke(&b), 0, "REVOKE b (same sub and iat)");
    assert_int(&server.check(&b), 0, "CHECK b");
    assert_int(&server.check(&other_iat), 1, "CHECK with another iat");
    assert_eq!(server.keys(), vec![deny_key("dave", SOME_IAT)]);
}

/// An existing key means revoked; REVOKE does not overwrite it (nor its expiry).
#[test]
fn an_existing_key_counts_as_revoked_and_is_not_overwritten() {
    let server = Server::with_vector_keys();
    let key = deny_key("erin", SOME_IAT);
    assert_eq!(
        server.cmd(&["SET", key.as_str(), "1"]),
        Reply::Status("OK".into())
    );
    let token = mint_default("ES256", &claims("erin", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&token), 0, "CHECK with the key present");
    assert_int(&server.revoke(&token), 0, "REVOKE with the key present");
    assert_eq!(
        server.pexpiretime(&key),
        -1,
        "REVOKE changed the existing key's expiry"
    );

    assert_int(&server.cmd(&["DEL", key.as_str()]), 1, "DEL");
    assert_int(&server.check(&token), 1, "CHECK after DEL");
}

/// CHECK and the key's expiry agree: from REVOKE until well after `exp` a revoked token
/// answers 0 and then EXPIRED, never 1, and the key is gone afterwards.
#[test]
fn revoked_token_never_checks_active_while_it_expires() {
    let server = Server::with_vector_keys();
    let exp = now() + 2;
    let token = mint_default("HS256", &claims("expiring", SOME_IAT, exp));
    let key = deny_key("expiring", SOME_IAT);
    assert_int(&server.revoke(&token), 1, "REVOKE");
    assert_eq!(server.pexpiretime(&key), exp * 1000);

    let (mut zeros, mut expired) = (0, 0);
    let mut conn = server.conn();
    while now() <= exp + 1 {
        let r = conn.cmd(&[b"JWTDENY.CHECK".as_slice(), token.as_bytes()]);
        match (&r, r.err_code()) {
            (Reply::Int(0), _) => zeros += 1,
            (_, Some("EXPIRED")) => expired += 1,
            _ => panic!("revoked token at {} ms: {r}", exp * 1000),
        }
    }
    assert!(
        zeros > 0 && expired > 0,
        "0 seen {zeros} times, EXPIRED {expired} times"
    );
    assert_eq!(server.pexpiretime(&key), -2, "key still there after exp");
    assert_eq!(server.keys(), Vec::<String>::new());
}

/// A subject as the key scheme writes it: only `%`, `{` and `}` are encoded.
fn encoded(sub: &str) -> String {
    sub.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

/// Any `sub` a JSON string can hold is revocable, byte for byte: NUL, CR/LF (RESP framing),
/// printf specifiers, control and unusual characters, very long text. Key names reach Redis by
/// pointer and length; a C string would have cut them at the NUL, or panicked.
#[test]
fn any_subject_is_revocable_byte_for_byte() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.max-token-bytes 1048576")
        .aof()
        .start();
    let subs = [
        "a\0b".to_string(),
        "\0".to_string(),
        "a\r\nb".to_string(),
        "\r\n*1\r\n$4\r\nPING\r\n".to_string(),
        "%n%n%n%s%s%x".to_string(),
        "\u{0}%n{\u{0}}\u{7f}".to_string(),
        "\u{fffd}\u{ffff}\u{10ffff}\u{feff}".to_string(),
        "\u{1}\u{1b}[31m\u{85}\u{2028}".to_string(),
        "long-".repeat(40_000),
    ];
    for (n, sub) in subs.iter().enumerate() {
        let shown: String = sub.escape_debug().take(40).collect();
        let what = |step: &str| format!("{step}, sub {shown:?}");
        let iat = SOME_IAT + 10 * n as i64;
        let entry = format!("jwtdeny:{{{}}}:{iat}", encoded(sub));
        let subject = format!("jwtdeny:{{{}}}", encoded(sub));
        let t = mint_default("HS256", &claims(sub, iat, FAR_EXP));

        assert_int(&server.check(&t), 1, &what("CHECK"));
        assert_int(&server.revoke(&t), 1, &what("REVOKE"));
        assert_int(&server.check(&t), 0, &what("CHECK after REVOKE"));
        assert_int(&server.revoke(&t), 0, &what("REVOKE again"));
        assert_int(
            &server.cmd(&["EXISTS", &entry]),
            1,
            &what("EXISTS of the exact key"),
        );
        let keys = server.cmd(&["KEYS", "*"]);
        assert!(
            keys.array().contains(&bulk(&entry)),
            "{}: KEYS lacks the exact key",
            what("KEYS")
        );
        assert_eq!(
            server.pexpiretime(&entry),
            FAR_EXP * 1000,
            "{}",
            what("expiry")
        );
        let i = inspect(&server, &t);
        assert_eq!(i["status"], bulk("revoked"), "{}", what("INSPECT"));
        assert_eq!(i["sub"], bulk(sub), "{}", what("INSPECT sub"));
        assert_eq!(i["key"], bulk(&entry), "{}", what("INSPECT key"));
        assert_eq!(i["expires_at_ms"], Reply::Int(FAR_EXP * 1000));
        let with = server.cmd(&["JWTDENY.CHECK", &t, "WITHCLAIMS"]);
        assert_eq!(
            with,
            Reply::Array(Some(vec![Reply::Int(0), Reply::Bulk(None)]))
        );

        // The keyed forms, with the derived keys.
        assert_int(
            &server.cmd(&["JWTDENY.KCHECK", &entry, &subject, &t]),
            0,
            &what("KCHECK"),
        );
        let t2 = mint_default("HS256", &claims(sub, iat + 1, FAR_EXP));
        let entry2 = format!("jwtdeny:{{{}}}:{}", encoded(sub), iat + 1);
        assert_int(
            &server.cmd(&["JWTDENY.KCHECK", &entry2, &subject, &t2]),
            1,
            &what("KCHECK of another iat"),
        );
        assert_int(
            &server.cmd(&["JWTDENY.KREVOKE", &entry2, &subject, &t2]),
            1,
            &what("KREVOKE"),
        );
        assert_int(&server.check(&t2), 0, &what("CHECK after KREVOKE"));
        assert_int(&server.cmd(&["EXISTS", &entry2]), 1, &what("EXISTS"));

        // Subject cutoffs: REVOKEALL takes the subject as an argument.
        let t3 = mint_default("HS256", &claims(sub, iat + 2, FAR_EXP));
        assert_int(&server.check(&t3), 1, &what("CHECK before REVOKEALL"));
        let at = (iat + 2).to_string();
        assert_int(
            &server.cmd(&["JWTDENY.REVOKEALL", sub, "AT", &at]),
            iat + 2,
            &what("REVOKEALL"),
        );
        assert_int(&server.check(&t3), 0, &what("CHECK after REVOKEALL"));
        assert_eq!(server.cmd(&["GET", &subject]).text(), at, "{}", what("GET"));
        let i = inspect(&server, &t3);
        assert_eq!(i["revoked_by"], bulk("subject"), "{}", what("INSPECT"));
        let later = (iat + 3).to_string();
        assert_int(
            &server.cmd(&["JWTDENY.KREVOKEALL", &subject, sub, "AT", &later]),
            iat + 3,
            &what("KREVOKEALL"),
        );
        assert_eq!(server.cmd(&["GET", &subject]).text(), later);
    }
    // The AOF has the exact key names too.
    let aof = server.aof_commands();
    let entry = format!("jwtdeny:{{a\0b}}:{SOME_IAT}");
    assert!(
        aof.iter()
            .any(|c| c[0].eq_ignore_ascii_case("SET") && c[1] == entry),
        "no SET of {entry:?} in the AOF"
    );
    assert!(
        server.log().lines().all(|l| !l.contains("internal error")),
        "{}",
        server.log()
    );
}

/// A payload that is not valid JSON text (a lone surrogate escape) is a MALFORMED token, and a
/// REVOKEALL subject that is not UTF-8 (no token can carry it) a usage error: never an internal
/// error.
#[test]
fn unusable_subjects_get_their_own_errors() {
    let server = Server::with_vector_keys();
    let lone = sign_raw(
        "HS256",
        r#"{"alg":"HS256","kid":"shared-hs256"}"#,
        r#"{"sub":"a\ud800b","iat":1767225600,"exp":4102444800}"#,
    );
    assert_err(&server.check(&lone), "MALFORMED", "lone surrogate in sub");
    let r = server.cmd(&[b"JWTDENY.REVOKEALL".as_slice(), b"a\xffb"]);
    assert_eq!(
        r.error(),
        Some("ERR sub must be a non-empty UTF-8 string"),
        "REVOKEALL of a non-UTF-8 subject"
    );
}
