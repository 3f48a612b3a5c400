//! Reading the current context.
//!
//! A lookup probes the thread's type index (and, for types not installed
//! since the last entered snapshot, that snapshot's frame map): the cost
//! does not depend on how many entries are installed, and nothing is
//! recorded (provenance is written at install time, never on lookup).

use std::any::TypeId;
use std::panic::Location;
use std::sync::Arc;

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
    match State::find_current(TypeId::of::<T>()) {
        Some(value) => {
            let value = value.cast::<T>().as_ptr();
            // SAFETY: `value` points to the `T` inside a live `Arc`
            // allocation made for a `T` (see `State::find_current`; the key
            // is `TypeId::of::<T>()`, computed from the very `T` that was
            // boxed). Taking one more strong count and wrapping it is
            // `Arc::clone` on the typed `Arc`.
            Ok(unsafe {
                Arc::increment_strong_count(value);
                Arc::from_raw(value)
            })
        }
        None => Err(missing::<T>(Location::caller())),
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
    match State::find_current(TypeId::of::<T>()) {
        Some(value) => {
            // `f` may remove the install that holds the value; the pin
            // parks whatever leaves the stack until `f` has returned.
            let _pin = Pin::new();
            // SAFETY: as in `get`, and the pin keeps the allocation alive.
            Ok(f(unsafe { value.cast::<T>().as_ref() }))
        }
        None => Err(missing::<T>(Location::caller())),
    }
}

/// The error of a failed lookup, out of the hot path.
#[cold]
#[inline(never)]
fn missing<T: ?Sized + 'static>(site: &'static Location<'static>) -> Missing {
    Missing::for_current::<T>(site)
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
    State::find_current(id).is_some()
}

/// Pins the thread state while alive, also when `f` panics.
struct Pin(());

impl Pin {
    #[inline(always)]
    fn new() -> Self {
        State::pin();
        Pin(())
    }
}

impl Drop for Pin {
    #[inline(always)]
    fn drop(&mut self) {
        State::unpin();
    }
}

/// Where the entry a lookup of `id` finds now came from, as a process
/// would tell another one: the caller's account when the entry itself
/// arrived from a process (site and service as received), else its
/// local install site. `None` when no such entry is visible, and for an
/// entry that arrived from a process without a site: its local site is
/// only where this process received it, which says nothing true about
/// where it was installed (and would put this process's source paths on
/// the wire). For the transports that send install sites (an opt-in: it
/// reveals source paths).
#[cfg(feature = "remote")]
pub(crate) fn origin_of(id: TypeId) -> Option<(String, Option<String>)> {
    State::try_with(|state| {
        let entry = state.find_entry(id);
        // SAFETY: a found entry lives while its install is on this
        // thread's stack or its frame is the entered base; nothing is
        // installed or removed before this borrow ends.
        let entry = unsafe { entry.as_ref() }?;
        match entry.origin.as_deref() {
            Some(origin) => Some((origin.site.clone()?, origin.service.clone())),
            None => Some((entry.site.to_string(), None)),
        }
    })
    .flatten()
}
