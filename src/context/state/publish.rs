//! Snapshots: publishing the private installs of the current segment
//! and handing out the top frame.

use std::any::TypeId;
#[cfg(feature = "tower")]
use std::borrow::Cow;
#[cfg(feature = "tower")]
use std::panic::Location;
use std::sync::Arc;

use super::{Slot, SlotKind, State};
#[cfg(feature = "tower")]
use std::fmt;

#[cfg(feature = "tower")]
use crate::context::entry::{debug_fn, DebugFn, Entry, Pending, PendingValue, Shadowed, Value};
#[cfg(feature = "tower")]
use crate::context::frame::FrameData;
use crate::context::frame::{Frame, FrameKind};
#[cfg(feature = "tower")]
use crate::context::remote::RemoteOrigin;

impl State {
    /// The current context's top frame, publishing the installs of the
    /// current segment that nothing has seen yet.
    pub(crate) fn snapshot(&self) -> Option<Arc<Frame>> {
        // SAFETY: borrow ends with this method; no user code runs.
        let stack = unsafe { &mut *self.stack.get() };
        // Nothing installed above the entered frame (or nothing at all):
        // the snapshot is that frame. Entered by a slot or kept by its
        // caller (`enter_kept`), it is the base.
        if stack.len() <= State::floor() as usize {
            return self.base_frame();
        }
        let top = stack.len() - 1;
        if stack[top].kind == SlotKind::Private {
            self.publish(stack);
        }
        stack[top].frame.clone()
    }

    /// A reference to the entered frame, if any.
    fn base_frame(&self) -> Option<Arc<Frame>> {
        let base = self.base.get();
        if base.is_null() {
            return None;
        }
        // SAFETY: the base is the address inside an `Arc` (`Arc::as_ptr`
        // or a deref of one) that the topmost enter slot or a caller's
        // `enter_kept` keeps alive while it is the base.
        unsafe {
            Arc::increment_strong_count(base);
            Some(Arc::from_raw(base))
        }
    }

    /// Publishes every private install above the last published one or
    /// the last entered snapshot: links each frame to the one below and
    /// fills in what is derived from the chain.
    ///
    /// Inline in [`snapshot`](State::snapshot), its only caller: a
    /// snapshot right after an install takes this path every time, and
    /// out of line (it was `#[cold]`) it cost that case 9 instructions
    /// (607 against 598: `bash benches/context_instructions.sh c0a20cc
    /// 8787f0f`) and about 1.5 ns (docs/benchmarks.md, "Third round").
    #[inline]
    fn publish(&self, stack: &mut [Slot]) {
        let floor = State::floor() as usize;
        // The private installs on top, down to the floor: usually one (the
        // caller saw the top one), so a plain loop, not an iterator's.
        let mut first = stack.len() - 1;
        while first > floor && stack[first - 1].kind == SlotKind::Private {
            first -= 1;
        }
        for at in first..stack.len() {
            // Right above the floor, the parent is the entered frame: the
            // enter slot's own, or one its caller keeps (no slot).
            let parent = if at == floor {
                self.base_frame()
            } else {
                stack[at - 1].frame.clone()
            };
            let slot = &mut stack[at];
            slot.kind = SlotKind::Published;
            let Some(frame) = &slot.frame else { continue };
            // SAFETY: the frame is private (the slot was `Private`): only
            // this slot holds it, and no reference into it is alive.
            let data = unsafe { frame.data_mut() };
            // Not written by the install (`push_install`): set now, before
            // anything else can read it.
            data.kind = FrameKind::Installed { site: slot.site };
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
            // The slot knows whether the install has local entries.
            data.locals_since_cut = parent_locals || slot.has_locals;
            data.parent = parent;
        }
    }

    /// A published frame holding the entries `fill` adds and then `local`
    /// on top of the current context, installed nowhere: the frame a
    /// request's polls enter (the tower layer's). No slot is pushed and
    /// the type index and the dispatch are not touched, so there is
    /// nothing to undo (the snapshot of the current context publishes the
    /// private installs below, as any snapshot does).
    ///
    /// `local` is kept in the frame as a local entry
    /// ([`Value::FrameLocal`]): visible while the frame is the entered one,
    /// left out of every snapshot entered again and every hop. Local
    /// entries of the current context are left out below it (a cut, as
    /// entering a snapshot of it would make), so the new frame is entered
    /// as it is.
    ///
    /// The frame is, when this thread has one, an earlier request's,
    /// kept whole when that request ended (see
    /// [`RequestEntries::carry_debug`]): this request's values of the
    /// layer's own making are written over that request's, in place, so
    /// the usual request allocates and drops no value and no entry.
    #[cfg(feature = "tower")]
    pub(crate) fn publish_over_current<L: Send + Sync + 'static>(
        &self,
        fill: impl FnOnce(&mut RequestEntries<'_>),
        local: FrameLocal<L>,
        site: &'static Location<'static>,
    ) -> Arc<Frame> {
        let mut parent = self.snapshot();
        if let Some(below) = parent.take() {
            parent = Some(if below.data().locals_since_cut {
                Arc::new(Frame::cut(
                    below,
                    FrameKind::Entered { site },
                    self.thread_info(),
                ))
            } else {
                below
            });
        }
        // SAFETY: the borrow ends with this statement.
        let kept = unsafe { &mut *self.spare_requests.get() }.pop();
        let frame = kept.unwrap_or_else(|| self.take_spare());
        // SAFETY: a kept request frame and a spare frame are private to
        // this thread, and so is a new one (see `install`); the borrow
        // ends with this method, and no user code runs while it is alive:
        // every value moves into the frame, and the only values dropped
        // are an earlier request's of the layer's own making (see
        // `RequestEntries::own`).
        let data = unsafe { frame.data_mut() };
        let mut entries = RequestEntries {
            state: self,
            site,
            entries: &mut data.entries,
            at: 0,
            reusable: 0,
            dispatch: parent.as_deref().map_or(0, |p| p.data().dispatch),
        };
        fill(&mut entries);
        let FrameLocal { value, reason } = local;
        entries.own(value, reason, None, true);
        let RequestEntries {
            at,
            reusable,
            dispatch,
            ..
        } = entries;
        // An earlier request's entries beyond this one's (the layer's
        // own values, see above).
        data.entries.truncate(at);
        data.reusable = reusable;
        data.kind = FrameKind::Installed { site };
        data.dispatch = dispatch;
        // A local entry is here: entering a snapshot of this frame again
        // leaves it out.
        data.locals_since_cut = true;
        data.frame_locals = true;
        data.parent = parent;
        frame
    }

    /// Keeps a request frame whose request ended, whole, for the next
    /// request; gives it back when this thread keeps enough already.
    #[cfg(feature = "tower")]
    pub(super) fn keep_spare_request(&self, frame: Arc<Frame>) -> Option<Arc<Frame>> {
        // SAFETY: the borrow ends with this method, and nothing is
        // dropped while it is alive.
        let kept = unsafe { &mut *self.spare_requests.get() };
        if kept.len() >= super::SPARE_FRAMES {
            return Some(frame);
        }
        kept.push(frame);
        None
    }
}

/// The entry a request frame holds as its own local one (see
/// [`State::publish_over_current`]). Dumps show its type and provenance,
/// not its value, as for an entry installed with `provide_local`.
#[cfg(feature = "tower")]
pub(crate) struct FrameLocal<L> {
    pub(crate) value: L,
    pub(crate) reason: &'static str,
}

/// The entries of a request frame being built (see
/// [`State::publish_over_current`]), over what an earlier request left
/// in the frame when it is a kept one.
#[cfg(feature = "tower")]
pub(crate) struct RequestEntries<'a> {
    state: &'a State,
    site: &'static Location<'static>,
    entries: &'a mut Vec<Entry>,
    /// How many entries this request has: those from `at` on are an
    /// earlier request's.
    at: usize,
    /// Which of this request's entries (by position, the first eight)
    /// are of the layer's own making.
    reusable: u8,
    /// The `Dispatch` visible from the frame: the parent's, or the newest
    /// one added.
    dispatch: usize,
}

#[cfg(feature = "tower")]
impl RequestEntries<'_> {
    /// Adds a scope's entry: its own reason and origin, else the scope's.
    pub(crate) fn push_pending(
        &mut self,
        p: Pending,
        reason: Option<&Cow<'static, str>>,
        origin: Option<&Arc<RemoteOrigin>>,
    ) {
        let PendingValue::Shared(value) = p.value else {
            unreachable!("milieu: a local entry in a frame that is never installed")
        };
        // The newest `Dispatch` wins, as `publish` finds it.
        if p.type_id == TypeId::of::<tracing::Dispatch>() {
            self.dispatch = Arc::as_ptr(&value).cast::<()>() as usize;
        }
        let entry = Entry {
            type_id: p.type_id,
            type_name: p.type_name,
            value: Value::Shared(value),
            site: p.site,
            seq: self.state.next_seq(),
            reason: p.reason.or_else(|| reason.cloned()),
            debug: p.debug,
            origin: p.origin.or_else(|| origin.cloned()),
            // Never installed, so it shadows nothing: never read.
            shadowed: Shadowed::NONE,
        };
        self.push(entry);
    }

    /// Adds a carried entry of the layer's own making, shown in dumps
    /// with its `Debug`, installed at the frame's site.
    ///
    /// A request frame whose entries are all such entries (and its
    /// frame-local one), each value held by nothing else when the request
    /// ends, is kept whole for the next request on the thread, which
    /// writes its values over these in place: no allocation, no drop.
    ///
    /// `T`'s drop must not use the context: an earlier request's value is
    /// dropped while the frame is being built.
    pub(crate) fn carry_debug<T: fmt::Debug + Send + Sync + 'static>(
        &mut self,
        value: T,
        reason: &'static str,
    ) {
        self.own(value, reason, Some(debug_fn::<T>()), false);
    }

    /// [`carry_debug`](RequestEntries::carry_debug) for a value dumps do
    /// not show.
    pub(crate) fn carry<T: Send + Sync + 'static>(&mut self, value: T, reason: &'static str) {
        self.own(value, reason, None, false);
    }

    /// Adds an entry of the layer's own making (shared, or the frame's
    /// local one): written over the earlier request's entry in the same
    /// place if that one is of the same type and kind, else in a new one.
    // Inline: one call per entry per request, and the call's own
    // prologue and epilogue were a third of its instructions.
    #[inline(always)]
    fn own<T: Send + Sync + 'static>(
        &mut self,
        value: T,
        reason: &'static str,
        debug: Option<DebugFn>,
        frame_local: bool,
    ) {
        if let Some(bit) = 1u8.checked_shl(self.at as u32) {
            self.reusable |= bit;
        }
        let seq = self.state.next_seq();
        if let Some(entry) = self.entries.get_mut(self.at) {
            let same_kind = entry.type_id == TypeId::of::<T>()
                && matches!(entry.value, Value::FrameLocal(_)) == frame_local;
            if let (true, Value::Shared(v) | Value::FrameLocal(v)) = (same_kind, &mut entry.value) {
                debug_assert!(
                    Arc::get_mut(v).is_some_and(|v| v.is::<T>()),
                    "milieu: a kept request frame's value is shared or of another type"
                );
                // SAFETY: an entry from `at` on is an earlier request's, in
                // a frame kept whole: its value was held by nothing else
                // when that request ended (`reusable_whole`), and the frame
                // has been private to this thread since, so this is the
                // only reference to it; and it is a `T`, the type its entry
                // is keyed by (`own` and `push_pending` key each entry by
                // its value's type).
                let earlier = unsafe { &mut *Arc::as_ptr(v).cast::<T>().cast_mut() };
                *earlier = value;
                entry.site = self.site;
                entry.seq = seq;
                entry.reason = Some(Cow::Borrowed(reason));
                entry.debug = debug;
                self.at += 1;
                return;
            }
        }
        self.push(Entry {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            value: if frame_local {
                Value::FrameLocal(Arc::new(value))
            } else {
                Value::Shared(Arc::new(value))
            },
            site: self.site,
            seq,
            reason: Some(Cow::Borrowed(reason)),
            debug,
            origin: None,
            shadowed: Shadowed::NONE,
        });
    }

    /// Adds `entry` as this request's next one, in place of what an
    /// earlier request left there and after.
    fn push(&mut self, entry: Entry) {
        self.entries.truncate(self.at);
        self.entries.push(entry);
        self.at += 1;
    }
}

/// Whether a request frame whose request ended can be kept whole for the
/// next one (see [`RequestEntries::carry_debug`]): every entry is of the
/// layer's own making and its value is held by nothing else (a handler
/// may keep the `Arc` that `milieu::get` gave it).
#[cfg(feature = "tower")]
pub(super) fn reusable_whole(data: &mut FrameData) -> bool {
    let len = data.entries.len();
    len <= 8
        && data.reusable.count_ones() as usize == len
        && data.entries.iter_mut().all(|entry| match &mut entry.value {
            Value::Shared(v) | Value::FrameLocal(v) => Arc::get_mut(v).is_some(),
            Value::Local => false,
        })
}
