#[milieu::requires(42)]
fn handle() {}

fn main() {}
