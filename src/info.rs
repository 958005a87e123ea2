//! The `jwtdeny` section of INFO: the counters of `stats` and the state of keys and cache.
//!
//! It takes no lock of the cache: the cache publishes its figures to `stats::CACHE` on every
//! change. For a crash report it takes no lock at all (the crash may have happened while one
//! was held, on any thread): the fields that need the live snapshot are left out.

use crate::jwks;
use crate::state;
use crate::stats::{get, last_reload_result, CACHE, CODES, STATS};
use redis_module::{InfoContext, InfoContextBuilderFieldBottomLevelValue as Value, RedisResult};
use std::sync::atomic::Ordering::Relaxed;

/// The section's fields in order. Nothing here may reveal key material: only counts, the keys
/// file's path and the reload outcome.
fn fields(for_crash_report: bool) -> Vec<(String, Value)> {
    let s = &STATS;
    let mut out: Vec<(String, Value)> = Vec::with_capacity(32);
    let mut add = |name: &str, value: Value| out.push((name.to_string(), value));
    add("checks_active", get(&s.checks.active).into());
    add("checks_revoked", get(&s.checks.revoked).into());
    for (code, counter) in CODES.iter().zip(&s.checks.errors) {
        add(
            &format!("checks_{}", code.to_ascii_lowercase()),
            get(counter).into(),
        );
    }
    add(
        "checks_other_errors",
        get(&s.checks.errors[CODES.len()]).into(),
    );
    add("revokes_new", get(&s.revokes_new).into());
    add("revokes_already", get(&s.revokes_already).into());
    add("revokes_errors", get(&s.revoke_errors).into());
    add("revokeall_calls", get(&s.revokeall_calls).into());
    add("logouts_session", get(&s.logouts_session).into());
    add("logouts_subject", get(&s.logouts_subject).into());
    add(
        "logouts_session_as_subject",
        get(&s.logouts_session_as_subject).into(),
    );
    add("logouts_already", get(&s.logouts_already).into());
    add("logouts_errors", get(&s.logout_errors).into());
    add("revokesessions_new", get(&s.revokesessions_new).into());
    add(
        "revokesessions_already",
        get(&s.revokesessions_already).into(),
    );
    add("dpop_proofs_accepted", get(&s.dpop_proofs_accepted).into());
    add("dpop_replays_refused", get(&s.dpop_replays).into());
    if !for_crash_report {
        // The snapshot is behind a lock that a crashing thread may hold.
        let snap = state::current();
        // Without max-lifetime no session cutoff could ever expire: sessions end by subject.
        let by = if snap.settings.max_lifetime > 0 {
            "session"
        } else {
            "subject"
        };
        add("session_revocation", by.into());
        add("keys_loaded", (snap.keys.len() as u64).into());
        add("keys_file", snap.settings.keys_file.clone().into());
    }
    add("last_reload_time", s.last_reload_time.load(Relaxed).into());
    add("last_reload_result", last_reload_result().into());
    add("verify_cache_entries", get(&CACHE.entries).into());
    add("verify_cache_capacity", get(&CACHE.capacity).into());
    add("verify_cache_hits", get(&CACHE.hits).into());
    add("verify_cache_misses", get(&CACHE.misses).into());
    add("verify_cache_memory_bytes", get(&CACHE.memory_bytes).into());
    add(
        "verifications_offloaded",
        get(&s.verifications_offloaded).into(),
    );
    add("verifications_inline", get(&s.verifications_inline).into());
    // The identity provider's source; in a crash report only if its lock is free.
    let source = if for_crash_report {
        jwks::try_info()
    } else {
        Some(jwks::info())
    };
    if let Some(j) = source {
        add("jwks_uri", j.uri.into());
        add("jwks_last_fetch_time", j.last_fetch_time.into());
        add("jwks_last_fetch_result", j.last_fetch_result.into());
        add("jwks_fetches_ok", j.fetches_ok.into());
        add("jwks_fetches_failed", j.fetches_failed.into());
        add("jwks_unknown_kid_fetches", j.unknown_kid_fetches.into());
        add("jwks_next_fetch_time", j.next_fetch_time.into());
    }
    out
}

/// One dictionary field per issuer of the registry, `issuer_<name>`: its keys, its fetches
/// and its CHECKs by outcome. Not in a crash report (the snapshot is behind a lock).
fn issuer_fields() -> Vec<(String, Vec<(String, Value)>)> {
    let snap = state::current();
    let fetched: std::collections::HashMap<usize, jwks::Info> =
        jwks::registry_info().into_iter().collect();
    snap.registry
        .issuers
        .iter()
        .map(|issuer| {
            let mut f: Vec<(String, Value)> = Vec::new();
            let keys = issuer.keys_loaded(&snap.registry_keys);
            f.push(("keys_loaded".into(), (keys as u64).into()));
            f.push(("sources".into(), (issuer.sources.len() as u64).into()));
            let infos: Vec<&jwks::Info> = issuer
                .sources
                .iter()
                .filter_map(|s| fetched.get(s))
                .collect();
            if !infos.is_empty() {
                let sum = |g: fn(&jwks::Info) -> u64| infos.iter().map(|i| g(i)).sum::<u64>();
                f.push(("fetches_ok".into(), sum(|i| i.fetches_ok).into()));
                f.push(("fetches_failed".into(), sum(|i| i.fetches_failed).into()));
                // The first source not ok says why; all ok (or never fetched) says so.
                let result = infos
                    .iter()
                    .map(|i| i.last_fetch_result.as_str())
                    .find(|r| *r != "ok")
                    .unwrap_or("ok");
                f.push(("last_fetch_result".into(), result.to_string().into()));
            }
            let c = &issuer.checks;
            f.push(("checks_active".into(), get(&c.active).into()));
            f.push(("checks_revoked".into(), get(&c.revoked).into()));
            for (code, counter) in CODES.iter().zip(&c.errors) {
                f.push((
                    format!("checks_{}", code.to_ascii_lowercase()),
                    get(counter).into(),
                ));
            }
            f.push((
                "checks_other_errors".into(),
                get(&c.errors[CODES.len()]).into(),
            ));
            (format!("issuer_{}", issuer.entry.name), f)
        })
        .collect()
}

/// Renders the `jwtdeny` INFO section.
fn info(ctx: &InfoContext, for_crash_report: bool) -> RedisResult<()> {
    let mut section = ctx.builder().add_section(""); // an empty name makes it just "jwtdeny"
    for (name, value) in fields(for_crash_report) {
        section = section.field(&name, value)?;
    }
    if !for_crash_report {
        for (name, fields) in issuer_fields() {
            let mut dict = section.add_dictionary(&name);
            for (field, value) in fields {
                dict = dict.field(&field, value)?;
            }
            section = dict.build_dictionary()?;
        }
    }
    section.build_section()?.build_info()?;
    Ok(())
}

#[linkme::distributed_slice(redis_module::server_events::INFO_COMMAND_HANDLER_LIST)]
static INFO_HANDLER: fn(&InfoContext, bool) -> RedisResult<()> = info;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache;
    use std::sync::mpsc;
    use std::time::Duration;

    fn names(fields: &[(String, Value)]) -> Vec<&str> {
        fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn rendering_never_waits_for_the_cache_lock() {
        let held = cache::global(); // as the main thread does in the middle of a lookup
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send((fields(true), fields(false)));
        });
        let (crash, normal) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("INFO waited for the cache lock");
        drop(held);
        assert!(names(&normal).contains(&"verify_cache_memory_bytes"));
        assert!(names(&crash).contains(&"verify_cache_memory_bytes"));
        assert!(names(&normal).contains(&"keys_file"));
        assert!(
            !names(&crash).contains(&"keys_file"),
            "no snapshot in a crash report"
        );
        assert_eq!(normal.len(), crash.len() + 3);
        assert!(names(&crash).contains(&"jwks_fetches_ok"));
    }
}
