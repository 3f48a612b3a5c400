//! One installed value and the record of where it came from.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::remote::RemoteOrigin;

/// Whether an entry travels with snapshots of the context.
///
/// Every scheduling point milieu offers (a spawned thread, a wrapped future,
/// a stage, a transaction) carries a snapshot of the context. `Inherited`
/// entries ride along; `Local` entries stay on the thread that installed
/// them, and dumps taken past the hop say where they were left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Policy {
    /// Carried by every snapshot (the default).
    Inherited,
    /// Visible only on the installing thread, within its scope; never carried.
    /// Local values need not be `Send` or `Sync`.
    Local,
}

/// Formats a type-erased value with the `Debug` of its concrete type.
pub(crate) type DebugFn = fn(&dyn Any, &mut fmt::Formatter<'_>) -> fmt::Result;

/// A [`DebugFn`] for `T`, stored when the installer opted in to showing the
/// value in dumps.
pub(crate) fn debug_fn<T: fmt::Debug + 'static>() -> DebugFn {
    |value, f| match value.downcast_ref::<T>() {
        Some(v) => fmt::Debug::fmt(v, f),
        None => f.write_str("<value of unexpected type>"),
    }
}

/// Where an entry's value lives.
pub(crate) enum Value {
    /// Shared with every thread that carries the context.
    Shared(Arc<dyn Any + Send + Sync>),
    /// Kept in the installing thread's local table under this sequence
    /// number, so the (shareable) frame never holds a `!Send` value.
    Local,
    /// A local entry whose (`Send + Sync`) value its frame holds: the
    /// tower layer's request frame, which only its request ever makes
    /// current. Lookups find it only while that frame is the entered
    /// one (`State::find_in_base`); maps, snapshots entered again and
    /// hops leave it out, as they leave out every local entry. It spares
    /// the request an install of its `RequestInfo` around every poll.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    FrameLocal(Arc<dyn Any + Send + Sync>),
}

/// An installed value with its provenance. Immutable once its frame is
/// published (handed out in a snapshot).
pub(crate) struct Entry {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    pub(crate) value: Value,
    /// Install site (the caller of `provide` / `Scope::with`).
    pub(crate) site: &'static Location<'static>,
    /// Per-thread sequence number; with the frame's thread it is unique.
    pub(crate) seq: u64,
    pub(crate) reason: Option<Cow<'static, str>>,
    pub(crate) debug: Option<DebugFn>,
    /// What another process said about the entry, when it arrived from one.
    pub(crate) origin: Option<Arc<RemoteOrigin>>,
    /// Bookkeeping of the installing thread only: what the thread's type
    /// index held for this type before this entry was installed, put back
    /// when it is removed. Never read on any other thread.
    pub(crate) shadowed: Shadowed,
}

/// What an entry's install replaced in the thread's type index, and where:
/// a [`LiveRef`] with the index slot's position in its padding, so the
/// position costs the entry no room and removal writes the slot back
/// without probing. (The entry is 136 bytes: 128 until `Value` gained its
/// third variant, `FrameLocal`, whose payload leaves no niche for the tag.)
#[derive(Clone, Copy)]
pub(crate) struct Shadowed {
    pub(crate) value: *const (),
    pub(crate) entry: *const Entry,
    pub(crate) height: u32,
    /// The position of the type's slot in the index when the entry was
    /// installed (see `TypeIndex::restore`).
    pub(crate) index_at: u32,
}

impl Shadowed {
    /// What an entry of a frame that is never installed shadows: nothing.
    #[cfg(feature = "tower")]
    pub(crate) const NONE: Shadowed = Shadowed {
        value: std::ptr::null(),
        entry: std::ptr::null(),
        height: 0,
        index_at: 0,
    };
}

/// Where the value a lookup of one type finds lives on the installing
/// thread: the thread's type index maps each `TypeId` to one of these.
///
/// Plain addresses, valid while the install that made them is on the
/// thread's stack (its frame and local values own what they point to).
#[derive(Clone, Copy)]
pub(crate) struct LiveRef {
    /// The value inside its `Arc` allocation (shared or local); null when
    /// no install of the type is live.
    pub(crate) value: *const (),
    /// The entry, for dumps and for putting the shadowed one back.
    pub(crate) entry: *const Entry,
    /// Stack position of the install plus one, 0 when none is live:
    /// lookups use the install if this is above the floor (the position
    /// above the last entered snapshot), which also rules out "none"
    /// without testing `value` (one comparison on every lookup).
    pub(crate) height: u32,
}

impl LiveRef {
    /// No live install.
    pub(crate) const NONE: LiveRef = LiveRef {
        value: std::ptr::null(),
        entry: std::ptr::null(),
        height: 0,
    };
}

impl Entry {
    /// Address of the value inside its `Arc` (null for a local entry,
    /// whose value is held by the installing thread, not the frame).
    pub(crate) fn shared_ptr(&self) -> *const () {
        match &self.value {
            Value::Shared(v) => Arc::as_ptr(v).cast::<()>(),
            Value::Local | Value::FrameLocal(_) => std::ptr::null(),
        }
    }

    /// Address of a [`Value::FrameLocal`]'s value, null for any other
    /// entry.
    pub(crate) fn frame_local_ptr(&self) -> *const () {
        match &self.value {
            Value::FrameLocal(v) => Arc::as_ptr(v).cast::<()>(),
            _ => std::ptr::null(),
        }
    }

    pub(crate) fn policy(&self) -> Policy {
        match self.value {
            Value::Shared(_) => Policy::Inherited,
            Value::Local | Value::FrameLocal(_) => Policy::Local,
        }
    }
}

/// An entry waiting in a [`Scope`](super::Scope) to be installed.
pub(crate) struct Pending {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    pub(crate) value: PendingValue,
    pub(crate) site: &'static Location<'static>,
    pub(crate) reason: Option<Cow<'static, str>>,
    pub(crate) debug: Option<DebugFn>,
    pub(crate) origin: Option<Arc<RemoteOrigin>>,
}

pub(crate) enum PendingValue {
    Shared(Arc<dyn Any + Send + Sync>),
    Local(Arc<dyn Any>),
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("type", &self.type_name)
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}
