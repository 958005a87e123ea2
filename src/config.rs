//! Module configs (`jwtdeny.<name>`), their defaults and bounds, and the loaded keys.
//!
//! Every way of setting a config — redis.conf, `MODULE LOADEX … CONFIG`, `loadmodule` arguments,
//! `CONFIG SET` — ends in [`apply`], so a bad value is refused the same way everywhere, with an
//! error naming the config.

use crate::cache;
use crate::error::{quote, Error};
use crate::keys::{alg_name, AlgSet, KeySet, ALGORITHMS as ALL_ALGORITHMS};
use crate::stats;
use crate::token::Policy;
use crate::workers;
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{raw, RedisError, RedisString};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, LazyLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const DEFAULT_PREFIX: &str = "jwtdeny:";
pub const DEFAULT_LEEWAY: i64 = 0;
pub const MIN_LEEWAY: i64 = 0;
/// An hour of clock skew is already far more than any sane deployment has.
pub const MAX_LEEWAY: i64 = 3600;
pub const DEFAULT_MAX_TOKEN_BYTES: i64 = 8192;
pub const MIN_MAX_TOKEN_BYTES: i64 = 128;
pub const MAX_MAX_TOKEN_BYTES: i64 = 1024 * 1024;
/// 0: no limit on `exp - iat`, and subject cutoffs never expire.
pub const DEFAULT_MAX_LIFETIME: i64 = 0;
pub const MIN_MAX_LIFETIME: i64 = 0;
pub const MAX_MAX_LIFETIME: i64 = 10 * 365 * 24 * 3600;

/// The current value of every config, parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub keys_file: String,
    /// `None`: every algorithm the loaded keys can serve.
    pub algorithms: Option<AlgSet>,
    pub issuer: String,
    pub audience: String,
    pub leeway: i64,
    pub prefix: String,
    pub max_token_bytes: i64,
    pub max_lifetime: i64,
    pub verify_cache_size: i64,
    pub workers: i64,
}

impl Settings {
    pub fn policy(&self) -> Policy<'_> {
        Policy {
            algorithms: self.algorithms.unwrap_or(AlgSet::ALL),
            issuer: non_empty(&self.issuer),
            audience: non_empty(&self.audience),
            max_token_bytes: usize::try_from(self.max_token_bytes).unwrap_or(0),
            max_lifetime: (self.max_lifetime > 0).then_some(self.max_lifetime),
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

static SETTINGS: LazyLock<RwLock<Settings>> = LazyLock::new(|| {
    RwLock::new(Settings {
        keys_file: String::new(),
        algorithms: None,
        issuer: String::new(),
        audience: String::new(),
        leeway: DEFAULT_LEEWAY,
        prefix: DEFAULT_PREFIX.to_string(),
        max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        max_lifetime: DEFAULT_MAX_LIFETIME,
        verify_cache_size: cache::DEFAULT_SIZE,
        workers: workers::DEFAULT_WORKERS,
    })
});

static KEYS: LazyLock<RwLock<Arc<KeySet>>> = LazyLock::new(|| RwLock::new(Arc::default()));

/// Set once the module has finished loading. Before that a bad keys file must not stop Redis
/// from starting (it holds other data); after it, a bad file is refused.
static STARTED: AtomicBool = AtomicBool::new(false);

// A panic while a lock is held must not turn every later command into another panic: the data
// behind these locks is replaced whole, never left half-written, so a poisoned lock is still sound.
pub fn settings() -> RwLockReadGuard<'static, Settings> {
    SETTINGS.read().unwrap_or_else(|e| e.into_inner())
}

fn settings_mut() -> RwLockWriteGuard<'static, Settings> {
    SETTINGS.write().unwrap_or_else(|e| e.into_inner())
}

pub fn keys() -> Arc<KeySet> {
    KEYS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Loads a keys file and, only if it is good, puts it in place of the current keys.
fn load_keys(path: &str) -> Result<Arc<KeySet>, Error> {
    let loaded = KeySet::load(path).map(Arc::new);
    stats::count_reload(loaded.is_ok(), now_secs());
    let set = loaded?;
    *KEYS.write().unwrap_or_else(|e| e.into_inner()) = set.clone();
    cache::global().clear(); // a rotated-out key's tokens must fail from now on
    Ok(set)
}

fn clear_keys() {
    *KEYS.write().unwrap_or_else(|e| e.into_inner()) = Arc::default();
    cache::global().clear();
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Which config a handle stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    KeysFile,
    Algorithms,
    Issuer,
    Audience,
    Leeway,
    Prefix,
    MaxTokenBytes,
    MaxLifetime,
    VerifyCacheSize,
    Workers,
}

impl Name {
    pub const ALL: [Name; 10] = [
        Name::KeysFile,
        Name::Algorithms,
        Name::Issuer,
        Name::Audience,
        Name::Leeway,
        Name::Prefix,
        Name::MaxTokenBytes,
        Name::MaxLifetime,
        Name::VerifyCacheSize,
        Name::Workers,
    ];

    /// The name Redis knows the config by, without the `jwtdeny.` module prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Name::KeysFile => "keys-file",
            Name::Algorithms => "algorithms",
            Name::Issuer => "issuer",
            Name::Audience => "audience",
            Name::Leeway => "leeway",
            Name::Prefix => "prefix",
            Name::MaxTokenBytes => "max-token-bytes",
            Name::MaxLifetime => "max-lifetime",
            Name::VerifyCacheSize => "verify-cache-size",
            Name::Workers => "workers",
        }
    }

    /// Accepts `keys-file` and `jwtdeny.keys-file` alike (module arguments may use either).
    pub fn parse(name: &str) -> Option<Name> {
        let bare = name.strip_prefix("jwtdeny.").unwrap_or(name);
        Name::ALL
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(bare))
    }

    fn bounds(self) -> Option<(i64, i64)> {
        match self {
            Name::Leeway => Some((MIN_LEEWAY, MAX_LEEWAY)),
            Name::MaxTokenBytes => Some((MIN_MAX_TOKEN_BYTES, MAX_MAX_TOKEN_BYTES)),
            Name::MaxLifetime => Some((MIN_MAX_LIFETIME, MAX_MAX_LIFETIME)),
            Name::VerifyCacheSize => Some((0, cache::MAX_SIZE)),
            Name::Workers => Some((0, workers::MAX_WORKERS)),
            _ => None,
        }
    }
}

/// Validates and applies one config value, whatever route it came by. Whatever changes how a
/// token is judged also empties the verification cache, so no hit outlives the rules it passed.
pub fn apply(name: Name, value: &str) -> Result<(), String> {
    set(name, value)?;
    match name {
        Name::VerifyCacheSize => {
            cache::global().resize(usize::try_from(settings().verify_cache_size).unwrap_or(0))
        }
        Name::Workers => workers::resize(usize::try_from(settings().workers).unwrap_or(0)),
        Name::Leeway | Name::Prefix => {} // judged on every command, never cached
        _ => cache::global().clear(),
    }
    Ok(())
}

fn set(name: Name, value: &str) -> Result<(), String> {
    let refuse = |why: String| format!("jwtdeny.{}: {why}", name.as_str());
    if let Some((min, max)) = name.bounds() {
        let n: i64 = value
            .trim()
            .parse()
            .map_err(|_| refuse(format!("{} is not an integer", quote(value))))?;
        if !(min..=max).contains(&n) {
            return Err(refuse(format!("{n} is outside {min}..={max}")));
        }
        let mut s = settings_mut();
        match name {
            Name::Leeway => s.leeway = n,
            Name::MaxLifetime => s.max_lifetime = n,
            Name::VerifyCacheSize => s.verify_cache_size = n,
            Name::Workers => s.workers = n,
            _ => s.max_token_bytes = n,
        }
        return Ok(());
    }
    match name {
        Name::KeysFile => set_keys_file(value).map_err(|e| refuse(e.message().to_string())),
        Name::Algorithms => {
            let set = parse_algorithms(value).map_err(refuse)?;
            settings_mut().algorithms = set;
            Ok(())
        }
        Name::Issuer => {
            settings_mut().issuer = value.to_string();
            Ok(())
        }
        Name::Audience => {
            settings_mut().audience = value.to_string();
            Ok(())
        }
        Name::Prefix => {
            validate_prefix(value).map_err(refuse)?;
            settings_mut().prefix = value.to_string();
            Ok(())
        }
        // handled above
        Name::Leeway
        | Name::MaxTokenBytes
        | Name::MaxLifetime
        | Name::VerifyCacheSize
        | Name::Workers => Ok(()),
    }
}

/// The value `CONFIG GET` shows.
pub fn current(name: Name) -> String {
    let s = settings();
    match name {
        Name::KeysFile => s.keys_file.clone(),
        Name::Algorithms => s.algorithms.map_or_else(String::new, |set| {
            set.iter().map(alg_name).collect::<Vec<_>>().join(",")
        }),
        Name::Issuer => s.issuer.clone(),
        Name::Audience => s.audience.clone(),
        Name::Leeway => s.leeway.to_string(),
        Name::Prefix => s.prefix.clone(),
        Name::MaxTokenBytes => s.max_token_bytes.to_string(),
        Name::MaxLifetime => s.max_lifetime.to_string(),
        Name::VerifyCacheSize => s.verify_cache_size.to_string(),
        Name::Workers => s.workers.to_string(),
    }
}

/// `""` means every algorithm; otherwise a comma-separated list of JOSE names. Case is forgiven
/// here (an operator's setting is unambiguous), never in tokens.
fn parse_algorithms(value: &str) -> Result<Option<AlgSet>, String> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let mut algs = Vec::new();
    for name in value.split(',').map(str::trim) {
        let alg = ALL_ALGORITHMS
            .into_iter()
            .find(|a| alg_name(*a).eq_ignore_ascii_case(name));
        match alg {
            Some(a) => algs.push(a),
            None if name.eq_ignore_ascii_case("none") => {
                return Err("\"none\" (unsigned tokens) can never be allowed".into())
            }
            None => {
                return Err(format!(
                    "unknown algorithm {} (known: HS256,HS384,HS512,RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA)",
                    quote(name)
                ))
            }
        }
    }
    Ok(Some(AlgSet::of(&algs)))
}

/// The prefix starts every key; a brace in it would move the hash tag away from the subject.
fn validate_prefix(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the prefix must not be empty".into());
    }
    if value.contains(['{', '}']) {
        return Err("the prefix must not contain '{' or '}' (they delimit the hash tag)".into());
    }
    Ok(())
}

fn set_keys_file(path: &str) -> Result<(), Error> {
    if !STARTED.load(Ordering::Acquire) {
        // Loaded once in `start`, after every config source has been applied.
        settings_mut().keys_file = path.to_string();
        return Ok(());
    }
    if path.is_empty() {
        clear_keys(); // explicitly no keys: every token answers NOKEY
    } else {
        load_keys(path)?;
    }
    settings_mut().keys_file = path.to_string();
    Ok(())
}

/// Re-reads the configured keys file; on any error the old keys stay.
pub fn reload_keys() -> Result<Arc<KeySet>, Error> {
    let path = settings().keys_file.clone();
    if path.is_empty() {
        return Err(Error::Usage("jwtdeny.keys-file is not set".into()));
    }
    load_keys(&path)
}

/// Called once loading is over: loads the keys file if one is configured. A failure is returned
/// for the log, and leaves no keys loaded (fail closed).
pub fn start() -> Result<Option<Arc<KeySet>>, Error> {
    STARTED.store(true, Ordering::Release);
    let path = settings().keys_file.clone();
    if path.is_empty() {
        return Ok(None);
    }
    load_keys(&path).map(Some)
}

/// Called on unload, so that a later load starts over as at startup.
pub fn stop() {
    STARTED.store(false, Ordering::Release);
}

/// Applies `loadmodule <path> name value …` arguments.
pub fn apply_module_args(args: &[RedisString]) -> Result<(), String> {
    if !args.len().is_multiple_of(2) {
        return Err("module arguments must be name/value pairs".into());
    }
    for pair in args.chunks(2) {
        let (name, value) = match pair {
            [n, v] => (n.to_string_lossy(), v.to_string_lossy()),
            _ => continue,
        };
        let config = Name::parse(&name)
            .ok_or_else(|| format!("unknown module argument {}", quote(&name)))?;
        apply(config, &value)?;
    }
    Ok(())
}

/// A config as Redis sees it: `CONFIG GET/SET jwtdeny.<name>` go through here.
pub struct Handle(pub Name);

pub static KEYS_FILE: Handle = Handle(Name::KeysFile);
pub static ALGORITHMS: Handle = Handle(Name::Algorithms);
pub static ISSUER: Handle = Handle(Name::Issuer);
pub static AUDIENCE: Handle = Handle(Name::Audience);
pub static LEEWAY: Handle = Handle(Name::Leeway);
pub static PREFIX: Handle = Handle(Name::Prefix);
pub static MAX_TOKEN_BYTES: Handle = Handle(Name::MaxTokenBytes);
pub static MAX_LIFETIME: Handle = Handle(Name::MaxLifetime);
pub static VERIFY_CACHE_SIZE: Handle = Handle(Name::VerifyCacheSize);
pub static WORKERS: Handle = Handle(Name::Workers);

/// The string each config's getter last handed to Redis. Redis copies what a getter returns and
/// never frees it, so a fresh string per `CONFIG GET` would leak: the module keeps ownership,
/// and frees each one on the next call, by which time Redis has long copied it.
static LAST_GOT: [AtomicPtr<raw::RedisModuleString>; Name::ALL.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; Name::ALL.len()];

impl ConfigurationValue<RedisString> for Handle {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        let value = current(self.0);
        let slot = Name::ALL
            .iter()
            .position(|n| *n == self.0)
            .and_then(|i| LAST_GOT.get(i));
        // SAFETY: called by Redis on its main thread with the GIL held, as RM_CreateString and
        // RM_FreeString require; a null context makes the string independent of any call.
        unsafe {
            let (Some(create), Some(free), Some(slot)) = (
                raw::RedisModule_CreateString,
                raw::RedisModule_FreeString,
                slot,
            ) else {
                return RedisString::create(None, value.as_str());
            };
            let fresh = create(std::ptr::null_mut(), value.as_ptr().cast(), value.len());
            let old = slot.swap(fresh, Ordering::AcqRel);
            if !old.is_null() {
                free(std::ptr::null_mut(), old);
            }
            // Not retained: Redis takes this pointer without ever freeing it.
            RedisString::from_redis_module_string(std::ptr::null_mut(), fresh)
        }
    }

    fn set(&self, _ctx: &ConfigurationContext, val: RedisString) -> Result<(), RedisError> {
        let text = val.try_as_str().map_err(|_| {
            RedisError::String(format!(
                "jwtdeny.{}: value is not valid UTF-8",
                self.0.as_str()
            ))
        })?;
        apply(self.0, text).map_err(RedisError::String)
    }
}

impl ConfigurationValue<i64> for Handle {
    fn get(&self, _ctx: &ConfigurationContext) -> i64 {
        let s = settings();
        match self.0 {
            Name::Leeway => s.leeway,
            Name::MaxLifetime => s.max_lifetime,
            Name::VerifyCacheSize => s.verify_cache_size,
            Name::Workers => s.workers,
            _ => s.max_token_bytes,
        }
    }

    fn set(&self, _ctx: &ConfigurationContext, val: i64) -> Result<(), RedisError> {
        apply(self.0, &val.to_string()).map_err(RedisError::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_the_module_prefix() {
        assert_eq!(Name::parse("keys-file"), Some(Name::KeysFile));
        assert_eq!(
            Name::parse("jwtdeny.max-token-bytes"),
            Some(Name::MaxTokenBytes)
        );
        assert_eq!(Name::parse("keysfile"), None);
        for n in Name::ALL {
            assert_eq!(Name::parse(n.as_str()), Some(n));
        }
    }

    #[test]
    fn algorithm_lists() {
        assert_eq!(parse_algorithms("").unwrap(), None);
        let set = parse_algorithms("RS256, es256,EdDSA").unwrap().unwrap();
        assert_eq!(
            set.iter().map(alg_name).collect::<Vec<_>>(),
            ["RS256", "ES256", "EdDSA"]
        );
        assert!(parse_algorithms("none").unwrap_err().contains("none"));
        assert!(parse_algorithms("HS256,HS999")
            .unwrap_err()
            .contains("HS999"));
        assert!(parse_algorithms("HS256,").is_err());
    }

    #[test]
    fn bad_values_name_the_config() {
        let e = apply(Name::Leeway, "-1").unwrap_err();
        assert!(e.starts_with("jwtdeny.leeway:"), "{e}");
        assert!(apply(Name::Leeway, "abc")
            .unwrap_err()
            .contains("not an integer"));
        assert!(apply(Name::MaxTokenBytes, "0")
            .unwrap_err()
            .starts_with("jwtdeny.max-token-bytes"));
        assert!(apply(Name::Prefix, "a{b")
            .unwrap_err()
            .starts_with("jwtdeny.prefix"));
        assert!(apply(Name::Prefix, "").is_err());
        assert!(apply(Name::Algorithms, "none")
            .unwrap_err()
            .starts_with("jwtdeny.algorithms"));
    }
}
