//! The verification cache (issue 4 §3): hits are counted, a hit still has its times and the
//! denylist checked, and the cache never outlives the keys or the rules a token passed.

use crate::common;
use crate::support;

use common::*;
use serde_json::json;
use std::fs;
use support::*;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stats {
    entries: i64,
    hits: i64,
    misses: i64,
}

fn stats(server: &Server) -> Stats {
    Stats {
        entries: info_num(server, "verify_cache_entries"),
        hits: info_num(server, "verify_cache_hits"),
        misses: info_num(server, "verify_cache_misses"),
    }
}

fn keys_without(kid: &str) -> Vec<serde_json::Value> {
    jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] != kid)
        .cloned()
        .collect()
}

#[test]
fn repeated_checks_are_hits() {
    let server = Server::with_vector_keys();
    assert_eq!(
        stats(&server),
        Stats {
            entries: 0,
            hits: 0,
            misses: 0
        }
    );
    let t = mint_default("ES256", &claims("cache-user", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, "first CHECK");
    assert_eq!(
        stats(&server),
        Stats {
            entries: 1,
            hits: 0,
            misses: 1
        },
        "after a miss"
    );
    for i in 0..4 {
        assert_int(&server.check(&t), 1, &format!("CHECK {i}"));
    }
    assert_eq!(
        stats(&server),
        Stats {
            entries: 1,
            hits: 4,
            misses: 1
        },
        "after 4 hits"
    );
    // WITHCLAIMS and the keyed form share the cache.
    server
        .cmd(&["JWTDENY.CHECK", t.as_str(), "WITHCLAIMS"])
        .array();
    let entry = deny_key("cache-user", SOME_IAT);
    let subject = subject_key("cache-user");
    assert_int(
        &server.cmd(&["JWTDENY.KCHECK", &entry, &subject, &t]),
        1,
        "KCHECK",
    );
    assert_eq!(stats(&server).hits, 6, "WITHCLAIMS and KCHECK hit");

    // A hit still looks at the denylist: REVOKE (a hit itself), then CHECK answers 0.
    assert_int(&server.revoke(&t), 1, "REVOKE");
    assert_int(&server.check(&t), 0, "CHECK after REVOKE");
    assert_eq!(
        stats(&server),
        Stats {
            entries: 1,
            hits: 8,
            misses: 1
        }
    );
    let t2 = mint_default("EdDSA", &claims("cache-user-2", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t2), 1, "CHECK t2");
    assert_int(&server.check(&t2), 1, "CHECK t2 cached");
    let at = (SOME_IAT + 1).to_string();
    server
        .cmd(&["JWTDENY.REVOKEALL", "cache-user-2", "AT", &at])
        .int();
    assert_int(&server.check(&t2), 0, "cached token covered by a cutoff");

    // Failures are not cached.
    let before = stats(&server);
    for _ in 0..3 {
        assert_err(
            &server.check(vector("bad-signature").token),
            "BADSIG",
            "BADSIG",
        );
    }
    let after = stats(&server);
    assert_eq!(after.entries, before.entries, "failures cached");
    assert_eq!(after.hits, before.hits, "a failure hit the cache");

    // INSPECT does its own full verification and leaves the cache alone.
    let before = stats(&server);
    server.cmd(&["JWTDENY.INSPECT", t.as_str()]).array();
    assert_eq!(stats(&server), before, "INSPECT touched the cache");
}

#[test]
fn a_cached_tokens_tampered_copy_is_verified_afresh() {
    let server = Server::with_vector_keys();
    let t = mint_default("HS256", &claims("victim", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, "CHECK");
    assert_int(&server.check(&t), 1, "CHECK cached");
    let parts: Vec<&str> = t.split('.').collect();
    let forged_payload =
        b64(format!(r#"{{"sub":"attacker","iat":{SOME_IAT},"exp":{FAR_EXP}}}"#).as_bytes());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_err(
        &server.check(&forged),
        "BADSIG",
        "payload swapped under a cached signature",
    );
    // Same header and payload, another token's signature.
    let other = mint_default("HS256", &claims("victim", SOME_IAT + 1, FAR_EXP));
    let other_sig = other.split('.').nth(2).unwrap();
    let swapped = format!("{}.{}.{}", parts[0], parts[1], other_sig);
    assert_err(
        &server.check(&swapped),
        "BADSIG",
        "another token's signature",
    );
    assert_eq!(stats(&server).entries, 1);
}

#[test]
fn a_rotated_out_key_fails_after_reload_even_when_cached() {
    let (server, path) = server_with_own_keys_file();
    let rs = mint_default("RS256", &claims("rs-user", SOME_IAT, FAR_EXP));
    let hs = mint_default("HS256", &claims("hs-user", SOME_IAT, FAR_EXP));
    for _ in 0..2 {
        assert_int(&server.check(&rs), 1, "CHECK RS256");
        assert_int(&server.check(&hs), 1, "CHECK HS256");
    }
    assert_eq!(
        stats(&server),
        Stats {
            entries: 2,
            hits: 2,
            misses: 2
        }
    );

    write_jwks(&path, &keys_without("shared-rsa"));
    assert_int(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        6,
        "RELOAD without the RSA key",
    );
    assert_eq!(stats(&server).entries, 0, "RELOAD empties the cache");
    assert_refused(&server, &rs, "NOKEY", "RS256 after its key left");
    assert_int(&server.check(&hs), 1, "CHECK HS256 still fine");

    // A failed reload keeps keys and cache alike.
    assert_int(&server.check(&hs), 1, "CHECK HS256 cached again");
    let before = stats(&server);
    fs::write(&path, b"not json").unwrap();
    assert!(
        server.cmd(&["JWTDENY.KEYS", "RELOAD"]).is_error(),
        "bad file refused"
    );
    assert_int(&server.check(&hs), 1, "CHECK HS256 after a refused reload");
    assert!(stats(&server).hits > before.hits);
}

#[test]
fn a_replaced_secret_under_the_same_kid_fails_after_reload_even_when_cached() {
    let (server, path) = server_with_own_keys_file();
    let hs = mint_default("HS256", &claims("hs-user", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&hs), 1, "CHECK");
    assert_int(&server.check(&hs), 1, "CHECK cached");
    let mut keys = jwks()["keys"].as_array().unwrap().clone();
    for k in keys.iter_mut() {
        if k["kid"] == "shared-hs256" {
            k["k"] = json!(b64(&[0x5a; 32]));
        }
    }
    write_jwks(&path, &keys);
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 7, "RELOAD");
    assert_err(&server.check(&hs), "BADSIG", "CHECK under the new secret");
}

#[test]
fn changing_the_keys_file_at_runtime_empties_the_cache() {
    let server = Server::with_vector_keys();
    let es = mint_default("ES256", &claims("es-user", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&es), 1, "CHECK");
    assert_int(&server.check(&es), 1, "CHECK cached");
    let other = server.dir().join("no-es256.json");
    write_jwks(&other, &keys_without("shared-es256"));
    ok(
        server.config_set("jwtdeny.keys-file", &other.to_string_lossy()),
        "CONFIG SET keys-file",
    );
    assert_eq!(stats(&server).entries, 0);
    assert_err(&server.check(&es), "NOKEY", "CHECK after the key left");
}

#[test]
fn an_expired_cached_token_answers_expired() {
    let server = Server::with_vector_keys();
    // Long enough for the first CHECKs on a loaded machine, short enough to wait for.
    let exp = now() + 4;
    let t = mint_default("EdDSA", &claims("short-lived", now() - 10, exp));
    assert_int(&server.check(&t), 1, "CHECK");
    assert_int(&server.check(&t), 1, "CHECK cached");
    let before = stats(&server);
    sleep_until_after(exp);
    assert_refused(&server, &t, "EXPIRED", "of the cached token past exp");
    let after = stats(&server);
    assert_eq!(after.hits, before.hits + 2, "both answered from the cache");
    // Leeway is judged on every command, cached or not.
    ok(server.config_set("jwtdeny.leeway", "60"), "leeway 60");
    assert_int(&server.check(&t), 1, "CHECK within the new leeway");
}

#[test]
fn a_not_yet_valid_cached_token_becomes_valid() {
    let server = Server::with_vector_keys();
    let nbf = now() + 4;
    let t = mint_default(
        "ES384",
        &json!({"sub": "early", "iat": now(), "exp": FAR_EXP, "nbf": nbf}),
    );
    assert_err(&server.check(&t), "NOTYET", "CHECK before nbf");
    assert_err(&server.check(&t), "NOTYET", "CHECK before nbf again");
    let before = stats(&server);
    sleep_until_after(nbf);
    assert_int(&server.check(&t), 1, "CHECK after nbf");
    assert_eq!(
        stats(&server).hits,
        before.hits + 1,
        "answered from the cache"
    );
}

#[test]
fn validation_config_changes_empty_the_cache() {
    let server = Server::with_vector_keys();
    let t = mint_default(
        "RS256",
        &json!({"sub": "ivy", "iat": now() - 60, "exp": now() + 3000, "iss": "https://a.example", "aud": "api"}),
    );
    let check_cached = |what: &str| {
        assert_int(&server.check(&t), 1, what);
        assert_int(&server.check(&t), 1, what);
        assert!(stats(&server).entries >= 1, "{what}: cached");
    };

    // Each config, a value the cached token fails, the code it then gets, and the value to go
    // back to (after which the token is cached again).
    let changes = [
        (
            "issuer",
            "https://b.example",
            "BADCLAIMS",
            Some("https://a.example"),
        ),
        ("audience", "web", "BADCLAIMS", Some("api")),
        ("algorithms", "HS256,ES256", "BADALG", Some("")),
        ("max-token-bytes", "128", "MALFORMED", Some("8192")),
        // Last: raising max-lifetime again is refused at runtime (README: Configuration).
        ("max-lifetime", "600", "BADCLAIMS", None),
    ];
    check_cached("no issuer");
    for (name, value, code, back) in changes {
        let config = format!("jwtdeny.{name}");
        ok(
            server.config_set(&config, value),
            &format!("{name} {value}"),
        );
        assert_eq!(
            stats(&server).entries,
            0,
            "CONFIG SET {name} empties the cache"
        );
        assert_err(
            &server.check(&t),
            code,
            &format!("cached token under {name} {value}"),
        );
        if let Some(back) = back {
            ok(
                server.config_set(&config, back),
                &format!("{name} {back:?}"),
            );
            check_cached(&format!("{name} {back:?}"));
        }
    }
}

#[test]
fn size_zero_disables_the_cache() {
    let server = Server::with_vector_keys();
    let t = mint_default("ES256", &claims("nocache", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, "CHECK");
    assert_eq!(stats(&server).entries, 1);
    ok(
        server.config_set("jwtdeny.verify-cache-size", "0"),
        "size 0",
    );
    assert_eq!(info_num(&server, "verify_cache_capacity"), 0);
    let before = stats(&server);
    assert_eq!(before.entries, 0, "resizing to 0 empties the cache");
    for _ in 0..5 {
        assert_int(&server.check(&t), 1, "CHECK without a cache");
    }
    let after = stats(&server);
    assert_eq!(after.hits, before.hits, "no hits with the cache off");
    assert_eq!(after.entries, 0, "nothing stored with the cache off");
    // Revocation works the same without a cache.
    assert_int(&server.revoke(&t), 1, "REVOKE");
    assert_int(&server.check(&t), 0, "CHECK revoked");
    // Back on.
    ok(
        server.config_set("jwtdeny.verify-cache-size", "10"),
        "size 10",
    );
    let t2 = mint_default("ES256", &claims("cache-again", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t2), 1, "CHECK");
    assert_int(&server.check(&t2), 1, "CHECK");
    assert_eq!(
        stats(&server).hits,
        after.hits + 1,
        "hits again once re-enabled"
    );
}

#[test]
fn size_zero_at_startup() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.verify-cache-size 0")
        .start();
    assert_eq!(info_num(&server, "verify_cache_capacity"), 0);
    let t = vector("valid-ES256").token;
    for _ in 0..3 {
        assert_int(&server.check(&t), 1, "CHECK");
    }
    assert_eq!(
        stats(&server),
        Stats {
            entries: 0,
            hits: 0,
            misses: 0
        }
    );
}

/// `used_memory`, as Redis counts its allocator's blocks.
fn used_memory(server: &Server) -> i64 {
    let text = server.cmd(&["INFO", "memory"]).text();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("used_memory:"))
        .unwrap_or_else(|| panic!("no used_memory in INFO memory:\n{text}"))
        .parse()
        .expect("a number")
}

/// `verify_cache_memory_bytes` is what filling the cache costs the server: the growth of
/// `used_memory` over 100,000 distinct tokens is the reported figure within 10%. 100,000 is
/// not a power of two, so the spare capacity of the slots and the index counts too.
#[test]
fn the_memory_figure_is_what_the_server_allocates() {
    const N: usize = 100_000;
    let server = ServerBuilder::new()
        .vector_keys()
        .module_args(&["verify-cache-size", "200000"])
        .start();
    let mut conn = server.conn();
    let before = used_memory(&server);
    assert_eq!(info_num(&server, "verify_cache_memory_bytes"), 0);
    // Subjects of assorted lengths, each its own allocation in the cache.
    let tokens: Vec<String> = (0..N)
        .map(|i| {
            let sub = format!("user-{i}@{}.example", "x".repeat(i % 40));
            mint_default("HS256", &claims(&sub, SOME_IAT, FAR_EXP))
        })
        .collect();
    for batch in tokens.chunks(500) {
        for t in batch {
            conn.send(&["JWTDENY.CHECK", t.as_str()]).expect("send");
        }
        for _ in batch {
            assert_int(&conn.read().expect("read"), 1, "CHECK");
        }
    }
    assert_eq!(info_num(&server, "verify_cache_entries"), N as i64);
    let grown = used_memory(&server) - before;
    let reported = info_num(&server, "verify_cache_memory_bytes");
    eprintln!("used_memory grew {grown} bytes, the cache reports {reported}");
    assert!(
        (grown - reported).abs() * 10 <= grown,
        "used_memory grew {grown} bytes, INFO reports {reported}"
    );
    // Emptied (a rule changed), it holds no entries but keeps its blocks (a resize frees them).
    ok(
        server.config_set("jwtdeny.max-token-bytes", "8191"),
        "max-token-bytes",
    );
    assert_eq!(info_num(&server, "verify_cache_entries"), 0);
    assert!(info_num(&server, "verify_cache_memory_bytes") > 0);
    ok(
        server.config_set("jwtdeny.verify-cache-size", "100"),
        "size 100",
    );
    assert_eq!(info_num(&server, "verify_cache_memory_bytes"), 0);
}
