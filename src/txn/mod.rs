//! Whole transactions on a database stage, with an outbox released only on
//! commit.
//!
//! The essay behind milieu asks for database work to run as whole
//! transactions in threads, "stipulating that transactions must produce
//! notifications or network I/O in the form of output objects placed into
//! a queue". This module is that:
//!
//! - A [`Database`] is a context entry (no global pool). It owns a
//!   [stage](crate::stage): a bounded queue and worker threads, each with
//!   its own connection.
//! - [`Database::run_interaction`] runs a closure as **one** transaction on
//!   a worker. Code at any depth inside finds the transaction as
//!   `milieu::get::<Tx>()` and the [`Outbox`] as `milieu::get::<Outbox>()`
//!   (both local entries: they never leave the DB thread).
//! - Items pushed to the outbox are written to the `milieu_outbox` table in
//!   the same transaction. After the commit they are delivered on the
//!   reactor thread to the handler registered for their type
//!   ([`DatabaseBuilder::on_delivery`]), then marked delivered. On
//!   rollback, error or panic nothing is released. Rows committed but not
//!   delivered when the process died are delivered after the next
//!   [`open`](DatabaseBuilder::open) (at-least-once, with stable
//!   [`OutboxId`]s). Delivered rows are deleted once older than
//!   [`DatabaseBuilder::keep_delivered`] (default 7 days).
//! - [`Cache`] invalidations registered in a transaction apply only on
//!   commit.
//! - **Group commit**: interactions queued together run in one database
//!   transaction, each in its own savepoint, and share one commit (one
//!   fsync); one that fails is undone alone. See
//!   [`Database::run_interaction`] for the rules,
//!   [`DatabaseBuilder::max_batch`] for the bounds and
//!   [`Database::run_interaction_alone`] for work that must not share.
//!
//! Two backends, each behind its feature: SQLite (`Sqlite`, feature
//! `sqlite`, bundled) is the embedded default; PostgreSQL (`Postgres`,
//! feature `postgres`) is the path past one machine. With `sqlite` on,
//! `Database` and `Tx` default to SQLite; without it they name their
//! backend (`Database<Postgres>`).
//!
//! # Examples
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use std::sync::{Arc, Mutex};
//! use milieu::reactor::Reactor;
//! use milieu::txn::{Database, Delivery, OutboxItem, Sqlite, Tx, TxError};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct OrderPlaced { order: i64 }
//! impl OutboxItem for OrderPlaced { const KIND: &'static str = "order-placed"; }
//!
//! // Deep inside the transaction: no connection parameter.
//! fn place_order(item: &str) -> Result<i64, TxError> {
//!     let tx = milieu::get::<Tx>()?;
//!     tx.execute("INSERT INTO orders (item) VALUES (?1)", [item])?;
//!     let order = tx.last_insert_rowid();
//!     milieu::txn::push(&OrderPlaced { order })?;
//!     Ok(order)
//! }
//!
//! let mut reactor = Reactor::new()?;
//! let delivered = Arc::new(Mutex::new(Vec::new()));
//! let seen = Arc::clone(&delivered);
//! let db = reactor.context().run(|| {
//!     Database::builder(Sqlite::memory())
//!         .on_delivery(move |d: Delivery<OrderPlaced>| seen.lock().unwrap().push(d.item.order))
//!         .open()
//! })?;
//!
//! let setup = db.run_interaction(|tx| {
//!     tx.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")?;
//!     Ok::<_, TxError>(())
//! });
//! let placed = db.run_interaction(|_tx| place_order("tea"));
//! let rolled_back = db.run_interaction(|_tx| {
//!     place_order("coffee")?;
//!     Err::<i64, _>(TxError::Aborted("changed my mind".into()))
//! });
//! let (placed, rolled_back) = reactor.run_until(async move {
//!     setup.await?;
//!     Ok::<_, TxError>((placed.await?, rolled_back.await.is_err()))
//! })??;
//! // Let the reactor run the delivery (a few ticks at most).
//! for _ in 0..10 {
//!     reactor.tick(Some(std::time::Duration::from_millis(10)))?;
//! }
//! assert!(rolled_back);
//! assert_eq!(*delivered.lock().unwrap(), vec![placed]); // only the committed one
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod cache;
mod outbox;
mod owner;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

pub use backend::{Backend, StoredItem};
pub use cache::Cache;
pub use outbox::{push, Delivery, Outbox, OutboxId, OutboxItem};
#[cfg(feature = "postgres")]
pub use postgres::{PgConnection, Postgres};
#[cfg(feature = "sqlite")]
pub use sqlite::Sqlite;

use crate::reactor::Handle;
use crate::stage::{Batched, Batching, CloseMode, RefuseReason, Stage, StageError, StageStats};
use crate::Context;
use crate::Missing;
use outbox::{Effects, Handlers};

/// Declares a struct generic over its [`Backend`] `B`, with SQLite as the
/// default when the `sqlite` feature is on. Without that feature `B` has
/// no default rather than a PostgreSQL one: code for PostgreSQL names
/// `Postgres` either way, so it means the same whichever features other
/// crates in the build turn on.
macro_rules! sqlite_by_default {
    ($(#[$attr:meta])* pub struct $name:ident<B: Backend> { $($body:tt)* }) => {
        #[cfg(feature = "sqlite")]
        $(#[$attr])*
        pub struct $name<B: Backend = Sqlite> { $($body)* }

        #[cfg(not(feature = "sqlite"))]
        $(#[$attr])*
        pub struct $name<B: Backend> { $($body)* }
    };
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a transaction did not commit, or its result did not arrive.
///
/// A closure given to [`run_interaction`](Database::run_interaction) may
/// return its own error type as long as it converts from `TxError`.
#[derive(Debug)]
#[non_exhaustive]
pub enum TxError {
    /// The database stayed locked by another writer through every retry.
    Busy {
        /// How many times `begin` or `commit` was tried.
        attempts: u32,
        /// The last lock error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The database reported an error (the transaction was rolled back).
    Database(Box<dyn StdError + Send + Sync>),
    /// The transaction's code panicked (it was rolled back; the panic is
    /// logged with the context dump).
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The DB stage's queue is full: the transaction was not started
    /// (admission control; try later or shed the request).
    Overloaded {
        /// The stage's name.
        stage: String,
        /// Its queue bound.
        capacity: usize,
    },
    /// The database was closed: the transaction was not started.
    Closed {
        /// The stage's name.
        stage: String,
    },
    /// The transaction was queued but cancelled before it ran (the
    /// database closed with [`CloseMode::Cancel`]).
    Cancelled {
        /// The stage's name.
        stage: String,
    },
    /// An outbox item of a kind the database has no handler for: it could
    /// never be delivered.
    UnknownKind {
        /// The item's [`OutboxItem::KIND`].
        kind: &'static str,
    },
    /// An outbox item did not serialize.
    Encode {
        /// The item's [`OutboxItem::KIND`].
        kind: &'static str,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// A transaction-only operation outside `run_interaction`, or a
    /// database looked up in a context that has none.
    NotInTransaction(Box<Missing>),
    /// The transaction's own code gave up (rolls back): for closures that
    /// use `TxError` as their error type.
    Aborted(String),
    /// The interaction's code tried a statement that would end or escape
    /// the transaction milieu runs it in (`BEGIN`, `COMMIT`, `ROLLBACK`,
    /// or releasing or rolling back to milieu's own savepoint): refused
    /// before it ran. Inside a batch it would commit or discard the other
    /// interactions' work; returning `Ok` or `Err` is how an interaction
    /// commits or rolls back. See [`Database::run_interaction`].
    Refused {
        /// What was refused.
        statement: &'static str,
    },
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Busy { attempts, source } => {
                write!(
                    f,
                    "database busy: still locked after {attempts} attempts ({source})"
                )
            }
            TxError::Database(e) => write!(f, "database error: {e}"),
            TxError::Panicked { message } => {
                write!(f, "the transaction panicked and was rolled back: {message}")
            }
            TxError::Overloaded { stage, capacity } => write!(
                f,
                "stage `{stage}` is full ({capacity} transactions queued): not started"
            ),
            TxError::Closed { stage } => write!(f, "stage `{stage}` is closed: not started"),
            TxError::Cancelled { stage } => {
                write!(
                    f,
                    "stage `{stage}` closed before the transaction ran: not started"
                )
            }
            TxError::UnknownKind { kind } => write!(
                f,
                "no outbox handler for `{kind}`: register one with DatabaseBuilder::on_delivery"
            ),
            TxError::Encode { kind, source } => {
                write!(f, "outbox item `{kind}` does not serialize: {source}")
            }
            TxError::NotInTransaction(missing) => {
                write!(f, "not inside a transaction: {missing}")
            }
            TxError::Aborted(reason) => write!(f, "transaction aborted: {reason}"),
            TxError::Refused { statement } => write!(
                f,
                "`{statement}` refused inside an interaction: return Ok to commit, Err to roll back"
            ),
        }
    }
}

impl StdError for TxError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            TxError::Busy { source, .. } => Some(source.as_ref()),
            TxError::Database(e) => Some(e.as_ref()),
            TxError::Encode { source, .. } => Some(source),
            TxError::NotInTransaction(missing) => Some(missing.as_ref()),
            _ => None,
        }
    }
}

impl From<Missing> for TxError {
    fn from(missing: Missing) -> Self {
        TxError::NotInTransaction(Box::new(missing))
    }
}

impl TxError {
    /// Whether another writer holding the lock caused this.
    pub fn is_busy(&self) -> bool {
        matches!(self, TxError::Busy { .. })
    }

    /// A backend's error: [`Busy`](TxError::Busy) when it is lock
    /// contention (retried), [`Database`](TxError::Database) otherwise.
    fn from_backend(error: Box<dyn StdError + Send + Sync>, busy: bool) -> Self {
        if busy {
            TxError::Busy {
                attempts: 1,
                source: error,
            }
        } else {
            TxError::Database(error)
        }
    }

    /// The same error again, for each interaction of a batch that fails
    /// as a whole (sources become their messages: they are not `Clone`).
    fn for_each_of_batch(&self) -> Self {
        let again = |source: &(dyn StdError + Send + Sync)| -> Box<dyn StdError + Send + Sync> {
            source.to_string().into()
        };
        match self {
            TxError::Busy { attempts, source } => TxError::Busy {
                attempts: *attempts,
                source: again(source.as_ref()),
            },
            TxError::Database(source) => TxError::Database(again(source.as_ref())),
            TxError::Panicked { message } => TxError::Panicked {
                message: message.clone(),
            },
            TxError::Refused { statement } => TxError::Refused { statement },
            other => TxError::Aborted(other.to_string()),
        }
    }

    fn from_stage(error: StageError) -> Self {
        match error {
            StageError::Panicked { message, .. } => TxError::Panicked { message },
            StageError::Cancelled { stage } => TxError::Cancelled { stage },
            other => TxError::Aborted(other.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------
// Retry
// ---------------------------------------------------------------------------

/// How long a worker keeps trying to take the write lock.
///
/// `begin` (and `commit`) that meet a lock held by another writer are
/// retried after `first_delay`, doubling up to `max_delay`, `attempts`
/// times in all; then [`TxError::Busy`]. The worker thread sleeps between
/// attempts: it is a DB thread, the reactor is not blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, at least 1.
    pub attempts: u32,
    /// The wait after the first failure.
    pub first_delay: Duration,
    /// The longest wait between two tries.
    pub max_delay: Duration,
}

impl Default for Retry {
    /// 10 tries, 1 ms doubling to 100 ms: about 0.4 s in all.
    fn default() -> Self {
        Retry {
            attempts: 10,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(100),
        }
    }
}

impl Retry {
    fn run<T>(&self, mut op: impl FnMut() -> Result<T, TxError>) -> Result<T, TxError> {
        let attempts = self.attempts.max(1);
        let mut delay = self.first_delay;
        let mut tried = 0;
        loop {
            tried += 1;
            match op() {
                Err(TxError::Busy { source, .. }) if tried >= attempts => {
                    return Err(TxError::Busy {
                        attempts: tried,
                        source,
                    })
                }
                Err(TxError::Busy { .. }) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(self.max_delay);
                }
                other => return other,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tx
// ---------------------------------------------------------------------------

sqlite_by_default! {
    /// The open transaction: dereferences to the worker's connection
    /// (`rusqlite::Connection` for `Sqlite`, `PgConnection` for `Postgres`), on
    /// which a transaction is open.
    ///
    /// A local context entry of the transaction's code (`milieu::get::<Tx>()`
    /// finds it at any depth); it does not cross hops, so it cannot leave the
    /// DB thread. Do not commit or roll back by hand: returning `Ok` commits,
    /// an error or a panic rolls back. The transaction may be shared with
    /// the other interactions of a batch (see
    /// [`Database::run_interaction`]), so `BEGIN`, `COMMIT`, `END`,
    /// `ROLLBACK` and statements on milieu's savepoint are refused with
    /// [`TxError::Refused`] on SQLite (not interceptable on PostgreSQL: do
    /// not send them).
    pub struct Tx<B: Backend> {
        conn: Rc<B::Connection>,
        stage: Arc<str>,
    }
}

impl<B: Backend> Deref for Tx<B> {
    type Target = B::Connection;

    fn deref(&self) -> &B::Connection {
        &self.conn
    }
}

impl<B: Backend> fmt::Debug for Tx<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tx({})", self.stage)
    }
}

// ---------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------

sqlite_by_default! {
    /// A database: a DB stage whose workers run whole transactions.
    ///
    /// Cheap to clone; install it in the context (`milieu::scope().with(db)`)
    /// so handlers find it. See the [module docs](self) for an example.
    pub struct Database<B: Backend> {
        inner: Arc<DbInner<B>>,
    }
}

impl<B: Backend> Clone for Database<B> {
    fn clone(&self) -> Self {
        Database {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What every clone of a [`Database`] points to: the DB stage, and what
/// its workers and the deliveries need.
struct DbInner<B: Backend> {
    stage: Stage<DbJob<B>, ()>,
    settings: Arc<DbSettings<B>>,
    /// The file's owner lock (see [`DatabaseBuilder::exclusive`]), held
    /// until the last handle drops.
    _owner: Option<owner::OwnerLock>,
}

/// What `open` fixed, shared by the DB workers and the deliveries (never
/// the stage itself, so dropping the last `Database` closes the stage).
struct DbSettings<B: Backend> {
    backend: B,
    stage_name: Arc<str>,
    retry: Retry,
    handlers: Arc<Handlers>,
    reactor: Handle,
    /// How long delivered outbox rows are kept (`None`: forever).
    keep_delivered: Option<Duration>,
    /// Set once the stage exists: deliveries mark rows through it.
    db: OnceLock<Weak<DbInner<B>>>,
}

/// How long delivered outbox rows are kept unless
/// [`DatabaseBuilder::keep_delivered`] says otherwise.
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How often a DB worker that marks rows delivered also prunes the old
/// ones, at most.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// Rows one prune statement deletes at most: the statement looks at this
/// many of the oldest delivered rows.
const PRUNE_BATCH: usize = 1000;
/// Statements one prune of a worker runs at most (it stops sooner when a
/// statement deletes less than a full batch): 10,000 rows a second at
/// most, so a worker never spends long on it.
const PRUNE_STATEMENTS: usize = 10;

/// One unit of work queued on the DB stage.
enum DbJob<B: Backend> {
    /// A `run_interaction`: committed with the interactions queued next
    /// to it, unless it asked to run alone.
    Interaction { run: Interaction, alone: bool },
    /// Outbox rows delivered and to be marked so: the marks that meet in
    /// one batch are written with one statement.
    Mark(Vec<OutboxId>),
    /// Work of its own on the worker's connection, alone (the recovery
    /// read at open).
    Task(Task<B>),
}

/// Work of its own on a worker's connection.
type Task<B> = Box<dyn FnOnce(&mut DbWorker<B>) + Send>;

impl<B: Backend> DbJob<B> {
    /// Whether the stage must hand this job to a worker by itself.
    fn runs_alone(&self) -> bool {
        match self {
            DbJob::Interaction { alone, .. } => *alone,
            DbJob::Mark(_) => false,
            DbJob::Task(_) => true,
        }
    }
}

/// An interaction with its types erased. Given `Ok`, runs the caller's
/// closure (with `Tx` and `Outbox` in the context), catching its panic,
/// and says whether it wants to commit; the caller is answered later,
/// through [`Ran::answer`], once the batch's fate is known. Given `Err`
/// (the batch failed before its turn), answers the caller with that error
/// at once without running the closure.
type Interaction = Box<dyn FnOnce(Result<(), TxError>) -> Option<Ran> + Send>;

/// What an interaction did.
struct Ran {
    /// `Ok` from the closure: it commits with its batch.
    succeeded: bool,
    /// Answers the caller: with its value, or with `failure` (the batch's
    /// error) if the batch did not commit. An interaction that failed by
    /// itself answers with its own error either way.
    answer: Box<dyn FnOnce(Option<TxError>)>,
}

/// One DB stage worker: its connection, opened on first use and reopened
/// after a failure left it in doubt.
struct DbWorker<B: Backend> {
    settings: Arc<DbSettings<B>>,
    conn: Option<Rc<B::Connection>>,
    /// When this worker may next prune delivered rows.
    next_prune: Instant,
}

/// Options of a [`Database`] (from [`Database::builder`]).
pub struct DatabaseBuilder<B: Backend> {
    backend: B,
    name: Option<String>,
    workers: usize,
    capacity: usize,
    retry: Retry,
    max_batch: usize,
    max_batch_wait: Duration,
    reactor: Option<Handle>,
    handlers: Handlers,
    keep_delivered: Option<Duration>,
    exclusive: bool,
}

impl<B: Backend> fmt::Debug for DatabaseBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseBuilder")
            .field("backend", &self.backend.name())
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("retry", &self.retry)
            .field("max_batch", &self.max_batch)
            .field("max_batch_wait", &self.max_batch_wait)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("keep_delivered", &self.keep_delivered)
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

/// Why [`DatabaseBuilder::open`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// No reactor to deliver outbox items on: none was given and none is
    /// in the context.
    NoReactor(Box<Missing>),
    /// A setting the backend cannot honour.
    Config(String),
    /// The DB stage could not start.
    Stage(crate::stage::StageBuildError),
    /// Connecting, preparing the outbox table or reading undelivered rows
    /// failed.
    Database(TxError),
    /// Another open [`Database`] owns the file, in this process or in
    /// another one (see [`DatabaseBuilder::exclusive`]).
    InUse {
        /// The owner's lock file, beside the database.
        lock: PathBuf,
        /// The owner's process id, as it wrote it into the lock file
        /// (`None` if it could not be read).
        holder: Option<u32>,
    },
    /// The owner lock could not be taken: its file beside the database
    /// cannot be created or locked.
    Lock {
        /// The lock file.
        lock: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NoReactor(missing) => write!(
                f,
                "no reactor to deliver the outbox on: open the database in a reactor's \
                 context or pass DatabaseBuilder::reactor ({missing})"
            ),
            OpenError::Config(why) => write!(f, "invalid database settings: {why}"),
            OpenError::Stage(e) => write!(f, "cannot start the DB stage: {e}"),
            OpenError::Database(e) => write!(f, "cannot open the database: {e}"),
            OpenError::InUse { lock, holder } => {
                f.write_str("the database is open in another milieu Database (")?;
                match holder {
                    Some(pid) => write!(f, "process {pid}")?,
                    None => f.write_str("another process")?,
                }
                write!(
                    f,
                    " holds {}): both would deliver its undelivered outbox items; stop the \
                     other one or give each its own file",
                    lock.display()
                )
            }
            OpenError::Lock { lock, error } => {
                write!(f, "cannot take the owner lock {}: {error}", lock.display())
            }
        }
    }
}

impl StdError for OpenError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            OpenError::NoReactor(missing) => Some(missing.as_ref()),
            OpenError::Stage(e) => Some(e),
            OpenError::Database(e) => Some(e),
            OpenError::Lock { error, .. } => Some(error),
            OpenError::Config(_) | OpenError::InUse { .. } => None,
        }
    }
}

impl<B: Backend> DatabaseBuilder<B> {
    /// The DB stage's name, shown in hops and figures (default `db`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Worker threads, each with its own connection (default 1; SQLite
    /// serialises writers anyway, an in-memory database allows only 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// The DB stage's queue bound (default 1024): more queued
    /// transactions are refused with [`TxError::Overloaded`].
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How lock contention is retried (default [`Retry::default`]).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Group commit: at most this many interactions share one database
    /// transaction and one commit (default 64). A worker takes the
    /// interaction at the head of the queue and those queued behind it,
    /// runs each in its own savepoint, and commits once; see
    /// [`Database::run_interaction`] for what that means. `1` switches
    /// group commit off: one transaction per interaction. 0 counts as 1.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use std::time::Duration;
    /// use milieu::reactor::Reactor;
    /// use milieu::txn::{Database, Sqlite};
    ///
    /// let reactor = Reactor::new()?;
    /// let db = reactor.context().run(|| {
    ///     Database::builder(Sqlite::memory())
    ///         .max_batch(128)
    ///         // Wait up to 100 µs for a batch to fill (default: no wait).
    ///         .max_batch_wait(Duration::from_micros(100))
    ///         .open()
    /// })?;
    /// # drop(db);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_batch(mut self, interactions: usize) -> Self {
        self.max_batch = interactions.max(1);
        self
    }

    /// How long a batch that is not full may wait for more interactions
    /// after its first (default zero: a worker takes what is queued when
    /// it looks and goes). A wait adds up to this much latency to every
    /// batch's first interaction in exchange for fuller batches under a
    /// light load.
    pub fn max_batch_wait(mut self, wait: Duration) -> Self {
        self.max_batch_wait = wait;
        self
    }

    /// The reactor outbox items are delivered on (default: the one in the
    /// context at [`open`](DatabaseBuilder::open)).
    pub fn reactor(mut self, reactor: Handle) -> Self {
        self.reactor = Some(reactor);
        self
    }

    /// How long an outbox row is kept once it is marked delivered (default
    /// 7 days); after that the DB workers delete it, so the outbox table
    /// holds the rows still to deliver and the recent history, not every
    /// item ever pushed.
    ///
    /// A worker that marks rows delivered also deletes, at most once a
    /// second, the oldest delivered rows whose mark is older than `keep`:
    /// up to 1,000 rows a statement and 10,000 a second, each statement
    /// looking only at the 1,000 oldest delivered rows (through the
    /// primary key), so its cost does not grow with the table. Rows not
    /// yet delivered are never deleted, and ids are never reused (SQLite's
    /// `AUTOINCREMENT`, PostgreSQL's sequence), so a consumer that
    /// de-duplicates by [`OutboxId`] is not misled. A service that stops
    /// delivering keeps its last rows until it delivers again or
    /// [`Database::prune_delivered`] runs. SQLite counts whole seconds.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use std::time::Duration;
    /// use milieu::reactor::Reactor;
    /// use milieu::txn::{Database, Sqlite};
    ///
    /// let reactor = Reactor::new()?;
    /// let db = reactor.context().run(|| {
    ///     Database::builder(Sqlite::memory())
    ///         // Delivered rows are deleted after a day.
    ///         .keep_delivered(Duration::from_secs(24 * 60 * 60))
    ///         .open()
    /// })?;
    /// # drop(db);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keep_delivered(mut self, keep: Duration) -> Self {
        self.keep_delivered = Some(keep);
        self
    }

    /// Keeps every delivered outbox row: the workers never delete any
    /// (see [`keep_delivered`](DatabaseBuilder::keep_delivered)), and the
    /// table grows with every item pushed. For a service whose own jobs
    /// archive or delete the rows.
    pub fn keep_delivered_forever(mut self) -> Self {
        self.keep_delivered = None;
        self
    }

    /// Whether this `Database` must be the only one open on its file
    /// (default `true`; only a SQLite file has one).
    ///
    /// Two `Database`s on one file, in two processes started on the same
    /// data directory or twice in one process, would each deliver at open
    /// the outbox items the other committed and has not delivered yet:
    /// those items twice. So [`open`](DatabaseBuilder::open) takes an
    /// advisory lock on a file beside the database,
    /// `<file>-milieu.lock`, holds it until the last handle drops, and
    /// fails with [`OpenError::InUse`], naming the holder's process id,
    /// while another holds it. The system releases the lock when its
    /// holder exits, even by a crash: nothing stale is left to clean up.
    ///
    /// `exclusive(false)` opens without the lock, for a program that knows
    /// a second delivery of the same item is harmless to it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use milieu::reactor::Reactor;
    /// use milieu::txn::{Database, OpenError, Sqlite};
    ///
    /// let dir = std::env::temp_dir().join(format!("milieu-doc-exclusive-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let file = dir.join("app.db");
    /// let reactor = Reactor::new()?;
    /// let first = reactor.context().run(|| Database::builder(Sqlite::file(&file)).open())?;
    /// let second = reactor.context().run(|| Database::builder(Sqlite::file(&file)).open());
    /// assert!(matches!(second, Err(OpenError::InUse { holder: Some(pid), .. }) if pid == std::process::id()));
    /// drop(first);
    /// // The lock is free again once the first one's handles are dropped.
    /// let again = reactor.context().run(|| Database::builder(Sqlite::file(&file)).open())?;
    /// # drop(again);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Registers the handler of `T` items: called on the reactor thread
    /// for each item a committed transaction pushed (and for items found
    /// undelivered at open). A later registration for the same kind
    /// replaces the earlier one.
    pub fn on_delivery<T, F>(mut self, handler: F) -> Self
    where
        T: OutboxItem,
        F: Fn(Delivery<T>) + Send + Sync + 'static,
    {
        self.handlers.insert(T::KIND, outbox::erase(handler));
        self
    }

    /// Starts the DB stage, connects, and schedules the delivery of every
    /// item left undelivered by an earlier process.
    ///
    /// Blocks until the first worker has connected (a startup step: errors
    /// such as a bad path or an unreachable server are reported here).
    ///
    /// # Errors
    ///
    /// See [`OpenError`].
    #[track_caller]
    pub fn open(self) -> Result<Database<B>, OpenError> {
        let reactor = match self.reactor {
            Some(reactor) => reactor,
            None => Handle::current().map_err(|m| OpenError::NoReactor(Box::new(m)))?,
        };
        if let Some(max) = self.backend.max_workers() {
            if self.workers > max {
                return Err(OpenError::Config(format!(
                    "{} allows at most {max} worker(s) here, {} asked",
                    self.backend.name(),
                    self.workers
                )));
            }
        }
        // Before anything connects: a second owner must not even read the
        // undelivered rows.
        let owner = match self.backend.owned_file() {
            Some(file) if self.exclusive => Some(owner::claim(file).map_err(|e| match e {
                owner::ClaimError::Held { lock, holder } => OpenError::InUse { lock, holder },
                owner::ClaimError::Io { lock, error } => OpenError::Lock { lock, error },
            })?),
            _ => None,
        };
        let stage_name: Arc<str> = self.name.unwrap_or_else(|| "db".to_owned()).into();
        let settings = Arc::new(DbSettings {
            backend: self.backend,
            stage_name: Arc::clone(&stage_name),
            retry: self.retry,
            handlers: Arc::new(self.handlers),
            reactor,
            keep_delivered: self.keep_delivered,
            db: OnceLock::new(),
        });
        let for_workers = Arc::clone(&settings);
        let batching = Batching::new(self.max_batch)
            .max_wait(self.max_batch_wait)
            .alone_when(DbJob::runs_alone);
        let stage = Stage::builder(stage_name.to_string())
            .capacity(self.capacity)
            .workers(self.workers)
            .build_batched_with(batching, move || {
                let mut worker = DbWorker {
                    settings: Arc::clone(&for_workers),
                    conn: None,
                    next_prune: Instant::now(),
                };
                move |jobs: Vec<Batched<DbJob<B>>>| worker.run_batch(jobs)
            })
            .map_err(OpenError::Stage)?;
        let inner = Arc::new(DbInner {
            stage,
            settings,
            _owner: owner,
        });
        let _ = inner.settings.db.set(Arc::downgrade(&inner));
        let db = Database { inner };

        // Recovery: connect on a worker and read what an earlier process
        // committed but did not deliver.
        let (done, wait) = std::sync::mpsc::channel();
        // The answer comes through `done`; the submission's own result
        // (a panic, a cancel) shows as `done` hanging up.
        drop(
            db.submit_job(DbJob::Task(Box::new(move |worker: &mut DbWorker<B>| {
                let found = worker.connection().and_then(|conn| B::undelivered(&conn));
                let _ = done.send(found);
            })))
            .map_err(OpenError::Database)?,
        );
        let undelivered = wait
            .recv()
            .map_err(|_| OpenError::Database(TxError::Aborted("the DB worker stopped".into())))?
            .map_err(OpenError::Database)?;
        if !undelivered.is_empty() {
            tracing::info!(
                target: "milieu::txn",
                stage = %stage_name,
                count = undelivered.len(),
                "delivering outbox items left undelivered by an earlier process"
            );
            let settings = Arc::clone(&db.inner.settings);
            db.inner
                .settings
                .reactor
                .call_from_thread(move || deliver(&settings, undelivered, true));
        }
        Ok(db)
    }
}

impl<B: Backend> Database<B> {
    /// Starts configuring a database on `backend` (`Sqlite::file(path)`,
    /// `Sqlite::memory()`, `Postgres::new(config)`);
    /// [`open`](DatabaseBuilder::open) starts it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use milieu::reactor::Reactor;
    /// use milieu::txn::{Database, Sqlite, TxError};
    ///
    /// let mut reactor = Reactor::new()?;
    /// // Outbox items are delivered on the reactor found in the context.
    /// let db = reactor
    ///     .context()
    ///     .run(|| Database::builder(Sqlite::memory()).name("orders-db").open())?;
    /// let answer = db.run_interaction(|tx| {
    ///     let n: i64 = tx.query_row("SELECT 6 * 7", [], |row| row.get(0))?;
    ///     Ok::<_, TxError>(n)
    /// });
    /// assert_eq!(reactor.run_until(answer)??, 42);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(backend: B) -> DatabaseBuilder<B> {
        DatabaseBuilder {
            backend,
            name: None,
            workers: 1,
            capacity: 1024,
            retry: Retry::default(),
            max_batch: 64,
            max_batch_wait: Duration::ZERO,
            reactor: None,
            handlers: Handlers::new(),
            keep_delivered: Some(KEEP_DELIVERED),
            exclusive: true,
        }
    }

    /// The database installed in the current context.
    ///
    /// # Errors
    ///
    /// [`Missing`] when none is (the report lists what is).
    #[track_caller]
    pub fn current() -> Result<Database<B>, Missing> {
        crate::get::<Database<B>>().map(|db| (*db).clone())
    }

    /// Runs `f` as one transaction on a DB stage worker, in the context
    /// current here (a stage hop is recorded), with [`Tx`] and [`Outbox`]
    /// in the context inside.
    ///
    /// `Ok` commits, then the outbox items are delivered on the reactor
    /// thread; `Err` or a panic rolls back and releases nothing. The
    /// transaction is queued now: dropping the future does not cancel it
    /// (what commits stays committed and is delivered), it only discards
    /// the result. The future resolves where it is awaited (on the reactor
    /// thread in a reactor task).
    ///
    /// # Group commit
    ///
    /// When several interactions are queued, a worker runs up to
    /// [`max_batch`](DatabaseBuilder::max_batch) of them, in queue order,
    /// in **one** database transaction on its connection, each inside a
    /// savepoint of its own, and ends the batch with one `COMMIT` (one
    /// fsync). So:
    ///
    /// - The result is serializable in batch order: each interaction sees
    ///   the writes of those before it in the batch, and nothing of the
    ///   batch is visible to other connections before the commit.
    /// - An interaction that returns `Err` or panics is rolled back to its
    ///   savepoint and fails alone; the others go on and commit.
    /// - Only after the commit is each caller answered, each outbox
    ///   released and each [`Outbox::on_commit`] callback run. If the
    ///   commit fails (after [`Retry`]), every interaction of the batch
    ///   gets the error and nothing of the batch is released.
    /// - Statements that would end or escape the batch's transaction
    ///   (`BEGIN`, `COMMIT`, `END`, `ROLLBACK`, and releasing or rolling
    ///   back to milieu's own savepoint) are refused with
    ///   [`TxError::Refused`] on SQLite; with PostgreSQL they cannot be
    ///   intercepted, and a batch whose savepoint they destroyed fails as a
    ///   whole. Such statements are refused in interactions that run alone
    ///   too: returning is how an interaction commits.
    /// - A batch waits for nothing that is not already queued (unless
    ///   [`max_batch_wait`](DatabaseBuilder::max_batch_wait) says so); a
    ///   slow interaction delays the interactions of its own batch only,
    ///   never those taken by other workers. Long work, or work that must
    ///   not share a transaction, goes through
    ///   [`run_interaction_alone`](Database::run_interaction_alone).
    ///
    /// # Errors
    ///
    /// `f`'s error, or one converted from [`TxError`]: the stage full or
    /// closed, the lock busy beyond [`Retry`], a database error, a panic,
    /// a refused statement, or the batch's commit failing.
    #[track_caller]
    pub fn run_interaction<R, E, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, E>> + Send + 'static
    where
        F: FnOnce(&Tx<B>) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<TxError> + Send + 'static,
    {
        self.interaction(f, false)
    }

    /// Like [`run_interaction`](Database::run_interaction), but in a
    /// transaction of its own: never batched with other interactions.
    /// For long work (it would hold back the interactions of its batch)
    /// and schema changes one prefers to commit by themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use milieu::reactor::Reactor;
    /// use milieu::txn::{Database, Sqlite, TxError};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let db = reactor.context().run(|| Database::builder(Sqlite::memory()).open())?;
    /// let migrated = db.run_interaction_alone(|tx| {
    ///     tx.execute_batch("CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT)")?;
    ///     Ok::<_, TxError>(())
    /// });
    /// reactor.run_until(migrated)??;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run_interaction`](Database::run_interaction).
    #[track_caller]
    pub fn run_interaction_alone<R, E, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, E>> + Send + 'static
    where
        F: FnOnce(&Tx<B>) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<TxError> + Send + 'static,
    {
        self.interaction(f, true)
    }

    #[track_caller]
    fn interaction<R, E, F>(
        &self,
        f: F,
        alone: bool,
    ) -> impl Future<Output = Result<R, E>> + Send + 'static
    where
        F: FnOnce(&Tx<B>) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<TxError> + Send + 'static,
    {
        let (send, receive) = futures_channel::oneshot::channel();
        let run: Interaction = Box::new(move |go: Result<(), TxError>| {
            if let Err(e) = go {
                // The batch failed before this interaction's turn.
                let _ = send.send(Err(E::from(e)));
                return None;
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let tx = crate::get::<Tx<B>>().map_err(TxError::from)?;
                f(&tx)
            }));
            Some(match outcome {
                Ok(Ok(value)) => Ran {
                    succeeded: true,
                    answer: Box::new(move |failure: Option<TxError>| {
                        let _ = send.send(match failure {
                            None => Ok(value),
                            Some(e) => Err(E::from(e)),
                        });
                    }),
                },
                Ok(Err(e)) => Ran {
                    succeeded: false,
                    answer: Box::new(move |_| {
                        let _ = send.send(Err(e));
                    }),
                },
                Err(panic) => {
                    let message = crate::panic::message(&*panic);
                    crate::panic::log(crate::panic::Catcher::Reactor, "transaction", &*panic);
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
                    Ran {
                        succeeded: false,
                        answer: Box::new(move |_| {
                            let _ = send.send(Err(E::from(TxError::Panicked { message })));
                        }),
                    }
                }
            })
        });
        let submitted = self.submit_job(DbJob::Interaction { run, alone });
        async move {
            let submission = submitted.map_err(E::from)?;
            submission
                .await
                .map_err(|e| E::from(TxError::from_stage(e)))?;
            match receive.await {
                Ok(result) => result,
                // The job was dropped without running: the stage cancelled
                // it.
                Err(_) => Err(E::from(TxError::Aborted(
                    "the transaction was dropped unrun".into(),
                ))),
            }
        }
    }

    /// The outbox rows not yet marked delivered (for operators and
    /// tests).
    ///
    /// # Errors
    ///
    /// As [`run_interaction`](Database::run_interaction).
    #[track_caller]
    pub fn undelivered(
        &self,
    ) -> impl Future<Output = Result<Vec<StoredItem>, TxError>> + Send + 'static {
        self.run_interaction(|tx: &Tx<B>| B::undelivered(tx))
    }

    /// Deletes every outbox row marked delivered more than `older_than`
    /// ago, now, in one statement and one transaction of its own; answers
    /// how many went. For operators and tests: the workers prune by
    /// themselves as they deliver (see
    /// [`DatabaseBuilder::keep_delivered`]), looking only at the oldest
    /// rows, where this looks at the whole table (a row delivered late
    /// does not hold back the older ones behind it). Undelivered rows are
    /// never deleted.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "sqlite")] {
    /// use std::time::Duration;
    /// use milieu::reactor::Reactor;
    /// use milieu::txn::{Database, Sqlite};
    ///
    /// let mut reactor = Reactor::new()?;
    /// let db = reactor
    ///     .context()
    ///     .run(|| Database::builder(Sqlite::memory()).open())?;
    /// let pruned = db.prune_delivered(Duration::from_secs(3600));
    /// assert_eq!(reactor.run_until(pruned)??, 0); // nothing delivered yet
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run_interaction`](Database::run_interaction).
    #[track_caller]
    pub fn prune_delivered(
        &self,
        older_than: Duration,
    ) -> impl Future<Output = Result<u64, TxError>> + Send + 'static {
        self.run_interaction_alone(move |tx: &Tx<B>| {
            B::prune_all_delivered_in_transaction(tx, older_than)
        })
    }

    /// The DB stage's figures: queue depth, counts, latency.
    pub fn stats(&self) -> StageStats {
        self.inner.stage.stats()
    }

    /// The DB stage's name.
    pub fn name(&self) -> &str {
        &self.inner.settings.stage_name
    }

    /// Stops accepting transactions, then runs ([`CloseMode::Drain`]) or
    /// cancels ([`CloseMode::Cancel`]) the queued ones and joins the
    /// workers. Deliveries already handed to the reactor still run; rows
    /// they could not mark delivered are delivered again after the next
    /// open.
    ///
    /// # Errors
    ///
    /// When called from one of the database's own workers.
    pub fn close(&self, mode: CloseMode) -> Result<(), crate::stage::CloseError> {
        self.inner.stage.close(mode)
    }

    #[track_caller]
    fn submit_job(&self, job: DbJob<B>) -> Result<crate::stage::Submission<()>, TxError> {
        self.inner.stage.submit(job).map_err(|refused| {
            let stage = self.inner.settings.stage_name.to_string();
            match refused.reason {
                RefuseReason::Full { capacity } => TxError::Overloaded { stage, capacity },
                _ => TxError::Closed { stage },
            }
        })
    }
}

impl<B: Backend> fmt::Debug for Database<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.inner.settings.backend.name())
            .field("stage", &format_args!("{}", self.inner.stage.stats()))
            .finish()
    }
}

impl<B: Backend> DbWorker<B> {
    fn connection(&mut self) -> Result<Rc<B::Connection>, TxError> {
        if let Some(conn) = &self.conn {
            return Ok(Rc::clone(conn));
        }
        let conn = Rc::new(
            self.settings
                .retry
                .run(|| self.settings.backend.connect())?,
        );
        self.conn = Some(Rc::clone(&conn));
        Ok(conn)
    }

    /// One batch taken off the stage: the interactions in one group
    /// commit, the marks in one statement after it; a task (the stage
    /// hands those over by themselves) on its own.
    fn run_batch(&mut self, jobs: Vec<Batched<DbJob<B>>>) -> Vec<()> {
        let answered = vec![(); jobs.len()];
        let mut group = Vec::with_capacity(jobs.len());
        let mut marks = Vec::new();
        for Batched { item, context, .. } in jobs {
            match item {
                DbJob::Interaction { run, .. } => group.push((run, context)),
                DbJob::Mark(ids) => marks.extend(ids),
                DbJob::Task(task) => {
                    self.commit_group(std::mem::take(&mut group));
                    context.run(|| task(self));
                }
            }
        }
        if group.is_empty() {
            if !marks.is_empty() {
                self.mark_delivered(&marks);
            }
        } else {
            // The marks ride in the interactions' transaction: no commit
            // of their own.
            self.commit_group_with_marks(group, &marks);
        }
        if !marks.is_empty() {
            self.prune_if_due();
        }
        answered
    }

    /// Deletes the delivered rows older than the database keeps (see
    /// [`DatabaseBuilder::keep_delivered`]), at most once every
    /// [`PRUNE_EVERY`] and [`PRUNE_STATEMENTS`] statements at a time, in
    /// autocommit (the batch's transaction has ended). A failure is
    /// logged and left for the next prune: the rows stay, nothing is lost.
    fn prune_if_due(&mut self) {
        let Some(keep) = self.settings.keep_delivered else {
            return;
        };
        let now = Instant::now();
        if now < self.next_prune {
            return;
        }
        self.next_prune = now + PRUNE_EVERY;
        let Ok(conn) = self.connection() else {
            return;
        };
        for _ in 0..PRUNE_STATEMENTS {
            match B::prune_delivered(&conn, keep, PRUNE_BATCH) {
                Ok(deleted) if deleted == PRUNE_BATCH => continue,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(
                        target: "milieu::txn",
                        stage = %self.settings.stage_name,
                        "cannot delete old delivered outbox rows (the next prune tries again): {e}"
                    );
                    return;
                }
            }
        }
    }

    fn commit_group(&mut self, interactions: Vec<(Interaction, Context)>) {
        self.commit_group_with_marks(interactions, &[]);
    }

    /// Runs `interactions` in one transaction ended by one commit: each in
    /// a savepoint of its own when there are several, so that one that
    /// fails is undone alone. `marks` (delivered outbox rows) are written
    /// first, in a savepoint too: a failure there loses only the marks
    /// (the rows are delivered again after the next open). After the
    /// commit (or its failure) runs the commit callbacks, hands the
    /// committed outbox rows to the reactor in one delivery, and answers
    /// every caller.
    fn commit_group_with_marks(
        &mut self,
        interactions: Vec<(Interaction, Context)>,
        marks: &[OutboxId],
    ) {
        if interactions.is_empty() {
            return;
        }
        let retry = self.settings.retry;
        let begun = self.connection().and_then(|conn| {
            retry.run(|| B::begin(&conn))?;
            Ok(conn)
        });
        let conn = match begun {
            Ok(conn) => conn,
            Err(e) => {
                for (run, ctx) in interactions {
                    ctx.run(|| run(Err(e.for_each_of_batch())));
                }
                return;
            }
        };
        let mut ran: Vec<(Ran, Rc<Effects>, Context)> = Vec::with_capacity(interactions.len());
        // Set when the transaction itself can no longer be trusted (a
        // savepoint that would not open, release or roll back): the whole
        // batch fails then, and what is left of it does not run.
        let mut in_doubt: Option<TxError> = None;
        let mut marked = false;
        if !marks.is_empty() {
            match Self::mark_in_savepoint(&conn, marks) {
                Ok(wrote) => marked = wrote,
                Err(e) => in_doubt = Some(e),
            }
        }
        // Savepoints keep a failed interaction from taking the others'
        // work (or the marks) with it; one interaction alone needs none:
        // the whole transaction rolls back then.
        let in_savepoints = interactions.len() > 1 || marked;
        for (run, ctx) in interactions {
            if let Some(e) = &in_doubt {
                ctx.run(|| run(Err(e.for_each_of_batch())));
                continue;
            }
            if in_savepoints {
                if let Err(e) = B::savepoint(&conn) {
                    ctx.run(|| run(Err(e.for_each_of_batch())));
                    in_doubt = Some(e);
                    continue;
                }
            }
            let insert_conn = Rc::clone(&conn);
            let effects = Effects::new(
                Box::new(move |kind, payload| B::insert_outbox(&insert_conn, kind, payload)),
                Arc::clone(&self.settings.handlers),
            );
            let tx = Tx::<B> {
                conn: Rc::clone(&conn),
                stage: Arc::clone(&self.settings.stage_name),
            };
            let one = ctx.run(|| {
                crate::scope()
                    .with_local(tx)
                    .because("the open transaction")
                    .with_local(Outbox::new(Rc::clone(&effects)))
                    .because("output released only on commit")
                    .run(|| {
                        B::refuse_transaction_control(&conn, true);
                        let one = run(Ok(()));
                        B::refuse_transaction_control(&conn, false);
                        one
                    })
            });
            let Some(one) = one else { continue };
            if in_savepoints {
                let closed = if one.succeeded {
                    B::release_savepoint(&conn)
                } else {
                    B::rollback_to_savepoint(&conn)
                };
                if let Err(e) = closed {
                    tracing::warn!(
                        target: "milieu::txn",
                        stage = %self.settings.stage_name,
                        "a savepoint of the batch failed ({e}): the whole batch rolls back"
                    );
                    in_doubt = Some(e);
                }
            }
            ran.push((one, effects, ctx));
        }

        // The marks alone are worth a commit too.
        let wants_commit = marked || ran.iter().any(|(one, ..)| one.succeeded);
        let failure = match in_doubt {
            Some(e) => Some(e),
            None if !wants_commit => None,
            None => retry.run(|| B::commit(&conn)).err(),
        };
        if failure.is_some() || !wants_commit {
            self.roll_back(&conn);
        }
        let committed = failure.is_none() && wants_commit;
        let mut released = Vec::new();
        if committed {
            for (one, effects, ctx) in &ran {
                if one.succeeded {
                    released.extend(ctx.run(|| effects.committed()));
                }
            }
        }
        if !released.is_empty() {
            let settings = Arc::clone(&self.settings);
            self.settings
                .reactor
                .call_from_thread(move || deliver(&settings, released, false));
        }
        for (one, _, ctx) in ran {
            let failure = failure.as_ref().map(TxError::for_each_of_batch);
            ctx.run(|| (one.answer)(failure));
        }
    }

    /// Writes `marks` in a savepoint of the open transaction. A failed
    /// `UPDATE` is rolled back to the savepoint and logged (the rows are
    /// delivered again after the next open). `Ok(true)` when the marks
    /// were written; `Err` only when the savepoint itself failed, which
    /// puts the transaction in doubt.
    fn mark_in_savepoint(conn: &B::Connection, marks: &[OutboxId]) -> Result<bool, TxError> {
        B::savepoint(conn)?;
        match B::mark_delivered_in_transaction(conn, marks) {
            Ok(()) => B::release_savepoint(conn).map(|()| true),
            Err(e) => {
                tracing::warn!(target: "milieu::txn", "cannot mark outbox items delivered (they will be delivered again): {e}");
                B::rollback_to_savepoint(conn).map(|()| false)
            }
        }
    }

    /// Marks delivered rows, all in one statement and with the backend's
    /// cheaper durability (see [`Backend::mark_delivered`]).
    fn mark_delivered(&mut self, ids: &[OutboxId]) {
        let retry = self.settings.retry;
        let result = self
            .connection()
            .and_then(|conn| retry.run(|| B::mark_delivered(&conn, ids)));
        if let Err(e) = result {
            tracing::warn!(target: "milieu::txn", "cannot mark outbox items delivered (they will be delivered again): {e}");
        }
    }

    /// Rolls back; a connection that cannot is dropped (closing it rolls
    /// back) and reopened for the next transaction.
    fn roll_back(&mut self, conn: &B::Connection) {
        if let Err(e) = B::rollback(conn) {
            tracing::warn!(target: "milieu::txn", "rollback failed, reconnecting: {e}");
            self.conn = None;
        }
    }
}

/// Runs the handlers of `items` (on the reactor thread: callers reach it
/// with `call_from_thread`), then marks the handled ones delivered through
/// the DB stage.
fn deliver<B: Backend>(settings: &Arc<DbSettings<B>>, items: Vec<StoredItem>, redelivered: bool) {
    let done = outbox::dispatch(&settings.handlers, &items, redelivered);
    if done.is_empty() {
        return;
    }
    let Some(db) = settings.db.get().and_then(Weak::upgrade) else {
        // The database is gone: the rows are delivered again next time.
        return;
    };
    let marked = db.stage.submit(DbJob::Mark(done));
    if marked.is_err() {
        tracing::warn!(
            target: "milieu::txn",
            "DB stage full or closed: delivered outbox items stay unmarked and will be delivered again"
        );
    }
}
