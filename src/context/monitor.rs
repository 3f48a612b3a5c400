//! The log monitor is a context entry.
//!
//! A `tracing::Dispatch` installed through milieu becomes `tracing`'s
//! default for the scope that installed it and for every thread and task
//! that inherits the context: the thread state switches tracing's default
//! whenever the current frame's visible `Dispatch` changes.

use tracing::{Dispatch, Subscriber};

use super::install::{scope, Guard};

/// Installs `subscriber` as the log monitor of the current scope.
///
/// Equivalent to `milieu::provide(tracing::Dispatch::new(subscriber))`;
/// a `Dispatch` installed any other way (a [`Scope`](crate::Scope),
/// [`provide_local`](crate::provide_local)) works the same.
///
/// tracing keeps one default per thread as a stack of guards: do not
/// interleave `tracing::subscriber::set_default` guards with milieu guards
/// that install a `Dispatch`.
///
/// # Examples
///
/// ```
/// use tracing_subscriber::fmt;
///
/// let subscriber = fmt().with_test_writer().finish();
/// let _guard = milieu::provide_subscriber(subscriber);
/// tracing::info!("goes to the scoped subscriber");
/// // A thread spawned through milieu logs there too.
/// milieu::thread::spawn(|| tracing::info!("so does this")).join().unwrap();
/// ```
#[track_caller]
pub fn provide_subscriber<S: Subscriber + Send + Sync + 'static>(subscriber: S) -> Guard {
    scope()
        .with(Dispatch::new(subscriber))
        .because("log monitor")
        .enter()
}
