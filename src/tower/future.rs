//! The response future: the inner service's, polled inside the request's
//! context.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};

use pin_project_lite::pin_project;

use super::body::ContextBody;
use super::request::InRequest;
use crate::propagate::DropInPlace;

pin_project! {
    /// The future [`ContextService`](super::ContextService) returns: the
    /// inner service's, each poll inside the request's context; its
    /// response's body keeps that context ([`ContextBody`]).
    ///
    /// Dropped before the response is ready (the client went away, a
    /// timeout above the layer fired), it drops the inner future inside
    /// the request's context too, so what the handler held across `.await`
    /// is dropped seeing its request, trace and span.
    pub struct ResponseFuture<F> {
        // Dropped by hand, in `drop`.
        #[pin]
        future: ManuallyDrop<F>,
        // Moved into the body once the response is ready: `None` once
        // the inner future has finished.
        request: Option<InRequest>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // SAFETY: this is the wrapper's drop: nothing touches `future`
            // after it.
            let future = unsafe { DropInPlace::new(this.future.get_unchecked_mut()) };
            match this.request {
                Some(request) => request.drop_inside(move || drop(future)),
                None => drop(future),
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, request: InRequest) -> ResponseFuture<F> {
        ResponseFuture {
            future: ManuallyDrop::new(future),
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
        // SAFETY: structural pinning through `ManuallyDrop` (transparent):
        // the future is never moved out.
        let future = unsafe { this.future.map_unchecked_mut(|future| &mut **future) };
        let result = {
            let _entered = request.enter();
            ready!(future.poll(cx))
        };
        let request = this.request.take();
        Poll::Ready(result.map(|response| response.map(|body| ContextBody::new(body, request))))
    }
}
