//! The log monitor is a context entry: `provide_subscriber`.

mod common;

use common::{in_fresh_thread, Capture};
use milieu::{Context, FutureExt};

#[test]
fn the_subscriber_is_the_default_inside_the_scope_only() {
    let capture = Capture::new();
    tracing::info!("before the scope");
    let guard = milieu::provide_subscriber(capture.clone());
    tracing::info!("inside the scope");
    drop(guard);
    tracing::info!("after the scope");
    assert_eq!(capture.messages(), ["inside the scope"]);
}

#[test]
fn the_subscriber_is_a_visible_context_entry() {
    let _guard = milieu::provide_subscriber(Capture::new());
    assert!(milieu::contains::<tracing::Dispatch>());
    let dump = milieu::dump();
    let entry = dump.entries().next().unwrap();
    assert_eq!(entry.type_name, std::any::type_name::<tracing::Dispatch>());
    assert_eq!(entry.provenance.reason.as_deref(), Some("log monitor"));
}

#[test]
fn threads_spawned_through_milieu_log_to_it() {
    let capture = Capture::new();
    let guard = milieu::provide_subscriber(capture.clone());
    milieu::thread::Builder::new()
        .name("monitored")
        .spawn(|| tracing::info!("from a milieu thread"))
        .unwrap()
        .join()
        .unwrap();
    std::thread::spawn(|| tracing::info!("from a std thread"))
        .join()
        .unwrap();
    drop(guard);
    let events = capture.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].message, "from a milieu thread");
    assert_eq!(events[0].thread.as_deref(), Some("monitored"));
}

#[test]
fn wrapped_futures_log_to_it_wherever_they_are_polled() {
    let capture = Capture::new();
    let guard = milieu::provide_subscriber(capture.clone());
    let task = async {
        tracing::info!("first poll");
        common::yield_now().await;
        tracing::info!("second poll");
    }
    .in_current_context();
    let unwrapped = async { tracing::info!("unwrapped") };
    drop(guard);
    // Polled after the scope ended, on a thread that never had the subscriber.
    in_fresh_thread("poller", move || {
        futures::executor::block_on(task);
        futures::executor::block_on(unwrapped);
        tracing::info!("poller itself");
    });
    assert_eq!(capture.messages(), ["first poll", "second poll"]);
}

#[test]
fn wrapped_tokio_tasks_on_worker_threads_log_to_it() {
    let capture = Capture::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let handles: Vec<_> = {
        let _guard = milieu::provide_subscriber(capture.clone());
        (0..8)
            .map(|i| {
                rt.spawn(
                    async move {
                        tokio::task::yield_now().await;
                        tracing::info!("task {i}");
                    }
                    .in_current_context(),
                )
            })
            .collect()
    };
    for handle in handles {
        rt.block_on(handle).unwrap();
    }
    rt.block_on(rt.spawn(async { tracing::info!("unwrapped task") }))
        .unwrap();
    let mut messages = capture.messages();
    messages.sort();
    let expected: Vec<_> = (0..8).map(|i| format!("task {i}")).collect();
    assert_eq!(messages, expected);
}

#[test]
fn nested_subscribers_override_and_restore() {
    let outer = Capture::new();
    let inner = Capture::new();
    let _outer = milieu::provide_subscriber(outer.clone());
    tracing::info!("one");
    {
        let _inner = milieu::provide_subscriber(inner.clone());
        tracing::info!("two");
    }
    tracing::info!("three");
    assert_eq!(outer.messages(), ["one", "three"]);
    assert_eq!(inner.messages(), ["two"]);
}

#[test]
fn entering_a_context_without_the_subscriber_stops_logging_to_it() {
    let capture = Capture::new();
    let _guard = milieu::provide_subscriber(capture.clone());
    Context::empty().run(|| tracing::info!("outside the monitored context"));
    tracing::info!("monitored again");
    assert_eq!(capture.messages(), ["monitored again"]);
}

#[test]
fn a_dispatch_installed_through_a_scope_or_locally_works_the_same() {
    let scoped = Capture::new();
    milieu::scope()
        .with(tracing::Dispatch::new(scoped.clone()))
        .run(|| tracing::info!("scoped dispatch"));
    tracing::info!("after scoped");
    assert_eq!(scoped.messages(), ["scoped dispatch"]);

    let local = Capture::new();
    let guard = milieu::provide_local(tracing::Dispatch::new(local.clone()));
    tracing::info!("local dispatch");
    milieu::thread::spawn(|| tracing::info!("not carried"))
        .join()
        .unwrap();
    drop(guard);
    tracing::info!("after local");
    assert_eq!(local.messages(), ["local dispatch"]);
}

#[test]
fn a_tracing_default_set_outside_the_scope_is_restored() {
    let outer = Capture::new();
    let inner = Capture::new();
    let _default = tracing::subscriber::set_default(outer.clone());
    tracing::info!("a");
    {
        let _scope = milieu::provide_subscriber(inner.clone());
        tracing::info!("b");
    }
    tracing::info!("c");
    assert_eq!(outer.messages(), ["a", "c"]);
    assert_eq!(inner.messages(), ["b"]);
}
