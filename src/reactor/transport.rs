//! Transport: non-blocking `recv`/`send` on one byte stream, with a read
//! buffer, a write buffer, write backpressure and half-close.
//!
//! A [`Transport`] owns no socket: the connection that owns one hands it
//! in for each call, so the same code drives a TCP stream and a memory pipe
//! (see `reactor::testing`, feature `test-util`). It speaks `io::Result` at its edges:
//! `Interrupted` is retried, `WouldBlock` means drained (so does a short
//! read on an edge-triggered socket, see [`Transport::read_from`]), and any
//! other error comes back as an outcome the connection turns into a close
//! event ([`CloseReason`]), never a panic.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::readiness::Ready;
use super::stream::{Receive, Stream};

/// Bytes asked for per `read` call.
const CHUNK: usize = 16 * 1024;

/// The most buffer capacity an idle connection keeps (see
/// `Buffer::release_if_empty`): enough for typical requests and responses
/// to reuse it, small next to the kernel's own socket buffers.
const KEEP_WHEN_IDLE: usize = 4 * 1024;

/// Buffer sizes and backpressure thresholds of a connection.
///
/// Write backpressure: when more than [`high_water`](Limits::high_water)
/// bytes of responses wait to be sent (the peer does not read), or
/// [`max_in_flight`](Limits::max_in_flight) requests wait for their
/// responses, the connection stops reading and decoding; it resumes once
/// the buffer is down to [`low_water`](Limits::low_water) bytes. The
/// protocol sees [`TransportEvent::Paused`] / [`TransportEvent::Resumed`],
/// the application [`ConnectionInfo::is_paused`](super::ConnectionInfo::is_paused).
///
/// # Examples
///
/// ```
/// use milieu::reactor::Limits;
///
/// let limits = Limits::new().with_water_marks(4096, 16 * 1024).with_max_input(8192);
/// assert_eq!((limits.low_water(), limits.high_water()), (4096, 16 * 1024));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    high_water: usize,
    low_water: usize,
    max_in_flight: usize,
    max_input: usize,
    read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    linger: Duration,
    body_timeout: Option<Duration>,
    min_body_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            max_in_flight: 128,
            max_input: 64 * 1024,
            read_timeout: None,
            idle_timeout: None,
            write_timeout: None,
            linger: Duration::from_secs(2),
            body_timeout: None,
            min_body_rate: 0,
        }
    }
}

impl Limits {
    /// The defaults: water marks 16 KiB / 64 KiB, 128 requests in flight,
    /// 64 KiB of undecoded input.
    pub fn new() -> Limits {
        Limits::default()
    }

    /// Pause reading above `high` buffered bytes, resume at `low` or below
    /// (`low` is capped at `high`; `high` is at least 1).
    pub fn with_water_marks(mut self, low: usize, high: usize) -> Limits {
        self.high_water = high.max(1);
        self.low_water = low.min(self.high_water);
        self
    }

    /// Pause reading while this many requests wait for their responses
    /// (pipelining depth; at least 1).
    pub fn with_max_in_flight(mut self, requests: usize) -> Limits {
        self.max_in_flight = requests.max(1);
        self
    }

    /// The most undecoded input a connection holds: a request that does not
    /// fit closes the connection with [`CloseReason::InputTooLarge`] (at
    /// least 1 byte). A client [`Connection`](super::Connection) stops
    /// reading at `high_water` unread bytes instead (but always holds a
    /// line as long as its `read_line` accepts).
    pub fn with_max_input(mut self, bytes: usize) -> Limits {
        self.max_input = bytes.max(1);
        self
    }

    /// How long a server connection may hold an incomplete request (a
    /// slow or stalled client, "slowloris"): past it the protocol's
    /// [`timeout_response`](super::Protocol::timeout_response) is sent and
    /// the connection closes with [`CloseReason::TimedOut`]. Checked about
    /// once a second. Default: none.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Limits {
        self.read_timeout = Some(timeout);
        self
    }

    /// How long a server connection may sit idle (no request in progress,
    /// no response owed) before it is closed with
    /// [`CloseReason::TimedOut`]: keep-alive connections nobody uses.
    /// Checked when the earliest deadline of the reactor's connections passes, at most ten times a second (deadlines within 100 ms are swept together). Default: none.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Limits {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How long a server connection may go without writing a byte while
    /// output waits to be sent (a peer that stopped reading): past it the
    /// connection closes with [`CloseReason::WriteStalled`] and its
    /// buffers are freed. Default: none.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Limits {
        self.write_timeout = Some(timeout);
        self
    }

    /// How long a server connection that is closing waits, once its last
    /// bytes are handed to the OS and its sending side is shut, for the
    /// peer to end its stream; meanwhile it reads and drops whatever the
    /// peer still sends (a lingering close, RFC 9112 §9.6), so that the
    /// peer gets our last responses rather than a reset. Default: 2 s.
    pub fn with_linger(mut self, linger: Duration) -> Limits {
        self.linger = linger;
        self
    }

    /// A minimum rate for request bodies, in place of the read timeout
    /// once the protocol says a request's head is in
    /// ([`Protocol::receiving_body`](super::Protocol::receiving_body)):
    /// the body may take `timeout` plus one second for every
    /// `min_bytes_per_sec` bytes received (as Apache's `mod_reqtimeout`
    /// does), so a slow but steady upload goes through and a trickle is
    /// cut off. Past it, the protocol's
    /// [`timeout_response`](super::Protocol::timeout_response) is sent and
    /// the connection closes with [`CloseReason::TimedOut`]. Default: none
    /// (the read timeout covers the whole request).
    pub fn with_body_rate(mut self, timeout: Duration, min_bytes_per_sec: u64) -> Limits {
        self.body_timeout = Some(timeout);
        self.min_body_rate = min_bytes_per_sec;
        self
    }

    /// See [`with_write_timeout`](Limits::with_write_timeout).
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// See [`with_linger`](Limits::with_linger).
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// See [`with_body_rate`](Limits::with_body_rate): the timeout and
    /// the minimum rate in bytes per second.
    pub fn body_rate(&self) -> Option<(Duration, u64)> {
        self.body_timeout.map(|t| (t, self.min_body_rate))
    }

    /// See [`with_read_timeout`](Limits::with_read_timeout).
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// See [`with_idle_timeout`](Limits::with_idle_timeout).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Buffered bytes above which reading pauses.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Buffered bytes at or below which reading resumes.
    pub fn low_water(&self) -> usize {
        self.low_water
    }

    /// Requests in flight at which reading pauses.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The most undecoded input a server connection holds.
    pub fn max_input(&self) -> usize {
        self.max_input
    }
}

/// Why a connection closed: errors and resets are events, not panics.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer ended its stream and everything owed to it was sent.
    Finished,
    /// Closed by this side ([`Connection::close`](super::Connection::close),
    /// a dropped connection).
    Local,
    /// The peer reset the connection (`ECONNRESET`, `EPIPE`,
    /// `ECONNABORTED`).
    Reset,
    /// Another I/O error.
    Io(Arc<io::Error>),
    /// The protocol could not decode the input (the error is its own type,
    /// e.g. [`LineError`](super::LineError)).
    Protocol(Arc<dyn Error + Send + Sync>),
    /// A request did not fit in [`Limits::max_input`] bytes.
    InputTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A request stayed incomplete past the read timeout (its body, past
    /// the body rate's deadline), or the connection sat idle past the
    /// idle timeout ([`Limits`]).
    TimedOut {
        /// Which timeout.
        idle: bool,
        /// Its length.
        after: Duration,
    },
    /// Output waited to be sent and none of it could be written for
    /// [`Limits::with_write_timeout`]: the peer stopped reading.
    WriteStalled {
        /// The write timeout.
        after: Duration,
    },
    /// The server was over a [`ServerBudget`](super::ServerBudget) (too
    /// many connections, or too much buffered input): the protocol's
    /// [`overload_response`](super::Protocol::overload_response) was sent.
    Overloaded,
    /// A handler or the protocol panicked, and the protocol had no error
    /// response for it (the panic was logged with the context dump).
    Panicked,
    /// The reactor was dropped.
    ReactorGone,
    /// The reactor drained ([`Handle::drain`](super::Handle::drain)):
    /// everything the peer sent was answered, then the connection closed.
    Drained,
}

impl CloseReason {
    /// Whether the connection ended abnormally (anything but
    /// [`Finished`](CloseReason::Finished), [`Local`](CloseReason::Local)
    /// or [`Drained`](CloseReason::Drained)).
    pub fn is_error(&self) -> bool {
        !matches!(
            self,
            CloseReason::Finished | CloseReason::Local | CloseReason::Drained
        )
    }

    pub(crate) fn from_io(error: io::Error) -> CloseReason {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => CloseReason::Reset,
            _ => CloseReason::Io(Arc::new(error)),
        }
    }

    /// The reason as an `io::Error`, for calls on a closed connection.
    pub(crate) fn to_io(&self) -> io::Error {
        let kind = match self {
            CloseReason::Finished | CloseReason::Local | CloseReason::Drained => {
                io::ErrorKind::NotConnected
            }
            CloseReason::Reset => io::ErrorKind::ConnectionReset,
            CloseReason::Io(e) => e.kind(),
            CloseReason::Protocol(_) | CloseReason::InputTooLarge { .. } => {
                io::ErrorKind::InvalidData
            }
            CloseReason::TimedOut { .. } | CloseReason::WriteStalled { .. } => {
                io::ErrorKind::TimedOut
            }
            CloseReason::Overloaded => io::ErrorKind::Other,
            CloseReason::Panicked | CloseReason::ReactorGone => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("connection closed: {self}"))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Finished => f.write_str("finished: the peer ended its stream"),
            CloseReason::Local => f.write_str("closed by this side"),
            CloseReason::Reset => f.write_str("reset by the peer"),
            CloseReason::Io(e) => write!(f, "I/O error: {e}"),
            CloseReason::Protocol(e) => write!(f, "undecodable input: {e}"),
            CloseReason::InputTooLarge { limit } => write!(
                f,
                "a request did not fit in {limit} bytes (Limits::with_max_input raises the limit)"
            ),
            CloseReason::TimedOut { idle: true, after } => {
                write!(f, "idle for {after:?} (Limits::with_idle_timeout)")
            }
            CloseReason::TimedOut { idle: false, after } => write!(
                f,
                "a request stayed incomplete for {after:?} \
                 (Limits::with_read_timeout; for a body, Limits::with_body_rate)"
            ),
            CloseReason::WriteStalled { after } => write!(
                f,
                "the peer read nothing for {after:?} while output waited (Limits::with_write_timeout)"
            ),
            CloseReason::Overloaded => f.write_str(
                "the server was over its budget of connections or buffered input (ServerBudget)",
            ),
            CloseReason::Panicked => {
                f.write_str("a handler or the protocol panicked (logged with the context dump)")
            }
            CloseReason::ReactorGone => f.write_str("the reactor was dropped"),
            CloseReason::Drained => {
                f.write_str("the server stopped gracefully: everything received was answered")
            }
        }
    }
}

/// What happened to a connection's transport, as told to its
/// [`Protocol`](super::Protocol) ([`Protocol::event`](super::Protocol::event)).
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportEvent<'a> {
    /// Write backpressure: reading and decoding stopped.
    Paused {
        /// Bytes waiting to be sent.
        buffered: usize,
        /// Requests waiting for their responses.
        in_flight: usize,
    },
    /// Reading and decoding resumed.
    Resumed,
    /// The peer ended its stream (half-close): the requests already
    /// received are still answered.
    ReadClosed,
    /// The connection is closed; the protocol sees nothing more.
    Closed(&'a CloseReason),
}

/// A byte buffer consumed from the front and appended at the back.
#[derive(Default)]
pub(crate) struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Drops `n` bytes from the front (at most all of them).
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
        if self.start == self.data.len() {
            self.clear();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
    }

    /// Gives a large allocation back once the buffer is empty (a big
    /// request body or response passed through): an idle keep-alive
    /// connection keeps at most [`KEEP_WHEN_IDLE`] bytes of buffer.
    pub(crate) fn release_if_empty(&mut self) {
        if self.is_empty() && self.data.capacity() > KEEP_WHEN_IDLE {
            self.data = Vec::new();
            self.start = 0;
        }
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.tail().extend_from_slice(bytes);
    }

    /// The bytes as a vector to append to (consumed bytes are moved out
    /// first, so whatever the caller does to the vector is the content).
    pub(crate) fn tail(&mut self) -> &mut Vec<u8> {
        if self.start > 0 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        &mut self.data
    }

    /// Takes up to `n` bytes from the front.
    pub(crate) fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.len());
        let taken = self.as_slice()[..n].to_vec();
        self.consume(n);
        taken
    }

    /// One read of at most `max` bytes appended at the back, through
    /// `scratch` (the reactor's receive buffer): only the bytes received
    /// are copied here, so this buffer grows to the size of the data, not
    /// of the read.
    fn read_from(
        &mut self,
        stream: &mut impl Receive,
        max: usize,
        scratch: &mut Vec<u8>,
    ) -> io::Result<usize> {
        scratch.clear();
        let received = stream.receive(scratch, max)?;
        self.extend(&scratch[..received]);
        Ok(received)
    }
}

/// The read side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    Open,
    /// The peer ended its stream.
    Eof,
    /// We are closing: input is read and dropped until the peer's end of
    /// stream (the linger deadline of the connection bounds how long).
    Discarding,
    /// Nothing more is read.
    Stopped,
}

/// The write side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writing {
    Open,
    /// Half-close once the buffer is flushed.
    ShutdownWhenFlushed,
    Shut,
}

/// What one transport call did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) read: usize,
    pub(crate) written: usize,
    /// The peer's end of stream was reached in this call.
    pub(crate) eof: bool,
    /// An I/O error other than `WouldBlock` / `Interrupted`.
    pub(crate) error: Option<io::Error>,
}

/// Buffers and state of one connection's byte stream.
pub(crate) struct Transport {
    /// Received bytes not decoded yet.
    pub(crate) input: Buffer,
    /// Bytes waiting to be sent.
    pub(crate) output: Buffer,
    pub(crate) limits: Limits,
    reading: Reading,
    writing: Writing,
    paused: bool,
    /// Reading stopped before the stream was drained (no room, or paused):
    /// more may be waiting, and the readiness events passed over meanwhile
    /// do not come again.
    pending: bool,
}

impl Transport {
    pub(crate) fn new(limits: Limits) -> Transport {
        Transport {
            input: Buffer::default(),
            output: Buffer::default(),
            limits,
            reading: Reading::Open,
            writing: Writing::Open,
            paused: false,
            pending: false,
        }
    }

    /// Reads until the stream is drained, ends, fails, or `input` holds
    /// `cap` bytes. Reads nothing while paused. `ready` is the readiness
    /// that brought us here ([`Ready::ANY`] for a try without an event).
    ///
    /// Drained is `WouldBlock`, or, where it proves the same, a read that
    /// returned fewer bytes than asked for: that saves a second `recv` per
    /// readable event that would only say `WouldBlock`.
    pub(crate) fn read_from(
        &mut self,
        stream: &mut impl Receive,
        cap: usize,
        ready: Ready,
        scratch: &mut Vec<u8>,
    ) -> Outcome {
        // A short read ends this call as drained only when nothing can be
        // lost by stopping there:
        // - The stream is a socket under kernel edge-triggered readiness
        //   (`short_read_drains`). `recv` on a stream socket returns less
        //   than asked for only once it emptied the receive queue (epoll(7)
        //   says as much), and every later arrival (data, end of stream,
        //   error) queues a new event, whose `read_closed`/`error` are read
        //   when the event is collected. What arrives next comes with that
        //   event.
        // - No event was passed over since the stream was last drained
        //   (`pending` is false). Events skipped while paused or without
        //   room are gone; a try without an event (`Ready::ANY`) cannot
        //   tell whether one of them was an end of stream, which raises no
        //   further event, so it reads on to `WouldBlock` or end of stream.
        // - This event reports no `read_closed` nor `error`: once reported,
        //   an end of stream or an error may raise no further event, so we
        //   read on until the read returns 0 or the error.
        let short_read_drains =
            stream.short_read_drains() && !self.pending && !ready.read_closed && !ready.error;
        let mut out = Outcome::default();
        loop {
            let max = match self.reading {
                Reading::Open if self.paused => {
                    self.pending = true;
                    break;
                }
                Reading::Open => {
                    let room = cap.saturating_sub(self.input.len());
                    if room == 0 {
                        self.pending = true;
                        break;
                    }
                    room.min(CHUNK)
                }
                Reading::Discarding => CHUNK,
                Reading::Eof | Reading::Stopped => break,
            };
            match self.input.read_from(stream, max, scratch) {
                Ok(0) => {
                    self.reading = Reading::Eof;
                    self.pending = false;
                    out.eof = true;
                    break;
                }
                Ok(n) => {
                    out.read += n;
                    if self.reading == Reading::Discarding {
                        self.input.clear();
                    }
                    if n < max && short_read_drains {
                        self.pending = false;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.reading = Reading::Stopped;
                    self.pending = false;
                    out.error = Some(e);
                    break;
                }
            }
        }
        out
    }

    /// Writes buffered output until it is empty or the stream is full
    /// (`WouldBlock`); then half-closes if that was asked for.
    pub(crate) fn write_to(&mut self, stream: &mut impl Stream) -> Outcome {
        let mut out = Outcome::default();
        while !self.output.is_empty() && self.writing != Writing::Shut {
            match stream.write(self.output.as_slice()) {
                Ok(0) => {
                    out.error = Some(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => {
                    self.output.consume(n);
                    out.written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            }
        }
        if out.error.is_some() {
            self.writing = Writing::Shut;
            self.output.clear();
            return out;
        }
        if self.output.is_empty() && self.writing == Writing::ShutdownWhenFlushed {
            self.writing = Writing::Shut;
            match stream.shutdown_write() {
                Ok(()) => {}
                // The peer is gone already: nothing left to tell it.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => out.error = Some(e),
            }
        }
        out
    }

    /// Pauses reading when `over` (a high-water mark is passed), resumes it
    /// when `under` (back down to the low-water marks); returns the new
    /// state when it changed. Between the two, the state holds (hysteresis).
    pub(crate) fn backpressure(&mut self, over: bool, under: bool) -> Option<bool> {
        if !self.paused && over {
            self.paused = true;
            Some(true)
        } else if self.paused && under && !over {
            self.paused = false;
            // An edge may have arrived while paused and been skipped.
            self.pending = true;
            Some(false)
        } else {
            None
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether reading should be tried again without a readiness event.
    pub(crate) fn wants_read(&self, cap: usize) -> bool {
        self.pending && !self.paused && self.reading == Reading::Open && self.input.len() < cap
    }

    /// Half-closes once the output is flushed.
    pub(crate) fn shutdown_when_flushed(&mut self) {
        if self.writing == Writing::Open {
            self.writing = Writing::ShutdownWhenFlushed;
        }
    }

    /// Stops reading: pending input is dropped; with `linger`, further input
    /// is read and dropped until the peer ends its stream (the caller
    /// bounds how long).
    pub(crate) fn stop_reading(&mut self, linger: bool) {
        self.input.clear();
        self.input.release_if_empty();
        if matches!(self.reading, Reading::Open | Reading::Discarding) {
            self.reading = if linger {
                Reading::Discarding
            } else {
                Reading::Stopped
            };
        }
    }

    /// The peer ended its stream.
    pub(crate) fn read_eof(&self) -> bool {
        self.reading == Reading::Eof
    }

    /// Nothing more will be read (end of stream, error or stopped).
    pub(crate) fn read_done(&self) -> bool {
        matches!(self.reading, Reading::Eof | Reading::Stopped)
    }

    /// Bytes may still be queued for sending.
    pub(crate) fn write_open(&self) -> bool {
        self.writing == Writing::Open
    }

    /// Our sending side is closed.
    pub(crate) fn write_shut(&self) -> bool {
        self.writing == Writing::Shut
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Write};

    use super::{Buffer, Limits, Receive, Stream, Transport, CHUNK};
    use crate::reactor::readiness::Ready;

    /// A scripted stream: reads come from `reads` (an empty entry is end
    /// of stream, none left is `WouldBlock`), writes accept at most `room`
    /// bytes. With `edge_triggered`, a short read proves it drained, as for
    /// a socket under epoll.
    #[derive(Default)]
    struct Script {
        reads: Vec<io::Result<Vec<u8>>>,
        written: Vec<u8>,
        room: usize,
        shut: bool,
        edge_triggered: bool,
        /// `read` calls so far.
        calls: usize,
    }

    impl Script {
        fn edge_triggered(reads: Vec<io::Result<Vec<u8>>>) -> Script {
            Script {
                reads,
                edge_triggered: true,
                ..Script::default()
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.reads.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut chunk = self.reads.remove(0)?;
            if chunk.len() > buf.len() {
                let rest = chunk.split_off(buf.len());
                self.reads.insert(0, Ok(rest));
            }
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room -= n;
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Script {
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.shut = true;
            Ok(())
        }
    }

    impl Receive for Script {
        fn short_read_drains(&self) -> bool {
            self.edge_triggered
        }
    }

    /// A readable event, as epoll reports one.
    const READABLE: Ready = Ready {
        readable: true,
        writable: false,
        read_closed: false,
        write_closed: false,
        error: false,
    };

    #[test]
    fn buffer_consumes_from_the_front_and_appends_at_the_back() {
        let mut buf = Buffer::default();
        buf.extend(b"hello world");
        buf.consume(6);
        assert_eq!(buf.as_slice(), b"world");
        buf.tail().extend_from_slice(b"!");
        assert_eq!(buf.as_slice(), b"world!");
        assert_eq!(buf.take(3), b"wor");
        buf.consume(100);
        assert!(buf.is_empty());
    }

    #[test]
    fn interrupted_is_retried_and_would_block_means_drained() {
        let mut stream = Script {
            reads: vec![
                Ok(b"ab".to_vec()),
                Err(io::ErrorKind::Interrupted.into()),
                Ok(b"cd".to_vec()),
            ],
            ..Script::default()
        };
        let mut t = Transport::new(Limits::default());
        let out = t.read_from(&mut stream, 1024, Ready::ANY, &mut Vec::new());
        assert_eq!((out.read, out.eof, out.error.is_none()), (4, false, true));
        assert_eq!(t.input.as_slice(), b"abcd");
        assert!(!t.wants_read(1024), "drained: wait for the next event");
    }

    #[test]
    fn reading_stops_at_the_cap_and_asks_to_be_retried() {
        let mut stream = Script {
            reads: vec![Ok(vec![b'x'; 100])],
            ..Script::default()
        };
        let mut t = Transport::new(Limits::default());
        assert_eq!(
            t.read_from(&mut stream, 60, Ready::ANY, &mut Vec::new())
                .read,
            60
        );
        assert!(!t.wants_read(60));
        t.input.consume(60);
        assert!(t.wants_read(60));
        assert_eq!(
            t.read_from(&mut stream, 60, Ready::ANY, &mut Vec::new())
                .read,
            40
        );
    }

    #[test]
    fn errors_come_back_as_outcomes() {
        let mut stream = Script {
            reads: vec![
                Ok(b"x".to_vec()),
                Err(io::ErrorKind::ConnectionReset.into()),
            ],
            ..Script::default()
        };
        let mut t = Transport::new(Limits::default());
        let out = t.read_from(&mut stream, 1024, Ready::ANY, &mut Vec::new());
        assert_eq!(out.read, 1);
        assert_eq!(
            out.error.map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionReset)
        );
        assert!(t.read_done());
    }

    #[test]
    fn backpressure_pauses_over_the_high_marks_and_resumes_under_the_low_ones() {
        let mut t = Transport::new(Limits::default());
        assert_eq!(t.backpressure(false, false), None);
        assert_eq!(t.backpressure(true, false), Some(true));
        let mut stream = Script {
            reads: vec![Ok(b"x".to_vec())],
            ..Script::default()
        };
        assert_eq!(
            t.read_from(&mut stream, 1024, Ready::ANY, &mut Vec::new())
                .read,
            0,
            "paused: nothing read"
        );
        assert_eq!(
            t.backpressure(false, false),
            None,
            "between the marks: holds"
        );
        assert_eq!(
            t.backpressure(true, true),
            None,
            "a high mark is still passed"
        );
        assert_eq!(t.backpressure(false, true), Some(false));
        assert!(t.wants_read(1024));
        assert_eq!(
            t.read_from(&mut stream, 1024, Ready::ANY, &mut Vec::new())
                .read,
            1
        );
    }

    #[test]
    fn half_close_waits_for_the_output_to_drain() {
        let mut stream = Script {
            room: 3,
            ..Script::default()
        };
        let mut t = Transport::new(Limits::default());
        t.output.extend(b"hello");
        t.shutdown_when_flushed();
        assert_eq!(t.write_to(&mut stream).written, 3);
        assert!(!stream.shut && !t.write_shut());
        stream.room = 10;
        assert_eq!(t.write_to(&mut stream).written, 2);
        assert!(stream.shut && t.write_shut());
        assert_eq!(stream.written, b"hello");
    }

    #[test]
    fn lingering_reads_drop_input_until_end_of_stream() {
        let mut stream = Script {
            reads: vec![Ok(b"junk".to_vec()), Ok(Vec::new())],
            ..Script::default()
        };
        let mut t = Transport::new(Limits::default());
        t.input.extend(b"partial");
        t.stop_reading(true);
        assert!(t.input.is_empty());
        let out = t.read_from(&mut stream, 1024, Ready::ANY, &mut Vec::new());
        assert!(out.eof && t.input.is_empty() && t.read_done());
    }

    #[test]
    fn the_default_receive_appends_what_one_read_returned() {
        let mut stream = Script {
            reads: vec![Ok(b"abc".to_vec())],
            ..Script::default()
        };
        let mut data = b"xy".to_vec();
        assert_eq!(stream.receive(&mut data, 2).unwrap(), 2);
        assert_eq!(data, b"xyab");
        assert_eq!(stream.receive(&mut data, 8).unwrap(), 1);
        assert_eq!(data, b"xyabc");
        assert!(stream.receive(&mut data, 8).is_err());
        assert_eq!(data, b"xyabc", "a failed read appends nothing");
    }

    #[test]
    fn on_an_edge_triggered_stream_a_short_read_means_drained() {
        let mut stream = Script::edge_triggered(vec![Ok(b"ab\n".to_vec()), Ok(b"cd\n".to_vec())]);
        let mut t = Transport::new(Limits::default());
        let out = t.read_from(&mut stream, 1024, READABLE, &mut Vec::new());
        assert_eq!(
            (out.read, stream.calls),
            (3, 1),
            "no second read for WouldBlock"
        );
        assert!(!t.wants_read(1024), "drained: wait for the next event");
        // What arrives later raises its own event and is read then.
        let out = t.read_from(&mut stream, 1024, READABLE, &mut Vec::new());
        assert_eq!((out.read, out.eof), (3, false));
        assert_eq!(t.input.as_slice(), b"ab\ncd\n");
    }

    #[test]
    fn a_read_that_fills_what_was_asked_for_reads_on() {
        let mut stream = Script::edge_triggered(vec![Ok(vec![b'x'; CHUNK + 10])]);
        let mut t = Transport::new(Limits::default());
        let out = t.read_from(&mut stream, 4 * CHUNK, READABLE, &mut Vec::new());
        assert_eq!((out.read, stream.calls), (CHUNK + 10, 2));
    }

    #[test]
    fn an_event_reporting_end_of_stream_reads_past_a_short_read_to_it() {
        let mut stream = Script::edge_triggered(vec![Ok(b"last".to_vec()), Ok(Vec::new())]);
        let mut t = Transport::new(Limits::default());
        let closed = Ready {
            read_closed: true,
            ..READABLE
        };
        let out = t.read_from(&mut stream, 1024, closed, &mut Vec::new());
        assert_eq!((out.read, out.eof), (4, true));
        assert!(t.read_eof());
    }

    #[test]
    fn an_end_of_stream_after_a_short_read_is_seen_with_its_own_event() {
        let mut stream = Script::edge_triggered(vec![Ok(b"data".to_vec())]);
        let mut t = Transport::new(Limits::default());
        let out = t.read_from(&mut stream, 1024, READABLE, &mut Vec::new());
        assert_eq!((out.read, out.eof), (4, false));
        // The peer ends its stream later: epoll reports it as a new event.
        stream.reads.push(Ok(Vec::new()));
        let closed = Ready {
            read_closed: true,
            ..READABLE
        };
        let out = t.read_from(&mut stream, 1024, closed, &mut Vec::new());
        assert_eq!((out.read, out.eof), (0, true));
        // A read returning 0 is end of stream even when not announced.
        let mut stream = Script::edge_triggered(vec![Ok(Vec::new())]);
        let mut t = Transport::new(Limits::default());
        assert!(
            t.read_from(&mut stream, 1024, READABLE, &mut Vec::new())
                .eof
        );
    }

    #[test]
    fn an_event_reporting_an_error_reads_past_a_short_read_to_it() {
        let mut stream = Script::edge_triggered(vec![
            Ok(b"x".to_vec()),
            Err(io::ErrorKind::ConnectionReset.into()),
        ]);
        let mut t = Transport::new(Limits::default());
        let failed = Ready {
            error: true,
            ..READABLE
        };
        let out = t.read_from(&mut stream, 1024, failed, &mut Vec::new());
        assert_eq!(out.read, 1);
        assert_eq!(
            out.error.map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionReset)
        );
    }

    #[test]
    fn after_events_were_passed_over_reading_goes_on_to_would_block() {
        // An end of stream whose event came while paused comes no more:
        // the read after resuming must not stop at the short read.
        let mut stream = Script::edge_triggered(vec![Ok(b"held".to_vec()), Ok(Vec::new())]);
        let mut t = Transport::new(Limits::default());
        t.backpressure(true, false);
        let closed = Ready {
            read_closed: true,
            ..READABLE
        };
        assert_eq!(
            t.read_from(&mut stream, 1024, closed, &mut Vec::new()).read,
            0
        );
        t.backpressure(false, true);
        assert!(t.wants_read(1024));
        let out = t.read_from(&mut stream, 1024, Ready::ANY, &mut Vec::new());
        assert_eq!((out.read, out.eof), (4, true));

        // The same after stopping for want of room.
        let mut stream = Script::edge_triggered(vec![Ok(vec![b'x'; 100]), Ok(Vec::new())]);
        let mut t = Transport::new(Limits::default());
        assert_eq!(
            t.read_from(&mut stream, 60, closed, &mut Vec::new()).read,
            60
        );
        t.input.consume(60);
        let out = t.read_from(&mut stream, 60, Ready::ANY, &mut Vec::new());
        assert_eq!((out.read, out.eof), (40, true));
    }

    #[test]
    fn lingering_reads_stop_at_a_short_read_too() {
        let mut stream = Script::edge_triggered(vec![Ok(b"junk".to_vec()), Ok(Vec::new())]);
        let mut t = Transport::new(Limits::default());
        t.stop_reading(true);
        let out = t.read_from(&mut stream, 1024, READABLE, &mut Vec::new());
        assert_eq!((out.read, out.eof, t.read_done()), (4, false, false));
        let closed = Ready {
            read_closed: true,
            ..READABLE
        };
        let out = t.read_from(&mut stream, 1024, closed, &mut Vec::new());
        assert!(out.eof && t.input.is_empty() && t.read_done());
    }
}
