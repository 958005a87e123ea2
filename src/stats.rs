//! Counters since start, shown as the `jwtdeny` section of INFO. Relaxed atomics: they are
//! statistics, read and written on the main thread, and must cost next to nothing.

use crate::error::Error;
use redis_module::{InfoContext, RedisResult};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Error codes in the order INFO lists them.
pub const CODES: [&str; 7] = [
    "MALFORMED",
    "BADALG",
    "NOKEY",
    "BADSIG",
    "BADCLAIMS",
    "EXPIRED",
    "NOTYET",
];

pub struct Stats {
    pub checks_active: AtomicU64,
    pub checks_revoked: AtomicU64,
    /// Per code in [`CODES`]; the last slot counts anything else (usage or internal errors).
    pub check_errors: [AtomicU64; 8],
    pub revokes_new: AtomicU64,
    pub revokes_already: AtomicU64,
    pub revoke_errors: AtomicU64,
    pub revokeall_calls: AtomicU64,
    /// Unix seconds of the last keys-file load attempt; 0 before any.
    pub last_reload_time: AtomicI64,
    /// 0: never tried, 1: ok, 2: failed (old keys kept).
    pub last_reload_result: AtomicU64,
}

pub static STATS: Stats = Stats {
    checks_active: AtomicU64::new(0),
    checks_revoked: AtomicU64::new(0),
    check_errors: [const { AtomicU64::new(0) }; 8],
    revokes_new: AtomicU64::new(0),
    revokes_already: AtomicU64::new(0),
    revoke_errors: AtomicU64::new(0),
    revokeall_calls: AtomicU64::new(0),
    last_reload_time: AtomicI64::new(0),
    last_reload_result: AtomicU64::new(0),
};

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Counts one CHECK by its outcome: `Ok(revoked)` or the error it replied.
pub fn count_check(outcome: Result<bool, &Error>) {
    match outcome {
        Ok(false) => bump(&STATS.checks_active),
        Ok(true) => bump(&STATS.checks_revoked),
        Err(e) => {
            let slot = CODES
                .iter()
                .position(|c| *c == e.code())
                .unwrap_or(CODES.len());
            if let Some(counter) = STATS.check_errors.get(slot) {
                bump(counter);
            }
        }
    }
}

/// Counts one REVOKE: `Ok(true)` for a new entry, `Ok(false)` for one already there.
pub fn count_revoke(outcome: Result<bool, &Error>) {
    bump(match outcome {
        Ok(true) => &STATS.revokes_new,
        Ok(false) => &STATS.revokes_already,
        Err(_) => &STATS.revoke_errors,
    });
}

pub fn count_revokeall() {
    bump(&STATS.revokeall_calls);
}

pub fn count_reload(ok: bool, now_secs: i64) {
    STATS.last_reload_time.store(now_secs, Relaxed);
    STATS
        .last_reload_result
        .store(if ok { 1 } else { 2 }, Relaxed);
}

pub fn last_reload_result() -> &'static str {
    match STATS.last_reload_result.load(Relaxed) {
        1 => "ok",
        2 => "error",
        _ => "never",
    }
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

/// Renders the `jwtdeny` INFO section. Nothing here may reveal key material: only counts, the
/// keys file's path and the reload outcome.
fn info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    let s = &STATS;
    let cache = crate::cache::global();
    let mut section = ctx
        .builder()
        .add_section("") // an empty name makes the section just "jwtdeny"
        .field("checks_active", get(&s.checks_active))?
        .field("checks_revoked", get(&s.checks_revoked))?;
    for (code, counter) in CODES.iter().zip(&s.check_errors) {
        section = section.field(
            &format!("checks_{}", code.to_ascii_lowercase()),
            get(counter),
        )?;
    }
    section
        .field("checks_other_errors", get(&s.check_errors[CODES.len()]))?
        .field("revokes_new", get(&s.revokes_new))?
        .field("revokes_already", get(&s.revokes_already))?
        .field("revokes_errors", get(&s.revoke_errors))?
        .field("revokeall_calls", get(&s.revokeall_calls))?
        .field("keys_loaded", crate::config::keys().len() as u64)?
        .field("keys_file", crate::config::settings().keys_file.clone())?
        .field("last_reload_time", s.last_reload_time.load(Relaxed))?
        .field("last_reload_result", last_reload_result())?
        .field("verify_cache_entries", cache.len() as u64)?
        .field("verify_cache_capacity", cache.capacity() as u64)?
        .field("verify_cache_hits", cache.hits)?
        .field("verify_cache_misses", cache.misses)?
        .field("verify_cache_memory_bytes", cache.memory_bytes() as u64)?
        .build_section()?
        .build_info()?;
    Ok(())
}

#[linkme::distributed_slice(redis_module::server_events::INFO_COMMAND_HANDLER_LIST)]
static INFO_HANDLER: fn(&InfoContext, bool) -> RedisResult<()> = info;
