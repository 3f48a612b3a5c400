//! The I/O layers wired into the tick: the table of sources a reactor owns
//! (listeners and connections), the queue through which handles ask for
//! new ones, and the steps of the tick that drive them:
//!
//! - **4. I/O**: the queue of requests from handles is drained
//!   (registrations, closes), then each ready source does its I/O:
//!   listeners accept, connections receive into their read buffers (and
//!   finish connecting);
//! - **5. protocol dispatch**: connections with new input decode it and
//!   hand the complete requests to the application;
//! - **7. flush**: connections with buffered output (responses of this
//!   tick, of async handlers that finished in step 6, writes from client
//!   code) send it; finished connections are removed.
//!
//! The source table lives in the [`Reactor`](super::Reactor), not in the
//! shared state: only the reactor thread touches sockets. Handles on any
//! thread talk to it through [`IoShared`]: a queue of requests, and lists
//! of sources to look at again (`touched`: output to flush; `ready`: I/O to
//! try without a readiness event).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use super::listener::ListenerSource;
use super::readiness::{Readiness, Ready, WAKER};
use super::testing::MemoryStream;
use super::transport::{CloseReason, Limits, Stream};
use super::{Builder, Shared, TickStats};
use crate::panic::{self, Catcher};
use crate::{Context, Missing};

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
    /// requests (see [`Limits`]).
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

/// What the tick hands a connection for one call.
pub(crate) struct Cx<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) stats: &'a mut TickStats,
    pub(crate) token: usize,
    /// Sources to try again next tick without a readiness event.
    pub(crate) retry: &'a mut Vec<usize>,
    /// The reactor's receive buffer: reads land here and only the bytes
    /// received are copied into the connection's input, so a connection's
    /// buffer is the size of its data, not of the largest possible read.
    pub(crate) scratch: &'a mut Vec<u8>,
}

/// A connection as the source table drives it: a server connection
/// (transport + protocol + application) or a client [`Connection`](super::Connection).
///
/// Every call runs inside [`context`](Driver::context) and under
/// `catch_unwind`: a panic aborts the connection, never the reactor.
pub(crate) trait Driver: Send {
    /// Step 4: I/O for a ready source (receive; finish connecting).
    fn io(&mut self, ready: Ready, cx: &mut Cx<'_>);
    /// Step 5: decode new input and dispatch the requests.
    fn dispatch(&mut self, cx: &mut Cx<'_>);
    /// Step 7: send buffered output; decide whether the connection is over.
    fn flush(&mut self, cx: &mut Cx<'_>);
    /// The connection is over: the table removes it.
    fn finished(&self) -> bool;
    /// Ends the connection at once (its code panicked).
    fn abort(&mut self, reason: CloseReason);
    /// Called once, when it leaves the table.
    fn closed(&mut self, cx: &mut Cx<'_>);
    /// When [`expire`](Driver::expire) has something to do (a read or idle
    /// timeout, the end of a linger): asked after every flush, without
    /// entering the connection's context, so it must be a cheap getter.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Acts on the timeouts due at `now` (the sweep found
    /// [`deadline`](Driver::deadline) passed); the connection is flushed
    /// in the same tick.
    fn expire(&mut self, now: Instant, cx: &mut Cx<'_>) {
        let _ = (now, cx);
    }
    fn stream(&mut self) -> &mut StreamIo;
    fn context(&self) -> &Context;
}

/// The byte streams the reactor drives.
pub(crate) enum StreamIo {
    Tcp(mio::net::TcpStream),
    Memory(MemoryStream),
}

impl StreamIo {
    /// Whether a connect finished: `Ok(false)` while it is in progress.
    pub(crate) fn connect_result(&mut self) -> io::Result<bool> {
        match self {
            StreamIo::Memory(_) => Ok(true),
            StreamIo::Tcp(stream) => {
                if let Some(e) = stream.take_error()? {
                    return Err(e);
                }
                match stream.peer_addr() {
                    Ok(_) => Ok(true),
                    // Not connected yet (mio's documented protocol).
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) if EINPROGRESS.is_some() && e.raw_os_error() == EINPROGRESS => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    pub(crate) fn info(&self, token: usize) -> ConnectionInfo {
        match self {
            StreamIo::Tcp(s) => {
                ConnectionInfo::new(token, "tcp", s.peer_addr().ok(), s.local_addr().ok())
            }
            StreamIo::Memory(_) => ConnectionInfo::new(token, "memory", None, None),
        }
    }
}

/// `EINPROGRESS` (`io::ErrorKind::InProgress` is not stable yet).
#[cfg(any(target_os = "linux", target_os = "android"))]
const EINPROGRESS: Option<i32> = Some(115);
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
const EINPROGRESS: Option<i32> = Some(36);
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
const EINPROGRESS: Option<i32> = None;

impl Read for StreamIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamIo::Tcp(s) => s.read(buf),
            StreamIo::Memory(s) => s.read(buf),
        }
    }
}

impl Write for StreamIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamIo::Tcp(s) => s.write(buf),
            StreamIo::Memory(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for StreamIo {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            StreamIo::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            StreamIo::Memory(s) => {
                s.shutdown_write();
                Ok(())
            }
        }
    }
}

/// Builds the driver of a new server connection (calls the user's factory).
pub(crate) type Make = Box<dyn FnMut(NewConn) -> Box<dyn Driver> + Send>;

/// [`Make`] for a single connection.
pub(crate) type MakeOnce = Box<dyn FnOnce(NewConn) -> Box<dyn Driver> + Send>;

/// What a new server connection is made of.
pub(crate) struct NewConn {
    pub(crate) stream: StreamIo,
    pub(crate) info: ConnectionInfo,
    pub(crate) ctx: Context,
    pub(crate) limits: Limits,
}

/// A request from a handle to the reactor's source table.
pub(crate) enum IoRequest {
    Listen {
        token: usize,
        listener: mio::net::TcpListener,
        make: Make,
        ctx: Context,
    },
    /// A server connection on a ready-made stream (a memory transport).
    Serve {
        token: usize,
        stream: StreamIo,
        make: MakeOnce,
        ctx: Context,
    },
    /// A client connection (connecting, or connected already).
    Client {
        token: usize,
        driver: Box<dyn Driver>,
    },
    CloseListener(usize),
}

/// The part of the I/O layer that handles reach, in [`Shared`].
pub(crate) struct IoShared {
    queue: Mutex<IoQueue>,
    next_token: AtomicUsize,
    /// Limits of client connections and of servers that set none.
    pub(crate) limits: Limits,
}

#[derive(Default)]
struct IoQueue {
    requests: Vec<IoRequest>,
    /// Sources with output to flush (or a close to carry out).
    touched: Vec<usize>,
    /// Sources to try I/O on without a readiness event.
    ready: Vec<usize>,
    /// Between the start of step 4 and the end of step 7: what is queued
    /// now is seen without waking the reactor.
    in_tick: bool,
    /// The reactor is gone: requests are refused.
    closed: bool,
}

impl IoShared {
    pub(crate) fn new(limits: Limits) -> IoShared {
        IoShared {
            queue: Mutex::new(IoQueue::default()),
            next_token: AtomicUsize::new(0),
            limits,
        }
    }

    fn queue(&self) -> MutexGuard<'_, IoQueue> {
        // Nothing panics while the queue is locked.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh token (tokens are never reused, so a stale event cannot
    /// reach a newer source).
    pub(crate) fn token(&self) -> usize {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        debug_assert_ne!(Token(token), WAKER);
        token
    }

    /// Queues a request and wakes the reactor; gives the request back if
    /// the reactor is gone.
    pub(crate) fn request(&self, request: IoRequest, waker: &mio::Waker) -> Result<(), IoRequest> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(request);
        }
        queue.requests.push(request);
        drop(queue);
        // A failed wake leaves the request to the next tick.
        let _ = waker.wake();
        Ok(())
    }

    fn push(&self, token: usize, ready: bool, waker: &mio::Waker) {
        let mut queue = self.queue();
        if queue.closed {
            return;
        }
        let was_empty = queue.touched.is_empty() && queue.ready.is_empty();
        if ready {
            queue.ready.push(token);
        } else {
            queue.touched.push(token);
        }
        let wake = was_empty && !queue.in_tick;
        drop(queue);
        if wake {
            let _ = waker.wake();
        }
    }

    /// Start of step 4: the requests and both lists.
    fn begin(&self) -> (Vec<IoRequest>, Vec<usize>, Vec<usize>) {
        let mut queue = self.queue();
        queue.in_tick = true;
        (
            std::mem::take(&mut queue.requests),
            std::mem::take(&mut queue.touched),
            std::mem::take(&mut queue.ready),
        )
    }

    /// Step 7: what was touched since step 4.
    fn take_touched(&self) -> (Vec<usize>, Vec<usize>) {
        let mut queue = self.queue();
        (
            std::mem::take(&mut queue.touched),
            std::mem::take(&mut queue.ready),
        )
    }

    /// End of step 7. Wakes the reactor if work is waiting, so the next
    /// readiness poll does not block.
    fn end(&self, waker: &mio::Waker, more: bool) {
        let mut queue = self.queue();
        queue.in_tick = false;
        let wake = more
            || !queue.touched.is_empty()
            || !queue.ready.is_empty()
            || !queue.requests.is_empty();
        drop(queue);
        if wake {
            let _ = waker.wake();
        }
    }

    fn is_empty(&self) -> bool {
        let queue = self.queue();
        queue.requests.is_empty() && queue.touched.is_empty() && queue.ready.is_empty()
    }

    /// The reactor is dropped: refuse new requests, hand back the queued ones.
    fn close(&self) -> Vec<IoRequest> {
        let mut queue = self.queue();
        queue.closed = true;
        queue.touched.clear();
        queue.ready.clear();
        std::mem::take(&mut queue.requests)
    }
}

impl Shared {
    /// A source has output to flush (or a close to carry out).
    pub(crate) fn touch_io(&self, token: usize) {
        self.io.push(token, false, &self.waker);
    }

    /// A source should try its I/O without a readiness event.
    pub(crate) fn ready_io(&self, token: usize) {
        self.io.push(token, true, &self.waker);
    }
}

/// The error of a request made after the reactor was dropped.
pub(crate) fn reactor_gone() -> io::Error {
    io::Error::other("the reactor was dropped; its handle can no longer start I/O")
}

enum Source {
    Listener(ListenerSource),
    Conn(Box<dyn Driver>),
}

/// The reactor's sources, owned by the [`Reactor`](super::Reactor).
pub(crate) struct Io {
    shared: Arc<Shared>,
    sources: HashMap<usize, Source, BuildHasherDefault<TokenHasher>>,
    /// What each call into a driver needs besides the driver.
    driving: Driving,
    /// Connections that did I/O this tick: step 5 dispatches them.
    dispatch: Vec<usize>,
    /// Connections to flush in step 7.
    flush: Vec<usize>,
    /// Finished connections, removed at the end of each step.
    dead: Vec<usize>,
    work: Vec<(usize, Ready)>,
    /// The earliest connection deadline seen (read or idle timeout,
    /// linger), if any: the sweep in step 4 runs once it has passed.
    next_sweep: Option<Instant>,
}

/// Hashes source tokens, which are sequential numbers: one multiplication
/// (Fibonacci hashing spreads them over the high bits the table's
/// probing uses) in place of SipHash, three lookups per connection a tick.
#[derive(Default)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not the path `usize` keys take; kept correct for any key.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The shortest time between two timeout sweeps: deadlines closer together
/// are handled together, so 10,000 idle connections cost at most ten
/// passes over the table a second, not one per connection.
const SWEEP_GRANULARITY: Duration = Duration::from_millis(100);

impl Io {
    pub(crate) fn new(shared: Arc<Shared>) -> Io {
        Io {
            driving: Driving {
                shared: Arc::clone(&shared),
                retry: Vec::new(),
                scratch: Vec::new(),
            },
            shared,
            sources: HashMap::default(),
            dispatch: Vec::new(),
            flush: Vec::new(),
            dead: Vec::new(),
            work: Vec::new(),
            next_sweep: None,
        }
    }

    /// When the reactor must wake for a timeout sweep, if ever.
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Expires the connections whose deadline passed (they are flushed in
    /// step 7) and finds the next deadline.
    fn sweep(&mut self, now: Instant, stats: &mut TickStats) {
        if self.next_sweep.is_none_or(|at| at > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        for (&token, source) in &mut self.sources {
            let Source::Conn(driver) = source else {
                continue;
            };
            match driver.deadline() {
                Some(at) if at <= now => {
                    self.driving
                        .drive(token, driver, stats, |d, cx| d.expire(now, cx));
                    self.flush.push(token);
                    if driver.finished() {
                        self.dead.push(token);
                    }
                }
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        // Connections just expired report their next deadline after their
        // flush.
        self.next_sweep = next.map(|at| at.max(now + SWEEP_GRANULARITY));
    }

    fn note_deadline(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.next_sweep = Some(self.next_sweep.map_or(at, |n| n.min(at)));
        }
    }

    /// Step 4: requests from handles, then I/O on the ready sources.
    pub(crate) fn transport_step(&mut self, readiness: &Readiness, stats: &mut TickStats) {
        let registry = readiness.registry();
        let (requests, touched, ready) = self.shared.io.begin();
        for request in requests {
            self.add(request, registry, stats);
        }
        self.flush.extend(touched);
        let mut work = std::mem::take(&mut self.work);
        work.extend(readiness.events().map(|(token, ready)| (token.0, ready)));
        work.extend(
            self.driving
                .retry
                .drain(..)
                .chain(ready)
                .map(|token| (token, Ready::ANY)),
        );
        if self.next_sweep.is_some() {
            self.sweep(self.shared.clock.now(), stats);
        }
        let mut born = Vec::new();
        for (token, ready) in work.drain(..) {
            match self.sources.get_mut(&token) {
                Some(Source::Listener(listener)) => {
                    let more = listener.accept(token, &self.shared, stats, &mut born);
                    if more {
                        self.driving.retry.push(token);
                    }
                }
                Some(Source::Conn(driver)) => {
                    self.driving
                        .drive(token, driver, stats, |d, cx| d.io(ready, cx));
                    if driver.finished() {
                        self.dead.push(token);
                    }
                    self.dispatch.push(token);
                    self.flush.push(token);
                }
                // A source removed earlier (tokens are never reused).
                None => {}
            }
        }
        self.work = work;
        for (token, driver) in born {
            self.insert(token, driver, registry);
        }
        self.reap(registry, stats);
    }

    /// Step 5: decode and dispatch on the connections that did I/O.
    pub(crate) fn dispatch_step(&mut self, readiness: &Readiness, stats: &mut TickStats) {
        let mut tokens = std::mem::take(&mut self.dispatch);
        tokens.sort_unstable();
        tokens.dedup();
        for &token in &tokens {
            if let Some(Source::Conn(driver)) = self.sources.get_mut(&token) {
                self.driving
                    .drive(token, driver, stats, |d, cx| d.dispatch(cx));
                if driver.finished() {
                    self.dead.push(token);
                }
            }
        }
        tokens.clear();
        self.dispatch = tokens;
        self.reap(readiness.registry(), stats);
    }

    /// Step 7: flush buffered output; remove finished connections.
    pub(crate) fn flush_step(&mut self, readiness: &Readiness, stats: &mut TickStats) {
        let (touched, ready) = self.shared.io.take_touched();
        self.flush.extend(touched);
        // Readiness noticed after step 4 is handled next tick.
        self.driving.retry.extend(ready);
        let mut tokens = std::mem::take(&mut self.flush);
        tokens.sort_unstable();
        tokens.dedup();
        for &token in &tokens {
            match self.sources.get_mut(&token) {
                Some(Source::Conn(driver)) => {
                    self.driving
                        .drive(token, driver, stats, |d, cx| d.flush(cx));
                    if driver.finished() {
                        self.dead.push(token);
                    } else {
                        let deadline = driver.deadline();
                        self.note_deadline(deadline);
                    }
                }
                Some(Source::Listener(_)) => self.driving.retry.push(token),
                None => {}
            }
        }
        tokens.clear();
        self.flush = tokens;
        self.reap(readiness.registry(), stats);
        self.shared
            .io
            .end(&self.shared.waker, !self.driving.retry.is_empty());
    }

    /// Whether nothing waits to be done without a new event.
    pub(crate) fn is_idle(&self) -> bool {
        self.driving.retry.is_empty() && self.shared.io.is_empty()
    }

    /// Number of open connections (server and client).
    pub(crate) fn connections(&self) -> usize {
        self.sources
            .values()
            .filter(|s| matches!(s, Source::Conn(_)))
            .count()
    }

    fn add(&mut self, request: IoRequest, registry: &Registry, stats: &mut TickStats) {
        match request {
            IoRequest::Listen {
                token,
                mut listener,
                make,
                ctx,
            } => match registry.register(&mut listener, Token(token), Interest::READABLE) {
                Ok(()) => {
                    let source = ListenerSource {
                        listener,
                        make,
                        ctx,
                    };
                    self.sources.insert(token, Source::Listener(source));
                    // Connections may be waiting already.
                    self.driving.retry.push(token);
                }
                Err(e) => ctx.run(|| {
                    tracing::error!(
                        target: "milieu::reactor",
                        error = %e,
                        "cannot register a listener with the poller; it accepts nothing"
                    );
                }),
            },
            IoRequest::Serve {
                token,
                stream,
                make,
                ctx,
            } => {
                let info = stream.info(token);
                if let Some(driver) = start(make, stream, info, &ctx, &self.shared, stats) {
                    self.insert(token, driver, registry);
                }
            }
            IoRequest::Client { token, driver } => self.insert(token, driver, registry),
            IoRequest::CloseListener(token) => {
                if let Some(Source::Listener(mut listener)) = self.sources.remove(&token) {
                    let _ = registry.deregister(&mut listener.listener);
                }
            }
        }
    }

    /// Registers a new connection and adds it to the table.
    fn insert(&mut self, token: usize, mut driver: Box<dyn Driver>, registry: &Registry) {
        let registered = match driver.stream() {
            StreamIo::Tcp(stream) => registry.register(
                stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            ),
            StreamIo::Memory(stream) => {
                let shared = Arc::downgrade(&self.shared);
                stream.set_notify(Box::new(move || {
                    if let Some(shared) = Weak::upgrade(&shared) {
                        shared.ready_io(token);
                    }
                }));
                Ok(())
            }
        };
        if let Err(e) = registered {
            driver.abort(CloseReason::from_io(e));
            self.dead.push(token);
        }
        self.sources.insert(token, Source::Conn(driver));
        // Input may be waiting already (a memory transport, a fast peer).
        self.driving.retry.push(token);
    }

    /// Removes the finished connections.
    fn reap(&mut self, registry: &Registry, stats: &mut TickStats) {
        for token in std::mem::take(&mut self.dead) {
            let Some(Source::Conn(mut driver)) = self.sources.remove(&token) else {
                continue;
            };
            if let StreamIo::Tcp(stream) = driver.stream() {
                let _ = registry.deregister(stream);
            }
            stats.closed += 1;
            // A removed connection has nothing to retry: whatever it asks
            // for while closing is dropped.
            let retries = self.driving.retry.len();
            self.driving
                .drive(token, &mut driver, stats, |d, cx| d.closed(cx));
            self.driving.retry.truncate(retries);
            // Dropping the driver closes the socket.
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // Client connections and pending connects see `ReactorGone` when
        // their drivers drop (queued ones included).
        drop(self.shared.io.close());
        for (_, source) in self.sources.drain() {
            if let Source::Conn(mut driver) = source {
                driver.abort(CloseReason::ReactorGone);
            }
        }
    }
}

/// What every call into a connection's driver needs besides the driver:
/// handed to the driver as its [`Cx`].
struct Driving {
    shared: Arc<Shared>,
    /// Sources to drive next tick without an event (resumed reading,
    /// accepting after the budget ran out).
    retry: Vec<usize>,
    /// See [`Cx::scratch`].
    scratch: Vec<u8>,
}

impl Driving {
    /// Runs one driver call in the connection's context, under
    /// `catch_unwind`.
    fn drive(
        &mut self,
        token: usize,
        driver: &mut Box<dyn Driver>,
        stats: &mut TickStats,
        f: impl FnOnce(&mut dyn Driver, &mut Cx<'_>),
    ) {
        let ctx = driver.context().clone();
        ctx.run(|| {
            let mut cx = Cx {
                shared: &self.shared,
                stats,
                token,
                retry: &mut self.retry,
                scratch: &mut self.scratch,
            };
            let called = catch_unwind(AssertUnwindSafe(|| f(&mut **driver, &mut cx)));
            if let Err(panic) = called {
                panic::log(Catcher::Reactor, "protocol", &*panic);
                cx.stats.panics += 1;
                driver.abort(CloseReason::Panicked);
            }
        });
    }
}

/// Makes the driver of a new server connection: the connection's context
/// (its [`ConnectionInfo`] on top of `parent`), then the user's factory in
/// it, under `catch_unwind`.
pub(crate) fn start(
    make: impl FnOnce(NewConn) -> Box<dyn Driver>,
    stream: StreamIo,
    info: ConnectionInfo,
    parent: &Context,
    shared: &Arc<Shared>,
    stats: &mut TickStats,
) -> Option<Box<dyn Driver>> {
    let ctx = parent.run(|| {
        crate::scope()
            .with_debug(info.clone())
            .because("the connection being served")
            .run(Context::current)
    });
    let new = NewConn {
        stream,
        info,
        ctx: ctx.clone(),
        limits: shared.io.limits,
    };
    ctx.run(|| match catch_unwind(AssertUnwindSafe(|| make(new))) {
        Ok(driver) => Some(driver),
        Err(panic) => {
            // The stream was dropped with the factory's frame: closed.
            panic::log(Catcher::Reactor, "connection factory", &*panic);
            stats.panics += 1;
            None
        }
    })
}

impl super::Reactor {
    /// Number of open connections (server and client) in this reactor.
    pub fn connections(&self) -> usize {
        self.io.connections()
    }
}

impl Builder {
    /// Default buffer sizes and backpressure thresholds of connections
    /// (client connections, and servers whose [`Serve`](super::Serve) sets none).
    pub fn transport_limits(mut self, limits: Limits) -> Self {
        self.io_limits = limits;
        self
    }
}
