//! Serving a router over HTTP/1.1 with bounds on slow clients.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout
//! never runs: a client that opens a connection and sends half a request
//! line holds the connection and its task for as long as it likes. The
//! same goes for a client that sends its header fields and then trickles
//! its body. The accept loop here is `axum::serve`'s with those two gaps
//! closed:
//!
//! - hyper gets tokio's timer and a header read timeout: a connection
//!   whose next request's header fields are not all in within the
//!   timeout is closed (an idle keep-alive connection too);
//! - [`read_body_within`] reads each request's body in full within the
//!   same timeout before the handler runs, or answers `408` and closes
//!   the connection.
//!
//! On the stop signal it stops accepting, lets the connections finish
//! the requests they are in for up to the grace period, and returns.

use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::LengthLimitError;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// How long a client may take over each part of a request, and the size
/// a request's body may have.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// For the header fields of each request (from the moment the
    /// connection waits for it), and again for its body.
    pub read_timeout: Duration,
    /// The largest body read; a larger one is answered `413`.
    pub body_bytes: usize,
}

/// Serves `app` on `listener` until `stop` resolves, then waits up to
/// `grace` for the requests in flight; connections still open after that
/// are dropped with the runtime. Each request carries its peer address as
/// `ConnectInfo<SocketAddr>`, as with axum's
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset
                    // before it was accepted: not a reason to stop
                    // serving. A short pause, so a full descriptor
                    // table does not turn this loop into a busy one.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        milieu::tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                "{grace:?} after the stop signal, requests still in flight are dropped"
            );
        }
    }
}

/// Middleware: reads the request's body in full, within
/// [`Limits::read_timeout`] and up to [`Limits::body_bytes`], before the
/// handler runs. A body that takes longer gets `408 Request Timeout` and
/// the connection is closed; a larger one gets `413 Content Too Large`.
pub async fn read_body_within(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits.body_bytes);
    let bytes: Bytes = match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if over_the_limit(&e) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {} bytes", limits.body_bytes),
            );
        }
        Ok(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "the body could not be read".into()),
        Err(_elapsed) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", limits.read_timeout),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Whether reading a body failed because it was over the limit.
fn over_the_limit(e: &axum::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(error) = cause {
        if error.is::<LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// An answer that ends the connection: what is left of the request's
/// body is not read.
fn refuse(status: StatusCode, why: String) -> Response {
    (status, [(header::CONNECTION, "close")], why + "\n").into_response()
}
