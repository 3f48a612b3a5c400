//! `reactor::OpenFilesLimit`: reading the process's open-file limit and
//! raising its soft limit, on the real `getrlimit` and `setrlimit`. The
//! raise from a low limit runs in a child process started under `ulimit
//! -Sn 128` (this test binary again, running one ignored test), so that
//! this process's own limit is left as it was.

use std::process::Command;

use milieu::reactor::OpenFilesLimit;

#[test]
fn the_limit_reads_and_is_never_lowered() {
    let now = OpenFilesLimit::current().unwrap();
    assert!(now.soft <= now.hard, "{now:?}");
    assert_eq!(OpenFilesLimit::raise_to(0).unwrap(), now, "never lowered");
    assert_eq!(OpenFilesLimit::raise_to(now.soft).unwrap(), now);
    assert_eq!(
        now.connections(),
        now.soft.saturating_sub(OpenFilesLimit::RESERVE)
    );
}

/// Runs in the child started by the test below, with a soft limit of 128:
/// raises it to 200 (or to the hard limit, if lower) and opens files up
/// to just below the new limit, which the old one would have refused.
#[test]
#[ignore = "run by `a_low_soft_limit_is_raised_in_a_child_process` under `ulimit -Sn 128`"]
fn child_raises_a_low_soft_limit() {
    let before = OpenFilesLimit::current().unwrap();
    assert_eq!(before.soft, 128, "started under ulimit -Sn 128");
    let after = OpenFilesLimit::raise_to(200).unwrap();
    assert_eq!(after.soft, 200.min(after.hard), "{after:?}");
    assert_eq!(after.hard, before.hard, "the hard limit is left as it was");
    assert!(after.soft > 128, "this test needs a hard limit above 128");
    // Descriptors past the old limit open now.
    let files: Vec<std::fs::File> = (0..150)
        .map(|_| std::fs::File::open("/dev/null"))
        .collect::<Result<_, _>>()
        .expect("150 more files fit under the raised limit");
    assert_eq!(files.len(), 150);
}

#[test]
fn a_low_soft_limit_is_raised_in_a_child_process() {
    let me = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 128 && exec "$0" --exact child_raises_a_low_soft_limit --ignored --quiet"#)
        .arg(&me)
        .status()
        .unwrap();
    assert!(status.success(), "the child test failed: {status}");
}
