//! Installing entries: guards, closures, shadowing, frames, `Arc`s, reasons.

mod common;

use std::sync::Arc;

use common::{assert_contains, assert_not_contains, DropCounter, DropToken};
use milieu::dump::{EntryStatus, FrameDump};

#[derive(Debug, PartialEq)]
struct Db(u32);

#[derive(Debug, PartialEq)]
struct Level(u32);

struct Outer;
struct A(u32);
struct B(u32);

#[derive(Debug)]
struct Region(&'static str);

#[test]
fn provide_installs_until_the_guard_drops() {
    assert!(!milieu::contains::<Db>());
    let guard = milieu::provide(Db(1));
    assert!(milieu::contains::<Db>());
    assert_eq!(*milieu::get::<Db>().unwrap(), Db(1));
    drop(guard);
    assert!(!milieu::contains::<Db>());
    assert!(milieu::get::<Db>().is_err());
    assert!(milieu::dump().frames.is_empty());
}

#[test]
fn dropping_the_guard_drops_the_value() {
    let counter = DropCounter::new();
    let guard = milieu::provide(counter.token());
    assert_eq!(counter.dropped(), 0);
    assert!(milieu::contains::<DropToken>());
    drop(guard);
    assert_eq!(
        counter.dropped(),
        1,
        "the context must not keep the value alive"
    );
}

#[test]
fn scope_run_installs_for_the_closure_and_restores() {
    let _outer = milieu::provide(Outer);
    let result = milieu::scope().with(A(1)).with(B(2)).run(|| {
        assert!(
            milieu::contains::<Outer>(),
            "entries below the scope stay visible"
        );
        milieu::get::<A>().unwrap().0 + milieu::get::<B>().unwrap().0
    });
    assert_eq!(result, 3, "run returns the closure's value");
    assert!(!milieu::contains::<A>());
    assert!(!milieu::contains::<B>());
    assert!(milieu::contains::<Outer>());
    assert_eq!(milieu::dump().frames.len(), 1);
}

#[test]
fn scope_enter_is_the_guard_form() {
    let guard = milieu::scope().with(A(5)).enter();
    assert_eq!(milieu::get::<A>().unwrap().0, 5);
    drop(guard);
    assert!(!milieu::contains::<A>());
}

#[test]
fn shadowing_then_unshadowing() {
    let first = milieu::provide(Level(1));
    assert_eq!(*milieu::get::<Level>().unwrap(), Level(1));
    let second = milieu::provide(Level(2));
    assert_eq!(*milieu::get::<Level>().unwrap(), Level(2));
    milieu::scope().with(Level(3)).run(|| {
        assert_eq!(*milieu::get::<Level>().unwrap(), Level(3));
    });
    assert_eq!(
        *milieu::get::<Level>().unwrap(),
        Level(2),
        "scope end unshadows"
    );
    drop(second);
    assert_eq!(
        *milieu::get::<Level>().unwrap(),
        Level(1),
        "guard drop unshadows"
    );
    drop(first);
    assert!(!milieu::contains::<Level>());
}

#[test]
fn several_entries_in_one_frame() {
    let guard = milieu::scope()
        .with(A(1))
        .with(B(2))
        .with_debug(Region("eu"))
        .enter();
    assert_eq!(milieu::get::<A>().unwrap().0, 1);
    assert_eq!(milieu::get::<B>().unwrap().0, 2);
    assert_eq!(milieu::get::<Region>().unwrap().0, "eu");

    let dump = milieu::dump();
    assert_eq!(dump.frames.len(), 1, "one scope is one frame:\n{dump}");
    let FrameDump::Installed { entries, .. } = &dump.frames[0] else {
        panic!("expected an installed frame:\n{dump}");
    };
    let names: Vec<_> = entries.iter().map(|e| e.type_name).collect();
    assert_eq!(
        names,
        [
            std::any::type_name::<A>(),
            std::any::type_name::<B>(),
            std::any::type_name::<Region>()
        ],
        "entries are listed in installation order"
    );

    drop(guard);
    assert!(!milieu::contains::<A>() && !milieu::contains::<B>() && !milieu::contains::<Region>());
}

#[test]
fn the_same_type_twice_in_one_frame_keeps_the_later_value() {
    let _guard = milieu::scope().with(Level(1)).with(Level(2)).enter();
    assert_eq!(*milieu::get::<Level>().unwrap(), Level(2));
    let dump = milieu::dump();
    let statuses: Vec<_> = dump.entries().map(|e| e.status.clone()).collect();
    assert!(
        matches!(
            statuses.as_slice(),
            [EntryStatus::Shadowed { .. }, EntryStatus::Visible]
        ),
        "the earlier entry is shadowed by the later one: {statuses:?}"
    );
}

#[test]
fn provide_arc_keeps_pointer_identity() {
    let db = Arc::new(Db(9));
    let guard = milieu::provide_arc(Arc::clone(&db));
    let found = milieu::get::<Db>().unwrap();
    assert!(
        Arc::ptr_eq(&found, &db),
        "get must hand out the installed Arc itself"
    );
    assert!(!milieu::contains::<Arc<Db>>(), "keyed by T, not Arc<T>");
    milieu::with(|d: &Db| assert!(std::ptr::eq(d, &*db))).unwrap();
    drop(found);
    drop(guard);
    assert_eq!(
        Arc::strong_count(&db),
        1,
        "the context released its reference"
    );
}

#[test]
fn scope_with_arc_keeps_pointer_identity() {
    let db = Arc::new(Db(3));
    milieu::scope().with_arc(Arc::clone(&db)).run(|| {
        assert!(Arc::ptr_eq(&milieu::get::<Db>().unwrap(), &db));
    });
    assert_eq!(Arc::strong_count(&db), 1);
}

#[test]
fn because_and_with_debug_are_visible_in_the_dump() {
    let _guard = milieu::scope()
        .with_debug(Region("eu-west"))
        .because("data residency")
        .with(Db(7))
        .enter();
    let dump = milieu::dump();
    let region = dump
        .entries()
        .find(|e| e.type_name == std::any::type_name::<Region>())
        .expect("Region in dump");
    assert_eq!(region.value.as_deref(), Some("Region(\"eu-west\")"));
    assert_eq!(region.provenance.reason.as_deref(), Some("data residency"));
    let db = dump
        .entries()
        .find(|e| e.type_name == std::any::type_name::<Db>())
        .unwrap();
    assert_eq!(
        db.value, None,
        "values are hidden unless installed with with_debug"
    );
    assert_eq!(
        db.provenance.reason, None,
        "because applies to the entry added last"
    );

    let text = dump.to_string();
    assert_contains(&text, "Region(\"eu-west\")");
    assert_contains(&text, "because \"data residency\"");
    assert_not_contains(&text, "Db(7)");
}

#[test]
fn because_before_any_entry_applies_to_every_entry_without_a_reason() {
    let _guard = milieu::scope()
        .because("whole scope")
        .with(A(1))
        .with(B(2))
        .because("just B")
        .enter();
    let dump = milieu::dump();
    let reason = |name: &str| {
        dump.entries()
            .find(|e| e.type_name == name)
            .and_then(|e| e.provenance.reason.clone())
    };
    assert_eq!(
        reason(std::any::type_name::<A>()).as_deref(),
        Some("whole scope")
    );
    assert_eq!(
        reason(std::any::type_name::<B>()).as_deref(),
        Some("just B")
    );
}

#[test]
fn guard_reports_its_install_site() {
    let (guard, line) = (milieu::provide(A(1)), line!());
    assert_eq!(guard.site().file(), file!());
    assert_eq!(guard.site().line(), line);
    assert_contains(&format!("{guard:?}"), &common::site_prefix(file!(), line));
}

#[test]
fn a_guard_dropped_during_thread_exit_is_harmless() {
    use std::cell::RefCell;
    thread_local! {
        static HELD: RefCell<Option<milieu::Guard>> = const { RefCell::new(None) };
    }
    // The guard lives in a thread-local: it is dropped while the thread's
    // locals (milieu's own state included) are torn down, in either order.
    let joined = std::thread::spawn(|| {
        let guard = milieu::provide(A(1));
        HELD.with(|held| *held.borrow_mut() = Some(guard));
        milieu::get::<A>().unwrap().0
    })
    .join();
    assert_eq!(
        joined.ok(),
        Some(1),
        "thread exit with a live guard must not panic"
    );
}

/// Looks `A` up (both ways) when dropped, and sends what it saw, tagged.
struct LooksUpOnDrop(
    &'static str,
    std::sync::mpsc::Sender<(&'static str, Option<u32>)>,
);

impl Drop for LooksUpOnDrop {
    fn drop(&mut self) {
        let borrowed = milieu::with(|a: &A| a.0).ok();
        let cloned = milieu::get::<A>().ok().map(|a| a.0);
        assert_eq!(borrowed, cloned, "`with` and `get` agree");
        let _ = self.1.send((self.0, borrowed));
    }
}

#[test]
fn lookups_while_the_thread_exits_see_live_entries_or_nothing() {
    use std::cell::RefCell;
    thread_local! {
        static LOOKER: RefCell<Option<LooksUpOnDrop>> = const { RefCell::new(None) };
    }
    // Two installs still on the stack when the thread exits (their guards
    // forgotten): milieu's state drops them, `A` first, while the thread's
    // locals are torn down. The second one's destructor looks `A` up after
    // `A`'s memory is freed: it must find nothing, not read freed memory.
    // A value in another thread-local looks up too, before or after the
    // state is gone (the order is not specified): it sees `A` or nothing.
    let (sender, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        std::mem::forget(milieu::provide(A(1)));
        std::mem::forget(milieu::provide(LooksUpOnDrop("installed", sender.clone())));
        LOOKER.with(|looker| *looker.borrow_mut() = Some(LooksUpOnDrop("thread-local", sender)));
        assert_eq!(milieu::with(|a: &A| a.0).ok(), Some(1));
    })
    .join()
    .expect("thread exit with lookups in destructors must not panic");
    let mut seen: Vec<_> = seen.iter().collect();
    seen.sort();
    assert_eq!(seen.len(), 2, "both destructors ran: {seen:?}");
    assert_eq!(seen[0], ("installed", None));
    assert_eq!(seen[1].0, "thread-local");
    assert!(matches!(seen[1].1, None | Some(1)), "{seen:?}");
}

/// A value whose destructor uses the context (installs, looks up, dumps).
struct UsesContextOnDrop(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for UsesContextOnDrop {
    fn drop(&mut self) {
        let _inner = milieu::provide(B(7));
        let ok = milieu::get::<B>().is_ok_and(|b| b.0 == 7) && !milieu::dump().frames.is_empty();
        if ok {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn destructors_of_removed_values_may_use_the_context() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ran = Arc::new(AtomicUsize::new(0));
    let _outer = milieu::provide(Outer);
    let before = milieu::dump();

    // Inherited value dropped by its guard.
    drop(milieu::provide(UsesContextOnDrop(Arc::clone(&ran))));
    // Local value dropped by its guard.
    drop(milieu::provide_local(UsesContextOnDrop(Arc::clone(&ran))));
    // Value released when a `with` borrow ends.
    let mut guard = Some(milieu::provide(UsesContextOnDrop(Arc::clone(&ran))));
    milieu::with(|_: &UsesContextOnDrop| drop(guard.take())).unwrap();
    // Values removed by `scope().run`.
    milieu::scope()
        .with(UsesContextOnDrop(Arc::clone(&ran)))
        .run(|| {});

    assert_eq!(
        ran.load(Ordering::SeqCst),
        4,
        "every destructor ran and saw a working context"
    );
    assert_eq!(milieu::dump(), before);
}
