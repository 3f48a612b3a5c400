//! Building the examples a test runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the examples like `cargo build --example NAME` with this test's
/// features and profile, and returns their executables by name: a test
/// that runs an example then runs the code as it is now, also when only
/// that test was asked for (`cargo test --test orders` builds no example).
/// After a full `cargo test` the build finds everything up to date.
pub fn build_examples(names: &[&str]) -> BTreeMap<String, PathBuf> {
    if names.is_empty() {
        return BTreeMap::new();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // Every feature of the package, as this test was built with them: the
    // same set builds the library once for both.
    let all = [
        ("reactor", cfg!(feature = "reactor")),
        ("stage", cfg!(feature = "stage")),
        ("http", cfg!(feature = "http")),
        ("remote", cfg!(feature = "remote")),
        ("sqlite", cfg!(feature = "sqlite")),
        ("postgres", cfg!(feature = "postgres")),
        ("serde", cfg!(feature = "serde")),
        ("test-util", cfg!(feature = "test-util")),
        ("opentelemetry", cfg!(feature = "opentelemetry")),
        ("tokio", cfg!(feature = "tokio")),
        ("tower", cfg!(feature = "tower")),
        ("axum", cfg!(feature = "axum")),
        ("debug-views", cfg!(feature = "debug-views")),
    ];
    let mut features = Vec::new();
    for (feature, on) in all {
        if on {
            features.push(feature);
        }
    }
    let mut command = Command::new(cargo);
    command.current_dir(root).args([
        "build",
        "--quiet",
        "--message-format=json-render-diagnostics",
    ]);
    if features.len() == all.len() {
        // As the README's `cargo test --workspace --all-features` builds
        // them: then this build finds everything up to date.
        command.args(["--workspace", "--all-features"]);
    } else {
        command.args(["--package", "milieu", "--no-default-features"]);
        if !features.is_empty() {
            command.args(["--features", &features.join(",")]);
        }
    }
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    for name in names {
        command.args(["--example", name]);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // One JSON object a line; the artifacts of examples carry
    // `"kind":["example"]` and their `"executable"`.
    let mut executables = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(r#""reason":"compiler-artifact""#) || !line.contains(r#"["example"]"#) {
            continue;
        }
        if let (Some(name), Some(exe)) = (json_str(line, "name"), json_str(line, "executable")) {
            executables.insert(name, PathBuf::from(exe));
        }
    }
    executables
}

/// The first string value of `"key":` in a line of JSON (enough for
/// cargo's messages: the target's `name` comes before any other `name`).
fn json_str(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line[at..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}
