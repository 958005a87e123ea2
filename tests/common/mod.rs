//! Harness shared by the integration tests: real `redis-server` processes with the built module
//! on free ports (one fixture, [`ServerBuilder`], for every kind of server: replica, AOF, own
//! keys file, under valgrind), a tiny RESP2 client (the only RESP encoder and parser), the INFO
//! parser, and tokens minted from the test vectors' private keys.
//!
//! Each test binary includes this file with `mod common;` and uses a different subset of it.
//! `tests/support` (feature helpers: INSPECT, MONITOR, key scheme) and `tests/faults` (load and
//! fault helpers) build on it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// How long a server may take to answer PING after being spawned.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// How long any single reply may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for things that happen asynchronously (replication, log lines).
pub const ASYNC_DEADLINE: Duration = Duration::from_secs(10);
/// `exp` of every valid vector and of long-lived minted tokens: 2100-01-01.
pub const FAR_EXP: i64 = 4_102_444_800;
/// `iat` used by minted tokens unless a test cares.
pub const SOME_IAT: i64 = 1_767_225_600;

// ---------------------------------------------------------------------------------------------
// Paths

pub fn repo_root() -> PathBuf {
    // The module's crate is the repository's root; the core crate's tests (core/tests) share
    // this harness from one level down.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match manifest.file_name() {
        Some(name) if name == "core" => {
            manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
        }
        _ => manifest,
    }
}

pub fn vectors_dir() -> PathBuf {
    repo_root().join("tests").join("vectors")
}

/// The JWKS matching the vectors; use it as `jwtdeny.keys-file`.
pub fn jwks_path() -> PathBuf {
    vectors_dir().join("jwks.json")
}

/// The built module: `$JWTDENY_MODULE`, else `libjwtdeny.so` in the profile directory of the
/// running test binary (`target/<profile>/deps/<test>-<hash>` → `target/<profile>/`).
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("JWTDENY_MODULE") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "JWTDENY_MODULE={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let so = profile_dir.join("libjwtdeny.so");
    assert!(
        so.is_file(),
        "module not found at {}: run `cargo build --release` first (or set JWTDENY_MODULE)",
        so.display()
    );
    // `cargo test` does not rebuild a cdylib-only library: refuse to test a stale module.
    let built = fs::metadata(&so).and_then(|m| m.modified()).expect("mtime");
    if let Some(newer) = newest_source().filter(|(t, _)| *t > built) {
        panic!(
            "{} is older than {}: run `cargo build --release` first (or set JWTDENY_MODULE)",
            so.display(),
            newer.1.display()
        );
    }
    so
}

/// The most recently modified of src/**, Cargo.toml and Cargo.lock.
fn newest_source() -> Option<(SystemTime, PathBuf)> {
    fn walk(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
        let Ok(meta) = fs::metadata(path) else { return };
        if meta.is_dir() {
            for entry in fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(t) = meta.modified() {
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                *newest = Some((t, path.to_path_buf()));
            }
        }
    }
    let mut newest = None;
    for p in ["src", "Cargo.toml", "Cargo.lock"] {
        walk(&repo_root().join(p), &mut newest);
    }
    newest
}

/// The server binary: `$JWTDENY_SERVER_BIN` (e.g. a `valkey-server`), else `redis-server`.
pub fn server_bin() -> std::ffi::OsString {
    std::env::var_os("JWTDENY_SERVER_BIN").unwrap_or_else(|| "redis-server".into())
}

// ---------------------------------------------------------------------------------------------
// Temporary directories

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory, removed on drop unless the test is failing (then it is kept for
/// inspection and its path is printed), or unless it was made with [`TempDir::kept_at`].
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "jwtdeny-test-{}-{}-{}-{}",
            std::process::id(),
            n,
            nanos,
            tag
        ));
        TempDir::fresh(path, false)
    }

    /// `path`, emptied now (an earlier run's files must not mix in) and never removed.
    pub fn kept_at(path: impl Into<PathBuf>) -> TempDir {
        TempDir::fresh(path.into(), true)
    }

    fn fresh(path: PathBuf, keep: bool) -> TempDir {
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create dir {}: {e}", path.display()));
        TempDir { path, keep }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(kept {} for inspection)", self.path.display());
        } else if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Quotes one argument for a redis.conf line (the server splits lines like a shell would).
pub fn conf_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How a server process is run: kept by the [`Server`] so that a restart runs it the same way.
#[derive(Clone)]
struct Launch {
    /// A program the server runs under (e.g. valgrind) and its arguments, before the server's.
    wrapper: Option<(OsString, Vec<OsString>)>,
    env: Vec<(OsString, OsString)>,
    startup_deadline: Duration,
    reply_timeout: Duration,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            wrapper: None,
            env: Vec::new(),
            startup_deadline: STARTUP_DEADLINE,
            reply_timeout: READ_TIMEOUT,
        }
    }
}

pub struct ServerBuilder {
    dir: TempDir,
    load_module: bool,
    module_args: Vec<String>,
    conf: Vec<String>,
    launch: Launch,
}

impl ServerBuilder {
    pub fn new() -> ServerBuilder {
        ServerBuilder::with_dir(TempDir::new("redis"))
    }

    /// A server whose `dir` is `path`: emptied first, and kept after the server is gone (for
    /// logs a caller wants to read or keep).
    pub fn in_dir(path: impl Into<PathBuf>) -> ServerBuilder {
        ServerBuilder::with_dir(TempDir::kept_at(path))
    }

    fn with_dir(dir: TempDir) -> ServerBuilder {
        ServerBuilder {
            dir,
            load_module: true,
            module_args: Vec::new(),
            conf: Vec::new(),
            launch: Launch::default(),
        }
    }

    /// The server's `dir`, which exists already: tests put keys files there before starting.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `jwtdeny.keys-file <path>` as a config-file line.
    pub fn keys_file(self, path: impl AsRef<Path>) -> Self {
        let line = format!(
            "jwtdeny.keys-file {}",
            conf_quote(&path.as_ref().to_string_lossy())
        );
        self.conf(line)
    }

    /// The vectors' JWKS as keys file.
    pub fn vector_keys(self) -> Self {
        self.keys_file(jwks_path())
    }

    /// A copy of the vectors' JWKS at `<dir>/<name>` as keys file, so that a test can break,
    /// rotate or replace it.
    pub fn own_vector_keys(self, name: &str) -> Self {
        let path = self.dir().join(name);
        fs::copy(jwks_path(), &path).expect("copy jwks");
        self.keys_file(path)
    }

    /// `{"keys": keys}` at `<dir>/<name>` as keys file.
    pub fn jwks(self, name: &str, keys: &[Value]) -> Self {
        let path = self.dir().join(name);
        write_jwks(&path, keys);
        self.keys_file(path)
    }

    /// A line appended to the config file, after `loadmodule`.
    pub fn conf(mut self, line: impl Into<String>) -> Self {
        self.conf.push(line.into());
        self
    }

    /// Arguments after the `.so` on the `loadmodule` line.
    pub fn module_args(mut self, args: &[&str]) -> Self {
        self.module_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Start without `loadmodule` (for `MODULE LOADEX`).
    pub fn without_module(mut self) -> Self {
        self.load_module = false;
        self
    }

    /// AOF on, fsynced on every write.
    pub fn aof(self) -> Self {
        self.conf("appendonly yes").conf("appendfsync always")
    }

    pub fn replica_of(self, master: &Server) -> Self {
        let line = format!("replicaof 127.0.0.1 {}", master.port);
        self.conf(line)
    }

    /// A replica of `master`, started, with its link to the master up.
    pub fn start_replica_of(self, master: &Server) -> Server {
        let replica = self.replica_of(master).start();
        wait_for_link(&replica);
        replica
    }

    /// Runs the server as an argument of `program` (`program args… redis-server redis.conf`).
    pub fn wrapped_in<S: AsRef<OsStr>>(mut self, program: impl AsRef<OsStr>, args: &[S]) -> Self {
        let args = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        self.launch.wrapper = Some((program.as_ref().to_os_string(), args));
        self
    }

    /// An environment variable for the server process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.launch
            .env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// How long the server may take to answer PING after being spawned, and any reply after
    /// that (a server under valgrind is tens of times slower).
    pub fn timeouts(mut self, startup: Duration, reply: Duration) -> Self {
        self.launch.startup_deadline = startup;
        self.launch.reply_timeout = reply;
        self
    }

    fn config_text(&self, port: u16) -> String {
        let dir = self.dir.path();
        let mut lines = vec![
            format!("port {port}"),
            "bind 127.0.0.1".to_string(),
            format!("dir {}", conf_quote(&dir.to_string_lossy())),
            format!(
                "logfile {}",
                conf_quote(&dir.join("redis.log").to_string_lossy())
            ),
            "daemonize no".to_string(),
            "save \"\"".to_string(),
            "appendonly no".to_string(),
            "enable-module-command yes".to_string(),
            "enable-debug-command yes".to_string(),
            // A master waits 5 s by default for more replicas before a diskless full sync.
            "repl-diskless-sync-delay 0".to_string(),
        ];
        if self.load_module {
            let mut line = format!(
                "loadmodule {}",
                conf_quote(&module_path().to_string_lossy())
            );
            for a in &self.module_args {
                line.push(' ');
                line.push_str(&conf_quote(a));
            }
            lines.push(line);
        }
        lines.extend(self.conf.iter().cloned());
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    /// Writes the config for a free port and spawns the server on it (not waiting for it).
    fn launch(&self) -> Server {
        let port = free_port();
        let conf_path = self.dir.path().join("redis.conf");
        fs::write(&conf_path, self.config_text(port)).expect("write redis.conf");
        let mut server = Server {
            port,
            conf_path,
            child: None,
            conn: RefCell::new(None),
            dir: None,
            launch: self.launch.clone(),
        };
        server.spawn_in(self.dir.path());
        server
    }

    /// Spawns the server and waits until it answers PING; panics with its log otherwise.
    pub fn start(self) -> Server {
        // The port may be taken between probing it and the server binding it (another test's
        // server or an outgoing connection): then try another one.
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut server = self.launch();
            match server.wait_ready(self.dir.path()) {
                Ok(()) => {
                    server.dir = Some(self.dir);
                    return server;
                }
                Err(log) => {
                    server.kill();
                    if log.contains("Address already in use") || log.contains(PORT_TAKEN) {
                        last_log = log;
                        continue;
                    }
                    server.dir = Some(self.dir);
                    panic!("redis-server did not come up:\n{log}");
                }
            }
        }
        panic!("no free port after 5 attempts:\n{last_log}");
    }

    /// Spawns the server expecting it to refuse to start; returns its log and output.
    pub fn start_expect_failure(self) -> String {
        let mut server = self.launch();
        server.dir = Some(self.dir);
        let deadline = Instant::now() + server.launch.startup_deadline;
        loop {
            if server.try_wait().is_some() {
                return server.log();
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server was expected to refuse to start but is still running:\n{}",
                    server.log()
                );
            }
            if let Ok(mut c) = Conn::connect(server.port) {
                if let Ok(Reply::Status(s)) = c.try_cmd(&["PING"]) {
                    if s == "PONG" {
                        panic!(
                            "redis-server was expected to refuse to start but answers PING:\n{}",
                            server.log()
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder::new()
    }
}

/// What `wait_ready` says when the port it waits on is answered by another process.
const PORT_TAKEN: &str = "port taken by another server";

/// A running `redis-server`, killed (and reaped) on drop. Its log is printed when a test fails
/// while it is alive.
pub struct Server {
    pub port: u16,
    conf_path: PathBuf,
    child: Option<Child>,
    conn: RefCell<Option<Conn>>,
    dir: Option<TempDir>,
    launch: Launch,
}

impl Server {
    /// A server with the module and the vectors' JWKS, defaults otherwise.
    pub fn with_vector_keys() -> Server {
        ServerBuilder::new().vector_keys().start()
    }

    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or_else(|| self.conf_path.parent().expect("conf dir"))
    }

    fn spawn(&mut self) {
        let dir = self.conf_path.parent().expect("conf dir").to_path_buf();
        self.spawn_in(&dir);
    }

    fn spawn_in(&mut self, dir: &Path) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stdout.log"))
            .expect("open stdout.log");
        let err = out.try_clone().expect("clone stdout.log");
        let mut command = match &self.launch.wrapper {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(server_bin());
                c
            }
            None => Command::new(server_bin()),
        };
        let child = command
            .arg(&self.conf_path)
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn {:?} (is it installed?): {e}", command.get_program())
            });
        self.child = Some(child);
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// Waits for PING → PONG; on death or timeout returns the log.
    fn wait_ready(&mut self, dir: &Path) -> Result<(), String> {
        let startup = self.launch.startup_deadline;
        let deadline = Instant::now() + startup;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!(
                    "redis-server exited with {status}\n{}",
                    read_logs(dir)
                ));
            }
            if let Ok(mut c) = Conn::connect_with(self.port, self.launch.reply_timeout) {
                match c.try_cmd(&["PING"]) {
                    Ok(Reply::Status(s)) if s == "PONG" => return self.answered_by_own(&mut c),
                    _ => {} // LOADING, or not accepting yet
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server did not answer PING within {startup:?}\n{}",
                    read_logs(dir)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server that answered on the port is this one: another test's server may
    /// have taken the port between probing it and this one binding it.
    fn answered_by_own(&self, c: &mut Conn) -> Result<(), String> {
        let own = self.child.as_ref().map(Child::id);
        let info = match c.try_cmd(&["INFO", "server"]) {
            Ok(r) => parse_info(&r.text()),
            Err(e) => return Err(format!("{PORT_TAKEN}: INFO failed: {e}")),
        };
        let pid = info.get("process_id").and_then(|p| p.parse::<u32>().ok());
        if pid.is_some() && pid == own {
            return Ok(());
        }
        Err(format!(
            "{PORT_TAKEN}: port {} answered by process {pid:?}, not {own:?}",
            self.port
        ))
    }

    /// SIGKILL: nothing is saved or flushed beyond what the server already did.
    pub fn kill(&mut self) {
        self.conn.borrow_mut().take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port, dir and config. The port is
    /// free again only once the old process is gone: a bind that still fails is retried.
    pub fn restart(&mut self) {
        self.kill();
        let dir = self.dir().to_path_buf();
        let mut last = String::new();
        for _ in 0..10 {
            self.spawn();
            match self.wait_ready(&dir) {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") => {
                    self.kill();
                    last = log;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(log) => panic!("redis-server did not come back after restart:\n{log}"),
            }
        }
        panic!("redis-server did not come back after restart (port busy):\n{last}");
    }

    /// `SHUTDOWN NOSAVE`, then waits (as long as a startup may take) for the process to exit,
    /// and returns how it exited; panics with the log if it does not.
    pub fn shutdown(&mut self) -> ExitStatus {
        self.conn.borrow_mut().take();
        // The connection closes without a reply when the server exits.
        if let Ok(mut c) = Conn::connect_with(self.port, self.launch.reply_timeout) {
            let _ = c.try_cmd(&["SHUTDOWN", "NOSAVE"]);
        }
        let deadline = Instant::now() + self.launch.startup_deadline;
        loop {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("redis-server did not exit after SHUTDOWN:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server log plus anything it printed on stdout/stderr.
    pub fn log(&self) -> String {
        read_logs(self.dir())
    }

    /// A new connection.
    pub fn conn(&self) -> Conn {
        Conn::connect_with(self.port, self.launch.reply_timeout)
            .unwrap_or_else(|e| panic!("connect to port {}: {e}\n{}", self.port, self.log()))
    }

    /// One command on the server's shared connection.
    pub fn cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> Reply {
        let mut slot = self.conn.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.conn());
        }
        let conn = slot.as_mut().expect("connection");
        match conn.try_cmd(args) {
            Ok(r) => r,
            Err(e) => {
                let shown: Vec<String> = args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                    .collect();
                *slot = None;
                panic!(
                    "command {:?} on port {} failed: {e}\n{}",
                    shown,
                    self.port,
                    self.log()
                );
            }
        }
    }

    pub fn check(&self, token: impl AsRef<[u8]>) -> Reply {
        self.cmd(&[b"JWTDENY.CHECK".as_slice(), token.as_ref()])
    }

    pub fn revoke(&self, token: impl AsRef<[u8]>) -> Reply {
        self.cmd(&[b"JWTDENY.REVOKE".as_slice(), token.as_ref()])
    }

    pub fn config_set(&self, name: &str, value: &str) -> Reply {
        self.cmd(&["CONFIG", "SET", name, value])
    }

    /// `CONFIG GET <name>` → the value; panics if the config does not exist.
    pub fn config_get(&self, name: &str) -> String {
        let r = self.cmd(&["CONFIG", "GET", name]);
        match r.array() {
            [k, v] if k.text() == name => v.text(),
            _ => panic!("CONFIG GET {name}: unexpected reply {r}"),
        }
    }

    /// `PEXPIRETIME key` (-2: no key, -1: no expiry).
    pub fn pexpiretime(&self, key: &str) -> i64 {
        self.cmd(&["PEXPIRETIME", key]).int()
    }

    /// `DBSIZE`.
    pub fn dbsize(&self) -> i64 {
        self.cmd(&["DBSIZE"]).int()
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let r = self.cmd(&["KEYS", "*"]);
        let mut keys: Vec<String> = r.array().iter().map(Reply::text).collect();
        keys.sort();
        keys
    }

    /// The text of every AOF file in the server's AOF directory (the base may be an RDB
    /// preamble: only `.aof` files are read), in name order.
    pub fn aof_bytes(&self) -> Vec<u8> {
        let aof_dir = self.dir().join("appendonlydir");
        let mut names: Vec<PathBuf> = fs::read_dir(&aof_dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", aof_dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "aof"))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for p in names {
            out.extend(fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())));
        }
        out
    }

    /// The commands recorded in the AOF files, each as its arguments.
    pub fn aof_commands(&self) -> Vec<Vec<String>> {
        parse_commands(&self.aof_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            eprintln!(
                "---- redis-server log (port {}, {}), last {} lines ----\n{}\n---- end of log ----",
                self.port,
                self.dir().display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

fn read_logs(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["redis.log", "stdout.log"] {
        if let Ok(bytes) = fs::read(dir.join(name)) {
            if !bytes.is_empty() {
                out.push_str(&format!("[{name}]\n"));
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `deadline`.
#[track_caller]
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

// ---------------------------------------------------------------------------------------------
// INFO

/// `INFO` text as (field, value) in the server's order; section headings and blank lines are
/// skipped.
pub fn info_pairs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (k, v) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("INFO line without ':': {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// `INFO` text as field → value.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    info_pairs(text).into_iter().collect()
}

/// `INFO <section>` on the server's shared connection, as field → value.
pub fn info_section(server: &Server, section: &str) -> BTreeMap<String, String> {
    parse_info(&server.cmd(&["INFO", section]).text())
}

/// One field of `INFO <section>` on the server's shared connection.
#[track_caller]
pub fn info_field(server: &Server, section: &str, field: &str) -> String {
    let text = server.cmd(&["INFO", section]).text();
    parse_info(&text)
        .remove(field)
        .unwrap_or_else(|| panic!("INFO {section} has no {field}:\n{text}"))
}

/// One integer field of `INFO <section>`.
#[track_caller]
pub fn info_i64(server: &Server, section: &str, field: &str) -> i64 {
    let v = info_field(server, section, field);
    v.parse()
        .unwrap_or_else(|_| panic!("INFO {section} {field} is not an integer: {v:?}"))
}

// ---------------------------------------------------------------------------------------------
// RESP2 client

#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer; panics otherwise.
    #[track_caller]
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer reply, got {other}"),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// The whole error text (`None` if not an error).
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The first word of an error (`None` if not an error).
    pub fn err_code(&self) -> Option<&str> {
        self.error()
            .map(|e| e.split_once(' ').map(|(code, _)| code).unwrap_or(e))
    }

    /// A status or bulk string as text; panics otherwise.
    #[track_caller]
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("expected a string reply, got {other}"),
        }
    }

    /// The elements of a (non-nil) array; panics otherwise.
    #[track_caller]
    pub fn array(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(a)) => a,
            other => panic!("expected an array reply, got {other}"),
        }
    }

    /// Every byte of text in the reply (statuses, errors, bulks, integers), for searching.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.collect_bytes(&mut out);
        out
    }

    fn collect_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Status(s) | Reply::Error(s) => out.extend(s.as_bytes()),
            Reply::Int(i) => out.extend(i.to_string().as_bytes()),
            Reply::Bulk(Some(b)) => out.extend(b),
            Reply::Bulk(None) | Reply::Array(None) => {}
            Reply::Array(Some(a)) => {
                for r in a {
                    r.collect_bytes(out);
                    out.push(b'\n');
                }
            }
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(e) => write!(f, "-{e}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(None) => write!(f, "(nil array)"),
            Reply::Array(Some(a)) => {
                write!(f, "[")?;
                for (i, r) in a.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{r}")?;
                }
                write!(f, "]")
            }
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Asserts an integer reply.
#[track_caller]
pub fn assert_int(reply: &Reply, expected: i64, context: &str) {
    assert_eq!(
        reply,
        &Reply::Int(expected),
        "{context}: expected :{expected}, got {reply}"
    );
}

/// Asserts an error reply whose first word is `code`.
#[track_caller]
pub fn assert_err(reply: &Reply, code: &str, context: &str) {
    assert_eq!(
        reply.err_code(),
        Some(code),
        "{context}: expected a {code} error, got {reply}"
    );
}

/// Asserts that CHECK and REVOKE of `token` both answer an error whose first word is `code`.
#[track_caller]
pub fn assert_refused(server: &Server, token: impl AsRef<[u8]>, code: &str, context: &str) {
    let token = token.as_ref();
    assert_err(&server.check(token), code, &format!("CHECK {context}"));
    assert_err(&server.revoke(token), code, &format!("REVOKE {context}"));
}

/// Asserts `+OK`.
#[track_caller]
pub fn ok(r: Reply, what: &str) {
    assert_eq!(r, Reply::Status("OK".into()), "{what}");
}

/// One RESP command, appended to `out`.
pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.extend(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A client connection. Commands are either sent one by one ([`Conn::send`], [`Conn::cmd`]) or
/// queued and written together ([`Conn::queue`], [`Conn::flush`]) to pipeline them.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    queued: Vec<u8>,
}

impl Conn {
    pub fn connect(port: u16) -> io::Result<Conn> {
        Conn::connect_with(port, READ_TIMEOUT)
    }

    /// A connection whose reads and writes time out after `timeout`.
    pub fn connect_with(port: u16, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            queued: Vec::new(),
        })
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.writer
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    /// Queues one command (nothing is sent until [`Conn::flush`]).
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode(args, &mut self.queued);
    }

    /// Writes every queued command at once.
    pub fn flush(&mut self) -> io::Result<()> {
        let r = self.writer.write_all(&self.queued);
        self.queued.clear();
        r
    }

    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        self.queue(args);
        self.flush()
    }

    pub fn read(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader)
    }

    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Reply> {
        self.send(args)?;
        self.read()
    }

    /// Sends a command and reads its reply; panics on I/O errors.
    #[track_caller]
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        match self.try_cmd(args) {
            Ok(r) => r,
            Err(e) => panic!("I/O error: {e}"),
        }
    }
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad_data(format!(
            "line without CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|e| bad_data(format!("non-UTF-8 line: {e}")))
}

fn parse_len(s: &str) -> io::Result<i64> {
    s.parse::<i64>()
        .map_err(|_| bad_data(format!("bad length {s:?}")))
}

/// Reads one RESP2 value.
pub fn read_reply<R: BufRead>(r: &mut R) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Int(parse_len(rest)?)),
        "$" => {
            let n = parse_len(rest)?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(bad_data("bulk without CRLF".into()));
            }
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let n = parse_len(rest)?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_reply(r)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(bad_data(format!("unexpected reply line {line:?}"))),
    }
}

/// Parses a stream of RESP commands (an AOF file) into their arguments.
pub fn parse_commands(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut r = BufReader::new(bytes);
    let mut out = Vec::new();
    loop {
        if r.fill_buf().map(|b| b.is_empty()).unwrap_or(true) {
            return out;
        }
        match read_reply(&mut r) {
            Ok(Reply::Array(Some(items))) => {
                out.push(items.iter().map(Reply::text).collect());
            }
            Ok(other) => panic!("unexpected value in AOF: {other}"),
            Err(e) => panic!("cannot parse AOF after {} commands: {e}", out.len()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn algorithm(alg: &str) -> Algorithm {
    alg.parse()
        .unwrap_or_else(|_| panic!("unknown algorithm {alg}"))
}

/// The kid of the vectors' JWKS key that serves `alg`.
pub fn default_kid(alg: &str) -> &'static str {
    match alg {
        "HS256" => "shared-hs256",
        "HS384" => "shared-hs384",
        "HS512" => "shared-hs512",
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "shared-rsa",
        "ES256" => "shared-es256",
        "ES384" => "shared-es384",
        "EdDSA" => "shared-ed25519",
        _ => panic!("no key for {alg}"),
    }
}

/// The bytes of tests/vectors/private/<name> (a PEM file, or an HMAC secret).
pub fn private_key(name: &str) -> Vec<u8> {
    let p = vectors_dir().join("private").join(name);
    fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The signing key in tests/vectors/private for `alg`.
pub fn encoding_key(alg: &str) -> EncodingKey {
    let file = private_key;
    let key = match alg {
        "HS256" => EncodingKey::from_secret(&file("shared-hs256.key")),
        "HS384" => EncodingKey::from_secret(&file("shared-hs384.key")),
        "HS512" => EncodingKey::from_secret(&file("shared-hs512.key")),
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
            EncodingKey::from_rsa_pem(&file("shared-rsa.pem"))
        }
        "ES256" => EncodingKey::from_ec_pem(&file("shared-es256.pem")),
        "ES384" => EncodingKey::from_ec_pem(&file("shared-es384.pem")),
        "EdDSA" => EncodingKey::from_ed_pem(&file("shared-ed25519.pem")),
        _ => panic!("no key for {alg}"),
    };
    key.unwrap_or_else(|e| panic!("load key for {alg}: {e}"))
}

/// Every algorithm the vectors' JWKS can serve.
pub const ALL_ALGS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Whether `code` is the first word of an error reply a token command may give: the module's
/// token codes (the core's one list), or `ERR` for wrong arity and syntax.
pub fn is_error_code(code: &str) -> bool {
    code == "ERR" || jwtdeny_core::error::CODES.contains(&code)
}

/// The base64url alphabet (RFC 4648 §5).
pub const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A token signed with jsonwebtoken's `encode` (header `{"typ":"JWT","alg":..,"kid":..}`).
pub fn mint(alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm(alg));
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &encoding_key(alg))
        .unwrap_or_else(|e| panic!("mint {alg}: {e}"))
}

/// A token for `alg` with the vectors' kid for it.
pub fn mint_default(alg: &str, claims: &Value) -> String {
    mint(alg, Some(default_kid(alg)), claims)
}

/// `{"sub": sub, "iat": iat, "exp": exp}`.
pub fn claims(sub: &str, iat: i64, exp: i64) -> Value {
    serde_json::json!({ "sub": sub, "iat": iat, "exp": exp })
}

/// A token whose header and payload are exactly the given text, correctly signed for `alg`.
pub fn sign_raw(alg: &str, header_json: &str, payload_json: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(header_json.as_bytes()),
        b64(payload_json.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &encoding_key(alg), algorithm(alg))
        .unwrap_or_else(|e| panic!("sign {alg}: {e}"));
    format!("{input}.{sig}")
}

/// A token built by hand from header text, payload text and signature bytes.
pub fn raw_token(header_json: &str, payload_json: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header_json.as_bytes()),
        b64(payload_json.as_bytes()),
        b64(sig)
    )
}

// ---------------------------------------------------------------------------------------------
// Vectors

pub struct Vector {
    pub name: String,
    pub token: String,
    pub expect: String,
    pub sub: Option<String>,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
}

pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// tests/vectors/vectors.json, in file order.
pub fn vectors() -> Vec<Vector> {
    let doc = read_json(&vectors_dir().join("vectors.json"));
    let list = doc["vectors"].as_array().expect("vectors[]");
    list.iter()
        .map(|v| Vector {
            name: v["name"].as_str().expect("name").to_string(),
            token: v["token"].as_str().expect("token").to_string(),
            expect: v["expect"].as_str().expect("expect").to_string(),
            sub: v.get("sub").and_then(Value::as_str).map(str::to_string),
            iat: v.get("iat").and_then(Value::as_i64),
            exp: v.get("exp").and_then(Value::as_i64),
        })
        .collect()
}

/// The vector called `name`.
pub fn vector(name: &str) -> Vector {
    vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// tests/vectors/jwks.json.
pub fn jwks() -> Value {
    read_json(&jwks_path())
}

/// The key of the vectors' JWKS with this kid.
pub fn jwk(kid: &str) -> Value {
    jwks()["keys"]
        .as_array()
        .expect("keys[]")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no key {kid}"))
        .clone()
}

/// Writes `{"keys": keys}` to `path` atomically (write a sibling, then rename).
/// A JWKS of the vector keys `vector_kid`, each renamed `kid` (the same key under another kid:
/// a "rotation" whose tokens the vector private keys can still sign).
pub fn jwks_of(keys: &[(&str, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(vector_kid, kid)| {
            let mut k = jwk(vector_kid);
            k["kid"] = serde_json::json!(kid);
            k
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

pub fn write_jwks(path: &Path, keys: &[Value]) {
    let text = serde_json::to_string_pretty(&serde_json::json!({ "keys": keys })).expect("json");
    write_atomic(path, text.as_bytes());
}

pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).expect("create");
        f.write_all(bytes).expect("write");
        f.sync_all().expect("sync");
    }
    fs::rename(&tmp, path).expect("rename");
}

/// The denylist key for the default prefix.
pub fn deny_key(sub: &str, iat: i64) -> String {
    format!("jwtdeny:{{{sub}}}:{iat}")
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// DPoP (RFC 9449)

/// A DPoP key: one of the vectors' private keys, its public JWK as a proof carries it, and its
/// RFC 7638 thumbprint (what a bound token's `cnf.jkt` names).
pub struct ProofKey {
    pub alg: &'static str,
    pub jwk: Value,
    pub jkt: String,
}

impl ProofKey {
    pub fn of(alg: &'static str) -> ProofKey {
        let mut jwk = jwk(default_kid(alg));
        let members = jwk.as_object_mut().expect("jwk object");
        for m in ["kid", "alg", "use", "key_ops"] {
            members.remove(m);
        }
        let jkt = jwtdeny_core::dpop::thumbprint(members).expect("thumbprint");
        ProofKey { alg, jwk, jkt }
    }

    /// A proof with the standard header (`typ`, `alg`, `jwk`) over `claims`.
    pub fn proof(&self, claims: &Value) -> String {
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk});
        self.proof_with(&header, claims)
    }

    /// A proof with exactly this header, signed by this key.
    pub fn proof_with(&self, header: &Value, claims: &Value) -> String {
        sign_raw(self.alg, &header.to_string(), &claims.to_string())
    }

    /// A fresh proof for a request with `token`.
    pub fn proof_for(&self, token: &str, method: &str, url: &str) -> String {
        self.proof(&proof_claims(token, method, url))
    }
}

/// The claims of a fresh proof: a new `jti`, `iat` now, `ath` of `token`.
pub fn proof_claims(token: &str, method: &str, url: &str) -> Value {
    static N: AtomicUsize = AtomicUsize::new(0);
    let jti = format!(
        "jti-{}-{}-{}",
        std::process::id(),
        now_ms(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    serde_json::json!({
        "jti": jti,
        "htm": method,
        "htu": url,
        "iat": now(),
        "ath": jwtdeny_core::dpop::access_token_hash(token.as_bytes()),
    })
}

/// An HS256 access token of `sub` bound to the DPoP key `jkt`.
pub fn bound_token(sub: &str, jkt: &str) -> String {
    mint_default(
        "HS256",
        &serde_json::json!({"sub": sub, "iat": now(), "exp": FAR_EXP, "cnf": {"jkt": jkt}}),
    )
}

/// `JWTDENY.CHECKDPOP token proof method url [extra…]`.
pub fn checkdpop(
    server: &Server,
    token: &str,
    proof: &str,
    method: &str,
    url: &str,
    extra: &[&str],
) -> Reply {
    let mut args = vec!["JWTDENY.CHECKDPOP", token, proof, method, url];
    args.extend_from_slice(extra);
    server.cmd(&args)
}
