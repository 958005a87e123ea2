//! Revocations survive a restart (SIGKILL, so nothing is saved on the way down) with AOF and
//! with RDB, and the AOF records an effect with the absolute expiry, never JWTDENY.REVOKE.

use crate::common;
use crate::support;

use common::*;
use support::{assert_no_module_commands, assert_set_pxat, touching};

#[test]
fn revocation_survives_restart_with_aof() {
    let mut server = ServerBuilder::new().vector_keys().aof().start();
    let vec_token = vector("valid-PS512");
    let vec_key = deny_key(vec_token.sub.as_deref().unwrap(), vec_token.iat.unwrap());
    let exp = now() + 3600;
    let minted = mint_default("ES256", &claims("aof-user", SOME_IAT, exp));
    let minted_key = deny_key("aof-user", SOME_IAT);
    let untouched = vector("valid-RS256");

    assert_int(&server.revoke(&vec_token.token), 1, "REVOKE vector");
    assert_int(&server.revoke(&vec_token.token), 0, "second REVOKE vector");
    assert_int(&server.revoke(&minted), 1, "REVOKE minted");
    assert_int(&server.check(&untouched.token), 1, "CHECK of another token");
    assert_err(
        &server.revoke(vector("expired").token),
        "EXPIRED",
        "refused REVOKE",
    );

    // The AOF holds exactly one effect per revocation, with the absolute expiry; the second
    // REVOKE, the CHECK and the refused REVOKE wrote nothing.
    let cmds = server.aof_commands();
    assert_no_module_commands(&cmds, "the AOF");
    let vec_cmds = touching(&cmds, &vec_key);
    assert_eq!(
        vec_cmds.len(),
        1,
        "AOF commands for {vec_key}: {vec_cmds:?}"
    );
    assert_set_pxat(vec_cmds[0], &vec_key, FAR_EXP * 1000);
    let minted_cmds = touching(&cmds, &minted_key);
    assert_eq!(
        minted_cmds.len(),
        1,
        "AOF commands for {minted_key}: {minted_cmds:?}"
    );
    assert_set_pxat(minted_cmds[0], &minted_key, exp * 1000);
    let writes: Vec<&Vec<String>> = cmds
        .iter()
        .filter(|c| !c[0].eq_ignore_ascii_case("SELECT"))
        .collect();
    assert_eq!(writes.len(), 2, "AOF writes: {writes:?}");

    server.restart();
    assert_int(
        &server.check(&vec_token.token),
        0,
        "CHECK vector after restart",
    );
    assert_int(&server.check(&minted), 0, "CHECK minted after restart");
    assert_int(
        &server.check(&untouched.token),
        1,
        "CHECK of another token after restart",
    );
    assert_eq!(server.pexpiretime(&vec_key), FAR_EXP * 1000);
    assert_eq!(server.pexpiretime(&minted_key), exp * 1000);
    assert_int(&server.revoke(&minted), 0, "REVOKE minted after restart");

    // Through an AOF rewrite too.
    assert_status(server.cmd(&["BGREWRITEAOF"]));
    wait_until("the AOF rewrite to finish", ASYNC_DEADLINE, || {
        let info = info_section(&server, "persistence");
        info["aof_rewrite_in_progress"] == "0" && info["aof_rewrite_scheduled"] == "0"
    });
    server.restart();
    assert_int(
        &server.check(&vec_token.token),
        0,
        "CHECK vector after rewrite + restart",
    );
    assert_eq!(server.pexpiretime(&minted_key), exp * 1000);
    assert_eq!(server.keys(), {
        let mut k = vec![vec_key, minted_key];
        k.sort();
        k
    });
}

fn assert_status(r: Reply) {
    assert!(
        matches!(&r, Reply::Status(_)),
        "expected a status reply, got {r}"
    );
}

#[test]
fn revocation_survives_restart_with_rdb() {
    let mut server = ServerBuilder::new().vector_keys().start();
    let saved = vector("valid-EdDSA");
    let saved_key = deny_key(saved.sub.as_deref().unwrap(), saved.iat.unwrap());
    let unsaved = vector("valid-HS512");

    assert_int(&server.revoke(&saved.token), 1, "REVOKE before SAVE");
    assert_eq!(server.cmd(&["SAVE"]), Reply::Status("OK".into()));
    // Revoked after the snapshot: lost on SIGKILL, which shows the restart really started
    // from the RDB file.
    assert_int(&server.revoke(&unsaved.token), 1, "REVOKE after SAVE");

    server.restart();
    assert_int(
        &server.check(&saved.token),
        0,
        "CHECK of the saved revocation after restart",
    );
    assert_eq!(server.pexpiretime(&saved_key), FAR_EXP * 1000);
    assert_int(
        &server.check(&unsaved.token),
        1,
        "CHECK of the unsaved revocation after restart",
    );
    assert_eq!(server.keys(), vec![saved_key]);
}
