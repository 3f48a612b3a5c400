//! Stages on real threads and the milieu reactor: refusal, context
//! crossing, where continuations run, panics and replacement, closing,
//! waiting for room, figures. Every wait is bounded; nothing asserts on
//! timing.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use common::{assert_contains, poll_once, Capture};
use milieu::dump::HopKind;
use milieu::reactor::Reactor;
use milieu::stage::{
    CloseError, CloseMode, RefuseReason, Stage, StageBuildError, StageError, Submission,
};

/// The bound on every wait in this file.
const LIMIT: Duration = Duration::from_secs(10);

struct RequestId(u64);

/// Runs `fut` on a fresh reactor; fails if it takes longer than [`LIMIT`].
#[track_caller]
fn run<F: Future>(fut: F) -> F::Output {
    let mut reactor = Reactor::new().expect("reactor");
    let handle = reactor.handle();
    reactor
        .run_until(handle.timeout(LIMIT, fut))
        .expect("readiness poll")
        .expect("the future finished within the limit")
}

/// Holds a handler until released, and tells when it started.
#[derive(Clone)]
struct Gate {
    started: mpsc::Sender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

/// The test's side of a [`Gate`].
struct GateControl {
    started: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

fn gate() -> (Gate, GateControl) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = Gate {
        started: started_tx,
        release: Arc::new(Mutex::new(release_rx)),
    };
    let control = GateControl {
        started: started_rx,
        release: release_tx,
    };
    (gate, control)
}

impl Gate {
    /// Says "started", then waits for a release (at most [`LIMIT`]).
    fn pass(&self) {
        let _ = self.started.send(());
        let _ = self.release.lock().unwrap().recv_timeout(LIMIT);
    }
}

impl GateControl {
    #[track_caller]
    fn wait_started(&self) {
        self.started
            .recv_timeout(LIMIT)
            .expect("the handler started within the limit");
    }

    fn release(&self) {
        let _ = self.release.send(());
    }
}

/// A one-worker stage whose handler holds item 0 at the gate and returns
/// every item unchanged.
fn gated(name: &str, capacity: usize, gate: Gate) -> Stage<u32, u32> {
    Stage::builder(name)
        .capacity(capacity)
        .build(move |item: u32| {
            if item == 0 {
                gate.pass();
            }
            item
        })
        .unwrap()
}

/// Waits until `condition` holds, at most [`LIMIT`].
#[track_caller]
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn poll_with<F: Future + Unpin>(fut: &mut F, waker: &Arc<CountingWaker>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::clone(waker));
    Pin::new(fut).poll(&mut TaskContext::from_waker(&waker))
}

#[test]
fn a_full_queue_refuses_at_once_and_gives_the_item_back() {
    let (gate, control) = gate();
    let stage = gated("full", 2, gate);
    let first = stage.submit(0).unwrap();
    control.wait_started(); // the only worker holds item 0: the queue is empty
    let queued = [stage.submit(1).unwrap(), stage.submit(2).unwrap()];

    let refused = stage.submit(3).unwrap_err();
    assert_eq!(refused.reason, RefuseReason::Full { capacity: 2 });
    assert_eq!(refused.stage(), "full");
    assert_contains(&refused.to_string(), "stage `full` refused an item");
    assert_eq!(refused.into_item(), 3);
    let stats = stage.stats();
    assert_eq!((stats.queue_depth, stats.in_flight), (2, 1));
    assert_eq!((stats.accepted, stats.refused), (3, 1));

    control.release();
    let results = run(async move {
        let mut results = vec![first.await.unwrap()];
        for submission in queued {
            results.push(submission.await.unwrap());
        }
        results
    });
    assert_eq!(results, [0, 1, 2]);
}

#[test]
fn the_handler_runs_in_the_submitters_context_after_a_stage_hop() {
    let stage = Stage::builder("orders")
        .build(|_: ()| {
            let id = milieu::with(|r: &RequestId| r.0).ok();
            let thread = std::thread::current().name().map(str::to_owned);
            (id, thread, milieu::dump())
        })
        .unwrap();

    let (submission, line) = milieu::scope()
        .with(RequestId(42))
        .run(|| (stage.submit(()), line!()));
    let (id, thread, dump) = run(submission.unwrap()).unwrap();

    assert_eq!(id, Some(42));
    assert_eq!(thread.as_deref(), Some("orders-0"));
    let entry = dump
        .entries()
        .find(|e| e.type_name.ends_with("RequestId"))
        .expect("the request id crossed into the worker");
    let hop = entry.provenance.hops.last().expect("a hop was recorded");
    assert_eq!(hop.kind, HopKind::Stage);
    assert_eq!(hop.label.as_deref(), Some("orders"));
    assert_eq!((hop.site.file, hop.site.line), (file!(), line));
    assert_eq!(
        hop.to.as_ref().and_then(|t| t.name.as_deref()),
        Some("orders-0")
    );
    let text = dump.to_string();
    assert_contains(&text, "stage `orders`");
    assert_contains(&text, &format!("{}:{line}:", file!()));
}

#[test]
fn the_code_after_await_runs_on_the_reactor_thread_in_its_own_context() {
    let stage = Stage::builder("where")
        .build(|_: ()| std::thread::current().id())
        .unwrap();
    let reactor_thread = std::thread::current().id();

    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let s = stage.clone();
    let task = handle.spawn(async move {
        let submission = milieu::scope().with(RequestId(5)).run(|| s.submit(()))?;
        let worker: ThreadId = submission.await?;
        // The task never left: its thread and its context are its own.
        let here = std::thread::current().id();
        let sees_request = milieu::contains::<RequestId>();
        Ok::<_, StageError>((worker, here, sees_request))
    });
    let (worker, here, sees_request) = reactor
        .run_until(handle.timeout(LIMIT, task))
        .unwrap()
        .expect("within the limit")
        .expect("task ran")
        .expect("stage ran the item");

    assert_ne!(worker, reactor_thread, "the handler ran on a worker");
    assert_eq!(here, reactor_thread, "the continuation ran on the reactor");
    assert!(!sees_request, "the submit's scope ended before the await");
}

#[test]
fn a_panic_fails_its_item_and_a_fresh_worker_with_fresh_state_takes_over() {
    let made = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&made);
    let stage = Stage::builder("fragile")
        .build_with(move || {
            let generation = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let mut handled = 0;
            move |item: &'static str| {
                handled += 1;
                if item == "boom" {
                    panic!("cannot handle {item}");
                }
                (generation, handled, std::thread::current().id())
            }
        })
        .unwrap();

    let capture = Capture::new();
    let log = milieu::provide_subscriber(capture.clone());
    let first = stage.submit("ok").unwrap();
    let boom = milieu::scope()
        .with(RequestId(9))
        .run(|| stage.submit("boom").unwrap());
    let after = stage.submit("ok").unwrap();
    drop(log);
    let (first, boom, after) = run(async { (first.await, boom.await, after.await) });

    let (generation, handled, first_thread) = first.unwrap();
    assert_eq!((generation, handled), (1, 1));
    match boom.unwrap_err() {
        StageError::Panicked { stage, message } => {
            assert_eq!(stage, "fragile");
            assert_eq!(message, "cannot handle boom");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    let (generation, handled, after_thread) = after.unwrap();
    assert_eq!((generation, handled), (2, 1), "a fresh handler");
    assert_ne!(after_thread, first_thread, "on a fresh thread");
    assert_eq!(made.load(Ordering::SeqCst), 2);
    let stats = stage.stats();
    assert_eq!((stats.panicked, stats.replaced, stats.completed), (1, 1, 2));
    assert_eq!(stats.workers, 1);

    // The panic went to the submitter's log monitor, with its context.
    let events = capture.events();
    let event = events
        .iter()
        .find(|e| e.target == "milieu::stage")
        .expect("the panic was logged");
    assert_eq!(event.field("panic"), Some("cannot handle boom"));
    assert_contains(event.field("context").unwrap(), "RequestId");
    assert_contains(event.field("context").unwrap(), "stage `fragile`");
}

#[test]
fn close_drain_runs_everything_queued_and_then_refuses() {
    let (gate, control) = gate();
    let stage = gated("drain", 8, gate);
    let first = stage.submit(0).unwrap();
    control.wait_started();
    let queued: Vec<Submission<u32>> = (1..4).map(|i| stage.submit(i).unwrap()).collect();

    // Closing stops accepting before it waits for the workers.
    let closer = {
        let stage = stage.clone();
        std::thread::spawn(move || stage.close(CloseMode::Drain))
    };
    eventually("the stage stops accepting", || stage.is_closed());
    let refused = stage.submit(99).unwrap_err();
    assert_eq!(refused.reason, RefuseReason::Closed);
    assert_eq!(refused.into_item(), 99);

    control.release();
    closer.join().unwrap().unwrap();
    let results = run(async move {
        let mut results = vec![first.await.unwrap()];
        for submission in queued {
            results.push(submission.await.unwrap());
        }
        results
    });
    assert_eq!(results, [0, 1, 2, 3]);
    let stats = stage.stats();
    assert_eq!((stats.completed, stats.refused, stats.workers), (4, 1, 0));
}

#[test]
fn close_cancel_answers_queued_items_with_cancelled() {
    let (gate, control) = gate();
    let stage = gated("cancel", 8, gate);
    let running = stage.submit(0).unwrap();
    control.wait_started();
    let queued: Vec<Submission<u32>> = (1..3).map(|i| stage.submit(i).unwrap()).collect();

    let closer = {
        let stage = stage.clone();
        std::thread::spawn(move || stage.close(CloseMode::Cancel))
    };
    // Cancelled items are answered before close waits for the worker.
    let cancelled = run(async move {
        let mut errors = Vec::new();
        for submission in queued {
            errors.push(submission.await.unwrap_err());
        }
        errors
    });
    for error in cancelled {
        assert_eq!(
            error,
            StageError::Cancelled {
                stage: "cancel".into()
            }
        );
    }
    control.release();
    closer.join().unwrap().unwrap();
    assert_eq!(run(running).unwrap(), 0, "the item in the handler finished");
    let stats = stage.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 2));
}

#[test]
fn dropping_the_last_handle_drains_the_queue() {
    let (gate, control) = gate();
    let stage = gated("dropped", 8, gate);
    let first = stage.submit(0).unwrap();
    control.wait_started();
    let queued: Vec<Submission<u32>> = (1..4).map(|i| stage.submit(i).unwrap()).collect();
    control.release();
    drop(stage); // waits for the queue to drain
    let mut results = vec![run(first).unwrap()];
    for submission in queued {
        // Already answered: the drop joined the worker.
        results.push(poll_ready(submission).unwrap());
    }
    assert_eq!(results, [0, 1, 2, 3]);
}

/// The output of a future that must already be ready.
#[track_caller]
fn poll_ready<F: Future + Unpin>(mut fut: F) -> F::Output {
    match poll_once(Pin::new(&mut fut)) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("expected a ready future"),
    }
}

/// A job that is a closure: lets a handler act on its own stage without
/// the stage type naming itself.
type Job = Box<dyn FnOnce() -> Option<CloseError> + Send>;

#[test]
fn close_from_a_worker_is_an_error_not_a_deadlock() {
    let stage: Stage<Job, Option<CloseError>> =
        Stage::builder("closer").build(|job: Job| job()).unwrap();
    let s = stage.clone();
    let submission = stage
        .submit(Box::new(move || s.close(CloseMode::Drain).err()))
        .unwrap();
    let error = run(submission).unwrap().expect("close refused");
    assert_eq!(
        error,
        CloseError::FromWorker {
            stage: "closer".into(),
            thread: "closer-0".into(),
        }
    );
    assert_contains(&error.to_string(), "its own worker thread `closer-0`");
    assert!(!stage.is_closed(), "nothing was done");
    stage.close(CloseMode::Drain).unwrap();
}

#[test]
fn the_last_handle_dropped_inside_a_handler_closes_without_joining() {
    let (exited_tx, exited_rx) = mpsc::channel::<()>();
    let exited_tx = Mutex::new(exited_tx);
    let stage: Stage<Job, Option<CloseError>> = Stage::builder("last")
        .build_with(move || {
            // Reports when the worker thread ends (its handler drops).
            let signal = DropSignal(exited_tx.lock().unwrap().clone());
            move |job: Job| {
                let _keep = &signal;
                job()
            }
        })
        .unwrap();
    let s = stage.clone();
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
    let submission = stage
        .submit(Box::new(move || {
            // Once the test has dropped its handle, this is the last one.
            let _ = dropped_rx.recv_timeout(LIMIT);
            drop(s);
            None
        }))
        .unwrap();
    drop(stage);
    dropped_tx.send(()).unwrap();
    // Had the drop joined on the worker, this would never arrive.
    exited_rx
        .recv_timeout(LIMIT)
        .expect("the worker exited by itself");
    assert!(run(submission).unwrap().is_none());
}

struct DropSignal(mpsc::Sender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn submit_wait_waits_for_room_then_succeeds() {
    let (gate, control) = gate();
    let stage = gated("wait", 1, gate);
    let first = stage.submit(0).unwrap();
    control.wait_started();
    let second = stage.submit(1).unwrap(); // the queue is full now

    let mut waiting = stage.submit_wait(2);
    let waker = Arc::new(CountingWaker::default());
    assert!(poll_with(&mut waiting, &waker).is_pending(), "no room yet");
    assert_eq!(waker.wakes(), 0);
    control.release();
    eventually("a freed slot wakes the waiter", || waker.wakes() == 1);

    let polls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&polls);
    let results = run(async move {
        let submission = CountPolls {
            inner: waiting,
            polls: counted,
        }
        .await
        .unwrap();
        [
            first.await.unwrap(),
            second.await.unwrap(),
            submission.await.unwrap(),
        ]
    });
    assert_eq!(results, [0, 1, 2]);
    assert_eq!(
        polls.load(Ordering::SeqCst),
        1,
        "ready at the first poll after the wake"
    );
    assert_eq!(stage.stats().refused, 0);
}

/// Counts the polls of the future it wraps.
struct CountPolls<F> {
    inner: F,
    polls: Arc<AtomicUsize>,
}

impl<F: Future + Unpin> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[test]
fn a_waiter_that_goes_away_passes_its_turn_on() {
    let (gate, control) = gate();
    let stage = gated("turns", 1, gate);
    let first = stage.submit(0).unwrap();
    control.wait_started();
    let second = stage.submit(1).unwrap();

    let (a_waker, b_waker) = (Arc::default(), Arc::default());
    let mut a = stage.submit_wait(10);
    let mut b = stage.submit_wait(11);
    assert!(poll_with(&mut a, &a_waker).is_pending());
    assert!(poll_with(&mut b, &b_waker).is_pending());
    control.release(); // one slot frees: the oldest waiter's turn
    eventually("a is woken", || a_waker.wakes() == 1);
    assert_eq!(b_waker.wakes(), 0);
    drop(a);
    assert_eq!(b_waker.wakes(), 1, "a passed its turn to b");
    let Poll::Ready(Ok(b)) = poll_with(&mut b, &b_waker) else {
        panic!("b finds room");
    };
    assert_eq!(
        run(async { [first.await, second.await, b.await] }),
        [Ok(0), Ok(1), Ok(11)]
    );
}

#[test]
fn a_waiter_is_refused_with_its_item_when_the_stage_closes() {
    let (gate, control) = gate();
    let stage = gated("closing", 1, gate);
    let first = stage.submit(0).unwrap();
    control.wait_started();
    let second = stage.submit(1).unwrap();
    let mut waiting = stage.submit_wait(2);
    let waker = Arc::new(CountingWaker::default());
    assert!(poll_with(&mut waiting, &waker).is_pending());

    let closer = {
        let stage = stage.clone();
        std::thread::spawn(move || stage.close(CloseMode::Cancel))
    };
    eventually("closing wakes the waiter", || waker.wakes() == 1);
    let Poll::Ready(Err(refused)) = poll_with(&mut waiting, &waker) else {
        panic!("a closed stage refuses the waiter");
    };
    assert_eq!(refused.reason, RefuseReason::Closed);
    assert_eq!(refused.into_item(), 2);
    control.release();
    closer.join().unwrap().unwrap();
    assert_eq!(run(first), Ok(0));
    assert!(matches!(run(second), Err(StageError::Cancelled { .. })));
    // Already closed: refused at the first poll.
    assert!(run(stage.submit_wait(3)).is_err());
}

#[test]
fn the_figures_add_up() {
    let (gate, control) = gate();
    let stage = Stage::builder("figures")
        .capacity(4)
        .workers(1)
        .build(move |item: u32| {
            match item {
                0 => gate.pass(),
                13 => panic!("unlucky"),
                _ => {}
            }
            item
        })
        .unwrap();
    let mut submissions = vec![stage.submit(0).unwrap()];
    control.wait_started();
    for item in [1, 13, 2, 3] {
        submissions.push(stage.submit(item).unwrap());
    }
    assert!(stage.submit(4).is_err(), "full");
    control.release();
    let results = run(async move {
        let mut results = Vec::new();
        for submission in submissions {
            results.push(submission.await);
        }
        results
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);

    // Hold the (replacement) worker again, queue two, cancel them.
    let held = stage.submit(0).unwrap();
    control.wait_started();
    let doomed = [stage.submit(7).unwrap(), stage.submit(8).unwrap()];
    let closer = {
        let stage = stage.clone();
        std::thread::spawn(move || stage.close(CloseMode::Cancel))
    };
    eventually("the stage stops accepting", || stage.is_closed());
    assert!(stage.submit(5).is_err(), "closed");
    control.release();
    closer.join().unwrap().unwrap();
    assert_eq!(run(held), Ok(0));
    for submission in doomed {
        assert!(matches!(run(submission), Err(StageError::Cancelled { .. })));
    }

    let s = stage.stats();
    assert_eq!(s.accepted, s.completed + s.panicked + s.cancelled, "{s}");
    assert_eq!(
        (s.accepted, s.completed, s.panicked, s.cancelled),
        (8, 5, 1, 2)
    );
    assert_eq!(s.refused, 2);
    assert_eq!((s.queue_depth, s.in_flight, s.workers), (0, 0, 0));
    assert_eq!(s.replaced, 1);
    assert!(s.throughput > 0.0);
    let (p50, p99) = (s.latency_p50.unwrap(), s.latency_p99.unwrap());
    assert!(p50 <= p99, "{s}");
    let line = s.to_string();
    assert!(line.starts_with("stage `figures`: 0/4 queued"), "{line}");
    assert_contains(
        &line,
        "accepted 8, refused 2, completed 5, panicked 1, cancelled 2",
    );
}

#[test]
fn a_stage_in_the_context_shows_its_figures_in_every_dump() {
    let stage = Stage::builder("visible")
        .capacity(16)
        .build(|x: u8| x)
        .unwrap();
    assert_eq!(run(stage.submit(1).unwrap()), Ok(1));
    let dump = milieu::scope()
        .with_debug(stage.clone())
        .because("the service's pricing stage")
        .run(|| milieu::dump().to_string());
    assert_contains(&dump, "Stage { name: \"visible\", capacity: 16");
    assert_contains(&dump, "accepted: 1");
    assert_contains(&dump, "completed: 1");
}

#[test]
fn a_handler_factory_runs_on_each_worker_in_the_build_context() {
    struct Dsn(&'static str);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let stage = milieu::scope().with(Dsn("postgres://orders")).run(|| {
        Stage::builder("db")
            .workers(3)
            .build_with(move || {
                let dsn = milieu::with(|d: &Dsn| d.0).unwrap_or("missing");
                let thread = std::thread::current().name().unwrap().to_owned();
                record.lock().unwrap().push((thread, dsn));
                move |_: ()| {}
            })
            .unwrap()
    });
    // `build` returned once every worker had its handler.
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("db-0".to_owned(), "postgres://orders"),
            ("db-1".to_owned(), "postgres://orders"),
            ("db-2".to_owned(), "postgres://orders"),
        ]
    );
    assert_eq!(stage.stats().workers, 3);
}

#[test]
fn bad_configurations_are_refused_at_build() {
    let zero = Stage::builder("q")
        .capacity(0)
        .build(|x: u8| x)
        .unwrap_err();
    assert!(matches!(zero, StageBuildError::ZeroCapacity { .. }));
    assert_contains(&zero.to_string(), "capacity(0)");
    let none = Stage::builder("w").workers(0).build(|x: u8| x).unwrap_err();
    assert!(matches!(none, StageBuildError::ZeroWorkers { .. }));
    let nul = Stage::builder("a\0b").build(|x: u8| x).unwrap_err();
    assert!(matches!(nul, StageBuildError::InvalidName { .. }));

    let factory = Stage::builder("broken")
        .workers(2)
        .build_with(|| -> fn(u8) -> u8 { panic!("no database") })
        .unwrap_err();
    match &factory {
        StageBuildError::HandlerPanicked { stage, message } => {
            assert_eq!(
                (stage.as_str(), message.as_str()),
                ("broken", "no database")
            );
        }
        other => panic!("expected HandlerPanicked, got {other:?}"),
    }
}

#[test]
fn a_refusal_converts_into_a_stage_error_with_question_mark() {
    let stage = Stage::builder("convert").build(|x: u8| x).unwrap();
    stage.close(CloseMode::Drain).unwrap();
    let outcome = run(async {
        let value = stage.submit(1)?.await?;
        Ok::<u8, StageError>(value)
    });
    assert_eq!(
        outcome,
        Err(StageError::Refused {
            stage: "convert".into(),
            reason: RefuseReason::Closed
        })
    );
}

#[test]
fn stages_and_their_futures_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Stage<Vec<u8>, String>>();
    send_sync::<StageError>();
    send::<Submission<String>>();
    send::<milieu::stage::SubmitWait<Vec<u8>, String>>();
    // Items need only be `Send`: a handler takes them by value.
    send_sync::<Stage<std::cell::Cell<u8>, ()>>();
}

#[test]
fn every_idle_spin_serves_every_item_from_one_and_many_submitters() {
    // No spin (workers sleep after each job), the default, a spin longer
    // than the gaps between items, and one without end: a lost wake-up or
    // an item missed by a watching worker would leave a submission
    // unanswered.
    for spin in [
        Duration::ZERO,
        Duration::from_micros(50),
        Duration::from_millis(5),
        Duration::MAX,
    ] {
        let stage = Stage::builder("spin")
            .workers(2)
            .idle_spin(spin)
            .build(|x: u64| x * 2)
            .unwrap();

        // One submitter on the reactor, each item after the last result.
        let sequential = {
            let stage = stage.clone();
            run(async move {
                let mut sum = 0;
                for i in 0..500u64 {
                    sum += stage.submit(i).unwrap().await.unwrap();
                }
                sum
            })
        };
        assert_eq!(
            sequential,
            (0..500u64).map(|i| i * 2).sum::<u64>(),
            "{spin:?}"
        );

        // Four threads at once, waiting for room rather than refused; each
        // reports its sum over a channel, so a lost wake-up fails the test
        // after LIMIT instead of hanging it.
        let (sums_tx, sums) = mpsc::channel();
        for t in 0..4u64 {
            let stage = stage.clone();
            let sums_tx = sums_tx.clone();
            std::thread::spawn(move || {
                let sum = (0..200u64)
                    .map(|i| {
                        let item = t * 1000 + i;
                        futures::executor::block_on(async {
                            stage.submit_wait(item).await.unwrap().await.unwrap()
                        })
                    })
                    .sum::<u64>();
                let _ = sums_tx.send(sum);
            });
        }
        let total: u64 = (0..4)
            .map(|_| sums.recv_timeout(LIMIT).expect("every thread finished"))
            .sum();
        let expected: u64 = (0..4u64)
            .flat_map(|t| (0..200u64).map(move |i| (t * 1000 + i) * 2))
            .sum();
        assert_eq!(total, expected, "{spin:?}");
        stage.close(CloseMode::Drain).unwrap();
        assert_eq!(stage.stats().completed, 1300, "{spin:?}");
    }
}

#[test]
fn close_does_not_wait_out_a_watching_worker() {
    // A worker watches for work for an hour after each job; closing ends
    // the watch instead of waiting for it (bounded: the test fails, not
    // hangs, if it does not).
    let stage = Stage::builder("watching")
        .idle_spin(Duration::from_secs(3600))
        .build(|x: u32| x)
        .unwrap();
    let answer = run(stage.submit(7).unwrap());
    assert_eq!(answer.unwrap(), 7);
    let (done_tx, done_rx) = mpsc::channel();
    let closer = {
        let stage = stage.clone();
        std::thread::spawn(move || {
            let closed = stage.close(CloseMode::Drain);
            let _ = done_tx.send(());
            closed
        })
    };
    done_rx
        .recv_timeout(LIMIT)
        .expect("close returned while the worker was watching");
    closer.join().unwrap().unwrap();
    assert_eq!(stage.stats().workers, 0);
}
