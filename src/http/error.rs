//! Why a request could not be decoded, and the status each reason maps to.

use std::error::Error;
use std::fmt;

/// Why [`HttpProtocol`](super::HttpProtocol) could not decode a request.
///
/// Each error maps to the status of the response sent before the
/// connection closes ([`status`](HttpError::status)): the reactor sends
/// [`Protocol::error_response`](crate::reactor::Protocol::error_response),
/// which carries `Connection: close`, then closes with
/// [`CloseReason::Protocol`](crate::reactor::CloseReason::Protocol)
/// holding the error. `Display` is meant for the server's log; the client
/// gets the status line and its reason phrase only.
///
/// # Examples
///
/// ```
/// use milieu::http::{HttpError, HttpProtocol};
/// use milieu::reactor::Protocol;
///
/// let mut http = HttpProtocol::new();
/// let err = http.decode(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n").unwrap_err();
/// assert_eq!(err, HttpError::InvalidContentLength);
/// assert_eq!(err.status(), 400);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line or a header field is not HTTP/1.x syntax (as
    /// `httparse` judges it), or the framing headers contradict the
    /// version: 400.
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The request line and header fields took more than `max` bytes: 431.
    HeaderSectionTooLarge {
        /// [`HttpLimits::max_header_bytes`](super::HttpLimits::max_header_bytes).
        max: usize,
    },
    /// More than `max` header fields (or trailer fields): 431.
    TooManyHeaders {
        /// [`HttpLimits::max_headers`](super::HttpLimits::max_headers).
        max: usize,
    },
    /// The body is longer than `max` bytes (known from `Content-Length`
    /// before the body arrives, or counted chunk by chunk): 413.
    BodyTooLarge {
        /// [`HttpLimits::max_body`](super::HttpLimits::max_body).
        max: usize,
    },
    /// A chunked body's framing (chunk-size lines with their extensions,
    /// the CRLF after each chunk's data) took more than `max` bytes
    /// besides the data: 413.
    ChunkFramingTooLarge {
        /// [`HttpLimits::max_chunk_framing`](super::HttpLimits::max_chunk_framing).
        max: usize,
    },
    /// A chunked body's trailer section took more than `max` bytes: 431.
    TrailerSectionTooLarge {
        /// [`HttpLimits::max_header_bytes`](super::HttpLimits::max_header_bytes),
        /// which bounds the trailer section as it bounds the header section.
        max: usize,
    },
    /// A `Transfer-Encoding` that ends in `chunked` with another coding
    /// before it (`gzip, chunked`): the body's length is known, but not
    /// how to decode it: 501.
    UnsupportedTransferEncoding,
    /// A `Transfer-Encoding` whose final coding is not `chunked`
    /// (`gzip`, `chunked, gzip`, `identity`, ...): the body's length cannot
    /// be determined, so RFC 9112 §6.3 requires 400 and a close.
    ChunkedNotFinal,
    /// A `Content-Length` that is not a decimal number: 400.
    InvalidContentLength,
    /// Several `Content-Length` values that differ: 400.
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the two framings
    /// could be read differently by a proxy and by us (request smuggling),
    /// so neither is trusted: 400.
    ContentLengthWithTransferEncoding,
    /// A chunked body that does not follow the chunked syntax: 400.
    InvalidChunk {
        /// What is wrong.
        reason: &'static str,
    },
    /// An HTTP/1.1 request without a `Host` field, or with several: 400.
    InvalidHost,
    /// A `Host` field whose value is not `host[:port]` (RFC 9112 §3.2,
    /// the host a name, an IPv4 address or a bracketed IP literal as in
    /// RFC 3986, the port digits): 400.
    InvalidHostValue,
    /// A request target that is not one the method may have (RFC 9112
    /// §3.2): a path (`/a?b`) or an absolute URI (`http://host/a?b`) for
    /// every method, `*` for `OPTIONS` only: 400.
    InvalidTarget {
        /// What is wrong.
        reason: &'static str,
    },
    /// A `CONNECT` request: this server opens no tunnels: 501.
    ConnectNotSupported,
}

impl HttpError {
    /// The response status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeaderSectionTooLarge { .. }
            | HttpError::TooManyHeaders { .. }
            | HttpError::TrailerSectionTooLarge { .. } => 431,
            HttpError::BodyTooLarge { .. } | HttpError::ChunkFramingTooLarge { .. } => 413,
            HttpError::UnsupportedTransferEncoding | HttpError::ConnectNotSupported => 501,
            HttpError::Malformed { .. }
            | HttpError::InvalidContentLength
            | HttpError::ConflictingContentLength
            | HttpError::ContentLengthWithTransferEncoding
            | HttpError::ChunkedNotFinal
            | HttpError::InvalidChunk { .. }
            | HttpError::InvalidHost
            | HttpError::InvalidHostValue
            | HttpError::InvalidTarget { .. } => 400,
        }
    }

    /// The error for what `httparse` reported.
    pub(crate) fn from_httparse(error: httparse::Error, max_headers: usize) -> HttpError {
        let reason = match error {
            httparse::Error::TooManyHeaders => {
                return HttpError::TooManyHeaders { max: max_headers }
            }
            httparse::Error::HeaderName => "invalid byte in a header name",
            httparse::Error::HeaderValue => "invalid byte in a header value",
            httparse::Error::NewLine => "invalid line ending",
            httparse::Error::Status => "invalid status",
            httparse::Error::Token => "invalid method or request target",
            httparse::Error::Version => "invalid HTTP version (HTTP/1.0 and HTTP/1.1 are served)",
        };
        HttpError::Malformed { reason }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Malformed { reason } => write!(f, "malformed HTTP request: {reason}"),
            HttpError::HeaderSectionTooLarge { max } => write!(
                f,
                "request line and headers longer than {max} bytes \
                 (HttpLimits::with_max_header_bytes raises the limit)"
            ),
            HttpError::TooManyHeaders { max } => write!(
                f,
                "more than {max} header fields (HttpLimits::with_max_headers raises the limit)"
            ),
            HttpError::BodyTooLarge { max } => write!(
                f,
                "request body longer than {max} bytes (HttpLimits::with_max_body raises the limit)"
            ),
            HttpError::ChunkFramingTooLarge { max } => write!(
                f,
                "chunked body framing (chunk-size lines, extensions) longer than {max} bytes \
                 (HttpLimits::with_max_chunk_framing raises the limit)"
            ),
            HttpError::TrailerSectionTooLarge { max } => write!(
                f,
                "trailer section of a chunked body longer than {max} bytes \
                 (bounded by HttpLimits::with_max_header_bytes)"
            ),
            HttpError::UnsupportedTransferEncoding => f.write_str(
                "unsupported Transfer-Encoding: only `chunked` is decoded (send the body \
                 with Content-Length or as `Transfer-Encoding: chunked`)",
            ),
            HttpError::ChunkedNotFinal => f.write_str(
                "Transfer-Encoding does not end in `chunked`: the body's length cannot be \
                 determined (RFC 9112 section 6.3)",
            ),
            HttpError::InvalidContentLength => {
                f.write_str("Content-Length is not a decimal number of bytes")
            }
            HttpError::ConflictingContentLength => {
                f.write_str("several Content-Length values that differ")
            }
            HttpError::ContentLengthWithTransferEncoding => f.write_str(
                "both Content-Length and Transfer-Encoding: refused, as the framing is \
                 ambiguous (request smuggling)",
            ),
            HttpError::InvalidChunk { reason } => write!(f, "invalid chunked body: {reason}"),
            HttpError::InvalidHost => {
                f.write_str("an HTTP/1.1 request needs exactly one Host header field")
            }
            HttpError::InvalidHostValue => f.write_str(
                "the Host header field is not `host[:port]` (a name, an IPv4 address or a \
                 bracketed IP literal, then digits)",
            ),
            HttpError::InvalidTarget { reason } => write!(f, "invalid request target: {reason}"),
            HttpError::ConnectNotSupported => {
                f.write_str("CONNECT is not supported: this server opens no tunnels")
            }
        }
    }
}

impl Error for HttpError {}
