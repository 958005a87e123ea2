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

use redis_module::{redis_module, Context, RedisResult, RedisString, Status};

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
fn check(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::check)
}

/// `JWTDENY.REVOKE <token>` → `1` (revoked now) or `0` (already revoked); the same errors as
/// CHECK. Stores `<prefix>{<sub>}:<iat>` expiring at `(exp + leeway) × 1000` ms.
fn revoke(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::revoke)
}

/// `JWTDENY.REVOKEALL <sub> [AT <unix-seconds>]` → the cutoff in force: every token of `<sub>`
/// issued at or before it is revoked. The cutoff only moves forward.
fn revokeall(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::revokeall)
}

/// `JWTDENY.INSPECT <token>` → `[status, …, expires_at_ms, …]` as field/value pairs: what the
/// token is and why. Read-only, changes nothing.
fn inspect(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::inspect)
}

/// `JWTDENY.LOGOUT <logout_token>` → `1` (ended now) or `0` (already ended, or nothing left to
/// end): an OpenID Connect Back-Channel Logout token, validated as its section 2.6 requires,
/// ends the session its `sid` names, or without `sid` every session of its `sub` up to its
/// `iat`. With `jwtdeny.max-lifetime` 0 a session's end revokes its whole subject (a session
/// cutoff could never expire): over-revoking, never under-revoking. `ERR` while
/// `jwtdeny.logout-audience` is empty.
fn logout(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::logout)
}

/// `JWTDENY.REVOKESESSION <sub> <sid>` → `1` (ended now) or `0` (already ended): every token of
/// `<sub>` carrying `sid` `<sid>` issued up to now is revoked (by subject without max-lifetime).
fn revokesession(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::revokesession)
}

// The keyed forms, for Redis Cluster: the same commands with the token's keys declared as
// their first arguments (`<entry-key> <subject-key>`, or `<subject-key>` for REVOKEALL), so
// Redis routes them, follows slot migrations and applies ACL key patterns. Any key other than
// the token's own is refused.

/// `JWTDENY.KCHECK <entry-key> <subject-key> <token> [WITHCLAIMS]` → as JWTDENY.CHECK.
fn kcheck(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::kcheck)
}

/// `JWTDENY.KREVOKE <entry-key> <subject-key> <token>` → as JWTDENY.REVOKE.
fn krevoke(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::krevoke)
}

/// `JWTDENY.KREVOKEALL <subject-key> <sub> [AT <unix-seconds>]` → as JWTDENY.REVOKEALL.
fn krevokeall(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::krevokeall)
}

/// `JWTDENY.KINSPECT <entry-key> <subject-key> <token>` → as JWTDENY.INSPECT.
fn kinspect(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::kinspect)
}

/// `JWTDENY.KSCHECK <entry-key> <subject-key> <session-key> <token> [WITHCLAIMS]` → as
/// JWTDENY.CHECK, for a token with a `sid`, its session key declared too.
fn kscheck(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::kscheck)
}

/// `JWTDENY.KSINSPECT <entry-key> <subject-key> <session-key> <token>` → as JWTDENY.INSPECT.
fn ksinspect(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::ksinspect)
}

/// `JWTDENY.KLOGOUT <subject-key> <session-key> <logout_token>` → as JWTDENY.LOGOUT; without
/// `sid` in the token, the session key is the subject key again.
fn klogout(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::klogout)
}

/// `JWTDENY.KREVOKESESSION <subject-key> <session-key> <sub> <sid>` → as JWTDENY.REVOKESESSION.
fn krevokesession(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::krevokesession)
}

/// `JWTDENY.KEYS RELOAD` → number of keys loaded (a bad file keeps the old keys and errors);
/// `JWTDENY.KEYS LIST` → per key `[kid, <kid>, kty, <kty>, algorithms, [<alg>…]]`, never material.
fn keys(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::keys)
}

/// ACL categories per command, for servers that let modules set them (Redis 7.2+, Valkey):
/// built-in ones, so `-@write` or `+@read` rules cover jwtdeny like any other command, plus the
/// module's own `@jwtdeny` where modules may add categories (Redis 7.4+, Valkey).
const ACL_CATEGORIES: [(&str, &str); 15] = [
    ("jwtdeny.check", "read fast"),
    ("jwtdeny.inspect", "read fast"),
    ("jwtdeny.kcheck", "read fast"),
    ("jwtdeny.kinspect", "read fast"),
    ("jwtdeny.kscheck", "read fast"),
    ("jwtdeny.ksinspect", "read fast"),
    ("jwtdeny.revoke", "write fast"),
    ("jwtdeny.revokeall", "write fast"),
    ("jwtdeny.logout", "write fast"),
    ("jwtdeny.revokesession", "write fast"),
    ("jwtdeny.krevoke", "write fast"),
    ("jwtdeny.krevokeall", "write fast"),
    ("jwtdeny.klogout", "write fast"),
    ("jwtdeny.krevokesession", "write fast"),
    ("jwtdeny.keys", "admin dangerous"),
];

/// Sets [`ACL_CATEGORIES`] by hand rather than through `redis_module!`: the macro's way fails the
/// whole load where the category survives an unload (Valkey) and cannot fall back to the
/// built-in categories alone where module categories do not exist (Redis 7.2). Redis 7.0 has
/// neither API; there the README's per-command rules apply.
fn set_acl_categories(ctx: &Context) {
    use std::ffi::CString;
    // SAFETY: called during OnLoad, as these APIs require; every pointer passed is valid.
    unsafe {
        let (Some(get), Some(set)) = (
            redis_module::raw::RedisModule_GetCommand,
            redis_module::raw::RedisModule_SetCommandACLCategories,
        ) else {
            log::notice("jwtdeny: this server cannot set command ACL categories");
            return;
        };
        let own = CString::new("jwtdeny").unwrap_or_default();
        let with_own = match redis_module::raw::RedisModule_AddACLCategory {
            // Fails when the category is already there (a reload): it is usable all the same.
            Some(add) => {
                let _ = add(ctx.get_raw(), own.as_ptr());
                true
            }
            None => false,
        };
        for (name, builtin) in ACL_CATEGORIES {
            let (Ok(cname), Ok(plain), Ok(full)) = (
                CString::new(name),
                CString::new(builtin),
                CString::new(format!("{builtin} jwtdeny")),
            ) else {
                continue;
            };
            let command = get(ctx.get_raw(), cname.as_ptr());
            if command.is_null() {
                continue;
            }
            let ok = |cats: &CString| {
                set(command, cats.as_ptr()) == redis_module::raw::REDISMODULE_OK as i32
            };
            // With @jwtdeny where the server has it, else the built-in categories alone.
            if with_own && ok(&full) {
                continue;
            }
            if !ok(&plain) {
                log::warning(&format!("jwtdeny: could not set ACL categories of {name}"));
            }
        }
    }
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    log::init(ctx);
    commands::install_panic_hook();
    set_acl_categories(ctx);
    command_info::declare(ctx);
    let configured = state::register_configs(ctx)
        .and_then(|()| state::apply_module_args(args))
        .and_then(|()| denylist::check_db(ctx, state::current().settings.db))
        .and_then(|()| config::check_combination(&state::current().settings));
    if let Err(e) = configured {
        log::warning(&format!("jwtdeny: refusing to load: {e}"));
        // No OnUnload follows a refused load: undo what was set up, and start nothing.
        state::stop();
        log::shutdown();
        return Status::Err;
    }
    let fail_closed = "every CHECK and REVOKE answers NOKEY until a good keys file is loaded \
                       (JWTDENY.KEYS RELOAD or CONFIG SET jwtdeny.keys-file)";
    match state::start() {
        Ok(Some(set)) => {
            log::notice(&format!("jwtdeny: loaded {} verification keys", set.len()));
            for why in &set.skipped {
                log::notice(&format!("jwtdeny: skipped {why}"));
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
    state::stop();
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
        commands: [
            ["jwtdeny.check", check, "readonly fast", 0, 0, 0, ""],
            ["jwtdeny.inspect", inspect, "readonly fast", 0, 0, 0, ""],
            ["jwtdeny.revoke", revoke, "write deny-oom fast", 0, 0, 0, ""],
            ["jwtdeny.revokeall", revokeall, "write deny-oom fast", 0, 0, 0, ""],
            ["jwtdeny.keys", keys, "admin deny-script", 0, 0, 0, ""],
            ["jwtdeny.kcheck", kcheck, "readonly fast", 1, 2, 1, ""],
            ["jwtdeny.kinspect", kinspect, "readonly fast", 1, 2, 1, ""],
            ["jwtdeny.krevoke", krevoke, "write deny-oom fast", 1, 2, 1, ""],
            ["jwtdeny.krevokeall", krevokeall, "write deny-oom fast", 1, 1, 1, ""],
            ["jwtdeny.logout", logout, "write deny-oom fast", 0, 0, 0, ""],
            ["jwtdeny.revokesession", revokesession, "write deny-oom fast", 0, 0, 0, ""],
            ["jwtdeny.kscheck", kscheck, "readonly fast", 1, 3, 1, ""],
            ["jwtdeny.ksinspect", ksinspect, "readonly fast", 1, 3, 1, ""],
            ["jwtdeny.klogout", klogout, "write deny-oom fast", 1, 2, 1, ""],
            ["jwtdeny.krevokesession", krevokesession, "write deny-oom fast", 1, 2, 1, ""],
        ],
        // No `configurations:` block: `state::register_configs` registers config::SPECS in `init`.
    }
}
