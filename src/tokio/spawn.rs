//! `tokio::spawn` and its relatives, each capturing the caller's context
//! with a hop at the caller's site.

use std::future::Future;
use std::panic::Location;

use ::tokio::runtime::Handle;
use ::tokio::task::JoinHandle;

use crate::context::{Context, HopKind, HopLabel};
use crate::WithContext;

/// The label of the thread hop into tokio's blocking pool.
const BLOCKING: &str = "spawn_blocking";

/// `future`, wrapped to run in the current context with a task hop at `site`.
pub(super) fn in_task<F: Future>(future: F, site: &'static Location<'static>) -> WithContext<F> {
    WithContext::new(
        future,
        Context::current().into_hop_at(HopKind::Task, None, site),
        site,
    )
}

/// `f`, wrapped to run in the current context with a thread hop at `site`.
pub(super) fn in_blocking<F, R>(f: F, site: &'static Location<'static>) -> impl FnOnce() -> R
where
    F: FnOnce() -> R,
{
    let ctx =
        Context::current().into_hop_at(HopKind::Thread, Some(HopLabel::Static(BLOCKING)), site);
    move || ctx.run(f)
}

/// Spawns a task, like `tokio::spawn`, that runs inside the current
/// context: every poll of `future` sees the entries visible here, with a
/// task hop recorded at the caller's file and line.
///
/// Entries the task installs itself are its own (they never reach back
/// into the spawner); [local](crate::dump::Policy::Local) entries of the
/// spawner stay behind.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn` does.
///
/// # Examples
///
/// ```
/// struct Tenant(&'static str);
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let _tenant = milieu::provide(Tenant("acme"));
/// let handle = milieu::tokio::spawn(async { milieu::get::<Tenant>().unwrap().0 });
/// assert_eq!(handle.await.unwrap(), "acme");
/// # });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    ::tokio::task::spawn(in_task(future, Location::caller()))
}

/// Spawns a task on the runtime of `handle`, like `Handle::spawn`, inside
/// the current context (a task hop at the caller's site). Works from any
/// thread, also one outside the runtime.
///
/// # Examples
///
/// ```
/// struct Tenant(&'static str);
///
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// let _tenant = milieu::provide(Tenant("acme"));
/// let handle = milieu::tokio::spawn_on(rt.handle(), async { milieu::get::<Tenant>().unwrap().0 });
/// assert_eq!(rt.block_on(handle).unwrap(), "acme");
/// ```
#[track_caller]
pub fn spawn_on<F>(handle: &Handle, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle.spawn(in_task(future, Location::caller()))
}

/// Spawns a `!Send` task on the current `LocalSet`, like
/// `tokio::task::spawn_local`, inside the current context (a task hop at
/// the caller's site).
///
/// # Panics
///
/// Outside a `tokio::task::LocalSet`, as `tokio::task::spawn_local` does.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// struct Tenant(&'static str);
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let local = tokio::task::LocalSet::new();
/// let name = local.block_on(&rt, async {
///     let _tenant = milieu::provide(Tenant("acme"));
///     let not_send = Rc::new(());
///     milieu::tokio::spawn_local(async move {
///         let _keep = not_send;
///         milieu::get::<Tenant>().unwrap().0
///     })
///     .await
///     .unwrap()
/// });
/// assert_eq!(name, "acme");
/// ```
#[track_caller]
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    ::tokio::task::spawn_local(in_task(future, Location::caller()))
}

/// Runs `f` on tokio's blocking pool, like `tokio::task::spawn_blocking`,
/// inside the current context: a thread hop labelled `spawn_blocking` at
/// the caller's site.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::task::spawn_blocking` does.
///
/// # Examples
///
/// ```
/// use milieu::dump::HopKind;
/// struct Tenant(&'static str);
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let _tenant = milieu::provide(Tenant("acme"));
/// let handle = milieu::tokio::spawn_blocking(|| {
///     let hop = milieu::dump().hops().next().cloned().unwrap();
///     assert_eq!((hop.kind, hop.label.as_deref()), (HopKind::Thread, Some("spawn_blocking")));
///     milieu::get::<Tenant>().unwrap().0
/// });
/// assert_eq!(handle.await.unwrap(), "acme");
/// # });
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    ::tokio::task::spawn_blocking(in_blocking(f, Location::caller()))
}

/// Runs `f` on the blocking pool of `handle`'s runtime, like
/// `Handle::spawn_blocking`, inside the current context (a thread hop
/// labelled `spawn_blocking` at the caller's site).
///
/// # Examples
///
/// ```
/// struct Tenant(&'static str);
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let _tenant = milieu::provide(Tenant("acme"));
/// let handle = milieu::tokio::spawn_blocking_on(rt.handle(), || milieu::get::<Tenant>().unwrap().0);
/// assert_eq!(rt.block_on(handle).unwrap(), "acme");
/// ```
#[track_caller]
pub fn spawn_blocking_on<F, R>(handle: &Handle, f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    handle.spawn_blocking(in_blocking(f, Location::caller()))
}
