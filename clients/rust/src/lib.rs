//! Check and revoke JWTs with the jwtdeny Redis module from Rust: the
//! server verifies the signature and claims and consults the denylist in one round trip, so
//! the application needs no JWT library and no key material.
//!
//! - [`Jwtdeny`]: a sync client over any `redis::ConnectionLike` (`redis::Connection`,
//!   `redis::cluster::ClusterConnection`).
//! - `AsyncJwtdeny` (feature `tokio`): the same over `MultiplexedConnection`,
//!   `ConnectionManager` or `cluster_async::ClusterConnection`.
//! - `JwtdenyLayer` (feature `tower`) guards HTTP requests: 401 for a missing, refused or
//!   revoked token, 403 for a missing scope, 503 when Redis cannot answer in time. With the
//!   `axum` feature, [`Claims`] is an extractor.
//!
//! A cluster client gets the keyed forms (`JWTDENY.KSCHECK <entry-key> <subject-key> …`),
//! whose keys route each command to the node holding them; [`keys`] derives them exactly as
//! the server does.

pub mod error;
pub mod keys;

#[cfg(feature = "tokio")]
mod asynchronous;
mod command;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "tower")]
pub mod guard;
mod sync;

use serde_json::{Map, Value};

#[cfg(feature = "tokio")]
pub use asynchronous::AsyncJwtdeny;
pub use error::{Code, Error, TokenError};
#[cfg(feature = "axum")]
pub use extract::MissingToken;
#[cfg(feature = "tower")]
pub use guard::{DpopBinding, Guard, JwtdenyLayer, JwtdenyService, Token};
pub use keys::{KeyError, DEFAULT_PREFIX};
pub use sync::Jwtdeny;

/// The verified payload of an accepted token, as the issuer signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    /// A claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// `sub`, which every token jwtdeny accepts has.
    pub fn sub(&self) -> Option<&str> {
        self.0.get("sub").and_then(Value::as_str)
    }

    /// The scopes the token grants: `scope` (RFC 9068, space-separated) or `scp` (an array:
    /// Okta, Entra; or a string).
    pub fn scopes(&self) -> Vec<&str> {
        match (self.0.get("scope"), self.0.get("scp")) {
            (Some(Value::String(s)), _) => s.split(' ').filter(|x| !x.is_empty()).collect(),
            (_, Some(Value::Array(a))) => a.iter().filter_map(Value::as_str).collect(),
            (_, Some(Value::String(s))) => s.split(' ').filter(|x| !x.is_empty()).collect(),
            _ => Vec::new(),
        }
    }

    /// The claims as a type of the application's (`#[derive(Deserialize)]`).
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        T::deserialize(Value::Object(self.0.clone()))
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl std::ops::Deref for Claims {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The options of a check: `WITHCLAIMS`, and `CERT <thumbprint>` for a token bound to a
/// client certificate (RFC 8705; the SHA-256 thumbprint your TLS terminator saw, base64url or
/// hex).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOptions {
    pub with_claims: bool,
    pub cert: Option<String>,
}

impl CheckOptions {
    pub fn with_claims() -> CheckOptions {
        CheckOptions {
            with_claims: true,
            cert: None,
        }
    }

    pub fn cert(mut self, thumbprint: impl Into<String>) -> CheckOptions {
        self.cert = Some(thumbprint.into());
        self
    }
}

/// What a check found: `active` (authentic, valid now, not revoked) and, when asked for, the
/// verified claims of an active token.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub active: bool,
    pub claims: Option<Claims>,
}

/// `JWTDENY.INSPECT`'s field/value pairs in the server's order: `status`, `reason`, `alg`,
/// `kid`, `sub`, `iat`, `exp`, `key`, `revoked_by`, `expires_at_ms` (nil values are `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub fields: Vec<(String, Option<String>)>,
}

impl Inspection {
    /// A field's value; `None` when it is nil or absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// `active`, `revoked`, or the error code the token gets from CHECK.
    pub fn status(&self) -> Option<&str> {
        self.get("status")
    }
}

/// Whether a connection is to a Redis Cluster, so that [`Jwtdeny::new`] and
/// `AsyncJwtdeny::new` choose the keyed forms by themselves. Implemented for redis-rs'
/// connection types; for any other `ConnectionLike` use `standalone` or `cluster`.
pub trait Topology {
    fn is_cluster(&self) -> bool;
}

impl Topology for redis::Connection {
    fn is_cluster(&self) -> bool {
        false
    }
}

#[cfg(feature = "cluster")]
impl Topology for redis::cluster::ClusterConnection {
    fn is_cluster(&self) -> bool {
        true
    }
}

#[cfg(feature = "tokio")]
impl Topology for redis::aio::MultiplexedConnection {
    fn is_cluster(&self) -> bool {
        false
    }
}

#[cfg(feature = "tokio")]
impl Topology for redis::aio::ConnectionManager {
    fn is_cluster(&self) -> bool {
        false
    }
}

#[cfg(feature = "cluster-async")]
impl Topology for redis::cluster_async::ClusterConnection {
    fn is_cluster(&self) -> bool {
        true
    }
}
