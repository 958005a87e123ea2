//! Several issuers (issue 20): `jwtdeny.issuers-file` names issuers besides the default one;
//! a token is placed by its `iss`, verified only with its issuer's keys and rules, and its
//! subject's keys carry the issuer's id, so the same `kid` and the same `sub` at two issuers
//! never meet.

use crate::common;
use crate::support;

use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::path::Path;
use support::*;

const ACME: &str = "https://acme.example/";
const BETA: &str = "https://beta.example/";
const DEFAULT_ISS: &str = "https://default.example/";
const ENTRA: &str = "https://login.example/{tenant}/v2.0";
const COGNITO: &str = "https://cognito.example/pool-1";
/// The one `kid` every issuer's key has here.
const KID: &str = "k1";

fn secret(of: &str) -> Vec<u8> {
    format!("{of}-secret-of-at-least-thirty-two-bytes!").into_bytes()
}

fn oct_jwk(of: &str) -> Value {
    json!({"kty": "oct", "kid": KID, "alg": "HS256", "k": b64(&secret(of))})
}

/// An HS256 token signed with `of`'s secret under kid `k1`.
fn token(of: &str, claims: &Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(&secret(of)).unwrap(),
    )
    .unwrap()
}

fn claims_of(iss: &str, sub: &str, iat: i64) -> Value {
    json!({"iss": iss, "sub": sub, "iat": iat, "exp": iat + 3600})
}

/// A server whose default issuer is `DEFAULT_ISS` (keys: its own secret) and whose registry
/// is `registry` (each issuer's keys file `<name>.json` holding that name's secret).
fn server(registry: &Value, conf: &[&str]) -> Server {
    let mut b = ServerBuilder::new().jwks("default.json", &[oct_jwk("default")]);
    write_registry(b.dir(), registry);
    let path = b.dir().join("issuers.json");
    b = b
        .conf(format!("jwtdeny.issuer {DEFAULT_ISS}"))
        .conf(format!(
            "jwtdeny.issuers-file {}",
            conf_quote(&path.to_string_lossy())
        ));
    for line in conf {
        b = b.conf(*line);
    }
    b.start()
}

/// Writes `issuers.json` and a keys file per issuer (`keys-file` = `<name>.json`).
fn write_registry(dir: &Path, registry: &Value) {
    let mut registry = registry.clone();
    for (name, entry) in registry["issuers"].as_object_mut().unwrap() {
        let file = dir.join(format!("{name}.json"));
        write_jwks(&file, &[oct_jwk(name)]);
        if entry.get("keys-file").is_none() {
            entry["keys-file"] = json!(file.to_string_lossy());
        }
    }
    write_atomic(
        &dir.join("issuers.json"),
        serde_json::to_string_pretty(&registry).unwrap().as_bytes(),
    );
}

fn two_issuers() -> Value {
    json!({"issuers": {
        "acme": {"issuer": ACME},
        "beta": {"issuer": BETA, "audience": ["api", "admin"]},
    }})
}

#[test]
fn the_same_kid_and_sub_at_two_issuers_never_meet() {
    let server = server(&two_issuers(), &[]);
    let iat = now() - 10;
    let acme = token("acme", &claims_of(ACME, "alice", iat));
    let beta = token(
        "beta",
        &json!({"iss": BETA, "sub": "alice", "iat": iat, "exp": iat + 3600, "aud": "api"}),
    );
    let default = token("default", &claims_of(DEFAULT_ISS, "alice", iat));
    for t in [&acme, &beta, &default] {
        assert_int(&server.check(t), 1, "each issuer's token with its own key");
    }
    // Signed with the other issuer's key under the same kid: only its own issuer's keys count.
    let crossed = token("beta", &claims_of(ACME, "alice", iat));
    assert_refused(&server, &crossed, "BADSIG", "acme's iss, beta's key");
    let crossed = token("acme", &claims_of(DEFAULT_ISS, "alice", iat));
    assert_refused(&server, &crossed, "BADSIG", "the default's iss, acme's key");
    // An issuer nobody registered is refused before any key is looked up.
    let stranger = token(
        "acme",
        &claims_of("https://stranger.example/", "alice", iat),
    );
    let r = server.check(&stranger);
    assert_err(&r, "BADCLAIMS", "unregistered iss");
    assert!(
        r.error().unwrap().contains("not a registered issuer"),
        "{r}"
    );
    // Beta's own rules: its audiences.
    let no_aud = token("beta", &claims_of(BETA, "alice", iat));
    assert_refused(&server, &no_aud, "BADCLAIMS", "beta requires an audience");

    // Revoking acme's alice leaves beta's and the default's alice alone.
    assert_int(&server.revoke(&acme), 1, "REVOKE acme's token");
    assert_eq!(
        server.keys(),
        vec![format!("jwtdeny:{{%acme:alice}}:{iat}")]
    );
    assert_int(&server.check(&acme), 0, "acme's token revoked");
    assert_int(&server.check(&beta), 1, "beta's alice untouched");
    assert_int(&server.check(&default), 1, "the default's alice untouched");

    // REVOKEALL by issuer: the default without ISSUER, a registered one by name or by iss.
    let r = server.cmd(&["JWTDENY.REVOKEALL", "alice", "ISSUER", "beta"]);
    assert!(r.int() >= iat, "{r}");
    assert_int(
        &server.check(&beta),
        0,
        "beta's alice revoked by REVOKEALL ISSUER beta",
    );
    assert_int(
        &server.check(&default),
        1,
        "the default's alice still active",
    );
    let later = token("default", &claims_of(DEFAULT_ISS, "alice", iat));
    server.cmd(&["JWTDENY.REVOKEALL", "alice"]);
    assert_int(
        &server.check(&later),
        0,
        "REVOKEALL without ISSUER: the default's",
    );
    let acme2 = token("acme", &claims_of(ACME, "alice", iat - 1));
    assert_int(&server.check(&acme2), 1, "acme's other token still active");
    server.cmd(&["JWTDENY.REVOKEALL", "alice", "ISSUER", ACME]);
    assert_int(&server.check(&acme2), 0, "REVOKEALL ISSUER <iss>");
    let mut keys = server.keys();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("jwtdeny:{{%acme:alice}}"),
            format!("jwtdeny:{{%acme:alice}}:{iat}"),
            format!("jwtdeny:{{%beta:alice}}"),
            "jwtdeny:{alice}".to_string(),
        ]
    );
    let r = server.cmd(&["JWTDENY.REVOKEALL", "alice", "ISSUER", "nobody"]);
    assert_err(&r, "ERR", "an unknown issuer name");
}

#[test]
fn a_template_issuer_takes_only_its_allowed_tenants() {
    let registry = json!({"issuers": {
        "entra": {"issuer": ENTRA, "tenants": ["t1", "t2"], "tenant-claim": "tid"},
    }});
    let server = server(&registry, &[]);
    let iat = now() - 10;
    let iss = |t: &str| ENTRA.replace("{tenant}", t);
    let of = |t: &str, tid: &str| {
        token(
            "entra",
            &json!({"iss": iss(t), "tid": tid, "sub": "u1", "iat": iat, "exp": iat + 600}),
        )
    };
    let (t1, t2) = (of("t1", "t1"), of("t2", "t2"));
    assert_int(&server.check(&t1), 1, "tenant t1");
    assert_int(&server.check(&t2), 1, "tenant t2");
    assert_refused(&server, of("t3", "t3"), "BADCLAIMS", "a tenant not allowed");
    assert_refused(
        &server,
        of("t1", "t2"),
        "BADCLAIMS",
        "tid of another tenant",
    );
    // The same sub in two tenants: two subjects.
    assert_int(&server.revoke(&t1), 1, "REVOKE in t1");
    assert_int(&server.check(&t2), 1, "t2's u1 untouched");
    assert_eq!(
        server.keys(),
        vec![format!("jwtdeny:{{%entra.t1:u1}}:{iat}")]
    );
    let r = server.cmd(&["JWTDENY.REVOKEALL", "u1", "ISSUER", "entra"]);
    assert!(r.error().unwrap().contains("name the iss"), "{r}");
    server.cmd(&["JWTDENY.REVOKEALL", "u1", "ISSUER", &iss("t2")]);
    assert_int(&server.check(&t2), 0, "REVOKEALL ISSUER <t2's iss>");
}

#[test]
fn a_cognito_style_access_token_is_judged_by_client_id() {
    let registry = json!({"issuers": {"pool": {"issuer": COGNITO, "client-id": ["app-1"]}}});
    let server = server(&registry, &[]);
    let iat = now() - 10;
    let with = |extra: Value| {
        let mut c = claims_of(COGNITO, "u", iat);
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        token("pool", &c)
    };
    let access = with(json!({"token_use": "access", "client_id": "app-1"}));
    assert_int(
        &server.check(&access),
        1,
        "an access token of app-1, no aud",
    );
    for (extra, what) in [
        (
            json!({"token_use": "id", "client_id": "app-1"}),
            "an ID token",
        ),
        (
            json!({"token_use": "access", "client_id": "app-2"}),
            "another client",
        ),
        (json!({"token_use": "access"}), "no client_id"),
    ] {
        assert_refused(&server, with(extra), "BADCLAIMS", what);
    }
}

#[test]
fn a_bad_registry_is_refused_whole_and_the_one_in_force_stays() {
    let server = server(&two_issuers(), &[]);
    let iat = now() - 10;
    let acme = token("acme", &claims_of(ACME, "bob", iat));
    assert_int(&server.check(&acme), 1, "acme in force");
    let file = server.dir().join("issuers.json");
    for bad in [
        "{not json".to_string(),
        json!({"issuers": {"acme": {"issuer": ACME}}}).to_string(), // no key source
        json!({"issuers": {"acme": {"issuer": ACME, "keys-file": "/nonexistent.json"}}})
            .to_string(),
        json!({"issuers": {"acme": {"issuer": ACME, "keys-file": "/x", "max-lifetime": -1}}})
            .to_string(),
        json!({"issuers": {"x": {"issuer": DEFAULT_ISS, "keys-file": "/x"}}}).to_string(),
    ] {
        write_atomic(&file, bad.as_bytes());
        let r = server.cmd(&["JWTDENY.ISSUERS", "RELOAD"]);
        assert_err(&r, "ERR", &format!("RELOAD of {bad}"));
        assert_int(&server.check(&acme), 1, "the registry in force stays");
    }
    let r = server.config_set("jwtdeny.issuers-file", "/nonexistent.json");
    assert!(r.is_error(), "{r}");
    assert_int(&server.check(&acme), 1, "the registry in force stays");
    // The default issuer cannot take a registered iss.
    let r = server.config_set("jwtdeny.issuer", ACME);
    assert!(r.is_error(), "{r}");
    // A good change takes effect at once: acme gone, gamma in.
    write_registry(
        server.dir(),
        &json!({"issuers": {"gamma": {"issuer": "https://gamma.example/"}}}),
    );
    assert_int(
        &server.cmd(&["JWTDENY.ISSUERS", "RELOAD"]),
        1,
        "one issuer now",
    );
    assert_err(
        &server.check(&acme),
        "BADCLAIMS",
        "acme is no issuer any more",
    );
    let gamma = token("gamma", &claims_of("https://gamma.example/", "bob", iat));
    assert_int(&server.check(&gamma), 1, "gamma in force");
    let list = server.cmd(&["JWTDENY.ISSUERS", "LIST"]);
    assert_eq!(list.array().len(), 1, "{list}");
    // Admin only: a user without @admin can neither reload nor list. Redis 7.0 lets no
    // module command into a category: there the rule names it (README: Access control).
    let in_admin = format!("{}", server.cmd(&["ACL", "CAT", "admin"])).contains("jwtdeny.issuers");
    let rule = if in_admin {
        "-@admin"
    } else {
        "-jwtdeny.issuers"
    };
    ok(
        server.cmd(&[
            "ACL", "SETUSER", "app", "on", ">pw", "+@all", "-@admin", rule, "~*",
        ]),
        "ACL SETUSER",
    );
    let mut app = server.conn();
    ok(app.cmd(&["AUTH", "app", "pw"]), "AUTH");
    for sub in ["RELOAD", "LIST"] {
        let r = app.cmd(&["JWTDENY.ISSUERS", sub]);
        assert_eq!(
            r.err_code(),
            Some("NOPERM"),
            "ISSUERS {sub} without @admin: {r}"
        );
    }
    let r = app.cmd(&["CONFIG", "SET", "jwtdeny.issuers-file", ""]);
    assert_eq!(r.err_code(), Some("NOPERM"), "{r}");
    let text = format!("{list}");
    assert!(
        text.contains("gamma") && text.contains("keys_loaded"),
        "{text}"
    );
    // Without a file: the default issuer only.
    ok(server.config_set("jwtdeny.issuers-file", ""), "no registry");
    assert_eq!(server.cmd(&["JWTDENY.ISSUERS", "LIST"]).array().len(), 0);
    // Judged in order by the default issuer alone: its keys do not verify gamma's token.
    assert_err(
        &server.check(&gamma),
        "BADSIG",
        "gamma's token is not the default's",
    );
}

#[test]
fn each_issuer_has_its_own_max_lifetime_and_logout_audience() {
    let registry = json!({"issuers": {
        "acme": {"issuer": ACME, "max-lifetime": 600, "logout-audience": "acme-app"},
    }});
    let server = server(&registry, &["jwtdeny.max-lifetime 7200"]);
    let iat = now() - 10;
    let long = json!({"iss": ACME, "sub": "s", "iat": iat, "exp": iat + 3600});
    assert_refused(
        &server,
        token("acme", &long),
        "BADCLAIMS",
        "over acme's max-lifetime",
    );
    let default_long = json!({"iss": DEFAULT_ISS, "sub": "s", "iat": iat, "exp": iat + 3600});
    assert_int(
        &server.check(token("default", &default_long)),
        1,
        "the default's 7200 s",
    );
    // A cutoff of acme's subject expires after acme's max-lifetime.
    let at = server
        .cmd(&["JWTDENY.REVOKEALL", "s", "ISSUER", "acme"])
        .int();
    assert_eq!(server.pexpiretime("jwtdeny:{%acme:s}"), (at + 600) * 1000);
    // A logout token of acme, for acme's client: the session ends in acme's scope.
    let logout = token(
        "acme",
        &json!({"iss": ACME, "aud": "acme-app", "sub": "s2", "sid": "x", "iat": now(),
                "exp": now() + 60, "jti": "j",
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    );
    assert_int(
        &server.cmd(&["JWTDENY.LOGOUT", &logout]),
        1,
        "acme's logout",
    );
    let mut keys = server.keys();
    keys.sort();
    assert_eq!(
        keys,
        [
            "jwtdeny:{%acme:s2}:nosid",
            "jwtdeny:{%acme:s2}:sid:x",
            "jwtdeny:{%acme:s}"
        ]
    );
    // The default issuer has no logout audience here.
    let default_logout = token(
        "default",
        &json!({"iss": DEFAULT_ISS, "aud": "acme-app", "sub": "s", "iat": now(),
                "exp": now() + 60, "jti": "j",
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
    );
    let r = server.cmd(&["JWTDENY.LOGOUT", &default_logout]);
    assert!(
        r.error()
            .unwrap()
            .contains("jwtdeny.logout-audience is not set"),
        "{r}"
    );
    // REVOKESESSION by issuer.
    assert_int(
        &server.cmd(&["JWTDENY.REVOKESESSION", "s2", "y", "ISSUER", "acme"]),
        1,
        "REVOKESESSION ISSUER acme",
    );
    assert!(server
        .keys()
        .contains(&"jwtdeny:{%acme:s2}:sid:y".to_string()));
}

#[test]
fn workers_keyed_forms_and_inspect_see_the_issuers_scope() {
    let server = server(&two_issuers(), &["jwtdeny.workers 2"]);
    let iat = now() - 10;
    let acme = token("acme", &claims_of(ACME, "carol", iat));
    assert_int(&server.check(&acme), 1, "acme with workers");
    let entry = format!("jwtdeny:{{%acme:carol}}:{iat}");
    let subject = "jwtdeny:{%acme:carol}".to_string();
    assert_int(
        &server.cmd(&["JWTDENY.KREVOKE", &entry, &subject, &acme]),
        1,
        "KREVOKE with acme's scoped keys",
    );
    assert_int(
        &server.cmd(&["JWTDENY.KCHECK", &entry, &subject, &acme]),
        0,
        "KCHECK with acme's scoped keys",
    );
    // The default issuer's keys for the same subject are not this token's.
    let r = server.cmd(&[
        "JWTDENY.KCHECK",
        &format!("jwtdeny:{{carol}}:{iat}"),
        "jwtdeny:{carol}",
        &acme,
    ]);
    assert!(r.is_error(), "{r}");
    let m = inspect(&server, &acme);
    assert_eq!(m["key"].text(), entry);
    assert_eq!(m["status"].text(), "revoked");
    // KREVOKESESSION has no ISSUER: its keys say whose subject it is, and must be the ones
    // derived under that issuer.
    let (sess, sidless) = (
        "jwtdeny:{%acme:carol}:sid:s1".to_string(),
        "jwtdeny:{%acme:carol}:nosid".to_string(),
    );
    assert_int(
        &server.cmd(&[
            "JWTDENY.KREVOKESESSION",
            &subject,
            &sess,
            &sidless,
            "carol",
            "s1",
        ]),
        1,
        "KREVOKESESSION with acme's keys",
    );
    // Without max-lifetime a session's end is its subject's (as for the default issuer).
    assert!(server.keys().contains(&subject), "{:?}", server.keys());
    let r = server.cmd(&[
        "JWTDENY.KREVOKESESSION",
        "jwtdeny:{%nobody:carol}",
        "jwtdeny:{%nobody:carol}:sid:s1",
        "carol",
        "s1",
    ]);
    assert!(r.error().unwrap().contains("scoped to no issuer"), "{r}");
    let r = server.cmd(&[
        "JWTDENY.KREVOKESESSION",
        &subject,
        "jwtdeny:{%acme:carol}:sid:other",
        "carol",
        "s1",
    ]);
    assert!(r.error().unwrap().contains("does not match"), "{r}");
    // KREVOKEALL with ISSUER: its declared key must be that issuer's.
    let r = server.cmd(&[
        "JWTDENY.KREVOKEALL",
        "jwtdeny:{carol}",
        "carol",
        "ISSUER",
        "acme",
    ]);
    assert!(r.error().unwrap().contains("does not match"), "{r}");
    let r = server.cmd(&["JWTDENY.KREVOKEALL", &subject, "carol", "ISSUER", "acme"]);
    assert!(r.int() > 0, "{r}");
}

#[test]
fn replicas_and_the_aof_keep_each_issuers_revocations() {
    let registry = two_issuers();
    let primary = {
        let b = ServerBuilder::new()
            .jwks("default.json", &[oct_jwk("default")])
            .aof();
        write_registry(b.dir(), &registry);
        let path = b.dir().join("issuers.json");
        b.conf(format!(
            "jwtdeny.issuers-file {}",
            conf_quote(&path.to_string_lossy())
        ))
        .start()
    };
    let replica = {
        let b = ServerBuilder::new().jwks("default.json", &[oct_jwk("default")]);
        write_registry(b.dir(), &registry);
        let path = b.dir().join("issuers.json");
        b.conf(format!(
            "jwtdeny.issuers-file {}",
            conf_quote(&path.to_string_lossy())
        ))
        .start_replica_of(&primary)
    };
    let iat = now() - 10;
    let acme = token("acme", &claims_of(ACME, "dave", iat));
    assert_int(&primary.revoke(&acme), 1, "REVOKE on the primary");
    primary.cmd(&["WAIT", "1", "5000"]);
    assert_int(
        &replica.check(&acme),
        0,
        "the replica finds acme's revocation",
    );
    let effect = aof_effect(&primary, &format!("jwtdeny:{{%acme:dave}}:{iat}"));
    assert_eq!(effect[0].to_ascii_uppercase(), "SET", "{effect:?}");
    drop(replica);
    let mut primary = primary;
    primary.restart();
    assert_int(&primary.check(&acme), 0, "after a restart from the AOF");
}

#[test]
fn with_a_registry_the_default_issuer_takes_only_its_own_iss() {
    // No jwtdeny.issuer: the default issuer takes the tokens without iss, and no other.
    let mut b = ServerBuilder::new().jwks("default.json", &[oct_jwk("default")]);
    write_registry(b.dir(), &two_issuers());
    let path = b.dir().join("issuers.json");
    b = b.conf(format!(
        "jwtdeny.issuers-file {}",
        conf_quote(&path.to_string_lossy())
    ));
    let mut server = b.start();
    let iat = now() - 10;
    let bare = token("default", &claims("alice", iat, iat + 600));
    assert_int(&server.check(&bare), 1, "no iss: the default issuer's");
    let other = token(
        "default",
        &claims_of("https://other.example/", "alice", iat),
    );
    let r = server.check(&other);
    assert!(
        r.error().unwrap_or("").contains("not a registered issuer"),
        "{r}"
    );
    // A registry that does not load at startup: its issuers' tokens are refused, never judged
    // as the default issuer's (whose keys here would verify acme's token signed with them).
    let acme_signed_by_default = token("default", &claims_of(ACME, "alice", iat));
    assert!(
        server.check(&acme_signed_by_default).is_error(),
        "acme's iss, default's key"
    );
    write_atomic(&path, b"{broken");
    server.restart();
    assert!(server
        .log()
        .contains("no issuer of the registry is in force"));
    assert_eq!(server.cmd(&["JWTDENY.ISSUERS", "LIST"]).array().len(), 0);
    let r = server.check(&acme_signed_by_default);
    assert!(
        r.error().unwrap_or("").contains("not a registered issuer"),
        "{r}"
    );
    assert_int(
        &server.check(&bare),
        1,
        "the default issuer's own tokens still pass",
    );
}
