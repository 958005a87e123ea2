//! Validating an OpenID Connect Back-Channel Logout token (OpenID Connect Back-Channel Logout
//! 1.0, section 2.6) into what it ends. Knows nothing of Redis.
//!
//! The same order as an access token: shape, algorithm, key and signature first (with the
//! configured keys and algorithm allowlist, `alg: none` never), then the header's `typ`, then the
//! claims; the clock last, in [`Logout::check_time`]. A token that is not authentic learns
//! nothing about how its claims would have been judged.

use crate::error::{quote, Error};
use crate::keys::KeySet;
use crate::token::{
    check_audience, check_issuer, check_signature, jose_header, numeric_date, split, Lifetime,
    Policy, Unverified,
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The member of `events` that makes a JWT a logout token (section 2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a valid logout token ends. The provider's `sub` is always there: a session is stored in
/// its subject's slot (see `keyscheme::session_key`), so a token naming only a `sid` cannot be
/// placed and is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    pub sub: String,
    /// The session to end; `None` ends every session of `sub` up to `iat`.
    pub sid: Option<String>,
    pub iat: i64,
    pub exp: i64,
    /// The scope of its subject's keys: its issuer's, for an issuer of the registry.
    pub scope: Option<std::sync::Arc<str>>,
}

impl Logout {
    /// Its times, judged as an access token's are (a logout token has no `nbf`).
    fn lifetime(&self) -> Lifetime {
        Lifetime {
            iat: self.iat,
            exp: self.exp,
            nbf: None,
        }
    }

    /// The instant (ms since the epoch) from which the logout token is expired.
    pub fn expires_at_ms(&self, leeway: i64) -> i64 {
        self.lifetime().expires_at_ms(leeway)
    }

    /// Refused on or after `exp` (+ leeway), as access tokens are, and with an `iat` in the
    /// future (beyond leeway): its `iat` is the cutoff it writes, and a cutoff in the future
    /// would also revoke the tokens the user is given after logging in again, until then (as
    /// `REVOKEALL AT <future>` is refused). A past `iat` is the provider's own instant of the
    /// logout, compared only with the `iat` of tokens the same provider issued.
    pub fn check_time(&self, now_ms: i64, leeway: i64) -> Result<(), Error> {
        self.lifetime()
            .check_time(now_ms, leeway)
            .map_err(|e| Error::Expired(format!("logout {}", e.message())))?;
        let now = now_ms.div_euclid(1000);
        if self.iat > now.saturating_add(leeway) {
            return Err(Error::BadClaims(format!(
                "iat {} is in the future (now is {now}, leeway {leeway}s): a logout cannot \
                 end sessions not begun yet",
                self.iat
            )));
        }
        Ok(())
    }
}

/// Present with any value, `null` included: `Option<Value>` alone would read `"nonce": null`
/// as an absent nonce.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct LogoutHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    crit: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    typ: Option<Value>,
}

jose_header!(LogoutHeader);

/// Every claim read, so that a duplicate of any of them is refused as MALFORMED (two parsers
/// must never see two different logout tokens).
#[derive(Deserialize)]
struct LogoutClaims {
    #[serde(default, deserialize_with = "present")]
    sub: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    sid: Option<Value>,
    iat: Option<Value>,
    exp: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    nonce: Option<Value>,
}

/// Verifies a logout token with `keys` and `policy` (its algorithms, issuer and maximum size;
/// not its audience, which is the access tokens', nor its max-lifetime, which bounds access
/// tokens) and checks it names `audience`, the application's OIDC client id. Does not look at
/// the clock: call [`Logout::check_time`] for that.
pub fn verify(
    token: &[u8],
    keys: &KeySet,
    policy: &Policy,
    audience: &str,
) -> Result<Logout, Error> {
    let one = crate::token::Placed {
        keys,
        policy: policy.clone(),
        scope: None,
    };
    verify_placed(token, policy.max_token_bytes, |_| Ok((one, audience)))
}

/// RFC 8725 section 3.11 explicit typing: a `typ` other than a logout token's is another kind of
/// JWT, above all an access token (`at+jwt`, RFC 9068), which must never pass for a logout.
/// `JWT` is what Keycloak sends; an absent `typ` is what the spec allows. Media types are
/// case-insensitive and may omit `application/` (RFC 7515 section 4.1.9).
fn check_typ(typ: Option<&Value>) -> Result<(), Error> {
    let name = match typ {
        None => return Ok(()),
        Some(Value::String(name)) => name,
        Some(_) => return Err(Error::BadClaims("typ header is not a string".into())),
    };
    let bare = match name.get(..12) {
        Some(head) if head.eq_ignore_ascii_case("application/") => &name[12..],
        _ => name.as_str(),
    };
    if bare.eq_ignore_ascii_case("logout+jwt") || bare.eq_ignore_ascii_case("JWT") {
        return Ok(());
    }
    Err(Error::BadClaims(format!(
        "typ {} is not a logout token's (logout+jwt or JWT)",
        quote(name)
    )))
}

fn claims(raw: &LogoutClaims, policy: &Policy, audience: &str) -> Result<Logout, Error> {
    check_issuer(raw.iss.as_ref(), policy.issuer)?;
    check_audience(raw.aud.as_ref(), audience, "jwtdeny.logout-audience")?;
    let iat = numeric_date(raw.iat.as_ref(), "iat")?
        .ok_or_else(|| Error::BadClaims("iat is missing".into()))?;
    let exp = numeric_date(raw.exp.as_ref(), "exp")?
        .ok_or_else(|| Error::BadClaims("exp is missing".into()))?;
    match &raw.events {
        None => {
            return Err(Error::BadClaims(
                "events is missing: not a logout token".into(),
            ))
        }
        Some(Value::Object(events)) => match events.get(BACKCHANNEL_LOGOUT_EVENT) {
            Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(Error::BadClaims(format!(
                    "events member {BACKCHANNEL_LOGOUT_EVENT} is not a JSON object"
                )))
            }
            None => {
                return Err(Error::BadClaims(format!(
                    "events has no member {BACKCHANNEL_LOGOUT_EVENT}: not a logout token"
                )))
            }
        },
        Some(_) => return Err(Error::BadClaims("events is not a JSON object".into())),
    }
    if raw.nonce.is_some() {
        // Section 2.4: a nonce would let the token pass for an ID token in an authentication
        // response, so a logout token must not have one.
        return Err(Error::BadClaims(
            "nonce is present: a logout token must not have one".into(),
        ));
    }
    let text = |v: &Option<Value>, name: &str| match v {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(Error::BadClaims(format!(
            "{name} is not a non-empty string"
        ))),
    };
    let sub = text(&raw.sub, "sub")?;
    let sid = text(&raw.sid, "sid")?;
    let sub =
        match (sub, &sid) {
            (Some(sub), _) => sub,
            (None, Some(_)) => return Err(Error::BadClaims(
                "sid without sub: jwtdeny keeps a session in its subject's slot, so the logout \
                 token must name sub too (Keycloak, Auth0 and Okta send both)"
                    .into(),
            )),
            (None, None) => {
                return Err(Error::BadClaims(
                    "neither sub nor sid: a logout token must name one".into(),
                ))
            }
        };
    Ok(Logout {
        sub,
        sid,
        iat,
        exp,
        scope: None,
    })
}

/// Like [`verify`] for a server with several issuers: `place` chooses the keys, the rules and
/// the logout audience by the token's `iss` before any key is looked up (see
/// `token::verify_placed`).
pub fn verify_placed<'k>(
    token: &[u8],
    max_token_bytes: usize,
    place: impl FnOnce(Option<&str>) -> Result<(crate::token::Placed<'k>, &'k str), Error>,
) -> Result<Logout, Error> {
    let t: Unverified<LogoutHeader, LogoutClaims> = split(token, max_token_bytes)?;
    let iss = match &t.claims.iss {
        Some(Value::String(iss)) => Some(iss.as_str()),
        _ => None,
    };
    let (placed, audience) = place(iss)?;
    check_signature(&t, placed.keys, &placed.policy)?;
    check_typ(t.header.typ.as_ref())?;
    let mut l = claims(&t.claims, &placed.policy, audience)?;
    l.scope = placed.scope;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::AlgSet;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::json;

    const SHARED_JWKS: &str = include_str!("../../tests/vectors/jwks.json");
    const LOGOUT_VECTORS: &str = include_str!("../../tests/vectors/logout.json");
    const HS256_SECRET: &[u8] = include_bytes!("../../tests/vectors/private/shared-hs256.key");
    const ISSUER: &str = "https://idp.example.test/realms/acme";
    const AUDIENCE: &str = "jwtdeny-tests";

    fn keys() -> KeySet {
        KeySet::from_json(SHARED_JWKS.as_bytes()).unwrap()
    }

    fn policy() -> Policy<'static> {
        Policy {
            algorithms: AlgSet::ALL,
            issuer: Some(ISSUER),
            // The access tokens' audience is not the logout token's: it must not be required.
            audience: Some("the-api"),
            typ: None,
            max_token_bytes: 8192,
            // Bounds access tokens only: the vectors' logout tokens live until 2100.
            max_lifetime: Some(3600),
            audiences: &[],
            client_ids: &[],
            tenant: None,
        }
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    fn judge(token: &str) -> Result<Logout, Error> {
        verify(token.as_bytes(), &keys(), &policy(), AUDIENCE)
            .and_then(|l| l.check_time(now_ms(), 0).map(|()| l))
    }

    fn code(token: &str) -> &'static str {
        match judge(token) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    /// A logout token of `claims` (merged over a valid set) with header `typ`, HS256-signed.
    fn mint(typ: Option<&str>, claims: Value) -> String {
        let mut body = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": 1767225600,
            "exp": 4102444800u64,
            "jti": "j-1",
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
            "sub": "alice",
            "sid": "sess-1",
        });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("shared-hs256".into());
        h.typ = typ.map(str::to_string);
        encode(&h, &body, &EncodingKey::from_secret(HS256_SECRET).unwrap()).unwrap()
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn every_shared_vector_gives_its_expected_outcome() {
        let doc: Value = serde_json::from_str(LOGOUT_VECTORS).unwrap();
        assert_eq!(doc["issuer"], ISSUER);
        assert_eq!(doc["logout_audience"], AUDIENCE);
        let vectors = doc["logout"].as_array().unwrap();
        assert!(vectors.len() >= 20);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let token = v["token"].as_str().unwrap();
            match (judge(token), v["expect"].as_str().unwrap()) {
                (Ok(l), "ok") => {
                    let r = &v["revokes"];
                    assert_eq!(l.sub, r["sub"].as_str().unwrap(), "{name}");
                    assert_eq!(l.sid.as_deref(), r["sid"].as_str(), "{name}");
                    assert_eq!(l.iat, r["iat"].as_i64().unwrap(), "{name}");
                }
                (Ok(l), want) => panic!("{name}: accepted {l:?}, expected {want}"),
                (Err(e), want) => assert_eq!(e.code(), want, "{name}: {e}"),
            }
        }
    }

    #[test]
    fn the_shared_access_tokens_carry_their_sid() {
        use crate::token;
        let doc: Value = serde_json::from_str(LOGOUT_VECTORS).unwrap();
        let mut p = policy();
        p.audience = None;
        p.max_lifetime = None;
        for v in doc["access"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap();
            let c = token::verify(v["token"].as_str().unwrap().as_bytes(), &keys(), &p)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = match name {
                "alice-sess-1" => Some("sess-1"),
                "alice-sess-2" => Some("sess-2"),
                "bob-before" => Some("x"),
                _ => None,
            };
            assert_eq!(c.sid.as_deref(), want, "{name}");
        }
    }

    #[test]
    fn messages_name_the_rule() {
        let msg = |t: &str| judge(t).err().unwrap().to_string();
        assert_eq!(
            msg(&mint(None, json!({"sub": null}))),
            "BADCLAIMS sid without sub: jwtdeny keeps a session in its subject's slot, so the \
             logout token must name sub too (Keycloak, Auth0 and Okta send both)"
        );
        assert!(msg(&mint(None, json!({"sub": null, "sid": null}))).contains("neither sub nor sid"));
        assert!(msg(&mint(None, json!({"nonce": "n"}))).contains("nonce is present"));
        assert!(msg(&mint(None, json!({"events": null}))).contains("events is missing"));
        assert!(msg(&mint(None, json!({"events": {"x": {}}}))).contains("has no member"));
        assert!(msg(&mint(None, json!({"aud": null}))).contains("jwtdeny.logout-audience"));
        assert!(msg(&mint(None, json!({"aud": ["x"]}))).contains("jwtdeny.logout-audience"));
        assert!(msg(&mint(Some("at+jwt"), json!({}))).starts_with("BADCLAIMS typ 'at+jwt'"));
        assert!(msg(&mint(None, json!({"exp": 1767225660}))).starts_with("EXPIRED "));
    }

    /// A valid payload with `claim` set to JSON null.
    fn with_null(claim: &str) -> String {
        let mut body = json!({
            "iss": ISSUER, "aud": AUDIENCE, "iat": 1, "exp": 4102444800u64,
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}}, "sub": "a", "sid": "s",
        });
        body[claim] = Value::Null;
        body.to_string()
    }

    #[test]
    fn null_is_present_where_presence_is_the_rule() {
        let header = r#"{"alg":"HS256","kid":"shared-hs256"}"#;
        for (claim, what) in [
            ("nonce", "nonce is present"),
            ("sid", "sid is not a non-empty string"),
            ("sub", "sub is not a non-empty string"),
            ("events", "events is not a JSON object"),
        ] {
            let e = judge(&sign_raw(header, &with_null(claim))).err().unwrap();
            assert!(e.to_string().contains(what), "{claim}: {e}");
        }
        let typ_null = r#"{"alg":"HS256","kid":"shared-hs256","typ":null}"#;
        let body = with_null("jti"); // an unread claim: null is nothing
        assert_eq!(code(&sign_raw(header, &body)), "ok");
        let e = judge(&sign_raw(typ_null, &body)).err().unwrap();
        assert!(e.to_string().contains("typ header is not a string"), "{e}");
    }

    /// A token with exactly these header and payload texts, HS256-signed.
    fn sign_raw(header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let key = EncodingKey::from_secret(HS256_SECRET).unwrap();
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{input}.{sig}")
    }

    #[test]
    fn typ_is_a_case_insensitive_media_type() {
        for ok in [
            None,
            Some("logout+jwt"),
            Some("LOGOUT+JWT"),
            Some("application/logout+jwt"),
            Some("Application/Logout+JWT"),
            Some("JWT"),
            Some("jwt"),
            Some("application/jwt"),
        ] {
            assert_eq!(code(&mint(ok, json!({}))), "ok", "{ok:?}");
        }
        for bad in [
            "at+jwt",
            "application/at+jwt",
            "AT+JWT",
            "secevent+jwt",
            "",
            "application/",
            "logout+jwt ",
            "JWS",
        ] {
            assert_eq!(code(&mint(Some(bad), json!({}))), "BADCLAIMS", "{bad:?}");
        }
    }

    #[test]
    fn each_rule_of_section_2_6() {
        let ok = |t: &str| judge(t).unwrap();
        let both = ok(&mint(None, json!({})));
        assert_eq!(
            (both.sub.as_str(), both.sid.as_deref()),
            ("alice", Some("sess-1"))
        );
        let sub_only = ok(&mint(None, json!({"sid": null})));
        assert_eq!(sub_only.sid, None);
        assert_eq!(sub_only.iat, 1767225600);
        // Other events and other claims are ignored; an empty event object is the norm but any
        // object is accepted.
        ok(&mint(
            None,
            json!({"events": {BACKCHANNEL_LOGOUT_EVENT: {"x": 1}, "urn:other": true}, "extra": [1]}),
        ));
        ok(&mint(None, json!({"aud": ["other", AUDIENCE]})));
        for (claims, want) in [
            (json!({"events": []}), "BADCLAIMS"),
            (
                json!({"events": {BACKCHANNEL_LOGOUT_EVENT: []}}),
                "BADCLAIMS",
            ),
            (
                json!({"events": {BACKCHANNEL_LOGOUT_EVENT: "x"}}),
                "BADCLAIMS",
            ),
            (json!({"nonce": ""}), "BADCLAIMS"),
            (json!({"sub": 5}), "BADCLAIMS"),
            (json!({"sub": ""}), "BADCLAIMS"),
            (json!({"sid": ""}), "BADCLAIMS"),
            (json!({"sid": ["s"]}), "BADCLAIMS"),
            (json!({"iat": null}), "BADCLAIMS"),
            (json!({"iat": "1"}), "BADCLAIMS"),
            (json!({"exp": null}), "BADCLAIMS"),
            (json!({"exp": 1e300}), "BADCLAIMS"),
            (json!({"iss": null}), "BADCLAIMS"),
            (json!({"iss": "https://evil.example"}), "BADCLAIMS"),
            (json!({"aud": "the-api"}), "BADCLAIMS"),
            (json!({"aud": 5}), "BADCLAIMS"),
            (json!({"exp": 1767225660}), "EXPIRED"),
        ] {
            assert_eq!(code(&mint(None, claims.clone())), want, "{claims}");
        }
        // Without a configured issuer, any iss (or none) is accepted.
        let mut p = policy();
        p.issuer = None;
        let t = mint(None, json!({"iss": null}));
        assert!(verify(t.as_bytes(), &keys(), &p, AUDIENCE).is_ok());
    }

    #[test]
    fn leeway_extends_exp_and_a_past_iat_is_not_judged_by_the_clock() {
        let l = Logout {
            sub: "a".into(),
            sid: None,
            iat: -10_000,
            exp: 100,
            scope: None,
        };
        assert!(l.check_time(99_999, 0).is_ok());
        assert_eq!(l.check_time(100_000, 0).err().unwrap().code(), "EXPIRED");
        assert!(l.check_time(104_999, 5).is_ok());
        assert_eq!(l.check_time(105_000, 5).err().unwrap().code(), "EXPIRED");
    }

    #[test]
    fn authenticity_is_judged_before_anything_else() {
        // Bad claims and a bad signature: BADSIG, not BADCLAIMS.
        let t = mint(Some("at+jwt"), json!({"events": null, "nonce": "n"}));
        let (signed, _) = t.rsplit_once('.').unwrap();
        assert_eq!(code(&format!("{signed}.AAAA")), "BADSIG");
        // alg none, in any spelling, is never a logout token.
        let payload = t.split('.').nth(1).unwrap();
        for none in ["none", "NONE", "nOnE"] {
            let header = b64(&format!(r#"{{"alg":"{none}","typ":"logout+jwt"}}"#));
            assert_eq!(code(&format!("{header}.{payload}.")), "BADALG", "{none}");
        }
        // The algorithm allowlist applies to logout tokens too.
        let mut p = policy();
        p.algorithms = AlgSet::of(&[Algorithm::ES256]);
        let e = verify(t.as_bytes(), &keys(), &p, AUDIENCE).err().unwrap();
        assert_eq!(e.code(), "BADALG");
        let unknown_kid = b64(r#"{"alg":"HS256","kid":"nope"}"#);
        assert_eq!(code(&format!("{unknown_kid}.{payload}.AAAA")), "NOKEY");
    }

    #[test]
    fn duplicate_members_and_bad_shapes_are_malformed() {
        let events = format!(r#""events":{{"{BACKCHANNEL_LOGOUT_EVENT}":{{}}}}"#);
        let base = format!(r#""iss":"{ISSUER}","aud":"{AUDIENCE}","iat":1,"exp":4102444800"#);
        for payload in [
            format!(r#"{{{base},{events},"sub":"a","sid":"s","sid":"t"}}"#),
            format!(r#"{{{base},{events},"sub":"a","sub":"b"}}"#),
            format!(r#"{{{base},{events},{events},"sub":"a"}}"#),
            format!(r#"{{{base},{events},"sub":"a","nonce":1,"nonce":2}}"#),
            "[1]".to_string(),
        ] {
            let t = sign_raw(r#"{"alg":"HS256","kid":"shared-hs256"}"#, &payload);
            assert_eq!(code(&t), "MALFORMED", "{payload}");
        }
        let payload = format!(r#"{{{base},{events},"sub":"a"}}"#);
        let t = sign_raw(
            r#"{"alg":"HS256","kid":"shared-hs256","typ":"JWT","typ":"at+jwt"}"#,
            &payload,
        );
        assert_eq!(code(&t), "MALFORMED");
        let t = sign_raw(r#"{"alg":"HS256","kid":"shared-hs256"}"#, &payload);
        assert_eq!(code(&t), "ok");
        let mut p = policy();
        p.max_token_bytes = 64;
        let e = verify(t.as_bytes(), &keys(), &p, AUDIENCE).err().unwrap();
        assert!(e.message().contains("max-token-bytes"), "{e}");
    }

    #[test]
    fn a_logout_from_the_future_is_refused() {
        let now = now_ms() / 1000;
        let at = |iat: i64, leeway: i64| {
            Logout {
                sub: "a".into(),
                sid: None,
                iat,
                exp: now + 600,
                scope: None,
            }
            .check_time(now * 1000, leeway)
            .map_err(|e| e.code())
        };
        assert_eq!(at(now, 0), Ok(()));
        assert_eq!(at(now - 100, 0), Ok(()));
        assert_eq!(at(now + 1, 0), Err("BADCLAIMS"));
        assert_eq!(at(now + 5, 5), Ok(()), "within leeway");
        assert_eq!(at(now + 6, 5), Err("BADCLAIMS"));
    }
}
