//! Keyspace notifications (issue 3 §5): `jwtdeny.revoke` for the entry key on a new REVOKE,
//! `jwtdeny.revokeall` for the subject key when a cutoff moves, and nothing for reads or for
//! writes that change nothing.

use crate::common;
use crate::support;

use common::*;
use std::time::Duration;
use support::*;

/// The next pub/sub message as (channel, payload), from `message` or `pmessage`.
fn next_message(sub: &mut Conn, what: &str) -> (String, String) {
    sub.set_read_timeout(Duration::from_secs(5));
    let msg = sub
        .read()
        .unwrap_or_else(|e| panic!("no notification within 5 s while waiting for {what}: {e}"));
    let f = msg.array();
    match f[0].text().as_str() {
        "message" => (f[1].text(), f[2].text()),
        "pmessage" => (f[2].text(), f[3].text()),
        other => panic!("unexpected pub/sub reply {other}: {msg}"),
    }
}

/// Reads messages until one has `payload`; returns it and everything before it.
fn until_payload(sub: &mut Conn, payload: &str) -> ((String, String), Vec<(String, String)>) {
    let mut before = Vec::new();
    for _ in 0..50 {
        let m = next_message(sub, payload);
        if m.1 == payload {
            return (m, before);
        }
        before.push(m);
    }
    panic!("no {payload} event among {before:?}");
}

#[test]
fn all_events_on_keyspace_channels() {
    let server = Server::with_vector_keys();
    ok(server.config_set("notify-keyspace-events", "KEA"), "KEA");
    let mut sub = server.conn();
    let r = sub.cmd(&["PSUBSCRIBE", "__keyspace@0__:*"]);
    assert_eq!(r.array()[0].text(), "psubscribe", "{r}");

    let v = vector("valid-ES256");
    let entry = deny_key("user-es256", v.iat.unwrap());
    assert_int(&server.revoke(&v.token), 1, "REVOKE");
    let ((channel, _), before) = until_payload(&mut sub, "jwtdeny.revoke");
    assert_eq!(channel, format!("__keyspace@0__:{entry}"));
    // Whatever else the write raised (the SET's own events) was about the same key.
    for (c, _) in &before {
        assert_eq!(c, &channel, "events before jwtdeny.revoke: {before:?}");
    }

    let t = now() - 10;
    let skey = subject_key("user-es256");
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "user-es256", "AT", &t.to_string()]),
        t,
        "REVOKEALL",
    );
    let ((channel, _), before) = until_payload(&mut sub, "jwtdeny.revokeall");
    assert_eq!(channel, format!("__keyspace@0__:{skey}"));
    for (c, _) in &before {
        assert_eq!(c, &channel, "events before jwtdeny.revokeall: {before:?}");
    }

    // Reads, and writes that change nothing, notify nothing: the next event is the marker's.
    let active = vector("valid-HS256").token;
    assert_int(&server.check(&active), 1, "CHECK active");
    assert_int(&server.check(&v.token), 0, "CHECK revoked");
    server
        .cmd(&["JWTDENY.CHECK", active.as_str(), "WITHCLAIMS"])
        .array();
    server.cmd(&["JWTDENY.INSPECT", v.token.as_str()]).array();
    assert_int(&server.revoke(&v.token), 0, "REVOKE again");
    assert_int(
        &server.cmd(&[
            "JWTDENY.REVOKEALL",
            "user-es256",
            "AT",
            &(t - 5).to_string(),
        ]),
        t,
        "REVOKEALL older",
    );
    let covered = mint_default("HS256", &claims("user-es256", t, FAR_EXP));
    assert_int(&server.revoke(&covered), 0, "REVOKE of a covered token");
    assert_err(
        &server.check(vector("expired").token),
        "EXPIRED",
        "CHECK expired",
    );
    ok(server.cmd(&["SET", "marker", "1"]), "SET marker");
    let m = next_message(&mut sub, "the marker");
    assert_eq!(
        m,
        ("__keyspace@0__:marker".to_string(), "set".to_string()),
        "the first event after reads and no-op writes"
    );
}

#[test]
fn module_events_alone_on_keyspace_channels() {
    let server = Server::with_vector_keys();
    ok(server.config_set("notify-keyspace-events", "Kd"), "Kd");
    let v = vector("valid-PS256");
    let entry = deny_key("user-ps256", v.iat.unwrap());
    let skey = subject_key("user-ps256");
    let mut sub = server.conn();
    let r = sub.cmd(&["SUBSCRIBE", &format!("__keyspace@0__:{entry}")]);
    assert_eq!(r.array()[0].text(), "subscribe", "{r}");

    assert_int(&server.check(&v.token), 1, "CHECK");
    assert_int(&server.revoke(&v.token), 1, "REVOKE");
    // Module events only: the first message is ours, not the SET's.
    assert_eq!(
        next_message(&mut sub, "jwtdeny.revoke"),
        (
            format!("__keyspace@0__:{entry}"),
            "jwtdeny.revoke".to_string()
        )
    );
    assert_int(&server.revoke(&v.token), 0, "REVOKE again");
    assert_int(&server.check(&v.token), 0, "CHECK revoked");
    // A write that does notify, on a channel we listen to, shows nothing came in between.
    sub.send(&["SUBSCRIBE", &format!("__keyspace@0__:{skey}")])
        .unwrap();
    let r = sub.read().unwrap();
    assert_eq!(r.array()[0].text(), "subscribe", "{r}");
    let t = now() - 1;
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "user-ps256", "AT", &t.to_string()]),
        t,
        "REVOKEALL",
    );
    assert_eq!(
        next_message(&mut sub, "jwtdeny.revokeall"),
        (
            format!("__keyspace@0__:{skey}"),
            "jwtdeny.revokeall".to_string()
        )
    );
}

#[test]
fn module_events_on_keyevent_channels() {
    let server = Server::with_vector_keys();
    ok(server.config_set("notify-keyspace-events", "Ed"), "Ed");
    let mut sub = server.conn();
    sub.send(&[
        "SUBSCRIBE",
        "__keyevent@0__:jwtdeny.revoke",
        "__keyevent@0__:jwtdeny.revokeall",
    ])
    .unwrap();
    for _ in 0..2 {
        let r = sub.read().unwrap();
        assert_eq!(r.array()[0].text(), "subscribe", "{r}");
    }
    let sub_name = "nora{x}";
    let t = now() - 100;
    let token = mint_default("ES384", &claims(sub_name, t + 1, FAR_EXP));
    assert_int(&server.check(&token), 1, "CHECK");
    assert_int(&server.revoke(&token), 1, "REVOKE");
    assert_eq!(
        next_message(&mut sub, "jwtdeny.revoke"),
        (
            "__keyevent@0__:jwtdeny.revoke".to_string(),
            format!("jwtdeny:{{nora%7Bx%7D}}:{}", t + 1)
        )
    );
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", sub_name, "AT", &t.to_string()]),
        t,
        "REVOKEALL",
    );
    assert_eq!(
        next_message(&mut sub, "jwtdeny.revokeall"),
        (
            "__keyevent@0__:jwtdeny.revokeall".to_string(),
            "jwtdeny:{nora%7Bx%7D}".to_string()
        )
    );
    // Moving the cutoff forward notifies again; an older AT does not.
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", sub_name, "AT", &(t - 1).to_string()]),
        t,
        "REVOKEALL older",
    );
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", sub_name, "AT", &(t + 2).to_string()]),
        t + 2,
        "REVOKEALL later",
    );
    assert_eq!(
        next_message(&mut sub, "jwtdeny.revokeall again"),
        (
            "__keyevent@0__:jwtdeny.revokeall".to_string(),
            "jwtdeny:{nora%7Bx%7D}".to_string()
        )
    );
}

#[test]
fn no_events_when_notifications_are_off() {
    let server = Server::with_vector_keys();
    assert_eq!(server.config_get("notify-keyspace-events"), "");
    let mut sub = server.conn();
    let r = sub.cmd(&["PSUBSCRIBE", "__key*__:*"]);
    assert_eq!(r.array()[0].text(), "psubscribe", "{r}");
    assert_int(&server.revoke(vector("valid-HS384").token), 1, "REVOKE");
    server.cmd(&["JWTDENY.REVOKEALL", "someone"]).int();
    sub.set_read_timeout(Duration::from_millis(300));
    let r = sub.read();
    assert!(r.is_err(), "a notification while they are off: {r:?}");
}
