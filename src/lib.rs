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
//! # Contents
//!
//! - **The context**, at the crate root: install with [`provide`],
//!   [`provide_arc`], [`provide_local`], [`provide_subscriber`] or a
//!   [`scope`] (guard form: a [`Guard`]; closure form: [`Scope::run`]); read
//!   with [`get`], [`with`], [`contains`]. A [`Context`] is a snapshot to
//!   carry elsewhere; [`Missing`] is the error of a lookup that finds
//!   nothing.
//! - **Propagation**: [`thread`] spawns threads inside the context;
//!   [`FutureExt`] and [`ScopeExt`] carry it into futures ([`WithContext`]);
//!   `milieu::tokio` (feature `tokio`) spawns tokio tasks inside it.
//! - **Provenance**: [`dump()`] the context, and read the result with the
//!   types of the [`dump`](mod@dump) module.
//! - **Declared requirements**: [`#[requires]`](requires) on a function,
//!   checked up front with [`verify`] and its [`Requirements`].
//! - **Layers built on the context**: [`reactor`], [`stage`], [`http`], and
//!   `txn` (feature `sqlite`).
//! - **Context across processes**: [`remote`], the W3C Trace Context and
//!   Baggage headers, and the explicit list of what crosses.
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

// The layers, bottom to top. Each names only those below it, and the
// build holds it to that: every layer above the context is behind a
// feature (Cargo.toml), so a lower layer that named a higher one would not
// compile on its own (`.ci/run` builds each feature alone).
mod context;
mod declare;
pub mod dump;
mod propagate;

#[cfg(any(feature = "reactor", feature = "stage"))]
mod panic;

#[cfg(feature = "tokio")]
pub mod tokio;

#[cfg(feature = "reactor")]
pub mod reactor;

#[cfg(feature = "stage")]
pub mod stage;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod txn;

#[cfg(feature = "remote")]
pub mod remote;

#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "http")]
pub mod http;

pub use context::{
    contains, dump, get, provide, provide_arc, provide_local, provide_subscriber, scope, with,
    Context, Guard, Missing, Scope,
};
#[doc(hidden)]
pub use declare::__private;
pub use declare::{
    verify, verify_routes, Requirement, Requirements, Route, RouteFailure, RoutesReport,
    VerifyReport,
};
pub use milieu_macros::requires;
pub use propagate::{thread, FutureExt, ScopeExt, WithContext};

// The README's quick start is compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
