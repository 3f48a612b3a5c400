//! A `#[ctx] &T` parameter holds an `Arc<T>` across the handler's
//! `.await`s; with a `T` that is not `Sync` the future is not `Send`, so
//! the function is not an axum handler.

use std::cell::Cell;

use axum::routing::get;
use axum::Router;
use milieu::tower::MissingContext;

struct Counter(Cell<u32>);

#[milieu::requires]
async fn count(#[ctx] counter: &Counter) -> Result<String, MissingContext> {
    tokio::task::yield_now().await;
    Ok(counter.0.get().to_string())
}

fn main() {
    let app: Router = Router::new().route("/", get(count));
    drop(app);
}
