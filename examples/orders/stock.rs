//! The stock role (`--role stock`): the service orders reserves with
//! before it stores an order, and the other end of the process hop.
//!
//! Its `http::Server` reads what orders sends (`baggage::propagation`):
//! each `/reserve` call runs in a context holding orders' trace context,
//! the `OrderRequest` orders carried, and the `ProcessHop` saying how it
//! came. The handler keeps a snapshot of that context, so that the admin
//! listener can show it afterwards: `GET /debug/context?trace=ID`.

use std::sync::atomic::{AtomicU64, Ordering};

use milieu::http::debug::{DebugViews, Format};
use milieu::http::{Request, Response};
use milieu::remote::{TraceContext, TraceId};
use milieu::{Context, Missing};

use crate::baggage::OrderRequest;
use crate::line_item::LineItem;
use crate::recent_calls::{RecentCalls, RecordedCall};
use crate::routing::{json_error, PathPattern, Resource, Route};
use crate::serving::InFlight;

/// The stock service's own state: a context entry of every reactor.
#[derive(Debug)]
pub struct StockService {
    /// The last reservation number handed out. Stock keeps no ledger:
    /// it numbers what it is asked for, which is all orders needs to
    /// show a call crossing processes.
    reservations: AtomicU64,
    /// The latest `/reserve` calls, for the debug views.
    pub recent: RecentCalls,
}

impl StockService {
    /// Remembers the latest `recent_calls` calls.
    pub fn new(recent_calls: usize) -> StockService {
        StockService {
            reservations: AtomicU64::new(0),
            recent: RecentCalls::new(recent_calls),
        }
    }
}

/// What a stock route fails with: the context lacks what the route
/// declared, a start-up bug (`main` verifies the routes before it
/// listens), answered with 500.
#[derive(Debug)]
pub struct Misconfigured(Missing);

impl From<Missing> for Misconfigured {
    fn from(missing: Missing) -> Self {
        Misconfigured(missing)
    }
}

/// The handler a request goes to once its path and method matched.
#[derive(Debug, Clone, Copy)]
enum Handler {
    Reserve,
    DebugContext,
}

/// What the public listener serves.
const PUBLIC: &[Resource<Handler>] = &[Resource {
    path: PathPattern::Exact("/reserve"),
    methods: &[("POST", Handler::Reserve)],
}];

/// What the admin listener (`--admin-addr`) serves: the debug view of a
/// context, which shows source locations, peer addresses and what
/// callers carried.
const ADMIN: &[Resource<Handler>] = &[Resource {
    path: PathPattern::Exact("/debug/context"),
    methods: &[("GET", Handler::DebugContext)],
}];

/// Every request to the public listener comes here.
pub fn public(request: Request) -> Response {
    respond(PUBLIC, request)
}

/// Every request to the admin listener comes here.
pub fn admin(request: Request) -> Response {
    respond(ADMIN, request)
}

/// Runs the handler the table chose; the request counts as in flight
/// until its response is ready.
fn respond(table: &[Resource<Handler>], request: Request) -> Response {
    let _in_flight = InFlight::enter();
    let route = Route::of(table, request.method(), request.path());
    let handler = match route.handler() {
        Ok(handler) => handler,
        Err(refusal) => return refusal,
    };
    let result = match handler {
        Handler::Reserve => reserve(request),
        Handler::DebugContext => debug_context(request),
    };
    result.unwrap_or_else(|Misconfigured(missing)| {
        tracing::error!(target: "stock", "{missing}");
        json_error(500, "the service is misconfigured (logged)")
    })
}

/// `POST /reserve` with `{"item": "tea", "quantity": 2}`: answers 200
/// with `{"item", "quantity", "reservation"}`, or 400 for any other body.
/// Either way the call's context is kept, under its trace id.
#[milieu::requires]
pub fn reserve(request: Request, #[ctx] stock: &StockService) -> Result<Response, Misconfigured> {
    // Installed by `http::Server` for every request: the caller's trace,
    // continued, or a new one.
    let trace_id = milieu::with(|trace: &TraceContext| trace.trace_id())?;
    let (response, mut outcome) = match LineItem::from_body(request.body()) {
        Ok(line) => {
            let number = stock.reservations.fetch_add(1, Ordering::Relaxed) + 1;
            let answer = serde_json::json!({
                "item": line.item,
                "quantity": line.quantity,
                "reservation": number,
            });
            // The item is the caller's text: escaped, it stays on one line.
            let outcome = format!(
                "reserved {} x {} (reservation {number})",
                line.quantity,
                line.item.escape_debug()
            );
            (Response::json(200, &answer), outcome)
        }
        Err(why) => (json_error(400, &why), format!("refused: {why}")),
    };
    // Carried by orders as baggage; a dump hides arrived values (baggage
    // may be personal), so the one this service reads is named here.
    let order_request = milieu::contains::<OrderRequest>()
        .then(|| milieu::with(|request: &OrderRequest| request.0).ok())
        .flatten();
    if let Some(number) = order_request {
        outcome.push_str(&format!(" for orders request {number}"));
    }
    tracing::info!(target: "stock", %trace_id, order_request, "{outcome}");
    stock.recent.record(RecordedCall {
        trace_id,
        outcome,
        // A dump, not the snapshot itself: the snapshot holds the
        // service's root context, which holds this service, which would
        // then hold the snapshot (a cycle nothing ever frees).
        context: Context::current().dump(),
    });
    Ok(response)
}

/// `GET /debug/context` (admin listener): the context of this request; with
/// `?trace=ID`, the context of the latest `/reserve` call of that trace,
/// as its handler saw it. 404 if no call of that trace is kept. Both are
/// the library's context view (`milieu::http::debug`), in the format
/// `Accept` or `?format=` asks for.
#[milieu::requires]
pub fn debug_context(
    request: Request,
    #[ctx] stock: &StockService,
    #[ctx] views: &DebugViews,
) -> Result<Response, Misconfigured> {
    let trace_id = match trace_in_query(request.query()) {
        Ok(Some(trace_id)) => trace_id,
        // This request's context: the library's `/debug/context`.
        Ok(None) => {
            return Ok(views
                .handle(&request)
                .unwrap_or_else(|| json_error(404, "no such route")))
        }
        Err(why) => return Ok(json_error(400, &why)),
    };
    let format = match Format::negotiate(request.query(), request.header("accept")) {
        Ok(format) => format,
        Err(refusal) => return Ok(refusal.into()),
    };
    let Some(call) = stock.recent.find(trace_id) else {
        return Ok(json_error(
            404,
            &format!(
                "no POST /reserve call of trace {trace_id} among the latest {} kept \
                 (--recent-calls)",
                stock.recent.capacity()
            ),
        ));
    };
    let about = format!(
        "Context of POST /reserve in trace {trace_id}: {}",
        call.outcome
    );
    Ok(views.context(&about, &call.context, format).into())
}

/// The trace id of a `trace=ID` query; `None` without one. `format=` is
/// the debug views' own (`Format::negotiate` reads it).
fn trace_in_query(query: Option<&str>) -> Result<Option<TraceId>, String> {
    let mut trace = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("trace", value)) if trace.is_none() => {
                let id = value
                    .parse::<TraceId>()
                    .map_err(|e| format!("`trace`: {e}"))?;
                trace = Some(id);
            }
            Some(("trace", _)) => return Err("`trace` is given twice".into()),
            Some(("format", _)) => {}
            _ => {
                return Err(format!(
                    "unknown query parameter `{pair}` (expected trace=ID, format=text|json|html)"
                ))
            }
        }
    }
    Ok(trace)
}
