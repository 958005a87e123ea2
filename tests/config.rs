//! Module configs: defaults, bad values refused with the config's name, the three ways of
//! loading them, the immutable prefix, and a keys file that is bad at startup.

use crate::common;

use common::*;
use std::fs;

#[test]
fn defaults() {
    let server = ServerBuilder::new().start();
    let expected = [
        ("jwtdeny.keys-file", ""),
        ("jwtdeny.algorithms", ""),
        ("jwtdeny.issuer", ""),
        ("jwtdeny.audience", ""),
        ("jwtdeny.leeway", "0"),
        ("jwtdeny.prefix", "jwtdeny:"),
        ("jwtdeny.db", "0"),
        ("jwtdeny.max-token-bytes", "8192"),
        ("jwtdeny.max-lifetime", "0"),
    ];
    for (name, value) in expected {
        assert_eq!(server.config_get(name), value, "default of {name}");
    }
    // The pattern lists them too (later features add configs of their own).
    let all = server.cmd(&["CONFIG", "GET", "jwtdeny.*"]);
    let listed: Vec<String> = all.array().iter().step_by(2).map(Reply::text).collect();
    for (name, _) in expected {
        assert!(
            listed.iter().any(|n| n == name),
            "CONFIG GET jwtdeny.* lacks {name}: {all}"
        );
    }
}

#[test]
fn bad_values_are_refused_naming_the_config() {
    let server = Server::with_vector_keys();
    let cases = [
        ("jwtdeny.leeway", "-1"),
        ("jwtdeny.leeway", "abc"),
        ("jwtdeny.leeway", "3601"),
        ("jwtdeny.leeway", "1.5"),
        ("jwtdeny.algorithms", "none"),
        ("jwtdeny.algorithms", "HS999"),
        ("jwtdeny.algorithms", "HS256,none"),
        ("jwtdeny.algorithms", "HS256,HS999"),
        ("jwtdeny.max-token-bytes", "0"),
        ("jwtdeny.max-token-bytes", "127"),
        ("jwtdeny.max-token-bytes", "1048577"),
        ("jwtdeny.max-token-bytes", "abc"),
        ("jwtdeny.prefix", "other:"),
        ("jwtdeny.db", "1"),
        ("jwtdeny.db", "-1"),
        ("jwtdeny.keys-file", "/nonexistent/jwtdeny/keys.json"),
    ];
    for (name, value) in cases {
        let before = server.config_get(name);
        let r = server.config_set(name, value);
        let text = r
            .error()
            .unwrap_or_else(|| panic!("CONFIG SET {name} {value:?} accepted: {r}"));
        assert!(
            text.contains(name),
            "CONFIG SET {name} {value:?}: the error does not name the config: {r}"
        );
        assert_eq!(
            server.config_get(name),
            before,
            "CONFIG SET {name} {value:?} was refused but changed the value"
        );
    }
    // Nothing of that changed behaviour.
    for v in vectors().into_iter().filter(|v| v.expect == "active") {
        assert_int(&server.check(&v.token), 1, &v.name);
    }
}

#[test]
fn good_values_are_accepted_at_runtime() {
    let server = Server::with_vector_keys();
    let cases = [
        ("jwtdeny.leeway", "0"),
        ("jwtdeny.leeway", "3600"),
        ("jwtdeny.algorithms", "HS256,RS256,PS512,ES384,EdDSA"),
        ("jwtdeny.algorithms", ""),
        ("jwtdeny.max-token-bytes", "128"),
        ("jwtdeny.max-token-bytes", "1048576"),
        ("jwtdeny.issuer", "https://issuer.example"),
        ("jwtdeny.audience", "api"),
    ];
    for (name, value) in cases {
        ok(
            server.config_set(name, value),
            &format!("CONFIG SET {name} {value}"),
        );
        let got = server.config_get(name);
        if name == "jwtdeny.algorithms" {
            assert_eq!(alg_set(&got), alg_set(value), "{name} after CONFIG SET");
        } else {
            assert_eq!(got, value, "{name} after CONFIG SET");
        }
    }
}

#[test]
fn prefix_is_set_at_load_time_and_immutable() {
    let server = ServerBuilder::new()
        .vector_keys()
        .module_args(&["prefix", "app1:"])
        .start();
    assert_eq!(server.config_get("jwtdeny.prefix"), "app1:");
    let v = vector("valid-HS512");
    assert_int(&server.revoke(&v.token), 1, "REVOKE");
    let key = format!("app1:{{{}}}:{}", v.sub.as_deref().unwrap(), v.iat.unwrap());
    assert_eq!(server.keys(), vec![key.clone()]);
    assert_eq!(server.pexpiretime(&key), FAR_EXP * 1000);

    let r = server.config_set("jwtdeny.prefix", "jwtdeny:");
    assert!(
        r.error().is_some_and(|e| e.contains("jwtdeny.prefix")),
        "runtime prefix change: {r}"
    );
    assert_eq!(server.config_get("jwtdeny.prefix"), "app1:");
    assert_int(
        &server.check(&v.token),
        0,
        "still revoked under the load-time prefix",
    );
}

#[test]
fn bad_prefixes_refuse_to_load() {
    for prefix in ["", "a{b", "a}b"] {
        let log = ServerBuilder::new()
            .vector_keys()
            .module_args(&["prefix", prefix])
            .start_expect_failure();
        assert!(
            log.contains("prefix"),
            "prefix {prefix:?}: log does not name it:\n{log}"
        );
    }
}

/// The three ways of giving configs all work, and give the same result.
#[test]
fn configs_from_conf_file_lines() {
    let keys = jwks_path();
    let server = ServerBuilder::new()
        .keys_file(&keys)
        .conf("jwtdeny.leeway 7")
        .conf("jwtdeny.algorithms RS256,HS256")
        .conf("jwtdeny.max-token-bytes 4096")
        .start();
    assert_loaded_configs(&server, &keys.to_string_lossy());
}

#[test]
fn configs_from_loadmodule_arguments() {
    let keys = jwks_path();
    let keys = keys.to_string_lossy();
    let server = ServerBuilder::new()
        .module_args(&[
            "keys-file",
            &keys,
            "leeway",
            "7",
            // Names may carry the jwtdeny. prefix too.
            "jwtdeny.algorithms",
            "RS256,HS256",
            "max-token-bytes",
            "4096",
        ])
        .start();
    assert_loaded_configs(&server, &keys);
}

#[test]
fn configs_from_module_loadex() {
    let keys = jwks_path();
    let keys = keys.to_string_lossy();
    let server = ServerBuilder::new().without_module().start();
    let so = module_path();
    let so = so.to_string_lossy();
    assert_eq!(server.cmd(&["MODULE", "LIST"]), Reply::Array(Some(vec![])));

    // A bad value makes LOADEX fail and leaves nothing loaded.
    let r = server.cmd(&["MODULE", "LOADEX", &so, "CONFIG", "jwtdeny.leeway", "abc"]);
    assert!(r.is_error(), "LOADEX with leeway abc: {r}");
    assert_eq!(server.cmd(&["MODULE", "LIST"]), Reply::Array(Some(vec![])));

    ok(
        server.cmd(&[
            "MODULE",
            "LOADEX",
            &so,
            "CONFIG",
            "jwtdeny.keys-file",
            &keys,
            "CONFIG",
            "jwtdeny.leeway",
            "7",
            "CONFIG",
            "jwtdeny.algorithms",
            "RS256,HS256",
            "CONFIG",
            "jwtdeny.max-token-bytes",
            "4096",
        ]),
        "MODULE LOADEX with configs",
    );
    assert_loaded_configs(&server, &keys);
}

fn alg_set(list: &str) -> std::collections::BTreeSet<String> {
    list.split(',').map(|s| s.trim().to_string()).collect()
}

fn assert_loaded_configs(server: &Server, keys: &str) {
    let list = server.cmd(&["MODULE", "LIST"]);
    let modules = list.array();
    assert_eq!(modules.len(), 1, "MODULE LIST: {list}");
    let fields = modules[0].array();
    assert_eq!(fields[0].text(), "name", "MODULE LIST: {list}");
    assert_eq!(fields[1].text(), "jwtdeny", "MODULE LIST: {list}");

    assert_eq!(server.config_get("jwtdeny.keys-file"), keys);
    assert_eq!(server.config_get("jwtdeny.leeway"), "7");
    // The list may come back normalised (order, spacing): compare it as a set.
    assert_eq!(
        alg_set(&server.config_get("jwtdeny.algorithms")),
        alg_set("RS256,HS256")
    );
    assert_eq!(server.config_get("jwtdeny.max-token-bytes"), "4096");

    assert_int(
        &server.check(vector("valid-HS256").token),
        1,
        "HS256 (allowed)",
    );
    assert_int(
        &server.check(vector("valid-RS256").token),
        1,
        "RS256 (allowed)",
    );
    assert_err(
        &server.check(vector("valid-ES256").token),
        "BADALG",
        "ES256 (not allowed)",
    );
    let v = vector("valid-RS256");
    assert_int(&server.revoke(&v.token), 1, "REVOKE");
    let key = deny_key(v.sub.as_deref().unwrap(), v.iat.unwrap());
    assert_eq!(
        server.pexpiretime(&key),
        (FAR_EXP + 7) * 1000,
        "leeway 7 in the expiry"
    );
}

#[test]
fn bad_loadmodule_arguments_refuse_to_load_and_say_why() {
    let keys = jwks_path();
    let keys = keys.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 4] = [
        (&["bogus", "1"], "bogus"),
        (&["leeway", "abc"], "leeway"),
        // An odd number of arguments: a name without a value.
        (&["keys-file", &keys, "leeway"], "jwtdeny"),
        (&["algorithms", "none"], "algorithms"),
    ];
    for (args, named) in cases {
        let log = ServerBuilder::new()
            .module_args(args)
            .start_expect_failure();
        assert!(
            log.contains(named),
            "loadmodule {args:?}: the log does not name {named:?}:\n{log}"
        );
    }
}

#[test]
fn bad_conf_file_value_refuses_to_start() {
    let log = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.leeway -5")
        .start_expect_failure();
    assert!(
        log.contains("jwtdeny.leeway"),
        "log does not name jwtdeny.leeway:\n{log}"
    );
}

/// A keys file that cannot be used at startup: Redis starts, logs why at warning level, and
/// fails closed (NOKEY) until a good file is loaded.
#[test]
fn unusable_keys_file_at_startup_fails_closed() {
    let dir = TempDir::new("badkeys");
    let corrupt = dir.path().join("corrupt-keys.json");
    fs::write(&corrupt, "{\"keys\": [").unwrap();
    let short_secret = dir.path().join("short-secret-keys.json");
    // One good key and one HS256 secret shorter than 32 bytes: the whole file is refused.
    write_jwks(
        &short_secret,
        &[
            jwk("shared-es256"),
            serde_json::json!({"kty": "oct", "kid": "short", "alg": "HS256", "k": b64(b"sixteen-bytes-ok")}),
        ],
    );
    let missing = dir.path().join("missing-keys.json");
    let a_directory = dir.path().to_path_buf();

    for path in [&missing, &corrupt, &short_secret, &a_directory] {
        let server = ServerBuilder::new().keys_file(path).start();
        for v in vectors().into_iter().filter(|v| v.expect == "active") {
            assert_refused(
                &server,
                &v.token,
                "NOKEY",
                &format!("{}: {}", path.display(), v.name),
            );
        }
        assert_eq!(server.keys(), Vec::<String>::new());

        // Redis marks warning-level lines with `#`; modules' lines start with `<name>`.
        wait_until("a warning about the keys file", ASYNC_DEADLINE, || {
            server.log().lines().any(|l| {
                let l = l.to_ascii_lowercase();
                l.contains(" # <jwtdeny> ") && (l.contains("keys file") || l.contains("keys-file"))
            })
        });

        // Loading a good file at runtime recovers.
        ok(
            server.config_set("jwtdeny.keys-file", &jwks_path().to_string_lossy()),
            "CONFIG SET keys-file to a good file",
        );
        assert_int(
            &server.check(vector("valid-ES256").token),
            1,
            "after loading a good file",
        );
    }
}

#[test]
fn no_keys_file_means_nokey() {
    let server = ServerBuilder::new().start();
    assert_refused(
        &server,
        vector("valid-HS256").token,
        "NOKEY",
        "without keys file",
    );
    assert_err(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        "ERR",
        "RELOAD without keys file",
    );
}

/// Issue 17 §1.5: `jwtdeny.token-typ`. Empty (the default) takes any `typ` but another kind of
/// JWT's; `at+jwt` is RFC 9068's strict check. A change empties the verification cache, so a
/// token cached under the lax rule is judged by the strict one at once.
#[test]
fn token_typ_at_jwt_requires_rfc_9068_access_tokens() {
    let server = Server::with_vector_keys();
    assert_eq!(server.config_get("jwtdeny.token-typ"), "");
    let claims = r#"{"sub":"t","iat":1767225600,"exp":4102444800}"#;
    let typed = |typ: &str| {
        sign_raw(
            "ES256",
            &format!(r#"{{"alg":"ES256","kid":"shared-es256","typ":"{typ}"}}"#),
            claims,
        )
    };
    let plain = typed("JWT");
    let at = typed("at+jwt");
    let at_long = typed("application/AT+JWT");
    assert_int(&server.check(&plain), 1, "typ JWT, lax");
    assert_int(&server.check(&at), 1, "typ at+jwt, lax");
    for bad in ["JWT", "logout+jwt", "nonsense"] {
        let r = server.config_set("jwtdeny.token-typ", bad);
        assert!(
            r.error().is_some_and(|e| e.contains("jwtdeny.token-typ")),
            "{bad}: {r}"
        );
    }
    ok(
        server.config_set("jwtdeny.token-typ", "application/at+jwt"),
        "set",
    );
    assert_eq!(server.config_get("jwtdeny.token-typ"), "at+jwt");
    assert_err(
        &server.check(&plain),
        "BADCLAIMS",
        "typ JWT, strict (was cached)",
    );
    assert_int(&server.check(&at), 1, "typ at+jwt, strict");
    assert_int(&server.check(&at_long), 1, "application/at+jwt, strict");
    ok(server.config_set("jwtdeny.token-typ", ""), "back to lax");
    assert_int(&server.check(&plain), 1, "typ JWT, lax again");
}

/// Issue 17 §1.12: `jwtdeny.jwks-uri` may carry credentials (userinfo, query): INFO and the log
/// redact them, and the config is registered sensitive (REDISMODULE_CONFIG_SENSITIVE) for the
/// servers that redact such module configs from SLOWLOG and MONITOR. Redis 7.0.15 and Valkey
/// 8.1 do not (observed: they redact `requirepass`, not a module's sensitive config), so that
/// part is not asserted here.
#[test]
fn the_jwks_uri_shows_its_credentials_only_to_config_get() {
    let server = ServerBuilder::new().start();
    let uri = "https://user:s3cret@127.0.0.1:1/jwks.json?token=t0psecret";
    ok(server.config_set("jwtdeny.jwks-uri", uri), "CONFIG SET");
    // The fetch fails (nothing listens on port 1) and says so in the log and INFO.
    wait_until("a failed fetch", ASYNC_DEADLINE, || {
        info_field(&server, "jwtdeny", "jwtdeny_jwks_fetches_failed") != "0"
    });
    let info = server.cmd(&["INFO", "jwtdeny"]).text();
    assert!(
        info.contains("jwtdeny_jwks_uri:https://127.0.0.1:1/jwks.json"),
        "{info}"
    );
    for secret in ["s3cret", "t0psecret"] {
        assert!(!info.contains(secret), "INFO shows {secret}");
        assert!(!server.log().contains(secret), "the log shows {secret}");
    }
    // CONFIG GET still gives it whole: the operator's own value.
    assert_eq!(server.config_get("jwtdeny.jwks-uri"), uri);
}

/// Issue 17 §1.12: RFC 9864's fully-specified `Ed25519`, as current providers send it in the
/// header and the JWK, is EdDSA over Ed25519; `Ed448` is refused as unsupported.
#[test]
fn ed25519_is_accepted_by_its_fully_specified_name() {
    let server = Server::with_vector_keys();
    let claims = r#"{"sub":"ed","iat":1767225600,"exp":4102444800}"#;
    let t = sign_raw(
        "EdDSA",
        r#"{"alg":"Ed25519","kid":"shared-ed25519"}"#,
        claims,
    );
    assert_int(&server.check(&t), 1, "alg Ed25519");
    ok(
        server.config_set("jwtdeny.algorithms", "ES256,Ed25519"),
        "allowlist",
    );
    assert_eq!(server.config_get("jwtdeny.algorithms"), "ES256,EdDSA");
    assert_int(&server.check(&t), 1, "alg Ed25519, allowed as EdDSA");
    let ed448 = sign_raw("EdDSA", r#"{"alg":"Ed448","kid":"shared-ed25519"}"#, claims);
    assert_err(&server.check(&ed448), "BADALG", "Ed448");
}
