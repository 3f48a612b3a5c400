//! A decoded HTTP request.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::headers::{has_forbidden_in_value, is_forbidden_in_value, Headers};
use crate::remote::path_in;

/// An HTTP/1.x request, as [`HttpProtocol`](super::HttpProtocol) decodes
/// it: method, target (split into path and query), version, header fields
/// and the whole body (de-chunked).
///
/// # Examples
///
/// Requests come from the protocol; a test of a handler builds one:
///
/// ```
/// use milieu::http::Request;
///
/// let request = Request::new("POST", "/items?sort=asc#top")
///     .with_header("Content-Type", "text/plain")
///     .with_body("apple");
/// assert_eq!(request.path(), "/items");
/// assert_eq!(request.query(), Some("sort=asc"));
/// assert_eq!(request.header("content-type"), Some("text/plain"));
/// assert_eq!(request.body(), b"apple");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Borrowed for the standard methods (see [`method_name`]).
    method: Cow<'static, str>,
    /// Shared with the request's [`RequestInfo`](super::RequestInfo).
    target: Arc<str>,
    path: Range<usize>,
    query: Option<Range<usize>>,
    version: u8,
    headers: Headers,
    body: Vec<u8>,
    /// A `HEAD` request handed to the handler again as `GET`.
    head_as_get: bool,
}

impl Request {
    /// A request for `target` with `method`, HTTP/1.1, no header fields,
    /// no body.
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Request {
        let method: String = method.into();
        let method = match known_method(&method) {
            Some(known) => Cow::Borrowed(known),
            None => Cow::Owned(method),
        };
        let target: String = target.into();
        Request::from_parts(method, target.into(), 1, Headers::new(), Vec::new())
    }

    pub(crate) fn from_parts(
        method: Cow<'static, str>,
        target: Arc<str>,
        version: u8,
        headers: Headers,
        body: Vec<u8>,
    ) -> Request {
        let (path, query) = split_target(&target);
        Request {
            method,
            target,
            path,
            query,
            version,
            headers,
            body,
            head_as_get: false,
        }
    }

    /// This `HEAD` request as the `GET` that [`http::serve`](super::serve)
    /// hands to a handler that did not answer `HEAD` itself.
    pub(crate) fn head_as_get(mut self) -> Request {
        self.method = Cow::Borrowed("GET");
        self.head_as_get = true;
        self
    }

    /// Adds a header field. Control characters (CR, LF, NUL, ...) are
    /// removed from `value`; a `name` that is not a token is ignored.
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        let value = strip_controls(value.as_ref());
        let _ = self.headers.append_clean_value(name, &value);
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the minor version: 0 for HTTP/1.0, 1 (the default) for
    /// HTTP/1.1.
    pub fn with_version(mut self, minor: u8) -> Request {
        self.version = minor.min(1);
        self
    }

    /// The method (`GET`, `POST`, ...), case as sent (methods are case
    /// sensitive). `GET` for a `HEAD` request that
    /// [`http::serve`](super::serve) hands to the handler again as `GET`
    /// ([`is_head_as_get`](Request::is_head_as_get)).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether this `GET` is a `HEAD` request that
    /// [`http::serve`](super::serve) hands to the handler as `GET`, since
    /// the handler answered it with 405 or 501: the response's body will
    /// not be sent, only its header fields and `Content-Length`. A
    /// handler may use it to skip work the header fields do not need; one
    /// that leaves the body out then has a wrong `Content-Length`, and
    /// should rather answer `HEAD` itself.
    pub fn is_head_as_get(&self) -> bool {
        self.head_as_get
    }

    /// The request target as sent: `/path?query` mostly, also an absolute
    /// URI (`http://host/path?query`, as sent to a proxy) or `*` (for
    /// `OPTIONS`), the forms [`HttpProtocol`](super::HttpProtocol) accepts.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path of the target, without query or fragment: `/a/b` for
    /// `/a/b?c` and for `http://host/a/b?c`; `/` for `http://host`. For
    /// the authority and `*` forms, the whole target. Not percent-decoded.
    pub fn path(&self) -> &str {
        path_in(&self.target, &self.path)
    }

    /// What a [`RequestInfo`](super::RequestInfo) keeps of the request:
    /// method, target and the path's range in it, shared, not copied.
    pub(crate) fn info_parts(&self) -> (Cow<'static, str>, Arc<str>, Range<usize>) {
        (
            self.method.clone(),
            Arc::clone(&self.target),
            self.path.clone(),
        )
    }

    /// The query of the target (after `?`, before any `#`), if any. Not
    /// percent-decoded.
    pub fn query(&self) -> Option<&str> {
        self.query.clone().and_then(|q| self.target.get(q))
    }

    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The header fields, in the order received.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first header field named `name` (any ASCII case), if its value
    /// is UTF-8. See [`Headers`] for the rest.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_str(name)
    }

    /// The body: `Content-Length` bytes, or the data of a chunked body
    /// (chunk extensions and trailer fields are dropped).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, taken out.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("version", &format_args!("HTTP/1.{}", self.version))
            .field("headers", &self.headers)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .field("head_as_get", &self.head_as_get)
            .finish()
    }
}

/// `method` as a `Cow`: the methods of RFC 9110 and `PATCH` borrow a
/// static string, so the usual request allocates nothing for its method.
pub(crate) fn method_name(method: &str) -> Cow<'static, str> {
    match known_method(method) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(method.to_owned()),
    }
}

/// The static string for one of the methods [`method_name`] borrows.
fn known_method(method: &str) -> Option<&'static str> {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.iter().find(|known| **known == method).copied()
}

/// The byte ranges of path and query in `target`.
fn split_target(target: &str) -> (Range<usize>, Option<Range<usize>>) {
    let bytes = target.as_bytes();
    // Absolute form: the path starts at the first `/` after `://`.
    let start = if bytes.first() == Some(&b'/') {
        0
    } else if let Some(scheme_end) = target.find("://") {
        let authority = scheme_end + 3;
        let tail = &target[authority..];
        match tail.find(['/', '?', '#']) {
            Some(i) => authority + i,
            None => target.len(),
        }
    } else {
        // Authority form (`host:port`) or `*`: the target is the path.
        return (0..target.len(), None);
    };
    let end_of = |from: usize, stops: &[char]| {
        target[from..]
            .find(stops)
            .map_or(target.len(), |i| from + i)
    };
    let path_end = end_of(start, &['?', '#']);
    let query = (bytes.get(path_end) == Some(&b'?')).then(|| {
        let from = path_end + 1;
        from..end_of(from, &['#'])
    });
    (start..path_end, query)
}

/// `value` without control characters (those [`Headers`] refuse):
/// borrowed when it has none, as nearly every value does (a response's
/// `trace-id` on every request must not pay for a filtered copy).
pub(crate) fn strip_controls(value: &[u8]) -> Cow<'_, [u8]> {
    if !has_forbidden_in_value(value) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .iter()
            .copied()
            .filter(|&b| !is_forbidden_in_value(b))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::Request;

    fn split(target: &str) -> (String, Option<String>) {
        let r = Request::new("GET", target);
        (r.path().to_owned(), r.query().map(str::to_owned))
    }

    #[test]
    fn targets_split_into_path_and_query() {
        let s = |p: &str, q: Option<&str>| (p.to_owned(), q.map(str::to_owned));
        assert_eq!(split("/"), s("/", None));
        assert_eq!(split("/a/b?x=1&y"), s("/a/b", Some("x=1&y")));
        assert_eq!(split("/a?"), s("/a", Some("")));
        assert_eq!(split("/a#frag?no"), s("/a", None));
        assert_eq!(split("/a?q#frag"), s("/a", Some("q")));
        assert_eq!(split("http://example.com"), s("/", None));
        assert_eq!(split("http://example.com/p?q"), s("/p", Some("q")));
        assert_eq!(split("http://example.com?q"), s("/", Some("q")));
        assert_eq!(split("example.com:443"), s("example.com:443", None));
        assert_eq!(split("*"), s("*", None));
        assert_eq!(split(""), s("", None));
    }

    #[test]
    fn standard_methods_are_borrowed_and_others_kept_as_sent() {
        use std::borrow::Cow;
        assert!(matches!(super::method_name("GET"), Cow::Borrowed("GET")));
        assert!(matches!(
            super::method_name("PATCH"),
            Cow::Borrowed("PATCH")
        ));
        // Methods are case sensitive: `get` is not `GET`.
        assert!(matches!(super::method_name("get"), Cow::Owned(m) if m == "get"));
        assert_eq!(Request::new("PROPFIND", "/").method(), "PROPFIND");
        assert_eq!(Request::new("GET", "/").method(), "GET");
    }

    #[test]
    fn built_requests_strip_control_characters_from_header_values() {
        let r = Request::new("GET", "/")
            .with_header("X", "a\r\nb")
            .with_header("bad name", "v");
        assert_eq!(r.header("x"), Some("ab"));
        assert_eq!(r.headers().len(), 1);
    }
}
