//! `milieu::tower::ContextLayer` (features `tower`, `axum`) in front of
//! axum 0.8 on hyper 1.x, through `Router::layer` and around the whole
//! router (`ContextLayer::around`), served over loopback on real tokio
//! runtimes.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::{assert_contains, assert_not_contains, Capture, SeenOnDrop};
use http_body::{Frame, SizeHint};
use milieu::dump::{HopKind, Policy};
use milieu::remote::{Propagation, TraceContext};
use milieu::tower::{ContextLayer, MissingContext, RequestInfo};
use milieu::{Context, Requirement, Route};

/// The service's root context: what every request should see.
#[derive(Debug)]
struct Db(&'static str);
/// Never installed: the handler that needs it must answer 500.
#[derive(Debug)]
struct FeatureFlags;

/// A response as the raw client reads it.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends one request with `Connection: close` and reads the answer to
/// the end, on a blocking thread (the runtime's threads keep serving).
async fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = common::connect(addr);
        stream.write_all(request.as_bytes()).unwrap();
        let raw = String::from_utf8(common::read_to_end(&mut stream)).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
        let status = head[9..12].parse().unwrap();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Answer {
            status,
            head: head.to_owned(),
            body,
        }
    })
    .await
    .unwrap()
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// Serves `app` on a loopback port of the current runtime, with the peer
/// address as axum's `ConnectInfo`.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    milieu::tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

fn layer() -> ContextLayer {
    ContextLayer::new().peer_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|info| info.0))
}

/// A multi-thread runtime whose threads start in a root context with a
/// `Db` and `capture` as the tracing subscriber.
fn runtime(capture: &Capture) -> milieu::tokio::Runtime {
    let root = milieu::scope()
        .with(Db("orders.sqlite"))
        .with(tracing::Dispatch::new(capture.clone()))
        .run(Context::current);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    milieu::tokio::Runtime::from_builder(&mut builder, root).unwrap()
}

async fn whoami() -> String {
    // Both a yield (a later poll, maybe on the other worker) and a lookup.
    tokio::task::yield_now().await;
    let info = RequestInfo::current().unwrap();
    let db = milieu::get::<Db>().unwrap();
    let trace = milieu::get::<TraceContext>().unwrap();
    format!(
        "#{} {} {} db={} trace={}",
        info.id(),
        info.method(),
        info.path(),
        db.0,
        trace.trace_id()
    )
}

#[milieu::requires(RequestInfo)]
async fn flags(#[ctx] _flags: Arc<FeatureFlags>) -> Result<String, MissingContext> {
    Ok("unreachable".to_owned())
}

#[milieu::requires]
async fn order(
    Path(id): Path<u32>,
    #[ctx] db: Arc<Db>,
    #[ctx] info: &RequestInfo,
) -> Result<String, MissingContext> {
    tokio::task::yield_now().await;
    Ok(format!("order {id} from {} (request #{})", db.0, info.id()))
}

/// What a task spawned from the handler sees: the trace (inherited), not
/// the `RequestInfo` (local), and a task hop.
async fn spawned() -> String {
    let task = milieu::tokio::spawn(async {
        tokio::task::yield_now().await;
        let dump = milieu::dump();
        let hop = dump.hops().next().map(|hop| hop.kind);
        (
            milieu::get::<TraceContext>().map(|t| t.trace_id().to_string()),
            RequestInfo::current().is_ok(),
            hop,
        )
    });
    let (trace, info, hop) = task.await.unwrap();
    format!(
        "trace={} info={info} hop={hop:?}",
        trace.unwrap_or_default()
    )
}

/// A body streamed after the handler returned: each frame is made in a
/// poll of the body, and says which request it belongs to.
async fn stream() -> Body {
    let mut frames = 0;
    let stream = futures::stream::poll_fn(move |_| {
        frames += 1;
        if frames > 3 {
            return Poll::Ready(None);
        }
        let id = RequestInfo::current().map(|info| info.id()).unwrap_or(0);
        Poll::Ready(Some(Ok::<_, Infallible>(Bytes::from(format!(
            "frame {frames} of #{id}\n"
        )))))
    });
    Body::from_stream(stream)
}

/// The context of the request, as a dump.
async fn dump() -> String {
    milieu::dump().to_string()
}

/// The routes, without the layer.
fn routes() -> Router {
    Router::new()
        .route("/whoami/{rest}", get(whoami))
        .route("/flags", get(flags))
        .route("/orders/{id}", get(order))
        .route("/spawned", get(spawned))
        .route("/stream", get(stream))
        .route("/dump", get(dump))
}

/// The routes through `Router::layer`.
fn app() -> Router {
    routes().layer(layer())
}

/// Where the layer goes.
#[derive(Clone, Copy, Debug)]
enum Mount {
    /// Through `Router::layer`, the peer from axum's `ConnectInfo`.
    Layer,
    /// Around the whole router: `ContextLayer::around`.
    Around,
    /// The same, with `with_connect_info`.
    AroundWithConnectInfo,
}

/// Serves `routes` with the layer mounted as `mount`.
async fn serve_as(routes: Router, mount: Mount) -> SocketAddr {
    match mount {
        Mount::Layer => serve(routes.layer(layer())).await,
        Mount::Around | Mount::AroundWithConnectInfo => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut around = ContextLayer::new().around(routes);
            if let Mount::AroundWithConnectInfo = mount {
                around = around.with_connect_info();
            }
            milieu::tokio::spawn(async move { axum::serve(listener, around).await.unwrap() });
            addr
        }
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn handlers_see_the_request_the_trace_and_the_root_context() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve(app()).await;
        let first = send(addr, "/whoami/a?x=1", &[]).await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert_contains(&first.body, " GET /whoami/a db=orders.sqlite trace=");
        // The absolute form (as sent to a proxy): the same path.
        let absolute = send(addr, "http://localhost/whoami/c?x=1", &[]).await;
        assert_eq!(absolute.status, 200, "{}", absolute.body);
        assert_contains(&absolute.body, " GET /whoami/c db=orders.sqlite trace=");
        let traced = send(addr, "/whoami/b", &[("traceparent", TRACEPARENT)]).await;
        assert_contains(
            &traced.body,
            " GET /whoami/b db=orders.sqlite trace=4bf92f3577b34da6a3ce929d0e0e4736",
        );
        // Two requests, two ids, counted by the layer.
        let ids: Vec<&str> = [&first.body, &traced.body]
            .iter()
            .map(|b| b.split_whitespace().next().unwrap())
            .collect();
        assert_ne!(ids[0], ids[1]);
        // No traceparent: a new trace, different from the one sent.
        assert_not_contains(&first.body, "4bf92f3577b34da6a3ce929d0e0e4736");
    });
}

#[test]
fn the_dump_records_the_request_as_local_and_the_callers_process_hop() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve(app()).await;
        let answer = send(
            addr,
            "/dump",
            &[("traceparent", TRACEPARENT), ("baggage", "tenant=acme")],
        )
        .await;
        assert_eq!(answer.status, 200);
        // The request's own entry, local, installed by the layer.
        assert_contains(&answer.body, "RequestInfo  [local #");
        assert_contains(&answer.body, "installed at src/tower/");
        // Received from the caller, through a process hop from the client's
        // address.
        assert_contains(&answer.body, "carried by process hop from 127.0.0.1:");
        assert_contains(
            &answer.body,
            "(traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-",
        );
        assert_contains(&answer.body, "forwarded: [\"tenant\"]");
        // The root context is below, carried onto the worker thread.
        assert_contains(&answer.body, "tower_layer::Db  [inherited #1]");
    });
}

#[test]
fn the_layer_lists_what_it_installs_and_its_request_info_is_local() {
    // The policy as the dump types report it, checked in-process on a
    // current-thread runtime.
    let layer = ContextLayer::new();
    let installs: Vec<_> = layer
        .installs()
        .iter()
        .map(Requirement::type_name)
        .collect();
    assert_eq!(
        installs,
        [
            std::any::type_name::<RequestInfo>(),
            std::any::type_name::<TraceContext>()
        ]
    );
    let none = ContextLayer::new().propagation(None::<Propagation>);
    assert_eq!(none.installs().len(), 1);
    let entry = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use tower::{Service, ServiceExt};
            let mut service = tower::ServiceBuilder::new()
                .layer(ContextLayer::new())
                .service_fn(|_request: http::Request<()>| async {
                    let dump = milieu::dump();
                    let entry = dump
                        .entries()
                        .find(|e| e.type_name.ends_with("RequestInfo"))
                        .cloned()
                        .unwrap();
                    Ok::<_, Infallible>(http::Response::new(entry.policy))
                });
            let request = http::Request::builder().uri("/x").body(()).unwrap();
            let response = service.ready().await.unwrap().call(request).await.unwrap();
            response.into_body().into_inner()
        });
    assert_eq!(entry, Policy::Local);
}

#[test]
fn a_missing_requirement_answers_500_without_the_report_and_logs_it() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve(app()).await;
        let answer = send(addr, "/flags", &[]).await;
        assert_eq!(answer.status, 500);
        assert_contains(
            &answer.head.to_ascii_lowercase(),
            "content-type: text/plain",
        );
        assert_contains(&answer.body, "internal server error (request #1;");
        // Nothing of the report reaches the client.
        for secret in ["FeatureFlags", "tower_layer", "Db", ".rs:"] {
            assert_not_contains(&answer.body, secret);
        }
    });
    let logged: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.target == "milieu::tower" && e.level == tracing::Level::ERROR)
        .collect();
    assert_eq!(logged.len(), 1, "{:?}", capture.messages());
    assert_contains(&logged[0].message, "FeatureFlags");
    assert_contains(&logged[0].message, "tower_layer::flags");
    assert_eq!(logged[0].field("request"), Some("1"));
}

#[test]
fn requires_handlers_take_axum_extractors_and_context_parameters() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve(app()).await;
        let answer = send(addr, "/orders/42", &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, "order 42 from orders.sqlite (request #1)");
    });
}

#[test]
fn tasks_spawned_by_a_handler_carry_the_trace_but_not_the_request() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve(app()).await;
        let answer = send(addr, "/spawned", &[("traceparent", TRACEPARENT)]).await;
        assert_eq!(
            answer.body,
            format!(
                "trace=4bf92f3577b34da6a3ce929d0e0e4736 info=false hop={:?}",
                Some(HopKind::Task)
            )
        );
    });
}

#[test]
fn a_body_streamed_after_the_handler_keeps_the_request_context() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        for mount in [Mount::Layer, Mount::Around] {
            let addr = serve_as(routes(), mount).await;
            let _ = send(addr, "/whoami/first", &[]).await;
            let answer = send(addr, "/stream", &[]).await;
            assert_eq!(answer.status, 200);
            assert_eq!(
                answer.body, "frame 1 of #2\nframe 2 of #2\nframe 3 of #2\n",
                "{mount:?} {}",
                answer.head
            );
        }
    });
}

#[test]
fn routes_are_verified_against_the_root_and_what_the_layer_installs() {
    let layer = layer();
    let root = milieu::scope()
        .with(Db("orders.sqlite"))
        .run(Context::current);
    let routes = [
        Route::new("GET /orders/{id}").runs(ORDER_REQUIREMENTS),
        Route::new("GET /flags").runs(FLAGS_REQUIREMENTS),
    ];
    let report = milieu::verify_routes(&root, &layer.installs(), &routes).unwrap_err();
    assert_eq!(report.routes(), ["GET /flags"]);
    assert_eq!(
        report.failures()[0].missing,
        [std::any::type_name::<FeatureFlags>()]
    );
    let text = report.to_string();
    assert_contains(&text, "1 of 2 route(s) would fail");
    assert_contains(&text, "GET /flags: `tower_layer::flags`");
    assert_contains(
        &text,
        "installed per request: `milieu::remote::request::RequestInfo`",
    );
    // Without the layer's installs, the order route fails too: it needs the
    // request's `RequestInfo`.
    let report = milieu::verify_routes(&root, &[], &routes).unwrap_err();
    assert_eq!(report.routes(), ["GET /orders/{id}", "GET /flags"]);
}

#[cfg(feature = "debug-views")]
#[test]
fn the_debug_service_mounts_the_views_in_one_line_behind_the_layer() {
    use milieu::http::debug::DebugViews;
    use milieu::stage::Stage;
    use milieu::tower::DebugService;

    let capture = Capture::new();
    let runtime = runtime(&capture);
    let halve = Stage::builder("halve").build(|n: u32| n / 2).unwrap();
    let views = DebugViews::new().stage(halve.clone());
    runtime.block_on(async {
        for n in 0..10 {
            halve.submit(n).unwrap().await.unwrap();
        }
        let admin = Router::new()
            .route_service("/debug/{*view}", DebugService::new(views))
            .layer(layer());
        let addr = serve(admin).await;

        let context = send(addr, "/debug/context?format=text", &[]).await;
        assert_eq!(context.status, 200, "{}", context.body);
        // The context of this very request: the layer's entry, the root.
        assert_contains(&context.body, "RequestInfo  [local #");
        assert_contains(&context.body, "tower_layer::Db  [inherited #1]");

        let stages = send(addr, "/debug/stages", &[("accept", "application/json")]).await;
        assert_eq!(stages.status, 200, "{}", stages.body);
        assert_contains(
            &stages.head.to_ascii_lowercase(),
            "content-type: application/json",
        );
        assert_contains(&stages.body, "\"halve\"");

        let page = send(addr, "/debug/stages", &[("accept", "text/html")]).await;
        assert_eq!(page.status, 200);
        assert_contains(&page.body, "<svg");

        assert_eq!(send(addr, "/debug/nothing", &[]).await.status, 404);
    });
}

/// With hyper 1.x alone (no axum): the layer in a `tower::ServiceBuilder`,
/// served by hyper's HTTP/1 connection through hyper-util's adapter.
#[test]
fn the_layer_serves_hyper_directly() {
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    async fn handle(
        request: http::Request<hyper::body::Incoming>,
    ) -> Result<http::Response<Full<Bytes>>, Infallible> {
        tokio::task::yield_now().await;
        let info = RequestInfo::current().unwrap();
        let trace = milieu::get::<TraceContext>().unwrap();
        let db = milieu::get::<Db>().unwrap();
        let body = format!(
            "#{} {} {} {} db={} trace={}",
            info.id(),
            info.method(),
            info.path(),
            request.uri(),
            db.0,
            trace.trace_id()
        );
        Ok(http::Response::new(Full::new(Bytes::from(body))))
    }

    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = tower::ServiceBuilder::new()
            .layer(ContextLayer::new())
            .service_fn(handle);
        milieu::tokio::spawn(async move {
            loop {
                let (stream, peer) = listener.accept().await.unwrap();
                let service = TowerToHyperService::new(
                    tower::ServiceBuilder::new()
                        // The peer address where the layer looks by default.
                        .map_request(move |mut request: http::Request<_>| {
                            request.extensions_mut().insert(peer);
                            request
                        })
                        .service(service.clone()),
                );
                milieu::tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let answer = send(addr, "/hyper/x?y=1", &[("traceparent", TRACEPARENT)]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.body,
            "#1 GET /hyper/x /hyper/x?y=1 db=orders.sqlite trace=4bf92f3577b34da6a3ce929d0e0e4736"
        );
    });
}

/// A client that goes away while its request is still being handled: the
/// handler's future (holding a `SeenOnDrop` across `.await`) or its
/// streamed body is dropped by hyper, and the drop sees the request's
/// context, as the polls did.
#[test]
fn what_a_cancelled_request_held_is_dropped_inside_its_context() {
    use std::sync::mpsc;
    let (dropped, seen) = mpsc::channel();
    let (started, has_started) = mpsc::channel::<()>();
    let has_started = Arc::new(std::sync::Mutex::new(has_started));
    let hang = {
        let (dropped, started) = (dropped.clone(), started.clone());
        move || async move {
            let _held = SeenOnDrop(dropped);
            started.send(()).unwrap();
            std::future::pending::<String>().await
        }
    };
    // A body that sends one frame, then waits for ever, holding the probe.
    let endless = move || {
        let (dropped, started) = (dropped.clone(), started.clone());
        async move {
            let held = SeenOnDrop(dropped);
            let mut sent = false;
            Body::from_stream(futures::stream::poll_fn(move |_| {
                let _ = &held;
                if sent {
                    return Poll::Pending;
                }
                sent = true;
                started.send(()).unwrap();
                Poll::Ready(Some(Ok::<_, Infallible>(Bytes::from_static(b"first\n"))))
            }))
        }
    };
    let routes = Router::new()
        .route("/hang", get(hang))
        .route("/endless", get(endless));
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        for (mount, path) in [
            (Mount::Layer, "/hang"),
            (Mount::Layer, "/endless"),
            (Mount::Around, "/hang"),
            (Mount::Around, "/endless"),
        ] {
            let addr = serve_as(routes.clone(), mount).await;
            let has_started = Arc::clone(&has_started);
            tokio::task::spawn_blocking(move || {
                let mut stream = common::connect(addr);
                write!(
                    stream,
                    "GET {path} HTTP/1.1\r\nHost: localhost\r\ntraceparent: {TRACEPARENT}\r\n\r\n"
                )
                .unwrap();
                let started = has_started.lock().unwrap();
                started
                    .recv_timeout(common::SOCKET_DEADLINE)
                    .expect("the handler runs");
                // The client goes away.
                drop(stream);
            })
            .await
            .unwrap();
            let (path_seen, trace_seen) = seen
                .recv_timeout(common::SOCKET_DEADLINE)
                .expect("hyper drops the request's future or body");
            assert_eq!(path_seen.as_deref(), Some(path));
            assert_eq!(
                trace_seen.as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{path} {mount:?}"
            );
        }
    });
}

/// A response future still waiting when its thread exits, kept in a
/// thread-local destroyed after milieu's state: it is dropped without the
/// request's context (there is none left), not with a panic inside a
/// thread-local destructor, which would abort the process.
#[test]
fn a_request_dropped_after_its_threads_context_state_is_gone_does_not_abort() {
    use std::cell::RefCell;
    use tower::{Layer, Service};
    thread_local! {
        static KEPT: RefCell<Vec<Box<dyn std::any::Any>>> = const { RefCell::new(Vec::new()) };
    }
    let (dropped, seen) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        // Used first, so its destructor is registered before milieu's
        // state's, and runs after it.
        KEPT.with(|_| ());
        let mut service =
            ContextLayer::new().layer(tower::service_fn(move |_: http::Request<()>| {
                let held = SeenOnDrop(dropped.clone());
                async move {
                    let _held = held;
                    std::future::pending::<Result<http::Response<String>, Infallible>>().await
                }
            }));
        let mut future = Box::pin(service.call(http::Request::new(())));
        assert!(common::poll_once(future.as_mut()).is_pending());
        KEPT.with(|kept| kept.borrow_mut().push(Box::new(future)));
    });
    assert!(thread.join().is_ok(), "no panic at the thread's exit");
    let (path, trace) = seen.recv().expect("the handler's future was dropped");
    assert_eq!((path, trace), (None, None), "no context left to drop it in");
}

// `ContextLayer::around`: the layer around the whole router.

/// The fallback (no route matched): inside the layer too.
async fn not_found() -> (axum::http::StatusCode, String) {
    let path = RequestInfo::current().map(|info| info.path().to_owned());
    (
        axum::http::StatusCode::NOT_FOUND,
        format!("no route for {path:?}"),
    )
}

/// A body that knows its length and makes each of its frames in a poll,
/// saying whether the request's context was there: `around` reads its
/// first frame when the response is ready, hyper the others.
struct Counted {
    left: usize,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        let seen: &'static [u8] = if RequestInfo::current().is_ok() {
            b"y"
        } else {
            b"n"
        };
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(seen)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left as u64)
    }
}

fn around_routes() -> Router {
    routes()
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route("/counted", get(|| async { Body::new(Counted { left: 3 }) }))
        .route(
            "/empty",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .fallback(not_found)
}

#[test]
fn around_the_router_handlers_and_the_fallback_see_the_request() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve_as(around_routes(), Mount::Around).await;
        let first = send(addr, "/whoami/a?x=1", &[]).await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert_contains(&first.body, " GET /whoami/a db=orders.sqlite trace=");
        let traced = send(addr, "/whoami/b", &[("traceparent", TRACEPARENT)]).await;
        assert_contains(
            &traced.body,
            " GET /whoami/b db=orders.sqlite trace=4bf92f3577b34da6a3ce929d0e0e4736",
        );
        // Routing found nothing: the fallback runs inside the layer.
        let missing = send(addr, "/nowhere", &[]).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body, "no route for Ok(\"/nowhere\")");
        // The process hop names the connection's peer: `around` takes it
        // from `axum::serve`, with no `peer_addr` set.
        let dump = send(addr, "/dump", &[("traceparent", TRACEPARENT)]).await;
        assert_contains(&dump.body, "RequestInfo  [local #");
        assert_contains(&dump.body, "carried by process hop from 127.0.0.1:");
        assert_contains(&dump.body, "tower_layer::Db  [inherited #1]");
    });
}

/// `with_connect_info`: axum's `ConnectInfo` for the handlers that
/// extract it; without it, axum refuses them as it does for a `Router`
/// served without `into_make_service_with_connect_info`.
#[test]
fn around_the_router_gives_connect_info_when_asked() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve_as(around_routes(), Mount::AroundWithConnectInfo).await;
        let answer = send(addr, "/peer", &[]).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "127.0.0.1"));
        let without = serve_as(around_routes(), Mount::Around).await;
        assert_eq!(send(without, "/peer", &[]).await.status, 500);
    });
}

#[test]
fn around_the_router_a_body_of_known_length_is_read_inside_the_request() {
    let capture = Capture::new();
    let runtime = runtime(&capture);
    runtime.block_on(async {
        let addr = serve_as(around_routes(), Mount::Around).await;
        // Three frames: the first read early, two later, each inside the
        // request, and the length announced.
        let counted = send(addr, "/counted", &[]).await;
        assert_eq!(counted.status, 200);
        assert_contains(&counted.head.to_ascii_lowercase(), "content-length: 3");
        assert_eq!(counted.body, "yyy");
        let empty = send(addr, "/empty", &[]).await;
        assert_eq!((empty.status, empty.body.as_str()), (204, ""));
        // HEAD: the head of a known-length answer, no body.
        let head = tokio::task::spawn_blocking(move || {
            let mut stream = common::connect(addr);
            write!(
                stream,
                "HEAD /whoami/h HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            String::from_utf8(common::read_to_end(&mut stream)).unwrap()
        })
        .await
        .unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    });
}

/// Any clonable service answering with axum's `Body`, not only a
/// `Router`: its `call` runs inside the request's context, on the
/// instance `poll_ready` found ready, and a future dropped unpolled never
/// calls it.
#[test]
fn around_a_plain_service_calls_it_inside_the_request() {
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Service, ServiceExt};
    let calls = Arc::new(AtomicUsize::new(0));
    let service = {
        let calls = Arc::clone(&calls);
        tower::service_fn(move |request: http::Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            // In `call`, not in the future: the context is already there.
            let seen = RequestInfo::current().map(|info| info.path().to_owned());
            let body = format!("{} saw {seen:?}", request.uri().path());
            std::future::ready(Ok::<_, Infallible>(http::Response::new(Body::from(body))))
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut around = ContextLayer::new().around(service);
        for path in ["/a", "/b"] {
            let request = http::Request::get(path).body(Body::empty()).unwrap();
            let response = around.ready().await.unwrap().call(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(bytes, format!("{path} saw Ok(\"{path}\")"));
        }
        let request = http::Request::get("/c").body(Body::empty()).unwrap();
        drop(around.ready().await.unwrap().call(request));
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
