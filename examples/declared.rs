//! Declared context: handlers state what they need with `#[requires]`, and
//! the service verifies its root context against every handler before it
//! starts, refusing to start with one clear report.
//!
//! Run with `cargo run --example declared`.

use std::sync::Arc;

/// The orders database.
#[derive(Debug)]
struct Db(&'static str);

/// The service's clock (forgotten at start-up, on purpose).
struct Clock;

/// Where audit records go.
struct AuditLog;

/// What handlers return on failure.
#[derive(Debug)]
enum AppError {
    /// The context lacked something the handler declared.
    Context(milieu::Missing),
}

impl From<milieu::Missing> for AppError {
    fn from(missing: milieu::Missing) -> Self {
        AppError::Context(missing)
    }
}

/// Stores an order; `db` and `audit` come from the context.
#[milieu::requires(Clock)]
fn place_order(
    item: &str,
    #[ctx] db: Arc<Db>,
    #[ctx] audit: &AuditLog,
) -> Result<String, AppError> {
    let _ = audit;
    Ok(format!("{item} stored in {}", db.0))
}

/// Lists orders.
#[milieu::requires(Db)]
fn list_orders(limit: usize) -> Result<Vec<String>, AppError> {
    Ok(vec![String::from("book"); limit.min(1)])
}

fn main() {
    // The root context, as start-up builds it: the Clock is forgotten.
    let root = milieu::scope()
        .with(Db("orders.sqlite"))
        .because("service pool")
        .with(AuditLog)
        .run(milieu::Context::current);

    let handlers = [PLACE_ORDER_REQUIREMENTS, LIST_ORDERS_REQUIREMENTS];
    match milieu::verify(&root, &handlers) {
        Ok(()) => println!("all {} handlers can run", handlers.len()),
        Err(report) => {
            println!("refusing to start:\n{report}\n");
        }
    }

    // What a handler call reports if the service had started anyway.
    root.run(|| {
        println!("{:?}", list_orders(5).map(|orders| orders.len()));
        match place_order("book") {
            Ok(stored) => println!("{stored}"),
            Err(AppError::Context(missing)) => println!("place_order failed:\n{missing}"),
        }
    });
}
