//! Module configs (`jwtdeny.<name>`): one declarative table, and the parsed [`Settings`].
//!
//! A leaf: nothing here calls into the rest of the module. Each row of [`SPECS`] holds a config's
//! name, type, default, bounds, flags, how it reads and writes [`Settings`], and the [`Effect`]
//! a change has; `state` registers the rows with Redis and dispatches the effects. Adding a
//! config is a field of `Settings` and a row of the table.

use jwtdeny_core::dpop::{Nonces, ProofPolicy};
use jwtdeny_core::error::quote;
use jwtdeny_core::keys::{alg_name, AlgSet, ALGORITHMS as ALL_ALGORITHMS};
use jwtdeny_core::token::Policy;

/// The current value of every config, parsed.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub keys_file: String,
    /// `None`: every algorithm the loaded keys can serve.
    pub algorithms: Option<AlgSet>,
    pub issuer: String,
    pub audience: String,
    /// The `typ` an access token must have (`at+jwt`, RFC 9068); `""`: any but the types of
    /// other kinds of JWT.
    pub token_typ: String,
    /// The application's OIDC client id, which a logout token's `aud` must contain; `""`:
    /// JWTDENY.LOGOUT is refused.
    pub logout_audience: String,
    pub leeway: i64,
    pub prefix: String,
    /// The database the denylist lives in, whatever database a client has selected.
    pub db: i64,
    pub max_token_bytes: i64,
    /// 0: no limit on `exp - iat`, subject cutoffs never expire, and a session's end revokes its
    /// whole subject (no bound would let a session cutoff expire).
    pub max_lifetime: i64,
    pub verify_cache_size: i64,
    pub workers: i64,
    /// `https://` URL of the identity provider's JWKS; `""`: none.
    pub jwks_uri: String,
    /// Read the JWKS URL from the issuer's OIDC discovery document.
    pub discovery: bool,
    /// Seconds between two successful fetches at most.
    pub jwks_refresh: i64,
    /// Seconds between two fetches triggered by unknown `kid`s at least.
    pub jwks_cooldown: i64,
    /// Milliseconds one fetch may take, connect to last byte.
    pub jwks_timeout: i64,
    /// PEM file of the CAs trusted for the fetch instead of the system's.
    pub jwks_ca_file: String,
    /// The algorithms a DPoP proof may be signed with: asymmetric ones only.
    pub dpop_algorithms: AlgSet,
    /// Seconds a DPoP proof's `iat` may be from now (either way, plus leeway); also the step
    /// of server nonces.
    pub dpop_window: i64,
    /// CHECKDPOP requires a nonce jwtdeny issued (RFC 9449 §9).
    pub dpop_nonce: bool,
    /// The secret nonces are derived from; `""`: one drawn at random when the module loads.
    pub dpop_nonce_secret: String,
    /// The issuer registry (`jwtdeny_core::issuers`); `""`: the default issuer only.
    pub issuers_file: String,
    /// An issuer of the registry's audiences, any one of which `aud` must contain (the default
    /// issuer has the one `audience`).
    pub audiences: Vec<String>,
    /// An issuer of the registry's Cognito app clients (`client_id` in place of `aud`).
    pub client_ids: Vec<String>,
}

impl Settings {
    /// Every config at its default.
    pub fn defaults() -> Settings {
        let mut s = Settings::default();
        for spec in &SPECS {
            // The table's own defaults are valid by construction (a unit test holds them to it).
            let _ = spec.set(&mut s, &spec.default_text());
        }
        s
    }

    /// What a DPoP proof is judged by; `nonces` is built from [`Settings::dpop_nonce_secret`]
    /// by the caller when [`Settings::dpop_nonce`] is on.
    pub fn proof_policy<'a>(&self, nonces: Option<&'a Nonces>) -> ProofPolicy<'a> {
        ProofPolicy {
            algorithms: self.dpop_algorithms,
            window: self.dpop_window,
            leeway: self.leeway,
            max_bytes: usize::try_from(self.max_token_bytes).unwrap_or(0),
            nonces,
        }
    }

    pub fn policy(&self) -> Policy<'_> {
        Policy {
            algorithms: self.algorithms.unwrap_or(AlgSet::ALL),
            issuer: non_empty(&self.issuer),
            audience: non_empty(&self.audience),
            typ: non_empty(&self.token_typ),
            max_token_bytes: usize::try_from(self.max_token_bytes).unwrap_or(0),
            max_lifetime: (self.max_lifetime > 0).then_some(self.max_lifetime),
            audiences: &self.audiences,
            client_ids: &self.client_ids,
            tenant: None,
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// What must happen, besides the new value being in force, when a config changes at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Judged afresh on every command (or fixed at load): nothing to do.
    None,
    /// Changes how tokens are judged: verifications cached under the old rules are dropped.
    ClearCache,
    /// The verification cache's capacity.
    ResizeCache,
    /// The worker pool's size.
    ResizeWorkers,
    /// Where keys come from: load them, and refuse the change if they cannot be loaded.
    LoadKeys,
    /// The issuer registry: load it, and refuse the change if it cannot be loaded.
    LoadIssuers,
    /// How keys are fetched from the identity provider: the fetcher takes the new settings.
    Source,
}

/// A config's type, default and bounds, and how it reads and writes [`Settings`].
pub enum Kind {
    Int {
        default: i64,
        min: i64,
        max: i64,
        get: fn(&Settings) -> i64,
        set: fn(&mut Settings, i64),
    },
    Text {
        default: &'static str,
        get: fn(&Settings) -> String,
        /// Validates and stores; the error says what is wrong with the value.
        set: fn(&mut Settings, &str) -> Result<(), String>,
    },
    Bool {
        default: bool,
        get: fn(&Settings) -> bool,
        set: fn(&mut Settings, bool),
    },
}

pub struct Spec {
    /// The name without the `jwtdeny.` module prefix.
    pub name: &'static str,
    pub kind: Kind,
    /// Settable at load time only (redis.conf, module arguments, `MODULE LOADEX`).
    pub immutable: bool,
    /// Its value is redacted from what the server logs of commands (SLOWLOG, MONITOR, the
    /// ACL log, a crash report's command): a URL may carry credentials in its userinfo or
    /// query, which INFO and jwtdeny's own log lines never show either.
    pub sensitive: bool,
    pub effect: Effect,
}

impl Spec {
    /// Parses, checks and stores `value`; the error names the config.
    pub fn set(&self, s: &mut Settings, value: &str) -> Result<(), String> {
        let refuse = |why: String| format!("jwtdeny.{}: {why}", self.name);
        match &self.kind {
            Kind::Int { min, max, set, .. } => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| refuse(format!("{} is not an integer", quote(value))))?;
                if !(*min..=*max).contains(&n) {
                    return Err(refuse(format!("{n} is outside {min}..={max}")));
                }
                set(s, n);
                Ok(())
            }
            Kind::Text { set, .. } => set(s, value).map_err(refuse),
            Kind::Bool { set, .. } => {
                let b = parse_bool(value)
                    .ok_or_else(|| refuse(format!("{} is not yes or no", quote(value))))?;
                set(s, b);
                Ok(())
            }
        }
    }

    /// The value `CONFIG GET` shows.
    pub fn get(&self, s: &Settings) -> String {
        match &self.kind {
            Kind::Int { get, .. } => get(s).to_string(),
            Kind::Text { get, .. } => get(s),
            Kind::Bool { get, .. } => if get(s) { "yes" } else { "no" }.to_string(),
        }
    }

    fn default_text(&self) -> String {
        match &self.kind {
            Kind::Int { default, .. } => default.to_string(),
            Kind::Text { default, .. } => (*default).to_string(),
            Kind::Bool { default, .. } => if *default { "yes" } else { "no" }.to_string(),
        }
    }
}

pub const DEFAULT_PREFIX: &str = "jwtdeny:";

/// Every config, in the order the README's config table lists them (`CONFIG GET jwtdeny.*`
/// lists them in the server's own hash order).
pub static SPECS: [Spec; 24] = [
    Spec {
        name: "keys-file",
        kind: Kind::Text {
            default: "",
            get: |s| s.keys_file.clone(),
            set: |s, v| {
                s.keys_file = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::LoadKeys,
    },
    Spec {
        name: "issuers-file",
        kind: Kind::Text {
            default: "",
            get: |s| s.issuers_file.clone(),
            set: |s, v| {
                s.issuers_file = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::LoadIssuers,
    },
    Spec {
        name: "algorithms",
        kind: Kind::Text {
            default: "",
            get: |s| {
                s.algorithms.map_or_else(String::new, |set| {
                    set.iter().map(alg_name).collect::<Vec<_>>().join(",")
                })
            },
            set: |s, v| {
                s.algorithms = parse_algorithms(v)?;
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "issuer",
        kind: Kind::Text {
            default: "",
            get: |s| s.issuer.clone(),
            set: |s, v| {
                s.issuer = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "audience",
        kind: Kind::Text {
            default: "",
            get: |s| s.audience.clone(),
            set: |s, v| {
                s.audience = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "token-typ",
        kind: Kind::Text {
            default: "",
            get: |s| s.token_typ.clone(),
            set: |s, v| {
                s.token_typ = parse_token_typ(v)?;
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "logout-audience",
        kind: Kind::Text {
            default: "",
            get: |s| s.logout_audience.clone(),
            set: |s, v| {
                s.logout_audience = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        // Logout tokens are judged afresh by every LOGOUT, never cached.
        effect: Effect::None,
    },
    Spec {
        name: "leeway",
        kind: Kind::Int {
            default: 0,
            min: 0,
            // An hour of clock skew is already far more than any sane deployment has.
            max: 3600,
            get: |s| s.leeway,
            set: |s, n| s.leeway = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::None, // judged on every command, never cached
    },
    Spec {
        name: "prefix",
        kind: Kind::Text {
            default: DEFAULT_PREFIX,
            get: |s| s.prefix.clone(),
            set: |s, v| {
                validate_prefix(v)?;
                s.prefix = v.to_string();
                Ok(())
            },
        },
        // A new prefix at runtime would silently un-revoke every token.
        immutable: true,
        sensitive: false,
        effect: Effect::None,
    },
    Spec {
        name: "db",
        kind: Kind::Int {
            default: 0,
            min: 0,
            // A database index is a C int; whether this server has that many databases is
            // only known once it runs, and checked at load (`denylist::check_db`).
            max: i32::MAX as i64 - 1,
            get: |s| s.db,
            set: |s, n| s.db = n,
        },
        // Another database at runtime would silently un-revoke every token, as a new prefix would.
        immutable: true,
        sensitive: false,
        effect: Effect::None,
    },
    Spec {
        name: "max-token-bytes",
        kind: Kind::Int {
            default: 8192,
            min: 128,
            max: 1024 * 1024,
            get: |s| s.max_token_bytes,
            set: |s, n| s.max_token_bytes = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "max-lifetime",
        kind: Kind::Int {
            default: 0,
            min: 0,
            // A bound, not advice: 100 years admits long-lived test and service tokens (the
            // shared logout vectors live 74 years) and keeps every expiry within range.
            max: 100 * 365 * 24 * 3600,
            get: |s| s.max_lifetime,
            set: |s, n| s.max_lifetime = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "verify-cache-size",
        kind: Kind::Int {
            // Room for about 100k active sessions.
            default: 131_072,
            min: 0,
            max: 16 * 1024 * 1024,
            get: |s| s.verify_cache_size,
            set: |s, n| s.verify_cache_size = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ResizeCache,
    },
    Spec {
        name: "workers",
        kind: Kind::Int {
            // Threads are an operator's opt-in: by default every verification runs inline.
            default: 0,
            min: 0,
            max: 64,
            get: |s| s.workers,
            set: |s, n| s.workers = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ResizeWorkers,
    },
    Spec {
        name: "jwks-uri",
        kind: Kind::Text {
            default: "",
            get: |s| s.jwks_uri.clone(),
            set: |s, v| {
                if !v.is_empty() {
                    jwtdeny_core::fetch::check_url(v).map_err(|e| e.to_string())?;
                }
                s.jwks_uri = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: true,
        effect: Effect::Source,
    },
    Spec {
        name: "discovery",
        kind: Kind::Bool {
            default: false,
            get: |s| s.discovery,
            set: |s, b| s.discovery = b,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::Source,
    },
    Spec {
        name: "jwks-refresh",
        kind: Kind::Int {
            default: 300,
            min: 10,
            max: 86_400,
            get: |s| s.jwks_refresh,
            set: |s, n| s.jwks_refresh = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::Source,
    },
    Spec {
        name: "jwks-cooldown",
        kind: Kind::Int {
            default: 30,
            min: 1,
            max: 3600,
            get: |s| s.jwks_cooldown,
            set: |s, n| s.jwks_cooldown = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::Source,
    },
    Spec {
        name: "jwks-timeout",
        kind: Kind::Int {
            default: 5000,
            min: 100,
            max: 60_000,
            get: |s| s.jwks_timeout,
            set: |s, n| s.jwks_timeout = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::Source,
    },
    Spec {
        name: "jwks-ca-file",
        kind: Kind::Text {
            default: "",
            get: |s| s.jwks_ca_file.clone(),
            set: |s, v| {
                // Only looked at (stat never blocks); the fetch thread reads it.
                if !v.is_empty() && !std::fs::metadata(v).is_ok_and(|m| m.is_file()) {
                    return Err(format!("{} is not a readable regular file", quote(v)));
                }
                s.jwks_ca_file = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::Source,
    },
    // DPoP proofs are never cached; their configs are ClearCache all the same, so that a
    // proof a worker judged under the old ones is judged again (see `workers::Done`).
    Spec {
        name: "dpop-algorithms",
        kind: Kind::Text {
            default: DEFAULT_DPOP_ALGORITHMS,
            get: |s| {
                s.dpop_algorithms
                    .iter()
                    .map(alg_name)
                    .collect::<Vec<_>>()
                    .join(",")
            },
            set: |s, v| {
                s.dpop_algorithms = parse_dpop_algorithms(v)?;
                Ok(())
            },
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "dpop-window",
        kind: Kind::Int {
            default: 60,
            min: 1,
            max: 3600,
            get: |s| s.dpop_window,
            set: |s, n| s.dpop_window = n,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "dpop-nonce",
        kind: Kind::Bool {
            default: false,
            get: |s| s.dpop_nonce,
            set: |s, b| s.dpop_nonce = b,
        },
        immutable: false,
        sensitive: false,
        effect: Effect::ClearCache,
    },
    Spec {
        name: "dpop-nonce-secret",
        kind: Kind::Text {
            default: "",
            get: |s| s.dpop_nonce_secret.clone(),
            set: |s, v| {
                if !v.is_empty() && v.len() < 32 {
                    return Err(format!(
                        "a secret of {} bytes is too short: 32 at least (e.g. openssl rand -hex 32)",
                        v.len()
                    ));
                }
                s.dpop_nonce_secret = v.to_string();
                Ok(())
            },
        },
        immutable: false,
        sensitive: true,
        effect: Effect::ClearCache,
    },
];

/// What `jwtdeny.dpop-algorithms` allows by default: every asymmetric algorithm jwtdeny
/// verifies.
pub const DEFAULT_DPOP_ALGORITHMS: &str = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA";

/// `jwtdeny.dpop-algorithms`: a comma-separated list of asymmetric JOSE names, never empty. A
/// proof is signed with the key it carries: an HMAC "key" in it would be a published secret.
fn parse_dpop_algorithms(value: &str) -> Result<AlgSet, String> {
    let set = parse_algorithms(value)?
        .ok_or("the list is empty: name the algorithms DPoP proofs may use")?;
    if let Some(hmac) = set.iter().find(|a| alg_name(*a).starts_with("HS")) {
        return Err(format!(
            "{} is symmetric: a DPoP proof is signed with a public key pair",
            alg_name(hmac)
        ));
    }
    Ok(set)
}

/// The row of a config, by its name with or without the `jwtdeny.` prefix (module arguments may
/// use either).
pub fn find(name: &str) -> Option<&'static Spec> {
    let bare = name.strip_prefix("jwtdeny.").unwrap_or(name);
    SPECS.iter().find(|s| s.name.eq_ignore_ascii_case(bare))
}

/// A change that may be made while the server runs, judged against the value in force. Raising
/// `max-lifetime` is refused: subject cutoffs written under the old bound expire at
/// `cutoff + old bound + leeway`, after which tokens they revoked but the new bound admits
/// would be accepted again. Raising `dpop-window` is refused for the same reason: a proof's
/// one-time record expires when the old window ends, and a wider window would accept the proof
/// again after that.
pub fn runtime_change_allowed(spec: &Spec, old: &Settings, new: &Settings) -> Result<(), String> {
    if spec.name == "max-lifetime" && old.max_lifetime > 0 {
        let raised = new.max_lifetime == 0 || new.max_lifetime > old.max_lifetime;
        if raised {
            return Err(format!(
                "jwtdeny.max-lifetime: raising it from {} to {} at runtime is refused: subject \
                 cutoffs already written expire after the old bound, and tokens they revoked \
                 would be accepted again (see the README: Configuration)",
                old.max_lifetime, new.max_lifetime
            ));
        }
    }
    if spec.name == "dpop-window" && new.dpop_window > old.dpop_window {
        return Err(format!(
            "jwtdeny.dpop-window: raising it from {} to {} at runtime is refused: the one-time \
             records of proofs already used expire when the old window ends, and the wider window \
             would accept those proofs again (see the README: Sender-constrained tokens)",
            old.dpop_window, new.dpop_window
        ));
    }
    Ok(())
}

/// Rules between configs, checked once loading is over and on every runtime change.
pub fn check_combination(s: &Settings) -> Result<(), String> {
    if s.discovery && !s.jwks_uri.is_empty() {
        return Err(
            "jwtdeny.discovery yes reads the JWKS URL from the issuer's discovery \
                    document: jwtdeny.jwks-uri must be empty"
                .into(),
        );
    }
    if s.discovery && s.issuer.is_empty() {
        return Err("jwtdeny.discovery yes needs jwtdeny.issuer".into());
    }
    if s.discovery {
        jwtdeny_core::fetch::discovery_url(&s.issuer)
            .map_err(|e| format!("jwtdeny.issuer cannot be discovered: {e}"))?;
    }
    Ok(())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// `jwtdeny.token-typ`: empty, or `at+jwt` (RFC 9068's access-token type, with or without
/// `application/`, in any case), stored as `at+jwt`. Other types are refused: requiring one
/// no access-token profile defines would only lock every token out.
fn parse_token_typ(value: &str) -> Result<String, String> {
    let v = value.trim();
    let bare = v
        .get(..12)
        .filter(|head| head.eq_ignore_ascii_case("application/"))
        .map_or(v, |_| &v[12..]);
    if v.is_empty() {
        Ok(String::new())
    } else if bare.eq_ignore_ascii_case("at+jwt") {
        Ok("at+jwt".into())
    } else {
        Err(format!(
            "{} is not an access token type: use at+jwt (RFC 9068), or empty for any type but \
             another kind of JWT's",
            quote(value)
        ))
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
        // RFC 9864's fully-specified Ed25519 is the EdDSA jwtdeny serves (no Ed448).
        let alg = ALL_ALGORITHMS
            .into_iter()
            .find(|a| alg_name(*a).eq_ignore_ascii_case(name))
            .or_else(|| {
                name.eq_ignore_ascii_case("Ed25519")
                    .then_some(jsonwebtoken::Algorithm::EdDSA)
            });
        match alg {
            Some(a) => algs.push(a),
            None if name.eq_ignore_ascii_case("none") => {
                return Err("\"none\" (unsigned tokens) can never be allowed".into())
            }
            None => {
                return Err(format!(
                    "unknown algorithm {} (known: HS256,HS384,HS512,RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA or Ed25519)",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> Result<Settings, String> {
        let mut s = Settings::defaults();
        find(name).expect("a config").set(&mut s, value)?;
        Ok(s)
    }

    #[test]
    fn names_parse_with_or_without_the_module_prefix() {
        assert_eq!(find("keys-file").map(|s| s.name), Some("keys-file"));
        assert_eq!(
            find("jwtdeny.max-token-bytes").map(|s| s.name),
            Some("max-token-bytes")
        );
        assert!(find("keysfile").is_none());
        for spec in &SPECS {
            assert!(std::ptr::eq(find(spec.name).unwrap(), spec));
        }
    }

    #[test]
    fn every_default_is_valid_and_round_trips() {
        let s = Settings::defaults();
        for spec in &SPECS {
            let mut again = Settings::defaults();
            spec.set(&mut again, &spec.default_text())
                .unwrap_or_else(|e| panic!("default of {}: {e}", spec.name));
            assert_eq!(spec.get(&s), spec.default_text(), "{}", spec.name);
        }
        assert_eq!(s.prefix, DEFAULT_PREFIX);
        assert_eq!(s.verify_cache_size, 131_072);
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
        let e = set("leeway", "-1").unwrap_err();
        assert!(e.starts_with("jwtdeny.leeway:"), "{e}");
        assert!(set("leeway", "abc").unwrap_err().contains("not an integer"));
        assert!(set("max-token-bytes", "0")
            .unwrap_err()
            .starts_with("jwtdeny.max-token-bytes"));
        assert!(set("prefix", "a{b")
            .unwrap_err()
            .starts_with("jwtdeny.prefix"));
        assert!(set("prefix", "").is_err());
        assert!(set("algorithms", "none")
            .unwrap_err()
            .starts_with("jwtdeny.algorithms"));
    }

    #[test]
    fn raising_max_lifetime_at_runtime_is_refused() {
        let spec = find("max-lifetime").unwrap();
        let at = |n: &str| set("max-lifetime", n).unwrap();
        assert!(runtime_change_allowed(spec, &at("0"), &at("3600")).is_ok());
        assert!(runtime_change_allowed(spec, &at("3600"), &at("60")).is_ok());
        assert!(runtime_change_allowed(spec, &at("3600"), &at("3600")).is_ok());
        let e = runtime_change_allowed(spec, &at("3600"), &at("7200")).unwrap_err();
        assert!(e.starts_with("jwtdeny.max-lifetime:"), "{e}");
        assert!(runtime_change_allowed(spec, &at("3600"), &at("0")).is_err());
    }

    #[test]
    fn raising_the_dpop_window_at_runtime_is_refused() {
        let spec = find("dpop-window").unwrap();
        let at = |n: &str| set("dpop-window", n).unwrap();
        assert!(runtime_change_allowed(spec, &at("60"), &at("30")).is_ok());
        assert!(runtime_change_allowed(spec, &at("60"), &at("60")).is_ok());
        let e = runtime_change_allowed(spec, &at("60"), &at("61")).unwrap_err();
        assert!(e.starts_with("jwtdeny.dpop-window:"), "{e}");
    }
}
