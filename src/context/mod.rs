//! The context core: typed frames, lookup, snapshots, provenance, dumps and
//! errors.
//!
//! A thread's current context is a stack of installs and entered
//! snapshots ([`state`]) with a type index that lookups probe. Installs
//! write into recycled frames ([`frame`]) in constant time; a snapshot
//! publishes those frames (immutable from then on, shareable across
//! threads) and is a pointer copy of the top one. A published frame builds
//! a flattened map ([`map`]) when something first looks up through it.

mod dump;
mod entry;
mod frame;
mod index;
mod install;
mod lookup;
mod map;
mod missing;
mod monitor;
mod remote;
mod snapshot;
mod state;

pub use dump::{dump, Dump, EntryDump, EntryStatus, FrameDump, HopDump, Provenance, Site};
pub use entry::Policy;
pub use frame::{HopKind, ThreadInfo};
pub use install::{provide, provide_arc, provide_local, scope, Guard, Scope};
pub use lookup::{contains, get, with};
pub use missing::{Declared, Missing, NearMiss, NearMissKind};
pub use monitor::provide_subscriber;
pub use remote::{ArrivedMember, DeclinedMember, ProcessHop, RemoteOrigin};
pub use snapshot::Context;
// Hop records made by the scheduling points of the layers above (timers,
// stages): unused in a context-only build.
#[cfg_attr(
    not(any(feature = "reactor", feature = "stage", feature = "tokio")),
    allow(unused_imports)
)]
pub(crate) use frame::HopLabel;
#[cfg(feature = "reactor")]
pub(crate) use snapshot::PendingHop;

pub(crate) use frame::Frame;
#[cfg(feature = "http")]
pub(crate) use install::provide_local_lent;
#[cfg(feature = "tower")]
pub(crate) use install::request_frame;
#[cfg(any(feature = "http", feature = "tower"))]
pub(crate) use install::scope_with_capacity;
pub(crate) use install::{misuse, out_of_order_report, reporting_misuse_as_errors};
pub(crate) use lookup::contains_id;
#[cfg(feature = "remote")]
pub(crate) use lookup::origin_of;
#[cfg(feature = "tower")]
pub(crate) use state::Kept;
pub(crate) use state::State;
#[cfg(feature = "tower")]
pub(crate) use state::{FrameLocal, RequestEntries};
