//! A `tokio::task::JoinSet` whose spawning methods capture the context.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;

use ::tokio::runtime::Handle;
use ::tokio::task::{AbortHandle, LocalSet};

use super::spawn::{in_blocking, in_task};

/// A `tokio::task::JoinSet` whose `spawn*` methods run each task inside
/// the context current at the call, with a hop at the caller's site (as
/// [`spawn`](super::spawn) and [`spawn_blocking`](super::spawn_blocking)
/// do).
///
/// A wrapper rather than an extension trait (`set.spawn_in_context(..)`):
/// with the wrapper, the ordinary `set.spawn(fut)` is the one that carries
/// the context, so code ported from tokio cannot forget it on one call
/// among many. Everything else (`join_next`, `len`, `abort_all`,
/// `shutdown`, ...) is tokio's own, reached through `Deref`/`DerefMut`;
/// the spawning methods defined here shadow tokio's of the same name.
/// [`into_inner`](JoinSet::into_inner) and `From` convert both ways.
///
/// # Examples
///
/// ```
/// struct Tenant(&'static str);
///
/// # tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap().block_on(async {
/// let _tenant = milieu::provide(Tenant("acme"));
/// let mut set = milieu::tokio::JoinSet::new();
/// for i in 0..4 {
///     set.spawn(async move { (i, milieu::get::<Tenant>().unwrap().0) });
/// }
/// let mut seen = Vec::new();
/// while let Some(result) = set.join_next().await {
///     seen.push(result.unwrap());
/// }
/// seen.sort();
/// assert_eq!(seen, [(0, "acme"), (1, "acme"), (2, "acme"), (3, "acme")]);
/// # });
/// ```
pub struct JoinSet<T> {
    inner: ::tokio::task::JoinSet<T>,
}

impl<T> JoinSet<T> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = milieu::tokio::JoinSet::<()>::new();
    /// assert!(set.is_empty());
    /// let tokio_set: tokio::task::JoinSet<()> = set.into_inner();
    /// let _back = milieu::tokio::JoinSet::from(tokio_set);
    /// ```
    pub fn new() -> JoinSet<T> {
        JoinSet {
            inner: ::tokio::task::JoinSet::new(),
        }
    }

    /// tokio's `JoinSet`, with the tasks spawned so far.
    pub fn into_inner(self) -> ::tokio::task::JoinSet<T> {
        self.inner
    }
}

impl<T: 'static> JoinSet<T> {
    /// Spawns `task` on the current runtime inside the current context (a
    /// task hop at the caller's site), like `tokio::task::JoinSet::spawn`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::dump::HopKind;
    /// struct Tenant(&'static str);
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let _tenant = milieu::provide(Tenant("acme"));
    /// let mut set = milieu::tokio::JoinSet::new();
    /// set.spawn(async {
    ///     let hop = milieu::dump().hops().next().cloned().unwrap();
    ///     (milieu::get::<Tenant>().unwrap().0, hop.kind)
    /// });
    /// assert_eq!(set.join_next().await.unwrap().unwrap(), ("acme", HopKind::Task));
    /// # });
    /// ```
    #[track_caller]
    pub fn spawn<F>(&mut self, task: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send,
    {
        self.inner.spawn(in_task(task, Location::caller()))
    }

    /// Spawns `task` on the runtime of `handle` inside the current context,
    /// like `tokio::task::JoinSet::spawn_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Tenant(&'static str);
    ///
    /// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    /// let _tenant = milieu::provide(Tenant("acme"));
    /// let mut set = milieu::tokio::JoinSet::new();
    /// set.spawn_on(async { milieu::get::<Tenant>().unwrap().0 }, rt.handle());
    /// let name = rt.block_on(set.join_next()).unwrap().unwrap();
    /// assert_eq!(name, "acme");
    /// ```
    #[track_caller]
    pub fn spawn_on<F>(&mut self, task: F, handle: &Handle) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send,
    {
        self.inner
            .spawn_on(in_task(task, Location::caller()), handle)
    }

    /// Spawns a `!Send` task on the current `LocalSet` inside the current
    /// context, like `tokio::task::JoinSet::spawn_local`.
    ///
    /// # Panics
    ///
    /// Outside a `LocalSet`.
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
    ///     let mut set = milieu::tokio::JoinSet::new();
    ///     let not_send = Rc::new("acme");
    ///     set.spawn_local(async move { (*not_send, milieu::get::<Tenant>().unwrap().0) });
    ///     set.join_next().await.unwrap().unwrap()
    /// });
    /// assert_eq!(name, ("acme", "acme"));
    /// ```
    #[track_caller]
    pub fn spawn_local<F>(&mut self, task: F) -> AbortHandle
    where
        F: Future<Output = T> + 'static,
    {
        self.inner.spawn_local(in_task(task, Location::caller()))
    }

    /// Spawns a `!Send` task on `local_set` inside the current context, like
    /// `tokio::task::JoinSet::spawn_local_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Tenant(&'static str);
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let local = tokio::task::LocalSet::new();
    /// let _tenant = milieu::provide(Tenant("acme"));
    /// let mut set = milieu::tokio::JoinSet::new();
    /// set.spawn_local_on(async { milieu::get::<Tenant>().unwrap().0 }, &local);
    /// let name = local.block_on(&rt, set.join_next()).unwrap().unwrap();
    /// assert_eq!(name, "acme");
    /// ```
    #[track_caller]
    pub fn spawn_local_on<F>(&mut self, task: F, local_set: &LocalSet) -> AbortHandle
    where
        F: Future<Output = T> + 'static,
    {
        self.inner
            .spawn_local_on(in_task(task, Location::caller()), local_set)
    }

    /// Runs `f` on the blocking pool inside the current context (a thread
    /// hop labelled `spawn_blocking`), like
    /// `tokio::task::JoinSet::spawn_blocking`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Tenant(&'static str);
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let _tenant = milieu::provide(Tenant("acme"));
    /// let mut set = milieu::tokio::JoinSet::new();
    /// set.spawn_blocking(|| milieu::get::<Tenant>().unwrap().0);
    /// assert_eq!(set.join_next().await.unwrap().unwrap(), "acme");
    /// # });
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send,
    {
        self.inner
            .spawn_blocking(in_blocking(f, Location::caller()))
    }

    /// Runs `f` on the blocking pool of `handle`'s runtime inside the
    /// current context, like `tokio::task::JoinSet::spawn_blocking_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Tenant(&'static str);
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let _tenant = milieu::provide(Tenant("acme"));
    /// let mut set = milieu::tokio::JoinSet::new();
    /// set.spawn_blocking_on(|| milieu::get::<Tenant>().unwrap().0, rt.handle());
    /// assert_eq!(rt.block_on(set.join_next()).unwrap().unwrap(), "acme");
    /// ```
    #[track_caller]
    pub fn spawn_blocking_on<F>(&mut self, f: F, handle: &Handle) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send,
    {
        self.inner
            .spawn_blocking_on(in_blocking(f, Location::caller()), handle)
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> Self {
        JoinSet::new()
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.inner.len())
            .finish()
    }
}

impl<T> Deref for JoinSet<T> {
    type Target = ::tokio::task::JoinSet<T>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<T> DerefMut for JoinSet<T> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl<T> From<::tokio::task::JoinSet<T>> for JoinSet<T> {
    fn from(inner: ::tokio::task::JoinSet<T>) -> Self {
        JoinSet { inner }
    }
}
