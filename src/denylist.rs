//! The denylist's storage: how entries and cutoffs are read and written (their key names are
//! `keyscheme`'s). An entry holds `1` and expires at the token's own expiry; a cutoff holds the
//! unix second at or before which every token of its subject, or of its subject's OIDC session,
//! is revoked.
//!
//! Key names are handed to Redis by pointer and length, never as C strings: a subject is any
//! JSON string, NUL, CR and LF included, and every subject must be revocable.

use jwtdeny_core::error::{quote, Error};
use jwtdeny_core::keyscheme::{scoped_session_key, scoped_sidless_key, DenyKeys};
use redis_module::{
    raw, CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags, NotifyEvent, RedisString,
};
use std::os::raw::c_int;

/// The denylist's database (`jwtdeny.db`) selected for one command, whatever database the client
/// has selected, so that a revocation made from any database is seen from every other. Dropping
/// it gives the client its own database back, also when the command failed or panicked. Keys
/// opened, `RM_Call`s (and so what they replicate) and keyspace events all follow the selection.
pub struct InDb<'a> {
    ctx: &'a Context,
    /// The client's own database, when it is not the denylist's.
    restore: Option<c_int>,
}

impl<'a> InDb<'a> {
    pub fn select(ctx: &'a Context, db: i64) -> Result<InDb<'a>, Error> {
        let fail = || Error::Internal(format!("cannot select database {db} (jwtdeny.db)"));
        // SAFETY: plain reads of the API table, filled in before any command runs.
        let (Some(get), Some(select)) = (unsafe { raw::RedisModule_GetSelectedDb }, unsafe {
            raw::RedisModule_SelectDb
        }) else {
            return Err(fail());
        };
        let db = c_int::try_from(db).map_err(|_| fail())?;
        // SAFETY: main thread, with the live context of a command or of OnLoad.
        let own = unsafe { get(ctx.get_raw()) };
        if own == db {
            return Ok(InDb { ctx, restore: None });
        }
        if unsafe { select(ctx.get_raw(), db) } != raw::REDISMODULE_OK as c_int {
            return Err(fail());
        }
        Ok(InDb {
            ctx,
            restore: Some(own),
        })
    }
}

impl Drop for InDb<'_> {
    fn drop(&mut self) {
        // SAFETY: as in `select`; the client's own database existed a moment ago.
        unsafe {
            if let (Some(own), Some(select)) = (self.restore, raw::RedisModule_SelectDb) {
                select(self.ctx.get_raw(), own);
            }
        }
    }
}

/// Whether this server has database `db` for the denylist. Checked once, at load: the number of
/// databases is the server's own `databases` setting, which cannot change while it runs.
pub fn check_db(ctx: &Context, db: i64) -> Result<(), String> {
    if db != 0 && ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return Err(format!(
            "jwtdeny.db is {db}, but Redis Cluster has only database 0"
        ));
    }
    if InDb::select(ctx, db).is_ok() {
        return Ok(());
    }
    let options = CallOptionsBuilder::new().errors_as_replies().build();
    let reply: CallResult = ctx.call_ext("CONFIG", &options, &["GET", "databases"]);
    let count = match reply {
        Ok(CallReply::Array(a)) => a.get(1).and_then(|v| match v {
            Ok(CallReply::String(s)) => s.to_string(),
            _ => None,
        }),
        _ => None,
    };
    Err(match count {
        Some(n) => format!(
            "jwtdeny.db is {db}, but this server has {n} databases (its `databases` setting)"
        ),
        None => format!("jwtdeny.db is {db}, beyond this server's `databases` setting"),
    })
}

/// Why a token is revoked, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// Its own entry (`JWTDENY.REVOKE`).
    Token,
    /// Its subject's cutoff (`JWTDENY.REVOKEALL`) covers its `iat`.
    Subject,
    /// Its session's cutoff (`JWTDENY.LOGOUT`, `JWTDENY.REVOKESESSION`) covers its `iat`; for
    /// a token without `sid`, the cutoff of any session's end of its subject.
    Session,
}

impl RevokedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokedBy::Token => "token",
            RevokedBy::Subject => "subject",
            RevokedBy::Session => "session",
        }
    }
}

/// A key name kept as a Redis string from one command to the next: a cached token's lookups
/// then create no string (an allocation and a free each) per command.
///
/// Made, handed to Redis and dropped on the main thread only: Redis may still hold a
/// reference to a key name it was given (a lazy expiry's propagated DEL does) until the
/// command's effects are propagated, and its reference counts are not atomic. The verification
/// cache keeps that promise for the names it holds (see `cache`'s retirement).
pub struct KeyName(RedisString);

// SAFETY: see above; the name is only read or freed on the main thread.
unsafe impl Send for KeyName {}
unsafe impl Sync for KeyName {}

impl KeyName {
    /// Binary-safe (`Context::create_string` would panic on a NUL); owned by no context, so
    /// it outlives the command that made it.
    fn new(key: &str) -> KeyName {
        KeyName(RedisString::create_from_slice(
            std::ptr::null_mut(),
            key.as_bytes(),
        ))
    }

    /// Its text: it was made from a `&str`.
    fn text(&self) -> &str {
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }

    /// What it allocated: the string object and its text, as `createStringObject` lays them
    /// out (one block up to 44 bytes, else the object and an sds of its own).
    fn heap_bytes(len: usize, size_class: fn(usize) -> usize) -> usize {
        const OBJECT: usize = 16;
        if len <= 44 {
            return size_class(OBJECT + 3 + len + 1);
        }
        let header = match len {
            0..=255 => 3,
            256..=65_535 => 5,
            _ => 9,
        };
        size_class(OBJECT) + size_class(header + len + 1)
    }
}

/// Where a verified token's revocation would be stored: its entry, its subject's cutoff and
/// its session's cutoff: the one its `sid` names, or for a token without `sid` the subject's
/// sid-less cutoff (any session's end). Built once per token (the verification cache keeps it
/// with the claims), as Redis strings only: lookups use them as they are, and the text the
/// rarer paths need (routing, writes, replies) is read back from them.
pub struct Place {
    entry: KeyName,
    subject: KeyName,
    session: KeyName,
    /// Whether `session` is the token's own session (it has a `sid`).
    has_sid: bool,
}

impl Place {
    /// `scope`: the subject's issuer's (`keyscheme::scope`), `""` for the default issuer.
    pub fn new(prefix: &str, scope: &str, sub: &str, iat: i64, sid: Option<&str>) -> Place {
        let keys = DenyKeys::scoped(prefix, scope, sub, iat);
        let session = match sid {
            Some(sid) => scoped_session_key(prefix, scope, sub, sid),
            None => scoped_sidless_key(prefix, scope, sub),
        };
        Place {
            entry: KeyName::new(keys.entry()),
            subject: KeyName::new(keys.subject()),
            session: KeyName::new(&session),
            has_sid: sid.is_some(),
        }
    }

    /// `<prefix>{<sub>}:<iat>`
    pub fn entry(&self) -> &str {
        self.entry.text()
    }

    /// `<prefix>{<sub>}`
    pub fn subject(&self) -> &str {
        self.subject.text()
    }

    /// `<prefix>{<sub>}:sid:<sid>`, for a token with a `sid`.
    pub fn session(&self) -> Option<&str> {
        self.has_sid.then(|| self.session.text())
    }

    /// The cutoff a session's end writes for this token: its session's, or for a token without
    /// `sid` its subject's sid-less cutoff `<prefix>{<sub>}:nosid`.
    pub fn session_cutoff(&self) -> &str {
        self.session.text()
    }

    /// Where a DPoP proof's one-time use is recorded: `<prefix>{<sub>}:dpop:<replay_id>`, in
    /// the subject's slot (the keyed form declares it with the token's other keys).
    pub fn proof_key(&self, replay_id: &str) -> String {
        jwtdeny_core::keyscheme::proof_key_under(self.subject(), replay_id)
    }

    /// What it holds on the heap besides itself, for the cache's memory figure.
    pub fn heap_bytes(&self, size_class: fn(usize) -> usize) -> usize {
        [&self.entry, &self.subject, &self.session]
            .into_iter()
            .map(|n| KeyName::heap_bytes(n.0.as_slice().len(), size_class))
            .sum()
    }

    /// Looks the token up in every place it can be revoked: its entry, its subject's cutoff and
    /// its session's (a missing cutoff costs one existence check).
    pub fn revoked_by(&self, ctx: &Context, iat: i64) -> Result<Option<RevokedBy>, Error> {
        if exists(ctx, &self.entry.0) {
            return Ok(Some(RevokedBy::Token));
        }
        if exists(ctx, &self.subject.0)
            && matches!(read_cutoff(ctx, self.subject())?, Some(c) if iat <= c)
        {
            return Ok(Some(RevokedBy::Subject));
        }
        if !exists(ctx, &self.session.0) {
            return Ok(None);
        }
        Ok(match read_cutoff(ctx, self.session.text())? {
            Some(c) if iat <= c => Some(RevokedBy::Session),
            _ => None,
        })
    }
}

/// Whether a key exists. Redis's own lookup applies expiry, so a logically expired entry is not
/// found, on a master and on a replica alike.
///
/// `RM_KeyExists` (Redis 7.0 and later, Valkey) looks up without opening a key handle, which
/// Redis allocates for a key that exists: a revoked token's CHECK allocates nothing either. It
/// does not touch the entry's LRU/LFU clock, which no eviction policy should be trusted with
/// anyway (the README says `noeviction`).
fn exists(ctx: &Context, name: &RedisString) -> bool {
    // SAFETY: a plain read of the API table, filled in before any command runs.
    match unsafe { raw::RedisModule_KeyExists } {
        // SAFETY: main thread, inside a command; the name is a live Redis string.
        Some(key_exists) => unsafe { key_exists(ctx.get_raw(), name.inner) != 0 },
        None => !ctx.open_key(name).is_null(),
    }
}

/// A subject's (or a session's) cutoff: every token of it issued at or before this second is
/// revoked.
///
/// The value is read with `GET`, never through a key handle: `RM_StringDMA` decodes a value
/// that is not a raw string in place even for reading, so every CHECK, INSPECT and replica read
/// would rewrite the integer-encoded value Redis stores a cutoff as. An existence check first
/// answers cheaply whether there is a cutoff at all, which for most subjects there is not.
pub fn cutoff(ctx: &Context, key: &str) -> Result<Option<i64>, Error> {
    if !exists(ctx, &key_name(ctx, key)) {
        return Ok(None);
    }
    read_cutoff(ctx, key)
}

/// [`cutoff`] once the key is known to exist.
fn read_cutoff(ctx: &Context, key: &str) -> Result<Option<i64>, Error> {
    let foreign = || {
        // Fail closed: a value jwtdeny did not write is reported, never read as "no cutoff".
        Error::Internal(format!(
            "key {} does not hold a jwtdeny cutoff (an integer string)",
            quote(key)
        ))
    };
    let options = CallOptionsBuilder::new().errors_as_replies().build();
    let reply: CallResult = ctx.call_ext("GET", &options, &[key]);
    match reply {
        Ok(CallReply::String(value)) => std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(foreign),
        Ok(CallReply::Null(_)) => Ok(None),
        _ => Err(foreign()),
    }
}

/// Moves a cutoff (a subject's or a session's) forward to `at`, never back, expiring at
/// `expires_at_ms` if given, and emits `event` on it when it moved. Returns the cutoff that was
/// already in force and left as it was, or `None` when it moved.
pub fn advance_cutoff(
    ctx: &Context,
    key: &str,
    at: i64,
    expires_at_ms: Option<i64>,
    event: &str,
) -> Result<Option<i64>, Error> {
    if let Some(current) = cutoff(ctx, key)? {
        if current >= at {
            return Ok(Some(current));
        }
    }
    write_cutoff(ctx, key, at, expires_at_ms, event)?;
    Ok(None)
}

/// Writes a cutoff the caller has read already and found below `at`: `SET key at [PXAT ms]`,
/// replicated, and `event` on it.
pub fn write_cutoff(
    ctx: &Context,
    key: &str,
    at: i64,
    expires_at_ms: Option<i64>,
    event: &str,
) -> Result<(), Error> {
    let (mut value, mut at_ms) = (itoa::Buffer::new(), itoa::Buffer::new());
    let value = value.format(at).as_bytes();
    match expires_at_ms {
        Some(ms) => set(ctx, key, &[value, b"PXAT", at_ms.format(ms).as_bytes()])?,
        None => set(ctx, key, &[value])?,
    };
    ctx.notify_keyspace_event(NotifyEvent::MODULE, event, &key_name(ctx, key));
    Ok(())
}

/// The absolute expiry (ms) of a key, `None` when it has none or does not exist.
pub fn expire_time_ms(ctx: &Context, key: &str) -> Option<i64> {
    let options = CallOptionsBuilder::new().errors_as_replies().build();
    let reply: CallResult = ctx.call_ext("PEXPIRETIME", &options, &[key]);
    match reply {
        Ok(CallReply::I64(ms)) if ms.to_i64() >= 0 => Some(ms.to_i64()),
        _ => None,
    }
}

/// A key name as a Redis string, binary-safe (`Context::create_string` would panic on a NUL).
fn key_name(ctx: &Context, key: &str) -> RedisString {
    RedisString::create_from_slice(ctx.get_raw(), key.as_bytes())
}

/// Adds an entry expiring at `expires_at_ms` (absolute, ms). Returns false when it was there.
///
/// The write goes through `SET key 1 NX PXAT ms` with replication on: replicas and the AOF get
/// that deterministic effect with its absolute expiry (never the REVOKE command, which would be
/// verified again against another clock and key set), and only when the SET changed something.
pub fn insert(ctx: &Context, place: &Place, expires_at_ms: i64) -> Result<bool, Error> {
    let mut at = itoa::Buffer::new();
    let at = at.format(expires_at_ms).as_bytes();
    let added = set(ctx, place.entry(), &[b"1", b"NX", b"PXAT", at])?;
    if added {
        ctx.notify_keyspace_event(NotifyEvent::MODULE, "jwtdeny.revoke", &place.entry.0);
    }
    Ok(added)
}

/// Records a DPoP proof's use until `expires_at_ms` (absolute, ms), as [`insert`] writes an
/// entry: `SET key 1 NX PXAT ms`, replicated as that effect. Returns false when the proof was
/// recorded already: a replay.
pub fn record_proof(ctx: &Context, key: &str, expires_at_ms: i64) -> Result<bool, Error> {
    let mut at = itoa::Buffer::new();
    let at = at.format(expires_at_ms).as_bytes();
    set(ctx, key, &[b"1", b"NX", b"PXAT", at])
}

/// `SET key args…`, replicated: false when a condition (NX) left the key as it was.
///
/// Called through RM_Call with buffer arguments ("b": pointer and length) rather than module
/// strings: Redis then owns the value object alone and stores `1` or a cutoff as a shared or
/// embedded integer, so an entry costs what a plain `SET key 1 PXAT ms` costs.
fn set(ctx: &Context, key: &str, args: &[&[u8]]) -> Result<bool, Error> {
    let fail = |why: &str| Error::Internal(format!("SET of a denylist key failed: {why}"));
    let (Some(call), Some(kind), Some(text), Some(free)) = (
        unsafe { raw::RedisModule_Call },
        unsafe { raw::RedisModule_CallReplyType },
        unsafe { raw::RedisModule_CallReplyStringPtr },
        unsafe { raw::RedisModule_FreeCallReply },
    ) else {
        return Err(fail("RM_Call is not available"));
    };
    // "!": replicate this SET (and not the jwtdeny command) to replicas and the AOF;
    // "E": errors as replies; "b": an argument as pointer + length (binary-safe).
    let (ctx, cmd, k, klen) = (ctx.get_raw(), c"SET".as_ptr(), key.as_ptr(), key.len());
    // SAFETY: main thread, inside a command; every pointer outlives the call, and the format
    // string lists exactly the arguments passed after it.
    let reply = unsafe {
        match args {
            [a] => call(ctx, cmd, c"!Ebb".as_ptr(), k, klen, a.as_ptr(), a.len()),
            [a, b, c] => call(
                ctx,
                cmd,
                c"!Ebbbb".as_ptr(),
                k,
                klen,
                a.as_ptr(),
                a.len(),
                b.as_ptr(),
                b.len(),
                c.as_ptr(),
                c.len(),
            ),
            [a, b, c, d] => call(
                ctx,
                cmd,
                c"!Ebbbbb".as_ptr(),
                k,
                klen,
                a.as_ptr(),
                a.len(),
                b.as_ptr(),
                b.len(),
                c.as_ptr(),
                c.len(),
                d.as_ptr(),
                d.len(),
            ),
            _ => return Err(fail("unexpected argument count")),
        }
    };
    if reply.is_null() {
        return Err(fail("RM_Call refused it"));
    }
    // SAFETY: `reply` is a live call reply, freed exactly once below.
    let outcome = unsafe {
        match kind(reply) as isize {
            raw::REDISMODULE_REPLY_NULL => Ok(false),
            raw::REDISMODULE_REPLY_ERROR => {
                let mut len = 0usize;
                let ptr = text(reply, &mut len);
                let msg = if ptr.is_null() {
                    String::new()
                } else {
                    String::from_utf8_lossy(std::slice::from_raw_parts(ptr.cast::<u8>(), len))
                        .into_owned()
                };
                Err(fail(&msg))
            }
            _ => Ok(true),
        }
    };
    unsafe { free(reply) };
    outcome
}
