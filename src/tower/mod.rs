//! tower middleware (feature `tower`): milieu's context for services on
//! hyper 1.x and axum 0.8.
//!
//! [`ContextLayer`] does for a tower stack what milieu's own HTTP server
//! does for its handlers: each request gets a [`RequestInfo`], its
//! caller's trace context and baggage (W3C headers, through a
//! [`Propagation`](crate::remote::Propagation)), a process hop when the
//! caller sent context, and a `tracing` span; the inner service's `call`,
//! its response future and the response body run inside that context on
//! every poll. Handlers then read the context with `milieu::get` and
//! declare what they need with `#[milieu::requires]`, exactly as on
//! milieu's reactor.
//!
//! The service's own context (its database, configuration, the tracing
//! dispatcher) is the context the layer finds at `call`: on a runtime
//! from [`milieu::tokio::Runtime`](crate::tokio) (feature `tokio`) every
//! worker thread starts in it. Work the handler spawns with
//! `milieu::tokio::spawn` carries the request's context on; a bare
//! `tokio::spawn` does not (see [`Missing::context_is_empty`](crate::Missing::context_is_empty)).
//!
//! With the `axum` feature, `ContextLayer::around` puts the layer around
//! a whole axum `Router` instead of through `Router::layer`: a
//! `ContextRouter` that `axum::serve` serves as it is, whose context also
//! covers routing and the fallback, and which costs less per request.
//!
//! A handler whose context lacks something answers with
//! [`MissingContext`]: a 500 that names only the request's id, and the
//! whole report in the log.
//!
//! With the `debug-views` feature, [`DebugService`] serves milieu's debug
//! views (`/debug/context`, `/debug/stages`) in one line of a router.
//!
//! Requirements can be checked per route before the first request:
//! [`ContextLayer::installs`] lists what every request's context gains,
//! and [`verify_routes`](crate::verify_routes) checks each route's
//! `#[requires]` declarations against the root context plus that list.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use milieu::remote::TraceContext;
//! use milieu::tower::{ContextLayer, MissingContext, RequestInfo};
//!
//! struct Greeting(&'static str);
//!
//! #[milieu::requires(RequestInfo)]
//! async fn hello(#[ctx] greeting: Arc<Greeting>) -> Result<String, MissingContext> {
//!     let trace = milieu::get::<TraceContext>()?;
//!     Ok(format!("{} (trace {})", greeting.0, trace.trace_id()))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let _greeting = milieu::provide(Greeting("hello"));
//! let app: Router = Router::new().route("/", get(hello)).layer(ContextLayer::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let _ = listener.local_addr()?;
//! // axum::serve(listener, app).await?;
//! # drop(app);
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```

mod body;
#[cfg(feature = "debug-views")]
mod debug;
mod future;
mod layer;
mod missing;
mod request;
#[cfg(feature = "axum")]
mod router;

pub use crate::remote::RequestInfo;
pub use body::ContextBody;
#[cfg(feature = "debug-views")]
pub use debug::DebugService;
pub use future::ResponseFuture;
pub use layer::{ContextLayer, ContextService};
pub use missing::MissingContext;
#[cfg(feature = "axum")]
pub use router::{ContextRouter, RouterFuture};
