//! A request's context, as the response future and the body enter it.

use std::panic::Location;
use std::sync::Arc;

use crate::context::{Frame, State};
use crate::propagate::run_in_frame;
use crate::remote::RequestInfo;

/// A request's context as every poll enters it: what it brought from its
/// caller (with the service's own context below), its [`RequestInfo`],
/// and its span.
pub(super) struct InRequest {
    info: Arc<RequestInfo>,
    /// The request's frame (the caller's entries on top of the service's
    /// context, published at `call`), as the frame to make current: fixed
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
    /// The context of a request: `frame` (what
    /// [`Scope::into_frame_for_entering`](crate::Scope) gave at `call`)
    /// and `info`.
    #[track_caller]
    pub(super) fn new(
        info: RequestInfo,
        frame: Option<Arc<Frame>>,
        span: tracing::Span,
    ) -> InRequest {
        let site = Location::caller();
        // OpenTelemetry's context is read from milieu's, with the
        // request's frame current (once: polls only attach it).
        #[cfg(feature = "opentelemetry")]
        let opentelemetry = {
            let _in_request = crate::Context::from_frame(frame.clone()).enter();
            crate::remote::otel::context()
        };
        InRequest {
            info: Arc::new(info),
            frame,
            arrived: false,
            site,
            #[cfg(feature = "opentelemetry")]
            opentelemetry,
            span,
        }
    }

    /// Runs `f` inside the request's context. The `RequestInfo` is lent to
    /// the install around `f`: `self` holds its `Arc` until after `run`.
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
        let info = &self.info;
        run_in_frame(&mut self.frame, &mut self.arrived, self.site, || {
            // A local entry is never carried into a snapshot (that is what
            // local means), so it is installed anew around each poll, on
            // the thread that polls.
            // SAFETY: `info` is borrowed from `self` for the whole of
            // `run`, and the guard drops before `run` returns (also when
            // unwinding).
            let _info = unsafe {
                crate::context::provide_local_lent(info, "the HTTP request being handled")
            };
            f()
        })
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
