//! The reactor's I/O layers: transport, protocol, application, over real
//! loopback sockets and over the memory transports of `reactor::testing`.
//!
//! Every wait is bounded: futures run under `Handle::timeout`, tick loops
//! under a wall-clock deadline, socket reads under a read timeout. A test
//! that would hang fails instead.

mod common;

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{connect, poll_once, read_exactly, read_to_end, Capture};
use milieu::reactor::testing::{MemoryStream, Pair};
use milieu::reactor::{
    serve, Clock, CloseReason, ConnectionInfo, Handle, Limits, LineError, LineProtocol, Listener,
    Protocol, Reactor, Reply, TickStats, TransportEvent, VirtualClock,
};

// ---------------------------------------------------------------- helpers

/// Anything longer is a hang.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `fut` on the reactor, failing the test if it takes longer than
/// [`DEADLINE`].
#[track_caller]
fn run<F: Future>(reactor: &mut Reactor, fut: F) -> F::Output {
    let handle = reactor.handle();
    reactor
        .run_until(handle.timeout(DEADLINE, fut))
        .expect("readiness poll")
        .expect("the test's future did not finish in time")
}

/// Tick counts summed over several ticks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    accepted: usize,
    connected: usize,
    closed: usize,
    requests: usize,
    bytes_read: usize,
    bytes_written: usize,
    panics: usize,
}

impl Totals {
    fn merge(&mut self, o: Totals) {
        self.accepted += o.accepted;
        self.connected += o.connected;
        self.closed += o.closed;
        self.requests += o.requests;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.panics += o.panics;
    }

    fn add(&mut self, s: &TickStats) {
        self.accepted += s.accepted;
        self.connected += s.connected;
        self.closed += s.closed;
        self.requests += s.requests;
        self.bytes_read += s.bytes_read;
        self.bytes_written += s.bytes_written;
        self.panics += s.panics;
    }
}

/// Ticks until `done` (checked between ticks), failing after [`DEADLINE`].
#[track_caller]
fn tick_until(reactor: &mut Reactor, mut done: impl FnMut(&Reactor) -> bool) -> Totals {
    let deadline = Instant::now() + DEADLINE;
    let mut totals = Totals::default();
    while !done(reactor) {
        assert!(Instant::now() < deadline, "timed out; so far: {totals:?}");
        let stats = reactor.tick(Some(Duration::from_millis(5))).unwrap();
        totals.add(&stats);
    }
    totals
}

/// Ticks while a client thread runs; returns its result and the totals.
#[track_caller]
fn serve_client<T: Send + 'static>(
    reactor: &mut Reactor,
    client: impl FnOnce() -> T + Send + 'static,
) -> (T, Totals) {
    let thread: JoinHandle<T> = std::thread::spawn(client);
    let totals = tick_until(reactor, |_| thread.is_finished());
    match thread.join() {
        Ok(value) => (value, totals),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn echo(line: String) -> String {
    line
}

/// What an [`Observed`] protocol was told.
#[derive(Debug, Clone)]
enum Seen {
    Paused,
    Resumed,
    ReadClosed,
    Closed(CloseReason),
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().unwrap().clone()
}

fn closed_with(log: &Log) -> Option<CloseReason> {
    seen(log).into_iter().find_map(|s| match s {
        Seen::Closed(reason) => Some(reason),
        _ => None,
    })
}

/// The line protocol, recording its transport events and optionally
/// answering handler panics.
struct Observed {
    lines: LineProtocol,
    log: Log,
    panic_answer: Option<String>,
}

impl Observed {
    fn new(lines: LineProtocol, log: &Log) -> Observed {
        Observed {
            lines,
            log: Arc::clone(log),
            panic_answer: None,
        }
    }
}

impl Protocol for Observed {
    type Request = String;
    type Response = String;
    type Error = LineError;

    fn decode(&mut self, input: &[u8]) -> Result<Option<(String, usize)>, LineError> {
        self.lines.decode(input)
    }

    fn decode_eof(&mut self, input: &[u8]) -> Result<Option<(String, usize)>, LineError> {
        self.lines.decode_eof(input)
    }

    fn encode(&mut self, response: String, output: &mut Vec<u8>) {
        self.lines.encode(response, output);
    }

    fn panic_response(&mut self) -> Option<String> {
        self.panic_answer.clone()
    }

    fn event(&mut self, event: &TransportEvent<'_>) {
        let seen = match event {
            TransportEvent::Paused { .. } => Seen::Paused,
            TransportEvent::Resumed => Seen::Resumed,
            TransportEvent::ReadClosed => Seen::ReadClosed,
            TransportEvent::Closed(reason) => Seen::Closed((*reason).clone()),
            other => panic!("unexpected event {other:?}"),
        };
        self.log.lock().unwrap().push(seen);
    }
}

fn virtual_reactor() -> Reactor {
    Reactor::builder()
        .clock(Clock::Virtual(VirtualClock::new()))
        .build()
        .unwrap()
}

// ------------------------------------------------- loopback, end to end

#[test]
fn lines_echo_over_loopback_between_a_listener_and_a_client_connection() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let listener = handle
        .listen_tcp("127.0.0.1:0", || {
            serve(LineProtocol::new(), |l: String| format!("<{l}>"))
        })
        .unwrap();
    assert_ne!(
        listener.local_addr().port(),
        0,
        "the bound port is known at once"
    );
    let replies = run(&mut reactor, async move {
        let conn = handle.connect_tcp(listener.local_addr()).await?;
        conn.write_line("one")?;
        conn.write(b"two\r\nthr")?;
        conn.write(b"ee\n")?;
        let mut replies = Vec::new();
        for _ in 0..3 {
            replies.push(conn.read_line().await?);
        }
        io::Result::Ok(replies)
    })
    .unwrap();
    assert_eq!(
        replies,
        [
            Some("<one>".into()),
            Some("<two>".into()),
            Some("<three>".into())
        ]
    );
}

#[test]
fn tick_stats_count_the_io() {
    let mut reactor = Reactor::new().unwrap();
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", || serve(LineProtocol::new(), echo))
        .unwrap();
    let addr = listener.local_addr();
    let (reply, mut totals) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"hello\n").unwrap();
        let reply = read_exactly(&mut stream, 6);
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let rest = read_to_end(&mut stream);
        (reply, rest)
    });
    assert_eq!(reply, (b"hello\n".to_vec(), Vec::new()));
    totals.merge(tick_until(&mut reactor, |r| r.connections() == 0));
    assert_eq!(
        totals,
        Totals {
            accepted: 1,
            connected: 0,
            closed: 1,
            requests: 1,
            bytes_read: 6,
            bytes_written: 6,
            panics: 0,
        }
    );
}

#[test]
fn async_handlers_answer_pipelined_requests_in_request_order() {
    let mut reactor = Reactor::new().unwrap();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let order = Arc::clone(&finished);
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", move || {
            let order = Arc::clone(&order);
            serve(LineProtocol::new(), move |line: String| {
                let order = Arc::clone(&order);
                async move {
                    let delay: u64 = line.parse().unwrap();
                    let reactor = Handle::current().unwrap();
                    reactor.sleep(Duration::from_millis(delay * 10)).await;
                    order.lock().unwrap().push(line.clone());
                    line
                }
            })
        })
        .unwrap();
    let addr = listener.local_addr();
    let (replies, _) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"4\n3\n2\n1\n0\n").unwrap();
        read_exactly(&mut stream, 10)
    });
    assert_eq!(replies, b"4\n3\n2\n1\n0\n", "sent in request order");
    assert_eq!(
        *finished.lock().unwrap(),
        ["0", "1", "2", "3", "4"],
        "though they finished in the opposite order"
    );
}

#[test]
fn a_handler_may_answer_now_or_later_per_request() {
    let mut pair = Pair::new(|| {
        serve(LineProtocol::new(), |line: String| -> Reply<String> {
            match line.strip_prefix("later ") {
                Some(rest) => {
                    let rest = rest.to_owned();
                    Reply::later(async move {
                        let reactor = Handle::current().unwrap();
                        reactor.sleep(Duration::from_secs(1)).await;
                        rest
                    })
                }
                None => Reply::Now(line),
            }
        })
    })
    .unwrap();
    assert_eq!(
        pair.exchange(b"now\nlater x\nnow again\n").unwrap(),
        b"now\n"
    );
    pair.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(pair.receive(), b"x\nnow again\n");
}

#[test]
fn listen_tcp_returns_bind_errors_at_once() {
    let reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let first = handle
        .listen_tcp("127.0.0.1:0", || serve(LineProtocol::new(), echo))
        .unwrap();
    let err = handle
        .listen_tcp(first.local_addr(), || serve(LineProtocol::new(), echo))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(
        err.to_string().contains(&first.local_addr().to_string()),
        "the message names the address: {err}"
    );
    let err = handle
        .listen_tcp("not an address", || serve(LineProtocol::new(), echo))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_refused_connect_is_an_error_not_a_panic() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = run(&mut reactor, handle.connect_tcp(addr)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(reactor.connections(), 0);
}

#[test]
fn a_closed_listener_accepts_no_more() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let listener = handle
        .listen_tcp("127.0.0.1:0", || serve(LineProtocol::new(), echo))
        .unwrap();
    let addr = listener.local_addr();
    let conn = run(&mut reactor, async {
        let conn = handle.connect_tcp(addr).await?;
        // Accepted and served once.
        conn.write_line("first")?;
        conn.read_line().await?;
        io::Result::Ok(conn)
    })
    .unwrap();
    listener.close();
    reactor.tick(Some(Duration::ZERO)).unwrap();
    let err = run(&mut reactor, handle.connect_tcp(addr)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    // The connection accepted before goes on.
    let reply = run(&mut reactor, async {
        conn.write_line("still here")?;
        conn.read_line().await
    })
    .unwrap();
    assert_eq!(reply.as_deref(), Some("still here"));
}

#[test]
fn many_connections_are_served_concurrently_and_removed_when_done() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let listener = handle
        .listen_tcp("127.0.0.1:0", || {
            serve(LineProtocol::new(), |l: String| l.to_uppercase())
        })
        .unwrap();
    let addr = listener.local_addr();
    let replies = run(&mut reactor, async move {
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let handle = Handle::current().unwrap();
                let spawner = handle.clone();
                spawner.spawn(async move {
                    let conn = handle.connect_tcp(addr).await?;
                    conn.write_line(&format!("client {i}"))?;
                    conn.read_line().await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for task in tasks {
            replies.push(task.await.expect("task").expect("exchange"));
        }
        replies
    });
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.as_deref(), Some(format!("CLIENT {i}").as_str()));
    }
    // The client connections were dropped: both sides go away.
    tick_until(&mut reactor, |r| r.connections() == 0);
}

// ------------------------------------------------------- bad input

#[test]
fn a_line_longer_than_the_limit_closes_the_connection_cleanly() {
    let mut reactor = Reactor::new().unwrap();
    let log: Log = Log::default();
    let events = Arc::clone(&log);
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", move || {
            serve(
                Observed::new(LineProtocol::with_max_line(16), &events),
                echo,
            )
        })
        .unwrap();
    let addr = listener.local_addr();
    let (got, totals) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"ok\n").unwrap();
        stream.write_all(&[b'x'; 1000]).unwrap();
        stream.write_all(b"\nnever answered\n").unwrap();
        // Answers owed before the bad line, then a clean end of stream
        // (not a reset, though our input was not all read).
        read_to_end(&mut stream)
    });
    assert_eq!(got, b"ok\n");
    assert_eq!(totals.panics, 0);
    tick_until(&mut reactor, |r| r.connections() == 0);
    match closed_with(&log) {
        Some(CloseReason::Protocol(e)) => {
            assert_eq!(
                e.downcast_ref::<LineError>(),
                Some(&LineError::TooLong { max: 16 })
            );
        }
        other => panic!("closed with {other:?}"),
    }
    // The reactor goes on.
    let (got, _) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"next\n").unwrap();
        read_exactly(&mut stream, 5)
    });
    assert_eq!(got, b"next\n");
}

#[test]
fn a_request_that_never_completes_is_cut_at_max_input() {
    /// Waits for a `!` that never comes.
    struct Bang;
    impl Protocol for Bang {
        type Request = ();
        type Response = ();
        type Error = std::convert::Infallible;
        fn decode(&mut self, input: &[u8]) -> Result<Option<((), usize)>, Self::Error> {
            Ok(input.iter().position(|&b| b == b'!').map(|i| ((), i + 1)))
        }
        fn encode(&mut self, (): (), output: &mut Vec<u8>) {
            output.push(b'.');
        }
        fn event(&mut self, event: &TransportEvent<'_>) {
            if let TransportEvent::Closed(reason) = event {
                assert!(
                    matches!(reason, CloseReason::InputTooLarge { limit: 1024 }),
                    "{reason:?}"
                );
                CLOSED.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    static CLOSED: AtomicUsize = AtomicUsize::new(0);

    let mut pair =
        Pair::new(|| serve(Bang, |(): ()| ()).with_limits(Limits::new().with_max_input(1024)))
            .unwrap();
    assert_eq!(pair.exchange(b"ab!").unwrap(), b".");
    pair.send(&[b'z'; 1000]).unwrap();
    pair.pump().unwrap();
    assert!(
        !pair.server_closed(),
        "1000 bytes may still become a request"
    );
    pair.send(&[b'z'; 100]).unwrap();
    pair.pump().unwrap();
    assert!(pair.server_closed());
    // The server waits for our end of stream (so we get its last bytes
    // rather than a reset), then is gone.
    assert_eq!(CLOSED.load(Ordering::SeqCst), 0);
    pair.client().shutdown_write();
    pair.pump().unwrap();
    assert_eq!(CLOSED.load(Ordering::SeqCst), 1);
    assert_eq!(pair.reactor().connections(), 0);
}

#[test]
fn a_client_reading_a_line_too_long_gets_a_typed_error() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let listener = handle
        .listen_tcp("127.0.0.1:0", || {
            serve(LineProtocol::new(), |_: String| "y".repeat(20_000))
        })
        .unwrap();
    let err = run(&mut reactor, async move {
        let conn = handle.connect_tcp(listener.local_addr()).await?;
        conn.write_line("go")?;
        conn.read_line().await
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let line_error = err.get_ref().and_then(|e| e.downcast_ref::<LineError>());
    assert_eq!(
        line_error,
        Some(&LineError::TooLong {
            max: LineProtocol::DEFAULT_MAX_LINE
        })
    );
}

// ------------------------------------------------------- panics

struct Marker;

#[test]
fn a_panicking_handler_is_logged_with_the_connection_and_its_connection_closed() {
    let capture = Capture::new();
    let _monitor = milieu::provide_subscriber(capture.clone());
    let _marker = milieu::provide(Marker);
    let mut reactor = Reactor::new().unwrap();
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", || {
            serve(LineProtocol::new(), |line: String| {
                assert!(line != "boom", "the handler blew up");
                line
            })
        })
        .unwrap();
    let addr = listener.local_addr();
    let before = milieu::dump();
    let (got, totals) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"a\nboom\nb\n").unwrap();
        read_to_end(&mut stream)
    });
    assert_eq!(
        got, b"a\n",
        "the answer owed before the panic, then the close"
    );
    assert_eq!(totals.panics, 1);
    // The context stack of this thread is as it was.
    assert_eq!(milieu::dump(), before);
    assert!(milieu::contains::<Marker>() && !milieu::contains::<ConnectionInfo>());

    let event = capture
        .events()
        .into_iter()
        .find(|e| e.message == "a handler panicked; the reactor goes on")
        .expect("the panic was logged");
    assert_eq!(event.field("panic"), Some("the handler blew up"));
    let context = event.field("context").unwrap();
    assert!(context.contains("ConnectionInfo"), "{context}");
    assert!(context.contains("the connection being served"), "{context}");

    // The reactor goes on.
    let (got, totals) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"c\n").unwrap();
        read_exactly(&mut stream, 2)
    });
    assert_eq!((got.as_slice(), totals.panics), (&b"c\n"[..], 0));
}

#[test]
fn a_panicking_async_handler_closes_its_connection_in_order() {
    let capture = Capture::new();
    let reactor = capture_reactor(&capture);
    let mut pair = Pair::with_reactor(reactor, 4096, || {
        serve(LineProtocol::new(), |line: String| async move {
            assert!(line != "boom", "the async handler blew up");
            line
        })
    })
    .unwrap();
    pair.send(b"a\nboom\nb\n").unwrap();
    let mut panics = 0;
    for _ in 0..10 {
        panics += pair.tick().unwrap().panics;
    }
    assert_eq!(pair.receive(), b"a\n");
    assert!(pair.server_closed());
    assert_eq!(panics, 1);
    assert!(capture
        .messages()
        .iter()
        .any(|m| m == "a handler panicked; the reactor goes on"));
}

fn capture_reactor(capture: &Capture) -> Reactor {
    let _monitor = milieu::provide_subscriber(capture.clone());
    virtual_reactor()
}

#[test]
fn the_protocol_may_answer_a_panic_instead_of_closing() {
    let log: Log = Log::default();
    let events = Arc::clone(&log);
    let mut pair = Pair::new(move || {
        let mut protocol = Observed::new(LineProtocol::new(), &events);
        protocol.panic_answer = Some("ERR internal".into());
        serve(protocol, |line: String| {
            assert!(line != "boom");
            line
        })
    })
    .unwrap();
    assert_eq!(
        pair.exchange(b"a\nboom\nb\n").unwrap(),
        b"a\nERR internal\nb\n"
    );
    assert!(!pair.server_closed());
    assert!(closed_with(&log).is_none());
}

#[test]
fn a_panicking_protocol_aborts_only_its_connection() {
    struct Fragile;
    impl Protocol for Fragile {
        type Request = u8;
        type Response = u8;
        type Error = std::convert::Infallible;
        fn decode(&mut self, input: &[u8]) -> Result<Option<(u8, usize)>, Self::Error> {
            assert!(input[0] != b'!', "the protocol blew up");
            Ok(Some((input[0], 1)))
        }
        fn encode(&mut self, response: u8, output: &mut Vec<u8>) {
            output.push(response);
        }
    }
    let mut pair = Pair::new(|| serve(Fragile, |b: u8| b.to_ascii_uppercase())).unwrap();
    pair.send(b"ab!c").unwrap();
    let mut panics = 0;
    for _ in 0..5 {
        panics += pair.tick().unwrap().panics;
    }
    assert_eq!(panics, 1);
    assert!(pair.server_closed(), "aborted at once");
    assert_eq!(pair.reactor().connections(), 0);
    // Another connection on the same reactor still works.
    let handle = pair.reactor().handle();
    let (client, server) = MemoryStream::pair(64);
    handle
        .serve_memory(server, || serve(Fragile, |b: u8| b.to_ascii_uppercase()))
        .unwrap();
    (&client).write_all(b"xy").unwrap();
    pair.pump().unwrap();
    assert_eq!(client.read_available(), b"XY");
}

// ------------------------------------------------------- backpressure

#[test]
fn write_backpressure_stops_reading_until_the_peer_reads() {
    const REQUESTS: usize = 100;
    const RESPONSE: usize = 512;
    let log: Log = Log::default();
    let events = Arc::clone(&log);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let info: Arc<Mutex<Option<ConnectionInfo>>> = Arc::default();
    let info_slot = Arc::clone(&info);
    let mut pair = Pair::with_reactor(virtual_reactor(), 1024, move || {
        serve(
            Observed::new(LineProtocol::new(), &events),
            move |line: String| {
                counter.fetch_add(1, Ordering::SeqCst);
                *info_slot.lock().unwrap() = Some(ConnectionInfo::current().unwrap());
                // A numbered response of RESPONSE bytes, line end included.
                format!("{line:0>width$}", width = RESPONSE - 1)
            },
        )
        .with_limits(Limits::new().with_water_marks(256, 1024))
    })
    .unwrap();
    let requests: String = (0..REQUESTS).map(|i| format!("{i}\n")).collect();
    pair.send(requests.as_bytes()).unwrap();
    pair.pump().unwrap();

    // The client reads nothing: the pipe (1 KiB) and the server's output
    // fill up, and the server stops decoding.
    let stalled = calls.load(Ordering::SeqCst);
    assert!(stalled < REQUESTS, "{stalled} requests handled");
    assert!(
        matches!(seen(&log).as_slice(), [Seen::Paused]),
        "{:?}",
        seen(&log)
    );
    let conn = info.lock().unwrap().clone().unwrap();
    assert!(conn.is_paused());
    pair.pump().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), stalled, "still stalled");

    // The client reads: everything arrives, in order.
    let mut received = Vec::new();
    for _ in 0..10_000 {
        if received.len() == REQUESTS * RESPONSE {
            break;
        }
        received.extend(pair.receive());
        pair.pump().unwrap();
    }
    assert_eq!(received.len(), REQUESTS * RESPONSE);
    for (i, response) in received.chunks(RESPONSE).enumerate() {
        let text = std::str::from_utf8(response).unwrap();
        assert_eq!(text.trim_end().parse::<usize>().unwrap(), i);
    }
    let log = seen(&log);
    assert!(log.iter().any(|s| matches!(s, Seen::Resumed)), "{log:?}");
    assert!(!conn.is_paused());
}

#[test]
fn requests_in_flight_are_bounded_too() {
    let log: Log = Log::default();
    let events = Arc::clone(&log);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut pair = Pair::new(move || {
        serve(
            Observed::new(LineProtocol::new(), &events),
            move |line: String| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let reactor = Handle::current().unwrap();
                    reactor.sleep(Duration::from_secs(1)).await;
                    line
                }
            },
        )
        .with_limits(Limits::new().with_max_in_flight(2))
    })
    .unwrap();
    assert_eq!(pair.exchange(b"a\nb\nc\nd\ne\n").unwrap(), b"");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "two in flight, the rest wait"
    );
    assert!(matches!(seen(&log).as_slice(), [Seen::Paused]));
    let mut received = Vec::new();
    for _ in 0..3 {
        pair.advance(Duration::from_secs(1)).unwrap();
        received.extend(pair.receive());
    }
    assert_eq!(received, b"a\nb\nc\nd\ne\n");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[test]
fn write_backpressure_over_tcp_stalls_a_peer_that_does_not_read() {
    const REQUESTS: usize = 256;
    const RESPONSE: usize = 64 * 1024;
    let mut reactor = Reactor::new().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let log: Log = Log::default();
    let events = Arc::clone(&log);
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", move || {
            let counter = Arc::clone(&counter);
            serve(
                Observed::new(LineProtocol::new(), &events),
                move |_: String| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "r".repeat(RESPONSE - 1)
                },
            )
        })
        .unwrap();
    // A client with a small receive buffer (no autotuning) that sends all
    // its requests, then does not read.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&listener.local_addr().into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(&b"x\n".repeat(REQUESTS)).unwrap();

    // Tick until the server has been quiet for a while.
    let deadline = Instant::now() + DEADLINE;
    let mut quiet = 0;
    while quiet < 20 {
        assert!(Instant::now() < deadline, "the server never stalled");
        let stats = reactor.tick(Some(Duration::from_millis(5))).unwrap();
        quiet = if stats.bytes_written + stats.bytes_read + stats.requests == 0 {
            quiet + 1
        } else {
            0
        };
    }
    let stalled = calls.load(Ordering::SeqCst);
    assert!(stalled < REQUESTS, "all {stalled} requests were handled");
    assert!(seen(&log).iter().any(|s| matches!(s, Seen::Paused)));

    // Now the client reads everything.
    let total = REQUESTS * RESPONSE;
    let (received, _) = serve_client(&mut reactor, move || {
        let mut n = 0;
        let mut buf = vec![0; 256 * 1024];
        while n < total {
            match stream.read(&mut buf).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        n
    });
    assert_eq!(received, total);
    assert_eq!(calls.load(Ordering::SeqCst), REQUESTS);
}

#[test]
fn a_client_connection_stops_reading_what_the_application_does_not_read() {
    let limits = Limits::new().with_water_marks(4 * 1024, 16 * 1024);
    let mut reactor = Reactor::builder().transport_limits(limits).build().unwrap();
    let handle = reactor.handle();
    let listener = handle
        .listen_tcp("127.0.0.1:0", || {
            serve(LineProtocol::new(), |_: String| "z".repeat(1024 * 1024))
        })
        .unwrap();
    let conn = run(&mut reactor, handle.connect_tcp(listener.local_addr())).unwrap();
    conn.write_line("go").unwrap();
    // The connection fills up to its high-water mark and takes no more.
    tick_until(&mut reactor, |_| conn.buffered_input() >= 16 * 1024);
    for _ in 0..20 {
        reactor.tick(Some(Duration::from_millis(5))).unwrap();
    }
    let buffered = conn.buffered_input();
    assert_eq!(buffered, 16 * 1024);
    let total = run(&mut reactor, async {
        let mut total = 0;
        while total < 1024 * 1024 + 1 {
            total += conn.read(64 * 1024).await?.len();
        }
        io::Result::Ok(total)
    })
    .unwrap();
    assert_eq!(total, 1024 * 1024 + 1);
}

// ------------------------------------------------------- half-close, reset

#[test]
fn after_a_half_close_the_requests_received_are_answered_then_the_server_closes() {
    let mut reactor = Reactor::new().unwrap();
    let (log, listener) = observed_echo_server(&reactor);
    let addr = listener.local_addr();
    let (got, _) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"a\nb\nlast without a line end").unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        read_to_end(&mut stream)
    });
    assert_eq!(got, b"a\nb\nlast without a line end\n");
    tick_until(&mut reactor, |r| r.connections() == 0);
    let log = seen(&log);
    assert!(
        matches!(
            log.as_slice(),
            [Seen::ReadClosed, Seen::Closed(CloseReason::Finished)]
        ),
        "{log:?}"
    );
}

/// A line echo server on an ephemeral loopback port whose protocol
/// records its transport events in the returned log.
fn observed_echo_server(reactor: &Reactor) -> (Log, Listener) {
    let log: Log = Log::default();
    let events = Arc::clone(&log);
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", move || {
            serve(Observed::new(LineProtocol::new(), &events), echo)
        })
        .unwrap();
    (log, listener)
}

/// Ticks until the reactor's totals satisfy `done`, failing after
/// [`DEADLINE`].
#[track_caller]
fn tick_until_totals(reactor: &mut Reactor, totals: &mut Totals, done: impl Fn(&Totals) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done(totals) {
        assert!(Instant::now() < deadline, "timed out; so far: {totals:?}");
        let stats = reactor.tick(Some(Duration::from_millis(5))).unwrap();
        totals.add(&stats);
    }
}

#[test]
fn input_and_end_of_stream_arriving_after_a_short_read_are_still_seen() {
    // Each read below returns less than the transport asks for, which ends
    // the read as drained: what the peer sends afterwards, data or end of
    // stream, must come with a new readiness event.
    let mut reactor = Reactor::new().unwrap();
    let (log, listener) = observed_echo_server(&reactor);
    let mut client = connect(listener.local_addr());
    let mut totals = Totals::default();

    client.write_all(b"hel").unwrap();
    tick_until_totals(&mut reactor, &mut totals, |t| t.bytes_read == 3);
    client.write_all(b"lo\n").unwrap();
    tick_until_totals(&mut reactor, &mut totals, |t| t.bytes_written == 6);
    assert_eq!(read_exactly(&mut client, 6), b"hello\n");

    client.write_all(b"bye").unwrap();
    tick_until_totals(&mut reactor, &mut totals, |t| t.bytes_read == 9);
    let so_far = seen(&log);
    assert!(so_far.is_empty(), "no end of stream yet: {so_far:?}");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    tick_until(&mut reactor, |r| r.connections() == 0);
    assert_eq!(read_to_end(&mut client), b"bye\n");
    let log = seen(&log);
    assert!(
        matches!(
            log.as_slice(),
            [Seen::ReadClosed, Seen::Closed(CloseReason::Finished)]
        ),
        "{log:?}"
    );
}

#[test]
fn a_client_can_half_close_and_still_read() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let listener = handle
        .listen_tcp("127.0.0.1:0", || serve(LineProtocol::new(), echo))
        .unwrap();
    let (replies, write_after) = run(&mut reactor, async move {
        let conn = handle.connect_tcp(listener.local_addr()).await?;
        conn.write_line("x")?;
        conn.write_line("y")?;
        conn.shutdown_write();
        let write_after = conn.write_line("z").unwrap_err().kind();
        let mut replies = Vec::new();
        while let Some(line) = conn.read_line().await? {
            replies.push(line);
        }
        io::Result::Ok((replies, write_after))
    })
    .unwrap();
    assert_eq!(replies, ["x", "y"]);
    assert_eq!(write_after, io::ErrorKind::BrokenPipe);
}

#[test]
fn a_reset_by_the_peer_is_a_close_event() {
    let mut reactor = Reactor::new().unwrap();
    let (log, listener) = observed_echo_server(&reactor);
    let addr = listener.local_addr();
    let (_, totals) = serve_client(&mut reactor, move || {
        let mut stream = connect(addr);
        stream.write_all(b"hello\n").unwrap();
        assert_eq!(read_exactly(&mut stream, 6), b"hello\n");
        // Close with a reset (RST) instead of an end of stream.
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    tick_until(&mut reactor, |r| r.connections() == 0);
    assert_eq!(totals.panics, 0);
    let reason = closed_with(&log).expect("closed");
    assert!(matches!(reason, CloseReason::Reset), "{reason:?}");
    assert!(reason.is_error());
}

// ------------------------------------------------------- context

#[derive(Debug)]
struct Service(&'static str);

#[test]
fn handlers_run_in_the_listeners_context_plus_the_connection() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    type Observation = (String, Option<SocketAddr>, bool);
    let sync_seen: Arc<Mutex<Option<Observation>>> = Arc::default();
    let async_seen: Arc<Mutex<Option<Observation>>> = Arc::default();
    let (s, a) = (Arc::clone(&sync_seen), Arc::clone(&async_seen));
    fn look() -> Observation {
        let service = milieu::get::<Service>().unwrap().0.to_owned();
        let conn = ConnectionInfo::current().unwrap();
        (service, conn.peer_addr(), Handle::current().is_ok())
    }
    // Called outside the reactor's context: the reactor's handle is added.
    let listener = milieu::scope().with(Service("lines")).run(|| {
        handle.listen_tcp("127.0.0.1:0", move || {
            let (s, a) = (Arc::clone(&s), Arc::clone(&a));
            serve(LineProtocol::new(), move |line: String| -> Reply<String> {
                if line == "sync" {
                    *s.lock().unwrap() = Some(look());
                    return Reply::Now(line);
                }
                let a = Arc::clone(&a);
                Reply::later(async move {
                    Handle::current()
                        .unwrap()
                        .sleep(Duration::from_millis(1))
                        .await;
                    *a.lock().unwrap() = Some(look());
                    line
                })
            })
        })
    });
    let listener = listener.unwrap();
    assert!(!milieu::contains::<Service>());
    let local = run(&mut reactor, async move {
        let conn = handle.connect_tcp(listener.local_addr()).await?;
        conn.write_line("sync")?;
        conn.write_line("async")?;
        conn.read_line().await?;
        conn.read_line().await?;
        io::Result::Ok(conn.local_addr())
    })
    .unwrap();
    let expected = Some(("lines".to_owned(), local, true));
    assert_eq!(*sync_seen.lock().unwrap(), expected);
    assert_eq!(*async_seen.lock().unwrap(), expected);
}

#[test]
fn the_connection_info_is_visible_in_dumps() {
    let dump = Arc::new(Mutex::new(String::new()));
    let slot = Arc::clone(&dump);
    let mut pair = Pair::new(move || {
        serve(LineProtocol::new(), move |line: String| {
            *slot.lock().unwrap() = milieu::dump().to_string();
            line
        })
    })
    .unwrap();
    pair.exchange(b"hi\n").unwrap();
    let dump = dump.lock().unwrap().clone();
    assert!(dump.contains("ConnectionInfo"), "{dump}");
    assert!(dump.contains(&format!("{:?}", pair.server_id())), "{dump}");
    assert!(dump.contains("transport: \"memory\""), "{dump}");
}

// ------------------------------------------------------- testing support

#[test]
fn a_pair_is_pumped_tick_by_tick() {
    let mut pair =
        Pair::new(|| serve(LineProtocol::new(), |l: String| l.len().to_string())).unwrap();
    pair.send(b"hello\nwor").unwrap();
    // Tick 1 takes up the connection, reads, decodes, answers, flushes.
    let stats = pair.tick().unwrap();
    assert_eq!(
        (stats.bytes_read, stats.requests, stats.bytes_written),
        (9, 1, 2)
    );
    assert_eq!(pair.receive(), b"5\n");
    assert_eq!(pair.exchange(b"ld\n").unwrap(), b"5\n");
    pair.client().shutdown_write();
    pair.pump().unwrap();
    assert!(pair.server_closed());
    assert_eq!(pair.reactor().connections(), 0);
}

#[test]
fn async_handlers_on_a_virtual_clock_are_deterministic() {
    let mut pair = Pair::new(|| {
        serve(LineProtocol::new(), |line: String| async move {
            let ms: u64 = line.parse().unwrap();
            Handle::current()
                .unwrap()
                .sleep(Duration::from_millis(ms))
                .await;
            line
        })
    })
    .unwrap();
    assert_eq!(pair.exchange(b"30\n10\n20\n").unwrap(), b"");
    pair.advance(Duration::from_millis(10)).unwrap();
    assert_eq!(pair.receive(), b"", "10 finished, but 30 comes first");
    pair.advance(Duration::from_millis(20)).unwrap();
    assert_eq!(pair.receive(), b"30\n10\n20\n");
}

#[test]
fn a_client_connection_works_over_a_memory_transport() {
    let mut reactor = virtual_reactor();
    let handle = reactor.handle();
    let (client_end, server_end) = MemoryStream::pair(16);
    handle
        .serve_memory(server_end, || {
            serve(LineProtocol::new(), |l: String| l.repeat(2))
        })
        .unwrap();
    let conn = handle.connect_memory(client_end).unwrap();
    conn.write_line("abcdefghij").unwrap(); // more than the pipe holds
    let mut reply = None;
    for _ in 0..50 {
        reactor.tick(Some(Duration::ZERO)).unwrap();
        if let Poll::Ready(line) = poll_once(std::pin::pin!(conn.read_line())) {
            reply = Some(line.unwrap());
            break;
        }
    }
    assert_eq!(reply, Some(Some("abcdefghijabcdefghij".to_owned())));
}

/// Ticks until `fut` is ready (polled between ticks), at most 100 ticks.
#[track_caller]
fn tick_for<F: Future>(reactor: &mut Reactor, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..100 {
        if let Poll::Ready(out) = poll_once(fut.as_mut()) {
            return out;
        }
        reactor.tick(Some(Duration::ZERO)).unwrap();
    }
    panic!("not ready after 100 ticks");
}

#[test]
fn a_client_with_a_low_high_water_mark_still_reads_long_lines() {
    let limits = Limits::new().with_water_marks(64, 256);
    let mut reactor = Reactor::builder()
        .clock(Clock::Virtual(VirtualClock::new()))
        .transport_limits(limits)
        .build()
        .unwrap();
    let handle = reactor.handle();
    let (client_end, peer) = MemoryStream::pair(1024);
    let conn = handle.connect_memory(client_end).unwrap();
    let line = "q".repeat(5000);
    let mut to_send = format!("{line}\n").into_bytes();
    let mut read = std::pin::pin!(conn.read_line());
    let mut reply = None;
    for _ in 0..100 {
        // Feed the line as the pipe takes it.
        if let Ok(n) = (&peer).write(&to_send) {
            to_send.drain(..n);
        }
        reactor.tick(Some(Duration::ZERO)).unwrap();
        if let Poll::Ready(line) = poll_once(read.as_mut()) {
            reply = Some(line.unwrap().unwrap());
            break;
        }
    }
    let reply = reply.expect("the line arrives");
    assert_eq!(reply.len(), 5000);
}

#[test]
fn reading_bytes_and_lines_can_be_mixed() {
    let mut reactor = virtual_reactor();
    let handle = reactor.handle();
    let (client_end, peer) = MemoryStream::pair(64);
    let conn = handle.connect_memory(client_end).unwrap();
    (&peer).write_all(b"abc").unwrap();
    reactor.tick(Some(Duration::ZERO)).unwrap();
    assert!(poll_once(std::pin::pin!(conn.read_line())).is_pending());
    assert_eq!(tick_for(&mut reactor, conn.read(1)).unwrap(), b"a");
    (&peer).write_all(b"\nd\n").unwrap();
    reactor.tick(Some(Duration::ZERO)).unwrap();
    assert_eq!(
        tick_for(&mut reactor, conn.read_line()).unwrap().as_deref(),
        Some("bc")
    );
    assert_eq!(
        tick_for(&mut reactor, conn.read_line()).unwrap().as_deref(),
        Some("d")
    );
}

#[test]
fn connections_outliving_their_reactor_report_it_instead_of_hanging() {
    let mut reactor = Reactor::new().unwrap();
    let handle = reactor.handle();
    let listener = handle
        .listen_tcp("127.0.0.1:0", || serve(LineProtocol::new(), echo))
        .unwrap();
    let conn = run(&mut reactor, handle.connect_tcp(listener.local_addr())).unwrap();
    drop(reactor);
    let read = poll_once(std::pin::pin!(conn.read_line()));
    match read {
        Poll::Ready(Err(e)) => assert!(e.to_string().contains("reactor was dropped"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(matches!(
        conn.close_reason(),
        Some(CloseReason::ReactorGone)
    ));
    let err = handle
        .listen_tcp("127.0.0.1:0", || serve(LineProtocol::new(), echo))
        .unwrap_err();
    assert!(err.to_string().contains("reactor was dropped"), "{err}");
}
