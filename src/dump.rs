//! What a dump holds: the context at one moment, every entry with its
//! provenance, as plain data to read, print or serialise.
//!
//! You rarely name these types to *use* the context; they are what you get
//! back when you ask what the context holds and how it got there:
//!
//! - [`milieu::dump()`](crate::dump()) and [`Context::dump`](crate::Context::dump)
//!   return a [`Dump`]; every [`Missing`](crate::Missing) carries one as
//!   [`present`](crate::Missing::present), every
//!   [`VerifyReport`](crate::VerifyReport) too.
//! - A [`Dump`] is a list of frames, top first ([`FrameDump`]): entries
//!   installed together, a [hop](HopDump) that carried the context (to a
//!   [thread, task, stage or process](HopKind)), or a snapshot entered again.
//! - Each entry ([`EntryDump`]) has its type name, its [`Policy`] (inherited
//!   or local), its [`EntryStatus`] (visible, shadowed, or left behind by a
//!   hop) and its [`Provenance`]: the install [`Site`], the installing
//!   thread ([`ThreadInfo`]), the reason given with `because`, and the hops
//!   that carried it here, and for an entry received from another process
//!   its [`RemoteOrigin`]: the caller's install site and service, and the
//!   [`ProcessHop`] that brought it (with what [arrived](ArrivedMember) and
//!   what was [declined](DeclinedMember)).
//! - A [`Missing`](crate::Missing) report adds the entries that are probably
//!   what was meant ([`NearMiss`], [`NearMissKind`]) and, for a
//!   `#[requires]` check, where the requirement was [`Declared`].
//!
//! A `Dump` displays as a readable tree, serialises to JSON with the `serde`
//! feature ([`Dump::to_json`]), and can be [emitted](Dump::emit) as a
//! `tracing` event. The structs are `#[non_exhaustive]`: read their fields,
//! match with `..`.
//!
//! # Examples
//!
//! Where did this value come from?
//!
//! ```
//! use milieu::dump::{EntryStatus, HopKind, Policy};
//!
//! struct Db;
//!
//! let _db = milieu::scope().with(Db).because("one pool per service").enter();
//! let dump = milieu::thread::spawn(milieu::dump).join().unwrap();
//!
//! let db = dump.entries().next().unwrap();
//! assert!(db.type_name.ends_with("Db"));
//! assert_eq!(db.policy, Policy::Inherited);
//! assert_eq!(db.status, EntryStatus::Visible);
//! assert_eq!(db.provenance.reason.as_deref(), Some("one pool per service"));
//! assert_eq!(db.provenance.site.file, file!());
//! // It reached the spawned thread by one thread hop.
//! assert_eq!(db.provenance.hops.len(), 1);
//! assert_eq!(db.provenance.hops[0].kind, HopKind::Thread);
//!
//! // The same data as text, for a log line or a debug page.
//! println!("{dump}");
//! ```
//!
//! What was there instead?
//!
//! ```
//! use std::sync::Arc;
//! use milieu::dump::NearMissKind;
//!
//! struct Clock;
//!
//! let _clock = milieu::provide(Arc::new(Clock)); // keyed by `Arc<Clock>`
//! let err = milieu::get::<Clock>().err().expect("no `Clock`, only an `Arc<Clock>`");
//! assert_eq!(err.near_misses()[0].kind, NearMissKind::Wrapper);
//! assert_eq!(err.present().visible().count(), 1);
//! ```

pub use crate::context::{
    ArrivedMember, Declared, DeclinedMember, Dump, EntryDump, EntryStatus, FrameDump, HopDump,
    HopKind, NearMiss, NearMissKind, Policy, ProcessHop, Provenance, RemoteOrigin, Site,
    ThreadInfo,
};
