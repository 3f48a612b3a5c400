//! Time: the reactor's clock (real or virtual) and its timers.
//!
//! Timers live in a binary heap ordered by (deadline, sequence) next to a
//! slotmap that owns the callbacks. Insert is O(log n); cancel is O(1)
//! amortised (the heap entry goes stale and is skipped when it reaches the
//! top; once stale entries outnumber live ones two to one the heap is
//! rebuilt without them); `reset` pushes a fresh heap entry and leaves the
//! old one stale. A timer keeps its scheduler's context as a
//! [`PendingHop`]: the hop frame is only built if the call fires.
//! Twisted's `task.Clock` keeps a sorted list: O(n) per insert.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotmap::{new_key_type, SlotMap};

use crate::context::PendingHop;

new_key_type! {
    /// Identifies one scheduled call in its reactor.
    pub(crate) struct TimerKey;
}

/// Where a reactor reads the time.
#[derive(Clone)]
pub enum Clock {
    /// The monotonic system clock.
    Real,
    /// A clock that moves only when told to (see
    /// [`Reactor::advance`](super::Reactor::advance)): deterministic tests.
    Virtual(VirtualClock),
}

impl Clock {
    /// The current time on this clock.
    pub fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Virtual(clock) => clock.now(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clock::Real => f.write_str("Clock::Real"),
            Clock::Virtual(clock) => write!(f, "Clock::Virtual(+{:?})", clock.elapsed()),
        }
    }
}

/// Virtual time: an origin and an offset that only `advance` moves.
///
/// Cloning shares the clock. Reading it is one atomic load.
#[derive(Clone)]
pub struct VirtualClock {
    origin: Instant,
    /// Nanoseconds since `origin`.
    offset: Arc<AtomicU64>,
}

impl VirtualClock {
    /// A virtual clock starting now.
    pub fn new() -> Self {
        VirtualClock {
            origin: Instant::now(),
            offset: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.origin + Duration::from_nanos(self.offset.load(Ordering::Acquire))
    }

    /// Virtual time elapsed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset.load(Ordering::Acquire))
    }

    /// Moves the clock to `when` (never backwards).
    pub(crate) fn set(&self, when: Instant) {
        let nanos = when.saturating_duration_since(self.origin).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.offset.fetch_max(nanos, Ordering::AcqRel);
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock::new()
    }
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtualClock(+{:?})", self.elapsed())
    }
}

/// What a timer runs when it fires: shared with the
/// [`DelayedCall`](super::DelayedCall) that awaits its result, so a
/// scheduled call costs one allocation.
pub(crate) trait Fire: Send + Sync {
    /// Runs the call (at most once; a later call does nothing).
    fn fire(&self);
    /// The call will never run (cancelled, or its reactor is dropped):
    /// whoever awaits it is told so.
    fn abandon(&self);
}

/// A callback waiting for its deadline.
pub(crate) struct Timer {
    pub(crate) when: Instant,
    /// Matches the live heap entry; older heap entries are stale.
    seq: u64,
    pub(crate) callback: Arc<dyn Fire>,
    /// The scheduler's context; the hop frame is built only if the call
    /// fires.
    pub(crate) hop: PendingHop,
}

/// The reactor's timers.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, TimerKey)>>,
    timers: SlotMap<TimerKey, Timer>,
    next_seq: u64,
    /// Heap entries whose timer was cancelled or moved. When they outnumber
    /// the live ones the heap is rebuilt, so a service that schedules and
    /// cancels timeouts forever keeps a heap the size of what is pending.
    stale: usize,
}

impl Timers {
    pub(crate) fn insert(
        &mut self,
        when: Instant,
        callback: Arc<dyn Fire>,
        hop: PendingHop,
    ) -> TimerKey {
        let seq = self.bump();
        let key = self.timers.insert(Timer {
            when,
            seq,
            callback,
            hop,
        });
        self.heap.push(Reverse((when, seq, key)));
        key
    }

    /// Removes a pending call; `None` if it already ran or was cancelled.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<Timer> {
        let removed = self.timers.remove(key);
        if removed.is_some() {
            self.stale += 1;
            self.compact_if_mostly_stale();
        }
        removed
    }

    /// Removes every pending call (the reactor is dropped).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Timer> + '_ {
        self.heap.clear();
        self.stale = 0;
        self.timers.drain().map(|(_, timer)| timer)
    }

    /// Moves a pending call to `when`; false if it already ran or was
    /// cancelled.
    pub(crate) fn reset(&mut self, key: TimerKey, when: Instant) -> bool {
        let seq = self.bump();
        match self.timers.get_mut(key) {
            Some(timer) => {
                timer.when = when;
                timer.seq = seq;
                self.heap.push(Reverse((when, seq, key)));
                self.stale += 1;
                self.compact_if_mostly_stale();
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_pending(&self, key: TimerKey) -> bool {
        self.timers.contains_key(key)
    }

    pub(crate) fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.timers.get(key).map(|t| t.when)
    }

    /// Number of pending calls.
    pub(crate) fn len(&self) -> usize {
        self.timers.len()
    }

    /// The earliest deadline, if any (stale heap entries are discarded).
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Removes and returns the earliest call due at or before `now` whose
    /// sequence number is below `seq_limit` (calls scheduled after the
    /// limit was read wait for the next round).
    pub(crate) fn pop_due(&mut self, now: Instant, seq_limit: u64) -> Option<Timer> {
        self.skip_stale();
        let Reverse((when, seq, key)) = *self.heap.peek()?;
        if when > now || seq >= seq_limit {
            return None;
        }
        self.heap.pop();
        self.timers.remove(key)
    }

    /// The sequence number the next insert or reset will get.
    pub(crate) fn seq_limit(&self) -> u64 {
        self.next_seq
    }

    fn bump(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn skip_stale(&mut self) {
        while let Some(Reverse((_, seq, key))) = self.heap.peek() {
            match self.timers.get(*key) {
                Some(timer) if timer.seq == *seq => return,
                _ => {
                    self.heap.pop();
                    self.stale -= 1;
                }
            }
        }
    }

    /// Drops every stale heap entry once they are more than twice the live
    /// ones: O(n) work after at least n/2 cancels, so O(1) amortised per
    /// cancel.
    fn compact_if_mostly_stale(&mut self) {
        if self.timers.is_empty() {
            // Every heap entry is stale: drop them in one go.
            self.heap.clear();
            self.stale = 0;
        } else if self.stale > 64 && self.stale > 2 * self.timers.len() {
            let timers = &self.timers;
            self.heap
                .retain(|Reverse((_, seq, key))| timers.get(*key).is_some_and(|t| t.seq == *seq));
            self.stale = 0;
        }
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use std::panic::Location;

    use super::Timers;
    use crate::context::PendingHop;
    use crate::context::{Context, HopKind};

    struct Noop;

    impl super::Fire for Noop {
        fn fire(&self) {}
        fn abandon(&self) {}
    }

    fn noop() -> std::sync::Arc<dyn super::Fire> {
        std::sync::Arc::new(Noop)
    }

    fn no_hop() -> PendingHop {
        PendingHop::new(Context::empty(), HopKind::Task, None, Location::caller())
    }

    #[test]
    fn due_calls_come_out_in_deadline_order_and_cancelled_ones_never() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut timers = Timers::default();
        let late = timers.insert(at(30), noop(), no_hop());
        let early = timers.insert(at(10), noop(), no_hop());
        let gone = timers.insert(at(20), noop(), no_hop());
        assert!(timers.cancel(gone).is_some());
        assert!(timers.cancel(gone).is_none());
        assert_eq!(timers.next_deadline(), Some(at(10)));
        let limit = timers.seq_limit();
        assert_eq!(timers.pop_due(at(30), limit).map(|t| t.when), Some(at(10)));
        assert_eq!(timers.pop_due(at(30), limit).map(|t| t.when), Some(at(30)));
        assert!(timers.pop_due(at(100), limit).is_none());
        assert!(!timers.is_pending(early) && !timers.is_pending(late));
    }

    #[test]
    fn reset_moves_a_call_and_the_old_slot_goes_stale() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut timers = Timers::default();
        let key = timers.insert(at(10), noop(), no_hop());
        assert!(timers.reset(key, at(50)));
        assert_eq!(timers.next_deadline(), Some(at(50)));
        let limit = timers.seq_limit();
        assert!(timers.pop_due(at(20), limit).is_none());
        assert!(timers.pop_due(at(50), limit).is_some());
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn cancelling_most_timers_shrinks_the_heap_and_keeps_the_order() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut timers = Timers::default();
        let keys: Vec<_> = (0..1000)
            .map(|i| timers.insert(at(i), noop(), no_hop()))
            .collect();
        // Keep every tenth timer.
        for (i, key) in keys.iter().enumerate() {
            if i % 10 != 0 {
                assert!(timers.cancel(*key).is_some());
            }
        }
        assert_eq!(timers.len(), 100);
        assert!(
            timers.heap_len() <= 3 * timers.len() + 65,
            "heap {}",
            timers.heap_len()
        );
        let limit = timers.seq_limit();
        let fired: Vec<_> = std::iter::from_fn(|| timers.pop_due(at(1000), limit))
            .map(|t| t.when)
            .collect();
        let expected: Vec<_> = (0..1000).step_by(10).map(at).collect();
        assert_eq!(fired, expected);
    }

    #[test]
    fn calls_scheduled_after_the_limit_wait_for_the_next_round() {
        let now = Instant::now();
        let mut timers = Timers::default();
        let limit = timers.seq_limit();
        timers.insert(now, noop(), no_hop());
        assert!(timers.pop_due(now, limit).is_none());
        assert!(timers.pop_due(now, timers.seq_limit()).is_some());
    }
}
