struct Db;

#[milieu::requires]
fn handle(#[ctx] db: Db) {
    let _ = db;
}

fn main() {}
