//! Batched stages on real threads: what a worker takes at once, in which
//! order, in whose context; panics; a slow batch and the other workers.
//! Every wait is bounded; nothing asserts on timing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::future::join_all;
use milieu::stage::{Batched, Batching, CloseMode, Stage, StageError};

/// The bound on every wait in this file.
const LIMIT: Duration = Duration::from_secs(10);

struct RequestId(u32);

/// Waits (bounded) until `condition` holds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The stage, the batches it saw, the release of the held batch, and
/// whether one is held.
type Recorder = (
    Stage<u32, u32>,
    Arc<Mutex<Vec<Vec<u32>>>>,
    mpsc::SyncSender<()>,
    Arc<AtomicBool>,
);

/// A one-worker stage whose handler records each batch (the items, and
/// the `RequestId` each item's context holds) and holds the batch that
/// contains item 0 until `release` is sent to.
fn recording(batching: Batching<u32>) -> Recorder {
    let batches: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
    let seen = Arc::clone(&batches);
    let (release, released) = mpsc::sync_channel::<()>(1);
    let released = Arc::new(Mutex::new(released));
    let holding = Arc::new(AtomicBool::new(false));
    let held = Arc::clone(&holding);
    let stage = Stage::builder("recorder")
        .build_batched_with(batching, move || {
            let (seen, released, held) =
                (Arc::clone(&seen), Arc::clone(&released), Arc::clone(&held));
            move |batch: Vec<Batched<u32>>| -> Vec<u32> {
                let items: Vec<u32> = batch.iter().map(|b| b.item).collect();
                if items.contains(&0) {
                    held.store(true, Ordering::SeqCst);
                    let _ = released.lock().unwrap().recv_timeout(LIMIT);
                }
                seen.lock().unwrap().push(items);
                batch
                    .into_iter()
                    .map(|b| {
                        let id = b.context.run(|| milieu::with(|r: &RequestId| r.0)).unwrap();
                        assert_eq!(id, b.item, "each item runs in its submitter's context");
                        b.item * 10
                    })
                    .collect()
            }
        })
        .unwrap();
    (stage, batches, release, holding)
}

fn submit(stage: &Stage<u32, u32>, item: u32) -> milieu::stage::Submission<u32> {
    milieu::scope()
        .with(RequestId(item))
        .run(|| stage.submit(item))
        .unwrap()
}

#[test]
fn a_worker_takes_what_is_queued_in_order_up_to_the_limit_and_never_past_an_item_that_runs_alone() {
    let (stage, batches, release, holding) =
        recording(Batching::new(4).alone_when(|item: &u32| *item >= 100));
    let first = submit(&stage, 0);
    eventually("the first batch holds the worker", || {
        holding.load(Ordering::SeqCst)
    });
    let rest: Vec<_> = [1, 2, 3, 4, 5, 6, 100, 7, 101, 102]
        .into_iter()
        .map(|item| submit(&stage, item))
        .collect();
    release.send(()).unwrap();
    assert_eq!(block_on(first).unwrap(), 0);
    let answers: Vec<u32> = block_on(join_all(rest))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(answers, [10, 20, 30, 40, 50, 60, 1000, 70, 1010, 1020]);
    assert_eq!(
        *batches.lock().unwrap(),
        [
            vec![0],
            vec![1, 2, 3, 4],
            vec![5, 6],
            vec![100],
            vec![7],
            vec![101],
            vec![102]
        ]
    );
    stage.close(CloseMode::Drain).unwrap();
    let stats = stage.stats();
    assert_eq!(
        (stats.batches, stats.batched_items, stats.largest_batch),
        (7, 11, 4),
        "{stats}"
    );
    assert_eq!(stats.completed, 11);
}

#[test]
fn a_batch_not_full_waits_for_more_only_when_told_to() {
    // No wait (the default): each item submitted after the worker went
    // idle is a batch by itself.
    let (stage, batches, _release, _) = recording(Batching::new(3));
    for item in 1..=3 {
        assert_eq!(block_on(submit(&stage, item)).unwrap(), item * 10);
    }
    assert_eq!(*batches.lock().unwrap(), [vec![1], vec![2], vec![3]]);

    // With a wait longer than the test, the batch fills up with items
    // submitted one after the other.
    let (stage, batches, _release, _) = recording(Batching::new(3).max_wait(LIMIT));
    let answers: Vec<_> = (1..=3)
        .map(|item| {
            let answer = submit(&stage, item);
            std::thread::sleep(Duration::from_millis(2));
            answer
        })
        .collect();
    assert!(block_on(join_all(answers)).iter().all(Result::is_ok));
    assert_eq!(*batches.lock().unwrap(), [vec![1, 2, 3]]);
}

#[test]
fn a_batch_handler_that_panics_fails_each_of_its_items_and_the_stage_goes_on() {
    let stage = Stage::builder("fragile")
        .build_batched_with(Batching::new(8), || {
            |batch: Vec<Batched<u32>>| -> Vec<u32> {
                if batch.iter().any(|b| b.item == 13) {
                    panic!("unlucky batch");
                }
                batch.into_iter().map(|b| b.item).collect()
            }
        })
        .unwrap();
    let unlucky = stage.submit(13).unwrap();
    match block_on(unlucky) {
        Err(StageError::Panicked { message, .. }) => assert!(message.contains("unlucky")),
        other => panic!("{other:?}"),
    }
    assert_eq!(block_on(stage.submit(7).unwrap()).unwrap(), 7);
    stage.close(CloseMode::Drain).unwrap();
    assert_eq!(stage.stats().replaced, 1);
}

#[test]
fn an_item_that_sleeps_does_not_hold_back_items_taken_by_other_workers() {
    let finished_slow = Arc::new(AtomicBool::new(false));
    let (started, slow_started) = mpsc::channel::<()>();
    let started = Arc::new(Mutex::new(started));
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let done = Arc::clone(&finished_slow);
    let stage = Stage::builder("two-workers")
        .workers(2)
        .build_batched_with(Batching::new(64), move || {
            let (started, released, done) = (
                Arc::clone(&started),
                Arc::clone(&released),
                Arc::clone(&done),
            );
            move |batch: Vec<Batched<u32>>| -> Vec<u32> {
                if batch.iter().any(|b| b.item == 0) {
                    // The slow one: sleeps until the test releases it.
                    started.lock().unwrap().send(()).unwrap();
                    let _ = released.lock().unwrap().recv_timeout(LIMIT);
                    done.store(true, Ordering::SeqCst);
                }
                batch.into_iter().map(|b| b.item).collect()
            }
        })
        .unwrap();
    let slow = stage.submit(0).unwrap();
    slow_started.recv_timeout(LIMIT).unwrap();
    // Submitted while the slow batch runs: the other worker answers them.
    for round in 0..20u32 {
        let answers: Vec<_> = (1..=5)
            .map(|i| stage.submit(round * 10 + i).unwrap())
            .collect();
        assert!(block_on(join_all(answers)).iter().all(Result::is_ok));
    }
    assert!(
        !finished_slow.load(Ordering::SeqCst),
        "the others waited for the slow one"
    );
    release.send(()).unwrap();
    assert_eq!(block_on(slow).unwrap(), 0);
    stage.close(CloseMode::Drain).unwrap();
}
