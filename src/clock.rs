//! The one clock: the wall clock Redis expires keys by (gettimeofday), in the units the module
//! uses. Every expiry, cutoff and "now" of a command comes from here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whole seconds since the epoch (floored).
pub fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}
