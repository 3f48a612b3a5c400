//! Stages: a bounded queue in front of a pool of worker threads, as in SEDA.
//!
//! A [`Stage`] takes items, runs a handler on each in one of its worker
//! threads, and hands every result back as a future. It is how blocking
//! work (a database driver, a CPU-heavy parser) sits next to an event loop
//! (milieu's reactor, or any executor) without stalling it, with a bound
//! on how much work may wait:
//!
//! - [`Stage::submit`] never waits: a full queue or a closed stage refuses
//!   at once and gives the item back ([`Refused`]), so the caller decides
//!   to shed, retry or degrade. [`Stage::submit_wait`] waits for room
//!   instead, asynchronously.
//! - The handler runs **in the submitter's context**, with a hop of kind
//!   [`HopKind::Stage`](crate::dump::HopKind::Stage) labelled with the stage's name (dumps show ``stage `<name>` ``)
//!   recorded at the `submit` call: a dump taken in the handler shows the
//!   request's entries and how they got there.
//! - The [`Submission`] resolves **where it is awaited**: awaited in a
//!   reactor task, the code after `.await` runs on the reactor thread. The
//!   worker only sends the result and wakes the task; it never runs the
//!   continuation (Twisted's `deferToThread` rule: results come back to
//!   the reactor, callbacks never run on pool threads).
//! - A handler that panics fails its own item ([`StageError::Panicked`]),
//!   is logged with the context dump (target `milieu::stage`), and its
//!   worker thread is replaced by a fresh one with a fresh handler; the
//!   other items keep flowing.
//! - [`Stage::stats`] returns the figures a service exports: queue depth,
//!   counters, throughput, latency percentiles.
//!
//! Per-thread state (a database connection per worker) comes from
//! [`StageBuilder::build_with`]: its factory runs once on each worker
//! thread, in the context current at `build`, so it can look up what it
//! needs (a connection pool) there.
//!
//! # Examples
//!
//! A stage needs no reactor: any executor can await its results.
//!
//! ```
//! use milieu::stage::{CloseMode, RefuseReason, Stage};
//!
//! struct Tenant(&'static str);
//!
//! let checksum = Stage::builder("checksum")
//!     .capacity(1)
//!     .build(|data: Vec<u8>| {
//!         // On a worker thread, in the submitter's context.
//!         let tenant = milieu::with(|t: &Tenant| t.0).unwrap_or("none");
//!         (tenant, data.iter().map(|&b| u32::from(b)).sum::<u32>())
//!     })?;
//!
//! let _tenant = milieu::provide(Tenant("acme"));
//! let sum = futures::executor::block_on(checksum.submit(vec![1, 2, 3])?)?;
//! assert_eq!(sum, ("acme", 6));
//!
//! // Closed: refused at once, the item handed back.
//! checksum.close(CloseMode::Drain)?;
//! let refused = checksum.submit(vec![4]).unwrap_err();
//! assert_eq!(refused.reason, RefuseReason::Closed);
//! assert_eq!(refused.into_item(), vec![4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod queue;
mod stats;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_channel::oneshot;

use crate::Context;
use queue::{spawn_worker, InBatches, Offer, OneByOne, StageQueue, Waiting};

pub use error::{CloseError, RefuseReason, Refused, StageBuildError, StageError};
pub use stats::{HumanDuration, LatencyHistogram, StageStats};

/// A bounded queue and a pool of worker threads running one handler.
///
/// Cloning a `Stage` shares it; it is `Send + Sync`. See the [module
/// docs](self) for the rules of submitting, context and panics.
///
/// # Closing
///
/// [`close`](Stage::close) stops accepting, then either runs everything
/// queued ([`CloseMode::Drain`]) or answers it with
/// [`StageError::Cancelled`] ([`CloseMode::Cancel`]), and joins every
/// worker thread. Dropping the last clone closes with `Drain`: the drop
/// waits for the queue to drain, except on one of the stage's own worker
/// threads (the last clone can go away inside a handler), where it only
/// stops accepting and the workers finish the queue and exit by themselves.
/// A handler factory that keeps a clone of its own stage keeps the stage
/// open: close it explicitly then.
///
/// # Figures
///
/// [`stats`](Stage::stats) reads counters and a latency histogram kept
/// with atomics. Latency is measured from `submit` to the handler's return;
/// its percentiles come from a log-linear histogram (8 buckets per power
/// of two of nanoseconds): a reported percentile is never below the true
/// one and at most 12.5% above it. `Debug` prints the figures, so a stage
/// installed with [`Scope::with_debug`](crate::Scope::with_debug) shows
/// them in every context dump.
///
/// # Examples
///
/// ```
/// use milieu::reactor::Reactor;
/// use milieu::stage::{CloseMode, Stage};
///
/// struct RequestId(u64);
///
/// let stage = Stage::builder("pricing")
///     .capacity(64)
///     .workers(2)
///     .build(|cents: u64| {
///         // A worker thread, in the submitter's context.
///         let id = milieu::with(|r: &RequestId| r.0).unwrap_or(0);
///         (id, cents * 2)
///     })?;
///
/// let mut reactor = Reactor::new()?;
/// let h = reactor.handle();
/// let s = stage.clone();
/// let task = h.spawn(async move {
///     // `submit` captures the context current at the call.
///     let submission = milieu::scope().with(RequestId(7)).run(|| s.submit(21))?;
///     // Back on the reactor thread once the worker is done.
///     submission.await
/// });
/// // The reactor's error, the task's, the stage's:
/// assert_eq!(reactor.run_until(task)???, (7, 42));
///
/// stage.close(CloseMode::Drain)?;
/// assert_eq!(stage.stats().completed, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Stage<In, Out> {
    owner: Arc<Owner<In, Out>>,
}

/// The handles' share of a stage: when the last handle drops, the stage
/// closes. Workers hold the [`StageQueue`] part only, so they do not keep it
/// open.
struct Owner<In, Out> {
    queue: Arc<StageQueue<In, Out>>,
}

impl<In, Out> Drop for Owner<In, Out> {
    fn drop(&mut self) {
        self.queue.last_handle_dropped();
    }
}

impl<In, Out> Clone for Stage<In, Out> {
    fn clone(&self) -> Self {
        Stage {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<In, Out> fmt::Debug for Stage<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        f.debug_struct("Stage")
            .field("name", &s.name)
            .field("capacity", &s.capacity)
            .field("workers", &s.workers)
            .field("queue_depth", &s.queue_depth)
            .field("in_flight", &s.in_flight)
            .field("accepted", &s.accepted)
            .field("refused", &s.refused)
            .field("completed", &s.completed)
            .field("panicked", &s.panicked)
            .field("cancelled", &s.cancelled)
            .field("replaced", &s.replaced)
            .field("throughput", &format_args!("{:.1}/s", s.throughput))
            .field("latency_p50", &s.latency_p50)
            .field("latency_p99", &s.latency_p99)
            .field("batches", &s.batches)
            .field("batched_items", &s.batched_items)
            .field("largest_batch", &s.largest_batch)
            .finish()
    }
}

impl<In, Out> Stage<In, Out> {
    /// Starts configuring a stage called `name` (worker threads are named
    /// `<name>-0`, `<name>-1`, ...). The item and result types are usually
    /// inferred from the handler given to [`build`](StageBuilder::build);
    /// `Stage::<In, Out>::builder` names them up front.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::stage::{CloseMode, Stage};
    ///
    /// let upper = Stage::builder("upper")
    ///     .capacity(16)
    ///     .workers(2)
    ///     .build(|line: String| line.to_uppercase())?;
    /// let shout = futures::executor::block_on(upper.submit("hi".to_owned())?)?;
    /// assert_eq!(shout, "HI");
    /// upper.close(CloseMode::Drain)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(name: impl Into<String>) -> StageBuilder<In, Out> {
        StageBuilder {
            name: name.into(),
            capacity: 1024,
            workers: 1,
            idle_spin: DEFAULT_IDLE_SPIN,
            types: PhantomData,
        }
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.owner.queue.name
    }

    /// The queue bound.
    pub fn capacity(&self) -> usize {
        self.owner.queue.capacity
    }

    /// Whether the stage stopped accepting items.
    pub fn is_closed(&self) -> bool {
        self.owner.queue.is_closed()
    }

    /// The stage's figures now.
    pub fn stats(&self) -> StageStats {
        self.owner.queue.stats()
    }

    /// Stops accepting items, then runs or cancels what is queued (see
    /// [`CloseMode`]) and waits for every worker thread to exit,
    /// replacements included. Items already in a handler always finish.
    /// Closing a closed stage waits for the first close to finish and
    /// returns `Ok`.
    ///
    /// This blocks the calling thread until the workers are done: from a
    /// reactor thread, prefer closing at shutdown, or on a helper thread.
    ///
    /// # Errors
    ///
    /// [`CloseError::FromWorker`] when called on one of this stage's own
    /// worker threads (from a handler): it would wait for itself. Nothing
    /// is done then.
    pub fn close(&self, mode: CloseMode) -> Result<(), CloseError> {
        self.owner.queue.close(mode)
    }
}

impl<In: Send + 'static, Out: Send + 'static> Stage<In, Out> {
    /// Hands `item` to the stage, never waiting; the returned future
    /// resolves to the handler's result.
    ///
    /// Captures the current context, with a [`Stage`](crate::dump::HopKind::Stage)
    /// hop labelled with the stage's name recorded at the caller's location; the
    /// handler runs in it. The future resolves on whichever thread polls
    /// it (see the [module docs](self)); dropping it does not cancel the
    /// item.
    ///
    /// # Errors
    ///
    /// [`Refused`], at once and with the item inside, when the queue is
    /// full ([`RefuseReason::Full`]) or the stage is closed
    /// ([`RefuseReason::Closed`]).
    #[track_caller]
    pub fn submit(&self, item: In) -> Result<Submission<Out>, Refused<In>> {
        let ctx = Context::current();
        match self.owner.queue.offer(item, &ctx, Location::caller(), None) {
            Offer::Accepted(submission) => Ok(submission),
            Offer::Refused(refused) => Err(refused),
            // Only an offer with a waiter waits.
            Offer::Wait(item) => Err(Refused {
                reason: RefuseReason::Full {
                    capacity: self.capacity(),
                },
                stage: Arc::clone(&self.owner.queue.name),
                item,
            }),
        }
    }

    /// Like [`submit`](Stage::submit), but waits for room when the queue
    /// is full: the returned future registers its waker with the stage and
    /// is woken when a worker takes an item off the queue (no polling, no
    /// thread blocked). Waiters are served roughly in order; a plain
    /// `submit` may take a freed slot first.
    ///
    /// The context and the hop site are captured here, at the call.
    ///
    /// The future's output is `Err(Refused)` only with
    /// [`RefuseReason::Closed`]: the stage closed before there was room
    /// (or was closed already).
    #[track_caller]
    pub fn submit_wait(&self, item: In) -> SubmitWait<In, Out> {
        SubmitWait {
            queue: Arc::clone(&self.owner.queue),
            item: Some(item),
            ctx: Context::current(),
            site: Location::caller(),
            waiter: None,
        }
    }
}

/// How [`Stage::close`] treats the items still queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseMode {
    /// Run every queued item, then stop.
    Drain,
    /// Answer every queued item with [`StageError::Cancelled`], then stop.
    Cancel,
}

/// Configures a [`Stage`] taking `In` and giving `Out`: from
/// [`Stage::builder`].
#[must_use = "a StageBuilder does nothing until `build` or `build_with` is called"]
pub struct StageBuilder<In, Out> {
    name: String,
    capacity: usize,
    workers: usize,
    idle_spin: Duration,
    /// The stage's item and result types: a builder holds neither, so it
    /// is `Send`, `Sync` and `Clone` whatever they are.
    types: PhantomData<fn(In) -> Out>,
}

impl<In, Out> Clone for StageBuilder<In, Out> {
    fn clone(&self) -> Self {
        StageBuilder {
            name: self.name.clone(),
            ..*self
        }
    }
}

impl<In, Out> fmt::Debug for StageBuilder<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageBuilder")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("workers", &self.workers)
            .field("idle_spin", &self.idle_spin)
            .finish()
    }
}

/// See [`StageBuilder::idle_spin`].
const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);

impl<In: Send + 'static, Out: Send + 'static> StageBuilder<In, Out> {
    /// At most this many items wait in the queue (default 1024); items a
    /// handler is working on do not count. 0 is refused by `build`.
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = items;
        self
    }

    /// Worker threads (default 1). 0 is refused by `build`.
    pub fn workers(mut self, threads: usize) -> Self {
        self.workers = threads;
        self
    }

    /// How long a worker that finished a job stays awake watching the
    /// queue before it sleeps (default 50 µs; `Duration::ZERO` sleeps at
    /// once).
    ///
    /// A submitter that awaits each result and then submits the next item
    /// usually comes back within microseconds; a worker still awake takes
    /// that item at once, where a sleeping one must be woken by the OS
    /// first, which costs a system call on the submitting thread and the
    /// scheduler's delay on the worker's (docs/benchmarks.md, "Stages",
    /// measures the difference). The price is up to this much CPU time per
    /// job when no next item comes: spent pausing at first, then yielding
    /// the core to other threads. Lower it for stages with many workers or
    /// rare items on a busy machine. `Duration::MAX` watches until work
    /// comes or the stage closes.
    pub fn idle_spin(mut self, spin: Duration) -> Self {
        self.idle_spin = spin;
        self
    }

    /// Builds a stage whose workers share `handler`.
    ///
    /// # Errors
    ///
    /// See [`build_with`](StageBuilder::build_with).
    #[track_caller]
    pub fn build<F>(self, handler: F) -> Result<Stage<In, Out>, StageBuildError>
    where
        F: Fn(In) -> Out + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.build_with(move || {
            let handler = Arc::clone(&handler);
            move |item| handler(item)
        })
    }

    /// Builds a stage whose workers each own a handler made by
    /// `make_handler`, called once on each worker thread (and again on a
    /// worker that replaces one whose handler panicked), in the context
    /// current here. Per-thread state (a database connection) lives in the
    /// handler; it need not be `Send`.
    ///
    /// Returns once every worker has its handler. The stage keeps the
    /// context snapshot taken here for the handlers of replacement workers.
    ///
    /// # Errors
    ///
    /// [`StageBuildError`]: a capacity or worker count of 0, a name with a
    /// NUL byte, a thread the OS refused, or a `make_handler` that
    /// panicked. No thread is left running then.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::stage::{CloseMode, Stage};
    ///
    /// // Each worker counts its own items: state no other thread sees.
    /// let stage = Stage::builder("counter").workers(2).build_with(|| {
    ///     let mut seen = 0u64;
    ///     move |_item: ()| {
    ///         seen += 1;
    ///         seen
    ///     }
    /// })?;
    /// let first = futures::executor::block_on(stage.submit(())?)?;
    /// assert_eq!(first, 1);
    /// stage.close(CloseMode::Drain)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn build_with<M, H>(self, make_handler: M) -> Result<Stage<In, Out>, StageBuildError>
    where
        M: Fn() -> H + Send + Sync + 'static,
        H: FnMut(In) -> Out + 'static,
    {
        self.start(Batching::new(1), move || OneByOne(make_handler()))
    }

    /// Builds a stage whose workers take items in batches: a worker takes
    /// the next item and those queued behind it, up to `batching`'s
    /// limits, and hands them to its handler in one call. The handler's
    /// outputs answer the items in order (an item left without an output
    /// is answered [`StageError::Cancelled`]); a handler that panics fails
    /// the whole batch ([`StageError::Panicked`] for each item) and is
    /// replaced, as with [`build_with`](StageBuilder::build_with).
    ///
    /// The handler runs in the context current here; each
    /// [`Batched::context`] is the submitter's, to enter for the item's
    /// own work. Batches never reorder: items come in queue order, and a
    /// worker never skips one to fill a batch.
    ///
    /// [`StageStats::batches`] and its neighbours count the calls and
    /// their sizes.
    ///
    /// # Errors
    ///
    /// As [`build_with`](StageBuilder::build_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::stage::{Batched, Batching, CloseMode, Stage};
    ///
    /// // Each call sees every line queued so far (here one or more) and
    /// // could write them with one system call.
    /// let stage = Stage::builder("log-writer").build_batched_with(Batching::new(32), || {
    ///     |lines: Vec<Batched<String>>| -> Vec<usize> {
    ///         lines.into_iter().map(|line| line.item.len()).collect()
    ///     }
    /// })?;
    /// let written = futures::executor::block_on(stage.submit("hello".to_owned())?)?;
    /// assert_eq!(written, 5);
    /// stage.close(CloseMode::Drain)?;
    /// assert_eq!(stage.stats().batches, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn build_batched_with<M, H>(
        self,
        batching: Batching<In>,
        make_handler: M,
    ) -> Result<Stage<In, Out>, StageBuildError>
    where
        M: Fn() -> H + Send + Sync + 'static,
        H: FnMut(Vec<Batched<In>>) -> Vec<Out> + 'static,
    {
        self.start(batching, move || InBatches(make_handler()))
    }

    #[track_caller]
    fn start<M, H>(
        self,
        batching: Batching<In>,
        make_handler: M,
    ) -> Result<Stage<In, Out>, StageBuildError>
    where
        M: Fn() -> H + Send + Sync + 'static,
        H: queue::Handler<In, Out> + 'static,
    {
        let StageBuilder {
            name,
            capacity,
            workers,
            idle_spin,
            types: PhantomData,
        } = self;
        if name.contains('\0') {
            return Err(StageBuildError::InvalidName { stage: name });
        }
        if capacity == 0 {
            return Err(StageBuildError::ZeroCapacity { stage: name });
        }
        if workers == 0 {
            return Err(StageBuildError::ZeroWorkers { stage: name });
        }
        let label = name.clone();
        let build_ctx = Context::current().into_hop_at(
            crate::context::HopKind::Stage,
            Some(label.into()),
            Location::caller(),
        );
        let queue = Arc::new(StageQueue::new(
            &name, capacity, idle_spin, build_ctx, batching,
        ));
        let make = Arc::new(make_handler);
        let (ready_tx, ready_rx) = mpsc::channel();
        for slot in 0..workers {
            queue.add_slot();
            let spawned = spawn_worker(&queue, &make, slot, Some(ready_tx.clone()));
            if let Err(source) = spawned {
                queue.abort();
                return Err(StageBuildError::Spawn {
                    stage: name,
                    source,
                });
            }
        }
        drop(ready_tx);
        for _ in 0..workers {
            // Every worker answers once; a closed channel (all senders
            // gone without a word) cannot happen but is treated as failure.
            let message = match ready_rx.recv() {
                Ok(Ok(())) => continue,
                Ok(Err(message)) => message,
                Err(_) => "a worker exited before building its handler".to_owned(),
            };
            queue.abort();
            return Err(StageBuildError::HandlerPanicked {
                stage: name,
                message,
            });
        }
        Ok(Stage {
            owner: Arc::new(Owner { queue }),
        })
    }
}

/// How many items a worker of a batched stage takes at once
/// ([`StageBuilder::build_batched_with`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use milieu::stage::Batching;
///
/// // Up to 64 items; a batch not yet full waits up to 200 µs for more;
/// // items over 1 MiB are handled by themselves.
/// let batching = Batching::new(64)
///     .max_wait(Duration::from_micros(200))
///     .alone_when(|data: &Vec<u8>| data.len() > 1 << 20);
/// assert_eq!(batching.max_items(), 64);
/// ```
pub struct Batching<In> {
    max_items: usize,
    max_wait: Duration,
    #[allow(clippy::type_complexity)]
    alone: Option<Box<dyn Fn(&In) -> bool + Send + Sync>>,
}

impl<In> Batching<In> {
    /// At most `max_items` per batch (0 counts as 1: one item per call).
    /// By default a worker takes only what is queued when it looks, and
    /// no item runs alone.
    pub fn new(max_items: usize) -> Self {
        Batching {
            max_items: max_items.max(1),
            max_wait: Duration::ZERO,
            alone: None,
        }
    }

    /// How long a batch that is not full may wait for more items after
    /// its first (default zero: take what is queued and go). A wait makes
    /// batches larger under light load and adds up to this much latency
    /// to the first item of each.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Items for which `alone` answers `true` are handled in a batch of
    /// their own: a batch never takes one behind others, and stops before
    /// it. `alone` runs in `submit`, on the submitting thread; keep it
    /// cheap.
    pub fn alone_when(mut self, alone: impl Fn(&In) -> bool + Send + Sync + 'static) -> Self {
        self.alone = Some(Box::new(alone));
        self
    }

    /// The most items in one batch.
    pub fn max_items(&self) -> usize {
        self.max_items
    }

    /// The longest a batch waits for more items.
    pub fn wait(&self) -> Duration {
        self.max_wait
    }

    pub(crate) fn is_alone(&self, item: &In) -> bool {
        self.alone.as_ref().is_some_and(|alone| alone(item))
    }
}

impl<In> fmt::Debug for Batching<In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batching")
            .field("max_items", &self.max_items)
            .field("max_wait", &self.max_wait)
            .field("alone_when", &self.alone.is_some())
            .finish()
    }
}

/// One item of a batch, as a batched stage's handler receives it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Batched<In> {
    /// The item.
    pub item: In,
    /// The submitter's context with the stage hop on top: run the item's
    /// work in it (`batched.context.run(|| ...)`) so lookups, logs and
    /// dumps see the request it belongs to.
    pub context: Context,
}

/// The result of an item handed to a [`Stage`], as a future.
///
/// It resolves on whichever thread polls it: awaited in a reactor task, on
/// the reactor thread. Dropping it does not cancel the item.
#[must_use = "a Submission does nothing unless awaited; drop it to ignore the result"]
pub struct Submission<Out> {
    rx: oneshot::Receiver<Result<Out, StageError>>,
    stage: Arc<str>,
}

impl<Out> fmt::Debug for Submission<Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Submission(stage `{}`)", self.stage)
    }
}

impl<Out> Future for Submission<Out> {
    type Output = Result<Out, StageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            // The reply was dropped unanswered: the job never ran.
            Poll::Ready(Err(oneshot::Canceled)) => Poll::Ready(Err(StageError::Cancelled {
                stage: self.stage.to_string(),
            })),
        }
    }
}

/// The future returned by [`Stage::submit_wait`].
#[must_use = "futures do nothing unless polled"]
pub struct SubmitWait<In, Out> {
    queue: Arc<StageQueue<In, Out>>,
    item: Option<In>,
    ctx: Context,
    site: &'static Location<'static>,
    /// The registration with the stage, once the queue was found full.
    waiter: Option<u64>,
}

// The item is never pinned (it is moved into the queue), so the future
// need not be pinned either.
impl<In, Out> Unpin for SubmitWait<In, Out> {}

impl<In, Out> fmt::Debug for SubmitWait<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitWait")
            .field("stage", &self.queue.name)
            .field("waiting", &self.waiter.is_some())
            .finish_non_exhaustive()
    }
}

impl<In: Send + 'static, Out: Send + 'static> Future for SubmitWait<In, Out> {
    type Output = Result<Submission<Out>, Refused<In>>;

    /// # Panics
    ///
    /// Panics if polled again after it completed.
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let item = this
            .item
            .take()
            .expect("SubmitWait polled after it completed");
        let waiter = Some(Waiting {
            id: &mut this.waiter,
            waker: cx.waker(),
        });
        match this.queue.offer(item, &this.ctx, this.site, waiter) {
            Offer::Accepted(submission) => Poll::Ready(Ok(submission)),
            Offer::Refused(refused) => Poll::Ready(Err(refused)),
            Offer::Wait(item) => {
                this.item = Some(item);
                Poll::Pending
            }
        }
    }
}

impl<In, Out> Drop for SubmitWait<In, Out> {
    fn drop(&mut self) {
        self.queue.forget_waiter(Some(&mut self.waiter));
    }
}
