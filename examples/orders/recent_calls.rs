//! The stock role's memory of its latest `/reserve` calls: a bounded ring
//! of context dumps, found again by trace id for
//! `GET /debug/context?trace=...`.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use milieu::dump::Dump;
use milieu::remote::TraceId;

/// One call, as its handler saw it.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// The trace the call belongs to (the caller's, when it sent one).
    pub trace_id: TraceId,
    /// What the handler answered, in a few words.
    pub outcome: String,
    /// The handler's context, dumped: what the call brought from its
    /// caller (trace context, baggage, process hop) on top of the
    /// service's own. A dump holds no entry alive.
    pub context: Dump,
}

/// The latest calls, at most `capacity`, the oldest dropped first.
///
/// The bound keeps this from growing with every request served.
#[derive(Debug)]
pub struct RecentCalls {
    capacity: usize,
    calls: Mutex<VecDeque<RecordedCall>>,
}

impl RecentCalls {
    /// Keeps the latest `capacity` calls (at least 1).
    pub fn new(capacity: usize) -> RecentCalls {
        let capacity = capacity.max(1);
        RecentCalls {
            capacity,
            calls: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// How many calls are kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps `call`, dropping the oldest one if the ring is full.
    pub fn record(&self, call: RecordedCall) {
        let dropped = {
            let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = if calls.len() == self.capacity {
                calls.pop_front()
            } else {
                None
            };
            calls.push_back(call);
            dropped
        };
        // Dropped once the lock is released: the last reference to a
        // snapshot drops its entries, whose destructors may take time.
        drop(dropped);
    }

    /// The latest call of trace `trace_id`, if it is still kept.
    pub fn find(&self, trace_id: TraceId) -> Option<RecordedCall> {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.iter().rev().find(|c| c.trace_id == trace_id).cloned()
    }
}
