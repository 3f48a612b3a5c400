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
use crate::context::entry::{Entry, Pending, PendingValue, Shadowed, Value};
use crate::context::frame::{Frame, FrameKind};
#[cfg(feature = "tower")]
use crate::context::remote::RemoteOrigin;

impl State {
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
            let parent = at
                .checked_sub(1)
                .and_then(|below| stack[below].frame.clone());
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

    /// A published frame holding the entries of `pending` and then
    /// `frame_local` on top of the current context, installed nowhere: the
    /// frame a request's polls enter (the tower layer's). No slot is
    /// pushed and the type index and the dispatch are not touched, so
    /// there is nothing to undo (the snapshot of the current context
    /// publishes the private installs below, as any snapshot does).
    ///
    /// `frame_local` is kept in the frame as a local entry
    /// ([`Value::FrameLocal`]): visible while the frame is the entered one,
    /// left out of every snapshot entered again and every hop. Local
    /// entries of the current context are left out below it (a cut, as
    /// entering a snapshot of it would make), so the new frame is entered
    /// as it is.
    ///
    /// `pending` must hold shared entries only (a local value has no place
    /// in a frame that is never installed): the caller checks.
    #[cfg(feature = "tower")]
    pub(crate) fn publish_over_current(
        &self,
        pending: &mut Vec<Pending>,
        reason: Option<&Cow<'static, str>>,
        origin: Option<&Arc<RemoteOrigin>>,
        frame_local: FrameLocal,
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
        let frame = self.take_spare();
        // SAFETY: a spare frame is private to this thread, and so is a new
        // one (see `install`); the borrow ends with this method, and no
        // user code runs while it is alive (nothing is dropped: every
        // value moves into the frame).
        let data = unsafe { frame.data_mut() };
        data.entries.reserve(pending.len() + 1);
        let mut dispatch = parent.as_deref().map_or(0, |p| p.data().dispatch);
        for p in pending.drain(..) {
            let PendingValue::Shared(value) = p.value else {
                unreachable!("milieu: a local entry in a frame that is never installed")
            };
            // The newest `Dispatch` wins, as `publish` finds it.
            if p.type_id == TypeId::of::<tracing::Dispatch>() {
                dispatch = Arc::as_ptr(&value).cast::<()>() as usize;
            }
            data.entries.push(Entry {
                type_id: p.type_id,
                type_name: p.type_name,
                value: Value::Shared(value),
                site: p.site,
                seq: self.next_seq(),
                reason: p.reason.or_else(|| reason.cloned()),
                debug: p.debug,
                origin: p.origin.or_else(|| origin.cloned()),
                // Never installed, so it shadows nothing: never read.
                shadowed: Shadowed::NONE,
            });
        }
        let FrameLocal {
            type_id,
            type_name,
            value,
            reason,
        } = frame_local;
        data.entries.push(Entry {
            type_id,
            type_name,
            value: Value::FrameLocal(value),
            site,
            seq: self.next_seq(),
            reason: Some(Cow::Borrowed(reason)),
            debug: None,
            origin: None,
            shadowed: Shadowed::NONE,
        });
        data.kind = FrameKind::Installed { site };
        data.dispatch = dispatch;
        // A local entry is here: entering a snapshot of this frame again
        // leaves it out.
        data.locals_since_cut = true;
        data.frame_locals = true;
        data.parent = parent;
        frame
    }
}

/// The entry a request frame holds as its own local one (see
/// [`State::publish_over_current`]).
#[cfg(feature = "tower")]
pub(crate) struct FrameLocal {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    pub(crate) value: Arc<dyn std::any::Any + Send + Sync>,
    pub(crate) reason: &'static str,
}

#[cfg(feature = "tower")]
impl FrameLocal {
    /// `value` as a frame-local entry of type `T`. Dumps show its type
    /// and provenance, not its value, as for an entry installed with
    /// `provide_local`.
    pub(crate) fn new<T: Send + Sync + 'static>(value: Arc<T>, reason: &'static str) -> FrameLocal {
        FrameLocal {
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            value,
            reason,
        }
    }
}
