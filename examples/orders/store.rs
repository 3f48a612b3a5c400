//! The orders table and its transactions.
//!
//! Every function here runs inside `run_interaction` on the DB stage's
//! thread and finds the transaction through the context.

use milieu::txn::{OutboxItem, Tx, TxError};
use serde::{Deserialize, Serialize};

use crate::line_item::LineItem;

/// An order as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    pub id: i64,
    pub item: String,
    pub quantity: u32,
}

/// The notification a placed order produces: released only on commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: i64,
    pub item: String,
    pub quantity: u32,
}

impl OutboxItem for OrderPlaced {
    const KIND: &'static str = "order-placed";
}

/// Creates the table if it is missing.
pub fn create_schema() -> Result<(), TxError> {
    milieu::get::<Tx>()?.execute_batch(
        "CREATE TABLE IF NOT EXISTS orders (
             id       INTEGER PRIMARY KEY AUTOINCREMENT,
             item     TEXT NOT NULL,
             quantity INTEGER NOT NULL
         )",
    )?;
    Ok(())
}

/// Stores the order and pushes its notification, in the caller's
/// transaction.
pub fn place(new: &LineItem) -> Result<Order, TxError> {
    let tx = milieu::get::<Tx>()?;
    let item = new.item.trim().to_owned();
    tx.prepare_cached("INSERT INTO orders (item, quantity) VALUES (?1, ?2)")?
        .execute((&item, new.quantity))?;
    let order = Order {
        id: tx.last_insert_rowid(),
        item,
        quantity: new.quantity,
    };
    milieu::txn::push(&OrderPlaced {
        order: order.id,
        item: order.item.clone(),
        quantity: order.quantity,
    })?;
    Ok(order)
}

/// One order by id.
pub fn find(id: i64) -> Result<Option<Order>, TxError> {
    let tx = milieu::get::<Tx>()?;
    let mut stmt = tx.prepare_cached("SELECT id, item, quantity FROM orders WHERE id = ?1")?;
    let mut rows = stmt.query_map([id], row_to_order)?;
    Ok(rows.next().transpose()?)
}

/// The latest `limit` orders, newest first.
pub fn latest(limit: u32) -> Result<Vec<Order>, TxError> {
    let tx = milieu::get::<Tx>()?;
    let mut stmt =
        tx.prepare_cached("SELECT id, item, quantity FROM orders ORDER BY id DESC LIMIT ?1")?;
    let orders = stmt
        .query_map([limit], row_to_order)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(orders)
}

fn row_to_order(row: &rusqlite::Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        id: row.get(0)?,
        item: row.get(1)?,
        quantity: row.get(2)?,
    })
}
