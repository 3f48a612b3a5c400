//! Threads: the pool behind `defer_to_thread`.
//!
//! A fixed number of workers pull jobs from one queue. Each job runs in the
//! context its caller captured (a thread hop is recorded), and its result
//! goes back through a oneshot channel whose receiver is awaited on the
//! reactor thread.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle as ThreadHandle;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed-size pool of worker threads.
pub(crate) struct Pool {
    queue: Arc<Queue>,
    workers: Vec<ThreadHandle<()>>,
}

struct Queue {
    jobs: Mutex<Jobs>,
    ready: Condvar,
}

/// The jobs waiting for a worker, and whether the pool is shutting down.
#[derive(Default)]
struct Jobs {
    waiting: VecDeque<Job>,
    closed: bool,
}

impl Pool {
    pub(crate) fn new(size: usize, name: &str) -> std::io::Result<Pool> {
        let queue = Arc::new(Queue {
            jobs: Mutex::new(Jobs::default()),
            ready: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(size);
        for i in 0..size.max(1) {
            let queue = Arc::clone(&queue);
            let worker = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&queue))?;
            workers.push(worker);
        }
        Ok(Pool { queue, workers })
    }

    pub(crate) fn execute(&self, job: Job) {
        let mut jobs = self
            .queue
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        jobs.waiting.push_back(job);
        drop(jobs);
        self.queue.ready.notify_one();
    }
}

fn work(queue: &Queue) {
    loop {
        let job = {
            let mut jobs = queue.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = jobs.waiting.pop_front() {
                    break job;
                }
                if jobs.closed {
                    return; // shut down and drained
                }
                jobs = queue
                    .ready
                    .wait(jobs)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        // A panicking job must not take the worker down: the job's own
        // wrapper reports the panic to its awaiting future.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.queue
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.queue.ready.notify_all();
        let me = std::thread::current().id();
        for worker in self.workers.drain(..) {
            // The last handle may go away inside a job: never join oneself.
            if worker.thread().id() != me {
                let _ = worker.join();
            }
        }
    }
}
