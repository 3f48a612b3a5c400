//! Delivered outbox rows are deleted once they are older than the database
//! keeps them (`DatabaseBuilder::keep_delivered`), by the DB workers as
//! they mark rows and by `Database::prune_delivered` on demand; rows not
//! yet delivered never are. Real SQLite files, a real reactor and real DB
//! threads; the table is read back through a connection of the test's
//! own. Every wait is bounded.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use milieu::reactor::Reactor;
use milieu::txn::{Database, DatabaseBuilder, Delivery, OutboxItem, Sqlite, TxError};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipped(u32);

impl OutboxItem for Shipped {
    const KIND: &'static str = "shipped";
}

/// An item whose handler never gets it: its stored JSON does not decode,
/// so its row stays undelivered (and is logged as such).
#[derive(Serialize)]
struct Undecodable;

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("this item never decodes"))
    }
}

impl OutboxItem for Undecodable {
    const KIND: &'static str = "undecodable";
}

struct Service {
    reactor: Reactor,
    db: Database,
    delivered: Arc<Mutex<usize>>,
}

fn open(
    path: &Path,
    keep: impl FnOnce(DatabaseBuilder<Sqlite>) -> DatabaseBuilder<Sqlite>,
) -> Service {
    let reactor = Reactor::new().unwrap();
    let delivered = Arc::new(Mutex::new(0));
    let count = Arc::clone(&delivered);
    let builder = keep(Database::builder(Sqlite::file(path)))
        .on_delivery(move |_: Delivery<Shipped>| *count.lock().unwrap() += 1)
        .on_delivery(|_: Delivery<Undecodable>| unreachable!("never decodes"));
    let db = reactor.context().run(|| builder.open()).unwrap();
    Service {
        reactor,
        db,
        delivered,
    }
}

impl Service {
    /// Commits `shipped` delivered items and `undecodable` undelivered ones
    /// in one transaction, then ticks until every `Shipped` row of the
    /// database is delivered and marked. Returns the new rows' ids.
    fn push(&mut self, shipped: u32, undecodable: u32) -> Vec<i64> {
        let db = self.db.clone();
        let before = *self.delivered.lock().unwrap();
        let ids = self
            .reactor
            .run_until(db.run_interaction(move |_| {
                let mut ids = Vec::new();
                for n in 0..shipped {
                    ids.push(milieu::txn::push(&Shipped(n))?.0);
                }
                for _ in 0..undecodable {
                    ids.push(milieu::txn::push(&Undecodable)?.0);
                }
                Ok::<_, TxError>(ids)
            }))
            .unwrap()
            .unwrap();
        let want = before + shipped as usize;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.reactor.run_until(db.undelivered()).unwrap().unwrap();
            let marked = left.iter().all(|row| row.kind == Undecodable::KIND);
            if *self.delivered.lock().unwrap() >= want && marked {
                return ids;
            }
            assert!(Instant::now() < deadline, "not delivered: {left:?}");
            self.reactor.tick(Some(Duration::from_millis(5))).unwrap();
        }
    }
}

/// The ids in the outbox table, read through a connection of the test's.
fn rows(path: &Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM milieu_outbox ORDER BY id")
        .unwrap();
    let ids = stmt.query_map([], |row| row.get(0)).unwrap();
    ids.collect::<Result<_, _>>().unwrap()
}

/// Waits for the wall clock's second to change: SQLite marks rows
/// delivered in whole seconds, and a row is pruned only once it is older
/// than it is kept, so a row marked in this second is past a zero
/// retention from the next one on.
fn next_second() {
    let second = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let now = second();
    let deadline = Instant::now() + Duration::from_secs(3);
    while second() == now {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workers delete delivered rows past their retention when they next
/// mark rows delivered; the undelivered rows stay.
#[test]
fn the_workers_delete_delivered_rows_once_past_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let mut s = open(&path, |b| b.keep_delivered(Duration::ZERO));
    let first = s.push(5, 2);
    let (delivered, undelivered) = first.split_at(5);
    // A prune runs at most once a second, and these rows are past a zero
    // retention only from the next second on.
    next_second();
    std::thread::sleep(Duration::from_millis(1100));
    // Delivering more makes the worker prune after marking.
    let second = s.push(3, 0);
    let left = rows(&path);
    assert!(
        delivered.iter().all(|id| !left.contains(id)),
        "the first delivered rows are gone: {left:?}"
    );
    assert!(
        undelivered.iter().all(|id| left.contains(id)),
        "the undelivered rows stay: {left:?}"
    );
    // The second delivery's rows are young (kept, unless the prune ran
    // just past a second's turn, when they too are past a zero
    // retention): nothing else is in the table.
    assert!(
        left.iter()
            .all(|id| undelivered.contains(id) || second.contains(id)),
        "{left:?}"
    );
}

/// Two deliveries more than a second apart under `keep`: the ids pushed,
/// and those in the table once the worker is done with the second (a
/// prune, if one ran, follows the marks it waited for).
fn two_deliveries(
    keep: impl FnOnce(DatabaseBuilder<Sqlite>) -> DatabaseBuilder<Sqlite>,
) -> (Vec<i64>, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let mut s = open(&path, keep);
    let mut pushed = s.push(4, 1);
    next_second();
    std::thread::sleep(Duration::from_millis(1100));
    pushed.extend(s.push(2, 0));
    (pushed, rows(&path))
}

/// `keep_delivered_forever`: no worker deletes anything.
#[test]
fn rows_kept_forever_stay() {
    let (pushed, left) = two_deliveries(DatabaseBuilder::keep_delivered_forever);
    assert_eq!(left, pushed);
}

/// The default keeps rows for days: a service that delivers does not lose
/// its recent history.
#[test]
fn the_default_retention_keeps_recent_rows() {
    let (pushed, left) = two_deliveries(|b| b);
    assert_eq!(left, pushed);
}

/// `prune_delivered` deletes, at once, every delivered row older than
/// asked, also behind a young one delivered late (the workers' windowed
/// prune would stop there), and nothing else; ids are not reused after a
/// prune.
#[test]
fn prune_delivered_deletes_old_delivered_rows_and_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let mut s = open(&path, DatabaseBuilder::keep_delivered_forever);
    // More than one statement's batch (1,000 rows).
    let first = s.push(2_500, 3);
    let db = s.db.clone();
    let young = s
        .reactor
        .run_until(db.prune_delivered(Duration::from_secs(3600)))
        .unwrap()
        .unwrap();
    assert_eq!(young, 0, "nothing is an hour old");
    // The oldest row delivered just now (as after a restart), the others
    // two days ago, through a connection of the test's own.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE milieu_outbox SET delivered_at = unixepoch() - 172800 \
         WHERE delivered_at IS NOT NULL AND id > ?1",
        [first[0]],
    )
    .unwrap();
    let prune_a_day_old = |s: &mut Service| {
        s.reactor
            .run_until(db.prune_delivered(Duration::from_secs(86_400)))
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        prune_a_day_old(&mut s),
        2_499,
        "all but the row delivered late"
    );
    let kept: Vec<i64> = std::iter::once(first[0])
        .chain(first[2_500..].iter().copied())
        .collect();
    assert_eq!(
        rows(&path),
        kept,
        "the late row and the undelivered rows stay"
    );
    // The newest row pruned: the next one still gets a new id.
    let newest = s.push(1, 0)[0];
    conn.execute(
        "UPDATE milieu_outbox SET delivered_at = unixepoch() - 172800 WHERE id = ?1",
        [newest],
    )
    .unwrap();
    assert_eq!(prune_a_day_old(&mut s), 1);
    assert!(!rows(&path).contains(&newest));
    let after = s.push(1, 0)[0];
    assert!(after > newest, "{after} after {newest}");
}
