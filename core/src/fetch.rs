//! Fetching a JWKS from an identity provider over HTTPS: the transport layer, pure of Redis.
//!
//! # Design (for the integration with the key set; nothing here calls Redis)
//!
//! - **A source** is one place keys come from: `jwtdeny.jwks-uri`, or the `jwks_uri` that OIDC
//!   discovery of `jwtdeny.issuer` names ([`Source`]). Today there is one; the multi-issuer
//!   future adds a list, each with its own fetcher, [`Schedule`], counters and INFO fields
//!   (`jwks_<field>` now, `jwks_<n>_<field>` or a per-source section later), and its own keys
//!   that verify only tokens of its issuer. Nothing below is global, so that list needs no new
//!   concept.
//! - **One background thread per source**, never the main thread. It sleeps on a condvar until
//!   [`Schedule::next_fetch`] or a wake-up (unknown `kid`, `KEYS RELOAD`, `CONFIG SET`, unload),
//!   runs [`fetch_jwks`] (which bounds the whole round, discovery included, by the timeout),
//!   parses the body into a `KeySet` on that thread too (RSA key parsing is not free), and
//!   catches panics of the client library. A slow provider thus delays only its own source.
//! - **State per source**: the [`Schedule`], the last fetch's wall-clock time and result (an
//!   [`FetchError::code`] or `ok`, for `jwks_last_fetch_result`), counts of fetches ok / failed /
//!   triggered by an unknown `kid`, the discovered `jwks_uri`, and a config epoch: a
//!   `CONFIG SET` of the URL, issuer, CA file or timeout bumps it, and a fetch that finishes
//!   under an older epoch is discarded.
//! - **Refresh**: after a success the next fetch is due after `jwks-refresh`, or after the
//!   response's `Cache-Control: max-age` when that is shorter, but never sooner than 30 s
//!   ([`MIN_MAX_AGE`]). After a failure the previous keys stay and the retry backs off
//!   exponentially from 1 s, never waiting longer than `jwks-refresh` ([`Schedule::failed`]).
//! - **Unknown `kid`**: the main thread asks [`Schedule::request`] with
//!   [`Trigger::UnknownKid`]: `Join` a fetch already in flight (the client is blocked and
//!   queued on the source), `Start` one (the cooldown since the last unknown-kid fetch has
//!   passed), or `Deferred` (within the cooldown: the fetch is due when it ends, and the
//!   fetch thread runs it then, [`Schedule::due`]; a command that must not lose its request
//!   waits for it, others answer `NOKEY` at once). The schedule is only touched under the
//!   source's lock, so concurrent requests share one fetch, and a flood of random kids causes
//!   at most one fetch per `jwks-cooldown`.
//! - **Handing keys to the main thread**: the fetch thread parses the new key set, then takes
//!   the module's writer lock to publish a new snapshot (the union of file and provider keys,
//!   with a new cache generation unless every old key stayed unchanged): commands read whole
//!   snapshots, never half of one. Then it unblocks each waiting client with
//!   `RedisModule_UnblockClient`; their reply callbacks, on the main thread, judge the token
//!   by the key set now in force and never block again. Blocked clients also carry a block
//!   timeout that answers `NOKEY`, so no client waits on a hung fetch.
//! - **Stopping** (unload) never waits on the network: the fetch under way is interrupted
//!   through its [`Canceller`], and nothing is published after the stop.
//!
//! # Transport rules
//! https only, also for every redirect target (checked before any connection); at most
//! [`MAX_REDIRECTS`] redirects; TLS verified against the system trust store or only the given
//! CA file; one deadline from connect to the last byte; bodies over the limit refused without
//! reading them all; no proxy from the environment (a redis-server's environment is rarely meant
//! for it); no compression (a JWKS is small, and a decompression bomb needs none).
//!
//! Every text that came from the network reaches a [`FetchError`] only escaped and capped, and
//! URLs are shown through [`redact_url`], so an error's `Display` is safe for any log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::http::{header, Uri};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

/// The largest body accepted, for a JWKS and a discovery document alike.
pub const MAX_BODY: usize = 1 << 20;
/// Redirects followed before giving up, as curl's `--max-redirs 3`.
pub const MAX_REDIRECTS: u32 = 3;
/// What `jwtdeny.jwks-timeout` defaults to.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A CA file larger than this is not a CA file (and `/dev/zero` must not hang the fetch).
const MAX_CA_FILE: u64 = 4 << 20;
/// The longest URL accepted; real JWKS URLs are well under 200 bytes.
const MAX_URL: usize = 2048;
/// Caps on what an error shows: one quoted piece of outside text, and the whole message.
const MAX_QUOTED: usize = 96;
const MAX_MESSAGE: usize = 320;
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// How to fetch: everything but the URL, which differs between discovery and the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// Trust only the CAs in this PEM file instead of the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// The whole fetch, connect to last byte (discovery and JWKS together in [`fetch_jwks`]).
    pub timeout: Duration,
    /// Bodies longer than this are refused.
    pub max_body: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            max_body: MAX_BODY,
        }
    }
}

/// A successful fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body, at most `max_body` bytes, syntactically JSON (what it means is the caller's).
    pub body: Vec<u8>,
    /// How long the response may be used, from `Cache-Control: max-age` less `Age`.
    pub max_age: Option<Duration>,
    /// Where the body came from after redirects, already passed through [`redact_url`].
    pub final_url: String,
}

/// Where a source's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `jwtdeny.jwks-uri`.
    Uri(String),
    /// `jwtdeny.discovery yes`: the `jwks_uri` of this issuer's discovery document.
    Discovery { issuer: String },
}

/// Text from outside (the network, a URL, a file), escaped to printable ASCII without `%` or
/// `\` and capped; the only way such text gets into a [`FetchError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    pub fn new(text: &str) -> Quoted {
        Quoted::bytes(text.as_bytes())
    }

    pub fn bytes(text: &[u8]) -> Quoted {
        let mut out = String::with_capacity(text.len().min(MAX_QUOTED) + 3);
        for &b in text {
            let piece_len = if is_plain(b) { 1 } else { 4 };
            if out.len() + piece_len > MAX_QUOTED {
                out.push_str("...");
                break;
            }
            if is_plain(b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        Quoted(out)
    }

    /// A URL as [`redact_url`] shows it.
    pub fn url(url: &str) -> Quoted {
        Quoted(redact_url(url))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bytes shown as themselves: printable ASCII, except `%` (a printf directive wherever a
/// careless caller logs it) and `\` (so that an escape in the output is always ours).
fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'%' && b != b'\\'
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a fetch failed. `Display` is short, printable ASCII and safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Not a usable URL (or issuer); the URL is shown redacted.
    BadUrl {
        url: Quoted,
        why: &'static str,
    },
    /// Not `https`: refused before any connection.
    NotHttps {
        url: Quoted,
    },
    /// A redirect to a URL that is not `https`: refused before connecting to it.
    RedirectNotHttps {
        to: Quoted,
    },
    TooManyRedirects,
    /// The CA file cannot be used.
    CaFile {
        path: Quoted,
        why: Quoted,
    },
    /// The system trust store has no usable certificate.
    NoSystemRoots,
    /// Name resolution, connect or I/O.
    Connect(Quoted),
    /// The TLS handshake failed, certificate verification included.
    Tls(Quoted),
    /// The deadline passed (the configured timeout is shown).
    Timeout(Duration),
    /// A final status other than 2xx.
    Status(u16),
    /// The body is longer than the limit (in bytes).
    TooLarge(usize),
    /// The body is not JSON.
    NotJson(Quoted),
    /// The server broke HTTP (a malformed response, headers too large, a bad `Location`).
    Protocol(Quoted),
    /// The discovery document is unusable: no `jwks_uri`, or not the configured issuer's.
    Discovery(Quoted),
}

impl FetchError {
    /// A stable one-word reason, for `jwks_last_fetch_result` and tests.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::BadUrl { .. } => "bad_url",
            FetchError::NotHttps { .. } => "not_https",
            FetchError::RedirectNotHttps { .. } => "redirect_not_https",
            FetchError::TooManyRedirects => "too_many_redirects",
            FetchError::CaFile { .. } => "ca_file",
            FetchError::NoSystemRoots => "no_system_roots",
            FetchError::Connect(_) => "connect",
            FetchError::Tls(_) => "tls",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::NotJson(_) => "not_json",
            FetchError::Protocol(_) => "protocol",
            FetchError::Discovery(_) => "discovery",
        }
    }

    fn message(&self) -> String {
        match self {
            FetchError::BadUrl { url, why } => format!("bad URL '{url}': {why}"),
            FetchError::NotHttps { url } => format!("refused '{url}': only https is allowed"),
            FetchError::RedirectNotHttps { to } => {
                format!("refused a redirect to '{to}': only https is allowed")
            }
            FetchError::TooManyRedirects => format!("more than {MAX_REDIRECTS} redirects"),
            FetchError::CaFile { path, why } => format!("CA file '{path}': {why}"),
            FetchError::NoSystemRoots => "the system trust store has no usable CA certificate \
                                          (set jwtdeny.jwks-ca-file)"
                .to_string(),
            FetchError::Connect(why) => format!("connection failed: {why}"),
            FetchError::Tls(why) => format!("TLS failed: {why}"),
            FetchError::Timeout(t) => format!("no complete answer within {} ms", t.as_millis()),
            FetchError::Status(code) => {
                // The reason phrase is the standard one, never the server's own text.
                let reason = ureq::http::StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                format!("HTTP status {code} {reason}")
                    .trim_end()
                    .to_string()
            }
            FetchError::TooLarge(limit) => format!("body larger than {limit} bytes"),
            FetchError::NotJson(why) => format!("body is not JSON: {why}"),
            FetchError::Protocol(why) => format!("bad HTTP response: {why}"),
            FetchError::Discovery(why) => format!("discovery: {why}"),
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.message();
        // All ASCII by construction, so any byte index is a char boundary.
        if text.len() > MAX_MESSAGE {
            text.truncate(MAX_MESSAGE - 3);
            text.push_str("...");
        }
        f.write_str(&text)
    }
}

impl std::error::Error for FetchError {}

/// `url` without userinfo, query or fragment, escaped for a log line: the form in which a URL
/// is ever shown. Text that is not a URL is escaped and capped all the same.
pub fn redact_url(url: &str) -> String {
    let without_tail = url.split(['?', '#']).next().unwrap_or("");
    let redacted = match without_tail.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            let host = authority.rsplit('@').next().unwrap_or("");
            format!("{scheme}://{host}{path}")
        }
        None => without_tail.to_string(),
    };
    Quoted::new(&redacted).0
}

/// Checks that `url` may be fetched: an absolute `https` URL with a host, of sane length.
pub fn check_url(url: &str) -> Result<Uri, FetchError> {
    let bad = |why| FetchError::BadUrl {
        url: Quoted::url(url),
        why,
    };
    if url.is_empty() {
        return Err(bad("empty"));
    }
    if url.len() > MAX_URL {
        return Err(bad("too long"));
    }
    // http::Uri would silently drop a fragment; a fragment in a fetch URL is a mistake.
    if url.contains('#') {
        return Err(bad("has a fragment"));
    }
    // The scheme first (RFC 3986 §3.1), so that `file:` or `http:` is named as such even where
    // it would not parse as an HTTP URI.
    let scheme = url.split_once(':').map(|(s, _)| s).filter(|s| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    match scheme {
        Some(s) if s.eq_ignore_ascii_case("https") => {}
        Some(_) => {
            return Err(FetchError::NotHttps {
                url: Quoted::url(url),
            })
        }
        None => return Err(bad("not absolute")),
    }
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

/// The discovery document's URL for `issuer` (OIDC Discovery 1.0 §4: one trailing `/` of the
/// issuer is removed before the well-known path is appended).
pub fn discovery_url(issuer: &str) -> Result<String, FetchError> {
    let bad = |why| FetchError::BadUrl {
        url: Quoted::url(issuer),
        why,
    };
    // An issuer is an https URL without query or fragment (OIDC Core §2).
    if issuer.contains(['?', '#']) {
        return Err(bad("an issuer has no query or fragment"));
    }
    check_url(issuer)?;
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    let url = format!("{base}{DISCOVERY_PATH}");
    check_url(&url)?;
    Ok(url)
}

/// The freshness a response grants (RFC 9111 §4.2): `max-age` less `Age`.
///
/// Decisions: the smallest valid `max-age` across all `Cache-Control` values wins; a malformed
/// one is ignored; `s-maxage` is for shared caches and ignored; `no-store`, `no-cache` and
/// `must-revalidate` give no hint (None), because the keys must be kept in any case and the
/// refresh period is then the operator's `jwks-refresh`; `Expires` is not read.
pub fn max_age<'a>(
    cache_control: impl IntoIterator<Item = &'a [u8]>,
    age: Option<&[u8]>,
) -> Option<Duration> {
    let mut best: Option<u64> = None;
    for value in cache_control {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for directive in value.split(',') {
            let Some((name, arg)) = directive.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("max-age") {
                continue;
            }
            let arg = arg.trim();
            let arg = arg
                .strip_prefix('"')
                .and_then(|a| a.strip_suffix('"'))
                .unwrap_or(arg);
            if let Some(secs) = delta_seconds(arg) {
                best = Some(best.map_or(secs, |b| b.min(secs)));
            }
        }
    }
    let age = age
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| delta_seconds(a.trim()))
        .unwrap_or(0);
    best.map(|secs| Duration::from_secs(secs.saturating_sub(age)))
}

/// RFC 9111 §1.2.2 delta-seconds: digits only; too large a value saturates.
fn delta_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// A client for one fetch round: the trust store is read once per round, so a changed CA file
/// or system store takes effect at the next round without a restart.
pub struct Client {
    agent: Agent,
    cfg: FetchConfig,
}

impl Client {
    pub fn new(cfg: &FetchConfig) -> Result<Client, FetchError> {
        let roots = match &cfg.ca_file {
            Some(path) => ca_file_roots(path)?,
            None => system_roots()?,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = Agent::config_builder()
            .https_only(true)
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .max_redirects_will_error(true)
            .proxy(None)
            .user_agent(concat!("jwtdeny/", env!("CARGO_PKG_VERSION")))
            .accept("application/json, application/jwk-set+json")
            .max_response_header_size(32 * 1024)
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Client {
            agent,
            cfg: cfg.clone(),
        })
    }

    /// GETs `url`, which must be JSON, before `deadline`.
    pub fn get_json(&self, url: &str, deadline: Instant) -> Result<Fetched, FetchError> {
        check_url(url)?;
        let timeout = self.cfg.timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FetchError::Timeout(timeout));
        }
        let mut response = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(left))
            .build()
            .call()
            .map_err(|e| from_ureq(e, timeout))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FetchError::Status(status));
        }
        let headers = response.headers();
        let max_age = max_age(
            headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .map(|v| v.as_bytes()),
            headers.get(header::AGE).map(|v| v.as_bytes()),
        );
        let final_url = redact_url(&ureq::ResponseExt::get_uri(&response).to_string());
        let limit = self.cfg.max_body;
        // Refuse a declared oversize at once rather than reading the first megabyte of it.
        if response
            .body()
            .content_length()
            .is_some_and(|n| n > limit as u64)
        {
            return Err(FetchError::TooLarge(limit));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(limit as u64)
            .read_to_vec()
            .map_err(|e| from_ureq(e, timeout))?;
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return Err(FetchError::NotJson(Quoted::new(&e.to_string())));
        }
        Ok(Fetched {
            body,
            max_age,
            final_url,
        })
    }

    /// Reads `issuer`'s discovery document and returns its `jwks_uri`.
    pub fn discover(&self, issuer: &str, deadline: Instant) -> Result<String, FetchError> {
        self.discover_for(issuer, deadline).map(|(uri, _)| uri)
    }

    /// [`Client::discover`], with how long the document may be used (its `max-age`).
    fn discover_for(
        &self,
        issuer: &str,
        deadline: Instant,
    ) -> Result<(String, Option<Duration>), FetchError> {
        #[derive(serde::Deserialize)]
        struct Document {
            issuer: Option<serde_json::Value>,
            jwks_uri: Option<serde_json::Value>,
        }
        let url = discovery_url(issuer)?;
        let fetched = self.get_json(&url, deadline)?;
        let max_age = fetched.max_age;
        let doc: Document = serde_json::from_slice(&fetched.body)
            .map_err(|_| FetchError::Discovery(Quoted::new("the document is not a JSON object")))?;
        let found = doc.issuer.as_ref().and_then(|v| v.as_str());
        if found != Some(issuer) {
            let found = match found {
                Some(s) => format!("'{}'", Quoted::new(s)),
                None => "none".to_string(),
            };
            return Err(FetchError::Discovery(Quoted(format!(
                "the document's issuer is {found}, not the configured one"
            ))));
        }
        let Some(jwks_uri) = doc.jwks_uri.as_ref().and_then(|v| v.as_str()) else {
            return Err(FetchError::Discovery(Quoted::new(
                "the document has no jwks_uri string",
            )));
        };
        check_url(jwks_uri)?;
        Ok((jwks_uri.to_string(), max_age))
    }
}

/// A `jwks_uri` found by discovery, and until when its document may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub jwks_uri: String,
    pub until: Instant,
}

/// Interrupts the requests of the [`Client`] it came from, from any thread: a read or write
/// under way fails at once instead of waiting for the server or the timeout (name resolution
/// and a TCP connect under way are not interrupted; they end within the timeout).
pub struct Canceller(Agent);

impl Canceller {
    pub fn cancel(self) {
        self.0.shutdown();
    }
}

impl Client {
    /// What interrupts this client's requests from another thread.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.agent.clone())
    }

    /// One fetch round of a source: discovery first if configured, all within the timeout.
    pub fn fetch_jwks(&self, source: &Source) -> Result<Fetched, FetchError> {
        self.fetch_jwks_with(source, &mut None, Duration::ZERO)
    }

    /// [`Client::fetch_jwks`], reusing a discovered `jwks_uri` while its document may be used:
    /// for its own `Cache-Control: max-age`, or `keep` when it gives none. A JWKS fetch that
    /// fails forgets it, so a `jwks_uri` that moved is discovered again on the next round.
    pub fn fetch_jwks_with(
        &self,
        source: &Source,
        discovered: &mut Option<Discovered>,
        keep: Duration,
    ) -> Result<Fetched, FetchError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let issuer = match source {
            Source::Uri(url) => return self.get_json(url, deadline),
            Source::Discovery { issuer } => issuer,
        };
        let now = Instant::now();
        let cached = discovered
            .as_ref()
            .filter(|d| d.until > now)
            .map(|d| d.jwks_uri.clone());
        let url = match cached {
            Some(url) => url,
            None => {
                let (url, max_age) = self.discover_for(issuer, deadline)?;
                *discovered = Some(Discovered {
                    jwks_uri: url.clone(),
                    // Never longer than `keep` (jwks-refresh): a provider's max-age only
                    // shortens it, and a huge one can neither overflow the clock nor pin a URL.
                    until: now + max_age.map_or(keep, |m| m.min(keep)),
                });
                url
            }
        };
        let fetched = self.get_json(&url, deadline);
        if fetched.is_err() {
            *discovered = None;
        }
        fetched
    }
}

/// GETs `url`, which must be JSON, within `cfg.timeout`.
pub fn get_json(url: &str, cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    let deadline = Instant::now() + cfg.timeout;
    Client::new(cfg)?.get_json(url, deadline)
}

/// Reads `issuer`'s discovery document within `cfg.timeout` and returns its `jwks_uri`.
pub fn discover(issuer: &str, cfg: &FetchConfig) -> Result<String, FetchError> {
    let deadline = Instant::now() + cfg.timeout;
    Client::new(cfg)?.discover(issuer, deadline)
}

/// One fetch round of a source: discovery first if configured, all within `cfg.timeout`.
pub fn fetch_jwks(source: &Source, cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    Client::new(cfg)?.fetch_jwks(source)
}

fn ca_file_roots(path: &Path) -> Result<Vec<Certificate<'static>>, FetchError> {
    let fail = |why: &str| FetchError::CaFile {
        path: Quoted::new(&path.to_string_lossy()),
        why: Quoted::new(why),
    };
    // The keys file's reader: bounded, and never blocked by a FIFO or a device.
    let pem = crate::keys::read_regular_file(&path.to_string_lossy(), MAX_CA_FILE)
        .map_err(|e| fail(&e))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(_) => return Err(fail("not valid PEM")),
        }
    }
    // ureq skips certificates the TLS library cannot parse: count what it would keep.
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs.iter().map(|c| c.der().to_vec().into()));
    if added == 0 {
        return Err(fail("no usable CA certificate in it"));
    }
    Ok(certs)
}

fn system_roots() -> Result<Vec<Certificate<'static>>, FetchError> {
    // Errors of single files in a directory store are not fatal as long as some roots load.
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<_> = found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if certs.is_empty() {
        return Err(FetchError::NoSystemRoots);
    }
    Ok(certs)
}

/// Maps ureq's errors to ours. ureq's own messages may quote a server's `Location` header or a
/// whole URL (query and userinfo included), so they are never shown unescaped or unredacted.
fn from_ureq(e: ureq::Error, timeout: Duration) -> FetchError {
    use ureq::Error as E;
    match e {
        E::Timeout(_) => FetchError::Timeout(timeout),
        E::RequireHttpsOnly(to) => FetchError::RedirectNotHttps {
            to: Quoted::url(&to),
        },
        E::TooManyRedirects => FetchError::TooManyRedirects,
        E::BodyExceedsLimit(n) => FetchError::TooLarge(usize::try_from(n).unwrap_or(usize::MAX)),
        E::HostNotFound => FetchError::Connect(Quoted::new("host not found")),
        E::ConnectionFailed => FetchError::Connect(Quoted::new("no address could be reached")),
        E::Rustls(e) => FetchError::Tls(Quoted::new(&e.to_string())),
        E::Tls(why) => FetchError::Tls(Quoted::new(why)),
        E::LargeResponseHeader(..) => FetchError::Protocol(Quoted::new("headers too large")),
        E::Io(e) => from_io(&e, timeout),
        E::BadUri(_) => FetchError::Protocol(Quoted::new("a redirect to an invalid URL")),
        E::Protocol(e) => {
            // Some of these end in a header's value ("location header is malformed: <value>"),
            // and a Location may carry a URL's credentials: only the fixed part is shown, except
            // for httparse's reasons, which are fixed text.
            let text = e.to_string();
            let shown = match text.split_once(": ") {
                Some((head, _)) if head != "http parse fail" => head,
                _ => &text,
            };
            FetchError::Protocol(Quoted::new(shown))
        }
        other => FetchError::Protocol(Quoted::new(&other.to_string())),
    }
}

fn from_io(e: &std::io::Error, timeout: Duration) -> FetchError {
    use std::io::ErrorKind;
    // rustls reports handshake and certificate failures as io errors wrapping its own.
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return FetchError::Tls(Quoted::new(&tls.to_string()));
    }
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => FetchError::Timeout(timeout),
        kind => FetchError::Connect(Quoted::new(&kind.to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// When to fetch: the per-source state machine, pure logic on a monotonic clock.

/// A shorter `Cache-Control: max-age` is honoured down to this.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(30);
/// The first retry after a failure; each further failure doubles it.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The configured periods (`jwtdeny.jwks-refresh`, `jwtdeny.jwks-cooldown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub refresh: Duration,
    pub cooldown: Duration,
}

/// Why a fetch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Start-up, refresh, or retry after a failure.
    Scheduled,
    /// A token named a `kid` that is not loaded.
    UnknownKid,
    /// `JWTDENY.KEYS RELOAD`, or a `CONFIG SET` that changes the source.
    Operator,
}

/// What a caller that wants fresh keys should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A fetch starts now on the caller's behalf: wake the fetch thread, wait for it.
    Start,
    /// A fetch is already running: wait for that one.
    Join,
    /// An unknown `kid` within the cooldown: the fetch it asks for runs when the cooldown ends,
    /// at this instant (wake the fetch thread so that it knows). A caller that must not lose
    /// its command waits for it; others answer at once.
    Deferred(Instant),
    /// No fetch for this request (a scheduled fetch that is not due yet).
    Refuse,
}

/// When a source fetches next, and whether a fetch is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    next: Instant,
    failures: u32,
    in_flight: Option<Trigger>,
    /// When the running fetch started.
    started: Option<Instant>,
    last_unknown_kid: Option<Instant>,
    /// An unknown-kid fetch asked for within the cooldown, due when the cooldown ends: the
    /// fetch rate stays bounded by the cooldown, and no such request is dropped.
    deferred: Option<Instant>,
}

impl Schedule {
    /// A new source fetches at once (module load, or a source changed at runtime).
    pub fn new(now: Instant) -> Schedule {
        Schedule {
            next: now,
            failures: 0,
            in_flight: None,
            started: None,
            last_unknown_kid: None,
            deferred: None,
        }
    }

    /// When the next scheduled fetch is due (it may be in the past while one runs).
    pub fn next_fetch(&self) -> Instant {
        self.next
    }

    /// When the fetch thread must look again: the next scheduled fetch, or a deferred
    /// unknown-kid fetch if that comes first.
    pub fn wake_at(&self) -> Instant {
        self.deferred.map_or(self.next, |d| d.min(self.next))
    }

    /// Consecutive failed fetches.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn in_flight(&self) -> Option<Trigger> {
        self.in_flight
    }

    /// When the running fetch started, if one runs.
    pub fn started(&self) -> Option<Instant> {
        self.in_flight.and(self.started)
    }

    /// Asks for a fetch; on `Start` the fetch counts as running until [`Schedule::succeeded`]
    /// or [`Schedule::failed`]. Concurrent callers get `Join`, so they share that one fetch.
    pub fn request(&mut self, trigger: Trigger, now: Instant, policy: &Periods) -> Decision {
        if self.in_flight.is_some() {
            return Decision::Join;
        }
        match trigger {
            Trigger::Scheduled if now < self.next => return Decision::Refuse,
            Trigger::UnknownKid => {
                if let Some(allowed) = self.cooldown_end(policy).filter(|t| now < *t) {
                    let at = self.deferred.map_or(allowed, |d| d.min(allowed));
                    self.deferred = Some(at);
                    return Decision::Deferred(at);
                }
                self.last_unknown_kid = Some(now);
                self.deferred = None;
            }
            Trigger::Scheduled | Trigger::Operator => {}
        }
        self.in_flight = Some(trigger);
        self.started = Some(now);
        Decision::Start
    }

    /// The end of the cooldown of the last unknown-kid fetch, if there was one.
    fn cooldown_end(&self, policy: &Periods) -> Option<Instant> {
        self.last_unknown_kid.map(|t| t + policy.cooldown)
    }

    /// Shorthand for a token whose `kid` is not loaded.
    pub fn unknown_kid(&mut self, now: Instant, policy: &Periods) -> Decision {
        self.request(Trigger::UnknownKid, now, policy)
    }

    /// For the fetch thread: starts the fetch that is due at `now`, if any (a deferred
    /// unknown-kid fetch first), and says why it runs.
    pub fn due(&mut self, now: Instant, policy: &Periods) -> Option<Trigger> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.deferred.is_some_and(|d| now >= d)
            && self.request(Trigger::UnknownKid, now, policy) == Decision::Start
        {
            return Some(Trigger::UnknownKid);
        }
        (self.request(Trigger::Scheduled, now, policy) == Decision::Start)
            .then_some(Trigger::Scheduled)
    }

    /// Asks for one more unknown-kid fetch, as soon as the cooldown allows, for callers that
    /// arrived after the fetch that just ended had started (it may have missed their key).
    /// Returns when it is due.
    pub fn follow_up(&mut self, now: Instant, policy: &Periods) -> Instant {
        let at = self.cooldown_end(policy).map_or(now, |t| t.max(now));
        let at = self.deferred.map_or(at, |d| d.min(at));
        self.deferred = Some(at);
        at
    }

    /// The running fetch succeeded at `now`; the response allowed caching for `max_age`.
    pub fn succeeded(&mut self, now: Instant, max_age: Option<Duration>, policy: &Periods) {
        self.in_flight = None;
        self.failures = 0;
        // max-age only ever shortens the period, and never below the floor (unless the
        // operator's own period is shorter still).
        let period = max_age.map_or(policy.refresh, |m| m.max(MIN_MAX_AGE).min(policy.refresh));
        self.next = now + period;
    }

    /// The running fetch failed at `now`: retry after 1 s, 2 s, 4 s, …, never later than
    /// `jwks-refresh`, so a recovered provider is seen at least as soon as a refresh would.
    pub fn failed(&mut self, now: Instant, policy: &Periods) {
        self.in_flight = None;
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(20);
        let backoff = FIRST_RETRY.saturating_mul(1 << doublings);
        self.next = now + backoff.min(policy.refresh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_userinfo_query_fragment() {
        let cases = [
            (
                "https://user:pw@idp.example/jwks?token=s3cret#x",
                "https://idp.example/jwks",
            ),
            (
                "https://idp.example:8443/a/b",
                "https://idp.example:8443/a/b",
            ),
            ("https://a@b@idp.example/k", "https://idp.example/k"),
            ("https://idp.example?x=1", "https://idp.example"),
            ("https://u:p@idp.example", "https://idp.example"),
            // The '@' after the authority is path, not userinfo.
            ("https://idp.example/a@b", "https://idp.example/a@b"),
            ("not a url?secret", "not a url"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    #[test]
    fn redact_escapes_and_caps() {
        let out = redact_url("https://idp.example/%n%s/\u{e9}\n\\");
        assert_eq!(out, "https://idp.example/\\x25n\\x25s/\\xc3\\xa9\\x0a\\x5c");
        let long = format!("https://idp.example/{}", "a".repeat(5000));
        let out = redact_url(&long);
        assert!(out.len() <= MAX_QUOTED + 3 && out.ends_with("..."), "{out}");
    }

    #[test]
    fn quoted_never_splits_an_escape() {
        let q = Quoted::new(&"\u{1}".repeat(100));
        assert!(q.as_str().ends_with("\\x01..."), "{q}");
        assert!(q.as_str().len() <= MAX_QUOTED + 3);
    }

    #[test]
    fn urls_must_be_https_with_a_host() {
        for ok in [
            "https://idp.example/.well-known/jwks.json",
            "HTTPS://idp.example/jwks",
            "https://127.0.0.1:8443/jwks",
            "https://[::1]:8443/jwks",
            "https://user:pw@idp.example/jwks?x=1",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        let code = |u: &str| check_url(u).map(|_| ()).map_err(|e| e.code());
        assert_eq!(code("http://idp.example/jwks"), Err("not_https"));
        assert_eq!(code("ftp://idp.example/jwks"), Err("not_https"));
        assert_eq!(code("file:///etc/passwd"), Err("not_https"));
        assert_eq!(code(""), Err("bad_url"));
        assert_eq!(code("idp.example/jwks"), Err("bad_url"));
        assert_eq!(code("/jwks"), Err("bad_url"));
        assert_eq!(code("https://"), Err("bad_url"));
        assert_eq!(code("https:///jwks"), Err("bad_url"));
        assert_eq!(code("https://idp.example/jwks#frag"), Err("bad_url"));
        assert_eq!(code("https://idp example/jwks"), Err("bad_url"));
        assert_eq!(code("https://idp.example/\njwks"), Err("bad_url"));
        assert_eq!(
            code(&format!("https://a/{}", "x".repeat(MAX_URL))),
            Err("bad_url")
        );
    }

    #[test]
    fn url_errors_are_redacted() {
        let e = check_url("http://user:pw@idp.example/jwks?token=s3cret").unwrap_err();
        let text = e.to_string();
        assert_eq!(
            text,
            "refused 'http://idp.example/jwks': only https is allowed"
        );
        // Escaped once, not twice.
        let e = check_url("http://idp.example/%n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "refused 'http://idp.example/\\x25n': only https is allowed"
        );
    }

    #[test]
    fn discovery_url_strips_one_trailing_slash() {
        let cases = [
            (
                "https://idp.example",
                "https://idp.example/.well-known/openid-configuration",
            ),
            (
                "https://idp.example/",
                "https://idp.example/.well-known/openid-configuration",
            ),
            (
                "https://kc.example/realms/acme",
                "https://kc.example/realms/acme/.well-known/openid-configuration",
            ),
            (
                "https://kc.example/realms/acme/",
                "https://kc.example/realms/acme/.well-known/openid-configuration",
            ),
        ];
        for (issuer, want) in cases {
            assert_eq!(discovery_url(issuer).as_deref(), Ok(want), "{issuer}");
        }
        let code = |u: &str| discovery_url(u).map_err(|e| e.code());
        assert_eq!(code("http://idp.example"), Err("not_https"));
        assert_eq!(code("https://idp.example?x=1"), Err("bad_url"));
        assert_eq!(code("https://idp.example#x"), Err("bad_url"));
        assert_eq!(code("idp.example"), Err("bad_url"));
    }

    fn age(cc: &[&str], age_hdr: Option<&str>) -> Option<u64> {
        max_age(cc.iter().map(|s| s.as_bytes()), age_hdr.map(str::as_bytes)).map(|d| d.as_secs())
    }

    #[test]
    fn max_age_parsing() {
        assert_eq!(age(&[], None), None);
        assert_eq!(age(&["max-age=300"], None), Some(300));
        assert_eq!(
            age(&["public, max-age=19845, must-revalidate"], None),
            Some(19845)
        );
        assert_eq!(age(&["MAX-AGE = 60"], None), Some(60));
        assert_eq!(age(&["max-age=\"120\""], None), Some(120));
        assert_eq!(age(&["max-age=0"], None), Some(0));
        // The smallest of several wins, across header lines too.
        assert_eq!(age(&["max-age=600, max-age=60"], None), Some(60));
        assert_eq!(age(&["max-age=600", "max-age=90"], None), Some(90));
        // Malformed values are ignored, not read as 0.
        assert_eq!(age(&["max-age=-5"], None), None);
        assert_eq!(age(&["max-age=1e3"], None), None);
        assert_eq!(age(&["max-age="], None), None);
        assert_eq!(age(&["max-age=abc, max-age=45"], None), Some(45));
        // Saturates instead of failing.
        assert_eq!(
            age(&["max-age=99999999999999999999999"], None),
            Some(u64::MAX)
        );
        // No hint from these.
        assert_eq!(age(&["no-store"], None), None);
        assert_eq!(age(&["no-cache, must-revalidate"], None), None);
        assert_eq!(age(&["s-maxage=60"], None), None);
        assert_eq!(age(&["private"], None), None);
        // Age is subtracted, down to zero.
        assert_eq!(age(&["max-age=300"], Some("100")), Some(200));
        assert_eq!(age(&["max-age=300"], Some("900")), Some(0));
        assert_eq!(age(&["max-age=300"], Some("bogus")), Some(300));
        // Not UTF-8: that value is skipped.
        assert_eq!(
            max_age([&b"max-age=\xff"[..], b"max-age=70"], None),
            Some(Duration::from_secs(70))
        );
    }

    #[test]
    fn status_errors_use_the_standard_reason() {
        assert_eq!(
            FetchError::Status(500).to_string(),
            "HTTP status 500 Internal Server Error"
        );
        assert_eq!(FetchError::Status(599).to_string(), "HTTP status 599");
    }

    #[test]
    fn display_is_capped() {
        let e = FetchError::CaFile {
            path: Quoted::new(&"p".repeat(500)),
            why: Quoted::new(&"w".repeat(500)),
        };
        let text = e.to_string();
        assert!(text.len() <= MAX_MESSAGE, "{}", text.len());
        assert!(text.bytes().all(is_plain), "{text}");
    }

    const POLICY: Periods = Periods {
        refresh: Duration::from_secs(300),
        cooldown: Duration::from_secs(30),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn first_fetch_is_due_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.request(Trigger::Scheduled, t0, &POLICY), Decision::Start);
        assert_eq!(s.in_flight(), Some(Trigger::Scheduled));
    }

    #[test]
    fn next_fetch_after_success() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        let run = |s: &mut Schedule, max_age: Option<u64>, policy: &Periods| {
            assert_eq!(s.request(Trigger::Operator, t0, policy), Decision::Start);
            s.succeeded(t0, max_age.map(secs), policy);
            s.next_fetch() - t0
        };
        assert_eq!(run(&mut s, None, &POLICY), secs(300));
        assert_eq!(run(&mut s, Some(120), &POLICY), secs(120));
        // Longer max-age does not stretch the operator's period; shorter stops at 30 s.
        assert_eq!(run(&mut s, Some(86_400), &POLICY), secs(300));
        assert_eq!(run(&mut s, Some(5), &POLICY), secs(30));
        assert_eq!(run(&mut s, Some(0), &POLICY), secs(30));
        // With a period below the floor, the period rules.
        let fast = Periods {
            refresh: secs(10),
            ..POLICY
        };
        assert_eq!(run(&mut s, Some(5), &fast), secs(10));
        assert_eq!(run(&mut s, None, &fast), secs(10));
    }

    #[test]
    fn not_due_before_next_fetch() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.request(Trigger::Scheduled, t0, &POLICY), Decision::Start);
        s.succeeded(t0, None, &POLICY);
        assert_eq!(
            s.request(Trigger::Scheduled, t0 + secs(299), &POLICY),
            Decision::Refuse
        );
        assert_eq!(
            s.request(Trigger::Scheduled, t0 + secs(300), &POLICY),
            Decision::Start
        );
    }

    #[test]
    fn backoff_after_failures() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        let mut waits = Vec::new();
        for _ in 0..12 {
            assert_eq!(
                s.request(Trigger::Scheduled, s.next_fetch(), &POLICY),
                Decision::Start
            );
            let now = s.next_fetch();
            s.failed(now, &POLICY);
            waits.push((s.next_fetch() - now).as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(s.failures(), 12);
        // Success resets the backoff.
        assert_eq!(s.request(Trigger::Operator, t0, &POLICY), Decision::Start);
        s.succeeded(t0, None, &POLICY);
        assert_eq!(s.failures(), 0);
        assert_eq!(s.request(Trigger::Operator, t0, &POLICY), Decision::Start);
        s.failed(t0, &POLICY);
        assert_eq!(s.next_fetch() - t0, secs(1));
        // Capped by a short refresh period.
        let fast = Periods {
            refresh: secs(10),
            ..POLICY
        };
        for _ in 0..5 {
            assert_eq!(s.request(Trigger::Operator, t0, &fast), Decision::Start);
            s.failed(t0, &fast);
        }
        assert_eq!(s.next_fetch() - t0, secs(10));
        // Many failures neither overflow nor panic.
        for _ in 0..100 {
            assert_eq!(s.request(Trigger::Operator, t0, &POLICY), Decision::Start);
            s.failed(t0, &POLICY);
        }
        assert_eq!(s.next_fetch() - t0, secs(300));
    }

    #[test]
    fn concurrent_requests_share_one_fetch() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.unknown_kid(t0, &POLICY), Decision::Start);
        for trigger in [Trigger::UnknownKid, Trigger::Scheduled, Trigger::Operator] {
            assert_eq!(s.request(trigger, t0, &POLICY), Decision::Join);
        }
        s.succeeded(t0 + secs(1), None, &POLICY);
        assert_eq!(s.in_flight(), None);
    }

    #[test]
    fn unknown_kid_cooldown() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        // The start-up fetch does not count against the cooldown.
        assert_eq!(s.request(Trigger::Scheduled, t0, &POLICY), Decision::Start);
        s.succeeded(t0, None, &POLICY);
        assert_eq!(s.unknown_kid(t0 + secs(1), &POLICY), Decision::Start);
        s.succeeded(t0 + secs(2), None, &POLICY);
        // A flood within the cooldown fetches nothing, however it ended.
        for n in 2..31 {
            assert_eq!(
                s.unknown_kid(t0 + secs(n), &POLICY),
                Decision::Deferred(t0 + secs(31)),
                "{n}"
            );
        }
        assert_eq!(s.unknown_kid(t0 + secs(31), &POLICY), Decision::Start);
        s.failed(t0 + secs(32), &POLICY);
        assert_eq!(
            s.unknown_kid(t0 + secs(40), &POLICY),
            Decision::Deferred(t0 + secs(61))
        );
        // An operator's reload is not held back by the cooldown, and does not reset it.
        assert_eq!(
            s.request(Trigger::Operator, t0 + secs(41), &POLICY),
            Decision::Start
        );
        s.succeeded(t0 + secs(41), None, &POLICY);
        assert_eq!(s.unknown_kid(t0 + secs(61), &POLICY), Decision::Start);
    }

    #[test]
    fn an_unknown_kid_within_the_cooldown_is_fetched_when_it_ends() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.due(t0, &POLICY), Some(Trigger::Scheduled));
        s.succeeded(t0, None, &POLICY);
        assert_eq!(s.unknown_kid(t0 + secs(1), &POLICY), Decision::Start);
        s.succeeded(t0 + secs(2), None, &POLICY);
        assert_eq!(s.wake_at(), t0 + secs(302));
        // Asked for within the cooldown: one fetch, when the cooldown ends, however many ask.
        for n in 3..20 {
            assert_eq!(
                s.unknown_kid(t0 + secs(n), &POLICY),
                Decision::Deferred(t0 + secs(31))
            );
        }
        assert_eq!(s.wake_at(), t0 + secs(31));
        assert_eq!(s.due(t0 + secs(30), &POLICY), None);
        assert_eq!(s.due(t0 + secs(31), &POLICY), Some(Trigger::UnknownKid));
        assert_eq!(s.started(), Some(t0 + secs(31)));
        s.succeeded(t0 + secs(32), None, &POLICY);
        // That fetch counts against the cooldown like any other unknown-kid fetch.
        assert_eq!(s.wake_at(), t0 + secs(332));
        assert_eq!(
            s.unknown_kid(t0 + secs(33), &POLICY),
            Decision::Deferred(t0 + secs(61))
        );
    }

    #[test]
    fn a_follow_up_fetch_keeps_to_the_cooldown() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.due(t0, &POLICY), Some(Trigger::Scheduled));
        // No unknown-kid fetch yet: the follow-up is due at once.
        assert_eq!(s.request(Trigger::UnknownKid, t0, &POLICY), Decision::Join);
        s.succeeded(t0 + secs(1), None, &POLICY);
        assert_eq!(s.follow_up(t0 + secs(1), &POLICY), t0 + secs(1));
        assert_eq!(s.due(t0 + secs(1), &POLICY), Some(Trigger::UnknownKid));
        s.succeeded(t0 + secs(2), None, &POLICY);
        // After one, the next waits for the cooldown.
        assert_eq!(s.follow_up(t0 + secs(2), &POLICY), t0 + secs(31));
        assert_eq!(s.due(t0 + secs(30), &POLICY), None);
        assert_eq!(s.due(t0 + secs(31), &POLICY), Some(Trigger::UnknownKid));
    }
}
