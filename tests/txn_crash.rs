//! Crash safety of the outbox with a real child process killed with
//! SIGKILL between commit and delivery.
//!
//! The parent test runs this test binary again, filtered to the ignored
//! `crash_child` test, with the database path in an environment variable.
//! The child commits, starts delivering (its handler announces the item,
//! then hangs) and has a second transaction open when it is killed. After
//! the kill the parent opens the same file: the committed items are
//! delivered again with their ids, nothing rolled back or uncommitted is.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use milieu::reactor::Reactor;
use milieu::txn::{Database, Delivery, OutboxItem, Sqlite, TxError};
use serde::{Deserialize, Serialize};

const CHILD_ENV: &str = "MILIEU_TXN_CRASH_CHILD_DB";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Notice {
    what: String,
}

impl OutboxItem for Notice {
    const KIND: &'static str = "notice";
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "CRASH: {line}").unwrap();
    out.flush().unwrap();
}

fn push(what: &str) -> Result<(), TxError> {
    milieu::txn::push(&Notice { what: what.into() })?;
    Ok(())
}

#[test]
#[ignore = "the child half of `committed_items_survive_sigkill`, which runs it"]
fn crash_child() {
    let path = std::env::var(CHILD_ENV).expect("run by committed_items_survive_sigkill");
    let mut reactor = Reactor::new().unwrap();
    let db: Database = reactor
        .context()
        .run(|| {
            Database::builder(Sqlite::file(&path))
                .on_delivery(|d: Delivery<Notice>| {
                    // Announce, then hang: the parent kills us here, after
                    // the commit and before the row is marked delivered.
                    say(&format!("delivering {} {}", d.id.0, d.item.what));
                    std::thread::sleep(Duration::from_secs(60));
                })
                .open()
        })
        .unwrap();
    let rolled_back = db.run_interaction(|_| {
        push("rolled back")?;
        Err::<(), _>(TxError::Aborted("on purpose".into()))
    });
    assert!(reactor.run_until(rolled_back).unwrap().is_err());
    // Committed; its delivery starts on the reactor thread and hangs...
    let committed = db.run_interaction(|_| {
        push("first")?;
        push("second")
    });
    // ...while this one is open on the DB thread when the kill comes (in
    // a transaction of its own: a batch would hold the first one's commit
    // back until this one is done).
    let open = db.run_interaction_alone(|_| {
        push("never committed")?;
        say("in transaction");
        std::thread::sleep(Duration::from_secs(60));
        Ok::<_, TxError>(())
    });
    let handle = reactor.handle();
    drop(handle.spawn(async move {
        let _ = committed.await;
        let _ = open.await;
    }));
    reactor.run_until(std::future::pending::<()>()).unwrap();
}

#[test]
fn committed_items_survive_sigkill_and_are_delivered_once_more_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Read the child's announcements on a thread, so the wait is bounded.
    let (lines, announced) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test crash_child ... " before it.
            if let Some((_, said)) = line.split_once("CRASH: ") {
                if lines.send(said.to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    let mut delivering = None;
    let mut in_transaction = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivering.is_none() || !in_transaction {
        let left = deadline.saturating_duration_since(Instant::now());
        let said = match announced.recv_timeout(left) {
            Ok(said) => said,
            Err(_) => {
                let _ = child.kill();
                panic!("the child did not reach the crash point");
            }
        };
        if said == "in transaction" {
            in_transaction = true;
        } else if let Some(rest) = said.strip_prefix("delivering ") {
            delivering = Some(rest.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success());
    let delivering = delivering.unwrap();
    assert!(delivering.ends_with("first"), "{delivering}");
    let first_id: i64 = delivering.split(' ').next().unwrap().parse().unwrap();

    let got = restart_and_collect(&path, 2);
    let whats: Vec<&str> = got.iter().map(|d| d.item.what.as_str()).collect();
    assert_eq!(whats, ["first", "second"], "exactly the committed items");
    assert_eq!(got[0].id.0, first_id, "the same id as before the crash");
    assert!(got.iter().all(|d| d.redelivered));
    // Delivered and marked now: another restart delivers nothing.
    assert!(restart_and_collect(&path, 0).is_empty());
}

/// Opens the database in a fresh reactor and ticks until `n` items came
/// (bounded), then until their rows are marked delivered.
fn restart_and_collect(path: &Path, n: usize) -> Vec<Delivery<Notice>> {
    let mut reactor = Reactor::new().unwrap();
    let got: Arc<Mutex<Vec<Delivery<Notice>>>> = Arc::default();
    let sink = Arc::clone(&got);
    let db: Database = reactor
        .context()
        .run(|| {
            Database::builder(Sqlite::file(path))
                .on_delivery(move |d: Delivery<Notice>| sink.lock().unwrap().push(d))
                .open()
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        reactor.tick(Some(Duration::from_millis(10))).unwrap();
        let delivered = got.lock().unwrap().len() >= n;
        let undelivered = reactor.run_until(db.undelivered()).unwrap().unwrap();
        if delivered && undelivered.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "undelivered: {undelivered:?}");
    }
    let got = got.lock().unwrap().clone();
    got
}
