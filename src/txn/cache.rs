//! A read-through cache that stays consistent with what committed.
//!
//! Two rules keep it honest:
//! - a value loaded **inside** a transaction is returned but not stored:
//!   it may reflect writes that later roll back;
//! - a transaction that changes a key calls
//!   [`invalidate_on_commit`](Cache::invalidate_on_commit): the entry is
//!   dropped right after the commit, and not at all on rollback.
//!
//! A reader that loaded a value before an invalidation but stores it after
//! would put a stale value back; a generation number, bumped by every
//! invalidation, makes such a late store a no-op.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Outbox, TxError};

/// A shared read-through cache (clones share the entries).
///
/// # Examples
///
/// ```
/// use milieu::txn::Cache;
///
/// let prices: Cache<&'static str, u64> = Cache::new();
/// let mut loads = 0;
/// let mut load = || { loads += 1; Ok::<_, std::convert::Infallible>(250) };
/// assert_eq!(*prices.get_or_load("tea", &mut load).unwrap(), 250);
/// assert_eq!(*prices.get_or_load("tea", &mut load).unwrap(), 250);
/// assert_eq!(loads, 1);
/// ```
pub struct Cache<K, V> {
    inner: Arc<Mutex<Inner<K, V>>>,
}

struct Inner<K, V> {
    entries: HashMap<K, Arc<V>>,
    generation: u64,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Send + Sync + 'static> Default for Cache<K, V> {
    fn default() -> Self {
        Cache::new()
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Send + Sync + 'static> Cache<K, V> {
    /// An empty cache.
    pub fn new() -> Self {
        Cache {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                generation: 0,
            })),
        }
    }

    /// The cached value, if any.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        self.lock().entries.get(key).cloned()
    }

    /// The cached value, or `load`'s (stored unless called inside a
    /// transaction or overtaken by an invalidation).
    ///
    /// # Errors
    ///
    /// Whatever `load` returns; nothing is stored then.
    pub fn get_or_load<E>(&self, key: K, load: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        let generation = {
            let inner = self.lock();
            if let Some(value) = inner.entries.get(&key) {
                return Ok(Arc::clone(value));
            }
            inner.generation
        };
        // Loaded without the lock: the load may be slow, or itself use the
        // cache.
        let value = Arc::new(load()?);
        if !crate::contains::<Outbox>() {
            let mut inner = self.lock();
            if inner.generation == generation {
                inner.entries.insert(key, Arc::clone(&value));
            }
        }
        Ok(value)
    }

    /// Drops `key` once the transaction running here commits (nothing
    /// happens on rollback).
    ///
    /// # Errors
    ///
    /// [`TxError::NotInTransaction`] outside a transaction: call
    /// [`invalidate`](Cache::invalidate) there.
    #[track_caller]
    pub fn invalidate_on_commit(&self, key: K) -> Result<(), TxError> {
        let outbox = Outbox::current()?;
        let cache = self.clone();
        outbox.on_commit(move || cache.invalidate(&key));
        Ok(())
    }

    /// Drops `key` now.
    pub fn invalidate(&self, key: &K) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(key);
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // The map stays valid if a holder panicked: nothing runs user code
        // under the lock.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Cache")
            .field("entries", &inner.entries.len())
            .field("generation", &inner.generation)
            .finish()
    }
}
