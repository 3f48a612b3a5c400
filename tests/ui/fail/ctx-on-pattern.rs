use std::sync::Arc;

struct Db;
struct Clock;

#[milieu::requires]
fn handle(#[ctx] (db, clock): (Arc<Db>, Arc<Clock>)) {
    let _ = (db, clock);
}

fn main() {}
