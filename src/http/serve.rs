//! The application layer for HTTP: a handler served with the current
//! request in its context and a `tracing` span around it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};

use super::limits::HttpLimits;
use super::protocol::HttpProtocol;
use super::request::Request;
use super::response::Response;
use crate::reactor::{self, ConnectionInfo, Handler, Reply, Serve};
use crate::remote::{from_caller, FromCaller, Propagation, RequestInfo};
use crate::{Context, Requirement, Scope};

/// Serves HTTP with `handler` (a plain function `fn(Request) -> Response`,
/// an `async fn`, or one returning [`Reply`], as for
/// [`reactor::serve`]), under the default [`HttpLimits`].
///
/// Around each call of the handler (each poll of its future, for an
/// `async` one):
///
/// - a [`RequestInfo`] is installed as a local context entry;
/// - the `tracing` span `http_request{id=..}` (target `milieu::http`,
///   level INFO) is entered, so every event the handler emits carries the
///   request's id.
///
/// The ids count the requests served by the returned value and its
/// clones: create it once and hand out clones from the listener's
/// factory, so that all connections share one counter (a factory that
/// calls `serve` for each connection starts each one at 1).
///
/// # `HEAD`
///
/// A server must answer `HEAD` (RFC 9110 §9.1) with the header fields a
/// `GET` would get, without the body. A handler may answer `HEAD` itself;
/// one that does not need not know of it:
///
/// 1. the handler is called with the `HEAD` request, as with any other;
/// 2. if it answers 405 (Method Not Allowed) or 501 (Not Implemented),
///    it is called again with the same request as `GET`
///    ([`Request::method`] says `GET`, [`Request::is_head_as_get`] tells
///    it apart), in the same context and span (the [`RequestInfo`] still
///    says `HEAD`, as sent);
/// 3. the protocol sends the response without its body, its
///    `Content-Length` the length of the body left out.
///
/// The request is cloned before the first call, for `HEAD` requests only.
/// This works the same for plain and `async` handlers (the second call
/// is made when the first's future ends). A handler answering `GET` with
/// side effects should answer `HEAD` itself (405 included, then sent as
/// it is): `GET` is meant to be safe, and is treated so here.
///
/// # `Date`
///
/// Every response carries a `Date` field (RFC 9110 §6.6.1), the time it
/// is encoded, unless the handler set one: see [`Response`].
///
/// # Transport limits
///
/// The returned [`Serve`] carries the transport limits of
/// [`HttpLimits::transport_limits`] (large enough input for the largest
/// request, read, idle and write timeouts, body rate, linger), in place
/// of the reactor's, and a new [`ServerBudget`](crate::reactor::ServerBudget)
/// ([`HttpLimits::budget`]) that the clones of the `Serve` share: create
/// it once and hand clones to every listener (on every reactor thread)
/// for one budget per server. [`Serve::with_limits`] replaces the
/// transport limits (keep `max_input` at
/// [`HttpLimits::max_input`] or more).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
/// use milieu::http::{self, Request, Response};
/// use milieu::reactor::{Handle, Reactor};
///
/// async fn hello(request: Request) -> Response {
///     Response::text(200, format!("hello {}", request.path()))
/// }
///
/// let mut reactor = Reactor::new()?;
/// let app = http::serve(hello);
/// let listener = reactor.handle().listen_tcp("127.0.0.1:0", move || app.clone())?;
/// let addr = listener.local_addr();
///
/// // A blocking client on a pool thread, while the reactor serves.
/// let answer = reactor.run_until(async move {
///     let reactor = Handle::current().expect("in the reactor's context");
///     let client = reactor.defer_to_thread(move || -> std::io::Result<String> {
///         let mut stream = TcpStream::connect(addr)?;
///         stream.write_all(b"GET /world HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")?;
///         let mut answer = String::new();
///         stream.read_to_string(&mut answer)?; // until the server closes
///         Ok(answer)
///     });
///     client.await.expect("the client job ran")
/// })??;
/// assert!(answer.ends_with("Connection: close\r\nContent-Length: 12\r\n\r\nhello /world"));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// `HEAD` for a handler that knows only `GET`:
///
/// ```
/// use milieu::http::{self, Request, Response};
/// use milieu::reactor::testing::Pair;
///
/// fn page(request: Request) -> Response {
///     match request.method() {
///         "GET" => Response::text(200, "a page"),
///         _ => Response::status(405).with_header("Allow", "GET"),
///     }
/// }
///
/// let app = http::serve(page);
/// let mut pair = Pair::new(move || app.clone())?;
/// let answer = pair.exchange(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")?;
/// let answer = String::from_utf8(answer).unwrap();
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(answer.ends_with("Content-Length: 6\r\n\r\n"), "no body");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve<H, K>(handler: H) -> Serve<HttpProtocol>
where
    H: Handler<Request, Response, K>,
{
    serve_with(HttpLimits::default(), handler)
}

/// [`serve`] under `limits`.
///
/// # Examples
///
/// ```
/// use milieu::http::{self, HttpLimits, Request, Response};
///
/// let limits = HttpLimits::new().with_max_body(4096);
/// let _app = http::serve_with(limits, |request: Request| {
///     Response::text(200, format!("{} bytes", request.body().len()))
/// });
/// ```
pub fn serve_with<H, K>(limits: HttpLimits, handler: H) -> Serve<HttpProtocol>
where
    H: Handler<Request, Response, K>,
{
    Server::new().limits(limits).serve(handler)
}

/// The settings of an HTTP server: its [`HttpLimits`] and what it takes
/// from its callers' context ([`Propagation`]). [`serve`] and
/// [`serve_with`] are this with the defaults.
///
/// # Context from the caller
///
/// For each request, the W3C `traceparent`, `tracestate` and `baggage`
/// header fields are read ([`Propagation::extract_process`]) and what
/// they bring is installed around the handler, as
/// [inherited](crate::dump::Policy::Inherited) entries (carried into the
/// tasks, threads, stages and outbound requests the handler starts):
///
/// - a [`TraceContext`](crate::remote::TraceContext): a new span of the caller's trace, or a new trace
///   when the request has no valid `traceparent` (the spec's processing
///   model; an invalid one is never an error status);
/// - each [carried](Propagation::carry) baggage type, decoded; the other
///   members as [`ForwardedBaggage`](crate::remote::ForwardedBaggage),
///   passed on by [`Client`](crate::http::Client) requests;
/// - when the caller sent any of it, a [`ProcessHop`](crate::dump::ProcessHop)
///   (peer address, the caller's service, its `traceparent`, what arrived
///   and what was declined), which every received entry names as its
///   [origin](crate::dump::RemoteOrigin) in dumps and
///   [`Missing`](crate::Missing) reports.
///
/// What is refused (a malformed `traceparent`, a member that does not
/// decode) is dropped, with one `tracing` warning per request (target
/// `milieu::http`), never a 4xx.
///
/// # Examples
///
/// ```
/// use milieu::http::{self, Request, Response};
/// use milieu::reactor::testing::Pair;
/// use milieu::remote::{Baggage, Propagation, TraceContext};
///
/// #[derive(Baggage)]
/// #[baggage(key = "tenant")]
/// struct Tenant(String);
///
/// fn whoami(_request: Request) -> Response {
///     let trace = milieu::get::<TraceContext>().expect("installed by the server");
///     let tenant = milieu::get::<Tenant>().map(|t| t.0.clone()).unwrap_or_default();
///     Response::text(200, format!("{} {tenant}", trace.trace_id()))
/// }
///
/// let app = http::Server::new()
///     .propagation(Propagation::new().carry::<Tenant>())
///     .serve(whoami);
/// let mut pair = Pair::new(move || app.clone())?;
/// let answer = pair.exchange(
///     b"GET / HTTP/1.1\r\nHost: h\r\n\
///       traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
///       baggage: tenant=acme\r\n\r\n",
/// )?;
/// assert!(answer.ends_with(b"\r\n\r\n4bf92f3577b34da6a3ce929d0e0e4736 acme"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    limits: HttpLimits,
    /// `None`: nothing is read from the caller, nothing installed.
    propagation: Option<Arc<Propagation>>,
}

impl Default for Server {
    fn default() -> Server {
        Server {
            limits: HttpLimits::default(),
            propagation: Some(Arc::new(Propagation::new())),
        }
    }
}

impl Server {
    /// The default limits, and [`Propagation::new`]: the trace context,
    /// and baggage passed on; no type decoded, no install sites read.
    pub fn new() -> Server {
        Server::default()
    }

    /// Serves under `limits` (see [`serve_with`]).
    pub fn limits(mut self, limits: HttpLimits) -> Server {
        self.limits = limits;
        self
    }

    /// What is taken from the caller's context (see above). `None` reads
    /// none of these headers and installs no [`TraceContext`](crate::remote::TraceContext):
    /// for a server that takes no part in tracing and would rather not
    /// pay for it (0.12-0.15 µs a request here, docs/benchmarks.md).
    pub fn propagation(mut self, propagation: impl Into<Option<Propagation>>) -> Server {
        self.propagation = propagation.into().map(Arc::new);
        self
    }

    /// The types this server installs in every request's context, for
    /// [`verify_routes`](crate::verify_routes) to count as present when it
    /// checks each route's requirements before the first request:
    /// [`RequestInfo`] and, with a propagation, the
    /// [`TraceContext`](crate::remote::TraceContext).
    ///
    /// Baggage types the propagation carries are not listed: they are
    /// installed only when the caller sends them, so a route that requires
    /// one is reported.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::http::{RequestInfo, Server};
    /// use milieu::remote::TraceContext;
    /// use milieu::Requirement;
    ///
    /// let installs = Server::new().installs();
    /// let names: Vec<_> = installs.iter().map(Requirement::type_name).collect();
    /// assert_eq!(names, [std::any::type_name::<RequestInfo>(), std::any::type_name::<TraceContext>()]);
    /// assert_eq!(Server::new().propagation(None).installs().len(), 1);
    /// ```
    pub fn installs(&self) -> Vec<Requirement> {
        let mut installs = vec![Requirement::of::<RequestInfo>()];
        if self.propagation.is_some() {
            installs.push(Requirement::of::<crate::remote::TraceContext>());
        }
        installs
    }

    /// Serves with `handler`, as [`serve`] describes.
    pub fn serve<H, K>(self, handler: H) -> Serve<HttpProtocol>
    where
        H: Handler<Request, Response, K>,
    {
        let Server {
            limits,
            propagation,
        } = self;
        let next_id = AtomicU64::new(1);
        let handler = Arc::new(handler);
        let handle = move |request: Request| -> Reply<Response> {
            let (method, target, path) = request.info_parts();
            let info = RequestInfo::new(
                next_id.fetch_add(1, Ordering::Relaxed),
                method,
                target,
                path,
            );
            let span = tracing::info_span!(target: "milieu::http", "http_request", id = info.id());
            let caller = propagation
                .as_ref()
                .map(|propagation| from_caller(propagation, request.headers().iter(), peer, &span));
            if request.method() == "HEAD" {
                // Called up to twice: the caller's context is made a
                // snapshot once, entered for each call.
                let context = caller.map(|scope| scope.run(FromCaller::current));
                return serve_head(&handler, request, info, context, span);
            }
            let (reply, context) = first_call(&info, caller, &span, || handler.call(request));
            in_request_future(reply, None, info, context, span)
        };
        reactor::serve_polled(HttpProtocol::with_limits(limits), handle)
            .with_limits(limits.transport_limits())
            .with_budget(limits.budget())
    }
}

/// The handler's first call (see [`in_request`]) with what the request
/// brought from its caller (`caller`) installed in the same frame as its
/// [`RequestInfo`]; the context to enter for later polls is captured only
/// if the handler's future is still running after it (a snapshot
/// publishes the frame, which then cannot be reused: a handler that
/// answers at once does not pay for it).
#[inline]
fn first_call(
    info: &RequestInfo,
    caller: Option<Scope>,
    span: &tracing::Span,
    call: impl FnOnce() -> Reply<Response>,
) -> (Reply<Response>, Option<FromCaller>) {
    let _entered = span.enter();
    let from_caller = caller.is_some();
    caller
        .unwrap_or_else(crate::scope)
        .with_local(info.clone())
        .because("the HTTP request being handled")
        .run(|| {
            // The same trace as OpenTelemetry's current context, for spans
            // the handler starts.
            #[cfg(feature = "opentelemetry")]
            let otel = from_caller.then(crate::remote::otel::context);
            #[cfg(feature = "opentelemetry")]
            let _otel = otel.clone().map(opentelemetry::Context::attach);
            let reply = reactor::poll_first(call());
            // The snapshot leaves the local `RequestInfo` out; polls put
            // it back.
            let later = from_caller && matches!(reply, Reply::Later(_));
            let context = later.then(|| FromCaller {
                #[cfg(feature = "opentelemetry")]
                opentelemetry: otel.unwrap_or_default(),
                context: Context::current(),
            });
            (reply, context)
        })
}

/// The connection's peer address, for the process hop a request that
/// brings context records.
fn peer() -> Option<String> {
    ConnectionInfo::current()
        .ok()
        .and_then(|c| c.peer_addr())
        .map(|peer| peer.to_string())
}

/// Serves a `HEAD` request (see [`serve`], `HEAD`): the handler's answer,
/// or, if it declines, its answer to the same request as `GET`. Out of
/// line, so that other requests pay nothing for it.
#[inline(never)]
fn serve_head<H, K>(
    handler: &Arc<H>,
    request: Request,
    info: RequestInfo,
    context: Option<FromCaller>,
    span: tracing::Span,
) -> Reply<Response>
where
    H: Handler<Request, Response, K>,
{
    // Kept for a handler that does not answer HEAD itself; cloned now, as
    // the handler takes the request.
    let head = request.clone();
    let reply = in_request(&info, &context, &span, || handler.call(request));
    match reply {
        Reply::Now(response) if declines_head(&response) => {
            let reply = in_request(&info, &context, &span, || handler.call(head.head_as_get()));
            in_request_future(reply, None, info, context, span)
        }
        Reply::Now(response) => Reply::Now(response),
        Reply::Later(future) => {
            let handler = Arc::clone(handler);
            let retry: RetryAsGet = Box::new(move || handler.call(head.head_as_get()));
            in_request_future(Reply::Later(future), Some(retry), info, context, span)
        }
    }
}

/// A reply as it goes to the reactor: a future still running keeps its
/// request's `info` and `span` for its later polls.
#[inline]
fn in_request_future(
    reply: Reply<Response>,
    retry_as_get: Option<RetryAsGet>,
    info: RequestInfo,
    context: Option<FromCaller>,
    span: tracing::Span,
) -> Reply<Response> {
    match reply {
        Reply::Now(response) => Reply::Now(response),
        Reply::Later(future) => Reply::Later(Box::pin(InRequest {
            future,
            retry_as_get,
            info: Arc::new(info),
            context,
            span,
            finished: false,
        })),
    }
}

/// Makes a handler's `call` with `info` installed and `span` entered,
/// and polls the future of an `async` handler once there: most answer on
/// their first poll, which then costs no second install around the
/// reactor's first poll.
#[inline]
fn in_request(
    info: &RequestInfo,
    context: &Option<FromCaller>,
    span: &tracing::Span,
    call: impl FnOnce() -> Reply<Response>,
) -> Reply<Response> {
    let _entered = span.enter();
    let _context = context.as_ref().map(|context| context.enter());
    crate::scope()
        .with_local(info.clone())
        .because("the HTTP request being handled")
        .run(|| reactor::poll_first(call()))
}

/// Whether a handler's response to `HEAD` says it does not answer `HEAD`
/// itself, so that its `GET` response is sent instead (see [`serve`]).
fn declines_head(response: &Response) -> bool {
    matches!(response.status_code(), 405 | 501)
}

/// The handler's second call for a `HEAD` request, as `GET`.
type RetryAsGet = Box<dyn FnOnce() -> Reply<Response> + Send>;

/// An `async` handler's future, polled with its [`RequestInfo`] installed
/// and its span entered.
///
/// A local entry is never carried into a future (that is what local
/// means), so it is installed anew around each poll, on the thread that
/// polls.
struct InRequest {
    future: Pin<Box<dyn Future<Output = Response> + Send>>,
    /// For a `HEAD` request: the call to make if `future` declines it.
    retry_as_get: Option<RetryAsGet>,
    /// Lent to each poll's install (no copy, no reference count, no
    /// `Scope` vector).
    info: Arc<RequestInfo>,
    /// What the request brought from its caller (see [`Server`]); `None`
    /// when the server reads nothing from callers.
    context: Option<FromCaller>,
    span: tracing::Span,
    /// Whether `future` has given its response.
    finished: bool,
}

/// The request's context entered, until the value returned drops: its
/// span, what it brought from its caller, and its `RequestInfo`, lent.
/// Private, and never forgotten: the lent `info` must outlive the install,
/// which the borrow of `info` for the value's life ensures.
fn enter_request<'a>(
    span: &'a tracing::Span,
    context: Option<&'a FromCaller>,
    info: &'a Arc<RequestInfo>,
) -> impl Sized + 'a {
    let entered = span.enter();
    // A closure, not `FromCaller::enter` itself, so that its
    // `#[track_caller]` site is this line, not one inside `core`.
    let context = context.map(|context| context.enter());
    // SAFETY: `info` stays borrowed for as long as the returned value,
    // which holds the guard, lives.
    let info =
        unsafe { crate::context::provide_local_lent(info, "the HTTP request being handled") };
    // Dropped in this order: the newest install first.
    (info, context, entered)
}

impl Future for InRequest {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Response> {
        let this = &mut *self;
        let _in_request = enter_request(&this.span, this.context.as_ref(), &this.info);
        loop {
            let response = ready!(this.future.as_mut().poll(cx));
            match this.retry_as_get.take() {
                Some(retry) if declines_head(&response) => match retry() {
                    Reply::Now(response) => {
                        this.finished = true;
                        return Poll::Ready(response);
                    }
                    // Polled at once, in this install.
                    Reply::Later(future) => this.future = future,
                },
                _ => {
                    this.finished = true;
                    return Poll::Ready(response);
                }
            }
        }
    }
}

impl Drop for InRequest {
    /// A handler dropped before it answered (the reactor stopped) is
    /// dropped inside its request's context, so what it held across
    /// `.await` sees the request as its polls did.
    fn drop(&mut self) {
        // On a thread whose milieu state is gone (a reactor dropped from a
        // thread-local's destructor), the future drops as it is: entering
        // would panic in a destructor, an abort.
        if self.finished || crate::context::State::try_with(|_| ()).is_none() {
            return;
        }
        // A stand-in that allocates nothing (a zero-sized future).
        let unfinished: Pin<Box<dyn Future<Output = Response> + Send>> =
            Box::pin(std::future::pending());
        let future = std::mem::replace(&mut self.future, unfinished);
        // Misuse found on the way is an error event, not a panic out of
        // the reactor's drop.
        crate::context::reporting_misuse_as_errors(|| {
            let _in_request = enter_request(&self.span, self.context.as_ref(), &self.info);
            drop(future);
        });
    }
}
