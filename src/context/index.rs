//! The per-thread type index: for each `TypeId` ever installed on this
//! thread, where the newest live install of it is.
//!
//! An install writes one slot (saving the old one, and the slot's
//! position, in its entry) and a removal writes it back at that position,
//! so both are O(1) whatever is visible; a lookup is one probe. Keys are
//! never removed (a thread sees as many keys as the program has context
//! types), so there are no tombstones: a slot with no live install holds
//! [`LiveRef::NONE`].

use std::any::TypeId;
use std::hash::{Hash, Hasher};

use super::entry::{LiveRef, Shadowed};

/// Open addressing with linear probing, load factor at most 1/4: the table
/// is per thread and small, and a sparse one keeps probe runs short for
/// every key (docs/design.md: at 1/2, an install + removal with 100 other
/// types in the index cost up to 1.6x the one with none).
pub(crate) struct TypeIndex {
    /// Power-of-two length, or empty before the first install.
    slots: Vec<Slot>,
    len: usize,
    /// Told where the table is each time it is allocated: the thread's
    /// index publishes it for the lookup fast path (`state/hot.rs`).
    on_new_table: Option<fn(*const Slot, usize)>,
}

/// A key and its live install. A free slot holds the key of [`Vacant`]
/// rather than an `Option<TypeId>`: the slot stays 40 bytes, and a probe
/// compares keys without testing a discriminant first.
pub(crate) struct Slot {
    key: TypeId,
    live: LiveRef,
}

/// The key of free slots: private to this module, so never installed.
struct Vacant;

#[inline(always)]
fn vacant() -> TypeId {
    TypeId::of::<Vacant>()
}

impl TypeIndex {
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        TypeIndex {
            slots: Vec::new(),
            len: 0,
            on_new_table: None,
        }
    }

    /// An empty index that calls `on_new_table` with the address and
    /// length of each table it allocates.
    pub(crate) const fn publishing(on_new_table: fn(*const Slot, usize)) -> Self {
        TypeIndex {
            slots: Vec::new(),
            len: 0,
            on_new_table: Some(on_new_table),
        }
    }

    /// The live install of `id`, if the type was ever installed here.
    #[inline(always)]
    pub(crate) fn get(&self, id: TypeId) -> Option<&LiveRef> {
        if self.slots.is_empty() {
            return None;
        }
        // SAFETY: the table is `slots`, a power of two long.
        unsafe { probe(self.slots.as_ptr(), self.slots.len() - 1, id) }
    }

    /// Sets the live install of `id` (its value, entry and height, passed
    /// one by one and written field by field: see `State::push_slot`).
    /// Returns the one it replaces ([`LiveRef::NONE`] if there was none)
    /// and the position of `id`'s slot, for [`restore`](TypeIndex::restore).
    #[inline]
    pub(crate) fn replace(
        &mut self,
        id: TypeId,
        value: *const (),
        entry: *const super::entry::Entry,
        height: u32,
    ) -> (LiveRef, u32) {
        if !self.has_room() {
            self.grow();
        }
        self.replace_in_room(id, value, entry, height)
    }

    /// Whether a key seen for the first time fits without growing the
    /// table (false while it is empty).
    #[inline(always)]
    pub(crate) fn has_room(&self) -> bool {
        (self.len + 1) * 4 <= self.slots.len()
    }

    /// [`replace`](TypeIndex::replace) when [`has_room`](TypeIndex::has_room)
    /// is true: no call, so nothing that may unwind.
    #[inline(always)]
    pub(crate) fn replace_in_room(
        &mut self,
        id: TypeId,
        value: *const (),
        entry: *const super::entry::Entry,
        height: u32,
    ) -> (LiveRef, u32) {
        let mask = self.slots.len() - 1;
        let mut at = hash(id) as usize & mask;
        loop {
            let slot = &mut self.slots[at];
            if slot.key == id {
                let old = LiveRef {
                    value: slot.live.value,
                    entry: slot.live.entry,
                    height: slot.live.height,
                };
                slot.live.value = value;
                slot.live.entry = entry;
                slot.live.height = height;
                return (old, at as u32);
            }
            if slot.key == vacant() {
                slot.key = id;
                slot.live.value = value;
                slot.live.entry = entry;
                slot.live.height = height;
                self.len += 1;
                return (LiveRef::NONE, at as u32);
            }
            at = (at + 1) & mask;
        }
    }

    /// Puts back what [`replace`](TypeIndex::replace) returned for `id`,
    /// at the position it returned: the slot is still there unless the
    /// table grew since (then it is found by probing).
    #[inline(always)]
    pub(crate) fn restore(&mut self, id: TypeId, saved: &Shadowed) {
        if let Some(slot) = self.slots.get_mut(saved.index_at as usize) {
            if slot.key == id {
                slot.live.value = saved.value;
                slot.live.entry = saved.entry;
                slot.live.height = saved.height;
                return;
            }
        }
        self.restore_moved(id, saved);
    }

    /// [`restore`](TypeIndex::restore) after the table grew.
    #[cold]
    fn restore_moved(&mut self, id: TypeId, saved: &Shadowed) {
        // The key is there (`replace` put it in; keys are never removed),
        // so this finds it and no room is needed.
        self.replace(id, saved.value, saved.entry, saved.height);
    }

    #[cold]
    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(
            &mut self.slots,
            (0..capacity)
                .map(|_| Slot {
                    key: vacant(),
                    live: LiveRef::NONE,
                })
                .collect(),
        );
        self.len = 0;
        for slot in old {
            if slot.key != vacant() {
                self.replace(slot.key, slot.live.value, slot.live.entry, slot.live.height);
            }
        }
        if let Some(on_new_table) = self.on_new_table {
            on_new_table(self.slots.as_ptr(), self.slots.len());
        }
    }
}

/// The live install of `id` in the table at `table`, if its key is there:
/// one comparison when the key sits in its home slot (the usual case at a
/// load factor of 1/4).
///
/// # Safety
///
/// `table` points to `mask + 1` initialised slots, `mask + 1` a power of
/// two, at least one of them vacant, none written while the returned
/// reference lives.
#[inline(always)]
pub(crate) unsafe fn probe<'a>(table: *const Slot, mask: usize, id: TypeId) -> Option<&'a LiveRef> {
    let home = hash(id) as usize & mask;
    // SAFETY: `home <= mask`, inside the table (the caller's promise).
    let slot = unsafe { &*table.add(home) };
    if slot.key == id {
        return Some(&slot.live);
    }
    // SAFETY: the caller's promise, passed on.
    unsafe { probe_on(table, mask, id, home) }
}

/// The rest of [`probe`] after the home slot `at` held another key: out
/// of line, so a lookup that hits at home saves no registers for the
/// loop.
#[inline(never)]
unsafe fn probe_on<'a>(
    table: *const Slot,
    mask: usize,
    id: TypeId,
    mut at: usize,
) -> Option<&'a LiveRef> {
    // Terminates: at most a quarter of the slots hold a key.
    loop {
        // SAFETY: `at <= mask`, inside the table (the caller's promise).
        let slot = unsafe { &*table.add(at) };
        if slot.key == id {
            return Some(&slot.live);
        }
        if slot.key == vacant() {
            return None;
        }
        at = (at + 1) & mask;
    }
}

/// The hash of a `TypeId`: its own bits (see [`TypeIdHasher`]).
#[inline]
pub(crate) fn hash(id: TypeId) -> u64 {
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

    use super::TypeIndex;
    use crate::context::entry::{LiveRef, Shadowed};

    fn live(height: u32) -> LiveRef {
        LiveRef {
            value: std::ptr::dangling(),
            entry: std::ptr::null(),
            height,
        }
    }

    fn saved(live: LiveRef, index_at: u32) -> Shadowed {
        Shadowed {
            value: live.value,
            entry: live.entry,
            height: live.height,
            index_at,
        }
    }

    impl TypeIndex {
        fn replace_live(&mut self, id: TypeId, live: LiveRef) -> (LiveRef, u32) {
            self.replace(id, live.value, live.entry, live.height)
        }
    }

    fn ids() -> Vec<TypeId> {
        struct K<const N: usize>;
        macro_rules! ids {
            ($($n:literal)*) => { vec![$(TypeId::of::<K<$n>>()),*] };
        }
        ids!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29)
    }

    #[test]
    fn replace_returns_the_previous_install_and_restore_puts_it_back() {
        let ids = ids();
        let mut index = TypeIndex::new();
        assert!(index.get(ids[0]).is_none());
        let (none, at) = index.replace_live(ids[0], live(1));
        assert!(none.value.is_null());
        let (old, again) = index.replace_live(ids[0], live(2));
        assert_eq!((old.height, again), (1, at));
        assert_eq!(index.get(ids[0]).map(|l| l.height), Some(2));
        index.restore(ids[0], &saved(old, at));
        assert_eq!(index.get(ids[0]).map(|l| l.height), Some(1));
        index.restore(ids[0], &saved(LiveRef::NONE, at));
        assert!(index.get(ids[0]).is_some_and(|l| l.value.is_null()));
    }

    #[test]
    fn growing_keeps_every_key() {
        let ids = ids();
        let mut index = TypeIndex::new();
        let mut first = Vec::new();
        for (height, id) in ids.iter().enumerate() {
            first.push(index.replace_live(*id, live(height as u32)).1);
            assert!(
                index.slots.len() >= 4 * index.len,
                "load factor stays at most 1/4"
            );
        }
        for (height, id) in ids.iter().enumerate() {
            assert_eq!(index.get(*id).map(|l| l.height), Some(height as u32));
        }
        assert!(index.get(TypeId::of::<u8>()).is_none());
        // Positions from before the table grew still restore the right key.
        for (id, at) in ids.iter().zip(first) {
            index.restore(*id, &saved(LiveRef::NONE, at));
            assert!(index.get(*id).is_some_and(|l| l.value.is_null()));
        }
    }
}
