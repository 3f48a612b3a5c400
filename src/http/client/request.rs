//! [`ClientRequest`]: a request being built, sent with `.send()` or by
//! awaiting it.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;

use super::config::ClientShared;
use super::error::ClientError;
use super::exchange::Outgoing;
use super::response::ClientResponse;
use super::send::{start, ResponseFuture};
use super::url::Url;
use crate::http::headers::is_token;
use crate::http::request::method_name;
use crate::http::Headers;

/// A request being built by a [`Client`](super::Client)
/// ([`get`](super::Client::get), [`post`](super::Client::post),
/// [`request`](super::Client::request), ...): add header fields and a
/// body, then [`send`](ClientRequest::send) it, or `.await` it, which
/// sends it.
///
/// A mistake (a URL that is not `http://...`, an invalid header field) is
/// kept and reported by the future as a [`ClientError`], so the calls
/// chain without a `?` at each step.
///
/// # Examples
///
/// ```
/// use milieu::http::{self, Client, Request, Response};
/// use milieu::reactor::Reactor;
///
/// let mut reactor = Reactor::new()?;
/// let app = http::serve(|request: Request| {
///     let kind = request.header("content-type").unwrap_or("-").to_owned();
///     Response::text(200, format!("{} {} bytes of {kind}", request.method(), request.body().len()))
/// });
/// let listener = reactor.handle().listen_tcp("127.0.0.1:0", move || app.clone())?;
/// let url = format!("http://{}/orders", listener.local_addr());
///
/// let client = Client::new();
/// let answer = reactor.run_until(async move {
///     let response = client
///         .put(&url)
///         .header("Content-Type", "application/json")
///         .body(r#"{"item":"tea"}"#)
///         .send()
///         .await?;
///     Ok::<_, milieu::http::ClientError>(response.text().unwrap_or_default().to_owned())
/// })??;
/// assert_eq!(answer, "PUT 14 bytes of application/json");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a request does nothing until it is sent: `.send()` or `.await` it"]
pub struct ClientRequest {
    shared: Arc<ClientShared>,
    request: Result<Outgoing, ClientError>,
}

impl ClientRequest {
    pub(super) fn new(shared: Arc<ClientShared>, method: &str, url: &str) -> ClientRequest {
        ClientRequest {
            shared,
            request: outgoing(method, url, Headers::new(), Vec::new()),
        }
    }

    /// Adds a header field (after those added before; several of one
    /// name are sent as several fields).
    ///
    /// `Content-Length` and `Transfer-Encoding` are the client's: fields
    /// of those names are not sent. `Host` is set from the URL unless
    /// added here (once).
    ///
    /// An invalid field (a name that is not a token, a value with a
    /// control character) makes the request fail with
    /// [`ClientError::InvalidHeader`] when sent: it is not sent mangled.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> ClientRequest {
        if let Ok(outgoing) = &mut self.request {
            if let Err(error) = outgoing.headers.append(name, value) {
                self.request = Err(error.into());
            }
        }
        self
    }

    /// Sets the body, sent with its `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> ClientRequest {
        if let Ok(outgoing) = &mut self.request {
            outgoing.body = body.into();
        }
        self
    }

    /// Sends the request: its future resolves to the response.
    ///
    /// The hooks of [`ClientBuilder::on_request`](super::ClientBuilder::on_request)
    /// run now, in the caller's context; the future runs in that context
    /// too, wherever it is polled. `.await`ing the `ClientRequest` calls
    /// this.
    ///
    /// # Errors
    ///
    /// The future resolves to a [`ClientError`]: see its variants.
    #[track_caller]
    pub fn send(self) -> ResponseFuture {
        start(self.shared, self.request)
    }
}

impl IntoFuture for ClientRequest {
    type Output = Result<ClientResponse, ClientError>;
    type IntoFuture = ResponseFuture;

    /// [`send`](ClientRequest::send).
    #[track_caller]
    fn into_future(self) -> ResponseFuture {
        self.send()
    }
}

impl fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.request {
            Ok(outgoing) => f
                .debug_struct("ClientRequest")
                .field("method", &outgoing.method)
                .field("url", &outgoing.url)
                .field("headers", &outgoing.headers)
                .field("body", &format_args!("{} bytes", outgoing.body.len()))
                .finish(),
            Err(error) => f
                .debug_struct("ClientRequest")
                .field("error", error)
                .finish(),
        }
    }
}

/// A request to send, its method and URL checked.
///
/// # Errors
///
/// [`ClientError::InvalidMethod`] for a method that is not a token,
/// [`ClientError::InvalidRequest`] for `CONNECT`, and the URL's error.
pub(super) fn outgoing(
    method: &str,
    url: &str,
    headers: Headers,
    body: Vec<u8>,
) -> Result<Outgoing, ClientError> {
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(ClientError::InvalidMethod {
            method: method.to_owned(),
        });
    }
    if method == "CONNECT" {
        return Err(ClientError::InvalidRequest {
            reason: "CONNECT is not supported: this client opens no tunnels",
        });
    }
    Ok(Outgoing {
        method: method_name(method),
        url: Url::parse(url)?,
        headers,
        body,
    })
}
