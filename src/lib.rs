//! jwtdeny: a native JWT denylist for Redis.
//!
//! This file only registers the module: its configs and the commands of the command table
//! (`table`: one row per command, its handler in `commands`); the README has the reference.

mod blocked;
mod cache;
mod clock;
mod command_info;
mod commands;
mod config;
mod denylist;
mod dpop;
mod info;
mod issuers;
mod jwks;
mod log;
mod revocation;
mod route;
mod state;
mod stats;
mod table;
mod workers;

use redis_module::{raw, redis_module, Context, RedisString, Status};
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

/// Creates the commands. Not through redis-module's table: its entry points collect the
/// arguments into a `Vec`, an allocation on every command.
fn register_commands(ctx: &Context) -> Result<(), String> {
    // SAFETY: a plain read of the API table, filled in before OnLoad runs.
    let Some(create) = (unsafe { raw::RedisModule_CreateCommand }) else {
        return Err("this server cannot create module commands".into());
    };
    for c in table::COMMANDS {
        let (first, last, step) = c.keys.legacy();
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
        for c in table::COMMANDS {
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
    route::init(ctx);
    set_acl_categories(ctx);
    command_info::declare(ctx, &table::COMMANDS);
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
