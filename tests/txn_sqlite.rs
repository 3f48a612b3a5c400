//! Transactions and the outbox on real SQLite files (WAL mode) with a real
//! reactor and real DB threads. Every wait is bounded.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use milieu::dump::HopKind;
use milieu::reactor::Reactor;
use milieu::stage::CloseMode;
use milieu::txn::{
    Cache, Database, Delivery, OpenError, OutboxId, OutboxItem, Retry, Sqlite, Tx, TxError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order: i64,
    item: String,
}

impl OutboxItem for OrderPlaced {
    const KIND: &'static str = "order-placed";
}

/// A kind no database in this file registers a handler for.
#[derive(Serialize, Deserialize)]
struct Unhandled;

impl OutboxItem for Unhandled {
    const KIND: &'static str = "unhandled";
}

type Delivered = Arc<Mutex<Vec<Delivery<OrderPlaced>>>>;

struct Service {
    reactor: Reactor,
    db: Database,
    delivered: Delivered,
}

fn open(path: &Path, retry: Retry) -> Service {
    open_delivering_on(path, retry, None)
}

/// Like `open`, with outbox deliveries sent to `delivery` (a reactor the
/// test never runs, so nothing is delivered) when given.
fn open_delivering_on(path: &Path, retry: Retry, delivery: Option<&Reactor>) -> Service {
    let reactor = Reactor::new().unwrap();
    let delivered: Delivered = Arc::default();
    let sink = Arc::clone(&delivered);
    let mut builder = Database::builder(Sqlite::file(path))
        .retry(retry)
        .on_delivery(move |d: Delivery<OrderPlaced>| sink.lock().unwrap().push(d));
    if let Some(other) = delivery {
        builder = builder.reactor(other.handle());
    }
    let db = reactor.context().run(|| builder.open()).unwrap();
    let mut service = Service {
        reactor,
        db,
        delivered,
    };
    let db = service.db.clone();
    service
        .block_on(db.run_interaction(|tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)",
            )?;
            Ok::<_, TxError>(())
        }))
        .unwrap();
    service
}

impl Service {
    fn block_on<F: std::future::Future>(&mut self, future: F) -> F::Output {
        self.reactor.run_until(future).unwrap()
    }

    /// Ticks until `n` items were delivered (or 5 s passed).
    fn settle(&mut self, n: usize) -> Vec<Delivery<OrderPlaced>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.delivered.lock().unwrap().len() < n && Instant::now() < deadline {
            self.reactor.tick(Some(Duration::from_millis(10))).unwrap();
        }
        // A few more ticks: anything beyond `n` would show up too.
        for _ in 0..3 {
            self.reactor.tick(Some(Duration::from_millis(5))).unwrap();
        }
        self.delivered.lock().unwrap().clone()
    }

    fn count_orders(&mut self) -> i64 {
        let db = self.db.clone();
        self.block_on(db.run_interaction(|tx| {
            Ok::<_, TxError>(tx.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))?)
        }))
        .unwrap()
    }
}

/// Deep inside a transaction: finds `Tx` and the outbox through the context.
fn place_order(item: &str) -> Result<i64, TxError> {
    let tx = milieu::get::<Tx>()?;
    tx.execute("INSERT INTO orders (item) VALUES (?1)", [item])?;
    let order = tx.last_insert_rowid();
    milieu::txn::push(&OrderPlaced {
        order,
        item: item.to_owned(),
    })?;
    Ok(order)
}

fn quick_retry() -> Retry {
    Retry {
        attempts: 3,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    }
}

#[test]
fn only_committed_transactions_release_their_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir.path().join("orders.db"), Retry::default());
    let db = s.db.clone();

    let committed = s
        .block_on(db.run_interaction(|_| place_order("tea")))
        .unwrap();
    let rolled_back: Result<i64, TxError> = s.block_on(db.run_interaction(|_| {
        place_order("coffee")?;
        Err(TxError::Aborted("out of coffee".into()))
    }));
    let panicked: Result<i64, TxError> = s.block_on(db.run_interaction(|_| {
        place_order("cake")?;
        panic!("oven on fire");
    }));

    assert!(matches!(rolled_back, Err(TxError::Aborted(_))));
    match panicked {
        Err(TxError::Panicked { message }) => assert!(message.contains("oven on fire")),
        other => panic!("expected Panicked, got {other:?}"),
    }
    let delivered = s.settle(1);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].item.order, committed);
    assert_eq!(delivered[0].item.item, "tea");
    assert!(!delivered[0].redelivered);
    assert_eq!(s.count_orders(), 1, "the rolled back rows are gone too");

    // After delivery the row is marked: nothing is left undelivered.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = s.block_on(db.undelivered()).unwrap();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still undelivered: {left:?}");
        s.reactor.tick(Some(Duration::from_millis(10))).unwrap();
    }
}

#[test]
fn the_transaction_and_its_stage_hop_are_in_the_context_inside() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir.path().join("dump.db"), Retry::default());
    let db = s.db.clone();
    struct RequestId(u32);
    let caller = std::thread::current().id();
    let (dump, id, worker) = s
        .block_on(milieu::scope().with(RequestId(42)).run(|| {
            db.run_interaction(|_tx| {
                Ok::<_, TxError>((
                    milieu::dump(),
                    milieu::get::<RequestId>()?.0,
                    std::thread::current().id(),
                ))
            })
        }))
        .unwrap();
    assert_eq!(id, 42, "the caller's context crossed to the DB thread");
    assert_ne!(worker, caller);
    let text = dump.to_string();
    assert!(text.contains("Tx"), "{text}");
    assert!(text.contains("Outbox"), "{text}");
    assert!(
        dump.hops()
            .any(|h| h.kind == HopKind::Stage && h.label.as_deref() == Some("db")),
        "{text}"
    );
}

#[test]
fn bad_pushes_are_typed_errors_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir.path().join("bad.db"), Retry::default());
    let db = s.db.clone();

    // Outside a transaction there is no outbox.
    assert!(matches!(
        milieu::txn::push(&OrderPlaced {
            order: 1,
            item: "x".into()
        }),
        Err(TxError::NotInTransaction(_))
    ));
    // A kind nobody handles could never be delivered: refused, and the
    // transaction (with its order row) rolls back.
    let result: Result<(), TxError> = s.block_on(db.run_interaction(|_| {
        place_order("tea")?;
        milieu::txn::push(&Unhandled)?;
        Ok(())
    }));
    match result {
        Err(TxError::UnknownKind { kind }) => assert_eq!(kind, "unhandled"),
        other => panic!("expected UnknownKind, got {other:?}"),
    }
    // SQL errors are typed too and roll back.
    let result: Result<(), TxError> = s.block_on(db.run_interaction(|tx| {
        place_order("tea")?;
        tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
        Ok(())
    }));
    assert!(matches!(result, Err(TxError::Database(_))), "{result:?}");
    assert_eq!(s.count_orders(), 0);
    assert!(s.settle(0).is_empty());
}

#[test]
fn a_locked_database_is_retried_with_backoff_then_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let mut s = open(&path, quick_retry());
    let db = s.db.clone();

    // Another process-like writer holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let result: Result<i64, TxError> = s.block_on(db.run_interaction(|_| place_order("tea")));
    match &result {
        Err(TxError::Busy { attempts, .. }) => assert_eq!(*attempts, 3),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(result
        .unwrap_err()
        .to_string()
        .contains("locked after 3 attempts"));

    // With a patient policy, a lock released while retrying is waited for.
    drop((db, s));
    let mut s = open(
        &path_after_unlock(other, &path),
        Retry {
            attempts: 60,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(100),
        },
    );
    let db = s.db.clone();
    assert!(s
        .block_on(db.run_interaction(|_| place_order("tea")))
        .is_ok());
    assert_eq!(s.count_orders(), 1);
}

/// Holds `other`'s lock for 50 ms more on another thread, then commits.
fn path_after_unlock(other: rusqlite::Connection, path: &Path) -> std::path::PathBuf {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        other.execute_batch("COMMIT").unwrap();
    });
    path.to_owned()
}

#[test]
fn a_dropped_future_cancels_nothing_committed_and_leaks_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir.path().join("dropped.db"), Retry::default());
    let db = s.db.clone();
    for i in 0..20 {
        drop(db.run_interaction(move |_| place_order(&format!("item {i}"))));
    }
    // All twenty still run, commit and deliver.
    assert_eq!(s.settle(20).len(), 20);
    assert_eq!(s.count_orders(), 20);
    let stats = db.stats();
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(stats.in_flight, 0);
    // One worker, one connection: closing joins it.
    db.close(CloseMode::Drain).unwrap();
    let after: Result<(), TxError> = s.block_on(db.run_interaction(|_| Ok(())));
    assert!(matches!(after, Err(TxError::Closed { .. })), "{after:?}");
}

#[test]
fn a_full_db_stage_refuses_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = Reactor::new().unwrap();
    let db: Database = reactor
        .context()
        .run(|| {
            Database::builder(Sqlite::file(dir.path().join("full.db")))
                .capacity(1)
                .open()
        })
        .unwrap();
    let (release, wait) = mpsc::channel::<()>();
    let (started, running) = mpsc::channel::<()>();
    // The worker is busy with this one...
    let busy = db.run_interaction(move |_| {
        started.send(()).unwrap();
        wait.recv_timeout(Duration::from_secs(10)).unwrap();
        Ok::<_, TxError>(())
    });
    running.recv_timeout(Duration::from_secs(10)).unwrap();
    // ...this one fills the queue...
    let queued = db.run_interaction(|_| Ok::<_, TxError>(()));
    // ...and this one is refused without waiting.
    let refused = futures::executor::block_on(db.run_interaction(|_| Ok::<_, TxError>(())));
    match refused {
        Err(TxError::Overloaded { capacity, .. }) => assert_eq!(capacity, 1),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    release.send(()).unwrap();
    futures::executor::block_on(async {
        busy.await.unwrap();
        queued.await.unwrap();
    });
    assert_eq!(db.stats().refused, 1);
}

#[test]
fn cache_invalidations_apply_only_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir.path().join("cache.db"), Retry::default());
    let db = s.db.clone();
    let prices: Cache<String, i64> = Cache::new();
    prices
        .get_or_load("tea".to_owned(), || Ok::<_, TxError>(250))
        .unwrap();

    let (c1, c2, c3) = (prices.clone(), prices.clone(), prices.clone());
    let _: Result<(), TxError> = s.block_on(db.run_interaction(move |_| {
        c1.invalidate_on_commit("tea".to_owned())?;
        Err(TxError::Aborted("no".into()))
    }));
    assert_eq!(
        prices.get(&"tea".to_owned()).as_deref(),
        Some(&250),
        "rolled back: kept"
    );

    s.block_on(db.run_interaction(move |_| {
        c2.invalidate_on_commit("tea".to_owned())?;
        // Loaded inside the transaction: returned, not stored.
        let fresh = c2.get_or_load("coffee".to_owned(), || Ok::<_, TxError>(300))?;
        assert_eq!(*fresh, 300);
        Ok::<_, TxError>(())
    }))
    .unwrap();
    assert_eq!(prices.get(&"tea".to_owned()), None, "committed: dropped");
    assert_eq!(
        prices.get(&"coffee".to_owned()),
        None,
        "a value read inside a transaction is not cached"
    );
    // Outside a transaction there is nothing to attach an invalidation to.
    assert!(matches!(
        c3.invalidate_on_commit("tea".to_owned()),
        Err(TxError::NotInTransaction(_))
    ));
}

#[test]
fn undelivered_items_are_delivered_after_reopening_with_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    let ids: Vec<OutboxId>;
    {
        // Deliveries go to a reactor that never runs: committed, never
        // delivered, as if the process had died right after the commit.
        let stalled = Reactor::new().unwrap();
        let mut s = open_delivering_on(&path, Retry::default(), Some(&stalled));
        let db = s.db.clone();
        let pushed = s
            .block_on(db.run_interaction(|_| {
                place_order("tea")?;
                let a = milieu::get::<milieu::txn::Outbox>()?.len();
                place_order("cake")?;
                Ok::<_, TxError>(a)
            }))
            .unwrap();
        assert_eq!(pushed, 1);
        ids = s
            .block_on(db.undelivered())
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids.len(), 2);
    }
    let mut s = open(&path, Retry::default());
    let delivered = s.settle(2);
    assert_eq!(delivered.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    assert!(delivered.iter().all(|d| d.redelivered));
    // Marked now: a third open delivers nothing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let db = s.db.clone();
    while !s.block_on(db.undelivered()).unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        s.reactor.tick(Some(Duration::from_millis(10))).unwrap();
    }
    drop((db, s));
    let mut s = open(&path, Retry::default());
    assert!(s.settle(0).is_empty());
}

#[test]
fn bad_settings_are_refused_at_open() {
    // No reactor given and none in the context.
    let result = Database::builder(Sqlite::memory()).open();
    assert!(matches!(result, Err(OpenError::NoReactor(_))), "{result:?}");
    // One in-memory database per connection: one worker only.
    let reactor = Reactor::new().unwrap();
    let result = Database::builder(Sqlite::memory())
        .workers(2)
        .reactor(reactor.handle())
        .open();
    assert!(matches!(result, Err(OpenError::Config(_))), "{result:?}");
    // A path that cannot be a database file.
    let dir = tempfile::tempdir().unwrap();
    let result = Database::builder(Sqlite::file(dir.path()))
        .reactor(reactor.handle())
        .open();
    let err = result.expect_err("a directory is not a database");
    assert!(matches!(err, OpenError::Database(_)), "{err:?}");
    assert!(
        err.to_string().contains("cannot open the database"),
        "{err}"
    );
}
