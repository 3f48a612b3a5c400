//! The do-nothing layer of `--passthrough-layer`: a tower layer of the
//! same shape as milieu's `ContextLayer` (it wraps the service, its future
//! and the response body) that passes every call and poll straight
//! through, so that what axum charges for any such layer is measured on
//! its own. Also used by benches/tower_layer.rs.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// The do-nothing layer (see the module's documentation).
#[derive(Clone)]
pub struct Passthrough;

impl<S> Layer<S> for Passthrough {
    type Service = PassService<S>;

    fn layer(&self, inner: S) -> PassService<S> {
        PassService(inner)
    }
}

/// The service [`Passthrough`] wraps around another.
#[derive(Clone)]
pub struct PassService<S>(S);

impl<S, Req, B> Service<Req> for PassService<S>
where
    S: Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<PassBody<B>>;
    type Error = S::Error;
    type Future = PassFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> PassFuture<S::Future> {
        PassFuture {
            inner: self.0.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`PassService`].
    pub struct PassFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for PassFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<PassBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().inner.poll(cx));
        Poll::Ready(response.map(|response| response.map(|body| PassBody { inner: body })))
    }
}

pin_project_lite::pin_project! {
    /// The body of [`PassService`]'s responses.
    pub struct PassBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B: Body> Body for PassBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
