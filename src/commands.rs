//! Command handlers: argument parsing and replies. The logic lives in `token`, `keys`,
//! `denylist` and `config`; errors become replies through `error::Error`.

use crate::config;
use crate::denylist;
use crate::error::{quote, Error};
use crate::keys::alg_name;
use crate::token::{self, Claims};
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{SystemTime, UNIX_EPOCH};

type Handler = fn(&Context, Vec<RedisString>) -> RedisResult;

/// Runs a handler so that a bug in it becomes an error reply and a log line. A panic that
/// crossed into redis-server would abort it, and every client's data with it.
pub fn guard(ctx: &Context, args: Vec<RedisString>, handler: Handler) -> RedisResult {
    match catch_unwind(AssertUnwindSafe(|| handler(ctx, args))) {
        Ok(reply) => reply,
        Err(_) => Err(Error::Internal("unexpected failure, see the server log".into()).into()),
    }
}

/// Sends panic messages to the server log instead of a stderr nobody reads. Never expected to
/// fire; it is there so that if it does, the reason is on record.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        redis_module::logging::log_warning(format!("jwtdeny: internal error{place}: {info}"));
    }));
}

/// The wall clock in ms, the same clock (gettimeofday) Redis expires keys by.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A verified token: its claims, its denylist key, and the leeway it was judged with.
struct Verified {
    claims: Claims,
    key: String,
    leeway: i64,
}

fn verify(token: &RedisString) -> Result<Verified, Error> {
    // Copies out of the config lock before any call back into Redis.
    let settings = config::settings();
    let claims = token::authenticate(token.as_slice(), &config::keys(), &settings.policy())?;
    let key = denylist::entry_key(&settings.prefix, &claims.sub, claims.iat);
    Ok(Verified {
        claims,
        key,
        leeway: settings.leeway,
    })
}

fn single_token(args: &[RedisString]) -> Result<&RedisString, RedisError> {
    match args {
        [_, token] => Ok(token),
        _ => Err(RedisError::WrongArity),
    }
}

pub fn check(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let v = verify(single_token(&args)?)?;
    let revoked = denylist::contains(ctx, &v.key);
    // The clock is read after the lookup: if Redis found the entry already expired, this clock
    // is at least as late and finds the token expired too. A revoked token never answers 1.
    v.claims.check_time(now_ms(), v.leeway)?;
    Ok(RedisValue::Integer(if revoked { 0 } else { 1 }))
}

pub fn revoke(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let v = verify(single_token(&args)?)?;
    // An expired token needs no entry; storing one with a past expiry would store nothing.
    v.claims.check_time(now_ms(), v.leeway)?;
    let added = denylist::insert(ctx, &v.key, v.claims.expires_at_ms(v.leeway))?;
    Ok(RedisValue::Integer(i64::from(added)))
}

pub fn keys(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let sub = match args.as_slice() {
        [_, sub] => sub.to_string_lossy(),
        _ => return Err(RedisError::WrongArity),
    };
    if sub.eq_ignore_ascii_case("RELOAD") {
        let set = config::reload_keys().inspect_err(|e| {
            ctx.log_warning(&format!(
                "jwtdeny: JWTDENY.KEYS RELOAD kept the old keys: {e}"
            ));
        })?;
        ctx.log_notice(&format!(
            "jwtdeny: reloaded {} keys from {}",
            set.len(),
            quote(&config::settings().keys_file)
        ));
        return Ok(RedisValue::Integer(
            i64::try_from(set.len()).unwrap_or(i64::MAX),
        ));
    }
    if sub.eq_ignore_ascii_case("LIST") {
        let list = config::keys()
            .iter()
            .map(|key| {
                RedisValue::Array(vec![
                    RedisValue::SimpleStringStatic("kid"),
                    key.kid
                        .as_ref()
                        .map_or(RedisValue::Null, |kid| RedisValue::BulkString(kid.clone())),
                    RedisValue::SimpleStringStatic("kty"),
                    RedisValue::SimpleStringStatic(key.kty),
                    RedisValue::SimpleStringStatic("algorithms"),
                    RedisValue::Array(
                        key.algorithms
                            .iter()
                            .map(|a| RedisValue::SimpleStringStatic(alg_name(a)))
                            .collect(),
                    ),
                ])
            })
            .collect();
        return Ok(RedisValue::Array(list));
    }
    Err(Error::Usage(format!(
        "unknown subcommand {} for JWTDENY.KEYS (try RELOAD or LIST)",
        quote(&sub)
    ))
    .into())
}
