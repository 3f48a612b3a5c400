//! PostgreSQL through the synchronous `postgres` client: the path past one
//! machine (several service processes sharing one database).
//!
//! Transactions run at PostgreSQL's default isolation (read committed).
//! Lock timeouts, serialization failures and deadlocks are
//! [`TxError::Busy`]; `begin` and `commit` are retried with backoff like
//! SQLite's busy lock.

use std::cell::{RefCell, RefMut};
use std::fmt;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls};

use super::backend::{Backend, Sealed, StoredItem};
use super::{OutboxId, TxError};

/// The PostgreSQL backend: a connection string such as
/// `host=127.0.0.1 user=milieu dbname=milieu` or a `postgresql://` URL.
///
/// Connections are plain TCP (`NoTls`): meant for loopback or a private
/// network.
#[derive(Clone)]
pub struct Postgres {
    config: String,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may hold a password.
        f.write_str("Postgres { .. }")
    }
}

impl Postgres {
    /// A database reached with `config` (libpq key/value form or URL).
    pub fn new(config: impl Into<String>) -> Self {
        Postgres {
            config: config.into(),
        }
    }
}

/// A worker's PostgreSQL connection, as [`Tx`](super::Tx) shows it.
///
/// `postgres::Client` needs `&mut` for every query; a transaction's code
/// reaches the connection through a shared context entry, so it borrows
/// the client for each use with [`client`](PgConnection::client).
pub struct PgConnection {
    client: RefCell<Client>,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgConnection { .. }")
    }
}

impl PgConnection {
    /// The client, borrowed for one use.
    ///
    /// # Panics
    ///
    /// If the client is already borrowed (a borrow held across a call
    /// that borrows again).
    pub fn client(&self) -> RefMut<'_, Client> {
        self.client.borrow_mut()
    }

    fn batch(&self, sql: &str) -> Result<(), TxError> {
        self.client().batch_execute(sql)?;
        Ok(())
    }
}

impl Sealed for Postgres {}

impl Backend for Postgres {
    type Connection = PgConnection;

    fn name(&self) -> &str {
        "postgres"
    }

    fn connect(&self) -> Result<PgConnection, TxError> {
        let mut client = Client::connect(&self.config, NoTls)?;
        // The schema is created only when it is missing: `CREATE INDEX IF
        // NOT EXISTS` takes a lock on the table before it looks, and would
        // wait for every transaction writing to the outbox (a worker
        // connecting while another runs a long interaction, or another
        // process's). Looking up the names takes no lock.
        let present: bool = client
            .query_one(
                "SELECT to_regclass('milieu_outbox') IS NOT NULL \
                 AND to_regclass('milieu_outbox_undelivered') IS NOT NULL",
                &[],
            )?
            .get(0);
        if present {
            return Ok(PgConnection {
                client: RefCell::new(client),
            });
        }
        // `CREATE ... IF NOT EXISTS` races with itself in PostgreSQL (two
        // sessions both see no table, one fails on the catalog's unique
        // index): processes and workers starting together take turns
        // under a transaction-scoped advisory lock.
        client.batch_execute(
            "BEGIN;
             SELECT pg_advisory_xact_lock(7262011575447305217);
             CREATE TABLE IF NOT EXISTS milieu_outbox (
                 id           BIGSERIAL PRIMARY KEY,
                 kind         TEXT NOT NULL,
                 payload      TEXT NOT NULL,
                 created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
                 delivered_at TIMESTAMPTZ
             );
             CREATE INDEX IF NOT EXISTS milieu_outbox_undelivered
                 ON milieu_outbox (id) WHERE delivered_at IS NULL;
             COMMIT;",
        )?;
        Ok(PgConnection {
            client: RefCell::new(client),
        })
    }

    fn begin(conn: &PgConnection) -> Result<(), TxError> {
        conn.batch("BEGIN")
    }

    fn commit(conn: &PgConnection) -> Result<(), TxError> {
        conn.batch("COMMIT")
    }

    fn rollback(conn: &PgConnection) -> Result<(), TxError> {
        conn.batch("ROLLBACK")
    }

    fn savepoint(conn: &PgConnection) -> Result<(), TxError> {
        conn.batch("SAVEPOINT milieu_interaction")
    }

    fn release_savepoint(conn: &PgConnection) -> Result<(), TxError> {
        conn.batch("RELEASE SAVEPOINT milieu_interaction")
    }

    fn rollback_to_savepoint(conn: &PgConnection) -> Result<(), TxError> {
        conn.batch("ROLLBACK TO SAVEPOINT milieu_interaction; RELEASE SAVEPOINT milieu_interaction")
    }

    /// PostgreSQL has no hook to refuse a statement before it runs: a
    /// `COMMIT` or `ROLLBACK` sent through [`PgConnection::client`] ends
    /// the transaction, and the batch then finds its savepoint gone and
    /// fails as a whole.
    fn refuse_transaction_control(_conn: &PgConnection, _refuse: bool) {}

    fn insert_outbox(conn: &PgConnection, kind: &str, payload: &str) -> Result<OutboxId, TxError> {
        let row = conn.client().query_one(
            "INSERT INTO milieu_outbox (kind, payload) VALUES ($1, $2) RETURNING id",
            &[&kind, &payload],
        )?;
        Ok(OutboxId(row.get(0)))
    }

    fn undelivered(conn: &PgConnection) -> Result<Vec<StoredItem>, TxError> {
        let rows = conn.client().query(
            "SELECT id, kind, payload FROM milieu_outbox WHERE delivered_at IS NULL ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| StoredItem {
                id: OutboxId(row.get(0)),
                kind: row.get(1),
                payload: row.get(2),
            })
            .collect())
    }

    fn mark_delivered_in_transaction(conn: &PgConnection, ids: &[OutboxId]) -> Result<(), TxError> {
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        conn.client().execute(MARK_DELIVERED, &[&ids])?;
        Ok(())
    }

    /// One `DELETE` of the oldest delivered rows by id, at most `limit`,
    /// those marked more than `keep` ago (the server's clock). The rows
    /// looked at are the `limit` oldest delivered ones, found through the
    /// primary key: the statement's cost does not grow with the table.
    fn prune_delivered_in_transaction(
        conn: &PgConnection,
        keep: Duration,
        limit: usize,
    ) -> Result<usize, TxError> {
        let deleted = conn
            .client()
            .execute(PRUNE_DELIVERED, &[&limit_i64(limit), &keep_seconds(keep)])?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    /// [`prune_delivered_in_transaction`](Backend::prune_delivered_in_transaction)
    /// in a transaction committed with `synchronous_commit = off`, as
    /// [`mark_delivered`](Backend::mark_delivered): a delete lost to a
    /// server crash is made again by the next prune.
    fn prune_delivered(
        conn: &PgConnection,
        keep: Duration,
        limit: usize,
    ) -> Result<usize, TxError> {
        let mut client = conn.client();
        let mut tx = client.transaction()?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        let deleted = tx.execute(PRUNE_DELIVERED, &[&limit_i64(limit), &keep_seconds(keep)])?;
        tx.commit()?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn prune_all_delivered_in_transaction(
        conn: &PgConnection,
        keep: Duration,
    ) -> Result<u64, TxError> {
        Ok(conn.client().execute(
            "DELETE FROM milieu_outbox \
             WHERE delivered_at IS NOT NULL AND delivered_at < now() - make_interval(secs => $1)",
            &[&keep_seconds(keep)],
        )?)
    }

    /// One `UPDATE` for all `ids`, in a transaction committed with
    /// `synchronous_commit = off`: the server answers before its WAL
    /// record is flushed (within a few hundred milliseconds). A server
    /// crash in between may lose the mark, and the item is then delivered
    /// again.
    fn mark_delivered(conn: &PgConnection, ids: &[OutboxId]) -> Result<(), TxError> {
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let mut client = conn.client();
        let mut tx = client.transaction()?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        tx.execute(MARK_DELIVERED, &[&ids])?;
        tx.commit()?;
        Ok(())
    }
}

/// Marks the rows whose ids are `$1` delivered (those not marked yet).
const MARK_DELIVERED: &str =
    "UPDATE milieu_outbox SET delivered_at = now() WHERE id = ANY($1) AND delivered_at IS NULL";

/// Deletes at most `$1` of the oldest delivered rows, those marked more
/// than `$2` seconds ago.
const PRUNE_DELIVERED: &str = "DELETE FROM milieu_outbox \
     WHERE id IN (SELECT id FROM milieu_outbox WHERE delivered_at IS NOT NULL \
                  ORDER BY id LIMIT $1) \
     AND delivered_at < now() - make_interval(secs => $2)";

/// `keep` in seconds for `make_interval`, at most about 3,000 years (an
/// interval of `Duration::MAX` is out of PostgreSQL's range, and nothing
/// older than that exists to delete).
fn keep_seconds(keep: Duration) -> f64 {
    keep.as_secs_f64().min(1e11)
}

/// A row count for a `LIMIT`.
fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        let busy = e.code().is_some_and(|code| {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(code)
        });
        TxError::from_backend(Box::new(e), busy)
    }
}
