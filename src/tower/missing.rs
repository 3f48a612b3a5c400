//! What an HTTP handler answers when its context is incomplete.

use std::fmt;

use crate::remote::RequestInfo;
use crate::Missing;

/// A [`Missing`] report turned into an HTTP answer: `500 Internal Server
/// Error` with a body that names only the request's id, while the whole
/// report (the types, the declaration and call sites, what the context
/// held) goes to `tracing` as an error event (target `milieu::tower`).
///
/// A report lists source locations, type names and the values' debug
/// output: useful in the server's log, not for whoever sent the request.
/// With the `axum` feature it is an `IntoResponse`, so a `#[requires]`
/// axum handler returns `Result<_, MissingContext>` (or an error type of
/// its own that converts from [`Missing`] and answers with
/// [`MissingContext::into_http`]).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use axum::{routing::get, Router};
/// use milieu::tower::{ContextLayer, MissingContext};
///
/// struct Greeting(String);
///
/// #[milieu::requires]
/// async fn hello(#[ctx] greeting: Arc<Greeting>) -> Result<String, MissingContext> {
///     Ok(greeting.0.clone())
/// }
///
/// let app: Router = Router::new().route("/", get(hello)).layer(ContextLayer::new());
/// # drop(app);
/// ```
pub struct MissingContext {
    missing: Missing,
}

impl MissingContext {
    /// The report.
    pub fn missing(&self) -> &Missing {
        &self.missing
    }

    /// The HTTP answer: logs the report, and returns a 500 whose plain
    /// text body names the request's id (from the context's
    /// [`RequestInfo`], when there is one).
    pub fn into_http<B: From<String>>(self) -> http::Response<B> {
        let request = RequestInfo::current().ok();
        let id = request.as_ref().map(RequestInfo::id);
        tracing::error!(
            target: "milieu::tower",
            request = id,
            "a handler's context is incomplete: {}",
            self.missing
        );
        let body = match id {
            Some(id) => format!("internal server error (request #{id}; see the server's log)\n"),
            None => "internal server error (see the server's log)\n".to_owned(),
        };
        let mut response = http::Response::new(B::from(body));
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

impl From<Missing> for MissingContext {
    fn from(missing: Missing) -> MissingContext {
        MissingContext { missing }
    }
}

impl fmt::Debug for MissingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.missing, f)
    }
}

impl fmt::Display for MissingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.missing, f)
    }
}

impl std::error::Error for MissingContext {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.missing)
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for MissingContext {
    fn into_response(self) -> axum_core::response::Response {
        self.into_http::<axum_core::body::Body>()
    }
}
