struct Db;

#[milieu::requires(Db)]
const fn handle() -> u32 {
    1
}

fn main() {}
