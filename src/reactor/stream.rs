//! Stream I/O: the byte streams the reactor drives (a TCP socket, or a
//! memory pipe under `test-util`), how the transport reads them (one read
//! appended to a buffer; whether a short read proves a socket drained, the
//! edge-trigger rule) and how a connect finishes.

use std::io::{self, Read, Write};

use super::info::ConnectionInfo;
#[cfg(feature = "test-util")]
use super::memory::MemoryStream;

/// The byte streams the reactor drives.
pub(crate) enum StreamIo {
    Tcp(mio::net::TcpStream),
    #[cfg(feature = "test-util")]
    Memory(MemoryStream),
}

impl StreamIo {
    /// Whether a connect finished: `Ok(false)` while it is in progress.
    pub(crate) fn connect_result(&mut self) -> io::Result<bool> {
        match self {
            #[cfg(feature = "test-util")]
            StreamIo::Memory(_) => Ok(true),
            StreamIo::Tcp(stream) => {
                if let Some(e) = stream.take_error()? {
                    return Err(e);
                }
                match stream.peer_addr() {
                    Ok(_) => Ok(true),
                    // Not connected yet (mio's documented protocol).
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) if EINPROGRESS.is_some() && e.raw_os_error() == EINPROGRESS => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    pub(crate) fn info(&self, token: usize) -> ConnectionInfo {
        match self {
            StreamIo::Tcp(s) => {
                ConnectionInfo::new(token, "tcp", s.peer_addr().ok(), s.local_addr().ok())
            }
            #[cfg(feature = "test-util")]
            StreamIo::Memory(_) => ConnectionInfo::new(token, "memory", None, None),
        }
    }
}

/// `EINPROGRESS` (`io::ErrorKind::InProgress` is not stable yet).
#[cfg(any(target_os = "linux", target_os = "android"))]
const EINPROGRESS: Option<i32> = Some(115);
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
const EINPROGRESS: Option<i32> = Some(36);
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
const EINPROGRESS: Option<i32> = None;

impl Read for StreamIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamIo::Tcp(s) => s.read(buf),
            #[cfg(feature = "test-util")]
            StreamIo::Memory(s) => s.read(buf),
        }
    }
}

impl Write for StreamIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamIo::Tcp(s) => s.write(buf),
            #[cfg(feature = "test-util")]
            StreamIo::Memory(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for StreamIo {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            StreamIo::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            #[cfg(feature = "test-util")]
            StreamIo::Memory(s) => {
                s.shutdown_write();
                Ok(())
            }
        }
    }
}

/// A byte stream the transport can drive: a TCP stream or a memory pipe.
pub(crate) trait Stream: Read + Write {
    /// Ends our sending side (half-close).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

/// How the transport reads a byte stream: one read appended straight to
/// its input buffer, and whether a short read proves the stream drained.
pub(crate) trait Receive: Read {
    /// One read of at most `max` bytes (`max > 0`) appended to `data`: the
    /// bytes read, `Ok(0)` at end of stream.
    ///
    /// This default goes through [`Read`], which wants initialised memory,
    /// so it zeroes the room first; sockets and memory streams append
    /// without that.
    fn receive(&mut self, data: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let len = data.len();
        data.resize(len + max, 0);
        let read = self.read(&mut data[len..]);
        data.truncate(len + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Whether a read that returned fewer bytes than asked for means the
    /// stream is drained and will raise a new readiness event for anything
    /// that arrives later (see `Transport::read_from`).
    fn short_read_drains(&self) -> bool {
        false
    }
}

/// Whether mio's readiness comes from a kernel edge-triggered queue here
/// (epoll, kqueue). On Windows, and with mio's `poll(2)` fallback, mio
/// emulates edges by re-arming a registration when an I/O call says
/// `WouldBlock`, so only `WouldBlock` proves a socket drained there. Same
/// platform list as mio's selectors (and tokio's short-read rule).
#[allow(unexpected_cfgs)] // `mio_unsupported_force_poll_poll` is mio's, set in RUSTFLAGS
const EDGE_TRIGGERED_SOCKETS: bool = cfg!(all(
    not(mio_unsupported_force_poll_poll),
    any(
        target_os = "android",
        target_os = "illumos",
        target_os = "linux",
        target_os = "redox",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "ios",
        target_os = "macos",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "tvos",
        target_os = "visionos",
        target_os = "watchos",
    )
));

impl Receive for StreamIo {
    fn receive(&mut self, data: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        match self {
            StreamIo::Tcp(stream) => recv_appending(stream, data, max),
            #[cfg(feature = "test-util")]
            StreamIo::Memory(stream) => stream.read_appending(data, max),
        }
    }

    fn short_read_drains(&self) -> bool {
        // A memory stream reads on to `WouldBlock`: that costs no system
        // call, and its readiness is a notification, not a kernel edge.
        EDGE_TRIGGERED_SOCKETS && matches!(self, StreamIo::Tcp(_))
    }
}

/// One `recv` of at most `max` bytes into the spare capacity of `data`:
/// unlike `Read::read`, it needs no zeroed memory to receive into.
fn recv_appending(
    stream: &mio::net::TcpStream,
    data: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    data.reserve(max);
    let len = data.len();
    let room = &mut data.spare_capacity_mut()[..max];
    // Through `try_io`, as mio asks of I/O it does not do itself: where
    // mio emulates edge triggering (Windows), `WouldBlock` re-arms the
    // registration.
    let received = stream.try_io(|| socket2::SockRef::from(stream).recv(room))?;
    debug_assert!(received <= max, "recv returned more than asked for");
    // SAFETY: `recv(2)` wrote `received` bytes at the start of `room`, the
    // spare capacity right after the `len` initialised bytes, and returns
    // at most `room.len()` (`max`, within the capacity reserved above).
    unsafe { data.set_len(len + received) };
    Ok(received)
}
