//! A guard's refusals: status, headers and the one body shape of every jwtdeny guard.

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

/// What a refusal's body says, by its stable `code` (the same texts as the other packages).
pub fn description(code: &str) -> &str {
    match code {
        "MISSING" => "no access token was presented",
        "MALFORMED" => "the token is malformed",
        "BADALG" => "the token's algorithm is not accepted",
        "NOKEY" => "no key of the server verifies the token",
        "BADSIG" => "the token's signature does not verify",
        "BADCLAIMS" => "the token's claims are not accepted",
        "EXPIRED" => "the token has expired",
        "NOTYET" => "the token is not valid yet",
        "REVOKED" => "the token has been revoked",
        "CERT" => "the client certificate's thumbprint is not usable",
        "DPOP" => "the token or its DPoP proof is refused",
        "INSUFFICIENT_SCOPE" => "the token lacks a scope this resource requires",
        "CLAIM_CHECK" => "the token's claims do not allow this request",
        "UNAVAILABLE" => "the token cannot be checked now; try again later",
        other => other,
    }
}

/// A refusal: status, headers and the one body shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, String)>,
    /// RFC 6750's error (`invalid_token`, `insufficient_scope`, …).
    pub error: String,
    /// The stable code (`MISSING`, a token code, `REVOKED`, `INSUFFICIENT_SCOPE`, …).
    pub code: String,
}

impl Denial {
    pub(super) fn new(
        status: StatusCode,
        error: &str,
        code: &str,
        headers: Vec<(HeaderName, String)>,
    ) -> Self {
        Denial {
            status,
            headers,
            error: error.into(),
            code: code.into(),
        }
    }

    /// `{"error": …, "error_description": …, "code": …}`
    pub fn body(&self) -> String {
        let s = |v: &str| serde_json::Value::from(v).to_string();
        format!(
            "{{\"error\":{},\"error_description\":{},\"code\":{}}}",
            s(&self.error),
            s(description(&self.code)),
            s(&self.code)
        )
    }

    /// The response, with a JSON body.
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let mut res = Response::new(B::from(self.body()));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), value);
            }
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        res
    }
}

/// 401 without an error code (RFC 6750 §3.1): the request had no credentials.
pub fn missing() -> Denial {
    Denial::new(
        StatusCode::UNAUTHORIZED,
        "missing_token",
        "MISSING",
        vec![(http::header::WWW_AUTHENTICATE, "Bearer".into())],
    )
}

/// 401 for a refused or revoked bearer token.
pub fn refused(code: &str) -> Denial {
    Denial::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        code,
        vec![(
            http::header::WWW_AUTHENTICATE,
            format!("Bearer error=\"invalid_token\", error_description=\"{code}\""),
        )],
    )
}

/// 503: Redis could not answer (in time), so no token is taken for active.
pub fn unavailable(retry_after: u64) -> Denial {
    Denial::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "UNAVAILABLE",
        vec![(RETRY_AFTER, retry_after.to_string())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_body_shape() {
        let d = refused("EXPIRED");
        assert_eq!(
            d.body(),
            r#"{"error":"invalid_token","error_description":"the token has expired","code":"EXPIRED"}"#
        );
        let res: Response<String> = unavailable(7).into_response();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[RETRY_AFTER], "7");
        assert_eq!(
            res.headers()[CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }
}
