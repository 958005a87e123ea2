//! jwtdeny: a native JWT denylist for Redis.
//!
//! This file only registers the module: its configs and its command table. Each command is a
//! thin wrapper whose doc comment gives the syntax and reply; the README has the full reference.

mod cache;
mod command_info;
mod commands;
mod config;
mod denylist;
mod info;
mod jwks;
mod log;
mod state;
mod stats;
mod workers;

// The pure core (core/), under the names the module's code uses.
use jwtdeny_core::{error, fetch, keys, keyscheme, token};
// `logout` is the command; the logout-token validation is the core's `logout` module.
use jwtdeny_core::logout as backchannel;

use redis_module::{raw, redis_module, Context, RedisResult, RedisString, Status};
use std::ffi::CStr;
use std::os::raw::c_int;

// Unit tests run without a server, so they cannot use Redis's allocator.
#[cfg(not(test))]
macro_rules! get_allocator {
    () => {
        redis_module::alloc::RedisAlloc
    };
}
#[cfg(test)]
macro_rules! get_allocator {
    () => {
        std::alloc::System
    };
}

/// `JWTDENY.CHECK <token> [WITHCLAIMS]` → `1` (authentic, valid now, not revoked) or `0`
/// (revoked); with WITHCLAIMS `[status, payload JSON or nil when revoked]`. Otherwise an error
/// whose first word is the reason (`MALFORMED`, `BADALG`, `NOKEY`, `BADSIG`, `BADCLAIMS`,
/// `EXPIRED`, `NOTYET`). Read-only: works on replicas.
fn check(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::check(ctx, args)
}

/// `JWTDENY.REVOKE <token>` → `1` (revoked now) or `0` (already revoked); the same errors as
/// CHECK. Stores `<prefix>{<sub>}:<iat>` expiring at `(exp + leeway) × 1000` ms.
fn revoke(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::revoke(ctx, args)
}

/// `JWTDENY.REVOKEALL <sub> [AT <unix-seconds>]` → the cutoff in force: every token of `<sub>`
/// issued at or before it is revoked. The cutoff only moves forward.
fn revokeall(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::revokeall(ctx, args)
}

/// `JWTDENY.INSPECT <token>` → `[status, …, expires_at_ms, …]` as field/value pairs: what the
/// token is and why. Read-only, changes nothing.
fn inspect(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::inspect(ctx, args)
}

/// `JWTDENY.LOGOUT <logout_token>` → `1` (ended now) or `0` (already ended, or nothing left to
/// end): an OpenID Connect Back-Channel Logout token, validated as its section 2.6 requires,
/// ends the session its `sid` names, or without `sid` every session of its `sub` up to its
/// `iat`. With `jwtdeny.max-lifetime` 0 a session's end revokes its whole subject (a session
/// cutoff could never expire): over-revoking, never under-revoking. `ERR` while
/// `jwtdeny.logout-audience` is empty.
fn logout(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::logout(ctx, args)
}

/// `JWTDENY.REVOKESESSION <sub> <sid>` → `1` (ended now) or `0` (already ended): every token of
/// `<sub>` carrying `sid` `<sid>` issued up to now is revoked (by subject without max-lifetime).
fn revokesession(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::revokesession(ctx, args)
}

// The keyed forms, for Redis Cluster: the same commands with the token's keys declared as
// their first arguments (`<entry-key> <subject-key>`, or `<subject-key>` for REVOKEALL), so
// Redis routes them, follows slot migrations and applies ACL key patterns. Any key other than
// the token's own is refused.

/// `JWTDENY.KCHECK <entry-key> <subject-key> <token> [WITHCLAIMS]` → as JWTDENY.CHECK.
fn kcheck(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::kcheck(ctx, args)
}

/// `JWTDENY.KREVOKE <entry-key> <subject-key> <token>` → as JWTDENY.REVOKE.
fn krevoke(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::krevoke(ctx, args)
}

/// `JWTDENY.KREVOKEALL <subject-key> <sub> [AT <unix-seconds>]` → as JWTDENY.REVOKEALL.
fn krevokeall(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::krevokeall(ctx, args)
}

/// `JWTDENY.KINSPECT <entry-key> <subject-key> <token>` → as JWTDENY.INSPECT.
fn kinspect(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::kinspect(ctx, args)
}

/// `JWTDENY.KSCHECK <entry-key> <subject-key> <session-key> <token> [WITHCLAIMS]` → as
/// JWTDENY.CHECK, every key it reads declared: the session key of a token with a `sid`, the
/// subject's sid-less cutoff key of one without.
fn kscheck(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::kscheck(ctx, args)
}

/// `JWTDENY.KSINSPECT <entry-key> <subject-key> <session-key> <token>` → as JWTDENY.INSPECT.
fn ksinspect(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::ksinspect(ctx, args)
}

/// `JWTDENY.KLOGOUT <subject-key> <session-key> [<sidless-key>] <logout_token>` → as
/// JWTDENY.LOGOUT; without `sid` in the token, the session key is the subject key again.
fn klogout(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::klogout(ctx, args)
}

/// `JWTDENY.KREVOKESESSION <subject-key> <session-key> [<sidless-key>] <sub> <sid>` → as
/// JWTDENY.REVOKESESSION.
fn krevokesession(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::krevokesession(ctx, args)
}

/// `JWTDENY.KEYS RELOAD` → number of keys loaded (a bad file keeps the old keys and errors);
/// `JWTDENY.KEYS LIST` → per key `[kid, <kid>, kty, <kty>, algorithms, [<alg>…], source,
/// file|uri]`, never material. RELOAD also refetches the identity provider's keys.
fn keys(ctx: &Context, args: &[RedisString]) -> RedisResult {
    commands::keys(ctx, args)
}

/// ACL categories per command, for servers that let modules set them (Redis 7.2+, Valkey):
/// built-in ones, so `-@write` or `+@read` rules cover jwtdeny like any other command, plus the
/// module's own `@jwtdeny` where modules may add categories (Redis 7.4+, Valkey).
/// One row of the command table: what `RedisModule_CreateCommand` takes, and the command's ACL
/// categories. Key specs and docs are `command_info`'s.
struct Command {
    name: &'static CStr,
    entry: raw::RedisModuleCmdFunc,
    flags: &'static CStr,
    /// First key, last key and step: the key positions Redis routes by.
    keys: (c_int, c_int, c_int),
    acl: &'static str,
}

/// A command's entry point, as Redis calls it (see `commands::run`).
macro_rules! entry {
    ($handler:ident) => {{
        unsafe extern "C" fn entry(
            ctx: *mut raw::RedisModuleCtx,
            argv: *mut *mut raw::RedisModuleString,
            argc: c_int,
        ) -> c_int {
            // SAFETY: Redis calls it as a command, on the main thread.
            unsafe { commands::run(ctx, argv, argc, $handler) }
        }
        Some(entry as unsafe extern "C" fn(_, _, _) -> c_int)
    }};
}

macro_rules! command {
    ($name:literal, $handler:ident, $flags:literal, $keys:expr, $acl:literal) => {
        Command {
            name: $name,
            entry: entry!($handler),
            flags: $flags,
            keys: $keys,
            acl: $acl,
        }
    };
}

const NO_KEYS: (c_int, c_int, c_int) = (0, 0, 0);

const COMMANDS: [Command; 15] = [
    command!(
        c"jwtdeny.check",
        check,
        c"readonly fast",
        NO_KEYS,
        "read fast"
    ),
    command!(
        c"jwtdeny.inspect",
        inspect,
        c"readonly fast",
        NO_KEYS,
        "read fast"
    ),
    command!(
        c"jwtdeny.revoke",
        revoke,
        c"write deny-oom fast",
        NO_KEYS,
        "write fast"
    ),
    command!(
        c"jwtdeny.revokeall",
        revokeall,
        c"write deny-oom fast",
        NO_KEYS,
        "write fast"
    ),
    command!(
        c"jwtdeny.keys",
        keys,
        c"admin deny-script",
        NO_KEYS,
        "admin dangerous"
    ),
    command!(
        c"jwtdeny.kcheck",
        kcheck,
        c"readonly fast",
        (1, 2, 1),
        "read fast"
    ),
    command!(
        c"jwtdeny.kinspect",
        kinspect,
        c"readonly fast",
        (1, 2, 1),
        "read fast"
    ),
    command!(
        c"jwtdeny.krevoke",
        krevoke,
        c"write deny-oom fast",
        (1, 2, 1),
        "write fast"
    ),
    command!(
        c"jwtdeny.krevokeall",
        krevokeall,
        c"write deny-oom fast",
        (1, 1, 1),
        "write fast"
    ),
    command!(
        c"jwtdeny.logout",
        logout,
        c"write deny-oom fast",
        NO_KEYS,
        "write fast"
    ),
    command!(
        c"jwtdeny.revokesession",
        revokesession,
        c"write deny-oom fast",
        NO_KEYS,
        "write fast"
    ),
    command!(
        c"jwtdeny.kscheck",
        kscheck,
        c"readonly fast",
        (1, 3, 1),
        "read fast"
    ),
    command!(
        c"jwtdeny.ksinspect",
        ksinspect,
        c"readonly fast",
        (1, 3, 1),
        "read fast"
    ),
    // Two keys, or three with the sid-less cutoff: every argument before the token (KLOGOUT)
    // or before `<sub> <sid>` (KREVOKESESSION).
    command!(
        c"jwtdeny.klogout",
        klogout,
        c"write deny-oom fast",
        (1, -2, 1),
        "write fast"
    ),
    command!(
        c"jwtdeny.krevokesession",
        krevokesession,
        c"write deny-oom fast",
        (1, -3, 1),
        "write fast"
    ),
];

/// Creates the commands. Not through redis-module's table: its entry points collect the
/// arguments into a `Vec`, an allocation on every command.
fn register_commands(ctx: &Context) -> Result<(), String> {
    // SAFETY: a plain read of the API table, filled in before OnLoad runs.
    let Some(create) = (unsafe { raw::RedisModule_CreateCommand }) else {
        return Err("this server cannot create module commands".into());
    };
    for c in &COMMANDS {
        let (first, last, step) = c.keys;
        // SAFETY: in OnLoad, with its context; the strings are static.
        let created = unsafe {
            create(
                ctx.get_raw(),
                c.name.as_ptr(),
                c.entry,
                c.flags.as_ptr(),
                first,
                last,
                step,
            )
        };
        if created != raw::REDISMODULE_OK as c_int {
            return Err(format!(
                "cannot create command {}",
                c.name.to_string_lossy()
            ));
        }
    }
    Ok(())
}

fn set_acl_categories(ctx: &Context) {
    use std::ffi::CString;
    unsafe {
        let (Some(get), Some(set)) = (
            raw::RedisModule_GetCommand,
            raw::RedisModule_SetCommandACLCategories,
        ) else {
            log::notice("jwtdeny: this server cannot set command ACL categories");
            return;
        };
        let with_own = match raw::RedisModule_AddACLCategory {
            Some(add) => {
                let _ = add(ctx.get_raw(), c"jwtdeny".as_ptr());
                true
            }
            None => false,
        };
        for c in &COMMANDS {
            let (Ok(plain), Ok(full)) = (
                CString::new(c.acl),
                CString::new(format!("{} jwtdeny", c.acl)),
            ) else {
                continue;
            };
            let command = get(ctx.get_raw(), c.name.as_ptr());
            if command.is_null() {
                continue;
            }
            let ok = |cats: &CString| set(command, cats.as_ptr()) == raw::REDISMODULE_OK as i32;
            if with_own && ok(&full) {
                continue;
            }
            if !ok(&plain) {
                log::warning(&format!(
                    "jwtdeny: could not set ACL categories of {}",
                    c.name.to_string_lossy()
                ));
            }
        }
    }
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    log::init(ctx);
    commands::install_panic_hook();
    if let Err(e) = register_commands(ctx) {
        log::warning(&format!("jwtdeny: refusing to load: {e}"));
        log::shutdown();
        return Status::Err;
    }
    commands::init(ctx);
    set_acl_categories(ctx);
    command_info::declare(ctx);
    let configured = state::register_configs(ctx)
        .and_then(|()| state::apply_module_args(args))
        .and_then(|()| denylist::check_db(ctx, state::current().settings.db))
        .and_then(|()| config::check_combination(&state::current().settings));
    if let Err(e) = configured {
        log::warning(&format!("jwtdeny: refusing to load: {e}"));
        // No OnUnload follows a refused load: undo what was set up (no thread runs yet).
        let _ = state::stop();
        log::shutdown();
        return Status::Err;
    }
    let fail_closed = "every CHECK and REVOKE answers NOKEY until a good keys file is loaded \
                       (JWTDENY.KEYS RELOAD or CONFIG SET jwtdeny.keys-file)";
    match state::start() {
        Ok(Some(set)) => {
            log::notice(&format!("jwtdeny: loaded {} verification keys", set.len()));
            if let Some(line) = set.skipped_summary() {
                log::notice(&format!("jwtdeny: {line}"));
            }
        }
        Ok(None) => log::warning(&format!(
            "jwtdeny: jwtdeny.keys-file is not set; {fail_closed}"
        )),
        Err(e) => log::warning(&format!("jwtdeny: {e}; {fail_closed}")),
    }
    Status::Ok
}

fn deinit(_ctx: &Context) -> Status {
    if let Err(why) = state::stop() {
        log::warning(&format!("jwtdeny: MODULE UNLOAD refused: {why}"));
        return Status::Err;
    }
    cache::release(); // its entries hold Redis strings, freed here on the main thread
    log::shutdown();
    Status::Ok
}

/// Redis wants one integer: major × 10000 + minor × 100 + patch.
fn module_version() -> i32 {
    let part = |s: &str| s.parse::<i32>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

/// The registration redis-module generates. Its own error paths log fixed texts of the crate
/// through the printf-format logging that `clippy.toml` forbids in our code; no outside text
/// reaches them.
#[allow(clippy::disallowed_methods)]
mod registration {
    use super::*;

    // The ACL-category fields stay empty: Redis 7.0 refuses to load a module that sets the
    // mandatory one; categories are set in `init` instead (see `set_acl_categories`).
    redis_module! {
        name: "jwtdeny",
        version: module_version(),
        allocator: (get_allocator!(), get_allocator!()),
        data_types: [],
        init: init,
        deinit: deinit,
        // Created in `init` (see `register_commands`).
        commands: [],
        // No `configurations:` block: `state::register_configs` registers config::SPECS in `init`.
    }
}
