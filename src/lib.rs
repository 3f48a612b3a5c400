//! Explicit, typed, scoped execution context with provenance.
//!
//! milieu replaces global singletons ("the current database", "the current
//! request", "the log monitor") with a context that code installs for a
//! scope and reads by type. Every entry records where it was installed
//! and every hop that carried it (threads, tasks), so a missing value
//! explains itself instead of panicking anonymously.
//!
//! # Examples
//!
//! ```
//! use milieu::FutureExt;
//!
//! #[derive(Debug)]
//! struct Db(&'static str);
//! struct RequestId(u64);
//!
//! fn handler() -> Result<String, milieu::Missing> {
//!     // Deep inside: no parameters threaded through the layers above.
//!     let db = milieu::get::<Db>()?;
//!     let id = milieu::with(|r: &RequestId| r.0)?;
//!     Ok(format!("request {id} on {}", db.0))
//! }
//!
//! let _db = milieu::scope().with_debug(Db("orders")).because("service pool").enter();
//! let _req = milieu::provide(RequestId(7));
//!
//! // Threads and futures inherit the context.
//! let from_thread = milieu::thread::spawn(handler).join().unwrap()?;
//! let from_task = futures::executor::block_on(async { handler() }.in_current_context())?;
//! assert_eq!(from_thread, from_task);
//!
//! // A missing value names what was asked, where, and everything present.
//! struct Clock;
//! let err = milieu::get::<Clock>().err().expect("nobody installed a Clock");
//! assert!(err.to_string().contains("Clock"));
//! # Ok::<(), milieu::Missing>(())
//! ```
//!
//! The guide (docs/guide.md) introduces the concepts in order; the design
//! notes (docs/design.md) explain the storage and its measurements.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![doc(test(attr(deny(warnings))))]

mod context;
mod declare;
pub mod http;
mod panic;
mod propagate;
pub mod reactor;
pub mod stage;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod txn;

pub use context::{
    contains, dump, get, provide, provide_arc, provide_local, provide_subscriber, scope, with,
    Context, Declared, Dump, EntryDump, EntryStatus, FrameDump, Guard, HopDump, HopKind, Missing,
    NearMiss, NearMissKind, Policy, Provenance, Scope, Site, ThreadInfo,
};
#[doc(hidden)]
pub use declare::__private;
pub use declare::{verify, Requirement, Requirements, VerifyReport};
pub use milieu_macros::requires;
pub use propagate::{thread, FutureExt, WithContext};

// The README's quick start is compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
