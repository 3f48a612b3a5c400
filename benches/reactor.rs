//! Criterion benchmarks of the reactor's timers, each group measuring milieu
//! side by side with the peer its goal names (see docs/benchmarks.md,
//! "Reactor: timers").
//!
//! Run with `cargo bench --bench reactor`; `cargo bench --bench reactor --
//! virtual_clock` runs only the virtual-clock group (benches/compare_clock.sh
//! does that, then runs benches/twisted_clock.py and prints the ratio).
//!
//! Groups:
//! - `timers_1m`: 1,000,000 timers scheduled, then all cancelled. milieu:
//!   `Handle::call_later` then `DelayedCall::cancel`, called in the
//!   reactor's context as reactor code is. tokio: `tokio::time::sleep`
//!   futures, each boxed and polled once (a `Sleep` enters the timer wheel
//!   on its first poll) inside a current-thread runtime with the time
//!   driver, then dropped (which removes the entry). One iteration is the
//!   whole batch of 1M. `milieu_call_later_cancel_capturing` is milieu's
//!   loop with a callback that captures a value (the empty closure is
//!   zero-sized, so boxing it allocates nothing).
//! - `virtual_clock`: milieu on a `VirtualClock` (`Reactor::advance`),
//!   the workloads of benches/twisted_clock.py: `drain_10k` (10,000 calls
//!   at distinct delays, then 1 ms advances until none is pending) and
//!   `insert_fire_10k_pending` (with 10,000 calls pending far ahead,
//!   schedule one call 1 ms ahead and advance 1 ms, which fires it).

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context as TaskContext, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use milieu::reactor::{Clock, DelayedCall, Reactor, VirtualClock};

// ---------------------------------------------------------------------------
// timers_1m
// ---------------------------------------------------------------------------

/// Timers per iteration of `timers_1m`.
const BATCH: usize = 1_000_000;

/// The delay of the `i`-th timer of a batch: distinct-ish deadlines spread
/// over 1..11 s, the same for both sides (none is due while a batch runs).
fn batch_delay(i: usize) -> Duration {
    Duration::from_secs(1) + Duration::from_millis((i * 7919 % 10_000) as u64)
}

/// One batch: `call_later` for every timer (callbacks made by `callback`),
/// then `cancel` on each.
fn call_later_then_cancel<F>(b: &mut criterion::Bencher<'_>, callback: impl Fn(usize) -> F)
where
    F: FnOnce() + Send + 'static,
{
    let reactor = Reactor::new().expect("reactor");
    let handle = reactor.handle();
    // Reactor code runs in the reactor's context; outside it,
    // `call_later` would also have to install the handle first.
    reactor.context().run(|| {
        b.iter(|| {
            let mut calls: Vec<DelayedCall> = Vec::with_capacity(BATCH);
            for i in 0..BATCH {
                calls.push(handle.call_later(batch_delay(i), callback(i)));
            }
            for call in &calls {
                black_box(call.cancel());
            }
            drop(calls);
        });
    });
    assert_eq!(reactor.pending_timers(), 0);
}

fn timers_1m(c: &mut Criterion) {
    let mut group = c.benchmark_group("timers_1m");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("milieu_call_later_cancel", |b| {
        call_later_then_cancel(b, |_| || {});
    });
    // The same with a callback that captures a value, as real callbacks
    // do (the empty closure above is zero-sized: boxing it allocates nothing).
    group.bench_function("milieu_call_later_cancel_capturing", |b| {
        call_later_then_cancel(b, |i| {
            let id = i as u64;
            move || {
                black_box(id);
            }
        });
    });

    group.bench_function("tokio_sleep_poll_drop", |b| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        // The runtime is current, but no task is being polled: no coop
        // budget applies, so every first poll really registers its timer.
        let _enter = runtime.enter();
        let mut cx = TaskContext::from_waker(Waker::noop());
        b.iter(|| {
            let mut sleeps: Vec<Pin<Box<tokio::time::Sleep>>> = Vec::with_capacity(BATCH);
            for i in 0..BATCH {
                let mut sleep = Box::pin(tokio::time::sleep(batch_delay(i)));
                black_box(sleep.as_mut().poll(&mut cx).is_pending());
                sleeps.push(sleep);
            }
            drop(sleeps);
        });
    });

    group.finish();
}

// ---------------------------------------------------------------------------
// virtual_clock
// ---------------------------------------------------------------------------

/// Pending timers in the `virtual_clock` workloads.
const PENDING: usize = 10_000;

fn virtual_reactor() -> Reactor {
    Reactor::builder()
        .clock(Clock::Virtual(VirtualClock::new()))
        .build()
        .expect("reactor")
}

fn virtual_clock(c: &mut Criterion) {
    let mut group = c.benchmark_group("virtual_clock");

    // Per iteration: 10,000 timers scheduled and fired; criterion's
    // element rate is timers per second, and time per iteration / 10,000
    // is what benches/compare_clock.sh reports.
    group.throughput(Throughput::Elements(PENDING as u64));
    group.bench_function("drain_10k", |b| {
        let mut reactor = virtual_reactor();
        let handle = reactor.handle();
        b.iter(|| {
            reactor.context().run(|| {
                for i in 0..PENDING {
                    let delay = Duration::from_millis((i * 7919 % PENDING) as u64);
                    black_box(handle.call_later(delay, || {}));
                }
            });
            let mut fired = 0;
            while reactor.pending_timers() > 0 {
                fired += reactor
                    .advance(Duration::from_millis(1))
                    .expect("virtual clock");
            }
            assert_eq!(fired, PENDING);
        });
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("insert_fire_10k_pending", |b| {
        let mut reactor = virtual_reactor();
        let handle = reactor.handle();
        reactor.context().run(|| {
            for i in 0..PENDING {
                // ~115 days ahead: never due during the run.
                let delay = Duration::from_secs(10_000_000 + i as u64);
                black_box(handle.call_later(delay, || {}));
            }
        });
        let ctx = reactor.context().clone();
        b.iter(|| {
            ctx.run(|| black_box(handle.call_later(Duration::from_millis(1), || {})));
            let fired = reactor
                .advance(Duration::from_millis(1))
                .expect("virtual clock");
            debug_assert_eq!(fired, 1);
            black_box(fired)
        });
        assert_eq!(reactor.pending_timers(), PENDING);
    });

    group.finish();
}

criterion_group!(benches, timers_1m, virtual_clock);
criterion_main!(benches);
