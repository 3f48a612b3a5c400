//! Criterion benchmarks for `milieu::tokio::spawn` (issue 15), measured
//! side by side with plain `tokio::spawn` (see docs/benchmarks.md, "tokio
//! spawn with context").
//!
//! Run with `cargo bench --bench tokio_spawn --features tokio` (append
//! `-- --warm-up-time 1 --measurement-time 3` for a shorter run).
//!
//! Groups (bench ids are `group/name`), each iteration one spawn of a
//! trivial task and the `.await` of its `JoinHandle`, from inside a task
//! running on the runtime:
//! - `spawn_join_current_thread`: on a current_thread runtime,
//!   `milieu_spawn` (`milieu::tokio::spawn` with one entry installed, so
//!   the snapshot and the hop are real) and `milieu_spawn_empty_context`
//!   (nothing installed: no hop frame is made) against `tokio_spawn`;
//! - `spawn_join_multi_thread`: the same on a multi-thread runtime with two
//!   workers (the spawned task lands in the spawning worker's queue; the
//!   other worker may steal it).
//!
//! Goal: milieu ≤ 1.3x tokio's time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

/// The entry installed for the milieu runs.
struct RequestId(u64);

/// How the tasks are spawned.
#[derive(Clone, Copy)]
enum Spawn {
    /// `milieu::tokio::spawn` with one entry visible.
    Milieu,
    /// `milieu::tokio::spawn` with nothing visible (no snapshot, no hop).
    MilieuEmpty,
    /// `tokio::spawn`.
    Tokio,
}

/// `iters` spawns and joins, timed inside one task on the runtime (so the
/// spawned tasks go to that worker's own queue, as a service's would),
/// which runs with `RequestId` installed unless `how` is `MilieuEmpty`.
fn time_spawns(rt: &tokio::runtime::Runtime, iters: u64, how: Spawn) -> Duration {
    let timed = async move {
        let start = Instant::now();
        for i in 0..iters {
            let out = match how {
                Spawn::Milieu | Spawn::MilieuEmpty => {
                    milieu::tokio::spawn(async move { black_box(i) }).await
                }
                Spawn::Tokio => tokio::spawn(async move { black_box(i) }).await,
            };
            black_box(out.unwrap());
        }
        start.elapsed()
    };
    let outer = match how {
        Spawn::MilieuEmpty => rt.spawn(timed),
        Spawn::Milieu | Spawn::Tokio => {
            let _request = milieu::provide(RequestId(7));
            milieu::tokio::spawn_on(rt.handle(), timed)
        }
    };
    rt.block_on(outer).unwrap()
}

fn spawn_join(c: &mut Criterion, group: &str, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group(group);
    g.bench_function("milieu_spawn", |b| {
        b.iter_custom(|iters| time_spawns(rt, iters, Spawn::Milieu))
    });
    g.bench_function("milieu_spawn_empty_context", |b| {
        b.iter_custom(|iters| time_spawns(rt, iters, Spawn::MilieuEmpty))
    });
    g.bench_function("tokio_spawn", |b| {
        b.iter_custom(|iters| time_spawns(rt, iters, Spawn::Tokio))
    });
    g.finish();
    // The entry really was there for milieu's tasks.
    let _request = milieu::provide(RequestId(7));
    let seen = rt.block_on(milieu::tokio::spawn_on(rt.handle(), async {
        milieu::tokio::spawn(async { milieu::get::<RequestId>().unwrap().0 })
            .await
            .unwrap()
    }));
    assert_eq!(seen.unwrap(), 7);
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
