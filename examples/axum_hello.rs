//! axum 0.8 hello world on a tokio `current_thread` runtime, with or
//! without milieu's `ContextLayer`: the two sides of the layer's cost in
//! `benches/compare_axum.sh` (docs/benchmarks.md, "axum hello with the
//! layer").
//!
//! ```text
//! cargo run --release --example axum_hello --features axum,tokio -- --addr 127.0.0.1:0 [--layer]
//! ```
//!
//! Prints `listening on ADDR` first. With `--layer`, the handler reads
//! the request's `RequestInfo` from the context, as a handler behind the
//! layer would (and the layer continues or starts a W3C trace per
//! request); without it, the handler answers the same bytes with no
//! lookup.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use milieu::tower::{ContextLayer, RequestInfo};

const BODY: &str = "hello from milieu\n";

async fn hello() -> &'static str {
    BODY
}

async fn hello_in_context() -> &'static str {
    // One lookup, so the layer's entry is used, not only installed.
    let found = milieu::with(|_: &RequestInfo| ()).is_ok();
    assert!(found, "the layer installs the request's RequestInfo");
    BODY
}

fn args() -> Result<(SocketAddr, bool), String> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8082));
    let mut layer = false;
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--addr" => {
                let value = words.next().ok_or("--addr needs a value")?;
                addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?;
            }
            "--layer" => layer = true,
            other => {
                return Err(format!(
                    "usage: axum_hello [--addr HOST:PORT] [--layer] (got {other:?})"
                ))
            }
        }
    }
    Ok((addr, layer))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, layer) = args()?;
    let app = if layer {
        Router::new()
            .route("/", get(hello_in_context))
            .layer(ContextLayer::new())
    } else {
        Router::new().route("/", get(hello))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await
    })?;
    Ok(())
}
