//! Transactions and the outbox on a real PostgreSQL server.
//!
//! These tests need a server: set `MILIEU_TEST_POSTGRES` to a connection
//! string (for example `host=127.0.0.1 user=postgres dbname=milieu_test`)
//! and run them with `cargo test --all-features --test txn_postgres --
//! --ignored --test-threads=1` (one at a time: they share the server's
//! outbox table). Without it the default `cargo test` lists them as ignored,
//! with that reason. `.ci/run` installs PostgreSQL, starts it on loopback
//! and runs them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milieu::reactor::Reactor;
use milieu::txn::{Database, Delivery, OutboxItem, Postgres, Tx, TxError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shipped {
    order: i64,
}

impl OutboxItem for Shipped {
    const KIND: &'static str = "shipped";
}

fn server() -> String {
    std::env::var("MILIEU_TEST_POSTGRES")
        .expect("MILIEU_TEST_POSTGRES must name a PostgreSQL server for the ignored tests")
}

type Seen = Arc<Mutex<Vec<Delivery<Shipped>>>>;

fn open(reactor: &Reactor, seen: &Seen) -> Database<Postgres> {
    open_delivering_on(reactor, seen)
}

/// Opens the database with deliveries on `delivery`'s thread (a reactor
/// a test may never run, so nothing gets delivered).
fn open_delivering_on(delivery: &Reactor, seen: &Seen) -> Database<Postgres> {
    let sink = Arc::clone(seen);
    Database::builder(Postgres::new(server()))
        .on_delivery(move |d: Delivery<Shipped>| sink.lock().unwrap().push(d))
        .reactor(delivery.handle())
        .open()
        .unwrap()
}

fn ship(table: &'static str, order: i64) -> Result<(), TxError> {
    let tx = milieu::get::<Tx<Postgres>>()?;
    tx.client()
        .execute(&format!("INSERT INTO {table} (id) VALUES ($1)"), &[&order])?;
    milieu::txn::push(&Shipped { order })?;
    Ok(())
}

/// Creates the test's own `table` afresh and marks every outbox row left
/// by earlier runs delivered, so each test starts clean.
fn fresh_start(reactor: &mut Reactor, db: &Database<Postgres>, table: &'static str) {
    reactor
        .run_until(db.run_interaction(move |tx: &Tx<Postgres>| {
            tx.client().batch_execute(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id BIGINT PRIMARY KEY);
                 UPDATE milieu_outbox SET delivered_at = now() WHERE delivered_at IS NULL;"
            ))?;
            Ok::<_, TxError>(())
        }))
        .unwrap()
        .unwrap();
}

#[track_caller]
fn wait_until(reactor: &mut Reactor, mut done: impl FnMut(&mut Reactor) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(reactor) {
        assert!(Instant::now() < deadline, "timed out waiting");
        reactor.tick(Some(Duration::from_millis(10))).unwrap();
    }
}

#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn postgres_commits_deliver_and_rollbacks_release_nothing() {
    let mut reactor = Reactor::new().unwrap();
    let seen: Seen = Arc::default();
    let db = open(&reactor, &seen);
    // A table of this test's own, so reruns start clean.
    let table = "milieu_test_shipments";
    fresh_start(&mut reactor, &db, table);

    let ok = reactor.run_until(db.run_interaction(move |_: &Tx<Postgres>| ship(table, 1)));
    assert!(ok.unwrap().is_ok());
    let rolled_back: Result<(), TxError> = reactor
        .run_until(db.run_interaction(move |_: &Tx<Postgres>| {
            ship(table, 2)?;
            Err(TxError::Aborted("no".into()))
        }))
        .unwrap();
    assert!(rolled_back.is_err());
    // A duplicate key is a typed database error and rolls back.
    let duplicate = reactor
        .run_until(db.run_interaction(move |_: &Tx<Postgres>| ship(table, 1)))
        .unwrap();
    assert!(
        matches!(duplicate, Err(TxError::Database(_))),
        "{duplicate:?}"
    );

    wait_until(&mut reactor, |r| {
        let marked = r.run_until(db.undelivered()).unwrap().unwrap().is_empty();
        marked && !seen.lock().unwrap().is_empty()
    });
    let orders: Vec<i64> = seen.lock().unwrap().iter().map(|d| d.item.order).collect();
    assert_eq!(orders, [1]);
}

#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn postgres_undelivered_rows_are_delivered_after_reopening() {
    let table = "milieu_test_reopen";
    let id;
    {
        let mut reactor = Reactor::new().unwrap();
        // Deliveries go to a reactor that never runs: committed, never
        // delivered, as if the process had died right after the commit.
        let stalled = Reactor::new().unwrap();
        let seen: Seen = Arc::default();
        let db = open_delivering_on(&stalled, &seen);
        fresh_start(&mut reactor, &db, table);
        reactor
            .run_until(db.run_interaction(move |_: &Tx<Postgres>| ship(table, 7)))
            .unwrap()
            .unwrap();
        let left = reactor.run_until(db.undelivered()).unwrap().unwrap();
        assert_eq!(left.len(), 1);
        id = left[0].id;
    }
    let mut reactor = Reactor::new().unwrap();
    let seen: Seen = Arc::default();
    let db = open(&reactor, &seen);
    wait_until(&mut reactor, |r| {
        r.run_until(db.undelivered()).unwrap().unwrap().is_empty()
            && !seen.lock().unwrap().is_empty()
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, id);
    assert!(seen[0].redelivered);
}

#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn an_unreachable_server_is_a_typed_error_at_open() {
    let reactor = Reactor::new().unwrap();
    let result = Database::builder(Postgres::new(
        "host=127.0.0.1 port=1 user=nobody connect_timeout=2",
    ))
    .retry(milieu::txn::Retry {
        attempts: 1,
        ..Default::default()
    })
    .reactor(reactor.handle())
    .open();
    let err = result.expect_err("nothing listens on port 1");
    assert!(
        err.to_string().contains("cannot open the database"),
        "{err}"
    );
}

/// Queues an interaction run alone that holds the worker until the
/// returned sender is dropped; what is queued meanwhile forms the next
/// batch. Returns once it holds the worker.
fn gate(
    db: &Database<Postgres>,
) -> (
    std::sync::mpsc::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (open_gate, wait) = std::sync::mpsc::channel::<()>();
    let (started, is_started) = std::sync::mpsc::channel::<()>();
    let gate = db.run_interaction_alone(move |_: &Tx<Postgres>| {
        started.send(()).unwrap();
        let _ = wait.recv_timeout(Duration::from_secs(30));
        Ok::<_, TxError>(())
    });
    is_started
        .recv_timeout(Duration::from_secs(10))
        .expect("the gate never ran");
    (open_gate, async move { gate.await.unwrap() })
}

fn stored(reactor: &mut Reactor, db: &Database<Postgres>, table: &'static str) -> Vec<i64> {
    reactor
        .run_until(db.run_interaction(move |tx: &Tx<Postgres>| {
            let rows = tx
                .client()
                .query(&format!("SELECT id FROM {table} ORDER BY id"), &[])?;
            Ok::<_, TxError>(rows.iter().map(|row| row.get(0)).collect())
        }))
        .unwrap()
        .unwrap()
}

#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn postgres_one_interaction_of_ten_panics_one_fails_a_statement_and_eight_commit_in_one_batch() {
    let mut reactor = Reactor::new().unwrap();
    let seen: Seen = Arc::default();
    let db = open(&reactor, &seen);
    let table = "milieu_test_batch";
    fresh_start(&mut reactor, &db, table);
    let (open_gate, gate) = gate(&db);
    let interactions: Vec<_> = (1..=10)
        .map(|n: i64| {
            db.run_interaction(move |_: &Tx<Postgres>| {
                match n {
                    // A duplicate key: PostgreSQL aborts the transaction
                    // until the savepoint is rolled back to.
                    6 => ship(table, 5)?,
                    _ => ship(table, n)?,
                }
                if n == 3 {
                    panic!("interaction {n} fell over");
                }
                Ok::<_, TxError>(n)
            })
        })
        .collect();
    drop(open_gate);
    let results = reactor
        .run_until(async move {
            gate.await;
            futures::future::join_all(interactions).await
        })
        .unwrap();
    for (n, result) in (1..=10).zip(&results) {
        match (n, result) {
            (3, Err(TxError::Panicked { .. })) | (6, Err(TxError::Database(_))) => {}
            (3 | 6, other) => panic!("interaction {n} answered {other:?}"),
            (n, other) => assert_eq!(other.as_ref().ok(), Some(&n), "{other:?}"),
        }
    }
    let eight = vec![1, 2, 4, 5, 7, 8, 9, 10];
    assert_eq!(stored(&mut reactor, &db, table), eight);
    wait_until(&mut reactor, |r| {
        r.run_until(db.undelivered()).unwrap().unwrap().is_empty()
            && seen.lock().unwrap().len() >= 8
    });
    let mut orders: Vec<i64> = seen.lock().unwrap().iter().map(|d| d.item.order).collect();
    orders.sort_unstable();
    assert_eq!(orders, eight);
    assert_eq!(db.stats().largest_batch, 10);
}

#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn postgres_a_batch_whose_commit_fails_fails_every_interaction_and_releases_nothing() {
    let mut reactor = Reactor::new().unwrap();
    let seen: Seen = Arc::default();
    let db = open(&reactor, &seen);
    let table = "milieu_test_batch_commit";
    fresh_start(&mut reactor, &db, table);
    reactor
        .run_until(db.run_interaction(|tx: &Tx<Postgres>| {
            tx.client().batch_execute(
                "DROP TABLE IF EXISTS milieu_test_child; DROP TABLE IF EXISTS milieu_test_parent;
                 CREATE TABLE milieu_test_parent (id BIGINT PRIMARY KEY);
                 CREATE TABLE milieu_test_child (
                     id BIGINT PRIMARY KEY,
                     parent BIGINT REFERENCES milieu_test_parent (id) DEFERRABLE INITIALLY DEFERRED
                 );",
            )?;
            Ok::<_, TxError>(())
        }))
        .unwrap()
        .unwrap();
    let (open_gate, gate) = gate(&db);
    let first = db.run_interaction(move |_: &Tx<Postgres>| ship(table, 1));
    let bad = db.run_interaction(move |tx: &Tx<Postgres>| {
        // Fine now, refused by the commit.
        tx.client().execute(
            "INSERT INTO milieu_test_child (id, parent) VALUES (1, 99)",
            &[],
        )?;
        ship(table, 2)
    });
    let last = db.run_interaction(move |_: &Tx<Postgres>| ship(table, 3));
    drop(open_gate);
    let results = reactor
        .run_until(async move {
            gate.await;
            (first.await, bad.await, last.await)
        })
        .unwrap();
    for result in [results.0, results.1, results.2] {
        assert!(matches!(result, Err(TxError::Database(_))), "{result:?}");
    }
    assert!(stored(&mut reactor, &db, table).is_empty());
    for _ in 0..20 {
        reactor.tick(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(seen.lock().unwrap().is_empty());
    assert!(reactor
        .run_until(db.undelivered())
        .unwrap()
        .unwrap()
        .is_empty());
}

#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn postgres_an_interaction_that_sleeps_does_not_hold_back_callers_on_other_workers() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut reactor = Reactor::new().unwrap();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let db: Database<Postgres> = Database::builder(Postgres::new(server()))
        .workers(2)
        .on_delivery(move |d: Delivery<Shipped>| sink.lock().unwrap().push(d))
        .reactor(reactor.handle())
        .open()
        .unwrap();
    let table = "milieu_test_sleeper";
    fresh_start(&mut reactor, &db, table);
    let slept = Arc::new(AtomicBool::new(false));
    let (started, is_started) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let done = Arc::clone(&slept);
    // A plain (batchable) interaction that sleeps until released.
    let sleeper = db.run_interaction(move |_: &Tx<Postgres>| {
        ship(table, 1000)?;
        started.send(()).unwrap();
        let _ = released.recv_timeout(Duration::from_secs(30));
        done.store(true, Ordering::SeqCst);
        Ok::<_, TxError>(())
    });
    is_started.recv_timeout(Duration::from_secs(10)).unwrap();
    // Queued while it sleeps: the other worker takes and commits them.
    for round in 0..10 {
        let batch: Vec<_> = (1..=5)
            .map(|i| db.run_interaction(move |_: &Tx<Postgres>| ship(table, round * 10 + i)))
            .collect();
        let results = reactor.run_until(futures::future::join_all(batch)).unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    assert!(
        !slept.load(Ordering::SeqCst),
        "the callers waited for the sleeper"
    );
    release.send(()).unwrap();
    reactor.run_until(sleeper).unwrap().unwrap();
    assert_eq!(stored(&mut reactor, &db, table).len(), 51);
}

#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn postgres_a_worker_connecting_during_a_long_interaction_is_not_held_back() {
    // A worker's connection used to run `CREATE INDEX IF NOT EXISTS` on
    // the outbox, which takes a table lock and so waited for any open
    // transaction that had written to the outbox: a worker starting while
    // another interaction ran long was held back until it ended.
    let mut reactor = Reactor::new().unwrap();
    let seen: Seen = Arc::default();
    let db = open(&reactor, &seen);
    let table = "milieu_test_connecting";
    fresh_start(&mut reactor, &db, table);
    let (started, is_started) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    // Holds its transaction, with an outbox row written, until released.
    let long = db.run_interaction(move |_: &Tx<Postgres>| {
        ship(table, 1)?;
        started.send(()).unwrap();
        let _ = released.recv_timeout(Duration::from_secs(30));
        Ok::<_, TxError>(())
    });
    is_started.recv_timeout(Duration::from_secs(10)).unwrap();

    // A second database (new connections, as a new worker or process
    // makes) opens and commits meanwhile.
    let (done, is_done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reactor = Reactor::new().unwrap();
        let seen: Seen = Arc::default();
        let other = open(&reactor, &seen);
        let committed = reactor
            .run_until(other.run_interaction(move |_: &Tx<Postgres>| ship(table, 2)))
            .unwrap();
        let _ = done.send(committed.is_ok());
    });
    let committed = is_done.recv_timeout(Duration::from_secs(10));
    release.send(()).unwrap();
    reactor.run_until(long).unwrap().unwrap();
    assert_eq!(
        committed,
        Ok(true),
        "the new connection waited for the long interaction"
    );
}

/// Which of `ids` are still in the outbox table.
fn outbox_rows(reactor: &mut Reactor, db: &Database<Postgres>, ids: Vec<i64>) -> Vec<i64> {
    reactor
        .run_until(db.run_interaction(move |tx: &Tx<Postgres>| {
            let rows = tx.client().query(
                "SELECT id FROM milieu_outbox WHERE id = ANY($1) ORDER BY id",
                &[&ids],
            )?;
            Ok::<_, TxError>(rows.iter().map(|row| row.get(0)).collect())
        }))
        .unwrap()
        .unwrap()
}

/// With a zero retention the workers delete a delivered row once they
/// have marked it (PostgreSQL's clock counts microseconds), and
/// `prune_delivered` deletes the delivered rows left; a row not yet
/// delivered stays through both.
#[test]
#[ignore = "needs PostgreSQL: set MILIEU_TEST_POSTGRES and pass --ignored"]
fn postgres_delivered_rows_past_their_retention_are_deleted() {
    let mut reactor = Reactor::new().unwrap();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let db = Database::builder(Postgres::new(server()))
        .on_delivery(move |d: Delivery<Shipped>| sink.lock().unwrap().push(d))
        .reactor(reactor.handle())
        .keep_delivered(Duration::ZERO)
        .open()
        .unwrap();
    let table = "milieu_test_retention";
    fresh_start(&mut reactor, &db, table);
    // A row committed but never handed to delivery (written past the
    // outbox, as if its process had died before delivering it).
    let undelivered: i64 = reactor
        .run_until(db.run_interaction(|tx: &Tx<Postgres>| {
            let row = tx.client().query_one(
                "INSERT INTO milieu_outbox (kind, payload) VALUES ('milieu-test-kept', '{}') \
                 RETURNING id",
                &[],
            )?;
            Ok::<_, TxError>(row.get(0))
        }))
        .unwrap()
        .unwrap();
    let shipped = reactor
        .run_until(db.run_interaction(move |tx: &Tx<Postgres>| {
            tx.client()
                .execute(&format!("INSERT INTO {table} (id) VALUES (1)"), &[])?;
            Ok::<_, TxError>(milieu::txn::push(&Shipped { order: 1 })?.0)
        }))
        .unwrap()
        .unwrap();
    // Delivered, marked, then deleted by the worker's prune.
    wait_until(&mut reactor, |r| {
        !seen.lock().unwrap().is_empty() && outbox_rows(r, &db, vec![shipped]).is_empty()
    });
    assert_eq!(
        outbox_rows(&mut reactor, &db, vec![undelivered]),
        [undelivered]
    );
    reactor
        .run_until(db.prune_delivered(Duration::ZERO))
        .unwrap()
        .unwrap();
    let delivered_left: i64 = reactor
        .run_until(db.run_interaction(|tx: &Tx<Postgres>| {
            let row = tx.client().query_one(
                "SELECT count(*) FROM milieu_outbox WHERE delivered_at IS NOT NULL",
                &[],
            )?;
            Ok::<_, TxError>(row.get(0))
        }))
        .unwrap()
        .unwrap();
    assert_eq!(delivered_left, 0);
    let left = reactor.run_until(db.undelivered()).unwrap().unwrap();
    assert!(left.iter().any(|row| row.id.0 == undelivered), "{left:?}");
}
