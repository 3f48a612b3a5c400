//! Testing support (feature `test-util`): memory transports, and a
//! connected client/server pair pumped tick by tick, so protocol and
//! handler code is tested deterministically, without sockets.
//!
//! A [`MemoryStream`] is one end of a pair of bounded in-memory pipes: it
//! reads what the other end wrote, says `WouldBlock` when there is nothing
//! to read or no room to write, and reads end of stream once the other end
//! shut its sending side or was dropped. The reactor drives a memory
//! stream exactly as it drives a TCP stream (same transport, protocol and
//! application code, same steps of the tick); only the readiness comes
//! from the pipe instead of epoll.
//!
//! [`Pair`] puts the server end in a reactor on a virtual clock and gives
//! the test the client end: write bytes, [`tick`](Pair::tick) or
//! [`pump`](Pair::pump), read what the server answered.
//!
//! # Examples
//!
//! ```
//! use milieu::reactor::testing::Pair;
//! use milieu::reactor::{serve, LineProtocol};
//!
//! let mut pair = Pair::new(|| serve(LineProtocol::new(), |line: String| line.to_uppercase()))?;
//! pair.send(b"hello\nwor")?;
//! pair.pump()?;
//! assert_eq!(pair.receive(), b"HELLO\n"); // "wor" waits for the rest of its line
//! assert_eq!(pair.exchange(b"ld\n")?, b"WORLD\n");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::time::Duration;

use super::application::Serve;
use super::event_loop::{NotVirtual, Reactor};
use super::info::ConnectionId;
pub use super::memory::{MemoryStream, DEFAULT_CAPACITY};
use super::protocol::Protocol;
use super::stats::TickStats;
use super::time::{Clock, VirtualClock};

/// Ticks [`Pair::pump`] runs at most before giving up.
const PUMP_LIMIT: usize = 10_000;

/// A server connection in a reactor on a virtual clock, and the client end
/// of its memory transport, pumped tick by tick.
///
/// Nothing happens between calls: each [`tick`](Pair::tick) is one
/// [`Reactor::tick`] that never waits, and time moves only with
/// [`advance`](Pair::advance), so a test sees every intermediate state.
pub struct Pair {
    reactor: Reactor,
    client: MemoryStream,
    server: ConnectionId,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("server", &self.server)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Pair {
    /// A pair whose server is made by `factory`, in a fresh reactor on a
    /// virtual clock, with [`DEFAULT_CAPACITY`] bytes per direction.
    ///
    /// # Errors
    ///
    /// If the reactor cannot be built (see [`Builder::build`](super::Builder::build)).
    #[track_caller]
    pub fn new<F, P>(factory: F) -> io::Result<Pair>
    where
        F: FnOnce() -> Serve<P> + Send + 'static,
        P: Protocol,
    {
        let reactor = Reactor::builder()
            .clock(Clock::Virtual(VirtualClock::new()))
            .name("testing")
            .build()?;
        Pair::with_reactor(reactor, DEFAULT_CAPACITY, factory)
    }

    /// A pair on `reactor` (built by the test, e.g. with a subscriber in its
    /// context or other transport limits), with `capacity` bytes per
    /// direction: a small capacity makes backpressure easy to reach.
    ///
    /// # Errors
    ///
    /// An error if the reactor's I/O is shut down.
    #[track_caller]
    pub fn with_reactor<F, P>(reactor: Reactor, capacity: usize, factory: F) -> io::Result<Pair>
    where
        F: FnOnce() -> Serve<P> + Send + 'static,
        P: Protocol,
    {
        let (client, server_end) = MemoryStream::pair(capacity);
        let handle = reactor.handle();
        let server = reactor
            .context()
            .run(|| handle.serve_memory(server_end, factory))?;
        Ok(Pair {
            reactor,
            client,
            server,
        })
    }

    /// The client end: write requests to it, read responses from it.
    pub fn client(&self) -> &MemoryStream {
        &self.client
    }

    /// The reactor the server runs on.
    pub fn reactor(&mut self) -> &mut Reactor {
        &mut self.reactor
    }

    /// The server connection's id.
    pub fn server_id(&self) -> ConnectionId {
        self.server
    }

    /// One reactor tick that does not wait.
    ///
    /// # Errors
    ///
    /// The error of the readiness poll.
    pub fn tick(&mut self) -> io::Result<TickStats> {
        self.reactor.tick(Some(Duration::ZERO))
    }

    /// Ticks until a tick does nothing (nothing read, written, decoded,
    /// polled or fired); returns how many ticks ran, the idle one included.
    ///
    /// # Errors
    ///
    /// The error of the readiness poll, or `TimedOut` if the reactor is
    /// still busy after 10 000 ticks (a task that keeps waking itself).
    pub fn pump(&mut self) -> io::Result<usize> {
        for ticks in 1..=PUMP_LIMIT {
            let stats = self.tick()?;
            if stats.is_idle() && self.reactor.io_idle() {
                return Ok(ticks);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("Pair::pump: the reactor is still busy after {PUMP_LIMIT} ticks"),
        ))
    }

    /// Writes all of `bytes` to the server, pumping while the pipe is full.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` if the server end is gone; `WriteZero` if the server
    /// stopped reading (backpressure) with bytes left to send.
    pub fn send(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.client.write_bytes(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let before = self.client.unread_by_peer();
                    self.pump()?;
                    if self.client.unread_by_peer() >= before {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!(
                                "Pair::send: the server reads no more ({} bytes left to send; \
                                 read its responses to lift backpressure)",
                                bytes.len()
                            ),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Everything the server sent that the client has not read yet.
    pub fn receive(&mut self) -> Vec<u8> {
        self.client.read_available()
    }

    /// [`send`](Pair::send), [`pump`](Pair::pump), [`receive`](Pair::receive).
    ///
    /// # Errors
    ///
    /// As `send` and `pump`.
    pub fn exchange(&mut self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        self.send(bytes)?;
        self.pump()?;
        Ok(self.receive())
    }

    /// Moves the virtual clock forward by `delay` (firing the timers due),
    /// then pumps.
    ///
    /// # Errors
    ///
    /// `Unsupported` if the reactor is not on a virtual clock; as `pump`.
    pub fn advance(&mut self, delay: Duration) -> io::Result<usize> {
        self.reactor
            .advance(delay)
            .map_err(|e: NotVirtual| io::Error::new(io::ErrorKind::Unsupported, e))?;
        self.pump()
    }

    /// Whether the server ended its stream and the client read it all.
    pub fn server_closed(&self) -> bool {
        self.client.at_eof()
    }
}
