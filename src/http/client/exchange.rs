//! One exchange on a connection: the request encoded and written, its
//! response read, each step under its timeout.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::time::Duration;

use super::error::ClientError;
use super::response::{ClientResponse, Cut, Framed, ResponseReader};
use super::url::Url;
use crate::http::{Headers, HttpLimits};
use crate::reactor::{Connection, Elapsed, Handle};

/// A request ready to go: method and URL checked, header fields valid.
#[derive(Clone, Debug)]
pub(super) struct Outgoing {
    pub(super) method: Cow<'static, str>,
    pub(super) url: Url,
    pub(super) headers: Headers,
    pub(super) body: Vec<u8>,
}

impl Outgoing {
    /// Whether the request is `HEAD`: its response has no body.
    pub(super) fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether sending the request twice has the effect of sending it
    /// once (RFC 9110 §9.2.2): only those are retried.
    pub(super) fn is_idempotent(&self) -> bool {
        matches!(
            &*self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }

    /// Whether the request asks to close the connection after it.
    pub(super) fn asks_to_close(&self) -> bool {
        self.headers.has_token("connection", "close")
    }

    /// Makes the framing the client's own: the caller's `Content-Length`
    /// and `Transfer-Encoding` fields go (the body is sent whole, with
    /// its length), and a `Host` field set on the request is kept if it
    /// is one.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidRequest`] for several `Host` fields.
    pub(super) fn finish_framing(&mut self) -> Result<(), ClientError> {
        if self.headers.get_all("host").count() > 1 {
            return Err(ClientError::InvalidRequest {
                reason: "several Host fields (RFC 9112 §3.2 allows one)",
            });
        }
        self.headers.remove("content-length");
        self.headers.remove("transfer-encoding");
        Ok(())
    }

    /// The request as bytes: request line, `Host` (from the URL unless
    /// the request has one), the fields, `Content-Length`, the body.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.url.target().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !self.headers.contains("host") {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(self.url.authority().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in self.headers.iter() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        // RFC 9110 §8.6: a length for any body, and for an empty one when
        // the method gives a body a meaning (a `POST` with nothing).
        let expects_body = matches!(&*self.method, "POST" | "PUT" | "PATCH");
        if !self.body.is_empty() || expects_body {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// The timeouts of an exchange (`None`: no limit).
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    /// For the whole request to be handed to the operating system.
    pub(super) write: Option<Duration>,
    /// For each read of the response.
    pub(super) read: Option<Duration>,
}

/// A response, and whether its connection may serve another request.
#[derive(Debug)]
pub(super) struct Exchanged {
    pub(super) response: ClientResponse,
    pub(super) reusable: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The connection was closed before the request was queued on it:
    /// nothing was sent, so any request may go on another connection.
    NotSent,
    /// The connection ended (end of stream or reset) after the request
    /// was queued and before any byte of the response: the request may
    /// have been processed, so only an idempotent one may be sent again.
    ClosedBeforeResponse,
    /// Anything else.
    Error(ClientError),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::Error(error)
    }
}

/// Writes `request` (encoded) on `connection` and reads its response.
///
/// The whole request is written before the response is read: a server
/// that answers early and stops reading (a `413` to a large upload)
/// is read once it closes, or after the write timeout.
pub(super) async fn exchange(
    handle: &Handle,
    connection: &Connection,
    request: &[u8],
    head_request: bool,
    request_closes: bool,
    timeouts: Timeouts,
    limits: HttpLimits,
) -> Result<Exchanged, Failure> {
    // A connection closed already takes no bytes: nothing was sent.
    if connection.write(request).is_err() {
        return Err(Failure::NotSent);
    }
    // A connection that ends while the request is going out is not an
    // error here: what the server sent before that (a response, or
    // nothing) is read below, and the read reports the end.
    let flushed = within(handle, timeouts.write, connection.flush()).await;
    if flushed.is_err() {
        return Err(ClientError::WriteTimeout {
            // `within` elapses only with a timeout.
            after: timeouts.write.unwrap_or_default(),
        }
        .into());
    }
    let mut reader = ResponseReader::new(limits, head_request);
    loop {
        let read = within(handle, timeouts.read, connection.read(reader.wanted())).await;
        let bytes = match read {
            Err(Elapsed) => {
                return Err(ClientError::ReadTimeout {
                    after: timeouts.read.unwrap_or_default(),
                }
                .into())
            }
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => return Err(ended(reader.cut(), Some(error))),
        };
        if bytes.is_empty() {
            return match reader.end_of_stream() {
                Ok(framed) => Ok(Exchanged {
                    response: framed.response,
                    reusable: false,
                }),
                Err(cut) => Err(ended(cut, None)),
            };
        }
        let framed = reader
            .feed(&bytes)
            .map_err(|error| Failure::Error(error.into()))?;
        if let Some(Framed {
            response,
            keep_alive,
            leftover,
        }) = framed
        {
            // Reusable only if nothing but this response came: anything
            // more is a server out of step with its requests.
            let reusable = keep_alive
                && !request_closes
                && leftover == 0
                && connection.buffered_input() == 0
                && !connection.read_closed();
            return Ok(Exchanged { response, reusable });
        }
    }
}

/// The failure for a connection that ended (`error`: with a reset or
/// another error, else with the end of the stream) where `cut` says.
fn ended(cut: Cut, error: Option<io::Error>) -> Failure {
    let closed = error.as_ref().is_none_or(|error| {
        matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::NotConnected
                | io::ErrorKind::UnexpectedEof
        )
    });
    match (cut, error) {
        (Cut::BeforeResponse, _) if closed => Failure::ClosedBeforeResponse,
        (Cut::MidResponse, _) if closed => Failure::Error(ClientError::IncompleteResponse),
        (_, Some(error)) => Failure::Error(ClientError::Io(error)),
        (_, None) => Failure::Error(ClientError::IncompleteResponse),
    }
}

/// `future`, bounded by `limit` on `handle`'s timers if there is one.
pub(super) async fn within<F: Future>(
    handle: &Handle,
    limit: Option<Duration>,
    future: F,
) -> Result<F::Output, Elapsed> {
    match limit {
        Some(limit) => handle.timeout(limit, future).await,
        None => Ok(future.await),
    }
}
