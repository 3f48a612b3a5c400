//! A tokio runtime whose threads start in a root context.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::time::Duration;

use ::tokio::runtime::{Builder, Handle};
use ::tokio::task::JoinHandle;

use crate::context::{Context, Guard, HopKind, HopLabel};
use crate::WithContext;

thread_local! {
    /// The root context entered by this runtime thread at its start, left
    /// at its stop.
    static ROOT: RefCell<Option<Guard>> = const { RefCell::new(None) };
}

/// A tokio runtime with a root context: the entries every task of a
/// service needs (its database, configuration, log monitor), installed
/// once.
///
/// How the root reaches code:
///
/// - every thread the runtime starts (workers and the blocking pool)
///   enters the root context when it starts (`on_thread_start`) and leaves
///   it when it stops (`on_thread_stop`); dumps there show a thread hop
///   labelled with the thread's name, captured where the runtime was built;
/// - [`block_on`](Runtime::block_on) enters it on the calling thread while
///   it runs, which is also where a current-thread runtime polls its tasks;
/// - [`spawn`](Runtime::spawn) and [`spawn_blocking`](Runtime::spawn_blocking)
///   run in the root context (with a hop at the caller's site).
///
/// So every task sees the root context. Tasks spawned with
/// [`milieu::tokio::spawn`](super::spawn) (and the rest of this module)
/// see their spawner's context, which inside the runtime has the root at
/// its bottom. A bare `tokio::spawn` sees the root context only: the
/// thread's own, not its spawner's. Whatever a task spawned with
/// milieu's functions installs itself stays within its polls: a guard it
/// holds across `.await` is reported as misuse at the end of that poll.
///
/// Limits: [`from_builder`](Runtime::from_builder) sets the builder's
/// `on_thread_start` and `on_thread_stop` hooks, replacing any set before
/// (tokio keeps one of each). Futures run with tokio's `Handle::block_on`
/// on a thread of your own see that thread's context, not the root.
/// A bare task has no such bounds, as tokio tells milieu nothing about its
/// polls: a guard it holds across `.await` stays current on its worker
/// while it is suspended, so whatever that worker polls meanwhile (other
/// tasks, requests behind `milieu::tower::ContextLayer`)
/// sees the entry, and one it leaks for good (`mem::forget`) is reported
/// only when the worker stops, as an out-of-order drop. In a bare task,
/// hold an entry across `.await` with
/// [`ScopeExt::wrap`](crate::ScopeExt::wrap), or spawn with
/// [`milieu::tokio::spawn`](super::spawn).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// struct Config { name: &'static str }
///
/// let root = milieu::scope()
///     .with_arc(Arc::new(Config { name: "orders" }))
///     .run(milieu::Context::current);
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// builder.worker_threads(2).enable_all();
/// let rt = milieu::tokio::Runtime::from_builder(&mut builder, root)?;
///
/// let names = rt.block_on(async {
///     let carried = milieu::tokio::spawn(async { milieu::get::<Config>().unwrap().name });
///     // Even a bare tokio::spawn sees the root context.
///     let bare = tokio::spawn(async { milieu::get::<Config>().unwrap().name });
///     (carried.await.unwrap(), bare.await.unwrap())
/// });
/// assert_eq!(names, ("orders", "orders"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    inner: ::tokio::runtime::Runtime,
    root: Context,
}

impl Runtime {
    /// Builds the runtime of `builder`, its threads starting in `root`.
    ///
    /// Sets the builder's `on_thread_start` and `on_thread_stop` hooks
    /// (replacing any set before).
    ///
    /// # Errors
    ///
    /// The error of `Builder::build`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Config(&'static str);
    ///
    /// let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// let rt = milieu::tokio::Runtime::from_builder(
    ///     tokio::runtime::Builder::new_multi_thread().worker_threads(1),
    ///     root,
    /// )?;
    /// assert_eq!(rt.block_on(async { milieu::get::<Config>().unwrap().0 }), "orders");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn from_builder(builder: &mut Builder, root: Context) -> io::Result<Runtime> {
        let site = Location::caller();
        let start = root.clone();
        builder
            .on_thread_start(move || {
                let label = std::thread::current()
                    .name()
                    .map(|n| HopLabel::from(n.to_owned()));
                enter_root(start.hop_at(HopKind::Thread, label, site));
            })
            .on_thread_stop(leave_root);
        Ok(Runtime {
            inner: builder.build()?,
            root,
        })
    }

    /// The root context.
    ///
    /// ```
    /// # #[allow(dead_code)] struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// assert!(rt.root().run(|| milieu::contains::<Config>()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn root(&self) -> &Context {
        &self.root
    }

    /// A handle to the runtime (tokio's: spawning through it does not
    /// carry the context; use [`spawn_on`](super::spawn_on)).
    ///
    /// ```
    /// # #[allow(dead_code)] struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// let _request = milieu::provide(7u64);
    /// let task = milieu::tokio::spawn_on(rt.handle(), async { *milieu::get::<u64>().unwrap() });
    /// assert_eq!(rt.block_on(task).unwrap(), 7);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn handle(&self) -> &Handle {
        self.inner.handle()
    }

    /// The tokio runtime.
    ///
    /// ```
    /// # #[allow(dead_code)] struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// assert_eq!(rt.inner().metrics().num_workers(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn inner(&self) -> &::tokio::runtime::Runtime {
        &self.inner
    }

    /// Runs `future` to completion on this thread, like tokio's
    /// `Runtime::block_on`, with the root context entered on this thread
    /// meanwhile (replacing the thread's own until it returns).
    ///
    /// # Panics
    ///
    /// As tokio's `Runtime::block_on` (called inside a runtime).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// let name = rt.block_on(async { milieu::get::<Config>().unwrap().0 });
    /// assert_eq!(name, "orders");
    /// assert!(!milieu::contains::<Config>(), "left when block_on returns");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _root = self.root.enter();
        self.inner.block_on(future)
    }

    /// Spawns `future` on the runtime in the root context (a task hop at
    /// the caller's site), from any thread. Inside a task, use
    /// [`milieu::tokio::spawn`](super::spawn) to carry the task's own
    /// context instead.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// let task = rt.spawn(async { milieu::get::<Config>().unwrap().0 });
    /// assert_eq!(rt.block_on(task).unwrap(), "orders");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let site = Location::caller();
        let ctx = self.root.hop_at(HopKind::Task, None, site);
        self.inner.spawn(WithContext::new(future, ctx, site))
    }

    /// Runs `f` on the runtime's blocking pool in the root context (a
    /// thread hop labelled `spawn_blocking` at the caller's site).
    ///
    /// # Examples
    ///
    /// ```
    /// struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// let work = rt.spawn_blocking(|| milieu::get::<Config>().unwrap().0);
    /// assert_eq!(rt.block_on(work).unwrap(), "orders");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let site = Location::caller();
        let ctx = self.root.hop_at(
            HopKind::Thread,
            Some(HopLabel::Static("spawn_blocking")),
            site,
        );
        self.inner.spawn_blocking(move || ctx.run(f))
    }

    /// Shuts the runtime down, waiting at most `timeout` for its blocking
    /// work, like tokio's `Runtime::shutdown_timeout`.
    ///
    /// ```
    /// # #[allow(dead_code)] struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// rt.shutdown_timeout(std::time::Duration::from_secs(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown_timeout(self, timeout: Duration) {
        self.inner.shutdown_timeout(timeout);
    }

    /// Shuts the runtime down without waiting, like tokio's
    /// `Runtime::shutdown_background`.
    ///
    /// ```
    /// # #[allow(dead_code)] struct Config(&'static str);
    /// # let root = milieu::scope().with(Config("orders")).run(milieu::Context::current);
    /// # let rt = milieu::tokio::Runtime::from_builder(&mut tokio::runtime::Builder::new_current_thread(), root)?;
    /// rt.shutdown_background();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown_background(self) {
        self.inner.shutdown_background();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("inner", &self.inner)
            .field("root", &self.root)
            .finish()
    }
}

/// `on_thread_start`: enters the root and keeps the guard in the thread.
fn enter_root(root: Context) {
    let guard = root.enter();
    // At thread exit the slot is gone: the guard then drops here.
    let _ = ROOT.try_with(|slot| *slot.borrow_mut() = Some(guard));
}

/// `on_thread_stop`: leaves the root entered at the start.
fn leave_root() {
    if let Ok(Some(guard)) = ROOT.try_with(|slot| slot.borrow_mut().take()) {
        drop(guard);
    }
}
