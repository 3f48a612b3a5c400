//! A server's budget: how many connections it holds and how much request
//! input they buffer together, shared by every connection of a
//! [`Serve`](super::Serve) and its clones (across reactor threads too).
//!
//! Per-connection limits ([`Limits`](super::Limits)) bound what one client
//! can make the server hold; the budget bounds what all of them can, so
//! that many clients each staying under their own limit cannot exhaust the
//! process together.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Input a connection may buffer without drawing on the budget: a typical
/// request arrives whole in one read and is decoded at once, so the
/// common case touches no shared counter.
pub(crate) const FREE_INPUT: usize = 4 * 1024;

/// The connections a server may hold and the request input they may
/// buffer together; cloning shares it.
///
/// Attach it with [`Serve::with_budget`](super::Serve::with_budget)
/// (`http::serve_with` attaches one built from
/// [`HttpLimits`](crate::http::HttpLimits)). Then:
///
/// - **Connections.** A connection accepted while
///   [`max_connections`](ServerBudget::max_connections) are open is not
///   served: it gets the protocol's
///   [`overload_response`](super::Protocol::overload_response) (HTTP: `503
///   Service Unavailable` with `Retry-After: 1`), lingers briefly so the
///   answer arrives, and closes with
///   [`CloseReason::Overloaded`](super::CloseReason::Overloaded). Answering
///   rather than pausing `accept` is deliberate: a paused listener leaves
///   clients waiting in the kernel's backlog with no answer until they
///   time out, while a `503` tells them at once to come back.
/// - **Buffered input.** Each connection buffers up to 4 KiB of
///   undecoded input for free; beyond that, what it holds is drawn from
///   [`max_buffered_input`](ServerBudget::max_buffered_input). Reading
///   stops where the budget ends, and a connection whose request cannot
///   fit in what is left gets the overload response and closes (its
///   input is dropped at once).
///
/// So the request input a server buffers is at most `max_connections`
/// × 4 KiB + `max_buffered_input` (plus, transiently, one 16 KiB read per
/// connection being read). What a protocol makes of that input while a
/// request is incomplete is its own: HTTP's chunked decoder holds a
/// body's decoded data next to its raw bytes, at most as much again.
///
/// # Examples
///
/// ```
/// use milieu::reactor::ServerBudget;
///
/// let budget = ServerBudget::new(1000, 64 << 20);
/// assert_eq!((budget.connections(), budget.buffered_input()), (0, 0));
/// assert_eq!(budget.max_connections(), 1000);
/// ```
#[derive(Clone)]
pub struct ServerBudget {
    shared: Arc<Shared>,
}

struct Shared {
    max_connections: usize,
    max_buffered_input: usize,
    connections: AtomicUsize,
    buffered_input: AtomicUsize,
}

impl ServerBudget {
    /// A budget of `max_connections` open connections and
    /// `max_buffered_input` bytes of request input beyond each
    /// connection's free 4 KiB.
    pub fn new(max_connections: usize, max_buffered_input: usize) -> ServerBudget {
        ServerBudget {
            shared: Arc::new(Shared {
                max_connections,
                max_buffered_input,
                connections: AtomicUsize::new(0),
                buffered_input: AtomicUsize::new(0),
            }),
        }
    }

    /// See [`new`](ServerBudget::new).
    pub fn max_connections(&self) -> usize {
        self.shared.max_connections
    }

    /// See [`new`](ServerBudget::new).
    pub fn max_buffered_input(&self) -> usize {
        self.shared.max_buffered_input
    }

    /// Connections served now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Bytes of request input drawn from the budget now.
    pub fn buffered_input(&self) -> usize {
        self.shared.buffered_input.load(Ordering::Relaxed)
    }

    /// Takes a connection slot, or says there is none.
    pub(crate) fn try_connect(&self) -> bool {
        let max = self.shared.max_connections;
        self.shared
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn disconnect(&self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Input bytes not drawn yet.
    pub(crate) fn input_room(&self) -> usize {
        self.shared
            .max_buffered_input
            .saturating_sub(self.shared.buffered_input.load(Ordering::Relaxed))
    }

    /// Draws `bytes` of input, or says they are not there.
    pub(crate) fn try_draw(&self, bytes: usize) -> bool {
        let max = self.shared.max_buffered_input;
        self.shared
            .buffered_input
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                n.checked_add(bytes).filter(|&total| total <= max)
            })
            .is_ok()
    }

    pub(crate) fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.shared
                .buffered_input
                .fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for ServerBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBudget")
            .field("connections", &self.connections())
            .field("max_connections", &self.max_connections())
            .field("buffered_input", &self.buffered_input())
            .field("max_buffered_input", &self.max_buffered_input())
            .finish()
    }
}

/// One connection's share of a [`ServerBudget`]: its slot and the input
/// it drew, given back when it is dropped.
pub(crate) struct Share {
    budget: ServerBudget,
    /// Whether this connection holds a slot (it was not refused).
    connected: bool,
    /// Input bytes drawn.
    drawn: usize,
}

impl Share {
    /// Takes a slot of `budget`: `Err` (with a share that holds nothing)
    /// when there is none.
    pub(crate) fn connect(budget: ServerBudget) -> Result<Share, Share> {
        let connected = budget.try_connect();
        let share = Share {
            budget,
            connected,
            drawn: 0,
        };
        if connected {
            Ok(share)
        } else {
            Err(share)
        }
    }

    /// How much input the connection may hold now, at most `limit`: what
    /// it drew plus what is left, with its free part.
    #[inline]
    pub(crate) fn input_cap(&self, limit: usize) -> usize {
        let room = self.budget.input_room();
        limit.min(FREE_INPUT.saturating_add(self.drawn).saturating_add(room))
    }

    /// Draws or gives back so that the connection holds `held` bytes of
    /// input; false if the budget cannot cover them.
    #[inline]
    pub(crate) fn hold(&mut self, held: usize) -> bool {
        // The common case, a request held within the free part, touches
        // no shared counter.
        if held <= FREE_INPUT && self.drawn == 0 {
            return true;
        }
        let need = held.saturating_sub(FREE_INPUT);
        if need > self.drawn {
            if !self.budget.try_draw(need - self.drawn) {
                return false;
            }
        } else {
            self.budget.give_back(self.drawn - need);
        }
        self.drawn = need;
        true
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.give_back(self.drawn);
        if self.connected {
            self.budget.disconnect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ServerBudget, Share, FREE_INPUT};

    #[test]
    fn connections_past_the_cap_are_refused_and_slots_come_back() {
        let budget = ServerBudget::new(2, 0);
        let a = Share::connect(budget.clone()).ok().unwrap();
        let _b = Share::connect(budget.clone()).ok().unwrap();
        assert!(Share::connect(budget.clone()).is_err());
        assert_eq!(budget.connections(), 2);
        drop(a);
        assert!(Share::connect(budget.clone()).is_ok());
    }

    #[test]
    fn input_past_the_free_part_is_drawn_and_given_back() {
        let budget = ServerBudget::new(10, 10_000);
        let mut a = Share::connect(budget.clone()).ok().unwrap();
        let mut b = Share::connect(budget.clone()).ok().unwrap();
        assert!(a.hold(FREE_INPUT));
        assert_eq!(budget.buffered_input(), 0);
        assert!(a.hold(FREE_INPUT + 6_000));
        assert_eq!(budget.buffered_input(), 6_000);
        assert_eq!(b.input_cap(usize::MAX), FREE_INPUT + 4_000);
        assert!(!b.hold(FREE_INPUT + 4_001));
        assert!(b.hold(FREE_INPUT + 4_000));
        a.hold(0);
        assert_eq!(budget.buffered_input(), 4_000);
        drop(b);
        assert_eq!(budget.buffered_input(), 0);
    }
}
