//! The `jwtdeny` INFO section (issue 3 §4, issue 4 §3): every counter moves exactly as a known
//! sequence of commands says, reloads are recorded, and no key material is ever shown.

use crate::common;
use crate::support;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;
use support::*;

/// Every field the section must have, in the documented order.
const FIELDS: [&str; 43] = [
    "checks_active",
    "checks_revoked",
    "checks_malformed",
    "checks_badalg",
    "checks_nokey",
    "checks_badsig",
    "checks_badclaims",
    "checks_expired",
    "checks_notyet",
    "checks_dpop",
    "checks_other_errors",
    "revokes_new",
    "revokes_already",
    "revokes_errors",
    "revokeall_calls",
    "logouts_session",
    "logouts_subject",
    "logouts_session_as_subject",
    "logouts_already",
    "logouts_errors",
    "revokesessions_new",
    "revokesessions_already",
    "dpop_proofs_accepted",
    "dpop_replays_refused",
    "session_revocation",
    "keys_loaded",
    "keys_file",
    "last_reload_time",
    "last_reload_result",
    "verify_cache_entries",
    "verify_cache_capacity",
    "verify_cache_hits",
    "verify_cache_misses",
    "verify_cache_memory_bytes",
    "verifications_offloaded",
    "verifications_inline",
    "jwks_uri",
    "jwks_last_fetch_time",
    "jwks_last_fetch_result",
    "jwks_fetches_ok",
    "jwks_fetches_failed",
    "jwks_unknown_kid_fetches",
    "jwks_next_fetch_time",
];

/// The counters: the first fields of the section.
const COUNTERS: &[&str] = FIELDS.split_at(24).0;

fn counters(server: &Server) -> BTreeMap<String, i64> {
    let m = info(server);
    COUNTERS
        .iter()
        .map(|c| {
            let v = m
                .get(*c)
                .unwrap_or_else(|| panic!("INFO jwtdeny has no {c}: {m:?}"));
            (c.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn section_has_every_field_in_order() {
    let t0 = now();
    let (server, path) = server_with_own_keys_file();
    let text = server.cmd(&["INFO", "jwtdeny"]).text();
    let names: Vec<String> = info_pairs(&text)
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("jwtdeny_").map(str::to_string))
        .collect();
    assert_eq!(names, FIELDS.to_vec(), "INFO jwtdeny fields:\n{text}");
    let m = info(&server);
    for &c in COUNTERS {
        assert_eq!(m[c], "0", "{c} at start");
    }
    assert_eq!(m["keys_loaded"], "7");
    assert_eq!(m["keys_file"], path.to_string_lossy());
    assert_eq!(m["last_reload_result"], "ok", "the startup load counts");
    let t: i64 = m["last_reload_time"].parse().unwrap();
    assert!(
        (t0..=now()).contains(&t),
        "last_reload_time {t} not in [{t0}, now]"
    );
    assert_eq!(m["verify_cache_entries"], "0");
    assert_eq!(
        m["verify_cache_capacity"],
        server.config_get("jwtdeny.verify-cache-size")
    );
    assert_eq!(m["verify_cache_hits"], "0");
    assert_eq!(m["verify_cache_misses"], "0");
    m["verify_cache_memory_bytes"]
        .parse::<u64>()
        .expect("memory bytes is a number");
    // The module section is part of INFO everything too.
    let all = server.cmd(&["INFO", "everything"]).text();
    assert!(all.contains("jwtdeny_checks_active:"), "INFO everything");
}

#[test]
fn without_a_keys_file_nothing_was_ever_loaded() {
    let server = ServerBuilder::new().start();
    let m = info(&server);
    assert_eq!(m["keys_loaded"], "0");
    assert_eq!(m["keys_file"], "");
    assert_eq!(m["last_reload_result"], "never");
    assert_eq!(m["last_reload_time"], "0");
    assert_err(
        &server.check(vector("valid-HS256").token),
        "NOKEY",
        "CHECK without keys",
    );
    assert_eq!(counters(&server)["checks_nokey"], 1);
}

#[test]
fn counters_follow_a_known_sequence() {
    let server = Server::with_vector_keys();
    let mut want: BTreeMap<String, i64> = COUNTERS.iter().map(|c| (c.to_string(), 0)).collect();
    let mut expect = |server: &Server, changes: &[(&str, i64)], what: &str| {
        for (c, d) in changes {
            *want.get_mut(*c).unwrap_or_else(|| panic!("no counter {c}")) += d;
        }
        assert_eq!(counters(server), want, "after {what}");
    };
    expect(&server, &[], "start");

    let hs = vector("valid-HS256").token;
    let rs = vector("valid-RS256").token;
    assert_int(&server.check(&hs), 1, "CHECK");
    assert_int(&server.check(&hs), 1, "CHECK again");
    expect(&server, &[("checks_active", 2)], "two active CHECKs");
    server
        .cmd(&["JWTDENY.CHECK", rs.as_str(), "WITHCLAIMS"])
        .array();
    expect(&server, &[("checks_active", 1)], "CHECK WITHCLAIMS");

    assert_int(&server.revoke(&hs), 1, "REVOKE");
    expect(&server, &[("revokes_new", 1)], "REVOKE");
    assert_int(&server.revoke(&hs), 0, "REVOKE again");
    expect(&server, &[("revokes_already", 1)], "REVOKE again");
    assert_int(&server.check(&hs), 0, "CHECK revoked");
    server
        .cmd(&["JWTDENY.CHECK", hs.as_str(), "WITHCLAIMS"])
        .array();
    expect(
        &server,
        &[("checks_revoked", 2)],
        "CHECKs of a revoked token",
    );

    for (name, counter) in [
        ("two-segments", "checks_malformed"),
        ("alg-none", "checks_badalg"),
        ("unknown-kid", "checks_nokey"),
        ("bad-signature", "checks_badsig"),
        ("missing-sub", "checks_badclaims"),
        ("expired", "checks_expired"),
        ("not-yet-valid", "checks_notyet"),
    ] {
        let v = vector(name);
        assert_err(&server.check(&v.token), &v.expect, name);
        expect(&server, &[(counter, 1)], &format!("CHECK {name}"));
    }
    assert_err(&server.check(vector("expired").token), "EXPIRED", "again");
    assert_err(
        &server.cmd(&[
            "JWTDENY.CHECK",
            vector("expired").token.as_str(),
            "WITHCLAIMS",
        ]),
        "EXPIRED",
        "WITHCLAIMS",
    );
    expect(&server, &[("checks_expired", 2)], "two more EXPIRED");

    // A keyed CHECK naming keys that are not the token's: a usage error after verification.
    let r = server.cmd(&[
        "JWTDENY.KCHECK",
        "jwtdeny:{x}:1",
        "jwtdeny:{x}",
        rs.as_str(),
    ]);
    assert_err(&r, "ERR", "KCHECK with foreign keys");
    expect(
        &server,
        &[("checks_other_errors", 1)],
        "KCHECK with foreign keys",
    );

    assert_err(
        &server.revoke(vector("expired").token),
        "EXPIRED",
        "REVOKE expired",
    );
    assert_err(
        &server.revoke(vector("bad-signature").token),
        "BADSIG",
        "REVOKE forged",
    );
    expect(&server, &[("revokes_errors", 2)], "refused REVOKEs");

    let t = now() - 10;
    let at = t.to_string();
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "nina", "AT", &at]),
        t,
        "REVOKEALL",
    );
    assert_int(
        &server.cmd(&["JWTDENY.REVOKEALL", "nina", "AT", &(t - 5).to_string()]),
        t,
        "REVOKEALL older",
    );
    assert_int(
        &server.cmd(&["JWTDENY.KREVOKEALL", "jwtdeny:{olga}", "olga", "AT", &at]),
        t,
        "KREVOKEALL",
    );
    expect(&server, &[("revokeall_calls", 3)], "three REVOKEALLs");
    let covered = mint_default("ES256", &claims("nina", t, FAR_EXP));
    assert_int(&server.check(&covered), 0, "CHECK covered");
    assert_int(&server.revoke(&covered), 0, "REVOKE covered");
    expect(
        &server,
        &[("checks_revoked", 1), ("revokes_already", 1)],
        "a token covered by the cutoff",
    );

    // INSPECT, KEYS and plain Redis commands count nothing.
    server.cmd(&["JWTDENY.INSPECT", hs.as_str()]).array();
    server.cmd(&["JWTDENY.INSPECT", "garbage"]).array();
    server.cmd(&["JWTDENY.KEYS", "LIST"]).array();
    server.cmd(&["GET", "x"]);
    expect(&server, &[], "INSPECT, KEYS LIST, GET");
}

#[test]
fn reloads_are_recorded_and_a_failed_one_keeps_the_keys() {
    let (server, path) = server_with_own_keys_file();
    let m = info(&server);
    let t_start: i64 = m["last_reload_time"].parse().unwrap();
    assert_eq!(m["last_reload_result"], "ok");

    // The second changes, so every recorded time below is a new one.
    std::thread::sleep(Duration::from_millis(1100));
    let t1 = now();
    assert_int(&server.cmd(&["JWTDENY.KEYS", "RELOAD"]), 7, "RELOAD");
    let m = info(&server);
    assert_eq!(m["last_reload_result"], "ok");
    assert_eq!(m["keys_loaded"], "7");
    let t: i64 = m["last_reload_time"].parse().unwrap();
    assert!(t >= t1 && t > t_start && t <= now(), "reload time {t}");

    // A broken file: error reply, old keys kept, the failure on record.
    fs::write(&path, b"{ not json").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let t2 = now();
    let r = server.cmd(&["JWTDENY.KEYS", "RELOAD"]);
    assert!(r.is_error(), "RELOAD of a broken file: {r}");
    let m = info(&server);
    assert_eq!(m["last_reload_result"], "error");
    assert_eq!(m["keys_loaded"], "7", "old keys kept");
    let t: i64 = m["last_reload_time"].parse().unwrap();
    assert!(t >= t2 && t <= now(), "failed reload time {t}");
    assert_int(
        &server.check(vector("valid-EdDSA").token),
        1,
        "old keys still work",
    );

    // A runtime CONFIG SET to a missing file is refused and recorded as a failure too.
    let missing = server.dir().join("missing.json");
    let r = server.config_set("jwtdeny.keys-file", &missing.to_string_lossy());
    assert!(r.is_error(), "CONFIG SET to a missing file: {r}");
    let m = info(&server);
    assert_eq!(m["last_reload_result"], "error");
    assert_eq!(m["keys_file"], path.to_string_lossy(), "path unchanged");

    // A good file with one key fewer: ok again, and keys_loaded follows.
    let keys: Vec<serde_json::Value> = jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] != "shared-es384")
        .cloned()
        .collect();
    write_jwks(&path, &keys);
    assert_int(
        &server.cmd(&["JWTDENY.KEYS", "RELOAD"]),
        6,
        "RELOAD with 6 keys",
    );
    let m = info(&server);
    assert_eq!(m["last_reload_result"], "ok");
    assert_eq!(m["keys_loaded"], "6");

    // And CONFIG SET to another good file: keys_file names it.
    let other = server.dir().join("other.json");
    fs::copy(jwks_path(), &other).unwrap();
    ok(
        server.config_set("jwtdeny.keys-file", &other.to_string_lossy()),
        "CONFIG SET keys-file",
    );
    let m = info(&server);
    assert_eq!(m["keys_file"], other.to_string_lossy());
    assert_eq!(m["keys_loaded"], "7");
    assert_eq!(m["last_reload_result"], "ok");
}

#[test]
fn verify_cache_fields_follow_the_config() {
    let server = Server::with_vector_keys();
    ok(
        server.config_set("jwtdeny.verify-cache-size", "100"),
        "size 100",
    );
    assert_eq!(info(&server)["verify_cache_capacity"], "100");
    let tokens: Vec<String> = (0..5)
        .map(|i| mint_default("HS256", &claims(&format!("u{i}"), SOME_IAT, FAR_EXP)))
        .collect();
    for t in &tokens {
        assert_int(&server.check(t), 1, "CHECK");
    }
    let m = info(&server);
    assert_eq!(m["verify_cache_entries"], "5");
    assert_eq!(m["verify_cache_misses"], "5");
    assert_eq!(m["verify_cache_hits"], "0");
    assert!(m["verify_cache_memory_bytes"].parse::<u64>().unwrap() > 0);
    for t in &tokens {
        assert_int(&server.check(t), 1, "CHECK again");
    }
    let m = info(&server);
    assert_eq!(m["verify_cache_entries"], "5");
    assert_eq!(m["verify_cache_hits"], "5");
    // The bound holds.
    ok(
        server.config_set("jwtdeny.verify-cache-size", "3"),
        "size 3",
    );
    for t in &tokens {
        assert_int(&server.check(t), 1, "CHECK with a small cache");
    }
    let m = info(&server);
    assert_eq!(m["verify_cache_capacity"], "3");
    assert_eq!(m["verify_cache_entries"], "3");
}

/// Every secret or key parameter in the vectors' JWKS and private key files, in the forms
/// they could be shown in.
fn key_material() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for key in jwks()["keys"].as_array().unwrap() {
        let kid = key["kid"].as_str().unwrap_or("?");
        for field in ["k", "n", "d", "p", "q", "dp", "dq", "qi", "x", "y"] {
            if let Some(v) = key[field].as_str() {
                // A long enough prefix is as telling as the whole value.
                let v = &v[..v.len().min(24)];
                out.push((format!("{kid}.{field}"), v.as_bytes().to_vec()));
            }
        }
    }
    for name in ["shared-hs256.key", "shared-hs384.key", "shared-hs512.key"] {
        let secret = fs::read(vectors_dir().join("private").join(name)).unwrap();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        out.push((format!("{name} hex"), hex.into_bytes()));
        out.push((format!("{name} b64url"), b64(&secret).into_bytes()));
        if secret.iter().all(|b| b.is_ascii_graphic()) {
            out.push((format!("{name} raw"), secret));
        }
    }
    for name in ["shared-rsa.pem", "shared-es256.pem", "shared-ed25519.pem"] {
        let pem = fs::read_to_string(vectors_dir().join("private").join(name)).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 24)
        {
            out.push((format!("{name} line"), line.as_bytes()[..24].to_vec()));
        }
    }
    out
}

#[test]
fn info_never_shows_key_material() {
    let server = Server::with_vector_keys();
    for v in vectors() {
        server.check(&v.token);
    }
    let material = key_material();
    assert!(material.len() > 20, "found the key material to look for");
    for section in ["jwtdeny", "everything", "modules"] {
        let text = server.cmd(&["INFO", section]).all_bytes();
        for (what, bytes) in &material {
            assert!(
                !contains(&text, bytes),
                "INFO {section} contains key material ({what})"
            );
        }
    }
}

/// A crash report renders the section from lock-free counters only (the crash may come while
/// a lock is held, on any thread): every field but the three read from the live snapshot.
#[test]
fn a_crash_report_shows_the_counters_and_takes_no_lock() {
    let server = Server::with_vector_keys();
    let t = mint_default("ES256", &claims("crash-report", SOME_IAT, FAR_EXP));
    assert_int(&server.check(&t), 1, "CHECK");
    assert_int(&server.check(&t), 1, "CHECK, cached");
    let mut conn = server.conn();
    let _ = conn.try_cmd(&["DEBUG", "SEGFAULT"]); // no reply: the server crashes
    wait_until("the crash report", ASYNC_DEADLINE, || {
        server.log().contains("jwtdeny_jwks_next_fetch_time:")
    });
    let log = server.log();
    let section: Vec<(&str, &str)> = log
        .lines()
        .skip_while(|l| l.trim() != "# jwtdeny")
        .skip(1)
        .take_while(|l| l.starts_with("jwtdeny_"))
        .filter_map(|l| l.trim().strip_prefix("jwtdeny_")?.split_once(':'))
        .collect();
    let names: Vec<&str> = section.iter().map(|(n, _)| *n).collect();
    let want: Vec<&str> = FIELDS
        .iter()
        .copied()
        .filter(|f| !["session_revocation", "keys_loaded", "keys_file"].contains(f))
        .collect();
    assert_eq!(names, want, "the crash report's jwtdeny section:\n{log}");
    let value = |name: &str| section.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    assert_eq!(value("checks_active"), Some("2"));
    assert_eq!(value("verify_cache_entries"), Some("1"));
    assert_eq!(value("verify_cache_hits"), Some("1"));
    assert_eq!(value("verifications_inline"), Some("1"));
}
