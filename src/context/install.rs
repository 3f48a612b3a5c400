//! Installing entries: the guard form (`provide`, `Scope::enter`) and the
//! closure form (`Scope::run`) built on it.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::Location;
use std::sync::Arc;

use super::entry::{debug_fn, Entry, Pending, PendingValue, Value};
use super::frame::{Frame, FrameKind};
use super::map::EntryMap;
use super::state::{Popped, Slot, State};

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
    let entry = pending::<T>(PendingValue::Shared(Arc::new(value)), None);
    install([entry], None, Location::caller())
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
    scope().with_arc(value).enter()
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
    }
}

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

    /// Installs the entries until the returned guard drops.
    ///
    /// # Panics
    ///
    /// Panics if the thread's context state is already destroyed (the call
    /// is made from a thread-local destructor during thread exit).
    #[track_caller]
    pub fn enter(self) -> Guard {
        install(self.pending, self.reason, Location::caller())
    }
}

/// Installs `pending` as one frame on top of the current context.
fn install(
    pending: impl IntoIterator<Item = Pending>,
    reason: Option<Cow<'static, str>>,
    site: &'static Location<'static>,
) -> Guard {
    let installed = State::try_with(|state| {
        let parent = state.top_frame();
        let thread = state.thread_info();
        // The entries take consecutive sequence numbers, so the local
        // values this guard must remove are those in `first..next`.
        let pending = pending.into_iter();
        let mut entries = Vec::with_capacity(pending.size_hint().0);
        let mut locals = 0..0;
        for p in pending {
            let seq = state.next_seq();
            let value = match p.value {
                PendingValue::Shared(v) => Value::Shared(v),
                PendingValue::Local(v) => {
                    state.insert_local(seq, v);
                    locals = if locals.is_empty() {
                        seq..seq + 1
                    } else {
                        locals.start..seq + 1
                    };
                    Value::Local
                }
            };
            entries.push(Arc::new(Entry {
                type_id: p.type_id,
                type_name: p.type_name,
                value,
                site: p.site,
                seq,
                reason: p.reason.or_else(|| reason.clone()),
                debug: p.debug,
            }));
        }
        let frame = new_installed_frame(parent, entries, site, thread);
        let id = state.push(Some(Arc::new(frame)), site);
        (id, locals)
    });
    match installed {
        Some((id, locals)) => Guard {
            id,
            locals,
            site,
            _not_send: PhantomData,
        },
        None => panic!(
            "milieu: cannot install context at {site}: this thread's context \
             state is already destroyed (thread exit)"
        ),
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("entries", &self.pending)
            .field("reason", &self.reason)
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
    }
}

/// Builds a frame installing `entries` on top of `parent`.
fn new_installed_frame(
    parent: Option<Arc<Frame>>,
    entries: Vec<Arc<Entry>>,
    site: &'static Location<'static>,
    thread: Arc<super::frame::ThreadInfo>,
) -> Frame {
    let (parent_visible, parent_carried) = match &parent {
        Some(p) => (p.visible.clone(), p.carried.clone()),
        None => (EntryMap::default(), EntryMap::default()),
    };
    let visible = parent_visible.extended(&entries, |_| true);
    let any_local = entries.iter().any(|e| matches!(e.value, Value::Local));
    let carried = if !any_local && parent_visible.same(&parent_carried) {
        // The common case: nothing local anywhere, one table serves both.
        visible.clone()
    } else {
        parent_carried.extended(&entries, |e| !matches!(e.value, Value::Local))
    };
    Frame::new(
        parent,
        FrameKind::Installed { site, entries },
        thread,
        visible,
        carried,
    )
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
    /// Sequence numbers of the local values this guard must remove (none
    /// of any other install fall in between).
    locals: Range<u64>,
    site: &'static Location<'static>,
    _not_send: PhantomData<*const ()>,
}

impl Guard {
    pub(crate) fn from_push(id: u64, site: &'static Location<'static>) -> Self {
        Guard {
            id,
            locals: 0..0,
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
    fn drop(&mut self) {
        // Thread teardown: the state (and everything in it) is gone already.
        let Some(popped) = State::try_with(|state| state.pop(self.id)) else {
            return;
        };
        // Frames first, then local values (youngest install first), as
        // they were installed in the other order.
        match popped {
            Popped::InOrder(slot) => {
                release(slot.frame);
                drop_locals(&self.locals);
            }
            Popped::Gone => drop_locals(&self.locals),
            Popped::OutOfOrder(slots) => {
                let report = out_of_order_report(self.site, &slots);
                State::try_with(|state| state.release(slots.into_iter().filter_map(|s| s.frame)));
                // The installs removed with ours are younger: their local
                // values have larger sequence numbers than our slot id.
                drop_locals(&(self.id + 1..u64::MAX));
                drop_locals(&self.locals);
                misuse(report);
            }
        }
    }
}

/// Removes and drops the local values numbered in `seqs`, one at a time,
/// each outside the state's borrow (its destructor may use the context).
fn drop_locals(seqs: &Range<u64>) {
    while let Some(Some(value)) = State::try_with(|state| state.take_local(seqs)) {
        drop(value);
    }
}

/// Drops a popped frame (or parks it while a borrow may point into it).
pub(crate) fn release(frame: Option<Arc<Frame>>) {
    if let Some(frame) = frame {
        State::try_with(|state| state.release([frame]));
    }
}

/// The message for a guard dropped while younger installs are still active.
pub(crate) fn out_of_order_report(dropped_site: &Location<'_>, slots: &[Slot]) -> String {
    let newest = slots.last().map_or(dropped_site, |slot| slot.site);
    let others = slots.len().saturating_sub(1);
    format!(
        "milieu: context guard dropped out of order: the install at {dropped_site} was removed \
         while {others} install(s) made after it were still active (the most recent at {newest}). \
         Guards must be dropped in reverse order of creation; keep guards in one block, use \
         `Scope::run`, or for async code wrap the future (`FutureExt::in_current_context`) \
         instead of holding a guard across `.await`. The stack was repaired: all {} install(s) \
         were removed.",
        slots.len()
    )
}

/// Reports misuse: a panic, or an error event when already unwinding
/// (a second panic would abort the process).
pub(crate) fn misuse(report: String) {
    if std::thread::panicking() {
        tracing::error!(target: "milieu", "{report}");
    } else {
        panic!("{report}");
    }
}

/// Downcasts an `Arc<dyn Any>` that holds a `T` (std offers this only for
/// `dyn Any + Send + Sync` and `T: Send + Sync`; local values are neither).
pub(crate) fn downcast_arc<T: 'static>(value: Arc<dyn Any>) -> Option<Arc<T>> {
    if !(*value).is::<T>() {
        return None;
    }
    let raw = Arc::into_raw(value).cast::<T>();
    // SAFETY: the check above proves the allocation was made as an
    // `ArcInner<T>` (an `Arc<T>` later unsized to `Arc<dyn Any>`), so the
    // thin pointer to its data may be turned back into an `Arc<T>`; this is
    // what `Arc::<dyn Any + Send + Sync>::downcast` does internally.
    Some(unsafe { Arc::from_raw(raw) })
}
