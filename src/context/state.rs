//! The per-thread state: the stack of active installs and entered
//! snapshots, the type index lookups probe, and the spare frames installs
//! reuse.
//!
//! What each operation touches (docs/design.md has the measurements):
//! - an install takes a spare frame (no allocation once the thread is
//!   warm), writes its entries into it, points the type index at them
//!   (saving what each replaces) and pushes a stack slot: O(1) in what is
//!   visible;
//! - a lookup probes the type index; if the newest install of the type is
//!   below the last entered snapshot (or there is none), it probes that
//!   snapshot's frame map instead;
//! - a snapshot publishes the unpublished installs of the current segment
//!   (links each frame to the one below) and clones the top frame's `Arc`;
//!   repeated snapshots only clone;
//! - removing an install restores the index, and gives the frame back to
//!   the spare list unless a snapshot still holds it.
//!
//! Discipline (as in tracing's dispatcher state):
//! - one `thread_local!` with a `const` initialiser;
//! - every access goes through `try_with`, so guards dropped while the
//!   thread's locals are being torn down do nothing instead of panicking;
//! - the mutable parts are `UnsafeCell`s borrowed only inside the methods
//!   below, which never run user code (a value's destructor, a subscriber
//!   callback) while such a borrow is alive: what leaves the state is
//!   returned to the caller and dropped after.

use std::any::{Any, TypeId};
use std::cell::{Cell, OnceCell, RefCell, UnsafeCell};
use std::panic::Location;
use std::ptr;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use super::entry::{Entry, LiveRef, Pending, PendingValue, Value};
use super::frame::{Frame, FrameKind, ThreadInfo};
use super::index::TypeIndex;

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
    index: UnsafeCell<TypeIndex>,
    /// The snapshot entered last (the frame of the topmost enter slot),
    /// null when none is or it was empty.
    base: Cell<*const Frame>,
    /// The stack position above that enter slot: installs below it are
    /// hidden by the entered snapshot.
    floor: Cell<u32>,
    /// Private install frames ready for reuse.
    spare: UnsafeCell<Vec<Arc<Frame>>>,
    /// Values of local entries, with their sequence numbers, in install
    /// order: kept here, not in the (shareable) frames, as they need not
    /// be `Send`.
    locals: UnsafeCell<Vec<(u64, Arc<dyn Any>)>>,
    /// Source of slot ids and sequence numbers, unique on this thread.
    next_seq: Cell<u64>,
    /// How many `with` borrows are running on this thread. While non-zero,
    /// what leaves the stack is parked in `graveyard` instead of being
    /// dropped, so the value a borrow points into stays alive.
    pins: Cell<usize>,
    graveyard: RefCell<Vec<Parked>>,
    /// Whether `graveyard` holds anything (saves a borrow on every unpin).
    parked: Cell<bool>,
    thread: OnceCell<Arc<ThreadInfo>>,
    /// Address of the `tracing::Dispatch` value visible now (0 if none).
    want_dispatch: Cell<usize>,
    /// The `tracing` default milieu set, and for which address.
    applied_dispatch: RefCell<Option<tracing::dispatcher::DefaultGuard>>,
    applied: Cell<usize>,
}

/// One active install or entered snapshot.
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) site: &'static Location<'static>,
    kind: SlotKind,
    /// An install's frame (always present), or the entered snapshot's top
    /// frame (`None` for an empty snapshot).
    pub(crate) frame: Option<Arc<Frame>>,
    /// Whether the install has local entries (in the state's `locals`,
    /// numbered between the slot below's id and this one's).
    has_locals: bool,
    /// The dispatch address before this slot, restored when it goes.
    saved_dispatch: usize,
    /// Enter slots: the base and floor before this slot.
    saved_base: *const Frame,
    saved_floor: u32,
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

/// An entry's provenance on its way into a frame.
struct NewEntry {
    type_id: TypeId,
    type_name: &'static str,
    site: &'static Location<'static>,
    reason: Option<std::borrow::Cow<'static, str>>,
    debug: Option<super::entry::DebugFn>,
}

/// What [`State::pop_top`] hands back.
struct Popping {
    frame: Option<Arc<Frame>>,
    kind: SlotKind,
    has_locals: bool,
    below: u64,
}

/// What a removed install leaves to release, outside every borrow of the
/// state (values' destructors may use the context).
struct Release {
    pub(crate) frame: Option<Arc<Frame>>,
    /// The frame is an install's: reuse it if no snapshot holds it.
    install: bool,
    /// Sequence numbers of the local values to drop (youngest first).
    locals: std::ops::Range<u64>,
}

/// Something removed while a `with` borrow was running, kept (only to be
/// dropped) until it ends.
#[allow(dead_code)]
enum Parked {
    Frame(Arc<Frame>),
    Local(Arc<dyn Any>),
}

/// What popping a slot found.
enum Popped {
    /// The slot was on top, as it should be.
    InOrder(Release),
    /// Slots installed after this one were still active; all were removed
    /// (this one first in the vector, the former top last).
    OutOfOrder(Vec<Slot>),
    /// The slot had already been removed by an earlier out-of-order repair
    /// (which reported it).
    Gone,
}

impl State {
    const fn new() -> Self {
        State {
            stack: UnsafeCell::new(Vec::new()),
            index: UnsafeCell::new(TypeIndex::new()),
            base: Cell::new(ptr::null()),
            floor: Cell::new(0),
            spare: UnsafeCell::new(Vec::new()),
            locals: UnsafeCell::new(Vec::new()),
            next_seq: Cell::new(1),
            pins: Cell::new(0),
            graveyard: RefCell::new(Vec::new()),
            parked: Cell::new(false),
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

    fn thread_ref(&self) -> &Arc<ThreadInfo> {
        self.thread
            .get_or_init(|| Arc::new(ThreadInfo::of_current()))
    }

    // -----------------------------------------------------------------
    // Lookups
    // -----------------------------------------------------------------

    /// Address of the value of type `id` visible now (inside its `Arc`),
    /// or null. Valid until the stack changes (or, while pinned, until the
    /// pins are released).
    #[inline]
    pub(crate) fn find(&self, id: TypeId) -> *const () {
        // SAFETY: no mutable borrow of the index is alive (they live only
        // inside the methods below, which call no user code meanwhile).
        let index = unsafe { &*self.index.get() };
        if let Some(live) = index.get(id) {
            if !live.value.is_null() && live.depth >= self.floor.get() {
                return live.value;
            }
        }
        self.find_in_base(id)
    }

    #[inline]
    fn find_in_base(&self, id: TypeId) -> *const () {
        // SAFETY: the base is the frame of the topmost enter slot, which
        // keeps it alive while it is the base.
        match unsafe { self.base.get().as_ref() } {
            Some(base) => base.map().get(id).map_or(ptr::null(), |found| found.value),
            None => ptr::null(),
        }
    }

    /// The entry a lookup of `id` finds now (for dumps).
    pub(crate) fn find_entry(&self, id: TypeId) -> *const Entry {
        // SAFETY: as in `find`.
        let index = unsafe { &*self.index.get() };
        if let Some(live) = index.get(id) {
            if !live.value.is_null() && live.depth >= self.floor.get() {
                return live.entry;
            }
        }
        // SAFETY: as in `find_in_base`.
        match unsafe { self.base.get().as_ref() } {
            Some(base) => base.map().get(id).map_or(ptr::null(), |found| found.entry),
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
            .map(|(_, value)| Arc::clone(value))
    }

    #[inline]
    pub(crate) fn pin(&self) {
        self.pins.set(self.pins.get() + 1);
    }

    #[inline]
    pub(crate) fn unpin(&self) {
        let pins = self.pins.get() - 1;
        self.pins.set(pins);
        if pins == 0 && self.parked.get() {
            self.drop_parked();
        }
    }

    #[cold]
    fn drop_parked(&self) {
        self.parked.set(false);
        {
            let parked = std::mem::take(&mut *self.graveyard.borrow_mut());
            // Newest first, as they were installed in the other order.
            for thing in parked.into_iter().rev() {
                drop(thing);
            }
        }
    }

    // -----------------------------------------------------------------
    // Installs
    // -----------------------------------------------------------------

    /// Installs `pending` as one frame; returns the slot id to pop it with.
    pub(crate) fn install(
        &self,
        pending: Vec<Pending>,
        reason: Option<&std::borrow::Cow<'static, str>>,
        site: &'static Location<'static>,
    ) -> u64 {
        let frame = self.take_spare();
        // SAFETY: a spare frame is private to this thread (its count came
        // back to one before it was put there), and so is a new one; the
        // borrow ends with this method.
        let data = unsafe { frame.data_mut() };
        // Reserved first, so the entries' addresses the index keeps do not
        // move while the rest are pushed.
        data.entries.reserve(pending.len());
        let mut has_locals = false;
        let mut dispatch = self.want_dispatch.get();
        for p in pending {
            let entry = NewEntry {
                type_id: p.type_id,
                type_name: p.type_name,
                site: p.site,
                reason: p.reason.or_else(|| reason.cloned()),
                debug: p.debug,
            };
            self.add_entry(data, entry, p.value, &mut has_locals, &mut dispatch);
        }
        self.push_install(frame, site, has_locals, dispatch)
    }

    /// [`install`](State::install) for one shared entry installed at
    /// `site` (`provide`, `provide_arc`): the same frame, without the
    /// vector, the arguments passed one by one rather than as a struct.
    #[inline]
    pub(crate) fn install_shared(
        &self,
        type_id: TypeId,
        type_name: &'static str,
        value: Arc<dyn Any + Send + Sync>,
        site: &'static Location<'static>,
    ) -> u64 {
        let frame = self.take_spare();
        // SAFETY: as in `install`.
        let data = unsafe { frame.data_mut() };
        let mut has_locals = false;
        let mut dispatch = self.want_dispatch.get();
        let entry = NewEntry {
            type_id,
            type_name,
            site,
            reason: None,
            debug: None,
        };
        self.add_entry(
            data,
            entry,
            PendingValue::Shared(value),
            &mut has_locals,
            &mut dispatch,
        );
        self.push_install(frame, site, has_locals, dispatch)
    }

    /// A private frame to install into: a spare one, or a new one while
    /// the thread is warming up.
    #[inline]
    fn take_spare(&self) -> Arc<Frame> {
        // SAFETY: the borrow ends with this method.
        let spare = unsafe { &mut *self.spare.get() };
        match spare.pop() {
            Some(frame) => frame,
            None => self.new_frame(),
        }
    }

    /// A new install frame, while the thread warms up (or installs deeper
    /// than it has spare frames for).
    #[cold]
    fn new_frame(&self) -> Arc<Frame> {
        Arc::new(Frame::blank(self.thread_info()))
    }

    /// Appends one entry to a private frame and points the index at it.
    #[inline(always)]
    fn add_entry(
        &self,
        data: &mut super::frame::FrameData,
        new: NewEntry,
        value: PendingValue,
        has_locals: &mut bool,
        dispatch: &mut usize,
    ) {
        let seq = self.next_seq();
        let NewEntry {
            type_id,
            type_name,
            site,
            reason,
            debug,
        } = new;
        let (value, address) = match value {
            PendingValue::Shared(v) => {
                let address = Arc::as_ptr(&v).cast::<()>();
                (Value::Shared(v), address)
            }
            PendingValue::Local(v) => {
                let address = Arc::as_ptr(&v).cast::<()>();
                // SAFETY: the borrow ends with this block.
                unsafe { &mut *self.locals.get() }.push((seq, v));
                *has_locals = true;
                (Value::Local, address)
            }
        };
        if type_id == TypeId::of::<tracing::Dispatch>() {
            *dispatch = address as usize;
        }
        // SAFETY: the borrows end with this method.
        let (stack, index) = unsafe { (&*self.stack.get(), &mut *self.index.get()) };
        let live = LiveRef {
            value: address,
            entry: data.entries.as_ptr().wrapping_add(data.entries.len()),
            depth: stack.len() as u32,
        };
        let shadowed = index.replace(type_id, live.value, live.entry, live.depth);
        // Written where `live.entry` points, field by field (see
        // `push_slot`). The caller reserved room for every entry of the
        // frame, or this is the frame's only entry: either way nothing
        // points into the vector if reserving here moves it.
        let entries = &mut data.entries;
        entries.reserve(1);
        let at = entries.len();
        // SAFETY: within the reserved capacity, initialised before the
        // length covers it.
        unsafe {
            let to = entries.as_mut_ptr().add(at);
            ptr::addr_of_mut!((*to).type_id).write(type_id);
            ptr::addr_of_mut!((*to).type_name).write(type_name);
            ptr::addr_of_mut!((*to).value).write(value);
            ptr::addr_of_mut!((*to).site).write(site);
            ptr::addr_of_mut!((*to).seq).write(seq);
            ptr::addr_of_mut!((*to).reason).write(reason);
            ptr::addr_of_mut!((*to).debug).write(debug);
            ptr::addr_of_mut!((*to).shadowed.value).write(shadowed.value);
            ptr::addr_of_mut!((*to).shadowed.entry).write(shadowed.entry);
            ptr::addr_of_mut!((*to).shadowed.depth).write(shadowed.depth);
            entries.set_len(at + 1);
            if !ptr::eq(to, live.entry) {
                // Reserving moved the vector: point the index at the entry.
                index.replace(type_id, live.value, to, live.depth);
            }
        }
    }

    /// Pushes the slot of a filled private frame.
    #[inline]
    fn push_install(
        &self,
        frame: Arc<Frame>,
        site: &'static Location<'static>,
        has_locals: bool,
        dispatch: usize,
    ) -> u64 {
        // SAFETY: still private; the borrow ends with this block.
        match unsafe { &mut frame.data_mut().kind } {
            // A recycled install frame: only the site changes.
            FrameKind::Installed { site: old } => *old = site,
            kind => *kind = FrameKind::Installed { site },
        }
        // Numbered after its entries, as dumps have always shown them.
        let id = self.next_seq();
        self.push_slot(Slot {
            id,
            site,
            kind: SlotKind::Private,
            frame: Some(frame),
            has_locals,
            saved_dispatch: self.want_dispatch.get(),
            saved_base: ptr::null(),
            saved_floor: 0,
        });
        self.want_dispatch.set(dispatch);
        self.sync_dispatch();
        id
    }

    /// Makes `frame` (a published snapshot's frame) current; returns the
    /// slot id to pop it with.
    #[inline(always)]
    pub(crate) fn enter(&self, frame: Option<Arc<Frame>>, site: &'static Location<'static>) -> u64 {
        if let Some(frame) = frame.as_deref() {
            self.record_arrival(frame);
        }
        self.enter_again(frame, site)
    }

    /// Records this thread as the one a hop arrived on, if it is the
    /// first to enter the hop's frame.
    #[inline]
    pub(crate) fn record_arrival(&self, frame: &Frame) {
        if let FrameKind::Hop(hop) = &frame.data().kind {
            hop.arrived.get_or_init(|| self.thread_info());
        }
    }

    /// [`enter`](State::enter) for a frame whose arrival is recorded
    /// already (a wrapped future's polls after the first).
    #[inline(always)]
    pub(crate) fn enter_again(
        &self,
        frame: Option<Arc<Frame>>,
        site: &'static Location<'static>,
    ) -> u64 {
        let id = self.next_seq();
        let base = frame.as_deref().map_or(ptr::null(), |f| f as *const Frame);
        let dispatch = frame.as_deref().map_or(0, |f| f.data().dispatch);
        let depth = self.push_slot(Slot {
            id,
            site,
            kind: SlotKind::Enter,
            frame,
            has_locals: false,
            saved_dispatch: self.want_dispatch.get(),
            saved_base: self.base.get(),
            saved_floor: self.floor.get(),
        });
        self.base.set(base);
        self.floor.set(depth + 1);
        self.want_dispatch.set(dispatch);
        self.sync_dispatch();
        id
    }

    /// Pushes `slot`; returns its stack position.
    ///
    /// The slot is written field by field into reserved room, and
    /// [`pop_top`](State::pop_top) reads it back the same way: moving the
    /// whole struct made the compiler build it on the stack and copy it
    /// with wide loads right after narrow stores, which stalled on store
    /// forwarding and cost more than the rest of an install
    /// (docs/design.md has the numbers).
    #[inline(always)]
    fn push_slot(&self, slot: Slot) -> u32 {
        // SAFETY: the borrow ends with this method; `at` is within the
        // reserved capacity and initialised before the length covers it.
        unsafe {
            let stack = &mut *self.stack.get();
            stack.reserve(1);
            let at = stack.len();
            let to = stack.as_mut_ptr().add(at);
            let Slot {
                id,
                site,
                kind,
                frame,
                has_locals,
                saved_dispatch,
                saved_base,
                saved_floor,
            } = slot;
            ptr::addr_of_mut!((*to).id).write(id);
            ptr::addr_of_mut!((*to).site).write(site);
            ptr::addr_of_mut!((*to).kind).write(kind);
            ptr::addr_of_mut!((*to).frame).write(frame);
            ptr::addr_of_mut!((*to).has_locals).write(has_locals);
            ptr::addr_of_mut!((*to).saved_dispatch).write(saved_dispatch);
            ptr::addr_of_mut!((*to).saved_base).write(saved_base);
            ptr::addr_of_mut!((*to).saved_floor).write(saved_floor);
            stack.set_len(at + 1);
            at as u32
        }
    }

    /// Pops the top slot if its id is `id`, undoing what pushing it
    /// changed; returns what the caller must release: the slot's frame,
    /// whether it is an install's, whether it had local values, and the id
    /// of the slot below (0 if none).
    ///
    /// The slot is read in place, field by field, never moved as a whole
    /// (see [`push_slot`](State::push_slot)).
    #[inline(always)]
    fn pop_top(&self, id: u64) -> Option<Popping> {
        // SAFETY: the borrow ends with this method (`undo_in_place` touches
        // other cells only); the top slot's frame is read out once, then
        // the length no longer covers the slot.
        unsafe {
            let stack = &mut *self.stack.get();
            let at = stack.len().checked_sub(1)?;
            let top = &*stack.as_ptr().add(at);
            if top.id != id {
                return None;
            }
            self.undo(top);
            let popping = Popping {
                frame: ptr::read(&top.frame),
                kind: top.kind,
                has_locals: top.has_locals,
                below: match at.checked_sub(1) {
                    Some(below) => (*stack.as_ptr().add(below)).id,
                    None => 0,
                },
            };
            stack.set_len(at);
            Some(popping)
        }
    }

    /// Drops the guard of slot `id`: removes the slot and releases what it
    /// held. If slots above it were still active, they are removed too and
    /// returned (oldest first) for the caller to report and dispose of.
    ///
    /// Everything happens within this one access to the thread's state:
    /// the borrows of its cells end before anything that may run user code
    /// (a value's destructor, a subscriber callback), which may itself use
    /// the context.
    #[inline]
    pub(crate) fn drop_guard(&self, id: u64) -> Option<Vec<Slot>> {
        let Some(popped) = self.pop_top(id) else {
            return self.drop_guard_out_of_order(id);
        };
        self.sync_dispatch();
        self.release_popped(id, popped);
        None
    }

    #[cold]
    fn drop_guard_out_of_order(&self, id: u64) -> Option<Vec<Slot>> {
        match self.pop(id) {
            Popped::OutOfOrder(slots) => Some(slots),
            Popped::InOrder(released) => {
                release(released);
                None
            }
            // Removed by an earlier repair, which reported it.
            Popped::Gone => None,
        }
    }

    /// Pops the enter slot `id` of a wrapped future's poll, putting the
    /// future's frame back into `frame`. Returns `false`, leaving the stack
    /// as it is, unless that slot is on top (see
    /// [`leave_out_of_order`](State::leave_out_of_order)).
    #[inline(always)]
    pub(crate) fn leave(&self, id: u64, frame: &mut Option<Arc<Frame>>) -> bool {
        // SAFETY: the borrow ends before `sync_dispatch`; the top slot's
        // frame is read out once, then the length no longer covers it.
        unsafe {
            let stack = &mut *self.stack.get();
            let Some(at) = stack.len().checked_sub(1) else {
                return false;
            };
            let top = &*stack.as_ptr().add(at);
            if top.id != id {
                return false;
            }
            self.want_dispatch.set(top.saved_dispatch);
            self.base.set(top.saved_base);
            self.floor.set(top.saved_floor);
            *frame = ptr::read(&top.frame);
            stack.set_len(at);
        }
        self.sync_dispatch();
        true
    }

    /// The rest of [`leave`](State::leave): the removed slots (oldest
    /// first, the poll's own first) when slots above it were still active;
    /// `None` when the poll's slot was already removed by a repair.
    #[cold]
    pub(crate) fn leave_out_of_order(&self, id: u64) -> Option<Vec<Slot>> {
        match self.pop(id) {
            Popped::OutOfOrder(slots) => Some(slots),
            // Not on top was the reason to come here; kept total.
            Popped::InOrder(released) => {
                release(released);
                None
            }
            Popped::Gone => None,
        }
    }

    /// Releases what [`pop_top`](State::pop_top) returned for slot `id`
    /// (see [`drop_guard`](State::drop_guard)).
    #[inline]
    fn release_popped(&self, id: u64, popped: Popping) {
        let Popping {
            frame,
            kind,
            has_locals,
            below,
        } = popped;
        if self.pins.get() > 0 {
            let locals = if has_locals { below + 1..id } else { 0..0 };
            self.park(frame, &locals);
            return;
        }
        if let Some(frame) = frame {
            match kind {
                SlotKind::Private => self.recycle_private(frame),
                SlotKind::Published => self.recycle(frame),
                SlotKind::Enter => drop(frame),
            }
        }
        if has_locals {
            let locals = below + 1..id;
            while let Some(local) = self.take_local(&locals) {
                drop(local);
            }
        }
    }

    /// Empties an install's frame and keeps it for reuse, if the caller
    /// held the last reference. Runs no user code while a cell of the
    /// state is borrowed (the values' destructors run in between).
    #[inline]
    fn recycle(&self, frame: Arc<Frame>) {
        // No weak references to frames exist, so a count of one means the
        // caller holds the only one; the fence pairs with the release
        // decrement of the last other holder, as in `Arc`'s own drop, so
        // that holder's reads happen before the writes below.
        if Arc::strong_count(&frame) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the only reference, and nothing into it is alive (the
        // index no longer points here).
        let data = unsafe { frame.data_mut() };
        let parent = data.parent.take();
        Frame::reset_map(data);
        drop(parent);
        self.recycle_private(frame);
    }

    /// [`recycle`](State::recycle) for a frame that was never published:
    /// only its slot ever held it (snapshots, parent links and maps are
    /// made at publication), so it is unique, has no parent and no map.
    #[inline]
    fn recycle_private(&self, frame: Arc<Frame>) {
        // SAFETY: unique and unreachable, as said above.
        let data = unsafe { frame.data_mut() };
        // Values' destructors may use the context: no cell is borrowed
        // here, and this frame is unreachable.
        data.entries.clear();
        self.keep_spare(frame);
    }

    /// Removes the slot `id` (and, if it is not on top, every slot above
    /// it), restoring the index, base and dispatch they changed. The
    /// caller releases what is returned ([`release`], [`dispose`]).
    #[inline]
    fn pop(&self, id: u64) -> Popped {
        let popped = {
            // SAFETY: borrows end before `sync_dispatch` (which may run
            // subscriber code) and nothing in between runs user code.
            let stack = unsafe { &mut *self.stack.get() };
            match stack.last() {
                Some(slot) if slot.id == id => match stack.pop() {
                    Some(slot) => {
                        self.undo(&slot);
                        let below = stack.last().map_or(0, |s| s.id);
                        Popped::InOrder(self.release_or_park(slot, below))
                    }
                    None => Popped::Gone,
                },
                _ => match stack.iter().rposition(|slot| slot.id == id) {
                    Some(at) => {
                        let slots: Vec<Slot> = stack.drain(at..).collect();
                        for slot in slots.iter().rev() {
                            self.undo(slot);
                        }
                        Popped::OutOfOrder(slots)
                    }
                    None => Popped::Gone,
                },
            }
        };
        self.sync_dispatch();
        popped
    }

    /// What the caller must release for a popped slot; while a `with`
    /// borrow runs, everything is parked instead and nothing is returned.
    #[inline]
    fn release_or_park(&self, slot: Slot, below: u64) -> Release {
        let locals = if slot.has_locals {
            below + 1..slot.id
        } else {
            0..0
        };
        let install = slot.kind != SlotKind::Enter;
        if self.pins.get() == 0 {
            return Release {
                frame: slot.frame,
                install,
                locals,
            };
        }
        if !install {
            // An entered snapshot's frame goes back to its owner (a
            // wrapped future keeps it; a guard's drop parks it, see
            // `release`).
            return Release {
                frame: slot.frame,
                install,
                locals,
            };
        }
        self.park(slot.frame, &locals);
        Release {
            frame: None,
            install,
            locals: 0..0,
        }
    }

    #[cold]
    fn park(&self, frame: Option<Arc<Frame>>, locals: &std::ops::Range<u64>) {
        let mut graveyard = self.graveyard.borrow_mut();
        graveyard.extend(frame.map(Parked::Frame));
        while let Some(local) = self.take_local(locals) {
            graveyard.push(Parked::Local(local));
        }
        self.parked.set(true);
    }

    /// Removes one local value numbered in `seqs` (the newest); the caller
    /// drops it.
    fn take_local(&self, seqs: &std::ops::Range<u64>) -> Option<Arc<dyn Any>> {
        if seqs.is_empty() {
            return None;
        }
        // SAFETY: borrow ends with this method; no user code runs.
        let locals = unsafe { &mut *self.locals.get() };
        let at = locals.iter().rposition(|(seq, _)| seqs.contains(seq))?;
        Some(locals.remove(at).1)
    }

    /// Reverts what pushing `slot` changed (slots are undone newest first).
    #[inline(always)]
    fn undo(&self, slot: &Slot) {
        self.want_dispatch.set(slot.saved_dispatch);
        match slot.kind {
            SlotKind::Enter => {
                self.base.set(slot.saved_base);
                self.floor.set(slot.saved_floor);
            }
            SlotKind::Private | SlotKind::Published => {
                if let Some(frame) = &slot.frame {
                    // SAFETY: no mutable borrow of the index is alive
                    // elsewhere; the entries are read only.
                    let index = unsafe { &mut *self.index.get() };
                    for entry in frame.data().entries.iter().rev() {
                        index.restore(entry.type_id, &entry.shadowed);
                    }
                }
            }
        }
    }

    /// Releases the slots an out-of-order repair removed (given oldest
    /// first, as `Popped::OutOfOrder` holds them), newest first.
    pub(crate) fn dispose(slots: Vec<Slot>) {
        // Each slot's locals are numbered between the id of the slot below
        // it and its own: for the oldest, the newest slot still live.
        let mut below: Vec<u64> = slots.iter().map(|slot| slot.id).collect();
        below.pop();
        let oldest_below = State::try_with(|state| {
            // SAFETY: shared borrow inside this closure only.
            let stack = unsafe { &*state.stack.get() };
            stack.last().map_or(0, |slot| slot.id)
        });
        below.insert(0, oldest_below.unwrap_or(0));
        for (slot, below) in slots.into_iter().zip(below).rev() {
            if let Some(released) = State::try_with(|state| state.release_or_park(slot, below)) {
                release(released);
            }
        }
    }

    // -----------------------------------------------------------------
    // Snapshots
    // -----------------------------------------------------------------

    /// The current context's top frame, publishing the installs of the
    /// current segment that nothing has seen yet.
    pub(crate) fn snapshot(&self) -> Option<Arc<Frame>> {
        // SAFETY: borrow ends with this method; no user code runs.
        let stack = unsafe { &mut *self.stack.get() };
        let top = stack.len().checked_sub(1)?;
        if stack[top].kind == SlotKind::Private {
            self.publish(stack);
        }
        stack[top].frame.clone()
    }

    /// Publishes every private install above the last published one or
    /// the last entered snapshot: links each frame to the one below and
    /// fills in what is derived from the chain.
    #[cold]
    fn publish(&self, stack: &mut [Slot]) {
        let floor = self.floor.get() as usize;
        let mut first = stack.len();
        while first > floor && stack[first - 1].kind == SlotKind::Private {
            first -= 1;
        }
        for at in first..stack.len() {
            let parent = at
                .checked_sub(1)
                .and_then(|below| stack[below].frame.clone());
            let slot = &mut stack[at];
            slot.kind = SlotKind::Published;
            let Some(frame) = &slot.frame else { continue };
            // SAFETY: the frame is private (the slot was `Private`): only
            // this slot holds it, and no reference into it is alive.
            let data = unsafe { frame.data_mut() };
            let (parent_dispatch, parent_locals) = match parent.as_deref().map(Frame::data) {
                Some(p) => (
                    p.dispatch,
                    matches!(p.kind, FrameKind::Installed { .. }) && p.locals_since_cut,
                ),
                None => (0, false),
            };
            let own_dispatch = data
                .entries
                .iter()
                .rev()
                .map(|e| (e.type_id, e.shared_ptr()))
                // A local dispatch is not carried: the snapshot sees the
                // newest shared one, here or below.
                .find(|(id, address)| {
                    *id == TypeId::of::<tracing::Dispatch>() && !address.is_null()
                });
            data.dispatch = own_dispatch.map_or(parent_dispatch, |(_, address)| address as usize);
            data.locals_since_cut =
                parent_locals || data.entries.iter().any(|e| matches!(e.value, Value::Local));
            data.parent = parent;
        }
    }

    // -----------------------------------------------------------------
    // tracing's default
    // -----------------------------------------------------------------

    /// Keeps `tracing`'s thread default equal to the `Dispatch` visible in
    /// the current context (the log monitor is a context entry).
    #[inline]
    fn sync_dispatch(&self) {
        // The common case (no dispatch, or the same one): one comparison.
        if self.want_dispatch.get() != self.applied.get() {
            self.switch_dispatch();
        }
    }

    #[cold]
    fn switch_dispatch(&self) {
        let want = self.want_dispatch.get();
        self.applied.set(want);
        // Drop the old default guard first so tracing restores the default
        // it saved, then set the new one on top of that.
        let old = self.applied_dispatch.borrow_mut().take();
        drop(old);
        if want != 0 {
            // SAFETY: `want` is the address of a live `Dispatch` value
            // (inside its `Arc`), owned by a frame or slot on the stack.
            let dispatch = unsafe { &*(want as *const tracing::Dispatch) }.clone();
            let guard = tracing::dispatcher::set_default(&dispatch);
            *self.applied_dispatch.borrow_mut() = Some(guard);
        }
    }

    /// Takes a private frame back for reuse (see [`recycle`](State::recycle)).
    #[inline]
    fn keep_spare(&self, frame: Arc<Frame>) {
        // SAFETY: borrow ends with this method.
        let spare = unsafe { &mut *self.spare.get() };
        // Room for `SPARE_FRAMES` is reserved once, so this never grows.
        if spare.len() < spare.capacity() {
            spare.push(frame);
        } else if spare.capacity() == 0 {
            spare.reserve_exact(SPARE_FRAMES);
            spare.push(frame);
        }
    }
}

/// Releases what a pop returned: an install's frame goes back to the
/// spare list once emptied (unless a snapshot still holds it), then the
/// local values are dropped, youngest first. Runs outside every borrow of
/// the state: values' destructors may use the context.
#[inline]
fn release(released: Release) {
    let Release {
        frame,
        install,
        locals,
    } = released;
    if let Some(frame) = frame {
        if install {
            // At thread teardown the closure (and the frame) is dropped.
            State::try_with(|state| state.recycle(frame));
        } else {
            // An entered snapshot: a `with` borrow may point into it.
            State::try_with(|state| {
                if state.pins.get() > 0 {
                    state.park(Some(Arc::clone(&frame)), &(0..0));
                }
            });
            drop(frame);
        }
    }
    if !locals.is_empty() {
        while let Some(Some(local)) = State::try_with(|state| state.take_local(&locals)) {
            drop(local);
        }
    }
}
