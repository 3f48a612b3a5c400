//! Cores: one reactor per thread, each with its own root context, sharing
//! listening ports through `SO_REUSEPORT`.
//!
//! [`run_on_threads`] starts `n` threads; each builds a reactor whose root
//! context is the caller's (carried across the thread hop) plus a
//! [`CoreId`], runs the setup function in it, then runs the reactor until
//! [`Cores::stop`]. A [`SharedPort`](super::SharedPort) is bound once (so port 0 resolves to
//! one port) and each reactor listens on it with its own socket
//! ([`Handle::listen_shared`](Handle::listen_shared)): the kernel spreads incoming connections
//! over the sockets, hence over the threads.

use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::event_loop::Reactor;
use super::handle::Handle;

/// Which of the [`run_on_threads`] reactors the current code runs on: a
/// context entry in each reactor's root context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoreId {
    index: usize,
    count: usize,
}

impl CoreId {
    /// This core's number, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many cores were started.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The core the current code runs on, from the context.
    ///
    /// # Errors
    ///
    /// [`Missing`](crate::Missing) outside a reactor of [`run_on_threads`].
    #[track_caller]
    pub fn current() -> Result<CoreId, crate::Missing> {
        crate::get::<CoreId>().map(|core| *core)
    }
}

/// Reactors running on threads, from [`run_on_threads`].
///
/// Dropping it stops the reactors and waits for their threads.
pub struct Cores {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for Cores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cores")
            .field("reactors", &self.handles)
            .finish_non_exhaustive()
    }
}

impl Cores {
    /// The reactors' handles, by core index.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Asks every reactor to stop after its current tick.
    pub fn stop(&self) {
        for handle in &self.handles {
            handle.stop();
        }
    }

    /// Asks every reactor to stop gracefully ([`Handle::drain`]): each
    /// closes its listeners, answers every request its connections
    /// received, closes them, and stops once none is left. Returns at
    /// once; [`is_finished`](Cores::is_finished) says when all have
    /// stopped, and [`stop`](Cores::stop) ends those still draining at a
    /// deadline of the caller's.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use milieu::reactor::{run_on_threads, serve, LineProtocol, SharedPort};
    ///
    /// let port = SharedPort::bind("127.0.0.1:0")?;
    /// let cores = run_on_threads(2, move |handle| {
    ///     handle.listen_shared(&port, || serve(LineProtocol::new(), |line: String| line))?;
    ///     Ok(())
    /// })?;
    /// cores.drain();
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// while !cores.is_finished() && Instant::now() < deadline {
    ///     std::thread::sleep(Duration::from_millis(10));
    /// }
    /// cores.stop(); // those still draining at the deadline
    /// cores.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn drain(&self) {
        for handle in &self.handles {
            handle.drain();
        }
    }

    /// Whether every reactor thread has ended (after
    /// [`drain`](Cores::drain) or [`stop`](Cores::stop)).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits until every reactor stopped ([`stop`](Cores::stop), or
    /// [`Handle::stop`] on each).
    ///
    /// # Errors
    ///
    /// The first readiness-poll error of a reactor, or an error if a reactor
    /// thread panicked.
    pub fn join(mut self) -> io::Result<()> {
        join_all(std::mem::take(&mut self.threads))
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
            let _ = join_all(std::mem::take(&mut self.threads));
        }
    }
}

fn join_all(threads: Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut first = Ok(());
    for thread in threads {
        let result = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a reactor thread panicked")));
        if first.is_ok() {
            first = result;
        }
    }
    first
}

/// Starts `threads` reactors (at least one), one per thread, and runs `setup` with each
/// one's handle, on its thread, in its root context (the caller's context
/// plus the reactor's [`Handle`] and a [`CoreId`]). Returns once every
/// setup has returned.
///
/// # Errors
///
/// The first error of a setup (or its panic, or a reactor or thread that
/// could not be made); the reactors already started are stopped first.
///
/// # Examples
///
/// ```
/// use milieu::reactor::{run_on_threads, serve, LineProtocol, SharedPort};
///
/// let port = SharedPort::bind("127.0.0.1:0")?;
/// let addr = port.local_addr();
/// let cores = run_on_threads(2, move |handle| {
///     handle.listen_shared(&port, || serve(LineProtocol::new(), |line: String| line))?;
///     Ok(())
/// })?;
/// // ... connect to `addr` ...
/// # let _ = addr;
/// cores.stop();
/// cores.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn run_on_threads<S>(threads: usize, setup: S) -> io::Result<Cores>
where
    S: Fn(&Handle) -> io::Result<()> + Send + Sync + 'static,
{
    let count = threads.max(1);
    let setup = Arc::new(setup);
    let (tx, rx) = mpsc::channel::<(usize, io::Result<Handle>)>();
    let mut cores = Cores {
        handles: Vec::with_capacity(count),
        threads: Vec::with_capacity(count),
    };
    let mut first_error = None;
    for index in 0..count {
        let setup = Arc::clone(&setup);
        let tx = tx.clone();
        let core = CoreId { index, count };
        let spawned = crate::thread::Builder::new()
            .name(format!("reactor-{index}"))
            .spawn(move || core_main(core, &*setup, tx));
        match spawned {
            Ok(thread) => cores.threads.push(thread),
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    // Every thread started reports once, then drops its sender (a thread
    // that dies drops it too), so this ends.
    let mut handles: Vec<Option<Handle>> = vec![None; cores.threads.len()];
    for (index, result) in rx {
        match result {
            Ok(handle) => handles[index] = Some(handle),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    cores.handles = handles.iter().flatten().cloned().collect();
    if cores.handles.len() < cores.threads.len() && first_error.is_none() {
        first_error = Some(io::Error::other("a reactor thread died during setup"));
    }
    match first_error {
        None => Ok(cores),
        Some(e) => {
            // Dropping stops and joins the reactors that did start.
            drop(cores);
            Err(e)
        }
    }
}

/// One core's thread: build, set up, report, run.
fn core_main<S>(
    core: CoreId,
    setup: &S,
    report: mpsc::Sender<(usize, io::Result<Handle>)>,
) -> io::Result<()>
where
    S: Fn(&Handle) -> io::Result<()>,
{
    let built = crate::scope()
        .with_debug(core)
        .because("the core this reactor runs on")
        .run(|| {
            Reactor::builder()
                .name(format!("reactor-{}", core.index))
                .build()
        });
    let mut reactor = match built {
        Ok(reactor) => reactor,
        Err(e) => {
            let _ = report.send((core.index, Err(e)));
            return Ok(());
        }
    };
    let handle = reactor.handle();
    let set = reactor
        .context()
        .run(|| catch_unwind(AssertUnwindSafe(|| setup(&handle))));
    let outcome = match set {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("setup of core {} failed: {e}", core.index),
        )),
        Err(panic) => {
            reactor
                .context()
                .run(|| crate::panic::log(crate::panic::Catcher::Reactor, "core setup", &*panic));
            Err(io::Error::other(format!(
                "setup of core {} panicked",
                core.index
            )))
        }
    };
    let ok = outcome.is_ok();
    let _ = report.send((core.index, outcome));
    drop(report);
    if ok {
        reactor.run()
    } else {
        Ok(())
    }
}
