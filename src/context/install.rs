//! Installing entries: the guard form (`provide`, `Scope::enter`) and the
//! closure form (`Scope::run`) built on it.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
#[cfg(feature = "http")]
use std::mem::ManuallyDrop;
use std::panic::Location;
#[cfg(feature = "http")]
use std::ptr;
use std::sync::Arc;

use super::entry::{debug_fn, Pending, PendingValue};
use super::remote::RemoteOrigin;
#[cfg(feature = "http")]
use super::state::LocalValue;
use super::state::{Slot, State};

/// Installs `value` in the current context until the returned guard drops.
///
/// The entry is keyed by its type `T`; use a newtype for each role a type
/// plays. An entry of the same type installed earlier is shadowed, not
/// replaced: it is visible again once the guard drops, and dumps mark it.
/// The install site (this call) is recorded in the entry's provenance.
///
/// The entry is [inherited](crate::dump::Policy::Inherited): snapshots carry it
/// into spawned threads and wrapped futures. For other options (a reason,
/// a visible `Debug` value, local policy, several entries in one frame) use
/// [`scope`].
///
/// # Examples
///
/// ```
/// struct Tenant(&'static str);
///
/// let _guard = milieu::provide(Tenant("acme"));
/// assert_eq!(milieu::get::<Tenant>().unwrap().0, "acme");
/// drop(_guard);
/// assert!(!milieu::contains::<Tenant>());
/// ```
#[track_caller]
pub fn provide<T: Send + Sync + 'static>(value: T) -> Guard {
    // The one-entry path: no `Scope` vector to allocate.
    let (type_id, type_name) = (TypeId::of::<T>(), std::any::type_name::<T>());
    install_shared(type_id, type_name, Arc::new(value), Location::caller())
}

/// Installs a shared value under the type `T` (not `Arc<T>`), so
/// [`get::<T>`](crate::get) hands out clones of this very `Arc`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// struct Pool;
///
/// let pool = Arc::new(Pool);
/// let _guard = milieu::provide_arc(Arc::clone(&pool));
/// assert!(Arc::ptr_eq(&milieu::get::<Pool>().unwrap(), &pool));
/// ```
#[track_caller]
pub fn provide_arc<T: Send + Sync + 'static>(value: Arc<T>) -> Guard {
    let (type_id, type_name) = (TypeId::of::<T>(), std::any::type_name::<T>());
    install_shared(type_id, type_name, value, Location::caller())
}

/// The install of [`provide`] and [`provide_arc`]: one shared entry in a
/// frame of its own. Not generic, and not inlined into them, so every `T`
/// shares one copy, which takes its arguments in registers.
#[inline(never)]
fn install_shared(
    type_id: TypeId,
    type_name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
    site: &'static Location<'static>,
) -> Guard {
    match State::try_with(move |state| state.install_shared(type_id, type_name, value, site)) {
        Some(id) => Guard::from_push(id, site),
        None => destroyed(site),
    }
}

/// Installs a [local](crate::dump::Policy::Local) value: visible on this thread
/// until the guard drops, never carried by snapshots. `T` need not be `Send`.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// struct Scratch(Rc<Vec<u8>>); // not Send
///
/// let _guard = milieu::provide_local(Scratch(Rc::new(vec![1, 2])));
/// assert_eq!(milieu::with(|s: &Scratch| s.0.len()).unwrap(), 2);
/// // A snapshot does not carry it:
/// assert!(!milieu::Context::current().contains::<Scratch>());
/// ```
#[track_caller]
pub fn provide_local<T: 'static>(value: T) -> Guard {
    scope().with_local(value).enter()
}

/// Installs `value` as a [local](crate::dump::Policy::Local) entry of its
/// own frame, with `reason`, until the guard drops: what
/// `scope().with_local(..).because(reason).enter()` does, without the
/// `Scope`'s vector, and without touching `value`'s reference count: the
/// value is lent to the install (see `LocalValue`; on a thread not warmed
/// up yet, the install takes a count of its own). The servers install a
/// request's `RequestInfo` this way around every poll of its handler.
///
/// `None`, and nothing installed, on a thread whose context state is gone
/// (thread exit): a request dropped from another thread-local's
/// destructor then drops without its context, instead of panicking in a
/// destructor (an abort).
///
/// # Safety
///
/// `value` (the caller's `Arc`) outlives the guard: the guard is dropped,
/// also when unwinding, before anything can drop `value`, as a guard held
/// in the function that borrows `value` is.
#[cfg(feature = "http")]
#[track_caller]
#[inline]
pub(crate) unsafe fn provide_local_lent<T: 'static>(
    value: &Arc<T>,
    reason: &'static str,
) -> Option<Guard> {
    let site = Location::caller();
    let (type_id, type_name) = (TypeId::of::<T>(), std::any::type_name::<T>());
    // A copy of the caller's `Arc` that counts no reference, as a
    // `dyn Any`: `LocalValue` never drops what it was lent.
    // SAFETY: the copy is read only through the `LocalValue`, which the
    // caller's promise keeps within the life of `value`.
    let copy: Arc<T> = unsafe { ptr::read(value) };
    let copy: Arc<dyn Any> = copy;
    // SAFETY: the caller's promise.
    let value = unsafe { LocalValue::lent(ManuallyDrop::new(copy)) };
    let reason = Cow::Borrowed(reason);
    State::try_with(move |state| state.install_local(type_id, type_name, value, reason, site))
        .map(|id| Guard::from_push(id, site))
}

/// Starts a [`Scope`]: several entries installed as one frame, with options.
///
/// # Examples
///
/// ```
/// #[derive(Debug)]
/// struct Region(&'static str);
/// struct Db;
///
/// let answer = milieu::scope()
///     .with(Db)
///     .because("one pool per service")
///     .with_debug(Region("eu-west"))
///     .run(|| milieu::get::<Region>().unwrap().0);
/// assert_eq!(answer, "eu-west");
/// assert!(!milieu::contains::<Db>());
/// ```
pub fn scope() -> Scope {
    Scope {
        pending: Vec::new(),
        reason: None,
        origin: None,
    }
}

/// [`scope`] with room for `entries` entries: for a layer that knows how
/// many it will add.
#[cfg(any(feature = "http", feature = "tower"))]
#[inline]
pub(crate) fn scope_with_capacity(entries: usize) -> Scope {
    // The vector an earlier scope left behind, if any: a server builds a
    // scope per request, and then allocates none.
    let mut pending = SPARE_PENDING.try_with(Cell::take).unwrap_or_default();
    pending.reserve(entries);
    Scope {
        pending,
        reason: None,
        origin: None,
    }
}

#[cfg(any(feature = "http", feature = "tower"))]
thread_local! {
    /// The emptied entry vector of the last scope installed on this
    /// thread, for the next [`scope_with_capacity`]. A cache of one
    /// allocation: it holds no entry, and nothing in it is visible.
    static SPARE_PENDING: Cell<Vec<Pending>> = const { Cell::new(Vec::new()) };
}

/// The largest entry vector kept for reuse (a request's scope holds a few
/// entries; a larger one is freed rather than kept for the thread's life).
#[cfg(any(feature = "http", feature = "tower"))]
const SPARE_PENDING_MAX: usize = 8;

/// A set of entries to install together as one frame.
///
/// Built with [`scope`]; installed with [`run`](Scope::run) (closure form)
/// or [`enter`](Scope::enter) (guard form). Each entry records the site of
/// the `with*` call that added it; the frame records the site of `run` or
/// `enter`.
#[must_use = "a scope installs nothing until `run` or `enter` is called"]
pub struct Scope {
    pending: Vec<Pending>,
    /// Applies to entries without a reason of their own.
    reason: Option<Cow<'static, str>>,
    /// Applies to entries without a remote origin of their own.
    origin: Option<Arc<RemoteOrigin>>,
}

impl Scope {
    /// Adds an [inherited](crate::dump::Policy::Inherited) entry.
    #[track_caller]
    pub fn with<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.with_arc(Arc::new(value))
    }

    /// Adds an inherited entry from an existing `Arc`, keyed by `T`.
    #[track_caller]
    pub fn with_arc<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.pending
            .push(pending::<T>(PendingValue::Shared(value), None));
        self
    }

    /// Adds an inherited entry whose value dumps show with its `Debug`.
    ///
    /// Values are hidden by default because a dump may be logged or served
    /// on a debug page; opt in for values that are safe to show.
    #[track_caller]
    pub fn with_debug<T: fmt::Debug + Send + Sync + 'static>(mut self, value: T) -> Self {
        let value = PendingValue::Shared(Arc::new(value));
        self.pending
            .push(pending::<T>(value, Some(debug_fn::<T>())));
        self
    }

    /// [`with`](Scope::with), recorded as installed at `site`: for a layer
    /// that installs entries on its caller's behalf, so provenance names
    /// the caller's line rather than the layer's.
    #[cfg(feature = "remote")]
    pub(crate) fn with_at<T: Send + Sync + 'static>(
        mut self,
        value: T,
        site: &'static Location<'static>,
    ) -> Self {
        let mut entry = pending::<T>(PendingValue::Shared(Arc::new(value)), None);
        entry.site = site;
        self.pending.push(entry);
        self
    }

    /// [`with_debug`](Scope::with_debug), recorded as installed at `site`
    /// (see `with_at`).
    #[cfg(feature = "remote")]
    pub(crate) fn with_debug_at<T: fmt::Debug + Send + Sync + 'static>(
        mut self,
        value: T,
        site: &'static Location<'static>,
    ) -> Self {
        let value = PendingValue::Shared(Arc::new(value));
        let mut entry = pending::<T>(value, Some(debug_fn::<T>()));
        entry.site = site;
        self.pending.push(entry);
        self
    }

    /// [`with_debug_at`](Scope::with_debug_at) for a value already shared.
    #[cfg(feature = "remote")]
    pub(crate) fn with_arc_debug_at<T: fmt::Debug + Send + Sync + 'static>(
        mut self,
        value: Arc<T>,
        site: &'static Location<'static>,
    ) -> Self {
        let mut entry = pending::<T>(PendingValue::Shared(value), Some(debug_fn::<T>()));
        entry.site = site;
        self.pending.push(entry);
        self
    }

    /// [`carried_from`](Scope::carried_from) with an origin several
    /// entries share (one allocation for all of them).
    #[cfg(feature = "remote")]
    pub(crate) fn carried_from_shared(mut self, origin: &Arc<RemoteOrigin>) -> Self {
        let origin = Some(Arc::clone(origin));
        match self.pending.last_mut() {
            Some(entry) => entry.origin = origin,
            None => self.origin = origin,
        }
        self
    }

    /// Adds a [local](crate::dump::Policy::Local) entry (see [`provide_local`]).
    #[track_caller]
    pub fn with_local<T: 'static>(mut self, value: T) -> Self {
        self.pending
            .push(pending::<T>(PendingValue::Local(Arc::new(value)), None));
        self
    }

    /// Records why the entry added last is installed (shown in dumps and in
    /// [`Missing`](crate::Missing) reports). Called before any `with*`, the
    /// reason applies to every entry of the scope that has none of its own.
    pub fn because(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        match self.pending.last_mut() {
            Some(entry) => entry.reason = Some(reason.into()),
            None => self.reason = Some(reason.into()),
        }
        self
    }

    /// Records that the entry added last arrived from another process, with
    /// what that process said about it (shown in dumps next to the local
    /// install site). Called before any `with*`, it applies to every entry
    /// of the scope that has none of its own.
    ///
    /// Transports call this for what they receive (`milieu::http::serve`
    /// for W3C baggage); call it in a transport of your own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use milieu::dump::{ProcessHop, RemoteOrigin};
    /// struct Tenant(#[allow(dead_code)] String);
    ///
    /// let hop = Arc::new(ProcessHop::new().with_peer("10.0.0.7:41000"));
    /// let _guard = milieu::scope()
    ///     .with(Tenant("acme".into()))
    ///     .carried_from(RemoteOrigin::new(hop))
    ///     .enter();
    /// let dump = milieu::dump();
    /// let entry = dump.entries().next().unwrap();
    /// let origin = entry.provenance.remote.as_ref().unwrap();
    /// assert_eq!(origin.hop.peer.as_deref(), Some("10.0.0.7:41000"));
    /// ```
    pub fn carried_from(mut self, origin: RemoteOrigin) -> Self {
        let origin = Some(Arc::new(origin));
        match self.pending.last_mut() {
            Some(entry) => entry.origin = origin,
            None => self.origin = origin,
        }
        self
    }

    /// Installs the entries, runs `f`, and removes them again, also when
    /// `f` panics.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Depth(u32);
    /// let depth = milieu::scope().with(Depth(1)).run(|| milieu::get::<Depth>().unwrap().0);
    /// assert_eq!(depth, 1);
    /// ```
    #[track_caller]
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        let _guard = self.enter();
        f()
    }

    /// The frame a request's polls enter: the context that installing
    /// these entries and then `frame_local` (the request's own local
    /// entry, see [`State::publish_over_current`]) on top of the current
    /// one would make, without installing them: the frame is published at
    /// once, so nothing is pushed, pointed at or undone for a context that
    /// is only ever entered (the tower layer's request). A scope with a
    /// local entry, which such a frame cannot hold, takes the long way:
    /// install, then the frame over the context that makes.
    ///
    /// # Panics
    ///
    /// As [`enter`](Scope::enter), if the thread's context state is
    /// already destroyed.
    #[cfg(feature = "tower")]
    pub(crate) fn into_request_frame<L: Send + Sync + 'static>(
        self,
        frame_local: super::FrameLocal<L>,
        site: &'static Location<'static>,
    ) -> Arc<super::Frame> {
        let has_local = self
            .pending
            .iter()
            .any(|p| matches!(p.value, PendingValue::Local(_)));
        if has_local {
            let _installed = install(self, site);
            return request_frame(|_| {}, frame_local, site);
        }
        drain_into_state(self, site, |state, pending, reason, origin| {
            let fill = |entries: &mut super::RequestEntries<'_>| {
                for p in pending.drain(..) {
                    entries.push_pending(p, reason, origin);
                }
            };
            state.publish_over_current(fill, frame_local, site)
        })
    }

    /// Installs the entries until the returned guard drops.
    ///
    /// # Panics
    ///
    /// Panics if the thread's context state is already destroyed (the call
    /// is made from a thread-local destructor during thread exit).
    #[track_caller]
    pub fn enter(self) -> Guard {
        install(self, Location::caller())
    }
}

/// The frame a request's polls enter: the entries `fill` adds (the
/// layer's own, with [`RequestEntries::carry`](super::RequestEntries)),
/// then `frame_local`, on top of the current context, published and
/// never installed; [`Scope::into_request_frame`] without a scope, for a
/// request that brought nothing from its caller.
///
/// # Panics
///
/// As [`Scope::enter`], if the thread's context state is already
/// destroyed.
#[cfg(feature = "tower")]
pub(crate) fn request_frame<L: Send + Sync + 'static>(
    fill: impl FnOnce(&mut super::RequestEntries<'_>),
    frame_local: super::FrameLocal<L>,
    site: &'static Location<'static>,
) -> Arc<super::Frame> {
    State::try_with(|state| state.publish_over_current(fill, frame_local, site))
        .unwrap_or_else(|| destroyed(site))
}

/// Installs a scope's entries as one frame on top of the current context.
fn install(scope: Scope, site: &'static Location<'static>) -> Guard {
    let id = drain_into_state(scope, site, |state, pending, reason, origin| {
        state.install(pending, reason, origin, site)
    });
    Guard::from_push(id, site)
}

/// Runs `f` on this thread's state with the scope's entries (which it
/// drains), its reason and its origin; then keeps the emptied vector for
/// the next server scope.
///
/// # Panics
///
/// If the thread's context state is already destroyed (see
/// [`Scope::enter`]).
fn drain_into_state<R>(
    scope: Scope,
    site: &'static Location<'static>,
    f: impl FnOnce(
        &State,
        &mut Vec<Pending>,
        Option<&Cow<'static, str>>,
        Option<&Arc<RemoteOrigin>>,
    ) -> R,
) -> R {
    let Scope {
        mut pending,
        reason,
        origin,
    } = scope;
    let done = State::try_with(|state| f(state, &mut pending, reason.as_ref(), origin.as_ref()));
    let Some(done) = done else {
        // The entries go before the panic, as they would have inside the
        // install: a value's destructor that panics then is a panic, not
        // an abort during unwinding.
        drop(pending);
        destroyed(site)
    };
    // Emptied: kept for the next server scope.
    #[cfg(any(feature = "http", feature = "tower"))]
    keep_pending(pending);
    done
}

/// Keeps a scope's emptied entry vector for the next
/// [`scope_with_capacity`], unless it is too large to keep.
#[cfg(any(feature = "http", feature = "tower"))]
fn keep_pending(pending: Vec<Pending>) {
    if pending.is_empty() && pending.capacity() > 0 && pending.capacity() <= SPARE_PENDING_MAX {
        let _ = SPARE_PENDING.try_with(|spare| spare.set(pending));
    }
}

#[cold]
fn destroyed(site: &'static Location<'static>) -> ! {
    panic!(
        "milieu: cannot install context at {site}: this thread's context state is already \
         destroyed (thread exit)"
    )
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("entries", &self.pending)
            .field("reason", &self.reason)
            .field("origin", &self.origin)
            .finish()
    }
}

#[track_caller]
fn pending<T: 'static>(value: PendingValue, debug: Option<super::entry::DebugFn>) -> Pending {
    Pending {
        type_id: TypeId::of::<T>(),
        type_name: std::any::type_name::<T>(),
        value,
        site: Location::caller(),
        reason: None,
        debug,
        origin: None,
    }
}

/// Removes what [`provide`], [`Scope::enter`] or
/// [`Context::enter`](crate::Context::enter) installed, when dropped.
///
/// Guards must be dropped in the reverse order of their creation, which
/// `let` bindings in one block do by themselves. A guard is not `Send`: it
/// belongs to the thread whose context it changed.
///
/// # Panics
///
/// Dropping a guard while a guard created after it is still alive is a bug
/// in the caller. milieu repairs the stack (both frames are removed, so the
/// context is exactly what it was before the older guard was created) and
/// then panics with a message naming both install sites, unless the thread
/// is already panicking, in which case the report goes to `tracing` at
/// error level instead.
#[must_use = "the context entries are removed when the guard is dropped; bind it: `let _guard = ...`"]
pub struct Guard {
    id: u64,
    site: &'static Location<'static>,
    _not_send: PhantomData<*const ()>,
}

impl Guard {
    pub(crate) fn from_push(id: u64, site: &'static Location<'static>) -> Self {
        Guard {
            id,
            site,
            _not_send: PhantomData,
        }
    }

    /// Where this guard was created.
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guard(#{} at {})", self.id, self.site)
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        // Thread teardown: the state (and everything in it) is gone already.
        if let Some(Some(slots)) = State::try_with(|state| state.drop_guard(self.id)) {
            let report = out_of_order_report(self.site, &slots);
            State::dispose(slots);
            misuse(report);
        }
    }
}

/// The message for a guard dropped while younger installs are still active.
pub(crate) fn out_of_order_report(dropped_site: &Location<'_>, slots: &[Slot]) -> String {
    if slots.len() == 1 {
        // Nothing was installed after it: it was removed while a context
        // entered after it, which pushes no slot (a request's, by the
        // tower layer), was current.
        return format!(
            "milieu: context guard dropped out of order: the install at {dropped_site} was \
             removed inside a context entered after it was made (a request's or a task's, \
             still current): the guard was moved into the request's handler or the task, or \
             dropped from it. Guards must be dropped where they were made; to give a handler a \
             value, install it before the request or pass it in. The install was removed; the \
             entered context stays current until it is left."
        );
    }
    let newest = slots.last().map_or(dropped_site, |slot| slot.site);
    let others = slots.len().saturating_sub(1);
    // The install removed may be milieu's own (a request's or a task's
    // context, left at the end of a poll): the ones still active above it
    // are where the user's mistake usually is, so the message says what
    // keeps the newest alive.
    format!(
        "milieu: context guard dropped out of order: the install at {dropped_site} was removed \
         while {others} install(s) made after it were still active, the most recent at \
         {newest}, still alive when the older one went (to be dropped later, leaked with \
         `mem::forget`, or held across `.await`). Guards must be dropped in reverse order \
         of creation; keep guards in one block, use `Scope::run`, or for async code wrap the \
         future (`FutureExt::in_current_context`, `ScopeExt::wrap`) instead of holding a guard \
         across `.await`. The stack was repaired: all {} install(s) were removed.",
        slots.len()
    )
}

/// Reports misuse: a panic, or an error event when already unwinding
/// (a second panic would abort the process) or inside a wrapper's drop
/// ([`reporting_misuse_as_errors`]).
pub(crate) fn misuse(report: String) {
    let in_drop = MISUSE_AS_ERRORS.try_with(Cell::get).unwrap_or(0) > 0;
    if in_drop || std::thread::panicking() {
        tracing::error!(target: "milieu", "{report}");
    } else {
        panic!("{report}");
    }
}

thread_local! {
    /// How many wrapper drops are running [`reporting_misuse_as_errors`]
    /// on this thread.
    static MISUSE_AS_ERRORS: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, the drop of what a wrapper holds inside its context, with
/// misuse reported as error events, not panics: a panic from a destructor
/// aborts the process at thread exit and cuts short the destructor that
/// called it (a reactor's, say). The stray installs are removed all the
/// same.
pub(crate) fn reporting_misuse_as_errors<R>(f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = MISUSE_AS_ERRORS.try_with(|depth| depth.set(depth.get() - 1));
        }
    }
    let counted = MISUSE_AS_ERRORS
        .try_with(|depth| depth.set(depth.get() + 1))
        .is_ok();
    // Only when the count went up does it come down.
    let _leave = counted.then_some(Leave);
    f()
}

#[cfg(all(test, feature = "tower"))]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Service;
    #[derive(Debug)]
    struct Trace(u32);
    struct Scratch;

    /// The request's own local entry (a `RequestInfo` in the layer).
    #[derive(Debug)]
    struct Request(u32);

    fn request_frame(scope: Scope) -> Arc<super::super::Frame> {
        scope.into_request_frame(
            super::super::FrameLocal {
                value: Request(3),
                reason: "the request",
            },
            Location::caller(),
        )
    }

    /// Enters `frame` as the tower layer's polls do.
    fn inside<R>(frame: &Arc<super::super::Frame>, f: impl FnOnce() -> R) -> R {
        let _entered = crate::propagate::enter_kept_frame(frame, Location::caller());
        f()
    }

    /// The frame a request enters holds the scope's entries and the
    /// request's local entry on top of the current context, leaves
    /// nothing installed behind, and, entered, makes the scope's
    /// `Dispatch` tracing's default.
    #[test]
    fn a_scope_published_without_an_install_is_what_its_install_would_make() {
        let _service = crate::provide(Service);
        // Shadowed inside the request by the scope's own.
        let _older = crate::provide(Trace(1));
        let depth = || State::try_with(|state| state.stack_len()).unwrap();
        let before = depth();
        // A subscriber of a type the thread's default is not otherwise.
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry());
        let frame = request_frame(
            scope()
                .with_debug(Trace(7))
                .because("the caller's")
                .with(dispatch.clone()),
        );
        assert_eq!(depth(), before, "nothing installed");
        assert_eq!(crate::get::<Trace>().unwrap().0, 1);
        assert!(!crate::contains::<Request>());
        let context = crate::Context::from_frame(Some(Arc::clone(&frame)));
        assert_eq!(context.get::<Trace>().unwrap().0, 7);
        assert!(context.contains::<Service>());
        // The request's entry is local: no snapshot carries it.
        assert!(!context.contains::<Request>());
        inside(&frame, || {
            // The frame's own entries, then its parent's.
            assert_eq!(crate::get::<Trace>().unwrap().0, 7);
            assert!(crate::contains::<Service>());
            assert!(!crate::contains::<Scratch>());
            assert_eq!(crate::get::<Request>().unwrap().0, 3);
            let dump = crate::dump();
            let trace = dump
                .entries()
                .find(|e| e.type_name.ends_with("Trace"))
                .unwrap();
            assert_eq!(trace.provenance.reason.as_deref(), Some("the caller's"));
            let request = dump
                .entries()
                .find(|e| e.type_name.ends_with("Request"))
                .unwrap();
            assert_eq!(request.policy, crate::dump::Policy::Local);
            assert_eq!(request.status, crate::dump::EntryStatus::Visible);
            tracing::dispatcher::get_default(|current| {
                assert!(current.is::<tracing_subscriber::Registry>())
            });
            // A snapshot taken inside and entered again leaves it behind,
            // and its dump says so.
            let _again = crate::Context::current().enter();
            assert_eq!(crate::get::<Trace>().unwrap().0, 7);
            assert!(!crate::contains::<Request>());
            let dump = crate::dump();
            let request = dump
                .entries()
                .find(|e| e.type_name.ends_with("Request"))
                .unwrap();
            assert!(matches!(
                request.status,
                crate::dump::EntryStatus::NotCarried { .. }
            ));
            assert_eq!(request.value, None);
        });
        assert!(!crate::contains::<Request>());
    }

    /// A scope with a local entry takes the long way, and its frame
    /// leaves that local entry out, as a snapshot of its install would;
    /// the request's own entry is still there.
    #[test]
    fn a_scope_with_a_local_entry_is_entered_without_it() {
        let frame = request_frame(scope().with(Trace(1)).with_local(Scratch));
        let depth = State::try_with(|state| state.stack_len()).unwrap();
        assert_eq!(depth, 0, "the install was removed");
        inside(&frame, || {
            assert_eq!(crate::get::<Trace>().unwrap().0, 1);
            assert!(!crate::contains::<Scratch>());
            assert_eq!(crate::get::<Request>().unwrap().0, 3);
        });
    }

    /// A request frame built with the layer's own entries, as the tower
    /// layer builds one for a request that brought nothing from a caller.
    fn own_request_frame(trace: u32, request: u32, forward: bool) -> Arc<super::super::Frame> {
        super::request_frame(
            |entries| {
                entries.carry_debug(Trace(trace), "the trace");
                if forward {
                    entries.carry(Scratch, "forwarded");
                }
            },
            super::super::FrameLocal {
                value: Request(request),
                reason: "the request",
            },
            Location::caller(),
        )
    }

    /// The request is over: its frame goes back to the thread, as the
    /// layer's `InRequest` gives it back.
    fn end(frame: Arc<super::super::Frame>) {
        State::try_with(|state| state.recycle_published(frame)).unwrap();
    }

    /// The address of the value a lookup of `T` finds inside `frame`.
    fn address_of<T: Send + Sync + 'static>(frame: &Arc<super::super::Frame>) -> *const T {
        inside(frame, || Arc::as_ptr(&crate::get::<T>().unwrap()))
    }

    /// A request frame whose values nothing else holds is kept whole when
    /// its request ends: the next request on the thread gets the same
    /// frame and value allocations, with its own values written in, and
    /// sees nothing of the earlier request's.
    #[test]
    fn the_next_request_writes_its_values_into_the_last_ones_frame() {
        let _service = crate::provide(Service);
        let first = own_request_frame(1, 10, false);
        let frame_at = Arc::as_ptr(&first);
        let (trace_at, request_at) = (address_of::<Trace>(&first), address_of::<Request>(&first));
        end(first);
        let second = own_request_frame(2, 20, false);
        assert_eq!(Arc::as_ptr(&second), frame_at, "the same frame");
        assert_eq!(
            address_of::<Trace>(&second),
            trace_at,
            "the same allocation"
        );
        assert_eq!(address_of::<Request>(&second), request_at);
        inside(&second, || {
            assert_eq!(crate::get::<Trace>().unwrap().0, 2);
            assert_eq!(crate::get::<Request>().unwrap().0, 20);
            assert!(crate::contains::<Service>());
            let dump = crate::dump();
            let request = dump
                .entries()
                .find(|e| e.type_name.ends_with("Request"))
                .unwrap();
            assert_eq!(request.policy, crate::dump::Policy::Local);
            let trace = dump
                .entries()
                .find(|e| e.type_name.ends_with("Trace"))
                .unwrap();
            assert_eq!(trace.value.as_deref(), Some("Trace(2)"));
        });
        // A snapshot taken inside carries the trace, not the request.
        let context = crate::Context::from_frame(Some(Arc::clone(&second)));
        assert_eq!(context.get::<Trace>().unwrap().0, 2);
        assert!(!context.contains::<Request>());
        drop(context);
        end(second);
        // More entries than the kept frame has: the trace is written in
        // place, the rest added after it.
        let third = own_request_frame(3, 30, true);
        assert_eq!(Arc::as_ptr(&third), frame_at);
        assert_eq!(address_of::<Trace>(&third), trace_at);
        inside(&third, || {
            assert_eq!(crate::get::<Trace>().unwrap().0, 3);
            assert!(crate::contains::<Scratch>());
            assert_eq!(crate::get::<Request>().unwrap().0, 30);
        });
        end(third);
        // Fewer: the earlier request's `Scratch` goes.
        let fourth = own_request_frame(4, 40, false);
        assert_eq!(Arc::as_ptr(&fourth), frame_at);
        inside(&fourth, || {
            assert_eq!(crate::get::<Trace>().unwrap().0, 4);
            assert!(!crate::contains::<Scratch>(), "the earlier request's");
            assert_eq!(crate::get::<Request>().unwrap().0, 40);
        });
        end(fourth);
    }

    /// A value the handler still holds when its request ends (an `Arc`
    /// from `milieu::get`, a snapshot) is never written over: that frame
    /// is not kept whole, and the next request's values go elsewhere.
    #[test]
    fn a_value_held_past_its_request_is_never_written_over() {
        let first = own_request_frame(1, 10, false);
        let held_request = inside(&first, || crate::get::<Request>().unwrap());
        let held_trace = inside(&first, || crate::get::<Trace>().unwrap());
        end(first);
        let second = own_request_frame(2, 20, false);
        inside(&second, || {
            assert_eq!(crate::get::<Trace>().unwrap().0, 2);
            assert_eq!(crate::get::<Request>().unwrap().0, 20);
        });
        assert_eq!((held_trace.0, held_request.0), (1, 10));
        assert!(!std::ptr::eq(address_of::<Trace>(&second), &*held_trace));
        end(second);

        // A snapshot taken inside the request keeps its whole frame.
        let third = own_request_frame(3, 30, false);
        let snapshot = inside(&third, crate::Context::current);
        let third_at = Arc::as_ptr(&third);
        end(third);
        let fourth = own_request_frame(4, 40, false);
        assert_ne!(
            Arc::as_ptr(&fourth),
            third_at,
            "the snapshot holds that one"
        );
        assert_eq!(snapshot.get::<Trace>().unwrap().0, 3);
        inside(&fourth, || assert_eq!(crate::get::<Trace>().unwrap().0, 4));
        end(fourth);
        let _entered = snapshot.enter();
        assert_eq!(crate::get::<Trace>().unwrap().0, 3);
    }

    /// A frame that held an entry not of the layer's own making (a
    /// caller's, from a scope) is emptied when its request ends, not kept
    /// whole: the entry's value is dropped then, not at some later
    /// request.
    #[test]
    fn a_frame_with_a_scope_entry_is_emptied_when_its_request_ends() {
        struct Counted(#[allow(dead_code)] Arc<()>);
        let count = Arc::new(());
        let frame = request_frame(scope().with(Counted(Arc::clone(&count))));
        end(frame);
        assert_eq!(Arc::strong_count(&count), 1, "dropped at the end");
        // Over a kept frame, a scope's entries replace the earlier ones.
        end(own_request_frame(1, 10, true));
        let frame = request_frame(scope().with(Counted(Arc::clone(&count))));
        inside(&frame, || {
            assert!(crate::contains::<Counted>());
            assert!(!crate::contains::<Trace>(), "the earlier request's");
            assert!(!crate::contains::<Scratch>());
            assert_eq!(crate::get::<Request>().unwrap().0, 3);
        });
        end(frame);
        assert_eq!(Arc::strong_count(&count), 1);
    }
}
