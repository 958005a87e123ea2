//! Parsing and verifying a compact JWS into the claims jwtdeny needs. Knows nothing of Redis.
//!
//! The checks run in a fixed order — shape, algorithm, key, signature, claims, time — so that a
//! token which is not authentic learns nothing about how its claims would have been judged.

use crate::dpop::Binding;
use crate::error::{quote, Error};
use crate::keys::{alg_name, parse_alg, AlgSet, KeySet};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Keeps every `× 1000` in range.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// What the server's configuration asks of a token, besides its signature.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub algorithms: AlgSet,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    /// The `typ` header an access token must have (`at+jwt`); `None`: any type but another
    /// kind of JWT's (see [`check_access_type`]).
    pub typ: Option<&'a str>,
    pub max_token_bytes: usize,
    /// Longest `exp - iat` accepted, in seconds; `None` for no limit.
    pub max_lifetime: Option<i64>,
    /// An issuer of the registry with several audiences: `aud` must contain one of them (in
    /// place of `audience`).
    pub audiences: &'a [String],
    /// Cognito's rule for access tokens, which carry no `aud`: `token_use` is `access` and
    /// `client_id` one of these.
    pub client_ids: &'a [String],
    /// A template issuer's tenant, which the token's `tid` must equal (Entra ID).
    pub tenant: Option<&'a str>,
}

/// Where a token belongs, chosen by its (not yet verified) `iss`: the keys that may verify it,
/// the rules it is judged by, and the scope of its subject's keys (`keyscheme::scope`; `None`
/// for the default issuer).
pub struct Placed<'a> {
    pub keys: &'a KeySet,
    pub policy: Policy<'a>,
    pub scope: Option<Arc<str>>,
}

/// The verified claims that matter to the denylist; NumericDates are canonical whole seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Shared, so a cache hit hands it out without copying.
    pub sub: Arc<str>,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
    /// The OIDC session the token belongs to (`sid`), when it names one: a non-empty string.
    /// Any other value is no session at all, as it was before jwtdeny read `sid`.
    pub sid: Option<Arc<str>>,
    /// What the token is bound to (`cnf`: a DPoP key, a client certificate), if anything.
    pub binding: Option<Arc<Binding>>,
    /// The scope of its subject's keys: its issuer's, for an issuer of the registry.
    pub scope: Option<Arc<str>>,
}

/// The times a verified token is judged by on every command. Apart from its subject, so that
/// what the verification cache keeps once the token's keys are built holds no strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
}

impl Claims {
    pub fn lifetime(&self) -> Lifetime {
        Lifetime {
            iat: self.iat,
            exp: self.exp,
            nbf: self.nbf,
        }
    }

    /// See [`Lifetime::expires_at_ms`].
    pub fn expires_at_ms(&self, leeway: i64) -> i64 {
        self.lifetime().expires_at_ms(leeway)
    }

    /// See [`Lifetime::check_time`].
    pub fn check_time(&self, now_ms: i64, leeway: i64) -> Result<(), Error> {
        self.lifetime().check_time(now_ms, leeway)
    }
}

impl Lifetime {
    /// The instant (ms since the epoch) from which the token is expired, and at which its denylist
    /// entry may disappear: one number for both, so they can never disagree.
    pub fn expires_at_ms(&self, leeway: i64) -> i64 {
        self.exp.saturating_add(leeway).saturating_mul(1000)
    }

    /// RFC 7519 §4.1.4/§4.1.5: refused on or after `exp`, and before `nbf`, give or take leeway.
    pub fn check_time(&self, now_ms: i64, leeway: i64) -> Result<(), Error> {
        if now_ms >= self.expires_at_ms(leeway) {
            return Err(Error::Expired(format!(
                "token expired at {} (exp) with {leeway}s leeway",
                self.exp
            )));
        }
        if let Some(nbf) = self.nbf {
            if now_ms < nbf.saturating_sub(leeway).saturating_mul(1000) {
                return Err(Error::NotYet(format!(
                    "token is not valid before {nbf} (nbf) with {leeway}s leeway"
                )));
            }
        }
        Ok(())
    }
}

/// The header members every token is judged by. Each kind of token reads its own header
/// struct (a logout token also reads `typ`), so that what one kind reads never changes how
/// another kind's header parses.
pub(crate) trait JoseHeader {
    fn alg(&self) -> Option<&Value>;
    fn kid(&self) -> Option<&Value>;
    fn has_crit(&self) -> bool;
}

/// An access token's header. A logout token reads its own (`logout::LogoutHeader`): what one
/// kind reads must never change how the other's header parses.
#[derive(Deserialize)]
pub(crate) struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
    typ: Option<Value>,
}

/// [`JoseHeader`] for a header struct with `alg`, `kid` and `crit` members.
macro_rules! jose_header {
    ($header:ty) => {
        impl $crate::token::JoseHeader for $header {
            fn alg(&self) -> Option<&serde_json::Value> {
                self.alg.as_ref()
            }
            fn kid(&self) -> Option<&serde_json::Value> {
                self.kid.as_ref()
            }
            fn has_crit(&self) -> bool {
                self.crit.is_some()
            }
        }
    };
}
pub(crate) use jose_header;

jose_header!(RawHeader);

#[derive(Deserialize)]
pub(crate) struct RawClaims {
    sub: Option<Value>,
    iat: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
    sid: Option<SessionId>,
    cnf: Option<Value>,
    /// Cognito's access tokens: `client_id` in place of `aud`, `token_use` `access`.
    client_id: Option<Value>,
    token_use: Option<Value>,
    /// Entra ID's tenant.
    tid: Option<Value>,
    /// Present (with any value, `null` included) only in Security Event Tokens such as
    /// back-channel logout tokens: never in an access token.
    #[serde(default, deserialize_with = "present")]
    events: Option<IgnoredAny>,
}

/// Present with any value, `null` included (`Option` alone reads `null` as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IgnoredAny>, D::Error> {
    IgnoredAny::deserialize(d).map(Some)
}

/// RFC 8725 §3.11 explicit typing, for every access-token command: a token typed as another
/// kind of JWT (a back-channel logout token, any Security Event Token) or carrying the `events`
/// claim of one is never taken for an access token, whatever `aud` it names (a logout token's
/// `aud` is the client id an API may well accept). With `jwtdeny.token-typ` set, the token's
/// `typ` must be that one (RFC 9068's `at+jwt`). Media types are case-insensitive and may omit
/// `application/` (RFC 7515 §4.1.9).
fn check_access_type(header: &RawHeader, claims: &RawClaims, policy: &Policy) -> Result<(), Error> {
    let typ = match &header.typ {
        Some(Value::String(t)) => Some(t.as_str()),
        _ => None,
    };
    let bare = typ.map(|t| match t.get(..12) {
        Some(head) if head.eq_ignore_ascii_case("application/") => &t[12..],
        _ => t,
    });
    if let Some(b) = bare
        .filter(|b| b.eq_ignore_ascii_case("logout+jwt") || b.eq_ignore_ascii_case("secevent+jwt"))
    {
        return Err(Error::BadClaims(format!(
            "typ {} is not an access token's: another kind of JWT",
            quote(b)
        )));
    }
    if claims.events.is_some() {
        return Err(Error::BadClaims(
            "the events claim makes it a security event (a logout token), not an access token"
                .into(),
        ));
    }
    if let Some(want) = policy.typ {
        if !bare.is_some_and(|b| b.eq_ignore_ascii_case(want)) {
            return Err(Error::BadClaims(match typ {
                Some(t) => format!("typ {} is not {want} (jwtdeny.token-typ)", quote(t)),
                None => format!("typ is missing and jwtdeny.token-typ requires {want}"),
            }));
        }
    }
    Ok(())
}

/// An access token's `sid` as the claims need it: a non-empty string goes straight into an
/// `Arc<str>` (no intermediate `Value`), anything else is skipped without being built.
struct SessionId(Option<Arc<str>>);

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SessionId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SessionId, E> {
                Ok(SessionId((!s.is_empty()).then(|| Arc::from(s))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SessionId, E> {
                Ok(SessionId(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SessionId, E> {
                Ok(SessionId(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SessionId, E> {
                Ok(SessionId(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SessionId, E> {
                Ok(SessionId(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<SessionId, E> {
                Ok(SessionId(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SessionId, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(SessionId(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SessionId, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(SessionId(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A token split and decoded, not yet trusted.
pub(crate) struct Unverified<'t, H = RawHeader, C = RawClaims> {
    pub(crate) header: H,
    pub(crate) claims: C,
    /// `base64(header) "." base64(payload)`, the bytes the signature covers.
    pub(crate) signing_input: &'t [u8],
    pub(crate) signature: Vec<u8>,
}

/// Verifies `token` against `keys` and `policy`. Does not look at the clock: call
/// [`Claims::check_time`] for that, after any lookup whose result must agree with it.
pub fn verify(token: &[u8], keys: &KeySet, policy: &Policy) -> Result<Claims, Error> {
    verify_placed(token, policy.max_token_bytes, |_| {
        Ok(one_issuer(keys, policy))
    })
}

/// The placement of a server with one issuer: its `iss` is judged with the other claims.
fn one_issuer<'k>(keys: &'k KeySet, policy: &Policy<'k>) -> Placed<'k> {
    Placed {
        keys,
        policy: policy.clone(),
        scope: None,
    }
}

/// Like [`verify`] for a server with several issuers: `place` chooses the keys and rules by the
/// token's `iss` (a string, or `None`) before any key is looked up, and may refuse it there (an
/// issuer nobody registered). Only the chosen issuer's keys can verify the token.
pub fn verify_placed<'k>(
    token: &[u8],
    max_token_bytes: usize,
    place: impl FnOnce(Option<&str>) -> Result<Placed<'k>, Error>,
) -> Result<Claims, Error> {
    let t: Unverified = split(token, max_token_bytes)?;
    let placed = place(issuer_of(&t))?;
    check_signature(&t, placed.keys, &placed.policy)?;
    check_access_type(&t.header, &t.claims, &placed.policy)?;
    let mut c = claims(&t.claims, &placed.policy)?;
    c.scope = placed.scope;
    Ok(c)
}

/// The (not yet verified) `iss` of a split token: what [`Placed`] is chosen by.
fn issuer_of<'t, H>(t: &'t Unverified<'_, H, RawClaims>) -> Option<&'t str> {
    match &t.claims.iss {
        Some(Value::String(iss)) => Some(iss.as_str()),
        _ => None,
    }
}

/// A token's `iss`, not verified: only to choose which issuer's keys and rules judge it.
pub fn unverified_issuer(token: &[u8], max_token_bytes: usize) -> Option<String> {
    let t: Unverified = split(token, max_token_bytes).ok()?;
    issuer_of(&t).map(str::to_string)
}

/// The payload JSON of a token exactly as its issuer signed it. Only meaningful for a token
/// that [`verify`] accepted.
pub fn payload(token: &[u8]) -> Result<Vec<u8>, Error> {
    let segment = token
        .split(|b| *b == b'.')
        .nth(1)
        .ok_or_else(|| Error::Malformed("token has no payload segment".into()))?;
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Error::Malformed("payload is not valid base64url".into()))
}

/// What a diagnostic may show of a token: the header once it parses, the claims only once the
/// signature holds (a forged token's claims are attacker text, not facts).
#[derive(Debug, Default)]
pub struct Inspection {
    pub alg: Option<String>,
    pub kid: Option<String>,
    pub sub: Option<String>,
    pub iat: Option<i64>,
    pub exp: Option<i64>,
    /// The session the token belongs to, as [`Claims::sid`] reads it.
    pub sid: Option<String>,
    /// The scope of its subject's keys, once its issuer is known (see [`Claims::scope`]).
    pub scope: Option<Arc<str>>,
}

/// Like [`verify`], and also returns whatever could be shown of the token.
pub fn inspect(
    token: &[u8],
    keys: &KeySet,
    policy: &Policy,
) -> (Inspection, Result<Claims, Error>) {
    inspect_placed(token, policy.max_token_bytes, |_| {
        Ok(one_issuer(keys, policy))
    })
}

/// [`inspect`] placed by `iss` as [`verify_placed`] places it; [`Inspection::scope`] is the
/// chosen issuer's scope.
pub fn inspect_placed<'k>(
    token: &[u8],
    max_token_bytes: usize,
    place: impl FnOnce(Option<&str>) -> Result<Placed<'k>, Error>,
) -> (Inspection, Result<Claims, Error>) {
    let mut seen = Inspection::default();
    let t: Unverified = match split(token, max_token_bytes) {
        Ok(t) => t,
        Err(e) => return (seen, Err(e)),
    };
    seen.alg = t
        .header
        .alg
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_string);
    seen.kid = t
        .header
        .kid
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_string);
    let placed = match place(issuer_of(&t)) {
        Ok(p) => p,
        Err(e) => return (seen, Err(e)),
    };
    seen.scope = placed.scope.clone();
    let policy = &placed.policy;
    if let Err(e) = check_signature(&t, placed.keys, policy) {
        return (seen, Err(e));
    }
    seen.sub = t
        .claims
        .sub
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_string);
    seen.iat = numeric_date(t.claims.iat.as_ref(), "iat").ok().flatten();
    seen.exp = numeric_date(t.claims.exp.as_ref(), "exp").ok().flatten();
    seen.sid = t
        .claims
        .sid
        .as_ref()
        .and_then(|s| s.0.as_deref())
        .map(str::to_string);
    let judged = check_access_type(&t.header, &t.claims, policy)
        .and_then(|()| claims(&t.claims, policy))
        .map(|mut c| {
            c.scope = placed.scope;
            c
        });
    (seen, judged)
}

/// The `kid` a token's header names, if it is a string (nothing is verified): used only to
/// decide whether fresh keys might help, never to judge the token.
pub fn header_kid(token: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct KidOnly {
        kid: Option<Value>,
    }
    match peek_header::<KidOnly>(token)?.kid {
        Some(Value::String(kid)) => Some(kid),
        _ => None,
    }
}

/// Whether a token claims an HMAC algorithm, from its header alone (nothing is verified): used
/// only to choose where to verify it, never to judge it.
pub fn is_hmac(token: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: Option<String>,
    }
    peek_header::<AlgOnly>(token)
        .and_then(|h| h.alg)
        .is_some_and(|alg| alg.starts_with("HS"))
}

/// The members `T` reads of a token's header, without any check: for routing decisions only.
fn peek_header<T: for<'de> Deserialize<'de>>(token: &[u8]) -> Option<T> {
    let header = token.split(|b| *b == b'.').next().unwrap_or_default();
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Steps two to four: algorithm, key, signature.
pub(crate) fn check_signature<H: JoseHeader, C>(
    t: &Unverified<H, C>,
    keys: &KeySet,
    policy: &Policy,
) -> Result<(), Error> {
    let alg = match t.header.alg() {
        None => return Err(Error::BadAlg("header has no alg".into())),
        Some(Value::String(name)) if name.eq_ignore_ascii_case("none") => {
            return Err(Error::BadAlg(
                "alg none (an unsigned token) is never accepted".into(),
            ))
        }
        Some(Value::String(name)) => parse_alg(name)
            .ok_or_else(|| Error::BadAlg(format!("alg {} is not supported", quote(name))))?,
        Some(_) => return Err(Error::BadAlg("alg is not a string".into())),
    };
    if !policy.algorithms.contains(alg) {
        return Err(Error::BadAlg(format!(
            "alg {} is not allowed by jwtdeny.algorithms",
            alg_name(alg)
        )));
    }
    let kid = match t.header.kid() {
        Some(Value::String(kid)) => Some(kid.as_str()),
        _ => None, // split() refused any other type
    };
    let key = keys.select(kid, alg)?;

    let verifier = (DEFAULT_PROVIDER.verifier_factory)(&alg, &key.decoding)
        .map_err(|e| Error::Internal(format!("cannot build a {} verifier: {e}", alg_name(alg))))?;
    if verifier.verify(t.signing_input, &t.signature).is_err() {
        return Err(Error::BadSig(format!(
            "{} signature does not verify",
            alg_name(alg)
        )));
    }
    Ok(())
}

/// Step one: size, three segments, strict base64url, JSON objects. Nothing here is trusted.
pub(crate) fn split<H, C>(token: &[u8], max_bytes: usize) -> Result<Unverified<'_, H, C>, Error>
where
    H: JoseHeader + for<'de> Deserialize<'de>,
    C: for<'de> Deserialize<'de>,
{
    if token.len() > max_bytes {
        return Err(Error::Malformed(format!(
            "token is {} bytes, over jwtdeny.max-token-bytes ({max_bytes})",
            token.len()
        )));
    }
    if token.is_empty() {
        return Err(Error::Malformed("token is empty".into()));
    }
    let segments = memchr::memchr_iter(b'.', token).count() + 1;
    if segments != 3 {
        let hint = if segments == 5 {
            " (looks like an encrypted JWE, which is not supported)"
        } else {
            ""
        };
        return Err(Error::Malformed(format!(
            "token has {segments} segments, expected 3 (header.payload.signature){hint}"
        )));
    }
    let mut dots = memchr::memchr_iter(b'.', token);
    let (h64, p64, s64) = match (dots.next(), dots.next()) {
        (Some(a), Some(b)) => match (token.get(..a), token.get(a + 1..b), token.get(b + 1..)) {
            (Some(h), Some(p), Some(s)) => (h, p, s),
            _ => return Err(Error::Malformed("token does not have 3 segments".into())),
        },
        _ => return Err(Error::Malformed("token does not have 3 segments".into())),
    };
    let decode = |seg: &[u8], what: &str| {
        URL_SAFE_NO_PAD
            .decode(seg)
            .map_err(|_| Error::Malformed(format!("{what} is not valid base64url")))
    };
    let header_json = decode(h64, "header")?;
    let payload_json = decode(p64, "payload")?;
    let signature = decode(s64, "signature")?;

    let header: H = json_object(&header_json, "header")?;
    if !matches!(header.kid(), None | Some(Value::String(_))) {
        return Err(Error::Malformed("header kid is not a string".into()));
    }
    if header.has_crit() {
        // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
        return Err(Error::Malformed(
            "header has crit extensions, which jwtdeny does not support".into(),
        ));
    }
    let claims: C = json_object(&payload_json, "payload")?;
    Ok(Unverified {
        header,
        claims,
        signing_input: &token[..h64.len() + 1 + p64.len()],
        signature,
    })
}

/// Parses a JSON object (not an array, which serde would also map onto a struct). Duplicate
/// members that jwtdeny reads are refused: two parsers must never see two different tokens.
fn json_object<T: for<'de> Deserialize<'de>>(json: &[u8], what: &str) -> Result<T, Error> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Error::Malformed(format!("{what} is not a JSON object")));
    }
    // serde_json skips members it is not asked for without checking their bytes: RFC 7519
    // requires UTF-8 JSON throughout, and WITHCLAIMS hands the payload on as JSON.
    let text = std::str::from_utf8(json)
        .map_err(|_| Error::Malformed(format!("{what} is not valid UTF-8")))?;
    serde_json::from_str(text).map_err(|e| {
        let why = if e.is_data() {
            e.to_string()
        } else {
            "not valid JSON".to_string()
        };
        Error::Malformed(format!("{what} is not a usable JSON object: {why}"))
    })
}

/// Step five: the claims of an authentic token.
fn claims(raw: &RawClaims, policy: &Policy) -> Result<Claims, Error> {
    let sub = match &raw.sub {
        Some(Value::String(s)) if !s.is_empty() => Arc::from(s.as_str()),
        Some(_) => return Err(Error::BadClaims("sub is not a non-empty string".into())),
        None => return Err(Error::BadClaims("sub is missing".into())),
    };
    let iat = numeric_date(raw.iat.as_ref(), "iat")?
        .ok_or_else(|| Error::BadClaims("iat is missing".into()))?;
    let exp = numeric_date(raw.exp.as_ref(), "exp")?
        .ok_or_else(|| Error::BadClaims("exp is missing".into()))?;
    let nbf = numeric_date(raw.nbf.as_ref(), "nbf")?;
    if let Some(max) = policy.max_lifetime {
        // Both dates are bounded, so the difference cannot overflow.
        if exp - iat > max {
            return Err(Error::BadClaims(format!(
                "lifetime exp - iat = {}s exceeds jwtdeny.max-lifetime ({max}s)",
                exp - iat
            )));
        }
    }

    check_issuer(raw.iss.as_ref(), policy.issuer)?;
    if !policy.audiences.is_empty() {
        check_audiences(raw.aud.as_ref(), policy.audiences)?;
    } else if let Some(want) = policy.audience {
        check_audience(raw.aud.as_ref(), want, "jwtdeny.audience")?;
    }
    if !policy.client_ids.is_empty() {
        check_client(raw, policy.client_ids)?;
    }
    if let Some(tenant) = policy.tenant {
        if raw.tid.as_ref().and_then(Value::as_str) != Some(tenant) {
            return Err(Error::BadClaims(format!(
                "tid is not the tenant of its iss ({})",
                quote(tenant)
            )));
        }
    }
    let sid = raw.sid.as_ref().and_then(|s| s.0.clone());
    let binding = match &raw.cnf {
        None => None,
        Some(cnf) => Some(Arc::new(Binding::from_cnf(cnf)?)),
    };
    Ok(Claims {
        sub,
        iat,
        exp,
        nbf,
        sid,
        binding,
        scope: None,
    })
}

/// `aud` (a string or an array) must contain one of an issuer's audiences.
fn check_audiences(aud: Option<&Value>, want: &[String]) -> Result<(), Error> {
    let has = |a: &str| want.iter().any(|w| w == a);
    let ok = match aud {
        Some(Value::String(aud)) => has(aud),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(has),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(Error::BadClaims(if aud.is_none() {
        "aud is missing and its issuer requires one".into()
    } else {
        "aud contains none of its issuer's audiences".into()
    }))
}

/// Cognito's access tokens: `token_use` is `access` (an ID token says `id`) and `client_id` is
/// one of the issuer's app clients.
fn check_client(raw: &RawClaims, want: &[String]) -> Result<(), Error> {
    if raw.token_use.as_ref().and_then(Value::as_str) != Some("access") {
        return Err(Error::BadClaims(
            "token_use is not \"access\" (its issuer takes access tokens by client-id)".into(),
        ));
    }
    match raw.client_id.as_ref().and_then(Value::as_str) {
        Some(id) if want.iter().any(|w| w == id) => Ok(()),
        Some(id) => Err(Error::BadClaims(format!(
            "client_id {} is not one of its issuer's",
            quote(id)
        ))),
        None => Err(Error::BadClaims(
            "client_id is missing and its issuer requires one".into(),
        )),
    }
}

/// The claims every kind of token is judged by alike (an access token here, a logout token in
/// `logout`): one checker, so the two can never judge `iss` or `aud` differently. Their header
/// structs stay apart on purpose: what one kind reads must not change how the other parses.
///
/// `iss` must equal `want` when one is configured (`jwtdeny.issuer`).
pub(crate) fn check_issuer(iss: Option<&Value>, want: Option<&str>) -> Result<(), Error> {
    let Some(want) = want else {
        return Ok(());
    };
    match iss {
        Some(Value::String(iss)) if iss == want => Ok(()),
        Some(Value::String(iss)) => Err(Error::BadClaims(format!(
            "iss {} does not match jwtdeny.issuer",
            quote(iss)
        ))),
        Some(_) => Err(Error::BadClaims("iss is not a string".into())),
        None => Err(Error::BadClaims(
            "iss is missing and jwtdeny.issuer requires one".into(),
        )),
    }
}

/// `aud` (a string or an array) must contain `want`, the value of the config named `config`.
pub(crate) fn check_audience(aud: Option<&Value>, want: &str, config: &str) -> Result<(), Error> {
    let ok = match aud {
        Some(Value::String(aud)) => aud == want,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want)),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(Error::BadClaims(if aud.is_none() {
        format!("aud is missing and {config} requires one")
    } else {
        format!("aud does not contain {config}")
    }))
}

/// A NumericDate (RFC 7519 §2) as whole seconds: `1767225600`, `1767225600.0` and `1.7672256e9`
/// are one second; fractions are floored.
pub fn numeric_date(value: Option<&Value>, name: &str) -> Result<Option<i64>, Error> {
    let n = match value {
        None => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(Error::BadClaims(format!("{name} is not a number"))),
    };
    let out_of_range = || Error::BadClaims(format!("{name} is out of range"));
    let secs = if let Some(i) = n.as_i64() {
        i
    } else if n.is_u64() {
        return Err(out_of_range());
    } else {
        let f = n.as_f64().ok_or_else(out_of_range)?.floor();
        // The bound check happens in f64 first so the cast below cannot saturate silently.
        if !f.is_finite() || f.abs() > MAX_NUMERIC_DATE as f64 {
            return Err(out_of_range());
        }
        f as i64
    };
    if !(-MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE).contains(&secs) {
        return Err(out_of_range());
    }
    Ok(Some(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SHARED_JWKS: &str = include_str!("../../tests/vectors/jwks.json");
    const VECTORS: &str = include_str!("../../tests/vectors/vectors.json");
    const HS256_SECRET: &[u8] = include_bytes!("../../tests/vectors/private/shared-hs256.key");
    const RSA_PEM: &[u8] = include_bytes!("../../tests/vectors/private/shared-rsa.pem");

    fn keys() -> KeySet {
        KeySet::from_json(SHARED_JWKS.as_bytes()).unwrap()
    }

    fn policy() -> Policy<'static> {
        Policy {
            algorithms: AlgSet::ALL,
            issuer: None,
            audience: None,
            typ: None,
            max_token_bytes: 8192,
            max_lifetime: None,
            audiences: &[],
            client_ids: &[],
            tenant: None,
        }
    }

    fn hs256(claims: Value) -> String {
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("shared-hs256".into());
        encode(
            &h,
            &claims,
            &EncodingKey::from_secret(HS256_SECRET).unwrap(),
        )
        .unwrap()
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn code(token: &str) -> &'static str {
        match verify(token.as_bytes(), &keys(), &policy())
            .and_then(|c| c.check_time(1_800_000_000_000, 0))
        {
            Ok(()) => "active",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn every_shared_vector_gives_its_expected_outcome() {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for v in doc["vectors"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap();
            let token = v["token"].as_str().unwrap();
            let want = v["expect"].as_str().unwrap();
            let got = verify(token.as_bytes(), &keys(), &policy())
                .and_then(|c| c.check_time(now_ms, 0).map(|()| c));
            match got {
                Ok(c) => {
                    assert_eq!(want, "active", "{name}");
                    assert_eq!(&*c.sub, v["sub"].as_str().unwrap(), "{name}");
                    assert_eq!(c.iat, v["iat"].as_i64().unwrap(), "{name}");
                    assert_eq!(c.exp, v["exp"].as_i64().unwrap(), "{name}");
                }
                Err(e) => assert_eq!(e.code(), want, "{name}: {e}"),
            }
        }
    }

    #[test]
    fn numeric_date_spellings_are_one_second() {
        for spelling in [
            "1767225600",
            "1767225600.0",
            "1.7672256e9",
            "1767225600.999",
        ] {
            let v: Value = serde_json::from_str(spelling).unwrap();
            assert_eq!(
                numeric_date(Some(&v), "iat").unwrap(),
                Some(1_767_225_600),
                "{spelling}"
            );
        }
        // Correctly rounded parsing: this spelling is the double 1053784603.0, as in JS/Python.
        let v: Value = serde_json::from_str("1053784602.999999999995").unwrap();
        assert_eq!(numeric_date(Some(&v), "iat").unwrap(), Some(1_053_784_603));
        let v: Value = serde_json::from_str("-0.5").unwrap();
        assert_eq!(numeric_date(Some(&v), "iat").unwrap(), Some(-1));
        for bad in [
            "1e300",
            "18446744073709551615",
            "-1e20",
            "\"1\"",
            "true",
            "null",
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert_eq!(
                numeric_date(Some(&v), "exp").err().unwrap().code(),
                "BADCLAIMS",
                "{bad}"
            );
        }
    }

    #[test]
    fn expiry_is_refused_on_and_after_exp_and_leeway_extends_it() {
        let c = Claims {
            sub: "a".into(),
            iat: 0,
            exp: 100,
            nbf: Some(50),
            sid: None,
            binding: None,
            scope: None,
        };
        assert!(c.check_time(99_999, 0).is_ok());
        assert_eq!(c.check_time(100_000, 0).err().unwrap().code(), "EXPIRED");
        assert!(c.check_time(104_999, 5).is_ok());
        assert_eq!(c.check_time(105_000, 5).err().unwrap().code(), "EXPIRED");
        assert_eq!(c.check_time(49_999, 0).err().unwrap().code(), "NOTYET");
        assert!(c.check_time(50_000, 0).is_ok());
        assert!(c.check_time(45_000, 5).is_ok());
        assert_eq!(c.check_time(44_999, 5).err().unwrap().code(), "NOTYET");
        assert_eq!(c.expires_at_ms(5), 105_000);
    }

    #[test]
    fn alg_none_in_any_spelling_is_badalg() {
        let payload = b64(r#"{"sub":"a","iat":1,"exp":4102444800}"#);
        for none in ["none", "None", "NONE", "nOnE"] {
            let header = b64(&format!(r#"{{"alg":"{none}"}}"#));
            assert_eq!(code(&format!("{header}.{payload}.")), "BADALG", "{none}");
        }
    }

    #[test]
    fn shape_errors_are_malformed() {
        let good = hs256(json!({"sub":"a","iat":1,"exp":4102444800u64}));
        assert_eq!(code(&good), "active");
        assert_eq!(code(""), "MALFORMED");
        assert_eq!(code("a.b.c.d.e"), "MALFORMED");
        assert_eq!(
            code(&format!("{good}=")),
            "MALFORMED",
            "padding is not base64url"
        );
        assert_eq!(code(&good.replacen('.', ".\u{e9}", 1)), "MALFORMED");
        let (head, _) = good.split_once('.').unwrap();
        let sig = good.rsplit('.').next().unwrap();
        for payload in [
            "[1,2]",
            "\"x\"",
            "{",
            r#"{"sub":"a","sub":"b","iat":1,"exp":2}"#,
        ] {
            assert_eq!(
                code(&format!("{head}.{}.{sig}", b64(payload))),
                "MALFORMED",
                "{payload}"
            );
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            code(&format!(
                "{head}.{}.{sig}",
                b64(&format!("{{\"a\":{deep}}}"))
            )),
            "MALFORMED"
        );
        let crit = b64(r#"{"alg":"HS256","kid":"shared-hs256","crit":["exp"],"exp":1}"#);
        assert_eq!(code(&format!("{crit}.{}.{sig}", b64("{}"))), "MALFORMED");
        let kid_num = b64(r#"{"alg":"HS256","kid":7}"#);
        assert_eq!(code(&format!("{kid_num}.{}.{sig}", b64("{}"))), "MALFORMED");
    }

    #[test]
    fn inspection_shows_claims_only_of_authentic_tokens() {
        let t = hs256(json!({"sub":"carol","iat":1.5e9,"exp":4102444800u64}));
        let (seen, outcome) = inspect(t.as_bytes(), &keys(), &policy());
        assert!(outcome.is_ok());
        assert_eq!(seen.sub.as_deref(), Some("carol"));
        assert_eq!(seen.iat, Some(1_500_000_000));
        assert_eq!(seen.kid.as_deref(), Some("shared-hs256"));
        let (signed, _) = t.rsplit_once('.').unwrap();
        let (seen, outcome) = inspect(format!("{signed}.AAAA").as_bytes(), &keys(), &policy());
        assert_eq!(outcome.err().unwrap().code(), "BADSIG");
        assert_eq!(seen.alg.as_deref(), Some("HS256"));
        assert_eq!((seen.sub, seen.iat, seen.exp), (None, None, None));
    }

    #[test]
    fn hmac_tokens_are_told_apart_by_their_header() {
        assert!(is_hmac(hs256(json!({"sub":"a"})).as_bytes()));
        assert!(!is_hmac(
            format!("{}.e30.", b64(r#"{"alg":"RS256"}"#)).as_bytes()
        ));
        assert!(!is_hmac(b"garbage"));
        assert!(!is_hmac(b""));
    }

    #[test]
    fn the_payload_is_returned_verbatim() {
        let t = hs256(json!({"sub":"a","iat":1,"exp":4102444800u64,"role":"admin"}));
        assert!(verify(t.as_bytes(), &keys(), &policy()).is_ok());
        let back: Value = serde_json::from_slice(&payload(t.as_bytes()).unwrap()).unwrap();
        assert_eq!(back["role"], "admin");
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let e = verify(&vec![b'!'; 9000], &keys(), &policy()).err().unwrap();
        assert_eq!(e.code(), "MALFORMED");
        assert!(e.message().contains("max-token-bytes"), "{e}");
    }

    #[test]
    fn a_forged_token_learns_nothing_about_its_claims() {
        // Bad claims, bad signature: the signature is judged first.
        let t = hs256(json!({"sub": 5}));
        let (signed, _) = t.rsplit_once('.').unwrap();
        assert_eq!(code(&format!("{signed}.AAAA")), "BADSIG");
        assert_eq!(code(&t), "BADCLAIMS");
    }

    #[test]
    fn rsa_public_key_is_never_an_hmac_secret() {
        let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap();
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("shared-rsa".into());
        let t = encode(&h, &json!({"sub":"a","iat":1,"exp":4102444800u64}), &rsa).unwrap();
        assert_eq!(code(&t), "active");
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("shared-rsa".into());
        let t = encode(
            &h,
            &json!({"sub":"a","iat":1,"exp":4102444800u64}),
            &EncodingKey::from_secret(&[b'x'; 32]).unwrap(),
        )
        .unwrap();
        assert_eq!(code(&t), "BADALG");
    }

    #[test]
    fn an_rsa_key_with_leading_zero_bytes_verifies() {
        // RFC 7518 §6.3.1 forbids them, some providers send them anyway: the key is the same.
        let doc: Value = serde_json::from_str(SHARED_JWKS).unwrap();
        let mut jwk = doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == "shared-rsa")
            .unwrap()
            .clone();
        for member in ["n", "e"] {
            let mut bytes = vec![0u8, 0];
            bytes.extend(
                URL_SAFE_NO_PAD
                    .decode(jwk[member].as_str().unwrap())
                    .unwrap(),
            );
            jwk[member] = json!(URL_SAFE_NO_PAD.encode(bytes));
        }
        let keys = KeySet::from_json(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap();
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("shared-rsa".into());
        let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap();
        let t = encode(&h, &json!({"sub":"a","iat":1,"exp":4102444800u64}), &rsa).unwrap();
        assert!(verify(t.as_bytes(), &keys, &policy()).is_ok());
    }

    #[test]
    fn issuer_audience_and_allowlist_are_enforced() {
        let k = keys();
        let mut p = policy();
        p.issuer = Some("https://issuer.example");
        p.audience = Some("api");
        let ok = |claims: Value, p: &Policy| {
            verify(hs256(claims).as_bytes(), &k, p)
                .map(|_| ())
                .map_err(|e| e.code())
        };
        let base = |extra: Value| {
            let mut c = json!({"sub":"a","iat":1,"exp":4102444800u64});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        assert_eq!(
            ok(
                base(json!({"iss":"https://issuer.example","aud":"api"})),
                &p
            ),
            Ok(())
        );
        assert_eq!(
            ok(
                base(json!({"iss":"https://issuer.example","aud":["x","api"]})),
                &p
            ),
            Ok(())
        );
        assert_eq!(
            ok(base(json!({"iss":"https://other","aud":"api"})), &p),
            Err("BADCLAIMS")
        );
        assert_eq!(ok(base(json!({"aud":"api"})), &p), Err("BADCLAIMS"));
        assert_eq!(
            ok(
                base(json!({"iss":"https://issuer.example","aud":["x"]})),
                &p
            ),
            Err("BADCLAIMS")
        );
        assert_eq!(
            ok(base(json!({"iss":"https://issuer.example"})), &p),
            Err("BADCLAIMS")
        );
        // With no audience configured an aud claim is fine (unlike jsonwebtoken's default).
        assert_eq!(ok(base(json!({"aud":"anything"})), &policy()), Ok(()));
        let mut short = policy();
        short.max_lifetime = Some(3600);
        assert_eq!(ok(json!({"sub":"a","iat":1,"exp":3601}), &short), Ok(()));
        assert_eq!(
            ok(json!({"sub":"a","iat":1,"exp":3602}), &short),
            Err("BADCLAIMS")
        );
        let mut only_rs = policy();
        only_rs.algorithms = AlgSet::of(&[jsonwebtoken::Algorithm::RS256]);
        assert_eq!(ok(base(json!({})), &only_rs), Err("BADALG"));
    }

    #[test]
    fn sid_is_read_only_when_it_is_a_non_empty_string() {
        let sid_of = |sid: Value| {
            let t = hs256(json!({"sub":"a","iat":1,"exp":4102444800u64,"sid":sid}));
            verify(t.as_bytes(), &keys(), &policy()).map(|c| c.sid)
        };
        assert_eq!(sid_of(json!("sess-1")).unwrap().as_deref(), Some("sess-1"));
        assert_eq!(
            sid_of(json!("a\u{0}{}")).unwrap().as_deref(),
            Some("a\u{0}{}")
        );
        for other in [
            json!(""),
            json!(null),
            json!(42),
            json!(-1.5),
            json!(true),
            json!(["sess-1"]),
            json!({"id": "sess-1", "deep": [[{}]]}),
        ] {
            assert_eq!(sid_of(other.clone()).unwrap(), None, "{other}");
        }
        let t = hs256(json!({"sub":"a","iat":1,"exp":4102444800u64}));
        assert_eq!(verify(t.as_bytes(), &keys(), &policy()).unwrap().sid, None);
        let (seen, _) = inspect(
            hs256(json!({"sub":"a","iat":1,"exp":4102444800u64,"sid":"s-9"})).as_bytes(),
            &keys(),
            &policy(),
        );
        assert_eq!(seen.sid.as_deref(), Some("s-9"));
        // A claim jwtdeny reads may not appear twice, sid included now.
        let (head, _) = t.split_once('.').unwrap();
        let sig = t.rsplit('.').next().unwrap();
        let twice = b64(r#"{"sub":"a","iat":1,"exp":4102444800,"sid":"x","sid":"y"}"#);
        assert_eq!(code(&format!("{head}.{twice}.{sig}")), "MALFORMED");
    }

    /// A header and payload signed with the shared HS256 key.
    fn signed(header: Value, claims: Value) -> String {
        let h = b64(&header.to_string());
        let p = b64(&claims.to_string());
        let input = format!("{h}.{p}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HS256_SECRET);
        let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn a_token_of_another_kind_is_never_an_access_token() {
        let header = |typ: Option<&str>| match typ {
            Some(t) => json!({"alg": "HS256", "kid": "shared-hs256", "typ": t}),
            None => json!({"alg": "HS256", "kid": "shared-hs256"}),
        };
        let body = json!({"sub": "a", "iat": 1_700_000_000, "exp": 1_900_000_000});
        let mut logout = body.clone();
        logout["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
        let judge = |typ: Option<&str>, claims: &Value, required: Option<&str>| {
            let mut p = policy();
            p.typ = required;
            let t = signed(header(typ), claims.clone());
            verify(t.as_bytes(), &keys(), &p)
                .map(|_| ())
                .map_err(|e| e.code())
        };
        for typ in [
            "logout+jwt",
            "application/logout+jwt",
            "Logout+JWT",
            "secevent+jwt",
        ] {
            assert_eq!(judge(Some(typ), &body, None), Err("BADCLAIMS"), "{typ}");
        }
        assert_eq!(
            judge(Some("JWT"), &logout, None),
            Err("BADCLAIMS"),
            "events"
        );
        assert_eq!(
            judge(None, &logout, None),
            Err("BADCLAIMS"),
            "events, no typ"
        );
        let mut null_events = body.clone();
        null_events["events"] = Value::Null;
        assert_eq!(
            judge(None, &null_events, None),
            Err("BADCLAIMS"),
            "events: null"
        );
        for typ in [None, Some("JWT"), Some("at+jwt")] {
            assert_eq!(judge(typ, &body, None), Ok(()), "{typ:?} without token-typ");
        }
        // jwtdeny.token-typ at+jwt: RFC 9068's type, nothing else.
        for typ in ["at+jwt", "application/at+JWT", "AT+JWT"] {
            assert_eq!(judge(Some(typ), &body, Some("at+jwt")), Ok(()), "{typ}");
        }
        for typ in [None, Some("JWT"), Some("jwt"), Some("logout+jwt")] {
            assert_eq!(
                judge(typ, &body, Some("at+jwt")),
                Err("BADCLAIMS"),
                "{typ:?}"
            );
        }
        // A forged one learns nothing: the signature is judged first.
        let forged = signed(header(Some("logout+jwt")), body.clone()).replace(".", ".x");
        assert_ne!(
            verify(forged.as_bytes(), &keys(), &policy())
                .err()
                .map(|e| e.code()),
            Some("BADCLAIMS")
        );
        // A duplicate typ or events is refused as MALFORMED, never read one way or the other.
        let dup = |h: &str, p: &str| {
            let input = format!("{}.{}", b64(h), b64(p));
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HS256_SECRET);
            let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            verify(t.as_bytes(), &keys(), &policy())
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(
            dup(
                r#"{"alg":"HS256","kid":"shared-hs256","typ":"JWT","typ":"logout+jwt"}"#,
                r#"{"sub":"a","iat":1700000000,"exp":1900000000}"#
            ),
            Err("MALFORMED")
        );
        assert_eq!(
            dup(
                r#"{"alg":"HS256","kid":"shared-hs256"}"#,
                r#"{"sub":"a","iat":1700000000,"exp":1900000000,"events":1,"events":2}"#
            ),
            Err("MALFORMED")
        );
    }

    #[test]
    fn ed25519_is_the_fully_specified_name_of_eddsa() {
        assert_eq!(parse_alg("Ed25519"), Some(jsonwebtoken::Algorithm::EdDSA));
        assert_eq!(parse_alg("Ed448"), None);
        assert_eq!(parse_alg("ed25519"), None, "names are case-sensitive");
    }
}
