//! Several issuers (`jwtdeny.issuers-file`): with the registry, the crate places each token by
//! its `iss` as the server does, so the keyed forms (forced here on a standalone server) name
//! the scoped keys the server derives, and revocations never cross issuers.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwtdeny::keys::{self, Issuers};
use jwtdeny::{AsyncJwtdeny, Error, Jwtdeny};
use serde_json::{json, Value};

use crate::support::*;

const ACME: &str = "https://acme.example/";
const KC: &str = "https://sso.example/realms/{tenant}";
const ACME_AUDIENCE: &str = "acme-app";

fn secret_of(name: &str) -> Vec<u8> {
    format!("{name}-secret-of-at-least-thirty-two-bytes!").into_bytes()
}

/// An HS256 token under the vectors' kid, signed with `of`'s secret (`default`: the vectors').
fn issued(of: &str, claims: Value) -> String {
    issued_as(of, None, claims)
}

/// [`issued`] with a `typ` header.
fn issued_as(of: &str, typ: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    if let Some(typ) = typ {
        header.typ = Some(typ.into());
    }
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

/// The registry, its keys files in a directory of their own, loaded by every server.
fn registry(servers: &[&Server]) -> Value {
    let dir = std::env::temp_dir().join(format!("jwtdeny-rust-issuers-{}", servers[0].port));
    std::fs::create_dir_all(&dir).unwrap();
    let mut reg = json!({"issuers": {
        "acme": {"issuer": ACME, "max-lifetime": 86400, "logout-audience": ACME_AUDIENCE},
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
    for server in servers {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("jwtdeny.issuers-file")
            .arg(path.to_string_lossy().as_ref())
            .query(&mut server.conn())
            .expect("CONFIG SET jwtdeny.issuers-file");
    }
    reg
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn issuers_scope_their_subjects_keys_in_both_forms() {
    let server = Server::start();
    let reg = registry(&[&server]);
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

/// A subject whose default-issuer keys and `scope`'s keys are on two different masters.
fn sub_on_two_masters(cluster: &Cluster, tag: &str, scope: &str) -> String {
    let prefix = keys::DEFAULT_PREFIX;
    (0..1000)
        .map(|i| format!("{tag}-{i}"))
        .find(|s| {
            let default = cluster.owner(&keys::subject_key(prefix, s)).port;
            default
                != cluster
                    .owner(&keys::scoped_subject_key(prefix, scope, s))
                    .port
        })
        .expect("a subject on two masters")
}

/// Whether `key` exists on the master that owns its slot.
fn on_owner(cluster: &Cluster, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut cluster.owner(key).conn())
        .unwrap()
        == 1
}

fn claims_of(sub: &str, iss: Option<&str>, iat: i64, extra: Value) -> Value {
    let mut c = json!({"sub": sub, "iat": iat, "exp": iat + 3600});
    if let Some(iss) = iss {
        c["iss"] = json!(iss);
    }
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// The registry on every node of a 3-master cluster: the keyed forms name the scoped keys, the
/// cluster client routes them to the master of the scoped slot (not the default subject's),
/// and the server takes them; the unscoped keys of a registry token are refused.
#[test]
fn scoped_keys_route_to_their_masters_in_a_cluster() {
    let cluster = Cluster::start();
    let nodes: Vec<&Server> = cluster.nodes.iter().collect();
    let reg = registry(&nodes);
    let issuers = Issuers::from_json(&reg).unwrap();
    let prefix = keys::DEFAULT_PREFIX;
    let (t1, t2) = (KC.replace("{tenant}", "t1"), KC.replace("{tenant}", "t2"));

    let conn = cluster.client().get_connection().unwrap();
    let mut jd = Jwtdeny::new(conn).issuers(issuers.clone());
    assert!(jd.is_keyed());
    let sub = sub_on_two_masters(&cluster, "rust-cluster-issuers", "%acme:");
    let t = now();
    let acme = issued("acme", claims_of(&sub, Some(ACME), t - 60, json!({})));
    let default = issued("default", claims_of(&sub, None, t - 60, json!({})));
    let kc1 = issued("kc", claims_of(&sub, Some(&t1), t - 60, json!({})));
    let kc2 = issued("kc", claims_of(&sub, Some(&t2), t - 60, json!({})));
    for x in [&acme, &default, &kc1, &kc2] {
        assert!(jd.check(x).unwrap(), "{x}");
    }

    // KREVOKE: the entry on the scoped subject's master, none under the default subject.
    let scoped = keys::keys_for_issuers(prefix, Some(&issuers), &acme).unwrap();
    let plain = keys::keys_for(prefix, &acme).unwrap();
    assert_eq!(scoped.subject, format!("jwtdeny:{{%acme:{sub}}}"));
    assert_ne!(
        cluster.owner(&scoped.subject).port,
        cluster.owner(&plain.subject).port
    );
    assert!(jd.revoke(&acme).unwrap());
    assert!(!jd.revoke(&acme).unwrap());
    assert!(on_owner(&cluster, &scoped.entry));
    assert!(!on_owner(&cluster, &plain.entry));
    assert!(!jd.check(&acme).unwrap());
    assert!(
        jd.check(&default).unwrap(),
        "the default issuer's sub untouched"
    );

    // The unscoped keys of a registry token, sent by hand: refused by the node they route to.
    for (cmd, keys) in [
        ("JWTDENY.KCHECK", vec![&plain.entry, &plain.subject]),
        ("JWTDENY.KREVOKE", vec![&plain.entry, &plain.subject]),
        (
            "JWTDENY.KSCHECK",
            vec![&plain.entry, &plain.subject, &plain.third],
        ),
    ] {
        let err = redis::cmd(cmd)
            .arg(&keys)
            .arg(&acme)
            .query::<i64>(jd.connection())
            .unwrap_err();
        assert!(
            err.to_string().contains("does not match the derived key"),
            "{cmd}: {err}"
        );
    }
    // KSCHECK by hand with the scoped keys: revoked.
    let ks: i64 = redis::cmd("JWTDENY.KSCHECK")
        .arg(&scoped.entry)
        .arg(&scoped.subject)
        .arg(&scoped.third)
        .arg(&acme)
        .query(jd.connection())
        .unwrap();
    assert_eq!(ks, 0);

    // KREVOKEALL ISSUER <a tenant's iss>: its scoped cutoff on its master, t2 untouched.
    assert!(jd.revoke_all_of(Some(&t1), &sub, None).unwrap() >= t);
    assert!(on_owner(
        &cluster,
        &keys::scoped_subject_key(prefix, "%kc.t1:", &sub)
    ));
    assert!(!jd.check(&kc1).unwrap());
    assert!(jd.check(&kc2).unwrap() && jd.check(&default).unwrap());
    // Another issuer's subject key with ISSUER: refused.
    let err = redis::cmd("JWTDENY.KREVOKEALL")
        .arg(keys::subject_key(prefix, &sub))
        .arg(&sub)
        .arg("ISSUER")
        .arg(&t2)
        .query::<i64>(jd.connection())
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    for bad in ["kc", "nobody"] {
        match jd.revoke_all_of(Some(bad), &sub, None) {
            Err(Error::Redis(e)) => assert_eq!(e.code(), Some("ERR"), "{e}"),
            other => panic!("ISSUER {bad}: {other:?}"),
        }
    }

    // KREVOKESESSION (no ISSUER: the server reads the scope of its keys), then KLOGOUT of
    // acme's logout token.
    let s1 = issued(
        "acme",
        claims_of(&sub, Some(ACME), t - 30, json!({"sid": "s1"})),
    );
    let s2 = issued(
        "acme",
        claims_of(&sub, Some(ACME), t - 30, json!({"sid": "s2"})),
    );
    assert!(jd.check(&s1).unwrap() && jd.check(&s2).unwrap());
    assert!(jd.revoke_session_of(Some("acme"), &sub, "s1").unwrap());
    assert!(!jd.revoke_session_of(Some(ACME), &sub, "s1").unwrap());
    assert!(on_owner(
        &cluster,
        &format!("jwtdeny:{{%acme:{sub}}}:sid:s1")
    ));
    assert!(!jd.check(&s1).unwrap());
    assert!(jd.check(&s2).unwrap());
    let logout = issued_as(
        "acme",
        Some("logout+jwt"),
        json!({
            "iss": ACME, "aud": ACME_AUDIENCE, "sub": sub, "sid": "s2", "iat": now(),
            "exp": now() + 120, "jti": format!("j-{sub}"),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
    );
    assert!(jd.logout(&logout).unwrap());
    assert!(!jd.check(&s2).unwrap());
    assert!(on_owner(
        &cluster,
        &format!("jwtdeny:{{%acme:{sub}}}:sid:s2")
    ));

    // The default issuer's own cutoff leaves the others alone.
    assert!(jd.revoke_all(&sub, None).unwrap() >= t);
    assert!(!jd.check(&default).unwrap());
    assert!(jd.check(&kc2).unwrap());

    // Without the registry the crate names the unscoped keys: the server refuses them.
    let mut bare = Jwtdeny::new(cluster.client().get_connection().unwrap());
    match bare.check(&kc2) {
        Err(Error::Redis(e)) => assert!(e.to_string().contains("does not match"), "{e}"),
        other => panic!("{other:?}"),
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async_scoped_keys(&cluster, issuers));
}

async fn async_scoped_keys(cluster: &Cluster, issuers: Issuers) {
    let prefix = keys::DEFAULT_PREFIX;
    let conn = cluster.client().get_async_connection().await.unwrap();
    let jd = AsyncJwtdeny::new(conn).issuers(issuers.clone());
    assert!(jd.is_keyed());
    let sub = sub_on_two_masters(cluster, "rust-cluster-issuers-async", "%kc.t2:");
    let t2 = KC.replace("{tenant}", "t2");
    let t = now();
    let kc2 = issued(
        "kc",
        claims_of(&sub, Some(&t2), t - 60, json!({"sid": "a"})),
    );
    let default = issued(
        "default",
        claims_of(&sub, None, t - 60, json!({"sid": "a"})),
    );
    assert!(jd.check(&kc2).await.unwrap() && jd.check(&default).await.unwrap());
    assert!(jd.revoke(&kc2).await.unwrap());
    let scoped = keys::keys_for_issuers(prefix, Some(&issuers), &kc2).unwrap();
    assert_eq!(
        scoped.session.as_deref(),
        Some(&*format!("jwtdeny:{{%kc.t2:{sub}}}:sid:a"))
    );
    assert!(on_owner(cluster, &scoped.entry));
    assert!(!jd.check(&kc2).await.unwrap());
    assert!(jd.check(&default).await.unwrap());

    let later = issued(
        "kc",
        claims_of(&sub, Some(&t2), t - 10, json!({"sid": "b"})),
    );
    assert!(jd.check(&later).await.unwrap());
    // No max-lifetime at kc: the session's end is the subject's cutoff (KREVOKESESSION).
    assert!(jd.revoke_session_of(Some(&t2), &sub, "b").await.unwrap());
    assert!(!jd.check(&later).await.unwrap());
    assert!(jd.check(&default).await.unwrap());
    assert!(jd.revoke_all_of(Some("acme"), &sub, Some(t)).await.unwrap() == t);
    assert!(on_owner(
        cluster,
        &keys::scoped_subject_key(prefix, "%acme:", &sub)
    ));
    assert!(jd.check(&default).await.unwrap());
}
