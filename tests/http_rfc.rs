//! HTTP/1.1 against hostile and careless clients, over real loopback
//! sockets: each test is one attack or one rule of RFC 9110 / RFC 9112
//! that a client may count on, sent by a blocking `std` client to a server
//! on a reactor.
//!
//! Every wait is bounded: the client's reads have a read timeout, so a
//! test that would hang fails instead.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::server::HttpServer;
use common::{connect, read_exactly, read_to_end, without_date};
use milieu::http::{self, HttpLimits, HttpProtocol, Request, Response};
use milieu::reactor::{Handle, Reply, Serve};

// ---------------------------------------------------------------- helpers

/// Serves `app` on a loopback port (a reactor on a thread of its own, see
/// `common::server`) while `client` runs with the port's address; returns
/// what the client returned.
fn with_server<T>(app: Serve<HttpProtocol>, client: impl FnOnce(SocketAddr) -> T) -> T {
    let server = HttpServer::serve(app);
    client(server.addr)
}

/// Answers `<METHOD> <path> <query> <body length>` for GET, POST and
/// OPTIONS, and 405 for any other method (`HEAD` included: `http::serve`
/// makes it a GET).
fn app() -> Serve<HttpProtocol> {
    http::serve(|request: Request| match request.method() {
        "GET" | "POST" | "OPTIONS" => Response::text(
            200,
            format!(
                "{} {} {} {}",
                request.method(),
                request.path(),
                request.query().unwrap_or("-"),
                request.body().len()
            ),
        )
        .with_header("X-App", "page"),
        _ => Response::status(405).with_header("Allow", "GET, POST, OPTIONS"),
    })
}

/// Sends `request` on a new connection and reads until the server ends
/// the stream: the server's whole answer, as text, its `Date` fields
/// checked (one per response, an IMF-fixdate) and left out. That this
/// returns at all shows the server closed the connection.
#[track_caller]
fn answer_then_close(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send");
    let answer = read_to_end(&mut stream);
    without_date(&String::from_utf8(answer).expect("ASCII"))
}

/// One response read off `stream`: its head (status line and fields,
/// `Date` checked and left out) and its `Content-Length` body, which is
/// not read for the response to a `HEAD` request (`to_head`).
#[track_caller]
fn read_response(stream: &mut TcpStream, to_head: bool) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read a response head");
        assert_eq!(n, 1, "end of stream in a response head: {head:?}");
        head.push(byte[0]);
    }
    let head = without_date(&String::from_utf8(head).expect("ASCII"));
    let length = content_length(&head);
    let body = if to_head {
        Vec::new()
    } else {
        read_exactly(stream, length)
    };
    (head, body)
}

/// The `Content-Length` of a response head (0 without one).
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse().expect("a decimal length"))
}

/// Asserts that `answer` is one response with `status`, closing the
/// connection: nothing that followed the bad request was answered.
#[track_caller]
fn assert_refused(answer: &str, status: &str, what: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
        "{what}: {answer}"
    );
    assert!(
        answer.contains("\r\nConnection: close\r\n"),
        "{what}: {answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{what}: {answer}");
}

/// A GET sent after a bad request on the same connection: a server that
/// went on decoding would answer it (the smuggling pattern).
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

// ------------------------------------------------------ Transfer-Encoding

#[test]
fn transfer_encoding_not_ending_in_chunked_is_400_and_close() {
    let answers = with_server(app(), |addr| {
        [
            "chunked, gzip",
            "gzip",
            "xchunked",
            "\"chunked\"",
            "identity",
        ]
        .map(|coding| {
            let request = format!(
                "POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {coding}\r\n\r\n\
                 0\r\n\r\n{SMUGGLED}"
            );
            (coding, answer_then_close(addr, request.as_bytes()))
        })
    });
    for (coding, answer) in answers {
        assert_refused(&answer, "400 Bad Request", coding);
    }
}

#[test]
fn transfer_encoding_with_an_unsupported_coding_before_chunked_is_501_and_close() {
    let answer = with_server(app(), |addr| {
        let request = format!(
            "POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
             0\r\n\r\n{SMUGGLED}"
        );
        answer_then_close(addr, request.as_bytes())
    });
    assert_refused(&answer, "501 Not Implemented", "gzip, chunked");
}

#[test]
fn transfer_encoding_chunked_twice_is_400_and_close() {
    let answer = with_server(app(), |addr| {
        let request = format!(
            "POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n\
             0\r\n\r\n{SMUGGLED}"
        );
        answer_then_close(addr, request.as_bytes())
    });
    assert_refused(&answer, "400 Bad Request", "chunked, chunked");
}

// ------------------------------------------------------------------- Host

#[test]
fn invalid_host_value_is_400_and_close() {
    let answers = with_server(app(), |addr| {
        ["bad host", "user@evil/x", "h:80x", "[::1"].map(|host| {
            let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n{SMUGGLED}");
            (host, answer_then_close(addr, request.as_bytes()))
        })
    });
    for (host, answer) in answers {
        assert_refused(&answer, "400 Bad Request", host);
    }
}

#[test]
fn valid_host_values_are_served_on_one_connection() {
    let answers = with_server(app(), |addr| {
        let mut stream = connect(addr);
        [
            "",
            "example.com:8080",
            "127.0.0.1",
            "[::1]:80",
            "xn--bcher-kva.example",
        ]
        .map(|host| {
            let request = format!("GET /h HTTP/1.1\r\nHost: {host}\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("send");
            (host, read_response(&mut stream, false))
        })
    });
    for (host, (head, body)) in answers {
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{host:?}: {head}");
        assert_eq!(body, b"GET /h - 0", "{host:?}");
    }
}

// ------------------------------------------------------------------- HEAD

/// What a `HEAD` and then a `GET` of `/page?x` on one connection get.
fn head_then_get(app: Serve<HttpProtocol>) -> ((String, Vec<u8>), (String, Vec<u8>)) {
    with_server(app, |addr| {
        let mut stream = connect(addr);
        // Both in one write: the HEAD response must end where its head
        // does, or the GET response that follows is misread.
        stream
            .write_all(
                b"HEAD /page?x HTTP/1.1\r\nHost: h\r\n\r\nGET /page?x HTTP/1.1\r\nHost: h\r\n\r\n",
            )
            .expect("send");
        let head = read_response(&mut stream, true);
        let get = read_response(&mut stream, false);
        (head, get)
    })
}

#[test]
fn head_gets_get_headers_without_body() {
    let ((head, nothing), (get, body)) = head_then_get(app());
    assert_eq!(body, b"GET /page x 0");
    assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
    assert_eq!(
        head, get,
        "the same status line and fields, Content-Length too"
    );
    assert_eq!(content_length(&head), body.len());
    assert!(nothing.is_empty());
}

#[test]
fn head_gets_get_headers_without_body_from_an_async_handler() {
    // What the handler was called with: method, and whether a HEAD made it.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let app = http::serve(move |request: Request| {
        let seen = Arc::clone(&seen);
        async move {
            let call = (request.method().to_owned(), request.is_head_as_get());
            seen.lock().unwrap().push(call);
            // Not ready on the first poll: the handler's future goes on as
            // a task, and the GET call for HEAD is made when it ends.
            let reactor = Handle::current().expect("in the reactor's context");
            reactor.sleep(Duration::from_millis(1)).await;
            match request.method() {
                "GET" => Response::text(200, format!("async {}", request.path())),
                _ => Response::status(501),
            }
        }
    });
    let ((head, _), (get, body)) = head_then_get(app);
    assert_eq!(body, b"async /page");
    assert_eq!(head, get);
    // The pipelined GET is called while the HEAD's future waits: in any
    // order but the HEAD's two calls.
    let mut calls = calls.lock().unwrap().clone();
    calls.sort();
    let call = |method: &str, head_as_get| (method.to_owned(), head_as_get);
    assert_eq!(
        calls,
        [call("GET", false), call("GET", true), call("HEAD", false)]
    );

    // A handler replying later for HEAD and at once for GET, and the
    // other way round: each pair of calls gives the GET response.
    let later_then_now = http::serve(|request: Request| match request.method() {
        "GET" => Reply::Now(Response::text(200, "now")),
        _ => Reply::later(async { Response::status(405) }),
    });
    let ((head, _), (get, body)) = head_then_get(later_then_now);
    assert_eq!((head, body.as_slice()), (get, &b"now"[..]));
    let now_then_later = http::serve(|request: Request| match request.method() {
        "GET" => Reply::later(async { Response::text(200, "later") }),
        _ => Reply::Now(Response::status(405)),
    });
    let ((head, _), (get, body)) = head_then_get(now_then_later);
    assert_eq!((head, body.as_slice()), (get, &b"later"[..]));
}

#[test]
fn a_handler_answering_head_itself_is_called_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app = http::serve(move |request: Request| {
        counted.fetch_add(1, Ordering::SeqCst);
        match request.method() {
            "HEAD" => Response::text(200, "twelve bytes").with_header("X-Answered", "head"),
            _ => Response::text(200, "get"),
        }
    });
    let ((head, _), (get, _)) = head_then_get(app);
    assert!(head.contains("\r\nX-Answered: head\r\n"), "{head}");
    assert_eq!(content_length(&head), 12);
    assert!(!get.contains("X-Answered"), "{get}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one call per request");
}

#[test]
fn error_response_to_head_has_no_body() {
    let answer = with_server(app(), |addr| {
        answer_then_close(
            addr,
            b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
        )
    });
    assert_refused(&answer, "400 Bad Request", "bad Content-Length");
    // The length of the body a GET would get, and no body: the stream
    // ends with the head.
    assert!(
        answer.ends_with("\r\nContent-Length: 16\r\n\r\n"),
        "{answer}"
    );
}

// ------------------------------------------------------------------- Date

#[test]
fn every_response_carries_a_date() {
    let app = http::serve(|request: Request| match request.path() {
        "/panic" => panic!("a handler bug"),
        "/missing" => Response::status(404),
        _ => Response::text(200, "ok"),
    });
    let (answers, refused) = with_server(app, |addr| {
        let mut stream = connect(addr);
        let answers = ["/ok", "/missing", "/panic"].map(|path| {
            let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("send");
            // `read_response` checks the Date: there, once, an IMF-fixdate.
            read_response(&mut stream, false).0
        });
        let refused = answer_then_close(addr, b"GET / HTTP/1.1\r\n\r\n");
        (answers, refused)
    });
    let statuses = answers.map(|head| head.lines().next().unwrap_or_default().to_owned());
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 500 Internal Server Error"
        ]
    );
    assert_refused(&refused, "400 Bad Request", "no Host");
}

#[test]
fn a_date_set_by_the_handler_is_kept() {
    let own = "Sun, 06 Nov 1994 08:49:37 GMT";
    let app = http::serve(move |_: Request| Response::text(200, "old").with_header("Date", own));
    let answer = with_server(app, |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .expect("send");
        String::from_utf8(read_to_end(&mut stream)).expect("ASCII")
    });
    assert_eq!(answer.matches("Date: ").count(), 1, "{answer}");
    assert!(answer.contains(&format!("\r\nDate: {own}\r\n")), "{answer}");
}

// -------------------------------------------------------- request targets

#[test]
fn asterisk_form_is_400_except_for_options() {
    let (options, get) = with_server(app(), |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("send");
        let options = read_response(&mut stream, false);
        let request = format!("GET * HTTP/1.1\r\nHost: h\r\n\r\n{SMUGGLED}");
        (options, answer_then_close(addr, request.as_bytes()))
    });
    assert!(
        options.0.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        options.0
    );
    assert_eq!(options.1, b"OPTIONS * - 0");
    assert_refused(&get, "400 Bad Request", "GET *");
}

#[test]
fn authority_form_is_400_except_for_connect_which_is_501() {
    let (get, connect_answer) = with_server(app(), |addr| {
        let get = format!("GET t:80 HTTP/1.1\r\nHost: t:80\r\n\r\n{SMUGGLED}");
        let tunnel = format!("CONNECT t:80 HTTP/1.1\r\nHost: t:80\r\n\r\n{SMUGGLED}");
        (
            answer_then_close(addr, get.as_bytes()),
            answer_then_close(addr, tunnel.as_bytes()),
        )
    });
    assert_refused(&get, "400 Bad Request", "GET t:80");
    assert_refused(&connect_answer, "501 Not Implemented", "CONNECT t:80");
}

#[test]
fn absolute_form_is_routed_by_its_path_and_query() {
    let answers = with_server(app(), |addr| {
        let mut stream = connect(addr);
        [
            "http://example.com/a/b?c=d",
            "https://example.com:8443",
            "http://h?q",
        ]
        .map(|target| {
            let request = format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n");
            stream.write_all(request.as_bytes()).expect("send");
            read_response(&mut stream, false).1
        })
    });
    assert_eq!(
        answers.map(|body| String::from_utf8(body).expect("ASCII")),
        ["GET /a/b c=d 0", "GET / - 0", "GET / q 0"]
    );
}

// ------------------------------------------------------- trickled headers

#[test]
fn a_header_section_trickled_byte_by_byte_is_served() {
    // The slow-header attack: many small reads of a large header section.
    // The work it costs is counted in the protocol's unit tests; here the
    // request, cut between any two bytes (the blank line included), is
    // served as if sent whole.
    let filler = format!("X-Filler: {}\r\n", "f".repeat(100)).repeat(60);
    let request = format!("GET /slow?x HTTP/1.1\r\nHost: h\r\n{filler}\r\n");
    let (head, body) = with_server(app(), move |addr| {
        let mut stream = connect(addr);
        stream.set_nodelay(true).expect("TCP_NODELAY");
        for byte in request.as_bytes() {
            stream.write_all(&[*byte]).expect("send a byte");
        }
        read_response(&mut stream, false)
    });
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"GET /slow x 0");
}

// ----------------------------------------------------------- chunk framing

/// A chunked POST of `chunks` one-byte chunks, then `trailer`.
fn small_chunks(chunks: usize, trailer: &str) -> String {
    format!(
        "POST /chunks HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n{trailer}\r\n",
        "1\r\nx\r\n".repeat(chunks)
    )
}

#[test]
fn many_small_chunks_are_not_413() {
    // 5,000 one-byte chunks: 25 KB of framing, over the 16 KiB header
    // limit that used to bound the framing too.
    let (head, body) = with_server(app(), |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(small_chunks(5000, "T: t\r\n").as_bytes())
            .expect("send");
        read_response(&mut stream, false)
    });
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, b"POST /chunks - 5000");
}

#[test]
fn chunk_framing_over_its_limit_is_413_and_close() {
    let limits = HttpLimits::new().with_max_chunk_framing(1000);
    let answer = with_server(
        http::serve_with(limits, |_: Request| Response::status(200)),
        |addr| {
            let request = [small_chunks(300, ""), SMUGGLED.to_owned()].concat();
            answer_then_close(addr, request.as_bytes())
        },
    );
    assert_refused(&answer, "413 Content Too Large", "1,500 bytes of framing");
}

#[test]
fn trailers_over_the_header_limit_are_431_and_close() {
    let limits = HttpLimits::new().with_max_header_bytes(1024);
    let answer = with_server(
        http::serve_with(limits, |_: Request| Response::status(200)),
        |addr| {
            let trailer = format!("T: {}\r\n", "t".repeat(1100));
            let request = [small_chunks(1, &trailer), SMUGGLED.to_owned()].concat();
            answer_then_close(addr, request.as_bytes())
        },
    );
    assert_refused(
        &answer,
        "431 Request Header Fields Too Large",
        "a 1,100-byte trailer",
    );
}
