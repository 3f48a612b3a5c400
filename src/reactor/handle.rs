//! The [`Handle`]: what code finds in the context as "the current
//! reactor", and every way into it from any thread: tasks, timers, calls
//! from other threads, the thread pool, listeners and connections.
//!
//! Each method that schedules work captures the caller's context and
//! restores it when the work runs, recording a hop (`Handle::capture` is
//! the one place that decides what that context is).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::application::{Serve, ServerConn};
use super::connection::Connect;
#[cfg(feature = "test-util")]
use super::connection::Connection;
use super::delayed::{DelayedCall, Sleep, Timeout};
#[cfg(feature = "test-util")]
use super::driver::MakeDriverOnce;
use super::driver::{reactor_gone, Driver, MakeDriver, NewConnection, TableRequest};
#[cfg(feature = "test-util")]
use super::info::ConnectionId;
use super::listener::{bind, Listener, SharedPort};
#[cfg(feature = "test-util")]
use super::memory::MemoryStream;
use super::protocol::Protocol;
use super::state::ReactorState;
use super::stream::StreamIo;
use super::task::{self, JoinHandle};
use crate::context::HopKind;
use crate::context::{HopLabel, PendingHop};
use crate::panic::{self, Catcher};
use crate::{Context, Missing};

/// A cheap, cloneable, thread-safe reference to a reactor: what code finds
/// in the context as "the current reactor".
///
/// Methods that schedule work ([`spawn`](Handle::spawn),
/// [`call_later`](Handle::call_later), [`defer_to_thread`](Handle::defer_to_thread),
/// [`call_from_thread`](Handle::call_from_thread)) capture the caller's
/// context and restore it when the work runs, recording a hop.
#[derive(Clone)]
pub struct Handle {
    state: Arc<ReactorState>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reactor::Handle({})", self.state.name)
    }
}

impl Handle {
    /// The reactor running the current code, from the context.
    ///
    /// # Errors
    ///
    /// [`Missing`] outside any reactor's context (the report shows what
    /// the context holds instead).
    #[track_caller]
    pub fn current() -> Result<Handle, Missing> {
        crate::get::<Handle>().map(|h| (*h).clone())
    }

    /// The reactor's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The reactor's current time (virtual under a virtual clock).
    pub fn now(&self) -> Instant {
        self.state.clock.now()
    }

    /// Runs `future` as a task on the reactor thread, in the context
    /// current here (a task hop is recorded).
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let site = Location::caller();
        let (tx, rx) = futures_channel::oneshot::channel();
        let ctx = self.capture(HopKind::Task, "spawn", site);
        let task = crate::WithContext::new(task::run_and_send(future, tx), ctx, site);
        self.state.executor.spawn(Box::pin(task));
        JoinHandle { rx }
    }

    /// Calls `f` on the reactor thread after `delay`, in the context
    /// current here: Twisted's `callLater`. The [`DelayedCall`] cancels or
    /// moves the call, and awaited gives `f`'s result (Twisted's
    /// `deferLater`); see its example.
    #[track_caller]
    pub fn call_later<F, T>(&self, delay: Duration, f: F) -> DelayedCall<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let hop = self.capture_pending(HopKind::Task, "call_later", Location::caller());
        DelayedCall::schedule(&self.state, self.now() + delay, f, hop)
    }

    /// A future that completes after `delay`: `call_later` as a future
    /// (Twisted's `deferLater`).
    pub fn sleep(&self, delay: Duration) -> Sleep {
        Sleep::new(Arc::clone(&self.state), self.now() + delay)
    }

    /// Runs `future` with a deadline: `Err(Elapsed)` if `delay` passes
    /// first (the future is dropped then).
    pub fn timeout<F: Future>(&self, delay: Duration, future: F) -> Timeout<F> {
        Timeout::new(future, self.sleep(delay))
    }

    /// Runs `f` on the reactor thread at the start of its next tick: the
    /// one thread-safe entry into a reactor. Wakes the reactor.
    #[track_caller]
    pub fn call_from_thread<F: FnOnce() + Send + 'static>(&self, f: F) {
        let ctx = self.capture(HopKind::Thread, "call_from_thread", Location::caller());
        self.state.calls().push_back((Box::new(f), ctx));
        // Always wake: the caller may be another thread while the reactor
        // is about to wait.
        self.state.wakeup.wake();
    }

    /// Runs `f` on the reactor's thread pool, in the context current here
    /// (a thread hop is recorded); the returned future resolves, on
    /// whichever thread awaits it (normally the reactor's), to its result.
    #[track_caller]
    pub fn defer_to_thread<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ctx = self.capture(HopKind::Thread, "defer_to_thread", Location::caller());
        let (tx, rx) = futures_channel::oneshot::channel();
        let job = Box::new(move || {
            let result = ctx.run(|| catch_unwind(AssertUnwindSafe(f)));
            if let Err(panic) = &result {
                ctx.run(|| panic::log(Catcher::Reactor, "defer_to_thread job", &**panic));
            }
            let _ = tx.send(result);
        });
        match self.state.pool() {
            Ok(pool) => pool.execute(job),
            // Without threads the job cannot run: the handle reports it
            // as cancelled rather than hanging.
            Err(e) => tracing::error!(target: "milieu::reactor", "cannot start thread pool: {e}"),
        }
        JoinHandle { rx }
    }

    /// Asks the reactor to stop after the current tick ([`Reactor::run`](super::Reactor::run)
    /// returns).
    pub fn stop(&self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.state.wakeup.wake();
    }

    /// Asks the reactor to stop gracefully: at its next tick it stops
    /// accepting (its listeners close), each server connection answers
    /// every request it has received (those in flight, those read and not
    /// yet handled, one still arriving), sends what it owes and then ends
    /// (an idle one at once). The response to the last request it has
    /// says so when the protocol can ([`Protocol::last_response`](super::Protocol::last_response):
    /// HTTP's carries `Connection: close`, so a client sends its next
    /// request on a new connection). Then its side is shut, and the peer's end of
    /// stream is awaited for at most [`Limits::linger`](super::Limits::linger),
    /// so that a request crossing the close meets an end of stream, not a
    /// reset. Once no server connection is left the reactor stops
    /// ([`Reactor::run`](super::Reactor::run) returns). Client
    /// connections, tasks and timers are left alone; connections still in
    /// the kernel's accept queue when the listeners close are reset by
    /// the system.
    ///
    /// A connection that never finishes (a request that never completes)
    /// is ended by its timeouts ([`Limits`](super::Limits)); a caller
    /// with a deadline of its own calls [`stop`](Handle::stop) when it
    /// passes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use milieu::reactor::{serve, LineProtocol, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let handle = reactor.handle();
    /// let listener = handle.listen_tcp("127.0.0.1:0", || {
    ///     serve(LineProtocol::new(), |line: String| line.to_uppercase())
    /// })?;
    /// let addr = listener.local_addr();
    /// let mut client = std::net::TcpStream::connect(addr)?;
    /// client.write_all(b"hello\n")?;
    /// let answer = std::thread::spawn(move || {
    ///     let mut answer = String::new();
    ///     client.read_to_string(&mut answer).map(|_| answer) // to the close
    /// });
    /// handle.drain();
    /// reactor.run()?; // returns once the client has its answer and left
    /// assert_eq!(answer.join().unwrap()?, "HELLO\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(&self) {
        self.state.drain_requested.store(true, Ordering::SeqCst);
        self.state.wakeup.wake();
    }

    /// The caller's context for work this reactor will run, carried
    /// across a hop: with this reactor's handle on top unless it already is
    /// the visible one, so the work can always find the reactor running it.
    fn capture(
        &self,
        kind: HopKind,
        label: &'static str,
        site: &'static Location<'static>,
    ) -> Context {
        self.capture_pending(kind, label, site).into_context()
    }

    /// [`capture`](Handle::capture) without building the hop frame yet:
    /// for timers, most of which are cancelled before they fire.
    fn capture_pending(
        &self,
        kind: HopKind,
        label: &'static str,
        site: &'static Location<'static>,
    ) -> PendingHop {
        let ours = crate::with(|h: &Handle| Arc::ptr_eq(&h.state, &self.state)).unwrap_or(false);
        let ctx = if ours {
            Context::current()
        } else {
            crate::scope()
                .with(self.clone())
                .because("the reactor running this work")
                .run(Context::current)
        };
        PendingHop::new(ctx, kind, Some(HopLabel::Static(label)), site)
    }

    /// Listens for TCP connections on `addr`, serving each with what
    /// `factory` returns: a fresh protocol state and the application's
    /// handler ([`serve`](super::serve)).
    ///
    /// The socket is bound now, so the bound address (port 0 picks a free
    /// port) or the bind error comes back at once; the reactor starts
    /// accepting at its next tick. The factory and every connection's code
    /// run in the context current here, plus the reactor's [`Handle`] if
    /// missing, plus the connection's [`ConnectionInfo`](super::ConnectionInfo).
    ///
    /// # Errors
    ///
    /// The bind error (address in use, permission denied, unresolvable
    /// address), or an error if the reactor was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::reactor::{serve, LineProtocol, Reactor};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let handle = reactor.handle();
    /// let listener = handle.listen_tcp("127.0.0.1:0", || {
    ///     serve(LineProtocol::new(), |line: String| line.to_uppercase())
    /// })?;
    /// let reply = reactor.run_until(async move {
    ///     let conn = handle.connect_tcp(listener.local_addr()).await?;
    ///     conn.write_line("hello")?;
    ///     conn.read_line().await
    /// })??;
    /// assert_eq!(reply.as_deref(), Some("HELLO"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn listen_tcp<A, F, P>(&self, addr: A, factory: F) -> io::Result<Listener>
    where
        A: ToSocketAddrs,
        F: Fn() -> Serve<P> + Send + 'static,
        P: Protocol,
    {
        let listener = bind(addr, false)?;
        self.listen_on(listener, factory)
    }

    /// Registers a bound, listening socket (see [`listen_tcp`](Handle::listen_tcp)).
    #[track_caller]
    pub(crate) fn listen_on<F, P>(
        &self,
        listener: std::net::TcpListener,
        factory: F,
    ) -> io::Result<Listener>
    where
        F: Fn() -> Serve<P> + Send + 'static,
        P: Protocol,
    {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let token = self.state.io.token();
        let ctx = self.capture(HopKind::Task, "listen_tcp", Location::caller());
        let make: MakeDriver = Box::new(move |new: NewConnection| -> Box<dyn Driver> {
            Box::new(ServerConn::new(new, factory()))
        });
        let request = TableRequest::Listen {
            token,
            listener: mio::net::TcpListener::from_std(listener),
            make,
            ctx,
        };
        self.state.io.request(request).map_err(|_| reactor_gone())?;
        Ok(Listener::new(
            token,
            local_addr,
            Arc::downgrade(&self.state.io),
        ))
    }

    /// Listens on a [`SharedPort`] with a socket of this reactor's own,
    /// serving connections as [`listen_tcp`](Handle::listen_tcp) does.
    ///
    /// # Errors
    ///
    /// The bind error of the new socket, or an error if the reactor was
    /// dropped.
    #[track_caller]
    pub fn listen_shared<F, P>(&self, port: &SharedPort, factory: F) -> io::Result<Listener>
    where
        F: Fn() -> Serve<P> + Send + 'static,
        P: Protocol,
    {
        let socket = port.socket()?;
        self.listen_on(socket, factory)
    }

    /// Connects to `addr` over TCP: a future of the [`Connection`](super::Connection), resolved
    /// by this reactor once the connection is established (or failed).
    ///
    /// Names are not resolved here (a lookup may block): resolve them first,
    /// e.g. with [`defer_to_thread`](Handle::defer_to_thread) and
    /// `ToSocketAddrs`. Wrap the future in [`timeout`](Handle::timeout) to
    /// bound the wait; dropping it abandons the attempt.
    ///
    /// # Errors
    ///
    /// The future resolves to the connect error (refused, unreachable), or
    /// an error if the reactor was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use milieu::reactor::Reactor;
    ///
    /// let mut reactor = Reactor::new()?;
    /// let handle = reactor.handle();
    /// // Nothing listens on a port just freed: the connect fails, as an error.
    /// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    /// let err = reactor.run_until(handle.connect_tcp(port))?.unwrap_err();
    /// assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn connect_tcp(&self, addr: SocketAddr) -> Connect {
        match mio::net::TcpStream::connect(addr) {
            Ok(stream) => {
                let ctx = self.capture(HopKind::Task, "connect", Location::caller());
                Connect::start(&self.state.io, StreamIo::Tcp(stream), ctx)
            }
            Err(e) => Connect::failed(e),
        }
    }

    #[cfg(feature = "test-util")]
    /// A client [`Connection`] over a memory transport (the other end of
    /// `stream` is the peer): see `reactor::testing` (feature `test-util`).
    ///
    /// # Errors
    ///
    /// An error if the reactor was dropped.
    #[track_caller]
    pub fn connect_memory(&self, stream: MemoryStream) -> io::Result<Connection> {
        let ctx = self.capture(HopKind::Task, "connect", Location::caller());
        Connection::over_memory(&self.state.io, stream, ctx)
    }

    #[cfg(feature = "test-util")]
    /// Serves one connection over a memory transport with what `factory`
    /// returns, exactly as [`listen_tcp`](Handle::listen_tcp) serves an
    /// accepted TCP connection; the other end of `stream` is the client.
    /// The reactor takes it up at its next tick.
    ///
    /// # Errors
    ///
    /// An error if the reactor was dropped.
    #[track_caller]
    pub fn serve_memory<F, P>(&self, stream: MemoryStream, factory: F) -> io::Result<ConnectionId>
    where
        F: FnOnce() -> Serve<P> + Send + 'static,
        P: Protocol,
    {
        let token = self.state.io.token();
        let ctx = self.capture(HopKind::Task, "serve_memory", Location::caller());
        let make: MakeDriverOnce = Box::new(move |new: NewConnection| -> Box<dyn Driver> {
            Box::new(ServerConn::new(new, factory()))
        });
        let request = TableRequest::Serve {
            token,
            stream: StreamIo::Memory(stream),
            make,
            ctx,
        };
        self.state.io.request(request).map_err(|_| reactor_gone())?;
        Ok(ConnectionId::of(token))
    }

    pub(crate) fn from_state(state: Arc<ReactorState>) -> Handle {
        Handle { state }
    }
}
