//! How much an HTTP request may take, and the transport limits that go
//! with it.

use std::time::Duration;

use crate::reactor::{Limits, ServerBudget};

/// How large a request may be, and how long it may take: the
/// [`HttpProtocol`](super::HttpProtocol)'s limits and, through
/// [`transport_limits`](HttpLimits::transport_limits), the connection's.
///
/// | limit | default | past it |
/// |---|---|---|
/// | [`max_header_bytes`](HttpLimits::max_header_bytes): request line and header fields | 16 KiB | 431 |
/// | [`max_headers`](HttpLimits::max_headers): header (or trailer) fields | 100 | 431 |
/// | [`max_body`](HttpLimits::max_body): body bytes | 1 MiB | 413 |
/// | [`max_chunk_framing`](HttpLimits::max_chunk_framing): chunk-size lines, extensions, CRLFs of a chunked body | 64 KiB or `max_body / 8`, the larger | 413 |
/// | trailer section of a chunked body | `max_header_bytes` | 431 |
/// | [`read_timeout`](HttpLimits::read_timeout): a request's head (and a body, without a body rate) arriving | 10 s | 408, close |
/// | [`body_rate`](HttpLimits::body_rate): a body arriving, in `timeout` + 1 s per `min_bytes_per_sec` bytes | 20 s + 1 s per 500 B | 408, close |
/// | [`idle_timeout`](HttpLimits::idle_timeout): a keep-alive connection unused | 60 s | close |
/// | [`write_timeout`](HttpLimits::write_timeout): no byte of owed output taken by the peer | 30 s | close, buffers freed |
/// | [`linger`](HttpLimits::linger): waiting for the peer's close after our last byte | 2 s | close |
/// | [`max_connections`](HttpLimits::max_connections): connections of one server | 16,384 | 503, close |
/// | [`max_buffered_input`](HttpLimits::max_buffered_input): request input of one server beyond 4 KiB per connection | 64 MiB | 503, close |
///
/// A `Content-Length` over `max_body` is refused as soon as the header
/// fields are in, before any of the body is read (and before `100
/// Continue`).
///
/// The last two are one server's [`ServerBudget`], shared by every
/// connection of the [`Serve`](crate::reactor::Serve) that
/// [`http::serve_with`](super::serve_with) returns and its clones
/// (create it once and clone it into every reactor thread's listener).
/// With the defaults, the request input a server holds stays under
/// 16,384 × 4 KiB + 64 MiB = 128 MiB whatever its clients do; a
/// connection's own input, under [`max_input`](HttpLimits::max_input).
///
/// # The transport's `max_input`
///
/// The reactor keeps a request's bytes, body included, until the protocol
/// decodes it whole, and closes a connection without a response once
/// [`Limits::max_input`] bytes are waiting undecoded. So that the
/// protocol's limits (and their 4xx responses) come first, `max_input`
/// must exceed the largest request these limits let through:
/// [`max_input`](HttpLimits::max_input) computes it, and
/// [`transport_limits`](HttpLimits::transport_limits) sets it, with the
/// timeouts. [`http::serve`](super::serve) does that for you.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use milieu::http::HttpLimits;
///
/// let limits = HttpLimits::new().with_max_body(64 * 1024).with_read_timeout(Duration::from_secs(5));
/// let transport = limits.transport_limits();
/// assert!(transport.max_input() > limits.max_header_bytes() + limits.max_body());
/// assert_eq!(transport.read_timeout(), Some(Duration::from_secs(5)));
/// assert_eq!(transport.idle_timeout(), Some(Duration::from_secs(60)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    max_header_bytes: usize,
    max_headers: usize,
    max_body: usize,
    /// `None`: derived from `max_body` (see `max_chunk_framing`).
    max_chunk_framing: Option<usize>,
    read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    body_rate: Option<(Duration, u64)>,
    linger: Duration,
    max_connections: usize,
    max_buffered_input: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
            max_chunk_framing: None,
            read_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(30)),
            // Apache's `mod_reqtimeout` default (`body=20,MinRate=500`).
            body_rate: Some((Duration::from_secs(20), 500)),
            linger: Duration::from_secs(2),
            max_connections: 16 * 1024,
            max_buffered_input: 64 * 1024 * 1024,
        }
    }
}

impl HttpLimits {
    /// The defaults (see the table above).
    pub fn new() -> HttpLimits {
        HttpLimits::default()
    }

    /// At most `bytes` for the request line and header fields together
    /// (leading empty lines and the final empty line included); also the
    /// bound on a chunked body's trailer section.
    pub fn with_max_header_bytes(mut self, bytes: usize) -> HttpLimits {
        self.max_header_bytes = bytes;
        self
    }

    /// At most `fields` header fields (and trailer fields).
    pub fn with_max_headers(mut self, fields: usize) -> HttpLimits {
        self.max_headers = fields;
        self
    }

    /// At most `bytes` of body (decoded data, for a chunked body).
    pub fn with_max_body(mut self, bytes: usize) -> HttpLimits {
        self.max_body = bytes;
        self
    }

    /// At most `bytes` of framing in a chunked body: chunk-size lines
    /// (with their extensions) and the CRLF after each chunk's data, the
    /// data not counted (the trailer section has its own bound,
    /// [`max_header_bytes`](HttpLimits::with_max_header_bytes)).
    ///
    /// The default is the larger of 64 KiB and an eighth of
    /// [`max_body`](HttpLimits::max_body). A chunk costs 5 bytes of
    /// framing at least (`1\r\n` before its data, `\r\n` after) and,
    /// without extensions, 10 at most up to 16 MiB chunks, so the default
    /// takes 6,500 chunks at least, and a body at the body limit in chunks
    /// of 64 bytes or more (6 bytes of framing each, under an eighth); it
    /// grows with `max_body`, as a larger body comes in more chunks. What
    /// it bounds is the waste: the framing is buffered with the body until
    /// the request is complete, so it adds at most an eighth to the memory
    /// a large request may take.
    pub fn with_max_chunk_framing(mut self, bytes: usize) -> HttpLimits {
        self.max_chunk_framing = Some(bytes);
        self
    }

    /// How long one request may take to arrive once its first byte is in
    /// (`None`: no limit). Past it the client gets `408 Request Timeout`
    /// and the connection closes.
    pub fn with_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> HttpLimits {
        self.read_timeout = timeout.into();
        self
    }

    /// How long a keep-alive connection may wait for its next request
    /// (`None`: no limit). Past it the connection closes.
    pub fn with_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> HttpLimits {
        self.idle_timeout = timeout.into();
        self
    }

    /// How long the peer may go without taking a byte of the output owed
    /// to it (`None`: no limit). Past it the connection closes and its
    /// buffers are freed: a client that pipelines requests and never reads
    /// the answers holds nothing for long.
    pub fn with_write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> HttpLimits {
        self.write_timeout = timeout.into();
        self
    }

    /// A minimum rate for request bodies (`None`: the read timeout covers
    /// the whole request): once a request's header section is in, its
    /// body may take `timeout` plus one second for every
    /// `min_bytes_per_sec` bytes received. A slow but steady upload goes
    /// through; a trickle gets `408` and a close. See
    /// [`Limits::with_body_rate`].
    pub fn with_body_rate(mut self, rate: impl Into<Option<(Duration, u64)>>) -> HttpLimits {
        self.body_rate = rate.into();
        self
    }

    /// How long a closing connection waits for the peer's close once our
    /// last bytes are out, reading and dropping what it still sends
    /// ([`Limits::with_linger`]).
    pub fn with_linger(mut self, linger: Duration) -> HttpLimits {
        self.linger = linger;
        self
    }

    /// At most `connections` connections served at once by one server
    /// (past it: `503`, `Retry-After: 1`, close; see [`ServerBudget`]).
    /// Each is a file descriptor: a process whose open-file limit is
    /// lower fails to accept past it instead, so raise the limit at
    /// start-up ([`OpenFilesLimit::raise_to`](crate::reactor::OpenFilesLimit::raise_to)).
    pub fn with_max_connections(mut self, connections: usize) -> HttpLimits {
        self.max_connections = connections;
        self
    }

    /// At most `bytes` of request input buffered by one server's
    /// connections together, beyond 4 KiB each (a request that does not
    /// fit in what is left: `503`, close; see [`ServerBudget`]).
    pub fn with_max_buffered_input(mut self, bytes: usize) -> HttpLimits {
        self.max_buffered_input = bytes;
        self
    }

    /// See [`with_write_timeout`](HttpLimits::with_write_timeout).
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// See [`with_body_rate`](HttpLimits::with_body_rate).
    pub fn body_rate(&self) -> Option<(Duration, u64)> {
        self.body_rate
    }

    /// See [`with_linger`](HttpLimits::with_linger).
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// See [`with_max_connections`](HttpLimits::with_max_connections).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// See [`with_max_buffered_input`](HttpLimits::with_max_buffered_input).
    pub fn max_buffered_input(&self) -> usize {
        self.max_buffered_input
    }

    /// A new [`ServerBudget`] of [`max_connections`](HttpLimits::max_connections)
    /// and [`max_buffered_input`](HttpLimits::max_buffered_input).
    pub fn budget(&self) -> ServerBudget {
        ServerBudget::new(self.max_connections, self.max_buffered_input)
    }

    /// See [`with_max_header_bytes`](HttpLimits::with_max_header_bytes).
    pub fn max_header_bytes(&self) -> usize {
        self.max_header_bytes
    }

    /// See [`with_max_headers`](HttpLimits::with_max_headers).
    pub fn max_headers(&self) -> usize {
        self.max_headers
    }

    /// See [`with_max_body`](HttpLimits::with_max_body).
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// See [`with_max_chunk_framing`](HttpLimits::with_max_chunk_framing).
    pub fn max_chunk_framing(&self) -> usize {
        self.max_chunk_framing
            .unwrap_or_else(|| (64 * 1024).max(self.max_body / 8))
    }

    /// See [`with_read_timeout`](HttpLimits::with_read_timeout).
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// See [`with_idle_timeout`](HttpLimits::with_idle_timeout).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The transport's [`max_input`](Limits::max_input) these limits need:
    /// one byte more than the largest request they accept
    /// (`max_header_bytes` of header section, then a chunked body of
    /// `max_body` data, `max_chunk_framing` of framing and
    /// `max_header_bytes` of trailer section), so that the protocol
    /// refuses any larger request with its own status before the
    /// reactor's limit is reached.
    pub fn max_input(&self) -> usize {
        self.max_header_bytes
            .saturating_mul(2)
            .saturating_add(self.max_body)
            .saturating_add(self.max_chunk_framing())
            .saturating_add(1)
    }

    /// [`Limits::new`] with [`max_input`](HttpLimits::max_input), the
    /// timeouts and the linger set from these limits.
    pub fn transport_limits(&self) -> Limits {
        self.apply_to(Limits::new())
    }

    /// `limits` (water marks, pipelining depth) with
    /// [`max_input`](HttpLimits::max_input), the timeouts, the body rate
    /// and the linger set from these limits. A timeout that is `None` here
    /// is left as it is in `limits`.
    pub fn apply_to(&self, limits: Limits) -> Limits {
        let mut limits = limits
            .with_max_input(self.max_input())
            .with_linger(self.linger);
        if let Some(timeout) = self.write_timeout {
            limits = limits.with_write_timeout(timeout);
        }
        if let Some((timeout, rate)) = self.body_rate {
            limits = limits.with_body_rate(timeout, rate);
        }
        if let Some(timeout) = self.read_timeout {
            limits = limits.with_read_timeout(timeout);
        }
        if let Some(timeout) = self.idle_timeout {
            limits = limits.with_idle_timeout(timeout);
        }
        limits
    }
}
