//! Compile-time behaviour of `#[requires]` and `#[derive(Baggage)]`
//! (`milieu::remote`): each file under tests/ui/fail is named after one
//! mistake and its `.stderr` holds the one error the user sees;
//! tests/ui/pass must compile and run.
//!
//! The `.stderr` files were made with the toolchain pinned in
//! rust-toolchain.toml (which cargo picks up in this directory); rustc's
//! wording changes between releases, so on any other toolchain the test
//! cannot check them and fails, saying so. `MILIEU_SKIP_UI=1` skips it
//! knowingly (it still prints why); `.ci/run` runs it with `cargo +PINNED`.
//! After a deliberate change of an error, `TRYBUILD=overwrite cargo test
//! --test ui` rewrites the `.stderr` files.

use std::io::Write;

/// Set (to anything but `0`) to skip the UI test on a toolchain it cannot
/// check.
const SKIP_ENV: &str = "MILIEU_SKIP_UI";

#[test]
fn ui() {
    let pinned = pinned_toolchain();
    let version = rustc_version();
    if !version.starts_with(&format!("rustc {pinned} ")) {
        let why = format!(
            "the UI tests' .stderr files were made with rustc {pinned} (the channel in \
             rust-toolchain.toml) and this is {}",
            if version.is_empty() {
                "a rustc whose version could not be read".to_owned()
            } else {
                version.clone()
            }
        );
        let skip = std::env::var_os(SKIP_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        if skip {
            // Straight to stderr: the harness would hide a passing test's
            // eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "tests/ui.rs: SKIPPED ({SKIP_ENV} is set): {why}"
            );
            return;
        }
        panic!(
            "{why}, so they cannot be checked.\n\
             Run them on the pinned toolchain: `rustup toolchain install {pinned}`, then \
             `cargo +{pinned} test --all-features --test ui` (plain `cargo test` in the \
             repository uses it unless RUSTUP_TOOLCHAIN or an override says otherwise).\n\
             To skip them knowingly: {SKIP_ENV}=1."
        );
    }
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

/// The `channel` of rust-toolchain.toml.
fn pinned_toolchain() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rust-toolchain.toml");
    let toml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    toml.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .unwrap_or_else(|| panic!("{path} has no `channel = \"...\"`"))
}

/// `rustc --version` of the compiler trybuild will use, or "".
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    std::process::Command::new(rustc)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}
