//! Sender-constrained tokens (issue 19): JWTDENY.CHECKDPOP verifies a DPoP proof (RFC 9449 §4.3,
//! §7.1) with the token and uses its `jti` once across every client of the primary; CHECK never
//! answers 1 for a token bound to a DPoP key, nor for one bound to a client certificate without
//! that certificate's thumbprint (RFC 8705).

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const URL: &str = "https://api.example.com/orders/7";

/// The OAuth error (second word) of a `DPOP` reply.
#[track_caller]
fn dpop_error(r: &Reply) -> String {
    assert_eq!(r.err_code(), Some("DPOP"), "{r}");
    r.error()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[track_caller]
fn assert_bad_proof(r: &Reply, rule: &str, context: &str) {
    assert_eq!(dpop_error(r), "invalid_dpop_proof", "{context}: {r}");
    assert!(
        r.error().unwrap().contains(rule),
        "{context}: {r} should name {rule}"
    );
}

/// Every record of a proof's one-time use.
fn proof_records(server: &Server) -> Vec<String> {
    server
        .keys()
        .into_iter()
        .filter(|k| k.contains("}:dpop:"))
        .collect()
}

#[test]
fn a_valid_proof_passes_once_with_each_algorithm() {
    let server = Server::with_vector_keys();
    for alg in ["ES256", "ES384", "RS256", "PS256", "EdDSA"] {
        let key = ProofKey::of(alg);
        let token = bound_token(&format!("user-{alg}"), &key.jkt);
        let claims = proof_claims(&token, "POST", URL);
        let proof = key.proof(&claims);
        assert_int(
            &checkdpop(&server, &token, &proof, "POST", URL, &[]),
            1,
            alg,
        );
        let again = checkdpop(&server, &token, &proof, "POST", URL, &[]);
        assert_bad_proof(&again, "used already", alg);
        // The record: the subject's slot, a fixed-size digest of (jkt, jti), and an absolute
        // expiry at the end of the window (iat + 60 s + 1 s).
        let id = jwtdeny_core::dpop::replay_id(&key.jkt, claims["jti"].as_str().unwrap());
        let record = format!("jwtdeny:{{user-{alg}}}:dpop:{id}");
        let iat = claims["iat"].as_i64().unwrap();
        assert_eq!(server.pexpiretime(&record), (iat + 61) * 1000, "{alg}");
        // WITHCLAIMS gives the token's payload, with its cnf.jkt (the key's thumbprint).
        let fresh = key.proof_for(&token, "POST", URL);
        let r = checkdpop(&server, &token, &fresh, "POST", URL, &["WITHCLAIMS"]);
        let items = r.array();
        assert_eq!(items[0], Reply::Int(1), "{alg}: {r}");
        let payload: Value = serde_json::from_str(&items[1].text()).unwrap();
        assert_eq!(payload["cnf"]["jkt"], key.jkt.as_str(), "{alg}");
    }
    assert_eq!(
        info_i64(&server, "jwtdeny", "jwtdeny_dpop_proofs_accepted"),
        10
    );
    assert_eq!(
        info_i64(&server, "jwtdeny", "jwtdeny_dpop_replays_refused"),
        5
    );
    assert_eq!(info_i64(&server, "jwtdeny", "jwtdeny_checks_dpop"), 5);
}

#[test]
fn each_rule_broken_alone_is_refused_and_does_not_spend_the_jti() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("ES256");
    let other = ProofKey::of("EdDSA");
    let token = bound_token("alice", &key.jkt);
    let good = proof_claims(&token, "GET", URL);
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let header_with = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        f(&mut h);
        h
    };
    let hs_secret = private_key("shared-hs256.key");
    let hs_header =
        json!({"typ":"dpop+jwt","alg":"HS256","jwk":{"kty":"oct","k": b64(&hs_secret)}});
    let mut private_jwk = jwk("shared-es256");
    private_jwk["d"] = json!("AAAA");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "typ missing",
            key.proof_with(
                &header_with(&|h| {
                    h.as_object_mut().unwrap().remove("typ");
                }),
                &good,
            ),
            "typ",
        ),
        (
            "typ JWT",
            key.proof_with(&header_with(&|h| h["typ"] = json!("JWT")), &good),
            "typ",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"typ":"dpop+jwt","alg":"none","jwk":key.jwk})
                    .to_string()
                    .as_bytes()),
                b64(good.to_string().as_bytes())
            ),
            "alg",
        ),
        (
            "alg HS256",
            sign_raw("HS256", &hs_header.to_string(), &good.to_string()),
            "alg",
        ),
        (
            "private key in jwk",
            key.proof_with(&header_with(&|h| h["jwk"] = private_jwk.clone()), &good),
            "private",
        ),
        (
            "jwk missing",
            key.proof_with(
                &header_with(&|h| {
                    h.as_object_mut().unwrap().remove("jwk");
                }),
                &good,
            ),
            "jwk",
        ),
        (
            "jwk of another key",
            key.proof_with(&header_with(&|h| h["jwk"] = jwk("shared-es384")), &good),
            "alg",
        ),
        (
            "bad signature",
            {
                let p = key.proof(&good);
                format!("{}AAAA", &p[..p.len() - 4])
            },
            "signature",
        ),
        (
            "wrong htm",
            key.proof(&with(&|c| c["htm"] = json!("POST"))),
            "htm",
        ),
        (
            "htm in lower case",
            key.proof(&with(&|c| c["htm"] = json!("get"))),
            "htm",
        ),
        (
            "another path",
            key.proof(&with(&|c| {
                c["htu"] = json!("https://api.example.com/orders/8")
            })),
            "htu",
        ),
        (
            "another host",
            key.proof(&with(&|c| {
                c["htu"] = json!("https://evil.example.com/orders/7")
            })),
            "htu",
        ),
        (
            "another scheme",
            key.proof(&with(&|c| {
                c["htu"] = json!("http://api.example.com/orders/7")
            })),
            "htu",
        ),
        (
            "another port",
            key.proof(&with(&|c| {
                c["htu"] = json!("https://api.example.com:8443/orders/7")
            })),
            "htu",
        ),
        (
            "iat too old",
            key.proof(&with(&|c| c["iat"] = json!(now() - 120))),
            "iat",
        ),
        (
            "iat too new",
            key.proof(&with(&|c| c["iat"] = json!(now() + 120))),
            "iat",
        ),
        (
            "iat missing",
            key.proof(&with(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            })),
            "iat",
        ),
        (
            "wrong ath",
            key.proof(&with(&|c| {
                c["ath"] = json!(jwtdeny_core::dpop::access_token_hash(b"another"))
            })),
            "ath",
        ),
        (
            "ath missing",
            key.proof(&with(&|c| {
                c.as_object_mut().unwrap().remove("ath");
            })),
            "ath",
        ),
        (
            "jti missing",
            key.proof(&with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })),
            "jti",
        ),
        ("another key's proof", other.proof(&good), "cnf.jkt"),
        (
            "two proofs",
            format!("{},{}", key.proof(&good), key.proof(&good)),
            "malformed",
        ),
    ];
    for (name, proof, rule) in &cases {
        let r = checkdpop(&server, &token, proof, "GET", URL, &[]);
        assert_bad_proof(&r, rule, name);
    }
    assert!(
        proof_records(&server).is_empty(),
        "a refused proof is never recorded"
    );
    // The same jti, in a proof that breaks nothing, still passes: no refusal spent it.
    assert_int(
        &checkdpop(&server, &token, &key.proof(&good), "GET", URL, &[]),
        1,
        "good",
    );
}

#[test]
fn htu_is_compared_without_query_and_fragment_after_normalisation() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("ES256");
    let token = bound_token("bob", &key.jkt);
    let pairs = [
        ("https://api.example.com/orders/7?page=2#top", URL),
        (URL, "https://api.example.com/orders/7?page=3"),
        ("HTTPS://API.Example.COM:443/orders/./x/../7", URL),
        ("https://api.example.com/%6Frders/7", URL),
        ("https://api.example.com", "https://api.example.com/"),
        (
            "https://api.example.com/a%2fb",
            "https://api.example.com/a%2Fb",
        ),
    ];
    for (htu, url) in pairs {
        let proof = key.proof(&proof_claims(&token, "GET", htu));
        assert_int(&checkdpop(&server, &token, &proof, "GET", url, &[]), 1, htu);
    }
    // A path's case and an encoded slash are not normalised away.
    for (htu, url) in [
        ("https://api.example.com/Orders/7", URL),
        (
            "https://api.example.com/a%2Fb",
            "https://api.example.com/a/b",
        ),
    ] {
        let proof = key.proof(&proof_claims(&token, "GET", htu));
        assert_bad_proof(
            &checkdpop(&server, &token, &proof, "GET", url, &[]),
            "htu",
            htu,
        );
    }
    // The URL argument itself must be an absolute http(s) URL.
    let proof = key.proof_for(&token, "GET", URL);
    for url in ["/orders/7", "ftp://api.example.com/x", "https://"] {
        assert_err(
            &checkdpop(&server, &token, &proof, "GET", url, &[]),
            "ERR",
            url,
        );
    }
    assert_err(
        &checkdpop(&server, &token, &proof, "G T", URL, &[]),
        "ERR",
        "method",
    );
}

#[test]
fn a_bound_token_is_never_a_bearer_token() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("ES256");
    let token = bound_token("carol", &key.jkt);
    let (entry, subject) = (format!("jwtdeny:{{carol}}:{}", now()), "jwtdeny:{carol}");
    let third = "jwtdeny:{carol}:nosid";
    for r in [
        server.check(&token),
        server.cmd(&["JWTDENY.CHECK", &token, "WITHCLAIMS"]),
        server.cmd(&["JWTDENY.KCHECK", &entry, subject, &token]),
        server.cmd(&["JWTDENY.KSCHECK", &entry, subject, third, &token]),
    ] {
        assert_eq!(dpop_error(&r), "invalid_token", "{r}");
        assert!(r.error().unwrap().contains("cnf.jkt"), "{r}");
    }
    let r = server.cmd(&["JWTDENY.INSPECT", &token]);
    assert_eq!(r.array()[1].text(), "DPOP", "{r}");
    // A token without cnf.jkt is a bearer token: CHECKDPOP refuses it, CHECK accepts it.
    let plain = mint_default("HS256", &json!({"sub":"carol","iat":now(),"exp":FAR_EXP}));
    let proof = key.proof_for(&plain, "GET", URL);
    assert_eq!(
        dpop_error(&checkdpop(&server, &plain, &proof, "GET", URL, &[])),
        "invalid_token"
    );
    assert_int(&server.check(&plain), 1, "bearer");
    // A confirmation method jwtdeny cannot check is refused, never ignored.
    let jwk_bound = mint_default(
        "HS256",
        &json!({"sub":"carol","iat":now(),"exp":FAR_EXP,"cnf":{"jwk":key.jwk}}),
    );
    assert_eq!(dpop_error(&server.check(&jwk_bound)), "invalid_token");
    // Token errors come first, with their own codes.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &sig[1..]);
    let proof = key.proof_for(&forged, "GET", URL);
    assert_err(
        &checkdpop(&server, &forged, &proof, "GET", URL, &[]),
        "BADSIG",
        "forged",
    );
}

#[test]
fn a_certificate_bound_token_needs_its_certificate() {
    let server = Server::with_vector_keys();
    let cert = [0x5au8; 32];
    let x5t = b64(&cert);
    let hex: String = cert.iter().map(|b| format!("{b:02x}")).collect();
    let token = mint_default(
        "HS256",
        &json!({"sub":"dave","iat":now(),"exp":FAR_EXP,"cnf":{"x5t#S256": x5t}}),
    );
    assert_eq!(dpop_error(&server.check(&token)), "invalid_token");
    assert_int(
        &server.cmd(&["JWTDENY.CHECK", &token, "CERT", &x5t]),
        1,
        "base64url",
    );
    assert_int(
        &server.cmd(&["JWTDENY.CHECK", &token, "CERT", &hex]),
        1,
        "hex",
    );
    let r = server.cmd(&["JWTDENY.CHECK", &token, "CERT", &hex, "WITHCLAIMS"]);
    assert_eq!(r.array()[0], Reply::Int(1), "{r}");
    let wrong = b64(&[0x5bu8; 32]);
    assert_eq!(
        dpop_error(&server.cmd(&["JWTDENY.CHECK", &token, "CERT", &wrong])),
        "invalid_token"
    );
    assert_err(
        &server.cmd(&["JWTDENY.CHECK", &token, "CERT", "nope"]),
        "ERR",
        "bad CERT",
    );
    assert_err(
        &server.cmd(&["JWTDENY.CHECK", &token, "CERT"]),
        "ERR",
        "CERT without value",
    );
    // A plain token does not care about a CERT given.
    let plain = mint_default("HS256", &json!({"sub":"dave","iat":now(),"exp":FAR_EXP}));
    assert_int(
        &server.cmd(&["JWTDENY.CHECK", &plain, "CERT", &x5t]),
        1,
        "plain",
    );
    // Revocation still wins.
    assert_int(&server.revoke(&token), 1, "revoke");
    assert_int(
        &server.cmd(&["JWTDENY.CHECK", &token, "CERT", &x5t]),
        0,
        "revoked",
    );
}

#[test]
fn a_revoked_token_answers_0_and_does_not_spend_the_proof() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("EdDSA");
    let token = bound_token("erin", &key.jkt);
    assert_int(&server.revoke(&token), 1, "revoke");
    let proof = key.proof_for(&token, "DELETE", URL);
    assert_int(
        &checkdpop(&server, &token, &proof, "DELETE", URL, &[]),
        0,
        "revoked",
    );
    let r = checkdpop(&server, &token, &proof, "DELETE", URL, &["WITHCLAIMS"]);
    assert_eq!(r.array(), &[Reply::Int(0), Reply::Bulk(None)], "{r}");
    assert!(proof_records(&server).is_empty());
}

#[test]
fn the_record_expires_with_the_window_and_a_flood_stays_bounded() {
    let server = Server::with_vector_keys();
    ok(server.config_set("jwtdeny.dpop-window", "1"), "window");
    let key = ProofKey::of("ES256");
    let token = bound_token("frank", &key.jkt);
    // A flood of distinct jtis, some of them huge: one fixed-size record each, each expiring
    // within the window.
    let big = "j".repeat(3000);
    for i in 0..300 {
        let mut c = proof_claims(&token, "GET", URL);
        if i % 50 == 0 {
            c["jti"] = json!(format!("{big}{i}"));
        }
        assert_int(
            &checkdpop(&server, &token, &key.proof(&c), "GET", URL, &[]),
            1,
            "flood",
        );
    }
    let records = proof_records(&server);
    assert_eq!(records.len(), 300);
    let lens: std::collections::BTreeSet<usize> = records.iter().map(String::len).collect();
    assert_eq!(lens.len(), 1, "every record has one size: {lens:?}");
    let horizon = (now() + 3) * 1000;
    for k in &records {
        let at = server.pexpiretime(k);
        assert!(at > 0 && at <= horizon, "{k} expires at {at}");
    }
    wait_until("the records to expire", Duration::from_secs(15), || {
        proof_records(&server).is_empty()
    });
    // Once the window is over a replayed proof is refused by its iat, not let through.
    let c = proof_claims(&token, "GET", URL);
    let proof = key.proof(&c);
    assert_int(
        &checkdpop(&server, &token, &proof, "GET", URL, &[]),
        1,
        "fresh",
    );
    wait_until("the window to pass", Duration::from_secs(10), || {
        now() > c["iat"].as_i64().unwrap() + 1
    });
    assert_bad_proof(
        &checkdpop(&server, &token, &proof, "GET", URL, &[]),
        "iat",
        "late replay",
    );
}

#[test]
fn the_record_replicates_as_an_effect_and_holds_after_a_failover() {
    let primary = ServerBuilder::new().vector_keys().aof().start();
    let replica = ServerBuilder::new()
        .vector_keys()
        .start_replica_of(&primary);
    let second = ServerBuilder::new()
        .vector_keys()
        .start_replica_of(&primary);
    wait_for_link(&replica);
    wait_for_link(&second);
    let key = ProofKey::of("RS256");
    let token = bound_token("grace", &key.jkt);
    let proof = key.proof_for(&token, "PUT", URL);
    assert_int(
        &checkdpop(&primary, &token, &proof, "PUT", URL, &[]),
        1,
        "primary",
    );
    let record = proof_records(&primary).pop().expect("record");
    let at = primary.pexpiretime(&record);
    for r in [&replica, &second] {
        wait_until("the record to reach the replica", ASYNC_DEADLINE, || {
            r.pexpiretime(&record) == at
        });
        // A write: a replica refuses it (route CHECKDPOP to the primary).
        let e = checkdpop(r, &token, &proof, "PUT", URL, &[]);
        assert!(e.error().unwrap_or_default().starts_with("READONLY"), "{e}");
    }
    // The AOF holds the SET with its absolute expiry, never the command.
    let aof = primary.aof_commands();
    assert!(
        aof.iter().any(|c| c[0].eq_ignore_ascii_case("SET")
            && c[1] == record
            && c.iter().any(|a| a.eq_ignore_ascii_case("PXAT"))),
        "{aof:?}"
    );
    assert!(
        !aof.iter()
            .any(|c| c[0].to_ascii_uppercase().starts_with("JWTDENY")),
        "{aof:?}"
    );
    // Failover: the promoted replica refuses the replay too.
    ok(replica.cmd(&["REPLICAOF", "NO", "ONE"]), "promote");
    assert_bad_proof(
        &checkdpop(&replica, &token, &proof, "PUT", URL, &[]),
        "used already",
        "after failover",
    );
    assert_bad_proof(
        &checkdpop(&primary, &token, &proof, "PUT", URL, &[]),
        "used already",
        "old primary",
    );
}

#[test]
fn multi_and_lua_record_the_proof_in_the_same_step() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("ES256");
    let token = bound_token("heidi", &key.jkt);
    let proof = key.proof_for(&token, "GET", URL);
    let mut c = server.conn();
    ok(c.cmd(&["MULTI"]), "multi");
    for _ in 0..2 {
        c.cmd(&["JWTDENY.CHECKDPOP", &token, &proof, "GET", URL]);
    }
    let r = c.cmd(&["EXEC"]);
    let items = r.array();
    assert_eq!(items[0], Reply::Int(1), "{r}");
    assert_bad_proof(&items[1], "used already", "second in MULTI");
    let proof = key.proof_for(&token, "GET", URL);
    let script = "local a = redis.call('JWTDENY.CHECKDPOP', KEYS[1], ARGV[1], 'GET', ARGV[2]) \
                  local ok, b = pcall(redis.call, 'JWTDENY.CHECKDPOP', KEYS[1], ARGV[1], 'GET', ARGV[2]) \
                  return {a, type(b) == 'table' and b['err'] or tostring(b)}";
    let r = server.cmd(&["EVAL", script, "1", &token, &proof, URL]);
    let items = r.array();
    assert_eq!(items[0], Reply::Int(1), "{r}");
    assert!(
        items[1].text().starts_with("DPOP invalid_dpop_proof"),
        "{r}"
    );
}

#[test]
fn with_workers_every_reply_is_its_own_and_replays_are_refused() {
    for cache in ["131072", "0"] {
        let server = ServerBuilder::new()
            .vector_keys()
            .conf("jwtdeny.workers 2")
            .conf(format!("jwtdeny.verify-cache-size {cache}"))
            .start();
        let (a, b) = (ProofKey::of("ES256"), ProofKey::of("EdDSA"));
        let (ta, tb) = (bound_token("ivan", &a.jkt), bound_token("judy", &b.jkt));
        let pa = a.proof_for(&ta, "GET", URL);
        let pb = b.proof_for(&tb, "GET", URL);
        let wrong = a.proof_for(&tb, "GET", URL);
        let mut c = server.conn();
        for (t, p) in [
            (&ta, &pa),
            (&ta, &pa),
            (&tb, &pb),
            (&tb, &wrong),
            (&tb, &pb),
        ] {
            c.queue(&["JWTDENY.CHECKDPOP", t, p, "GET", URL, "WITHCLAIMS"]);
        }
        c.queue(&["PING"]);
        c.flush().unwrap();
        let replies: Vec<Reply> = (0..6).map(|_| c.read().unwrap()).collect();
        let sub = |r: &Reply| {
            let v: Value = serde_json::from_str(&r.array()[1].text()).unwrap();
            v["sub"].as_str().unwrap().to_string()
        };
        assert_eq!(sub(&replies[0]), "ivan", "cache {cache}");
        assert_bad_proof(&replies[1], "used already", "replay a");
        assert_eq!(sub(&replies[2]), "judy", "cache {cache}");
        assert_bad_proof(&replies[3], "cnf.jkt", "a's proof for b's token");
        assert_bad_proof(&replies[4], "used already", "replay b");
        assert_eq!(replies[5].text(), "PONG");
        assert!(
            info_i64(&server, "jwtdeny", "jwtdeny_verifications_offloaded") > 0,
            "cache {cache}"
        );
        assert_eq!(info_i64(&server, "clients", "blocked_clients"), 0);
    }
}

#[test]
fn server_nonces_are_required_when_configured() {
    let secret = "s".repeat(40);
    let one = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.dpop-nonce yes")
        .conf(format!("jwtdeny.dpop-nonce-secret {secret}"))
        .start();
    let other = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.dpop-nonce yes")
        .conf(format!("jwtdeny.dpop-nonce-secret {secret}"))
        .start();
    let stranger = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.dpop-nonce yes")
        .start();
    let key = ProofKey::of("ES256");
    let token = bound_token("kim", &key.jkt);
    let r = checkdpop(
        &one,
        &token,
        &key.proof_for(&token, "GET", URL),
        "GET",
        URL,
        &[],
    );
    assert_eq!(dpop_error(&r), "use_dpop_nonce", "{r}");
    let nonce = r.error().unwrap().split(' ').nth(2).unwrap().to_string();
    assert_eq!(nonce, one.cmd(&["JWTDENY.DPOPNONCE"]).text());
    let with_nonce = |nonce: &str| {
        let mut c = proof_claims(&token, "GET", URL);
        c["nonce"] = json!(nonce);
        key.proof(&c)
    };
    assert_int(
        &checkdpop(&one, &token, &with_nonce(&nonce), "GET", URL, &[]),
        1,
        "nonce",
    );
    // Another server with the same secret accepts it; one with its own secret asks for its own.
    assert_int(
        &checkdpop(&other, &token, &with_nonce(&nonce), "GET", URL, &[]),
        1,
        "same secret",
    );
    let r = checkdpop(&stranger, &token, &with_nonce(&nonce), "GET", URL, &[]);
    assert_eq!(dpop_error(&r), "use_dpop_nonce", "{r}");
    let r = checkdpop(&one, &token, &with_nonce("made-up"), "GET", URL, &[]);
    assert_eq!(dpop_error(&r), "use_dpop_nonce", "{r}");
    // Off by default: a nonce is then neither required nor judged.
    let plain = Server::with_vector_keys();
    assert_int(
        &checkdpop(
            &plain,
            &token,
            &key.proof_for(&token, "GET", URL),
            "GET",
            URL,
            &[],
        ),
        1,
        "off",
    );
    assert_err(
        &one.config_set("jwtdeny.dpop-nonce-secret", "short"),
        "ERR",
        "short secret",
    );
}

#[test]
fn the_algorithm_allowlist_is_a_config() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("RS256");
    let token = bound_token("liam", &key.jkt);
    ok(
        server.config_set("jwtdeny.dpop-algorithms", "ES256,EdDSA"),
        "set",
    );
    assert_bad_proof(
        &checkdpop(
            &server,
            &token,
            &key.proof_for(&token, "GET", URL),
            "GET",
            URL,
            &[],
        ),
        "dpop-algorithms",
        "RS256",
    );
    ok(server.config_set("jwtdeny.dpop-algorithms", "RS256"), "set");
    assert_int(
        &checkdpop(
            &server,
            &token,
            &key.proof_for(&token, "GET", URL),
            "GET",
            URL,
            &[],
        ),
        1,
        "RS256",
    );
    for bad in ["HS256", "", "none", "ES256,HS512"] {
        assert!(
            server.config_set("jwtdeny.dpop-algorithms", bad).is_error(),
            "{bad}"
        );
    }
    assert_eq!(server.config_get("jwtdeny.dpop-algorithms"), "RS256");
}

#[test]
fn the_keyed_form_declares_the_proof_record_with_the_token_keys() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("ES256");
    let token = bound_token("mia", &key.jkt);
    let iat = token_iat(&token);
    let claims = proof_claims(&token, "GET", URL);
    let proof = key.proof(&claims);
    let record = jwtdeny_core::keyscheme::proof_key(
        "jwtdeny:",
        "mia",
        &jwtdeny_core::dpop::replay_id(&key.jkt, claims["jti"].as_str().unwrap()),
    );
    let entry = format!("jwtdeny:{{mia}}:{iat}");
    let keys = [entry.as_str(), "jwtdeny:{mia}", "jwtdeny:{mia}:nosid"];
    let kcheck = |record: &str, proof: &str| {
        let mut args = vec!["JWTDENY.KCHECKDPOP"];
        args.extend_from_slice(&keys);
        args.extend_from_slice(&[record, &token, proof, "GET", URL]);
        server.cmd(&args)
    };
    assert_err(
        &kcheck("jwtdeny:{mia}:dpop:other", &proof),
        "ERR",
        "wrong record key",
    );
    assert!(proof_records(&server).is_empty());
    assert_int(&kcheck(&record, &proof), 1, "keyed");
    assert_bad_proof(&kcheck(&record, &proof), "used already", "keyed replay");
    // COMMAND GETKEYS names all four.
    let r = server.cmd(&[
        "COMMAND",
        "GETKEYS",
        "JWTDENY.KCHECKDPOP",
        keys[0],
        keys[1],
        keys[2],
        &record,
        &token,
        &proof,
        "GET",
        URL,
    ]);
    assert_eq!(r.array().len(), 4, "{r}");
}

fn token_iat(token: &str) -> i64 {
    let payload: Value =
        serde_json::from_slice(&b64_decode(token.split('.').nth(1).unwrap())).unwrap();
    payload["iat"].as_i64().unwrap()
}

#[test]
fn acl_key_patterns_cover_the_proof_record() {
    let server = Server::with_vector_keys();
    let key = ProofKey::of("ES256");
    let token = bound_token("nina", &key.jkt);
    let iat = token_iat(&token);
    let (entry, subject, third) = (
        format!("jwtdeny:{{nina}}:{iat}"),
        "jwtdeny:{nina}".to_string(),
        "jwtdeny:{nina}:nosid".to_string(),
    );
    let kcheck = |c: &mut Conn| {
        let claims = proof_claims(&token, "GET", URL);
        let record = jwtdeny_core::keyscheme::proof_key(
            "jwtdeny:",
            "nina",
            &jwtdeny_core::dpop::replay_id(&key.jkt, claims["jti"].as_str().unwrap()),
        );
        let proof = key.proof(&claims);
        c.cmd(&[
            "JWTDENY.KCHECKDPOP",
            &entry,
            &subject,
            &third,
            &record,
            &token,
            &proof,
            "GET",
            URL,
        ])
    };
    // Read access to the token's keys is not enough: the record is written.
    for (user, patterns, allowed) in [
        ("reader", vec!["%R~jwtdeny:*"], false),
        ("dpop", vec!["%R~jwtdeny:*", "%W~jwtdeny:*:dpop:*"], true),
    ] {
        let mut args = vec![
            "ACL",
            "SETUSER",
            user,
            "on",
            "nopass",
            "+jwtdeny.kcheckdpop",
        ];
        args.extend(patterns);
        ok(server.cmd(&args), "ACL SETUSER");
        let mut c = server.conn();
        ok(c.cmd(&["AUTH", user, "x"]), "AUTH");
        let r = kcheck(&mut c);
        if allowed {
            assert_int(&r, 1, user);
        } else {
            assert_err(&r, "NOPERM", user);
        }
    }
}

#[test]
fn the_window_may_be_lowered_but_not_raised_at_runtime() {
    let server = Server::with_vector_keys();
    ok(server.config_set("jwtdeny.dpop-window", "30"), "lower");
    let r = server.config_set("jwtdeny.dpop-window", "31");
    assert!(r.error().unwrap_or_default().contains("raising"), "{r}");
    assert_eq!(server.config_get("jwtdeny.dpop-window"), "30");
}
