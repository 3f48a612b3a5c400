//! Listeners: binding (optionally with `SO_REUSEPORT`), registering with
//! a reactor, accepting.
//!
//! [`Handle::listen_tcp`] binds at once, so the caller gets the bound
//! address or the bind error synchronously, then queues the socket for the
//! reactor, which registers it at its next tick. Each accepted connection
//! gets a fresh id, its own context (the listener's plus its
//! [`ConnectionInfo`](super::ConnectionInfo)) and a driver made by the
//! user's factory.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::application::{Serve, ServerConn};
use super::net::{reactor_gone, start, Driver, IoRequest, Make, NewConn, StreamIo};
use super::protocol::Protocol;
use super::{Handle, Shared, TickStats};
use crate::context::{Context, HopKind};

/// Connections accepted per listener per tick before the others get a turn.
const ACCEPT_BUDGET: usize = 256;

/// Backlog of listening sockets.
const BACKLOG: i32 = 1024;

/// After an accept error such as "too many open files", wait this long
/// before accepting again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A listening socket in the table.
pub(crate) struct ListenerSource {
    pub(crate) listener: mio::net::TcpListener,
    pub(crate) make: Make,
    /// The context `listen_tcp` was called in (plus the reactor's handle).
    pub(crate) ctx: Context,
}

impl ListenerSource {
    /// Accepts pending connections into `born`; true if the budget ran out
    /// before the backlog was drained.
    pub(crate) fn accept(
        &mut self,
        token: usize,
        shared: &Arc<Shared>,
        stats: &mut TickStats,
        born: &mut Vec<(usize, Box<dyn Driver>)>,
    ) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            match self.listener.accept() {
                Ok((stream, _peer)) => {
                    // Request/response traffic: no Nagle delay on replies.
                    let _ = stream.set_nodelay(true);
                    stats.accepted += 1;
                    let conn = shared.io.token();
                    let stream = StreamIo::Tcp(stream);
                    let info = stream.info(conn);
                    let make = &mut self.make;
                    if let Some(driver) = start(make, stream, info, &self.ctx, shared, stats) {
                        born.push((conn, driver));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // The connection died in the backlog, or a signal: next.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // Out of file descriptors or memory: the backlog keeps
                    // the connections; try again a little later.
                    self.ctx.run(|| {
                        tracing::warn!(
                            target: "milieu::reactor",
                            error = %e,
                            "accept failed; retrying in {ACCEPT_RETRY:?}"
                        );
                    });
                    let weak = Arc::downgrade(shared);
                    let handle = Handle {
                        shared: Arc::clone(shared),
                    };
                    handle.call_later(ACCEPT_RETRY, move || {
                        if let Some(shared) = weak.upgrade() {
                            shared.ready_io(token);
                        }
                    });
                    return false;
                }
            }
        }
        true
    }
}

/// A listening socket registered with a reactor, returned by
/// [`Handle::listen_tcp`].
///
/// Dropping it does not stop listening (the reactor owns the socket);
/// [`close`](Listener::close) does.
#[derive(Clone)]
pub struct Listener {
    token: usize,
    local_addr: SocketAddr,
    shared: Weak<Shared>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// The address it listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting (at the reactor's next tick) and closes the socket.
    /// Connections accepted already go on.
    pub fn close(&self) {
        if let Some(shared) = self.shared.upgrade() {
            let _ = shared
                .io
                .request(IoRequest::CloseListener(self.token), &shared.waker);
        }
    }
}

impl Handle {
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
        let token = self.shared.io.token();
        let ctx = self.connection_parent("listen_tcp");
        let make: Make = Box::new(move |new: NewConn| -> Box<dyn Driver> {
            Box::new(ServerConn::new(new, factory()))
        });
        let request = IoRequest::Listen {
            token,
            listener: mio::net::TcpListener::from_std(listener),
            make,
            ctx,
        };
        self.shared
            .io
            .request(request, &self.shared.waker)
            .map_err(|_| reactor_gone())?;
        Ok(Listener {
            token,
            local_addr,
            shared: Arc::downgrade(&self.shared),
        })
    }

    /// The context connections start from: the caller's, with a hop, plus
    /// this handle if the caller's context has no reactor.
    #[track_caller]
    pub(crate) fn connection_parent(&self, label: &'static str) -> Context {
        let ctx = Context::current().hop_labeled(HopKind::Task, label);
        if ctx.contains::<Handle>() {
            return ctx;
        }
        ctx.run(|| {
            crate::scope()
                .with(self.clone())
                .because("the reactor running this code")
                .run(Context::current)
        })
    }
}

/// Binds a listening socket to the first address of `addr` that works.
pub(crate) fn bind(
    addr: impl ToSocketAddrs,
    reuse_port: bool,
) -> io::Result<std::net::TcpListener> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match bind_one(addr, reuse_port) {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                last = Some(io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot listen: the address resolved to nothing",
        )
    }))
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};

    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As std does: a restarted server can bind again at once.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
fn set_reuse_port(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
fn set_reuse_port(_socket: &socket2::Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available on this platform",
    ))
}
