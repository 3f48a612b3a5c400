//! The reactor's executor: tasks in a slotmap, woken by thread-safe wakers
//! into a ready queue the tick drains (a bounded number per tick).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use slotmap::{new_key_type, SlotMap};

use super::readiness::Wakeup;
use crate::panic::{self, Catcher};

new_key_type! {
    /// Identifies one task in its reactor.
    pub(crate) struct TaskKey;
}

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task: its future (absent while it is being polled) and its waker.
struct Task {
    future: Option<BoxFuture>,
    waker: Arc<TaskWaker>,
}

/// The tasks of one reactor and the queue of those ready to be polled.
///
/// Two locks, never held together and never while a task is polled:
/// wakers (from any thread) touch only the ready queue.
pub(crate) struct Executor {
    tasks: Mutex<SlotMap<TaskKey, Task>>,
    ready: Mutex<VecDeque<TaskKey>>,
    wakeup: Arc<Wakeup>,
}

impl Executor {
    pub(crate) fn new(wakeup: Arc<Wakeup>) -> Executor {
        Executor {
            tasks: Mutex::new(SlotMap::with_key()),
            ready: Mutex::new(VecDeque::new()),
            wakeup,
        }
    }

    fn tasks(&self) -> MutexGuard<'_, SlotMap<TaskKey, Task>> {
        // No task is polled and no destructor runs under the lock, so a
        // poisoned lock still holds consistent data.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ready(&self) -> MutexGuard<'_, VecDeque<TaskKey>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a task, queued to be polled.
    pub(crate) fn spawn(self: &Arc<Self>, future: BoxFuture) {
        let weak = Arc::downgrade(self);
        let key = self.tasks().insert_with_key(|key| Task {
            future: Some(future),
            waker: Arc::new(TaskWaker {
                key,
                queued: AtomicBool::new(true),
                executor: weak,
            }),
        });
        self.schedule(key);
    }

    /// Queues a task and wakes the reactor if it is waiting.
    fn schedule(&self, key: TaskKey) {
        self.ready().push_back(key);
        self.wakeup.unpark();
    }

    /// Whether a task waits to be polled.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready().is_empty()
    }

    /// Number of live tasks.
    pub(crate) fn len(&self) -> usize {
        self.tasks().len()
    }

    /// Polls the ready tasks, at most `budget`, in the order they were
    /// woken: returns (polls, panics). Step 6 of the tick, and what
    /// `advance` runs after each timer.
    pub(crate) fn run_ready(&self, budget: usize) -> (usize, usize) {
        let (mut polls, mut panics) = (0, 0);
        for _ in 0..budget {
            let next = self.ready().pop_front();
            let Some(key) = next else { break };
            polls += 1;
            panics += usize::from(!self.poll(key));
        }
        (polls, panics)
    }

    /// Polls one task; false if it panicked (logged).
    fn poll(&self, key: TaskKey) -> bool {
        let taken = self.tasks().get_mut(key).and_then(|task| {
            let future = task.future.take()?;
            Some((future, Arc::clone(&task.waker)))
        });
        let Some((mut future, waker_arc)) = taken else {
            return true;
        };
        waker_arc.queued.store(false, Ordering::Release);
        let waker = Waker::from(waker_arc);
        let mut cx = TaskContext::from_waker(&waker);
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        let mut tasks = self.tasks();
        match polled {
            Ok(Poll::Pending) => {
                if let Some(task) = tasks.get_mut(key) {
                    task.future = Some(future);
                }
                true
            }
            Ok(Poll::Ready(())) => {
                tasks.remove(key);
                drop(tasks);
                drop(future);
                true
            }
            Err(payload) => {
                tasks.remove(key);
                drop(tasks);
                panic::log(Catcher::Reactor, "task", &*payload);
                false
            }
        }
    }

    /// Drops every task (the reactor is dropped): their futures often hold
    /// a handle to the reactor, a cycle only this breaks. The futures are
    /// dropped outside the lock, since their destructors may spawn.
    pub(crate) fn clear(&self) {
        let tasks = std::mem::take(&mut *self.tasks());
        drop(tasks);
        self.ready().clear();
    }
}

/// Wakes one task: queues it (once) and wakes the reactor if it sleeps.
struct TaskWaker {
    key: TaskKey,
    queued: AtomicBool,
    executor: Weak<Executor>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return; // already queued
        }
        if let Some(executor) = self.executor.upgrade() {
            executor.schedule(self.key);
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
