//! `CHECKDPOP` and `DPOPNONCE`: a DPoP-bound token (RFC 9449) checked with its proof, the
//! proof's `jti` used once across every client of this primary. The proof's rules are the
//! core's (`jwtdeny_core::dpop`); here are the order of the steps, the one-time record in the
//! keyspace, and the worker hop.

use crate::blocked;
use crate::cache::{self, Verified};
use crate::clock::{now_ms, now_secs};
use crate::command_info::Command;
use crate::commands::{
    guard, may_refetch, placed, status, verify_now, wait_for_keys, with_args, CheckOptions,
};
use crate::denylist;
use crate::jwks::Patience;
use crate::route::{self, KeyArgs, Route};
use crate::state::{self, Snapshot};
use crate::stats;
use crate::workers::{self, Done, Verdict};
use jwtdeny_core::dpop::{check_binding, normalize_htu, verify_proof, Nonces, Proof, Request};
use jwtdeny_core::error::{quote, Error};
use jwtdeny_core::token;
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use std::os::raw::c_int;
use std::sync::{Arc, LazyLock};

/// The nonce secret when `jwtdeny.dpop-nonce-secret` is empty: drawn once per process, so
/// nonces hold on this server only (and a restart or failover asks clients for a new one, which
/// RFC 9449 §9 provides for).
static RANDOM_SECRET: LazyLock<[u8; 32]> = LazyLock::new(|| {
    let mut secret = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut secret).is_err() {
        // Never expected; the time at least differs per process. Nonces are a freshness aid,
        // not the proof's authenticity, which the signature and the jti record carry.
        secret[..16].copy_from_slice(&now_ms().to_le_bytes().repeat(2));
    }
    secret
});

/// The nonces of the settings in force.
fn nonces(snap: &Snapshot) -> Nonces {
    match snap.settings.dpop_nonce_secret.as_bytes() {
        [] => Nonces::new(&*RANDOM_SECRET),
        secret => Nonces::new(secret),
    }
}

/// Verifies a proof for a request now, on this thread (the main one or a worker).
fn judge_proof(snap: &Snapshot, proof: &[u8], request: &Request) -> Result<Proof, Error> {
    let nonces = snap.settings.dpop_nonce.then(|| nonces(snap));
    let policy = snap.settings.proof_policy(nonces.as_ref());
    verify_proof(proof, request, &policy, now_ms())
}

/// [`judge_proof`] of CHECKDPOP's arguments.
fn verify_now_proof(snap: &Snapshot, a: &DpopArgs, token: &[u8]) -> Result<Proof, Error> {
    let request = Request {
        method: &a.method,
        htu: &a.htu,
        token,
    };
    judge_proof(snap, a.proof.as_slice(), &request)
}

/// CHECKDPOP's arguments after the keys: `<token> <proof> <method> <url> [options]`.
struct DpopArgs<'a> {
    token: &'a RedisString,
    proof: &'a RedisString,
    method: String,
    /// The request's URI through `normalize_htu`.
    htu: String,
    opts: CheckOptions<'a>,
}

impl DpopArgs<'_> {
    fn parse(args: &[RedisString]) -> Result<DpopArgs<'_>, RedisError> {
        let [_, token, proof, method, url, opts @ ..] = args else {
            return Err(RedisError::WrongArity);
        };
        let method = method
            .try_as_str()
            .ok()
            .filter(|m| !m.is_empty() && m.bytes().all(is_tchar))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "method {} is not an HTTP method (GET, POST, ...)",
                    quote(&method.to_string_lossy())
                ))
            })?
            .to_string();
        let htu = url
            .try_as_str()
            .map_err(|_| "is not UTF-8".to_string())
            .and_then(normalize_htu)
            .map_err(|why| {
                Error::Usage(format!(
                    "url {} {why}: give the request's absolute URL as the client addressed it",
                    quote(&url.to_string_lossy())
                ))
            })?;
        Ok(DpopArgs {
            token,
            proof,
            method,
            htu,
            opts: CheckOptions::parse(opts)?,
        })
    }
}

/// RFC 9110 §5.6.2: a method is a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `CHECKDPOP <token> <proof> <method> <url> [WITHCLAIMS] [CERT <thumbprint>]`, and its keyed
/// form (the token's three keys, then its proof's record).
pub fn checkdpop(
    ctx: &Context,
    args: &[RedisString],
    route: Route,
    command: &'static Command,
) -> RedisResult {
    let a = DpopArgs::parse(args)?;
    let token = a.token;
    let snap = state::current();
    let (cached, digest) = match cache::lookup(token.as_slice(), snap.generation) {
        cache::Lookup::Hit(v) => (Some(v), None),
        cache::Lookup::Miss(digest) => (None, Some(digest)),
        cache::Lookup::Off => (None, None),
    };
    // A proof is new on every request, so its signature is never cached: with workers, it is
    // verified off the main thread (with the token's, on first sight), and only the keyspace
    // part stays here.
    let token_waits = cached.is_none() && may_refetch(token, &snap);
    if workers::running() && !blocked::answering() && !token_waits {
        let job_snap = snap.clone();
        let job_token = cached.is_none().then(|| token.as_slice().to_vec());
        let job_args = OwnedArgs {
            token: token.as_slice().to_vec(),
            proof: a.proof.as_slice().to_vec(),
            method: a.method.clone(),
            htu: a.htu.clone(),
        };
        let verify = move || Verdict {
            token: job_token.map(|t| verify_now(&job_snap, &t)),
            proof: Some(job_args.verify(&job_snap)),
        };
        let done = Done::awaiting(digest, snap.generation, route);
        if workers::submit(ctx, verify, done, checked_reply) {
            return Ok(RedisValue::NoReply); // checked_reply answers once a worker has verified
        }
    }
    let verified = match cached {
        Some(v) => Ok(v),
        None => {
            stats::count_verification(false);
            let verified = verify_now(&snap, token.as_slice()).map(|c| placed(&snap, c));
            if let (Ok(v), Some(d)) = (&verified, digest) {
                cache::store(d, snap.generation, v);
            }
            verified
        }
    };
    if wait_for_keys(ctx, &verified, token, &snap, Patience::Brief, command) {
        return Ok(RedisValue::NoReply); // its row's `answer` judges it by the new keys
    }
    // The proof is judged only for an authentic token: a forged token learns nothing more.
    let proof = match &verified {
        Ok(_) => verify_now_proof(&snap, &a, token.as_slice()),
        Err(e) => Err(e.clone()),
    };
    finish(ctx, &snap, &a, route, verified, proof)
}

/// What a worker needs of CHECKDPOP's arguments, owned.
struct OwnedArgs {
    token: Vec<u8>,
    proof: Vec<u8>,
    method: String,
    htu: String,
}

impl OwnedArgs {
    fn verify(&self, snap: &Snapshot) -> Result<Proof, Error> {
        let request = Request {
            method: &self.method,
            htu: &self.htu,
            token: &self.token,
        };
        judge_proof(snap, &self.proof, &request)
    }
}

/// Reply callback of a CHECKDPOP a worker verified: on the main thread, with the command's
/// original arguments.
unsafe extern "C" fn checked_reply(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let done = workers::take_done(&context);
    let keys = done.as_ref().map_or(KeyArgs::None, |d| d.keys);
    let reply = blocked::answer(|| {
        // SAFETY: a blocked client's reply callback, on the main thread.
        unsafe {
            with_args(ctx, argv, argc, |args| {
                guard(&context, args, |ctx, args| checked(ctx, args, keys, done))
            })
        }
    });
    context.reply(reply) as c_int
}

/// [`checked_reply`]'s CHECKDPOP: what the worker judged if the snapshot in force is still the
/// one it judged by, else everything again now.
fn checked(ctx: &Context, args: &[RedisString], keys: KeyArgs, done: Option<Done>) -> RedisResult {
    let (route, rest) = keys.split(args)?;
    let a = DpopArgs::parse(rest)?;
    let snap = state::current();
    let (token_result, proof) = match done {
        Some(d) if d.generation == snap.generation => {
            (d.verdict.token.map(|r| (r, d.digest)), d.verdict.proof)
        }
        _ => (None, None),
    };
    let verified = match token_result {
        Some((result, digest)) => {
            let verified = result.map(|c| placed(&snap, c));
            if let (Ok(v), Some(d)) = (&verified, digest) {
                cache::store(d, snap.generation, v);
            }
            verified
        }
        // A cache hit when submitted (or a stale verdict): through the cache again.
        None => crate::commands::verify_cached(&snap, a.token),
    };
    let proof = match (&verified, proof) {
        (Err(e), _) => Err(e.clone()),
        (Ok(_), Some(proof)) => proof,
        (Ok(_), None) => verify_now_proof(&snap, &a, a.token.as_slice()),
    };
    finish(ctx, &snap, &a, route, verified, proof)
}

/// The main-thread half of CHECKDPOP: the binding, where the token's keys are, whether it is
/// revoked and, only for a token that would be accepted, the proof's one-time record.
fn finish(
    ctx: &Context,
    snap: &Snapshot,
    a: &DpopArgs,
    route: Route,
    verified: Result<Arc<Verified>, Error>,
    proof: Result<Proof, Error>,
) -> RedisResult {
    let outcome = verified.as_ref().map_err(Clone::clone).and_then(|v| {
        let proof = proof?;
        check_binding(
            v.binding.as_deref(),
            Some(&proof.jkt),
            a.opts.cert().as_ref(),
        )?;
        let record = v.place.proof_key(&proof.replay);
        locate(&v.place, &record, route)?;
        if status(ctx, v, snap.settings.leeway)?.is_some() {
            return Ok(Some(v)); // revoked: 0, and the proof is not spent
        }
        let recorded = denylist::record_proof(ctx, &record, proof.valid_until_ms)?;
        stats::count_proof(recorded);
        if !recorded {
            return Err(Error::bad_proof(
                "the proof was used already (its jti, with this key, within jwtdeny.dpop-window): \
                 a proof is good for one request",
            ));
        }
        Ok(None)
    });
    crate::commands::count_issuer_check(
        snap,
        a.token,
        &verified,
        outcome.as_ref().map(Option::is_some),
    );
    let revoked = outcome?.is_some();
    let code = RedisValue::Integer(if revoked { 0 } else { 1 });
    if !a.opts.with_claims {
        return Ok(code);
    }
    let claims = if revoked {
        RedisValue::Null
    } else {
        RedisValue::StringBuffer(token::payload(a.token.as_slice())?)
    };
    Ok(RedisValue::Array(vec![code, claims]))
}

/// The keyed form declares the token's three keys and the proof's record, in the subject's
/// slot; the standalone form in a cluster names the keyed one.
fn locate(place: &crate::denylist::Place, record: &str, route: Route) -> Result<(), Error> {
    if matches!(route, Route::Derived) && !route::in_cluster() {
        return Ok(());
    }
    route::check(
        route,
        &[
            place.entry(),
            place.subject(),
            place.session_cutoff(),
            record,
        ],
        "CHECKDPOP",
    )
}

/// `DPOPNONCE`: the nonce CHECKDPOP accepts now (with `jwtdeny.dpop-nonce yes`), for a
/// `DPoP-Nonce` response header.
pub fn dpopnonce(_: &Context, args: &[RedisString], _: Route, _: &'static Command) -> RedisResult {
    if args.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    let snap = state::current();
    Ok(RedisValue::BulkString(
        nonces(&snap).issue(now_secs(), snap.settings.dpop_window),
    ))
}
