//! The issuer registry file (`jwtdeny.issuers-file`): issuers besides the default one (the
//! `jwtdeny.issuer`, `jwtdeny.keys-file`, … configs), each with its own `iss`, key source and
//! token rules. This is its syntax and the rules that need nothing else; the module resolves
//! each entry's settings through its config table, so a value means what the config of the
//! same name means.
//!
//! ```json
//! { "issuers": {
//!     "acme":  { "issuer": "https://acme.example/", "jwks-uri": "https://acme.example/jwks",
//!                "audience": ["api", "admin-api"] },
//!     "entra": { "issuer": "https://login.microsoftonline.com/{tenant}/v2.0",
//!                "tenants": ["2b1f…", "9c0e…"], "tenant-claim": "tid",
//!                "jwks-uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys" } } }
//! ```
//!
//! An issuer's name is part of the keys its subjects' entries live under (see
//! `keyscheme::scope`), so it is restricted to what can never meet a default issuer's key.

use crate::error::{quote, Error};
use serde_json::Value;

/// Issuers a registry may name, templates counting once.
pub const MAX_ISSUERS: usize = 64;
/// Tenants one template may allow.
pub const MAX_TENANTS: usize = 1024;
/// The longest name and tenant.
pub const MAX_NAME: usize = 32;
pub const MAX_TENANT: usize = 64;
/// The largest registry file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The placeholder of a template issuer.
pub const TENANT: &str = "{tenant}";

/// The configs an entry may set, with the same meaning as the default issuer's. Everything else
/// (leeway, prefix, db, max-token-bytes, the cache, workers, DPoP) is the server's, shared by
/// every issuer.
pub const SETTINGS: [&str; 12] = [
    "issuer",
    "keys-file",
    "jwks-uri",
    "discovery",
    "algorithms",
    "token-typ",
    "max-lifetime",
    "logout-audience",
    "jwks-refresh",
    "jwks-cooldown",
    "jwks-timeout",
    "jwks-ca-file",
];

/// One entry of the file, checked for everything that needs no config table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// `(config name, value as text)` for the entries of [`SETTINGS`] it sets, `issuer` first.
    pub settings: Vec<(&'static str, String)>,
    /// Any one of them must be in `aud`; empty: `aud` is not checked (unless `client_ids`).
    pub audiences: Vec<String>,
    /// Cognito's access tokens carry no `aud`: with these, `token_use` must be `access` and
    /// `client_id` one of them.
    pub client_ids: Vec<String>,
    /// For an `issuer` with `{tenant}`: the tenants it may stand for.
    pub tenants: Vec<String>,
    /// The token's `tid` must equal the tenant (Entra ID).
    pub tenant_claim: bool,
}

impl Entry {
    pub fn issuer(&self) -> &str {
        self.get("issuer").unwrap_or("")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_template(&self) -> bool {
        self.issuer().contains(TENANT)
    }

    /// Every `(iss, tenant)` this entry accepts: one for an exact issuer, one per tenant for a
    /// template.
    pub fn placements(&self) -> Vec<(String, Option<String>)> {
        if !self.is_template() {
            return vec![(self.issuer().to_string(), None)];
        }
        self.tenants
            .iter()
            .map(|t| (self.issuer().replace(TENANT, t), Some(t.clone())))
            .collect()
    }

    /// The issuer id its subjects' keys carry: `name`, or `name.tenant` for a template's
    /// tenant (a tenant's subjects are only unique within it).
    pub fn scope_id(&self, tenant: Option<&str>) -> String {
        match tenant {
            Some(t) => format!("{}.{t}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Parses a registry file's bytes: every error names the issuer and the field.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, Error> {
    let bad = |why: String| Error::KeysFile(why);
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not valid UTF-8".into()))?;
    // A name or a field given twice would silently take the last: refused, as every other
    // doubt about what the file means.
    serde_json::from_str::<NoDuplicates>(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let root: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(mut root) = root else {
        return Err(bad("not a JSON object".into()));
    };
    let issuers = match root.remove("issuers") {
        Some(Value::Object(map)) => map,
        Some(_) => return Err(bad("\"issuers\" is not an object of named issuers".into())),
        None => return Err(bad("no \"issuers\" object".into())),
    };
    if let Some(other) = root.keys().next() {
        return Err(bad(format!(
            "unknown member {} (only \"issuers\")",
            quote(other)
        )));
    }
    if issuers.len() > MAX_ISSUERS {
        return Err(bad(format!(
            "{} issuers, over the limit of {MAX_ISSUERS}",
            issuers.len()
        )));
    }
    let mut entries = Vec::with_capacity(issuers.len());
    for (name, body) in issuers {
        let entry = parse_entry(&name, body)
            .map_err(|why| bad(format!("issuer {}: {why}", quote(&name))))?;
        entries.push(entry);
    }
    let mut seen = std::collections::HashMap::new();
    for e in &entries {
        for (iss, _) in e.placements() {
            if let Some(other) = seen.insert(iss.clone(), e.name.clone()) {
                return Err(bad(format!(
                    "issuers {} and {} both accept iss {}",
                    quote(&other),
                    quote(&e.name),
                    quote(&iss)
                )));
            }
        }
    }
    Ok(entries)
}

/// Any JSON whose objects name each member once.
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NoDuplicates;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<NoDuplicates, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = m.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "{} is given twice",
                            quote(&key)
                        )));
                    }
                    m.next_value::<NoDuplicates>()?;
                }
                Ok(NoDuplicates)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<NoDuplicates, A::Error> {
                while s.next_element::<NoDuplicates>()?.is_some() {}
                Ok(NoDuplicates)
            }

            fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
        }
        d.deserialize_any(V)
    }
}

/// A name is `[a-z][a-z0-9_-]*`: it starts a key's hash tag after `%`, where a default
/// issuer's encoded subject only ever has `25`, `7B` or `7D`, and `.` and `:` end it.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return Err(format!(
            "the name must be a lowercase letter then up to {} of a-z 0-9 _ -",
            MAX_NAME - 1
        ));
    }
    if name == "default" {
        return Err("\"default\" is the name of the issuer of the jwtdeny.* configs".into());
    }
    Ok(())
}

fn check_tenant(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TENANT
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant {} must be 1 to {MAX_TENANT} of A-Z a-z 0-9 . _ -",
            quote(t)
        ))
    }
}

fn parse_entry(name: &str, body: Value) -> Result<Entry, String> {
    check_name(name)?;
    let Value::Object(fields) = body else {
        return Err("not an object".into());
    };
    let mut entry = Entry {
        name: name.to_string(),
        settings: Vec::new(),
        audiences: Vec::new(),
        client_ids: Vec::new(),
        tenants: Vec::new(),
        tenant_claim: false,
    };
    let issuer = match fields.get("issuer") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("\"issuer\" must be a non-empty string".into()),
    };
    entry.settings.push(("issuer", issuer.clone()));
    for (field, value) in &fields {
        match field.as_str() {
            "issuer" => {}
            "audience" => entry.audiences = strings(field, value)?,
            "client-id" => entry.client_ids = strings(field, value)?,
            "tenants" => entry.tenants = strings(field, value)?,
            "tenant-claim" => match value {
                Value::String(s) if s == "tid" => entry.tenant_claim = true,
                _ => return Err("\"tenant-claim\" can only be \"tid\"".into()),
            },
            other => {
                let Some(config) = SETTINGS.iter().find(|s| **s == other) else {
                    return Err(format!(
                        "unknown field {} (known: issuer, audience, client-id, tenants, \
                         tenant-claim, {})",
                        quote(other),
                        SETTINGS[1..].join(", ")
                    ));
                };
                let text = match (value, *config) {
                    (Value::String(s), "algorithms") => s.clone(),
                    (Value::Array(_), "algorithms") => strings(field, value)?.join(","),
                    (Value::String(s), _) => s.clone(),
                    (Value::Number(n), _) => n.to_string(),
                    (Value::Bool(b), _) => if *b { "yes" } else { "no" }.to_string(),
                    _ => {
                        return Err(format!(
                            "{} is not a string, number or boolean",
                            quote(other)
                        ))
                    }
                };
                entry.settings.push((config, text));
            }
        }
    }
    let sources = ["keys-file", "jwks-uri"]
        .iter()
        .filter(|s| entry.get(s).is_some_and(|v| !v.is_empty()))
        .count()
        + usize::from(entry.get("discovery").is_some_and(is_yes));
    if sources != 1 {
        return Err(
            "name exactly one key source: \"keys-file\", \"jwks-uri\" or \"discovery\": true"
                .into(),
        );
    }
    if !entry.audiences.is_empty() && !entry.client_ids.is_empty() {
        return Err(
            "\"audience\" and \"client-id\" exclude each other (client-id is for tokens \
             without aud, such as Cognito's access tokens)"
                .into(),
        );
    }
    let holes = issuer.matches(TENANT).count();
    if holes > 1 {
        return Err(format!(
            "\"issuer\" has {TENANT} {holes} times, at most once"
        ));
    }
    if holes == 1 {
        if entry.tenants.is_empty() {
            return Err(format!(
                "an issuer with {TENANT} needs \"tenants\": the tenants it may stand for"
            ));
        }
        if entry.tenants.len() > MAX_TENANTS {
            return Err(format!(
                "{} tenants, over the limit of {MAX_TENANTS}",
                entry.tenants.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &entry.tenants {
            check_tenant(t)?;
            if !seen.insert(t.as_str()) {
                return Err(format!("tenant {} is listed twice", quote(t)));
            }
        }
    } else {
        if !entry.tenants.is_empty() || entry.tenant_claim {
            return Err(format!(
                "\"tenants\" and \"tenant-claim\" need an issuer with {TENANT}"
            ));
        }
        if entry.get("jwks-uri").is_some_and(|u| u.contains(TENANT)) {
            return Err(format!("\"jwks-uri\" has {TENANT} but \"issuer\" has none"));
        }
    }
    if entry.get("keys-file").is_some_and(|f| f.contains(TENANT)) {
        return Err(format!("\"keys-file\" cannot have {TENANT}"));
    }
    Ok(entry)
}

fn is_yes(v: &str) -> bool {
    matches!(v, "yes" | "true" | "1" | "on")
}

/// A string, or an array of non-empty strings.
fn strings(field: &str, value: &Value) -> Result<Vec<String>, String> {
    let list: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    list.into_iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(format!(
                "{} must be a non-empty string or an array of them",
                quote(field)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Result<Vec<Entry>, String> {
        parse(json.as_bytes()).map_err(|e| e.message().to_string())
    }

    #[test]
    fn an_exact_and_a_template_issuer() {
        let e = parsed(
            r#"{"issuers": {
                "acme": {"issuer": "https://acme/", "keys-file": "/k.json", "audience": ["a", "b"],
                         "max-lifetime": 3600},
                "entra": {"issuer": "https://login/{tenant}/v2.0", "tenants": ["t1", "t-2"],
                          "tenant-claim": "tid", "jwks-uri": "https://login/common/keys"}}}"#,
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        let (acme, entra) = (&e[0], &e[1]);
        assert_eq!(acme.name, "acme");
        assert_eq!(acme.get("max-lifetime"), Some("3600"));
        assert_eq!(acme.audiences, ["a", "b"]);
        assert_eq!(
            acme.placements(),
            [("https://acme/".to_string(), None)].to_vec()
        );
        assert_eq!(acme.scope_id(None), "acme");
        assert!(entra.tenant_claim);
        assert_eq!(
            entra.placements(),
            [
                ("https://login/t1/v2.0".to_string(), Some("t1".to_string())),
                (
                    "https://login/t-2/v2.0".to_string(),
                    Some("t-2".to_string())
                )
            ]
            .to_vec()
        );
        assert_eq!(entra.scope_id(Some("t1")), "entra.t1");
    }

    #[test]
    fn every_refusal_names_the_issuer_and_what_is_wrong() {
        for (json, want) in [
            (r#"[]"#, "not a JSON object"),
            (r#"{"issuers": []}"#, "not an object of named issuers"),
            (r#"{"issuers": {}, "x": 1}"#, "unknown member"),
            (r#"{"issuers": {"Acme": {}}}"#, "lowercase letter"),
            (
                r#"{"issuers": {"a": {"issuer": "i", "keys-file": "/k"}, "a": {"issuer": "j", "keys-file": "/k"}}}"#,
                "'a' is given twice",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i", "issuer": "j", "keys-file": "/k"}}}"#,
                "'issuer' is given twice",
            ),
            (r#"{"issuers": {"default": {}}}"#, "\"default\" is the name"),
            (
                r#"{"issuers": {"a": {"keys-file": "/k"}}}"#,
                "\"issuer\" must be",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i"}}}"#,
                "exactly one key source",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i", "keys-file": "/k", "jwks-uri": "https://x"}}}"#,
                "exactly one key source",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i", "keys-file": "/k", "leeway": 5}}}"#,
                "unknown field 'leeway'",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i/{tenant}", "keys-file": "/k"}}}"#,
                "needs \"tenants\"",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i/{tenant}", "tenants": ["a/b"], "keys-file": "/k"}}}"#,
                "tenant 'a/b'",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i", "tenants": ["x"], "keys-file": "/k"}}}"#,
                "need an issuer with {tenant}",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i", "jwks-uri": "https://x/{tenant}"}}}"#,
                "\"jwks-uri\" has {tenant}",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i", "keys-file": "/k", "audience": "x", "client-id": "y"}}}"#,
                "exclude each other",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i", "keys-file": "/k"}, "b": {"issuer": "i", "keys-file": "/k"}}}"#,
                "both accept iss 'i'",
            ),
            (
                r#"{"issuers": {"a": {"issuer": "i/{tenant}", "tenants": ["x", "x"], "keys-file": "/k"}}}"#,
                "listed twice",
            ),
        ] {
            let err = parsed(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn the_bound_on_issuers_holds() {
        let many: Vec<String> = (0..=MAX_ISSUERS)
            .map(|i| format!(r#""i{i}": {{"issuer": "https://i{i}/", "keys-file": "/k"}}"#))
            .collect();
        let json = format!(r#"{{"issuers": {{{}}}}}"#, many.join(","));
        assert!(parsed(&json).unwrap_err().contains("over the limit of 64"));
    }
}
