//! Criterion benchmarks for milieu, each group measuring milieu side by side
//! with the peer its performance goal names (see docs/benchmarks.md).
//!
//! Run with `cargo bench --bench context` (append `-- --warm-up-time 1
//! --measurement-time 3` for a shorter run). `bash benches/context_ratios.sh`
//! runs the groups below, then benches/contextvars_bench.py (CPython's
//! `contextvars`, a reference with its interpreter, not a Rust peer), and
//! prints each goal ratio with PASS/MISS.
//!
//! Groups (bench ids are `group/name[/parameter]`):
//! - `lookup_hit`: reading a present value (`milieu_get_arc`,
//!   `milieu_with_borrow`) against a `thread_local!`
//!   `RefCell<Option<Arc<T>>>` (`thread_local_refcell_arc`, `.._borrow`), a
//!   tokio `task_local!` (`tokio_task_local_arc`, `.._borrow`) and an
//!   OpenTelemetry `Context` (`otel_map_current_arc`, `.._borrow`);
//! - `lookup_depth`: `get` with 0..1000 frames installed above the entry,
//!   with distinct filler types (`distinct/N`: the flattened map really
//!   grows), with one shadowed filler type (`shadowed/N`) and with the entry
//!   on top of N distinct fillers (`distinct_target_on_top/N`);
//! - `provide_drop`: installing and removing one entry: `milieu_provide/N`
//!   (`provide` + drop with N = 0, 10, 100 entries visible),
//!   `milieu_provide_arc` (`provide_arc(a.clone())` + drop: no allocation
//!   for the value), against OpenTelemetry's
//!   `Context::current_with_value(x).attach()` + drop of the guard
//!   (`otel_attach/N`, N = 0 or 10 values attached below), tokio's
//!   `sync_scope` (`tokio_task_local_sync_scope`, and `.._arc` with one
//!   `Arc::new`) and a thread-local replace/restore
//!   (`thread_local_refcell_replace_restore`);
//! - `install_snapshot`: a snapshot right after an install
//!   (`milieu_provide_then_current`: `provide`, `Context::current()`, drop
//!   of both) against the plain install (`milieu_provide`), both with an
//!   empty context;
//! - `snapshot`: repeated `Context::current` (`milieu_context_current`)
//!   against `Arc::clone` (`arc_clone`);
//! - `future_poll`: the per-poll cost of `WithContext`
//!   (`milieu_with_context`) against `tracing::Instrumented`
//!   (`tracing_instrumented_enable_all`, `tracing_instrumented_registry`)
//!   and the bare future (`bare`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use milieu::FutureExt;
use seq_macro::seq;

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// A filler type per `N`: installing `Filler::<0>` .. `Filler::<999>` puts
/// 1000 distinct types into the flattened map.
struct Filler<const N: usize>;

/// The most distinct filler frames a benchmark installs.
const MAX_FILLERS: usize = 1000;

/// Installs `count` frames, one per distinct filler type (`count` at most
/// [`MAX_FILLERS`]).
fn install_distinct(count: usize) -> Vec<milieu::Guard> {
    assert!(count <= MAX_FILLERS);
    let mut guards = Vec::with_capacity(count);
    seq!(N in 0..1000 {
        if N < count {
            guards.push(milieu::provide(Filler::<N>));
        }
    });
    guards
}

/// Installs `count` frames that all provide the same filler type, each
/// shadowing the one below.
fn install_shadowed(count: usize) -> Vec<milieu::Guard> {
    (0..count).map(|_| milieu::provide(Filler::<0>)).collect()
}

/// Drops guards in reverse order of creation, as milieu requires.
fn uninstall(mut guards: Vec<milieu::Guard>) {
    while let Some(guard) = guards.pop() {
        drop(guard);
    }
}

// ---------------------------------------------------------------------------
// lookup_hit
// ---------------------------------------------------------------------------

struct Hit(u64);

thread_local! {
    static TL_HIT: RefCell<Option<Arc<Hit>>> = const { RefCell::new(None) };
}

tokio::task_local! {
    static TASK_HIT: Arc<Hit>;
}

fn lookup_hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup_hit");

    // milieu: `get` clones the entry's `Arc`; `with` borrows it.
    group.bench_function("milieu_get_arc", |b| {
        let _guard = milieu::provide(Hit(7));
        b.iter(milieu::get::<Hit>);
    });
    group.bench_function("milieu_with_borrow", |b| {
        let _guard = milieu::provide(Hit(7));
        b.iter(|| milieu::with(|h: &Hit| black_box(h.0)));
    });

    // thread_local! RefCell<Option<Arc<T>>>: the same two kinds of read.
    group.bench_function("thread_local_refcell_arc", |b| {
        TL_HIT.with(|cell| *cell.borrow_mut() = Some(Arc::new(Hit(7))));
        b.iter(|| TL_HIT.with(|cell| cell.borrow().clone()));
        TL_HIT.with(|cell| cell.borrow_mut().take());
    });
    group.bench_function("thread_local_refcell_borrow", |b| {
        TL_HIT.with(|cell| *cell.borrow_mut() = Some(Arc::new(Hit(7))));
        b.iter(|| TL_HIT.with(|cell| cell.borrow().as_ref().map(|h| black_box(h.0))));
        TL_HIT.with(|cell| cell.borrow_mut().take());
    });

    // tokio task_local!, read inside `sync_scope`.
    group.bench_function("tokio_task_local_arc", |b| {
        TASK_HIT.sync_scope(Arc::new(Hit(7)), || b.iter(|| TASK_HIT.with(Arc::clone)));
    });
    group.bench_function("tokio_task_local_borrow", |b| {
        TASK_HIT.sync_scope(Arc::new(Hit(7)), || {
            b.iter(|| TASK_HIT.with(|h| black_box(h.0)))
        });
    });

    // OpenTelemetry: the value attached to the current context.
    group.bench_function("otel_map_current_borrow", |b| {
        let _guard = opentelemetry::Context::current_with_value(Hit(7)).attach();
        b.iter(|| {
            opentelemetry::Context::map_current(|cx| cx.get::<Hit>().map(|h| black_box(h.0)))
        });
    });
    group.bench_function("otel_map_current_arc", |b| {
        let _guard = opentelemetry::Context::current_with_value(Arc::new(Hit(7))).attach();
        b.iter(|| opentelemetry::Context::map_current(|cx| cx.get::<Arc<Hit>>().cloned()));
    });

    group.finish();
}

// ---------------------------------------------------------------------------
// lookup_depth
// ---------------------------------------------------------------------------

struct Deep(u64);

const DEPTHS: [usize; 5] = [0, 1, 10, 100, 1000];

fn lookup_depth(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup_depth");

    // The looked-up entry first, then `depth` frames of distinct types on
    // top of it: the top frame's map holds depth + 1 entries.
    for depth in DEPTHS {
        let target = milieu::provide(Deep(3));
        let fillers = install_distinct(depth);
        assert_eq!(milieu::get::<Deep>().map(|d| d.0).ok(), Some(3));
        group.bench_with_input(BenchmarkId::new("distinct", depth), &depth, |b, _| {
            b.iter(milieu::get::<Deep>);
        });
        uninstall(fillers);
        drop(target);
    }

    // The same, all filler frames providing one type: the map stays at two
    // entries whatever the depth.
    for depth in DEPTHS {
        let target = milieu::provide(Deep(3));
        let fillers = install_shadowed(depth);
        group.bench_with_input(BenchmarkId::new("shadowed", depth), &depth, |b, _| {
            b.iter(milieu::get::<Deep>);
        });
        uninstall(fillers);
        drop(target);
    }

    // The looked-up entry installed last, on top of `depth` distinct
    // fillers: it is the newest entry of the map (the end of the linear
    // scan while the map is small).
    for depth in DEPTHS {
        let fillers = install_distinct(depth);
        let target = milieu::provide(Deep(3));
        group.bench_with_input(
            BenchmarkId::new("distinct_target_on_top", depth),
            &depth,
            |b, _| {
                b.iter(milieu::get::<Deep>);
            },
        );
        drop(target);
        uninstall(fillers);
    }

    group.finish();
}

// ---------------------------------------------------------------------------
// provide_drop
// ---------------------------------------------------------------------------

struct Installed(u64);

tokio::task_local! {
    static TASK_INSTALLED: Installed;
    static TASK_INSTALLED_ARC: Arc<Installed>;
}

thread_local! {
    static TL_INSTALLED: RefCell<Option<Arc<Installed>>> = const { RefCell::new(None) };
}

/// Attaches `count` (0 or 10) OpenTelemetry contexts, each adding one value
/// of a distinct filler type on top of the one below: the last holds
/// `count` values. The guards are returned in order of attachment.
fn attach_otel_distinct(count: usize) -> Vec<opentelemetry::ContextGuard> {
    assert!(count == 0 || count == 10);
    let mut guards = Vec::with_capacity(count);
    if count == 10 {
        seq!(N in 0..10 {
            guards.push(opentelemetry::Context::current_with_value(Filler::<N>).attach());
        });
    }
    guards
}

/// Drops OpenTelemetry guards in reverse order of attachment.
fn detach_otel(mut guards: Vec<opentelemetry::ContextGuard>) {
    while let Some(guard) = guards.pop() {
        drop(guard);
    }
}

fn provide_drop(c: &mut Criterion) {
    let mut group = c.benchmark_group("provide_drop");

    for visible in [0, 10, 100] {
        let fillers = install_distinct(visible);
        {
            let _guard = milieu::provide(Installed(1));
            assert_eq!(milieu::with(|i: &Installed| i.0).ok(), Some(1));
        }
        group.bench_with_input(
            BenchmarkId::new("milieu_provide", visible),
            &visible,
            |b, _| {
                b.iter(|| drop(milieu::provide(Installed(black_box(1)))));
            },
        );
        uninstall(fillers);
    }

    // `provide_arc` with a clone of a shared `Arc`: milieu allocates nothing
    // for the value, only the frame.
    group.bench_function("milieu_provide_arc", |b| {
        let shared = Arc::new(Installed(1));
        {
            let _guard = milieu::provide_arc(shared.clone());
            assert_eq!(milieu::with(|i: &Installed| i.0).ok(), Some(1));
        }
        b.iter(|| drop(milieu::provide_arc(black_box(&shared).clone())));
    });

    // OpenTelemetry: a new context with the value on top of the current one,
    // attached, then the guard dropped; with 0 or 10 values (10 distinct
    // types, attached one over the other) below.
    for below in [0, 10] {
        let guards = attach_otel_distinct(below);
        {
            let _guard = opentelemetry::Context::current_with_value(Installed(1)).attach();
            opentelemetry::Context::map_current(|cx| {
                assert_eq!(cx.get::<Installed>().map(|i| i.0), Some(1));
                assert_eq!(cx.get::<Filler<9>>().is_some(), below == 10);
            });
        }
        group.bench_with_input(BenchmarkId::new("otel_attach", below), &below, |b, _| {
            b.iter(|| {
                drop(opentelemetry::Context::current_with_value(Installed(black_box(1))).attach())
            });
        });
        detach_otel(guards);
    }

    group.bench_function("tokio_task_local_sync_scope", |b| {
        b.iter(|| TASK_INSTALLED.sync_scope(Installed(black_box(1)), || ()));
    });
    // The same with an allocation per install, as milieu makes one for the
    // value (`Arc::new`).
    group.bench_function("tokio_task_local_sync_scope_arc", |b| {
        b.iter(|| TASK_INSTALLED_ARC.sync_scope(Arc::new(Installed(black_box(1))), || ()));
    });

    group.bench_function("thread_local_refcell_replace_restore", |b| {
        b.iter(|| {
            let old =
                TL_INSTALLED.with(|cell| cell.replace(Some(Arc::new(Installed(black_box(1))))));
            TL_INSTALLED.with(|cell| drop(cell.replace(old)));
        });
    });

    group.finish();
}

// ---------------------------------------------------------------------------
// install_snapshot
// ---------------------------------------------------------------------------

fn install_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("install_snapshot");

    // The plain install, the same as `provide_drop/milieu_provide/0`, so the
    // ratio is read within one group.
    group.bench_function("milieu_provide", |b| {
        b.iter(|| drop(milieu::provide(Installed(black_box(1)))));
    });
    // A snapshot taken right after the install: the snapshot is dropped,
    // then the guard.
    group.bench_function("milieu_provide_then_current", |b| {
        {
            let _guard = milieu::provide(Installed(1));
            let cx = milieu::Context::current();
            assert_eq!(cx.get::<Installed>().map(|i| i.0).ok(), Some(1));
        }
        b.iter(|| {
            let guard = milieu::provide(Installed(black_box(1)));
            drop(black_box(milieu::Context::current()));
            drop(guard);
        });
    });

    group.finish();
}

// ---------------------------------------------------------------------------
// snapshot
// ---------------------------------------------------------------------------

struct Snap(u64);

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");

    group.bench_function("milieu_context_current", |b| {
        let _guard = milieu::provide(Snap(1));
        assert_eq!(
            milieu::Context::current().get::<Snap>().map(|s| s.0).ok(),
            Some(1)
        );
        b.iter(milieu::Context::current);
    });
    group.bench_function("arc_clone", |b| {
        let arc = Arc::new(Snap(1));
        b.iter(|| Arc::clone(black_box(&arc)));
    });

    group.finish();
}

// ---------------------------------------------------------------------------
// future_poll
// ---------------------------------------------------------------------------

/// Polls per iteration: `PENDING` times `Pending`, then once `Ready`.
const PENDING: u32 = 1000;

/// Returns `Pending` (waking itself) while the shared counter is positive,
/// decrementing it, then `Ready`. The counter lives outside so the same
/// wrapped future can be run again without being rebuilt.
struct Countdown<'a> {
    left: &'a Cell<u32>,
}

impl Future for Countdown<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let left = self.left.get();
        if left == 0 {
            Poll::Ready(())
        } else {
            self.left.set(left - 1);
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Resets the counter and polls `fut` until `Ready`: `PENDING + 1` polls.
fn run_polls<F: Future<Output = ()> + Unpin>(fut: &mut F, left: &Cell<u32>) {
    left.set(PENDING);
    // An opaque waker, so waking is a real (no-op) call as on an executor.
    let mut cx = TaskContext::from_waker(black_box(Waker::noop()));
    while black_box(Pin::new(&mut *fut)).poll(&mut cx).is_pending() {}
}

/// A subscriber that enables every span and does nothing else: the
/// cheapest subscriber an `Instrumented` future can be entered under.
struct EnableAll {
    next_id: AtomicU64,
}

impl tracing::Subscriber for EnableAll {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

fn enabled_span(dispatch: &tracing::Dispatch) -> tracing::Span {
    let span = tracing::dispatcher::with_default(dispatch, || tracing::info_span!("poll"));
    assert!(!span.is_disabled(), "the benchmark span must be enabled");
    span
}

fn future_poll(c: &mut Criterion) {
    use tracing::Instrument;

    let mut group = c.benchmark_group("future_poll");
    group.throughput(Throughput::Elements(u64::from(PENDING) + 1));

    group.bench_function("bare", |b| {
        let left = Cell::new(0);
        let mut fut = Countdown { left: &left };
        b.iter(|| run_polls(&mut fut, &left));
    });

    group.bench_function("milieu_with_context", |b| {
        let left = Cell::new(0);
        let _guard = milieu::provide(Snap(1));
        let mut fut = Countdown { left: &left }.in_current_context();
        b.iter(|| run_polls(&mut fut, &left));
    });

    group.bench_function("tracing_instrumented_enable_all", |b| {
        let left = Cell::new(0);
        let dispatch = tracing::Dispatch::new(EnableAll {
            next_id: AtomicU64::new(1),
        });
        let mut fut = Countdown { left: &left }.instrument(enabled_span(&dispatch));
        b.iter(|| run_polls(&mut fut, &left));
    });

    group.bench_function("tracing_instrumented_registry", |b| {
        let left = Cell::new(0);
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry());
        let mut fut = Countdown { left: &left }.instrument(enabled_span(&dispatch));
        b.iter(|| run_polls(&mut fut, &left));
    });

    group.finish();
}

criterion_group!(
    benches,
    lookup_hit,
    lookup_depth,
    provide_drop,
    install_snapshot,
    snapshot,
    future_poll
);
criterion_main!(benches);
