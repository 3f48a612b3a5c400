#[derive(milieu::remote::Baggage)]
#[baggage(key = "tenant")]
struct Tenant(String, u32);

fn main() {}
