//! The keys file: KEYS LIST, KEYS RELOAD with a rotated or a bad file, key selection rules,
//! and key material never leaving the file.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;

/// KEYS LIST as kid (or "(nil)") → (kty, algorithms), checking the shape of every entry.
fn key_list(server: &Server) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let r = server.cmd(&["JWTDENY.KEYS", "LIST"]);
    let mut out = BTreeMap::new();
    for entry in r.array() {
        let f = entry.array();
        assert_eq!(f.len(), 8, "KEYS LIST entry {entry}");
        // Field names may be status or bulk strings: clients read both as strings.
        assert_eq!(f[0].text(), "kid", "KEYS LIST entry {entry}");
        assert_eq!(f[2].text(), "kty", "KEYS LIST entry {entry}");
        assert_eq!(f[4].text(), "algorithms", "KEYS LIST entry {entry}");
        assert_eq!(f[6].text(), "source", "KEYS LIST entry {entry}");
        assert_eq!(
            f[7].text(),
            "file",
            "KEYS LIST entry {entry}: from the keys file"
        );
        let kid = match &f[1] {
            Reply::Bulk(None) => "(nil)".to_string(),
            other => other.text(),
        };
        let algs: BTreeSet<String> = f[5].array().iter().map(Reply::text).collect();
        assert_eq!(
            algs.len(),
            f[5].array().len(),
            "duplicate algorithms in {entry}"
        );
        let previous = out.insert(kid.clone(), (f[3].text(), algs));
        assert!(previous.is_none(), "kid {kid} listed twice: {r}");
    }
    out
}

fn entry(kty: &str, algs: &[&str]) -> (String, BTreeSet<String>) {
    (
        kty.to_string(),
        algs.iter().map(|s| s.to_string()).collect(),
    )
}

#[test]
fn list_shows_kid_kty_and_algorithms() {
    let server = Server::with_vector_keys();
    let mut expected = BTreeMap::new();
    expected.insert("shared-hs256".to_string(), entry("oct", &["HS256"]));
    expected.insert("shared-hs384".to_string(), entry("oct", &["HS384"]));
    expected.insert("shared-hs512".to_string(), entry("oct", &["HS512"]));
    expected.insert(
        "shared-rsa".to_string(),
        entry(
            "RSA",
            &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
        ),
    );
    expected.insert("shared-es256".to_string(), entry("EC", &["ES256"]));
    expected.insert("shared-es384".to_string(), entry("EC", &["ES384"]));
    expected.insert("shared-ed25519".to_string(), entry("OKP", &["EdDSA"]));
    assert_eq!(key_list(&server), expected);
    assert_int(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        7,
        "RELOAD of the same file",
    );
    assert_eq!(key_list(&server), expected);
}

/// Every piece of key material in the vectors' JWKS, as text and (for HMAC) as raw bytes.
fn secrets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in jwks()["keys"].as_array().unwrap() {
        for field in ["k", "n", "x", "y", "d"] {
            if let Some(s) = k.get(field).and_then(Value::as_str) {
                out.push(s.as_bytes().to_vec());
                // Any 24-character slice of it is enough to count as a leak.
                if s.len() > 24 {
                    out.push(s.as_bytes()[s.len() / 2 - 12..s.len() / 2 + 12].to_vec());
                }
            }
        }
    }
    for name in ["shared-hs256.key", "shared-hs384.key", "shared-hs512.key"] {
        out.push(fs::read(vectors_dir().join("private").join(name)).unwrap());
    }
    assert!(out.len() >= 12);
    out
}

#[test]
fn key_material_never_appears() {
    // A bad keys file whose secrets the error must not quote either.
    let bad_secret = "c2VjcmV0LWluLWEtYmFkLWZpbGUtdGhhdC1tdXN0LW5vdC1sZWFr";
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("loglevel debug")
        .start();
    let mut secrets = secrets();
    secrets.push(bad_secret.as_bytes().to_vec());

    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    let mut record = |what: &str, r: Reply| seen.push((what.to_string(), r.all_bytes()));

    record("KEYS LIST", server.cmd(&["JWTDENY.KEYS", "LIST"]));
    record("KEYS RELOAD", server.cmd(&["JWTDENY.KEYS", "RELOAD"]));
    record("INFO everything", server.cmd(&["INFO", "everything"]));
    record("CONFIG GET *", server.cmd(&["CONFIG", "GET", "*"]));
    record("MODULE LIST", server.cmd(&["MODULE", "LIST"]));
    for v in vectors() {
        record(&format!("CHECK {}", v.name), server.check(&v.token));
    }

    // Files with material that is refused: the replies say why without quoting it.
    let dir = server.dir().to_path_buf();
    let bad_files = [
        (
            "short-secret",
            json!({"keys": [{"kty": "oct", "kid": "s", "alg": "HS256", "k": b64(b"short-secret")}]}),
        ),
        (
            "unknown-alg",
            json!({"keys": [{"kty": "oct", "kid": "u", "alg": "HS999", "k": bad_secret}]}),
        ),
        (
            "oct-as-rsa",
            json!({"keys": [{"kty": "RSA", "kid": "r", "n": bad_secret, "e": "AQAB"}]}),
        ),
        (
            "ec-bad-point",
            json!({"keys": [{"kty": "EC", "kid": "e", "crv": "P-256", "x": bad_secret, "y": bad_secret}]}),
        ),
    ];
    secrets.push(b64(b"short-secret").into_bytes());
    for (name, doc) in &bad_files {
        let path = dir.join(format!("{name}.json"));
        fs::write(&path, doc.to_string()).unwrap();
        // Whether each is refused is tested elsewhere; here only what is said about it.
        let r = server.config_set("jwtdeny.keys-file", &path.to_string_lossy());
        record(&format!("CONFIG SET keys-file {name}"), r);
    }
    record(
        "KEYS RELOAD after refusals",
        server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
    );
    record(
        "INFO everything at the end",
        server.cmd(&["INFO", "everything"]),
    );
    record(
        "CONFIG GET * at the end",
        server.cmd(&["CONFIG", "GET", "*"]),
    );
    seen.push(("server log".to_string(), server.log().into_bytes()));

    for (what, bytes) in &seen {
        for s in &secrets {
            assert!(
                !contains(bytes, s),
                "key material {:?} appears in {what}:\n{}",
                String::from_utf8_lossy(s),
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

#[test]
fn reload_with_a_rotated_file() {
    let server = ServerBuilder::new()
        .jwks("keys.json", &[jwk("shared-hs256"), jwk("shared-es256")])
        .start();
    let keys_path = server.dir().join("keys.json");

    let hs256 = vector("valid-HS256");
    let es256 = vector("valid-ES256");
    let es384 = vector("valid-ES384");
    let eddsa = vector("valid-EdDSA");
    assert_int(&server.check(&hs256.token), 1, "HS256 before rotation");
    assert_int(&server.check(&es256.token), 1, "ES256 before rotation");
    assert_err(
        &server.check(&es384.token),
        "NOKEY",
        "ES384 before rotation",
    );
    assert_int(
        &server.revoke(&hs256.token),
        1,
        "REVOKE HS256 before rotation",
    );
    let revoked_key = deny_key(hs256.sub.as_deref().unwrap(), hs256.iat.unwrap());

    // Rotate: the old keys are gone, two new ones arrive.
    write_jwks(&keys_path, &[jwk("shared-es384"), jwk("shared-ed25519")]);
    // Nothing changes before RELOAD.
    assert_int(
        &server.check(&es256.token),
        1,
        "ES256 after the file changed, before RELOAD",
    );
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 2, "RELOAD");
    let mut expected = BTreeMap::new();
    expected.insert("shared-es384".to_string(), entry("EC", &["ES384"]));
    expected.insert("shared-ed25519".to_string(), entry("OKP", &["EdDSA"]));
    assert_eq!(key_list(&server), expected);

    assert_err(&server.check(&hs256.token), "NOKEY", "HS256 after rotation");
    assert_err(&server.check(&es256.token), "NOKEY", "ES256 after rotation");
    assert_int(&server.check(&es384.token), 1, "ES384 after rotation");
    assert_int(&server.check(&eddsa.token), 1, "EdDSA after rotation");
    let minted = mint_default("ES384", &claims("new-key-user", now(), now() + 600));
    assert_int(
        &server.check(&minted),
        1,
        "a fresh ES384 token after rotation",
    );
    // Reloading keys does not touch the denylist.
    assert_eq!(server.keys(), vec![revoked_key]);

    // New material under an old kid: tokens signed with the old material no longer verify.
    let mut replaced = jwk("shared-hs256");
    replaced["k"] = jwk("shared-hs512")["k"].clone();
    write_jwks(&keys_path, &[replaced]);
    assert_int(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        1,
        "RELOAD with replaced material",
    );
    assert_err(
        &server.check(&hs256.token),
        "BADSIG",
        "old HS256 token under replaced material",
    );
}

#[test]
fn reload_with_a_bad_file_keeps_the_old_keys() {
    let server = ServerBuilder::new().own_vector_keys("keys.json").start();
    let keys_path = server.dir().join("keys.json");
    let before = key_list(&server);
    assert_eq!(before.len(), 7);

    let rsa = jwk("shared-rsa");
    let n = b64_decode(rsa["n"].as_str().unwrap());
    let mut rsa_1024 = rsa.clone();
    rsa_1024["kid"] = json!("small-rsa");
    rsa_1024["n"] = json!(b64(&n[..128]));
    let mut p256_with_p384_point = jwk("shared-es384");
    p256_with_p384_point["crv"] = json!("P-256");
    p256_with_p384_point["kid"] = json!("wrong-curve");
    let mut dup = jwk("shared-hs384");
    dup["kid"] = json!("shared-hs256");
    // Issue 17 §1.9: keys that would load and then refuse every token as BADSIG.
    let mut rsa_e1 = rsa.clone();
    rsa_e1["kid"] = json!("rsa-e1");
    rsa_e1["e"] = json!(b64(&[1]));
    let mut rsa_even = rsa.clone();
    rsa_even["kid"] = json!("rsa-even");
    rsa_even["e"] = json!(b64(&[1, 0, 0]));
    let mut off_curve = jwk("shared-es256");
    off_curve["kid"] = json!("off-curve");
    let mut y = b64_decode(off_curve["y"].as_str().unwrap());
    y[31] ^= 1;
    off_curve["y"] = json!(b64(&y));

    let bad: Vec<(&str, String)> = vec![
        ("not JSON", "this is not json".to_string()),
        ("truncated JSON", "{\"keys\": [".to_string()),
        ("keys not an array", r#"{"keys": "x"}"#.to_string()),
        ("no keys member", r#"{"kty": "oct"}"#.to_string()),
        ("HS256 secret shorter than 32 bytes", json!({"keys": [jwk("shared-es256"), {"kty": "oct", "kid": "short", "alg": "HS256", "k": b64(&[1u8; 31])}]}).to_string()),
        ("HS512 secret shorter than 64 bytes", json!({"keys": [{"kty": "oct", "kid": "short", "alg": "HS512", "k": b64(&[1u8; 48])}]}).to_string()),
        ("duplicate kid", json!({"keys": [jwk("shared-hs256"), dup]}).to_string()),
        ("1024-bit RSA key", json!({"keys": [rsa_1024]}).to_string()),
        ("RSA key with e = 1", json!({"keys": [rsa_e1]}).to_string()),
        ("RSA key with an even e", json!({"keys": [rsa_even]}).to_string()),
        ("P-256 point off the curve", json!({"keys": [off_curve]}).to_string()),
        ("P-384 point declared P-256", json!({"keys": [p256_with_p384_point]}).to_string()),
        ("key alg none", json!({"keys": [{"kty": "oct", "kid": "n", "alg": "none", "k": b64(&[1u8; 64])}]}).to_string()),
        ("alg not fitting kty", json!({"keys": [{"kty": "oct", "kid": "m", "alg": "RS256", "k": b64(&[1u8; 64])}]}).to_string()),
    ];
    for (what, text) in &bad {
        write_atomic(&keys_path, text.as_bytes());
        let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
        assert_err(&r, "ERR", &format!("RELOAD of a file with {what}"));
        assert!(
            r.error().unwrap().len() > "ERR ".len() + 10,
            "RELOAD of a file with {what}: the error does not say what is wrong: {r}"
        );
        let why = r.error().unwrap_or_default();
        for (case, words) in [
            ("e = 1", "is 1"),
            ("even e", "is even"),
            ("off the curve", "not on the curve"),
        ] {
            if what.contains(case) {
                assert!(why.contains(words), "RELOAD of a file with {what}: {why}");
            }
        }
        assert_eq!(
            key_list(&server),
            before,
            "keys after RELOAD of a file with {what}"
        );
        assert_int(
            &server.check(vector("valid-HS256").token),
            1,
            &format!("HS256 after {what}"),
        );
        assert_int(
            &server.check(vector("valid-PS384").token),
            1,
            &format!("PS384 after {what}"),
        );
    }

    // A missing file is bad too.
    fs::remove_file(&keys_path).unwrap();
    assert_err(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        "ERR",
        "RELOAD of a missing file",
    );
    assert_eq!(
        key_list(&server),
        before,
        "keys after RELOAD of a missing file"
    );

    // Fixing the file and reloading works.
    write_jwks(&keys_path, &[jwk("shared-hs256")]);
    assert_int(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        1,
        "RELOAD of a good file",
    );
    assert_err(
        &server.check(vector("valid-PS384").token),
        "NOKEY",
        "PS384 after the good RELOAD",
    );
}

#[test]
fn runtime_keys_file_change_is_refused_when_bad() {
    let builder = ServerBuilder::new();
    let bad = builder.dir().join("bad.json");
    fs::write(&bad, "[]").unwrap();
    let server = builder.vector_keys().start();
    let r = server.config_set("jwtdeny.keys-file", &bad.to_string_lossy());
    assert!(
        r.error().is_some_and(|e| e.contains("jwtdeny.keys-file")),
        "CONFIG SET of a bad keys file: {r}"
    );
    assert_eq!(
        server.config_get("jwtdeny.keys-file"),
        jwks_path().to_string_lossy()
    );
    assert_eq!(key_list(&server).len(), 7);
    assert_int(
        &server.check(vector("valid-EdDSA").token),
        1,
        "EdDSA after the refusal",
    );
}

#[test]
fn enc_keys_are_ignored() {
    let mut enc = jwk("shared-hs384");
    enc["use"] = json!("enc");
    let server = ServerBuilder::new()
        .jwks("keys.json", &[jwk("shared-hs256"), enc])
        .start();
    assert_eq!(
        key_list(&server).keys().cloned().collect::<Vec<_>>(),
        vec!["shared-hs256".to_string()]
    );
    assert_int(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        1,
        "RELOAD counts only signing keys",
    );
    assert_int(&server.check(vector("valid-HS256").token), 1, "HS256");
    assert_err(
        &server.check(vector("valid-HS384").token),
        "NOKEY",
        "HS384 (enc key)",
    );
}

/// Without `kid` a token uses the single key fitting its alg; several is NOKEY.
#[test]
fn key_selection_without_kid() {
    let mut a = jwk("shared-hs256");
    a["kid"] = json!("a");
    let mut b = jwk("shared-hs256");
    b["kid"] = json!("b");
    let mut anonymous_es256 = jwk("shared-es256");
    anonymous_es256.as_object_mut().unwrap().remove("kid");
    let server = ServerBuilder::new()
        .jwks("keys.json", &[a, b, anonymous_es256])
        .start();

    let list = key_list(&server);
    assert_eq!(
        list.get("(nil)"),
        Some(&entry("EC", &["ES256"])),
        "a key without kid: {list:?}"
    );

    let c = claims("nokid", SOME_IAT, FAR_EXP);
    assert_err(
        &server.check(mint("HS256", None, &c)),
        "NOKEY",
        "HS256 without kid, two HS256 keys",
    );
    assert_int(
        &server.check(mint("HS256", Some("a"), &c)),
        1,
        "HS256 kid a",
    );
    assert_int(
        &server.check(mint("HS256", Some("b"), &c)),
        1,
        "HS256 kid b",
    );
    assert_int(
        &server.check(mint("ES256", None, &c)),
        1,
        "ES256 without kid, one anonymous key",
    );
    assert_err(
        &server.check(mint("ES256", Some("shared-es256"), &c)),
        "NOKEY",
        "ES256 naming a kid not in the file",
    );
}

/// A key with `alg` serves only that alg; one without serves what its kty/curve fits.
#[test]
fn key_alg_restricts_what_it_serves() {
    let mut rs256_only = jwk("shared-rsa");
    rs256_only["alg"] = json!("RS256");
    rs256_only["kid"] = json!("rs256-only");
    let mut es256_any = jwk("shared-es256");
    es256_any.as_object_mut().unwrap().remove("alg");
    let mut ed_any = jwk("shared-ed25519");
    ed_any.as_object_mut().unwrap().remove("alg");
    let mut hs512_any = jwk("shared-hs512");
    hs512_any.as_object_mut().unwrap().remove("alg");
    let server = ServerBuilder::new()
        .jwks("keys.json", &[rs256_only, es256_any, ed_any, hs512_any])
        .start();

    let list = key_list(&server);
    assert_eq!(list["rs256-only"], entry("RSA", &["RS256"]));
    assert_eq!(list["shared-es256"], entry("EC", &["ES256"]));
    assert_eq!(list["shared-ed25519"], entry("OKP", &["EdDSA"]));
    assert_eq!(
        list["shared-hs512"],
        entry("oct", &["HS256", "HS384", "HS512"])
    );

    let c = claims("algs", SOME_IAT, FAR_EXP);
    assert_int(
        &server.check(mint("RS256", Some("rs256-only"), &c)),
        1,
        "RS256 on an RS256 key",
    );
    for alg in ["RS384", "RS512", "PS256", "PS384", "PS512"] {
        assert_err(
            &server.check(mint(alg, Some("rs256-only"), &c)),
            "BADALG",
            &format!("{alg} on an RS256 key"),
        );
    }
    assert_int(
        &server.check(mint("ES256", Some("shared-es256"), &c)),
        1,
        "ES256 on a P-256 key without alg",
    );
    assert_err(
        &server.check(mint("ES384", Some("shared-es256"), &c)),
        "BADALG",
        "ES384 on a P-256 key",
    );
    assert_int(
        &server.check(mint("EdDSA", Some("shared-ed25519"), &c)),
        1,
        "EdDSA on an Ed25519 key without alg",
    );

    // A 64-byte secret without alg serves every HMAC algorithm.
    let secret = fs::read(vectors_dir().join("private/shared-hs512.key")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_secret(&secret).unwrap();
    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some("shared-hs512".into());
        let token = jsonwebtoken::encode(&header, &c, &key).unwrap();
        assert_int(
            &server.check(&token),
            1,
            &format!("{alg:?} on an HMAC key without alg"),
        );
    }
}
