//! What `milieu::tower::ContextLayer` adds to one axum request, in
//! process (no sockets, no runtime), with every side measured in every
//! round so that the machine's slow spells hit all of them alike: the
//! time of the layer's own work, next to the wrk runs of
//! benches/compare_axum_paired.sh, which measure it end to end (see
//! docs/benchmarks.md, "axum hello, paired rounds").
//!
//! Run with `cargo bench --bench tower_layer --features axum` (append
//! `-- --rounds N --requests M` to change the defaults, 200 rounds of
//! 20,000 requests per side; `-- --only SIDE` runs one side alone, for a
//! profiler).
//!
//! Each request is one `GET /` through an axum 0.8 `Router` with the hello
//! route of examples/axum_hello: ready, call, the response future polled
//! to its end and the whole body read, the way hyper drives a service.
//! Every router has its state given (`Router::with_state`), as
//! `axum::serve` does for each connection, so its routes (and their
//! layers) are built once, not for every request. Sides:
//! - `without`: the router alone, its handler answering at once;
//! - `router_layer`: `ContextLayer` through `Router::layer`, the handler
//!   reading the request's `RequestInfo` (examples/axum_hello's `--layer`);
//! - `around`: `ContextLayer` around the whole router, its body boxed back
//!   into axum's `Body` (`--layer-outside`);
//! - `pass_router_layer` and `pass_around`: the do-nothing layer of
//!   examples/axum_hello mounted each way, the handler answering at once:
//!   what axum charges for any layer of that shape.
//!
//! Each round runs the five sides in a new random order, `--requests`
//! requests each, and takes each side's mean time per request. Printed:
//! each side's median over the rounds, then the median of the per-round
//! differences that answer the questions (each layer against the side
//! without one; milieu's layer against the do-nothing one mounted the
//! same way), each with a 95% confidence interval (a percentile
//! bootstrap over the rounds).
//!
//! The handlers complete without waiting, so each future is polled once
//! with a waker that does nothing (`now_or_never`).

use std::hint::black_box;
use std::time::Instant;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use futures::FutureExt;
use http_body_util::BodyExt;
use milieu::tower::ContextLayer;
use tower::util::MapResponse;
use tower::{Layer, Service};

// The example's handlers and do-nothing layer.
#[path = "../examples/axum_hello/handlers.rs"]
#[allow(dead_code)] // `hello_with_trace` is the example's alone.
mod handlers;
#[path = "../examples/axum_hello/passthrough.rs"]
mod passthrough;

use handlers::{hello, hello_in_context, BODY};
use passthrough::Passthrough;

/// One `GET /` through `service`, as hyper drives it: ready, call, the
/// response future to its end, the body's frames to its end. Returns the
/// body's length.
fn one_request<S, B>(service: &mut S) -> usize
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let request = http::Request::get("/").body(Body::empty()).unwrap();
    // An axum `Router` (with or without a layer) is always ready.
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .now_or_never()
        .expect("ready at once")
        .unwrap();
    let response = service
        .call(request)
        .now_or_never()
        .expect("the handler answers at once")
        .unwrap();
    let body = response
        .into_body()
        .collect()
        .now_or_never()
        .expect("the body is in memory")
        .unwrap();
    body.to_bytes().len()
}

/// `service` answering with axum's `Body`, as `axum::serve` needs around
/// a whole router (examples/axum_hello's `into_axum_body`).
type ToAxumBody<B> = fn(http::Response<B>) -> http::Response<Body>;
fn boxed<S, B>(service: S) -> MapResponse<S, ToAxumBody<B>>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    MapResponse::new(service, |response| response.map(Body::new))
}

/// One side: a name and `requests` requests through its service, timed.
struct Side {
    name: &'static str,
    run: Box<dyn FnMut(u32) -> f64>,
}

/// A side whose service is `service`: runs `requests` requests and
/// returns the mean time of one, in nanoseconds.
fn side<S, B>(name: &'static str, mut service: S) -> Side
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + 'static,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    // Each side answers the same bytes before anything is timed.
    assert_eq!(one_request(&mut service), BODY.len(), "{name}");
    Side {
        name,
        run: Box::new(move |requests| {
            let start = Instant::now();
            for _ in 0..requests {
                black_box(one_request(&mut service));
            }
            start.elapsed().as_nanos() as f64 / f64::from(requests)
        }),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// A small xorshift generator: the rounds' orders and the bootstrap's
/// resamples (seeded, so a run's intervals can be recomputed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A 95% percentile-bootstrap interval of the median of `values`.
fn interval(values: &[f64], rng: &mut Rng) -> (f64, f64) {
    let mut medians: Vec<f64> = (0..10_000)
        .map(|_| {
            let resample: Vec<f64> = (0..values.len())
                .map(|_| values[rng.below(values.len())])
                .collect();
            median(&resample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    (medians[249], medians[9_749])
}

fn arg(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(at) => args
            .get(at + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a number")),
        None => default,
    }
}

/// `--only NAME`: run that side alone (to profile it).
fn only_side() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--only")?;
    Some(
        args.get(at + 1)
            .expect("--only needs a side's name")
            .clone(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; only these options are read.
    let rounds = arg("--rounds", 200) as usize;
    let requests = arg("--requests", 20_000);
    let mut sides = [
        side(
            "without",
            Router::new().route("/", get(hello)).with_state(()),
        ),
        side(
            "router_layer",
            Router::new()
                .route("/", get(hello_in_context))
                .layer(ContextLayer::new())
                .with_state(()),
        ),
        side(
            "around",
            boxed(
                ContextLayer::new().layer(
                    Router::new()
                        .route("/", get(hello_in_context))
                        .with_state(()),
                ),
            ),
        ),
        side(
            "pass_router_layer",
            Router::new()
                .route("/", get(hello))
                .layer(Passthrough)
                .with_state(()),
        ),
        side(
            "pass_around",
            boxed(Passthrough.layer(Router::new().route("/", get(hello)).with_state(()))),
        ),
    ];
    if let Some(only) = only_side() {
        // For a profiler: one side alone, the others never run.
        let side = sides
            .iter_mut()
            .find(|side| side.name == only)
            .unwrap_or_else(|| panic!("--only: no side named {only}"));
        let times: Vec<f64> = (0..rounds).map(|_| (side.run)(requests)).collect();
        println!(
            "{only}: {:.1} ns per request (median of {rounds} rounds)",
            median(&times)
        );
        return;
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // One round unrecorded: every side warm.
    for side in &mut sides {
        (side.run)(requests);
    }
    let mut times = vec![Vec::with_capacity(rounds); sides.len()];
    for _ in 0..rounds {
        let mut order: Vec<usize> = (0..sides.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        for at in order {
            times[at].push((sides[at].run)(requests));
        }
    }
    println!(
        "{rounds} rounds of {requests} requests per side, ns per request (median over the rounds):"
    );
    for (side, times) in sides.iter().zip(&times) {
        println!("  {:<18} {:>7.1}", side.name, median(times));
    }
    println!("differences, median of the per-round differences [95% interval]:");
    let questions = [
        ("router_layer - without", 1, 0),
        ("around - without", 2, 0),
        ("pass_router_layer - without", 3, 0),
        ("pass_around - without", 4, 0),
        ("router_layer - pass_router_layer", 1, 3),
        ("around - pass_around", 2, 4),
    ];
    for (label, a, b) in questions {
        let differences: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x - y).collect();
        let (low, high) = interval(&differences, &mut rng);
        println!(
            "  {label:<33} {:>+7.1} [{low:+.1}, {high:+.1}]",
            median(&differences)
        );
    }
}
