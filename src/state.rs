//! The module's live state: the settings and verification keys in force, published together as
//! one immutable [`Snapshot`], and the one place where a config change takes effect.
//!
//! Every way of setting a config — redis.conf, `MODULE LOADEX … CONFIG`, `loadmodule`
//! arguments, `CONFIG SET` — ends in [`apply`]: the value is checked by its row of
//! `config::SPECS`, then the row's [`Effect`] is carried out here (load keys, clear or resize
//! the cache, resize the worker pool). Code on other threads gets a snapshot and never reads
//! globals, so a change can never be half-seen.

use crate::cache;
use crate::clock::now_secs;
use crate::config::{self, Effect, Kind, Settings, Spec, SPECS};
use crate::issuers::{self, Registry};
use crate::jwks;
use crate::log;
use crate::stats;
use crate::workers;
use jwtdeny_core::error::{printable, quote, Error};
use jwtdeny_core::keys::KeySet;
use redis_module::configuration::{
    register_bool_configuration, register_i64_configuration, register_string_configuration,
    ConfigurationContext, ConfigurationFlags, ConfigurationValue,
};
use redis_module::{raw, Context, RedisError, RedisString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock};

/// What a command is judged by: the settings and keys in force when it started.
pub struct Snapshot {
    pub settings: Settings,
    /// The key set in force: the union of every source's keys.
    pub keys: Arc<KeySet>,
    /// The keys of `jwtdeny.keys-file`.
    file_keys: Arc<KeySet>,
    /// The keys fetched from the identity provider.
    uri_keys: Arc<KeySet>,
    /// The issuers of `jwtdeny.issuers-file`, and their keys (by `Registry::sources` index).
    pub registry: Arc<Registry>,
    pub registry_keys: Arc<[Arc<KeySet>]>,
    /// Moves with every snapshot that verifies differently (other keys, other rules). The
    /// verification cache serves and keeps only what a command of its own generation verified,
    /// so no read of the snapshot and the cache in two steps can mix two key sets.
    pub generation: u64,
}

impl Snapshot {
    fn initial() -> Snapshot {
        Snapshot {
            settings: Settings::defaults(),
            keys: Arc::default(),
            file_keys: Arc::default(),
            uri_keys: Arc::default(),
            registry: Arc::default(),
            registry_keys: Arc::new([]),
            generation: 0,
        }
    }

    /// The settings of the issuer whose subjects' scope is `scope` (`None`: the default's).
    pub fn issuer_settings(&self, scope: Option<&str>) -> &Settings {
        scope
            .and_then(|s| self.registry.by_scope(s))
            .map_or(&self.settings, |i| &i.settings)
    }

    /// Whether tokens are placed by their `iss`: a registry is configured (even one that did
    /// not load at startup: its issuers' tokens are then refused, never taken for the
    /// default issuer's).
    pub fn several_issuers(&self) -> bool {
        !self.registry.is_empty() || !self.settings.issuers_file.is_empty()
    }

    /// The keys and rules a token of `iss` is judged by (see `issuers::place`).
    pub fn place(&self, iss: Option<&str>) -> Result<jwtdeny_core::token::Placed<'_>, Error> {
        issuers::place(
            self.several_issuers(),
            &self.registry,
            &self.registry_keys,
            &self.keys,
            &self.settings,
            iss,
        )
    }
}

/// The keys of a registry's sources, by index.
type RegistryKeys = Arc<[Arc<KeySet>]>;

/// A change of the issuer registry to publish with the settings.
enum Issuers {
    Same,
    /// A registry (loaded, or resolved again under new configs) and its keys.
    Loaded(Arc<Registry>, Arc<[Arc<KeySet>]>),
    /// The same registry with keys fetched for one of its sources.
    Fetched(Arc<[Arc<KeySet>]>),
}

static CURRENT: LazyLock<RwLock<Arc<Snapshot>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Snapshot::initial())));

/// Held by whoever replaces the snapshot (the main thread for configs, the fetch thread for
/// fetched keys), so that no change is lost between reading the snapshot and publishing the next.
static WRITER: Mutex<()> = Mutex::new(());

fn writer() -> MutexGuard<'static, ()> {
    WRITER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set once the module has finished loading. Before that a bad keys file must not stop Redis
/// from starting (it holds other data), and no thread is started; after it, a bad file is
/// refused.
static STARTED: AtomicBool = AtomicBool::new(false);

/// `jwtdeny.db` of the snapshot in force, readable without the snapshot's lock: every command
/// selects it first (in `commands::guard`), before the handler takes its own snapshot.
static DB: AtomicI64 = AtomicI64::new(0);

pub fn db() -> i64 {
    DB.load(Ordering::Acquire)
}

/// The snapshot in force. A snapshot is replaced whole, never changed in place, so a lock
/// poisoned by a panic elsewhere still guards sound data.
pub fn current() -> Arc<Snapshot> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Which key set a change replaces.
enum KeySets {
    Same,
    File(Arc<KeySet>),
    Uri(Arc<KeySet>),
    Both(Arc<KeySet>, Arc<KeySet>),
}

/// Puts `settings` and the keys in force; call with [`writer`] held. A key set that would serve
/// a `kid` from two sources is refused and nothing changes. Verifications cached under the old
/// keys are dropped unless every old key is still there unchanged (an unchanged refresh keeps
/// every hit) and the rules stay (`rules_changed`: a config that changes how a token is judged).
fn publish(
    old: &Snapshot,
    settings: Settings,
    keys: KeySets,
    rules_changed: bool,
) -> Result<(), Error> {
    publish_with(old, settings, keys, Issuers::Same, rules_changed)
}

fn publish_with(
    old: &Snapshot,
    settings: Settings,
    keys: KeySets,
    issuers: Issuers,
    rules_changed: bool,
) -> Result<(), Error> {
    let (file_keys, uri_keys) = match keys {
        KeySets::Same => (old.file_keys.clone(), old.uri_keys.clone()),
        KeySets::File(set) => (set, old.uri_keys.clone()),
        KeySets::Uri(set) => (old.file_keys.clone(), set),
        KeySets::Both(file, uri) => (file, uri),
    };
    let keys = if uri_keys.is_empty() {
        file_keys.clone()
    } else if file_keys.is_empty() {
        uri_keys.clone()
    } else {
        Arc::new(KeySet::union(&file_keys, &uri_keys)?)
    };
    let sync = matches!(issuers, Issuers::Loaded(..));
    let (registry, registry_keys, registry_changed) = match issuers {
        Issuers::Same => (old.registry.clone(), old.registry_keys.clone(), false),
        Issuers::Loaded(r, k) => (r, k, true),
        Issuers::Fetched(k) => {
            let kept = old.registry_keys.len() == k.len()
                && old
                    .registry_keys
                    .iter()
                    .zip(k.iter())
                    .all(|(a, b)| a.kept_by(b));
            (old.registry.clone(), k, !kept)
        }
    };
    let synced = sync.then(|| registry.clone());
    let kept = Arc::ptr_eq(&keys, &old.keys) || old.keys.kept_by(&keys);
    let generation = if kept && !rules_changed && !registry_changed {
        old.generation
    } else {
        old.generation.wrapping_add(1) // a rotated-out key's tokens must fail from now on
    };
    DB.store(settings.db, Ordering::Release);
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot {
        settings,
        keys,
        file_keys,
        uri_keys,
        registry,
        registry_keys,
        generation,
    });
    if generation != old.generation {
        cache::global().clear_to(generation);
    }
    if let Some(r) = synced.filter(|_| STARTED.load(Ordering::Acquire)) {
        jwks::sync_registry(r.id, r.fetched_sources());
    }
    Ok(())
}

/// Puts keys fetched from an identity provider in force (from a fetch thread), if
/// `still_current` says, under the writer lock, that they come from the source in force.
/// Returns whether anything changed.
fn set_uri_keys_if(
    target: jwks::Target,
    set: Arc<KeySet>,
    still_current: &dyn Fn() -> bool,
) -> Result<bool, Error> {
    let _w = writer();
    if !still_current() {
        return Ok(false);
    }
    let old = current();
    let jwks::Target::Registry { registry, source } = target else {
        return set_default_uri_keys(&old, set);
    };
    if old.registry.id != registry {
        return Ok(false); // fetched for a registry no longer in force
    }
    let mut keys: Vec<Arc<KeySet>> = old.registry_keys.to_vec();
    match keys.get_mut(source) {
        Some(slot) if !slot.same_keys(&set) => *slot = set,
        _ => return Ok(false),
    }
    publish_with(
        &old,
        old.settings.clone(),
        KeySets::Same,
        Issuers::Fetched(keys.into()),
        false,
    )?;
    Ok(true)
}

/// The default issuer's part of [`set_uri_keys_if`].
fn set_default_uri_keys(old: &Snapshot, set: Arc<KeySet>) -> Result<bool, Error> {
    if old.uri_keys.same_keys(&set) {
        return Ok(false);
    }
    publish(old, old.settings.clone(), KeySets::Uri(set), false)?;
    Ok(true)
}

fn load_keys(path: &str) -> Result<Arc<KeySet>, Error> {
    let loaded = KeySet::load(path).map(Arc::new);
    stats::count_reload(loaded.is_ok(), now_secs());
    loaded
}

fn log_skipped(set: &KeySet) {
    if let Some(line) = set.skipped_summary() {
        log::notice(&format!("jwtdeny: {line}"));
    }
}

/// Validates and applies one config value, whatever route it came by; the error names the
/// config. Whatever changes how a token is judged also empties the verification cache, so no
/// hit outlives the rules it passed.
pub fn apply(spec: &Spec, value: &str) -> Result<(), String> {
    let _w = writer();
    let old = current();
    let mut settings = old.settings.clone();
    spec.set(&mut settings, value)?;
    let started = STARTED.load(Ordering::Acquire);
    if started {
        config::runtime_change_allowed(spec, &old.settings, &settings)?;
        config::check_combination(&settings).map_err(|e| format!("jwtdeny.{}: {e}", spec.name))?;
    }
    let refuse = |e: Error| format!("jwtdeny.{}: {}", spec.name, e.message());
    let mut keys = KeySets::Same;
    if spec.effect == Effect::LoadKeys && started {
        // Before the load is over the file is read once, in `start`, after every source of
        // configs has been applied.
        keys = KeySets::File(if settings.keys_file.is_empty() {
            Arc::default() // explicitly no file keys
        } else {
            let set = load_keys(&settings.keys_file).map_err(refuse)?;
            log_skipped(&set);
            set
        });
    }
    // Without a source, its keys go at once; a changed source keeps them until its first fetch.
    let no_source = jwks::SourceConfig::from_settings(&settings).is_none();
    if no_source && !old.uri_keys.is_empty() {
        keys = match keys {
            KeySets::File(set) => KeySets::Both(set, Arc::default()),
            _ => KeySets::Uri(Arc::default()),
        };
    }
    let registry = if spec.effect == Effect::LoadIssuers && started {
        let (r, k) = load_issuers(&settings, &old).map_err(refuse)?;
        Issuers::Loaded(r, k)
    } else if !old.registry.is_empty() {
        // Every config may change what an issuer of the registry inherits, or collide with it.
        let (r, k) = old
            .registry
            .resolved_again(&settings, &old.registry_keys)
            .map_err(refuse)?;
        Issuers::Loaded(Arc::new(r), k.into())
    } else {
        Issuers::Same
    };
    let n = |v: i64| usize::try_from(v).unwrap_or(0);
    let (cache_size, pool_size) = (n(settings.verify_cache_size), n(settings.workers));
    let rules_changed = spec.effect == Effect::ClearCache;
    publish_with(&old, settings, keys, registry, rules_changed).map_err(refuse)?;
    if started {
        jwks::configure(&current().settings);
    }
    match spec.effect {
        // ClearCache: done by the publish, in the snapshot's generation.
        Effect::None
        | Effect::LoadKeys
        | Effect::LoadIssuers
        | Effect::Source
        | Effect::ClearCache => {}
        Effect::ResizeCache => cache::global().resize(cache_size),
        Effect::ResizeWorkers if started => workers::resize(pool_size),
        Effect::ResizeWorkers => {} // started in `start`, once the load cannot fail any more
    }
    Ok(())
}

/// Re-reads the configured keys file; on any error the old keys stay.
pub fn reload_keys() -> Result<Arc<KeySet>, Error> {
    let _w = writer();
    let old = current();
    let path = &old.settings.keys_file;
    if path.is_empty() {
        return Err(Error::Usage("jwtdeny.keys-file is not set".into()));
    }
    let set = load_keys(path)?;
    log_skipped(&set);
    publish(&old, old.settings.clone(), KeySets::File(set), false)?;
    Ok(current().keys.clone())
}

/// The registry `settings.issuers_file` names, and its keys; an empty one without a file.
fn load_issuers(
    settings: &Settings,
    old: &Snapshot,
) -> Result<(Arc<Registry>, RegistryKeys), Error> {
    if settings.issuers_file.is_empty() {
        return Ok((Arc::default(), Arc::new([])));
    }
    let (registry, keys) = Registry::load(
        &settings.issuers_file,
        settings,
        (&old.registry, &old.registry_keys),
    )?;
    for set in &keys {
        log_skipped(set);
    }
    Ok((Arc::new(registry), keys.into()))
}

/// Re-reads `jwtdeny.issuers-file` (`JWTDENY.ISSUERS RELOAD`); on any error the registry in
/// force stays. Returns the number of issuers.
pub fn reload_issuers() -> Result<usize, Error> {
    let _w = writer();
    let old = current();
    if old.settings.issuers_file.is_empty() {
        return Err(Error::Usage("jwtdeny.issuers-file is not set".into()));
    }
    let (registry, keys) = load_issuers(&old.settings, &old)?;
    let n = registry.issuers.len();
    publish_with(
        &old,
        old.settings.clone(),
        KeySets::Same,
        Issuers::Loaded(registry, keys),
        false,
    )?;
    Ok(n)
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
        let spec = config::find(&name)
            .ok_or_else(|| format!("unknown module argument {}", quote(&name)))?;
        apply(spec, &value)?;
    }
    Ok(())
}

/// Called once loading can no longer fail: starts the worker pool and loads the keys file if
/// one is configured. A failure to load keys is returned for the log and leaves no keys loaded
/// (fail closed).
pub fn start() -> Result<Option<Arc<KeySet>>, Error> {
    let _w = writer();
    STARTED.store(true, Ordering::Release);
    let old = current();
    let n = |v: i64| usize::try_from(v).unwrap_or(0);
    {
        let mut cache = cache::global();
        if cache.capacity() != n(old.settings.verify_cache_size) {
            cache.resize(n(old.settings.verify_cache_size));
        }
        // A module loaded again in the same process starts from a fresh snapshot.
        cache.clear_to(old.generation);
    }
    workers::resize(n(old.settings.workers));
    jwks::start(set_uri_keys_if);
    if jwks::configure(&old.settings) {
        log::notice(&format!(
            "jwtdeny: fetching keys from the identity provider ({}); until they arrive, tokens \
             whose key is not otherwise loaded answer NOKEY",
            jwks::info().uri
        ));
    }
    // The registry first: a bad one is logged and leaves no issuer of it (fail closed), and
    // does not stop the default issuer's keys from loading.
    if !old.settings.issuers_file.is_empty() {
        match load_issuers(&old.settings, &old) {
            Ok((r, k)) => {
                log::notice(&format!(
                    "jwtdeny: {} issuers from jwtdeny.issuers-file in force",
                    r.issuers.len()
                ));
                publish_with(
                    &old,
                    old.settings.clone(),
                    KeySets::Same,
                    Issuers::Loaded(r, k),
                    false,
                )?;
            }
            Err(e) => log::warning(&format!(
                "jwtdeny: {}; no issuer of the registry is in force (JWTDENY.ISSUERS RELOAD \
                 once it is fixed)",
                e.message()
            )),
        }
    }
    let old = current();
    let path = &old.settings.keys_file;
    if path.is_empty() {
        return Ok(None);
    }
    let set = load_keys(path)?;
    publish(
        &old,
        old.settings.clone(),
        KeySets::File(set.clone()),
        false,
    )?;
    Ok(Some(set))
}

/// How long an unload waits for the fetch thread to leave once its fetch is interrupted.
const STOP_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Called on unload, so that a later load starts over as at startup. Refused (nothing is
/// stopped) while a JWKS fetch is still resolving or connecting: see `jwks::stop`.
///
/// The threads are stopped before the writer lock is taken: the fetch thread takes that lock
/// to publish, and joining it while holding the lock would wait forever.
pub fn stop() -> Result<(), String> {
    jwks::stop(STOP_WITHIN)?;
    // No thread of ours may outlive the unloaded code.
    workers::stop();
    let _w = writer();
    STARTED.store(false, Ordering::Release);
    DB.store(0, Ordering::Release);
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot::initial());
    Ok(())
}

/// Registers every row of `config::SPECS` with Redis, then has Redis apply the values from its
/// configuration file and `MODULE LOADEX` (or the defaults).
pub fn register_configs(ctx: &Context) -> Result<(), String> {
    for (spec, handle) in SPECS.iter().zip(&HANDLES) {
        let mut flags = ConfigurationFlags::DEFAULT;
        if spec.immutable {
            flags |= ConfigurationFlags::IMMUTABLE;
        }
        if spec.sensitive {
            flags |= ConfigurationFlags::SENSITIVE;
        }
        match spec.kind {
            Kind::Int {
                default, min, max, ..
            } => register_i64_configuration(ctx, spec.name, handle, default, min, max, flags, None),
            Kind::Text { default, .. } => {
                register_string_configuration(ctx, spec.name, handle, default, flags, None)
            }
            Kind::Bool { default, .. } => {
                register_bool_configuration(ctx, spec.name, handle, default, flags, None)
            }
        }
    }
    // SAFETY: called during OnLoad, after the configs are registered, as RM_LoadConfigs requires.
    let loaded = unsafe { raw::RedisModule_LoadConfigs.map(|load| load(ctx.get_raw())) };
    match loaded {
        Some(status) if status == raw::REDISMODULE_OK as i32 => Ok(()),
        Some(_) => Err("a jwtdeny config in the server's configuration was refused".into()),
        None => Err("this server cannot load module configs".into()),
    }
}

/// A config as Redis sees it: `CONFIG GET/SET jwtdeny.<name>` go through here.
#[derive(Clone, Copy)]
pub struct Handle(usize);

static HANDLES: [Handle; SPECS.len()] = {
    let mut all = [Handle(0); SPECS.len()];
    let mut i = 0;
    while i < SPECS.len() {
        all[i] = Handle(i);
        i += 1;
    }
    all
};

impl Handle {
    fn spec(self) -> &'static Spec {
        // Handles are made from SPECS' own indices.
        &SPECS[self.0 % SPECS.len()]
    }

    /// Applies a value from Redis. Runs inside a C callback, where an unwinding panic would
    /// abort the server; and the error text becomes a C string, so it must be printable.
    fn set_text(self, value: &str) -> Result<(), RedisError> {
        let spec = self.spec();
        catch_unwind(AssertUnwindSafe(|| apply(spec, value)))
            .unwrap_or_else(|_| Err(format!("jwtdeny.{}: internal error", spec.name)))
            .map_err(|e| RedisError::String(printable(&e, 512)))
    }
}

/// The string each config's getter last handed to Redis. Redis copies what a getter returns and
/// never frees it, so a fresh string per `CONFIG GET` would leak: the module keeps ownership,
/// and frees each one on the next call, by which time Redis has long copied it.
static LAST_GOT: [AtomicPtr<raw::RedisModuleString>; SPECS.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SPECS.len()];

impl ConfigurationValue<RedisString> for Handle {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        let value = self.spec().get(&current().settings);
        let slot = LAST_GOT.get(self.0);
        // SAFETY: called by Redis on its main thread with the GIL held, as RM_CreateString and
        // RM_FreeString require; a null context makes the string independent of any call.
        unsafe {
            let (Some(create), Some(free), Some(slot)) = (
                raw::RedisModule_CreateString,
                raw::RedisModule_FreeString,
                slot,
            ) else {
                return RedisString::create(None, "");
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
                self.spec().name
            ))
        })?;
        self.set_text(text)
    }
}

impl ConfigurationValue<bool> for Handle {
    fn get(&self, _ctx: &ConfigurationContext) -> bool {
        match self.spec().kind {
            Kind::Bool { get, .. } => get(&current().settings),
            Kind::Int { .. } | Kind::Text { .. } => false,
        }
    }

    fn set(&self, _ctx: &ConfigurationContext, val: bool) -> Result<(), RedisError> {
        self.set_text(if val { "yes" } else { "no" })
    }
}

impl ConfigurationValue<i64> for Handle {
    fn get(&self, _ctx: &ConfigurationContext) -> i64 {
        match self.spec().kind {
            Kind::Int { get, .. } => get(&current().settings),
            Kind::Text { .. } | Kind::Bool { .. } => 0,
        }
    }

    fn set(&self, _ctx: &ConfigurationContext, val: i64) -> Result<(), RedisError> {
        self.set_text(&val.to_string())
    }
}
