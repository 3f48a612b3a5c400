//! Sending a request: the hooks and the span when it is sent, then the
//! attempts (a pooled or new connection, at most one retry on a new one),
//! as one future that runs in the caller's context.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tracing::Instrument;

use super::config::ClientShared;
use super::connect::connect;
use super::error::ClientError;
use super::exchange::{exchange, Failure, Outgoing, Timeouts};
use super::response::ClientResponse;
use crate::reactor::Handle;
use crate::remote::Propagation;
use crate::FutureExt;

/// The future of a request: resolves to its response, or to why there
/// is none.
///
/// It runs in the context current where the request was sent
/// ([`ClientRequest::send`](super::ClientRequest::send), awaiting a
/// [`ClientRequest`](super::ClientRequest), or [`Client::send`](super::Client::send)),
/// on whichever task polls it. Dropping it cancels the request: its
/// connection is closed, not reused (what it holds is unknown).
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<ClientResponse, ClientError>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<ClientResponse, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Sends `request` with `shared`'s settings and pool (see the module docs
/// of `client` for the steps): the reactor is found and the hooks run
/// now, in the caller's context; the rest runs in that context when the
/// future is polled.
#[track_caller]
pub(super) fn start(
    shared: Arc<ClientShared>,
    request: Result<Outgoing, ClientError>,
) -> ResponseFuture {
    let inner: Pin<Box<dyn Future<Output = _> + Send>> =
        match request.and_then(|outgoing| prepare(&shared, outgoing)) {
            Ok((handle, span, outgoing)) => Box::pin(
                run(shared, handle, outgoing, span.clone())
                    .instrument(span)
                    .in_current_context(),
            ),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        };
    ResponseFuture { inner }
}

/// The reactor to run on, the request's span, and the request once the
/// hooks ran (inside the span, so that a hook sees it as the current
/// one).
#[track_caller]
fn prepare(
    shared: &ClientShared,
    mut outgoing: Outgoing,
) -> Result<(Handle, tracing::Span, Outgoing), ClientError> {
    let handle = match &shared.config.handle {
        Some(handle) => handle.clone(),
        None => Handle::current().map_err(ClientError::NoReactor)?,
    };
    let span = tracing::debug_span!(
        target: "milieu::http::client",
        "http_client_request",
        method = %outgoing.method,
        host = %outgoing.url.origin(),
        path = outgoing.url.path(),
        status = tracing::field::Empty,
        traceparent = tracing::field::Empty,
    );
    {
        let _entered = span.enter();
        if let Some(propagation) = &shared.config.propagation {
            let headers = &mut outgoing.headers;
            // Whatever the request carried under these names goes: a
            // request passed on from elsewhere must not send another
            // process's state (or install sites this client never opted
            // in to) next to this context's `traceparent`.
            for name in [
                Propagation::TRACEPARENT,
                Propagation::TRACESTATE,
                Propagation::BAGGAGE,
                Propagation::ORIGIN,
            ] {
                headers.remove(name);
            }
            let injected = propagation.inject(&mut |name, value| {
                // Names are constants and values are built from checked
                // parts (hex ids, tokens, percent-encoded text), so
                // `insert` cannot refuse them; were it to, the header is
                // left out rather than the request failed.
                let _ = headers.insert(name, value);
            });
            // The hop, as the caller records it: the span the callee
            // will see as its parent.
            span.record("traceparent", injected.trace().traceparent().as_str());
        }
        for hook in &shared.config.hooks {
            hook(&mut outgoing.headers);
        }
    }
    outgoing.finish_framing()?;
    Ok((handle, span, outgoing))
}

/// The request's attempts, and its outcome recorded in its `span`.
async fn run(
    shared: Arc<ClientShared>,
    handle: Handle,
    outgoing: Outgoing,
    span: tracing::Span,
) -> Result<ClientResponse, ClientError> {
    let result = attempts(&shared, &handle, &outgoing).await;
    match &result {
        Ok(response) => {
            span.record("status", response.status());
        }
        Err(error) => {
            tracing::debug!(target: "milieu::http::client", %error, "request failed");
        }
    }
    result
}

/// Sends `outgoing` on a connection from the pool (or a new one) and
/// reads its response. If a pooled connection turns out closed by the
/// server, the request is sent once more, on a new connection: any
/// request if the connection was closed before it was queued, an
/// idempotent one only if it was closed after (before any byte of the
/// response).
async fn attempts(
    shared: &ClientShared,
    handle: &Handle,
    outgoing: &Outgoing,
) -> Result<ClientResponse, ClientError> {
    let config = &shared.config;
    let request = outgoing.encode();
    let origin = outgoing.url.origin();
    let timeouts = Timeouts {
        write: config.write_timeout,
        read: config.read_timeout,
    };
    let mut retried = false;
    loop {
        let mut lease = shared.pool.checkout(handle, origin, retried).await?;
        let reused = lease.reused();
        let connection = match lease.take_connection() {
            Some(connection) => connection,
            None => connect(handle, origin, config.connect_timeout).await?,
        };
        let outcome = exchange(
            handle,
            &connection,
            &request,
            outgoing.is_head(),
            outgoing.asks_to_close(),
            timeouts,
            config.limits,
        )
        .await;
        match outcome {
            Ok(exchanged) => {
                if exchanged.reusable {
                    lease.keep(connection);
                }
                return Ok(exchanged.response);
            }
            Err(failure @ (Failure::NotSent | Failure::ClosedBeforeResponse)) => {
                // Closed now, its place given back before the retry
                // waits for one.
                drop(connection);
                drop(lease);
                let unsent = matches!(failure, Failure::NotSent);
                if reused && !retried && (unsent || outgoing.is_idempotent()) {
                    tracing::debug!(
                        target: "milieu::http::client",
                        "a pooled connection was closed by the server before the response; \
                         sending the request again on a new connection"
                    );
                    retried = true;
                    continue;
                }
                return Err(ClientError::ClosedBeforeResponse { reused });
            }
            Err(Failure::Error(error)) => return Err(error),
        }
    }
}
