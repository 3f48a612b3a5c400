//! The debug views as a tower service.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http_body_util::Full;
use tower_service::Service;

use crate::http::debug::{DebugResponse, DebugViews};

/// [`DebugViews`] as a tower [`Service`]: `/debug/context` (the context of
/// the request being handled, so mount it behind a
/// [`ContextLayer`](super::ContextLayer)) and `/debug/stages`, in text,
/// JSON or HTML, as [`DebugViews::respond`] describes; any other path is
/// 404.
///
/// The views show install sites, peer addresses and the load of the
/// service: serve them on an admin listener only (see
/// [`milieu::http::debug`](crate::http::debug)).
///
/// # Examples
///
/// One line in an axum router:
///
/// ```
/// use axum::Router;
/// use milieu::http::debug::DebugViews;
/// use milieu::tower::{ContextLayer, DebugService};
///
/// let views = DebugViews::new(); // `.stage(db.clone())` for each stage shown
/// let admin: Router = Router::new()
///     .route_service("/debug/{*view}", DebugService::new(views))
///     .layer(ContextLayer::new());
/// # drop(admin);
/// ```
#[derive(Clone, Debug)]
pub struct DebugService {
    views: DebugViews,
}

impl DebugService {
    /// A service answering with `views`.
    pub fn new(views: DebugViews) -> DebugService {
        DebugService { views }
    }

    /// The views it answers with.
    pub fn views(&self) -> &DebugViews {
        &self.views
    }
}

impl<B> Service<http::Request<B>> for DebugService {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let accept = request
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|value| value.to_str().ok());
        let uri = request.uri();
        // Answered here, in `call`: behind the layer that is inside the
        // request's context, which `/debug/context` shows.
        let view = self.views.respond(
            request.method().as_str(),
            uri.path(),
            uri.query(),
            accept,
            crate::dump,
        );
        ready(Ok(match view {
            Some(view) => to_http(view),
            None => not_found(),
        }))
    }
}

/// A view as an `http` response.
fn to_http(view: DebugResponse) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(view.body)));
    *response.status_mut() =
        http::StatusCode::from_u16(view.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in view.headers {
        if let Ok(value) = http::HeaderValue::try_from(value) {
            response
                .headers_mut()
                .append(http::HeaderName::from_static(name), value);
        }
    }
    response
}

/// A path outside `/debug/`: the service was mounted where it should not
/// have been.
fn not_found() -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from_static(
        b"not a debug view: there are /debug/context and /debug/stages\n",
    )));
    *response.status_mut() = http::StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
