//! Command handlers: argument parsing and replies. The logic lives in `token`, `logout`,
//! `keys`, `denylist` and `config`; errors become replies through `error::Error`.

use crate::backchannel;
use crate::cache::{self, Verified};
use crate::config::Settings;
use crate::denylist::{self, Place, RevokedBy};
use crate::error::{quote, Error};
use crate::fetch::Trigger;
use crate::jwks::{self, Patience};
use crate::keys::alg_name;
use crate::keyscheme::{session_key, sidless_key, subject_key};
use crate::log;
use crate::state::{self, Snapshot};
use crate::stats::{self, SessionEnd};
use crate::token::{self, Claims};
use crate::workers;
use redis_module::{raw, Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub type Handler = fn(&Context, &[RedisString]) -> RedisResult;

/// A command as Redis calls it: its arguments are lent to the handler without a vector (every
/// command has a few; more go through one), the handler runs in the [`guard`], and its result
/// is the reply.
///
/// # Safety
/// `ctx`, `argv` and `argc` are what Redis passed to a command (or to a blocked client's
/// reply callback), on the main thread.
pub unsafe fn run(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: Handler,
) -> c_int {
    let context = Context::new(ctx);
    let reply = with_args(ctx, argv, argc, |args| guard(&context, args, handler));
    context.reply(reply) as c_int
}

/// Arguments a command's handler may borrow without a heap vector.
const INLINE_ARGS: usize = 8;

/// Lends Redis's argument vector to `f` as module strings.
///
/// # Safety
/// As [`run`]: `argv` holds `argc` strings that Redis keeps alive for the whole call.
unsafe fn with_args<R>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    f: impl FnOnce(&[RedisString]) -> R,
) -> R {
    let n = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() || n > INLINE_ARGS {
        return f(&redis_module::decode_args(ctx, argv, argc));
    }
    // SAFETY: Redis passes `argc` valid pointers in `argv`.
    let raw = unsafe { std::slice::from_raw_parts(argv, n) };
    // Borrowed, not retained: Redis owns them for the call, so none may be freed on drop.
    let lent: [std::mem::ManuallyDrop<RedisString>; INLINE_ARGS] = std::array::from_fn(|i| {
        let inner = raw.get(i).copied().unwrap_or(std::ptr::null_mut());
        std::mem::ManuallyDrop::new(RedisString::from_redis_module_string(ctx, inner))
    });
    // SAFETY: ManuallyDrop<T> has T's layout; the first `n` hold Redis's arguments.
    let args = unsafe { std::slice::from_raw_parts(lent.as_ptr().cast::<RedisString>(), n) };
    f(args)
}

/// Runs a handler in the denylist's database (the client gets its own back afterwards), so
/// that a bug in it becomes an error reply and a log line. A panic that crossed into
/// redis-server would abort it, and every client's data with it.
fn guard(ctx: &Context, args: &[RedisString], handler: Handler) -> RedisResult {
    let _db = denylist::InDb::select(ctx, state::db())?;
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
        log::warning(&format!("jwtdeny: internal error{place}: {info}"));
    }));
}

fn single_token(args: &[RedisString]) -> Result<&RedisString, RedisError> {
    match args {
        [_, token] => Ok(token),
        _ => Err(RedisError::WrongArity),
    }
}

/// The wall clock in ms, the same clock (gettimeofday) Redis expires keys by.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether the server runs Redis Cluster: fixed before modules load, so read once, not on
/// every command.
static IN_CLUSTER: AtomicBool = AtomicBool::new(false);

/// Reads what the commands need to know of the server once, as the module loads.
pub fn init(ctx: &Context) {
    let cluster = ctx.get_flags().contains(ContextFlags::CLUSTER);
    IN_CLUSTER.store(cluster, Ordering::Relaxed);
}

/// Where a command's Redis keys come from, and so how Redis routed it.
#[derive(Clone, Copy)]
enum Route<'a> {
    /// Derived from the token or subject alone: the standalone forms.
    Derived,
    /// Also given as the leading arguments of a keyed form (`JWTDENY.K…`), so that Redis
    /// Cluster routes the command, follows migrations and applies ACL key patterns by them.
    Declared(&'a [RedisString]),
}

/// Takes a keyed form's `n` leading keys off its arguments. The rest keeps one leading
/// element (the last key) standing in for the command name, so the standalone parsers apply.
fn declared(args: &[RedisString], n: usize) -> Result<(Route<'_>, &[RedisString]), RedisError> {
    match (args.get(1..=n), args.get(n..)) {
        (Some(keys), Some(rest)) if rest.len() >= 2 => Ok((Route::Declared(keys), rest)),
        _ => Err(RedisError::WrongArity),
    }
}

/// Refuses to act on keys other than the ones Redis routed the command by. A keyed form must
/// declare exactly the token's own keys (no pointing a revocation at someone else's entry); a
/// standalone form in a cluster could be on the wrong node, so it names the keyed form instead.
fn check_route(route: Route, derived: &[&str], command: &str) -> Result<(), Error> {
    match route {
        Route::Declared(declared) => {
            for (given, want) in declared.iter().zip(derived) {
                if given.as_slice() != want.as_bytes() {
                    return Err(Error::Usage(format!(
                        "key {} does not match the derived key {}",
                        quote(&given.to_string_lossy()),
                        quote(want)
                    )));
                }
            }
            Ok(())
        }
        Route::Derived if IN_CLUSTER.load(Ordering::Relaxed) => Err(Error::Usage(format!(
            "in Redis Cluster use the keyed form JWTDENY.K{command} {} ... so the command \
                 reaches the node that holds its keys",
            derived
                .iter()
                .map(|k| quote(k))
                .collect::<Vec<_>>()
                .join(" ")
        ))),
        Route::Derived => Ok(()),
    }
}

/// Verifies a token's signature and claims now, on this thread.
fn authenticate(snap: &Snapshot, token: &[u8]) -> Result<Claims, Error> {
    token::authenticate(token, &snap.keys, &snap.settings.policy())
}

/// A verified token's claims with where their revocation would be stored.
fn placed(snap: &Snapshot, claims: Claims) -> Arc<Verified> {
    let place = Place::new(
        &snap.settings.prefix,
        &claims.sub,
        claims.iat,
        claims.sid.as_deref(),
    );
    Arc::new(Verified {
        lifetime: claims.lifetime(),
        place,
    })
}

/// Verifies through the verification cache.
fn verified(snap: &Snapshot, token: &RedisString) -> Result<Arc<Verified>, Error> {
    cache::verified(token.as_slice(), snap.generation, || {
        authenticate(snap, token.as_slice()).map(|c| placed(snap, c))
    })
}

/// Checks the command may act where a verified token's revocation lives.
fn locate(v: &Verified, route: Route, command: &str) -> Result<(), Error> {
    if matches!(route, Route::Derived) && !IN_CLUSTER.load(Ordering::Relaxed) {
        return Ok(()); // a standalone server holds every key: nothing to compare
    }
    let place = &v.place;
    match place.session() {
        // Every token without sid: the two keys, exactly as before sessions existed.
        None if !matches!(route, Route::Declared(d) if d.len() == 3) => {
            check_route(route, &[place.entry(), place.subject()], command)
        }
        _ => check_token_route(route, place, command),
    }
}

/// [`check_route`] for a token's keys. The three-key forms (`KSCHECK`, `KSINSPECT`) declare the
/// third cutoff a token is looked up in too: its session's, or for a token without `sid` its
/// subject's sid-less cutoff. The two-key forms may leave it undeclared: it shares the
/// subject's slot, and Redis runs a two-key command in a migrating slot only where both
/// declared keys are, which holds the token's entry (a revoked token). A standalone CHECK or
/// INSPECT of a token with a `sid` in a cluster names the form that declares every key it reads.
#[cold]
fn check_token_route(route: Route, place: &Place, command: &str) -> Result<(), Error> {
    let (entry, subject, third) = (place.entry(), place.subject(), place.session_cutoff());
    let three_keys = matches!(route, Route::Declared(d) if d.len() == 3);
    match place.session() {
        _ if three_keys => check_route(route, &[entry, subject, third], command),
        Some(_) if matches!(route, Route::Derived) && matches!(command, "CHECK" | "INSPECT") => {
            check_route(route, &[entry, subject, third], &format!("S{command}"))
        }
        _ => check_route(route, &[entry, subject], command),
    }
}

/// Whether the token is revoked, judged as one step with its expiry: the clock is read after
/// the lookups, so if Redis found an entry already expired, this clock is at least as late and
/// finds the token expired too. A revoked token never answers "active".
fn status(ctx: &Context, v: &Verified, leeway: i64) -> Result<Option<RevokedBy>, Error> {
    let revoked = v.place.revoked_by(ctx, v.lifetime.iat)?;
    v.lifetime.check_time(now_ms(), leeway)?;
    Ok(revoked)
}

fn syntax_error(arg: &RedisString, expected: &str) -> RedisError {
    Error::Usage(format!(
        "syntax error at {}, expected {expected}",
        quote(&arg.to_string_lossy())
    ))
    .into()
}

pub fn check(ctx: &Context, args: &[RedisString]) -> RedisResult {
    check_with(ctx, args, Route::Derived)
}

pub fn kcheck(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let (route, rest) = declared(args, 2)?;
    check_with(ctx, rest, route)
}

pub fn kscheck(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let (route, rest) = declared(args, 3)?;
    check_with(ctx, rest, route)
}

/// How many keys a keyed form of CHECK declares, by its name: 0 for the standalone form.
fn declared_keys(args: &[RedisString]) -> usize {
    let name = args
        .first()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match name.as_str() {
        "jwtdeny.kcheck" => 2,
        "jwtdeny.kscheck" => 3,
        _ => 0,
    }
}

fn check_args(args: &[RedisString]) -> Result<(&RedisString, bool), RedisError> {
    Ok(match args {
        [_, token] => (token, false),
        [_, token, opt] if opt.to_string_lossy().eq_ignore_ascii_case("WITHCLAIMS") => {
            (token, true)
        }
        [_, _, opt] => return Err(syntax_error(opt, "WITHCLAIMS")),
        _ => return Err(RedisError::WrongArity),
    })
}

fn check_with(ctx: &Context, args: &[RedisString], route: Route) -> RedisResult {
    let (token, with_claims) = check_args(args)?;
    let snap = state::current();
    let digest = match cache::lookup(token.as_slice(), snap.generation) {
        cache::Lookup::Hit(v) => return finish_check(ctx, &snap, token, with_claims, route, Ok(v)),
        cache::Lookup::Miss(digest) => Some(digest),
        cache::Lookup::Off => None,
    };
    // An HMAC takes about a microsecond, less than blocking a client costs: only asymmetric
    // signatures are worth a worker.
    // A token whose kid is not loaded may be waiting for a fetch: that is decided inline.
    // A command answering from a callback verifies inline: it may not block again.
    if workers::running()
        && !answering()
        && !token::is_hmac(token.as_slice())
        && !may_refetch(token, &snap)
    {
        let (job_snap, job_token) = (snap.clone(), token.as_slice().to_vec());
        let verify = move || authenticate(&job_snap, &job_token);
        if workers::submit(ctx, verify, digest, snap.generation, check_reply) {
            return Ok(RedisValue::NoReply); // check_reply answers once a worker has verified it
        }
    }
    stats::count_verification(false);
    let verified = authenticate(&snap, token.as_slice()).map(|c| placed(&snap, c));
    if let (Ok(v), Some(d)) = (&verified, digest) {
        cache::store(d, snap.generation, v);
    }
    if wait_for_keys(ctx, &verified, token, &snap, Patience::Brief) {
        return Ok(RedisValue::NoReply); // refetched_reply judges it by the new keys
    }
    finish_check(ctx, &snap, token, with_claims, route, verified)
}

thread_local! {
    /// Set while a command runs from a blocked client's reply or timeout callback, where it
    /// must answer there and then: a client blocked again from a callback never gets that
    /// reply, and every later reply on its connection would answer the request before it.
    static ANSWERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the command runs from a blocked client's callback (it may not block again).
fn answering() -> bool {
    ANSWERING.get()
}

/// Runs a command's handler from a blocked client's reply or timeout callback: it answers
/// without blocking again (no worker, no second wait for keys).
///
/// # Safety
/// As [`run`], from a blocked client's callback.
unsafe fn answer(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    handler: Handler,
) -> c_int {
    let before = ANSWERING.replace(true);
    let answered = run(ctx, argv, argc, handler);
    ANSWERING.set(before);
    answered
}

/// Whether a token names a `kid` the keys in force lack while keys come from a provider:
/// fresh keys might then verify it.
fn may_refetch(token: &RedisString, snap: &Snapshot) -> bool {
    !answering()
        && jwks::configured()
        && token::header_kid(token.as_slice()).is_some_and(|kid| !snap.keys.has_kid(&kid))
}

/// After a verification failed for want of the token's key: blocks the client while the
/// provider's keys are fetched (one fetch shared by every such client, at most one per
/// `jwtdeny.jwks-cooldown`), if a source is configured and the client may block; how long it
/// may wait is `patience` (see `jwks::Patience`). Returns whether it blocked; the command then
/// answers from [`refetched_reply`].
fn wait_for_keys<T>(
    ctx: &Context,
    claims: &Result<T, Error>,
    token: &RedisString,
    snap: &Snapshot,
    patience: Patience,
) -> bool {
    matches!(claims, Err(Error::NoKey(_)))
        && may_refetch(token, snap)
        && jwks::await_keys(
            ctx,
            Trigger::UnknownKid,
            patience,
            refetched_reply,
            refetched_reply,
        )
}

/// Reply (and timeout) callback of a command that waited for fresh keys: runs the command
/// again, on the main thread, with the keys now in force.
unsafe extern "C" fn refetched_reply(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let name = with_args(ctx, argv, argc, |args| {
        args.first()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
    });
    let handler: Handler = match name.as_str() {
        "jwtdeny.check" => check,
        "jwtdeny.kcheck" => kcheck,
        "jwtdeny.kscheck" => kscheck,
        "jwtdeny.revoke" => revoke,
        "jwtdeny.krevoke" => krevoke,
        "jwtdeny.logout" => logout,
        "jwtdeny.klogout" => klogout,
        _ => |_, _| Err(Error::Internal("no command to answer".into()).into()),
    };
    answer(ctx, argv, argc, handler)
}

/// Reply callback of a CHECK or KCHECK whose token a worker verified: runs on the main thread
/// with the command's original arguments.
unsafe extern "C" fn check_reply(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    answer(ctx, argv, argc, |ctx, args| {
        let (route, rest) = match declared_keys(args) {
            0 => (Route::Derived, args),
            n => declared(args, n)?,
        };
        let (token, with_claims) = check_args(rest)?;
        let snap = state::current();
        let verified = match workers::take_done(ctx) {
            Some(done) if done.generation == snap.generation => {
                let verified = done.result.map(|c| placed(&snap, c));
                if let (Ok(v), Some(d)) = (&verified, done.digest) {
                    cache::store(d, done.generation, v);
                }
                verified
            }
            // Keys or rules changed while it was queued: judge it by the ones in force.
            _ => {
                stats::count_verification(false);
                verified(&snap, token)
            }
        };
        finish_check(ctx, &snap, token, with_claims, route, verified)
    })
}

/// The main-thread half of CHECK: where the token's revocation would be, whether it is there,
/// and the reply.
fn finish_check(
    ctx: &Context,
    snap: &Snapshot,
    token: &RedisString,
    with_claims: bool,
    route: Route,
    verified: Result<Arc<Verified>, Error>,
) -> RedisResult {
    let outcome = verified.and_then(|v| {
        locate(&v, route, "CHECK")?;
        status(ctx, &v, snap.settings.leeway)
    });
    stats::count_check(outcome.as_ref().map(Option::is_some));
    let revoked = outcome?;
    let code = RedisValue::Integer(if revoked.is_some() { 0 } else { 1 });
    if !with_claims {
        return Ok(code);
    }
    let claims = match revoked {
        Some(_) => RedisValue::Null,
        None => RedisValue::StringBuffer(token::payload(token.as_slice())?),
    };
    Ok(RedisValue::Array(vec![code, claims]))
}

pub fn revoke(ctx: &Context, args: &[RedisString]) -> RedisResult {
    revoke_with(ctx, args, Route::Derived)
}

pub fn krevoke(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let (route, rest) = declared(args, 2)?;
    revoke_with(ctx, rest, route)
}

fn revoke_with(ctx: &Context, args: &[RedisString], route: Route) -> RedisResult {
    let token = single_token(args)?;
    let snap = state::current();
    let verified = verified(&snap, token);
    if wait_for_keys(ctx, &verified, token, &snap, Patience::UntilFetched) {
        return Ok(RedisValue::NoReply); // refetched_reply judges it by the new keys
    }
    let leeway = snap.settings.leeway;
    let outcome = verified.and_then(|v| {
        locate(&v, route, "REVOKE")?;
        if status(ctx, &v, leeway)?.is_some() {
            return Ok(false);
        }
        denylist::insert(ctx, &v.place, v.lifetime.expires_at_ms(leeway))
    });
    stats::count_revoke(outcome.as_ref().copied());
    Ok(RedisValue::Integer(i64::from(outcome?)))
}

pub fn revokeall(ctx: &Context, args: &[RedisString]) -> RedisResult {
    revokeall_with(ctx, args, Route::Derived)
}

pub fn krevokeall(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let (route, rest) = declared(args, 1)?;
    revokeall_with(ctx, rest, route)
}

fn revokeall_with(ctx: &Context, args: &[RedisString], route: Route) -> RedisResult {
    let (sub, at) = match args {
        [_, sub] => (sub, None),
        [_, sub, kw, at] if kw.to_string_lossy().eq_ignore_ascii_case("AT") => (sub, Some(at)),
        [_, _, kw, _] => return Err(syntax_error(kw, "AT")),
        _ => return Err(RedisError::WrongArity),
    };
    let sub = match sub.try_as_str() {
        Ok(s) if !s.is_empty() => s,
        _ => return Err(Error::Usage("sub must be a non-empty UTF-8 string".into()).into()),
    };
    let now = now_ms().div_euclid(1000);
    let cutoff = match at {
        None => now,
        Some(at) => {
            let at = at
                .parse_integer()
                .map_err(|_| Error::Usage("AT must be an integer (unix seconds)".into()))?;
            // A future cutoff would also refuse tokens not issued yet, with no expiry in sight.
            if at > now {
                return Err(
                    Error::Usage(format!("AT {at} is in the future (now is {now})")).into(),
                );
            }
            if at < -token::MAX_NUMERIC_DATE {
                return Err(Error::Usage(format!("AT {at} is out of range")).into());
            }
            at
        }
    };
    let (key, expires_at_ms) = {
        let s = &state::current().settings;
        let expiry =
            (s.max_lifetime > 0).then(|| (cutoff + s.max_lifetime + s.leeway).saturating_mul(1000));
        (subject_key(&s.prefix, sub), expiry)
    };
    // Such a cutoff covers only tokens that have expired already; and written with an expiry in
    // the past, the SET would delete the cutoff in force instead of raising it.
    if let Some(ms) = expires_at_ms.filter(|ms| *ms <= now_ms()) {
        return Err(Error::Usage(format!(
            "AT {cutoff} is too far in the past: its cutoff would expire at {ms} ms (AT + \
             jwtdeny.max-lifetime + jwtdeny.leeway), and every token it covers has expired"
        ))
        .into());
    }
    check_route(route, &[&key], "REVOKEALL")?;
    stats::count_revokeall();
    let in_force = denylist::raise_cutoff(ctx, &key, cutoff, expires_at_ms)?;
    Ok(RedisValue::Integer(in_force))
}

pub fn inspect(ctx: &Context, args: &[RedisString]) -> RedisResult {
    inspect_with(ctx, args, Route::Derived)
}

pub fn kinspect(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let (route, rest) = declared(args, 2)?;
    inspect_with(ctx, rest, route)
}

pub fn ksinspect(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let (route, rest) = declared(args, 3)?;
    inspect_with(ctx, rest, route)
}

fn inspect_with(ctx: &Context, args: &[RedisString], route: Route) -> RedisResult {
    let token = single_token(args)?;
    let snap = state::current();
    let (prefix, leeway) = (&snap.settings.prefix, snap.settings.leeway);
    let (seen, outcome) = token::inspect(token.as_slice(), &snap.keys, &snap.settings.policy());
    let place = seen
        .sub
        .as_deref()
        .zip(seen.iat)
        .map(|(sub, iat)| Place::new(prefix, sub, iat, seen.sid.as_deref()));
    if let Some(p) = &place {
        check_token_route(route, p, "INSPECT")?;
    }
    let revoked = match (&place, seen.iat) {
        (Some(p), Some(iat)) => p.revoked_by(ctx, iat),
        _ => Ok(None),
    };
    let keys = place.as_ref();
    let now = now_ms();
    let (status, reason) = match (&outcome, &revoked) {
        (Err(e), _) | (_, Err(e)) => (e.code().to_string(), Some(e.message().to_string())),
        (Ok(claims), Ok(r)) => match (claims.check_time(now, leeway), r) {
            (Err(e), _) => (e.code().to_string(), Some(e.message().to_string())),
            (Ok(()), Some(by)) => (
                "revoked".into(),
                Some(format!("revoked by {}", by.as_str())),
            ),
            (Ok(()), None) => ("active".into(), None),
        },
    };
    let revoked_by = revoked.ok().flatten();
    let expires_at_ms = match (&keys, revoked_by) {
        (Some(k), Some(RevokedBy::Token)) => denylist::expire_time_ms(ctx, k.entry()),
        (Some(k), Some(RevokedBy::Subject)) => denylist::expire_time_ms(ctx, k.subject()),
        (Some(k), Some(RevokedBy::Session)) => denylist::expire_time_ms(ctx, k.session_cutoff()),
        _ => None,
    };
    let text = |v: Option<String>| v.map_or(RedisValue::Null, RedisValue::BulkString);
    let int = |v: Option<i64>| v.map_or(RedisValue::Null, RedisValue::Integer);
    let fields = [
        ("status", RedisValue::BulkString(status)),
        ("reason", text(reason)),
        ("alg", text(seen.alg)),
        ("kid", text(seen.kid)),
        ("sub", text(seen.sub)),
        ("iat", int(seen.iat)),
        ("exp", int(seen.exp)),
        ("key", text(keys.map(|k| k.entry().to_string()))),
        (
            "revoked_by",
            text(revoked_by.map(|r| r.as_str().to_string())),
        ),
        ("expires_at_ms", int(expires_at_ms)),
    ];
    Ok(RedisValue::Array(
        fields
            .into_iter()
            .flat_map(|(name, value)| [RedisValue::SimpleStringStatic(name), value])
            .collect(),
    ))
}

pub fn logout(ctx: &Context, args: &[RedisString]) -> RedisResult {
    logout_with(ctx, args, Route::Derived)
}

/// `JWTDENY.KLOGOUT <subject-key> <session-key> <logout_token>`: for a logout token without
/// `sid`, the session key is the subject key again.
pub fn klogout(ctx: &Context, args: &[RedisString]) -> RedisResult {
    // `<subject-key> <session-key> [<sidless-key>] <logout_token>`
    let (route, rest) = declared(args, args.len().saturating_sub(2).clamp(2, 3))?;
    logout_with(ctx, rest, route)
}

fn logout_with(ctx: &Context, args: &[RedisString], route: Route) -> RedisResult {
    let token = single_token(args)?;
    let snap = state::current();
    let s = &snap.settings;
    let verified = if s.logout_audience.is_empty() {
        Err(Error::Usage(
            "jwtdeny.logout-audience is not set: JWTDENY.LOGOUT needs the OIDC client id that \
             logout tokens name in aud"
                .into(),
        ))
    } else {
        backchannel::authenticate(
            token.as_slice(),
            &snap.keys,
            &s.policy(),
            &s.logout_audience,
        )
    };
    // A provider that rotated its keys signs logout tokens with the new one first.
    if wait_for_keys(ctx, &verified, token, &snap, Patience::UntilFetched) {
        return Ok(RedisValue::NoReply); // refetched_reply judges it by the new keys
    }
    let outcome = verified.and_then(|l| {
        l.check_time(now_ms(), s.leeway)?;
        let sid = l.sid.as_deref();
        end_session(
            ctx,
            s,
            route,
            "LOGOUT",
            &l.sub,
            sid,
            l.iat,
            "jwtdeny.logout",
        )
    });
    stats::count_logout(outcome.as_ref().copied());
    Ok(RedisValue::Integer(i64::from(
        outcome? != SessionEnd::Already,
    )))
}

pub fn revokesession(ctx: &Context, args: &[RedisString]) -> RedisResult {
    revokesession_with(ctx, args, Route::Derived)
}

pub fn krevokesession(ctx: &Context, args: &[RedisString]) -> RedisResult {
    // `<subject-key> <session-key> [<sidless-key>] <sub> <sid>`
    let (route, rest) = declared(args, args.len().saturating_sub(3).clamp(2, 3))?;
    revokesession_with(ctx, rest, route)
}

fn revokesession_with(ctx: &Context, args: &[RedisString], route: Route) -> RedisResult {
    let (sub, sid) = match args {
        [_, sub, sid] => (sub, sid),
        _ => return Err(RedisError::WrongArity),
    };
    let text = |arg: &'_ RedisString, name: &str| -> Result<String, Error> {
        match arg.try_as_str() {
            Ok(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(Error::Usage(format!(
                "{name} must be a non-empty UTF-8 string"
            ))),
        }
    };
    let (sub, sid) = (text(sub, "sub")?, text(sid, "sid")?);
    let snap = state::current();
    let now = now_ms().div_euclid(1000);
    let ended = end_session(
        ctx,
        &snap.settings,
        route,
        "REVOKESESSION",
        &sub,
        Some(&sid),
        now,
        "jwtdeny.revokesession",
    )?;
    stats::count_revokesession(ended);
    Ok(RedisValue::Integer(i64::from(ended != SessionEnd::Already)))
}

/// Ends a session (or, for a logout without `sid`, every session of `sub`) up to `at`, in one
/// atomic step: the logout token's `iat`, or now for REVOKESESSION.
///
/// A session's cutoff can expire only once no token it revokes can still be valid, which takes
/// max-lifetime; without one the subject's cutoff is raised instead (over-revoking, never
/// under-revoking). A session's end also raises the subject's sid-less cutoff: its tokens that
/// carry no `sid` (most providers' access tokens) cannot be told apart by session, so any
/// session's end revokes those issued up to it. Nothing is written when the subject's cutoff
/// covers `at` already, nor when the cutoff would be born expired (every token it covers has
/// expired).
#[allow(clippy::too_many_arguments)]
fn end_session(
    ctx: &Context,
    s: &Settings,
    route: Route,
    command: &str,
    sub: &str,
    sid: Option<&str>,
    at: i64,
    event: &str,
) -> Result<SessionEnd, Error> {
    let subject = subject_key(&s.prefix, sub);
    let session = sid.map(|sid| session_key(&s.prefix, sub, sid));
    let sidless = sidless_key(&s.prefix, sub);
    // The keyed forms declare the subject key, the session key (the subject key again without
    // sid) and, in their three-key form, the sid-less key: which ones are written depends on
    // the token and on max-lifetime.
    let second = session.as_deref().unwrap_or(&subject);
    check_route(route, &[&subject, second, &sidless], command)?;
    let expires_at_ms = (s.max_lifetime > 0).then(|| {
        at.saturating_add(s.max_lifetime)
            .saturating_add(s.leeway)
            .saturating_mul(1000)
    });
    if expires_at_ms.is_some_and(|ms| ms <= now_ms()) {
        return Ok(SessionEnd::Already);
    }
    if denylist::cutoff(ctx, &subject)?.is_some_and(|c| c >= at) {
        return Ok(SessionEnd::Already);
    }
    let (key, ended) = match (&session, expires_at_ms) {
        (Some(key), Some(_)) => (key.as_str(), SessionEnd::Session),
        (Some(_), None) => (subject.as_str(), SessionEnd::SessionAsSubject),
        (None, _) => (subject.as_str(), SessionEnd::Subject),
    };
    let moved = denylist::advance_cutoff(ctx, key, at, expires_at_ms, event)?.is_none();
    if ended == SessionEnd::Session {
        // Forward only, like every cutoff: a later session end may have moved it further.
        denylist::advance_cutoff(ctx, &sidless, at, expires_at_ms, event)?;
    }
    Ok(if moved { ended } else { SessionEnd::Already })
}

/// `KEYS RELOAD`: re-reads the keys file, and refetches the provider's keys, replying (to this
/// client alone, which waits) once both are done.
fn reload(ctx: &Context) -> RedisResult {
    let snap = state::current();
    let from_file = !snap.settings.keys_file.is_empty();
    let from_uri = jwks::configured();
    if from_file || !from_uri {
        let set = state::reload_keys().inspect_err(|e| {
            log::warning(&format!(
                "jwtdeny: JWTDENY.KEYS RELOAD kept the old keys: {e}"
            ));
        })?;
        log::notice(&format!(
            "jwtdeny: reloaded {} keys from '{}'",
            set.len(),
            snap.settings.keys_file
        ));
    }
    if from_uri
        && jwks::await_keys(
            ctx,
            Trigger::Operator,
            Patience::Brief,
            reloaded_reply,
            reloaded_reply,
        )
    {
        return Ok(RedisValue::NoReply);
    }
    Ok(key_count())
}

fn key_count() -> RedisValue {
    RedisValue::Integer(i64::try_from(state::current().keys.len()).unwrap_or(i64::MAX))
}

/// Reply (and timeout) callback of `KEYS RELOAD`: the number of keys now in force, or why the
/// fetch failed (the previous keys stay).
unsafe extern "C" fn reloaded_reply(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let reply = match jwks::outcome(&context) {
        Some(jwks::Outcome { error: Some(why) }) => Err(Error::Usage(format!(
            "the JWKS fetch failed, the previous keys stay: {why}"
        ))
        .into()),
        Some(_) => Ok(key_count()),
        None => Err(Error::Usage(format!(
            "the JWKS fetch did not finish within jwtdeny.jwks-timeout; {} keys in force",
            state::current().keys.len()
        ))
        .into()),
    };
    context.reply(reply) as c_int
}

pub fn keys(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let sub = match args {
        [_, sub] => sub.to_string_lossy(),
        _ => return Err(RedisError::WrongArity),
    };
    if sub.eq_ignore_ascii_case("RELOAD") {
        return reload(ctx);
    }
    if sub.eq_ignore_ascii_case("LIST") {
        let list = state::current()
            .keys
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
                    RedisValue::SimpleStringStatic("source"),
                    RedisValue::SimpleStringStatic(key.source.as_str()),
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
