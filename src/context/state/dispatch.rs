//! Keeping `tracing`'s thread default equal to the `Dispatch` visible in
//! the current context (the log monitor is a context entry).

use super::State;

impl State {
    /// Keeps `tracing`'s thread default equal to the `Dispatch` visible in
    /// the current context (the log monitor is a context entry).
    #[inline]
    pub(super) fn sync_dispatch(&self) {
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
}
