//! The HTTPS layer of the JWKS fetch (src/fetch.rs) against the test identity provider, without
//! Redis: TLS trust, https-only (redirects included), redirect limits, status, timeouts, body
//! limits, max-age, OIDC discovery, and that nothing a provider sends reaches an error's text
//! unescaped.

use crate::common;
use crate::idp;

use common::*;
use idp::{Idp, Reply, DISCOVERY_PATH, JWKS_PATH};
use jwtdeny_core::fetch::{self, FetchConfig, FetchError, Source};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A fetch config trusting only `idp`'s CA.
fn cfg(idp: &Idp) -> FetchConfig {
    FetchConfig {
        ca_file: Some(idp.ca_file()),
        ..FetchConfig::default()
    }
}

fn jwks() -> String {
    std::fs::read_to_string(jwks_path()).expect("read the vectors' JWKS")
}

/// Text safe for any log line: short printable ASCII without `%` or a raw `\`-less escape.
#[track_caller]
fn assert_safe(e: &FetchError) -> String {
    let text = e.to_string();
    assert!(text.len() <= 320, "too long ({}): {text}", text.len());
    assert!(
        text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%'),
        "unsafe byte in {text:?}"
    );
    text
}

#[track_caller]
fn expect_err(r: Result<fetch::Fetched, FetchError>, code: &str) -> String {
    match r {
        Ok(f) => panic!("expected {code}, got a body of {} bytes", f.body.len()),
        Err(e) => {
            let text = assert_safe(&e);
            assert_eq!(e.code(), code, "{text}");
            text
        }
    }
}

#[test]
fn fetches_the_key_set() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    let got = fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)).expect("fetch");
    assert_eq!(got.body, jwks().into_bytes());
    assert_eq!(got.max_age, None);
    assert_eq!(got.final_url, idp.url(JWKS_PATH));
    assert_eq!(idp.requests(JWKS_PATH), 1);
}

#[test]
fn userinfo_and_query_are_sent_but_never_shown() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    let url = idp
        .url(&format!("{JWKS_PATH}?token=s3cret"))
        .replace("https://", "https://user:pw@");
    let got = fetch::get_json(&url, &cfg(&idp)).expect("fetch");
    assert_eq!(got.final_url, idp.url(JWKS_PATH));
    assert_eq!(idp.requests(JWKS_PATH), 1);
    // The credentials go where they belong: basic auth ("user:pw"), and the query.
    let head = idp
        .last_request(JWKS_PATH)
        .expect("a request")
        .to_ascii_lowercase();
    assert!(
        head.starts_with("get /jwks.json?token=s3cret http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nauthorization: basic dxnlcjpwdw==\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nuser-agent: jwtdeny/"), "{head}");

    idp.set_status(JWKS_PATH, 404);
    let text = expect_err(fetch::get_json(&url, &cfg(&idp)), "status");
    assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
    let http = url.replace("https://", "http://");
    let text = expect_err(fetch::get_json(&http, &cfg(&idp)), "not_https");
    assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");
}

#[test]
fn another_ca_is_refused() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    let wrong = FetchConfig {
        ca_file: Some(idp.other_ca_file()),
        ..FetchConfig::default()
    };
    let text = expect_err(fetch::get_json(&idp.url(JWKS_PATH), &wrong), "tls");
    assert!(text.contains("UnknownIssuer"), "{text}");
    // The handshake failed: no request was ever sent.
    assert_eq!(idp.total_requests(), 0);
    // With the right CA the same server answers: the refusal was the trust, not the server.
    assert!(fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)).is_ok());
    assert_eq!(idp.requests(JWKS_PATH), 1);
}

#[test]
fn the_system_store_does_not_trust_the_test_ca() {
    let idp = Idp::start();
    let system = FetchConfig::default();
    let r = fetch::get_json(&idp.url(JWKS_PATH), &system);
    // A machine without ca-certificates has no store at all; either way nothing is fetched.
    let code = r.as_ref().map_err(FetchError::code).err();
    assert!(
        matches!(code, Some("tls" | "no_system_roots")),
        "{:?}",
        r.map(|f| f.body.len()).map_err(|e| e.to_string())
    );
    assert_eq!(idp.total_requests(), 0);
}

#[test]
fn bad_ca_files_are_refused() {
    let idp = Idp::start();
    let garbage = idp.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate %n%s \u{e9}\n").expect("write");
    let broken = idp.dir().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    for path in [
        garbage,
        broken,
        idp.dir().join("missing-%n.pem"),
        PathBuf::from("/"),
    ] {
        let c = FetchConfig {
            ca_file: Some(path.clone()),
            ..FetchConfig::default()
        };
        let text = expect_err(fetch::get_json(&idp.url(JWKS_PATH), &c), "ca_file");
        assert!(text.starts_with("CA file '"), "{}: {text}", path.display());
    }
    assert_eq!(idp.total_requests(), 0);
}

#[test]
fn plain_http_is_refused_before_connecting() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    let text = expect_err(
        fetch::get_json(&idp.http_url(JWKS_PATH), &cfg(&idp)),
        "not_https",
    );
    assert!(text.contains(&idp.http_url(JWKS_PATH)), "{text}");
    assert_eq!(idp.total_requests(), 0);
    // The plain port does answer, so a request count of 0 means no connection was made.
    let mut s = std::net::TcpStream::connect(idp.http_url("").trim_start_matches("http://"))
        .expect("connect to the plain port");
    use std::io::{Read, Write};
    s.write_all(b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(idp.requests(JWKS_PATH), 1);
}

#[test]
fn a_redirect_to_http_is_refused_before_connecting() {
    let idp = Idp::start();
    idp.set("/plain", Reply::json(jwks()));
    for status in [301, 302, 303, 307, 308] {
        idp.redirect("/moved", status, &idp.http_url("/plain?secret=1"));
        let text = expect_err(
            fetch::get_json(&idp.url("/moved"), &cfg(&idp)),
            "redirect_not_https",
        );
        assert!(text.contains(&idp.http_url("/plain")), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
    assert_eq!(idp.requests("/moved"), 5);
    assert_eq!(idp.requests("/plain"), 0);
}

#[test]
fn at_most_three_redirects() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    // /r1 → /r2 → /r3 → /jwks.json: three redirects, followed (relative and absolute).
    idp.redirect("/r1", 302, "/r2");
    idp.redirect("/r2", 301, &idp.url("/r3"));
    idp.redirect("/r3", 307, JWKS_PATH);
    let got = fetch::get_json(&idp.url("/r1"), &cfg(&idp)).expect("three redirects");
    assert_eq!(got.body, jwks().into_bytes());
    assert_eq!(got.final_url, idp.url(JWKS_PATH));
    assert_eq!(idp.requests(JWKS_PATH), 1);
    // One more is refused, and its target never asked.
    idp.redirect("/r0", 302, "/r1");
    expect_err(
        fetch::get_json(&idp.url("/r0"), &cfg(&idp)),
        "too_many_redirects",
    );
    assert_eq!(idp.requests("/r0"), 1);
    assert_eq!(idp.requests("/r3"), 2);
    assert_eq!(idp.requests(JWKS_PATH), 1);
    // A loop ends the same way.
    idp.redirect("/loop", 302, "/loop");
    expect_err(
        fetch::get_json(&idp.url("/loop"), &cfg(&idp)),
        "too_many_redirects",
    );
    assert_eq!(idp.requests("/loop"), 4);
}

#[test]
fn non_2xx_is_an_error_naming_the_status() {
    let idp = Idp::start();
    for (status, want) in [
        (500, "HTTP status 500 Internal Server Error"),
        (503, "HTTP status 503 Service Unavailable"),
        (404, "HTTP status 404 Not Found"),
        (403, "HTTP status 403 Forbidden"),
        (304, "HTTP status 304 Not Modified"),
        (418, "HTTP status 418 I'm a teapot"),
        (599, "HTTP status 599"),
    ] {
        idp.set(JWKS_PATH, Reply::json(jwks()));
        idp.set_status(JWKS_PATH, status);
        let text = expect_err(fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)), "status");
        assert_eq!(text, want);
    }
    // A 3xx without Location is not followed and not a success.
    idp.set("/nowhere", Reply::new(302, ""));
    let r = fetch::get_json(&idp.url("/nowhere"), &cfg(&idp));
    let e = r.expect_err("a redirect without Location");
    assert_safe(&e);
}

#[test]
fn a_slow_server_hits_the_timeout() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    idp.set_delay(5_000);
    let c = FetchConfig {
        timeout: Duration::from_millis(500),
        ..cfg(&idp)
    };
    let t = Instant::now();
    let text = expect_err(fetch::get_json(&idp.url(JWKS_PATH), &c), "timeout");
    let took = t.elapsed();
    assert_eq!(text, "no complete answer within 500 ms");
    assert!(took >= Duration::from_millis(450), "{took:?}");
    // Time is the property; the upper bound only has to tell a timeout from none.
    assert!(took < Duration::from_millis(4000), "{took:?}");
    assert_eq!(idp.requests(JWKS_PATH), 1);
}

#[test]
fn the_timeout_covers_the_whole_body() {
    // A byte every 50 ms never trips a per-read timeout; only a deadline to the last byte
    // ends this 10 s body at 1 s.
    let idp = Idp::start();
    idp.set_jwks(&format!("[{}]", "1,".repeat(100) + "1"));
    idp.set_drip(JWKS_PATH, Duration::from_millis(50));
    let c = FetchConfig {
        timeout: Duration::from_millis(1000),
        ..cfg(&idp)
    };
    let t = Instant::now();
    expect_err(fetch::get_json(&idp.url(JWKS_PATH), &c), "timeout");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_millis(5000), "{took:?}");
    // And the same drip, short enough, completes.
    idp.set_jwks("[1,2,3]");
    idp.set_drip(JWKS_PATH, Duration::from_millis(20));
    assert_eq!(
        fetch::get_json(&idp.url(JWKS_PATH), &c).expect("drip").body,
        b"[1,2,3]"
    );
}

#[test]
fn the_timeout_covers_redirects_and_discovery_together() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    // Each hop alone fits the timeout; together they do not. That the round times out at all
    // is the property (a timeout per hop would succeed); the time bounds only catch a hang.
    for (from, to) in [("/a", "/b"), ("/b", "/c")] {
        idp.redirect(from, 302, to);
        idp.set_path_delay(from, 400);
    }
    idp.redirect("/c", 302, JWKS_PATH);
    idp.set_path_delay(JWKS_PATH, 400);
    let c = FetchConfig {
        timeout: Duration::from_millis(1000),
        ..cfg(&idp)
    };
    let t = Instant::now();
    expect_err(fetch::get_json(&idp.url("/a"), &c), "timeout");
    assert!(
        t.elapsed() < Duration::from_millis(4000),
        "{:?}",
        t.elapsed()
    );

    let issuer = idp.issuer();
    idp.set_discovery(&issuer, &issuer, &idp.url(JWKS_PATH));
    idp.set_path_delay(DISCOVERY_PATH, 700);
    idp.set_path_delay(JWKS_PATH, 700);
    let t = Instant::now();
    let r = fetch::fetch_jwks(&Source::Discovery { issuer }, &c);
    expect_err(r, "timeout");
    assert!(
        t.elapsed() < Duration::from_millis(4000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(idp.requests(DISCOVERY_PATH), 1);
}

#[test]
fn an_oversized_body_is_refused() {
    let idp = Idp::start();
    let big = format!("\"{}\"", "a".repeat(2 << 20));
    // Declared by Content-Length: refused at once.
    idp.set_jwks(&big);
    let text = expect_err(
        fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)),
        "too_large",
    );
    assert_eq!(text, "body larger than 1048576 bytes");
    // Not declared (ends at close): refused once the limit is passed.
    idp.update(JWKS_PATH, |r| r.content_length = false);
    expect_err(
        fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)),
        "too_large",
    );
    // Exactly the limit is fine, either way.
    let exact = format!("\"{}\"", "a".repeat(fetch::MAX_BODY - 2));
    for declared in [true, false] {
        idp.set_jwks(&exact);
        idp.update(JWKS_PATH, |r| r.content_length = declared);
        let got = fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)).expect("1 MiB");
        assert_eq!(got.body.len(), fetch::MAX_BODY);
    }
    // A smaller configured limit applies.
    let small = FetchConfig {
        max_body: 1000,
        ..cfg(&idp)
    };
    idp.set_jwks(&jwks());
    let text = expect_err(fetch::get_json(&idp.url(JWKS_PATH), &small), "too_large");
    assert_eq!(text, "body larger than 1000 bytes");
}

#[test]
fn a_body_that_is_not_json_is_refused() {
    let idp = Idp::start();
    for body in [
        &b"<html>%n%s \xc3\xa9</html>"[..],
        b"",
        b"{\"keys\": [",
        b"{} trailing",
        b"\xff\xfe",
    ] {
        idp.set(JWKS_PATH, Reply::json(body.to_vec()));
        let text = expect_err(fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)), "not_json");
        assert!(text.starts_with("body is not JSON: "), "{text}");
        assert!(!text.contains("html"), "{text}");
    }
}

#[test]
fn max_age_is_read() {
    let idp = Idp::start();
    idp.set(
        JWKS_PATH,
        Reply::json(jwks())
            .header("Cache-Control", "public, max-age=120, must-revalidate")
            .header("Age", "20"),
    );
    let got = fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)).expect("fetch");
    assert_eq!(got.max_age, Some(Duration::from_secs(100)));

    idp.set(
        JWKS_PATH,
        Reply::json(jwks())
            .header("Cache-Control", "max-age=600")
            .header("cache-control", "max-age=45"),
    );
    let got = fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)).expect("fetch");
    assert_eq!(got.max_age, Some(Duration::from_secs(45)));

    for value in [
        &b"no-store"[..],
        b"no-cache",
        b"max-age=%n%s",
        b"max-age=\xc3\xa9",
    ] {
        idp.set(
            JWKS_PATH,
            Reply::json(jwks()).header("Cache-Control", value.to_vec()),
        );
        let got = fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)).expect("fetch");
        assert_eq!(got.max_age, None, "{}", String::from_utf8_lossy(value));
    }
}

#[test]
fn discovery_finds_the_jwks_uri() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    let jwks_url = idp.url(JWKS_PATH);
    // A bare host, a realm path (Keycloak), and an issuer with a trailing slash (Auth0).
    for issuer in [idp.issuer(), idp.url("/realms/acme"), idp.url("/tenant/")] {
        idp.set_discovery(&issuer, &issuer, &jwks_url);
        assert_eq!(
            fetch::discover(&issuer, &cfg(&idp)).as_deref(),
            Ok(jwks_url.as_str())
        );
    }
    assert_eq!(idp.requests(DISCOVERY_PATH), 1);
    assert_eq!(idp.requests(&format!("/realms/acme{DISCOVERY_PATH}")), 1);
    assert_eq!(idp.requests(&format!("/tenant{DISCOVERY_PATH}")), 1);

    let issuer = idp.url("/realms/acme");
    let got = fetch::fetch_jwks(&Source::Discovery { issuer }, &cfg(&idp)).expect("round");
    assert_eq!(got.body, jwks().into_bytes());
    assert_eq!(idp.requests(JWKS_PATH), 1);
    let got = fetch::fetch_jwks(&Source::Uri(jwks_url), &cfg(&idp)).expect("round");
    assert_eq!(got.body, jwks().into_bytes());
    assert_eq!(idp.requests(JWKS_PATH), 2);
}

#[test]
fn discovery_refuses_another_issuer() {
    let idp = Idp::start();
    idp.set_jwks(&jwks());
    let issuer = idp.url("/realms/acme");
    let jwks_url = idp.url(JWKS_PATH);
    for other in [
        idp.url("/realms/acme/"),
        idp.url("/realms/other"),
        idp.url("/realms/ACME"),
        format!("{issuer} "),
        "https://evil.example/%n%s/\u{e9}\u{7}".to_string(),
    ] {
        idp.set_discovery(&issuer, &other, &jwks_url);
        let e = fetch::discover(&issuer, &cfg(&idp)).expect_err(&other);
        let text = assert_safe(&e);
        assert_eq!(e.code(), "discovery", "{text}");
        assert!(text.contains("not the configured one"), "{text}");
    }
    let text = fetch::discover(&issuer, &cfg(&idp))
        .expect_err("mismatch")
        .to_string();
    assert!(
        text.contains("evil.example/\\x25n\\x25s/\\xc3\\xa9\\x07"),
        "{text}"
    );
    // The key set of a refused document is never fetched.
    let r = fetch::fetch_jwks(
        &Source::Discovery {
            issuer: issuer.clone(),
        },
        &cfg(&idp),
    );
    expect_err(r, "discovery");
    assert_eq!(idp.requests(JWKS_PATH), 0);

    // No issuer, no jwks_uri, an http jwks_uri, not an object.
    let discovery = format!("/realms/acme{DISCOVERY_PATH}");
    for (doc, code) in [
        (format!(r#"{{"jwks_uri":"{jwks_url}"}}"#), "discovery"),
        (format!(r#"{{"issuer":"{issuer}"}}"#), "discovery"),
        (
            format!(r#"{{"issuer":"{issuer}","jwks_uri":7}}"#),
            "discovery",
        ),
        (
            format!(
                r#"{{"issuer":"{issuer}","jwks_uri":"{}"}}"#,
                idp.http_url(JWKS_PATH)
            ),
            "not_https",
        ),
        ("[1,2]".to_string(), "discovery"),
    ] {
        idp.set(&discovery, Reply::json(doc.clone()));
        let e = fetch::discover(&issuer, &cfg(&idp)).expect_err(&doc);
        assert_safe(&e);
        assert_eq!(e.code(), code, "{doc}: {e}");
    }
    assert_eq!(idp.requests(JWKS_PATH), 0);
    // An http issuer is refused before anything is asked.
    let r = fetch::discover(&idp.http_url("/realms/acme"), &cfg(&idp));
    assert_eq!(r.map_err(|e| e.code()), Err("not_https"));
}

#[test]
fn provider_text_never_reaches_an_error_raw() {
    let idp = Idp::start();
    let hostile = b"%n%s%x \xc3\xa9\x1b[31m\x7f";
    // The status line's reason phrase (what HTTP allows in it) and headers.
    let mut reply = Reply::json(&b"%n%s \xc3\xa9"[..]).header("X-Evil", &b"%n%s \xc3\xa9"[..]);
    reply.status = 500;
    reply.reason = b"%n%s%x \xc3\xa9".to_vec();
    idp.set(JWKS_PATH, reply);
    let text = expect_err(fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)), "status");
    assert_eq!(text, "HTTP status 500 Internal Server Error");
    // Control bytes break HTTP itself.
    idp.update(JWKS_PATH, |r| r.reason = hostile.to_vec());
    expect_err(fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)), "protocol");
    idp.update(JWKS_PATH, |r| {
        r.reason = b"OK".to_vec();
        r.headers.push(("X-Evil".into(), hostile.to_vec()));
    });
    expect_err(fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)), "protocol");
    // A Location that is not a valid header value, and one that is a valid http URL.
    idp.set(
        "/evil-location",
        Reply::new(302, "").header("Location", &b"https://u:pw@x/%n%s\xc3\xa9?q=1"[..]),
    );
    let text = expect_err(
        fetch::get_json(&idp.url("/evil-location"), &cfg(&idp)),
        "protocol",
    );
    assert_eq!(text, "bad HTTP response: location header is malformed");
    idp.redirect("/evil-http", 302, "http://user:pw@evil.example/%n%s?q=%n");
    let text = expect_err(
        fetch::get_json(&idp.url("/evil-http"), &cfg(&idp)),
        "redirect_not_https",
    );
    assert!(
        text.contains("'http://evil.example/\\x25n\\x25s'"),
        "{text}"
    );
    assert!(!text.contains("pw") && !text.contains("q="), "{text}");
    // The body.
    idp.set(JWKS_PATH, Reply::json(hostile.to_vec()));
    expect_err(fetch::get_json(&idp.url(JWKS_PATH), &cfg(&idp)), "not_json");
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let port = free_port();
    let idp = Idp::start();
    let text = expect_err(
        fetch::get_json(&format!("https://127.0.0.1:{port}/jwks.json"), &cfg(&idp)),
        "connect",
    );
    assert!(text.starts_with("connection failed: "), "{text}");
}
