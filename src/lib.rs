//! jwtdeny: a native JWT denylist for Redis.
//!
//! This file only registers the module: its configs and its command table. Each command is a
//! thin wrapper whose doc comment gives the syntax and reply; the README has the full reference.

mod commands;
mod config;
mod denylist;
mod error;
mod keys;
mod token;

use redis_module::configuration::ConfigurationFlags;
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

/// `JWTDENY.CHECK <token>` → `1` (authentic, valid now, not revoked) or `0` (revoked);
/// otherwise an error whose first word is the reason (`MALFORMED`, `BADALG`, `NOKEY`, `BADSIG`,
/// `BADCLAIMS`, `EXPIRED`, `NOTYET`). Read-only: works on replicas.
fn check(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::check)
}

/// `JWTDENY.REVOKE <token>` → `1` (revoked now) or `0` (already revoked); the same errors as
/// CHECK. Stores `<prefix>{<sub>}:<iat>` expiring at `(exp + leeway) × 1000` ms.
fn revoke(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::revoke)
}

/// `JWTDENY.KEYS RELOAD` → number of keys loaded (a bad file keeps the old keys and errors);
/// `JWTDENY.KEYS LIST` → per key `[kid, <kid>, kty, <kty>, algorithms, [<alg>…]]`, never material.
fn keys(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    commands::guard(ctx, args, commands::keys)
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    commands::install_panic_hook();
    if let Err(e) = config::apply_module_args(args) {
        ctx.log_warning(&format!("jwtdeny: refusing to load: {e}"));
        return Status::Err;
    }
    let fail_closed = "every CHECK and REVOKE answers NOKEY until a good keys file is loaded \
                       (JWTDENY.KEYS RELOAD or CONFIG SET jwtdeny.keys-file)";
    match config::start() {
        Ok(Some(set)) => {
            ctx.log_notice(&format!("jwtdeny: loaded {} verification keys", set.len()));
            for why in &set.skipped {
                ctx.log_notice(&format!("jwtdeny: skipped {why}"));
            }
        }
        Ok(None) => ctx.log_warning(&format!(
            "jwtdeny: jwtdeny.keys-file is not set; {fail_closed}"
        )),
        Err(e) => ctx.log_warning(&format!("jwtdeny: {e}; {fail_closed}")),
    }
    Status::Ok
}

fn deinit(_ctx: &Context) -> Status {
    config::stop();
    Status::Ok
}

/// Redis wants one integer: major × 10000 + minor × 100 + patch.
fn module_version() -> i32 {
    let part = |s: &str| s.parse::<i32>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

// ACL-category fields stay empty: Redis 7.0 refuses to load a module that sets them.
redis_module! {
    name: "jwtdeny",
    version: module_version(),
    allocator: (get_allocator!(), get_allocator!()),
    data_types: [],
    init: init,
    deinit: deinit,
    commands: [
        ["jwtdeny.check", check, "readonly fast", 0, 0, 0, ""],
        ["jwtdeny.revoke", revoke, "write deny-oom fast", 0, 0, 0, ""],
        ["jwtdeny.keys", keys, "admin deny-script", 0, 0, 0, ""],
    ],
    configurations: [
        i64: [
            ["leeway", &config::LEEWAY, config::DEFAULT_LEEWAY, config::MIN_LEEWAY, config::MAX_LEEWAY, ConfigurationFlags::DEFAULT, None],
            ["max-token-bytes", &config::MAX_TOKEN_BYTES, config::DEFAULT_MAX_TOKEN_BYTES, config::MIN_MAX_TOKEN_BYTES, config::MAX_MAX_TOKEN_BYTES, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["keys-file", &config::KEYS_FILE, "", ConfigurationFlags::DEFAULT, None],
            ["algorithms", &config::ALGORITHMS, "", ConfigurationFlags::DEFAULT, None],
            ["issuer", &config::ISSUER, "", ConfigurationFlags::DEFAULT, None],
            ["audience", &config::AUDIENCE, "", ConfigurationFlags::DEFAULT, None],
            // Load time only: a new prefix at runtime would silently un-revoke every token.
            ["prefix", &config::PREFIX, config::DEFAULT_PREFIX, ConfigurationFlags::IMMUTABLE, None],
        ],
        // The macro wants every block present; module args are parsed in `init` instead, so
        // that an unknown name is refused rather than ignored.
        bool: [],
        enum: [],
        module_args_as_configuration: false,
    ]
}
