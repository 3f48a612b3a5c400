use std::sync::Arc;

#[derive(Debug)]
struct Db(&'static str);
struct Clock;
struct Logger;

#[derive(Debug)]
enum AppError {
    Missing(milieu::Missing),
}
impl From<milieu::Missing> for AppError {
    fn from(m: milieu::Missing) -> Self {
        AppError::Missing(m)
    }
}

/// Places an order.
#[milieu::requires(Clock)]
fn place_order(item: &str, #[ctx] db: Arc<Db>, #[ctx] log: &Logger) -> Result<String, AppError> {
    let _ = log;
    Ok(format!("{item} stored in {}", db.0))
}

#[milieu::requires(Db)]
fn panicky() -> usize {
    1
}

fn main() {
    let _db = milieu::provide(Db("orders"));
    let _l = milieu::provide(Logger);
    match place_order("book") {
        Ok(s) => println!("{s}"),
        Err(AppError::Missing(m)) => println!("{m}"),
    }
    println!("{}", panicky());
    println!("{:?}", PLACE_ORDER_REQUIREMENTS);
}
