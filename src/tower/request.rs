//! A request's context, as the response future and the body enter it.

use crate::remote::{FromCaller, RequestInfo};

/// A request's context as every poll enters it: what it brought from its
/// caller (with the service's own context below), its [`RequestInfo`],
/// and its span.
pub(super) struct InRequest {
    pub(super) info: RequestInfo,
    pub(super) context: FromCaller,
    pub(super) span: tracing::Span,
}

impl InRequest {
    /// Runs `f` inside the request's context.
    #[inline]
    pub(super) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _span = self.span.enter();
        let _context = self.context.enter();
        // A local entry is never carried into a snapshot (that is what
        // local means), so it is installed anew around each poll, on the
        // thread that polls.
        crate::scope()
            .with_local(self.info.clone())
            .because("the HTTP request being handled")
            .run(f)
    }
}
