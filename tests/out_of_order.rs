//! Guards dropped out of order: reported, and the stack is repaired.

mod common;

use std::pin::pin;

use common::{assert_contains, catch, poll_once, site_prefix, yield_now, Capture};
use milieu::{FutureExt, Guard};

struct Base(u32);
struct A(u32);
struct B;
struct C;

#[test]
fn dropping_an_older_guard_first_panics_naming_both_sites_and_repairs_the_stack() {
    let _base = milieu::provide(Base(0));
    let before = milieu::dump();

    let (older, older_line) = (milieu::provide(A(1)), line!());
    let (younger, younger_line) = (milieu::provide(B), line!());

    let message = catch(|| drop(older)).expect_err("out-of-order drop must panic");
    assert_contains(&message, "out of order");
    assert_contains(&message, &site_prefix(file!(), older_line));
    assert_contains(&message, &site_prefix(file!(), younger_line));

    // The context is exactly what it was before the older guard.
    assert_eq!(milieu::dump(), before);
    assert!(!milieu::contains::<A>());
    assert!(!milieu::contains::<B>());
    assert_eq!(milieu::get::<Base>().unwrap().0, 0);

    // The younger guard was already removed by the repair: dropping it is quiet.
    catch(|| drop(younger)).expect("the repaired guard must not panic again");
    assert_eq!(milieu::dump(), before);

    // The stack works normally afterwards.
    let again = milieu::provide(A(3));
    assert_eq!(milieu::get::<A>().unwrap().0, 3);
    drop(again);
    assert_eq!(milieu::dump(), before);
}

#[test]
fn out_of_order_with_three_guards_names_the_dropped_and_the_most_recent() {
    let before = milieu::dump();
    let (oldest, oldest_line) = (milieu::provide(A(1)), line!());
    let middle = milieu::provide(B);
    let (newest, newest_line) = (milieu::provide(C), line!());

    let message = catch(|| drop(oldest)).expect_err("must panic");
    assert_contains(&message, &site_prefix(file!(), oldest_line));
    assert_contains(&message, &site_prefix(file!(), newest_line));
    assert_contains(&message, "all 3 install(s) were removed");
    assert_eq!(milieu::dump(), before);

    catch(|| drop(newest)).expect("quiet");
    catch(|| drop(middle)).expect("quiet");
    assert_eq!(milieu::dump(), before);
}

#[test]
fn context_enter_guards_are_checked_too() {
    let ctx = milieu::scope().with(A(1)).run(milieu::Context::current);
    let before = milieu::dump();
    let (entered, entered_line) = (ctx.enter(), line!());
    let (inner, inner_line) = (milieu::provide(B), line!());
    let message = catch(|| drop(entered)).expect_err("must panic");
    assert_contains(&message, &site_prefix(file!(), entered_line));
    assert_contains(&message, &site_prefix(file!(), inner_line));
    assert_eq!(milieu::dump(), before);
    catch(|| drop(inner)).expect("quiet");
}

#[test]
fn out_of_order_while_already_panicking_logs_instead_of_aborting() {
    let capture = Capture::new();
    let message = tracing::subscriber::with_default(capture.clone(), || {
        catch(|| {
            // Declared first, dropped last: the younger guard outlives the older.
            let younger: Option<Guard>;
            let _older = milieu::provide(A(1));
            younger = Some(milieu::provide(B));
            assert!(younger.is_some());
            panic!("boom");
        })
        .expect_err("the closure panics")
    });
    assert_eq!(message, "boom", "no second panic replaced the first");
    let errors: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::ERROR && e.target == "milieu")
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "the misuse is reported once as an error event: {errors:?}"
    );
    assert_contains(&errors[0].message, "out of order");
    common::assert_empty_context();
}

#[test]
fn a_guard_held_across_await_in_a_wrapped_future_is_detected() {
    let _base = milieu::provide(Base(1));
    let before = milieu::dump();

    let guard_line = std::cell::Cell::new(0);
    let fut = async {
        let (_guard, line) = (milieu::provide(A(1)), line!());
        guard_line.set(line);
        yield_now().await;
    };
    let (fut, wrap_line) = (fut.in_current_context(), line!());
    let mut fut = Box::pin(fut);

    let message = catch(|| poll_once(fut.as_mut())).expect_err("the poll must panic");
    assert_contains(&message, "`.await`");
    assert_contains(&message, "detected when the poll of the future wrapped at");
    assert_contains(&message, &site_prefix(file!(), wrap_line));
    // The stray guard's install site is named too.
    assert_contains(&message, &site_prefix(file!(), guard_line.get()));

    assert_eq!(
        milieu::dump(),
        before,
        "the poll left the thread's context as it found it"
    );
    catch(|| drop(fut)).expect("dropping the future (and its stray guard) is quiet");
    assert_eq!(milieu::dump(), before);
}

#[test]
fn a_guard_held_across_await_is_detected_under_block_on() {
    let before = milieu::dump();
    let fut = async {
        let _guard = milieu::provide(A(1));
        yield_now().await;
    }
    .in_current_context();
    let message = catch(|| futures::executor::block_on(fut)).expect_err("must panic");
    assert_contains(&message, "`.await`");
    assert_eq!(milieu::dump(), before);
}

#[test]
fn a_guard_leaked_inside_a_wrapped_poll_is_detected() {
    let before = milieu::dump();
    let mut fut = pin!(async {
        std::mem::forget(milieu::provide(A(1)));
    }
    .in_current_context());
    let message = catch(|| poll_once(fut.as_mut())).expect_err("must panic");
    assert_contains(&message, "leaked");
    assert_eq!(milieu::dump(), before);
    assert!(!milieu::contains::<A>());
}

#[test]
fn a_guard_held_across_await_is_detected_when_the_future_returns_a_large_value() {
    // A large output (here 1 KiB; a whole HTTP response behind the tower
    // layer) leaves the poll by another path than a small one: the
    // detection and the repair are the same.
    let _base = milieu::provide(Base(2));
    let before = milieu::dump();
    let fut = async {
        let _guard = milieu::provide(A(1));
        yield_now().await;
        [7u8; 1024]
    };
    let (fut, wrap_line) = (fut.in_current_context(), line!());
    let mut fut = Box::pin(fut);
    let message = catch(|| poll_once(fut.as_mut())).expect_err("the poll must panic");
    assert_contains(&message, "`.await`");
    assert_contains(&message, &site_prefix(file!(), wrap_line));
    assert_eq!(milieu::dump(), before);

    // And a large value comes out whole, in the context.
    let fut = async {
        let base = milieu::get::<Base>().map(|b| b.0).unwrap_or(0);
        yield_now().await;
        [base as u8; 1024]
    }
    .in_current_context();
    let out = futures::executor::block_on(fut);
    assert!(out.iter().all(|&b| b == 2));
    assert_eq!(milieu::dump(), before);
}

/// A wrapped future dropped unfinished whose destructor leaves an install
/// behind: the stray install is removed and reported as an error event, not
/// a panic out of the drop (which would abort at thread exit, and cut
/// short whatever destructor dropped the future).
#[test]
fn an_install_left_by_a_wrapped_futures_drop_is_an_error_event_not_a_panic() {
    struct LeavesAnInstall;
    impl Drop for LeavesAnInstall {
        fn drop(&mut self) {
            std::mem::forget(milieu::provide(C));
        }
    }
    let before = milieu::dump();
    let future = {
        let _a = milieu::provide(A(5));
        let held = LeavesAnInstall;
        async move {
            let _held = held;
            std::future::pending::<()>().await
        }
        .in_current_context()
    };
    let capture = Capture::new();
    tracing::subscriber::with_default(capture.clone(), || {
        catch(|| drop(future)).expect("no panic out of the drop");
    });
    let errors: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|event| event.level == tracing::Level::ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_contains(&errors[0].message, "out of order");
    assert_eq!(milieu::dump(), before, "the stray install was removed");
    assert!(!milieu::contains::<C>());
}
