//! Criterion benchmarks of stages, milieu side by side with the peer its
//! goal names (see docs/benchmarks.md, "Stages").
//!
//! Run with `cargo bench --bench stage`; `cargo bench --bench stage --
//! --test` runs each function once, as a smoke test.
//!
//! Groups:
//! - `stage_round_trip`: the latency of one item sent from an event loop
//!   to a worker thread and its result awaited back on the loop, items one
//!   after the other (never two in flight). milieu: one `Reactor::new()`
//!   and a `Stage` with 1 worker running `|x: u64| x + 1` (default idle
//!   spin; `..._no_spin` with `idle_spin(Duration::ZERO)`, so the worker
//!   sleeps after each job as tokio's blocking thread does); a reactor task
//!   does `iters` sequential `stage.submit(i).unwrap().await`, and the
//!   whole `reactor.run_until` is timed. tokio: a current-thread runtime
//!   (`enable_all`, default blocking pool) whose `block_on` does `iters`
//!   sequential `tokio::task::spawn_blocking(move || i + 1).await`, timed
//!   whole. Both sides create their loop and threads once, outside the
//!   timing; criterion's warm-up starts tokio's blocking thread. The
//!   element rate is round trips per second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};
use milieu::reactor::Reactor;
use milieu::stage::{CloseMode, Stage};

fn stage_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("stage_round_trip");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(10));

    for (name, spin) in [
        ("milieu_stage_submit_await", None),
        ("milieu_stage_submit_await_no_spin", Some(Duration::ZERO)),
    ] {
        group.bench_function(name, |b| round_trips(b, spin));
    }

    group.bench_function("tokio_spawn_blocking_await", |b| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        b.iter_custom(|iters| {
            let start = Instant::now();
            let sum = runtime.block_on(async {
                let mut sum = 0u64;
                for i in 0..iters {
                    sum += tokio::task::spawn_blocking(move || i + 1)
                        .await
                        .expect("job ran");
                }
                sum
            });
            let elapsed = start.elapsed();
            black_box(sum);
            elapsed
        });
    });

    group.finish();
}

/// The milieu side of `stage_round_trip`: `spin` overrides the stage's
/// idle spin (`None`: the default).
fn round_trips(b: &mut Bencher<'_>, spin: Option<Duration>) {
    let mut reactor = Reactor::new().expect("reactor");
    let handle = reactor.handle();
    let mut builder = Stage::builder("bench").workers(1);
    if let Some(spin) = spin {
        builder = builder.idle_spin(spin);
    }
    let stage = builder.build(|x: u64| x + 1).expect("stage");
    b.iter_custom(|iters| {
        let stage = stage.clone();
        let start = Instant::now();
        let task = handle.spawn(async move {
            let mut sum = 0u64;
            for i in 0..iters {
                sum += stage.submit(i).unwrap().await.expect("handler ran");
            }
            sum
        });
        let sum = reactor.run_until(task).expect("reactor").expect("task");
        let elapsed = start.elapsed();
        black_box(sum);
        elapsed
    });
    stage
        .close(CloseMode::Drain)
        .expect("closed from the bench thread");
}

criterion_group!(benches, stage_round_trip);
criterion_main!(benches);
