//! Transactions with an outbox: what a transaction produces is released
//! only if it commits.
//!
//! Run with `cargo run --example outbox [-- --data DIR]`. The database is
//! a SQLite file (WAL mode) in DIR, default a fresh directory under the
//! system temp dir.
//!
//! One transaction places an order and commits; another places one, pushes
//! its notification, then fails and rolls back. The program prints the
//! notifications delivered (only the committed one) and the context dump
//! taken inside the committed transaction: the `Tx` and `Outbox` entries
//! and the hop onto the DB stage's thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use milieu::reactor::Reactor;
use milieu::txn::{Database, Delivery, OutboxItem, Sqlite, Tx, TxError};
use serde::{Deserialize, Serialize};

/// The notification a placed order produces.
#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order: i64,
    item: String,
}

impl OutboxItem for OrderPlaced {
    const KIND: &'static str = "order-placed";
}

/// Who asked: the caller's context crosses into the transaction.
#[derive(Debug)]
struct Customer(&'static str);

/// Called deep inside a transaction: no connection or outbox parameter.
fn place_order(item: &str) -> Result<i64, TxError> {
    let tx = milieu::get::<Tx>()?;
    let customer = milieu::get::<Customer>()?;
    let item = format!("{item} for {}", customer.0);
    tx.execute("INSERT INTO orders (item) VALUES (?1)", [&item])?;
    let order = tx.last_insert_rowid();
    milieu::txn::push(&OrderPlaced { order, item })?;
    Ok(order)
}

/// Where the database goes: `--data DIR`, or a scratch directory under the
/// system temp dir that is removed again when the example ends.
fn data_dir() -> Result<(PathBuf, Option<Scratch>), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let dir = std::env::temp_dir().join(format!("milieu-outbox-{}", std::process::id()));
            Ok((dir.clone(), Some(Scratch(dir))))
        }
        [flag, dir] if flag == "--data" => Ok((PathBuf::from(dir), None)),
        _ => Err(format!("usage: outbox [--data DIR] (got {args:?})").into()),
    }
}

/// A directory this run made for itself, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (dir, _scratch) = data_dir()?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("orders.db");
    println!("database: {}", path.display());

    let mut reactor = Reactor::new()?;
    let delivered: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&delivered);
    let db: Database = reactor.context().run(|| {
        Database::builder(Sqlite::file(&path))
            .on_delivery(move |d: Delivery<OrderPlaced>| {
                sink.lock().unwrap().push(format!(
                    "{}: order {} ({})",
                    d.id, d.item.order, d.item.item
                ));
            })
            .open()
    })?;

    let schema = db.run_interaction(|tx| {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)",
        )?;
        Ok::<_, TxError>(())
    });
    reactor.run_until(schema)??;
    // One after the other: queued together, the two would share one
    // commit (group commit), and the rolled-back one would still release
    // nothing.
    let request = milieu::scope()
        .with_debug(Customer("ada"))
        .because("the request being served");
    let committed = request.run(|| {
        db.run_interaction(|_| {
            let order = place_order("tea")?;
            Ok::<_, TxError>((order, milieu::dump()))
        })
    });
    let (order, dump) = reactor.run_until(committed)??;
    let request = milieu::scope()
        .with_debug(Customer("ada"))
        .because("the request being served");
    let rolled_back = request.run(|| {
        db.run_interaction(|_| {
            place_order("coffee")?;
            Err::<i64, _>(TxError::Aborted("payment declined".into()))
        })
    });
    let failed = reactor.run_until(rolled_back)?;
    println!("committed: order {order}");
    println!(
        "rolled back: {}",
        failed.expect_err("the second transaction fails")
    );

    // Deliveries run on the reactor thread after the commit: tick until
    // the committed one arrived (bounded), and a little longer to show
    // that nothing else does.
    let deadline = Instant::now() + Duration::from_secs(5);
    while delivered.lock().unwrap().is_empty() && Instant::now() < deadline {
        reactor.tick(Some(Duration::from_millis(10)))?;
    }
    for _ in 0..5 {
        reactor.tick(Some(Duration::from_millis(10)))?;
    }
    println!("\ndelivered notifications:");
    for line in delivered.lock().unwrap().iter() {
        println!("  {line}");
    }
    println!("\ncontext inside the committed transaction:\n{dump}");
    println!("DB stage: {}", db.stats());
    Ok(())
}
