//! Real redis-servers with the module on free loopback ports (one standalone server, or a
//! 3-master cluster), stopped on drop, and tokens minted with the test vectors' keys.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const AUDIENCE: &str = "my-app";
/// `exp` of long-lived tokens: 2100-01-01.
pub const FAR_EXP: i64 = 4_102_444_800;
const STARTUP: Duration = Duration::from_secs(15);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$JWTDENY_MODULE`, else `<repo>/target/release/libjwtdeny.so`.
pub fn module_path() -> PathBuf {
    let path = std::env::var_os("JWTDENY_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/libjwtdeny.so"));
    assert!(
        path.is_file(),
        "no module at {}: run `cargo build --release` at the repository root, or set JWTDENY_MODULE",
        path.display()
    );
    path
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port that was free a moment ago; for cluster nodes its bus port (+10000) too.
fn free_port(cluster: bool) -> u16 {
    if !cluster {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        return l.local_addr().expect("local_addr").port();
    }
    for _ in 0..1000 {
        let p = 20000 + (random_u64() % 35000) as u16;
        if port_free(p) && port_free(p + 10000) {
            return p;
        }
    }
    panic!("no free port pair found")
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "jwtdeny-rust-client-{}-{}-{tag}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// One redis-server with jwtdeny, killed (and its directory removed) on drop.
pub struct Server {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// A standalone server with the vectors' keys and `jwtdeny.logout-audience my-app`.
    pub fn start() -> Server {
        Server::spawn(&[], "standalone")
    }

    fn spawn(extra: &[&str], tag: &str) -> Server {
        let cluster = !extra.is_empty();
        for _ in 0..5 {
            let port = free_port(cluster);
            let dir = fresh_dir(&format!("{tag}-{port}"));
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .args(extra)
                .arg("--loadmodule")
                .arg(module_path())
                .arg("keys-file")
                .arg(repo_root().join("tests/vectors/jwks.json"))
                .args(["logout-audience", AUDIENCE])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd.spawn().expect("spawn redis-server");
            let mut server = Server {
                port,
                dir,
                child: Some(child),
            };
            if server.wait_ready() {
                return server;
            }
            let log = server.log_tail();
            if !log.contains("Address already in use") {
                panic!("redis-server on port {port} did not start:\n{log}");
            }
        }
        panic!("could not start a redis-server after 5 attempts")
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if let Ok(mut conn) = self.client().get_connection() {
                if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} not ready in {STARTUP:?}:\n{}",
            self.port,
            self.log_tail()
        )
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }

    /// A plain connection with a read timeout, for assertions.
    pub fn conn(&self) -> redis::Connection {
        let conn = self.client().get_connection().expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("server {} log:\n{}", self.port, self.log_tail());
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters, no replicas, every slot covered, stopped on drop.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let cluster_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ];
        let nodes: Vec<Server> = (0..3)
            .map(|i| Server::spawn(&cluster_args, &format!("node{i}")))
            .collect();
        let cluster = Cluster { nodes };
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("[OK] All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy();
        cluster
    }

    /// Every node says `cluster_state:ok` and knows all three masters.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let healthy = self.nodes.iter().all(|n| {
                let mut conn = n.conn();
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn)
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:3")
                    && info.contains("cluster_slots_ok:16384")
            });
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::builder(self.urls())
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(10))
            .build()
            .expect("cluster client")
    }

    /// The node that serves `key`'s slot (asked of the cluster, not computed here).
    pub fn owner(&self, key: &str) -> &Server {
        let mut conn = self.nodes[0].conn();
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<redis::Value>(&mut conn)
            .map(value_to_json)
            .expect("CLUSTER SLOTS")
            .as_array()
            .expect("array")
            .clone();
        for range in ranges {
            let (lo, hi) = (range[0].as_i64().unwrap(), range[1].as_i64().unwrap());
            if (lo..=hi).contains(&slot) {
                let port = range[2][1].as_i64().unwrap() as u16;
                return self
                    .nodes
                    .iter()
                    .find(|n| n.port == port)
                    .expect("a node of ours");
            }
        }
        panic!("no node serves slot {slot}")
    }
}

fn value_to_json(v: redis::Value) -> Value {
    match v {
        redis::Value::Int(i) => json!(i),
        redis::Value::BulkString(b) => json!(String::from_utf8_lossy(&b)),
        redis::Value::SimpleString(s) => json!(s),
        redis::Value::Array(items) => Value::Array(items.into_iter().map(value_to_json).collect()),
        _ => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256_key() -> EncodingKey {
    let secret = std::fs::read(repo_root().join("tests/vectors/private/shared-hs256.key"))
        .expect("shared-hs256.key");
    EncodingKey::from_secret(&secret).expect("HS256 key")
}

fn es256_key() -> EncodingKey {
    let pem = std::fs::read(repo_root().join("tests/vectors/private/shared-es256.pem"))
        .expect("shared-es256.pem");
    EncodingKey::from_ec_pem(&pem).expect("ES256 key")
}

/// A compact JWS of exactly this header and payload JSON.
pub fn sign(header: &Value, payload: &Value) -> String {
    let alg = match header["alg"].as_str() {
        Some("ES256") => Algorithm::ES256,
        _ => Algorithm::HS256,
    };
    let key = if alg == Algorithm::ES256 {
        es256_key()
    } else {
        hs256_key()
    };
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).expect("sign");
    format!("{input}.{sig}")
}

/// An HS256 access token of `sub` (kid `shared-hs256`), issued now, `extra` merged in (null
/// removes a claim).
pub fn token(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "iat": now(), "exp": FAR_EXP});
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    sign(
        &json!({"alg": "HS256", "kid": "shared-hs256", "typ": "JWT"}),
        &claims,
    )
}

/// An OIDC back-channel logout token for `sub` (and `sid`), audience `my-app`.
pub fn logout_token(sub: &str, sid: Option<&str>) -> String {
    let mut claims = json!({
        "sub": sub, "aud": AUDIENCE, "iat": now(), "exp": now() + 120, "jti": format!("j{}", random_u64()),
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    if let Some(sid) = sid {
        claims["sid"] = json!(sid);
    }
    sign(
        &json!({"alg": "HS256", "kid": "shared-hs256", "typ": "logout+jwt"}),
        &claims,
    )
}

/// The client's DPoP key: the vectors' P-256 key, as a public JWK.
pub fn dpop_jwk() -> Value {
    json!({
        "kty": "EC", "crv": "P-256",
        "x": "c9CaW_jvm421o0E0s-rp_u4IrGUmsDQbGoJOU4iqj_A",
        "y": "X-18RLR6rC_Zv0xej28GCDUUW2ucomsOekPbupi5oX0",
    })
}

/// The RFC 7638 thumbprint of [`dpop_jwk`].
pub fn dpop_jkt() -> String {
    let jwk = dpop_jwk();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// An access token of `sub` bound to [`dpop_jwk`].
pub fn dpop_token(sub: &str) -> String {
    token(sub, json!({"cnf": {"jkt": dpop_jkt()}}))
}

/// A fresh DPoP proof for `token`, `method` and `url`.
pub fn dpop_proof(token: &str, method: &str, url: &str) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_jwk()});
    let claims = json!({
        "jti": format!("proof-{}", random_u64()), "htm": method, "htu": url, "iat": now(),
        "ath": b64(&Sha256::digest(token.as_bytes())),
    });
    sign(&header, &claims)
}
