//! An HTTP response, and its encoding.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::headers::{is_forbidden_in_value, Headers};
use super::request::strip_controls;

/// An HTTP response: status, header fields, body.
///
/// [`HttpProtocol`](super::HttpProtocol) writes the framing itself:
/// `Content-Length` from the body (none for 1xx, 204 and 304), and
/// `Connection` from the keep-alive rules, so fields of those names set
/// here are not sent (except that `Connection: close` here closes the
/// connection after this response). The response to a `HEAD` request
/// is sent without its body.
///
/// It adds a `Date` field (RFC 9110 §6.6.1: the time the response is
/// sent, as an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) unless the
/// response has one already: a `Date` set here is sent as it is. The
/// value is formatted once a second on each thread and reused in between,
/// so a response costs one read of the clock. A clock set before 1970 or
/// past 9999 gives no `Date`, as the RFC asks of a server without a clock.
///
/// Nothing a handler puts in a response can break its framing: header
/// names must be tokens and values are stripped of control characters
/// ([`with_header`](Response::with_header)), and so is the reason phrase.
///
/// # Examples
///
/// ```
/// use milieu::http::Response;
///
/// let ok = Response::text(200, "hello").with_header("Cache-Control", "no-store");
/// assert_eq!(ok.status_code(), 200);
/// assert_eq!(ok.reason(), "OK");
/// assert_eq!(ok.headers().get_str("content-type"), Some("text/plain; charset=utf-8"));
///
/// let missing = Response::status(404);
/// assert_eq!((missing.reason(), missing.body()), ("Not Found", &b""[..]));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    reason: Option<Cow<'static, str>>,
    headers: Headers,
    body: Vec<u8>,
}

impl Response {
    /// A response with status `code`, no header fields and no body.
    ///
    /// A final response has a status from 200 to 599: any other `code`
    /// (including the interim 1xx, which this layer sends by itself) is
    /// turned into 500, with an error logged through `tracing`.
    pub fn status(code: u16) -> Response {
        let status = if (200..=599).contains(&code) {
            code
        } else {
            tracing::error!(
                target: "milieu::http",
                code,
                "a response needs a final status (200-599); sending 500 instead"
            );
            500
        };
        Response {
            status,
            reason: None,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response with status `code`.
    pub fn text(code: u16, body: impl Into<String>) -> Response {
        let mut response = Response::status(code).with_body(body.into());
        response
            .headers
            .push_static("Content-Type", b"text/plain; charset=utf-8");
        response
    }

    /// An `application/json` response with status `code`: `value`
    /// serialized with `serde_json` (feature `serde`).
    ///
    /// A value that cannot be serialized (a map with non-string keys, a
    /// `Serialize` impl that fails) gives a `500` text response instead,
    /// and the error is logged through `tracing`.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::http::Response;
    ///
    /// let response = Response::json(201, &serde_json::json!({ "id": 7 }));
    /// assert_eq!(response.body(), br#"{"id":7}"#);
    /// assert_eq!(response.headers().get_str("Content-Type"), Some("application/json"));
    /// ```
    #[cfg(feature = "serde")]
    pub fn json<T: serde::Serialize + ?Sized>(code: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => {
                let mut response = Response::status(code).with_body(body);
                response
                    .headers
                    .push_static("Content-Type", b"application/json");
                response
            }
            Err(error) => {
                tracing::error!(
                    target: "milieu::http",
                    %error,
                    "a JSON response body could not be serialized; sending 500 instead"
                );
                Response::text(500, "response could not be serialized\n")
            }
        }
    }

    /// Adds a header field. Control characters (CR, LF, NUL, ...) are
    /// removed from `value`, so it cannot end the field early; a `name`
    /// that is not an HTTP token is dropped, with an error logged through
    /// `tracing`. [`headers_mut`](Response::headers_mut) gives the
    /// checked [`Headers::append`], which refuses both instead.
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Response {
        let value = strip_controls(value.as_ref());
        if let Err(error) = self.headers.append_clean_value(name, &value) {
            tracing::error!(target: "milieu::http", %error, "response header field dropped");
        }
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// Replaces the reason phrase (default: the standard one for the
    /// status, as [`reason`](Response::reason) shows). Control characters
    /// are removed.
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Response {
        let reason = reason.into();
        self.reason = Some(if reason.bytes().any(is_forbidden_in_value) {
            Cow::Owned(
                reason
                    .chars()
                    .filter(|c| !c.is_control() || *c == '\t')
                    .collect(),
            )
        } else {
            reason
        });
        self
    }

    /// The status code.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The reason phrase: the one set with
    /// [`with_reason`](Response::with_reason), or the standard one.
    pub fn reason(&self) -> &str {
        match &self.reason {
            Some(reason) => reason,
            None => reason_phrase(self.status),
        }
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header fields, to change them with the checked methods of
    /// [`Headers`].
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the response asks to close the connection after it.
    pub(crate) fn asks_to_close(&self) -> bool {
        self.headers.has_token("connection", "close")
    }

    /// Appends the response to `out`: the body is left out for `HEAD`
    /// (`head_only`), and `connection` is the `Connection` field to send.
    pub(crate) fn encode(self, head_only: bool, connection: Option<&str>, out: &mut Vec<u8>) {
        let status = if (100..=999).contains(&self.status) {
            self.status
        } else {
            500
        };
        let has_body = !matches!(status, 100..=199 | 204 | 304);
        out.reserve(128 + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, usize::from(status));
        out.push(b' ');
        match &self.reason {
            // Checked when set; checked again here, as a line break in the
            // status line would be response splitting.
            Some(reason) => out.extend(reason.bytes().filter(|&b| !is_forbidden_in_value(b))),
            None => out.extend_from_slice(reason_phrase(status).as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
        let mut has_date = false;
        for (name, value) in self.headers.iter() {
            let framing = ["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f));
            if !framing {
                has_date |= name.eq_ignore_ascii_case("date");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
        if !has_date {
            DATE.with_borrow_mut(|date| {
                if let Some(line) = date.line_at(SystemTime::now()) {
                    out.extend_from_slice(line);
                }
            });
        }
        if let Some(connection) = connection {
            out.extend_from_slice(b"Connection: ");
            out.extend_from_slice(connection.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if has_body {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, self.body.len());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if has_body && !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

thread_local! {
    /// This thread's `Date` value, formatted once a second (as hyper does):
    /// per thread, so that reactor threads share nothing for it.
    static DATE: RefCell<DateCache> = const { RefCell::new(DateCache::new()) };
}

/// The length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

/// The length of the whole field line: `Date: `, the value, CRLF.
const DATE_LINE_LEN: usize = "Date: ".len() + DATE_LEN + 2;

/// The first second of the year 10000, which an IMF-fixdate cannot say.
const YEAR_10000: u64 = 253_402_300_800;

/// A `Date` field value, formatted again only when the second changes.
#[derive(Debug)]
struct DateCache {
    /// Seconds since the epoch of `line`; `None` before the first.
    second: Option<u64>,
    /// The whole field line, so that a response copies it in one go.
    line: [u8; DATE_LINE_LEN],
    /// How many times `value` was formatted (the tests count them).
    #[cfg(test)]
    formatted: usize,
}

impl DateCache {
    const fn new() -> DateCache {
        DateCache {
            second: None,
            line: [0; DATE_LINE_LEN],
            #[cfg(test)]
            formatted: 0,
        }
    }

    /// The value for `now`: the one of the last call if it fell in the
    /// same second, else formatted anew. `None` for a time an IMF-fixdate
    /// cannot say (before 1970, from the year 10000 on), which
    /// `httpdate` would panic on.
    #[cfg(test)]
    fn at(&mut self, now: SystemTime) -> Option<&[u8; DATE_LEN]> {
        let line = self.line_at(now)?;
        line["Date: ".len()..][..DATE_LEN].try_into().ok()
    }

    /// [`at`](DateCache::at) as the whole field line, `Date: ...\r\n`.
    fn line_at(&mut self, now: SystemTime) -> Option<&[u8; DATE_LINE_LEN]> {
        let second = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        if second >= YEAR_10000 {
            return None;
        }
        if self.second != Some(second) {
            let formatted = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
            let value = formatted.as_bytes().get(..DATE_LEN)?;
            let (name, rest) = self.line.split_at_mut("Date: ".len());
            name.copy_from_slice(b"Date: ");
            rest[..DATE_LEN].copy_from_slice(value);
            rest[DATE_LEN..].copy_from_slice(b"\r\n");
            self.second = Some(second);
            #[cfg(test)]
            {
                self.formatted += 1;
            }
        }
        Some(&self.line)
    }
}

/// Appends `n` in decimal. Every response has a status code and most a
/// `Content-Length`; `write!` costs a measurable share of a small
/// response's encoding, this a few divisions.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20]; // usize::MAX has 20 digits
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason())
            .field("headers", &self.headers)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .finish()
    }
}

/// The standard reason phrase of `status` (RFC 9110 and common
/// extensions), or `""` for a code without one.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::{push_decimal, DateCache, Response, DATE_LEN, YEAR_10000};

    #[test]
    fn decimals_match_display() {
        let mut values = vec![
            0,
            1,
            9,
            10,
            99,
            100,
            404,
            65_535,
            usize::MAX - 1,
            usize::MAX,
        ];
        values.extend((0..64).map(|shift| 1usize << shift));
        for n in values {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    /// The response's bytes, without its `Date` field, which must be there
    /// once, an IMF-fixdate.
    fn encoded(response: Response, head_only: bool, connection: Option<&str>) -> String {
        let mut out = Vec::new();
        response.encode(head_only, connection, &mut out);
        let text = String::from_utf8(out).unwrap();
        let at = text.find("\r\nDate: ").expect("a Date field") + 2;
        let line = &text[at..at + "Date: ".len() + DATE_LEN + 2];
        let value = &line["Date: ".len()..line.len() - 2];
        assert!(line.ends_with("\r\n"), "{text}");
        let parsed = httpdate::parse_http_date(value).map(httpdate::fmt_http_date);
        assert_eq!(parsed.ok().as_deref(), Some(value), "an IMF-fixdate");
        let rest = [&text[..at], &text[at + line.len()..]].concat();
        assert!(!rest.contains("Date: "), "{text}");
        rest
    }

    #[test]
    fn a_text_response_has_its_length_and_type() {
        let text = encoded(Response::text(200, "hi"), false, None);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn the_date_follows_the_handlers_fields_unless_it_set_its_own() {
        let mut out = Vec::new();
        Response::status(200)
            .with_header("X", "1")
            .encode(false, Some("close"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nX: 1\r\nDate: "),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            "{text}"
        );

        let own = "Tue, 15 Nov 1994 08:12:31 GMT";
        let mut out = Vec::new();
        Response::status(200)
            .with_header("date", own)
            .encode(false, None, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!("HTTP/1.1 200 OK\r\ndate: {own}\r\nContent-Length: 0\r\n\r\n")
        );
    }

    #[test]
    fn the_date_is_formatted_once_a_second() {
        let mut cache = DateCache::new();
        let noon = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let expected = b"Sun, 06 Nov 1994 08:49:37 GMT";
        for millis in [0, 1, 500, 999] {
            let now = noon + Duration::from_millis(millis);
            assert_eq!(cache.at(now), Some(expected));
        }
        assert_eq!(cache.formatted, 1, "one second, formatted once");
        assert_eq!(
            cache.at(noon + Duration::from_secs(1)),
            Some(b"Sun, 06 Nov 1994 08:49:38 GMT")
        );
        assert_eq!(cache.formatted, 2);
        // A clock set back is followed too.
        assert_eq!(cache.at(noon), Some(expected));
        assert_eq!(cache.formatted, 3);
        assert_eq!(cache.at(SystemTime::now()).map(|d| d.len()), Some(DATE_LEN));
    }

    #[test]
    fn a_clock_an_imf_fixdate_cannot_say_gives_no_date_and_no_panic() {
        let mut cache = DateCache::new();
        assert_eq!(cache.at(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(cache.at(UNIX_EPOCH + Duration::from_secs(YEAR_10000)), None);
        let last = UNIX_EPOCH + Duration::from_secs(YEAR_10000 - 1);
        assert_eq!(cache.at(last), Some(b"Fri, 31 Dec 9999 23:59:59 GMT"));
        assert_eq!(cache.at(UNIX_EPOCH), Some(b"Thu, 01 Jan 1970 00:00:00 GMT"));
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let text = encoded(Response::text(200, "hello"), true, Some("close"));
        assert!(
            text.ends_with("Connection: close\r\nContent-Length: 5\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn no_content_and_not_modified_have_no_length_and_no_body() {
        for code in [204, 304] {
            let text = encoded(Response::status(code).with_body("x"), false, None);
            assert!(!text.contains("Content-Length"), "{text}");
            assert!(text.ends_with("\r\n\r\n"), "{text}");
        }
    }

    #[test]
    fn framing_fields_set_by_the_handler_are_not_sent() {
        let response = Response::text(200, "abc")
            .with_header("Content-Length", "999")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("Connection", "keep-alive");
        let text = encoded(response, false, None);
        assert!(!text.contains("999") && !text.contains("chunked"), "{text}");
        assert!(!text.contains("Connection"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
    }

    #[test]
    fn header_injection_is_impossible() {
        let response = Response::status(200)
            .with_header("X-A", "1\r\nSet-Cookie: evil=1")
            .with_header("X-B\r\nSet-Cookie", "evil=2")
            .with_reason("OK\r\nSet-Cookie: evil=3");
        let text = encoded(response, false, None);
        assert_eq!(text.matches("\r\n").count(), 4, "{text}");
        assert!(
            text.starts_with("HTTP/1.1 200 OKSet-Cookie: evil=3\r\n"),
            "{text}"
        );
        assert!(text.contains("X-A: 1Set-Cookie: evil=1\r\n"), "{text}");
        assert!(!text.contains("X-B"), "{text}");
        let mut checked = Response::status(200);
        assert!(checked.headers_mut().append("X", "a\nb").is_err());
    }

    #[test]
    fn only_final_statuses_are_accepted() {
        assert_eq!(Response::status(100).status_code(), 500);
        assert_eq!(Response::status(600).status_code(), 500);
        assert_eq!(Response::status(0).status_code(), 500);
        assert_eq!(Response::status(299).reason(), "");
        assert_eq!(
            Response::status(418).with_reason("I'm a teapot").reason(),
            "I'm a teapot"
        );
    }
}
