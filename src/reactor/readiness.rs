//! Readiness: one call into epoll per tick, yielding ready tokens.
//!
//! The bottom layer of the reactor: it knows nothing of connections, only
//! which registered sources became readable or writable. A `mio::Waker`
//! under its own token lets other threads interrupt the wait.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::event::Event;
use mio::{Events, Poll, Registry, Token, Waker};

/// The token of the cross-thread waker; sources use the others.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// What a source is ready for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Data (or a pending connection, or end of stream) can be read.
    pub(crate) readable: bool,
    /// The send buffer has room.
    pub(crate) writable: bool,
    /// The peer closed its sending side (read returns 0 once drained).
    pub(crate) read_closed: bool,
    /// Our sending side is closed (or the peer reset the connection).
    pub(crate) write_closed: bool,
    /// The source reported an error (the next I/O call returns it).
    pub(crate) error: bool,
}

impl Ready {
    /// Readable and writable: what a source is told when the reactor wants
    /// it to try its I/O without an event (a resumed read, a memory
    /// transport). Trying is always safe: a drained source answers
    /// `WouldBlock`.
    pub(crate) const ANY: Ready = Ready {
        readable: true,
        writable: true,
        read_closed: false,
        write_closed: false,
        error: false,
    };

    fn of(event: &Event) -> Ready {
        Ready {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
        }
    }
}

/// Wakes the reactor out of its readiness poll: from another thread, or
/// from a waker of one of its tasks.
pub(crate) struct Wakeup {
    waker: Waker,
    /// Set while the reactor waits in the readiness poll.
    parked: AtomicBool,
}

impl Wakeup {
    /// Wakes the reactor whether it waits or not (it may be about to).
    pub(crate) fn wake(&self) {
        // A failed wake leaves the reactor to its own timeout: nothing
        // more useful to do with the error here.
        let _ = self.waker.wake();
    }

    /// Wakes the reactor only if it waits in the poll now: work queued
    /// while it runs a tick is seen before the next poll anyway.
    pub(crate) fn unpark(&self) {
        if self.parked.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// The reactor enters (`true`) or leaves the readiness poll.
    pub(crate) fn set_parked(&self, parked: bool) {
        self.parked.store(parked, Ordering::SeqCst);
    }
}

/// `mio::Poll` with its event buffer and waker.
pub(crate) struct Readiness {
    poll: Poll,
    events: Events,
    wakeup: Arc<Wakeup>,
}

impl Readiness {
    pub(crate) fn new() -> io::Result<Readiness> {
        let poll = Poll::new()?;
        let wakeup = Arc::new(Wakeup {
            waker: Waker::new(poll.registry(), WAKER)?,
            parked: AtomicBool::new(false),
        });
        Ok(Readiness {
            poll,
            events: Events::with_capacity(1024),
            wakeup,
        })
    }

    /// Where the transport layer registers its sources.
    pub(crate) fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    pub(crate) fn wakeup(&self) -> &Arc<Wakeup> {
        &self.wakeup
    }

    /// Waits at most `timeout` (forever if `None`) and returns the ready
    /// sources, the waker's token left out. `Interrupted` is retried.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
    ) -> io::Result<impl Iterator<Item = (Token, Ready)> + '_> {
        loop {
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(self.events())
    }

    /// The ready sources of the last poll again (the waker left out): the
    /// transport layer walks them after the poll step has counted them.
    pub(crate) fn events(&self) -> impl Iterator<Item = (Token, Ready)> + '_ {
        self.events
            .iter()
            .filter(|e| e.token() != WAKER)
            .map(|e| (e.token(), Ready::of(e)))
    }
}
