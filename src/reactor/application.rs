//! Application: handlers, as plain functions or `async fn`s, and the server
//! connection that ties transport, protocol and handler together.
//!
//! A server connection decodes complete requests from its read buffer and
//! calls the handler for each, in its context (which includes the
//! connection's [`ConnectionInfo`]). A plain handler answers at once; an
//! `async` one is polled once there and, if it has to wait, goes on as a
//! task of the reactor (with a task hop in its context). Responses go out in request
//! order whatever order they finish in (pipelining): each request takes a
//! slot in a queue, and only the slots at its front are encoded.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::budget::{ServerBudget, Share};
use super::driver::{Driver, DriverCx, NewConnection};
use super::info::ConnectionInfo;
use super::protocol::Protocol;
use super::readiness::Ready;
use super::stream::StreamIo;
use super::transport::{CloseReason, Limits, Transport, TransportEvent};
use crate::panic::{self, CatchUnwind, Catcher};
use crate::{Context, FutureExt};

/// What a handler returns: a response now, or a future of one.
pub enum Reply<R> {
    /// The response.
    Now(R),
    /// A future of the response: polled once in the connection's context,
    /// then run as a task of the reactor if it is not ready.
    Later(Pin<Box<dyn Future<Output = R> + Send>>),
}

impl<R> Reply<R> {
    /// A reply computed by `future`.
    pub fn later(future: impl Future<Output = R> + Send + 'static) -> Reply<R> {
        Reply::Later(Box::pin(future))
    }
}

impl<R> fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Now(_) => f.write_str("Reply::Now(..)"),
            Reply::Later(_) => f.write_str("Reply::Later(..)"),
        }
    }
}

/// A request handler: implemented by functions and closures of the
/// shapes below, told apart by the `Kind` marker (inferred, never written).
///
/// | shape                                      | `Kind`        |
/// |--------------------------------------------|---------------|
/// | `Fn(Request) -> Response`                  | [`Immediate`] |
/// | `Fn(Request) -> impl Future<Output = Response>` (an `async fn`) | [`Deferred`] |
/// | `Fn(Request) -> Reply<Response>`           | [`Replying`]  |
///
/// Closures need their argument type written (`|line: String| ..`), as
/// the compiler picks the shape from the signature.
pub trait Handler<Req, Resp, Kind>: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, request: Req) -> Reply<Resp>;
}

/// [`Handler`] marker: a plain function answering at once.
#[derive(Debug)]
pub enum Immediate {}

/// [`Handler`] marker: an `async fn` (a function returning a future).
#[derive(Debug)]
pub enum Deferred {}

/// [`Handler`] marker: a function returning a [`Reply`].
#[derive(Debug)]
pub enum Replying {}

impl<F, Req, Resp> Handler<Req, Resp, Immediate> for F
where
    F: Fn(Req) -> Resp + Send + Sync + 'static,
{
    fn call(&self, request: Req) -> Reply<Resp> {
        Reply::Now(self(request))
    }
}

impl<F, Fut, Req, Resp> Handler<Req, Resp, Deferred> for F
where
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    fn call(&self, request: Req) -> Reply<Resp> {
        Reply::Later(Box::pin(self(request)))
    }
}

impl<F, Req, Resp> Handler<Req, Resp, Replying> for F
where
    F: Fn(Req) -> Reply<Resp> + Send + Sync + 'static,
{
    fn call(&self, request: Req) -> Reply<Resp> {
        self(request)
    }
}

type HandlerFn<Req, Resp> = Arc<dyn Fn(Req) -> Reply<Resp> + Send + Sync>;

/// What serves one connection: a protocol state and the application's
/// handler. Listener factories return one per connection.
///
/// Cloning shares the handler (and clones the protocol state), so a
/// factory can hand out clones of one `Serve`.
pub struct Serve<P: Protocol> {
    pub(crate) protocol: P,
    pub(crate) handler: HandlerFn<P::Request, P::Response>,
    pub(crate) limits: Option<Limits>,
    pub(crate) budget: Option<ServerBudget>,
}

impl<P: Protocol> Serve<P> {
    /// Buffer sizes and backpressure thresholds for this connection
    /// (default: the reactor's, see
    /// [`Builder::transport_limits`](super::Builder::transport_limits)).
    pub fn with_limits(mut self, limits: Limits) -> Serve<P> {
        self.limits = Some(limits);
        self
    }

    /// Counts the connections served with this value (and its clones)
    /// against `budget`, and the input they buffer: see [`ServerBudget`]
    /// for what happens past it. Default: no budget.
    pub fn with_budget(mut self, budget: ServerBudget) -> Serve<P> {
        self.budget = Some(budget);
        self
    }

    /// The budget set with [`with_budget`](Serve::with_budget).
    pub fn budget(&self) -> Option<&ServerBudget> {
        self.budget.as_ref()
    }
}

impl<P: Protocol + Clone> Clone for Serve<P> {
    fn clone(&self) -> Self {
        Serve {
            protocol: self.protocol.clone(),
            handler: Arc::clone(&self.handler),
            limits: self.limits,
            budget: self.budget.clone(),
        }
    }
}

impl<P: Protocol> fmt::Debug for Serve<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("protocol", &std::any::type_name::<P>())
            .field("limits", &self.limits)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Serves a connection with `protocol` and `handler`: a plain function
/// (`Fn(Request) -> Response`) or an `async fn`. See [`Handler`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use milieu::reactor::{serve, Handle, LineProtocol};
///
/// fn shout(line: String) -> String {
///     line.to_uppercase()
/// }
///
/// async fn slow_echo(line: String) -> String {
///     let reactor = Handle::current().expect("handlers run in the reactor's context");
///     reactor.sleep(Duration::from_millis(1)).await;
///     line
/// }
///
/// let _plain = serve(LineProtocol::new(), shout);
/// let _async = serve(LineProtocol::new(), slow_echo);
/// let _closure = serve(LineProtocol::new(), |line: String| format!("> {line}"));
/// ```
pub fn serve<P, H, K>(protocol: P, handler: H) -> Serve<P>
where
    P: Protocol,
    H: Handler<P::Request, P::Response, K>,
{
    // An async handler's first poll is made right in the call, in the
    // connection's context: most answer there and never become a task.
    serve_polled(protocol, move |request| poll_first(handler.call(request)))
}

/// [`serve`] for a handler that makes the first inline poll of a deferred
/// reply itself ([`poll_first`], e.g. under an install of its own, as
/// `http::serve` does): the reactor does not poll it again before making
/// it a task, so the first poll happens once, in one place.
pub(crate) fn serve_polled<P, F>(protocol: P, handler: F) -> Serve<P>
where
    P: Protocol,
    F: Fn(P::Request) -> Reply<P::Response> + Send + Sync + 'static,
{
    Serve {
        protocol,
        handler: Arc::new(handler),
        limits: None,
        budget: None,
    }
}

/// A handler or task panicked (it was logged where it happened).
struct Panicked;

/// A response in the pipeline: ready, or being computed by a task.
enum Owed<R> {
    Ready(Option<R>),
    Waiting(oneshot::Receiver<Result<R, Panicked>>),
}

/// What the front of the pipeline produced.
enum Next<R> {
    Response(R),
    Panicked,
    /// The task was dropped (its reactor is going away).
    Cancelled,
}

/// A server connection: transport, protocol and handler.
pub(crate) struct ServerConn<P: Protocol> {
    stream: StreamIo,
    transport: Transport,
    protocol: P,
    handler: HandlerFn<P::Request, P::Response>,
    /// Responses owed, in request order.
    pipeline: VecDeque<Owed<P::Response>>,
    ctx: Context,
    info: ConnectionInfo,
    /// The connection is ending (why): nothing more is decoded; it closes
    /// once the responses owed are sent.
    ending: Option<CloseReason>,
    /// The connection is over (why): the table removes it.
    done: Option<CloseReason>,
    /// When the request now arriving began (only with a read timeout).
    request_started: Option<Instant>,
    /// Since when nothing has been in progress (only with an idle timeout).
    idle_since: Option<Instant>,
    /// Our side is shut and we wait for the peer's end of stream until
    /// then, at most [`Limits::linger`].
    linger_until: Option<Instant>,
    /// Output waits to be sent; the last time some was written, or when
    /// it began to wait (only with a write timeout).
    write_progress: Option<Instant>,
    /// A request that must be handled alone ([`Protocol::runs_alone`]),
    /// decoded and waiting for the responses ahead of it. Boxed: rare, and
    /// every idle connection would carry its room otherwise.
    held: Option<Box<P::Request>>,
    /// The request in flight runs alone: nothing more is handled until
    /// the pipeline is empty.
    alone_in_flight: bool,
    /// Bytes read so far, and since when (with how many read by then) the
    /// body of the request now arriving is being received.
    read_total: u64,
    body_since: Option<(Instant, u64)>,
    /// This connection's part of the server's budget, if there is one.
    share: Option<Share>,
    /// The reactor is draining: the connection closes as soon as it has
    /// nothing in progress (see [`Driver::drain`]).
    draining: bool,
}

/// Polls a deferred reply once, here: an async handler that does not wait
/// (most answer from memory) finishes on its first poll and needs no task.
///
/// Called once per request, by the handler the reactor is given ([`serve`]
/// wraps every handler in it; `http::serve` calls it under its own
/// install). The no-op waker is safe because a reply still `Later` after
/// this ends up in `ServerConn::request`, where it is made a task, queued
/// as runnable and polled again with its own waker in the same tick, and a
/// future wakes the waker of its latest poll.
pub(crate) fn poll_first<R>(reply: Reply<R>) -> Reply<R> {
    match reply {
        Reply::Later(mut future) => {
            let mut inline = TaskContext::from_waker(Waker::noop());
            match future.as_mut().poll(&mut inline) {
                Poll::Ready(response) => Reply::Now(response),
                Poll::Pending => Reply::Later(future),
            }
        }
        now => now,
    }
}

impl<P: Protocol> ServerConn<P> {
    pub(crate) fn new(new: NewConnection, serve: Serve<P>) -> ServerConn<P> {
        let (share, refused) = match serve.budget.map(Share::connect) {
            None => (None, false),
            Some(Ok(share)) => (Some(share), false),
            Some(Err(nothing)) => (Some(nothing), true),
        };
        let mut conn = ServerConn {
            stream: new.stream,
            transport: Transport::new(serve.limits.unwrap_or(new.limits)),
            protocol: serve.protocol,
            handler: serve.handler,
            pipeline: VecDeque::new(),
            ctx: new.ctx,
            info: new.info,
            ending: None,
            done: None,
            request_started: None,
            idle_since: None,
            linger_until: None,
            write_progress: None,
            held: None,
            alone_in_flight: false,
            read_total: 0,
            body_since: None,
            share,
            draining: false,
        };
        if refused {
            tracing::debug!(
                target: "milieu::reactor",
                connection = ?conn.info,
                "refusing a connection: the server's connection budget is spent"
            );
            conn.overloaded();
        }
        conn
    }

    /// Answers with the protocol's overload response (after what is owed)
    /// and ends the connection.
    fn overloaded(&mut self) {
        if self.ending.is_some() {
            return;
        }
        if let Some(response) = self.protocol.overload_response() {
            self.pipeline.push_back(Owed::Ready(Some(response)));
        }
        self.end(CloseReason::Overloaded);
    }

    /// The most undecoded input this connection may hold now.
    #[inline]
    fn input_cap(&self) -> usize {
        let limit = self.transport.limits.max_input();
        match &self.share {
            Some(share) => share.input_cap(limit),
            None => limit,
        }
    }

    /// Accounts for the input held now against the budget; answers with
    /// the overload response if the budget cannot cover it.
    #[inline]
    fn account_input(&mut self) {
        let held = self.transport.input.len();
        if let Some(share) = &mut self.share {
            if !share.hold(held) {
                tracing::debug!(
                    target: "milieu::reactor",
                    connection = ?self.info,
                    held,
                    "refusing a request: the server's input budget is spent"
                );
                self.overloaded();
                // `end` dropped the input.
                if let Some(share) = &mut self.share {
                    share.hold(0);
                }
            }
        }
    }

    /// Calls the handler (we are in the connection's context) and takes a
    /// slot for its response.
    fn request(&mut self, request: P::Request, cx: &mut DriverCx<'_>) {
        cx.stats.requests += 1;
        let replied = catch_unwind(AssertUnwindSafe(|| {
            // In the connection's context. The handler made the first poll
            // of a deferred reply (see `poll_first`): a task only if it
            // must wait.
            (self.handler)(request)
        }));
        match replied {
            Ok(Reply::Now(response)) => self.pipeline.push_back(Owed::Ready(Some(response))),
            Ok(Reply::Later(future)) => {
                let (tx, rx) = oneshot::channel();
                let io = Arc::downgrade(cx.io);
                let token = cx.token;
                let task = async move {
                    let result = CatchUnwind::new("handler", future)
                        .await
                        .map_err(|_| Panicked);
                    // The connection may be gone: nobody to answer.
                    let _ = tx.send(result);
                    if let Some(io) = io.upgrade() {
                        io.touch(token);
                    }
                };
                cx.executor.spawn(Box::pin(task.in_current_context()));
                self.pipeline.push_back(Owed::Waiting(rx));
            }
            Err(panic) => {
                panic::log(Catcher::Reactor, "handler", &*panic);
                cx.stats.panics += 1;
                match self.protocol.panic_response() {
                    Some(response) => self.pipeline.push_back(Owed::Ready(Some(response))),
                    None => self.end(CloseReason::Panicked),
                }
            }
        }
    }

    /// Takes the response at the front of the pipeline, if it is there.
    fn front(&mut self) -> Option<Next<P::Response>> {
        let next = match self.pipeline.front_mut()? {
            Owed::Ready(response) => Next::Response(response.take()?),
            Owed::Waiting(rx) => match rx.try_recv() {
                Ok(None) => return None,
                Ok(Some(Ok(response))) => Next::Response(response),
                Ok(Some(Err(Panicked))) => Next::Panicked,
                Err(oneshot::Canceled) => Next::Cancelled,
            },
        };
        self.pipeline.pop_front();
        Some(next)
    }

    /// Encodes the responses at the front of the pipeline, in order.
    fn advance(&mut self, cx: &mut DriverCx<'_>) {
        // Encoding stops at the high-water mark (the rest waits, decoded
        // responses in the pipeline, until the peer reads): a peer that
        // does not read makes the output grow by one response at most.
        let high_water = self.transport.limits.high_water();
        while self.transport.output.len() <= high_water {
            let Some(next) = self.front() else { break };
            let response = match next {
                Next::Response(response) => response,
                Next::Panicked => {
                    // Logged by the task when it panicked.
                    cx.stats.panics += 1;
                    match self.protocol.panic_response() {
                        Some(response) => response,
                        None => {
                            self.pipeline.clear();
                            self.end(CloseReason::Panicked);
                            break;
                        }
                    }
                }
                Next::Cancelled => {
                    self.pipeline.clear();
                    self.end(CloseReason::ReactorGone);
                    break;
                }
            };
            // While a request is held, the protocol's `closing` may be that
            // request's own `Connection: close`: ask about this response.
            let closes = match self.held {
                Some(_) => self.protocol.response_closes(&response),
                None => false,
            };
            // Draining, and this answers the last request received (none
            // owed after it, held back, partly received or unread): the
            // connection ends with it, and the protocol may say so in it.
            let last = self.draining
                && self.ending.is_none()
                && self.pipeline.is_empty()
                && self.held.is_none()
                && self.transport.input.is_empty()
                && !self.protocol.receiving_body();
            if last {
                self.protocol.last_response();
            }
            self.protocol.encode(response, self.transport.output.tail());
            let closes = closes || last || (self.held.is_none() && self.protocol.closing());
            if self.ending.is_none() && closes {
                // This response ends the connection: later ones are not
                // sent (their requests are answered by nobody).
                self.pipeline.clear();
                self.end(if last {
                    CloseReason::Drained
                } else {
                    CloseReason::Finished
                });
                break;
            }
        }
        // A request that ran alone is answered: decoding goes on.
        let alone_done = self.pipeline.is_empty() && std::mem::take(&mut self.alone_in_flight);
        if self.ending.is_some() && self.pipeline.is_empty() {
            self.held = None;
            self.transport.shutdown_when_flushed();
        } else if self.pipeline.is_empty() && (self.held.is_some() || alone_done) {
            // The request held back may run now, and what follows it be
            // decoded (in the dispatch step).
            cx.retry.push(cx.token);
        } else if self.pipeline.is_empty() && !self.transport.input.is_empty() {
            // A partial request waited behind responses now sent: its
            // interim output (`100 Continue`) may go now.
            self.protocol.interim(self.transport.output.tail());
        }
        self.update_backpressure(cx);
    }

    /// Pauses or resumes reading from the output waiting and the requests
    /// in flight; tells the protocol and the application.
    fn update_backpressure(&mut self, cx: &mut DriverCx<'_>) {
        let buffered = self.transport.output.len();
        let in_flight = self.pipeline.len();
        let limits = self.transport.limits;
        let too_many = in_flight >= limits.max_in_flight();
        let over = too_many || buffered > limits.high_water();
        let under = !too_many && buffered <= limits.low_water();
        match self.transport.backpressure(over, under) {
            Some(true) => {
                self.info.set_paused(true);
                self.protocol.event(&TransportEvent::Paused {
                    buffered,
                    in_flight,
                });
            }
            Some(false) => {
                self.info.set_paused(false);
                self.protocol.event(&TransportEvent::Resumed);
                // Input left undecoded and unread waits for us.
                cx.retry.push(cx.token);
            }
            None => {}
        }
    }

    /// Stops decoding; the connection closes once what is owed is sent.
    fn end(&mut self, reason: CloseReason) {
        if self.ending.is_none() {
            self.ending = Some(reason);
            self.request_started = None;
            self.body_since = None;
            // Keep reading (and dropping) until the peer's end of stream, so
            // it gets our last responses rather than a reset: closing with
            // unread input makes the kernel send a reset, which can destroy
            // responses the peer has not read yet (RFC 9112 §9.6).
            self.transport.stop_reading(true);
            if let Some(share) = &mut self.share {
                share.hold(0);
            }
        }
    }

    /// Handles a decoded request: now, or, if it must run alone and
    /// responses are owed ahead of it, once they are encoded.
    #[inline]
    fn handle(&mut self, request: P::Request, cx: &mut DriverCx<'_>) {
        if self.protocol.runs_alone(&request) {
            if !self.pipeline.is_empty() {
                self.held = Some(Box::new(request));
                return;
            }
            self.alone_in_flight = true;
        }
        self.run(request, cx);
    }

    /// Calls the handler, then encodes what is ready.
    #[inline]
    fn run(&mut self, request: P::Request, cx: &mut DriverCx<'_>) {
        self.request(request, cx);
        if self.protocol.closing() {
            // The last request: answer what is owed, then close.
            self.end(CloseReason::Finished);
        }
        self.advance(cx);
    }

    /// A request took too long to arrive: the protocol's timeout response
    /// (after what is owed), then close.
    fn timed_out(&mut self, after: Duration, cx: &mut DriverCx<'_>) {
        if let Some(response) = self.protocol.timeout_response() {
            self.pipeline.push_back(Owed::Ready(Some(response)));
        }
        self.end(CloseReason::TimedOut { idle: false, after });
        self.advance(cx);
    }

    /// When the body now arriving is late: the body timeout plus a second
    /// per `min_body_rate` bytes received since its head was in.
    fn body_deadline(&self) -> Option<Instant> {
        let (since, read_then) = self.body_since?;
        let (timeout, rate) = self.transport.limits.body_rate()?;
        let received = self.read_total.saturating_sub(read_then);
        let earned = match rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(received as f64 / rate as f64),
        };
        Some(since + timeout.saturating_add(earned))
    }

    /// Whether the response at the front of the pipeline may be encoded
    /// now: it is ready, or a task is computing it (then `advance` finds
    /// out).
    fn front_ready(&self) -> bool {
        match self.pipeline.front() {
            Some(Owed::Ready(response)) => response.is_some(),
            Some(Owed::Waiting(_)) => true,
            None => false,
        }
    }

    /// Restarts the write timeout when output was written or began to
    /// wait; stops it once none waits.
    fn note_write_progress(&mut self, written: usize, cx: &mut DriverCx<'_>) {
        if self.transport.output.is_empty() || self.transport.write_shut() {
            self.write_progress = None;
        } else if (written > 0 || self.write_progress.is_none())
            && self.transport.limits.write_timeout().is_some()
        {
            self.write_progress = Some(cx.clock.now());
        }
    }

    fn decode_error(&mut self, error: P::Error) {
        tracing::warn!(
            target: "milieu::reactor",
            connection = ?self.info,
            %error,
            "closing a connection: undecodable input"
        );
        if let Some(response) = self.protocol.error_response(&error) {
            self.pipeline.push_back(Owed::Ready(Some(response)));
        }
        self.end(CloseReason::Protocol(Arc::new(error)));
    }
}

impl<P: Protocol> Driver for ServerConn<P> {
    fn io(&mut self, ready: Ready, cx: &mut DriverCx<'_>) {
        if self.done.is_some() || !(ready.readable || ready.read_closed || ready.error) {
            return;
        }
        let cap = self.input_cap();
        let out = self
            .transport
            .read_from(&mut self.stream, cap, ready, cx.scratch);
        cx.stats.bytes_read += out.read;
        self.read_total += out.read as u64;
        if out.read > 0 {
            self.account_input();
        }
        if let Some(e) = out.error {
            self.done = Some(CloseReason::from_io(e));
        } else if out.eof && self.ending.is_none() {
            self.protocol.event(&TransportEvent::ReadClosed);
        }
    }

    fn dispatch(&mut self, cx: &mut DriverCx<'_>) {
        if self.done.is_some() {
            return;
        }
        let limit = self.transport.limits.max_input();
        let cap = self.input_cap();
        if self.pipeline.is_empty() && self.ending.is_none() {
            if let Some(request) = self.held.take() {
                self.alone_in_flight = true;
                self.run(*request, cx);
            }
        }
        while self.ending.is_none()
            && !self.transport.is_paused()
            && self.held.is_none()
            && !self.alone_in_flight
        {
            let input = self.transport.input.as_slice();
            let available = input.len();
            if available == 0 {
                break;
            }
            let at_eof = self.transport.read_eof();
            let decoded = if at_eof {
                self.protocol.decode_eof(input)
            } else {
                self.protocol.decode(input)
            };
            match decoded {
                Ok(Some((request, consumed))) => {
                    if consumed == 0 || consumed > available {
                        let error = NoProgress {
                            consumed,
                            available,
                        };
                        self.end(CloseReason::Protocol(Arc::new(error)));
                        break;
                    }
                    self.transport.input.consume(consumed);
                    self.request_started = None;
                    self.body_since = None;
                    self.handle(request, cx);
                }
                Ok(None) => {
                    if !at_eof && available >= limit {
                        self.end(CloseReason::InputTooLarge { limit });
                    } else if !at_eof && available >= cap {
                        // Under its own limit, over what the server has left.
                        self.overloaded();
                    } else if self.pipeline.is_empty() {
                        self.protocol.interim(self.transport.output.tail());
                    }
                    break;
                }
                Err(error) => {
                    self.decode_error(error);
                    break;
                }
            }
        }
        if self.ending.is_none()
            && self.transport.read_eof()
            && !self.transport.is_paused()
            && self.held.is_none()
        {
            // Half-close: the peer sent all it will; answer, then close.
            self.end(CloseReason::Finished);
        }
        self.account_input();
        let partial = self.ending.is_none() && !self.transport.input.as_slice().is_empty();
        if !partial || self.transport.is_paused() {
            // A request waiting because we stopped reading is not slow.
            self.request_started = None;
            self.body_since = None;
        } else {
            let limits = &self.transport.limits;
            if self.request_started.is_none() && limits.read_timeout().is_some() {
                self.request_started = Some(cx.clock.now());
            }
            if self.body_since.is_none()
                && limits.body_rate().is_some()
                && self.protocol.receiving_body()
            {
                self.body_since = Some((cx.clock.now(), self.read_total));
            }
        }
        if self.ending.is_some() {
            self.advance(cx);
        } else if self.transport.wants_read(self.input_cap()) {
            cx.retry.push(cx.token);
        }
    }

    fn flush(&mut self, cx: &mut DriverCx<'_>) {
        if self.done.is_some() {
            return;
        }
        // Encode and write in turns while the peer takes it all: encoding
        // stops at the high-water mark, writing makes room again.
        let mut written = 0;
        loop {
            self.advance(cx);
            let before = self.transport.output.len();
            let out = self.transport.write_to(&mut self.stream);
            cx.stats.bytes_written += out.written;
            written += out.written;
            if let Some(e) = out.error {
                self.done = Some(CloseReason::from_io(e));
                return;
            }
            let drained = out.written == before && before > 0;
            if !(drained && self.front_ready()) {
                break;
            }
        }
        self.note_write_progress(written, cx);
        self.update_backpressure(cx);
        if self.transport.write_shut() && self.transport.read_done() {
            self.done = Some(self.ending.take().unwrap_or(CloseReason::Finished));
            return;
        }
        if self.transport.write_shut() {
            if self.linger_until.is_none() {
                self.linger_until = Some(cx.clock.now() + self.transport.limits.linger());
            }
            return;
        }
        let idle = self.ending.is_none()
            && self.pipeline.is_empty()
            && self.held.is_none()
            && self.transport.input.as_slice().is_empty()
            && self.transport.output.is_empty();
        if !idle {
            self.idle_since = None;
            return;
        }
        if self.draining {
            // Everything received is answered and sent: the connection
            // ends as any closing one does (our side shut, the peer's
            // input read and dropped until it closes, for at most the
            // linger time), so that a request crossing our close on the
            // wire meets an end of stream, not a reset. `ending` is set
            // now, so this second flush does not come here again.
            self.end(CloseReason::Drained);
            self.flush(cx);
            return;
        }
        self.transport.input.release_if_empty();
        self.transport.output.release_if_empty();
        if self.idle_since.is_none() && self.transport.limits.idle_timeout().is_some() {
            self.idle_since = Some(cx.clock.now());
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let limits = &self.transport.limits;
        let read = match self.body_deadline() {
            Some(at) => Some(at),
            None => self
                .request_started
                .zip(limits.read_timeout())
                .map(|(since, timeout)| since + timeout),
        };
        let idle = self
            .idle_since
            .zip(limits.idle_timeout())
            .map(|(since, timeout)| since + timeout);
        let write = self
            .write_progress
            .zip(limits.write_timeout())
            .map(|(since, timeout)| since + timeout);
        [read, idle, write, self.linger_until]
            .into_iter()
            .flatten()
            .min()
    }

    fn expire(&mut self, now: Instant, cx: &mut DriverCx<'_>) {
        if self.done.is_some() {
            return;
        }
        let limits = self.transport.limits;
        if let (Some(since), Some(after)) = (self.write_progress, limits.write_timeout()) {
            if since + after <= now {
                tracing::debug!(
                    target: "milieu::reactor",
                    connection = ?self.info,
                    unsent = self.transport.output.len(),
                    "closing a connection: the peer read nothing for {after:?}"
                );
                // Nothing more can reach the peer: close now, freeing the
                // buffers and the responses still owed.
                self.pipeline.clear();
                self.held = None;
                self.transport.output.clear();
                self.done = Some(CloseReason::WriteStalled { after });
                return;
            }
        }
        if let Some(at) = self.body_deadline() {
            if at <= now {
                let after = at.saturating_duration_since(self.body_since.map_or(at, |(s, _)| s));
                tracing::debug!(
                    target: "milieu::reactor",
                    connection = ?self.info,
                    "closing a connection: a request body arrived slower than the minimum rate"
                );
                self.timed_out(after, cx);
                return;
            }
        }
        let read_deadline_applies = self.body_deadline().is_none();
        if let (Some(started), Some(after)) = (self.request_started, limits.read_timeout()) {
            if read_deadline_applies && started + after <= now {
                tracing::debug!(
                    target: "milieu::reactor",
                    connection = ?self.info,
                    "closing a connection: a request stayed incomplete for {after:?}"
                );
                self.timed_out(after, cx);
                return;
            }
        }
        if let (Some(since), Some(after)) = (self.idle_since, limits.idle_timeout()) {
            if since + after <= now {
                // Nothing in progress and nothing owed: close at once.
                self.done = Some(CloseReason::TimedOut { idle: true, after });
                return;
            }
        }
        if self.linger_until.is_some_and(|until| until <= now) {
            // The peer did not close after our last response.
            self.done = Some(self.ending.take().unwrap_or(CloseReason::Finished));
        }
    }

    fn finished(&self) -> bool {
        self.done.is_some()
    }

    fn drain(&mut self, cx: &mut DriverCx<'_>) -> bool {
        // What the peer sent and we have not read yet (a connection
        // accepted in this tick has read nothing) is read now: the
        // dispatch step that follows decodes and handles it, and `flush`,
        // which runs in this tick and after every response, ends the
        // connection once nothing is in progress.
        self.draining = true;
        self.io(Ready::ANY, cx);
        true
    }

    fn abort(&mut self, reason: CloseReason) {
        self.done.get_or_insert(reason);
    }

    fn closed(&mut self, _cx: &mut DriverCx<'_>) {
        let reason = self.done.clone().unwrap_or(CloseReason::Finished);
        self.info.set_paused(false);
        tracing::debug!(
            target: "milieu::reactor",
            connection = ?self.info,
            %reason,
            "connection closed"
        );
        self.protocol.event(&TransportEvent::Closed(&reason));
    }

    fn stream(&mut self) -> &mut StreamIo {
        &mut self.stream
    }

    fn context(&self) -> &Context {
        &self.ctx
    }
}

/// A protocol returned a request that consumed no input, or more input
/// than there was: a bug in the protocol; the connection is closed.
#[derive(Debug)]
struct NoProgress {
    consumed: usize,
    available: usize,
}

impl fmt::Display for NoProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the protocol decoded a request from {} of {} input bytes \
             (Protocol::decode must consume between 1 and all of them)",
            self.consumed, self.available
        )
    }
}

impl Error for NoProgress {}
