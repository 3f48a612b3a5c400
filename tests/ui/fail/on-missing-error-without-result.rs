struct Db;

#[milieu::requires(Db, on_missing = error)]
fn handle() -> u32 {
    1
}

fn main() {}
