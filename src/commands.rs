//! Command handlers: argument parsing and replies. The rules live elsewhere: verification in
//! the core (`jwtdeny_core::token`, `jwtdeny_core::logout`), storage in `denylist`, routing in
//! `route`, subject and session cutoffs in `revocation`, waits in `blocked` and `jwks`; errors
//! become replies through `jwtdeny_core::error::Error`.

use crate::blocked;
use crate::cache::{self, Verified};
use crate::clock::{now_ms, now_secs};
use crate::command_info::Command;
use crate::denylist::{self, Place, RevokedBy};
use crate::issuers::Source;
use crate::jwks::{self, Patience};
use crate::log;
use crate::revocation::{cutoff_expiry_ms, EndSession, SessionEnd};
use crate::route::{self, KeyArgs, Route};
use crate::state::{self, Snapshot};
use crate::stats;
use crate::workers::{self, Done, Verdict};
use jwtdeny_core::dpop::check_binding;
use jwtdeny_core::error::{quote, Error};
use jwtdeny_core::fetch::Trigger;
use jwtdeny_core::keys::alg_name;
use jwtdeny_core::keyscheme::scoped_subject_key;
use jwtdeny_core::logout as logout_token;
use jwtdeny_core::token::{self, Claims, MAX_NUMERIC_DATE};
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// A command as Redis calls it (its row's `entry`): its arguments are lent to the handler
/// without a vector (every command has a few; more go through one), its declared keys are
/// taken off them, the handler runs in the [`guard`], and its result is the reply.
///
/// # Safety
/// `ctx`, `argv` and `argc` are what Redis passed to a command (or to a blocked client's
/// reply callback), on the main thread.
pub unsafe fn run(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    command: &'static Command,
) -> c_int {
    let context = Context::new(ctx);
    let reply = with_args(ctx, argv, argc, |args| {
        guard(&context, args, |ctx, args| {
            let (route, rest) = command.keys.split(args)?;
            (command.handler)(ctx, rest, route, command)
        })
    });
    context.reply(reply) as c_int
}

/// A blocked client's reply or timeout callback (its row's `answer`): the command runs again,
/// with the keys now in force, and answers at once (no worker, no second wait).
///
/// # Safety
/// As [`run`], from a blocked client's callback.
pub unsafe fn answer(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    command: &'static Command,
) -> c_int {
    blocked::answer(|| run(ctx, argv, argc, command))
}

/// Arguments a command's handler may borrow without a heap vector.
const INLINE_ARGS: usize = 8;

/// Lends Redis's argument vector to `f` as module strings.
///
/// # Safety
/// As [`run`]: `argv` holds `argc` strings that Redis keeps alive for the whole call.
pub(crate) unsafe fn with_args<R>(
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
pub(crate) fn guard(
    ctx: &Context,
    args: &[RedisString],
    handler: impl FnOnce(&Context, &[RedisString]) -> RedisResult,
) -> RedisResult {
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

/// Verifies a token's signature and claims now, on this thread: by the default issuer's keys
/// and rules, or, with issuers registered, by those of the issuer its `iss` names.
pub(crate) fn verify_now(snap: &Snapshot, token: &[u8]) -> Result<Claims, Error> {
    token::verify_placed(token, max_token_bytes(snap), |iss| snap.place(iss))
}

fn max_token_bytes(snap: &Snapshot) -> usize {
    usize::try_from(snap.settings.max_token_bytes).unwrap_or(0)
}

/// A verified token's claims with where their revocation would be stored.
pub(crate) fn placed(snap: &Snapshot, claims: Claims) -> Arc<Verified> {
    let place = Place::new(
        &snap.settings.prefix,
        claims.scope.as_deref().unwrap_or(""),
        &claims.sub,
        claims.iat,
        claims.sid.as_deref(),
    );
    let issuer = claims
        .scope
        .as_deref()
        .and_then(|s| snap.registry.by_scope(s))
        .map(|i| i.checks.clone());
    Arc::new(Verified {
        lifetime: claims.lifetime(),
        place,
        binding: claims.binding,
        issuer,
    })
}

/// Verifies through the verification cache.
pub(crate) fn verify_cached(snap: &Snapshot, token: &RedisString) -> Result<Arc<Verified>, Error> {
    cache::verify_through(token.as_slice(), snap.generation, || {
        verify_now(snap, token.as_slice()).map(|c| placed(snap, c))
    })
}

/// Whether the token is revoked, judged as one step with its expiry: the clock is read after
/// the lookups, so if Redis found an entry already expired, this clock is at least as late and
/// finds the token expired too. A revoked token never answers "active".
pub(crate) fn status(ctx: &Context, v: &Verified, leeway: i64) -> Result<Option<RevokedBy>, Error> {
    let revoked = v.place.revoked_by(ctx, v.lifetime.iat)?;
    v.lifetime.check_time(now_ms(), leeway)?;
    Ok(revoked)
}

pub(crate) fn syntax_error(arg: &RedisString, expected: &str) -> RedisError {
    Error::Usage(format!(
        "syntax error at {}, expected {expected}",
        quote(&arg.to_string_lossy())
    ))
    .into()
}

/// The options after a token: `[WITHCLAIMS] [CERT <sha256-thumbprint>]`, in any order.
#[derive(Default, Clone, Copy)]
pub(crate) struct CheckOptions<'a> {
    pub with_claims: bool,
    /// The SHA-256 thumbprint of the client certificate the TLS terminator saw, for a token
    /// bound to one (`cnf.x5t#S256`, RFC 8705). Checked as it is parsed; decoded again only for
    /// a token bound to a certificate, so that a CHECK of any other token carries no more than
    /// a reference.
    cert: Option<&'a RedisString>,
}

impl<'a> CheckOptions<'a> {
    pub(crate) fn parse(opts: &'a [RedisString]) -> Result<CheckOptions<'a>, RedisError> {
        let mut o = CheckOptions::default();
        let mut rest = opts.iter();
        while let Some(opt) = rest.next() {
            let word = opt.to_string_lossy();
            if word.eq_ignore_ascii_case("WITHCLAIMS") && !o.with_claims {
                o.with_claims = true;
            } else if word.eq_ignore_ascii_case("CERT") && o.cert.is_none() {
                let value = rest.next().ok_or(RedisError::WrongArity)?;
                thumbprint(value)?;
                o.cert = Some(value);
            } else {
                return Err(syntax_error(opt, "WITHCLAIMS or CERT"));
            }
        }
        Ok(o)
    }

    /// The `CERT` thumbprint, decoded.
    pub(crate) fn cert(&self) -> Option<[u8; 32]> {
        self.cert.and_then(|c| thumbprint(c).ok())
    }
}

fn thumbprint(value: &RedisString) -> Result<[u8; 32], Error> {
    value
        .try_as_str()
        .ok()
        .and_then(jwtdeny_core::dpop::sha256_thumbprint)
        .ok_or_else(|| {
            Error::Usage(
                "CERT must be the SHA-256 thumbprint of the client certificate: 43 base64url or \
                 64 hex characters"
                    .into(),
            )
        })
}

fn check_args(args: &[RedisString]) -> Result<(&RedisString, CheckOptions<'_>), RedisError> {
    match args {
        [_, token] => Ok((token, CheckOptions::default())),
        [_, token, opts @ ..] => Ok((token, CheckOptions::parse(opts)?)),
        _ => Err(RedisError::WrongArity),
    }
}

/// `CHECK <token> [WITHCLAIMS]`, and its keyed forms.
pub fn check(
    ctx: &Context,
    args: &[RedisString],
    route: Route,
    command: &'static Command,
) -> RedisResult {
    let (token, opts) = check_args(args)?;
    let snap = state::current();
    let digest = match cache::lookup(token.as_slice(), snap.generation) {
        cache::Lookup::Hit(v) => return finish_check(ctx, &snap, token, &opts, route, Ok(v)),
        cache::Lookup::Miss(digest) => Some(digest),
        cache::Lookup::Off => None,
    };
    // An HMAC takes about a microsecond, less than blocking a client costs: only asymmetric
    // signatures are worth a worker.
    // A token whose kid is not loaded may be waiting for a fetch: that is decided inline.
    // A command answering from a callback verifies inline: it may not block again.
    if workers::running()
        && !blocked::answering()
        && !token::is_hmac(token.as_slice())
        && !may_refetch(token, &snap)
    {
        let (job_snap, job_token) = (snap.clone(), token.as_slice().to_vec());
        let verify = move || Verdict {
            token: Some(verify_now(&job_snap, &job_token)),
            proof: None,
        };
        let done = Done::awaiting(digest, snap.generation, route);
        if workers::submit(ctx, verify, done, checked_reply) {
            return Ok(RedisValue::NoReply); // checked_reply answers once a worker has verified it
        }
    }
    stats::count_verification(false);
    let verified = verify_now(&snap, token.as_slice()).map(|c| placed(&snap, c));
    if let (Ok(v), Some(d)) = (&verified, digest) {
        cache::store(d, snap.generation, v);
    }
    if wait_for_keys(ctx, &verified, token, &snap, Patience::Brief, command) {
        return Ok(RedisValue::NoReply); // its row's `answer` judges it by the new keys
    }
    finish_check(ctx, &snap, token, &opts, route, verified)
}

/// Whether a token names a `kid` the keys in force lack while keys come from a provider:
/// fresh keys might then verify it.
pub(crate) fn may_refetch(token: &RedisString, snap: &Snapshot) -> bool {
    refetch_source(token, snap).is_some()
}

/// Which provider might serve a key a token names and its issuer's keys lack.
enum Refetch {
    /// The default issuer's (`jwtdeny.jwks-uri`, `jwtdeny.discovery`).
    Default,
    /// A fetched source of the registry: its id and the source's index.
    Registry(u64, usize),
}

/// Where fresh keys might verify `token`, if anywhere: only its own issuer's source, so a token
/// of an issuer of the registry, or of none, never makes another issuer's source fetch.
fn refetch_source(token: &RedisString, snap: &Snapshot) -> Option<Refetch> {
    if blocked::answering() {
        return None;
    }
    let kid = token::header_kid(token.as_slice())?;
    let default = || (jwks::configured() && !snap.keys.has_kid(&kid)).then_some(Refetch::Default);
    if !snap.several_issuers() {
        return default();
    }
    let iss = token::unverified_issuer(token.as_slice(), max_token_bytes(snap));
    match iss.as_deref().and_then(|iss| snap.registry.placement(iss)) {
        Some(p) => {
            let fetched = matches!(snap.registry.sources.get(p.source), Some(Source::Fetch(_)));
            let lacks = snap
                .registry_keys
                .get(p.source)
                .is_some_and(|k| !k.has_kid(&kid));
            (fetched && lacks).then_some(Refetch::Registry(snap.registry.id, p.source))
        }
        None if snap.place(iss.as_deref()).is_ok() => default(),
        None => None,
    }
}

/// The issuer a keyed form's declared subject key is scoped to (`<prefix>{%<id>:…}`), which
/// must be registered; unscoped, the default issuer. The keys are then checked against the
/// ones derived under that issuer, as always.
fn declared_issuer<'s>(
    snap: &'s Snapshot,
    keys: &[RedisString],
) -> Result<(&'s str, &'s crate::config::Settings), Error> {
    let key = keys
        .first()
        .map(|k| k.to_string_lossy())
        .unwrap_or_default();
    let tag = key
        .strip_prefix(snap.settings.prefix.as_str())
        .and_then(|k| k.strip_prefix("{%"));
    let Some(id) = tag.and_then(|t| t.split_once(':')).map(|(id, _)| id) else {
        return Ok(("", &snap.settings));
    };
    snap.registry
        .scoped(&jwtdeny_core::keyscheme::scope(id))
        .map(|(scope, issuer)| (&**scope, &issuer.settings))
        .ok_or_else(|| {
            Error::Usage(format!(
                "key {} is scoped to no issuer of jwtdeny.issuers-file",
                quote(&key)
            ))
        })
}

/// `[AT <unix-seconds>] [ISSUER <issuer>]`-style options: the value after each keyword of
/// `words`, in any order, each at most once.
fn keyword_options<'a, const N: usize>(
    opts: &'a [RedisString],
    words: [&str; N],
) -> Result<[Option<&'a RedisString>; N], RedisError> {
    let mut found = [None; N];
    let mut rest = opts.iter();
    while let Some(opt) = rest.next() {
        let word = opt.to_string_lossy();
        let Some(i) = words
            .iter()
            .position(|w| word.eq_ignore_ascii_case(w))
            .filter(|i| found[*i].is_none())
        else {
            return Err(syntax_error(opt, &words.join(" or ")));
        };
        found[i] = Some(rest.next().ok_or(RedisError::WrongArity)?);
    }
    Ok(found)
}

/// The scope and the settings of the issuer `ISSUER <issuer>` names (the default issuer's
/// without one).
fn issuer_option<'s>(
    snap: &'s Snapshot,
    issuer: Option<&RedisString>,
) -> Result<(&'s str, &'s crate::config::Settings), Error> {
    let Some(name) = issuer else {
        return Ok(("", &snap.settings));
    };
    match snap.registry.named(&name.to_string_lossy())? {
        None => Ok(("", &snap.settings)),
        Some(p) => Ok((&p.scope, &snap.registry.issuers[p.issuer].settings)),
    }
}

/// After a verification failed for want of the token's key: blocks the client while the
/// provider's keys are fetched (one fetch shared by every such client, at most one per
/// `jwtdeny.jwks-cooldown`), if a source is configured and the client may block; how long it
/// may wait is `patience` (see `jwks::Patience`). Returns whether it blocked; the command then
/// runs again from its row's `answer`.
pub(crate) fn wait_for_keys<T>(
    ctx: &Context,
    claims: &Result<T, Error>,
    token: &RedisString,
    snap: &Snapshot,
    patience: Patience,
    command: &'static Command,
) -> bool {
    if !matches!(claims, Err(Error::NoKey(_))) {
        return false;
    }
    match refetch_source(token, snap) {
        None => false,
        Some(Refetch::Default) => jwks::await_keys(
            ctx,
            Trigger::UnknownKid,
            patience,
            command.answer,
            command.answer,
        ),
        Some(Refetch::Registry(id, source)) => {
            jwks::await_registry_keys(ctx, (id, source), patience, command.answer, command.answer)
        }
    }
}

/// Reply callback of a CHECK whose token a worker verified: runs on the main thread with the
/// command's original arguments, which the worker's result says how to read.
unsafe extern "C" fn checked_reply(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let done = workers::take_done(&context);
    let keys = done.as_ref().map_or(KeyArgs::None, |d| d.keys);
    let reply = blocked::answer(|| {
        with_args(ctx, argv, argc, |args| {
            guard(&context, args, |ctx, args| checked(ctx, args, keys, done))
        })
    });
    context.reply(reply) as c_int
}

/// [`checked_reply`]'s CHECK: the worker's verification if it still holds, else one now.
fn checked(ctx: &Context, args: &[RedisString], keys: KeyArgs, done: Option<Done>) -> RedisResult {
    {
        let (route, rest) = keys.split(args)?;
        let (token, opts) = check_args(rest)?;
        let snap = state::current();
        let verified = match done {
            Some(Done {
                verdict:
                    Verdict {
                        token: Some(result),
                        ..
                    },
                digest,
                generation,
                ..
            }) if generation == snap.generation => {
                let verified = result.map(|c| placed(&snap, c));
                if let (Ok(v), Some(d)) = (&verified, digest) {
                    cache::store(d, generation, v);
                }
                verified
            }
            // Keys or rules changed while it was queued: judge it by the ones in force.
            _ => {
                stats::count_verification(false);
                verify_cached(&snap, token)
            }
        };
        finish_check(ctx, &snap, token, &opts, route, verified)
    }
}

/// The main-thread half of CHECK: where the token's revocation would be, whether it is there,
/// and the reply.
fn finish_check(
    ctx: &Context,
    snap: &Snapshot,
    token: &RedisString,
    opts: &CheckOptions,
    route: Route,
    verified: Result<Arc<Verified>, Error>,
) -> RedisResult {
    let outcome = match &verified {
        Ok(v) => (|| {
            if let Some(binding) = &v.binding {
                binding.check(None, opts.cert().as_ref())?;
            }
            route::locate(&v.place, route, "CHECK")?;
            status(ctx, v, snap.settings.leeway)
        })(),
        Err(e) => Err(e.clone()),
    };
    count_issuer_check(
        snap,
        token,
        &verified,
        outcome.as_ref().map(Option::is_some),
    );
    let revoked = outcome?;
    let code = RedisValue::Integer(if revoked.is_some() { 0 } else { 1 });
    if !opts.with_claims {
        return Ok(code);
    }
    let claims = match revoked {
        Some(_) => RedisValue::Null,
        None => RedisValue::StringBuffer(token::payload(token.as_slice())?),
    };
    Ok(RedisValue::Array(vec![code, claims]))
}

/// Counts a CHECK's outcome: the server's counters, and its issuer's for an issuer of the
/// registry (from its verified claims, or for a token refused, from its `iss`, read again
/// only then). Inlined: on the cached path it is two tests.
#[inline(always)]
pub(crate) fn count_issuer_check(
    snap: &Snapshot,
    token: &RedisString,
    verified: &Result<Arc<Verified>, Error>,
    outcome: Result<bool, &Error>,
) {
    stats::count_check(outcome);
    match verified {
        Ok(v) => {
            if let Some(checks) = &v.issuer {
                checks.count(outcome);
            }
        }
        Err(_) if snap.registry.is_empty() => {}
        Err(_) => count_refused_issuer(snap, token, outcome),
    }
}

#[cold]
#[inline(never)]
fn count_refused_issuer(snap: &Snapshot, token: &RedisString, outcome: Result<bool, &Error>) {
    let iss = token::unverified_issuer(token.as_slice(), max_token_bytes(snap));
    if let Some(p) = iss.and_then(|iss| snap.registry.placement(&iss)) {
        snap.registry.issuers[p.issuer].checks.count(outcome);
    }
}

/// `REVOKE <token>`, and its keyed form.
pub fn revoke(
    ctx: &Context,
    args: &[RedisString],
    route: Route,
    command: &'static Command,
) -> RedisResult {
    let token = single_token(args)?;
    let snap = state::current();
    let verified = verify_cached(&snap, token);
    if wait_for_keys(
        ctx,
        &verified,
        token,
        &snap,
        Patience::UntilFetched,
        command,
    ) {
        return Ok(RedisValue::NoReply); // its row's `answer` judges it by the new keys
    }
    let leeway = snap.settings.leeway;
    let outcome = verified.and_then(|v| {
        route::locate(&v.place, route, "REVOKE")?;
        if status(ctx, &v, leeway)?.is_some() {
            return Ok(false);
        }
        denylist::insert(ctx, &v.place, v.lifetime.expires_at_ms(leeway))
    });
    stats::count_revoke(outcome.as_ref().copied());
    Ok(RedisValue::Integer(i64::from(outcome?)))
}

/// `REVOKEALL <sub> [AT <unix-seconds>]`, and its keyed form.
pub fn revokeall(
    ctx: &Context,
    args: &[RedisString],
    route: Route,
    _: &'static Command,
) -> RedisResult {
    let (sub, [at, issuer]) = match args {
        [_, sub, opts @ ..] => (sub, keyword_options(opts, ["AT", "ISSUER"])?),
        _ => return Err(RedisError::WrongArity),
    };
    let sub = match sub.try_as_str() {
        Ok(s) if !s.is_empty() => s,
        _ => return Err(Error::Usage("sub must be a non-empty UTF-8 string".into()).into()),
    };
    let now = now_secs();
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
            if at < -MAX_NUMERIC_DATE {
                return Err(Error::Usage(format!("AT {at} is out of range")).into());
            }
            at
        }
    };
    let (key, expires_at_ms) = {
        let snap = state::current();
        let (scope, s) = issuer_option(&snap, issuer)?;
        let expiry = cutoff_expiry_ms(cutoff, s.max_lifetime, s.leeway);
        (scoped_subject_key(&s.prefix, scope, sub), expiry)
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
    route::check(route, &[&key], "REVOKEALL")?;
    stats::count_revokeall();
    let kept = denylist::advance_cutoff(ctx, &key, cutoff, expires_at_ms, "jwtdeny.revokeall")?;
    Ok(RedisValue::Integer(kept.unwrap_or(cutoff)))
}

/// `INSPECT <token>`, and its keyed forms.
pub fn inspect(
    ctx: &Context,
    args: &[RedisString],
    route: Route,
    _: &'static Command,
) -> RedisResult {
    let token = single_token(args)?;
    let snap = state::current();
    let (prefix, leeway) = (&snap.settings.prefix, snap.settings.leeway);
    let (seen, outcome) = token::inspect_placed(token.as_slice(), max_token_bytes(&snap), |iss| {
        snap.place(iss)
    });
    let scope = seen.scope.as_deref().unwrap_or("");
    let place = seen
        .sub
        .as_deref()
        .zip(seen.iat)
        .map(|(sub, iat)| Place::new(prefix, scope, sub, iat, seen.sid.as_deref()));
    if let Some(p) = &place {
        route::check_token(route, p, "INSPECT")?;
    }
    let revoked = match (&place, seen.iat) {
        (Some(p), Some(iat)) => p.revoked_by(ctx, iat),
        _ => Ok(None),
    };
    let keys = place.as_ref();
    let now = now_ms();
    let (status, reason) = match (&outcome, &revoked) {
        (Err(e), _) | (_, Err(e)) => (e.code().to_string(), Some(e.message().to_string())),
        (Ok(claims), Ok(r)) => match (
            check_binding(claims.binding.as_deref(), None, None)
                .and_then(|()| claims.check_time(now, leeway)),
            r,
        ) {
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

/// `LOGOUT <logout_token>`, and its keyed form (`<subject-key> <session-key> [<sidless-key>]`:
/// for a logout token without `sid`, the session key is the subject key again).
pub fn logout(
    ctx: &Context,
    args: &[RedisString],
    route: Route,
    command: &'static Command,
) -> RedisResult {
    let token = single_token(args)?;
    let snap = state::current();
    let verified = logout_token::verify_placed(token.as_slice(), max_token_bytes(&snap), |iss| {
        let placed = snap.place(iss)?;
        let audience = &snap
            .issuer_settings(placed.scope.as_deref())
            .logout_audience;
        if audience.is_empty() {
            let whose = match &placed.scope {
                None => "jwtdeny.logout-audience is not set".to_string(),
                Some(scope) => format!("the logout-audience of issuer {} is not set", quote(scope)),
            };
            return Err(Error::Usage(format!(
                "{whose}: JWTDENY.LOGOUT needs the OIDC client id that logout tokens name in aud"
            )));
        }
        Ok((placed, audience.as_str()))
    });
    // A provider that rotated its keys signs logout tokens with the new one first.
    if wait_for_keys(
        ctx,
        &verified,
        token,
        &snap,
        Patience::UntilFetched,
        command,
    ) {
        return Ok(RedisValue::NoReply); // its row's `answer` judges it by the new keys
    }
    let outcome = verified.and_then(|l| {
        let s = snap.issuer_settings(l.scope.as_deref());
        l.check_time(now_ms(), s.leeway)?;
        EndSession {
            prefix: &s.prefix,
            scope: l.scope.as_deref().unwrap_or(""),
            max_lifetime: s.max_lifetime,
            leeway: s.leeway,
            sub: &l.sub,
            sid: l.sid.as_deref(),
            at: l.iat,
            command: "LOGOUT",
            event: "jwtdeny.logout",
        }
        .apply(ctx, route)
    });
    stats::count_logout(outcome.as_ref().copied());
    Ok(RedisValue::Integer(i64::from(
        outcome? != SessionEnd::Already,
    )))
}

/// `REVOKESESSION <sub> <sid>`, and its keyed form.
pub fn revokesession(
    ctx: &Context,
    args: &[RedisString],
    route: Route,
    _: &'static Command,
) -> RedisResult {
    let (sub, sid, [issuer]) = match args {
        [_, sub, sid, opts @ ..] => (sub, sid, keyword_options(opts, ["ISSUER"])?),
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
    let (scope, s) = match (issuer, route) {
        // Its key positions are fixed, so the keyed form has no ISSUER: its keys say.
        (None, Route::Declared(keys)) => declared_issuer(&snap, keys)?,
        _ => issuer_option(&snap, issuer)?,
    };
    let ended = EndSession {
        prefix: &s.prefix,
        scope,
        max_lifetime: s.max_lifetime,
        leeway: s.leeway,
        sub: &sub,
        sid: Some(&sid),
        at: now_secs(),
        command: "REVOKESESSION",
        event: "jwtdeny.revokesession",
    }
    .apply(ctx, route)?;
    stats::count_revokesession(ended);
    Ok(RedisValue::Integer(i64::from(ended != SessionEnd::Already)))
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

/// `ISSUERS RELOAD` (the number of issuers now in force) and `ISSUERS LIST`.
pub fn issuers(_: &Context, args: &[RedisString], _: Route, _: &'static Command) -> RedisResult {
    let sub = match args {
        [_, sub] => sub.to_string_lossy(),
        _ => return Err(RedisError::WrongArity),
    };
    if sub.eq_ignore_ascii_case("RELOAD") {
        let n = state::reload_issuers().inspect_err(|e| {
            log::warning(&format!(
                "jwtdeny: JWTDENY.ISSUERS RELOAD kept the issuers in force: {e}"
            ));
        })?;
        log::notice(&format!(
            "jwtdeny: {n} issuers from jwtdeny.issuers-file in force"
        ));
        return Ok(RedisValue::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    if sub.eq_ignore_ascii_case("LIST") {
        let snap = state::current();
        return Ok(RedisValue::Array(
            snap.registry
                .describe(&snap.registry_keys)
                .into_iter()
                .map(|fields| {
                    RedisValue::Array(
                        fields
                            .into_iter()
                            .flat_map(|(name, value)| [RedisValue::SimpleStringStatic(name), value])
                            .collect(),
                    )
                })
                .collect(),
        ));
    }
    Err(Error::Usage(format!(
        "unknown subcommand {} for JWTDENY.ISSUERS (try RELOAD or LIST)",
        quote(&sub)
    ))
    .into())
}

/// `KEYS RELOAD` and `KEYS LIST`.
pub fn keys(ctx: &Context, args: &[RedisString], _: Route, _: &'static Command) -> RedisResult {
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
