//! Panics leave the thread's context exactly as it was.

mod common;

use std::task::Poll;

use common::{catch, poll_once, yield_now, DropCounter, DropToken};
use milieu::{Context, FutureExt, ScopeExt};

struct Base;
struct A(u32);
struct B;

#[test]
fn a_panic_inside_scope_run_restores_the_context() {
    let _base = milieu::provide(Base);
    let before = milieu::dump();
    let message = catch(|| {
        milieu::scope().with(A(1)).run(|| {
            let _inner = milieu::provide(B);
            assert!(milieu::contains::<A>());
            panic!("inside run");
        })
    })
    .expect_err("panics");
    assert_eq!(message, "inside run");
    assert_eq!(milieu::dump(), before);
    assert!(!milieu::contains::<A>() && !milieu::contains::<B>());
}

#[test]
fn a_panic_inside_context_run_restores_the_context() {
    let snap = milieu::scope().with(A(1)).run(Context::current);
    let _base = milieu::provide(Base);
    let before = milieu::dump();
    let message = catch(|| {
        snap.run(|| {
            let _inner = milieu::provide(B);
            assert!(!milieu::contains::<Base>());
            panic!("inside snapshot");
        })
    })
    .expect_err("panics");
    assert_eq!(message, "inside snapshot");
    assert_eq!(milieu::dump(), before);
    assert!(milieu::contains::<Base>() && !milieu::contains::<A>());
}

#[test]
fn a_panic_inside_a_wrapped_future_poll_restores_the_context() {
    let _base = milieu::provide(Base);
    let before = milieu::dump();
    let mut fut = Box::pin(milieu::scope().with(A(1)).wrap(async {
        yield_now().await;
        let _inner = milieu::provide(B);
        panic!("inside poll");
    }));
    assert_eq!(poll_once(fut.as_mut()), Poll::Pending);
    assert_eq!(milieu::dump(), before);
    let message = catch(|| poll_once(fut.as_mut())).expect_err("second poll panics");
    assert_eq!(
        message, "inside poll",
        "the panic is the future's own, not a misuse report"
    );
    assert_eq!(milieu::dump(), before);
    drop(fut);
    assert_eq!(milieu::dump(), before);

    // The thread's stack still works.
    let guard = milieu::provide(A(2));
    assert_eq!(milieu::get::<A>().unwrap().0, 2);
    drop(guard);
    assert_eq!(milieu::dump(), before);
}

#[test]
fn a_panicking_task_on_a_current_thread_runtime_leaves_no_context_behind() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let task = milieu::scope().with(A(1)).wrap(async {
            tokio::task::yield_now().await;
            panic!("task panics");
        });
        let joined = tokio::spawn(task).await;
        assert!(joined.unwrap_err().is_panic());
        let after = tokio::spawn(async { milieu::dump() }).await.unwrap();
        assert!(
            after.frames.is_empty(),
            "context leaked after a panicking task:\n{after}"
        );
    });
    common::assert_empty_context();
}

#[test]
fn a_panic_in_a_with_closure_unpins() {
    let _a = milieu::provide(A(1));
    let before = milieu::dump();
    let inner = DropCounter::new();
    let message = catch(|| {
        milieu::with(|a: &A| {
            let _inner = milieu::provide(inner.token());
            assert_eq!(a.0, 1);
            panic!("inside with");
        })
    })
    .expect_err("panics");
    assert_eq!(message, "inside with");
    assert_eq!(milieu::dump(), before);
    assert_eq!(
        inner.dropped(),
        1,
        "the frame removed while pinned was released by the unpin"
    );

    // Had the pin leaked, removed frames would be parked forever and their
    // values never dropped.
    let counter = DropCounter::new();
    let guard = milieu::provide(counter.token());
    assert!(milieu::contains::<DropToken>());
    drop(guard);
    assert_eq!(
        counter.dropped(),
        1,
        "values are released promptly after the panic"
    );
    assert!(!milieu::contains::<DropToken>());
    assert_eq!(milieu::with(|a: &A| a.0).unwrap(), 1);
}

#[test]
fn a_panic_in_a_nested_with_closure_unpins_all_levels() {
    let _a = milieu::provide(A(1));
    let _b = milieu::provide(B);
    let _ = catch(|| {
        milieu::with(|_: &A| {
            milieu::with(|_: &B| panic!("nested")).unwrap();
        })
    })
    .expect_err("panics");
    let counter = DropCounter::new();
    drop(milieu::provide(counter.token()));
    assert_eq!(counter.dropped(), 1);
}

#[test]
fn a_panic_in_a_milieu_thread_does_not_touch_the_spawner() {
    let _a = milieu::provide(A(3));
    let before = milieu::dump();
    let joined = milieu::thread::spawn(|| {
        let _b = milieu::provide(B);
        panic!("in thread");
    })
    .join();
    assert!(joined.is_err());
    assert_eq!(milieu::dump(), before);
}

#[test]
fn a_panic_in_a_future_polled_by_block_on_restores_the_context() {
    let _base = milieu::provide(Base);
    let before = milieu::dump();
    let fut = async {
        let _b = milieu::provide(B);
        panic!("block_on");
    }
    .in_current_context();
    let message = catch(|| futures::executor::block_on(fut)).expect_err("panics");
    assert_eq!(message, "block_on");
    assert_eq!(milieu::dump(), before);
}
