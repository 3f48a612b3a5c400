//! The layer and the service it wraps around an inner one.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::request::InRequest;
use crate::context::{request_frame, FrameLocal, RequestEntries};
use crate::declare::Requirement;
use crate::remote::{
    caller_scope, ForwardedBaggage, Incoming, Propagation, RequestInfo, TraceContext,
};

/// Where the layer finds a request's peer address (see
/// [`ContextLayer::peer_addr`]).
type PeerOf = fn(&http::Extensions) -> Option<SocketAddr>;

/// A tower [`Layer`] that puts each HTTP request into milieu's context,
/// for hyper 1.x and axum 0.8.
///
/// For every request, [`ContextService`] does what milieu's own
/// [`http::serve`](crate::http) does:
///
/// - installs a [`RequestInfo`] (id, method, path) as a
///   [local](crate::dump::Policy::Local) entry;
/// - reads the caller's context from the request's header fields with a
///   [`Propagation`] (by default [`Propagation::new`]: `traceparent`
///   continued or a new trace started, baggage passed on), installs the
///   [`TraceContext`], the baggage types the propagation carries, and a
///   process hop when the caller sent context;
/// - enters a `tracing` span `http_request{id=..}` (target
///   `milieu::tower`, level INFO).
///
/// The inner service's `call`, every poll of its response future and
/// every poll of the response body run inside that context, on whichever
/// thread polls them: an axum handler, the extractors before it, and what
/// it calls see `milieu::get::<RequestInfo>()`, the trace context and
/// anything the service's root context holds, and `#[requires]` checks
/// against them.
///
/// Ids count the requests served by one layer and the services it makes
/// (its clones share the counter).
///
/// # Examples
///
/// With axum:
///
/// ```
/// use axum::{routing::get, Router};
/// use milieu::tower::{ContextLayer, RequestInfo};
///
/// async fn whoami() -> String {
///     let info = RequestInfo::current().expect("installed by the layer");
///     format!("#{} {} {}", info.id(), info.method(), info.path())
/// }
///
/// let app: Router = Router::new()
///     .route("/me", get(whoami))
///     .layer(ContextLayer::new());
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct ContextLayer {
    pub(super) shared: Arc<Shared>,
}

/// What a layer and its services share.
pub(super) struct Shared {
    next_id: AtomicU64,
    /// `None`: nothing is read from the caller, nothing installed.
    propagation: Option<Propagation>,
    pub(super) peer: PeerOf,
}

impl Default for ContextLayer {
    fn default() -> ContextLayer {
        ContextLayer::new()
    }
}

impl ContextLayer {
    /// A layer with [`Propagation::new`], the peer address taken from a
    /// [`SocketAddr`] in the request's extensions.
    pub fn new() -> ContextLayer {
        ContextLayer::with_parts(Some(Propagation::new()), socket_addr_extension)
    }

    fn with_parts(propagation: Option<Propagation>, peer: PeerOf) -> ContextLayer {
        ContextLayer {
            shared: Arc::new(Shared {
                next_id: AtomicU64::new(1),
                propagation,
                peer,
            }),
        }
    }

    /// What is taken from the caller's context. `None` reads none of the
    /// W3C header fields and installs no [`TraceContext`], for a service
    /// that takes no part in tracing.
    ///
    /// Starts the request ids from 1 again (a new layer).
    pub fn propagation(self, propagation: impl Into<Option<Propagation>>) -> ContextLayer {
        ContextLayer::with_parts(propagation.into(), self.shared.peer)
    }

    /// Where to find the caller's address among the request's extensions,
    /// for the process hop a request that brings context records. The
    /// default looks for a [`SocketAddr`]; with axum's
    /// `into_make_service_with_connect_info::<SocketAddr>()` it is
    /// `ConnectInfo<SocketAddr>`:
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::extract::ConnectInfo;
    ///
    /// let layer = milieu::tower::ContextLayer::new()
    ///     .peer_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|info| info.0));
    /// # drop(layer);
    /// ```
    ///
    /// Starts the request ids from 1 again (a new layer).
    pub fn peer_addr(self, peer: fn(&http::Extensions) -> Option<SocketAddr>) -> ContextLayer {
        ContextLayer::with_parts(self.shared.propagation.clone(), peer)
    }

    /// The types this layer installs in every request's context, for
    /// [`verify_routes`](crate::verify_routes) to count as present when it
    /// checks each route's requirements before the first request:
    /// [`RequestInfo`] and, with a propagation, the [`TraceContext`].
    ///
    /// Baggage types the propagation carries are not listed: they are
    /// installed only when the caller sends them, so a route that requires
    /// one is reported.
    pub fn installs(&self) -> Vec<Requirement> {
        let mut installs = vec![Requirement::of::<RequestInfo>()];
        if self.shared.propagation.is_some() {
            installs.push(Requirement::of::<TraceContext>());
        }
        installs
    }
}

impl fmt::Debug for ContextLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextLayer")
            .field("propagation", &self.shared.propagation)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> ContextService<S> {
        ContextService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The default peer address: a [`SocketAddr`] extension.
fn socket_addr_extension(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions.get::<SocketAddr>().copied()
}

/// The service [`ContextLayer`] wraps around an inner one: see there.
#[derive(Clone)]
pub struct ContextService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for ContextService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ContextService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<super::ContextBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> ResponseFuture<S::Future> {
        let shared = &*self.shared;
        let mut request_context =
            shared.request_context(&request, || (shared.peer)(request.extensions()));
        // The inner service's `call` in the same context its future's
        // polls will have (its own installs are its own).
        let future = {
            let _entered = request_context.enter();
            self.inner.call(request)
        };
        ResponseFuture::new(future, request_context)
    }
}

impl Shared {
    /// The context of `request`, made but not entered: its `RequestInfo`,
    /// what its caller sent (the process hop from `peer`, asked only when
    /// the caller sent context) and its `tracing` span.
    #[inline(always)]
    pub(super) fn request_context<B>(
        &self,
        request: &http::Request<B>,
        peer: impl FnOnce() -> Option<SocketAddr>,
    ) -> InRequest {
        let info = request_info(self.next_id.fetch_add(1, Ordering::Relaxed), request);
        let span = tracing::info_span!(target: "milieu::tower", "http_request", id = info.id());
        let caller = self.propagation.as_ref().map(|propagation| {
            let headers = request
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()));
            let peer = || peer().map(|peer| peer.to_string());
            caller_scope(propagation, headers, peer, &span)
        });
        let _entered = span.enter();
        // The caller's entries and the request's `RequestInfo` in a frame
        // of their own on top of the service's context, published at once
        // and never installed: every call and poll enters that frame, so
        // nothing is installed here only to be removed again at the end of
        // `call`, nor around each poll. The `RequestInfo` is the frame's
        // local entry: what the request spawns does not carry it.
        let info = FrameLocal {
            value: info,
            reason: "the HTTP request being handled",
        };
        let site = Location::caller();
        let frame = match caller {
            // The usual request, from no caller that sent context: a new
            // trace, written with the request's `RequestInfo` into the
            // allocations an earlier request's frame kept.
            Some(None) => {
                let forward_baggage = crate::contains::<ForwardedBaggage>();
                let fill = |entries: &mut RequestEntries<'_>| {
                    Incoming::new_trace_in(entries, forward_baggage)
                };
                request_frame(fill, info, site)
            }
            Some(Some(scope)) => scope.into_request_frame(info, site),
            // No propagation: the request's `RequestInfo` alone.
            None => request_frame(|_| {}, info, site),
        };
        InRequest::new(frame, &span)
    }
}

/// The [`RequestInfo`] of `request`, numbered `id`. Only the path is
/// kept (the one part of the target `RequestInfo` shows), copied in place
/// when short: no allocation for most requests.
fn request_info<B>(id: u64, request: &http::Request<B>) -> RequestInfo {
    let path = match request.uri().path_and_query() {
        // `http` answers `/` for an absolute target without a path
        // (`http://host?q`), as milieu's server does.
        Some(target) => target.path(),
        None => "/",
    };
    RequestInfo::with_path(id, method_name(request.method()), path)
}

/// `method` as a `Cow`: the methods of RFC 9110 and `PATCH` borrow a
/// static string, so the usual request allocates nothing for its method.
fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method;
    // Compared as `Method`s (a tag each), not as strings.
    static KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::CONNECT, "CONNECT"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "TRACE"),
        (Method::PATCH, "PATCH"),
    ];
    match KNOWN.iter().find(|(known, _)| known == method) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(method.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path a `RequestInfo` shows is the target's path, kept in place
    /// when short; `/` when the target has none.
    #[test]
    fn request_info_keeps_the_path_of_the_target() {
        let segments = format!("/{}", "segment/".repeat(8));
        let long = format!("{segments}?q=1");
        // The longest path kept in place, and one byte more.
        let (thirty, thirty_one) = (
            format!("/{}", "x".repeat(29)),
            format!("/{}", "x".repeat(30)),
        );
        let uris = [
            ("/", "/"),
            ("/a?b=c", "/a"),
            ("/orders/42", "/orders/42"),
            (thirty.as_str(), thirty.as_str()),
            (thirty_one.as_str(), thirty_one.as_str()),
            (long.as_str(), segments.as_str()),
            ("http://host", "/"),
            ("http://host?q", "/"),
            ("http://host/p?q", "/p"),
            ("*", "*"),
        ];
        for (uri, expected) in uris {
            let request = http::Request::builder().uri(uri).body(()).unwrap();
            let info = request_info(7, &request);
            assert_eq!(info.path(), expected, "{uri}");
            assert_eq!((info.id(), info.method()), (7, "GET"));
            assert_eq!(info.clone(), info);
        }
    }
}
