//! The worker pool (`jwtdeny.workers`, issue 4 §4): with workers, an uncached CHECK is verified
//! off the main thread and answered by the reply callback. Every answer must be the one the
//! inline path gives, including inside MULTI and Lua (where it runs inline), for keyed forms,
//! and across a key rotation while verifications are queued.

mod common;
mod support;

use common::*;
use std::fs;
use support::*;

/// A server with `n` workers and the cache off, so every CHECK goes to a worker.
fn server(n: &str) -> Server {
    let server = ServerBuilder::new()
        .vector_keys()
        .module_args(&["workers", n, "verify-cache-size", "0"])
        .start();
    assert_eq!(server.config_get("jwtdeny.workers"), n);
    server
}

#[test]
fn workers_answer_exactly_as_inline() {
    let pooled = server("2");
    let inline = ServerBuilder::new()
        .vector_keys()
        .module_args(&["verify-cache-size", "0"])
        .start();
    let active = mint_default("ES256", &claims("w-active", SOME_IAT, FAR_EXP));
    let revoked = mint_default("RS256", &claims("w-revoked", SOME_IAT, FAR_EXP));
    let expired = mint_default("EdDSA", &claims("w-expired", SOME_IAT, now() - 10));
    let (signed, _) = active.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", b64(&[7u8; 64]));
    for s in [&pooled, &inline] {
        assert_int(&s.revoke(&revoked), 1, "REVOKE");
    }
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![b"JWTDENY.CHECK".to_vec(), active.clone().into_bytes()],
        vec![b"JWTDENY.CHECK".to_vec(), revoked.clone().into_bytes()],
        vec![b"JWTDENY.CHECK".to_vec(), expired.clone().into_bytes()],
        vec![b"JWTDENY.CHECK".to_vec(), forged.clone().into_bytes()],
        vec![b"JWTDENY.CHECK".to_vec(), b"not.a.token".to_vec()],
        vec![
            b"JWTDENY.CHECK".to_vec(),
            active.clone().into_bytes(),
            b"WITHCLAIMS".to_vec(),
        ],
        vec![
            b"JWTDENY.CHECK".to_vec(),
            revoked.clone().into_bytes(),
            b"withclaims".to_vec(),
        ],
        vec![
            b"JWTDENY.KCHECK".to_vec(),
            deny_key("w-active", SOME_IAT).into_bytes(),
            b"jwtdeny:{w-active}".to_vec(),
            active.clone().into_bytes(),
        ],
        vec![
            b"JWTDENY.KCHECK".to_vec(),
            deny_key("w-revoked", SOME_IAT).into_bytes(),
            b"jwtdeny:{w-revoked}".to_vec(),
            revoked.clone().into_bytes(),
            b"WITHCLAIMS".to_vec(),
        ],
        vec![
            b"JWTDENY.KCHECK".to_vec(),
            b"jwtdeny:{someone-else}:1".to_vec(),
            b"jwtdeny:{someone-else}".to_vec(),
            active.clone().into_bytes(),
        ],
    ];
    for case in &cases {
        let p = pooled.cmd(case);
        let i = inline.cmd(case);
        assert_eq!(
            p,
            i,
            "{} {:?}",
            String::from_utf8_lossy(&case[0]),
            String::from_utf8_lossy(&case[case.len() - 1])
        );
    }
    assert_int(&pooled.check(&active), 1, "sanity: active");
    assert_int(&pooled.check(&revoked), 0, "sanity: revoked");
    assert_eq!(pooled.check(&expired).err_code(), Some("EXPIRED"));
}

#[test]
fn pipelined_checks_from_many_clients_all_get_their_own_answer() {
    let server = server("2");
    let tokens: Vec<(String, i64)> = (0..40)
        .map(|i| {
            let t = mint_default(
                ["ES256", "RS256", "EdDSA", "HS256"][i % 4],
                &claims(&format!("w-{i}"), SOME_IAT, FAR_EXP),
            );
            (t, if i % 3 == 0 { 0 } else { 1 })
        })
        .collect();
    for (t, want) in &tokens {
        if *want == 0 {
            assert_int(&server.revoke(t), 1, "REVOKE");
        }
    }
    let handles: Vec<_> = (0..4)
        .map(|c| {
            let port = server.port;
            let tokens = tokens.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::connect(port).expect("connect");
                for round in 0..5 {
                    for (t, _) in &tokens {
                        conn.send(&["JWTDENY.CHECK", t.as_str()]).expect("send");
                    }
                    for (i, (_, want)) in tokens.iter().enumerate() {
                        let reply = conn.read().expect("read");
                        assert_int(
                            &reply,
                            *want,
                            &format!("client {c} round {round} token {i}"),
                        );
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(server.cmd(&["PING"]).text(), "PONG");
}

#[test]
fn multi_and_lua_verify_inline() {
    let server = server("2");
    let t = mint_default("ES256", &claims("w-multi", SOME_IAT, FAR_EXP));
    let mut conn = server.conn();
    assert_eq!(conn.cmd(&["MULTI"]).text(), "OK");
    assert_eq!(conn.cmd(&["JWTDENY.CHECK", t.as_str()]).text(), "QUEUED");
    assert_eq!(conn.cmd(&["JWTDENY.REVOKE", t.as_str()]).text(), "QUEUED");
    assert_eq!(conn.cmd(&["JWTDENY.CHECK", t.as_str()]).text(), "QUEUED");
    let exec = conn.cmd(&["EXEC"]);
    let replies: Vec<i64> = exec.array().iter().map(Reply::int).collect();
    assert_eq!(replies, [1, 1, 0], "CHECK, REVOKE, CHECK inside MULTI");
    let lua = server.cmd(&[
        "EVAL",
        "return redis.call('JWTDENY.CHECK', ARGV[1])",
        "0",
        t.as_str(),
    ]);
    assert_int(&lua, 0, "CHECK from Lua");
}

#[test]
fn a_rotation_while_queued_judges_by_the_new_keys() {
    let server = ServerBuilder::new()
        .module_args(&["workers", "1", "verify-cache-size", "0"])
        .own_vector_keys("jwks.json")
        .start();
    let path = server.dir().join("jwks.json");
    let t = mint_default("ES256", &claims("w-rotate", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, "before rotation");
    // Queue many verifications, rotate the key out in the same pipeline, then check again:
    // every CHECK after the RELOAD must see the new key set.
    let keys: Vec<_> = jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] != "shared-es256")
        .cloned()
        .collect();
    fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).expect("write jwks");
    let mut conn = server.conn();
    for _ in 0..50 {
        conn.send(&["JWTDENY.CHECK", t.as_str()]).expect("send");
    }
    conn.send(&["JWTDENY.KEYS", "RELOAD"]).expect("send");
    for _ in 0..50 {
        conn.send(&["JWTDENY.CHECK", t.as_str()]).expect("send");
    }
    let before: Vec<Reply> = (0..50).map(|_| conn.read().expect("read")).collect();
    assert_int(&conn.read().expect("read"), 6, "RELOAD");
    for (i, r) in before.iter().enumerate() {
        // Queued before the reload: judged by the old keys or, if still queued, the new ones.
        assert!(
            r == &Reply::Int(1) || r.err_code() == Some("NOKEY"),
            "CHECK {i} before RELOAD: {r:?}"
        );
    }
    for i in 0..50 {
        let r = conn.read().expect("read");
        assert_eq!(r.err_code(), Some("NOKEY"), "CHECK {i} after RELOAD: {r:?}");
    }
}

#[test]
fn workers_can_be_resized_and_stopped_at_runtime() {
    let server = server("1");
    let t = mint_default("EdDSA", &claims("w-resize", SOME_IAT, FAR_EXP));
    for n in ["4", "0", "2", "0"] {
        assert_eq!(server.config_set("jwtdeny.workers", n).text(), "OK");
        assert_int(&server.check(&t), 1, &format!("workers {n}"));
    }
    assert!(server.config_set("jwtdeny.workers", "65").is_error());
    assert!(server.config_set("jwtdeny.workers", "-1").is_error());
    assert_eq!(info_num(&server, "checks_active"), 4);
}
