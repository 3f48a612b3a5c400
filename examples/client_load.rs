//! The HTTP client benchmark's load generator: keep-alive `GET`s against
//! one server with either milieu's client (`milieu::http::Client` on one
//! reactor) or hyper's (`hyper_util::client::legacy::Client` on a tokio
//! `current_thread` runtime), the same number of requests in flight, one
//! thread each. See docs/benchmarks.md, "HTTP client" and
//! `benches/compare_client.sh`.
//!
//! ```text
//! cargo run --release --example client_load -- --client milieu|hyper --url http://127.0.0.1:PORT/
//!     [--in-flight N] [--warmup S] [--seconds S]
//! ```
//!
//! Prints one line: `client NAME requests N seconds S rps R cpu_us_per_request C`
//! (CPU: user + system time of this process over the counted seconds).
//! Every answer's status must be 200 and its body non-empty; anything else
//! stops the run with an error.

use std::error::Error;
use std::time::{Duration, Instant};

use milieu::http::Client;
use milieu::reactor::{Handle, Reactor};

struct Args {
    client: String,
    url: String,
    in_flight: usize,
    warmup: Duration,
    seconds: Duration,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        client: String::new(),
        url: String::new(),
        in_flight: 16,
        warmup: Duration::from_secs(1),
        seconds: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let secs = |v: &str| v.parse::<f64>().map(Duration::from_secs_f64);
        match flag.as_str() {
            "--client" => out.client = value,
            "--url" => out.url = value,
            "--in-flight" => out.in_flight = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--warmup" => out.warmup = secs(&value).map_err(|e| format!("{flag}: {e}"))?,
            "--seconds" => out.seconds = secs(&value).map_err(|e| format!("{flag}: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !matches!(out.client.as_str(), "milieu" | "hyper") || out.url.is_empty() {
        return Err(
            "usage: client_load --client milieu|hyper --url URL [--in-flight N] \
                    [--warmup S] [--seconds S]"
                .into(),
        );
    }
    Ok(out)
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split(' ').collect());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ")".
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // The kernel's USER_HZ is 100 on Linux for every architecture we run on.
    Duration::from_millis(ticks * 10)
}

/// The counting window: requests that finish inside it count.
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn new(args: &Args) -> Window {
        let start = Instant::now() + args.warmup;
        Window {
            start,
            end: start + args.seconds,
        }
    }
}

/// Requests counted in the window, and all requests made.
type Counts = (u64, u64);

fn run_milieu(args: &Args, window: &Window) -> Result<Counts, Box<dyn Error>> {
    let mut reactor = Reactor::new()?;
    let client = Client::builder()
        .max_connections_per_origin(args.in_flight)
        .max_idle_per_origin(args.in_flight)
        .build();
    let (start, end) = (window.start, window.end);
    let tasks: Vec<_> = (0..args.in_flight)
        .map(|_| {
            let client = client.clone();
            let url = args.url.clone();
            async move {
                let (mut counted, mut all) = (0u64, 0u64);
                loop {
                    let answer = client.get(&url).await.map_err(|e| e.to_string())?;
                    if answer.status() != 200 || answer.body().is_empty() {
                        let (status, len) = (answer.status(), answer.body().len());
                        return Err(format!("answer {status} with {len} bytes"));
                    }
                    all += 1;
                    let now = Instant::now();
                    if now >= end {
                        return Ok::<Counts, String>((counted, all));
                    }
                    if now >= start {
                        counted += 1;
                    }
                }
            }
        })
        .collect();
    let results = reactor.run_until(async move {
        let handle = Handle::current().expect("in the reactor");
        let joins: Vec<_> = tasks.into_iter().map(|t| handle.spawn(t)).collect();
        let mut results = Vec::new();
        for join in joins {
            results.push(join.await);
        }
        results
    })?;
    let mut total = (0, 0);
    for result in results {
        let (counted, all) = result.map_err(|e| e.to_string())??;
        total = (total.0 + counted, total.1 + all);
    }
    Ok(total)
}

fn run_hyper(args: &Args, window: &Window) -> Result<Counts, Box<dyn Error>> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client as HyperClient;
    use hyper_util::rt::TokioExecutor;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let uri: hyper::Uri = args.url.parse()?;
    let (start, end) = (window.start, window.end);
    runtime.block_on(async move {
        let client: HyperClient<_, Empty<Bytes>> = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(args.in_flight)
            .build_http();
        let tasks: Vec<_> = (0..args.in_flight)
            .map(|_| {
                let client = client.clone();
                let uri = uri.clone();
                tokio::spawn(async move {
                    let (mut counted, mut all) = (0u64, 0u64);
                    loop {
                        let answer = client.get(uri.clone()).await.map_err(|e| e.to_string())?;
                        let status = answer.status();
                        let body = answer
                            .into_body()
                            .collect()
                            .await
                            .map_err(|e| e.to_string())?
                            .to_bytes();
                        if status != 200 || body.is_empty() {
                            return Err(format!("answer {status} with {} bytes", body.len()));
                        }
                        all += 1;
                        let now = Instant::now();
                        if now >= end {
                            return Ok::<Counts, String>((counted, all));
                        }
                        if now >= start {
                            counted += 1;
                        }
                    }
                })
            })
            .collect();
        let mut total = (0, 0);
        for task in tasks {
            let (counted, all) = task.await.map_err(|e| e.to_string())??;
            total = (total.0 + counted, total.1 + all);
        }
        Ok(total)
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = args()?;
    let window = Window::new(&args);
    // CPU is read around the whole run (warm-up and the last requests
    // included) and divided by every request made in it: CPU per request.
    let cpu_before = cpu_time();
    let (counted, all) = match args.client.as_str() {
        "milieu" => run_milieu(&args, &window)?,
        _ => run_hyper(&args, &window)?,
    };
    let cpu = cpu_time() - cpu_before;
    let seconds = args.seconds.as_secs_f64();
    println!(
        "client {} requests {counted} seconds {seconds:.1} rps {:.0} cpu_us_per_request {:.2}",
        args.client,
        counted as f64 / seconds,
        cpu.as_secs_f64() * 1e6 / all.max(1) as f64
    );
    Ok(())
}
