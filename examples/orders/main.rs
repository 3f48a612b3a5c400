//! The main job: a small order service on milieu.
//!
//! ```text
//! cargo run --release --example orders -- [--addr HOST:PORT] [--admin-addr HOST:PORT]
//!     [--threads N] [--data DIR]
//! ```
//!
//! Defaults: `127.0.0.1:8080`, no admin listener, one reactor thread, the
//! database in `milieu-orders` under the system temp dir. The first line
//! of stdout is `listening on ADDR`; with `--admin-addr` the second is
//! `admin listening on ADDR`. Routes of the public listener (`--addr`):
//!
//! - `POST /orders` with `{"item": "tea", "quantity": 2}`: stores the order
//!   and an "order placed" notification in one transaction; the
//!   notification is delivered (logged) only after the commit. The body
//!   must be exactly that JSON object: an array, a scalar, or a missing,
//!   repeated or unknown field gets 400 with a JSON `error`.
//! - `GET /orders/{id}`, `GET /orders?limit=N`.
//! - `GET /`: a greeting (the benchmark's route).
//!
//! `HEAD` is served wherever `GET` is (the header fields, no body). A path
//! that exists answers any other method with 405 and an `Allow` header; a
//! method HTTP does not define (`FROB`) gets 501.
//!
//! Routes of the admin listener (`--admin-addr`), 404 on the public one:
//!
//! - `GET /debug/context`: the context of the request being handled, as
//!   text, JSON (`Accept: application/json`) or an HTML page
//!   (`Accept: text/html`); `GET /debug/stages`: the DB stage's figures.
//!
//! The admin listener is off unless `--admin-addr` is given. The debug
//! views show source locations, peer addresses and database figures: they
//! are for the operator, not for whoever can reach the service. With no
//! default they are never exposed by accident, and no default admin port
//! can be taken already (a loopback default would still serve every local
//! user, and a busy port would stop the service from starting). Give it a
//! loopback address, e.g. `--admin-addr 127.0.0.1:8081`; any other address
//! is served too, with a warning on stderr.
//!
//! Start-up verifies every route's declared context before listening and
//! refuses to start with a report if something is missing. SIGINT or
//! SIGTERM stop it gracefully: both listeners close, in-flight requests
//! finish, committed notifications are delivered, exit status 0.
//!
//! Other flags: `--read-timeout-ms N`, `--idle-timeout-ms N` and
//! `--write-timeout-ms N` (defaults 10 s, 60 s and 30 s: a client that
//! takes none of its answers for that long is dropped),
//! `--max-connections N` (default 16,384, shared by all threads: past it a
//! new connection gets `503` and `Retry-After: 1`), `--panic-route` (makes `POST /debug/panic` on the public
//! listener panic, for the tests of the panic handling: they check that
//! the public listener answers 500 and goes on serving; without the flag
//! the path does not exist).

mod debug;
mod routes;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milieu::http::{self, HttpLimits};
use milieu::reactor::{run_on_threads, Listener, Reactor, SharedPort};
use milieu::txn::{Database, Delivery, Sqlite};

use routes::Service;
use store::OrderPlaced;

/// Command-line settings.
struct Args {
    addr: String,
    /// Where the debug views are served; `None`: nowhere.
    admin_addr: Option<String>,
    threads: usize,
    data: PathBuf,
    read_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    max_connections: usize,
    panic_route: bool,
}

const USAGE: &str = "usage: orders [--addr HOST:PORT] [--admin-addr HOST:PORT] [--threads N] \
                     [--data DIR] [--read-timeout-ms N] [--idle-timeout-ms N] [--write-timeout-ms N] \
                     [--max-connections N] [--panic-route]\n\
                     --admin-addr serves /debug/context and /debug/stages there (off without \
                     it; give a loopback address)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".into(),
        admin_addr: None,
        threads: 1,
        data: std::env::temp_dir().join("milieu-orders"),
        read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(30),
        max_connections: 16 * 1024,
        panic_route: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let millis = |text: String, name: &str| {
            text.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("{name} {text}: {e}"))
        };
        match flag.as_str() {
            "--addr" => args.addr = value("--addr")?,
            "--admin-addr" => args.admin_addr = Some(value("--admin-addr")?),
            "--threads" => {
                let text = value("--threads")?;
                args.threads = match text.parse::<usize>() {
                    Ok(n) if (1..=256).contains(&n) => n,
                    _ => return Err(format!("--threads {text}: expected 1 to 256")),
                };
            }
            "--data" => args.data = PathBuf::from(value("--data")?),
            "--read-timeout-ms" => {
                args.read_timeout = millis(value("--read-timeout-ms")?, "--read-timeout-ms")?
            }
            "--idle-timeout-ms" => {
                args.idle_timeout = millis(value("--idle-timeout-ms")?, "--idle-timeout-ms")?
            }
            "--write-timeout-ms" => {
                args.write_timeout = millis(value("--write-timeout-ms")?, "--write-timeout-ms")?
            }
            "--max-connections" => {
                let text = value("--max-connections")?;
                args.max_connections = match text.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("--max-connections {text}: expected 1 or more")),
                };
            }
            "--panic-route" => args.panic_route = true,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orders: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.data).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            args.data.display()
        )
    })?;
    let db_path = args.data.join("orders.sqlite");

    // The main thread's reactor delivers the outbox and runs the shutdown.
    let mut main_reactor = Reactor::builder().name("main").build()?;
    let service = Arc::new(Service {
        panic_route: args.panic_route,
        ..Service::default()
    });
    let counted = Arc::clone(&service);
    let db: Database = main_reactor.context().run(|| {
        Database::builder(Sqlite::file(&db_path))
            .on_delivery(move |d: Delivery<OrderPlaced>| {
                counted.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    target: "orders::notifications",
                    id = %d.id,
                    order = d.item.order,
                    redelivered = d.redelivered,
                    "order placed: {} x {}",
                    d.item.quantity,
                    d.item.item
                );
            })
            .open()
    })?;
    main_reactor.run_until(db.run_interaction(|_tx| store::create_schema()))??;

    // The root context every reactor thread inherits.
    let root = milieu::scope()
        .with_debug(db.clone())
        .because("the orders database (SQLite, WAL)")
        .with_arc(Arc::clone(&service))
        .because("the service's counters")
        .run(milieu::Context::current);

    // Refuse to start if a route could not run.
    let routes = [
        routes::PLACE_ORDER_REQUIREMENTS,
        routes::GET_ORDER_REQUIREMENTS,
        routes::LIST_ORDERS_REQUIREMENTS,
        routes::DEBUG_CONTEXT_REQUIREMENTS,
        routes::DEBUG_STAGES_REQUIREMENTS,
        routes::DEBUG_PANIC_REQUIREMENTS,
    ];
    if let Err(report) = milieu::verify(&root, &routes) {
        return Err(format!("refusing to start:\n{report}").into());
    }

    let port = SharedPort::bind(args.addr.as_str())
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr: SocketAddr = port.local_addr();
    let limits = HttpLimits::new()
        .with_read_timeout(args.read_timeout)
        .with_idle_timeout(args.idle_timeout)
        .with_write_timeout(args.write_timeout)
        .with_max_connections(args.max_connections);
    // Made once, cloned into every thread: the threads share one budget of
    // connections and buffered input (`HttpLimits`), not one each.
    let app = http::serve_with(limits, routes::public);
    let admin_app = http::serve_with(limits, routes::admin);
    let admin_port = match &args.admin_addr {
        Some(admin) => Some(
            SharedPort::bind(admin.as_str())
                .map_err(|e| format!("cannot listen on {admin} (--admin-addr): {e}"))?,
        ),
        None => None,
    };
    let admin_addr: Option<SocketAddr> = admin_port.as_ref().map(SharedPort::local_addr);
    // Every listener of every thread, public and admin, for the shutdown.
    let listeners: Arc<Mutex<Vec<Listener>>> = Arc::default();
    let keep = Arc::clone(&listeners);
    let cores = root.run(|| {
        run_on_threads(args.threads, move |reactor| {
            let app = app.clone();
            let listener = reactor.listen_shared(&port, move || app.clone())?;
            keep.lock().unwrap().push(listener);
            if let Some(admin_port) = &admin_port {
                let admin_app = admin_app.clone();
                let listener = reactor.listen_shared(admin_port, move || admin_app.clone())?;
                keep.lock().unwrap().push(listener);
            }
            Ok(())
        })
    })?;
    // Tests and scripts read the public address from the first line.
    println!("listening on {addr}");
    if let Some(admin_addr) = admin_addr {
        println!("admin listening on {admin_addr}");
        if !admin_addr.ip().is_loopback() {
            tracing::warn!(
                target: "orders",
                %admin_addr,
                "the admin listener is not on a loopback address: anyone who can reach it \
                 sees the debug views (source locations, peer addresses, database figures)"
            );
        }
    }
    tracing::info!(target: "orders", %addr, threads = args.threads, data = %args.data.display(), "serving");

    // Run until SIGINT or SIGTERM.
    let main_handle = main_reactor.handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signal_handle = signals.handle();
    let waiter = std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(target: "orders", signal, "shutting down");
            main_handle.stop();
        }
    });
    main_reactor.run()?;

    // 1. No new connections, on either listener.
    for listener in listeners.lock().unwrap().drain(..) {
        listener.close();
    }
    // 2. In-flight requests finish (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        main_reactor.tick(Some(Duration::from_millis(10)))?;
    }
    cores.stop();
    cores.join()?;
    // 3. Every committed notification is delivered (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        main_reactor.tick(Some(Duration::from_millis(10)))?;
        let left = main_reactor.run_until(db.undelivered())??;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(target: "orders", left = left.len(), "undelivered notifications left for the next start");
            break;
        }
    }
    db.close(milieu::stage::CloseMode::Drain)?;
    signal_handle.close();
    let _ = waiter.join();
    tracing::info!(
        target: "orders",
        placed = service.placed.load(Ordering::Relaxed),
        delivered = service.delivered.load(Ordering::Relaxed),
        "stopped"
    );
    Ok(())
}
