#[derive(milieu::remote::Baggage)]
#[baggage(name = "tenant")]
struct Tenant(String);

fn main() {}
