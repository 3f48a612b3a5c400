//! A stage's bounded queue and the worker threads that drain it
//! ([`StageQueue`], what the handles and the workers share): admission,
//! the worker loop, replacement after a panic, and closing.
//!
//! One mutex guards the queue, the closed flag, the idle-worker count, the
//! `submit_wait` waiters and the list of worker threads; no user code runs
//! under it and no thread blocks under it except in `Condvar::wait`. Idle
//! workers sleep on one condvar, woken by `notify_one` only when one is
//! known to sleep (a submit to busy workers makes no syscall). Counters and
//! the latency histogram are atomics outside the lock.
//!
//! A worker that finishes a job first watches the queue for a short while
//! (the stage's idle spin) before it sleeps: a submitter that awaits each
//! result and then submits again (a request handler, the reactor) usually
//! comes back within microseconds, and a worker still awake takes the item
//! without the futex wake-up and the scheduler delay of a sleeping one.

use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::error::{CloseError, RefuseReason, Refused, StageError};
use super::stats::{Histogram, StageStats};
use super::{Batched, Batching, CloseMode, Submission};
use crate::context::HopLabel;
use crate::context::{Context, HopKind};

/// One accepted item on its way to a handler.
struct Job<In, Out> {
    item: In,
    reply: oneshot::Sender<Result<Out, StageError>>,
    /// The submitter's context, with the stage hop on top.
    ctx: Context,
    submitted: Instant,
    /// The stage's batching rule asked for this item to be handled by
    /// itself (decided at `offer`, outside the lock).
    alone: bool,
}

/// A job's reply channel, context and submit time, made before the lock.
struct JobParts<Out> {
    reply: oneshot::Sender<Result<Out, StageError>>,
    rx: oneshot::Receiver<Result<Out, StageError>>,
    /// The submitter's context, with the stage hop on top.
    ctx: Context,
    submitted: Instant,
}

/// A `submit_wait` future waiting for room.
struct Waiter {
    id: u64,
    /// `None` once woken for a freed slot and not yet back: that waiter
    /// holds the turn until it polls again or is dropped.
    waker: Option<Waker>,
}

/// Everything under the stage's mutex.
struct QueueState<In, Out> {
    jobs: VecDeque<Job<In, Out>>,
    closed: bool,
    /// Workers sleeping on `StageQueue::ready`.
    idle: usize,
    /// `submit_wait` futures waiting for room, oldest first.
    waiters: VecDeque<Waiter>,
    next_waiter_id: u64,
    /// Worker slots that have a thread (a replacement keeps its slot).
    live: usize,
    /// Every worker thread not yet finished, replacements included: how
    /// `close` and the last handle's drop recognise a worker calling them.
    members: Vec<ThreadId>,
}

/// The counters of [`StageStats`], outside the lock.
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    replaced: AtomicU64,
    in_flight: AtomicUsize,
    batches: AtomicU64,
    batched_items: AtomicU64,
    largest_batch: AtomicUsize,
}

/// A `submit_wait` future offering its item: where its registration id
/// lives (`None` until the queue is first found full) and the waker to
/// register.
pub(super) struct Waiting<'a> {
    pub(super) id: &'a mut Option<u64>,
    pub(super) waker: &'a Waker,
}

/// What a poll of `offer` decided.
pub(super) enum Offer<In, Out> {
    Accepted(Submission<Out>),
    Refused(Refused<In>),
    /// Full: the waiter is registered and will be woken when a slot frees.
    Wait(In),
}

/// A stage's bounded queue with its worker threads: everything of a stage
/// but the handles (workers hold it too, so it cannot close on drop; the
/// handles' `Owner` does that).
pub(super) struct StageQueue<In, Out> {
    /// Also the label of each submit's hop (dumps show it as
    /// ``stage `name` ``), shared rather than copied.
    pub(super) name: Arc<str>,
    pub(super) capacity: usize,
    /// How long a worker watches for work before it sleeps (0: never).
    idle_spin: Duration,
    state: Mutex<QueueState<In, Out>>,
    /// Idle workers wait here for a job or for the stage to close.
    ready: Condvar,
    /// Mirrors of `state.closed` and `state.jobs.len()`, read without the
    /// lock: a refusal costs no allocation and `stats` takes no lock.
    closed: AtomicBool,
    depth: AtomicUsize,
    /// Join handles of the worker threads, replacements included.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Held while joining, so a second `close` waits for the first.
    joining: Mutex<()>,
    /// The context current at `build`: handler factories run in it.
    build_ctx: Context,
    /// How many items a worker takes at once (one, unless the stage was
    /// built with `build_batched_with`).
    batching: Batching<In>,
    counters: Counters,
    latency: Histogram,
    started: Instant,
}

impl<In, Out> StageQueue<In, Out> {
    pub(super) fn new(
        name: &str,
        capacity: usize,
        idle_spin: Duration,
        build_ctx: Context,
        batching: Batching<In>,
    ) -> Self {
        StageQueue {
            name: name.into(),
            capacity,
            idle_spin,
            state: Mutex::new(QueueState {
                // Grows on demand: a large bound costs nothing until used.
                jobs: VecDeque::with_capacity(capacity.min(64)),
                closed: false,
                idle: 0,
                waiters: VecDeque::new(),
                next_waiter_id: 0,
                live: 0,
                members: Vec::new(),
            }),
            ready: Condvar::new(),
            closed: AtomicBool::new(false),
            depth: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            joining: Mutex::new(()),
            build_ctx,
            batching,
            counters: Counters::default(),
            latency: Histogram::new(),
            started: Instant::now(),
        }
    }

    fn state(&self) -> MutexGuard<'_, QueueState<In, Out>> {
        // No user code runs under the lock, so a poisoned lock (a panic in
        // a waker, say) still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refuse(&self, item: In, reason: RefuseReason) -> Refused<In> {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        Refused {
            reason,
            stage: Arc::clone(&self.name),
            item,
        }
    }

    /// Hands `item` to the stage, in `ctx` (a stage hop at `site` is
    /// recorded). Without `waiter` (`submit`) a full queue refuses; with
    /// one (`submit_wait`) it registers the waker and says `Wait`.
    pub(super) fn offer(
        &self,
        item: In,
        ctx: &Context,
        site: &'static Location<'static>,
        waiter: Option<Waiting<'_>>,
    ) -> Offer<In, Out> {
        let (id, waker) = match waiter {
            Some(Waiting { id, waker }) => (Some(id), Some(waker)),
            None => (None, None),
        };
        // Refusals read two atomics and allocate nothing: under overload,
        // shedding must stay cheap.
        if self.closed.load(Ordering::Acquire) {
            self.forget_waiter(id);
            return Offer::Refused(self.refuse(item, RefuseReason::Closed));
        }
        let room = self.depth.load(Ordering::Relaxed) < self.capacity;
        if !room && waker.is_none() {
            return Offer::Refused(self.refuse(item, self.full()));
        }
        // The hop frame and the channel are built outside the lock, and so
        // is the batching rule's verdict (it is the stage owner's code).
        let parts = room.then(|| self.prepare(ctx, site));
        let alone = self.batching.is_alone(&item);

        let mut state = self.state();
        if state.closed {
            drop(state);
            self.forget_waiter(id);
            return Offer::Refused(self.refuse(item, RefuseReason::Closed));
        }
        if state.jobs.len() >= self.capacity {
            let (Some(id), Some(waker)) = (id, waker) else {
                drop(state);
                return Offer::Refused(self.refuse(item, self.full()));
            };
            register(&mut state, id, waker);
            drop(state);
            return Offer::Wait(item);
        }
        // Rare: the queue looked full a moment ago and has room now.
        let JobParts {
            reply,
            rx,
            ctx,
            submitted,
        } = match parts {
            Some(parts) => parts,
            None => self.prepare(ctx, site),
        };
        state.jobs.push_back(Job {
            item,
            reply,
            ctx,
            submitted,
            alone,
        });
        self.depth.store(state.jobs.len(), Ordering::Relaxed);
        if let Some(id) = id.and_then(Option::take) {
            state.waiters.retain(|w| w.id != id);
        }
        let wake_worker = state.idle > 0;
        drop(state);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        if wake_worker {
            self.ready.notify_one();
        }
        Offer::Accepted(Submission {
            rx,
            stage: Arc::clone(&self.name),
        })
    }

    fn full(&self) -> RefuseReason {
        RefuseReason::Full {
            capacity: self.capacity,
        }
    }

    /// What a job needs besides its item, built before taking the lock.
    fn prepare(&self, ctx: &Context, site: &'static Location<'static>) -> JobParts<Out> {
        let (reply, rx) = oneshot::channel();
        JobParts {
            reply,
            rx,
            ctx: ctx.hop_at(
                HopKind::Stage,
                Some(HopLabel::Shared(Arc::clone(&self.name))),
                site,
            ),
            submitted: Instant::now(),
        }
    }

    /// Removes a `submit_wait` registration (the future completed or was
    /// dropped). A waiter woken for a slot it will not use passes the turn
    /// on, so no slot goes unclaimed while others wait.
    pub(super) fn forget_waiter(&self, id: Option<&mut Option<u64>>) {
        let Some(id) = id.and_then(Option::take) else {
            return;
        };
        let mut state = self.state();
        let Some(at) = state.waiters.iter().position(|w| w.id == id) else {
            return;
        };
        let had_turn = state.waiters.remove(at).is_some_and(|w| w.waker.is_none());
        let next = if had_turn {
            take_oldest_waker(&mut state)
        } else {
            None
        };
        drop(state);
        if let Some(waker) = next {
            waker.wake();
        }
    }

    /// The next job for a worker; `None` once the stage is closed and the
    /// queue empty. While there is nothing to do it first watches for work
    /// for `idle_spin` ([`StageQueue::watch_for_work`]), then sleeps on the
    /// condvar.
    fn next_job(&self) -> Option<Job<In, Out>> {
        let mut state = self.state();
        let mut spun = self.idle_spin.is_zero();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                self.depth.store(state.jobs.len(), Ordering::Relaxed);
                self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
                // A slot is free: the oldest `submit_wait` may take it.
                let waiter = take_oldest_waker(&mut state);
                drop(state);
                if let Some(waker) = waiter {
                    waker.wake();
                }
                return Some(job);
            }
            if state.closed {
                return None;
            }
            if !spun {
                // Once per job, awake and outside the lock (see the module
                // docs); then the queue is checked again under it.
                spun = true;
                drop(state);
                self.watch_for_work();
                state = self.state();
                continue;
            }
            state.idle += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
        }
    }

    /// The next batch for a worker of a batched stage: the next job as
    /// [`next_job`](StageQueue::next_job) takes it, then those queued
    /// behind it, up to the batching rule's limit, stopping before one that
    /// must run alone. With a `max_wait`, a batch that is not full waits up
    /// to that long for more; without one it takes only what is queued.
    /// `None` once the stage is closed and the queue empty.
    fn next_batch(&self) -> Option<Vec<Job<In, Out>>> {
        let first = self.next_job()?;
        let max = self.batching.max_items;
        if first.alone || max <= 1 {
            return Some(vec![first]);
        }
        let mut batch = Vec::with_capacity(max.min(64));
        batch.push(first);
        let deadline = if self.batching.max_wait.is_zero() {
            None
        } else {
            Instant::now().checked_add(self.batching.max_wait)
        };
        let mut state = self.state();
        let mut freed = Vec::new();
        loop {
            while batch.len() < max && state.jobs.front().is_some_and(|job| !job.alone) {
                batch.extend(state.jobs.pop_front());
                freed.extend(take_oldest_waker(&mut state));
            }
            let must_stop = batch.len() >= max
                || state.closed
                || state.jobs.front().is_some_and(|job| job.alone);
            let left = match deadline {
                Some(at) if !must_stop => at.saturating_duration_since(Instant::now()),
                _ => Duration::ZERO,
            };
            if left.is_zero() {
                break;
            }
            // Counted idle, so a submit wakes this worker (or another).
            state.idle += 1;
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.idle -= 1;
        }
        self.depth.store(state.jobs.len(), Ordering::Relaxed);
        drop(state);
        self.counters
            .in_flight
            .fetch_add(batch.len() - 1, Ordering::Relaxed);
        for waker in freed {
            waker.wake();
        }
        Some(batch)
    }

    /// Returns when the queue looks non-empty, the stage looks closed, or
    /// `idle_spin` has passed. The lock-free mirrors are only hints: the
    /// caller decides under the lock. Spins with the CPU's pause hint at
    /// first, then yields the core, so on a machine with few cores the
    /// submitter it waits for can run.
    fn watch_for_work(&self) {
        // A spin too long to express as an instant (`Duration::MAX`) means
        // "until work comes or the stage closes".
        let deadline = Instant::now().checked_add(self.idle_spin);
        for round in 0u32.. {
            if self.depth.load(Ordering::Relaxed) > 0 || self.closed.load(Ordering::Acquire) {
                return;
            }
            if round < 8 {
                for _ in 0..(1u32 << round) {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::yield_now();
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return;
            }
        }
    }

    /// Stops accepting; with `Cancel`, empties the queue and answers every
    /// item with `Cancelled`. Wakes the workers (to drain and exit) and the
    /// waiters (to be refused). Does not wait for anything.
    fn shut(&self, mode: CloseMode) {
        let mut state = self.state();
        state.closed = true;
        self.closed.store(true, Ordering::Release);
        let cancelled: Vec<Job<In, Out>> = match mode {
            CloseMode::Drain => Vec::new(),
            CloseMode::Cancel => state.jobs.drain(..).collect(),
        };
        self.depth.store(state.jobs.len(), Ordering::Relaxed);
        let waiters: Vec<Waker> = state
            .waiters
            .iter_mut()
            .filter_map(|w| w.waker.take())
            .collect();
        drop(state);
        self.ready.notify_all();
        self.cancel(cancelled);
        for waker in waiters {
            waker.wake();
        }
    }

    fn cancel(&self, jobs: Vec<Job<In, Out>>) {
        for job in jobs {
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            let stage = self.name.to_string();
            let _ = job.reply.send(Err(StageError::Cancelled { stage }));
            // The item and the context drop here, outside the lock: their
            // destructors may do anything (even drop the last stage handle).
        }
    }

    /// Whether the calling thread is one of this stage's workers.
    pub(super) fn on_worker(&self) -> bool {
        let me = std::thread::current().id();
        self.state().members.contains(&me)
    }

    /// [`Stage::close`](super::Stage::close).
    pub(super) fn close(&self, mode: CloseMode) -> Result<(), CloseError> {
        if self.on_worker() {
            let thread = std::thread::current();
            return Err(CloseError::FromWorker {
                stage: self.name.to_string(),
                thread: thread.name().unwrap_or("<unnamed>").to_owned(),
            });
        }
        self.shut(mode);
        self.join_all();
        Ok(())
    }

    /// Joins every worker thread, replacements started meanwhile included.
    fn join_all(&self) {
        let _joining = self.joining.lock().unwrap_or_else(PoisonError::into_inner);
        let me = std::thread::current().id();
        loop {
            // A worker replaced while we join pushes its successor's handle
            // before it exits, so the next round finds it.
            let threads = std::mem::take(&mut *self.threads());
            if threads.is_empty() {
                return;
            }
            for thread in threads {
                if thread.thread().id() == me {
                    continue; // never join oneself (cannot happen: see on_worker)
                }
                if thread.join().is_err() {
                    // Handlers run under catch_unwind; only a panic in the
                    // stage's own bookkeeping (a logging layer) gets here.
                    tracing::error!(
                        target: "milieu::stage",
                        stage = %self.name,
                        "a worker thread of stage `{}` ended with a panic outside its handler",
                        self.name
                    );
                }
            }
        }
    }

    /// The last handle went away: close with `Drain`, joining the workers
    /// unless this is one of them (then they finish the queue and exit on
    /// their own).
    pub(super) fn last_handle_dropped(&self) {
        if self.on_worker() {
            self.shut(CloseMode::Drain);
        } else {
            let _ = self.close(CloseMode::Drain);
        }
    }

    /// A worker slot has no thread any more. The last one closes the stage
    /// and cancels what is left, so no submitter waits forever.
    fn retire(&self) {
        let mut state = self.state();
        state.live = state.live.saturating_sub(1);
        let last = state.live == 0;
        drop(state);
        if last {
            self.shut(CloseMode::Cancel);
        }
    }

    /// Whether a worker that panicked needs a successor: not when the
    /// stage is closed and nothing is left to drain.
    fn wants_replacement(&self) -> bool {
        let state = self.state();
        !(state.closed && state.jobs.is_empty())
    }

    pub(super) fn stats(&self) -> StageStats {
        let c = &self.counters;
        let completed = c.completed.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let latency_histogram = self.latency.snapshot();
        StageStats {
            name: self.name.to_string(),
            capacity: self.capacity,
            workers: self.state().live,
            queue_depth: self.depth.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            completed,
            panicked: c.panicked.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            replaced: c.replaced.load(Ordering::Relaxed),
            throughput: if elapsed > 0.0 {
                completed as f64 / elapsed
            } else {
                0.0
            },
            latency_p50: latency_histogram.quantile(0.50),
            latency_p99: latency_histogram.quantile(0.99),
            latency_histogram,
            batches: c.batches.load(Ordering::Relaxed),
            batched_items: c.batched_items.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Counts a fresh worker slot (at build, before its thread starts).
    pub(super) fn add_slot(&self) {
        self.state().live += 1;
    }

    /// Stops a stage whose build failed: nothing was handed out yet.
    pub(super) fn abort(&self) {
        self.shut(CloseMode::Cancel);
        self.join_all();
    }
}

/// Registers (or refreshes) a `submit_wait` waker.
fn register<In, Out>(state: &mut QueueState<In, Out>, id: &mut Option<u64>, waker: &Waker) {
    if let Some(known) = *id {
        if let Some(w) = state.waiters.iter_mut().find(|w| w.id == known) {
            // Keeps its place in line; the turn it may have had is used up
            // by this poll, which found the queue full again.
            match &mut w.waker {
                Some(old) => old.clone_from(waker),
                none => *none = Some(waker.clone()),
            }
            return;
        }
    }
    let new = state.next_waiter_id;
    state.next_waiter_id += 1;
    state.waiters.push_back(Waiter {
        id: new,
        waker: Some(waker.clone()),
    });
    *id = Some(new);
}

/// Takes the waker of the oldest waiter that has not been woken yet.
fn take_oldest_waker<In, Out>(state: &mut QueueState<In, Out>) -> Option<Waker> {
    state.waiters.iter_mut().find_map(|w| w.waker.take())
}

/// How a worker's handler stopped serving.
pub(super) enum Served<Out> {
    /// The stage closed and the queue is empty.
    Closed,
    /// The handler panicked; the replies are sent once a successor is
    /// started.
    Panicked {
        /// The replies of the items the panicking call was handling (one,
        /// or a whole batch).
        replies: Vec<oneshot::Sender<Result<Out, StageError>>>,
        error: StageError,
    },
}

/// A worker's handler: one item per call (`build_with`) or a batch
/// (`build_batched_with`).
pub(super) trait Handler<In, Out> {
    /// Runs jobs until the stage closes or the handler panics.
    fn serve(self, queue: &StageQueue<In, Out>) -> Served<Out>;
}

/// A handler of one item per call.
pub(super) struct OneByOne<H>(pub(super) H);

/// A handler of batches.
pub(super) struct InBatches<H>(pub(super) H);

impl<In, Out, H: FnMut(In) -> Out> Handler<In, Out> for OneByOne<H> {
    fn serve(self, queue: &StageQueue<In, Out>) -> Served<Out> {
        serve(queue, self.0)
    }
}

impl<In, Out, H: FnMut(Vec<Batched<In>>) -> Vec<Out>> Handler<In, Out> for InBatches<H> {
    fn serve(self, queue: &StageQueue<In, Out>) -> Served<Out> {
        serve_batches(queue, self.0)
    }
}

/// Starts a worker thread for `slot`. `ready` is for `build`: the worker
/// reports there whether its handler factory succeeded.
pub(super) fn spawn_worker<In, Out, M, H>(
    queue: &Arc<StageQueue<In, Out>>,
    make: &Arc<M>,
    slot: usize,
    ready: Option<mpsc::Sender<Result<(), String>>>,
) -> io::Result<()>
where
    In: Send + 'static,
    Out: Send + 'static,
    M: Fn() -> H + Send + Sync + 'static,
    H: Handler<In, Out> + 'static,
{
    let (worker_queue, worker_make) = (Arc::clone(queue), Arc::clone(make));
    let thread = std::thread::Builder::new()
        .name(format!("{}-{slot}", queue.name))
        .spawn(move || work(worker_queue, worker_make, slot, ready))?;
    let mut threads = queue.threads();
    // Replaced workers that already exited are detached here, so a long
    // series of panics does not pile up handles.
    threads.retain(|t| !t.is_finished());
    threads.push(thread);
    Ok(())
}

/// The body of a worker thread.
fn work<In, Out, M, H>(
    queue: Arc<StageQueue<In, Out>>,
    make: Arc<M>,
    slot: usize,
    mut ready: Option<mpsc::Sender<Result<(), String>>>,
) where
    In: Send + 'static,
    Out: Send + 'static,
    M: Fn() -> H + Send + Sync + 'static,
    H: Handler<In, Out> + 'static,
{
    let me = std::thread::current().id();
    queue.state().members.push(me);
    // One round per handler: a handler that panicked is dropped and this
    // thread hands its slot to a fresh thread (or, if the OS refuses one,
    // builds a fresh handler itself).
    loop {
        // 1. This worker's own handler, built in the context of `build`.
        let made = queue
            .build_ctx
            .run(|| catch_unwind(AssertUnwindSafe(|| make())));
        let handler = match made {
            Ok(handler) => handler,
            Err(panic) => {
                let message = crate::panic::message(&*panic);
                drop_quietly(panic);
                match ready.take() {
                    // `build` reports it and stops the stage.
                    Some(tx) => drop(tx.send(Err(message))),
                    None => {
                        tracing::error!(
                            target: "milieu::stage",
                            stage = %queue.name,
                            panic = %message,
                            "stage `{}`: the handler factory panicked while replacing a \
                             worker; the slot stays empty",
                            queue.name
                        );
                        queue.retire();
                    }
                }
                break;
            }
        };
        if let Some(tx) = ready.take() {
            let _ = tx.send(Ok(()));
        }

        // 2. Jobs until the stage closes or the handler panics.
        let (replies, error) = match handler.serve(&queue) {
            Served::Closed => {
                queue.retire();
                break;
            }
            Served::Panicked { replies, error } => (replies, error),
        };
        let answer = |replies: Vec<oneshot::Sender<Result<Out, StageError>>>| {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        };

        // 3. A successor first, then the answer: whoever sees `Panicked`
        //    also sees the stage at full strength and `replaced` counted.
        if !queue.wants_replacement() {
            queue.retire();
            answer(replies);
            break;
        }
        queue.counters.replaced.fetch_add(1, Ordering::Relaxed);
        match spawn_worker(&queue, &make, slot, None) {
            Ok(()) => {
                answer(replies);
                break;
            }
            Err(e) => {
                tracing::error!(
                    target: "milieu::stage",
                    stage = %queue.name,
                    "stage `{}`: cannot start a replacement worker ({e}); this thread \
                     rebuilds its handler instead",
                    queue.name
                );
                answer(replies);
            }
        }
    }
    queue.state().members.retain(|id| *id != me);
}

/// Runs jobs through `handler` until the stage closes or it panics.
fn serve<In, Out, H>(queue: &StageQueue<In, Out>, mut handler: H) -> Served<Out>
where
    H: FnMut(In) -> Out,
{
    while let Some(job) = queue.next_job() {
        let Job {
            item,
            reply,
            ctx,
            submitted,
            alone: _,
        } = job;
        // The handler runs in the submitter's context; a panic is logged
        // there too, so the dump shows whose item it was.
        let outcome = run_caught(&ctx, &queue.name, "handler", || handler(item));
        let done = Instant::now();
        queue.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(out) => {
                queue
                    .latency
                    .record(done.saturating_duration_since(submitted));
                queue.counters.completed.fetch_add(1, Ordering::Relaxed);
                // Wakes the awaiting task; its continuation runs wherever
                // it is polled (the reactor thread), never here.
                let _ = reply.send(Ok(out));
            }
            Err(panic) => {
                queue.counters.panicked.fetch_add(1, Ordering::Relaxed);
                let message = crate::panic::message(&*panic);
                drop_quietly(panic);
                // The handler's state may be broken: it goes, with its
                // thread (its destructor is user code too).
                drop_quietly(handler);
                let error = StageError::Panicked {
                    stage: queue.name.to_string(),
                    message,
                };
                return Served::Panicked {
                    replies: vec![reply],
                    error,
                };
            }
        }
        // `ctx` drops here, outside the lock; it may hold the last handle.
    }
    Served::Closed
}

/// Runs batches through `handler` until the stage closes or it panics.
///
/// The handler runs in the context of `build` and enters each item's own
/// context itself ([`Batched::context`]). Its outputs answer the items in
/// order; an item it gave no output for is answered `Cancelled`.
fn serve_batches<In, Out, H>(queue: &StageQueue<In, Out>, mut handler: H) -> Served<Out>
where
    H: FnMut(Vec<Batched<In>>) -> Vec<Out>,
{
    while let Some(jobs) = queue.next_batch() {
        let size = jobs.len();
        let mut replies = Vec::with_capacity(size);
        let mut submitted = Vec::with_capacity(size);
        let batch: Vec<Batched<In>> = jobs
            .into_iter()
            .map(|job| {
                replies.push(job.reply);
                submitted.push(job.submitted);
                Batched {
                    item: job.item,
                    context: job.ctx,
                }
            })
            .collect();
        let c = &queue.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.batched_items.fetch_add(size as u64, Ordering::Relaxed);
        c.largest_batch.fetch_max(size, Ordering::Relaxed);
        let outcome = run_caught(&queue.build_ctx, &queue.name, "batch handler", || {
            handler(batch)
        });
        let done = Instant::now();
        c.in_flight.fetch_sub(size, Ordering::Relaxed);
        match outcome {
            Ok(outputs) => {
                let mut outputs = outputs.into_iter();
                for (reply, submitted) in replies.into_iter().zip(submitted) {
                    match outputs.next() {
                        Some(out) => {
                            queue
                                .latency
                                .record(done.saturating_duration_since(submitted));
                            c.completed.fetch_add(1, Ordering::Relaxed);
                            let _ = reply.send(Ok(out));
                        }
                        None => {
                            c.cancelled.fetch_add(1, Ordering::Relaxed);
                            let stage = queue.name.to_string();
                            let _ = reply.send(Err(StageError::Cancelled { stage }));
                        }
                    }
                }
                // Outputs beyond the batch have no one to go to.
                outputs.for_each(drop_quietly);
            }
            Err(panic) => {
                c.panicked.fetch_add(size as u64, Ordering::Relaxed);
                let message = crate::panic::message(&*panic);
                drop_quietly(panic);
                drop_quietly(handler);
                let error = StageError::Panicked {
                    stage: queue.name.to_string(),
                    message,
                };
                return Served::Panicked { replies, error };
            }
        }
    }
    Served::Closed
}

/// Drops a value whose destructor is user code, swallowing its panic.
fn drop_quietly<T>(value: T) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// Runs `f` in `ctx`, catching a panic and logging it inside `ctx` (as
/// stage `stage`'s `what`), so the event carries that context.
fn run_caught<R>(
    ctx: &Context,
    stage: &str,
    what: &'static str,
    f: impl FnOnce() -> R,
) -> std::thread::Result<R> {
    ctx.run(|| {
        let outcome = catch_unwind(AssertUnwindSafe(f));
        if let Err(panic) = &outcome {
            crate::panic::log(crate::panic::Catcher::Stage(stage), what, &**panic);
        }
        outcome
    })
}
