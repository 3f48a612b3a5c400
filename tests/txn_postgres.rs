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
