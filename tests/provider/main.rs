//! The integration tests that also need the in-process HTTPS identity provider (`tests/idp`):
//! the JWKS fetch, alone (`fetch`) and through the module (`jwks`).

#[path = "../common/mod.rs"]
mod common;
#[path = "../idp/mod.rs"]
mod idp;
#[path = "../support/mod.rs"]
mod support;

#[path = "../fetch.rs"]
mod fetch;
#[path = "../issuers_fetch.rs"]
mod issuers_fetch;
#[path = "../jwks.rs"]
mod jwks;
