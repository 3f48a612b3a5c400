//! HTTP under hostile and careless clients, over real loopback sockets:
//! clients that stop reading, pipeline past an error, send bodies slowly
//! or not at all, and pipelined requests behind a response that closes.
//! Each test is named after what the client does.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use milieu::http::{HttpLimits, Request, Response};
use milieu::reactor::Handle;

use common::server::{read_all, small_window_client, statuses, write_in_background, HttpServer};
use common::SOCKET_DEADLINE;

/// About 23 kB, as the answer to `GET /orders?limit=100` in the report
/// that found the stalled-reader problem.
fn big_body() -> String {
    "x".repeat(23 * 1024)
}

#[test]
fn a_client_that_pipelines_and_never_reads_is_dropped_after_the_write_timeout() {
    // Only the write timeout can end this connection: no read or idle
    // timeout, and the client neither reads nor closes.
    let limits = HttpLimits::new()
        .with_read_timeout(None)
        .with_idle_timeout(None)
        .with_body_rate(None)
        .with_write_timeout(Duration::from_secs(1));
    let server = HttpServer::start(limits, |_request: Request| Response::text(200, big_body()));
    let client = small_window_client(server.addr, 4096);
    let requests = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(2000);
    let writer = write_in_background(&client, requests.into_bytes());
    assert!(
        server.wait_for_connections_at_most(0, SOCKET_DEADLINE),
        "the server still holds the connection of a client that reads nothing"
    );
    // The client's write ends too (done, or failed when the server closed).
    let _ = writer.join();
    drop(client);
}

#[test]
fn a_client_that_reads_slowly_is_not_cut_by_the_write_timeout() {
    let limits = HttpLimits::new().with_write_timeout(Duration::from_secs(2));
    let server = HttpServer::start(limits, |_request: Request| Response::text(200, big_body()));
    let mut client = small_window_client(server.addr, 4096);
    let mut requests = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(40);
    requests.push_str("GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    client.write_all(requests.as_bytes()).unwrap();
    // Each read is well within the write timeout of the last.
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        use std::io::Read;
        std::thread::sleep(Duration::from_millis(2));
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("after {} bytes: {e}", got.len()),
        }
    }
    assert_eq!(statuses(&got), vec![200; 41]);
}

#[test]
fn pipelined_requests_then_an_oversized_body_get_every_response_and_no_reset() {
    // 100 pipelined GETs, a POST whose Content-Length is over the limit,
    // then a megabyte of its body; the client reads only a second later.
    let server = HttpServer::start(HttpLimits::new(), |request: Request| {
        Response::text(200, format!("{} ok\n", request.path()))
    });
    let mut client = small_window_client(server.addr, 4096);
    let mut attack = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100).into_bytes();
    attack
        .extend_from_slice(b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n");
    attack.extend(std::iter::repeat_n(b'a', 1_000_000));
    let writer = write_in_background(&client, attack);
    std::thread::sleep(Duration::from_secs(1));
    let (answer, error) = read_all(&mut client);
    assert!(
        error.is_none(),
        "the stream ended in an error ({error:?}) after {} responses",
        statuses(&answer).len()
    );
    let mut expected = vec![200; 100];
    expected.push(413);
    assert_eq!(statuses(&answer), expected);
    // The server read (and dropped) the whole body while lingering.
    writer.join().unwrap().expect("the whole body was taken");
}

#[test]
fn a_post_pipelined_behind_a_response_that_closes_is_not_run() {
    let posts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&posts);
    // The GET's answer comes later than the POST arrives, so the POST is
    // decoded while the response that closes is still owed.
    let server = HttpServer::start(HttpLimits::new(), move |request: Request| {
        let counted = Arc::clone(&counted);
        async move {
            match request.method() {
                "POST" => {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Response::status(201)
                }
                _ => {
                    let reactor = Handle::current().expect("in the reactor's context");
                    reactor.sleep(Duration::from_millis(100)).await;
                    // The handler ends the connection.
                    Response::text(200, "bye").with_header("Connection", "close")
                }
            }
        }
    });
    let mut client = common::connect(server.addr);
    client
        .write_all(
            b"GET /bye HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
        )
        .unwrap();
    let (answer, _) = read_all(&mut client);
    assert_eq!(statuses(&answer), [200]);
    assert_eq!(posts.load(Ordering::SeqCst), 0, "the POST ran unanswered");
}

#[test]
fn pipelined_posts_are_all_run_and_answered_in_order() {
    // Unsafe requests run one at a time, each after the responses before
    // it: all of them still run and are answered, in order.
    let server = HttpServer::start(HttpLimits::new(), |request: Request| async move {
        let body = String::from_utf8_lossy(request.body()).into_owned();
        Response::text(201, body)
    });
    let mut client = common::connect(server.addr);
    let mut pipelined = String::new();
    for i in 0..10 {
        pipelined.push_str(&format!(
            "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n{i}GET /g HTTP/1.1\r\nHost: t\r\n\r\n"
        ));
    }
    pipelined.push_str("GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    client.write_all(pipelined.as_bytes()).unwrap();
    let (answer, error) = read_all(&mut client);
    assert!(error.is_none(), "{error:?}");
    let text = String::from_utf8_lossy(&answer);
    let bodies: Vec<&str> = text
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|response| response.rsplit("\r\n\r\n").next().unwrap_or(""))
        .collect();
    let mut expected = Vec::new();
    for i in 0..10 {
        expected.push(i.to_string());
        expected.push(String::new());
    }
    expected.push(String::new());
    assert_eq!(bodies, expected);
}

#[test]
fn a_slow_but_steady_upload_is_not_cut_by_the_read_timeout() {
    // 2,000 bytes a second for three seconds, under a one-second read
    // timeout: the body rate (two seconds plus one per 500 bytes) lets it
    // through.
    let limits = HttpLimits::new()
        .with_read_timeout(Duration::from_secs(1))
        .with_body_rate((Duration::from_secs(2), 500));
    let server = HttpServer::start(limits, |request: Request| {
        Response::text(200, format!("{} bytes", request.body().len()))
    });
    let mut client = common::connect(server.addr);
    client
        .write_all(
            b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 6000\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    for _ in 0..30 {
        client.write_all(&[b'u'; 200]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (answer, _) = read_all(&mut client);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("6000 bytes"), "{text}");
}

#[test]
fn a_trickled_body_is_cut_by_the_minimum_rate() {
    // Five bytes a second against a minimum of 500: past the body
    // timeout, 408 and a close, long before the body could be complete.
    let limits = HttpLimits::new()
        .with_read_timeout(Duration::from_secs(60))
        .with_body_rate((Duration::from_millis(500), 500));
    let server = HttpServer::start(limits, |_request: Request| Response::status(200));
    let mut client = common::connect(server.addr);
    client
        .write_all(b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let mut trickle = client.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..100 {
            if trickle.write_all(b"t").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (answer, _) = read_all(&mut client);
    assert_eq!(statuses(&answer), [408]);
    writer.join().unwrap();
}
