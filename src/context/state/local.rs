//! The values of local entries, as the thread's state keeps them: owned,
//! or lent by the caller for the life of the install.

use std::any::Any;
use std::mem::ManuallyDrop;
use std::sync::Arc;

/// A local entry's value in the state's `locals`.
///
/// Usually owned: the install holds a reference count of its own. A
/// server that installs the same value around every poll of a request
/// (the tower layer's `RequestInfo`) *lends* it instead: `locals` holds a
/// copy of the caller's `Arc` that counts nothing, so an install and its
/// removal touch no reference count (two locked operations per poll
/// saved). The lender keeps its `Arc` until the install's guard drops,
/// and a removal by that guard takes the copy out without dropping it.
/// Every other way out of `locals` takes a count of its own first, while
/// the lender still holds its `Arc`: a dump that reads the value clones
/// it, and an install removed otherwise (while a `with` borrow runs, by
/// an out-of-order repair, or by the general removal path) is made owned
/// in place before anything is released (`State::own_locals_from`), so a
/// release that panics half-way leaves only owned values behind.
pub(crate) struct LocalValue {
    value: ManuallyDrop<Arc<dyn Any>>,
    owned: bool,
}

impl LocalValue {
    /// A value the install owns.
    #[inline]
    pub(crate) fn owned(value: Arc<dyn Any>) -> LocalValue {
        LocalValue {
            value: ManuallyDrop::new(value),
            owned: true,
        }
    }

    /// A value lent by the caller: `value` is a copy of an `Arc` the
    /// caller keeps, made without counting a reference
    /// (`ptr::read`), and is never dropped through this.
    ///
    /// # Safety
    ///
    /// The caller's `Arc` stays alive until the install this value goes
    /// into is removed (its guard dropped, or the install taken off the
    /// stack by a repair); by then the value has left `locals` or been
    /// made owned ([`make_owned`](LocalValue::make_owned)).
    #[cfg(feature = "http")]
    #[inline]
    pub(crate) unsafe fn lent(value: ManuallyDrop<Arc<dyn Any>>) -> LocalValue {
        LocalValue {
            value,
            owned: false,
        }
    }

    /// The value, as long as this is alive.
    #[inline]
    pub(crate) fn get(&self) -> &Arc<dyn Any> {
        &self.value
    }

    /// Takes a reference count of its own if lent (the lender still holds
    /// its `Arc` at this point): from now on this owns the value.
    #[inline]
    pub(crate) fn make_owned(&mut self) {
        if !self.owned {
            let counted = Arc::clone(&self.value);
            // The lent copy counted nothing: overwritten, not dropped.
            self.value = ManuallyDrop::new(counted);
            self.owned = true;
        }
    }

    /// The value with a reference count of its own: the owned `Arc`
    /// itself, or a new count of a lent one (taken now, while the lender
    /// still holds it).
    #[inline]
    pub(crate) fn into_owned(self) -> Arc<dyn Any> {
        let mut this = ManuallyDrop::new(self);
        if this.owned {
            // SAFETY: owned, and `this` is never used or dropped again.
            unsafe { ManuallyDrop::take(&mut this.value) }
        } else {
            Arc::clone(&this.value)
        }
    }
}

impl Drop for LocalValue {
    #[inline]
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: owned, dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;

    use crate::context::provide_local_lent;

    struct Outer;

    /// A lent value is found like an owned one, counts no reference while
    /// installed, and takes one of its own when its removal must park it
    /// (a `with` borrow is running): the lender may then drop its `Arc`
    /// while the borrow still runs.
    #[test]
    fn a_lent_value_parked_while_a_borrow_runs_outlives_its_lender() {
        let _outer = crate::provide(Outer);
        let lender = Arc::new(String::from("lent"));
        let watch = Arc::downgrade(&lender);
        // The thread's first install of a local value makes room for it
        // (and owns the value then): warm up first.
        // SAFETY: the guard drops at once, before `lender`.
        drop(unsafe { provide_local_lent(&lender, "warming up") });
        crate::with(|_: &Outer| {
            // SAFETY: the guard drops below, before `lender`.
            let guard = unsafe { provide_local_lent(&lender, "a test") };
            assert_eq!(crate::with(|s: &String| s.clone()).unwrap(), "lent");
            assert_eq!(Arc::strong_count(&lender), 1, "lent: no count taken");
            drop(guard);
            assert_eq!(
                Arc::strong_count(&lender),
                2,
                "parked with a count of its own"
            );
            drop(lender);
            assert!(watch.upgrade().is_some(), "the graveyard keeps it");
        })
        .unwrap();
        assert!(watch.upgrade().is_none(), "dropped when the borrow ended");
        assert!(!crate::contains::<String>());
    }

    /// An out-of-order repair that removes a lent value (a guard made
    /// after it was still alive) takes a count of its own before
    /// releasing it: the lender's `Arc` is left as it was.
    #[test]
    fn a_lent_value_removed_by_a_repair_leaves_the_lender_its_count() {
        struct Stray;
        let lender = Arc::new(7_u32);
        // SAFETY: the guards drop before `lender` (the first at once, to
        // warm up, as in the test above).
        drop(unsafe { provide_local_lent(&lender, "warming up") });
        let lent = unsafe { provide_local_lent(&lender, "a test") };
        assert_eq!(Arc::strong_count(&lender), 1, "lent: no count taken");
        let stray = crate::provide(Stray);
        let repaired = catch_unwind(AssertUnwindSafe(|| drop(lent)));
        assert!(repaired.is_err(), "dropping out of order is reported");
        assert_eq!(Arc::strong_count(&lender), 1);
        assert_eq!(*lender, 7);
        assert!(!crate::contains::<u32>() && !crate::contains::<Stray>());
        drop(stray);
    }

    /// A repair whose release panics half-way (a newer install's value
    /// panics in its destructor) leaves the older installs' local values
    /// in `locals` with no slot; a later removal whose range covers them
    /// drops them. A lent one must have been made owned before that
    /// release: its lender may be gone by then. Dropped exactly once,
    /// after the lender.
    #[test]
    fn a_lent_value_left_behind_by_a_panicking_repair_is_owned() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
            }
        }
        struct PanicsOnDrop;
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("a value's destructor panics");
            }
        }
        struct Later;
        let lender = Arc::new(Counted);
        // SAFETY: the guards drop before `lender` (the first at once, to
        // warm up, as in the tests above).
        drop(unsafe { provide_local_lent(&lender, "warming up") });
        let lent = unsafe { provide_local_lent(&lender, "a test") };
        let stray = crate::provide(PanicsOnDrop);
        let repaired = catch_unwind(AssertUnwindSafe(|| drop(lent)));
        assert!(repaired.is_err(), "the repair's release panicked");
        // The stray guard's install went with the repair: its drop finds
        // nothing (its value already ran its destructor).
        std::mem::forget(stray);
        assert_eq!(Arc::strong_count(&lender), 2, "left behind, owned");
        drop(lender);
        assert_eq!(DROPS.load(Ordering::SeqCst), 0, "still held by `locals`");
        // A later local install removed by the general path (it was
        // published) takes every local numbered below its slot.
        let later = crate::provide_local(Later);
        let snapshot = crate::Context::current();
        drop(later);
        drop(snapshot);
        assert_eq!(DROPS.load(Ordering::SeqCst), 1, "dropped once, by `locals`");
    }
}
