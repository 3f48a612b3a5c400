//! Threads that inherit the context of the code that spawns them.
//!
//! Drop-in for `std::thread::spawn` and `std::thread::Builder`: the new
//! thread starts inside a snapshot of the spawner's context, with a thread
//! hop recorded at the spawn site.

use std::io;
use std::panic::Location;
use std::thread::JoinHandle;

use crate::context::{Context, HopKind};

/// Spawns a thread that runs `f` inside the current context.
///
/// # Panics
///
/// Panics if the operating system cannot create a thread, as
/// `std::thread::spawn` does; use [`Builder::spawn`] to get the error.
///
/// # Examples
///
/// ```
/// struct Tenant(&'static str);
///
/// let _guard = milieu::provide(Tenant("acme"));
/// let name = milieu::thread::spawn(|| milieu::get::<Tenant>().unwrap().0).join().unwrap();
/// assert_eq!(name, "acme");
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(handle) => handle,
        Err(e) => panic!("milieu::thread::spawn: failed to spawn thread: {e}"),
    }
}

/// A `std::thread::Builder` whose threads inherit the spawner's context.
#[derive(Debug)]
pub struct Builder {
    inner: std::thread::Builder,
    name: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with default settings.
    pub fn new() -> Builder {
        Builder {
            inner: std::thread::Builder::new(),
            name: None,
        }
    }

    /// Names the thread (also the label of the hop in dumps).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        let name = name.into();
        self.inner = self.inner.name(name.clone());
        self.name = Some(name);
        self
    }

    /// Sets the new thread's stack size in bytes.
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.inner = self.inner.stack_size(size);
        self
    }

    /// Spawns the thread inside a snapshot of the current context.
    ///
    /// # Errors
    ///
    /// The operating system's error if it cannot create the thread.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let site = Location::caller();
        let ctx = Context::current().hop_at(HopKind::Thread, self.name.map(Into::into), site);
        self.inner.spawn(move || ctx.run(f))
    }
}
