//! Threads that inherit the context of the code that spawns them.
//!
//! Drop-in for `std::thread::spawn` and `std::thread::Builder`: the new
//! thread starts inside a snapshot of the spawner's context, with a thread
//! hop recorded at the spawn site. What the snapshot carries is what
//! [`Context::current`](crate::Context::current) would: every inherited
//! entry; [local](crate::dump::Policy::Local) ones stay behind, and dumps
//! taken in the new thread say so.
//!
//! Entries installed inside the new thread are its own: they are removed
//! when their guards drop there and never reach back into the spawner.
//! For a thread pool or executor milieu does not know, capture
//! [`Context::current`](crate::Context::current) and
//! [`run`](crate::Context::run) it on the worker instead.
//!
//! # Examples
//!
//! ```
//! use milieu::dump::HopKind;
//!
//! struct Tenant(&'static str);
//! struct Scratch;
//!
//! let _tenant = milieu::provide(Tenant("acme"));
//! let _scratch = milieu::provide_local(Scratch);
//!
//! let worker = milieu::thread::Builder::new()
//!     .name("report-writer".to_owned())
//!     .spawn(|| {
//!         // Inherited entries arrive; the local one does not.
//!         assert_eq!(milieu::get::<Tenant>().unwrap().0, "acme");
//!         assert!(!milieu::contains::<Scratch>());
//!         // The dump records how the context got here.
//!         let hop = milieu::dump().hops().next().cloned().unwrap();
//!         assert_eq!(hop.kind, HopKind::Thread);
//!         assert_eq!(hop.label.as_deref(), Some("report-writer"));
//!     })
//!     .expect("spawn a thread");
//! worker.join().unwrap();
//! ```

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
        let ctx = Context::current().into_hop_at(HopKind::Thread, self.name.map(Into::into), site);
        self.inner.spawn(move || ctx.run(f))
    }
}
