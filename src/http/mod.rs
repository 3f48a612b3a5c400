//! HTTP/1.1 on the reactor: a [`Protocol`](crate::reactor::Protocol) and
//! the handler wrapper that puts the current request in the context.
//!
//! # Layers
//!
//! HTTP sits on the reactor's layers like any protocol:
//!
//! - **readiness** and **transport** (the reactor): sockets, buffers,
//!   backpressure, the read, idle and write timeouts, the lingering close
//!   and the server's budget ([`HttpLimits`] sets them through
//!   [`HttpLimits::transport_limits`] and [`HttpLimits::budget`]);
//! - **protocol** ([`HttpProtocol`]): bytes to [`Request`]s and
//!   [`Response`]s to bytes; keep-alive, pipelining, chunked bodies,
//!   `100 Continue`, a `Date` on every response, and the error statuses
//!   for bad input, each a typed [`HttpError`]. It never touches a
//!   socket, so it is tested on byte slices;
//! - **application** ([`serve`]): a handler, plain or `async`, called for
//!   each request with a [`RequestInfo`] in its context and a `tracing`
//!   span around it; `HEAD` answered for every handler.
//!
//! The [`client`] sits on the same layers from the other side: a
//! [`Client`] sends requests on the reactor and reads responses with the
//! same parser and framing rules, through a pool of keep-alive
//! connections.
//!
//! Parsing of the request line and header fields is `httparse`'s; this
//! module frames bodies and applies the rules of RFC 9112 strictly: an
//! ambiguous request (both `Content-Length` and `Transfer-Encoding`,
//! differing lengths, a bare LF in a chunk line) is refused rather than
//! guessed at.
//!
//! # Error statuses
//!
//! Each closes the connection after its response (with no body if the
//! request was `HEAD`):
//!
//! | status | for |
//! |---|---|
//! | 400 | a malformed request line or header field; a bad, conflicting or ambiguous `Content-Length`; a `Transfer-Encoding` not ending in `chunked` (RFC 9112 §6.3); a malformed chunk; no `Host` in HTTP/1.1, several, or one that is not `host[:port]`; a target other than a path or an absolute URI (`*` outside `OPTIONS`, `host:port` outside `CONNECT`) |
//! | 408 | a request head still incomplete after [`HttpLimits::read_timeout`], or a body slower than [`HttpLimits::body_rate`] |
//! | 413 | a body over [`HttpLimits::max_body`], or a chunked body's framing over [`HttpLimits::max_chunk_framing`] |
//! | 431 | a header section (or trailer section) over [`HttpLimits::max_header_bytes`], or more fields than [`HttpLimits::max_headers`] |
//! | 501 | a `Transfer-Encoding` with another coding before `chunked` (`gzip, chunked`); `CONNECT` |
//! | 503 | past the server's [`HttpLimits::max_connections`], or a request that does not fit in what is left of [`HttpLimits::max_buffered_input`] (with `Retry-After: 1`) |
//!
//! A handler that panics is answered with 500, and the connection goes on.
//!
//! # Careless and hostile clients
//!
//! Besides the statuses above: a client that takes none of its answers
//! for [`HttpLimits::write_timeout`] is dropped and its buffers freed;
//! while a peer does not read, encoding stops at the transport's
//! high-water mark and nothing new is read or handled; a connection that
//! ends keeps reading and dropping its peer's input until the peer closes
//! or [`HttpLimits::linger`] passes after its last byte, so queued
//! responses arrive rather than a reset; and a pipelined request with an
//! unsafe method (anything but `GET`, `HEAD`, `OPTIONS`, `TRACE`) is
//! handled only once the responses before it are out, so a response that
//! closes the connection never strands a request that already ran.
//!
//! Not supported: `Upgrade` (WebSockets), `CONNECT` tunnels, response
//! streaming (a response's body is one byte vector, sent with
//! `Content-Length`), request bodies larger than memory.
//!
//! # Examples
//!
//! A server, tested without sockets through `reactor::testing::Pair`
//! (feature `test-util`):
//!
//! ```
//! use milieu::http::{self, Request, Response};
//! use milieu::reactor::testing::Pair;
//!
//! fn hello(request: Request) -> Response {
//!     match request.path() {
//!         "/" => Response::text(200, "hello"),
//!         _ => Response::status(404),
//!     }
//! }
//!
//! let app = http::serve(hello);
//! let mut pair = Pair::new(move || app.clone())?;
//! let answer = pair.exchange(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")?;
//! let answer = String::from_utf8(answer).unwrap();
//! // `Date: Sun, 06 Nov 1994 08:49:37 GMT`, the time of the response.
//! let (head, date_on) = answer.split_at(answer.find("Date: ").unwrap());
//! assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n");
//! let date = &date_on["Date: ".len()..date_on.find("\r\n").unwrap()];
//! assert!(date.len() == 29 && date.ends_with(" GMT"));
//! assert!(date_on.ends_with(" GMT\r\nContent-Length: 5\r\n\r\nhello"));
//!
//! // Two requests in one write: two responses, in order; the second
//! // closes the connection.
//! let answer = pair.exchange(
//!     b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
//! )?;
//! assert!(answer.starts_with(b"HTTP/1.1 404 Not Found\r\n"));
//! assert!(answer.ends_with(b"Connection: close\r\nContent-Length: 5\r\n\r\nhello"));
//! assert!(pair.server_closed());
//! # Ok::<(), std::io::Error>(())
//! ```

mod chunked;
pub mod client;
#[cfg(feature = "debug-views")]
pub mod debug;
mod error;
mod framing;
mod headers;
mod limits;
mod protocol;
mod request;
mod response;
mod serve;

pub use crate::remote::RequestInfo;
pub use client::{
    Client, ClientBuilder, ClientError, ClientRequest, ClientResponse, ResponseError,
    ResponseFuture,
};
pub use error::HttpError;
pub use headers::{Headers, InvalidHeader};
pub use limits::HttpLimits;
pub use protocol::HttpProtocol;
pub use request::Request;
pub use response::Response;
pub use serve::{serve, serve_with, Server};
