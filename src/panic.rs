//! Caught panics, in one place for every layer: the message of a panic
//! payload, the log line (with the context dump, so the report names whose
//! work it was), and a future that catches a panic in any of its polls.
//!
//! The reactor, stages and transactions all run user code under
//! `catch_unwind` so one bad callback cannot stop them; they differ only in
//! what goes on afterwards, which is what [`Catcher`] says.

use std::any::Any;
#[cfg(feature = "reactor")]
use std::future::Future;
#[cfg(feature = "reactor")]
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(feature = "reactor")]
use std::pin::Pin;
#[cfg(feature = "reactor")]
use std::task::{Context as TaskContext, Poll};

/// Who caught a panic: decides the log target and what the line says
/// happens next.
#[derive(Clone, Copy, Debug)]
// With only one of the reactor and stages built, the other's variant is unused.
#[cfg_attr(not(all(feature = "reactor", feature = "stage")), allow(dead_code))]
pub(crate) enum Catcher<'a> {
    /// The reactor (callbacks, tasks, handlers, protocols; also work the
    /// reactor delivers for transactions): it goes on with its next tick.
    Reactor,
    /// A stage's worker: the worker is replaced and the stage goes on.
    Stage(&'a str),
}

/// The message of a caught panic (`panic!` payloads are `&str` or `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned())
}

/// Logs a caught panic of a `kind` of work ("handler", "task", ...)
/// through `tracing`, with the current context dump.
pub(crate) fn log(catcher: Catcher<'_>, kind: &str, payload: &(dyn Any + Send)) {
    let panic = message(payload);
    let context = crate::dump();
    match catcher {
        Catcher::Reactor => tracing::error!(
            target: "milieu::reactor",
            kind,
            panic = %panic,
            context = %context,
            "a {kind} panicked; the reactor goes on"
        ),
        Catcher::Stage(stage) => tracing::error!(
            target: "milieu::stage",
            stage,
            kind,
            panic = %panic,
            context = %context,
            "stage `{stage}`: a {kind} panicked; its worker is replaced and the stage goes on"
        ),
    }
}

#[cfg(feature = "reactor")]
pin_project_lite::pin_project! {
    /// Polls a future, turning a panic in any poll into `Err(payload)`
    /// (logged by the reactor as a panic of `kind`).
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        future: F,
        kind: &'static str,
    }
}

#[cfg(feature = "reactor")]
impl<F> CatchUnwind<F> {
    pub(crate) fn new(kind: &'static str, future: F) -> CatchUnwind<F> {
        CatchUnwind { future, kind }
    }
}

#[cfg(feature = "reactor")]
impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let future = this.future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => {
                log(Catcher::Reactor, this.kind, &*payload);
                Poll::Ready(Err(payload))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::catch_unwind;

    use super::*;

    #[test]
    fn the_message_of_str_and_string_payloads_and_of_others() {
        let payload = catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(message(&*payload), "plain");
        let payload = catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(message(&*payload), "formatted 7");
        let payload = catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(message(&*payload), "<non-string panic payload>");
    }

    #[cfg(feature = "reactor")]
    #[test]
    fn a_panic_in_a_poll_becomes_the_output() {
        let caught = futures::executor::block_on(CatchUnwind::new("task", async {
            panic!("in a poll");
        }));
        assert_eq!(message(&*caught.unwrap_err()), "in a poll");
        let fine = futures::executor::block_on(CatchUnwind::new("task", async { 7 }));
        assert_eq!(fine.unwrap(), 7);
    }
}
