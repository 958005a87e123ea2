//! Helpers for the fault-injection and load tests of issue 5 (durability, soak, memcheck):
//! a fast HS256 minter, a pipelining connection that writes a whole batch in one syscall, the
//! server's pid and RSS. Built on the harness in `tests/common` (which has the RESP encoder and
//! the INFO parser, re-exported here): a test binary declares `mod common; mod faults;`.
#![allow(dead_code)]

use super::common::*;
use aws_lc_rs::hmac;
use std::io;
use std::time::Duration;

#[allow(unused_imports)]
pub use super::common::{encode, info_field, info_i64, now_ms, parse_info};

/// Mints HS256 tokens with the vectors' `shared-hs256` key directly with HMAC (no JSON
/// serializer, no key parsing per token): a few microseconds each, so load tests can mint
/// millions of unique tokens as they go.
pub struct Hs256 {
    key: hmac::Key,
    header: String,
}

impl Hs256 {
    pub fn new() -> Hs256 {
        let secret = private_key("shared-hs256.key");
        Hs256 {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            header: b64(br#"{"alg":"HS256","kid":"shared-hs256","typ":"JWT"}"#),
        }
    }

    /// A token for `{"sub":sub,"iat":iat,"exp":exp}`; `sub` must need no JSON escaping.
    pub fn mint(&self, sub: &str, iat: i64, exp: i64) -> String {
        debug_assert!(!sub.contains(['"', '\\']));
        let payload = format!(r#"{{"sub":"{sub}","iat":{iat},"exp":{exp}}}"#);
        let mut token = String::with_capacity(200);
        token.push_str(&self.header);
        token.push('.');
        token.push_str(&b64(payload.as_bytes()));
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        token.push_str(&b64(tag.as_ref()));
        token
    }
}

impl Default for Hs256 {
    fn default() -> Self {
        Hs256::new()
    }
}

/// A connection that sends a batch of commands in one write and then reads their replies.
pub struct Pipe(Conn);

impl Pipe {
    pub fn connect(port: u16) -> io::Result<Pipe> {
        Conn::connect_with(port, Duration::from_secs(30)).map(Pipe)
    }

    /// Queues one command (nothing is sent until [`Pipe::flush`]).
    pub fn queue(&mut self, args: &[&[u8]]) {
        self.0.queue(args);
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    pub fn read(&mut self) -> io::Result<Reply> {
        self.0.read()
    }

    /// Sends the commands and reads one reply each.
    pub fn run(&mut self, cmds: &[Vec<&[u8]>]) -> io::Result<Vec<Reply>> {
        for c in cmds {
            self.queue(c);
        }
        self.flush()?;
        (0..cmds.len()).map(|_| self.read()).collect()
    }

    /// One command, one reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.0.try_cmd(args)
    }
}

/// The server's process id (`INFO server` `process_id`).
pub fn server_pid(server: &Server) -> u32 {
    info_i64(server, "server", "process_id") as u32
}

/// VmRSS of a process in bytes (from /proc/<pid>/status).
pub fn vm_rss(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_else(|| panic!("no VmRSS in {path}"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad VmRSS line {line:?}"));
    kb * 1024
}

/// SIGKILL by pid, for killing a server from another thread than the one that owns it.
pub fn sigkill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid} failed: {status}");
}

/// `n` bytes as "12.3 MiB".
pub fn mib(n: i64) -> String {
    format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
}

/// An env var as a number, or the default.
pub fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.replace(['_', ','], "");
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}
