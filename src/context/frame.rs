//! Frames: the immutable, shared links of a context.
//!
//! A context is a pointer to its top frame. A frame either installs entries
//! (`provide`, `Scope`), records a hop (the context was carried to a task,
//! thread, stage or process), or marks that a snapshot was entered again on
//! the thread that took it. Frames never change after creation, so a
//! snapshot is an `Arc` clone and can be shared across threads.

use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::sync::{Arc, OnceLock};

use super::entry::Entry;
use super::map::EntryMap;

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
    pub(crate) arrived: OnceLock<Arc<ThreadInfo>>,
}

pub(crate) enum FrameKind {
    /// Entries installed by `provide` or a `Scope`, in installation order.
    Installed {
        site: &'static Location<'static>,
        entries: Vec<Arc<Entry>>,
    },
    /// The context was carried across a hop; local entries stay behind.
    Hop(HopRecord),
    /// A snapshot was entered again on some thread: local entries below
    /// were not carried into it.
    Entered { site: &'static Location<'static> },
}

pub(crate) struct Frame {
    pub(crate) parent: Option<Arc<Frame>>,
    pub(crate) kind: FrameKind,
    /// The thread that created the frame (installer or capturer).
    pub(crate) thread: Arc<ThreadInfo>,
    /// Every entry visible from this frame, flattened for O(1) lookup.
    pub(crate) visible: EntryMap,
    /// The visible entries a snapshot carries (local ones removed). The same
    /// table as `visible` when no local entry is visible.
    pub(crate) carried: EntryMap,
    /// Address of the visible `tracing::Dispatch` entry, 0 if none: compared
    /// on every switch of the current frame to keep tracing's default in step.
    pub(crate) dispatch: usize,
}

impl Frame {
    pub(crate) fn new(
        parent: Option<Arc<Frame>>,
        kind: FrameKind,
        thread: Arc<ThreadInfo>,
        visible: EntryMap,
        carried: EntryMap,
    ) -> Self {
        let dispatch = visible
            .get(TypeId::of::<tracing::Dispatch>())
            .map_or(0, |e| Arc::as_ptr(e) as usize);
        Frame {
            parent,
            kind,
            thread,
            visible,
            carried,
            dispatch,
        }
    }

    /// Whether some visible entry is local (so snapshots must drop it).
    pub(crate) fn has_local_entries(&self) -> bool {
        !self.visible.same(&self.carried)
    }

    /// Iterates this frame and its ancestors, top first.
    pub(crate) fn chain(&self) -> impl Iterator<Item = &Frame> {
        std::iter::successors(Some(self), |f| f.parent.as_deref())
    }
}

impl Drop for Frame {
    // Unlink the parent chain iteratively: a deep chain (a long-lived
    // recursion that installed an entry per level) must not overflow the
    // stack when its last snapshot goes away.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(frame) = next {
            next = match Arc::into_inner(frame) {
                Some(mut frame) => frame.parent.take(),
                None => None,
            };
        }
    }
}
