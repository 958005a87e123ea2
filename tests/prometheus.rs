//! Prometheus (issue 21 §3): redis_exporter exports the INFO sections it knows and drops a
//! module's own, so jwtdeny's figures reach /metrics through its Lua script collector with
//! examples/prometheus/jwtdeny.lua. This runs the real exporter (Debian's
//! prometheus-redis-exporter, which `make test` installs; or REDIS_EXPORTER_BIN) against a
//! server with the module, and against one without it.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn exporter_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("REDIS_EXPORTER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["prometheus-redis-exporter", "redis_exporter"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// The exporter, stopped when dropped.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(bin: &PathBuf, redis_port: u16) -> Exporter {
        let port = free_port();
        let script = repo_root().join("examples/prometheus/jwtdeny.lua");
        let child = Command::new(bin)
            .arg("-redis.addr")
            .arg(format!("redis://127.0.0.1:{redis_port}"))
            .arg("-script")
            .arg(&script)
            .arg("-web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Exporter { child, port }
    }

    /// `/metrics`, once the exporter answers.
    fn metrics(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let req = format!(
                    "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
                    self.port
                );
                let mut body = String::new();
                if s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut body).is_ok() {
                    return body;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the exporter did not answer on /metrics"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `redis_script_values{key="<key>"}`.
fn script_value(metrics: &str, key: &str) -> Option<f64> {
    let prefix = format!("redis_script_values{{key=\"{key}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn redis_exporter_shows_the_jwtdeny_figures() {
    let Some(bin) = exporter_bin() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus-redis-exporter not found: make test installs it (make deps-test)"
        );
        eprintln!("skipped: no prometheus-redis-exporter or redis_exporter on PATH");
        return;
    };
    let server = Server::with_vector_keys();
    let token = mint_default("ES256", &claims("prom", now() - 10, FAR_EXP));
    assert_int(&server.check(&token), 1, "check");
    assert_int(&server.revoke(&token), 1, "revoke");
    assert_int(&server.check(&token), 0, "check revoked");
    assert_refused(&server, "not-a-token", "MALFORMED", "malformed");
    let exporter = Exporter::start(&bin, server.port);
    let m = exporter.metrics();
    let want = [
        ("jwtdeny_loaded", 1.0),
        ("jwtdeny_checks_active", 1.0),
        ("jwtdeny_checks_revoked", 1.0),
        ("jwtdeny_checks_malformed", 1.0),
        ("jwtdeny_revokes_new", 1.0),
        ("jwtdeny_last_reload_ok", 1.0),
        (
            "jwtdeny_keys_loaded",
            info_i64(&server, "jwtdeny", "jwtdeny_keys_loaded") as f64,
        ),
    ];
    for (key, value) in want {
        assert_eq!(script_value(&m, key), Some(value), "{key} in:\n{m}");
    }
    // Every numeric INFO field is there.
    for (field, value) in info_pairs(&server.cmd(&["INFO", "jwtdeny"]).text()) {
        if value.parse::<i64>().is_ok() && !field.starts_with("jwtdeny_checks") {
            assert!(script_value(&m, &field).is_some(), "{field} missing:\n{m}");
        }
    }

    // A server without the module: the script says so instead of failing the scrape.
    let plain = ServerBuilder::new().without_module().start();
    let exporter = Exporter::start(&bin, plain.port);
    let m = exporter.metrics();
    assert_eq!(script_value(&m, "jwtdeny_loaded"), Some(0.0), "{m}");
    assert!(m.contains("redis_up 1"), "{m}");
}

#[test]
fn redis_exporter_shows_each_issuers_figures() {
    let Some(bin) = exporter_bin() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus-redis-exporter not found"
        );
        eprintln!("skipped: no prometheus-redis-exporter or redis_exporter on PATH");
        return;
    };
    let mut b = ServerBuilder::new().vector_keys();
    let registry = b.dir().join("issuers.json");
    let body = serde_json::json!({"issuers": {"acme-idp": {
        "issuer": "https://acme.example/", "keys-file": jwks_path().to_string_lossy()}}});
    std::fs::write(&registry, body.to_string()).expect("write the registry");
    b = b.conf(format!(
        "jwtdeny.issuers-file {}",
        conf_quote(&registry.to_string_lossy())
    ));
    let server = b.start();
    let mut c = claims("prom", now() - 10, FAR_EXP);
    c["iss"] = serde_json::json!("https://acme.example/");
    assert_int(&server.check(mint_default("ES256", &c)), 1, "acme's token");
    c["sub"] = serde_json::json!("other");
    let forged = mint_default("ES256", &c).replace('.', ".x");
    assert!(server.check(&forged).is_error());
    let exporter = Exporter::start(&bin, server.port);
    let m = exporter.metrics();
    let keys = info_i64(&server, "jwtdeny", "jwtdeny_keys_loaded") as f64;
    for (key, value) in [
        ("jwtdeny_issuer_acme-idp_checks_active", 1.0),
        ("jwtdeny_issuer_acme-idp_keys_loaded", keys),
        ("jwtdeny_issuer_acme-idp_sources", 1.0),
        ("jwtdeny_checks_active", 1.0),
    ] {
        assert_eq!(script_value(&m, key), Some(value), "{key} in:\n{m}");
    }
}
