//! Responses: [`ClientResponse`], and the reader that frames one out of
//! the bytes a connection receives, with the server's parser and rules
//! (`httparse` for the status line and fields, the shared
//! `Content-Length` / `Transfer-Encoding` rules and chunked decoder).

use std::fmt;

use httparse::Status;

use super::error::ResponseError;
use crate::http::chunked::Chunked;
use crate::http::framing::{check_chunked, content_length};
use crate::http::headers::find_blank_line;
use crate::http::{Headers, HttpLimits};

/// How many interim (1xx) responses may come before the final one. A
/// server sends one or two (`100 Continue`, `103 Early Hints`); this
/// bounds a server that sends them forever, each within the read timeout.
pub(super) const MAX_INTERIM_RESPONSES: usize = 16;

/// Bytes asked of the connection at a time while the length of what is
/// left is unknown.
const READ_CHUNK: usize = 16 * 1024;

/// A response a [`Client`](super::Client) received: status, header
/// fields and the whole body (de-chunked).
///
/// Interim (1xx) responses are skipped; this is the final one. The
/// response to `HEAD`, and any `204` or `304`, has an empty body.
///
/// # Examples
///
/// ```
/// use milieu::http::{self, Client, Request, Response};
/// use milieu::reactor::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let app = http::serve(|_: Request| Response::text(201, "made").with_header("Location", "/7"));
/// let listener = reactor.handle().listen_tcp("127.0.0.1:0", move || app.clone())?;
/// let url = format!("http://{}/items", listener.local_addr());
///
/// let client = Client::new();
/// let response = reactor.run_until(async move { client.post(&url).body("x").await })??;
/// assert_eq!((response.status(), response.reason()), (201, "Created"));
/// assert_eq!(response.header("location"), Some("/7"));
/// assert_eq!(response.text(), Ok("made"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ClientResponse {
    status: u16,
    reason: String,
    version: u8,
    headers: Headers,
    body: Vec<u8>,
}

impl ClientResponse {
    /// The status code, 200 to 599.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as sent (possibly empty).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The minor version of the response: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The header fields, in the order received.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first header field named `name` (any ASCII case), if its value
    /// is UTF-8. See [`Headers`] for the rest.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_str(name)
    }

    /// The body: `Content-Length` bytes, the data of a chunked body
    /// (extensions and trailer fields dropped), or what came until the
    /// server closed the connection.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text.
    ///
    /// # Errors
    ///
    /// The UTF-8 error if the body is not UTF-8 (no charset is looked at).
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    /// The body, taken out.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

impl fmt::Debug for ClientResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientResponse")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("version", &format_args!("HTTP/1.{}", self.version))
            .field("headers", &self.headers)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .finish()
    }
}

/// A complete response, and what it leaves of the connection.
#[derive(Debug)]
pub(super) struct Framed {
    pub(super) response: ClientResponse,
    /// Neither side asked to close, and the body's end was known without
    /// the close: the connection may serve another request, if nothing
    /// followed the response.
    pub(super) keep_alive: bool,
    /// Bytes received after the response's end (none for a well-behaved
    /// server, which sends nothing unasked).
    pub(super) leftover: usize,
}

/// Reads one response out of the bytes received, as they arrive. Each
/// byte is searched once while the header section comes in (as the
/// server's request parser does), and what it buffers is bounded by the
/// limits: the header section by `max_header_bytes`, the body by
/// `max_body` (and a chunked body's framing by `max_chunk_framing`).
#[derive(Debug)]
pub(super) struct ResponseReader {
    limits: HttpLimits,
    /// The request was `HEAD`: the response has no body.
    head_request: bool,
    /// The response so far (from the first byte of its status line, once
    /// interim responses before it were dropped).
    input: Vec<u8>,
    state: ReadState,
    interim: usize,
    /// Bytes received, interim responses included.
    received: usize,
}

#[derive(Debug)]
enum ReadState {
    /// In the header section; the search for its end goes on at `resume`.
    Head { resume: usize },
    /// In the body.
    Body { head: Head, framing: Framing },
}

/// A final response's status line and header fields.
#[derive(Debug)]
struct Head {
    status: u16,
    reason: String,
    version: u8,
    headers: Headers,
    /// Bytes of the status line and header fields.
    len: usize,
    keep_alive: bool,
}

/// How the body of a response is framed (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    /// No body: a response to `HEAD`, a 204 or 304, or a length of 0.
    Empty,
    /// `Content-Length` bytes.
    Length(usize),
    Chunked(Chunked),
    /// Until the server closes the connection.
    UntilClose,
}

/// The end of the stream (or a reset) came before the response's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cut {
    /// No byte of any response had arrived.
    BeforeResponse,
    /// Part of the response had.
    MidResponse,
}

impl ResponseReader {
    /// A reader for the response to a request; `head_request` if it was
    /// `HEAD`.
    pub(super) fn new(limits: HttpLimits, head_request: bool) -> ResponseReader {
        ResponseReader {
            limits,
            head_request,
            input: Vec::new(),
            state: ReadState::Head { resume: 0 },
            interim: 0,
            received: 0,
        }
    }

    /// How many bytes to ask the connection for next: no more than the
    /// response still needs when its length is known, so that nothing
    /// past it is taken; never 0.
    pub(super) fn wanted(&self) -> usize {
        match &self.state {
            ReadState::Body {
                head,
                framing: Framing::Length(len),
            } => head
                .len
                .saturating_add(*len)
                .saturating_sub(self.input.len())
                .max(1),
            ReadState::Body {
                head,
                framing: Framing::UntilClose,
            } => {
                // One byte over the limit is enough to refuse the body.
                let have = self.input.len() - head.len;
                self.limits
                    .max_body()
                    .saturating_add(1)
                    .saturating_sub(have)
                    .clamp(1, READ_CHUNK)
            }
            _ => READ_CHUNK,
        }
    }

    /// Takes `bytes` received: the response once it is complete.
    ///
    /// # Errors
    ///
    /// A [`ResponseError`] for a malformed, ambiguous or oversized
    /// response; the reader is of no further use then.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<Option<Framed>, ResponseError> {
        self.received += bytes.len();
        self.input.extend_from_slice(bytes);
        loop {
            match &mut self.state {
                ReadState::Head { resume } => {
                    let resume = *resume;
                    let Some(head) = self.head(resume)? else {
                        return Ok(None);
                    };
                    let framing = self.framing(&head)?;
                    self.state = ReadState::Body { head, framing };
                }
                ReadState::Body { head, framing } => {
                    let end = match framing {
                        Framing::Empty => Some(head.len),
                        // Checked: a `max_body` of `usize::MAX` lets any
                        // length through, and a sum past it can never be
                        // reached anyway.
                        Framing::Length(len) => head
                            .len
                            .checked_add(*len)
                            .filter(|&end| end <= self.input.len()),
                        Framing::Chunked(chunked) => chunked
                            .advance(&self.input, &self.limits)
                            .map_err(ResponseError::from_http)?,
                        Framing::UntilClose => {
                            let max = self.limits.max_body();
                            if self.input.len() - head.len > max {
                                return Err(ResponseError::BodyTooLarge { max });
                            }
                            None
                        }
                    };
                    let Some(end) = end else {
                        return Ok(None);
                    };
                    return Ok(self.complete(end));
                }
            }
        }
    }

    /// The end of the stream came: the response, if its body is delimited
    /// by the close, else where the stream was cut.
    ///
    /// # Errors
    ///
    /// Where the stream was cut, unless the response is complete with it.
    pub(super) fn end_of_stream(&mut self) -> Result<Framed, Cut> {
        let until_close = matches!(
            self.state,
            ReadState::Body {
                framing: Framing::UntilClose,
                ..
            }
        );
        let complete = until_close
            .then(|| self.complete(self.input.len()))
            .flatten();
        complete.ok_or_else(|| self.cut())
    }

    /// Where the stream was cut, for a reset or an end of stream that
    /// leaves the response incomplete.
    pub(super) fn cut(&self) -> Cut {
        if self.received == 0 {
            Cut::BeforeResponse
        } else {
            Cut::MidResponse
        }
    }

    /// The final response's head, once it is in: interim responses before
    /// it are dropped from the input.
    fn head(&mut self, mut resume: usize) -> Result<Option<Head>, ResponseError> {
        let max_bytes = self.limits.max_header_bytes();
        loop {
            let end = match find_blank_line(&self.input, resume) {
                Ok(end) => end,
                Err(next) => {
                    if self.input.len() > max_bytes {
                        return Err(ResponseError::HeaderSectionTooLarge { max: max_bytes });
                    }
                    self.state = ReadState::Head { resume: next };
                    return Ok(None);
                }
            };
            if end > max_bytes {
                return Err(ResponseError::HeaderSectionTooLarge { max: max_bytes });
            }
            let Some(head) = parse_head(&self.input[..end], &self.limits)? else {
                // Empty lines before the status line (httparse skips
                // them), read as a blank line: the search goes on.
                resume = end;
                continue;
            };
            match head.status {
                // We never ask to switch protocols: a 101 would leave the
                // connection speaking something else.
                101 => {
                    return Err(ResponseError::Malformed {
                        reason: "101 Switching Protocols to a request that asked for no upgrade",
                    })
                }
                100..=199 => {
                    self.interim += 1;
                    if self.interim > MAX_INTERIM_RESPONSES {
                        return Err(ResponseError::TooManyInterimResponses {
                            max: MAX_INTERIM_RESPONSES,
                        });
                    }
                    self.input.drain(..head.len);
                    resume = 0;
                }
                200..=599 => return Ok(Some(head)),
                _ => {
                    return Err(ResponseError::Malformed {
                        reason: "a status code outside 100-599",
                    })
                }
            }
        }
    }

    /// How the body of the final response `head` is framed (RFC 9112
    /// §6.3, strictly: every ambiguity is an error).
    fn framing(&self, head: &Head) -> Result<Framing, ResponseError> {
        if self.head_request || matches!(head.status, 204 | 304) {
            return Ok(Framing::Empty);
        }
        let chunked = head.headers.contains("transfer-encoding");
        let length = head.headers.contains("content-length");
        if chunked && length {
            return Err(ResponseError::ContentLengthWithTransferEncoding);
        }
        if chunked {
            if head.version == 0 {
                return Err(ResponseError::Malformed {
                    reason: "Transfer-Encoding in an HTTP/1.0 response",
                });
            }
            check_chunked(&head.headers).map_err(ResponseError::from_http)?;
            return Ok(Framing::Chunked(Chunked::new(head.len)));
        }
        if length {
            let len = content_length(&head.headers).map_err(ResponseError::from_http)?;
            let max = self.limits.max_body();
            return match usize::try_from(len) {
                Ok(0) => Ok(Framing::Empty),
                Ok(len) if len <= max => Ok(Framing::Length(len)),
                _ => Err(ResponseError::BodyTooLarge { max }),
            };
        }
        Ok(Framing::UntilClose)
    }

    /// The response that ends at `end` of the input, if the body is
    /// being read (`None` in the header section).
    fn complete(&mut self, end: usize) -> Option<Framed> {
        let state = std::mem::replace(&mut self.state, ReadState::Head { resume: 0 });
        let ReadState::Body { head, framing } = state else {
            self.state = state;
            return None;
        };
        let leftover = self.input.len() - end;
        // A body delimited by the close leaves nothing to reuse.
        let keep_alive = head.keep_alive && !matches!(framing, Framing::UntilClose);
        let body = match framing {
            Framing::Empty => Vec::new(),
            Framing::Chunked(chunked) => chunked.into_data(),
            Framing::Length(_) | Framing::UntilClose => {
                let mut input = std::mem::take(&mut self.input);
                input.truncate(end);
                input.split_off(head.len)
            }
        };
        Some(Framed {
            response: ClientResponse {
                status: head.status,
                reason: head.reason,
                version: head.version,
                headers: head.headers,
                body,
            },
            keep_alive,
            leftover,
        })
    }
}

/// Parses the status line and header fields that `input` holds whole
/// (it ends with the blank line): `None` if it holds only empty lines.
fn parse_head(input: &[u8], limits: &HttpLimits) -> Result<Option<Head>, ResponseError> {
    // A field takes 3 bytes at least (`a:\n`): a longer array could never
    // fill up.
    let slots = limits.max_headers().min(input.len() / 3 + 2);
    let mut fields = vec![httparse::EMPTY_HEADER; slots];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(input) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Ok(None),
        Err(error) => return Err(ResponseError::from_httparse(error, limits.max_headers())),
    };
    let (Some(version), Some(status)) = (parsed.version, parsed.code) else {
        return Err(ResponseError::Malformed {
            reason: "incomplete status line",
        });
    };
    let mut headers = Headers::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        headers.push_parsed(field.name, field.value);
    }
    let connection = |token| headers.has_token("connection", token);
    let keep_alive = match version {
        0 => connection("keep-alive") && !connection("close"),
        _ => !connection("close"),
    };
    Ok(Some(Head {
        status,
        reason: parsed.reason.unwrap_or_default().to_owned(),
        version,
        headers,
        len,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Cut, Framed, ResponseReader};
    use crate::http::{HttpLimits, ResponseError};

    fn limits() -> HttpLimits {
        HttpLimits::new()
            .with_max_header_bytes(256)
            .with_max_headers(8)
            .with_max_body(64)
    }

    /// Feeds `input` in pieces cut at `cuts`: the first outcome that is
    /// not "incomplete", or the end of stream's if none. The leftover of
    /// a response counts the bytes after it not fed yet (the connection
    /// holds them: the client checks its buffer too).
    fn read(
        input: &[u8],
        cuts: &[usize],
        head: bool,
    ) -> Result<Result<Framed, Cut>, ResponseError> {
        let mut reader = ResponseReader::new(limits(), head);
        let mut cuts: Vec<usize> = cuts.iter().map(|&cut| cut.min(input.len())).collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        let mut from = 0;
        for cut in cuts {
            if cut > from {
                if let Some(mut framed) = reader.feed(&input[from..cut])? {
                    framed.leftover += input.len() - cut;
                    return Ok(Ok(framed));
                }
                from = cut;
            }
        }
        Ok(reader.end_of_stream())
    }

    fn whole(input: &[u8]) -> Framed {
        match read(input, &[], false) {
            Ok(Ok(framed)) => framed,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn bodies_by_length_chunks_and_close_and_none_for_head_204_304() {
        let framed = whole(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(framed.response.body(), b"abc");
        assert!(framed.keep_alive);
        assert_eq!(framed.leftover, 0);

        let framed = whole(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\n");
        assert_eq!(framed.response.body(), b"abcd");
        assert!(framed.keep_alive);

        let framed = whole(b"HTTP/1.0 200 OK\r\n\r\nuntil the close");
        assert_eq!(framed.response.body(), b"until the close");
        assert!(
            !framed.keep_alive,
            "a close-delimited body ends the connection"
        );

        for status in ["204 No Content", "304 Not Modified"] {
            let input = format!("HTTP/1.1 {status}\r\nContent-Length: 9\r\n\r\nNEXT");
            let framed = whole(input.as_bytes());
            assert!(framed.response.body().is_empty(), "{status}");
            assert_eq!(framed.leftover, 4, "{status}: what follows is not its body");
        }
        let Ok(Ok(framed)) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", &[], true)
        else {
            panic!("HEAD");
        };
        assert!(framed.response.body().is_empty());
        assert!(framed.keep_alive);
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_field() {
        let keeps = |head: &str| {
            whole(format!("{head}\r\nContent-Length: 0\r\n\r\n").as_bytes()).keep_alive
        };
        assert!(keeps("HTTP/1.1 200 OK"));
        assert!(!keeps("HTTP/1.1 200 OK\r\nConnection: close"));
        assert!(!keeps("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close"));
        assert!(!keeps("HTTP/1.0 200 OK"));
        assert!(keeps("HTTP/1.0 200 OK\r\nConnection: keep-alive"));
    }

    #[test]
    fn interim_responses_are_dropped_and_the_final_one_read() {
        let input = b"\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nokX";
        for cut in 0..input.len() {
            let Ok(Ok(framed)) = read(input, &[cut], false) else {
                panic!("cut at {cut}");
            };
            assert_eq!(framed.response.status(), 201, "cut at {cut}");
            assert_eq!(framed.response.body(), b"ok");
            assert_eq!(framed.response.headers().len(), 1);
            assert_eq!(framed.leftover, 1);
        }
    }

    #[test]
    fn where_the_stream_was_cut() {
        assert!(matches!(
            read(b"", &[], false),
            Ok(Err(Cut::BeforeResponse))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 2", &[], false),
            Ok(Err(Cut::MidResponse))
        ));
        let interim_only = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert!(matches!(
            read(interim_only, &[], false),
            Ok(Err(Cut::MidResponse))
        ));
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(read(short, &[], false), Ok(Err(Cut::MidResponse))));
    }

    #[test]
    fn refusals() {
        let refused = |input: &[u8]| match read(input, &[], false) {
            Err(error) => error,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        };
        assert_eq!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            ResponseError::ConflictingContentLength
        );
        assert_eq!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            ResponseError::InvalidContentLength
        );
        assert_eq!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ResponseError::ContentLengthWithTransferEncoding
        );
        for te in ["gzip", "chunked, gzip", "gzip, chunked"] {
            let input = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                refused(input.as_bytes()),
                ResponseError::UnsupportedTransferEncoding,
                "{te}"
            );
        }
        assert!(matches!(
            refused(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            ResponseError::Malformed { .. }
        ));
        assert_eq!(
            refused(b"HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n"),
            ResponseError::BodyTooLarge { max: 64 }
        );
        assert_eq!(
            refused(format!("HTTP/1.1 200 OK\r\n\r\n{}", "b".repeat(65)).as_bytes()),
            ResponseError::BodyTooLarge { max: 64 }
        );
        assert_eq!(
            refused(format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "h".repeat(300)).as_bytes()),
            ResponseError::HeaderSectionTooLarge { max: 256 }
        );
        assert_eq!(
            refused(b"HTTP/1.1 200 OK\r\nA: 1\r\nA: 2\r\nA: 3\r\nA: 4\r\nA: 5\r\nA: 6\r\nA: 7\r\nA: 8\r\nA: 9\r\n\r\n"),
            ResponseError::TooManyHeaders { max: 8 }
        );
        for garbage in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(
                matches!(refused(garbage), ResponseError::Malformed { .. }),
                "{garbage:?}"
            );
        }
        assert!(matches!(
            refused(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            ResponseError::Malformed { .. }
        ));
        assert!(matches!(
            refused(b"HTTP/1.1 099 Odd\r\n\r\n"),
            ResponseError::Malformed { .. }
        ));
    }

    #[test]
    fn asks_for_no_more_than_a_known_length() {
        let mut reader = ResponseReader::new(limits(), false);
        assert!(reader
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap()
            .is_none());
        assert_eq!(reader.wanted(), 7);
        let mut reader = ResponseReader::new(limits(), false);
        assert!(reader
            .feed(b"HTTP/1.1 200 OK\r\n\r\nabc")
            .unwrap()
            .is_none());
        assert_eq!(reader.wanted(), 62, "one over the body limit at most");
    }

    /// Pieces responses are made of, and some that break them.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"HTTP/1.0 204 No Content\r\n".to_vec()),
            Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()),
            Just(b"Content-Length: 99\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Connection: close\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"3\r\nabc\r\n".to_vec()),
            Just(b"0\r\n\r\n".to_vec()),
            Just(b"ffffffffffffffffff\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// No input makes the reader panic, and how it arrives does not
        /// change what it makes of it.
        #[test]
        fn any_input_any_cut_same_outcome_no_panic(
            pieces in prop::collection::vec(piece(), 0..10),
            cuts in prop::collection::vec(0usize..400, 0..6),
            head in any::<bool>(),
        ) {
            let input = pieces.concat();
            let describe = |outcome: Result<Result<Framed, Cut>, ResponseError>| match outcome {
                Ok(Ok(framed)) => format!(
                    "{} {:?} keep={} left={}",
                    framed.response.status(),
                    framed.response.body(),
                    framed.keep_alive,
                    framed.leftover
                ),
                Ok(Err(cut)) => format!("{cut:?}"),
                Err(error) => format!("{error:?}"),
            };
            let at_once = describe(read(&input, &[], head));
            let in_pieces = describe(read(&input, &cuts, head));
            prop_assert_eq!(at_once, in_pieces);
        }
    }
}
