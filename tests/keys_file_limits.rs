//! Reading the keys file can neither hang nor exhaust the server: a FIFO, a device or a huge
//! file is refused at once, without blocking the main thread, and the old keys stay.

use crate::common;

use common::*;
use std::fs;
use std::time::{Duration, Instant};

/// Larger than any keys file jwtdeny reads (core/src/keys.rs MAX_KEYS_FILE_BYTES, 32 MiB).
const OVER_LIMIT: u64 = 32 * 1024 * 1024 + 1;

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs one command and asserts it answered (an error naming `why`) without waiting on the
/// file (a FIFO never ends; the bound only has to tell that from an answer).
#[track_caller]
fn refused_fast(server: &Server, args: &[&str], why: &str) {
    let started = Instant::now();
    let r = server.cmd(args);
    let took = started.elapsed();
    assert!(
        r.error().is_some_and(|e| e.contains(why)),
        "{args:?}: expected an error with {why:?}, got {r}"
    );
    assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    let t = mint_default("HS256", &claims("kept", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, "the old keys stay");
}

#[test]
fn config_set_and_reload_refuse_what_is_not_a_small_regular_file() {
    let server = Server::with_vector_keys();
    let dir = TempDir::new("keys-limits");
    let fifo = dir.path().join("keys.fifo");
    mkfifo(&fifo);
    let huge = dir.path().join("huge.json");
    fs::File::create(&huge)
        .and_then(|f| f.set_len(OVER_LIMIT)) // sparse: no disk is used
        .expect("huge file");
    let before = info_used_memory(&server);

    for path in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
        let p = path.to_string_lossy();
        refused_fast(
            &server,
            &["CONFIG", "SET", "jwtdeny.keys-file", &p],
            "not a regular file",
        );
    }
    refused_fast(
        &server,
        &[
            "CONFIG",
            "SET",
            "jwtdeny.keys-file",
            &huge.to_string_lossy(),
        ],
        "over the limit",
    );
    assert!(
        info_used_memory(&server) < before + 8 * 1024 * 1024,
        "nothing of the huge file was read"
    );

    // KEYS RELOAD of a configured path that became a FIFO, a device or a huge file.
    let current = dir.path().join("current.json");
    fs::copy(jwks_path(), &current).expect("copy");
    assert_eq!(
        server.config_set("jwtdeny.keys-file", &current.to_string_lossy()),
        Reply::Status("OK".into())
    );
    fs::remove_file(&current).expect("rm");
    mkfifo(&current);
    refused_fast(&server, &["JWTDENY.KEYS", "RELOAD"], "not a regular file");
    fs::remove_file(&current).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &current).expect("symlink");
    refused_fast(&server, &["JWTDENY.KEYS", "RELOAD"], "not a regular file");
    fs::remove_file(&current).expect("rm");
    fs::rename(&huge, &current).expect("mv");
    refused_fast(&server, &["JWTDENY.KEYS", "RELOAD"], "over the limit");
    assert_eq!(server.cmd(&["PING"]), Reply::Status("PONG".into()));
}

#[test]
fn a_fifo_keys_file_at_startup_fails_closed_without_hanging() {
    let dir = TempDir::new("keys-fifo-start");
    let fifo = dir.path().join("keys.fifo");
    mkfifo(&fifo);
    // start() waits for PING with a deadline: a blocked open() would fail it.
    let server = ServerBuilder::new().keys_file(&fifo).start();
    let t = mint_default("HS256", &claims("x", SOME_IAT, FAR_EXP));
    assert_err(&server.check(&t), "NOKEY", "no keys: fail closed");
    assert!(
        server.log().contains("not a regular file"),
        "{}",
        server.log()
    );
}

fn info_used_memory(server: &Server) -> u64 {
    let text = server.cmd(&["INFO", "memory"]).text();
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}
