//! The keyed forms on a real 3-master Redis Cluster, sync and async, with subjects on every
//! master: each write is found on the master that owns its key, and nowhere is a standalone
//! form sent.

use std::collections::BTreeMap;

use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use jwtdeny::{keys, AsyncJwtdeny, CheckOptions, Claims, Code, Error, Jwtdeny};
use serde_json::json;
use tower::ServiceExt;

use crate::standalone::refused_tokens;
use crate::support::*;

/// `n` subjects (named `<tag>-<i>`) whose keys live on each master, by master port.
fn subjects_per_master(cluster: &Cluster, tag: &str, n: usize) -> Vec<Vec<String>> {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for i in 0..10_000 {
        let sub = format!("{tag}-{i}");
        let port = cluster
            .owner(&keys::subject_key(keys::DEFAULT_PREFIX, &sub))
            .port;
        let list = by_port.entry(port).or_default();
        if list.len() < n {
            list.push(sub);
        }
        if by_port.len() == 3 && by_port.values().all(|l| l.len() == n) {
            return by_port.into_values().collect();
        }
    }
    panic!("subjects do not spread over the 3 masters")
}

/// Whether `key` exists on the master that owns its slot.
fn on_owner(cluster: &Cluster, key: &str) -> bool {
    let mut conn = cluster.owner(key).conn();
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut conn)
        .unwrap()
        == 1
}

#[test]
fn keyed_forms_on_three_masters() {
    let cluster = Cluster::start();
    sync_keyed_forms(&cluster);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async_keyed_forms(&cluster));
}

fn sync_keyed_forms(cluster: &Cluster) {
    let mut jd = Jwtdeny::new(cluster.client().get_connection().unwrap());
    assert!(jd.is_keyed());
    let prefix = keys::DEFAULT_PREFIX;

    for subs in subjects_per_master(cluster, "sync", 5) {
        let [s0, s1, s2, s3, s4] = &subs[..] else {
            unreachable!()
        };

        // CHECK / REVOKE / INSPECT: the entry lands on the subject's master.
        let t = token(s0, json!({}));
        assert!(jd.check(&t).unwrap());
        assert_eq!(
            jd.check_claims(&t).unwrap().unwrap().sub(),
            Some(s0.as_str())
        );
        assert_eq!(jd.inspect(&t).unwrap().status(), Some("active"));
        assert!(jd.revoke(&t).unwrap());
        assert!(!jd.revoke(&t).unwrap());
        assert!(!jd.check(&t).unwrap());
        assert_eq!(jd.inspect(&t).unwrap().get("revoked_by"), Some("token"));
        assert!(on_owner(
            cluster,
            &keys::keys_for(prefix, &t).unwrap().entry
        ));

        // REVOKEALL with AT.
        let old = token(s1, json!({"iat": now() - 100}));
        let at = now() - 10;
        assert_eq!(jd.revoke_all(s1, Some(at)).unwrap(), at);
        assert!(!jd.check(&old).unwrap());
        assert!(on_owner(cluster, &keys::subject_key(prefix, s1)));

        // LOGOUT with a sid; the session's token (KSCHECK) is revoked.
        let session = token(s2, json!({"sid": "s", "iat": now() - 5}));
        assert!(jd.check(&session).unwrap());
        assert!(jd.logout(&logout_token(s2, Some("s"))).unwrap());
        assert!(!jd.check(&session).unwrap());
        assert_eq!(jd.inspect(&session).unwrap().status(), Some("revoked"));

        // REVOKESESSION.
        let session = token(s3, json!({"sid": "x", "iat": now() - 5}));
        assert!(jd.check(&session).unwrap());
        assert!(jd.revoke_session(s3, "x").unwrap());
        assert!(!jd.revoke_session(s3, "x").unwrap());
        assert!(!jd.check(&session).unwrap());

        // CHECKDPOP: the proof's record on the subject's master, a replay refused.
        let bound = dpop_token(s4);
        let url = "https://api.example.com/r";
        let proof = dpop_proof(&bound, "GET", url);
        let opts = CheckOptions::with_claims();
        assert!(
            jd.check_dpop(&bound, &proof, "GET", url, &opts)
                .unwrap()
                .active
        );
        let [.., replay] = keys::dpop_keys_for(prefix, &bound, &proof).unwrap();
        assert!(on_owner(cluster, &replay));
        let again = jd
            .check_dpop(&bound, &proof, "GET", url, &opts)
            .unwrap_err();
        assert_eq!(
            again.token().and_then(|e| e.dpop_error()),
            Some("invalid_dpop_proof")
        );
    }

    // Token errors keep their codes through the keyed forms (MALFORMED before sending).
    for (code, t) in refused_tokens() {
        match jd.check(&t) {
            Err(Error::Token(e)) => assert_eq!(e.code(), code, "{e}"),
            other => panic!("expected {code}, got {other:?}"),
        }
    }

    // A standalone form on a cluster node is refused with an ERR naming the keyed form: not a
    // token error.
    let mut plain = Jwtdeny::standalone(cluster.nodes[0].conn());
    match plain.check(&token("zed", json!({}))) {
        Err(Error::Redis(e)) => assert!(e.to_string().contains("JWTDENY.K"), "{e}"),
        other => panic!("{other:?}"),
    }
}

async fn async_keyed_forms(cluster: &Cluster) {
    let conn = cluster.client().get_async_connection().await.unwrap();
    let jd = AsyncJwtdeny::new(conn);
    assert!(jd.is_keyed());
    let prefix = keys::DEFAULT_PREFIX;

    for subs in subjects_per_master(cluster, "async", 3) {
        let [s0, s1, s2] = &subs[..] else {
            unreachable!()
        };
        let t = token(s0, json!({"sid": "a"}));
        assert!(jd.check(&t).await.unwrap());
        assert_eq!(jd.inspect(&t).await.unwrap().status(), Some("active"));
        assert!(jd.revoke(&t).await.unwrap());
        assert_eq!(jd.check_claims(&t).await.unwrap(), None);
        assert!(on_owner(
            cluster,
            &keys::keys_for(prefix, &t).unwrap().entry
        ));

        let old = token(s1, json!({"iat": now() - 100}));
        let at = now() - 10;
        assert_eq!(jd.revoke_all(s1, Some(at)).await.unwrap(), at);
        assert!(!jd.check(&old).await.unwrap());

        let session = token(s2, json!({"sid": "x", "iat": now() - 5}));
        assert!(jd.logout(&logout_token(s2, None)).await.unwrap());
        assert!(!jd.check(&session).await.unwrap());
        let bound = dpop_token(&format!("{s2}-dpop"));
        let proof = dpop_proof(&bound, "PUT", "http://h/p");
        let opts = CheckOptions::default();
        assert!(
            jd.check_dpop(&bound, &proof, "PUT", "http://h/p", &opts)
                .await
                .unwrap()
                .active
        );
    }
    match jd.check(&token("eve", json!({"nbf": now() + 3600}))).await {
        Err(Error::Token(e)) => assert_eq!(e.code(), Code::NotYet),
        other => panic!("{other:?}"),
    }

    // The guard over the cluster client.
    let app = Router::new()
        .route(
            "/me",
            get(|claims: Claims| async move { claims.sub().unwrap_or("").to_owned() }),
        )
        .layer(jwtdeny::JwtdenyLayer::new(jd.clone()));
    for subs in subjects_per_master(cluster, "guard", 1) {
        let t = token(&subs[0], json!({}));
        let get_me = |t: &str| {
            Request::get("/me")
                .header("authorization", format!("Bearer {t}"))
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let res = app.clone().oneshot(get_me(&t)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(jd.revoke(&t).await.unwrap());
        let res = app.clone().oneshot(get_me(&t)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}
