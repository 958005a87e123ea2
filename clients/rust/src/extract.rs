//! axum extractors for what [`JwtdenyLayer`](crate::JwtdenyLayer) put in an accepted request.
//!
//! `Claims` (and `Token`) reject a request the layer let through without a token (optional
//! authentication) with the guard's 401 `MISSING`; `Option<Claims>` takes it as `None`.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::guard::{self, DpopBinding, Token};
use crate::Claims;

/// The rejection of [`Claims`] and [`Token`] without the guard's acceptance: its 401.
#[derive(Debug)]
pub struct MissingToken;

impl IntoResponse for MissingToken {
    fn into_response(self) -> Response {
        guard::missing().into_response()
    }
}

macro_rules! extension_extractor {
    ($ty:ty) => {
        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = MissingToken;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
                parts.extensions.get::<$ty>().cloned().ok_or(MissingToken)
            }
        }

        impl<S: Send + Sync> OptionalFromRequestParts<S> for $ty {
            type Rejection = Infallible;

            async fn from_request_parts(
                parts: &mut Parts,
                _: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                Ok(parts.extensions.get::<$ty>().cloned())
            }
        }
    };
}

extension_extractor!(Claims);
extension_extractor!(Token);
extension_extractor!(DpopBinding);
