//! The worker pool (`jwtdeny.workers`, issue 4 §4): with workers, an uncached CHECK is verified
//! off the main thread and answered by the reply callback. Every answer must be the one the
//! inline path gives, including inside MULTI and Lua (where it runs inline), for keyed forms,
//! and across a key rotation while verifications are queued. Every test proves which path ran
//! by INFO's `verifications_offloaded` / `verifications_inline`; the threads themselves are
//! counted in /proc.

use crate::common;
use crate::support;

use common::*;
use std::fs;
use std::time::Duration;
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

/// CHECK verifications so far: (done by a worker, done on the main thread).
fn verifications(server: &Server) -> (i64, i64) {
    let m = info(server);
    let n = |f: &str| -> i64 {
        m.get(f)
            .unwrap_or_else(|| panic!("INFO jwtdeny has no {f}: {m:?}"))
            .parse()
            .expect("a number")
    };
    (n("verifications_offloaded"), n("verifications_inline"))
}

/// The `name:value` field of an INFO text.
fn info_field(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in INFO:\n{text}"))
        .parse()
        .expect("a number")
}

/// The server's worker threads, by the name they were given (the kernel keeps 15 bytes of it).
fn worker_threads(server: &Server) -> usize {
    let pid = info_field(&server.cmd(&["INFO", "server"]).text(), "process_id");
    fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read /proc/<pid>/task")
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("jwtdeny-worker"))
        .count()
}

/// Asserts the server runs exactly `n` worker threads, and still does a moment later. A thread
/// takes its name once it runs and leaves /proc a little after it was joined, so the count is
/// waited for; the moment after gives a thread that should not exist the time to show itself.
#[track_caller]
fn assert_workers(server: &Server, n: usize, what: &str) {
    wait_until(
        &format!("{n} worker threads ({what})"),
        ASYNC_DEADLINE,
        || worker_threads(server) == n,
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(worker_threads(server), n, "{what}");
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
    assert_eq!(
        (verifications(&pooled), verifications(&inline)),
        ((0, 0), (0, 0))
    );
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
    // None of these tokens is HMAC: every one went to a worker on one side, inline on the other.
    let n = cases.len() as i64;
    assert_eq!(verifications(&pooled), (n, 0), "the pooled server's CHECKs");
    assert_eq!(verifications(&inline), (0, n), "the inline server's CHECKs");
    assert_int(&pooled.check(&active), 1, "sanity: active");
    assert_int(&pooled.check(&revoked), 0, "sanity: revoked");
    assert_eq!(pooled.check(&expired).err_code(), Some("EXPIRED"));
    assert_eq!(verifications(&pooled), (n + 3, 0));
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
    // 4 clients × 5 rounds × 40 tokens, of which every fourth is HS256 and stays inline.
    assert_eq!(verifications(&server), (4 * 5 * 30, 4 * 5 * 10));
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
    assert_eq!(
        verifications(&server),
        (0, 3),
        "two CHECKs in MULTI and one in Lua"
    );
}

/// A verification queued before a key rotation and finished after it is judged by the new keys:
/// the reply callback sees that the cache generation moved and verifies again, inline.
///
/// One worker, and each CHECK on a connection of its own (a connection's next command waits
/// until its blocked one is answered, so one pipelined connection never queues more than one).
/// The RELOAD runs in a MULTI with `INFO clients`, whose `blocked_clients` is then exactly the
/// number of CHECKs whose answer is computed after the rotation.
#[test]
fn a_rotation_while_queued_judges_by_the_new_keys() {
    const K: usize = 200;
    let builder = ServerBuilder::new().module_args(&["workers", "1", "verify-cache-size", "0"]);
    let path = builder.dir().join("jwks.json");
    fs::copy(jwks_path(), &path).expect("copy jwks");
    let server = builder.keys_file(&path).start();
    let without: Vec<_> = jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] != "shared-es384")
        .cloned()
        .collect();
    // ES384, the slowest of the vectors' algorithms, and never seen before: each one is a full
    // verification on the one worker.
    let tokens: Vec<String> = (0..K)
        .map(|i| {
            mint_default(
                "ES384",
                &claims(&format!("w-rotate-{i}"), SOME_IAT, FAR_EXP),
            )
        })
        .collect();
    assert_int(&server.check(&tokens[0]), 1, "before rotation");
    let (offloaded0, inline0) = verifications(&server);
    let mut conns: Vec<Conn> = (0..K).map(|_| server.conn()).collect();
    write_jwks(&path, &without);
    for (conn, t) in conns.iter_mut().zip(&tokens) {
        conn.send(&["JWTDENY.CHECK", t.as_str()]).expect("send");
    }
    // Rotate only once every CHECK has reached the server (blocked, or answered already), so
    // each one was queued under the old keys.
    let mut ctl = server.conn();
    wait_until("every CHECK to reach the server", ASYNC_DEADLINE, || {
        ctl.send(&["MULTI"]).expect("send");
        ctl.send(&["INFO", "jwtdeny"]).expect("send");
        ctl.send(&["INFO", "clients"]).expect("send");
        ctl.send(&["EXEC"]).expect("send");
        let replies: Vec<Reply> = (0..4).map(|_| ctl.read().expect("read")).collect();
        let exec = replies[3].array();
        let (all, clients) = (exec[0].text(), exec[1].text());
        let answered = info_field(&all, "jwtdeny_checks_active")
            + info_field(&all, "jwtdeny_checks_nokey")
            - 1; // the CHECK before the rotation
        answered + info_field(&clients, "blocked_clients") == K as i64
    });
    ctl.send(&["MULTI"]).expect("send");
    ctl.send(&["INFO", "clients"]).expect("send");
    ctl.send(&["JWTDENY.KEYS", "RELOAD"]).expect("send");
    ctl.send(&["EXEC"]).expect("send");
    for what in ["MULTI", "INFO", "RELOAD"] {
        let r = ctl.read().expect("read");
        assert!(!r.is_error(), "{what}: {r:?}");
    }
    let exec = ctl.read().expect("read");
    let queued = info_field(&exec.array()[0].text(), "blocked_clients");
    assert_int(&exec.array()[1], 6, "RELOAD");
    let replies: Vec<Reply> = conns.iter_mut().map(|c| c.read().expect("read")).collect();
    let nokey = replies
        .iter()
        .filter(|r| r.err_code() == Some("NOKEY"))
        .count();
    let active = replies.iter().filter(|r| **r == Reply::Int(1)).count();
    eprintln!("{queued} of {K} CHECKs were still queued at the rotation");
    assert_eq!(active + nokey, K, "only 1 or NOKEY: {replies:?}");
    assert!(
        queued > 0,
        "no CHECK was still queued at the RELOAD ({active} answered before it): nothing tested"
    );
    assert_eq!(
        nokey, queued as usize,
        "every CHECK still queued at the RELOAD, and only those, answers NOKEY"
    );
    let (offloaded, inline) = verifications(&server);
    assert_eq!(
        offloaded - offloaded0,
        K as i64,
        "every CHECK went to the worker"
    );
    assert_eq!(
        inline - inline0,
        queued,
        "each CHECK queued across the rotation was verified again by the new keys"
    );
    // And one sent after the rotation is judged by the new keys from the start.
    assert_err(&server.check(&tokens[1]), "NOKEY", "after rotation");
    assert_eq!(verifications(&server), (offloaded + 1, inline));
}

/// Worker threads exist only while the module is loaded: a refused load (at startup or by
/// MODULE LOAD) starts none, a good one exactly `jwtdeny.workers`, and unloading stops them.
#[test]
fn worker_threads_live_exactly_as_long_as_the_module() {
    let so = module_path().to_string_lossy().into_owned();
    let keys = jwks_path().to_string_lossy().into_owned();
    let log = ServerBuilder::new()
        .module_args(&["workers", "2", "bogus-arg", "1"])
        .start_expect_failure();
    assert!(log.contains("unknown module argument"), "{log}");

    let server = ServerBuilder::new().without_module().start();
    assert_workers(&server, 0, "no module");
    for refused in [
        vec!["workers", "2", "bogus-arg", "1"],
        vec!["workers", "2", "leeway", "-5"],
        vec!["workers", "2", "keys-file", keys.as_str(), "workers"],
    ] {
        let mut cmd = vec!["MODULE", "LOAD", so.as_str()];
        cmd.extend(&refused);
        assert!(server.cmd(&cmd).is_error(), "{refused:?} is refused");
        assert_workers(&server, 0, &format!("after the refused {refused:?}"));
    }
    let load = server.cmd(&[
        "MODULE",
        "LOAD",
        so.as_str(),
        "keys-file",
        &keys,
        "workers",
        "2",
    ]);
    assert_eq!(load.text(), "OK");
    assert_workers(&server, 2, "loaded with workers 2");
    let t = mint_default("ES256", &claims("w-threads", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, "CHECK with the pool");
    assert_eq!(verifications(&server).0, 1, "the pool served it");
    assert_eq!(server.cmd(&["MODULE", "UNLOAD", "jwtdeny"]).text(), "OK");
    assert_workers(&server, 0, "after MODULE UNLOAD");
    assert_eq!(server.cmd(&["PING"]).text(), "PONG");
}

#[test]
fn workers_can_be_resized_and_stopped_at_runtime() {
    let server = server("1");
    let t = mint_default("EdDSA", &claims("w-resize", SOME_IAT, FAR_EXP));
    for n in ["4", "0", "2", "0"] {
        assert_eq!(server.config_set("jwtdeny.workers", n).text(), "OK");
        assert_workers(&server, n.parse().unwrap(), &format!("workers {n}"));
        let (offloaded, inline) = verifications(&server);
        assert_int(&server.check(&t), 1, &format!("workers {n}"));
        let moved = if n == "0" {
            (offloaded, inline + 1)
        } else {
            (offloaded + 1, inline)
        };
        assert_eq!(verifications(&server), moved, "workers {n}");
    }
    assert!(server.config_set("jwtdeny.workers", "65").is_error());
    assert!(server.config_set("jwtdeny.workers", "-1").is_error());
    assert_eq!(info_num(&server, "checks_active"), 4);
}
