//! What one tick did: the figures [`Reactor::tick`](super::Reactor::tick)
//! returns, counted by every step as it works.

/// What one [`Reactor::tick`](super::Reactor::tick) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickStats {
    /// Calls run from [`Handle::call_from_thread`](super::Handle::call_from_thread).
    pub calls: usize,
    /// Timers fired.
    pub timers: usize,
    /// Ready sources reported by the readiness poll.
    pub events: usize,
    /// Task polls.
    pub polls: usize,
    /// Callbacks, tasks or handlers that panicked (each was logged).
    pub panics: usize,
    /// Connections accepted by listeners.
    pub accepted: usize,
    /// Client connections established ([`Handle::connect_tcp`](super::Handle::connect_tcp)).
    pub connected: usize,
    /// Connections closed and removed (failed connects included).
    pub closed: usize,
    /// Bytes received.
    pub bytes_read: usize,
    /// Bytes sent.
    pub bytes_written: usize,
    /// Requests decoded and handed to handlers.
    pub requests: usize,
}

impl TickStats {
    /// Whether the tick did anything at all.
    pub fn is_idle(&self) -> bool {
        let io = self.accepted + self.connected + self.closed + self.requests;
        self.calls + self.timers + self.events + self.polls + io == 0
            && self.bytes_read + self.bytes_written == 0
    }
}
