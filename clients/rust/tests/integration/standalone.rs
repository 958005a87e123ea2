//! The sync and async clients against one real server each: every command, every error code.

use std::time::Duration;

use jwtdeny::{AsyncJwtdeny, CheckOptions, Code, Error, Jwtdeny};
use serde_json::json;

use crate::support::*;

/// Tokens the server refuses, one per code, with the code it gives.
pub fn refused_tokens() -> Vec<(Code, String)> {
    let good = token("eve", json!({}));
    let (head, _) = good.rsplit_once('.').unwrap();
    vec![
        (Code::Malformed, "not-a-token".to_owned()),
        (Code::Malformed, format!("{head}.AAAA.more")),
        (
            Code::BadAlg,
            format!(
                "{}.{}.",
                b64url(r#"{"alg":"none"}"#),
                b64url(&json!({"sub": "eve", "iat": now(), "exp": FAR_EXP}).to_string())
            ),
        ),
        (
            Code::NoKey,
            sign(
                &json!({"alg": "HS256", "kid": "no-such-kid"}),
                &json!({"sub": "eve", "iat": now(), "exp": FAR_EXP}),
            ),
        ),
        (Code::BadSig, format!("{head}.AAAA")),
        (Code::BadClaims, token("eve", json!({"iat": "yesterday"}))),
        (
            Code::Expired,
            token("eve", json!({"iat": now() - 120, "exp": now() - 60})),
        ),
        (Code::NotYet, token("eve", json!({"nbf": now() + 3600}))),
        (Code::Dpop, dpop_token("eve")),
    ]
}

fn b64url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, Error>, code: Code, what: &str) {
    match result {
        Err(Error::Token(e)) => {
            assert_eq!(e.code(), code, "{what}: {e}");
            assert!(e.message().starts_with(code.as_str()), "{what}: {e}");
        }
        other => panic!("{what}: expected {code}, got {other:?}"),
    }
}

#[test]
fn sync_client_commands() {
    let server = Server::start();
    let mut jd = Jwtdeny::new(server.client().get_connection().unwrap());
    assert!(!jd.is_keyed());

    let t = token("alice", json!({"scope": "read"}));
    assert!(jd.check(&t).unwrap());
    let claims = jd.check_claims(&t).unwrap().expect("active");
    assert_eq!(claims.sub(), Some("alice"));
    assert_eq!(claims.scopes(), vec!["read"]);
    assert_eq!(jd.inspect(&t).unwrap().status(), Some("active"));

    assert!(jd.revoke(&t).unwrap());
    assert!(!jd.revoke(&t).unwrap(), "a second revoke is 0");
    assert!(!jd.check(&t).unwrap());
    assert_eq!(jd.check_claims(&t).unwrap(), None);
    let inspection = jd.inspect(&t).unwrap();
    assert_eq!(inspection.status(), Some("revoked"));
    assert_eq!(inspection.get("revoked_by"), Some("token"));
    let iat = claims.get("iat").unwrap().as_i64().unwrap();
    let entry = format!("jwtdeny:{{alice}}:{iat}");
    assert_eq!(inspection.get("key"), Some(entry.as_str()));
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&entry)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(exists, 1, "the entry is where the key helpers say");

    // REVOKEALL with AT: the cutoff in force, never moving back.
    let b = token("bob", json!({"iat": now() - 100}));
    assert!(jd.check(&b).unwrap());
    let at = now() - 50;
    assert_eq!(jd.revoke_all("bob", Some(at)).unwrap(), at);
    assert!(!jd.check(&b).unwrap());
    assert_eq!(jd.revoke_all("bob", Some(at - 40)).unwrap(), at);
    let cutoff = jd.revoke_all("bob", None).unwrap();
    assert!((now() - 1..=now()).contains(&cutoff));
    // An ERR is no token's fault: the fate of nothing is known.
    match jd.revoke_all("bob", Some(now() + 3600)) {
        Err(Error::Redis(e)) => assert_eq!(e.code(), Some("ERR"), "{e}"),
        other => panic!("{other:?}"),
    }

    for (code, t) in refused_tokens() {
        assert_code(jd.check(&t), code, "check");
        if code != Code::Dpop {
            // A bound token can be revoked like any other.
            assert_code(jd.revoke(&t), code, "revoke");
        }
    }
    // INSPECT answers for a refused token with its code as the status.
    let expired = token("eve", json!({"iat": now() - 120, "exp": now() - 60}));
    assert_eq!(jd.inspect(&expired).unwrap().status(), Some("EXPIRED"));
}

#[test]
fn sync_sessions_logout_and_sender_constrained_tokens() {
    let server = Server::start();
    let mut jd = Jwtdeny::new(server.client().get_connection().unwrap());

    // A back-channel logout ends the session (by subject, max-lifetime being 0).
    let t = token("carol", json!({"sid": "s-1", "iat": now() - 5}));
    assert!(jd.check(&t).unwrap());
    let logout = logout_token("carol", Some("s-1"));
    assert!(jd.logout(&logout).unwrap());
    assert!(!jd.logout(&logout).unwrap(), "a replayed logout is 0");
    assert!(!jd.check(&t).unwrap());
    assert_code(
        jd.logout(&token("carol", json!({}))),
        Code::BadClaims,
        "not a logout token",
    );

    let d = token("dave", json!({"sid": "s-2", "iat": now() - 5}));
    assert!(jd.check(&d).unwrap());
    assert!(jd.revoke_session("dave", "s-2").unwrap());
    assert!(!jd.check(&d).unwrap());

    // DPoP: refused as a bearer token, accepted with its proof, which is then used up.
    let bound = dpop_token("erin");
    let err = jd.check(&bound).unwrap_err();
    assert_eq!(
        err.token().and_then(|e| e.dpop_error()),
        Some("invalid_token")
    );
    let url = "https://api.example.com/orders/7";
    let proof = dpop_proof(&bound, "POST", url);
    let checked = jd
        .check_dpop(&bound, &proof, "POST", url, &CheckOptions::with_claims())
        .unwrap();
    assert!(checked.active);
    let claims = checked.claims.unwrap();
    assert_eq!(claims["cnf"]["jkt"], json!(dpop_jkt()));
    let replay = jd.check_dpop(&bound, &proof, "POST", url, &CheckOptions::default());
    let e = replay.unwrap_err();
    assert_eq!(
        e.token().and_then(|e| e.dpop_error()),
        Some("invalid_dpop_proof"),
        "{e}"
    );
    let other_url = dpop_proof(&bound, "POST", "https://evil.example.com/");
    assert_code(
        jd.check_dpop(&bound, &other_url, "POST", url, &CheckOptions::default()),
        Code::Dpop,
        "htu",
    );

    // mTLS-bound (RFC 8705): active only with the certificate's thumbprint.
    let thumb = "A".repeat(43);
    let cert_bound = token("frank", json!({"cnf": {"x5t#S256": thumb}}));
    assert_code(jd.check(&cert_bound), Code::Dpop, "no CERT");
    let with_cert = CheckOptions::with_claims().cert(&thumb);
    assert!(jd.check_with(&cert_bound, &with_cert).unwrap().active);
}

#[test]
fn sync_connection_errors_are_not_token_errors() {
    let mut server = Server::start();
    let conn = server.client().get_connection().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut jd = Jwtdeny::new(conn);
    let t = token("gina", json!({}));
    assert!(jd.check(&t).unwrap());
    server.kill();
    match jd.check(&t) {
        Err(Error::Redis(e)) => assert!(e.code().is_none(), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_clients_commands() {
    let server = Server::start();
    let client = server.client();
    let multiplexed = AsyncJwtdeny::new(client.get_multiplexed_async_connection().await.unwrap());
    let manager = AsyncJwtdeny::new(redis::aio::ConnectionManager::new(client).await.unwrap());
    assert!(!multiplexed.is_keyed() && !manager.is_keyed());

    exercise("multiplexed", &multiplexed).await;
    exercise("manager", &manager).await;
}

async fn exercise<C>(name: &str, jd: &AsyncJwtdeny<C>)
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    {
        let sub = format!("async-{name}");
        let t = token(&sub, json!({"sid": "s"}));
        assert!(jd.check(&t).await.unwrap(), "{name}");
        let claims = jd.check_claims(&t).await.unwrap().expect("active");
        assert_eq!(claims.sub(), Some(sub.as_str()));
        assert_eq!(jd.inspect(&t).await.unwrap().status(), Some("active"));
        assert!(jd.revoke(&t).await.unwrap());
        assert!(!jd.revoke(&t).await.unwrap());
        assert_eq!(jd.check_claims(&t).await.unwrap(), None);
        assert_eq!(jd.inspect(&t).await.unwrap().status(), Some("revoked"));

        let old = token(&sub, json!({"iat": now() - 100}));
        let at = now() - 10;
        assert_eq!(jd.revoke_all(&sub, Some(at)).await.unwrap(), at);
        assert!(!jd.check(&old).await.unwrap());

        let s = token(&format!("{sub}-s"), json!({"sid": "x", "iat": now() - 5}));
        assert!(jd.revoke_session(&format!("{sub}-s"), "x").await.unwrap());
        assert!(!jd.check(&s).await.unwrap());
        let l = token(&format!("{sub}-l"), json!({"iat": now() - 5}));
        assert!(jd
            .logout(&logout_token(&format!("{sub}-l"), None))
            .await
            .unwrap());
        assert!(!jd.check(&l).await.unwrap());

        // Another subject: tokens of one subject issued in one second share an entry.
        let bound = dpop_token(&format!("{sub}-dpop"));
        let url = "http://localhost/x";
        let proof = dpop_proof(&bound, "GET", url);
        let opts = CheckOptions::default();
        assert!(
            jd.check_dpop(&bound, &proof, "GET", url, &opts)
                .await
                .unwrap()
                .active
        );

        for (code, t) in refused_tokens() {
            match jd.check(&t).await {
                Err(Error::Token(e)) => assert_eq!(e.code(), code, "{name}: {e}"),
                other => panic!("{name}: expected {code}, got {other:?}"),
            }
        }
    }
}
