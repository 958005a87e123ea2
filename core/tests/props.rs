//! Property tests of the parser and of denylist key derivation (issue 5, §1), on the rlib.
//!
//! - The token path never panics, on arbitrary bytes, on three random base64url segments, and
//!   on near-valid tokens (random header and payload JSON, correctly signed or not), and what it
//!   accepts always has a non-empty `sub` and NumericDates in range.
//! - The denylist key is a function of (`sub`, canonical `iat`) alone: `jti`, `exp`, the
//!   algorithm and key, the signature bytes and the spelling of `iat` never change it.
//! - Distinct subjects never share a key (`encode_subject` is injective, the key decodes back).
//! - Every input kept in fuzz/regressions/ still passes the fuzz targets' checks.
//!
//! Needs no server; `cargo test --release --test props`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::LazyLock;

use common::{b64, encoding_key, is_error_code, ALL_ALGS};
use jwtdeny_core::keys::{AlgSet, KeySet};
use jwtdeny_core::keyscheme::{encode_subject, entry_key, subject_key, DenyKeys};
use jwtdeny_core::token::{inspect, is_hmac, payload, verify, Claims, Policy, MAX_NUMERIC_DATE};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const PREFIX: &str = "jwtdeny:";

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let bytes = std::fs::read(common::jwks_path()).expect("read jwks.json");
    KeySet::from_json(&bytes).expect("the shared JWKS loads")
});

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

/// Runs a token through every public entry point and checks that the outcomes are consistent.
/// Returns the verdict for further checks.
fn exercise(token: &[u8]) -> Result<Claims, String> {
    let keys = &*KEYS;
    let verdict = verify(token, keys, &policy());
    let (seen, again) = inspect(token, keys, &policy());
    assert_eq!(verdict, again, "verify and inspect disagree");
    let _ = payload(token);
    let _ = is_hmac(token);
    match verdict {
        Ok(c) => {
            assert!(!c.sub.is_empty(), "accepted with an empty sub");
            for v in [Some(c.iat), Some(c.exp), c.nbf].into_iter().flatten() {
                assert!(
                    (-MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE).contains(&v),
                    "accepted a NumericDate out of range: {v}"
                );
            }
            assert_eq!(seen.sub.as_deref(), Some(&*c.sub));
            // RFC 7519 §7.2: what is accepted is UTF-8 JSON as a whole, unread members included
            // (CHECK WITHCLAIMS hands these bytes to the client's own parser).
            // Syntax only: JSON sets no number range, so an unread 1e400 is fine.
            let json = payload(token).expect("accepted token without a payload");
            let text = std::str::from_utf8(&json)
                .unwrap_or_else(|e| panic!("accepted a payload that is not UTF-8 ({e}): {json:?}"));
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
                panic!("accepted a payload that is not JSON ({e}): {text:?}");
            }
            let _ = c.check_time(i64::MAX, 3600);
            let _ = c.check_time(i64::MIN, 3600);
            Ok(c)
        }
        Err(e) => {
            let text = e.to_string();
            assert!(is_error_code(e.code()), "unknown code in {text}");
            assert!(
                text.starts_with(e.code()),
                "reply does not start with its code: {text}"
            );
            assert!(text.len() <= 1024, "error text of {} bytes", text.len());
            // Printable ASCII: redis-module writes error replies one byte per char, and a char
            // whose low byte is 0 makes it panic outside the module's guard (server abort).
            assert!(
                text.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "error text that is not printable ASCII: {text:?}"
            );
            Err(e.code().to_string())
        }
    }
}

/// `header.payload.signature` from raw JSON text, signed by `alg`'s key from the vectors.
fn sign(alg: &str, header: &str, payload_json: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(payload_json.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &encoding_key(alg),
        alg.parse().expect("algorithm"),
    )
    .expect("sign");
    format!("{input}.{sig}")
}

fn kid_of(alg: &str) -> &'static str {
    common::default_kid(alg)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// A JSON value as text: what a hostile or sloppy issuer might put in a header or claim.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        select(NUMBERS.to_vec()).prop_map(str::to_string),
        ".{0,12}".prop_map(|s| json_str(&s)),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            vec(("[a-z]{0,4}", inner), 0..4).prop_map(|v| {
                let members: Vec<String> = v
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", json_str(k)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// Number spellings that have tripped parsers: overflow, negative zero, huge integers, and the
/// non-JSON NaN/Infinity (which must be refused as JSON, not crash).
const NUMBERS: [&str; 22] = [
    "0",
    "-0",
    "-1",
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1767225600",
    "1767225600.0",
    "1.7672256e9",
    "1767225600.999",
    "17672256000e-1",
    "253402300799",
    "253402300800",
    "-253402300800",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "1.0e19",
    "0.0000000000000000000000000001e28",
];

/// A member for a header: well-formed, ill-typed, or hostile.
fn header_text() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        3 => select(ALL_ALGS.to_vec()).prop_map(json_str),
        1 => select(vec!["none", "None", "NONE", "nOnE", "hs256", "", "RS1", "ES512"])
            .prop_map(json_str),
        1 => json_value(),
    ];
    let kid = prop_oneof![
        3 => select(vec![
            "shared-hs256", "shared-hs384", "shared-hs512", "shared-rsa", "shared-es256",
            "shared-es384", "shared-ed25519",
        ])
        .prop_map(json_str),
        1 => ".{0,20}".prop_map(|s| json_str(&s)),
        1 => json_value(),
    ];
    (
        proptest::option::of(alg),
        proptest::option::of(kid),
        proptest::option::of(json_value()),
        any::<bool>(),
    )
        .prop_map(|(alg, kid, extra, crit)| {
            let mut members = vec![r#""typ":"JWT""#.to_string()];
            if let Some(a) = alg {
                members.push(format!(r#""alg":{a}"#));
            }
            if let Some(k) = kid {
                members.push(format!(r#""kid":{k}"#));
            }
            if let Some(x) = extra {
                members.push(format!(r#""jwk":{x}"#));
            }
            if crit {
                members.push(r#""crit":["exp"]"#.to_string());
            }
            format!("{{{}}}", members.join(","))
        })
}

/// A claim value: mostly plausible, sometimes anything.
fn date_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (-MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE).prop_map(|n| n.to_string()),
        1 => (0..=MAX_NUMERIC_DATE, 0u32..1000).prop_map(|(n, f)| format!("{n}.{f:03}")),
        2 => select(NUMBERS.to_vec()).prop_map(str::to_string),
        1 => json_value(),
    ]
}

fn payload_text() -> impl Strategy<Value = String> {
    let sub = prop_oneof![
        4 => ".{0,16}".prop_map(|s| json_str(&s)),
        1 => json_value(),
    ];
    (
        proptest::option::of(sub),
        proptest::option::of(date_text()),
        proptest::option::of(date_text()),
        proptest::option::of(date_text()),
        proptest::option::of(json_value()),
        any::<bool>(),
    )
        .prop_map(|(sub, iat, exp, nbf, extra, dup)| {
            let mut members = Vec::new();
            if let Some(s) = &sub {
                members.push(format!(r#""sub":{s}"#));
            }
            if let Some(v) = iat {
                members.push(format!(r#""iat":{v}"#));
            }
            if let Some(v) = exp {
                members.push(format!(r#""exp":{v}"#));
            }
            if let Some(v) = nbf {
                members.push(format!(r#""nbf":{v}"#));
            }
            if let Some(x) = extra {
                members.push(format!(r#""aud":{x}"#));
            }
            if dup {
                members.push(r#""sub":"someone-else""#.to_string());
            }
            format!("{{{}}}", members.join(","))
        })
}

#[derive(Debug, Clone)]
enum Sig {
    /// Correctly signed by this algorithm's vector key.
    Signed(&'static str),
    /// Random bytes.
    Random(Vec<u8>),
    Empty,
}

fn sig() -> impl Strategy<Value = Sig> {
    prop_oneof![
        4 => select(ALL_ALGS.to_vec()).prop_map(Sig::Signed),
        1 => vec(any::<u8>(), 0..600).prop_map(Sig::Random),
        1 => Just(Sig::Empty),
    ]
}

/// Subjects rich in the characters that matter to the key: `%`, braces, `:`, and the letters of
/// their encodings.
fn subject() -> impl Strategy<Value = String> {
    prop_oneof![
        "[%{}:7BbDd25a ]{1,10}",
        ".{1,12}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

/// Every spelling of the NumericDate `secs` (>= 0) that must land on that second.
fn spellings(secs: i64, frac: u32, zeros: usize) -> Vec<String> {
    assert!(secs >= 0);
    let digits = secs.to_string();
    let mut out = vec![
        digits.clone(),
        format!("{digits}.0"),
        format!("{digits}.{}", "0".repeat(zeros)),
        format!("{digits}e0"),
        format!("{digits}0e-1"),
        format!("{digits}{}e-{zeros}", "0".repeat(zeros)),
        format!("{digits}.{frac:03}"),
        format!("{digits}.5"),
    ];
    // d.ddddde(n-1), and with the trailing zeros trimmed (1767225600 → 1.7672256e9).
    let (first, rest) = digits.split_at(1);
    if !rest.is_empty() {
        out.push(format!("{first}.{rest}e{}", rest.len()));
        let trimmed = rest.trim_end_matches('0');
        if trimmed.is_empty() {
            out.push(format!("{first}e{}", rest.len()));
        } else {
            out.push(format!("{first}.{trimmed}E+{}", rest.len()));
        }
    }
    // 0.ddddd e n
    out.push(format!("0.{digits}e{}", digits.len()));
    out
}

/// The key's inverse, to show the map is injective: `<prefix>{<enc(sub)>}:<iat>` → (sub, iat).
fn decode_entry(key: &str) -> (String, i64) {
    let rest = key.strip_prefix(PREFIX).expect("prefix");
    let rest = rest.strip_prefix('{').expect("open brace");
    let close = rest.find('}').expect("close brace");
    let (enc, tail) = (&rest[..close], &rest[close + 1..]);
    assert!(!enc.contains('{'), "an encoded subject with a brace: {enc}");
    let iat = tail.strip_prefix(':').expect("colon").parse().expect("iat");
    let mut sub = String::new();
    let mut i = 0;
    while i < enc.len() {
        if enc[i..].starts_with('%') {
            sub.push(match &enc[i..i + 3] {
                "%25" => '%',
                "%7B" => '{',
                "%7D" => '}',
                other => panic!("unexpected escape {other}"),
            });
            i += 3;
        } else {
            let c = enc[i..].chars().next().unwrap();
            sub.push(c);
            i += c.len_utf8();
        }
    }
    (sub, iat)
}

// ---------------------------------------------------------------------------------------------
// Never a panic

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..1200)) {
        exercise(&bytes).ok();
    }

    #[test]
    fn three_random_segments_never_panic(
        h in vec(any::<u8>(), 0..300),
        p in vec(any::<u8>(), 0..300),
        s in vec(any::<u8>(), 0..300),
    ) {
        let token = format!("{}.{}.{}", b64(&h), b64(&p), b64(&s));
        prop_assert!(exercise(token.as_bytes()).is_err(), "random bytes authenticated");
    }

    #[test]
    fn random_text_between_dots_never_panics(
        parts in vec("[A-Za-z0-9_\\-+/=.%{} ]{0,40}", 0..6),
    ) {
        exercise(parts.join(".").as_bytes()).ok();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn near_valid_tokens_never_panic(header in header_text(), claims in payload_text(), sig in sig()) {
        let token = match &sig {
            Sig::Signed(alg) => sign(alg, &header, &claims),
            Sig::Random(bytes) => format!("{}.{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()), b64(bytes)),
            Sig::Empty => format!("{}.{}.", b64(header.as_bytes()), b64(claims.as_bytes())),
        };
        let verdict = exercise(token.as_bytes());
        if let Ok(c) = &verdict {
            // Accepted only with a real signature, by the algorithm the header names.
            let Sig::Signed(alg) = sig else {
                panic!("unsigned token accepted: {token}");
            };
            let h: serde_json::Value = serde_json::from_str(&header).expect("accepted header is JSON");
            prop_assert_eq!(h["alg"].as_str(), Some(alg));
            prop_assert!(h.get("crit").is_none(), "accepted a crit header");
            // No duplicate sub slipped through: the claims are the payload's only sub.
            let v: serde_json::Value = serde_json::from_str(&claims).expect("accepted payload is JSON");
            prop_assert_eq!(v["sub"].as_str(), Some(&*c.sub));
            prop_assert!(!claims.contains("someone-else") || &*c.sub == "someone-else");
        }
    }

    #[test]
    fn well_formed_claims_with_any_dates_never_panic(
        alg in select(ALL_ALGS.to_vec()),
        sub in subject(),
        iat in date_text(),
        exp in date_text(),
        nbf in proptest::option::of(date_text()),
    ) {
        let header = format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, kid_of(alg));
        let mut claims = format!(r#"{{"sub":{},"iat":{iat},"exp":{exp}"#, json_str(&sub));
        if let Some(n) = nbf {
            claims.push_str(&format!(r#","nbf":{n}"#));
        }
        claims.push('}');
        let token = sign(alg, &header, &claims);
        match exercise(token.as_bytes()) {
            Ok(c) => prop_assert_eq!(&*c.sub, sub.as_str()),
            Err(code) => prop_assert!(
                code == "BADCLAIMS" || code == "MALFORMED",
                "a correctly signed token with odd dates got {} ({})", code, claims
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Found by fuzzing (fuzz/regressions/token/accepted-non-utf8-payload): serde_json skips the
    /// members jwtdeny does not read without checking their bytes, so a signed token with
    /// invalid UTF-8 in, say, `"jti"` was accepted although its payload is not JSON.
    #[test]
    fn unread_members_are_held_to_utf8_json_too(
        bytes in vec(any::<u8>(), 1..12),
        in_header in any::<bool>(),
    ) {
        let mut header = br#"{"alg":"HS256","kid":"shared-hs256""#.to_vec();
        let mut claims = br#"{"sub":"a","iat":1,"exp":4102444800"#.to_vec();
        let target = if in_header { &mut header } else { &mut claims };
        target.extend_from_slice(br#","x":[""#);
        target.extend(bytes.iter().map(|b| if *b == b'"' || *b == b'\\' { b'a' } else { *b }));
        target.extend_from_slice(br#""]"#);
        header.push(b'}');
        claims.push(b'}');
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &encoding_key("HS256"),
            jsonwebtoken::Algorithm::HS256,
        )
        .expect("sign");
        let token = format!("{input}.{sig}");
        let json = |b: &[u8]| {
            std::str::from_utf8(b).is_ok_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok())
        };
        let valid = json(&header) && json(&claims);
        match exercise(token.as_bytes()) {
            Ok(_) => prop_assert!(valid, "accepted a token whose JSON is not valid UTF-8 JSON"),
            Err(code) => prop_assert!(!valid || code != "MALFORMED", "refused valid JSON: {}", code),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The key is a function of (sub, canonical iat) alone

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn one_key_per_subject_and_second(
        sub in subject(),
        iat in 0..=MAX_NUMERIC_DATE - 1,
        frac in 1u32..1000,
        zeros in 1usize..25,
        exps in vec(0..=MAX_NUMERIC_DATE, 4),
        jtis in vec("[a-z0-9]{0,12}", 4),
    ) {
        let want = entry_key(PREFIX, &sub, iat);
        let sub_json = json_str(&sub);
        let mut seen = BTreeSet::new();
        let mut tokens = BTreeSet::new();
        // Every spelling, each signed by a rotating algorithm and key, with its own jti and exp.
        for (i, spelled) in spellings(iat, frac, zeros).iter().enumerate() {
            let alg = ALL_ALGS[i % ALL_ALGS.len()];
            let header = format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, kid_of(alg));
            let claims = format!(
                r#"{{"jti":"{}","sub":{sub_json},"iat":{spelled},"exp":{}}}"#,
                jtis[i % 4], exps[i % 4]
            );
            let token = sign(alg, &header, &claims);
            let c = verify(token.as_bytes(), &KEYS, &policy())
                .unwrap_or_else(|e| panic!("{alg} token with iat {spelled} refused: {e}"));
            prop_assert_eq!(c.iat, iat, "iat {} is not second {}", spelled, iat);
            let key = entry_key(PREFIX, &c.sub, c.iat);
            prop_assert_eq!(&key, &want, "iat spelled {} with {}", spelled, alg);
            seen.insert(key);
            tokens.insert(token);
        }
        // The same claims under HS256 and HS384 (different keys), and ES256 twice (randomized
        // signatures): different bytes, one key.
        let claims = format!(r#"{{"sub":{sub_json},"iat":{iat},"exp":{}}}"#, exps[0]);
        for alg in ["HS256", "HS384", "ES256", "ES256", "PS256", "EdDSA"] {
            let header = format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, kid_of(alg));
            let token = sign(alg, &header, &claims);
            let c = verify(token.as_bytes(), &KEYS, &policy()).expect("authentic");
            seen.insert(entry_key(PREFIX, &c.sub, c.iat));
            tokens.insert(token);
        }
        prop_assert_eq!(seen.len(), 1, "one (sub, iat) gave several keys: {:?}", seen);
        prop_assert!(tokens.len() >= 10, "the tokens were not all different");
        prop_assert_eq!(decode_entry(&want), (sub, iat));
    }

    #[test]
    fn floored_fractions_and_negative_dates(secs in -MAX_NUMERIC_DATE..MAX_NUMERIC_DATE, frac in 1u32..1000) {
        // secs + frac/1000, spelled out; its floor is secs whatever the sign.
        let spelled = if secs >= 0 {
            format!("{secs}.{frac:03}")
        } else {
            // -5 + 0.250 = -4.750
            let whole = secs + 1;
            let f = 1000 - frac;
            if whole == 0 { format!("-0.{f:03}") } else { format!("{whole}.{f:03}") }
        };
        let claims = format!(r#"{{"sub":"s","iat":{spelled},"exp":{MAX_NUMERIC_DATE}}}"#);
        let token = sign("HS256", r#"{"alg":"HS256","kid":"shared-hs256"}"#, &claims);
        let c = verify(token.as_bytes(), &KEYS, &policy())
            .unwrap_or_else(|e| panic!("iat {spelled} refused: {e}"));
        prop_assert_eq!(c.iat, secs, "floor({}) is not {}", spelled, secs);
    }
}

// ---------------------------------------------------------------------------------------------
// Distinct subjects never collide

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn distinct_subjects_get_distinct_keys(
        a in subject(), b in subject(),
        i in -MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE, j in -MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE,
    ) {
        let (ka, kb) = (entry_key(PREFIX, &a, i), entry_key(PREFIX, &b, j));
        prop_assert_eq!((a == b) && (i == j), ka == kb, "{} / {}", ka, kb);
        prop_assert_eq!(a == b, encode_subject(&a) == encode_subject(&b));
        prop_assert_eq!(a == b, subject_key(PREFIX, &a) == subject_key(PREFIX, &b));
        // An entry key is never a subject key (the cutoff and the entries never overwrite).
        prop_assert_ne!(&ka, &subject_key(PREFIX, &b));
        // The key decodes back to exactly its (sub, iat), and its hash tag is the whole subject.
        prop_assert_eq!(decode_entry(&ka), (a.clone(), i));
        prop_assert!(ka.starts_with(&subject_key(PREFIX, &a)));
        // The one-buffer form the commands use gives the same two keys.
        let both = DenyKeys::new(PREFIX, &a, i);
        prop_assert_eq!(both.entry(), ka.as_str());
        let subject = subject_key(PREFIX, &a);
        prop_assert_eq!(both.subject(), subject.as_str());
        let enc = encode_subject(&a);
        prop_assert!(!enc.contains(['{', '}']), "braces left in {}", enc);
    }

    #[test]
    fn ordinary_subjects_are_verbatim(a in "[^%{}]{1,20}") {
        let enc = encode_subject(&a);
        prop_assert_eq!(enc.as_ref(), a.as_str());
    }
}

#[test]
fn encoded_lookalikes_do_not_collide() {
    let subs = [
        "{", "%7B", "%257B", "}", "%7D", "%", "%25", "%2525", "{}", "%7B%7D", "a:1", "a",
    ];
    let mut keys = BTreeSet::new();
    for s in subs {
        assert!(keys.insert(entry_key(PREFIX, s, 1)), "collision for {s:?}");
    }
    // "a" at iat 1 vs "a}:1" style tricks: the brace is encoded, so the tag ends where it should.
    assert_ne!(entry_key(PREFIX, "a}:1", 2), entry_key(PREFIX, "a", 1));
}

// ---------------------------------------------------------------------------------------------
// Fuzz regressions

/// What fuzz/fuzz_targets/token.rs does with one input: the bytes as a token, and, when they
/// hold a NUL, `<header JSON> NUL <payload JSON>` signed with the shared HS256 key.
fn fuzz_token_input(data: &[u8]) {
    exercise(data).ok();
    if let Some(nul) = data.iter().position(|b| *b == 0) {
        let input = format!("{}.{}", b64(&data[..nul]), b64(&data[nul + 1..]));
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &encoding_key("HS256"),
            jsonwebtoken::Algorithm::HS256,
        )
        .expect("sign");
        exercise(format!("{input}.{sig}").as_bytes()).ok();
    }
}

/// What fuzz/fuzz_targets/jwks.rs does with one input.
fn fuzz_jwks_input(data: &[u8]) {
    let Ok(set) = KeySet::from_json(data) else {
        return;
    };
    let payload = b64(br#"{"sub":"fuzz","iat":1,"exp":2}"#);
    for key in set.iter() {
        for alg in key.algorithms.iter() {
            if let Some(kid) = &key.kid {
                assert!(
                    set.select(Some(kid), alg).is_ok(),
                    "kid does not select its key"
                );
            }
            let header = match &key.kid {
                Some(kid) => {
                    serde_json::json!({"alg": jwtdeny_core::keys::alg_name(alg), "kid": kid})
                }
                None => serde_json::json!({"alg": jwtdeny_core::keys::alg_name(alg)}),
            };
            let header = b64(header.to_string().as_bytes());
            for sig in [&[0x01u8; 64][..], &[0x5au8; 256][..]] {
                let token = format!("{header}.{payload}.{}", b64(sig));
                assert!(verify(token.as_bytes(), &set, &policy()).is_err());
            }
        }
    }
}

/// Every input under fuzz/regressions/<target>/ goes through the same checks as in the fuzz
/// target, so a failure once found stays fixed in `make test`, not only in `make fuzz`.
#[test]
fn fuzz_regressions_stay_fixed() {
    let root = common::repo_root().join("fuzz").join("regressions");
    let mut n = 0;
    for target in ["token", "jwks"] {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if !path.is_file() || path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read regression");
            let outcome = std::panic::catch_unwind(|| match target {
                "token" => fuzz_token_input(&bytes),
                _ => fuzz_jwks_input(&bytes),
            });
            assert!(
                outcome.is_ok(),
                "fuzz regression {} fails again",
                path.display()
            );
            n += 1;
        }
    }
    eprintln!("{n} fuzz regression inputs checked");
}
