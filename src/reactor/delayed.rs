//! Delayed calls as futures: [`DelayedCall`] (Twisted's `callLater`, and
//! awaited, its `deferLater`), [`Sleep`] and [`Timeout`].
//!
//! A scheduled call lives in the reactor's timer table, result included:
//! the `DelayedCall` is a key into it, so scheduling and cancelling cost
//! what they did before calls could be awaited. The table keeps a fired
//! call's result until the `DelayedCall` takes it or is dropped; dropping a
//! handle whose call is neither cancelled nor collected takes the timers'
//! lock once to say so (a fire-and-forget `call_later` pays that).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use super::state::ReactorState;
use super::task::JoinError;
use super::time::{Callback, Polled, TimerKey};
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
    /// Cancelled through this handle, or its outcome taken: the table holds
    /// nothing more for it, so dropping it has nothing to tell the table.
    settled: AtomicBool,
    _result: PhantomData<fn() -> T>,
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
        // The call and its result live in the timer table: no cell shared
        // with the handle, so scheduling costs what a boxed callback costs.
        let callback: Callback = Box::new(move || Box::new(f()));
        let key = state.timers().insert(when, callback, hop);
        state.wakeup.unpark();
        DelayedCall {
            key,
            state: Arc::downgrade(state),
            settled: AtomicBool::new(false),
            _result: PhantomData,
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
        let Some((timer, waiter)) = removed else {
            return false;
        };
        self.settled.store(true, Ordering::Relaxed);
        // Outside the timers' lock: the callback and the context it
        // captured are user values with destructors.
        drop(timer);
        if let Some(waiter) = waiter {
            waiter.wake();
        }
        true
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

impl<T: 'static> Future for DelayedCall<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if self.settled.load(Ordering::Relaxed) {
            // Cancelled here, or polled again after it completed.
            return Poll::Ready(Err(JoinError::Cancelled));
        }
        let Some(state) = self.state.upgrade() else {
            // The reactor was dropped, and its calls with it.
            return Poll::Ready(Err(JoinError::Cancelled));
        };
        let polled = state.timers().poll(self.key, cx.waker());
        let outcome = match polled {
            Polled::Waiting => return Poll::Pending,
            Polled::Ready(outcome) => outcome,
            Polled::Gone => Err(JoinError::Cancelled),
        };
        self.settled.store(true, Ordering::Relaxed);
        // The table stored what this call's callback returned: a `T`.
        Poll::Ready(outcome.and_then(|value| {
            value
                .downcast::<T>()
                .map(|value| *value)
                .map_err(|_| JoinError::Cancelled)
        }))
    }
}

impl<T> Drop for DelayedCall<T> {
    fn drop(&mut self) {
        if self.settled.load(Ordering::Relaxed) {
            return;
        }
        if let Some(state) = self.state.upgrade() {
            // The call goes on (dropping does not cancel) but keeps no
            // result; one nobody took is dropped here, outside the lock.
            let unclaimed = state.timers().detach(self.key);
            drop(unclaimed);
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
