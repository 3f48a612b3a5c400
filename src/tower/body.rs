//! The response body, polled inside the request's context.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::request::InRequest;

pin_project! {
    /// A response body that [`ContextService`](super::ContextService)
    /// wraps: every poll for a frame runs inside the request's context, so
    /// a body streamed after the handler returned still sees its request,
    /// its trace and the service's entries.
    pub struct ContextBody<B> {
        #[pin]
        body: B,
        request: Option<InRequest>,
    }
}

impl<B> ContextBody<B> {
    pub(super) fn new(body: B, request: Option<InRequest>) -> ContextBody<B> {
        ContextBody { body, request }
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.body
    }
}

impl<B: Body> Body for ContextBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let body = this.body;
        match this.request.as_mut() {
            Some(request) => request.run(|| body.poll_frame(cx)),
            None => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
