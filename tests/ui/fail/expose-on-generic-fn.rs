struct Repo<T>(T);

#[milieu::requires(Repo<T>, expose = true)]
fn handle<T: Send + Sync + 'static>() {}

fn main() {}
