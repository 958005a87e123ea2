//! The denylist lives in one database (`jwtdeny.db`, default 0) whatever database a client has
//! selected (issue 9 §1c): every command reads and writes there, in MULTI and in Lua too, the
//! client keeps its own database, and replicas, the AOF and keyspace events see the writes in
//! that database. A `jwtdeny.db` the server does not have refuses the load.

use crate::common;

use common::*;
use std::time::Duration;

fn token(sub: &str) -> String {
    mint_default("HS256", &claims(sub, SOME_IAT, FAR_EXP))
}

/// A connection with database `db` selected.
fn conn_on(server: &Server, db: u32) -> Conn {
    let mut c = server.conn();
    ok(c.cmd(&["SELECT", &db.to_string()]), "SELECT");
    c
}

/// The database a connection has selected, from `CLIENT INFO`.
fn selected_db(c: &mut Conn) -> u32 {
    let info = c.cmd(&["CLIENT", "INFO"]).text();
    info.split_whitespace()
        .find_map(|f| f.strip_prefix("db="))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no db= in CLIENT INFO: {info}"))
}

/// Which of databases 0..16 hold `key`.
fn dbs_with(server: &Server, key: &str) -> Vec<u32> {
    let mut c = server.conn();
    (0..16)
        .filter(|db| {
            ok(c.cmd(&["SELECT", &db.to_string()]), "SELECT");
            c.cmd(&["EXISTS", key]).int() == 1
        })
        .collect()
}

#[test]
fn revocations_are_seen_from_every_database() {
    let server = Server::with_vector_keys();
    let t = token("db-alice");
    let entry = deny_key("db-alice", SOME_IAT);
    let mut on3 = conn_on(&server, 3);
    let mut on0 = conn_on(&server, 0);
    let mut on7 = conn_on(&server, 7);

    assert_int(&on0.cmd(&["JWTDENY.CHECK", &t]), 1, "CHECK on db 0 first");
    assert_int(&on3.cmd(&["JWTDENY.REVOKE", &t]), 1, "REVOKE on db 3");
    assert_int(&on0.cmd(&["JWTDENY.CHECK", &t]), 0, "CHECK on db 0");
    assert_int(&on7.cmd(&["JWTDENY.CHECK", &t]), 0, "CHECK on db 7");
    assert_int(&on7.cmd(&["JWTDENY.REVOKE", &t]), 0, "REVOKE again on db 7");
    assert_int(
        &on7.cmd(&["JWTDENY.KCHECK", &entry, "jwtdeny:{db-alice}", &t]),
        0,
        "KCHECK on db 7",
    );
    let i = on7.cmd(&["JWTDENY.INSPECT", &t]);
    assert!(
        contains(&i.all_bytes(), b"revoked by token"),
        "INSPECT on db 7: {i}"
    );
    assert_eq!(dbs_with(&server, &entry), vec![0], "the entry is in db 0");

    // A cutoff written from one database covers CHECKs from any other.
    let bob = mint_default("HS256", &claims("db-bob", now(), FAR_EXP));
    let at = (now() - 10).to_string();
    assert_int(
        &on3.cmd(&["JWTDENY.REVOKEALL", "db-bob", "AT", &at]),
        now() - 10,
        "REVOKEALL on db 3",
    );
    assert_int(
        &on0.cmd(&["JWTDENY.CHECK", &bob]),
        1,
        "iat after the cutoff",
    );
    let covered = mint_default("HS256", &claims("db-bob", now() - 20, FAR_EXP));
    assert_int(&on0.cmd(&["JWTDENY.CHECK", &covered]), 0, "covered, db 0");
    assert_int(
        &on7.cmd(&[
            "JWTDENY.KCHECK",
            "jwtdeny:{db-bob}:0",
            "jwtdeny:{db-bob}",
            &{ mint_default("HS256", &claims("db-bob", 0, FAR_EXP)) },
        ]),
        0,
        "KCHECK covered, db 7",
    );
    assert_eq!(dbs_with(&server, "jwtdeny:{db-bob}"), vec![0]);

    // Every connection kept its own database: its next plain command lands there.
    for (c, db) in [(&mut on3, 3), (&mut on0, 0), (&mut on7, 7)] {
        assert_eq!(selected_db(c), db, "CLIENT INFO after jwtdeny commands");
        let marker = format!("marker-{db}");
        ok(c.cmd(&["SET", &marker, "1"]), "SET marker");
        assert_eq!(dbs_with(&server, &marker), vec![db], "{marker}");
    }
}

#[test]
fn jwtdeny_db_pins_another_database_and_is_load_time_only() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.db 5")
        .start();
    assert_eq!(server.config_get("jwtdeny.db"), "5");
    let t = token("db5");
    let entry = deny_key("db5", SOME_IAT);
    assert_int(&server.revoke(&t), 1, "REVOKE from db 0");
    assert_eq!(dbs_with(&server, &entry), vec![5], "the entry is in db 5");
    let mut on5 = conn_on(&server, 5);
    assert_int(&on5.cmd(&["JWTDENY.CHECK", &t]), 0, "CHECK on db 5");
    assert_int(&server.check(&t), 0, "CHECK on db 0");
    // Writing the key by hand in db 0 changes nothing: only db 5 counts.
    let other = token("db5-other");
    ok(
        server.cmd(&["SET", &deny_key("db5-other", SOME_IAT), "1"]),
        "SET in db 0",
    );
    assert_int(&server.check(&other), 1, "an entry in db 0 is not an entry");

    let r = server.config_set("jwtdeny.db", "0");
    assert!(r.is_error(), "CONFIG SET jwtdeny.db at runtime: {r}");
    assert_eq!(server.config_get("jwtdeny.db"), "5");
    assert_int(&server.check(&t), 0, "still revoked");
}

#[test]
fn multi_exec_on_another_database() {
    let server = Server::with_vector_keys();
    let t = token("db-multi");
    let entry = deny_key("db-multi", SOME_IAT);
    let mut c = conn_on(&server, 5);
    ok(c.cmd(&["MULTI"]), "MULTI");
    for args in [
        vec!["JWTDENY.CHECK", t.as_str()],
        vec!["JWTDENY.REVOKE", t.as_str()],
        vec!["SET", "in-multi", "1"],
        vec!["JWTDENY.CHECK", t.as_str()],
        vec!["JWTDENY.KCHECK", &entry, "jwtdeny:{db-multi}", t.as_str()],
        vec!["JWTDENY.REVOKEALL", "db-multi-2"],
        vec!["SET", "in-multi-2", "1"],
    ] {
        assert_eq!(
            c.cmd(&args),
            Reply::Status("QUEUED".into()),
            "queue {args:?}"
        );
    }
    let r = c.cmd(&["EXEC"]);
    let items = r.array();
    assert_eq!(items.len(), 7, "EXEC: {r}");
    assert_eq!(
        &items[..5],
        &[
            Reply::Int(1),
            Reply::Int(1),
            Reply::Status("OK".into()),
            Reply::Int(0),
            Reply::Int(0),
        ],
        "EXEC: {r}"
    );
    assert_eq!(selected_db(&mut c), 5, "CLIENT INFO after EXEC");
    assert_eq!(dbs_with(&server, &entry), vec![0]);
    assert_eq!(dbs_with(&server, "jwtdeny:{db-multi-2}"), vec![0]);
    assert_eq!(dbs_with(&server, "in-multi"), vec![5]);
    assert_eq!(dbs_with(&server, "in-multi-2"), vec![5]);
    assert_int(&server.check(&t), 0, "CHECK on db 0 after EXEC");
}

#[test]
fn lua_on_another_database() {
    let server = Server::with_vector_keys();
    let t = token("db-lua");
    let entry = deny_key("db-lua", SOME_IAT);
    let mut c = conn_on(&server, 2);
    let revoke = "local r = redis.call('JWTDENY.REVOKE', ARGV[1]); \
                  redis.call('SET', 'after-revoke', '1'); return r";
    assert_int(&c.cmd(&["EVAL", revoke, "0", &t]), 1, "REVOKE in Lua");
    let check = "redis.call('SET', 'before-check', '1'); \
                 local r = redis.call('JWTDENY.CHECK', ARGV[1]); \
                 redis.call('SET', 'after-check', '1'); return r";
    assert_int(&c.cmd(&["EVAL", check, "0", &t]), 0, "CHECK in Lua");
    let kcheck = "return redis.call('JWTDENY.KCHECK', KEYS[1], KEYS[2], ARGV[1])";
    assert_int(
        &c.cmd(&["EVAL", kcheck, "2", &entry, "jwtdeny:{db-lua}", &t]),
        0,
        "KCHECK in Lua",
    );
    let ro = c.cmd(&[
        "EVAL_RO",
        "return redis.call('JWTDENY.CHECK', ARGV[1])",
        "0",
        &t,
    ]);
    assert_int(&ro, 0, "CHECK in EVAL_RO");
    assert_eq!(selected_db(&mut c), 2, "CLIENT INFO after the scripts");
    assert_eq!(dbs_with(&server, &entry), vec![0]);
    for key in ["after-revoke", "before-check", "after-check"] {
        assert_eq!(
            dbs_with(&server, key),
            vec![2],
            "{key}: the script's own db"
        );
    }
    assert_int(&server.check(&t), 0, "CHECK on db 0");
}

/// The worker pool answers from its reply callback, a later main-thread call of its own.
#[test]
fn worker_pool_replies_look_in_the_denylists_database() {
    let server = ServerBuilder::new()
        .vector_keys()
        .module_args(&["workers", "1", "verify-cache-size", "0"])
        .start();
    // Asymmetric, so that CHECK goes to a worker.
    let t = mint_default("ES256", &claims("db-worker", SOME_IAT, FAR_EXP));
    let mut on3 = conn_on(&server, 3);
    assert_int(&on3.cmd(&["JWTDENY.CHECK", &t]), 1, "CHECK on db 3 first");
    assert_int(&server.revoke(&t), 1, "REVOKE on db 0");
    for _ in 0..20 {
        assert_int(&on3.cmd(&["JWTDENY.CHECK", &t]), 0, "CHECK on db 3");
    }
    let entry = deny_key("db-worker", SOME_IAT);
    assert_int(
        &on3.cmd(&["JWTDENY.KCHECK", &entry, "jwtdeny:{db-worker}", &t]),
        0,
        "KCHECK on db 3",
    );
    assert_eq!(selected_db(&mut on3), 3, "CLIENT INFO after worker replies");
    ok(on3.cmd(&["SET", "mine", "1"]), "SET");
    assert_eq!(dbs_with(&server, "mine"), vec![3]);
}

/// Replicas and the AOF get the write in the denylist's database (a `SELECT` before the SET),
/// and the client's next write in its own database.
#[test]
fn writes_replicate_and_persist_in_the_denylists_database() {
    let mut master = ServerBuilder::new()
        .vector_keys()
        .aof()
        .conf("jwtdeny.db 4")
        .start();
    let replica = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.db 4")
        .replica_of(&master)
        .start();
    wait_for_link(&replica);
    let t = token("db-repl");
    let entry = deny_key("db-repl", SOME_IAT);
    let mut on9 = conn_on(&master, 9);
    ok(on9.cmd(&["SET", "before", "1"]), "SET before");
    assert_int(&on9.cmd(&["JWTDENY.REVOKE", &t]), 1, "REVOKE on db 9");
    assert!(
        on9.cmd(&["JWTDENY.REVOKEALL", "db-repl-all"]).int() > 0,
        "REVOKEALL"
    );
    ok(on9.cmd(&["SET", "after", "1"]), "SET after");
    assert_int(&on9.cmd(&["WAIT", "1", "5000"]), 1, "WAIT");

    // The AOF, read as a replica or a restart would: tracking SELECT.
    let mut db = 0;
    let mut seen = Vec::new();
    for cmd in master.aof_commands() {
        if cmd[0].eq_ignore_ascii_case("SELECT") {
            db = cmd[1].parse::<u32>().expect("SELECT <db>");
        } else if cmd[0].eq_ignore_ascii_case("SET") {
            seen.push((cmd[1].clone(), db));
        }
    }
    assert_eq!(
        seen,
        vec![
            ("before".to_string(), 9),
            (entry.clone(), 4),
            ("jwtdeny:{db-repl-all}".to_string(), 4),
            ("after".to_string(), 9),
        ],
        "SETs in the AOF with their database"
    );

    wait_until("the replica has the entry", ASYNC_DEADLINE, || {
        dbs_with(&replica, &entry) == vec![4]
    });
    assert_eq!(dbs_with(&replica, "jwtdeny:{db-repl-all}"), vec![4]);
    assert_eq!(dbs_with(&replica, "after"), vec![9]);
    assert_int(&replica.check(&t), 0, "replica CHECK on db 0");

    master.restart();
    assert_eq!(dbs_with(&master, &entry), vec![4], "after an AOF replay");
    assert_int(&master.check(&t), 0, "CHECK after restart");
}

#[test]
fn keyspace_events_fire_in_the_denylists_database() {
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.db 6")
        .conf("notify-keyspace-events KEA")
        .start();
    let mut sub = server.conn();
    let r = sub.cmd(&["PSUBSCRIBE", "__keyspace@*__:jwtdeny:*"]);
    assert_eq!(r.array()[0].text(), "psubscribe", "{r}");
    let entry = deny_key("db-events", SOME_IAT);
    let mut on1 = conn_on(&server, 1);
    assert_int(
        &on1.cmd(&["JWTDENY.REVOKE", &token("db-events")]),
        1,
        "REVOKE",
    );
    assert!(
        on1.cmd(&["JWTDENY.REVOKEALL", "db-events"]).int() > 0,
        "REVOKEALL"
    );
    sub.set_read_timeout(Duration::from_secs(5));
    let mut events = Vec::new();
    while events.last().is_none_or(|(_, e)| e != "jwtdeny.revokeall") {
        let m = sub.read().expect("a keyspace event within 5 s");
        let f = m.array();
        events.push((f[2].text(), f[3].text()));
    }
    let skey = "jwtdeny:{db-events}";
    for (key, event) in [
        (entry.as_str(), "set"),
        (&entry, "jwtdeny.revoke"),
        (skey, "set"),
        (skey, "jwtdeny.revokeall"),
    ] {
        let want = (format!("__keyspace@6__:{key}"), event.to_string());
        assert!(events.contains(&want), "no {want:?} in {events:?}");
    }
    assert!(
        events.iter().all(|(c, _)| c.starts_with("__keyspace@6__:")),
        "events outside db 6: {events:?}"
    );
}

#[test]
fn a_database_the_server_lacks_refuses_the_load() {
    let log = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.db 16")
        .start_expect_failure();
    assert!(
        log.contains("jwtdeny.db is 16, but this server has 16 databases"),
        "log does not say why:\n{log}"
    );
    let log = ServerBuilder::new()
        .module_args(&["db", "99"])
        .start_expect_failure();
    assert!(log.contains("jwtdeny.db is 99"), "module argument:\n{log}");

    // More databases make room for it.
    let server = ServerBuilder::new()
        .vector_keys()
        .conf("databases 32")
        .conf("jwtdeny.db 31")
        .start();
    assert_eq!(server.config_get("jwtdeny.db"), "31");
    assert_int(&server.revoke(token("db31")), 1, "REVOKE");
    let mut on31 = conn_on(&server, 31);
    assert_int(
        &on31.cmd(&["EXISTS", &deny_key("db31", SOME_IAT)]),
        1,
        "entry in db 31",
    );

    // MODULE LOADEX is refused the same way and leaves nothing loaded.
    let server = ServerBuilder::new().without_module().start();
    let so = module_path();
    let r = server.cmd(&[
        "MODULE",
        "LOADEX",
        &so.to_string_lossy(),
        "CONFIG",
        "jwtdeny.db",
        "20",
    ]);
    assert!(r.is_error(), "LOADEX with jwtdeny.db 20: {r}");
    assert_eq!(server.cmd(&["MODULE", "LIST"]), Reply::Array(Some(vec![])));
    assert!(
        server.log().contains("jwtdeny.db is 20"),
        "{}",
        server.log()
    );
}

#[test]
fn in_cluster_mode_only_database_0_loads() {
    let log = ServerBuilder::new()
        .conf("cluster-enabled yes")
        .conf("jwtdeny.db 1")
        .start_expect_failure();
    assert!(
        log.contains("jwtdeny.db is 1, but Redis Cluster has only database 0"),
        "log does not say why:\n{log}"
    );
    let server = ServerBuilder::new()
        .conf("cluster-enabled yes")
        .conf("jwtdeny.db 0")
        .start();
    assert_eq!(server.config_get("jwtdeny.db"), "0");
}
