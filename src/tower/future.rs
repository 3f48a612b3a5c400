//! The response future: the inner service's, polled inside the request's
//! context.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};

use pin_project_lite::pin_project;

use super::body::ContextBody;
use super::request::InRequest;

pin_project! {
    /// The future [`ContextService`](super::ContextService) returns: the
    /// inner service's, each poll inside the request's context; its
    /// response's body keeps that context ([`ContextBody`]).
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        // Moved into the body once the response is ready.
        request: Option<InRequest>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, request: InRequest) -> ResponseFuture<F> {
        ResponseFuture {
            future,
            request: Some(request),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<ContextBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let request = this
            .request
            .as_mut()
            .expect("milieu::tower::ResponseFuture polled after it completed");
        let future = this.future;
        let result = ready!(request.run(|| future.poll(cx)));
        let request = this.request.take();
        Poll::Ready(result.map(|response| response.map(|body| ContextBody::new(body, request))))
    }
}
