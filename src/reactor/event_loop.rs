//! The event loop: the [`Builder`], and the [`Reactor`] that runs one
//! tick after another (see the [module docs](super) for the order of the
//! steps), or ticks until a future completes, or moves a virtual clock.

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::driver::IoQueue;
use super::handle::Handle;
use super::readiness::Readiness;
use super::sources::SourceTable;
use super::state::ReactorState;
use super::stats::TickStats;
use super::task::JoinError;
use super::time::{Clock, Due};
use super::transport::Limits;
use crate::panic::{self, Catcher};
use crate::{Context, FutureExt};

/// Configures a [`Reactor`].
#[derive(Debug)]
pub struct Builder {
    clock: Clock,
    task_budget: usize,
    pool_size: usize,
    name: String,
    io_limits: Limits,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            clock: Clock::Real,
            task_budget: 256,
            pool_size: 4,
            name: "reactor".to_owned(),
            io_limits: Limits::default(),
        }
    }
}

impl Builder {
    /// The clock timers run on (default: the real clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// At most this many task polls per tick (default 256).
    pub fn task_budget(mut self, polls: usize) -> Self {
        self.task_budget = polls.max(1);
        self
    }

    /// Worker threads for [`Handle::defer_to_thread`] (default 4, started
    /// on first use).
    pub fn thread_pool_size(mut self, threads: usize) -> Self {
        self.pool_size = threads.max(1);
        self
    }

    /// A name for dumps, hop labels and pool thread names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Default buffer sizes and backpressure thresholds of connections
    /// (client connections, and servers whose [`Serve`](super::Serve) sets none).
    pub fn transport_limits(mut self, limits: Limits) -> Self {
        self.io_limits = limits;
        self
    }

    /// Builds the reactor. Its root context is the context current now,
    /// plus its [`Handle`].
    ///
    /// # Errors
    ///
    /// The OS error if the poller (epoll) or its waker cannot be created.
    #[track_caller]
    pub fn build(self) -> io::Result<Reactor> {
        let readiness = Readiness::new()?;
        let wakeup = Arc::clone(readiness.wakeup());
        let io = IoQueue::new(self.io_limits, Arc::clone(&wakeup));
        let state = Arc::new(ReactorState::new(
            wakeup,
            self.clock,
            io,
            self.pool_size,
            self.name,
        ));
        let handle = Handle::from_state(Arc::clone(&state));
        let root = crate::scope()
            .with(handle)
            .because("the reactor running this code")
            .run(Context::current);
        Ok(Reactor {
            sources: SourceTable::new(Arc::clone(&state)),
            state,
            readiness,
            root,
            task_budget: self.task_budget,
        })
    }
}

/// A single-threaded event reactor. See the [module docs](super) for the tick.
pub struct Reactor {
    state: Arc<ReactorState>,
    readiness: Readiness,
    root: Context,
    task_budget: usize,
    /// The I/O sources (listeners, connections): owned here, not shared.
    sources: SourceTable,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("name", &self.state.name)
            .finish_non_exhaustive()
    }
}

impl Reactor {
    /// A reactor on the real clock with default settings.
    ///
    /// # Errors
    ///
    /// See [`Builder::build`].
    #[track_caller]
    pub fn new() -> io::Result<Reactor> {
        Builder::default().build()
    }

    /// Configures a reactor.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A handle to this reactor.
    pub fn handle(&self) -> Handle {
        Handle::from_state(Arc::clone(&self.state))
    }

    /// The root context: what was current when the reactor was built, plus
    /// its [`Handle`]. Everything the reactor runs starts from here.
    pub fn context(&self) -> &Context {
        &self.root
    }

    /// Runs one iteration (see the [module docs](super) for the order),
    /// waiting at most `max_wait` in the readiness poll (`None`: until
    /// something happens).
    ///
    /// # Errors
    ///
    /// The OS error of the readiness poll. Panics in callbacks, tasks and
    /// handlers are not errors: each is caught, logged with the context
    /// dump, and counted in [`TickStats::panics`].
    pub fn tick(&mut self, max_wait: Option<Duration>) -> io::Result<TickStats> {
        let root = self.root.clone();
        root.run(|| self.tick_in_context(max_wait))
    }

    fn tick_in_context(&mut self, max_wait: Option<Duration>) -> io::Result<TickStats> {
        let mut stats = TickStats::default();

        // 1. Calls queued from other threads.
        let calls = std::mem::take(&mut *self.state.calls());
        for (call, ctx) in calls {
            stats.calls += 1;
            stats.panics += usize::from(!run_guarded("call_from_thread", &ctx, call));
        }

        // 2. Due timers, scheduled before this step began.
        let now = self.state.clock.now();
        let limit = self.state.timers().seq_limit();
        loop {
            let due = self.state.timers().pop_due(now, limit);
            let Some(due) = due else { break };
            stats.timers += 1;
            stats.panics += usize::from(!self.fire(due));
        }

        // 3. One readiness poll, as long as nothing else is waiting.
        self.state.wakeup.set_parked(true);
        let timeout = self.poll_timeout(max_wait);
        let polled = self.readiness.poll(timeout).map(|ready| ready.count());
        self.state.wakeup.set_parked(false);
        stats.events = polled?;

        // 4. I/O: registrations queued by handles, then accept / recv (and
        // connects finishing) on the ready sources.
        self.sources.transport_step(&self.readiness, &mut stats);
        // Draining (`Handle::drain`): from the tick it was asked for on.
        if self.state.drain_requested.swap(false, Ordering::SeqCst) || self.sources.is_draining() {
            self.sources.drain_step(&self.readiness, &mut stats);
        }

        // 5. Protocol dispatch: complete requests to the application.
        self.sources.dispatch_step(&self.readiness, &mut stats);

        // 6. Runnable tasks, bounded.
        let (polls, panics) = self.state.executor.run_ready(self.task_budget);
        stats.polls += polls;
        stats.panics += panics;

        // 7. Flush of buffered writes; finished connections are removed.
        self.sources.flush_step(&self.readiness, &mut stats);
        if self.sources.drained() {
            // The last server connection closed: `run` returns.
            self.state.stopping.store(true, Ordering::SeqCst);
        }
        Ok(stats)
    }

    /// Runs a due call in its scheduler's context (step 2, and `advance`)
    /// and hands its outcome to its `DelayedCall`, if that still exists;
    /// false if it panicked (logged).
    fn fire(&self, due: Due) -> bool {
        let Due {
            key,
            timer,
            keep_outcome,
        } = due;
        let ctx = timer.hop.into_context();
        let callback = timer.callback;
        let mut outcome = Err(JoinError::Panicked);
        let ran = run_guarded("timer", &ctx, || outcome = Ok(callback()));
        if keep_outcome {
            let (unclaimed, waiter) = self.state.timers().finish(key, outcome);
            // Outside the lock: a result nobody will take, and the wake.
            drop(unclaimed);
            if let Some(waiter) = waiter {
                waiter.wake();
            }
        }
        ran
    }

    /// How long the readiness poll may wait.
    fn poll_timeout(&mut self, max_wait: Option<Duration>) -> Option<Duration> {
        let busy = self.state.stopping.load(Ordering::SeqCst)
            || self.state.drain_requested.load(Ordering::SeqCst)
            || self.state.main_woken.load(Ordering::SeqCst)
            || self.state.executor.has_ready()
            || !self.state.calls().is_empty();
        if busy {
            return Some(Duration::ZERO);
        }
        let timer = self.state.timers().next_deadline();
        // Connection timeouts (read, idle, linger) wake the reactor too.
        let deadline = match (timer, self.sources.next_sweep()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let until_timer = match (&self.state.clock, deadline) {
            (_, None) => None,
            (Clock::Real, Some(when)) => Some(when.saturating_duration_since(Instant::now())),
            // Virtual time moves only by `advance`: a due virtual timer
            // means "now"; a future one is not worth a real wait.
            (Clock::Virtual(clock), Some(when)) => (when <= clock.now()).then_some(Duration::ZERO),
        };
        match (until_timer, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs ticks until [`Handle::stop`] is called.
    ///
    /// # Errors
    ///
    /// The first error of a readiness poll.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.state.stopping.swap(false, Ordering::SeqCst) {
            self.tick(None)?;
        }
        Ok(())
    }

    /// Runs ticks until `future` completes, polling it on this thread in
    /// the reactor's root context; returns its output. The future need not
    /// be `Send`.
    ///
    /// # Errors
    ///
    /// The first error of a readiness poll.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use milieu::reactor::{Handle, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let answer = reactor.run_until(async {
    ///     let handle = Handle::current().expect("inside the reactor's context");
    ///     handle.sleep(Duration::from_millis(1)).await;
    ///     handle.defer_to_thread(|| 6 * 7).await.expect("job ran")
    /// })?;
    /// assert_eq!(answer, 42);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn run_until<F: Future>(&mut self, future: F) -> io::Result<F::Output> {
        let mut future = std::pin::pin!(future.in_context(self.root.clone()));
        let waker = Waker::from(Arc::new(MainWaker {
            state: Arc::downgrade(&self.state),
        }));
        let mut cx = TaskContext::from_waker(&waker);
        self.state.main_woken.store(true, Ordering::SeqCst);
        loop {
            if self.state.main_woken.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return Ok(output);
                }
            }
            self.tick(None)?;
        }
    }

    /// Under a virtual clock: moves time forward by `delay`, firing each
    /// timer due on the way at its own scheduled time, in order (inside
    /// the callback, [`Handle::now`] is that time). Returns how many fired.
    ///
    /// Tasks woken by a timer (a [`Sleep`](super::Sleep) ending) are polled right after
    /// it, while the clock still reads its time.
    ///
    /// A zero-delay call scheduled during `advance` runs within it; the
    /// zero-delay calls *it* schedules wait for the next tick or advance,
    /// so a callback that keeps rescheduling itself cannot loop forever.
    ///
    /// # Errors
    ///
    /// [`NotVirtual`] if the reactor runs on the real clock.
    pub fn advance(&mut self, delay: Duration) -> Result<usize, NotVirtual> {
        let Clock::Virtual(clock) = self.state.clock.clone() else {
            return Err(NotVirtual);
        };
        let root = self.root.clone();
        Ok(root.run(|| {
            let target = clock.now() + delay;
            let mut fired = 0;
            // Calls at one instant: those scheduled before we reached it,
            // then one more generation (zero-delay calls they schedule).
            let mut instant: Option<Instant> = None;
            let mut limit = 0;
            let mut second_generation = false;
            loop {
                let mut timers = self.state.timers();
                let Some(when) = timers.next_deadline() else {
                    break;
                };
                if when > target {
                    break;
                }
                if instant != Some(when) {
                    instant = Some(when);
                    limit = timers.seq_limit();
                    second_generation = false;
                }
                let due = match timers.pop_due(when, limit) {
                    Some(due) => due,
                    None if !second_generation => {
                        second_generation = true;
                        limit = timers.seq_limit();
                        continue;
                    }
                    None => {
                        tracing::warn!(
                            target: "milieu::reactor",
                            "advance: zero-delay calls keep rescheduling at one instant; \
                             the rest wait for the next tick"
                        );
                        break;
                    }
                };
                drop(timers);
                clock.set(when);
                fired += 1;
                self.fire(due);
                // Tasks the timer woke (a `sleep` ending) resume at its time.
                self.state.executor.run_ready(self.task_budget);
            }
            clock.set(target);
            fired
        }))
    }

    /// Number of pending timers.
    pub fn pending_timers(&self) -> usize {
        self.state.timers().len()
    }

    /// Number of open connections (server and client) in this reactor.
    pub fn connections(&self) -> usize {
        self.sources.connections()
    }

    /// Whether the last tick left nothing to do without a new event: no
    /// I/O queued by handles and no source to try again (test support
    /// uses it to know a pump is over).
    #[cfg(feature = "test-util")]
    pub(crate) fn io_idle(&self) -> bool {
        self.sources.is_idle()
    }

    /// Number of live tasks.
    pub fn tasks(&self) -> usize {
        self.state.executor.len()
    }
}

impl Drop for Reactor {
    // Tasks, timers and queued calls often hold a `Handle`, which holds the
    // shared state that holds them: a cycle. Dropping the reactor breaks it
    // by dropping the pending work (outside the lock: destructors may use
    // a handle), so the state and its thread pool go away too.
    fn drop(&mut self) {
        self.state.executor.clear();
        let (timers, outcomes, waiters) = self.state.timers().drain();
        drop((timers, outcomes));
        // Whoever awaits a `DelayedCall` learns it will never run.
        for waiter in waiters {
            waiter.wake();
        }
        let calls = std::mem::take(&mut *self.state.calls());
        drop(calls);
    }
}

/// [`Reactor::advance`] needs a reactor built on a [`VirtualClock`](super::VirtualClock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotVirtual;

impl fmt::Display for NotVirtual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "advance needs a reactor on a virtual clock (Builder::clock(Clock::Virtual(..)))",
        )
    }
}

impl std::error::Error for NotVirtual {}

/// Wakes `run_until`'s future.
struct MainWaker {
    state: Weak<ReactorState>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(state) = self.state.upgrade() {
            state.main_woken.store(true, Ordering::SeqCst);
            state.wakeup.unpark();
        }
    }
}

/// Runs a callback in `ctx`, catching a panic (logged with the context
/// dump); false if it panicked.
fn run_guarded(kind: &str, ctx: &Context, f: impl FnOnce()) -> bool {
    ctx.run(|| match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(panic) => {
            panic::log(Catcher::Reactor, kind, &*panic);
            false
        }
    })
}
