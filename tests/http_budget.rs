//! A server's memory under many large partial requests, over real
//! loopback sockets: connections past the cap get 503, the request input
//! held stays within the budget, and a client coming afterwards is
//! served. Alone in its test binary, so that the process's RSS is this
//! test's.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use milieu::http::{HttpLimits, Request, Response};

use common::server::{read_all, statuses, HttpServer};

/// This process's resident set, in bytes (Linux).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

#[test]
fn connections_past_the_cap_and_large_partial_bodies_stay_within_the_budget() {
    const CAP: usize = 20;
    const BUDGET: usize = 4 << 20;
    const ATTACKERS: usize = 60;
    let limits = HttpLimits::new()
        .with_max_connections(CAP)
        .with_max_buffered_input(BUDGET)
        .with_max_body(2 << 20);
    let server = HttpServer::start(limits, |_request: Request| Response::text(200, "served"));
    let body = vec![b'b'; 1_040_000];
    let before = rss();

    // Each attacker announces 2,000,000 bytes and sends 1,040,000: none
    // of the requests can complete, so all of it would be held.
    let head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n";
    let attackers: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let stream = common::connect(server.addr);
            stream
                .set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            stream
        })
        .collect();
    let mut sent = 0;
    for mut stream in &attackers {
        let _ = stream.write_all(head);
        // A refused connection stops taking the body at some point.
        for part in body.chunks(64 * 1024) {
            match stream.write_all(part) {
                Ok(()) => sent += part.len(),
                Err(_) => break,
            }
        }
    }
    let held = server.budget.buffered_input();
    let after = rss();
    let grew = after.saturating_sub(before);
    // The stated bound on request input: CAP × 4 KiB + BUDGET. Allocations
    // may be up to twice what they hold, and the process has other costs
    // (sockets, threads): the margin is generous, and still far below
    // the 60 MiB the connections would hold without the budget.
    let bound = 2 * (CAP * 4096 + BUDGET) + (8 << 20);
    assert!(
        held <= BUDGET,
        "{held} bytes drawn from a {BUDGET}-byte budget"
    );
    assert!(
        grew <= bound,
        "RSS grew by {grew} bytes (bound {bound}) while attackers sent {sent} bytes"
    );
    assert!(server.budget.connections() <= CAP);

    // A client coming now is served once the refused connections are gone
    // (each lingers a moment after its 503).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let mut client = common::connect(server.addr);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (answer, _) = read_all(&mut client);
        let status = statuses(&answer).first().copied();
        seen.push(status);
        if status == Some(200) {
            assert!(String::from_utf8_lossy(&answer).ends_with("served"));
            break;
        }
        assert_eq!(
            status,
            Some(503),
            "a client past the cap gets 503: {seen:?}"
        );
        assert!(
            Instant::now() < deadline,
            "not served within 20 s: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(attackers);
}

#[test]
fn a_connection_past_the_cap_gets_503_with_retry_after() {
    let limits = HttpLimits::new().with_max_connections(1);
    let server = HttpServer::start(limits, |_request: Request| Response::text(200, "ok"));
    let mut first = common::connect(server.addr);
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut one = [0; 256];
    let n = std::io::Read::read(&mut first, &mut one).unwrap();
    assert!(one[..n].starts_with(b"HTTP/1.1 200 "));
    // The first connection is kept alive: the second is over the cap.
    let mut second = common::connect(server.addr);
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (answer, error) = read_all(&mut second);
    assert!(error.is_none(), "{error:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("Retry-After: 1\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
}
