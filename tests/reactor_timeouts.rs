//! The protocol hooks that end or interrupt a connection — `closing`,
//! `interim`, `timeout_response` — and the read, idle and linger timeouts,
//! over real loopback sockets with the real clock. Every wait is bounded;
//! nothing asserts how long anything took.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;

use common::{connect, read_exactly, read_to_end};
use milieu::reactor::{
    serve, CloseReason, Limits, LineError, LineProtocol, Listener, Protocol, Reactor,
    TransportEvent,
};

/// Anything longer is a hang.
const DEADLINE: Duration = Duration::from_secs(20);

/// A line protocol with the hooks switched on: `bye` is the last request,
/// `408` answers a read timeout, `...` is the interim output while a line is
/// incomplete (once per line).
#[derive(Clone)]
struct Hooks {
    lines: LineProtocol,
    closing: bool,
    /// The last decode found only part of a line.
    incomplete: bool,
    interim_sent: bool,
    closed: Arc<std::sync::Mutex<Option<CloseReason>>>,
}

impl Hooks {
    fn new() -> Self {
        Hooks {
            lines: LineProtocol::new(),
            closing: false,
            incomplete: false,
            interim_sent: false,
            closed: Arc::default(),
        }
    }
}

impl Protocol for Hooks {
    type Request = String;
    type Response = String;
    type Error = LineError;

    fn decode(&mut self, input: &[u8]) -> Result<Option<(String, usize)>, LineError> {
        let decoded = self.lines.decode(input)?;
        self.incomplete = decoded.is_none() && !input.is_empty();
        if let Some((line, _)) = &decoded {
            self.interim_sent = false;
            self.closing |= line == "bye";
        }
        Ok(decoded)
    }

    fn encode(&mut self, response: String, output: &mut Vec<u8>) {
        self.closing |= response == "closing now";
        self.lines.encode(response, output);
    }

    fn closing(&self) -> bool {
        self.closing
    }

    fn interim(&mut self, output: &mut Vec<u8>) {
        if self.incomplete && !self.interim_sent {
            self.interim_sent = true;
            output.extend_from_slice(b"...\n");
        }
    }

    fn timeout_response(&mut self) -> Option<String> {
        Some("408".to_owned())
    }

    fn event(&mut self, event: &TransportEvent<'_>) {
        if let TransportEvent::Closed(reason) = event {
            *self.closed.lock().unwrap() = Some((*reason).clone());
        }
    }
}

fn answer(line: String) -> String {
    match line.as_str() {
        "please close" => "closing now".to_owned(),
        _ => line,
    }
}

struct Server {
    reactor: Reactor,
    listener: Listener,
    closed: Arc<std::sync::Mutex<Option<CloseReason>>>,
}

fn server(limits: Limits) -> Server {
    let reactor = Reactor::new().unwrap();
    let hooks = Hooks::new();
    let closed = Arc::clone(&hooks.closed);
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", move || {
            serve(hooks.clone(), answer).with_limits(limits)
        })
        .unwrap();
    Server {
        reactor,
        listener,
        closed,
    }
}

impl Server {
    /// Ticks while the client thread runs; returns what it returned.
    fn with_client<T: Send + 'static>(
        &mut self,
        client: impl FnOnce(SocketAddr) -> T + Send + 'static,
    ) -> T {
        let addr = self.listener.local_addr();
        let thread: JoinHandle<T> = std::thread::spawn(move || client(addr));
        let deadline = Instant::now() + DEADLINE;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the client did not finish");
            self.reactor.tick(Some(Duration::from_millis(5))).unwrap();
        }
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    fn tick_until_no_connections(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        while self.reactor.connections() > 0 {
            assert!(Instant::now() < deadline, "connections left open");
            self.reactor.tick(Some(Duration::from_millis(10))).unwrap();
        }
    }

    fn close_reason(&self) -> Option<CloseReason> {
        self.closed.lock().unwrap().clone()
    }
}

#[test]
fn a_closing_request_is_answered_with_those_before_it_and_nothing_after() {
    let mut s = server(Limits::new());
    let got = s.with_client(|addr| {
        let mut c = connect(addr);
        // Pipelined: the line after `bye` is never answered.
        c.write_all(b"one\nbye\nnever\n").unwrap();
        read_to_end(&mut c)
    });
    assert_eq!(got, b"one\nbye\n");
    s.tick_until_no_connections();
    assert!(
        matches!(s.close_reason(), Some(CloseReason::Finished)),
        "{:?}",
        s.close_reason()
    );
}

#[test]
fn a_closing_response_ends_the_connection_after_it() {
    let mut s = server(Limits::new());
    let got = s.with_client(|addr| {
        let mut c = connect(addr);
        c.write_all(b"a\nplease close\nb\n").unwrap();
        read_to_end(&mut c)
    });
    assert_eq!(got, b"a\nclosing now\n");
}

#[test]
fn interim_output_is_sent_while_a_request_is_incomplete() {
    let mut s = server(Limits::new());
    let got = s.with_client(|addr| {
        let mut c = connect(addr);
        c.write_all(b"hel").unwrap();
        let interim = read_exactly(&mut c, 4);
        c.write_all(b"lo\n").unwrap();
        let answer = read_exactly(&mut c, 6);
        (interim, answer)
    });
    assert_eq!(got.0, b"...\n");
    assert_eq!(got.1, b"hello\n");
}

#[test]
fn a_request_incomplete_past_the_read_timeout_gets_the_timeout_response_and_a_close() {
    let mut s = server(Limits::new().with_read_timeout(Duration::from_millis(200)));
    let served_meanwhile = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&served_meanwhile);
    let got = s.with_client(move |addr| {
        let mut slow = connect(addr);
        slow.write_all(b"first\nsecond, never fini").unwrap();
        // Another client is served while the slow one dawdles.
        let mut other = connect(addr);
        other.write_all(b"quick\n").unwrap();
        flag.store(read_exactly(&mut other, 6) == b"quick\n", Ordering::SeqCst);
        read_to_end(&mut slow)
    });
    assert_eq!(got, b"first\n...\n408\n");
    assert!(served_meanwhile.load(Ordering::SeqCst));
    s.tick_until_no_connections();
}

#[test]
fn a_trickling_client_is_cut_at_the_read_timeout_counted_from_the_request_start() {
    let mut s = server(Limits::new().with_read_timeout(Duration::from_millis(300)));
    let got = s.with_client(|addr| {
        let mut c = connect(addr);
        c.set_nodelay(true).unwrap();
        // One byte every 50 ms: every read is recent, the request never
        // completes. Bounded: at most 200 bytes.
        let mut got = Vec::new();
        for _ in 0..200 {
            if c.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            c.set_nonblocking(true).unwrap();
            let mut buf = [0; 64];
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            c.set_nonblocking(false).unwrap();
            if got.ends_with(b"408\n") {
                break;
            }
        }
        got
    });
    assert!(
        got.ends_with(b"408\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let mut s = server(Limits::new().with_idle_timeout(Duration::from_millis(200)));
    let got = s.with_client(|addr| {
        let mut c = connect(addr);
        c.write_all(b"ping\n").unwrap();
        // Answered, then nothing: the server closes.
        read_to_end(&mut c)
    });
    assert_eq!(got, b"ping\n");
    s.tick_until_no_connections();
    match s.close_reason() {
        Some(CloseReason::TimedOut { idle: true, .. }) => {}
        other => panic!("expected an idle timeout, got {other:?}"),
    }
}

#[test]
fn a_peer_that_never_closes_after_our_last_response_is_dropped_after_the_linger() {
    let mut s = server(Limits::new());
    let keep = s.with_client(|addr| {
        let mut c = connect(addr);
        c.write_all(b"bye\n").unwrap();
        assert_eq!(read_exactly(&mut c, 4), b"bye\n");
        c // kept open: we never close our side
    });
    s.tick_until_no_connections();
    drop(keep);
}

#[test]
fn interim_output_waiting_behind_a_slow_response_goes_out_once_it_is_sent() {
    let reactor = Reactor::new().unwrap();
    let listener = reactor
        .handle()
        .listen_tcp("127.0.0.1:0", || {
            serve(Hooks::new(), |line: String| async move {
                let reactor = milieu::reactor::Handle::current().unwrap();
                reactor.sleep(Duration::from_millis(50)).await;
                line
            })
        })
        .unwrap();
    let mut s = Server {
        reactor,
        listener,
        closed: Arc::default(),
    };
    let got = s.with_client(|addr| {
        let mut c = connect(addr);
        // A complete request answered later, then part of the next one:
        // the interim output must follow the slow answer without any more
        // input from us.
        c.write_all(b"slow\npar").unwrap();
        read_exactly(&mut c, 9)
    });
    assert_eq!(got, b"slow\n...\n");
}
