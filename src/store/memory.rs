//! An in-memory store with expiry, like express-session's `MemoryStore`: for one process,
//! tests and comparison; sessions do not survive a restart and are not shared.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::{BoxFuture, Store, StoreError, Update};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::SessionId;

/// Sweep expired records once every this many saves.
const SWEEP_EVERY: usize = 1024;

type Records = HashMap<[u8; 16], (Box<[u8]>, Timestamp)>;

/// An in-memory session store. Expired records are never returned and are swept out every
/// 1024 saves, so memory is bounded by the number of live sessions.
///
/// ```
/// use sealed_session::store::MemoryStore;
/// use sealed_session::{Keyring, SealedSession};
///
/// let store = MemoryStore::new();
/// let sessions = SealedSession::server_store(store.clone(), Keyring::generate()?);
/// assert!(store.is_empty());
/// # let _ = sessions;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    records: Arc<RwLock<Records>>,
    saves: Arc<AtomicUsize>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        MemoryStore::with_clock(SystemClock)
    }

    /// An empty store on `clock` (for tests).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryStore {
            records: Arc::default(),
            saves: Arc::default(),
            clock: Arc::new(clock),
        }
    }

    /// Number of records held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.records.read().map_or(0, |r| r.len())
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired record now.
    pub fn sweep(&self) {
        let now = self.clock.now();
        if let Ok(mut r) = self.records.write() {
            r.retain(|_, (_, exp)| *exp > now);
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend {
        store: "memory",
        source: "lock poisoned by a panic in another thread".into(),
    }
}

impl Store for MemoryStore {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let now = self.clock.now();
        let found = self.records.read().map_err(|_| poisoned()).map(|r| {
            r.get(id.as_bytes())
                .filter(|(_, exp)| *exp > now)
                .map(|(rec, _)| rec.to_vec())
        });
        Box::pin(std::future::ready(found))
    }

    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let res = self.records.write().map_err(|_| poisoned()).map(|mut r| {
            r.insert(*id.as_bytes(), (record.into(), expires_at));
        });
        if self.saves.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        Box::pin(std::future::ready(res))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        let res = self.records.write().map_err(|_| poisoned()).map(|mut r| {
            r.remove(id.as_bytes());
        });
        Box::pin(std::future::ready(res))
    }

    /// Compares and replaces under one write lock, so a concurrent `save` or `delete`
    /// either happens before (this sees it) or after (it overwrites what this wrote).
    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        expected: &'a [u8],
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<Update, StoreError>> {
        let now = self.clock.now();
        let res = self.records.write().map_err(|_| poisoned()).map(|mut r| {
            let key = *id.as_bytes();
            match r.get(&key).filter(|(_, exp)| *exp > now) {
                None => Update::Gone,
                Some((current, _)) if **current != *expected => Update::Changed(current.to_vec()),
                Some(_) => {
                    r.insert(key, (record.into(), expires_at));
                    Update::Written
                }
            }
        });
        if self.saves.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        Box::pin(std::future::ready(res))
    }
}
