//! [`Client`], and the [`ClientBuilder`] that sets it up (in one file, as
//! each names the other: `Client::builder` and `ClientBuilder::build`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::config::{ClientShared, Config, RequestHook};
use super::pool::{Pool, PoolConfig};
use super::request::{outgoing, ClientRequest};
use super::send::{start, ResponseFuture};
use crate::http::{Headers, HttpLimits, Request};
use crate::reactor::Handle;
use crate::remote::Propagation;

/// An HTTP/1.1 client on the reactor, with a pool of keep-alive
/// connections: see the [module docs](super) for what it does and does
/// not do.
///
/// Cloning is cheap, and the clones share the settings and the pool
/// (an `Arc`); there is no global client. Requests run on the current
/// reactor ([`Handle::current`]) unless the client was built with one
/// ([`ClientBuilder::handle`]).
///
/// # Examples
///
/// A server and a client on one reactor, over loopback:
///
/// ```
/// use milieu::http::{self, Client, Request, Response};
/// use milieu::reactor::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let app = http::serve(|request: Request| Response::text(200, format!("hello {}", request.path())));
/// let listener = reactor.handle().listen_tcp("127.0.0.1:0", move || app.clone())?;
/// let base = format!("http://{}", listener.local_addr());
///
/// let client = Client::new();
/// let (first, second) = reactor.run_until(async move {
///     let first = client.get(&format!("{base}/orders")).await?;
///     // The same connection, kept alive in the client's pool.
///     let second = client.get(&format!("{base}/stock?item=tea")).await?;
///     Ok::<_, milieu::http::ClientError>((first, second))
/// })??;
/// assert_eq!((first.status(), first.text()), (200, Ok("hello /orders")));
/// assert_eq!(second.text(), Ok("hello /stock"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<ClientShared>,
}

impl Client {
    /// A client with the default settings ([`ClientBuilder`] lists them).
    pub fn new() -> Client {
        ClientBuilder::new().build()
    }

    /// A builder, to change the settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A `GET` request for `url` (`http://host[:port]/path?query`), to
    /// `.await` (or add header fields to, then send).
    pub fn get(&self, url: &str) -> ClientRequest {
        self.request("GET", url)
    }

    /// A `HEAD` request for `url`: its response has no body.
    pub fn head(&self, url: &str) -> ClientRequest {
        self.request("HEAD", url)
    }

    /// A `POST` request for `url`; give it a body with
    /// [`ClientRequest::body`]. Never sent twice (see the
    /// [module docs](super#retries)).
    pub fn post(&self, url: &str) -> ClientRequest {
        self.request("POST", url)
    }

    /// A `PUT` request for `url`.
    pub fn put(&self, url: &str) -> ClientRequest {
        self.request("PUT", url)
    }

    /// A `PATCH` request for `url`. Never sent twice.
    pub fn patch(&self, url: &str) -> ClientRequest {
        self.request("PATCH", url)
    }

    /// A `DELETE` request for `url`.
    pub fn delete(&self, url: &str) -> ClientRequest {
        self.request("DELETE", url)
    }

    /// A request with `method` (case-sensitive, as methods are) for
    /// `url`. An invalid method or URL is reported when it is sent.
    pub fn request(&self, method: &str, url: &str) -> ClientRequest {
        ClientRequest::new(Arc::clone(&self.shared), method, url)
    }

    /// Sends `request`, whose target must be an absolute URL
    /// (`Request::new("GET", "http://host/path")`), with its header fields
    /// and body; always as HTTP/1.1, whatever its
    /// [`version`](Request::version). See [`ClientRequest::send`].
    ///
    /// # Errors
    ///
    /// The future resolves to a [`ClientError`](super::ClientError): a
    /// target that is not an `http://` URL is
    /// [`InvalidUrl`](super::ClientError::InvalidUrl).
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::http::{self, Client, Request, Response};
    /// use milieu::reactor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// let app = http::serve(|request: Request| Response::status(200).with_body(request.into_body()));
    /// let listener = reactor.handle().listen_tcp("127.0.0.1:0", move || app.clone())?;
    /// let request = Request::new("POST", format!("http://{}/echo", listener.local_addr()))
    ///     .with_body("ping");
    ///
    /// let client = Client::new();
    /// let response = reactor.run_until(async move { client.send(request).await })??;
    /// assert_eq!(response.body(), b"ping");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn send(&self, request: Request) -> ResponseFuture {
        let method = request.method().to_owned();
        let target = request.target().to_owned();
        let headers = request.headers().clone();
        let request = outgoing(&method, &target, headers, request.into_body());
        start(Arc::clone(&self.shared), request)
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.shared.config)
            .field("pool", &self.shared.pool)
            .finish()
    }
}

/// Settings of a [`Client`]: the reactor, timeouts, the pool's bounds,
/// the response limits and the request hooks.
///
/// | setting | default | past it |
/// |---|---|---|
/// | [`connect_timeout`](ClientBuilder::connect_timeout): resolving the host and connecting | 10 s | [`ConnectTimeout`](super::ClientError::ConnectTimeout) |
/// | [`write_timeout`](ClientBuilder::write_timeout): the whole request handed to the OS | 30 s | [`WriteTimeout`](super::ClientError::WriteTimeout) |
/// | [`read_timeout`](ClientBuilder::read_timeout): each wait for more of the response | 30 s | [`ReadTimeout`](super::ClientError::ReadTimeout) |
/// | [`pool_timeout`](ClientBuilder::pool_timeout): waiting for a connection when the origin has all it may have | 30 s | [`PoolTimeout`](super::ClientError::PoolTimeout) |
/// | [`idle_timeout`](ClientBuilder::idle_timeout): a pooled connection unused | 30 s | closed |
/// | [`max_connections_per_origin`](ClientBuilder::max_connections_per_origin) | 32 | requests wait |
/// | [`max_idle_per_origin`](ClientBuilder::max_idle_per_origin) | 8 | closed after its response |
/// | [`max_header_bytes`](ClientBuilder::max_header_bytes): status line and header fields | 64 KiB | [`HeaderSectionTooLarge`](super::ResponseError::HeaderSectionTooLarge) |
/// | [`max_headers`](ClientBuilder::max_headers): header (or trailer) fields | 100 | [`TooManyHeaders`](super::ResponseError::TooManyHeaders) |
/// | [`max_body`](ClientBuilder::max_body): body bytes | 8 MiB | [`BodyTooLarge`](super::ResponseError::BodyTooLarge) |
///
/// A timeout of `None` means no limit. A chunked body's framing is
/// bounded as the server bounds a request's
/// ([`HttpLimits::max_chunk_framing`]: the larger of 64 KiB and an
/// eighth of `max_body`), and its trailer section by `max_header_bytes`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use milieu::http::Client;
///
/// let client = Client::builder()
///     .connect_timeout(Duration::from_secs(2))
///     .read_timeout(Duration::from_secs(5))
///     .max_connections_per_origin(4)
///     .max_body(64 * 1024)
///     .on_request(|headers| {
///         let _ = headers.insert("User-Agent", "orders/1.0");
///     })
///     .build();
/// # drop(client);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    handle: Option<Handle>,
    connect_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    pool: PoolConfig,
    limits: HttpLimits,
    hooks: Vec<RequestHook>,
    propagation: Option<Propagation>,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            handle: None,
            connect_timeout: Some(Duration::from_secs(10)),
            write_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(30)),
            pool: PoolConfig {
                max_idle_per_origin: 8,
                max_connections_per_origin: 32,
                idle_timeout: Some(Duration::from_secs(30)),
                wait_timeout: Some(Duration::from_secs(30)),
            },
            limits: HttpLimits::new()
                .with_max_header_bytes(64 * 1024)
                .with_max_headers(100)
                .with_max_body(8 * 1024 * 1024),
            hooks: Vec::new(),
            propagation: Some(Propagation::new()),
        }
    }
}

impl ClientBuilder {
    /// The defaults (see the table above).
    pub fn new() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Opens connections and runs timeouts on `handle`'s reactor,
    /// wherever requests are sent from (default: the reactor current
    /// where each is sent, [`Handle::current`]). The request's future is
    /// polled by whoever awaits it: a task of another reactor, or a
    /// thread outside any reactor (`futures::executor::block_on`), while
    /// `handle`'s reactor runs on its own thread.
    ///
    /// Connections belong to the reactor that opened them, and may be
    /// used from any thread, at the cost of a wake-up across threads for
    /// each step. With a reactor per core, give each its own `Client`.
    pub fn handle(mut self, handle: Handle) -> ClientBuilder {
        self.handle = Some(handle);
        self
    }

    /// How long resolving the host and connecting may take together.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.connect_timeout = timeout.into();
        self
    }

    /// How long the request may take to be handed to the operating
    /// system, whole: longer means the server does not read.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.write_timeout = timeout.into();
        self
    }

    /// How long each wait for more of the response may take (from the
    /// request sent to the first byte, then between reads). A server
    /// that trickles its response a byte at a time within it is read to
    /// the end, under the size limits.
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.read_timeout = timeout.into();
        self
    }

    /// How long a request waits for a connection when its origin has
    /// [`max_connections_per_origin`](ClientBuilder::max_connections_per_origin)
    /// open and busy (`None`: as long as it takes).
    pub fn pool_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.pool.wait_timeout = timeout.into();
        self
    }

    /// How long a connection may stay idle in the pool before it is
    /// closed (`None`: until the server closes it).
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.pool.idle_timeout = timeout.into();
        self
    }

    /// At most `connections` connections open to one origin (scheme,
    /// host, port) at once, idle or in use (at least 1). A request over
    /// the bound waits for one, first come first served, up to
    /// [`pool_timeout`](ClientBuilder::pool_timeout).
    pub fn max_connections_per_origin(mut self, connections: usize) -> ClientBuilder {
        self.pool.max_connections_per_origin = connections.max(1);
        self
    }

    /// At most `connections` idle connections kept per origin for later
    /// requests (0: none, every connection closes after its response).
    pub fn max_idle_per_origin(mut self, connections: usize) -> ClientBuilder {
        self.pool.max_idle_per_origin = connections;
        self
    }

    /// At most `bytes` for a response's status line and header fields
    /// together (and for a chunked body's trailer section).
    pub fn max_header_bytes(mut self, bytes: usize) -> ClientBuilder {
        self.limits = self.limits.with_max_header_bytes(bytes);
        self
    }

    /// At most `fields` header fields in a response (and trailer fields).
    pub fn max_headers(mut self, fields: usize) -> ClientBuilder {
        self.limits = self.limits.with_max_headers(fields);
        self
    }

    /// At most `bytes` of response body (de-chunked). Bodies are held in
    /// memory whole: this bounds what one response may take.
    pub fn max_body(mut self, bytes: usize) -> ClientBuilder {
        self.limits = self.limits.with_max_body(bytes);
        self
    }

    /// Adds a hook applied to the header fields of every request this
    /// client sends, after the request's own fields and before the
    /// client's framing (`Host`, `Content-Length`); hooks run in the
    /// order they were added, once per request (a retry sends the same
    /// fields).
    ///
    /// A hook runs when the request is sent
    /// ([`ClientRequest::send`], or when a [`ClientRequest`] is
    /// awaited), on the caller's thread, with the caller's context
    /// current and the request's `tracing` span entered: what it reads
    /// with [`milieu::get`](crate::get) is what the sending code sees.
    /// That is where a hook finds, say, a tenant to name in an
    /// `X-Tenant` field (the W3C `traceparent`, `tracestate` and
    /// `baggage` are already written, before the hooks, by
    /// [`propagation`](ClientBuilder::propagation): a hook that sets them
    /// replaces them). Use [`Headers::insert`] to replace a field the
    /// request may have.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::http::{self, Client, Request, Response};
    /// use milieu::reactor::Reactor;
    ///
    /// struct TraceId(&'static str);
    ///
    /// let client = Client::builder()
    ///     .on_request(|headers| {
    ///         if let Ok(id) = milieu::with(|trace: &TraceId| trace.0) {
    ///             let _ = headers.insert("X-Trace-Id", id);
    ///         }
    ///     })
    ///     .build();
    ///
    /// let mut reactor = Reactor::new()?;
    /// let app = http::serve(|request: Request| {
    ///     Response::text(200, request.header("x-trace-id").unwrap_or("none").to_owned())
    /// });
    /// let listener = reactor.handle().listen_tcp("127.0.0.1:0", move || app.clone())?;
    /// let url = format!("http://{}/", listener.local_addr());
    ///
    /// let traced = reactor.run_until(async move {
    ///     let _trace = milieu::provide(TraceId("4bf92f3577b34da6"));
    ///     let sent = client.get(&url).send(); // the hook runs here
    ///     drop(_trace);
    ///     sent.await
    /// })??;
    /// assert_eq!(traced.text(), Ok("4bf92f3577b34da6"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_request(
        mut self,
        hook: impl Fn(&mut Headers) + Send + Sync + 'static,
    ) -> ClientBuilder {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// What crosses to the servers called, from the context a request is
    /// sent in: the W3C `traceparent` (a new span of the context's
    /// [`TraceContext`](crate::remote::TraceContext) for each request, or
    /// a new trace), `tracestate`, and as `baggage` the types
    /// [`Propagation::carry`] lists plus the members the current request
    /// received and passes on; with a
    /// [service name](Propagation::with_service_name) or
    /// [install sites](Propagation::with_install_sites), the
    /// `milieu-origin` header too. Written before the
    /// [`on_request`](ClientBuilder::on_request) hooks run. With the
    /// `opentelemetry` feature, a span started with OpenTelemetry and
    /// current when the request is sent is the `traceparent` instead (see
    /// [`Propagation::inject`]).
    ///
    /// Default: [`Propagation::new()`] (the trace context, and baggage
    /// passed on). `None` sends none of these headers.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::http::Client;
    /// use milieu::remote::{Baggage, Propagation};
    ///
    /// #[derive(Baggage)]
    /// #[baggage(key = "tenant")]
    /// struct Tenant(String);
    ///
    /// let client = Client::builder()
    ///     .propagation(Propagation::new().carry::<Tenant>().with_service_name("orders"))
    ///     .build();
    /// let silent = Client::builder().propagation(None).build();
    /// # drop((client, silent));
    /// ```
    pub fn propagation(mut self, propagation: impl Into<Option<Propagation>>) -> ClientBuilder {
        self.propagation = propagation.into();
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        let config = Config {
            handle: self.handle,
            connect_timeout: self.connect_timeout,
            write_timeout: self.write_timeout,
            read_timeout: self.read_timeout,
            limits: self.limits,
            hooks: self.hooks,
            propagation: self.propagation.map(Arc::new),
        };
        Client {
            shared: Arc::new(ClientShared {
                config,
                pool: Arc::new(Pool::new(self.pool)),
            }),
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("handle", &self.handle)
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("pool", &self.pool)
            .field("max_header_bytes", &self.limits.max_header_bytes())
            .field("max_headers", &self.limits.max_headers())
            .field("max_body", &self.limits.max_body())
            .field("hooks", &self.hooks.len())
            .field("propagation", &self.propagation)
            .finish()
    }
}
