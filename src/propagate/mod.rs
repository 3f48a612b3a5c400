//! Propagation: carrying the context across futures and threads, each
//! crossing recorded as a hop.

mod future;
pub mod thread;

#[cfg(feature = "tower")]
pub(crate) use future::DropInPlace;
#[cfg(feature = "tower")]
pub(crate) use future::{enter_kept_frame, KeptFrameEntered};
pub use future::{FutureExt, ScopeExt, WithContext};
