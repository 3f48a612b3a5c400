//! SQLite through `rusqlite` (bundled): the embedded default.
//!
//! A file database runs in WAL mode (readers never block the writer) with
//! `synchronous = FULL` (a commit reported done survives power loss, not
//! only a process crash). Transactions start with `BEGIN IMMEDIATE`, which
//! takes the write lock up front: lock contention then shows at `begin`,
//! where it can be retried, and never half-way through the caller's code.
//! The connection's own busy timeout is zero; [`Retry`](super::Retry) does
//! the waiting, with backoff, and gives up with [`TxError::Busy`].

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization, TransactionOperation};
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

/// The savepoint each interaction of a batch runs in.
const SAVEPOINT: &str = "milieu_interaction";

thread_local! {
    /// Whether the interaction's code is running on this DB thread: the
    /// authorizer then refuses transaction control. (The authorizer runs
    /// while a statement is prepared, on the thread preparing it.)
    static REFUSING: Cell<bool> = const { Cell::new(false) };
    /// What the authorizer last refused on this thread, for the error.
    static REFUSED: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// The authorizer of every worker connection: while an interaction's code
/// runs, refuses the statements that would end or escape its transaction.
fn authorize(action: AuthContext<'_>) -> Authorization {
    if !REFUSING.with(Cell::get) {
        return Authorization::Allow;
    }
    let refused = match action.action {
        AuthAction::Transaction { operation } => Some(match operation {
            TransactionOperation::Begin => "BEGIN",
            TransactionOperation::Rollback => "ROLLBACK",
            // SQLite names `COMMIT` and `END` "COMMIT", which rusqlite
            // does not know.
            _ => "COMMIT",
        }),
        AuthAction::Savepoint { savepoint_name, .. }
            if savepoint_name.eq_ignore_ascii_case(SAVEPOINT) =>
        {
            Some("a statement on milieu's savepoint")
        }
        _ => None,
    };
    match refused {
        Some(statement) => {
            REFUSED.with(|last| last.set(Some(statement)));
            Authorization::Deny
        }
        None => Authorization::Allow,
    }
}

impl Sealed for Sqlite {
    fn owned_file(&self) -> Option<&Path> {
        self.path()
    }
}

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
        conn.authorizer(Some(authorize))?;
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

    fn savepoint(conn: &rusqlite::Connection) -> Result<(), TxError> {
        conn.execute_batch("SAVEPOINT milieu_interaction")?;
        Ok(())
    }

    fn release_savepoint(conn: &rusqlite::Connection) -> Result<(), TxError> {
        conn.execute_batch("RELEASE milieu_interaction")?;
        Ok(())
    }

    fn rollback_to_savepoint(conn: &rusqlite::Connection) -> Result<(), TxError> {
        conn.execute_batch("ROLLBACK TO milieu_interaction; RELEASE milieu_interaction")?;
        Ok(())
    }

    fn refuse_transaction_control(_conn: &rusqlite::Connection, refuse: bool) {
        REFUSING.with(|on| on.set(refuse));
        if !refuse {
            REFUSED.with(|last| last.set(None));
        }
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

    /// One `UPDATE` for all `ids` (a JSON array bound once).
    fn mark_delivered_in_transaction(
        conn: &rusqlite::Connection,
        ids: &[OutboxId],
    ) -> Result<(), TxError> {
        let ids = serde_json::to_string(&ids.iter().map(|id| id.0).collect::<Vec<i64>>())
            .map_err(|e| TxError::Database(Box::new(e)))?;
        conn.prepare_cached(
            "UPDATE milieu_outbox SET delivered_at = unixepoch() \
             WHERE delivered_at IS NULL AND id IN (SELECT value FROM json_each(?1))",
        )?
        .execute([&ids])?;
        Ok(())
    }

    /// One `DELETE` of the oldest delivered rows by id, at most `limit`,
    /// those whose mark is older than `keep` in whole seconds (SQLite's
    /// `unixepoch()`; a strict comparison, so a row always outlives
    /// `keep`). The rows looked at are the `limit` oldest delivered ones,
    /// found through the primary key: the statement's cost does not grow
    /// with the table.
    fn prune_delivered_in_transaction(
        conn: &rusqlite::Connection,
        keep: Duration,
        limit: usize,
    ) -> Result<usize, TxError> {
        let deleted = conn
            .prepare_cached(
                "DELETE FROM milieu_outbox \
                 WHERE id IN (SELECT id FROM milieu_outbox WHERE delivered_at IS NOT NULL \
                              ORDER BY id LIMIT ?1) \
                 AND delivered_at < unixepoch() - ?2",
            )?
            .execute((
                i64::try_from(limit).unwrap_or(i64::MAX),
                whole_seconds(keep),
            ))?;
        Ok(deleted)
    }

    /// [`prune_delivered_in_transaction`](Backend::prune_delivered_in_transaction)
    /// in autocommit with `synchronous = NORMAL`, as
    /// [`mark_delivered`](Backend::mark_delivered): a delete lost to a
    /// power cut is made again by the next prune.
    fn prune_delivered(
        conn: &rusqlite::Connection,
        keep: Duration,
        limit: usize,
    ) -> Result<usize, TxError> {
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let pruned = Self::prune_delivered_in_transaction(conn, keep, limit);
        let restored = conn.execute_batch("PRAGMA synchronous = FULL");
        let pruned = pruned?;
        restored?;
        Ok(pruned)
    }

    fn prune_all_delivered_in_transaction(
        conn: &rusqlite::Connection,
        keep: Duration,
    ) -> Result<u64, TxError> {
        let deleted = conn
            .prepare_cached(
                "DELETE FROM milieu_outbox \
                 WHERE delivered_at IS NOT NULL AND delivered_at < unixepoch() - ?1",
            )?
            .execute([whole_seconds(keep)])?;
        Ok(deleted as u64)
    }

    /// The `UPDATE` in autocommit, committed with `synchronous = NORMAL`:
    /// in WAL mode that commit is not synced to disk by itself (the next
    /// `FULL` commit or checkpoint syncs it). A process crash keeps it
    /// (the operating system has the write); a power cut may lose it, and
    /// the item is then delivered again.
    fn mark_delivered(conn: &rusqlite::Connection, ids: &[OutboxId]) -> Result<(), TxError> {
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let marked = Self::mark_delivered_in_transaction(conn, ids);
        let restored = conn.execute_batch("PRAGMA synchronous = FULL");
        marked?;
        restored?;
        Ok(())
    }
}

/// `keep` in whole seconds, rounded up (a row is never pruned early),
/// for SQLite's integer timestamps.
fn whole_seconds(keep: Duration) -> i64 {
    let seconds = keep.as_secs() + u64::from(keep.subsec_nanos() > 0);
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(ErrorCode::AuthorizationForStatementDenied) {
            if let Some(statement) = REFUSED.with(Cell::get) {
                return TxError::Refused { statement };
            }
        }
        let busy = matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        TxError::from_backend(Box::new(e), busy)
    }
}
