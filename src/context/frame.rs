//! Frames: the immutable, shared links of a context.
//!
//! A snapshot is a pointer to its top frame. A frame either installs
//! entries (`provide`, `Scope`), records a hop (the context was carried to
//! a task, thread, stage or process), or marks that a snapshot was entered
//! again. Frames never change once published, so a snapshot is an `Arc`
//! clone and can be shared across threads.

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::{RefCell, UnsafeCell};
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{fence, AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock};

use super::entry::Entry;
use super::map::{EntryMap, Found};
use super::state::State;

/// A thread as dumps name it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ThreadInfo {
    /// The thread's name, if it has one.
    pub name: Option<String>,
    /// The thread's id, formatted (`ThreadId(3)`): std gives no stable number.
    pub id: String,
}

impl ThreadInfo {
    pub(crate) fn of_current() -> Self {
        let thread = std::thread::current();
        ThreadInfo {
            name: thread.name().map(str::to_owned),
            id: format!("{:?}", thread.id()),
        }
    }

    /// Stands in while the thread's locals are being destroyed, when asking
    /// std for the current thread is no longer reliable.
    pub(crate) fn exiting() -> Self {
        ThreadInfo {
            name: None,
            id: "exiting thread".to_owned(),
        }
    }
}

impl fmt::Display for ThreadInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "`{name}`"),
            None => f.write_str(&self.id),
        }
    }
}

/// What carried a context from one place to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum HopKind {
    /// A future or task (a wrapped future, a spawned task).
    Task,
    /// A new thread or a thread pool job.
    Thread,
    /// A stage's worker (SEDA queue) or a transaction's database thread.
    Stage,
    /// Another process (a context received over the network).
    Process,
}

impl fmt::Display for HopKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HopKind::Task => "task",
            HopKind::Thread => "thread",
            HopKind::Stage => "stage",
            HopKind::Process => "process",
        })
    }
}

/// The label of a hop (a thread's or a stage's name): a static string or
/// a shared one, so a stage labels each submit's hop with a reference
/// count increment, not a copy of its name.
#[derive(Clone, Debug)]
pub(crate) enum HopLabel {
    Static(&'static str),
    Shared(Arc<str>),
}

impl std::ops::Deref for HopLabel {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            HopLabel::Static(label) => label,
            HopLabel::Shared(label) => label,
        }
    }
}

impl From<Cow<'static, str>> for HopLabel {
    fn from(label: Cow<'static, str>) -> Self {
        match label {
            Cow::Borrowed(label) => HopLabel::Static(label),
            Cow::Owned(label) => HopLabel::Shared(label.into()),
        }
    }
}

impl From<String> for HopLabel {
    fn from(label: String) -> Self {
        HopLabel::Shared(label.into())
    }
}

/// A hop as frames store it.
pub(crate) struct HopRecord {
    pub(crate) kind: HopKind,
    pub(crate) label: Option<HopLabel>,
    /// Where the snapshot was captured for the hop.
    pub(crate) site: &'static Location<'static>,
    /// The first thread that entered the carried context.
    pub(crate) arrived: Arrival,
}

/// The first thread that entered a hop's frame: set once, by whichever
/// thread gets there first, and read by dumps.
///
/// Every spawned task records it on its first poll, so it is kept cheap:
/// one atomic load once set, one compare-and-swap to set it, and no
/// reference count when the thread that enters is the one that made the
/// hop (a task polled on the worker that spawned it), marked by
/// [`Arrival::CREATOR`]. It replaces a `OnceLock<Arc<ThreadInfo>>`, whose
/// `Once` and reference counts showed in profiles of
/// `milieu::tokio::spawn` (docs/benchmarks.md, "tokio spawn with
/// context").
pub(crate) struct Arrival(AtomicPtr<ThreadInfo>);

impl Arrival {
    /// Marks the arrival on the hop frame's own thread. Never a real
    /// address: `ThreadInfo` is aligned to more than one byte.
    const CREATOR: *mut ThreadInfo = std::ptr::dangling_mut::<u8>() as *mut ThreadInfo;

    /// Not arrived yet.
    pub(crate) fn new() -> Arrival {
        Arrival(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Records `thread` as the arrival, unless one is recorded already;
    /// `creator` is the thread of the hop's frame.
    #[inline]
    pub(crate) fn record(&self, thread: &Arc<ThreadInfo>, creator: &Arc<ThreadInfo>) {
        if !self.0.load(Ordering::Acquire).is_null() {
            return;
        }
        let value = if Arc::ptr_eq(thread, creator) {
            Arrival::CREATOR
        } else {
            Arc::into_raw(Arc::clone(thread)).cast_mut()
        };
        let set = self.0.compare_exchange(
            std::ptr::null_mut(),
            value,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if set.is_err() && value != Arrival::CREATOR {
            // Another thread arrived first: give back our reference.
            // SAFETY: `value` came from `Arc::into_raw` above and was not
            // stored.
            drop(unsafe { Arc::from_raw(value) });
        }
    }

    /// The thread that arrived first, if any; `creator` is the thread of
    /// the hop's frame.
    pub(crate) fn get<'a>(&'a self, creator: &'a ThreadInfo) -> Option<&'a ThreadInfo> {
        let value = self.0.load(Ordering::Acquire);
        if value.is_null() {
            None
        } else if value == Arrival::CREATOR {
            Some(creator)
        } else {
            // SAFETY: a non-null value other than `CREATOR` is an
            // `Arc::into_raw` this `Arrival` holds until it drops.
            Some(unsafe { &*value })
        }
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        let value = *self.0.get_mut();
        if !value.is_null() && value != Arrival::CREATOR {
            // SAFETY: as in `get`; dropped once, here.
            drop(unsafe { Arc::from_raw(value) });
        }
    }
}

pub(crate) enum FrameKind {
    /// Entries installed by `provide` or a `Scope` (in the frame's
    /// `entries`, in installation order).
    Installed { site: &'static Location<'static> },
    /// The context was carried across a hop; local entries stay behind.
    Hop(HopRecord),
    /// A snapshot was entered again on some thread: local entries below
    /// were not carried into it.
    Entered { site: &'static Location<'static> },
}

/// One link of a context.
///
/// An install frame is written by its thread while private (it is taken
/// from the thread's spare frames and filled in place, with no
/// allocation), then *published* when a snapshot or a dump first needs
/// it: its parent link and derived fields are set and it never changes
/// again while shared. Once its guard drops and no snapshot holds it, the
/// thread takes it back for a later install. Hop and entered frames are
/// published when made.
pub(crate) struct Frame(UnsafeCell<FrameData>);

// SAFETY: a frame is written only by the thread that owns it, and only
// while no other thread can reach it: before it is published (nothing but
// the owner's stack slot holds it) or after its reference count dropped
// back to one (see `State::recycle`, which fences against the last other
// holder's release). Everything it holds is `Send + Sync`: shared values
// are, local values are kept by the owning thread (frames hold only their
// provenance), and the raw addresses in entries and the map are read only
// where documented.
unsafe impl Send for Frame {}
unsafe impl Sync for Frame {}

pub(crate) struct FrameData {
    pub(crate) parent: Option<Arc<Frame>>,
    pub(crate) kind: FrameKind,
    /// The installed entries (empty for hop and entered frames).
    pub(crate) entries: Vec<Entry>,
    /// The thread that created the frame (installer or capturer).
    pub(crate) thread: Arc<ThreadInfo>,
    /// Every carried entry visible from this frame, built on first lookup.
    map: OnceLock<EntryMap>,
    /// Address of the carried `tracing::Dispatch` value visible from this
    /// frame, 0 if none: made current with the frame to keep tracing's
    /// default in step.
    pub(crate) dispatch: usize,
    /// Whether a local entry was installed since the nearest hop or entry
    /// below (entering the frame then needs a frame that leaves it out).
    pub(crate) locals_since_cut: bool,
    /// Whether `entries` holds a [`Value::FrameLocal`](super::entry::Value)
    /// (lookups with this frame entered then look among them first).
    pub(crate) frame_locals: bool,
    /// Which entries (by position, the first eight) of a request frame
    /// hold a value of the layer's own making, which the next request
    /// built in the frame may overwrite in place (`RequestEntries` in
    /// `state/publish.rs`).
    #[cfg(feature = "tower")]
    pub(crate) reusable: u8,
}

impl Frame {
    /// A private install frame for the thread `thread`, to be filled in.
    /// Its kind is a placeholder until it is published (`publish.rs`
    /// writes the install site then; nothing reads it before).
    pub(crate) fn blank(thread: Arc<ThreadInfo>) -> Self {
        Frame(UnsafeCell::new(FrameData {
            parent: None,
            kind: FrameKind::Entered {
                site: Location::caller(),
            },
            entries: Vec::new(),
            thread,
            map: OnceLock::new(),
            dispatch: 0,
            locals_since_cut: false,
            frame_locals: false,
            #[cfg(feature = "tower")]
            reusable: 0,
        }))
    }

    /// A published frame that adds no entries (a hop, or an entered
    /// snapshot leaving local entries out) on top of `parent`.
    pub(crate) fn cut(parent: Arc<Frame>, kind: FrameKind, thread: Arc<ThreadInfo>) -> Self {
        let dispatch = parent.data().dispatch;
        Frame(UnsafeCell::new(FrameData {
            parent: Some(parent),
            kind,
            entries: Vec::new(),
            thread,
            map: OnceLock::new(),
            dispatch,
            locals_since_cut: false,
            frame_locals: false,
            #[cfg(feature = "tower")]
            reusable: 0,
        }))
    }

    /// The frame's contents, for reading.
    #[inline]
    pub(crate) fn data(&self) -> &FrameData {
        // SAFETY: see the `Sync` impl: writes happen only while no other
        // thread can reach the frame, and never while a reference from
        // this method is alive on the owning thread (`State` takes care).
        unsafe { &*self.0.get() }
    }

    /// The frame's contents, for writing.
    ///
    /// # Safety
    ///
    /// The caller owns the frame: it is private to this thread (not
    /// published, or its reference count came back to one after an
    /// acquire fence) and no reference from [`data`](Frame::data) is alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn data_mut(&self) -> &mut FrameData {
        // SAFETY: the caller's promise.
        unsafe { &mut *self.0.get() }
    }

    /// The carried entries visible from this frame, one probe per lookup.
    #[inline]
    pub(crate) fn map(&self) -> &EntryMap {
        self.data().map.get_or_init(|| self.build_map())
    }

    /// Walks the chain down to the nearest ancestor with a map, collecting
    /// the carried entries above it newest first.
    #[cold]
    fn build_map(&self) -> EntryMap {
        let mut newest = Vec::new();
        let mut below = None;
        for frame in self.chain() {
            let data = frame.data();
            if !std::ptr::eq(frame, self) {
                if let Some(map) = data.map.get() {
                    below = Some(map);
                    break;
                }
            }
            for entry in data.entries.iter().rev() {
                let value = entry.shared_ptr();
                if !value.is_null() {
                    newest.push(Found {
                        type_id: entry.type_id,
                        entry,
                        value,
                    });
                }
            }
        }
        EntryMap::build(&newest, below.unwrap_or(&EntryMap::default()))
    }

    /// What a lookup of `id` finds while this frame is the entered one.
    ///
    /// Usually the frame's map. A request's frame (one holding a
    /// frame-local entry, see [`Value::FrameLocal`](super::entry::Value))
    /// is made per request and holds a few entries: its own are scanned,
    /// newest first, its frame-local one included, and the rest is asked
    /// of its parent's map (the service's context, built once), so a
    /// request builds no map of its own.
    #[inline]
    pub(crate) fn find_entered(&self, id: TypeId) -> Option<Found> {
        let data = self.data();
        if !data.frame_locals {
            return self.map().get(id).copied();
        }
        match data.entries.iter().rev().find(|entry| entry.type_id == id) {
            Some(entry) => {
                let shared = entry.shared_ptr();
                Some(Found {
                    type_id: id,
                    entry,
                    value: if shared.is_null() {
                        entry.frame_local_ptr()
                    } else {
                        shared
                    },
                })
            }
            None => data.parent.as_deref()?.map().get(id).copied(),
        }
    }

    /// Forgets the map (the frame is being reused for another install).
    #[inline]
    pub(crate) fn reset_map(data: &mut FrameData) {
        if data.map.get().is_some() {
            data.map = OnceLock::new();
        }
    }

    /// Iterates this frame and its ancestors, top first.
    pub(crate) fn chain(&self) -> impl Iterator<Item = &Frame> {
        std::iter::successors(Some(self), |f| f.data().parent.as_deref())
    }
}

thread_local! {
    /// Task hop frames of this thread whose task has ended, for the next
    /// spawn ([`Frame::hop`], [`Frame::recycle_hop`]): a spawn then
    /// allocates no frame and touches no thread record's reference count.
    /// A cache of allocations, as the state's spare install frames are;
    /// nothing in it is visible to anyone.
    static SPARE_HOPS: RefCell<Vec<Arc<Frame>>> = const { RefCell::new(Vec::new()) };
}

/// How many ended hop frames a thread keeps (more tasks than this ending
/// in a row free theirs).
const SPARE_HOPS_MAX: usize = 32;

impl Frame {
    /// A published hop frame recording `hop` on top of `parent`, made by
    /// this thread: one this thread kept from an ended task if it has one,
    /// else a new one.
    pub(crate) fn hop(parent: Arc<Frame>, hop: HopRecord) -> Arc<Frame> {
        let kept = SPARE_HOPS
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten();
        match kept {
            Some(frame) => {
                // SAFETY: a kept frame is unique (its count was one, after
                // an acquire fence, when `recycle_hop` took it) and no one
                // else can reach it: the spare list is this thread's.
                let data = unsafe { frame.data_mut() };
                // Made by another thread (a task that moved to this one
                // ended here): the hop is this thread's now.
                let here = State::try_with(|state| {
                    if !Arc::ptr_eq(&data.thread, state.thread_ref()) {
                        data.thread = state.thread_info();
                    }
                });
                if here.is_none() {
                    data.thread = Arc::new(ThreadInfo::exiting());
                }
                data.dispatch = parent.data().dispatch;
                data.parent = Some(parent);
                data.kind = FrameKind::Hop(hop);
                frame
            }
            None => {
                let thread = State::try_with(State::thread_info)
                    .unwrap_or_else(|| Arc::new(ThreadInfo::exiting()));
                Arc::new(Frame::cut(parent, FrameKind::Hop(hop), thread))
            }
        }
    }

    /// Takes back the hop frame of an ended task (a wrapped future being
    /// dropped) for this thread's next [`hop`](Frame::hop), if nothing
    /// else holds it (no snapshot taken inside the task, no frame
    /// installed on top of it); otherwise it is simply dropped.
    pub(crate) fn recycle_hop(frame: Arc<Frame>) {
        // No weak references to frames exist, so a count of one means this
        // is the only holder; the fence pairs with the release decrement of
        // the last other holder (as in `Arc`'s own drop), so its reads
        // happen before the writes below.
        if Arc::strong_count(&frame) != 1 || !matches!(frame.data().kind, FrameKind::Hop(_)) {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: unique, as said above, and no reference from `data` is
        // alive.
        let data = unsafe { frame.data_mut() };
        let parent = data.parent.take();
        // The record goes (its label and arrival are released below); the
        // placeholder is overwritten by `hop` before anyone sees it.
        let record = std::mem::replace(
            &mut data.kind,
            FrameKind::Entered {
                site: Location::caller(),
            },
        );
        let map = std::mem::take(&mut data.map);
        let refused = SPARE_HOPS
            .try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < SPARE_HOPS_MAX {
                    spare.push(frame);
                    None
                } else {
                    Some(frame)
                }
            })
            .unwrap_or(None);
        // What the frame held is released outside the borrow of the spare
        // list: the parent chain may hold values whose destructors use the
        // context (and spawn).
        drop((refused, map, record, parent));
    }
}

impl Drop for Frame {
    // Unlink the parent chain iteratively: a deep chain (a long-lived
    // recursion that installed an entry per level) must not overflow the
    // stack when its last snapshot goes away.
    fn drop(&mut self) {
        let mut next = self.0.get_mut().parent.take();
        while let Some(frame) = next {
            next = match Arc::into_inner(frame) {
                Some(mut frame) => frame.0.get_mut().parent.take(),
                None => None,
            };
        }
    }
}
