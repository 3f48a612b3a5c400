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
