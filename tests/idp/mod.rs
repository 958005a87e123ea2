//! A test identity provider: an HTTPS server (and a plain HTTP twin) on free loopback ports,
//! with a CA and a server certificate made for each run, whose every answer the test controls
//! per path (status and reason phrase, headers, body, delay, a body dripped slowly, redirects)
//! and whose request count per path it reads.
//!
//! It runs inside the test process, on its own threads: no interpreter to find, no readiness
//! to wait for (the sockets listen before `start` returns), nothing left behind when a test
//! fails. The module under test reaches it like any provider, trusting `ca_file()` through
//! `jwtdeny.jwks-ca-file`.
//!
//! A test binary declares `mod common; mod idp;` (it uses `common::TempDir`).
#![allow(dead_code)]

use super::common::TempDir;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the key set is served unless a test says otherwise.
pub const JWKS_PATH: &str = "/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// No connection may hold a handler thread longer than this.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// What the server answers on one path.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Sent as is after the status code: any bytes a test wants in the status line.
    pub reason: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Send `Content-Length`; without it the body ends when the connection closes.
    pub content_length: bool,
    /// Wait this long after reading the request before answering.
    pub delay: Duration,
    /// Send the body one byte at a time with this pause between bytes.
    pub drip: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            reason: b"Whatever".to_vec(),
            headers: Vec::new(),
            body: body.into(),
            content_length: true,
            delay: Duration::ZERO,
            drip: None,
        }
    }

    pub fn json(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(200, body).header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    requests: HashMap<String, usize>,
    last_head: HashMap<String, String>,
    delay: Duration,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take the server down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Idp {
    shared: Arc<Shared>,
    https: SocketAddr,
    http: SocketAddr,
    dir: TempDir,
    accept_threads: Vec<JoinHandle<()>>,
}

impl Idp {
    /// Starts the server with an empty key set at [`JWKS_PATH`] and no discovery document.
    pub fn start() -> Idp {
        let dir = TempDir::new("idp");
        let (ca_pem, leaf_chain, leaf_key) = make_certificates("jwtdeny test CA");
        std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write ca.pem");
        let (other_ca, _, _) = make_certificates("jwtdeny other test CA");
        std::fs::write(dir.path().join("other-ca.pem"), other_ca).expect("write other-ca.pem");

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(leaf_chain, leaf_key)
            .expect("server certificate");
        let tls = Arc::new(tls);

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let https_listener = TcpListener::bind("127.0.0.1:0").expect("bind https");
        let http_listener = TcpListener::bind("127.0.0.1:0").expect("bind http");
        let https = https_listener.local_addr().expect("https addr");
        let http = http_listener.local_addr().expect("http addr");
        let accept_threads = vec![
            spawn_acceptor(https_listener, shared.clone(), Some(tls)),
            spawn_acceptor(http_listener, shared.clone(), None),
        ];
        let idp = Idp {
            shared,
            https,
            http,
            dir,
            accept_threads,
        };
        idp.set_jwks(r#"{"keys":[]}"#);
        idp
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }

    /// The same server without TLS: `http://127.0.0.1:<port><path>`, for refusal tests (its
    /// request count shows whether anything connected).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The issuer whose discovery document [`Idp::set_discovery`] serves at the root.
    pub fn issuer(&self) -> String {
        self.url("")
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A PEM file of another CA, which did not sign the server's certificate.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// A directory removed with the server, for files a test makes.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Answers `path` with `reply` from now on.
    pub fn set(&self, path: &str, reply: Reply) {
        self.shared.state().routes.insert(path.to_string(), reply);
    }

    /// Changes the answer on `path` (a 200 with an empty body if there was none).
    pub fn update(&self, path: &str, change: impl FnOnce(&mut Reply)) {
        let mut state = self.shared.state();
        let reply = state
            .routes
            .entry(path.to_string())
            .or_insert_with(|| Reply::new(200, ""));
        change(reply);
    }

    /// Serves `json` as the key set at [`JWKS_PATH`], status 200, no other headers.
    pub fn set_jwks(&self, json: &str) {
        self.set(JWKS_PATH, Reply::json(json));
    }

    pub fn set_status(&self, path: &str, status: u16) {
        self.update(path, |r| r.status = status);
    }

    pub fn set_reason(&self, path: &str, reason: &[u8]) {
        self.update(path, |r| r.reason = reason.to_vec());
    }

    pub fn set_body(&self, path: &str, body: impl Into<Vec<u8>>) {
        let body = body.into();
        self.update(path, |r| r.body = body);
    }

    /// Adds a header to the answer on `path` (repeat for several lines of one name).
    pub fn set_header(&self, path: &str, name: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        self.update(path, |r| r.headers.push((name.to_string(), value)));
    }

    /// A delay before every answer, on every path.
    pub fn set_delay(&self, ms: u64) {
        self.shared.state().delay = Duration::from_millis(ms);
    }

    /// A delay before answering on `path` only.
    pub fn set_path_delay(&self, path: &str, ms: u64) {
        self.update(path, |r| r.delay = Duration::from_millis(ms));
    }

    /// Sends the body on `path` one byte every `pause`.
    pub fn set_drip(&self, path: &str, pause: Duration) {
        self.update(path, |r| r.drip = Some(pause));
    }

    /// Answers `path` with a redirect (`status` 301/302/303/307/308) to `to`.
    pub fn redirect(&self, path: &str, status: u16, to: &str) {
        self.set(
            path,
            Reply::new(status, "").header("Location", to.as_bytes().to_vec()),
        );
    }

    /// Serves a discovery document for `issuer` (which must be this server's, with any path)
    /// naming `issuer_in_doc` and `jwks_uri`.
    pub fn set_discovery(&self, issuer: &str, issuer_in_doc: &str, jwks_uri: &str) {
        let base = issuer.strip_suffix('/').unwrap_or(issuer);
        let root = self.issuer();
        let path = base
            .strip_prefix(root.as_str())
            .unwrap_or_else(|| panic!("{issuer} is not on this server ({root})"));
        let doc = serde_json::json!({
            "issuer": issuer_in_doc,
            "jwks_uri": jwks_uri,
            "authorization_endpoint": format!("{base}/authorize"),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        self.set(
            &format!("{path}{DISCOVERY_PATH}"),
            Reply::json(doc.to_string()),
        );
    }

    /// Requests read on `path` (without query) so far.
    pub fn requests(&self, path: &str) -> usize {
        self.shared.state().requests.get(path).copied().unwrap_or(0)
    }

    /// The request line and headers of the last request on `path`.
    pub fn last_request(&self, path: &str) -> Option<String> {
        self.shared.state().last_head.get(path).cloned()
    }

    /// Requests read on any path of either port so far.
    pub fn total_requests(&self) -> usize {
        self.shared.state().requests.values().sum()
    }

    /// Waits until `path` has seen `n` requests, up to `deadline`; returns the count.
    pub fn wait_requests(&self, path: &str, n: usize, deadline: Duration) -> usize {
        let until = Instant::now() + deadline;
        loop {
            let seen = self.requests(path);
            if seen >= n || Instant::now() >= until {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept() calls; each then sees `stop`.
        for addr in [self.https, self.http] {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        for t in self.accept_threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A CA named `ca_name` and a certificate it signed for `127.0.0.1` and `localhost`: (CA PEM, server chain,
/// server key).
fn make_certificates(
    ca_name: &str,
) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().expect("server key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "jwtdeny test IdP");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("server certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca_cert.pem(), vec![leaf_cert.der().clone()], key)
}

fn spawn_acceptor(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<ServerConfig>>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("test-idp-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                let tls = tls.clone();
                // Detached: every wait in a handler is bounded and ends early on `stop`.
                let _ = std::thread::Builder::new()
                    .name("test-idp-conn".into())
                    .spawn(move || {
                        let _ = serve(stream, &shared, tls);
                    });
            }
        })
        .expect("spawn acceptor")
}

fn serve(stream: TcpStream, shared: &Shared, tls: Option<Arc<ServerConfig>>) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    match tls {
        Some(cfg) => {
            let conn = ServerConnection::new(cfg).map_err(io::Error::other)?;
            let mut tls = StreamOwned::new(conn, stream);
            let result = answer(&mut tls, shared);
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tls.sock.shutdown(Shutdown::Both);
            result
        }
        None => {
            let mut plain = stream;
            let result = answer(&mut plain, shared);
            let _ = plain.shutdown(Shutdown::Both);
            result
        }
    }
}

/// Reads one request and writes the configured answer; the connection then closes.
fn answer(stream: &mut (impl Read + Write), shared: &Shared) -> io::Result<()> {
    let head = read_head(stream)?;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(_method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::other("not an HTTP request"));
    };
    let path = target.split('?').next().unwrap_or_default().to_string();
    let (reply, delay) = {
        let mut state = shared.state();
        *state.requests.entry(path.clone()).or_insert(0) += 1;
        state
            .last_head
            .insert(path.clone(), String::from_utf8_lossy(&head).into_owned());
        let reply = state
            .routes
            .get(&path)
            .cloned()
            .unwrap_or_else(|| Reply::new(404, "not here"));
        (reply, state.delay)
    };
    pause(shared, delay + reply.delay);

    let mut out = format!("HTTP/1.1 {} ", reply.status).into_bytes();
    out.extend_from_slice(&reply.reason);
    out.extend_from_slice(b"\r\nConnection: close\r\n");
    for (name, value) in &reply.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if reply.content_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", reply.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out)?;
    match reply.drip {
        None => stream.write_all(&reply.body)?,
        Some(every) => {
            for b in &reply.body {
                stream.write_all(&[*b])?;
                stream.flush()?;
                if !pause(shared, every) {
                    break;
                }
            }
        }
    }
    stream.flush()
}

fn read_head(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// Sleeps `d` in small steps; false if the server is stopping.
fn pause(shared: &Shared, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20)),
        );
    }
    !shared.stop.load(Ordering::SeqCst)
}
