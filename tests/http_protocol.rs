//! HTTP/1.1: the protocol on byte slices (every bad input gives its
//! status), and served through `reactor::testing::Pair`, tick by tick
//! (keep-alive, pipelining, chunked bodies split anywhere, 100-continue,
//! HEAD, `Connection: close`), with the request in the context and in the
//! `tracing` span of its handler.

mod common;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use milieu::http::{self, HttpError, HttpLimits, HttpProtocol, Request, RequestInfo, Response};
use milieu::reactor::testing::Pair;
use milieu::reactor::{Handle, Protocol, Reply};
use proptest::prelude::*;

use common::{assert_contains, assert_not_contains, without_date};

// ---------------------------------------------------------------- helpers

/// What feeding some input to a fresh protocol gave, as the reactor would
/// see it: the requests decoded, then the error's status if there was one.
#[derive(Debug, PartialEq)]
struct Outcome {
    requests: Vec<Request>,
    error: Option<u16>,
}

/// Feeds `chunks` one after another to `protocol`, decoding after each as
/// the reactor does (stopping at an error or once the protocol closes);
/// the partial input left at the end is decoded with `decode_eof`.
fn feed(protocol: &mut HttpProtocol, chunks: &[&[u8]]) -> Outcome {
    let mut outcome = Outcome {
        requests: Vec::new(),
        error: None,
    };
    let mut buffer = Vec::new();
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        buffer.extend_from_slice(chunk);
        loop {
            let decoded = if i == last {
                protocol.decode_eof(&buffer)
            } else {
                protocol.decode(&buffer)
            };
            match decoded {
                Ok(Some((request, consumed))) => {
                    assert!(
                        consumed > 0 && consumed <= buffer.len(),
                        "consumed {consumed}"
                    );
                    buffer.drain(..consumed);
                    outcome.requests.push(request);
                    if protocol.closing() {
                        return outcome;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    outcome.error = Some(error.status());
                    return outcome;
                }
            }
        }
    }
    outcome
}

/// The error `input` gives at once, and the bytes of the error response.
#[track_caller]
fn refused(limits: HttpLimits, input: &[u8]) -> (HttpError, String) {
    let mut protocol = HttpProtocol::with_limits(limits);
    let error = match protocol.decode(input) {
        Err(error) => error,
        Ok(decoded) => panic!(
            "not refused ({}): {:?}",
            if decoded.is_some() {
                "accepted"
            } else {
                "incomplete"
            },
            String::from_utf8_lossy(input)
        ),
    };
    assert!(protocol.closing(), "an error ends the connection");
    let response = protocol.error_response(&error).expect("an error response");
    let mut bytes = Vec::new();
    protocol.encode(response, &mut bytes);
    (error, String::from_utf8(bytes).expect("ASCII"))
}

/// A server answering `<METHOD> <path> <body>` and `id=<RequestInfo id>`.
fn echo(request: Request) -> Response {
    let id = RequestInfo::current().map_or(0, |info| info.id());
    let body = String::from_utf8_lossy(request.body());
    Response::text(
        200,
        format!("{} {} {body} id={id}", request.method(), request.path()),
    )
}

fn pair<H, K>(handler: H) -> io::Result<Pair>
where
    H: milieu::reactor::Handler<Request, Response, K>,
{
    let app = http::serve(handler);
    Pair::new(move || app.clone())
}

/// The response to `text`, with its content length.
fn ok(text: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{text}",
        text.len()
    )
}

/// The server's answer as text, without the `Date` fields (checked: one
/// per response, an IMF-fixdate), so that the rest compares exactly.
#[track_caller]
fn text(bytes: Vec<u8>) -> String {
    without_date(&String::from_utf8(bytes).expect("the server answers in ASCII"))
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";

// ------------------------------------------------- bad input, protocol level

#[test]
fn every_bad_input_is_answered_with_its_status_and_a_close() {
    let small = HttpLimits::new()
        .with_max_header_bytes(256)
        .with_max_headers(4)
        .with_max_body(16)
        .with_max_chunk_framing(256);
    let long_field = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(300)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("no version", b"GET /\r\nHost: h\r\n\r\n".to_vec(), 400),
        ("no target", b"GET HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        ("bad method", b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        ("HTTP/2", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n".to_vec(), 400),
        ("extra word", b"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n".to_vec(), 400),
        ("no colon", b"GET / HTTP/1.1\r\nHost h\r\n\r\n".to_vec(), 400),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n".to_vec(), 400),
        ("folded line", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n".to_vec(), 400),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n".to_vec(), 400),
        ("CR alone", b"GET / HTTP/1.1\rHost: h\r\n\r\n".to_vec(), 400),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400),
        ("Host not host:port", b"GET / HTTP/1.1\r\nHost: user@evil/x\r\n\r\n".to_vec(), 400),
        ("asterisk-form for GET", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        ("authority-form for GET", b"GET t:80 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400),
        ("CONNECT", b"CONNECT t:80 HTTP/1.1\r\nHost: t:80\r\n\r\n".to_vec(), 501),
        ("header section too large", long_field.into_bytes(), 431),
        (
            "header section too large, incomplete",
            [&b"GET / HTTP/1.1\r\n"[..], &[b'a'; 300]].concat(),
            431,
        ),
        ("blank lines forever", b"\r\n".repeat(200), 431),
        (
            "too many fields",
            b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n".to_vec(),
            431,
        ),
        (
            "Content-Length over the limit",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n".to_vec(),
            413,
        ),
        (
            "huge Content-Length",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n".to_vec(),
            413,
        ),
        (
            "chunked body over the limit",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
              10\r\n0123456789abcdef\r\n1\r\n"
                .to_vec(),
            413,
        ),
        (
            "trailers forever",
            [
                &b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: "[..],
                &[b't'; 300],
            ]
            .concat(),
            431,
        ),
        (
            "chunk extensions forever",
            [
                &b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;"[..],
                &[b'e'; 300],
            ]
            .concat(),
            413,
        ),
        (
            "gzip",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunked, gzip",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".to_vec(),
            400,
        ),
        (
            "gzip, chunked",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            501,
        ),
        (
            "chunked and a length (smuggling)",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "two lengths",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n".to_vec(),
            400,
        ),
        (
            "negative length",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -4\r\n\r\n".to_vec(),
            400,
        ),
        (
            "length with a sign",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunk size not hex",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
        (
            "empty chunk size",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n".to_vec(),
            400,
        ),
        (
            "chunk data too long",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n".to_vec(),
            400,
        ),
        (
            "bare LF in a chunk extension",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;x\nGET\r\nab\r\n"
                .to_vec(),
            400,
        ),
        (
            "bad trailer",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "chunked in HTTP/1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (name, input, status) in cases {
        let (error, response) = refused(small, &input);
        assert_eq!(error.status(), status, "{name}: {error}");
        let status_line = format!("HTTP/1.1 {status} ");
        assert!(response.starts_with(&status_line), "{name}: {response}");
        assert_contains(&response, "Connection: close\r\n");
        assert!(!error.to_string().is_empty());

        // Byte by byte, the same status comes out, at the latest with the
        // last byte.
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let split = feed(&mut HttpProtocol::with_limits(small), &chunks);
        assert_eq!(split.error, Some(status), "{name}, byte by byte");
        assert!(split.requests.is_empty(), "{name}");
    }
}

#[test]
fn a_length_over_the_limit_is_refused_as_soon_as_the_header_fields_are_in() {
    let limits = HttpLimits::new().with_max_body(100);
    let mut protocol = HttpProtocol::with_limits(limits);
    let head = b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n";
    assert_eq!(
        protocol.decode(head),
        Err(HttpError::BodyTooLarge { max: 100 }),
        "no body byte is waited for"
    );
}

#[test]
fn the_read_timeout_is_answered_with_408_and_a_close() {
    let mut protocol = HttpProtocol::new();
    assert!(protocol.decode(b"GET / HTTP/1.1\r\nHo").unwrap().is_none());
    let response = protocol.timeout_response().expect("a 408");
    assert_eq!(response.status_code(), 408);
    let mut bytes = Vec::new();
    protocol.encode(response, &mut bytes);
    let text = text(bytes);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert_contains(&text, "Connection: close\r\n");
    assert!(protocol.closing());
}

#[test]
fn http_limits_give_transport_limits_that_let_the_protocol_answer_first() {
    let limits = HttpLimits::new()
        .with_max_header_bytes(1000)
        .with_max_body(5000)
        .with_read_timeout(Duration::from_secs(3))
        .with_idle_timeout(None);
    let transport = limits.transport_limits();
    assert_eq!(transport.max_input(), limits.max_input());
    // The largest request accepted: a full header section, then a chunked
    // body with a full framing allowance (64 KiB by default) and a full
    // trailer section.
    assert_eq!(limits.max_chunk_framing(), 64 * 1024);
    assert!(transport.max_input() > 1000 + 5000 + 64 * 1024 + 1000);
    // The framing allowance grows with the body limit.
    let large = HttpLimits::new().with_max_body(8 << 20);
    assert_eq!(large.max_chunk_framing(), 1 << 20);
    assert_eq!(large.with_max_chunk_framing(10).max_chunk_framing(), 10);
    assert_eq!(transport.read_timeout(), Some(Duration::from_secs(3)));
    assert_eq!(transport.idle_timeout(), None);
    let defaults = HttpLimits::new();
    assert_eq!(defaults.read_timeout(), Some(Duration::from_secs(10)));
    assert_eq!(defaults.idle_timeout(), Some(Duration::from_secs(60)));
}

#[test]
fn pipelined_requests_come_out_one_at_a_time_and_head_responses_have_no_body() {
    let mut protocol = HttpProtocol::new();
    let input = b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n\
                  POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
                  GET /g HTTP/1.1\r\nHost: h\r\n\r\nGET /partial HTT";
    let mut requests = protocol.requests(input);
    let decoded: Vec<Request> = requests.by_ref().map(Result::unwrap).collect();
    assert_eq!(requests.rest(), b"GET /partial HTT");
    let paths: Vec<&str> = decoded.iter().map(Request::path).collect();
    assert_eq!(paths, ["/h", "/p", "/g"]);
    assert_eq!(decoded[1].body(), b"abc");

    let mut bytes = Vec::new();
    for name in ["head", "post", "get"] {
        protocol.encode(Response::text(200, name), &mut bytes);
    }
    let expected = [
        ok("head").replace("\r\n\r\nhead", "\r\n\r\n"),
        ok("post"),
        ok("get"),
    ]
    .concat();
    assert_eq!(text(bytes), expected);
    assert!(!protocol.closing());
}

// ------------------------------------------------------ through the reactor

#[test]
fn the_largest_request_passes_and_one_byte_more_is_refused_with_a_status() -> io::Result<()> {
    // Header section, body, chunk framing and trailer section all at their
    // limits, larger in all than the transport's default `max_input` (64
    // KiB): the one `http::serve_with` sets from `HttpLimits` holds it, and
    // one byte more is the protocol's 413 or 431, not a close without a
    // response.
    let (max_head, max_body, max_framing) = (1024, 80 * 1024, 2048);
    let limits = HttpLimits::new()
        .with_max_header_bytes(max_head)
        .with_max_body(max_body)
        .with_max_chunk_framing(max_framing);
    let request = |framing_len: usize, trailers_len: usize| {
        let start = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX: ";
        let pad = "p".repeat(max_head - start.len() - 4);
        let head = format!("{start}{pad}\r\n\r\n");
        // The size line (`14000;eee..\r\n`), the data's CRLF and `0\r\n`
        // take `framing_len` bytes, the trailer section `trailers_len`.
        let size = format!("{max_body:x};");
        let extension = "e".repeat(framing_len - size.len() - 2 - 2 - 3);
        let trailer = format!("T: {}\r\n\r\n", "t".repeat(trailers_len - 7));
        let body = format!(
            "{size}{extension}\r\n{}\r\n0\r\n{trailer}",
            "d".repeat(max_body)
        );
        assert_eq!(head.len(), max_head);
        assert_eq!(body.len(), max_body + framing_len + trailers_len);
        [head, body].concat().into_bytes()
    };
    let largest = request(max_framing, max_head);
    assert_eq!(largest.len() + 1, limits.max_input());
    assert!(largest.len() > milieu::reactor::Limits::new().max_input());

    let app = http::serve_with(limits, |request: Request| {
        Response::text(200, format!("{} bytes", request.body().len()))
    });
    let new_pair = || {
        let app = app.clone();
        Pair::new(move || app.clone())
    };
    let mut pair = new_pair()?;
    assert_eq!(
        text(pair.exchange(&largest)?),
        ok(&format!("{max_body} bytes"))
    );
    assert!(!pair.server_closed());

    let answer = text(pair.exchange(&request(max_framing + 1, max_head))?);
    assert!(
        answer.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{answer}"
    );
    assert!(pair.server_closed());

    let mut pair = new_pair()?;
    let answer = text(pair.exchange(&request(max_framing, max_head + 1))?);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(pair.server_closed());
    Ok(())
}

#[test]
fn keep_alive_serves_one_request_after_another() -> io::Result<()> {
    let mut pair = pair(echo)?;
    assert_eq!(text(pair.exchange(GET)?), ok("GET /a  id=1"));
    assert!(!pair.server_closed());
    assert_eq!(text(pair.exchange(GET)?), ok("GET /a  id=2"));
    assert!(!pair.server_closed());
    Ok(())
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() -> io::Result<()> {
    let mut pair = pair(echo)?;
    let answer = text(pair.exchange(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?);
    assert_contains(&answer, "Connection: keep-alive\r\n");
    assert!(!pair.server_closed());
    let answer = text(pair.exchange(b"GET /c HTTP/1.0\r\n\r\n")?);
    assert_contains(&answer, "Connection: close\r\n");
    assert!(pair.server_closed());
    Ok(())
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() -> io::Result<()> {
    // The first request takes longer than the second: the responses still
    // leave in request order.
    async fn slow_first(request: Request) -> Response {
        if request.path() == "/slow" {
            let reactor = Handle::current().expect("in the reactor's context");
            reactor.sleep(Duration::from_millis(50)).await;
        }
        echo(request)
    }
    let mut pair = pair(slow_first)?;
    let answer = pair.exchange(
        b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nPOST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
    )?;
    assert!(answer.is_empty(), "the second waits for the first");
    pair.advance(Duration::from_millis(50))?;
    assert_eq!(
        text(pair.receive()),
        [ok("GET /slow  id=1"), ok("POST /fast hi id=2")].concat()
    );
    assert!(!pair.server_closed());
    Ok(())
}

#[test]
fn a_chunked_body_split_at_every_byte_is_the_same_body() -> io::Result<()> {
    let request: &[u8] = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                           5;ext=\"v\"\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n";
    let expected = ok("POST /c hello world id=1");
    for cut in 1..request.len() {
        let mut pair = pair(echo)?;
        let first = pair.exchange(&request[..cut])?;
        assert!(first.is_empty(), "cut at {cut}: answered early: {first:?}");
        assert_eq!(
            text(pair.exchange(&request[cut..])?),
            expected,
            "cut at {cut}"
        );
        assert!(!pair.server_closed());
    }
    Ok(())
}

#[test]
fn continue_is_sent_before_the_body_and_only_then() -> io::Result<()> {
    let head = b"PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let mut pair = pair(echo)?;
    assert_eq!(pair.exchange(&head[..20])?, b"", "header fields incomplete");
    assert_eq!(
        pair.exchange(&head[20..])?,
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    assert_eq!(pair.exchange(b"da")?, b"", "once per request");
    assert_eq!(text(pair.exchange(b"ta")?), ok("PUT /up data id=1"));

    // The body sent along with the header fields: no 100.
    let whole = [&head[..], b"data"].concat();
    assert_eq!(text(pair.exchange(&whole)?), ok("PUT /up data id=2"));
    // Part of it sent along: no 100 either.
    assert_eq!(pair.exchange(&[&head[..], b"d"].concat())?, b"");
    assert_eq!(text(pair.exchange(b"ata")?), ok("PUT /up data id=3"));
    Ok(())
}

#[test]
fn a_body_too_large_for_continue_is_refused_at_once() -> io::Result<()> {
    let limits = HttpLimits::new().with_max_body(3);
    let app = http::serve_with(limits, echo);
    let mut pair = Pair::new(move || app.clone())?;
    let head = b"PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let answer = text(pair.exchange(head)?);
    assert!(
        answer.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{answer}"
    );
    assert_not_contains(&answer, "100 Continue");
    assert_contains(&answer, "Connection: close\r\n");
    assert!(pair.server_closed());
    Ok(())
}

#[test]
fn head_gets_the_length_without_the_body_and_the_connection_goes_on() -> io::Result<()> {
    let mut pair = pair(echo)?;
    let answer = text(pair.exchange(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")?);
    assert_eq!(answer, ok("HEAD /x  id=1").replace("HEAD /x  id=1", ""));
    assert_contains(&answer, "Content-Length: 13\r\n");
    assert_eq!(text(pair.exchange(GET)?), ok("GET /a  id=2"));
    Ok(())
}

#[test]
fn connection_close_ends_the_connection_after_its_response() -> io::Result<()> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    // Answered later: the reactor would decode on meanwhile, were it not
    // told that the second request closes.
    let mut pair = pair(move |request: Request| {
        counted.fetch_add(1, Ordering::SeqCst);
        Reply::later(async move { echo(request) })
    })?;
    let answer = text(pair.exchange(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
    )?);
    let closing =
        ok("GET /2  id=2").replace("Content-Length", "Connection: close\r\nContent-Length");
    assert_eq!(answer, [ok("GET /1  id=1"), closing].concat());
    assert!(pair.server_closed(), "closed after the second response");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the third request is not decoded"
    );
    Ok(())
}

#[test]
fn a_response_asking_to_close_closes() -> io::Result<()> {
    let mut pair =
        pair(|_: Request| Response::text(200, "bye").with_header("Connection", "close"))?;
    let answer = text(pair.exchange(GET)?);
    assert_contains(&answer, "Connection: close\r\n");
    assert!(pair.server_closed());
    Ok(())
}

#[test]
fn bad_input_is_answered_then_the_connection_closes() -> io::Result<()> {
    let mut pair = pair(echo)?;
    let answer = text(pair.exchange(
        b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
    )?);
    let bad = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
               Connection: close\r\nContent-Length: 16\r\n\r\n400 Bad Request\n";
    assert_eq!(answer, [ok("GET /ok  id=1"), bad.to_owned()].concat());
    assert!(pair.server_closed());
    Ok(())
}

#[test]
fn a_panicking_handler_is_answered_with_500_and_the_connection_goes_on() -> io::Result<()> {
    let mut pair = pair(|request: Request| {
        if request.path() == "/boom" {
            panic!("handler bug");
        }
        echo(request)
    })?;
    let answer = text(pair.exchange(b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")?);
    assert!(
        answer.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{answer}"
    );
    assert!(!pair.server_closed());
    assert_eq!(text(pair.exchange(GET)?), ok("GET /a  id=2"));
    Ok(())
}

// ------------------------------------------------- the request in context

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[track_caller]
    fn line_with(&self, needle: &str) -> String {
        let lines = self.lines();
        let found = lines.iter().find(|line| line.contains(needle));
        found
            .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
            .clone()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A pair whose reactor logs to the returned buffer.
fn logged_pair<H, K>(handler: H) -> io::Result<(Pair, Captured)>
where
    H: milieu::reactor::Handler<Request, Response, K>,
{
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .without_time()
        .finish();
    // The reactor's root context is the context current when it is built.
    let _log = milieu::provide_subscriber(subscriber);
    Ok((pair(handler)?, captured))
}

#[test]
fn events_in_a_handler_carry_the_request_id() -> io::Result<()> {
    let (mut pair, log) = logged_pair(|request: Request| {
        tracing::info!(path = request.path(), "handling");
        Response::status(204)
    })?;
    pair.exchange(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n")?;
    assert_contains(&log.line_with("path=\"/one\""), "http_request{id=1}");
    assert_contains(&log.line_with("path=\"/two\""), "http_request{id=2}");
    Ok(())
}

#[test]
fn events_in_an_async_handler_carry_the_request_id_after_an_await() -> io::Result<()> {
    async fn handler(request: Request) -> Response {
        tracing::info!(path = request.path(), "before");
        let reactor = Handle::current().expect("in the reactor's context");
        reactor.sleep(Duration::from_millis(5)).await;
        let info = RequestInfo::current().expect("visible after an await");
        tracing::info!(path = info.path(), "after");
        Response::status(204)
    }
    let (mut pair, log) = logged_pair(handler)?;
    pair.exchange(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n")?;
    pair.advance(Duration::from_millis(5))?;
    let answers = text(pair.receive());
    assert_eq!(answers.matches("HTTP/1.1 204 No Content\r\n").count(), 2);
    for (path, id) in [("/one", 1), ("/two", 2)] {
        for message in ["before", "after"] {
            let line = log.line_with(&format!("{message} path=\"{path}\""));
            assert_contains(&line, &format!("http_request{{id={id}}}"));
        }
    }
    Ok(())
}

#[test]
fn the_request_is_not_carried_past_a_hop_unless_handed_on() -> io::Result<()> {
    fn handler(_: Request) -> Response {
        let info = RequestInfo::current().expect("visible to the handler");
        let snapshot = milieu::Context::current();
        let in_snapshot =
            snapshot.contains::<RequestInfo>() || snapshot.run(|| RequestInfo::current().is_ok());
        let in_thread = milieu::thread::spawn(|| RequestInfo::current().is_ok())
            .join()
            .unwrap();
        let handed = info.clone();
        let handed_on = milieu::thread::spawn(move || {
            milieu::scope()
                .with(handed)
                .run(|| RequestInfo::current().map(|i| i.id()))
        })
        .join()
        .unwrap()
        .expect("installed by the thread");
        Response::text(
            200,
            format!("{} {in_snapshot} {in_thread} {handed_on}", info.id()),
        )
    }
    let mut pair = pair(handler)?;
    assert_eq!(text(pair.exchange(GET)?), ok("1 false false 1"));
    Ok(())
}

#[test]
fn an_async_handler_sees_the_request_and_its_tasks_do_not() -> io::Result<()> {
    async fn handler(_: Request) -> Response {
        let reactor = Handle::current().expect("in the reactor's context");
        let task = reactor.spawn(async { RequestInfo::current().is_ok() });
        let in_task = task.await.expect("the task ran");
        let here = RequestInfo::current().map_or(0, |info| info.id());
        Response::text(200, format!("{here} {in_task}"))
    }
    let mut pair = pair(handler)?;
    assert_eq!(text(pair.exchange(GET)?), ok("1 false"));
    assert!(
        RequestInfo::current().is_err(),
        "nothing is left in the test's context"
    );
    Ok(())
}

#[test]
fn request_ids_are_shared_by_the_clones_of_one_serve() -> io::Result<()> {
    let app = http::serve(echo);
    let second = app.clone();
    let mut a = Pair::new(move || app)?;
    let mut b = Pair::new(move || second)?;
    assert_eq!(text(a.exchange(GET)?), ok("GET /a  id=1"));
    assert_eq!(text(b.exchange(GET)?), ok("GET /a  id=2"));
    assert_eq!(text(a.exchange(GET)?), ok("GET /a  id=3"));
    Ok(())
}

// ------------------------------------------------------------- any input

/// Pieces that HTTP requests are made of, to build inputs that get past
/// the request line more often than random bytes do.
const PIECES: &[&str] = &[
    "GET ",
    "HEAD ",
    "POST ",
    "/",
    "/p?q=1",
    " HTTP/1.1\r\n",
    " HTTP/1.0\r\n",
    "Host: h\r\n",
    "Content-Length: 3\r\n",
    "Content-Length: 0\r\n",
    "Content-Length: 99999\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive\r\n",
    "Expect: 100-continue\r\n",
    "\r\n",
    "\n",
    "abc",
    "3\r\nabc\r\n",
    "3;x=y\r\n",
    "0\r\n",
    "ffffffffffffffff\r\n",
    "T: 1\r\n",
    ": ",
    " ",
    "\0",
];

fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(PIECES).prop_map(|p| p.as_bytes().to_vec());
    let byte = any::<u8>().prop_map(|b| vec![b]);
    prop::collection::vec(prop_oneof![8 => piece, 1 => byte], 0..40).prop_map(|v| v.concat())
}

/// Header fields a request may have.
const FIELDS: &[&str] = &[
    "Accept: */*",
    "Connection: close",
    "Connection: keep-alive",
    "Expect: 100-continue",
    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// Header fields that make a request bad (or ambiguous).
const BAD_FIELDS: &[&str] = &[
    "Host: again",
    "Content-Length: 1",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip",
    "Bad Field: x",
    "X: a\r\n b",
];

/// One request: mostly well formed, with a body framed by
/// `Content-Length` or chunked, and the odd bad part.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let line = (
        prop_oneof![
            8 => prop::sample::select(&["GET", "HEAD", "POST", "PUT"][..]),
            1 => Just("G(T"),
        ],
        prop::sample::select(&["/", "/p?q=1#f", "http://h/x?y", "*", "h:443"][..]),
        prop_oneof![
            6 => Just("HTTP/1.1"),
            3 => Just("HTTP/1.0"),
            1 => Just("HTTP/2.0"),
        ],
    );
    let field = prop_oneof![
        8 => prop::sample::select(FIELDS),
        1 => prop::sample::select(BAD_FIELDS),
    ];
    let fields = (
        prop::bool::weighted(0.9),
        prop::collection::vec(field, 0..4),
    )
        .prop_map(|(host, mut fields)| {
            if host {
                fields.insert(0, "Host: h");
            }
            fields
        });
    let chunks = prop::collection::vec(prop::collection::vec(any::<u8>(), 1..12), 0..4);
    let body = prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| Some((false, vec![b]))),
        chunks.prop_map(|c| Some((true, c))),
    ];
    (line, fields, body, any::<bool>()).prop_map(
        |((method, target, version), fields, body, ext)| {
            let mut bytes = format!("{method} {target} {version}\r\n").into_bytes();
            for field in fields {
                bytes.extend_from_slice(format!("{field}\r\n").as_bytes());
            }
            let mut payload = Vec::new();
            match body {
                None => {}
                Some((false, data)) => {
                    let data = data.concat();
                    bytes.extend_from_slice(
                        format!("Content-Length: {}\r\n", data.len()).as_bytes(),
                    );
                    payload = data;
                }
                Some((true, chunks)) => {
                    bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                    for chunk in chunks {
                        let extension = if ext { ";e=\"v\"" } else { "" };
                        payload.extend_from_slice(
                            format!("{:x}{extension}\r\n", chunk.len()).as_bytes(),
                        );
                        payload.extend_from_slice(&chunk);
                        payload.extend_from_slice(b"\r\n");
                    }
                    payload.extend_from_slice(if ext {
                        &b"0\r\nT: 1\r\n\r\n"[..]
                    } else {
                        b"0\r\n\r\n"
                    });
                }
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&payload);
            bytes
        },
    )
}

/// A few requests in a row, with some bytes overwritten.
fn requests() -> impl Strategy<Value = Vec<u8>> {
    let mutations = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec((any::<usize>(), any::<u8>()), 1..3),
    ];
    (prop::collection::vec(request(), 1..4), mutations).prop_map(|(requests, mutations)| {
        let mut bytes = requests.concat();
        for (at, byte) in mutations {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
        }
        bytes
    })
}

fn limits() -> impl Strategy<Value = HttpLimits> {
    (1usize..300, 0usize..8, 0usize..64).prop_map(|(bytes, fields, body)| {
        HttpLimits::new()
            .with_max_header_bytes(bytes)
            .with_max_headers(fields)
            .with_max_body(body)
    })
}

/// `input` cut at `cuts` (sorted, deduplicated, within bounds).
fn cut<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([input.len()]) {
        chunks.push(&input[start..point]);
        start = point;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the input and wherever it is cut, decoding never panics,
    /// gives requests or a 4xx/5xx error, and gives the same requests as
    /// the input in one piece, and an error where it gives one.
    #[test]
    fn any_input_cut_anywhere_decodes_as_in_one_piece(
        input in prop_oneof![
            6 => requests(),
            1 => http_ish(),
            1 => prop::collection::vec(any::<u8>(), 0..200),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        limits in prop_oneof![3 => Just(HttpLimits::new()), 1 => limits()],
    ) {
        let whole = feed(&mut HttpProtocol::with_limits(limits), &[&input]);
        let mut protocol = HttpProtocol::with_limits(limits);
        let split = feed(&mut protocol, &cut(&input, &cuts));
        if let Some(status) = split.error {
            prop_assert!((400..=599).contains(&status), "status {}", status);
        }
        prop_assert_eq!(&split.requests, &whole.requests);
        // A limit can be passed by a part of the input before the byte that
        // makes the whole malformed is in: then the status differs.
        match (split.error, whole.error) {
            (Some(a), Some(b)) if a != b => {
                prop_assert!([413, 431].contains(&a) || [413, 431].contains(&b), "{} / {}", a, b);
            }
            (a, b) => prop_assert_eq!(a, b),
        }

        // Whatever was decoded can be answered, and the error too.
        let mut bytes = Vec::new();
        for request in &split.requests {
            protocol.encode(Response::text(200, request.path()), &mut bytes);
        }
        protocol.interim(&mut bytes);
        if let Some(response) = protocol.timeout_response() {
            protocol.encode(response, &mut bytes);
        }
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut fields);
        prop_assert!(parsed.parse(&bytes).is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
    }
}
