//! The denylist's keys, derived from a token exactly as the server derives them, for the keyed
//! commands of Redis Cluster (`JWTDENY.KCHECK <entry-key> <subject-key> <token>`, …).
//!
//! ```text
//! entry-key   = <prefix>{<enc(sub)>}:<iat>
//! subject-key = <prefix>{<enc(sub)>}
//! session-key = <prefix>{<enc(sub)>}:sid:<sid>
//! sidless-key = <prefix>{<enc(sub)>}:nosid
//! replay-key  = <prefix>{<enc(sub)>}:dpop:<base64url(SHA-256(<cnf.jkt> ":" <proof jti>))>
//! ```
//!
//! `enc` percent-encodes only `%`, `{` and `}` (as `%25`, `%7B`, `%7D`), so the hash tag is the
//! whole subject; `iat` is the floor of the NumericDate (`1767225600`, `1767225600.0` and
//! `1.7672256e9` are all `1767225600`); `sid` follows the tag verbatim.
//!
//! Nothing here verifies the token: the server verifies it, derives the keys again from the
//! verified claims and refuses a command whose declared keys differ, so a forged token gains
//! nothing from these helpers. They fail ([`KeyError`]) where the server would refuse the token
//! anyway (`MALFORMED` or `BADCLAIMS`).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The server's default `jwtdeny.prefix`.
pub const DEFAULT_PREFIX: &str = "jwtdeny:";

/// The server refuses NumericDates outside ±this (the end of year 9999) as `BADCLAIMS`.
const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Why no key could be derived from a token: the server would refuse it too, with
/// [`KeyError::code`] (`MALFORMED` for the token's shape, `BADCLAIMS` for its `sub`, `iat`
/// or `sid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    code: &'static str,
    message: String,
}

impl KeyError {
    fn malformed(message: impl Into<String>) -> KeyError {
        KeyError {
            code: "MALFORMED",
            message: message.into(),
        }
    }

    /// An issuer the registry does not know: the server would answer `ERR`.
    fn usage(message: impl Into<String>) -> KeyError {
        KeyError {
            code: "ERR",
            message: message.into(),
        }
    }

    fn claims(message: impl Into<String>) -> KeyError {
        KeyError {
            code: "BADCLAIMS",
            message: message.into(),
        }
    }

    /// `MALFORMED` or `BADCLAIMS`: the code the server gives such a token.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What is wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl std::error::Error for KeyError {}

/// `sub` with only `%`, `{` and `}` percent-encoded; ordinary subjects are left as they are.
pub fn encode_subject(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len());
    for c in sub.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// The key of a subject's `REVOKEALL` cutoff, `<prefix>{<enc(sub)>}`: the first argument of
/// `JWTDENY.KREVOKEALL`, and the start of every other key of the subject.
pub fn subject_key(prefix: &str, sub: &str) -> String {
    scoped_subject_key(prefix, "", sub)
}

/// [`subject_key`] of a subject of an issuer of the server's `jwtdeny.issuers-file`:
/// `<prefix>{<scope><enc(sub)>}`, `scope` from [`Issuers`] (`""` for the default issuer).
pub fn scoped_subject_key(prefix: &str, scope: &str, sub: &str) -> String {
    format!("{prefix}{{{scope}{}}}", encode_subject(sub))
}

/// The server's issuer registry (`jwtdeny.issuers-file`): places a token by its `iss` exactly
/// as the server does, for the scoped keys of a registry issuer's subjects. An exact issuer's
/// scope is `%<name>:`; a template's (`{tenant}` in `issuer`) `%<name>.<tenant>:` for each
/// listed tenant; any other `iss` is the default issuer's, unscoped (`""`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issuers {
    by_iss: std::collections::HashMap<String, String>,
    /// `None`: a template, whose tenants' `iss` name them.
    by_name: std::collections::HashMap<String, Option<String>>,
}

impl Issuers {
    /// From the registry file's JSON (`{"issuers": {...}}`).
    pub fn from_json(registry: &Value) -> Result<Issuers, KeyError> {
        let Some(Value::Object(entries)) = registry.get("issuers") else {
            return Err(KeyError::usage("the registry has no \"issuers\" object"));
        };
        let mut out = Issuers::default();
        for (name, entry) in entries {
            let Some(Value::String(iss)) = entry.get("issuer") else {
                return Err(KeyError::usage(format!("issuer {name:?} has no issuer")));
            };
            if iss.contains("{tenant}") {
                out.by_name.insert(name.clone(), None);
                for tenant in entry
                    .get("tenants")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = tenant.as_str() {
                        out.by_iss
                            .insert(iss.replace("{tenant}", t), format!("%{name}.{t}:"));
                    }
                }
            } else {
                out.by_name.insert(name.clone(), Some(format!("%{name}:")));
                out.by_iss.insert(iss.clone(), format!("%{name}:"));
            }
        }
        Ok(out)
    }

    /// The scope of the subjects of `iss` (`""`: the default issuer's).
    pub fn scope_of(&self, iss: Option<&str>) -> &str {
        iss.and_then(|i| self.by_iss.get(i))
            .map_or("", String::as_str)
    }

    /// The scope of a token's subject, by its (unverified) `iss`.
    pub fn scope_for(&self, token: &str) -> Result<&str, KeyError> {
        let payload = payload_of(token)?;
        Ok(self.scope_of(payload.get("iss").and_then(Value::as_str)))
    }

    /// The scope `ISSUER <issuer>` names: `default`, an exact issuer's name, or an `iss` the
    /// registry accepts (a template's tenant needs its `iss`).
    pub fn scope_named(&self, issuer: &str) -> Result<String, KeyError> {
        if issuer == "default" {
            return Ok(String::new());
        }
        if let Some(scope) = self.by_iss.get(issuer) {
            return Ok(scope.clone());
        }
        match self.by_name.get(issuer) {
            Some(Some(scope)) => Ok(scope.clone()),
            Some(None) => Err(KeyError::usage(format!(
                "issuer {issuer:?} has a tenant per iss: name the iss"
            ))),
            None => Err(KeyError::usage(format!(
                "{issuer:?} is neither default, an issuer of the registry nor an iss it accepts"
            ))),
        }
    }
}

/// The scope of `ISSUER <issuer>` (`None`: the default issuer); any other issuer needs the
/// registry.
pub fn scope_named(issuers: Option<&Issuers>, issuer: Option<&str>) -> Result<String, KeyError> {
    match (issuer, issuers) {
        (None | Some("default"), _) => Ok(String::new()),
        (Some(i), Some(reg)) => reg.scope_named(i),
        (Some(i), None) => Err(KeyError::usage(format!(
            "issuer {i:?} needs the registry (Jwtdeny::issuers)"
        ))),
    }
}

fn scope_for<'r>(issuers: Option<&'r Issuers>, token: &str) -> Result<&'r str, KeyError> {
    issuers.map_or(Ok(""), |i| i.scope_for(token))
}

/// The key of one token's denylist entry, `<prefix>{<enc(sub)>}:<iat>` (`iat` in whole seconds).
pub fn entry_key(prefix: &str, sub: &str, iat: i64) -> String {
    format!("{}:{iat}", subject_key(prefix, sub))
}

/// The key of an OIDC session's cutoff, `<prefix>{<enc(sub)>}:sid:<sid>`.
pub fn session_key(prefix: &str, sub: &str, sid: &str) -> String {
    format!("{}:sid:{sid}", subject_key(prefix, sub))
}

/// The key of a subject's sid-less cutoff, `<prefix>{<enc(sub)>}:nosid`: any session's end
/// moves it, revoking the subject's tokens that carry no `sid`.
pub fn sidless_key(prefix: &str, sub: &str) -> String {
    format!("{}:nosid", subject_key(prefix, sub))
}

/// The key of a DPoP proof's one-time record: the token's `cnf.jkt` and the proof's `jti`,
/// hashed to a fixed size, in the subject's slot.
pub fn dpop_replay_key(prefix: &str, sub: &str, jkt: &str, jti: &str) -> String {
    let digest = Sha256::digest(format!("{jkt}:{jti}").as_bytes());
    format!(
        "{}:dpop:{}",
        subject_key(prefix, sub),
        URL_SAFE_NO_PAD.encode(digest)
    )
}

/// A token's payload as a JSON object, unverified.
pub fn payload_of(token: &str) -> Result<Map<String, Value>, KeyError> {
    let segments: Vec<&str> = token.split('.').collect();
    let [_, payload, _] = segments[..] else {
        return Err(KeyError::malformed(format!(
            "token has {} segments, expected 3",
            segments.len()
        )));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| KeyError::malformed("token payload is not base64url without padding"))?;
    // from_slice refuses invalid UTF-8 and lone surrogate escapes, as the server does.
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(claims)) => Ok(claims),
        Ok(_) => Err(KeyError::malformed("token payload is not a JSON object")),
        Err(e) => Err(KeyError::malformed(format!(
            "token payload is not JSON: {e}"
        ))),
    }
}

/// A NumericDate as the server reads it: whole seconds, fractions floored, within ±year 9999.
fn numeric_date(value: &Value) -> Result<i64, KeyError> {
    let Value::Number(n) = value else {
        return Err(KeyError::claims("iat is not a number"));
    };
    let out_of_range = || KeyError::claims("iat is out of range");
    let secs = if let Some(i) = n.as_i64() {
        i
    } else if n.is_u64() {
        return Err(out_of_range());
    } else {
        let f = n.as_f64().ok_or_else(out_of_range)?.floor();
        // Checked in f64 first, so the cast cannot saturate.
        if !f.is_finite() || f.abs() > MAX_NUMERIC_DATE as f64 {
            return Err(out_of_range());
        }
        f as i64
    };
    if (-MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE).contains(&secs) {
        Ok(secs)
    } else {
        Err(out_of_range())
    }
}

fn non_empty_str<'v>(claims: &'v Map<String, Value>, name: &str) -> Result<&'v str, KeyError> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(KeyError::claims(format!(
            "{name} is missing or not a non-empty string"
        ))),
    }
}

/// `(sub, iat)` of a token, unverified: what its entry key is made of.
pub fn claims_of(token: &str) -> Result<(String, i64), KeyError> {
    let claims = payload_of(token)?;
    let sub = non_empty_str(&claims, "sub")?.to_owned();
    let iat = numeric_date(
        claims
            .get("iat")
            .ok_or_else(|| KeyError::claims("iat is missing"))?,
    )?;
    Ok((sub, iat))
}

/// A token's OIDC session as the server reads it: its `sid` claim when that is a non-empty
/// string, else `None` (a token of no session).
pub fn sid_of(token: &str) -> Result<Option<String>, KeyError> {
    Ok(match payload_of(token)?.get("sid") {
        Some(Value::String(sid)) if !sid.is_empty() => Some(sid.clone()),
        _ => None,
    })
}

/// The keys of one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeys {
    /// `<prefix>{<enc(sub)>}:<iat>`
    pub entry: String,
    /// `<prefix>{<enc(sub)>}`
    pub subject: String,
    /// `KSCHECK`'s third key: the session key of a token with a `sid`, else the subject's
    /// sid-less key.
    pub third: String,
    /// The session key, for a token with a `sid`.
    pub session: Option<String>,
}

/// The keys a token's keyed commands declare.
pub fn keys_for(prefix: &str, token: &str) -> Result<TokenKeys, KeyError> {
    keys_for_issuers(prefix, None, token)
}

/// [`keys_for`] on a server with an issuer registry: a registry issuer's subject is scoped.
pub fn keys_for_issuers(
    prefix: &str,
    issuers: Option<&Issuers>,
    token: &str,
) -> Result<TokenKeys, KeyError> {
    let (sub, iat) = claims_of(token)?;
    let subject = scoped_subject_key(prefix, scope_for(issuers, token)?, &sub);
    let session = sid_of(token)?.map(|sid| format!("{subject}:sid:{sid}"));
    Ok(TokenKeys {
        entry: format!("{subject}:{iat}"),
        third: session
            .clone()
            .unwrap_or_else(|| format!("{subject}:nosid")),
        subject,
        session,
    })
}

/// The keys `JWTDENY.KLOGOUT` declares for a logout token (read unverified): the subject key,
/// the session key (the subject key again for a logout token without `sid`), and the
/// sid-less key. A `sid` without `sub` cannot be placed: the server refuses it.
pub fn logout_keys_for(prefix: &str, logout_token: &str) -> Result<[String; 3], KeyError> {
    logout_keys_for_issuers(prefix, None, logout_token)
}

/// [`logout_keys_for`] on a server with an issuer registry.
pub fn logout_keys_for_issuers(
    prefix: &str,
    issuers: Option<&Issuers>,
    logout_token: &str,
) -> Result<[String; 3], KeyError> {
    let claims = payload_of(logout_token)?;
    let sub = non_empty_str(&claims, "sub")?;
    let scope = issuers.map_or("", |i| {
        i.scope_of(claims.get("iss").and_then(Value::as_str))
    });
    let subject = scoped_subject_key(prefix, scope, sub);
    let session = match claims.get("sid") {
        None => subject.clone(),
        Some(_) => format!("{subject}:sid:{}", non_empty_str(&claims, "sid")?),
    };
    let sidless = format!("{subject}:nosid");
    Ok([subject, session, sidless])
}

/// The four keys `JWTDENY.KCHECKDPOP` declares: the entry, subject and third keys of the token
/// and the proof's one-time record. The token must carry `cnf.jkt` and the proof a `jti`
/// (both read unverified), or the server refuses the request (`DPOP`).
pub fn dpop_keys_for(prefix: &str, token: &str, proof: &str) -> Result<[String; 4], KeyError> {
    dpop_keys_for_issuers(prefix, None, token, proof)
}

/// [`dpop_keys_for`] on a server with an issuer registry.
pub fn dpop_keys_for_issuers(
    prefix: &str,
    issuers: Option<&Issuers>,
    token: &str,
    proof: &str,
) -> Result<[String; 4], KeyError> {
    let keys = keys_for_issuers(prefix, issuers, token)?;
    let jkt = match payload_of(token)?.get("cnf") {
        Some(Value::Object(cnf)) => match cnf.get("jkt") {
            Some(Value::String(jkt)) => Some(jkt.clone()),
            _ => None,
        },
        _ => None,
    };
    let jti = match payload_of(proof)?.get("jti") {
        Some(Value::String(jti)) => Some(jti.clone()),
        _ => None,
    };
    let (Some(jkt), Some(jti)) = (jkt, jti) else {
        return Err(KeyError {
            code: "DPOP",
            message: "the token has no cnf.jkt or the proof no jti: not a DPoP request".into(),
        });
    };
    let digest = Sha256::digest(format!("{jkt}:{jti}").as_bytes());
    let replay = format!("{}:dpop:{}", keys.subject, URL_SAFE_NO_PAD.encode(digest));
    Ok([keys.entry, keys.subject, keys.third, replay])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with(payload: &str) -> String {
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.sig",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn cases(name: &str) -> Vec<Value> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/key-cases.json");
        let text = std::fs::read_to_string(path).expect("clients/testdata/key-cases.json");
        let all: Value = serde_json::from_str(&text).expect("key-cases.json is JSON");
        all[name].as_array().expect(name).clone()
    }

    /// Every case of the file shared with the Node and Python helpers.
    #[test]
    fn token_keys_match_the_shared_cases() {
        let cases = cases("cases");
        assert!(cases.len() > 40, "{} cases", cases.len());
        for case in cases {
            let payload = case["payload"].as_str().unwrap();
            let token = token_with(payload);
            let got = keys_for(DEFAULT_PREFIX, &token);
            match &case["error"] {
                Value::Bool(true) => assert!(got.is_err(), "{payload}: {got:?}"),
                Value::String(may) if may == "may" => {}
                _ => {
                    let keys = got.unwrap_or_else(|e| panic!("{payload}: {e}"));
                    assert_eq!(keys.entry, case["entry"].as_str().unwrap(), "{payload}");
                    assert_eq!(keys.subject, case["subject"].as_str().unwrap(), "{payload}");
                    let session = case.get("session").and_then(Value::as_str);
                    assert_eq!(keys.session.as_deref(), session, "{payload}");
                    let third = session.map_or(format!("{}:nosid", keys.subject), str::to_owned);
                    assert_eq!(keys.third, third, "{payload}");
                }
            }
        }
    }

    #[test]
    fn logout_keys_match_the_shared_cases() {
        let cases = cases("logout_cases");
        assert!(cases.len() >= 8);
        for case in cases {
            let payload = case["payload"].as_str().unwrap();
            let got = logout_keys_for(DEFAULT_PREFIX, &token_with(payload));
            if case["error"] == Value::Bool(true) {
                assert!(got.is_err(), "{payload}: {got:?}");
                continue;
            }
            let [subject, session, sidless] = got.unwrap_or_else(|e| panic!("{payload}: {e}"));
            assert_eq!(subject, case["subject"].as_str().unwrap(), "{payload}");
            assert_eq!(session, case["session"].as_str().unwrap(), "{payload}");
            assert_eq!(sidless, format!("{subject}:nosid"));
        }
    }

    #[test]
    fn errors_carry_the_server_code() {
        assert_eq!(keys_for("p:", "a.b").unwrap_err().code(), "MALFORMED");
        assert_eq!(keys_for("p:", "a.b=.c").unwrap_err().code(), "MALFORMED");
        let no_iat = token_with(r#"{"sub":"a"}"#);
        assert_eq!(keys_for("p:", &no_iat).unwrap_err().code(), "BADCLAIMS");
        let err = keys_for("p:", &token_with("[1]")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MALFORMED token payload is not a JSON object"
        );
    }

    #[test]
    fn other_prefixes_and_the_replay_key() {
        let token = token_with(r#"{"sub":"a}b","iat":7,"cnf":{"jkt":"K"}}"#);
        let keys = keys_for("app:", &token).unwrap();
        assert_eq!(keys.entry, "app:{a%7Db}:7");
        assert_eq!(keys.third, "app:{a%7Db}:nosid");
        let proof = token_with(r#"{"jti":"j-1","htm":"GET"}"#);
        let [entry, subject, third, replay] = dpop_keys_for("app:", &token, &proof).unwrap();
        assert_eq!(
            (entry, subject, third),
            (keys.entry, keys.subject, keys.third)
        );
        // base64url(SHA-256("K:j-1")), as the server and the Node helper compute it.
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(b"K:j-1"));
        assert_eq!(replay, format!("app:{{a%7Db}}:dpop:{digest}"));
        assert_eq!(digest.len(), 43);
        let unbound = token_with(r#"{"sub":"a","iat":7}"#);
        assert_eq!(
            dpop_keys_for("app:", &unbound, &proof).unwrap_err().code(),
            "DPOP"
        );
    }

    fn registry() -> Issuers {
        let reg = serde_json::json!({"issuers": {
            "acme": {"issuer": "https://acme.example/", "keys-file": "/k"},
            "kc": {"issuer": "https://sso/realms/{tenant}", "tenants": ["t1", "t-2"]},
        }});
        Issuers::from_json(&reg).unwrap()
    }

    #[test]
    fn issuers_place_a_token_by_its_iss() {
        let reg = registry();
        let at = |iss: &str| format!(r#"{{"sub":"a%b","iat":7,"sid":"s","iss":{iss}}}"#);
        let cases = [
            (r#""https://acme.example/""#, "%acme:"),
            (r#""https://sso/realms/t1""#, "%kc.t1:"),
            (r#""https://sso/realms/t-2""#, "%kc.t-2:"),
            // Not a listed tenant, not the template itself, not exactly the iss, not a string.
            (r#""https://sso/realms/t3""#, ""),
            (r#""https://sso/realms/{tenant}""#, ""),
            (r#""https://acme.example""#, ""),
            (r#""HTTPS://ACME.EXAMPLE/""#, ""),
            ("7", ""),
            ("null", ""),
        ];
        for (iss, scope) in cases {
            let token = token_with(&at(iss));
            assert_eq!(reg.scope_for(&token).unwrap(), scope, "{iss}");
            let k = keys_for_issuers("p:", Some(&reg), &token).unwrap();
            assert_eq!(k.subject, format!("p:{{{scope}a%25b}}"), "{iss}");
            assert_eq!(k.entry, format!("{}:7", k.subject));
            assert_eq!(k.session.as_deref(), Some(&*format!("{}:sid:s", k.subject)));
            assert_eq!(k.third, format!("{}:sid:s", k.subject));
            let [subject, session, sidless] =
                logout_keys_for_issuers("p:", Some(&reg), &token).unwrap();
            assert_eq!((subject, session), (k.subject.clone(), k.third.clone()));
            assert_eq!(sidless, format!("{}:nosid", k.subject));
        }
        // Without a registry: today's keys, whatever the iss.
        let token = token_with(&at(r#""https://acme.example/""#));
        assert_eq!(
            keys_for_issuers("p:", None, &token).unwrap(),
            keys_for("p:", &token).unwrap()
        );
        let proof = token_with(r#"{"jti":"j"}"#);
        let bound =
            token_with(r#"{"sub":"a","iat":7,"iss":"https://sso/realms/t1","cnf":{"jkt":"K"}}"#);
        let [.., replay] = dpop_keys_for_issuers("p:", Some(&reg), &bound, &proof).unwrap();
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(b"K:j"));
        assert_eq!(replay, format!("p:{{%kc.t1:a}}:dpop:{digest}"));
    }

    #[test]
    fn issuer_names_and_iss_name_a_scope() {
        let reg = registry();
        assert_eq!(reg.scope_named("default").unwrap(), "");
        assert_eq!(reg.scope_named("acme").unwrap(), "%acme:");
        assert_eq!(reg.scope_named("https://acme.example/").unwrap(), "%acme:");
        assert_eq!(
            reg.scope_named("https://sso/realms/t-2").unwrap(),
            "%kc.t-2:"
        );
        for bad in ["kc", "nobody", "https://sso/realms/t3", "%acme:"] {
            assert_eq!(reg.scope_named(bad).unwrap_err().code(), "ERR", "{bad}");
        }
        assert_eq!(scope_named(None, None).unwrap(), "");
        assert_eq!(scope_named(None, Some("default")).unwrap(), "");
        assert_eq!(scope_named(None, Some("acme")).unwrap_err().code(), "ERR");
        assert_eq!(scope_named(Some(&reg), Some("acme")).unwrap(), "%acme:");
        assert_eq!(
            scoped_subject_key("p:", "%acme:", "{x}"),
            "p:{%acme:%7Bx%7D}"
        );
    }

    #[test]
    fn a_registry_without_issuers_is_refused() {
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"issuers": []}),
            serde_json::json!({"issuers": {"a": {"keys-file": "/k"}}}),
        ] {
            assert_eq!(Issuers::from_json(&bad).unwrap_err().code(), "ERR", "{bad}");
        }
    }
}
