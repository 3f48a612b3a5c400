//! The routes: plain functions of a request, each declaring what it needs
//! from the context with `#[milieu::requires]`; `main` verifies them all
//! against the root context before it listens.
//!
//! Two entry points, one per listener: [`public`] (the orders) and
//! [`admin`] (the debug views). Each routes with a table of [`Resource`]s,
//! which also gives the `Allow` header of every 405.

use std::future::Future;
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

/// The handler a request goes to once its path and method matched.
#[derive(Debug, Clone, Copy)]
enum Handler {
    Hello,
    PlaceOrder,
    ListOrders,
    GetOrder,
    DebugContext,
    DebugStages,
    DebugPanic,
}

/// How a [`Resource`] matches a path.
#[derive(Debug)]
enum PathPattern {
    /// This path only.
    Exact(&'static str),
    /// Every path that starts with this (the rest is the handler's to
    /// read, e.g. the id in `/orders/{id}`).
    Prefix(&'static str),
}

impl PathPattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == *exact,
            PathPattern::Prefix(prefix) => path.starts_with(prefix),
        }
    }
}

/// A path and the handler of each method it supports. The `Allow` header
/// of a 405 is computed from the same list, so the two cannot disagree.
///
/// `HEAD` is never listed: wherever `GET` is, `HEAD` runs the `GET`
/// handler (RFC 9110 §9.1: a server MUST support `HEAD`), and the
/// protocol sends the response's header fields, `Content-Length`
/// included, without its body.
#[derive(Debug)]
struct Resource {
    path: PathPattern,
    methods: &'static [(&'static str, Handler)],
}

/// What the public listener serves.
const PUBLIC: &[Resource] = &[
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
const DEBUG_PANIC: Resource = Resource {
    path: PathPattern::Exact("/debug/panic"),
    methods: &[("POST", Handler::DebugPanic)],
};

/// What the admin listener (`--admin-addr`) serves, and nothing else: the
/// views show install sites, peer addresses and database figures.
const ADMIN: &[Resource] = &[
    Resource {
        path: PathPattern::Exact("/debug/context"),
        methods: &[("GET", Handler::DebugContext)],
    },
    Resource {
        path: PathPattern::Exact("/debug/stages"),
        methods: &[("GET", Handler::DebugStages)],
    },
];

/// The methods HTTP defines (RFC 9110 §9 and `PATCH`, RFC 5789). Any other
/// method gets 501: this server implements it for no resource (RFC 9110
/// §15.6.2). Methods are case-sensitive, so `get` is not `GET`.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// What to do with a request, decided from borrowed method and path
/// before the request moves into its handler.
#[derive(Debug)]
enum Route {
    /// Path and method matched (`HEAD` matches `GET`).
    Handle(Handler),
    /// The path exists, not with this method: 405 with `Allow`.
    MethodNotAllowed {
        allow: String,
    },
    /// A method this server implements nowhere: 501.
    UnknownMethod,
    NotFound,
}

impl Route {
    fn of<'r>(
        resources: impl IntoIterator<Item = &'r Resource>,
        method: &str,
        path: &str,
    ) -> Route {
        if !KNOWN_METHODS.contains(&method) {
            return Route::UnknownMethod;
        }
        let Some(resource) = resources.into_iter().find(|r| r.path.matches(path)) else {
            return Route::NotFound;
        };
        let wanted = if method == "HEAD" { "GET" } else { method };
        match resource.methods.iter().find(|(m, _)| *m == wanted) {
            Some(&(_, handler)) => Route::Handle(handler),
            None => Route::MethodNotAllowed {
                allow: resource.allow(),
            },
        }
    }
}

impl Resource {
    /// The value of `Allow`: the listed methods, with `HEAD` after `GET`.
    fn allow(&self) -> String {
        let mut methods = Vec::new();
        for &(method, _) in self.methods {
            methods.push(method);
            if method == "GET" {
                methods.push("HEAD");
            }
        }
        methods.join(", ")
    }
}

/// Every request to the public listener comes here: the orders, the
/// greeting and (with `--panic-route`) `POST /debug/panic`.
///
/// A plain function returning `respond`'s future (rather than an `async fn`
/// awaiting it): one state machine per request, not one inside another.
pub fn public(request: Request) -> impl Future<Output = Response> + Send {
    let service = milieu::get::<Service>();
    let panic_route = service.as_ref().is_ok_and(|s| s.panic_route);
    let in_flight = service.map(InFlight::enter);
    let resources = PUBLIC.iter().chain(panic_route.then_some(&DEBUG_PANIC));
    let route = Route::of(resources, request.method(), request.path());
    respond(route, request, in_flight)
}

/// Every request to the admin listener comes here: the debug views only.
pub fn admin(request: Request) -> impl Future<Output = Response> + Send {
    let in_flight = milieu::get::<Service>().map(InFlight::enter);
    let route = Route::of(ADMIN, request.method(), request.path());
    respond(route, request, in_flight)
}

/// Runs the handler `route` chose; the request counts as in flight until
/// its response is ready.
async fn respond(
    route: Route,
    request: Request,
    _in_flight: Result<InFlight, Missing>,
) -> Response {
    let result = match route {
        Route::Handle(Handler::Hello) => Ok(Response::text(200, "hello from milieu\n")),
        Route::Handle(Handler::PlaceOrder) => place_order(request).await,
        Route::Handle(Handler::ListOrders) => list_orders(request).await,
        Route::Handle(Handler::GetOrder) => get_order(request).await,
        Route::Handle(Handler::DebugContext) => debug_context(request),
        Route::Handle(Handler::DebugStages) => debug_stages(request),
        Route::Handle(Handler::DebugPanic) => debug_panic(),
        Route::MethodNotAllowed { allow } => {
            Ok(error(405, "method not allowed").with_header("allow", allow))
        }
        Route::UnknownMethod => Ok(error(501, "method not implemented")),
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

/// `GET /debug/context` (admin listener): the context of this very request (with its
/// `RequestInfo`, installed per request by `http::serve`).
#[milieu::requires]
pub fn debug_context(request: Request, #[ctx] db: &Database) -> Result<Response, AppError> {
    let dump = milieu::dump();
    Ok(debug::context(&dump, &db.stats(), Format::of(&request)))
}

/// `GET /debug/stages` (admin listener): the DB stage's figures.
#[milieu::requires]
pub fn debug_stages(request: Request, #[ctx] db: &Database) -> Result<Response, AppError> {
    Ok(debug::stages(&db.stats(), Format::of(&request)))
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
    Ok(error(404, "no such route"))
}
