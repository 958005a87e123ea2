//! Counters since start, shown by `info` as the `jwtdeny` section of INFO. Relaxed atomics:
//! they are statistics and must cost next to nothing. A leaf: it only counts.

use crate::revocation::SessionEnd;
use jwtdeny_core::error::Error;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// The token error codes, in the order INFO lists their counters.
pub use jwtdeny_core::error::CODES;

pub struct Stats {
    pub checks: Checks,
    pub revokes_new: AtomicU64,
    pub revokes_already: AtomicU64,
    pub revoke_errors: AtomicU64,
    pub revokeall_calls: AtomicU64,
    /// LOGOUT replies 1 that ended one session.
    pub logouts_session: AtomicU64,
    /// LOGOUT replies 1 that ended every session of a subject up to the logout's `iat`.
    pub logouts_subject: AtomicU64,
    /// Of those, logouts naming a session, ended by subject because max-lifetime is 0.
    pub logouts_session_as_subject: AtomicU64,
    pub logouts_already: AtomicU64,
    pub logout_errors: AtomicU64,
    pub revokesessions_new: AtomicU64,
    pub revokesessions_already: AtomicU64,
    /// CHECKDPOP proofs recorded (their token active and unrevoked).
    pub dpop_proofs_accepted: AtomicU64,
    /// CHECKDPOP proofs refused because their `jti` was used already with their key.
    pub dpop_replays: AtomicU64,
    /// Unix seconds of the last keys-file load attempt; 0 before any.
    pub last_reload_time: AtomicI64,
    /// 0: never tried, 1: ok, 2: failed (old keys kept).
    pub last_reload_result: AtomicU64,
    /// CHECK signature verifications done by a worker thread.
    pub verifications_offloaded: AtomicU64,
    /// CHECK signature verifications done on the main thread (cache misses only).
    pub verifications_inline: AtomicU64,
}

pub static STATS: Stats = Stats {
    checks: Checks::new(),
    revokes_new: AtomicU64::new(0),
    revokes_already: AtomicU64::new(0),
    revoke_errors: AtomicU64::new(0),
    revokeall_calls: AtomicU64::new(0),
    logouts_session: AtomicU64::new(0),
    logouts_subject: AtomicU64::new(0),
    logouts_session_as_subject: AtomicU64::new(0),
    logouts_already: AtomicU64::new(0),
    logout_errors: AtomicU64::new(0),
    revokesessions_new: AtomicU64::new(0),
    revokesessions_already: AtomicU64::new(0),
    dpop_proofs_accepted: AtomicU64::new(0),
    dpop_replays: AtomicU64::new(0),
    last_reload_time: AtomicI64::new(0),
    last_reload_result: AtomicU64::new(0),
    verifications_offloaded: AtomicU64::new(0),
    verifications_inline: AtomicU64::new(0),
};

/// The verification cache's state, published by the cache on every change so that INFO reads
/// it without the cache's lock: a crash report may render INFO while that lock is held, and a
/// walk of up to 16M slots has no place in an INFO call.
pub struct CacheStats {
    pub entries: AtomicU64,
    pub capacity: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub memory_bytes: AtomicU64,
}

impl CacheStats {
    pub const fn new() -> CacheStats {
        CacheStats {
            entries: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
        }
    }
}

impl Default for CacheStats {
    fn default() -> Self {
        CacheStats::new()
    }
}

/// The process-wide cache's.
pub static CACHE: CacheStats = CacheStats::new();

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Counts one CHECK by its outcome: `Ok(revoked)` or the error it replied.
pub fn count_check(outcome: Result<bool, &Error>) {
    STATS.checks.count(outcome);
}

/// The CHECKs of one kind of token: the whole server's, or one issuer's.
#[derive(Default)]
pub struct Checks {
    pub active: AtomicU64,
    pub revoked: AtomicU64,
    /// Per code in [`CODES`]; the last slot counts anything else (usage or internal errors).
    pub errors: [AtomicU64; CODES.len() + 1],
}

impl Checks {
    pub const fn new() -> Checks {
        Checks {
            active: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
            errors: [const { AtomicU64::new(0) }; CODES.len() + 1],
        }
    }

    /// Counts one CHECK by its outcome: `Ok(revoked)` or the error it replied.
    pub fn count(&self, outcome: Result<bool, &Error>) {
        match outcome {
            Ok(false) => bump(&self.active),
            Ok(true) => bump(&self.revoked),
            Err(e) => {
                let slot = CODES
                    .iter()
                    .position(|c| *c == e.code())
                    .unwrap_or(CODES.len());
                if let Some(counter) = self.errors.get(slot) {
                    bump(counter);
                }
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

/// Counts one CHECK verification by where it ran.
pub fn count_verification(offloaded: bool) {
    bump(if offloaded {
        &STATS.verifications_offloaded
    } else {
        &STATS.verifications_inline
    });
}

pub fn count_logout(outcome: Result<SessionEnd, &Error>) {
    match outcome {
        Ok(SessionEnd::Session) => bump(&STATS.logouts_session),
        Ok(SessionEnd::Subject) => bump(&STATS.logouts_subject),
        Ok(SessionEnd::SessionAsSubject) => {
            bump(&STATS.logouts_subject);
            bump(&STATS.logouts_session_as_subject);
        }
        Ok(SessionEnd::Already) => bump(&STATS.logouts_already),
        Err(_) => bump(&STATS.logout_errors),
    }
}

pub fn count_revokesession(ended: SessionEnd) {
    bump(if ended == SessionEnd::Already {
        &STATS.revokesessions_already
    } else {
        &STATS.revokesessions_new
    });
}

/// Counts one DPoP proof that reached its one-time record: `true` recorded, `false` a replay.
pub fn count_proof(recorded: bool) {
    bump(if recorded {
        &STATS.dpop_proofs_accepted
    } else {
        &STATS.dpop_replays
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
