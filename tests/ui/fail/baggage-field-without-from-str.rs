struct Name(String);

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(milieu::remote::Baggage)]
#[baggage(key = "name")]
struct Tenant(Name);

fn main() {}
