//! The essay's claim, measured: a whole transaction in one trip to the DB
//! thread against one deferred trip (and one transaction) per statement.
//!
//! Run with `cargo bench --bench txn`.
//!
//! Group `txn_rows_with_notifications`: insert `ROWS` order rows, each with
//! an "order placed" outbox item, into a file-backed SQLite database in WAL
//! mode (`synchronous = FULL`, the crate's default), through a reactor:
//! - `one_interaction`: one `run_interaction` doing all the inserts and
//!   pushes, committed once;
//! - `trip_per_statement`: the anti-pattern: each statement (the row
//!   insert, then the outbox push) its own `run_interaction`, awaited in
//!   turn, so `2 × ROWS` trips and commits.
//!
//! Both deliver their outbox items to a no-op handler on the reactor. One
//! iteration is the whole batch.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use milieu::reactor::Reactor;
use milieu::txn::{Database, Delivery, OutboxItem, Sqlite, Tx, TxError};
use serde::{Deserialize, Serialize};

/// Rows per iteration.
const ROWS: usize = 200;

#[derive(Serialize, Deserialize)]
struct OrderPlaced {
    order: i64,
}

impl OutboxItem for OrderPlaced {
    const KIND: &'static str = "order-placed";
}

fn insert_order(tx: &Tx, i: usize) -> Result<i64, TxError> {
    tx.prepare_cached("INSERT INTO orders (item) VALUES (?1)")?
        .execute([format!("item {i}")])?;
    Ok(tx.last_insert_rowid())
}

fn setup() -> (tempfile::TempDir, Reactor, Database) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut reactor = Reactor::new().expect("reactor");
    let db: Database = reactor
        .context()
        .run(|| {
            Database::builder(Sqlite::file(dir.path().join("bench.db")))
                .on_delivery(|_: Delivery<OrderPlaced>| {})
                .open()
        })
        .expect("database");
    reactor
        .run_until(db.run_interaction(|tx| {
            tx.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")?;
            Ok::<_, TxError>(())
        }))
        .expect("reactor")
        .expect("schema");
    (dir, reactor, db)
}

fn txn_rows_with_notifications(c: &mut Criterion) {
    let mut group = c.benchmark_group("txn_rows_with_notifications");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(ROWS as u64));

    group.bench_function("one_interaction", |b| {
        let (_dir, mut reactor, db) = setup();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let done = db.run_interaction(|tx| {
                    for i in 0..ROWS {
                        let order = insert_order(tx, i)?;
                        milieu::txn::push(&OrderPlaced { order })?;
                    }
                    Ok::<_, TxError>(())
                });
                reactor.run_until(done).expect("reactor").expect("batch");
            }
            start.elapsed()
        });
    });

    group.bench_function("trip_per_statement", |b| {
        let (_dir, mut reactor, db) = setup();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for i in 0..ROWS {
                    let order = reactor
                        .run_until(db.run_interaction(move |tx| insert_order(tx, i)))
                        .expect("reactor")
                        .expect("insert");
                    reactor
                        .run_until(db.run_interaction(move |_| {
                            milieu::txn::push(&OrderPlaced { order }).map(drop)
                        }))
                        .expect("reactor")
                        .expect("push");
                }
            }
            start.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, txn_rows_with_notifications);
criterion_main!(benches);
