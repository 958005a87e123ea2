//! The tower layer and the axum extractors: the 401/403/503 rules and the one body shape of the
//! other packages' guards, against a real server.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jwtdeny::{AsyncJwtdeny, Claims, DpopBinding, Guard, Token};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::*;

type Jd = AsyncJwtdeny<redis::aio::MultiplexedConnection>;

async fn connect(server: &Server) -> Jd {
    let conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    AsyncJwtdeny::new(conn)
}

fn app(guard: Guard, jd: Jd) -> Router {
    Router::new()
        .route(
            "/me",
            get(|claims: Claims, Token(token): Token| async move {
                axum::Json(json!({"sub": claims.sub(), "token_len": token.len()}))
            }),
        )
        .route(
            "/maybe",
            get(|claims: Option<Claims>| async move {
                claims
                    .and_then(|c| c.sub().map(str::to_owned))
                    .unwrap_or_else(|| "anonymous".into())
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .route(
            "/open",
            get(|| async { "open" }).options(|| async { "preflight" }),
        )
        .route(
            "/dpop",
            get(|claims: Claims, binding: DpopBinding| async move {
                format!(
                    "{} {}",
                    claims.sub().unwrap_or(""),
                    binding.jkt.unwrap_or_default()
                )
            }),
        )
        .layer(guard.layer(jd))
}

fn request(path: &str, authorization: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path).header("host", "api.example.test");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.body(Body::empty()).unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let res: Response<Body> = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// The one refusal body: exactly `error`, `error_description` and `code`.
fn assert_body(body: &str, error: &str, code: &str, description: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(
        v,
        json!({"error": error, "error_description": description, "code": code}),
        "{body}"
    );
}

fn www(headers: &http::HeaderMap) -> &str {
    headers
        .get("www-authenticate")
        .map_or("", |v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_401_403_and_the_body_shape() {
    let server = Server::start();
    let jd = connect(&server).await;
    let app = app(Guard::new().exclude("/health"), jd.clone());

    // Missing: 401, a bare challenge.
    let (status, headers, body) = send(&app, request("/me", None)).await;
    assert_eq!(status, 401);
    assert_eq!(www(&headers), "Bearer");
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_body(
        &body,
        "missing_token",
        "MISSING",
        "no access token was presented",
    );
    for auth in ["Basic YTpi", "Bearer", "Bearer a b"] {
        let (status, headers, _) = send(&app, request("/me", Some(auth))).await;
        assert_eq!(
            (status, www(&headers)),
            (StatusCode::UNAUTHORIZED, "Bearer"),
            "{auth}"
        );
    }

    // Accepted: the claims and the token reach the handler.
    let t = token("alice", json!({}));
    let (status, _, body) = send(&app, request("/me", Some(&format!("bearer  {t}")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"sub": "alice", "token_len": t.len()})
    );

    // Revoked and refused: 401 invalid_token with the code.
    assert!(jd.revoke(&t).await.unwrap());
    let (status, headers, body) = send(&app, request("/me", Some(&format!("Bearer {t}")))).await;
    assert_eq!(status, 401);
    assert_eq!(
        www(&headers),
        r#"Bearer error="invalid_token", error_description="REVOKED""#
    );
    assert_body(
        &body,
        "invalid_token",
        "REVOKED",
        "the token has been revoked",
    );
    let expired = token("bob", json!({"iat": now() - 120, "exp": now() - 60}));
    let (status, headers, body) =
        send(&app, request("/me", Some(&format!("Bearer {expired}")))).await;
    assert_eq!(status, 401);
    assert_eq!(
        www(&headers),
        r#"Bearer error="invalid_token", error_description="EXPIRED""#
    );
    assert_body(&body, "invalid_token", "EXPIRED", "the token has expired");
    let (head, _) = expired.rsplit_once('.').unwrap();
    let forged = format!("{head}.AAAA");
    let (_, headers, body) = send(&app, request("/me", Some(&format!("Bearer {forged}")))).await;
    assert_eq!(
        www(&headers),
        r#"Bearer error="invalid_token", error_description="BADSIG""#
    );
    assert_body(
        &body,
        "invalid_token",
        "BADSIG",
        "the token's signature does not verify",
    );
    for (code, t) in crate::standalone::refused_tokens() {
        let (status, _, body) = send(&app, request("/me", Some(&format!("Bearer {t}")))).await;
        assert_eq!(status, 401, "{code}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["code"],
            json!(code.as_str())
        );
    }

    // Excluded paths and CORS preflights pass unchecked; a required extractor without the
    // guard's acceptance is the same 401.
    let (status, _, body) = send(&app, request("/health", None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let preflight = || Request::options("/open").body(Body::empty()).unwrap();
    let (status, _, body) = send(&app, preflight()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "preflight"));
    assert_eq!(send(&app, request("/open", None)).await.0, 401);
    let guarded = self::app(Guard::new().guard_preflight(true), jd.clone());
    assert_eq!(send(&guarded, preflight()).await.0, 401);
    // A handler's Claims without the guard's acceptance: the same 401.
    let bare = Router::new().route(
        "/me",
        get(|c: Claims| async move { c.sub().unwrap_or("").to_owned() }),
    );
    let (status, headers, body) = send(&bare, request("/me", None)).await;
    assert_eq!(
        (status, www(&headers)),
        (StatusCode::UNAUTHORIZED, "Bearer")
    );
    assert_body(
        &body,
        "missing_token",
        "MISSING",
        "no access token was presented",
    );

    // The token from elsewhere (a cookie here).
    let cookie = self::app(
        Guard::new().token_from(|parts| {
            let cookies = parts.headers.get("cookie")?.to_str().ok()?;
            cookies.strip_prefix("at=").map(str::to_owned)
        }),
        jd.clone(),
    );
    let mut req = request("/me", None);
    let hal = token("hal", json!({}));
    req.headers_mut()
        .insert("cookie", format!("at={hal}").parse().unwrap());
    assert_eq!(send(&cookie, req).await.0, 200);
    let (status, headers, _) = send(&cookie, request("/me", Some(&format!("Bearer {hal}")))).await;
    assert_eq!(
        (status, www(&headers)),
        (StatusCode::UNAUTHORIZED, "Bearer")
    );

    // Optional authentication: no token goes on; a bad one is still refused.
    let optional = self::app(Guard::new().optional(), jd.clone());
    let (status, _, body) = send(&optional, request("/maybe", None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
    let carol = token("carol", json!({}));
    let (_, _, body) = send(
        &optional,
        request("/maybe", Some(&format!("Bearer {carol}"))),
    )
    .await;
    assert_eq!(body, "carol");
    let (status, _, _) = send(&optional, request("/maybe", Some(&format!("Bearer {t}")))).await;
    assert_eq!(status, 401);

    // Scopes (scope or scp) and the claim check: 403 insufficient_scope.
    let scoped = self::app(Guard::new().require_scopes(["read", "write"]), jd.clone());
    let reader = token("dave", json!({"scope": "read"}));
    let (status, headers, body) =
        send(&scoped, request("/me", Some(&format!("Bearer {reader}")))).await;
    assert_eq!(status, 403);
    assert_eq!(
        www(&headers),
        r#"Bearer error="insufficient_scope", scope="read write""#
    );
    assert_body(
        &body,
        "insufficient_scope",
        "INSUFFICIENT_SCOPE",
        "the token lacks a scope this resource requires",
    );
    let writer = token("erin", json!({"scp": ["write", "read"]}));
    let (status, _, _) = send(&scoped, request("/me", Some(&format!("Bearer {writer}")))).await;
    assert_eq!(status, 200);
    let checked = self::app(
        Guard::new().claim_check(|c| c.sub() == Some("frank")),
        jd.clone(),
    );
    let gina = token("gina", json!({}));
    let (status, headers, body) =
        send(&checked, request("/me", Some(&format!("Bearer {gina}")))).await;
    assert_eq!(
        (status, www(&headers)),
        (
            StatusCode::FORBIDDEN,
            r#"Bearer error="insufficient_scope""#
        )
    );
    assert_body(
        &body,
        "insufficient_scope",
        "CLAIM_CHECK",
        "the token's claims do not allow this request",
    );
    let frank = token("frank", json!({}));
    assert_eq!(
        send(&checked, request("/me", Some(&format!("Bearer {frank}"))))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_dpop_requests() {
    let server = Server::start();
    let jd = connect(&server).await;
    let app = app(Guard::new(), jd.clone());
    let bound = dpop_token("hank");
    let url = "http://api.example.test/dpop";

    // A DPoP-bound token with the Bearer scheme: the DPoP challenge.
    let (status, headers, body) =
        send(&app, request("/dpop", Some(&format!("Bearer {bound}")))).await;
    assert_eq!(status, 401);
    assert!(
        www(&headers).starts_with(
            r#"DPoP error="invalid_token", error_description="invalid_token", algs=""#
        ),
        "{}",
        www(&headers)
    );
    assert_body(
        &body,
        "invalid_token",
        "DPOP",
        "the token or its DPoP proof is refused",
    );

    // With its proof for this method and URL: accepted, the key's thumbprint exposed.
    let dpop_request = |proofs: &[&str]| {
        let mut req = Request::get("/dpop")
            .header("host", "api.example.test")
            .header("authorization", format!("DPoP {bound}"));
        for p in proofs {
            req = req.header("dpop", *p);
        }
        req.body(Body::empty()).unwrap()
    };
    let proof = dpop_proof(&bound, "GET", url);
    let (status, _, body) = send(&app, dpop_request(&[&proof])).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, format!("hank {}", dpop_jkt()))
    );

    // The proof was used up; two proofs, or none, are refused.
    let (status, headers, body) = send(&app, dpop_request(&[&proof])).await;
    assert_eq!(status, 401);
    assert!(
        www(&headers).starts_with(r#"DPoP error="invalid_dpop_proof""#),
        "{}",
        www(&headers)
    );
    assert_body(
        &body,
        "invalid_dpop_proof",
        "DPOP",
        "the token or its DPoP proof is refused",
    );
    let fresh = dpop_proof(&bound, "GET", url);
    let (status, headers, _) = send(&app, dpop_request(&[&fresh, &fresh])).await;
    assert_eq!(status, 401);
    assert!(www(&headers).starts_with(r#"DPoP error="invalid_dpop_proof""#));
    let (status, _, _) = send(&app, dpop_request(&[])).await;
    assert_eq!(status, 401);
    // A proof for another URL.
    let elsewhere = dpop_proof(&bound, "GET", "http://other.example.test/dpop");
    assert_eq!(send(&app, dpop_request(&[&elsewhere])).await.0, 401);
    // Behind a trusted proxy the forwarded scheme and host make the URL.
    let proxied = self::app(Guard::new().trust_proxy(true), jd.clone());
    let https = dpop_proof(&bound, "GET", "https://public.example.test/dpop");
    let mut req = dpop_request(&[&https]);
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-host", "public.example.test".parse().unwrap());
    assert_eq!(send(&proxied, req).await.0, 200);
    // A refused token with the DPoP scheme: the DPoP challenge with its code.
    let forged = format!("{}.AAAA", bound.rsplit_once('.').unwrap().0);
    let req = Request::get("/dpop")
        .header("host", "api.example.test")
        .header("authorization", format!("DPoP {forged}"))
        .header("dpop", fresh.as_str())
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&app, req).await;
    assert_eq!(status, 401);
    assert!(
        www(&headers).starts_with(r#"DPoP error="invalid_token", error_description="BADSIG""#),
        "{}",
        www(&headers)
    );
    assert_body(
        &body,
        "invalid_token",
        "BADSIG",
        "the token's signature does not verify",
    );

    // A server that requires nonces: use_dpop_nonce, with a fresh one in DPoP-Nonce.
    let mut admin = server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("jwtdeny.dpop-nonce")
        .arg("yes")
        .query(&mut admin)
        .unwrap();
    let unnonced = dpop_proof(&bound, "GET", url);
    let (status, headers, body) = send(&app, dpop_request(&[&unnonced])).await;
    assert_eq!(status, 401);
    assert!(
        www(&headers)
            .starts_with(r#"DPoP error="use_dpop_nonce", error_description="use_dpop_nonce""#),
        "{}",
        www(&headers)
    );
    let nonce: String = redis::cmd("JWTDENY.DPOPNONCE").query(&mut admin).unwrap();
    assert_eq!(headers["dpop-nonce"], nonce.as_str());
    assert_body(
        &body,
        "use_dpop_nonce",
        "DPOP",
        "the token or its DPoP proof is refused",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_certificate_bound_tokens() {
    let server = Server::start();
    let jd = connect(&server).await;
    use base64::Engine as _;
    use sha2::Digest as _;
    let cert = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(b"a certificate"));
    let bound = token("kim", json!({"cnf": {"x5t#S256": cert}}));
    let app = app(
        Guard::new().cert_from(|parts| {
            parts
                .headers
                .get("x-client-cert-sha256")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        }),
        jd,
    );
    let with_cert = |cert: Option<&str>| {
        let mut req = request("/me", Some(&format!("Bearer {bound}")));
        if let Some(c) = cert {
            req.headers_mut()
                .insert("x-client-cert-sha256", c.parse().unwrap());
        }
        req
    };
    assert_eq!(send(&app, with_cert(Some(&cert))).await.0, 200);
    // Without the certificate: the bearer invalid_token challenge, code DPOP.
    let (status, headers, body) = send(&app, with_cert(None)).await;
    assert_eq!(status, 401);
    assert_eq!(
        www(&headers),
        r#"Bearer error="invalid_token", error_description="DPOP""#
    );
    assert_body(
        &body,
        "invalid_token",
        "DPOP",
        "the token or its DPoP proof is refused",
    );
    // Another certificate's thumbprint (hex), and one that is no thumbprint at all.
    assert_eq!(send(&app, with_cert(Some(&"b".repeat(64)))).await.0, 401);
    let (status, headers, body) = send(&app, with_cert(Some("not-a-thumbprint"))).await;
    assert_eq!(status, 401);
    assert_eq!(
        www(&headers),
        r#"Bearer error="invalid_token", error_description="CERT""#
    );
    assert_body(
        &body,
        "invalid_token",
        "CERT",
        "the client certificate's thumbprint is not usable",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_503_when_redis_cannot_answer_in_time() {
    let mut server = Server::start();
    let jd = connect(&server).await;
    let app = app(
        Guard::new().timeout(Some(Duration::from_millis(300))),
        jd.clone(),
    );
    let t = token("judy", json!({}));
    let auth = format!("Bearer {t}");
    assert_eq!(send(&app, request("/me", Some(&auth))).await.0, 200);

    // A server that accepts and never answers (paused): 503 at the guard's deadline.
    let mut admin = server.conn();
    // (The pause holds every client, this one too, so it is short and left to end by itself.)
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query(&mut admin)
        .unwrap();
    let started = Instant::now();
    let (status, headers, body) = send(&app, request("/me", Some(&auth))).await;
    let took = started.elapsed();
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "5");
    assert_body(
        &body,
        "unavailable",
        "UNAVAILABLE",
        "the token cannot be checked now; try again later",
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1400),
        "{took:?}"
    );
    // Answering again once the pause is over.
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if send(&app, request("/me", Some(&auth))).await.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    ok.await
        .expect("the guard accepts again once the pause is over");

    // A server that is gone: 503 too, with the configured Retry-After.
    server.kill();
    let app = self::app(
        Guard::new()
            .timeout(Some(Duration::from_secs(1)))
            .retry_after(9),
        jd,
    );
    let (status, headers, body) = send(&app, request("/me", Some(&auth))).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "9");
    assert_body(
        &body,
        "unavailable",
        "UNAVAILABLE",
        "the token cannot be checked now; try again later",
    );
    // A request without a token is still 401: nothing had to be asked.
    assert_eq!(send(&app, request("/me", None)).await.0, 401);
}
