//! Delayed calls as futures: [`DelayedCall`] (Twisted's `callLater`, and
//! awaited, its `deferLater`), [`Sleep`] and [`Timeout`].
//!
//! A scheduled call is one allocation shared by the timer, which runs it,
//! and the `DelayedCall`, which cancels, moves or awaits it.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Instant;

use super::state::ReactorState;
use super::task::JoinError;
use super::time::{Fire, TimerKey};
use crate::context::PendingHop;
use crate::context::{Context, HopKind};

/// A call scheduled with [`Handle::call_later`](super::Handle::call_later):
/// cancel it, move it, or `.await` its result.
///
/// Awaiting gives the callback's return value once it ran, or
/// [`JoinError::Cancelled`] if it was cancelled (or its reactor dropped
/// first), or [`JoinError::Panicked`] if it panicked (logged by the reactor
/// with the context dump). Dropping a `DelayedCall` does not cancel the
/// call.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use milieu::reactor::{JoinError, Reactor};
///
/// let mut reactor = Reactor::new()?;
/// let handle = reactor.handle();
/// let (answer, cancelled) = reactor.run_until(async move {
///     let answer = handle.call_later(Duration::from_millis(1), || 6 * 7);
///     let never = handle.call_later(Duration::from_secs(60), || "too late");
///     assert!(never.cancel());
///     (answer.await, never.await)
/// })?;
/// assert_eq!(answer, Ok(42));
/// assert_eq!(cancelled, Err(JoinError::Cancelled));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct DelayedCall<T = ()> {
    key: TimerKey,
    state: Weak<ReactorState>,
    outcome: Arc<dyn Outcome<T>>,
}

impl<T> fmt::Debug for DelayedCall<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DelayedCall(active: {})", self.active())
    }
}

impl<T: Send + 'static> DelayedCall<T> {
    /// Schedules `f` at `when` on the reactor of `state`.
    pub(crate) fn schedule<F>(
        state: &Arc<ReactorState>,
        when: Instant,
        f: F,
        hop: PendingHop,
    ) -> DelayedCall<T>
    where
        F: FnOnce() -> T + Send + 'static,
    {
        let call = Arc::new(Call {
            slot: Mutex::new(CallState::Scheduled(f)),
        });
        let fire: Arc<dyn Fire> = Arc::clone(&call) as Arc<dyn Fire>;
        let key = state.timers().insert(when, fire, hop);
        state.wakeup.unpark();
        DelayedCall {
            key,
            state: Arc::downgrade(state),
            outcome: call,
        }
    }
}

impl<T> DelayedCall<T> {
    /// Cancels the call; false if it already ran or was cancelled. Whoever
    /// awaits it gets [`JoinError::Cancelled`].
    pub fn cancel(&self) -> bool {
        let Some(state) = self.state.upgrade() else {
            return false;
        };
        let removed = state.timers().cancel(self.key);
        match removed {
            Some(timer) => {
                // Outside the timers' lock: the callback and the context
                // it captured are user values with destructors.
                timer.callback.abandon();
                drop(timer);
                true
            }
            None => false,
        }
    }

    /// Reschedules the call to run `delay` from now; false if it already
    /// ran or was cancelled.
    pub fn reset(&self, delay: std::time::Duration) -> bool {
        let Some(state) = self.state.upgrade() else {
            return false;
        };
        let when = state.clock.now() + delay;
        let moved = state.timers().reset(self.key, when);
        state.wakeup.unpark();
        moved
    }

    /// Whether the call is still pending.
    pub fn active(&self) -> bool {
        self.state
            .upgrade()
            .is_some_and(|s| s.timers().is_pending(self.key))
    }

    /// When the call is due, if pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.state
            .upgrade()
            .and_then(|s| s.timers().deadline(self.key))
    }
}

impl<T> Future for DelayedCall<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.outcome.poll_outcome(cx.waker())
    }
}

/// The typed side of a scheduled call: what awaiting it sees.
trait Outcome<T>: Send + Sync {
    fn poll_outcome(&self, waker: &Waker) -> Poll<Result<T, JoinError>>;
}

/// A scheduled call: the callback, then its result.
struct Call<F, T> {
    slot: Mutex<CallState<F, T>>,
}

enum CallState<F, T> {
    Scheduled(F),
    /// Scheduled, and a task awaits it.
    Awaited(F, Waker),
    Running(Option<Waker>),
    Done(T),
    Failed(JoinError),
    /// The result was taken by the awaiting task.
    Taken,
}

impl<F, T> Call<F, T> {
    fn slot(&self) -> MutexGuard<'_, CallState<F, T>> {
        // No user code runs under the lock.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores the end of the call and wakes whoever awaits it.
    fn finish(&self, end: CallState<F, T>) {
        let previous = std::mem::replace(&mut *self.slot(), end);
        // The callback (if it never ran) is dropped here, outside the lock.
        let waker = match previous {
            CallState::Awaited(_, waker) | CallState::Running(Some(waker)) => Some(waker),
            _ => None,
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<F, T> Fire for Call<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn fire(&self) {
        let f = {
            let mut slot = self.slot();
            match std::mem::replace(&mut *slot, CallState::Taken) {
                CallState::Scheduled(f) => {
                    *slot = CallState::Running(None);
                    f
                }
                CallState::Awaited(f, waker) => {
                    *slot = CallState::Running(Some(waker));
                    f
                }
                other => {
                    *slot = other;
                    return;
                }
            }
        };
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => self.finish(CallState::Done(value)),
            Err(payload) => {
                self.finish(CallState::Failed(JoinError::Panicked));
                // The reactor logs it with the context dump and counts it.
                resume_unwind(payload)
            }
        }
    }

    fn abandon(&self) {
        let mut slot = self.slot();
        if !matches!(*slot, CallState::Scheduled(_) | CallState::Awaited(..)) {
            return;
        }
        let previous = std::mem::replace(&mut *slot, CallState::Failed(JoinError::Cancelled));
        drop(slot);
        // The callback is dropped here, outside the lock.
        if let CallState::Awaited(_, waker) = previous {
            waker.wake();
        }
    }
}

impl<F, T> Outcome<T> for Call<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn poll_outcome(&self, waker: &Waker) -> Poll<Result<T, JoinError>> {
        let mut slot = self.slot();
        match std::mem::replace(&mut *slot, CallState::Taken) {
            CallState::Scheduled(f) | CallState::Awaited(f, _) => {
                *slot = CallState::Awaited(f, waker.clone());
                Poll::Pending
            }
            CallState::Running(_) => {
                *slot = CallState::Running(Some(waker.clone()));
                Poll::Pending
            }
            CallState::Done(value) => Poll::Ready(Ok(value)),
            CallState::Failed(error) => Poll::Ready(Err(error)),
            // Polled again after it completed: as a cancelled call.
            CallState::Taken => Poll::Ready(Err(JoinError::Cancelled)),
        }
    }
}

/// The future returned by [`Handle::sleep`](super::Handle::sleep).
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    state: Arc<ReactorState>,
    when: Instant,
    /// Scheduled on the first poll that finds the deadline ahead.
    call: Option<DelayedCall<()>>,
}

impl Sleep {
    pub(crate) fn new(state: Arc<ReactorState>, when: Instant) -> Sleep {
        Sleep {
            state,
            when,
            call: None,
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("when", &self.when)
            .finish_non_exhaustive()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.state.clock.now() >= self.when {
            return Poll::Ready(());
        }
        let this = &mut *self;
        let call = this.call.get_or_insert_with(|| {
            // Nothing runs in the timer but the wake-up: no context to carry.
            let hop = PendingHop::new(
                Context::empty(),
                HopKind::Task,
                None,
                std::panic::Location::caller(),
            );
            DelayedCall::schedule(&this.state, this.when, || (), hop)
        });
        match Pin::new(call).poll(cx) {
            // Fired, or cancelled because the reactor is going away: either
            // way nothing more will happen.
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(call) = &self.call {
            call.cancel();
        }
    }
}

/// The future returned by [`Handle::timeout`](super::Handle::timeout).
#[must_use = "futures do nothing unless polled"]
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F> Timeout<F> {
    pub(crate) fn new(future: F, sleep: Sleep) -> Timeout<F> {
        Timeout {
            future: Box::pin(future),
            sleep,
        }
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("sleep", &self.sleep)
            .finish_non_exhaustive()
    }
}

/// The deadline of a [`Timeout`] passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(value) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(value));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
