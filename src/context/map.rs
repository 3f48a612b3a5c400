//! The flattened, type-keyed map every frame carries.
//!
//! Each frame holds the map of *all* entries visible from it, not only the
//! ones it installed, so a lookup is one probe whatever the stack depth. A
//! frame that installs entries copies its parent's map and adds to it; a hop
//! frame shares its parent's map (an `Arc` clone). The copy is O(visible
//! entries), which stays small in practice (a service has tens of context
//! types, not thousands); docs/design.md records the measurements behind
//! this choice.

use std::any::TypeId;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::entry::Entry;

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

type Slot = Option<Arc<Entry>>;

impl EntryMap {
    /// The entry visible for `id`, if any.
    #[inline]
    pub(crate) fn get(&self, id: TypeId) -> Option<&Arc<Entry>> {
        let slots = self.slots.as_deref()?;
        let mask = slots.len() - 1;
        let mut at = hash(id) as usize & mask;
        // Terminates: at most half the slots are full.
        loop {
            match &slots[at] {
                None => return None,
                Some(entry) if entry.type_id == id => return Some(entry),
                Some(_) => at = (at + 1) & mask,
            }
        }
    }

    /// Number of visible entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `self` and `other` are the same table (not merely equal).
    pub(crate) fn same(&self, other: &EntryMap) -> bool {
        match (&self.slots, &other.slots) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// A copy of `self` with the `entries` that `keep` accepts added, each
    /// replacing (shadowing) any entry of the same type.
    pub(crate) fn extended(&self, entries: &[Arc<Entry>], keep: impl Fn(&Entry) -> bool) -> Self {
        let added = entries.iter().filter(|e| keep(e)).count();
        if added == 0 {
            return self.clone();
        }
        let capacity = ((self.len + added) * 2).next_power_of_two().max(4);
        // One allocation: collect straight into the `Arc`, then fill it
        // while it is still unique.
        let mut slots: Arc<[Slot]> = (0..capacity).map(|_| None).collect();
        let mut len = 0;
        if let Some(table) = Arc::get_mut(&mut slots) {
            let new = entries.iter().filter(|e| keep(e));
            for entry in self.values().chain(new) {
                len += insert(table, Arc::clone(entry));
            }
        }
        EntryMap {
            slots: Some(slots),
            len,
        }
    }

    /// Iterates the visible entries in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.slots.as_deref().unwrap_or(&[]).iter().flatten()
    }
}

/// Inserts into a table with room to spare; returns 1 if the entry is new,
/// 0 if it replaced one of the same type.
fn insert(slots: &mut [Slot], entry: Arc<Entry>) -> usize {
    let mask = slots.len() - 1;
    let mut at = hash(entry.type_id) as usize & mask;
    loop {
        match &mut slots[at] {
            slot @ None => {
                *slot = Some(entry);
                return 1;
            }
            Some(old) if old.type_id == entry.type_id => {
                *old = entry;
                return 0;
            }
            Some(_) => at = (at + 1) & mask,
        }
    }
}

#[inline]
fn hash(id: TypeId) -> u64 {
    let mut hasher = TypeIdHasher::default();
    id.hash(&mut hasher);
    hasher.finish()
}

/// A hasher for `TypeId` keys, which are already well-distributed hashes:
/// the value the key writes is used as the hash (as `http::Extensions`
/// does), with a mixing fallback should `TypeId` ever write bytes instead.
#[derive(Default)]
pub(crate) struct TypeIdHasher(u64);

impl Hasher for TypeIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not the path `TypeId` takes today; kept correct (FNV-1a) so a
        // change in std's `Hash for TypeId` costs speed, not correctness.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;
    use std::sync::Arc;

    use super::EntryMap;
    use crate::context::entry::{Entry, Value};

    fn entry(type_id: TypeId, seq: u64) -> Arc<Entry> {
        Arc::new(Entry {
            type_id,
            type_name: "test",
            value: Value::Shared(Arc::new(seq)),
            site: std::panic::Location::caller(),
            seq,
            reason: None,
            debug: None,
        })
    }

    /// Distinct type ids without declaring distinct types by hand.
    fn ids() -> Vec<TypeId> {
        struct K<const N: usize>;
        macro_rules! ids {
            ($($n:literal)*) => { vec![$(TypeId::of::<K<$n>>()),*] };
        }
        ids!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29)
    }

    #[test]
    fn later_entries_shadow_earlier_ones_of_the_same_type() {
        let ids = ids();
        let base = EntryMap::default().extended(&[entry(ids[0], 1), entry(ids[1], 2)], |_| true);
        let top = base.extended(&[entry(ids[0], 3)], |_| true);
        assert_eq!(top.len(), 2);
        assert_eq!(top.get(ids[0]).map(|e| e.seq), Some(3));
        assert_eq!(top.get(ids[1]).map(|e| e.seq), Some(2));
        // The parent map is untouched (copy on write).
        assert_eq!(base.get(ids[0]).map(|e| e.seq), Some(1));
        assert!(top.get(ids[2]).is_none());
    }

    #[test]
    fn many_entries_are_all_found_and_shadowing_replaces() {
        let ids = ids();
        let mut map = EntryMap::default();
        for (seq, id) in ids.iter().enumerate() {
            map = map.extended(&[entry(*id, seq as u64)], |_| true);
            assert_eq!(map.len(), seq + 1);
            let slots = map.slots.as_ref().map_or(0, |s| s.len());
            assert!(slots >= 2 * map.len(), "load factor stays at most 1/2");
        }
        for (seq, id) in ids.iter().enumerate() {
            assert_eq!(map.get(*id).map(|e| e.seq), Some(seq as u64));
        }
        assert_eq!(map.values().count(), ids.len());
        let shadowed = map.extended(&[entry(ids[5], 100)], |_| true);
        assert_eq!(shadowed.len(), ids.len());
        assert_eq!(shadowed.get(ids[5]).map(|e| e.seq), Some(100));
        assert_eq!(
            map.get(ids[5]).map(|e| e.seq),
            Some(5),
            "the original is untouched"
        );
    }

    #[test]
    fn an_empty_map_finds_nothing() {
        assert!(EntryMap::default().get(TypeId::of::<u8>()).is_none());
    }
}
