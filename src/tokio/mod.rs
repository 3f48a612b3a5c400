//! tokio integration (feature `tokio`): tasks, blocking work and
//! `JoinSet`s that run inside the spawner's context, and a runtime whose
//! threads start in a root context.
//!
//! tokio knows nothing of milieu: a bare `tokio::spawn` runs its future on
//! whatever worker thread polls it, in whatever context that thread has
//! (normally none). The functions here are drop-ins that capture
//! [`Context::current`](crate::Context::current) at the call, record a hop
//! at the caller's file and line, and make that snapshot current on every
//! poll (or around the blocking closure):
//!
//! | tokio | milieu | hop |
//! | --- | --- | --- |
//! | `tokio::spawn` | [`spawn`] | task |
//! | `tokio::task::spawn_local` | [`spawn_local`] | task |
//! | `tokio::task::spawn_blocking` | [`spawn_blocking`] | thread, labelled `spawn_blocking` |
//! | `Handle::spawn` | [`spawn_on`] | task |
//! | `Handle::spawn_blocking` | [`spawn_blocking_on`] | thread, labelled `spawn_blocking` |
//! | `tokio::task::JoinSet` | [`JoinSet`] | as above, per method |
//!
//! The root context of a service (its database, configuration, log
//! monitor) is installed once with [`Runtime`]: every thread the runtime
//! starts enters it, and [`Runtime::block_on`] enters it on the calling
//! thread. Tasks spawned with the functions above carry it on like any
//! other entry; a bare `tokio::spawn` inside such a runtime sees the root
//! context (and nothing of its spawner).
//!
//! Timers, I/O and cancellation behave exactly as in tokio: the wrapper
//! only enters and leaves the snapshot around each poll of the future
//! ([`WithContext`](crate::WithContext)), at the cost of two pointer moves.
//!
//! # Examples
//!
//! ```
//! use milieu::dump::HopKind;
//!
//! struct RequestId(u64);
//!
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
//! let task = milieu::scope().with(RequestId(7)).run(|| {
//!     milieu::tokio::spawn(async {
//!         tokio::task::yield_now().await;
//!         // Still there after the `.await`, on whichever worker polls it.
//!         let hop = milieu::dump().hops().next().cloned().unwrap();
//!         (milieu::get::<RequestId>().unwrap().0, hop.kind)
//!     })
//! });
//! assert_eq!(task.await.unwrap(), (7, HopKind::Task));
//! # });
//! ```

mod join_set;
mod runtime;
mod spawn;

pub use join_set::JoinSet;
pub use runtime::Runtime;
pub use spawn::{spawn, spawn_blocking, spawn_blocking_on, spawn_local, spawn_on};
