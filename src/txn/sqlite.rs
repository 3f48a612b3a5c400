//! SQLite through `rusqlite` (bundled): the embedded default.
//!
//! A file database runs in WAL mode (readers never block the writer) with
//! `synchronous = FULL` (a commit reported done survives power loss, not
//! only a process crash). Transactions start with `BEGIN IMMEDIATE`, which
//! takes the write lock up front: lock contention then shows at `begin`,
//! where it can be retried, and never half-way through the caller's code.
//! The connection's own busy timeout is zero; [`Retry`](super::Retry) does
//! the waiting, with backoff, and gives up with [`TxError::Busy`].

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use super::backend::{Backend, Sealed, StoredItem};
use super::{OutboxId, TxError};

/// The SQLite backend: a file (WAL mode) or `:memory:`.
///
/// An in-memory database exists once per connection, so its DB stage has
/// exactly one worker.
#[derive(Debug, Clone)]
pub struct Sqlite {
    target: Target,
}

#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    Memory,
}

impl Sqlite {
    /// A database file, created if missing. `":memory:"` means
    /// [`Sqlite::memory`].
    pub fn file(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        if path == Path::new(":memory:") {
            return Sqlite::memory();
        }
        Sqlite {
            target: Target::File(path.to_owned()),
        }
    }

    /// A private in-memory database (gone when the DB stage closes).
    pub fn memory() -> Self {
        Sqlite {
            target: Target::Memory,
        }
    }

    /// The file, if this is a file database.
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File(path) => Some(path),
            Target::Memory => None,
        }
    }
}

impl Sealed for Sqlite {}

impl Backend for Sqlite {
    type Connection = rusqlite::Connection;

    fn name(&self) -> &str {
        "sqlite"
    }

    fn max_workers(&self) -> Option<usize> {
        match self.target {
            Target::Memory => Some(1),
            Target::File(_) => None,
        }
    }

    fn connect(&self) -> Result<rusqlite::Connection, TxError> {
        let conn = match &self.target {
            Target::File(path) => rusqlite::Connection::open(path)?,
            Target::Memory => rusqlite::Connection::open_in_memory()?,
        };
        // Waiting is `Retry`'s job: fail fast on a held lock.
        conn.busy_timeout(std::time::Duration::ZERO)?;
        if matches!(self.target, Target::File(_)) {
            // Switching to WAL needs a moment of exclusive access: another
            // connection opening at the same time may see "busy".
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(target: "milieu::txn", "SQLite refused WAL mode (journal_mode = {mode})");
            }
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS milieu_outbox (
                 id           INTEGER PRIMARY KEY AUTOINCREMENT,
                 kind         TEXT NOT NULL,
                 payload      TEXT NOT NULL,
                 created_at   INTEGER NOT NULL DEFAULT (unixepoch()),
                 delivered_at INTEGER
             );
             CREATE INDEX IF NOT EXISTS milieu_outbox_undelivered
                 ON milieu_outbox (id) WHERE delivered_at IS NULL;",
        )?;
        Ok(conn)
    }

    fn begin(conn: &rusqlite::Connection) -> Result<(), TxError> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    fn commit(conn: &rusqlite::Connection) -> Result<(), TxError> {
        conn.execute_batch("COMMIT")?;
        Ok(())
    }

    fn rollback(conn: &rusqlite::Connection) -> Result<(), TxError> {
        if conn.is_autocommit() {
            // SQLite already rolled back (some errors do that themselves).
            return Ok(());
        }
        conn.execute_batch("ROLLBACK")?;
        Ok(())
    }

    fn insert_outbox(
        conn: &rusqlite::Connection,
        kind: &str,
        payload: &str,
    ) -> Result<OutboxId, TxError> {
        let id = conn
            .prepare_cached(
                "INSERT INTO milieu_outbox (kind, payload) VALUES (?1, ?2) RETURNING id",
            )?
            .query_row((kind, payload), |row| row.get(0))?;
        Ok(OutboxId(id))
    }

    fn undelivered(conn: &rusqlite::Connection) -> Result<Vec<StoredItem>, TxError> {
        let mut stmt = conn.prepare_cached(
            "SELECT id, kind, payload FROM milieu_outbox WHERE delivered_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredItem {
                id: OutboxId(row.get(0)?),
                kind: row.get(1)?,
                payload: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mark_delivered(conn: &rusqlite::Connection, ids: &[OutboxId]) -> Result<(), TxError> {
        Self::begin(conn)?;
        let marked = (|| {
            let mut stmt = conn.prepare_cached(
                "UPDATE milieu_outbox SET delivered_at = unixepoch() WHERE id = ?1 AND delivered_at IS NULL",
            )?;
            for id in ids {
                stmt.execute([id.0])?;
            }
            Ok::<_, TxError>(())
        })();
        match marked {
            Ok(()) => Self::commit(conn),
            Err(e) => {
                let _ = Self::rollback(conn);
                Err(e)
            }
        }
    }
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        TxError::from_backend(Box::new(e), busy)
    }
}
