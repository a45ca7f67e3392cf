//! The in-memory denylist, and the replica structure the Redis denylist keeps locally.
//!
//! Read-mostly and concurrent: entries live in 64 shards, each a `RwLock<HashMap>`, so a check
//! takes one uncontended read lock on one shard and concurrent checks of different sessions
//! rarely touch the same cache line. Keys are the 16 id bytes as a `u128`, hashed by one keyed
//! multiply (the ids are random and server-made, so SipHash would buy nothing here).
//!
//! A snapshot behind `arc-swap` would make reads lock-free, but every revocation would copy
//! the whole map (a million entries at worst); `dashmap` is the same sharded design as this
//! file with a dependency more. Neither paid for itself.
//!
//! Expired entries are ignored by `check` (so answers never depend on when a sweep ran) and
//! removed by an amortised sweep: a shard is swept when an insertion finds it twice as large
//! as after its last sweep, so memory stays within about twice the number of live entries
//! (plus a small floor per shard). [`MemoryDenylist::purge_expired`] sweeps everything.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aes_gcm::aead::rand_core::{OsRng, RngCore};

use super::{
    BoxFuture, Check, DEFAULT_SUBJECT_TTL, Denylist, DenylistError, Health, RevokedBy, Status,
};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::{MAX_SUBJECT_LEN, SessionId};

const SHARDS: usize = 64;
/// A shard is not swept before it holds this many entries.
const SWEEP_FLOOR: usize = 64;

/// A keyed hasher for ids and for subject strings: one folded multiply per 16 bytes.
#[derive(Clone, Copy)]
pub(crate) struct Keyed {
    k0: u64,
    k1: u64,
}

impl Keyed {
    fn random() -> Keyed {
        let mut b = [0u8; 16];
        // A failed RNG leaves fixed keys: still a good spread for random ids.
        let _ = OsRng.try_fill_bytes(&mut b);
        let (lo, hi) = b.split_at(8);
        Keyed {
            k0: u64::from_le_bytes(lo.try_into().unwrap_or([0x5a; 8])) | 1,
            k1: u64::from_le_bytes(hi.try_into().unwrap_or([0xa5; 8])) | 1,
        }
    }
}

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a).wrapping_mul(u128::from(b));
    (full as u64) ^ ((full >> 64) as u64)
}

/// A session id as a hash key: 16 bytes at 8-byte alignment (a `u128` would pad each entry
/// to 32 bytes), hashed with one `write_u128`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey(u64, u64);

impl IdKey {
    #[inline]
    fn of(id: &SessionId) -> IdKey {
        let v = u128::from_le_bytes(*id.as_bytes());
        IdKey(v as u64, (v >> 64) as u64)
    }
}

impl std::hash::Hash for IdKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from(self.0) | (u128::from(self.1) << 64));
    }
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

struct Map<K> {
    entries: HashMap<K, Timestamp, Keyed>,
    /// Sweep when an insertion finds `entries.len()` at this size.
    sweep_at: usize,
}

/// One shard, padded to its own cache lines so that readers of neighbouring shards do not
/// share the lock word.
#[repr(align(128))]
struct Shard<K>(RwLock<Map<K>>);

struct Sharded<K> {
    shards: Box<[Shard<K>]>,
    keys: Keyed,
    /// Entries in all shards, kept so that an empty table costs no lock at all.
    len: AtomicUsize,
}

impl<K: std::hash::Hash + Eq> Sharded<K> {
    fn new(keys: Keyed) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(RwLock::new(Map {
                    entries: HashMap::with_hasher(keys),
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

    #[inline]
    fn shard<Q: std::hash::Hash + ?Sized>(&self, key: &Q) -> Option<&Shard<K>> {
        // Bits 32..38 pick the shard: the map itself uses the low bits (bucket index, fewer
        // than 32 of them) and the top 7 (tags), which so stay well mixed within a shard.
        let h = self.keys.hash_one(key);
        self.shards.get((h >> 32) as usize % SHARDS)
    }

    /// The value under `key`, if any.
    #[inline]
    fn get<Q>(&self, key: &Q) -> Option<Timestamp>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let shard = self.shard(key)?;
        // A poisoned lock only means a writer panicked mid-insert; the map is still usable.
        let map = shard.0.read().unwrap_or_else(|e| e.into_inner());
        map.entries.get(key).copied()
    }

    /// Sets `key` to the later of its value and `value`; sweeps the shard when due.
    fn upsert_max(&self, key: K, value: Timestamp, expired: impl Fn(Timestamp) -> bool) {
        let Some(shard) = self.shard(&key) else {
            return;
        };
        let mut map = shard.0.write().unwrap_or_else(|e| e.into_inner());
        let before = map.entries.len();
        if map.entries.len() >= map.sweep_at {
            map.entries.retain(|_, t| !expired(*t));
            map.sweep_at = (map.entries.len() * 2).max(SWEEP_FLOOR);
        }
        map.entries
            .entry(key)
            .and_modify(|t| *t = (*t).max(value))
            .or_insert(value);
        let after = map.entries.len();
        drop(map);
        self.adjust_len(before, after);
    }

    /// Removes expired entries from every shard; returns how many.
    fn purge(&self, expired: impl Fn(Timestamp) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.0.write().unwrap_or_else(|e| e.into_inner());
            let before = map.entries.len();
            map.entries.retain(|_, t| !expired(*t));
            let after = map.entries.len();
            map.sweep_at = (after * 2).max(SWEEP_FLOOR);
            if after < before / 4 {
                map.entries.shrink_to_fit();
            }
            drop(map);
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

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// The revocation tables, without a clock: the in-memory denylist and the local replica of
/// the Redis one.
pub(crate) struct Replica {
    /// Revoked ids and the time until which they are kept.
    ids: Sharded<IdKey>,
    /// Revoked subjects and their "not valid before" time.
    subjects: Sharded<Box<str>>,
    subject_ttl: Duration,
}

impl Replica {
    pub(crate) fn new(subject_ttl: Duration) -> Replica {
        let keys = Keyed::random();
        Replica {
            ids: Sharded::new(keys),
            subjects: Sharded::new(keys),
            subject_ttl,
        }
    }

    /// The check: `Allowed` or `Revoked`. The clock is read only when an entry is found, so
    /// the common case (not revoked) costs a look-up and nothing else.
    #[inline]
    pub(crate) fn check(
        &self,
        id: &SessionId,
        subject: Option<&str>,
        issued_at: Timestamp,
        clock: &dyn Clock,
    ) -> Check {
        if let Some(until) = self.ids.get(&IdKey::of(id))
            && until > clock.now()
        {
            return Check::Revoked(RevokedBy::Session);
        }
        if let Some(subject) = subject
            && let Some(before) = self.subjects.get(subject)
            && issued_at < before
            && !self.subject_expired(before, clock.now())
        {
            return Check::Revoked(RevokedBy::Subject);
        }
        Check::Allowed
    }

    fn subject_expired(&self, before: Timestamp, now: Timestamp) -> bool {
        before.saturating_add(self.subject_ttl) <= now
    }

    /// Records a revoked id until `until`, unless that has passed.
    pub(crate) fn insert(&self, id: &SessionId, until: Timestamp, now: Timestamp) {
        if until <= now {
            return;
        }
        self.ids.upsert_max(IdKey::of(id), until, |t| t <= now);
    }

    /// Records a subject revocation, unless its TTL has passed.
    pub(crate) fn insert_subject(&self, subject: &str, before: Timestamp, now: Timestamp) {
        if self.subject_expired(before, now) {
            return;
        }
        self.subjects
            .upsert_max(subject.into(), before, |b| self.subject_expired(b, now));
    }

    /// Sweeps expired entries; returns how many were removed.
    pub(crate) fn purge(&self, now: Timestamp) -> usize {
        self.ids.purge(|t| t <= now) + self.subjects.purge(|b| self.subject_expired(b, now))
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn subject_ttl(&self) -> Duration {
        self.subject_ttl
    }

    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.ids.len(), self.subjects.len())
    }

    /// Sets the `sealed_session_denylist_entries` gauges to the sizes (feature `metrics`;
    /// nothing without it). Called after each change that callers make, not per entry of
    /// a bulk load.
    #[inline]
    pub(crate) fn publish(&self) {
        #[cfg(feature = "metrics")]
        {
            let (sessions, subjects) = self.sizes();
            crate::stats::denylist_entries(sessions, subjects);
        }
    }
}

/// Refuses a subject no token can carry.
pub(crate) fn check_subject(subject: &str) -> Result<(), DenylistError> {
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(DenylistError::SubjectTooLong {
            len: subject.len(),
            max: MAX_SUBJECT_LEN,
        });
    }
    Ok(())
}

/// A denylist in this process's memory: for one process, tests and demos. Revocations do
/// not survive a restart and are not shared (use `RedisDenylist` for that).
///
/// Cheap to clone (an `Arc`); clones share the entries. Never [`Check::Unavailable`].
///
/// ```
/// use sealed_session::denylist::{Check, Denylist as _, MemoryDenylist, RevokedBy};
/// use sealed_session::{SessionId, Timestamp};
///
/// let denylist = MemoryDenylist::new();
/// let id = SessionId::generate()?;
/// let now = Timestamp::from_system_time(std::time::SystemTime::now());
/// denylist.insert(id, now.saturating_add(std::time::Duration::from_secs(60)));
/// assert_eq!(denylist.check(&id, None, now), Check::Revoked(RevokedBy::Session));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MemoryDenylist {
    replica: Arc<Replica>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryDenylist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ids, subjects) = self.replica.sizes();
        f.debug_struct("MemoryDenylist")
            .field("revoked_sessions", &ids)
            .field("revoked_subjects", &subjects)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryDenylist {
    fn default() -> Self {
        MemoryDenylist::new()
    }
}

/// Builds a [`MemoryDenylist`].
#[derive(Clone)]
#[must_use]
pub struct MemoryDenylistBuilder {
    clock: Arc<dyn Clock>,
    subject_ttl: Duration,
}

impl std::fmt::Debug for MemoryDenylistBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDenylistBuilder")
            .field("subject_ttl", &self.subject_ttl)
            .finish_non_exhaustive()
    }
}

impl MemoryDenylistBuilder {
    /// The clock that decides expiry. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a per-subject revocation is kept; at least the longest session lifetime.
    /// Default: [`DEFAULT_SUBJECT_TTL`] (30 days).
    pub fn subject_ttl(mut self, ttl: Duration) -> Self {
        self.subject_ttl = ttl;
        self
    }

    /// The denylist.
    pub fn build(self) -> MemoryDenylist {
        MemoryDenylist {
            replica: Arc::new(Replica::new(self.subject_ttl)),
            clock: self.clock,
        }
    }
}

impl MemoryDenylist {
    /// An empty denylist on the system clock, with the default subject TTL.
    pub fn new() -> Self {
        MemoryDenylist::builder().build()
    }

    /// An empty denylist on `clock` (for tests).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryDenylist::builder().clock(Arc::new(clock)).build()
    }

    /// A builder: clock and subject TTL.
    pub fn builder() -> MemoryDenylistBuilder {
        MemoryDenylistBuilder {
            clock: Arc::new(SystemClock),
            subject_ttl: DEFAULT_SUBJECT_TTL,
        }
    }

    /// Revokes `id` until `until`, synchronously (what [`Denylist::revoke`] does).
    pub fn insert(&self, id: SessionId, until: Timestamp) {
        self.replica.insert(&id, until, self.clock.now());
        self.replica.publish();
    }

    /// Revokes every session of `subject` issued before `before`, synchronously (what
    /// [`Denylist::revoke_subject`] does).
    pub fn insert_subject(&self, subject: &str, before: Timestamp) -> Result<(), DenylistError> {
        check_subject(subject)?;
        self.replica
            .insert_subject(subject, before, self.clock.now());
        self.replica.publish();
        Ok(())
    }

    /// Removes every expired entry now (sweeps also happen as entries are added); returns
    /// how many were removed.
    pub fn purge_expired(&self) -> usize {
        let removed = self.replica.purge(self.clock.now());
        self.replica.publish();
        removed
    }

    /// Revoked session ids held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.replica.sizes().0
    }

    /// Whether no session id and no subject is held.
    pub fn is_empty(&self) -> bool {
        self.replica.sizes() == (0, 0)
    }

    /// Per-subject revocations held, expired ones not yet swept included.
    pub fn subjects_len(&self) -> usize {
        self.replica.sizes().1
    }
}

impl Denylist for MemoryDenylist {
    #[inline]
    fn check(&self, id: &SessionId, subject: Option<&str>, issued_at: Timestamp) -> Check {
        self.replica.check(id, subject, issued_at, &*self.clock)
    }

    fn revoke(&self, id: SessionId, until: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        self.insert(id, until);
        Box::pin(std::future::ready(Ok(())))
    }

    fn revoke_subject(
        &self,
        subject: &str,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<(), DenylistError>> {
        let r = self.insert_subject(subject, before);
        Box::pin(std::future::ready(r))
    }

    fn status(&self) -> Status {
        let (revoked_sessions, revoked_subjects) = self.replica.sizes();
        Status {
            health: Health::Healthy,
            revoked_sessions,
            revoked_subjects,
        }
    }
}
