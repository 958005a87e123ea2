//! Several issuers (`jwtdeny.issuers-file`): with the registry, the crate places each token by
//! its `iss` as the server does, so the keyed forms (forced here on a standalone server) name
//! the scoped keys the server derives, and revocations never cross issuers.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwtdeny::keys::{self, Issuers};
use jwtdeny::{Error, Jwtdeny};
use serde_json::{json, Value};

use crate::support::*;

const ACME: &str = "https://acme.example/";
const KC: &str = "https://sso.example/realms/{tenant}";

fn secret_of(name: &str) -> Vec<u8> {
    format!("{name}-secret-of-at-least-thirty-two-bytes!").into_bytes()
}

/// An HS256 token under the vectors' kid, signed with `of`'s secret (`default`: the vectors').
fn issued(of: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("shared-hs256".into());
    let secret = if of == "default" {
        std::fs::read(repo_root().join("tests/vectors/private/shared-hs256.key")).unwrap()
    } else {
        secret_of(of)
    };
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(&secret).unwrap(),
    )
    .unwrap()
}

/// The registry, its keys files in a directory of their own, loaded by the server.
fn registry(server: &Server) -> Value {
    let dir = std::env::temp_dir().join(format!("jwtdeny-rust-issuers-{}", server.port));
    std::fs::create_dir_all(&dir).unwrap();
    let mut reg = json!({"issuers": {
        "acme": {"issuer": ACME, "max-lifetime": 86400},
        "kc": {"issuer": KC, "tenants": ["t1", "t2"]},
    }});
    for (name, entry) in reg["issuers"].as_object_mut().unwrap() {
        let file = dir.join(format!("{name}.json"));
        let k = base64_url(&secret_of(name));
        let jwks = json!({"keys": [{"kty": "oct", "kid": "shared-hs256", "alg": "HS256", "k": k}]});
        std::fs::write(&file, jwks.to_string()).unwrap();
        entry["keys-file"] = json!(file.to_string_lossy());
    }
    let path = dir.join("issuers.json");
    std::fs::write(&path, reg.to_string()).unwrap();
    let mut conn = server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("jwtdeny.issuers-file")
        .arg(path.to_string_lossy().as_ref())
        .query(&mut conn)
        .expect("CONFIG SET jwtdeny.issuers-file");
    reg
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn issuers_scope_their_subjects_keys_in_both_forms() {
    let server = Server::start();
    let reg = registry(&server);
    for keyed in [false, true] {
        let conn = server.conn();
        let base = if keyed {
            Jwtdeny::cluster(conn)
        } else {
            Jwtdeny::standalone(conn)
        };
        let mut jd = base.issuers(Issuers::from_json(&reg).unwrap());
        let sub = format!("rust-issuers-{keyed}");
        let t = now();
        let claims = |iss: Option<&str>, extra: Value| {
            let mut c = json!({"sub": sub, "iat": t - 60, "exp": t + 3600});
            if let Some(iss) = iss {
                c["iss"] = json!(iss);
            }
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        let (t1, t2) = (KC.replace("{tenant}", "t1"), KC.replace("{tenant}", "t2"));
        let acme = issued("acme", claims(Some(ACME), json!({})));
        let default = issued("default", claims(None, json!({})));
        let kc1 = issued("kc", claims(Some(&t1), json!({})));
        let kc2 = issued("kc", claims(Some(&t2), json!({})));
        let issuers = Issuers::from_json(&reg).unwrap();
        let scopes: Vec<&str> = [&acme, &default, &kc1, &kc2]
            .iter()
            .map(|x| issuers.scope_for(x).unwrap())
            .collect();
        assert_eq!(scopes, ["%acme:", "", "%kc.t1:", "%kc.t2:"]);
        let k = keys::keys_for_issuers("jwtdeny:", Some(&issuers), &acme).unwrap();
        assert_eq!(k.entry, format!("jwtdeny:{{%acme:{sub}}}:{}", t - 60));
        for x in [&acme, &default, &kc1, &kc2] {
            assert!(jd.check(x).unwrap(), "{keyed}: {x}");
        }
        let crossed = issued("acme", claims(Some(&t1), json!({})));
        assert!(matches!(jd.check(&crossed), Err(Error::Token(_))));
        assert!(jd.revoke(&acme).unwrap());
        let all: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut server.conn())
            .unwrap();
        assert!(all.contains(&k.entry), "{all:?}");
        assert!(!jd.check(&acme).unwrap());
        assert!(jd.check(&default).unwrap() && jd.check(&kc1).unwrap());
        assert!(jd.revoke_all_of(Some(&t1), &sub, None).unwrap() >= t);
        assert!(!jd.check(&kc1).unwrap() && jd.check(&kc2).unwrap());
        // A template needs its tenant's iss; an unknown issuer is an ERR, never a token's code.
        for bad in ["kc", "nobody"] {
            match jd.revoke_all_of(Some(bad), &sub, None) {
                Err(Error::Redis(_)) => {}
                other => panic!("{keyed}: ISSUER {bad}: {other:?}"),
            }
        }
        let with_sid = issued(
            "acme",
            claims(Some(ACME), json!({"sid": "s1", "iat": t - 30})),
        );
        assert!(jd.check(&with_sid).unwrap());
        assert!(jd.revoke_session_of(Some("acme"), &sub, "s1").unwrap());
        assert!(!jd.check(&with_sid).unwrap());
        let all: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut server.conn())
            .unwrap();
        assert!(
            all.contains(&format!("jwtdeny:{{%acme:{sub}}}:sid:s1")),
            "{all:?}"
        );
        assert!(
            jd.check(&default).unwrap(),
            "the default issuer's subject untouched"
        );
        assert!(jd.revoke_all(&sub, None).unwrap() >= t);
        assert!(!jd.check(&default).unwrap());
        assert!(
            jd.check(&kc2).unwrap(),
            "t2 untouched by the default's cutoff"
        );
    }
}
