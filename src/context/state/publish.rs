//! Snapshots: publishing the private installs of the current segment
//! and handing out the top frame.

use std::any::TypeId;
use std::sync::Arc;

use super::{Slot, SlotKind, State};
use crate::context::frame::{Frame, FrameKind};

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
}
