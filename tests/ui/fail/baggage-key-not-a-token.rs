#[derive(milieu::remote::Baggage)]
#[baggage(key = "tenant id")]
struct Tenant(String);

fn main() {}
