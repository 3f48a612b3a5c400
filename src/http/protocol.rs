//! The HTTP/1.1 protocol layer: requests out of bytes, responses into
//! bytes, keep-alive, `100 Continue`, and the responses for bad input.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use httparse::Status;

use super::chunked::Chunked;
use super::error::HttpError;
use super::framing::{check_chunked, content_length};
use super::headers::{find_blank_line, trim_ows, Headers};
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
/// - **Request targets** (RFC 9112 §3.2): a path (`/a?b`) or an absolute
///   URI (`http://host/a?b`, whose path and query
///   [`Request::path`]/[`Request::query`] give); `*` for `OPTIONS` only.
///   Anything else (an authority `host:port` outside `CONNECT`) is 400;
///   `CONNECT` is 501, as no tunnel is opened. The `Host` field is
///   required once in HTTP/1.1, and its value must be `host[:port]`.
/// - **Linear parsing**: input that trickles in is searched once for the
///   end of the header section, and `httparse` runs when it is there (and
///   once on the first bytes, once the request line is in, and at the end
///   of the stream, so garbage is refused early); a header section sent
///   byte by byte costs no more than one sent whole.
/// - **Pipelining**: [`decode`](Protocol::decode) returns one request at
///   a time and the reactor answers in order; the protocol remembers, per
///   request in order, whether it was `HEAD` (the response goes without
///   its body) and whether it keeps the connection alive. The error or
///   timeout response to a `HEAD` request that could not be decoded goes
///   without its body too.
/// - **`Date`**: every response carries one (RFC 9110 §6.6.1), unless its
///   handler set its own; see [`Response`].
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
/// let out = String::from_utf8(out).unwrap();
/// let (get, head) = out.split_at(out.rfind("HTTP/1.1").unwrap());
/// assert!(get.ends_with(" GMT\r\nContent-Length: 1\r\n\r\na"));
/// assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: "));
/// assert!(head.ends_with(" GMT\r\nContent-Length: 1\r\n\r\n"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct HttpProtocol {
    limits: HttpLimits,
    /// How far the header section of the request being received was
    /// searched.
    scan: HeadScan,
    /// The request being received: header fields parsed, body incomplete.
    pending: Option<PartialRequest>,
    /// What the responses owe to the requests decoded, in request order.
    answers: VecDeque<Answer>,
    /// The request being received, or the one refused, is `HEAD`: the
    /// response that answers no decoded request (its error's, a 408)
    /// goes without its body.
    unfinished_is_head: bool,
    /// A request or a response closes the connection, or input was bad.
    closing: bool,
    /// The next response is the connection's last (a draining reactor):
    /// it says `Connection: close` whatever its request asked.
    last_response: bool,
}

/// The search for the end of a request's header section, kept between
/// calls of [`decode`](Protocol::decode) so that input arriving in small
/// pieces is searched once, not parsed again from its start each time.
#[derive(Clone, Copy, Debug, Default)]
struct HeadScan {
    /// Offset of the request line, once a byte other than the empty lines
    /// that may come before it arrived.
    line_start: Option<usize>,
    /// The request line's end is in.
    line_complete: bool,
    /// Where the search goes on: everything before it was searched.
    resume: usize,
    /// The input's length when `httparse` last parsed it (0: never).
    parsed_len: usize,
    /// Bytes searched and parsed for this request, for the tests that
    /// check that the work is linear.
    #[cfg(test)]
    examined: usize,
}

impl HeadScan {
    /// Searches what `input` holds past what was searched already:
    /// whether the request line's end is in now (for the first time),
    /// and where the header section ends, if it does.
    fn search(&mut self, input: &[u8]) -> (bool, Option<usize>) {
        #[cfg(test)]
        let searched_from = self.resume;
        if self.line_start.is_none() {
            // Empty lines before the request line are allowed (RFC 9112
            // §2.2); httparse skips them, and so must the search, lest
            // they read as the blank line that ends the section.
            let rest = input.get(self.resume..).unwrap_or_default();
            match rest.iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(at) => {
                    self.resume += at;
                    self.line_start = Some(self.resume);
                }
                None => self.resume = input.len(),
            }
        }
        let mut line_completed = false;
        if self.line_start.is_some() && !self.line_complete {
            let rest = input.get(self.resume..).unwrap_or_default();
            match memchr::memchr(b'\n', rest) {
                // The blank line is searched for from the request line's
                // end, which `find_blank_line` finds again.
                Some(_) => (self.line_complete, line_completed) = (true, true),
                // No line end: the header section cannot end either.
                None => self.resume = input.len(),
            }
        }
        let mut end = None;
        if self.line_complete {
            match find_blank_line(input, self.resume) {
                Ok(at) => end = Some(at),
                Err(resume) => self.resume = resume,
            }
        }
        #[cfg(test)]
        {
            let reached = end.unwrap_or(self.resume).max(self.resume);
            // The request line is searched twice on the read that ends it.
            let twice = if line_completed {
                reached - searched_from
            } else {
                0
            };
            self.examined += reached - searched_from + twice;
        }
        (line_completed, end)
    }
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

    fn try_decode(
        &mut self,
        input: &[u8],
        at_eof: bool,
    ) -> Result<Option<(Request, usize)>, HttpError> {
        let mut pending = match self.pending.take() {
            Some(pending) => pending,
            None => match self.head(input, at_eof)? {
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
        self.scan = HeadScan::default();
        let request = Request::from_parts(
            pending.method,
            pending.target,
            pending.version,
            pending.headers,
            body,
        );
        Ok(Some((request, end)))
    }

    /// The header section of the request at the start of `input`, parsed
    /// once it is complete: `None` while it is not.
    ///
    /// `httparse` parses the input on the first bytes (most requests come
    /// whole in one read: then that is all), and then only once what
    /// arrived since was searched ([`HeadScan`]) and holds the end of the
    /// request line (to refuse a bad one early) or of the header section,
    /// or at the end of the stream (`at_eof`, so that garbage is refused
    /// however the input is cut). Each byte is thus searched once and
    /// parsed a few times at most, rather than parsed again on every read.
    fn head(&mut self, input: &[u8], at_eof: bool) -> Result<Option<PartialRequest>, HttpError> {
        let max_bytes = self.limits.max_header_bytes();
        if self.scan.parsed_len == 0 || at_eof {
            if let Some(request) = self.parse_once(input)? {
                return Ok(Some(request));
            }
        }
        let (line_completed, end) = self.scan.search(input);
        if end.is_some_and(|end| end > max_bytes) {
            return Err(HttpError::HeaderSectionTooLarge { max: max_bytes });
        }
        if line_completed || end.is_some() {
            if let Some(request) = self.parse_once(input)? {
                return Ok(Some(request));
            }
            if let Some(end) = end {
                // httparse wants more than the blank line found (it never
                // does, but a search that gives up there must not spin).
                self.scan.resume = end;
            }
        }
        if input.len() > max_bytes {
            // The section is incomplete, and longer already than allowed.
            return Err(HttpError::HeaderSectionTooLarge { max: max_bytes });
        }
        Ok(None)
    }

    /// [`parse_head`], unless `input` was parsed at this length already
    /// (the reactor may hand the same input in again).
    fn parse_once(&mut self, input: &[u8]) -> Result<Option<PartialRequest>, HttpError> {
        if input.is_empty() || self.scan.parsed_len == input.len() {
            return Ok(None);
        }
        self.scan.parsed_len = input.len();
        #[cfg(test)]
        {
            self.scan.examined += input.len();
        }
        parse_head(input, &self.limits)
    }

    /// Whether the request being received (at the start of `input`) is a
    /// `HEAD` request, as far as its first bytes tell. Where its request
    /// line starts is known once the input was searched; else (when it was
    /// refused on its first parse) it is looked for here.
    fn receiving_head(&self, input: &[u8]) -> bool {
        if let Some(pending) = &self.pending {
            return pending.method == "HEAD";
        }
        let line_start = self
            .scan
            .line_start
            .or_else(|| input.iter().position(|&b| b != b'\r' && b != b'\n'));
        line_start
            .and_then(|start| input.get(start..))
            .is_some_and(|line| line.starts_with(b"HEAD "))
    }

    /// Decodes as [`decode`](Protocol::decode) and
    /// [`decode_eof`](Protocol::decode_eof) do.
    fn decode_at(
        &mut self,
        input: &[u8],
        at_eof: bool,
    ) -> Result<Option<(Request, usize)>, HttpError> {
        let decoded = self.try_decode(input, at_eof);
        match &decoded {
            Ok(Some(_)) => self.unfinished_is_head = false,
            // Searched already, unless the input is all empty lines so far
            // (then it is not HEAD yet, and is not searched again).
            Ok(None) => {
                self.unfinished_is_head =
                    self.scan.line_start.is_some() && self.receiving_head(input)
            }
            Err(_) => {
                self.unfinished_is_head = self.receiving_head(input);
                // Nothing more will be decoded on this connection.
                self.pending = None;
                self.scan = HeadScan::default();
                self.closing = true;
            }
        }
        decoded
    }
}

impl Protocol for HttpProtocol {
    type Request = Request;
    type Response = Response;
    type Error = HttpError;

    fn decode(&mut self, input: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        self.decode_at(input, false)
    }

    /// As [`decode`](Protocol::decode); besides, a header section left
    /// incomplete is parsed whole, so that garbage in it is refused with
    /// its status rather than dropped.
    fn decode_eof(&mut self, input: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        self.decode_at(input, true)
    }

    fn encode(&mut self, response: Response, output: &mut Vec<u8>) {
        // Error and timeout responses answer no decoded request: they close,
        // and they go without a body if the request they answer was HEAD.
        let answer = self.answers.pop_front();
        let head = answer.map_or(self.unfinished_is_head, |a| a.head);
        let keep_alive = answer.is_some_and(|a| a.keep_alive)
            && !response.asks_to_close()
            && !std::mem::take(&mut self.last_response);
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

    fn last_response(&mut self) {
        self.last_response = true;
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
        self.scan = HeadScan::default();
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
    let mut headers = Headers::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        headers.push_parsed(field.name, field.value);
    }

    check_target(method, target)?;
    let mut hosts = 0;
    let mut valid = true;
    for value in headers.get_all("host") {
        hosts += 1;
        valid &= is_valid_host(value);
    }
    if hosts > 1 || (version == 1 && hosts == 0) {
        return Err(HttpError::InvalidHost);
    }
    if !valid {
        return Err(HttpError::InvalidHostValue);
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
        check_chunked(headers)?;
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

/// Whether `method` may have `target` (RFC 9112 §3.2), `CONNECT` aside,
/// which is not supported.
fn check_target(method: &str, target: &str) -> Result<(), HttpError> {
    if method == "CONNECT" {
        return Err(HttpError::ConnectNotSupported);
    }
    if target.starts_with('/') || is_absolute_form(target) {
        return Ok(());
    }
    let reason = if target == "*" {
        if method == "OPTIONS" {
            return Ok(());
        }
        "`*` (asterisk-form) is for OPTIONS only"
    } else if target.contains(':') && !target.contains('/') {
        "`host:port` (authority-form) is for CONNECT only"
    } else {
        "neither a path (`/...`) nor an absolute URI (`http://host/...`)"
    };
    Err(HttpError::InvalidTarget { reason })
}

/// Whether `target` is an absolute URI with an authority
/// (`scheme://host...`), as requests to a proxy have: a server must
/// accept them (RFC 9112 §3.2.2). A URI without one (`urn:x`) is not
/// taken, as it cannot be told from an authority (`host:80`).
fn is_absolute_form(target: &str) -> bool {
    let Some((scheme, rest)) = target.split_once("://") else {
        return false;
    };
    // RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); and a
    // URI with an authority must not have an empty host (RFC 9110 §4.2.1).
    let mut scheme = scheme.bytes();
    scheme.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && !rest.starts_with(['/', '?', '#'])
}

/// Whether `value` is a `Host` field value (RFC 9112 §3.2): `uri-host [
/// ":" port ]` of RFC 3986, where the host is a bracketed IP literal or a
/// reg-name (which covers IPv4 addresses) and the port is digits. An
/// empty value is allowed (a request whose target has no authority).
fn is_valid_host(value: &[u8]) -> bool {
    let value = trim_ows(value);
    let port = match value.strip_prefix(b"[") {
        Some(bracketed) => {
            let Some(close) = bracketed.iter().position(|&b| b == b']') else {
                return false;
            };
            if !is_ip_literal(&bracketed[..close]) {
                return false;
            }
            match &bracketed[close + 1..] {
                [] => return true,
                [b':', port @ ..] => port,
                _ => return false,
            }
        }
        None => {
            let (host, port) = match value.iter().position(|&b| b == b':') {
                Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
                None => (value, None),
            };
            if !is_reg_name(host) {
                return false;
            }
            port.unwrap_or_default()
        }
    };
    // RFC 3986: port = *DIGIT (`host:` is allowed).
    port.iter().all(u8::is_ascii_digit)
}

/// RFC 3986 `reg-name`: `*( unreserved / pct-encoded / sub-delims )`.
fn is_reg_name(name: &[u8]) -> bool {
    let mut bytes = name.iter();
    while let Some(&b) = bytes.next() {
        let ok = if b == b'%' {
            bytes.next().is_some_and(u8::is_ascii_hexdigit)
                && bytes.next().is_some_and(u8::is_ascii_hexdigit)
        } else {
            is_unreserved_or_sub_delim(b)
        };
        if !ok {
            return false;
        }
    }
    true
}

/// RFC 3986 `unreserved / sub-delims`.
fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// RFC 3986 `IPv6address / IPvFuture`, the inside of `[...]`.
fn is_ip_literal(literal: &[u8]) -> bool {
    match literal {
        // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        [b'v' | b'V', rest @ ..] => {
            let Some(dot) = rest.iter().position(|&b| b == b'.') else {
                return false;
            };
            let (version, address) = (&rest[..dot], &rest[dot + 1..]);
            !version.is_empty()
                && version.iter().all(u8::is_ascii_hexdigit)
                && !address.is_empty()
                && address
                    .iter()
                    .all(|&b| b == b':' || is_unreserved_or_sub_delim(b))
        }
        _ => std::str::from_utf8(literal)
            .is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok()),
    }
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
    fn host_values_must_be_host_and_port() {
        let with = |host: &str| {
            let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            one(input.as_bytes()).map(|n| n.is_some())
        };
        for good in [
            "",
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::7]",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%2Fb",
            "sub-delims!$&'()*+,;=",
        ] {
            assert_eq!(with(good), Ok(true), "{good:?}");
        }
        for bad in [
            "bad host",
            "user@evil/x",
            "evil/x",
            "h:8x",
            "h:80:80",
            "[::1",
            "[::1]x",
            "[::1]:a",
            "[not-ip]",
            "[v1.]",
            "a%2",
            "a%zz",
            "h?q",
            "h#f",
        ] {
            assert_eq!(with(bad), Err(HttpError::InvalidHostValue), "{bad:?}");
        }
        // HTTP/1.0 needs no Host, but one that is there must be valid.
        assert_eq!(
            one(b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n"),
            Err(HttpError::InvalidHostValue)
        );
    }

    #[test]
    fn request_targets_by_form_and_method() {
        let with = |method: &str, target: &str| {
            let input = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let mut http = HttpProtocol::new();
            http.decode(input.as_bytes()).map(|decoded| {
                let (request, _) = decoded.expect("complete");
                (
                    request.path().to_owned(),
                    request.query().map(str::to_owned),
                )
            })
        };
        let path = |p: &str, q: Option<&str>| Ok((p.to_owned(), q.map(str::to_owned)));
        assert_eq!(with("GET", "/a?b"), path("/a", Some("b")));
        assert_eq!(with("GET", "//a"), path("//a", None));
        assert_eq!(with("GET", "http://h/a/b?c=d"), path("/a/b", Some("c=d")));
        assert_eq!(with("POST", "https://h:8443"), path("/", None));
        assert_eq!(with("GET", "HTTP://h?q"), path("/", Some("q")));
        assert_eq!(with("OPTIONS", "*"), path("*", None));
        assert_eq!(with("OPTIONS", "/x"), path("/x", None));
        for (method, target) in [
            ("GET", "*"),
            ("HEAD", "*"),
            ("GET", "t:80"),
            ("OPTIONS", "t:80"),
            ("GET", "example.com"),
            ("GET", "http:///no-host"),
            ("GET", "http://"),
            ("GET", "1http://h/"),
            ("GET", "h_t://h/"),
            ("GET", "urn:isbn:0451450523"),
            ("GET", "?q"),
        ] {
            assert!(
                matches!(with(method, target), Err(HttpError::InvalidTarget { .. })),
                "{method} {target}: {:?}",
                with(method, target)
            );
        }
        assert_eq!(with("CONNECT", "t:80"), Err(HttpError::ConnectNotSupported));
        assert_eq!(with("CONNECT", "/"), Err(HttpError::ConnectNotSupported));
        assert_eq!(HttpError::ConnectNotSupported.status(), 501);
    }

    #[test]
    fn a_header_section_trickled_byte_by_byte_is_searched_once() {
        let filler = format!("X-Filler: {}\r\n", "a".repeat(140)).repeat(90);
        let input = format!("\r\nGET / HTTP/1.1\r\nHost: h\r\n{filler}\r\nnext");
        let input = input.as_bytes();
        let head_len = input.len() - 4;
        assert!(head_len > 12 * 1024 && head_len < 16 * 1024, "{head_len}");
        let mut http = HttpProtocol::new();
        for len in 1..head_len {
            assert_eq!(http.decode(&input[..len]), Ok(None), "at {len}");
        }
        // The last decode parses the whole section: the work of the search
        // so far, plus the request line and the section parsed once each.
        let searched = http.scan.examined;
        let (request, consumed) = http.decode(&input[..head_len]).unwrap().unwrap();
        assert_eq!((consumed, request.headers().len()), (head_len, 91));
        // Parsing from the start on each read would take ~head_len² / 2
        // bytes (over 70 million here).
        assert!(
            searched <= 3 * head_len,
            "{searched} bytes examined for {head_len}"
        );

        // A read that ends inside the blank line (`\r\n\r` | `\n`) is
        // found all the same, once the last byte is in.
        let mut http = HttpProtocol::new();
        assert_eq!(http.decode(&input[..head_len - 1]), Ok(None));
        assert!(http.decode(&input[..head_len]).unwrap().is_some());
    }

    #[test]
    fn garbage_is_refused_on_the_first_bytes_on_the_request_line_and_at_the_end() {
        let mut http = HttpProtocol::new();
        assert!(matches!(
            http.decode(b"\x16\x03\x01"),
            Err(HttpError::Malformed { .. })
        ));

        let mut http = HttpProtocol::new();
        assert_eq!(http.decode(b"G"), Ok(None));
        assert_eq!(http.decode(b"GET / HTTP/1.1"), Ok(None));
        assert!(matches!(
            http.decode(b"GET / HTTP/1.1 extra\r"),
            Ok(None) | Err(HttpError::Malformed { .. })
        ));

        let mut http = HttpProtocol::new();
        assert_eq!(http.decode(b"G"), Ok(None));
        let line = http.decode(b"GET / HTTP/2.0\r\nHost: h\r\n");
        assert!(matches!(line, Err(HttpError::Malformed { .. })), "{line:?}");

        // Bad bytes in a field that comes after the request line are found
        // once the section is in, or at the end of the stream.
        let bad_field = b"GET / HTTP/1.1\r\nHost: h\r\nBad Field: x\r\n";
        let mut http = HttpProtocol::new();
        assert_eq!(http.decode(&bad_field[..3]), Ok(None));
        assert_eq!(http.decode(&bad_field[..20]), Ok(None));
        assert_eq!(http.decode(bad_field), Ok(None));
        assert!(matches!(
            http.decode_eof(bad_field),
            Err(HttpError::Malformed { .. })
        ));
    }

    #[test]
    fn the_error_response_to_a_head_request_has_no_body() {
        let answer = |input: &[u8]| {
            let mut http = HttpProtocol::new();
            let error = http.decode(input).unwrap_err();
            let response = http.error_response(&error).unwrap();
            let mut out = Vec::new();
            http.encode(response, &mut out);
            String::from_utf8(out).unwrap()
        };
        let head = answer(b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.ends_with("Content-Length: 16\r\n\r\n"), "{head}");
        let head = answer(b"\r\nHEAD / HTTP/1.1\r\nHost: a b\r\n\r\n");
        assert!(head.ends_with("Content-Length: 16\r\n\r\n"), "{head}");
        let get = answer(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n");
        assert!(
            get.ends_with("Content-Length: 16\r\n\r\n400 Bad Request\n"),
            "{get}"
        );

        // A HEAD whose header fields are late: its 408 has no body either.
        let mut http = HttpProtocol::new();
        assert_eq!(http.decode(b"HEAD / HTTP/1.1\r\nHo"), Ok(None));
        let response = http.timeout_response().unwrap();
        let mut out = Vec::new();
        http.encode(response, &mut out);
        assert!(out.ends_with(b"Content-Length: 20\r\n\r\n"), "{out:?}");
    }

    #[test]
    fn transfer_encodings() {
        let with = |te: &str| {
            let input = format!("POST / HTTP/1.1\r\nHost: h\r\n{te}\r\n\r\n0\r\n\r\n");
            one(input.as_bytes()).map(|n| n.is_some())
        };
        assert_eq!(with("Transfer-Encoding: chunked"), Ok(true));
        assert_eq!(with("Transfer-Encoding: CHUNKED"), Ok(true));
        assert_eq!(with("Transfer-Encoding: , chunked,"), Ok(true));
        for chunked_last in ["gzip, chunked", "gzip\r\nTransfer-Encoding: chunked"] {
            assert_eq!(
                with(&format!("Transfer-Encoding: {chunked_last}")),
                Err(HttpError::UnsupportedTransferEncoding),
                "{chunked_last}"
            );
        }
        for not_final in [
            "chunked, gzip",
            "chunked\r\nTransfer-Encoding: gzip",
            "gzip",
            "xchunked",
            "\"chunked\"",
            "chunked;q=1",
            "identity",
        ] {
            let te = format!("Transfer-Encoding: {not_final}");
            assert_eq!(with(&te), Err(HttpError::ChunkedNotFinal), "{not_final}");
            assert_eq!(HttpError::ChunkedNotFinal.status(), 400);
        }
        for twice in [
            "chunked\r\nTransfer-Encoding: chunked",
            "chunked, chunked",
            "chunked, gzip, chunked",
        ] {
            assert!(
                matches!(
                    with(&format!("Transfer-Encoding: {twice}")),
                    Err(HttpError::Malformed { .. })
                ),
                "{twice}"
            );
        }
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
            let input = format!("G / HTTP/1.0\n{}\n", "a:\n".repeat(fields));
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
