//! The state the denylist, its background task and the connection's push handler share:
//! the replica, how fresh it is, and the revocations waiting for Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, Timestamp};
use crate::denylist::Health;
use crate::denylist::memory::Replica;
use crate::state::SessionId;

/// `fresh_at` before the first load.
pub(super) const NEVER: u64 = 0;

/// State shared by the denylist, its background task and the push handler.
pub(super) struct Shared {
    pub(super) replica: Replica,
    pub(super) clock: Arc<dyn Clock>,
    /// Clock time (ms) when the replica was last known current; `NEVER` before the first load.
    pub(super) fresh_at: AtomicU64,
    pub(super) stale_after: Duration,
    /// Whether the connection is up and the replica loaded since.
    pub(super) connected: AtomicBool,
    /// Incremented at each connection loss the client library reports.
    pub(super) disconnects: AtomicU64,
    /// Wakes the background task on a connection loss.
    pub(super) wake: Notify,
    /// Revocations that Redis could not record (the caller got an error). They are written
    /// at the next reconnection, before the replica counts as current again, so a logout
    /// that failed during an outage still reaches every instance afterwards, and a retry on
    /// this instance (which already refuses the session) is not a silent no-op elsewhere.
    pub(super) pending: std::sync::Mutex<Vec<Pending>>,
}

/// At most this many unrecorded revocations are kept for the next reconnection; past it the
/// oldest are dropped (and logged). This process's replica still refuses them.
const MAX_PENDING: usize = 100_000;

/// A revocation waiting for Redis.
#[derive(Clone, Debug)]
pub(super) enum Pending {
    /// An id and its `until`.
    Session(SessionId, Timestamp),
    /// The id of a session without a subject, its `until` and its issue time.
    Anonymous(SessionId, Timestamp, Timestamp),
    /// A subject (empty for the anonymous cut-off) and its `before`.
    Subject(String, Timestamp),
}

impl Pending {
    /// Whether it still matters at `now` (an id past its `until` does not).
    pub(super) fn live(&self, now: Timestamp) -> bool {
        match self {
            Pending::Session(_, until) | Pending::Anonymous(_, until, _) => *until > now,
            Pending::Subject(..) => true,
        }
    }
}

impl Shared {
    pub(super) fn remember(&self, p: Pending) {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_PENDING {
            q.remove(0);
            tracing::error!(
                limit = MAX_PENDING,
                "denylist: too many revocations waiting for Redis; dropped the oldest"
            );
        }
        q.push(p);
    }

    /// Whether revocations wait for Redis.
    pub(super) fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The `until` of a session revocation waiting for Redis, if `id` has one.
    pub(super) fn pending_session(&self, id: &SessionId) -> Option<Timestamp> {
        let q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().rev().find_map(|p| match p {
            Pending::Session(pid, until) | Pending::Anonymous(pid, until, _) if pid == id => {
                Some(*until)
            }
            _ => None,
        })
    }

    pub(super) fn take_pending(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn restore_pending(&self, mut rest: Vec<Pending>) {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        rest.append(&mut q);
        *q = rest;
    }
}

impl Shared {
    /// Time since the replica was last known current; `None` before the first load.
    #[inline]
    pub(super) fn stale_for(&self, now: Timestamp) -> Option<Duration> {
        match self.fresh_at.load(Ordering::Acquire) {
            NEVER => None,
            t => Some(now.saturating_since(Timestamp::from_millis(t))),
        }
    }

    pub(super) fn mark_fresh(&self, at: Timestamp) {
        self.fresh_at
            .fetch_max(at.as_millis().max(1), Ordering::AcqRel);
    }

    pub(super) fn health(&self, now: Timestamp) -> Health {
        match self.stale_for(now) {
            None => Health::Unavailable { stale_for: None },
            Some(s) if s > self.stale_after => Health::Unavailable { stale_for: Some(s) },
            Some(_) if self.connected.load(Ordering::Acquire) => Health::Healthy,
            Some(s) => Health::Degraded {
                stale_for: s,
                bound: self.stale_after,
            },
        }
    }
}

/// The oldest subject time still kept at `now` (ms): older ones are past the subject TTL.
pub(super) fn horizon(shared: &Shared, now: Timestamp) -> u64 {
    now.as_millis()
        .saturating_sub(duration_ms(shared.replica.subject_ttl()))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
