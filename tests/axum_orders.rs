//! The axum orders example (`examples/axum_orders`): as a process over
//! real sockets, and its routes in-process under 10,000 concurrent tasks.

mod common;

// The example's own modules, so the second test serves its routes as they
// are.
#[allow(dead_code)]
#[path = "../examples/axum_orders/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/orders/line_item.rs"]
mod line_item;
#[allow(dead_code)]
#[path = "../examples/axum_orders/serve.rs"]
mod serve;
#[allow(dead_code)]
#[path = "../examples/orders/store.rs"]
mod store;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use common::assert_contains;
use common::examples::build_examples;
use common::orders_example::Server;
use milieu::tower::ContextLayer;

/// The example's executable, built once per test process.
fn binary() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build_examples(&["axum_orders"])
                .remove("axum_orders")
                .expect("cargo built no `axum_orders` example")
        })
        .clone()
}

/// The example's own limits, for the routes served in-process.
const LIMITS: serve::Limits = serve::Limits {
    client_timeout: std::time::Duration::from_secs(30),
    body_bytes: 64 * 1024,
    connections: 1024,
};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn the_axum_service_places_lists_and_finds_orders_over_loopback() {
    let mut server = Server::orders_from(&binary(), &["--admin-addr", "127.0.0.1:0"]);

    let hello = server.get("/");
    assert_eq!(hello.status, 200);
    assert_eq!(hello.text(), "hello from milieu on axum (request #1)\n");

    let placed = server.request(&format!(
        "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         traceparent: {TRACEPARENT}\r\nContent-Length: 30\r\nConnection: close\r\n\r\n\
         {{\"item\": \"tea\", \"quantity\": 2}}"
    ));
    assert_eq!(placed.status, 201, "{}", placed.text());
    assert_eq!(placed.header("location"), Some("/orders/1"));
    assert_eq!(
        placed.json(),
        serde_json::json!({"id": 1, "item": "tea", "quantity": 2})
    );
    // The caller's trace is continued: the trace id comes back.
    assert_eq!(
        placed.header("trace-id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    let second = server.post("/orders", r#"{"item": "cake", "quantity": 1}"#);
    assert_eq!(second.status, 201, "{}", second.text());
    // Without a traceparent, a new trace each request.
    let trace = second.header("trace-id").unwrap();
    assert_eq!(trace.len(), 32);
    assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");

    let listed = server.get("/orders?limit=10");
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json(),
        serde_json::json!([
            {"id": 2, "item": "cake", "quantity": 1},
            {"id": 1, "item": "tea", "quantity": 2}
        ])
    );
    assert_eq!(
        server.get("/orders/1").json(),
        serde_json::json!({"id": 1, "item": "tea", "quantity": 2})
    );

    // Bad input gets the orders service's answers.
    let not_found = server.get("/orders/99");
    assert_eq!(not_found.status, 404);
    assert_eq!(
        not_found.json(),
        serde_json::json!({"error": "no such order"})
    );
    let array = server.post("/orders", r#"["tea", 2]"#);
    assert_eq!(array.status, 400, "only an object is an order");
    assert_eq!(server.get("/orders?limit=0").status, 400);
    assert_eq!(server.get("/orders?limit=x").status, 400);
    assert_eq!(server.get("/orders/abc").status, 400);
    // The debug view is not on the public listener.
    assert_eq!(server.get("/debug/context").status, 404);

    // The admin listener's views (milieu's, through `DebugService`): one
    // request's context (its entry, the root context below, the DB stage's
    // figures), and the stage page with its charts.
    let debug = server.admin_get("/debug/context");
    assert_eq!(debug.status, 200);
    let text = debug.text();
    assert_contains(&text, "milieu::remote::request::RequestInfo  [local #");
    assert_contains(&text, "milieu::txn::Database");
    assert_contains(&text, "because \"the orders database (SQLite, WAL)\"");
    assert_contains(&text, "\nstage `db`: 0/1024 queued");
    let stages = server.admin_request(
        "GET /debug/stages HTTP/1.1\r\nHost: t\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(stages.status, 200);
    assert_contains(&stages.text(), "<svg");

    assert!(server.terminate().success(), "a graceful stop exits 0");
}

#[test]
fn ten_thousand_tasks_through_the_layer_see_only_their_own_context() {
    /// Each task's own entry, installed by the task's spawner.
    #[derive(Debug)]
    struct Task(u64);

    const TASKS: u64 = 10_000;
    let root = milieu::scope()
        .with_arc(Arc::new(app::Service::default()))
        .run(milieu::Context::current);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(4).enable_all();
    let runtime = milieu::tokio::Runtime::from_builder(&mut builder, root).unwrap();
    let router = app::public(ContextLayer::new(), LIMITS);
    let results = runtime.block_on(async move {
        let tasks: Vec<_> = (1..=TASKS)
            .map(|i| {
                let router = router.clone();
                milieu::scope().with(Task(i)).run(|| {
                    milieu::tokio::spawn(async move {
                        use tower::ServiceExt;
                        // Each task sends its own trace id, and yields so
                        // that tasks interleave on the workers.
                        let traceparent = format!("00-{i:032x}-00f067aa0ba902b7-01");
                        let request = axum::http::Request::builder()
                            .uri("/")
                            .header("traceparent", &traceparent)
                            .body(axum::body::Body::empty())
                            .unwrap();
                        tokio::task::yield_now().await;
                        let response = router.oneshot(request).await.unwrap();
                        tokio::task::yield_now().await;
                        let trace = response.headers()["trace-id"].to_str().unwrap().to_owned();
                        let body = axum::body::to_bytes(response.into_body(), 1024)
                            .await
                            .unwrap();
                        // The task's own entry, after all that.
                        let mine = milieu::get::<Task>().unwrap().0;
                        (i, mine, trace, String::from_utf8(body.to_vec()).unwrap())
                    })
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    });
    let mut request_ids = HashSet::new();
    for (i, mine, trace, body) in &results {
        assert_eq!(i, mine, "task {i} saw another task's entry");
        assert_eq!(*trace, format!("{i:032x}"), "task {i} got another trace");
        let id = body
            .strip_prefix("hello from milieu on axum (request #")
            .and_then(|rest| rest.strip_suffix(")\n"))
            .unwrap_or_else(|| panic!("task {i}: {body:?}"));
        assert!(request_ids.insert(id.to_owned()), "request id {id} twice");
    }
    assert_eq!(request_ids.len() as u64, TASKS);
}

/// A client that sends half a request and waits does not keep the service
/// from stopping: after SIGTERM, requests in flight get `--shutdown-grace`
/// seconds, then the connections left are closed and the process exits 0.
#[test]
fn a_half_sent_request_does_not_hold_up_the_stop() {
    use std::io::{Read, Write};
    let mut server = Server::orders_from(&binary(), &["--shutdown-grace", "1"]);
    let mut half = common::connect(server.addr);
    half.write_all(b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    // A whole request on another connection first, so the half one has
    // surely been accepted and is being read.
    assert_eq!(server.get("/").status, 200);
    assert!(
        server.terminate().success(),
        "a stop past the grace exits 0"
    );
    // The half-sent request was dropped, not answered.
    let mut rest = Vec::new();
    let _ = half.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

/// A client that never finishes its header fields is disconnected after
/// `--client-timeout` (`axum::serve` alone would keep the connection for
/// ever), while other clients are served meanwhile.
#[test]
fn a_client_that_never_ends_its_header_fields_is_disconnected() {
    use std::io::Write;
    let server = Server::orders_from(&binary(), &["--client-timeout", "1"]);
    let mut slow = common::connect(server.addr);
    slow.write_all(b"GET /orders HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    assert_eq!(server.get("/").status, 200);
    // hyper closes it without an answer; without the bound the read
    // fails at the test client's own deadline instead of ending.
    let answer = common::read_to_end(&mut slow);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
}

/// A client that sends its header fields and then not all of its body is
/// answered `408`, with the connection closed, after `--client-timeout`;
/// the handler never runs (no order is placed).
#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    use std::io::Write;
    let server = Server::orders_from(&binary(), &["--client-timeout", "1"]);
    let mut slow = common::connect(server.addr);
    slow.write_all(b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let answer = String::from_utf8(common::read_to_end(&mut slow)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_contains(&answer.to_ascii_lowercase(), "connection: close");
    assert_contains(&answer, "the body did not arrive within 1s");
    assert_eq!(server.get("/orders").json(), serde_json::json!([]));
}

/// The body is read in full before the handler, up to the limit: one byte
/// over it is `413`, and a body of exactly the limit reaches the handler.
#[test]
fn a_body_over_the_limit_is_answered_413() {
    use tower::ServiceExt;
    let limits = serve::Limits {
        body_bytes: 16,
        ..LIMITS
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = |body: &'static str| {
        let router = app::public(ContextLayer::new(), limits);
        let request = http::Request::get("/")
            .body(axum::body::Body::from(body))
            .unwrap();
        runtime.block_on(router.oneshot(request)).unwrap().status()
    };
    assert_eq!(status("seventeen bytes!!"), 413);
    assert_eq!(status("sixteen bytes!!!"), 200);
}

/// A `Content-Length` over the limit is answered `413` at once: no
/// `100 Continue`, no wait for the body.
#[test]
fn a_declared_length_over_the_limit_is_answered_413_before_the_body() {
    use std::io::Write;
    let server = Server::orders_from(&binary(), &[]);
    let mut client = common::connect(server.addr);
    client
        .write_all(
            b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let answer = String::from_utf8(common::read_to_end(&mut client)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert_contains(&answer, "the body is over 65536 bytes");
}

/// A client that sends requests and never reads the answers is let go
/// once a write has made no progress for `--client-timeout`, instead of
/// holding its connection (and the stop) for ever.
#[test]
fn a_client_that_never_reads_is_disconnected() {
    let server = Server::orders_from(&binary(), &["--client-timeout", "1"]);
    let mut client = common::server::small_window_client(server.addr, 4096);
    // Answers to more than the kernel can buffer between the two ends
    // (Linux grows a send buffer up to 4 MiB by default): with 50,000 the
    // server sometimes got all of them out without a write ever stalling.
    const REQUESTS: usize = 200_000;
    let requests = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(REQUESTS);
    let writer = common::server::write_in_background(&client, requests);
    // Well past the timeout, reading nothing.
    std::thread::sleep(std::time::Duration::from_secs(3));
    // What was sent before the server gave up, then the end of the stream
    // (or a reset, for the requests it left unread); without the bound
    // the answers would keep coming and the connection stay open, and
    // this read would fail at the test client's deadline.
    let (answers, error) = common::server::read_all(&mut client);
    if let Some(e) = error {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    let answered = String::from_utf8_lossy(&answers)
        .matches("HTTP/1.1 200 ")
        .count();
    assert!(answered < REQUESTS, "all {answered} requests were answered");
    let _ = writer.join();
    // Other clients are served.
    assert_eq!(server.get("/").status, 200);
}

/// At most `--max-connections` connections are served at once: the next
/// client waits (in the listen backlog) until one closes, then is served.
#[test]
fn connections_past_the_cap_wait_for_a_place() {
    use std::io::{Read, Write};
    let server = Server::orders_from(&binary(), &["--max-connections", "1"]);
    let first = common::connect(server.addr);
    // The first connection is served (so it holds the one place).
    let mut first_client = &first;
    first_client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0; 1024];
    let n = first_client.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    let mut second = common::connect(server.addr);
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    second
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let waiting = second.read(&mut buf);
    assert!(
        waiting.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "answered while the only place was taken: {waiting:?}"
    );
    drop(first);
    second
        .set_read_timeout(Some(common::SOCKET_DEADLINE))
        .unwrap();
    let answer = String::from_utf8(common::read_to_end(&mut second)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}
