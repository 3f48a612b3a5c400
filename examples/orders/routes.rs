//! The routes: plain functions of a request, each declaring what it needs
//! from the context with `#[milieu::requires]`; `main` verifies them all
//! against the root context before it listens.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use milieu::http::{Request, Response};
use milieu::txn::{Database, TxError};
use milieu::Missing;

use crate::debug::{self, Format};
use crate::store::{self, NewOrder};

/// The service's own state: a context entry of every reactor.
#[derive(Debug, Default)]
pub struct Service {
    /// Requests being handled now (graceful shutdown waits for 0).
    pub in_flight: AtomicUsize,
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

impl AppError {
    fn response(&self) -> Response {
        match self {
            AppError::Context(missing) => {
                tracing::error!(target: "orders", "{missing}");
                error(500, "the service is misconfigured (logged)")
            }
            AppError::Db(e @ (TxError::Overloaded { .. } | TxError::Busy { .. })) => {
                tracing::warn!(target: "orders", "shedding a request: {e}");
                error(503, "busy, try again").with_header("retry-after", "1")
            }
            AppError::Db(TxError::Closed { .. }) => error(503, "shutting down"),
            AppError::Db(e) => {
                tracing::error!(target: "orders", "database error: {e}");
                error(500, "database error (logged)")
            }
        }
    }
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, &serde_json::json!({ "error": message }))
}

/// Counts the request as in flight while it lives.
struct InFlight(Arc<Service>);

impl InFlight {
    fn enter(service: Arc<Service>) -> InFlight {
        service.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(service)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which route a request asks for, decided from borrowed method and path
/// before the request moves into its handler.
enum Route {
    Hello,
    PlaceOrder,
    ListOrders,
    GetOrder,
    DebugContext,
    DebugStages,
    DebugPanic,
    MethodNotAllowed,
    NotFound,
}

impl Route {
    fn of(request: &Request) -> Route {
        match (request.method(), request.path()) {
            ("GET", "/") => Route::Hello,
            ("POST", "/orders") => Route::PlaceOrder,
            ("GET", "/orders") => Route::ListOrders,
            ("GET", p) if p.starts_with("/orders/") => Route::GetOrder,
            ("GET", "/debug/context") => Route::DebugContext,
            ("GET", "/debug/stages") => Route::DebugStages,
            ("POST", "/debug/panic") => Route::DebugPanic,
            (_, "/" | "/orders" | "/debug/context" | "/debug/stages") => Route::MethodNotAllowed,
            (_, p) if p.starts_with("/orders/") => Route::MethodNotAllowed,
            _ => Route::NotFound,
        }
    }
}

/// Every request comes here: routes by method and path.
pub async fn route(request: Request) -> Response {
    let _in_flight = milieu::get::<Service>().map(InFlight::enter);
    let result = match Route::of(&request) {
        Route::Hello => Ok(Response::text(200, "hello from milieu\n")),
        Route::PlaceOrder => place_order(request).await,
        Route::ListOrders => list_orders(request).await,
        Route::GetOrder => get_order(request).await,
        Route::DebugContext => debug_context(request),
        Route::DebugStages => debug_stages(request),
        Route::DebugPanic => debug_panic(),
        Route::MethodNotAllowed => Ok(error(405, "method not allowed")),
        Route::NotFound => Ok(error(404, "no such route")),
    };
    result.unwrap_or_else(|e| e.response())
}

/// `POST /orders`: stores the order and its notification in one
/// transaction.
#[milieu::requires(Service)]
pub async fn place_order(request: Request, #[ctx] db: Arc<Database>) -> Result<Response, AppError> {
    let new: NewOrder = match serde_json::from_slice(request.body()) {
        Ok(new) => new,
        Err(e) => return Ok(error(400, &format!("invalid order JSON: {e}"))),
    };
    if let Err(why) = new.validate() {
        return Ok(error(400, &why));
    }
    let order = db.run_interaction(move |_tx| store::place(&new)).await?;
    milieu::get::<Service>()?
        .placed
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(target: "orders", order = order.id, "order placed");
    Ok(Response::json(201, &order).with_header("location", format!("/orders/{}", order.id)))
}

/// `GET /orders/{id}`.
#[milieu::requires]
pub async fn get_order(request: Request, #[ctx] db: Arc<Database>) -> Result<Response, AppError> {
    let raw = &request.path()["/orders/".len()..];
    let Ok(id) = raw.parse::<i64>() else {
        return Ok(error(400, "the order id must be a number"));
    };
    match db.run_interaction(move |_tx| store::find(id)).await? {
        Some(order) => Ok(Response::json(200, &order)),
        None => Ok(error(404, "no such order")),
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
                _ => return Ok(error(400, "`limit` must be a number from 1 to 100")),
            },
            _ => return Ok(error(400, &format!("unknown query parameter `{pair}`"))),
        }
    }
    let orders = db.run_interaction(move |_tx| store::latest(limit)).await?;
    Ok(Response::json(200, &orders))
}

/// `GET /debug/context`: the context of this very request (with its
/// `RequestInfo`, installed per request by `http::serve`).
#[milieu::requires]
pub fn debug_context(request: Request, #[ctx] db: &Database) -> Result<Response, AppError> {
    let dump = milieu::dump();
    Ok(debug::context(&dump, &db.stats(), Format::of(&request)))
}

/// `GET /debug/stages`: the DB stage's figures.
#[milieu::requires]
pub fn debug_stages(request: Request, #[ctx] db: &Database) -> Result<Response, AppError> {
    Ok(debug::stages(&db.stats(), Format::of(&request)))
}

/// `POST /debug/panic`: panics on purpose when the service was started
/// with `--panic-route` (the server answers 500 and goes on); 404
/// otherwise.
#[milieu::requires]
pub fn debug_panic(#[ctx] service: &Service) -> Result<Response, AppError> {
    if service.panic_route {
        panic!("POST /debug/panic asked for a panic");
    }
    Ok(error(404, "no such route"))
}
