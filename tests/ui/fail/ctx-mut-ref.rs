struct Counter;

#[milieu::requires]
fn handle(#[ctx] counter: &mut Counter) {
    let _ = counter;
}

fn main() {}
