//! Sender-constrained tokens: DPoP proofs (RFC 9449) and the `cnf` claim that binds a token to
//! a DPoP key (`jkt`) or to a client certificate (`x5t#S256`, RFC 8705). Knows nothing of Redis:
//! the one-time use of a proof's `jti` is the module's (it needs the keyspace); everything else a
//! resource server checks of a proof is here.

use crate::error::{quote, Error};
use crate::keys::{alg_name, parse_alg, public_jwk, AlgSet};
use crate::token::{jose_header, numeric_date, split, Unverified};
use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a token's `cnf` claim binds it to. A token without `cnf` has none and costs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `cnf.jkt`: the RFC 7638 thumbprint of the DPoP key the client must prove it holds.
    pub jkt: Option<Arc<str>>,
    /// `cnf.x5t#S256`: the SHA-256 thumbprint of the client certificate, decoded.
    pub x5t: Option<[u8; 32]>,
}

impl Binding {
    /// Reads `cnf` (RFC 7800 §3.1). A confirmation method jwtdeny cannot check (`jwk`, `kid`,
    /// `jku`, `jwe`) is refused rather than ignored: ignoring it would turn a bound token back
    /// into a bearer token.
    pub fn from_cnf(cnf: &Value) -> Result<Binding, Error> {
        let Value::Object(members) = cnf else {
            return Err(Error::BadClaims("cnf is not a JSON object".into()));
        };
        let jkt = match members.get("jkt") {
            None => None,
            Some(Value::String(t)) if !t.is_empty() => Some(Arc::from(t.as_str())),
            Some(_) => return Err(Error::BadClaims("cnf.jkt is not a non-empty string".into())),
        };
        let x5t = match members.get("x5t#S256") {
            None => None,
            Some(Value::String(t)) => Some(sha256_thumbprint(t).ok_or_else(|| {
                Error::BadClaims("cnf.x5t#S256 is not a base64url SHA-256 thumbprint".into())
            })?),
            Some(_) => return Err(Error::BadClaims("cnf.x5t#S256 is not a string".into())),
        };
        if jkt.is_none() && x5t.is_none() {
            let method = members.keys().next().map_or("(empty)", String::as_str);
            return Err(Error::unbound(format!(
                "the token is bound by cnf.{}, a confirmation method jwtdeny cannot check",
                crate::error::printable(method, 32)
            )));
        }
        Ok(Binding { jkt, x5t })
    }

    /// Whether the token may be accepted as presented: with a proof whose key has the
    /// thumbprint `proof_jkt` (CHECKDPOP), and with the client certificate `cert` the TLS
    /// terminator saw (`CERT`).
    pub fn check(&self, proof_jkt: Option<&str>, cert: Option<&[u8; 32]>) -> Result<(), Error> {
        if let Some(want) = &self.x5t {
            match cert {
                None => {
                    return Err(Error::unbound(
                        "the token is bound to a client certificate (cnf.x5t#S256): give CERT \
                         with the SHA-256 thumbprint of the certificate the client presented",
                    ))
                }
                Some(got) if !same(got, want) => {
                    return Err(Error::unbound(
                        "the client certificate (CERT) is not the one the token is bound to \
                         (cnf.x5t#S256)",
                    ))
                }
                Some(_) => {}
            }
        }
        match (&self.jkt, proof_jkt) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(Error::unbound(
                "the token is bound to a DPoP key (cnf.jkt): present it with a DPoP proof \
                 (JWTDENY.CHECKDPOP), never as a bearer token",
            )),
            (None, Some(_)) => Err(Error::unbound(
                "the token is not bound to a DPoP key (no cnf.jkt): present it as a bearer token",
            )),
            (Some(want), Some(got)) if same(want.as_bytes(), got.as_bytes()) => Ok(()),
            (Some(_), Some(got)) => Err(Error::bad_proof(format!(
                "the proof's key (thumbprint {}) is not the key the token is bound to (cnf.jkt)",
                quote(got)
            ))),
        }
    }
}

/// Where [`Binding::check`] runs for a token that may have none: a token without `cnf` is
/// refused by CHECKDPOP and accepted by everything else.
pub fn check_binding(
    binding: Option<&Binding>,
    proof_jkt: Option<&str>,
    cert: Option<&[u8; 32]>,
) -> Result<(), Error> {
    match binding {
        Some(b) => b.check(proof_jkt, cert),
        None if proof_jkt.is_some() => Binding {
            jkt: None,
            x5t: None,
        }
        .check(proof_jkt, None),
        None => Ok(()),
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A SHA-256 thumbprint as the `CERT` argument or `cnf.x5t#S256` spell it: base64url without
/// padding (43 characters, what RFC 8705 uses) or hex (64, what TLS terminators log).
pub fn sha256_thumbprint(text: &str) -> Option<[u8; 32]> {
    let bytes = match text.len() {
        64 => (0..32)
            .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?,
        _ => URL_SAFE_NO_PAD.decode(text).ok()?,
    };
    bytes.try_into().ok()
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 over its required members, in
/// lexicographic order, without whitespace; base64url without padding.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, String> {
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("RSA") => &["e", "kty", "n"],
        Some("OKP") => &["crv", "kty", "x"],
        Some(other) => return Err(format!("kty {} has no thumbprint here", quote(other))),
        None => return Err("kty is missing or not a string".into()),
    };
    let mut canonical = String::from("{");
    for (i, name) in required.iter().enumerate() {
        let value = jwk
            .get(*name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("\"{name}\" is missing or not a string"))?;
        if i > 0 {
            canonical.push(',');
        }
        // Member names and values are JSON strings: serde_json escapes exactly as RFC 8259 does.
        canonical.push_str(&Value::from(*name).to_string());
        canonical.push(':');
        canonical.push_str(&Value::from(value).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes())))
}

/// `ath` of an access token: base64url SHA-256 of its ASCII bytes (RFC 9449 §4.2).
pub fn access_token_hash(token: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token))
}

/// What identifies a proof for its one-time use: SHA-256 of `jkt ":" jti`, base64url. Keyed by
/// the key as well as the `jti` (two clients may pick the same `jti`), and of a fixed size
/// whatever the client sends. A thumbprint is base64url, which has no `:`, so the pair is read
/// back one way only.
pub fn replay_id(jkt: &str, jti: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(jkt.as_bytes());
    ctx.update(b":");
    ctx.update(jti.as_bytes());
    URL_SAFE_NO_PAD.encode(ctx.finish())
}

/// An absolute `http` or `https` URI reduced for comparison (RFC 9449 §4.3 step 9): query and
/// fragment dropped, then RFC 3986 §6.2.2 syntax-based normalisation (case of scheme and host,
/// percent-encoding case, unreserved characters decoded, dot segments removed) and §6.2.3
/// scheme-based normalisation (the default port and an empty path).
pub fn normalize_htu(uri: &str) -> Result<String, String> {
    if let Some(b) = uri.bytes().find(|b| !b.is_ascii_graphic()) {
        return Err(format!("contains the byte 0x{b:02x}, which no URI has"));
    }
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or("is not an absolute URI (scheme://host/path)")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err(format!("scheme {} is not http or https", quote(&scheme))),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    // The port follows the last `:` outside an IPv6 literal's brackets.
    let port_at = match hostport.rfind(']') {
        Some(end) => hostport[end..].find(':').map(|i| end + i),
        None => hostport.rfind(':'),
    };
    let (host, port) = match port_at {
        Some(i) => (&hostport[..i], &hostport[i + 1..]),
        None => (hostport, ""),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = if port.is_empty() {
        String::new()
    } else {
        let n: u16 = port
            .parse()
            .ok()
            .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("port {} is not a port number", quote(port)))?;
        let n = n.to_string();
        if n == default_port {
            String::new()
        } else {
            format!(":{n}")
        }
    };
    let mut out = scheme;
    out.push_str("://");
    if let Some(u) = userinfo {
        out.push_str(&percent_normalized(u)?);
        out.push('@');
    }
    out.push_str(&percent_normalized(host)?.to_ascii_lowercase());
    out.push_str(&port);
    let path = percent_normalized(path)?;
    out.push_str(&remove_dot_segments(if path.is_empty() {
        "/"
    } else {
        &path
    }));
    Ok(out)
}

/// RFC 3986 §6.2.2.1–2: hex digits of escapes in upper case, escapes of unreserved characters
/// decoded.
fn percent_normalized(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("has a % that is not followed by two hex digits")?;
        if hex.is_ascii_alphanumeric() || b"-._~".contains(&hex) {
            out.push(char::from(hex));
        } else {
            out.push_str(&format!("%{hex:02X}"));
        }
        i += 3;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    while !input.is_empty() {
        let (segment, rest) = match input.strip_prefix('/') {
            Some(after) => match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            },
            None => match input.find('/') {
                Some(i) => (&input[..i], &input[i..]),
                None => (input, ""),
            },
        };
        input = rest;
        trailing_slash = rest.is_empty() && matches!(segment, "." | "..");
        match segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(path.len());
    for s in &out {
        result.push('/');
        result.push_str(s);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    result
}

/// Server-provided nonces (RFC 9449 §9), stateless: a nonce names its time step and carries a
/// MAC of it under the module's secret, so any server with the same secret accepts it for the
/// step it was issued in and the next one.
pub struct Nonces {
    key: hmac::Key,
}

/// The bytes of the MAC a nonce carries: 128 bits, enough that guessing one is hopeless within
/// its two steps.
const NONCE_MAC_BYTES: usize = 16;

impl Nonces {
    pub fn new(secret: &[u8]) -> Nonces {
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn mac(&self, step: i64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"jwtdeny dpop nonce\0");
        ctx.update(&step.to_be_bytes());
        ctx.sign()
    }

    /// The nonce of the step `now_secs` falls in (steps of `step_secs`).
    pub fn issue(&self, now_secs: i64, step_secs: i64) -> String {
        let step = now_secs.div_euclid(step_secs.max(1));
        let mut raw = step.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.mac(step).as_ref()[..NONCE_MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was issued by this secret in the current step or the one before.
    pub fn accepts(&self, nonce: &str, now_secs: i64, step_secs: i64) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Some((head, mac)) = raw.split_first_chunk::<8>() else {
            return false;
        };
        let step = i64::from_be_bytes(*head);
        let now = now_secs.div_euclid(step_secs.max(1));
        (step == now || step == now - 1)
            && mac.len() == NONCE_MAC_BYTES
            && same(mac, &self.mac(step).as_ref()[..NONCE_MAC_BYTES])
    }
}

/// What the server's configuration asks of a proof.
pub struct ProofPolicy<'a> {
    /// `jwtdeny.dpop-algorithms`: asymmetric only.
    pub algorithms: AlgSet,
    /// `jwtdeny.dpop-window`: how far a proof's `iat` may be from now, in seconds.
    pub window: i64,
    pub leeway: i64,
    pub max_bytes: usize,
    /// With `jwtdeny.dpop-nonce yes`: the nonces a proof must carry one of.
    pub nonces: Option<&'a Nonces>,
}

impl ProofPolicy<'_> {
    /// Seconds a proof's `iat` may be from now, either way.
    pub fn tolerance(&self) -> i64 {
        self.window.saturating_add(self.leeway)
    }
}

/// The request a proof must be for.
pub struct Request<'a> {
    pub method: &'a str,
    /// The request's URI, already through [`normalize_htu`].
    pub htu: &'a str,
    /// The access token presented with the proof.
    pub token: &'a [u8],
}

/// A proof that passed every check but its one-time use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub jkt: String,
    /// [`replay_id`] of the proof.
    pub replay: String,
    /// Until when (ms since the epoch) the proof would be accepted: its one-time record must
    /// last that long.
    pub valid_until_ms: i64,
}

#[derive(Deserialize)]
struct ProofHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
    typ: Option<Value>,
    jwk: Option<Value>,
}
jose_header!(ProofHeader);

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

/// JWK members that only a private (or secret) key has: a proof carrying one has published its
/// private key, and is refused (RFC 9449 §4.3 step 7).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks a DPoP proof for `request` (RFC 9449 §4.3, §7.1), all but its `jti`'s one-time use,
/// which the caller records once every other check, of the proof and of the token, has passed.
/// The order is fixed: shape, type, algorithm, key, signature, then claims.
pub fn verify_proof(
    proof: &[u8],
    request: &Request,
    policy: &ProofPolicy,
    now_ms: i64,
) -> Result<Proof, Error> {
    fn bad(why: impl std::fmt::Display) -> Error {
        Error::bad_proof(why)
    }
    let t: Unverified<ProofHeader, ProofClaims> = split(proof, policy.max_bytes)
        .map_err(|e| bad(format!("the proof is malformed: {}", e.message())))?;
    match &t.header.typ {
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("dpop+jwt") => {}
        Some(Value::String(typ)) => return Err(bad(format!("typ {} is not dpop+jwt", quote(typ)))),
        _ => return Err(bad("typ is missing: a proof's is dpop+jwt")),
    }
    let alg = match &t.header.alg {
        Some(Value::String(name)) => match parse_alg(name) {
            Some(alg) if policy.algorithms.contains(alg) => alg,
            _ => {
                return Err(bad(format!(
                    "alg {} is not allowed by jwtdeny.dpop-algorithms",
                    quote(name)
                )))
            }
        },
        _ => return Err(bad("alg is missing or not a string")),
    };
    let jwk = match &t.header.jwk {
        Some(Value::Object(jwk)) => jwk,
        _ => return Err(bad("jwk is missing or not a JSON object")),
    };
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(bad(format!(
            "jwk has the private member \"{private}\": a proof carries a public key only"
        )));
    }
    let key = public_jwk(jwk).map_err(|why| bad(format!("jwk is not a usable key: {why}")))?;
    if !key.algorithms.contains(alg) {
        return Err(bad(format!(
            "alg {} does not fit the jwk (kty {})",
            alg_name(alg),
            key.kty
        )));
    }
    let verifier = (DEFAULT_PROVIDER.verifier_factory)(&alg, &key.decoding)
        .map_err(|e| Error::Internal(format!("cannot build a {} verifier: {e}", alg_name(alg))))?;
    if verifier.verify(t.signing_input, &t.signature).is_err() {
        return Err(bad("the proof's signature does not verify with its jwk"));
    }

    let c = &t.claims;
    let text = |v: &Option<Value>, name: &str| match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(bad(format!("{name} is not a non-empty string"))),
        None => Err(bad(format!("{name} is missing"))),
    };
    let jti = text(&c.jti, "jti")?;
    let htm = text(&c.htm, "htm")?;
    if htm != request.method {
        return Err(bad(format!(
            "htm {} is not the request's method {}",
            quote(&htm),
            quote(request.method)
        )));
    }
    let htu = text(&c.htu, "htu")?;
    let normalized = normalize_htu(&htu).map_err(|why| bad(format!("htu {why}")))?;
    if normalized != request.htu {
        return Err(bad(format!(
            "htu {} is not the request's URI {}",
            quote(&normalized),
            quote(request.htu)
        )));
    }
    let iat = numeric_date(c.iat.as_ref(), "iat")
        .map_err(|e| bad(e.message()))?
        .ok_or_else(|| bad("iat is missing"))?;
    let now = now_ms.div_euclid(1000);
    let tolerance = policy.tolerance();
    if iat < now.saturating_sub(tolerance) {
        return Err(bad(format!(
            "iat {iat} is more than jwtdeny.dpop-window ({}s) + leeway ({}s) in the past",
            policy.window, policy.leeway
        )));
    }
    if iat > now.saturating_add(tolerance) {
        return Err(bad(format!(
            "iat {iat} is more than jwtdeny.dpop-window ({}s) + leeway ({}s) in the future",
            policy.window, policy.leeway
        )));
    }
    let ath = text(&c.ath, "ath")?;
    if !same(ath.as_bytes(), access_token_hash(request.token).as_bytes()) {
        return Err(bad("ath is not the hash of the access token presented"));
    }
    if let Some(nonces) = policy.nonces {
        let fresh = || nonces.issue(now, policy.window);
        match &c.nonce {
            Some(Value::String(n)) if nonces.accepts(n, now, policy.window) => {}
            Some(_) => {
                return Err(Error::Dpop(format!(
                    "use_dpop_nonce {} the proof's nonce is not current",
                    fresh()
                )))
            }
            None => {
                return Err(Error::Dpop(format!(
                    "use_dpop_nonce {} the proof must carry a nonce jwtdeny issued",
                    fresh()
                )))
            }
        }
    }
    let jkt = thumbprint(jwk).map_err(|why| bad(format!("jwk: {why}")))?;
    Ok(Proof {
        replay: replay_id(&jkt, &jti),
        jkt,
        valid_until_ms: iat
            .saturating_add(tolerance)
            .saturating_add(1)
            .saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thumbprint_of_rfc_7638_section_3_1() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_needs_the_required_members() {
        let no_y = json!({"kty":"EC","crv":"P-256","x":"abc"});
        assert!(thumbprint(no_y.as_object().unwrap()).is_err());
        let oct = json!({"kty":"oct","k":"abc"});
        assert!(thumbprint(oct.as_object().unwrap()).is_err());
    }

    #[test]
    fn htu_normalisation_follows_rfc_3986() {
        let n = |u: &str| normalize_htu(u).unwrap();
        let same = [
            (
                "https://server.example.com/path",
                "https://server.example.com/path",
            ),
            (
                "HTTPS://Server.EXAMPLE.com/path",
                "https://server.example.com/path",
            ),
            (
                "https://server.example.com:443/path",
                "https://server.example.com/path",
            ),
            (
                "http://server.example.com:80/path",
                "http://server.example.com/path",
            ),
            ("https://server.example.com", "https://server.example.com/"),
            (
                "https://server.example.com/a/./b/../c",
                "https://server.example.com/a/c",
            ),
            (
                "https://server.example.com/%7Euser/%2fx",
                "https://server.example.com/~user/%2Fx",
            ),
            (
                "https://server.example.com/%41%62",
                "https://server.example.com/Ab",
            ),
            (
                "https://server.example.com/path?q=1#frag",
                "https://server.example.com/path",
            ),
            (
                "https://server.example.com/p#f?x",
                "https://server.example.com/p",
            ),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
            ("https://[::1]:443/x", "https://[::1]/x"),
            ("https://a.example:0443/x", "https://a.example/x"),
            ("https://a.example/..", "https://a.example/"),
            ("https://a.example/a/b/..", "https://a.example/a/"),
        ];
        for (input, want) in same {
            assert_eq!(n(input), want, "{input}");
        }
        // Paths differ in case (RFC 3986: only scheme and host are case-insensitive).
        assert_ne!(n("https://a.example/Path"), n("https://a.example/path"));
        assert_ne!(n("https://a.example:8443/x"), n("https://a.example/x"));
        assert_ne!(n("http://a.example/x"), n("https://a.example/x"));
        for bad in [
            "/relative",
            "ftp://a.example/x",
            "https:///x",
            "https://a.example:99999/x",
            "https://a.example:8x/x",
            "https://a.example/%zz",
            "https://a.example/a b",
            "https://a.example/\u{e9}",
        ] {
            assert!(normalize_htu(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_5_2_4_says() {
        // RFC 3986 §5.4 examples, as paths.
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("/b/c/g/."), "/b/c/g/");
        assert_eq!(remove_dot_segments("/../g"), "/g");
        assert_eq!(remove_dot_segments("/a/b/"), "/a/b/");
        assert_eq!(remove_dot_segments("/"), "/");
    }

    #[test]
    fn nonces_hold_for_two_steps_and_only_under_their_secret() {
        let a = Nonces::new(b"secret-a");
        let b = Nonces::new(b"secret-b");
        let n = a.issue(1_000, 60);
        assert!(a.accepts(&n, 1_000, 60));
        assert!(a.accepts(&n, 1_079, 60)); // the next step
        assert!(!a.accepts(&n, 1_080, 60)); // two steps on
        assert!(!a.accepts(&n, 959, 60)); // before it was issued
        assert!(!b.accepts(&n, 1_000, 60));
        assert!(!a.accepts("", 1_000, 60));
        assert!(!a.accepts("not base64!", 1_000, 60));
        let mut forged = URL_SAFE_NO_PAD.decode(&n).unwrap();
        forged[9] ^= 1;
        assert!(!a.accepts(&URL_SAFE_NO_PAD.encode(forged), 1_000, 60));
    }

    #[test]
    fn cnf_binds_to_a_key_or_a_certificate_and_nothing_unknown_passes() {
        let b = Binding::from_cnf(&json!({"jkt": "abc"})).unwrap();
        assert_eq!(
            b.check(None, None).unwrap_err().message().split(' ').next(),
            Some("invalid_token")
        );
        assert!(b.check(Some("abc"), None).is_ok());
        assert!(b
            .check(Some("abd"), None)
            .unwrap_err()
            .message()
            .starts_with("invalid_dpop_proof"));
        let thumb = [7u8; 32];
        let b = Binding::from_cnf(&json!({"x5t#S256": URL_SAFE_NO_PAD.encode(thumb)})).unwrap();
        assert!(b.check(None, None).is_err());
        assert!(b.check(None, Some(&thumb)).is_ok());
        assert!(b.check(None, Some(&[8u8; 32])).is_err());
        assert_eq!(sha256_thumbprint(&"07".repeat(32)), Some(thumb));
        assert_eq!(
            Binding::from_cnf(&json!({"jwk": {}})).unwrap_err().code(),
            "DPOP"
        );
        assert_eq!(
            Binding::from_cnf(&json!("x")).unwrap_err().code(),
            "BADCLAIMS"
        );
        assert_eq!(
            Binding::from_cnf(&json!({"jkt": 5})).unwrap_err().code(),
            "BADCLAIMS"
        );
        assert!(check_binding(None, None, None).is_ok());
        assert!(check_binding(None, Some("abc"), None).is_err());
    }
}
