//! Snapshots: the current context as a value that can be stored, sent to
//! another thread and entered there.

use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::dump::Dump;
use super::frame::{Arrival, Frame, FrameKind, HopKind, HopLabel, HopRecord, ThreadInfo};
use super::install::Guard;
use super::missing::Missing;
use super::state::State;

/// A snapshot of a context: an immutable, shareable pointer to its top frame.
///
/// Taking one with [`Context::current`] is a pointer copy. A snapshot carries
/// every [inherited](crate::dump::Policy::Inherited) entry; [local](crate::dump::Policy::Local)
/// ones stay behind (dumps of the snapshot list them as not carried).
/// [`run`](Context::run) or [`enter`](Context::enter) make it the current
/// context of any thread; everything installed on top of it there is
/// removed again afterwards, and the snapshot itself never changes.
///
/// # Examples
///
/// ```
/// struct RequestId(u64);
///
/// let ctx = milieu::scope().with(RequestId(7)).run(milieu::Context::current);
/// assert!(!milieu::contains::<RequestId>()); // the scope is over...
/// let id = std::thread::spawn(move || {
///     ctx.run(|| milieu::get::<RequestId>().unwrap().0) // ...the snapshot lives on
/// })
/// .join()
/// .unwrap();
/// assert_eq!(id, 7);
/// ```
#[derive(Clone, Default)]
pub struct Context {
    frame: Option<Arc<Frame>>,
}

impl Context {
    /// The current context of this thread. O(1): one reference-count
    /// increment (the first snapshot after an install also links that
    /// install's frame into the chain, once).
    #[inline]
    pub fn current() -> Context {
        Context {
            frame: State::try_with(State::snapshot).flatten(),
        }
    }

    /// The context whose top frame is `frame`, a published one.
    #[cfg(all(test, feature = "tower"))]
    pub(crate) fn from_frame(frame: Option<Arc<Frame>>) -> Context {
        Context { frame }
    }

    /// A context with no entries.
    pub fn empty() -> Context {
        Context { frame: None }
    }

    /// Whether the snapshot carries no entry.
    pub fn is_empty(&self) -> bool {
        self.frame.as_ref().is_none_or(|f| f.map().len() == 0)
    }

    /// Records that this snapshot is being carried across a hop (into a
    /// task, thread, stage or process) captured at the caller's location.
    ///
    /// The propagation helpers of this crate call this for you; call it when
    /// handing a context to an executor or pool milieu does not know, so the
    /// dumps taken there say how the context arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::Context;
    /// use milieu::dump::HopKind;
    /// struct Job;
    ///
    /// let _guard = milieu::provide(Job);
    /// let carried = Context::current().hop(HopKind::Thread);
    /// std::thread::spawn(move || carried.run(|| {
    ///     let dump = milieu::dump();
    ///     assert_eq!(dump.entries().next().unwrap().provenance.hops.len(), 1);
    /// }))
    /// .join()
    /// .unwrap();
    /// ```
    #[track_caller]
    #[must_use]
    pub fn hop(&self, kind: HopKind) -> Context {
        self.hop_at(kind, None, Location::caller())
    }

    /// Like [`hop`](Context::hop), with a label for the dump (a stage name,
    /// a remote service).
    #[track_caller]
    #[must_use]
    pub fn hop_labeled(&self, kind: HopKind, label: impl Into<Cow<'static, str>>) -> Context {
        self.hop_at(kind, Some(HopLabel::from(label.into())), Location::caller())
    }

    pub(crate) fn hop_at(
        &self,
        kind: HopKind,
        label: Option<HopLabel>,
        site: &'static Location<'static>,
    ) -> Context {
        self.clone().into_hop_at(kind, label, site)
    }

    /// [`hop_at`](Context::hop_at) for a snapshot the caller no longer
    /// needs (`Context::current().into_hop_at(..)`, as every spawn does):
    /// its frame moves into the hop, sparing a reference count increment
    /// and decrement per spawn.
    pub(crate) fn into_hop_at(
        self,
        kind: HopKind,
        label: Option<HopLabel>,
        site: &'static Location<'static>,
    ) -> Context {
        // An empty context carries nothing worth recording.
        let Some(parent) = self.frame else {
            return Context::empty();
        };
        let record = HopRecord {
            kind,
            label,
            site,
            arrived: Arrival::new(),
        };
        Context {
            frame: Some(Frame::hop(parent, record)),
        }
    }

    /// Makes this snapshot the current context while `f` runs, then restores
    /// the previous one (also when `f` panics).
    #[track_caller]
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.enter();
        f()
    }

    /// Makes this snapshot the current context until the guard drops.
    ///
    /// # Panics
    ///
    /// Panics if called from a thread-local destructor during thread exit.
    #[track_caller]
    pub fn enter(&self) -> Guard {
        let site = Location::caller();
        let frame = self.frame_for_entering(site);
        match State::try_with(|state| state.enter(frame, site)) {
            Some(id) => Guard::from_push(id, site),
            None => panic!(
                "milieu: cannot enter a context at {site}: this thread's context state \
                 is already destroyed (thread exit)"
            ),
        }
    }

    /// The frame to make current: the top frame itself, or, when local
    /// entries are visible in it, an `Entered` frame that leaves them out.
    pub(crate) fn frame_for_entering(
        &self,
        site: &'static Location<'static>,
    ) -> Option<Arc<Frame>> {
        self.clone().into_frame_for_entering(site)
    }

    /// [`frame_for_entering`](Context::frame_for_entering) for a snapshot
    /// the caller no longer needs (a wrapped future's, made for it): the
    /// top frame itself moves out when it can be entered as it is.
    pub(crate) fn into_frame_for_entering(
        self,
        site: &'static Location<'static>,
    ) -> Option<Arc<Frame>> {
        let top = self.frame?;
        if !top.data().locals_since_cut {
            return Some(top);
        }
        let thread =
            State::try_with(State::thread_info).unwrap_or_else(|| Arc::new(ThreadInfo::exiting()));
        Some(Arc::new(Frame::cut(
            top,
            FrameKind::Entered { site },
            thread,
        )))
    }

    /// The value of type `T` this snapshot carries.
    ///
    /// # Errors
    ///
    /// [`Missing`] when the snapshot carries no `T`.
    #[track_caller]
    pub fn get<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, Missing> {
        let found = self
            .frame
            .as_ref()
            .and_then(|f| f.map().get(TypeId::of::<T>()));
        match found {
            Some(found) => {
                let value = found.value.cast::<T>();
                // SAFETY: the map holds shared values only, each the `T`
                // inside an `Arc` made for the type it is keyed by; the
                // frame (held by `self`) keeps it alive. One more strong
                // count wrapped is `Arc::clone` on the typed `Arc`.
                Ok(unsafe {
                    Arc::increment_strong_count(value);
                    Arc::from_raw(value)
                })
            }
            None => Err(Missing::for_snapshot::<T>(self.dump(), Location::caller())),
        }
    }

    /// Whether the snapshot carries a value of type `T`.
    pub fn contains<T: 'static>(&self) -> bool {
        self.contains_id(TypeId::of::<T>())
    }

    pub(crate) fn contains_id(&self, id: TypeId) -> bool {
        self.frame
            .as_ref()
            .is_some_and(|f| f.map().get(id).is_some())
    }

    /// A dump of what this snapshot carries, with provenance.
    pub fn dump(&self) -> Dump {
        Dump::of_snapshot(self.frame.as_deref())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        if let Some(frame) = &self.frame {
            for found in frame.map().values() {
                // SAFETY: the map's entries live in the chain `frame` holds.
                let entry = unsafe { &*found.entry };
                list.entry(&format_args!("{}", entry.type_name));
            }
        }
        list.finish()
    }
}

/// A hop decided now and recorded later, when the work it leads to runs.
///
/// Building a hop frame allocates; work that is often scheduled and then
/// cancelled (a timer guarding a request that finishes in time) would pay
/// for a record nobody reads. This keeps what the record needs — the
/// snapshot, the thread it was taken on, the site — and builds the frame
/// only in [`into_context`](PendingHop::into_context). The dump is the same
/// as with an eager [`Context::hop_at`]. Used by the reactor's timers and
/// delayed calls.
#[cfg(feature = "reactor")]
pub(crate) struct PendingHop {
    from: Context,
    thread: Option<Arc<ThreadInfo>>,
    kind: HopKind,
    label: Option<HopLabel>,
    site: &'static Location<'static>,
}

#[cfg(feature = "reactor")]
impl PendingHop {
    pub(crate) fn new(
        from: Context,
        kind: HopKind,
        label: Option<HopLabel>,
        site: &'static Location<'static>,
    ) -> Self {
        // An empty context carries nothing worth recording: skip the
        // thread lookup too.
        let thread = from.frame.is_some().then(|| {
            State::try_with(State::thread_info).unwrap_or_else(|| Arc::new(ThreadInfo::exiting()))
        });
        PendingHop {
            from,
            thread,
            kind,
            label,
            site,
        }
    }

    /// The snapshot with the hop frame on top, as the work should see it.
    pub(crate) fn into_context(self) -> Context {
        let (Some(parent), Some(thread)) = (self.from.frame, self.thread) else {
            return Context::empty();
        };
        let record = HopRecord {
            kind: self.kind,
            label: self.label,
            site: self.site,
            arrived: Arrival::new(),
        };
        let frame = Frame::cut(parent, FrameKind::Hop(record), thread);
        Context {
            frame: Some(Arc::new(frame)),
        }
    }
}
