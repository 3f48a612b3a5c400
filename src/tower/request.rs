//! A request's context, as the response future and the body enter it.

use std::panic::Location;
use std::sync::Arc;

use crate::context::{Frame, State};
use crate::propagate::{enter_kept_frame, KeptFrameEntered};

/// A request's context as every poll enters it: its frame (what it
/// brought from its caller and its [`RequestInfo`](crate::tower::RequestInfo),
/// with the service's own context below) and its span.
///
/// Two words without OpenTelemetry: the response future and the body
/// carry it, and hyper and axum move both (a whole `http::Response`)
/// several times per request, so every word here is copied each time.
pub(super) struct InRequest {
    /// The request's frame (published at `call`), as the frame to make
    /// current: fixed once, and kept here while entered (`enter_kept`:
    /// the thread's state points at it, no stack slot holds it). An
    /// install frame, whose arrival is never recorded (only hops record
    /// one), so none of `WithContext`'s bookkeeping for it is kept.
    frame: Option<Arc<Frame>>,
    /// The request's span, when a subscriber wants it: a disabled span
    /// (no subscriber, or one that filters it out) does nothing when
    /// entered, and boxing only an enabled one keeps four words out of
    /// every move of the response in the usual case.
    span: Option<Box<tracing::Span>>,
    /// The same trace as OpenTelemetry's current context.
    #[cfg(feature = "opentelemetry")]
    opentelemetry: opentelemetry::Context,
}

impl InRequest {
    /// The context of a request: `frame`, the request's frame built at
    /// `call` (`context::request_frame` or `Scope::into_request_frame`),
    /// and `span`, kept only if a subscriber wants it.
    pub(super) fn new(frame: Arc<Frame>, span: &tracing::Span) -> InRequest {
        #[allow(unused_mut)]
        let mut request = InRequest {
            frame: Some(frame),
            span: (!span.is_disabled()).then(|| Box::new(span.clone())),
            #[cfg(feature = "opentelemetry")]
            opentelemetry: opentelemetry::Context::new(),
        };
        // OpenTelemetry's context is read from milieu's, with the
        // request's frame current (once: polls only attach it).
        #[cfg(feature = "opentelemetry")]
        {
            request.opentelemetry = request.run_in_milieu(crate::remote::otel::context);
        }
        request
    }

    /// Makes the request's context current until the guard drops: its
    /// frame, its span and (with that feature) OpenTelemetry's context.
    ///
    /// A guard, not a closure: what runs inside returns a whole future, a
    /// response or a body's frame, and a closure would carry each out by
    /// copying it.
    #[inline(always)]
    pub(super) fn enter(&mut self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "opentelemetry")]
            _opentelemetry: self.opentelemetry.clone().attach(),
            _span: self.span.as_deref().map(tracing::Span::enter),
            _frame: self
                .frame
                .as_ref()
                .and_then(|frame| enter_kept_frame(frame, polled_at())),
        }
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

    /// Runs `f` with the request's frame and span current (not
    /// OpenTelemetry's context).
    #[inline]
    fn run_in_milieu<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // Not OpenTelemetry's: `new` computes it here, and `drop_inside`
        // may run where its thread-local is gone.
        let _span = self.span.as_deref().map(tracing::Span::enter);
        let _frame = self
            .frame
            .as_ref()
            .and_then(|frame| enter_kept_frame(frame, polled_at()));
        f()
    }
}

/// What [`InRequest::enter`] returns. Its fields drop in reverse order of
/// entering: the frame is taken out first, the span left next, and
/// OpenTelemetry's context detached last.
pub(super) struct Entered<'a> {
    _frame: Option<KeptFrameEntered<'a>>,
    _span: Option<tracing::span::Entered<'a>>,
    #[cfg(feature = "opentelemetry")]
    _opentelemetry: opentelemetry::ContextGuard,
}

/// Where misuse found when a poll returns (an install it left behind) is
/// said to come from: the layer's polls, one place for every request.
#[inline]
fn polled_at() -> &'static Location<'static> {
    Location::caller()
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
