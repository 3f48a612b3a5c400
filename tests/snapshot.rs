//! Snapshots: `Context::current`, `run`, `enter`, `get`, `empty`.

mod common;

use std::sync::Arc;

use common::{assert_empty_context, in_fresh_thread};
use milieu::Context;

#[derive(Debug, PartialEq)]
struct A(u32);
#[derive(Debug, PartialEq)]
struct B(u32);
struct C;

#[test]
fn a_snapshot_is_unaffected_by_later_provides_and_drops() {
    let a = milieu::provide(A(1));
    let snap = Context::current();
    let b = milieu::provide(B(2));
    let shadow = milieu::provide(A(99));
    assert!(!snap.contains::<B>(), "installed after the snapshot");
    assert_eq!(
        *snap.get::<A>().unwrap(),
        A(1),
        "shadowed after the snapshot"
    );
    drop(shadow);
    drop(b);
    drop(a);
    assert!(!milieu::contains::<A>());
    assert!(snap.contains::<A>(), "the snapshot outlives the scope");
    assert_eq!(*snap.get::<A>().unwrap(), A(1));
    snap.run(|| {
        assert_eq!(*milieu::get::<A>().unwrap(), A(1));
        assert!(!milieu::contains::<B>());
    });
    assert_empty_context();
}

#[test]
fn run_on_another_thread() {
    let snap = milieu::scope().with(A(7)).run(Context::current);
    let seen = in_fresh_thread("snapshot-run", move || {
        assert!(!milieu::contains::<A>(), "a std thread starts empty");
        let seen = snap.run(|| milieu::get::<A>().unwrap().0);
        assert_empty_context();
        seen
    });
    assert_eq!(seen, 7);
}

#[test]
fn enter_on_another_thread() {
    let snap = milieu::scope().with(A(8)).run(Context::current);
    in_fresh_thread("snapshot-enter", move || {
        let guard = snap.enter();
        assert_eq!(milieu::get::<A>().unwrap().0, 8);
        let inner = milieu::provide(B(1));
        assert!(milieu::contains::<B>());
        drop(inner);
        drop(guard);
        assert_empty_context();
    });
}

#[test]
fn run_makes_the_snapshot_current_instead_of_merging() {
    let snap = milieu::scope().with(A(1)).run(Context::current);
    let _c = milieu::provide(C);
    snap.run(|| {
        assert!(milieu::contains::<A>());
        assert!(
            !milieu::contains::<C>(),
            "the thread's own entries are not visible inside"
        );
    });
    assert!(milieu::contains::<C>());
    assert!(!milieu::contains::<A>());
}

#[test]
fn nested_run_restores() {
    let one = milieu::scope().with(A(1)).run(Context::current);
    let two = milieu::scope().with(A(2)).with(B(2)).run(Context::current);
    let _c = milieu::provide(C);
    let before = milieu::dump();
    one.run(|| {
        assert_eq!(milieu::get::<A>().unwrap().0, 1);
        two.run(|| {
            assert_eq!(milieu::get::<A>().unwrap().0, 2);
            assert!(milieu::contains::<B>());
            let _inner = milieu::provide(A(3));
            assert_eq!(milieu::get::<A>().unwrap().0, 3);
        });
        assert_eq!(milieu::get::<A>().unwrap().0, 1);
        assert!(!milieu::contains::<B>());
        // A snapshot taken inside a run is of the entered context.
        assert_eq!(Context::current().get::<A>().unwrap().0, 1);
    });
    assert_eq!(milieu::dump(), before);
}

#[test]
fn context_get() {
    let arc = Arc::new(A(5));
    let snap = milieu::scope()
        .with_arc(Arc::clone(&arc))
        .run(Context::current);
    assert!(Arc::ptr_eq(&snap.get::<A>().unwrap(), &arc));
    assert!(snap.get::<B>().is_err());
    assert!(snap.contains::<A>());
    assert!(!snap.contains::<B>());
}

#[test]
fn context_empty() {
    let _a = milieu::provide(A(1));
    let empty = Context::empty();
    assert!(empty.is_empty());
    assert!(!empty.contains::<A>());
    assert!(empty.get::<A>().is_err());
    assert!(empty.dump().frames.is_empty());
    empty.run(|| {
        assert!(
            !milieu::contains::<A>(),
            "entering the empty context hides everything"
        );
        assert!(Context::current().is_empty());
    });
    assert!(milieu::contains::<A>());
    assert!(Context::default().is_empty());
    assert!(!Context::current().is_empty());
}

#[test]
fn snapshots_are_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Context>();
    let snap = milieu::scope().with(A(1)).with(B(2)).run(Context::current);
    let copy = snap.clone();
    assert!(Arc::ptr_eq(
        &snap.get::<A>().unwrap(),
        &copy.get::<A>().unwrap()
    ));
    let debug = format!("{snap:?}");
    assert!(debug.contains(std::any::type_name::<A>()), "{debug}");
    assert!(debug.contains(std::any::type_name::<B>()), "{debug}");
}

#[test]
fn snapshot_dump_is_marked_as_snapshot() {
    let snap = milieu::scope().with(A(1)).run(Context::current);
    let dump = snap.dump();
    assert!(dump.snapshot);
    assert_eq!(dump.visible().count(), 1);
    assert!(!milieu::dump().snapshot);
}

#[test]
fn one_snapshot_entered_by_many_threads() {
    let snap = milieu::scope().with(A(3)).run(Context::current);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let snap = snap.clone();
            std::thread::spawn(move || {
                snap.run(|| {
                    let _b = milieu::provide(B(i));
                    (milieu::get::<A>().unwrap().0, milieu::get::<B>().unwrap().0)
                })
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), (3, i as u32));
    }
    assert!(
        !snap.contains::<B>(),
        "installs on top of an entered snapshot do not change it"
    );
}

/// A snapshot that keeps a very deep chain of frames alive is dropped
/// without recursing once per frame (which would overflow the stack).
#[test]
fn dropping_a_snapshot_of_a_deep_chain_does_not_overflow() {
    const DEPTH: u32 = 200_000;
    in_fresh_thread("deep-chain", || {
        let mut guards = Vec::with_capacity(DEPTH as usize);
        for i in 0..DEPTH {
            guards.push(milieu::provide(A(i)));
        }
        let snap = Context::current();
        while let Some(guard) = guards.pop() {
            drop(guard);
        }
        assert_eq!(snap.get::<A>().unwrap().0, DEPTH - 1);
        assert_empty_context();
        drop(snap);
    });
}
