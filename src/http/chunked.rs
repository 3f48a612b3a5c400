//! Decoding a chunked body (RFC 9112 §7.1), incrementally: the input
//! grows between calls and each byte is looked at once (a chunk-size line
//! or the trailer section is searched for its end as it arrives, and
//! parsed once that end is in). The server decodes requests' bodies with
//! it, the client responses' bodies, under the same limits.

use std::fmt;

use httparse::Status;

use super::error::HttpError;
use super::headers::{find_blank_line, is_forbidden_in_value};
use super::limits::HttpLimits;

/// Where the decoder is in the chunked syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a chunk-size line (`1a;ext=v\r\n`).
    Size,
    /// In a chunk's data, `left` bytes to go.
    Data { left: usize },
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk (`0\r\n`), at the trailer section.
    Trailers {
        /// Where the search for the section's end goes on.
        resume: usize,
    },
}

/// A chunked body being received.
#[derive(Clone)]
pub(crate) struct Chunked {
    /// Offset in the message's input of the next byte to decode.
    pos: usize,
    state: State,
    /// The data so far.
    data: Vec<u8>,
    /// Bytes of chunk-size lines and CRLFs so far.
    framing: usize,
    /// Bytes at the start of the current chunk-size line known to hold no
    /// control character (so no line end): searched already.
    line_checked: usize,
    /// Bytes looked at, for the tests that check that the work is linear.
    #[cfg(test)]
    examined: usize,
}

impl fmt::Debug for Chunked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunked")
            .field("pos", &self.pos)
            .field("state", &self.state)
            .field("data", &format_args!("{} bytes", self.data.len()))
            .field("framing", &self.framing)
            .field("line_checked", &self.line_checked)
            .finish_non_exhaustive()
    }
}

impl Chunked {
    /// A body starting at offset `start` of the message's input (a
    /// request's for the server, a response's for the client).
    pub(crate) fn new(start: usize) -> Chunked {
        Chunked {
            pos: start,
            state: State::Size,
            data: Vec::new(),
            framing: 0,
            line_checked: 0,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// The data, once complete.
    pub(crate) fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Decodes what arrived of `input` (the whole message so far, which
    /// only grows between calls): the message's end offset once the body
    /// is complete.
    pub(crate) fn advance(
        &mut self,
        input: &[u8],
        limits: &HttpLimits,
    ) -> Result<Option<usize>, HttpError> {
        loop {
            let rest = input.get(self.pos..).unwrap_or_default();
            match self.state {
                State::Size => {
                    let Some(first) = rest.first() else {
                        return Ok(None);
                    };
                    // httparse reads an empty size as 0: we do not.
                    if !first.is_ascii_hexdigit() {
                        return Err(invalid("the chunk size is not a hexadecimal number"));
                    }
                    // The line ends at its first control character, which
                    // must be the CR of a CRLF: httparse takes no other line
                    // end, and lets anything through in an extension, where
                    // a bare LF is read as a line end by some proxies. It
                    // parses the line once the CR and the byte after it are
                    // in; until then what arrives is searched, once.
                    let unchecked = rest.get(self.line_checked..).unwrap_or_default();
                    let control = unchecked.iter().position(|&b| is_forbidden_in_value(b));
                    #[cfg(test)]
                    {
                        self.examined += control.map_or(unchecked.len(), |at| at + 1);
                    }
                    match control.map(|at| self.line_checked + at) {
                        Some(at) if rest[at] != b'\r' => {
                            return Err(invalid("control character in a chunk-size line"))
                        }
                        Some(cr) if cr + 1 < rest.len() => {}
                        incomplete => {
                            self.line_checked = incomplete.unwrap_or(rest.len());
                            self.check_framing(rest.len(), limits)?;
                            return Ok(None);
                        }
                    }
                    let (line, size) = match httparse::parse_chunk_size(rest) {
                        Ok(Status::Complete(parsed)) => parsed,
                        Ok(Status::Partial) | Err(httparse::InvalidChunkSize) => {
                            return Err(invalid("malformed chunk-size line"))
                        }
                    };
                    #[cfg(test)]
                    {
                        self.examined += line;
                    }
                    self.line_checked = 0;
                    self.frame(line, limits)?;
                    let room = limits.max_body().saturating_sub(self.data.len());
                    let size = usize::try_from(size)
                        .ok()
                        .filter(|&size| size <= room)
                        .ok_or(HttpError::BodyTooLarge {
                            max: limits.max_body(),
                        })?;
                    self.state = match size {
                        // The search starts at the last chunk's line end,
                        // so that an empty trailer section (a CRLF) is found.
                        0 => State::Trailers {
                            resume: self.pos - 1,
                        },
                        left => State::Data { left },
                    };
                }
                State::Data { left } => {
                    let take = left.min(rest.len());
                    self.data.extend_from_slice(&rest[..take]);
                    self.pos += take;
                    if take < left {
                        self.state = State::Data { left: left - take };
                        return Ok(None);
                    }
                    self.state = State::DataEnd;
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        self.frame(2, limits)?;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => {
                        self.check_framing(rest.len(), limits)?;
                        return Ok(None);
                    }
                    _ => return Err(invalid("chunk data not followed by CRLF")),
                },
                State::Trailers { resume } => {
                    // Bounded on its own, as the header section is.
                    let max = limits.max_header_bytes();
                    let end = find_blank_line(input, resume);
                    #[cfg(test)]
                    {
                        self.examined += match end {
                            Ok(end) => end - resume,
                            Err(next) => next - resume,
                        };
                    }
                    let end = match end {
                        Ok(end) if end - self.pos <= max => end,
                        Err(_) if rest.len() <= max => {
                            let resume = end.unwrap_or_else(|next| next);
                            self.state = State::Trailers { resume };
                            return Ok(None);
                        }
                        _ => return Err(HttpError::TrailerSectionTooLarge { max }),
                    };
                    let section = &input[self.pos..end];
                    // A field takes 3 bytes at least (`a:\n`): a longer array
                    // could never fill up.
                    let slots = limits.max_headers().min(section.len() / 3 + 2);
                    let mut fields = vec![httparse::EMPTY_HEADER; slots];
                    return match httparse::parse_headers(section, &mut fields) {
                        Ok(Status::Complete((len, _))) => {
                            #[cfg(test)]
                            {
                                self.examined += len;
                            }
                            self.pos += len;
                            Ok(Some(self.pos))
                        }
                        // The blank line is in: httparse wants no more.
                        Ok(Status::Partial) => Err(invalid("malformed trailer section")),
                        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooManyHeaders {
                            max: limits.max_headers(),
                        }),
                        Err(_) => Err(invalid("malformed trailer section")),
                    };
                }
            }
        }
    }

    /// Takes `len` bytes of framing.
    fn frame(&mut self, len: usize, limits: &HttpLimits) -> Result<(), HttpError> {
        self.check_framing(len, limits)?;
        self.framing += len;
        self.pos += len;
        Ok(())
    }

    /// Whether `more` bytes of framing would still be within the limit.
    fn check_framing(&self, more: usize, limits: &HttpLimits) -> Result<(), HttpError> {
        let max = limits.max_chunk_framing();
        if self.framing.saturating_add(more) > max {
            return Err(HttpError::ChunkFramingTooLarge { max });
        }
        Ok(())
    }
}

fn invalid(reason: &'static str) -> HttpError {
    HttpError::InvalidChunk { reason }
}

#[cfg(test)]
mod tests {
    use super::Chunked;
    use crate::http::{HttpError, HttpLimits};

    fn decode(body: &[u8], limits: &HttpLimits) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
        let mut chunked = Chunked::new(0);
        Ok(chunked
            .advance(body, limits)?
            .map(|end| (chunked.into_data(), end)))
    }

    #[test]
    fn chunks_extensions_and_trailers() {
        let limits = HttpLimits::new();
        let body = b"4;name=value\r\nWiki\r\n5\r\npedia\r\nE ; x\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: yes\r\n\r\nNEXT";
        let (data, end) = decode(body, &limits).unwrap().unwrap();
        assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&body[end..], b"NEXT");
    }

    #[test]
    fn every_prefix_is_incomplete_and_the_whole_is_the_same() {
        let limits = HttpLimits::new();
        let body = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n";
        for cut in 0..body.len() {
            let mut chunked = Chunked::new(0);
            assert_eq!(
                chunked.advance(&body[..cut], &limits),
                Ok(None),
                "cut at {cut}"
            );
            let end = chunked.advance(body, &limits).unwrap();
            assert_eq!(end, Some(body.len()), "cut at {cut}");
            assert_eq!(chunked.into_data(), b"abc0123456789abcdef");
        }
    }

    #[test]
    fn bad_syntax_is_an_invalid_chunk() {
        let limits = HttpLimits::new();
        for body in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"3\nabc\r\n",
            b"3;a\nb\r\nabc\r\n",
            b"3\r\nabcX",
            b"3\r\nabc\rX",
            b"0\r\nbad header\r\n\r\n",
            b"10000000000000000\r\n",
        ] {
            match decode(body, &limits) {
                Err(HttpError::InvalidChunk { .. }) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn data_and_framing_are_bounded() {
        let limits = HttpLimits::new()
            .with_max_body(4)
            .with_max_chunk_framing(16);
        assert_eq!(
            decode(b"5\r\n", &limits),
            Err(HttpError::BodyTooLarge { max: 4 })
        );
        assert_eq!(
            decode(b"3\r\nabc\r\n2\r\n", &limits),
            Err(HttpError::BodyTooLarge { max: 4 })
        );
        assert_eq!(
            decode(b"1;aaaaaaaaaaaaaaaaaaaa", &limits),
            Err(HttpError::ChunkFramingTooLarge { max: 16 })
        );
        let many_empty_extensions = b"1;a\r\nx\r\n1;a\r\nx\r\n1;a\r\n";
        assert_eq!(
            decode(many_empty_extensions, &limits),
            Err(HttpError::ChunkFramingTooLarge { max: 16 })
        );
        let limits = HttpLimits::new().with_max_headers(1);
        assert_eq!(
            decode(b"0\r\nA: 1\r\nB: 2\r\n\r\n", &limits),
            Err(HttpError::TooManyHeaders { max: 1 })
        );
    }

    #[test]
    fn many_small_chunks_fit_the_framing_limit_and_trailers_have_their_own() {
        // 3,000 chunks of one byte: 15,003 bytes of framing, over the 16 KiB
        // that once bounded the framing and the trailers together.
        let limits = HttpLimits::new().with_max_header_bytes(1024);
        let trailers = format!("T: {}\r\n\r\n", "t".repeat(1000));
        let body = ["1\r\nx\r\n".repeat(3000), format!("0\r\n{trailers}")].concat();
        let (data, end) = decode(body.as_bytes(), &limits).unwrap().unwrap();
        assert_eq!((data.len(), end), (3000, body.len()));

        let limits = limits.with_max_chunk_framing(14_999);
        assert_eq!(
            decode(body.as_bytes(), &limits),
            Err(HttpError::ChunkFramingTooLarge { max: 14_999 })
        );
        let limits = HttpLimits::new().with_max_header_bytes(1000);
        assert_eq!(
            decode(body.as_bytes(), &limits),
            Err(HttpError::TrailerSectionTooLarge { max: 1000 })
        );
        // Incomplete and over the limit already.
        let incomplete = &body.as_bytes()[..body.len() - 2];
        assert_eq!(
            decode(incomplete, &limits),
            Err(HttpError::TrailerSectionTooLarge { max: 1000 })
        );
    }

    #[test]
    fn a_size_line_and_trailers_trickled_byte_by_byte_are_searched_once() {
        let extension = format!(";{}", "e".repeat(8000));
        let trailers = "T: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(100);
        let body = format!("3{extension}\r\nabc\r\n0\r\n{trailers}\r\n");
        let body = body.as_bytes();
        let limits = HttpLimits::new();
        let mut chunked = Chunked::new(0);
        for len in 0..body.len() {
            assert_eq!(chunked.advance(&body[..len], &limits), Ok(None), "at {len}");
        }
        assert_eq!(chunked.advance(body, &limits), Ok(Some(body.len())));
        // Parsing each line from its start on each read would take
        // ~(8,000² + 6,000²) / 2 bytes.
        assert!(
            chunked.examined <= 3 * body.len(),
            "{} for {}",
            chunked.examined,
            body.len()
        );
        assert_eq!(chunked.into_data(), b"abc");
    }
}
