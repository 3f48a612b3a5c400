//! Reading the context: `get`, `with`, `contains`.

mod common;

use std::cell::Cell;
use std::sync::Arc;

use common::{DropCounter, DropToken};

#[derive(Debug, PartialEq)]
struct Name(String);

struct Count(u32);

struct Absent;

/// A value whose destruction is observable.
struct Tracked {
    text: String,
    _token: DropToken,
}

#[test]
fn get_returns_the_installed_value() {
    let _guard = milieu::provide(Name("orders".into()));
    let name: Arc<Name> = milieu::get::<Name>().unwrap();
    assert_eq!(name.0, "orders");
    // Two lookups hand out the same allocation.
    assert!(Arc::ptr_eq(&name, &milieu::get::<Name>().unwrap()));
}

#[test]
fn with_borrows_the_installed_value() {
    let _guard = milieu::provide(Count(41));
    let answer = milieu::with(|c: &Count| c.0 + 1).unwrap();
    assert_eq!(answer, 42);
}

#[test]
fn contains_reports_presence() {
    assert!(!milieu::contains::<Count>());
    let guard = milieu::provide(Count(1));
    assert!(milieu::contains::<Count>());
    assert!(!milieu::contains::<Absent>());
    drop(guard);
    assert!(!milieu::contains::<Count>());
}

#[test]
fn get_of_an_absent_type_is_an_error() {
    let _guard = milieu::provide(Count(1));
    let err = milieu::get::<Absent>()
        .err()
        .expect("Absent was never installed");
    assert_eq!(err.type_name(), std::any::type_name::<Absent>());
}

#[test]
fn with_on_a_missing_type_does_not_call_the_closure() {
    let called = Cell::new(false);
    // Empty context.
    let err = milieu::with(|_: &Absent| called.set(true)).expect_err("missing");
    assert_eq!(err.type_name(), std::any::type_name::<Absent>());
    assert!(!called.get());
    // Non-empty context without the type.
    let _guard = milieu::provide(Count(1));
    assert!(milieu::with(|_: &Absent| called.set(true)).is_err());
    assert!(
        !called.get(),
        "the closure must not run when the type is missing"
    );
}

#[test]
fn with_closure_may_install_and_remove_entries() {
    let _outer = milieu::provide(Name("outer".into()));
    let seen = milieu::with(|outer: &Name| {
        // Re-entrancy: install, look up, nest another `with`, remove.
        let inner = milieu::provide(Name("inner".into()));
        assert_eq!(milieu::get::<Name>().unwrap().0, "inner");
        let nested = milieu::with(|n: &Name| n.0.clone()).unwrap();
        let count = milieu::scope()
            .with(Count(2))
            .run(|| milieu::get::<Count>().unwrap().0);
        drop(inner);
        assert_eq!(milieu::get::<Name>().unwrap().0, "outer");
        (outer.0.clone(), nested, count)
    })
    .unwrap();
    assert_eq!(seen, ("outer".to_owned(), "inner".to_owned(), 2));
    assert!(!milieu::contains::<Count>());
}

#[test]
fn with_keeps_the_borrowed_value_alive_when_the_closure_drops_its_guard() {
    let counter = DropCounter::new();
    let mut guard = Some(milieu::provide(Tracked {
        text: "still here".into(),
        _token: counter.token(),
    }));
    let text = milieu::with(|t: &Tracked| {
        // Remove the very entry being borrowed, and churn the stack.
        drop(guard.take());
        assert!(!milieu::contains::<Tracked>());
        for i in 0..32 {
            let _g = milieu::provide(Count(i));
        }
        assert_eq!(
            counter.dropped(),
            0,
            "the borrowed value must outlive the closure"
        );
        t.text.clone()
    })
    .unwrap();
    assert_eq!(text, "still here");
    assert_eq!(counter.dropped(), 1, "released once the borrow ends");
}

#[test]
fn get_keeps_the_value_alive_after_the_guard_drops() {
    let counter = DropCounter::new();
    let guard = milieu::provide(Tracked {
        text: "x".into(),
        _token: counter.token(),
    });
    let held = milieu::get::<Tracked>().unwrap();
    drop(guard);
    assert_eq!(counter.dropped(), 0);
    assert_eq!(held.text, "x");
    drop(held);
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn nested_with_of_different_types() {
    let _a = milieu::provide(Name("n".into()));
    let _b = milieu::provide(Count(3));
    let joined =
        milieu::with(|n: &Name| milieu::with(|c: &Count| format!("{}{}", n.0, c.0)).unwrap())
            .unwrap();
    assert_eq!(joined, "n3");
}

seq_macro::seq!(N in 0..40 {
    struct T~N(u32);
});

fn shifted(n: u32) -> u32 {
    n + 100
}

/// Past a handful of entries the visible map switches representation; lookups
/// and shadowing must behave the same.
#[test]
fn many_types_in_one_context() {
    let mut guards = Vec::from(seq_macro::seq!(N in 0..40 {
        [#(milieu::provide(T~N(N)),)*]
    }));
    seq_macro::seq!(N in 0..40 {
        assert_eq!(milieu::get::<T~N>().unwrap().0, N);
        assert_eq!(milieu::with(|t: &T~N| t.0).unwrap(), N);
    });
    let wide = milieu::scope();
    seq_macro::seq!(N in 0..40 {
        let wide = wide.with(T~N(shifted(N)));
    });
    let shadow = wide.enter();
    seq_macro::seq!(N in 0..40 {
        assert_eq!(milieu::get::<T~N>().unwrap().0, shifted(N));
    });
    assert_eq!(milieu::dump().visible().count(), 40);
    drop(shadow);
    seq_macro::seq!(N in 0..40 {
        assert_eq!(milieu::get::<T~N>().unwrap().0, N);
    });
    while let Some(guard) = guards.pop() {
        drop(guard);
    }
    assert!(!milieu::contains::<T0>() && !milieu::contains::<T39>());
}
