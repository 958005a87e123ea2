//! Helpers shared by the issue 3/4 integration tests (REVOKEALL, WITHCLAIMS, INSPECT, INFO,
//! ACL, notifications, cache). Built on the harness in `tests/common`: a test binary declares
//! `mod common; mod support;`.
#![allow(dead_code)]

use super::common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Asserts `+OK`.
#[track_caller]
pub fn ok(r: Reply, what: &str) {
    assert_eq!(r, Reply::Status("OK".into()), "{what}");
}

/// `INFO jwtdeny` as field → value, with the `jwtdeny_` prefix Redis adds taken off.
pub fn info(server: &Server) -> BTreeMap<String, String> {
    let text = server.cmd(&["INFO", "jwtdeny"]).text();
    assert!(
        text.lines().any(|l| l.trim() == "# jwtdeny"),
        "INFO jwtdeny has no '# jwtdeny' section:\n{text}"
    );
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("INFO line without ':': {line:?}"));
        let k = k
            .strip_prefix("jwtdeny_")
            .unwrap_or_else(|| panic!("INFO jwtdeny field without the jwtdeny_ prefix: {line:?}"));
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// One numeric field of `INFO jwtdeny`.
#[track_caller]
pub fn info_num(server: &Server, field: &str) -> i64 {
    let m = info(server);
    let v = m
        .get(field)
        .unwrap_or_else(|| panic!("INFO jwtdeny has no {field}: {m:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("INFO jwtdeny {field} is not a number: {v:?}"))
}

/// The fields of INSPECT in the documented order.
pub const INSPECT_FIELDS: [&str; 10] = [
    "status",
    "reason",
    "alg",
    "kid",
    "sub",
    "iat",
    "exp",
    "key",
    "revoked_by",
    "expires_at_ms",
];

/// `JWTDENY.INSPECT <token>` as (field, value) pairs, checking the field names and their order.
#[track_caller]
pub fn inspect(server: &Server, token: &str) -> BTreeMap<String, Reply> {
    let r = server.cmd(&["JWTDENY.INSPECT", token]);
    let items = r.array();
    assert_eq!(items.len(), 2 * INSPECT_FIELDS.len(), "INSPECT reply {r}");
    let mut out = BTreeMap::new();
    for (pair, want) in items.chunks(2).zip(INSPECT_FIELDS) {
        assert_eq!(pair[0].text(), want, "INSPECT field order in {r}");
        out.insert(want.to_string(), pair[1].clone());
    }
    out
}

pub fn nil() -> Reply {
    Reply::Bulk(None)
}

pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

/// Whether the server is Valkey rather than Redis (`server_name:valkey` in INFO server).
pub fn is_valkey(server: &Server) -> bool {
    let text = server.cmd(&["INFO", "server"]).text();
    text.lines()
        .any(|l| l.trim() == "server_name:valkey" || l.starts_with("valkey_version:"))
}

/// Waits until a replica's link to its master is up.
pub fn wait_for_link(replica: &Server) {
    wait_until(
        "the replica's master link to come up",
        ASYNC_DEADLINE,
        || {
            replica
                .cmd(&["INFO", "replication"])
                .text()
                .contains("master_link_status:up")
        },
    );
}

/// A MONITOR line `<time> [<db> <addr>] "ARG" "ARG" ...` as (addr, args).
pub fn monitor_line(line: &str) -> (String, Vec<String>) {
    let (Some(open), Some(close)) = (line.find('['), line.find("] ")) else {
        return (String::new(), Vec::new());
    };
    let source = line[open + 1..close]
        .split(' ')
        .next_back()
        .unwrap_or("")
        .to_string();
    let mut args = Vec::new();
    let mut chars = line[close + 2..].chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        arg.push(n);
                    }
                }
                '"' => break,
                c => arg.push(c),
            }
        }
        args.push(arg);
    }
    (source, args)
}

/// Reads a replica's MONITOR lines until a command from its master mentions `marker`; returns
/// every command the master sent, in order (the replica's own clients are skipped).
pub fn monitor_until(conn: &mut Conn, master: &Server, marker: &str) -> Vec<Vec<String>> {
    let from_master = format!("127.0.0.1:{}", master.port);
    let deadline = Instant::now() + ASYNC_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!(
                "the master sent nothing mentioning {marker} within {ASYNC_DEADLINE:?}; saw {seen:?}"
            );
        }
        conn.set_read_timeout(left);
        match conn.read() {
            Ok(Reply::Status(line)) => {
                let (source, args) = monitor_line(&line);
                if source != from_master {
                    continue;
                }
                let done = args.iter().any(|a| a == marker);
                seen.push(args);
                if done {
                    return seen;
                }
            }
            Ok(other) => panic!("unexpected MONITOR reply {other}"),
            Err(e) => panic!("MONITOR, waiting for {marker}: {e}; saw {seen:?}"),
        }
    }
}

/// Whether a command is one of the module's own (as opposed to an effect it propagated).
pub fn is_module_command(c: &[String]) -> bool {
    c.first()
        .is_some_and(|n| n.to_ascii_lowercase().starts_with("jwtdeny"))
}

/// The subject (cutoff) key for the default prefix, `sub` already encoded.
pub fn subject_key(encoded_sub: &str) -> String {
    format!("jwtdeny:{{{encoded_sub}}}")
}

/// The text between the first `{` and the next `}` (the cluster hash tag), if any.
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = open + 1 + key[open + 1..].find('}')?;
    (close > open + 1).then(|| &key[open + 1..close])
}

/// CRC16 (XMODEM) mod 16384 of the key's hash tag, as Redis Cluster assigns slots.
pub fn key_slot(key: &str) -> u16 {
    let bytes = hash_tag(key).unwrap_or(key).as_bytes();
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Sleeps until the wall clock (whole seconds) is past `secs`, plus a little margin.
pub fn sleep_until_after(secs: i64) {
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let target = secs * 1000 + 50;
        if now_ms >= target {
            return;
        }
        std::thread::sleep(Duration::from_millis((target - now_ms) as u64));
    }
}
