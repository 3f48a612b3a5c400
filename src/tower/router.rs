//! [`ContextRouter`]: the layer around a whole axum `Router`, served by
//! `axum::serve` as it is.

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};

use axum_core::body::Body;
use bytes::{Buf, Bytes};
use http_body::{Body as _, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::ContextBody;
use super::layer::{ContextLayer, Shared};
use super::request::InRequest;
use crate::propagate::DropInPlace;

/// A service (an axum `Router`, usually) with [`ContextLayer`] around
/// the whole of it, answering with axum's [`Body`] so that `axum::serve`
/// serves it directly; made by [`ContextLayer::around`].
///
/// Every request gets what [`ContextService`](super::ContextService)
/// gives it: its [`RequestInfo`](super::RequestInfo), its caller's
/// trace context and baggage, a `tracing` span, and the context entered
/// around every poll of the service's work and of the response body.
/// Around the whole router rather than through `Router::layer`, the
/// context also covers routing, the fallback, and every middleware the
/// router's own `layer` calls add; and axum does not box the layer's
/// service and future for every route (docs/benchmarks.md, "axum hello
/// with the layer", measures both places).
///
/// Served by `axum::serve`, it takes each connection's peer address for
/// the process hop a request that brings context records (when the
/// listener's address is a [`SocketAddr`]); otherwise the layer's
/// [`peer_addr`](ContextLayer::peer_addr) finds it, as for
/// `ContextService`. Handlers that extract axum's `ConnectInfo` get it
/// with [`with_connect_info`](ContextRouter::with_connect_info).
///
/// Two things differ from `ContextService`, both invisible to the
/// client:
///
/// - The inner service's `call` is made at the response future's first
///   poll, inside the request's context, on the instance `poll_ready`
///   found ready (the one kept is a clone, as tower's documentation
///   advises for a service whose future outlives `call`). axum's
///   `Router` calls its routes that way itself.
/// - A response body that knows its length (`size_hint` exact: a
///   `String`, `Json`, bytes) is read for its first frame as soon as the
///   response is ready, inside the context. When that is the whole body,
///   the request's context is released at once and the body goes to the
///   client with no context to enter; otherwise the body keeps the
///   context for every later poll, as `ContextService`'s does. A body
///   of unknown length (a stream) is never read early.
///
/// # Examples
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
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = Router::new().route("/me", get(whoami));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let _ = listener.local_addr()?;
/// let served = axum::serve(listener, ContextLayer::new().around(app));
/// # drop(served);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct ContextRouter<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The connection's peer, when `axum::serve` made this one for it.
    peer: Option<SocketAddr>,
    /// Whether each request gets `peer` as axum's `ConnectInfo` too.
    connect_info: bool,
}

impl<S> ContextRouter<S> {
    /// Also gives each request its connection's peer address as axum's
    /// `ConnectInfo<SocketAddr>`, as
    /// `Router::into_make_service_with_connect_info::<SocketAddr>()` does,
    /// for handlers that extract it (served by `axum::serve` on a
    /// listener whose addresses are [`SocketAddr`]s).
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::{extract::ConnectInfo, routing::get, Router};
    /// use milieu::tower::ContextLayer;
    ///
    /// async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> String {
    ///     addr.to_string()
    /// }
    ///
    /// let router: Router = Router::new().route("/peer", get(peer));
    /// let app = ContextLayer::new().around(router).with_connect_info();
    /// # drop(app);
    /// ```
    pub fn with_connect_info(mut self) -> ContextRouter<S> {
        self.connect_info = true;
        self
    }
}

impl<S: Clone> Clone for ContextRouter<S> {
    fn clone(&self) -> ContextRouter<S> {
        ContextRouter {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            peer: self.peer,
            connect_info: self.connect_info,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ContextRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextRouter")
            .field("inner", &self.inner)
            .field("peer", &self.peer)
            .field("connect_info", &self.connect_info)
            .finish_non_exhaustive()
    }
}

impl ContextLayer {
    /// `service` (an axum `Router`, usually) with this layer around the
    /// whole of it, for `axum::serve`: see [`ContextRouter`].
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use milieu::tower::ContextLayer;
    ///
    /// let router: Router = Router::new().route("/", get(|| async { "hi" }));
    /// let app = ContextLayer::new().around(router);
    /// # drop(app);
    /// ```
    pub fn around<S>(&self, service: S) -> ContextRouter<S> {
        ContextRouter {
            inner: service,
            shared: Arc::clone(&self.shared),
            peer: None,
            connect_info: false,
        }
    }
}

impl<S, B> Service<http::Request<B>> for ContextRouter<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = RouterFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> RouterFuture<S, B> {
        let shared = &*self.shared;
        let peer = self.peer;
        if let (true, Some(peer)) = (self.connect_info, peer) {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let context = shared.request_context(&request, || {
            peer.or_else(|| (shared.peer)(request.extensions()))
        });
        // The instance `poll_ready` found ready goes with the request; a
        // clone stays for the next one.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        RouterFuture {
            state: ManuallyDrop::new(Step::Call {
                service: ready,
                request,
            }),
            context: Some(context),
        }
    }
}

/// The make-service side, for `axum::serve`: one service per connection,
/// knowing the connection's peer, around the router made ready for
/// serving as `axum::serve` makes it for a bare `Router` (its handlers
/// turned into routes once per connection, not once per request).
impl<L> Service<axum::serve::IncomingStream<'_, L>> for ContextRouter<axum::Router>
where
    L: axum::serve::Listener,
    L::Addr: Any,
{
    type Response = ContextRouter<axum::Router>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<ContextRouter<axum::Router>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        let addr: &dyn Any = stream.remote_addr();
        std::future::ready(Ok(ContextRouter {
            inner: self.inner.clone().with_state(()),
            shared: Arc::clone(&self.shared),
            peer: addr.downcast_ref::<SocketAddr>().copied(),
            connect_info: self.connect_info,
        }))
    }
}

pin_project! {
    /// What the inner service is doing for a [`RouterFuture`].
    #[project = StepProj]
    #[project_replace = StepReplace]
    enum Step<S, B, F> {
        /// Not called yet: the first poll calls it.
        Call { service: S, request: http::Request<B> },
        Running { #[pin] future: F },
        /// Answered, or taken apart by `project_replace`.
        Done,
    }
}

pin_project! {
    /// The response future of [`ContextRouter`]: the inner service's
    /// `call` and every poll of its future inside the request's context.
    ///
    /// Dropped before it completes (the client went away), it drops the
    /// inner service and its future inside the request's context too.
    pub struct RouterFuture<S: Service<http::Request<B>>, B> {
        // Dropped by hand, inside the request's context (see the drop).
        #[pin]
        state: ManuallyDrop<Step<S, B, S::Future>>,
        context: Option<InRequest>,
    }

    impl<S: Service<http::Request<B>>, B> PinnedDrop for RouterFuture<S, B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let done = matches!(**this.state, Step::Done);
            // SAFETY: dropped once, here, and never used again.
            let state = unsafe { DropInPlace::new(this.state.get_unchecked_mut()) };
            match this.context {
                Some(context) if !done => context.drop_inside(move || drop(state)),
                _ => drop(state),
            }
        }
    }
}

impl<S: Service<http::Request<B>>, B> fmt::Debug for RouterFuture<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterFuture").finish_non_exhaustive()
    }
}

/// What the first look at a body of known length found.
enum FirstFrame {
    /// The body was all there: it is its one frame (or nothing).
    Whole(Option<Bytes>),
    /// A first frame and more to come, or an error.
    Some(Result<Frame<Bytes>, axum_core::Error>),
    /// Nothing yet, or the body was not read.
    None,
}

impl<S, B> Future for RouterFuture<S, B>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Output = Result<http::Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // SAFETY: the step is never moved out of its pinned place (a
        // projection of it only).
        let mut state = unsafe { this.state.map_unchecked_mut(|state| &mut **state) };
        let context = this
            .context
            .as_mut()
            .expect("milieu::tower::RouterFuture polled after it completed");
        let (parts, body, first) = {
            let _entered = context.enter();
            if let StepProj::Call { .. } = state.as_mut().project() {
                let StepReplace::Call {
                    mut service,
                    request,
                } = state.as_mut().project_replace(Step::Done)
                else {
                    unreachable!("the step was `Call`")
                };
                let future = service.call(request);
                drop(service);
                state.set(Step::Running { future });
            }
            let StepProj::Running { future } = state.as_mut().project() else {
                panic!("milieu::tower::RouterFuture polled after it completed");
            };
            let result = ready!(future.poll(cx));
            // The inner future goes inside the context, as it ran there.
            state.set(Step::Done);
            let (parts, mut body) = match result {
                Ok(response) => response.into_parts(),
                Err(error) => return Poll::Ready(Err(error)),
            };
            let first = read_first_frame(&mut body, cx);
            if let FirstFrame::Whole(_) = first {
                // Its last poll ran here; so does its drop.
                drop(body);
                (parts, None, first)
            } else {
                (parts, Some(body), first)
            }
        };
        let context = this.context.take();
        let body = match (body, first) {
            (_, FirstFrame::Whole(data)) => {
                // Nothing left to run in the request's context: its
                // frame goes back to this thread now, after the entry.
                drop(context);
                data.map_or_else(Body::empty, Body::from)
            }
            (Some(body), FirstFrame::Some(first)) => Body::new(Prepended {
                first: Some(first),
                rest: ContextBody::new(body, context),
            }),
            (Some(body), FirstFrame::None) => Body::new(ContextBody::new(body, context)),
            (None, _) => unreachable!("only a whole body is dropped"),
        };
        Poll::Ready(Ok(http::Response::from_parts(parts, body)))
    }
}

/// Reads `body`'s first frame now if `body` knows its length (it is in
/// memory, most likely): see [`ContextRouter`].
fn read_first_frame(body: &mut Body, cx: &mut TaskContext<'_>) -> FirstFrame {
    if body.size_hint().exact().is_none() {
        return FirstFrame::None;
    }
    match Pin::new(&mut *body).poll_frame(cx) {
        Poll::Ready(None) => FirstFrame::Whole(None),
        Poll::Ready(Some(Ok(frame))) if body.is_end_stream() => match frame.into_data() {
            Ok(data) => FirstFrame::Whole(Some(data)),
            Err(frame) => FirstFrame::Some(Ok(frame)),
        },
        Poll::Ready(Some(result)) => FirstFrame::Some(result),
        Poll::Pending => FirstFrame::None,
    }
}

pin_project! {
    /// A body whose first frame was read early, then the rest.
    struct Prepended {
        first: Option<Result<Frame<Bytes>, axum_core::Error>>,
        #[pin]
        rest: ContextBody<Body>,
    }
}

impl http_body::Body for Prepended {
    type Data = Bytes;
    type Error = axum_core::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum_core::Error>>> {
        let this = self.project();
        match this.first.take() {
            Some(first) => Poll::Ready(Some(first)),
            None => this.rest.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let first = match &self.first {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |data| data.remaining() as u64),
            _ => 0,
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(first));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(first));
        }
        hint
    }
}
