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
/// saved). Whatever takes a lent value out of `locals` to keep it (a dump,
/// the graveyard while a `with` borrow runs, an out-of-order repair)
/// takes a count of its own first, while the lender still holds it.
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
    /// The caller's `Arc` stays alive until this `LocalValue` has left
    /// `locals` (the install is removed), so the value it points to does.
    #[cfg(any(feature = "http", feature = "tower"))]
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

#[cfg(all(test, any(feature = "http", feature = "tower")))]
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
            let dump = crate::dump();
            assert_eq!(
                Arc::strong_count(&lender),
                1,
                "a dump counts only while it reads"
            );
            drop(dump);
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
}
