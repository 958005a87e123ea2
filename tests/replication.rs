//! A replica started by the test follows its master's revocations with the same absolute
//! expiry, answers CHECK, refuses REVOKE, and receives effects (SET … PXAT), never
//! JWTDENY.REVOKE.

use crate::common;
use crate::support;

use common::*;
use support::{
    aof_effect, assert_nothing_sent_before_marker, assert_set_pxat, is_module_command,
    monitor_until,
};

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

    let replica = ServerBuilder::new().vector_keys().start_replica_of(&master);
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
    assert_nothing_sent_before_marker(&mut monitor, &master, &streamed_key, "a second REVOKE");
    drop(monitor);

    // The master's AOF agrees.
    let effect = aof_effect(&master, &streamed_key);
    assert_set_pxat(&effect, &streamed_key, FAR_EXP * 1000);
}

#[test]
fn replica_refuses_revoke() {
    let master = Server::with_vector_keys();
    let replica = ServerBuilder::new().vector_keys().start_replica_of(&master);
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
        .start_replica_of(&master);
    let exp = now() + 600;
    let token = mint_default("PS384", &claims("leeway-user", SOME_IAT, exp));
    let key = deny_key("leeway-user", SOME_IAT);
    assert_int(&master.revoke(&token), 1, "REVOKE on master");
    assert_int(&master.cmd(&["WAIT", "1", "5000"]), 1, "WAIT");
    assert_eq!(master.pexpiretime(&key), (exp + 30) * 1000);
    assert_eq!(replica.pexpiretime(&key), (exp + 30) * 1000);
    assert_int(&replica.check(&token), 0, "replica CHECK");
}
