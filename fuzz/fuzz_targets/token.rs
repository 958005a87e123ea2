//! Fuzzes the whole token path: split, base64url, header and payload JSON, algorithm and key
//! choice, signature, claims.
//!
//! Each input is used twice:
//! 1. as a token, verbatim (what a client can send);
//! 2. if it holds a NUL byte, as `<header JSON> NUL <payload JSON>` signed with the shared HS256
//!    key, so that fuzzed JSON reaches the claims checks behind a signature that holds.
//!
//! Besides "no panic", every outcome must be consistent: `verify` and `inspect` agree, an
//! accepted token has a non-empty `sub` and NumericDates in range, and error text is bounded and
//! single-line (it goes into a Redis error reply and the log).
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwtdeny_core::keyscheme::{entry_key, subject_key, DenyKeys};
use jwtdeny_core::keys::{AlgSet, KeySet};
use jwtdeny_core::token::{inspect, is_hmac, payload, verify, Policy, MAX_NUMERIC_DATE};
use libfuzzer_sys::fuzz_target;

const JWKS: &[u8] = include_bytes!("../../tests/vectors/jwks.json");
const HS256_SECRET: &[u8] = include_bytes!("../../tests/vectors/private/shared-hs256.key");

static KEYS: LazyLock<KeySet> =
    LazyLock::new(|| KeySet::from_json(JWKS).expect("the shared JWKS loads"));
static HS256: LazyLock<EncodingKey> =
    LazyLock::new(|| EncodingKey::from_secret(HS256_SECRET).expect("HS256 secret"));

/// Everything allowed, nothing required: the policy that lets the most tokens through.
fn open_policy() -> Policy<'static> {
    Policy {
        algorithms: AlgSet::ALL,
        issuer: None,
        audience: None,
        typ: None,
        max_token_bytes: 8192,
        max_lifetime: None,
    }
}

/// Every optional check switched on.
fn strict_policy() -> Policy<'static> {
    Policy {
        algorithms: AlgSet::of(&[Algorithm::HS256, Algorithm::ES256, Algorithm::EdDSA]),
        issuer: Some("https://issuer.example"),
        audience: Some("api"),
        typ: None,
        max_token_bytes: 4096,
        max_lifetime: Some(3600),
    }
}

fn check(token: &[u8], policy: &Policy) {
    let keys = &*KEYS;
    let verdict = verify(token, keys, policy);
    let (seen, again) = inspect(token, keys, policy);
    assert_eq!(verdict, again, "verify and inspect disagree");

    match &verdict {
        Ok(c) => {
            assert!(!c.sub.is_empty(), "accepted with an empty sub");
            for (name, v) in [("iat", Some(c.iat)), ("exp", Some(c.exp)), ("nbf", c.nbf)] {
                if let Some(v) = v {
                    assert!(
                        (-MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE).contains(&v),
                        "{name} {v} out of range"
                    );
                }
            }
            assert_eq!(seen.sub.as_deref(), Some(&*c.sub));
            assert_eq!(seen.iat, Some(c.iat));
            assert_eq!(seen.exp, Some(c.exp));
            // RFC 7519 §7.2: the payload is UTF-8 JSON as a whole, unread members included (CHECK
            // WITHCLAIMS hands it to the client's parser). Syntax only: JSON sets no number
            // range, so an unread 1e400 is fine.
            let json = payload(token).expect("an accepted token has a payload");
            let text = std::str::from_utf8(&json).expect("an accepted payload is UTF-8");
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .expect("an accepted payload is JSON");
            let entry = entry_key("jwtdeny:", &c.sub, c.iat);
            let subject = subject_key("jwtdeny:", &c.sub);
            assert!(entry.starts_with(&subject) && entry.len() > subject.len());
            let both = DenyKeys::new("jwtdeny:", &c.sub, c.iat);
            assert_eq!(
                (both.entry(), both.subject()),
                (entry.as_str(), subject.as_str())
            );
            // Neither may panic or overflow, whatever the dates.
            let _ = c.expires_at_ms(3600);
            let _ = c.check_time(i64::MAX, 3600);
            let _ = c.check_time(0, 0);
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.len() <= 1024, "error text of {} bytes", text.len());
            // Printable ASCII: redis-module writes error replies one byte per char, and a char
            // whose low byte is 0 makes it panic outside the module's guard (server abort).
            assert!(
                text.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "error text that is not printable ASCII: {text:?}"
            );
            assert_eq!(
                text.split(' ').next(),
                Some(e.code()),
                "reply must start with its code"
            );
            // Claims are only shown once the signature holds.
            if matches!(e.code(), "MALFORMED" | "BADALG" | "NOKEY" | "BADSIG") {
                assert!(seen.sub.is_none() && seen.iat.is_none() && seen.exp.is_none());
            }
        }
    }
    let _ = payload(token);
    // Only routes a token (worker pool or not); it must not panic either.
    let _ = is_hmac(token);
}

fuzz_target!(|data: &[u8]| {
    check(data, &open_policy());

    if let Some(nul) = data.iter().position(|b| *b == 0) {
        let (header, payload_json) = (&data[..nul], &data[nul + 1..]);
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload_json)
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &HS256, Algorithm::HS256)
            .expect("HMAC signing cannot fail");
        let token = format!("{input}.{sig}");
        check(token.as_bytes(), &open_policy());
        // The optional checks (iss, aud, max-lifetime, allow-list); consistency is covered above.
        if let Ok(c) = verify(token.as_bytes(), &KEYS, &strict_policy()) {
            assert!(!c.sub.is_empty() && c.exp - c.iat <= 3600);
        }
    }
});
