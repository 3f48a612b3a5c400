//! The pool of keep-alive connections of one [`Client`](super::Client):
//! per origin, a bounded number of connections open and, of those, a
//! bounded number idle; requests over the bound wait in turn.
//!
//! # Counting
//!
//! Each origin counts its connections: idle ones, leased ones (a request
//! is using them) and slots (a request is connecting). A [`Lease`] is one
//! of the counted; dropping it gives its place back, with its connection
//! if the request marked it reusable ([`Lease::keep`]), and without it
//! otherwise (the connection closes). A place given back goes to the
//! first request still waiting, else the connection goes idle (up to the
//! idle bound), else the count goes down. So a lease dropped anywhere (a
//! request cancelled, a waiter that timed out with a lease in flight to
//! it) is counted back exactly once.
//!
//! # Idle connections
//!
//! Idle connections are taken most recently used first (the others age
//! and expire). One is given out only if it is younger than the idle
//! timeout, its peer did not close it, and nothing arrived on it since
//! its last response; others are closed when found. A timer on the
//! reactor of the last request that left one idle closes those that
//! expire in the meantime, so an unused pool holds no socket past the
//! idle timeout.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::error::ClientError;
use super::url::Origin;
use crate::reactor::{Connection, Handle};
use crate::Context;

/// The bounds of a [`Pool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PoolConfig {
    /// Connections kept idle per origin.
    pub(super) max_idle_per_origin: usize,
    /// Connections open per origin (idle, in use, connecting): at least 1.
    pub(super) max_connections_per_origin: usize,
    /// How long a connection may stay idle (`None`: until its peer
    /// closes it).
    pub(super) idle_timeout: Option<Duration>,
    /// How long a request waits for a connection when every one the
    /// origin may have is busy (`None`: as long as it takes).
    pub(super) wait_timeout: Option<Duration>,
}

/// The connections of one client, per origin.
pub(super) struct Pool {
    config: PoolConfig,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    origins: HashMap<Origin, OriginState>,
    /// A sweep of expired idle connections is scheduled.
    sweep_scheduled: bool,
}

/// One origin's connections.
#[derive(Default)]
struct OriginState {
    /// Connections counted against the bound: idle, leased, connecting.
    open: usize,
    /// Idle connections, the most recently used last.
    idle: Vec<Idle>,
    /// Requests waiting for a place, in arrival order.
    waiters: VecDeque<oneshot::Sender<Lease>>,
}

impl OriginState {
    fn is_unused(&self) -> bool {
        self.open == 0 && self.idle.is_empty() && self.waiters.is_empty()
    }
}

struct Idle {
    connection: Connection,
    /// When it went idle, on the clock of the reactor that put it there.
    since: Instant,
}

impl Idle {
    /// Whether it may serve another request at `now`: not expired, not
    /// closed by its peer, and nothing unsolicited waiting on it.
    fn usable(&self, now: Instant, idle_timeout: Option<Duration>) -> bool {
        let fresh =
            idle_timeout.is_none_or(|timeout| now.saturating_duration_since(self.since) < timeout);
        fresh && !self.connection.read_closed() && self.connection.buffered_input() == 0
    }
}

impl Pool {
    pub(super) fn new(config: PoolConfig) -> Pool {
        Pool {
            config: PoolConfig {
                max_connections_per_origin: config.max_connections_per_origin.max(1),
                ..config
            },
            state: Mutex::new(PoolState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // No user code runs under the lock, and connections are dropped
        // after it is released: a poisoned lock holds consistent counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a request to `origin`: an idle connection (unless
    /// `fresh`), or a slot to connect on, waiting in turn if the origin
    /// has all the connections it may have.
    ///
    /// # Errors
    ///
    /// [`ClientError::PoolTimeout`] if no place came within the pool's
    /// wait timeout.
    pub(super) async fn checkout(
        self: &Arc<Self>,
        handle: &Handle,
        origin: &Origin,
        fresh: bool,
    ) -> Result<Lease, ClientError> {
        let now = handle.now();
        let mut closing = Vec::new();
        let granted = {
            let mut state = self.lock();
            let entry = state.origins.entry(origin.clone()).or_default();
            entry.waiters.retain(|waiter| !waiter.is_canceled());
            let before = entry.idle.len();
            let idle_timeout = self.config.idle_timeout;
            for idle in std::mem::take(&mut entry.idle) {
                if idle.usable(now, idle_timeout) {
                    entry.idle.push(idle);
                } else {
                    closing.push(idle.connection);
                }
            }
            entry.open -= before - entry.idle.len();
            if let Some(idle) = entry.idle.pop() {
                // A fresh connection is wanted after a pooled one failed:
                // this one is closed, its place used to connect anew.
                let connection = if fresh {
                    closing.push(idle.connection);
                    None
                } else {
                    Some(idle.connection)
                };
                Ok(self.lease(handle, origin, connection))
            } else if entry.open < self.config.max_connections_per_origin {
                entry.open += 1;
                Ok(self.lease(handle, origin, None))
            } else {
                let (sender, receiver) = oneshot::channel();
                entry.waiters.push_back(sender);
                Err(receiver)
            }
        };
        drop(closing);
        let receiver = match granted {
            Ok(lease) => return Ok(lease),
            Err(receiver) => receiver,
        };
        let granted = match self.config.wait_timeout {
            Some(after) => handle
                .timeout(after, receiver)
                .await
                .map_err(|_| ClientError::PoolTimeout { after })?,
            None => receiver.await,
        };
        // The sender is dropped without a lease only with the pool, which
        // this request holds: never, but not a reason to panic.
        let mut lease = granted.map_err(|_| {
            ClientError::Io(std::io::Error::other("the connection pool was dropped"))
        })?;
        lease.handle = handle.clone();
        if fresh {
            lease.connection = None;
        }
        Ok(lease)
    }

    fn lease(
        self: &Arc<Self>,
        handle: &Handle,
        origin: &Origin,
        connection: Option<Connection>,
    ) -> Lease {
        Lease {
            pool: Some(Arc::clone(self)),
            origin: origin.clone(),
            reused: connection.is_some(),
            connection,
            keep: false,
            handle: handle.clone(),
        }
    }

    /// Takes back a place at `origin`, with its connection if it may
    /// serve another request: to the first live waiter, else idle, else
    /// the count goes down.
    fn put_back(
        self: &Arc<Self>,
        handle: Handle,
        origin: Origin,
        mut connection: Option<Connection>,
    ) {
        loop {
            let mut closing = None;
            let waiter = {
                let mut state = self.lock();
                let Some(entry) = state.origins.get_mut(&origin) else {
                    return;
                };
                let mut waiter = None;
                while let Some(next) = entry.waiters.pop_front() {
                    if !next.is_canceled() {
                        waiter = Some(next);
                        break;
                    }
                }
                if waiter.is_none() {
                    match connection.take() {
                        Some(kept) if entry.idle.len() < self.config.max_idle_per_origin => {
                            entry.idle.push(Idle {
                                connection: kept,
                                since: handle.now(),
                            });
                            if let Some(idle_timeout) = self.config.idle_timeout {
                                self.schedule_sweep(&mut state, &handle, idle_timeout);
                            }
                        }
                        other => {
                            closing = other;
                            entry.open -= 1;
                            if entry.is_unused() {
                                state.origins.remove(&origin);
                            }
                        }
                    }
                }
                waiter
            };
            drop(closing);
            let Some(waiter) = waiter else {
                return;
            };
            let lease = self.lease(&handle, &origin, connection.take());
            match waiter.send(lease) {
                Ok(()) => return,
                // It stopped waiting since: the next one, or idle.
                Err(mut lease) => connection = lease.disarm(),
            }
        }
    }

    /// Schedules a sweep of expired idle connections on `handle`'s
    /// reactor in `delay`, unless one is scheduled already.
    fn schedule_sweep(self: &Arc<Self>, state: &mut PoolState, handle: &Handle, delay: Duration) {
        if state.sweep_scheduled {
            return;
        }
        state.sweep_scheduled = true;
        let pool = Arc::downgrade(self);
        // Out of the request's context: the timer outlives the request,
        // and must not keep its entries alive. The timer's context holds
        // its reactor's handle (the timer holds no other).
        let _timer = Context::empty().run(|| {
            handle.call_later(delay, move || {
                if let Ok(handle) = Handle::current() {
                    Pool::sweep(&pool, &handle);
                }
            })
        });
    }

    /// Closes the idle connections that expired or were closed by their
    /// peer; schedules the next sweep if some are left.
    fn sweep(pool: &Weak<Pool>, handle: &Handle) {
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = handle.now();
        let mut closing = Vec::new();
        {
            let mut state = pool.lock();
            state.sweep_scheduled = false;
            let idle_timeout = pool.config.idle_timeout;
            state.origins.retain(|_, entry| {
                let before = entry.idle.len();
                for idle in std::mem::take(&mut entry.idle) {
                    if idle.usable(now, idle_timeout) {
                        entry.idle.push(idle);
                    } else {
                        closing.push(idle.connection);
                    }
                }
                entry.open -= before - entry.idle.len();
                !entry.is_unused()
            });
            // Next when the oldest of those left expires.
            let oldest = state
                .origins
                .values()
                .flat_map(|entry| entry.idle.iter().map(|idle| idle.since))
                .min();
            if let (Some(oldest), Some(idle_timeout)) = (oldest, idle_timeout) {
                let expires = (oldest + idle_timeout).saturating_duration_since(now);
                let delay = expires.max(Duration::from_millis(1));
                pool.schedule_sweep(&mut state, handle, delay);
            }
        }
        drop(closing);
    }

    /// Connections open to `origin` (idle, in use, connecting) and idle.
    #[cfg(test)]
    fn counts(&self, origin: &Origin) -> (usize, usize) {
        let state = self.lock();
        state
            .origins
            .get(origin)
            .map_or((0, 0), |entry| (entry.open, entry.idle.len()))
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let open: usize = state.origins.values().map(|entry| entry.open).sum();
        let idle: usize = state.origins.values().map(|entry| entry.idle.len()).sum();
        f.debug_struct("Pool")
            .field("config", &self.config)
            .field("origins", &state.origins.len())
            .field("open", &open)
            .field("idle", &idle)
            .finish()
    }
}

/// A request's place in the pool: a connection (pooled or new) or the
/// right to open one. Dropping it gives the place back (see the module
/// docs), with the connection only if [`keep`](Lease::keep) was called.
pub(super) struct Lease {
    /// `None` once disarmed: dropping it then does nothing.
    pool: Option<Arc<Pool>>,
    origin: Origin,
    connection: Option<Connection>,
    /// The connection came from the pool (it served a request before).
    reused: bool,
    /// The connection may serve another request.
    keep: bool,
    /// The reactor of the request holding the lease: its clock dates an
    /// idle connection, its timers sweep them.
    handle: Handle,
}

impl Lease {
    /// Takes the connection out: a pooled one, or `None` for a slot to
    /// connect on. The place stays the lease's; the connection closes
    /// when dropped, unless given back with [`keep`](Lease::keep).
    pub(super) fn take_connection(&mut self) -> Option<Connection> {
        self.connection.take()
    }

    /// Whether the connection came from the pool (it served a request
    /// before).
    pub(super) fn reused(&self) -> bool {
        self.reused
    }

    /// Gives back `connection` as reusable: its response was read
    /// completely and left it fit for another request. It goes back to
    /// the pool when the lease is dropped.
    pub(super) fn keep(&mut self, connection: Connection) {
        self.connection = Some(connection);
        self.keep = true;
    }

    /// Takes the connection out and makes dropping the lease a no-op: for
    /// a lease the pool takes back itself.
    fn disarm(&mut self) -> Option<Connection> {
        self.pool = None;
        self.connection.take()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let connection = self.connection.take();
        let kept = if self.keep {
            connection
        } else {
            // Not reusable (or the request was cancelled mid-exchange, and
            // what the connection holds is unknown): closed, outside the
            // pool's lock.
            drop(connection);
            None
        };
        pool.put_back(self.handle.clone(), self.origin.clone(), kept);
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("origin", &self.origin)
            .field("connected", &self.connection.is_some())
            .field("reused", &self.reused)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Pool, PoolConfig};
    use crate::http::client::url::{Origin, Url};
    use crate::http::ClientError;
    use crate::reactor::{Connection, Handle, Reactor};

    fn pool(max_connections: usize, max_idle: usize) -> Arc<Pool> {
        Arc::new(Pool::new(PoolConfig {
            max_idle_per_origin: max_idle,
            max_connections_per_origin: max_connections,
            idle_timeout: Some(Duration::from_secs(60)),
            wait_timeout: Some(Duration::from_millis(20)),
        }))
    }

    fn origin() -> Origin {
        Url::parse("http://127.0.0.1:9/").unwrap().origin().clone()
    }

    /// A loopback connection (to a listener that never accepts: the
    /// kernel completes the handshake).
    async fn connection(handle: &Handle, listener: &TcpListener) -> Connection {
        handle
            .connect_tcp(listener.local_addr().unwrap())
            .await
            .expect("loopback connect")
    }

    #[test]
    fn places_are_counted_back_once_whatever_drops_them() {
        let mut reactor = Reactor::new().unwrap();
        let pool = pool(2, 8);
        let origin = origin();
        reactor
            .run_until(async {
                let handle = Handle::current().unwrap();
                let a = pool.checkout(&handle, &origin, false).await.unwrap();
                let b = pool.checkout(&handle, &origin, false).await.unwrap();
                assert!(!a.reused() && !b.reused());
                assert_eq!(pool.counts(&origin), (2, 0));

                // Over the bound: waits, then gives up.
                let late = pool.checkout(&handle, &origin, false).await;
                assert!(
                    matches!(late, Err(ClientError::PoolTimeout { .. })),
                    "{late:?}"
                );
                assert_eq!(pool.counts(&origin), (2, 0));

                // A waiter gets the place a dropped lease gives back.
                let waiter = {
                    let (pool, origin, handle) =
                        (Arc::clone(&pool), origin.clone(), handle.clone());
                    handle.clone().spawn(async move {
                        pool.checkout(&handle, &origin, false).await.map(drop)
                    })
                };
                handle.sleep(Duration::from_millis(1)).await;
                drop(a);
                assert!(matches!(waiter.await, Ok(Ok(()))));
                // The waiter dropped its lease in turn: one left, b's.
                assert_eq!(pool.counts(&origin), (1, 0));
                drop(b);
            })
            .unwrap();
        assert_eq!(pool.counts(&origin), (0, 0));
        assert!(
            pool.lock().origins.is_empty(),
            "an unused origin is forgotten"
        );
    }

    #[test]
    fn a_kept_connection_goes_to_a_waiter_first_then_idle_within_the_bound() {
        let mut reactor = Reactor::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let pool = pool(2, 1);
        let origin = origin();
        reactor
            .run_until(async {
                let handle = Handle::current().unwrap();
                let mut a = pool.checkout(&handle, &origin, false).await.unwrap();
                let mut b = pool.checkout(&handle, &origin, false).await.unwrap();
                let waiter = {
                    let (pool, origin, handle) =
                        (Arc::clone(&pool), origin.clone(), handle.clone());
                    handle.clone().spawn(async move {
                        let lease = pool.checkout(&handle, &origin, false).await.unwrap();
                        lease.reused()
                    })
                };
                handle.sleep(Duration::from_millis(1)).await;
                a.keep(connection(&handle, &listener).await);
                drop(a);
                assert_eq!(waiter.await, Ok(true), "handed the kept connection");
                // The waiter did not keep it: closed, its place given back.
                assert_eq!(pool.counts(&origin), (1, 0));

                let mut c = pool.checkout(&handle, &origin, false).await.unwrap();
                b.keep(connection(&handle, &listener).await);
                c.keep(connection(&handle, &listener).await);
                drop(b);
                drop(c);
                // One idle at most: the other closed.
                assert_eq!(pool.counts(&origin), (1, 1));

                let mut reused = pool.checkout(&handle, &origin, false).await.unwrap();
                assert!(reused.reused());
                assert!(reused.take_connection().is_some());
                drop(reused);
                assert_eq!(pool.counts(&origin), (0, 0));
            })
            .unwrap();
    }

    #[test]
    fn a_fresh_checkout_closes_an_idle_connection_and_takes_its_place() {
        let mut reactor = Reactor::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let pool = pool(1, 1);
        let origin = origin();
        reactor
            .run_until(async {
                let handle = Handle::current().unwrap();
                let mut lease = pool.checkout(&handle, &origin, false).await.unwrap();
                lease.keep(connection(&handle, &listener).await);
                drop(lease);
                assert_eq!(pool.counts(&origin), (1, 1));
                let mut fresh = pool.checkout(&handle, &origin, true).await.unwrap();
                assert!(fresh.take_connection().is_none());
                assert_eq!(pool.counts(&origin), (1, 0));
            })
            .unwrap();
    }

    #[test]
    fn an_idle_connection_with_unsolicited_input_or_closed_by_its_peer_is_not_reused() {
        use std::io::Write;

        let mut reactor = Reactor::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let pool = pool(2, 2);
        let origin = origin();
        reactor
            .run_until(async {
                let handle = Handle::current().unwrap();
                let mut a = pool.checkout(&handle, &origin, false).await.unwrap();
                let mut b = pool.checkout(&handle, &origin, false).await.unwrap();
                a.keep(connection(&handle, &listener).await);
                let (mut talker, _) = listener.accept().unwrap();
                b.keep(connection(&handle, &listener).await);
                let (closer, _) = listener.accept().unwrap();
                drop((a, b));
                assert_eq!(pool.counts(&origin), (2, 2));
                talker.write_all(b"unasked").unwrap();
                drop(closer);
                // Both arrive in a tick or two.
                handle.sleep(Duration::from_millis(50)).await;
                let mut next = pool.checkout(&handle, &origin, false).await.unwrap();
                assert!(
                    next.take_connection().is_none(),
                    "both idle ones were unfit"
                );
                assert!(!next.reused());
                assert_eq!(pool.counts(&origin), (1, 0));
            })
            .unwrap();
    }
}
