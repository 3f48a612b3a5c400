//! Where a message's body ends: the `Content-Length` and
//! `Transfer-Encoding` rules of RFC 9112 §6, applied strictly. Shared by
//! the server, which frames requests with them
//! ([`HttpProtocol`](super::HttpProtocol)), and the client, which frames
//! responses (`http::client`), so that both read the same bytes the same
//! way.

use super::error::HttpError;
use super::headers::{trim_ows, Headers};

/// The value of the `Content-Length` fields: one decimal number, possibly
/// repeated (`5, 5`, or in several fields).
///
/// # Errors
///
/// [`HttpError::InvalidContentLength`] for a value that is not digits
/// (or does not fit in a `u64`), [`HttpError::ConflictingContentLength`]
/// for values that differ.
pub(crate) fn content_length(headers: &Headers) -> Result<u64, HttpError> {
    let mut found = None;
    let values = headers
        .get_all("content-length")
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim_ows);
    for value in values {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::InvalidContentLength);
        }
        let len = std::str::from_utf8(value)
            .ok()
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or(HttpError::InvalidContentLength)?;
        match found {
            Some(earlier) if earlier != len => return Err(HttpError::ConflictingContentLength),
            _ => found = Some(len),
        }
    }
    found.ok_or(HttpError::InvalidContentLength)
}

/// Checks that the `Transfer-Encoding` fields (there is at least one)
/// name `chunked` alone, the one coding this crate decodes.
///
/// # Errors
///
/// - [`HttpError::ChunkedNotFinal`] unless `chunked` is the final coding
///   (RFC 9112 §6.3: where the body ends cannot be known);
/// - [`HttpError::UnsupportedTransferEncoding`] for another coding before
///   `chunked` (`gzip, chunked`: framed, but encoded in a way we do not
///   decode);
/// - [`HttpError::Malformed`] for an empty list, or `chunked` applied
///   more than once.
pub(crate) fn check_chunked(headers: &Headers) -> Result<(), HttpError> {
    let codings: Vec<&[u8]> = headers
        .get_all("transfer-encoding")
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|coding| !coding.is_empty())
        .collect();
    let is_chunked = |coding: &[u8]| coding.eq_ignore_ascii_case(b"chunked");
    let Some(last) = codings.last() else {
        return Err(HttpError::Malformed {
            reason: "empty Transfer-Encoding",
        });
    };
    if !is_chunked(last) {
        return Err(HttpError::ChunkedNotFinal);
    }
    if codings.iter().filter(|coding| is_chunked(coding)).count() > 1 {
        return Err(HttpError::Malformed {
            reason: "Transfer-Encoding applies `chunked` more than once",
        });
    }
    if codings.len() > 1 {
        return Err(HttpError::UnsupportedTransferEncoding);
    }
    Ok(())
}
