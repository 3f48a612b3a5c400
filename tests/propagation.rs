//! Carrying the context into futures (tokio, futures) and threads.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::{assert_empty_context, in_fresh_thread};
use milieu::{Context, FutureExt, ScopeExt};

#[derive(Debug, PartialEq)]
struct RequestId(u64);
struct Service;

#[test]
fn tokio_current_thread_spawned_tasks_see_the_captured_context() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let task = milieu::scope().with(RequestId(7)).run(|| {
            async {
                tokio::task::yield_now().await;
                milieu::get::<RequestId>().unwrap().0
            }
            .in_current_context()
        });
        assert!(
            !milieu::contains::<RequestId>(),
            "the scope is over on this thread"
        );
        assert_eq!(tokio::spawn(task).await.unwrap(), 7);
        // An unwrapped task sees nothing (same thread, no leftover).
        let unwrapped = tokio::spawn(async { milieu::contains::<RequestId>() });
        assert!(!unwrapped.await.unwrap());
    });
}

#[test]
fn tokio_multi_thread_tasks_see_the_context_on_worker_threads() {
    let stops_checked = Arc::new(AtomicUsize::new(0));
    let dirty_stops = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_stop({
            let (checked, dirty) = (Arc::clone(&stops_checked), Arc::clone(&dirty_stops));
            move || {
                checked.fetch_add(1, Ordering::SeqCst);
                if !Context::current().is_empty() || !milieu::dump().frames.is_empty() {
                    dirty.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .build()
        .unwrap();

    let test_thread = std::thread::current().id();
    let workers = Arc::new(Mutex::new(HashSet::<ThreadId>::new()));
    let _service = milieu::provide(Service);
    let handles: Vec<_> = (0..64u64)
        .map(|i| {
            let workers = Arc::clone(&workers);
            let task = milieu::scope().with(RequestId(i)).wrap(async move {
                for _ in 0..3 {
                    workers.lock().unwrap().insert(std::thread::current().id());
                    assert_eq!(milieu::get::<RequestId>().unwrap().0, i);
                    assert!(
                        milieu::contains::<Service>(),
                        "the spawner's context is carried"
                    );
                    tokio::task::yield_now().await;
                }
                i
            });
            rt.spawn(task)
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(rt.block_on(handle).unwrap(), i as u64);
    }
    let workers = workers.lock().unwrap().clone();
    assert!(!workers.is_empty());
    assert!(
        !workers.contains(&test_thread),
        "tasks ran on worker threads"
    );

    // After the tasks, the workers' own context is empty again.
    let leftovers: Vec<_> = (0..64)
        .map(|_| {
            rt.spawn(async {
                tokio::task::yield_now().await;
                (
                    milieu::contains::<RequestId>(),
                    milieu::contains::<Service>(),
                    milieu::dump(),
                )
            })
        })
        .collect();
    for handle in leftovers {
        let (request, service, dump) = rt.block_on(handle).unwrap();
        assert!(
            !request && !service && dump.frames.is_empty(),
            "worker context leaked:\n{dump}"
        );
    }
    rt.shutdown_timeout(Duration::from_secs(30));
    assert!(
        stops_checked.load(Ordering::SeqCst) >= 2,
        "both workers stopped and were checked"
    );
    assert_eq!(
        dirty_stops.load(Ordering::SeqCst),
        0,
        "a worker ended with a non-empty context"
    );
}

#[test]
fn futures_block_on_with_in_current_context() {
    let guard = milieu::provide(RequestId(3));
    let task = async {
        common::yield_now().await;
        milieu::get::<RequestId>().map(|r| r.0).ok()
    }
    .in_current_context();
    drop(guard);
    // Polled after the scope ended, on a thread whose context is empty.
    assert_eq!(futures::executor::block_on(task), Some(3));
    assert!(!milieu::contains::<RequestId>());
}

#[test]
fn in_context_runs_the_future_in_the_given_snapshot() {
    let snap = milieu::scope().with(RequestId(11)).run(Context::current);
    let _other = milieu::provide(RequestId(99));
    let seen = futures::executor::block_on(
        async { milieu::get::<RequestId>().unwrap().0 }.in_context(snap),
    );
    assert_eq!(seen, 11);
    assert_eq!(
        milieu::get::<RequestId>().unwrap().0,
        99,
        "restored after every poll"
    );
    let empty = futures::executor::block_on(
        async { milieu::contains::<RequestId>() }.in_context(Context::empty()),
    );
    assert!(
        !empty,
        "an empty snapshot hides the polling thread's entries"
    );
}

#[test]
fn polling_does_not_leak_into_the_polling_thread() {
    let mut task = Box::pin(milieu::scope().with(RequestId(1)).wrap(async {
        common::yield_now().await;
        milieu::get::<RequestId>().unwrap().0
    }));
    assert!(common::poll_once(task.as_mut()).is_pending());
    assert!(
        !milieu::contains::<RequestId>(),
        "between polls the thread's context is its own"
    );
    assert_empty_context();
    assert_eq!(common::poll_once(task.as_mut()), std::task::Poll::Ready(1));
    assert_empty_context();
}

#[test]
fn milieu_thread_spawn_carries_the_context() {
    let _g = milieu::provide(RequestId(5));
    let seen = milieu::thread::spawn(|| milieu::get::<RequestId>().unwrap().0)
        .join()
        .unwrap();
    assert_eq!(seen, 5);
}

#[test]
fn milieu_thread_builder_carries_the_context() {
    let _g = milieu::provide(RequestId(6));
    let handle = milieu::thread::Builder::new()
        .name("carrier")
        .stack_size(256 * 1024)
        .spawn(|| {
            (
                std::thread::current().name().map(str::to_owned),
                milieu::get::<RequestId>().unwrap().0,
            )
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), (Some("carrier".to_owned()), 6));
}

#[test]
fn std_thread_spawn_does_not_carry_the_context() {
    let _g = milieu::provide(RequestId(6));
    let seen = std::thread::spawn(milieu::contains::<RequestId>)
        .join()
        .unwrap();
    assert!(!seen);
}

#[test]
fn nested_thread_spawns_carry_the_context() {
    let _g = milieu::provide(RequestId(8));
    let seen = milieu::thread::spawn(|| {
        let _s = milieu::provide(Service);
        milieu::thread::spawn(|| {
            (
                milieu::get::<RequestId>().unwrap().0,
                milieu::contains::<Service>(),
            )
        })
        .join()
        .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(seen, (8, true));
}

#[test]
fn the_spawned_threads_context_is_a_snapshot() {
    let guard = milieu::provide(RequestId(1));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let handle = milieu::thread::spawn(move || {
        rx.recv().unwrap();
        milieu::get::<RequestId>().map(|r| r.0).ok()
    });
    drop(guard);
    let _later = milieu::provide(RequestId(2));
    tx.send(()).unwrap();
    assert_eq!(
        handle.join().unwrap(),
        Some(1),
        "captured at spawn, unaffected later"
    );
}

#[tokio::test]
async fn scope_wrap_holds_the_context_across_awaits() {
    let task = milieu::scope().with(RequestId(21)).wrap(async {
        for round in 0..4 {
            assert_eq!(milieu::get::<RequestId>().unwrap().0, 21, "round {round}");
            if round % 2 == 0 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        milieu::get::<RequestId>().unwrap().0
    });
    assert_eq!(task.await, 21);
    assert!(
        !milieu::contains::<RequestId>(),
        "the awaiting task does not see it afterwards"
    );
}

#[tokio::test]
async fn wrap_installs_on_top_of_the_current_context() {
    let outer = milieu::scope().with(Service).run(Context::current);
    let task = outer.run(|| {
        milieu::scope().with(RequestId(2)).wrap(async {
            tokio::task::yield_now().await;
            (
                milieu::contains::<Service>(),
                milieu::get::<RequestId>().unwrap().0,
            )
        })
    });
    assert_eq!(tokio::spawn(task).await.unwrap(), (true, 2));
}

#[test]
fn concurrent_wrapped_futures_on_one_thread_do_not_see_each_other() {
    let a = milieu::scope().with(RequestId(1)).wrap(async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(milieu::get::<RequestId>().unwrap().0);
            common::yield_now().await;
        }
        seen
    });
    let b = milieu::scope().with(RequestId(2)).wrap(async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(milieu::get::<RequestId>().unwrap().0);
            common::yield_now().await;
        }
        seen
    });
    let (a, b) = futures::executor::block_on(futures::future::join(a, b));
    assert_eq!((a, b), (vec![1; 3], vec![2; 3]));
}

#[test]
fn a_future_wrapped_on_one_thread_runs_on_another() {
    let task = milieu::scope()
        .with(RequestId(4))
        .wrap(async { milieu::get::<RequestId>().unwrap().0 });
    let seen = in_fresh_thread("poller", move || futures::executor::block_on(task));
    assert_eq!(seen, 4);
}
