//! One `Database` per SQLite file: a second one, in this process or in
//! another, is refused with `OpenError::InUse` naming the holder, and the
//! file is free again when the holder's handles drop or the holder exits,
//! even by a kill. The other process is this test binary again, running
//! one ignored test that opens the database and waits.

#![cfg(feature = "sqlite")]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use milieu::reactor::Reactor;
use milieu::txn::{Database, OpenError, Sqlite, TxError};

fn open(reactor: &Reactor, file: &Path) -> Result<Database, OpenError> {
    reactor
        .context()
        .run(|| Database::builder(Sqlite::file(file)).open())
}

#[test]
fn a_second_database_on_the_same_file_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    let mut reactor = Reactor::new().unwrap();
    let first = open(&reactor, &file).unwrap();
    let clone = first.clone();
    let second = open(&reactor, &file).unwrap_err();
    match &second {
        OpenError::InUse { lock, holder } => {
            assert_eq!(lock, &dir.path().join("app.db-milieu.lock"));
            assert_eq!(*holder, Some(std::process::id()));
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    let message = second.to_string();
    assert!(
        message.contains(&format!("process {}", std::process::id()))
            && message.contains("app.db-milieu.lock")
            && message.contains("undelivered outbox items"),
        "{message}"
    );
    // Held while any handle lives.
    drop(first);
    assert!(matches!(
        open(&reactor, &file),
        Err(OpenError::InUse { .. })
    ));
    drop(clone);
    let again = open(&reactor, &file).expect("free once every handle dropped");
    let answer = again.run_interaction(|tx| {
        Ok::<i64, TxError>(tx.query_row("SELECT 6 * 7", [], |row| row.get(0))?)
    });
    assert_eq!(reactor.run_until(answer).unwrap().unwrap(), 42);
}

#[test]
fn exclusive_false_opens_beside_an_owner() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    let reactor = Reactor::new().unwrap();
    let _owner = open(&reactor, &file).unwrap();
    let beside = reactor.context().run(|| {
        Database::builder(Sqlite::file(&file))
            .exclusive(false)
            .open()
    });
    assert!(beside.is_ok(), "{beside:?}");
}

#[test]
fn a_memory_database_takes_no_lock() {
    let reactor = Reactor::new().unwrap();
    let a = reactor
        .context()
        .run(|| Database::builder(Sqlite::memory()).open());
    let b = reactor
        .context()
        .run(|| Database::builder(Sqlite::memory()).open());
    assert!(a.is_ok() && b.is_ok());
}

#[test]
fn a_lock_file_that_cannot_be_made_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    // The database's directory does not exist: neither can its lock.
    let file = dir.path().join("missing").join("app.db");
    let reactor = Reactor::new().unwrap();
    match open(&reactor, &file) {
        Err(OpenError::Lock { lock, error }) => {
            assert_eq!(lock, dir.path().join("missing").join("app.db-milieu.lock"));
            assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Lock, got {other:?}"),
    }
}

/// Runs in the child the test below starts: opens the database named by
/// `MILIEU_OWNER_FILE`, says so on stdout, and holds it until its stdin
/// closes or it is killed.
#[test]
#[ignore = "run by `another_process_holding_the_file_is_named_and_its_exit_frees_it`"]
fn child_holds_the_database() {
    let Some(file) = std::env::var_os("MILIEU_OWNER_FILE") else {
        return;
    };
    let reactor = Reactor::new().unwrap();
    let _db = open(&reactor, Path::new(&file)).unwrap();
    println!("holding");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Starts this binary's `child_holds_the_database` on `file` and waits
/// until it holds the database.
fn holding_child(file: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_the_database",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1", "--quiet"])
        .env("MILIEU_OWNER_FILE", file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held = lines.any(|line| line.is_ok_and(|line| line.contains("holding")));
    assert!(held, "the child did not open the database");
    // The rest of its output read to its end, so that its test harness's
    // report does not fail on a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn another_process_holding_the_file_is_named_and_its_exit_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    let reactor = Reactor::new().unwrap();

    // Killed: the kernel releases the lock with the process.
    let mut child = holding_child(&file);
    match open(&reactor, &file) {
        Err(OpenError::InUse { holder, .. }) => assert_eq!(holder, Some(child.id())),
        other => panic!("expected InUse naming the child, got {other:?}"),
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let db = open(&reactor, &file).expect("free once the holder was killed");
    drop(db);

    // A clean exit frees it too; the lock file left behind is taken
    // again, with the new holder's id written over the old one's.
    let mut child = holding_child(&file);
    assert!(matches!(
        open(&reactor, &file),
        Err(OpenError::InUse { holder: Some(pid), .. }) if pid == child.id()
    ));
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(open(&reactor, &file).is_ok());
}
