//! A request's context, as the response future and the body enter it.

use std::panic::Location;
use std::sync::Arc;

use crate::context::{Frame, State};
use crate::propagate::run_in_frame;

/// A request's context as every poll enters it: its frame (what it
/// brought from its caller and its [`RequestInfo`](crate::tower::RequestInfo),
/// with the service's own context below) and its span.
pub(super) struct InRequest {
    /// The request's frame (published at `call`), as the frame to make
    /// current: fixed once, so a poll only moves a pointer in and out of
    /// the thread's state (as `WithContext` does).
    frame: Option<Arc<Frame>>,
    arrived: bool,
    site: &'static Location<'static>,
    /// The same trace as OpenTelemetry's current context.
    #[cfg(feature = "opentelemetry")]
    opentelemetry: opentelemetry::Context,
    span: tracing::Span,
}

impl InRequest {
    /// The context of a request: `frame` (what
    /// [`Scope::into_request_frame`](crate::Scope) gave at `call`).
    #[track_caller]
    pub(super) fn new(frame: Arc<Frame>, span: tracing::Span) -> InRequest {
        #[allow(unused_mut)]
        let mut request = InRequest {
            frame: Some(frame),
            arrived: false,
            site: Location::caller(),
            #[cfg(feature = "opentelemetry")]
            opentelemetry: opentelemetry::Context::new(),
            span,
        };
        // OpenTelemetry's context is read from milieu's, with the
        // request's frame current (once: polls only attach it).
        #[cfg(feature = "opentelemetry")]
        {
            request.opentelemetry = request.run_in_milieu(crate::remote::otel::context);
        }
        request
    }

    /// Runs `f` inside the request's context.
    #[inline]
    pub(super) fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "opentelemetry")]
        let _opentelemetry = self.opentelemetry.clone().attach();
        self.run_in_milieu(f)
    }

    /// Drops what a response future or body holds (`drop_it`) inside the
    /// request's context, for one dropped before it finished; misuse
    /// found on the way is reported as an error event, not a panic out of
    /// a destructor. On a thread whose milieu state is gone (a drop from
    /// another thread-local's destructor) it drops without the context,
    /// and OpenTelemetry's is not attached (its thread-local may be gone
    /// too): nothing here may panic.
    pub(super) fn drop_inside(&mut self, drop_it: impl FnOnce()) {
        if State::try_with(|_| ()).is_none() {
            return drop_it();
        }
        crate::context::reporting_misuse_as_errors(|| self.run_in_milieu(drop_it));
    }

    /// [`run`](InRequest::run) but for OpenTelemetry's context.
    #[inline]
    fn run_in_milieu<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let _span = self.span.enter();
        run_in_frame(&mut self.frame, &mut self.arrived, self.site, f)
    }
}

impl Drop for InRequest {
    /// The request is over: its frame (the caller's entries, published at
    /// `call`) goes back to this thread's spare
    /// frames when nothing else holds it (no snapshot taken inside the
    /// request outlives it), so the next request installs into it instead
    /// of allocating one.
    fn drop(&mut self) {
        if let Some(frame) = self.frame.take() {
            // At thread exit the closure, and the frame, are just dropped.
            State::try_with(|state| state.recycle_published(frame));
        }
    }
}
