//! Helpers for the fault-injection and load tests of issue 5 (durability, soak, memcheck):
//! a fast HS256 minter, a pipelining connection that writes a whole batch in one syscall,
//! INFO parsing, the server's pid and RSS. Built on the harness in `tests/common`: a test
//! binary declares `mod common; mod faults;`.
#![allow(dead_code)]

use super::common::*;
use aws_lc_rs::hmac;
use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Mints HS256 tokens with the vectors' `shared-hs256` key directly with HMAC (no JSON
/// serializer, no key parsing per token): a few microseconds each, so load tests can mint
/// millions of unique tokens as they go.
pub struct Hs256 {
    key: hmac::Key,
    header: String,
}

impl Hs256 {
    pub fn new() -> Hs256 {
        let path = vectors_dir().join("private").join("shared-hs256.key");
        let secret =
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
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

/// One RESP command as a byte buffer.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A connection that sends a batch of commands in one write and then reads their replies.
pub struct Pipe {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    buf: Vec<u8>,
}

impl Pipe {
    pub fn connect(port: u16) -> io::Result<Pipe> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Pipe {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Queues one command (nothing is sent until [`Pipe::flush`]).
    pub fn queue(&mut self, args: &[&[u8]]) {
        encode(args, &mut self.buf);
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let r = self.writer.write_all(&self.buf);
        self.buf.clear();
        r
    }

    pub fn read(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader)
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
        self.queue(args);
        self.flush()?;
        self.read()
    }
}

/// `INFO <section>` text as field → value.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One field of `INFO <section>` on the server's shared connection.
#[track_caller]
pub fn info_field(server: &Server, section: &str, field: &str) -> String {
    let text = server.cmd(&["INFO", section]).text();
    parse_info(&text)
        .remove(field)
        .unwrap_or_else(|| panic!("INFO {section} has no {field}:\n{text}"))
}

#[track_caller]
pub fn info_i64(server: &Server, section: &str, field: &str) -> i64 {
    let v = info_field(server, section, field);
    v.parse()
        .unwrap_or_else(|_| panic!("INFO {section} {field} is not an integer: {v:?}"))
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
