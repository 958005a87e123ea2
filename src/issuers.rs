//! The issuer registry in force: the issuers of `jwtdeny.issuers-file` besides the default one,
//! each with its settings resolved through the config table and its keys, and where a token of
//! each `iss` belongs.
//!
//! The file's syntax is `jwtdeny_core::issuers`. An entry's settings start from the configs'
//! defaults (nothing of the default issuer's rules carries over: they are another issuer's),
//! take the server-wide settings of the configs in force (leeway, prefix, db, max-token-bytes,
//! DPoP, and the JWKS periods, timeout and CA unless the entry sets its own), then the entry's
//! own values, each checked by its config's row as `CONFIG SET` would.

use crate::config::{self, Settings};
use crate::jwks::SourceConfig;
use crate::stats::Checks;
use jwtdeny_core::error::{quote, Error};
use jwtdeny_core::issuers::{self, Entry};
use jwtdeny_core::keys::{read_regular_file, KeySet};
use jwtdeny_core::keyscheme;
use jwtdeny_core::token::{Placed, Policy};
use redis_module::RedisValue;
use std::collections::HashMap;
use std::sync::Arc;

/// An issuer of the registry, its settings resolved.
pub struct Issuer {
    pub entry: Entry,
    pub settings: Settings,
    /// Its CHECKs, kept across reloads while its name stays.
    pub checks: Arc<Checks>,
    /// Its sources' indices.
    pub sources: Vec<usize>,
}

impl Issuer {
    /// How many keys its sources have in `keys` (a snapshot's registry keys).
    pub fn keys_loaded(&self, keys: &[Arc<KeySet>]) -> usize {
        self.sources
            .iter()
            .filter_map(|s| keys.get(*s))
            .map(|k| k.len())
            .sum()
    }
}

/// Where the tokens of one `iss` belong.
pub struct Placement {
    /// Index into [`Registry::issuers`].
    pub issuer: usize,
    /// The `iss` itself (a template's, with its tenant in place).
    pub iss: String,
    pub tenant: Option<String>,
    /// `keyscheme::scope` of its subjects.
    pub scope: Arc<str>,
    /// Index into [`Registry::sources`] and the snapshot's registry keys.
    pub source: usize,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(String),
    /// A JWKS URL or an OIDC discovery document, fetched off the main thread (`jwks`).
    Fetch(SourceConfig),
}

impl Source {
    /// Whether the keys of `self` and `other` are the same keys: the same file, or the same
    /// document fetched the same way (how often does not matter).
    pub fn same_keys_as(&self, other: &Source) -> bool {
        match (self, other) {
            (Source::File(a), Source::File(b)) => a == b,
            (Source::Fetch(a), Source::Fetch(b)) => a.source == b.source && a.fetch == b.fetch,
            _ => false,
        }
    }
}

/// Fetched sources a registry may have in all (a template's tenants each count when each has
/// its own document).
pub const MAX_FETCHED_SOURCES: usize = 64;

/// Ids of registries, so that keys fetched for one are never put in force for another.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The registry: empty when no `jwtdeny.issuers-file` is set.
#[derive(Default)]
pub struct Registry {
    /// Moves whenever its sources may have changed (0: the empty registry).
    pub id: u64,
    pub issuers: Vec<Issuer>,
    by_iss: HashMap<String, Placement>,
    by_scope: HashMap<Arc<str>, usize>,
    pub sources: Vec<Source>,
}

impl Registry {
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    pub fn placement(&self, iss: &str) -> Option<&Placement> {
        self.by_iss.get(iss)
    }

    /// The issuer whose subjects' scope is `scope`.
    pub fn by_scope(&self, scope: &str) -> Option<&Issuer> {
        self.by_scope.get(scope).map(|i| &self.issuers[*i])
    }

    /// [`Registry::by_scope`], with the scope as the registry keeps it.
    pub fn scoped(&self, scope: &str) -> Option<(&Arc<str>, &Issuer)> {
        self.by_scope
            .get_key_value(scope)
            .map(|(s, i)| (s, &self.issuers[*i]))
    }

    /// Reads, checks and resolves the registry file at `path` and loads its keys files: all or
    /// nothing. `global`: the configs in force. Keys of sources unchanged since `old` are kept
    /// as they are.
    pub fn load(
        path: &str,
        global: &Settings,
        old: (&Registry, &[Arc<KeySet>]),
    ) -> Result<(Registry, Vec<Arc<KeySet>>), Error> {
        let bytes = read_regular_file(path, issuers::MAX_FILE_BYTES)
            .map_err(|e| Error::KeysFile(format!("jwtdeny.issuers-file: {e}")))?;
        let entries = issuers::parse(&bytes).map_err(|e| {
            Error::KeysFile(format!(
                "jwtdeny.issuers-file {}: {}",
                quote(path),
                e.message()
            ))
        })?;
        let mut registry = Registry::resolve(entries, global)?;
        registry.carry_checks(old.0);
        let mut keys = Vec::with_capacity(registry.sources.len());
        for source in &registry.sources {
            keys.push(match source {
                Source::File(file) => Arc::new(KeySet::load(file).map_err(|e| {
                    Error::KeysFile(format!(
                        "jwtdeny.issuers-file: keys file {}: {}",
                        quote(file),
                        e.message()
                    ))
                })?),
                // Until its first fetch: the keys of the same source in the registry before.
                Source::Fetch(_) => registry.carried_keys(source, old),
            });
        }
        Ok((registry, keys))
    }

    /// Keeps the counters of the issuers `old` had by the same name.
    fn carry_checks(&mut self, old: &Registry) {
        for issuer in &mut self.issuers {
            if let Some(o) = old
                .issuers
                .iter()
                .find(|o| o.entry.name == issuer.entry.name)
            {
                issuer.checks = o.checks.clone();
            }
        }
    }

    /// The keys `old` has for `source`, or none.
    fn carried_keys(
        &self,
        source: &Source,
        (old, keys): (&Registry, &[Arc<KeySet>]),
    ) -> Arc<KeySet> {
        old.sources
            .iter()
            .position(|s| s.same_keys_as(source))
            .and_then(|i| keys.get(i).cloned())
            .unwrap_or_default()
    }

    /// The same entries resolved again under changed server-wide configs, with their keys.
    /// Sources that only changed how often they are fetched keep the registry's id.
    pub fn resolved_again(
        &self,
        global: &Settings,
        keys: &[Arc<KeySet>],
    ) -> Result<(Registry, Vec<Arc<KeySet>>), Error> {
        let mut again = Registry::resolve(
            self.issuers.iter().map(|i| i.entry.clone()).collect(),
            global,
        )?;
        let same = again.sources.len() == self.sources.len()
            && again
                .sources
                .iter()
                .zip(&self.sources)
                .all(|(a, b)| a.same_keys_as(b));
        if same {
            again.id = self.id;
        }
        again.carry_checks(self);
        let keys = again
            .sources
            .iter()
            .map(|s| again.carried_keys(s, (self, keys)))
            .collect();
        Ok((again, keys))
    }

    /// What `jwks::sync_registry` takes: the fetched sources by index.
    pub fn fetched_sources(&self) -> Vec<Option<SourceConfig>> {
        self.sources
            .iter()
            .map(|s| match s {
                Source::Fetch(c) => Some(c.clone()),
                Source::File(_) => None,
            })
            .collect()
    }

    fn resolve(entries: Vec<Entry>, global: &Settings) -> Result<Registry, Error> {
        let mut registry = Registry {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ..Registry::default()
        };
        for entry in entries {
            let refuse = |why: String| {
                Error::KeysFile(format!(
                    "jwtdeny.issuers-file: issuer {}: {why}",
                    quote(&entry.name)
                ))
            };
            let settings = resolve_settings(&entry, global).map_err(refuse)?;
            let issuer = registry.issuers.len();
            for (iss, tenant) in entry.placements() {
                let source = source_of(&settings, &iss, tenant.as_deref()).map_err(refuse)?;
                let source = match registry.sources.iter().position(|s| *s == source) {
                    Some(i) => i,
                    None => {
                        registry.sources.push(source);
                        registry.sources.len() - 1
                    }
                };
                let fetched = registry
                    .sources
                    .iter()
                    .filter(|s| matches!(s, Source::Fetch(_)))
                    .count();
                if fetched > MAX_FETCHED_SOURCES {
                    return Err(refuse(format!(
                        "over {MAX_FETCHED_SOURCES} fetched key sources in all (a tenant of a \
                         template with {{tenant}} in its JWKS URL or discovery is one each)"
                    )));
                }
                let scope: Arc<str> = keyscheme::scope(&entry.scope_id(tenant.as_deref())).into();
                registry.by_scope.insert(scope.clone(), issuer);
                registry.by_iss.insert(
                    iss.clone(),
                    Placement {
                        issuer,
                        iss,
                        tenant,
                        scope,
                        source,
                    },
                );
            }
            let mut sources: Vec<usize> = registry
                .by_iss
                .values()
                .filter(|p| p.issuer == issuer)
                .map(|p| p.source)
                .collect();
            sources.sort_unstable();
            sources.dedup();
            registry.issuers.push(Issuer {
                entry,
                settings,
                checks: Arc::default(),
                sources,
            });
        }
        if !global.issuer.is_empty() && registry.by_iss.contains_key(&global.issuer) {
            return Err(Error::KeysFile(format!(
                "jwtdeny.issuers-file: iss {} is the default issuer's (jwtdeny.issuer)",
                quote(&global.issuer)
            )));
        }
        Ok(registry)
    }

    /// What `ISSUER <issuer>` names: an issuer of the registry by its name (a template's needs
    /// its tenant: give the `iss` instead), an `iss` the registry accepts, or `default`.
    /// Returns the placement, `None` for the default issuer.
    pub fn named(&self, name: &str) -> Result<Option<&Placement>, Error> {
        if name == "default" {
            return Ok(None);
        }
        if let Some(p) = self.by_iss.get(name) {
            return Ok(Some(p));
        }
        let Some(i) = self.issuers.iter().position(|i| i.entry.name == name) else {
            return Err(Error::Usage(format!(
                "ISSUER {} is neither default, an issuer of jwtdeny.issuers-file nor an iss \
                 one of them accepts",
                quote(name)
            )));
        };
        let issuer = &self.issuers[i];
        if issuer.entry.is_template() {
            return Err(Error::Usage(format!(
                "issuer {} has a tenant per iss: name the iss, e.g. ISSUER {}",
                quote(name),
                quote(
                    &issuer
                        .entry
                        .placements()
                        .first()
                        .map(|p| p.0.clone())
                        .unwrap_or_default()
                )
            )));
        }
        Ok(self.by_iss.values().find(|p| p.issuer == i))
    }
}

impl Registry {
    /// `ISSUERS LIST`: per issuer its name, `iss`, tenants, key source and how many keys it
    /// has; never key material.
    pub fn describe(&self, keys: &[Arc<KeySet>]) -> Vec<Vec<(&'static str, RedisValue)>> {
        let text = |s: &str| RedisValue::BulkString(s.to_string());
        self.issuers
            .iter()
            .map(|issuer| {
                let loaded = issuer.keys_loaded(keys);
                vec![
                    ("name", text(&issuer.entry.name)),
                    ("issuer", text(issuer.entry.issuer())),
                    (
                        "tenants",
                        RedisValue::Array(issuer.entry.tenants.iter().map(|t| text(t)).collect()),
                    ),
                    ("keys_file", text(&issuer.settings.keys_file)),
                    (
                        "keys_loaded",
                        RedisValue::Integer(i64::try_from(loaded).unwrap_or(i64::MAX)),
                    ),
                ]
            })
            .collect()
    }
}

/// Where the keys of the tokens of `iss` (a template's, with `tenant` in place) come from.
fn source_of(settings: &Settings, iss: &str, tenant: Option<&str>) -> Result<Source, String> {
    if !settings.keys_file.is_empty() {
        return Ok(Source::File(settings.keys_file.clone()));
    }
    let mut s = settings.clone();
    s.issuer = iss.to_string();
    if let Some(t) = tenant {
        s.jwks_uri = s.jwks_uri.replace(issuers::TENANT, t);
    }
    if !s.jwks_uri.is_empty() {
        jwtdeny_core::fetch::check_url(&s.jwks_uri).map_err(|e| format!("jwks-uri: {e}"))?;
    }
    config::check_combination(&s)?;
    SourceConfig::from_settings(&s)
        .map(Source::Fetch)
        .ok_or_else(|| "no key source".to_string())
}

/// An entry's settings: defaults, the server-wide configs in force, then its own values.
fn resolve_settings(entry: &Entry, global: &Settings) -> Result<Settings, String> {
    let mut s = Settings::defaults();
    s.leeway = global.leeway;
    s.prefix = global.prefix.clone();
    s.db = global.db;
    s.max_token_bytes = global.max_token_bytes;
    s.verify_cache_size = global.verify_cache_size;
    s.workers = global.workers;
    s.jwks_refresh = global.jwks_refresh;
    s.jwks_cooldown = global.jwks_cooldown;
    s.jwks_timeout = global.jwks_timeout;
    s.jwks_ca_file = global.jwks_ca_file.clone();
    s.dpop_algorithms = global.dpop_algorithms;
    s.dpop_window = global.dpop_window;
    s.dpop_nonce = global.dpop_nonce;
    s.dpop_nonce_secret = global.dpop_nonce_secret.clone();
    for (name, value) in &entry.settings {
        let spec = config::find(name).ok_or_else(|| format!("unknown setting {name}"))?;
        if *name == "jwks-uri" && value.contains(issuers::TENANT) {
            // Checked with a tenant in place; expanded per tenant in `source_of`.
            spec.set(&mut s, &value.replace(issuers::TENANT, "tenant"))?;
            s.jwks_uri = value.clone();
        } else {
            spec.set(&mut s, value)?;
        }
    }
    s.audiences = entry.audiences.clone();
    s.client_ids = entry.client_ids.clone();
    // What depends on the `iss` (discovery) is checked per tenant, in `source_of`.
    Ok(s)
}

/// The keys and rules a token of `iss` is judged by, in a snapshot with `registry` (`several`:
/// whether a registry is configured at all). A token of an `iss` the registry does not place
/// belongs to the default issuer if its `iss` is `jwtdeny.issuer` (or it has none and that is
/// unset); otherwise it is refused before any key is looked up.
pub fn place<'a>(
    several: bool,
    registry: &'a Registry,
    registry_keys: &'a [Arc<KeySet>],
    default_keys: &'a KeySet,
    default: &'a Settings,
    iss: Option<&str>,
) -> Result<Placed<'a>, Error> {
    if !several {
        // One issuer: its `iss` is judged with the other claims, after the signature.
        return Ok(Placed {
            keys: default_keys,
            policy: default.policy(),
            scope: None,
        });
    }
    if let Some(p) = iss.and_then(|iss| registry.by_iss.get(iss)) {
        let issuer = &registry.issuers[p.issuer];
        let policy = Policy {
            issuer: Some(&p.iss),
            tenant: p.tenant.as_deref().filter(|_| issuer.entry.tenant_claim),
            ..issuer.settings.policy()
        };
        let keys = registry_keys
            .get(p.source)
            .ok_or_else(|| Error::Internal("an issuer's keys are missing".into()))?;
        return Ok(Placed {
            keys,
            policy,
            scope: Some(p.scope.clone()),
        });
    }
    // With several issuers the default issuer takes its own `iss` only: a token without one if
    // `jwtdeny.issuer` is unset, so that no issuer's token falls through to its keys.
    let default_iss = (!default.issuer.is_empty()).then_some(default.issuer.as_str());
    if iss == default_iss {
        return Ok(Placed {
            keys: default_keys,
            policy: default.policy(),
            scope: None,
        });
    }
    Err(Error::BadClaims(match iss {
        Some(iss) => format!(
            "iss {} is not a registered issuer (jwtdeny.issuer, jwtdeny.issuers-file)",
            quote(iss)
        ),
        None => "iss is missing and every issuer requires one".into(),
    }))
}
