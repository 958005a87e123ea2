//! Forgery suite (issue 5, §1): tokens an attacker can make without our keys, each refused with
//! the documented code and never answered `1`; and re-encodings of a revoked token, which must
//! still be found revoked (the denylist key comes from verified claims, not from token bytes).
//!
//! Every case is its own assertion naming the attack. CHECK and REVOKE are both sent: a forged
//! token must neither pass nor write anything.

use crate::common;

use std::io::ErrorKind;
use std::net::TcpListener;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use common::*;
use serde_json::{json, Value};

/// The order n of P-256, big-endian.
const P256_N: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
/// The order n of P-384, big-endian.
const P384_N: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// a - b for big-endian numbers of one length (a >= b).
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    assert_eq!(a.len(), b.len());
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0, "a < b");
    out
}

/// a + small for a big-endian number (no overflow past its length).
fn add_be(a: &[u8], small: u8) -> Vec<u8> {
    let mut out = a.to_vec();
    let mut carry = small as u16;
    for byte in out.iter_mut().rev() {
        let v = *byte as u16 + carry;
        *byte = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out
}

/// `header.payload.` + base64url(sig), reusing a token's signed part.
fn with_sig(token: &str, sig: &[u8]) -> String {
    let (signed, _) = token.rsplit_once('.').expect("three segments");
    format!("{signed}.{}", b64(sig))
}

fn sig_of(token: &str) -> Vec<u8> {
    b64_decode(token.rsplit_once('.').expect("three segments").1)
}

fn hmac(alg: &str, secret: &[u8], input: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret).expect("hmac key");
    jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg.parse().expect("alg")).expect("sign")
}

/// A token with exactly this header and payload JSON, HMAC-signed with `secret`.
fn hmac_token(alg: &str, secret: &[u8], header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let sig = hmac(alg, secret, &input);
    format!("{input}.{sig}")
}

fn hs256_secret() -> Vec<u8> {
    private_key("shared-hs256.key")
}

fn live_claims(sub: &str) -> Value {
    claims(sub, now() - 60, FAR_EXP)
}

/// A live HS* token keyed with `secret` (an RSA public key's bytes, in the key-confusion
/// attack), naming the RSA key's kid or no kid.
fn confused_token(alg: &str, secret: &[u8], kid_rsa: bool) -> String {
    let header = if kid_rsa {
        json!({"alg": alg, "kid": "shared-rsa"})
    } else {
        json!({"alg": alg})
    };
    hmac_token(alg, secret, &header, &live_claims("forge-confusion"))
}

/// One command on a fresh connection; a reply that cannot be read (the server died, or sent
/// bytes that are not a valid reply) fails the test naming the attack.
#[track_caller]
fn send(server: &Server, args: &[&[u8]], attack: &str) -> Reply {
    let mut conn = server.conn();
    match conn.try_cmd(args) {
        Ok(reply) => reply,
        Err(e) => {
            let alive = Conn::connect(server.port)
                .and_then(|mut c| c.try_cmd(&["PING"]))
                .map(|r| r.to_string())
                .unwrap_or_else(|e| format!("no answer ({e}): the server died"));
            panic!("{attack}: no valid reply ({e}); PING afterwards: {alive}")
        }
    }
}

/// CHECK and REVOKE both answer an error with `code`; never `1`.
#[track_caller]
fn refused(server: &Server, token: &str, code: &str, attack: &str) {
    let check = send(server, &[b"JWTDENY.CHECK", token.as_bytes()], attack);
    assert_ne!(check, Reply::Int(1), "{attack}: a forged token checked 1");
    assert_err(&check, code, &format!("{attack} (CHECK)"));
    let revoke = send(server, &[b"JWTDENY.REVOKE", token.as_bytes()], attack);
    assert_ne!(
        revoke,
        Reply::Int(1),
        "{attack}: a forged token was revoked"
    );
    assert_err(&revoke, code, &format!("{attack} (REVOKE)"));
    let text = check.error().unwrap_or_default();
    assert!(
        text.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{attack}: the error reply is not printable ASCII: {text:?}"
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn alg_none_in_every_case_spelling_is_badalg() {
    let server = Server::with_vector_keys();
    let secret = hs256_secret();
    let payload = live_claims("forge-none");
    let mut spellings = Vec::new();
    for mask in 0..16u8 {
        let s: String = "none"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << i) != 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        spellings.push(s);
    }
    assert_eq!(spellings.len(), 16);
    for alg in &spellings {
        for kid in [None, Some("shared-hs256")] {
            let mut header = json!({"typ": "JWT", "alg": alg});
            if let Some(k) = kid {
                header["kid"] = json!(k);
            }
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(payload.to_string().as_bytes())
            );
            // No signature at all (the RFC's form of an unsecured JWS).
            refused(
                &server,
                &format!("{input}."),
                "BADALG",
                &format!("alg {alg:?}, kid {kid:?}, empty signature"),
            );
            // A signature that would be valid for HS256 with our own key.
            let sig = hmac("HS256", &secret, &input);
            refused(
                &server,
                &format!("{input}.{sig}"),
                "BADALG",
                &format!("alg {alg:?}, kid {kid:?}, with a valid HS256 signature"),
            );
            // Some garbage signature.
            refused(
                &server,
                &format!("{input}.{}", b64(b"garbage")),
                "BADALG",
                &format!("alg {alg:?}, kid {kid:?}, with a garbage signature"),
            );
        }
    }
    assert_eq!(server.dbsize(), 0, "alg none wrote something");
}

#[test]
fn hmac_signed_with_the_rsa_public_key_is_refused() {
    let pem = std::fs::read(vectors_dir().join("private/shared-rsa.pub.pem")).expect("pub pem");
    let pem_text = String::from_utf8(pem.clone()).expect("pem text");
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).expect("pem body");
    let jwk_rsa = jwk("shared-rsa");
    let n_text = jwk_rsa["n"].as_str().expect("n").to_string();
    let n = b64_decode(&n_text);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("the public key PEM", pem.clone()),
        (
            "the PEM without its final newline",
            pem_text.trim_end().as_bytes().to_vec(),
        ),
        ("the public key DER (SPKI)", der),
        ("the modulus n bytes", n),
        ("the modulus n as base64url text", n_text.into_bytes()),
        ("the JWK JSON", jwk_rsa.to_string().into_bytes()),
    ];

    // With the vectors' JWKS: kid shared-rsa names an RSA key, which never serves HS*.
    let server = Server::with_vector_keys();
    for (what, secret) in &secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            refused(
                &server,
                &confused_token(alg, secret, true),
                "BADALG",
                &format!("{alg} keyed with {what}, kid shared-rsa"),
            );
            // Without a kid the only HS key is our real HMAC key: the signature fails.
            refused(
                &server,
                &confused_token(alg, secret, false),
                "BADSIG",
                &format!("{alg} keyed with {what}, no kid"),
            );
        }
    }
    assert_eq!(server.dbsize(), 0);
    drop(server);

    // With only the RSA key loaded, no kid: no key serves HS*, so NOKEY (never the RSA key).
    let server = ServerBuilder::new()
        .jwks("rsa-only.json", &[jwk("shared-rsa")])
        .start();
    let good = mint("RS256", Some("shared-rsa"), &live_claims("forge-confusion"));
    assert_int(
        &server.check(&good),
        1,
        "sanity: a real RS256 token on the RSA-only server",
    );
    for (what, secret) in &secrets {
        for alg in ["HS256", "HS384", "HS512"] {
            refused(
                &server,
                &confused_token(alg, secret, false),
                "NOKEY",
                &format!("RSA-only keys: {alg} keyed with {what}, no kid"),
            );
            refused(
                &server,
                &confused_token(alg, secret, true),
                "BADALG",
                &format!("RSA-only keys: {alg} keyed with {what}, kid shared-rsa"),
            );
        }
    }
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn kid_injection_is_nokey() {
    let server = Server::with_vector_keys();
    let secret = hs256_secret();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://127.0.0.1:{}/key",
        listener.local_addr().unwrap().port()
    );
    let long = "k".repeat(6000);
    let kids: Vec<(&str, String)> = vec![
        ("path traversal", "../../etc/passwd".into()),
        ("absolute path", "/etc/passwd".into()),
        (
            "path to the keys file",
            jwks_path().to_string_lossy().into_owned(),
        ),
        ("file URL", "file:///etc/passwd".into()),
        ("http URL", url),
        ("SQL injection", "' OR 1=1 --".into()),
        ("SQL injection 2", "shared-hs256' OR '1'='1".into()),
        ("NUL after a real kid", "shared-hs256\u{0}".into()),
        ("NUL before a real kid", "\u{0}shared-hs256".into()),
        ("percent-encoded NUL", "shared-hs256%00".into()),
        ("trailing space", "shared-hs256 ".into()),
        ("other case", "SHARED-HS256".into()),
        ("CRLF and a command", "x\r\nSET pwned 1\r\n".into()),
        ("glob", "shared-*".into()),
        // Non-ASCII: redis-module writes error replies one byte per char, so these were mangled,
        // and a char whose low byte is 0 (U+0100, U+4E00, U+AC00) aborted the server.
        ("U+0100 (low byte 0)", "\u{100}".into()),
        ("CJK '一' U+4E00 (low byte 0)", "一".into()),
        ("Hangul '가' U+AC00 (low byte 0)", "가".into()),
        ("U+010A/U+010D (low bytes LF/CR)", "a\u{10a}\u{10d}b".into()),
        ("Latin-1 'é'", "clé".into()),
        ("emoji", "🔑".into()),
        ("U+FFFD", "\u{fffd}".into()),
        ("empty", String::new()),
        ("very long (6000 bytes)", long),
    ];
    for (what, kid) in &kids {
        let t = hmac_token(
            "HS256",
            &secret,
            &json!({"alg": "HS256", "kid": kid}),
            &live_claims("forge-kid"),
        );
        refused(&server, &t, "NOKEY", &format!("kid {what}"));
        // The reply quotes the kid bounded and escaped: no flood.
        let reply = server.check(&t);
        let text = reply.error().expect("error");
        assert!(text.len() < 800, "kid {what}: a {}-byte reply", text.len());
    }
    // The same characters as alg: BADALG, quoted safely.
    for alg in ["\u{100}", "一", "가", "HS256\u{0}", "ＨＳ２５６"] {
        let t = hmac_token(
            "HS256",
            &secret,
            &json!({"alg": alg, "kid": "shared-hs256"}),
            &live_claims("forge-kid"),
        );
        refused(&server, &t, "BADALG", &format!("alg {alg:?}"));
    }
    // And as the bad option of CHECK: the syntax error quotes it.
    let good = mint_default("HS256", &live_claims("forge-kid"));
    for opt in ["\u{100}", "一", "가", "é"] {
        let reply = send(
            &server,
            &[b"JWTDENY.CHECK", good.as_bytes(), opt.as_bytes()],
            &format!("CHECK <token> {opt:?}"),
        );
        assert_err(&reply, "ERR", &format!("CHECK <token> {opt:?}"));
        let text = reply.error().unwrap_or_default();
        assert!(
            text.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "CHECK <token> {opt:?}: the error reply is not printable ASCII: {text:?}"
        );
    }
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the module connected to a URL kid: {other:?}"),
    }
    assert_eq!(server.cmd(&["EXISTS", "pwned"]).int(), 0);
    assert_eq!(server.dbsize(), 0);
}

#[test]
fn embedded_keys_and_key_urls_are_never_used() {
    let server = Server::with_vector_keys();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let attacker =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = attacker.public_key().as_ref().to_vec();
    assert_eq!(point.len(), 65);
    let attacker_jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": "attacker", "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..]),
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let es256 = |header: &Value| {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(live_claims("forge-embedded").to_string().as_bytes())
        );
        let sig = attacker.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    };
    // The attacker key in every place a header can carry a key, with and without our kid.
    let carriers: Vec<(&str, Value)> = vec![
        ("jwk", json!({"jwk": attacker_jwk})),
        ("jku", json!({"jku": format!("{base}/jwks.json")})),
        ("x5u", json!({"x5u": format!("{base}/cert.pem")})),
        ("x5c", json!({"x5c": [b64(&point)]})),
        (
            "jwk+jku+x5u+x5c",
            json!({
                "jwk": attacker_jwk, "jku": format!("{base}/jwks.json"),
                "x5u": format!("{base}/cert.pem"), "x5c": [b64(&point)],
            }),
        ),
    ];
    for (what, extra) in &carriers {
        for (kid, code) in [
            (None, "BADSIG"),
            (Some("shared-es256"), "BADSIG"),
            (Some("attacker"), "NOKEY"),
        ] {
            let mut header = json!({"alg": "ES256", "typ": "JWT"});
            header
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            if let Some(k) = kid {
                header["kid"] = json!(k);
            }
            refused(
                &server,
                &es256(&header),
                code,
                &format!("{what} header with an attacker ES256 key, kid {kid:?}"),
            );
        }
    }
    // HMAC: the attacker's secret in an embedded oct jwk.
    let secret = [0x41u8; 32];
    for kid in [None, Some("shared-hs256")] {
        let mut header = json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64(&secret)}});
        if let Some(k) = kid {
            header["kid"] = json!(k);
        }
        let t = hmac_token("HS256", &secret, &header, &live_claims("forge-embedded"));
        refused(
            &server,
            &t,
            "BADSIG",
            &format!("jwk header with an attacker oct key, kid {kid:?}"),
        );
    }
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the module fetched a jku/x5u URL: {other:?}"),
    }
    assert_eq!(server.dbsize(), 0);
}

/// A revoked ECDSA token re-encoded as (r, n − s): still the same claims, so still revoked.
fn ecdsa_malleability(alg: &str, order_hex: &str) {
    let server = Server::with_vector_keys();
    let size = order_hex.len() / 2;
    let n = hex(order_hex);
    let revoked = mint_default(alg, &live_claims(&format!("forge-malleable-{alg}")));
    assert_int(
        &server.revoke(&revoked),
        1,
        &format!("revoking the {alg} token"),
    );
    assert_int(
        &server.check(&revoked),
        0,
        &format!("the revoked {alg} token"),
    );
    let keys = server.dbsize();

    let sig = sig_of(&revoked);
    assert_eq!(sig.len(), 2 * size, "{alg} signature is r||s");
    let (r, s) = sig.split_at(size);
    let flipped = sub_be(&n, s);
    assert_ne!(flipped.as_slice(), s);
    let twin = with_sig(&revoked, &[r, &flipped].concat());
    assert_ne!(twin, revoked);
    let check = server.check(&twin);
    eprintln!("{alg} (r, n-s) of a revoked token: CHECK {check}");
    assert_ne!(
        check,
        Reply::Int(1),
        "{alg} (r, n-s) of a revoked token checked 1"
    );
    assert!(
        check == Reply::Int(0) || check.err_code() == Some("BADSIG"),
        "{alg} (r, n-s) of a revoked token: expected 0 (authentic, revoked) or BADSIG (high-s \
         refused), got {check}"
    );
    let revoke = server.revoke(&twin);
    assert_ne!(
        revoke,
        Reply::Int(1),
        "{alg} (r, n-s) twin made a second entry"
    );
    assert_eq!(server.dbsize(), keys, "{alg} (r, n-s) twin wrote a key");

    // The same for a live token: the twin is the same token (1) or refused, never another one.
    let live = mint_default(alg, &live_claims(&format!("forge-malleable-live-{alg}")));
    let sig = sig_of(&live);
    let (r, s) = sig.split_at(size);
    let twin = with_sig(&live, &[r, &sub_be(&n, s)].concat());
    let check = server.check(&twin);
    assert!(
        check == Reply::Int(1) || check.err_code() == Some("BADSIG"),
        "{alg} (r, n-s) of a live token: got {check}"
    );
    // Revoking the twin revokes the original: one key from the claims.
    if check == Reply::Int(1) {
        assert_int(
            &server.revoke(&twin),
            1,
            &format!("{alg}: revoking the (r, n-s) twin"),
        );
        assert_int(
            &server.check(&live),
            0,
            &format!("{alg}: the original after revoking its twin"),
        );
    }
}

#[test]
fn ecdsa_r_n_minus_s_of_a_revoked_es256_token_is_still_revoked() {
    ecdsa_malleability("ES256", P256_N);
}

#[test]
fn ecdsa_r_n_minus_s_of_a_revoked_es384_token_is_still_revoked() {
    ecdsa_malleability("ES384", P384_N);
}

#[test]
fn zero_and_out_of_range_ecdsa_signatures_are_badsig() {
    let server = Server::with_vector_keys();
    for (alg, order) in [("ES256", P256_N), ("ES384", P384_N)] {
        let size = order.len() / 2;
        let n = hex(order);
        let zero = vec![0u8; size];
        let ones = vec![0xffu8; size];
        for (state, token) in [
            (
                "revoked",
                mint_default(alg, &live_claims(&format!("forge-range-r-{alg}"))),
            ),
            (
                "live",
                mint_default(alg, &live_claims(&format!("forge-range-l-{alg}"))),
            ),
        ] {
            if state == "revoked" {
                assert_int(&server.revoke(&token), 1, "revoke");
            }
            let sig = sig_of(&token);
            let (r, s) = sig.split_at(size);
            let cases: Vec<(&str, Vec<u8>)> = vec![
                ("r = 0", [&zero[..], s].concat()),
                ("s = 0", [r, &zero[..]].concat()),
                ("r = s = 0", [&zero[..], &zero[..]].concat()),
                ("r = n", [&n[..], s].concat()),
                ("s = n", [r, &n[..]].concat()),
                ("r = s = n", [&n[..], &n[..]].concat()),
                ("s = n + 1", [r, &add_be(&n, 1)[..]].concat()),
                ("r = n + 1", [&add_be(&n, 1)[..], s].concat()),
                ("s = 2^k - 1", [r, &ones[..]].concat()),
                ("r = 2^k - 1", [&ones[..], s].concat()),
                ("one byte short", sig[..sig.len() - 1].to_vec()),
                ("one byte long", [&sig[..], &[0u8][..]].concat()),
                ("leading zero byte", [&[0u8][..], &sig[..]].concat()),
                ("empty", Vec::new()),
                ("DER-wrapped", {
                    let mut der = vec![0x30, (2 * size + 4) as u8, 0x02, size as u8];
                    der.extend_from_slice(r);
                    der.extend_from_slice(&[0x02, size as u8]);
                    der.extend_from_slice(s);
                    der
                }),
            ];
            for (what, bad) in cases {
                refused(
                    &server,
                    &with_sig(&token, &bad),
                    "BADSIG",
                    &format!("{alg} {state} token with {what}"),
                );
            }
        }
    }
}

#[test]
fn crit_with_unknown_extensions_is_malformed() {
    let server = Server::with_vector_keys();
    let secret = hs256_secret();
    let crits = [
        json!({"crit": ["x-unknown"], "x-unknown": true}),
        json!({"crit": ["b64"], "b64": false}),
        json!({"crit": ["exp"]}),
        json!({"crit": []}),
        json!({"crit": "x-unknown"}),
    ];
    for extra in crits {
        let mut header = json!({"alg": "HS256", "kid": "shared-hs256"});
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let t = hmac_token("HS256", &secret, &header, &live_claims("forge-crit"));
        refused(
            &server,
            &t,
            "MALFORMED",
            &format!("correctly signed header {header}"),
        );
    }
    assert_eq!(server.dbsize(), 0);
}

/// Sets the unused low bits of a base64url segment's last character; `None` if it has none.
fn set_trailing_bits(seg: &str) -> Option<String> {
    let unused = match seg.len() % 4 {
        2 => 4,
        3 => 2,
        _ => return None,
    };
    let last = *seg.as_bytes().last()?;
    let idx = B64URL.iter().position(|c| *c == last)?;
    assert_eq!(idx & ((1 << unused) - 1), 0, "not canonical to begin with");
    let changed = B64URL[idx | 1] as char;
    Some(format!("{}{changed}", &seg[..seg.len() - 1]))
}

/// The token's three segments with `f` applied to segment `i`.
fn alter(token: &str, i: usize, f: impl Fn(&str) -> String) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[i] = f(&parts[i]);
    parts.join(".")
}

#[test]
fn non_canonical_base64_is_malformed() {
    let server = Server::with_vector_keys();
    let revoked = mint_default("HS256", &live_claims("forge-b64-revoked"));
    assert_int(&server.revoke(&revoked), 1, "revoke");
    // A live token whose signature uses both '-' and '_', and a payload with trailing bits.
    let mut live = None;
    for i in 0..10_000 {
        let mut c = live_claims("forge-b64");
        c["jti"] = json!(format!("{i}"));
        let t = mint_default("HS256", &c);
        let sig = t.rsplit('.').next().unwrap();
        if sig.contains('-') && sig.contains('_') {
            live = Some(t);
            break;
        }
    }
    let live = live.expect("a signature with - and _");
    assert_int(&server.check(&live), 1, "sanity: the canonical token");

    for (state, token) in [("live", &live), ("revoked", &revoked)] {
        let segs: Vec<&str> = token.split('.').collect();
        let mut cases: Vec<(String, String)> = Vec::new();
        for (i, name) in ["header", "payload", "signature"].iter().enumerate() {
            if let Some(t) = set_trailing_bits(segs[i]).map(|s| alter(token, i, |_| s.clone())) {
                cases.push((format!("trailing bits set in the {name}"), t));
            }
            let padded = alter(token, i, |s| {
                let pad = (4 - s.len() % 4) % 4;
                format!("{s}{}", "=".repeat(if pad == 0 { 4 } else { pad }))
            });
            cases.push((format!("= padding on the {name}"), padded));
            cases.push((
                format!("a newline in the {name}"),
                alter(token, i, |s| format!("{}\n{}", &s[..2], &s[2..])),
            ));
            cases.push((
                format!("a space in the {name}"),
                alter(token, i, |s| format!("{} {}", &s[..2], &s[2..])),
            ));
        }
        assert!(
            cases
                .iter()
                .any(|(w, _)| w.contains("trailing bits set in the signature")),
            "an HS256 signature (43 chars) has trailing bits"
        );
        let std_alphabet = alter(token, 2, |s| s.replace('-', "+").replace('_', "/"));
        if std_alphabet != *token {
            cases.push((
                "+ and / (standard alphabet) in the signature".into(),
                std_alphabet,
            ));
        }
        for (what, t) in cases {
            assert_ne!(&t, token);
            refused(&server, &t, "MALFORMED", &format!("{state} token, {what}"));
        }
    }
    assert_eq!(server.dbsize(), 1, "only the real revocation is stored");
}

#[test]
fn duplicate_members_are_malformed() {
    let server = Server::with_vector_keys();
    let (iat, exp) = (now() - 60, FAR_EXP);
    let cases = [
        (
            "duplicate sub",
            r#"{"alg":"HS256","kid":"shared-hs256"}"#.to_string(),
            format!(r#"{{"sub":"alice","iat":{iat},"exp":{exp},"sub":"admin"}}"#),
        ),
        (
            "duplicate sub, same value",
            r#"{"alg":"HS256","kid":"shared-hs256"}"#.to_string(),
            format!(r#"{{"sub":"alice","sub":"alice","iat":{iat},"exp":{exp}}}"#),
        ),
        (
            "duplicate iat",
            r#"{"alg":"HS256","kid":"shared-hs256"}"#.to_string(),
            format!(r#"{{"sub":"alice","iat":{iat},"iat":1,"exp":{exp}}}"#),
        ),
        (
            "duplicate exp",
            r#"{"alg":"HS256","kid":"shared-hs256"}"#.to_string(),
            format!(r#"{{"sub":"alice","iat":{iat},"exp":{exp},"exp":1}}"#),
        ),
        (
            "duplicate kid",
            r#"{"alg":"HS256","kid":"shared-hs256","kid":"shared-hs384"}"#.to_string(),
            format!(r#"{{"sub":"alice","iat":{iat},"exp":{exp}}}"#),
        ),
        (
            "duplicate alg",
            r#"{"alg":"HS256","alg":"none","kid":"shared-hs256"}"#.to_string(),
            format!(r#"{{"sub":"alice","iat":{iat},"exp":{exp}}}"#),
        ),
    ];
    for (what, header, payload) in cases {
        let t = sign_raw("HS256", &header, &payload);
        refused(
            &server,
            &t,
            "MALFORMED",
            &format!("correctly signed token with a {what}"),
        );
    }
    assert_eq!(server.dbsize(), 0);
}

/// Only the members jwtdeny reads must be unique (README: Errors): a duplicate of another member
/// is the application's affair, while `nbf`, `iss` and `aud` are read, and so must be unique,
/// even when no config asks for them. Since access tokens are typed (issue 17 §1.5), `typ` and
/// `events` are read too: a duplicate could make two parsers see two kinds of token.
#[test]
fn duplicates_matter_only_for_members_jwtdeny_reads() {
    let server = Server::with_vector_keys();
    let (iat, exp) = (now() - 60, FAR_EXP);
    let t = sign_raw(
        "HS256",
        r#"{"alg":"HS256","typ":"JWT","cty":"a","cty":"b","kid":"shared-hs256"}"#,
        &format!(r#"{{"sub":"dup","iat":{iat},"exp":{exp},"jti":"1","jti":"2"}}"#),
    );
    assert_int(&server.check(&t), 1, "duplicate cty and jti");
    let t = sign_raw(
        "HS256",
        r#"{"alg":"HS256","typ":"JWT","typ":"logout+jwt","kid":"shared-hs256"}"#,
        &format!(r#"{{"sub":"dup","iat":{iat},"exp":{exp}}}"#),
    );
    assert_err(&server.check(&t), "MALFORMED", "duplicate typ");
    for member in [
        r#""events":{},"events":1"#,
        r#""aud":"a","aud":"b""#,
        r#""iss":"a","iss":"b""#,
        r#""nbf":1,"nbf":2"#,
    ] {
        let t = sign_raw(
            "HS256",
            r#"{"alg":"HS256","kid":"shared-hs256"}"#,
            &format!(r#"{{"sub":"dup","iat":{iat},"exp":{exp},{member}}}"#),
        );
        assert_err(&server.check(&t), "MALFORMED", member);
    }
}
