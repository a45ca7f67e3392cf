//! The concurrent map behind the in-memory denylist and the Redis denylist's replica.
//!
//! Read-mostly: entries live in 64 shards, each a `hashbrown` [`HashTable`] behind its own
//! `RwLock`, so a check takes one uncontended read lock on one shard and concurrent checks
//! of different sessions rarely touch the same cache line. One hash per look-up (std's
//! SipHash, keyed at random per map) picks the shard and finds the entry in it.
//!
//! Expired entries are ignored by the callers' look-ups (so answers never depend on when a
//! sweep ran) and removed by an amortised sweep: a shard is swept when an insertion finds it
//! twice as large as after its last sweep, so memory stays within a small multiple of the
//! number of live entries (plus a small floor per shard).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

const SHARDS: usize = 64;
/// A shard is not swept before it holds this many entries.
const SWEEP_FLOOR: usize = 64;

struct Shard<K, V> {
    map: HashTable<(K, V)>,
    /// Entries left by the last sweep.
    swept: usize,
}

/// A map from `K` to `V` in 64 locked shards.
pub(crate) struct Sharded<K, V> {
    hasher: RandomState,
    shards: Box<[RwLock<Shard<K, V>>; SHARDS]>,
    len: AtomicUsize,
}

impl<K: Hash + Eq, V: Copy> Sharded<K, V> {
    pub(crate) fn new() -> Self {
        Sharded {
            hasher: RandomState::new(),
            shards: Box::new(std::array::from_fn(|_| {
                RwLock::new(Shard {
                    map: HashTable::new(),
                    swept: 0,
                })
            })),
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard<K, V>> {
        // The top bits pick the shard; the table inside uses the low ones and its own tags.
        // (An array of `SHARDS`, indexed modulo `SHARDS`: the index cannot be out of bounds.)
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    fn read(lock: &RwLock<Shard<K, V>>) -> RwLockReadGuard<'_, Shard<K, V>> {
        // Every update leaves a shard consistent before it can panic, so poisoning is ignored.
        lock.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(lock: &RwLock<Shard<K, V>>) -> RwLockWriteGuard<'_, Shard<K, V>> {
        lock.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let shard = Self::read(self.shard(hash));
        shard
            .map
            .find(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| *v)
    }

    /// Inserts `value` under `key`, or merges it into the value there (`merge(old, new)`);
    /// returns whether the key is new. When the shard has doubled since its last sweep,
    /// entries for which `expired` holds are removed first.
    pub(crate) fn upsert(
        &self,
        key: K,
        value: V,
        merge: impl FnOnce(&mut V, V),
        expired: impl Fn(&V) -> bool,
    ) -> bool {
        let hash = self.hasher.hash_one(&key);
        let mut shard = Self::write(self.shard(hash));
        if let Some((_, v)) = shard.map.find_mut(hash, |(k, _)| *k == key) {
            merge(v, value);
            return false;
        }
        if shard.map.len() >= (shard.swept * 2).max(SWEEP_FLOOR) {
            let before = shard.map.len();
            shard.map.retain(|(_, v)| !expired(v));
            shard.map.shrink_to_fit(|(k, _)| self.hasher.hash_one(k));
            let after = shard.map.len();
            shard.swept = after;
            self.len.fetch_sub(before - after, Ordering::Relaxed);
        }
        shard
            .map
            .insert_unique(hash, (key, value), |(k, _)| self.hasher.hash_one(k));
        self.len.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Removes every entry for which `remove` holds; returns how many it removed.
    pub(crate) fn remove_where(&self, mut remove: impl FnMut(&K, &V) -> bool) -> usize {
        let mut removed = 0;
        for lock in self.shards.iter() {
            let mut shard = Self::write(lock);
            let before = shard.map.len();
            shard.map.retain(|(k, v)| !remove(k, v));
            let after = shard.map.len();
            if after < before {
                shard.map.shrink_to_fit(|(k, _)| self.hasher.hash_one(k));
            }
            shard.swept = after;
            removed += before - after;
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Entries held, expired ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later(old: &mut u64, new: u64) {
        *old = (*old).max(new);
    }

    #[test]
    fn upsert_keeps_the_merge_and_counts_new_keys() {
        let map: Sharded<u64, u64> = Sharded::new();
        assert!(map.upsert(1, 10, later, |_| false));
        assert!(!map.upsert(1, 5, later, |_| false));
        assert_eq!(map.get(&1), Some(10));
        assert!(!map.upsert(1, 20, later, |_| false));
        assert_eq!(map.get(&1), Some(20));
        assert_eq!(map.get(&2), None);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn inserts_sweep_expired_entries_and_removal_counts() {
        let map: Sharded<u64, u64> = Sharded::new();
        for k in 0..10_000 {
            map.upsert(k, k, later, |v| *v < 5_000);
        }
        // The sweeps ran as shards grew: fewer than all the expired entries are left.
        assert!(map.len() < 10_000, "{}", map.len());
        assert_eq!(map.get(&9_999), Some(9_999));
        let left = map.len();
        let removed = map.remove_where(|_, v| *v < 5_000);
        assert_eq!(map.len(), left - removed);
        assert_eq!(map.len(), 5_000);
        assert_eq!(map.get(&4_999), None);
    }

    #[test]
    fn borrowed_keys_find_boxed_ones() {
        let map: Sharded<Box<str>, u64> = Sharded::new();
        map.upsert("alice".into(), 1, later, |_| false);
        assert_eq!(map.get("alice"), Some(1));
        assert_eq!(map.get("bob"), None);
    }
}
