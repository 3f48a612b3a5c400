//! The orders service on axum 0.8 and tokio, with milieu's context: the
//! same routes as `examples/orders`, the same SQLite schema through
//! milieu's DB stage (`txn`: whole transactions on worker threads,
//! notifications released only on commit), `#[milieu::requires]`
//! handlers, and every route checked before the service listens.
//!
//! ```text
//! cargo run --example axum_orders --features axum,tokio -- --addr 127.0.0.1:8080
//! curl -s -X POST localhost:8080/orders -d '{"item": "tea", "quantity": 2}'
//! curl -s localhost:8080/orders
//! ```
//!
//! What milieu adds to a plain axum service:
//!
//! - the root context (the database, the service's figures, the tracing
//!   subscriber) is installed once, on every thread of the runtime
//!   (`milieu::tokio::Runtime`);
//! - `milieu::tower::ContextLayer` puts each request into the context
//!   (its `RequestInfo`, the caller's W3C trace context and baggage, a
//!   span), so handlers declare what they need instead of threading
//!   state through extractors;
//! - `milieu::verify_routes` refuses to start when a route would miss
//!   something, naming the route, the handler and the type.
//!
//! Flags: `--addr ADDR` (default `127.0.0.1:8080`), `--admin-addr ADDR`
//! (milieu's debug views, `/debug/context` and `/debug/stages`, through
//! `milieu::tower::DebugService`; off by default), `--data DIR` (default
//! `./axum-orders-data`). The first line on standard output is
//! `listening on ADDR`; with `--admin-addr`, the second is
//! `admin listening on ADDR`. Ctrl-C or SIGTERM stops it gracefully: it
//! stops accepting, lets requests in flight finish for up to
//! `--shutdown-grace SECS` (default 10), then closes the connections still
//! open (a client that sends half a request holds none of it up).
//!
//! Slow clients are bounded by `--client-timeout SECS` (default 30, at
//! most a day): a connection whose next request's header fields are not
//! all in within that time is closed (an idle keep-alive connection too),
//! a body not all in within that time gets `408`, and a connection whose
//! answer cannot be written for that long (the client stopped reading)
//! is closed. Bodies are read up to 64 KiB (`413` past that), and at most
//! `--max-connections N` (default 1024) connections are served at once
//! per listener. See `serve.rs`: `axum::serve` sets none of these bounds.

mod app;
#[path = "../orders/line_item.rs"]
mod line_item;
mod serve;
#[path = "../orders/store.rs"]
mod store;

use std::error::Error;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use milieu::http::debug::DebugViews;
use milieu::reactor::{Handle, Reactor};
use milieu::tower::ContextLayer;
use milieu::txn::{Database, Delivery, Sqlite};

use app::Service;
use store::OrderPlaced;

/// The command line.
struct Args {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    data: PathBuf,
    /// How long requests in flight may take to finish after the stop
    /// signal.
    shutdown_grace: Duration,
    /// How long a client may take to send a request's header fields,
    /// then its body, and to take each part of an answer.
    client_timeout: Duration,
    /// Connections served at once, per listener.
    max_connections: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        admin_addr: None,
        data: PathBuf::from("axum-orders-data"),
        shutdown_grace: Duration::from_secs(10),
        client_timeout: Duration::from_secs(30),
        max_connections: 1024,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = parse_addr(&flag, &value()?)?,
            "--admin-addr" => args.admin_addr = Some(parse_addr(&flag, &value()?)?),
            "--data" => args.data = PathBuf::from(value()?),
            "--shutdown-grace" => args.shutdown_grace = parse_secs(&flag, &value()?)?,
            "--client-timeout" => {
                let secs = value()?;
                args.client_timeout = parse_secs(&flag, &secs)?;
                if !(1..=86_400).contains(&args.client_timeout.as_secs()) {
                    return Err(format!("{flag} {secs}: from 1 to 86400 seconds"));
                }
            }
            "--max-connections" => {
                let n = value()?;
                args.max_connections = match n.parse() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("{flag} {n:?}: a number of connections, at least 1")),
                };
            }
            "--help" | "-h" => {
                return Err(
                    "usage: axum_orders [--addr ADDR] [--admin-addr ADDR] [--data DIR] \
                     [--shutdown-grace SECS] [--client-timeout SECS] [--max-connections N]"
                        .to_owned(),
                )
            }
            other => return Err(format!("unknown flag `{other}` (see --help)")),
        }
    }
    Ok(args)
}

fn parse_secs(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse()
        .map(Duration::from_secs)
        .map_err(|e| format!("{flag} {value:?}: not a number of seconds ({e})"))
}

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|e| format!("{flag} {value:?}: not a socket address ({e})"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(true)
        // A log line that cannot be written (stderr closed: a pipe whose
        // reader went away) is lost, not reported with `eprintln!`, which
        // panics on the same closed stderr and would take down the
        // thread that logged, such as the one that stops the service.
        .log_internal_errors(false)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("axum_orders: {why}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_orders: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(&args.data).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            args.data.display()
        )
    })?;
    let service = Arc::new(Service::default());

    // milieu's DB stage delivers committed notifications on a milieu
    // reactor: one of its own, on a thread beside tokio's.
    let outbox = OutboxReactor::start()?;
    let counted = Arc::clone(&service);
    let db: Database = Database::builder(Sqlite::file(args.data.join("orders.sqlite")))
        .reactor(outbox.handle.clone())
        .on_delivery(move |d: Delivery<OrderPlaced>| {
            counted.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                target: "axum_orders::notifications",
                id = %d.id,
                order = d.item.order,
                redelivered = d.redelivered,
                "order placed: {} x {}",
                d.item.quantity,
                d.item.item
            );
        })
        .open()?;
    futures::executor::block_on(db.run_interaction(|_tx| store::create_schema()))?;

    // The root context every runtime thread starts in.
    let root = milieu::scope()
        .with_debug(db.clone())
        .because("the orders database (SQLite, WAL)")
        .with_arc(Arc::clone(&service))
        .because("the service's figures")
        .run(milieu::Context::current);

    let layer = ContextLayer::new()
        .peer_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|info| info.0));
    // Refuse to start if a route could not run: the root context plus what
    // the layer installs per request must hold what each handler declares.
    milieu::verify_routes(&root, &layer.installs(), &app::routes())?;

    // milieu's debug views for the admin listener; while it is on, the DB
    // stage is sampled every 5 s for the charts of `/debug/stages`.
    let views = DebugViews::new().stage(db.clone());
    let _sampler = match args.admin_addr {
        Some(_) => Some(views.sample_every(Duration::from_secs(5))?),
        None => None,
    };

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("axum-orders");
    let runtime = milieu::tokio::Runtime::from_builder(&mut builder, root)?;
    let served = runtime.block_on(async move {
        let stop = stop_signal()?;
        let public = tokio::net::TcpListener::bind(args.addr).await?;
        println!("listening on {}", public.local_addr()?);
        let admin = match args.admin_addr {
            Some(addr) => {
                let admin = tokio::net::TcpListener::bind(addr).await?;
                println!("admin listening on {}", admin.local_addr()?);
                Some(admin)
            }
            None => None,
        };
        std::io::stdout().flush()?;
        let limits = serve::Limits {
            client_timeout: args.client_timeout,
            // An order is a small JSON object.
            body_bytes: 64 * 1024,
            connections: args.max_connections,
        };
        if let Some(admin) = admin {
            let app = app::admin(layer.clone(), views, limits);
            let forever = std::future::pending();
            milieu::tokio::spawn(serve::serve(
                admin,
                app,
                limits,
                forever,
                args.shutdown_grace,
            ));
        }
        let app = app::public(layer, limits);
        serve::serve(public, app, limits, stop, args.shutdown_grace).await;
        Ok::<_, std::io::Error>(())
    });
    drop(runtime);
    db.close(milieu::stage::CloseMode::Drain)?;
    outbox.stop();
    eprintln!(
        "axum_orders: stopped; {} order(s) placed, {} notification(s) delivered",
        service.placed.load(Ordering::Relaxed),
        service.delivered.load(Ordering::Relaxed)
    );
    Ok(served?)
}

/// Ctrl-C or SIGTERM, listened for from this call on: made before the
/// service says it listens, so that a stop sent as soon as it does is
/// never missed (the signal's default action would end the process
/// without closing the database).
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// A milieu reactor on a thread of its own, for the outbox deliveries.
struct OutboxReactor {
    handle: Handle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl OutboxReactor {
    fn start() -> std::io::Result<OutboxReactor> {
        let (send, receive) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("outbox".to_owned())
            .spawn(move || {
                let mut reactor = Reactor::builder().name("outbox").build()?;
                let _ = send.send(reactor.handle());
                reactor.run()
            })?;
        let handle = receive
            .recv()
            .map_err(|_| std::io::Error::other("the outbox reactor did not start"))?;
        Ok(OutboxReactor { handle, thread })
    }

    fn stop(self) {
        self.handle.stop();
        let _ = self.thread.join();
    }
}
