//! What a database must offer `run_interaction` and the outbox.
//!
//! The trait is sealed: the crate ships `Sqlite` (feature `sqlite`) and
//! `Postgres` (feature `postgres`). A backend turns its own errors into
//! [`TxError`], marking lock contention as [`TxError::Busy`] so the caller
//! retries with backoff.

use std::time::Duration;

use super::{OutboxId, TxError};

/// An outbox row as stored: what delivery and recovery read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// The row's id: stable across restarts, so consumers can de-duplicate.
    pub id: OutboxId,
    /// The item type's [`OutboxItem::KIND`](super::OutboxItem::KIND).
    pub kind: String,
    /// The item as JSON.
    pub payload: String,
}

mod sealed {
    use std::path::Path;

    pub trait Sealed {
        /// The file one open `Database` owns at a time (a SQLite file):
        /// `open` takes its owner lock (`txn::owner`). `None`: nothing to
        /// lock (in memory, or a server that serves many clients).
        fn owned_file(&self) -> Option<&Path> {
            None
        }
    }
}
pub(crate) use sealed::Sealed;

/// A database `milieu::txn` can run transactions on (sealed).
///
/// Each DB stage worker opens its own [`Connection`](Backend::Connection)
/// and keeps it for its life; transactions are bracketed with
/// [`begin`](Backend::begin) and [`commit`](Backend::commit) or
/// [`rollback`](Backend::rollback) on it.
pub trait Backend: Sealed + Send + Sync + 'static {
    /// What a transaction's code uses: [`Tx`](super::Tx) dereferences to it.
    type Connection: 'static;

    /// A short name for dumps and errors ("sqlite", "postgres").
    fn name(&self) -> &str;

    /// How many worker threads the DB stage may have (an in-memory SQLite
    /// database exists once per connection, so it allows one).
    fn max_workers(&self) -> Option<usize> {
        None
    }

    /// Opens a connection and prepares the outbox table.
    fn connect(&self) -> Result<Self::Connection, TxError>;

    /// Starts a transaction. Lock contention is [`TxError::Busy`].
    fn begin(conn: &Self::Connection) -> Result<(), TxError>;

    /// Commits. Lock contention is [`TxError::Busy`] and leaves the
    /// transaction open, so the commit may be retried.
    fn commit(conn: &Self::Connection) -> Result<(), TxError>;

    /// Rolls back the open transaction.
    fn rollback(conn: &Self::Connection) -> Result<(), TxError>;

    /// Opens the savepoint an interaction of a batch runs in (one at a
    /// time, so one name serves them all).
    fn savepoint(conn: &Self::Connection) -> Result<(), TxError>;

    /// Keeps the interaction's work: releases its savepoint into the
    /// batch's transaction.
    fn release_savepoint(conn: &Self::Connection) -> Result<(), TxError>;

    /// Undoes the interaction's work and releases its savepoint; the
    /// batch's transaction goes on.
    fn rollback_to_savepoint(conn: &Self::Connection) -> Result<(), TxError>;

    /// While `refuse` is on, statements that would end or escape the open
    /// transaction fail with [`TxError::Refused`] (where the backend can
    /// intercept them: SQLite can, PostgreSQL cannot).
    fn refuse_transaction_control(conn: &Self::Connection, refuse: bool);

    /// Writes one outbox row in the open transaction.
    fn insert_outbox(
        conn: &Self::Connection,
        kind: &str,
        payload: &str,
    ) -> Result<OutboxId, TxError>;

    /// Every row not yet marked delivered, oldest first.
    fn undelivered(conn: &Self::Connection) -> Result<Vec<StoredItem>, TxError>;

    /// Marks rows delivered with one statement, inside the open
    /// transaction (it commits or rolls back with it).
    fn mark_delivered_in_transaction(
        conn: &Self::Connection,
        ids: &[OutboxId],
    ) -> Result<(), TxError>;

    /// Marks rows delivered: one statement in its own short transaction,
    /// committed with a cheaper durability than the interactions' (a
    /// mark lost to a power cut only makes the item delivered again,
    /// which at-least-once allows).
    fn mark_delivered(conn: &Self::Connection, ids: &[OutboxId]) -> Result<(), TxError>;

    /// Deletes, in one statement inside the open transaction, up to
    /// `limit` of the oldest rows (by id) marked delivered more than
    /// `keep` ago; returns how many went. Undelivered rows are never
    /// touched.
    fn prune_delivered_in_transaction(
        conn: &Self::Connection,
        keep: Duration,
        limit: usize,
    ) -> Result<usize, TxError>;

    /// [`prune_delivered_in_transaction`](Backend::prune_delivered_in_transaction)
    /// in its own short transaction, with the cheaper durability of
    /// [`mark_delivered`](Backend::mark_delivered) (a delete lost to a
    /// power cut is made again by the next prune).
    fn prune_delivered(
        conn: &Self::Connection,
        keep: Duration,
        limit: usize,
    ) -> Result<usize, TxError>;

    /// Deletes, inside the open transaction, every row marked delivered
    /// more than `keep` ago, wherever it is in the table (a scan: for
    /// operators, not for the workers); returns how many went.
    fn prune_all_delivered_in_transaction(
        conn: &Self::Connection,
        keep: Duration,
    ) -> Result<u64, TxError>;
}
