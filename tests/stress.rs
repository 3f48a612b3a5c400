//! Snapshots shared between many threads, and exactly when values die.
//!
//! - Eight threads install entries, take snapshots and send them to each
//!   other; receivers enter them, install on top, snapshot that and send it
//!   on. Every lookup is checked against what the sender recorded (values
//!   encode the installing thread, its iteration and the install).
//! - One snapshot is entered by every thread at once, round after round,
//!   and its last reference is dropped away from the thread that built it.
//! - Values with a counting `Drop` are dropped exactly when the last thing
//!   that can still reach them (guard, snapshot, hop, wrapped future, `with`
//!   borrow) goes, on whichever thread that is; and a destructor may use
//!   the context wherever it runs.
//!
//! Loops are bounded by a count and by time; what is asserted does not
//! depend on how the threads interleave.

mod common;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{catch, poll_once, yield_now, DropCounter, DropToken};
use milieu::dump::HopKind;
use milieu::{Context, FutureExt, Guard};

struct K0(u64);
struct K1(u64);
struct K2(u64);
struct K3(u64);

const KINDS: usize = 4;
const THREADS: usize = 8;

/// The value visible for each kind, or `None`.
type Expect = [Option<u64>; KINDS];

#[derive(Clone, Copy, Debug)]
struct Install {
    kind: usize,
    value: u64,
    local: bool,
}

/// A value naming who installed it: thread, iteration, and which install.
fn value(thread: usize, iteration: usize, n: usize) -> u64 {
    assert!(thread < 1 << 8 && (iteration as u64) < 1 << 32 && n < 1 << 24);
    ((thread as u64) << 56) | ((iteration as u64) << 24) | n as u64
}

fn provide(i: Install) -> Guard {
    match (i.kind, i.local) {
        (0, false) => milieu::provide(K0(i.value)),
        (1, false) => milieu::provide(K1(i.value)),
        (2, false) => milieu::provide(K2(i.value)),
        (3, false) => milieu::provide(K3(i.value)),
        (0, true) => milieu::provide_local(K0(i.value)),
        (1, true) => milieu::provide_local(K1(i.value)),
        (2, true) => milieu::provide_local(K2(i.value)),
        (3, true) => milieu::provide_local(K3(i.value)),
        _ => unreachable!("kinds are 0..{KINDS}"),
    }
}

fn get(kind: usize) -> Option<u64> {
    match kind {
        0 => milieu::get::<K0>().ok().map(|v| v.0),
        1 => milieu::get::<K1>().ok().map(|v| v.0),
        2 => milieu::get::<K2>().ok().map(|v| v.0),
        3 => milieu::get::<K3>().ok().map(|v| v.0),
        _ => unreachable!(),
    }
}

fn with(kind: usize) -> Option<u64> {
    match kind {
        0 => milieu::with(|v: &K0| v.0).ok(),
        1 => milieu::with(|v: &K1| v.0).ok(),
        2 => milieu::with(|v: &K2| v.0).ok(),
        3 => milieu::with(|v: &K3| v.0).ok(),
        _ => unreachable!(),
    }
}

fn snapshot_get(ctx: &Context, kind: usize) -> Option<u64> {
    match kind {
        0 => ctx.get::<K0>().ok().map(|v| v.0),
        1 => ctx.get::<K1>().ok().map(|v| v.0),
        2 => ctx.get::<K2>().ok().map(|v| v.0),
        3 => ctx.get::<K3>().ok().map(|v| v.0),
        _ => unreachable!(),
    }
}

/// `base` with `installs` on top (local ones skipped for a snapshot).
fn overlay(base: Expect, installs: &[Install], carried_only: bool) -> Expect {
    let mut expect = base;
    for i in installs.iter().filter(|i| !(carried_only && i.local)) {
        expect[i.kind] = Some(i.value);
    }
    expect
}

#[track_caller]
fn check_current(expect: &Expect, what: &str) {
    for (kind, want) in expect.iter().enumerate() {
        assert_eq!(get(kind), *want, "get K{kind}: {what}");
        assert_eq!(with(kind), *want, "with K{kind}: {what}");
    }
}

/// Checks the current dump: the visible `K*` entries of `expect` plus
/// `others` visible entries of other types, and `hops` hops.
#[track_caller]
fn check_current_dump(expect: &Expect, others: usize, hops: usize, what: &str) {
    let dump = milieu::dump();
    let visible = expect.iter().flatten().count() + others;
    assert_eq!(dump.visible().count(), visible, "{what}:\n{dump}");
    assert_eq!(dump.hops().count(), hops, "{what}:\n{dump}");
}

/// Checks a snapshot's lookups and its dump, as [`check_current_dump`].
#[track_caller]
fn check_snapshot(ctx: &Context, expect: &Expect, others: usize, hops: usize, what: &str) {
    for (kind, want) in expect.iter().enumerate() {
        assert_eq!(
            snapshot_get(ctx, kind),
            *want,
            "Context::get K{kind}: {what}"
        );
    }
    let dump = ctx.dump();
    let visible = expect.iter().flatten().count() + others;
    assert_eq!(dump.visible().count(), visible, "{what}:\n{dump}");
    assert_eq!(dump.hops().count(), hops, "{what}:\n{dump}");
    assert_eq!(ctx.is_empty(), visible == 0, "{what}");
}

/// xorshift64*: a deterministic stream per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: usize) -> Self {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (seed as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

/// A snapshot on its way to another thread, with what it must show.
struct Parcel {
    ctx: Context,
    expect: Expect,
    hops: usize,
    /// How many threads have installed on top of it so far.
    generation: usize,
}

const MIN_ITERATIONS: usize = 50;
const MAX_ITERATIONS: usize = 2_000;
const TIME_LIMIT: Duration = Duration::from_secs(3);
const MAX_DEPTH: usize = 8;
/// A parcel is forwarded at most this many times.
const MAX_GENERATION: usize = 3;

struct Exchange {
    outboxes: Vec<Sender<Parcel>>,
    sent: AtomicUsize,
    received: AtomicUsize,
    iterations: AtomicUsize,
    all_looped: Barrier,
    start: Instant,
}

impl Exchange {
    fn send(&self, to: usize, parcel: Parcel) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.outboxes[to]
            .send(parcel)
            .expect("every inbox lives until the end");
    }
}

/// One thread of the exchange: its loop, then (once every thread is done
/// sending) the parcels left in its inbox.
fn exchange_worker(me: usize, inbox: Receiver<Parcel>, ex: &Exchange) {
    // A failed check must not leave the others waiting at the barrier.
    let looped = catch_unwind(AssertUnwindSafe(|| exchange_loop(me, &inbox, ex)));
    ex.all_looped.wait();
    let iterations = match looped {
        Ok(iterations) => iterations,
        Err(payload) => resume_unwind(payload),
    };
    // Nothing is sent after the barrier: drain what is left.
    let mut k = 0;
    while let Ok(parcel) = inbox.try_recv() {
        receive(me, iterations, k, parcel, None, ex);
        k += 1;
    }
    assert!(milieu::dump().frames.is_empty());
}

/// The sending and receiving loop; returns its iteration count.
fn exchange_loop(me: usize, inbox: &Receiver<Parcel>, ex: &Exchange) -> usize {
    let mut rng = Rng::new(me);
    // The thread's own installs, bottom first, kept across iterations.
    let mut own: Vec<(Install, Guard)> = Vec::new();
    let own_expect = |own: &[(Install, Guard)], carried_only| {
        let installs: Vec<Install> = own.iter().map(|(i, _)| *i).collect();
        overlay([None; KINDS], &installs, carried_only)
    };
    // The last iteration's snapshot: checked again after its guards went.
    let mut previous: Option<(Context, Expect)> = None;

    let mut i = 0;
    while i < MAX_ITERATIONS && (i < MIN_ITERATIONS || ex.start.elapsed() < TIME_LIMIT) {
        // Remove some of the own installs (newest first), then add some.
        let pops = rng
            .below(own.len() + 1)
            .max((own.len() + 1).saturating_sub(MAX_DEPTH));
        for _ in 0..pops {
            drop(own.pop());
            check_current(&own_expect(&own, false), "after an own drop");
        }
        let pushes = 1 + rng.below(3.min(MAX_DEPTH - own.len()));
        for n in 0..pushes {
            let install = Install {
                kind: rng.below(KINDS),
                value: value(me, i, n),
                local: rng.below(4) == 0,
            };
            own.push((install, provide(install)));
            check_current(&own_expect(&own, false), "after an own install");
        }
        if i % 16 == 0 {
            check_current_dump(&own_expect(&own, false), 0, 0, "own installs");
        }
        if let Some((ctx, expect)) = previous.take() {
            check_snapshot(&ctx, &expect, 0, 0, "last iteration's snapshot");
        }

        // Snapshot and send; a third of them through a thread hop.
        let snap = Context::current();
        let carried = own_expect(&own, true);
        check_snapshot(&snap, &carried, 0, 0, "own snapshot");
        let hop = i % 3 == 0;
        let to = (me + 1 + i % (THREADS - 1)) % THREADS;
        ex.send(
            to,
            Parcel {
                ctx: if hop {
                    snap.hop(HopKind::Thread)
                } else {
                    snap.clone()
                },
                expect: carried,
                hops: usize::from(hop),
                generation: 0,
            },
        );
        previous = Some((snap, carried));

        // Whatever arrived: entered on top of (and hiding) the own installs.
        let mut k = 0;
        while let Ok(parcel) = inbox.try_recv() {
            receive(me, i, k, parcel, Some(&mut rng), ex);
            check_current(&own_expect(&own, false), "after receiving");
            k += 1;
        }
        i += 1;
    }
    while let Some((_, guard)) = own.pop() {
        drop(guard);
    }
    check_current(&[None; KINDS], "after the loop");
    if let Some((ctx, expect)) = previous.take() {
        check_snapshot(&ctx, &expect, 0, 0, "the last snapshot, after every drop");
    }
    ex.iterations.fetch_add(i, Ordering::SeqCst);
    i
}

/// Enters a parcel, installs on top, snapshots that and (with `forward`)
/// sends the snapshot on.
fn receive(
    me: usize,
    i: usize,
    k: usize,
    parcel: Parcel,
    forward: Option<&mut Rng>,
    ex: &Exchange,
) {
    let Parcel {
        ctx,
        expect,
        hops,
        generation,
    } = parcel;
    check_snapshot(&ctx, &expect, 0, hops, "a received snapshot");
    let entered = ctx.enter();
    check_current(&expect, "a received snapshot, entered");
    check_current_dump(&expect, 0, hops, "a received snapshot, entered");

    // Distinct from the own installs' values (n < 3).
    let base_n = 0x100 * (k + 1);
    let mut installs = Vec::new();
    let mut guards = Vec::new();
    for j in 0..1 + (i + k) % 3 {
        let install = Install {
            kind: (me + i + j) % KINDS,
            value: value(me, i, base_n + j),
            local: (i + j) % 5 == 0,
        };
        installs.push(install);
        guards.push(provide(install));
        check_current(
            &overlay(expect, &installs, false),
            "installed on a received snapshot",
        );
    }
    let nested = Context::current();
    let nested_expect = overlay(expect, &installs, true);
    check_snapshot(
        &nested,
        &nested_expect,
        0,
        hops,
        "a snapshot of a received one",
    );
    check_current_dump(
        &overlay(expect, &installs, false),
        0,
        hops,
        "installed on a received snapshot",
    );

    match forward {
        Some(rng) if generation < MAX_GENERATION => {
            let to = (me + 1 + rng.below(THREADS - 1)) % THREADS;
            let hop = rng.below(2) == 0;
            ex.send(
                to,
                Parcel {
                    ctx: if hop {
                        nested.hop(HopKind::Thread)
                    } else {
                        nested.clone()
                    },
                    expect: nested_expect,
                    hops: hops + usize::from(hop),
                    generation: generation + 1,
                },
            );
        }
        _ => {}
    }

    while let Some(guard) = guards.pop() {
        drop(guard);
        installs.pop();
        check_current(
            &overlay(expect, &installs, false),
            "dropping on a received snapshot",
        );
    }
    drop(entered);
    check_snapshot(&nested, &nested_expect, 0, hops, "after its installs went");
    check_snapshot(&ctx, &expect, 0, hops, "after it was left");
    // Often the last reference, from the sender's thread or a forwarder's.
    drop(ctx);
    drop(nested);
    ex.received.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn eight_threads_exchange_snapshots_and_each_sees_exactly_what_was_sent() {
    let (outboxes, inboxes): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
    let ex = Exchange {
        outboxes,
        sent: AtomicUsize::new(0),
        received: AtomicUsize::new(0),
        iterations: AtomicUsize::new(0),
        all_looped: Barrier::new(THREADS),
        start: Instant::now(),
    };
    std::thread::scope(|s| {
        for (me, inbox) in inboxes.into_iter().enumerate() {
            let ex = &ex;
            std::thread::Builder::new()
                .name(format!("exchange-{me}"))
                .spawn_scoped(s, move || exchange_worker(me, inbox, ex))
                .expect("spawn");
        }
    });
    let sent = ex.sent.load(Ordering::SeqCst);
    assert!(ex.iterations.load(Ordering::SeqCst) >= THREADS * MIN_ITERATIONS);
    assert!(sent >= THREADS * MIN_ITERATIONS, "each iteration sends one");
    assert_eq!(
        ex.received.load(Ordering::SeqCst),
        sent,
        "every snapshot sent was received and checked"
    );
    assert!(milieu::dump().frames.is_empty());
}

/// A value that counts its drops.
struct Tracked(#[allow(dead_code)] DropToken);

#[derive(Debug)]
struct Label(#[allow(dead_code)] &'static str);

const ROUNDS: usize = 300;

#[test]
fn one_snapshot_entered_by_every_thread_at_once() {
    let counter = DropCounter::new();
    let ctx = {
        let _a = milieu::scope()
            .with(K0(1))
            .with_debug(Label("shared"))
            .because("the shared one")
            .enter();
        let _tracked = milieu::provide(Tracked(counter.token()));
        let _local = milieu::provide_local(K1(99));
        let _b = milieu::provide(K2(3));
        let _shadow = milieu::provide(K0(2));
        Context::current().hop(HopKind::Thread)
    };
    assert_eq!(counter.dropped(), 0, "the snapshot holds the value");
    // The first entry records where the hop arrived; from then on every
    // dump of the snapshot is the same, whichever thread takes it.
    ctx.run(|| ());
    let reference = ctx.dump();
    let expect: Expect = [Some(2), None, Some(3), None];
    // `Label` and `Tracked` are visible too.
    const OTHERS: usize = 2;
    check_snapshot(&ctx, &expect, OTHERS, 1, "the shared snapshot");
    // K0 (visible), Label, Tracked, K2; K1 is local, the first K0 shadowed.
    assert_eq!(reference.visible().count(), 4, "{reference}");
    assert_eq!(reference.entries().count(), 6, "{reference}");

    // One reference per worker, none left here: the last one is dropped
    // on a worker, never on the thread that built the snapshot.
    let ctx = Arc::new(ctx);
    let shares: Vec<Arc<Context>> = (0..THREADS).map(|_| Arc::clone(&ctx)).collect();
    drop(ctx);
    let barrier = Barrier::new(THREADS);
    let go = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        for (t, ctx) in shares.into_iter().enumerate() {
            let (barrier, go, counter) = (&barrier, &go, &counter);
            let reference = &reference;
            s.spawn(move || {
                for round in 0.. {
                    // The leader decides for everyone whether to go on.
                    if barrier.wait().is_leader() {
                        go.store(
                            round < ROUNDS && (round < 10 || start.elapsed() < TIME_LIMIT),
                            Ordering::SeqCst,
                        );
                    }
                    barrier.wait();
                    if !go.load(Ordering::SeqCst) {
                        break;
                    }
                    let guard = ctx.enter();
                    check_current(&expect, "the shared snapshot, entered");
                    check_current_dump(&expect, OTHERS, 1, "the shared snapshot, entered");
                    assert!(milieu::contains::<Tracked>());
                    assert!(milieu::contains::<Label>());
                    assert_eq!(ctx.dump().frames, reference.frames, "round {round}");
                    let mine = value(t, round, 0);
                    let top = milieu::provide(K1(mine));
                    let shadow = milieu::provide(K2(mine));
                    let on_top: Expect = [Some(2), Some(mine), Some(mine), None];
                    check_current(&on_top, "installed on the shared snapshot");
                    let nested = Context::current();
                    check_snapshot(&nested, &on_top, OTHERS, 1, "a snapshot on the shared one");
                    drop(shadow);
                    drop(top);
                    drop(guard);
                    check_current(&[None; KINDS], "left the shared snapshot");
                    check_snapshot(
                        &nested,
                        &on_top,
                        OTHERS,
                        1,
                        "a snapshot on the shared one, later",
                    );
                    check_snapshot(&ctx, &expect, OTHERS, 1, "the shared snapshot, unchanged");
                    assert_eq!(counter.dropped(), 0, "alive while snapshots are");
                }
                // One of these drops is the last reference.
                drop(ctx);
            });
        }
    });
    assert_eq!(
        counter.dropped(),
        1,
        "dropped once, with the last reference"
    );
}

#[test]
fn a_value_is_dropped_with_its_guard_when_nothing_else_holds_it() {
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    assert_eq!(counter.dropped(), 0);
    drop(guard);
    assert_eq!(counter.dropped(), 1);

    // Shadowing: the shadowed value lives on until its own guard goes.
    let (outer, inner) = (DropCounter::new(), DropCounter::new());
    let g_outer = milieu::provide(Tracked(outer.token()));
    let g_inner = milieu::scope()
        .with(Tracked(inner.token()))
        .with(K0(1))
        .enter();
    drop(g_inner);
    assert_eq!((outer.dropped(), inner.dropped()), (0, 1));
    drop(g_outer);
    assert_eq!((outer.dropped(), inner.dropped()), (1, 1));

    // A snapshot that was taken and dropped again holds nothing.
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    let snap = Context::current();
    drop(snap);
    drop(guard);
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn a_local_value_is_dropped_with_its_guard_even_while_a_snapshot_lives() {
    let (local, inherited) = (DropCounter::new(), DropCounter::new());
    let g_inherited = milieu::provide(Tracked(inherited.token()));
    let g_local = milieu::provide_local(K0(7));
    let g_local_tracked = milieu::scope().with_local(Tracked(local.token())).enter();
    let snap = Context::current();
    drop(g_local_tracked);
    assert_eq!(local.dropped(), 1, "a snapshot never carries a local value");
    drop(g_local);
    drop(g_inherited);
    assert_eq!(inherited.dropped(), 0, "the snapshot carries this one");
    assert!(snap.contains::<Tracked>());
    drop(snap);
    assert_eq!((local.dropped(), inherited.dropped()), (1, 1));
}

#[test]
fn a_snapshot_keeps_a_value_until_its_last_clone_drops_on_another_thread() {
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    let snap = Context::current();
    let clone = snap.clone();
    drop(guard);
    assert_eq!(counter.dropped(), 0, "the snapshot holds it");
    drop(snap);
    assert_eq!(counter.dropped(), 0, "a clone still holds it");

    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let entered = clone.enter();
        drop(clone);
        assert!(milieu::contains::<Tracked>());
        entered_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // The entered guard is the last holder now.
        drop(entered);
    });
    entered_rx.recv().unwrap();
    assert_eq!(counter.dropped(), 0, "the other thread is inside it");
    go_tx.send(()).unwrap();
    worker.join().unwrap();
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn a_snapshot_taken_on_another_thread_keeps_the_values_below_it() {
    let (below, above) = (DropCounter::new(), DropCounter::new());
    let guard = milieu::provide(Tracked(below.token()));
    let snap = Context::current();
    drop(guard);
    let above_token = above.token();
    let nested = std::thread::spawn(move || {
        snap.run(|| {
            milieu::scope().with(K0(1)).run(|| {
                let _t = milieu::provide(above_token);
                Context::current()
            })
        })
        // `snap` itself is dropped here, on this thread.
    })
    .join()
    .unwrap();
    assert_eq!((below.dropped(), above.dropped()), (0, 0));
    assert!(nested.contains::<Tracked>());
    assert_eq!(nested.get::<K0>().unwrap().0, 1);
    drop(nested);
    assert_eq!((below.dropped(), above.dropped()), (1, 1));
}

#[test]
fn an_out_of_order_repair_drops_the_values_above_at_once() {
    let counters: Vec<DropCounter> = (0..3).map(|_| DropCounter::new()).collect();
    let base = milieu::provide(K3(0));
    let g0 = milieu::provide(Tracked(counters[0].token()));
    let g1 = milieu::provide_local(Tracked(counters[1].token()));
    let g2 = milieu::scope().with(Tracked(counters[2].token())).enter();
    let message = catch(|| drop(g0)).expect_err("out of order");
    assert!(message.contains("out of order"), "{message}");
    let dropped = |c: &[DropCounter]| c.iter().map(DropCounter::dropped).collect::<Vec<_>>();
    assert_eq!(dropped(&counters), [1, 1, 1]);
    assert!(!milieu::contains::<Tracked>());
    assert_eq!(milieu::get::<K3>().unwrap().0, 0);
    catch(|| drop(g2)).expect("the removed guards are quiet");
    catch(|| drop(g1)).expect("the removed guards are quiet");
    assert_eq!(dropped(&counters), [1, 1, 1], "and drop nothing twice");
    drop(base);

    // With a snapshot of the removed installs alive, their inherited
    // values stay with it; the local one goes.
    let counters: Vec<DropCounter> = (0..3).map(|_| DropCounter::new()).collect();
    let g0 = milieu::provide(Tracked(counters[0].token()));
    let g1 = milieu::provide_local(Tracked(counters[1].token()));
    let g2 = milieu::provide(K0(5));
    let snap = Context::current();
    catch(|| drop(g0)).expect_err("out of order");
    assert_eq!(dropped(&counters), [0, 1, 0]);
    assert_eq!(snap.get::<K0>().unwrap().0, 5);
    assert!(snap.contains::<Tracked>());
    catch(|| drop(g1)).expect("quiet");
    catch(|| drop(g2)).expect("quiet");
    drop(snap);
    assert_eq!(dropped(&counters), [1, 1, 0]);
    assert!(milieu::dump().frames.is_empty());
}

#[test]
fn a_with_borrow_keeps_its_value_through_an_out_of_order_repair() {
    let counter = DropCounter::new();
    let g_tracked = milieu::provide(Tracked(counter.token()));
    let g_above = milieu::provide(K0(1));
    let mut g_tracked = Some(g_tracked);
    milieu::with(|_: &Tracked| {
        let message = catch(|| drop(g_tracked.take())).expect_err("out of order");
        assert!(message.contains("out of order"), "{message}");
        assert!(!milieu::contains::<Tracked>());
        assert!(!milieu::contains::<K0>());
        // Churn the stack while the borrow is out.
        for i in 0..16 {
            let _g = milieu::provide(K1(i));
            let _snap = Context::current();
        }
        assert_eq!(counter.dropped(), 0, "borrowed until the closure returns");
    })
    .unwrap();
    assert_eq!(counter.dropped(), 1);
    catch(|| drop(g_above)).expect("quiet");
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn a_thread_hop_keeps_values_until_the_thread_is_done() {
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let worker = milieu::thread::spawn(move || {
        go_rx.recv().unwrap();
        milieu::contains::<Tracked>()
    });
    drop(guard);
    assert_eq!(
        counter.dropped(),
        0,
        "the spawned thread's context holds it"
    );
    go_tx.send(()).unwrap();
    assert!(worker.join().unwrap(), "the spawned thread saw the value");
    assert_eq!(counter.dropped(), 1);

    // An explicit hop is a snapshot too.
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    let hopped = Context::current().hop(HopKind::Stage);
    drop(guard);
    assert_eq!(counter.dropped(), 0);
    std::thread::spawn(move || {
        hopped.run(|| assert!(milieu::contains::<Tracked>()));
        drop(hopped);
    })
    .join()
    .unwrap();
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn a_wrapped_future_keeps_values_until_it_is_dropped() {
    // Dropped after a pending poll, without completing.
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    let mut fut = Box::pin(
        async {
            yield_now().await;
            milieu::contains::<Tracked>()
        }
        .in_current_context(),
    );
    drop(guard);
    assert_eq!(counter.dropped(), 0);
    assert!(poll_once(fut.as_mut()).is_pending());
    assert!(!milieu::contains::<Tracked>(), "only inside the poll");
    assert_eq!(counter.dropped(), 0, "the future holds it between polls");
    drop(fut);
    assert_eq!(counter.dropped(), 1);

    // Completed (and so dropped) on another thread.
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    let fut = async {
        yield_now().await;
        milieu::contains::<Tracked>()
    }
    .in_current_context();
    drop(guard);
    let seen = std::thread::spawn(move || futures::executor::block_on(fut))
        .join()
        .unwrap();
    assert!(seen, "the future saw the value on the other thread");
    assert_eq!(counter.dropped(), 1);

    // A snapshot taken inside a poll outlives the future.
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked(counter.token()));
    let fut = async { Context::current() }.in_current_context();
    drop(guard);
    let inside = futures::executor::block_on(fut);
    assert_eq!(counter.dropped(), 0, "the snapshot taken inside holds it");
    assert_eq!(
        inside.dump().hops().next().map(|h| h.kind),
        Some(HopKind::Task)
    );
    drop(inside);
    assert_eq!(counter.dropped(), 1);
}

/// A value whose destructor uses the context: installs, looks up, takes a
/// snapshot and a dump, and counts itself only once all that passed.
struct UsesContextOnDrop(Arc<AtomicUsize>);

impl Drop for UsesContextOnDrop {
    fn drop(&mut self) {
        let before = milieu::dump();
        {
            let _g = milieu::provide(K3(77));
            assert_eq!(milieu::get::<K3>().unwrap().0, 77);
            assert_eq!(milieu::with(|k: &K3| k.0).unwrap(), 77);
            assert_eq!(Context::current().get::<K3>().unwrap().0, 77);
            assert!(milieu::dump().visible().count() >= 1);
        }
        assert_eq!(
            milieu::dump(),
            before,
            "the destructor left the context as it found it"
        );
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_destructor_may_use_the_context_wherever_the_value_is_dropped() {
    // With its guard, in order.
    let counter = Arc::new(AtomicUsize::new(0));
    let base = milieu::provide(K0(1));
    let guard = milieu::provide(UsesContextOnDrop(Arc::clone(&counter)));
    drop(guard);
    assert_eq!(counter.load(Ordering::SeqCst), 1);
    assert_eq!(milieu::get::<K0>().unwrap().0, 1);

    // A local value, with its guard.
    let counter = Arc::new(AtomicUsize::new(0));
    let guard = milieu::provide_local(UsesContextOnDrop(Arc::clone(&counter)));
    drop(guard);
    assert_eq!(counter.load(Ordering::SeqCst), 1);

    // By an out-of-order repair (inherited and local values above).
    let counter = Arc::new(AtomicUsize::new(0));
    let older = milieu::provide(K1(1));
    let inherited = milieu::provide(UsesContextOnDrop(Arc::clone(&counter)));
    let local = milieu::provide_local(UsesContextOnDrop(Arc::clone(&counter)));
    let message = catch(|| drop(older)).expect_err("out of order");
    assert!(message.contains("out of order"), "{message}");
    assert_eq!(counter.load(Ordering::SeqCst), 2);
    catch(|| drop(local)).expect("quiet");
    catch(|| drop(inherited)).expect("quiet");
    assert_eq!(counter.load(Ordering::SeqCst), 2);

    // After a `with` borrow that outlived its guard.
    let counter = Arc::new(AtomicUsize::new(0));
    let mut guard = Some(milieu::provide(UsesContextOnDrop(Arc::clone(&counter))));
    milieu::with(|_: &UsesContextOnDrop| {
        drop(guard.take());
        assert_eq!(counter.load(Ordering::SeqCst), 0);
    })
    .unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 1);

    // With the last snapshot, on another thread inside another context.
    let counter = Arc::new(AtomicUsize::new(0));
    let guard = milieu::provide(UsesContextOnDrop(Arc::clone(&counter)));
    let snap = Context::current();
    drop(guard);
    std::thread::spawn(move || {
        let _other = milieu::provide(K2(2));
        drop(snap);
        assert_eq!(milieu::get::<K2>().unwrap().0, 2);
    })
    .join()
    .unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 1);

    // With the last snapshot, while that snapshot's context is current
    // elsewhere on this thread (left, then dropped).
    let counter = Arc::new(AtomicUsize::new(0));
    let guard = milieu::provide(UsesContextOnDrop(Arc::clone(&counter)));
    let snap = Context::current();
    drop(guard);
    snap.run(|| assert!(milieu::contains::<UsesContextOnDrop>()));
    drop(snap);
    assert_eq!(counter.load(Ordering::SeqCst), 1);

    drop(base);
    assert!(milieu::dump().frames.is_empty());
}
