//! The memory transport: a [`MemoryStream`] is one end of a pair of
//! bounded in-memory pipes. It reads what the other end wrote, says
//! `WouldBlock` when there is nothing to read or no room to write, and
//! reads end of stream once the other end shut its sending side or was
//! dropped. The reactor drives a memory stream exactly as it drives a TCP
//! stream (same transport, protocol and application code, same steps of the
//! tick); only the readiness comes from the pipe instead of epoll.
//!
//! Test support (feature `test-util`): serve one with
//! [`Handle::serve_memory`](super::Handle::serve_memory), connect with
//! [`Handle::connect_memory`](super::Handle::connect_memory), or let
//! [`testing::Pair`](super::testing::Pair) do both.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Bytes each direction of a [`Pair`](super::testing::Pair) buffers by default.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

type Notify = Arc<dyn Fn() + Send + Sync>;

/// One direction: bytes written by one end, read by the other.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
}

#[derive(Default)]
struct PipeState {
    data: VecDeque<u8>,
    capacity: usize,
    /// The writing end shut its side or was dropped.
    writer_closed: bool,
    /// The reading end was dropped.
    reader_closed: bool,
    /// Called when bytes are read (room for the writer) or the reader goes.
    on_read: Option<Notify>,
    /// Called when bytes are written or the writer closes.
    on_write: Option<Notify>,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // Nothing panics while a pipe is locked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One end of an in-memory, bounded, non-blocking byte stream pair.
///
/// Reads and writes never block: `WouldBlock` when the pipe is empty or
/// full. All methods take `&self` (the pipes are shared), and `Read` /
/// `Write` are implemented for `&MemoryStream` too.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use milieu::reactor::testing::MemoryStream;
///
/// let (mut a, b) = MemoryStream::pair(4);
/// assert_eq!(a.write(b"hello")?, 4); // bounded
/// assert_eq!(b.read_available(), b"hell");
/// a.shutdown_write();
/// let mut buf = [0; 8];
/// assert_eq!((&b).read(&mut buf)?, 0); // end of stream
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct MemoryStream {
    incoming: Arc<Pipe>,
    outgoing: Arc<Pipe>,
}

impl fmt::Debug for MemoryStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStream")
            .field("readable", &self.incoming.lock().data.len())
            .field("unread_by_peer", &self.outgoing.lock().data.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStream {
    /// Two connected ends, each direction buffering at most `capacity`
    /// bytes (at least 1).
    pub fn pair(capacity: usize) -> (MemoryStream, MemoryStream) {
        let pipe = || {
            Arc::new(Pipe {
                state: Mutex::new(PipeState {
                    capacity: capacity.max(1),
                    ..PipeState::default()
                }),
            })
        };
        let (ab, ba) = (pipe(), pipe());
        let a = MemoryStream {
            incoming: Arc::clone(&ba),
            outgoing: Arc::clone(&ab),
        };
        let b = MemoryStream {
            incoming: ab,
            outgoing: ba,
        };
        (a, b)
    }

    /// Ends this side's sending direction: the peer reads end of stream
    /// once it read what was written.
    pub fn shutdown_write(&self) {
        let notify = {
            let mut pipe = self.outgoing.lock();
            pipe.writer_closed = true;
            pipe.on_write.clone()
        };
        if let Some(notify) = notify {
            notify();
        }
    }

    /// Reads everything readable now (possibly nothing).
    pub fn read_available(&self) -> Vec<u8> {
        let (bytes, notify) = {
            let mut pipe = self.incoming.lock();
            let bytes: Vec<u8> = pipe.data.drain(..).collect();
            (bytes, pipe.on_read.clone())
        };
        if let (Some(notify), false) = (notify, bytes.is_empty()) {
            notify();
        }
        bytes
    }

    /// Whether the peer ended its sending side (or was dropped) and every
    /// byte it sent was read.
    pub fn at_eof(&self) -> bool {
        let pipe = self.incoming.lock();
        pipe.writer_closed && pipe.data.is_empty()
    }

    /// Bytes written here and not read by the peer yet.
    pub fn unread_by_peer(&self) -> usize {
        self.outgoing.lock().data.len()
    }

    /// The reactor's end: `notify` runs whenever the peer writes, reads,
    /// or goes away.
    pub(crate) fn set_notify(&self, notify: Box<dyn Fn() + Send + Sync>) {
        let notify: Notify = Arc::from(notify);
        self.incoming.lock().on_write = Some(Arc::clone(&notify));
        self.outgoing.lock().on_read = Some(notify);
    }

    fn read_bytes(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf.len(), |front, back| {
            buf[..front.len()].copy_from_slice(front);
            buf[front.len()..front.len() + back.len()].copy_from_slice(back);
        })
    }

    /// A read of at most `max` bytes appended to `data`: the transport's
    /// read, with no buffer to zero first as `Read::read` would need.
    pub(crate) fn read_appending(&self, data: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        self.read_with(max, |front, back| {
            data.extend_from_slice(front);
            data.extend_from_slice(back);
        })
    }

    /// A read of at most `max` bytes, handed to `copy` as the two slices
    /// of the pipe's ring that hold them (copied in slices, not byte by
    /// byte: benchmarks pass whole requests through here).
    fn read_with(&self, max: usize, copy: impl FnOnce(&[u8], &[u8])) -> io::Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let (n, notify) = {
            let mut pipe = self.incoming.lock();
            if pipe.data.is_empty() {
                return if pipe.writer_closed {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = max.min(pipe.data.len());
            let (front, back) = pipe.data.as_slices();
            let front = &front[..n.min(front.len())];
            let back = &back[..n - front.len()];
            copy(front, back);
            pipe.data.drain(..n);
            (n, pipe.on_read.clone())
        };
        if let Some(notify) = notify {
            notify();
        }
        Ok(n)
    }

    pub(crate) fn write_bytes(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (n, notify) = {
            let mut pipe = self.outgoing.lock();
            if pipe.reader_closed {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the other end of the memory stream was dropped",
                ));
            }
            if pipe.writer_closed {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "this end of the memory stream shut its sending side",
                ));
            }
            let n = buf.len().min(pipe.capacity - pipe.data.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            pipe.data.extend(&buf[..n]);
            (n, pipe.on_write.clone())
        };
        if let Some(notify) = notify {
            notify();
        }
        Ok(n)
    }
}

impl Read for MemoryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_bytes(buf)
    }
}

impl Read for &MemoryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_bytes(buf)
    }
}

impl Write for MemoryStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &MemoryStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MemoryStream {
    fn drop(&mut self) {
        let on_write = {
            let mut pipe = self.outgoing.lock();
            pipe.writer_closed = true;
            pipe.on_read = None;
            pipe.on_write.clone()
        };
        let on_read = {
            let mut pipe = self.incoming.lock();
            pipe.reader_closed = true;
            pipe.data.clear();
            pipe.on_write = None;
            pipe.on_read.clone()
        };
        for notify in [on_write, on_read].into_iter().flatten() {
            notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write};

    use super::MemoryStream;

    #[test]
    fn a_full_pipe_would_block_and_a_dropped_peer_is_a_broken_pipe() {
        let (mut a, b) = MemoryStream::pair(2);
        assert_eq!(a.write(b"abc").unwrap(), 2);
        assert_eq!(a.write(b"c").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let mut buf = [0; 1];
        assert_eq!((&b).read(&mut buf).unwrap(), 1);
        assert_eq!(a.write(b"c").unwrap(), 1);
        drop(b);
        assert_eq!(a.write(b"d").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(
            (&a).read(&mut buf).unwrap(),
            0,
            "a dropped peer is end of stream"
        );
    }

    #[test]
    fn notify_runs_when_the_peer_writes_reads_and_goes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let (reactor_end, peer) = MemoryStream::pair(8);
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        reactor_end.set_notify(Box::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        (&peer).write_all(b"x").unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        (&reactor_end).write_all(b"y").unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1, "own writes do not notify");
        assert_eq!(peer.read_available(), b"y");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        drop(peer);
        assert_eq!(
            count.load(Ordering::SeqCst),
            4,
            "writer closed + reader gone"
        );
    }
}
