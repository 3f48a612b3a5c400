//! What can go wrong with a request: [`ClientError`], and
//! [`ResponseError`] for a response the client refuses.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::http::{HttpError, InvalidHeader};
use crate::Missing;

/// Why a request sent by a [`Client`](super::Client) failed.
///
/// Each variant says which step failed: building the request, finding
/// a reactor, resolving, connecting, waiting for a pooled connection,
/// writing, reading, or the response itself. A timeout names the one
/// that passed ([`ConnectTimeout`](ClientError::ConnectTimeout),
/// [`WriteTimeout`](ClientError::WriteTimeout),
/// [`ReadTimeout`](ClientError::ReadTimeout),
/// [`PoolTimeout`](ClientError::PoolTimeout)).
///
/// # Examples
///
/// ```
/// use milieu::http::{Client, ClientError};
/// use milieu::reactor::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let client = Client::new();
/// let error = reactor
///     .run_until(async move { client.get("https://example.com/").await })?
///     .unwrap_err();
/// assert!(matches!(&error, ClientError::UnsupportedScheme { scheme } if scheme == "https"));
/// assert!(error.to_string().contains("TLS"), "{error}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http://host[:port]/path?query` (see the
    /// [module docs](super#urls)).
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The URL's scheme is not `http`: `https` needs TLS, which this
    /// client does not speak.
    UnsupportedScheme {
        /// The scheme, in lower case.
        scheme: String,
    },
    /// The method is not an HTTP token (RFC 9110 §9.1).
    InvalidMethod {
        /// The method as given.
        method: String,
    },
    /// A header field refused: its name is not a token, or its value
    /// holds a control character.
    InvalidHeader(InvalidHeader),
    /// The request cannot be sent as it is.
    InvalidRequest {
        /// What is wrong.
        reason: &'static str,
    },
    /// The request was sent outside any reactor's context, and the
    /// client was built without a [`Handle`](crate::reactor::Handle)
    /// ([`ClientBuilder::handle`](super::ClientBuilder::handle)).
    NoReactor(Missing),
    /// The host name could not be resolved to an address.
    Resolve {
        /// The host name.
        host: String,
        /// Why (`NotFound` if the name resolved to no address).
        error: io::Error,
    },
    /// No address of the host accepted the connection; `addr` is the last
    /// one tried.
    Connect {
        /// The address last tried.
        addr: SocketAddr,
        /// Why it failed.
        error: io::Error,
    },
    /// Resolving the host and connecting took longer than
    /// [`ClientBuilder::connect_timeout`](super::ClientBuilder::connect_timeout).
    ConnectTimeout {
        /// The timeout.
        after: Duration,
    },
    /// The request was not handed to the operating system within
    /// [`ClientBuilder::write_timeout`](super::ClientBuilder::write_timeout):
    /// the server does not read.
    WriteTimeout {
        /// The timeout.
        after: Duration,
    },
    /// No byte of the response arrived for
    /// [`ClientBuilder::read_timeout`](super::ClientBuilder::read_timeout).
    ReadTimeout {
        /// The timeout.
        after: Duration,
    },
    /// Every connection the pool allows to the origin stayed busy for
    /// [`ClientBuilder::pool_timeout`](super::ClientBuilder::pool_timeout).
    PoolTimeout {
        /// The timeout.
        after: Duration,
    },
    /// The server closed the connection (end of stream or reset) before
    /// any byte of the response. The request may or may not have been
    /// processed.
    ///
    /// On a connection `reused` from the pool, this is how a server that
    /// closed an idle connection shows while a request is on its way: an
    /// idempotent request is then retried once on a new connection, and
    /// this error is what the retry ran into; other requests are never
    /// sent twice, and report it at once (see the
    /// [module docs](super#retries)).
    ClosedBeforeResponse {
        /// The connection came from the pool (it served a request before).
        reused: bool,
    },
    /// The connection ended (end of stream or reset) in the middle of the
    /// response: its header section or its body is incomplete.
    IncompleteResponse,
    /// The response is malformed, ambiguous, or over this client's limits.
    InvalidResponse(ResponseError),
    /// Another I/O error on the connection.
    Io(io::Error),
}

impl ClientError {
    /// Whether a timeout passed (connect, write, read or pool).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::ConnectTimeout { .. }
                | ClientError::WriteTimeout { .. }
                | ClientError::ReadTimeout { .. }
                | ClientError::PoolTimeout { .. }
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidUrl { url, reason } => {
                write!(f, "invalid URL {url:?}: {reason}")
            }
            ClientError::UnsupportedScheme { scheme } => write!(
                f,
                "unsupported URL scheme {scheme:?}: this client speaks plain HTTP/1.1 only \
                 (`http://`), no TLS"
            ),
            ClientError::InvalidMethod { method } => write!(
                f,
                "invalid request method {method:?}: a method is a token (letters, digits, \
                 !#$%&'*+-.^_`|~)"
            ),
            ClientError::InvalidHeader(error) => write!(f, "invalid request: {error}"),
            ClientError::InvalidRequest { reason } => write!(f, "invalid request: {reason}"),
            ClientError::NoReactor(_) => f.write_str(
                "no reactor to send the request on: send it from code a reactor runs, or \
                 give the client one with ClientBuilder::handle",
            ),
            ClientError::Resolve { host, error } => {
                write!(f, "could not resolve host {host:?}: {error}")
            }
            ClientError::Connect { addr, error } => {
                write!(f, "could not connect to {addr}: {error}")
            }
            ClientError::ConnectTimeout { after } => write!(
                f,
                "connect timed out after {after:?} (ClientBuilder::connect_timeout)"
            ),
            ClientError::WriteTimeout { after } => write!(
                f,
                "write timed out: the request was not sent within {after:?}, the server does \
                 not read (ClientBuilder::write_timeout)"
            ),
            ClientError::ReadTimeout { after } => write!(
                f,
                "read timed out: no byte of the response for {after:?} \
                 (ClientBuilder::read_timeout)"
            ),
            ClientError::PoolTimeout { after } => write!(
                f,
                "no connection to the origin free within {after:?}: every connection the pool \
                 allows is busy (ClientBuilder::max_connections_per_origin, \
                 ClientBuilder::pool_timeout)"
            ),
            ClientError::ClosedBeforeResponse { reused: true } => f.write_str(
                "the server closed a pooled connection before responding; the request may \
                 have been processed (an idempotent request was retried once already; others \
                 are not retried)",
            ),
            ClientError::ClosedBeforeResponse { reused: false } => f.write_str(
                "the server closed the connection before responding; the request may have \
                 been processed",
            ),
            ClientError::IncompleteResponse => {
                f.write_str("the connection ended in the middle of the response")
            }
            ClientError::InvalidResponse(error) => write!(f, "response refused: {error}"),
            ClientError::Io(error) => write!(f, "I/O error on the connection: {error}"),
        }
    }
}

impl Error for ClientError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ClientError::InvalidHeader(error) => Some(error),
            ClientError::NoReactor(missing) => Some(missing),
            ClientError::Resolve { error, .. }
            | ClientError::Connect { error, .. }
            | ClientError::Io(error) => Some(error),
            ClientError::InvalidResponse(error) => Some(error),
            _ => None,
        }
    }
}

impl From<InvalidHeader> for ClientError {
    fn from(error: InvalidHeader) -> ClientError {
        ClientError::InvalidHeader(error)
    }
}

impl From<ResponseError> for ClientError {
    fn from(error: ResponseError) -> ClientError {
        ClientError::InvalidResponse(error)
    }
}

/// Why the [`Client`](super::Client) refused a response: it read it with
/// the rules the server reads requests with (RFC 9112, strictly: every
/// ambiguity is an error), under its limits
/// ([`ClientBuilder`](super::ClientBuilder)). The connection is closed
/// after any of these.
///
/// # Examples
///
/// ```
/// use milieu::http::{ClientError, ResponseError};
///
/// let error = ClientError::from(ResponseError::ConflictingContentLength);
/// assert_eq!(
///     error.to_string(),
///     "response refused: several Content-Length values that differ"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The status line or a header field is not HTTP/1.x syntax (as
    /// `httparse` judges it), or the response contradicts itself or the
    /// request (`101 Switching Protocols` to a request that asked for no
    /// upgrade).
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The status line and header fields took more than `max` bytes
    /// ([`ClientBuilder::max_header_bytes`](super::ClientBuilder::max_header_bytes)).
    HeaderSectionTooLarge {
        /// The limit.
        max: usize,
    },
    /// More than `max` header fields (or trailer fields)
    /// ([`ClientBuilder::max_headers`](super::ClientBuilder::max_headers)).
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// The body is longer than `max` bytes
    /// ([`ClientBuilder::max_body`](super::ClientBuilder::max_body)):
    /// known from `Content-Length` before the body is read, counted chunk
    /// by chunk, or counted as a close-delimited body arrives.
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// A chunked body's framing (chunk-size lines, extensions, CRLFs)
    /// took more than `max` bytes besides the data.
    ChunkFramingTooLarge {
        /// The limit: the larger of 64 KiB and an eighth of the body limit.
        max: usize,
    },
    /// A chunked body's trailer section took more than `max` bytes.
    TrailerSectionTooLarge {
        /// The limit: the header section's.
        max: usize,
    },
    /// A `Content-Length` that is not a decimal number.
    InvalidContentLength,
    /// Several `Content-Length` values that differ.
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the framing is
    /// ambiguous (response splitting, cache poisoning), so neither is
    /// trusted.
    ContentLengthWithTransferEncoding,
    /// A `Transfer-Encoding` other than `chunked` alone: this client asks
    /// for no other coding (it sends no `TE` field) and decodes none.
    UnsupportedTransferEncoding,
    /// A chunked body that does not follow the chunked syntax.
    InvalidChunk {
        /// What is wrong.
        reason: &'static str,
    },
    /// More than `max` interim (1xx) responses before the final one.
    TooManyInterimResponses {
        /// The limit.
        max: usize,
    },
}

impl ResponseError {
    /// The error for what the shared framing code (`Content-Length`,
    /// `Transfer-Encoding`, the chunked decoder) reported, written in
    /// request terms for the server.
    pub(crate) fn from_http(error: HttpError) -> ResponseError {
        match error {
            HttpError::Malformed { reason } => ResponseError::Malformed { reason },
            HttpError::HeaderSectionTooLarge { max } => {
                ResponseError::HeaderSectionTooLarge { max }
            }
            HttpError::TooManyHeaders { max } => ResponseError::TooManyHeaders { max },
            HttpError::BodyTooLarge { max } => ResponseError::BodyTooLarge { max },
            HttpError::ChunkFramingTooLarge { max } => ResponseError::ChunkFramingTooLarge { max },
            HttpError::TrailerSectionTooLarge { max } => {
                ResponseError::TrailerSectionTooLarge { max }
            }
            // A response whose codings do not end in `chunked` is
            // delimited by the close (RFC 9112 §6.3), but its data would
            // still be encoded in a coding we did not ask for.
            HttpError::UnsupportedTransferEncoding | HttpError::ChunkedNotFinal => {
                ResponseError::UnsupportedTransferEncoding
            }
            HttpError::InvalidContentLength => ResponseError::InvalidContentLength,
            HttpError::ConflictingContentLength => ResponseError::ConflictingContentLength,
            HttpError::ContentLengthWithTransferEncoding => {
                ResponseError::ContentLengthWithTransferEncoding
            }
            HttpError::InvalidChunk { reason } => ResponseError::InvalidChunk { reason },
            // About request lines and `Host`: never reported on a response.
            HttpError::InvalidHost
            | HttpError::InvalidHostValue
            | HttpError::InvalidTarget { .. }
            | HttpError::ConnectNotSupported => ResponseError::Malformed {
                reason: "malformed response",
            },
        }
    }

    /// The error for what `httparse` reported on a status line and
    /// header fields.
    pub(crate) fn from_httparse(error: httparse::Error, max_headers: usize) -> ResponseError {
        let reason = match error {
            httparse::Error::TooManyHeaders => {
                return ResponseError::TooManyHeaders { max: max_headers }
            }
            httparse::Error::HeaderName => "invalid byte in a header name",
            httparse::Error::HeaderValue => "invalid byte in a header value",
            httparse::Error::NewLine => "invalid line ending",
            httparse::Error::Status => "invalid status code or reason phrase",
            httparse::Error::Token => "invalid token in the status line",
            httparse::Error::Version => "invalid HTTP version (HTTP/1.0 and HTTP/1.1 are read)",
        };
        ResponseError::Malformed { reason }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed { reason } => write!(f, "malformed HTTP response: {reason}"),
            ResponseError::HeaderSectionTooLarge { max } => write!(
                f,
                "status line and headers longer than {max} bytes \
                 (ClientBuilder::max_header_bytes raises the limit)"
            ),
            ResponseError::TooManyHeaders { max } => write!(
                f,
                "more than {max} header fields (ClientBuilder::max_headers raises the limit)"
            ),
            ResponseError::BodyTooLarge { max } => write!(
                f,
                "response body longer than {max} bytes (ClientBuilder::max_body raises the limit)"
            ),
            ResponseError::ChunkFramingTooLarge { max } => write!(
                f,
                "chunked body framing (chunk-size lines, extensions) longer than {max} bytes"
            ),
            ResponseError::TrailerSectionTooLarge { max } => write!(
                f,
                "trailer section of a chunked body longer than {max} bytes \
                 (bounded by ClientBuilder::max_header_bytes)"
            ),
            ResponseError::InvalidContentLength => {
                f.write_str("Content-Length is not a decimal number of bytes")
            }
            ResponseError::ConflictingContentLength => {
                f.write_str("several Content-Length values that differ")
            }
            ResponseError::ContentLengthWithTransferEncoding => f.write_str(
                "both Content-Length and Transfer-Encoding: refused, as the framing is ambiguous",
            ),
            ResponseError::UnsupportedTransferEncoding => f.write_str(
                "unsupported Transfer-Encoding: only `chunked` is decoded, and no other coding \
                 was asked for",
            ),
            ResponseError::InvalidChunk { reason } => write!(f, "invalid chunked body: {reason}"),
            ResponseError::TooManyInterimResponses { max } => {
                write!(f, "more than {max} interim (1xx) responses")
            }
        }
    }
}

impl Error for ResponseError {}
