//! The flattened, type-keyed map a published frame builds on first use.
//!
//! Lookups on the installing thread go through its type index; a frame's
//! map serves everyone else: lookups in a snapshot (`Context::get`) and in
//! an entered snapshot (a wrapped future's frame, a thread's inherited
//! context). It holds every *carried* entry visible from the frame, so a
//! lookup is one probe whatever the chain's depth. It is built once per
//! frame, when first needed, by walking the chain down to the nearest
//! ancestor that already has one; docs/design.md records why.

use std::any::TypeId;
use std::sync::Arc;

use super::entry::Entry;
use super::index::hash;

/// A map from `TypeId` to the entry visible for that type: an
/// open-addressing table (linear probing, load factor at most 1/2) indexed
/// by the `TypeId`'s own hash bits. A hit is usually one probe, whether
/// the map holds 3 entries or 1000.
///
/// The table is immutable and shared: cloning the map is one reference
/// count increment, so a hop frame shares its parent's map.
#[derive(Clone, Default)]
pub(crate) struct EntryMap {
    /// Power-of-two length; `None` when empty (no allocation).
    slots: Option<Arc<[Slot]>>,
    len: usize,
}

/// One visible entry: its key, the entry and its value's address.
///
/// The addresses point into frames of the chain the owning frame keeps
/// alive (itself and its ancestors), which never change once published.
#[derive(Clone, Copy)]
pub(crate) struct Found {
    pub(crate) type_id: TypeId,
    pub(crate) entry: *const Entry,
    pub(crate) value: *const (),
}

type Slot = Option<Found>;

// SAFETY: the addresses point into published frames (immutable, `Sync`)
// that the frame owning the map keeps alive; the map only reads them.
unsafe impl Send for EntryMap {}
unsafe impl Sync for EntryMap {}

impl EntryMap {
    /// The entry visible for `id`, if any.
    #[inline]
    pub(crate) fn get(&self, id: TypeId) -> Option<&Found> {
        let slots = self.slots.as_deref()?;
        let mask = slots.len() - 1;
        let mut at = hash(id) as usize & mask;
        // Terminates: at most half the slots are full.
        loop {
            match &slots[at] {
                None => return None,
                Some(found) if found.type_id == id => return Some(found),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// Number of visible entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A map of `newest` (newest first: the first of each type wins) on
    /// top of `below`. Shares `below`'s table when `newest` is empty.
    pub(crate) fn build(newest: &[Found], below: &EntryMap) -> Self {
        if newest.is_empty() {
            return below.clone();
        }
        let capacity = ((newest.len() + below.len) * 2).next_power_of_two().max(4);
        // One allocation: collect straight into the `Arc`, then fill it
        // while it is still unique.
        let mut slots: Arc<[Slot]> = (0..capacity).map(|_| None).collect();
        let mut len = 0;
        if let Some(table) = Arc::get_mut(&mut slots) {
            for found in newest.iter().chain(below.values()) {
                len += insert_if_absent(table, *found);
            }
        }
        EntryMap {
            slots: Some(slots),
            len,
        }
    }

    /// Iterates the visible entries in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Found> {
        self.slots.as_deref().unwrap_or(&[]).iter().flatten()
    }
}

/// Inserts into a table with room to spare unless the type is already
/// there; returns 1 if it was inserted.
fn insert_if_absent(slots: &mut [Slot], found: Found) -> usize {
    let mask = slots.len() - 1;
    let mut at = hash(found.type_id) as usize & mask;
    loop {
        match &mut slots[at] {
            slot @ None => {
                *slot = Some(found);
                return 1;
            }
            Some(old) if old.type_id == found.type_id => return 0,
            Some(_) => at = (at + 1) & mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;

    use super::{EntryMap, Found};

    fn found(type_id: TypeId, tag: usize) -> Found {
        Found {
            type_id,
            entry: std::ptr::null(),
            value: tag as *const (),
        }
    }

    /// Distinct type ids without declaring distinct types by hand.
    fn ids() -> Vec<TypeId> {
        struct K<const N: usize>;
        macro_rules! ids {
            ($($n:literal)*) => { vec![$(TypeId::of::<K<$n>>()),*] };
        }
        ids!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29)
    }

    fn tag(map: &EntryMap, id: TypeId) -> Option<usize> {
        map.get(id).map(|f| f.value as usize)
    }

    #[test]
    fn newer_entries_shadow_older_ones_of_the_same_type() {
        let ids = ids();
        let base = EntryMap::build(&[found(ids[0], 1), found(ids[1], 2)], &EntryMap::default());
        let top = EntryMap::build(&[found(ids[0], 3)], &base);
        assert_eq!(top.len(), 2);
        assert_eq!(tag(&top, ids[0]), Some(3));
        assert_eq!(tag(&top, ids[1]), Some(2));
        // The map below is untouched.
        assert_eq!(tag(&base, ids[0]), Some(1));
        assert!(top.get(ids[2]).is_none());
        // Within one build, the first of a type wins (newest first).
        let pair = EntryMap::build(&[found(ids[3], 7), found(ids[3], 8)], &EntryMap::default());
        assert_eq!((pair.len(), tag(&pair, ids[3])), (1, Some(7)));
    }

    #[test]
    fn many_entries_are_all_found() {
        let ids = ids();
        let mut map = EntryMap::default();
        for (tag_n, id) in ids.iter().enumerate() {
            map = EntryMap::build(&[found(*id, tag_n + 1)], &map);
            assert_eq!(map.len(), tag_n + 1);
            let slots = map.slots.as_ref().map_or(0, |s| s.len());
            assert!(slots >= 2 * map.len(), "load factor stays at most 1/2");
        }
        for (tag_n, id) in ids.iter().enumerate() {
            assert_eq!(tag(&map, *id), Some(tag_n + 1));
        }
        assert_eq!(map.values().count(), ids.len());
    }

    #[test]
    fn an_empty_build_shares_the_table_below() {
        assert!(EntryMap::default().get(TypeId::of::<u8>()).is_none());
        let ids = ids();
        let base = EntryMap::build(&[found(ids[0], 1)], &EntryMap::default());
        let same = EntryMap::build(&[], &base);
        assert!(std::ptr::eq(
            base.slots.as_deref().unwrap(),
            same.slots.as_deref().unwrap()
        ));
    }
}
