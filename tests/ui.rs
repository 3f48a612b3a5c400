//! Compile-time behaviour of `#[requires]`: each file under tests/ui/fail
//! is named after one mistake and its `.stderr` holds the one error the
//! user sees; tests/ui/pass must compile and run.
//!
//! The `.stderr` files were made with the toolchain pinned in
//! rust-toolchain.toml; rustc's wording changes between releases, so the
//! test only runs on that toolchain (it says so when it skips).

#[test]
fn ui() {
    let pinned = "1.95.0";
    let version = rustc_version();
    if !version.contains(pinned) {
        eprintln!("skipping UI tests: they are pinned to rustc {pinned}, this is {version}");
        return;
    }
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}
