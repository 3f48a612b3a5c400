//! The outbox: output objects a transaction produces, stored in the same
//! transaction and released to the reactor thread only after it commits.
//!
//! Inside [`run_interaction`](super::Database::run_interaction) an
//! [`Outbox`] is in the context (a local entry: it never leaves the DB
//! thread). [`push`] writes the item as a row of `milieu_outbox` at once,
//! inside the open transaction, so the row commits or rolls back with the
//! caller's own writes. After the commit the worker hands the rows to the
//! reactor thread, which runs the handler registered for the item's
//! [`KIND`](OutboxItem::KIND) and then marks the rows delivered. A process
//! that dies in between leaves the rows unmarked: the next
//! [`open`](super::DatabaseBuilder::open) delivers them again
//! (at-least-once; the [`OutboxId`] lets a consumer drop duplicates).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::backend::StoredItem;
use super::TxError;

/// A stable identifier of one outbox row (its primary key): the same on
/// every delivery of the item, including after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize))]
pub struct OutboxId(pub i64);

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outbox#{}", self.0)
    }
}

/// A type that transactions can push to the outbox.
///
/// Items are stored as JSON under their `KIND`, which must be unique in a
/// database and must not change while undelivered rows of it may exist.
///
/// # Examples
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderPlaced {
///     order: i64,
/// }
///
/// impl milieu::txn::OutboxItem for OrderPlaced {
///     const KIND: &'static str = "order-placed";
/// }
///
/// // Inside a transaction's code:
/// fn placed(order: i64) -> Result<(), milieu::txn::TxError> {
///     milieu::txn::push(&OrderPlaced { order })?;
///     Ok(())
/// }
/// // Outside one there is no outbox:
/// assert!(placed(1).is_err());
/// ```
pub trait OutboxItem: Serialize + DeserializeOwned + Send + 'static {
    /// The name rows of this type are stored and dispatched under.
    const KIND: &'static str;
}

/// One item handed to its handler on the reactor thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<T> {
    /// The row's id: equal across redeliveries.
    pub id: OutboxId,
    /// The item.
    pub item: T,
    /// True when the item is delivered again after a restart: it may have
    /// been delivered before the process stopped.
    pub redelivered: bool,
}

/// A handler with its item type erased: decodes the row, then calls the
/// typed handler; `Err` says why the row could not be decoded.
pub(crate) type ErasedHandler = Box<dyn Fn(&StoredItem, bool) -> Result<(), String> + Send + Sync>;

/// The handlers of a database, by item kind.
pub(crate) type Handlers = HashMap<&'static str, ErasedHandler>;

/// How a transaction's outbox writes one row (the backend's insert on the
/// worker's connection).
pub(crate) type InsertRow = Box<dyn Fn(&str, &str) -> Result<OutboxId, TxError>>;

/// Wraps a typed handler as one that decodes the stored JSON first.
pub(crate) fn erase<T, F>(handler: F) -> ErasedHandler
where
    T: OutboxItem,
    F: Fn(Delivery<T>) + Send + Sync + 'static,
{
    Box::new(move |stored: &StoredItem, redelivered: bool| {
        let item: T = serde_json::from_str(&stored.payload)
            .map_err(|e| format!("{} is not a valid `{}`: {e}", stored.id, T::KIND))?;
        handler(Delivery {
            id: stored.id,
            item,
            redelivered,
        });
        Ok(())
    })
}

/// Runs each item's handler (on the reactor thread); returns the ids that
/// were handled and may be marked delivered.
///
/// An item without a handler, one whose JSON no longer decodes, or whose
/// handler panics stays undelivered: it is logged and delivered again on
/// the next open, never dropped.
pub(crate) fn dispatch(
    handlers: &Handlers,
    items: &[StoredItem],
    redelivered: bool,
) -> Vec<super::OutboxId> {
    let mut done = Vec::with_capacity(items.len());
    for stored in items {
        let Some(handler) = handlers.get(stored.kind.as_str()) else {
            tracing::error!(
                target: "milieu::txn",
                id = %stored.id,
                kind = %stored.kind,
                "no outbox handler for this kind: the item stays undelivered"
            );
            continue;
        };
        match catch_unwind(AssertUnwindSafe(|| handler(stored, redelivered))) {
            Ok(Ok(())) => done.push(stored.id),
            Ok(Err(reason)) => {
                tracing::error!(target: "milieu::txn", id = %stored.id, "{reason}; the item stays undelivered");
            }
            Err(panic) => {
                crate::panic::log(crate::panic::Catcher::Reactor, "outbox handler", &*panic)
            }
        }
    }
    done
}

/// What the open transaction will release if, and only if, it commits:
/// the context entry behind [`push`].
///
/// Found with `milieu::get::<Outbox>()` or [`Outbox::current`] anywhere in
/// the transaction's code.
pub struct Outbox {
    effects: Rc<Effects>,
}

/// The state of one transaction's outbox, shared with its worker.
pub(crate) struct Effects {
    insert: InsertRow,
    kinds: Arc<Handlers>,
    pushed: RefCell<Vec<StoredItem>>,
    on_commit: RefCell<Vec<Box<dyn FnOnce()>>>,
}

impl Effects {
    pub(crate) fn new(insert: InsertRow, kinds: Arc<Handlers>) -> Rc<Self> {
        Rc::new(Effects {
            insert,
            kinds,
            pushed: RefCell::new(Vec::new()),
            on_commit: RefCell::new(Vec::new()),
        })
    }

    /// Called after the commit: runs the commit callbacks, returns the
    /// rows to deliver. A callback that panics is logged and the others
    /// still run: the transaction is committed (in a batch, with others'
    /// work), so its answers and deliveries must go out all the same.
    pub(crate) fn committed(&self) -> Vec<StoredItem> {
        for callback in self.on_commit.take() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(callback)) {
                crate::panic::log(
                    crate::panic::Catcher::Reactor,
                    "on_commit callback",
                    &*panic,
                );
            }
        }
        self.pushed.take()
    }
}

impl Outbox {
    pub(crate) fn new(effects: Rc<Effects>) -> Self {
        Outbox { effects }
    }

    /// The outbox of the transaction running here.
    ///
    /// # Errors
    ///
    /// [`TxError::NotInTransaction`] outside `run_interaction`.
    #[track_caller]
    pub fn current() -> Result<Arc<Outbox>, TxError> {
        crate::get::<Outbox>().map_err(|missing| TxError::NotInTransaction(Box::new(missing)))
    }

    /// Stores `item` in the outbox table in the open transaction; it is
    /// delivered after the commit, never after a rollback.
    ///
    /// # Errors
    ///
    /// [`TxError::UnknownKind`] if the database has no handler for
    /// `T::KIND` (it could never be delivered), [`TxError::Encode`] if the
    /// item does not serialize, a database error if the insert fails
    /// (return it: the transaction then rolls back).
    pub fn push<T: OutboxItem>(&self, item: &T) -> Result<OutboxId, TxError> {
        if !self.effects.kinds.contains_key(T::KIND) {
            return Err(TxError::UnknownKind { kind: T::KIND });
        }
        let payload = serde_json::to_string(item).map_err(|source| TxError::Encode {
            kind: T::KIND,
            source,
        })?;
        let id = (self.effects.insert)(T::KIND, &payload)?;
        self.effects.pushed.borrow_mut().push(StoredItem {
            id,
            kind: T::KIND.to_owned(),
            payload,
        });
        Ok(id)
    }

    /// Runs `f` on the DB thread right after the commit (never on
    /// rollback): cache invalidation and other in-process effects. A
    /// panic in `f` is logged; it changes nothing of what committed.
    pub fn on_commit(&self, f: impl FnOnce() + 'static) {
        self.effects.on_commit.borrow_mut().push(Box::new(f));
    }

    /// How many items this transaction has pushed so far.
    pub fn len(&self) -> usize {
        self.effects.pushed.borrow().len()
    }

    /// Whether this transaction has pushed nothing so far.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("pushed", &self.len())
            .field("on_commit", &self.effects.on_commit.borrow().len())
            .finish()
    }
}

/// Pushes `item` to the outbox of the transaction running here
/// ([`Outbox::push`] on [`Outbox::current`]).
///
/// # Errors
///
/// As [`Outbox::push`], and [`TxError::NotInTransaction`] outside a
/// transaction.
#[track_caller]
pub fn push<T: OutboxItem>(item: &T) -> Result<OutboxId, TxError> {
    Outbox::current()?.push(item)
}
