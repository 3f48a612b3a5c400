//! The per-thread state: which frame is current, the stack of installs that
//! put it there, and the values of local entries.
//!
//! Discipline (as in tracing's dispatcher state):
//! - one `thread_local!` with a `const` initialiser;
//! - every access goes through `try_with`, so guards dropped while the
//!   thread's locals are being torn down do nothing instead of panicking;
//! - frames and values removed from the state are dropped only after every
//!   borrow is released, because their destructors may use the context.

use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::ops::Range;
use std::panic::Location;
use std::ptr;
use std::sync::Arc;

use super::frame::{Frame, FrameKind, ThreadInfo};

thread_local! {
    static STATE: State = const { State::new() };
}

pub(crate) struct State {
    /// The current frame, null when the context is empty. Always equal to
    /// the frame of the last `stack` slot; cached so a lookup is one load.
    top: Cell<*const Frame>,
    /// One slot per active install (`provide`, `enter`, a polled future).
    stack: RefCell<Vec<Slot>>,
    /// Source of slot ids and sequence numbers, unique on this thread.
    next_seq: Cell<u64>,
    /// How many `with` borrows are running on this thread. While non-zero,
    /// frames leaving the stack are parked in `graveyard` instead of being
    /// dropped, so the frame a borrow points into stays alive.
    pins: Cell<usize>,
    graveyard: RefCell<Vec<Arc<Frame>>>,
    /// Whether `graveyard` holds anything (saves a borrow on every unpin).
    parked: Cell<bool>,
    /// Values of local entries, keyed by the entry's sequence number.
    locals: RefCell<Vec<(u64, Arc<dyn Any>)>>,
    thread: OnceCell<Arc<ThreadInfo>>,
    /// The `tracing` default milieu set for the current frame's dispatch.
    applied_dispatch: RefCell<Option<(usize, tracing::dispatcher::DefaultGuard)>>,
    /// The address in `applied_dispatch` (0 if none), readable without a
    /// borrow on every switch of the current frame.
    applied: Cell<usize>,
}

/// One active install.
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) frame: Option<Arc<Frame>>,
    pub(crate) site: &'static Location<'static>,
}

/// What popping a slot found.
pub(crate) enum Popped {
    /// The slot was on top, as it should be.
    InOrder(Slot),
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
            top: Cell::new(ptr::null()),
            stack: RefCell::new(Vec::new()),
            next_seq: Cell::new(1),
            pins: Cell::new(0),
            graveyard: RefCell::new(Vec::new()),
            parked: Cell::new(false),
            locals: RefCell::new(Vec::new()),
            thread: OnceCell::new(),
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

    /// The current frame as a raw pointer (null when empty).
    ///
    /// The pointee is kept alive by the stack; it stays valid until the
    /// stack changes, or, while pinned, until the pins are released.
    #[inline]
    pub(crate) fn top_ptr(&self) -> *const Frame {
        self.top.get()
    }

    /// A counted reference to the current frame.
    pub(crate) fn top_frame(&self) -> Option<Arc<Frame>> {
        self.stack
            .borrow()
            .last()
            .and_then(|slot| slot.frame.clone())
    }

    pub(crate) fn next_seq(&self) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        seq
    }

    pub(crate) fn thread_info(&self) -> Arc<ThreadInfo> {
        Arc::clone(
            self.thread
                .get_or_init(|| Arc::new(ThreadInfo::of_current())),
        )
    }

    /// Makes `frame` current; returns the id to pop it with.
    #[inline]
    pub(crate) fn push(&self, frame: Option<Arc<Frame>>, site: &'static Location<'static>) -> u64 {
        let id = self.next_seq();
        if let Some(FrameKind::Hop(hop)) = frame.as_deref().map(|f| &f.kind) {
            hop.arrived.get_or_init(|| self.thread_info());
        }
        self.top
            .set(frame.as_deref().map_or(ptr::null(), |f| f as *const Frame));
        self.stack.borrow_mut().push(Slot { id, frame, site });
        self.sync_dispatch();
        id
    }

    /// Removes the slot `id` (and, if it is not on top, every slot above it).
    /// The caller drops what is returned, after this borrow has ended.
    #[inline]
    pub(crate) fn pop(&self, id: u64) -> Popped {
        let popped = {
            let mut stack = self.stack.borrow_mut();
            let popped = match stack.last() {
                Some(slot) if slot.id == id => stack.pop().map_or(Popped::Gone, Popped::InOrder),
                _ => match stack.iter().rposition(|slot| slot.id == id) {
                    Some(at) => Popped::OutOfOrder(stack.drain(at..).collect()),
                    None => Popped::Gone,
                },
            };
            let top = stack.last().and_then(|slot| slot.frame.as_deref());
            self.top.set(top.map_or(ptr::null(), |f| f as *const Frame));
            popped
        };
        self.sync_dispatch();
        popped
    }

    /// Drops frames that left the stack, or parks them while a `with`
    /// borrow may still point into them.
    pub(crate) fn release(&self, frames: impl IntoIterator<Item = Arc<Frame>>) {
        if self.pins.get() == 0 {
            drop_all(frames);
        } else {
            self.graveyard.borrow_mut().extend(frames);
            self.parked.set(true);
        }
    }

    #[inline]
    pub(crate) fn pin(&self) {
        self.pins.set(self.pins.get() + 1);
    }

    #[inline]
    pub(crate) fn unpin(&self) {
        let pins = self.pins.get() - 1;
        self.pins.set(pins);
        if pins == 0 && self.parked.replace(false) {
            let parked = std::mem::take(&mut *self.graveyard.borrow_mut());
            drop_all(parked);
        }
    }

    pub(crate) fn insert_local(&self, seq: u64, value: Arc<dyn Any>) {
        self.locals.borrow_mut().push((seq, value));
    }

    pub(crate) fn local_value(&self, seq: u64) -> Option<Arc<dyn Any>> {
        let locals = self.locals.borrow();
        locals
            .iter()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, v)| Arc::clone(v))
    }

    /// Removes one local value whose sequence number is in `seqs`; the
    /// caller drops it after this returns. Values are pushed in install
    /// order, so for guards dropped in order it is the last one.
    pub(crate) fn take_local(&self, seqs: &Range<u64>) -> Option<Arc<dyn Any>> {
        if seqs.is_empty() {
            return None;
        }
        let mut locals = self.locals.borrow_mut();
        let at = locals.iter().rposition(|(seq, _)| seqs.contains(seq))?;
        Some(locals.remove(at).1)
    }

    /// Keeps `tracing`'s thread default equal to the `Dispatch` visible in
    /// the current frame (the log monitor is a context entry).
    #[inline]
    fn sync_dispatch(&self) {
        let top = self.top.get();
        // SAFETY: `top` is null or points to the frame owned by the last
        // stack slot, which we hold no borrow on but which cannot be dropped
        // during this call (nothing here pops the stack).
        let want = unsafe { top.as_ref() }.map_or(0, |f| f.dispatch);
        // The common case (no dispatch, or the same one): one comparison.
        if want != self.applied.get() {
            self.switch_dispatch(top, want);
        }
    }

    #[cold]
    fn switch_dispatch(&self, top: *const Frame, want: usize) {
        self.applied.set(want);
        // Drop the old default guard first so tracing restores the default
        // it saved, then set the new one on top of that.
        let old = self.applied_dispatch.borrow_mut().take();
        drop(old);
        if want != 0 {
            // SAFETY: as above.
            let frame = unsafe { &*top };
            let dispatch = frame
                .visible
                .get(std::any::TypeId::of::<tracing::Dispatch>())
                .and_then(|e| match &e.value {
                    super::entry::Value::Shared(v) => {
                        v.downcast_ref::<tracing::Dispatch>().cloned()
                    }
                    super::entry::Value::Local => self
                        .local_value(e.seq)
                        .and_then(|v| v.downcast_ref::<tracing::Dispatch>().cloned()),
                });
            match dispatch {
                Some(dispatch) => {
                    let guard = tracing::dispatcher::set_default(&dispatch);
                    *self.applied_dispatch.borrow_mut() = Some((want, guard));
                }
                None => self.applied.set(0),
            }
        }
    }
}

fn drop_all<T>(items: impl IntoIterator<Item = T>) {
    items.into_iter().for_each(drop);
}
