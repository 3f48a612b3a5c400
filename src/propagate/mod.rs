//! Propagation: carrying the context across futures and threads, each
//! crossing recorded as a hop.

mod future;
pub mod thread;

pub use future::{FutureExt, ScopeExt, WithContext};
