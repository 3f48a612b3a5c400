//! The one JSON body both roles read: `{"item": "...", "quantity": N}`,
//! strictly (orders' `POST /orders`, stock's `POST /reserve`).

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// An item and a quantity, as a client posts it to orders' `/orders` and
/// orders to stock's `/reserve`: exactly the JSON object
/// `{"item": "...", "quantity": N}`. Anything else is refused when it is
/// read: an array, a scalar, a missing, repeated or unknown field.
#[derive(Debug)]
pub struct LineItem {
    pub item: String,
    pub quantity: u32,
}

/// The fields of a [`LineItem`] as serde derives them.
///
/// The derived deserializer of a struct also takes a sequence of its
/// fields in order, so `["tea", 2]` would be accepted; [`LineItem`]'s own
/// `Deserialize` hands this one only the entries of a JSON object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineItemFields {
    item: String,
    quantity: u32,
}

impl<'de> Deserialize<'de> for LineItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LineItem, D::Error> {
        deserializer.deserialize_map(OnlyAnObject)
    }
}

/// Accepts a map (a JSON object) and nothing else; serde's own message for
/// anything else reads "invalid type: sequence, expected an object ...".
struct OnlyAnObject;

impl<'de> Visitor<'de> for OnlyAnObject {
    type Value = LineItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an object {"item": "...", "quantity": N}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LineItem, A::Error> {
        // The derived code reads the entries as it would from the object
        // itself: it still refuses unknown, repeated and missing fields.
        let LineItemFields { item, quantity } =
            LineItemFields::deserialize(MapAccessDeserializer::new(map))?;
        Ok(LineItem { item, quantity })
    }
}

impl LineItem {
    /// Reads and checks a request body, with the item's surrounding
    /// whitespace trimmed; `Err` says what is wrong, for a 400.
    pub fn from_body(body: &[u8]) -> Result<LineItem, String> {
        let mut line: LineItem =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        line.validate()?;
        line.item = line.item.trim().to_owned();
        Ok(line)
    }

    /// Checks the fields; `Err` says what is wrong.
    fn validate(&self) -> Result<(), String> {
        let item = self.item.trim();
        if item.is_empty() {
            return Err("`item` must not be empty".into());
        }
        if item.len() > 200 {
            return Err("`item` must be at most 200 bytes".into());
        }
        // Items are written to logs and pages: a line break or another
        // control character in one could forge a log line.
        if item.chars().any(char::is_control) {
            return Err("`item` must not contain control characters".into());
        }
        if !(1..=1000).contains(&self.quantity) {
            return Err("`quantity` must be between 1 and 1000".into());
        }
        Ok(())
    }
}
