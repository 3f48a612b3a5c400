//! `milieu::http::Client` over real loopback sockets: against milieu's
//! own server, against Python's `http.server` (a server no one here
//! wrote), and against hostile or broken servers played by raw `std`
//! listeners, each asserting the precise error.
//!
//! Every wait is bounded: the client has its timeouts, and the raw
//! servers' sockets have read timeouts, so a test that would hang fails.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::server::HttpServer;
use common::SOCKET_DEADLINE;
use milieu::http::{
    Client, ClientBuilder, ClientError, ClientResponse, HttpLimits, Request, Response,
    ResponseError,
};
use milieu::reactor::{ConnectionInfo, Handle, Reactor};

// ---------------------------------------------------------------- helpers

/// Runs `future` on a new reactor in this thread (the client's side).
#[track_caller]
fn on_reactor<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut reactor = Reactor::new().expect("reactor");
    reactor.run_until(future).expect("reactor runs")
}

/// A client whose waits are short enough for a test that expects them to
/// pass, and long enough not to pass by accident.
fn client() -> ClientBuilder {
    Client::builder()
        .connect_timeout(SOCKET_DEADLINE)
        .write_timeout(SOCKET_DEADLINE)
        .read_timeout(SOCKET_DEADLINE)
        .pool_timeout(SOCKET_DEADLINE)
}

/// `GET url` with `client` on a reactor of its own.
#[track_caller]
fn get(client: &Client, url: &str) -> Result<ClientResponse, ClientError> {
    let request = client.get(url);
    on_reactor(async move { request.await })
}

/// The `InvalidResponse` inside `result`, or a panic naming what came.
#[track_caller]
fn refused(result: Result<ClientResponse, ClientError>) -> ResponseError {
    match result {
        Err(ClientError::InvalidResponse(error)) => error,
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

/// The peer ports the server saw, one per connection: what the handler
/// below records.
#[derive(Clone, Default)]
struct Connections(Arc<Mutex<HashSet<u16>>>);

impl Connections {
    fn record(&self) {
        let info = ConnectionInfo::current().expect("served on a connection");
        let port = info.peer_addr().expect("TCP").port();
        self.0.lock().unwrap().insert(port);
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// milieu's server, answering `<METHOD> <path> <body>` (body echoed), and
/// recording each connection it serves.
fn echo_server() -> (HttpServer, Connections) {
    let connections = Connections::default();
    let seen = connections.clone();
    let server = HttpServer::start(HttpLimits::new(), move |request: Request| {
        seen.record();
        let text = format!(
            "{} {} {}",
            request.method(),
            request.path(),
            String::from_utf8_lossy(request.body())
        );
        let response = Response::text(200, text).with_header("X-Seen", "yes");
        match request.path() {
            "/close" => response.with_header("Connection", "close"),
            _ => response,
        }
    });
    (server, connections)
}

/// A TCP server played by hand: each accepted connection is handed, with
/// its number (from 0), to `script` on a thread of its own. Dropping it
/// stops accepting (connection threads end with their sockets' read
/// timeouts or when the client closes).
struct RawServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    fn start(script: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> RawServer {
        RawServer::on(TcpListener::bind("127.0.0.1:0").expect("bind"), script)
    }

    fn on(
        listener: TcpListener,
        script: impl Fn(usize, TcpStream) + Send + Sync + 'static,
    ) -> RawServer {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let thread = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    stream.set_read_timeout(Some(SOCKET_DEADLINE)).unwrap();
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    let script = Arc::clone(&script);
                    std::thread::spawn(move || script(n, stream));
                }
            })
        };
        RawServer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop up to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request off `stream`: its head and its `Content-Length`
/// body, as text; `None` at the end of the stream.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).expect("ASCII request");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse().expect("a length"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some(head + &String::from_utf8_lossy(&body))
}

/// Waits until the client closes `stream` (or its read timeout passes),
/// dropping what it sends: a server that keeps its end open.
fn hold_until_closed(mut stream: TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// A raw server answering every request of every connection with
/// `reply`, then keeping the connection open until the client closes it.
fn replying(reply: impl Into<Vec<u8>>) -> RawServer {
    let reply = reply.into();
    RawServer::start(move |_, mut stream| {
        if read_request(&mut stream).is_some() {
            let _ = stream.write_all(&reply);
            hold_until_closed(stream);
        }
    })
}

/// Closes `stream` with a reset (`SO_LINGER` 0) rather than a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

// ------------------------------------------------- against milieu's server

#[test]
fn get_post_and_head_against_the_milieu_server() {
    let (server, _) = echo_server();
    let client = client().build();
    let base = format!("http://{}", server.addr);
    let (get, post, head) = on_reactor(async move {
        let get = client.get(&format!("{base}/orders?id=7")).await;
        let post = client
            .post(&format!("{base}/orders"))
            .header("Content-Type", "text/plain")
            .body("tea, 2")
            .await;
        let head = client.head(&format!("{base}/orders")).await;
        (get, post, head)
    });
    let get = get.expect("GET");
    assert_eq!((get.status(), get.reason(), get.version()), (200, "OK", 1));
    assert_eq!(get.text(), Ok("GET /orders "));
    assert_eq!(get.header("x-seen"), Some("yes"));
    assert_eq!(
        get.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let post = post.expect("POST");
    assert_eq!(post.text(), Ok("POST /orders tea, 2"));
    // The handler answered `HEAD /orders ` (13 bytes), which the server
    // sent without its body: the client reads none, though
    // `Content-Length` says 13.
    let head = head.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("content-length"), Some("13"));
    assert!(head.body().is_empty());
}

#[test]
fn sequential_requests_reuse_one_keep_alive_connection() {
    let (server, connections) = echo_server();
    let base = format!("http://{}", server.addr);
    let client = client().build();
    let bodies = on_reactor(async move {
        let mut bodies = Vec::new();
        for path in ["/a", "/b", "/c"] {
            // A HEAD in between: its response has a length and no body,
            // which the next response on the connection must not be
            // mistaken for.
            client.head(&format!("{base}{path}")).await.expect("HEAD");
            let response = client.get(&format!("{base}{path}")).await.expect("GET");
            bodies.push(response.text().unwrap().to_owned());
        }
        bodies
    });
    assert_eq!(bodies, ["GET /a ", "GET /b ", "GET /c "]);
    assert_eq!(connections.count(), 1, "six requests on one connection");
}

#[test]
fn without_idle_connections_each_request_opens_its_own() {
    let (server, connections) = echo_server();
    let url = format!("http://{}/", server.addr);
    let client = client().max_idle_per_origin(0).build();
    on_reactor(async move {
        for _ in 0..3 {
            client.get(&url).await.expect("GET");
        }
    });
    assert_eq!(connections.count(), 3);
}

#[test]
fn a_response_that_closes_is_not_reused() {
    let (server, connections) = echo_server();
    let base = format!("http://{}", server.addr);
    let client = client().build();
    let (closing, after) = on_reactor(async move {
        let closing = client.get(&format!("{base}/close")).await.expect("GET");
        let after = client.get(&format!("{base}/after")).await.expect("GET");
        (closing, after)
    });
    assert_eq!(closing.header("connection"), Some("close"));
    assert_eq!(after.text(), Ok("GET /after "));
    assert_eq!(connections.count(), 2);
}

#[test]
fn a_request_with_connection_close_is_not_reused() {
    let (server, connections) = echo_server();
    let url = format!("http://{}/", server.addr);
    let client = client().build();
    on_reactor(async move {
        let closing = client.get(&url).header("Connection", "close").await;
        closing.expect("GET");
        client.get(&url).await.expect("GET");
    });
    assert_eq!(connections.count(), 2);
}

#[test]
fn concurrent_requests_are_bounded_by_the_pool() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let connections = Connections::default();
    let server = {
        let (in_flight, most, seen) = (in_flight.clone(), most.clone(), connections.clone());
        HttpServer::start(HttpLimits::new(), move |request: Request| {
            seen.record();
            let (in_flight, most) = (in_flight.clone(), most.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Long enough for the requests to overlap, were they let.
                let reactor = Handle::current().expect("served by a reactor");
                reactor.sleep(Duration::from_millis(30)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Response::text(200, request.path().to_owned())
            }
        })
    };
    let base = format!("http://{}", server.addr);
    let client = client().max_connections_per_origin(2).build();
    let paths = on_reactor(async move {
        let reactor = Handle::current().unwrap();
        let requests: Vec<_> = (0..8)
            .map(|i| {
                let request = client.get(&format!("{base}/{i}"));
                reactor.spawn(async move { request.await })
            })
            .collect();
        let mut paths = Vec::new();
        for request in requests {
            let response = request.await.expect("task").expect("GET");
            paths.push(response.text().unwrap().to_owned());
        }
        paths
    });
    let expected: Vec<String> = (0..8).map(|i| format!("/{i}")).collect();
    assert_eq!(paths, expected);
    assert!(
        most.load(Ordering::SeqCst) <= 2,
        "{} at once",
        most.load(Ordering::SeqCst)
    );
    // The first two take the two places; the others wait and reuse them.
    assert_eq!(connections.count(), 2);
}

#[test]
fn a_request_waiting_for_a_busy_pool_times_out_with_pool_timeout() {
    // A server that reads requests and never answers: the one connection
    // allowed stays busy.
    let server = RawServer::start(|_, mut stream| {
        if read_request(&mut stream).is_some() {
            hold_until_closed(stream);
        }
    });
    let url = server.url("/");
    let client = client()
        .max_connections_per_origin(1)
        .pool_timeout(Duration::from_millis(100))
        .build();
    let second = on_reactor(async move {
        let reactor = Handle::current().unwrap();
        let first = client.get(&url);
        let _first = reactor.spawn(async move { first.await });
        // The spawned request runs (and takes the place) in this tick;
        // the sleep ends in a later one.
        reactor.sleep(Duration::from_millis(1)).await;
        client.get(&url).await
    });
    match second {
        Err(ClientError::PoolTimeout { after }) => assert_eq!(after, Duration::from_millis(100)),
        other => panic!("expected PoolTimeout, got {other:?}"),
    }
    assert_eq!(server.accepted(), 1);
}

#[test]
fn an_idle_connection_expires_after_the_idle_timeout() {
    let (server, connections) = echo_server();
    let url = format!("http://{}/", server.addr);
    let client = client().idle_timeout(Duration::from_millis(50)).build();
    let server = &server;
    on_reactor(async move {
        client.get(&url).await.expect("GET");
        let reactor = Handle::current().unwrap();
        reactor.sleep(Duration::from_millis(300)).await;
        client.get(&url).await.expect("GET");
        // The second connection is closed by the pool's sweep once idle
        // for 50 ms, though no request comes to find it expired (and
        // while the client, its pool and this reactor are still there).
        reactor.sleep(Duration::from_millis(300)).await;
        assert!(
            server.wait_for_connections_at_most(0, SOCKET_DEADLINE),
            "the expired connection was not closed"
        );
        drop(client);
    });
    assert_eq!(connections.count(), 2);
}

#[test]
fn host_names_are_resolved() {
    let (server, _) = echo_server();
    let url = format!("http://localhost:{}/named", server.addr.port());
    let response = get(&client().build(), &url).expect("GET");
    assert_eq!(response.text(), Ok("GET /named "));
}

#[test]
fn a_request_sent_with_client_send_keeps_its_fields_and_body() {
    let (server, _) = echo_server();
    let request = Request::new("PUT", format!("http://{}/items/7", server.addr))
        .with_header("X-Extra", "1")
        .with_body("seven");
    let client = client().build();
    let response = on_reactor(async move { client.send(request).await }).expect("PUT");
    assert_eq!(response.text(), Ok("PUT /items/7 seven"));
}

#[test]
fn a_client_given_a_handle_serves_a_thread_outside_any_reactor() {
    let (server, connections) = echo_server();
    let url = format!("http://{}/from-a-thread", server.addr);
    // The client's reactor runs on a thread of its own; this thread
    // blocks on the requests' futures.
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let reactor_thread = std::thread::spawn(move || {
        let mut reactor = Reactor::new().expect("reactor");
        handle_tx.send(reactor.handle()).unwrap();
        reactor.run().expect("reactor runs");
    });
    let handle = handle_rx.recv().unwrap();
    let client = client().handle(handle.clone()).build();
    for _ in 0..2 {
        let response = futures::executor::block_on(client.get(&url).send()).expect("GET");
        assert_eq!(response.text(), Ok("GET /from-a-thread "));
    }
    assert_eq!(connections.count(), 1);
    handle.stop();
    reactor_thread.join().unwrap();
}

#[test]
fn the_public_types_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<Client>();
    send_sync::<ClientBuilder>();
    send_sync::<ClientResponse>();
    send_sync::<ClientError>();
    send_sync::<ResponseError>();
    send::<milieu::http::ClientRequest>();
    send::<milieu::http::ResponseFuture>();
}

// ------------------------------------------------ hooks, context, tracing

#[derive(Debug)]
struct Tag(&'static str);

#[test]
fn hooks_run_in_order_in_the_context_of_the_task_that_sends() {
    let server = HttpServer::start(HttpLimits::new(), |request: Request| {
        let values: Vec<String> = request
            .headers()
            .get_all("x-hook")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        Response::text(200, values.join(","))
    });
    let url = format!("http://{}/", server.addr);
    let client = client()
        .on_request(|headers| {
            let tag = milieu::with(|tag: &Tag| tag.0).unwrap_or("no tag");
            headers.append("X-Hook", format!("first:{tag}")).unwrap();
        })
        .on_request(|headers| {
            let span = tracing::Span::current();
            let name = span.metadata().map_or("no span", |meta| meta.name());
            headers.append("X-Hook", format!("second:{name}")).unwrap();
        })
        .build();
    let subscriber = tracing_subscriber::registry();
    let answers = tracing::subscriber::with_default(subscriber, || {
        on_reactor(async move {
            let reactor = Handle::current().unwrap();
            // Two tasks, each spawned in a context of its own.
            let tasks: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|tag| {
                    let (client, url) = (client.clone(), url.clone());
                    milieu::scope()
                        .with(Tag(tag))
                        .run(|| reactor.spawn(async move { client.get(&url).await }))
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                let response = task.await.expect("task").expect("GET");
                answers.push(response.text().unwrap().to_owned());
            }
            answers
        })
    });
    assert_eq!(
        answers,
        [
            "first:a,second:http_client_request",
            "first:b,second:http_client_request"
        ]
    );
}

/// What a [`SpanLog`] saw of one span or event.
#[derive(Clone, Debug, Default)]
struct Seen {
    name: String,
    target: String,
    level: String,
    /// The span's fields (with those recorded later), or the event's.
    fields: Vec<(String, String)>,
    /// For an event: the name of the span it happened in.
    parent: Option<String>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A `tracing` layer that keeps every span and event.
#[derive(Clone, Default)]
struct SpanLog {
    spans: Arc<Mutex<Vec<Seen>>>,
    events: Arc<Mutex<Vec<Seen>>>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

/// The index of a span in `SpanLog::spans`, kept in its extensions.
struct SpanIndex(usize);

impl<S> tracing_subscriber::Layer<S> for SpanLog
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = attrs.metadata();
        let mut seen = Seen {
            name: meta.name().to_owned(),
            target: meta.target().to_owned(),
            level: meta.level().to_string(),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(seen);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanIndex(spans.len() - 1));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            if let Some(SpanIndex(at)) = span.extensions().get::<SpanIndex>() {
                values.record(&mut Fields(&mut self.spans.lock().unwrap()[*at].fields));
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let mut seen = Seen {
            name: meta.name().to_owned(),
            target: meta.target().to_owned(),
            level: meta.level().to_string(),
            parent: ctx.event_span(event).map(|span| span.name().to_owned()),
            ..Seen::default()
        };
        event.record(&mut Fields(&mut seen.fields));
        self.events.lock().unwrap().push(seen);
    }
}

#[test]
fn each_request_has_a_debug_span_with_method_host_path_and_status() {
    use tracing_subscriber::layer::SubscriberExt;

    let (server, _) = echo_server();
    let url = format!("http://{}/traced?q=1", server.addr);
    let log = SpanLog::default();
    let subscriber = tracing_subscriber::registry().with(log.clone());
    let client = client().build();
    tracing::subscriber::with_default(subscriber, || {
        get(&client, &url).expect("GET");
    });
    let spans = log.spans.lock().unwrap().clone();
    let span = spans
        .iter()
        .find(|span| span.name == "http_client_request")
        .unwrap_or_else(|| panic!("no client span in {spans:?}"));
    assert_eq!(span.target, "milieu::http::client");
    assert_eq!(span.level, "DEBUG");
    assert_eq!(span.field("method"), Some("GET"));
    assert_eq!(span.field("host"), Some(server.addr.to_string().as_str()));
    assert_eq!(span.field("path"), Some("/traced"));
    assert_eq!(span.field("status"), Some("200"));
}

#[test]
fn the_request_future_runs_in_the_context_it_was_sent_from() {
    use tracing_subscriber::layer::SubscriberExt;

    // Nothing listens on a port just freed: the request fails inside its
    // future, which logs the failure to the log monitor of the context
    // the request was sent from, though it is awaited outside it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let log = SpanLog::default();
    let monitor = tracing_subscriber::registry().with(log.clone());
    let client = client().build();
    let result = on_reactor(async move {
        let sent = {
            let _monitor = milieu::provide_subscriber(monitor);
            client.get(&url).send()
        };
        sent.await
    });
    assert!(
        matches!(result, Err(ClientError::Connect { .. })),
        "{result:?}"
    );
    let events = log.events.lock().unwrap().clone();
    let failed = events
        .iter()
        .find(|event| event.field("message") == Some("request failed"))
        .unwrap_or_else(|| panic!("the failure was not logged to the monitor: {events:?}"));
    assert_eq!(failed.target, "milieu::http::client");
    assert_eq!(failed.parent.as_deref(), Some("http_client_request"));
    assert!(failed
        .field("error")
        .is_some_and(|e| e.contains("could not connect")));
}

#[test]
fn the_request_fails_without_a_reactor_or_with_a_bad_url() {
    let client = Client::new();
    let outside = futures::executor::block_on(client.get("http://127.0.0.1:1/").send());
    assert!(
        matches!(outside, Err(ClientError::NoReactor(_))),
        "{outside:?}"
    );
    assert!(matches!(
        get(&client, "https://127.0.0.1/"),
        Err(ClientError::UnsupportedScheme { scheme }) if scheme == "https"
    ));
    assert!(matches!(
        get(&client, "http://127.0.0.1/a b"),
        Err(ClientError::InvalidUrl { .. })
    ));
    let bad_header = client
        .get("http://127.0.0.1:1/")
        .header("X", "a\r\nInjected: yes");
    let bad_header = on_reactor(async move { bad_header.await });
    assert!(
        matches!(bad_header, Err(ClientError::InvalidHeader(_))),
        "{bad_header:?}"
    );
    let bad_method = client.request("GE T", "http://127.0.0.1:1/");
    let bad_method = on_reactor(async move { bad_method.await });
    assert!(
        matches!(bad_method, Err(ClientError::InvalidMethod { .. })),
        "{bad_method:?}"
    );
}

// ------------------------------------------------- against Python's server

/// Python's `http.server` (`ThreadingHTTPServer`, HTTP/1.1): a plain
/// response (its body names the client's port), a chunked one, and an
/// HTTP/1.0 one delimited by the close.
const PYTHON_SERVER: &str = r#"
import http.server, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def plain(self, with_body):
        body = ("plain for port %d" % self.client_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self):
        self.plain(False)

    def do_GET(self):
        if self.path == "/plain":
            self.plain(True)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello, ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            self.wfile.write(b"until the close " * 1000)
            self.close_connection = True
        else:
            self.send_error(404)

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = b"python got " + self.rfile.read(length)
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The Python server's process, killed when dropped (also when the test
/// fails).
struct PythonServer {
    child: Child,
    port: u16,
    _script: tempfile::NamedTempFile,
}

impl PythonServer {
    fn start() -> PythonServer {
        let mut script = tempfile::NamedTempFile::new().expect("temp file");
        script.write_all(PYTHON_SERVER.as_bytes()).unwrap();
        script.flush().unwrap();
        let child = Command::new("python3")
            .arg(script.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        // From here the guard kills the server whatever happens.
        let mut server = PythonServer {
            child,
            port: 0,
            _script: script,
        };
        let stdout = server.child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server prints its port");
        server.port = line.trim().parse().expect("a port number");
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_python_server_plain_chunked_and_close_delimited() {
    let python = PythonServer::start();
    let client = client().build();
    let urls = ["/plain", "/plain", "/chunked", "/close", "/plain"].map(|path| python.url(path));
    let (head_url, post_url) = (python.url("/plain"), python.url("/post"));
    let (responses, head, post) = on_reactor(async move {
        let mut responses = Vec::new();
        for url in &urls {
            responses.push(client.get(url).await.expect("GET"));
        }
        let head = client.head(&head_url).await.expect("HEAD");
        let post = client
            .post(&post_url)
            .body("a pot of tea")
            .await
            .expect("POST");
        (responses, head, post)
    });
    let texts: Vec<&str> = responses.iter().map(|r| r.text().unwrap()).collect();
    // Kept alive between the first two.
    assert!(texts[0].starts_with("plain for port "), "{}", texts[0]);
    assert_eq!(texts[0], texts[1], "the connection was not reused");
    assert_eq!(texts[2], "hello, chunked world");
    assert_eq!(responses[2].header("transfer-encoding"), Some("chunked"));
    assert_eq!(responses[3].version(), 0);
    assert_eq!(texts[3], "until the close ".repeat(1000));
    assert!(texts[4].starts_with("plain for port "));
    assert_eq!(head.status(), 200);
    assert!(head.body().is_empty());
    assert_eq!(
        (post.status(), post.text()),
        (201, Ok("python got a pot of tea"))
    );
}

// ------------------------------------------------ hostile and broken servers

#[test]
fn conflicting_content_lengths_are_refused() {
    let server =
        replying(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..]);
    let error = refused(get(&client().build(), &server.url("/")));
    assert_eq!(error, ResponseError::ConflictingContentLength);

    let server = replying(&b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc"[..]);
    let error = refused(get(&client().build(), &server.url("/")));
    assert_eq!(error, ResponseError::InvalidContentLength);
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let server = replying(
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
    );
    let error = refused(get(&client().build(), &server.url("/")));
    assert_eq!(error, ResponseError::ContentLengthWithTransferEncoding);

    let server =
        replying(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"[..]);
    let error = refused(get(&client().build(), &server.url("/")));
    assert_eq!(error, ResponseError::UnsupportedTransferEncoding);
}

#[test]
fn a_bad_chunk_size_is_refused() {
    let server = replying(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"[..],
    );
    let error = refused(get(&client().build(), &server.url("/")));
    assert!(
        matches!(error, ResponseError::InvalidChunk { .. }),
        "{error:?}"
    );
}

#[test]
fn a_header_section_over_the_limit_is_refused() {
    let filler =
        "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(40);
    let complete = format!("HTTP/1.1 200 OK\r\n{filler}Content-Length: 0\r\n\r\n");
    let client = client().max_header_bytes(1024).build();
    let error = refused(get(&client, &replying(complete).url("/")));
    assert_eq!(error, ResponseError::HeaderSectionTooLarge { max: 1024 });

    // A header section that does not end: refused once past the limit,
    // not buffered until the server stops (64 KiB of it, then a close:
    // without the limit, the close would end it first).
    let endless = RawServer::start(|_, mut stream| {
        if read_request(&mut stream).is_some() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
            let line = b"X-More: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            let _ = stream.write_all(&line.repeat(1024));
        }
    });
    let error = refused(get(&client, &endless.url("/")));
    assert_eq!(error, ResponseError::HeaderSectionTooLarge { max: 1024 });

    let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: 1\r\n".repeat(11));
    let client = Client::builder().max_headers(10).build();
    let error = refused(get(&client, &replying(many).url("/")));
    assert_eq!(error, ResponseError::TooManyHeaders { max: 10 });
}

#[test]
fn a_body_over_the_limit_is_refused_however_it_is_framed() {
    let client = client().max_body(1000).build();
    let by_length = replying(&b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"[..]);
    let error = refused(get(&client, &by_length.url("/")));
    assert_eq!(error, ResponseError::BodyTooLarge { max: 1000 });

    let chunk = format!("320\r\n{}\r\n", "c".repeat(800));
    let chunked =
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n");
    let error = refused(get(&client, &replying(chunked).url("/")));
    assert_eq!(error, ResponseError::BodyTooLarge { max: 1000 });

    // Delimited by the close: refused as soon as the body passes the
    // limit, not once the server closes (after 64 KiB here).
    let endless = RawServer::start(|_, mut stream| {
        if read_request(&mut stream).is_some() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let _ = stream.write_all(&[b'x'; 64 * 1024]);
        }
    });
    let error = refused(get(&client, &endless.url("/")));
    assert_eq!(error, ResponseError::BodyTooLarge { max: 1000 });

    // At the limit exactly: taken.
    let at_limit = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{}",
        "y".repeat(1000)
    );
    let response = get(&client, &replying(at_limit).url("/")).expect("GET");
    assert_eq!(response.body().len(), 1000);
}

#[test]
fn a_server_that_closes_mid_response_is_an_incomplete_response() {
    for cut in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ] {
        let server = RawServer::start(move |_, mut stream| {
            if read_request(&mut stream).is_some() {
                let _ = stream.write_all(cut);
            }
        });
        let result = get(&client().build(), &server.url("/"));
        assert!(
            matches!(result, Err(ClientError::IncompleteResponse)),
            "{:?}: {result:?}",
            String::from_utf8_lossy(cut)
        );
    }
}

#[test]
fn a_length_past_memory_with_no_body_limit_is_an_error_not_a_panic() {
    // `max_body(usize::MAX)` says "no limit": a hostile length near
    // `usize::MAX` must not overflow the reader's arithmetic.
    let client = client().max_body(usize::MAX).build();
    for length in [u64::MAX, u64::MAX - 10, u64::MAX / 2] {
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nabc");
        let server = RawServer::start(move |_, mut stream| {
            if read_request(&mut stream).is_some() {
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        let result = get(&client, &server.url("/"));
        assert!(
            matches!(result, Err(ClientError::IncompleteResponse)),
            "{length}: {result:?}"
        );
    }
}

#[test]
fn a_server_that_never_answers_is_a_read_timeout() {
    let server = RawServer::start(|_, mut stream| {
        if read_request(&mut stream).is_some() {
            hold_until_closed(stream);
        }
    });
    let client = client().read_timeout(Duration::from_millis(100)).build();
    match get(&client, &server.url("/")) {
        Err(ClientError::ReadTimeout { after }) => assert_eq!(after, Duration::from_millis(100)),
        other => panic!("expected ReadTimeout, got {other:?}"),
    }
}

#[test]
fn a_server_that_does_not_read_is_a_write_timeout() {
    // A small receive buffer (the kernel doubles it; accepted sockets
    // inherit it), and a body far larger than it and the client's send
    // buffer together: the request cannot be handed to the OS whole.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(16).unwrap();
    let server = RawServer::on(socket.into(), |_, stream| {
        // Holds the connection, reading nothing.
        std::thread::sleep(SOCKET_DEADLINE);
        drop(stream);
    });
    let client = client().write_timeout(Duration::from_millis(200)).build();
    let upload = client
        .post(&server.url("/upload"))
        .body(vec![b'u'; 32 * 1024 * 1024]);
    match on_reactor(async move { upload.await }) {
        Err(ClientError::WriteTimeout { after }) => assert_eq!(after, Duration::from_millis(200)),
        other => panic!("expected WriteTimeout, got {other:?}"),
    }
}

#[test]
fn a_listener_that_does_not_accept_is_a_connect_timeout() {
    // A backlog of 0 holds one connection not yet accepted; with it
    // taken, Linux drops the SYNs of the next, which waits.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr: SocketAddr = socket.local_addr().unwrap().as_socket().unwrap();
    let _queued = TcpStream::connect_timeout(&addr, SOCKET_DEADLINE).expect("the first connects");
    let client = client().connect_timeout(Duration::from_millis(200)).build();
    match get(&client, &format!("http://{addr}/")) {
        Err(ClientError::ConnectTimeout { after }) => assert_eq!(after, Duration::from_millis(200)),
        other => panic!("expected ConnectTimeout, got {other:?}"),
    }
    drop(socket);
}

#[test]
fn interim_responses_are_skipped() {
    let server = replying(
        &b"HTTP/1.1 100 Continue\r\n\r\n\
           HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
           HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
    );
    let response = get(&client().build(), &server.url("/")).expect("GET");
    assert_eq!((response.status(), response.text()), (200, Ok("ok")));
    assert_eq!(
        response.header("link"),
        None,
        "the fields of the final response only"
    );

    let upgrade = replying(&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"[..]);
    let error = refused(get(&client().build(), &upgrade.url("/")));
    assert!(
        matches!(error, ResponseError::Malformed { .. }),
        "{error:?}"
    );

    let endless = replying("HTTP/1.1 100 Continue\r\n\r\n".repeat(17));
    let error = refused(get(&client().build(), &endless.url("/")));
    assert_eq!(error, ResponseError::TooManyInterimResponses { max: 16 });
}

/// The requests a raw server received: each with the number of its
/// connection.
type RequestLog = Arc<Mutex<Vec<(usize, String)>>>;

/// A server whose first connection answers its first request, then reads
/// the second and closes without answering (`with_reset`: with a reset),
/// as a server does that closes an idle connection while a request is on
/// its way; later connections answer `fresh` (or close too, with
/// `always_close`). Every request received goes to the log, with the
/// number of its connection.
fn stale_server(with_reset: bool, always_close: bool) -> (RawServer, RequestLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    let server = RawServer::start(move |n, mut stream| {
        let mut served = 0;
        while let Some(request) = read_request(&mut stream) {
            seen.lock().unwrap().push((n, request));
            served += 1;
            if (n == 0 && served == 2) || (n > 0 && always_close) {
                if with_reset {
                    reset(stream);
                }
                return;
            }
            let body = if n == 0 { "first" } else { "fresh" };
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    (server, log)
}

#[test]
fn a_stale_pooled_connection_is_retried_once_for_get() {
    for with_reset in [false, true] {
        let (server, log) = stale_server(with_reset, false);
        let url = server.url("/x");
        let client = client().build();
        let (first, second) = on_reactor(async move {
            let first = client.get(&url).await.expect("first GET");
            (first, client.get(&url).await)
        });
        assert_eq!(first.text(), Ok("first"));
        let second = second.unwrap_or_else(|e| panic!("reset {with_reset}: {e}"));
        assert_eq!(second.text(), Ok("fresh"), "retried on a new connection");
        let connections: Vec<usize> = log.lock().unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(connections, [0, 0, 1], "reset {with_reset}");
    }
}

#[test]
fn a_retry_is_made_once_only() {
    let (server, log) = stale_server(false, true);
    let url = server.url("/x");
    let client = client().build();
    let second = on_reactor(async move {
        client.get(&url).await.expect("first GET");
        client.get(&url).await
    });
    // The retry's connection was new: its close is not retried again.
    assert!(
        matches!(
            second,
            Err(ClientError::ClosedBeforeResponse { reused: false })
        ),
        "{second:?}"
    );
    let connections: Vec<usize> = log.lock().unwrap().iter().map(|(n, _)| *n).collect();
    assert_eq!(connections, [0, 0, 1]);
}

#[test]
fn the_retry_goes_to_a_new_connection_not_another_pooled_one() {
    // Two connections in the pool, both of which the server closes on
    // their next request.
    let log: RequestLog = Arc::default();
    let seen = Arc::clone(&log);
    let server = RawServer::start(move |n, mut stream| {
        let mut served = 0;
        while let Some(request) = read_request(&mut stream) {
            seen.lock().unwrap().push((n, request));
            served += 1;
            if n < 2 && served == 2 {
                return;
            }
            let body = if n < 2 { "first" } else { "fresh" };
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{body}");
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    let url = server.url("/");
    let client = client().build();
    let retried = on_reactor(async move {
        let reactor = Handle::current().unwrap();
        let both: Vec<_> = (0..2)
            .map(|_| {
                let request = client.get(&url);
                reactor.spawn(async move { request.await })
            })
            .collect();
        for request in both {
            request.await.expect("task").expect("GET");
        }
        client.get(&url).await
    });
    assert_eq!(retried.expect("GET").text(), Ok("fresh"));
    let mut connections: Vec<usize> = log.lock().unwrap().iter().map(|(n, _)| *n).collect();
    connections.sort_unstable();
    // One of the two pooled connections was tried (which one is the
    // pool's choice), then a new one.
    assert!(
        connections == [0, 0, 1, 2] || connections == [0, 1, 1, 2],
        "{connections:?}"
    );
}

#[test]
fn a_post_is_never_sent_twice() {
    for with_reset in [false, true] {
        let (server, log) = stale_server(with_reset, false);
        let url = server.url("/orders");
        let client = client().build();
        let post = on_reactor(async move {
            client.get(&url).await.expect("GET");
            client.post(&url).body("one order").await
        });
        assert!(
            matches!(
                post,
                Err(ClientError::ClosedBeforeResponse { reused: true })
            ),
            "reset {with_reset}: {post:?}"
        );
        // The server got it, once, on the pooled connection.
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[1].0, 0);
        assert!(
            log[1].1.starts_with("POST /orders HTTP/1.1\r\n"),
            "{}",
            log[1].1
        );
        assert!(
            log[1].1.ends_with("\r\nContent-Length: 9\r\n\r\none order"),
            "{}",
            log[1].1
        );
        assert_eq!(server.accepted(), 1);
    }
}

#[test]
fn a_pooled_connection_the_server_closed_is_not_used() {
    // The server closes its first connection (without saying so) once
    // told to, after the client put it in the pool: by the next request
    // the client has seen the close, and opens a new connection, so even
    // a POST goes through.
    let (close_first, closing) = std::sync::mpsc::channel::<()>();
    let closing = Mutex::new(closing);
    let server = RawServer::start(move |n, mut stream| {
        while read_request(&mut stream).is_some() {
            let body = format!("connection {n}");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
            if n == 0 {
                let _ = closing.lock().unwrap().recv_timeout(SOCKET_DEADLINE);
                return;
            }
        }
    });
    let url = server.url("/");
    let client = client().build();
    let (first, post) = on_reactor(async move {
        let first = client.get(&url).await.expect("GET");
        close_first.send(()).unwrap();
        // The close arrives in a tick or two.
        let reactor = Handle::current().unwrap();
        reactor.sleep(Duration::from_millis(100)).await;
        (first, client.post(&url).body("order").await)
    });
    assert_eq!(first.text(), Ok("connection 0"));
    assert_eq!(post.expect("POST").text(), Ok("connection 1"));
}
