//! What a lookup reads, in a thread-local of its own with no destructor.
//!
//! `State` owns memory (the stack, the frames, the index's table), so its
//! thread-local has a destructor, and every access to it first checks
//! that it is still alive (a byte load, two comparisons). A lookup that
//! finds its type above the floor needs only four words of it: where the
//! index's table is, its mask, the floor, and the pin count. Those live
//! here, in a thread-local with a `const` initialiser and no destructor,
//! which the compiler reads at a fixed offset from the thread pointer
//! with no check at all (docs/design.md, "How it was chosen", item 6,
//! gives the instructions and times this saved).
//!
//! Safety rests on one rule: `table` points into the live table of this
//! thread's `State` index, or is null. The index publishes its table here
//! whenever it allocates one, and `State`'s `Drop` sets it back to null
//! before anything of the state is freed, so a lookup during or after the
//! state's destruction (from another thread-local's destructor) finds
//! nothing here and falls back to `State::try_with`, which fails cleanly.

use std::any::TypeId;
use std::cell::Cell;
use std::ptr;

use crate::context::index::{probe, Slot};

pub(crate) struct Hot {
    /// The thread's type index table (a power-of-two number of slots), or
    /// null before the first install and once the state is destroyed.
    table: Cell<*const Slot>,
    /// The table's length minus one.
    mask: Cell<usize>,
    /// The stack position above the last entered snapshot: installs at or
    /// below it are hidden by that snapshot.
    floor: Cell<u32>,
    /// Twice the number of `with` borrows running on this thread, plus one
    /// unless the state's graveyard holds something (see `State::pin`).
    pins: Cell<usize>,
}

thread_local! {
    static HOT: Hot = const {
        Hot {
            table: Cell::new(ptr::null()),
            mask: Cell::new(0),
            floor: Cell::new(0),
            pins: Cell::new(UNPARKED),
        }
    };
}

/// One pin (see `pins`).
pub(super) const PIN: usize = 2;
/// The bit of `pins` that says the graveyard is empty.
pub(super) const UNPARKED: usize = 1;

/// Runs `f` with this thread's `Hot`: never fails, as it has no
/// destructor.
#[inline(always)]
pub(super) fn hot<R>(f: impl FnOnce(&Hot) -> R) -> R {
    HOT.with(f)
}

impl Hot {
    /// The value of type `id` an install above the floor holds, if any:
    /// the lookup's fast path. `None` means "not here" (the type may still
    /// be in the entered snapshot's frame, or nowhere).
    #[inline(always)]
    pub(super) fn find(&self, id: TypeId) -> Option<*const ()> {
        let table = self.table.get();
        if table.is_null() {
            return None;
        }
        // SAFETY: a non-null `table` is the live table of this thread's
        // index, `mask + 1` slots long (the rule in the module docs), and
        // nothing mutates it while this shared borrow lives: the index is
        // changed only inside `State`'s methods, which run no lookup.
        let live = unsafe { probe(table, self.mask.get(), id) }?;
        (live.height > self.floor.get()).then_some(live.value)
    }

    #[inline(always)]
    pub(super) fn set_table(&self, table: *const Slot, len: usize) {
        self.table.set(table);
        self.mask.set(len.wrapping_sub(1));
    }

    #[inline(always)]
    pub(super) fn floor(&self) -> u32 {
        self.floor.get()
    }

    #[inline(always)]
    pub(super) fn set_floor(&self, floor: u32) {
        self.floor.set(floor);
    }

    #[inline(always)]
    pub(super) fn pins(&self) -> usize {
        self.pins.get()
    }

    #[inline(always)]
    pub(super) fn set_pins(&self, pins: usize) {
        self.pins.set(pins);
    }
}
