use std::sync::Arc;

struct Db;

#[milieu::requires]
fn handle(#[ctx(optional)] db: Arc<Db>) {
    let _ = db;
}

fn main() {}
