//! Criterion benchmarks for `milieu::tokio::spawn` (issue 15), measured
//! side by side with plain `tokio::spawn` (see docs/benchmarks.md, "tokio
//! spawn with context").
//!
//! Run with `cargo bench --bench tokio_spawn --features tokio` (append
//! `-- --warm-up-time 1 --measurement-time 3` for a shorter run).
//!
//! Groups (bench ids are `group/name`), each iteration one spawn of a
//! trivial task and the `.await` of its `JoinHandle`, from inside
//! `block_on`:
//! - `spawn_join_current_thread`: on a current_thread runtime,
//!   `milieu_spawn` (`milieu::tokio::spawn` with one entry installed, so
//!   the snapshot and the hop are real) against `tokio_spawn`;
//! - `spawn_join_multi_thread`: the same on a multi-thread runtime with two
//!   workers (the task is stolen by a worker; the spawner waits for it).
//!
//! Goal: milieu ≤ 1.3x tokio's time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

/// The entry installed for the milieu runs.
struct RequestId(u64);

/// `iters` spawns and joins inside one `block_on`, timed there.
fn time_spawns(rt: &tokio::runtime::Runtime, iters: u64, with_milieu: bool) -> Duration {
    let _request = milieu::provide(RequestId(7));
    rt.block_on(async move {
        let start = Instant::now();
        for i in 0..iters {
            let out = if with_milieu {
                milieu::tokio::spawn(async move { black_box(i) }).await
            } else {
                tokio::spawn(async move { black_box(i) }).await
            };
            black_box(out.unwrap());
        }
        start.elapsed()
    })
}

fn spawn_join(c: &mut Criterion, group: &str, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group(group);
    g.bench_function("milieu_spawn", |b| {
        b.iter_custom(|iters| time_spawns(rt, iters, true))
    });
    g.bench_function("tokio_spawn", |b| {
        b.iter_custom(|iters| time_spawns(rt, iters, false))
    });
    g.finish();
    // The entry really was there for milieu's tasks.
    let _request = milieu::provide(RequestId(7));
    let seen = rt.block_on(async {
        milieu::tokio::spawn(async { milieu::get::<RequestId>().unwrap().0 })
            .await
            .unwrap()
    });
    assert_eq!(seen, 7);
}

fn current_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    spawn_join(c, "spawn_join_current_thread", &rt);
}

fn multi_thread(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    spawn_join(c, "spawn_join_multi_thread", &rt);
}

criterion_group!(benches, current_thread, multi_thread);
criterion_main!(benches);
