struct Db;

#[milieu::requires(Db, retries = 3)]
fn handle() {}

fn main() {}
