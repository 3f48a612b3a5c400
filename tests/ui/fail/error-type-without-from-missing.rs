struct Db;

#[derive(Debug)]
struct AppError;

#[milieu::requires(Db)]
fn handle() -> Result<u32, AppError> {
    Ok(1)
}

fn main() {}
