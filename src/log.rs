//! The one way the module writes to the server log.
//!
//! `RedisModule_Log` takes a printf format. Text that jwtdeny did not write itself (a `kid`, a
//! path, a config value, later an HTTP body) could hold `%n` and crash the server there, so the
//! message is only ever the argument of a fixed `"%s"`, after being made printable and capped:
//! outside text can neither forge log lines nor flood the log. Nothing else in the module may
//! log (clippy's `disallowed-methods` and `tests/log_safety.rs` hold the code to that).

use jwtdeny_core::error::printable;
use redis_module::{raw, Context};
use std::ffi::CString;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The longest line written, in characters; a longer message ends in `...`.
pub const MAX_LINE: usize = 2048;

/// A context of the module's own, valid on any thread from load to unload, so every line is
/// attributed to the module. Null before load and after unload (lines are then unattributed).
static CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// Called first thing at load.
pub fn init(ctx: &Context) {
    // SAFETY: called on the main thread during OnLoad with a live context.
    let detached = unsafe {
        raw::RedisModule_GetDetachedThreadSafeContext
            .map_or(std::ptr::null_mut(), |get| get(ctx.get_raw()))
    };
    let old = CTX.swap(detached, Ordering::AcqRel);
    free(old);
}

/// Called last thing at unload (or when a load is refused).
pub fn shutdown() {
    free(CTX.swap(std::ptr::null_mut(), Ordering::AcqRel));
}

fn free(ctx: *mut raw::RedisModuleCtx) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: `ctx` came from RM_GetDetachedThreadSafeContext and is freed exactly once.
    unsafe {
        if let Some(free) = raw::RedisModule_FreeThreadSafeContext {
            free(ctx);
        }
    }
}

pub fn warning(message: &str) {
    write(c"warning", message);
}

pub fn notice(message: &str) {
    write(c"notice", message);
}

fn write(level: &std::ffi::CStr, message: &str) {
    let text = printable(message, MAX_LINE);
    // printable() escapes NUL, so this cannot fail; if it ever did, the line is dropped.
    let Ok(text) = CString::new(text) else {
        return;
    };
    // SAFETY: the format is a literal "%s" whose one argument is a valid C string; RM_Log may
    // be called from any thread, with the module's detached context or with none.
    unsafe {
        if let Some(log) = raw::RedisModule_Log {
            log(
                CTX.load(Ordering::Acquire),
                level.as_ptr(),
                c"%s".as_ptr(),
                text.as_ptr(),
            );
        }
    }
}
