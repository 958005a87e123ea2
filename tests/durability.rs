//! Issue 5, "Nothing lost": faults injected into live servers, and what must survive them.
//!
//! - SIGKILL in the middle of a stream of REVOKEs (AOF, `appendfsync always`): every
//!   acknowledged revocation is there after the restart, with its exact expiry.
//! - Failover: the master is SIGKILLed, the replica promoted; every revocation still CHECKs 0
//!   and the new master takes REVOKEs.
//! - A replica that misses writes while disconnected gets them: by partial resync (backlog) and
//!   by full resync (backlog exceeded; replica restarted empty).
//! - `maxmemory` + `noeviction`: REVOKE is refused with Redis's OOM error, nothing partial is
//!   written, CHECK keeps answering.
//! - Boundaries: revoked tokens checked in a tight loop across `exp + leeway` never answer 1,
//!   and their entry is gone once they are expired.

use crate::common;
use crate::faults;

use common::*;
use faults::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A revocable token and where it lands.
struct Tok {
    token: String,
    key: String,
    exp: i64,
}

/// `n` HS256 tokens for distinct subjects `<tag>-<i>`, each expiring at a distinct second.
fn tokens(hs: &Hs256, tag: &str, n: usize, first_exp: i64) -> Vec<Tok> {
    let iat = now() - 10;
    (0..n)
        .map(|i| {
            let sub = format!("{tag}-{i}");
            let exp = first_exp + i as i64;
            Tok {
                token: hs.mint(&sub, iat, exp),
                key: deny_key(&sub, iat),
                exp,
            }
        })
        .collect()
}

/// Sends the commands in batches of `batch` and returns every reply.
fn pipelined(port: u16, cmds: &[Vec<&[u8]>], batch: usize) -> Vec<Reply> {
    let mut pipe = Pipe::connect(port).expect("connect");
    let mut out = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(batch) {
        out.extend(pipe.run(chunk).expect("pipelined batch"));
    }
    out
}

/// REVOKE each token (pipelined) and assert every reply is `expect`. Returns the connection
/// used, for a WAIT that must cover these writes (WAIT waits for the offset of the calling
/// connection's own last write).
#[track_caller]
fn revoke_all(server: &Server, toks: &[Tok], expect: i64, what: &str) -> Pipe {
    let mut pipe = Pipe::connect(server.port).expect("connect");
    for chunk in toks.chunks(200) {
        let cmds: Vec<Vec<&[u8]>> = chunk
            .iter()
            .map(|t| vec![b"JWTDENY.REVOKE".as_slice(), t.token.as_bytes()])
            .collect();
        for (t, r) in chunk.iter().zip(pipe.run(&cmds).expect("pipelined REVOKE")) {
            assert_eq!(
                r,
                Reply::Int(expect),
                "{what}: REVOKE of {} answered {r}",
                t.key
            );
        }
    }
    pipe
}

/// `WAIT <replicas> <timeout_ms>` on the connection that made the writes.
fn wait_acks(pipe: &mut Pipe, replicas: i64, timeout_ms: i64) -> i64 {
    let (n, t) = (replicas.to_string(), timeout_ms.to_string());
    pipe.cmd(&[b"WAIT", n.as_bytes(), t.as_bytes()])
        .expect("WAIT")
        .int()
}

/// CHECK each token (pipelined) and assert every reply is `expect`.
#[track_caller]
fn check_all(server: &Server, toks: &[Tok], expect: i64, what: &str) {
    let cmds: Vec<Vec<&[u8]>> = toks
        .iter()
        .map(|t| vec![b"JWTDENY.CHECK".as_slice(), t.token.as_bytes()])
        .collect();
    for (t, r) in toks.iter().zip(pipelined(server.port, &cmds, 200)) {
        assert_eq!(
            r,
            Reply::Int(expect),
            "{what}: CHECK of {} answered {r}",
            t.key
        );
    }
}

/// PEXPIRETIME of each token's entry is exactly `exp * 1000` (leeway 0).
#[track_caller]
fn assert_expiries(server: &Server, toks: &[Tok], what: &str) {
    let cmds: Vec<Vec<&[u8]>> = toks
        .iter()
        .map(|t| vec![b"PEXPIRETIME".as_slice(), t.key.as_bytes()])
        .collect();
    for (t, r) in toks.iter().zip(pipelined(server.port, &cmds, 200)) {
        assert_eq!(r, Reply::Int(t.exp * 1000), "{what}: PEXPIRETIME {}", t.key);
    }
}

// ---------------------------------------------------------------------------------------------
// Crash

/// Revocations planned; the server is killed once KILL_AFTER of them are acknowledged.
const CRASH_TOTAL: usize = 4000;
const CRASH_KILL_AFTER: usize = 1500;
const CRASH_BATCH: usize = 8;

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_revocation() {
    let mut server = ServerBuilder::new().vector_keys().aof().start();
    assert_eq!(server.config_get("appendfsync"), "always");
    let pid = server_pid(&server);
    let hs = Hs256::new();
    let first_exp = now() + 3600;
    let mut toks = tokens(&hs, "crash", CRASH_TOTAL, first_exp);
    // A few asymmetric-key tokens in the stream too (the key derivation must not care).
    for (i, alg) in [(100, "ES256"), (700, "EdDSA"), (1200, "PS256")] {
        let sub = format!("crash-{i}");
        let iat = now() - 10;
        toks[i] = Tok {
            token: mint_default(alg, &claims(&sub, iat, toks[i].exp)),
            key: deny_key(&sub, iat),
            exp: toks[i].exp,
        };
    }

    let acked = AtomicUsize::new(0);
    let killed = AtomicBool::new(false);
    let mut acknowledged: Vec<usize> = Vec::new();
    let mut sent = 0usize;
    let mut stop_reason = String::new();
    std::thread::scope(|s| {
        // The fault: SIGKILL from another thread while REVOKEs are in flight.
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while acked.load(Ordering::Acquire) < CRASH_KILL_AFTER && Instant::now() < deadline {
                std::thread::yield_now();
            }
            sigkill(pid);
            killed.store(true, Ordering::Release);
        });
        let mut pipe = Pipe::connect(server.port).expect("connect");
        let mut completed = true;
        'outer: for (b, chunk) in toks.chunks(CRASH_BATCH).enumerate() {
            for t in chunk {
                pipe.queue(&[b"JWTDENY.REVOKE", t.token.as_bytes()]);
            }
            if let Err(e) = pipe.flush() {
                stop_reason = format!("write: {e}");
                completed = false;
                break;
            }
            sent += chunk.len();
            for (j, _) in chunk.iter().enumerate() {
                match pipe.read() {
                    Ok(Reply::Int(1)) => {
                        acknowledged.push(b * CRASH_BATCH + j);
                        acked.fetch_add(1, Ordering::Release);
                    }
                    Ok(other) => panic!("REVOKE #{} answered {other}", b * CRASH_BATCH + j),
                    Err(e) => {
                        stop_reason = format!("read: {e}");
                        completed = false;
                        break 'outer;
                    }
                }
            }
        }
        if completed {
            // The loop finished before the kill: the fault did not land mid-stream.
            stop_reason = "loop completed".into();
        }
    });
    assert!(
        killed.load(Ordering::Acquire),
        "the killer thread did not run"
    );
    let n = acknowledged.len();
    eprintln!(
        "crash: {n} REVOKEs acknowledged, {sent} sent, of {CRASH_TOTAL} planned; loop stopped by {stop_reason}"
    );
    assert!(
        (1000..CRASH_TOTAL).contains(&n),
        "the kill must land mid-loop after at least 1000 acknowledgements: acknowledged {n} of {CRASH_TOTAL} ({stop_reason})"
    );

    server.restart();
    let acked_toks: Vec<&Tok> = acknowledged.iter().map(|&i| &toks[i]).collect();
    let check_cmds: Vec<Vec<&[u8]>> = acked_toks
        .iter()
        .map(|t| vec![b"JWTDENY.CHECK".as_slice(), t.token.as_bytes()])
        .collect();
    let pexp_cmds: Vec<Vec<&[u8]>> = acked_toks
        .iter()
        .map(|t| vec![b"PEXPIRETIME".as_slice(), t.key.as_bytes()])
        .collect();
    let checks = pipelined(server.port, &check_cmds, 200);
    let pexps = pipelined(server.port, &pexp_cmds, 200);
    let mut lost = Vec::new();
    for ((t, c), p) in acked_toks.iter().zip(&checks).zip(&pexps) {
        if *c != Reply::Int(0) || *p != Reply::Int(t.exp * 1000) {
            lost.push(format!(
                "{}: CHECK {c}, PEXPIRETIME {p} (want {})",
                t.key,
                t.exp * 1000
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {n} acknowledged revocations lost or changed by SIGKILL + restart, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // Nothing appears that was never sent; what was sent but not acknowledged may or may not be
    // there (the reply was lost, not necessarily the write).
    let size = server.dbsize() as usize;
    assert!(
        (n..=sent).contains(&size),
        "DBSIZE {size} after restart: acknowledged {n}, sent {sent}"
    );
    let never_sent = &toks[sent..];
    check_all(
        &server,
        &never_sent[..never_sent.len().min(50)],
        1,
        "never-sent tokens",
    );
    eprintln!(
        "crash: after restart all {n} acknowledged revocations CHECK 0 with exact PEXPIRETIME; {} sent but unacknowledged were also written",
        size - n
    );
    // The restarted server takes writes again.
    revoke_all(&server, &never_sent[..1], 1, "REVOKE after restart");
}

// ---------------------------------------------------------------------------------------------
// Failover

#[test]
fn failover_keeps_every_revocation() {
    let mut master = ServerBuilder::new().vector_keys().aof().start();
    let replica = ServerBuilder::new().vector_keys().start_replica_of(&master);
    let hs = Hs256::new();
    let toks = tokens(&hs, "failover", 500, now() + 3600);
    revoke_all(&master, &toks, 1, "REVOKE on the master");
    // Every valid vector too (all algorithms), and a subject cutoff.
    let vecs: Vec<Vector> = vectors()
        .into_iter()
        .filter(|v| v.expect == "active")
        .collect();
    // Some vectors spell one (sub, iat) differently: the second of those answers 0.
    let mut vec_keys = std::collections::BTreeSet::new();
    for v in &vecs {
        let fresh = vec_keys.insert(deny_key(v.sub.as_deref().unwrap(), v.iat.unwrap()));
        let want = if fresh { 1 } else { 0 };
        assert_int(
            &master.revoke(&v.token),
            want,
            &format!("REVOKE {}", v.name),
        );
    }
    let cutoff_tok = hs.mint("failover-subject", now() - 100, now() + 3600);
    let cutoff = master.cmd(&["JWTDENY.REVOKEALL", "failover-subject"]).int();
    assert!((now() - cutoff).abs() <= 1, "REVOKEALL cutoff {cutoff}");
    // On the connection of the last write (REVOKEALL), so it covers every write before it.
    assert_int(
        &master.cmd(&["WAIT", "1", "5000"]),
        1,
        "WAIT for the replica to acknowledge",
    );
    let keys_before = master.keys();

    // The replica refuses writes while it is one.
    assert_err(
        &replica.revoke(&toks[0].token),
        "READONLY",
        "REVOKE on the replica",
    );

    // The fault: the master dies without a chance to do anything.
    master.kill();
    // Still a replica with its link down: it serves what it has.
    check_all(&replica, &toks, 0, "replica with its master dead");

    ok(replica.cmd(&["REPLICAOF", "NO", "ONE"]), "REPLICAOF NO ONE");
    assert_eq!(
        info_field(&replica, "replication", "role"),
        "master",
        "the replica was not promoted"
    );
    check_all(&replica, &toks, 0, "promoted replica");
    assert_expiries(&replica, &toks, "promoted replica");
    for v in &vecs {
        assert_int(
            &replica.check(&v.token),
            0,
            &format!("CHECK {} on the new master", v.name),
        );
    }
    assert_int(
        &replica.check(&cutoff_tok),
        0,
        "subject cutoff on the new master",
    );
    assert_eq!(replica.keys(), keys_before, "keys on the new master");

    // The new master takes writes.
    let fresh = tokens(&hs, "after-failover", 20, now() + 3600);
    check_all(
        &replica,
        &fresh,
        1,
        "fresh tokens before REVOKE on the new master",
    );
    revoke_all(&replica, &fresh, 1, "REVOKE on the new master");
    check_all(
        &replica,
        &fresh,
        0,
        "fresh tokens after REVOKE on the new master",
    );
    assert_expiries(&replica, &fresh, "new master");
    revoke_all(
        &replica,
        &toks[..10],
        0,
        "REVOKE of old revocations on the new master",
    );
}

// ---------------------------------------------------------------------------------------------
// Resync

/// Cuts the replica's link and keeps it down: a wrong `masterauth` makes every reconnect fail
/// at AUTH (the master has no password) while the replica keeps its cached master state.
fn cut_link(replica: &Server) {
    ok(
        replica.config_set("masterauth", "no-such-password"),
        "CONFIG SET masterauth",
    );
    assert_int(
        &replica.cmd(&["CLIENT", "KILL", "TYPE", "master"]),
        1,
        "CLIENT KILL TYPE master",
    );
    wait_until("the replica's link to go down", ASYNC_DEADLINE, || {
        info_field(replica, "replication", "master_link_status") == "down"
    });
}

/// Whether a server log has `phrase`, as Redis words it or as Valkey does ("primary" for
/// "master").
fn logged(log: &str, phrase: &str) -> bool {
    log.contains(phrase) || log.contains(&phrase.replace("master", "primary"))
}

fn restore_link(replica: &Server) {
    // At least one reconnect attempt has failed at AUTH by now, so the link really was held down.
    wait_until("a refused reconnect attempt", ASYNC_DEADLINE, || {
        let log = replica.log();
        logged(&log, "Unable to AUTH to MASTER") || logged(&log, "Unable to AUTH to PRIMARY")
    });
    ok(
        replica.config_set("masterauth", ""),
        "CONFIG SET masterauth \"\"",
    );
    wait_for_link(replica);
}

/// A replica of `master`, with 100 revocations it has acknowledged, then cut off.
struct CutOff {
    replica: Server,
    hs: Hs256,
    /// Revoked before the cut.
    before: Vec<Tok>,
    /// The master's `sync_partial_ok` and `sync_full` at the cut.
    partial0: i64,
    full0: i64,
}

fn replica_cut_off(master: &Server) -> CutOff {
    let replica = ServerBuilder::new().vector_keys().start_replica_of(master);
    let hs = Hs256::new();
    let before = tokens(&hs, "before-cut", 100, now() + 3600);
    let mut pipe = revoke_all(master, &before, 1, "REVOKE before the cut");
    assert_eq!(wait_acks(&mut pipe, 1, 5000), 1, "WAIT before the cut");
    let partial0 = info_i64(master, "stats", "sync_partial_ok");
    let full0 = info_i64(master, "stats", "sync_full");
    cut_link(&replica);
    CutOff {
        replica,
        hs,
        before,
        partial0,
        full0,
    }
}

/// Once the link is back: the replica acknowledges the missed writes (on `pipe`, the
/// connection that made them) and has every revocation, with its expiry, and no other key.
#[track_caller]
fn assert_caught_up(master: &Server, cut: &CutOff, missed: &[Tok], pipe: &mut Pipe, how: &str) {
    let replica = &cut.replica;
    assert_eq!(wait_acks(pipe, 1, 5000), 1, "WAIT after reconnecting");
    let what = format!("replica after {how}");
    check_all(replica, missed, 0, &what);
    check_all(replica, &cut.before, 0, &what);
    assert_expiries(replica, missed, &what);
    assert_eq!(replica.keys(), master.keys(), "replica keys = master keys");
}

#[test]
fn replica_catches_up_by_partial_resync() {
    let master = ServerBuilder::new().vector_keys().start();
    let cut = replica_cut_off(&master);
    let replica = &cut.replica;
    let missed = tokens(&cut.hs, "missed", 300, now() + 7200);
    let mut pipe = revoke_all(&master, &missed, 1, "REVOKE while the replica is cut off");
    assert_eq!(
        wait_acks(&mut pipe, 1, 300),
        0,
        "WAIT while the replica is cut off"
    );
    // The replica really missed them.
    check_all(replica, &missed, 1, "replica before reconnecting");
    check_all(replica, &cut.before, 0, "replica before reconnecting");

    restore_link(replica);
    assert_caught_up(&master, &cut, &missed, &mut pipe, "partial resync");

    assert_eq!(
        info_i64(&master, "stats", "sync_partial_ok"),
        cut.partial0 + 1,
        "the master did not count a partial resync"
    );
    assert_eq!(
        info_i64(&master, "stats", "sync_full"),
        cut.full0,
        "a full sync happened"
    );
    assert!(
        logged(
            &replica.log(),
            "Successful partial resynchronization with master"
        ),
        "replica log:\n{}",
        replica.log()
    );
    assert!(master
        .log()
        .contains("Partial resynchronization request from"));
}

#[test]
fn replica_catches_up_by_full_resync_when_backlog_is_exceeded() {
    // The smallest backlog Redis allows (16 KiB): a few hundred revocations overflow it.
    let master = ServerBuilder::new()
        .vector_keys()
        .conf("repl-backlog-size 16kb")
        .start();
    let cut = replica_cut_off(&master);
    let replica = &cut.replica;
    // ~120 bytes of replication stream each: well over 16 KiB.
    let missed = tokens(&cut.hs, "missed", 2000, now() + 7200);
    let mut pipe = revoke_all(&master, &missed, 1, "REVOKE while the replica is cut off");
    check_all(replica, &missed[..50], 1, "replica before reconnecting");

    restore_link(replica);
    assert_caught_up(&master, &cut, &missed, &mut pipe, "full resync");

    assert_eq!(
        info_i64(&master, "stats", "sync_full"),
        cut.full0 + 1,
        "no full sync"
    );
    assert_eq!(
        info_i64(&master, "stats", "sync_partial_ok"),
        cut.partial0,
        "a partial resync happened"
    );
    let log = master.log();
    assert!(
        log.contains("for lack of backlog") || log.contains("lacking backlog"),
        "master log:\n{log}"
    );
    assert!(logged(&replica.log(), "Full resync from master"));
}

/// The data files in a server's dir (RDB snapshots, AOF directory).
fn remove_data_files(dir: &std::path::Path) -> Vec<String> {
    let mut removed = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rdb") || name == "appendonlydir" {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).expect("remove dir");
            } else {
                std::fs::remove_file(&p).expect("remove file");
            }
            removed.push(name);
        }
    }
    removed
}

#[test]
fn replica_restarted_catches_up_partially_from_its_rdb_and_fully_when_empty() {
    let master = ServerBuilder::new().vector_keys().start();
    let mut replica = ServerBuilder::new().vector_keys().start_replica_of(&master);
    let hs = Hs256::new();
    let before = tokens(&hs, "before-kill", 100, now() + 3600);
    let mut pipe = revoke_all(&master, &before, 1, "REVOKE before the replica dies");
    assert_eq!(wait_acks(&mut pipe, 1, 5000), 1, "WAIT");
    let full0 = info_i64(&master, "stats", "sync_full");
    let partial0 = info_i64(&master, "stats", "sync_partial_ok");

    // The fault: SIGKILL of the replica. It kept the RDB of its initial sync (which records the
    // replication id and offset), so on restart it asks for the rest and gets it from the
    // master's backlog.
    replica.kill();
    let missed = tokens(&hs, "missed", 300, now() + 7200);
    let mut pipe = revoke_all(&master, &missed, 1, "REVOKE while the replica is dead");
    replica.restart();
    wait_for_link(&replica);
    assert_eq!(wait_acks(&mut pipe, 1, 5000), 1, "WAIT after the restart");
    check_all(&replica, &before, 0, "replica restarted from its RDB");
    check_all(&replica, &missed, 0, "replica restarted from its RDB");
    assert_expiries(&replica, &missed, "replica restarted from its RDB");
    assert_eq!(replica.keys(), master.keys(), "replica keys = master keys");
    assert_eq!(
        info_i64(&master, "stats", "sync_full"),
        full0,
        "a full sync happened"
    );
    assert_eq!(
        info_i64(&master, "stats", "sync_partial_ok"),
        partial0 + 1,
        "no partial resync after a restart from the RDB"
    );

    // Again, but the replica comes back with an empty dir (a new machine): a new replication
    // id, so a full resync.
    replica.kill();
    let removed = remove_data_files(replica.dir());
    eprintln!("restart: removed {removed:?} from the replica's dir");
    let missed2 = tokens(&hs, "missed-again", 300, now() + 7200);
    let mut pipe = revoke_all(
        &master,
        &missed2,
        1,
        "REVOKE while the replica is dead again",
    );
    replica.restart();
    wait_for_link(&replica);
    assert_eq!(
        wait_acks(&mut pipe, 1, 5000),
        1,
        "WAIT after the second restart"
    );
    for (set, what) in [
        (&before, "before"),
        (&missed, "missed"),
        (&missed2, "missed again"),
    ] {
        check_all(&replica, set, 0, &format!("emptied replica: {what}"));
    }
    assert_expiries(&replica, &missed2, "emptied replica");
    assert_eq!(replica.keys(), master.keys(), "replica keys = master keys");
    assert_eq!(
        info_i64(&master, "stats", "sync_full"),
        full0 + 1,
        "no full sync"
    );
    assert!(master.log().contains("Full resync requested by replica"));
}

// ---------------------------------------------------------------------------------------------
// Out of memory

#[test]
fn revoke_refused_with_oom_writes_nothing_and_check_keeps_working() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("maxmemory-policy noeviction")
        .start();
    let hs = Hs256::new();
    let revoked_vec = vector("valid-ES384");
    let active_vec = vector("valid-RS256");
    assert_int(
        &server.revoke(&revoked_vec.token),
        1,
        "REVOKE before the limit",
    );
    let cutoff_tok = hs.mint("oom-subject", now() - 100, now() + 3600);
    server.cmd(&["JWTDENY.REVOKEALL", "oom-subject"]).int();

    let used = info_i64(&server, "memory", "used_memory");
    let limit = used + 256 * 1024;
    ok(
        server.config_set("maxmemory", &limit.to_string()),
        "CONFIG SET maxmemory",
    );
    let db0 = server.dbsize();
    let new0 = info_i64(&server, "jwtdeny", "jwtdeny_revokes_new");

    let exp = now() + 3600;
    let mut accepted: Vec<Tok> = Vec::new();
    let mut refused = None;
    for i in 0..100_000 {
        let sub = format!("oom-{i}");
        let t = Tok {
            token: hs.mint(&sub, exp - 7200, exp),
            key: deny_key(&sub, exp - 7200),
            exp,
        };
        match server.revoke(&t.token) {
            Reply::Int(1) => accepted.push(t),
            Reply::Error(e) => {
                refused = Some((t, e));
                break;
            }
            other => panic!("REVOKE #{i} answered {other}"),
        }
    }
    let (refused, err) = refused.expect("REVOKE was never refused under maxmemory");
    eprintln!(
        "oom: maxmemory {limit} (used_memory was {used}); {} REVOKEs accepted, then: {err}",
        accepted.len()
    );
    assert!(
        !accepted.is_empty(),
        "refused at once: the limit was not what refused it"
    );
    assert!(
        err.starts_with("OOM command not allowed"),
        "expected Redis's OOM error, got -{err}"
    );

    // Nothing partial: exactly one key per accepted REVOKE, none for the refused one, and the
    // module never ran for it.
    assert_eq!(server.dbsize(), db0 + accepted.len() as i64, "DBSIZE");
    assert_int(
        &server.cmd(&["EXISTS", &refused.key]),
        0,
        "EXISTS refused key",
    );
    assert_eq!(
        info_i64(&server, "jwtdeny", "jwtdeny_revokes_new"),
        new0 + accepted.len() as i64
    );

    // Still out of memory: writes refused, reads answered.
    let again = server.revoke(&refused.token);
    assert!(
        again
            .error()
            .is_some_and(|e| e.starts_with("OOM command not allowed")),
        "second REVOKE: {again}"
    );
    let ra = server.cmd(&["JWTDENY.REVOKEALL", "oom-other"]);
    assert!(
        ra.error()
            .is_some_and(|e| e.starts_with("OOM command not allowed")),
        "REVOKEALL: {ra}"
    );
    check_all(
        &server,
        &accepted,
        0,
        "CHECK of accepted revocations while OOM",
    );
    assert_int(
        &server.check(&revoked_vec.token),
        0,
        "CHECK revoked vector while OOM",
    );
    assert_int(
        &server.check(&active_vec.token),
        1,
        "CHECK active vector while OOM",
    );
    assert_int(
        &server.check(&cutoff_tok),
        0,
        "CHECK subject-revoked token while OOM",
    );
    assert_int(
        &server.check(&refused.token),
        1,
        "CHECK of the refused one (not revoked)",
    );
    let wc = server.cmd(&["JWTDENY.CHECK", &active_vec.token, "WITHCLAIMS"]);
    assert_eq!(wc.array()[0], Reply::Int(1), "WITHCLAIMS while OOM: {wc}");
    let ins = server.cmd(&["JWTDENY.INSPECT", &accepted[0].token]);
    assert_eq!(ins.array()[1].text(), "revoked", "INSPECT while OOM: {ins}");
    assert_eq!(
        server.dbsize(),
        db0 + accepted.len() as i64,
        "DBSIZE after reads"
    );

    // Room again: the refused revocation goes through.
    ok(
        server.config_set("maxmemory", "0"),
        "CONFIG SET maxmemory 0",
    );
    assert_int(
        &server.revoke(&refused.token),
        1,
        "REVOKE after raising maxmemory",
    );
    assert_int(
        &server.check(&refused.token),
        0,
        "CHECK after raising maxmemory",
    );
    assert_eq!(server.pexpiretime(&refused.key), exp * 1000);
}

// ---------------------------------------------------------------------------------------------
// Boundaries

/// What was seen for one token during the tight loop.
#[derive(Default, Debug)]
struct Seen {
    before: usize,
    expired: usize,
    exists: usize,
    gone: usize,
}

fn boundary_run(leeway: i64) {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf(format!("jwtdeny.leeway {leeway}"))
        .start();
    let hs = Hs256::new();
    let t0 = now();
    let iat = t0 - 5;
    // Revoked: HS256 (verification cache) and EdDSA/ES256 (other verifiers), at exp = t0+2 and
    // t0+3. Control: the same, never revoked.
    let mut revoked = Vec::new();
    let mut control = Vec::new();
    for (i, exp) in [t0 + 2, t0 + 3].into_iter().enumerate() {
        for alg in ["HS256", "EdDSA", "ES256"] {
            let sub = format!("edge-{alg}-{i}");
            let token = if alg == "HS256" {
                hs.mint(&sub, iat, exp)
            } else {
                mint_default(alg, &claims(&sub, iat, exp))
            };
            revoked.push(Tok {
                token,
                key: deny_key(&sub, iat),
                exp,
            });
            let csub = format!("ctl-{alg}-{i}");
            control.push(Tok {
                token: hs.mint(&csub, iat, exp),
                key: deny_key(&csub, iat),
                exp,
            });
        }
    }
    for t in &revoked {
        assert_int(&server.revoke(&t.token), 1, "REVOKE");
        assert_eq!(
            server.pexpiretime(&t.key),
            (t.exp + leeway) * 1000,
            "PEXPIRETIME"
        );
    }
    let boundary = |t: &Tok| (t.exp + leeway) * 1000;
    let last = revoked.iter().map(boundary).max().unwrap();
    assert!(
        now_ms() < revoked.iter().map(boundary).min().unwrap(),
        "setup too slow"
    );

    let mut conn = server.conn();
    let mut seen: Vec<Seen> = revoked.iter().map(|_| Seen::default()).collect();
    let mut ctl_seen: Vec<Seen> = control.iter().map(|_| Seen::default()).collect();
    let mut rounds = 0;
    while now_ms() < last + 300 {
        rounds += 1;
        for (t, s) in revoked.iter().zip(seen.iter_mut()) {
            let b = boundary(t);
            let sent = now_ms();
            let r = conn.cmd(&["JWTDENY.CHECK", &t.token]);
            let got = now_ms();
            match &r {
                Reply::Int(0) => {
                    assert!(sent < b, "{}: CHECK 0 sent at {sent}, at/after the boundary {b}", t.key);
                    s.before += 1;
                }
                r if r.err_code() == Some("EXPIRED") => {
                    assert!(got >= b, "{}: EXPIRED received at {got}, before the boundary {b}", t.key);
                    s.expired += 1;
                }
                other => panic!(
                    "{}: CHECK of a revoked token answered {other} at {sent}..{got} (boundary {b}, leeway {leeway})",
                    t.key
                ),
            }
            // Redis expires a key once now > its PEXPIRETIME.
            let sent = now_ms();
            let e = conn.cmd(&["EXISTS", &t.key]).int();
            let got = now_ms();
            if e == 1 {
                assert!(sent <= b, "{}: key still there at {sent} > {b}", t.key);
                s.exists += 1;
            } else {
                assert!(got >= b, "{}: key gone at {got} < {b}", t.key);
                s.gone += 1;
            }
        }
        for (t, s) in control.iter().zip(ctl_seen.iter_mut()) {
            let b = boundary(t);
            let sent = now_ms();
            let r = conn.cmd(&["JWTDENY.CHECK", &t.token]);
            let got = now_ms();
            match &r {
                Reply::Int(1) => {
                    assert!(sent < b, "control {}: CHECK 1 at {sent} >= {b}", t.key);
                    s.before += 1;
                }
                r if r.err_code() == Some("EXPIRED") => {
                    assert!(got >= b, "control {}: EXPIRED at {got} < {b}", t.key);
                    s.expired += 1;
                }
                other => panic!("control {}: CHECK answered {other}", t.key),
            }
        }
    }
    eprintln!(
        "boundary (leeway {leeway}): {rounds} rounds; revoked {seen:?}; control {ctl_seen:?}"
    );
    for ((t, s), c) in revoked.iter().zip(&seen).zip(&ctl_seen) {
        assert!(
            s.before > 0 && s.expired > 0,
            "{}: both sides of the boundary must be seen: {s:?}",
            t.key
        );
        assert!(s.exists > 0 && s.gone > 0, "{}: {s:?}", t.key);
        assert!(c.before > 0 && c.expired > 0, "control: {c:?}");
    }

    // Past every boundary: everything EXPIRED, every entry gone, nothing re-created.
    for t in &revoked {
        assert_refused(&server, &t.token, "EXPIRED", "after expiry");
        let ins = server.cmd(&["JWTDENY.INSPECT", &t.token]);
        assert_eq!(
            ins.array()[1].text(),
            "EXPIRED",
            "INSPECT after expiry: {ins}"
        );
        assert_int(&server.cmd(&["EXISTS", &t.key]), 0, "EXISTS after expiry");
    }
    for t in &control {
        assert_err(
            &server.revoke(&t.token),
            "EXPIRED",
            "REVOKE of control after expiry",
        );
    }
    let keys = server.keys();
    assert!(keys.is_empty(), "keys left after expiry: {keys:?}");
    wait_until("DBSIZE 0", ASYNC_DEADLINE, || server.dbsize() == 0);
}

#[test]
fn boundary_leeway_0_revoked_never_checks_1_and_entry_goes() {
    boundary_run(0);
}

#[test]
fn boundary_leeway_1_revoked_never_checks_1_and_entry_goes() {
    boundary_run(1);
}
