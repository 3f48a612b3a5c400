//! Installs and entered snapshots: taking a spare frame, writing entries
//! into it, pointing the type index at them, pushing the slot.

use std::any::{Any, TypeId};
use std::panic::Location;
use std::ptr;
use std::sync::Arc;

#[cfg(feature = "tower")]
use super::Kept;
use super::{LocalValue, Saved, Slot, SlotKind, State, SPARE_FRAMES};
use crate::context::entry::{Entry, LiveRef, Pending, PendingValue, Value};
use crate::context::frame::{Frame, FrameData, FrameKind};
use crate::context::remote::RemoteOrigin;

/// An entry's provenance on its way into a frame.
struct NewEntry {
    type_id: TypeId,
    type_name: &'static str,
    site: &'static Location<'static>,
    reason: Option<std::borrow::Cow<'static, str>>,
    debug: Option<crate::context::entry::DebugFn>,
    origin: Option<Arc<RemoteOrigin>>,
}

impl State {
    /// Installs `pending` as one frame, leaving the vector empty (for the
    /// caller to reuse); returns the slot id to pop it with.
    pub(crate) fn install(
        &self,
        pending: &mut Vec<Pending>,
        reason: Option<&std::borrow::Cow<'static, str>>,
        origin: Option<&Arc<RemoteOrigin>>,
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
        for p in pending.drain(..) {
            let seq = self.next_seq();
            let entry = NewEntry {
                type_id: p.type_id,
                type_name: p.type_name,
                site: p.site,
                reason: p.reason.or_else(|| reason.cloned()),
                debug: p.debug,
                origin: p.origin.or_else(|| origin.cloned()),
            };
            self.add_entry(data, entry, p.value, seq, &mut has_locals, &mut dispatch);
        }
        // Numbered after its entries, as dumps have always shown them.
        let id = self.next_seq();
        self.push_install(frame, id, site, has_locals, dispatch)
    }

    /// [`install`](State::install) for one shared entry installed at
    /// `site` (`provide`, `provide_arc`): the same frame, without the
    /// vector, the arguments passed one by one rather than as a struct.
    ///
    /// When the thread is warm (a spare frame with room for an entry,
    /// room on the stack and in the index) and the entry is not a
    /// `Dispatch`, it runs straight through, calling nothing: with no
    /// call that may unwind, `value` needs no stack slot for a landing
    /// pad, and the arguments stay in registers. Otherwise it takes
    /// [`install_one`](State::install_one), which makes room.
    #[inline]
    pub(crate) fn install_shared(
        &self,
        type_id: TypeId,
        type_name: &'static str,
        value: Arc<dyn Any + Send + Sync>,
        site: &'static Location<'static>,
    ) -> u64 {
        // SAFETY: shared borrows, ending with this block.
        let warm = unsafe {
            let (stack, index, spare) =
                (&*self.stack.get(), &*self.index.get(), &*self.spare.get());
            stack.len() < stack.capacity()
                && index.has_room()
                && spare
                    .last()
                    .is_some_and(|f| f.data().entries.capacity() > 0)
        };
        if !warm || type_id == TypeId::of::<tracing::Dispatch>() {
            return self.install_shared_cold(type_id, type_name, value, site);
        }
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 2);
        let address = Arc::as_ptr(&value).cast::<()>();
        // SAFETY: the borrows end with this block. Checked above: the
        // spare list is not empty, its last frame has room for an entry,
        // the stack has room for a slot and the index for a new key. A
        // spare frame is private (see `install`) and empty
        // (`recycle_private` emptied it). Each write is within that room
        // and initialises what the length then covers.
        unsafe {
            let spare = &mut *self.spare.get();
            let last = spare.len() - 1;
            let frame = ptr::read(spare.as_ptr().add(last));
            spare.set_len(last);
            let entries = &mut frame.data_mut().entries;
            debug_assert!(entries.is_empty() && entries.capacity() > 0);
            let to = entries.as_mut_ptr();
            let stack = &mut *self.stack.get();
            let at = stack.len();
            let (shadowed, index_at) =
                (*self.index.get()).replace_in_room(type_id, address, to, at as u32 + 1);
            write_entry(to, type_id, type_name, Value::Shared(value), site, seq);
            ptr::addr_of_mut!((*to).reason).write(None);
            ptr::addr_of_mut!((*to).debug).write(None);
            ptr::addr_of_mut!((*to).origin).write(None);
            write_shadowed(to, shadowed, index_at);
            entries.set_len(1);
            let slot = stack.as_mut_ptr().add(at);
            write_slot(slot, seq + 1, site, SlotKind::Private, Some(frame), false);
            ptr::addr_of_mut!((*slot).restores).write(false);
            stack.set_len(at + 1);
        }
        seq + 1
    }

    /// [`install_one`](State::install_one) for a local entry with a
    /// reason: the servers' `RequestInfo`, installed anew around every
    /// poll. Like [`install_shared`](State::install_shared), it runs
    /// straight through when the thread is warm (and there is room for the
    /// value in `locals`), and takes `install_one` otherwise. The entry,
    /// the slot and `locals` end up as `install_one` leaves them. The
    /// value is usually lent ([`LocalValue::lent`]); on the slow path it
    /// becomes owned, as `install_one` keeps it.
    #[cfg(feature = "http")]
    #[inline]
    pub(crate) fn install_local(
        &self,
        type_id: TypeId,
        type_name: &'static str,
        value: LocalValue,
        reason: std::borrow::Cow<'static, str>,
        site: &'static Location<'static>,
    ) -> u64 {
        // SAFETY: shared borrows, ending with this block.
        let warm = unsafe {
            let (stack, index, spare, locals) = (
                &*self.stack.get(),
                &*self.index.get(),
                &*self.spare.get(),
                &*self.locals.get(),
            );
            stack.len() < stack.capacity()
                && index.has_room()
                && locals.len() < locals.capacity()
                && spare
                    .last()
                    .is_some_and(|f| f.data().entries.capacity() > 0)
        };
        if !warm || type_id == TypeId::of::<tracing::Dispatch>() {
            let value = PendingValue::Local(value.into_owned());
            return self.install_one(type_id, type_name, value, Some(reason), site);
        }
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 2);
        let address = Arc::as_ptr(value.get()).cast::<()>();
        // SAFETY: as in `install_shared`, and `locals` has room for one
        // more value (checked above): written, then covered by the length.
        unsafe {
            let locals = &mut *self.locals.get();
            let at = locals.len();
            locals.as_mut_ptr().add(at).write((seq, value));
            locals.set_len(at + 1);
            let spare = &mut *self.spare.get();
            let last = spare.len() - 1;
            let frame = ptr::read(spare.as_ptr().add(last));
            spare.set_len(last);
            let entries = &mut frame.data_mut().entries;
            debug_assert!(entries.is_empty() && entries.capacity() > 0);
            let to = entries.as_mut_ptr();
            let stack = &mut *self.stack.get();
            let at = stack.len();
            let (shadowed, index_at) =
                (*self.index.get()).replace_in_room(type_id, address, to, at as u32 + 1);
            write_entry(to, type_id, type_name, Value::Local, site, seq);
            ptr::addr_of_mut!((*to).reason).write(Some(reason));
            ptr::addr_of_mut!((*to).debug).write(None);
            ptr::addr_of_mut!((*to).origin).write(None);
            write_shadowed(to, shadowed, index_at);
            entries.set_len(1);
            let slot = stack.as_mut_ptr().add(at);
            write_slot(slot, seq + 1, site, SlotKind::Private, Some(frame), true);
            ptr::addr_of_mut!((*slot).restores).write(false);
            stack.set_len(at + 1);
        }
        seq + 1
    }

    /// [`install_shared`](State::install_shared) while the thread warms up
    /// (or for a `Dispatch`): out of its way.
    #[cold]
    #[inline(never)]
    fn install_shared_cold(
        &self,
        type_id: TypeId,
        type_name: &'static str,
        value: Arc<dyn Any + Send + Sync>,
        site: &'static Location<'static>,
    ) -> u64 {
        self.install_one(type_id, type_name, PendingValue::Shared(value), None, site)
    }

    /// Installs one entry as a frame of its own, with an optional reason:
    /// the path of [`install_shared`](State::install_shared) while the
    /// thread warms up, and of the servers' per-poll install of a
    /// request's local entry, with no `Scope` vector to allocate.
    #[inline]
    pub(crate) fn install_one(
        &self,
        type_id: TypeId,
        type_name: &'static str,
        value: PendingValue,
        reason: Option<std::borrow::Cow<'static, str>>,
        site: &'static Location<'static>,
    ) -> u64 {
        let frame = self.take_spare();
        // SAFETY: as in `install`.
        let data = unsafe { frame.data_mut() };
        let mut has_locals = false;
        let mut dispatch = self.want_dispatch.get();
        // The entry's number and the slot's, as `install` gives them (the
        // entry first), with one update of the counter.
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 2);
        let entry = NewEntry {
            type_id,
            type_name,
            site,
            reason,
            debug: None,
            origin: None,
        };
        self.add_entry(data, entry, value, seq, &mut has_locals, &mut dispatch);
        self.push_install(frame, seq + 1, site, has_locals, dispatch)
    }

    /// A private frame to install into: a spare one, or a new one while
    /// the thread is warming up.
    #[inline(always)]
    pub(super) fn take_spare(&self) -> Arc<Frame> {
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

    /// Appends entry number `seq` to a private frame and points the index
    /// at it.
    #[inline(always)]
    fn add_entry(
        &self,
        data: &mut FrameData,
        new: NewEntry,
        value: PendingValue,
        seq: u64,
        has_locals: &mut bool,
        dispatch: &mut usize,
    ) {
        let NewEntry {
            type_id,
            type_name,
            site,
            reason,
            debug,
            origin,
        } = new;
        let (value, address) = match value {
            PendingValue::Shared(v) => {
                let address = Arc::as_ptr(&v).cast::<()>();
                (Value::Shared(v), address)
            }
            PendingValue::Local(v) => {
                let address = Arc::as_ptr(&v).cast::<()>();
                // SAFETY: the borrow ends with this block.
                unsafe { &mut *self.locals.get() }.push((seq, LocalValue::owned(v)));
                *has_locals = true;
                (Value::Local, address)
            }
        };
        if type_id == TypeId::of::<tracing::Dispatch>() {
            *dispatch = address as usize;
        }
        // Room first, so the address the index keeps is final: the caller
        // reserved room for every entry of the frame (this does nothing
        // then), or this is the frame's only entry.
        let entries = &mut data.entries;
        entries.reserve(1);
        let at = entries.len();
        // SAFETY: the borrows end with this method.
        let (stack, index) = unsafe { (&*self.stack.get(), &mut *self.index.get()) };
        // SAFETY: within the reserved capacity.
        let to = unsafe { entries.as_mut_ptr().add(at) };
        let height = stack.len() as u32 + 1;
        let (shadowed, index_at) = index.replace(type_id, address, to, height);
        // SAFETY: within the reserved capacity, initialised before the
        // length covers it.
        unsafe {
            write_entry(to, type_id, type_name, value, site, seq);
            ptr::addr_of_mut!((*to).reason).write(reason);
            ptr::addr_of_mut!((*to).debug).write(debug);
            ptr::addr_of_mut!((*to).origin).write(origin);
            write_shadowed(to, shadowed, index_at);
            entries.set_len(at + 1);
        }
    }

    /// Pushes the slot of a filled private frame.
    ///
    /// The frame's kind is not written here: a private frame is read by
    /// nothing but this thread's lookups and removal, and publication
    /// (`publish.rs`) sets it from the slot's site.
    #[inline(always)]
    fn push_install(
        &self,
        frame: Arc<Frame>,
        id: u64,
        site: &'static Location<'static>,
        has_locals: bool,
        dispatch: usize,
    ) -> u64 {
        // Only an install with a `Dispatch` entry saves what it changes:
        // the others leave the dispatch, base and floor as they were, and
        // their removal does too (slots go in reverse order).
        let saves = dispatch != self.want_dispatch.get();
        self.push_slot(id, site, SlotKind::Private, Some(frame), has_locals, saves);
        if saves {
            self.want_dispatch.set(dispatch);
            self.sync_dispatch();
        }
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

    /// Makes `frame`, which the caller keeps and outlives the entry, the
    /// current context without pushing a slot: the base and the floor
    /// change as an enter slot would change them, and what they were goes
    /// into the returned [`Kept`], which the caller hands to
    /// [`leave_kept`](State::leave_kept). Half the work of
    /// [`enter_again`](State::enter_again) and its removal: nothing is
    /// written to the stack and the frame's `Arc` does not move (the tower
    /// layer enters each request's frame three times).
    ///
    /// The caller must not let the frame go before it leaves: the base
    /// points into it. So this is not for guards users hold (one leaked
    /// with `mem::forget` would leave the base dangling), only for a
    /// frame entered and left within one call of milieu's own.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn enter_kept(&self, frame: &Arc<Frame>) -> Kept {
        // SAFETY: a shared borrow inside this block only.
        let (height, below) = unsafe {
            let stack = &*self.stack.get();
            (stack.len(), stack.last().map_or(0, |slot| slot.id))
        };
        let kept = Kept {
            saved: Saved {
                dispatch: self.want_dispatch.get(),
                base: self.base.get(),
                floor: State::floor(),
            },
            height: height as u32,
            below,
        };
        self.base.set(Arc::as_ptr(frame));
        State::set_floor(height as u32);
        self.want_dispatch.set(frame.data().dispatch);
        self.sync_dispatch();
        kept
    }

    /// Records this thread as the one a hop arrived on, if it is the
    /// first to enter the hop's frame.
    #[inline]
    pub(crate) fn record_arrival(&self, frame: &Frame) {
        let data = frame.data();
        if let FrameKind::Hop(hop) = &data.kind {
            hop.arrived.record(self.thread_ref(), &data.thread);
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
        let depth = self.push_slot(id, site, SlotKind::Enter, frame, false, true);
        self.base.set(base);
        State::set_floor(depth + 1);
        self.want_dispatch.set(dispatch);
        self.sync_dispatch();
        id
    }

    /// Pushes a slot; returns its stack position. If `saves`, the slot
    /// saves the dispatch, base and floor as they are now, for its removal
    /// to restore (see [`Slot`]).
    ///
    /// The slot is written field by field into reserved room, and
    /// [`drop_guard`](State::drop_guard) reads it back the same way:
    /// moving the whole struct made the compiler build it on the stack
    /// and copy it with wide loads right after narrow stores, which
    /// stalled on store forwarding: `perf` put most of an install's time
    /// there (docs/design.md, "How it was chosen").
    #[inline(always)]
    fn push_slot(
        &self,
        id: u64,
        site: &'static Location<'static>,
        kind: SlotKind,
        frame: Option<Arc<Frame>>,
        has_locals: bool,
        saves: bool,
    ) -> u32 {
        // SAFETY: the borrow ends with this method; `at` is within the
        // reserved capacity and every field but `saved` is initialised
        // before the length covers it (`saved` is a `MaybeUninit`, read
        // only when `restores` says it was written).
        unsafe {
            let stack = &mut *self.stack.get();
            stack.reserve(1);
            let at = stack.len();
            let to = stack.as_mut_ptr().add(at);
            write_slot(to, id, site, kind, frame, has_locals);
            ptr::addr_of_mut!((*to).restores).write(saves);
            if saves {
                // Read here, after `reserve`, so they are not kept across
                // its call.
                let into = ptr::addr_of_mut!((*to).saved).cast::<Saved>();
                ptr::addr_of_mut!((*into).dispatch).write(self.want_dispatch.get());
                ptr::addr_of_mut!((*into).base).write(self.base.get());
                ptr::addr_of_mut!((*into).floor).write(State::floor());
            }
            stack.set_len(at + 1);
            at as u32
        }
    }

    /// Takes a private frame back for reuse (see [`recycle`](State::recycle)).
    #[inline(always)]
    pub(super) fn keep_spare(&self, frame: Arc<Frame>) {
        // SAFETY: borrow ends with this method.
        let spare = unsafe { &mut *self.spare.get() };
        // Room for `SPARE_FRAMES` is reserved once, so this never grows.
        let len = spare.len();
        if len < spare.capacity() {
            // `push` without its check for room (done just above), which
            // left a call to `Vec::push_mut` in every inlined removal.
            // SAFETY: `len` is below the capacity.
            unsafe {
                spare.as_mut_ptr().add(len).write(frame);
                spare.set_len(len + 1);
            }
        } else if spare.capacity() == 0 {
            spare.reserve_exact(SPARE_FRAMES);
            spare.push(frame);
        }
    }
}

/// Writes the fields of the entry at `to` that every install sets (the
/// caller writes `reason`, `debug`, `origin` and `shadowed`), one by one:
/// see [`State::push_slot`].
///
/// # Safety
///
/// `to` is valid for writes (room reserved in a frame's entries).
#[inline(always)]
unsafe fn write_entry(
    to: *mut Entry,
    type_id: TypeId,
    type_name: &'static str,
    value: Value,
    site: &'static Location<'static>,
    seq: u64,
) {
    // SAFETY: the caller's promise.
    unsafe {
        ptr::addr_of_mut!((*to).type_id).write(type_id);
        ptr::addr_of_mut!((*to).type_name).write(type_name);
        ptr::addr_of_mut!((*to).value).write(value);
        ptr::addr_of_mut!((*to).site).write(site);
        ptr::addr_of_mut!((*to).seq).write(seq);
    }
}

/// Writes what the entry at `to` shadows in the type index, and where.
///
/// # Safety
///
/// As for [`write_entry`].
#[inline(always)]
unsafe fn write_shadowed(to: *mut Entry, shadowed: LiveRef, index_at: u32) {
    // SAFETY: the caller's promise.
    unsafe {
        ptr::addr_of_mut!((*to).shadowed.value).write(shadowed.value);
        ptr::addr_of_mut!((*to).shadowed.entry).write(shadowed.entry);
        ptr::addr_of_mut!((*to).shadowed.height).write(shadowed.height);
        ptr::addr_of_mut!((*to).shadowed.index_at).write(index_at);
    }
}

/// Writes the fields of the slot at `to` but `restores` and `saved`,
/// one by one (see [`State::push_slot`]).
///
/// # Safety
///
/// `to` is valid for writes (room reserved on the stack).
#[inline(always)]
unsafe fn write_slot(
    to: *mut Slot,
    id: u64,
    site: &'static Location<'static>,
    kind: SlotKind,
    frame: Option<Arc<Frame>>,
    has_locals: bool,
) {
    // SAFETY: the caller's promise.
    unsafe {
        ptr::addr_of_mut!((*to).id).write(id);
        ptr::addr_of_mut!((*to).site).write(site);
        ptr::addr_of_mut!((*to).frame).write(frame);
        ptr::addr_of_mut!((*to).kind).write(kind);
        ptr::addr_of_mut!((*to).has_locals).write(has_locals);
    }
}
