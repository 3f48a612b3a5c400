#[derive(milieu::remote::Baggage)]
#[baggage(key = "tenant")]
struct Tenant {
    name: String,
}

fn main() {}
