//! The HTTP guard: the rules every jwtdeny guard follows (the Express, Fastify, FastAPI, Flask
//! and ASGI ones too), as a `tower::Layer`.
//!
//! - `Authorization: Bearer <token>` is checked with `CHECK … WITHCLAIMS`; accepted requests
//!   carry [`Claims`] and [`Token`] in their extensions (axum extractors with the `axum`
//!   feature).
//! - Missing token: 401, `WWW-Authenticate: Bearer`. Refused or revoked: 401,
//!   `WWW-Authenticate: Bearer error="invalid_token", error_description="<CODE>"`.
//! - A required scope missing (or the claim check failing): 403 `insufficient_scope`.
//! - Redis unreachable, or no answer within the guard's timeout (2 s by default): 503 with
//!   `Retry-After` (fail closed).
//! - `Authorization: DPoP <token>` with one `DPoP: <proof>` header is checked with
//!   `CHECKDPOP` for the request's method and URL, and refused with the `DPoP` challenge; a
//!   DPoP-bound token sent as a bearer token gets that challenge too.
//!
//! Every refusal has one body: `{"error", "error_description", "code"}`.

mod denial;
mod header;
mod layer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, AUTHORIZATION, HOST};
use http::request::Parts;
use http::{Method, StatusCode};
use redis::aio::ConnectionLike;

use crate::{AsyncJwtdeny, CheckOptions, Checked, Claims, Code, Error};
use header::{is_compact_jws, is_dpop_scheme, is_thumbprint, scheme_token};

pub use denial::{description, missing, refused, unavailable, Denial};
pub use layer::{JwtdenyLayer, JwtdenyService};

/// How long a guard waits for its check by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The `Retry-After` of a guard's 503 by default, in seconds.
pub const DEFAULT_RETRY_AFTER: u64 = 5;
/// The algorithms a guard's DPoP challenge names by default (the server's default list).
pub const DEFAULT_DPOP_ALGS: &str = "ES256 ES384 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA";

/// The token of an accepted request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token(pub String);

/// The DPoP key an accepted DPoP request's token is bound to (`cnf.jkt`), in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopBinding {
    pub jkt: Option<String>,
}

/// What a guard decided for a request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Let through unchecked: excluded, a CORS preflight, or no token with optional
    /// authentication.
    Pass,
    /// An active token: its verified claims, the token, and its DPoP key for a DPoP request.
    Accept {
        claims: Claims,
        token: String,
        dpop: Option<DpopBinding>,
    },
    /// Refused.
    Deny(Denial),
}

type ClaimCheck = dyn Fn(&Claims) -> bool + Send + Sync;
type FromParts = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// A guard's options, with the defaults of the other packages' guards. Build one, then
/// [`Guard::layer`] it over an [`AsyncJwtdeny`].
#[derive(Clone)]
pub struct Guard {
    timeout: Option<Duration>,
    retry_after: u64,
    credentials_required: bool,
    scopes: Vec<String>,
    claim_check: Option<Arc<ClaimCheck>>,
    exclude: Vec<String>,
    guard_preflight: bool,
    trust_proxy: bool,
    scheme: String,
    dpop_algs: String,
    cert_of: Option<Arc<FromParts>>,
    token_of: Option<Arc<FromParts>>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            timeout: Some(DEFAULT_TIMEOUT),
            retry_after: DEFAULT_RETRY_AFTER,
            credentials_required: true,
            scopes: Vec::new(),
            claim_check: None,
            exclude: Vec::new(),
            guard_preflight: false,
            trust_proxy: false,
            scheme: "http".into(),
            dpop_algs: DEFAULT_DPOP_ALGS.into(),
            cert_of: None,
            token_of: None,
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("timeout", &self.timeout)
            .field("retry_after", &self.retry_after)
            .field("credentials_required", &self.credentials_required)
            .field("scopes", &self.scopes)
            .field("exclude", &self.exclude)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub fn new() -> Guard {
        Guard::default()
    }

    /// How long the check may take before the request gets its 503 (default 2 s); `None`: no
    /// limit (then only the Redis client's own timeouts bound it).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The 503's `Retry-After`, in seconds (default 5).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = seconds;
        self
    }

    /// Optional authentication: a request without a token goes on without [`Claims`] (a
    /// token that is there is still checked).
    pub fn optional(mut self) -> Self {
        self.credentials_required = false;
        self
    }

    /// Scopes the token must grant (`scope` or `scp`), else 403 `insufficient_scope`.
    pub fn require_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for s in scopes {
            let s = s.into();
            if !s.is_empty() && !self.scopes.contains(&s) {
                self.scopes.push(s);
            }
        }
        self
    }

    /// A check of the verified claims: `false` gives 403 `insufficient_scope`, code
    /// `CLAIM_CHECK`.
    pub fn claim_check(mut self, check: impl Fn(&Claims) -> bool + Send + Sync + 'static) -> Self {
        self.claim_check = Some(Arc::new(check));
        self
    }

    /// A path let through unchecked (compared exactly with the request's path).
    pub fn exclude(mut self, path: impl Into<String>) -> Self {
        self.exclude.push(path.into());
        self
    }

    /// Guard CORS preflights (`OPTIONS`) too; they pass unchecked by default.
    pub fn guard_preflight(mut self, yes: bool) -> Self {
        self.guard_preflight = yes;
        self
    }

    /// Behind a proxy that sets them: the DPoP URL's scheme and host come from the first
    /// `X-Forwarded-Proto` / `X-Forwarded-Host`. Off by default: a client could name any URL.
    pub fn trust_proxy(mut self, yes: bool) -> Self {
        self.trust_proxy = yes;
        self
    }

    /// The scheme of the DPoP URL when the request does not say (HTTP/1.1 requests carry no
    /// scheme): `http` by default, `https` for an application that terminates TLS itself.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// The algorithms the DPoP challenge names (`algs="…"`).
    pub fn dpop_algs(mut self, algs: impl Into<String>) -> Self {
        self.dpop_algs = algs.into();
        self
    }

    /// The SHA-256 thumbprint (base64url or hex) of the client certificate your TLS terminator
    /// saw, for tokens bound to one (RFC 8705), e.g. from a header your proxy sets. A value that
    /// is no thumbprint is 401 code `CERT`.
    pub fn cert_from(
        mut self,
        cert: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.cert_of = Some(Arc::new(cert));
        self
    }

    /// Where the token is, instead of `Authorization: Bearer <token>` (a cookie, another
    /// header). `Authorization: DPoP` requests are still read as DPoP.
    pub fn token_from(
        mut self,
        token: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.token_of = Some(Arc::new(token));
        self
    }

    /// This guard as a `tower::Layer` over `jd`.
    pub fn layer<C>(self, jd: AsyncJwtdeny<C>) -> JwtdenyLayer<C> {
        JwtdenyLayer {
            jd,
            guard: Arc::new(self),
        }
    }

    /// What this guard decides for a request (for frameworks other than tower's).
    pub async fn decide<C>(&self, jd: &AsyncJwtdeny<C>, parts: &Parts) -> Decision
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        if self.skipped(parts) {
            return Decision::Pass;
        }
        let cert = match &self.cert_of {
            Some(cert_of) => match cert_of(parts) {
                Some(c) if !is_thumbprint(&c) => return Decision::Deny(refused("CERT")),
                cert => cert,
            },
            None => None,
        };
        let auth = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let decision = match auth {
            Some(auth) if is_dpop_scheme(auth) => self.decide_dpop(jd, parts, auth, cert).await,
            _ => self.decide_bearer(jd, parts, auth, cert).await,
        };
        match decision {
            Decision::Accept {
                claims,
                token,
                dpop,
            } => match self.authorize(&claims) {
                Some(denial) => Decision::Deny(denial),
                None => Decision::Accept {
                    claims,
                    token,
                    dpop,
                },
            },
            other => other,
        }
    }

    fn skipped(&self, parts: &Parts) -> bool {
        if parts.method == Method::OPTIONS && !self.guard_preflight {
            return true;
        }
        let path = request_path(parts);
        self.exclude.iter().any(|p| p == path)
    }

    async fn within<F>(&self, check: F) -> Result<Checked, Option<Error>>
    where
        F: Future<Output = Result<Checked, Error>>,
    {
        let result = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, check).await {
                Ok(result) => result,
                Err(_) => return Err(None),
            },
            None => check.await,
        };
        result.map_err(|e| {
            notice(&e);
            Some(e)
        })
    }

    async fn decide_bearer<C>(
        &self,
        jd: &AsyncJwtdeny<C>,
        parts: &Parts,
        auth: Option<&str>,
        cert: Option<String>,
    ) -> Decision
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let token = match &self.token_of {
            Some(token_of) => token_of(parts).filter(|t| !t.is_empty()),
            None => auth
                .and_then(|a| scheme_token(a, "Bearer"))
                .map(str::to_owned),
        };
        let Some(token) = token else {
            return if self.credentials_required {
                Decision::Deny(missing())
            } else {
                Decision::Pass
            };
        };
        let options = CheckOptions {
            with_claims: true,
            cert,
        };
        match self.within(jd.check_with(&token, &options)).await {
            Ok(Checked {
                active: true,
                claims: Some(claims),
            }) => Decision::Accept {
                claims,
                token,
                dpop: None,
            },
            Ok(_) => Decision::Deny(refused("REVOKED")),
            Err(Some(Error::Token(e))) if e.code() == Code::Dpop => {
                // A token bound to a client certificate gets RFC 8705's bearer challenge; a
                // DPoP-bound one the DPoP challenge, which tells the client how.
                let m = e.message();
                if m.contains("cnf.x5t#S256") || m.contains("client certificate") {
                    Decision::Deny(refused("DPOP"))
                } else {
                    Decision::Deny(self.dpop_refused(
                        e.dpop_error().unwrap_or("invalid_token"),
                        "DPOP",
                        e.nonce(),
                    ))
                }
            }
            Err(Some(Error::Token(e))) => Decision::Deny(refused(e.code().as_str())),
            Err(_) => Decision::Deny(unavailable(self.retry_after)),
        }
    }

    // `Authorization: DPoP <token>` with exactly one `DPoP: <proof>` header (RFC 9449 §7.1).
    async fn decide_dpop<C>(
        &self,
        jd: &AsyncJwtdeny<C>,
        parts: &Parts,
        auth: &str,
        cert: Option<String>,
    ) -> Decision
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let Some(token) = scheme_token(auth, "DPoP") else {
            return Decision::Deny(self.dpop_refused("invalid_token", "MALFORMED", None));
        };
        let mut proofs = parts.headers.get_all("dpop").iter();
        let proof = match (proofs.next().and_then(|p| p.to_str().ok()), proofs.next()) {
            (Some(p), None) if is_compact_jws(p) => p,
            _ => return Decision::Deny(self.dpop_refused("invalid_dpop_proof", "DPOP", None)),
        };
        let url = self.request_url(parts);
        let options = CheckOptions {
            with_claims: true,
            cert,
        };
        let check = jd.check_dpop(token, proof, parts.method.as_str(), &url, &options);
        match self.within(check).await {
            Ok(Checked {
                active: true,
                claims: Some(claims),
            }) => {
                let jkt = claims
                    .get("cnf")
                    .and_then(|c| c.get("jkt"))
                    .and_then(|j| j.as_str())
                    .map(str::to_owned);
                Decision::Accept {
                    claims,
                    token: token.into(),
                    dpop: Some(DpopBinding { jkt }),
                }
            }
            Ok(_) => Decision::Deny(self.dpop_refused("invalid_token", "REVOKED", None)),
            Err(Some(Error::Token(e))) if e.code() == Code::Dpop => Decision::Deny(
                self.dpop_refused(e.dpop_error().unwrap_or("invalid_token"), "DPOP", e.nonce()),
            ),
            Err(Some(Error::Token(e))) => {
                Decision::Deny(self.dpop_refused("invalid_token", e.code().as_str(), None))
            }
            Err(_) => Decision::Deny(unavailable(self.retry_after)),
        }
    }

    /// 401 with the DPoP challenge (RFC 9449 §7.1): the error, the algorithms proofs may use,
    /// and a fresh nonce when the server asks for one. `code` is `DPOP` for the server's DPoP
    /// refusals (the description is then the error), else the token's code.
    fn dpop_refused(&self, error: &str, code: &str, nonce: Option<&str>) -> Denial {
        let description = if code == "DPOP" { error } else { code };
        let mut headers = vec![(
            http::header::WWW_AUTHENTICATE,
            format!(
                "DPoP error=\"{error}\", error_description=\"{description}\", algs=\"{}\"",
                self.dpop_algs
            ),
        )];
        if let (Some(nonce), "use_dpop_nonce") = (nonce, error) {
            headers.push((HeaderName::from_static("dpop-nonce"), nonce.into()));
        }
        Denial::new(StatusCode::UNAUTHORIZED, error, code, headers)
    }

    // 403 (RFC 6750 §3.1) for an authentic token that may not do this.
    fn authorize(&self, claims: &Claims) -> Option<Denial> {
        let granted = claims.scopes();
        let code = if self.scopes.iter().any(|s| !granted.contains(&s.as_str())) {
            "INSUFFICIENT_SCOPE"
        } else if self
            .claim_check
            .as_ref()
            .is_some_and(|check| !check(claims))
        {
            "CLAIM_CHECK"
        } else {
            return None;
        };
        let mut challenge = String::from("Bearer error=\"insufficient_scope\"");
        if !self.scopes.is_empty() {
            challenge.push_str(&format!(", scope=\"{}\"", self.scopes.join(" ")));
        }
        Some(Denial::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            code,
            vec![(http::header::WWW_AUTHENTICATE, challenge)],
        ))
    }

    /// The URL the request was addressed to, as the client saw it (RFC 9449 §4.3 compares the
    /// proof's `htu` with it). Query and fragment do not matter.
    fn request_url(&self, parts: &Parts) -> String {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let first = |v: &str| v.split(',').next().unwrap_or("").trim().to_owned();
        let mut scheme = parts
            .uri
            .scheme_str()
            .map_or_else(|| self.scheme.clone(), str::to_owned);
        let mut host = header(HOST.as_str())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        if self.trust_proxy {
            if let Some(proto) = header("x-forwarded-proto") {
                scheme = first(proto).to_ascii_lowercase();
            }
            if let Some(h) = header("x-forwarded-host") {
                host = first(h);
            }
        }
        format!("{scheme}://{host}{}", request_path(parts))
    }
}

/// The path the client addressed: axum's `OriginalUri` under a nested router, else the URI's.
fn request_path(parts: &Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(uri)) = parts.extensions.get() {
        return uri.path();
    }
    parts.uri.path()
}

/// Says once per process, on stderr, the two misconfigurations that otherwise show only as
/// every request refused: a server without the module (503) and one without the keys (401
/// NOKEY).
fn notice(err: &Error) {
    static NOKEY: AtomicBool = AtomicBool::new(false);
    static MODULE: AtomicBool = AtomicBool::new(false);
    let text = err.to_string().to_ascii_lowercase();
    if err.code() == Some(Code::NoKey) {
        if !NOKEY.swap(true, Ordering::Relaxed) {
            eprintln!(
                "jwtdeny: a token was refused with NOKEY: the server has no key for it. Check \
                 JWTDENY.KEYS LIST, jwtdeny.keys-file, or INFO jwtdeny (jwks_last_fetch_result). Said once."
            );
        }
    } else if text.contains("unknown command")
        && text.contains("jwtdeny")
        && !MODULE.swap(true, Ordering::Relaxed)
    {
        eprintln!(
            "jwtdeny: the Redis server does not know the JWTDENY commands: the jwtdeny module is \
             not loaded there (MODULE LIST, loadmodule). Requests are answered 503 until it is. Said once."
        );
    }
}
