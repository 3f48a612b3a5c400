//! Propagation: carrying the context across futures and threads, each
//! crossing recorded as a hop.

mod future;
pub mod thread;

#[cfg(feature = "tower")]
pub(crate) use future::{run_in_frame, DropInPlace};
pub use future::{FutureExt, ScopeExt, WithContext};
