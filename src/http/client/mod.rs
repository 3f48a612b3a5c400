//! An HTTP/1.1 client on the reactor: [`Client`], with a pool of
//! keep-alive connections per origin.
//!
//! ```
//! use milieu::http::{self, Client, Request, Response};
//! use milieu::reactor::Reactor;
//!
//! // A server and a client on one reactor, over loopback.
//! let mut reactor = Reactor::new()?;
//! let app = http::serve(|request: Request| Response::text(200, format!("{} {}", request.method(), request.path())));
//! let listener = reactor.handle().listen_tcp("127.0.0.1:0", move || app.clone())?;
//! let url = format!("http://{}/orders", listener.local_addr());
//!
//! let client = Client::new();
//! let response = reactor.run_until(async move { client.get(&url).await })??;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.text(), Ok("GET /orders"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layers
//!
//! The client uses the layers the server does, from the other side:
//!
//! - **transport** (the reactor): a [`Connection`](crate::reactor::Connection)
//!   from [`Handle::connect_tcp`](crate::reactor::Handle::connect_tcp),
//!   whose buffers and socket the reactor drives;
//! - **protocol**: requests to bytes, bytes to responses. The status line
//!   and header fields are parsed by `httparse`, and bodies framed by the
//!   code that frames the server's requests (`Content-Length`,
//!   `Transfer-Encoding: chunked` and its decoder), under the same strict
//!   rules: an ambiguous response is refused, not guessed at;
//! - **pool**: connections kept per origin between requests;
//! - **application**: [`Client`] and [`ClientRequest`], whose futures run
//!   on the current reactor ([`Handle::current`](crate::reactor::Handle::current)),
//!   or the one given to [`ClientBuilder::handle`].
//!
//! A request goes through the pool (a connection kept alive, or a slot to
//! open one), connects if it must (the host resolved first), writes the
//! request, and reads its response; the connection goes back to the pool
//! if the response leaves it fit for another.
//!
//! # URLs
//!
//! `http://host[:port]/path?query`, parsed strictly (RFC 3986 syntax):
//!
//! - the scheme is `http` (any case); `https` and every other scheme are
//!   [`ClientError::UnsupportedScheme`];
//! - the host is a DNS name (letters, digits, `-`, `_`, dot-separated; an
//!   internationalized name in its `xn--` form), an IPv4 address, or an
//!   IPv6 address in brackets (`[::1]`, no zone id); no `user@`;
//! - the port is 1 to 65535 (default 80);
//! - the path and query are sent as given, so they must be
//!   percent-encoded already (a space, a control, a non-ASCII byte or one
//!   of `"<>\^`{|}` is refused, as is a `%` without two hex digits); an
//!   empty path is `/`; a fragment (`#...`) is not sent.
//!
//! Anything else is [`ClientError::InvalidUrl`], with the reason.
//!
//! A host name is resolved with `std`'s
//! [`ToSocketAddrs`](std::net::ToSocketAddrs) (the system resolver) on the
//! reactor's thread pool ([`Handle::defer_to_thread`](crate::reactor::Handle::defer_to_thread)),
//! as it blocks; an IP address is connected to directly. The addresses
//! are tried in the resolver's order until one accepts. Resolution is
//! done for each new connection (no cache beyond the system's).
//!
//! # Requests
//!
//! Sent as HTTP/1.1: the request line with the URL's path and query,
//! `Host` (from the URL, unless the request sets one), the request's
//! fields (validated by [`Headers`](crate::http::Headers)), then
//! `Content-Length` for a body (and for an empty `POST`, `PUT` or
//! `PATCH`) and the body. The client does the framing: `Content-Length`
//! and `Transfer-Encoding` fields set on a request are not sent.
//! `Connection: close` on a request is honoured (the connection is closed
//! after the response).
//!
//! # Responses
//!
//! A response is read whole, its body in memory:
//!
//! - **framing**: `Content-Length` (several values that differ, or one
//!   that is not a number, are refused), `Transfer-Encoding: chunked`
//!   (any other coding, or both fields, are refused), or until the server
//!   closes the connection (an HTTP/1.0 server's way). A response to
//!   `HEAD`, and a `204` or `304`, has no body;
//! - **interim responses** (`100 Continue`, `103 Early Hints`) are
//!   skipped, up to 16; a `101 Switching Protocols` is refused (no
//!   upgrade is ever asked for);
//! - **limits**: the header section, the number of fields and the body
//!   are bounded ([`ClientBuilder::max_header_bytes`],
//!   [`ClientBuilder::max_headers`], [`ClientBuilder::max_body`]); a
//!   `Content-Length` over the body limit is refused before the body is
//!   read, a chunked or close-delimited body as soon as it passes the
//!   limit. What a response makes the client buffer is bounded by them.
//!
//! A response refused is [`ClientError::InvalidResponse`] holding a
//! [`ResponseError`]; its connection is closed. No response, however
//! malformed, makes the client panic.
//!
//! # Connections and the pool
//!
//! Each [`Client`] (and its clones) has a pool of connections per origin
//! (host and port):
//!
//! - at most [`ClientBuilder::max_connections_per_origin`] are open at
//!   once, idle or busy. A request over that bound **waits** for one to
//!   come free (first come, first served), for
//!   [`ClientBuilder::pool_timeout`] at most, then fails with
//!   [`ClientError::PoolTimeout`];
//! - a connection goes back to the pool only once its response was read
//!   completely, and only if neither side asked to close it, its body's
//!   end was known without the close, and nothing followed the response
//!   (no pipelining). At most [`ClientBuilder::max_idle_per_origin`] are
//!   kept; the rest close;
//! - an idle connection is closed after [`ClientBuilder::idle_timeout`],
//!   and is not reused if the server closed it or sent anything since.
//!   Those checks catch a server that closed an idle connection once
//!   the reactor saw the close; the retry below catches one that closes
//!   while the request is on its way.
//!
//! A request dropped before its end (cancelled, or timed out by the
//! caller) closes its connection: what it holds is unknown.
//!
//! # Retries
//!
//! A request is sent again once, on a new connection, in one case only:
//! it went out on a connection from the pool, the server closed that
//! connection (end of stream or reset) before any byte of the response,
//! and the method is idempotent (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`,
//! `DELETE`: sending it twice does what sending it once does, RFC 9110
//! §9.2.2). A `POST` or `PATCH` is never sent twice: once its bytes were
//! written, such a close is [`ClientError::ClosedBeforeResponse`] with
//! `reused: true`, and the caller decides. Nothing else is retried, and
//! redirects are not followed: a `3xx` is returned as it is.
//!
//! # Timeouts
//!
//! | timeout | bounds | error |
//! |---|---|---|
//! | [`connect_timeout`](ClientBuilder::connect_timeout) | resolving and connecting | [`ConnectTimeout`](ClientError::ConnectTimeout) |
//! | [`write_timeout`](ClientBuilder::write_timeout) | the whole request handed to the OS | [`WriteTimeout`](ClientError::WriteTimeout) |
//! | [`read_timeout`](ClientBuilder::read_timeout) | each wait for more of the response | [`ReadTimeout`](ClientError::ReadTimeout) |
//! | [`pool_timeout`](ClientBuilder::pool_timeout) | waiting for a connection | [`PoolTimeout`](ClientError::PoolTimeout) |
//!
//! They run on the reactor's timers (virtual under a virtual clock). For
//! a deadline on the whole request, wrap its future in
//! [`Handle::timeout`](crate::reactor::Handle::timeout).
//!
//! # Context and tracing
//!
//! A request's future runs in the context current where it was sent
//! ([`ClientRequest::send`], awaiting a [`ClientRequest`], or
//! [`Client::send`]), as a future wrapped with
//! [`FutureExt::in_current_context`](crate::FutureExt::in_current_context),
//! whichever task polls it; the name lookup on the thread pool runs in
//! it too. The hooks of [`ClientBuilder::on_request`] run when the
//! request is sent, on the caller's thread, in the caller's context: a
//! hook reads what the sending code would read. Connections, which
//! outlive the request that opened them in the pool, are opened in an
//! empty context (with the reactor's handle), so as to keep no request's
//! entries alive.
//!
//! Each request has a `tracing` span, `http_client_request` (target
//! `milieu::http::client`, level DEBUG), with the fields `method`,
//! `host` (`host[:port]`), `path` and, once the response is in,
//! `status`; a failure is a DEBUG event in it, with the error. The hooks
//! run inside the span.
//!
//! # Not supported
//!
//! TLS (`https`), HTTP/2, proxies (`CONNECT` and absolute-form targets),
//! `Upgrade` (WebSockets), streaming bodies (a request's and a
//! response's body are each one byte vector in memory), content codings
//! (`gzip`: no `Accept-Encoding` is sent and none is decoded), cookies,
//! authentication, following redirects, pipelining (one request at a time
//! per connection), and waiting for `100 Continue` before sending a body.

mod builder;
mod config;
mod connect;
mod error;
mod exchange;
mod pool;
mod request;
mod response;
mod send;
mod url;

pub use builder::{Client, ClientBuilder};
pub use error::{ClientError, ResponseError};
pub use request::ClientRequest;
pub use response::ClientResponse;
pub use send::ResponseFuture;
