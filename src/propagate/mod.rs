//! Propagation: carrying the context across futures and threads, each
//! crossing recorded as a hop.

mod future;
pub mod thread;

#[cfg(feature = "tower")]
pub(crate) use future::{enter_frame, run_in_frame, DropInPlace, FrameEntered};
pub use future::{FutureExt, ScopeExt, WithContext};
