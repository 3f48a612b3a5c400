//! The reactor core on real threads and both clocks: the tick's order,
//! timers, tasks, `call_from_thread`, `defer_to_thread`, panics, and two
//! reactors in one process. Every loop is bounded.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milieu::dump::HopKind;
use milieu::reactor::{Clock, Handle, JoinError, Reactor, VirtualClock};
use milieu::Context;

struct RequestId(u32);

fn virtual_reactor() -> (Reactor, VirtualClock) {
    let clock = VirtualClock::new();
    let reactor = Reactor::builder()
        .clock(Clock::Virtual(clock.clone()))
        .build()
        .unwrap();
    (reactor, clock)
}

#[test]
fn the_reactor_is_found_through_the_context_and_nowhere_else() {
    assert!(Handle::current().is_err(), "no reactor outside its context");
    let reactor = Reactor::builder().name("orders").build().unwrap();
    let found = reactor
        .context()
        .run(|| Handle::current().map(|h| h.name().to_owned()));
    assert_eq!(found.unwrap(), "orders");
    assert!(
        Handle::current().is_err(),
        "the reactor's context is not left installed"
    );
}

#[test]
fn one_tick_runs_calls_then_timers_then_tasks_in_that_order() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let order = Arc::new(Mutex::new(Vec::new()));

    let log = Arc::clone(&order);
    reactor.context().run(|| {
        let (l1, l2, l3) = (Arc::clone(&log), Arc::clone(&log), Arc::clone(&log));
        drop(handle.spawn(async move { l1.lock().unwrap().push("task") }));
        handle.call_later(Duration::ZERO, move || l2.lock().unwrap().push("timer"));
        let other = handle.clone();
        std::thread::spawn(move || other.call_from_thread(move || l3.lock().unwrap().push("call")))
            .join()
            .unwrap();
    });
    let stats = reactor.tick(Some(Duration::from_millis(100))).unwrap();
    assert_eq!(*order.lock().unwrap(), ["call", "timer", "task"]);
    assert_eq!((stats.calls, stats.timers, stats.polls), (1, 1, 1));
}

#[test]
fn a_zero_delay_call_made_by_a_timer_runs_in_the_next_tick() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let h = handle.clone();
    handle.call_later(Duration::ZERO, move || {
        c.fetch_add(1, Ordering::SeqCst);
        let c = Arc::clone(&c);
        h.call_later(Duration::ZERO, move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
    });
    assert_eq!(reactor.tick(Some(Duration::ZERO)).unwrap().timers, 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(reactor.tick(Some(Duration::ZERO)).unwrap().timers, 1);
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn delayed_calls_can_be_cancelled_and_reset() {
    let (mut reactor, _clock) = virtual_reactor();
    let handle = reactor.handle();
    let fired = Arc::new(Mutex::new(Vec::new()));
    let (f1, f2) = (Arc::clone(&fired), Arc::clone(&fired));
    let cancelled = handle.call_later(Duration::from_secs(1), move || f1.lock().unwrap().push(1));
    let moved = handle.call_later(Duration::from_secs(1), move || f2.lock().unwrap().push(2));
    assert!(cancelled.active() && cancelled.cancel());
    assert!(!cancelled.active() && !cancelled.cancel());
    assert!(moved.reset(Duration::from_secs(5)));
    assert_eq!(reactor.advance(Duration::from_secs(2)).unwrap(), 0);
    assert!(moved.active());
    assert_eq!(reactor.advance(Duration::from_secs(3)).unwrap(), 1);
    assert!(!moved.active() && !moved.reset(Duration::ZERO));
    assert_eq!(*fired.lock().unwrap(), [2]);
}

#[test]
fn a_delayed_call_awaited_gives_its_result_or_says_why_there_is_none() {
    let (mut reactor, _clock) = virtual_reactor();
    let handle = reactor.handle();
    let answer = handle.call_later(Duration::from_secs(1), || 6 * 7);
    let cancelled = handle.call_later(Duration::from_secs(1), || "never");
    let panicking = handle.call_later(Duration::from_secs(1), || -> u8 { panic!("boom") });
    let moved = handle.call_later(Duration::from_secs(1), || "moved");
    assert!(cancelled.cancel());
    assert!(moved.reset(Duration::from_secs(3)));

    // Awaited by a task of the reactor, which resumes when each fires.
    let results = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&results);
    let _task = handle.spawn(async move {
        let a = answer.await;
        let c = cancelled.await;
        let p = panicking.await;
        seen.lock().unwrap().push(format!("{a:?} {c:?} {p:?}"));
        let m = moved.await;
        seen.lock().unwrap().push(format!("{m:?}"));
    });
    reactor.tick(Some(Duration::ZERO)).unwrap();
    assert!(results.lock().unwrap().is_empty(), "nothing is due yet");
    assert_eq!(reactor.advance(Duration::from_secs(1)).unwrap(), 2);
    assert_eq!(
        *results.lock().unwrap(),
        ["Ok(42) Err(Cancelled) Err(Panicked)"]
    );
    assert_eq!(reactor.advance(Duration::from_secs(2)).unwrap(), 1);
    assert_eq!(results.lock().unwrap()[1], r#"Ok("moved")"#);
}

#[test]
fn a_delayed_call_awaited_after_it_fired_still_gives_its_result() {
    let (mut reactor, _clock) = virtual_reactor();
    let handle = reactor.handle();
    let answer = handle.call_later(Duration::from_secs(1), || String::from("kept"));
    let panicked = handle.call_later(Duration::from_secs(1), || -> u8 { panic!("boom") });
    let dropped_ran = Arc::new(AtomicUsize::new(0));
    let ran = Arc::clone(&dropped_ran);
    // Dropping a DelayedCall does not cancel the call.
    drop(handle.call_later(Duration::from_secs(1), move || {
        ran.fetch_add(1, Ordering::SeqCst)
    }));
    assert_eq!(reactor.advance(Duration::from_secs(1)).unwrap(), 3);
    assert_eq!(dropped_ran.load(Ordering::SeqCst), 1);
    assert!(!answer.active());
    let (answer, panicked) = reactor
        .run_until(async move { (answer.await, panicked.await) })
        .unwrap();
    assert_eq!(answer.as_deref(), Ok("kept"));
    assert_eq!(panicked, Err(JoinError::Panicked));
}

#[test]
fn a_delayed_call_whose_reactor_is_dropped_is_cancelled_for_its_awaiter() {
    let (reactor, _clock) = virtual_reactor();
    let mut call = reactor
        .handle()
        .call_later(Duration::from_secs(60), || "never");
    // Awaited on another thread, which is waiting when the reactor goes.
    let (polled_tx, polled_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = futures::executor::block_on(std::future::poll_fn(|cx| {
            let poll = std::pin::Pin::new(&mut call).poll(cx);
            let _ = polled_tx.send(());
            poll
        }));
        let _ = done_tx.send(outcome);
    });
    polled_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the waiter polled");
    drop(reactor);
    let outcome = done_rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(
        outcome,
        Ok(Err(JoinError::Cancelled)),
        "woken, not left hanging"
    );
}

#[test]
fn a_delayed_call_awaited_from_another_thread_is_woken_when_it_fires() {
    let mut reactor = Reactor::new().unwrap();
    let call = reactor.handle().call_later(Duration::from_millis(20), || {
        std::thread::current().name().map(str::to_owned)
    });
    let waiter = std::thread::spawn(move || futures::executor::block_on(call));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiter.is_finished() && Instant::now() < deadline {
        reactor.tick(Some(Duration::from_millis(5))).unwrap();
    }
    // Never woken would hang the join: fail instead.
    assert!(waiter.is_finished(), "the waiter was not woken within 10 s");
    let ran_on = waiter.join().unwrap().expect("the call ran");
    assert_eq!(
        ran_on,
        std::thread::current().name().map(str::to_owned),
        "on the reactor's thread"
    );
}

#[test]
fn advance_fires_each_timer_at_its_own_time_in_order() {
    let (mut reactor, clock) = virtual_reactor();
    let handle = reactor.handle();
    let start = clock.now();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for (label, ms) in [("c", 30), ("a", 10), ("b", 20), ("late", 500)] {
        let (seen, h) = (Arc::clone(&seen), handle.clone());
        handle.call_later(Duration::from_millis(ms), move || {
            seen.lock()
                .unwrap()
                .push((label, h.now().duration_since(start)));
        });
    }
    assert_eq!(reactor.advance(Duration::from_millis(100)).unwrap(), 3);
    let ms = Duration::from_millis;
    assert_eq!(
        *seen.lock().unwrap(),
        [("a", ms(10)), ("b", ms(20)), ("c", ms(30))]
    );
    assert_eq!(clock.now().duration_since(start), ms(100));
    assert_eq!(reactor.pending_timers(), 1);
}

#[test]
fn a_periodic_call_fires_once_per_period_during_one_advance() {
    fn every_second(handle: Handle, count: Arc<AtomicUsize>) {
        count.fetch_add(1, Ordering::SeqCst);
        let again = handle.clone();
        handle.call_later(Duration::from_secs(1), move || every_second(again, count));
    }
    let (mut reactor, _clock) = virtual_reactor();
    let handle = reactor.handle();
    let count = Arc::new(AtomicUsize::new(0));
    let (h, c) = (handle.clone(), Arc::clone(&count));
    handle.call_later(Duration::from_secs(1), move || every_second(h, c));
    assert_eq!(reactor.advance(Duration::from_secs(10)).unwrap(), 10);
    assert_eq!(count.load(Ordering::SeqCst), 10);
}

#[test]
fn a_zero_delay_call_scheduled_during_advance_runs_but_cannot_loop_forever() {
    fn forever(handle: Handle, count: Arc<AtomicUsize>) {
        count.fetch_add(1, Ordering::SeqCst);
        let again = handle.clone();
        handle.call_later(Duration::ZERO, move || forever(again, count));
    }
    let (mut reactor, _clock) = virtual_reactor();
    let handle = reactor.handle();
    let count = Arc::new(AtomicUsize::new(0));
    let (h, c) = (handle.clone(), Arc::clone(&count));
    handle.call_later(Duration::from_secs(1), move || forever(h, c));
    // Returns: the first call and the one zero-delay call it made ran.
    let fired = reactor.advance(Duration::from_secs(2)).unwrap();
    assert_eq!(fired, 2);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(reactor.pending_timers(), 1, "the next generation waits");
}

#[test]
fn ten_thousand_pending_timers_fire_in_order() {
    let (mut reactor, _clock) = virtual_reactor();
    let handle = reactor.handle();
    let seen = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
    // Scheduled in a scrambled order.
    for i in 0..10_000u64 {
        let ms = (i * 7919) % 10_000;
        let seen = Arc::clone(&seen);
        handle.call_later(Duration::from_millis(ms), move || {
            seen.lock().unwrap().push(ms)
        });
    }
    assert_eq!(reactor.pending_timers(), 10_000);
    assert_eq!(reactor.advance(Duration::from_secs(10)).unwrap(), 10_000);
    let seen = seen.lock().unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "fired out of order");
    assert_eq!(seen.len(), 10_000);
}

#[test]
fn advance_needs_a_virtual_clock() {
    let mut reactor = Reactor::new().unwrap();
    assert!(reactor.advance(Duration::from_secs(1)).is_err());
}

#[test]
fn sleep_and_timeout_are_futures_on_the_reactor_clock() {
    let (mut reactor, clock) = virtual_reactor();
    let handle = reactor.handle();
    let start = clock.now();
    let slept = handle.spawn({
        let h = handle.clone();
        async move {
            h.sleep(Duration::from_secs(3)).await;
            h.now()
        }
    });
    let timed_out = handle.spawn({
        let h = handle.clone();
        async move {
            h.timeout(Duration::from_secs(1), h.sleep(Duration::from_secs(60)))
                .await
        }
    });
    reactor.tick(Some(Duration::ZERO)).unwrap(); // first polls register the timers
    assert_eq!(reactor.pending_timers(), 3);
    reactor.advance(Duration::from_secs(5)).unwrap();
    let (woke_at, timeout) = reactor
        .run_until(async { (slept.await.unwrap(), timed_out.await.unwrap()) })
        .unwrap();
    assert_eq!(woke_at.duration_since(start), Duration::from_secs(3));
    assert!(timeout.is_err(), "the 60 s sleep lost to the 1 s deadline");
    assert_eq!(
        reactor.pending_timers(),
        0,
        "the dropped sleep cancelled its timer"
    );
}

#[test]
fn tasks_run_in_the_context_of_their_spawner_with_a_task_hop() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let join = milieu::scope()
        .with(RequestId(7))
        .run(|| handle.spawn(async { (milieu::get::<RequestId>().unwrap().0, milieu::dump()) }));
    let (id, dump) = reactor.run_until(join).unwrap().unwrap();
    assert_eq!(id, 7);
    assert!(dump.hops().any(|h| h.kind == HopKind::Task), "{dump}");
    // The spawner's context had no reactor: the task still finds the one
    // running it, installed on top of what the spawner carried.
    let handle_in_task = handle.spawn(async { Handle::current().map(|h| h.name().to_owned()) });
    let name = reactor.run_until(handle_in_task).unwrap().unwrap();
    assert_eq!(name.ok().as_deref(), Some("reactor"));
}

#[test]
fn call_from_thread_wakes_a_waiting_reactor_and_carries_the_callers_context() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let seen = Arc::new(Mutex::new(None));
    let s = Arc::clone(&seen);
    let go = Arc::new(std::sync::Barrier::new(2));
    let ready = Arc::clone(&go);
    let caller = std::thread::spawn(move || {
        ready.wait();
        // Give the reactor time to enter its 10 s wait.
        std::thread::sleep(Duration::from_millis(50));
        milieu::scope().with(RequestId(3)).run(|| {
            handle.call_from_thread(move || {
                *s.lock().unwrap() = Some(milieu::get::<RequestId>().map(|r| r.0).ok());
            })
        });
    });
    go.wait();
    // A tick that would wait 10 s returns as soon as the call arrives; the
    // call itself runs first thing in the next tick.
    let started = Instant::now();
    let first = reactor.tick(Some(Duration::from_secs(10))).unwrap();
    let waited = started.elapsed();
    let second = reactor.tick(Some(Duration::ZERO)).unwrap();
    caller.join().unwrap();
    assert!(
        waited < Duration::from_secs(10),
        "the waker did not interrupt the wait"
    );
    assert_eq!(first.calls + second.calls, 1);
    assert_eq!(*seen.lock().unwrap(), Some(Some(3)));
}

#[test]
fn defer_to_thread_runs_elsewhere_in_the_callers_context_and_returns_on_the_reactor() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let reactor_thread = std::thread::current().id();
    let work = milieu::scope().with(RequestId(11)).run(|| {
        handle.defer_to_thread(|| {
            let dump = milieu::dump();
            (
                std::thread::current().id(),
                milieu::get::<RequestId>().unwrap().0,
                dump,
            )
        })
    });
    let h = handle.clone();
    let awaited = handle.spawn(async move {
        let (worker, id, dump) = work.await.unwrap();
        drop(h);
        (worker, id, dump, std::thread::current().id())
    });
    let (worker, id, dump, resumed_on) = reactor.run_until(awaited).unwrap().unwrap();
    assert_ne!(worker, reactor_thread);
    assert_eq!(id, 11);
    assert_eq!(
        resumed_on, reactor_thread,
        "the result is delivered on the reactor thread"
    );
    let hop = dump
        .hops()
        .find(|h| h.kind == HopKind::Thread)
        .expect("a thread hop");
    assert_eq!(hop.label.as_deref(), Some("defer_to_thread"));
}

#[test]
fn panics_in_callbacks_tasks_and_jobs_are_caught_and_the_reactor_goes_on() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let before = milieu::dump();
    handle.call_later(Duration::ZERO, || panic!("timer boom"));
    let task = handle.spawn(async { panic!("task boom") });
    let job = handle.defer_to_thread(|| -> u8 { panic!("job boom") });
    let mut panics = 0;
    for _ in 0..5 {
        panics += reactor.tick(Some(Duration::from_millis(5))).unwrap().panics;
    }
    assert_eq!(panics, 1, "the timer's panic is counted by the tick");
    assert_eq!(reactor.run_until(task).unwrap(), Err(JoinError::Panicked));
    assert_eq!(reactor.run_until(job).unwrap(), Err(JoinError::Panicked));
    // Still serving, and this thread's context is untouched.
    let ok = handle.spawn(async { 5 });
    assert_eq!(reactor.run_until(ok).unwrap(), Ok(5));
    assert_eq!(milieu::dump(), before);
}

#[test]
fn two_reactors_on_two_threads_in_one_process() {
    let results: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let mut reactor = Reactor::builder()
                    .name(format!("core-{i}"))
                    .build()
                    .unwrap();
                let name = reactor.run_until(async {
                    let handle = Handle::current().unwrap();
                    handle.sleep(Duration::from_millis(5)).await;
                    handle.name().to_owned()
                });
                name.unwrap()
            })
        })
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(results, ["core-0", "core-1"]);
}

#[test]
fn stop_ends_run() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let h = handle.clone();
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped);
    handle.call_later(Duration::from_millis(5), move || {
        flag.store(true, Ordering::SeqCst);
        h.stop()
    });
    // Returns once the call that stops it ran (a run that never ended
    // would hang the test, not fail it: no bound on the time taken).
    reactor.run().unwrap();
    assert!(stopped.load(Ordering::SeqCst), "run ended by the stop");
}

#[test]
fn code_under_test_uses_a_virtual_reactor_without_change() {
    /// Code under test: finds its reactor in the context.
    fn schedule_reminder(log: Arc<Mutex<Vec<Duration>>>) {
        let handle = Handle::current().expect("a reactor in context");
        let start = handle.now();
        let h = handle.clone();
        handle.call_later(Duration::from_secs(30), move || {
            log.lock().unwrap().push(h.now().duration_since(start));
        });
    }
    let (mut reactor, _clock) = virtual_reactor();
    let log = Arc::new(Mutex::new(Vec::new()));
    reactor
        .context()
        .run(|| schedule_reminder(Arc::clone(&log)));
    reactor.advance(Duration::from_secs(60)).unwrap();
    assert_eq!(*log.lock().unwrap(), [Duration::from_secs(30)]);
    let _ = Context::current();
}

#[test]
fn dropping_the_reactor_drops_pending_work_that_holds_its_handle() {
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let weak = {
        // A task and a timer that each keep a handle, and never finish.
        let h = handle.clone();
        drop(handle.spawn(async move {
            h.sleep(Duration::from_secs(3600)).await;
        }));
        let h = handle.clone();
        handle.call_later(Duration::from_secs(3600), move || drop(h));
        let probe = Arc::new(());
        let weak = Arc::downgrade(&probe);
        handle.call_later(Duration::from_secs(3600), move || drop(probe));
        weak
    };
    drop(handle);
    drop(reactor);
    assert!(
        weak.upgrade().is_none(),
        "pending work outlived its reactor"
    );
}

#[test]
fn a_timer_fired_from_another_thread_shows_its_scheduling_site_and_thread() {
    let (mut reactor, clock) = virtual_reactor();
    let handle = reactor.handle();
    let seen = Arc::new(Mutex::new(None));
    let s = Arc::clone(&seen);
    // Scheduled on another thread, in a context without the reactor: the
    // hop frame is only built when the call fires, so it must still name
    // the scheduling thread and line, not the reactor's.
    let scheduled_line = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            milieu::scope().with(RequestId(21)).run(|| {
                let line = line!() + 1;
                handle.call_later(Duration::from_millis(5), move || {
                    *s.lock().unwrap() =
                        Some((milieu::get::<RequestId>().unwrap().0, milieu::dump()));
                });
                line
            })
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(reactor.advance(Duration::from_millis(5)).unwrap(), 1);
    let (id, dump) = seen.lock().unwrap().take().expect("the timer fired");
    assert_eq!(id, 21);
    let hop = dump
        .hops()
        .find(|h| h.label.as_deref() == Some("call_later"))
        .unwrap_or_else(|| panic!("a call_later hop in\n{dump}"));
    assert_eq!(hop.kind, HopKind::Task);
    assert_eq!(hop.site.line, scheduled_line, "{dump}");
    assert_eq!(hop.from.name.as_deref(), Some("scheduler"), "{dump}");
    assert!(clock.elapsed() >= Duration::from_millis(5));
}
