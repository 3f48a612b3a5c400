//! Arbitrary bytes as a client's conduct towards `http::serve_with` over a
//! memory transport on a virtual clock: what it sends and when, when it
//! reads, how long it waits, whether it ends its stream, under small and
//! random limits (pipe capacity, input, body, server budget, connection
//! cap, read, body, write and linger timeouts). This reaches the states a
//! byte-level target cannot: output backed up past the high-water mark,
//! requests held back behind responses, lingering closes, refusals for
//! the budget, and every timeout.
//!
//! Checks: nothing panics (a panic in a connection is caught by the
//! reactor, so the target fails on the reactor's panic count too); what
//! the client reads starts with a valid status line; once the client has
//! ended its stream, read everything and let time pass, the server has
//! closed the connection; and when the reactor is gone, the budget holds
//! no connection and no input.
//!
//! From `fuzz/`, as for `http_decode` (see `run.sh`).

#![no_main]

use std::io::Write;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use milieu::http::{self, HttpLimits, Request, Response};
use milieu::reactor::testing::Pair;
use milieu::reactor::{Clock, Handle, Reactor, VirtualClock};

/// Reads the fuzzer's bytes front to back; missing bytes read as zero.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn millis(n: u8) -> Duration {
    Duration::from_millis(u64::from(n) * 10 + 1)
}

/// Answers at once, later (after a virtual sleep), or with a close, by
/// path; echoes the body's length.
async fn handler(request: Request) -> Response {
    let response = Response::text(200, format!("{} {}", request.path(), request.body().len()));
    match request.path() {
        "/close" => response.with_header("Connection", "close"),
        "/slow" => {
            if let Ok(reactor) = Handle::current() {
                reactor.sleep(Duration::from_millis(50)).await;
            }
            response
        }
        _ => response,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let control = input.byte();
    let limits = HttpLimits::new()
        .with_max_header_bytes(64 + usize::from(input.u16() % 4096))
        .with_max_headers(usize::from(input.byte() % 32))
        .with_max_body(usize::from(input.u16()))
        .with_max_buffered_input(usize::from(input.u16()) * 4)
        .with_max_connections(if control & 1 != 0 { 0 } else { 4 })
        .with_read_timeout(millis(input.byte()))
        .with_idle_timeout(millis(input.byte()))
        .with_body_rate((millis(input.byte()), u64::from(input.byte())))
        .with_write_timeout(millis(input.byte()))
        .with_linger(millis(input.byte()));
    let capacity = 16 + usize::from(input.u16() % 8192);

    let app = http::serve_with(limits, handler);
    let budget = app.budget().cloned().expect("serve_with attaches a budget");
    let reactor = Reactor::builder()
        .clock(Clock::Virtual(VirtualClock::new()))
        .build()
        .expect("reactor");
    let mut pair = Pair::with_reactor(reactor, capacity, move || app).expect("pair");
    let mut received = Vec::new();
    let mut panics = 0;

    // The client's conduct: one operation per byte.
    while !input.is_empty() {
        match input.byte() % 8 {
            0..=2 => {
                let n = usize::from(input.byte());
                let bytes = input.take(n);
                // A full pipe takes part of it (or none): that is the test.
                let _ = pair.client().write(bytes);
            }
            3 => received.extend(pair.receive()),
            4 => {
                let delay = millis(input.byte());
                if pair.advance(delay).is_err() {
                    return;
                }
            }
            5 => pair.client().shutdown_write(),
            _ => match pair.tick() {
                Ok(stats) => panics += stats.panics,
                Err(_) => return,
            },
        }
    }

    // The client ends its stream and reads everything while time passes:
    // whatever state the connection is in, it must end.
    pair.client().shutdown_write();
    for _ in 0..200 {
        if pair.pump().is_err() {
            break;
        }
        received.extend(pair.receive());
        if pair.server_closed() {
            break;
        }
        if pair.advance(Duration::from_secs(5)).is_err() {
            break;
        }
    }
    received.extend(pair.receive());
    assert!(
        pair.server_closed(),
        "the connection is still open after its client ended and 1,000 s passed"
    );
    assert_eq!(panics, 0, "a connection panicked (see the log above)");

    if !received.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(&received) {
            Ok(_) => {}
            Err(e) => panic!(
                "invalid response ({e}): {:?}",
                String::from_utf8_lossy(&received[..received.len().min(200)])
            ),
        }
    }

    drop(pair);
    assert_eq!(
        (budget.connections(), budget.buffered_input()),
        (0, 0),
        "the budget still counts a connection that is gone"
    );
});
