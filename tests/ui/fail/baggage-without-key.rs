#[derive(milieu::remote::Baggage)]
struct Tenant(String);

fn main() {}
