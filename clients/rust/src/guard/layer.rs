//! The guard as a `tower::Layer`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use redis::aio::ConnectionLike;
use tower_layer::Layer;
use tower_service::Service;

use super::{Decision, Guard, Token};
use crate::AsyncJwtdeny;

/// The guard as a `tower::Layer`: `Router::new().route(…).layer(Guard::new().layer(jd))`, or
/// [`JwtdenyLayer::new`] for the defaults.
#[derive(Clone)]
pub struct JwtdenyLayer<C> {
    pub(super) jd: AsyncJwtdeny<C>,
    pub(super) guard: Arc<Guard>,
}

impl<C> JwtdenyLayer<C> {
    /// The guard with its defaults.
    pub fn new(jd: AsyncJwtdeny<C>) -> Self {
        Guard::new().layer(jd)
    }
}

impl<S, C: Clone> Layer<S> for JwtdenyLayer<C> {
    type Service = JwtdenyService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtdenyService {
            inner,
            jd: self.jd.clone(),
            guard: self.guard.clone(),
        }
    }
}

/// The service [`JwtdenyLayer`] wraps around the application's.
#[derive(Clone)]
pub struct JwtdenyService<S, C> {
    inner: S,
    jd: AsyncJwtdeny<C>,
    guard: Arc<Guard>,
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for JwtdenyService<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    C: ConnectionLike + Clone + Send + Sync + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one to call; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let jd = self.jd.clone();
        let guard = self.guard.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match guard.decide(&jd, &parts).await {
                Decision::Pass => {}
                Decision::Accept {
                    claims,
                    token,
                    dpop,
                } => {
                    parts.extensions.insert(claims);
                    parts.extensions.insert(Token(token));
                    if let Some(dpop) = dpop {
                        parts.extensions.insert(dpop);
                    }
                }
                Decision::Deny(denial) => return Ok(denial.into_response()),
            }
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}
