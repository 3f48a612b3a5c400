//! The HTTP/1.1 protocol layer: requests out of bytes, responses into
//! bytes, keep-alive, `100 Continue`, and the responses for bad input.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use httparse::Status;

use super::chunked::Chunked;
use super::error::HttpError;
use super::headers::{trim_ows, Headers};
use super::limits::HttpLimits;
use super::request::{method_name, Request};
use super::response::{reason_phrase, Response};
use crate::reactor::Protocol;

/// The interim response to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// HTTP/1.1 (and 1.0) server side, as a reactor [`Protocol`]: one value
/// per connection.
///
/// - **Parsing** of the request line and header fields is `httparse`'s;
///   bodies are framed by `Content-Length` or `Transfer-Encoding:
///   chunked` (extensions and trailer fields accepted and dropped).
///   Anything else is an [`HttpError`], answered with its status and
///   `Connection: close` ([`error_response`](Protocol::error_response)).
///   A request with both `Content-Length` and `Transfer-Encoding`, or
///   with `Content-Length` values that differ, is refused (400): the
///   framing is ambiguous, the stuff of request smuggling.
/// - **Keep-alive**: an HTTP/1.1 connection stays open unless a request
///   or a response says `Connection: close`; an HTTP/1.0 one closes
///   after each response unless the request says `Connection:
///   keep-alive` (the response then says so too).
///   [`closing`](Protocol::closing) turns true once the request that
///   closes is decoded or a response that closes is encoded, and the
///   reactor closes the connection after that response.
/// - **Pipelining**: [`decode`](Protocol::decode) returns one request at
///   a time and the reactor answers in order; the protocol remembers, per
///   request in order, whether it was `HEAD` (the response goes without
///   its body) and whether it keeps the connection alive.
/// - **`Expect: 100-continue`**: once the header fields of such a request
///   are in and none of its body, [`interim`](Protocol::interim) writes
///   `HTTP/1.1 100 Continue` (once). A `Content-Length` over the limit is
///   refused with 413 at once instead.
/// - A handler that panics is answered with 500, and the connection goes
///   on ([`panic_response`](Protocol::panic_response)); a request that
///   takes too long to arrive, with 408 and a close
///   ([`timeout_response`](Protocol::timeout_response)).
///
/// No input makes it panic, and what it buffers is bounded by
/// [`HttpLimits`].
///
/// # Examples
///
/// The protocol alone, on byte slices:
///
/// ```
/// use milieu::http::{HttpProtocol, Response};
/// use milieu::reactor::Protocol;
///
/// let mut http = HttpProtocol::new();
/// let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n";
/// let requests: Vec<_> = http.requests(input).map(Result::unwrap).collect();
/// assert_eq!((requests[0].path(), requests[1].method()), ("/a", "HEAD"));
///
/// let mut out = Vec::new();
/// http.encode(Response::text(200, "a"), &mut out);
/// http.encode(Response::text(200, "b"), &mut out); // to the HEAD: no body
/// assert!(out.ends_with(b"Content-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 1\r\n\r\n"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct HttpProtocol {
    limits: HttpLimits,
    /// The request being received: header fields parsed, body incomplete.
    pending: Option<PartialRequest>,
    /// What the responses owe to the requests decoded, in request order.
    answers: VecDeque<Answer>,
    /// A request or a response closes the connection, or input was bad.
    closing: bool,
}

/// A request whose header fields are in and whose body is not.
#[derive(Clone, Debug)]
struct PartialRequest {
    method: Cow<'static, str>,
    target: Arc<str>,
    version: u8,
    headers: Headers,
    /// Bytes of the request line and header fields.
    head_len: usize,
    body: Body,
    keep_alive: bool,
    expect_continue: bool,
    /// Some of the body arrived already.
    body_started: bool,
    continue_sent: bool,
}

/// How the body of a request is framed.
#[derive(Clone, Debug)]
enum Body {
    Empty,
    Length(usize),
    Chunked(Chunked),
}

/// What the response to a decoded request must honour.
#[derive(Clone, Copy, Debug)]
struct Answer {
    /// The request was `HEAD`: no body.
    head: bool,
    keep_alive: bool,
    http10: bool,
}

impl HttpProtocol {
    /// A protocol with the default [`HttpLimits`].
    pub fn new() -> HttpProtocol {
        HttpProtocol::default()
    }

    /// A protocol with `limits`.
    pub fn with_limits(limits: HttpLimits) -> HttpProtocol {
        HttpProtocol {
            limits,
            ..HttpProtocol::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    fn try_decode(&mut self, input: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        let mut pending = match self.pending.take() {
            Some(pending) => pending,
            None => match parse_head(input, &self.limits)? {
                Some(pending) => pending,
                None => return Ok(None),
            },
        };
        let end = match &mut pending.body {
            Body::Empty => Some(pending.head_len),
            Body::Length(len) => {
                let end = pending.head_len.saturating_add(*len);
                (input.len() >= end).then_some(end)
            }
            Body::Chunked(chunked) => chunked.advance(input, &self.limits)?,
        };
        let Some(end) = end else {
            pending.body_started = input.len() > pending.head_len;
            self.pending = Some(pending);
            return Ok(None);
        };
        let body = match pending.body {
            Body::Empty => Vec::new(),
            Body::Length(_) => input
                .get(pending.head_len..end)
                .unwrap_or_default()
                .to_vec(),
            Body::Chunked(chunked) => chunked.into_data(),
        };
        self.answers.push_back(Answer {
            head: pending.method == "HEAD",
            keep_alive: pending.keep_alive,
            http10: pending.version == 0,
        });
        self.closing |= !pending.keep_alive;
        let request = Request::from_parts(
            pending.method,
            pending.target,
            pending.version,
            pending.headers,
            body,
        );
        Ok(Some((request, end)))
    }
}

impl Protocol for HttpProtocol {
    type Request = Request;
    type Response = Response;
    type Error = HttpError;

    fn decode(&mut self, input: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        let decoded = self.try_decode(input);
        if decoded.is_err() {
            // Nothing more will be decoded on this connection.
            self.pending = None;
            self.closing = true;
        }
        decoded
    }

    fn encode(&mut self, response: Response, output: &mut Vec<u8>) {
        // Error and timeout responses answer no decoded request: they close.
        let answer = self.answers.pop_front();
        let head = answer.is_some_and(|a| a.head);
        let keep_alive = answer.is_some_and(|a| a.keep_alive) && !response.asks_to_close();
        let connection = if !keep_alive {
            self.closing = true;
            Some("close")
        } else if answer.is_some_and(|a| a.http10) {
            Some("keep-alive")
        } else {
            None
        };
        response.encode(head, connection, output);
    }

    fn error_response(&mut self, error: &HttpError) -> Option<Response> {
        Some(status_response(error.status()).with_header("Connection", "close"))
    }

    fn panic_response(&mut self) -> Option<Response> {
        Some(status_response(500))
    }

    fn closing(&self) -> bool {
        self.closing
    }

    fn interim(&mut self, output: &mut Vec<u8>) {
        if let Some(pending) = &mut self.pending {
            let waits = !matches!(pending.body, Body::Empty);
            if pending.expect_continue && waits && !pending.body_started && !pending.continue_sent {
                pending.continue_sent = true;
                output.extend_from_slice(CONTINUE);
            }
        }
    }

    fn timeout_response(&mut self) -> Option<Response> {
        self.pending = None;
        self.closing = true;
        Some(status_response(408).with_header("Connection", "close"))
    }

    fn overload_response(&mut self) -> Option<Response> {
        self.pending = None;
        self.closing = true;
        Some(
            status_response(503)
                .with_header("Retry-After", "1")
                .with_header("Connection", "close"),
        )
    }

    fn receiving_body(&self) -> bool {
        self.pending.is_some()
    }

    /// Requests with unsafe methods (RFC 9110 §9.2.1: anything but GET,
    /// HEAD, OPTIONS and TRACE) are handled alone: RFC 9112 §9.3.2 lets a
    /// server handle pipelined requests in parallel only if they are all
    /// safe, and a `POST` handled ahead of a response that closes the
    /// connection would be done and never answered.
    fn runs_alone(&self, request: &Request) -> bool {
        !matches!(request.method(), "GET" | "HEAD" | "OPTIONS" | "TRACE")
    }

    fn response_closes(&self, response: &Response) -> bool {
        response.asks_to_close()
    }
}

/// A text response saying `status` and its reason phrase.
fn status_response(status: u16) -> Response {
    Response::text(status, format!("{status} {}\n", reason_phrase(status)))
}

/// Parses the request line and header fields at the start of `input`:
/// `None` while they are incomplete.
fn parse_head(input: &[u8], limits: &HttpLimits) -> Result<Option<PartialRequest>, HttpError> {
    let max_bytes = limits.max_header_bytes();
    // A field takes 3 bytes at least (`a:\n`): a longer array could never
    // fill up, and allocating it would cost for nothing.
    let slots = limits.max_headers().min(input.len() / 3 + 2);
    let mut fields = vec![httparse::EMPTY_HEADER; slots];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(input) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) if input.len() > max_bytes => {
            return Err(HttpError::HeaderSectionTooLarge { max: max_bytes })
        }
        Ok(Status::Partial) => return Ok(None),
        Err(error) => return Err(HttpError::from_httparse(error, limits.max_headers())),
    };
    if head_len > max_bytes {
        return Err(HttpError::HeaderSectionTooLarge { max: max_bytes });
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        // A complete parse sets all three.
        return Err(HttpError::Malformed {
            reason: "incomplete request line",
        });
    };
    let mut headers = Headers::new();
    for field in parsed.headers.iter() {
        headers.push_parsed(field.name, field.value);
    }

    let hosts = headers.get_all("host").count();
    if hosts > 1 || (version == 1 && hosts == 0) {
        return Err(HttpError::InvalidHost);
    }
    let body = framing(&headers, version, head_len, limits)?;
    let connection = |token| headers.has_token("connection", token);
    let keep_alive = match version {
        0 => connection("keep-alive") && !connection("close"),
        _ => !connection("close"),
    };
    let expect_continue = version == 1 && headers.has_token("expect", "100-continue");
    Ok(Some(PartialRequest {
        method: method_name(method),
        target: target.into(),
        version,
        head_len,
        body,
        keep_alive,
        expect_continue,
        body_started: false,
        continue_sent: false,
        headers,
    }))
}

/// How the body is framed (RFC 9112 §6.3, strictly: every ambiguity is
/// an error).
fn framing(
    headers: &Headers,
    version: u8,
    head_len: usize,
    limits: &HttpLimits,
) -> Result<Body, HttpError> {
    let chunked = headers.contains("transfer-encoding");
    let length = headers.contains("content-length");
    if chunked && length {
        return Err(HttpError::ContentLengthWithTransferEncoding);
    }
    if chunked {
        if version == 0 {
            return Err(HttpError::Malformed {
                reason: "Transfer-Encoding in an HTTP/1.0 request",
            });
        }
        let codings: Vec<&[u8]> = headers
            .get_all("transfer-encoding")
            .flat_map(|value| value.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|coding| !coding.is_empty())
            .collect();
        if codings.is_empty() {
            return Err(HttpError::Malformed {
                reason: "empty Transfer-Encoding",
            });
        }
        if codings.iter().any(|c| !c.eq_ignore_ascii_case(b"chunked")) {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if codings.len() > 1 {
            return Err(HttpError::Malformed {
                reason: "Transfer-Encoding applies `chunked` more than once",
            });
        }
        return Ok(Body::Chunked(Chunked::new(head_len)));
    }
    if length {
        let len = content_length(headers)?;
        let max = limits.max_body();
        return match usize::try_from(len) {
            Ok(0) => Ok(Body::Empty),
            Ok(len) if len <= max => Ok(Body::Length(len)),
            _ => Err(HttpError::BodyTooLarge { max }),
        };
    }
    Ok(Body::Empty)
}

/// The value of the `Content-Length` fields: one decimal number, possibly
/// repeated (`5, 5`, or in several fields).
fn content_length(headers: &Headers) -> Result<u64, HttpError> {
    let mut found = None;
    let values = headers
        .get_all("content-length")
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim_ows);
    for value in values {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::InvalidContentLength);
        }
        let len = std::str::from_utf8(value)
            .ok()
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or(HttpError::InvalidContentLength)?;
        match found {
            Some(earlier) if earlier != len => return Err(HttpError::ConflictingContentLength),
            _ => found = Some(len),
        }
    }
    found.ok_or(HttpError::InvalidContentLength)
}

#[cfg(test)]
mod tests {
    use super::{HttpProtocol, CONTINUE};
    use crate::http::{HttpError, HttpLimits, Response};
    use crate::reactor::Protocol;

    fn one(input: &[u8]) -> Result<Option<usize>, HttpError> {
        let mut http = HttpProtocol::new();
        Ok(http.decode(input)?.map(|(_, n)| n))
    }

    #[test]
    fn a_request_with_a_length_waits_for_its_body() {
        let mut http = HttpProtocol::new();
        let full = b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
        for cut in 0..full.len() - 3 {
            assert!(http.decode(&full[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (request, n) = http.decode(full).unwrap().unwrap();
        assert_eq!(n, full.len() - 3);
        assert_eq!(
            (request.method(), request.path(), request.query()),
            ("POST", "/p", Some("q=1"))
        );
        assert_eq!(request.body(), b"hello");
        assert_eq!(request.header("HOST"), Some("h"));
    }

    #[test]
    fn content_length_forms() {
        let with = |cl: &str| {
            let input = format!("POST / HTTP/1.1\r\nHost: h\r\n{cl}\r\n\r\nabc");
            let mut http = HttpProtocol::new();
            http.decode(input.as_bytes())
                .map(|decoded| decoded.map(|(request, _)| request.into_body()))
        };
        assert_eq!(with("Content-Length: 3"), Ok(Some(b"abc".to_vec())));
        assert_eq!(with("Content-Length: 3, 3"), Ok(Some(b"abc".to_vec())));
        let twice = with("Content-Length: 3\r\nContent-Length: 3");
        assert_eq!(twice, Ok(Some(b"abc".to_vec())));
        assert_eq!(with("Content-Length: 0"), Ok(Some(Vec::new())));
        assert_eq!(with("Content-Length: 4"), Ok(None));
        for bad in [
            "+3",
            "-3",
            "3 3",
            "0x3",
            "3,",
            "",
            "99999999999999999999999",
        ] {
            assert_eq!(
                with(&format!("Content-Length: {bad}")),
                Err(HttpError::InvalidContentLength),
                "{bad:?}"
            );
        }
        assert_eq!(
            with("Content-Length: 3\r\nContent-Length: 4"),
            Err(HttpError::ConflictingContentLength)
        );
        assert_eq!(
            with("Content-Length: 3, 4"),
            Err(HttpError::ConflictingContentLength)
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_field() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x, Close\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                true,
            ),
        ];
        for (input, closes) in cases {
            let mut http = HttpProtocol::new();
            http.decode(input).unwrap().unwrap();
            assert_eq!(http.closing(), closes, "{}", String::from_utf8_lossy(input));
            let mut out = Vec::new();
            http.encode(Response::status(204), &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.contains("Connection: close\r\n"), closes, "{text}");
            assert_eq!(http.closing(), closes);
        }
    }

    #[test]
    fn an_http10_keep_alive_response_says_so() {
        let mut http = HttpProtocol::new();
        http.decode(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        http.encode(Response::status(204), &mut out);
        assert!(out.ends_with(b"Connection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn a_response_that_closes_closes() {
        let mut http = HttpProtocol::new();
        http.decode(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!http.closing());
        let mut out = Vec::new();
        http.encode(
            Response::status(200).with_header("Connection", "close"),
            &mut out,
        );
        assert!(http.closing());
        assert_eq!(
            String::from_utf8(out)
                .unwrap()
                .matches("Connection")
                .count(),
            1
        );
    }

    #[test]
    fn host_is_required_once_in_http11() {
        assert_eq!(one(b"GET / HTTP/1.1\r\n\r\n"), Err(HttpError::InvalidHost));
        assert_eq!(
            one(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HttpError::InvalidHost)
        );
        assert_eq!(one(b"GET / HTTP/1.0\r\n\r\n"), Ok(Some(18)));
    }

    #[test]
    fn transfer_encodings() {
        let with = |te: &str| {
            let input = format!("POST / HTTP/1.1\r\nHost: h\r\n{te}\r\n\r\n0\r\n\r\n");
            one(input.as_bytes()).map(|n| n.is_some())
        };
        assert_eq!(with("Transfer-Encoding: chunked"), Ok(true));
        assert_eq!(with("Transfer-Encoding: CHUNKED"), Ok(true));
        assert_eq!(
            with("Transfer-Encoding: gzip, chunked"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: chunked, gzip"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: identity"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert!(matches!(
            with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
            Err(HttpError::Malformed { .. })
        ));
        assert!(matches!(
            with("Transfer-Encoding: ,"),
            Err(HttpError::Malformed { .. })
        ));
        assert_eq!(
            with("Transfer-Encoding: chunked\r\nContent-Length: 5"),
            Err(HttpError::ContentLengthWithTransferEncoding)
        );
        let http10 = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(matches!(one(http10), Err(HttpError::Malformed { .. })));
    }

    #[test]
    fn the_header_section_is_bounded_in_bytes_and_fields() {
        let limits = HttpLimits::new()
            .with_max_header_bytes(64)
            .with_max_headers(3);
        let mut http = HttpProtocol::with_limits(limits);
        let long = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(60));
        assert_eq!(
            http.decode(long.as_bytes()),
            Err(HttpError::HeaderSectionTooLarge { max: 64 })
        );
        let mut http = HttpProtocol::with_limits(limits);
        let many = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(http.decode(many), Err(HttpError::TooManyHeaders { max: 3 }));
        assert!(http.closing(), "bad input closes");
        let mut http = HttpProtocol::with_limits(limits);
        let exact = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(http.decode(exact).unwrap().is_some());
    }

    #[test]
    fn the_field_array_sized_from_the_input_is_always_large_enough() {
        // The shortest fields there are, so the input is as short as it can
        // be for its field count.
        for fields in 0..12 {
            let input = format!("G * HTTP/1.0\n{}\n", "a:\n".repeat(fields));
            let limits = HttpLimits::new().with_max_headers(fields);
            for cut in 0..input.len() {
                let mut http = HttpProtocol::with_limits(limits);
                assert_eq!(
                    http.decode(&input.as_bytes()[..cut]),
                    Ok(None),
                    "{fields}, {cut}"
                );
            }
            let mut http = HttpProtocol::with_limits(limits);
            let (request, _) = http.decode(input.as_bytes()).unwrap().unwrap();
            assert_eq!(request.headers().len(), fields);
        }
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_the_body() {
        let mut http = HttpProtocol::with_limits(HttpLimits::new().with_max_body(10));
        let input =
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(http.decode(input), Err(HttpError::BodyTooLarge { max: 10 }));
        let mut out = Vec::new();
        http.interim(&mut out);
        assert!(out.is_empty(), "no 100 Continue for a body refused already");
    }

    #[test]
    fn continue_is_sent_once_and_only_before_the_body() {
        let head =
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let mut http = HttpProtocol::new();
        assert!(http.decode(&head[..10]).unwrap().is_none());
        let mut out = Vec::new();
        http.interim(&mut out);
        assert!(out.is_empty(), "header fields incomplete");
        assert!(http.decode(head).unwrap().is_none());
        http.interim(&mut out);
        http.interim(&mut out);
        assert_eq!(out, CONTINUE);

        let mut http = HttpProtocol::new();
        let mut started = head.to_vec();
        started.push(b'x');
        assert!(http.decode(&started).unwrap().is_none());
        let mut out = Vec::new();
        http.interim(&mut out);
        assert!(out.is_empty(), "the body is on its way already");
    }

    #[test]
    fn error_and_timeout_responses_close() {
        let mut http = HttpProtocol::new();
        let error = http.decode(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n");
        let response = http.error_response(&error.unwrap_err()).unwrap();
        let mut out = Vec::new();
        http.encode(response, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        assert!(String::from_utf8_lossy(&out).contains("Connection: close\r\n"));

        let mut http = HttpProtocol::new();
        let response = http.timeout_response().unwrap();
        assert_eq!(response.status_code(), 408);
        let mut out = Vec::new();
        http.encode(response, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
        assert!(String::from_utf8_lossy(&out).contains("Connection: close\r\n"));
        assert!(http.closing());
    }

    #[test]
    fn a_panic_is_a_500_and_the_connection_goes_on() {
        let mut http = HttpProtocol::new();
        http.decode(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        let response = http.panic_response().unwrap();
        let mut out = Vec::new();
        http.encode(response, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(!http.closing());
    }
}
