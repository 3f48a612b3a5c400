//! The peer of the HTTP benchmark: hyper 1.x on a tokio `current_thread`
//! runtime answering `GET /` with a small text body, keep-alive, as
//! `examples/orders.rs` does.
//!
//! Run with `cargo run --release --example hyper_hello -- --addr 127.0.0.1:0`;
//! prints `listening on ADDR` first. See docs/benchmarks.md,
//! "HTTP: hello world".

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &str = "hello from milieu\n";

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("a valid response"))
}

fn addr() -> Result<SocketAddr, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(SocketAddr::from(([127, 0, 0, 1], 8081))),
        [flag, addr] if flag == "--addr" => addr.parse().map_err(|e| format!("--addr {addr}: {e}")),
        _ => Err(format!(
            "usage: hyper_hello [--addr HOST:PORT] (got {args:?})"
        )),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::task::spawn(async move {
                let served = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
                if let Err(e) = served {
                    eprintln!("connection error: {e}");
                }
            });
        }
    })
}
