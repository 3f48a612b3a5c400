//! Local entries: visible on their own thread only, never carried.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{assert_contains, site_prefix, DropCounter, DropToken};
use milieu::dump::{EntryStatus, HopKind, Policy};
use milieu::{Context, FutureExt, ScopeExt};

/// Request-private scratch space: `Rc`, so not `Send`.
struct Scratch(Rc<RefCell<Vec<u8>>>);

#[derive(Debug, PartialEq)]
struct Name(&'static str);

struct Shared;

/// A local value whose destruction is observable (not `Send`).
struct LocalTracked(#[allow(dead_code)] Rc<DropToken>);

#[test]
fn a_local_rc_value_is_visible_on_its_thread() {
    let buffer = Rc::new(RefCell::new(vec![1u8, 2]));
    let _guard = milieu::provide_local(Scratch(Rc::clone(&buffer)));
    assert!(milieu::contains::<Scratch>());
    milieu::with(|s: &Scratch| s.0.borrow_mut().push(3)).unwrap();
    let got = milieu::get::<Scratch>().unwrap();
    assert!(Rc::ptr_eq(&got.0, &buffer));
    assert_eq!(*buffer.borrow(), [1, 2, 3]);
    let dump = milieu::dump();
    let entry = dump.entries().next().unwrap();
    assert_eq!(entry.policy, Policy::Local);
    assert_eq!(entry.status, EntryStatus::Visible);
}

#[test]
fn local_entries_are_not_carried_into_threads() {
    let _shared = milieu::provide(Shared);
    let _local = milieu::provide_local(Scratch(Rc::default()));
    let (shared, local) =
        milieu::thread::spawn(|| (milieu::contains::<Shared>(), milieu::contains::<Scratch>()))
            .join()
            .unwrap();
    assert!(shared, "inherited entries are carried");
    assert!(!local, "local entries are not");
}

#[test]
fn local_entries_are_not_carried_into_tasks() {
    let _local = milieu::provide_local(Scratch(Rc::default()));
    let _shared = milieu::provide(Shared);
    let task = async { (milieu::contains::<Shared>(), milieu::contains::<Scratch>()) };
    // Polled on the very thread that installed the local entry.
    let (shared, local) = futures::executor::block_on(task.in_current_context());
    assert!(shared);
    assert!(
        !local,
        "a wrapped future does not see the local entry, even on its thread"
    );
    let wrapped = milieu::scope()
        .with(Name("wrapped"))
        .wrap(async { (milieu::contains::<Name>(), milieu::contains::<Scratch>()) });
    assert_eq!(futures::executor::block_on(wrapped), (true, false));
    assert!(
        milieu::contains::<Scratch>(),
        "still visible outside the task"
    );
}

#[test]
fn local_entries_are_not_in_snapshots() {
    let _local = milieu::provide_local(Scratch(Rc::default()));
    let snap = Context::current();
    assert!(!snap.contains::<Scratch>());
    assert!(
        snap.is_empty(),
        "a snapshot of only local entries carries nothing"
    );
    snap.run(|| {
        assert!(
            !milieu::contains::<Scratch>(),
            "not even when re-entered on its own thread"
        );
        let err = milieu::get::<Scratch>()
            .err()
            .expect("missing inside the snapshot");
        assert!(err.to_string().contains("NOT CARRIED"), "{err}");
    });
    assert!(milieu::contains::<Scratch>());
    let dump = snap.dump();
    assert!(matches!(
        dump.entries().next().unwrap().status,
        EntryStatus::NotCarried { hop: None }
    ));
}

#[test]
fn a_dump_in_a_spawned_thread_lists_the_local_entry_as_not_carried() {
    let (_local, local_line) = (milieu::provide_local(Scratch(Rc::default())), line!());
    let (handle, spawn_line) = (milieu::thread::spawn(milieu::dump), line!());
    let dump = handle.join().unwrap();

    let entry = dump
        .entries()
        .find(|e| e.type_name == std::any::type_name::<Scratch>())
        .expect("the local entry is listed");
    assert_eq!(entry.policy, Policy::Local);
    assert_eq!(entry.provenance.site.line, local_line);
    assert!(
        entry.provenance.hops.is_empty(),
        "an entry left behind did not travel"
    );
    match &entry.status {
        EntryStatus::NotCarried { hop: Some(hop) } => {
            assert_eq!(hop.kind, HopKind::Thread);
            assert_eq!((hop.site.file, hop.site.line), (file!(), spawn_line));
        }
        other => panic!("expected NotCarried with the thread hop, got {other:?}"),
    }
    assert_eq!(dump.visible().count(), 0);
    let text = dump.to_string();
    assert_contains(
        &text,
        &format!(
            "NOT CARRIED past thread at {}",
            site_prefix(file!(), spawn_line)
        ),
    );
    assert_contains(&text, "1 not carried");
}

#[test]
fn the_local_value_is_dropped_when_its_guard_drops() {
    let counter = DropCounter::new();
    let guard = milieu::provide_local(LocalTracked(Rc::new(counter.token())));
    let snap = Context::current();
    let carried = Context::current().hop(HopKind::Thread);
    assert_eq!(counter.dropped(), 0);
    drop(guard);
    assert_eq!(
        counter.dropped(),
        1,
        "snapshots must not keep a local value alive"
    );
    assert!(!milieu::contains::<LocalTracked>());
    drop((snap, carried));
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn a_local_value_borrowed_by_with_outlives_its_guard_until_the_closure_returns() {
    let counter = DropCounter::new();
    let mut guard = Some(milieu::provide_local(LocalTracked(Rc::new(
        counter.token(),
    ))));
    milieu::with(|_: &LocalTracked| {
        drop(guard.take());
        assert_eq!(counter.dropped(), 0);
    })
    .unwrap();
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn a_local_entry_shadows_an_inherited_one_on_its_thread_only() {
    let _inherited = milieu::provide(Name("inherited"));
    let _local = milieu::scope().with_local(Name("local")).enter();
    assert_eq!(*milieu::get::<Name>().unwrap(), Name("local"));
    assert_eq!(
        *Context::current().get::<Name>().unwrap(),
        Name("inherited")
    );
    let seen = milieu::thread::spawn(|| milieu::get::<Name>().unwrap().0)
        .join()
        .unwrap();
    assert_eq!(seen, "inherited");
    let in_task = futures::executor::block_on(
        async { milieu::get::<Name>().unwrap().0 }.in_current_context(),
    );
    assert_eq!(in_task, "inherited");
}

#[test]
fn a_scope_can_mix_local_and_inherited_entries() {
    let _guard = milieu::scope()
        .with(Shared)
        .with_local(Scratch(Rc::default()))
        .enter();
    assert!(milieu::contains::<Shared>() && milieu::contains::<Scratch>());
    let snap = Context::current();
    assert!(snap.contains::<Shared>());
    assert!(!snap.contains::<Scratch>());
    let policies: Vec<_> = milieu::dump().entries().map(|e| e.policy).collect();
    assert_eq!(policies, [Policy::Inherited, Policy::Local]);
}

#[test]
fn local_entries_are_per_thread() {
    // Each thread's local entry is its own, even for the same type.
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            std::thread::spawn(move || {
                let _g = milieu::provide_local(Scratch(Rc::new(RefCell::new(vec![i]))));
                std::thread::yield_now();
                milieu::with(|s: &Scratch| s.0.borrow()[0]).unwrap()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i as u8);
    }
}

/// A local value whose destructor reads the context, as a destructor may.
struct ReadsContextOnDrop(#[allow(dead_code)] DropToken);

impl Drop for ReadsContextOnDrop {
    fn drop(&mut self) {
        let _ = milieu::contains::<Name>();
        let _ = milieu::dump().to_string();
    }
}

#[test]
fn every_local_value_of_a_scope_is_dropped_with_its_guard() {
    let counter = DropCounter::new();
    let guard = milieu::scope()
        .with_local(LocalTracked(Rc::new(counter.token())))
        .with(Shared)
        .with_local(ReadsContextOnDrop(counter.token()))
        .enter();
    let inner = milieu::scope().with_local(Scratch(Rc::default())).enter();
    drop(inner);
    assert_eq!(
        counter.dropped(),
        0,
        "the inner guard drops its own values only"
    );
    assert!(milieu::contains::<LocalTracked>() && milieu::contains::<ReadsContextOnDrop>());
    drop(guard);
    assert_eq!(counter.dropped(), 2);
    assert!(!milieu::contains::<LocalTracked>());
}

#[test]
fn local_values_are_dropped_when_guards_drop_out_of_order() {
    let counter = DropCounter::new();
    let older = milieu::provide_local(LocalTracked(Rc::new(counter.token())));
    let younger = milieu::scope()
        .with_local(ReadsContextOnDrop(counter.token()))
        .enter();
    // Dropping the older guard first is a bug the library reports (it
    // panics) after repairing the stack: both values go.
    let reported = common::catch(move || drop(older));
    assert!(reported.is_err());
    assert_eq!(counter.dropped(), 2);
    assert!(!milieu::contains::<LocalTracked>() && !milieu::contains::<ReadsContextOnDrop>());
    drop(younger); // already removed by the repair: does nothing
    assert_eq!(counter.dropped(), 2);
}
