//! The event reactor: layered readiness -> transport -> protocol ->
//! application, a defined tick, and futures at the centre.
//!
//! # The tick
//!
//! [`Reactor::tick`] runs exactly one iteration, always in this order:
//!
//! 1. **calls** queued from other threads ([`Handle::call_from_thread`]);
//! 2. **due timers** ([`Handle::call_later`], [`Handle::sleep`]): those due
//!    now that were scheduled before this step began (a zero-delay call
//!    scheduled by a timer runs next tick, so a tick always ends);
//! 3. **one readiness poll**, waiting until the next timer is due, work is
//!    queued, another thread wakes the reactor, or `max_wait` passes;
//! 4. **I/O** on the ready sources (the transport layer);
//! 5. **protocol dispatch**: complete requests to the application;
//! 6. **runnable tasks**, at most [`Builder::task_budget`] polls, so one busy
//!    task cannot starve I/O;
//! 7. **flush** of buffered writes.
//!
//! [`Reactor::run`] is a loop of ticks until [`Handle::stop`];
//! [`Reactor::run_until`] ticks until a future completes.
//!
//! # No global reactor
//!
//! A reactor installs its [`Handle`] in the root context of everything it
//! runs; code finds "the current reactor" with [`Handle::current`] (a
//! context lookup). Several reactors in one process, one per thread, are
//! ordinary, and a test installs a reactor on a virtual clock the same way.

//!
//! # Layout
//!
//! One file per layer or type, each importing only those below it (check
//! with `python3 tools/import_cycles.py src/reactor`; see docs/design.md):
//!
//! | file | what |
//! |---|---|
//! | `readiness` | one epoll call per tick; the waker |
//! | `time`, `task`, `threads` | clock and timers; the executor; the pool |
//! | `state` | what a reactor shares with its handles |
//! | `info`, `stream`, `memory` | connection ids; TCP (and memory) stream I/O |
//! | `transport`, `protocol` | buffers and backpressure; bytes to requests |
//! | `budget` | a server's connections and buffered input, shared |
//! | `driver` | the contract between the source table and a connection |
//! | `listener`, `application`, `connection` | accepting; serving; clients |
//! | `sources` | the source table and tick steps 4, 5 and 7 |
//! | `delayed`, `handle` | delayed calls and sleeps; the [`Handle`] |
//! | `event_loop`, `cores` | [`Builder`] and [`Reactor`]; a reactor per core |
//! | `testing` | test support, feature `test-util` |
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use milieu::reactor::{serve, Handle, LineProtocol, Reactor};
//!
//! let mut reactor = Reactor::new()?;
//! let handle = reactor.handle();
//! let listener = handle.listen_tcp("127.0.0.1:0", || {
//!     serve(LineProtocol::new(), |line: String| line.to_uppercase())
//! })?;
//! let reply = reactor.run_until(async move {
//!     let conn = handle.connect_tcp(listener.local_addr()).await?;
//!     conn.write_line("hello")?;
//!     // Code deep inside finds the reactor in the context.
//!     let reactor = Handle::current().expect("in the reactor's context");
//!     let line = reactor.timeout(Duration::from_secs(5), conn.read_line()).await;
//!     line.map_err(std::io::Error::other)?
//! })?;
//! assert_eq!(reply?.as_deref(), Some("HELLO"));
//! # Ok::<(), std::io::Error>(())
//! ```

mod application;
mod budget;
mod connection;
mod cores;
mod delayed;
mod driver;
mod event_loop;
mod handle;
mod info;
mod listener;
#[cfg(feature = "test-util")]
mod memory;
mod open_files;
mod protocol;
mod readiness;
mod sources;
mod state;
mod stats;
mod stream;
mod task;
#[cfg(feature = "test-util")]
pub mod testing;
mod threads;
mod time;
mod transport;

#[cfg(feature = "http")]
pub(crate) use application::{poll_first, serve_polled};
pub use application::{serve, Deferred, Handler, Immediate, Reply, Replying, Serve};
pub use budget::ServerBudget;
pub use connection::{Connect, Connection, Wait};
pub use cores::{run_on_threads, CoreId, Cores};
pub use delayed::{DelayedCall, Elapsed, Sleep, Timeout};
pub use event_loop::{Builder, NotVirtual, Reactor};
pub use handle::Handle;
pub use info::{ConnectionId, ConnectionInfo};
pub use listener::{Listener, SharedPort};
pub use open_files::OpenFilesLimit;
pub use protocol::{LineError, LineProtocol, Protocol, Requests};
pub use stats::TickStats;
pub use task::{JoinError, JoinHandle};
pub use time::{Clock, VirtualClock};
pub use transport::{CloseReason, Limits, TransportEvent};
