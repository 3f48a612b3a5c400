//! A future wrapper that makes a snapshot current on every poll, on any
//! executor (tokio, futures, a milieu reactor).

use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

#[cfg(feature = "tower")]
use crate::context::Kept;
use crate::context::{
    misuse, out_of_order_report, reporting_misuse_as_errors, Context, Frame, HopKind, Scope, State,
};

pin_project_lite::pin_project! {
    /// A future that runs inside a captured context.
    ///
    /// Created by [`FutureExt::in_current_context`], [`FutureExt::in_context`]
    /// or [`ScopeExt::wrap`]. Each poll makes the captured
    /// context current (moving the frame pointer in and out of the thread
    /// state: no reference count is touched) and restores the thread's own
    /// context afterwards, also when the poll panics.
    ///
    /// # Panics
    ///
    /// A poll that returns while a [`Guard`](crate::Guard) created inside it
    /// is still alive (a guard held across `.await`) is reported as misuse:
    /// the stray install is removed and the poll panics naming its site.
    /// Hold context across `.await` with [`ScopeExt::wrap`] instead.
    ///
    /// A future dropped before it finished (a task aborted, the loser of a
    /// `select!`, a request whose client went away) is dropped inside the
    /// captured context too, so the destructors of what it held across
    /// `.await` (a transaction rolling back, a log line) see what its polls
    /// saw. A finished future is dropped as it is. An install such a drop
    /// leaves behind is removed and reported as an error event (target
    /// `milieu`), not a panic: a panic out of a destructor would abort the
    /// process at thread exit.
    #[must_use = "futures do nothing unless polled"]
    pub struct WithContext<F> {
        // Dropped by hand, in `drop`, inside the context when unfinished.
        #[pin]
        inner: ManuallyDrop<F>,
        frame: Option<Arc<Frame>>,
        site: &'static Location<'static>,
        // Whether a poll has recorded the hop's arrival (done once).
        arrived: bool,
        // Whether `inner` returned `Ready`.
        finished: bool,
    }

    impl<F> PinnedDrop for WithContext<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // SAFETY: this is the wrapper's drop: nothing touches `inner`
            // after it.
            let inner = unsafe { DropInPlace::new(this.inner.get_unchecked_mut()) };
            if *this.finished {
                drop(inner);
            } else {
                drop_unfinished_in_frame(this.frame, this.site, move || drop(inner));
            }
            // A spawned task's hop frame, when nothing else holds it, is
            // kept for the thread's next spawn.
            if let Some(frame) = this.frame.take() {
                Frame::recycle_hop(frame);
            }
        }
    }
}

impl<F> WithContext<F> {
    pub(crate) fn new(inner: F, ctx: Context, site: &'static Location<'static>) -> Self {
        // The frame to enter is fixed now, so polls only move a pointer.
        let frame = ctx.into_frame_for_entering(site);
        WithContext {
            inner: ManuallyDrop::new(inner),
            frame,
            site,
            arrived: false,
            finished: false,
        }
    }

    /// The wrapped future.
    pub fn inner(&self) -> &F {
        &self.inner
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for WithContext<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithContext")
            .field("inner", &self.inner)
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    // Without the hint the compiler stopped inlining it into a caller's
    // loop once `drop` grew: 98 instructions a poll instead of 77
    // (`bash benches/context_instructions.sh`, "poll").
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        // SAFETY: structural pinning through `ManuallyDrop` (transparent):
        // the future is never moved out.
        let inner = unsafe { this.inner.map_unchecked_mut(|inner| &mut **inner) };
        let poll = run_in_frame(this.frame, this.arrived, this.site, || inner.poll(cx));
        if poll.is_ready() {
            *this.finished = true;
        }
        poll
    }
}

/// Drops what a future wrapper holds (`drop_it`) inside the wrapper's
/// frame, for a future dropped before it finished. No arrival is recorded:
/// a future dropped unpolled never arrived anywhere. Misuse found on the
/// way (an install the drop left behind) is reported as an error event,
/// not a panic out of a destructor.
fn drop_unfinished_in_frame(
    slot: &mut Option<Arc<Frame>>,
    site: &'static Location<'static>,
    drop_it: impl FnOnce(),
) {
    reporting_misuse_as_errors(|| run_in_frame(slot, &mut true, site, drop_it));
}

/// A wrapper's pinned `ManuallyDrop` field, dropped in place when this
/// goes: where the closure meant to drop it runs, or wherever it is
/// dropped unrun (something before it panicked), so the value is dropped
/// on every path, as pinned data must be before its memory is reused.
pub(crate) struct DropInPlace<'a, T>(&'a mut ManuallyDrop<T>);

impl<'a, T> DropInPlace<'a, T> {
    /// # Safety
    ///
    /// Nothing reads or drops `value` after this is made: this drops it.
    pub(crate) unsafe fn new(value: &'a mut ManuallyDrop<T>) -> DropInPlace<'a, T> {
        DropInPlace(value)
    }
}

impl<T> Drop for DropInPlace<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `new`'s contract: the value is dropped once, here.
        unsafe { ManuallyDrop::drop(self.0) }
    }
}

/// Runs `f` with the frame in `slot` (one [`Context::frame_for_entering`]
/// gave) as the current context, the way every poll of a [`WithContext`]
/// does: the frame moves into the thread's state and back, no reference
/// count is touched, and an install left behind by `f` is reported as
/// misuse. `arrived` says whether a hop's arrival was recorded already
/// (once per captured frame). On a thread whose state is gone (thread
/// exit), `f` runs without the context.
#[inline]
pub(crate) fn run_in_frame<R>(
    slot: &mut Option<Arc<Frame>>,
    arrived: &mut bool,
    site: &'static Location<'static>,
    f: impl FnOnce() -> R,
) -> R {
    if std::mem::size_of::<R>() <= SMALL_RESULT {
        // One access to the thread's state for the whole poll.
        let mut f = Some(f);
        let mut out = None;
        State::try_with(|state| {
            let id = enter(state, slot, arrived, site);
            let _restore = TakeBack {
                state,
                id,
                slot,
                site,
            };
            if let Some(f) = f.take() {
                out = Some(f());
            }
        });
        match (out, f) {
            (Some(out), _) => out,
            // The state is gone (thread exit): `f` runs without the context.
            (None, Some(f)) => f(),
            // `f` ran and panicked: the panic unwound past here already.
            (None, None) => unreachable!("milieu: a context's closure returned nothing"),
        }
    } else {
        // A large result (a whole `http::Response` behind the tower
        // layer) is returned as `f` made it: carried out of the closure
        // above, it would be copied once per move. The frame goes in with
        // one access to the state and comes out with another, in
        // `TakeBackLater`'s drop.
        let _restore = enter_frame(slot, arrived, site);
        f()
    }
}

/// The guard form of [`run_in_frame`]: makes the frame in `slot` current
/// until the guard drops, for a caller whose work returns a large value
/// that a closure would carry out by copying (the tower layer's `call`,
/// whose result is the inner service's whole future). `None` on a thread
/// whose state is gone (thread exit): the work then runs without the
/// context, as `run_in_frame`'s does.
#[inline]
fn enter_frame<'a>(
    slot: &'a mut Option<Arc<Frame>>,
    arrived: &mut bool,
    site: &'static Location<'static>,
) -> Option<FrameEntered<'a>> {
    let id = State::try_with(|state| enter(state, slot, arrived, site))?;
    Some(FrameEntered(TakeBackLater { id, slot, site }))
}

/// What [`enter_frame`] returns: takes the frame back out of the current
/// context into its slot when dropped.
struct FrameEntered<'a>(#[allow(dead_code)] TakeBackLater<'a>);

/// Makes `frame` current until the guard drops, the frame staying where
/// its owner keeps it (see [`State::enter_kept`]): for milieu's own
/// wrappers that enter a frame they own around a call or a poll and leave
/// it in the same function (the tower layer's request). `None` on a
/// thread whose state is gone (thread exit): the work then runs without
/// the context.
///
/// The guard must be dropped, never leaked, before the frame goes: it is
/// crate-private for that reason.
#[cfg(feature = "tower")]
#[inline(always)]
pub(crate) fn enter_kept_frame<'a>(
    frame: &'a Arc<Frame>,
    site: &'static Location<'static>,
) -> Option<KeptFrameEntered<'a>> {
    let kept = State::try_with(|state| state.enter_kept(frame))?;
    Some(KeptFrameEntered { frame, kept, site })
}

/// What [`enter_kept_frame`] returns: leaves the frame when dropped.
#[cfg(feature = "tower")]
pub(crate) struct KeptFrameEntered<'a> {
    frame: &'a Arc<Frame>,
    kept: Kept,
    site: &'static Location<'static>,
}

#[cfg(feature = "tower")]
impl Drop for KeptFrameEntered<'_> {
    #[inline]
    fn drop(&mut self) {
        // The state is gone only at thread exit, and the entry with it.
        if State::try_with(|state| state.leave_kept(&self.kept)) == Some(false) {
            self.repair();
        }
    }
}

#[cfg(feature = "tower")]
impl KeptFrameEntered<'_> {
    /// Installs made inside were left active (a guard held across
    /// `.await`, or leaked), or an older install was removed inside:
    /// removes the strays and reports them, as a wrapped future's poll
    /// does (the older install's removal reported itself).
    #[cold]
    #[inline(never)]
    fn repair(&mut self) {
        let Some(strays) =
            State::try_with(|state| state.leave_kept_repairing(&self.kept, self.frame))
        else {
            return;
        };
        let Some(newest) = strays.last().map(|slot| slot.site) else {
            return;
        };
        let report = format!(
            "milieu: context guard held past its scope: {} install(s) made inside the context \
             entered at {} were still active when it was left, the most recent at {newest} \
             (leaked with `mem::forget`, or held across `.await`). Guards must be dropped in \
             the call or poll that made them; for async code wrap the future \
             (`FutureExt::in_current_context`, `ScopeExt::wrap`) instead of holding a guard \
             across `.await`. The stack was repaired: the install(s) were removed.",
            strays.len(),
            self.site
        );
        State::dispose(strays);
        misuse(report);
    }
}

/// Results up to this size leave [`run_in_frame`] through the closure of
/// its one access to the thread's state (in registers); larger ones are
/// returned directly, at the price of a second access.
const SMALL_RESULT: usize = 4 * std::mem::size_of::<usize>();

/// Makes the frame in `slot` current (see [`run_in_frame`]).
#[inline(always)]
fn enter(
    state: &State,
    slot: &mut Option<Arc<Frame>>,
    arrived: &mut bool,
    site: &'static Location<'static>,
) -> u64 {
    if *arrived {
        state.enter_again(slot.take(), site)
    } else {
        *arrived = true;
        state.enter(slot.take(), site)
    }
}

/// Pops the future's frame after the poll (also when it panics) and puts
/// it back into the future.
struct TakeBack<'a> {
    state: &'a State,
    id: u64,
    slot: &'a mut Option<Arc<Frame>>,
    site: &'static Location<'static>,
}

impl Drop for TakeBack<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.state.leave(self.id, self.slot) {
            self.out_of_order();
        }
    }
}

/// [`TakeBack`] for a poll that ran outside the access to the thread's
/// state that entered its frame (a large result, see [`run_in_frame`]):
/// accesses the state again to pop it.
struct TakeBackLater<'a> {
    id: u64,
    slot: &'a mut Option<Arc<Frame>>,
    site: &'static Location<'static>,
}

impl Drop for TakeBackLater<'_> {
    fn drop(&mut self) {
        // The state is gone only at thread exit, and the frame with it.
        State::try_with(|state| {
            drop(TakeBack {
                state,
                id: self.id,
                slot: &mut *self.slot,
                site: self.site,
            })
        });
    }
}

impl TakeBack<'_> {
    #[cold]
    fn out_of_order(&mut self) {
        let Some(mut slots) = self.state.pop_out_of_order(self.id) else {
            // Removed by an out-of-order guard inside the poll, which
            // reported it; the future goes on without its context.
            return;
        };
        let report = format!(
            "{} (detected when the poll of the future wrapped at {} returned: a guard \
             was held across `.await` or leaked)",
            out_of_order_report(self.site, &slots),
            self.site
        );
        *self.slot = slots[0].frame.take();
        // The stray installs.
        State::dispose(slots);
        misuse(report);
    }
}

/// Extension methods that carry the context into a future.
pub trait FutureExt: Future + Sized {
    /// Wraps the future so every poll runs in the context current now,
    /// recording a task hop at the caller's location.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::FutureExt;
    /// struct RequestId(u64);
    ///
    /// let _guard = milieu::provide(RequestId(42));
    /// let task = async { milieu::get::<RequestId>().unwrap().0 }.in_current_context();
    /// drop(_guard);
    /// // Polled later, elsewhere, it still sees the entry.
    /// assert_eq!(futures::executor::block_on(task), 42);
    /// ```
    #[track_caller]
    fn in_current_context(self) -> WithContext<Self> {
        let site = Location::caller();
        WithContext::new(
            self,
            Context::current().into_hop_at(HopKind::Task, None, site),
            site,
        )
    }

    /// Wraps the future so every poll runs in `ctx`, recording a task hop
    /// at the caller's location.
    #[track_caller]
    fn in_context(self, ctx: Context) -> WithContext<Self> {
        let site = Location::caller();
        WithContext::new(self, ctx.into_hop_at(HopKind::Task, None, site), site)
    }
}

impl<F: Future> FutureExt for F {}

/// Wrapping a future in a [`Scope`]: the way to hold entries across
/// `.await`, where a [`Guard`](crate::Guard) cannot be held.
///
/// A trait rather than a method of `Scope` because propagation is built on
/// the context core, not part of it; import it (`use milieu::ScopeExt;`)
/// and the call reads `scope().with(x).wrap(fut)`. It is implemented for
/// [`Scope`] only (sealed).
pub trait ScopeExt: sealed::Sealed {
    /// Wraps a future so that every poll runs with these entries installed
    /// on top of the context current now (a task hop is recorded here).
    ///
    /// Local entries are not carried into the future.
    ///
    /// # Examples
    ///
    /// ```
    /// use milieu::ScopeExt;
    /// struct RequestId(u64);
    ///
    /// let fut = milieu::scope()
    ///     .with(RequestId(9))
    ///     .wrap(async { milieu::get::<RequestId>().unwrap().0 });
    /// assert_eq!(futures::executor::block_on(fut), 9);
    /// ```
    #[track_caller]
    fn wrap<F: Future>(self, fut: F) -> WithContext<F>;
}

impl ScopeExt for Scope {
    #[track_caller]
    fn wrap<F: Future>(self, fut: F) -> WithContext<F> {
        let site = Location::caller();
        let ctx = self.run(Context::current);
        WithContext::new(fut, ctx.into_hop_at(HopKind::Task, None, site), site)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::context::Scope {}
}
