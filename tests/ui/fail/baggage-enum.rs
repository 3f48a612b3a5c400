#[derive(milieu::remote::Baggage)]
#[baggage(key = "tier")]
enum Tier {
    Free,
    Paid,
}

fn main() {}
