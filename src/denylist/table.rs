//! The concurrent tables behind the in-memory denylist and the Redis denylist's replica.
//!
//! Read-mostly: entries live in 64 shards, each behind its own `RwLock`, so a check takes one
//! uncontended read lock on one shard and concurrent checks of different sessions rarely
//! touch the same cache line. Shards are picked by a keyed hash (one folded multiply; the ids
//! are random and server-made, so SipHash would buy nothing here).
//!
//! Two kinds of table:
//!
//! - [`IdTable`], for revoked session ids, the table that can grow to millions of entries.
//!   Open addressing with linear probing, a one-byte tag per slot, and the whole 128-bit id
//!   and its expiry inline in the slot. A miss reads tags only (a byte per slot, which
//!   mostly stays in cache); a hit reads a tag and a slot whose addresses both come from the
//!   hash, so the CPU fetches them together. A `HashMap` finds the entry's address from its
//!   control bytes: two cache misses in a row for a hit in a table far larger than the
//!   caches (`benches/denylist.rs`; figures in `docs/COMPARISON.md`).
//! - [`SubjectTable`], a `HashMap` for per-subject revocations: few, variable-length keys.
//!
//! A snapshot behind `arc-swap` would make reads lock-free, but every revocation would copy
//! the whole table; `dashmap` is the same sharded design as this file with a dependency
//! more. Neither paid for itself.
//!
//! Expired entries are ignored by look-ups (so answers never depend on when a sweep ran) and
//! removed by an amortised sweep: a shard is swept when an insertion finds it twice as large
//! as after its last sweep, so memory stays within a small multiple of the number of live
//! entries (plus a small floor per shard).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::rand_core::{OsRng, RngCore};

use crate::clock::Timestamp;
use crate::state::SessionId;

const SHARDS: usize = 64;
/// A shard is not swept before it holds this many entries.
const SWEEP_FLOOR: usize = 64;

/// A keyed hash for ids and for subject strings: one folded multiply per 16 bytes.
#[derive(Clone, Copy)]
pub(crate) struct Keyed {
    k0: u64,
    k1: u64,
}

impl Keyed {
    pub(crate) fn random() -> Keyed {
        let mut b = [0u8; 16];
        // A failed RNG leaves fixed keys: still a good spread for random ids.
        let _ = OsRng.try_fill_bytes(&mut b);
        let (lo, hi) = b.split_at(8);
        Keyed {
            k0: u64::from_le_bytes(lo.try_into().unwrap_or([0x5a; 8])) | 1,
            k1: u64::from_le_bytes(hi.try_into().unwrap_or([0xa5; 8])) | 1,
        }
    }

    /// The hash of one 128-bit value (what a [`KeyedHasher`] gives for one `write_u128`).
    #[inline]
    fn pair(&self, lo: u64, hi: u64) -> u64 {
        fold_mul(lo ^ self.k0, hi ^ self.k1)
    }
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a).wrapping_mul(u128::from(b));
    (full as u64) ^ ((full >> 64) as u64)
}

/// Picks a shard from bits 32..38 of a hash: tables use the low bits (slot or bucket index,
/// fewer than 32 of them) and `HashMap` the top 7 (tags), which so stay well mixed.
#[inline]
fn shard_index(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

pub(crate) struct KeyedHasher {
    keys: Keyed,
    state: u64,
}

impl Hasher for KeyedHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }

    #[inline]
    fn write_u128(&mut self, v: u128) {
        let lo = v as u64;
        let hi = (v >> 64) as u64;
        self.state = fold_mul(lo ^ self.keys.k0 ^ self.state, hi ^ self.keys.k1);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u128(v as u128);
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u128(u128::from(v));
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            self.write_u128(u128::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        let mut b = [0u8; 16];
        if let Some(dst) = b.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        // Mix the length in so that trailing zero bytes change the hash.
        self.write_u128(u128::from_le_bytes(b) ^ ((bytes.len() as u128) << 120));
    }
}

impl BuildHasher for Keyed {
    type Hasher = KeyedHasher;
    #[inline]
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            keys: *self,
            state: 0,
        }
    }
}

/// What a shard holds: a map from keys to timestamps that keeps the later of two values.
pub(crate) trait Table {
    /// The key as looked up (`str` for subjects, a session id for ids).
    type Key: ?Sized;

    /// The value under `key`, if any (`hash` is the key's hash).
    fn get(&self, key: &Self::Key, hash: u64) -> Option<Timestamp>;
    /// Sets `key` to the later of its value and `value`.
    fn upsert_max(&mut self, key: &Self::Key, hash: u64, value: Timestamp);
    /// Keeps only the entries for which `keep` holds; shrinks the storage when `shrink`.
    fn retain(&mut self, keep: &dyn Fn(Timestamp) -> bool, shrink: bool);
    fn len(&self) -> usize;
    /// The key's hash under `keys`.
    fn hash(keys: &Keyed, key: &Self::Key) -> u64;
}

/// Revoked session ids: open addressing, linear probing, the id and its expiry inline.
///
/// Slot `i` is `slots[i] = [id low 64 bits, id high 64 bits, expiry in ms]` with a one-byte
/// tag `tags[i]`: 0 when the slot is empty, else 0x80 and 7 bits of the hash. A look-up
/// reads the tags (a byte per slot: a million entries take about 2 MB, which mostly stays in
/// cache) and reads a slot only when its tag matches, so a miss rarely touches the slots.
/// A hit reads the tag and the slot at the same index, and since that index comes from the
/// hash alone, the CPU loads both at once: one cache miss's latency, not two in a row.
///
/// Entries are never removed one by one, only by [`Table::retain`], which rebuilds the
/// table; so probing needs no tombstones. The load factor stays at most 3/4.
#[derive(Default)]
struct IdTable {
    tags: Vec<u8>,
    slots: Vec<[u64; 3]>,
    len: usize,
}

/// The fewest slots a non-empty table has.
const MIN_SLOTS: usize = 16;

/// The tag of an occupied slot whose entry hashes to `hash`.
#[inline]
fn tag(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

impl IdTable {
    fn split(id: &SessionId) -> (u64, u64) {
        let v = u128::from_le_bytes(*id.as_bytes());
        (v as u64, (v >> 64) as u64)
    }

    /// The slot holding `(lo, hi)`, or the empty slot where it would go; `None` only for a
    /// table with no slots (or, impossibly, a full one).
    #[inline]
    fn find(&self, lo: u64, hi: u64, hash: u64) -> Option<usize> {
        let mask = self.tags.len().checked_sub(1)?;
        let want = tag(hash);
        let mut i = hash as usize & mask;
        for _ in 0..self.tags.len() {
            let t = *self.tags.get(i)?;
            if t == 0 {
                return Some(i);
            }
            if t == want && self.slots.get(i).is_some_and(|s| s[0] == lo && s[1] == hi) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Puts `slot` (not present yet) where its hash leads.
    fn place(&mut self, slot: [u64; 3], hash: u64) {
        if let Some(i) = self.find(slot[0], slot[1], hash)
            && let (Some(t), Some(dst)) = (self.tags.get_mut(i), self.slots.get_mut(i))
        {
            *t = tag(hash);
            *dst = slot;
            self.len += 1;
        }
    }

    /// Moves the live entries into a table of `n` slots (a power of two, above `len`).
    fn rebuild(&mut self, n: usize, hash_of: impl Fn(u64, u64) -> u64) {
        let tags = std::mem::replace(&mut self.tags, vec![0; n]);
        let slots = std::mem::replace(&mut self.slots, vec![[0; 3]; n]);
        self.len = 0;
        for (_, slot) in tags.into_iter().zip(slots).filter(|(t, _)| *t != 0) {
            self.place(slot, hash_of(slot[0], slot[1]));
        }
    }

    /// Slots for `n` entries at a load of at most 1/2 (so room to grow before 3/4).
    fn slots_for(n: usize) -> usize {
        (n.saturating_mul(2)).next_power_of_two().max(MIN_SLOTS)
    }
}

/// An [`IdTable`] and the hash keys its entries are placed under (a rebuild re-hashes them).
pub(crate) struct Ids {
    table: IdTable,
    keys: Keyed,
}

impl Table for Ids {
    type Key = SessionId;

    #[inline]
    fn get(&self, id: &SessionId, hash: u64) -> Option<Timestamp> {
        let (lo, hi) = IdTable::split(id);
        let i = self.table.find(lo, hi, hash)?;
        let occupied = self.table.tags.get(i).is_some_and(|t| *t != 0);
        let slot = self.table.slots.get(i)?;
        occupied.then(|| Timestamp::from_millis(slot[2]))
    }

    fn upsert_max(&mut self, id: &SessionId, hash: u64, value: Timestamp) {
        let (lo, hi) = IdTable::split(id);
        let keys = self.keys;
        let t = &mut self.table;
        // Grow before the load passes 3/4.
        if (t.len + 1).saturating_mul(4) > t.tags.len().saturating_mul(3) {
            t.rebuild(IdTable::slots_for(t.len + 1), |lo, hi| keys.pair(lo, hi));
        }
        let Some(i) = t.find(lo, hi, hash) else {
            return;
        };
        match (t.tags.get(i), t.slots.get_mut(i)) {
            (Some(0), Some(_)) => t.place([lo, hi, value.as_millis()], hash),
            (Some(_), Some(slot)) => slot[2] = slot[2].max(value.as_millis()),
            _ => {}
        }
    }

    fn retain(&mut self, keep: &dyn Fn(Timestamp) -> bool, shrink: bool) {
        let t = &mut self.table;
        for (tag, slot) in t.tags.iter_mut().zip(t.slots.iter()) {
            if *tag != 0 && !keep(Timestamp::from_millis(slot[2])) {
                *tag = 0;
                t.len -= 1;
            }
        }
        // Emptied slots cut probe chains: always rebuild, at the size the entries need when
        // shrinking, else at the current size.
        let keys = self.keys;
        let n = match t.len {
            0 => 0,
            n if shrink => IdTable::slots_for(n),
            _ => t.tags.len(),
        };
        t.rebuild(n, |lo, hi| keys.pair(lo, hi));
    }

    fn len(&self) -> usize {
        self.table.len
    }

    #[inline]
    fn hash(keys: &Keyed, id: &SessionId) -> u64 {
        let (lo, hi) = IdTable::split(id);
        keys.pair(lo, hi)
    }
}

/// Per-subject revocations: subject → "not valid before".
pub(crate) struct SubjectTable(HashMap<Box<str>, Timestamp, Keyed>);

impl Table for SubjectTable {
    type Key = str;

    #[inline]
    fn get(&self, subject: &str, _hash: u64) -> Option<Timestamp> {
        self.0.get(subject).copied()
    }

    fn upsert_max(&mut self, subject: &str, _hash: u64, value: Timestamp) {
        if let Some(t) = self.0.get_mut(subject) {
            *t = (*t).max(value);
        } else {
            self.0.insert(subject.into(), value);
        }
    }

    fn retain(&mut self, keep: &dyn Fn(Timestamp) -> bool, shrink: bool) {
        self.0.retain(|_, t| keep(*t));
        if shrink {
            self.0.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn hash(keys: &Keyed, subject: &str) -> u64 {
        keys.hash_one(subject)
    }
}

struct Shard<T> {
    table: T,
    /// Sweep when an insertion finds the table at this size.
    sweep_at: usize,
}

/// One shard, padded to its own cache lines so that readers of neighbouring shards do not
/// share the lock word.
#[repr(align(128))]
struct Padded<T>(RwLock<Shard<T>>);

/// A table split into [`SHARDS`] independently locked shards.
pub(crate) struct Sharded<T> {
    shards: Box<[Padded<T>]>,
    keys: Keyed,
    /// Entries in all shards, kept so that an empty table costs no lock at all.
    len: AtomicUsize,
}

impl<T: Table> Sharded<T> {
    pub(crate) fn new(keys: Keyed, make: impl Fn(Keyed) -> T) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Padded(RwLock::new(Shard {
                    table: make(keys),
                    sweep_at: SWEEP_FLOOR,
                }))
            })
            .collect();
        Sharded {
            shards,
            keys,
            len: AtomicUsize::new(0),
        }
    }

    /// The value under `key`, if any.
    #[inline]
    pub(crate) fn get(&self, key: &T::Key) -> Option<Timestamp> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let hash = T::hash(&self.keys, key);
        let shard = self.shards.get(shard_index(hash))?;
        // A poisoned lock only means a writer panicked mid-insert; the table is still usable.
        let shard = shard.0.read().unwrap_or_else(|e| e.into_inner());
        shard.table.get(key, hash)
    }

    /// Sets `key` to the later of its value and `value`; sweeps the shard when due, dropping
    /// the entries for which `expired` holds.
    pub(crate) fn upsert_max(
        &self,
        key: &T::Key,
        value: Timestamp,
        expired: impl Fn(Timestamp) -> bool,
    ) {
        let hash = T::hash(&self.keys, key);
        let Some(shard) = self.shards.get(shard_index(hash)) else {
            return;
        };
        let mut shard = shard.0.write().unwrap_or_else(|e| e.into_inner());
        let before = shard.table.len();
        if before >= shard.sweep_at {
            shard.table.retain(&|t| !expired(t), false);
            shard.sweep_at = (shard.table.len() * 2).max(SWEEP_FLOOR);
        }
        shard.table.upsert_max(key, hash, value);
        let after = shard.table.len();
        drop(shard);
        self.adjust_len(before, after);
    }

    /// Removes expired entries from every shard; returns how many.
    pub(crate) fn purge(&self, expired: impl Fn(Timestamp) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.0.write().unwrap_or_else(|e| e.into_inner());
            let before = shard.table.len();
            shard.table.retain(&|t| !expired(t), true);
            let after = shard.table.len();
            shard.sweep_at = (after * 2).max(SWEEP_FLOOR);
            drop(shard);
            self.adjust_len(before, after);
            removed += before - after;
        }
        removed
    }

    fn adjust_len(&self, before: usize, after: usize) {
        if after > before {
            self.len.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.len.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// The id table of a [`Sharded`] set of ids.
pub(crate) fn ids(keys: Keyed) -> Ids {
    Ids {
        table: IdTable::default(),
        keys,
    }
}

/// The subject table of a [`Sharded`] set of subjects.
pub(crate) fn subjects(keys: Keyed) -> SubjectTable {
    SubjectTable(HashMap::with_hasher(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> SessionId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
        SessionId::from_bytes(b)
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_millis(n)
    }

    #[test]
    fn ids_grow_keep_the_later_expiry_and_sweep() {
        let set = Sharded::new(Keyed::random(), ids);
        for n in 0..10_000 {
            set.upsert_max(&id(n), ms(1000 + n), |_| false);
        }
        assert_eq!(set.len(), 10_000);
        for n in 0..10_000 {
            assert_eq!(set.get(&id(n)), Some(ms(1000 + n)), "id {n}");
        }
        assert_eq!(set.get(&id(10_000)), None);
        // Later wins, earlier does not lower it.
        set.upsert_max(&id(7), ms(50_000), |_| false);
        set.upsert_max(&id(7), ms(10), |_| false);
        assert_eq!(set.get(&id(7)), Some(ms(50_000)));
        assert_eq!(set.len(), 10_000);
        // Purging the first half keeps every probe chain of the second half intact.
        let removed = set.purge(|t| t < ms(6000));
        assert_eq!(removed, 4999, "id 7 was extended");
        for n in 0..10_000 {
            let want = match n {
                7 => Some(ms(50_000)),
                n if n >= 5000 => Some(ms(1000 + n)),
                _ => None,
            };
            assert_eq!(set.get(&id(n)), want, "id {n}");
        }
        assert_eq!(set.purge(|_| true), 5001);
        assert_eq!(set.len(), 0);
        assert_eq!(set.get(&id(9000)), None);
    }

    #[test]
    fn probe_chains_survive_partial_removal() {
        // One table at up to 3/4 load: long linear-probe chains, then every other entry
        // removed, which must not cut any chain.
        let keys = Keyed::random();
        let mut t = ids(keys);
        let h = |n: u64| Ids::hash(&keys, &id(n));
        for n in 0..3000u64 {
            t.upsert_max(&id(n), h(n), ms(100 + n));
        }
        assert_eq!(t.len(), 3000);
        t.retain(&|v| v.as_millis() % 2 == 0, false);
        assert_eq!(t.len(), 1500);
        for n in 0..3000u64 {
            let want = ((100 + n) % 2 == 0).then(|| ms(100 + n));
            assert_eq!(t.get(&id(n), h(n)), want, "id {n}");
        }
        t.retain(&|_| true, true);
        assert_eq!(t.table.tags.len(), 4096, "shrunk to twice the entries");
    }

    #[test]
    fn an_entry_at_the_epoch_is_still_an_entry() {
        let keys = Keyed::random();
        let mut t = ids(keys);
        let h = Ids::hash(&keys, &id(1));
        t.upsert_max(&id(1), h, Timestamp::EPOCH);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&id(1), h), Some(Timestamp::EPOCH));
    }
}
