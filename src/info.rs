//! The `jwtdeny` section of INFO: the counters of `stats` and the state of keys and cache.

use crate::cache;
use crate::state;
use crate::stats::{get, last_reload_result, CODES, STATS};
use redis_module::{InfoContext, RedisResult};
use std::sync::atomic::Ordering::Relaxed;

/// Renders the `jwtdeny` INFO section. Nothing here may reveal key material: only counts, the
/// keys file's path and the reload outcome.
fn info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    let s = &STATS;
    let snap = state::current();
    let cache = cache::global();
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
        .field("keys_loaded", snap.keys.len() as u64)?
        .field("keys_file", snap.settings.keys_file.clone())?
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
