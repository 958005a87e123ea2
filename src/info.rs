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
    add("checks_active", get(&s.checks_active).into());
    add("checks_revoked", get(&s.checks_revoked).into());
    for (code, counter) in CODES.iter().zip(&s.check_errors) {
        add(
            &format!("checks_{}", code.to_ascii_lowercase()),
            get(counter).into(),
        );
    }
    add(
        "checks_other_errors",
        get(&s.check_errors[CODES.len()]).into(),
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

/// Renders the `jwtdeny` INFO section.
fn info(ctx: &InfoContext, for_crash_report: bool) -> RedisResult<()> {
    let mut section = ctx.builder().add_section(""); // an empty name makes it just "jwtdeny"
    for (name, value) in fields(for_crash_report) {
        section = section.field(&name, value)?;
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
