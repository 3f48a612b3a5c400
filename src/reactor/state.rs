//! The state a reactor shares with its handles, on any thread: the clock,
//! timers, calls queued from other threads, the task executor, the queue of
//! I/O requests, the stop flag and the thread pool.
//!
//! It knows nothing of the tick: the [`Reactor`](super::Reactor) drives it,
//! [`Handle`](super::Handle)s feed it.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use super::driver::IoQueue;
use super::readiness::Wakeup;
use super::task::Executor;
use super::threads::Pool;
use super::time::{Clock, Timers};
use crate::Context;

/// A call queued by [`Handle::call_from_thread`](super::Handle::call_from_thread),
/// with the context it runs in.
pub(crate) type QueuedCall = (Box<dyn FnOnce() + Send>, Context);

/// State shared by the reactor and its handles.
pub(crate) struct ReactorState {
    pub(crate) wakeup: Arc<Wakeup>,
    pub(crate) clock: Clock,
    timers: Mutex<Timers>,
    calls: Mutex<VecDeque<QueuedCall>>,
    pub(crate) executor: Arc<Executor>,
    /// Requests from handles to the reactor's I/O sources.
    pub(crate) io: Arc<IoQueue>,
    pub(crate) stopping: AtomicBool,
    /// [`Handle::drain`](super::Handle::drain) was called; the reactor
    /// starts draining at its next tick.
    pub(crate) drain_requested: AtomicBool,
    /// The future of `run_until` was woken.
    pub(crate) main_woken: AtomicBool,
    pool: OnceLock<Pool>,
    pool_size: usize,
    pub(crate) name: String,
}

impl ReactorState {
    pub(crate) fn new(
        wakeup: Arc<Wakeup>,
        clock: Clock,
        io: IoQueue,
        pool_size: usize,
        name: String,
    ) -> ReactorState {
        ReactorState {
            executor: Arc::new(Executor::new(Arc::clone(&wakeup))),
            wakeup,
            clock,
            timers: Mutex::new(Timers::default()),
            calls: Mutex::new(VecDeque::new()),
            io: Arc::new(io),
            stopping: AtomicBool::new(false),
            drain_requested: AtomicBool::new(false),
            main_woken: AtomicBool::new(false),
            pool: OnceLock::new(),
            pool_size,
            name,
        }
    }

    pub(crate) fn timers(&self) -> MutexGuard<'_, Timers> {
        // A panic never happens while the lock is held (callbacks run
        // outside it), so a poisoned lock still holds consistent data.
        self.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn calls(&self) -> MutexGuard<'_, VecDeque<QueuedCall>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread pool of `defer_to_thread`, started on first use.
    pub(crate) fn pool(&self) -> io::Result<&Pool> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        let pool = Pool::new(self.pool_size, &format!("{}-pool", self.name))?;
        Ok(self.pool.get_or_init(|| pool))
    }
}
