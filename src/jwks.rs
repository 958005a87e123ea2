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

/// Puts fetched keys in force if the check (run under the publisher's lock) says they still
/// come from the source in force; returns whether the keys in force changed. `state` hands it
/// over at start, so this module needs nothing of `state`.
pub type Publish = fn(Arc<KeySet>, &dyn Fn() -> bool) -> Result<bool, jwtdeny_core::error::Error>;

pub struct Fetcher {
    inner: Mutex<Inner>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static FETCHER: LazyLock<Fetcher> = LazyLock::new(|| Fetcher {
    inner: Mutex::new(Inner {
        config: None,
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
});

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
    let config = SourceConfig::from_settings(settings);
    let configured = config.is_some();
    let mut inner = FETCHER.lock();
    if inner.config == config {
        return configured;
    }
    let same_source = match (&inner.config, &config) {
        (Some(a), Some(b)) => a.source == b.source && a.fetch == b.fetch,
        _ => false,
    };
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
    FETCHER.wake.notify_all();
    finish(orphans, Some("no identity provider is configured any more"));
    configured
}

/// Whether a source is configured (tokens with unknown kids may then wait for a fetch).
pub fn configured() -> bool {
    FETCHER.lock().config.is_some()
}

/// INFO's view of the source.
pub fn info() -> Info {
    let inner = FETCHER.lock();
    let mut info = inner.info.clone();
    info.next_fetch_time = if inner.config.is_some() {
        unix_of(inner.schedule.next_fetch())
    } else {
        0
    };
    info
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
    let mut inner = FETCHER.lock();
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
            FETCHER.wake.notify_all();
        }
        // The fetch thread learns when the deferred fetch is due.
        fetch::Decision::Deferred(_) => FETCHER.wake.notify_all(),
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

/// Starts the fetch thread (once loading can no longer fail).
pub fn start(publish: Publish) {
    let mut thread = FETCHER.thread.lock().unwrap_or_else(|e| e.into_inner());
    if thread.is_some() {
        return;
    }
    {
        let mut inner = FETCHER.lock();
        inner.stop = false;
        inner.running = true;
    }
    *thread = std::thread::Builder::new()
        .name("jwtdeny-jwks".into())
        .spawn(move || run(publish))
        .map_err(|e| {
            FETCHER.lock().running = false;
            log::warning(&format!("jwtdeny: cannot start the JWKS thread: {e}"));
        })
        .ok();
}

/// Stops the fetch thread without waiting on the network: a fetch under way is interrupted
/// (its connection shut down), and the thread is given `within` to leave. Only a name
/// resolution or a TCP connect under way cannot be interrupted; if the thread is still in one
/// when `within` has passed, the stop is taken back (the thread goes on as before) and the
/// reason returned, so that the unload is refused rather than wait for the network or leave
/// a thread running in unloaded code. Every waiting client is then answered, so none stays
/// blocked on unloaded code (Redis refuses to unload a module with blocked clients anyway).
///
/// Call it without holding `state`'s writer lock: the fetch thread takes that lock to publish.
pub fn stop(within: Duration) -> Result<(), String> {
    let cancel = {
        let mut inner = FETCHER.lock();
        inner.stop = true;
        inner.cancel.take()
    };
    FETCHER.wake.notify_all();
    if let Some(cancel) = cancel {
        cancel.cancel();
    }
    let mut thread = FETCHER.thread.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = thread.take() {
        let deadline = Instant::now() + within;
        loop {
            if !FETCHER.lock().running {
                break;
            }
            if Instant::now() >= deadline {
                let mut inner = FETCHER.lock();
                if inner.running {
                    // Still resolving or connecting: take the stop back.
                    inner.stop = false;
                    drop(inner);
                    *thread = Some(handle);
                    return Err(format!(
                        "the JWKS fetch from {} is still resolving or connecting; it ends \
                         within jwtdeny.jwks-timeout, try again then",
                        info().uri
                    ));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // It has left its loop; what is left of it is returning.
        let _ = handle.join();
    }
    drop(thread);
    let mut inner = FETCHER.lock();
    let waiters = std::mem::take(&mut inner.waiters);
    inner.config = None;
    inner.info = Info {
        last_fetch_result: "never".into(),
        ..Info::default()
    };
    drop(inner);
    finish(waiters, Some("the module is being unloaded"));
    Ok(())
}

/// Marks the fetch thread gone however it leaves (a panic outside the fetch included), so
/// that `stop` never waits for a thread that is not there.
struct Leaving;

impl Drop for Leaving {
    fn drop(&mut self) {
        FETCHER.lock().running = false;
    }
}

/// The fetch thread: waits until a fetch is due or asked for, runs it, publishes the keys.
/// Where it sees the stop it also marks itself gone, under the same lock, so that `stop` can
/// never take back a stop this thread has already acted on.
fn run(publish: Publish) {
    let _leaving = Leaving;
    // The discovered jwks_uri, kept while the discovery document may be used; a source of
    // its own per epoch.
    let mut discovered: Option<(u64, fetch::Discovered)> = None;
    loop {
        let (config, epoch, started, trigger) = {
            let mut inner = FETCHER.lock();
            let config = loop {
                if inner.stop {
                    inner.running = false;
                    return;
                }
                let Some(config) = inner.config.clone() else {
                    inner = FETCHER.wake.wait(inner).unwrap_or_else(|e| e.into_inner());
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
                inner = FETCHER
                    .wake
                    .wait_timeout(inner, wait)
                    .map_or_else(|e| e.into_inner().0, |(g, _)| g);
            };
            let started = inner.schedule.started().unwrap_or_else(Instant::now);
            let trigger = inner.schedule.in_flight();
            (config, inner.epoch, started, trigger)
        };
        // Reads the trust store: not under the lock the main thread takes.
        let client = fetch::Client::new(&config.fetch);
        {
            // Either `stop` finds this canceller, or this thread finds the stop, before any
            // connection is opened.
            let mut inner = FETCHER.lock();
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
            let mut inner = FETCHER.lock();
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
            Ok((set, _)) => publish(set.clone(), &|| FETCHER.lock().epoch == epoch)
                .map_err(|e| ("jwks", e.message().to_string())),
            Err(_) => Ok(false),
        };
        let mut inner = FETCHER.lock();
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
