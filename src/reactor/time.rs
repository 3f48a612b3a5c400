//! Time: the reactor's clock (real or virtual) and its timers.
//!
//! Timers live in a binary heap ordered by (deadline, sequence) next to a
//! slotmap that owns the callbacks (and, until its `DelayedCall` takes
//! it, a fired call's result). Insert is O(log n); cancel is O(1)
//! amortised (the heap entry goes stale and is skipped when it reaches the
//! top; once stale entries outnumber live ones two to one the heap is
//! rebuilt without them); `reset` pushes a fresh heap entry and leaves the
//! old one stale. A timer keeps its scheduler's context as a
//! [`PendingHop`]: the hop frame is only built if the call fires.
//! Twisted's `task.Clock` keeps a sorted list: O(n) per insert.

use std::any::Any;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use slotmap::{new_key_type, SlotMap};

use super::task::JoinError;
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

/// What a timer runs: the callback, type-erased, giving back its result
/// (a `Box` of a zero-sized result, such as `()`, allocates nothing).
pub(crate) type Callback = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// How a fired call ended: its result, or why there is none.
pub(crate) type Outcome = Result<Box<dyn Any + Send>, JoinError>;

/// A callback waiting for its deadline.
pub(crate) struct Timer {
    pub(crate) when: Instant,
    /// Matches the live heap entry (older heap entries are stale); its top
    /// bit, [`DETACHED`], says the `DelayedCall` was dropped.
    seq: u64,
    pub(crate) callback: Callback,
    /// The scheduler's context; the hop frame is built only if the call
    /// fires.
    pub(crate) hop: PendingHop,
}

/// In [`Timer::seq`]: nobody holds the call's `DelayedCall`, so its
/// outcome is not kept. A bit rather than a field keeps a pending entry
/// the size it had before calls could be awaited: a million pending timers
/// are a million entries.
const DETACHED: u64 = 1 << 63;

impl Timer {
    fn seq(&self) -> u64 {
        self.seq & !DETACHED
    }

    fn detached(&self) -> bool {
        self.seq & DETACHED != 0
    }
}

/// A call in the table, from scheduling until its
/// [`DelayedCall`](super::DelayedCall) has its outcome or is dropped.
enum Entry {
    Pending(Timer),
    /// Taken out to run (outside the lock); its outcome is kept.
    Running,
    /// Taken out to run; its `DelayedCall` was dropped meanwhile.
    RunningDetached,
    /// Ran; the outcome waits for the `DelayedCall` to be polled.
    Done(Outcome),
}

/// A due call taken out of the table to run.
pub(crate) struct Due {
    pub(crate) key: TimerKey,
    pub(crate) timer: Timer,
    /// Its `DelayedCall` exists: hand the outcome to [`Timers::finish`].
    pub(crate) keep_outcome: bool,
}

/// What [`Timers::poll`] found.
pub(crate) enum Polled {
    Waiting,
    Ready(Outcome),
    /// Cancelled, or the reactor was dropped: not in the table.
    Gone,
}

/// The reactor's timers.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, TimerKey)>>,
    entries: SlotMap<TimerKey, Entry>,
    /// Tasks awaiting a call, beside the entries: few calls are awaited.
    waiters: HashMap<TimerKey, Waker>,
    /// Entries still `Pending`.
    pending: usize,
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
        callback: Callback,
        hop: PendingHop,
    ) -> TimerKey {
        let seq = self.bump();
        let key = self.entries.insert(Entry::Pending(Timer {
            when,
            seq,
            callback,
            hop,
        }));
        self.pending += 1;
        self.heap.push(Reverse((when, seq, key)));
        key
    }

    fn pending_timer(&self, key: TimerKey) -> Option<&Timer> {
        match self.entries.get(key) {
            Some(Entry::Pending(timer)) => Some(timer),
            _ => None,
        }
    }

    /// Removes a pending call; `None` if it already ran or was cancelled.
    /// Gives back the timer (to drop outside the lock: it holds user
    /// values) and the awaiting task to wake.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<(Timer, Option<Waker>)> {
        self.pending_timer(key)?;
        let Some(Entry::Pending(timer)) = self.entries.remove(key) else {
            return None;
        };
        self.pending -= 1;
        self.stale += 1;
        self.compact_if_mostly_stale();
        Some((timer, self.take_waiter(key)))
    }

    /// Moves a pending call to `when`; false if it already ran or was
    /// cancelled.
    pub(crate) fn reset(&mut self, key: TimerKey, when: Instant) -> bool {
        let seq = self.bump();
        match self.entries.get_mut(key) {
            Some(Entry::Pending(timer)) => {
                timer.when = when;
                timer.seq = seq | (timer.seq & DETACHED);
                self.heap.push(Reverse((when, seq, key)));
                self.stale += 1;
                self.compact_if_mostly_stale();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn is_pending(&self, key: TimerKey) -> bool {
        self.pending_timer(key).is_some()
    }

    pub(crate) fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.pending_timer(key).map(|t| t.when)
    }

    /// Number of pending calls.
    pub(crate) fn len(&self) -> usize {
        self.pending
    }

    /// The earliest deadline, if any (stale heap entries are discarded).
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Takes out the earliest call due at or before `now` whose sequence
    /// number is below `seq_limit` (calls scheduled after the limit was
    /// read wait for the next round). A call whose `DelayedCall` still
    /// exists stays in the table, running, until [`finish`](Timers::finish).
    pub(crate) fn pop_due(&mut self, now: Instant, seq_limit: u64) -> Option<Due> {
        self.skip_stale();
        let Reverse((when, seq, key)) = *self.heap.peek()?;
        if when > now || seq >= seq_limit {
            return None;
        }
        self.heap.pop();
        self.pending -= 1;
        let keep_outcome = !self.pending_timer(key)?.detached();
        let entry = if keep_outcome {
            std::mem::replace(self.entries.get_mut(key)?, Entry::Running)
        } else {
            self.entries.remove(key)?
        };
        let Entry::Pending(timer) = entry else {
            return None; // a live heap entry always has a pending timer
        };
        Some(Due {
            key,
            timer,
            keep_outcome,
        })
    }

    /// A call taken out by [`pop_due`](Timers::pop_due) ended: keeps the
    /// outcome for its `DelayedCall`, or gives it back (to drop outside the
    /// lock) if the handle was dropped meanwhile; and the task to wake.
    pub(crate) fn finish(
        &mut self,
        key: TimerKey,
        outcome: Outcome,
    ) -> (Option<Outcome>, Option<Waker>) {
        match self.entries.get_mut(key) {
            Some(entry @ Entry::Running) => {
                *entry = Entry::Done(outcome);
                (None, self.take_waiter(key))
            }
            Some(Entry::RunningDetached) => {
                self.entries.remove(key);
                (Some(outcome), None)
            }
            _ => (Some(outcome), None),
        }
    }

    /// The `DelayedCall` of `key` asks for its outcome.
    pub(crate) fn poll(&mut self, key: TimerKey, waker: &Waker) -> Polled {
        match self.entries.get(key) {
            Some(Entry::Pending(_) | Entry::Running) => {
                match self.waiters.get(&key) {
                    Some(waiter) if waiter.will_wake(waker) => {}
                    _ => {
                        self.waiters.insert(key, waker.clone());
                    }
                }
                Polled::Waiting
            }
            Some(Entry::Done(_)) => match self.entries.remove(key) {
                Some(Entry::Done(outcome)) => Polled::Ready(outcome),
                _ => Polled::Gone,
            },
            Some(Entry::RunningDetached) | None => Polled::Gone,
        }
    }

    /// The `DelayedCall` of `key` is dropped: a pending or running call
    /// goes on without keeping its outcome; an outcome nobody took is given
    /// back to drop outside the lock.
    pub(crate) fn detach(&mut self, key: TimerKey) -> Option<Outcome> {
        self.take_waiter(key);
        match self.entries.get_mut(key)? {
            Entry::Pending(timer) => {
                timer.seq |= DETACHED;
                None
            }
            entry @ Entry::Running => {
                *entry = Entry::RunningDetached;
                None
            }
            Entry::RunningDetached => None,
            Entry::Done(_) => match self.entries.remove(key)? {
                Entry::Done(outcome) => Some(outcome),
                _ => None,
            },
        }
    }

    /// Removes every call (the reactor is dropped): the timers and outcomes
    /// to drop outside the lock, and the tasks to wake (they find their
    /// call gone: cancelled).
    pub(crate) fn drain(&mut self) -> (Vec<Timer>, Vec<Outcome>, Vec<Waker>) {
        self.heap.clear();
        self.stale = 0;
        self.pending = 0;
        let (mut timers, mut outcomes) = (Vec::new(), Vec::new());
        for (_, entry) in self.entries.drain() {
            match entry {
                Entry::Pending(timer) => timers.push(timer),
                Entry::Done(outcome) => outcomes.push(outcome),
                Entry::Running | Entry::RunningDetached => {}
            }
        }
        let wakers = self.waiters.drain().map(|(_, waker)| waker).collect();
        (timers, outcomes, wakers)
    }

    /// The task awaiting `key`, if any. Most calls are never awaited: an
    /// empty map is not even hashed into.
    fn take_waiter(&mut self, key: TimerKey) -> Option<Waker> {
        if self.waiters.is_empty() {
            return None;
        }
        self.waiters.remove(&key)
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
            match self.entries.get(*key) {
                Some(Entry::Pending(timer)) if timer.seq() == *seq => return,
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
        if self.pending == 0 {
            // Every heap entry is stale: drop them in one go.
            self.heap.clear();
            self.stale = 0;
        } else if self.stale > 64 && self.stale > 2 * self.pending {
            let entries = &self.entries;
            self.heap.retain(|Reverse((_, seq, key))| {
                matches!(entries.get(*key), Some(Entry::Pending(t)) if t.seq() == *seq)
            });
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
    use std::panic::Location;
    use std::task::Waker;
    use std::time::{Duration, Instant};

    use super::Timers;
    use crate::context::PendingHop;
    use crate::context::{Context, HopKind};

    fn noop() -> super::Callback {
        Box::new(|| Box::new(()))
    }

    fn no_hop() -> PendingHop {
        PendingHop::new(Context::empty(), HopKind::Task, None, Location::caller())
    }

    #[test]
    fn an_outcome_is_kept_only_while_its_handle_lives() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut timers = Timers::default();
        let kept = timers.insert(at(10), noop(), no_hop());
        let detached = timers.insert(at(10), noop(), no_hop());
        let unclaimed = timers.insert(at(10), noop(), no_hop());
        assert!(
            timers.detach(detached).is_none(),
            "pending: nothing to drop"
        );
        let limit = timers.seq_limit();
        let mut due = Vec::new();
        while let Some(d) = timers.pop_due(at(10), limit) {
            due.push((d.key, d.keep_outcome));
        }
        assert_eq!(due.len(), 3);
        assert!(
            due.contains(&(detached, false)),
            "a dropped handle keeps nothing"
        );
        assert_eq!(timers.entries.len(), 2, "the others wait, running");
        for key in [kept, unclaimed] {
            let (dropped, waiter) = timers.finish(key, Ok(Box::new(())));
            assert!(dropped.is_none() && waiter.is_none());
        }
        assert!(matches!(
            timers.poll(kept, Waker::noop()),
            super::Polled::Ready(Ok(_))
        ));
        assert!(
            timers.detach(unclaimed).is_some(),
            "an untaken result is given back"
        );
        assert!(timers.entries.is_empty(), "nothing left behind");
        assert!(matches!(
            timers.poll(kept, Waker::noop()),
            super::Polled::Gone
        ));
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
        assert_eq!(
            timers.pop_due(at(30), limit).map(|due| due.timer.when),
            Some(at(10))
        );
        assert_eq!(
            timers.pop_due(at(30), limit).map(|due| due.timer.when),
            Some(at(30))
        );
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
            .map(|due| due.timer.when)
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
