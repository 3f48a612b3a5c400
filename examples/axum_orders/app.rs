//! The routes of the axum orders service: axum handlers with extractors,
//! each declaring what it needs from milieu's context with
//! `#[milieu::requires]`; the `ContextLayer` puts every request into the
//! context; `main` verifies each route before it listens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use milieu::http::debug::DebugViews;
use milieu::remote::TraceContext;
use milieu::tower::{ContextLayer, DebugService, MissingContext, RequestInfo};
use milieu::txn::{Database, TxError};
use milieu::{Missing, Route};

use crate::line_item::LineItem;
use crate::serve::{read_body_within, Limits};
use crate::store;

/// The service's own figures: an entry of the root context.
#[derive(Debug, Default)]
pub struct Service {
    /// Orders committed by this process.
    pub placed: AtomicU64,
    /// "Order placed" notifications delivered by this process.
    pub delivered: AtomicU64,
}

/// What a handler can fail with, and the answer each failure gets.
#[derive(Debug)]
pub enum AppError {
    /// The context lacks what the handler declared: a start-up bug that
    /// `main`'s per-route check catches before the first request.
    Context(MissingContext),
    /// The database refused or failed.
    Db(TxError),
    /// The request itself is wrong.
    BadRequest(String),
}

impl From<Missing> for AppError {
    fn from(missing: Missing) -> AppError {
        AppError::Context(missing.into())
    }
}

impl From<TxError> for AppError {
    fn from(error: TxError) -> AppError {
        AppError::Db(error)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            // A 500 naming the request only; the report goes to the log.
            AppError::Context(missing) => missing.into_response(),
            AppError::Db(e @ (TxError::Overloaded { .. } | TxError::Busy { .. })) => {
                tracing::warn!(target: "axum_orders", "shedding a request: {e}");
                let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "busy, try again");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            AppError::Db(e) => {
                tracing::error!(target: "axum_orders", "database error: {e}");
                error(StatusCode::INTERNAL_SERVER_ERROR, "database error (logged)")
            }
            AppError::BadRequest(why) => error(StatusCode::BAD_REQUEST, &why),
        }
    }
}

/// A JSON error body: `{"error": "..."}`.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `GET /`: a greeting with the request's number.
#[milieu::requires]
pub async fn hello(#[ctx] request: &RequestInfo) -> Result<String, AppError> {
    Ok(format!(
        "hello from milieu on axum (request #{})\n",
        request.id()
    ))
}

/// `POST /orders`: stores the order and its notification in one
/// transaction on the DB stage; the notification is delivered once that
/// transaction commits.
#[milieu::requires]
pub async fn place_order(
    #[ctx] db: Arc<Database>,
    #[ctx] service: Arc<Service>,
    body: Bytes,
) -> Result<Response, AppError> {
    // The orders service's own body rules: only a JSON object with exactly
    // `item` and `quantity` is an order.
    let line = LineItem::from_body(&body).map_err(AppError::BadRequest)?;
    let order = db.run_interaction(move |_tx| store::place(&line)).await?;
    service.placed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(target: "axum_orders", order = order.id, "order placed");
    let location = format!("/orders/{}", order.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    )
        .into_response())
}

/// The query of `GET /orders`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<u32>,
}

/// `GET /orders?limit=N` (1 to 100, default 20): newest first.
#[milieu::requires]
pub async fn list_orders(
    Query(page): Query<Page>,
    #[ctx] db: Arc<Database>,
) -> Result<Json<Vec<store::Order>>, AppError> {
    let limit = page.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::BadRequest(
            "`limit` must be a number from 1 to 100".to_owned(),
        ));
    }
    let orders = db.run_interaction(move |_tx| store::latest(limit)).await?;
    Ok(Json(orders))
}

/// `GET /orders/{id}`.
#[milieu::requires]
pub async fn get_order(
    Path(id): Path<i64>,
    #[ctx] db: Arc<Database>,
) -> Result<Response, AppError> {
    match db.run_interaction(move |_tx| store::find(id)).await? {
        Some(order) => Ok(Json(order).into_response()),
        None => Ok(error(StatusCode::NOT_FOUND, "no such order")),
    }
}

/// Adds the request's trace id to every answer (`trace-id`), so a client
/// can find its request in the logs.
async fn with_trace_id(mut response: Response) -> Response {
    if let Ok(trace) = milieu::get::<TraceContext>() {
        if let Ok(value) = HeaderValue::from_str(&trace.trace_id().to_string()) {
            response.headers_mut().insert("trace-id", value);
        }
    }
    response
}

/// The public routes, behind `layer`; each request's body is read in full
/// within `limits` before its handler runs.
pub fn public(layer: ContextLayer, limits: Limits) -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/orders", get(list_orders).post(place_order))
        .route("/orders/{id}", get(get_order))
        .layer(axum::middleware::map_response(with_trace_id))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            read_body_within,
        ))
        .layer(layer)
}

/// The admin routes, behind `layer`: milieu's debug views
/// (`/debug/context`, `/debug/stages`), which show install sites, peer
/// addresses and the DB stage's load, so never on the public listener.
/// Bodies are read within `limits` as on the public routes.
pub fn admin(layer: ContextLayer, views: DebugViews, limits: Limits) -> Router {
    Router::new()
        .route_service("/debug/{*view}", DebugService::new(views))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            read_body_within,
        ))
        .layer(layer)
}

/// Every route with the requirements of the handler it runs, for the
/// check before listening.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new("GET /").runs(HELLO_REQUIREMENTS),
        Route::new("POST /orders").runs(PLACE_ORDER_REQUIREMENTS),
        Route::new("GET /orders").runs(LIST_ORDERS_REQUIREMENTS),
        Route::new("GET /orders/{id}").runs(GET_ORDER_REQUIREMENTS),
    ]
}
