//! [`MemoryRegistry`]: the sessions of each subject in this process's memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::{
    BoxFuture, DEFAULT_MAX_PER_SUBJECT, DeviceRecord, Registry, RegistryError, live_newest_first,
};
use crate::clock::Timestamp;
use crate::state::SessionId;

/// Every this many records, the whole registry is swept of expired entries (besides the
/// subject recorded, which is swept at each record).
const SWEEP_EVERY: u64 = 1024;

/// A [`Registry`] in this process's memory: for one process (with a `MemoryDenylist`, or a
/// `RedisDenylist` whose revocations reach other processes, though the list itself does
/// not). Lost on restart.
///
/// Keeps at most [`max_per_subject`](MemoryRegistry::max_per_subject) entries per subject
/// (default 50, the most recently renewed); an entry goes when its session expires: each
/// subject is swept when it is recorded, and the whole registry every 1,024 records, so
/// memory follows the number of live signed-in sessions.
///
/// ```
/// use sealed_session::devices::MemoryRegistry;
///
/// let registry = MemoryRegistry::new().max_per_subject(10);
/// # let _ = registry;
/// ```
#[derive(Debug)]
pub struct MemoryRegistry {
    inner: Mutex<Inner>,
    max: usize,
}

#[derive(Debug, Default)]
struct Inner {
    subjects: HashMap<String, Vec<DeviceRecord>>,
    records: u64,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry::new()
    }
}

impl MemoryRegistry {
    /// An empty registry keeping [`DEFAULT_MAX_PER_SUBJECT`] entries per subject.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry {
            inner: Mutex::new(Inner::default()),
            max: DEFAULT_MAX_PER_SUBJECT,
        }
    }

    /// Keeps at most `n` entries per subject (at least 1), the most recently renewed.
    #[must_use]
    pub fn max_per_subject(mut self, n: usize) -> Self {
        self.max = n.max(1);
        self
    }

    /// How many entries it holds, over all subjects.
    pub fn len(&self) -> usize {
        self.lock().subjects.values().map(Vec::len).sum()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registry for MemoryRegistry {
    fn record<'a>(&'a self, record: &'a DeviceRecord) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let now = record.renewed;
            let mut inner = self.lock();
            inner.records = inner.records.wrapping_add(1);
            if inner.records.is_multiple_of(SWEEP_EVERY) {
                inner.subjects.retain(|_, list| {
                    list.retain(|r| r.expires_at > now);
                    !list.is_empty()
                });
            }
            let list = inner.subjects.entry(record.subject.clone()).or_default();
            list.retain(|r| r.id != record.id && r.expires_at > now);
            list.push(record.clone());
            if list.len() > self.max {
                // Most recently renewed first; the oldest go.
                list.sort_by_key(|r| std::cmp::Reverse(r.renewed));
                list.truncate(self.max);
            }
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        subject: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<DeviceRecord>, RegistryError>> {
        Box::pin(async move {
            let inner = self.lock();
            let entries = inner.subjects.get(subject).into_iter().flatten().cloned();
            Ok(live_newest_first(entries, subject, now))
        })
    }

    fn remove<'a>(
        &'a self,
        subject: &'a str,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            if let Some(list) = inner.subjects.get_mut(subject) {
                list.retain(|r| r.id != *id);
                if list.is_empty() {
                    inner.subjects.remove(subject);
                }
            }
            Ok(())
        })
    }
}
