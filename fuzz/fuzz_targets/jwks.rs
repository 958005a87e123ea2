//! Fuzzes the JWKS loader (`KeySet::from_json`) and then every key it accepts: each must be
//! selectable by its own kid for each algorithm it claims, and a token with a garbage signature
//! must never verify against it (building the verifier parses the key material in aws-lc).
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwtdeny_core::keys::{alg_name, AlgSet, KeySet};
use jwtdeny_core::token::{verify, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let set = match KeySet::from_json(data) {
        Ok(set) => set,
        Err(e) => {
            let text = e.to_string();
            assert!(e.code() == "ERR", "a keys-file error is an ERR: {text}");
            assert!(
                text.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "error text that is not printable ASCII: {text:?}"
            );
            return;
        }
    };
    assert!(!set.is_empty(), "an accepted JWKS has a usable key");
    let policy = Policy {
        algorithms: AlgSet::ALL,
        issuer: None,
        audience: None,
        typ: None,
        max_token_bytes: 1 << 20,
        max_lifetime: None,
    };
    let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"fuzz","iat":1,"exp":2}"#);
    for key in set.iter() {
        assert!(
            key.algorithms != AlgSet::default(),
            "a key that serves nothing"
        );
        for alg in key.algorithms.iter() {
            if let Some(kid) = &key.kid {
                assert!(
                    set.select(Some(kid), alg).is_ok(),
                    "kid does not select its key"
                );
            }
        }
        // One verification per key (its first algorithm) is enough to make aws-lc parse the
        // key material; a garbage signature must never verify.
        let Some(alg) = key.algorithms.iter().next() else {
            continue;
        };
        let header = match &key.kid {
            Some(kid) => serde_json::json!({"alg": alg_name(alg), "kid": kid}),
            None => serde_json::json!({"alg": alg_name(alg)}),
        };
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        for sig in [&[0x01u8; 64][..], &[0x5au8; 256][..]] {
            let token = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig));
            let verdict = verify(token.as_bytes(), &set, &policy);
            assert!(verdict.is_err(), "a garbage signature verified: {token}");
        }
    }
});
