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
use super::frame::Frame;
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
    let Some(frame) = pin_top() else {
        return Err(Missing::for_current::<T>(site));
    };
    let _unpin = Unpin;
    // SAFETY: `pin_top` pinned the thread state, so the frame is not dropped
    // before `_unpin` runs, even if `f` pops it off the stack.
    let frame = unsafe { &*frame };
    let Some(entry) = frame.visible.get(TypeId::of::<T>()) else {
        return Err(Missing::for_current::<T>(site));
    };
    match &entry.value {
        Value::Shared(value) => match value.downcast_ref::<T>() {
            Some(value) => Ok(f(value)),
            None => Err(Missing::for_current::<T>(site)),
        },
        // Local values live in the thread's table, which `f` may change:
        // hold a clone while `f` runs rather than a borrow of the table.
        Value::Local => match State::try_with(|s| value_of::<T>(s, entry)).flatten() {
            Some(value) => Ok(f(&value)),
            None => Err(Missing::for_current::<T>(site)),
        },
    }
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

/// The value of `entry` as an `Arc<T>`.
pub(crate) fn value_of<T: 'static>(state: &State, entry: &Entry) -> Option<Arc<T>> {
    match &entry.value {
        Value::Shared(value) => downcast_arc::<T>(Arc::clone(value) as Arc<dyn std::any::Any>),
        Value::Local => state.local_value(entry.seq).and_then(downcast_arc::<T>),
    }
}

/// Pins the thread state and returns the current frame, or `None` (and no
/// pin) when the context is empty or the thread is exiting.
fn pin_top() -> Option<*const Frame> {
    State::try_with(|state| {
        let top = state.top_ptr();
        if top.is_null() {
            None
        } else {
            state.pin();
            Some(top)
        }
    })
    .flatten()
}

/// Releases the pin taken by [`pin_top`], also when `f` panics.
struct Unpin;

impl Drop for Unpin {
    fn drop(&mut self) {
        State::try_with(State::unpin);
    }
}
