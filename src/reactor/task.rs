//! The reactor's executor: tasks in a slotmap, woken by thread-safe wakers
//! into a ready queue the tick drains (a bounded number per tick).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context as TaskContext, Poll, Wake};

use slotmap::{new_key_type, SlotMap};

use super::Shared;

new_key_type! {
    /// Identifies one task in its reactor.
    pub(crate) struct TaskKey;
}

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task: its future (absent while it is being polled) and its waker.
pub(crate) struct Task {
    pub(crate) future: Option<BoxFuture>,
    pub(crate) waker: Arc<TaskWaker>,
}

/// The tasks of one reactor.
#[derive(Default)]
pub(crate) struct Tasks {
    pub(crate) slots: SlotMap<TaskKey, Task>,
}

/// Wakes one task: queues it (once) and wakes the reactor if it sleeps.
pub(crate) struct TaskWaker {
    pub(crate) key: TaskKey,
    pub(crate) queued: AtomicBool,
    pub(crate) shared: Weak<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return; // already queued
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.schedule(self.key);
        }
    }
}

/// Why a [`JoinHandle`] has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The task panicked (the panic was logged with the context dump).
    Panicked,
    /// The task was dropped before finishing (its reactor was dropped).
    Cancelled,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked => f.write_str("the task panicked"),
            JoinError::Cancelled => f.write_str("the task was dropped before it finished"),
        }
    }
}

impl std::error::Error for JoinError {}

/// The result of a spawned task or thread job, as a future.
///
/// Dropping it does not cancel the task.
#[must_use = "a JoinHandle does nothing unless awaited; drop it to detach the task"]
pub struct JoinHandle<T> {
    pub(crate) rx: futures_channel::oneshot::Receiver<std::thread::Result<T>>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinHandle")
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(value))) => Poll::Ready(Ok(value)),
            Poll::Ready(Ok(Err(_panic))) => Poll::Ready(Err(JoinError::Panicked)),
            Poll::Ready(Err(_canceled)) => Poll::Ready(Err(JoinError::Cancelled)),
        }
    }
}

/// Runs `fut` to completion, sending its output (or its panic) to `tx`.
pub(crate) async fn run_and_send<F: Future>(
    fut: F,
    tx: futures_channel::oneshot::Sender<std::thread::Result<F::Output>>,
) {
    let output = crate::panic::CatchUnwind::new("task", fut).await;
    let _ = tx.send(output); // the JoinHandle may be gone: detached
}
