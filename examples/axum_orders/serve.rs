//! Serving a router over HTTP/1.1 with bounds on slow and greedy clients.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout
//! never runs: a client that opens a connection and sends half a request
//! line holds the connection and its task for as long as it likes. So
//! does one that sends its header fields and then trickles its body, or
//! one that sends requests and never reads the answers; and there is no
//! bound on the number of connections. The accept loop here is
//! `axum::serve`'s with those gaps closed, all bounded by
//! [`Limits::client_timeout`]:
//!
//! - hyper gets tokio's timer and a header read timeout: a connection
//!   whose next request's header fields are not all in within the
//!   timeout is closed (an idle keep-alive connection too);
//! - [`read_body_within`] reads each request's body in full within the
//!   timeout before the handler runs, or answers `408` and closes the
//!   connection; a body declared or found larger than
//!   [`Limits::body_bytes`] gets `413` (before any `100 Continue`);
//! - a connection whose answer cannot be written for as long (the client
//!   stopped reading) is closed;
//! - at most [`Limits::connections`] connections are served at once; the
//!   next ones wait in the listen backlog until one closes.
//!
//! On the stop signal it stops accepting, lets the connections finish
//! the requests they are in for up to the grace period, and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt as _;

/// How long a client may take, how much it may send, and how many
/// clients are served at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// For the header fields of each request (from the moment the
    /// connection waits for it), again for its body, and for each write
    /// of an answer to make progress.
    pub client_timeout: Duration,
    /// The largest body read; a larger one is answered `413`.
    pub body_bytes: usize,
    /// Connections served at once, per listener.
    pub connections: usize,
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
        .header_read_timeout(limits.client_timeout);
    let connections = GracefulShutdown::new();
    let room = Arc::new(Semaphore::new(limits.connections));
    let mut accept_errors = AcceptErrors::default();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (permit, (stream, peer)) = tokio::select! {
            // A free place first, then a connection: while all are taken,
            // new clients wait in the backlog rather than being accepted
            // and held.
            accepted = async {
                let permit = Arc::clone(&room).acquire_owned().await;
                (permit, listener.accept().await)
            } => match accepted {
                (Ok(permit), Ok(accepted)) => (permit, accepted),
                // Closed only by dropping `room`, which this loop holds.
                (Err(_closed), _) => break,
                (_, Err(e)) => {
                    accept_errors.report(e);
                    // Out of file descriptors, or a connection reset
                    // before it was accepted: not a reason to stop
                    // serving. A short pause, so a full descriptor
                    // table does not turn this loop into a busy one.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // A client that stops reading its answers is let go once a write
        // has made no progress for the timeout: hyper has no such bound.
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.client_timeout));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let io = TokioIo::new(Box::pin(stream));
        let connection = connections.watch(http.serve_connection(io, service));
        milieu::tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
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

/// Accept errors, logged at most once a second (with how many were not),
/// so a full descriptor table does not flood the log.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn report(&mut self, e: std::io::Error) {
        let now = Instant::now();
        match self.last_logged {
            Some(at) if now.duration_since(at) < Duration::from_secs(1) => self.unlogged += 1,
            _ => {
                tracing::warn!(
                    "accepting a connection failed: {e} ({} more since the last report)",
                    self.unlogged
                );
                self.last_logged = Some(now);
                self.unlogged = 0;
            }
        }
    }
}

/// Middleware: reads the request's body in full, within
/// [`Limits::client_timeout`] and up to [`Limits::body_bytes`], before the
/// handler runs. A body that takes longer gets `408 Request Timeout` and
/// the connection is closed; a larger one gets `413 Content Too Large`,
/// at once when its `Content-Length` says so (before hyper would send
/// `100 Continue`).
pub async fn read_body_within(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.body_bytes as u64) {
        return over_the_limit(limits);
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits.body_bytes);
    let bytes: Bytes = match tokio::time::timeout(limits.client_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_over_the_limit(&e) => return over_the_limit(limits),
        Ok(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "the body could not be read".into()),
        Err(_elapsed) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", limits.client_timeout),
            );
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The answer to a body over the limit.
fn over_the_limit(limits: Limits) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over {} bytes", limits.body_bytes),
    )
}

/// Whether reading a body failed because it was over the limit.
fn is_over_the_limit(e: &axum::Error) -> bool {
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
