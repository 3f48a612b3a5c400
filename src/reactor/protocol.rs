//! Protocol: turns received bytes into requests and responses into bytes.
//!
//! A [`Protocol`] value holds the decoding state of one connection (the
//! reactor asks the connection's factory for a fresh one per connection).
//! It never touches a socket: the transport hands it the bytes received so
//! far and takes back the bytes to send, so protocols are tested with
//! plain byte slices or, tick by tick, with `testing::Pair` (feature `test-util`).
//! [`LineProtocol`] ships with the crate; HTTP/1.1 is [`HttpProtocol`](crate::http::HttpProtocol).

use std::error::Error;
use std::fmt;

use super::transport::TransportEvent;

/// Decodes requests from bytes and encodes responses to bytes.
///
/// The reactor calls [`decode`](Protocol::decode) with the bytes received
/// and not consumed yet, as long as it returns requests; whatever it does
/// not consume (a partial request) is kept and handed in again, extended,
/// once more bytes arrive. [`requests`](Protocol::requests) is the same
/// loop as an iterator.
///
/// # Examples
///
/// A protocol whose requests are single bytes, answered in upper case:
///
/// ```
/// use std::convert::Infallible;
/// use milieu::reactor::Protocol;
///
/// struct Bytes;
///
/// impl Protocol for Bytes {
///     type Request = u8;
///     type Response = u8;
///     type Error = Infallible;
///
///     fn decode(&mut self, input: &[u8]) -> Result<Option<(u8, usize)>, Infallible> {
///         Ok(input.first().map(|&b| (b, 1)))
///     }
///
///     fn encode(&mut self, response: u8, output: &mut Vec<u8>) {
///         output.push(response.to_ascii_uppercase());
///     }
/// }
///
/// let mut protocol = Bytes;
/// let requests: Vec<u8> = protocol.requests(b"ab").map(Result::unwrap).collect();
/// assert_eq!(requests, b"ab");
/// ```
pub trait Protocol: Send + 'static {
    /// A decoded request.
    type Request: Send + 'static;
    /// What the application answers.
    type Response: Send + 'static;
    /// Why input could not be decoded. The connection is closed with
    /// [`CloseReason::Protocol`](super::CloseReason::Protocol) holding it.
    type Error: Error + Send + Sync + 'static;

    /// Decodes the first complete request of `input`: `Ok(Some((request,
    /// consumed)))` with `consumed > 0` the bytes it took, `Ok(None)` if
    /// `input` holds no complete request yet (it is handed in again once
    /// more bytes arrived), or the error that makes `input` undecodable.
    ///
    /// # Errors
    ///
    /// Input that can never become a valid request (the connection closes
    /// after the responses owed before it are sent).
    fn decode(&mut self, input: &[u8]) -> Result<Option<(Self::Request, usize)>, Self::Error>;

    /// Like [`decode`](Protocol::decode), once the peer ended its stream:
    /// `input` will not grow any more. The default decodes as usual (a
    /// partial request left at the end is dropped).
    ///
    /// # Errors
    ///
    /// As for `decode`.
    fn decode_eof(&mut self, input: &[u8]) -> Result<Option<(Self::Request, usize)>, Self::Error> {
        self.decode(input)
    }

    /// Appends the bytes of `response` to `output`.
    fn encode(&mut self, response: Self::Response, output: &mut Vec<u8>);

    /// A response to send for undecodable input before the connection
    /// closes (default: none).
    fn error_response(&mut self, error: &Self::Error) -> Option<Self::Response> {
        let _ = error;
        None
    }

    /// A response to send in place of one whose handler panicked; the
    /// connection then goes on. With `None` (the default) the connection
    /// closes once the responses before it are sent.
    fn panic_response(&mut self) -> Option<Self::Response> {
        None
    }

    /// Told what happens to the transport: backpressure, half-close, close.
    fn event(&mut self, event: &TransportEvent<'_>) {
        let _ = event;
    }

    /// Whether the connection should end once the responses owed so far
    /// are sent (HTTP's `Connection: close`). Asked after each decoded
    /// request and each encoded response; once it returns true nothing more
    /// is decoded, responses of requests after the one that closed are not
    /// sent, and the connection closes after the flush. Default: never.
    fn closing(&self) -> bool {
        false
    }

    /// Bytes to send now, while a request is still incomplete (HTTP's
    /// `100 Continue` once the headers of a request that expects it are
    /// in). Called whenever undecoded input waits and no response is owed
    /// (so interim output never overtakes a response): after
    /// [`decode`](Protocol::decode) returned `Ok(None)`, and again once the
    /// responses to earlier requests are sent. The protocol decides from
    /// its own state whether anything is due, and should send it once.
    /// Default: nothing.
    fn interim(&mut self, output: &mut Vec<u8>) {
        let _ = output;
    }

    /// The response to send when a request stays incomplete past the read
    /// timeout ([`Limits::with_read_timeout`](super::Limits::with_read_timeout)):
    /// HTTP's `408 Request Timeout`. The connection closes after it either
    /// way. Default: none.
    fn timeout_response(&mut self) -> Option<Self::Response> {
        None
    }

    /// The response for a connection the server does not take on, or whose
    /// request does not fit in what is left of a
    /// [`ServerBudget`](super::ServerBudget): HTTP's `503 Service
    /// Unavailable`. The connection closes after it either way. Default:
    /// none.
    fn overload_response(&mut self) -> Option<Self::Response> {
        None
    }

    /// Whether the head of a request is in and its body is on its way:
    /// then the [body rate](super::Limits::with_body_rate), if set, bounds
    /// the wait instead of the read timeout. Default: never.
    fn receiving_body(&self) -> bool {
        false
    }

    /// Whether `request` (decoded, not handled yet) must be handled alone:
    /// its handler runs only once every earlier response is encoded (not
    /// at all if one of them closes the connection), and no later request
    /// is handled until it is answered. For requests with side effects
    /// (HTTP's unsafe methods, RFC 9112 §9.3.2): a pipelined request
    /// handled ahead of a response that closes the connection would be
    /// done and never answered. Default: never (pipelined requests are
    /// handled as they arrive).
    fn runs_alone(&self, request: &Self::Request) -> bool {
        let _ = request;
        false
    }

    /// Called before the last response of a draining connection is
    /// encoded ([`Handle::drain`](super::Handle::drain)): the connection
    /// ends after it, every request it received being answered, so a
    /// protocol that can tell the peer does it in this response, and the
    /// peer knows that a request it sends later is not handled (HTTP adds
    /// `Connection: close`; a client then opens a new connection for its
    /// next request instead of losing it to the close). Default: nothing.
    fn last_response(&mut self) {}

    /// Whether `response` closes the connection whatever its request said
    /// (HTTP: the handler set `Connection: close`). Asked before a
    /// response is encoded while a request that
    /// [runs alone](Protocol::runs_alone) waits behind it, as
    /// [`closing`](Protocol::closing) may then be that request's own.
    /// Default: never.
    fn response_closes(&self, response: &Self::Response) -> bool {
        let _ = response;
        false
    }

    /// The complete requests of `input`, in order, as an iterator; its
    /// [`rest`](Requests::rest) is the partial input left over.
    fn requests<'a>(&'a mut self, input: &'a [u8]) -> Requests<'a, Self>
    where
        Self: Sized,
    {
        Requests {
            protocol: self,
            input,
            consumed: 0,
            at_eof: false,
            done: false,
        }
    }
}

/// The complete requests in some input: see [`Protocol::requests`].
///
/// Stops after the first error, and after a request that consumed nothing
/// (a protocol bug that would otherwise loop forever).
pub struct Requests<'a, P: Protocol> {
    protocol: &'a mut P,
    input: &'a [u8],
    consumed: usize,
    at_eof: bool,
    done: bool,
}

impl<P: Protocol> fmt::Debug for Requests<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requests")
            .field("consumed", &self.consumed)
            .field("rest", &self.rest().len())
            .finish_non_exhaustive()
    }
}

impl<'a, P: Protocol> Requests<'a, P> {
    /// Decodes as if the peer had ended its stream after this input
    /// ([`Protocol::decode_eof`]).
    pub fn at_eof(mut self) -> Self {
        self.at_eof = true;
        self
    }

    /// Bytes consumed by the requests returned so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The input not consumed yet: after the last request, a partial one.
    pub fn rest(&self) -> &'a [u8] {
        &self.input[self.consumed..]
    }
}

impl<P: Protocol> Iterator for Requests<'_, P> {
    type Item = Result<P::Request, P::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.input[self.consumed..];
        let decoded = if self.at_eof {
            self.protocol.decode_eof(rest)
        } else {
            self.protocol.decode(rest)
        };
        match decoded {
            Ok(Some((request, n))) => {
                self.done = n == 0;
                self.consumed += n.min(rest.len());
                Some(Ok(request))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Lines of UTF-8 text, each ending in `\n` (a `\r` before it is dropped),
/// as `String` requests and responses (a response gets its `\n` added).
///
/// A line longer than [`max_line`](LineProtocol::max_line) bytes is
/// [`LineError::TooLong`]; it is detected as soon as that many bytes
/// arrived without a line end, so the input buffered per connection stays
/// bounded. At end of stream a last line without `\n` is still a request.
///
/// # Examples
///
/// ```
/// use milieu::reactor::{LineError, LineProtocol, Protocol};
///
/// let mut lines = LineProtocol::with_max_line(8);
/// let mut requests = lines.requests(b"hello\r\nwor");
/// assert_eq!(requests.next().unwrap().unwrap(), "hello");
/// assert!(requests.next().is_none());
/// assert_eq!(requests.rest(), b"wor"); // kept for the next read
///
/// let err = lines.decode(b"far too long a line").unwrap_err();
/// assert_eq!(err, LineError::TooLong { max: 8 });
/// ```
#[derive(Clone, Debug)]
pub struct LineProtocol {
    max_line: usize,
    /// Bytes of the pending input already searched for `\n`.
    scanned: usize,
}

impl Default for LineProtocol {
    fn default() -> Self {
        LineProtocol::new()
    }
}

impl LineProtocol {
    /// The default longest line: 8 KiB.
    pub const DEFAULT_MAX_LINE: usize = 8 * 1024;

    /// Lines of at most [`DEFAULT_MAX_LINE`](LineProtocol::DEFAULT_MAX_LINE)
    /// bytes.
    pub fn new() -> LineProtocol {
        LineProtocol::with_max_line(Self::DEFAULT_MAX_LINE)
    }

    /// Lines of at most `max` bytes, line end not counted.
    pub fn with_max_line(max: usize) -> LineProtocol {
        LineProtocol {
            max_line: max,
            scanned: 0,
        }
    }

    /// The longest line accepted, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    fn line(&self, mut bytes: &[u8]) -> Result<String, LineError> {
        if let Some(stripped) = bytes.strip_suffix(b"\r") {
            bytes = stripped;
        }
        if bytes.len() > self.max_line {
            return Err(LineError::TooLong { max: self.max_line });
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(e) => Err(LineError::NotUtf8 {
                valid_up_to: e.valid_up_to(),
            }),
        }
    }
}

impl Protocol for LineProtocol {
    type Request = String;
    type Response = String;
    type Error = LineError;

    fn decode(&mut self, input: &[u8]) -> Result<Option<(String, usize)>, LineError> {
        // A line may take `max_line` bytes, a `\r` and the `\n`: look no
        // further, and do not search the same bytes twice.
        let window = input.len().min(self.max_line.saturating_add(2));
        let start = self.scanned.min(window);
        match find_line_end(&input[start..window]) {
            Some(i) => {
                let end = start + i;
                self.scanned = 0;
                let line = self.line(&input[..end])?;
                Ok(Some((line, end + 1)))
            }
            None if window < input.len() || window == self.max_line.saturating_add(2) => {
                self.scanned = 0;
                Err(LineError::TooLong { max: self.max_line })
            }
            None => {
                self.scanned = window;
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, input: &[u8]) -> Result<Option<(String, usize)>, LineError> {
        match self.decode(input)? {
            Some(decoded) => Ok(Some(decoded)),
            None if input.is_empty() => Ok(None),
            None => {
                self.scanned = 0;
                Ok(Some((self.line(input)?, input.len())))
            }
        }
    }

    fn encode(&mut self, response: String, output: &mut Vec<u8>) {
        output.reserve(response.len() + 1);
        output.extend_from_slice(response.as_bytes());
        output.push(b'\n');
    }
}

/// The index of the first `\n` in `bytes` (`memchr`: a vectorised search;
/// `iter().position` compares one byte per step).
fn find_line_end(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// Why [`LineProtocol`] could not decode a line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// More than `max` bytes arrived without a line end.
    TooLong {
        /// The limit ([`LineProtocol::max_line`]).
        max: usize,
    },
    /// The line is not valid UTF-8.
    NotUtf8 {
        /// Bytes of the line that are valid UTF-8.
        valid_up_to: usize,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong { max } => write!(
                f,
                "line longer than {max} bytes (LineProtocol::with_max_line raises the limit)"
            ),
            LineError::NotUtf8 { valid_up_to } => {
                write!(f, "line is not UTF-8 (valid up to byte {valid_up_to})")
            }
        }
    }
}

impl Error for LineError {}

#[cfg(test)]
mod tests {
    use super::{find_line_end, LineError, LineProtocol, Protocol};

    fn lines(protocol: &mut LineProtocol, input: &[u8]) -> (Vec<String>, usize) {
        let mut requests = protocol.requests(input);
        let found = requests.by_ref().map(Result::unwrap).collect();
        (found, requests.consumed())
    }

    #[test]
    fn complete_lines_come_out_and_partial_input_stays() {
        let mut p = LineProtocol::new();
        let (found, consumed) = lines(&mut p, b"one\ntwo\r\nthr");
        assert_eq!(found, ["one", "two"]);
        assert_eq!(consumed, 9);
        // The same partial input, extended: the scan resumes where it was.
        let (found, consumed) = lines(&mut p, b"thr");
        assert!(found.is_empty() && consumed == 0);
        let (found, _) = lines(&mut p, b"three\n");
        assert_eq!(found, ["three"]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes_and_one_more_byte_fails() {
        let mut p = LineProtocol::with_max_line(4);
        assert_eq!(p.decode(b"abcd\r\n").unwrap(), Some(("abcd".into(), 6)));
        assert_eq!(p.decode(b"abcd\n").unwrap(), Some(("abcd".into(), 5)));
        assert_eq!(p.decode(b"abcd").unwrap(), None);
        assert_eq!(p.decode(b"abcde\n"), Err(LineError::TooLong { max: 4 }));
        let mut p = LineProtocol::with_max_line(4);
        assert_eq!(p.decode(b"abcd\r"), Ok(None), "could still be `abcd\\r\\n`");
    }

    #[test]
    fn too_long_is_detected_without_a_line_end() {
        let mut p = LineProtocol::with_max_line(4);
        assert_eq!(p.decode(b"abcdef"), Err(LineError::TooLong { max: 4 }));
        let mut p = LineProtocol::with_max_line(4);
        assert_eq!(p.decode(&[b'x'; 100]), Err(LineError::TooLong { max: 4 }));
    }

    #[test]
    fn invalid_utf8_is_a_typed_error() {
        let mut p = LineProtocol::new();
        assert_eq!(
            p.decode(b"ok\xff\n"),
            Err(LineError::NotUtf8 { valid_up_to: 2 })
        );
    }

    #[test]
    fn at_end_of_stream_the_last_unterminated_line_is_a_request() {
        let mut p = LineProtocol::new();
        let found: Vec<String> = p.requests(b"a\nb").at_eof().map(Result::unwrap).collect();
        assert_eq!(found, ["a", "b"]);
        assert_eq!(p.decode_eof(b""), Ok(None));
    }

    #[test]
    fn the_line_end_is_found_in_any_chunk_and_in_the_tail() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 100] {
            let mut bytes = vec![b'x'; len];
            assert_eq!(find_line_end(&bytes), None, "none in {len} bytes");
            for at in 0..len {
                bytes[at] = b'\n';
                assert_eq!(find_line_end(&bytes), Some(at), "at {at} of {len}");
                if at + 1 < len {
                    bytes[len - 1] = b'\n';
                    assert_eq!(find_line_end(&bytes), Some(at), "the first one");
                    bytes[len - 1] = b'x';
                }
                bytes[at] = b'x';
            }
        }
    }

    #[test]
    fn a_line_arriving_in_pieces_is_found_once_complete() {
        let line = [b'y'; 40];
        let mut p = LineProtocol::new();
        let mut input = Vec::new();
        for piece in line.chunks(7) {
            input.extend_from_slice(piece);
            assert_eq!(p.decode(&input), Ok(None));
        }
        input.extend_from_slice(b"\nnext");
        let expected = String::from_utf8(line.to_vec()).unwrap();
        assert_eq!(p.decode(&input), Ok(Some((expected, 41))));
        assert_eq!(p.decode(b"next"), Ok(None), "the scan starts over");
        assert_eq!(p.decode(b"next\n"), Ok(Some(("next".into(), 5))));
    }

    #[test]
    fn responses_get_their_line_end() {
        let mut out = Vec::new();
        LineProtocol::new().encode("hi".into(), &mut out);
        assert_eq!(out, b"hi\n");
    }
}
