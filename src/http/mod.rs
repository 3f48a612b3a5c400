//! HTTP/1.1 on the reactor: a [`Protocol`](crate::reactor::Protocol) and
//! the handler wrapper that puts the current request in the context.
//!
//! # Layers
//!
//! HTTP sits on the reactor's layers like any protocol:
//!
//! - **readiness** and **transport** (the reactor): sockets, buffers,
//!   backpressure, the read and idle timeouts ([`HttpLimits`] sets them
//!   through [`HttpLimits::transport_limits`]);
//! - **protocol** ([`HttpProtocol`]): bytes to [`Request`]s and
//!   [`Response`]s to bytes; keep-alive, pipelining, chunked bodies,
//!   `100 Continue`, and the error statuses for bad input (400, 408, 413,
//!   431, 501), each a typed [`HttpError`]. It never touches a socket, so
//!   it is tested on byte slices;
//! - **application** ([`serve`]): a handler, plain or `async`, called for
//!   each request with a [`RequestInfo`] in its context and a `tracing`
//!   span around it.
//!
//! Parsing of the request line and header fields is `httparse`'s; this
//! module frames bodies and applies the rules of RFC 9112 strictly: an
//! ambiguous request (both `Content-Length` and `Transfer-Encoding`,
//! differing lengths, a bare LF in a chunk line) is refused rather than
//! guessed at.
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
//! assert_eq!(
//!     answer,
//!     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
//!       Content-Length: 5\r\n\r\nhello"
//! );
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
mod error;
mod headers;
mod limits;
mod protocol;
mod request;
mod response;
mod serve;

pub use error::HttpError;
pub use headers::{Headers, InvalidHeader};
pub use limits::HttpLimits;
pub use protocol::HttpProtocol;
pub use request::Request;
pub use response::Response;
pub use serve::{serve, serve_with, RequestInfo};
