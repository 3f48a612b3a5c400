//! Which connection code serves: [`ConnectionId`] and the
//! [`ConnectionInfo`] context entry the reactor installs for each
//! connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::Missing;

/// Identifies a connection (or listener) within its reactor; never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    pub(crate) fn of(token: usize) -> ConnectionId {
        ConnectionId(token as u64)
    }

    /// The number behind the id.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// The connection a piece of code serves: a context entry.
///
/// The reactor installs it (inherited, its value visible in dumps) in the
/// context of everything it runs for a connection: the factory, the
/// protocol, the handlers and the tasks they spawn. A panic logged there
/// names the connection.
///
/// # Examples
///
/// ```
/// use milieu::reactor::{serve, ConnectionInfo, LineProtocol};
///
/// fn whoami(_line: String) -> String {
///     let conn = ConnectionInfo::current().expect("runs for a connection");
///     format!("{} from {:?}", conn.id(), conn.peer_addr())
/// }
/// let _factory = || serve(LineProtocol::new(), whoami);
/// ```
#[derive(Clone)]
pub struct ConnectionInfo {
    inner: Arc<InfoInner>,
}

struct InfoInner {
    id: ConnectionId,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    transport: &'static str,
    paused: AtomicBool,
}

impl ConnectionInfo {
    pub(crate) fn new(
        token: usize,
        transport: &'static str,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> ConnectionInfo {
        ConnectionInfo {
            inner: Arc::new(InfoInner {
                id: ConnectionId::of(token),
                peer,
                local,
                transport,
                paused: AtomicBool::new(false),
            }),
        }
    }

    /// The connection the current code serves, from the context.
    ///
    /// # Errors
    ///
    /// [`Missing`] outside a connection's context.
    #[track_caller]
    pub fn current() -> Result<ConnectionInfo, Missing> {
        crate::get::<ConnectionInfo>().map(|info| (*info).clone())
    }

    /// The connection's id in its reactor.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// The peer's address (`None` for a memory transport).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer
    }

    /// Our address (`None` for a memory transport).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local
    }

    /// `"tcp"` or `"memory"`.
    pub fn transport(&self) -> &'static str {
        self.inner.transport
    }

    /// Whether write backpressure holds right now: the peer does not read
    /// its responses fast enough, so this connection stopped reading
    /// requests (see [`Limits`](super::Limits)).
    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::Relaxed)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.inner.paused.store(paused, Ordering::Relaxed);
    }
}

impl fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ConnectionInfo");
        s.field("id", &self.inner.id)
            .field("transport", &self.inner.transport);
        if let Some(peer) = self.inner.peer {
            s.field("peer", &peer);
        }
        if let Some(local) = self.inner.local {
            s.field("local", &local);
        }
        s.field("paused", &self.is_paused()).finish()
    }
}
