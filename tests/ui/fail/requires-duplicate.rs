struct Db;

#[milieu::requires(Db, Db)]
fn handle() {}

fn main() {}
