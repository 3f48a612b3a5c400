//! The shape of an axum 0.8 handler under `#[requires]`: extractors
//! (including a tuple-struct pattern), `#[ctx]` parameters by `Arc` and by
//! reference, and an error type the handler returns when the context lacks
//! a type. It must be an axum `Handler`: its future `Send`, its
//! arguments extractors only (the `#[ctx]` ones are gone from the
//! signature axum sees).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use milieu::tower::{ContextLayer, MissingContext, RequestInfo};

struct Db(&'static str);
struct Clock;

#[derive(Clone)]
struct AppState {
    name: &'static str,
}

#[derive(serde::Deserialize)]
struct Page {
    limit: u32,
}

#[milieu::requires(Clock)]
async fn list(
    State(state): State<AppState>,
    Query(page): Query<Page>,
    #[ctx] db: Arc<Db>,
    #[ctx] request: &RequestInfo,
) -> Result<String, MissingContext> {
    tokio::task::yield_now().await;
    Ok(format!("{} {} {} {}", state.name, page.limit, db.0, request.id()))
}

#[milieu::requires]
async fn create(
    Path(id): Path<u32>,
    #[ctx] db: &Db,
    Json(body): Json<Vec<String>>,
) -> Result<Json<Vec<String>>, MissingContext> {
    Ok(Json(body.into_iter().map(|item| format!("{id} {item} {}", db.0)).collect()))
}

fn main() {
    let app: Router = Router::new()
        .route("/orders", get(list))
        .route("/orders/{id}", post(create))
        .with_state(AppState { name: "orders" })
        .layer(ContextLayer::new());
    drop(app);
    let _: &milieu::Requirements = &LIST_REQUIREMENTS;
    let _: &milieu::Requirements = &CREATE_REQUIREMENTS;
}
