//! The main job: a small order service on milieu, and the stock service
//! it reserves with, as two roles of one program.
//!
//! ```text
//! cargo run --release --example orders -- [--role orders|stock] [--addr HOST:PORT]
//!     [--admin-addr HOST:PORT] [--threads N] [--data DIR]
//!     [--stock-url http://HOST:PORT] [--send-install-sites]   # orders
//!     [--accept-install-sites] [--recent-calls N]              # stock
//! ```
//!
//! The stock service is a role of this example rather than a second
//! example binary: both roles serve the same way (the routing tables,
//! the admin listener and its debug views, the flags, the graceful stop)
//! and must agree on what crosses between them (`baggage.rs`); as two
//! examples they would copy those files or include them by path.
//!
//! Defaults: role `orders`, `127.0.0.1:8080` (stock: `127.0.0.1:8090`),
//! no admin listener, one reactor thread, the orders database in
//! `milieu-orders` under the system temp dir (one instance per directory:
//! a second is refused, naming the process that holds it). The first line of stdout is
//! `listening on ADDR`; with `--admin-addr` the second is
//! `admin listening on ADDR`.
//!
//! # Orders (`--role orders`, the default)
//!
//! Routes of the public listener (`--addr`):
//!
//! - `POST /orders` with `{"item": "tea", "quantity": 2}`: stores the order
//!   and an "order placed" notification in one transaction; the
//!   notification is delivered (logged) only after the commit. The body
//!   must be exactly that JSON object: an array, a scalar, or a missing,
//!   repeated or unknown field gets 400 with a JSON `error`. With
//!   `--stock-url`, the order is first reserved with the stock service
//!   (`POST {url}/reserve`, the same body); if stock refuses (502) or
//!   cannot be reached within 5 s (503), nothing is stored.
//! - `GET /orders/{id}`, `GET /orders?limit=N`.
//! - `GET /`: a greeting (the benchmark's route).
//!
//! Every response carries the request's W3C trace id in a `trace-id`
//! header: with it, the stock service's debug view shows the call made
//! for that order (see below).
//!
//! The call to stock goes through `milieu::http::Client`, which sends the
//! request's context along: the trace context (`traceparent`), an
//! `OrderRequest` baggage entry (this request's number, as in orders'
//! log lines) installed for the call, and the service name `orders`.
//! `--send-install-sites` sends, too, where in orders' source each carried
//! entry was installed; off by default, as it reveals source paths.
//!
//! # Stock (`--role stock`)
//!
//! - `POST /reserve` with `{"item": "tea", "quantity": 2}` (as strict as
//!   `POST /orders`): 200 with `{"item", "quantity", "reservation"}`.
//!
//! Its server reads the trace context and the `OrderRequest` orders sends,
//! and records how they came: the process hop (orders' address, service
//! name and `traceparent`). `--accept-install-sites` reads the install
//! sites orders sends (both flags are needed for them to show). The
//! context of each of the latest `--recent-calls` calls (default 64) is
//! kept, by trace id, for the admin listener.
//!
//! # The admin listener
//!
//! Off unless `--admin-addr` is given; 404 for these on the public one.
//! The views are the library's (`milieu::http::debug::DebugViews`, built
//! in `run_orders` and `run_stock` and installed in the root context):
//!
//! - `GET /debug/context`: the context of the request being handled, as
//!   text, JSON (`Accept: application/json`) or an HTML page
//!   (`Accept: text/html`); `?format=text|json|html` overrides `Accept`;
//! - stock: `GET /debug/context?trace=ID`: the context of the latest
//!   `/reserve` call of trace `ID` (what orders' `trace-id` said), in the
//!   same three formats: the process hop, orders' trace, the carried
//!   entries and, with both install-site flags, where orders installed
//!   them. 404 if no call of that trace is kept, 400 for a malformed id;
//! - orders: `GET /debug/stages`: the DB stage's figures now and, sampled
//!   every 5 seconds while the admin listener is on, over the last 15
//!   minutes: queue depth, throughput and p50/p99 latency, charted in the
//!   HTML page.
//!
//! The debug views show source locations, peer addresses and service
//! figures: they are for the operator, not for whoever can reach the
//! service. With no default they are never exposed by accident, and no
//! default admin port can be taken already (a loopback default would
//! still serve every local user, and a busy port would stop the service
//! from starting). Give it a loopback address, e.g.
//! `--admin-addr 127.0.0.1:8081`; any other address is served too, with a
//! warning on stderr.
//!
//! # Both roles
//!
//! `HEAD` is served wherever `GET` is (the header fields, no body). A path
//! that exists answers any other method with 405 and an `Allow` header; a
//! method HTTP does not define (`FROB`) gets 501.
//!
//! Start-up verifies every route's declared context before listening and
//! refuses to start with a report if something is missing. SIGINT or
//! SIGTERM stop it gracefully: both listeners close, every request
//! received is answered (`Cores::drain`), (orders) committed
//! notifications are delivered, exit status 0.
//!
//! Other flags: `--read-timeout-ms N`, `--idle-timeout-ms N` and
//! `--write-timeout-ms N` (defaults 10 s, 60 s and 30 s: a client that
//! takes none of its answers for that long is dropped),
//! `--max-connections N` (default 16,384, shared by all threads: past it a
//! new connection gets `503` and `Retry-After: 1`; at start the open-file
//! limit is raised to fit it, and where the system's hard limit is lower
//! the service says so and serves what fits). Orders only:
//! `--panic-route` (makes `POST /debug/panic` on the public listener
//! panic, for the tests of the panic handling: they check that the public
//! listener answers 500 and goes on serving; without the flag the path
//! does not exist). A flag of the other role is refused.

mod args;
mod baggage;
mod line_item;
mod recent_calls;
mod routes;
mod routing;
mod serving;
mod stock;
mod stock_client;
mod store;

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use milieu::http;
use milieu::http::debug::DebugViews;
use milieu::reactor::Reactor;
use milieu::txn::{Database, Delivery, Sqlite};
use milieu::Route;

use args::{Args, Role};
use routes::Service;
use serving::{InFlightRequests, Listening, StopOnSignal};
use stock::StockService;
use stock_client::{Stock, StockClient};
use store::OrderPlaced;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_max_level(args.log_level)
        // A log line that cannot be written (stderr closed: a pipe whose
        // reader went away) is lost, not reported with `eprintln!`, which
        // panics on the same closed stderr and would take down the
        // thread that logged, such as the one that stops the service.
        .log_internal_errors(false)
        .init();
    let args = fit_open_files(args);
    let role = args.role;
    let ran = match role {
        Role::Orders => run_orders(args),
        Role::Stock => run_stock(args),
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", role.service_name());
            ExitCode::FAILURE
        }
    }
}

/// Raises the open-file limit so that every listener can hold
/// `--max-connections` connections; where the system allows fewer,
/// serves fewer (said once, at start): past the limit `accept` fails and
/// clients would wait in the backlog instead of getting the budget's 503.
fn fit_open_files(mut args: Args) -> Args {
    use milieu::reactor::OpenFilesLimit;
    let listeners = if args.admin_addr.is_some() { 2 } else { 1 };
    let wanted = (args.max_connections as u64)
        .saturating_mul(listeners)
        .saturating_add(OpenFilesLimit::RESERVE);
    // Where the raise is refused (a request past the kernel's own cap,
    // `fs.nr_open`), the limit in force decides.
    let limit = OpenFilesLimit::raise_to(wanted).or_else(|e| {
        tracing::warn!(target: "orders", "cannot raise the open-file limit to {wanted}: {e}");
        OpenFilesLimit::current()
    });
    match limit {
        Ok(limit) if limit.soft >= wanted => {}
        Ok(limit) => {
            let fits = usize::try_from(limit.connections() / listeners)
                .unwrap_or(usize::MAX)
                .max(1);
            tracing::warn!(
                target: "orders",
                "the open-file limit is {} (hard limit {}): serving at most {fits} connections \
                 per listener, not --max-connections {} (raise it with `ulimit -n`)",
                limit.soft,
                limit.hard,
                args.max_connections,
            );
            args.max_connections = fits;
        }
        Err(e) => tracing::warn!(target: "orders", "cannot read the open-file limit: {e}"),
    }
    args
}

fn run_orders(args: Args) -> Result<(), Box<dyn Error>> {
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
            .max_batch(args.max_batch)
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

    let stock = match &args.stock_url {
        Some(url) => {
            let propagation = baggage::propagation("orders", args.send_install_sites);
            Stock::Service(StockClient::new(url, args.threads, propagation))
        }
        None => Stock::NotConsulted,
    };
    let in_flight = Arc::new(InFlightRequests::default());
    // The admin listener's views: the context of a request, and the DB
    // stage's figures, sampled every 5 s while the admin listener is on.
    let views = DebugViews::new().stage(db.clone());
    let sampler = match &args.admin_addr {
        Some(_) => Some(views.sample_every(Duration::from_secs(5))?),
        None => None,
    };

    // The root context every reactor thread inherits.
    let root = milieu::scope()
        .with_debug(db.clone())
        .because("the orders database (SQLite, WAL)")
        .with_debug(views)
        .because("the debug views of the admin listener (milieu::http::debug)")
        .with_arc(Arc::clone(&service))
        .because("the service's counters")
        .with_debug(stock)
        .because("where orders reserves stock (--stock-url)")
        .with_arc(Arc::clone(&in_flight))
        .because("requests in flight, for the graceful stop")
        .run(milieu::Context::current);

    // Refuse to start if a route could not run: the root context plus what
    // the server installs per request must hold what each route declares.
    let limits = args.http_limits();
    let server = http::Server::new().limits(limits);
    let routes = [
        Route::new("POST /orders").runs(routes::PLACE_ORDER_REQUIREMENTS),
        Route::new("GET /orders/{id}").runs(routes::GET_ORDER_REQUIREMENTS),
        Route::new("GET /orders").runs(routes::LIST_ORDERS_REQUIREMENTS),
        Route::new("GET /debug/... (admin)").runs(routes::DEBUG_VIEWS_REQUIREMENTS),
        Route::new("POST /debug/panic").runs(routes::DEBUG_PANIC_REQUIREMENTS),
    ];
    if let Err(report) = milieu::verify_routes(&root, &server.installs(), &routes) {
        return Err(format!("refusing to start:\n{report}").into());
    }

    let public = server.clone().serve(routes::public);
    let admin = server.serve(routes::admin);
    // SIGINT and SIGTERM are watched before the service says it listens,
    // so a stop sent as soon as it does is a graceful one (the signal's
    // default action would end the process with the database open).
    let signals = StopOnSignal::watch(main_reactor.handle())?;
    let listening = Listening::start(&args, &root, public, admin)?;
    tracing::info!(
        target: "orders",
        addr = %listening.addr,
        threads = args.threads,
        data = %args.data.display(),
        stock = args.stock_url.as_deref().unwrap_or("not consulted"),
        "serving"
    );

    // Run until SIGINT or SIGTERM.
    main_reactor.run()?;

    // 1. and 2.: no new connections, in-flight requests finish.
    listening.stop(&mut main_reactor, &in_flight)?;
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
    drop(sampler);
    db.close(milieu::stage::CloseMode::Drain)?;
    signals.finish();
    tracing::info!(
        target: "orders",
        placed = service.placed.load(Ordering::Relaxed),
        delivered = service.delivered.load(Ordering::Relaxed),
        "stopped"
    );
    Ok(())
}

fn run_stock(args: Args) -> Result<(), Box<dyn Error>> {
    // The main thread's reactor runs the shutdown.
    let mut main_reactor = Reactor::builder().name("main").build()?;
    let in_flight = Arc::new(InFlightRequests::default());
    let root = milieu::scope()
        .with_arc(Arc::new(StockService::new(args.recent_calls)))
        .because("the stock service's reservations and latest calls")
        .with_debug(DebugViews::new())
        .because("the debug views of the admin listener (milieu::http::debug)")
        .with_arc(Arc::clone(&in_flight))
        .because("requests in flight, for the graceful stop")
        .run(milieu::Context::current);
    let limits = args.http_limits();
    // What callers may send: the same list orders sends from.
    let propagation = baggage::propagation("stock", args.accept_install_sites);
    let public = http::Server::new().limits(limits).propagation(propagation);
    let admin = http::Server::new().limits(limits);
    let routes = [Route::new("POST /reserve").runs(stock::RESERVE_REQUIREMENTS)];
    let admin_routes =
        [Route::new("GET /debug/... (admin)").runs(stock::DEBUG_CONTEXT_REQUIREMENTS)];
    let checked = milieu::verify_routes(&root, &public.installs(), &routes)
        .and_then(|()| milieu::verify_routes(&root, &admin.installs(), &admin_routes));
    if let Err(report) = checked {
        return Err(format!("refusing to start:\n{report}").into());
    }

    let public = public.serve(stock::public);
    let admin = admin.serve(stock::admin);
    let signals = StopOnSignal::watch(main_reactor.handle())?;
    let listening = Listening::start(&args, &root, public, admin)?;
    tracing::info!(
        target: "stock",
        addr = %listening.addr,
        threads = args.threads,
        accept_install_sites = args.accept_install_sites,
        "serving"
    );

    main_reactor.run()?;
    listening.stop(&mut main_reactor, &in_flight)?;
    signals.finish();
    tracing::info!(target: "stock", "stopped");
    Ok(())
}
