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

mod application;
mod connection;
mod cores;
mod listener;
mod net;
mod protocol;
mod readiness;
mod task;
pub mod testing;
mod threads;
mod time;
mod transport;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::context::{HopKind, HopLabel, PendingHop};
use crate::panic::{self, Catcher};
use crate::{Context, FutureExt, Missing};

pub(crate) use application::poll_first;
pub use application::{serve, Deferred, Handler, Immediate, Reply, Replying, Serve};
pub use connection::{Connect, Connection, Wait};
pub use cores::{run_on_threads, CoreId, Cores, SharedPort};
pub use listener::Listener;
pub use net::{ConnectionId, ConnectionInfo};
pub use protocol::{LineError, LineProtocol, Protocol, Requests};
pub use readiness::Ready;
pub use task::{JoinError, JoinHandle};
pub use time::{Clock, VirtualClock};
pub use transport::{CloseReason, Limits, TransportEvent};

use readiness::Readiness;
use task::{BoxFuture, Task, TaskKey, TaskWaker, Tasks};
use threads::Pool;
use time::{TimerKey, Timers};

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

    /// Builds the reactor. Its root context is the context current now,
    /// plus its [`Handle`].
    ///
    /// # Errors
    ///
    /// The OS error if the poller (epoll) or its waker cannot be created.
    #[track_caller]
    pub fn build(self) -> io::Result<Reactor> {
        let readiness = Readiness::new()?;
        let shared = Arc::new(Shared {
            waker: readiness.waker(),
            clock: self.clock,
            core: Mutex::new(Core::default()),
            ready: Mutex::new(VecDeque::new()),
            parked: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            main_woken: AtomicBool::new(false),
            pool: OnceLock::new(),
            pool_size: self.pool_size,
            name: self.name,
            io: net::IoShared::new(self.io_limits),
        });
        let handle = Handle {
            shared: Arc::clone(&shared),
        };
        let root = crate::scope()
            .with(handle)
            .because("the reactor running this code")
            .run(Context::current);
        Ok(Reactor {
            io: net::Io::new(Arc::clone(&shared)),
            shared,
            readiness,
            root,
            task_budget: self.task_budget,
        })
    }
}

/// What one [`Reactor::tick`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickStats {
    /// Calls run from [`Handle::call_from_thread`].
    pub calls: usize,
    /// Timers fired.
    pub timers: usize,
    /// Ready sources reported by the readiness poll.
    pub events: usize,
    /// Task polls.
    pub polls: usize,
    /// Callbacks, tasks or handlers that panicked (each was logged).
    pub panics: usize,
    /// Connections accepted by listeners.
    pub accepted: usize,
    /// Client connections established ([`Handle::connect_tcp`]).
    pub connected: usize,
    /// Connections closed and removed (failed connects included).
    pub closed: usize,
    /// Bytes received.
    pub bytes_read: usize,
    /// Bytes sent.
    pub bytes_written: usize,
    /// Requests decoded and handed to handlers.
    pub requests: usize,
}

impl TickStats {
    /// Whether the tick did anything at all.
    pub fn is_idle(&self) -> bool {
        let io = self.accepted + self.connected + self.closed + self.requests;
        self.calls + self.timers + self.events + self.polls + io == 0
            && self.bytes_read + self.bytes_written == 0
    }
}

/// A single-threaded event reactor. See the [module docs](self) for the tick.
pub struct Reactor {
    shared: Arc<Shared>,
    readiness: Readiness,
    root: Context,
    task_budget: usize,
    /// The I/O sources (listeners, connections): owned here, not shared.
    io: net::Io,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// State shared by the reactor and its handles.
pub(crate) struct Shared {
    waker: Arc<mio::Waker>,
    clock: Clock,
    core: Mutex<Core>,
    ready: Mutex<VecDeque<TaskKey>>,
    /// Set while the reactor waits in the readiness poll.
    parked: AtomicBool,
    stopping: AtomicBool,
    /// The future of `run_until` was woken.
    main_woken: AtomicBool,
    pool: OnceLock<Pool>,
    pool_size: usize,
    name: String,
    /// Requests from handles to the I/O sources of the reactor.
    io: net::IoShared,
}

#[derive(Default)]
struct Core {
    timers: Timers,
    tasks: Tasks,
    calls: VecDeque<(Box<dyn FnOnce() + Send>, Context)>,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        // A panic never happens while the lock is held (callbacks run
        // outside it), so a poisoned lock still holds consistent data.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ready(&self) -> MutexGuard<'_, VecDeque<TaskKey>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a task and wakes the reactor if it is waiting.
    pub(crate) fn schedule(&self, key: TaskKey) {
        self.ready().push_back(key);
        self.unpark();
    }

    fn unpark(&self) {
        if self.parked.load(Ordering::SeqCst) {
            // A failed wake leaves the reactor to its own timeout: nothing
            // more useful to do with the error here.
            let _ = self.waker.wake();
        }
    }

    fn insert_task(self: &Arc<Self>, future: BoxFuture) {
        let mut core = self.core();
        let weak = Arc::downgrade(self);
        let key = core.tasks.slots.insert_with_key(|key| {
            let waker = Arc::new(TaskWaker {
                key,
                queued: AtomicBool::new(true),
                shared: weak,
            });
            Task {
                future: Some(future),
                waker,
            }
        });
        drop(core);
        self.schedule(key);
    }
}

/// A cheap, cloneable, thread-safe reference to a reactor: what code finds
/// in the context as "the current reactor".
///
/// Methods that schedule work ([`spawn`](Handle::spawn),
/// [`call_later`](Handle::call_later), [`defer_to_thread`](Handle::defer_to_thread),
/// [`call_from_thread`](Handle::call_from_thread)) capture the caller's
/// context and restore it when the work runs, recording a hop.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reactor::Handle({})", self.shared.name)
    }
}

impl Handle {
    /// The reactor running the current code, from the context.
    ///
    /// # Errors
    ///
    /// [`Missing`] outside any reactor's context (the report shows what
    /// the context holds instead).
    #[track_caller]
    pub fn current() -> Result<Handle, Missing> {
        crate::get::<Handle>().map(|h| (*h).clone())
    }

    /// The reactor's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The reactor's current time (virtual under a virtual clock).
    pub fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// Runs `future` as a task on the reactor thread, in the context
    /// current here (a task hop is recorded).
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let site = Location::caller();
        let (tx, rx) = futures_channel::oneshot::channel();
        let ctx = self.capture(HopKind::Task, "spawn", site);
        let task = crate::WithContext::new(task::run_and_send(future, tx), ctx, site);
        self.shared.insert_task(Box::pin(task));
        JoinHandle { rx }
    }

    /// Calls `f` on the reactor thread after `delay`, in the context
    /// current here. Twisted's `callLater`.
    #[track_caller]
    pub fn call_later<F: FnOnce() + Send + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        let hop = self.capture_pending(HopKind::Task, "call_later", Location::caller());
        let when = self.now() + delay;
        let key = self.shared.core().timers.insert(when, Box::new(f), hop);
        self.shared.unpark();
        DelayedCall {
            key,
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// A future that completes after `delay`: `call_later` as a future
    /// (Twisted's `deferLater`).
    pub fn sleep(&self, delay: Duration) -> Sleep {
        Sleep {
            handle: self.clone(),
            when: self.now() + delay,
            state: None,
        }
    }

    /// Runs `future` with a deadline: `Err(Elapsed)` if `delay` passes
    /// first (the future is dropped then).
    pub fn timeout<F: Future>(&self, delay: Duration, future: F) -> Timeout<F> {
        Timeout {
            future: Box::pin(future),
            sleep: self.sleep(delay),
        }
    }

    /// Runs `f` on the reactor thread at the start of its next tick: the
    /// one thread-safe entry into a reactor. Wakes the reactor.
    #[track_caller]
    pub fn call_from_thread<F: FnOnce() + Send + 'static>(&self, f: F) {
        let ctx = self.capture(HopKind::Thread, "call_from_thread", Location::caller());
        self.shared.core().calls.push_back((Box::new(f), ctx));
        // Always wake: the caller may be another thread while the reactor
        // is about to wait.
        let _ = self.shared.waker.wake();
    }

    /// Runs `f` on the reactor's thread pool, in the context current here
    /// (a thread hop is recorded); the returned future resolves, on
    /// whichever thread awaits it (normally the reactor's), to its result.
    #[track_caller]
    pub fn defer_to_thread<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ctx = self.capture(HopKind::Thread, "defer_to_thread", Location::caller());
        let (tx, rx) = futures_channel::oneshot::channel();
        let job = Box::new(move || {
            let result = ctx.run(|| catch_unwind(AssertUnwindSafe(f)));
            if let Err(panic) = &result {
                ctx.run(|| panic::log(Catcher::Reactor, "defer_to_thread job", &**panic));
            }
            let _ = tx.send(result);
        });
        match self.pool() {
            Ok(pool) => pool.execute(job),
            // Without threads the job cannot run: the handle reports it
            // as cancelled rather than hanging.
            Err(e) => tracing::error!(target: "milieu::reactor", "cannot start thread pool: {e}"),
        }
        JoinHandle { rx }
    }

    /// Asks the reactor to stop after the current tick ([`Reactor::run`]
    /// returns).
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.shared.waker.wake();
    }

    /// The caller's context for work this reactor will run, carried
    /// across a hop: with this reactor's handle on top unless it already is
    /// the visible one, so the work can always find the reactor running it.
    fn capture(
        &self,
        kind: HopKind,
        label: &'static str,
        site: &'static Location<'static>,
    ) -> Context {
        self.capture_pending(kind, label, site).into_context()
    }

    /// [`capture`](Handle::capture) without building the hop frame yet:
    /// for timers, most of which are cancelled before they fire.
    fn capture_pending(
        &self,
        kind: HopKind,
        label: &'static str,
        site: &'static Location<'static>,
    ) -> PendingHop {
        let ours = crate::with(|h: &Handle| Arc::ptr_eq(&h.shared, &self.shared)).unwrap_or(false);
        let ctx = if ours {
            Context::current()
        } else {
            crate::scope()
                .with(self.clone())
                .because("the reactor running this work")
                .run(Context::current)
        };
        PendingHop::new(ctx, kind, Some(HopLabel::Static(label)), site)
    }

    fn pool(&self) -> io::Result<&Pool> {
        if let Some(pool) = self.shared.pool.get() {
            return Ok(pool);
        }
        let pool = Pool::new(self.shared.pool_size, &format!("{}-pool", self.shared.name))?;
        Ok(self.shared.pool.get_or_init(|| pool))
    }
}

/// A call scheduled with [`Handle::call_later`].
#[derive(Clone)]
pub struct DelayedCall {
    key: TimerKey,
    shared: Weak<Shared>,
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DelayedCall(active: {})", self.active())
    }
}

impl DelayedCall {
    /// Cancels the call; false if it already ran or was cancelled.
    pub fn cancel(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|s| s.core().timers.cancel(self.key))
    }

    /// Reschedules the call to run `delay` from now; false if it already
    /// ran or was cancelled.
    pub fn reset(&self, delay: Duration) -> bool {
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        let when = shared.clock.now() + delay;
        let moved = shared.core().timers.reset(self.key, when);
        shared.unpark();
        moved
    }

    /// Whether the call is still pending.
    pub fn active(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|s| s.core().timers.is_pending(self.key))
    }

    /// When the call is due, if pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.shared
            .upgrade()
            .and_then(|s| s.core().timers.deadline(self.key))
    }
}

/// The future returned by [`Handle::sleep`].
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    handle: Handle,
    when: Instant,
    state: Option<(DelayedCall, Arc<SleepState>)>,
}

struct SleepState {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("when", &self.when)
            .finish_non_exhaustive()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.handle.now() >= self.when {
            return Poll::Ready(());
        }
        match &self.state {
            Some((_, state)) => {
                if state.fired.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                *state.waker.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(cx.waker().clone());
                // Fired between the check and storing the waker?
                if state.fired.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
            }
            None => {
                let state = Arc::new(SleepState {
                    fired: AtomicBool::new(false),
                    waker: Mutex::new(Some(cx.waker().clone())),
                });
                let fire = Arc::clone(&state);
                let delay = self.when.saturating_duration_since(self.handle.now());
                let call = self.handle.call_later(delay, move || {
                    fire.fired.store(true, Ordering::Release);
                    if let Some(waker) = fire
                        .waker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take()
                    {
                        waker.wake();
                    }
                });
                self.state = Some((call, state));
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((call, _)) = &self.state {
            call.cancel();
        }
    }
}

/// The future returned by [`Handle::timeout`].
#[must_use = "futures do nothing unless polled"]
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("sleep", &self.sleep)
            .finish_non_exhaustive()
    }
}

/// The deadline of a [`Timeout`] passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(value) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(value));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
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
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The root context: what was current when the reactor was built, plus
    /// its [`Handle`]. Everything the reactor runs starts from here.
    pub fn context(&self) -> &Context {
        &self.root
    }

    /// Runs one iteration (see the [module docs](self) for the order),
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
        let calls = std::mem::take(&mut self.shared.core().calls);
        for (call, ctx) in calls {
            stats.calls += 1;
            stats.panics += usize::from(!run_guarded("call_from_thread", &ctx, call));
        }

        // 2. Due timers, scheduled before this step began.
        let now = self.shared.clock.now();
        let limit = self.shared.core().timers.seq_limit();
        loop {
            let due = self.shared.core().timers.pop_due(now, limit);
            let Some(timer) = due else { break };
            stats.timers += 1;
            let ctx = timer.hop.into_context();
            stats.panics += usize::from(!run_guarded("timer", &ctx, timer.callback));
        }

        // 3. One readiness poll, as long as nothing else is waiting.
        self.shared.parked.store(true, Ordering::SeqCst);
        let timeout = self.poll_timeout(max_wait);
        let polled = self.readiness.poll(timeout).map(|ready| ready.count());
        self.shared.parked.store(false, Ordering::SeqCst);
        stats.events = polled?;

        // 4. I/O: registrations queued by handles, then accept / recv (and
        // connects finishing) on the ready sources.
        self.io.transport_step(&self.readiness, &mut stats);

        // 5. Protocol dispatch: complete requests to the application.
        self.io.dispatch_step(&self.readiness, &mut stats);

        // 6. Runnable tasks, bounded.
        for _ in 0..self.task_budget {
            let next = self.shared.ready().pop_front();
            let Some(key) = next else { break };
            stats.polls += 1;
            stats.panics += usize::from(!self.poll_task(key));
        }

        // 7. Flush of buffered writes; finished connections are removed.
        self.io.flush_step(&self.readiness, &mut stats);
        Ok(stats)
    }

    /// How long the readiness poll may wait.
    fn poll_timeout(&mut self, max_wait: Option<Duration>) -> Option<Duration> {
        let busy = self.shared.stopping.load(Ordering::SeqCst)
            || self.shared.main_woken.load(Ordering::SeqCst)
            || !self.shared.ready().is_empty()
            || !self.shared.core().calls.is_empty();
        if busy {
            return Some(Duration::ZERO);
        }
        let timer = self.shared.core().timers.next_deadline();
        // Connection timeouts (read, idle, linger) wake the reactor too.
        let deadline = match (timer, self.io.next_sweep()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let until_timer = match (&self.shared.clock, deadline) {
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

    /// Polls one task; false if it panicked.
    fn poll_task(&mut self, key: TaskKey) -> bool {
        let taken = {
            let mut core = self.shared.core();
            core.tasks.slots.get_mut(key).and_then(|task| {
                let future = task.future.take()?;
                Some((future, Arc::clone(&task.waker)))
            })
        };
        let Some((mut future, waker_arc)) = taken else {
            return true;
        };
        waker_arc.queued.store(false, Ordering::Release);
        let waker = Waker::from(waker_arc);
        let mut cx = TaskContext::from_waker(&waker);
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        let mut core = self.shared.core();
        match polled {
            Ok(Poll::Pending) => {
                if let Some(task) = core.tasks.slots.get_mut(key) {
                    task.future = Some(future);
                }
                true
            }
            Ok(Poll::Ready(())) => {
                core.tasks.slots.remove(key);
                drop(core);
                drop(future);
                true
            }
            Err(panic) => {
                core.tasks.slots.remove(key);
                drop(core);
                panic::log(Catcher::Reactor, "task", &*panic);
                false
            }
        }
    }

    /// Runs ticks until [`Handle::stop`] is called.
    ///
    /// # Errors
    ///
    /// The first error of a readiness poll.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.shared.stopping.swap(false, Ordering::SeqCst) {
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
            shared: Arc::downgrade(&self.shared),
        }));
        let mut cx = TaskContext::from_waker(&waker);
        self.shared.main_woken.store(true, Ordering::SeqCst);
        loop {
            if self.shared.main_woken.swap(false, Ordering::SeqCst) {
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
    /// Tasks woken by a timer (a [`Sleep`] ending) are polled right after
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
        let Clock::Virtual(clock) = self.shared.clock.clone() else {
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
                let mut core = self.shared.core();
                let Some(when) = core.timers.next_deadline() else {
                    break;
                };
                if when > target {
                    break;
                }
                if instant != Some(when) {
                    instant = Some(when);
                    limit = core.timers.seq_limit();
                    second_generation = false;
                }
                let timer = match core.timers.pop_due(when, limit) {
                    Some(timer) => timer,
                    None if !second_generation => {
                        second_generation = true;
                        limit = core.timers.seq_limit();
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
                drop(core);
                clock.set(when);
                fired += 1;
                run_guarded("timer", &timer.hop.into_context(), timer.callback);
                // Tasks the timer woke (a `sleep` ending) resume at its time.
                self.run_ready_tasks();
            }
            clock.set(target);
            fired
        }))
    }

    /// Polls runnable tasks, at most the task budget; returns (polls, panics).
    fn run_ready_tasks(&mut self) -> (usize, usize) {
        let (mut polls, mut panics) = (0, 0);
        for _ in 0..self.task_budget {
            let next = self.shared.ready().pop_front();
            let Some(key) = next else { break };
            polls += 1;
            panics += usize::from(!self.poll_task(key));
        }
        (polls, panics)
    }

    /// Number of pending timers.
    pub fn pending_timers(&self) -> usize {
        self.shared.core().timers.len()
    }

    /// Number of live tasks.
    pub fn tasks(&self) -> usize {
        self.shared.core().tasks.slots.len()
    }
}

impl Drop for Reactor {
    // Tasks, timers and queued calls often hold a `Handle`, which holds the
    // shared state that holds them: a cycle. Dropping the reactor breaks it
    // by dropping the pending work (outside the lock: destructors may use
    // a handle), so the state and its thread pool go away too.
    fn drop(&mut self) {
        let (tasks, timers, calls) = {
            let mut core = self.shared.core();
            (
                std::mem::take(&mut core.tasks),
                std::mem::take(&mut core.timers),
                std::mem::take(&mut core.calls),
            )
        };
        drop((tasks, timers, calls));
        self.shared.ready().clear();
    }
}

/// [`Reactor::advance`] needs a reactor built on a [`VirtualClock`].
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
    shared: Weak<Shared>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.shared.upgrade() {
            shared.main_woken.store(true, Ordering::SeqCst);
            shared.unpark();
        }
    }
}

/// Runs a callback in `ctx`, catching a panic (logged with the context
/// dump); false if it panicked.
fn run_guarded(kind: &str, ctx: &Context, f: Box<dyn FnOnce() + Send>) -> bool {
    ctx.run(|| match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(panic) => {
            panic::log(Catcher::Reactor, kind, &*panic);
            false
        }
    })
}
