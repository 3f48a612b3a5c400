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
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::entry::Entry;

/// Up to this many entries the map is a vector scanned linearly: comparing
/// a handful of `TypeId`s is faster than hashing, and copying a short vector
/// is one allocation.
const SMALL: usize = 16;

/// A map from `TypeId` to the entry visible for that type.
#[derive(Clone, Default)]
pub(crate) struct EntryMap {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Small(Vec<(TypeId, Arc<Entry>)>),
    Large(HashMap<TypeId, Arc<Entry>, BuildHasherDefault<TypeIdHasher>>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Small(Vec::new())
    }
}

impl EntryMap {
    /// The entry visible for `id`, if any.
    #[inline]
    pub(crate) fn get(&self, id: TypeId) -> Option<&Arc<Entry>> {
        match &self.repr {
            Repr::Small(items) => items.iter().find(|(k, _)| *k == id).map(|(_, e)| e),
            Repr::Large(map) => map.get(&id),
        }
    }

    /// Number of visible entries.
    pub(crate) fn len(&self) -> usize {
        match &self.repr {
            Repr::Small(items) => items.len(),
            Repr::Large(map) => map.len(),
        }
    }

    /// A copy of `self` with `entries` added, each replacing (shadowing) any
    /// entry of the same type.
    pub(crate) fn extended<'a>(&self, entries: impl IntoIterator<Item = &'a Arc<Entry>>) -> Self {
        let mut out = self.clone();
        for entry in entries {
            out.insert(Arc::clone(entry));
        }
        out
    }

    /// Iterates the visible entries in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<Entry>> {
        let (small, large) = match &self.repr {
            Repr::Small(items) => (Some(items.iter().map(|(_, e)| e)), None),
            Repr::Large(map) => (None, Some(map.values())),
        };
        small
            .into_iter()
            .flatten()
            .chain(large.into_iter().flatten())
    }

    fn insert(&mut self, entry: Arc<Entry>) {
        let id = entry.type_id;
        match &mut self.repr {
            Repr::Small(items) => {
                if let Some(slot) = items.iter_mut().find(|(k, _)| *k == id) {
                    slot.1 = entry;
                } else if items.len() < SMALL {
                    items.push((id, entry));
                } else {
                    let mut map: HashMap<_, _, _> = items.drain(..).collect();
                    map.insert(id, entry);
                    self.repr = Repr::Large(map);
                }
            }
            Repr::Large(map) => {
                map.insert(id, entry);
            }
        }
    }
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

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;
    use std::sync::Arc;

    use super::{EntryMap, Repr, SMALL};
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
        let base = EntryMap::default().extended(&[entry(ids[0], 1), entry(ids[1], 2)]);
        let top = base.extended(&[entry(ids[0], 3)]);
        assert_eq!(top.len(), 2);
        assert_eq!(top.get(ids[0]).map(|e| e.seq), Some(3));
        assert_eq!(top.get(ids[1]).map(|e| e.seq), Some(2));
        // The parent map is untouched (copy on write).
        assert_eq!(base.get(ids[0]).map(|e| e.seq), Some(1));
        assert!(top.get(ids[2]).is_none());
    }

    #[test]
    fn grows_from_vector_to_hash_map_without_losing_entries() {
        let ids = ids();
        let mut map = EntryMap::default();
        for (seq, id) in ids.iter().enumerate() {
            map = map.extended(&[entry(*id, seq as u64)]);
            let small = matches!(map.repr, Repr::Small(_));
            assert_eq!(
                small,
                seq < SMALL,
                "representation after {} entries",
                seq + 1
            );
        }
        assert_eq!(map.len(), ids.len());
        for (seq, id) in ids.iter().enumerate() {
            assert_eq!(map.get(*id).map(|e| e.seq), Some(seq as u64));
        }
        assert_eq!(map.values().count(), ids.len());
        // Shadowing in the large representation replaces, not duplicates.
        let shadowed = map.extended(&[entry(ids[5], 100)]);
        assert_eq!(shadowed.len(), ids.len());
        assert_eq!(shadowed.get(ids[5]).map(|e| e.seq), Some(100));
    }
}
