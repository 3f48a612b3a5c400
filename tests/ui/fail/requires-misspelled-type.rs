struct Db;

#[milieu::requires(Dbb)]
fn handle() {}

fn main() {
    let _ = Db;
}
