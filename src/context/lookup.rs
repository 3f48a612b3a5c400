//! Reading the current context.
//!
//! A lookup reads the thread's current-frame pointer and probes that
//! frame's flattened map: the cost does not depend on how many frames are
//! installed, and nothing is recorded (provenance is written at install
//! time, never on lookup).

use std::any::TypeId;
use std::panic::Location;
use std::sync::Arc;

use super::entry::{Entry, Value};
use super::install::downcast_arc;
use super::missing::Missing;
use super::state::State;

/// Returns the current value of type `T`.
///
/// # Errors
///
/// [`Missing`] when no `T` is visible. Its `Display` names `T`, this call
/// site, every entry that is present with its provenance, and near misses
/// (a type of the same name from another module or crate version, an
/// `Arc<T>` where `T` was asked for, a local entry left behind by a hop).
///
/// # Examples
///
/// ```
/// struct Db { name: &'static str }
///
/// let _guard = milieu::provide(Db { name: "orders" });
/// let db = milieu::get::<Db>()?;
/// assert_eq!(db.name, "orders");
/// # Ok::<(), milieu::Missing>(())
/// ```
#[track_caller]
#[inline]
pub fn get<T: 'static>() -> Result<Arc<T>, Missing> {
    let found = State::try_with(|state| {
        // SAFETY: the pointer is null or points to the frame owned by the
        // top stack slot; nothing in this closure changes the stack.
        let frame = unsafe { state.top_ptr().as_ref() }?;
        let entry = frame.visible.get(TypeId::of::<T>())?;
        value_of::<T>(state, entry)
    });
    match found.flatten() {
        Some(value) => Ok(value),
        None => Err(Missing::for_current::<T>(Location::caller())),
    }
}

/// Calls `f` with a reference to the current value of type `T`, without
/// touching any reference count.
///
/// `f` may use the context freely, including installing and removing
/// entries: the value stays alive until `f` returns.
///
/// # Errors
///
/// [`Missing`] when no `T` is visible (see [`get`]); `f` is not called.
///
/// # Examples
///
/// ```
/// struct Limits { max_body: usize }
///
/// let _guard = milieu::provide(Limits { max_body: 1 << 20 });
/// let max = milieu::with(|l: &Limits| l.max_body)?;
/// assert_eq!(max, 1 << 20);
/// # Ok::<(), milieu::Missing>(())
/// ```
#[track_caller]
#[inline]
pub fn with<T: 'static, R>(f: impl FnOnce(&T) -> R) -> Result<R, Missing> {
    let site = Location::caller();
    let found = State::try_with(|state| {
        // SAFETY: the pointer is null or points to the frame owned by the
        // top stack slot; it is pinned below before any user code runs.
        let frame = unsafe { state.top_ptr().as_ref() }?;
        let entry = frame.visible.get(TypeId::of::<T>())?;
        match &entry.value {
            Value::Shared(value) => {
                // SAFETY: `shared_ref` points to the `T` in an allocation the
                // frame keeps alive (and the pin below keeps the frame).
                let value = unsafe { &*shared_ref::<T>(entry, value) };
                // `f` may pop this frame off the stack; the pin keeps it
                // (and so `value`) alive until `f` has returned.
                let _pin = Pin::new(state);
                Some(f(value))
            }
            // Local values live in the thread's table, which `f` may
            // change: hold a clone while `f` runs, not a borrow of it.
            Value::Local => value_of::<T>(state, entry).map(|value| f(&value)),
        }
    });
    found
        .flatten()
        .ok_or_else(|| Missing::for_current::<T>(site))
}

/// Whether a value of type `T` is visible in the current context.
///
/// # Examples
///
/// ```
/// struct Flag;
/// assert!(!milieu::contains::<Flag>());
/// let _guard = milieu::provide(Flag);
/// assert!(milieu::contains::<Flag>());
/// ```
#[inline]
pub fn contains<T: 'static>() -> bool {
    contains_id(TypeId::of::<T>())
}

/// Whether an entry keyed by `id` is visible in the current context.
#[inline]
pub(crate) fn contains_id(id: TypeId) -> bool {
    State::try_with(|state| {
        // SAFETY: as in `get`.
        unsafe { state.top_ptr().as_ref() }.is_some_and(|frame| frame.visible.get(id).is_some())
    })
    .unwrap_or(false)
}

/// The value of `entry`, an entry found under `TypeId::of::<T>()`, as an
/// `Arc<T>`.
#[inline]
pub(crate) fn value_of<T: 'static>(state: &State, entry: &Entry) -> Option<Arc<T>> {
    match &entry.value {
        Value::Shared(value) => {
            let value = shared_ref::<T>(entry, value);
            // SAFETY: `shared_ref` points into the live `Arc` allocation
            // made for a `T` (see there); taking one more strong count
            // and wrapping it is `Arc::clone` on the typed `Arc`.
            Some(unsafe {
                Arc::increment_strong_count(value);
                Arc::from_raw(value)
            })
        }
        Value::Local => state.local_value(entry.seq).and_then(downcast_arc::<T>),
    }
}

/// The `T` inside a shared entry found under `TypeId::of::<T>()`.
///
/// No run-time type check: the map is keyed by the `TypeId` that
/// `Scope::with*` computed from the very `T` it boxed into this `Arc`, so
/// the key match is the type check (`Arc::downcast` would repeat it
/// through a virtual call on every lookup).
#[inline]
fn shared_ref<T: 'static>(entry: &Entry, value: &Arc<dyn std::any::Any + Send + Sync>) -> *const T {
    debug_assert_eq!(entry.type_id, TypeId::of::<T>());
    debug_assert!((**value).is::<T>());
    Arc::as_ptr(value).cast::<T>()
}

/// Pins the thread state while alive, also when `f` panics.
struct Pin<'a>(&'a State);

impl<'a> Pin<'a> {
    fn new(state: &'a State) -> Self {
        state.pin();
        Pin(state)
    }
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        self.0.unpin();
    }
}
