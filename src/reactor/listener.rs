//! Listeners: binding (optionally with `SO_REUSEPORT`, for a
//! [`SharedPort`]), and accepting.
//!
//! [`Handle::listen_tcp`](super::Handle::listen_tcp) binds at once, so the
//! caller gets the bound address or the bind error synchronously, then
//! queues the socket for the reactor, which registers it at its next tick.
//! Each accepted connection gets a fresh id, its own context (the
//! listener's plus its [`ConnectionInfo`](super::ConnectionInfo)) and a
//! driver made by the user's factory.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::driver::{start_server_connection, Driver, IoQueue, MakeDriver, TableRequest};
use super::stats::TickStats;
use super::stream::StreamIo;
use crate::Context;

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
    pub(crate) make: MakeDriver,
    /// The context `listen_tcp` was called in (plus the reactor's handle).
    pub(crate) ctx: Context,
    /// After an accept error: when to try again without a readiness event
    /// (the table's timeout sweep brings it back).
    pub(crate) retry_at: Option<Instant>,
}

impl ListenerSource {
    /// Accepts pending connections into `born`; true if the budget ran out
    /// before the backlog was drained.
    pub(crate) fn accept(
        &mut self,
        io: &IoQueue,
        now: Instant,
        stats: &mut TickStats,
        born: &mut Vec<(usize, Box<dyn Driver>)>,
    ) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            match self.listener.accept() {
                Ok((stream, _peer)) => {
                    // Request/response traffic: no Nagle delay on replies.
                    let _ = stream.set_nodelay(true);
                    stats.accepted += 1;
                    let conn = io.token();
                    let stream = StreamIo::Tcp(stream);
                    let info = stream.info(conn);
                    let make = &mut self.make;
                    let started =
                        start_server_connection(make, stream, info, &self.ctx, io.limits, stats);
                    if let Some(driver) = started {
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
                    self.retry_at = Some(now + ACCEPT_RETRY);
                    return false;
                }
            }
        }
        true
    }
}

/// A listening socket registered with a reactor, returned by
/// [`Handle::listen_tcp`](super::Handle::listen_tcp).
///
/// Dropping it does not stop listening (the reactor owns the socket);
/// [`close`](Listener::close) does.
#[derive(Clone)]
pub struct Listener {
    token: usize,
    local_addr: SocketAddr,
    io: Weak<IoQueue>,
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
        if let Some(io) = self.io.upgrade() {
            let _ = io.request(TableRequest::CloseListener(self.token));
        }
    }
}

impl Listener {
    pub(crate) fn new(token: usize, local_addr: SocketAddr, io: Weak<IoQueue>) -> Listener {
        Listener {
            token,
            local_addr,
            io,
        }
    }
}

/// A TCP port several reactors listen on, each with its own socket
/// (`SO_REUSEPORT`), so the kernel spreads connections over them.
///
/// Bind it once, before starting the cores: binding port 0 picks the port
/// all of them then share. Cloning shares it.
#[derive(Clone)]
pub struct SharedPort {
    addr: SocketAddr,
    /// The socket bound first, handed to the first reactor that listens.
    first: Arc<Mutex<Option<std::net::TcpListener>>>,
}

impl fmt::Debug for SharedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPort")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SharedPort {
    /// Binds `addr` with `SO_REUSEPORT` (port 0 picks a free port).
    ///
    /// A port some other socket listens on already is refused, even when
    /// that socket has `SO_REUSEPORT` too (another process of the same
    /// user, or another `SharedPort` of this one): joining its group would
    /// split the connections between two services.
    ///
    /// # Errors
    ///
    /// The bind error (`AddrInUse` for a port in use), or `Unsupported`
    /// where `SO_REUSEPORT` is not available (Windows, illumos).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<SharedPort> {
        // As with `bind`, the first address that works is taken.
        let listener = bind_first(addr, |addr| {
            refuse_if_taken(addr)?;
            bind_one(addr, true)
        })?;
        Ok(SharedPort {
            addr: listener.local_addr()?,
            first: Arc::new(Mutex::new(Some(listener))),
        })
    }

    /// The address every reactor listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A listening socket of its own for one more reactor.
    pub(crate) fn socket(&self) -> io::Result<std::net::TcpListener> {
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match first {
            Some(listener) => Ok(listener),
            None => bind(self.addr, true),
        }
    }
}

/// Binds a listening socket to the first address of `addr` that works.
pub(crate) fn bind(
    addr: impl ToSocketAddrs,
    reuse_port: bool,
) -> io::Result<std::net::TcpListener> {
    bind_first(addr, |addr| bind_one(addr, reuse_port))
}

/// `bind_one` on each address of `addr` in turn, until one works; the
/// last error (with its address) when none does.
fn bind_first(
    addr: impl ToSocketAddrs,
    bind_one: impl Fn(SocketAddr) -> io::Result<std::net::TcpListener>,
) -> io::Result<std::net::TcpListener> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match bind_one(addr) {
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

/// `AddrInUse` if a socket listens on `addr` already (see
/// [`SharedPort::bind`]): a socket without `SO_REUSEPORT` cannot bind
/// where one listens, with or without it, so one is bound there and
/// closed again. Only a bind racing this one, in the moment between, can
/// still join. Port 0, and failures other than `AddrInUse` (which the
/// real bind then reports), pass.
fn refuse_if_taken(addr: SocketAddr) -> io::Result<()> {
    use socket2::{Domain, Socket, Type};

    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As the real bind: a port left in TIME_WAIT by a stopped server
    // counts as free.
    #[cfg(unix)]
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            e.kind(),
            format!("another socket listens there ({e})"),
        )),
        _ => Ok(()),
    }
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
