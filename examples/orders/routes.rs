//! The routes of the orders role: plain functions of a request, each
//! declaring what it needs from the context with `#[milieu::requires]`;
//! `main` verifies them all against the root context before it listens.
//!
//! Two entry points, one per listener: [`public`] (the orders) and
//! [`admin`] (the debug views). Each routes with a table of [`Resource`]s,
//! which also gives the `Allow` header of every 405.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use milieu::http::debug::DebugViews;
use milieu::http::{Request, RequestInfo, Response};
use milieu::remote::TraceContext;
use milieu::txn::{Database, TxError};
use milieu::{Missing, ScopeExt};

use crate::baggage::OrderRequest;
use crate::line_item::LineItem;
use crate::routing::{json_error, PathPattern, Resource, Route};
use crate::serving::InFlight;
use crate::stock_client::{Stock, StockError};
use crate::store;

/// The service's own state: a context entry of every reactor.
#[derive(Debug, Default)]
pub struct Service {
    /// Orders committed by this process.
    pub placed: AtomicU64,
    /// "Order placed" notifications delivered by this process.
    pub delivered: AtomicU64,
    /// Whether `POST /debug/panic` panics on purpose (`--panic-route`, for
    /// the tests of the panic handling).
    pub panic_route: bool,
}

/// What a route can fail with, and the response each failure gets.
#[derive(Debug)]
pub enum AppError {
    /// The context lacks what the route declared (a start-up bug: `main`
    /// verifies this before listening).
    Context(Missing),
    /// The database refused or failed.
    Db(TxError),
    /// The stock service refused the reservation, or could not be reached.
    Stock(StockError),
}

impl From<Missing> for AppError {
    fn from(missing: Missing) -> Self {
        AppError::Context(missing)
    }
}

impl From<TxError> for AppError {
    fn from(error: TxError) -> Self {
        AppError::Db(error)
    }
}

impl From<StockError> for AppError {
    fn from(error: StockError) -> Self {
        AppError::Stock(error)
    }
}

impl AppError {
    fn response(&self) -> Response {
        match self {
            AppError::Context(missing) => {
                tracing::error!(target: "orders", "{missing}");
                json_error(500, "the service is misconfigured (logged)")
            }
            AppError::Db(e @ (TxError::Overloaded { .. } | TxError::Busy { .. })) => {
                tracing::warn!(target: "orders", "shedding a request: {e}");
                json_error(503, "busy, try again").with_header("retry-after", "1")
            }
            AppError::Db(TxError::Closed { .. }) => json_error(503, "shutting down"),
            AppError::Db(e) => {
                tracing::error!(target: "orders", "database error: {e}");
                json_error(500, "database error (logged)")
            }
            AppError::Stock(e) => e.response(),
        }
    }
}

/// The handler a request goes to once its path and method matched.
#[derive(Debug, Clone, Copy)]
enum Handler {
    Hello,
    PlaceOrder,
    ListOrders,
    GetOrder,
    /// `/debug/context` and `/debug/stages`: the library's views.
    Debug,
    DebugPanic,
}

/// What the public listener serves.
const PUBLIC: &[Resource<Handler>] = &[
    Resource {
        path: PathPattern::Exact("/"),
        methods: &[("GET", Handler::Hello)],
    },
    Resource {
        path: PathPattern::Exact("/orders"),
        methods: &[("GET", Handler::ListOrders), ("POST", Handler::PlaceOrder)],
    },
    Resource {
        path: PathPattern::Prefix("/orders/"),
        methods: &[("GET", Handler::GetOrder)],
    },
];

/// Served by the public listener only with `--panic-route`: without it the
/// path does not exist (404, not a 405 that would reveal it).
const DEBUG_PANIC: Resource<Handler> = Resource {
    path: PathPattern::Exact("/debug/panic"),
    methods: &[("POST", Handler::DebugPanic)],
};

/// What the admin listener (`--admin-addr`) serves, and nothing else: the
/// views show install sites, peer addresses and database figures.
const ADMIN: &[Resource<Handler>] = &[
    Resource {
        path: PathPattern::Exact("/debug/context"),
        methods: &[("GET", Handler::Debug)],
    },
    Resource {
        path: PathPattern::Exact("/debug/stages"),
        methods: &[("GET", Handler::Debug)],
    },
];

/// Every request to the public listener comes here: the orders, the
/// greeting and (with `--panic-route`) `POST /debug/panic`.
///
/// A plain function returning `respond`'s future (rather than an `async fn`
/// awaiting it): one state machine per request, not one inside another.
pub fn public(request: Request) -> impl Future<Output = Response> + Send {
    let panic_route = milieu::with(|s: &Service| s.panic_route).unwrap_or(false);
    let in_flight = InFlight::enter();
    let resources = PUBLIC.iter().chain(panic_route.then_some(&DEBUG_PANIC));
    let route = Route::of(resources, request.method(), request.path());
    respond(route, request, in_flight)
}

/// Every request to the admin listener comes here: the debug views only.
pub fn admin(request: Request) -> impl Future<Output = Response> + Send {
    let in_flight = InFlight::enter();
    let route = Route::of(ADMIN, request.method(), request.path());
    respond(route, request, in_flight)
}

/// Runs the handler `route` chose; the request counts as in flight until
/// its response is ready. Every response says the request's trace id in
/// `trace-id`, so a client can find the request in the logs and, after
/// `POST /orders`, its call in the stock service's debug views.
async fn respond(
    route: Route<Handler>,
    request: Request,
    _in_flight: Result<InFlight, Missing>,
) -> Response {
    let response = match route.handler() {
        Ok(handler) => {
            let result = match handler {
                Handler::Hello => Ok(Response::text(200, "hello from milieu\n")),
                Handler::PlaceOrder => place_order(request).await,
                Handler::ListOrders => list_orders(request).await,
                Handler::GetOrder => get_order(request).await,
                Handler::Debug => debug_views(request),
                Handler::DebugPanic => debug_panic(),
            };
            result.unwrap_or_else(|e| e.response())
        }
        Err(refusal) => refusal,
    };
    match milieu::with(|trace: &TraceContext| trace.trace_id()) {
        Ok(trace_id) => response.with_header("trace-id", trace_id.to_hex()),
        Err(_) => response,
    }
}

/// `POST /orders`: reserves the items with the stock service (when
/// started with `--stock-url`), then stores the order and its
/// notification in one transaction. If stock refuses or cannot be
/// reached, nothing is stored: 502 or 503.
#[milieu::requires(Service)]
pub async fn place_order(
    request: Request,
    #[ctx] db: Arc<Database>,
    #[ctx] stock: Arc<Stock>,
) -> Result<Response, AppError> {
    let line = match LineItem::from_body(request.body()) {
        Ok(line) => line,
        Err(why) => return Ok(json_error(400, &why)),
    };
    let reservation = match &*stock {
        Stock::NotConsulted => None,
        Stock::Service(stock) => {
            // The call carries this request's context: its trace, and this
            // entry, which stock receives as baggage (see `baggage.rs`).
            let this_request = OrderRequest(RequestInfo::current()?.id());
            let reserved = milieu::scope()
                .with_debug(this_request)
                .because("the orders request the reservation is for")
                .wrap(stock.reserve(&line))
                .await?;
            Some(reserved.reservation)
        }
    };
    let order = db.run_interaction(move |_tx| store::place(&line)).await?;
    milieu::get::<Service>()?
        .placed
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(target: "orders", order = order.id, reservation, "order placed");
    Ok(Response::json(201, &order).with_header("location", format!("/orders/{}", order.id)))
}

/// `GET /orders/{id}`.
#[milieu::requires]
pub async fn get_order(request: Request, #[ctx] db: Arc<Database>) -> Result<Response, AppError> {
    let raw = &request.path()["/orders/".len()..];
    let Ok(id) = raw.parse::<i64>() else {
        return Ok(json_error(400, "the order id must be a number"));
    };
    match db.run_interaction(move |_tx| store::find(id)).await? {
        Some(order) => Ok(Response::json(200, &order)),
        None => Ok(json_error(404, "no such order")),
    }
}

/// `GET /orders?limit=N` (1 to 100, default 20): newest first.
#[milieu::requires]
pub async fn list_orders(request: Request, #[ctx] db: Arc<Database>) -> Result<Response, AppError> {
    let mut limit = 20;
    for pair in request
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("limit", value)) => match value.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => return Ok(json_error(400, "`limit` must be a number from 1 to 100")),
            },
            _ => {
                return Ok(json_error(
                    400,
                    &format!("unknown query parameter `{pair}`"),
                ))
            }
        }
    }
    let orders = db.run_interaction(move |_tx| store::latest(limit)).await?;
    Ok(Response::json(200, &orders))
}

/// `GET /debug/context` and `GET /debug/stages` (admin listener): the
/// library's debug views (`milieu::http::debug`), built in `main` with the
/// DB stage. `/debug/context` shows the context of this very request
/// (with its `RequestInfo`, installed per request by `http::serve`);
/// `/debug/stages` the DB stage's figures now and over the last minutes.
#[milieu::requires]
pub fn debug_views(request: Request, #[ctx] views: &DebugViews) -> Result<Response, AppError> {
    // Routing let only the views' own paths through: never `None`.
    Ok(views
        .handle(&request)
        .unwrap_or_else(|| json_error(404, "no such route")))
}

/// `POST /debug/panic` (public listener): panics on purpose when the
/// service was started with `--panic-route` (the server answers 500 and
/// goes on). Routing reaches it only with that flag; the check here keeps
/// the handler harmless on its own.
#[milieu::requires]
pub fn debug_panic(#[ctx] service: &Service) -> Result<Response, AppError> {
    if service.panic_route {
        panic!("POST /debug/panic asked for a panic");
    }
    Ok(json_error(404, "no such route"))
}
