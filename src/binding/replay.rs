//! The proofs already seen: a proof (DPoP, DBSC) is accepted once. Each is remembered, by a
//! 128-bit hash of its key and `jti`, until it could no longer be accepted anyway (its
//! protocol's time window has passed), so the memory is bounded by the window and the
//! cache's capacity.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::clock::Timestamp;
use crate::store::BoxFuture;

/// Default number of proofs a [`MemoryReplayCache`] remembers at once: about 64 MB at
/// most, or 16,000 proofs a second over a 60-second window.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1_000_000;

/// Why a proof could not be checked against the replay cache.
///
/// ```
/// use sealed_session::Timestamp;
/// use sealed_session::binding::{MemoryReplayCache, ReplayCache, ReplayError};
///
/// let cache = MemoryReplayCache::new(1);
/// let (now, until) = (Timestamp::from_millis(0), Timestamp::from_millis(60_000));
/// let first = std::pin::pin!(cache.first_use(&[1; 16], until, now));
/// let waker = std::task::Waker::noop();
/// let mut cx = std::task::Context::from_waker(&waker);
/// assert!(matches!(first.poll(&mut cx), std::task::Poll::Ready(Ok(true))));
/// let full = std::pin::pin!(cache.first_use(&[2; 16], until, now));
/// assert!(matches!(
///     full.poll(&mut cx),
///     std::task::Poll::Ready(Err(ReplayError::Full { capacity: 1 }))
/// ));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The cache holds as many proofs as it may, none of them past its window: the proof is
    /// refused rather than accepted unrecorded.
    #[error("the replay cache is full ({capacity} proofs within their window)")]
    Full {
        /// The cache's capacity.
        capacity: usize,
    },
    /// The shared cache could not be reached.
    #[error("the replay cache is unavailable: {0}")]
    Unavailable(String),
}

/// Where proofs already seen are remembered. [`MemoryReplayCache`] is per process;
/// `RedisReplayCache` (feature `redis`) is shared by every instance on the same Redis, so
/// that a proof accepted by one instance is refused by the others.
///
/// ```
/// use std::sync::Arc;
/// use sealed_session::binding::{Dpop, MemoryReplayCache, ReplayCache};
///
/// // A cache of 100,000 proofs, shared by DPoP and DBSC of one middleware.
/// let cache: Arc<dyn ReplayCache> = Arc::new(MemoryReplayCache::new(100_000));
/// let dpop = Dpop::new().replay_cache(cache.clone());
/// # let _ = dpop;
/// ```
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` until `until`: `Ok(true)` when it was not recorded already (the
    /// proof's first use), `Ok(false)` when it was (a replay).
    fn first_use<'a>(
        &'a self,
        key: &'a [u8; 16],
        until: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, ReplayError>>;
}

/// A [`ReplayCache`] in this process's memory, holding at most its capacity of proofs.
///
/// ```
/// use sealed_session::Timestamp;
/// use sealed_session::binding::{MemoryReplayCache, ReplayCache};
///
/// # futures_lite(async {
/// let cache = MemoryReplayCache::new(2);
/// let now = Timestamp::from_millis(1_000);
/// let until = Timestamp::from_millis(61_000);
/// assert!(cache.first_use(&[1; 16], until, now).await.unwrap());
/// assert!(!cache.first_use(&[1; 16], until, now).await.unwrap(), "a replay");
/// assert!(cache.first_use(&[2; 16], until, now).await.unwrap());
/// assert!(cache.first_use(&[3; 16], until, now).await.is_err(), "full");
/// // Once the window has passed, the entries are dropped.
/// let later = Timestamp::from_millis(61_000);
/// assert!(cache.first_use(&[3; 16], Timestamp::from_millis(121_000), later).await.unwrap());
/// # });
/// # fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
/// #     }
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Key to the time it may be forgotten.
    until: HashMap<[u8; 16], Timestamp>,
    /// Keys in the order recorded, with their time: the front is the first to go.
    order: VecDeque<(Timestamp, [u8; 16])>,
}

impl MemoryReplayCache {
    /// A cache of at most `capacity` proofs (at least 1).
    pub fn new(capacity: usize) -> MemoryReplayCache {
        MemoryReplayCache {
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// How many proofs it holds now.
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.until.len())
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        MemoryReplayCache::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl Seen {
    /// Drops what may be forgotten at `now`. Entries are recorded with `until` = time
    /// recorded + one window, so they leave in order; an entry recorded with a later
    /// `until` than one behind it waits for it (kept longer, never shorter).
    fn sweep(&mut self, now: Timestamp) {
        while let Some(&(until, key)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.until.get(&key).is_some_and(|u| *u <= now) {
                self.until.remove(&key);
            }
        }
    }
}

impl ReplayCache for MemoryReplayCache {
    fn first_use<'a>(
        &'a self,
        key: &'a [u8; 16],
        until: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        let answer = (|| {
            // A poisoned lock means a panic while holding it; the map is still whole.
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.sweep(now);
            if seen.until.get(key).is_some_and(|u| *u > now) {
                return Ok(false);
            }
            // The queue holds every key at least once: bounding it bounds both.
            if seen.order.len() >= self.capacity {
                return Err(ReplayError::Full {
                    capacity: self.capacity,
                });
            }
            seen.until.insert(*key, until);
            seen.order.push_back((until, *key));
            Ok(true)
        })();
        Box::pin(std::future::ready(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn first(c: &MemoryReplayCache, k: u8, until: u64, now: u64) -> Result<bool, ReplayError> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let key = [k; 16];
        let mut f = c.first_use(&key, t(until), t(now));
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!(),
        }
    }

    #[test]
    fn a_key_is_refused_until_its_window_passes_then_forgotten() {
        let c = MemoryReplayCache::new(10);
        assert!(first(&c, 1, 100, 0).unwrap());
        assert!(!first(&c, 1, 100, 99).unwrap());
        assert!(first(&c, 1, 200, 100).unwrap(), "window passed");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_new_keys_and_frees_space_as_windows_pass() {
        let c = MemoryReplayCache::new(2);
        assert!(first(&c, 1, 100, 0).unwrap());
        assert!(first(&c, 2, 150, 50).unwrap());
        assert!(matches!(
            first(&c, 3, 160, 60),
            Err(ReplayError::Full { capacity: 2 })
        ));
        // A replay is still told apart while full.
        assert!(!first(&c, 2, 160, 60).unwrap());
        assert!(first(&c, 3, 200, 100).unwrap(), "key 1 has gone");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let c = MemoryReplayCache::new(1000);
        for i in 0..100_000u64 {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&i.to_be_bytes());
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut f = c.first_use(&key, t(i / 10 + 60), t(i / 10));
            let _ = f.as_mut().poll(&mut cx);
        }
        assert!(c.len() <= 1000);
        let seen = c.seen.lock().unwrap();
        assert!(seen.order.len() <= 1000, "{}", seen.order.len());
    }
}
