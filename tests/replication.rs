//! A replica started by the test follows its master's revocations with the same absolute
//! expiry, answers CHECK, refuses REVOKE, and receives effects (SET … PXAT), never
//! JWTDENY.REVOKE.

mod common;
mod support;

use common::*;
use support::{monitor_until, wait_for_link};

fn is_module_command(c: &[String]) -> bool {
    c.first()
        .is_some_and(|n| n.to_ascii_lowercase().starts_with("jwtdeny"))
}

#[track_caller]
fn assert_set_pxat(cmd: &[String], key: &str, ms: i64) {
    let ms = ms.to_string();
    let ok = cmd.len() >= 5
        && cmd[0].eq_ignore_ascii_case("SET")
        && cmd[1] == key
        && cmd[2] == "1"
        && cmd[3..]
            .windows(2)
            .any(|w| w[0].eq_ignore_ascii_case("PXAT") && w[1] == ms)
        && cmd[3..]
            .iter()
            .all(|a| a.eq_ignore_ascii_case("PXAT") || a.eq_ignore_ascii_case("NX") || *a == ms);
    assert!(ok, "expected SET {key} 1 [NX] PXAT {ms}, got {cmd:?}");
}

#[test]
fn replica_follows_revocations() {
    let master = ServerBuilder::new().vector_keys().aof().start();

    // Revoked before the replica exists: arrives with the initial sync.
    let before = vector("valid-RS512");
    let before_key = deny_key(before.sub.as_deref().unwrap(), before.iat.unwrap());
    assert_int(
        &master.revoke(&before.token),
        1,
        "REVOKE on master before the replica",
    );

    let replica = ServerBuilder::new()
        .vector_keys()
        .replica_of(&master)
        .start();
    wait_for_link(&replica);
    assert_int(
        &master.cmd(&["WAIT", "1", "5000"]),
        1,
        "WAIT for the replica",
    );
    assert_int(
        &replica.check(&before.token),
        0,
        "replica CHECK of a token revoked before sync",
    );
    assert_eq!(replica.pexpiretime(&before_key), FAR_EXP * 1000);

    // CHECK works on the replica.
    let streamed = vector("valid-ES256");
    let streamed_key = deny_key(streamed.sub.as_deref().unwrap(), streamed.iat.unwrap());
    assert_int(
        &replica.check(&streamed.token),
        1,
        "replica CHECK before REVOKE",
    );

    // Revoked while connected: arrives through the command stream, as an effect.
    let mut monitor = replica.conn();
    assert_eq!(monitor.cmd(&["MONITOR"]), Reply::Status("OK".into()));
    assert_int(&master.revoke(&streamed.token), 1, "REVOKE on master");
    assert_int(&master.cmd(&["WAIT", "1", "5000"]), 1, "WAIT after REVOKE");
    assert_int(
        &replica.check(&streamed.token),
        0,
        "replica CHECK after REVOKE on master",
    );
    assert_eq!(
        replica.pexpiretime(&streamed_key),
        master.pexpiretime(&streamed_key)
    );
    assert_eq!(replica.pexpiretime(&streamed_key), FAR_EXP * 1000);

    let seen = monitor_until(&mut monitor, &master, &streamed_key);
    let effect = seen.last().unwrap();
    assert_set_pxat(effect, &streamed_key, FAR_EXP * 1000);
    assert!(
        !seen.iter().any(|c| is_module_command(c)),
        "the replica received a module command: {seen:?}"
    );

    // A second REVOKE changes nothing and sends nothing: the next thing the replica sees is
    // the marker written after it.
    assert_int(
        &master.revoke(&streamed.token),
        0,
        "second REVOKE on master",
    );
    assert_eq!(
        master.cmd(&["SET", "marker", "1"]),
        Reply::Status("OK".into())
    );
    let seen = monitor_until(&mut monitor, &master, "marker");
    assert!(
        !seen
            .iter()
            .any(|c| is_module_command(c) || c.contains(&streamed_key)),
        "a second REVOKE reached the replica: {seen:?}"
    );
    drop(monitor);

    // The master's AOF agrees.
    let aof = master.aof_commands();
    assert!(
        !aof.iter().any(|c| is_module_command(c)),
        "the master's AOF contains a module command: {aof:?}"
    );
    let effects: Vec<&Vec<String>> = aof.iter().filter(|c| c.contains(&streamed_key)).collect();
    assert_eq!(
        effects.len(),
        1,
        "AOF commands for {streamed_key}: {effects:?}"
    );
    assert_set_pxat(effects[0], &streamed_key, FAR_EXP * 1000);
}

#[test]
fn replica_refuses_revoke() {
    let master = Server::with_vector_keys();
    let replica = ServerBuilder::new()
        .vector_keys()
        .replica_of(&master)
        .start();
    wait_for_link(&replica);
    let v = vector("valid-HS256");
    assert_err(
        &replica.revoke(&v.token),
        "READONLY",
        "REVOKE on the replica",
    );
    // Even an invalid token is refused as a write, before any verification.
    assert_err(
        &replica.revoke(vector("expired").token),
        "READONLY",
        "REVOKE of an expired token on the replica",
    );
    assert_eq!(replica.keys(), Vec::<String>::new());
    assert_eq!(master.keys(), Vec::<String>::new());
    assert_int(&replica.check(&v.token), 1, "CHECK on the replica");
}

/// The expiry travels as an absolute time: a revocation with leeway on the master keeps the
/// master's expiry on a replica configured with another leeway.
#[test]
fn replica_keeps_the_masters_expiry() {
    let master = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.leeway 30")
        .start();
    let replica = ServerBuilder::new()
        .vector_keys()
        .conf("jwtdeny.leeway 0")
        .replica_of(&master)
        .start();
    wait_for_link(&replica);
    let exp = now() + 600;
    let token = mint_default("PS384", &claims("leeway-user", SOME_IAT, exp));
    let key = deny_key("leeway-user", SOME_IAT);
    assert_int(&master.revoke(&token), 1, "REVOKE on master");
    assert_int(&master.cmd(&["WAIT", "1", "5000"]), 1, "WAIT");
    assert_eq!(master.pexpiretime(&key), (exp + 30) * 1000);
    assert_eq!(replica.pexpiretime(&key), (exp + 30) * 1000);
    assert_int(&replica.check(&token), 0, "replica CHECK");
}
