//! Helpers shared by the issue 3/4 integration tests (REVOKEALL, WITHCLAIMS, INSPECT, INFO,
//! ACL, notifications, cache, replication): the `jwtdeny` INFO section, INSPECT, COMMAND INFO,
//! MONITOR and AOF effects, the key scheme. Built on the harness in `tests/common`: a test
//! binary declares `mod common; mod support;`.
#![allow(dead_code)]

use super::common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// Moved to `tests/common`; still reachable here for the test files that import them from here.
#[allow(unused_imports)]
pub use super::common::{ok, wait_for_link};

/// A server whose keys file is a copy of the vectors' JWKS in its own dir (so a test can
/// break or rotate it), and that path.
pub fn server_with_own_keys_file() -> (Server, std::path::PathBuf) {
    let server = ServerBuilder::new().own_vector_keys("jwks.json").start();
    let path = server.dir().join("jwks.json");
    (server, path)
}

/// `INFO jwtdeny` as field → value, with the `jwtdeny_` prefix Redis adds taken off: the
/// harness's one INFO reader (`info_section`), for the module's own section.
pub fn info(server: &Server) -> BTreeMap<String, String> {
    info_section(server, "jwtdeny")
        .into_iter()
        .map(|(k, v)| {
            let field = k
                .strip_prefix("jwtdeny_")
                .unwrap_or_else(|| panic!("INFO jwtdeny field without the jwtdeny_ prefix: {k:?}"));
            (field.to_string(), v)
        })
        .collect()
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

pub fn int(i: i64) -> Reply {
    Reply::Int(i)
}

pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

/// Whether the server is Valkey rather than Redis (`server_name:valkey` in INFO server).
pub fn is_valkey(server: &Server) -> bool {
    let m = info_section(server, "server");
    m.get("server_name").is_some_and(|n| n == "valkey") || m.contains_key("valkey_version")
}

/// What `COMMAND INFO <name>` says of a command's flags and key positions.
pub struct CommandInfo {
    pub arity: i64,
    pub flags: Vec<String>,
    pub first: i64,
    pub last: i64,
    pub step: i64,
    /// The key specs as the server lists them (empty on servers without them).
    pub key_specs: Vec<Reply>,
}

/// `COMMAND INFO <name>`; panics if the server does not know the command.
#[track_caller]
pub fn command_info(server: &Server, name: &str) -> CommandInfo {
    let r = server.cmd(&["COMMAND", "INFO", name]);
    let entry = r
        .array()
        .first()
        .unwrap_or_else(|| panic!("COMMAND INFO {name}: {r}"));
    let fields = match entry {
        Reply::Array(Some(f)) => f,
        other => panic!("COMMAND INFO {name}: no such command ({other})"),
    };
    assert_eq!(fields[0].text(), name, "COMMAND INFO {name}: {r}");
    CommandInfo {
        arity: fields[1].int(),
        flags: fields[2].array().iter().map(Reply::text).collect(),
        first: fields[3].int(),
        last: fields[4].int(),
        step: fields[5].int(),
        key_specs: fields.get(8).map_or_else(Vec::new, |k| k.array().to_vec()),
    }
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

/// Sets a marker key on the master and asserts that nothing the master sent the replica
/// before it (read from the replica's MONITOR) mentions `key` or is a module command.
#[track_caller]
pub fn assert_nothing_sent_before_marker(conn: &mut Conn, master: &Server, key: &str, what: &str) {
    ok(master.cmd(&["SET", "marker", "1"]), "SET marker");
    let seen = monitor_until(conn, master, "marker");
    assert!(
        !seen
            .iter()
            .any(|c| is_module_command(c) || c.iter().any(|a| a == key)),
        "{what} reached the replica: {seen:?}"
    );
}

/// The commands of `cmds` (an AOF, a replication stream) that mention `key`.
pub fn touching<'a>(cmds: &'a [Vec<String>], key: &str) -> Vec<&'a Vec<String>> {
    cmds.iter().filter(|c| c.iter().any(|a| a == key)).collect()
}

/// Asserts that none of `cmds` is a module command: only effects are replicated and persisted.
#[track_caller]
pub fn assert_no_module_commands(cmds: &[Vec<String>], what: &str) {
    for c in cmds {
        assert!(
            !is_module_command(c),
            "{what} contains the module command itself: {c:?}"
        );
    }
}

/// The one command in the server's AOF that mentions `key`; asserts that there is exactly one
/// and that the AOF holds no module command.
#[track_caller]
pub fn aof_effect(server: &Server, key: &str) -> Vec<String> {
    let aof = server.aof_commands();
    assert_no_module_commands(&aof, "the AOF");
    let effects = touching(&aof, key);
    assert_eq!(effects.len(), 1, "AOF commands for {key}: {effects:?}");
    effects[0].clone()
}

/// Asserts `cmd` is `SET <key> 1 [NX] PXAT <ms>` (in any option order).
#[track_caller]
pub fn assert_set_pxat(cmd: &[String], key: &str, ms: i64) {
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
        let now_ms = now_ms();
        let target = secs * 1000 + 50;
        if now_ms >= target {
            return;
        }
        std::thread::sleep(Duration::from_millis((target - now_ms) as u64));
    }
}
