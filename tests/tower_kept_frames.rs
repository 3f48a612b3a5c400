#![cfg(all(feature = "tower", feature = "tokio"))]
//! The tower layer keeps a request's frame whole when the request ends
//! and writes the next request's values over the earlier ones in place
//! (docs/design.md, "A request's frame is kept whole for the next
//! request"). Here many concurrent requests on a multi-thread runtime
//! hold their values past their end in every way a handler can (an
//! `Arc` from `milieu::get`, a `Weak` of one, a snapshot, a spawned task,
//! a spawned thread), and none of those values may ever change; handlers
//! that panic leave the frames usable.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use milieu::remote::TraceContext;
use milieu::tower::{ContextLayer, RequestInfo};
use tower::{service_fn, Layer, ServiceExt};

/// What a handler kept past its request, with what it must still say.
enum Kept {
    Strong(Arc<TraceContext>, String),
    Weak(Weak<TraceContext>, String),
    Info(Arc<RequestInfo>, String),
    InfoWeak(Weak<RequestInfo>, String),
    Ctx(milieu::Context, String),
}

static KEPT: Mutex<Vec<Kept>> = Mutex::new(Vec::new());
/// Checks that failed, wherever they ran (tasks, threads).
static BAD: AtomicUsize = AtomicUsize::new(0);
static REQUESTS: AtomicUsize = AtomicUsize::new(0);
/// Where each request's `TraceContext` lived: fewer places than
/// requests shows that values were written over in place.
static TRACE_ADDRESSES: Mutex<std::collections::BTreeSet<usize>> =
    Mutex::new(std::collections::BTreeSet::new());

fn check_now(label: &str, cond: bool) {
    if !cond {
        BAD.fetch_add(1, Ordering::Relaxed);
        eprintln!("MISMATCH: {label}");
    }
}

async fn handler(req: http::Request<String>) -> Result<http::Response<String>, Infallible> {
    let want_path = req.uri().path().to_owned();
    let trace = milieu::get::<TraceContext>().unwrap();
    let tp = trace.traceparent();
    let info = milieu::get::<RequestInfo>().unwrap();
    check_now("path at start", info.path() == want_path);
    let id = info.id();
    TRACE_ADDRESSES
        .lock()
        .unwrap()
        .insert(Arc::as_ptr(&trace) as usize);
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    match id % 10 {
        0 => KEPT
            .lock()
            .unwrap()
            .push(Kept::Strong(trace.clone(), tp.clone())),
        1 => KEPT
            .lock()
            .unwrap()
            .push(Kept::Weak(Arc::downgrade(&trace), tp.clone())),
        2 => KEPT
            .lock()
            .unwrap()
            .push(Kept::Info(info.clone(), want_path.clone())),
        3 => KEPT
            .lock()
            .unwrap()
            .push(Kept::InfoWeak(Arc::downgrade(&info), want_path.clone())),
        4 => KEPT
            .lock()
            .unwrap()
            .push(Kept::Ctx(milieu::Context::current(), tp.clone())),
        5 => {
            let tp2 = tp.clone();
            milieu::tokio::spawn(async move {
                for _ in 0..5 {
                    tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                    let t = milieu::get::<TraceContext>().unwrap();
                    check_now("spawned task trace", t.traceparent() == tp2);
                }
            });
        }
        6 => {
            let tp2 = tp.clone();
            milieu::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_micros(300));
                let t = milieu::get::<TraceContext>().unwrap();
                check_now("thread trace", t.traceparent() == tp2);
            });
        }
        _ => {}
    }
    drop(trace);
    drop(info);
    for _ in 0..3 {
        // The next poll may run on another worker thread.
        tokio::task::yield_now().await;
        let t = milieu::get::<TraceContext>().unwrap();
        check_now("trace across yields", t.traceparent() == tp);
        let i = milieu::get::<RequestInfo>().unwrap();
        check_now("path across yields", i.path() == want_path);
        milieu::with(|t: &TraceContext| check_now("with", t.traceparent() == tp)).unwrap();
    }
    Ok(http::Response::new(want_path))
}

fn verify_kept() {
    let kept = KEPT.lock().unwrap();
    for k in kept.iter() {
        match k {
            Kept::Strong(t, tp) => check_now("kept strong", &t.traceparent() == tp),
            Kept::Weak(w, tp) => {
                if let Some(t) = w.upgrade() {
                    check_now("kept weak", &t.traceparent() == tp)
                }
            }
            Kept::Info(i, p) => check_now("kept info", i.path() == p),
            Kept::InfoWeak(w, p) => {
                if let Some(i) = w.upgrade() {
                    check_now("kept info weak", i.path() == p)
                }
            }
            Kept::Ctx(c, tp) => check_now(
                "ctx trace",
                c.get::<TraceContext>().unwrap().traceparent() == *tp,
            ),
        }
    }
}

#[test]
fn held_values_never_change() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let svc = ContextLayer::new().layer(service_fn(handler));
        let nested = ContextLayer::new().layer(ContextLayer::new().layer(service_fn(handler)));
        let mut tasks = Vec::new();
        for t in 0..16 {
            let svc = svc.clone();
            let nested = nested.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..400 {
                    let path = format!("/t{t}/n{n}/{}", "x".repeat(n % 40));
                    let mut b = http::Request::builder().uri(path.as_str());
                    if n % 11 == 0 {
                        b = b.header(
                            "traceparent",
                            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                        );
                    }
                    if n % 13 == 0 {
                        b = b.header("baggage", "k=v");
                    }
                    let req = b.body(String::new()).unwrap();
                    use http_body_util::BodyExt;
                    if n % 3 == 0 {
                        let body = nested.clone().oneshot(req).await.unwrap().into_body();
                        if n % 2 == 0 {
                            let got = body.collect().await.unwrap().to_bytes();
                            assert_eq!(got, path.as_bytes());
                        }
                    } else {
                        let body = svc.clone().oneshot(req).await.unwrap().into_body();
                        if n % 2 == 0 {
                            let got = body.collect().await.unwrap().to_bytes();
                            assert_eq!(got, path.as_bytes());
                        }
                    }
                    if n % 50 == 0 {
                        verify_kept();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    });
    verify_kept();
    assert_eq!(BAD.load(Ordering::Relaxed), 0);
    // The in-place path ran: fewer allocations than requests.
    let requests = REQUESTS.load(Ordering::Relaxed);
    let places = TRACE_ADDRESSES.lock().unwrap().len();
    assert!(places < requests, "{places} places for {requests} requests");
}

struct Marker(#[allow(dead_code)] u64);

async fn panicky(req: http::Request<String>) -> Result<http::Response<String>, Infallible> {
    let want_path = req.uri().path().to_owned();
    let info = milieu::get::<RequestInfo>().unwrap();
    let tp = milieu::get::<TraceContext>().unwrap().traceparent();
    let id = info.id();
    drop(info);
    tokio::task::yield_now().await;
    let _g = milieu::provide(Marker(id));
    if id % 3 == 0 {
        milieu::with(|_t: &TraceContext| panic!("boom {id}")).unwrap();
    }
    check_now(
        "panicky trace",
        milieu::get::<TraceContext>().unwrap().traceparent() == tp,
    );
    check_now(
        "panicky path",
        milieu::get::<RequestInfo>().unwrap().path() == want_path,
    );
    Ok(http::Response::new(want_path))
}

#[test]
fn panics_in_handlers_leave_the_frames_sane() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let svc = ContextLayer::new().layer(service_fn(panicky));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let mut panics = 0;
                for n in 0..300 {
                    let path = format!("/p{t}/{n}");
                    let req = http::Request::builder()
                        .uri(path.as_str())
                        .body(String::new())
                        .unwrap();
                    let svc = svc.clone();
                    let r = tokio::spawn(async move {
                        use http_body_util::BodyExt;
                        let body = svc.oneshot(req).await.unwrap().into_body();
                        body.collect().await.unwrap().to_bytes()
                    })
                    .await;
                    match r {
                        Ok(b) => assert_eq!(b, path.as_bytes()),
                        Err(_) => panics += 1,
                    }
                }
                panics
            }));
        }
        let mut panics = 0;
        for t in tasks {
            panics += t.await.unwrap();
        }
        assert!(panics > 0);
    });
    assert_eq!(BAD.load(Ordering::Relaxed), 0);
}
