//! axum 0.8 hello world on a tokio `current_thread` runtime, with or
//! without milieu's `ContextLayer`: the two sides of the layer's cost in
//! `benches/compare_axum.sh` (docs/benchmarks.md, "axum hello with the
//! layer").
//!
//! ```text
//! cargo run --release --example axum_hello --features axum,tokio -- --addr 127.0.0.1:0 \
//!     [--layer | --passthrough-layer | --layer-outside | --passthrough-layer-outside] \
//!     [--lookup-trace]
//! ```
//!
//! Prints `listening on ADDR` first. With `--layer`, the handler reads
//! the request's `RequestInfo` from the context, as a handler behind the
//! layer would (and the layer continues or starts a W3C trace per
//! request); without it, the handler answers the same bytes with no
//! lookup. `--lookup-trace` makes the handler behind milieu's layer also
//! read the request's `TraceContext`, as one that logs its trace id
//! would: an entry of the request's frame other than its own local one.
//!
//! The layer goes where axum's documentation puts middleware,
//! `Router::layer`. The `-outside` sides wrap the whole router instead,
//! the other place a tower layer can go with `axum::serve`: milieu's with
//! `ContextLayer::around`, the do-nothing layer around the `Router` as
//! one service, its body turned back into axum's `Body`.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use http_body::Body;
use milieu::tower::ContextLayer;
use tower::make::Shared;
use tower::util::MapResponse;
use tower::Layer;

mod handlers;
mod passthrough;

use handlers::{hello, hello_in_context, hello_with_trace};
use passthrough::Passthrough;

/// Which layer wraps the route.
#[derive(Clone, Copy, PartialEq)]
enum Wrap {
    None,
    /// milieu's `ContextLayer`.
    Context,
    /// A layer of the same shape that does nothing: it wraps the service,
    /// its future and the response body, and passes every call and poll
    /// straight through. What axum charges for any such layer (it boxes
    /// the layered service's future and the new body type), measured on
    /// its own.
    Passthrough,
    /// milieu's `ContextLayer` around the whole router rather than
    /// through `Router::layer` (`ContextLayer::around`).
    ContextOutside,
    /// The do-nothing layer around the whole router.
    PassthroughOutside,
}

fn args() -> Result<(SocketAddr, Wrap, bool), String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8082));
    let mut layer = Wrap::None;
    let mut lookup_trace = false;
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--addr" => {
                let value = words.next().ok_or("--addr needs a value")?;
                addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?;
            }
            "--layer" => layer = Wrap::Context,
            "--passthrough-layer" => layer = Wrap::Passthrough,
            "--layer-outside" => layer = Wrap::ContextOutside,
            "--passthrough-layer-outside" => layer = Wrap::PassthroughOutside,
            "--lookup-trace" => lookup_trace = true,
            other => {
                return Err(format!(
                    "usage: axum_hello [--addr HOST:PORT] [--layer | --passthrough-layer | \
                     --layer-outside | --passthrough-layer-outside] [--lookup-trace] (got {other:?})"
                ))
            }
        }
    }
    Ok((addr, layer, lookup_trace))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, layer, lookup_trace) = args()?;
    let in_context = if lookup_trace {
        get(hello_with_trace)
    } else {
        get(hello_in_context)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        match layer {
            Wrap::None => axum::serve(listener, Router::new().route("/", get(hello))).await,
            Wrap::Context => {
                let app = Router::new()
                    .route("/", in_context)
                    .layer(ContextLayer::new());
                axum::serve(listener, app).await
            }
            Wrap::Passthrough => {
                let app = Router::new().route("/", get(hello)).layer(Passthrough);
                axum::serve(listener, app).await
            }
            Wrap::ContextOutside => {
                let app = Router::new().route("/", in_context);
                axum::serve(listener, ContextLayer::new().around(app)).await
            }
            Wrap::PassthroughOutside => {
                let app = Passthrough.layer(Router::new().route("/", get(hello)));
                axum::serve(listener, Shared::new(into_axum_body(app))).await
            }
        }
    })?;
    Ok(())
}

/// `service` answering with axum's `Body`, as `axum::serve` wants: the
/// price of wrapping the whole router (one more box per response body).
fn into_axum_body<S, B>(
    service: S,
) -> MapResponse<S, impl Fn(http::Response<B>) -> axum::response::Response + Clone>
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    MapResponse::new(service, |response: http::Response<B>| {
        response.map(axum::body::Body::new)
    })
}
