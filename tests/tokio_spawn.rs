//! `milieu::tokio` (feature `tokio`) on real tokio runtimes.

use std::collections::HashSet;
use std::thread::ThreadId;
use std::time::Duration;

use milieu::dump::{HopDump, HopKind};
use milieu::{Context, ScopeExt};

#[derive(Debug, PartialEq)]
struct RequestId(u64);
struct Service;
struct Own(u64);
#[derive(Debug)]
struct Config(&'static str);

fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// The hops of the current context, nearest first.
fn current_hops() -> Vec<HopDump> {
    milieu::dump().hops().cloned().collect()
}

fn assert_hop(hop: &HopDump, kind: HopKind, label: Option<&str>, line: u32) {
    assert_eq!(hop.kind, kind, "{hop}");
    assert_eq!(hop.label.as_deref(), label, "{hop}");
    assert_eq!(
        (hop.site.file, hop.site.line),
        (file!(), line),
        "the hop names the caller's site: {hop}"
    );
}

#[test]
fn spawned_tasks_see_the_context_after_awaits_on_worker_threads() {
    let rt = multi_thread(2);
    let test_thread = std::thread::current().id();
    let _service = milieu::provide(Service);
    let line = line!() + 2;
    let handle = milieu::scope().with(RequestId(7)).run(|| {
        milieu::tokio::spawn_on(rt.handle(), async move {
            let mut threads = HashSet::<ThreadId>::new();
            for _ in 0..5 {
                threads.insert(std::thread::current().id());
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert_eq!(milieu::get::<RequestId>().unwrap().0, 7);
                assert!(milieu::contains::<Service>());
            }
            (threads, current_hops())
        })
    });
    let (threads, hops) = rt.block_on(handle).unwrap();
    assert!(!threads.contains(&test_thread), "polled by workers");
    assert_eq!(hops.len(), 1);
    assert_hop(&hops[0], HopKind::Task, None, line);

    // Spawned from inside a task with `spawn`: the task's context goes on.
    let nested = rt.block_on(async {
        milieu::scope()
            .with(Own(3))
            .wrap(async {
                let line = line!() + 1;
                let inner = milieu::tokio::spawn(async {
                    tokio::task::yield_now().await;
                    (milieu::get::<Own>().unwrap().0, current_hops())
                });
                let (own, hops) = inner.await.unwrap();
                assert_hop(&hops[0], HopKind::Task, None, line);
                own
            })
            .await
    });
    assert_eq!(nested, 3);
    assert!(!milieu::contains::<RequestId>() && !milieu::contains::<Own>());
}

#[test]
fn a_dump_inside_a_task_names_the_spawn_site() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let _request = milieu::provide(RequestId(5));
        let line = line!() + 1;
        let task = milieu::tokio::spawn(async { milieu::dump().to_string() });
        let dump = task.await.unwrap();
        let site = format!("{}:{line}:", file!());
        assert!(dump.contains("RequestId"), "{dump}");
        assert!(dump.contains("task"), "{dump}");
        assert!(dump.contains(&site), "the dump names {site}:\n{dump}");
    });
}

#[test]
fn spawn_blocking_runs_the_closure_in_the_context() {
    let rt = multi_thread(1);
    let (seen, hops) = rt.block_on(async {
        let _request = milieu::provide(RequestId(9));
        let line = line!() + 1;
        let handle = milieu::tokio::spawn_blocking(|| {
            (milieu::get::<RequestId>().unwrap().0, current_hops())
        });
        let (seen, hops) = handle.await.unwrap();
        assert_hop(&hops[0], HopKind::Thread, Some("spawn_blocking"), line);
        (seen, hops)
    });
    assert_eq!(seen, 9);
    assert_eq!(hops.len(), 1);

    // From outside the runtime, through its handle.
    let _request = milieu::provide(RequestId(10));
    let handle =
        milieu::tokio::spawn_blocking_on(rt.handle(), || milieu::get::<RequestId>().unwrap().0);
    assert_eq!(rt.block_on(handle).unwrap(), 10);
}

#[test]
fn spawn_local_on_a_local_set() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let seen = local.block_on(&rt, async {
        let handle = milieu::scope().with(RequestId(4)).run(|| {
            let not_send = std::rc::Rc::new(4);
            milieu::tokio::spawn_local(async move {
                tokio::task::yield_now().await;
                milieu::get::<RequestId>().unwrap().0 + *not_send
            })
        });
        assert!(!milieu::contains::<RequestId>());
        handle.await.unwrap()
    });
    assert_eq!(seen, 8);
}

#[test]
fn join_set_spawns_inside_the_context() {
    let rt = multi_thread(2);
    let _service = milieu::provide(Service);
    let results = rt.block_on(async {
        let mut set = milieu::tokio::JoinSet::new();
        let line = line!() + 3;
        for i in 0..8u64 {
            milieu::scope().with(RequestId(i)).run(|| {
                set.spawn(async move {
                    tokio::task::yield_now().await;
                    assert!(milieu::contains::<Service>());
                    (milieu::get::<RequestId>().unwrap().0, i, current_hops())
                })
            });
        }
        let blocking_line = line!() + 1;
        set.spawn_blocking(|| (100, 100, current_hops()));
        assert_eq!(set.len(), 9, "tokio's methods through Deref");
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (seen, want, hops) = joined.unwrap();
            assert_eq!(seen, want);
            if seen == 100 {
                assert_hop(
                    &hops[0],
                    HopKind::Thread,
                    Some("spawn_blocking"),
                    blocking_line,
                );
            } else {
                assert_hop(&hops[0], HopKind::Task, None, line);
            }
            results.push(seen);
        }
        results.sort_unstable();
        results
    });
    assert_eq!(results, [0, 1, 2, 3, 4, 5, 6, 7, 100]);
}

#[test]
fn ten_thousand_tasks_see_only_their_own_entries() {
    let rt = multi_thread(2);
    let _service = milieu::provide(Service);
    let handles: Vec<_> = (0..10_000u64)
        .map(|i| {
            milieu::tokio::spawn_on(rt.handle(), async move {
                milieu::scope()
                    .with(Own(i))
                    .wrap(async move {
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                            assert_eq!(milieu::get::<Own>().unwrap().0, i, "cross-talk");
                            assert!(milieu::contains::<Service>());
                            // A guard within one poll.
                            let request = milieu::provide(RequestId(i));
                            assert_eq!(milieu::get::<RequestId>().unwrap().0, i);
                            drop(request);
                        }
                    })
                    .await;
                // The task's own install is gone once its scope is over.
                tokio::task::yield_now().await;
                assert!(!milieu::contains::<Own>() && !milieu::contains::<RequestId>());
                i
            })
        })
        .collect();
    rt.block_on(async {
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.await.unwrap(), i as u64);
        }
    });
    // The workers are clean afterwards.
    for _ in 0..16 {
        let bare = rt.spawn(async { Context::current().is_empty() });
        assert!(rt.block_on(bare).unwrap(), "a worker kept an entry");
    }
}

#[test]
fn runtime_root_context_is_visible_in_every_task() {
    let root = milieu::scope()
        .with_debug(Config("orders"))
        .run(Context::current);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let built_at = line!() + 1;
    let rt = milieu::tokio::Runtime::from_builder(&mut builder, root).unwrap();
    assert!(!milieu::contains::<Config>(), "not on the building thread");

    let from_outside = rt.spawn(async {
        tokio::task::yield_now().await;
        milieu::get::<Config>().unwrap().0
    });
    let blocking_outside = rt.spawn_blocking(|| milieu::get::<Config>().unwrap().0);
    let test_thread = std::thread::current().id();
    rt.block_on(async {
        assert_eq!(from_outside.await.unwrap(), "orders");
        assert_eq!(blocking_outside.await.unwrap(), "orders");
        // block_on itself runs in the root.
        assert_eq!(milieu::get::<Config>().unwrap().0, "orders");
        let _request = milieu::provide(RequestId(1));
        let carried = milieu::tokio::spawn(async {
            tokio::task::yield_now().await;
            (
                milieu::get::<Config>().unwrap().0,
                milieu::contains::<RequestId>(),
            )
        });
        // A bare spawn sees the worker's root context, not its spawner's.
        let bare = tokio::spawn(async {
            tokio::task::yield_now().await;
            (
                std::thread::current().id(),
                std::thread::current().name().map(str::to_owned),
                milieu::get::<Config>().unwrap().0,
                milieu::contains::<RequestId>(),
                current_hops(),
            )
        });
        let bare_blocking = tokio::task::spawn_blocking(|| milieu::get::<Config>().unwrap().0);
        assert_eq!(carried.await.unwrap(), ("orders", true));
        let (thread, name, config, request, hops) = bare.await.unwrap();
        assert_ne!(thread, test_thread);
        assert_eq!((config, request), ("orders", false));
        assert_hop(&hops[0], HopKind::Thread, name.as_deref(), built_at);
        assert_eq!(bare_blocking.await.unwrap(), "orders");
    });
    assert!(!milieu::contains::<Config>(), "left again after block_on");
    rt.shutdown_timeout(Duration::from_secs(10));

    // A current-thread runtime polls its tasks inside block_on.
    let root = milieu::scope()
        .with_debug(Config("stock"))
        .run(Context::current);
    let rt = milieu::tokio::Runtime::from_builder(
        &mut tokio::runtime::Builder::new_current_thread(),
        root,
    )
    .unwrap();
    let seen = rt.block_on(async {
        tokio::spawn(async { milieu::get::<Config>().unwrap().0 })
            .await
            .unwrap()
    });
    assert_eq!(seen, "stock");
}

#[test]
fn timeouts_and_sleeps_inside_spawned_tasks_behave_as_in_tokio() {
    let rt = multi_thread(2);
    let _request = milieu::provide(RequestId(2));
    let handle = milieu::tokio::spawn_on(rt.handle(), async {
        let expired = tokio::time::timeout(
            Duration::from_millis(20),
            tokio::time::sleep(Duration::from_secs(30)),
        )
        .await;
        assert!(expired.is_err(), "the timeout fires");
        let in_time = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            milieu::get::<RequestId>().unwrap().0
        })
        .await;
        (in_time.unwrap(), milieu::get::<RequestId>().unwrap().0)
    });
    assert_eq!(rt.block_on(handle).unwrap(), (2, 2));
}

#[test]
fn a_paused_clock_drives_wrapped_sleeps() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let real_start = std::time::Instant::now();
    let (seen, waited) = rt.block_on(async {
        let _request = milieu::provide(RequestId(6));
        let started = tokio::time::Instant::now();
        let seen = milieu::tokio::spawn(async {
            let expired = tokio::time::timeout(
                Duration::from_secs(60),
                tokio::time::sleep(Duration::from_secs(3600)),
            )
            .await;
            assert!(expired.is_err());
            tokio::time::sleep(Duration::from_secs(120)).await;
            milieu::get::<RequestId>().unwrap().0
        })
        .await
        .unwrap();
        (seen, started.elapsed())
    });
    assert_eq!(seen, 6);
    // Three minutes went by on the paused clock, which ran ahead of the
    // real one: on a real clock the sleeps would take as long as they say.
    assert!(waited >= Duration::from_secs(180), "{waited:?}");
    let real = real_start.elapsed();
    assert!(real < waited, "the sleeps took real time: {real:?}");
}

#[test]
fn the_hop_records_the_thread_it_arrived_on_whether_the_spawners_or_another() {
    // Polled on the spawning thread (a current_thread runtime): the
    // arrival is the thread the hop was made on.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (from, to) = rt.block_on(async {
        let _request = milieu::provide(RequestId(5));
        let task = milieu::tokio::spawn(async {
            let hop = current_hops().remove(0);
            (hop.from.id, hop.to.map(|t| t.id))
        });
        task.await.unwrap()
    });
    assert_eq!(to, Some(from));
    // Run on tokio's blocking pool: another thread.
    let (from, to, here) = rt.block_on(async {
        let _request = milieu::provide(RequestId(6));
        let here = format!("{:?}", std::thread::current().id());
        let task = milieu::tokio::spawn_blocking(|| {
            let hop = current_hops().remove(0);
            (hop.from.id, hop.to.map(|t| t.id))
        });
        let (from, to) = task.await.unwrap();
        (from, to, here)
    });
    assert_eq!(from, here, "made on the spawning thread");
    assert_ne!(to.expect("arrived"), from, "the blocking pool's thread");
}

#[test]
fn a_spawn_after_an_ended_task_records_only_its_own_hop() {
    // An ended task's hop frame may be reused by the next spawn on the same
    // thread: nothing of the first task's hop (its site, its arrival) may
    // show in the second's, and a snapshot taken inside the first task
    // keeps the first hop as it was.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let workers = multi_thread(1);
    let spawner = format!("{:?}", std::thread::current().id());
    let (kept, first_line) = rt.block_on(async {
        let _request = milieu::provide(RequestId(1));
        let line = line!() + 1;
        let first = milieu::tokio::spawn(async { (Context::current(), current_hops()) });
        let (kept, hops) = first.await.unwrap();
        assert_hop(&hops[0], HopKind::Task, None, line);
        assert_eq!(
            hops[0].to.as_ref().map(|t| t.id.clone()),
            Some(spawner.clone())
        );
        (kept, line)
    });
    // Several ended tasks, so that a frame is surely kept for reuse.
    rt.block_on(async {
        let _request = milieu::provide(RequestId(2));
        for _ in 0..4 {
            milieu::tokio::spawn(async {}).await.unwrap();
        }
    });
    let (hops, request) = rt.block_on(async {
        let _request = milieu::provide(RequestId(3));
        let line = line!() + 1;
        let task = milieu::tokio::spawn_on(workers.handle(), async {
            (current_hops(), milieu::get::<RequestId>().map(|r| r.0))
        });
        let (hops, request) = task.await.unwrap();
        assert_hop(&hops[0], HopKind::Task, None, line);
        (hops, request)
    });
    assert_eq!(request.ok(), Some(3));
    assert_eq!(hops.len(), 1, "{hops:?}");
    assert_eq!(hops[0].from.id, spawner, "made on the spawning thread");
    let arrived = hops[0].to.as_ref().expect("arrived").id.clone();
    assert_ne!(
        arrived, spawner,
        "arrived on the worker, not where an earlier hop did"
    );
    // A frame kept by the worker (the task above ended there) serves a
    // spawn made on the worker: the hop is made there, not where the
    // frame was first made.
    let (worker, inner_from) = rt.block_on(async {
        let _request = milieu::provide(RequestId(4));
        let outer = milieu::tokio::spawn_on(workers.handle(), async {
            let worker = format!("{:?}", std::thread::current().id());
            let inner = milieu::tokio::spawn(async { current_hops() });
            let hops = inner.await.unwrap();
            (worker, hops[0].from.id.clone())
        });
        outer.await.unwrap()
    });
    assert_ne!(worker, spawner);
    assert_eq!(inner_from, worker, "the inner hop was made on the worker");
    // The snapshot taken in the first task still shows its own hop.
    let kept_hops = kept.run(current_hops);
    assert_eq!(kept_hops.len(), 1);
    assert_hop(&kept_hops[0], HopKind::Task, None, first_line);
    assert_eq!(
        kept.run(|| milieu::get::<RequestId>().map(|r| r.0)).ok(),
        Some(1)
    );
}

/// Sends the `RequestId` its drop sees, if any.
struct SeenOnDrop(std::sync::mpsc::Sender<Option<u64>>);

impl Drop for SeenOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(milieu::get::<RequestId>().ok().map(|id| id.0));
    }
}

/// A task aborted while it waits is dropped inside its captured context:
/// what it held across `.await` sees its spawner's entries as it goes.
#[test]
fn an_aborted_task_drops_what_it_held_inside_its_context() {
    let (dropped, seen) = std::sync::mpsc::channel();
    let (started, has_started) = tokio::sync::oneshot::channel();
    multi_thread(2).block_on(async {
        let task = {
            let _request = milieu::provide(RequestId(41));
            milieu::tokio::spawn(async move {
                let _held = SeenOnDrop(dropped);
                started.send(()).unwrap();
                std::future::pending::<()>().await
            })
        };
        has_started.await.unwrap();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    });
    assert_eq!(seen.recv().unwrap(), Some(41));
}

/// A wrapped future dropped before it was ever polled is dropped inside
/// its context too; one that finished is dropped as it is.
#[test]
fn unfinished_wrapped_futures_are_dropped_inside_their_context() {
    use milieu::FutureExt;
    let (dropped, seen) = std::sync::mpsc::channel();
    let held = SeenOnDrop(dropped.clone());
    let never_polled = {
        let _request = milieu::provide(RequestId(7));
        async move { drop(held) }.in_current_context()
    };
    drop(never_polled);
    assert_eq!(seen.recv().unwrap(), Some(7));
    // Finished: its state was dropped when it returned, inside a poll.
    let finished = {
        let _request = milieu::provide(RequestId(8));
        let held = SeenOnDrop(dropped);
        async move { drop(held) }.in_current_context()
    };
    futures::executor::block_on(finished);
    assert_eq!(seen.recv().unwrap(), Some(8));
    assert!(!milieu::contains::<RequestId>());
}
