//! The per-thread state: the stack of active installs and entered
//! snapshots, the type index lookups probe, and the spare frames installs
//! reuse.
//!
//! What each operation touches (docs/design.md explains the choice), and
//! where it lives:
//! - an install (`push.rs`) takes a spare frame (no allocation once the thread is
//!   warm), writes its entries into it, points the type index at them
//!   (saving what each replaces) and pushes a stack slot: O(1) in what is
//!   visible;
//! - a lookup (here) probes the type index; if the newest install of the type is
//!   below the last entered snapshot (or there is none), it probes that
//!   snapshot's frame map instead;
//! - a snapshot (`publish.rs`) publishes the unpublished installs of the current segment
//!   (links each frame to the one below) and clones the top frame's `Arc`;
//!   repeated snapshots only clone;
//! - removing an install (`pop.rs`) restores the index, and gives the frame back to
//!   the spare list unless a snapshot still holds it;
//! - after each change, `dispatch.rs` keeps `tracing`'s default in step.
//!
//! Discipline (as in tracing's dispatcher state):
//! - one `thread_local!` with a `const` initialiser;
//! - every access goes through `try_with`, so guards dropped while the
//!   thread's locals are being torn down do nothing instead of panicking;
//! - the mutable parts are `UnsafeCell`s borrowed only inside the methods
//!   of this module's files, which never run user code (a value's
//!   destructor, a subscriber callback) while such a borrow is alive: what
//!   leaves a cell is moved out first and dropped after the borrow ends.

use std::any::{Any, TypeId};
use std::cell::{Cell, OnceCell, RefCell, UnsafeCell};
use std::mem::MaybeUninit;
use std::panic::Location;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use super::entry::Entry;
use super::frame::{Frame, ThreadInfo};
use super::index::{Slot as IndexSlot, TypeIndex};
use hot::{hot, PIN, UNPARKED};
pub(crate) use local::LocalValue;
#[cfg(feature = "tower")]
pub(crate) use publish::{FrameLocal, RequestEntries};

thread_local! {
    static STATE: State = const { State::new() };
}

/// How many popped install frames a thread keeps for reuse.
const SPARE_FRAMES: usize = 16;

pub(crate) struct State {
    /// One slot per active install (`provide`, `Scope::enter`) or entered
    /// snapshot (`Context::enter`, a polled wrapped future), oldest first.
    stack: UnsafeCell<Vec<Slot>>,
    /// For each type installed on this thread, its newest live install.
    /// Its table is also published in `hot`, for lookups.
    index: UnsafeCell<TypeIndex>,
    /// The snapshot entered last (the frame of the topmost enter slot),
    /// null when none is or it was empty.
    base: Cell<*const Frame>,
    // The stack position above that enter slot (installs below it are
    // hidden by the entered snapshot) is `hot`'s floor.
    /// Private install frames ready for reuse.
    spare: UnsafeCell<Vec<Arc<Frame>>>,
    /// Request frames of the tower layer whose request ended, kept whole
    /// (their entries in place, each value unique) for the next request
    /// to write its values into (see `State::publish_over_current`).
    #[cfg(feature = "tower")]
    spare_requests: UnsafeCell<Vec<Arc<Frame>>>,
    /// Values of local entries, with their sequence numbers, in install
    /// order: kept here, not in the (shareable) frames, as they need not
    /// be `Send`.
    locals: UnsafeCell<Vec<(u64, LocalValue)>>,
    /// Source of slot ids and sequence numbers, unique on this thread.
    next_seq: Cell<u64>,
    /// What leaves the stack while `with` borrows run (`hot`'s pins count
    /// them), parked here instead of being dropped, so the value a borrow
    /// points into stays alive.
    graveyard: RefCell<Vec<Parked>>,
    thread: OnceCell<Arc<ThreadInfo>>,
    /// Address of the `tracing::Dispatch` value visible now (0 if none).
    want_dispatch: Cell<usize>,
    /// The `tracing` default milieu set, and for which address.
    applied_dispatch: RefCell<Option<tracing::dispatcher::DefaultGuard>>,
    applied: Cell<usize>,
}

/// One active install or entered snapshot.
///
/// Pushing an enter slot changes the base, the floor and the dispatch;
/// pushing an install changes the dispatch only if it has a `Dispatch`
/// entry. Those slots save what they change (`restores`), the others
/// leave `saved` unwritten: the fewer stores, the cheaper an install.
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) site: &'static Location<'static>,
    /// An install's frame (always present), or the entered snapshot's top
    /// frame (`None` for an empty snapshot).
    pub(crate) frame: Option<Arc<Frame>>,
    kind: SlotKind,
    /// Whether the install has local entries (in the state's `locals`,
    /// numbered between the slot below's id and this one's).
    has_locals: bool,
    /// Whether `saved` is written, to be restored when the slot goes.
    restores: bool,
    saved: MaybeUninit<Saved>,
}

impl Slot {
    /// The lowest floor under which this slot, at stack position `at`, is
    /// not hidden by a context entered after it: its position, or for an
    /// enter slot the floor it set itself (one above). A floor above that
    /// means a context entered without a slot is current over it.
    #[inline(always)]
    fn height_seen(&self, at: usize) -> usize {
        at + usize::from(self.kind == SlotKind::Enter)
    }
}

/// The dispatch address, base and floor before a slot that changed them.
#[derive(Clone, Copy)]
struct Saved {
    dispatch: usize,
    base: *const Frame,
    floor: u32,
}

/// What [`State::enter_kept`] changed, for [`State::leave_kept`] to
/// restore: the frame entered stays with its caller, which pushes no
/// slot, so this is kept by the caller's guard instead of on the stack.
#[cfg(feature = "tower")]
pub(crate) struct Kept {
    saved: Saved,
    /// The stack's length at the entry, which is the floor while entered.
    height: u32,
    /// The id of the slot below the floor then (0 if none): if it is no
    /// longer there, an out-of-order removal went through the entry.
    below: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    /// An install whose frame nothing outside this thread has seen.
    Private,
    /// An install whose frame has been handed out (it is immutable now).
    Published,
    /// An entered snapshot.
    Enter,
}

/// Something removed while a `with` borrow was running, kept (only to be
/// dropped) until it ends.
#[allow(dead_code)]
enum Parked {
    Frame(Arc<Frame>),
    Local(Arc<dyn Any>),
}

mod dispatch;
mod hot;
mod local;
mod pop;
mod publish;
mod push;

impl State {
    const fn new() -> Self {
        State {
            stack: UnsafeCell::new(Vec::new()),
            index: UnsafeCell::new(TypeIndex::publishing(publish_index_table)),
            base: Cell::new(ptr::null()),
            spare: UnsafeCell::new(Vec::new()),
            #[cfg(feature = "tower")]
            spare_requests: UnsafeCell::new(Vec::new()),
            locals: UnsafeCell::new(Vec::new()),
            next_seq: Cell::new(1),
            graveyard: RefCell::new(Vec::new()),
            thread: OnceCell::new(),
            want_dispatch: Cell::new(0),
            applied_dispatch: RefCell::new(None),
            applied: Cell::new(0),
        }
    }

    /// Runs `f` with this thread's state, or returns `None` while the
    /// thread's locals are being destroyed.
    #[inline]
    pub(crate) fn try_with<R>(f: impl FnOnce(&State) -> R) -> Option<R> {
        STATE.try_with(f).ok()
    }

    pub(crate) fn next_seq(&self) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        seq
    }

    pub(crate) fn thread_info(&self) -> Arc<ThreadInfo> {
        Arc::clone(self.thread_ref())
    }

    pub(super) fn thread_ref(&self) -> &Arc<ThreadInfo> {
        self.thread
            .get_or_init(|| Arc::new(ThreadInfo::of_current()))
    }

    /// Address of the value of type `id` visible now on this thread (inside
    /// its `Arc`), if any. Valid until the stack changes (or, while pinned,
    /// until the pins are released).
    ///
    /// The usual hit, an install above the floor, reads only `hot` (no
    /// liveness check of the state's thread-local); the rest asks the
    /// entered snapshot's frame, out of line.
    #[inline(always)]
    pub(crate) fn find_current(id: TypeId) -> Option<NonNull<()>> {
        match hot(|hot| hot.find(id)) {
            // SAFETY: a live install's value is the address inside its
            // `Arc` (never null): only `LiveRef::NONE`, height 0, holds
            // null, and height 0 is never above the floor. Saying so
            // spares the callers a test.
            Some(value) => Some(unsafe { NonNull::new_unchecked(value.cast_mut()) }),
            None => State::find_in_current_base(id),
        }
    }

    /// `find_current` when the index has no live install of `id` above the
    /// floor: the entered snapshot's frame, if the state is alive.
    #[inline(never)]
    fn find_in_current_base(id: TypeId) -> Option<NonNull<()>> {
        State::try_with(|state| state.find_in_base(id)).flatten()
    }

    #[inline]
    fn find_in_base(&self, id: TypeId) -> Option<NonNull<()>> {
        // SAFETY: the base is the frame of the topmost enter slot, which
        // keeps it alive while it is the base.
        let base = unsafe { self.base.get().as_ref() }?;
        NonNull::new(base.find_entered(id)?.value.cast_mut())
    }

    /// The entry a lookup of `id` finds now (for dumps).
    pub(crate) fn find_entry(&self, id: TypeId) -> *const Entry {
        // SAFETY: a shared borrow of the index, ending with this function;
        // nothing here runs user code or changes the index.
        let index = unsafe { &*self.index.get() };
        if let Some(live) = index.get(id) {
            if live.height > State::floor() {
                return live.entry;
            }
        }
        // SAFETY: as in `find_in_base`.
        match unsafe { self.base.get().as_ref() } {
            Some(base) => base
                .find_entered(id)
                .map_or(ptr::null(), |found| found.entry),
            None => ptr::null(),
        }
    }

    /// The value of local entry `seq` of `frame`, if that install is live
    /// on this thread.
    pub(crate) fn local_value(&self, frame: &Frame, seq: u64) -> Option<Arc<dyn Any>> {
        // Sequence numbers are per thread: only this thread's frames match.
        if !Arc::ptr_eq(&frame.data().thread, self.thread_ref()) {
            return None;
        }
        // SAFETY: a shared borrow inside this method only.
        let locals = unsafe { &*self.locals.get() };
        locals
            .iter()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, value)| Arc::clone(value.get()))
    }

    /// How many installs and entered snapshots are active on this thread.
    #[cfg(all(test, feature = "tower"))]
    pub(crate) fn stack_len(&self) -> usize {
        // SAFETY: a shared borrow inside this method only.
        unsafe { &*self.stack.get() }.len()
    }

    /// The stack position above the last entered snapshot.
    #[inline(always)]
    pub(super) fn floor() -> u32 {
        hot(|hot| hot.floor())
    }

    #[inline(always)]
    pub(super) fn set_floor(floor: u32) {
        hot(|hot| hot.set_floor(floor));
    }

    /// Marks a `with` borrow as running on this thread (see
    /// `graveyard`). `hot`'s pins are twice the number of borrows, plus
    /// one unless the graveyard holds something: one word for both, so an
    /// unpin is one subtraction, which reaches zero exactly when the last
    /// borrow ends with something parked.
    #[inline(always)]
    pub(crate) fn pin() {
        hot(|hot| hot.set_pins(hot.pins() + PIN));
    }

    #[inline(always)]
    pub(crate) fn unpin() {
        let pins = hot(|hot| {
            let pins = hot.pins() - PIN;
            hot.set_pins(pins);
            pins
        });
        // No borrow left, and something parked.
        if pins == 0 {
            State::drop_current_parked();
        }
    }

    /// Whether a `with` borrow is running (what leaves the stack must be
    /// parked).
    #[inline]
    pub(super) fn pinned(&self) -> bool {
        hot(|hot| hot.pins()) >= PIN
    }

    /// [`pinned`](State::pinned), or a slot whose
    /// [`height_seen`](Slot::height_seen) is `seen` is below the floor: a
    /// context entered without a slot (`enter_kept`) is current above it.
    /// Either sends a guard's removal off the fast path; one access to
    /// `hot` for both.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(super) fn pinned_or_entered_above(&self, seen: usize) -> bool {
        hot(|hot| hot.pins() >= PIN || seen < hot.floor() as usize)
    }

    /// Records that the graveyard holds something.
    pub(super) fn mark_parked(&self) {
        hot(|hot| hot.set_pins(hot.pins() & !UNPARKED));
    }

    #[cold]
    #[inline(never)]
    fn drop_current_parked() {
        // Once the state is gone, so is its graveyard (dropped with it).
        if State::try_with(State::drop_parked).is_none() {
            hot(|hot| hot.set_pins(UNPARKED));
        }
    }

    fn drop_parked(&self) {
        hot(|hot| hot.set_pins(UNPARKED));
        {
            let parked = std::mem::take(&mut *self.graveyard.borrow_mut());
            // Newest first, as they were installed in the other order.
            for thing in parked.into_iter().rev() {
                drop(thing);
            }
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // Before any field is dropped (a value's destructor may look
        // something up): from now on lookups find nothing in the index,
        // whose table and installs are about to be freed (`hot.rs`).
        hot(|hot| {
            hot.set_table(ptr::null(), 0);
            hot.set_floor(0);
        });
    }
}

/// Where the thread's index keeps its table, for `hot`.
fn publish_index_table(table: *const IndexSlot, len: usize) {
    hot(|hot| hot.set_table(table, len));
}
