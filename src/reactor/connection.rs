//! Client connections: [`Handle::connect_tcp`](super::Handle::connect_tcp) and the [`Connection`] it
//! gives, to write bytes or lines to and read bytes or lines from.
//!
//! The reactor owns the socket; the `Connection` shares the buffers with it
//! (behind a mutex, so a connection may be used from any thread). Writes
//! are buffered and sent at the next flush step; reads wait for what the
//! reactor received. Reading stops while more than the high-water mark of
//! received bytes waits to be read, and resumes once the application read
//! it down to the low-water mark.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context as TaskContext, Poll, Waker};

use super::driver::{reactor_gone, Driver, DriverCx, IoQueue, TableRequest};
use super::info::ConnectionInfo;
use super::protocol::{LineProtocol, Protocol};
use super::readiness::Ready;
use super::stream::StreamIo;
use super::transport::{CloseReason, Transport};
use crate::Context;

/// A client connection, from [`Handle::connect_tcp`](super::Handle::connect_tcp).
///
/// Writes are buffered and sent by the reactor at its next flush step;
/// reads are futures resolved by the reactor. Dropping the connection
/// closes it once the buffered output is sent.
///
/// # Examples
///
/// See [`Handle::listen_tcp`](super::Handle::listen_tcp).
pub struct Connection {
    inner: Arc<ClientShared>,
}

/// What the [`Connection`] and its driver share.
pub(crate) struct ClientShared {
    token: usize,
    state: Mutex<ClientState>,
    io: Weak<IoQueue>,
}

enum Phase {
    Connecting,
    Connected,
    Failed(Option<io::Error>),
}

struct ClientState {
    phase: Phase,
    transport: Transport,
    /// Splits the input into lines for `read_line`.
    lines: LineProtocol,
    info: Option<ConnectionInfo>,
    /// Set once the driver left the reactor.
    closed: Option<CloseReason>,
    close_requested: bool,
    shutdown_requested: bool,
    /// Tasks waiting for any change; all are woken, each checks again.
    wakers: Vec<Waker>,
}

impl ClientState {
    fn wake_all(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }

    fn wait(&mut self, waker: &Waker) {
        if !self.wakers.iter().any(|w| w.will_wake(waker)) {
            self.wakers.push(waker.clone());
        }
    }

    /// The error for an operation the connection can no longer do.
    fn closed_error(&self) -> Option<io::Error> {
        match (&self.phase, &self.closed) {
            (_, Some(reason)) => Some(reason.to_io()),
            (Phase::Failed(_), None) => Some(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection failed",
            )),
            _ => None,
        }
    }
}

impl ClientShared {
    fn lock(&self) -> MutexGuard<'_, ClientState> {
        // No user code runs while the state is locked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        if let Some(io) = self.io.upgrade() {
            io.touch(self.token);
        }
    }

    fn resume(&self) {
        if let Some(io) = self.io.upgrade() {
            io.ready(self.token);
        }
    }
}

impl Connect {
    /// Registers a client driver over `stream` (a TCP connect in progress).
    pub(crate) fn start(io: &Arc<IoQueue>, stream: StreamIo, ctx: Context) -> Connect {
        match register(io, stream, Phase::Connecting, ctx) {
            Ok(client) => Connect {
                client: Some(client),
                error: None,
            },
            Err(e) => Connect::failed(e),
        }
    }

    /// A connect that failed before it began.
    pub(crate) fn failed(error: io::Error) -> Connect {
        Connect {
            client: None,
            error: Some(error),
        }
    }
}

#[cfg(feature = "test-util")]
impl Connection {
    /// A client connection over a memory transport, connected already.
    pub(crate) fn over_memory(
        io: &Arc<IoQueue>,
        stream: super::memory::MemoryStream,
        ctx: Context,
    ) -> io::Result<Connection> {
        register(io, StreamIo::Memory(stream), Phase::Connected, ctx)
            .map(|inner| Connection { inner })
    }
}

/// Queues a client driver over `stream` for the reactor's table.
fn register(
    io: &Arc<IoQueue>,
    stream: StreamIo,
    phase: Phase,
    ctx: Context,
) -> io::Result<Arc<ClientShared>> {
    let token = io.token();
    let connected = matches!(phase, Phase::Connected);
    let client = Arc::new(ClientShared {
        token,
        state: Mutex::new(ClientState {
            phase,
            transport: Transport::new(io.limits),
            lines: LineProtocol::new(),
            info: connected.then(|| stream.info(token)),
            closed: None,
            close_requested: false,
            shutdown_requested: false,
            wakers: Vec::new(),
        }),
        io: Arc::downgrade(io),
    });
    let driver = ClientDriver {
        stream,
        client: Arc::clone(&client),
        ctx,
        done: None,
    };
    let request = TableRequest::Client {
        token,
        driver: Box::new(driver),
    };
    match io.request(request) {
        Ok(()) => Ok(client),
        Err(_) => Err(reactor_gone()),
    }
}

/// The future returned by [`Handle::connect_tcp`](super::Handle::connect_tcp).
#[must_use = "futures do nothing unless polled"]
pub struct Connect {
    client: Option<Arc<ClientShared>>,
    error: Option<io::Error>,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect").finish_non_exhaustive()
    }
}

impl Future for Connect {
    type Output = io::Result<Connection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        let Some(client) = &self.client else {
            return Poll::Ready(Err(io::Error::other("Connect polled after it completed")));
        };
        let mut state = client.lock();
        let result = match &mut state.phase {
            Phase::Connected => Ok(()),
            Phase::Failed(e) => Err(e
                .take()
                .unwrap_or_else(|| io::Error::other("the connect failed"))),
            Phase::Connecting => match &state.closed {
                Some(reason) => Err(reason.to_io()),
                None => {
                    state.wait(cx.waker());
                    return Poll::Pending;
                }
            },
        };
        drop(state);
        let client = self.client.take();
        Poll::Ready(result.and_then(|()| {
            client
                .map(|inner| Connection { inner })
                .ok_or_else(reactor_gone)
        }))
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        // Abandoned while connecting: the reactor drops the socket.
        if let Some(client) = self.client.take() {
            client.lock().close_requested = true;
            client.touch();
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.inner.lock().info)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The connection's id and addresses.
    pub fn info(&self) -> ConnectionInfo {
        let state = self.inner.lock();
        match &state.info {
            Some(info) => info.clone(),
            None => ConnectionInfo::new(self.inner.token, "tcp", None, None),
        }
    }

    /// The peer's address (`None` for a memory transport).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.info().peer_addr()
    }

    /// Our address (`None` for a memory transport).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.info().local_addr()
    }

    /// Queues `bytes` for sending (at the reactor's next flush step). Never
    /// waits: see [`writable`](Connection::writable) for backpressure.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` after [`shutdown_write`](Connection::shutdown_write) or
    /// [`close`](Connection::close); the close reason once the connection
    /// is closed.
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.inner.lock();
        if let Some(e) = state.closed_error() {
            return Err(e);
        }
        if state.close_requested || state.shutdown_requested || !state.transport.write_open() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection's sending side is shut (shutdown_write or close was called)",
            ));
        }
        state.transport.output.extend(bytes);
        drop(state);
        self.inner.touch();
        Ok(())
    }

    /// Queues `line` and a `\n` for sending.
    ///
    /// # Errors
    ///
    /// As [`write`](Connection::write).
    pub fn write_line(&self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.write(&bytes)
    }

    /// Bytes queued and not sent yet.
    pub fn buffered_output(&self) -> usize {
        self.inner.lock().transport.output.len()
    }

    /// Bytes received and not read yet.
    pub fn buffered_input(&self) -> usize {
        self.inner.lock().transport.input.len()
    }

    /// Whether nothing more will arrive: the peer ended its stream, or the
    /// connection closed or failed. What arrived before may still wait to
    /// be read ([`buffered_input`](Connection::buffered_input)).
    ///
    /// A client that keeps connections open between requests asks this
    /// before reusing one: a peer that closed an idle connection is seen
    /// here as soon as the reactor read its end of stream, before any new
    /// request is written to it.
    pub fn read_closed(&self) -> bool {
        let state = self.inner.lock();
        state.transport.read_done()
            || state.closed.is_some()
            || matches!(state.phase, Phase::Failed(_))
    }

    /// Waits until at most the low-water mark of output is queued: write
    /// backpressure for a client that sends a lot.
    ///
    /// # Errors
    ///
    /// The close reason if the connection closes with output queued.
    pub fn writable(&self) -> Wait<'_, ()> {
        self.wait(0, |state, _| {
            if state.transport.output.len() <= state.transport.limits.low_water() {
                return Some(Ok(()));
            }
            state.closed_error().map(Err)
        })
    }

    /// Waits until every queued byte was handed to the OS.
    ///
    /// # Errors
    ///
    /// The close reason if the connection closes with output queued.
    pub fn flush(&self) -> Wait<'_, ()> {
        self.wait(0, |state, _| {
            if state.transport.output.is_empty() {
                return Some(Ok(()));
            }
            state.closed_error().map(Err)
        })
    }

    /// Reads what has arrived, at most `max` bytes, waiting if nothing has;
    /// an empty vector at the end of the stream.
    ///
    /// # Errors
    ///
    /// The close reason if the connection closed abnormally.
    pub fn read(&self, max: usize) -> Wait<'_, Vec<u8>> {
        self.wait(max, |state, max| {
            if !state.transport.input.is_empty() {
                // The line splitter's scan position is about the bytes
                // taken now: start it over.
                state.lines = LineProtocol::new();
                return Some(Ok(state.transport.input.take(max)));
            }
            if state.transport.read_eof() {
                return Some(Ok(Vec::new()));
            }
            state.closed_error().map(Err)
        })
    }

    /// Reads the next line (without its `\n` or `\r\n`), waiting for it to
    /// arrive; `None` at the end of the stream. A last line without `\n`
    /// before the end of the stream is still a line.
    ///
    /// # Errors
    ///
    /// `InvalidData` holding a [`LineError`](super::LineError) for a line
    /// longer than [`LineProtocol::DEFAULT_MAX_LINE`] or not UTF-8; the
    /// close reason if the connection closed abnormally.
    pub fn read_line(&self) -> Wait<'_, Option<String>> {
        self.wait(0, |state, _| {
            let ClientState {
                transport, lines, ..
            } = state;
            let at_eof = transport.read_eof();
            let input = transport.input.as_slice();
            let decoded = if at_eof {
                lines.decode_eof(input)
            } else {
                lines.decode(input)
            };
            match decoded {
                Ok(Some((line, n))) => {
                    transport.input.consume(n);
                    Some(Ok(Some(line)))
                }
                Err(e) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                Ok(None) if at_eof => Some(Ok(None)),
                Ok(None) => state.closed_error().map(Err),
            }
        })
    }

    /// Ends our sending side once the queued output is sent (half-close);
    /// reading goes on until the peer ends its stream.
    pub fn shutdown_write(&self) {
        self.inner.lock().shutdown_requested = true;
        self.inner.touch();
    }

    /// Closes the connection once the queued output is sent. Dropping the
    /// connection does the same.
    pub fn close(&self) {
        self.inner.lock().close_requested = true;
        self.inner.touch();
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.lock().closed.clone()
    }

    fn wait<T>(&self, arg: usize, check: Check<T>) -> Wait<'_, T> {
        Wait {
            conn: self,
            arg,
            check,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

type Check<T> = fn(&mut ClientState, usize) -> Option<io::Result<T>>;

/// A future waiting on a [`Connection`]: what [`read_line`](Connection::read_line),
/// [`read`](Connection::read), [`flush`](Connection::flush) and
/// [`writable`](Connection::writable) return.
#[must_use = "futures do nothing unless polled"]
pub struct Wait<'a, T> {
    conn: &'a Connection,
    arg: usize,
    check: Check<T>,
}

impl<T> fmt::Debug for Wait<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait").finish_non_exhaustive()
    }
}

impl<T> Future for Wait<'_, T> {
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut state = self.conn.inner.lock();
        let result = (self.check)(&mut state, self.arg);
        if result.is_none() {
            state.wait(cx.waker());
        }
        // Reading stopped while the input was full: room again?
        let resume = state.transport.is_paused()
            && state.transport.input.len() <= state.transport.limits.low_water();
        drop(state);
        if resume {
            self.conn.inner.resume();
        }
        match result {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

/// The reactor's side of a client connection.
pub(crate) struct ClientDriver {
    stream: StreamIo,
    client: Arc<ClientShared>,
    ctx: Context,
    done: Option<CloseReason>,
}

/// How much unread input a client connection holds before it stops
/// reading: the high-water mark, but always room for a line of the longest
/// length `read_line` accepts.
fn input_cap(state: &ClientState) -> usize {
    state
        .transport
        .limits
        .high_water()
        .max(LineProtocol::DEFAULT_MAX_LINE + 2)
}

impl ClientDriver {
    /// Input pressure: the application does not read what arrived.
    fn backpressure(state: &mut ClientState) {
        let unread = state.transport.input.len();
        let over = unread >= input_cap(state);
        let under = unread <= state.transport.limits.low_water();
        state.transport.backpressure(over, under);
    }
}

impl Driver for ClientDriver {
    fn io(&mut self, ready: Ready, cx: &mut DriverCx<'_>) {
        if self.done.is_some() {
            return;
        }
        let mut state = self.client.lock();
        if state.close_requested && matches!(state.phase, Phase::Connecting) {
            self.done = Some(CloseReason::Local);
            return;
        }
        if matches!(state.phase, Phase::Connecting) {
            match self.stream.connect_result() {
                Ok(false) => return,
                Ok(true) => {
                    #[allow(irrefutable_let_patterns)] // without `test-util`, TCP is all there is
                    if let StreamIo::Tcp(stream) = &self.stream {
                        let _ = stream.set_nodelay(true);
                    }
                    state.phase = Phase::Connected;
                    state.info = Some(self.stream.info(cx.token));
                    cx.stats.connected += 1;
                    state.wake_all();
                }
                Err(e) => {
                    state.phase = Phase::Failed(Some(e));
                    state.wake_all();
                    self.done = Some(CloseReason::Local);
                    return;
                }
            }
        }
        if !(ready.readable || ready.read_closed || ready.error) {
            return;
        }
        Self::backpressure(&mut state);
        let cap = input_cap(&state);
        let out = state
            .transport
            .read_from(&mut self.stream, cap, ready, cx.scratch);
        cx.stats.bytes_read += out.read;
        if out.read > 0 || out.eof || out.error.is_some() {
            state.wake_all();
        }
        if let Some(e) = out.error {
            self.done = Some(CloseReason::from_io(e));
            return;
        }
        Self::backpressure(&mut state);
    }

    fn dispatch(&mut self, _cx: &mut DriverCx<'_>) {
        // The application reads the input itself.
    }

    fn flush(&mut self, cx: &mut DriverCx<'_>) {
        if self.done.is_some() {
            return;
        }
        let mut state = self.client.lock();
        if !matches!(state.phase, Phase::Connected) {
            if state.close_requested {
                self.done = Some(CloseReason::Local);
            }
            return;
        }
        if state.close_requested || state.shutdown_requested {
            state.transport.shutdown_when_flushed();
        }
        let before = state.transport.output.len();
        let out = state.transport.write_to(&mut self.stream);
        cx.stats.bytes_written += out.written;
        if out.written > 0 || before > 0 {
            state.wake_all();
        }
        if let Some(e) = out.error {
            self.done = Some(CloseReason::from_io(e));
            return;
        }
        if state.close_requested && state.transport.write_shut() {
            self.done = Some(CloseReason::Local);
        } else if state.transport.write_shut() && state.transport.read_done() {
            self.done = Some(CloseReason::Finished);
        } else {
            Self::backpressure(&mut state);
            if state.transport.wants_read(input_cap(&state)) {
                cx.retry.push(cx.token);
            }
        }
    }

    fn finished(&self) -> bool {
        self.done.is_some()
    }

    fn abort(&mut self, reason: CloseReason) {
        self.done.get_or_insert(reason);
    }

    fn closed(&mut self, _cx: &mut DriverCx<'_>) {
        let reason = self.done.clone().unwrap_or(CloseReason::Local);
        let mut state = self.client.lock();
        if let Some(info) = &state.info {
            tracing::debug!(
                target: "milieu::reactor",
                connection = ?info,
                %reason,
                "client connection closed"
            );
        }
        state.closed.get_or_insert(reason);
        state.wake_all();
    }

    fn stream(&mut self) -> &mut StreamIo {
        &mut self.stream
    }

    fn context(&self) -> &Context {
        &self.ctx
    }
}

impl Drop for ClientDriver {
    fn drop(&mut self) {
        // Removed without `closed` (the reactor was dropped): tell waiters.
        let mut state = self.client.lock();
        if state.closed.is_none() {
            state.closed = Some(self.done.clone().unwrap_or(CloseReason::ReactorGone));
            state.wake_all();
        }
    }
}
