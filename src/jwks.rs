//! Keys from the identity provider: a background thread fetches the JWKS of `jwtdeny.jwks-uri`
//! (or of the issuer's OIDC discovery document), refreshes it, and refetches when a token names
//! a `kid` that is not loaded, never on Redis's main thread.
//!
//! The fetch itself (HTTPS, redirects, limits, discovery) and when to fetch ([`Schedule`]) are
//! the core crate's `fetch`; this module is what ties them to Redis: the thread, the clients
//! blocked while a fetch runs, and the counters INFO shows. Everything about a source lives in
//! one [`Fetcher`], so a list of providers can later be a list of fetchers.
//!
//! Lock order: `state`'s writer lock, then a fetcher's lock; never the other way round (the
//! fetch thread releases its lock before it publishes).

use crate::blocked::{self, Blocked, Callback};
use crate::clock::now_secs;
use crate::log;
use jwtdeny_core::fetch::{self, FetchConfig, Schedule, Source, Trigger};
use jwtdeny_core::keys::KeySet;
use redis_module::Context;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How one source is fetched, from the settings; `None` in [`Inner`] when no source is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub source: Source,
    pub fetch: FetchConfig,
    pub periods: fetch::Periods,
}

impl SourceConfig {
    /// The source the settings name, if any (`config::check_combination` has vetted them).
    pub fn from_settings(s: &crate::config::Settings) -> Option<SourceConfig> {
        let source = if s.discovery {
            Source::Discovery {
                issuer: s.issuer.clone(),
            }
        } else if !s.jwks_uri.is_empty() {
            Source::Uri(s.jwks_uri.clone())
        } else {
            return None;
        };
        let secs = |n: i64| Duration::from_secs(u64::try_from(n).unwrap_or(0));
        Some(SourceConfig {
            source,
            fetch: FetchConfig {
                ca_file: (!s.jwks_ca_file.is_empty()).then(|| PathBuf::from(&s.jwks_ca_file)),
                timeout: Duration::from_millis(u64::try_from(s.jwks_timeout).unwrap_or(0)),
                max_body: fetch::MAX_BODY,
            },
            periods: fetch::Periods {
                refresh: secs(s.jwks_refresh),
                cooldown: secs(s.jwks_cooldown),
            },
        })
    }

    /// The URL as logs and INFO show it: never userinfo or query.
    fn shown(&self) -> String {
        match &self.source {
            Source::Uri(url) => fetch::redact_url(url),
            Source::Discovery { issuer } => fetch::discovery_url(issuer)
                .map_or_else(|_| String::new(), |u| fetch::redact_url(&u)),
        }
    }
}

/// A client blocked until a fetch is over.
struct Waiter {
    client: Blocked<Outcome>,
    /// When it started to wait: a fetch that had started before may have missed its key.
    arrived: Instant,
    patience: Patience,
}

/// How long a command waits for keys the provider has not served yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// For a fetch under way or starting now; within the cooldown it answers at once (CHECK:
    /// a read the client can repeat, and a flood of random kids ties up no connection).
    Brief,
    /// For the first fetch that starts after the command arrived, at the end of the cooldown
    /// if need be (REVOKE, LOGOUT: a revocation the provider sends once must not be lost).
    UntilFetched,
}

/// What a blocked client gets back: whether the fetch it waited for succeeded, and why not.
pub struct Outcome {
    pub error: Option<String>,
}

/// A source's state, behind the fetcher's lock.
struct Inner {
    config: Option<SourceConfig>,
    /// Where its keys go; a change moves `epoch` (a fetch for the old target is discarded).
    target: Target,
    /// Moves on every change of `config`: a fetch that ends under an older epoch is discarded.
    epoch: u64,
    schedule: Schedule,
    waiters: Vec<Waiter>,
    stop: bool,
    /// Whether the fetch thread runs: cleared by the thread itself, under this lock, as it
    /// leaves, so that `stop` knows whether it may still take the stop back.
    running: bool,
    /// Interrupts the fetch under way, for `stop`.
    cancel: Option<fetch::Canceller>,
    /// What INFO shows.
    info: Info,
}

/// The INFO fields of a source.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub uri: String,
    pub last_fetch_time: i64,
    /// `never`, `ok`, or the error code of the last fetch (`fetch::FetchError::code`, or
    /// `jwks` when the body was not a usable JWKS).
    pub last_fetch_result: String,
    pub fetches_ok: u64,
    pub fetches_failed: u64,
    pub unknown_kid_fetches: u64,
    /// Unix seconds of the next scheduled fetch; 0 with no source.
    pub next_fetch_time: i64,
}

/// Whose keys a fetcher's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The default issuer's (`jwtdeny.jwks-uri`, `jwtdeny.discovery`).
    Default,
    /// Source `source` of the issuer registry whose id is `registry`.
    Registry { registry: u64, source: usize },
}

/// Puts fetched keys in force for `target` if the check (run under the publisher's lock) says
/// they still come from the source in force; returns whether the keys in force changed.
/// `state` hands it over at start, so this module needs nothing of `state`.
pub type Publish =
    fn(Target, Arc<KeySet>, &dyn Fn() -> bool) -> Result<bool, jwtdeny_core::error::Error>;

pub struct Fetcher {
    inner: Mutex<Inner>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Fetcher {
    fn new(target: Target) -> Arc<Fetcher> {
        Arc::new(Fetcher {
            inner: Mutex::new(Inner {
                config: None,
                target,
                epoch: 0,
                schedule: Schedule::new(Instant::now()),
                waiters: Vec::new(),
                stop: false,
                running: false,
                cancel: None,
                info: Info {
                    last_fetch_result: "never".into(),
                    ..Info::default()
                },
            }),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        })
    }
}

/// The default issuer's source.
static FETCHER: LazyLock<Arc<Fetcher>> = LazyLock::new(|| Fetcher::new(Target::Default));

/// The registry's sources, by their index in the registry in force (`None`: a keys file).
static REGISTRY: Mutex<Vec<Option<Arc<Fetcher>>>> = Mutex::new(Vec::new());

/// Sources a registry change let go: their threads are leaving, and are waited for at unload.
static RETIRED: Mutex<Vec<Arc<Fetcher>>> = Mutex::new(Vec::new());

/// How fetched keys are put in force, from `start`.
static PUBLISH: Mutex<Option<Publish>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Vec<Option<Arc<Fetcher>>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn retired() -> MutexGuard<'static, Vec<Arc<Fetcher>>> {
    RETIRED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unix seconds of a monotonic instant, for INFO.
fn unix_of(at: Instant) -> i64 {
    let now = Instant::now();
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if at >= now {
        now_secs().saturating_add(secs(at - now))
    } else {
        now_secs().saturating_sub(secs(now - at))
    }
}

impl Fetcher {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every field is replaced whole under the lock: a panic elsewhere leaves them sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Takes the settings in force (after any config change); a changed source fetches at once.
/// Returns whether a source is configured.
pub fn configure(settings: &crate::config::Settings) -> bool {
    FETCHER.configure(SourceConfig::from_settings(settings), Target::Default)
}

impl Fetcher {
    /// Takes a source (`None`: none any more) and where its keys go; a changed source or
    /// target fetches at once. Returns whether a source is configured.
    fn configure(&self, config: Option<SourceConfig>, target: Target) -> bool {
        let configured = config.is_some();
        let mut inner = self.lock();
        if inner.config == config && inner.target == target {
            return configured;
        }
        let same_source = inner.target == target
            && match (&inner.config, &config) {
                (Some(a), Some(b)) => a.source == b.source && a.fetch == b.fetch,
                _ => false,
            };
        inner.target = target;
        if same_source {
            // Only the periods changed: keep the schedule, but never wait longer than the new one.
            if let Some(c) = &config {
                let latest = Instant::now() + c.periods.refresh;
                if inner.schedule.next_fetch() > latest && inner.schedule.in_flight().is_none() {
                    inner.schedule = Schedule::new(latest);
                }
            }
        } else {
            inner.epoch += 1;
            inner.schedule = Schedule::new(Instant::now());
        }
        inner.info.uri = config.as_ref().map(SourceConfig::shown).unwrap_or_default();
        inner.config = config;
        // With no source left, no fetch will answer the clients waiting for one: answer them now
        // (every blocked handle must be unblocked once, even one whose client timed out).
        let orphans = if configured {
            Vec::new()
        } else {
            std::mem::take(&mut inner.waiters)
        };
        drop(inner);
        self.wake.notify_all();
        finish(orphans, Some("no identity provider is configured any more"));
        configured
    }
}

/// Whether a source is configured (tokens with unknown kids may then wait for a fetch).
pub fn configured() -> bool {
    FETCHER.lock().config.is_some()
}

/// INFO's view of the source.
pub fn info() -> Info {
    FETCHER.info()
}

impl Fetcher {
    fn info(&self) -> Info {
        let inner = self.lock();
        let mut info = inner.info.clone();
        info.next_fetch_time = if inner.config.is_some() {
            unix_of(inner.schedule.next_fetch())
        } else {
            0
        };
        info
    }
}

/// INFO's view of each fetched source of the registry, by source index.
pub fn registry_info() -> Vec<(usize, Info)> {
    registry()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f.info())))
        .collect()
}

/// INFO during a crash report: never waits for the lock.
pub fn try_info() -> Option<Info> {
    FETCHER
        .inner
        .try_lock()
        .ok()
        .map(|inner| inner.info.clone())
}

/// Asks for fresh keys on behalf of a command (`trigger`: an unknown `kid`, or `KEYS RELOAD`)
/// and, where the client may block, blocks it until a fetch is over: `reply` then runs on the
/// main thread with the command's arguments, or `timeout` once the wait's bound has passed.
/// Returns whether the client was blocked; when not (no source, a `Brief` wait within the
/// cooldown, MULTI or Lua), the command answers at once, and a fetch may still have been
/// asked for on behalf of the commands after it (at the latest when the cooldown ends).
pub fn await_keys(
    ctx: &Context,
    trigger: Trigger,
    patience: Patience,
    reply: Callback,
    timeout: Callback,
) -> bool {
    FETCHER.await_keys(ctx, trigger, patience, reply, timeout)
}

/// [`await_keys`] for source `source` of the registry whose id is `registry`: only while that
/// registry is in force.
pub fn await_registry_keys(
    ctx: &Context,
    (registry_id, source): (u64, usize),
    patience: Patience,
    reply: Callback,
    timeout: Callback,
) -> bool {
    let Some(fetcher) = registry().get(source).cloned().flatten() else {
        return false;
    };
    let want = Target::Registry {
        registry: registry_id,
        source,
    };
    // Read apart: `await_keys` takes the same lock.
    let current = fetcher.lock().target == want;
    current && fetcher.await_keys(ctx, Trigger::UnknownKid, patience, reply, timeout)
}

impl Fetcher {
    fn await_keys(
        &self,
        ctx: &Context,
        trigger: Trigger,
        patience: Patience,
        reply: Callback,
        timeout: Callback,
    ) -> bool {
        let mut inner = self.lock();
        let Some(config) = inner.config.clone() else {
            return false;
        };
        let now = Instant::now();
        let decision = inner.schedule.request(trigger, now, &config.periods);
        match decision {
            fetch::Decision::Start => {
                if trigger == Trigger::UnknownKid {
                    inner.info.unknown_kid_fetches += 1;
                }
                self.wake.notify_all();
            }
            // The fetch thread learns when the deferred fetch is due.
            fetch::Decision::Deferred(_) => self.wake.notify_all(),
            fetch::Decision::Join | fetch::Decision::Refuse => {}
        }
        let may_wait = match decision {
            fetch::Decision::Start | fetch::Decision::Join => true,
            fetch::Decision::Deferred(_) => patience == Patience::UntilFetched,
            fetch::Decision::Refuse => false,
        };
        if !may_wait {
            return false;
        }
        // A brief wait is one fetch; a patient one may also wait out the cooldown and, having
        // arrived during a fetch that started before it, the one fetch after that. A second for
        // the work after the fetch.
        let fetch = config.fetch.timeout;
        let bound = match patience {
            Patience::Brief => fetch,
            Patience::UntilFetched => config.periods.cooldown + fetch + fetch,
        } + Duration::from_secs(1);
        let ms = i64::try_from(bound.as_millis()).unwrap_or(i64::MAX);
        // Not in MULTI or Lua, nor from a callback: the command then answers at once.
        let Some(client) = Blocked::new(ctx, reply, Some(timeout), ms) else {
            return false;
        };
        inner.waiters.push(Waiter {
            client,
            arrived: now,
            patience,
        });
        true
    }
}

/// In a reply callback of [`await_keys`]: how the fetch went (`None` if there is no word).
pub fn outcome(ctx: &Context) -> Option<&Outcome> {
    // SAFETY: the reply callbacks given to `await_keys`, of clients blocked as Blocked<Outcome>.
    unsafe { blocked::data::<Outcome>(ctx) }.map(|o| &*o)
}

/// Unblocks every waiting client with `error` (None: the fetch succeeded).
fn finish(waiters: Vec<Waiter>, error: Option<&str>) {
    for Waiter { client, .. } in waiters {
        client.unblock(Some(Outcome {
            error: error.map(str::to_string),
        }));
    }
}

/// Starts the default source's fetch thread (once loading can no longer fail); the registry's
/// sources start with [`sync_registry`].
pub fn start(publish: Publish) {
    *PUBLISH.lock().unwrap_or_else(|e| e.into_inner()) = Some(publish);
    FETCHER.spawn();
}

/// Gives the registry whose id is `id` its fetchers: one per fetched source (`None`: a keys
/// file), by source index. A source some fetcher fetches already keeps that fetcher (and its
/// schedule, when only the periods changed); the others are let go, answering their waiters
/// (whose commands then run again under the registry now in force).
pub fn sync_registry(id: u64, sources: Vec<Option<SourceConfig>>) {
    let mut reg = registry();
    let mut old: Vec<Arc<Fetcher>> = reg.drain(..).flatten().collect();
    let mut new = Vec::with_capacity(sources.len());
    for (i, config) in sources.into_iter().enumerate() {
        let Some(config) = config else {
            new.push(None);
            continue;
        };
        let target = Target::Registry {
            registry: id,
            source: i,
        };
        let same = |f: &Arc<Fetcher>| {
            f.lock()
                .config
                .as_ref()
                .is_some_and(|c| c.source == config.source && c.fetch == config.fetch)
        };
        let fetcher = match old.iter().position(same) {
            Some(j) => old.swap_remove(j),
            None => Fetcher::new(target),
        };
        fetcher.configure(Some(config), target);
        fetcher.spawn();
        new.push(Some(fetcher));
    }
    *reg = new;
    drop(reg);
    let mut retired = retired();
    for f in old {
        f.configure(None, Target::Default);
        f.signal_stop();
        retired.push(f);
    }
    // Those that have left are forgotten.
    retired.retain(|f| {
        let running = f.lock().running;
        if !running {
            f.reset(None);
        }
        running
    });
}

impl Fetcher {
    /// Starts its thread if it has none.
    fn spawn(self: &Arc<Self>) {
        let Some(publish) = *PUBLISH.lock().unwrap_or_else(|e| e.into_inner()) else {
            return;
        };
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_some() {
            return;
        }
        {
            let mut inner = self.lock();
            inner.stop = false;
            inner.running = true;
        }
        let me = self.clone();
        *thread = std::thread::Builder::new()
            .name("jwtdeny-jwks".into())
            .spawn(move || run(me, publish))
            .map_err(|e| {
                self.lock().running = false;
                log::warning(&format!("jwtdeny: cannot start a JWKS thread: {e}"));
            })
            .ok();
    }

    /// Asks its thread to leave, interrupting the fetch under way.
    fn signal_stop(&self) {
        let cancel = {
            let mut inner = self.lock();
            inner.stop = true;
            inner.cancel.take()
        };
        self.wake.notify_all();
        if let Some(cancel) = cancel {
            cancel.cancel();
        }
    }

    /// Whether its thread has left by `deadline`.
    fn gone_by(&self, deadline: Instant) -> bool {
        loop {
            if !self.lock().running {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Takes a stop back: a thread still running goes on as before (it acts on a stop under
    /// this lock, so it has not); one that has left is started again.
    fn resume(self: &Arc<Self>) {
        {
            let mut inner = self.lock();
            if inner.running {
                inner.stop = false;
                return;
            }
        }
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        self.spawn();
    }

    /// Once its thread has left: joins it and forgets the source, answering its waiters with
    /// `why`.
    fn reset(&self, why: Option<&str>) {
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        let mut inner = self.lock();
        let waiters = std::mem::take(&mut inner.waiters);
        inner.config = None;
        inner.info = Info {
            last_fetch_result: "never".into(),
            ..Info::default()
        };
        drop(inner);
        finish(waiters, Some(why.unwrap_or("the source is gone")));
    }
}

/// Stops every fetch thread without waiting on the network: a fetch under way is interrupted
/// (its connection shut down), and the threads are given `within` to leave. Only a name
/// resolution or a TCP connect under way cannot be interrupted; if a thread is still in one
/// when `within` has passed, the stop is taken back (every source goes on as before) and the
/// reason returned, so that the unload is refused rather than wait for the network or leave
/// a thread running in unloaded code. Every waiting client is then answered, so none stays
/// blocked on unloaded code (Redis refuses to unload a module with blocked clients anyway).
///
/// Call it without holding `state`'s writer lock: the fetch threads take that lock to publish.
pub fn stop(within: Duration) -> Result<(), String> {
    let mut live: Vec<Arc<Fetcher>> = vec![FETCHER.clone()];
    live.extend(registry().iter().flatten().cloned());
    let leaving: Vec<Arc<Fetcher>> = retired().clone();
    for f in live.iter().chain(&leaving) {
        f.signal_stop();
    }
    let deadline = Instant::now() + within;
    let stuck: Vec<String> = live
        .iter()
        .chain(&leaving)
        .filter(|f| !f.gone_by(deadline))
        .map(|f| f.lock().info.uri.clone())
        .collect();
    if !stuck.is_empty() {
        for f in &live {
            f.resume();
        }
        return Err(format!(
            "the JWKS fetch from {} is still resolving or connecting; it ends within \
             jwtdeny.jwks-timeout, try again then",
            stuck.join(", ")
        ));
    }
    for f in live.iter().chain(&leaving) {
        f.reset(Some("the module is being unloaded"));
    }
    registry().clear();
    retired().clear();
    Ok(())
}

/// Marks the fetch thread gone however it leaves (a panic outside the fetch included), so
/// that `stop` never waits for a thread that is not there.
struct Leaving(Arc<Fetcher>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.lock().running = false;
    }
}

/// The fetch thread: waits until a fetch is due or asked for, runs it, publishes the keys.
/// Where it sees the stop it also marks itself gone, under the same lock, so that `stop` can
/// never take back a stop this thread has already acted on.
fn run(f: Arc<Fetcher>, publish: Publish) {
    let _leaving = Leaving(f.clone());
    // The discovered jwks_uri, kept while the discovery document may be used; a source of
    // its own per epoch.
    let mut discovered: Option<(u64, fetch::Discovered)> = None;
    loop {
        let (config, epoch, started, trigger) = {
            let mut inner = f.lock();
            let config = loop {
                if inner.stop {
                    inner.running = false;
                    return;
                }
                let Some(config) = inner.config.clone() else {
                    inner = f.wake.wait(inner).unwrap_or_else(|e| e.into_inner());
                    continue;
                };
                if inner.schedule.in_flight().is_some() {
                    break config; // asked for by a command
                }
                let now = Instant::now();
                match inner.schedule.due(now, &config.periods) {
                    Some(Trigger::UnknownKid) => {
                        inner.info.unknown_kid_fetches += 1;
                        break config;
                    }
                    Some(_) => break config,
                    None => {}
                }
                let wait = inner.schedule.wake_at().saturating_duration_since(now);
                inner = f
                    .wake
                    .wait_timeout(inner, wait)
                    .map_or_else(|e| e.into_inner().0, |(g, _)| g);
            };
            let started = inner.schedule.started().unwrap_or_else(Instant::now);
            let trigger = inner.schedule.in_flight();
            (config, (inner.epoch, inner.target), started, trigger)
        };
        let (epoch, target) = epoch;
        // Reads the trust store: not under the lock the main thread takes.
        let client = fetch::Client::new(&config.fetch);
        {
            // Either `stop` finds this canceller, or this thread finds the stop, before any
            // connection is opened.
            let mut inner = f.lock();
            if inner.stop {
                inner.running = false;
                return;
            }
            if let Ok(c) = &client {
                inner.cancel = Some(c.canceller());
            }
        }
        // An operator's KEYS RELOAD reads the discovery document again too.
        let mut found = discovered
            .take()
            .filter(|(e, _)| *e == epoch && trigger != Some(Trigger::Operator))
            .map(|(_, d)| d);
        let result = catch_unwind(AssertUnwindSafe(|| {
            client
                .map_err(|e| (e.code(), e.to_string()))
                .and_then(|c| fetch_keys(&c, &config, &mut found))
        }))
        .unwrap_or_else(|_| Err(("internal", "the fetch failed unexpectedly".to_string())));
        discovered = found.map(|d| (epoch, d));
        {
            let mut inner = f.lock();
            inner.cancel = None;
            if inner.stop {
                // Unloading: an interrupted fetch is no failure, and nothing is published.
                inner.running = false;
                return;
            }
        }
        // The keys are published under state's writer lock, checking under it that the source
        // did not change meanwhile (a CONFIG SET takes the same lock first).
        let published = match &result {
            Ok((set, _)) => publish(target, set.clone(), &|| f.lock().epoch == epoch)
                .map_err(|e| ("jwks", e.message().to_string())),
            Err(_) => Ok(false),
        };
        let mut inner = f.lock();
        if inner.epoch != epoch {
            continue; // a new source: its own fetch starts at once, for the same waiters
        }
        let now = Instant::now();
        inner.info.last_fetch_time = now_secs();
        let error = match (result, published) {
            (Ok((set, max_age)), Ok(changed)) => {
                inner.schedule.succeeded(now, max_age, &config.periods);
                inner.info.fetches_ok += 1;
                inner.info.last_fetch_result = "ok".into();
                // Only when the key set changed: an unchanged refresh (every jwks-refresh, every
                // cooldown) logs nothing, however many keys it passes over.
                if changed {
                    log::notice(&format!(
                        "jwtdeny: {} keys from {} in force",
                        set.len(),
                        inner.info.uri
                    ));
                    if let Some(line) = set.skipped_summary() {
                        log::notice(&format!("jwtdeny: {line} (from {})", inner.info.uri));
                    }
                }
                None
            }
            (Err((code, why)), _) | (Ok(_), Err((code, why))) => {
                inner.schedule.failed(now, &config.periods);
                inner.info.fetches_failed += 1;
                inner.info.last_fetch_result = code.to_string();
                log::warning(&format!(
                    "jwtdeny: fetching the JWKS from {} failed, the previous keys stay: {why}",
                    inner.info.uri
                ));
                Some(why)
            }
        };
        // A patient waiter that arrived after this fetch started may be waiting for a key
        // this fetch missed: it waits for one more, when the cooldown allows.
        let (answered, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut inner.waiters)
            .into_iter()
            .partition(|w| w.patience == Patience::Brief || w.arrived <= started);
        if !kept.is_empty() {
            inner.schedule.follow_up(now, &config.periods);
        }
        inner.waiters = kept;
        drop(inner);
        finish(answered, error.as_deref());
    }
}

/// One fetch and parse, on the fetch thread.
#[allow(clippy::type_complexity)]
fn fetch_keys(
    client: &fetch::Client,
    config: &SourceConfig,
    discovered: &mut Option<fetch::Discovered>,
) -> Result<(Arc<KeySet>, Option<Duration>), (&'static str, String)> {
    // A discovery document without max-age is read again once per jwks-refresh.
    let fetched = client
        .fetch_jwks_with(&config.source, discovered, config.periods.refresh)
        .map_err(|e| (e.code(), e.to_string()))?;
    let set = KeySet::fetched(&fetched.body)
        .map_err(|e| ("jwks", format!("not a usable JWKS: {}", e.message())))?;
    Ok((Arc::new(set), fetched.max_age))
}
