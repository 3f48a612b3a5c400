//! The driver contract: how the source table drives a connection (the
//! [`Driver`] trait and the [`DriverCx`] each call gets), how a server
//! connection is made ([`start_server_connection`]), and the [`IoQueue`]
//! through which handles and tasks on any thread ask the table for new
//! sources and for another look at existing ones.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use mio::Token;

use super::info::ConnectionInfo;
use super::readiness::{Ready, Wakeup, WAKER};
use super::stats::TickStats;
use super::stream::StreamIo;
use super::task::Executor;
use super::time::Clock;
use super::transport::{CloseReason, Limits};
use crate::panic::{self, Catcher};
use crate::Context;

/// What the tick hands a connection for one call.
pub(crate) struct DriverCx<'a> {
    /// Where a connection's code spawns tasks (async handlers).
    pub(crate) executor: &'a Arc<Executor>,
    pub(crate) clock: &'a Clock,
    /// Where a task finishing later reports output to flush.
    pub(crate) io: &'a Arc<IoQueue>,
    pub(crate) stats: &'a mut TickStats,
    pub(crate) token: usize,
    /// Sources to try again next tick without a readiness event.
    pub(crate) retry: &'a mut Vec<usize>,
    /// The reactor's receive buffer: reads land here and only the bytes
    /// received are copied into the connection's input, so a connection's
    /// buffer is the size of its data, not of the largest possible read.
    pub(crate) scratch: &'a mut Vec<u8>,
}

/// A connection as the source table drives it: a server connection
/// (transport + protocol + application) or a client [`Connection`](super::connection::Connection).
///
/// Every call runs inside [`context`](Driver::context) and under
/// `catch_unwind`: a panic aborts the connection, never the reactor.
pub(crate) trait Driver: Send {
    /// Step 4: I/O for a ready source (receive; finish connecting).
    fn io(&mut self, ready: Ready, cx: &mut DriverCx<'_>);
    /// Step 5: decode new input and dispatch the requests.
    fn dispatch(&mut self, cx: &mut DriverCx<'_>);
    /// Step 7: send buffered output; decide whether the connection is over.
    fn flush(&mut self, cx: &mut DriverCx<'_>);
    /// The connection is over: the table removes it.
    fn finished(&self) -> bool;
    /// Ends the connection at once (its code panicked).
    fn abort(&mut self, reason: CloseReason);
    /// Called once, when it leaves the table.
    fn closed(&mut self, cx: &mut DriverCx<'_>);
    /// When [`expire`](Driver::expire) has something to do (a read or idle
    /// timeout, the end of a linger): asked after every flush, without
    /// entering the connection's context, so it must be a cheap getter.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Acts on the timeouts due at `now` (the sweep found
    /// [`deadline`](Driver::deadline) passed); the connection is flushed
    /// in the same tick.
    fn expire(&mut self, now: Instant, cx: &mut DriverCx<'_>) {
        let _ = (now, cx);
    }
    /// The reactor is draining ([`Handle::drain`](super::Handle::drain)):
    /// a server connection answers what it received and closes once it
    /// has nothing in progress, and says so with `true`, so that the
    /// reactor waits for it; the default (client connections) does
    /// nothing and answers `false`. Called once per connection; it is
    /// flushed in the same tick.
    fn drain(&mut self, cx: &mut DriverCx<'_>) -> bool {
        let _ = cx;
        false
    }
    fn stream(&mut self) -> &mut StreamIo;
    fn context(&self) -> &Context;
}

/// Builds the driver of a new server connection (calls the user's factory).
pub(crate) type MakeDriver = Box<dyn FnMut(NewConnection) -> Box<dyn Driver> + Send>;

/// [`MakeDriver`] for a single connection.
#[cfg(feature = "test-util")]
pub(crate) type MakeDriverOnce = Box<dyn FnOnce(NewConnection) -> Box<dyn Driver> + Send>;

/// What a new server connection is made of.
pub(crate) struct NewConnection {
    pub(crate) stream: StreamIo,
    pub(crate) info: ConnectionInfo,
    pub(crate) ctx: Context,
    pub(crate) limits: Limits,
}

/// A request from a handle to the reactor's source table.
pub(crate) enum TableRequest {
    Listen {
        token: usize,
        listener: mio::net::TcpListener,
        make: MakeDriver,
        ctx: Context,
    },
    /// A server connection on a ready-made stream (a memory transport).
    #[cfg(feature = "test-util")]
    Serve {
        token: usize,
        stream: StreamIo,
        make: MakeDriverOnce,
        ctx: Context,
    },
    /// A client connection (connecting, or connected already).
    Client {
        token: usize,
        driver: Box<dyn Driver>,
    },
    CloseListener(usize),
}

/// The part of the I/O layer that handles and tasks reach, from any
/// thread: requests to the source table, and lists of sources to look at
/// again (`touched`: output to flush; `ready`: I/O to try without a
/// readiness event).
pub(crate) struct IoQueue {
    queue: Mutex<QueueState>,
    wakeup: Arc<Wakeup>,
    next_token: AtomicUsize,
    /// Limits of client connections and of servers that set none.
    pub(crate) limits: Limits,
}

#[derive(Default)]
struct QueueState {
    requests: Vec<TableRequest>,
    /// Sources with output to flush (or a close to carry out).
    touched: Vec<usize>,
    /// Sources to try I/O on without a readiness event.
    ready: Vec<usize>,
    /// Between the start of step 4 and the end of step 7: what is queued
    /// now is seen without waking the reactor.
    in_tick: bool,
    /// The reactor is gone: requests are refused.
    closed: bool,
}

impl IoQueue {
    pub(crate) fn new(limits: Limits, wakeup: Arc<Wakeup>) -> IoQueue {
        IoQueue {
            wakeup,
            queue: Mutex::new(QueueState::default()),
            next_token: AtomicUsize::new(0),
            limits,
        }
    }

    fn queue(&self) -> MutexGuard<'_, QueueState> {
        // Nothing panics while the queue is locked.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh token (tokens are never reused, so a stale event cannot
    /// reach a newer source).
    pub(crate) fn token(&self) -> usize {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        debug_assert_ne!(Token(token), WAKER);
        token
    }

    /// Queues a request and wakes the reactor; gives the request back if
    /// the reactor is gone.
    pub(crate) fn request(&self, request: TableRequest) -> Result<(), TableRequest> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(request);
        }
        queue.requests.push(request);
        drop(queue);
        self.wakeup.wake();
        Ok(())
    }

    fn push(&self, token: usize, ready: bool) {
        let mut queue = self.queue();
        if queue.closed {
            return;
        }
        let was_empty = queue.touched.is_empty() && queue.ready.is_empty();
        if ready {
            queue.ready.push(token);
        } else {
            queue.touched.push(token);
        }
        let wake = was_empty && !queue.in_tick;
        drop(queue);
        if wake {
            self.wakeup.wake();
        }
    }

    /// A source has output to flush (or a close to carry out).
    pub(crate) fn touch(&self, token: usize) {
        self.push(token, false);
    }

    /// A source should try its I/O without a readiness event.
    pub(crate) fn ready(&self, token: usize) {
        self.push(token, true);
    }

    /// Start of step 4: the requests and both lists.
    pub(crate) fn begin(&self) -> (Vec<TableRequest>, Vec<usize>, Vec<usize>) {
        let mut queue = self.queue();
        queue.in_tick = true;
        (
            std::mem::take(&mut queue.requests),
            std::mem::take(&mut queue.touched),
            std::mem::take(&mut queue.ready),
        )
    }

    /// Step 7: what was touched since step 4.
    pub(crate) fn take_touched(&self) -> (Vec<usize>, Vec<usize>) {
        let mut queue = self.queue();
        (
            std::mem::take(&mut queue.touched),
            std::mem::take(&mut queue.ready),
        )
    }

    /// End of step 7. Wakes the reactor if work is waiting, so the next
    /// readiness poll does not block.
    pub(crate) fn end(&self, more: bool) {
        let mut queue = self.queue();
        queue.in_tick = false;
        let wake = more
            || !queue.touched.is_empty()
            || !queue.ready.is_empty()
            || !queue.requests.is_empty();
        drop(queue);
        if wake {
            self.wakeup.wake();
        }
    }

    #[cfg(feature = "test-util")]
    pub(crate) fn is_empty(&self) -> bool {
        let queue = self.queue();
        queue.requests.is_empty() && queue.touched.is_empty() && queue.ready.is_empty()
    }

    /// The reactor is dropped: refuse new requests, hand back the queued ones.
    pub(crate) fn close(&self) -> Vec<TableRequest> {
        let mut queue = self.queue();
        queue.closed = true;
        queue.touched.clear();
        queue.ready.clear();
        std::mem::take(&mut queue.requests)
    }
}

/// The error of a request made after the reactor was dropped.
pub(crate) fn reactor_gone() -> io::Error {
    io::Error::other("the reactor was dropped; its handle can no longer start I/O")
}

/// Makes the driver of a new server connection: the connection's context
/// (its [`ConnectionInfo`] on top of `parent`), then the user's factory in
/// it, under `catch_unwind`.
pub(crate) fn start_server_connection(
    make: impl FnOnce(NewConnection) -> Box<dyn Driver>,
    stream: StreamIo,
    info: ConnectionInfo,
    parent: &Context,
    limits: Limits,
    stats: &mut TickStats,
) -> Option<Box<dyn Driver>> {
    let ctx = parent.run(|| {
        crate::scope()
            .with_debug(info.clone())
            .because("the connection being served")
            .run(Context::current)
    });
    let new = NewConnection {
        stream,
        info,
        ctx: ctx.clone(),
        limits,
    };
    ctx.run(|| match catch_unwind(AssertUnwindSafe(|| make(new))) {
        Ok(driver) => Some(driver),
        Err(panic) => {
            // The stream was dropped with the factory's frame: closed.
            panic::log(Catcher::Reactor, "connection factory", &*panic);
            stats.panics += 1;
            None
        }
    })
}
