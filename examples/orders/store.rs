//! The orders table and its transactions.
//!
//! Every function here runs inside `run_interaction` on the DB stage's
//! thread and finds the transaction through the context.

use std::fmt;

use milieu::txn::{OutboxItem, Tx, TxError};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// An order as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    pub id: i64,
    pub item: String,
    pub quantity: u32,
}

/// What a client posts to `/orders`: exactly the JSON object
/// `{"item": "...", "quantity": N}`. Anything else is refused when it is
/// read: an array, a scalar, a missing, repeated or unknown field.
#[derive(Debug)]
pub struct NewOrder {
    pub item: String,
    pub quantity: u32,
}

/// The fields of a [`NewOrder`] as serde derives them.
///
/// The derived deserializer of a struct also takes a sequence of its
/// fields in order, so `["tea", 2]` would be an order; [`NewOrder`]'s own
/// `Deserialize` hands this one only the entries of a JSON object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderFields {
    item: String,
    quantity: u32,
}

impl<'de> Deserialize<'de> for NewOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NewOrder, D::Error> {
        deserializer.deserialize_map(OnlyAnObject)
    }
}

/// Accepts a map (a JSON object) and nothing else; serde's own message for
/// anything else reads "invalid type: sequence, expected an object ...".
struct OnlyAnObject;

impl<'de> Visitor<'de> for OnlyAnObject {
    type Value = NewOrder;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an object {"item": "...", "quantity": N}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NewOrder, A::Error> {
        // The derived code reads the entries as it would from the object
        // itself: it still refuses unknown, repeated and missing fields.
        let OrderFields { item, quantity } =
            OrderFields::deserialize(MapAccessDeserializer::new(map))?;
        Ok(NewOrder { item, quantity })
    }
}

impl NewOrder {
    /// Checks the fields; `Err` says what is wrong, for a 400 response.
    pub fn validate(&self) -> Result<(), String> {
        let item = self.item.trim();
        if item.is_empty() {
            return Err("`item` must not be empty".into());
        }
        if item.len() > 200 {
            return Err("`item` must be at most 200 bytes".into());
        }
        if !(1..=1000).contains(&self.quantity) {
            return Err("`quantity` must be between 1 and 1000".into());
        }
        Ok(())
    }
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
pub fn place(new: &NewOrder) -> Result<Order, TxError> {
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
