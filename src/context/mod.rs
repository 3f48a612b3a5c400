//! The context core: typed frames, lookup, snapshots, provenance, dumps and
//! errors.
//!
//! A thread's current context is a pointer to an immutable [`Frame`](frame)
//! kept in a thread-local stack ([`state`]). Installing entries pushes a new
//! frame whose flattened map holds every visible entry; lookups probe that
//! one map. Snapshots are pointer copies of the top frame.

mod dump;
mod entry;
mod frame;
mod install;
mod lookup;
mod map;
mod missing;
mod monitor;
mod snapshot;
mod state;

pub use dump::{dump, Dump, EntryDump, EntryStatus, FrameDump, HopDump, Provenance, Site};
pub use entry::Policy;
pub use frame::{HopKind, ThreadInfo};
pub use install::{provide, provide_arc, provide_local, scope, Guard, Scope};
pub use lookup::{contains, get, with};
pub use missing::{Declared, Missing, NearMiss, NearMissKind};
pub use monitor::provide_subscriber;
pub use snapshot::Context;
// Hop records made by the scheduling points of the layers above (timers,
// stages): unused in a context-only build.
#[cfg_attr(
    not(any(feature = "reactor", feature = "stage")),
    allow(unused_imports)
)]
pub(crate) use frame::HopLabel;
#[cfg_attr(not(feature = "reactor"), allow(unused_imports))]
pub(crate) use snapshot::PendingHop;

pub(crate) use frame::Frame;
pub(crate) use install::{misuse, out_of_order_report};
pub(crate) use lookup::contains_id;
pub(crate) use state::{Popped, State};
