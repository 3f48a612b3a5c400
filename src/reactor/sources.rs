//! The source table: the listeners and connections a reactor owns, and
//! the steps of the tick that drive them:
//!
//! - **4. I/O**: the requests queued by handles are carried out
//!   (registrations, closes), then each ready source does its I/O:
//!   listeners accept, connections receive into their read buffers (and
//!   finish connecting); read, idle and linger timeouts are swept;
//! - **5. protocol dispatch**: connections with new input decode it and
//!   hand the complete requests to the application;
//! - **7. flush**: connections with buffered output (responses of this
//!   tick, of async handlers that finished in step 6, writes from client
//!   code) send it; finished connections are removed.
//!
//! The table lives in the [`Reactor`](super::Reactor), not in the shared
//! state: only the reactor thread touches sockets. Handles on any thread
//! reach it through the [`IoQueue`](super::driver::IoQueue).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

#[cfg(feature = "test-util")]
use super::driver::start_server_connection;
use super::driver::{Driver, DriverCx, TableRequest};
use super::listener::ListenerSource;
use super::readiness::{Readiness, Ready};
use super::state::ReactorState;
use super::stats::TickStats;
use super::stream::StreamIo;
use super::transport::CloseReason;
use crate::panic::{self, Catcher};

enum Source {
    Listener(ListenerSource),
    Conn(Box<dyn Driver>),
}

/// The reactor's sources, owned by the [`Reactor`](super::Reactor).
pub(crate) struct SourceTable {
    state: Arc<ReactorState>,
    sources: HashMap<usize, Source, BuildHasherDefault<TokenHasher>>,
    /// What each call into a driver needs besides the driver.
    calls: DriverCalls,
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
    /// Set once [`Handle::drain`](super::Handle::drain) took effect.
    draining: Option<Draining>,
}

/// A draining table's progress (see [`SourceTable::drain_step`]).
#[derive(Default)]
struct Draining {
    /// The connections told to drain (server and client alike).
    told: HashSet<usize>,
    /// The server connections among them still open.
    servers: Vec<usize>,
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

impl SourceTable {
    pub(crate) fn new(state: Arc<ReactorState>) -> SourceTable {
        SourceTable {
            calls: DriverCalls {
                state: Arc::clone(&state),
                retry: Vec::new(),
                scratch: Vec::new(),
            },
            state,
            sources: HashMap::default(),
            dispatch: Vec::new(),
            flush: Vec::new(),
            dead: Vec::new(),
            work: Vec::new(),
            next_sweep: None,
            draining: None,
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
            let driver = match source {
                Source::Conn(driver) => driver,
                Source::Listener(listener) => {
                    match listener.retry_at {
                        // Accepting failed a while ago: try again.
                        Some(at) if at <= now => {
                            listener.retry_at = None;
                            self.calls.retry.push(token);
                        }
                        Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                        None => {}
                    }
                    continue;
                }
            };
            match driver.deadline() {
                Some(at) if at <= now => {
                    self.calls
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
        let (requests, touched, ready) = self.state.io.begin();
        for request in requests {
            self.add(request, registry, stats);
        }
        self.flush.extend(touched);
        let mut work = std::mem::take(&mut self.work);
        work.extend(readiness.events().map(|(token, ready)| (token.0, ready)));
        work.extend(
            self.calls
                .retry
                .drain(..)
                .chain(ready)
                .map(|token| (token, Ready::ANY)),
        );
        if self.next_sweep.is_some() {
            self.sweep(self.state.clock.now(), stats);
        }
        let mut born = Vec::new();
        for (token, ready) in work.drain(..) {
            match self.sources.get_mut(&token) {
                Some(Source::Listener(listener)) => {
                    let now = self.state.clock.now();
                    let more = listener.accept(&self.state.io, now, stats, &mut born);
                    if more {
                        self.calls.retry.push(token);
                    }
                    let retry_at = listener.retry_at;
                    self.note_deadline(retry_at);
                }
                Some(Source::Conn(driver)) => {
                    self.calls
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

    /// While draining (from the first call on, every tick after step 4):
    /// closes the listeners, tells every connection not told yet to
    /// drain (a server connection answers what it received, then closes;
    /// see [`Driver::drain`]), and flushes the server connections told
    /// now, so that idle ones close in this tick. Sources added since the
    /// last call (a listener or a connection registered late) are handled
    /// the same way.
    pub(crate) fn drain_step(&mut self, readiness: &Readiness, stats: &mut TickStats) {
        let registry = readiness.registry();
        let draining = self.draining.get_or_insert_with(Draining::default);
        let mut listeners = Vec::new();
        for (&token, source) in &mut self.sources {
            match source {
                Source::Listener(_) => listeners.push(token),
                Source::Conn(driver) => {
                    if !draining.told.insert(token) {
                        continue;
                    }
                    let mut serves = false;
                    self.calls
                        .drive(token, driver, stats, |d, cx| serves = d.drain(cx));
                    if serves {
                        draining.servers.push(token);
                        self.dispatch.push(token);
                        self.flush.push(token);
                    }
                    if driver.finished() {
                        self.dead.push(token);
                    }
                }
            }
        }
        for token in listeners {
            if let Some(Source::Listener(mut listener)) = self.sources.remove(&token) {
                let _ = registry.deregister(&mut listener.listener);
            }
        }
        self.reap(registry, stats);
    }

    /// Whether a drain was under way and every server connection it told
    /// has now closed: true once, after which the drain is over (a
    /// listener added later accepts again).
    pub(crate) fn drained(&mut self) -> bool {
        let sources = &self.sources;
        let Some(draining) = &mut self.draining else {
            return false;
        };
        draining.servers.retain(|token| sources.contains_key(token));
        if !draining.servers.is_empty() {
            draining.told.retain(|token| sources.contains_key(token));
            return false;
        }
        self.draining = None;
        true
    }

    /// Whether a drain began.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    /// Step 5: decode and dispatch on the connections that did I/O.
    pub(crate) fn dispatch_step(&mut self, readiness: &Readiness, stats: &mut TickStats) {
        let mut tokens = std::mem::take(&mut self.dispatch);
        tokens.sort_unstable();
        tokens.dedup();
        for &token in &tokens {
            if let Some(Source::Conn(driver)) = self.sources.get_mut(&token) {
                self.calls
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
        let (touched, ready) = self.state.io.take_touched();
        self.flush.extend(touched);
        // Readiness noticed after step 4 is handled next tick.
        self.calls.retry.extend(ready);
        let mut tokens = std::mem::take(&mut self.flush);
        tokens.sort_unstable();
        tokens.dedup();
        for &token in &tokens {
            match self.sources.get_mut(&token) {
                Some(Source::Conn(driver)) => {
                    self.calls.drive(token, driver, stats, |d, cx| d.flush(cx));
                    if driver.finished() {
                        self.dead.push(token);
                    } else {
                        let deadline = driver.deadline();
                        self.note_deadline(deadline);
                    }
                }
                Some(Source::Listener(_)) => self.calls.retry.push(token),
                None => {}
            }
        }
        tokens.clear();
        self.flush = tokens;
        self.reap(readiness.registry(), stats);
        self.state.io.end(!self.calls.retry.is_empty());
    }

    /// Whether nothing waits to be done without a new event.
    #[cfg(feature = "test-util")]
    pub(crate) fn is_idle(&self) -> bool {
        self.calls.retry.is_empty() && self.state.io.is_empty()
    }

    /// Number of open connections (server and client).
    pub(crate) fn connections(&self) -> usize {
        self.sources
            .values()
            .filter(|s| matches!(s, Source::Conn(_)))
            .count()
    }

    // `stats` counts what a memory transport's factory does (`test-util`).
    #[cfg_attr(not(feature = "test-util"), allow(unused_variables))]
    fn add(&mut self, request: TableRequest, registry: &Registry, stats: &mut TickStats) {
        match request {
            TableRequest::Listen {
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
                        retry_at: None,
                    };
                    self.sources.insert(token, Source::Listener(source));
                    // Connections may be waiting already.
                    self.calls.retry.push(token);
                }
                Err(e) => ctx.run(|| {
                    tracing::error!(
                        target: "milieu::reactor",
                        error = %e,
                        "cannot register a listener with the poller; it accepts nothing"
                    );
                }),
            },
            #[cfg(feature = "test-util")]
            TableRequest::Serve {
                token,
                stream,
                make,
                ctx,
            } => {
                let info = stream.info(token);
                let limits = self.state.io.limits;
                if let Some(driver) =
                    start_server_connection(make, stream, info, &ctx, limits, stats)
                {
                    self.insert(token, driver, registry);
                }
            }
            TableRequest::Client { token, driver } => self.insert(token, driver, registry),
            TableRequest::CloseListener(token) => {
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
            #[cfg(feature = "test-util")]
            StreamIo::Memory(stream) => {
                let io = Arc::downgrade(&self.state.io);
                stream.set_notify(Box::new(move || {
                    if let Some(io) = io.upgrade() {
                        io.ready(token);
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
        self.calls.retry.push(token);
    }

    /// Removes the finished connections.
    fn reap(&mut self, registry: &Registry, stats: &mut TickStats) {
        for token in std::mem::take(&mut self.dead) {
            let Some(Source::Conn(mut driver)) = self.sources.remove(&token) else {
                continue;
            };
            #[allow(irrefutable_let_patterns)] // without `test-util`, TCP is all there is
            if let StreamIo::Tcp(stream) = driver.stream() {
                let _ = registry.deregister(stream);
            }
            stats.closed += 1;
            // A removed connection has nothing to retry: whatever it asks
            // for while closing is dropped.
            let retries = self.calls.retry.len();
            self.calls
                .drive(token, &mut driver, stats, |d, cx| d.closed(cx));
            self.calls.retry.truncate(retries);
            // Dropping the driver closes the socket.
        }
    }
}

impl Drop for SourceTable {
    fn drop(&mut self) {
        // Client connections and pending connects see `ReactorGone` when
        // their drivers drop (queued ones included).
        drop(self.state.io.close());
        for (_, source) in self.sources.drain() {
            if let Source::Conn(mut driver) = source {
                driver.abort(CloseReason::ReactorGone);
            }
        }
    }
}

/// What every call into a connection's driver needs besides the driver:
/// handed to the driver as its [`DriverCx`].
struct DriverCalls {
    state: Arc<ReactorState>,
    /// Sources to drive next tick without an event (resumed reading,
    /// accepting after the budget ran out).
    retry: Vec<usize>,
    /// See [`DriverCx::scratch`].
    scratch: Vec<u8>,
}

impl DriverCalls {
    /// Runs one driver call in the connection's context, under
    /// `catch_unwind`.
    fn drive(
        &mut self,
        token: usize,
        driver: &mut Box<dyn Driver>,
        stats: &mut TickStats,
        f: impl FnOnce(&mut dyn Driver, &mut DriverCx<'_>),
    ) {
        let ctx = driver.context().clone();
        ctx.run(|| {
            let mut cx = DriverCx {
                executor: &self.state.executor,
                clock: &self.state.clock,
                io: &self.state.io,
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
