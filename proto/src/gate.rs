//! A gate in front of gRPC services: a check on each request's path and headers that either
//! lets it through or answers it at once with a status (API keys, rate limits).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::Status;

/// Decides from the RPC path and the headers; `Err` is the answer.
pub type Check = Arc<dyn Fn(&str, &http::HeaderMap) -> Result<(), Status> + Send + Sync>;

pub fn layer<S>(check: Check) -> impl tower::Layer<S, Service = Gated<S>> + Clone {
    tower::layer::layer_fn(move |inner| Gated { inner, check: check.clone() })
}

#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    check: Check,
}

/// Served under the wrapped service's name.
impl<S: tonic::server::NamedService> tonic::server::NamedService for Gated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match (self.check)(request.uri().path(), request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}
