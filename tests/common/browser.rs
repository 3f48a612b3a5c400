//! Headless Chromium for the browser tests of the HTML debug views
//! (tests/debug_views.rs, tests/orders.rs; run by .ci/browser_views.sh).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take before it counts as hung.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// A browser: `MILIEU_CHROMIUM`, or `chromium` on the `PATH`.
pub fn chromium() -> String {
    std::env::var("MILIEU_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless Chromium with `args` and a profile in `profile`, stopped
/// if it takes longer than a minute; its stdout.
pub fn headless(profile: &Path, args: &[&str]) -> Vec<u8> {
    let mut child = Command::new(chromium())
        // As root (CI) the sandbox cannot start; no GPU on a server.
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` ({e}): install Debian's `chromium` or set MILIEU_CHROMIUM",
                chromium()
            )
        });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + BROWSER_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?} exited with {status}");
            return reader.join().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Width and height from a PNG's header (`IHDR` is always first).
pub fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Where the screenshots are kept: `target/test-artefacts/`.
pub fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
