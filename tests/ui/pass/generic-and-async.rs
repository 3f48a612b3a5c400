//! Generic functions, `impl Trait` and borrowed returns, and `async fn`.

use std::fmt::Display;
use std::sync::Arc;

struct Prefix(&'static str);
struct Repo<T>(T);

#[milieu::requires(Repo<T>)]
fn first<T: Clone + Send + Sync + 'static>(#[ctx] repo: &Repo<T>) -> T {
    repo.0.clone()
}

#[milieu::requires]
fn shown(value: impl Display, #[ctx] prefix: Arc<Prefix>) -> impl Display {
    format!("{}{value}", prefix.0)
}

#[milieu::requires(Prefix)]
fn borrowed(text: &str) -> &str {
    text.trim()
}

#[milieu::requires]
async fn later(#[ctx] prefix: &Prefix) -> String {
    std::future::ready(()).await;
    prefix.0.to_owned()
}

fn main() {
    let _repo = milieu::provide(Repo(7_u8));
    let _prefix = milieu::provide(Prefix("> "));
    assert_eq!(first::<u8>(), 7);
    assert_eq!(shown(1).to_string(), "> 1");
    assert_eq!(borrowed(" x "), "x");
    assert_eq!(futures::executor::block_on(later()), "> ");
    assert_eq!(SHOWN_REQUIREMENTS.types().len(), 1);
}
