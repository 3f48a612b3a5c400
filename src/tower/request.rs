//! A request's context, as the response future and the body enter it.

use std::panic::Location;
use std::sync::Arc;

use crate::context::{Frame, State};
use crate::propagate::run_in_frame;
use crate::remote::{FromCaller, RequestInfo};

/// A request's context as every poll enters it: what it brought from its
/// caller (with the service's own context below), its [`RequestInfo`],
/// and its span.
pub(super) struct InRequest {
    info: Arc<RequestInfo>,
    /// The snapshot taken at `call`, as the frame to make current: fixed
    /// once, so a poll only moves a pointer in and out of the thread's
    /// state (as `WithContext` does).
    frame: Option<Arc<Frame>>,
    arrived: bool,
    site: &'static Location<'static>,
    /// The same trace as OpenTelemetry's current context.
    #[cfg(feature = "opentelemetry")]
    opentelemetry: opentelemetry::Context,
    span: tracing::Span,
}

impl InRequest {
    /// The context of a request, `from` taken inside it at `call`.
    #[track_caller]
    pub(super) fn new(info: RequestInfo, from: FromCaller, span: tracing::Span) -> InRequest {
        let site = Location::caller();
        InRequest {
            info: Arc::new(info),
            frame: from.context.into_frame_for_entering(site),
            arrived: false,
            site,
            #[cfg(feature = "opentelemetry")]
            opentelemetry: from.opentelemetry,
            span,
        }
    }

    /// Runs `f` inside the request's context.
    #[inline]
    pub(super) fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let _span = self.span.enter();
        #[cfg(feature = "opentelemetry")]
        let _opentelemetry = self.opentelemetry.clone().attach();
        let info = &self.info;
        run_in_frame(&mut self.frame, &mut self.arrived, self.site, || {
            // A local entry is never carried into a snapshot (that is what
            // local means), so it is installed anew around each poll, on
            // the thread that polls.
            let _info = crate::context::provide_local_arc(
                Arc::clone(info),
                "the HTTP request being handled",
            );
            f()
        })
    }
}

impl Drop for InRequest {
    /// The request is over: its frame (the caller's entries, published by
    /// the snapshot taken at `call`) goes back to this thread's spare
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
