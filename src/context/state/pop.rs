//! Removals: popping a slot, restoring the type index, releasing or
//! recycling what the slot held, and the out-of-order repair.

use std::any::Any;
use std::ptr;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

#[cfg(feature = "tower")]
use super::Kept;
use super::{Parked, Saved, Slot, SlotKind, State};
use crate::context::frame::Frame;
#[cfg(feature = "tower")]
use crate::context::frame::FrameKind;

/// What a removed install leaves to release, outside every borrow of the
/// state (values' destructors may use the context).
struct Release {
    frame: Option<Arc<Frame>>,
    /// The frame is an install's: reuse it if no snapshot holds it.
    install: bool,
    /// Sequence numbers of the local values to drop (youngest first).
    locals: std::ops::Range<u64>,
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
    /// Drops the guard of slot `id`: removes the slot and releases what it
    /// held. If slots above it were still active, they are removed too and
    /// returned (oldest first) for the caller to report and dispose of.
    ///
    /// Everything happens within this one access to the thread's state:
    /// the borrows of its cells end before anything that may run user code
    /// (a value's destructor, a subscriber callback), which may itself use
    /// the context. The slot is read in place, field by field, never moved
    /// as a whole (see [`push_slot`](State::push_slot)).
    ///
    /// This is the common case, inline: the slot on top, no local values,
    /// no `with` borrow running. The rest takes
    /// [`pop_out_of_order`](State::pop_out_of_order).
    #[inline]
    pub(crate) fn drop_guard(&self, id: u64) -> Option<Vec<Slot>> {
        // SAFETY: the borrows of the stack and of the frame are not used
        // once anything may be dropped (`undo` and the index touch other
        // cells only); the top slot's frame is read out once, then the
        // length no longer covers the slot. A private frame is unique and
        // reachable only through its slot: `provide`'s path below empties
        // its entry, each owning field read once, after the length no
        // longer covers it. The local value that path takes is popped off
        // `locals` (borrowed here only) before anything is dropped.
        let (frame, kind, locals) = unsafe {
            let stack = &mut *self.stack.get();
            let Some(at) = stack.len().checked_sub(1) else {
                return self.pop_out_of_order(id);
            };
            let top = &*stack.as_ptr().add(at);
            // Only the tower layer enters a context without a slot: a
            // context-only build skips the floor test.
            #[cfg(feature = "tower")]
            let off_the_fast_path = self.pinned_or_entered_above(top.height_seen(at));
            #[cfg(not(feature = "tower"))]
            let off_the_fast_path = self.pinned();
            if top.id != id || off_the_fast_path {
                return self.pop_out_of_order(id);
            }
            if top.kind == SlotKind::Private && !top.restores && !top.has_locals {
                if let Some(frame) = &top.frame {
                    if frame.data_mut().entries.len() == 1 {
                        self.pop_provide::<false>(stack, at, frame);
                        return None;
                    }
                }
            }
            if top.kind == SlotKind::Private
                && !top.restores
                && top.has_locals
                && self.pop_local_entry(stack, at)
            {
                return None;
            }
            if top.kind == SlotKind::Published
                && !top.restores
                && !top.has_locals
                && self.pop_published_provide(stack, at)
            {
                return None;
            }
            self.undo(top);
            // An install's local values are numbered between the id of the
            // slot below and its own (the servers install a request's
            // `RequestInfo` this way around every poll).
            let locals = if top.has_locals {
                let below = match at.checked_sub(1) {
                    Some(below) => (*stack.as_ptr().add(below)).id,
                    None => 0,
                };
                self.own_locals_from(below + 1);
                below + 1..id
            } else {
                0..0
            };
            let popped = (ptr::read(&top.frame), top.kind, locals);
            stack.set_len(at);
            popped
        };
        self.sync_dispatch();
        if let Some(frame) = frame {
            match kind {
                SlotKind::Private => self.recycle_private(frame),
                SlotKind::Published => self.recycle(frame),
                SlotKind::Enter => drop(frame),
            }
        }
        // Youngest first, after the frame (as `release` does); no cell is
        // borrowed while a value drops.
        if !locals.is_empty() {
            while let Some(local) = self.take_local(&locals) {
                drop(local);
            }
        }
        None
    }

    /// Pops `provide`'s slot, on top at `at` with `frame` (a reference into
    /// the slot), whose frame holds one entry and is unique (private, or
    /// `PUBLISHED` with no snapshot left): its one entry's index slot is
    /// restored and the frame emptied in one pass (`undo`, then `recycle`,
    /// would each test the entries), and kept for reuse. No dispatch
    /// changed.
    ///
    /// # Safety
    ///
    /// As said, and no borrow of the stack or the frame is alive.
    #[inline(always)]
    unsafe fn pop_provide<const PUBLISHED: bool>(
        &self,
        stack: &mut Vec<Slot>,
        at: usize,
        frame: &Arc<Frame>,
    ) {
        // SAFETY: each owning field is read once, after the length no
        // longer covers it (the caller's promise covers the rest).
        unsafe {
            let data = frame.data_mut();
            let entry = data.entries.as_ptr();
            (*self.index.get()).restore((*entry).type_id, &(*entry).shadowed);
            data.entries.set_len(0);
            // Moved out one by one: a struct holding them cost 16
            // instructions more (the loop of benches/context_instructions.sh).
            let value = ptr::read(&(*entry).value);
            let reason = ptr::read(&(*entry).reason);
            let origin = ptr::read(&(*entry).origin);
            // What publication wrote: the link below and a map.
            let parent = if PUBLISHED {
                Frame::reset_map(data);
                data.parent.take()
            } else {
                None
            };
            let frame: Arc<Frame> = ptr::read(frame);
            stack.set_len(at);
            // Nothing borrowed from the state is used past this point:
            // dropping the value may run user code. The entry's own drop
            // order: value, reason, origin; then the link below (`recycle`
            // drops it first; no difference shows, since the slot below
            // still holds that frame).
            self.keep_spare(frame);
            drop(value);
            drop(reason);
            drop(origin);
            drop(parent);
        }
    }

    /// Pops the private slot on top at `at` if it holds one local entry
    /// whose value is the newest in `locals` (the servers' `RequestInfo`,
    /// installed around every poll), as [`pop_provide`](State::pop_provide)
    /// does, taking the value off the end of `locals`; returns whether it
    /// did. Out of line for the same reason as
    /// [`pop_published_provide`](State::pop_published_provide): inlined,
    /// its test cost `provide`'s own removal 14 instructions (453 against
    /// 439: `bash benches/context_instructions.sh 904a39f c0a20cc`).
    ///
    /// # Safety
    ///
    /// The slot at `at` is on top, private, restores nothing and has local
    /// values; no borrow of the stack, the frame or `locals` is alive.
    #[inline(never)]
    unsafe fn pop_local_entry(&self, stack: &mut Vec<Slot>, at: usize) -> bool {
        // SAFETY: the caller's promise; a private frame is unique. The
        // borrow of `locals` ends before `pop_provide` drops anything.
        unsafe {
            let Some(frame) = &(*stack.as_ptr().add(at)).frame else {
                return false;
            };
            let entries = &frame.data().entries;
            if entries.len() != 1 {
                return false;
            }
            let seq = (*entries.as_ptr()).seq;
            let locals = &mut *self.locals.get();
            let local = match locals.last() {
                Some((newest, _)) if *newest == seq => locals.pop(),
                _ => return false,
            };
            self.pop_provide::<false>(stack, at, frame);
            // Last, as `release` drops an install's local values after
            // its entries.
            drop(local);
        }
        true
    }

    /// Pops the published slot on top at `at` if it is `provide`'s and
    /// no snapshot holds its frame any more (a snapshot taken right after
    /// `provide`, and dropped since), as [`pop_provide`](State::pop_provide)
    /// does; returns whether it did. Out of line, so that `provide`'s own
    /// removal, inlined at every guard, stays as small as it was (with both
    /// inlined, it cost 8 to 26 instructions more, counted with the loop
    /// of `benches/context_instructions.sh`).
    ///
    /// # Safety
    ///
    /// The slot at `at` is on top, published, restores nothing and has no
    /// local values; no borrow of the stack or the frame is alive.
    #[inline(never)]
    unsafe fn pop_published_provide(&self, stack: &mut Vec<Slot>, at: usize) -> bool {
        // SAFETY: the caller's promise; the frame is only read here, and
        // handed to `pop_provide` unique (the fence pairs with the release
        // decrement of the last other holder, as in `recycle`).
        unsafe {
            let Some(frame) = &(*stack.as_ptr().add(at)).frame else {
                return false;
            };
            if frame.data().entries.len() != 1 || Arc::strong_count(frame) != 1 {
                return false;
            }
            fence(Ordering::Acquire);
            self.pop_provide::<true>(stack, at, frame);
        }
        true
    }

    /// The slow path of [`drop_guard`](State::drop_guard) and
    /// [`leave`](State::leave), taken when slot `id` is not on top (and
    /// by `drop_guard` while a `with` borrow runs): the removed slots (oldest first, `id`'s own first)
    /// when slots above it were still active; `None` when the slot was on
    /// top, or already removed by an earlier repair (which reported it).
    #[cold]
    pub(crate) fn pop_out_of_order(&self, id: u64) -> Option<Vec<Slot>> {
        match self.pop(id) {
            Popped::OutOfOrder(slots) => Some(slots),
            Popped::InOrder(released) => {
                release(released);
                None
            }
            Popped::Gone => None,
        }
    }

    /// Pops the enter slot `id` of a wrapped future's poll, putting the
    /// future's frame back into `frame`, which must be empty (the frame was
    /// taken out of it for the poll). Returns `false`, leaving the stack
    /// as it is, unless that slot is on top (see
    /// [`pop_out_of_order`](State::pop_out_of_order)).
    #[inline(always)]
    pub(crate) fn leave(&self, id: u64, frame: &mut Option<Arc<Frame>>) -> bool {
        // SAFETY: the borrow ends before `sync_dispatch`; the top slot is
        // an enter slot (ids are unique, and `id` is one), whose `saved` is
        // written; its frame is read out once, then the length no longer
        // covers it. `frame` is empty, as the caller promises: overwriting
        // it leaks nothing.
        unsafe {
            let stack = &mut *self.stack.get();
            let Some(at) = stack.len().checked_sub(1) else {
                return false;
            };
            let top = &*stack.as_ptr().add(at);
            if top.id != id {
                return false;
            }
            // An enter slot always saved what it changed.
            let saved = top.saved.assume_init_ref();
            self.want_dispatch.set(saved.dispatch);
            self.base.set(saved.base);
            State::set_floor(saved.floor);
            debug_assert!(frame.is_none(), "leave: the future's frame is out");
            // Written, not assigned: `frame` is empty (see above), so
            // there is no old value to drop and no test for one.
            ptr::write(frame, ptr::read(&top.frame));
            stack.set_len(at);
        }
        self.sync_dispatch();
        true
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
        #[cfg(feature = "tower")]
        let whole = data.frame_locals && super::publish::reusable_whole(data);
        data.frame_locals = false;
        drop(parent);
        #[cfg(feature = "tower")]
        let Some(frame) = (if whole {
            self.keep_spare_request(frame)
        } else {
            Some(frame)
        }) else {
            return;
        };
        self.recycle_private(frame);
    }

    /// Takes back a published install frame of this thread that the last
    /// snapshot holding it no longer needs (a request's context, when the
    /// tower layer's request ends): emptied and kept for the next install
    /// if that was the only reference, else just released. Another
    /// thread's frame is released: spare frames are this thread's.
    #[cfg(feature = "tower")]
    pub(crate) fn recycle_published(&self, frame: Arc<Frame>) {
        let data = frame.data();
        if matches!(data.kind, FrameKind::Installed { .. })
            && Arc::ptr_eq(&data.thread, self.thread_ref())
        {
            self.recycle(frame);
        }
    }

    /// [`recycle`](State::recycle) for a frame that was never published:
    /// only its slot ever held it (snapshots, parent links and maps are
    /// made at publication), so it is unique, has no parent and no map.
    #[inline(always)]
    fn recycle_private(&self, frame: Arc<Frame>) {
        // SAFETY: unique and unreachable, as said above.
        let data = unsafe { frame.data_mut() };
        if data.entries.len() != 1 {
            // Values' destructors may use the context: no cell is borrowed
            // here, and this frame is unreachable.
            data.entries.clear();
            self.keep_spare(frame);
            return;
        }
        // One entry (`provide`): its fields that own something are moved
        // out, the frame goes back to the spare list, and they are dropped
        // after, in the order the entry's own drop would (the value first;
        // the reason and the origin run no user code). No call to the
        // entry's drop glue, no loop.
        // SAFETY: the entry is initialised; each field is read once, and
        // the length no longer covers the entry before anything is dropped.
        let (value, reason, origin) = unsafe {
            let entry = data.entries.as_ptr();
            data.entries.set_len(0);
            (
                ptr::read(&(*entry).value),
                ptr::read(&(*entry).reason),
                ptr::read(&(*entry).origin),
            )
        };
        self.keep_spare(frame);
        drop(value);
        drop(reason);
        drop(origin);
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
            let floor = State::floor() as usize;
            match stack.last() {
                // On top but below the floor: made before a context that a
                // caller entered without a slot (`enter_kept`) and that is
                // still current. Removed as out of order, alone.
                Some(slot) if slot.id == id && slot.height_seen(stack.len() - 1) < floor => {
                    let slots = self.remove_from(stack, stack.len() - 1);
                    // Installs made from here on must be seen: they go
                    // right above the stack as it is now.
                    State::set_floor(State::floor().min(stack.len() as u32));
                    Popped::OutOfOrder(slots)
                }
                Some(slot) if slot.id == id => match stack.pop() {
                    Some(slot) => {
                        self.undo(&slot);
                        let below = stack.last().map_or(0, |s| s.id);
                        if slot.has_locals {
                            self.own_locals_from(below + 1);
                        }
                        Popped::InOrder(self.release_or_park(slot, below))
                    }
                    None => Popped::Gone,
                },
                _ => match stack.iter().rposition(|slot| slot.id == id) {
                    Some(at) => {
                        let slots = self.remove_from(stack, at);
                        if floor > stack.len() {
                            // As above: a context entered without a slot
                            // stays current, over what is left.
                            State::set_floor(State::floor().min(stack.len() as u32));
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

    /// Removes the slots from position `at` up, undoing them newest
    /// first; returns them oldest first, for the caller to report and
    /// [`dispose`](State::dispose) of. The caller syncs the dispatch.
    #[cold]
    fn remove_from(&self, stack: &mut Vec<Slot>, at: usize) -> Vec<Slot> {
        let slots: Vec<Slot> = stack.drain(at..).collect();
        for slot in slots.iter().rev() {
            self.undo(slot);
        }
        if slots.iter().any(|slot| slot.has_locals) {
            self.own_locals_from(stack.last().map_or(0, |s| s.id) + 1);
        }
        slots
    }

    /// Leaves what [`enter_kept`](State::enter_kept) entered (`frame`),
    /// restoring what it changed. `true` in the usual case: nothing
    /// installed inside is left and nothing below was removed. Otherwise
    /// `false`, and the caller repairs with
    /// [`leave_kept_repairing`](State::leave_kept_repairing).
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn leave_kept(&self, kept: &Kept) -> bool {
        // SAFETY: a shared borrow inside this block only.
        let intact = unsafe {
            let stack = &*self.stack.get();
            stack.len() == kept.height as usize
                && stack.last().map_or(0, |slot| slot.id) == kept.below
        };
        if !intact {
            return false;
        }
        self.restore(&kept.saved);
        self.sync_dispatch();
        true
    }

    /// [`leave_kept`](State::leave_kept) when it found the stack changed.
    /// Installs made inside and still active (a guard held across
    /// `.await`, or leaked) are removed and returned, oldest first, for
    /// the caller to report and dispose of; then what the entry changed is
    /// restored. If a slot below the entry was removed instead (an older
    /// guard dropped inside, which reported it), the removal restored what
    /// that slot saved: what the entry saved is restored only if nothing
    /// did (the base is still `frame`), since it may point into a frame
    /// that removal let go.
    #[cfg(feature = "tower")]
    #[cold]
    #[inline(never)]
    pub(crate) fn leave_kept_repairing(&self, kept: &Kept, frame: &Arc<Frame>) -> Vec<Slot> {
        let height = kept.height as usize;
        let strays = {
            // SAFETY: the borrow ends before `sync_dispatch`; nothing in
            // between runs user code.
            let stack = unsafe { &mut *self.stack.get() };
            let below_intact = stack.len() >= height
                && height.checked_sub(1).map_or(0, |below| stack[below].id) == kept.below;
            if below_intact {
                let strays = self.remove_from(stack, height);
                self.restore(&kept.saved);
                strays
            } else {
                if ptr::eq(self.base.get(), Arc::as_ptr(frame)) {
                    self.restore(&kept.saved);
                }
                Vec::new()
            }
        };
        self.sync_dispatch();
        strays
    }

    #[inline(always)]
    fn restore(&self, saved: &Saved) {
        self.want_dispatch.set(saved.dispatch);
        self.base.set(saved.base);
        State::set_floor(saved.floor);
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
        if !self.pinned() {
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
        self.mark_parked();
    }

    /// Gives every local value numbered `first` or later a reference count
    /// of its own, in place (see [`LocalValue::make_owned`]): done, with
    /// no user code running, when their installs leave the stack by any
    /// way but [`pop_local_entry`](State::pop_local_entry), before
    /// anything is released. The releases that follow drop values and
    /// frames, whose destructors may panic and leave some of these values
    /// in `locals` with no slot (a later removal whose range covers them
    /// then drops them): they must not be lent by then, as their lender
    /// may be gone.
    #[cold]
    #[inline(never)]
    fn own_locals_from(&self, first: u64) {
        // SAFETY: borrow ends with this method; `make_owned` runs no user
        // code (a reference count increment).
        let locals = unsafe { &mut *self.locals.get() };
        // In install order, so the ones numbered `first` or later are last.
        for (seq, value) in locals.iter_mut().rev() {
            if *seq < first {
                break;
            }
            value.make_owned();
        }
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
        Some(locals.remove(at).1.into_owned())
    }

    /// Reverts what pushing `slot` changed (slots are undone newest first).
    #[inline(always)]
    fn undo(&self, slot: &Slot) {
        if slot.restores {
            // SAFETY: `restores` says `saved` was written.
            self.restore(unsafe { slot.saved.assume_init_ref() });
        }
        if slot.kind != SlotKind::Enter {
            if let Some(frame) = &slot.frame {
                // SAFETY: no mutable borrow of the index is alive
                // elsewhere; the entries are read only.
                let index = unsafe { &mut *self.index.get() };
                match frame.data().entries.as_slice() {
                    // `provide`'s frame, without a loop.
                    [entry] => index.restore(entry.type_id, &entry.shadowed),
                    entries => {
                        for entry in entries.iter().rev() {
                            index.restore(entry.type_id, &entry.shadowed);
                        }
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
                if state.pinned() {
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
