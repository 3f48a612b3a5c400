//! The request's `RequestInfo` as its frame's own local entry
//! (`ContextLayer`): nested layers and the service's local entries, with
//! the layer driven directly through tower's `Service` (no sockets: what
//! is checked is which context each call and poll sees).
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use milieu::dump::EntryStatus;
use milieu::tower::{ContextLayer, RequestInfo};
use tower::{service_fn, Layer, ServiceExt};

/// An entry of the service's context.
struct Root;
/// An entry the handler installs itself.
struct Handler;
struct LocalOuter;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn req(path: &str) -> http::Request<String> {
    http::Request::builder()
        .uri(path)
        .body(String::new())
        .unwrap()
}

/// The path of the request the context holds now.
fn path() -> Option<String> {
    RequestInfo::current().ok().map(|i| i.path().to_owned())
}

/// Returns `Pending` once (waking itself), so the future is polled again.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A layer inside a layer: the inner request's `RequestInfo` is the one
/// seen in the inner call and polls (also after the handler's own
/// install), the outer one's comes back after the inner request is over,
/// and the inner dump shows the outer one as left behind.
#[test]
fn in_nested_layers_the_inner_request_wins_and_the_outer_one_comes_back() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s_in = Arc::clone(&seen);
    let inner = ContextLayer::new().layer(service_fn(move |_r: http::Request<String>| {
        let seen = Arc::clone(&s_in);
        seen.lock().unwrap().push(("inner-call", path()));
        async move {
            yield_now().await;
            seen.lock().unwrap().push(("inner-poll", path()));
            let _g = milieu::provide(Handler);
            seen.lock().unwrap().push(("inner-after-provide", path()));
            let d = milieu::dump();
            let infos: Vec<_> = d
                .entries()
                .filter(|e| e.type_name.ends_with("RequestInfo"))
                .map(|e| e.status.clone())
                .collect();
            assert_eq!(infos.len(), 2, "{d}");
            assert_eq!(infos[0], EntryStatus::Visible, "{d}");
            assert!(
                matches!(
                    infos[1],
                    EntryStatus::NotCarried { .. } | EntryStatus::Shadowed { .. }
                ),
                "{d}"
            );
            Ok::<_, Infallible>(http::Response::new(String::new()))
        }
    }));
    let inner = Arc::new(tokio::sync::Mutex::new(Some(inner)));
    let s_out = Arc::clone(&seen);
    let outer = ContextLayer::new().layer(service_fn(move |mut r: http::Request<String>| {
        let seen = Arc::clone(&s_out);
        let inner = Arc::clone(&inner);
        seen.lock().unwrap().push(("outer-call", path()));
        *r.uri_mut() = "/inner".parse().unwrap();
        async move {
            let svc = inner.lock().await.take().unwrap();
            let fut = svc.oneshot(r);
            let resp = fut.await.unwrap();
            seen.lock().unwrap().push(("outer-after", path()));
            let resp = resp.map(|_| String::new());
            Ok::<_, Infallible>(resp)
        }
    }));
    rt().block_on(async {
        outer.oneshot(req("/outer")).await.unwrap();
    });
    let seen = seen.lock().unwrap();
    for (what, p) in seen.iter() {
        let want = if what.starts_with("inner") {
            "/inner"
        } else {
            "/outer"
        };
        assert_eq!(p.as_deref(), Some(want), "{what}: {seen:?}");
    }
}

/// A local entry of the service's context at `call` is not seen inside
/// the request (the request is a context of its own, entered on every
/// poll, as a snapshot would be), and its dump says so; the service's
/// shared entries and the request's `RequestInfo` are seen.
#[test]
fn local_entries_of_the_service_are_left_out_below_the_request() {
    let svc = ContextLayer::new().layer(service_fn(move |_r: http::Request<String>| async move {
        assert!(!milieu::contains::<LocalOuter>());
        assert!(milieu::contains::<Root>());
        assert_eq!(path().as_deref(), Some("/c"));
        let d = milieu::dump();
        let e = d
            .entries()
            .find(|e| e.type_name.ends_with("LocalOuter"))
            .unwrap();
        assert!(matches!(e.status, EntryStatus::NotCarried { .. }), "{d}");
        Ok::<_, Infallible>(http::Response::new(String::new()))
    }));
    rt().block_on(async {
        let mut svc = svc;
        tower::ServiceExt::ready(&mut svc).await.unwrap();
        let fut = {
            let _r = milieu::provide(Root);
            let _l = milieu::provide_local(LocalOuter);
            tower::Service::call(&mut svc, req("/c"))
        };
        fut.await.unwrap();
    });
}

/// The text of a panic caught by `catch_unwind`.
fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(text) => *text,
        Err(panic) => panic
            .downcast::<&str>()
            .map_or_else(|_| "(not text)".to_owned(), |text| (*text).to_owned()),
    }
}

/// The layer enters a request's context without a slot of its own on the
/// stack (docs/design.md, "A request's context is entered without a
/// slot"), so it checks when it leaves that nothing made inside is still
/// active: a handler that holds a guard across `.await`, or an inner
/// `call` that leaks one, is reported and the stray install removed, and
/// the thread's context is as before the request.
#[test]
fn a_guard_left_active_inside_a_request_is_reported_and_removed() {
    // The handler's future holds a guard across a yield.
    let held = ContextLayer::new().layer(service_fn(|_r: http::Request<String>| async move {
        let _guard = milieu::provide(Handler);
        yield_now().await;
        Ok::<_, Infallible>(http::Response::new(String::new()))
    }));
    // The inner service's `call` leaks one.
    let leaked = ContextLayer::new().layer(tower::service_fn(|_r: http::Request<String>| {
        std::mem::forget(milieu::provide(Handler));
        std::future::ready(Ok::<_, Infallible>(http::Response::new(String::new())))
    }));
    let _root = milieu::provide(Root);
    let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt().block_on(held.oneshot(req("/held")))
    }));
    let report = panic_text(held.err().expect("a guard held across .await is reported"));
    assert!(
        report.contains("context guard held past its scope"),
        "{report}"
    );
    assert!(
        report.contains("tower_request_frame.rs"),
        "names the install: {report}"
    );
    assert!(
        !milieu::contains::<Handler>(),
        "the stray install is removed"
    );
    assert!(
        milieu::contains::<Root>(),
        "the context before the request is back"
    );
    assert!(path().is_none(), "no request is current");

    let leaked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt().block_on(leaked.oneshot(req("/leaked")))
    }));
    let report = panic_text(leaked.err().expect("a guard leaked in `call` is reported"));
    assert!(
        report.contains("context guard held past its scope"),
        "{report}"
    );
    assert!(!milieu::contains::<Handler>());
    assert!(milieu::contains::<Root>());
    assert!(path().is_none());
    // The thread's context still works: an install is seen and removed.
    {
        let _handler = milieu::provide(Handler);
        assert!(milieu::contains::<Handler>());
    }
    assert!(!milieu::contains::<Handler>());
}

/// A guard made before the request and dropped inside it (moved into the
/// handler) removes its install while the request's context is current:
/// reported as out of order; the request goes on in its own context (its
/// frame holds what the service's context held at `call`), installs made
/// after that are still seen, and once the request is over the thread's
/// context is as before the request, without the dropped install.
#[test]
fn a_guard_from_before_the_request_dropped_inside_it_is_reported() {
    struct Outer;
    let guard = std::cell::RefCell::new(None);
    let svc = ContextLayer::new().layer(service_fn(|_r: http::Request<String>| {
        let guard = &guard;
        async move {
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(guard.borrow_mut().take());
            }));
            let report = panic_text(dropped.expect_err("the drop is reported"));
            assert!(
                report.contains("removed inside a context entered after it"),
                "{report}"
            );
            // Still the request's context, with what it had at `call`.
            assert_eq!(path().as_deref(), Some("/moved"));
            assert!(milieu::contains::<Outer>());
            {
                let _handler = milieu::provide(Handler);
                assert!(milieu::contains::<Handler>(), "an install after it is seen");
            }
            yield_now().await;
            assert_eq!(path().as_deref(), Some("/moved"));
            Ok::<_, Infallible>(http::Response::new(String::new()))
        }
    }));
    let _root = milieu::provide(Root);
    *guard.borrow_mut() = Some(milieu::provide(Outer));
    rt().block_on(svc.oneshot(req("/moved"))).unwrap();
    assert!(!milieu::contains::<Outer>(), "the dropped install is gone");
    assert!(milieu::contains::<Root>());
    assert!(path().is_none());
    let _handler = milieu::provide(Handler);
    assert!(milieu::contains::<Handler>());
}
