//! The response body, polled inside the request's context.

use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::ptr;
use std::task::{Context as TaskContext, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::request::InRequest;
use crate::propagate::DropInPlace;

pin_project! {
    /// A response body that [`ContextService`](super::ContextService)
    /// wraps: every poll for a frame runs inside the request's context, so
    /// a body streamed after the handler returned still sees its request,
    /// its trace and the service's entries.
    ///
    /// Dropped before its end (the client went away mid-stream), it drops
    /// the inner body inside the request's context too.
    pub struct ContextBody<B> {
        // Dropped by hand, in `drop`.
        #[pin]
        body: ManuallyDrop<B>,
        request: Option<InRequest>,
        // Whether the body was seen to end: a poll returned its end, or
        // said it was at its end after a frame.
        ended: bool,
    }

    impl<B> PinnedDrop for ContextBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // SAFETY: this is the wrapper's drop: nothing touches `body`
            // after it.
            let body = unsafe { DropInPlace::new(this.body.get_unchecked_mut()) };
            match this.request {
                Some(request) if !*this.ended => request.drop_inside(move || drop(body)),
                _ => drop(body),
            }
        }
    }
}

impl<B> ContextBody<B> {
    pub(super) fn new(body: B, request: Option<InRequest>) -> ContextBody<B> {
        ContextBody {
            body: ManuallyDrop::new(body),
            request,
            ended: false,
        }
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used again, and each of its
        // fields that owns something is moved out exactly once.
        unsafe {
            drop(ptr::read(&this.request));
            ManuallyDrop::take(&mut this.body)
        }
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
        // SAFETY: structural pinning through `ManuallyDrop` (transparent):
        // the body is never moved out.
        let mut body = unsafe { this.body.map_unchecked_mut(|body| &mut **body) };
        let poll = match this.request.as_mut() {
            Some(request) => {
                let _entered = request.enter();
                body.as_mut().poll_frame(cx)
            }
            None => body.as_mut().poll_frame(cx),
        };
        // What hyper asks before it drops a body it sent in full, asked
        // here, so that dropping such a body costs no entry into the
        // context.
        *this.ended = match &poll {
            Poll::Ready(None) => true,
            Poll::Ready(Some(_)) => body.is_end_stream(),
            Poll::Pending => false,
        };
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
